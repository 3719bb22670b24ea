/* gemm_avx2.c - AVX2+FMA kernels of the SGEMM engine (see gemm.h for their contracts).
 *
 * Written with intrinsics in functions marked __attribute__((target("avx2,fma"))), so this file
 * is compiled without -mavx2 and the binary still runs on older CPUs: cpu.c only selects these
 * kernels when the CPU has AVX2 and FMA.
 *
 *   st_gemm_ukr_avx2, st_gemm_ukr_rows_avx2
 *                     6 x 16 micro-kernels: 12 ymm accumulators, per k two 8-float loads of B
 *                     and six broadcasts of A (packed or A^T in place / rows of A in place);
 *                     a C that is added to is prefetched first.
 *   st_gemm_ukr4_avx2, st_gemm_ukr4_rows_avx2
 *                     the same for 4 x 16 tiles (a product's last 4 or fewer rows).
 *                     (These and st_gemm_ukr_win_avx2 are built by gemm_ukr.h from this
 *                     file's register macros, as gemm_avx512.c's are from its own.)
 *   st_gemm_pack_bt_avx2  packs B^T slivers through 8 x 8 register transposes (also used by the
 *                     AVX-512 level).
 *   st_gemm_dot_avx2  A * B^T with rows of both contiguous along K: blocks of 4 rows of A x 3 rows
 *                     of B (a last single row of A: x 8 rows of B), 12 (8) ymm accumulators over
 *                     K in steps of 8 (masked tail), then a fixed horizontal-sum tree.
 */
#include "gemm.h"

#if defined(ST_HAVE_X86_KERNELS)

#include <immintrin.h>
#include <stdint.h>

#ifndef ST_TARGET_AVX2
#define ST_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

/* ---------------------------------------------------------------- 6 x 16 micro-kernels */

/* The kernels of R x 16 tiles (R, a constant in scope: 6, or 4 for a product's last rows), one
 * FMA chain per element. One k step: B row k (16 floats), then row i of the tile += A(i,k) * B
 * row k for i < R. AT(i) is the address of A(i,k) for the current k (gemm_ukr.h, which
 * builds the kernels from these). */
#define UKR_STEP(AT)                                                                              \
    do {                                                                                          \
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);                        \
        UKR_ROW(0, AT);                                                                           \
        UKR_ROW(1, AT);                                                                           \
        UKR_ROW(2, AT);                                                                           \
        UKR_ROW(3, AT);                                                                           \
        UKR_ROW(4, AT);                                                                           \
        UKR_ROW(5, AT);                                                                           \
        b += rsb;                                                                                 \
    } while (0)

#define UKR_ROW(i, AT)                                                                            \
    do {                                                                                          \
        if ((i) < R) {                                                                            \
            const __m256 a_ = _mm256_broadcast_ss(AT(i));                                         \
            c##i##0 = _mm256_fmadd_ps(a_, b0, c##i##0);                                           \
            c##i##1 = _mm256_fmadd_ps(a_, b1, c##i##1);                                           \
        }                                                                                         \
    } while (0)

#define UKR_ZERO()                                                                                \
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;      \
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00

/* With beta != 0 (a weight gradient added to, a K block after the first) the tile of C is asked
 * for before the k loop, so that a C far away in memory arrives while the loop runs instead of
 * stalling the loads after it (the MLP's first weight gradient: 1.25x; with beta == 0 it only
 * cost time). A hint: no value changes. */
#define UKR_PREFETCH_C()                                                                          \
    do {                                                                                          \
        if (beta != 0.0f)                                                                         \
            for (int i_ = 0; i_ < R; i_++) {                                                      \
                _mm_prefetch((const char *)(c + i_ * ldc), _MM_HINT_T0);                          \
                _mm_prefetch((const char *)(c + i_ * ldc + 15), _MM_HINT_T0);                     \
            }                                                                                     \
    } while (0)

/* c = alpha * acc (beta == 0, c not read) or fma(beta, c, alpha * acc). */
#define UKR_STORE(i)                                                                              \
    do {                                                                                          \
        if ((i) < R) {                                                                            \
            float *ci = c + (i) * ldc;                                                            \
            __m256 t0 = _mm256_mul_ps(va, c##i##0), t1 = _mm256_mul_ps(va, c##i##1);              \
            if (beta != 0.0f) {                                                                   \
                t0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), t0);                                \
                t1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), t1);                            \
            }                                                                                     \
            _mm256_storeu_ps(ci, t0);                                                             \
            _mm256_storeu_ps(ci + 8, t1);                                                         \
        }                                                                                         \
    } while (0)

#define UKR_STORE_ALL()                                                                           \
    do {                                                                                          \
        const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);                       \
        UKR_STORE(0);                                                                             \
        UKR_STORE(1);                                                                             \
        UKR_STORE(2);                                                                             \
        UKR_STORE(3);                                                                             \
        UKR_STORE(4);                                                                             \
        UKR_STORE(5);                                                                             \
    } while (0)

#define UKR_TARGET ST_TARGET_AVX2
#define UKR_MR 6
#define UKR_NAME(kind) st_gemm_##kind##_avx2
#include "gemm_ukr.h"

/* ---------------------------------------------------------------- packing B^T */

/* Transposes the 8 x 8 block r[0..7] in place: r[i][j] <- r[j][i]. */
static inline __attribute__((always_inline)) ST_TARGET_AVX2 void transpose8x8(__m256 r[8])
{
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* See st_gemm_pack_bt_fn: 8 rows of B x 8 k at a time through an 8 x 8 transpose. */
ST_TARGET_AVX2 void st_gemm_pack_bt_avx2(const float *B, ptrdiff_t ldb, int nb, int kb, int nr,
                                         float *dst)
{
    for (int s = 0; s < nb; s += nr, dst += (ptrdiff_t)kb * nr) {
        for (int c0 = 0; c0 < nr; c0 += 8) {
            const int cols = nb - s - c0; /* rows of B for this group of 8 columns */
            const float *src = B + (ptrdiff_t)(s + c0) * ldb;
            float *d = dst + c0;
            if (cols >= 8) {
                int k = 0;
                for (; k + 8 <= kb; k += 8) {
                    __m256 r[8];
                    for (int t = 0; t < 8; t++)
                        r[t] = _mm256_loadu_ps(src + t * ldb + k);
                    transpose8x8(r);
                    for (int t = 0; t < 8; t++)
                        _mm256_storeu_ps(d + (ptrdiff_t)(k + t) * nr, r[t]);
                }
                for (; k < kb; k++)
                    for (int t = 0; t < 8; t++)
                        d[(ptrdiff_t)k * nr + t] = src[t * ldb + k];
            } else {
                for (int k = 0; k < kb; k++)
                    for (int t = 0; t < 8; t++)
                        d[(ptrdiff_t)k * nr + t] = t < cols ? src[t * ldb + k] : 0.0f;
            }
        }
    }
}

/* ---------------------------------------------------------------- dot-product kernel */

/* 8 ones then 8 zeros: loading 8 ints at mask_tab + 8 - r gives a mask of the first r lanes. */
static const int32_t mask_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* The sum of the 8 lanes, always in the same order. */
static inline ST_TARGET_AVX2 float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* C block of R x S (R <= 4, S <= 3) dot products; R and S are constants after inlining. */
static inline __attribute__((always_inline)) ST_TARGET_AVX2 void
dot_block(const int R, const int S, int K, float alpha, const float *A, ptrdiff_t lda,
          const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc)
{
    __m256 acc[4][3];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int s = 0; s < S; s++)
            acc[r][s] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 b[3];
#pragma GCC unroll 3
        for (int s = 0; s < S; s++)
            b[s] = _mm256_loadu_ps(B + s * ldb + k);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m256 a = _mm256_loadu_ps(A + r * lda + k);
#pragma GCC unroll 3
            for (int s = 0; s < S; s++)
                acc[r][s] = _mm256_fmadd_ps(a, b[s], acc[r][s]);
        }
    }
    if (k < K) {
        const __m256i mask = _mm256_loadu_si256((const __m256i *)(mask_tab + 8 - (K - k)));
        __m256 b[3];
#pragma GCC unroll 3
        for (int s = 0; s < S; s++)
            b[s] = _mm256_maskload_ps(B + s * ldb + k, mask);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m256 a = _mm256_maskload_ps(A + r * lda + k, mask);
#pragma GCC unroll 3
            for (int s = 0; s < S; s++)
                acc[r][s] = _mm256_fmadd_ps(a, b[s], acc[r][s]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int s = 0; s < S; s++) {
            float *c = C + r * ldc + s;
            float t = alpha * hsum8(acc[r][s]);
            if (beta != 0.0f)
                t = __builtin_fmaf(beta, *c, t);
            *c = t;
        }
}

/* One row of A against 8 rows of B: each output the same lane-wise chain over K as in dot_block
 * (so the same value to the bit), but 8 independent chains instead of 3, enough to cover the
 * FMA's latency (a matrix-vector product, the classifier at batch 1, was latency-bound). */
static ST_TARGET_AVX2 void dot_row8(int K, float alpha, const float *A, const float *B,
                                   ptrdiff_t ldb, float beta, float *C)
{
    __m256 acc[8];
#pragma GCC unroll 8
    for (int s = 0; s < 8; s++)
        acc[s] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        const __m256 a = _mm256_loadu_ps(A + k);
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++)
            acc[s] = _mm256_fmadd_ps(a, _mm256_loadu_ps(B + s * ldb + k), acc[s]);
    }
    if (k < K) {
        const __m256i mask = _mm256_loadu_si256((const __m256i *)(mask_tab + 8 - (K - k)));
        const __m256 a = _mm256_maskload_ps(A + k, mask);
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++)
            acc[s] = _mm256_fmadd_ps(a, _mm256_maskload_ps(B + s * ldb + k, mask), acc[s]);
    }
#pragma GCC unroll 8
    for (int s = 0; s < 8; s++) {
        float t = alpha * hsum8(acc[s]);
        if (beta != 0.0f)
            t = __builtin_fmaf(beta, C[s], t);
        C[s] = t;
    }
}

#define DOT_CASE(R, S)                                                                            \
    case (R) * 4 + (S):                                                                           \
        dot_block(R, S, K, alpha, a, lda, b, ldb, beta, c, ldc);                                  \
        break

ST_TARGET_AVX2 void st_gemm_dot_avx2(int m, int n, int K, float alpha, const float *A,
                                     ptrdiff_t lda, const float *B, ptrdiff_t ldb, float beta,
                                     float *C, ptrdiff_t ldc)
{
    for (int i = 0; i < m; i += 4) {
        const int R = m - i < 4 ? m - i : 4;
        const float *a = A + i * lda;
        int j = 0;
        if (R == 1) /* (a single row: 8 chains at a time, see dot_row8) */
            for (; j + 8 <= n; j += 8)
                dot_row8(K, alpha, a, B + j * ldb, ldb, beta, C + i * ldc + j);
        for (; j < n; j += 3) {
            const int S = n - j < 3 ? n - j : 3;
            const float *b = B + j * ldb;
            float *c = C + i * ldc + j;
            switch (R * 4 + S) {
                DOT_CASE(4, 3);
                DOT_CASE(4, 2);
                DOT_CASE(4, 1);
                DOT_CASE(3, 3);
                DOT_CASE(3, 2);
                DOT_CASE(3, 1);
                DOT_CASE(2, 3);
                DOT_CASE(2, 2);
                DOT_CASE(2, 1);
                DOT_CASE(1, 3);
                DOT_CASE(1, 2);
                DOT_CASE(1, 1);
            default:
                break;
            }
        }
    }
}

#undef DOT_CASE

#else
typedef int st_gemm_avx2_unused; /* not x86: nothing here (ISO C wants a declaration) */
#endif
