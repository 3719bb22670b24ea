/* gemm.c - row-major SGEMM: the blocked driver, packing, the portable micro-kernel, threading and
 * the naive reference. The vector micro-kernels live in gemm_avx2.c and gemm_avx512.c.
 *
 * Blocking (Goto / BLIS):
 *
 *   for jc over N in steps of NC              (B panel)
 *     for pc over K in steps of kc            (K block: kc <= KC_MAX, fixed by K alone)
 *       pack op(B)[pc.., jc..] into NR-column slivers, or read B in place (see below)
 *       for ic over M in steps of MC          (A block)
 *         pack op(A)[ic.., pc..] into MR-row slivers, or read A in place (see below)
 *         for jr over the panel in NR steps, for ir over the block in MR steps:
 *           micro-kernel: MR x NR tile of C, one FMA chain per element over the K block,
 *           then C = alpha*acc + beta*C (beta for the first K block, 1 for the others)
 *
 * Each element of C therefore sees the same sequence of operations whatever tile, thread or
 * block it falls in: the sequence depends only on K (through kc) and the kernel level. Tiles at
 * the edges of C are computed into a local MR x NR tile by the same micro-kernel and combined
 * with C by the same operation as its epilogue, so they round exactly like interior tiles. That
 * is what makes the result independent of the number of threads, which only decides how the
 * tiles of C are shared out.
 *
 * Packing only changes where the micro-kernel reads its operands, never the arithmetic, so it is
 * chosen for speed alone: rows of A are read in place through MR row pointers (packing them
 * would be a transpose); A^T is packed (a contiguous copy) when many B slivers reuse it; rows of
 * B already hold NR contiguous columns and are read in place while M is small, packed when many
 * A slivers reuse them; B^T is always packed (transposed). Partial slivers at the edges are
 * always packed, zero-padded, so that the micro-kernels never read outside the matrices.
 *
 * When A is not transposed and B is (both contiguous along K), K >= 128 and M or N is small, a
 * dot-product kernel with no packing at all is used instead (see st_gemm_dot_fn); it sums in a
 * different order, so the choice depends on the shape only, never on the thread count.
 */
#include "gemm.h"
#include "internal.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* ---------------------------------------------------------------- kernel table */

enum { PORTABLE_MR = 4, PORTABLE_NR = 16 };

/* Portable micro-kernels, MR = 4, NR = 16 (plain C; the compiler may vectorise them).
 * A(i,k) = a[k*sk + i*si]. */
static inline __attribute__((always_inline)) void
ukr_portable_impl(int kc, const float *a, ptrdiff_t sk, ptrdiff_t si, const float *b,
                  ptrdiff_t rsb, float *c, ptrdiff_t ldc, float alpha, float beta)
{
    float acc[PORTABLE_MR][PORTABLE_NR] = {{0}};
    for (int k = 0; k < kc; k++) {
        const float *bk = b + k * rsb;
        for (int i = 0; i < PORTABLE_MR; i++) {
            const float aik = a[k * sk + i * si];
            for (int j = 0; j < PORTABLE_NR; j++)
                acc[i][j] += aik * bk[j];
        }
    }
    for (int i = 0; i < PORTABLE_MR; i++) {
        float *ci = c + i * ldc;
        if (beta == 0.0f) {
            for (int j = 0; j < PORTABLE_NR; j++)
                ci[j] = alpha * acc[i][j];
        } else {
            for (int j = 0; j < PORTABLE_NR; j++) {
                float t = alpha * acc[i][j];
                ci[j] = beta * ci[j] + t;
            }
        }
    }
}

static void ukr_portable(int kc, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t rsb,
                         float *c, ptrdiff_t ldc, float alpha, float beta)
{
    ukr_portable_impl(kc, a, sa, 1, b, rsb, c, ldc, alpha, beta);
}

static void ukr_rows_portable(int kc, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t rsb,
                              float *c, ptrdiff_t ldc, float alpha, float beta)
{
    ukr_portable_impl(kc, a, 1, sa, b, rsb, c, ldc, alpha, beta);
}

static void ukr_win_portable(int kh, int kw, const float *a, ptrdiff_t lda, const float *b,
                             ptrdiff_t rsb, float *c, ptrdiff_t ldc)
{
    float acc[PORTABLE_MR][PORTABLE_NR] = {{0}};
    for (int r = 0; r < kh; r++)
        for (int s = 0; s < kw; s++) {
            const float *bk = b + (r * kw + s) * rsb;
            for (int i = 0; i < PORTABLE_MR; i++) {
                const float aik = a[i + r * lda + s];
                for (int j = 0; j < PORTABLE_NR; j++)
                    acc[i][j] += aik * bk[j];
            }
        }
    for (int i = 0; i < PORTABLE_MR; i++)
        for (int j = 0; j < PORTABLE_NR; j++)
            c[i * ldc + j] = 1.0f * acc[i][j];
}

static const st_gemm_kernel kernel_portable = {.name = "portable",
                                               .mr = PORTABLE_MR,
                                               .nr = PORTABLE_NR,
                                               .mc = 96,
                                               .ukr = ukr_portable,
                                               .ukr_rows = ukr_rows_portable,
                                               .ukr_win = ukr_win_portable};

#if defined(ST_HAVE_X86_KERNELS)
static const st_gemm_kernel kernel_avx2 = {.name = "avx2",
                                           .mr = 6,
                                           .nr = 16,
                                           .mc = 72,
                                           .dot_mb = 4,
                                           .dot_nb = 3,
                                           .ukr = st_gemm_ukr_avx2,
                                           .ukr_rows = st_gemm_ukr_rows_avx2,
                                           .mr_tail = 4,
                                           .ukr_tail = st_gemm_ukr4_avx2,
                                           .ukr_rows_tail = st_gemm_ukr4_rows_avx2,
                                           .ukr_win = st_gemm_ukr_win_avx2,
                                           .fused = 1,
                                           .dot = st_gemm_dot_avx2,
                                           .pack_bt = st_gemm_pack_bt_avx2};
static const st_gemm_kernel kernel_avx512 = {.name = "avx512",
                                             .mr = 8,
                                             .nr = 32,
                                             .mc = 96,
                                             .dot_mb = 4,
                                             .dot_nb = 3,
                                             .ukr = st_gemm_ukr_avx512,
                                             .ukr_rows = st_gemm_ukr_rows_avx512,
                                             .mr_tail = 4,
                                             .ukr_tail = st_gemm_ukr4_avx512,
                                             .ukr_rows_tail = st_gemm_ukr4_rows_avx512,
                                             .ukr_win = st_gemm_ukr_win_avx512,
                                             .fused = 1,
                                             .dot = st_gemm_dot_avx512,
                                             .pack_bt = st_gemm_pack_bt_avx2};
#endif

const st_gemm_kernel *st_gemm_kernel_for_level(int level)
{
#if defined(ST_HAVE_X86_KERNELS)
    if (level >= ST_CPU_AVX512)
        return &kernel_avx512;
    if (level == ST_CPU_AVX2)
        return &kernel_avx2;
#else
    (void)level;
#endif
    return &kernel_portable;
}

/* ---------------------------------------------------------------- packing buffers */

/* Per-thread, allocated once with the thread (static TLS), never per call. */
static _Thread_local _Alignas(64) float tls_pack_a[ST_GEMM_MC_MAX * ST_GEMM_KC_MAX];
static _Thread_local _Alignas(64) float tls_pack_b[ST_GEMM_KC_MAX * ST_GEMM_NC_MAX];

/* ---------------------------------------------------------------- the problem */

typedef struct gemm_plan {
    const st_gemm_kernel *kr;
    int ta, tb, M, N, K;
    float alpha, beta;
    const float *A, *B;
    float *C;
    ptrdiff_t lda, ldb, ldc;
    int use_dot; /* dot-product kernel (ta == 0, tb != 0, long K) instead of the blocked path */
    int pack_a;  /* blocked path: pack A (else read it in place, packing only partial slivers) */
    int pack_b;  /* blocked path: pack B (else read it in place; only when tb == 0) */
    int kc;      /* K block of the blocked path */
} gemm_plan;

static int imin(int a, int b)
{
    return a < b ? a : b;
}

/* The dot kernel wins over packing B^T when K is long enough to amortise its final horizontal
 * sums and the packing it saves is a large share of the work, i.e. M or N is small (measured on
 * AVX2: 1.1x to 2.7x faster for min(M, N) <= 32, K >= 128; slower or equal from 64 up). */
static int choose_dot(const st_gemm_kernel *kr, int ta, int tb, int M, int N, int K)
{
    if (!kr->dot || ta || !tb)
        return 0;
    return K >= 128 && (M <= 32 || N <= 32);
}

static void plan_init(gemm_plan *p, int ta, int tb, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc)
{
    p->kr = st_gemm_kernel_for_level(st_cpu_level());
    p->ta = ta != 0;
    p->tb = tb != 0;
    p->M = M;
    p->N = N;
    p->K = K;
    p->alpha = alpha;
    p->beta = beta;
    p->A = A;
    p->B = B;
    p->C = C;
    p->lda = lda;
    p->ldb = ldb;
    p->ldc = ldc;
    p->use_dot = choose_dot(p->kr, p->ta, p->tb, M, N, K);
    /* K blocks of equal size (a function of K only): e.g. K = 300 -> 2 blocks of 150 */
    int nblocks = (K + ST_GEMM_KC_MAX - 1) / ST_GEMM_KC_MAX;
    p->kc = (K + nblocks - 1) / nblocks;
    /* Read in place, a B sliver costs one or two cache lines per k; that is cheapest while few
     * A slivers reuse it and B's row stride (ldb) is not a multiple of 4 KiB, which would map
     * every row to the same L1 set. B^T is always packed (transposed). */
    p->pack_b = p->tb || M >= 8 * p->kr->mr || (ldb % 1024) == 0;
    /* Rows of A are read in place (the micro-kernel broadcasts from MR row pointers; packing
     * them would be a transpose). A^T is packed, a cheap contiguous copy, when many B slivers
     * reuse it, so that the sliver is contiguous rather than spread over kc rows of A^T. */
    p->pack_a = p->ta && N > 4 * p->kr->nr;
}

/* ---------------------------------------------------------------- packing */

/* Packs op(A)[i0 .. i0+mb, k0 .. k0+kb) into slivers of MR rows: sliver s holds, for each k, the
 * MR values op(A)[i0 + s*MR + r, k0 + k] (r < MR) contiguously; rows past mb are zero. The source
 * is read along its contiguous direction (rows of A, or rows of A^T), which matters when A is
 * large and its rows are far apart. */
static inline __attribute__((always_inline)) void pack_a_impl(const gemm_plan *p, const int mr,
                                                              int i0, int mb, int k0, int kb,
                                                              float *dst)
{
    const ptrdiff_t lda = p->lda;
    if (!p->ta) {
        for (int s = 0; s < mb; s += mr, dst += (ptrdiff_t)kb * mr) {
            const int rows = imin(mr, mb - s);
            const float *src = p->A + (ptrdiff_t)(i0 + s) * lda + k0;
            for (int r = 0; r < rows; r++)
                for (int k = 0; k < kb; k++)
                    dst[k * mr + r] = src[r * lda + k];
            for (int r = rows; r < mr; r++)
                for (int k = 0; k < kb; k++)
                    dst[k * mr + r] = 0.0f;
        }
    } else {
        const float *src = p->A + (ptrdiff_t)k0 * lda + i0;
        const int full = mb - mb % mr;
        for (int k = 0; k < kb; k++) {
            const float *row = src + k * lda;
            float *d = dst + k * mr;
            for (int s = 0; s < full; s += mr, d += (ptrdiff_t)kb * mr)
                memcpy(d, row + s, sizeof(float) * (size_t)mr);
            if (full < mb) {
                memset(d, 0, sizeof(float) * (size_t)mr); /* constant size: inlined */
                memcpy(d, row + full, sizeof(float) * (size_t)(mb - full));
            }
        }
    }
}

static void pack_a(const gemm_plan *p, int i0, int mb, int k0, int kb, float *dst)
{
    switch (p->kr->mr) {
    case 4:
        pack_a_impl(p, 4, i0, mb, k0, kb, dst);
        break;
    case 6:
        pack_a_impl(p, 6, i0, mb, k0, kb, dst);
        break;
    case 8:
        pack_a_impl(p, 8, i0, mb, k0, kb, dst);
        break;
    default:
        pack_a_impl(p, p->kr->mr, i0, mb, k0, kb, dst);
        break;
    }
}

/* Packs op(B)[k0 .. k0+kb, j0 .. j0+nb) into slivers of NR columns: sliver s holds, for each k,
 * the NR values op(B)[k0 + k, j0 + s*NR + c] (c < NR) contiguously; columns past nb are zero.
 * Read along the source's contiguous direction, like pack_a. */
static inline __attribute__((always_inline)) void pack_b_impl(const gemm_plan *p, const int nr,
                                                              int j0, int nb, int k0, int kb,
                                                              float *dst)
{
    const ptrdiff_t ldb = p->ldb;
    if (!p->tb) {
        const float *src = p->B + (ptrdiff_t)k0 * ldb + j0;
        const int full = nb - nb % nr;
        for (int k = 0; k < kb; k++) {
            const float *row = src + k * ldb;
            float *d = dst + k * nr;
            for (int s = 0; s < full; s += nr, d += (ptrdiff_t)kb * nr)
                memcpy(d, row + s, sizeof(float) * (size_t)nr);
            if (full < nb) {
                memset(d, 0, sizeof(float) * (size_t)nr); /* constant size: inlined */
                memcpy(d, row + full, sizeof(float) * (size_t)(nb - full));
            }
        }
    } else {
        for (int s = 0; s < nb; s += nr, dst += (ptrdiff_t)kb * nr) {
            const int cols = imin(nr, nb - s);
            const float *src = p->B + (ptrdiff_t)(j0 + s) * ldb + k0;
            for (int c = 0; c < cols; c++)
                for (int k = 0; k < kb; k++)
                    dst[k * nr + c] = src[c * ldb + k];
            for (int c = cols; c < nr; c++)
                for (int k = 0; k < kb; k++)
                    dst[k * nr + c] = 0.0f;
        }
    }
}

static void pack_b(const gemm_plan *p, int j0, int nb, int k0, int kb, float *dst)
{
    if (p->tb && p->kr->pack_bt) {
        p->kr->pack_bt(p->B + (ptrdiff_t)j0 * p->ldb + k0, p->ldb, nb, kb, p->kr->nr, dst);
        return;
    }
    switch (p->kr->nr) {
    case 16:
        pack_b_impl(p, 16, j0, nb, k0, kb, dst);
        break;
    case 32:
        pack_b_impl(p, 32, j0, nb, k0, kb, dst);
        break;
    default:
        pack_b_impl(p, p->kr->nr, j0, nb, k0, kb, dst);
        break;
    }
}

/* ---------------------------------------------------------------- single-threaded core */

/* See gemm.h. Computed whole into a local tile with beta = 0 (tile = alpha * acc, C not read),
 * its m x n part then combined with C exactly as the micro-kernel's epilogue would:
 * fma(beta, c, t) (or beta * c + t for the portable kernel; for beta == 1 both are c + t). So
 * edge elements round exactly like interior ones, which the micro-kernel writes in place. */
void st_gemm_partial_tile(const st_gemm_kernel *kr, st_gemm_ukr_fn ukr, int kc, const float *a,
                          ptrdiff_t sa, const float *b, ptrdiff_t rsb, float *c, ptrdiff_t ldc,
                          int m, int n, float alpha, float beta)
{
    _Alignas(64) float tile[ST_GEMM_MR_MAX * ST_GEMM_NR_MAX];
    const int nr = kr->nr;
    ukr(kc, a, sa, b, rsb, tile, nr, alpha, 0.0f);
    for (int i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        const float *ti = tile + i * nr;
        if (beta == 0.0f)
            memcpy(ci, ti, sizeof(float) * (size_t)n);
        else if (beta == 1.0f)
            for (int j = 0; j < n; j++)
                ci[j] = ci[j] + ti[j];
        else if (kr->fused)
            for (int j = 0; j < n; j++)
                ci[j] = fmaf(beta, ci[j], ti[j]);
        else
            for (int j = 0; j < n; j++)
                ci[j] = beta * ci[j] + ti[j];
    }
}

/* Blocked path for the sub-block C[i0..i1, j0..j1) (all of K). */
static void blocked_range(const gemm_plan *p, int i0, int i1, int j0, int j1)
{
    const st_gemm_kernel *kr = p->kr;
    const int mr = kr->mr, nr = kr->nr, MC = kr->mc;
    float *pa_buf = tls_pack_a;
    float *pb_buf = tls_pack_b;

    for (int jc = j0; jc < j1; jc += ST_GEMM_NC_MAX) {
        const int nc = imin(ST_GEMM_NC_MAX, j1 - jc);
        for (int pc = 0; pc < p->K; pc += p->kc) {
            const int kb = imin(p->kc, p->K - pc);
            const float beta = pc == 0 ? p->beta : 1.0f;
            /* B slivers [0, full_nc) are read in place, the rest packed at pb_buf */
            const int full_nc = p->pack_b ? 0 : nc - nc % nr;
            if (full_nc < nc)
                pack_b(p, jc + full_nc, nc - full_nc, pc, kb, pb_buf);

            for (int ic = i0; ic < i1; ic += MC) {
                const int mb = imin(MC, i1 - ic);
                /* A slivers [0, full_mb) are read in place, the rest packed at pa_buf */
                const int full_mb = p->pack_a ? 0 : mb - mb % mr;
                if (full_mb < mb)
                    pack_a(p, ic + full_mb, mb - full_mb, pc, kb, pa_buf);
                for (int jr = 0; jr < nc; jr += nr) {
                    const int n = imin(nr, nc - jr);
                    const float *b;
                    ptrdiff_t rsb;
                    if (jr < full_nc) {
                        b = p->B + (ptrdiff_t)pc * p->ldb + jc + jr;
                        rsb = p->ldb;
                    } else {
                        b = pb_buf + (ptrdiff_t)((jr - full_nc) / nr) * kb * nr;
                        rsb = nr;
                    }
                    for (int ir = 0; ir < mb; ir += mr) {
                        const int m = imin(mr, mb - ir);
                        const float *a;
                        ptrdiff_t sa;
                        int in_place = 0, rows;
                        if (ir >= full_mb) {
                            a = pa_buf + (ptrdiff_t)((ir - full_mb) / mr) * kb * mr;
                            sa = mr;
                        } else if (p->ta) {
                            a = p->A + (ptrdiff_t)pc * p->lda + ic + ir;
                            sa = p->lda;
                        } else {
                            a = p->A + (ptrdiff_t)(ic + ir) * p->lda + pc;
                            sa = p->lda;
                            in_place = 1;
                        }
                        st_gemm_ukr_fn ukr = st_gemm_ukr_for(kr, m, in_place, &rows);
                        float *c = p->C + (ptrdiff_t)(ic + ir) * p->ldc + jc + jr;
                        if (m == rows && n == nr)
                            ukr(kb, a, sa, b, rsb, c, p->ldc, p->alpha, beta);
                        else
                            st_gemm_partial_tile(kr, ukr, kb, a, sa, b, rsb, c, p->ldc, m, n,
                                                 p->alpha, beta);
                    }
                }
            }
        }
    }
}

/* Computes the sub-block C[i0..i1, j0..j1) of the planned problem on the calling thread. */
static void run_range(const gemm_plan *p, int i0, int i1, int j0, int j1)
{
    if (i0 >= i1 || j0 >= j1)
        return;
    if (p->use_dot) {
        p->kr->dot(i1 - i0, j1 - j0, p->K, p->alpha, p->A + (ptrdiff_t)i0 * p->lda, p->lda,
                   p->B + (ptrdiff_t)j0 * p->ldb, p->ldb, p->beta,
                   p->C + (ptrdiff_t)i0 * p->ldc + j0, p->ldc);
    } else {
        blocked_range(p, i0, i1, j0, j1);
    }
}

/* Splits `units` units into `parts` nearly equal parts; returns the start of part t. */
static int split(int units, int parts, int t)
{
    return (int)((long)units * t / parts);
}

/* The register block of a planned product (bm x bn elements of C, the unit work is split in)
 * and how many of them C has along each side (um x un). */
static void reg_blocks(const gemm_plan *p, int *bm, int *bn, int *um, int *un)
{
    *bm = p->use_dot ? p->kr->dot_mb : p->kr->mr;
    *bn = p->use_dot ? p->kr->dot_nb : p->kr->nr;
    *um = (p->M + *bm - 1) / *bm;
    *un = (p->N + *bn - 1) / *bn;
}

/* C = beta * C (alpha == 0 or K == 0: A and B are not read; beta == 0: C is not read). */
static void scale_c(int M, int N, float beta, float *C, int ldc)
{
    if (beta == 1.0f)
        return;
    for (int i = 0; i < M; i++) {
        float *c = C + (ptrdiff_t)i * ldc;
        if (beta == 0.0f)
            memset(c, 0, sizeof(float) * (size_t)N);
        else
            for (int j = 0; j < N; j++)
                c[j] *= beta;
    }
}

void st_sgemm_st(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    gemm_plan p;
    plan_init(&p, transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    run_range(&p, 0, M, 0, N);
}

void st_sgemm_part(int transa, int transb, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc, int part,
                   int parts, int range[4])
{
    if (range)
        range[0] = range[1] = range[2] = range[3] = 0;
    if (M <= 0 || N <= 0)
        return;
    gemm_plan p;
    plan_init(&p, transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    int bm, bn, um, un;
    reg_blocks(&p, &bm, &bn, &um, &un);
    int i0 = 0, i1 = M, j0 = 0, j1 = N;
    if (un >= parts || un >= um) {
        j0 = imin(N, split(un, parts, part) * bn), j1 = imin(N, split(un, parts, part + 1) * bn);
    } else {
        i0 = imin(M, split(um, parts, part) * bm), i1 = imin(M, split(um, parts, part + 1) * bm);
    }
    if (range)
        range[0] = i0, range[1] = i1, range[2] = j0, range[3] = j1;
    if (K <= 0 || alpha == 0.0f) {
        if (i0 < i1 && j0 < j1)
            scale_c(i1 - i0, j1 - j0, beta, C + (ptrdiff_t)i0 * ldc + j0, ldc);
        return;
    }
    run_range(&p, i0, i1, j0, j1);
}

/* ---------------------------------------------------------------- threading */

/* The tiles C is cut into for threads: gm x gn of them, in whole register blocks (bm x bn
 * elements; um x un of them in C). */
typedef struct tile_grid {
    int bm, bn, um, un, gm, gn;
} tile_grid;

/* Tile k (row-major) of the grid. */
static void run_tile(const gemm_plan *p, const tile_grid *t, int k)
{
    const int ti = k / t->gn, tj = k % t->gn;
    const int i0 = imin(p->M, split(t->um, t->gm, ti) * t->bm);
    const int i1 = imin(p->M, split(t->um, t->gm, ti + 1) * t->bm);
    const int j0 = imin(p->N, split(t->un, t->gn, tj) * t->bn);
    const int j1 = imin(p->N, split(t->un, t->gn, tj + 1) * t->bn);
    run_range(p, i0, i1, j0, j1);
}

/* Below this many multiply-adds per thread, another thread costs more than it saves. */
#define MIN_FMA_PER_THREAD 131072.0

void st_sgemm(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    gemm_plan p;
    plan_init(&p, transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);

    const double work = (double)M * N * K;
    int threads = omp_in_parallel() ? 1 : st_get_threads();
    if (threads > work / MIN_FMA_PER_THREAD)
        threads = (int)(work / MIN_FMA_PER_THREAD);
    if (threads <= 1) {
        run_range(&p, 0, M, 0, N);
        return;
    }

    /* One tile of C per thread, in whole register blocks; split the longer side first (each
     * thread packs and streams the whole of the other operand for its tile, so splitting the
     * longer side duplicates less). More, smaller tiles handed out as threads finish would let
     * a core slowed by a neighbour wait less, but each streams the other operand again (the
     * classifier's 64 x 3136 input, 800 KB, from L3 once per tile): measured slower, up to a
     * fifth on the layers' shapes. The tiles only decide who computes which elements of C,
     * never how, so the result does not depend on them. */
    int parts = threads;
    tile_grid t;
    reg_blocks(&p, &t.bm, &t.bn, &t.um, &t.un);
    if (N >= M) {
        t.gn = imin(t.un, parts);
        t.gm = imin(t.um, (parts + t.gn - 1) / t.gn);
    } else {
        t.gm = imin(t.um, parts);
        t.gn = imin(t.un, (parts + t.gm - 1) / t.gm);
    }
    ST_PARALLEL_FOR(threads, 1, k, t.gm * t.gn, run_tile(&p, &t, (int)k));
}

/* ---------------------------------------------------------------- reference */

void st_sgemm_ref(int transa, int transb, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double sum = 0.0;
            if (alpha != 0.0f) {
                for (int k = 0; k < K; k++) {
                    double a = transa ? A[(ptrdiff_t)k * lda + i] : A[(ptrdiff_t)i * lda + k];
                    double b = transb ? B[(ptrdiff_t)j * ldb + k] : B[(ptrdiff_t)k * ldb + j];
                    sum += a * b;
                }
            }
            float *c = &C[(ptrdiff_t)i * ldc + j];
            double v = (double)alpha * sum;
            if (beta != 0.0f)
                v += (double)beta * *c;
            *c = (float)v;
        }
    }
}
