/* gemm_ukr.h - the micro-kernels' functions, written once for every vector level (internal).
 *
 * Included by gemm_avx2.c and gemm_avx512.c after they define, for their registers:
 *   UKR_TARGET          the functions' target attribute
 *   UKR_MR              the tile's rows (6 AVX2, 8 AVX-512); the tail kernels have 4
 *   UKR_NAME(kind)      a kernel's name: st_gemm_<kind>_<level>
 *   UKR_ZERO(), UKR_PREFETCH_C(), UKR_STEP(AT), UKR_STORE_ALL()
 *                       the R x NR accumulators (R, a constant in scope), the prefetch of a C
 *                       that is added to, one k step (AT(i): the address of A(i,k) for the
 *                       current k) and the epilogue (see gemm_avx2.c)
 * and defines st_gemm_ukr, ukr_rows, ukr4, ukr4_rows and ukr_win of that level (gemm.h), then
 * undefines all of those names. */

/* Where A(i,k) is for the current k: a packed sliver (sa = MR) or A^T in place (sa = lda), a
 * moving on by sa per k; rows of A in place (sa = lda); a window of a plane (see ukr_win). */
#define AT_PACKED(i) (a + (i))
#define AT_ROWS(i) (a + (i) * sa + k)
#define AT_WIN(i) (a + (i) + k)

#define UKR_PACKED_BODY(AT)                                                                       \
    do {                                                                                          \
        UKR_PREFETCH_C();                                                                         \
        UKR_ZERO();                                                                               \
        for (int k = 0; k < kc; k++, a += sa) {                                                   \
            UKR_STEP(AT);                                                                         \
        }                                                                                         \
        UKR_STORE_ALL();                                                                          \
    } while (0)

#define UKR_ROWS_BODY(AT)                                                                         \
    do {                                                                                          \
        UKR_PREFETCH_C();                                                                         \
        UKR_ZERO();                                                                               \
        for (int k = 0; k < kc; k++) {                                                            \
            UKR_STEP(AT);                                                                         \
        }                                                                                         \
        UKR_STORE_ALL();                                                                          \
    } while (0)

/* A kernel of rows x NR tiles (gemm.h's st_gemm_ukr_fn) from a body and an addressing of A. */
#define UKR_KERNEL(kind, rows, BODY, AT)                                                          \
    UKR_TARGET void UKR_NAME(kind)(int kc, const float *a, ptrdiff_t sa, const float *b,          \
                                   ptrdiff_t rsb, float *c, ptrdiff_t ldc, float alpha,           \
                                   float beta)                                                    \
    {                                                                                             \
        enum { R = rows };                                                                        \
        BODY(AT);                                                                                 \
    }

UKR_KERNEL(ukr, UKR_MR, UKR_PACKED_BODY, AT_PACKED)
UKR_KERNEL(ukr_rows, UKR_MR, UKR_ROWS_BODY, AT_ROWS)

/* 4-row tiles (the same values as the first 4 rows of a whole tile), for a product's last rows
 * where M leaves 4 or fewer (M = 4, 16, 28, 64 ...): none computed for nothing. */
UKR_KERNEL(ukr4, 4, UKR_PACKED_BODY, AT_PACKED)
UKR_KERNEL(ukr4_rows, 4, UKR_ROWS_BODY, AT_ROWS)

/* A(i, r*kw + s) at a[i + r*lda + s]: a window of a plane read in place. */
UKR_TARGET void UKR_NAME(ukr_win)(int kh, int kw, const float *a, ptrdiff_t lda, const float *b,
                                  ptrdiff_t rsb, float *c, ptrdiff_t ldc)
{
    enum { R = UKR_MR };
    const float alpha = 1.0f, beta = 0.0f;
    UKR_ZERO();
    for (int r = 0; r < kh; r++, a += lda)
        for (int k = 0; k < kw; k++) {
            UKR_STEP(AT_WIN);
        }
    UKR_STORE_ALL();
}

#undef AT_PACKED
#undef AT_ROWS
#undef AT_WIN
#undef UKR_PACKED_BODY
#undef UKR_ROWS_BODY
#undef UKR_KERNEL
#undef UKR_TARGET
#undef UKR_MR
#undef UKR_NAME
#undef UKR_ZERO
#undef UKR_PREFETCH_C
#undef UKR_STEP
#undef UKR_ROW
#undef UKR_STORE
#undef UKR_STORE_ALL
