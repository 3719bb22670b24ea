/* fuzz_idx.c - libFuzzer target for the IDX parser (st_idx_parse in src/data.c), plain and gzip.
 *
 * Each input is parsed as an image file and as a label file. On success the result must be
 * consistent (sizes, labels in 0..9, every byte readable) and a batch is converted; on failure the
 * message must be one non-empty line that names the input. Crashes, leaks and undefined behaviour
 * are reported by the sanitizers.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
 *         fuzz/fuzz_idx.c src/data.c src/error.c -lz -o build/fuzz_idx
 *   build/fuzz_idx -max_total_time=300 fuzz/corpus/idx      (seeds: fuzz/corpus/idx/)
 */
#include "data.h"
#include "stride.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_one(const uint8_t *data, size_t size, uint32_t magic)
{
    st_idx idx;
    st_error err;
    memset(&err, 0, sizeof err);
    if (st_idx_parse(data, size, magic, "fuzz-input", &idx, &err) != 0) {
        if (idx.data || idx.n || err.msg[0] == '\0' || strchr(err.msg, '\n') ||
            strncmp(err.msg, "fuzz-input", 10) != 0)
            abort();
        return;
    }
    const int images = magic == ST_IDX_IMAGES;
    if (idx.magic != magic || idx.n < 1 || (uint32_t)idx.n > ST_IDX_MAX_ITEMS || !idx.data)
        abort();
    if (images ? idx.rows != ST_IDX_ROWS || idx.cols != ST_IDX_COLS
               : idx.rows != 1 || idx.cols != 1)
        abort();
    if (!images) {
        for (int i = 0; i < idx.n; i++)
            if (idx.data[i] > 9)
                abort();
    } else {
        /* Every image through st_dataset_batch (ASan checks the buffer is as large as claimed):
         * ToTensor values in [0, 1]. */
        uint8_t label = 3; /* one label, read through index 0 only */
        st_dataset ds = {idx.n, idx.rows, idx.cols, idx.data, &label};
        float x[ST_IDX_ROWS * ST_IDX_COLS];
        for (uint32_t i = 0; i < (uint32_t)idx.n; i++) {
            st_dataset_batch(&ds, &i, 1, x, NULL);
            for (int j = 0; j < ST_IDX_ROWS * ST_IDX_COLS; j++)
                if (!(x[j] >= 0.0f && x[j] <= 1.0f))
                    abort();
        }
        uint8_t y = 0;
        st_dataset_batch(&ds, NULL, 1, x, &y);
        if (y != 3 || x[0] != (float)idx.data[0] / 255.0f)
            abort();
    }
    free(idx.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_one(data, size, ST_IDX_IMAGES);
    check_one(data, size, ST_IDX_LABELS);
    return 0;
}
