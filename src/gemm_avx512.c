/* gemm_avx512.c - AVX-512F kernels of the SGEMM engine (see gemm.h for their contracts).
 *
 * Written with intrinsics in functions marked __attribute__((target(...))), so this file is
 * compiled without -mavx512f and the binary still runs everywhere: cpu.c only selects these
 * kernels when the CPU (and OS) support AVX-512F.
 *
 *   st_gemm_ukr_avx512, st_gemm_ukr_rows_avx512
 *                       8 x 32 micro-kernels: 16 zmm accumulators, per k two 16-float loads of
 *                       B and eight broadcasts of A (packed or A^T in place / rows of A in
 *                       place). 8 rows suit Stride's M = 16, 32, 64 exactly.
 *   st_gemm_ukr4_avx512, st_gemm_ukr4_rows_avx512
 *                       the same for 4 x 32 tiles (a product's last 4 or fewer rows).
 *   st_gemm_dot_avx512  A * B^T with rows of both contiguous along K: blocks of 4 rows of A x 3
 *                       rows of B, 12 zmm accumulators over K in steps of 16 (masked tail), then
 *                       a fixed horizontal-sum tree.
 */
#include "gemm.h"

#if defined(ST_HAVE_X86_KERNELS)

#if defined(ST_EMULATE_AVX512)
/* A test build (make test: build-avx512emu) checks these kernels on a CPU without AVX-512: the
 * _mm512 intrinsics come from SIMDe (libsimde-dev), which computes each one with AVX2 + FMA
 * (this file is then compiled with -mavx2 -mfma), the same roundings as the real instructions:
 * every multiply-add stays one fused operation. cpu.c then offers the AVX-512 level wherever the
 * CPU has AVX2 and FMA. */
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define ST_TARGET_AVX512
/* (SIMDe 0.7.4, Debian 12's, lacks this one) Loads only the lanes of the mask, as the
 * instruction does, so that a tail never reads past its row. */
static inline simde__m512 st_emu_maskz_loadu_ps(uint16_t mask, const float *p)
{
    float v[16] = {0};
    for (int i = 0; i < 16; i++)
        if (mask >> i & 1u)
            v[i] = p[i];
    return simde_mm512_loadu_ps(v);
}
#define _mm512_maskz_loadu_ps st_emu_maskz_loadu_ps
#else
#include <immintrin.h>
#define ST_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#endif

/* ---------------------------------------------------------------- 8 x 32 micro-kernels */

/* The kernels of R x 32 tiles (R, a constant in scope: 8, or 4 for a product's last rows), one
 * FMA chain per element. One k step: B row k (32 floats), then row i of the tile += A(i,k) * B
 * row k for i < R. AT(i) is the address of A(i,k) for the current k (gemm_ukr.h, which
 * builds the kernels from these). */
#define UKR_STEP(AT)                                                                              \
    do {                                                                                          \
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);                       \
        UKR_ROW(0, AT);                                                                           \
        UKR_ROW(1, AT);                                                                           \
        UKR_ROW(2, AT);                                                                           \
        UKR_ROW(3, AT);                                                                           \
        UKR_ROW(4, AT);                                                                           \
        UKR_ROW(5, AT);                                                                           \
        UKR_ROW(6, AT);                                                                           \
        UKR_ROW(7, AT);                                                                           \
        b += rsb;                                                                                 \
    } while (0)

#define UKR_ROW(i, AT)                                                                            \
    do {                                                                                          \
        if ((i) < R) {                                                                            \
            const __m512 a_ = _mm512_set1_ps(*AT(i));                                             \
            c##i##0 = _mm512_fmadd_ps(a_, b0, c##i##0);                                           \
            c##i##1 = _mm512_fmadd_ps(a_, b1, c##i##1);                                           \
        }                                                                                         \
    } while (0)

#define UKR_ZERO()                                                                                \
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;      \
    __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;                      \
    __m512 c60 = c00, c61 = c00, c70 = c00, c71 = c00

/* With beta != 0, the tile of C asked for before the k loop (as in gemm_avx2.c). */
#define UKR_PREFETCH_C()                                                                          \
    do {                                                                                          \
        if (beta != 0.0f)                                                                         \
            for (int i_ = 0; i_ < R; i_++) {                                                      \
                _mm_prefetch((const char *)(c + i_ * ldc), _MM_HINT_T0);                          \
                _mm_prefetch((const char *)(c + i_ * ldc + 16), _MM_HINT_T0);                     \
                _mm_prefetch((const char *)(c + i_ * ldc + 31), _MM_HINT_T0);                     \
            }                                                                                     \
    } while (0)

/* c = alpha * acc (beta == 0, c not read) or fma(beta, c, alpha * acc). */
#define UKR_STORE(i)                                                                              \
    do {                                                                                          \
        if ((i) < R) {                                                                            \
            float *ci = c + (i) * ldc;                                                            \
            __m512 t0 = _mm512_mul_ps(va, c##i##0), t1 = _mm512_mul_ps(va, c##i##1);              \
            if (beta != 0.0f) {                                                                   \
                t0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), t0);                                \
                t1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16), t1);                           \
            }                                                                                     \
            _mm512_storeu_ps(ci, t0);                                                             \
            _mm512_storeu_ps(ci + 16, t1);                                                        \
        }                                                                                         \
    } while (0)

#define UKR_STORE_ALL()                                                                           \
    do {                                                                                          \
        const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);                       \
        UKR_STORE(0);                                                                             \
        UKR_STORE(1);                                                                             \
        UKR_STORE(2);                                                                             \
        UKR_STORE(3);                                                                             \
        UKR_STORE(4);                                                                             \
        UKR_STORE(5);                                                                             \
        UKR_STORE(6);                                                                             \
        UKR_STORE(7);                                                                             \
    } while (0)

#define UKR_TARGET ST_TARGET_AVX512
#define UKR_MR 8
#define UKR_NAME(kind) st_gemm_##kind##_avx512
#include "gemm_ukr.h"

/* ---------------------------------------------------------------- dot-product kernel */

/* The sum of the 16 lanes, always in the same order. */
static inline ST_TARGET_AVX512 float hsum16(__m512 v)
{
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* C block of R x S (R <= 4, S <= 3) dot products; R and S are constants after inlining. */
static inline __attribute__((always_inline)) ST_TARGET_AVX512 void
dot_block(const int R, const int S, int K, float alpha, const float *A, ptrdiff_t lda,
          const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc)
{
    __m512 acc[4][3];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int s = 0; s < S; s++)
            acc[r][s] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 b[3];
#pragma GCC unroll 3
        for (int s = 0; s < S; s++)
            b[s] = _mm512_loadu_ps(B + s * ldb + k);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512 a = _mm512_loadu_ps(A + r * lda + k);
#pragma GCC unroll 3
            for (int s = 0; s < S; s++)
                acc[r][s] = _mm512_fmadd_ps(a, b[s], acc[r][s]);
        }
    }
    if (k < K) {
        const __mmask16 mask = (__mmask16)((1u << (K - k)) - 1u);
        __m512 b[3];
#pragma GCC unroll 3
        for (int s = 0; s < S; s++)
            b[s] = _mm512_maskz_loadu_ps(mask, B + s * ldb + k);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512 a = _mm512_maskz_loadu_ps(mask, A + r * lda + k);
#pragma GCC unroll 3
            for (int s = 0; s < S; s++)
                acc[r][s] = _mm512_fmadd_ps(a, b[s], acc[r][s]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int s = 0; s < S; s++) {
            float *c = C + r * ldc + s;
            float t = alpha * hsum16(acc[r][s]);
            if (beta != 0.0f)
                t = __builtin_fmaf(beta, *c, t);
            *c = t;
        }
}

#define DOT_CASE(R, S)                                                                            \
    case (R) * 4 + (S):                                                                           \
        dot_block(R, S, K, alpha, a, lda, b, ldb, beta, c, ldc);                                  \
        break

ST_TARGET_AVX512 void st_gemm_dot_avx512(int m, int n, int K, float alpha, const float *A,
                                         ptrdiff_t lda, const float *B, ptrdiff_t ldb, float beta,
                                         float *C, ptrdiff_t ldc)
{
    for (int i = 0; i < m; i += 4) {
        const int R = m - i < 4 ? m - i : 4;
        const float *a = A + i * lda;
        for (int j = 0; j < n; j += 3) {
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
typedef int st_gemm_avx512_unused; /* not x86: nothing here (ISO C wants a declaration) */
#endif
