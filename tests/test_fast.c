/* test_fast.c - the fast kernels against the reference kernels, and determinism across threads.
 *
 * Tolerance: the fast kernels sum the same terms in another order (GEMM blocking, FMA), so each
 * value may differ by about K * 2^-24 * sum|terms| where K is the number of terms. We check
 * |fast - ref| <= 1e-5 * (sum of |terms| bound) using a scale computed from the data: for a
 * convolution the scale of an output is sum |x| |w| over its window, bounded here by
 * K * max|x| * max|w|. */
#include "check.h"
#include "conv.h"
#include "gemm.h"
#include "kernels.h"
#include "layers.h"
#include "model.h"
#include "stride.h"

#include <string.h>

static float frand(st_rng *r)
{
    return 2.0f * st_rng_uniform(r) - 1.0f;
}

static void fill(float *x, size_t n, st_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = frand(r);
}

/* max |a-b| / scale over n values; prints it */
static double maxdiff(const char *what, const float *a, const float *b, size_t n, double scale)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / scale;
        if (d > worst || d != d)
            worst = d;
    }
    printf("    %-28s max |fast-ref|/scale = %.3g\n", what, worst);
    return worst;
}

/* dst = src (N images of C planes of HW values) channels-last: N x HW x C. */
static float *to_nhwc(const float *src, int N, int C, int HW)
{
    float *dst = malloc((size_t)N * C * HW * 4 + 4);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < HW; p++)
                dst[((size_t)n * HW + p) * C + c] = src[((size_t)n * C + c) * HW + p];
    return dst;
}

/* Whether n floats are the same bits. */
static int same_bits(const void *a, const void *b, size_t n)
{
    return memcmp(a, b, n * 4) == 0;
}

typedef struct conv_case {
    int N, C, H, W, OC, K, S, P;
} conv_case;

static int nhwc_cases[4]; /* conv cases run with each layout (ST_CONV_NHWC_IN / _OUT bits) */

/* The training conv with channels-last layouts (st_conv_shape.layout) computes what it computes
 * NCHW, to the bit, only in another memory order: y, stats, dx, dw, db are the NCHW call's. */
static void check_nhwc(const st_conv_shape *s0, int N, const float *x, const float *w,
                       const float *b, const float *dy, float *ws, int nt, const float *y,
                       const double *stats, const float *dx, const float *dw, const float *db)
{
    int HW = s0->H * s0->W, P = s0->OH * s0->OW;
    size_t nin = (size_t)N * s0->C * HW, nout = (size_t)N * s0->OC * P;
    size_t nw = (size_t)s0->OC * s0->C * s0->KH * s0->KW;
    float *xt = to_nhwc(x, N, s0->C, HW), *dyt = to_nhwc(dy, N, s0->OC, P);
    float *yt = to_nhwc(y, N, s0->OC, P), *dxt = to_nhwc(dx, N, s0->C, HW);
    for (int layout = 1; layout <= 3; layout++) {
        st_conv_shape s = *s0;
        s.layout = layout;
        if (!st_conv_nhwc_fits(&s, N, layout))
            continue;
        nhwc_cases[layout]++;
        int in = layout & ST_CONV_NHWC_IN, out = layout & ST_CONV_NHWC_OUT;
        float *y3 = malloc(nout * 4), *dx3 = malloc(nin * 4), *dw3 = calloc(nw, 4);
        float *db3 = calloc((size_t)s.OC, 4);
        double *st3 = malloc(2 * (size_t)s.OC * sizeof(double));
        st_conv2d_forward(y3, in ? xt : x, w, b, &s, N, ws, nt, st3, 0, NULL);
        st_conv2d_backward(dx3, dw3, db3, out ? dyt : dy, in ? xt : x, w, &s, N, ws, nt, NULL);
        int ok = same_bits(y3, out ? yt : y, nout) &&
                 memcmp(st3, stats, 2 * (size_t)s.OC * sizeof(double)) == 0 &&
                 same_bits(dx3, in ? dxt : dx, nin) && same_bits(dw3, dw, nw) &&
                 same_bits(db3, db, (size_t)s.OC);
        CHECKF(ok, "layout %s%s%s: output, sums or gradients differ from NCHW's",
               in ? "NHWC in" : "", in && out ? ", " : "", out ? "NHWC out" : "");
        free(y3), free(dx3), free(dw3), free(db3), free(st3);
    }
    free(xt), free(dyt), free(yt), free(dxt);
}

static int pooled_cases;

/* st_conv2d_forward_affine with a 2x2 max pool after it (evaluation's conv, batch norm, ReLU,
 * pool): y is the same call's output unpooled. Where it pools as it writes (can_pool), the values
 * are the reference pool of y to the bit (ties and NaN by PyTorch's rule); elsewhere it must say
 * it did not pool and write y. */
static void check_pooled(const st_conv_shape *s, int N, const float *x, const float *w,
                         const float *scale, const float *shift, float *ws, int nt, int relu,
                         const float *y, int can_pool)
{
    int PH = s->OH / 2, PW = s->OW / 2;
    if (PH < 1 || PW < 1)
        return;
    size_t nout = (size_t)N * s->OC * s->OH * s->OW, np = (size_t)N * s->OC * PH * PW;
    float *full = malloc(nout * 4), *got = malloc(np * 4), *want = malloc(np * 4);
    int32_t *am = malloc(np * sizeof(int32_t));
    memset(got, 0, np * 4);
    int pooled = st_conv2d_forward_affine(full, got, x, w, scale, shift, s, N, ws, nt, relu, NULL);
    CHECKF(pooled == can_pool, "pooled %d, expected %d", pooled, can_pool);
    if (pooled) {
        maxpool2d_forward_ref(want, am, y, N, s->OC, s->OH, s->OW, 2, 2);
        CHECKF(memcmp(got, want, np * 4) == 0, "conv C=%d %dx%d OC=%d, pooled as written: "
               "differs from its output pooled", s->C, s->H, s->W, s->OC);
        pooled_cases++;
    } else {
        CHECK(memcmp(full, y, nout * 4) == 0);
    }
    free(full), free(got), free(want), free(am);
}

static void test_conv_fast_vs_ref(void)
{
    const conv_case cases[] = {
        {1, 1, 28, 28, 16, 5, 1, 2}, {3, 16, 14, 14, 32, 3, 1, 1}, {5, 32, 7, 7, 64, 3, 1, 1},
        {2, 3, 7, 9, 5, 3, 2, 0},    {4, 2, 9, 7, 3, 1, 1, 0},     {17, 4, 6, 5, 6, 5, 2, 2},
        {64, 1, 28, 28, 16, 5, 1, 2}, {33, 16, 14, 14, 8, 3, 2, 1},
        /* the implicit-GEMM path (stride 1) at other paddings, odd sizes, partial slivers */
        {3, 5, 8, 11, 7, 3, 1, 0},    {2, 3, 6, 10, 13, 5, 1, 1},   {40, 32, 7, 7, 64, 3, 1, 1},
        {2, 7, 1, 1, 3, 1, 1, 0},     {3, 2, 3, 4, 5, 3, 1, 2},
        /* Winograd F(2x2, 3x3) (st_conv_winograd; also the two 7x7 cases above): the CNN's
         * conv2, several chunks and groups, non-square, more input than output channels, the
         * smallest batch it takes, odd sizes (tiles half outside), a single row */
        {4, 16, 14, 14, 32, 3, 1, 1}, {64, 16, 14, 14, 32, 3, 1, 1}, {6, 8, 6, 10, 16, 3, 1, 1},
        {5, 24, 4, 2, 8, 3, 1, 1},    {ST_CONV_WINOGRAD_MIN_BATCH, 8, 2, 2, 8, 3, 1, 1},
        {4, 8, 5, 9, 16, 3, 1, 1},    {7, 16, 1, 3, 8, 3, 1, 1},
        /* one input channel, stride 1, without im2col (st_conv_direct; also the two 28x28 cases
         * above): no padding, odd channel counts, more channels than a micro-kernel tile, a kernel
         * larger than the image, 1x1, an even kernel, a kernel wider than a micro-kernel tile
         * (7 columns); and stride 2, which is not */
        {3, 1, 9, 7, 13, 3, 1, 0},    {2, 1, 5, 6, 40, 3, 1, 1},    {5, 1, 4, 3, 3, 5, 1, 2},
        {2, 1, 1, 1, 4, 1, 1, 0},     {4, 1, 10, 12, 8, 2, 1, 0},   {2, 1, 12, 11, 5, 7, 1, 3},
        {3, 1, 9, 9, 6, 3, 2, 1},
    };
    st_rng r;
    st_rng_seed(&r, 42);
    int orientation[2] = {0, 0}; /* cases run by st_conv2d_forward_affine as W * col, col^T * W^T */
    int wino_cases = 0, direct_cases = 0;
    pooled_cases = 0;
    memset(nhwc_cases, 0, sizeof nhwc_cases);
    /* each case once as it runs by default, and once more by im2col where that is Winograd */
    for (size_t t = 0, off = 0; t < sizeof cases / sizeof *cases; t += off, off = !off) {
        const conv_case *c = &cases[t];
        int OH = st_conv_out_size(c->H, c->K, c->S, c->P), OW = st_conv_out_size(c->W, c->K, c->S, c->P);
        st_conv_shape s = {c->C, c->H, c->W, c->OC, c->K, c->K, c->S, c->P, OH, OW, 0};
        size_t nin = (size_t)c->N * c->C * c->H * c->W, nout = (size_t)c->N * c->OC * OH * OW;
        size_t nw = (size_t)c->OC * c->C * c->K * c->K;
        float *x = malloc(nin * 4), *w = malloc(nw * 4), *b = malloc(c->OC * 4);
        float *y1 = malloc(nout * 4), *y2 = malloc(nout * 4), *dy = malloc(nout * 4);
        float *dx1 = malloc(nin * 4), *dx2 = malloc(nin * 4);
        float *dw1 = calloc(nw, 4), *dw2 = calloc(nw, 4), *db1 = calloc(c->OC, 4),
              *db2 = calloc(c->OC, 4);
        int nt = 3;
        float *ws = malloc(st_conv_ws_floats(&s, c->N, nt) * 4);
        st_conv_set_winograd(1);
        if (!off && !st_conv_winograd(&s, c->N))
            off = 1; /* no second round */
        st_conv_set_winograd(!off);
        fill(x, nin, &r), fill(w, nw, &r), fill(b, c->OC, &r), fill(dy, nout, &r);
        conv2d_forward_ref(y1, x, w, b, c->N, c->C, c->H, c->W, c->OC, c->K, c->K, c->S, c->P);
        st_conv2d_forward(y2, x, w, b, &s, c->N, ws, nt, NULL, 0, NULL);
        conv2d_backward_ref(dx1, dw1, db1, dy, x, w, c->N, c->C, c->H, c->W, c->OC, c->K, c->K,
                            c->S, c->P);
        st_conv2d_backward(dx2, dw2, db2, dy, x, w, &s, c->N, ws, nt, NULL);
        int wino = st_conv_winograd(&s, c->N), direct = st_conv_direct(&s);
        wino_cases += wino;
        direct_cases += direct;
        printf("  conv N=%d C=%d %dx%d OC=%d k=%d s=%d p=%d%s\n", c->N, c->C, c->H, c->W, c->OC,
               c->K, c->S, c->P, wino ? " (Winograd)" : direct ? " (direct)" : "");
        double kfw = (double)c->C * c->K * c->K, kdw = (double)c->N * OH * OW;
        double tol = 1e-5;
        CHECK(maxdiff("output", y1, y2, nout, kfw + 1) < tol);
        CHECK(maxdiff("input grad", dx1, dx2, nin, (double)c->OC * c->K * c->K) < tol);
        CHECK(maxdiff("weight grad", dw1, dw2, nw, kdw) < tol);
        CHECK(maxdiff("bias grad", db1, db2, (size_t)c->OC, kdw) < tol);

        /* the per-channel sums a following batch norm reads, computed as the output is written */
        double *stats = malloc(2 * (size_t)c->OC * sizeof(double));
        st_conv2d_forward(y2, x, w, b, &s, c->N, ws, nt, stats, 0, NULL);
        double worst_stat = 0.0;
        for (int oc = 0; oc < c->OC; oc++) {
            double s1 = 0.0, s2 = 0.0, a1 = 0.0;
            for (int i = 0; i < c->N; i++)
                for (int p = 0; p < OH * OW; p++) {
                    double v = y2[((size_t)i * c->OC + oc) * OH * OW + p];
                    s1 += v, s2 += v * v, a1 += fabs(v);
                }
            double e1 = fabs(stats[2 * oc] - s1) / (a1 + 1e-30);
            double e2 = fabs(stats[2 * oc + 1] - s2) / (s2 + 1e-30);
            worst_stat = fmax(worst_stat, fmax(e1, e2));
        }
        printf("    %-28s max rel. error = %.3g\n", "channel sums, sums of squares", worst_stat);
        CHECK(worst_stat < 1e-12);
        check_nhwc(&s, c->N, x, w, b, dy, ws, nt, y2, stats, dx2, dw2, db2);
        free(stats);

        /* evaluation form: conv without bias, then a per-channel affine map and a ReLU (every
         * other case) - against the reference conv with the map applied after it */
        int relu = (int)(t % 2);
        float *scale = malloc(c->OC * 4), *shift = malloc(c->OC * 4);
        fill(scale, c->OC, &r), fill(shift, c->OC, &r);
        conv2d_forward_ref(y1, x, w, NULL, c->N, c->C, c->H, c->W, c->OC, c->K, c->K, c->S, c->P);
        for (size_t i = 0; i < nout; i++) {
            int oc = (int)(i / ((size_t)OH * OW) % c->OC);
            float v = y1[i] * scale[oc] + shift[oc];
            y1[i] = relu && v < 0.0f ? 0.0f : v;
        }
        memset(y2, 0, nout * 4);
        int transposed = st_conv_forward_transposed(&s, c->N);
        orientation[transposed]++;
        CHECK(st_conv2d_forward_affine(y2, NULL, x, w, scale, shift, &s, c->N, ws, nt, relu,
                                       NULL) == 0);
        CHECK(maxdiff(relu ? "affine + ReLU output" : "affine output", y1, y2, nout, kfw + 1) <
              tol);
        /* with a 2x2 max pool after it: the pool of that output, to the bit, where the path
         * pools as it writes (all but the untransposed GEMM); the reference pool's otherwise */
        int can_pool = wino || direct || transposed;
        check_pooled(&s, c->N, x, w, scale, shift, ws, nt, relu, y2, can_pool);
        /* a NaN weight makes its channel's outputs NaN, through the ReLU too; not the others' */
        w[0] = NAN;
        st_conv2d_forward_affine(y2, NULL, x, w, scale, shift, &s, c->N, ws, nt, relu, NULL);
        CHECK(y2[0] != y2[0] && y2[nout - 1] == y2[nout - 1]);
        check_pooled(&s, c->N, x, w, scale, shift, ws, nt, relu, y2, can_pool);
        free(scale), free(shift);
        free(x), free(w), free(b), free(y1), free(y2), free(dy), free(dx1), free(dx2);
        free(dw1), free(dw2), free(db1), free(db2), free(ws);
    }
    st_conv_set_winograd(1);
    printf("  evaluation form: %d cases as W * col, %d as col^T * W^T; %d by Winograd, %d by the "
           "one-channel forward\n", orientation[0], orientation[1], wino_cases, direct_cases);
    CHECK(orientation[0] > 0 && orientation[1] > 0);
    CHECK(wino_cases == 9 && direct_cases == 8);
    printf("  pooled as written: %d cases\n", pooled_cases);
    CHECK(pooled_cases > 0);
    printf("  channels-last (output, sums, gradients: the NCHW bits): %d cases NHWC in, %d NHWC "
           "out, %d both\n", nhwc_cases[1], nhwc_cases[2], nhwc_cases[3]);
    CHECK(nhwc_cases[1] >= 9 && nhwc_cases[2] >= 9 && nhwc_cases[3] >= 5);
}

/* The convs again with each lower kernel level this CPU runs (the one-channel forward calls the
 * level's micro-kernel directly, with its own tile size). */
static void test_conv_lower_levels(void)
{
    for (int level = 0; level < st_cpu_max_level(); level++) {
        st_cpu_force_level(level);
        printf("  kernel level %s:\n", st_kernel_name());
        test_conv_fast_vs_ref();
    }
    st_cpu_force_level(-1);
}

/* The pooled write with values where choosing the window's input before the affine map could
 * go wrong: scales of either sign, zero and infinite, an infinite shift; inputs with ties, -0,
 * infinities and NaNs. A 1x1 conv of one channel with weight 1 passes them through unchanged;
 * each of the 16 output channels has its own (scale, shift), at every kernel level. */
static void test_pooled_special_values(void)
{
    int H = 6, W = 10, OC = 16;
    st_conv_shape s = {1, H, W, OC, 1, 1, 1, 0, H, W, 0};
    float x[60], w[16], scale[16] = {2, -3, 0, 1, -0.5f, INFINITY, 1, -1, 0.25f, -INFINITY, 1, 3,
                                     -2, 1e-30f, -1e30f, 1};
    float shift[16] = {0, 1, -1, INFINITY, 0.5f, 0, -INFINITY, NAN, 0, 0, -0.0f, 2, -2, 0, 1, -1};
    const float pattern[12] = {1, 1, -0.0f, 0.0f, INFINITY, -INFINITY, NAN, -2, 3, -NAN, 5, 5};
    for (int i = 0; i < 60; i++)
        x[i] = i % 7 == 3 ? pattern[i % 12] : (float)((i * 37) % 11) - 5.0f;
    for (int o = 0; o < OC; o++)
        w[o] = 1.0f;
    float *ws = malloc(st_conv_ws_floats(&s, 1, 1) * 4);
    float y[16 * 60];
    for (int level = st_cpu_max_level(); level >= 0; level--)
        for (int relu = 0; relu <= 1; relu++) {
            st_cpu_force_level(level);
            st_conv2d_forward_affine(y, NULL, x, w, scale, shift, &s, 1, ws, 1, relu, NULL);
            check_pooled(&s, 1, x, w, scale, shift, ws, 1, relu, y, 1);
        }
    st_cpu_force_level(-1);
    free(ws);
}

/* Winograd mixes a tile's inputs with each other: a NaN input must still reach every output whose
 * 3x3 window holds it (and every output channel there), as with im2col; with 2x2 tiles exactly
 * those, with 4x4 tiles at most the outputs of the tiles whose 6x6 input blocks hold it. */
static void test_winograd_nan_inputs(void)
{
    int N = 4, C = 8, H = 7, W = 6, OC = 8;
    st_conv_shape s = {C, H, W, OC, 3, 3, 1, 1, H, W, 0};
    CHECK(st_conv_winograd(&s, N));
    size_t nin = (size_t)N * C * H * W, nout = (size_t)N * OC * H * W;
    float *x = malloc(nin * 4), *w = malloc((size_t)OC * C * 9 * 4), *b = calloc(OC, 4);
    float *y1 = malloc(nout * 4), *y2 = malloc(nout * 4);
    float *ws = malloc(st_conv_ws_floats(&s, N, 2) * 4);
    st_rng r;
    st_rng_seed(&r, 8);
    fill(w, (size_t)OC * C * 9, &r);
    for (int m = 2; m <= 4; m += 2) {
        st_conv_set_winograd_tile(m);
        CHECK(st_conv_winograd_tile(&s) == m);
        size_t lost = 0, outside = 0, extra = 0, nans = 0;
        for (int pos = 0; pos < H * W; pos += 5) { /* corners, edges and inside of the tiles */
            int ph = pos / W + 1, pw = pos % W + 1; /* in the padded image */
            fill(x, nin, &r);
            x[(size_t)(1 * C + 3) * H * W + pos] = NAN; /* image 1, channel 3 */
            conv2d_forward_ref(y1, x, w, b, N, C, H, W, OC, 3, 3, 1, 1);
            st_conv2d_forward(y2, x, w, b, &s, N, ws, 2, NULL, 0, NULL);
            for (size_t i = 0; i < nout; i++) {
                int nan1 = y1[i] != y1[i], nan2 = y2[i] != y2[i];
                int img = (int)(i / ((size_t)OC * H * W)), p = (int)(i % ((size_t)H * W));
                int ty = p / W / m, tx = p % W / m; /* the output's tile; its inputs: */
                int held = img == 1 && ph >= m * ty && ph < m * ty + m + 2 && pw >= m * tx &&
                           pw < m * tx + m + 2;
                nans += nan1;
                lost += nan1 && !nan2;
                extra += nan2 && !nan1;
                outside += nan2 && !held;
            }
        }
        printf("  NaN inputs, %dx%d tiles: %zu NaN outputs by im2col; by Winograd %zu lost, %zu "
               "more, %zu outside the tiles\n", m, m, nans, lost, extra, outside);
        CHECK(nans > 0 && lost == 0 && outside == 0);
        if (m == 2)
            CHECK(extra == 0);
    }
    st_conv_set_winograd_tile(0);
    free(x), free(w), free(b), free(y1), free(y2), free(ws);
}

/* Both tile sizes on the CNN's Winograd shapes and an odd one, against the reference: forward,
 * input and weight gradient (each shape's own size is covered by test_conv_fast_vs_ref). */
static void test_winograd_tile_sizes(void)
{
    const int shapes[][5] = {{4, 16, 14, 14, 32}, {5, 32, 7, 7, 64}, {4, 8, 5, 9, 16}};
    st_rng r;
    st_rng_seed(&r, 31);
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++)
        for (int m = 2; m <= 4; m += 2) {
            int N = shapes[k][0], C = shapes[k][1], H = shapes[k][2], W = shapes[k][3];
            int OC = shapes[k][4];
            st_conv_shape s = {C, H, W, OC, 3, 3, 1, 1, H, W, 0};
            size_t nin = (size_t)N * C * H * W, nout = (size_t)N * OC * H * W;
            size_t nw = (size_t)OC * C * 9;
            float *x = malloc(nin * 4), *w = malloc(nw * 4), *b = malloc(OC * 4);
            float *dy = malloc(nout * 4), *y1 = malloc(nout * 4), *y2 = malloc(nout * 4);
            float *dx1 = malloc(nin * 4), *dx2 = malloc(nin * 4), *dw1 = calloc(nw, 4);
            float *dw2 = calloc(nw, 4), *db1 = calloc(OC, 4), *db2 = calloc(OC, 4);
            float *ws = malloc(st_conv_ws_floats(&s, N, 2) * 4);
            fill(x, nin, &r), fill(w, nw, &r), fill(b, OC, &r), fill(dy, nout, &r);
            st_conv_set_winograd_tile(m);
            CHECK(st_conv_winograd(&s, N) && st_conv_winograd_tile(&s) == m);
            printf("  Winograd %dx%d tiles, N=%d C=%d %dx%d OC=%d\n", m, m, N, C, H, W, OC);
            conv2d_forward_ref(y1, x, w, b, N, C, H, W, OC, 3, 3, 1, 1);
            st_conv2d_forward(y2, x, w, b, &s, N, ws, 2, NULL, 0, NULL);
            conv2d_backward_ref(dx1, dw1, db1, dy, x, w, N, C, H, W, OC, 3, 3, 1, 1);
            st_conv2d_backward(dx2, dw2, db2, dy, x, w, &s, N, ws, 2, NULL);
            CHECK(maxdiff("output", y1, y2, nout, C * 9 + 1) < 1e-5);
            CHECK(maxdiff("input grad", dx1, dx2, nin, (double)OC * 9) < 1e-5);
            CHECK(maxdiff("weight grad", dw1, dw2, nw, (double)N * H * W) < 1e-5);
            free(x), free(w), free(b), free(dy), free(y1), free(y2), free(dx1), free(dx2);
            free(dw1), free(dw2), free(db1), free(db2), free(ws);
        }
    st_conv_set_winograd_tile(0);
    CHECK(st_conv_winograd_tile(&(st_conv_shape){16, 14, 14, 32, 3, 3, 1, 1, 14, 14, 0}) == 4);
    CHECK(st_conv_winograd_tile(&(st_conv_shape){8, 2, 2, 8, 3, 3, 1, 1, 2, 2, 0}) == 2);
}

/* The Winograd backward (input and weight gradient) against finite differences of the Winograd
 * forward itself: L = sum(y * r), each weight and input moved by +-h. The conv is linear in
 * each, so the central difference is exact but for the rounding of L (accumulated in double from
 * float outputs of O(1)): |fd - an| <= 5e-3 |an| + 2e-3 max |an|, as in test_gradcheck.c. Odd
 * sizes (tiles half outside), one row of tiles, and two groups of two chunks of images each (the
 * chunks' products added up); at most about 1000 elements of each tensor, evenly spread. */
static double wino_loss(const float *x, const float *w, const float *b, const float *r, float *y,
                        const st_conv_shape *s, int N, float *ws)
{
    st_conv2d_forward(y, x, w, b, s, N, ws, 2, NULL, 0, NULL);
    double l = 0.0;
    for (size_t i = 0; i < (size_t)N * s->OC * s->OH * s->OW; i++)
        l += (double)y[i] * r[i];
    return l;
}

static int fd_matches(const char *what, const float *fd, const float *an, size_t n, size_t step)
{
    double amax = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++)
        amax = fmax(amax, fabs(an[i]));
    int ok = amax > 0.0;
    for (size_t i = 0; i < n; i += step) {
        double d = fabs((double)fd[i] - an[i]), lim = 5e-3 * fabs(an[i]) + 2e-3 * amax;
        ok &= d <= lim;
        worst = fmax(worst, d / lim);
    }
    printf("    %-14s %zu of %zu values, worst |fd - an| / tolerance = %.3g\n", what,
           (n + step - 1) / step, n, worst);
    return ok;
}

static void test_winograd_backward_fd(void)
{
    const int shapes[][5] = {{6, 8, 5, 7, 16}, {9, 16, 2, 3, 8}, {30, 8, 6, 6, 32}};
    /* (N, C, H, W, OC) */
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        int N = shapes[k][0], C = shapes[k][1], H = shapes[k][2], W = shapes[k][3];
        int OC = shapes[k][4];
        st_conv_shape s = {C, H, W, OC, 3, 3, 1, 1, H, W, 0};
        CHECK(st_conv_winograd(&s, N));
        size_t nin = (size_t)N * C * H * W, nout = (size_t)N * OC * H * W, nw = (size_t)OC * C * 9;
        float *x = malloc(nin * 4), *w = malloc(nw * 4), *b = malloc(OC * 4), *r = malloc(nout * 4);
        float *y = malloc(nout * 4), *dx = malloc(nin * 4), *dw = calloc(nw, 4);
        float *db = calloc(OC, 4);
        float *fdx = malloc(nin * 4), *fdw = malloc(nw * 4);
        float *ws = malloc(st_conv_ws_floats(&s, N, 2) * 4);
        st_rng g;
        st_rng_seed(&g, 77 + (uint64_t)k);
        fill(x, nin, &g), fill(w, nw, &g), fill(b, OC, &g), fill(r, nout, &g);
        st_conv2d_backward(dx, dw, db, r, x, w, &s, N, ws, 2, NULL);
        const float h = 1e-2f;
        float *vars[2] = {w, x}, *fds[2] = {fdw, fdx};
        size_t counts[2] = {nw, nin}, steps[2] = {nw / 1000 + 1, nin / 1000 + 1};
        for (int v = 0; v < 2; v++)
            for (size_t i = 0; i < counts[v]; i += steps[v]) {
                float x0 = vars[v][i], xp = x0 + h, xm = x0 - h;
                vars[v][i] = xp;
                double lp = wino_loss(x, w, b, r, y, &s, N, ws);
                vars[v][i] = xm;
                double lm = wino_loss(x, w, b, r, y, &s, N, ws);
                vars[v][i] = x0;
                fds[v][i] = (float)((lp - lm) / ((double)xp - (double)xm));
            }
        printf("  Winograd conv N=%d C=%d %dx%d OC=%d\n", N, C, H, W, OC);
        CHECK(fd_matches("weight grad", fdw, dw, nw, steps[0]));
        CHECK(fd_matches("input grad", fdx, dx, nin, steps[1]));
        free(x), free(w), free(b), free(r), free(y), free(dx), free(dw), free(db), free(fdx);
        free(fdw), free(ws);
    }
}

/* A forward with a weight cache keeps the Winograd transform of the weights it last saw: it runs
 * by Winograd even for one image, and redoes the transform whenever the weights change. */
static void test_winograd_weight_cache(void)
{
    int C = 16, H = 7, W = 7, OC = 32;
    st_conv_shape s = {C, H, W, OC, 3, 3, 1, 1, H, W, 0};
    size_t nin = (size_t)2 * C * H * W, nout = (size_t)2 * OC * H * W, nw = (size_t)OC * C * 9;
    float *x = malloc(nin * 4), *w = calloc(nw, 4), *b = malloc(OC * 4);
    float *y1 = malloc(nout * 4), *y2 = malloc(nout * 4), *y3 = malloc(nout * 4);
    float *ws = malloc(st_conv_ws_floats(&s, 2, 2) * 4);
    float *cache = calloc(st_conv_wcache_floats(&s), 4);
    CHECK(st_conv_wcache_floats(&s) > 0 && !st_conv_winograd(&s, 1));
    st_rng r;
    st_rng_seed(&r, 12);
    fill(x, nin, &r), fill(b, OC, &r);
    /* a zeroed cache is that of zero weights: the output is the bias */
    st_conv2d_forward(y2, x, w, b, &s, 1, ws, 2, NULL, 0, cache);
    size_t not_bias = 0;
    for (size_t i = 0; i < nout / 2; i++)
        not_bias += y2[i] != b[i / ((size_t)H * W)];
    CHECK(not_bias == 0);
    double worst = 0.0;
    size_t by_winograd = 0, stale = 0;
    for (int round = 0; round < 4; round++) {
        if (round == 3)
            w[nw / 2] += 1.0f; /* one weight written in place */
        else if (round != 2) /* round 2: the same weights again, from the cache */
            fill(w, nw, &r);
        for (int N = 1; N <= 2; N++) {
            conv2d_forward_ref(y1, x, w, b, N, C, H, W, OC, 3, 3, 1, 1);
            st_conv2d_forward(y2, x, w, b, &s, N, ws, 2, NULL, 0, cache);
            st_conv2d_forward(y3, x, w, b, &s, N, ws, 2, NULL, 0, NULL); /* im2col */
            double d = maxdiff("cached Winograd output", y1, y2, (size_t)N * OC * H * W, C * 9 + 1);
            worst = d > worst ? d : worst;
            for (size_t i = 0; i < (size_t)N * OC * H * W; i++)
                by_winograd += y2[i] != y3[i]; /* rounded differently from im2col */
            stale += d > 1e-3;
        }
    }
    printf("  weight cache: worst %.3g vs reference, %zu outputs rounded unlike im2col, "
           "%zu stale\n", worst, by_winograd, stale);
    CHECK(worst < 1e-5 && stale == 0 && by_winograd > 0);
    free(x), free(w), free(b), free(y1), free(y2), free(y3), free(ws), free(cache);
}

/* Evaluation keeps the convs' transformed weights between calls; after the parameters are written
 * directly, batches of 1 and 5 must still agree with the reference kernels. */
static void test_eval_after_param_writes(void)
{
    st_error err;
    int N = 5;
    st_model *a = st_model_create(ST_MODEL_CNN, N, 4, &err);
    st_model *b = st_model_create(ST_MODEL_CNN, N, 4, &err);
    CHECK(a && b);
    if (!a || !b)
        return;
    st_model_use_reference(a, 1);
    st_model_set_training(a, 0);
    st_model_set_training(b, 0);
    st_rng r;
    st_rng_seed(&r, 5);
    float *x = malloc((size_t)N * 784 * 4);
    for (int i = 0; i < N * 784; i++)
        x[i] = st_rng_uniform(&r);
    double worst = 0;
    for (int round = 0; round < 3; round++) {
        if (round > 0) { /* every parameter scaled, the same in both models */
            float *pa = st_model_params(a), *pb = st_model_params(b);
            float f = round == 1 ? 1.25f : -0.5f;
            for (size_t i = 0; i < st_model_num_params(a); i++)
                pa[i] *= f, pb[i] *= f;
        }
        for (int n = 1; n <= N; n += N - 1) {
            const float *la, *lb;
            CHECK(st_model_forward(a, x, n, &la, &err) == 0);
            CHECK(st_model_forward(b, x, n, &lb, &err) == 0);
            for (int i = 0; i < n * 10; i++) {
                double d = fabs((double)la[i] - lb[i]) / (1.0 + fabs((double)la[i]));
                worst = d > worst ? d : worst;
            }
        }
    }
    printf("    evaluation after direct parameter writes, batches 1 and %d: logits rel %.3g\n", N,
           worst);
    CHECK(worst < 1e-5);
    free(x);
    st_model_free(a), st_model_free(b);
}

/* st_optim_step_zero_grad is st_optim_step then st_model_zero_grad: the same parameters to the
 * bit, and zero gradients after it (Adam and SGD with momentum, over chunk boundaries). */
static void test_step_zero_grad(void)
{
    st_error err;
    for (int adam = 0; adam < 2; adam++) {
        st_model *a = st_model_create(ST_MODEL_MLP, 4, 6, &err);
        st_model *b = st_model_create(ST_MODEL_MLP, 4, 6, &err);
        CHECK(a && b);
        if (!a || !b)
            return;
        st_optim_config cfg = adam ? st_adam_config(1e-3) : st_sgd_config(0.01, 0.9);
        st_optim *oa = st_optim_create(a, &cfg, &err), *ob = st_optim_create(b, &cfg, &err);
        st_rng r;
        st_rng_seed(&r, 2);
        float x[4 * 784];
        uint8_t y[4] = {1, 7, 3, 9};
        for (int i = 0; i < 4 * 784; i++)
            x[i] = st_rng_uniform(&r);
        size_t n = st_model_num_params(a), nonzero = 0;
        for (int step = 0; step < 3; step++) {
            float la, lb;
            st_model_zero_grad(a);
            CHECK(st_model_forward(a, x, 4, NULL, &err) == 0);
            CHECK(st_model_loss(a, y, &la, &err) == 0);
            CHECK(st_model_forward(b, x, 4, NULL, &err) == 0);
            CHECK(st_model_loss(b, y, &lb, &err) == 0);
            CHECK(st_model_backward(a, &err) == 0 && st_model_backward(b, &err) == 0);
            st_optim_step(oa);
            st_optim_step_zero_grad(ob);
            const float *gb = st_model_grads(b);
            for (size_t i = 0; i < n; i++)
                nonzero += gb[i] != 0.0f;
        }
        CHECK(memcmp(st_model_params(a), st_model_params(b), n * sizeof(float)) == 0);
        CHECK(nonzero == 0);
        printf("    %s: %zu parameters equal to the bit after 3 steps, gradients zeroed\n",
               adam ? "Adam" : "SGD", n);
        st_optim_free(oa), st_optim_free(ob);
        st_model_free(a), st_model_free(b);
    }
}

/* One model with the reference kernels and one with the fast kernels: forward, loss, backward and
 * 3 Adam steps agree. */
static void model_fast_vs_ref(st_model_kind kind)
{
    st_error err;
    int N = 13;
    st_model *a = st_model_create(kind, N, 5, &err), *b = st_model_create(kind, N, 5, &err);
    CHECK(a && b);
    if (!a || !b)
        return;
    st_model_use_reference(a, 1);
    st_model_set_dropout(a, 0);
    st_model_set_dropout(b, 0);
    st_optim_config cfg = st_adam_config(1e-3);
    st_optim *oa = st_optim_create(a, &cfg, &err), *ob = st_optim_create(b, &cfg, &err);
    st_rng r;
    st_rng_seed(&r, 9);
    float *x = malloc((size_t)N * 784 * 4);
    uint8_t y[64];
    double worst_logit = 0, worst_logit_later = 0, worst_grad = 0;
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < N * 784; i++)
            x[i] = st_rng_uniform(&r);
        for (int i = 0; i < N; i++)
            y[i] = (uint8_t)st_rng_below(&r, 10);
        const float *la, *lb;
        float lossa, lossb;
        st_model_zero_grad(a), st_model_zero_grad(b);
        CHECK(st_model_forward(a, x, N, &la, &err) == 0);
        CHECK(st_model_forward(b, x, N, &lb, &err) == 0);
        CHECK(st_model_loss(a, y, &lossa, &err) == 0 && st_model_loss(b, y, &lossb, &err) == 0);
        /* step 0: the same parameters; later steps: parameters that Adam moved apart (below) */
        double *worst = step == 0 ? &worst_logit : &worst_logit_later;
        for (int i = 0; i < N * 10; i++) {
            double d = fabs((double)la[i] - lb[i]) / (1.0 + fabs((double)la[i]));
            *worst = d > *worst ? d : *worst;
        }
        CHECK(st_model_backward(a, &err) == 0 && st_model_backward(b, &err) == 0);
        const float *ga = st_model_grads(a);
        double gmax = 0;
        for (size_t i = 0; i < st_model_num_params(a); i++)
            gmax = fabs(ga[i]) > gmax ? fabs(ga[i]) : gmax;
        /* per tensor, relative to the tensor's largest gradient, on the first step (later steps
         * start from parameters that already differ by rounding) */
        for (int t = 0; t < st_model_num_tensors(a); t++) {
            const st_tensor *ta = st_model_tensor(a, t), *tb = st_model_tensor(b, t);
            if (!ta->grad)
                continue;
            double tmax = 0, tw = 0;
            for (size_t i = 0; i < ta->numel; i++)
                tmax = fabs(ta->grad[i]) > tmax ? fabs(ta->grad[i]) : tmax;
            for (size_t i = 0; i < ta->numel; i++) {
                double d = fabs((double)ta->grad[i] - tb->grad[i]) / (tmax + 1e-30);
                tw = d > tw ? d : tw;
            }
            if (step == 0)
                printf("      %-28s grad max %.3g, max diff / max %.3g\n", ta->name, tmax, tw);
            /* a conv bias followed by batch norm has a zero gradient in exact arithmetic: what
             * is left is rounding noise, compared only in absolute terms below */
            if (step == 0 && tmax > 1e-4 * gmax)
                worst_grad = tw > worst_grad ? tw : worst_grad;
        }
        st_optim_step(oa), st_optim_step(ob);
    }
    /* Adam normalises each gradient by its own magnitude, so a parameter whose true gradient is
     * zero (a conv bias before batch norm) moves by +-lr on rounding noise alone, in either
     * system: such tensors are skipped here. */
    double worst_param = 0;
    size_t moved = 0; /* parameters more than a tenth of a step apart */
    for (int t = 0; t < st_model_num_tensors(a); t++) {
        const st_tensor *ta = st_model_tensor(a, t), *tb = st_model_tensor(b, t);
        if (!ta->grad || (kind == ST_MODEL_CNN && strstr(ta->name, ".0.bias") &&
                          strncmp(ta->name, "block", 5) == 0))
            continue;
        for (size_t i = 0; i < ta->numel; i++) {
            double d = fabs((double)((float *)ta->data)[i] - ((float *)tb->data)[i]);
            worst_param = d > worst_param ? d : worst_param;
            moved += d > 1e-4;
        }
    }
    printf("    %s: logits rel %.3g (after 1-2 Adam steps %.3g), grads (rel. to max grad) %.3g, "
           "params after 3 Adam steps abs %.3g, %zu of %zu apart by more than 1e-4\n",
           st_model_kind_name(kind), worst_logit, worst_logit_later, worst_grad, worst_param,
           moved, st_model_num_params(a));
    CHECK(worst_logit < 1e-5);
    CHECK(worst_grad < 1e-5);
    /* Adam divides each gradient by its own running magnitude, so a parameter whose gradient is
     * near zero moves by up to lr per step on rounding differences alone (different kernels
     * round differently); the models then drift apart at that scale. Allow at most one step of
     * difference on a few parameters (a wrong kernel moves many by much more). */
    CHECK(worst_logit_later < 1e-3);
    CHECK(worst_param < 1e-3);
    CHECK(moved * 1000 < st_model_num_params(a));
    free(x);
    st_optim_free(oa), st_optim_free(ob);
    st_model_free(a), st_model_free(b);
}

static void test_models_fast_vs_ref(void)
{
    model_fast_vs_ref(ST_MODEL_CNN);
    model_fast_vs_ref(ST_MODEL_LINEAR);
    model_fast_vs_ref(ST_MODEL_MLP);
}

/* Evaluation of a batch larger than the evaluation chunk (run 64 images at a time, reusing the
 * layers' buffers) agrees with the reference kernels, and each image's logits match a separate
 * forward of its own chunk; intermediate outputs hold the last chunk. */
static void test_eval_chunked(void)
{
    st_error err;
    int N = 150;
    st_model *a = st_model_create(ST_MODEL_CNN, N, 21, &err);
    st_model *b = st_model_create(ST_MODEL_CNN, N, 21, &err);
    CHECK(a && b);
    if (!a || !b)
        return;
    st_model_use_reference(a, 1);
    /* a few training steps first, so that batch norm's running statistics are not trivial */
    st_rng r;
    st_rng_seed(&r, 3);
    float *x = malloc((size_t)N * 784 * 4), *chunk_logits = malloc((size_t)N * 10 * 4);
    uint8_t y[150];
    for (int i = 0; i < N * 784; i++)
        x[i] = st_rng_uniform(&r);
    for (int i = 0; i < N; i++)
        y[i] = (uint8_t)st_rng_below(&r, 10);
    for (int step = 0; step < 2; step++) {
        float loss;
        st_model_zero_grad(b);
        CHECK(st_model_forward(b, x, 32, NULL, &err) == 0 && st_model_loss(b, y, &loss, &err) == 0);
        CHECK(st_model_backward(b, &err) == 0);
    }
    for (int t = 0; t < st_model_num_tensors(b); t++) { /* same weights and statistics in a */
        const st_tensor *ta = st_model_tensor(a, t), *tb = st_model_tensor(b, t);
        memcpy(ta->data, tb->data, ta->numel * (ta->dtype == ST_I64 ? 8 : 4));
    }
    st_model_set_training(a, 0);
    st_model_set_training(b, 0);
    for (int lo = 0; lo < N; lo += 64) { /* each chunk alone (no chunking inside) */
        int n = N - lo < 64 ? N - lo : 64;
        const float *l;
        CHECK(st_model_forward(b, x + (size_t)lo * 784, n, &l, &err) == 0);
        memcpy(chunk_logits + (size_t)lo * 10, l, (size_t)n * 10 * 4);
    }
    const float *la, *lb;
    CHECK(st_model_forward(a, x, N, &la, &err) == 0);
    CHECK(st_model_forward(b, x, N, &lb, &err) == 0);
    double worst_ref = 0, worst_chunk = 0;
    for (int i = 0; i < N * 10; i++) {
        double d = fabs((double)la[i] - lb[i]) / (1.0 + fabs((double)la[i]));
        worst_ref = d > worst_ref ? d : worst_ref;
        d = fabs((double)chunk_logits[i] - lb[i]);
        worst_chunk = d > worst_chunk ? d : worst_chunk;
    }
    /* the last chunk's block-3 output sits at the start of the buffer */
    const float *o_a = st_model_layer_output(a, 10), *o_b = st_model_layer_output(b, 10);
    size_t per = 64 * 7 * 7;
    double worst_feat = 0;
    for (size_t i = 0; i < (size_t)(N - 128) * per; i++) {
        double d = fabs((double)o_a[128 * per + i] - o_b[i]) / (1.0 + fabs((double)o_a[128 * per + i]));
        worst_feat = d > worst_feat ? d : worst_feat;
    }
    printf("    batch %d in chunks of 64: logits vs reference rel %.3g, vs chunk by chunk %.3g, "
           "last chunk's block3 output vs reference %.3g\n",
           N, worst_ref, worst_chunk, worst_feat);
    CHECK(worst_ref < 1e-5);
    CHECK(worst_chunk == 0.0);
    CHECK(worst_feat < 1e-5);
    /* back to training: batch norm runs again (it was folded into the convs while evaluating) */
    st_model_set_training(a, 1);
    st_model_set_training(b, 1);
    st_model_set_dropout(a, 0);
    st_model_set_dropout(b, 0);
    CHECK(st_model_forward(a, x, 32, &la, &err) == 0 && st_model_forward(b, x, 32, &lb, &err) == 0);
    double worst_train = 0;
    for (int i = 0; i < 32 * 10; i++) {
        double d = fabs((double)la[i] - lb[i]) / (1.0 + fabs((double)la[i]));
        worst_train = d > worst_train ? d : worst_train;
    }
    printf("    training forward after evaluation: logits vs reference rel %.3g\n", worst_train);
    CHECK(worst_train < 1e-5);
    free(x), free(chunk_logits);
    st_model_free(a), st_model_free(b);
}

/* x: few distinct values (many ties in a pool's windows), some NaNs. */
static void fill_ties(float *x, size_t n, st_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = st_rng_uniform(r) < 0.03f ? NAN : (float)(int)(3.0f * st_rng_uniform(r));
}

/* The reference of a training pool fused after a batch norm + ReLU: y, am = the 2x2 pool of
 * relu(bn(x)) (NCHW, channel c's statistics and affine map mean, invstd, g, b). */
static void bn_relu_pool_ref(float *y, int32_t *am, const float *x, int N, int C, int H, int W,
                             const float *mean, const float *invstd, const float *g,
                             const float *b)
{
    size_t nin = (size_t)N * C * H * W;
    float *z = malloc(nin * 4);
    for (size_t i = 0; i < nin; i++) {
        int c = (int)(i / ((size_t)H * W) % C);
        float v = st_bn_out(x[i], mean[c], invstd[c], g[c], b[c]);
        z[i] = v > 0.0f || v != v ? v : 0.0f;
    }
    maxpool2d_forward_ref(y, am, z, N, C, H, W, 2, 2);
    free(z);
}

/* The fast 2x2 max pool (vector, four outputs at a time, overlapping at the end of a row) against
 * the reference, exactly: values, positions of the maxima, ties (first wins) and NaNs. */
static void test_maxpool_fast_vs_ref(void)
{
    st_error err;
    st_model *m = st_model_create(ST_MODEL_CNN, 2, 4, &err);
    CHECK(m != NULL);
    if (!m)
        return;
    const int sizes[][2] = {{28, 28}, {14, 14}, {6, 6}, {8, 8}, {9, 7}, {7, 9}, {5, 12}, {2, 2},
                            {4, 16}, {5, 39}, {3, 34}};
    st_rng r;
    st_rng_seed(&r, 21);
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        int N = 3, C = 5, H = sizes[t][0], W = sizes[t][1], OH = H / 2, OW = W / 2;
        size_t nin = (size_t)N * C * H * W, nout = (size_t)N * C * OH * OW;
        float *x = malloc(nin * 4), *y1 = malloc(nout * 4), *y2 = malloc(nout * 4);
        int32_t *a1 = malloc(nout * 4), *a2 = malloc(nout * 4);
        fill_ties(x, nin, &r);
        maxpool2d_forward_ref(y1, a1, x, N, C, H, W, 2, 2);
        st_layer l = {0};
        l.kind = ST_L_MAXPOOL;
        l.in_c = C, l.in_h = H, l.in_w = W, l.out_h = OH, l.out_w = OW;
        l.pool.k = 2, l.pool.s = 2;
        l.out = y2, l.argmax = a2;
        for (int training = 1; training >= 0; training--) {
            memset(y2, 0, nout * 4);
            memset(a2, 0xff, nout * 4);
            m->training = training;
            st_layer_forward(m, &l, x, N);
            size_t bad = 0;
            for (size_t i = 0; i < nout; i++)
                bad += memcmp(&y1[i], &y2[i], 4) != 0 || (training && a1[i] != a2[i]);
            printf("  maxpool %dx%d %s: %zu of %zu outputs differ\n", H, W,
                   training ? "training" : "evaluation", bad, nout);
            CHECK(bad == 0);
        }
        /* training, fused after a conv's batch norm + ReLU (model.c): the pool reads the conv's
         * output x, applies the batch norm and the ReLU, and saves x at each maximum */
        float mean[5], invstd[5], g[5], b[5], *xm = malloc(nout * 4);
        for (int c = 0; c < C; c++)
            mean[c] = frand(&r), invstd[c] = 1.0f + st_rng_uniform(&r), g[c] = frand(&r),
            b[c] = frand(&r);
        bn_relu_pool_ref(y1, a1, x, N, C, H, W, mean, invstd, g, b);
        st_layer conv = {0}, bn = {0};
        conv.out = x;
        bn.stats_src = &conv, bn.relu_fused = 1;
        bn.save_mean = mean, bn.save_invstd = invstd, bn.w = g, bn.b = b;
        l.bn_before = &bn, l.xmax = xm;
        m->training = 1;
        st_layer_forward(m, &l, NULL, N);
        size_t bad = 0;
        for (size_t i = 0; i < nout; i++) {
            size_t plane = i / ((size_t)OH * OW) * H * W;
            bad += memcmp(&y1[i], &y2[i], 4) != 0 || a1[i] != a2[i] ||
                   memcmp(&xm[i], &x[plane + (size_t)a1[i]], 4) != 0;
        }
        printf("  maxpool %dx%d after batch norm + ReLU: %zu of %zu outputs differ\n", H, W, bad,
               nout);
        CHECK(bad == 0);
        free(xm);
        free(x), free(y1), free(y2), free(a1), free(a2);
    }
    st_model_free(m);
}

/* The training pool after a batch norm + ReLU channels-last (the model's NHWC chain): the
 * reference pool's values, argmax (pixels of the plane) and xmax, to the bit, ties and NaN
 * included, with gammas of both signs and zero. */
static void test_maxpool_nhwc(void)
{
    st_error err;
    st_model *m = st_model_create(ST_MODEL_CNN, 2, 4, &err);
    CHECK(m != NULL);
    if (!m)
        return;
    const int sizes[][2] = {{28, 28}, {14, 14}, {9, 7}, {2, 2}, {5, 12}, {3, 34}};
    st_rng r;
    st_rng_seed(&r, 23);
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        int N = 3, C = 16, H = sizes[t][0], W = sizes[t][1], OH = H / 2, OW = W / 2;
        size_t nin = (size_t)N * C * H * W, nout = (size_t)N * C * OH * OW;
        float *x = malloc(nin * 4), *y1 = malloc(nout * 4);
        int32_t *a1 = malloc(nout * 4), *a2 = malloc(nout * 4);
        float mean[16], invstd[16], g[16], b[16];
        fill_ties(x, nin, &r);
        for (int c = 0; c < C; c++)
            mean[c] = frand(&r), invstd[c] = 1.0f + st_rng_uniform(&r), g[c] = frand(&r),
            b[c] = frand(&r);
        g[3] = 0.0f, g[4] = -0.0f, g[5] = -1.0f;
        bn_relu_pool_ref(y1, a1, x, N, C, H, W, mean, invstd, g, b);
        float *xt = to_nhwc(x, N, C, H * W), *y2 = malloc(nout * 4), *xm = malloc(nout * 4);
        st_layer conv = {0}, bn = {0}, l = {0};
        conv.out = xt;
        bn.stats_src = &conv, bn.relu_fused = 1;
        bn.save_mean = mean, bn.save_invstd = invstd, bn.w = g, bn.b = b;
        l.kind = ST_L_MAXPOOL;
        l.in_c = C, l.in_h = H, l.in_w = W, l.out_h = OH, l.out_w = OW;
        l.pool.k = 2, l.pool.s = 2;
        l.out = y2, l.argmax = a2, l.xmax = xm, l.bn_before = &bn, l.nhwc = 1;
        m->training = 1, m->nhwc = 1;
        st_layer_forward(m, &l, NULL, N);
        m->nhwc = 0;
        size_t bad = 0;
        for (int i = 0; i < N; i++)
            for (int c = 0; c < C; c++)
                for (int p = 0; p < OH * OW; p++) {
                    size_t o = ((size_t)i * C + c) * OH * OW + p, q = ((size_t)i * OH * OW + p) * C + c;
                    float xa = x[((size_t)i * C + c) * H * W + (size_t)a1[o]];
                    bad += !same_bits(&y1[o], &y2[q], 1) || a1[o] != a2[q] ||
                           !same_bits(&xm[q], &xa, 1);
                }
        printf("  maxpool %dx%d channels-last after batch norm + ReLU: %zu of %zu outputs differ\n",
               H, W, bad, nout);
        CHECK(bad == 0);
        free(x), free(y1), free(a1), free(a2), free(xt), free(y2), free(xm);
    }
    st_model_free(m);
}

/* Training with the NHWC chain (the default) and without it (st_model_use_nhwc(0)): the same
 * activations (the four kept channels-last, conv1, pool 1, conv2 and pool 2, said so by
 * st_layer_info), losses, gradients, batch-norm statistics and, after Adam, parameters, to the
 * bit; dropout on, 2 threads; at 13 and 64 images the chain runs, at 3 (under Winograd's
 * minimum) it does not. */
static void test_nhwc_chain_bit_identical(void)
{
    int saved = st_get_threads();
    st_set_threads(2);
    const int sizes[] = {13, 64, 3};
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        int N = sizes[t];
        st_error err;
        st_model *a = st_model_create(ST_MODEL_CNN, N, 31, &err);
        st_model *b = st_model_create(ST_MODEL_CNN, N, 31, &err);
        CHECK(a && b);
        if (!a || !b)
            return;
        st_model_use_nhwc(a, 0);
        st_optim_config cfg = st_adam_config(1e-3);
        st_optim *oa = st_optim_create(a, &cfg, &err), *ob = st_optim_create(b, &cfg, &err);
        st_rng r;
        st_rng_seed(&r, 17);
        float *x = malloc((size_t)N * 784 * 4);
        uint8_t y[64];
        int same = 1, ran = 1;
        for (int step = 0; step < 3; step++) {
            for (int i = 0; i < N * 784; i++)
                x[i] = st_rng_uniform(&r);
            for (int i = 0; i < N; i++)
                y[i] = (uint8_t)st_rng_below(&r, 10);
            float la, lb;
            st_model_zero_grad(a), st_model_zero_grad(b);
            CHECK(st_model_forward(a, x, N, NULL, &err) == 0);
            CHECK(st_model_forward(b, x, N, NULL, &err) == 0);
            ran &= b->nhwc && !a->nhwc;
            /* the outputs kept channels-last (st_layer_info): NCHW's, transposed, to the bit */
            int nlast = 0;
            for (int i = 0; i < st_model_num_layers(b); i++) {
                st_layer_info ia, ib;
                st_model_layer_info(a, i, &ia);
                st_model_layer_info(b, i, &ib);
                CHECK(!ia.channels_last);
                if (!ib.channels_last)
                    continue;
                nlast++;
                int HW = ib.out_h * ib.out_w;
                float *tr = to_nhwc(st_model_layer_output(a, i), N, ib.out_c, HW);
                same &= same_bits(tr, st_model_layer_output(b, i), (size_t)N * ib.out_c * HW);
                free(tr);
            }
            CHECK(nlast == (N >= ST_CONV_WINOGRAD_MIN_BATCH ? 4 : 0));
            CHECK(st_model_loss(a, y, &la, &err) == 0 && st_model_loss(b, y, &lb, &err) == 0);
            CHECK(st_model_backward(a, &err) == 0 && st_model_backward(b, &err) == 0);
            same &= same_bits(&la, &lb, 1) &&
                    same_bits(st_model_grads(a), st_model_grads(b), st_model_num_params(a));
            st_optim_step(oa), st_optim_step(ob);
        }
        for (int i = 0; i < st_model_num_tensors(a); i++) { /* parameters, running statistics */
            const st_tensor *ta = st_model_tensor(a, i), *tb = st_model_tensor(b, i);
            same &= memcmp(ta->data, tb->data, ta->numel * (ta->dtype == ST_I64 ? 8 : 4)) == 0;
        }
        printf("  %d images: NHWC chain %s; activations, losses, gradients, parameters and "
               "statistics over 3 steps %s\n", N, ran ? "ran" : "not run",
               same ? "the same bits" : "DIFFER");
        /* st_layer_info tells the layout the last forward left, in whatever mode the model is
         * now; an evaluation forward leaves NCHW */
        int kept[2] = {0, 0};
        st_model_set_training(b, 0);
        for (int pass = 0; pass < 2; pass++) {
            if (pass)
                CHECK(st_model_forward(b, x, N, NULL, &err) == 0);
            for (int i = 0; i < st_model_num_layers(b); i++) {
                st_layer_info ib;
                st_model_layer_info(b, i, &ib);
                kept[pass] += ib.channels_last;
            }
        }
        CHECK(kept[0] == (N >= ST_CONV_WINOGRAD_MIN_BATCH ? 4 : 0) && kept[1] == 0);
        CHECK(same);
        CHECK(ran == (N >= ST_CONV_WINOGRAD_MIN_BATCH));
        free(x);
        st_optim_free(oa), st_optim_free(ob);
        st_model_free(a), st_model_free(b);
    }
    st_set_threads(saved);
}

/* Batch norm after a conv takes its statistics from sums the conv computed as it wrote its output
 * (one pass, in double). Inputs with a huge mean and a small spread make that formula cancel;
 * the statistics must still be those of two exact passes over the conv's output. */
static void test_bn_stats_large_mean(void)
{
    st_error err;
    int N = 8;
    st_model *b = st_model_create(ST_MODEL_CNN, N, 4, &err);
    CHECK(b != NULL);
    if (!b)
        return;
    st_model_set_dropout(b, 0);
    /* the first conv copies its input (centre tap 1, the rest 0), so its output has the input's
     * mean and spread, away from the zero padding */
    const st_tensor *w1 = st_model_find_tensor(b, "block1.0.weight");
    float *w = w1->data;
    memset(w, 0, w1->numel * sizeof(float));
    for (int oc = 0; oc < 16; oc++)
        w[oc * 25 + 12] = 1.0f;
    st_rng r;
    st_rng_seed(&r, 8);
    float *x = malloc((size_t)N * 784 * 4);
    const float offsets[] = {0.0f, 300.0f, 3e5f};
    const st_layer *conv = &b->layers[0], *bn = &b->layers[1];
    int C = bn->in_c, HW = bn->in_h * bn->in_w;
    for (int t = 0; t < 6; t++) { /* each input with the conv's output NHWC, then NCHW */
        st_model_use_nhwc(b, t < 3);
        for (int i = 0; i < N * 784; i++)
            x[i] = offsets[t % 3] + st_rng_uniform(&r);
        const float *lb;
        CHECK(st_model_forward(b, x, N, &lb, &err) == 0);
        int nhwc = b->nhwc && (conv->nhwc & ST_CONV_NHWC_OUT);
        CHECK(nhwc == (t < 3));
        /* the conv's output as the batch norm read it: x[image][channel][pixel] */
        float *cx = nhwc ? malloc((size_t)N * C * HW * 4) : conv->out;
        for (int i = 0; nhwc && i < N; i++)
            for (int c = 0; c < C; c++)
                for (int k = 0; k < HW; k++)
                    cx[((size_t)i * C + c) * HW + k] = conv->out[((size_t)i * HW + k) * C + c];
        double worst_mean = 0, worst_invstd = 0, ratio = 0;
        for (int c = 0; c < C; c++) {
            double s = 0, ss = 0, s2 = 0;
            for (int i = 0; i < N; i++)
                for (int k = 0; k < HW; k++)
                    s += cx[((size_t)i * C + c) * HW + k];
            double mean = s / ((double)N * HW);
            for (int i = 0; i < N; i++)
                for (int k = 0; k < HW; k++) {
                    double v = cx[((size_t)i * C + c) * HW + k];
                    ss += (v - mean) * (v - mean);
                    s2 += v * v;
                }
            double invstd = 1.0 / sqrt(ss / ((double)N * HW) + 1e-5);
            double dm = fabs(bn->save_mean[c] - mean) / (fabs(mean) + 1e-3);
            double di = fabs(bn->save_invstd[c] - invstd) / invstd;
            worst_mean = dm > worst_mean ? dm : worst_mean;
            worst_invstd = di > worst_invstd ? di : worst_invstd;
            ratio = s2 / ss > ratio ? s2 / ss : ratio;
        }
        printf("    inputs %g + U(0,1), %s: sum x^2 / sum (x-mean)^2 up to %.3g; batch-norm mean "
               "rel %.3g, 1/std rel %.3g (vs two passes)\n",
               (double)offsets[t % 3], nhwc ? "NHWC" : "NCHW", ratio, worst_mean, worst_invstd);
        if (nhwc)
            free(cx);
        CHECK(worst_mean < 1e-6);
        CHECK(worst_invstd < 1e-6);
    }
    free(x);
    st_model_free(b);
}

/* The fast dropout draws exactly the masks of the reference (blocks drawn in parallel; 13 images
 * make the first dropout 9.95 blocks, the last one partial), and applies them. */
static void test_dropout_masks_match(void)
{
    st_error err;
    int N = 13;
    st_model *a = st_model_create(ST_MODEL_CNN, N, 11, &err), *b = st_model_create(ST_MODEL_CNN, N, 11, &err);
    st_model_use_reference(a, 1);
    float *x = malloc((size_t)N * 784 * 4);
    st_rng r;
    st_rng_seed(&r, 4);
    for (int i = 0; i < N * 784; i++)
        x[i] = st_rng_uniform(&r);
    CHECK(st_model_forward(a, x, N, NULL, &err) == 0 && st_model_forward(b, x, N, NULL, &err) == 0);
    int compared = 0;
    for (int i = 0; i < a->nlayers; i++)
        if (a->layers[i].kind == ST_L_DROPOUT) {
            size_t n = (size_t)N * a->layers[i].out_size, dropped = 0;
            CHECKF(memcmp(a->layers[i].mask, b->layers[i].mask, n * 4) == 0, "%s masks differ",
                   a->layers[i].name);
            size_t wrong = 0; /* the fast outputs: the fast inputs times the masks */
            for (size_t k = 0; k < n; k++) {
                float v = b->layers[i - 1].out[k] * b->layers[i].mask[k];
                wrong += memcmp(&v, &b->layers[i].out[k], 4) != 0;
            }
            CHECKF(wrong == 0, "%s: %zu outputs are not input * mask", a->layers[i].name, wrong);
            for (size_t k = 0; k < n; k++)
                dropped += a->layers[i].mask[k] == 0.0f;
            printf("    %s: %zu of %zu dropped, same masks\n", a->layers[i].name, dropped, n);
            compared++;
        }
    CHECK(compared == 2);
    free(x);
    st_model_free(a), st_model_free(b);
}

/* Trains the CNN (dropout on) for a few steps with a given thread count; returns its params. */
static float *train_with_threads(int threads, size_t *n)
{
    st_set_threads(threads);
    st_error err;
    int N = 24;
    st_model *m = st_model_create(ST_MODEL_CNN, N, 77, &err);
    st_optim_config cfg = st_adam_config(1e-3);
    st_optim *o = st_optim_create(m, &cfg, &err);
    st_rng r;
    st_rng_seed(&r, 3);
    float *x = malloc((size_t)N * 784 * 4);
    uint8_t y[32];
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < N * 784; i++)
            x[i] = st_rng_uniform(&r);
        for (int i = 0; i < N; i++)
            y[i] = (uint8_t)st_rng_below(&r, 10);
        float loss;
        st_model_zero_grad(m);
        st_model_forward(m, x, N, NULL, &err);
        st_model_loss(m, y, &loss, &err);
        st_model_backward(m, &err);
        st_optim_step(o);
    }
    *n = st_model_num_params(m);
    float *p = malloc(*n * 4);
    memcpy(p, st_model_params(m), *n * 4);
    free(x);
    st_optim_free(o);
    st_model_free(m);
    return p;
}

static void test_threads_bit_identical(void)
{
    int saved = st_get_threads();
    size_t n1, n2, n3;
    float *p1 = train_with_threads(1, &n1), *p2 = train_with_threads(2, &n2),
          *p3 = train_with_threads(3, &n3);
    CHECK(n1 == n2 && n2 == n3);
    CHECKF(memcmp(p1, p2, n1 * 4) == 0, "1 vs 2 threads differ");
    CHECKF(memcmp(p1, p3, n1 * 4) == 0, "1 vs 3 threads differ");
    free(p1), free(p2), free(p3);
    st_set_threads(saved);
}

int main(void)
{
    printf("kernels: %s\n", st_kernel_name());
    RUN(test_conv_fast_vs_ref);
    RUN(test_conv_lower_levels);
    RUN(test_pooled_special_values);
    RUN(test_winograd_nan_inputs);
    RUN(test_winograd_tile_sizes);
    RUN(test_winograd_backward_fd);
    RUN(test_winograd_weight_cache);
    RUN(test_maxpool_fast_vs_ref);
    RUN(test_maxpool_nhwc);
    RUN(test_nhwc_chain_bit_identical);
    RUN(test_eval_chunked);
    RUN(test_eval_after_param_writes);
    RUN(test_bn_stats_large_mean);
    RUN(test_models_fast_vs_ref);
    RUN(test_dropout_masks_match);
    RUN(test_step_zero_grad);
    RUN(test_threads_bit_identical);
    return CHECK_DONE();
}
