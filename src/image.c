/* image.c - decoding a user's picture and fitting it into a FashionMNIST-style 28x28 input.
 *
 * Formats and decoders
 *   PNG   libpng (1.6)            JPEG  libjpeg-turbo (libjpeg API)
 *   PGM/PPM (P2, P3, P5, P6)      BMP   (BITMAPINFOHEADER .. BITMAPV5HEADER, 1/4/8-bit palettes,
 *   strict parsers written here          16/24/32-bit, BI_RGB and BI_BITFIELDS)
 *
 * Why libpng and libjpeg rather than a single-header decoder such as stb_image: the two
 * compressed formats are where the parsing risk lies (deflate, Huffman coding, progressive
 * JPEG scans, chunk handling), and libpng and libjpeg-turbo are the maintained, continuously
 * fuzzed decoders that Debian (and every other distribution) ships security updates for, so a
 * fix reaches Stride with `apt upgrade` and no rebuild of our code. stb_image is convenient but is
 * vendored, so every fix would have to be copied in by hand, and it has had a long list of
 * memory-safety bugs. PGM/PPM and uncompressed BMP are simple enough to parse strictly here, with
 * every size checked before it is used.
 *
 * Robustness
 *   - The input is untrusted: every length is checked before a read, image dimensions are checked
 *     against ST_IMAGE_MAX_SIDE from the header before anything is allocated (libpng:
 *     png_set_user_limits; libjpeg: image_width/height after jpeg_read_header), and libjpeg's
 *     working memory and number of progressive scans are capped.
 *   - libpng and libjpeg report errors by longjmp. The function that calls setjmp keeps all its
 *     state in a context struct owned by its caller (reached through a pointer), so no automatic
 *     variable of the setjmp frame is modified between setjmp and longjmp: nothing needs to be
 *     volatile, and the caller frees everything whichever way the decoder ended.
 *   - Error and warning handlers store the message instead of printing it (libjpeg's default
 *     output_message and libpng's default warning function write to stderr). libjpeg warnings
 *     that mean the pixel data is damaged or missing ("Premature end of JPEG file", bad Huffman
 *     code, ...) are errors here, so a truncated JPEG is refused instead of being shown half gray.
 *
 * Every decoder turns its pixels into rows of gray floats (top row first) and hands them to a
 * sink, which either keeps the whole image (st_image_decode) or resamples it into 28x28 on the fly
 * (st_image_from_memory), keeping only a row and the image's border.
 *
 * Building the libFuzzer target (fuzz/fuzz_image.c) with -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
 * makes libpng ignore CRC and Adler-32 checksums so that the fuzzer can reach the pixel decoding.
 */
#include "image.h"
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h> /* after stdio.h, which it needs */
#include <jerror.h>
#include <png.h>

#define JPEG_MAX_SCANS 500                 /* more progressive scans than this is an attack */
#define JPEG_MAX_MEMORY (1024L * 1024 * 1024) /* libjpeg's working memory (coefficient buffers) */
#define PNG_MAX_CHUNK (8u * 1024 * 1024)   /* largest ancillary chunk libpng may allocate */

/* ---------------------------------------------------------------- small helpers */

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Luminance of a colour with channels in [0, 1] (ITU-R 601-2 weights, as PIL's convert("L")).
 * A gray colour keeps its exact value, so gray images stored as RGB decode exactly. */
static float luma(float r, float g, float b)
{
    if (r == g && g == b)
        return r;
    return 0.299f * r + 0.587f * g + 0.114f * b;
}

/* Composites gray value v with opacity a (both in [0, 1]) over white. */
static float over_white(float v, float a)
{
    if (a >= 1.0f)
        return v;
    return a * v + (1.0f - a);
}

/* v / 255.0f for every 8-bit v, folded by the compiler (correctly rounded, as at run time). */
#define U1(i) (float)(i) / 255.0f
#define U4(i) U1(i), U1((i) + 1), U1((i) + 2), U1((i) + 3)
#define U16(i) U4(i), U4((i) + 4), U4((i) + 8), U4((i) + 12)
#define U64(i) U16(i), U16((i) + 16), U16((i) + 32), U16((i) + 48)
static const float unit8[256] = {U64(0), U64(64), U64(128), U64(192)};

/* One row of interleaved samples (G, GA, RGB or RGBA: 1 to 4 channels, 1 or 2 bytes per sample,
 * big-endian) with full scale maxval, to gray. Used for PNG, JPEG and binary PGM/PPM rows. */
static void samples_to_gray(const uint8_t *src, int w, int channels, int bytes, float maxval,
                            float *dst)
{
    if (bytes == 1 && maxval == 255.0f) { /* the common case, without divisions */
        for (int x = 0; x < w; x++, src += channels) {
            switch (channels) {
            case 1: dst[x] = unit8[src[0]]; break;
            case 2: dst[x] = over_white(unit8[src[0]], unit8[src[1]]); break;
            case 3: dst[x] = luma(unit8[src[0]], unit8[src[1]], unit8[src[2]]); break;
            default:
                dst[x] = over_white(luma(unit8[src[0]], unit8[src[1]], unit8[src[2]]),
                                    unit8[src[3]]);
                break;
            }
        }
        return;
    }
    for (int x = 0; x < w; x++) {
        float v[4];
        for (int c = 0; c < channels; c++) {
            unsigned s = bytes == 1 ? src[0] : (unsigned)src[0] << 8 | src[1];
            v[c] = (float)s / maxval;
            src += bytes;
        }
        switch (channels) {
        case 1: dst[x] = v[0]; break;
        case 2: dst[x] = over_white(v[0], v[1]); break;
        case 3: dst[x] = luma(v[0], v[1], v[2]); break;
        default: dst[x] = over_white(luma(v[0], v[1], v[2]), v[3]); break;
        }
    }
}

/* The size checks every decoder makes on the header's dimensions before allocating anything. */
static int check_size(const char *name, const char *fmt, long long w, long long h, st_error *err)
{
    if (w <= 0 || h <= 0)
        return st_seterr(err, "%s: %s image has zero size (%lld x %lld pixels)", name, fmt, w, h);
    if (w > ST_IMAGE_MAX_SIDE || h > ST_IMAGE_MAX_SIDE)
        return st_seterr(err, "%s: %s image is %lld x %lld pixels, larger than the %d x %d limit",
                         name, fmt, w, h, ST_IMAGE_MAX_SIDE, ST_IMAGE_MAX_SIDE);
    return 0;
}

/* ---------------------------------------------------------------- fitting into 28x28 */

/* Resampling weights along one axis, from src pixels to dst pixels. The weights are integers so
 * that the sums, accumulated in double, are exact: output i = sum_j weight_ij * in_j / total.
 *  - Downscaling (src >= dst), area average: in units of 1/dst source pixel, output i covers
 *    [i*src, (i+1)*src) and source pixel j covers [j*dst, (j+1)*dst); the weight is the length of
 *    the overlap and total = src. An integer factor k gives weights of dst each: a plain mean.
 *  - Upscaling (src < dst), linear interpolation between the two nearest source pixel centres
 *    (pixel-centre aligned, edges clamped), in units of 1/(2*dst); total = 2*dst. */
typedef struct axis {
    int src, dst;
    int64_t total;
    int start[ST_IMAGE_SIDE], count[ST_IMAGE_SIDE], off[ST_IMAGE_SIDE];
    int *weight; /* output i: weight[off[i] .. off[i] + count[i]) for src start[i] ... */
} axis;

static int axis_init(axis *a, int src, int dst)
{
    a->src = src;
    a->dst = dst;
    a->weight = malloc(((size_t)src + 2 * (size_t)dst + 2) * sizeof *a->weight);
    if (!a->weight)
        return -1;
    int n = 0;
    for (int i = 0; i < dst; i++) {
        a->off[i] = n;
        if (src >= dst) {
            int64_t lo = (int64_t)i * src, hi = (int64_t)(i + 1) * src;
            int j0 = (int)(lo / dst), j1 = (int)((hi - 1) / dst);
            a->start[i] = j0;
            a->count[i] = j1 - j0 + 1;
            for (int j = j0; j <= j1; j++) {
                int64_t l = (int64_t)j * dst > lo ? (int64_t)j * dst : lo;
                int64_t h = (int64_t)(j + 1) * dst < hi ? (int64_t)(j + 1) * dst : hi;
                a->weight[n++] = (int)(h - l);
            }
        } else {
            /* centre of output i in source pixels, times 2*dst: (i + 0.5) * src / dst - 0.5 */
            int64_t num = (int64_t)(2 * i + 1) * src - dst;
            int64_t j0 = num < 0 ? 0 : num / (2 * dst), f = num < 0 ? 0 : num % (2 * dst);
            if (j0 >= src - 1 || f == 0) {
                a->start[i] = j0 >= src - 1 ? src - 1 : (int)j0;
                a->count[i] = 1;
                a->weight[n++] = 2 * dst;
            } else {
                a->start[i] = (int)j0;
                a->count[i] = 2;
                a->weight[n++] = (int)(2 * dst - f);
                a->weight[n++] = (int)f;
            }
        }
    }
    a->total = src >= dst ? src : 2 * (int64_t)dst;
    return 0;
}

/* Streaming fit: rows of the source image go in one at a time; the border ring is collected for
 * the background colour and the inversion decision. */
typedef struct fitter {
    int w, h;           /* source size */
    int nw, nh, ox, oy; /* size and position of the resampled image in the 28x28 output */
    axis ax, ay;
    double *hrow;       /* the current row resampled horizontally (nw values) */
    float *border;      /* the outermost ring of source pixels */
    size_t nborder;
    double acc[ST_IMAGE_PIXELS]; /* weighted sums, [i * 28 + k] */
} fitter;

static void fit_free(fitter *f)
{
    free(f->ax.weight);
    free(f->ay.weight);
    free(f->hrow);
    free(f->border);
    f->ax.weight = f->ay.weight = NULL;
    f->hrow = NULL;
    f->border = NULL;
}

/* Longest side -> 28, the other side rounded (at least 1), centred. */
static int fit_begin(fitter *f, int w, int h)
{
    memset(f, 0, sizeof *f);
    f->w = w;
    f->h = h;
    if (w >= h) {
        f->nw = ST_IMAGE_SIDE;
        f->nh = (int)((2LL * h * ST_IMAGE_SIDE + w) / (2LL * w));
    } else {
        f->nh = ST_IMAGE_SIDE;
        f->nw = (int)((2LL * w * ST_IMAGE_SIDE + h) / (2LL * h));
    }
    if (f->nw < 1)
        f->nw = 1;
    if (f->nh < 1)
        f->nh = 1;
    f->ox = (ST_IMAGE_SIDE - f->nw) / 2;
    f->oy = (ST_IMAGE_SIDE - f->nh) / 2;
    f->hrow = malloc((size_t)f->nw * sizeof *f->hrow);
    f->border = malloc((2 * (size_t)w + 2 * (size_t)h) * sizeof *f->border);
    if (!f->hrow || !f->border || axis_init(&f->ax, w, f->nw) || axis_init(&f->ay, h, f->nh)) {
        fit_free(f);
        return -1;
    }
    return 0;
}

static void fit_row(fitter *f, int y, const float *row)
{
    const axis *ax = &f->ax, *ay = &f->ay;
    for (int k = 0; k < f->nw; k++) {
        const int *wt = ax->weight + ax->off[k];
        const float *in = row + ax->start[k];
        double s = 0;
        for (int t = 0; t < ax->count[k]; t++)
            s += (double)wt[t] * in[t];
        f->hrow[k] = s;
    }
    for (int i = 0; i < f->nh; i++) {
        if (y < ay->start[i] || y >= ay->start[i] + ay->count[i])
            continue;
        double wy = ay->weight[ay->off[i] + (y - ay->start[i])];
        double *acc = f->acc + i * ST_IMAGE_SIDE;
        for (int k = 0; k < f->nw; k++)
            acc[k] += wy * f->hrow[k];
    }
    if (y == 0 || y == f->h - 1) {
        for (int x = 0; x < f->w; x++)
            f->border[f->nborder++] = row[x];
    } else {
        f->border[f->nborder++] = row[0];
        if (f->w > 1)
            f->border[f->nborder++] = row[f->w - 1];
    }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static float clamp01(float v)
{
    if (!(v > 0.0f)) /* also NaN */
        return 0.0f;
    return v < 1.0f ? v : 1.0f;
}

/* After the last row: background = median of the border, inversion from its mean. */
static void fit_finish(fitter *f, st_invert_mode mode, float *out, int *inverted)
{
    size_t n = f->nborder;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += f->border[i];
    double mean = sum / (double)n;
    qsort(f->border, n, sizeof *f->border, cmp_float);
    float bg = n % 2 ? f->border[n / 2] : (f->border[n / 2 - 1] + f->border[n / 2]) / 2;

    double total = (double)f->ax.total * (double)f->ay.total;
    for (int i = 0; i < ST_IMAGE_PIXELS; i++)
        out[i] = bg;
    for (int i = 0; i < f->nh; i++)
        for (int k = 0; k < f->nw; k++)
            out[(f->oy + i) * ST_IMAGE_SIDE + f->ox + k] =
                clamp01((float)(f->acc[i * ST_IMAGE_SIDE + k] / total));

    int inv = mode == ST_INVERT_YES || (mode == ST_INVERT_AUTO && mean > 0.5);
    if (inv)
        for (int i = 0; i < ST_IMAGE_PIXELS; i++)
            out[i] = 1.0f - out[i];
    if (inverted)
        *inverted = inv;
}

/* ---------------------------------------------------------------- sinks */

/* Where decoded rows go: the whole image (full != NULL) or the streaming fitter. */
typedef struct sink {
    st_gray_image *full;
    fitter fit;
    int height;
    int rows; /* rows received so far */
} sink;

/* Called by a decoder once the dimensions are known and checked; -1 when out of memory. */
static int sink_begin(sink *s, int w, int h)
{
    s->height = h;
    s->rows = 0;
    if (s->full) {
        s->full->pix = malloc((size_t)w * (size_t)h * sizeof *s->full->pix);
        if (!s->full->pix)
            return -1;
        s->full->width = w;
        s->full->height = h;
        return 0;
    }
    return fit_begin(&s->fit, w, h);
}

/* Rows arrive in order, top row first. */
static void sink_row(sink *s, const float *row)
{
    if (s->full) {
        size_t w = (size_t)s->full->width;
        memcpy(s->full->pix + (size_t)s->rows * w, row, w * sizeof *row);
    } else {
        fit_row(&s->fit, s->rows, row);
    }
    s->rows++;
}

static void sink_free(sink *s)
{
    if (s->full)
        st_gray_image_free(s->full);
    else
        fit_free(&s->fit);
}

/* ---------------------------------------------------------------- PNG (libpng) */

typedef struct png_ctx {
    const uint8_t *buf;
    size_t len, pos;
    int truncated;  /* the data ended early */
    char msg[256];  /* libpng's error message */
    char warning[256]; /* its last warning: the details of "Invalid IHDR data" */
    png_structp png;
    png_infop info;
    uint8_t *raw;   /* one decoded row, or the whole image when interlaced */
    png_bytep *rowp; /* row pointers into raw when interlaced */
    float *gray;
} png_ctx;

static void png_error_cb(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    if (!c->msg[0])
        snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* Warnings (bad ancillary chunks, sRGB profile quirks) do not affect the pixels: keep the last
 * one for the error message, never print it as libpng's default handler would. */
static void png_warning_cb(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->warning, sizeof c->warning, "%s", msg);
}

static void png_read_cb(png_structp png, png_bytep data, size_t n)
{
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) {
        c->truncated = 1;
        png_error(png, "unexpected end of data");
    }
    memcpy(data, c->buf + c->pos, n);
    c->pos += n;
}

/* The part of the PNG decoder that libpng may longjmp out of. All state lives in *c. */
static int png_run(png_ctx *c, sink *s)
{
    if (setjmp(png_jmpbuf(c->png)))
        return -1;
    png_set_read_fn(c->png, c, png_read_cb);
    png_set_user_limits(c->png, ST_IMAGE_MAX_SIDE, ST_IMAGE_MAX_SIDE);
    png_set_chunk_malloc_max(c->png, PNG_MAX_CHUNK);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    png_set_crc_action(c->png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
    png_set_option(c->png, PNG_IGNORE_ADLER32, PNG_OPTION_ON);
#endif
    png_read_info(c->png, c->info); /* dimensions are checked here (user limits, zero) */

    png_set_expand(c->png); /* palette -> RGB, gray < 8 bits -> 8 bits, tRNS -> alpha */
    int passes = png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);

    uint32_t w = png_get_image_width(c->png, c->info), h = png_get_image_height(c->png, c->info);
    int channels = png_get_channels(c->png, c->info);
    int depth = png_get_bit_depth(c->png, c->info);
    size_t rowbytes = png_get_rowbytes(c->png, c->info);
    if (w == 0 || h == 0 || w > ST_IMAGE_MAX_SIDE || h > ST_IMAGE_MAX_SIDE || channels < 1 ||
        channels > 4 || (depth != 8 && depth != 16) ||
        rowbytes != (size_t)w * (size_t)channels * (size_t)(depth / 8))
        png_error(c->png, "unexpected layout after transformations");

    size_t nrows = passes > 1 ? h : 1;
    c->raw = malloc(rowbytes * nrows);
    c->gray = malloc(w * sizeof *c->gray);
    if (passes > 1)
        c->rowp = malloc(h * sizeof *c->rowp);
    if (!c->raw || !c->gray || (passes > 1 && !c->rowp) || sink_begin(s, (int)w, (int)h))
        png_error(c->png, "out of memory");

    float maxval = depth == 8 ? 255.0f : 65535.0f;
    if (passes > 1) {
        for (uint32_t y = 0; y < h; y++)
            c->rowp[y] = c->raw + y * rowbytes;
        png_read_image(c->png, c->rowp);
        for (uint32_t y = 0; y < h; y++) {
            samples_to_gray(c->rowp[y], (int)w, channels, depth / 8, maxval, c->gray);
            sink_row(s, c->gray);
        }
    } else {
        for (uint32_t y = 0; y < h; y++) {
            png_read_row(c->png, c->raw, NULL);
            samples_to_gray(c->raw, (int)w, channels, depth / 8, maxval, c->gray);
            sink_row(s, c->gray);
        }
    }
    png_read_end(c->png, NULL); /* checks the rest of the file, up to IEND */
    return 0;
}

static int decode_png(const uint8_t *buf, size_t len, const char *name, sink *s, st_error *err)
{
    png_ctx c;
    memset(&c, 0, sizeof c);
    c.buf = buf;
    c.len = len;
    c.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_error_cb, png_warning_cb);
    if (c.png)
        c.info = png_create_info_struct(c.png);
    int rc = -1;
    if (!c.png || !c.info)
        snprintf(c.msg, sizeof c.msg, "cannot create the decoder (out of memory)");
    else
        rc = png_run(&c, s);
    png_destroy_read_struct(c.png ? &c.png : NULL, c.info ? &c.info : NULL, NULL);
    free(c.raw);
    free(c.rowp);
    free(c.gray);
    if (rc == 0)
        return 0;
    if (c.truncated)
        return st_seterr(err, "%s: truncated PNG: the data ends after %zu bytes", name, len);
    if (strcmp(c.msg, "out of memory") == 0)
        return st_seterr(err, "%s: out of memory decoding the PNG", name);
    /* libpng reports a bad IHDR as "Invalid IHDR data" after a warning that says why */
    int ihdr = strstr(c.msg, "IHDR") != NULL;
    if (ihdr && strstr(c.warning, "exceeds user limit") && len >= 24)
        return st_seterr(err, "%s: PNG image is %lu x %lu pixels, larger than the %d x %d limit",
                         name, (unsigned long)be32(buf + 16), (unsigned long)be32(buf + 20),
                         ST_IMAGE_MAX_SIDE, ST_IMAGE_MAX_SIDE);
    if (ihdr && strstr(c.warning, "is zero"))
        return st_seterr(err, "%s: PNG image has zero size (%s)", name, c.warning);
    if (ihdr && c.warning[0])
        return st_seterr(err, "%s: invalid PNG: %s (%s)", name, c.msg, c.warning);
    return st_seterr(err, "%s: invalid PNG: %s", name, c.msg);
}

/* ---------------------------------------------------------------- JPEG (libjpeg-turbo) */

typedef struct jpeg_ctx {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    struct jpeg_progress_mgr progress;
    jmp_buf jb;
    int created;   /* jpeg_create_decompress was called */
    int truncated; /* "Premature end of JPEG file" */
    int status;    /* 0 ok, -1 libjpeg error (msg), -2 error already reported in err */
    char msg[JMSG_LENGTH_MAX + 64];
    JSAMPLE *row;
    float *gray;
} jpeg_ctx;

static void jpeg_error_exit_cb(j_common_ptr cinfo)
{
    jpeg_ctx *c = cinfo->client_data;
    if (!c->msg[0])
        (*cinfo->err->format_message)(cinfo, c->msg);
    longjmp(c->jb, 1);
}

/* libjpeg's default prints to stderr: the library never prints. */
static void jpeg_output_message_cb(j_common_ptr cinfo) { (void)cinfo; }

/* Warnings that mean the pixel data is missing or damaged are errors; trace messages and
 * harmless warnings (extraneous bytes before a marker, unknown JFIF version, bad ICC marker) are
 * ignored. */
static void jpeg_emit_message_cb(j_common_ptr cinfo, int level)
{
    jpeg_ctx *c = cinfo->client_data;
    if (level >= 0)
        return;
    switch (cinfo->err->msg_code) {
    case JWRN_JPEG_EOF:
        c->truncated = 1;
        /* fall through */
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_BOGUS_PROGRESSION:
        cinfo->err->error_exit(cinfo);
        break;
    default:
        cinfo->err->num_warnings++;
        break;
    }
}

/* A progressive JPEG can have a very large number of tiny scans that take minutes to decode. */
static void jpeg_progress_cb(j_common_ptr cinfo)
{
    jpeg_ctx *c = cinfo->client_data;
    if (cinfo->is_decompressor && c->cinfo.input_scan_number > JPEG_MAX_SCANS) {
        snprintf(c->msg, sizeof c->msg, "more than %d progressive scans", JPEG_MAX_SCANS);
        longjmp(c->jb, 1);
    }
}

/* The part of the JPEG decoder that libjpeg may longjmp out of. All state lives in *c. */
static int jpeg_run(jpeg_ctx *c, const uint8_t *buf, size_t len, const char *name, sink *s,
                    st_error *err)
{
    if (setjmp(c->jb))
        return -1;
    jpeg_create_decompress(&c->cinfo);
    c->created = 1;
    c->cinfo.mem->max_memory_to_use = JPEG_MAX_MEMORY;
    c->progress.progress_monitor = jpeg_progress_cb;
    c->cinfo.progress = &c->progress;
    jpeg_mem_src(&c->cinfo, buf, (unsigned long)len);
    jpeg_read_header(&c->cinfo, TRUE);
    if (check_size(name, "JPEG", c->cinfo.image_width, c->cinfo.image_height, err))
        return -2;

    switch (c->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: c->cinfo.out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK: c->cinfo.out_color_space = JCS_CMYK; break;
    default: c->cinfo.out_color_space = JCS_RGB; break;
    }
    jpeg_start_decompress(&c->cinfo);
    int w = (int)c->cinfo.output_width, h = (int)c->cinfo.output_height;
    int nc = c->cinfo.output_components;
    if (w != (int)c->cinfo.image_width || h != (int)c->cinfo.image_height ||
        (nc != 1 && nc != 3 && nc != 4)) {
        snprintf(c->msg, sizeof c->msg, "unexpected output layout");
        return -1;
    }
    c->row = malloc((size_t)w * (size_t)nc);
    c->gray = malloc((size_t)w * sizeof *c->gray);
    if (!c->row || !c->gray || sink_begin(s, w, h)) {
        snprintf(c->msg, sizeof c->msg, "out of memory");
        return -1;
    }
    /* Adobe CMYK JPEGs store inverted values (0 = full ink). */
    int adobe = c->cinfo.saw_Adobe_marker;
    while (c->cinfo.output_scanline < c->cinfo.output_height) {
        JSAMPROW rows[1] = {c->row};
        if (jpeg_read_scanlines(&c->cinfo, rows, 1) != 1) {
            snprintf(c->msg, sizeof c->msg, "no scanline decoded");
            return -1;
        }
        if (nc == 4) {
            for (int x = 0; x < w; x++) {
                const JSAMPLE *p = c->row + 4 * x;
                float k = p[3] / 255.0f, rgb[3];
                for (int i = 0; i < 3; i++)
                    rgb[i] = adobe ? (p[i] / 255.0f) * k : (1 - p[i] / 255.0f) * (1 - k);
                c->gray[x] = luma(rgb[0], rgb[1], rgb[2]);
            }
        } else {
            samples_to_gray(c->row, w, nc, 1, 255.0f, c->gray);
        }
        sink_row(s, c->gray);
    }
    jpeg_finish_decompress(&c->cinfo); /* reads up to EOI: a missing end is "truncated" */
    return 0;
}

static int decode_jpeg(const uint8_t *buf, size_t len, const char *name, sink *s, st_error *err)
{
    jpeg_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return st_seterr(err, "%s: out of memory", name);
    c->cinfo.err = jpeg_std_error(&c->jerr);
    c->jerr.error_exit = jpeg_error_exit_cb;
    c->jerr.output_message = jpeg_output_message_cb;
    c->jerr.emit_message = jpeg_emit_message_cb;
    c->cinfo.client_data = c;
    int rc = jpeg_run(c, buf, len, name, s, err);
    if (c->created)
        jpeg_destroy_decompress(&c->cinfo);
    free(c->row);
    free(c->gray);
    if (rc == -1) {
        if (c->truncated)
            st_seterr(err, "%s: truncated JPEG: the data ends before the image is complete", name);
        else
            st_seterr(err, "%s: invalid JPEG: %s", name, c->msg);
    }
    free(c);
    return rc ? -1 : 0;
}

/* ---------------------------------------------------------------- PGM / PPM (netpbm) */

typedef struct pnm {
    const uint8_t *b;
    size_t len, pos;
    const char *name, *fmt; /* fmt: "PGM" or "PPM" */
} pnm;

static int pnm_space(int ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
}

/* Reads the next header number: at least one whitespace or comment ("#" to the end of the line)
 * before it, then decimal digits followed by whitespace or "#". Values above UINT32_MAX are
 * clamped to it. */
static int pnm_header_number(pnm *p, const char *what, unsigned long *v, st_error *err)
{
    int sep = 0;
    while (p->pos < p->len) {
        uint8_t ch = p->b[p->pos];
        if (pnm_space(ch)) {
            p->pos++;
        } else if (ch == '#') {
            while (p->pos < p->len && p->b[p->pos] != '\n' && p->b[p->pos] != '\r')
                p->pos++;
        } else {
            break;
        }
        sep = 1;
    }
    if (p->pos >= p->len)
        return st_seterr(err, "%s: truncated %s header: it ends before the %s", p->name, p->fmt,
                         what);
    if (!sep)
        return st_seterr(err, "%s: invalid %s header: no whitespace before the %s", p->name,
                         p->fmt, what);
    uint8_t ch = p->b[p->pos];
    if (ch < '0' || ch > '9')
        return st_seterr(err, "%s: invalid %s header: the %s is not a number (found '%c')",
                         p->name, p->fmt, what, ch >= 32 && ch < 127 ? ch : '?');
    uint64_t n = 0;
    while (p->pos < p->len && p->b[p->pos] >= '0' && p->b[p->pos] <= '9') {
        n = n * 10 + (uint64_t)(p->b[p->pos++] - '0');
        if (n > UINT32_MAX)
            n = (uint64_t)UINT32_MAX + 1; /* keeps growing no further, still too large */
    }
    if (p->pos < p->len && !pnm_space(p->b[p->pos]) && p->b[p->pos] != '#')
        return st_seterr(err, "%s: invalid %s header: unexpected character after the %s",
                         p->name, p->fmt, what);
    *v = n > UINT32_MAX ? UINT32_MAX : (unsigned long)n;
    return 0;
}

/* Reads one sample of a plain (ASCII) raster: whitespace, then digits, then whitespace or the end.
 * Returns 1 on the end of the data. */
static int pnm_plain_sample(pnm *p, unsigned long maxval, unsigned long *v, st_error *err)
{
    while (p->pos < p->len && pnm_space(p->b[p->pos]))
        p->pos++;
    if (p->pos >= p->len)
        return 1;
    uint8_t ch = p->b[p->pos];
    if (ch < '0' || ch > '9')
        return st_seterr(err, "%s: invalid %s data: unexpected character '%c' at byte %zu",
                         p->name, p->fmt, ch >= 32 && ch < 127 ? ch : '?', p->pos);
    uint64_t n = 0;
    while (p->pos < p->len && p->b[p->pos] >= '0' && p->b[p->pos] <= '9') {
        n = n * 10 + (uint64_t)(p->b[p->pos++] - '0');
        if (n > 65536)
            n = 65536;
    }
    if (p->pos < p->len && !pnm_space(p->b[p->pos]))
        return st_seterr(err, "%s: invalid %s data: unexpected character after a sample at byte "
                         "%zu", p->name, p->fmt, p->pos);
    if (n > maxval)
        return st_seterr(err, "%s: invalid %s data: sample value %llu is larger than maxval %lu",
                         p->name, p->fmt, (unsigned long long)n, maxval);
    *v = (unsigned long)n;
    return 0;
}

static int decode_pnm(const uint8_t *buf, size_t len, const char *name, sink *s, st_error *err)
{
    char type = (char)buf[1];
    int channels = type == '3' || type == '6' ? 3 : 1, plain = type == '2' || type == '3';
    pnm p = {buf, len, 2, name, channels == 3 ? "PPM" : "PGM"};
    unsigned long w, h, maxval;
    if (pnm_header_number(&p, "width", &w, err) || pnm_header_number(&p, "height", &h, err) ||
        pnm_header_number(&p, "maxval", &maxval, err))
        return -1;
    if (check_size(name, p.fmt, (long long)w, (long long)h, err))
        return -1;
    if (maxval < 1 || maxval > 65535)
        return st_seterr(err, "%s: invalid %s header: maxval %lu is outside 1..65535", name,
                         p.fmt, maxval);
    /* exactly one whitespace character separates the header from the raster */
    if (p.pos >= len)
        return st_seterr(err, "%s: truncated %s: no pixel data", name, p.fmt);
    if (!pnm_space(buf[p.pos]))
        return st_seterr(err, "%s: invalid %s header: no whitespace after maxval", name, p.fmt);
    p.pos++;

    size_t samples = (size_t)w * h * (size_t)channels;
    int bytes = maxval < 256 ? 1 : 2;
    if (!plain && len - p.pos < samples * (size_t)bytes)
        return st_seterr(err, "%s: truncated %s: the pixel data needs %zu bytes, only %zu present",
                         name, p.fmt, samples * (size_t)bytes, len - p.pos);

    float *row = malloc(w * sizeof *row);
    if (!row || sink_begin(s, (int)w, (int)h)) {
        free(row);
        return st_seterr(err, "%s: out of memory", name);
    }
    float fmax = (float)maxval;
    int rc = 0;
    size_t got = 0; /* samples read */
    for (unsigned long y = 0; y < h && !rc; y++) {
        for (unsigned long x = 0; x < w && !rc; x++) {
            unsigned long v[3];
            for (int c = 0; c < channels && !rc; c++) {
                if (plain) {
                    rc = pnm_plain_sample(&p, maxval, &v[c], err);
                    if (rc == 1) {
                        rc = st_seterr(err, "%s: truncated %s: %zu of %zu samples present", name,
                                       p.fmt, got, samples);
                    }
                } else {
                    const uint8_t *q = buf + p.pos;
                    v[c] = bytes == 1 ? q[0] : (unsigned long)q[0] << 8 | q[1];
                    p.pos += (size_t)bytes;
                    if (v[c] > maxval)
                        rc = st_seterr(err, "%s: invalid %s data: sample value %lu is larger than "
                                       "maxval %lu", name, p.fmt, v[c], maxval);
                }
                got++;
            }
            if (rc)
                break;
            row[x] = channels == 1 ? (float)v[0] / fmax
                                   : luma((float)v[0] / fmax, (float)v[1] / fmax,
                                          (float)v[2] / fmax);
        }
        if (!rc)
            sink_row(s, row);
    }
    free(row);
    if (rc)
        return -1;
    /* Only whitespace may follow the pixels: anything else means the header's size is wrong. */
    size_t trailing = 0;
    for (size_t i = p.pos; i < len; i++)
        trailing += !pnm_space(buf[i]);
    if (trailing)
        return st_seterr(err, "%s: invalid %s: %zu unexpected bytes after the pixel data", name,
                         p.fmt, len - p.pos);
    return 0;
}

/* ---------------------------------------------------------------- BMP */

/* A BI_BITFIELDS channel: value = (pixel & mask) >> shift, full scale max. */
typedef struct bmp_chan {
    uint32_t mask;
    int shift;
    float max;
} bmp_chan;

/* Checks that a mask is one contiguous run of bits within bpp bits. */
static int bmp_chan_init(bmp_chan *c, uint32_t mask, int bpp)
{
    c->mask = mask;
    c->shift = 0;
    c->max = 0;
    if (!mask)
        return 0;
    if (bpp < 32 && (mask >> bpp))
        return -1;
    while (!((mask >> c->shift) & 1))
        c->shift++;
    uint32_t m = mask >> c->shift;
    if (m & (m + 1)) /* not of the form 2^k - 1 */
        return -1;
    c->max = (float)m;
    return 0;
}

static float bmp_chan_value(const bmp_chan *c, uint32_t px)
{
    return (float)((px & c->mask) >> c->shift) / c->max;
}

static int decode_bmp(const uint8_t *b, size_t len, const char *name, sink *s, st_error *err)
{
    if (len < 18)
        return st_seterr(err, "%s: truncated BMP: %zu bytes, the headers alone need 54", name,
                         len);
    uint32_t off = le32(b + 10), hsize = le32(b + 14);
    if (hsize == 12 || hsize == 16 || hsize == 64)
        return st_seterr(err, "%s: OS/2 BMP (%u-byte header) is not supported: save it as a "
                         "Windows BMP", name, (unsigned)hsize);
    if (hsize != 40 && hsize != 52 && hsize != 56 && hsize != 108 && hsize != 124)
        return st_seterr(err, "%s: invalid BMP: unknown header size %u", name, (unsigned)hsize);
    if (len < 14 + (size_t)hsize)
        return st_seterr(err, "%s: truncated BMP: %zu bytes, the headers need %u", name, len,
                         14 + (unsigned)hsize);
    int32_t w = (int32_t)le32(b + 18), sh = (int32_t)le32(b + 22);
    uint32_t planes = le16(b + 26), bpp = le16(b + 28), comp = le32(b + 30);
    uint32_t clr_used = le32(b + 46);
    int top_down = sh < 0;
    long long h = sh < 0 ? -(long long)sh : sh;

    if (comp == 1 || comp == 2)
        return st_seterr(err, "%s: RLE-compressed BMP (%s) is not supported: save it "
                         "uncompressed", name, comp == 1 ? "BI_RLE8" : "BI_RLE4");
    if (comp == 4 || comp == 5)
        return st_seterr(err, "%s: BMP with embedded %s data is not supported", name,
                         comp == 4 ? "JPEG" : "PNG");
    if (comp != 0 && comp != 3 && comp != 6)
        return st_seterr(err, "%s: invalid BMP: unknown compression %u", name, (unsigned)comp);
    if (planes != 1)
        return st_seterr(err, "%s: invalid BMP: %u colour planes (must be 1)", name,
                         (unsigned)planes);
    if (w < 0)
        return st_seterr(err, "%s: invalid BMP: negative width %d", name, (int)w);
    if (check_size(name, "BMP", w, h, err))
        return -1;
    int bitfields = comp == 3 || comp == 6;
    switch (bpp) {
    case 1:
    case 4:
    case 8:
    case 24:
        if (bitfields)
            return st_seterr(err, "%s: invalid BMP: BI_BITFIELDS with %u bits per pixel", name,
                             (unsigned)bpp);
        break;
    case 16:
    case 32: break;
    default:
        return st_seterr(err, "%s: invalid BMP: %u bits per pixel (1, 4, 8, 16, 24 or 32 are "
                         "supported)", name, (unsigned)bpp);
    }

    size_t pos = 14 + (size_t)hsize; /* what follows the header: masks, then the palette */
    bmp_chan ch[4];                  /* R, G, B, A */
    uint32_t mask[4] = {0, 0, 0, 0};
    if (bitfields) {
        int n = comp == 6 ? 4 : 3;
        if (hsize == 40) { /* the masks follow the header */
            if (len < pos + 4 * (size_t)n)
                return st_seterr(err, "%s: truncated BMP: the colour masks are missing", name);
            for (int i = 0; i < n; i++)
                mask[i] = le32(b + pos + 4 * (size_t)i);
            pos += 4 * (size_t)n;
        } else { /* V2+ headers hold R, G, B masks, V3+ also alpha */
            for (int i = 0; i < 3; i++)
                mask[i] = le32(b + 54 + 4 * i);
            if (hsize >= 56)
                mask[3] = le32(b + 66);
        }
    } else if (bpp == 16) {
        mask[0] = 0x7C00, mask[1] = 0x03E0, mask[2] = 0x001F; /* 5-5-5 */
    } else if (bpp >= 24) {
        mask[0] = 0xFF0000, mask[1] = 0xFF00, mask[2] = 0xFF;
        mask[3] = bpp == 32 ? 0xFF000000u : 0; /* used only if some alpha is not 0, below */
    }
    if (bpp >= 16) {
        for (int i = 0; i < 4; i++)
            if (bmp_chan_init(&ch[i], mask[i], (int)bpp) || (i < 3 && !mask[i]))
                return st_seterr(err, "%s: invalid BMP: bad %s colour mask 0x%08x", name,
                                 (const char *[]){"red", "green", "blue", "alpha"}[i],
                                 (unsigned)mask[i]);
        if ((mask[0] & mask[1]) | (mask[0] & mask[2]) | (mask[1] & mask[2]) |
            (mask[3] & (mask[0] | mask[1] | mask[2])))
            return st_seterr(err, "%s: invalid BMP: overlapping colour masks", name);
    }

    float pal[256];
    uint32_t ncolors = 0;
    if (bpp <= 8) {
        uint32_t maxcolors = 1u << bpp;
        ncolors = clr_used ? clr_used : maxcolors;
        if (ncolors > maxcolors)
            return st_seterr(err, "%s: invalid BMP: a palette of %u colours for %u bits per "
                             "pixel", name, (unsigned)ncolors, (unsigned)bpp);
        if (len < pos + 4 * (size_t)ncolors)
            return st_seterr(err, "%s: truncated BMP: the palette is incomplete", name);
        for (uint32_t i = 0; i < ncolors; i++) {
            const uint8_t *e = b + pos + 4 * (size_t)i; /* B, G, R, reserved */
            pal[i] = luma(e[2] / 255.0f, e[1] / 255.0f, e[0] / 255.0f);
        }
        pos += 4 * (size_t)ncolors;
    }
    if (off < pos)
        return st_seterr(err, "%s: invalid BMP: the pixel data offset %u is inside the headers",
                         name, (unsigned)off);
    size_t stride = ((size_t)bpp * (size_t)w + 31) / 32 * 4;
    size_t need = stride * (size_t)h;
    if (off > len || len - off < need)
        return st_seterr(err, "%s: truncated BMP: the pixel data needs %zu bytes, only %zu "
                         "present", name, need, off > len ? (size_t)0 : len - off);
    const uint8_t *pixels = b + off;
    int bytespp = (int)bpp / 8;

    /* Many writers leave the alpha byte of 32-bit images at 0: an alpha channel that is 0
     * everywhere means "no alpha", not "transparent". */
    if (ch[3].mask && bpp >= 16) {
        int any = 0;
        for (long long y = 0; y < h && !any; y++)
            for (int32_t x = 0; x < w && !any; x++) {
                const uint8_t *q = pixels + (size_t)y * stride + (size_t)x * (size_t)bytespp;
                uint32_t px = bytespp == 2 ? le16(q) : le32(q);
                any = (px & ch[3].mask) != 0;
            }
        if (!any)
            ch[3].mask = 0;
    }

    float *row = malloc((size_t)w * sizeof *row);
    if (!row || sink_begin(s, (int)w, (int)h)) {
        free(row);
        return st_seterr(err, "%s: out of memory", name);
    }
    for (long long y = 0; y < h; y++) {
        const uint8_t *r = pixels + (size_t)(top_down ? y : h - 1 - y) * stride;
        for (int32_t x = 0; x < w; x++) {
            if (bpp <= 8) {
                uint32_t bit = (uint32_t)x * bpp;
                uint32_t idx = (r[bit / 8] >> (8 - bpp - bit % 8)) & ((1u << bpp) - 1);
                if (idx >= ncolors) {
                    free(row);
                    return st_seterr(err, "%s: invalid BMP: pixel index %u is outside the "
                                     "%u-colour palette", name, (unsigned)idx,
                                     (unsigned)ncolors);
                }
                row[x] = pal[idx];
            } else {
                const uint8_t *q = r + (size_t)x * (size_t)bytespp;
                uint32_t px = bytespp == 2   ? le16(q)
                              : bytespp == 3 ? (uint32_t)q[0] | (uint32_t)q[1] << 8 |
                                                   (uint32_t)q[2] << 16
                                             : le32(q);
                float v = luma(bmp_chan_value(&ch[0], px), bmp_chan_value(&ch[1], px),
                               bmp_chan_value(&ch[2], px));
                row[x] = ch[3].mask ? over_white(v, bmp_chan_value(&ch[3], px)) : v;
            }
        }
        sink_row(s, row);
    }
    free(row);
    return 0;
}

/* ---------------------------------------------------------------- format detection */

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
static const uint8_t jpeg_sig[3] = {0xFF, 0xD8, 0xFF};

/* Whether buf starts with sig, or is a (too short) prefix of it. */
static int has_magic(const uint8_t *buf, size_t len, const uint8_t *sig, size_t n)
{
    return memcmp(buf, sig, len < n ? len : n) == 0;
}

static int is_pnm(const uint8_t *buf, size_t len)
{
    return len >= 2 && buf[0] == 'P' &&
           (buf[1] == '2' || buf[1] == '3' || buf[1] == '5' || buf[1] == '6');
}

const char *st_image_format(const uint8_t *buf, size_t len)
{
    if (!buf)
        return NULL;
    if (len >= sizeof png_sig && has_magic(buf, len, png_sig, sizeof png_sig))
        return "PNG";
    if (len >= sizeof jpeg_sig && has_magic(buf, len, jpeg_sig, sizeof jpeg_sig))
        return "JPEG";
    if (is_pnm(buf, len))
        return "PGM/PPM";
    if (len >= 2 && buf[0] == 'B' && buf[1] == 'M')
        return "BMP";
    return NULL;
}

/* Common formats that are not supported, named in the error message. */
static const char *other_format(const uint8_t *buf, size_t len)
{
    if (len >= 6 && (memcmp(buf, "GIF87a", 6) == 0 || memcmp(buf, "GIF89a", 6) == 0))
        return "GIF";
    if (len >= 4 && (memcmp(buf, "II*\0", 4) == 0 || memcmp(buf, "MM\0*", 4) == 0))
        return "TIFF";
    if (len >= 12 && memcmp(buf, "RIFF", 4) == 0 && memcmp(buf + 8, "WEBP", 4) == 0)
        return "WebP";
    if (len >= 12 && memcmp(buf + 4, "ftyp", 4) == 0)
        return memcmp(buf + 8, "avif", 4) == 0 ? "AVIF" : "HEIF/MP4";
    if (len >= 4 && memcmp(buf, "\0\0\1\0", 4) == 0)
        return "an ICO icon";
    if (len >= 5 && (memcmp(buf, "<?xml", 5) == 0 || memcmp(buf, "<svg", 4) == 0))
        return "SVG/XML";
    return NULL;
}

static int decode_any(const uint8_t *buf, size_t len, const char *name, sink *s, st_error *err)
{
    if (!buf || len == 0)
        return st_seterr(err, "%s: empty input (0 bytes): not an image", name);
    if (has_magic(buf, len, png_sig, sizeof png_sig)) {
        if (len < sizeof png_sig)
            return st_seterr(err, "%s: truncated PNG: only %zu bytes", name, len);
        return decode_png(buf, len, name, s, err);
    }
    if (has_magic(buf, len, jpeg_sig, sizeof jpeg_sig)) {
        if (len < sizeof jpeg_sig)
            return st_seterr(err, "%s: truncated JPEG: only %zu bytes", name, len);
        return decode_jpeg(buf, len, name, s, err);
    }
    if (is_pnm(buf, len))
        return decode_pnm(buf, len, name, s, err);
    if (len >= 2 && buf[0] == 'P' && (buf[1] == '1' || buf[1] == '4' || buf[1] == '7'))
        return st_seterr(err, "%s: %s images are not supported (PGM and PPM are)", name,
                         buf[1] == '7' ? "PAM (P7)" : "PBM bitmap (P1/P4)");
    if (len >= 2 && buf[0] == 'B' && buf[1] == 'M')
        return decode_bmp(buf, len, name, s, err);
    const char *other = other_format(buf, len);
    if (other)
        return st_seterr(err, "%s: not a PNG, JPEG, PGM/PPM or BMP image (it looks like %s: "
                         "convert it to PNG)", name, other);
    return st_seterr(err, "%s: not a PNG, JPEG, PGM/PPM or BMP image", name);
}

/* ---------------------------------------------------------------- public API */

int st_image_decode(const uint8_t *buf, size_t len, const char *name, st_gray_image *out,
                    st_error *err)
{
    if (!name)
        name = "image";
    memset(out, 0, sizeof *out);
    sink s;
    memset(&s, 0, sizeof s);
    s.full = out;
    int rc = decode_any(buf, len, name, &s, err);
    if (rc == 0 && (!out->pix || s.rows != s.height))
        rc = st_seterr(err, "%s: internal error: %d of %d rows decoded", name, s.rows, s.height);
    if (rc)
        sink_free(&s);
    return rc;
}

void st_gray_image_free(st_gray_image *img)
{
    if (!img)
        return;
    free(img->pix);
    img->pix = NULL;
    img->width = img->height = 0;
}

int st_image_fit(const st_gray_image *img, st_invert_mode mode, float out[ST_IMAGE_PIXELS],
                 int *inverted, st_error *err)
{
    if (!img || !img->pix || img->width < 1 || img->height < 1 ||
        img->width > ST_IMAGE_MAX_SIDE || img->height > ST_IMAGE_MAX_SIDE)
        return st_seterr(err, "image: invalid gray image (no pixels or bad size)");
    fitter f;
    if (fit_begin(&f, img->width, img->height))
        return st_seterr(err, "image: out of memory");
    for (int y = 0; y < img->height; y++)
        fit_row(&f, y, img->pix + (size_t)y * (size_t)img->width);
    fit_finish(&f, mode, out, inverted);
    fit_free(&f);
    return 0;
}

int st_image_from_memory(const uint8_t *buf, size_t len, const char *name, st_invert_mode mode,
                         float out[ST_IMAGE_PIXELS], int *inverted, st_error *err)
{
    if (!name)
        name = "image";
    sink *s = calloc(1, sizeof *s); /* the fitter holds 6 KB of sums: keep it off the stack */
    if (!s)
        return st_seterr(err, "%s: out of memory", name);
    int rc = decode_any(buf, len, name, s, err);
    if (rc == 0 && (s->height < 1 || s->rows != s->height))
        rc = st_seterr(err, "%s: internal error: %d of %d rows decoded", name, s->rows,
                       s->height);
    if (rc == 0)
        fit_finish(&s->fit, mode, out, inverted);
    sink_free(s);
    free(s);
    return rc;
}

/* Reads a whole file ("-" = standard input) of at most max bytes. */
static int read_file_capped(const char *path, const char *name, size_t max, uint8_t **out,
                            size_t *outlen, st_error *err)
{
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f)
        return st_seterr(err, "%s: cannot open: %s", name, strerror(errno));
    size_t cap = 64 * 1024;
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode)) {
        if ((uintmax_t)sb.st_size > max) {
            if (!is_stdin)
                fclose(f);
            return st_seterr(err, "%s: file is %jd bytes, larger than the %zu MB limit", name,
                             (intmax_t)sb.st_size, max >> 20);
        }
        cap = (size_t)sb.st_size + 1; /* +1 to see the end of file in one read */
    }
    uint8_t *buf = malloc(cap);
    size_t len = 0;
    int rc = 0;
    while (buf) {
        if (len == cap) {
            if (cap > max) { /* read more than max bytes */
                rc = st_seterr(err, "%s: larger than the %zu MB limit", name, max >> 20);
                break;
            }
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb)
                break;
            buf = nb;
            cap = ncap;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f))
                rc = st_seterr(err, "%s: read error: %s", name, strerror(errno));
            break;
        }
    }
    if (!is_stdin)
        fclose(f);
    if (!buf)
        return st_seterr(err, "%s: out of memory", name);
    if (rc) {
        free(buf);
        return -1;
    }
    *out = buf;
    *outlen = len;
    return 0;
}

int st_image_load(const char *path, st_invert_mode mode, float out[ST_IMAGE_PIXELS],
                  int *inverted, st_error *err)
{
    const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (read_file_capped(path, name, ST_IMAGE_MAX_FILE, &buf, &len, err))
        return -1;
    int rc = st_image_from_memory(buf, len, name, mode, out, inverted, err);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- terminal rendering */

typedef struct textbuf {
    char *buf;
    size_t size, len;
} textbuf;

static void put(textbuf *t, const char *s, size_t n)
{
    if (t->len + 1 < t->size) {
        size_t room = t->size - 1 - t->len;
        memcpy(t->buf + t->len, s, n < room ? n : room);
    }
    t->len += n;
}

static void put_colour(textbuf *t, int bg, int level, st_render_style style)
{
    char s[32];
    int n;
    if (style == ST_RENDER_TRUECOLOR) {
        n = snprintf(s, sizeof s, "\x1b[%d;2;%d;%d;%dm", bg ? 48 : 38, level, level, level);
    } else {
        /* xterm-256: 16 is black, 231 white, 232 + k is gray 8 + 10 k (k = 0..23) */
        int best = 16, bestd = level;
        if (255 - level < bestd)
            best = 231, bestd = 255 - level;
        for (int k = 0; k < 24; k++) {
            int d = abs(8 + 10 * k - level);
            if (d < bestd)
                best = 232 + k, bestd = d;
        }
        n = snprintf(s, sizeof s, "\x1b[%d;5;%dm", bg ? 48 : 38, best);
    }
    put(t, s, (size_t)n);
}

static int level_of(float v) { return (int)lrintf(clamp01(v) * 255.0f); }

int st_image_render_ansi(const float img[ST_IMAGE_PIXELS], st_render_style style, char *buf,
                         size_t bufsize)
{
    textbuf t = {buf, buf ? bufsize : 0, 0};
    if (style == ST_RENDER_PLAIN) {
        static const char shades[] = " .:-=+*#%@";
        for (int y = 0; y < ST_IMAGE_SIDE; y++) {
            char line[2 * ST_IMAGE_SIDE + 1];
            for (int x = 0; x < ST_IMAGE_SIDE; x++) {
                int lv = level_of(img[y * ST_IMAGE_SIDE + x]);
                line[2 * x] = line[2 * x + 1] = shades[lv * 10 / 256];
            }
            line[2 * ST_IMAGE_SIDE] = '\n';
            put(&t, line, sizeof line);
        }
    } else {
        for (int y = 0; y < ST_IMAGE_SIDE; y += 2) {
            int fg = -1, bg = -1;
            for (int x = 0; x < ST_IMAGE_SIDE; x++) {
                int top = level_of(img[y * ST_IMAGE_SIDE + x]);
                int bot = level_of(img[(y + 1) * ST_IMAGE_SIDE + x]);
                if (top != fg)
                    put_colour(&t, 0, fg = top, style);
                if (bot != bg)
                    put_colour(&t, 1, bg = bot, style);
                put(&t, "\xe2\x96\x80", 3); /* U+2580 UPPER HALF BLOCK */
            }
            put(&t, "\x1b[0m\n", 5);
        }
    }
    if (t.size)
        t.buf[t.len < t.size ? t.len : t.size - 1] = '\0';
    return (int)t.len;
}
