/* conv.h - the fast Conv2d kernels (see conv.c). */
#ifndef STRIDE_CONV_H
#define STRIDE_CONV_H

#include "internal.h"
#include "team.h"

#define ST_CONV_GROUPS 32 /* the batch is cut into at most this many groups of images */

typedef struct st_conv_shape {
    int C, H, W;      /* input channels and size */
    int OC, KH, KW;   /* output channels, kernel */
    int stride, pad;
    int OH, OW;       /* output size */
    int layout;       /* ST_CONV_NHWC_IN | ST_CONV_NHWC_OUT, or 0 (NCHW): see st_conv_nhwc_fits */
} st_conv_shape;

/* Layouts of a training conv's tensors (st_conv_shape.layout), for st_conv2d_forward (without
 * relu or wcache) and st_conv2d_backward only: NHWC_IN, the input and its gradient are
 * channels-last (N x H x W x C); NHWC_OUT, the output and its gradient are (N x OH x OW x OC),
 * and so are, with a batch norm after the conv (st_conv_bn_grad), its x and, with a pool, the
 * pool's dout and xmax (N x OH/2 x OW/2 x OC) and argmax (the pixel, oh * OW + ow, of each). The
 * values are those of the NCHW layout to the bit (the bias gradient and the batch norm's sums
 * too); only the memory order changes, which spares the transposes between the Winograd and
 * one-channel paths, which compute channels-last, and NCHW. */
#define ST_CONV_NHWC_IN 1
#define ST_CONV_NHWC_OUT 2
/* Whether this shape and batch size run with these layouts: channels in and out multiples of 8
 * (at most ST_CONV_NHWC_MAX_CH), and each side channels-last only by Winograd or the one-channel
 * path (NHWC_IN also with one input channel, where both layouts are the same). */
#define ST_CONV_NHWC_MAX_CH 256
int st_conv_nhwc_fits(const st_conv_shape *s, int N, int layout);

/* Floats of workspace st_conv2d_forward / st_conv2d_backward need for batches of up to max_batch
 * with up to nthreads threads. */
size_t st_conv_ws_floats(const st_conv_shape *s, int max_batch, int nthreads);

/* Same contracts as conv2d_forward_ref / conv2d_backward_ref (layers.h); ws has
 * st_conv_ws_floats(s, >= N, nthreads) floats (8-byte aligned, as malloc gives).
 * stats: NULL, or [OC][2] doubles receiving the sum and the sum of squares of each output
 * channel over the batch (what a following batch norm needs), in a fixed order.
 * relu (only without stats): the output is max(conv + bias, 0).
 * wcache: NULL, or st_conv_wcache_floats(s) floats (zeroed before first use) kept with these
 * weights between calls: their Winograd transform, redone only when they change (see
 * st_conv_winograd). Worth it where the weights change rarely (evaluation). */
void st_conv2d_forward(float *out, const float *inp, const float *w, const float *b,
                       const st_conv_shape *s, int N, float *ws, int nthreads, double *stats,
                       int relu, float *wcache);
/* Evaluation: out = max(conv(inp, w) * scale[oc] + shift[oc], 0) (without the max: relu = 0),
 * i.e. a conv without bias followed by a per-channel affine map (a batch norm). The GEMM is run
 * in whichever orientation wastes less of the micro-kernel's tiles for this shape: W * col, or
 * col^T * W^T with pixels along the tile's rows (OC = 16, 32, 64 fills 16-wide tiles exactly).
 * pooled: NULL, or room for the 2x2, stride-2 max pool of out (N x OC x OH/2 x OW/2, PyTorch's
 * rule for ties and NaN): where this shape's path can (every one but the untransposed GEMM),
 * the pool's output is written there as the values are made, out is not written, and it returns
 * 1; else it returns 0 (out written, not pooled). */
int st_conv2d_forward_affine(float *out, float *pooled, const float *inp, const float *w,
                             const float *scale, const float *shift, const st_conv_shape *s,
                             int N, float *ws, int nthreads, int relu, float *wcache);
/* Whether st_conv2d_forward_affine pools as it writes for this shape and batch (cached: with a
 * weight cache). */
int st_conv_forward_pools(const st_conv_shape *s, int N, int cached);
/* Whether st_conv2d_forward and st_conv2d_forward_affine run their GEMM as col^T * W^T for this
 * shape and batch on this CPU (the same products to the bit, tiled along the other side). */
int st_conv_forward_transposed(const st_conv_shape *s, int N);
/* Whether the forward and the input gradient of this shape and batch size run by Winograd
 * F(m x m, 3x3) (st_conv_winograd_tile) instead of im2col + GEMM: 3x3 kernels, stride 1,
 * padding 1, channels in and out multiples of 8, and at least ST_CONV_WINOGRAD_MIN_BATCH images
 * (the weights are transformed at every call; for one image that costs what it saves). A
 * forward with a weight cache runs by Winograd at any batch size for these shapes. */
#define ST_CONV_WINOGRAD_MIN_BATCH 4
int st_conv_winograd(const st_conv_shape *s, int N);
/* Whether the forward of this shape runs without im2col: one input channel and stride 1 (the
 * micro-kernel reads the padded image in place, see conv.c). */
int st_conv_direct(const st_conv_shape *s);
/* Floats of a forward's weight cache (see st_conv2d_forward): 0 where Winograd never serves. */
size_t st_conv_wcache_floats(const st_conv_shape *s);
/* For tests and benchmarks: 0 turns Winograd off (every shape by im2col + GEMM), 1 back on (the
 * default). Not while another thread is inside a conv. */
void st_conv_set_winograd(int on);
/* Winograd's output tile size m for this shape (4 or 2: fewer multiplications once the last
 * tiles are padded out), or 0 where Winograd does not serve it. */
int st_conv_winograd_tile(const st_conv_shape *s);
/* For tests and benchmarks: 2 or 4 runs every Winograd conv with that tile size, 0 lets the
 * shape choose (the default). Workspaces fit either. Not while another thread is inside a conv,
 * nor between calls sharing a weight cache (the cache holds the transform for one tile size). */
void st_conv_set_winograd_tile(int m);
/* A training batch norm after the conv (maybe with a ReLU, maybe then a 2x2 max pool) whose input
 * gradient the conv's backward computes as it reads its output gradient:
 *     dy = st_bn_dx(d, x, mean, invstd, coef[3 oc], coef[3 oc + 1], coef[3 oc + 2])
 * where x is the conv's output (the batch norm's input) and d the gradient of the batch norm's
 * output, masked by the ReLU (relu: where st_bn_out(x, mean, invstd, gamma, beta) > 0). Without
 * a pool (argmax NULL), dout holds d. With one, dout is the pool's output gradient, pool_hw values
 * per plane, and d is that value at the plane's argmax positions, 0 elsewhere; xmax holds x at
 * those positions (the same layout as dout). */
typedef struct st_conv_bn_grad {
    const float *x, *mean, *invstd, *gamma, *beta;
    const float *coef;
    int relu;
    const int32_t *argmax;
    const float *xmax;
    int pool_hw;
} st_conv_bn_grad;

/* Evaluation of one image by a team of threads (team.h; see conv.c). Whether this shape has a
 * team path: one input channel and stride 1, or Winograd with a weight cache (cached). */
int st_conv_member_fits(const st_conv_shape *s, int cached);
/* On one thread, before the team starts: brings wcache up to date with w (Winograd). */
void st_conv_member_weights(const float *w, const st_conv_shape *s, float *wcache);
/* Member me's part of st_conv2d_forward_affine(out, pooled, inp, ..., N = 1, ...) (scale NULL: 1;
 * shift: the bias or NULL; pooled: NULL, or always pooled there), every member of the team
 * calling it with the same arguments, as the team's next phases; ws is shared by the team
 * (nthreads > every member's id). */
void st_conv_forward_member(float *out, float *pooled, const float *inp, const float *w,
                            const float *scale, const float *shift, const st_conv_shape *s,
                            float *ws, int nthreads, int relu, const float *wcache,
                            st_member *me);

/* bn: NULL, or dout is the gradient of that batch norm's output (see st_conv_bn_grad). */
void st_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const st_conv_shape *s, int N, float *ws, int nthreads,
                        const st_conv_bn_grad *bn);

#endif
