/* model.c - the tutorial's three models as sequences of layers.
 *
 * A model is a list of layers built from a small table (see build_cnn, build_linear, build_mlp).
 * Shapes are inferred and checked once, when the model is built. All parameters live in one
 * contiguous buffer (state_dict order), gradients in another of the same layout, so zeroing and
 * the optimiser are one loop each. Every activation, mask and scratch buffer for batches of up to
 * max_batch images is allocated here, once: a training step allocates nothing.
 */
#include "model.h"

#include "conv.h"
#include "gemm.h"
#include "kernels.h"
#include "layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------------ layer specs */

typedef struct layer_spec {
    st_layer_kind kind;
    const char *name; /* module path, "block1.0" */
    int a, b, k, s, p; /* conv: in, out, kernel, stride, pad; linear: in, out; pool: k, s;
                          bn: channels (a) */
    float drop;        /* dropout probability */
} layer_spec;

#define CONV(nm, i, o, kk, pp) {ST_L_CONV, nm, i, o, kk, 1, pp, 0.0f}
#define BN(nm, c) {ST_L_BN, nm, c, 0, 0, 0, 0, 0.0f}
#define RELU(nm) {ST_L_RELU, nm, 0, 0, 0, 0, 0, 0.0f}
#define POOL(nm, kk, ss) {ST_L_MAXPOOL, nm, 0, 0, kk, ss, 0, 0.0f}
#define DROP(nm, pr) {ST_L_DROPOUT, nm, 0, 0, 0, 0, 0, pr}
#define LINEAR(nm, i, o) {ST_L_LINEAR, nm, i, o, 0, 0, 0, 0.0f}
#define FLATTEN(nm) {ST_L_FLATTEN, nm, 0, 0, 0, 0, 0, 0.0f}

static const layer_spec cnn_spec[] = {
    CONV("block1.0", 1, 16, 5, 2), BN("block1.1", 16), RELU("block1.2"), POOL("block1.3", 2, 2),
    CONV("block2.0", 16, 32, 3, 1), BN("block2.1", 32), RELU("block2.2"), POOL("block2.3", 2, 2),
    CONV("block3.0", 32, 64, 3, 1), BN("block3.1", 64), RELU("block3.2"),
    FLATTEN("flatten"),
    DROP("classifier.0", 0.3f), LINEAR("classifier.1", 3136, 128), RELU("classifier.2"),
    DROP("classifier.3", 0.5f), LINEAR("classifier.4", 128, 10),
};

static const layer_spec linear_spec[] = {
    FLATTEN("flatten"),
    LINEAR("linear", 784, 10),
};

static const layer_spec mlp_spec[] = {
    FLATTEN("flatten"),  LINEAR("layers.0", 784, 512), RELU("layers.1"),
    LINEAR("layers.2", 512, 256), RELU("layers.3"),    LINEAR("layers.4", 256, 10),
};

/* ------------------------------------------------------------------------------ names */

static const char *const kind_names[] = {"cnn", "linear", "mlp"};
static const char *const class_names[] = {"ConvNet", "SingleLayerNet", "MultiLayerNet"};

int st_model_kind_parse(const char *name, st_model_kind *kind, st_error *err)
{
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, kind_names[i]) == 0) {
            *kind = (st_model_kind)i;
            return 0;
        }
    return st_seterr(err, "unknown model '%s': expected cnn, linear or mlp", name ? name : "");
}

const char *st_model_kind_name(st_model_kind kind)
{
    return (unsigned)kind < 3 ? kind_names[kind] : "?";
}

const char *st_model_class_name(st_model_kind kind)
{
    return (unsigned)kind < 3 ? class_names[kind] : "?";
}

/* ------------------------------------------------------------------------------ building */

static void *xcalloc(size_t n, size_t size, size_t *total)
{
    if (n == 0)
        n = 1;
    *total += n * size;
    return st_buffer_alloc(n, size);
}

static void describe(st_layer *l)
{
    switch (l->kind) {
    case ST_L_CONV:
        snprintf(l->desc, sizeof l->desc, "Conv2d(%d->%d, %dx%d, stride=%d, padding=%d)",
                 l->conv.ic, l->conv.oc, l->conv.kh, l->conv.kw, l->conv.stride, l->conv.pad);
        break;
    case ST_L_BN:
        snprintf(l->desc, sizeof l->desc, "BatchNorm2d(%d)", l->in_c);
        break;
    case ST_L_RELU:
        snprintf(l->desc, sizeof l->desc, "ReLU");
        break;
    case ST_L_MAXPOOL:
        snprintf(l->desc, sizeof l->desc, "MaxPool2d(%d, stride=%d)", l->pool.k, l->pool.s);
        break;
    case ST_L_DROPOUT:
        snprintf(l->desc, sizeof l->desc, "Dropout(p=%.1f)", (double)l->drop.p);
        break;
    case ST_L_LINEAR:
        snprintf(l->desc, sizeof l->desc, "Linear(%d->%d)", l->lin.in, l->lin.out);
        break;
    case ST_L_FLATTEN:
        snprintf(l->desc, sizeof l->desc, "Flatten");
        break;
    }
}

/* Infers the output shape of layer l from its input shape, checking that the spec fits. */
static int infer_shape(st_layer *l, const layer_spec *sp, st_error *err)
{
    int c = l->in_c, h = l->in_h, w = l->in_w;
    switch (sp->kind) {
    case ST_L_CONV:
        if (sp->a != c)
            return st_seterr(err,
                             "%s: Conv2d expects %d input channels, but its input has shape "
                             "[%d, %d, %d]",
                             sp->name, sp->a, c, h, w);
        l->conv.ic = sp->a;
        l->conv.oc = sp->b;
        l->conv.kh = l->conv.kw = sp->k;
        l->conv.stride = sp->s;
        l->conv.pad = sp->p;
        l->out_c = sp->b;
        l->out_h = st_conv_out_size(h, sp->k, sp->s, sp->p);
        l->out_w = st_conv_out_size(w, sp->k, sp->s, sp->p);
        if (l->out_h < 1 || l->out_w < 1)
            return st_seterr(err, "%s: a %dx%d kernel does not fit input shape [%d, %d, %d]",
                             sp->name, sp->k, sp->k, c, h, w);
        break;
    case ST_L_BN:
        if (sp->a != c)
            return st_seterr(err,
                             "%s: BatchNorm2d expects %d channels, but its input has shape "
                             "[%d, %d, %d]",
                             sp->name, sp->a, c, h, w);
        l->out_c = c, l->out_h = h, l->out_w = w;
        break;
    case ST_L_RELU:
    case ST_L_DROPOUT:
        l->out_c = c, l->out_h = h, l->out_w = w;
        l->drop.p = sp->drop;
        break;
    case ST_L_MAXPOOL:
        if (h < sp->k || w < sp->k)
            return st_seterr(err, "%s: MaxPool2d(%d) does not fit input shape [%d, %d, %d]",
                             sp->name, sp->k, c, h, w);
        l->pool.k = sp->k;
        l->pool.s = sp->s;
        l->out_c = c;
        l->out_h = (h - sp->k) / sp->s + 1;
        l->out_w = (w - sp->k) / sp->s + 1;
        break;
    case ST_L_FLATTEN:
        l->out_c = c * h * w, l->out_h = 1, l->out_w = 1;
        break;
    case ST_L_LINEAR:
        if (h != 1 || w != 1 || sp->a != c)
            return st_seterr(err,
                             "%s: Linear expects %d input features, but its input has shape "
                             "[%d, %d, %d] (%d features)",
                             sp->name, sp->a, c, h, w, c * h * w);
        l->lin.in = sp->a;
        l->lin.out = sp->b;
        l->out_c = sp->b, l->out_h = 1, l->out_w = 1;
        break;
    }
    return 0;
}

static size_t layer_num_params(const st_layer *l)
{
    switch (l->kind) {
    case ST_L_CONV:
        return (size_t)l->conv.oc * l->conv.ic * l->conv.kh * l->conv.kw + (size_t)l->conv.oc;
    case ST_L_BN:
        return 2 * (size_t)l->in_c;
    case ST_L_LINEAR:
        return (size_t)l->lin.out * l->lin.in + (size_t)l->lin.out;
    default:
        return 0;
    }
}

static void add_tensor(st_model *m, const st_layer *l, const char *suffix, st_dtype dtype,
                       int ndim, const int64_t *shape, void *data, float *grad)
{
    st_tensor *t = &m->tensors[m->ntensors++];
    snprintf(t->name, sizeof t->name, "%s.%s", l->name, suffix);
    t->dtype = dtype;
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= (size_t)shape[i];
    }
    t->data = data;
    t->grad = grad;
}

/* Layers whose input gradient overwrites their output gradient (element-wise, or batch norm, which
 * reads all of it before writing). A max pool whose backward the batch norm before it does (fast
 * path) leaves its output gradient where it is, for that batch norm: as if computed in place. */
static int backward_in_place(const st_layer *l, int reference)
{
    return l->kind == ST_L_RELU || l->kind == ST_L_DROPOUT || l->kind == ST_L_FLATTEN ||
           l->kind == ST_L_BN || (l->bn_before && !reference);
}

static st_model *build(st_model_kind kind, const layer_spec *spec, int nspec, int max_batch,
                       uint64_t seed, st_error *err)
{
    if (max_batch < 1 || max_batch > 65536) {
        st_seterr(err, "batch size %d is out of range: expected 1 to 65536", max_batch);
        return NULL;
    }
    st_model *m = calloc(1, sizeof *m);
    if (!m) {
        st_seterr(err, "out of memory building the %s model", kind_names[kind]);
        return NULL;
    }
    m->kind = kind;
    m->max_batch = max_batch;
    m->training = 1;
    m->dropout_enabled = 1;
    m->nlayers = nspec;
    m->layers = calloc((size_t)nspec, sizeof *m->layers);
    if (!m->layers)
        goto oom;

    /* 1. shapes, checked once */
    int c = 1, h = 28, w = 28;
    for (int i = 0; i < nspec; i++) {
        st_layer *l = &m->layers[i];
        l->kind = spec[i].kind;
        snprintf(l->name, sizeof l->name, "%s", spec[i].name);
        snprintf(l->block, sizeof l->block, "%.*s", (int)strcspn(spec[i].name, "."),
                 spec[i].name);
        l->in_c = c, l->in_h = h, l->in_w = w;
        if (infer_shape(l, &spec[i], err) != 0) {
            st_model_free(m);
            return NULL;
        }
        describe(l);
        c = l->out_c, h = l->out_h, w = l->out_w;
        l->in_size = (size_t)l->in_c * l->in_h * l->in_w;
        l->out_size = (size_t)c * h * w;
        m->num_params += layer_num_params(l);
        if (l->kind == ST_L_BN)
            m->num_buffers += 2 * (size_t)l->in_c;
    }
    if (c != ST_NUM_CLASSES || h != 1 || w != 1) {
        st_seterr(err, "%s: the model ends with shape [%d, %d, %d], expected [%d]",
                  m->layers[nspec - 1].name, c, h, w, ST_NUM_CLASSES);
        st_model_free(m);
        return NULL;
    }

    /* 2. memory: parameters, gradients, buffers, activations */
    size_t B = (size_t)max_batch, total = 0;
    m->params = xcalloc(m->num_params, sizeof(float), &total);
    m->grads = xcalloc(m->num_params, sizeof(float), &total);
    m->buffers = xcalloc(m->num_buffers, sizeof(float), &total);
    m->tensors = xcalloc((size_t)nspec * 5, sizeof(st_tensor), &total);
    /* Nothing needs the gradient with respect to the input of the first layer with parameters
     * (before it there are only parameter-free layers such as Flatten): backward stops there. */
    int first = 0;
    while (first < nspec - 1 && layer_num_params(&m->layers[first]) == 0)
        first++;
    m->first_trainable = first;
    m->labels = xcalloc(B, 1, &total);
    if (!m->params || !m->grads || !m->buffers || !m->tensors || !m->labels)
        goto oom;

    st_rng_seed(&m->rng, seed);
    st_rng init_rng;
    st_rng_seed(&init_rng, seed);
    float *p = m->params, *g = m->grads, *buf = m->buffers;
    for (int i = 0; i < nspec; i++) {
        st_layer *l = &m->layers[i];
        /* ReLU runs in place: no layer's backward pass needs its own output except ReLU's, so
         * the previous layer's buffer can hold the ReLU's output. A flattened view shares its
         * input's buffer. This saves a quarter of the activation memory. */
        if (i > 0 && (l->kind == ST_L_RELU || l->kind == ST_L_FLATTEN)) {
            l->out = m->layers[i - 1].out;
            l->shares_out = 1;
        } else {
            l->out = xcalloc(B * l->out_size, sizeof(float), &total);
        }
        if (!l->out)
            goto oom;
        switch (l->kind) {
        case ST_L_CONV: {
            size_t nw = (size_t)l->conv.oc * l->conv.ic * l->conv.kh * l->conv.kw;
            l->w = p, l->dw = g, p += nw, g += nw;
            l->b = p, l->db = g, p += l->conv.oc, g += l->conv.oc;
            float bound = 1.0f / sqrtf((float)(l->conv.ic * l->conv.kh * l->conv.kw));
            init_uniform(l->w, nw, bound, &init_rng);
            init_uniform(l->b, (size_t)l->conv.oc, bound, &init_rng);
            int64_t ws[4] = {l->conv.oc, l->conv.ic, l->conv.kh, l->conv.kw}, bs[1] = {l->conv.oc};
            add_tensor(m, l, "weight", ST_F32, 4, ws, l->w, l->dw);
            add_tensor(m, l, "bias", ST_F32, 1, bs, l->b, l->db);
            size_t col = (size_t)l->conv.ic * l->conv.kh * l->conv.kw * l->out_h * l->out_w;
            if (col > m->max_col)
                m->max_col = col;
            break;
        }
        case ST_L_BN: {
            int C = l->in_c;
            l->w = p, l->dw = g, p += C, g += C;
            l->b = p, l->db = g, p += C, g += C;
            for (int k = 0; k < C; k++)
                l->w[k] = 1.0f; /* gamma = 1, beta = 0 */
            l->running_mean = buf, buf += C;
            l->running_var = buf, buf += C;
            for (int k = 0; k < C; k++)
                l->running_var[k] = 1.0f;
            l->save_mean = xcalloc((size_t)C, sizeof(float), &total);
            l->save_invstd = xcalloc((size_t)C, sizeof(float), &total);
            if (!l->save_mean || !l->save_invstd)
                goto oom;
            int64_t cs[1] = {C};
            add_tensor(m, l, "weight", ST_F32, 1, cs, l->w, l->dw);
            add_tensor(m, l, "bias", ST_F32, 1, cs, l->b, l->db);
            add_tensor(m, l, "running_mean", ST_F32, 1, cs, l->running_mean, NULL);
            add_tensor(m, l, "running_var", ST_F32, 1, cs, l->running_var, NULL);
            add_tensor(m, l, "num_batches_tracked", ST_I64, 0, cs, &l->num_batches_tracked, NULL);
            break;
        }
        case ST_L_LINEAR: {
            size_t nw = (size_t)l->lin.out * l->lin.in;
            l->w = p, l->dw = g, p += nw, g += nw;
            l->b = p, l->db = g, p += l->lin.out, g += l->lin.out;
            float bound = 1.0f / sqrtf((float)l->lin.in);
            init_uniform(l->w, nw, bound, &init_rng);
            init_uniform(l->b, (size_t)l->lin.out, bound, &init_rng);
            int64_t ws[2] = {l->lin.out, l->lin.in}, bs[1] = {l->lin.out};
            add_tensor(m, l, "weight", ST_F32, 2, ws, l->w, l->dw);
            add_tensor(m, l, "bias", ST_F32, 1, bs, l->b, l->db);
            break;
        }
        case ST_L_MAXPOOL:
            l->argmax = xcalloc(B * l->out_size, sizeof(int32_t), &total);
            if (!l->argmax)
                goto oom;
            break;
        case ST_L_DROPOUT:
            l->mask = xcalloc(B * l->out_size, sizeof(float), &total);
            if (!l->mask)
                goto oom;
            break;
        default:
            break;
        }
    }
    /* fusions of the fast path: a conv computes its batch norm's statistics as it writes its
     * output; a batch norm applies the in-place ReLU after it */
    for (int i = 1; i < nspec; i++) {
        st_layer *l = &m->layers[i], *prev = &m->layers[i - 1];
        if (l->kind == ST_L_BN && prev->kind == ST_L_CONV) {
            prev->conv_stats = xcalloc(2 * (size_t)prev->conv.oc, sizeof(double), &total);
            prev->bn_affine = xcalloc(2 * (size_t)prev->conv.oc, sizeof(float), &total);
            l->dx_coef = xcalloc(3 * (size_t)l->in_c, sizeof(float), &total);
            if (!prev->conv_stats || !prev->bn_affine || !l->dx_coef)
                goto oom;
            l->stats_src = prev;
            prev->bn_next = l;
        }
        if (l->kind == ST_L_RELU && prev->kind == ST_L_BN && l->out == prev->out) {
            prev->relu_fused = 1;
            l->fused = 1;
        }
        /* conv, batch norm, ReLU, 2x2 max pool: in training the pool applies the batch norm and
         * ReLU as it reads the conv's output, and the batch norm does the pool's backward from
         * the pool's output gradient and argmax (no full-size tensor in between, either way) */
        if (i >= 2 && l->kind == ST_L_MAXPOOL && l->pool.k == 2 && l->pool.s == 2 && prev->fused &&
            m->layers[i - 2].stats_src) {
            m->layers[i - 2].pool_after = l;
            l->bn_before = &m->layers[i - 2];
            l->xmax = xcalloc(B * l->out_size, sizeof(float), &total);
            if (!l->xmax)
                goto oom;
        }
    }
    /* The backward pass alternates between two gradient buffers, except through the layers whose
     * gradient is computed in place (see backward_in_place); size each buffer for what it holds,
     * with the fast kernels' fusions and without (reference kernels). */
    size_t need[2] = {ST_NUM_CLASSES, 0};
    for (int reference = 0; reference < 2; reference++) {
        int cur = 0;
        for (int i = nspec - 1; i > first; i--) {
            int t = backward_in_place(&m->layers[i], reference) ? cur : cur ^ 1;
            if (m->layers[i].in_size > need[t])
                need[t] = m->layers[i].in_size;
            cur = t;
        }
    }
    m->dbuf[0] = xcalloc(B * need[0], sizeof(float), &total);
    m->dbuf[1] = xcalloc(B * (need[1] ? need[1] : 1), sizeof(float), &total);
    if (!m->dbuf[0] || !m->dbuf[1])
        goto oom;
    m->bytes = total; /* st_kernels_init adds its workspaces */
    if (st_kernels_init(m, err) != 0) {
        st_model_free(m);
        return NULL;
    }
    return m;
oom:
    st_seterr(err, "out of memory building the %s model for batches of %d", kind_names[kind],
              max_batch);
    st_model_free(m);
    return NULL;
}

st_model *st_model_create(st_model_kind kind, int max_batch, uint64_t seed, st_error *err)
{
    switch (kind) {
    case ST_MODEL_CNN:
        return build(kind, cnn_spec, (int)(sizeof cnn_spec / sizeof *cnn_spec), max_batch, seed,
                     err);
    case ST_MODEL_LINEAR:
        return build(kind, linear_spec, (int)(sizeof linear_spec / sizeof *linear_spec),
                     max_batch, seed, err);
    case ST_MODEL_MLP:
        return build(kind, mlp_spec, (int)(sizeof mlp_spec / sizeof *mlp_spec), max_batch, seed,
                     err);
    }
    st_seterr(err, "unknown model kind %d: expected cnn, linear or mlp", (int)kind);
    return NULL;
}

void st_model_free(st_model *m)
{
    if (!m)
        return;
    for (int i = 0; m->layers && i < m->nlayers; i++) {
        st_layer *l = &m->layers[i];
        if (!l->shares_out)
            st_buffer_free(l->out);
        st_buffer_free(l->save_mean);
        st_buffer_free(l->save_invstd);
        st_buffer_free(l->argmax);
        st_buffer_free(l->xmax);
        st_buffer_free(l->mask);
        st_buffer_free(l->conv_stats);
        st_buffer_free(l->bn_affine);
        st_buffer_free(l->dx_coef);
    }
    st_kernels_free(m);
    free(m->layers);
    st_buffer_free(m->params);
    st_buffer_free(m->grads);
    st_buffer_free(m->buffers);
    st_buffer_free(m->tensors);
    st_buffer_free(m->dbuf[0]);
    st_buffer_free(m->dbuf[1]);
    st_buffer_free(m->labels);
    free(m);
}

/* ------------------------------------------------------------------------------ accessors */

st_model_kind st_model_get_kind(const st_model *m) { return m->kind; }
int st_model_max_batch(const st_model *m) { return m->max_batch; }
size_t st_model_num_params(const st_model *m) { return m->num_params; }
void st_model_set_training(st_model *m, int training) { m->training = training != 0; }
int st_model_is_training(const st_model *m) { return m->training; }
void st_model_set_dropout(st_model *m, int enabled) { m->dropout_enabled = enabled != 0; }
st_rng *st_model_rng(st_model *m) { return &m->rng; }
float *st_model_params(st_model *m) { return m->params; }
float *st_model_grads(st_model *m) { return m->grads; }
int st_model_num_layers(const st_model *m) { return m->nlayers; }
int st_model_num_tensors(const st_model *m) { return m->ntensors; }

float *st_model_input_slot(st_model *m)
{
    return m->nlayers > 0 && m->layers[0].kind == ST_L_FLATTEN ? m->layers[0].out : NULL;
}

void st_model_layer_info(const st_model *m, int i, st_layer_info *info)
{
    const st_layer *l = &m->layers[i];
    info->name = l->name;
    info->block = l->block;
    snprintf(info->desc, sizeof info->desc, "%s", l->desc);
    info->in_c = l->in_c, info->in_h = l->in_h, info->in_w = l->in_w;
    info->out_c = l->out_c, info->out_h = l->out_h, info->out_w = l->out_w;
    info->num_params = layer_num_params(l);
    /* the layout the last forward left (whatever the mode is now): of the chain's layers, the
     * convs writing channels-last and the pools keep their output */
    int kept = l->kind == ST_L_MAXPOOL || (l->kind == ST_L_CONV && (l->nhwc & ST_CONV_NHWC_OUT));
    info->channels_last = m->nhwc && l->nhwc && kept;
}

const float *st_model_layer_output(const st_model *m, int i)
{
    return m->layers[i].out;
}

const st_tensor *st_model_tensor(const st_model *m, int i)
{
    return (i >= 0 && i < m->ntensors) ? &m->tensors[i] : NULL;
}

const st_tensor *st_model_find_tensor(const st_model *m, const char *name)
{
    for (int i = 0; i < m->ntensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0)
            return &m->tensors[i];
    return NULL;
}

void st_model_zero_grad(st_model *m)
{
    memset(m->grads, 0, m->num_params * sizeof(float));
}

/* ------------------------------------------------------------------------------ passes */

/* Evaluation of a large batch, chunk by chunk: in evaluation mode every image is independent, so
 * the batch runs through the whole network ST_EVAL_CHUNK images at a time, every chunk reusing
 * the start of the layers' buffers (a working set that stays in cache, instead of streaming
 * max_batch images' activations through memory at every layer); only the logits are kept for
 * all images. The arithmetic per image is unchanged. */
static void forward_eval_chunked(st_model *m, const float *x, int n)
{
    st_layer *last = &m->layers[m->nlayers - 1];
    for (int lo = 0; lo < n; lo += ST_EVAL_CHUNK) {
        int cn = n - lo < ST_EVAL_CHUNK ? n - lo : ST_EVAL_CHUNK;
        const float *in = x + (size_t)lo * m->layers[0].in_size;
        for (int i = 0; i < m->nlayers; i++) {
            st_layer view = m->layers[i];
            if (i == m->nlayers - 1)
                view.out = last->out + (size_t)lo * last->out_size;
            st_layer_forward(m, &view, in, cn);
            in = view.out;
        }
    }
}

/* The layers one after the other, each reading the last one's output. */
static void forward_layers(st_model *m, const float *x, int n)
{
    for (int i = 0; i < m->nlayers; i++) {
        st_layer_forward(m, &m->layers[i], x, n);
        x = m->layers[i].out;
    }
}

/* One image, alone or by a team (kernels.c): the same result to the bit, but which is faster
 * depends on the machine and on what else runs on it (two threads that share a core through
 * SMT or a hypervisor gain nothing and lose the hand-overs). So both are timed as they run, and
 * the faster lately serves: its time per image is a moving average over about 8 images (an
 * image that took more than twice the average counts as twice: a moment's delay); the
 * other is tried now and then, TRIAL images in a row of which the first WARM are not counted
 * (caches, and OpenMP's threads, asleep after a while without work, take some waking). While
 * the team is faster, alone is tried every SOLO_EVERY images. While alone is faster, the team is
 * tried again after TEAM_EVERY_MIN_US, a wait that doubles each time it loses again, up to
 * TEAM_EVERY_MAX_US: a trial decided by a moment when the other core was busy (the first one
 * comes before OpenMP's threads have even started) is soon tried again, but a team that keeps
 * losing is tried rarely: after a parallel region OpenMP's threads spin for some milliseconds,
 * taking from a core they share the time that running alone needs. */
#define TRIAL 8
#define WARM 2
#define SOLO_EVERY 256
#define TEAM_EVERY_MIN_US 2000.0
#define TEAM_EVERY_MAX_US 200000.0

int st_b1_choose(st_b1_timer *b, double now)
{
    int faster = b->us[1] < b->us[0]; /* (the team, once both are measured) */
    if (!b->trial_left) {
        int want = -1;
        if (b->us[1] == 0.0)
            want = 1;
        else if (b->us[0] == 0.0)
            want = 0;
        else if (faster ? ++b->since_trial % SOLO_EVERY == 0 : now >= b->team_trial_at)
            want = !faster;
        if (want >= 0)
            b->trial = want, b->trial_left = TRIAL, b->trial_sum = 0.0;
    }
    return b->trial_left ? b->trial : faster;
}

void st_b1_record(st_b1_timer *b, int use_team, double us, double end)
{
    b->runs[use_team]++;
    if (!b->trial_left) { /* (one image delayed by something else counts as 2 at most) */
        double *avg = &b->us[use_team];
        *avg += ((us < 2 * *avg ? us : 2 * *avg) - *avg) / 8;
        return;
    }
    if (TRIAL - b->trial_left >= WARM)
        b->trial_sum += us;
    if (--b->trial_left == 0) {
        b->us[b->trial] = b->trial_sum / (TRIAL - WARM);
        if (b->trial && b->us[0] > 0.0) { /* (a team trial that both times can judge) */
            if (b->us[1] < b->us[0] || b->team_every == 0.0)
                b->team_every = TEAM_EVERY_MIN_US;
            else if ((b->team_every *= 2) > TEAM_EVERY_MAX_US)
                b->team_every = TEAM_EVERY_MAX_US;
            b->team_trial_at = end + b->team_every;
        }
    }
}

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

static void forward_one(st_model *m, const float *x, int team)
{
    st_b1_timer *b = &m->b1;
    if (team != b->size) /* (the threads changed: measure again) */
        *b = (st_b1_timer){.size = team};
    double t0 = now_us();
    int use_team = st_b1_choose(b, t0);
    if (use_team)
        st_forward_team(m, x, team);
    else
        forward_layers(m, x, 1);
    double t1 = now_us();
    st_b1_record(b, use_team, t1 - t0, t1);
}

int st_model_forward(st_model *m, const float *x, int n, const float **logits, st_error *err)
{
    if (n < 1 || n > m->max_batch)
        return st_seterr(err, "forward: batch of %d images, expected 1 to %d", n, m->max_batch);
    m->input = x;
    m->batch = n;
    m->have_loss = 0;
    int team = st_team_size(m, n);
    int cap = st_threads_cap(n < ST_SMALL_BATCH ? 1 : 0);
    m->nhwc = st_kernels_nhwc(m, n);
    if (team > 1) {
        forward_one(m, x, team);
    } else if (!m->training && !m->reference && n > ST_EVAL_CHUNK) {
        forward_eval_chunked(m, x, n);
    } else {
        forward_layers(m, x, n);
    }
    st_threads_cap(cap);
    if (logits)
        *logits = m->layers[m->nlayers - 1].out;
    return 0;
}

int st_model_loss(st_model *m, const uint8_t *labels, float *loss, st_error *err)
{
    if (m->batch < 1)
        return st_seterr(err, "loss: no forward pass to compute a loss for");
    for (int i = 0; i < m->batch; i++)
        if (labels[i] >= ST_NUM_CLASSES)
            return st_seterr(err, "loss: label %d of image %d is out of range: expected 0 to %d",
                             labels[i], i, ST_NUM_CLASSES - 1);
    memcpy(m->labels, labels, (size_t)m->batch);
    const st_layer *last = &m->layers[m->nlayers - 1];
    *loss = st_cross_entropy(m->dbuf[0], last->out, labels, m->batch, ST_NUM_CLASSES);
    m->have_loss = 1;
    return 0;
}

int st_model_backward(st_model *m, st_error *err)
{
    if (!m->have_loss)
        return st_seterr(err, "backward: call st_model_forward and st_model_loss first");
    if (!m->training)
        return st_seterr(err, "backward: the model is in evaluation mode");
    int cap = st_threads_cap(m->batch < ST_SMALL_BATCH ? 1 : 0);
    int first = m->first_trainable;
    int cur = 0; /* dbuf[cur] holds the gradient of the current layer's output */
    for (int i = m->nlayers - 1; i >= first; i--) {
        st_layer *l = &m->layers[i];
        const float *in = i > 0 ? m->layers[i - 1].out : m->input;
        int t = backward_in_place(l, m->reference) ? cur : cur ^ 1;
        float *dinp = i > first ? m->dbuf[t] : NULL;
        st_layer_backward(m, l, in, m->dbuf[cur], dinp, m->batch);
        cur = t;
    }
    st_threads_cap(cap);
    m->have_loss = 0;
    return 0;
}
