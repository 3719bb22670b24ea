/* kernels.c - runs each layer's forward and backward pass with the fast kernels.
 *
 * Convolutions and linear layers go through GEMM (conv.c, gemm.c); the element-wise layers are
 * threaded over channels or planes. Every reduction has a fixed order that does not depend on the
 * number of threads, so training is bit-identical whatever --threads is. With m->reference set,
 * the plain kernels of layers.c run instead (tests compare the two). */
#include "kernels.h"

#include "conv.h"
#include "gemm.h"
#include "layers.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static st_conv_shape conv_shape(const st_layer *l)
{
    st_conv_shape s = {l->in_c, l->in_h, l->in_w, l->conv.oc, l->conv.kh, l->conv.kw,
                       l->conv.stride, l->conv.pad, l->out_h, l->out_w};
    return s;
}

int st_kernels_init(st_model *m, st_error *err)
{
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
        m->ws = malloc(need * sizeof(float));
        if (!m->ws)
            return st_seterr(err, "out of memory: %zu MB of convolution workspace",
                             need * sizeof(float) >> 20);
        m->bytes += need * sizeof(float);
    }
    return 0;
}

void st_kernels_free(st_model *m)
{
    free(m->ws);
    m->ws = NULL;
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

/* Same arithmetic as the reference kernels, one channel per task. */
static void bn_train_forward(st_layer *l, const float *in, int n)
{
    int C = l->in_c, HW = l->in_h * l->in_w;
    size_t M = (size_t)n * HW;
#pragma omp parallel for schedule(static) num_threads(nthreads())
    for (int c = 0; c < C; c++) {
        double sum = 0.0;
        for (int i = 0; i < n; i++) {
            const float *x = in + ((size_t)i * C + c) * HW;
            for (int k = 0; k < HW; k++)
                sum += x[k];
        }
        double mean = sum / (double)M, ss = 0.0;
        for (int i = 0; i < n; i++) {
            const float *x = in + ((size_t)i * C + c) * HW;
            for (int k = 0; k < HW; k++) {
                double d = x[k] - mean;
                ss += d * d;
            }
        }
        double var = ss / (double)M;
        float invstd = (float)(1.0 / sqrt(var + ST_BN_EPS)), fmean = (float)mean;
        l->save_mean[c] = fmean;
        l->save_invstd[c] = invstd;
        double unbiased = M > 1 ? ss / (double)(M - 1) : var;
        l->running_mean[c] =
            (float)((1.0 - ST_BN_MOMENTUM) * l->running_mean[c] + ST_BN_MOMENTUM * mean);
        l->running_var[c] =
            (float)((1.0 - ST_BN_MOMENTUM) * l->running_var[c] + ST_BN_MOMENTUM * unbiased);
        float g = l->w[c], b = l->b[c];
        for (int i = 0; i < n; i++) {
            const float *x = in + ((size_t)i * C + c) * HW;
            float *y = l->out + ((size_t)i * C + c) * HW;
            for (int k = 0; k < HW; k++)
                y[k] = (x[k] - fmean) * invstd * g + b;
        }
    }
    l->num_batches_tracked++;
}

static void bn_eval_forward(st_layer *l, const float *in, int n)
{
    int C = l->in_c, HW = l->in_h * l->in_w;
#pragma omp parallel for schedule(static) num_threads(nthreads()) if (n > 1)
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++) {
            float invstd = 1.0f / sqrtf(l->running_var[c] + ST_BN_EPS);
            float mean = l->running_mean[c], g = l->w[c], b = l->b[c];
            const float *x = in + ((size_t)i * C + c) * HW;
            float *y = l->out + ((size_t)i * C + c) * HW;
            for (int k = 0; k < HW; k++)
                y[k] = (x[k] - mean) * invstd * g + b;
        }
}

static void bn_backward(st_layer *l, const float *in, const float *dout, float *dinp, int n)
{
    int C = l->in_c, HW = l->in_h * l->in_w;
    size_t M = (size_t)n * HW;
#pragma omp parallel for schedule(static) num_threads(nthreads())
    for (int c = 0; c < C; c++) {
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        float mean = l->save_mean[c], invstd = l->save_invstd[c];
        for (int i = 0; i < n; i++) {
            const float *x = in + ((size_t)i * C + c) * HW;
            const float *dy = dout + ((size_t)i * C + c) * HW;
            for (int k = 0; k < HW; k++) {
                double xhat = (double)(x[k] - mean) * invstd;
                sum_dy += dy[k];
                sum_dy_xhat += dy[k] * xhat;
            }
        }
        l->db[c] += (float)sum_dy;
        l->dw[c] += (float)sum_dy_xhat;
        if (!dinp)
            continue;
        double mdy = sum_dy / (double)M, mdyx = sum_dy_xhat / (double)M;
        double scale = (double)invstd * l->w[c];
        for (int i = 0; i < n; i++) {
            const float *x = in + ((size_t)i * C + c) * HW;
            const float *dy = dout + ((size_t)i * C + c) * HW;
            float *dx = dinp + ((size_t)i * C + c) * HW;
            for (int k = 0; k < HW; k++) {
                double xhat = (double)(x[k] - mean) * invstd;
                dx[k] = (float)((dy[k] - mdy - xhat * mdyx) * scale);
            }
        }
    }
}

/* ------------------------------------------------------------------------------ max pool */

static void maxpool_forward(st_layer *l, const float *in, int n)
{
    int planes = n * l->in_c, H = l->in_h, W = l->in_w, OH = l->out_h, OW = l->out_w;
    int K = l->pool.k, S = l->pool.s;
    if (K != 2 || S != 2) {
        maxpool2d_forward_ref(l->out, l->argmax, in, n, l->in_c, H, W, K, S);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(nthreads()) if (planes > 8)
    for (int p = 0; p < planes; p++) {
        const float *x = in + (size_t)p * H * W;
        float *y = l->out + (size_t)p * OH * OW;
        int32_t *am = l->argmax + (size_t)p * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int i0 = 2 * oh * W + 2 * ow, idx[4] = {i0, i0 + 1, i0 + W, i0 + W + 1};
                int best = i0;
                float mx = x[i0];
                for (int k = 1; k < 4; k++) /* first maximum wins; NaN propagates */
                    if (!isnan(mx) && (x[idx[k]] > mx || isnan(x[idx[k]])))
                        mx = x[idx[k]], best = idx[k];
                y[oh * OW + ow] = mx;
                am[oh * OW + ow] = best;
            }
    }
}

static void maxpool_backward(st_layer *l, const float *dout, float *dinp, int n)
{
    int planes = n * l->in_c, HW = l->in_h * l->in_w, OHW = l->out_h * l->out_w;
#pragma omp parallel for schedule(static) num_threads(nthreads()) if (planes > 8)
    for (int p = 0; p < planes; p++) {
        float *dx = dinp + (size_t)p * HW;
        const float *dy = dout + (size_t)p * OHW;
        const int32_t *am = l->argmax + (size_t)p * OHW;
        memset(dx, 0, sizeof(float) * (size_t)HW);
        for (int o = 0; o < OHW; o++)
            dx[am[o]] += dy[o];
    }
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

static void relu_forward(float *out, const float *in, size_t total)
{
#pragma omp parallel for schedule(static) num_threads(nthreads()) if (total > 65536)
    for (size_t i = 0; i < total; i++)
        out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

static void relu_backward(float *dinp, const float *dout, const float *out, size_t total)
{
#pragma omp parallel for schedule(static) num_threads(nthreads()) if (total > 65536)
    for (size_t i = 0; i < total; i++)
        dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
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
        else {
            st_conv_shape s = conv_shape(l);
            st_conv2d_forward(l->out, in, l->w, l->b, &s, n, m->ws, m->ws_threads);
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
                bn_train_forward(l, in, n);
        } else if (ref)
            batchnorm2d_forward_eval_ref(l->out, in, l->w, l->b, l->running_mean, l->running_var,
                                         n, l->in_c, l->in_h * l->in_w, ST_BN_EPS);
        else
            bn_eval_forward(l, in, n);
        break;
    case ST_L_RELU:
        if (ref)
            relu_forward_ref(l->out, in, total);
        else
            relu_forward(l->out, in, total);
        break;
    case ST_L_MAXPOOL:
        if (ref)
            maxpool2d_forward_ref(l->out, l->argmax, in, n, l->in_c, l->in_h, l->in_w, l->pool.k,
                                  l->pool.s);
        else
            maxpool_forward(l, in, n);
        break;
    case ST_L_DROPOUT:
        if (m->training && m->dropout_enabled)
            dropout_forward_ref(l->out, l->mask, in, total, l->drop.p, &m->rng);
        else {
            memcpy(l->out, in, total * sizeof(float));
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
            st_conv2d_backward(dinp, l->dw, l->db, dout, in, l->w, &s, n, m->ws, m->ws_threads);
        }
        break;
    case ST_L_BN:
        if (ref)
            batchnorm2d_backward_ref(dinp, l->dw, l->db, dout, in, l->save_mean, l->save_invstd,
                                     l->w, n, l->in_c, l->in_h * l->in_w);
        else
            bn_backward(l, in, dout, dinp, n);
        break;
    case ST_L_RELU:
        if (dinp) {
            if (ref)
                relu_backward_ref(dinp, dout, l->out, total);
            else
                relu_backward(dinp, dout, l->out, total);
        }
        break;
    case ST_L_MAXPOOL:
        if (dinp) {
            if (ref)
                maxpool2d_backward_ref(dinp, dout, l->argmax, n, l->in_c, l->in_h, l->in_w,
                                       l->out_h, l->out_w);
            else
                maxpool_backward(l, dout, dinp, n);
        }
        break;
    case ST_L_DROPOUT:
        if (dinp)
            dropout_backward_ref(dinp, dout, l->mask, total);
        break;
    case ST_L_LINEAR:
        if (ref)
            linear_backward_ref(dinp, l->dw, l->db, dout, in, l->w, n, l->lin.in, l->lin.out);
        else
            linear_backward(l, in, dout, dinp, n);
        break;
    case ST_L_FLATTEN:
        if (dinp)
            memcpy(dinp, dout, total * sizeof(float));
        break;
    }
}

float st_cross_entropy(float *dlogits, const float *logits, const uint8_t *labels, int n, int c)
{
    return cross_entropy_ref(dlogits, logits, labels, n, c);
}
