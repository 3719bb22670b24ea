/* fuzz_safetensors.c - libFuzzer target for the safetensors reader (and the JSON parser under it).
 *
 * Every input is parsed. When it parses, the result must be self-consistent (every tensor inside
 * the buffer, found by its name, metadata found by its keys), and writing it back with the writer
 * must give a file that parses to the same tensors, data and metadata. Any inconsistency aborts.
 *
 * Build and run (clang 14):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc fuzz/fuzz_safetensors.c \
 *         src/safetensors.c src/json.c src/error.c src/fileio.c -lm -o build/fuzz_safetensors
 *   build/fuzz_safetensors -max_total_time=300 fuzz/corpus/safetensors
 */
#include "safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                             \
    do {                                                                                          \
        if (!(cond))                                                                              \
            abort();                                                                              \
    } while (0)

/* Writes sf back out and checks the copy parses to the same thing. */
static void check_roundtrip(const st_safetensors *sf)
{
    int n = st_safetensors_count(sf), nmeta = st_safetensors_meta_count(sf);
    st_sf_tensor_w *w = calloc((size_t)n + 1, sizeof *w);
    const char **meta = calloc(2 * (size_t)nmeta + 1, sizeof *meta);
    REQUIRE(w && meta);
    for (int i = 0; i < n; i++) {
        const st_sf_tensor *t = st_safetensors_at(sf, i);
        w[i] = (st_sf_tensor_w){t->name, t->dtype, t->ndim, t->shape, t->data};
    }
    for (int i = 0; i < nmeta; i++)
        st_safetensors_meta_at(sf, i, &meta[2 * i], &meta[2 * i + 1]);

    uint8_t *buf;
    size_t len;
    st_error err;
    if (st_safetensors_encode(w, n, meta, nmeta, &buf, &len, &err) == 0) {
        st_safetensors back;
        REQUIRE(st_safetensors_parse(buf, len, &back, &err) == 0);
        REQUIRE(st_safetensors_count(&back) == n);
        REQUIRE(st_safetensors_meta_count(&back) == nmeta);
        for (int i = 0; i < n; i++) {
            const st_sf_tensor *a = st_safetensors_at(sf, i), *b = st_safetensors_at(&back, i);
            REQUIRE(strcmp(a->name, b->name) == 0 && a->dtype == b->dtype && a->ndim == b->ndim);
            REQUIRE(a->nbytes == b->nbytes && a->begin == b->begin && a->end == b->end);
            REQUIRE(a->ndim == 0 || memcmp(a->shape, b->shape, (size_t)a->ndim * 8) == 0);
            REQUIRE(a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0);
        }
        for (int i = 0; i < nmeta; i++)
            REQUIRE(strcmp(st_safetensors_meta(&back, meta[2 * i]), meta[2 * i + 1]) == 0);
        st_safetensors_free(&back);
        free(buf);
    } else {
        /* The writer refuses only what the reader also refuses, or the header grew too large
         * (escapes are written differently from how they may be read). */
        REQUIRE(strstr(err.msg, "the header would be") != NULL);
    }
    free(w);
    free(meta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so that any read past the end is caught. */
    uint8_t *buf = malloc(size ? size : 1);
    REQUIRE(buf);
    if (size)
        memcpy(buf, data, size);
    st_safetensors sf;
    st_error err;
    if (st_safetensors_parse(buf, size, &sf, &err) != 0) {
        REQUIRE(err.msg[0] != '\0' && strchr(err.msg, '\n') == NULL);
        REQUIRE(sf.ntensors == 0 && sf.doc == NULL);
        free(buf);
        return 0;
    }
    uint64_t sum = 0, pos = 0;
    for (int i = 0; i < st_safetensors_count(&sf); i++) {
        const st_sf_tensor *t = st_safetensors_at(&sf, i);
        REQUIRE(t->data >= buf + 8 + sf.header_len && t->data + t->nbytes <= buf + size);
        REQUIRE(t->begin == pos && t->end - t->begin == t->nbytes);
        pos = t->end;
        REQUIRE(st_safetensors_find(&sf, t->name) == t);
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++)
            numel *= (size_t)t->shape[d];
        REQUIRE(numel == t->numel && t->nbytes == numel * st_sf_dtype_size(t->dtype));
        for (size_t k = 0; k < t->nbytes; k++)
            sum += t->data[k];
    }
    REQUIRE(8 + sf.header_len + pos == size);
    for (int i = 0; i < st_safetensors_meta_count(&sf); i++) {
        const char *k, *v;
        st_safetensors_meta_at(&sf, i, &k, &v);
        REQUIRE(k && v && st_safetensors_meta(&sf, k) == v);
    }
    check_roundtrip(&sf);
    st_safetensors_free(&sf);
    free(buf);
    (void)sum;
    return 0;
}
