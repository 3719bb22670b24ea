/* fileio.h - whole-file reading with a size limit, and atomic file writing. */
#ifndef STRIDE_FILEIO_H
#define STRIDE_FILEIO_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>

/* Writes the concatenation of chunks[0..nchunks) (sizes[i] bytes each; a chunk of 0 bytes may be
 * NULL) to path atomically: the data goes to a new temporary file "PATH.tmp.XXXXXX" in the same
 * directory, which is flushed to disk (fsync), closed and renamed over path. Readers see either
 * the old file or the complete new one, never a partial file. The new file gets the permissions of
 * the file it replaces, or 0666 minus the umask for a new file. A symbolic link at path is
 * replaced by the new file, not followed.
 *
 * On failure the temporary file is removed, an existing file at path is left untouched, and err
 * names the path and the system error ("cannot create ...: No such file or directory",
 * "cannot write ...: No space left on device", ...). Returns 0 or -1. */
int st_write_file_atomic(const char *path, const void *const *chunks, const size_t *sizes,
                         int nchunks, st_error *err);

/* Reads the whole file at path into a new buffer (*buf, free it with free(); never NULL on
 * success, even for an empty file) and its length (*len). Files larger than max_len bytes are
 * refused with a message giving both sizes. Returns 0 or -1. */
int st_read_file(const char *path, uint8_t **buf, size_t *len, size_t max_len, st_error *err);

#endif
