/* fileio.c - whole-file reading with a size limit, and atomic file writing (see fileio.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkostemp, O_CLOEXEC */
#endif

#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The process's umask, read without changing it (umask() would race with other threads creating
 * files); 022 when /proc is not available. */
static mode_t current_umask(void)
{
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return mask;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned m;
        if (sscanf(line, "Umask: %o", &m) == 1) {
            mask = (mode_t)(m & 0777);
            break;
        }
    }
    fclose(f);
    return mask;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t part = n > ((size_t)1 << 30) ? (size_t)1 << 30 : n;
        ssize_t w = write(fd, p, part);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Flushes the directory holding path, so that the rename itself is on disk. Best effort: the
 * new file is already in place, so a failure here is not reported. */
static void sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return;
    (void)fsync(fd);
    close(fd);
}

int st_write_file_atomic(const char *path, const void *const *chunks, const size_t *sizes,
                         int nchunks, st_error *err)
{
    static const char suffix[] = ".tmp.XXXXXX";
    size_t plen = strlen(path);
    if (plen == 0)
        return st_seterr(err, "cannot write a file with an empty name");
    char *tmp = malloc(plen + sizeof suffix);
    if (!tmp)
        return st_seterr(err, "%s: out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, suffix, sizeof suffix);

    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        st_seterr(err, "%s: cannot create a temporary file in its directory: %s", path,
                  strerror(e));
        free(tmp);
        return -1;
    }

    /* mkstemp creates the file with mode 0600; give it the mode a plain creation would have, or
     * keep the mode of the file being replaced. */
    struct stat old;
    mode_t mode = 0666 & ~current_umask();
    if (stat(path, &old) == 0 && S_ISREG(old.st_mode))
        mode = old.st_mode & 07777;

    const char *what = NULL;
    if (fchmod(fd, mode) != 0)
        what = "cannot set the permissions of";
    for (int i = 0; !what && i < nchunks; i++)
        if (sizes[i] > 0 && write_all(fd, chunks[i], sizes[i]) != 0)
            what = "cannot write";
    if (!what && fsync(fd) != 0)
        what = "cannot flush";
    int e = errno;
    if (close(fd) != 0 && !what) {
        what = "cannot close";
        e = errno;
    }
    if (!what && rename(tmp, path) != 0) {
        what = "cannot rename the temporary file over";
        e = errno;
    }
    if (what) {
        unlink(tmp);
        free(tmp);
        return st_seterr(err, "%s %s: %s", what, path, strerror(e));
    }
    free(tmp);
    sync_parent_dir(path);
    return 0;
}

int st_read_file(const char *path, uint8_t **buf, size_t *len, size_t max_len, st_error *err)
{
    *buf = NULL;
    *len = 0;
    if (max_len > SIZE_MAX / 2)
        max_len = SIZE_MAX / 2;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return st_seterr(err, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return st_seterr(err, "cannot stat %s: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return st_seterr(err, "cannot read %s: it is a directory", path);
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max_len) {
        close(fd);
        return st_seterr(err, "%s: file is %lld bytes, more than the limit of %zu bytes", path,
                         (long long)st.st_size, max_len);
    }

    /* Regular files: one read of the expected size (+1 to see the end); others grow as needed. */
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 65536;
    if (cap > max_len + 1)
        cap = max_len + 1;
    uint8_t *b = malloc(cap);
    size_t n = 0;
    for (;;) {
        if (!b) {
            close(fd);
            return st_seterr(err, "%s: out of memory", path);
        }
        if (n == cap) {
            size_t ncap = cap * 2 > max_len + 1 ? max_len + 1 : cap * 2;
            uint8_t *nb = realloc(b, ncap);
            if (!nb)
                free(b);
            b = nb;
            cap = ncap;
            continue;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(b);
            close(fd);
            return st_seterr(err, "cannot read %s: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > max_len) {
            free(b);
            close(fd);
            return st_seterr(err, "%s: file is more than the limit of %zu bytes", path, max_len);
        }
    }
    close(fd);
    *buf = b;
    *len = n;
    return 0;
}
