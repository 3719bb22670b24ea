/* layers.h - the reference kernels of every layer, loss and optimiser (float32, NCHW).
 *
 * Style (after llm.c): a layer is a pair of free functions with the sizes in the signature and the
 * shapes in a comment. Forward functions overwrite their outputs. Backward functions OVERWRITE the
 * input gradient `dinp` (which may be NULL when it is not needed) and ACCUMULATE (+=) into
 * parameter gradients, which the caller zeroes once per step.
 *
 * These are the clear, obviously-correct reference versions; the fast kernels used in training are
 * tested against them (tests/test_fast.c).
 */
#ifndef STRIDE_LAYERS_H
#define STRIDE_LAYERS_H

#include "stride.h"

#include <stdint.h>

/* Output size of a convolution or pooling window along one dimension. */
static inline int st_conv_out_size(int in, int k, int stride, int pad)
{
    return (in + 2 * pad - k) / stride + 1;
}

/* Conv2d. inp (N,C,H,W), w (OC,C,KH,KW), b (OC) or NULL, out (N,OC,OH,OW) with
 * OH = st_conv_out_size(H, KH, stride, pad), OW likewise. Zero padding. */
void conv2d_forward_ref(float *out, const float *inp, const float *w, const float *b, int N, int C,
                        int H, int W, int OC, int KH, int KW, int stride, int pad);
void conv2d_backward_ref(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, int N, int C, int H, int W, int OC, int KH, int KW,
                         int stride, int pad);

/* BatchNorm2d, training mode. inp/out (N,C,HW); gamma, beta (C). Normalises with the biased batch
 * variance, eps inside the square root; saves the batch mean and 1/sqrt(var + eps) per channel
 * (save_mean, save_invstd) for the backward pass; updates running_mean and running_var (with the
 * unbiased variance) as running = (1 - momentum) * running + momentum * batch. */
void batchnorm2d_forward_train_ref(float *out, float *save_mean, float *save_invstd,
                                   float *running_mean, float *running_var, const float *inp,
                                   const float *gamma, const float *beta, int N, int C, int HW,
                                   float momentum, float eps);
/* BatchNorm2d, evaluation mode: normalises with the running statistics. */
void batchnorm2d_forward_eval_ref(float *out, const float *inp, const float *gamma,
                                  const float *beta, const float *running_mean,
                                  const float *running_var, int N, int C, int HW, float eps);
void batchnorm2d_backward_ref(float *dinp, float *dgamma, float *dbeta, const float *dout,
                              const float *inp, const float *save_mean, const float *save_invstd,
                              const float *gamma, int N, int C, int HW);

/* ReLU over n values; the backward pass uses the forward output (grad 0 where out <= 0). */
void relu_forward_ref(float *out, const float *inp, size_t n);
void relu_backward_ref(float *dinp, const float *dout, const float *out, size_t n);

/* MaxPool2d, no padding. inp (N,C,H,W), out (N,C,OH,OW), OH = (H - K) / S + 1. argmax (N,C,OH,OW)
 * holds the index within the H*W plane of the first maximum (PyTorch's tie rule); the backward
 * pass routes each output gradient there. NaN propagates as in PyTorch. */
void maxpool2d_forward_ref(float *out, int32_t *argmax, const float *inp, int N, int C, int H,
                           int W, int K, int S);
void maxpool2d_backward_ref(float *dinp, const float *dout, const int32_t *argmax, int N, int C,
                            int H, int W, int OH, int OW);

/* Dropout (inverted): mask[i] is 0 or 1 / (1 - p), drawn from rng (uniform < p drops). out = inp *
 * mask. With p == 0 the mask is all ones. */
void dropout_forward_ref(float *out, float *mask, const float *inp, size_t n, float p, st_rng *rng);
void dropout_backward_ref(float *dinp, const float *dout, const float *mask, size_t n);

/* Linear. inp (N,IN), w (OUT,IN), b (OUT) or NULL, out (N,OUT): out = inp w^T + b. */
void linear_forward_ref(float *out, const float *inp, const float *w, const float *b, int N, int IN,
                        int OUT);
void linear_backward_ref(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, int N, int IN, int OUT);

/* Cross-entropy over logits (N,C) with integer labels, mean over the batch (log-softmax fused with
 * NLL). Returns the loss; writes dlogits (N,C) = (softmax - onehot) / N when dlogits != NULL. */
float cross_entropy_ref(float *dlogits, const float *logits, const uint8_t *labels, int N, int C);

/* Optimisers over n parameters (PyTorch semantics). step is the 1-based step number after the
 * increment (Adam's bias correction). */
void adam_update_ref(float *param, const float *grad, float *m, float *v, size_t n, double lr,
                     double beta1, double beta2, double eps, int64_t step);
void sgd_update_ref(float *param, const float *grad, float *buf, size_t n, double lr,
                    double momentum, int64_t step);
/* 1 if those updates fuse their multiply-adds on this CPU (its kernel level: AVX2 and up on x86),
 * as PyTorch's CPU kernels do at the same level; 0 if not. */
int st_optim_fused(void);

/* PyTorch's default initialisation of Conv2d and Linear: weight and bias uniform in
 * [-1/sqrt(fan_in), 1/sqrt(fan_in)) (Kaiming-uniform with a = sqrt(5) gives exactly this bound). */
void init_uniform(float *x, size_t n, float bound, st_rng *rng);

#endif
