/* test_layers.c - every reference kernel of src/layers.h against PyTorch (the files tests/ref/NAME.ref written
 * by tests/gen_ref.py), and dropout by its properties (PyTorch's generator cannot be matched).
 *
 * Tolerances. An element passes when |got - exp| <= atol + rtol * |exp|, rtol = 1e-5.
 *  - Conv2d and Linear outputs and gradients are sums of K products. Summed in another order, in
 *    float32, each side is within gamma_K * sum|terms| of the exact value (Higham, gamma_K = K u /
 *    (1 - K u), u = 2^-24), so the two differ by at most 2 K u sum|terms|. sum|terms| is computed
 *    per element by running the same kernel on |inputs| (for dinp/dw/db: the backward kernel on
 *    |dout|, |inp|, |w|), and atol_i = 2 K u sum|terms|_i: a rigorous bound, yet ~1e-4 of the
 *    values at most, far below what any indexing or formula bug produces.
 *  - BatchNorm: statistics are summed in double on both sides (PyTorch's CPU accumulation type for
 *    float); each output is a short expression of rounded floats, but x - mean cancels, so the
 *    error is a few u times the largest magnitude in the expression, e.g. |gamma| invstd
 *    (|x| + |mean|) + |beta| for the output. atol = 16 u times that magnitude (per case).
 *  - ReLU, max-pool forward and argmax, and non-overlapping max-pool backward only move values:
 *    they must be bit-exact. Overlapping pooling windows add up to ceil(K/S)^2 gradients per input
 *    element, in some order: atol = 2 ceil(K/S)^2 u max|dout|.
 *  - Cross-entropy: log-sum-exp of logits of magnitude L loses ~u L: atol = 16 u (1 + L) for the
 *    loss and 16 u (1 + L) / N for dlogits.
 *  - Adam / SGD: a few float operations per element and step, in PyTorch's order: atol = 16 u
 *    max|param| + 1e-6 lr (the last term for elements where v ~ grad^2 ~ 0).
 */
#include "layers.h"

#include "check.h"
#include "refio.h"

#include <string.h>

#define U 5.9604644775390625e-8 /* 2^-24, the unit roundoff of float32 */
#define RTOL 1e-5

static float *fz(size_t n) { return calloc(n ? n : 1, sizeof(float)); }
static double *dz(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

static float *fabs_of(const float *x, size_t n)
{
    if (!x) return NULL;
    float *y = fz(n);
    for (size_t i = 0; i < n; i++) y[i] = fabsf(x[i]);
    return y;
}

/* atol_i = 2 K u S_i */
static double *tol_from_sums(const float *S, size_t n, double K)
{
    double *t = dz(n);
    for (size_t i = 0; i < n; i++) t[i] = 2.0 * K * U * S[i];
    return t;
}

static int cmp(const char *fmt_case, int i, const char *what, const float *got, const float *exp,
               size_t n, double atol, const double *atol_v)
{
    char label[96];
    snprintf(label, sizeof label, "%s[%d] %s", fmt_case, i, what);
    return ref_compare_v(label, got, exp, n, atol, atol_v, RTOL);
}

/* Parameter gradients accumulate: after two backward passes they hold twice the gradient (each
 * pass within tol, and one more rounding). */
static int cmp_twice(const char *fmt_case, int i, const char *what, const float *got,
                     const float *exp, size_t n, const double *tol)
{
    float *e2 = fz(n);
    double *t2 = dz(n);
    for (size_t k = 0; k < n; k++) e2[k] = 2 * exp[k], t2[k] = 2 * tol[k] + 2 * U * fabs(exp[k]);
    int ok = cmp(fmt_case, i, what, got, e2, n, 0, t2);
    free(e2), free(t2);
    return ok;
}

/* ------------------------------------------------------------------------------ conv2d */

static void test_conv2d(void)
{
    ref_file rf;
    if (ref_open(&rf, "conv.ref")) {
        CHECK(0);
        return;
    }
    int nc = (int)ref_i64(&rf, "ncases")[0];
    CHECK(nc >= 10);
    for (int c = 0; c < nc; c++) {
        const int64_t *g = ref_i64(&rf, "%d/cfg", c);
        int N = (int)g[0], C = (int)g[1], H = (int)g[2], W = (int)g[3], OC = (int)g[4];
        int KH = (int)g[5], KW = (int)g[6], S = (int)g[7], P = (int)g[8], hb = (int)g[9];
        int OH = st_conv_out_size(H, KH, S, P), OW = st_conv_out_size(W, KW, S, P);
        printf("  conv[%d] N=%d C=%d %dx%d -> OC=%d k=%dx%d stride=%d pad=%d bias=%d\n", c, N, C,
               H, W, OC, KH, KW, S, P, hb);
        size_t ni = (size_t)N * C * H * W, nw = (size_t)OC * C * KH * KW,
               no = (size_t)N * OC * OH * OW;
        CHECK(ref_tensor_of(&rf, "%d/out", c)->numel == no);
        const float *inp = ref_f32(&rf, "%d/inp", c), *w = ref_f32(&rf, "%d/w", c);
        const float *b = hb ? ref_f32(&rf, "%d/b", c) : NULL;
        const float *dout = ref_f32(&rf, "%d/dout", c);
        float *out = fz(no), *dinp = fz(ni), *dw = fz(nw), *db = fz(OC);
        conv2d_forward_ref(out, inp, w, b, N, C, H, W, OC, KH, KW, S, P);
        for (size_t i = 0; i < ni; i++) dinp[i] = NAN; /* overwritten, not accumulated */
        conv2d_backward_ref(dinp, dw, db, dout, inp, w, N, C, H, W, OC, KH, KW, S, P);

        /* sum|terms| per element: the same kernels on absolute values */
        float *ai = fabs_of(inp, ni), *aw = fabs_of(w, nw), *ab = fabs_of(b, OC),
              *ad = fabs_of(dout, no);
        float *So = fz(no), *Si = fz(ni), *Sw = fz(nw), *Sb = fz(OC);
        conv2d_forward_ref(So, ai, aw, ab, N, C, H, W, OC, KH, KW, S, P);
        conv2d_backward_ref(Si, Sw, Sb, ad, ai, aw, N, C, H, W, OC, KH, KW, S, P);
        double *to = tol_from_sums(So, no, C * KH * KW + 1.0),
               *ti = tol_from_sums(Si, ni, (double)OC * KH * KW),
               *tw = tol_from_sums(Sw, nw, (double)N * OH * OW),
               *tb = tol_from_sums(Sb, OC, (double)N * OH * OW);

        CHECK(cmp("conv", c, "out", out, ref_f32(&rf, "%d/out", c), no, 0, to));
        CHECK(cmp("conv", c, "dinp", dinp, ref_f32(&rf, "%d/dinp", c), ni, 0, ti));
        CHECK(cmp("conv", c, "dw", dw, ref_f32(&rf, "%d/dw", c), nw, 0, tw));
        if (hb) CHECK(cmp("conv", c, "db", db, ref_f32(&rf, "%d/db", c), OC, 0, tb));

        /* dinp may be NULL (first layer), db too; dw accumulates: a second pass doubles it */
        conv2d_backward_ref(NULL, dw, NULL, dout, inp, w, N, C, H, W, OC, KH, KW, S, P);
        CHECK(cmp_twice("conv", c, "dw after 2 passes", dw, ref_f32(&rf, "%d/dw", c), nw, tw));

        free(out), free(dinp), free(dw), free(db);
        free(ai), free(aw), free(ab), free(ad), free(So), free(Si), free(Sw), free(Sb);
        free(to), free(ti), free(tw), free(tb);
    }
    ref_close(&rf);
}

/* ------------------------------------------------------------------------------ batchnorm */

static void test_batchnorm(void)
{
    const float momentum = 0.1f, eps = 1e-5f;
    ref_file rf;
    if (ref_open(&rf, "batchnorm.ref")) {
        CHECK(0);
        return;
    }
    int nc = (int)ref_i64(&rf, "ncases")[0];
    CHECK(nc >= 6);
    int ntrain = 0, neval = 0;
    for (int c = 0; c < nc; c++) {
        const int64_t *g = ref_i64(&rf, "%d/cfg", c);
        int N = (int)g[0], C = (int)g[1], HW = (int)(g[2] * g[3]), train = (int)g[4];
        size_t n = (size_t)N * C * HW, M = (size_t)N * HW;
        printf("  batchnorm[%d] %s N=%d C=%d HW=%d\n", c, train ? "train" : "eval", N, C, HW);
        const float *x = ref_f32(&rf, "%d/inp", c), *gamma = ref_f32(&rf, "%d/gamma", c),
                    *beta = ref_f32(&rf, "%d/beta", c);
        float *rm = fz(C), *rv = fz(C), *out = fz(n);
        memcpy(rm, ref_f32(&rf, "%d/running_mean", c), C * sizeof(float));
        memcpy(rv, ref_f32(&rf, "%d/running_var", c), C * sizeof(float));
        /* the magnitudes in the expressions: max |x| per channel */
        double *xmax = dz(C);
        for (size_t k = 0; k < n; k++) {
            int ch = (int)(k / HW % C);
            if (fabs(x[k]) > xmax[ch]) xmax[ch] = fabs(x[k]);
        }
        if (!train) {
            neval++;
            batchnorm2d_forward_eval_ref(out, x, gamma, beta, rm, rv, N, C, HW, eps);
            double mag = 0;
            for (int ch = 0; ch < C; ch++) {
                double is = 1.0 / sqrt(rv[ch] + (double)eps);
                mag = fmax(mag, fabs(gamma[ch]) * is * (xmax[ch] + fabs(rm[ch])) + fabs(beta[ch]));
            }
            CHECK(cmp("bn", c, "out (eval)", out, ref_f32(&rf, "%d/out", c), n, 16 * U * mag, NULL));
            free(rm), free(rv), free(out), free(xmax);
            continue;
        }
        ntrain++;
        float *sm = fz(C), *si = fz(C), *dinp = fz(n), *dg = fz(C), *dbt = fz(C);
        batchnorm2d_forward_train_ref(out, sm, si, rm, rv, x, gamma, beta, N, C, HW, momentum, eps);
        const float *emean = ref_f32(&rf, "%d/save_mean", c), *einv = ref_f32(&rf, "%d/save_invstd", c);
        const float *dout = ref_f32(&rf, "%d/dout", c);
        double mag_out = 0, mag_mean = 0, mag_rm = 0, mag_rv = 0, mag_dinp = 0;
        double *sdy = dz(C), *sdyx = dz(C), *mdy = dz(C), *mdyx = dz(C), *dmax = dz(C);
        for (size_t k = 0; k < n; k++) {
            int ch = (int)(k / HW % C);
            double xh = ((double)x[k] - emean[ch]) * einv[ch];
            sdy[ch] += fabs(dout[k]);
            sdyx[ch] += fabs(dout[k] * xh);
            mdy[ch] += dout[k] / (double)M;
            mdyx[ch] += dout[k] * xh / (double)M;
            dmax[ch] = fmax(dmax[ch], fabs(dout[k]));
        }
        double *tdg = dz(C), *tdb = dz(C);
        for (int ch = 0; ch < C; ch++) {
            double is = einv[ch], xm = xmax[ch] + fabs(emean[ch]);
            mag_out = fmax(mag_out, fabs(gamma[ch]) * is * xm + fabs(beta[ch]));
            mag_mean = fmax(mag_mean, xmax[ch]);
            mag_rm = fmax(mag_rm, fabs(rm[ch]) + fabs(emean[ch]));
            mag_rv = fmax(mag_rv, fabs(rv[ch]) + 1.0 / (is * is));
            mag_dinp = fmax(mag_dinp, is * fabs(gamma[ch]) *
                                          (dmax[ch] + fabs(mdy[ch]) + xm * is * fabs(mdyx[ch])));
            /* dgamma, dbeta: sums of M terms (PyTorch may add them in float) */
            tdg[ch] = 2.0 * M * U * sdyx[ch] + 16 * U * sdyx[ch];
            tdb[ch] = 2.0 * M * U * sdy[ch];
        }
        CHECK(cmp("bn", c, "out", out, ref_f32(&rf, "%d/out", c), n, 16 * U * mag_out, NULL));
        CHECK(cmp("bn", c, "save_mean", sm, emean, C, 16 * U * mag_mean, NULL));
        CHECK(cmp("bn", c, "save_invstd", si, einv, C, 0, NULL));
        CHECK(cmp("bn", c, "running_mean", rm, ref_f32(&rf, "%d/running_mean_after", c), C,
                  16 * U * mag_rm, NULL));
        CHECK(cmp("bn", c, "running_var", rv, ref_f32(&rf, "%d/running_var_after", c), C,
                  16 * U * mag_rv, NULL));
        /* the backward pass from our own saved statistics, as a model would run it */
        for (size_t k = 0; k < n; k++) dinp[k] = NAN; /* overwritten, not accumulated */
        batchnorm2d_backward_ref(dinp, dg, dbt, dout, x, sm, si, gamma, N, C, HW);
        CHECK(cmp("bn", c, "dinp", dinp, ref_f32(&rf, "%d/dinp", c), n, 16 * U * mag_dinp, NULL));
        CHECK(cmp("bn", c, "dgamma", dg, ref_f32(&rf, "%d/dgamma", c), C, 0, tdg));
        CHECK(cmp("bn", c, "dbeta", dbt, ref_f32(&rf, "%d/dbeta", c), C, 0, tdb));
        batchnorm2d_backward_ref(NULL, dg, dbt, dout, x, sm, si, gamma, N, C, HW);
        CHECK(cmp_twice("bn", c, "dgamma after 2 passes", dg, ref_f32(&rf, "%d/dgamma", c), C, tdg));
        CHECK(cmp_twice("bn", c, "dbeta after 2 passes", dbt, ref_f32(&rf, "%d/dbeta", c), C, tdb));
        free(sm), free(si), free(dinp), free(dg), free(dbt), free(sdy), free(sdyx), free(mdy);
        free(mdyx), free(dmax), free(tdg), free(tdb), free(rm), free(rv), free(out), free(xmax);
    }
    CHECK(ntrain >= 4 && neval >= 2);
    ref_close(&rf);
}

/* ------------------------------------------------------------------------------ relu */

static void test_relu(void)
{
    ref_file rf;
    if (ref_open(&rf, "relu.ref")) {
        CHECK(0);
        return;
    }
    int nc = (int)ref_i64(&rf, "ncases")[0];
    CHECK(nc >= 3);
    for (int c = 0; c < nc; c++) {
        size_t n = (size_t)ref_i64(&rf, "%d/cfg", c)[0];
        const float *x = ref_f32(&rf, "%d/inp", c), *dout = ref_f32(&rf, "%d/dout", c);
        float *out = fz(n), *dinp = fz(n);
        relu_forward_ref(out, x, n);
        relu_backward_ref(dinp, dout, out, n);
        CHECK(cmp("relu", c, "out (exact)", out, ref_f32(&rf, "%d/out", c), n, 0, NULL));
        CHECK(cmp("relu", c, "dinp (exact)", dinp, ref_f32(&rf, "%d/dinp", c), n, 0, NULL));
        /* in place, as a model may run it */
        memcpy(out, x, n * sizeof(float));
        relu_forward_ref(out, out, n);
        CHECK(cmp("relu", c, "out in place", out, ref_f32(&rf, "%d/out", c), n, 0, NULL));
        free(out), free(dinp);
    }
    ref_close(&rf);
}

/* ------------------------------------------------------------------------------ maxpool */

static void test_maxpool(void)
{
    ref_file rf;
    if (ref_open(&rf, "maxpool.ref")) {
        CHECK(0);
        return;
    }
    int nc = (int)ref_i64(&rf, "ncases")[0];
    CHECK(nc >= 8);
    for (int c = 0; c < nc; c++) {
        const int64_t *g = ref_i64(&rf, "%d/cfg", c);
        int N = (int)g[0], C = (int)g[1], H = (int)g[2], W = (int)g[3], K = (int)g[4], S = (int)g[5];
        int OH = (H - K) / S + 1, OW = (W - K) / S + 1;
        size_t ni = (size_t)N * C * H * W, no = (size_t)N * C * OH * OW;
        printf("  maxpool[%d] N=%d C=%d %dx%d K=%d S=%d\n", c, N, C, H, W, K, S);
        CHECK(ref_tensor_of(&rf, "%d/out", c)->numel == no);
        const float *x = ref_f32(&rf, "%d/inp", c), *dout = ref_f32(&rf, "%d/dout", c);
        const int32_t *eidx = ref_i32(&rf, "%d/argmax", c);
        float *out = fz(no), *dinp = fz(ni);
        int32_t *idx = calloc(no, sizeof *idx);
        maxpool2d_forward_ref(out, idx, x, N, C, H, W, K, S);
        CHECK(cmp("maxpool", c, "out (exact)", out, ref_f32(&rf, "%d/out", c), no, 0, NULL));
        size_t idx_bad = 0;
        for (size_t i = 0; i < no; i++) idx_bad += idx[i] != eidx[i];
        printf("    maxpool[%d] argmax: %zu of %zu differ from PyTorch's indices\n", c, idx_bad, no);
        CHECKF(idx_bad == 0, "case %d: %zu argmax differ (PyTorch: the first maximum)", c, idx_bad);
        for (size_t i = 0; i < ni; i++) dinp[i] = NAN; /* backward overwrites */
        maxpool2d_backward_ref(dinp, dout, idx, N, C, H, W, OH, OW);
        int per = (K + S - 1) / S;
        double atol = K > S ? 2.0 * per * per * U * ref_max_abs(dout, no) : 0;
        CHECK(cmp("maxpool", c, K > S ? "dinp" : "dinp (exact)", dinp, ref_f32(&rf, "%d/dinp", c),
                  ni, atol, NULL));
        free(out), free(dinp), free(idx);
    }
    ref_close(&rf);

    /* NaN propagates (PyTorch: a NaN in the window is the maximum). */
    float x[16] = {1, 2, 3, 4, 5, NAN, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, out[4];
    int32_t idx[4];
    maxpool2d_forward_ref(out, idx, x, 1, 1, 4, 4, 2, 2);
    CHECK(isnan(out[0]) && idx[0] == 5);
    CHECK(out[1] == 8 && idx[1] == 7 && out[2] == 14 && idx[2] == 13 && out[3] == 16);
}

/* ------------------------------------------------------------------------------ linear */

static void test_linear(void)
{
    ref_file rf;
    if (ref_open(&rf, "linear.ref")) {
        CHECK(0);
        return;
    }
    int nc = (int)ref_i64(&rf, "ncases")[0];
    CHECK(nc >= 6);
    for (int c = 0; c < nc; c++) {
        const int64_t *g = ref_i64(&rf, "%d/cfg", c);
        int N = (int)g[0], IN = (int)g[1], OUT = (int)g[2], hb = (int)g[3];
        printf("  linear[%d] N=%d %d -> %d bias=%d\n", c, N, IN, OUT, hb);
        size_t ni = (size_t)N * IN, nw = (size_t)OUT * IN, no = (size_t)N * OUT;
        const float *x = ref_f32(&rf, "%d/inp", c), *w = ref_f32(&rf, "%d/w", c);
        const float *b = hb ? ref_f32(&rf, "%d/b", c) : NULL, *dout = ref_f32(&rf, "%d/dout", c);
        float *out = fz(no), *dinp = fz(ni), *dw = fz(nw), *db = fz(OUT);
        linear_forward_ref(out, x, w, b, N, IN, OUT);
        for (size_t i = 0; i < ni; i++) dinp[i] = NAN; /* overwritten, not accumulated */
        linear_backward_ref(dinp, dw, db, dout, x, w, N, IN, OUT);
        float *ax = fabs_of(x, ni), *aw = fabs_of(w, nw), *ab = fabs_of(b, OUT),
              *ad = fabs_of(dout, no);
        float *So = fz(no), *Si = fz(ni), *Sw = fz(nw), *Sb = fz(OUT);
        linear_forward_ref(So, ax, aw, ab, N, IN, OUT);
        linear_backward_ref(Si, Sw, Sb, ad, ax, aw, N, IN, OUT);
        double *to = tol_from_sums(So, no, IN + 1.0), *ti = tol_from_sums(Si, ni, OUT),
               *tw = tol_from_sums(Sw, nw, N), *tb = tol_from_sums(Sb, OUT, N);
        CHECK(cmp("linear", c, "out", out, ref_f32(&rf, "%d/out", c), no, 0, to));
        CHECK(cmp("linear", c, "dinp", dinp, ref_f32(&rf, "%d/dinp", c), ni, 0, ti));
        CHECK(cmp("linear", c, "dw", dw, ref_f32(&rf, "%d/dw", c), nw, 0, tw));
        if (hb) CHECK(cmp("linear", c, "db", db, ref_f32(&rf, "%d/db", c), OUT, 0, tb));
        linear_backward_ref(NULL, dw, db, dout, x, w, N, IN, OUT);
        CHECK(cmp_twice("linear", c, "dw after 2 passes", dw, ref_f32(&rf, "%d/dw", c), nw, tw));
        if (hb) CHECK(cmp_twice("linear", c, "db after 2 passes", db, ref_f32(&rf, "%d/db", c), OUT, tb));
        free(out), free(dinp), free(dw), free(db), free(ax), free(aw), free(ab), free(ad);
        free(So), free(Si), free(Sw), free(Sb), free(to), free(ti), free(tw), free(tb);
    }
    ref_close(&rf);
}

/* ------------------------------------------------------------------------------ cross-entropy */

static void test_cross_entropy(void)
{
    ref_file rf;
    if (ref_open(&rf, "cross_entropy.ref")) {
        CHECK(0);
        return;
    }
    int nc = (int)ref_i64(&rf, "ncases")[0];
    CHECK(nc >= 5);
    for (int c = 0; c < nc; c++) {
        const int64_t *g = ref_i64(&rf, "%d/cfg", c);
        int N = (int)g[0], C = (int)g[1];
        const float *z = ref_f32(&rf, "%d/logits", c);
        const uint8_t *y = ref_u8(&rf, "%d/labels", c);
        float *dz_ = fz((size_t)N * C);
        float loss = cross_entropy_ref(dz_, z, y, N, C);
        float loss2 = cross_entropy_ref(NULL, z, y, N, C);
        double L = ref_max_abs(z, (size_t)N * C);
        printf("  cross_entropy[%d] N=%d C=%d max|logit|=%.3g\n", c, N, C, L);
        CHECK(cmp("ce", c, "loss", &loss, ref_f32(&rf, "%d/loss", c), 1, 16 * U * (1 + L), NULL));
        CHECK(loss2 == loss);
        CHECK(cmp("ce", c, "dlogits", dz_, ref_f32(&rf, "%d/dlogits", c), (size_t)N * C,
                  16 * U * (1 + L) / N, NULL));
        free(dz_);
    }
    ref_close(&rf);
}

/* ------------------------------------------------------------------------------ optimisers */

/* An optimiser's state against PyTorch's: bit for bit (exact), or within atol and RTOL. */
static int cmp_optim(int c, const char *what, const float *got, const float *exp, size_t n,
                     int exact, double atol)
{
    if (!exact)
        return cmp("optim", c, what, got, exp, n, atol, NULL);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &exp[i], sizeof(float)) != 0 && !bad++)
            first = i;
    if (bad)
        printf("    optim[%d] %s: %zu of %zu values differ from PyTorch's bits, first [%zu] %.9g "
               "vs %.9g\n",
               c, what, bad, n, first, (double)got[first], (double)exp[first]);
    return bad == 0;
}

static void test_optim_kernels(void)
{
    ref_file rf;
    if (ref_open(&rf, "optim.ref")) {
        CHECK(0);
        return;
    }
    int nc = (int)ref_i64(&rf, "ncases")[0];
    CHECK(nc >= 4);
    /* Where PyTorch's kernels that made the reference fused the multiply-adds as this CPU's
     * level does (or neither did), the updates must match to the bit; else within rounding. */
    const int64_t *fused_ref = ref_i64_opt(&rf, "fused");
    int exact = fused_ref && fused_ref[0] == st_optim_fused();
    const char *made = !fused_ref          ? "unknown"
                       : fused_ref[0] == 1 ? "fused"
                       : fused_ref[0] == 0 ? "unfused"
                                           : "neither";
    printf("  optimisers: reference %s, Stride %s: %s\n", made,
           st_optim_fused() ? "fused" : "unfused", exact ? "bit for bit" : "within rounding");
    for (int c = 0; c < nc; c++) {
        const int64_t *g = ref_i64(&rf, "%d/cfg", c);
        int kind = (int)g[0], steps = (int)g[2];
        size_t n = (size_t)g[1];
        const double *h = ref_f64(&rf, "%d/hyper", c);
        printf("  optim[%d] %s n=%zu steps=%d lr=%g %g %g %g\n", c, kind ? "sgd" : "adam", n,
               steps, h[0], h[1], h[2], h[3]);
        float *p = fz(n), *m = fz(n), *v = fz(n);
        memcpy(p, ref_f32(&rf, "%d/param", c), n * sizeof(float));
        double atol = 16 * U * ref_max_abs(p, n) + 1e-6 * h[0];
        for (int s = 0; s < steps; s++) {
            const float *grad = ref_f32(&rf, "%d/grad%d", c, s);
            if (kind == 0)
                adam_update_ref(p, grad, m, v, n, h[0], h[1], h[2], h[3], s + 1);
            else
                sgd_update_ref(p, grad, m, n, h[0], h[1], s + 1);
            char what[32];
            snprintf(what, sizeof what, "param after step %d", s + 1);
            CHECK(cmp_optim(c, what, p, ref_f32(&rf, "%d/param%d", c, s), n, exact, atol));
        }
        if (kind == 0) {
            const float *em = ref_f32(&rf, "%d/m", c), *ev = ref_f32(&rf, "%d/v", c);
            CHECK(cmp_optim(c, "exp_avg", m, em, n, exact, 16 * U * ref_max_abs(em, n)));
            CHECK(cmp_optim(c, "exp_avg_sq", v, ev, n, exact, 16 * U * ref_max_abs(ev, n)));
        } else if (h[1] != 0) {
            const float *eb = ref_f32(&rf, "%d/buf", c);
            CHECK(cmp_optim(c, "momentum_buffer", m, eb, n, exact, 16 * U * ref_max_abs(eb, n)));
        }
        free(p), free(m), free(v);
    }
    ref_close(&rf);
}

/* ------------------------------------------------------------------------------ dropout */

static void test_dropout(void)
{
    const size_t n = 100000;
    const float ps[] = {0.1f, 0.3f, 0.5f, 0.9f};
    float *x = fz(n), *out = fz(n), *mask = fz(n), *dout = fz(n), *dinp = fz(n), *mask2 = fz(n);
    st_rng rng;
    st_rng_seed(&rng, 42);
    for (size_t i = 0; i < n; i++) {
        x[i] = st_rng_uniform(&rng) * 4 - 2;
        dout[i] = st_rng_uniform(&rng) * 2 - 1;
    }
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        float p = ps[k], scale = 1.0f / (1.0f - p);
        st_rng_seed(&rng, 1000 + k);
        dropout_forward_ref(out, mask, x, n, p, &rng);
        size_t kept = 0, bad_mask = 0, bad_out = 0, bad_back = 0;
        for (size_t i = 0; i < n; i++) {
            if (mask[i] != 0.0f && mask[i] != scale) bad_mask++;
            kept += mask[i] != 0.0f;
            /* kept values scaled exactly as PyTorch does (input * (1 / (1 - p))), dropped are 0 */
            if (out[i] != (mask[i] != 0.0f ? x[i] * scale : 0.0f)) bad_out++;
        }
        dropout_backward_ref(dinp, dout, mask, n);
        for (size_t i = 0; i < n; i++)
            if (dinp[i] != dout[i] * mask[i]) bad_back++;
        double mean = n * (1.0 - p), sigma = sqrt(n * p * (1.0 - p));
        printf("    dropout p=%.1f: kept %zu of %zu (expected %.0f +- %.0f, z=%.2f); scale %.9g\n",
               (double)p, kept, n, mean, sigma, (kept - mean) / sigma, (double)scale);
        CHECKF(fabs(kept - mean) <= 4 * sigma, "p=%g kept %zu", (double)p, kept);
        CHECKF(fabs((double)scale * (1.0 - p) - 1.0) < 2 * U, "scale %.9g", (double)scale);
        CHECK(bad_mask == 0 && bad_out == 0 && bad_back == 0);
        /* the same seed gives the same mask; the next draw another one */
        st_rng_seed(&rng, 1000 + k);
        dropout_forward_ref(out, mask2, x, n, p, &rng);
        CHECK(memcmp(mask, mask2, n * sizeof(float)) == 0);
        dropout_forward_ref(out, mask2, x, n, p, &rng);
        CHECK(memcmp(mask, mask2, n * sizeof(float)) != 0);
        /* masks are drawn in blocks of 4096 from generators seeded per block: neighbouring
         * blocks, and the two halves of each 64-bit draw, must not repeat each other; pairs of
         * neighbouring elements agree as often as independent ones would */
        size_t same_block = 0, pairs_agree = 0;
        for (size_t i = 0; i + 4096 < n; i++)
            same_block += (mask[i] != 0.0f) == (mask[i + 4096] != 0.0f);
        for (size_t i = 0; i + 1 < n; i += 2)
            pairs_agree += (mask[i] != 0.0f) == (mask[i + 1] != 0.0f);
        double pa = p * p + (1.0 - p) * (1.0 - p); /* chance that two independent ones agree */
        double m1 = (n - 4096) * pa, s1 = sqrt((n - 4096) * pa * (1 - pa));
        double m2 = (n / 2) * pa, s2 = sqrt((n / 2) * pa * (1 - pa));
        CHECKF(fabs(same_block - m1) <= 5 * s1, "p=%g blocks agree %zu, expected %.0f", (double)p,
               same_block, m1);
        CHECKF(fabs(pairs_agree - m2) <= 5 * s2, "p=%g pairs agree %zu, expected %.0f", (double)p,
               pairs_agree, m2);
    }
    /* p = 0: identity, no randomness used */
    st_rng_seed(&rng, 5);
    st_rng before = rng;
    dropout_forward_ref(out, mask, x, n, 0.0f, &rng);
    CHECK(memcmp(out, x, n * sizeof(float)) == 0);
    CHECK(memcmp(&before, &rng, sizeof rng) == 0);
    dropout_backward_ref(dinp, dout, mask, n);
    CHECK(memcmp(dinp, dout, n * sizeof(float)) == 0);
    free(x), free(out), free(mask), free(dout), free(dinp), free(mask2);
}

int main(void)
{
    RUN(test_conv2d);
    RUN(test_batchnorm);
    RUN(test_relu);
    RUN(test_maxpool);
    RUN(test_linear);
    RUN(test_cross_entropy);
    RUN(test_optim_kernels);
    RUN(test_dropout);
    return CHECK_DONE();
}
