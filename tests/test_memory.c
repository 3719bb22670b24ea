/* test_memory.c - the large-buffer allocator (memory.c): zeroed like calloc, every byte usable,
 * calloc's alignment at least, 2 MiB-aligned (huge pages offered) from 2 MiB up on Linux, NULL
 * on a size that overflows, and freeing any of them (or NULL) is safe. */
#include "check.h"
#include "internal.h"

#include <stdint.h>
#include <string.h>

static const size_t sizes[] = {0, 1, 100, 4096, ((size_t)2 << 20) - 1, (size_t)2 << 20,
                               3211264 /* conv1's output at batch 64 */, ((size_t)5 << 20) + 3};

static void test_zeroed_and_usable(void)
{
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        size_t n = sizes[t];
        unsigned char *p = st_buffer_alloc(n, 1);
        CHECKF(p != NULL, "%zu bytes", n);
        if (!p)
            continue;
        CHECKF((uintptr_t)p % 16 == 0, "%zu bytes at %p", n, (void *)p);
        size_t nonzero = 0;
        for (size_t i = 0; i < n; i++)
            nonzero += p[i] != 0;
        CHECKF(nonzero == 0, "%zu of %zu bytes not zero", nonzero, n);
        for (size_t i = 0; i < n; i++)
            p[i] = (unsigned char)(i * 7 + t);
        size_t wrong = 0;
        for (size_t i = 0; i < n; i++)
            wrong += p[i] != (unsigned char)(i * 7 + t);
        CHECKF(wrong == 0, "%zu of %zu bytes read back wrong", wrong, n);
        st_buffer_free(p);
    }
    st_buffer_free(NULL);
}

/* Where the huge-page path exists, a buffer of 2 MiB or more starts on a 2 MiB boundary, so
 * that its whole 2 MiB stretches can be huge pages. */
static void test_huge_alignment(void)
{
#if defined(__linux__) && !defined(ST_ASAN)
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        if (sizes[t] < ((size_t)2 << 20))
            continue;
        void *p = st_buffer_alloc(sizes[t], 1);
        CHECKF(p && (uintptr_t)p % ((size_t)2 << 20) == 0, "%zu bytes at %p", sizes[t], p);
        st_buffer_free(p);
    }
#else
    printf("    (no huge-page path in this build: calloc)\n");
#endif
}

static void test_overflow_is_null(void)
{
    CHECK(st_buffer_alloc(SIZE_MAX, 1) == NULL);
    CHECK(st_buffer_alloc(SIZE_MAX / 2, 4) == NULL);
    CHECK(st_buffer_alloc(4, SIZE_MAX / 2) == NULL);
}

/* Many buffers of both kinds alive at once, freed out of order, each keeping its own bytes. */
static void test_interleaved(void)
{
    enum { K = 12 };
    unsigned char *p[K];
    size_t n[K];
    for (int i = 0; i < K; i++) {
        n[i] = i % 3 == 0 ? ((size_t)2 << 20) + (size_t)i * 4099 : (size_t)i * 1000 + 1;
        p[i] = st_buffer_alloc(n[i], 1);
        CHECK(p[i] != NULL);
        if (p[i])
            memset(p[i], i + 1, n[i]);
    }
    for (int k = 0; k < K; k++) { /* the odd ones last to first, then the even ones */
        int i = k < K / 2 ? K - 1 - 2 * k : K - 2 - 2 * (k - K / 2);
        int ok = 1;
        for (size_t j = 0; p[i] && j < n[i]; j++)
            ok &= p[i][j] == (unsigned char)(i + 1);
        CHECKF(ok, "buffer %d", i);
        st_buffer_free(p[i]);
    }
}

int main(void)
{
    RUN(test_zeroed_and_usable);
    RUN(test_huge_alignment);
    RUN(test_overflow_is_null);
    RUN(test_interleaved);
    return CHECK_DONE();
}
