/* safetensors.c - reading and writing safetensors files (see safetensors.h). */
#include "safetensors.h"

#include "fileio.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tensor data is copied to and from files as raw bytes, which is right on little-endian hosts
 * only (every platform Stride targets). The header length is encoded explicitly. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

/* ------------------------------------------------------------------ dtypes and formatting */

static const struct {
    const char *name;
    size_t size;
} dtype_info[ST_SF_NUM_DTYPES] = {
    [ST_SF_BOOL] = {"BOOL", 1},       [ST_SF_U8] = {"U8", 1},     [ST_SF_I8] = {"I8", 1},
    [ST_SF_F8_E5M2] = {"F8_E5M2", 1}, [ST_SF_F8_E4M3] = {"F8_E4M3", 1},
    [ST_SF_I16] = {"I16", 2},         [ST_SF_U16] = {"U16", 2},   [ST_SF_F16] = {"F16", 2},
    [ST_SF_BF16] = {"BF16", 2},       [ST_SF_I32] = {"I32", 4},   [ST_SF_U32] = {"U32", 4},
    [ST_SF_F32] = {"F32", 4},         [ST_SF_F64] = {"F64", 8},   [ST_SF_I64] = {"I64", 8},
    [ST_SF_U64] = {"U64", 8},
};

const char *st_sf_dtype_name(st_sf_dtype dt)
{
    return (unsigned)dt < ST_SF_NUM_DTYPES ? dtype_info[dt].name : "?";
}

size_t st_sf_dtype_size(st_sf_dtype dt)
{
    return (unsigned)dt < ST_SF_NUM_DTYPES ? dtype_info[dt].size : 0;
}

int st_sf_dtype_parse(const char *name, st_sf_dtype *dt)
{
    for (int i = 0; i < ST_SF_NUM_DTYPES; i++)
        if (strcmp(name, dtype_info[i].name) == 0) {
            *dt = (st_sf_dtype)i;
            return 0;
        }
    return -1;
}

st_sf_dtype st_sf_dtype_from_st(st_dtype dt)
{
    return dt == ST_I64 ? ST_SF_I64 : ST_SF_F32;
}

void st_sf_format_shape(char *buf, size_t cap, const int64_t *shape, int ndim)
{
    if (cap == 0)
        return;
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i <= ndim; i++) {
        char part[32];
        if (i == ndim)
            snprintf(part, sizeof part, "%s", ndim == 0 ? "[]" : "]");
        else
            snprintf(part, sizeof part, "%s%lld", i ? "," : "[", (long long)shape[i]);
        size_t k = strlen(part);
        if (n + k + 1 > cap || (i < ndim && n + k + 5 > cap)) {
            /* No room for this part and a closing "...]": end here. */
            if (cap >= 5 && n + 5 > cap)
                n = cap - 5;
            if (cap >= 5)
                snprintf(buf + n, cap - n, "...]");
            return;
        }
        memcpy(buf + n, part, k + 1);
        n += k;
    }
}

const char *st_sf_quote(char *buf, size_t cap, const char *s)
{
    if (cap < 8) {
        if (cap)
            buf[0] = '\0';
        return buf;
    }
    size_t n = 0, len = strlen(s);
    buf[n++] = '\'';
    size_t room = cap - 6; /* the closing quote, "...", and the NUL */
    size_t i = 0;
    for (; i < len && n < room; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[n++] = c < 0x20 || c == 0x7F ? '?' : (char)c;
    }
    if (i < len) {
        /* Do not leave half a UTF-8 sequence before the "...": find where the last sequence
         * starts and drop it if it is incomplete. */
        size_t start = n;
        while (start > 1 && ((unsigned char)buf[start - 1] & 0xC0) == 0x80)
            start--;
        if (start > 1) {
            unsigned char c = (unsigned char)buf[start - 1];
            size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
            if (n - (start - 1) < want)
                n = start - 1;
        }
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n++] = '\'';
    buf[n] = '\0';
    return buf;
}

/* ------------------------------------------------------------------ writing */

/* Sorts an array of string pointers. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A name that appears twice among names[0..n), or NULL. */
static const char *find_duplicate(const char *const *names, size_t n, int *oom)
{
    *oom = 0;
    if (n < 2)
        return NULL;
    const char **s = malloc(n * sizeof *s);
    if (!s) {
        *oom = 1;
        return NULL;
    }
    memcpy(s, names, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_str);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(s[i - 1], s[i]) == 0)
            dup = s[i];
    free(s);
    return dup;
}

static int check_text(const char *what, const char *s, st_error *err)
{
    char q[96];
    size_t bad;
    if (!st_utf8_valid(s, strlen(s), &bad))
        return st_seterr(err, "%s %s is not valid UTF-8 (byte %zu)", what,
                         st_sf_quote(q, sizeof q, s), bad);
    return 0;
}

/* Builds the 8-byte length and the padded header for t[0..n) and meta; *data_len receives the
 * size of the data section. */
static int build_header(const st_sf_tensor_w *t, int n, const char *const *meta, int nmeta,
                        st_strbuf *sb, uint64_t *data_len, st_error *err)
{
    char q[96];
    if (n < 0 || (n > 0 && !t))
        return st_seterr(err, "invalid number of tensors %d", n);
    if (n == INT_MAX)
        return st_seterr(err, "too many tensors (%d)", n);
    if (nmeta < 0 || (nmeta > 0 && !meta))
        return st_seterr(err, "invalid number of metadata pairs %d", nmeta);

    /* Check the names before writing anything. */
    const char **names = malloc(((size_t)n + (size_t)nmeta + 1) * sizeof *names);
    if (!names)
        return st_seterr(err, "out of memory");
    int rc = 0, oom = 0;
    const char *dup = NULL;
    for (int i = 0; i < n && rc == 0; i++) {
        names[i] = t[i].name;
        if (!t[i].name)
            rc = st_seterr(err, "tensor %d has no name", i);
        else if (strcmp(t[i].name, "__metadata__") == 0)
            rc = st_seterr(err, "tensor %d is named '__metadata__', a reserved name", i);
        else
            rc = check_text("tensor name", t[i].name, err);
    }
    if (rc == 0 && (dup = find_duplicate(names, (size_t)n, &oom)) != NULL)
        rc = st_seterr(err, "tensor name %s is used twice", st_sf_quote(q, sizeof q, dup));
    for (int i = 0; i < nmeta && rc == 0; i++) {
        if (!meta[2 * i] || !meta[2 * i + 1])
            rc = st_seterr(err, "metadata pair %d has a NULL key or value", i);
        else if ((rc = check_text("metadata key", meta[2 * i], err)) == 0)
            rc = check_text("metadata value", meta[2 * i + 1], err);
        names[i] = meta[2 * i];
    }
    if (rc == 0 && !oom && (dup = find_duplicate(names, (size_t)nmeta, &oom)) != NULL)
        rc = st_seterr(err, "metadata key %s is used twice", st_sf_quote(q, sizeof q, dup));
    free(names);
    if (rc == 0 && oom)
        rc = st_seterr(err, "out of memory");
    if (rc != 0)
        return rc;

    st_strbuf_append(sb, "\0\0\0\0\0\0\0\0", 8);
    st_strbuf_puts(sb, "{");
    if (nmeta > 0) {
        st_strbuf_puts(sb, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            if (i)
                st_strbuf_puts(sb, ",");
            st_json_write_string(sb, meta[2 * i], strlen(meta[2 * i]));
            st_strbuf_puts(sb, ":");
            st_json_write_string(sb, meta[2 * i + 1], strlen(meta[2 * i + 1]));
        }
        st_strbuf_puts(sb, "}");
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const st_sf_tensor_w *w = &t[i];
        const char *qn = st_sf_quote(q, sizeof q, w->name);
        size_t esize = st_sf_dtype_size(w->dtype);
        if (esize == 0)
            return st_seterr(err, "tensor %s has an invalid dtype %d", qn, (int)w->dtype);
        if (w->ndim < 0 || w->ndim > ST_SF_MAX_DIMS)
            return st_seterr(err, "tensor %s has %d dimensions, expected 0 to %d", qn, w->ndim,
                             ST_SF_MAX_DIMS);
        if (w->ndim > 0 && !w->shape)
            return st_seterr(err, "tensor %s has no shape", qn);
        uint64_t bytes = esize;
        for (int d = 0; d < w->ndim; d++) {
            if (w->shape[d] < 0)
                return st_seterr(err, "tensor %s has a negative size %lld", qn,
                                 (long long)w->shape[d]);
            if (w->shape[d] > 0 && bytes > (uint64_t)INT64_MAX / (uint64_t)w->shape[d])
                return st_seterr(err, "tensor %s is too large", qn);
            bytes *= (uint64_t)w->shape[d];
        }
        if (bytes > (uint64_t)INT64_MAX - offset || bytes > SIZE_MAX)
            return st_seterr(err, "tensor %s does not fit: the data section would be too large",
                             qn);
        if (bytes > 0 && !w->data)
            return st_seterr(err, "tensor %s has no data", qn);

        st_strbuf_puts(sb, (nmeta > 0 || i > 0) ? "," : "");
        st_json_write_string(sb, w->name, strlen(w->name));
        st_strbuf_printf(sb, ":{\"dtype\":\"%s\",\"shape\":[", st_sf_dtype_name(w->dtype));
        for (int d = 0; d < w->ndim; d++)
            st_strbuf_printf(sb, "%s%lld", d ? "," : "", (long long)w->shape[d]);
        st_strbuf_printf(sb, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                         (unsigned long long)(offset + bytes));
        offset += bytes;
    }
    st_strbuf_puts(sb, "}");
    while ((sb->len - 8) % 8 != 0)
        st_strbuf_puts(sb, " ");
    if (sb->failed)
        return st_seterr(err, "out of memory");
    uint64_t hlen = sb->len - 8;
    if (hlen > ST_SF_MAX_HEADER)
        return st_seterr(err, "the header would be %llu bytes, more than the limit of %u",
                         (unsigned long long)hlen, ST_SF_MAX_HEADER);
    for (int i = 0; i < 8; i++)
        sb->data[i] = (char)(uint8_t)(hlen >> (8 * i));
    *data_len = offset;
    return 0;
}

static size_t tensor_bytes(const st_sf_tensor_w *w)
{
    size_t bytes = st_sf_dtype_size(w->dtype);
    for (int d = 0; d < w->ndim; d++)
        bytes *= (size_t)w->shape[d];
    return bytes;
}

int st_safetensors_encode(const st_sf_tensor_w *t, int n, const char *const *meta, int nmeta,
                          uint8_t **buf, size_t *len, st_error *err)
{
    *buf = NULL;
    *len = 0;
    st_strbuf sb;
    st_strbuf_init(&sb);
    uint64_t data_len;
    if (build_header(t, n, meta, nmeta, &sb, &data_len, err) != 0) {
        st_strbuf_free(&sb);
        return -1;
    }
    if (data_len > SIZE_MAX - sb.len) {
        st_strbuf_free(&sb);
        return st_seterr(err, "the file would be too large");
    }
    uint8_t *b = malloc(sb.len + (size_t)data_len);
    if (!b) {
        st_strbuf_free(&sb);
        return st_seterr(err, "out of memory");
    }
    memcpy(b, sb.data, sb.len);
    size_t pos = sb.len;
    for (int i = 0; i < n; i++) {
        size_t k = tensor_bytes(&t[i]);
        if (k)
            memcpy(b + pos, t[i].data, k);
        pos += k;
    }
    *buf = b;
    *len = pos;
    st_strbuf_free(&sb);
    return 0;
}

int st_safetensors_write(const char *path, const st_sf_tensor_w *t, int n,
                         const char *const *meta, int nmeta, st_error *err)
{
    st_error e;
    st_strbuf sb;
    st_strbuf_init(&sb);
    uint64_t data_len;
    if (build_header(t, n, meta, nmeta, &sb, &data_len, &e) != 0) {
        st_strbuf_free(&sb);
        return st_seterr(err, "%s: %s", path, e.msg);
    }
    const void **chunks = malloc(((size_t)n + 1) * sizeof *chunks);
    size_t *sizes = malloc(((size_t)n + 1) * sizeof *sizes);
    int rc;
    if (!chunks || !sizes) {
        rc = st_seterr(err, "%s: out of memory", path);
    } else {
        chunks[0] = sb.data;
        sizes[0] = sb.len;
        for (int i = 0; i < n; i++) {
            chunks[i + 1] = t[i].data;
            sizes[i + 1] = tensor_bytes(&t[i]);
        }
        rc = st_write_file_atomic(path, (const void *const *)chunks, sizes, n + 1, err);
    }
    free(chunks);
    free(sizes);
    st_strbuf_free(&sb);
    return rc;
}

/* ------------------------------------------------------------------ reading */

void st_safetensors_free(st_safetensors *sf)
{
    if (!sf)
        return;
    st_json_free(sf->doc);
    free(sf->tensors);
    free(sf->by_name);
    free(sf->dims);
    free(sf->owned);
    memset(sf, 0, sizeof *sf);
}

static int cmp_offsets(const void *a, const void *b)
{
    const st_sf_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_by_name(const void *a, const void *b)
{
    const st_sf_tensor *x = *(const st_sf_tensor *const *)a, *y = *(const st_sf_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* "a string", "an array", ... for messages. */
static const char *a_type(st_json_type t)
{
    switch (t) {
    case ST_JSON_NULL: return "null";
    case ST_JSON_FALSE: return "false";
    case ST_JSON_TRUE: return "true";
    case ST_JSON_INT: return "an integer";
    case ST_JSON_NUMBER: return "a non-integer number";
    case ST_JSON_STRING: return "a string";
    case ST_JSON_ARRAY: return "an array";
    case ST_JSON_OBJECT: return "an object";
    }
    return "?";
}

/* Reads the non-negative integer v (named what) of tensor qn into *out. */
static int get_uint(const st_json *v, const char *qn, const char *what, uint64_t *out,
                    st_error *err)
{
    if (v->type != ST_JSON_INT)
        return st_seterr(err, "tensor %s: %s is %s, expected an integer", qn, what,
                         a_type(v->type));
    if (v->integer < 0)
        return st_seterr(err, "tensor %s: %s is %lld, expected a non-negative integer", qn, what,
                         (long long)v->integer);
    *out = (uint64_t)v->integer;
    return 0;
}

/* Validates the header entry e of one tensor into *t; its sizes go to dims. */
static int parse_entry(const st_json *e, st_sf_tensor *t, int64_t *dims, uint64_t data_len,
                       st_error *err)
{
    char q[96];
    const char *qn = st_sf_quote(q, sizeof q, e->key);
    if (strlen(e->key) != e->key_len)
        return st_seterr(err, "tensor name %s contains a NUL byte", qn);
    if (e->type != ST_JSON_OBJECT)
        return st_seterr(err, "tensor %s: entry is %s, expected an object", qn,
                         a_type(e->type));
    for (size_t i = 0; i < e->count; i++) {
        const char *k = e->items[i]->key;
        if (strcmp(k, "dtype") != 0 && strcmp(k, "shape") != 0 && strcmp(k, "data_offsets") != 0) {
            char qk[96];
            return st_seterr(err, "tensor %s has an unknown key %s (expected dtype, shape and "
                                  "data_offsets)", qn, st_sf_quote(qk, sizeof qk, k));
        }
    }
    t->name = e->key;

    const st_json *dt = st_json_get(e, "dtype");
    if (!dt)
        return st_seterr(err, "tensor %s has no dtype", qn);
    if (dt->type != ST_JSON_STRING)
        return st_seterr(err, "tensor %s: dtype is %s, expected a string", qn,
                         a_type(dt->type));
    if (strlen(dt->str) != dt->len || st_sf_dtype_parse(dt->str, &t->dtype) != 0) {
        char qd[64];
        return st_seterr(err, "tensor %s has an unknown dtype %s", qn,
                         st_sf_quote(qd, sizeof qd, dt->str));
    }

    const st_json *sh = st_json_get(e, "shape");
    if (!sh)
        return st_seterr(err, "tensor %s has no shape", qn);
    if (sh->type != ST_JSON_ARRAY)
        return st_seterr(err, "tensor %s: shape is %s, expected an array", qn,
                         a_type(sh->type));
    if (sh->count > ST_SF_MAX_DIMS)
        return st_seterr(err, "tensor %s has %zu dimensions, more than the limit of %d", qn,
                         sh->count, ST_SF_MAX_DIMS);
    t->ndim = (int)sh->count;
    t->shape = t->ndim ? dims : NULL;
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        char what[32];
        snprintf(what, sizeof what, "shape[%d]", d);
        uint64_t size = 0;
        if (get_uint(sh->items[d], qn, what, &size, err) != 0)
            return -1;
        dims[d] = (int64_t)size;
        if (size > 0 && numel > SIZE_MAX / size)
            return st_seterr(err, "tensor %s: shape has too many elements (overflow at %s)", qn,
                             what);
        numel *= size;
    }
    t->numel = (size_t)numel;
    size_t esize = st_sf_dtype_size(t->dtype);
    if (numel > SIZE_MAX / esize)
        return st_seterr(err, "tensor %s: shape has too many bytes (overflow)", qn);
    t->nbytes = (size_t)numel * esize;

    const st_json *off = st_json_get(e, "data_offsets");
    if (!off)
        return st_seterr(err, "tensor %s has no data_offsets", qn);
    if (off->type != ST_JSON_ARRAY || off->count != 2)
        return st_seterr(err, "tensor %s: data_offsets must be an array [begin, end]", qn);
    if (get_uint(off->items[0], qn, "data_offsets[0]", &t->begin, err) != 0 ||
        get_uint(off->items[1], qn, "data_offsets[1]", &t->end, err) != 0)
        return -1;
    if (t->begin > t->end)
        return st_seterr(err, "tensor %s has data_offsets [%llu,%llu] that end before they begin",
                         qn, (unsigned long long)t->begin, (unsigned long long)t->end);
    char shs[96];
    if (t->end - t->begin != t->nbytes) {
        st_sf_format_shape(shs, sizeof shs, t->shape, t->ndim);
        return st_seterr(err,
                         "tensor %s has data_offsets [%llu,%llu] (%llu bytes) but shape %s of %s "
                         "needs %zu bytes",
                         qn, (unsigned long long)t->begin, (unsigned long long)t->end,
                         (unsigned long long)(t->end - t->begin), shs,
                         st_sf_dtype_name(t->dtype), t->nbytes);
    }
    if (t->end > data_len)
        return st_seterr(err,
                         "tensor %s has data_offsets [%llu,%llu] beyond the end of the data "
                         "section (%llu bytes)",
                         qn, (unsigned long long)t->begin, (unsigned long long)t->end,
                         (unsigned long long)data_len);
    return 0;
}

static int parse_metadata(const st_json *m, st_error *err)
{
    char q[96];
    if (m->type != ST_JSON_OBJECT)
        return st_seterr(err, "__metadata__ is %s, expected an object of strings",
                         a_type(m->type));
    for (size_t i = 0; i < m->count; i++) {
        const st_json *v = m->items[i];
        const char *qk = st_sf_quote(q, sizeof q, v->key);
        if (strlen(v->key) != v->key_len)
            return st_seterr(err, "__metadata__ key %s contains a NUL byte", qk);
        if (v->type != ST_JSON_STRING)
            return st_seterr(err, "__metadata__ value of %s is %s, expected a string", qk,
                             a_type(v->type));
        if (strlen(v->str) != v->len)
            return st_seterr(err, "__metadata__ value of %s contains a NUL byte", qk);
    }
    return 0;
}

int st_safetensors_parse(const uint8_t *buf, size_t len, st_safetensors *out, st_error *err)
{
    memset(out, 0, sizeof *out);
    if (len < 8)
        return st_seterr(err, "file is %zu bytes, too short for a safetensors file (at least 8)",
                         len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | buf[i];
    if (hlen > ST_SF_MAX_HEADER)
        return st_seterr(err, "header length %llu is more than the limit of %u bytes "
                              "(not a safetensors file?)",
                         (unsigned long long)hlen, ST_SF_MAX_HEADER);
    if (hlen > len - 8)
        return st_seterr(err, "header length %llu is more than the %zu bytes after it "
                              "(truncated file?)",
                         (unsigned long long)hlen, len - 8);
    if (hlen == 0 || buf[8] != '{')
        return st_seterr(err, "header does not start with '{' (not a safetensors file?)");

    const st_json *root;
    st_error jerr;
    if (st_json_parse((const char *)buf + 8, (size_t)hlen, ST_JSON_DEFAULT_MAX_DEPTH,
                      ST_JSON_DEFAULT_MAX_VALUES, &out->doc, &root, &jerr) != 0)
        return st_seterr(err, "header: %s", jerr.msg);
    out->header_len = (size_t)hlen;
    const uint8_t *data = buf + 8 + hlen;
    const uint64_t data_len = len - 8 - hlen;

    /* Count the tensors and their dimensions, to allocate once. */
    size_t ntensors = 0, ndims = 0;
    for (size_t i = 0; i < root->count; i++) {
        const st_json *e = root->items[i];
        if (strcmp(e->key, "__metadata__") == 0 && e->key_len == 12) {
            out->meta = e;
            continue;
        }
        ntensors++;
        const st_json *sh = st_json_get(e, "shape");
        if (sh && sh->type == ST_JSON_ARRAY && sh->count <= ST_SF_MAX_DIMS)
            ndims += sh->count;
    }
    if (ntensors > INT_MAX) {
        st_safetensors_free(out);
        return st_seterr(err, "header has too many tensors (%zu)", ntensors);
    }
    if (out->meta && parse_metadata(out->meta, err) != 0) {
        st_safetensors_free(out);
        return -1;
    }
    out->tensors = calloc(ntensors ? ntensors : 1, sizeof *out->tensors);
    out->by_name = calloc(ntensors ? ntensors : 1, sizeof *out->by_name);
    out->dims = calloc(ndims ? ndims : 1, sizeof *out->dims);
    if (!out->tensors || !out->by_name || !out->dims) {
        st_safetensors_free(out);
        return st_seterr(err, "out of memory");
    }

    size_t k = 0, d = 0;
    for (size_t i = 0; i < root->count; i++) {
        const st_json *e = root->items[i];
        if (e == out->meta)
            continue;
        st_sf_tensor *t = &out->tensors[k++];
        if (parse_entry(e, t, out->dims + d, data_len, err) != 0) {
            st_safetensors_free(out);
            return -1;
        }
        d += (size_t)t->ndim;
        t->data = data + t->begin;
    }
    out->ntensors = (int)ntensors;

    /* The tensors must tile the data section exactly. */
    qsort(out->tensors, ntensors, sizeof *out->tensors, cmp_offsets);
    uint64_t pos = 0;
    for (size_t i = 0; i < ntensors; i++) {
        const st_sf_tensor *t = &out->tensors[i];
        char q1[96], q2[96];
        if (t->begin < pos) {
            const st_sf_tensor *prev = &out->tensors[i - 1];
            st_seterr(err, "tensors %s [%llu,%llu] and %s [%llu,%llu] overlap",
                      st_sf_quote(q1, sizeof q1, prev->name), (unsigned long long)prev->begin,
                      (unsigned long long)prev->end, st_sf_quote(q2, sizeof q2, t->name),
                      (unsigned long long)t->begin, (unsigned long long)t->end);
            st_safetensors_free(out);
            return -1;
        }
        if (t->begin > pos) {
            st_seterr(err, "bytes %llu to %llu of the data section belong to no tensor (gap "
                           "before tensor %s)",
                      (unsigned long long)pos, (unsigned long long)t->begin,
                      st_sf_quote(q1, sizeof q1, t->name));
            st_safetensors_free(out);
            return -1;
        }
        pos = t->end;
    }
    if (pos != data_len) {
        st_seterr(err, "the data section has %llu bytes but the tensors use %llu (trailing bytes)",
                  (unsigned long long)data_len, (unsigned long long)pos);
        st_safetensors_free(out);
        return -1;
    }
    for (size_t i = 0; i < ntensors; i++)
        out->by_name[i] = &out->tensors[i];
    qsort(out->by_name, ntensors, sizeof *out->by_name, cmp_by_name);
    return 0;
}

int st_safetensors_read(const char *path, size_t max_len, st_safetensors *out, st_error *err)
{
    memset(out, 0, sizeof *out);
    uint8_t *buf;
    size_t len;
    if (st_read_file(path, &buf, &len, max_len, err) != 0)
        return -1;
    st_error e;
    if (st_safetensors_parse(buf, len, out, &e) != 0) {
        free(buf);
        return st_seterr(err, "%s: %s", path, e.msg);
    }
    out->owned = buf;
    return 0;
}

int st_safetensors_count(const st_safetensors *sf)
{
    return sf->ntensors;
}

const st_sf_tensor *st_safetensors_at(const st_safetensors *sf, int i)
{
    return i >= 0 && i < sf->ntensors ? &sf->tensors[i] : NULL;
}

const st_sf_tensor *st_safetensors_find(const st_safetensors *sf, const char *name)
{
    size_t lo = 0, hi = (size_t)sf->ntensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(sf->by_name[mid]->name, name);
        if (c == 0)
            return sf->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *st_safetensors_meta(const st_safetensors *sf, const char *key)
{
    const st_json *v = st_json_get(sf->meta, key);
    return v ? v->str : NULL;
}

int st_safetensors_meta_count(const st_safetensors *sf)
{
    return sf->meta ? (int)sf->meta->count : 0;
}

void st_safetensors_meta_at(const st_safetensors *sf, int i, const char **key, const char **value)
{
    *key = *value = NULL;
    if (sf->meta && i >= 0 && (size_t)i < sf->meta->count) {
        *key = sf->meta->items[i]->key;
        *value = sf->meta->items[i]->str;
    }
}
