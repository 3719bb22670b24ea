/* data.c - FashionMNIST data: IDX files (plain or gzip-compressed), datasets and batches.
 *
 * IDX format (LeCun et al.): a big-endian header - the magic 0x0000TTDD (TT the element type,
 * 0x08 = unsigned byte; DD the number of dimensions) and one 32-bit size per dimension - then the
 * elements in row-major order. Images: magic 0x00000803, sizes n, 28, 28. Labels: 0x00000801, n.
 *
 * A file is read whole into memory (its size on disk is capped) and handed to st_idx_parse, the
 * same function the fuzzer drives. Compressed input is inflated in memory with zlib; the output
 * buffer grows with the bytes actually decoded and never beyond what the validated header
 * announces, so neither a lying header nor a gzip bomb makes us allocate more than the input
 * really holds.
 */
#define ZLIB_CONST
#include "data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

const char *const st_class_names[ST_NUM_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

#define IMAGE_BYTES ((uint64_t)ST_IDX_ROWS * ST_IDX_COLS)
/* The largest file read: the largest valid plain image file plus room for gzip's overhead. */
#define MAX_FILE_BYTES (16 + (uint64_t)ST_IDX_MAX_ITEMS * IMAGE_BYTES + ((uint64_t)64 << 20))
/* Data past the end announced by the header is counted (for the message) up to this many bytes. */
#define MAX_TRAILING_COUNT ((uint64_t)16 << 20)
/* zlib takes sizes as uInt: input and output are handed to it in pieces of at most this. */
#define ZCHUNK ((size_t)1 << 20)

/* ---------------------------------------------------------------- input: plain bytes or gzip */

typedef struct idx_src {
    const char *name;
    const uint8_t *buf;
    size_t len;
    size_t pos; /* plain: bytes consumed; gzip: bytes handed to zlib */
    int gz;     /* the input is a gzip stream */
    int zinit;  /* zs is initialised */
    int zend;   /* the last gzip member ended */
    z_stream zs;
} idx_src;

/* Reads up to want bytes of (decompressed) data into dst; *got < want only at the end of the data.
 * Returns -1 on corrupt or truncated gzip data. */
static int src_read(idx_src *s, uint8_t *dst, size_t want, size_t *got, st_error *err)
{
    *got = 0;
    if (!s->gz) {
        size_t left = s->len - s->pos;
        size_t n = want < left ? want : left;
        if (n)
            memcpy(dst, s->buf + s->pos, n);
        s->pos += n;
        *got = n;
        return 0;
    }
    while (*got < want && !s->zend) {
        if (s->zs.avail_in == 0) {
            size_t left = s->len - s->pos;
            if (left == 0)
                return st_seterr(err, "%s: corrupt gzip data: the stream is truncated (%zu "
                                 "compressed bytes end before the end of the stream)",
                                 s->name, s->len);
            size_t take = left < ZCHUNK ? left : ZCHUNK;
            s->zs.next_in = s->buf + s->pos;
            s->zs.avail_in = (uInt)take;
            s->pos += take;
        }
        size_t room = want - *got;
        if (room > ZCHUNK)
            room = ZCHUNK;
        s->zs.next_out = dst + *got;
        s->zs.avail_out = (uInt)room;
        int rc = inflate(&s->zs, Z_NO_FLUSH);
        *got += room - s->zs.avail_out;
        if (rc == Z_STREAM_END) {
            /* Another gzip member may follow (`cat a.gz b.gz`); anything else is garbage. */
            size_t used = s->pos - s->zs.avail_in;
            size_t rest = s->len - used;
            if (rest == 0) {
                s->zend = 1;
            } else if (rest >= 2 && s->buf[used] == 0x1f && s->buf[used + 1] == 0x8b) {
                if (inflateReset(&s->zs) != Z_OK)
                    return st_seterr(err, "%s: cannot restart zlib for the next gzip member",
                                     s->name);
            } else {
                return st_seterr(err, "%s: %zu bytes of garbage after the end of the gzip stream",
                                 s->name, rest);
            }
        } else if (rc == Z_BUF_ERROR && s->zs.avail_in == 0) {
            continue; /* needs input: the loop's top hands it over or reports truncation */
        } else if (rc == Z_MEM_ERROR) {
            return st_seterr(err, "%s: out of memory while decompressing gzip data", s->name);
        } else if (rc != Z_OK) {
            return st_seterr(err, "%s: corrupt gzip data (%s)", s->name,
                             s->zs.msg ? s->zs.msg : zError(rc));
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- IDX parser */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static const char *idx_kind(uint32_t magic)
{
    return magic == ST_IDX_IMAGES ? "image" : "label";
}

/* The error for a magic number that is not the expected one, saying what is wrong with it. */
static int magic_error(const char *name, uint32_t magic, uint32_t expect, st_error *err)
{
    const char *kind = idx_kind(expect);
    if (magic >> 16)
        return st_seterr(err, "%s: bad magic 0x%08X, expected 0x%08X (not an IDX %s file)", name,
                         magic, expect, kind);
    if ((magic >> 8 & 0xff) != 0x08)
        return st_seterr(err, "%s: magic 0x%08X has data type 0x%02X, expected 0x08 (unsigned "
                         "byte: magic 0x%08X, an IDX %s file)",
                         name, magic, (unsigned)(magic >> 8 & 0xff), expect, kind);
    return st_seterr(err, "%s: magic 0x%08X has %u dimensions, expected %u (magic 0x%08X, an IDX "
                     "%s file)",
                     name, magic, (unsigned)(magic & 0xff), (unsigned)(expect & 0xff), expect,
                     kind);
}

/* Reads exactly `want` payload bytes into a buffer that grows as data arrives, then counts any
 * data left over. Returns the buffer, or NULL with err set. */
static uint8_t *read_payload(idx_src *s, size_t want, const char *what, st_error *err)
{
    /* Plain input: the sizes are known up front, so check them before allocating anything. */
    if (!s->gz) {
        size_t left = s->len - s->pos;
        if (left < want) {
            st_seterr(err, "%s: has %zu bytes of %s data, header says %zu: the file is truncated",
                      s->name, left, what, want);
            return NULL;
        }
        if (left > want) {
            st_seterr(err, "%s: has %zu bytes of %s data, header says %zu: %zu bytes of trailing "
                      "data",
                      s->name, left, what, want, left - want);
            return NULL;
        }
    }
    size_t cap = want;
    if (s->gz) {
        /* Start near the likely size (images rarely compress better than 8:1) and grow by
         * doubling, so that memory follows the data actually decoded. */
        size_t guess = s->len > ((size_t)-1 - 65536) / 8 ? (size_t)-1 : s->len * 8 + 65536;
        if (guess < cap)
            cap = guess;
    }
    uint8_t *data = malloc(cap);
    if (!data) {
        st_seterr(err, "%s: out of memory for %zu bytes of %s data", s->name, cap, what);
        return NULL;
    }
    size_t have = 0, got = 0;
    for (;;) {
        if (src_read(s, data + have, cap - have, &got, err))
            goto fail;
        have += got;
        if (have < cap || cap == want)
            break;
        size_t next = cap > want / 2 ? want : cap * 2;
        uint8_t *bigger = realloc(data, next);
        if (!bigger) {
            st_seterr(err, "%s: out of memory for %zu bytes of %s data", s->name, next, what);
            goto fail;
        }
        data = bigger;
        cap = next;
    }
    if (have < want) {
        st_seterr(err, "%s: has %zu bytes of %s data (after decompression), header says %zu: the "
                  "file is truncated",
                  s->name, have, what, want);
        goto fail;
    }
    /* Count what follows (gzip; plain input was checked above), reading to the end of the stream
     * so that its CRC is checked. */
    uint64_t extra = 0;
    uint8_t scratch[4096];
    do {
        if (src_read(s, scratch, sizeof scratch, &got, err))
            goto fail;
        extra += got;
    } while (got == sizeof scratch && extra <= MAX_TRAILING_COUNT);
    if (extra) {
        const char *more = extra > MAX_TRAILING_COUNT ? "more than " : "";
        st_seterr(err, "%s: has %s%llu bytes of %s data (after decompression), header says %zu: "
                  "%s%llu bytes of trailing data",
                  s->name, more, (unsigned long long)(want + extra), what, want, more,
                  (unsigned long long)extra);
        goto fail;
    }
    return data;
fail:
    free(data);
    return NULL;
}

int st_idx_parse(const uint8_t *buf, size_t len, uint32_t expect_magic, const char *name,
                 st_idx *out, st_error *err)
{
    memset(out, 0, sizeof *out);
    if (!name)
        name = "<memory>";
    if (expect_magic != ST_IDX_IMAGES && expect_magic != ST_IDX_LABELS)
        return st_seterr(err, "%s: cannot parse IDX magic 0x%08X, expected 0x%08X or 0x%08X",
                         name, expect_magic, ST_IDX_IMAGES, ST_IDX_LABELS);
    const char *kind = idx_kind(expect_magic);
    if (len == 0 || !buf)
        return st_seterr(err, "%s: file is empty, expected an IDX %s file (magic 0x%08X)", name,
                         kind, expect_magic);

    idx_src s = {.name = name, .buf = buf, .len = len};
    s.gz = len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;
    if (s.gz) {
        if (inflateInit2(&s.zs, 16 + MAX_WBITS) != Z_OK) /* 16: gzip wrapper only */
            return st_seterr(err, "%s: cannot initialise zlib", name);
        s.zinit = 1;
    }

    int rc = -1;
    const size_t ndims = expect_magic & 0xff;
    const size_t hdr_len = 4 + 4 * ndims;
    uint8_t hdr[16];
    size_t have = 0, got = 0;
    if (src_read(&s, hdr, 4, &got, err))
        goto done;
    have = got;
    if (have == 4) {
        uint32_t magic = be32(hdr);
        if (magic != expect_magic) {
            magic_error(name, magic, expect_magic, err);
            goto done;
        }
        if (src_read(&s, hdr + 4, hdr_len - 4, &got, err))
            goto done;
        have += got;
    }
    if (have < hdr_len) {
        st_seterr(err, "%s: only %zu bytes%s, an IDX %s header needs %zu", name, have,
                  s.gz ? " after decompression" : "", kind, hdr_len);
        goto done;
    }

    uint32_t n = be32(hdr + 4);
    uint32_t rows = 1, cols = 1;
    if (n == 0) {
        st_seterr(err, "%s: header says 0 %ss, expected at least 1", name, kind);
        goto done;
    }
    if (n > ST_IDX_MAX_ITEMS) {
        st_seterr(err, "%s: header says %u %ss, more than the limit of %u", name, n, kind,
                  ST_IDX_MAX_ITEMS);
        goto done;
    }
    if (expect_magic == ST_IDX_IMAGES) {
        rows = be32(hdr + 8);
        cols = be32(hdr + 12);
        if (rows != ST_IDX_ROWS || cols != ST_IDX_COLS) {
            st_seterr(err, "%s: images are %u x %u, expected %d x %d", name, rows, cols,
                      ST_IDX_ROWS, ST_IDX_COLS);
            goto done;
        }
    }
    const uint64_t want64 = (uint64_t)n * rows * cols;
    if (want64 > (size_t)-1) {
        st_seterr(err, "%s: %u %ss do not fit in memory", name, n, kind);
        goto done;
    }
    const size_t want = (size_t)want64;
    uint8_t *data = read_payload(&s, want, expect_magic == ST_IDX_IMAGES ? "pixel" : "label", err);
    if (!data)
        goto done;
    if (expect_magic == ST_IDX_LABELS) {
        for (size_t i = 0; i < want; i++) {
            if (data[i] >= ST_NUM_CLASSES) {
                st_seterr(err, "%s: label %u at index %zu, expected 0..%d", name,
                          (unsigned)data[i], i, ST_NUM_CLASSES - 1);
                free(data);
                goto done;
            }
        }
    }
    out->magic = expect_magic;
    out->n = (int)n;
    out->rows = (int)rows;
    out->cols = (int)cols;
    out->data = data;
    rc = 0;
done:
    if (s.zinit)
        inflateEnd(&s.zs);
    return rc;
}

/* ---------------------------------------------------------------- files */

/* Reads the whole file at path into a malloc'd buffer, refusing files over MAX_FILE_BYTES. */
static int read_file(const char *path, uint8_t **out, size_t *out_len, st_error *err)
{
    *out = NULL;
    *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return st_seterr(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = (size_t)1 << 16;
    struct stat st;
    if (fstat(fileno(f), &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            fclose(f);
            return st_seterr(err, "%s: is a directory, expected an IDX file", path);
        }
        if (S_ISREG(st.st_mode)) {
            if ((uint64_t)st.st_size > MAX_FILE_BYTES || (uint64_t)st.st_size >= (size_t)-1) {
                fclose(f);
                return st_seterr(err, "%s: file is %lld bytes, more than the limit of %llu for an "
                                 "IDX file",
                                 path, (long long)st.st_size, (unsigned long long)MAX_FILE_BYTES);
            }
            cap = (size_t)st.st_size + 1; /* +1: reaching EOF needs no second buffer */
        }
    }
    uint8_t *buf = malloc(cap);
    size_t len = 0;
    if (!buf)
        goto oom;
    for (;;) {
        if (len == cap) { /* not a regular file, or it grew while we read it */
            if ((uint64_t)cap > MAX_FILE_BYTES) {
                free(buf);
                fclose(f);
                return st_seterr(err, "%s: more than the limit of %llu bytes for an IDX file",
                                 path, (unsigned long long)MAX_FILE_BYTES);
            }
            size_t next = cap * 2;
            uint8_t *bigger = next > cap ? realloc(buf, next) : NULL;
            if (!bigger)
                goto oom;
            buf = bigger;
            cap = next;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len < cap) {
            if (ferror(f)) {
                int e = errno;
                free(buf);
                fclose(f);
                return st_seterr(err, "%s: read error: %s", path, strerror(e));
            }
            break;
        }
    }
    fclose(f);
    *out = buf;
    *out_len = len;
    return 0;
oom:
    free(buf);
    fclose(f);
    return st_seterr(err, "%s: out of memory reading the file", path);
}

int st_idx_read_file(const char *path, uint32_t expect_magic, st_idx *out, st_error *err)
{
    memset(out, 0, sizeof *out);
    uint8_t *buf;
    size_t len;
    if (read_file(path, &buf, &len, err))
        return -1;
    int rc = st_idx_parse(buf, len, expect_magic, path, out, err);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- datasets */

int st_dataset_load_idx(st_dataset *ds, const char *images_path, const char *labels_path,
                        st_error *err)
{
    if (!ds)
        return st_seterr(err, "st_dataset_load_idx: no dataset to fill (ds is NULL)");
    memset(ds, 0, sizeof *ds);
    if (!images_path || !labels_path)
        return st_seterr(err, "st_dataset_load_idx: %s path is NULL",
                         images_path ? "labels" : "images");
    st_idx im, lb;
    if (st_idx_read_file(images_path, ST_IDX_IMAGES, &im, err))
        return -1;
    if (st_idx_read_file(labels_path, ST_IDX_LABELS, &lb, err)) {
        free(im.data);
        return -1;
    }
    if (im.n != lb.n) {
        st_seterr(err, "%s has %d images but %s has %d labels, expected as many labels as images",
                  images_path, im.n, labels_path, lb.n);
        free(im.data);
        free(lb.data);
        return -1;
    }
    ds->n = im.n;
    ds->rows = im.rows;
    ds->cols = im.cols;
    ds->images = im.data;
    ds->labels = lb.data;
    return 0;
}

/* Looks for dir/<set>-<stem> and dir/<set>-<stem>.gz; 1 (path in out) if one exists, 0 if not. */
static int find_file(const char *dir, const char *set, const char *stem, char *out, size_t size,
                     st_error *err)
{
    static const char *const suffixes[] = {"", ".gz"};
    size_t dl = strlen(dir);
    const char *sep = dl && dir[dl - 1] == '/' ? "" : "/";
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        int w = snprintf(out, size, "%s%s%s-%s%s", dir, sep, set, stem, suffixes[i]);
        if (w < 0 || (size_t)w >= size)
            return st_seterr(err, "%s: path too long", dir);
        struct stat st;
        if (stat(out, &st) == 0 && !S_ISDIR(st.st_mode))
            return 1;
    }
    return 0;
}

int st_dataset_load_fashion(st_dataset *ds, const char *dir, int train, st_error *err)
{
    if (!ds)
        return st_seterr(err, "st_dataset_load_fashion: no dataset to fill (ds is NULL)");
    memset(ds, 0, sizeof *ds);
    if (!dir || !*dir)
        dir = ST_FASHION_DIR;
    struct stat st;
    if (stat(dir, &st) != 0)
        return st_seterr(err, "FashionMNIST directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return st_seterr(err, "%s: not a directory, expected the FashionMNIST directory", dir);

    const char *set = train ? "train" : "t10k";
    /* dir itself (the Debian package's directory, or torchvision's FashionMNIST/raw), then the
     * layout torchvision makes under its root: root/FashionMNIST/raw. */
    char sub[4096];
    size_t dl = strlen(dir);
    int w = snprintf(sub, sizeof sub, "%s%sFashionMNIST/raw", dir,
                     dl && dir[dl - 1] == '/' ? "" : "/");
    if (w < 0 || (size_t)w >= sizeof sub)
        return st_seterr(err, "%s: path too long", dir);
    const char *dirs[2] = {dir, sub};
    char images[4096 + 64], labels[4096 + 64];
    for (int d = 0; d < 2; d++) {
        int found = find_file(dirs[d], set, "images-idx3-ubyte", images, sizeof images, err);
        if (found < 0)
            return -1;
        if (!found)
            continue;
        found = find_file(dirs[d], set, "labels-idx1-ubyte", labels, sizeof labels, err);
        if (found < 0)
            return -1;
        if (!found)
            return st_seterr(err, "found %s but no labels for it: looked for %s-labels-idx1-ubyte "
                             "and %s-labels-idx1-ubyte.gz in %s",
                             images, set, set, dirs[d]);
        return st_dataset_load_idx(ds, images, labels, err);
    }
    return st_seterr(err, "no FashionMNIST %s set in %s: looked for %s-images-idx3-ubyte and "
                     "%s-images-idx3-ubyte.gz there and in %s",
                     train ? "training" : "test", dir, set, set, sub);
}

void st_dataset_free(st_dataset *ds)
{
    if (!ds)
        return;
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

void st_dataset_truncate(st_dataset *ds, int n)
{
    if (!ds || n < 0 || n >= ds->n)
        return;
    ds->n = n;
    if (n == 0)
        return; /* keep the buffers: realloc to 0 bytes is not portable */
    /* Give the memory of the dropped images back; shrinking in place cannot lose data. */
    uint8_t *p = realloc(ds->images, (size_t)n * ds->rows * ds->cols);
    if (p)
        ds->images = p;
    p = realloc(ds->labels, (size_t)n);
    if (p)
        ds->labels = p;
}

/* ToTensor on one image: each byte converted to float32 and divided by 255 in float32 (not
 * multiplied by 1/255, which rounds differently for some bytes). A division is correctly
 * rounded, so the vector loop gives the scalar one's values. */
ST_VEC_CLONES static void to_tensor(float *restrict dst, const uint8_t *restrict img, size_t n)
{
    for (size_t j = 0; j < n; j++)
        dst[j] = (float)img[j] / 255.0f;
}

static void prefetch_image(const uint8_t *img, size_t size)
{
    for (size_t j = 0; j < size; j += 64)
        __builtin_prefetch(img + j);
    __builtin_prefetch(img + size - 1); /* (the last line, where img is not line-aligned) */
}

void st_dataset_batch(const st_dataset *ds, const uint32_t *idx, int n, float *x, uint8_t *y)
{
    const size_t size = (size_t)ds->rows * ds->cols;
#define BATCH_IMAGE(i) (idx ? (size_t)idx[i] : (size_t)(i)) /* the dataset's index of image i */
    enum { AHEAD = 4 }; /* shuffled images are far apart: fetch a few ahead of the conversion */
    for (int i = 0; i < n && i < AHEAD; i++)
        prefetch_image(ds->images + BATCH_IMAGE(i) * size, size);
    for (int i = 0; i < n; i++) {
        const size_t k = BATCH_IMAGE(i);
        if (i + AHEAD < n)
            prefetch_image(ds->images + BATCH_IMAGE(i + AHEAD) * size, size);
        to_tensor(x + (size_t)i * size, ds->images + k * size, size);
        if (y)
            y[i] = ds->labels[k];
    }
#undef BATCH_IMAGE
}
