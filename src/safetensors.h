/* safetensors.h - reading and writing safetensors files (https://github.com/huggingface/safetensors).
 *
 * Layout of a file:
 *   8 bytes   N, the header length, unsigned 64-bit little-endian
 *   N bytes   the header: a UTF-8 JSON object starting with '{', padded with spaces
 *             { "__metadata__": {"key": "value", ...},            (optional, strings only)
 *               "name": {"dtype": "F32", "shape": [16, 1, 5, 5], "data_offsets": [begin, end]},
 *               ... }
 *   rest      the data section; data_offsets are relative to its start, little-endian values,
 *             row-major.
 *
 * The reader trusts nothing: the header length must fit the file (and at most 100,000,000
 * bytes), the header must be valid JSON with exactly the keys above, each tensor's byte count
 * must match its shape and dtype (with overflow checks), and the tensors must tile the data
 * section exactly: sorted by offset, no overlaps, no gaps, no trailing bytes (as the reference
 * implementation requires). Errors are one line naming the tensor and the bad value.
 *
 * The writer lays the tensors out in the order given, pads the header with spaces to a multiple
 * of 8 bytes (so the data section is 8-byte aligned in the file) and writes the file atomically.
 */
#ifndef STRIDE_SAFETENSORS_H
#define STRIDE_SAFETENSORS_H

#include "internal.h"
#include "json.h"

#include <stddef.h>
#include <stdint.h>

/* Every dtype of the format. Stride computes with F32 and I64 only; the others are read and
 * reported so that a caller can say "tensor 'x' has dtype BF16, expected F32". */
typedef enum st_sf_dtype {
    ST_SF_BOOL = 0,
    ST_SF_U8,
    ST_SF_I8,
    ST_SF_F8_E5M2,
    ST_SF_F8_E4M3,
    ST_SF_I16,
    ST_SF_U16,
    ST_SF_F16,
    ST_SF_BF16,
    ST_SF_I32,
    ST_SF_U32,
    ST_SF_F32,
    ST_SF_F64,
    ST_SF_I64,
    ST_SF_U64,
    ST_SF_NUM_DTYPES
} st_sf_dtype;

/* "F32", "I64", ...; "?" for a value out of range. */
const char *st_sf_dtype_name(st_sf_dtype dt);
/* Bytes per element (0 for a value out of range). */
size_t st_sf_dtype_size(st_sf_dtype dt);
/* Name -> dtype; -1 if the name is not a dtype of the format. */
int st_sf_dtype_parse(const char *name, st_sf_dtype *dt);
/* The safetensors dtype of a Stride dtype: ST_F32 -> ST_SF_F32, ST_I64 -> ST_SF_I64. */
st_sf_dtype st_sf_dtype_from_st(st_dtype dt);
/* Writes a shape as "[16,1,5,5]" ("[]" for a scalar) into buf, truncated with "..." to fit. */
void st_sf_format_shape(char *buf, size_t cap, const int64_t *shape, int ndim);
/* Writes s quoted for a one-line message ('name'), control characters shown as '?', truncated
 * with "..." to fit buf; returns buf. Names read from files go through this before printing. */
const char *st_sf_quote(char *buf, size_t cap, const char *s);

/* Largest number of dimensions accepted (PyTorch allows 64 at most too). */
#define ST_SF_MAX_DIMS 64
/* Largest header accepted and written (the reference implementation's limit). */
#define ST_SF_MAX_HEADER 100000000u

/* ------------------------------------------------------------------ writing */

/* One tensor to write. data holds numel * st_sf_dtype_size(dtype) bytes (little-endian,
 * row-major); it may be NULL only when that is 0. */
typedef struct st_sf_tensor_w {
    const char *name; /* UTF-8, unique, not "__metadata__" */
    st_sf_dtype dtype;
    int ndim; /* 0..ST_SF_MAX_DIMS; 0 is a scalar (one element) */
    const int64_t *shape;
    const void *data;
} st_sf_tensor_w;

/* Writes n tensors and nmeta metadata pairs (meta[2*i] is a key, meta[2*i+1] its value; UTF-8
 * strings, unique keys; meta may be NULL when nmeta is 0) to path, atomically (see
 * st_write_file_atomic). The tensors are stored in the order given. Returns 0 or -1. */
int st_safetensors_write(const char *path, const st_sf_tensor_w *t, int n,
                         const char *const *meta, int nmeta, st_error *err);
/* The same file built in memory: *buf (free it with free()) and *len. */
int st_safetensors_encode(const st_sf_tensor_w *t, int n, const char *const *meta, int nmeta,
                          uint8_t **buf, size_t *len, st_error *err);

/* ------------------------------------------------------------------ reading */

/* A tensor of a parsed file. All pointers stay valid until st_safetensors_free. */
typedef struct st_sf_tensor {
    const char *name; /* NUL-terminated UTF-8 (names with a NUL byte are rejected) */
    st_sf_dtype dtype;
    int ndim;
    const int64_t *shape; /* ndim sizes (NULL when ndim is 0) */
    size_t numel;         /* product of the sizes (1 for a scalar) */
    size_t nbytes;        /* numel * st_sf_dtype_size(dtype) */
    uint64_t begin, end;  /* data_offsets, relative to the data section */
    const uint8_t *data;  /* nbytes bytes inside the buffer; NOT aligned: use memcpy */
} st_sf_tensor;

/* A parsed file. Treat the fields as private and use the functions below. */
typedef struct st_safetensors {
    uint8_t *owned;           /* the file contents, when read by st_safetensors_read */
    st_json_doc *doc;         /* the header; names and metadata strings point into it */
    const st_json *meta;      /* the "__metadata__" object, or NULL */
    int ntensors;
    st_sf_tensor *tensors;    /* in data-section order */
    st_sf_tensor **by_name;   /* sorted by name, for st_safetensors_find */
    int64_t *dims;            /* storage for all the shapes */
    size_t header_len;        /* N */
} st_safetensors;

/* Parses and validates a safetensors file held in buf[0..len). The tensors point into buf, which
 * must outlive *out. On failure *out is left empty (safe to free) and err says what is wrong,
 * without a file name. Returns 0 or -1. */
int st_safetensors_parse(const uint8_t *buf, size_t len, st_safetensors *out, st_error *err);
/* Reads path (at most max_len bytes) and parses it; messages start with the path. */
int st_safetensors_read(const char *path, size_t max_len, st_safetensors *out, st_error *err);
/* Releases everything *sf holds and empties it (the buffer too when it was read from a file). */
void st_safetensors_free(st_safetensors *sf);

/* Number of tensors, and tensor i (0 <= i < count) in data-section order (the order in which
 * st_safetensors_write was given them). */
int st_safetensors_count(const st_safetensors *sf);
const st_sf_tensor *st_safetensors_at(const st_safetensors *sf, int i);
/* The tensor with this name, or NULL. O(log n). */
const st_sf_tensor *st_safetensors_find(const st_safetensors *sf, const char *name);

/* The value of metadata key, or NULL when there is no such key (or no metadata). */
const char *st_safetensors_meta(const st_safetensors *sf, const char *key);
/* Number of metadata pairs, and pair i in header order. */
int st_safetensors_meta_count(const st_safetensors *sf);
void st_safetensors_meta_at(const st_safetensors *sf, int i, const char **key, const char **value);

#endif
