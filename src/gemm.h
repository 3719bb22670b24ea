/* gemm.h - Stride's matrix-multiply engine (SGEMM) and CPU-feature dispatch (internal).
 *
 * All matrices are row-major float32. The fast convolution and linear layers are built on
 *
 *     C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C[M,N]
 *
 * where op(X) is X (trans == 0) or X^T (trans != 0), as in BLAS:
 *   transa == 0: A is M x K, element (i,k) at A[i*lda + k]  (lda >= K)
 *   transa != 0: A is K x M, element (i,k) at A[k*lda + i]  (lda >= M)
 *   transb == 0: B is K x N, element (k,j) at B[k*ldb + j]  (ldb >= N)
 *   transb != 0: B is N x K, element (k,j) at B[j*ldb + k]  (ldb >= K)
 *   C is M x N, element (i,j) at C[i*ldc + j]               (ldc >= N)
 * beta == 0 means C is only written, never read (NaN or garbage in C is ignored); alpha == 0 or
 * K == 0 means A and B are not read. M <= 0 or N <= 0 is a no-op. C must not overlap A or B.
 *
 * Determinism: every element of C is accumulated by one thread, in a K order fixed by the shape
 * (M, N, K, transa, transb) and the kernel level alone, so results are bit-identical for any number
 * of threads, and st_sgemm and st_sgemm_st give bit-identical results. Different kernel levels
 * (avx512 / avx2 / portable) differ by float rounding only.
 *
 * Memory: no allocation. Packing buffers are fixed-size static _Thread_local arrays (about 350 KiB
 * per thread that calls a GEMM; glibc carves static TLS out of each thread's stack, so threads
 * created with stacks under ~1 MiB should not call these functions).
 *
 * Implementation (gemm.c, gemm_avx2.c, gemm_avx512.c): Goto/BLIS-style blocking. K is cut into
 * equal blocks of at most 256 (a function of K alone); a register-blocked micro-kernel (AVX-512
 * 8x32, AVX2+FMA 6x16, portable C 4x16) computes MR x NR tiles of C with one FMA chain per element
 * over each K block. Operands are read in place where their layout allows it (rows of A through MR
 * row pointers; rows of B, which hold NR contiguous columns per k, when M is small) and packed
 * into contiguous slivers otherwise (A^T when many B slivers reuse it, B when M is large, B^T
 * always, and zero-padded partial slivers at the edges). A last sliver of 4 rows or fewer goes
 * through a 4-row kernel (AVX2, AVX-512), other edge tiles through a local tile, so every element
 * sees the same instruction sequence wherever it lies. When both operands are
 * contiguous along K (transa == 0, transb != 0), K >= 128 and M or N <= 32, a dot-product kernel
 * with no packing at all is used instead.
 */
#ifndef STRIDE_GEMM_H
#define STRIDE_GEMM_H

#include <stddef.h>

/* ---------------------------------------------------------------- public-in-library API */

/* C = alpha * op(A) * op(B) + beta * C, parallelised with OpenMP over tiles of C with up to
 * st_get_threads() threads when the problem is big enough (about 2^17 multiply-adds per thread);
 * single-threaded inside an active parallel region. */
void st_sgemm(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

/* The same, always on the calling thread: for use inside the caller's own parallel regions
 * (e.g. one image per thread). Thread-safe; bit-identical to st_sgemm. */
void st_sgemm_st(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);

/* Part `part` of `parts` of the same product, on the calling thread: the columns of C (or, when
 * N < parts register blocks, the rows) cut into `parts` consecutive ranges of whole register
 * blocks. Each element is computed as by st_sgemm_st, so the parts together are bit-identical
 * to it: for a team of threads that share one product (team.h). range (or NULL) receives the
 * part's rows and columns of C: [range[0], range[1]) x [range[2], range[3]). */
void st_sgemm_part(int transa, int transb, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc, int part,
                   int parts, int range[4]);

/* The reference: a naive triple loop accumulating in double, rounded once to float; same
 * conventions (beta == 0: C not read; alpha == 0: A and B not read). Slow; for tests. */
void st_sgemm_ref(int transa, int transb, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* ---------------------------------------------------------------- CPU dispatch (cpu.c) */

enum { ST_CPU_PORTABLE = 0, ST_CPU_AVX2 = 1, ST_CPU_AVX512 = 2 };

/* The kernel level in use: 0 portable, 1 AVX2+FMA, 2 AVX-512F. Chosen once, on first use, from
 * __builtin_cpu_supports, lowered by the environment variable STRIDE_KERNEL=portable|avx2|avx512
 * if it names a lower level than the CPU supports (a higher or unknown value is ignored). */
int st_cpu_level(void);
/* Caps st_get_threads() at n for the calling thread (0 removes the cap); returns the previous
 * cap, to restore it. The model uses it to run very small batches on one thread, where waking
 * other threads would cost more than the work. */
int st_threads_cap(int n);

/* The highest level this CPU (and this build) supports. */
int st_cpu_max_level(void);
/* For tests: use min(level, st_cpu_max_level()) from now on; level < 0 returns to the automatic
 * choice. Do not call while another thread is inside a GEMM. */
void st_cpu_force_level(int level);

/* ---------------------------------------------------------------- kernels (internal) */

/* Register-blocking limits over all kernel levels (sizes of the static packing buffers). */
#define ST_GEMM_MR_MAX 8
#define ST_GEMM_NR_MAX 32
#define ST_GEMM_KC_MAX 256 /* K block: a packed A sliver (MR x KC) and B sliver stay in L1 */
#define ST_GEMM_MC_MAX 96  /* M block: the packed A block (MC x KC) stays in L2 */
#define ST_GEMM_NC_MAX 256 /* N block: the packed B panel (KC x NC) stays in L2 */

/* Micro-kernels: compute the MR x NR tile
 *     acc[i][j] = sum_{k < kc} A(i,k) * b[k*rsb + j]       (k ascending, one FMA chain each)
 *     c[i*ldc + j] = alpha * acc[i][j]                            if beta == 0 (c is not read)
 *     c[i*ldc + j] = fma(beta, c[i*ldc + j], alpha * acc[i][j])   otherwise
 * (portable: beta * c + alpha * acc, unfused). b points to NR contiguous floats per k, rsb floats
 * apart (rsb == NR for a packed sliver, ldb when B is read in place). kc >= 1.
 *   ukr:      A(i,k) = a[k*sa + i]  (a packed sliver, sa == MR, or A^T in place, sa == lda)
 *   ukr_rows: A(i,k) = a[i*sa + k]  (rows of A in place, sa == lda)
 * Both give bit-identical tiles for the same values of A. */
typedef void (*st_gemm_ukr_fn)(int kc, const float *a, ptrdiff_t sa, const float *b,
                               ptrdiff_t rsb, float *c, ptrdiff_t ldc, float alpha, float beta);

/* Micro-kernel over a 2-D window of a plane read in place (a one-channel conv without im2col):
 * row i of the MR x NR tile is pixel i, A(i, k) = a[i + r*lda + s] for k = r*kw + s (r < kh,
 * s < kw), B row k at b + k*rsb; c = acc (stored; the same FMA chain over k as ukr). */
typedef void (*st_gemm_ukr_win_fn)(int kh, int kw, const float *a, ptrdiff_t lda, const float *b,
                                   ptrdiff_t rsb, float *c, ptrdiff_t ldc);

/* Dot-product kernel for A (M x K, rows lda apart) times B^T (B is N x K, rows ldb apart): both
 * operands contiguous along K, no packing. Each C element is one dot product computed lane-wise
 * over K in vector-width steps, summed across lanes in a fixed tree, then
 *     c = alpha * dot (beta == 0)   or   c = fma(beta, c, alpha * dot).
 * Computes rows [0, m) and columns [0, n) of C. */
typedef void (*st_gemm_dot_fn)(int m, int n, int K, float alpha, const float *A, ptrdiff_t lda,
                               const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc);

/* Packs B^T (B is N x K, rows ldb apart; here B points at row j0, column k0) into slivers of nr
 * columns of op(B) = B^T: sliver s holds, for each k < kb, the nr values B[(s*nr + c)*ldb + k]
 * (c < nr) contiguously, zero for columns past nb. Slivers follow each other (kb * nr floats).
 * nr is a multiple of 8. */
typedef void (*st_gemm_pack_bt_fn)(const float *B, ptrdiff_t ldb, int nb, int kb, int nr,
                                   float *dst);

typedef struct st_gemm_kernel {
    const char *name;
    int mr, nr;         /* micro-kernel tile */
    int mc;             /* M block, a multiple of mr, <= ST_GEMM_MC_MAX */
    int dot_mb, dot_nb; /* dot kernel's register block (for splitting work between threads) */
    st_gemm_ukr_fn ukr, ukr_rows;
    /* ukr and ukr_rows for tiles of mr_tail x nr (the same values as their first mr_tail rows
     * by ukr, ukr_rows): a product's last rows where M % mr <= mr_tail (0: the level has none) */
    int mr_tail;
    st_gemm_ukr_fn ukr_tail, ukr_rows_tail;
    st_gemm_ukr_win_fn ukr_win;
    int fused;          /* epilogue fma(beta, c, t) (else beta * c + t, unfused) */
    st_gemm_dot_fn dot;         /* NULL: the level has no dot kernel */
    st_gemm_pack_bt_fn pack_bt; /* NULL: packed by portable C */
} st_gemm_kernel;

/* The kernel of a level (0, 1, 2). Levels not compiled in fall back to the portable kernel. */
const st_gemm_kernel *st_gemm_kernel_for_level(int level);

/* The micro-kernel for a tile of m <= mr rows: the level's tail kernel where its rows suffice,
 * else the full one (in_place: rows of A read in place, ukr_rows; else ukr). *rows: the rows it
 * computes (where m == *rows it may write C directly). */
static inline st_gemm_ukr_fn st_gemm_ukr_for(const st_gemm_kernel *kr, int m, int in_place,
                                             int *rows)
{
    if (m < kr->mr && m <= kr->mr_tail) {
        *rows = kr->mr_tail;
        return in_place ? kr->ukr_rows_tail : kr->ukr_tail;
    }
    *rows = kr->mr;
    return in_place ? kr->ukr_rows : kr->ukr;
}

/* A partial tile of C (m x n with m <= the rows ukr computes, n <= nr, one of them less): the
 * values ukr would give them in a whole tile, and combined with C as its epilogue would, without
 * writing outside the m x n part (A and B are read for the whole tile). */
void st_gemm_partial_tile(const st_gemm_kernel *kr, st_gemm_ukr_fn ukr, int kc, const float *a,
                          ptrdiff_t sa, const float *b, ptrdiff_t rsb, float *c, ptrdiff_t ldc,
                          int m, int n, float alpha, float beta);

/* Per-level kernels, defined in gemm_avx2.c and gemm_avx512.c (x86-64 only). */
#if defined(__x86_64__) || defined(__i386__)
#define ST_HAVE_X86_KERNELS 1
void st_gemm_ukr_avx2(int kc, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t rsb,
                      float *c, ptrdiff_t ldc, float alpha, float beta);
void st_gemm_ukr_rows_avx2(int kc, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t rsb,
                           float *c, ptrdiff_t ldc, float alpha, float beta);
void st_gemm_ukr4_avx2(int kc, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t rsb,
                       float *c, ptrdiff_t ldc, float alpha, float beta);
void st_gemm_ukr4_rows_avx2(int kc, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t rsb,
                            float *c, ptrdiff_t ldc, float alpha, float beta);
void st_gemm_ukr_win_avx2(int kh, int kw, const float *a, ptrdiff_t lda, const float *b,
                          ptrdiff_t rsb, float *c, ptrdiff_t ldc);
void st_gemm_pack_bt_avx2(const float *B, ptrdiff_t ldb, int nb, int kb, int nr, float *dst);
void st_gemm_dot_avx2(int m, int n, int K, float alpha, const float *A, ptrdiff_t lda,
                      const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc);
void st_gemm_ukr_avx512(int kc, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t rsb,
                        float *c, ptrdiff_t ldc, float alpha, float beta);
void st_gemm_ukr_rows_avx512(int kc, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t rsb,
                             float *c, ptrdiff_t ldc, float alpha, float beta);
void st_gemm_ukr4_avx512(int kc, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t rsb,
                         float *c, ptrdiff_t ldc, float alpha, float beta);
void st_gemm_ukr4_rows_avx512(int kc, const float *a, ptrdiff_t sa, const float *b,
                              ptrdiff_t rsb, float *c, ptrdiff_t ldc, float alpha, float beta);
void st_gemm_ukr_win_avx512(int kh, int kw, const float *a, ptrdiff_t lda, const float *b,
                            ptrdiff_t rsb, float *c, ptrdiff_t ldc);
void st_gemm_dot_avx512(int m, int n, int K, float alpha, const float *A, ptrdiff_t lda,
                        const float *B, ptrdiff_t ldb, float beta, float *C, ptrdiff_t ldc);
#endif

#endif
