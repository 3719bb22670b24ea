/* layers.c - reference kernels: the plain loops every fast kernel is tested against.
 * See layers.h for shapes and conventions (backward overwrites dinp, accumulates parameter
 * gradients). Sums that PyTorch accumulates in double on the CPU (batch-norm statistics, the loss)
 * are accumulated in double here too. */
#include "layers.h"
#include "gemm.h"
#include "internal.h"

#include <math.h>
#include <string.h>

void conv2d_forward_ref(float *out, const float *inp, const float *w, const float *b, int N, int C,
                        int H, int W, int OC, int KH, int KW, int stride, int pad)
{
    int OH = st_conv_out_size(H, KH, stride, pad), OW = st_conv_out_size(W, KW, stride, pad);
    for (int n = 0; n < N; n++)
        for (int oc = 0; oc < OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    float acc = b ? b[oc] : 0.0f;
                    for (int c = 0; c < C; c++)
                        for (int kh = 0; kh < KH; kh++) {
                            int ih = oh * stride - pad + kh;
                            if (ih < 0 || ih >= H)
                                continue;
                            for (int kw = 0; kw < KW; kw++) {
                                int iw = ow * stride - pad + kw;
                                if (iw < 0 || iw >= W)
                                    continue;
                                acc += inp[((size_t)(n * C + c) * H + ih) * W + iw] *
                                       w[((size_t)(oc * C + c) * KH + kh) * KW + kw];
                            }
                        }
                    out[((size_t)(n * OC + oc) * OH + oh) * OW + ow] = acc;
                }
}

void conv2d_backward_ref(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, int N, int C, int H, int W, int OC, int KH, int KW,
                         int stride, int pad)
{
    int OH = st_conv_out_size(H, KH, stride, pad), OW = st_conv_out_size(W, KW, stride, pad);
    if (dinp)
        memset(dinp, 0, sizeof(float) * (size_t)N * C * H * W);
    for (int n = 0; n < N; n++)
        for (int oc = 0; oc < OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    float g = dout[((size_t)(n * OC + oc) * OH + oh) * OW + ow];
                    if (db)
                        db[oc] += g;
                    for (int c = 0; c < C; c++)
                        for (int kh = 0; kh < KH; kh++) {
                            int ih = oh * stride - pad + kh;
                            if (ih < 0 || ih >= H)
                                continue;
                            for (int kw = 0; kw < KW; kw++) {
                                int iw = ow * stride - pad + kw;
                                if (iw < 0 || iw >= W)
                                    continue;
                                size_t ii = ((size_t)(n * C + c) * H + ih) * W + iw;
                                size_t wi = ((size_t)(oc * C + c) * KH + kh) * KW + kw;
                                dw[wi] += g * inp[ii];
                                if (dinp)
                                    dinp[ii] += g * w[wi];
                            }
                        }
                }
}

void batchnorm2d_forward_train_ref(float *out, float *save_mean, float *save_invstd,
                                   float *running_mean, float *running_var, const float *inp,
                                   const float *gamma, const float *beta, int N, int C, int HW,
                                   float momentum, float eps)
{
    size_t M = (size_t)N * HW;
    for (int c = 0; c < C; c++) {
        double sum = 0.0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++)
                sum += inp[((size_t)n * C + c) * HW + i];
        double mean = sum / (double)M;
        double ss = 0.0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                double d = inp[((size_t)n * C + c) * HW + i] - mean;
                ss += d * d;
            }
        double var = ss / (double)M;
        float invstd = (float)(1.0 / sqrt(var + eps));
        float fmean = (float)mean;
        save_mean[c] = fmean;
        save_invstd[c] = invstd;
        double unbiased = M > 1 ? ss / (double)(M - 1) : var;
        running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
        running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t k = ((size_t)n * C + c) * HW + i;
                out[k] = (inp[k] - fmean) * invstd * gamma[c] + beta[c];
            }
    }
}

void batchnorm2d_forward_eval_ref(float *out, const float *inp, const float *gamma,
                                  const float *beta, const float *running_mean,
                                  const float *running_var, int N, int C, int HW, float eps)
{
    for (int c = 0; c < C; c++) {
        float invstd = 1.0f / sqrtf(running_var[c] + eps);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t k = ((size_t)n * C + c) * HW + i;
                out[k] = (inp[k] - running_mean[c]) * invstd * gamma[c] + beta[c];
            }
    }
}

void batchnorm2d_backward_ref(float *dinp, float *dgamma, float *dbeta, const float *dout,
                              const float *inp, const float *save_mean, const float *save_invstd,
                              const float *gamma, int N, int C, int HW)
{
    size_t M = (size_t)N * HW;
    for (int c = 0; c < C; c++) {
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t k = ((size_t)n * C + c) * HW + i;
                double xhat = (double)(inp[k] - save_mean[c]) * save_invstd[c];
                sum_dy += dout[k];
                sum_dy_xhat += dout[k] * xhat;
            }
        dbeta[c] += (float)sum_dy;
        dgamma[c] += (float)sum_dy_xhat;
        if (!dinp)
            continue;
        double mean_dy = sum_dy / (double)M, mean_dy_xhat = sum_dy_xhat / (double)M;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t k = ((size_t)n * C + c) * HW + i;
                double xhat = (double)(inp[k] - save_mean[c]) * save_invstd[c];
                dinp[k] = (float)((dout[k] - mean_dy - xhat * mean_dy_xhat) *
                                  (double)save_invstd[c] * gamma[c]);
            }
    }
}

void relu_forward_ref(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void relu_backward_ref(float *dinp, const float *dout, const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

void maxpool2d_forward_ref(float *out, int32_t *argmax, const float *inp, int N, int C, int H,
                           int W, int K, int S)
{
    int OH = (H - K) / S + 1, OW = (W - K) / S + 1;
    for (int p = 0; p < N * C; p++) {
        const float *x = inp + (size_t)p * H * W;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int best = oh * S * W + ow * S;
                float m = x[best];
                for (int kh = 0; kh < K; kh++)
                    for (int kw = 0; kw < K; kw++) {
                        int i = (oh * S + kh) * W + ow * S + kw;
                        if (x[i] > m || isnan(x[i])) {
                            m = x[i];
                            best = i;
                            if (isnan(m))
                                goto done;
                        }
                    }
            done:
                out[((size_t)p * OH + oh) * OW + ow] = m;
                argmax[((size_t)p * OH + oh) * OW + ow] = best;
            }
    }
}

void maxpool2d_backward_ref(float *dinp, const float *dout, const int32_t *argmax, int N, int C,
                            int H, int W, int OH, int OW)
{
    memset(dinp, 0, sizeof(float) * (size_t)N * C * H * W);
    for (int p = 0; p < N * C; p++)
        for (int o = 0; o < OH * OW; o++)
            dinp[(size_t)p * H * W + argmax[(size_t)p * OH * OW + o]] +=
                dout[(size_t)p * OH * OW + o];
}

void dropout_forward_ref(float *out, float *mask, const float *inp, size_t n, float p, st_rng *rng)
{
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    if (!(p > 0.0f)) { /* no draws: the identity */
        for (size_t i = 0; i < n; i++) {
            mask[i] = scale;
            out[i] = inp[i] * scale;
        }
        return;
    }
    uint64_t key = st_rng_next(rng), threshold = st_dropout_threshold(p);
    for (size_t lo = 0, b = 0; lo < n; lo += ST_DROPOUT_BLOCK, b++) {
        size_t len = n - lo < ST_DROPOUT_BLOCK ? n - lo : ST_DROPOUT_BLOCK;
        st_dropout_block(out + lo, mask + lo, inp + lo, len, key, b, threshold, scale);
    }
}

void dropout_backward_ref(float *dinp, const float *dout, const float *mask, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dinp[i] = dout[i] * mask[i];
}

void linear_forward_ref(float *out, const float *inp, const float *w, const float *b, int N, int IN,
                        int OUT)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            float acc = b ? b[o] : 0.0f;
            for (int i = 0; i < IN; i++)
                acc += inp[(size_t)n * IN + i] * w[(size_t)o * IN + i];
            out[(size_t)n * OUT + o] = acc;
        }
}

void linear_backward_ref(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, int N, int IN, int OUT)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            float g = dout[(size_t)n * OUT + o];
            if (db)
                db[o] += g;
            for (int i = 0; i < IN; i++)
                dw[(size_t)o * IN + i] += g * inp[(size_t)n * IN + i];
        }
    if (dinp)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < IN; i++) {
                float acc = 0.0f;
                for (int o = 0; o < OUT; o++)
                    acc += dout[(size_t)n * OUT + o] * w[(size_t)o * IN + i];
                dinp[(size_t)n * IN + i] = acc;
            }
}

float cross_entropy_ref(float *dlogits, const float *logits, const uint8_t *labels, int N, int C)
{
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * C;
        float mx = z[0];
        for (int c = 1; c < C; c++)
            mx = z[c] > mx ? z[c] : mx;
        double se = 0.0;
        for (int c = 0; c < C; c++)
            se += exp((double)z[c] - mx);
        double lse = mx + log(se);
        total += lse - z[labels[n]];
        if (dlogits)
            for (int c = 0; c < C; c++) {
                double p = exp((double)z[c] - lse);
                dlogits[(size_t)n * C + c] = (float)((p - (c == labels[n])) / N);
            }
    }
    return (float)(total / N);
}

/* The element-wise updates of torch.optim.Adam and SGD (their single-tensor path, PyTorch's
 * default on the CPU) as ATen's vectorised CPU kernels compute them, operation for operation:
 *   Adam: exp_avg.mul_(b1).add_(grad, alpha=1-b1); exp_avg_sq.mul_(b2).addcmul_(grad, grad,
 *         value=1-b2); denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps);
 *         param.addcdiv_(exp_avg, denom, value=-step_size), i.e. param + (value * m) / denom
 *   SGD:  buf.mul_(momentum).add_(grad) (alpha 1: the same fused or not); param.add_(d, alpha=-lr)
 * ATen's add_ with alpha and addcmul_ are fused multiply-adds (vec::fmadd) at its AVX2 and
 * AVX-512 levels and plain multiplies and adds at its default level; so are they here at
 * Stride's AVX2 level and up (fused) and at the portable level (not). On an x86 CPU each level
 * then matches PyTorch 1.13 at the same level to the bit (tests/gen_ref.py records which kind
 * made the reference; test_layers.c compares bit for bit where the kinds agree). The bias
 * corrections are computed in double, the element-wise updates in float. */
static inline __attribute__((always_inline)) void
adam_body(float *restrict param, const float *restrict grad, float *restrict m,
          float *restrict v, size_t n, float step_size, float bc2_sqrt, float b1, float b2,
          float one_b1, float one_b2, float feps, int fused)
{
    for (size_t i = 0; i < n; i++) {
        float g = grad[i], mb = m[i] * b1, vb = v[i] * b2, cg = one_b2 * g;
        float mi = fused ? fmaf(g, one_b1, mb) : mb + g * one_b1;
        float vi = fused ? fmaf(cg, g, vb) : vb + cg * g;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + feps;
        param[i] = param[i] + (-step_size * mi) / denom;
    }
}

static inline __attribute__((always_inline)) void
sgd_body(float *restrict param, const float *restrict grad, float *restrict buf, size_t n,
         float flr, float mom, int momentum, int first, int fused)
{
    for (size_t i = 0; i < n; i++) {
        float d = grad[i];
        if (momentum) {
            buf[i] = first ? d : buf[i] * mom + d;
            d = buf[i];
        }
        param[i] = fused ? fmaf(d, -flr, param[i]) : param[i] + -flr * d;
    }
}

#if defined(ST_HAVE_X86_KERNELS) && defined(__GNUC__)
#define ST_FMA_LEVEL 1
__attribute__((target("avx2,fma"))) static void
adam_fused(float *restrict param, const float *restrict grad, float *restrict m,
           float *restrict v, size_t n, float step_size, float bc2_sqrt, float b1, float b2,
           float one_b1, float one_b2, float feps)
{
    adam_body(param, grad, m, v, n, step_size, bc2_sqrt, b1, b2, one_b1, one_b2, feps, 1);
}

__attribute__((target("avx2,fma"))) static void
sgd_fused(float *restrict param, const float *restrict grad, float *restrict buf, size_t n,
          float flr, float mom, int momentum, int first)
{
    sgd_body(param, grad, buf, n, flr, mom, momentum, first, 1);
}
#endif

/* Whether this CPU's kernels fuse the optimisers' multiply-adds (as PyTorch's would on it). */
static int optim_fused(void)
{
#if defined(ST_FMA_LEVEL)
    return st_cpu_level() >= ST_CPU_AVX2;
#else
    return 0;
#endif
}

void adam_update_ref(float *param, const float *grad, float *m, float *v, size_t n, double lr,
                     double beta1, double beta2, double eps, int64_t step)
{
    double bc1 = 1.0 - pow(beta1, (double)step);
    double bc2 = 1.0 - pow(beta2, (double)step);
    float step_size = (float)(lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float b1 = (float)beta1, b2 = (float)beta2;
    float one_b1 = (float)(1.0 - beta1), one_b2 = (float)(1.0 - beta2), feps = (float)eps;
#if defined(ST_FMA_LEVEL)
    if (optim_fused()) {
        adam_fused(param, grad, m, v, n, step_size, bc2_sqrt, b1, b2, one_b1, one_b2, feps);
        return;
    }
#endif
    adam_body(param, grad, m, v, n, step_size, bc2_sqrt, b1, b2, one_b1, one_b2, feps, 0);
}

void sgd_update_ref(float *param, const float *grad, float *buf, size_t n, double lr,
                    double momentum, int64_t step)
{
    float flr = (float)lr, mom = (float)momentum;
    int has_momentum = momentum != 0.0, first = step == 1;
#if defined(ST_FMA_LEVEL)
    if (optim_fused()) {
        sgd_fused(param, grad, buf, n, flr, mom, has_momentum, first);
        return;
    }
#endif
    sgd_body(param, grad, buf, n, flr, mom, has_momentum, first, 0);
}

int st_optim_fused(void)
{
    return optim_fused();
}

void init_uniform(float *x, size_t n, float bound, st_rng *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (2.0f * st_rng_uniform(rng) - 1.0f) * bound;
}
