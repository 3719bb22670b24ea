/* test_gradcheck.c - finite-difference checks of every backward kernel in src/layers.h, of the
 * cross-entropy gradient, and of whole models through the public API.
 *
 * For a layer, L = sum(out * r) with a fixed random r (so every output matters), accumulated in
 * double from the float outputs; the analytic gradient is the backward kernel run with dout = r.
 * Each input / parameter element x is moved to x + h and x - h (h = 1e-2, in float32), and
 * fd = (L(x + h) - L(x - h)) / ((x + h) - (x - h)), dividing by the difference of the float
 * values actually used. Convolution, linear, ReLU, max-pool and dropout are linear in each
 * element away from kinks, so fd is exact but for float rounding of the outputs: with outputs of
 * O(1), ~1e-7 relative, the noise in fd is ~1e-7 * sqrt(#outputs) / 2h ~ 1e-4 of the gradients.
 * Batch norm and cross-entropy are smooth: the central difference errs by h^2/6 |f'''| ~ 1e-5.
 * Tolerance: |fd - an| <= 5e-3 |an| + 2e-3 max|an| (max over the tensor).
 *
 * Kinks are avoided by construction: ReLU inputs have |x| >= 0.05 > 2h; max-pool inputs are a
 * permutation of distinct multiples of 0.05, so no window maximum changes; dropout reuses one mask
 * (the generator is reseeded before every forward).
 */
#include "layers.h"
#include "stride.h"

#include "check.h"
#include "refio.h"

#include <string.h>

#define H_STEP 1e-2f
#define RTOL 5e-3
#define ATOL_FRAC 2e-3

static st_rng g_rng;

static float urand(float lo, float hi) { return lo + (hi - lo) * st_rng_uniform(&g_rng); }

static float *frand(size_t n, float lo, float hi)
{
    float *x = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = urand(lo, hi);
    return x;
}

static float *fzero(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

/* Central differences of f over every element of x[0..n), compared with the analytic grad. */
static int gradcheck(const char *label, loss_fn f, void *ctx, float *x, size_t n, const float *grad)
{
    float *fd = fzero(n);
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i], xp = x0 + H_STEP, xm = x0 - H_STEP;
        x[i] = xp;
        double lp = f(ctx);
        x[i] = xm;
        double lm = f(ctx);
        x[i] = x0;
        fd[i] = (float)((lp - lm) / ((double)xp - (double)xm));
    }
    int ok = ref_compare(label, fd, grad, n, ATOL_FRAC * ref_max_abs(grad, n), RTOL);
    free(fd);
    return ok;
}

/* ------------------------------------------------------------------------------ conv2d */

typedef struct conv_ctx {
    float *inp, *w, *b, *out, *r;
    int N, C, H, W, OC, KH, KW, S, P;
    size_t nout;
} conv_ctx;

static double conv_loss(void *p)
{
    conv_ctx *c = p;
    conv2d_forward_ref(c->out, c->inp, c->w, c->b, c->N, c->C, c->H, c->W, c->OC, c->KH, c->KW,
                       c->S, c->P);
    return dot(c->out, c->r, c->nout);
}

static void test_conv2d_grad(void)
{
    /* N, C, H, W, OC, KH, KW, stride, pad, bias */
    static const int cases[][10] = {
        {2, 3, 5, 6, 4, 3, 3, 1, 1, 1}, {1, 2, 7, 6, 3, 3, 3, 2, 0, 1},
        {2, 2, 6, 5, 2, 5, 5, 1, 2, 0}, {1, 3, 5, 5, 2, 1, 1, 2, 1, 1},
        {2, 2, 5, 7, 3, 2, 3, 2, 1, 1}, {3, 1, 4, 4, 2, 3, 3, 1, 2, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *g = cases[k];
        conv_ctx c = {0};
        c.N = g[0], c.C = g[1], c.H = g[2], c.W = g[3], c.OC = g[4], c.KH = g[5], c.KW = g[6];
        c.S = g[7], c.P = g[8];
        int OH = st_conv_out_size(c.H, c.KH, c.S, c.P), OW = st_conv_out_size(c.W, c.KW, c.S, c.P);
        size_t ni = (size_t)c.N * c.C * c.H * c.W, nw = (size_t)c.OC * c.C * c.KH * c.KW;
        c.nout = (size_t)c.N * c.OC * OH * OW;
        c.inp = frand(ni, -1, 1), c.w = frand(nw, -0.5f, 0.5f);
        c.b = g[9] ? frand(c.OC, -0.5f, 0.5f) : NULL;
        c.out = fzero(c.nout), c.r = frand(c.nout, -1, 1);
        float *dinp = fzero(ni), *dw = fzero(nw), *db = fzero(c.OC);
        conv2d_backward_ref(dinp, dw, c.b ? db : NULL, c.r, c.inp, c.w, c.N, c.C, c.H, c.W, c.OC,
                            c.KH, c.KW, c.S, c.P);
        char label[96];
        printf("  conv N=%d C=%d %dx%d OC=%d k=%dx%d stride=%d pad=%d bias=%d\n", c.N, c.C, c.H,
               c.W, c.OC, c.KH, c.KW, c.S, c.P, g[9]);
        snprintf(label, sizeof label, "conv[%zu] dinp", k);
        CHECK(gradcheck(label, conv_loss, &c, c.inp, ni, dinp));
        snprintf(label, sizeof label, "conv[%zu] dw", k);
        CHECK(gradcheck(label, conv_loss, &c, c.w, nw, dw));
        if (c.b) {
            snprintf(label, sizeof label, "conv[%zu] db", k);
            CHECK(gradcheck(label, conv_loss, &c, c.b, c.OC, db));
        }
        free(c.inp), free(c.w), free(c.b), free(c.out), free(c.r), free(dinp), free(dw), free(db);
    }
}

/* ------------------------------------------------------------------------------ batchnorm */

typedef struct bn_ctx {
    float *inp, *gamma, *beta, *out, *r, *sm, *si, *rm, *rv;
    int N, C, HW;
} bn_ctx;

static double bn_loss(void *p)
{
    bn_ctx *c = p;
    /* the running statistics are updated by every call: scratch copies */
    for (int i = 0; i < c->C; i++) c->rm[i] = 0, c->rv[i] = 1;
    batchnorm2d_forward_train_ref(c->out, c->sm, c->si, c->rm, c->rv, c->inp, c->gamma, c->beta,
                                  c->N, c->C, c->HW, 0.1f, 1e-5f);
    return dot(c->out, c->r, (size_t)c->N * c->C * c->HW);
}

static void test_batchnorm_grad(void)
{
    static const int cases[][3] = {{2, 3, 12}, {1, 2, 9}, {4, 2, 4}, {3, 1, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        bn_ctx c = {0};
        c.N = cases[k][0], c.C = cases[k][1], c.HW = cases[k][2];
        size_t n = (size_t)c.N * c.C * c.HW;
        c.inp = frand(n, -2, 2), c.gamma = frand(c.C, 0.5f, 1.5f), c.beta = frand(c.C, -1, 1);
        c.out = fzero(n), c.r = frand(n, -1, 1);
        c.sm = fzero(c.C), c.si = fzero(c.C), c.rm = fzero(c.C), c.rv = fzero(c.C);
        bn_loss(&c); /* saved statistics of the unperturbed input */
        float *dinp = fzero(n), *dg = fzero(c.C), *dbt = fzero(c.C);
        batchnorm2d_backward_ref(dinp, dg, dbt, c.r, c.inp, c.sm, c.si, c.gamma, c.N, c.C, c.HW);
        char label[96];
        printf("  batchnorm (train) N=%d C=%d HW=%d\n", c.N, c.C, c.HW);
        snprintf(label, sizeof label, "bn[%zu] dinp", k);
        CHECK(gradcheck(label, bn_loss, &c, c.inp, n, dinp));
        snprintf(label, sizeof label, "bn[%zu] dgamma", k);
        CHECK(gradcheck(label, bn_loss, &c, c.gamma, c.C, dg));
        snprintf(label, sizeof label, "bn[%zu] dbeta", k);
        CHECK(gradcheck(label, bn_loss, &c, c.beta, c.C, dbt));
        free(c.inp), free(c.gamma), free(c.beta), free(c.out), free(c.r), free(c.sm), free(c.si);
        free(c.rm), free(c.rv), free(dinp), free(dg), free(dbt);
    }
}

/* ------------------------------------------------------------------------------ relu */

typedef struct vec_ctx {
    float *inp, *out, *mask, *r;
    size_t n;
} vec_ctx;

static double relu_loss(void *p)
{
    vec_ctx *c = p;
    relu_forward_ref(c->out, c->inp, c->n);
    return dot(c->out, c->r, c->n);
}

static void test_relu_grad(void)
{
    vec_ctx c = {0};
    c.n = 200;
    c.inp = frand(c.n, 0.05f, 1);
    for (size_t i = 0; i < c.n; i += 2) c.inp[i] = -c.inp[i]; /* |x| >= 0.05: no kink within h */
    c.out = fzero(c.n), c.r = frand(c.n, -1, 1);
    float *dinp = fzero(c.n);
    relu_forward_ref(c.out, c.inp, c.n);
    relu_backward_ref(dinp, c.r, c.out, c.n);
    CHECK(gradcheck("relu dinp", relu_loss, &c, c.inp, c.n, dinp));
    free(c.inp), free(c.out), free(c.r), free(dinp);
}

/* ------------------------------------------------------------------------------ maxpool */

typedef struct pool_ctx {
    float *inp, *out, *r;
    int32_t *idx;
    int N, C, H, W, K, S;
    size_t nout;
} pool_ctx;

static double pool_loss(void *p)
{
    pool_ctx *c = p;
    maxpool2d_forward_ref(c->out, c->idx, c->inp, c->N, c->C, c->H, c->W, c->K, c->S);
    return dot(c->out, c->r, c->nout);
}

static void test_maxpool_grad(void)
{
    static const int cases[][6] = {{2, 2, 6, 6, 2, 2}, {1, 2, 7, 9, 2, 2}, {2, 1, 7, 7, 3, 2},
                                   {1, 2, 8, 6, 3, 2}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        pool_ctx c = {0};
        c.N = cases[k][0], c.C = cases[k][1], c.H = cases[k][2], c.W = cases[k][3];
        c.K = cases[k][4], c.S = cases[k][5];
        int OH = (c.H - c.K) / c.S + 1, OW = (c.W - c.K) / c.S + 1;
        size_t ni = (size_t)c.N * c.C * c.H * c.W;
        c.nout = (size_t)c.N * c.C * OH * OW;
        /* distinct values 0.05 apart (> 2h), in random order */
        c.inp = fzero(ni);
        for (size_t i = 0; i < ni; i++) c.inp[i] = (float)i;
        for (size_t i = ni - 1; i > 0; i--) {
            size_t j = st_rng_below(&g_rng, (uint32_t)(i + 1));
            float t = c.inp[i];
            c.inp[i] = c.inp[j], c.inp[j] = t;
        }
        for (size_t i = 0; i < ni; i++) c.inp[i] = (c.inp[i] - ni / 2.0f) * 0.05f;
        c.out = fzero(c.nout), c.r = frand(c.nout, -1, 1), c.idx = calloc(c.nout, sizeof(int32_t));
        float *dinp = fzero(ni);
        pool_loss(&c);
        maxpool2d_backward_ref(dinp, c.r, c.idx, c.N, c.C, c.H, c.W, OH, OW);
        char label[96];
        snprintf(label, sizeof label, "maxpool[%zu] %dx%d K=%d S=%d dinp", k, c.H, c.W, c.K, c.S);
        CHECK(gradcheck(label, pool_loss, &c, c.inp, ni, dinp));
        free(c.inp), free(c.out), free(c.r), free(c.idx), free(dinp);
    }
}

/* ------------------------------------------------------------------------------ dropout */

static double dropout_loss(void *p)
{
    vec_ctx *c = p;
    st_rng rng;
    st_rng_seed(&rng, 77); /* the same mask every time */
    dropout_forward_ref(c->out, c->mask, c->inp, c->n, 0.4f, &rng);
    return dot(c->out, c->r, c->n);
}

static void test_dropout_grad(void)
{
    vec_ctx c = {0};
    c.n = 100;
    c.inp = frand(c.n, -1, 1), c.out = fzero(c.n), c.mask = fzero(c.n), c.r = frand(c.n, -1, 1);
    float *dinp = fzero(c.n);
    dropout_loss(&c);
    size_t dropped = 0;
    for (size_t i = 0; i < c.n; i++) dropped += c.mask[i] == 0;
    CHECK(dropped > 10 && dropped < 90); /* the mask is not trivial */
    dropout_backward_ref(dinp, c.r, c.mask, c.n);
    CHECK(gradcheck("dropout(p=0.4, fixed mask) dinp", dropout_loss, &c, c.inp, c.n, dinp));
    free(c.inp), free(c.out), free(c.mask), free(c.r), free(dinp);
}

/* ------------------------------------------------------------------------------ linear */

typedef struct lin_ctx {
    float *inp, *w, *b, *out, *r;
    int N, IN, OUT;
} lin_ctx;

static double linear_loss(void *p)
{
    lin_ctx *c = p;
    linear_forward_ref(c->out, c->inp, c->w, c->b, c->N, c->IN, c->OUT);
    return dot(c->out, c->r, (size_t)c->N * c->OUT);
}

static void test_linear_grad(void)
{
    static const int cases[][4] = {{3, 7, 5, 1}, {1, 12, 4, 0}, {4, 20, 10, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        lin_ctx c = {0};
        c.N = cases[k][0], c.IN = cases[k][1], c.OUT = cases[k][2];
        size_t ni = (size_t)c.N * c.IN, nw = (size_t)c.OUT * c.IN, no = (size_t)c.N * c.OUT;
        c.inp = frand(ni, -1, 1), c.w = frand(nw, -0.5f, 0.5f);
        c.b = cases[k][3] ? frand(c.OUT, -0.5f, 0.5f) : NULL;
        c.out = fzero(no), c.r = frand(no, -1, 1);
        float *dinp = fzero(ni), *dw = fzero(nw), *db = fzero(c.OUT);
        linear_backward_ref(dinp, dw, c.b ? db : NULL, c.r, c.inp, c.w, c.N, c.IN, c.OUT);
        char label[96];
        printf("  linear N=%d %d -> %d bias=%d\n", c.N, c.IN, c.OUT, cases[k][3]);
        snprintf(label, sizeof label, "linear[%zu] dinp", k);
        CHECK(gradcheck(label, linear_loss, &c, c.inp, ni, dinp));
        snprintf(label, sizeof label, "linear[%zu] dw", k);
        CHECK(gradcheck(label, linear_loss, &c, c.w, nw, dw));
        if (c.b) {
            snprintf(label, sizeof label, "linear[%zu] db", k);
            CHECK(gradcheck(label, linear_loss, &c, c.b, c.OUT, db));
        }
        free(c.inp), free(c.w), free(c.b), free(c.out), free(c.r), free(dinp), free(dw), free(db);
    }
}

/* ------------------------------------------------------------------------------ cross-entropy */

typedef struct ce_ctx {
    float *logits;
    uint8_t *labels;
    int N, C;
} ce_ctx;

static double ce_loss(void *p)
{
    ce_ctx *c = p;
    return cross_entropy_ref(NULL, c->logits, c->labels, c->N, c->C);
}

static void test_cross_entropy_grad(void)
{
    static const int cases[][3] = {{1, 10, 1}, {4, 10, 3}, {8, 10, 8}, {3, 2, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ce_ctx c = {0};
        c.N = cases[k][0], c.C = cases[k][1];
        size_t n = (size_t)c.N * c.C;
        c.logits = frand(n, -(float)cases[k][2], (float)cases[k][2]);
        c.labels = malloc(c.N);
        for (int i = 0; i < c.N; i++) c.labels[i] = (uint8_t)st_rng_below(&g_rng, c.C);
        float *dl = fzero(n);
        cross_entropy_ref(dl, c.logits, c.labels, c.N, c.C);
        /* the gradient of a mean over the batch: each row of dlogits sums to 0 */
        double rowsum = 0;
        for (int i = 0; i < c.N; i++) {
            double s = 0;
            for (int j = 0; j < c.C; j++) s += dl[i * c.C + j];
            rowsum = fmax(rowsum, fabs(s));
        }
        CHECKF(rowsum < 1e-6, "row sum %g", rowsum);
        char label[96];
        snprintf(label, sizeof label, "cross_entropy[%zu] N=%d C=%d |z|<=%d dlogits", k, c.N, c.C,
                 cases[k][2]);
        CHECK(gradcheck(label, ce_loss, &c, c.logits, n, dl));
        free(c.logits), free(c.labels), free(dl);
    }
}

/* ------------------------------------------------------------------------------ models */

/* The whole chain through the public API, for the two fully-connected models (the ConvNet's
 * chain is compared with PyTorch's autograd in test_models, and a forward of it per perturbed
 * weight would be slow): the float loss against st_model_backward's gradients, on the 6
 * parameters of each tensor with the largest gradients (random images, training mode).
 * h = 1e-3: the loss is a float (~2.3, rounding 1.4e-7), so fd carries ~1e-4 of noise, up to a
 * few % of the gradients picked; a weight move of 1e-3 seldom crosses a ReLU kink. Tolerance
 * 5e-2 relative + 2e-3 of the largest: far below the error of a wrong term of the chain rule. */
#define H_MODEL 1e-3f
typedef struct model_ctx {
    st_model *m;
    const float *x;
    const uint8_t *y;
    int n;
} model_ctx;

static double model_loss(void *p)
{
    model_ctx *c = p;
    float loss = 0;
    st_error err;
    if (st_model_forward(c->m, c->x, c->n, NULL, &err) || st_model_loss(c->m, c->y, &loss, &err))
        return NAN;
    return loss;
}

static void test_model_grad(void)
{
    st_set_threads(1); /* small batches: idle OpenMP threads would only spin */
    for (int kind = ST_MODEL_LINEAR; kind <= ST_MODEL_MLP; kind++) {
        st_error err = {{0}};
        const int n = 4;
        st_model *m = st_model_create((st_model_kind)kind, n, 7 + kind, &err);
        CHECKF(m != NULL, "%s", err.msg);
        if (!m) continue;
        st_model_set_dropout(m, 0);
        float *x = frand((size_t)n * 784, 0, 1);
        uint8_t y[4] = {1, 7, 3, 9};
        model_ctx c = {m, x, y, n};
        st_model_zero_grad(m);
        model_loss(&c);
        CHECK(st_model_backward(m, &err) == 0);
        /* per tensor: the 6 largest gradients */
        for (int t = 0; t < st_model_num_tensors(m); t++) {
            const st_tensor *ts = st_model_tensor(m, t);
            if (!ts->grad) continue;
            enum { PICK = 6 };
            size_t pick[PICK];
            int np = 0;
            for (size_t i = 0; i < ts->numel; i++) {
                int pos = np < PICK ? np++ : PICK;
                while (pos > 0 && fabsf(ts->grad[i]) > fabsf(ts->grad[pick[pos - 1]])) {
                    if (pos < PICK) pick[pos] = pick[pos - 1];
                    pos--;
                }
                if (pos < PICK) pick[pos] = i;
            }
            float an[PICK], fd[PICK];
            float *w = ts->data;
            for (int k = 0; k < np; k++) {
                size_t i = pick[k];
                an[k] = ts->grad[i];
                float w0 = w[i], wp = w0 + H_MODEL, wm = w0 - H_MODEL;
                w[i] = wp;
                double lp = model_loss(&c);
                w[i] = wm;
                double lm = model_loss(&c);
                w[i] = w0;
                fd[k] = (float)((lp - lm) / ((double)wp - (double)wm));
            }
            char label[96];
            snprintf(label, sizeof label, "%s %s (top %d)", st_model_kind_name((st_model_kind)kind),
                     ts->name, np);
            CHECK(ref_compare(label, fd, an, (size_t)np, ATOL_FRAC * ref_max_abs(an, np), 5e-2));
        }
        free(x);
        st_model_free(m);
    }
    st_set_threads(0);
}

int main(void)
{
    st_rng_seed(&g_rng, 2024);
    RUN(test_conv2d_grad);
    RUN(test_batchnorm_grad);
    RUN(test_relu_grad);
    RUN(test_maxpool_grad);
    RUN(test_dropout_grad);
    RUN(test_linear_grad);
    RUN(test_cross_entropy_grad);
    RUN(test_model_grad);
    return CHECK_DONE();
}
