/* test_models.c - the three models and the optimisers, through the public API, against PyTorch
 * (tests/ref/model_KIND.ref, adam_KIND.ref, sgd_mlp.ref written by tests/gen_ref.py), plus the
 * statistics of Stride's own default initialisation.
 *
 * The PyTorch weights are copied into the Stride model by name (st_model_find_tensor), after
 * checking that Stride lists exactly PyTorch's state_dict: names, order, dtypes and shapes.
 * The one-step cases run twice: with the fast kernels the library trains with (default thread
 * count), and with the reference kernels of layers.h (st_model_use_reference). The training runs
 * use the fast kernels on one thread: cheaper (idle OpenMP threads spin between the many small
 * parallel regions), and stride.h promises results bit-identical for any thread count.
 *
 * Tolerances (|got - exp| <= atol + rtol |exp|, atol = A * max|exp| of the tensor compared):
 *  - One forward/backward pass (logits, loss, every gradient, running stats): rtol = 1e-4,
 *    A = 1e-5. Each layer adds sums of up to 3136 terms evaluated in a different order (PyTorch's
 *    oneDNN / MKL vs Stride's GEMM), ~1e-6 relative per layer, and batch norm with a batch of 8
 *    divides by standard deviations of a few values, which amplifies those differences in the
 *    gradients by ~10x; 1e-4 relative is still 1000x smaller than any real error (a wrong index,
 *    a missing term, a biased variance).
 *    Exception: the bias of a convolution that feeds a BatchNorm has an exact gradient of 0 (BN
 *    removes the channel mean); both sides return rounding noise (~1e-8), checked against the
 *    bound 2 K u sum|dout| per channel (K terms; gen_ref.py stores sum|dout| and K).
 *  - 10 Adam steps (final weights, buffers, per-step losses): rtol = 1e-4, A = 1e-4, plus
 *    atol 1e-3 * lr * steps. Adam divides by sqrt(v) + eps, so each step moves a weight by ~lr
 *    whatever the gradient's size: the relative error of a step is the relative error of that
 *    weight's gradient, which is large where the gradient is a near-cancelling sum (observed:
 *    5 of the 57,783 sampled classifier.1 weights off by > 1e-7, the worst by 2.5e-6, i.e.
 *    2.5e-4 of lr * steps).
 *    Such a weight can be off by much more: at the first step of the ConvNet run, the gradient
 *    of classifier.1.weight[75][371] is -4.5e-8 = 2.7e-3 of the sum of its terms' magnitudes, so
 *    its relative error is ~1e-2; Adam normalises it to a step of ~lr anyway, and it ends 2.5e-6
 *    (AVX2 kernels) or 1.65e-5 (STRIDE_KERNEL=portable) away from PyTorch's. Hence an outlier
 *    budget for big tensors: ceil(1e-4 n) elements (n >= 1000) may exceed the tolerance if they
 *    stay within 0.1 lr steps = 1e-3. Real bugs (bias correction, a missed or repeated step, the
 *    wrong moment, a wrong row) move most elements, or whole rows, by a sizeable fraction of
 *    lr * steps = 1e-2; the gradients themselves are checked element by element above.
 *    The conv biases feeding a BatchNorm are held fixed in these runs, see check_training.
 *  - 5 SGD steps: the update is linear in the gradients: rtol = 1e-4, A = 1e-5.
 */
#include "model.h"
#include "stride.h"

#include "check.h"
#include "refio.h"

#include <string.h>

#define NIMG 8
#define U 5.9604644775390625e-8 /* 2^-24, the unit roundoff of float32 */

static const char *const kind_file[] = {"cnn", "linear", "mlp"};

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void to_input(float *x, const uint8_t *u8, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)u8[i] / 255.0f; /* ToTensor: x.float().div(255) */
}

static int cmp_scaled(const char *what, const float *got, const float *exp, size_t n, double A,
                      double rtol)
{
    return ref_compare(what, got, exp, n, A * ref_max_abs(exp, n), rtol);
}

/* Training: Adam allows ceil(1e-4 n) outliers in tensors of 1000 elements or more, within
 * 0.1 lr steps (see the top of the file); SGD none. */
static int cmp_train(const char *what, const float *got, const float *exp, size_t n, double atol,
                     double A, double rtol, double outlier_atol)
{
    size_t outliers = outlier_atol > 0 && n >= 1000 ? (n + 9999) / 10000 : 0;
    return ref_compare_budget(what, got, exp, n, atol + A * ref_max_abs(exp, n), NULL, rtol,
                              outliers, outlier_atol);
}

/* Checks that m lists exactly the tensors "init/..." of rf, in order, and copies their values. */
static int load_init(st_model *m, const ref_file *rf)
{
    int k = 0, ok = 1;
    for (int i = 0; i < rf->n; i++) {
        const ref_tensor *r = &rf->t[i];
        if (strncmp(r->name, "init/", 5) != 0) continue;
        const char *name = r->name + 5;
        const st_tensor *t = st_model_tensor(m, k);
        if (!t || strcmp(t->name, name) != 0) {
            fprintf(stderr, "    tensor %d: Stride has %s, PyTorch's state_dict %s\n", k,
                    t ? t->name : "nothing", name);
            ok = 0;
            break;
        }
        int shape_ok = t->ndim == r->ndim && t->numel == r->numel;
        for (int d = 0; shape_ok && d < r->ndim; d++) shape_ok = t->shape[d] == r->dims[d];
        int dtype_ok = (t->dtype == ST_F32 && r->dtype == REF_F32) ||
                       (t->dtype == ST_I64 && r->dtype == REF_I64);
        if (!shape_ok || !dtype_ok || st_model_find_tensor(m, name) != t) {
            fprintf(stderr, "    %s: shape, dtype or lookup differ from PyTorch's\n", name);
            ok = 0;
            break;
        }
        if ((t->grad != NULL) != (strstr(name, "running_") == NULL && !strstr(name, "num_batches"))) {
            fprintf(stderr, "    %s: a parameter must have a gradient, a buffer none\n", name);
            ok = 0;
        }
        memcpy(t->data, r->data, r->numel * (r->dtype == REF_I64 ? 8 : 4));
        k++;
    }
    if (ok && k != st_model_num_tensors(m)) {
        fprintf(stderr, "    Stride has %d tensors, PyTorch's state_dict %d\n",
                st_model_num_tensors(m), k);
        ok = 0;
    }
    return ok;
}

static st_model *model_from_ref(st_model_kind kind, const ref_file *rf, int reference)
{
    st_error err = {{0}};
    st_model *m = st_model_create(kind, NIMG, 99, &err);
    CHECKF(m != NULL, "%s", err.msg);
    if (!m) return NULL;
    st_model_use_reference(m, reference);
    if (!load_init(m, rf)) {
        CHECK(0);
        st_model_free(m);
        return NULL;
    }
    return m;
}

/* ------------------------------------------------------------------------------ layout */

static void test_state_dict_layout(void)
{
    static const size_t nparams[] = {426602, 7850, 535818};
    static const int ntensors[] = {25, 2, 6};
    for (int k = 0; k < 3; k++) {
        ref_file rf;
        char file[32];
        snprintf(file, sizeof file, "model_%s.ref", kind_file[k]);
        if (ref_open(&rf, file)) {
            CHECK(0);
            continue;
        }
        st_model *m = model_from_ref((st_model_kind)k, &rf, 0); /* checks names, order, shapes */
        if (m) {
            CHECK(st_model_num_params(m) == nparams[k]);
            CHECK(st_model_num_tensors(m) == ntensors[k]);
            size_t np = 0;
            for (int i = 0; i < st_model_num_tensors(m); i++) {
                const st_tensor *t = st_model_tensor(m, i);
                if (t->grad) np += t->numel;
                if (t->dtype == ST_I64) CHECK(t->ndim == 0 && t->numel == 1);
            }
            CHECK(np == nparams[k]);
            CHECK(st_model_tensor(m, -1) == NULL && st_model_tensor(m, ntensors[k]) == NULL);
            CHECK(st_model_find_tensor(m, "nope.weight") == NULL);
            printf("    %s: %d tensors, %zu parameters, state_dict names/order/shapes match\n",
                   kind_file[k], st_model_num_tensors(m), st_model_num_params(m));
        }
        st_model_free(m);
        ref_close(&rf);
    }
}

/* ------------------------------------------------------------------------------ one step */

static void check_forward_backward(st_model_kind kind, int reference)
{
    const double A = 1e-5, R = 1e-4;
    ref_file rf;
    char file[32], what[128];
    snprintf(file, sizeof file, "model_%s.ref", kind_file[kind]);
    if (ref_open(&rf, file)) {
        CHECK(0);
        return;
    }
    printf("  %s, %s kernels\n", kind_file[kind], reference ? "reference" : "fast");
    st_model *m = model_from_ref(kind, &rf, reference);
    if (!m) {
        ref_close(&rf);
        return;
    }
    st_error err = {{0}};
    float x[NIMG * 784];
    to_input(x, ref_u8(&rf, "x"), NIMG * 784);
    const uint8_t *y = ref_u8(&rf, "y");
    const float *logits = NULL;
    float loss = 0;
    st_model_set_training(m, 1);
    st_model_set_dropout(m, 0);
    st_model_zero_grad(m);
    CHECKF(st_model_forward(m, x, NIMG, &logits, &err) == 0, "%s", err.msg);
    CHECKF(st_model_loss(m, y, &loss, &err) == 0, "%s", err.msg);
    CHECKF(st_model_backward(m, &err) == 0, "%s", err.msg);
    CHECK(cmp_scaled("logits (train)", logits, ref_f32(&rf, "logits"), NIMG * 10, A, R));
    CHECK(cmp_scaled("loss", &loss, ref_f32(&rf, "loss"), 1, A, R));
    for (int i = 0; i < st_model_num_tensors(m); i++) {
        const st_tensor *t = st_model_tensor(m, i);
        if (t->grad) {
            snprintf(what, sizeof what, "grad %s", t->name);
            const float *e = ref_f32_opt(&rf, "grad/%s", t->name);
            const float *absd = ref_f32_opt(&rf, "gradabs/%s/sum", t->name);
            if (e && absd) {
                /* conv bias: its exact gradient is 0 before BatchNorm, the values are rounding
                 * noise of sums of K terms; each side is within K u sum|terms| of 0 */
                double K = (double)ref_i64(&rf, "gradabs/%s/K", t->name)[0], *tol = calloc(t->numel, sizeof(double));
                for (size_t j = 0; j < t->numel; j++) tol[j] = 2 * K * U * absd[j];
                strcat(what, " (noise: exact value 0)");
                CHECK(ref_compare_v(what, t->grad, e, t->numel, A * ref_max_abs(e, t->numel), tol, R));
                free(tol);
                continue;
            }
            if (e) {
                CHECK(cmp_scaled(what, t->grad, e, t->numel, A, R));
                continue;
            }
            /* big Linear weight: grad = dout^T inp, from PyTorch's factors */
            const ref_tensor *fi = ref_tensor_of(&rf, "gradfac/%s/inp", t->name),
                             *fo = ref_tensor_of(&rf, "gradfac/%s/dout", t->name);
            int N = (int)fi->dims[0], IN = (int)fi->dims[1], OUT = (int)fo->dims[1];
            CHECK(N == NIMG && (size_t)IN * OUT == t->numel);
            float *ex = malloc(t->numel * sizeof(float));
            const float *fin = fi->data, *fout = fo->data;
            for (int o = 0; o < OUT; o++)
                for (int j = 0; j < IN; j++) {
                    double s = 0;
                    for (int n = 0; n < N; n++) s += (double)fout[n * OUT + o] * fin[n * IN + j];
                    ex[(size_t)o * IN + j] = (float)s;
                }
            strcat(what, " (from factors)");
            CHECK(cmp_scaled(what, t->grad, ex, t->numel, A, R));
            free(ex);
        } else if (t->dtype == ST_F32) {
            snprintf(what, sizeof what, "after forward %s", t->name);
            CHECK(cmp_scaled(what, t->data, ref_f32(&rf, "after/%s", t->name), t->numel, A, R));
        } else {
            int64_t got = *(const int64_t *)t->data, e = ref_i64(&rf, "after/%s", t->name)[0];
            CHECKF(got == e, "%s = %lld, PyTorch %lld", t->name, (long long)got, (long long)e);
        }
    }
    /* evaluation mode, dropout enabled (it must be the identity there) */
    st_model_set_training(m, 0);
    st_model_set_dropout(m, 1);
    CHECKF(st_model_forward(m, x, NIMG, &logits, &err) == 0, "%s", err.msg);
    CHECK(cmp_scaled("logits (eval)", logits, ref_f32(&rf, "eval_logits"), NIMG * 10, A, R));
    CHECK(st_model_backward(m, &err) != 0); /* no backward in evaluation mode */
    st_model_free(m);
    ref_close(&rf);
}

static void test_cnn_forward_backward(void)
{
    check_forward_backward(ST_MODEL_CNN, 0);
    check_forward_backward(ST_MODEL_CNN, 1);
}

static void test_linear_forward_backward(void)
{
    check_forward_backward(ST_MODEL_LINEAR, 0);
    check_forward_backward(ST_MODEL_LINEAR, 1);
}

static void test_mlp_forward_backward(void)
{
    check_forward_backward(ST_MODEL_MLP, 0);
    check_forward_backward(ST_MODEL_MLP, 1);
}

/* ------------------------------------------------------------------------------ training */

static void check_training(st_model_kind kind, const char *optname, int reference)
{
    int adam = strcmp(optname, "adam") == 0;
    const double A = adam ? 1e-4 : 1e-5, R = 1e-4, lr = adam ? 1e-3 : 0.01;
    ref_file init, rf;
    char file[32], what[128];
    snprintf(file, sizeof file, "model_%s.ref", kind_file[kind]);
    if (ref_open(&init, file)) {
        CHECK(0);
        return;
    }
    snprintf(file, sizeof file, "%s_%s.ref", optname, kind_file[kind]);
    if (ref_open(&rf, file)) {
        CHECK(0);
        ref_close(&init);
        return;
    }
    const ref_tensor *xs = ref_tensor_of(&rf, "x");
    int steps = (int)xs->dims[0];
    printf("  %s, %d %s steps, %s kernels\n", kind_file[kind], steps, optname,
           reference ? "reference" : "fast");
    st_model *m = model_from_ref(kind, &init, reference);
    if (!m) goto out;
    st_error err = {{0}};
    st_optim_config cfg = adam ? st_adam_config(lr) : st_sgd_config(lr, 0.9);
    st_optim *o = st_optim_create(m, &cfg, &err);
    CHECKF(o != NULL, "%s", err.msg);
    if (!o) goto out;
    float x[NIMG * 784], losses[16];
    const uint8_t *ys = ref_u8(&rf, "y");
    const float *logits;
    /* the conv biases that feed a BatchNorm: their gradient is rounding noise (exactly 0 in
     * exact arithmetic), which Adam would turn into steps of ~lr; gen_ref.py zeroes it before each
     * step, and so do we (see conv_biases_before_bn there) */
    const st_tensor *frozen[8];
    int nfrozen = 0;
    for (int i = 1; i + 3 < st_model_num_tensors(m) && nfrozen < 8; i++) {
        const st_tensor *t = st_model_tensor(m, i);
        if (ends_with(t->name, ".bias") && st_model_tensor(m, i - 1)->ndim == 4 &&
            ends_with(st_model_tensor(m, i + 3)->name, ".running_mean"))
            frozen[nfrozen++] = t;
    }
    CHECK(nfrozen == (kind == ST_MODEL_CNN ? 3 : 0));
    st_model_set_training(m, 1);
    st_model_set_dropout(m, 0);
    st_set_threads(1); /* see the top of the file */
    for (int s = 0; s < steps && s < 16; s++) {
        to_input(x, (const uint8_t *)xs->data + (size_t)s * NIMG * 784, NIMG * 784);
        st_model_zero_grad(m);
        CHECK(st_model_forward(m, x, NIMG, &logits, &err) == 0);
        CHECK(st_model_loss(m, ys + s * NIMG, &losses[s], &err) == 0);
        CHECK(st_model_backward(m, &err) == 0);
        for (int i = 0; i < nfrozen; i++) memset(frozen[i]->grad, 0, frozen[i]->numel * sizeof(float));
        st_optim_step(o);
    }
    st_set_threads(0);
    CHECK(st_optim_steps(o) == steps);
    /* Adam: plus 1e-3 of the largest total movement, lr * steps (see the top of the file) */
    const double atol_lr = adam ? 1e-3 * lr * steps : 0, outlier_atol = adam ? 0.1 * lr * steps : 0;
    CHECK(cmp_train("loss at each step", losses, ref_f32(&rf, "loss"), (size_t)steps, atol_lr, A, R, outlier_atol));
    for (int i = 0; i < st_model_num_tensors(m); i++) {
        const st_tensor *t = st_model_tensor(m, i);
        snprintf(what, sizeof what, "final %s", t->name);
        if (t->dtype == ST_I64) {
            int64_t got = *(const int64_t *)t->data, e = ref_i64(&rf, "final/%s", t->name)[0];
            CHECKF(got == e, "%s = %lld, PyTorch %lld", t->name, (long long)got, (long long)e);
            continue;
        }
        const float *e = ref_f32_opt(&rf, "final/%s", t->name);
        if (e) {
            CHECK(cmp_train(what, t->data, e, t->numel, atol_lr, A, R, outlier_atol));
            continue;
        }
        const ref_tensor *es = ref_tensor_of(&rf, "final_sampled/%s", t->name);
        float *got = malloc(es->numel * sizeof(float));
        size_t k = 0;
        for (size_t j = 0; j < t->numel; j++)
            if (ref_sampled(j, t->numel) && k < es->numel) got[k++] = ((const float *)t->data)[j];
        CHECK(k == es->numel);
        strcat(what, " (sampled)");
        CHECK(cmp_train(what, got, es->data, es->numel, atol_lr, A, R, outlier_atol));
        free(got);
    }
    st_model_set_training(m, 0);
    to_input(x, xs->data, NIMG * 784);
    CHECK(st_model_forward(m, x, NIMG, &logits, &err) == 0);
    CHECK(cmp_train("logits (eval, after training)", logits, ref_f32(&rf, "eval_logits"),
                     NIMG * 10, atol_lr, A, R, outlier_atol));
    st_optim_free(o);
out:
    st_model_free(m);
    ref_close(&init);
    ref_close(&rf);
}

/* Training runs the fast kernels (what the library trains with); the reference kernels are
 * compared with PyTorch above and in test_layers, and the optimiser code is the same for both. */
static void test_adam_cnn(void) { check_training(ST_MODEL_CNN, "adam", 0); }

static void test_adam_linear(void)
{
    check_training(ST_MODEL_LINEAR, "adam", 0);
    check_training(ST_MODEL_LINEAR, "adam", 1);
}

static void test_adam_mlp(void) { check_training(ST_MODEL_MLP, "adam", 0); }

static void test_sgd_mlp(void) { check_training(ST_MODEL_MLP, "sgd", 0); }

/* ------------------------------------------------------------------------------ dropout */

static void test_dropout_in_model(void)
{
    ref_file rf;
    if (ref_open(&rf, "model_cnn.ref")) {
        CHECK(0);
        return;
    }
    st_error err = {{0}};
    st_model *m = model_from_ref(ST_MODEL_CNN, &rf, 0);
    if (!m) {
        ref_close(&rf);
        return;
    }
    float x[NIMG * 784], a[NIMG * 10], b[NIMG * 10], c[NIMG * 10];
    const float *lg;
    to_input(x, ref_u8(&rf, "x"), NIMG * 784);
    st_set_threads(1);
    /* training, dropout off: deterministic */
    st_model_set_training(m, 1);
    st_model_set_dropout(m, 0);
    CHECK(st_model_forward(m, x, NIMG, &lg, &err) == 0);
    memcpy(a, lg, sizeof a);
    /* dropout on: different logits, different again on the next draw */
    st_model_set_dropout(m, 1);
    CHECK(st_model_forward(m, x, NIMG, &lg, &err) == 0);
    memcpy(b, lg, sizeof b);
    CHECK(st_model_forward(m, x, NIMG, &lg, &err) == 0);
    memcpy(c, lg, sizeof c);
    CHECK(memcmp(a, b, sizeof a) != 0 && memcmp(b, c, sizeof b) != 0);
    /* the same generator state gives the same masks */
    st_rng saved = *st_model_rng(m);
    CHECK(st_model_forward(m, x, NIMG, &lg, &err) == 0);
    memcpy(b, lg, sizeof b);
    *st_model_rng(m) = saved;
    CHECK(st_model_forward(m, x, NIMG, &lg, &err) == 0);
    CHECK(memcmp(b, lg, sizeof b) == 0);
    /* evaluation: dropout is the identity whether enabled or not */
    st_model_set_training(m, 0);
    CHECK(st_model_forward(m, x, NIMG, &lg, &err) == 0);
    memcpy(b, lg, sizeof b);
    st_model_set_dropout(m, 0);
    CHECK(st_model_forward(m, x, NIMG, &lg, &err) == 0);
    CHECK(memcmp(b, lg, sizeof b) == 0);
    st_set_threads(0);
    st_model_free(m);
    ref_close(&rf);
}

/* ------------------------------------------------------------------------------ epoch */

/* st_train_epoch is its batches' forward, loss, backward and step, in the order of its shuffle
 * (a Fisher-Yates permutation drawn with st_rng_below from the last index down): the same weights
 * and cost to the bit as those calls made by hand with the caller's own input buffer. The
 * epoch stages each batch in the model's input slot where the first layer is a Flatten (the
 * linear and multi-layer nets), so this checks that nothing reads or overwrites it amiss; the
 * CNN, without a slot, runs the same check. 150 images: two batches of 64 and one of 22. */
static void test_train_epoch_is_its_steps(void)
{
    enum { N = 150, B = 64 };
    const st_model_kind kinds[3] = {ST_MODEL_LINEAR, ST_MODEL_MLP, ST_MODEL_CNN};
    static uint8_t images[N * 784], labels[N];
    st_rng r;
    st_rng_seed(&r, 11);
    for (int i = 0; i < N * 784; i++)
        images[i] = (uint8_t)(st_rng_next(&r) >> 56);
    for (int i = 0; i < N; i++)
        labels[i] = (uint8_t)(st_rng_next(&r) % 10);
    st_dataset ds = {N, 28, 28, images, labels};
    st_set_threads(1);
    for (int t = 0; t < 3; t++) {
        st_error err = {{0}};
        st_optim_config cfg = st_adam_config(1e-3);
        st_model *a = st_model_create(kinds[t], B, 21, &err), *b = st_model_create(kinds[t], B, 21, &err);
        st_optim *oa = a ? st_optim_create(a, &cfg, &err) : NULL;
        st_optim *ob = b ? st_optim_create(b, &cfg, &err) : NULL;
        CHECKF(oa && ob, "%s", err.msg);
        if (!oa || !ob)
            return;
        CHECK((st_model_input_slot(a) != NULL) == (kinds[t] != ST_MODEL_CNN));
        st_rng sa, sb;
        st_rng_seed(&sa, 5);
        sb = sa;
        st_epoch_result res;
        CHECKF(st_train_epoch(a, oa, &ds, B, &sa, NULL, NULL, &res, &err) == 0, "%s", err.msg);

        uint32_t idx[N];
        for (int i = 0; i < N; i++)
            idx[i] = (uint32_t)i;
        for (int i = N - 1; i > 0; i--) {
            uint32_t j = st_rng_below(&sb, (uint32_t)i + 1), k = idx[i];
            idx[i] = idx[j], idx[j] = k;
        }
        static float x[B * 784];
        uint8_t y[B];
        double sum = 0.0;
        st_model_set_training(b, 1);
        st_model_zero_grad(b);
        for (int lo = 0; lo < N; lo += B) {
            int n = N - lo < B ? N - lo : B;
            float loss = 0.0f;
            st_dataset_batch(&ds, idx + lo, n, x, y);
            CHECK(st_model_forward(b, x, n, NULL, &err) == 0);
            CHECK(st_model_loss(b, y, &loss, &err) == 0);
            CHECK(st_model_backward(b, &err) == 0);
            st_optim_step_zero_grad(ob);
            sum += loss;
        }
        size_t np = st_model_num_params(a);
        CHECKF(memcmp(st_model_params(a), st_model_params(b), np * sizeof(float)) == 0,
               "%s: weights after the epoch differ from its steps'", st_model_kind_name(kinds[t]));
        CHECKF(res.cost == sum / 3 && res.num_batches == 3, "%s: cost %.9g vs %.9g",
               st_model_kind_name(kinds[t]), res.cost, sum / 3);
        CHECK(memcmp(&sa, &sb, sizeof sa) == 0); /* the shuffle drew as much */
        st_optim_free(oa), st_optim_free(ob);
        st_model_free(a), st_model_free(b);
    }
    st_set_threads(0);
}

/* ------------------------------------------------------------------------------ init */

/* PyTorch's default init (Kaiming-uniform with a = sqrt(5) for weights, the same bound for
 * biases): uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)], variance bound^2 / 3. Stride draws from
 * its own generator, so this is checked statistically, with 4-sigma limits: the sample mean has
 * sd bound / sqrt(3n); the sample variance of a uniform has relative sd sqrt(0.8 / n) (kurtosis
 * 1.8), 0.6% for the 401,408 weights of classifier.1. */
static void test_default_init(void)
{
    for (int k = 0; k < 3; k++) {
        st_error err = {{0}};
        st_model *m = st_model_create((st_model_kind)k, 4, 12345, &err);
        CHECKF(m != NULL, "%s", err.msg);
        if (!m) continue;
        double fan_in = 0;
        for (int i = 0; i < st_model_num_tensors(m); i++) {
            const st_tensor *t = st_model_tensor(m, i);
            const float *v = t->data;
            if (t->dtype == ST_I64) {
                CHECK(*(const int64_t *)t->data == 0);
                continue;
            }
            if (ends_with(t->name, "weight") && t->ndim >= 2) {
                fan_in = 1;
                for (int d = 1; d < t->ndim; d++) fan_in *= (double)t->shape[d];
            } else if (ends_with(t->name, "bias") && i > 0 &&
                       st_model_tensor(m, i - 1)->ndim >= 2) {
                /* the bias of the conv / linear weight just before: same fan_in */
            } else {
                /* batch norm: weight 1, bias 0, running_mean 0, running_var 1 */
                float want = ends_with(t->name, "weight") || ends_with(t->name, "running_var");
                size_t bad = 0;
                for (size_t j = 0; j < t->numel; j++) bad += v[j] != want;
                CHECKF(bad == 0, "%s: %zu elements are not %g", t->name, bad, (double)want);
                continue;
            }
            double bound = 1.0 / sqrt(fan_in), n = (double)t->numel, s = 0, ss = 0, mx = 0;
            size_t out = 0;
            for (size_t j = 0; j < t->numel; j++) {
                s += v[j];
                mx = fmax(mx, fabs(v[j]));
                out += !(fabs(v[j]) <= bound * (1 + 1e-6));
            }
            double mean = s / n;
            for (size_t j = 0; j < t->numel; j++) ss += (v[j] - mean) * (v[j] - mean);
            double var = ss / (n - 1), want = bound * bound / 3;
            double z_mean = mean / (bound / sqrt(3 * n)), rel_var = var / want - 1,
                   lim_var = 4 * sqrt(0.8 / n);
            printf("    %-28s n=%-7.0f bound=%.5f max|x|/bound=%.5f mean z=%+.2f "
                   "var/(bound^2/3)-1=%+.4f (limit %.4f)\n",
                   t->name, n, bound, mx / bound, z_mean, rel_var, lim_var);
            CHECKF(out == 0, "%s: %zu values outside +-%g", t->name, out, bound);
            CHECKF(fabs(z_mean) <= 4, "%s: mean %g", t->name, mean);
            CHECKF(fabs(rel_var) <= lim_var, "%s: variance %g, expected %g", t->name, var, want);
            /* the extremes come close to the bound: P(max < bound (1 - 20/n)) ~ e^-20 */
            if (n >= 100) CHECKF(mx >= bound * (1 - 20 / n), "%s: max %g", t->name, mx);
        }
        /* same seed: bit-identical; another seed: different */
        st_model *m2 = st_model_create((st_model_kind)k, 4, 12345, &err);
        st_model *m3 = st_model_create((st_model_kind)k, 4, 12346, &err);
        CHECK(m2 && m3);
        if (m2 && m3) {
            size_t np = st_model_num_params(m), same = 0, bn = 0;
            CHECK(memcmp(st_model_params(m), st_model_params(m2), np * sizeof(float)) == 0);
            const float *p1 = st_model_params(m), *p3 = st_model_params(m3);
            for (size_t j = 0; j < np; j++) same += p1[j] == p3[j];
            /* BN weights (1) and biases (0) are the same whatever the seed; two uniform floats
             * drawn with 24 random bits match with probability 2^-24 */
            for (int i = 0; i < st_model_num_tensors(m); i++) {
                const st_tensor *t = st_model_tensor(m, i);
                char rm[64];
                snprintf(rm, sizeof rm, "%.*s.running_mean", (int)(strrchr(t->name, '.') - t->name),
                         t->name);
                if (t->grad && st_model_find_tensor(m, rm)) bn += t->numel;
            }
            printf("    %s: seed 12345 twice: identical; seed 12346: %zu of %zu values equal "
                   "(%zu batch-norm parameters)\n", kind_file[k], same, np, bn);
            CHECK(same >= bn && same <= bn + 2);
            /* the tensors' data are views of the flat parameter vector */
            const st_tensor *t0 = st_model_tensor(m, 0);
            CHECK(t0->data == (void *)st_model_params(m) && t0->grad == st_model_grads(m));
        }
        st_model_free(m3);
        st_model_free(m2);
        st_model_free(m);
    }
}

int main(void)
{
    RUN(test_state_dict_layout);
    RUN(test_cnn_forward_backward);
    RUN(test_linear_forward_backward);
    RUN(test_mlp_forward_backward);
    RUN(test_adam_cnn);
    RUN(test_adam_linear);
    RUN(test_adam_mlp);
    RUN(test_sgd_mlp);
    RUN(test_dropout_in_model);
    RUN(test_train_epoch_is_its_steps);
    RUN(test_default_init);
    return CHECK_DONE();
}
