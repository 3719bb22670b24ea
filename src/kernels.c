/* kernels.c - runs each layer's forward and backward pass with the fast kernels.
 *
 * Convolutions and linear layers go through GEMM (conv.c, gemm.c); the element-wise layers are
 * threaded over channels or planes. Every reduction has a fixed order that does not depend on the
 * number of threads, so training is bit-identical whatever --threads is. With m->reference set,
 * the plain kernels of layers.c run instead (tests compare the two).
 *
 * Fusions (set up in model.c, fast path only), each saving a pass over an activation:
 *   - a conv feeding a batch norm computes the sum and sum of squares of each output channel
 *     (in double) while it writes its output, so the batch norm's training forward is one pass;
 *   - a batch norm followed by an in-place ReLU applies it in the same pass, and its mask inside
 *     its own backward pass, recomputed from its input (the ReLU layer then does nothing);
 *   - conv, batch norm, ReLU, 2x2 max pool, training: the pool applies the batch norm and ReLU as
 *     it reads the conv's output, saving the conv's output at each maximum; backward, the batch
 *     norm reads the pool's output gradient and those saved values directly, and the conv
 *     computes the batch norm's input gradient as it gathers its own output gradient (no
 *     full-size activation or gradient in between);
 *   - a batch norm after a conv without a pool: the conv computes its input gradient the same way;
 *   - evaluation: the conv applies its batch norm (and ReLU) as a per-channel scale and shift as
 *     it writes its output (conv.c), and large batches run ST_EVAL_CHUNK images at a time through
 *     the whole network (model.c), so activations stay in cache;
 *   - evaluation of one image: a team of threads through the whole network (st_forward_team). */
#include "kernels.h"

#include "conv.h"
#include "gemm.h"
#include "layers.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* The layout of layer l's tensors in this pass: its channels-last flags (nhwc) where the last
 * forward ran the model's NHWC chain (model.c), else 0 (NCHW). */
static int layer_nhwc(const st_model *m, const st_layer *l)
{
    return m->nhwc && m->training && !m->reference ? l->nhwc : 0;
}

static st_conv_shape conv_shape(const st_layer *l)
{
    st_conv_shape s = {l->in_c, l->in_h, l->in_w, l->conv.oc, l->conv.kh, l->conv.kw,
                       l->conv.stride, l->conv.pad, l->out_h, l->out_w, 0};
    return s;
}

/* The NHWC chain: in training, a conv whose batch norm, ReLU and 2x2 max pool are fused
 * (pool_after) writes its output channels-last where the layer after the pool is a conv that
 * reads its input channels-last; the pool then reads and writes channels-last, the batch norm's
 * backward reads the pool's tensors so, and the conv after the pool writes its input gradient
 * so. The Winograd and one-channel paths compute channels-last (conv.c), so the transposes to
 * and from NCHW between them go. Set on the layers once; a forward runs the chain where every
 * conv in it can at its batch size (st_kernels_nhwc). */
static void nhwc_chain(st_model *m)
{
    for (int i = 0; i + 1 < m->nlayers; i++) {
        st_layer *p = &m->layers[i], *b = &m->layers[i + 1];
        if (p->kind != ST_L_MAXPOOL || !p->bn_before || b->kind != ST_L_CONV)
            continue;
        st_layer *a = p->bn_before->stats_src;
        st_conv_shape sa = conv_shape(a), sb = conv_shape(b);
        sa.layout = a->nhwc | ST_CONV_NHWC_OUT, sb.layout = b->nhwc | ST_CONV_NHWC_IN;
        int n = m->max_batch > ST_CONV_WINOGRAD_MIN_BATCH ? m->max_batch
                                                           : ST_CONV_WINOGRAD_MIN_BATCH;
        if (!st_conv_nhwc_fits(&sa, n, sa.layout) || !st_conv_nhwc_fits(&sb, n, sb.layout))
            continue;
        a->nhwc = sa.layout, b->nhwc = sb.layout;
        p->nhwc = p->bn_before->nhwc = 1;
    }
}

int st_kernels_nhwc(const st_model *m, int n)
{
    int any = 0;
    if (!m->training || m->reference || m->nhwc_off)
        return 0;
    for (int i = 0; i < m->nlayers; i++) {
        const st_layer *l = &m->layers[i];
        if (l->kind != ST_L_CONV || !l->nhwc)
            continue;
        st_conv_shape s = conv_shape(l);
        if (!st_conv_nhwc_fits(&s, n, l->nhwc))
            return 0;
        any = 1;
    }
    return any;
}

int st_kernels_init(st_model *m, st_error *err)
{
    nhwc_chain(m);
    int nt = omp_get_num_procs();
    if (st_get_threads() > nt)
        nt = st_get_threads();
    size_t need = 0;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].kind == ST_L_CONV) {
            st_conv_shape s = conv_shape(&m->layers[i]);
            size_t n = st_conv_ws_floats(&s, m->max_batch, nt);
            if (n > need)
                need = n;
        }
    m->ws_threads = nt;
    if (need) {
        m->ws = st_buffer_alloc(need, sizeof(float));
        if (!m->ws)
            return st_seterr(err, "out of memory: %zu MB of convolution workspace",
                             need * sizeof(float) >> 20);
        m->bytes += need * sizeof(float);
    }
    for (int i = 0; i < m->nlayers; i++) {
        st_layer *l = &m->layers[i];
        if (l->kind != ST_L_CONV)
            continue;
        st_conv_shape s = conv_shape(l);
        size_t n = st_conv_wcache_floats(&s);
        if (!n)
            continue;
        l->wcache = calloc(n, sizeof(float));
        if (!l->wcache) {
            st_kernels_free(m);
            return st_seterr(err, "out of memory: %zu KB of convolution weight cache",
                             n * sizeof(float) >> 10);
        }
        m->bytes += n * sizeof(float);
    }
    return 0;
}

void st_kernels_free(st_model *m)
{
    st_buffer_free(m->ws);
    m->ws = NULL;
    for (int i = 0; i < m->nlayers; i++) {
        free(m->layers[i].wcache);
        m->layers[i].wcache = NULL;
    }
}

void st_model_use_nhwc(st_model *m, int on)
{
    m->nhwc_off = !on;
}

void st_model_use_reference(st_model *m, int on)
{
    m->reference = on != 0;
}

static int nthreads(void)
{
    return st_get_threads();
}

/* ------------------------------------------------------------------------------ batch norm */

static void chan_sq(double *restrict acc, const float *restrict x, double mean, int HW)
{
    int k = 0;
    for (; k + 8 <= HW; k += 8)
        for (int j = 0; j < 8; j++) {
            double d = x[k + j] - mean;
            acc[j] += d * d;
        }
    for (; k < HW; k++) {
        double d = x[k] - mean;
        acc[k & 7] += d * d;
    }
}

/* y = (x - mean) * invstd * g + b, then the fused ReLU if relu. */
ST_VEC_CLONES static void chan_affine(float *restrict y, const float *restrict x, float mean,
                                      float invstd, float g, float b, int HW, int relu)
{
    if (!relu) {
        for (int k = 0; k < HW; k++)
            y[k] = st_bn_out(x[k], mean, invstd, g, b);
        return;
    }
    for (int k = 0; k < HW; k++)
        y[k] = st_relu(st_bn_out(x[k], mean, invstd, g, b));
}

/* 4 doubles / 4 floats as GCC vector types: the lane sums below are written with them so that
 * they vectorise (the compiler does not turn the float-to-double lane loops into vector code). */
typedef double v4d __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

/* The per-channel constants of a batch norm's backward pass. */
typedef struct bn_chan {
    float mean, invstd, g, b; /* saved statistics, weight and bias */
    int relu;                 /* a fused ReLU follows: its mask is recomputed from x */
} bn_chan;

/* The batch norm's output for four values: st_bn_out's operations, lane by lane. */
static inline v4f bn_out4(v4f x, const bn_chan *q)
{
    v4f mean = {q->mean, q->mean, q->mean, q->mean};
    v4f inv = {q->invstd, q->invstd, q->invstd, q->invstd};
    v4f g = {q->g, q->g, q->g, q->g}, b = {q->b, q->b, q->b, q->b};
    return (x - mean) * inv * g + b;
}

/* The batch norm's output and ReLU for one value, as chan_affine computes them. */
static inline float bn_relu(float x, const bn_chan *q)
{
    return st_relu(st_bn_out(x, q->mean, q->invstd, q->g, q->b));
}

/* Sum of dy and of dy * xhat over one plane, into 8 lanes (lane j takes elements k = j mod 8),
 * with xhat = (double)(x - mean) * invstd. With a fused ReLU, dy is first masked by it: dy where
 * the batch norm's output st_bn_out(x) is > 0, else 0 (recomputed: one array fewer to read). */
ST_VEC_CLONES static void chan_dsums(double *restrict a1, double *restrict a2,
                                     const float *restrict x, const float *restrict dy,
                                     bn_chan q, int HW)
{
    v4d s1[2], s2[2];
    memcpy(s1, a1, sizeof s1);
    memcpy(s2, a2, sizeof s2);
    v4f vmean = {q.mean, q.mean, q.mean, q.mean};
    int k = 0;
    for (; k + 8 <= HW; k += 8)
        for (int h = 0; h < 2; h++) {
            v4f xf, df;
            memcpy(&xf, x + k + 4 * h, sizeof xf);
            memcpy(&df, dy + k + 4 * h, sizeof df);
            if (q.relu) {
                v4f o = bn_out4(xf, &q);
                df = (v4f)((__typeof__(o > o))df & (o > 0.0f));
            }
            v4f xc = xf - vmean;
            v4d xhat = (v4d)ST_WIDEN4(xc) * (double)q.invstd, d = ST_WIDEN4(df);
            s1[h] += d;
            s2[h] += d * xhat;
        }
    memcpy(a1, s1, sizeof s1);
    memcpy(a2, s2, sizeof s2);
    for (; k < HW; k++) {
        double xhat = (double)(x[k] - q.mean) * q.invstd;
        float d = q.relu ? st_relu_mask(dy[k], st_bn_out(x[k], q.mean, q.invstd, q.g, q.b)) : dy[k];
        a1[k & 7] += d;
        a2[k & 7] += d * xhat;
    }
}

/* Batch norm's input gradient of one plane, in place (d holds dy, then dx):
 *     dx = (dy - mean(dy) - xhat * mean(dy * xhat)) * invstd * gamma;
 * with a fused ReLU, dy is first masked by it (as in chan_dsums). */
ST_VEC_CLONES static void chan_dx(float *restrict d, const float *restrict x, bn_chan q,
                                  float mdy, float mdyx, float scale, int HW)
{
    if (!q.relu) {
        for (int k = 0; k < HW; k++)
            d[k] = st_bn_dx(d[k], x[k], q.mean, q.invstd, mdy, mdyx, scale);
        return;
    }
    for (int k = 0; k < HW; k++) {
        float dy = st_relu_mask(d[k], st_bn_out(x[k], q.mean, q.invstd, q.g, q.b));
        d[k] = st_bn_dx(dy, x[k], q.mean, q.invstd, mdy, mdyx, scale);
    }
}

/* chan_sq's and st_add_lanes8's sums over plane c of a channels-last image (HW pixels x C
 * channels at img): the same lanes, the same order. */
static void chan_sums_nhwc(double *restrict acc, const float *restrict img, int C, int c, int HW,
                           int square, double mean)
{
    for (int k = 0; k < HW; k++) {
        if (square) {
            double d = img[(size_t)k * C + c] - mean;
            acc[k & 7] += d * d;
        } else
            acc[k & 7] += img[(size_t)k * C + c];
    }
}

/* Part `part` of `parts` of bn_train_forward: contiguous ranges of channels (static): a
 * channel's planes are as small as 49 floats, and neighbouring channels on different threads
 * would write the same cache lines (2x slower); each thread its range's statistics, then their
 * output image by image (each image's planes of the range one after the other, not one stream
 * per plane). */
static void bn_train_forward_part(st_layer *l, const float *in, int n, int nhwc, int part,
                                  int parts)
{
    int C = l->in_c, HW = l->in_h * l->in_w;
    size_t M = (size_t)n * HW;
    /* in the fast path the conv before computed the sum and the sum of squares (in double) as it
     * wrote this input, in this same forward pass */
    const double *st = l->stats_src ? l->stats_src->conv_stats : NULL;
    int lo, hi;
    st_part_range(C, part, parts, &lo, &hi);
    for (int c = lo; c < hi; c++) {
        double mean = 0.0, ss = 0.0;
        int two_pass = !st;
        if (st) {
            mean = st[2 * c] / (double)M;
            ss = st[2 * c + 1] - st[2 * c] * mean; /* sum (x - mean)^2 */
            /* this cancels when the variance is tiny next to the squared mean (relative
             * error about 1e-16 * sum x^2 / ss): then make the two exact passes instead */
            two_pass = !(ss > 1e-6 * st[2 * c + 1]);
        }
        if (two_pass) {
            double acc[8] = {0};
            for (int i = 0; i < n; i++)
                if (nhwc)
                    chan_sums_nhwc(acc, in + (size_t)i * C * HW, C, c, HW, 0, 0.0);
                else
                    st_add_lanes8(acc, in + ((size_t)i * C + c) * HW, HW);
            mean = st_sum8(acc) / (double)M;
            double acc2[8] = {0};
            for (int i = 0; i < n; i++)
                if (nhwc)
                    chan_sums_nhwc(acc2, in + (size_t)i * C * HW, C, c, HW, 1, mean);
                else
                    chan_sq(acc2, in + ((size_t)i * C + c) * HW, mean, HW);
            ss = st_sum8(acc2);
        }
        double var = ss / (double)M;
        l->save_mean[c] = (float)mean;
        l->save_invstd[c] = (float)(1.0 / sqrt(var + ST_BN_EPS));
        double unbiased = M > 1 ? ss / (double)(M - 1) : var;
        l->running_mean[c] =
            (float)((1.0 - ST_BN_MOMENTUM) * l->running_mean[c] + ST_BN_MOMENTUM * mean);
        l->running_var[c] =
            (float)((1.0 - ST_BN_MOMENTUM) * l->running_var[c] + ST_BN_MOMENTUM * unbiased);
    }
    if (!l->pool_after) /* else the max pool after it applies it (and the ReLU) */
        for (int i = 0; i < n; i++)
            for (int c = lo; c < hi; c++)
                chan_affine(l->out + ((size_t)i * C + c) * HW, in + ((size_t)i * C + c) * HW,
                            l->save_mean[c], l->save_invstd[c], l->w[c], l->b[c], HW,
                            l->relu_fused);
}

/* The reference kernels' arithmetic, one channel per task. nhwc: the input is channels-last
 * (the model's NHWC chain: then a max pool follows, which applies the batch norm). */
static void bn_train_forward(st_layer *l, const float *in, int n, int nhwc)
{
    ST_PARALLEL(nthreads(), bn_train_forward_part(l, in, n, nhwc, part, parts));
    l->num_batches_tracked++;
}

static void bn_eval_image(st_layer *l, const float *in, long i)
{
    int C = l->in_c, HW = l->in_h * l->in_w;
    for (int c = 0; c < C; c++) {
        float invstd = 1.0f / sqrtf(l->running_var[c] + ST_BN_EPS);
        chan_affine(l->out + ((size_t)i * C + c) * HW, in + ((size_t)i * C + c) * HW,
                    l->running_mean[c], invstd, l->w[c], l->b[c], HW, l->relu_fused);
    }
}

static void bn_eval_forward(st_layer *l, const float *in, int n)
{
    ST_PARALLEL_FOR(nthreads(), 1, i, n, bn_eval_image(l, in, i));
}

/* Channel c of bn_backward from its sums of dy and dy * xhat: the weight and bias gradients,
 * then its input gradient, or (defer) the coefficients the conv before computes it from. */
static void bn_grads(st_layer *l, const float *in, const float *dout, float *dinp, int n, int c,
                     double sum_dy, double sum_dy_xhat, int defer)
{
    int HW = l->in_h * l->in_w;
    size_t M = (size_t)n * HW;
    bn_chan q = {l->save_mean[c], l->save_invstd[c], l->w[c], l->b[c], l->relu_fused};
    l->db[c] += (float)sum_dy;
    l->dw[c] += (float)sum_dy_xhat;
    if (!dinp)
        return;
    double mdy = sum_dy / (double)M, mdyx = sum_dy_xhat / (double)M;
    double scale = (double)q.invstd * l->w[c];
    if (defer) {
        float *k = l->dx_coef + 3 * c; /* st_bn_dx works in float */
        k[0] = (float)mdy, k[1] = (float)mdyx, k[2] = (float)scale;
        return;
    }
    for (int i = 0; i < n; i++) {
        size_t off = ((size_t)i * l->in_c + c) * HW;
        if (dinp != dout) /* the model always runs it in place; other callers copy */
            memcpy(dinp + off, dout + off, sizeof(float) * (size_t)HW);
        chan_dx(dinp + off, in + off, q, (float)mdy, (float)mdyx, (float)scale, HW);
    }
}

/* chan_dsums over the channels [c0, c1) (at most ST_CHAN_BLOCK) of n channels-last images of
 * HW pixels x C channels (x, dy): lane k of a1[c - c0] gets the pixels k mod 8 of each image, in
 * order, so every channel's sums are those chan_dsums makes of its planes, to the bit. */
ST_VEC_CLONES static void chan_dsums_nhwc(double (*restrict a1)[8], double (*restrict a2)[8],
                                          const float *restrict x, const float *restrict dy,
                                          const st_layer *l, int c0, int c1, int n, int HW)
{
    int C = l->in_c, nc = c1 - c0;
    double s1[8][ST_CHAN_BLOCK], s2[8][ST_CHAN_BLOCK]; /* [lane][channel]: vectors by channel */
    memset(s1, 0, sizeof s1);
    memset(s2, 0, sizeof s2);
    const float *mean = l->save_mean + c0, *invstd = l->save_invstd + c0;
    const float *g = l->w + c0, *b = l->b + c0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < HW; k++) {
            size_t q = ((size_t)i * HW + k) * C + c0;
            double *t1 = s1[k & 7], *t2 = s2[k & 7];
            for (int c = 0; c < nc; c++) {
                float xv = x[q + c], d = dy[q + c];
                if (l->relu_fused)
                    d = st_relu_mask(d, st_bn_out(xv, mean[c], invstd[c], g[c], b[c]));
                double xhat = (double)(xv - mean[c]) * invstd[c];
                t1[c] += d;
                t2[c] += d * xhat;
            }
        }
    for (int c = 0; c < nc; c++)
        for (int k = 0; k < 8; k++)
            a1[c][k] = s1[k][c], a2[c][k] = s2[k][c];
}

/* Part `part` of `parts` of bn_backward: each its share of the channels (static), ST_CHAN_BLOCK
 * at a time image by image, so that it reads each image's planes of them in order (one stream,
 * not one per plane); each channel's sums are still over the images in order. */
static void bn_backward_part(st_layer *l, const float *in, const float *dout, float *dinp, int n,
                             int nhwc, int part, int parts)
{
    int C = l->in_c;
    const st_layer *pool = l->pool_after;
    /* the inputs the sums read, with dout: the pool's saved maxima (its output's pixels), or
     * the batch norm's own input */
    const float *x = pool ? pool->xmax : in;
    int XHW = pool ? pool->out_h * pool->out_w : l->in_h * l->in_w;
    /* the input gradient left to the conv before: in place after it, or with a pool (which is
     * only fused after one) */
    int defer = (l->stats_src && dinp == dout) || pool;
    int lo, hi;
    st_part_range(C, part, parts, &lo, &hi);
    for (int c0 = lo; c0 < hi; c0 += ST_CHAN_BLOCK) {
        int c1 = hi - c0 < ST_CHAN_BLOCK ? hi : c0 + ST_CHAN_BLOCK;
        double a1[ST_CHAN_BLOCK][8] = {{0}}, a2[ST_CHAN_BLOCK][8] = {{0}};
        if (nhwc)
            chan_dsums_nhwc(a1, a2, x, dout, l, c0, c1, n, XHW);
        else
            for (int i = 0; i < n; i++)
                for (int c = c0; c < c1; c++) {
                    bn_chan q = {l->save_mean[c], l->save_invstd[c], l->w[c], l->b[c],
                                 l->relu_fused};
                    size_t off = ((size_t)i * C + c) * XHW;
                    chan_dsums(a1[c - c0], a2[c - c0], x + off, dout + off, q, XHW);
                }
        for (int c = c0; c < c1; c++)
            bn_grads(l, in, dout, dinp, n, c, st_sum8(a1[c - c0]), st_sum8(a2[c - c0]), defer);
    }
}

/* With a fused ReLU, dout is the ReLU's output gradient (its mask is applied here); with a fused
 * 2x2 max pool after that (pool_after), dout is the pool's output gradient, and the inputs at the
 * pool's maxima are those the pool saved (xmax); with nhwc (the model's NHWC chain), both
 * channels-last. After a conv, in place (the model's case), the input gradient is left to the
 * conv's backward (dx_coef). */
static void bn_backward(st_layer *l, const float *in, const float *dout, float *dinp, int n,
                        int nhwc)
{
    ST_PARALLEL(nthreads(), bn_backward_part(l, in, dout, dinp, n, nhwc, part, parts));
}

/* ------------------------------------------------------------------------------ max pool */

typedef int32_t v4i __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* The even and the odd lanes of a, then b (a window's left and right values). */
#define EVEN4(a, b) ST_SHUFFLE4(a, b, 0, 2, 4, 6)
#define ODD4(a, b) ST_SHUFFLE4(a, b, 1, 3, 5, 7)
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define EVEN8(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14)
#define ODD8(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15)
#else
#define EVEN8(a, b) __builtin_shuffle(a, b, (v8i){0, 2, 4, 6, 8, 10, 12, 14})
#define ODD8(a, b) __builtin_shuffle(a, b, (v8i){1, 3, 5, 7, 9, 11, 13, 15})
#endif

/* Lanes where the next candidate n replaces the maximum so far p: n is greater, or a NaN after
 * a number (the first maximum wins, and the first NaN). Macros, for vectors of any width (a
 * function passing 8-lane vectors by value would have two ABIs, with and without AVX). */
#define POOL_WINS(p, n) ((((n) > (p)) | ((n) != (n))) & ((p) == (p)))
/* a where t, else b, lane by lane (t: all ones or all zeros). */
#define POOL_PICK(t, a, b) (((t) & (a)) | (~(t) & (b)))

/* The max pool's vector code for N = 4 lanes (VF, VI: float and int vectors) and for 8 (one AVX
 * operation each, two SSE ones in the baseline build): the same operations lane by lane, so the
 * two widths give the same values.
 *
 * maxpool2x2_N: N outputs of a 2x2 max pool: the maxima of the pairs (r0[2i], r0[2i+1]) and
 * (r1[2i], r1[2i+1]), i < N, and (am != NULL) their positions, b + 2i + {0, 1, W, W + 1}; the first
 * maximum wins (PyTorch's rule) and a NaN wins over everything after it. With q (see
 * maxpool2x2_plane), xm != NULL receives the input values at the maxima. Each window's four
 * values make one vector per position: top left, top right, bottom left, bottom right (xc); what
 * the pool compares (v): with q, they are a batch norm's inputs, so its output and ReLU (as
 * chan_affine computes them: st_bn_out's operations); then the first maximum of the top pair, of
 * the bottom pair, then of those two: the same choice as taking the four in order, with two steps
 * of dependent selects instead of three. */
#define POOL_LANES(N, VF, VI, EVEN, ODD)                                                         \
    static inline __attribute__((always_inline)) void maxpool2x2_##N(                           \
        float *y, int32_t *am, float *xm, const float *r0, const float *r1, int b, int W,        \
        const bn_chan *q)                                                                        \
    {                                                                                            \
        VF a0, a1, b0, b1, zero = {0};                                                           \
        VI base = {0};                                                                           \
        for (int i = 0; i < N; i++)                                                              \
            base[i] = 2 * i;                                                                     \
        base += b;                                                                               \
        memcpy(&a0, r0, sizeof a0), memcpy(&a1, r0 + N, sizeof a1);                              \
        memcpy(&b0, r1, sizeof b0), memcpy(&b1, r1 + N, sizeof b1);                              \
        VF xc[4] = {EVEN(a0, a1), ODD(a0, a1), EVEN(b0, b1), ODD(b0, b1)};                       \
        VF v[4] = {xc[0], xc[1], xc[2], xc[3]};                                                  \
        if (q) {                                                                                 \
            /* vector + scalar: one broadcast each (lane by lane, the compiler inserts) */       \
            VF mean = zero + q->mean, inv = zero + q->invstd;                                    \
            VF g = zero + q->g, be = zero + q->b;                                                \
            for (int i = 0; i < 4; i++) {                                                        \
                v[i] = (xc[i] - mean) * inv * g + be;                                            \
                v[i] = (VF)((VI)v[i] & ((v[i] > zero) | (v[i] != v[i])));                        \
            }                                                                                    \
        }                                                                                        \
        VF m[2];                                                                                 \
        VI k[2], x[2];                                                                           \
        for (int r = 0; r < 2; r++) {                                                            \
            VI t = POOL_WINS(v[2 * r], v[2 * r + 1]);                                            \
            m[r] = (VF)POOL_PICK(t, (VI)v[2 * r + 1], (VI)v[2 * r]);                             \
            k[r] = base + r * W + (t & 1);                                                       \
            x[r] = POOL_PICK(t, (VI)xc[2 * r + 1], (VI)xc[2 * r]);                               \
        }                                                                                        \
        VI t = POOL_WINS(m[0], m[1]);                                                            \
        VF mm = (VF)POOL_PICK(t, (VI)m[1], (VI)m[0]);                                            \
        VI kk = POOL_PICK(t, k[1], k[0]), xx = POOL_PICK(t, x[1], x[0]);                         \
        memcpy(y, &mm, sizeof mm);                                                               \
        if (am)                                                                                  \
            memcpy(am, &kk, sizeof kk);                                                          \
        if (xm)                                                                                  \
            memcpy(xm, &xx, sizeof xx);                                                          \
    }                                                                                            \
    /* A row of OW >= N outputs N at a time, the last N from OW - N (rewriting a few with the   \
     * same values); the row's windows start at x[b0 + 2 ow]. */                                 \
    static inline __attribute__((always_inline)) void pool_row_##N(                              \
        float *yr, int32_t *ar, float *xr, const float *r0, const float *r1, int b0, int W,     \
        int OW, const bn_chan *q)                                                                \
    {                                                                                            \
        for (int ow = 0;; ow += N) {                                                             \
            if (ow > OW - N)                                                                     \
                ow = OW - N;                                                                     \
            if (!ar && !q) /* evaluation: the values only (inlined without the rest) */          \
                maxpool2x2_##N(yr + ow, NULL, NULL, r0 + 2 * ow, r1 + 2 * ow, 0, W, NULL);       \
            else                                                                                 \
                maxpool2x2_##N(yr + ow, ar ? ar + ow : NULL, xr ? xr + ow : NULL, r0 + 2 * ow,   \
                               r1 + 2 * ow, b0 + 2 * ow, W, q);                                  \
            if (ow == OW - N)                                                                    \
                break;                                                                           \
        }                                                                                        \
    }

POOL_LANES(4, v4f, v4i, EVEN4, ODD4)
POOL_LANES(8, v8f, v8i, EVEN8, ODD8)

/* 2x2, stride 2, one plane, eight or four outputs at a time (pool_row_N: a row's last eight or
 * four from OW - 8 or OW - 4, recomputing a few, same values), so rows of 4 or more outputs need
 * no scalar tail. With am == NULL (evaluation mode: no backward pass) the positions are not
 * written. With q, x is a
 * batch norm's input, and the pool takes the maxima of that batch norm's output after a ReLU;
 * xm (training) then receives x at each maximum. */
ST_VEC_CLONES static void maxpool2x2_plane(float *restrict y, int32_t *restrict am,
                                           float *restrict xm, const float *restrict x, int W,
                                           int OH, int OW, const bn_chan *q)
{
    for (int oh = 0; oh < OH; oh++) {
        const float *r0 = x + (size_t)2 * oh * W, *r1 = r0 + W;
        float *yr = y + (size_t)oh * OW;
        int32_t *ar = am ? am + (size_t)oh * OW : NULL;
        float *xr = xm ? xm + (size_t)oh * OW : NULL;
        if (OW >= 8)
            pool_row_8(yr, ar, xr, r0, r1, 2 * oh * W, W, OW, q);
        else if (OW >= 4)
            pool_row_4(yr, ar, xr, r0, r1, 2 * oh * W, W, OW, q);
        for (int ow = OW >= 4 ? OW : 0; ow < OW; ow++) { /* rows of fewer than 4 outputs */
            float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
            if (q)
                a = bn_relu(a, q), b = bn_relu(b, q), c = bn_relu(c, q), d = bn_relu(d, q);
            int base = 2 * oh * W + 2 * ow;
            float m = a;
            int k = base;
            int t = (b > m || b != b) && m == m;
            m = t ? b : m, k = t ? base + 1 : k;
            t = (c > m || c != c) && m == m;
            m = t ? c : m, k = t ? base + W : k;
            t = (d > m || d != d) && m == m;
            m = t ? d : m, k = t ? base + W + 1 : k;
            yr[ow] = m;
            if (ar)
                ar[ow] = k;
            if (xr)
                xr[ow] = x[k];
        }
    }
}

/* Output row oh of a 2x2 max pool after a batch norm (+ ReLU) on a channels-last image (x:
 * H x W x C, C a multiple of 8): y, am, xm as maxpool2x2_8 makes them (the batch norm's output
 * compared in the same order, the same positions: pixels of the plane), for 8 channels at a
 * time instead of 8 windows, written channels-last (OW x C). */
ST_VEC_CLONES static void pool_row_nhwc(float *restrict y, int32_t *restrict am, float *restrict xm,
                                        const float *restrict x, int C, int W, int oh, int OW,
                                        const st_layer *bn)
{
    v8f zero = {0};
    for (int ow = 0; ow < OW; ow++) {
        int base = 2 * oh * W + 2 * ow;
        const float *p0 = x + (size_t)base * C, *p2 = p0 + (size_t)W * C;
        size_t o = (size_t)ow * C;
        for (int c = 0; c < 2 * C; c += 16) { /* the window two rows of outputs below */
            __builtin_prefetch(p0 + (size_t)4 * W * C + c);
            __builtin_prefetch(p2 + (size_t)4 * W * C + c);
        }
        for (int c = 0; c < C; c += 8) {
            v8f mean, inv, g, be, xc[4];
            memcpy(&mean, bn->save_mean + c, sizeof mean);
            memcpy(&inv, bn->save_invstd + c, sizeof inv);
            memcpy(&g, bn->w + c, sizeof g);
            memcpy(&be, bn->b + c, sizeof be);
            memcpy(&xc[0], p0 + c, sizeof xc[0]), memcpy(&xc[1], p0 + C + c, sizeof xc[1]);
            memcpy(&xc[2], p2 + c, sizeof xc[2]), memcpy(&xc[3], p2 + C + c, sizeof xc[3]);
            v8f v[4];
            for (int i = 0; i < 4; i++) {
                v[i] = (xc[i] - mean) * inv * g + be;
                if (bn->relu_fused)
                    v[i] = (v8f)((v8i)v[i] & ((v[i] > zero) | (v[i] != v[i])));
            }
            v8f m[2];
            v8i k[2], xs[2];
            for (int r = 0; r < 2; r++) {
                v8i t = POOL_WINS(v[2 * r], v[2 * r + 1]);
                m[r] = (v8f)POOL_PICK(t, (v8i)v[2 * r + 1], (v8i)v[2 * r]);
                k[r] = (base + r * W) + (t & 1);
                xs[r] = POOL_PICK(t, (v8i)xc[2 * r + 1], (v8i)xc[2 * r]);
            }
            v8i t = POOL_WINS(m[0], m[1]);
            v8f mm = (v8f)POOL_PICK(t, (v8i)m[1], (v8i)m[0]);
            v8i kk = POOL_PICK(t, k[1], k[0]), xx = POOL_PICK(t, xs[1], xs[0]);
            memcpy(y + o + c, &mm, sizeof mm);
            memcpy(am + o + c, &kk, sizeof kk);
            memcpy(xm + o + c, &xx, sizeof xx);
        }
    }
}

/* Row r (image r / OH, output row r % OH) of the channels-last pool with its batch norm. */
static void pool_row_at(st_layer *l, const float *in, const st_layer *bn, int r)
{
    int C = l->in_c, H = l->in_h, W = l->in_w, OH = l->out_h, OW = l->out_w;
    int i = r / OH, oh = r % OH;
    size_t o = ((size_t)i * OH + oh) * OW * C;
    pool_row_nhwc(l->out + o, l->argmax + o, l->xmax + o, in + (size_t)i * H * W * C, C, W, oh,
                  OW, bn);
}

/* Plane p (image p / C, channel p % C) of the pool, with its batch norm where bn != NULL. */
static void pool_plane_at(st_layer *l, const float *in, const st_layer *bn, int training, int p)
{
    int C = l->in_c, H = l->in_h, W = l->in_w, OH = l->out_h, OW = l->out_w;
    bn_chan q = {0};
    if (bn) {
        int c = p % C;
        q = (bn_chan){bn->save_mean[c], bn->save_invstd[c], bn->w[c], bn->b[c], 1};
    }
    size_t o = (size_t)p * OH * OW;
    maxpool2x2_plane(l->out + o, training ? l->argmax + o : NULL, bn ? l->xmax + o : NULL,
                     in + (size_t)p * H * W, W, OH, OW, bn ? &q : NULL);
}

/* Training: with a batch norm (+ ReLU) fused before it (bn_before), the pool reads the batch
 * norm's input, the conv's output, and applies them itself (the batch norm skipped that pass);
 * nhwc: that input and the pool's output, argmax and xmax are channels-last (the model's NHWC
 * chain), rows of images handed out to threads. */
static void maxpool_forward(st_layer *l, const float *in, int n, int training, int nhwc)
{
    int planes = n * l->in_c, H = l->in_h, W = l->in_w, OH = l->out_h;
    int K = l->pool.k, S = l->pool.s;
    if (K != 2 || S != 2) {
        maxpool2d_forward_ref(l->out, l->argmax, in, n, l->in_c, H, W, K, S);
        return;
    }
    const st_layer *bn = training ? l->bn_before : NULL;
    if (bn)
        in = bn->stats_src->out;
    if (bn && nhwc) {
        int rows = n * OH;
        ST_PARALLEL_FOR(rows > 16 ? nthreads() : 1, 8, r, rows,
                        pool_row_at(l, in, bn, (int)r));
        return;
    }
    /* a few microseconds of work (one image) is done before a second thread would start */
    ST_PARALLEL_FOR((long)planes * H * W > 16384 ? nthreads() : 1, 16, p, planes,
                    pool_plane_at(l, in, bn, training, (int)p));
}

/* Plane p of the pool's backward: each output's gradient to its maximum. */
static void unpool_plane(const st_layer *l, const float *dout, float *dinp, long p)
{
    int HW = l->in_h * l->in_w, OHW = l->out_h * l->out_w;
    float *dx = dinp + (size_t)p * HW;
    const float *dy = dout + (size_t)p * OHW;
    const int32_t *am = l->argmax + (size_t)p * OHW;
    memset(dx, 0, sizeof(float) * (size_t)HW);
    for (int o = 0; o < OHW; o++)
        dx[am[o]] += dy[o];
}

static void maxpool_backward(st_layer *l, const float *dout, float *dinp, int n)
{
    int planes = n * l->in_c;
    ST_PARALLEL_FOR(planes > 8 ? nthreads() : 1, 16, p, planes, unpool_plane(l, dout, dinp, p));
}

/* ------------------------------------------------------------------------------ linear */

static void linear_forward(st_layer *l, const float *in, int n)
{
    int IN = l->lin.in, OUT = l->lin.out;
    st_sgemm(0, 1, n, OUT, IN, 1.0f, in, IN, l->w, IN, 0.0f, l->out, OUT);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < OUT; o++)
            l->out[(size_t)i * OUT + o] += l->b[o];
}

static void linear_backward(st_layer *l, const float *in, const float *dout, float *dinp, int n)
{
    int IN = l->lin.in, OUT = l->lin.out;
    st_sgemm(1, 0, OUT, IN, n, 1.0f, dout, OUT, in, IN, 1.0f, l->dw, IN);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < OUT; o++)
            l->db[o] += dout[(size_t)i * OUT + o];
    if (dinp)
        st_sgemm(0, 0, n, IN, OUT, 1.0f, dout, OUT, l->w, IN, 0.0f, dinp, IN);
}

/* ------------------------------------------------------------------------------ dispatch */

/* Element-wise loops are written without branches on the data (a branch on the sign of random
 * values mispredicts half the time) and with restrict pointers, so that they vectorise. They run
 * in chunks of CHUNK elements, a fixed split whatever the number of threads. Like every loop
 * here, the chunks (channels, planes) are handed out to threads as they finish (schedule
 * dynamic): on a shared machine the cores run at different speeds, and a fixed share would
 * make the faster one wait; which thread does a chunk never changes its result. Batch norm's
 * per-channel loops are the exception (see bn_train_forward). */
#define CHUNK 32768

static void relu_chunk(float *restrict out, const float *restrict in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = st_relu(in[i]);
}

static void relu_inplace_chunk(float *restrict x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = st_relu(x[i]);
}

static void relu_backward_chunk(float *restrict dinp, const float *restrict dout,
                                const float *restrict out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float d = dout[i]; /* loaded unconditionally, so the select needs no branch */
        dinp[i] = out[i] > 0.0f ? d : 0.0f;
    }
}

/* Chunk c of relu_forward. */
static void relu_chunk_at(float *out, const float *in, size_t total, long c)
{
    size_t lo = (size_t)c * CHUNK, n = total - lo < CHUNK ? total - lo : CHUNK;
    if (out == in)
        relu_inplace_chunk(out + lo, n);
    else
        relu_chunk(out + lo, in + lo, n);
}

static void relu_forward(float *out, const float *in, size_t total)
{
    long nc = (long)((total + CHUNK - 1) / CHUNK);
    ST_PARALLEL_FOR(nc > 2 ? nthreads() : 1, 1, c, nc, relu_chunk_at(out, in, total, c));
}

static void relu_backward_inplace_chunk(float *restrict d, const float *restrict out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = d[i];
        d[i] = out[i] > 0.0f ? g : 0.0f;
    }
}

static void mul_inplace(float *restrict d, const float *restrict mask, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] *= mask[i];
}

/* An element-wise backward pass in chunks, threaded: dinp = f(dout, aux) by copy(dinp, dout,
 * aux, n), or in place (dinp == dout) by inplace(dinp, aux, n), chunk by chunk. */
typedef void (*inplace_fn)(float *restrict, const float *restrict, size_t);
typedef void (*copy_fn)(float *restrict, const float *restrict, const float *restrict, size_t);

static void backward_chunk_at(float *dinp, const float *dout, const float *aux, size_t total,
                              inplace_fn inplace, copy_fn copy, long c)
{
    size_t lo = (size_t)c * CHUNK, n = total - lo < CHUNK ? total - lo : CHUNK;
    if (dinp == dout)
        inplace(dinp + lo, aux + lo, n);
    else
        copy(dinp + lo, dout + lo, aux + lo, n);
}

static void chunked_backward(float *dinp, const float *dout, const float *aux, size_t total,
                             inplace_fn inplace, copy_fn copy)
{
    long nc = (long)((total + CHUNK - 1) / CHUNK);
    ST_PARALLEL_FOR(nc > 2 ? nthreads() : 1, 1, c, nc,
                    backward_chunk_at(dinp, dout, aux, total, inplace, copy, c));
}

static void relu_backward(float *dinp, const float *dout, const float *out, size_t total)
{
    chunked_backward(dinp, dout, out, total, relu_backward_inplace_chunk, relu_backward_chunk);
}

#if defined(ST_HAVE_X86_KERNELS) && defined(__GNUC__)
typedef uint64_t v4u64 __attribute__((vector_size(32)));
typedef int64_t v4i64 __attribute__((vector_size(32)));

/* st_dropout_block over the four whole blocks b0 .. b0 + 3 at once, each block's generator in a
 * 64-bit lane: the same draws, so the same masks and outputs. Four draws a step give each block
 * its next 8 masks, a 4 x 4 transpose of their 64-bit pairs puts each block's together. */
__attribute__((target("avx2"))) static void dropout_blocks4(float *out, float *mask,
                                                            const float *in, uint64_t key,
                                                            uint64_t b0, uint64_t threshold,
                                                            float scale)
{
    v4u64 s0, s1, s2, s3;
    for (int l = 0; l < 4; l++) {
        st_rng g;
        st_rng_seed(&g, key ^ ((b0 + (uint64_t)l) * 0xd1b54a32d192ed03ULL));
        s0[l] = g.s[0], s1[l] = g.s[1], s2[l] = g.s[2], s3[l] = g.s[3];
    }
    uint32_t sb;
    memcpy(&sb, &scale, sizeof sb);
    const v4u64 zero = {0, 0, 0, 0}, low = zero + 0xffffffffULL;
    const v4u64 sc = zero + (((uint64_t)sb << 32) | sb);
    const v4i64 th = (v4i64)zero + (int64_t)threshold - 1; /* fractions < 2^24: signed is safe */
    for (int i = 0; i < ST_DROPOUT_BLOCK; i += 8) {
        v4u64 pr[4]; /* pr[j]: each block's masks 2j (low half) and 2j + 1 (high half) */
        for (int j = 0; j < 4; j++) {
            v4u64 x = (s1 << 2) + s1; /* xoshiro256**, as st_rng_next_inline */
            v4u64 r = (x << 7) | (x >> 57);
            r = (r << 3) + r;
            v4u64 t = s1 << 17;
            s2 ^= s0, s3 ^= s1, s1 ^= s2, s0 ^= s3, s2 ^= t;
            s3 = (s3 << 45) | (s3 >> 19);
            v4u64 keep0 = (v4u64)((v4i64)(r >> 40) > th);
            v4u64 keep1 = (v4u64)((v4i64)((r >> 16) & 0xffffff) > th);
            pr[j] = ((keep0 & low) | (keep1 & ~low)) & sc;
        }
        v4u64 t0 = ST_SHUFFLE4(pr[0], pr[1], 0, 4, 2, 6);
        v4u64 t1 = ST_SHUFFLE4(pr[0], pr[1], 1, 5, 3, 7);
        v4u64 t2 = ST_SHUFFLE4(pr[2], pr[3], 0, 4, 2, 6);
        v4u64 t3 = ST_SHUFFLE4(pr[2], pr[3], 1, 5, 3, 7);
        v4u64 q[4] = {ST_SHUFFLE4(t0, t2, 0, 1, 4, 5), ST_SHUFFLE4(t1, t3, 0, 1, 4, 5),
                      ST_SHUFFLE4(t0, t2, 2, 3, 6, 7), ST_SHUFFLE4(t1, t3, 2, 3, 6, 7)};
        for (int l = 0; l < 4; l++) {
            size_t o = (size_t)l * ST_DROPOUT_BLOCK + (size_t)i;
            v8f m, v;
            memcpy(&m, &q[l], sizeof m);
            memcpy(&v, in + o, sizeof v);
            v = v * m;
            memcpy(mask + o, &m, sizeof m);
            memcpy(out + o, &v, sizeof v);
        }
    }
}
#endif

/* Blocks 4g to 4g + 3 of dropout_forward (those of the n values there are), with generator key
 * and threshold, kept values times scale. */
static void dropout_group(float *out, float *mask, const float *in, size_t n, uint64_t key,
                          uint64_t threshold, float scale, long g)
{
    long nb = (long)((n + ST_DROPOUT_BLOCK - 1) / ST_DROPOUT_BLOCK), b = 4 * g;
#if defined(ST_HAVE_X86_KERNELS) && defined(__GNUC__)
    if (st_cpu_level() >= ST_CPU_AVX2 && threshold >= 1 && b + 4 <= (long)(n / ST_DROPOUT_BLOCK)) {
        size_t lo = (size_t)b * ST_DROPOUT_BLOCK;
        dropout_blocks4(out + lo, mask + lo, in + lo, key, (uint64_t)b, threshold, scale);
        return;
    }
#endif
    for (; b < nb && b < 4 * g + 4; b++) {
        size_t lo = (size_t)b * ST_DROPOUT_BLOCK;
        size_t len = n - lo < ST_DROPOUT_BLOCK ? n - lo : ST_DROPOUT_BLOCK;
        st_dropout_block(out + lo, mask + lo, in + lo, len, key, (uint64_t)b, threshold, scale);
    }
}

/* The masks of dropout_forward_ref (see st_dropout_block), blocks drawn in parallel, four at a
 * time in vector lanes where the CPU has AVX2. */
static void dropout_forward(float *out, float *mask, const float *in, size_t n, float p,
                            st_rng *rng)
{
    if (!(p > 0.0f)) {
        dropout_forward_ref(out, mask, in, n, p, rng);
        return;
    }
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    uint64_t key = st_rng_next(rng), threshold = st_dropout_threshold(p);
    long nb = (long)((n + ST_DROPOUT_BLOCK - 1) / ST_DROPOUT_BLOCK), groups = (nb + 3) / 4;
    ST_PARALLEL_FOR(groups > 2 ? nthreads() : 1, 1, g, groups,
                    dropout_group(out, mask, in, n, key, threshold, scale, g));
}

static void mul_chunk(float *restrict out, const float *restrict a, const float *restrict b,
                      size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] * b[i];
}

/* Dropout's backward: dinp = dout * mask (in place where dinp == dout), in chunks. */
static void dropout_backward(float *dinp, const float *dout, const float *mask, size_t total)
{
    chunked_backward(dinp, dout, mask, total, mul_inplace, mul_chunk);
}

/* The scale and shift of conv l and its batch norm in evaluation mode (below). */
static void bn_eval_affine(st_layer *l)
{
    const st_layer *bn = l->bn_next;
    int OC = l->conv.oc;
    float *scale = l->bn_affine, *shift = scale + OC;
    for (int oc = 0; oc < OC; oc++) {
        scale[oc] = bn->w[oc] / sqrtf(bn->running_var[oc] + ST_BN_EPS);
        shift[oc] = (l->b[oc] - bn->running_mean[oc]) * scale[oc] + bn->b[oc];
    }
}

/* Evaluation mode, conv + batch norm (+ ReLU): the conv writes the batch norm's (or the ReLU's)
 * output directly, one pass instead of three: out = conv(x) * scale + shift, with
 *     scale = g / sqrt(var + eps),   shift = (b - mean) * scale + beta.
 * Equal to conv-then-batch-norm up to float rounding; the weights themselves are not touched.
 * With a 2x2 max pool after the ReLU (pool_after), the conv writes the pool's output instead
 * where its path can (the same values; the pool then has nothing to do: pooled_by_conv). */
static void conv_bn_eval_forward(st_model *m, st_layer *l, const float *in, int n)
{
    st_layer *bn = l->bn_next, *pool = bn->pool_after;
    float *scale = l->bn_affine, *shift = scale + l->conv.oc;
    bn_eval_affine(l);
    st_conv_shape s = conv_shape(l);
    int pooled = st_conv2d_forward_affine(bn->out, pool ? pool->out : NULL, in, l->w, scale,
                                          shift, &s, n, m->ws, m->ws_threads, bn->relu_fused,
                                          l->wcache);
    if (pool && pool->pooled_by_conv != pooled) /* (a team's members may be reading it) */
        pool->pooled_by_conv = pooled;
}

void st_layer_forward(st_model *m, st_layer *l, const float *in, int n)
{
    size_t total = (size_t)n * l->out_size;
    int ref = m->reference;
    switch (l->kind) {
    case ST_L_CONV:
        if (ref)
            conv2d_forward_ref(l->out, in, l->w, l->b, n, l->in_c, l->in_h, l->in_w, l->conv.oc,
                               l->conv.kh, l->conv.kw, l->conv.stride, l->conv.pad);
        else if (!m->training && l->bn_next)
            conv_bn_eval_forward(m, l, in, n);
        else {
            st_conv_shape s = conv_shape(l);
            s.layout = layer_nhwc(m, l);
            double *stats = m->training ? l->conv_stats : NULL;
            st_conv2d_forward(l->out, in, l->w, l->b, &s, n, m->ws, m->ws_threads, stats, 0,
                              m->training ? NULL : l->wcache);
        }
        break;
    case ST_L_BN:
        if (m->training) {
            if (ref) {
                batchnorm2d_forward_train_ref(l->out, l->save_mean, l->save_invstd,
                                              l->running_mean, l->running_var, in, l->w, l->b, n,
                                              l->in_c, l->in_h * l->in_w, ST_BN_MOMENTUM,
                                              ST_BN_EPS);
                l->num_batches_tracked++;
            } else
                bn_train_forward(l, in, n, layer_nhwc(m, l));
        } else if (ref)
            batchnorm2d_forward_eval_ref(l->out, in, l->w, l->b, l->running_mean, l->running_var,
                                         n, l->in_c, l->in_h * l->in_w, ST_BN_EPS);
        else if (!l->stats_src) /* else the conv before it wrote this output */
            bn_eval_forward(l, in, n);
        break;
    case ST_L_RELU:
        if (ref)
            relu_forward_ref(l->out, in, total);
        else if (!l->fused) /* else the batch norm before it applied it */
            relu_forward(l->out, in, total);
        break;
    case ST_L_MAXPOOL:
        if (ref)
            maxpool2d_forward_ref(l->out, l->argmax, in, n, l->in_c, l->in_h, l->in_w, l->pool.k,
                                  l->pool.s);
        else if (m->training || !l->pooled_by_conv) /* else the conv before it wrote this */
            maxpool_forward(l, in, n, m->training, layer_nhwc(m, l));
        break;
    case ST_L_DROPOUT:
        if (m->training && m->dropout_enabled)
            (ref ? dropout_forward_ref : dropout_forward)(l->out, l->mask, in, total, l->drop.p,
                                                          &m->rng);
        else {
            memcpy(l->out, in, total * sizeof(float));
            if (m->training) /* evaluation mode has no backward pass: no mask needed */
                for (size_t i = 0; i < total; i++)
                    l->mask[i] = 1.0f;
        }
        break;
    case ST_L_LINEAR:
        if (ref)
            linear_forward_ref(l->out, in, l->w, l->b, n, l->lin.in, l->lin.out);
        else
            linear_forward(l, in, n);
        break;
    case ST_L_FLATTEN:
        if (l->out != in)
            memcpy(l->out, in, total * sizeof(float));
        break;
    }
}

void st_layer_backward(st_model *m, st_layer *l, const float *in, const float *dout, float *dinp,
                       int n)
{
    size_t total = (size_t)n * l->out_size;
    int ref = m->reference;
    switch (l->kind) {
    case ST_L_CONV:
        if (ref)
            conv2d_backward_ref(dinp, l->dw, l->db, dout, in, l->w, n, l->in_c, l->in_h, l->in_w,
                                l->conv.oc, l->conv.kh, l->conv.kw, l->conv.stride, l->conv.pad);
        else {
            st_conv_shape s = conv_shape(l);
            s.layout = layer_nhwc(m, l);
            const st_layer *bn = l->bn_next;
            /* dout is then the batch norm's output gradient; the conv applies its backward */
            st_conv_bn_grad g = {0};
            if (bn) {
                const st_layer *pool = bn->pool_after;
                g = (st_conv_bn_grad){.x = l->out, .mean = bn->save_mean,
                                      .invstd = bn->save_invstd, .gamma = bn->w, .beta = bn->b,
                                      .coef = bn->dx_coef, .relu = bn->relu_fused,
                                      .argmax = pool ? pool->argmax : NULL,
                                      .xmax = pool ? pool->xmax : NULL,
                                      .pool_hw = pool ? pool->out_h * pool->out_w : 0};
            }
            st_conv2d_backward(dinp, l->dw, l->db, dout, in, l->w, &s, n, m->ws, m->ws_threads,
                               bn ? &g : NULL);
        }
        break;
    case ST_L_BN:
        if (ref)
            batchnorm2d_backward_ref(dinp, l->dw, l->db, dout, in, l->save_mean, l->save_invstd,
                                     l->w, n, l->in_c, l->in_h * l->in_w);
        else
            bn_backward(l, in, dout, dinp, n, layer_nhwc(m, l));
        break;
    case ST_L_RELU:
        if (dinp) {
            if (ref)
                relu_backward_ref(dinp, dout, l->out, total);
            else if (!l->fused) /* else the batch norm before it applies the mask */
                relu_backward(dinp, dout, l->out, total);
        }
        break;
    case ST_L_MAXPOOL:
        if (dinp) {
            if (ref)
                maxpool2d_backward_ref(dinp, dout, l->argmax, n, l->in_c, l->in_h, l->in_w,
                                       l->out_h, l->out_w);
            else if (!l->bn_before) /* else the batch norm before it does this backward */
                maxpool_backward(l, dout, dinp, n);
        }
        break;
    case ST_L_DROPOUT:
        if (dinp)
            dropout_backward(dinp, dout, l->mask, total);
        break;
    case ST_L_LINEAR:
        if (ref)
            linear_backward_ref(dinp, l->dw, l->db, dout, in, l->w, n, l->lin.in, l->lin.out);
        else
            linear_backward(l, in, dout, dinp, n);
        break;
    case ST_L_FLATTEN:
        if (dinp && dinp != dout)
            memcpy(dinp, dout, total * sizeof(float));
        break;
    }
}

/* ------------------------------------------------------------------------------ a team
 *
 * Evaluation of one image by a team of threads that stays together through the network
 * (team.h): one image has too little work per layer for a parallel region per layer. The convs
 * that have a team path (conv.c), 2x2 max pools, linear layers, ReLUs and copies are cut into
 * items; any other layer is one item. Every value is computed by the same code as on one
 * thread, so the result is the same to the bit. */

/* Multiply-adds of one image's forward pass. */
static double fma_per_image(const st_model *m)
{
    double f = 0.0;
    for (int i = 0; i < m->nlayers; i++) {
        const st_layer *l = &m->layers[i];
        if (l->kind == ST_L_CONV)
            f += (double)l->out_size * l->in_c * l->conv.kh * l->conv.kw;
        else if (l->kind == ST_L_LINEAR)
            f += (double)l->lin.in * l->lin.out;
    }
    return f;
}

/* Below this many multiply-adds per image (about 30 us on one core), the team's start and its
 * hand-overs cost more than a second thread saves: the fully-connected nets stay on one. */
#define TEAM_MIN_FMA 1e6

int st_team_size(const st_model *m, int n)
{
    if (m->training || m->reference || n != 1)
        return 1;
    int t = nthreads();
    if (t > m->ws_threads)
        t = m->ws_threads;
    if (t > omp_get_num_procs()) /* members that share a core spin in each other's way */
        t = omp_get_num_procs();
    if (t > ST_TEAM_MAX)
        t = ST_TEAM_MAX;
    return t >= 2 && fma_per_image(m) >= TEAM_MIN_FMA ? t : 1;
}

/* Items of a pool, a linear layer, a ReLU or a copy over `work` values (or multiply-adds):
 * below about a microsecond of work, one. */
static int team_items(const st_member *me, double work)
{
    return work < 16384 ? 1 : st_team_items(me->size);
}

/* Member me's part of layer l's forward on one image (in: its input), as the team's next phases;
 * returns what the next layer reads. */
static const float *layer_member(st_model *m, st_layer *l, const float *in, st_member *me)
{
    float *out = l->out;
    int lo, hi, it, n;
    switch (l->kind) {
    case ST_L_CONV: {
        st_conv_shape s = conv_shape(l);
        const st_layer *bn = l->bn_next;
        if (!st_conv_member_fits(&s, l->wcache != NULL))
            break;
        /* with a batch norm, it writes that one's (or its ReLU's, or the max pool's after
         * them) output, and applies them (pooled_by_conv: see st_forward_team) */
        st_layer *pool = bn ? bn->pool_after : NULL;
        st_conv_forward_member(bn ? bn->out : out, pool ? pool->out : NULL, in, l->w,
                               bn ? l->bn_affine : NULL,
                               bn ? l->bn_affine + l->conv.oc : l->b, &s, m->ws, m->ws_threads,
                               bn ? bn->relu_fused : 0, l->wcache, me);
        return out;
    }
    case ST_L_MAXPOOL:
        if (l->pooled_by_conv)
            return out;
        if (l->pool.k != 2 || l->pool.s != 2)
            break;
        n = team_items(me, (double)l->in_c * l->in_h * l->in_w);
        n = n < l->in_c ? n : l->in_c;
        while (st_team_item(me, n, &it)) {
            int H = l->in_h, W = l->in_w, OH = l->out_h, OW = l->out_w;
            st_team_part(l->in_c, n, it, &lo, &hi);
            for (int p = lo; p < hi; p++)
                maxpool2x2_plane(out + (size_t)p * OH * OW, NULL, NULL, in + (size_t)p * H * W, W,
                                 OH, OW, NULL);
            st_team_item_done(me);
        }
        st_team_phase_end(me, n);
        return out;
    case ST_L_LINEAR:
        n = team_items(me, (double)l->lin.in * l->lin.out / 4);
        while (st_team_item(me, n, &it)) {
            int IN = l->lin.in, OUT = l->lin.out, r[4];
            st_sgemm_part(0, 1, 1, OUT, IN, 1.0f, in, IN, l->w, IN, 0.0f, out, OUT, it, n, r);
            for (int o = r[2]; o < r[3]; o++)
                out[o] += l->b[o];
            st_team_item_done(me);
        }
        st_team_phase_end(me, n);
        return out;
    case ST_L_BN:
        if (l->stats_src) /* the conv before it wrote its output */
            return out;
        break;
    case ST_L_RELU:
        if (l->fused) /* the batch norm (or conv) before it applied it */
            return out;
        /* fall through */
    case ST_L_FLATTEN:
    case ST_L_DROPOUT: /* (evaluation: a copy) */
        if (out == in && l->kind != ST_L_RELU)
            return out;
        n = team_items(me, (double)l->out_size / 4);
        while (st_team_item(me, n, &it)) {
            st_team_part((int)l->out_size, n, it, &lo, &hi);
            if (l->kind == ST_L_RELU && out == in)
                relu_inplace_chunk(out + lo, (size_t)(hi - lo));
            else if (l->kind == ST_L_RELU)
                relu_chunk(out + lo, in + lo, (size_t)(hi - lo));
            else
                memcpy(out + lo, in + lo, sizeof(float) * (size_t)(hi - lo));
            st_team_item_done(me);
        }
        st_team_phase_end(me, n);
        return out;
    }
    while (st_team_item(me, 1, &it)) { /* the layer as one item */
        st_layer_forward(m, l, in, 1);
        st_team_item_done(me);
    }
    st_team_phase_end(me, 1);
    return out;
}

/* Member `id` of a team of `size` through the whole forward pass of one image x. */
static void team_member(st_model *m, const float *x, st_team *team, int id, int size)
{
    st_member me = {team, id, size, 0, -1};
    const float *in = x;
    for (int i = 0; i < m->nlayers; i++)
        in = layer_member(m, &m->layers[i], in, &me);
}

void st_forward_team(st_model *m, const float *x, int size)
{
    for (int i = 0; i < m->nlayers; i++) { /* what the members read, made once */
        st_layer *l = &m->layers[i];
        if (l->kind != ST_L_CONV)
            continue;
        st_conv_shape s = conv_shape(l);
        if (l->bn_next)
            bn_eval_affine(l);
        if (l->wcache)
            st_conv_member_weights(l->w, &s, l->wcache);
        /* known before the team starts: members skip the pool's phase by it (whether the conv
         * runs as members, which always pool, or whole as one item) */
        st_layer *pool = l->bn_next ? l->bn_next->pool_after : NULL;
        if (pool)
            pool->pooled_by_conv = st_conv_forward_pools(&s, 1, l->wcache != NULL);
    }
    st_team team;
    atomic_init(&team.next, 0);
    atomic_init(&team.done, 0);
    /* (the region's end waits for every member: every item is finished) */
    ST_PARALLEL(size, team_member(m, x, &team, part, parts));
}

float st_cross_entropy(float *dlogits, const float *logits, const uint8_t *labels, int n, int c)
{
    return cross_entropy_ref(dlogits, logits, labels, n, c);
}
