/* internal.h - declarations shared by the library's source files (not installed). */
#ifndef STRIDE_INTERNAL_H
#define STRIDE_INTERNAL_H

#include "stride.h"

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define ST_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define ST_PRINTF(a, b)
#endif

/* Element-wise loops built twice, for AVX2 and for the baseline, chosen at run time by the CPU.
 * AVX2 without FMA: the same operations, rounded the same way, so the results are identical. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__clang__)
#define ST_VEC_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ST_VEC_CLONES
#endif

/* Writes a formatted message into err (if not NULL) and returns -1, so that
 * callers can write `return st_seterr(err, "...", ...);`. */
int st_seterr(st_error *err, const char *fmt, ...) ST_PRINTF(2, 3);

/* xoshiro256** step (the same as st_rng_next), inlined for the kernels' inner loops. */
static inline uint64_t st_rng_next_inline(st_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

#endif
