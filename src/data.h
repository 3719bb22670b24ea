/* data.h - internals of the data layer (src/data.c): the IDX parser that the file loader, the
 * tests and the fuzzer (fuzz/fuzz_idx.c) share. Not installed. */
#ifndef STRIDE_DATA_H
#define STRIDE_DATA_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>

/* IDX magic numbers: 0x0000TTDD, TT the element type (0x08 = unsigned byte), DD the number of
 * dimensions. Images: n x 28 x 28 bytes; labels: n bytes. */
#define ST_IDX_IMAGES 0x00000803u
#define ST_IDX_LABELS 0x00000801u
#define ST_IDX_ROWS 28
#define ST_IDX_COLS 28
/* The largest image or label count accepted (FashionMNIST has 60,000). */
#define ST_IDX_MAX_ITEMS 10000000u

/* Where the Debian package dataset-fashion-mnist installs the four .gz files; used by
 * st_dataset_load_fashion when dir is NULL or "". */
#define ST_FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* One parsed IDX file. */
typedef struct st_idx {
    uint32_t magic; /* ST_IDX_IMAGES or ST_IDX_LABELS */
    int n;          /* number of images or labels, 1..ST_IDX_MAX_ITEMS */
    int rows, cols; /* 28 x 28 for images, 1 x 1 for labels */
    uint8_t *data;  /* n * rows * cols bytes from malloc: the caller frees it */
} st_idx;

/* Parses an IDX file held in memory, plain or gzip-compressed (detected by the bytes 1f 8b; several
 * concatenated gzip members are accepted). expect_magic is ST_IDX_IMAGES or ST_IDX_LABELS; name
 * (the file's path, or NULL) is used in error messages. Validates the magic, the sizes (images must
 * be 28 x 28, 1 <= n <= ST_IDX_MAX_ITEMS), that the data is exactly as long as the header says and,
 * for labels, that each is in 0..9. Memory is allocated only as decoded data actually arrives,
 * never beyond what the validated header announces. On failure *out is zeroed and owns nothing. */
int st_idx_parse(const uint8_t *buf, size_t len, uint32_t expect_magic, const char *name,
                 st_idx *out, st_error *err);

/* Reads the file at path whole (capped in size) and parses it with st_idx_parse. */
int st_idx_read_file(const char *path, uint32_t expect_magic, st_idx *out, st_error *err);

#endif
