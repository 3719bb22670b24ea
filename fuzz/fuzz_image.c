/* fuzz_image.c - libFuzzer target for the image decoders (src/image.c).
 *
 * Feeds arbitrary bytes to st_image_from_memory (streaming decode + fit into 28x28) and to
 * st_image_decode + st_image_fit (whole image), checks that a success gives values in [0, 1] and
 * that both paths agree, and renders the result. Build and run (clang 14):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION \
 *       -Iinclude -Isrc fuzz/fuzz_image.c src/image.c src/error.c -lpng -ljpeg -lz -lm \
 *       -o build/fuzz_image
 *   mkdir -p /tmp/fuzz_image && build/fuzz_image -max_total_time=300 -max_len=16384 \
 *       /tmp/fuzz_image fuzz/corpus/image
 *
 * FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION makes libpng ignore CRC and Adler-32 checksums so that
 * mutations reach the pixel data. The seed corpus (fuzz/corpus/image) holds tiny valid files of
 * every format and variant plus a few broken ones; inputs that once failed are added there too.
 */
#include "image.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    float out[ST_IMAGE_PIXELS], out2[ST_IMAGE_PIXELS];
    int inv = -1, inv2 = -1;
    st_error err;
    err.msg[0] = '\0';
    int rc = st_image_from_memory(data, size, "fuzz", ST_INVERT_AUTO, out, &inv, &err);
    if (rc != 0 && rc != -1)
        abort();
    if (rc == -1 && err.msg[0] == '\0') /* every failure has a message */
        abort();
    if (rc == 0) {
        for (int i = 0; i < ST_IMAGE_PIXELS; i++)
            if (!(out[i] >= 0.0f && out[i] <= 1.0f))
                abort();
        if (inv != 0 && inv != 1)
            abort();
    }

    st_gray_image img;
    st_error err2;
    int rc2 = st_image_decode(data, size, "fuzz", &img, &err2);
    if (rc2 != rc) /* both paths must accept and refuse the same inputs */
        abort();
    if (rc2 == 0) {
        for (size_t i = 0; i < (size_t)img.width * (size_t)img.height; i++)
            if (!(img.pix[i] >= 0.0f && img.pix[i] <= 1.0f))
                abort();
        if (st_image_fit(&img, ST_INVERT_AUTO, out2, &inv2, &err2) != 0)
            abort();
        if (inv2 != inv || memcmp(out, out2, sizeof out) != 0)
            abort();
        st_gray_image_free(&img);

        char text[ST_IMAGE_RENDER_MAX];
        int n = st_image_render_ansi(out, (st_render_style)(size % 3), text, sizeof text);
        if (n <= 0 || n >= (int)sizeof text || strlen(text) != (size_t)n)
            abort();
    }
    return 0;
}
