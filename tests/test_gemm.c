/* test_gemm.c - the SGEMM engine (st_sgemm, st_sgemm_st) against the naive reference, for every
 * kernel level this CPU supports, plus determinism across thread counts and the CPU dispatch API.
 *
 * Two kinds of comparison:
 *  - exact: entries are small integers (|a|, |b| <= 4, K <= 12544, so every partial sum is an
 *    integer below 16 K < 2^18) and alpha, beta are in {1, 0, 0.5, -0.5}; every float operation is
 *    then exact whatever the summation order, so the result must equal the reference bit for
 *    bit. Any missing, repeated or misplaced term is caught.
 *  - rounding: entries uniform in [-1, 1]. For any order of summation, a float32 result of
 *    K products plus the alpha/beta step is within gamma(K+2) * S of the exact value (Higham,
 *    "Accuracy and Stability of Numerical Algorithms", 3.1), where u = 2^-24,
 *    gamma(n) = n*u / (1 - n*u), and S = |alpha| sum_k |a_ik||b_kj| + |beta||c_ij|. The reference
 *    accumulates in double and rounds once (error <= u * S). Tolerance: (gamma(K+2) + 2u) * S
 *    + 1e-30.
 * Matrices have leading dimensions larger than needed; the padding of C must stay untouched.
 * Every kernel level the CPU supports is tested (forced with st_cpu_force_level). Determinism:
 * st_sgemm with 1, 2 and 3 threads and st_sgemm_st (also called from two threads at once) must
 * agree bit for bit, and so must a corner of C computed alone and the same corner of a larger C.
 */
#include "check.h"
#include "gemm.h"
#include "stride.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static int rnd_int(int lo, int hi) /* in [lo, hi] */
{
    return lo + (int)(rnd() % (uint32_t)(hi - lo + 1));
}

static float rnd_unit(void) /* in [-1, 1] */
{
    return (float)((double)rnd() / 4294967295.0 * 2.0 - 1.0);
}

static const float SENTINEL = 1234.5f;

typedef struct problem {
    int ta, tb, M, N, K, lda, ldb, ldc;
    float alpha, beta;
    float *A, *B, *C0; /* C0: initial C (NaN where beta == 0), padding = SENTINEL */
    size_t sizeA, sizeB, sizeC;
} problem;

/* Builds a problem with random padding of the leading dimensions; integer or real data. */
static void problem_make(problem *p, int ta, int tb, int M, int N, int K, float alpha, float beta,
                         int integers)
{
    p->ta = ta;
    p->tb = tb;
    p->M = M;
    p->N = N;
    p->K = K;
    p->alpha = alpha;
    p->beta = beta;
    int arows = ta ? K : M, acols = ta ? M : K;
    int brows = tb ? N : K, bcols = tb ? K : N;
    p->lda = acols + rnd_int(0, 5);
    p->ldb = bcols + rnd_int(0, 5);
    p->ldc = N + rnd_int(0, 5);
    p->sizeA = (size_t)arows * p->lda;
    p->sizeB = (size_t)brows * p->ldb;
    p->sizeC = (size_t)M * p->ldc;
    p->A = malloc(sizeof(float) * (p->sizeA ? p->sizeA : 1));
    p->B = malloc(sizeof(float) * (p->sizeB ? p->sizeB : 1));
    p->C0 = malloc(sizeof(float) * (p->sizeC ? p->sizeC : 1));
    for (size_t i = 0; i < p->sizeA; i++)
        p->A[i] = integers ? (float)rnd_int(-4, 4) : rnd_unit();
    for (size_t i = 0; i < p->sizeB; i++)
        p->B[i] = integers ? (float)rnd_int(-4, 4) : rnd_unit();
    for (int i = 0; i < M; i++)
        for (int j = 0; j < p->ldc; j++) {
            float c = integers ? (float)rnd_int(-8, 8) : rnd_unit();
            p->C0[(size_t)i * p->ldc + j] = j >= N ? SENTINEL : beta == 0.0f ? NAN : c;
        }
}

static void problem_free(problem *p)
{
    free(p->A);
    free(p->B);
    free(p->C0);
}

typedef void (*gemm_fn)(int, int, int, int, int, float, const float *, int, const float *, int,
                        float, float *, int);

static void run_gemm(gemm_fn f, const problem *p, float *C)
{
    memcpy(C, p->C0, sizeof(float) * p->sizeC);
    f(p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb, p->beta, C, p->ldc);
}

/* Big problems check a sample of rows of C (every 7th, so every position within a register
 * block, and the last 8) to keep the naive reference fast; small ones check every row. */
static int row_checked(const problem *p, int i)
{
    return (double)p->M * p->N * p->K < 1e6 || i % 7 == 0 || i >= p->M - 8;
}

/* Reference rows i of C (the rows row_checked selects) into Cr; the others keep C0. */
static void reference(const problem *p, const float *A, const float *B, float alpha, float beta,
                      float *Cr)
{
    memcpy(Cr, p->C0, sizeof(float) * p->sizeC);
    for (int i = 0; i < p->M; i++)
        if (row_checked(p, i))
            st_sgemm_ref(p->ta, p->tb, 1, p->N, p->K, alpha,
                         p->ta ? A + i : A + (size_t)i * p->lda, p->lda, B, p->ldb, beta,
                         Cr + (size_t)i * p->ldc, p->ldc);
}

/* Error bound (gamma(K+2) + 2u) * S of every checked element (see the file comment). */
static void error_bound(const problem *p, float *bound)
{
    float *absA = malloc(sizeof(float) * (p->sizeA ? p->sizeA : 1));
    float *absB = malloc(sizeof(float) * (p->sizeB ? p->sizeB : 1));
    problem q = *p;
    q.C0 = malloc(sizeof(float) * (p->sizeC ? p->sizeC : 1));
    for (size_t i = 0; i < p->sizeA; i++)
        absA[i] = fabsf(p->A[i]);
    for (size_t i = 0; i < p->sizeB; i++)
        absB[i] = fabsf(p->B[i]);
    for (size_t i = 0; i < p->sizeC; i++)
        q.C0[i] = fabsf(p->C0[i]);
    reference(&q, absA, absB, fabsf(p->alpha), fabsf(p->beta), bound);
    const double u = 1.0 / 16777216.0, n = p->K + 2;
    const double g = n * u / (1.0 - n * u) + 2.0 * u;
    for (size_t i = 0; i < p->sizeC; i++)
        bound[i] = (float)(bound[i] * g) + 1e-30f;
    free(absA);
    free(absB);
    free(q.C0);
}

/* Compares the checked rows of C with the reference Cr: exactly (bound == NULL) or within bound,
 * and checks that the padding of every row is untouched. Returns the largest difference
 * (|difference| / bound with a bound); prints it if a check fails. */
static double compare(const problem *p, const float *C, const float *Cr, const float *bound,
                      const char *what)
{
    double worst = 0, worst_d = 0;
    int wi = -1, wj = -1, bad_pad = 0, bad = 0;
    for (int i = 0; i < p->M; i++) {
        for (int j = 0; j < p->ldc; j++) {
            size_t idx = (size_t)i * p->ldc + j;
            if (j >= p->N) {
                bad_pad += C[idx] != SENTINEL;
                continue;
            }
            if (!row_checked(p, i))
                continue;
            double d = fabs((double)C[idx] - (double)Cr[idx]);
            int ok = bound ? d <= bound[idx] : C[idx] == Cr[idx];
            double score = isnan(d) ? INFINITY : bound ? d / bound[idx] : d;
            if (!ok)
                bad = 1;
            if (score > worst || (!ok && wi < 0)) {
                worst = score;
                worst_d = d;
                wi = i;
                wj = j;
            }
        }
    }
    CHECKF(!bad && !bad_pad,
           "%s %s: ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g: largest difference %g at (%d,%d) "
           "(%g x bound), %d padding values overwritten",
           st_kernel_name(), what, p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->beta, worst_d, wi,
           wj, bound ? worst : 0.0, bad_pad);
    return worst;
}

/* The portable kernel is slow (especially under the sanitizers): it skips the biggest problems,
 * which the small sizes and the medium crossing shapes cover for it. */
static int level_runs(int level, const problem *p)
{
    return level > 0 || (double)p->M * p->N * p->K <= 3e6;
}

/* Runs st_sgemm and st_sgemm_st on p at every kernel level and compares them with the reference
 * (computed once); the two must also be bit-identical. Adds the largest difference per level to
 * worst[level]. */
static void check_problem(const problem *p, int integers, double *worst)
{
    float *Cr = malloc(sizeof(float) * p->sizeC);
    float *C1 = malloc(sizeof(float) * p->sizeC);
    float *C2 = malloc(sizeof(float) * p->sizeC);
    float *bound = integers ? NULL : malloc(sizeof(float) * p->sizeC);
    reference(p, p->A, p->B, p->alpha, p->beta, Cr);
    if (bound)
        error_bound(p, bound);
    for (int level = 0; level <= st_cpu_max_level(); level++) {
        if (!level_runs(level, p))
            continue;
        st_cpu_force_level(level);
        run_gemm(st_sgemm, p, C1);
        run_gemm(st_sgemm_st, p, C2);
        double w1 = compare(p, C1, Cr, bound, "st_sgemm");
        double w2 = compare(p, C2, Cr, bound, "st_sgemm_st");
        CHECKF(memcmp(C1, C2, sizeof(float) * p->sizeC) == 0,
               "%s: st_sgemm and st_sgemm_st differ (ta=%d tb=%d M=%d N=%d K=%d)",
               st_kernel_name(), p->ta, p->tb, p->M, p->N, p->K);
        worst[level] = fmax(worst[level], fmax(w1, w2));
    }
    st_cpu_force_level(-1);
    free(Cr);
    free(C1);
    free(C2);
    free(bound);
}

static void print_worst(const char *what, int integers, const double *worst)
{
    static const char *names[] = {"portable", "avx2", "avx512"};
    for (int level = 0; level <= st_cpu_max_level(); level++)
        printf("    %-8s %s, %s: largest %s %.3g\n", names[level], what,
               integers ? "integers" : "reals", integers ? "difference" : "|diff|/bound",
               worst[level]);
}

/* The shapes Stride's layers use (M, N, K, transa, transb). */
static const int stride_shapes[][5] = {
    /* conv forward per image: W[OC,CKK] * col[CKK,P] */
    {16, 784, 25, 0, 0}, {32, 196, 144, 0, 0}, {64, 49, 288, 0, 0},
    /* conv weight grad: dY[OC,P] * col[CKK,P]^T, per image and batched over images */
    {16, 25, 784, 0, 1}, {32, 144, 196, 0, 1}, {64, 288, 49, 0, 1}, {16, 25, 16 * 784, 0, 1},
    /* conv input grad: W^T * dY */
    {25, 784, 16, 1, 0}, {144, 196, 32, 1, 0}, {288, 49, 64, 1, 0},
    /* the same for a group of 4 images (conv.c's grouping of a batch of 64) */
    {16, 4 * 784, 25, 0, 0}, {64, 288, 4 * 49, 0, 1}, {288, 4 * 49, 64, 1, 0},
    /* linear forward: in * W^T */
    {64, 128, 3136, 0, 1}, {64, 512, 784, 0, 1}, {64, 256, 512, 0, 1}, {64, 10, 256, 0, 1},
    {64, 10, 784, 0, 1},
    /* linear backward: dout^T * in, dout * W */
    {128, 3136, 64, 1, 0}, {512, 784, 64, 1, 0}, {10, 256, 64, 1, 0}, {10, 784, 64, 1, 0},
    {64, 3136, 128, 0, 0}, {64, 784, 512, 0, 0}, {64, 256, 10, 0, 0}, {64, 784, 10, 0, 0},
    /* crossing the blocking sizes (MC <= 96, NC = 256, KC = 256) one at a time, then together */
    {101, 33, 37, 0, 0}, {101, 33, 37, 1, 0}, {101, 33, 37, 0, 1}, {101, 33, 37, 1, 1},
    {23, 531, 29, 0, 0}, {23, 531, 29, 1, 0}, {23, 531, 29, 0, 1}, {23, 531, 29, 1, 1},
    {19, 21, 517, 0, 0}, {19, 21, 517, 1, 0}, {19, 21, 517, 0, 1}, {19, 21, 517, 1, 1},
    {203, 531, 517, 0, 0}, {203, 531, 517, 1, 1}, {97, 300, 600, 0, 1}, {130, 70, 300, 1, 0},
};
#define NUM_STRIDE_SHAPES ((int)(sizeof stride_shapes / sizeof stride_shapes[0]))

static const float alphas[] = {1.0f, 0.0f, -0.5f};
static const float betas[] = {0.0f, 1.0f, 0.5f};

/* Random sizes in 1..70, every transpose combination, every alpha and beta. */
static void small_sizes(int integers)
{
    double worst[3] = {0, 0, 0};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int rep = 0; rep < 24; rep++) {
                int M = rnd_int(1, 70), N = rnd_int(1, 70), K = rnd_int(1, 70);
                if (rep < 3) { /* the smallest shapes */
                    M = rep + 1;
                    N = 3 - rep;
                    K = rep == 2 ? 1 : 2;
                }
                float alpha = alphas[rep % 3], beta = betas[(rep / 3) % 3];
                problem p;
                problem_make(&p, ta, tb, M, N, K, alpha, beta, integers);
                check_problem(&p, integers, worst);
                problem_free(&p);
            }
    print_worst("small sizes", integers, worst);
}

static void stride_sizes(int integers)
{
    double worst[3] = {0, 0, 0};
    for (int s = 0; s < NUM_STRIDE_SHAPES; s++) {
        const int *sh = stride_shapes[s];
        problem p;
        problem_make(&p, sh[3], sh[4], sh[0], sh[1], sh[2], s % 4 == 3 ? -0.5f : 1.0f,
                     betas[s % 3], integers);
        check_problem(&p, integers, worst);
        problem_free(&p);
    }
    print_worst("Stride shapes", integers, worst);
}

/* ---------------------------------------------------------------- tests */

static void test_exact_small(void)
{
    small_sizes(1);
}

static void test_exact_stride_shapes(void)
{
    stride_sizes(1);
}

static void test_rounding_small(void)
{
    small_sizes(0);
}

static void test_rounding_stride_shapes(void)
{
    stride_sizes(0);
}

/* With beta == 0, NaN and infinity in C are overwritten, not propagated. */
static void test_beta0_ignores_nan(void)
{
    for (int level = 0; level <= st_cpu_max_level(); level++) {
        st_cpu_force_level(level);
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                problem p;
                problem_make(&p, ta, tb, 37, 45, 300, 1.0f, 0.0f, 0);
                for (size_t i = 0; i < p.sizeC; i++)
                    if (p.C0[i] != SENTINEL)
                        p.C0[i] = i % 2 ? NAN : INFINITY;
                float *C = malloc(sizeof(float) * p.sizeC);
                run_gemm(st_sgemm, &p, C);
                int nonfinite = 0;
                for (int i = 0; i < p.M; i++)
                    for (int j = 0; j < p.N; j++)
                        nonfinite += !isfinite(C[(size_t)i * p.ldc + j]);
                CHECKF(nonfinite == 0, "%s ta=%d tb=%d: %d non-finite values", st_kernel_name(),
                       ta, tb, nonfinite);
                free(C);
                problem_free(&p);
            }
    }
    st_cpu_force_level(-1);
}

/* alpha == 0 or K == 0: C = beta * C, and A, B (full of NaN here) are not read. */
static void test_alpha0_and_k0(void)
{
    float A[6], B[6], C[6];
    for (int i = 0; i < 6; i++) {
        A[i] = NAN;
        B[i] = NAN;
        C[i] = (float)i;
    }
    st_sgemm(0, 0, 2, 3, 2, 0.0f, A, 2, B, 3, 0.5f, C, 3);
    for (int i = 0; i < 6; i++)
        CHECKF(C[i] == 0.5f * (float)i, "alpha=0: C[%d] = %g", i, C[i]);
    st_sgemm_st(1, 1, 2, 3, 0, 1.0f, A, 2, B, 1, 0.0f, C, 3);
    for (int i = 0; i < 6; i++)
        CHECKF(C[i] == 0.0f, "K=0, beta=0: C[%d] = %g", i, C[i]);
    st_sgemm(0, 0, 0, 3, 2, 1.0f, A, 2, B, 3, 0.0f, C, 3); /* M == 0: nothing */
    st_sgemm(0, 0, 2, 0, 2, 1.0f, A, 2, B, 3, 0.0f, C, 3);
    CHECK(C[0] == 0.0f);
}

/* Bit-identical results for 1, 2 and 3 threads, and from st_sgemm_st inside a parallel region. */
static void test_threads_deterministic(void)
{
    static const int shapes[][5] = {
        {203, 531, 517, 0, 0}, {64, 128, 3136, 0, 1}, {288, 49, 64, 1, 0}, {130, 700, 40, 1, 1},
        {512, 784, 64, 1, 0},  {64, 784, 512, 0, 0},  {16, 25, 16 * 784, 0, 1},
        {101, 33, 137, 0, 0},  {23, 531, 29, 1, 1},   {97, 100, 600, 0, 1},
    };
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int level = 0; level <= st_cpu_max_level(); level++) {
        st_cpu_force_level(level);
        for (int s = 0; s < nshapes; s++) {
            const int *sh = shapes[s];
            problem p;
            problem_make(&p, sh[3], sh[4], sh[0], sh[1], sh[2], 1.0f, s % 2 ? 0.5f : 0.0f, 0);
            if (!level_runs(level, &p)) {
                problem_free(&p);
                continue;
            }
            float *C1 = malloc(sizeof(float) * p.sizeC);
            float *Cn = malloc(sizeof(float) * p.sizeC);
            st_set_threads(1);
            run_gemm(st_sgemm, &p, C1);
            for (int t = 2; t <= 3; t++) {
                st_set_threads(t);
                run_gemm(st_sgemm, &p, Cn);
                CHECKF(memcmp(C1, Cn, sizeof(float) * p.sizeC) == 0,
                       "%s M=%d N=%d K=%d ta=%d tb=%d: %d threads differ from 1", st_kernel_name(),
                       p.M, p.N, p.K, p.ta, p.tb, t);
            }
            /* st_sgemm_st called by two threads at once (each into its own copy of C) */
            float *Cp = malloc(sizeof(float) * p.sizeC * 2);
            memcpy(Cp, p.C0, sizeof(float) * p.sizeC);
            memcpy(Cp + p.sizeC, p.C0, sizeof(float) * p.sizeC);
#pragma omp parallel for num_threads(2)
            for (int r = 0; r < 2; r++)
                st_sgemm_st(p.ta, p.tb, p.M, p.N, p.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.beta,
                            Cp + r * p.sizeC, p.ldc);
            CHECKF(memcmp(C1, Cp, sizeof(float) * p.sizeC) == 0 &&
                       memcmp(C1, Cp + p.sizeC, sizeof(float) * p.sizeC) == 0,
                   "%s M=%d N=%d K=%d: st_sgemm_st in a parallel region differs",
                   st_kernel_name(), p.M, p.N, p.K);
            free(Cp);
            free(C1);
            free(Cn);
            problem_free(&p);
        }
    }
    st_set_threads(0);
    st_cpu_force_level(-1);
}

/* A row (column) of C does not depend on how many rows (columns) C has: edge tiles round exactly
 * like interior ones. Shapes that keep the blocked path (not NT with long K). */
static void test_edges_round_like_interior(void)
{
    static const int trans[][2] = {{0, 0}, {1, 0}, {1, 1}};
    for (int level = 0; level <= st_cpu_max_level(); level++) {
        st_cpu_force_level(level);
        for (int t = 0; t < 3; t++) {
            const int ta = trans[t][0], tb = trans[t][1];
            problem p; /* the big problem: 37 x 45, K = 300 (two K blocks) */
            problem_make(&p, ta, tb, 37, 45, 300, -1.3f, 0.7f, 0);
            float *Cbig = malloc(sizeof(float) * p.sizeC);
            run_gemm(st_sgemm_st, &p, Cbig);
            int bad = 0;
            for (int M = 1; M <= 13; M += 4)
                for (int N = 1; N <= 40; N += 13) {
                    /* the top-left M x N corner of the same problem */
                    float *C = malloc(sizeof(float) * p.sizeC);
                    memcpy(C, p.C0, sizeof(float) * p.sizeC);
                    st_sgemm_st(ta, tb, M, N, p.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.beta, C,
                                p.ldc);
                    for (int i = 0; i < M; i++)
                        bad += memcmp(C + (size_t)i * p.ldc, Cbig + (size_t)i * p.ldc,
                                      sizeof(float) * (size_t)N) != 0;
                    free(C);
                }
            CHECKF(bad == 0, "%s ta=%d tb=%d: %d rows of a corner differ from the full product",
                   st_kernel_name(), ta, tb, bad);
            free(Cbig);
            problem_free(&p);
        }
    }
    st_cpu_force_level(-1);
}

/* The same for the dot-product kernel (A * B^T, long K, few rows): a row of C computed alone (a
 * matrix-vector product, blocked 8 columns at a time) equals that row computed in a block of 4
 * rows, to the bit, at K with and without a tail. */
static void test_dot_rows_alone_like_blocked(void)
{
    static const int Ks[] = {128, 131, 3136};
    for (int level = 0; level <= st_cpu_max_level(); level++) {
        st_cpu_force_level(level);
        int bad = 0;
        for (size_t t = 0; t < sizeof Ks / sizeof *Ks; t++) {
            problem p;
            problem_make(&p, 0, 1, 9, 45, Ks[t], 0.9f, t == 1 ? 0.5f : 0.0f, 0);
            float *Cbig = malloc(sizeof(float) * p.sizeC);
            run_gemm(st_sgemm_st, &p, Cbig);
            static const int Ns[] = {8, 45};
            for (int i = 0; i < p.M; i++)
                for (int u = 0; u < 2; u++) {
                    int N = Ns[u];
                    float *C = malloc(sizeof(float) * p.sizeC);
                    memcpy(C, p.C0, sizeof(float) * p.sizeC);
                    st_sgemm_st(0, 1, 1, N, p.K, p.alpha, p.A + (size_t)i * p.lda, p.lda, p.B,
                                p.ldb, p.beta, C + (size_t)i * p.ldc, p.ldc);
                    bad += memcmp(C + (size_t)i * p.ldc, Cbig + (size_t)i * p.ldc,
                                  sizeof(float) * (size_t)N) != 0;
                    free(C);
                }
            free(Cbig);
            problem_free(&p);
        }
        CHECKF(bad == 0, "%s: %d single rows differ from the blocked product", st_kernel_name(),
               bad);
    }
    st_cpu_force_level(-1);
}

static void test_cpu_api(void)
{
    int max = st_cpu_max_level();
    CHECK(max >= 0 && max <= 2);
    static const char *names[] = {"portable", "avx2", "avx512"};
    for (int level = 0; level <= 2; level++) {
        st_cpu_force_level(level);
        int got = st_cpu_level();
        CHECKF(got == (level < max ? level : max), "forced %d, got %d", level, got);
        CHECKF(strcmp(st_kernel_name(), names[got]) == 0, "level %d named %s", got,
               st_kernel_name());
    }
    /* STRIDE_KERNEL lowers the automatic choice; higher or unknown values are ignored */
    const char *old = getenv("STRIDE_KERNEL");
    char *saved = old ? strdup(old) : NULL;
    setenv("STRIDE_KERNEL", "portable", 1);
    st_cpu_force_level(-1);
    CHECK(st_cpu_level() == 0 && strcmp(st_kernel_name(), "portable") == 0);
    setenv("STRIDE_KERNEL", "avx512", 1);
    st_cpu_force_level(-1);
    CHECK(st_cpu_level() == max);
    setenv("STRIDE_KERNEL", "bogus", 1);
    st_cpu_force_level(-1);
    CHECK(st_cpu_level() == max);
    if (saved) {
        setenv("STRIDE_KERNEL", saved, 1);
        free(saved);
    } else {
        unsetenv("STRIDE_KERNEL");
    }
    st_cpu_force_level(-1);
    printf("    CPU supports level %d (%s), using %s\n", max, names[max], st_kernel_name());

    st_set_threads(3);
    CHECK(st_get_threads() == 3);
    st_set_threads(0);
    CHECK(st_get_threads() == omp_get_num_procs());
}

/* st_set_threads: a count is kept, a larger one than ST_MAX_THREADS capped, 0 the default. */
static void test_thread_count(void)
{
    int def = st_get_threads();
    CHECK(def >= 1 && def <= ST_MAX_THREADS);
    st_set_threads(3);
    CHECK(st_get_threads() == 3);
    st_set_threads(ST_MAX_THREADS + 5);
    CHECKF(st_get_threads() == ST_MAX_THREADS, "%d threads", st_get_threads());
    st_set_threads(-2);
    CHECKF(st_get_threads() == def, "%d threads, default %d", st_get_threads(), def);
    st_set_threads(0);
    CHECK(st_get_threads() == def);
}

int main(void)
{
    RUN(test_cpu_api);
    RUN(test_thread_count);
    RUN(test_exact_small);
    RUN(test_exact_stride_shapes);
    RUN(test_rounding_small);
    RUN(test_rounding_stride_shapes);
    RUN(test_beta0_ignores_nan);
    RUN(test_alpha0_and_k0);
    RUN(test_threads_deterministic);
    RUN(test_edges_round_like_interior);
    RUN(test_dot_rows_alone_like_blocked);
    return CHECK_DONE();
}
