/* image.h - reading a user's picture (PNG, JPEG, PGM/PPM, BMP) and turning it into a
 * FashionMNIST-style 28x28 input for `stride predict`, and drawing such an input in a terminal.
 *
 * The pipeline:
 *   1. decode from memory; the format comes from the first bytes (magic), never the file name;
 *   2. convert every pixel to gray in [0, 1]: luminance 0.299 R + 0.587 G + 0.114 B (the weights
 *      of PIL's convert("L")), alpha composited over white; 8-bit values become v / 255 exactly as
 *      torchvision's ToTensor computes them, 16-bit values v / 65535, PGM/PPM values v / maxval;
 *   3. fit into 28x28 as FashionMNIST images were made: the longest side becomes 28, the aspect
 *      ratio is kept, the picture is centred and the rest is filled with the background colour
 *      (the median of the outermost ring of pixels). Downscaling is an exact area average (box
 *      filter over each output pixel's footprint); upscaling is linear interpolation. A 28x28
 *      image is passed through unchanged;
 *   4. FashionMNIST shows light objects on a dark background: in ST_INVERT_AUTO mode the image is
 *      inverted (v -> 1 - v) when the mean of its outermost ring of pixels is above 0.5.
 *
 * Limits: images up to ST_IMAGE_MAX_SIDE pixels on each side, files up to ST_IMAGE_MAX_FILE
 * bytes. Decoding streams row by row, so st_image_from_memory needs memory for a few rows only
 * (except interlaced PNGs and progressive JPEGs, which the decoders buffer whole).
 */
#ifndef STRIDE_IMAGE_H
#define STRIDE_IMAGE_H

#include "stride.h"

#include <stddef.h>
#include <stdint.h>

#define ST_IMAGE_SIDE 28                        /* the model's input is 28 x 28 */
#define ST_IMAGE_PIXELS (ST_IMAGE_SIDE * ST_IMAGE_SIDE)
#define ST_IMAGE_MAX_SIDE 10000                 /* larger images are refused from their header */
#define ST_IMAGE_MAX_FILE (256u * 1024u * 1024u) /* st_image_load refuses larger files */

typedef enum st_invert_mode {
    ST_INVERT_AUTO = 0, /* invert when the image's border is light (mean > 0.5) */
    ST_INVERT_YES,      /* always invert */
    ST_INVERT_NO        /* never invert */
} st_invert_mode;

/* A decoded image in gray: width * height values in [0, 1], row-major, top row first. */
typedef struct st_gray_image {
    int width, height;
    float *pix;
} st_gray_image;

/* The format of buf from its magic bytes: "PNG", "JPEG", "PGM/PPM", "BMP", or NULL if none. */
const char *st_image_format(const uint8_t *buf, size_t len);

/* Decodes a whole image to gray (steps 1-2 above). name is used in error messages only (NULL:
 * "image"). On success the caller frees out with st_gray_image_free; on failure out is empty. */
int st_image_decode(const uint8_t *buf, size_t len, const char *name, st_gray_image *out,
                    st_error *err);
void st_gray_image_free(st_gray_image *img);

/* Fits a decoded image into out[784] (steps 3-4). *inverted (may be NULL) is set to 1 if the
 * image was inverted, else 0. Fails only on an empty or oversized img, or when out of memory. */
int st_image_fit(const st_gray_image *img, st_invert_mode mode, float out[ST_IMAGE_PIXELS],
                 int *inverted, st_error *err);

/* Decodes and fits in one pass without keeping the whole image (steps 1-4). */
int st_image_from_memory(const uint8_t *buf, size_t len, const char *name, st_invert_mode mode,
                         float out[ST_IMAGE_PIXELS], int *inverted, st_error *err);

/* Reads the file at path ("-" = standard input, at most ST_IMAGE_MAX_FILE bytes) and runs
 * st_image_from_memory on it. */
int st_image_load(const char *path, st_invert_mode mode, float out[ST_IMAGE_PIXELS],
                  int *inverted, st_error *err);

/* ---------------------------------------------------------------- terminal rendering */

typedef enum st_render_style {
    ST_RENDER_TRUECOLOR = 0, /* half blocks with 24-bit gray colours */
    ST_RENDER_256,           /* half blocks with the xterm 256-colour gray ramp */
    ST_RENDER_PLAIN          /* no colour: shades " .:-=+*#%@", two characters per pixel */
} st_render_style;

/* A buffer of this size always holds a rendering, whatever the style. */
#define ST_IMAGE_RENDER_MAX 16384

/* Draws a 28x28 image (values in [0, 1]; others are clamped, NaN is 0) as text: with colour, 14
 * lines of 28 upper half blocks (U+2580, UTF-8), the top pixel as the foreground colour and the
 * bottom pixel as the background, each line ending in a colour reset and '\n'; without colour, 28
 * lines of 56 characters. Like snprintf: writes at most bufsize bytes including the terminating
 * NUL (buf may be NULL when bufsize is 0) and returns the length of the whole rendering. */
int st_image_render_ansi(const float img[ST_IMAGE_PIXELS], st_render_style style, char *buf,
                         size_t bufsize);

#endif
