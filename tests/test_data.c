/* test_data.c - the data layer: IDX files (plain and gzip), their validation and error messages,
 * FashionMNIST's file names and layouts, batches (ToTensor), truncation, and the real dataset
 * installed by the Debian package dataset-fashion-mnist.
 *
 * Small IDX files are written into a fresh directory under /tmp (mkdtemp), removed at the end. */
#include "check.h"
#include "data.h"
#include "stride.h"

#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IMG (ST_IDX_ROWS * ST_IDX_COLS)

static char tmpdir[64];

/* ---------------------------------------------------------------- helpers */

/* tmpdir/name into a buffer of at least 512 bytes. */
static char *tmp_path(char *out, const char *name)
{
    snprintf(out, 512, "%s/%s", tmpdir, name);
    return out;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Pixel j of image i in the test files. */
static uint8_t pixel(int i, int j)
{
    return (uint8_t)(i * 37 + j * 11 + (j >> 5));
}

/* File contents: p from malloc, len bytes. */
typedef struct blob {
    uint8_t *p;
    size_t len;
} blob;

/* An image file: magic, n, rows, cols, then n * rows * cols pixels. */
static blob make_images(uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols)
{
    size_t size = (size_t)rows * cols;
    size_t len = 16 + n * size;
    uint8_t *buf = malloc(len);
    put_be32(buf, magic);
    put_be32(buf + 4, n);
    put_be32(buf + 8, rows);
    put_be32(buf + 12, cols);
    for (uint32_t i = 0; i < n; i++)
        for (size_t j = 0; j < size; j++)
            buf[16 + i * size + j] = pixel((int)i, (int)j);
    return (blob){buf, len};
}

/* A label file with the given labels. */
static blob make_labels(uint32_t n, const uint8_t *labels)
{
    uint8_t *buf = malloc(8 + n);
    put_be32(buf, ST_IDX_LABELS);
    put_be32(buf + 4, n);
    memcpy(buf + 8, labels, n);
    return (blob){buf, 8 + n};
}

/* Writes b to tmpdir/name, gzip-compressed (with zlib's gzopen) if gz; frees b. */
static void write_file(char *path, const char *name, blob b, int gz)
{
    uint8_t *buf = b.p;
    size_t len = b.len;
    tmp_path(path, name);
    if (gz) {
        gzFile g = gzopen(path, "wb");
        CHECK(g != NULL);
        if (g) {
            CHECK(gzwrite(g, buf, (unsigned)len) == (int)len);
            CHECK(gzclose(g) == Z_OK);
        }
    } else {
        FILE *f = fopen(path, "wb");
        CHECK(f != NULL);
        if (f) {
            CHECK(fwrite(buf, 1, len, f) == len);
            CHECK(fclose(f) == 0);
        }
    }
    free(buf);
}

static uint8_t *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (fread(buf, 1, *len, f) != *len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* Gzip-compresses buf in memory (deflate with the gzip wrapper); *out_len set. */
static uint8_t *gzip_mem(const uint8_t *buf, size_t len, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&zs, (uLong)len);
    uint8_t *out = malloc(cap);
    zs.next_in = (Bytef *)buf;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int rc = deflate(&zs, Z_FINISH);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

/* Standard labels for n <= 8 images. */
static const uint8_t some_labels[8] = {9, 0, 5, 3, 1, 7, 2, 8};

/* Writes a valid pair of n images and labels named prefix-images / prefix-labels; paths out. */
static void write_pair(char *img_path, char *lab_path, const char *prefix, uint32_t n, int gz)
{
    char name[128];
    snprintf(name, sizeof name, "%s-images%s", prefix, gz ? ".gz" : "");
    write_file(img_path, name, make_images(ST_IDX_IMAGES, n, 28, 28), gz);
    snprintf(name, sizeof name, "%s-labels%s", prefix, gz ? ".gz" : "");
    write_file(lab_path, name, make_labels(n, some_labels), gz);
}

/* Loading must fail with a message containing each of the given substrings (NULL-terminated). */
static void expect_fail(const char *images, const char *labels, ...)
{
    st_dataset ds;
    st_error err = {{0}};
    int rc = st_dataset_load_idx(&ds, images, labels, &err);
    CHECKF(rc == -1, "loading %s + %s should fail", images, labels);
    CHECK(ds.images == NULL && ds.labels == NULL && ds.n == 0);
    CHECKF(strchr(err.msg, '\n') == NULL, "message has a newline: %s", err.msg);
    if (getenv("STRIDE_TEST_VERBOSE"))
        printf("    error: %s\n", err.msg);
    va_list ap;
    va_start(ap, labels);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
        CHECKF(strstr(err.msg, s) != NULL, "message \"%s\" lacks \"%s\"", err.msg, s);
    va_end(ap);
    if (rc == 0)
        st_dataset_free(&ds);
}

/* ---------------------------------------------------------------- tests */

static void test_class_names(void)
{
    CHECK(strcmp(st_class_names[0], "T-shirt/top") == 0);
    CHECK(strcmp(st_class_names[1], "Trouser") == 0);
    CHECK(strcmp(st_class_names[4], "Coat") == 0);
    CHECK(strcmp(st_class_names[6], "Shirt") == 0);
    CHECK(strcmp(st_class_names[9], "Ankle boot") == 0);
    for (int i = 0; i < ST_NUM_CLASSES; i++)
        CHECK(st_class_names[i] != NULL && st_class_names[i][0] != '\0');
}

static void check_valid(int gz)
{
    char img[512], lab[512];
    write_pair(img, lab, gz ? "valid-gz" : "valid", 5, gz);
    st_dataset ds;
    st_error err = {{0}};
    int rc = st_dataset_load_idx(&ds, img, lab, &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (rc)
        return;
    CHECK(ds.n == 5 && ds.rows == 28 && ds.cols == 28);
    int bad = 0;
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < IMG; j++)
            bad += ds.images[i * IMG + j] != pixel(i, j);
    CHECKF(bad == 0, "%d pixels differ", bad);
    CHECK(memcmp(ds.labels, some_labels, 5) == 0);
    st_dataset_free(&ds);
    CHECK(ds.images == NULL && ds.labels == NULL && ds.n == 0);
    st_dataset_free(&ds); /* twice is harmless */
}

static void test_load_plain(void)
{
    check_valid(0);
}

static void test_load_gzip(void)
{
    check_valid(1);
}

/* Parsing from memory: gzip made by deflate, several gzip members, either magic. */
static void test_parse_memory(void)
{
    size_t zlen, zlen2;
    blob im = make_images(ST_IDX_IMAGES, 2, 28, 28);
    uint8_t *raw = im.p;
    size_t len = im.len;
    st_idx idx;
    st_error err = {{0}};
    CHECKF(st_idx_parse(raw, len, ST_IDX_IMAGES, NULL, &idx, &err) == 0, "%s", err.msg);
    CHECK(idx.n == 2 && idx.rows == 28 && idx.cols == 28 && idx.data[IMG + 5] == pixel(1, 5));
    free(idx.data);

    /* The same bytes as two gzip members: the header in one, the pixels in the other. */
    uint8_t *z1 = gzip_mem(raw, 16, &zlen);
    uint8_t *z2 = gzip_mem(raw + 16, len - 16, &zlen2);
    uint8_t *both = malloc(zlen + zlen2);
    memcpy(both, z1, zlen);
    memcpy(both + zlen, z2, zlen2);
    CHECKF(st_idx_parse(both, zlen + zlen2, ST_IDX_IMAGES, "two.gz", &idx, &err) == 0, "%s",
           err.msg);
    CHECK(idx.n == 2 && memcmp(idx.data, raw + 16, len - 16) == 0);
    free(idx.data);

    /* Garbage after the last member. */
    uint8_t *junk = malloc(zlen + 3);
    memcpy(junk, z1, zlen);
    memcpy(junk + zlen, "abc", 3);
    CHECK(st_idx_parse(junk, zlen + 3, ST_IDX_IMAGES, "junk.gz", &idx, &err) == -1);
    CHECKF(strstr(err.msg, "junk.gz") && strstr(err.msg, "3 bytes of garbage after the end of "
                                                          "the gzip stream"),
           "%s", err.msg);
    CHECK(idx.data == NULL);

    /* Labels parsed as images and the other way round. */
    blob lb = make_labels(3, some_labels);
    uint8_t *labels = lb.p;
    size_t llen = lb.len;
    CHECK(st_idx_parse(labels, llen, ST_IDX_IMAGES, "l", &idx, &err) == -1);
    CHECKF(strstr(err.msg, "0x00000801 has 1 dimensions, expected 3"), "%s", err.msg);
    CHECK(st_idx_parse(raw, len, ST_IDX_LABELS, "i", &idx, &err) == -1);
    CHECKF(strstr(err.msg, "0x00000803 has 3 dimensions, expected 1"), "%s", err.msg);
    CHECKF(st_idx_parse(labels, llen, ST_IDX_LABELS, "l", &idx, &err) == 0, "%s", err.msg);
    CHECK(idx.n == 3 && idx.rows == 1 && idx.cols == 1 && idx.data[0] == 9);
    free(idx.data);

    /* A header cut short, and a wrong element type. */
    CHECK(st_idx_parse(raw, 10, ST_IDX_IMAGES, "short", &idx, &err) == -1);
    CHECKF(strstr(err.msg, "short: only 10 bytes, an IDX image header needs 16"), "%s", err.msg);
    put_be32(raw, 0x00000D03);
    CHECK(st_idx_parse(raw, len, ST_IDX_IMAGES, "float", &idx, &err) == -1);
    CHECKF(strstr(err.msg, "data type 0x0D, expected 0x08"), "%s", err.msg);
    free(raw);
    free(labels);
    free(z1);
    free(z2);
    free(both);
    free(junk);
}

/* ToTensor: each byte b becomes b / 255 in float32, and labels are copied by index. */
static void test_batch(void)
{
    /* Image 0 holds every byte value; images 1..2 the usual pattern. */
    blob raw = make_images(ST_IDX_IMAGES, 3, 28, 28);
    for (int j = 0; j < IMG; j++)
        raw.p[16 + j] = (uint8_t)j;
    char img[512], lab[512];
    write_file(img, "batch-images", raw, 0);
    write_file(lab, "batch-labels", make_labels(3, some_labels), 0);
    st_dataset ds;
    st_error err = {{0}};
    CHECKF(st_dataset_load_idx(&ds, img, lab, &err) == 0, "%s", err.msg);
    if (!ds.n)
        return;

    float x[3 * IMG];
    uint8_t y[3] = {99, 99, 99};
    const uint32_t order[3] = {2, 0, 1};
    st_dataset_batch(&ds, order, 3, x, y);
    CHECK(y[0] == some_labels[2] && y[1] == some_labels[0] && y[2] == some_labels[1]);
    int bad = 0;
    /* (float)(b / 255.0) in double, rounded once to float, is the correctly rounded quotient. */
    for (int j = 0; j < IMG; j++)
        bad += x[IMG + j] != (float)((double)(j & 255) / 255.0);
    for (int j = 0; j < IMG; j++)
        bad += x[j] != (float)((double)pixel(2, j) / 255.0);
    CHECKF(bad == 0, "%d values differ from b / 255", bad);
    CHECK(x[IMG + 0] == 0.0f && x[IMG + 255] == 1.0f && x[IMG + 51] == 0.2f);

    /* idx NULL: images 0..n-1 in order; y NULL: no labels. */
    float x1[IMG];
    st_dataset_batch(&ds, NULL, 1, x1, NULL);
    CHECK(memcmp(x1, x + IMG, sizeof x1) == 0);
    st_dataset_free(&ds);
}

static void test_truncate(void)
{
    char img[512], lab[512];
    write_pair(img, lab, "trunc", 6, 0);
    st_dataset ds;
    st_error err = {{0}};
    CHECKF(st_dataset_load_idx(&ds, img, lab, &err) == 0, "%s", err.msg);
    if (!ds.n)
        return;
    st_dataset_truncate(&ds, 10); /* more than there are: no change */
    CHECK(ds.n == 6);
    st_dataset_truncate(&ds, -1);
    CHECK(ds.n == 6);
    st_dataset_truncate(&ds, 2);
    CHECK(ds.n == 2);
    CHECK(ds.images[IMG + 7] == pixel(1, 7) && ds.labels[1] == some_labels[1]);
    float x[2 * IMG];
    uint8_t y[2];
    const uint32_t order[2] = {1, 0};
    st_dataset_batch(&ds, order, 2, x, y); /* ASan: reads only the 2 images kept */
    CHECK(y[0] == some_labels[1] && y[1] == some_labels[0]);
    st_dataset_truncate(&ds, 0);
    CHECK(ds.n == 0);
    st_dataset_free(&ds);
}

static void test_truncated_images(void)
{
    char img[512], lab[512];
    write_pair(img, lab, "short", 3, 0);
    blob raw = make_images(ST_IDX_IMAGES, 3, 28, 28);
    raw.len -= 10;
    write_file(img, "short-images", raw, 0);
    expect_fail(img, lab, img, "has 2342 bytes of pixel data, header says 2352", "truncated",
                NULL);

    /* The same inside a valid gzip stream. */
    raw = make_images(ST_IDX_IMAGES, 3, 28, 28);
    raw.len -= 10;
    write_file(img, "short-images.gz", raw, 1);
    expect_fail(img, lab, img, "has 2342 bytes of pixel data (after decompression), header says "
                "2352", NULL);

    /* A label file cut short. */
    raw = make_labels(3, some_labels);
    raw.len -= 1;
    write_file(lab, "short-labels", raw, 0);
    write_pair(img, (char[512]){0}, "short2", 3, 0);
    expect_fail(img, lab, lab, "has 2 bytes of label data, header says 3", NULL);
}

static void test_trailing_bytes(void)
{
    char img[512], lab[512];
    write_pair(img, lab, "trail", 3, 0);
    for (int gz = 0; gz < 2; gz++) {
        /* gzip: more than the decoder's 4 KiB scratch buffer, all counted. */
        size_t extra = gz ? 5000 : 5;
        blob raw = make_images(ST_IDX_IMAGES, 3, 28, 28);
        raw.p = realloc(raw.p, raw.len + extra);
        memset(raw.p + raw.len, 7, extra);
        raw.len += extra;
        write_file(img, gz ? "trail-images.gz" : "trail-images", raw, gz);
        if (gz)
            expect_fail(img, lab, img, "has 7352 bytes of pixel data (after decompression), "
                        "header says 2352: 5000 bytes of trailing data", NULL);
        else
            expect_fail(img, lab, img, "has 2357 bytes of pixel data, header says 2352",
                        "5 bytes of trailing data", NULL);
    }
}

static void test_wrong_magic(void)
{
    char img[512], lab[512];
    write_pair(img, lab, "magic", 2, 0);
    write_file(img, "magic-images", make_images(0x12345678, 2, 28, 28), 0);
    expect_fail(img, lab, img, "bad magic 0x12345678, expected 0x00000803", NULL);

    write_file(img, "magic-images.gz", make_images(0x00000804, 2, 28, 28), 1);
    expect_fail(img, lab, img, "magic 0x00000804 has 4 dimensions, expected 3", NULL);

    /* Image and label files swapped. */
    write_pair(img, lab, "swap", 2, 0);
    expect_fail(lab, img, lab, "magic 0x00000801 has 1 dimensions, expected 3 (magic 0x00000803",
                NULL);

    /* A gzip file of something else entirely. */
    uint8_t *text = (uint8_t *)strdup("hello, world\n");
    write_file(img, "text.gz", (blob){text, 13}, 1);
    expect_fail(img, lab, img, "bad magic 0x68656C6C, expected 0x00000803", NULL);
}

static void test_wrong_dims(void)
{
    char img[512], lab[512];
    write_pair(img, lab, "dims", 2, 0);
    write_file(img, "dims-images", make_images(ST_IDX_IMAGES, 2, 27, 28), 0);
    expect_fail(img, lab, img, "images are 27 x 28, expected 28 x 28", NULL);
    write_file(img, "dims-images.gz", make_images(ST_IDX_IMAGES, 2, 28, 32), 1);
    expect_fail(img, lab, img, "images are 28 x 32, expected 28 x 28", NULL);
}

static void test_bad_counts(void)
{
    char img[512], lab[512];
    write_pair(img, lab, "count", 2, 0);
    /* n == 0, even with a consistent (empty) body. */
    write_file(img, "count-images", make_images(ST_IDX_IMAGES, 0, 28, 28), 0);
    expect_fail(img, lab, img, "header says 0 images, expected at least 1", NULL);
    /* An absurd n with a tiny file: refused before anything is allocated for it. */
    blob raw = make_images(ST_IDX_IMAGES, 1, 28, 28);
    put_be32(raw.p + 4, 20000000);
    write_file(img, "count-images", raw, 0);
    expect_fail(img, lab, img, "header says 20000000 images, more than the limit of 10000000",
                NULL);
    raw = make_images(ST_IDX_IMAGES, 1, 28, 28);
    put_be32(raw.p + 4, 0xFFFFFFFF);
    write_file(img, "count-images.gz", raw, 1);
    expect_fail(img, lab, img, "header says 4294967295 images", NULL);
    /* The largest allowed n with 1 image of data: truncated, not an allocation of 7.8 GB. */
    raw = make_images(ST_IDX_IMAGES, 1, 28, 28);
    put_be32(raw.p + 4, ST_IDX_MAX_ITEMS);
    write_file(img, "count-images.gz", raw, 1);
    expect_fail(img, lab, img, "has 784 bytes of pixel data (after decompression), header says "
                "7840000000", NULL);
}

static void test_count_mismatch(void)
{
    char img[512], lab[512], unused[512];
    write_pair(img, unused, "three", 3, 0);
    write_pair(unused, lab, "two", 2, 1);
    expect_fail(img, lab, img, lab, "has 3 images", "has 2 labels", NULL);
}

static void test_bad_label(void)
{
    char img[512], lab[512];
    write_pair(img, lab, "label", 3, 0);
    const uint8_t labels[3] = {1, 10, 2};
    write_file(lab, "label-labels", make_labels(3, labels), 0);
    expect_fail(img, lab, lab, "label 10 at index 1, expected 0..9", NULL);
    const uint8_t labels2[3] = {1, 2, 255};
    write_file(lab, "label-labels.gz", make_labels(3, labels2), 1);
    expect_fail(img, lab, lab, "label 255 at index 2", NULL);
}

static void test_corrupt_gzip(void)
{
    char img[512], lab[512];
    write_pair(img, lab, "corrupt", 8, 1);
    size_t len;
    uint8_t *z = read_whole(img, &len);
    CHECK(z != NULL && len > 100);
    if (!z)
        return;
    /* Bytes flipped in the middle of the deflate data. */
    uint8_t *flipped = malloc(len);
    memcpy(flipped, z, len);
    for (size_t i = len / 2; i < len / 2 + 4; i++)
        flipped[i] ^= 0x55;
    write_file(img, "corrupt-images.gz", (blob){flipped, len}, 0);
    expect_fail(img, lab, img, "corrupt gzip data", NULL);

    /* A flipped byte in the CRC of the trailer. */
    flipped = malloc(len);
    memcpy(flipped, z, len);
    flipped[len - 6] ^= 1;
    write_file(img, "corrupt-images.gz", (blob){flipped, len}, 0);
    expect_fail(img, lab, img, "corrupt gzip data (incorrect data check)", NULL);

    /* Cut in half. */
    uint8_t *half = malloc(len / 2);
    memcpy(half, z, len / 2);
    write_file(img, "corrupt-images.gz", (blob){half, len / 2}, 0);
    expect_fail(img, lab, img, "corrupt gzip data: the stream is truncated", NULL);

    /* Only the gzip magic. */
    uint8_t *magic = malloc(2);
    memcpy(magic, z, 2);
    write_file(img, "corrupt-images.gz", (blob){magic, 2}, 0);
    expect_fail(img, lab, img, "corrupt gzip data", NULL);
    free(z);
}

static void test_empty_file(void)
{
    char img[512], lab[512];
    write_pair(img, lab, "empty", 2, 0);
    write_file(img, "empty-images", (blob){malloc(1), 0}, 0);
    expect_fail(img, lab, img, "file is empty, expected an IDX image file (magic 0x00000803)",
                NULL);
    write_file(lab, "empty-labels", (blob){malloc(1), 0}, 0);
    write_pair(img, (char[512]){0}, "empty2", 2, 0);
    expect_fail(img, lab, lab, "file is empty, expected an IDX label file", NULL);
    /* A valid gzip stream of nothing. */
    write_file(img, "empty-images.gz", (blob){malloc(1), 0}, 1);
    expect_fail(img, lab, img, "only 0 bytes after decompression, an IDX image header needs 16",
                NULL);
}

static void test_missing(void)
{
    char img[512], lab[512], missing[512];
    write_pair(img, lab, "present", 2, 0);
    tmp_path(missing, "no-such-file");
    expect_fail(missing, lab, missing, "cannot open: No such file or directory", NULL);
    expect_fail(img, missing, missing, "No such file", NULL);
    char dir[512];
    tmp_path(dir, "");
    expect_fail(dir, lab, "is a directory", NULL);

    st_dataset ds;
    st_error err = {{0}};
    tmp_path(dir, "no-such-dir");
    CHECK(st_dataset_load_fashion(&ds, dir, 1, &err) == -1);
    CHECKF(strstr(err.msg, dir) && strstr(err.msg, "No such file or directory"), "%s", err.msg);
    CHECK(st_dataset_load_fashion(&ds, img, 1, &err) == -1);
    CHECKF(strstr(err.msg, img) && strstr(err.msg, "not a directory"), "%s", err.msg);

    /* An existing directory without the files: says which names were looked for where. */
    tmp_path(dir, "emptydir");
    CHECK(mkdir(dir, 0700) == 0);
    CHECK(st_dataset_load_fashion(&ds, dir, 1, &err) == -1);
    CHECKF(strstr(err.msg, "no FashionMNIST training set in ") && strstr(err.msg, dir) &&
               strstr(err.msg, "train-images-idx3-ubyte and train-images-idx3-ubyte.gz") &&
               strstr(err.msg, "emptydir/FashionMNIST/raw"),
           "%s", err.msg);
    CHECK(st_dataset_load_fashion(&ds, dir, 0, &err) == -1);
    CHECKF(strstr(err.msg, "no FashionMNIST test set") &&
               strstr(err.msg, "t10k-images-idx3-ubyte and t10k-images-idx3-ubyte.gz"),
           "%s", err.msg);
    CHECK(ds.images == NULL && ds.n == 0);
}

/* st_dataset_load_fashion's names and layouts: Debian's (.gz), torchvision's raw directory
 * (plain), torchvision's root (root/FashionMNIST/raw), and images without labels. */
static void test_fashion_names(void)
{
    char path[512], dir[512], sub[512];
    tmp_path(dir, "fmnist");
    CHECK(mkdir(dir, 0700) == 0);
    write_file(path, "fmnist/train-images-idx3-ubyte.gz",
               make_images(ST_IDX_IMAGES, 4, 28, 28), 1);
    write_file(path, "fmnist/train-labels-idx1-ubyte", make_labels(4, some_labels),
               0);
    write_file(path, "fmnist/t10k-images-idx3-ubyte", make_images(ST_IDX_IMAGES, 2, 28, 28), 0);
    st_dataset ds;
    st_error err = {{0}};
    CHECKF(st_dataset_load_fashion(&ds, dir, 1, &err) == 0, "%s", err.msg);
    CHECK(ds.n == 4 && ds.labels[3] == some_labels[3] && ds.images[100] == pixel(0, 100));
    st_dataset_free(&ds);
    /* Trailing slash. */
    strcat(dir, "/");
    CHECKF(st_dataset_load_fashion(&ds, dir, 1, &err) == 0, "%s", err.msg);
    CHECK(ds.n == 4);
    st_dataset_free(&ds);
    /* Test images without labels. */
    CHECK(st_dataset_load_fashion(&ds, dir, 0, &err) == -1);
    CHECKF(strstr(err.msg, "t10k-images-idx3-ubyte but no labels") &&
               strstr(err.msg, "t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz in"),
           "%s", err.msg);

    /* torchvision: root/FashionMNIST/raw, given the root or the raw directory. */
    tmp_path(dir, "tv");
    CHECK(mkdir(dir, 0700) == 0);
    tmp_path(sub, "tv/FashionMNIST");
    CHECK(mkdir(sub, 0700) == 0);
    tmp_path(sub, "tv/FashionMNIST/raw");
    CHECK(mkdir(sub, 0700) == 0);
    write_file(path, "tv/FashionMNIST/raw/t10k-images-idx3-ubyte",
               make_images(ST_IDX_IMAGES, 3, 28, 28), 0);
    write_file(path, "tv/FashionMNIST/raw/t10k-labels-idx1-ubyte",
               make_labels(3, some_labels), 0);
    CHECKF(st_dataset_load_fashion(&ds, dir, 0, &err) == 0, "%s", err.msg);
    CHECK(ds.n == 3 && ds.labels[0] == 9);
    st_dataset_free(&ds);
    CHECKF(st_dataset_load_fashion(&ds, sub, 0, &err) == 0, "%s", err.msg);
    CHECK(ds.n == 3);
    st_dataset_free(&ds);
}

/* The real FashionMNIST from the Debian package dataset-fashion-mnist (installed in CI). */
static void test_real_fashion(void)
{
    struct stat st;
    if (stat(ST_FASHION_DIR, &st) != 0) {
        CHECKF(0, "%s is missing: install the Debian package dataset-fashion-mnist",
               ST_FASHION_DIR);
        return;
    }
    st_dataset tr, te;
    st_error err = {{0}};
    CHECKF(st_dataset_load_fashion(&tr, ST_FASHION_DIR, 1, &err) == 0, "%s", err.msg);
    CHECKF(st_dataset_load_fashion(&te, NULL, 0, &err) == 0, "%s", err.msg); /* default dir */
    CHECK(tr.n == 60000 && tr.rows == 28 && tr.cols == 28);
    CHECK(te.n == 10000 && te.rows == 28 && te.cols == 28);
    if (tr.n != 60000 || te.n != 10000)
        goto out;
    CHECKF(te.labels[0] == 9, "first test label %d, expected 9 (%s)", te.labels[0],
           st_class_names[9]);
    CHECK(tr.labels[0] == 9);
    /* Balanced classes: 6,000 per class in training, 1,000 in test. */
    int ctr[ST_NUM_CLASSES] = {0}, cte[ST_NUM_CLASSES] = {0};
    for (int i = 0; i < tr.n; i++)
        ctr[tr.labels[i]]++;
    for (int i = 0; i < te.n; i++)
        cte[te.labels[i]]++;
    for (int c = 0; c < ST_NUM_CLASSES; c++)
        CHECKF(ctr[c] == 6000 && cte[c] == 1000, "class %d: %d train, %d test", c, ctr[c], cte[c]);
    /* Pixels span 0..255 and the first test image is not blank. */
    int lo = 255, hi = 0;
    long sum = 0;
    for (int j = 0; j < IMG; j++) {
        int v = te.images[j];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        sum += v;
    }
    CHECKF(lo == 0 && hi == 255 && sum > 10000, "first test image: min %d max %d sum %ld", lo, hi,
           sum);
out:
    st_dataset_free(&tr);
    st_dataset_free(&te);
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/stride-test-data-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_class_names);
    RUN(test_load_plain);
    RUN(test_load_gzip);
    RUN(test_parse_memory);
    RUN(test_batch);
    RUN(test_truncate);
    RUN(test_truncated_images);
    RUN(test_trailing_bytes);
    RUN(test_wrong_magic);
    RUN(test_wrong_dims);
    RUN(test_bad_counts);
    RUN(test_count_mismatch);
    RUN(test_bad_label);
    RUN(test_corrupt_gzip);
    RUN(test_empty_file);
    RUN(test_missing);
    RUN(test_fashion_names);
    RUN(test_real_fashion);
    nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return CHECK_DONE();
}
