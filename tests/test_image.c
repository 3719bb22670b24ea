/* test_image.c - tests of src/image.c: decoding PNG, JPEG, PGM/PPM and BMP from memory and files,
 * gray conversion, fitting into 28x28, inversion, refusal of broken input, terminal rendering.
 *
 * Every test image is built here, in memory: PNG with libpng, JPEG with libjpeg, PGM/PPM and BMP
 * by hand. Lossless formats must decode to exactly value / 255 (as torchvision's ToTensor). */
#include "check.h"
#include "image.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dirent.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#define N ST_IMAGE_SIDE

/* ---------------------------------------------------------------- helpers */

typedef struct membuf {
    uint8_t *p;
    size_t len, cap;
} membuf;

static void mb_put(membuf *m, const void *d, size_t n)
{
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 256;
        while (cap < m->len + n)
            cap *= 2;
        m->p = realloc(m->p, cap);
        if (!m->p)
            abort();
        m->cap = cap;
    }
    memcpy(m->p + m->len, d, n);
    m->len += n;
}

static void mb_le16(membuf *m, uint32_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    mb_put(m, b, 2);
}

static void mb_le32(membuf *m, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    mb_put(m, b, 4);
}

static void mb_be32(membuf *m, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    mb_put(m, b, 4);
}

static void mb_free(membuf *m)
{
    free(m->p);
    memset(m, 0, sizeof *m);
}

/* The 28x28 test picture: a light textured blob on a dark, slightly noisy background. */
static void pattern(uint8_t p[N * N])
{
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) {
            int dx = x - 14, dy = y - 13;
            p[y * N + x] = (uint8_t)(2 * dx * dx + dy * dy < 150 ? 90 + (x * 29 + y * 47) % 166
                                                                  : (x * 3 + y * 5) % 23);
        }
}

/* Exact equality of decoded floats with v / 255, counting mismatches. */
static int count_mismatch(const float *got, const uint8_t *want, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++)
        bad += got[i] != (float)want[i] / 255.0f;
    return bad;
}

static int has(const st_error *e, const char *s) { return strstr(e->msg, s) != NULL; }

/* Decodes buf and checks it is the w x h image want (exactly). */
static void check_exact(const membuf *m, int w, int h, const uint8_t *want, const char *what)
{
    st_gray_image img;
    st_error err = {{0}};
    int rc = st_image_decode(m->p, m->len, what, &img, &err);
    CHECKF(rc == 0, "%s: %s", what, err.msg);
    if (rc)
        return;
    CHECKF(img.width == w && img.height == h, "%s: %dx%d", what, img.width, img.height);
    if (img.width == w && img.height == h)
        CHECKF(count_mismatch(img.pix, want, w * h) == 0, "%s: %d pixels differ", what,
               count_mismatch(img.pix, want, w * h));
    st_gray_image_free(&img);
}

/* Decodes buf and returns its pixels (caller frees), or NULL. */
static float *decode(const membuf *m, int *w, int *h)
{
    st_gray_image img;
    st_error err = {{0}};
    if (st_image_decode(m->p, m->len, "test", &img, &err)) {
        fprintf(stderr, "    decode: %s\n", err.msg);
        return NULL;
    }
    *w = img.width;
    *h = img.height;
    return img.pix;
}

/* Expects decoding to fail, both whole and streamed, with a message containing want. */
static void check_fails(const uint8_t *buf, size_t len, const char *want, const char *what)
{
    st_error err = {{0}};
    st_gray_image img;
    float out[N * N];
    int inv;
    CHECKF(st_image_decode(buf, len, what, &img, &err) == -1, "%s: decoded", what);
    CHECKF(has(&err, want) && has(&err, what), "%s: message \"%s\" lacks \"%s\"", what, err.msg,
           want);
    memset(&err, 0, sizeof err);
    CHECKF(st_image_from_memory(buf, len, what, ST_INVERT_AUTO, out, &inv, &err) == -1,
           "%s: decoded", what);
    CHECKF(has(&err, want), "%s: message \"%s\" lacks \"%s\"", what, err.msg, want);
}

/* ---------------------------------------------------------------- writers */

static void png_write_cb(png_structp png, png_bytep d, size_t n)
{
    mb_put(png_get_io_ptr(png), d, n);
}

static void png_flush_cb(png_structp png) { (void)png; }

typedef struct png_spec {
    int w, h, color_type, depth, interlace;
    const uint8_t *rows; /* packed rows, top first, (w * channels * depth + 7) / 8 bytes each */
    const png_color *palette;
    int npalette;
    const uint8_t *trns; /* palette alpha */
    int ntrns;
} png_spec;

/* Writes a PNG into *out (cleared first); -1 on a libpng error. */
static int make_png(const png_spec *sp, membuf *out)
{
    memset(out, 0, sizeof *out);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_set_write_fn(png, out, png_write_cb, png_flush_cb);
    png_set_IHDR(png, info, (png_uint_32)sp->w, (png_uint_32)sp->h, sp->depth, sp->color_type,
                 sp->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (sp->palette)
        png_set_PLTE(png, info, sp->palette, sp->npalette);
    if (sp->trns)
        png_set_tRNS(png, info, sp->trns, sp->ntrns, NULL);
    png_write_info(png, info);
    int channels = sp->color_type == PNG_COLOR_TYPE_RGB         ? 3
                   : sp->color_type == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
                   : sp->color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                                                                 : 1;
    size_t stride = ((size_t)sp->w * (size_t)channels * (size_t)sp->depth + 7) / 8;
    int passes = png_set_interlace_handling(png);
    for (int pass = 0; pass < passes; pass++)
        for (int y = 0; y < sp->h; y++)
            png_write_row(png, sp->rows + (size_t)y * stride);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return 0;
}

static membuf png_gray8(const uint8_t *pix, int w, int h)
{
    png_spec sp = {w, h, PNG_COLOR_TYPE_GRAY, 8, 0, pix, NULL, 0, NULL, 0};
    membuf m;
    make_png(&sp, &m);
    return m;
}

/* A JPEG at the given quality; components 1 (gray) or 3 (RGB). */
static membuf make_jpeg(const uint8_t *pix, int w, int h, int components, int quality)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *buf = NULL;
    unsigned long size = 0;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, &size);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = components;
    c.in_color_space = components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)c.next_scanline * (size_t)w * (size_t)components);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    membuf m = {0, 0, 0};
    mb_put(&m, buf, size);
    free(buf);
    return m;
}

/* A binary (P5/P6) or plain (P2/P3) PGM/PPM; samples are 1 or 3 per pixel. */
static membuf make_pnm(char type, const uint16_t *samples, int w, int h, unsigned maxval)
{
    membuf m = {0, 0, 0};
    char hdr[64];
    int n = snprintf(hdr, sizeof hdr, "P%c\n# made by test_image\n%d %d\n%u\n", type, w, h,
                     maxval);
    mb_put(&m, hdr, (size_t)n);
    int channels = type == '3' || type == '6' ? 3 : 1;
    size_t count = (size_t)w * (size_t)h * (size_t)channels;
    for (size_t i = 0; i < count; i++) {
        if (type == '2' || type == '3') {
            n = snprintf(hdr, sizeof hdr, "%u%c", samples[i], i % 17 == 16 ? '\n' : ' ');
            mb_put(&m, hdr, (size_t)n);
        } else if (maxval < 256) {
            uint8_t b = (uint8_t)samples[i];
            mb_put(&m, &b, 1);
        } else {
            uint8_t b[2] = {(uint8_t)(samples[i] >> 8), (uint8_t)samples[i]};
            mb_put(&m, b, 2);
        }
    }
    return m;
}

typedef struct bmp_spec {
    int w, h, bpp, top_down;
    uint32_t hsize, comp;   /* header size (40, 108, ...), compression (0 BI_RGB, 3 BITFIELDS) */
    uint32_t masks[4];      /* BI_BITFIELDS: R, G, B (and A in V4+ headers) */
    int ncolors;            /* palette entries, written as gray (i * 255 / (ncolors - 1)) */
    const uint8_t *rows;    /* packed rows, top first, (w * bpp + 7) / 8 bytes each */
} bmp_spec;

static membuf make_bmp(const bmp_spec *sp)
{
    membuf m = {0, 0, 0};
    size_t stride = ((size_t)sp->bpp * (size_t)sp->w + 31) / 32 * 4;
    size_t packed = ((size_t)sp->w * (size_t)sp->bpp + 7) / 8;
    int after = sp->comp == 3 && sp->hsize == 40 ? 12 : 0; /* masks after a 40-byte header */
    uint32_t off = 14 + sp->hsize + (uint32_t)after + 4u * (uint32_t)sp->ncolors;
    mb_put(&m, "BM", 2);
    mb_le32(&m, off + (uint32_t)(stride * (size_t)sp->h));
    mb_le32(&m, 0);
    mb_le32(&m, off);
    mb_le32(&m, sp->hsize);
    mb_le32(&m, (uint32_t)sp->w);
    mb_le32(&m, (uint32_t)(sp->top_down ? -sp->h : sp->h));
    mb_le16(&m, 1);
    mb_le16(&m, (uint32_t)sp->bpp);
    mb_le32(&m, sp->comp);
    mb_le32(&m, (uint32_t)(stride * (size_t)sp->h));
    mb_le32(&m, 2835);
    mb_le32(&m, 2835);
    mb_le32(&m, (uint32_t)sp->ncolors);
    mb_le32(&m, 0);
    if (sp->hsize > 40) {
        for (int i = 0; i < 4; i++)
            mb_le32(&m, sp->masks[i]);
        for (uint32_t i = 56; i < sp->hsize; i++) {
            uint8_t z = 0;
            mb_put(&m, &z, 1);
        }
    } else if (after) {
        for (int i = 0; i < 3; i++)
            mb_le32(&m, sp->masks[i]);
    }
    for (int i = 0; i < sp->ncolors; i++) {
        uint8_t g = (uint8_t)(i * 255 / (sp->ncolors - 1));
        uint8_t e[4] = {g, g, g, 0};
        mb_put(&m, e, 4);
    }
    for (int r = 0; r < sp->h; r++) {
        int y = sp->top_down ? r : sp->h - 1 - r;
        mb_put(&m, sp->rows + (size_t)y * packed, packed);
        for (size_t i = packed; i < stride; i++) {
            uint8_t z = 0;
            mb_put(&m, &z, 1);
        }
    }
    return m;
}

/* ---------------------------------------------------------------- decoding: each format */

static void test_png(void)
{
    uint8_t p[N * N];
    pattern(p);

    membuf m = png_gray8(p, N, N);
    check_exact(&m, N, N, p, "png-gray8");
    /* 28x28 in, identity out */
    float out[N * N];
    int inv = -1;
    st_error err = {{0}};
    CHECKF(st_image_from_memory(m.p, m.len, "png", ST_INVERT_NO, out, &inv, &err) == 0, "%s",
           err.msg);
    CHECK(count_mismatch(out, p, N * N) == 0);
    CHECK(inv == 0);
    CHECK(strcmp(st_image_format(m.p, m.len), "PNG") == 0);
    mb_free(&m);

    /* interlaced */
    png_spec sp = {N, N, PNG_COLOR_TYPE_GRAY, 8, 1, p, NULL, 0, NULL, 0};
    CHECK(make_png(&sp, &m) == 0);
    check_exact(&m, N, N, p, "png-interlaced");
    mb_free(&m);

    /* 16-bit gray: v * 257 / 65535 is exactly v / 255 */
    uint8_t p16[N * N * 2], rgb[N * N * 3];
    for (int i = 0; i < N * N; i++) {
        p16[2 * i] = p16[2 * i + 1] = p[i];
        rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = p[i];
    }
    sp = (png_spec){N, N, PNG_COLOR_TYPE_GRAY, 16, 0, p16, NULL, 0, NULL, 0};
    CHECK(make_png(&sp, &m) == 0);
    check_exact(&m, N, N, p, "png-gray16");
    mb_free(&m);

    /* RGB with gray content */
    sp = (png_spec){N, N, PNG_COLOR_TYPE_RGB, 8, 0, rgb, NULL, 0, NULL, 0};
    CHECK(make_png(&sp, &m) == 0);
    check_exact(&m, N, N, p, "png-rgb");
    mb_free(&m);

    /* palette of 256 grays */
    png_color pal[256];
    for (int i = 0; i < 256; i++)
        pal[i].red = pal[i].green = pal[i].blue = (png_byte)i;
    sp = (png_spec){N, N, PNG_COLOR_TYPE_PALETTE, 8, 0, p, pal, 256, NULL, 0};
    CHECK(make_png(&sp, &m) == 0);
    check_exact(&m, N, N, p, "png-palette");
    mb_free(&m);

    /* 1-bit gray: 0 -> 0, 1 -> 255 */
    uint8_t bits[2] = {0xA5, 0x80}, want[9] = {255, 0, 255, 0, 0, 255, 0, 255, 255};
    sp = (png_spec){9, 1, PNG_COLOR_TYPE_GRAY, 1, 0, bits, NULL, 0, NULL, 0};
    CHECK(make_png(&sp, &m) == 0);
    check_exact(&m, 9, 1, want, "png-gray1");
    mb_free(&m);
}

static void test_jpeg(void)
{
    uint8_t p[N * N], rgb[N * N * 3];
    pattern(p);
    for (int i = 0; i < N * N; i++)
        rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = p[i];
    for (int comps = 1; comps <= 3; comps += 2) {
        membuf m = make_jpeg(comps == 1 ? p : rgb, N, N, comps, 98);
        CHECK(strcmp(st_image_format(m.p, m.len), "JPEG") == 0);
        int w = 0, h = 0;
        float *g = decode(&m, &w, &h);
        CHECK(g && w == N && h == N);
        if (g) {
            double maxd = 0, sum = 0;
            for (int i = 0; i < N * N; i++) {
                double d = fabs(g[i] * 255.0 - p[i]);
                sum += d;
                maxd = d > maxd ? d : maxd;
            }
            /* lossy: libjpeg-turbo 2.1 gives at most 3 levels off, 0.6 on average, at quality 98;
             * allow some room for other encoders */
            CHECKF(maxd <= 6 && sum / (N * N) < 1.0, "components %d: max %.1f mean %.2f", comps,
                   maxd, sum / (N * N));
        }
        free(g);
        mb_free(&m);
    }
}

static void test_pnm(void)
{
    uint8_t p[N * N];
    uint16_t s1[N * N], s3[N * N * 3], s16[N * N];
    pattern(p);
    for (int i = 0; i < N * N; i++) {
        s1[i] = p[i];
        s3[3 * i] = s3[3 * i + 1] = s3[3 * i + 2] = p[i];
        s16[i] = (uint16_t)(p[i] * 257);
    }
    membuf m = make_pnm('5', s1, N, N, 255);
    CHECK(strcmp(st_image_format(m.p, m.len), "PGM/PPM") == 0);
    check_exact(&m, N, N, p, "pgm-p5");
    mb_free(&m);
    m = make_pnm('2', s1, N, N, 255);
    check_exact(&m, N, N, p, "pgm-p2");
    mb_free(&m);
    m = make_pnm('6', s3, N, N, 255);
    check_exact(&m, N, N, p, "ppm-p6");
    mb_free(&m);
    m = make_pnm('3', s3, N, N, 255);
    check_exact(&m, N, N, p, "ppm-p3");
    mb_free(&m);
    m = make_pnm('5', s16, N, N, 65535);
    check_exact(&m, N, N, p, "pgm-p5-16bit");
    mb_free(&m);

    /* maxval 15: values scale by 1/15 */
    const char small[] = "P2 3 1 15\n0 15 5\n";
    membuf t = {(uint8_t *)small, sizeof small - 1, 0};
    int w, h;
    float *g = decode(&t, &w, &h);
    CHECK(g && w == 3 && h == 1);
    if (g)
        CHECK(g[0] == 0.0f && g[1] == 1.0f && g[2] == 5.0f / 15.0f);
    free(g);
    /* comments between header fields, any whitespace */
    const char comments[] = "P5#c1\n2#c2\r 1\t#c3\n255\nAB";
    t = (membuf){(uint8_t *)comments, sizeof comments - 1, 0};
    g = decode(&t, &w, &h);
    CHECK(g && w == 2 && h == 1);
    if (g)
        CHECK(g[0] == 65 / 255.0f && g[1] == 66 / 255.0f);
    free(g);
}

static void test_bmp(void)
{
    uint8_t p[N * N], q4[N * N], rgb24[N * N * 3], bgra[N * N * 4], packed4[N * N / 2];
    pattern(p);
    for (int i = 0; i < N * N; i++) {
        rgb24[3 * i] = rgb24[3 * i + 1] = rgb24[3 * i + 2] = p[i];
        bgra[4 * i] = bgra[4 * i + 1] = bgra[4 * i + 2] = p[i];
        bgra[4 * i + 3] = 0; /* BI_RGB writers often leave alpha at 0: must read as opaque */
        q4[i] = (uint8_t)(p[i] / 17 * 17);
    }
    for (int i = 0; i < N * N / 2; i++)
        packed4[i] = (uint8_t)((p[2 * i] / 17) << 4 | p[2 * i + 1] / 17);

    bmp_spec sp = {N, N, 8, 0, 40, 0, {0}, 256, p};
    membuf m = make_bmp(&sp);
    CHECK(strcmp(st_image_format(m.p, m.len), "BMP") == 0);
    check_exact(&m, N, N, p, "bmp-8bit-bottom-up");
    mb_free(&m);

    sp = (bmp_spec){N, N, 24, 0, 40, 0, {0}, 0, rgb24};
    m = make_bmp(&sp);
    check_exact(&m, N, N, p, "bmp-24bit-bottom-up");
    mb_free(&m);

    sp = (bmp_spec){N, N, 32, 1, 40, 0, {0}, 0, bgra};
    m = make_bmp(&sp);
    check_exact(&m, N, N, p, "bmp-32bit-top-down");
    mb_free(&m);

    sp = (bmp_spec){N, N, 4, 1, 40, 0, {0}, 16, packed4};
    m = make_bmp(&sp);
    check_exact(&m, N, N, q4, "bmp-4bit");
    mb_free(&m);

    /* 1-bit, width 9 (row padding), bottom-up, with the V5 header */
    uint8_t bits[2 * 2] = {0xA5, 0x80, 0x00, 0x80};
    uint8_t want1[18] = {255, 0, 255, 0, 0, 255, 0, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 255};
    sp = (bmp_spec){9, 2, 1, 0, 124, 0, {0}, 2, bits};
    m = make_bmp(&sp);
    check_exact(&m, 9, 2, want1, "bmp-1bit-v5");
    mb_free(&m);

    /* 16-bit 5-6-5 BI_BITFIELDS: white, black, pure red, pure blue */
    uint16_t px565[4] = {0xFFFF, 0x0000, 0xF800, 0x001F};
    uint8_t rows565[8];
    for (int i = 0; i < 4; i++) {
        rows565[2 * i] = (uint8_t)px565[i];
        rows565[2 * i + 1] = (uint8_t)(px565[i] >> 8);
    }
    sp = (bmp_spec){4, 1, 16, 0, 40, 3, {0xF800, 0x07E0, 0x001F, 0}, 0, rows565};
    m = make_bmp(&sp);
    int w, h;
    float *g = decode(&m, &w, &h);
    CHECK(g && w == 4 && h == 1);
    if (g)
        CHECKF(g[0] == 1.0f && g[1] == 0.0f && fabsf(g[2] - 0.299f) < 1e-6f &&
                   fabsf(g[3] - 0.114f) < 1e-6f,
               "%g %g %g %g", g[0], g[1], g[2], g[3]);
    free(g);
    mb_free(&m);

    /* 32-bit with an alpha mask (V4 header): transparent black is white, opaque black is black,
     * 20% opaque black is 0.8 */
    uint8_t argb[12] = {0, 0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 51};
    sp = (bmp_spec){3, 1, 32, 1, 108, 3, {0xFF0000, 0xFF00, 0xFF, 0xFF000000u}, 0, argb};
    m = make_bmp(&sp);
    g = decode(&m, &w, &h);
    CHECK(g && w == 3 && h == 1);
    if (g)
        CHECKF(g[0] == 1.0f && g[1] == 0.0f && fabsf(g[2] - 0.8f) < 1e-6f, "%g %g %g", g[0], g[1],
               g[2]);
    free(g);
    mb_free(&m);
}

/* ---------------------------------------------------------------- colour and alpha */

static void test_luminance_and_alpha(void)
{
    /* PPM: red, green, blue, white, gray 51 */
    uint16_t rgb[15] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 51, 51, 51};
    membuf m = make_pnm('6', rgb, 5, 1, 255);
    int w, h;
    float *g = decode(&m, &w, &h);
    CHECK(g && w == 5 && h == 1);
    if (g) {
        CHECKF(fabsf(g[0] - 0.299f) < 1e-6f, "red %g", g[0]);
        CHECKF(fabsf(g[1] - 0.587f) < 1e-6f, "green %g", g[1]);
        CHECKF(fabsf(g[2] - 0.114f) < 1e-6f, "blue %g", g[2]);
        CHECK(g[3] == 1.0f && g[4] == 51 / 255.0f);
    }
    free(g);
    mb_free(&m);

    /* PNG RGBA over white: transparent, opaque, 20% and 60% opaque pixels */
    uint8_t rgba[16] = {0, 0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 51, 255, 0, 0, 153};
    png_spec sp = {4, 1, PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, rgba, NULL, 0, NULL, 0};
    CHECK(make_png(&sp, &m) == 0);
    g = decode(&m, &w, &h);
    CHECK(g && w == 4 && h == 1);
    if (g) {
        CHECKF(g[0] == 1.0f && g[1] == 0.0f, "%g %g", g[0], g[1]);
        CHECKF(fabsf(g[2] - 0.8f) < 1e-6f, "%g", g[2]);
        CHECKF(fabsf(g[3] - (0.6f * 0.299f + 0.4f)) < 1e-6f, "%g", g[3]);
    }
    free(g);
    mb_free(&m);

    /* gray + alpha, and a palette with transparency (tRNS) */
    uint8_t ga[4] = {100, 0, 100, 255};
    sp = (png_spec){2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, ga, NULL, 0, NULL, 0};
    CHECK(make_png(&sp, &m) == 0);
    g = decode(&m, &w, &h);
    CHECK(g && g[0] == 1.0f && g[1] == 100 / 255.0f);
    free(g);
    mb_free(&m);
    png_color pal[2] = {{0, 0, 0}, {0, 0, 0}};
    uint8_t trns[2] = {0, 255}, idx[2] = {0, 1};
    sp = (png_spec){2, 1, PNG_COLOR_TYPE_PALETTE, 8, 0, idx, pal, 2, trns, 2};
    CHECK(make_png(&sp, &m) == 0);
    g = decode(&m, &w, &h);
    CHECK(g && g[0] == 1.0f && g[1] == 0.0f);
    free(g);
    mb_free(&m);
}

/* ---------------------------------------------------------------- fitting into 28x28 */

static float ring_median(const uint8_t *img, int w, int h)
{
    float v[4 * 10000];
    int n = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (y == 0 || y == h - 1 || x == 0 || x == w - 1)
                v[n++] = img[y * w + x] / 255.0f;
    for (int i = 1; i < n; i++) /* insertion sort */
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            float t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void test_downscale_exact(void)
{
    uint8_t p[N * N];
    pattern(p);
    /* 2x2 and 3x3 replication resizes back to exactly the original */
    for (int k = 2; k <= 3; k++) {
        int s = N * k;
        uint8_t *big = malloc((size_t)s * (size_t)s);
        for (int y = 0; y < s; y++)
            for (int x = 0; x < s; x++)
                big[y * s + x] = p[(y / k) * N + x / k];
        membuf m = png_gray8(big, s, s);
        float out[N * N];
        int inv = -1;
        st_error err = {{0}};
        CHECKF(st_image_from_memory(m.p, m.len, "big", ST_INVERT_AUTO, out, &inv, &err) == 0,
               "%s", err.msg);
        CHECKF(count_mismatch(out, p, N * N) == 0, "k=%d: %d pixels differ", k,
               count_mismatch(out, p, N * N));
        CHECK(inv == 0);
        /* the same through the two-step API */
        st_gray_image img;
        float out2[N * N];
        CHECK(st_image_decode(m.p, m.len, "big", &img, &err) == 0);
        CHECK(st_image_fit(&img, ST_INVERT_AUTO, out2, NULL, &err) == 0);
        CHECK(memcmp(out, out2, sizeof out) == 0);
        st_gray_image_free(&img);
        mb_free(&m);
        free(big);
    }
}

static void test_nonsquare(void)
{
    /* 28 wide x 56 high: becomes 14 x 28, centred at columns 7..20, each output pixel the mean of
     * a 2x2 block; the sides are the median of the border ring. */
    enum { W = 28, H = 56 };
    uint8_t src[W * H];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            src[y * W + x] = (uint8_t)((x == 0 || y == 0 || x == W - 1 || y == H - 1)
                                           ? 10 + (x + y) % 3
                                           : (x * 37 + y * 101) % 256);
    membuf m = png_gray8(src, W, H);
    float out[N * N];
    int inv = -1;
    st_error err = {{0}};
    CHECKF(st_image_from_memory(m.p, m.len, "tall", ST_INVERT_AUTO, out, &inv, &err) == 0, "%s",
           err.msg);
    float bg = ring_median(src, W, H);
    int bad_pad = 0, bad_box = 0;
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) {
            float v = out[y * N + x];
            if (x < 7 || x >= 21) {
                bad_pad += v != bg;
            } else {
                int sx = 2 * (x - 7), sy = 2 * y;
                double want = (src[sy * W + sx] + src[sy * W + sx + 1] + src[(sy + 1) * W + sx] +
                               src[(sy + 1) * W + sx + 1]) / 4.0 / 255.0;
                bad_box += fabs(v - want) > 1e-6;
            }
        }
    CHECKF(bad_pad == 0, "%d padding pixels are not the background %g", bad_pad, bg);
    CHECKF(bad_box == 0, "%d pixels are not 2x2 means", bad_box);
    CHECK(inv == 0);
    mb_free(&m);

    /* wide: 84 x 30 -> 28 x 10, rows 9..18; a uniform image stays uniform */
    uint8_t wide[84 * 30];
    memset(wide, 77, sizeof wide);
    m = png_gray8(wide, 84, 30);
    CHECK(st_image_from_memory(m.p, m.len, "wide", ST_INVERT_AUTO, out, &inv, &err) == 0);
    int bad = 0;
    for (int i = 0; i < N * N; i++)
        bad += out[i] != 77 / 255.0f;
    CHECKF(bad == 0, "%d pixels differ", bad);
    mb_free(&m);

    /* a dark 30 x 20 image with a white square: the square lands in rows 4..22 only */
    uint8_t r[30 * 20];
    memset(r, 0, sizeof r);
    for (int y = 5; y < 15; y++)
        for (int x = 10; x < 20; x++)
            r[y * 30 + x] = 255;
    m = png_gray8(r, 30, 20);
    CHECK(st_image_from_memory(m.p, m.len, "rect", ST_INVERT_AUTO, out, &inv, &err) == 0);
    double top = 0, mid = 0;
    for (int x = 0; x < N; x++) {
        top += out[3 * N + x] + out[23 * N + x];
        mid += out[14 * N + x];
    }
    CHECKF(top == 0 && mid > 5, "top %g mid %g", top, mid);
    mb_free(&m);
}

/* The background and the inversion come from the outermost ring of pixels only. */
static void test_border(void)
{
    float out[N * N];
    int inv = -1;
    st_error err = {{0}};
    /* 10 x 30: top and bottom rows 0.2 (20 pixels), left column 0.8 and right column 0.6 (28
     * each), a white inside. Ring mean 0.568 -> inverted; median 0.6 -> padding 1 - 0.6. */
    float *pix = malloc(10 * 30 * sizeof *pix);
    for (int y = 0; y < 30; y++)
        for (int x = 0; x < 10; x++)
            pix[y * 10 + x] = y == 0 || y == 29 ? 0.2f : x == 0 ? 0.8f : x == 9 ? 0.6f : 1.0f;
    st_gray_image img = {10, 30, pix};
    CHECK(st_image_fit(&img, ST_INVERT_AUTO, out, &inv, &err) == 0);
    CHECK(inv == 1);
    /* 30 -> 28 rows, 10 -> 9 columns (9.33 rounded) centred at 9..17 */
    CHECKF(out[0] == 1.0f - 0.6f && out[8] == 1.0f - 0.6f && out[18] == 1.0f - 0.6f,
           "%g %g %g", out[0], out[8], out[18]);
    CHECK(out[9] != out[8] && out[17] != out[18]);
    free(pix);

    /* a 1 x 5 strip: an odd number of ring pixels, median 0.3, placed at columns 11..16 */
    float strip[5] = {0.1f, 0.2f, 0.9f, 0.3f, 0.4f};
    img = (st_gray_image){1, 5, strip};
    CHECK(st_image_fit(&img, ST_INVERT_AUTO, out, &inv, &err) == 0);
    CHECK(inv == 0);
    CHECKF(out[10] == 0.3f && out[17] == 0.3f && out[11] == 0.1f && out[16] == 0.1f, "%g %g %g",
           out[10], out[11], out[17]);

    /* st_image_fit refuses an empty image */
    img = (st_gray_image){0, 0, NULL};
    CHECK(st_image_fit(&img, ST_INVERT_AUTO, out, &inv, &err) == -1);
}

static void test_upscale(void)
{
    /* 7x7 uniform -> uniform; 2x2 checker -> smooth ramp between the values, no blocks */
    uint8_t u[49];
    memset(u, 200, sizeof u);
    membuf m = png_gray8(u, 7, 7);
    float out[N * N];
    int inv;
    st_error err = {{0}};
    CHECK(st_image_from_memory(m.p, m.len, "up", ST_INVERT_NO, out, &inv, &err) == 0);
    int bad = 0;
    for (int i = 0; i < N * N; i++)
        bad += out[i] != 200 / 255.0f;
    CHECKF(bad == 0, "%d pixels differ", bad);
    mb_free(&m);

    uint8_t c[4] = {0, 255, 255, 0};
    m = png_gray8(c, 2, 2);
    CHECK(st_image_from_memory(m.p, m.len, "up2", ST_INVERT_NO, out, &inv, &err) == 0);
    int distinct = 0;
    for (int x = 1; x < N; x++)
        distinct += out[x] != out[x - 1];
    CHECKF(distinct >= 10, "only %d steps along the top row", distinct);
    CHECK(out[0] == 0.0f && out[N - 1] == 1.0f); /* edges clamp to the corner pixels */
    mb_free(&m);
}

static void test_invert(void)
{
    uint8_t p[N * N], neg[N * N];
    pattern(p);
    for (int i = 0; i < N * N; i++)
        neg[i] = (uint8_t)(255 - p[i]);
    membuf m = png_gray8(neg, N, N);
    float out[N * N];
    int inv = -1;
    st_error err = {{0}};
    CHECK(st_image_from_memory(m.p, m.len, "neg", ST_INVERT_AUTO, out, &inv, &err) == 0);
    CHECK(inv == 1);
    double maxd = 0;
    for (int i = 0; i < N * N; i++)
        maxd = fmax(maxd, fabs(out[i] - p[i] / 255.0));
    CHECKF(maxd < 1e-6, "max difference %g", maxd);
    CHECK(st_image_from_memory(m.p, m.len, "neg", ST_INVERT_NO, out, &inv, &err) == 0);
    CHECK(inv == 0 && count_mismatch(out, neg, N * N) == 0);
    mb_free(&m);

    m = png_gray8(p, N, N);
    CHECK(st_image_from_memory(m.p, m.len, "pos", ST_INVERT_YES, out, &inv, &err) == 0);
    CHECK(inv == 1 && fabsf(out[0] - (1.0f - p[0] / 255.0f)) < 1e-7f);
    CHECK(st_image_from_memory(m.p, m.len, "pos", ST_INVERT_AUTO, out, &inv, &err) == 0);
    CHECK(inv == 0);
    mb_free(&m);

    /* the threshold: a border of mean 120/255 (0.47) is dark, 136/255 (0.53) is light */
    for (int level = 120; level <= 136; level += 16) {
        uint8_t flat[N * N];
        memset(flat, level, sizeof flat);
        m = png_gray8(flat, N, N);
        CHECK(st_image_from_memory(m.p, m.len, "flat", ST_INVERT_AUTO, out, &inv, &err) == 0);
        CHECKF(inv == (level > 128), "level %d: inverted %d", level, inv);
        mb_free(&m);
    }

    /* a product photo: dark object on a white, larger-than-square canvas is padded with white,
     * then inverted: the padding becomes black */
    uint8_t photo[40 * 20];
    memset(photo, 255, sizeof photo);
    for (int y = 5; y < 15; y++)
        for (int x = 15; x < 25; x++)
            photo[y * 40 + x] = 30;
    m = png_gray8(photo, 40, 20);
    CHECK(st_image_from_memory(m.p, m.len, "photo", ST_INVERT_AUTO, out, &inv, &err) == 0);
    CHECK(inv == 1 && out[0] == 0.0f && out[N * N - 1] == 0.0f);
    CHECKF(fabsf(out[14 * N + 14] - 225 / 255.0f) < 1e-6f, "%g", out[14 * N + 14]);
    mb_free(&m);
}

/* ---------------------------------------------------------------- broken input */

static void test_broken(void)
{
    uint8_t p[N * N];
    uint16_t s[N * N];
    pattern(p);
    for (int i = 0; i < N * N; i++)
        s[i] = p[i];
    st_error err = {{0}};
    float out[N * N];
    int inv;

    check_fails((const uint8_t *)"", 0, "empty", "empty");
    CHECK(st_image_from_memory(NULL, 0, NULL, ST_INVERT_AUTO, out, &inv, &err) == -1);
    CHECK(has(&err, "image: empty"));

    uint8_t rnd[1000];
    uint32_t x = 12345;
    for (int i = 0; i < 1000; i++) {
        x = x * 1103515245u + 12345u;
        rnd[i] = (uint8_t)(x >> 16);
    }
    rnd[0] = 'x';
    check_fails(rnd, sizeof rnd, "not a PNG, JPEG, PGM/PPM or BMP image", "random");
    CHECK(st_image_format(rnd, sizeof rnd) == NULL);
    check_fails((const uint8_t *)"hello, world\n", 13, "not a PNG", "text");

    /* every format, truncated to half its length, and at every shorter length (no crash, always an
     * error) */
    bmp_spec bsp = {N, N, 8, 0, 40, 0, {0}, 256, p};
    membuf files[4] = {png_gray8(p, N, N), make_jpeg(p, N, N, 1, 95), make_bmp(&bsp),
                       make_pnm('5', s, N, N, 255)};
    const char *names[4] = {"half-png", "half-jpeg", "half-bmp", "half-pgm"};
    for (int f = 0; f < 4; f++) {
        check_fails(files[f].p, files[f].len / 2, "truncated", names[f]);
        int ok = 0;
        for (size_t len = 1; len < files[f].len; len++) {
            st_error e = {{0}};
            ok += st_image_from_memory(files[f].p, len, "cut", ST_INVERT_AUTO, out, &inv, &e) == 0;
            if (!e.msg[0])
                ok++;
        }
        CHECKF(ok == 0, "%s: %d truncated lengths accepted", names[f], ok);
    }
    /* bytes after a PNG's IEND or a JPEG's EOI are ignored, as other readers do */
    for (int f = 0; f < 2; f++) {
        membuf t = {0, 0, 0};
        mb_put(&t, files[f].p, files[f].len);
        mb_put(&t, "trailing", 8);
        st_error e = {{0}};
        CHECKF(st_image_from_memory(t.p, t.len, "tail", ST_INVERT_AUTO, out, &inv, &e) == 0, "%s",
               e.msg);
        mb_free(&t);
    }

    /* random bytes after each format's magic */
    const char *magic[4] = {"\x89PNG\r\n\x1a\n", "\xff\xd8\xff", "BM", "P5"};
    for (int f = 0; f < 4; f++) {
        uint8_t b[600];
        memcpy(b, rnd, sizeof b);
        memcpy(b, magic[f], strlen(magic[f]));
        st_error e = {{0}};
        CHECK(st_image_from_memory(b, sizeof b, "junk", ST_INVERT_AUTO, out, &inv, &e) == -1);
        CHECK(e.msg[0] != 0);
    }

    /* a flipped byte in the PNG's pixel data fails its CRC */
    membuf c = {0, 0, 0};
    mb_put(&c, files[0].p, files[0].len);
    c.p[c.len - 20] ^= 0x40;
    check_fails(c.p, c.len, "invalid PNG", "crc");
    mb_free(&c);
    for (int f = 0; f < 4; f++)
        mb_free(&files[f]);

    /* a PNG whose IHDR (with a correct CRC) claims 20000 x 20000 */
    uint8_t ihdr[17] = {'I', 'H', 'D', 'R', 0, 0, 0x4E, 0x20, 0, 0, 0x4E, 0x20, 8, 0, 0, 0, 0};
    mb_put(&c, "\x89PNG\r\n\x1a\n", 8);
    mb_be32(&c, 13);
    mb_put(&c, ihdr, 17);
    mb_be32(&c, (uint32_t)crc32(0, ihdr, 17));
    mb_put(&c, "\0\0\0\0IEND\xae\x42\x60\x82", 12);
    check_fails(c.p, c.len, "20000 x 20000 pixels, larger than the 10000 x 10000 limit",
                "huge-png");
    mb_free(&c);

    /* a BMP claiming 100000 x 100000, and a zero width */
    bsp = (bmp_spec){2, 2, 24, 0, 40, 0, {0}, 0, (const uint8_t *)"abcdefghijkl"};
    membuf b = make_bmp(&bsp);
    uint8_t big[4] = {0xA0, 0x86, 0x01, 0x00};
    memcpy(b.p + 18, big, 4);
    memcpy(b.p + 22, big, 4);
    check_fails(b.p, b.len, "larger than the 10000 x 10000 limit", "huge-bmp");
    memset(b.p + 18, 0, 4);
    check_fails(b.p, b.len, "zero size", "zero-bmp");
    mb_free(&b);

    /* RLE and OS/2 BMPs are refused by name */
    bsp = (bmp_spec){2, 2, 8, 0, 40, 1, {0}, 256, (const uint8_t *)"abcd"};
    b = make_bmp(&bsp);
    check_fails(b.p, b.len, "RLE", "rle-bmp");
    b.p[14] = 12;
    check_fails(b.p, b.len, "OS/2", "os2-bmp");
    mb_free(&b);
    /* a palette index beyond the palette */
    bsp = (bmp_spec){2, 1, 8, 0, 40, 0, {0}, 4, (const uint8_t *)"\x01\x07"};
    b = make_bmp(&bsp);
    check_fails(b.p, b.len, "outside the 4-colour palette", "index-bmp");
    mb_free(&b);

    /* PGM: maxval 0 and 70000, zero size, garbage in and after the header, a sample above
     * maxval, trailing garbage, PBM */
    struct { const char *data, *want; } pgm[] = {
        {"P5 2 2 0\nabcd", "maxval 0 is outside 1..65535"},
        {"P5 2 2 70000\nabcdefgh", "maxval 70000 is outside 1..65535"},
        {"P5 0 2 255\n", "zero size"},
        {"P5 20000 20000 255\n", "larger than the 10000 x 10000 limit"},
        {"P5 2 x2 255\nabcd", "height is not a number"},
        {"P5 2 2x 255\nabcd", "unexpected character after the height"},
        {"P5 2 2 255", "truncated"},
        {"P52 2 255\nabcd", "no whitespace before the width"},
        {"P2 2 2 255\n1 2 x 4\n", "unexpected character 'x'"},
        {"P2 2 2 255\n1 2 3\n", "truncated PGM: 3 of 4 samples"},
        {"P2 2 2 100\n1 2 3 101\n", "sample value 101 is larger than maxval 100"},
        {"P5 2 2 100\n\x01\x02\x03\xC8", "sample value 200 is larger than maxval 100"},
        {"P5 2 2 255\nabcdGARBAGE", "unexpected bytes after the pixel data"},
        {"P3 1 1 255\n1 2 3 4\n", "unexpected bytes after the pixel data"},
        {"P4 8 1\n\xff", "PBM"},
        {"P5 2", "truncated PGM header"},
    };
    for (size_t i = 0; i < sizeof pgm / sizeof pgm[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "pgm%zu", i);
        check_fails((const uint8_t *)pgm[i].data, strlen(pgm[i].data), pgm[i].want, name);
    }
    /* but trailing whitespace is fine */
    const char ok[] = "P5 2 1 255\nab\n";
    CHECK(st_image_from_memory((const uint8_t *)ok, sizeof ok - 1, "ok", ST_INVERT_AUTO, out,
                               &inv, &err) == 0);
    /* a too-short prefix of a magic number */
    check_fails((const uint8_t *)"\x89PN", 3, "truncated PNG", "short-png");
    check_fails((const uint8_t *)"\xff\xd8", 2, "truncated JPEG", "short-jpeg");
}

/* ---------------------------------------------------------------- files */

static void test_load_file(void)
{
    uint8_t p[N * N];
    pattern(p);
    membuf m = png_gray8(p, N, N);
    char path[] = "/tmp/stride_test_image_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, m.p, m.len) == (ssize_t)m.len);
    close(fd);
    float out[N * N];
    int inv = -1;
    st_error err = {{0}};
    CHECKF(st_image_load(path, ST_INVERT_AUTO, out, &inv, &err) == 0, "%s", err.msg);
    CHECK(count_mismatch(out, p, N * N) == 0 && inv == 0);
    /* an empty file */
    FILE *f = fopen(path, "wb");
    if (f)
        fclose(f);
    CHECK(st_image_load(path, ST_INVERT_AUTO, out, &inv, &err) == -1);
    CHECKF(has(&err, path) && has(&err, "empty"), "%s", err.msg);
    unlink(path);
    CHECK(st_image_load(path, ST_INVERT_AUTO, out, &inv, &err) == -1);
    CHECKF(has(&err, "cannot open") && has(&err, path), "%s", err.msg);
    CHECK(st_image_load("/tmp", ST_INVERT_AUTO, out, &inv, &err) == -1);
    CHECKF(has(&err, "/tmp"), "%s", err.msg);
    mb_free(&m);
}

/* The fuzzer's seed corpus (fuzz/corpus/image, found from the repository root or tests/): every
 * file decodes, except those named broken-* and crash-*, which must fail cleanly. */
static void test_corpus(void)
{
    const char *dirs[2] = {"fuzz/corpus/image", "../fuzz/corpus/image"};
    DIR *d = NULL;
    const char *dir = NULL;
    for (int i = 0; i < 2 && !d; i++)
        d = opendir(dir = dirs[i]);
    if (!d) {
        printf("     (no fuzz/corpus/image here: skipped)\n");
        return;
    }
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int bad = strncmp(e->d_name, "broken-", 7) == 0 || strncmp(e->d_name, "crash-", 6) == 0;
        float out[N * N];
        int inv;
        st_error err = {{0}};
        int rc = st_image_load(path, ST_INVERT_AUTO, out, &inv, &err);
        CHECKF(rc == (bad ? -1 : 0), "%s: %s", path, rc ? err.msg : "decoded");
        files++;
    }
    closedir(d);
    CHECK(files > 20);
}

/* ---------------------------------------------------------------- rendering */

static void test_render(void)
{
    float img[N * N];
    for (int i = 0; i < N * N; i++)
        img[i] = (float)(i % 29) / 28.0f;
    img[0] = -1.0f;
    img[1] = 2.0f;
    img[2] = NAN;

    char *buf = malloc(ST_IMAGE_RENDER_MAX);
    int n = st_image_render_ansi(img, ST_RENDER_PLAIN, buf, ST_IMAGE_RENDER_MAX);
    CHECK(n == N * (2 * N + 1) && (int)strlen(buf) == n);
    int lines = 0;
    for (int i = 0; i < n; i++)
        lines += buf[i] == '\n';
    CHECK(lines == N);
    CHECK(buf[0] == ' ' && buf[2] == '@' && buf[4] == ' '); /* clamped, NaN is 0 */

    for (int style = ST_RENDER_TRUECOLOR; style <= ST_RENDER_256; style++) {
        n = st_image_render_ansi(img, (st_render_style)style, buf, ST_IMAGE_RENDER_MAX);
        CHECK(n > 0 && n < ST_IMAGE_RENDER_MAX && (int)strlen(buf) == n);
        int blocks = 0;
        lines = 0;
        for (const char *q = buf; (q = strstr(q, "\xe2\x96\x80")); q += 3)
            blocks++;
        for (int i = 0; i < n; i++)
            lines += buf[i] == '\n';
        CHECK(blocks == N * N / 2 && lines == N / 2);
        CHECK(strstr(buf, style == ST_RENDER_TRUECOLOR ? "\x1b[38;2;255;255;255m"
                                                       : "\x1b[38;5;231m") != NULL);
        CHECK(strstr(buf, "\x1b[0m\n") != NULL);
        /* snprintf semantics: the length is the same with no buffer, a short one is cut */
        CHECK(st_image_render_ansi(img, (st_render_style)style, NULL, 0) == n);
        char small[10];
        CHECK(st_image_render_ansi(img, (st_render_style)style, small, sizeof small) == n);
        CHECK(strlen(small) == sizeof small - 1 && memcmp(small, buf, sizeof small - 1) == 0);
    }
    /* the worst case (every cell changes both colours, three-digit levels) fits the maximum */
    for (int i = 0; i < N * N; i++)
        img[i] = (i + i / N) % 2 ? 1.0f : 0.5f;
    n = st_image_render_ansi(img, ST_RENDER_TRUECOLOR, NULL, 0);
    CHECKF(n < ST_IMAGE_RENDER_MAX, "%d", n);
    free(buf);
}

int main(void)
{
    RUN(test_png);
    RUN(test_jpeg);
    RUN(test_pnm);
    RUN(test_bmp);
    RUN(test_luminance_and_alpha);
    RUN(test_downscale_exact);
    RUN(test_nonsquare);
    RUN(test_border);
    RUN(test_upscale);
    RUN(test_invert);
    RUN(test_broken);
    RUN(test_load_file);
    RUN(test_corpus);
    RUN(test_render);
    return CHECK_DONE();
}
