/* conv.c - the fast Conv2d: im2col + GEMM over groups of images, threaded and deterministic.
 *
 * The batch is cut into groups of consecutive images with about 256 KiB of im2col matrix each (at
 * most ST_CONV_GROUPS groups); the cut depends on the batch size and the layer's shape only, never
 * on the number of threads. For a group of G images (P = OH*OW, CKK = C*KH*KW):
 *   forward:  col[CKK, G*P] = im2col(images), y[OC, G*P] = W[OC, CKK] * col, then y is scattered
 *             into NCHW with the bias (or a batch norm's scale and shift) added; or, where that
 *             fills the micro-kernel's tiles better, y^T = col^T * W^T and a transposing epilogue
 *             (st_conv_forward_transposed: the same FMA chains, the same result); either way
 *             optionally with each channel's sum and sum of squares for the batch norm after it;
 *   backward: dy[OC, G*P] gathered from NCHW (or computed there from the following batch norm's
 *             output gradient, st_conv_bn_grad), dW_g = dy * col^T, db_g = row sums of dy,
 *             dcol = W^T * dy, dX = col2im(dcol).
 * 3x3 convs with stride 1 and padding 1 (channels multiples of 8, 4 or more images, or any number
 * in evaluation with a weight cache: the CNN's conv2 and conv3) run their forward, input gradient
 * and weight gradient by Winograd F(4x4, 3x3) or F(2x2, 3x3) instead, with no im2col (see
 * st_conv_winograd and the section below), a few images of the group at a time, their 36 (or 16)
 * small products straight through the GEMM micro-kernel. Convs with one input channel and
 * stride 1 (conv1) run their forward and weight gradient without im2col, the micro-kernel reading
 * the padded image in place.
 * In evaluation, a conv whose batch norm, ReLU and 2x2 max pool follow can write the pool's output
 * directly (st_conv2d_forward_affine's pooled; affine_pool_transpose).
 * In training, the Winograd and one-channel paths can also take their input, and give their
 * output, channels-last (st_conv_shape.layout: the model's NHWC chain, kernels.c): they compute
 * channels-last (y^T, the dy they transform), so the transposes to and from NCHW are left out;
 * every value is the NCHW layout's to the bit (the sums kept in the same lanes and order).
 * Groups are handed to threads as they finish; the per-group weight gradients and sums are then
 * added in group order, so the result is bit-identical whatever the number of threads. With fewer
 * groups than threads the im2col path's GEMMs are threaded instead, and the Winograd and
 * one-channel paths run on one thread (a parallel region per conv costs about what a second
 * thread saves on one image). Evaluation of one image can instead run by a team of threads
 * that stays together through the network (team.h; st_conv_forward_member at the end of this
 * file).
 */
#include "conv.h"

#include "gemm.h"

#include <omp.h>
#include <stdatomic.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

static int wino_fits(const st_conv_shape *s);
static long wino_image_floats(const st_conv_shape *s);

/* Images per group: enough for about 64K floats (256 KiB) of im2col matrix, so that a group's
 * working set stays in L2 while its GEMMs are as long as possible; where Winograd may serve the
 * shape, at least as many as one of its chunks holds (its weight gradient's products are then
 * as long as they can be, and transformed back once per group). */
static int images_per_group(const st_conv_shape *s)
{
    long col = (long)s->C * s->KH * s->KW * s->OH * s->OW;
    long g = 65536 / (col > 0 ? col : 1);
    if (wino_fits(s)) {
        long gw = 65536 / wino_image_floats(s);
        g = gw > g ? gw : g;
    }
    return g < 1 ? 1 : (int)g;
}

/* The groups depend on the batch size and the layer's shape only, never on the threads. */
static int num_groups(const st_conv_shape *s, int N)
{
    int per = images_per_group(s);
    int ng = (N + per - 1) / per;
    return ng < ST_CONV_GROUPS ? ng : ST_CONV_GROUPS;
}

static int max_group(const st_conv_shape *s, int N)
{
    int ng = num_groups(s, N);
    return (N + ng - 1) / ng;
}

static int direct_fits(const st_conv_shape *s);

/* Floats of the zero-padded copy of one image (stride-1 path; its rows are read in place), and
 * for the one-channel forward, which reads a little past its end, DIRECT_SLACK floats of zeros. */
#define DIRECT_SLACK 64
static size_t padded_floats(const st_conv_shape *s)
{
    if (s->stride != 1)
        return 0;
    return (size_t)s->C * (s->H + 2 * s->pad) * (s->W + 2 * s->pad) +
           (direct_fits(s) ? DIRECT_SLACK : 0);
}

#define WINO_NX_MAX 36 /* Winograd: transformed values per tile (a^2) for the largest tile */
static size_t wino_floats(const st_conv_shape *s);
static size_t wino_ld(size_t n);
static const float *cached_wino_weights(const float *w, const st_conv_shape *s, float *wcache);

/* A thread's col: im2col's [CKK][G*P], or (at least) the nx x C x OC floats of Winograd's
 * weight gradient in the transformed domain (wino_weight_grad), or one image's output gradient
 * channels-last and the sums for the one-channel weight gradient (direct_weight_grad), where
 * those run. */
static size_t col_floats(const st_conv_shape *s, size_t G)
{
    size_t P = (size_t)s->OH * s->OW, n = (size_t)s->C * s->KH * s->KW * G * P;
    size_t u = wino_fits(s) ? WINO_NX_MAX * wino_ld((size_t)s->C * s->OC) : 0;
    if (direct_fits(s)) {
        size_t OCp = (size_t)(s->OC + ST_GEMM_NR_MAX - 1) / ST_GEMM_NR_MAX * ST_GEMM_NR_MAX;
        size_t KWp = (size_t)(s->KW + ST_GEMM_MR_MAX - 1) / ST_GEMM_MR_MAX * ST_GEMM_MR_MAX;
        u = (P + (size_t)s->KH * KWp) * OCp;
    }
    return n > u ? n : u;
}

/* One thread's share: col (col_floats), y or dy [OC][G*P], the padded image; a multiple of 16
 * floats, so that what follows stays 64-byte aligned relative to ws. */
static size_t per_thread_floats(const st_conv_shape *s, size_t G)
{
    size_t P = (size_t)s->OH * s->OW;
    size_t n = col_floats(s, G) + (size_t)s->OC * G * P + padded_floats(s);
    return ((n + 15) & ~(size_t)15) + wino_floats(s);
}

/* The groups' partials after the threads' shares: backward, each group's weight and bias
 * gradient; forward, each group's channel sums (2 doubles per channel). */
static size_t partial_floats(const st_conv_shape *s)
{
    size_t CKK = (size_t)s->C * s->KH * s->KW;
    size_t partial = (size_t)ST_CONV_GROUPS * ((size_t)s->OC * CKK + (size_t)s->OC);
    size_t stats = (size_t)ST_CONV_GROUPS * 4 * (size_t)s->OC;
    return partial > stats ? partial : stats;
}

size_t st_conv_ws_floats(const st_conv_shape *s, int max_batch, int nthreads)
{
    size_t per_thread = per_thread_floats(s, (size_t)max_group(s, max_batch));
    size_t U = wino_fits(s) ? WINO_NX_MAX * (size_t)s->C * s->OC : 0; /* Winograd's weights */
    if (direct_fits(s)) /* the one-channel forward's weight panels */
        U = (size_t)(s->OC + 63) / 64 * 64 * s->KH * s->KW;
    return per_thread * (size_t)nthreads + partial_floats(s) + U;
}

/* Short rows (a row of a feature map: 7 to 28 floats here) are moved with fixed-size vector
 * chunks rather than library calls: v8 is 8 floats (one AVX register, two SSE ones). */
typedef float v8f __attribute__((vector_size(32), aligned(4), may_alias));
typedef float v4f __attribute__((vector_size(16), aligned(4), may_alias));
typedef int v4i __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));

/* dst[0..n) = src[0..n); overlapping chunks cover the tail (a copy may write a value twice). */
static inline void copy_short(float *restrict dst, const float *restrict src, int n)
{
    if (n >= 8) {
        int i = 0;
        for (; i + 8 < n; i += 8)
            *(v8f *)(dst + i) = *(const v8f *)(src + i);
        *(v8f *)(dst + n - 8) = *(const v8f *)(src + n - 8);
    } else if (n >= 4) {
        *(v4f *)dst = *(const v4f *)src;
        *(v4f *)(dst + n - 4) = *(const v4f *)(src + n - 4);
    } else {
        for (int i = 0; i < n; i++)
            dst[i] = src[i];
    }
}

/* dst[0..n) += src[0..n), each element once (no overlap: this one accumulates). */
static inline void add_short(float *restrict dst, const float *restrict src, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        *(v8f *)(dst + i) += *(const v8f *)(src + i);
    if (i + 4 <= n) {
        *(v4f *)(dst + i) += *(const v4f *)(src + i);
        i += 4;
    }
    for (; i < n; i++)
        dst[i] += src[i];
}

/* xp = img with `pad` zeros around each of its C planes: [C][H + 2 pad][W + 2 pad]. */
static void pad_image(float *restrict xp, const float *restrict img, const st_conv_shape *s)
{
    int Hp = s->H + 2 * s->pad, Wp = s->W + 2 * s->pad;
    for (int c = 0; c < s->C; c++) {
        float *plane = xp + (size_t)c * Hp * Wp;
        const float *src = img + (size_t)c * s->H * s->W;
        memset(plane, 0, sizeof(float) * (size_t)s->pad * Wp);
        for (int h = 0; h < s->H; h++) {
            float *r = plane + (size_t)(h + s->pad) * Wp;
            for (int i = 0; i < s->pad; i++)
                r[i] = r[s->pad + s->W + i] = 0.0f;
            copy_short(r + s->pad, src + (size_t)h * s->W, s->W);
        }
        memset(plane + (size_t)(s->pad + s->H) * Wp, 0, sizeof(float) * (size_t)s->pad * Wp);
    }
}

/* col[(c*KH + kh)*KW + kw][j*P + oh*OW + ow] for image j of the group; ldc = G*P.
 * Stride 1 reads a zero-padded copy xp of the image (scratch), so every row of col is a plain
 * copy of OW floats; other strides gather with bounds checks. */
static void im2col(float *col, size_t ldc, const float *img, const st_conv_shape *s, float *xp)
{
    if (s->stride == 1) {
        int Hp = s->H + 2 * s->pad, Wp = s->W + 2 * s->pad;
        pad_image(xp, img, s);
        for (int c = 0; c < s->C; c++)
            for (int kh = 0; kh < s->KH; kh++)
                for (int kw = 0; kw < s->KW; kw++) {
                    float *row = col + ((size_t)(c * s->KH + kh) * s->KW + kw) * ldc;
                    const float *src = xp + ((size_t)c * Hp + kh) * Wp + kw;
                    for (int oh = 0; oh < s->OH; oh++)
                        copy_short(row + (size_t)oh * s->OW, src + (size_t)oh * Wp, s->OW);
                }
        return;
    }
    for (int c = 0; c < s->C; c++)
        for (int kh = 0; kh < s->KH; kh++)
            for (int kw = 0; kw < s->KW; kw++) {
                float *row = col + ((size_t)(c * s->KH + kh) * s->KW + kw) * ldc;
                const float *plane = img + (size_t)c * s->H * s->W;
                for (int oh = 0; oh < s->OH; oh++) {
                    int ih = oh * s->stride - s->pad + kh;
                    float *r = row + (size_t)oh * s->OW;
                    if (ih < 0 || ih >= s->H) {
                        for (int ow = 0; ow < s->OW; ow++)
                            r[ow] = 0.0f;
                        continue;
                    }
                    const float *src = plane + (size_t)ih * s->W;
                    for (int ow = 0; ow < s->OW; ow++) {
                        int iw = ow * s->stride - s->pad + kw;
                        r[ow] = (iw >= 0 && iw < s->W) ? src[iw] : 0.0f;
                    }
                }
            }
}

/* dimg = col2im(dcol) for one image (overwritten). Each input element receives its terms in
 * (c, kh, kw, oh, ow) order starting from zero, whatever the path. Stride 1 accumulates into
 * the zero-padded scratch xp with vector adds of whole rows, then crops. */
static void col2im(float *dimg, const float *dcol, size_t ldc, const st_conv_shape *s, float *xp)
{
    size_t in_size = (size_t)s->C * s->H * s->W;
    if (s->stride == 1) {
        int Hp = s->H + 2 * s->pad, Wp = s->W + 2 * s->pad;
        memset(xp, 0, sizeof(float) * (size_t)s->C * Hp * Wp);
        for (int c = 0; c < s->C; c++)
            for (int kh = 0; kh < s->KH; kh++)
                for (int kw = 0; kw < s->KW; kw++) {
                    const float *row = dcol + ((size_t)(c * s->KH + kh) * s->KW + kw) * ldc;
                    float *dst = xp + ((size_t)c * Hp + kh) * Wp + kw;
                    for (int oh = 0; oh < s->OH; oh++)
                        add_short(dst + (size_t)oh * Wp, row + (size_t)oh * s->OW, s->OW);
                }
        for (int c = 0; c < s->C; c++)
            for (int h = 0; h < s->H; h++)
                copy_short(dimg + ((size_t)c * s->H + h) * s->W,
                           xp + ((size_t)c * Hp + h + s->pad) * Wp + s->pad, s->W);
        return;
    }
    memset(dimg, 0, sizeof(float) * in_size);
    for (int c = 0; c < s->C; c++)
        for (int kh = 0; kh < s->KH; kh++)
            for (int kw = 0; kw < s->KW; kw++) {
                const float *row = dcol + ((size_t)(c * s->KH + kh) * s->KW + kw) * ldc;
                float *plane = dimg + (size_t)c * s->H * s->W;
                for (int oh = 0; oh < s->OH; oh++) {
                    int ih = oh * s->stride - s->pad + kh;
                    if (ih < 0 || ih >= s->H)
                        continue;
                    const float *r = row + (size_t)oh * s->OW;
                    float *dst = plane + (size_t)ih * s->W;
                    for (int ow = 0; ow < s->OW; ow++) {
                        int iw = ow * s->stride - s->pad + kw;
                        if (iw >= 0 && iw < s->W)
                            dst[iw] += r[ow];
                    }
                }
            }
}

static void add_row(float *restrict dst, const float *restrict src, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] += src[i];
}

/* One plane of the batch norm's input gradient (st_conv_bn_grad, channel oc), n = H * W values:
 * from the plane's output gradient d, or with a pool from its pooled gradient d and argmax am;
 * then acc[k % 8] += dst[k] (the conv's bias gradient, st_add_lanes8). */
ST_VEC_CLONES static void bn_dx_sum(float *restrict dst, double *restrict acc,
                                   const float *restrict d, const int32_t *restrict am,
                                   const float *restrict xm, const float *restrict x,
                                   const st_conv_bn_grad *bn, int oc, int n)
{
    float mean = bn->mean[oc], invstd = bn->invstd[oc], g = bn->gamma[oc], b = bn->beta[oc];
    float mdy = bn->coef[3 * oc], mdyx = bn->coef[3 * oc + 1], scale = bn->coef[3 * oc + 2];
    if (am) { /* zero gradient but at the maxima (x there: xm), 256 at a time, then scattered */
        for (int k = 0; k < n; k++)
            dst[k] = st_bn_dx(0.0f, x[k], mean, invstd, mdy, mdyx, scale);
        float v[256];
        for (int o0 = 0; o0 < bn->pool_hw; o0 += 256) {
            int m = bn->pool_hw - o0 < 256 ? bn->pool_hw - o0 : 256;
            const float *xs = xm + o0;
            for (int o = 0; o < m; o++) {
                float dy = d[o0 + o];
                if (bn->relu)
                    dy = st_relu_mask(dy, st_bn_out(xs[o], mean, invstd, g, b));
                v[o] = st_bn_dx(dy, xs[o], mean, invstd, mdy, mdyx, scale);
            }
            for (int o = 0; o < m; o++)
                dst[am[o0 + o]] = v[o];
        }
    } else if (bn->relu) {
        for (int k = 0; k < n; k++) {
            float dy = st_relu_mask(d[k], st_bn_out(x[k], mean, invstd, g, b));
            dst[k] = st_bn_dx(dy, x[k], mean, invstd, mdy, mdyx, scale);
        }
    } else {
        for (int k = 0; k < n; k++)
            dst[k] = st_bn_dx(d[k], x[k], mean, invstd, mdy, mdyx, scale);
    }
    st_add_lanes8(acc, dst, n);
}

static int threads_for(int ngroups, int nthreads)
{
    int t = st_get_threads();
    if (t > nthreads)
        t = nthreads;
    if (t > ngroups)
        t = ngroups;
    return t < 1 ? 1 : t;
}

/* dst[0..n) = src[0..n) * scale + bias, then max(v, 0) with relu (NaN stays NaN). With acc1/acc2
 * (8 double lanes each; only for scale 1 and no ReLU) also the sum and the sum of squares of the
 * values written. */
static void scatter_row(float *restrict dst, const float *restrict src, float scale, float bias,
                        int n, double *restrict acc1, double *restrict acc2, int relu)
{
    if (!acc1) {
        for (int p = 0; p < n; p++) {
            float v = src[p] * scale + bias;
            dst[p] = relu ? st_relu(v) : v;
        }
        return;
    }
    int k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) {
            float v = src[k + j] + bias;
            dst[k + j] = v;
            acc1[j] += v;
            acc2[j] += (double)v * v;
        }
    for (; k < n; k++) {
        float v = src[k] + bias;
        dst[k] = v;
        acc1[k & 7] += v;
        acc2[k & 7] += (double)v * v;
    }
}

/* o[j][i] = r[i][j]: a 4 x 4 block transposed through vector shuffles (ST_SHUFFLE4: the compiler
 * lowers them to what the target has). */
static inline void transpose4(v4f o[4], const v4f r[4])
{
    v4f t0 = ST_SHUFFLE4(r[0], r[1], 0, 4, 1, 5), t1 = ST_SHUFFLE4(r[0], r[1], 2, 6, 3, 7);
    v4f t2 = ST_SHUFFLE4(r[2], r[3], 0, 4, 1, 5), t3 = ST_SHUFFLE4(r[2], r[3], 2, 6, 3, 7);
    o[0] = ST_SHUFFLE4(t0, t2, 0, 1, 4, 5), o[1] = ST_SHUFFLE4(t0, t2, 2, 3, 6, 7);
    o[2] = ST_SHUFFLE4(t1, t3, 0, 1, 4, 5), o[3] = ST_SHUFFLE4(t1, t3, 2, 3, 6, 7);
}

/* max(v, 0) lane by lane, NaN kept (st_relu's rule). */
static inline v4f relu4(v4f v)
{
    v4f zero = {0, 0, 0, 0};
    return (v4f)((v4i)v & ((v > zero) | (v != v)));
}

/* The affine map of channels [o, o + 4): scales (NULL: 1) and shifts (NULL: 0). */
static inline void affine4(v4f *k, v4f *b, const float *scale, const float *shift, int o)
{
    *k = (v4f){1, 1, 1, 1}, *b = (v4f){0, 0, 0, 0};
    if (scale)
        memcpy(k, scale + o, sizeof *k);
    if (shift)
        memcpy(b, shift + o, sizeof *b);
}

/* dst[oc * ldd + p] = f(src[p * lds + oc]) for p < P, oc < OC, f(v) = v * scale[oc] + shift[oc] (scale
 * or shift NULL: 1 or 0), then max(f, 0) with relu (NaN stays NaN): the channels' affine map and a
 * transpose in one pass, in 4 x 4 blocks (transpose4). With stats (only without relu), also adds
 * the sum and the sum of squares of each channel's values written to stats[2 oc],
 * stats[2 oc + 1], in double: one lane per pixel p mod 4. */
ST_VEC_CLONES static void affine_transpose(float *restrict dst, size_t ldd,
                                           const float *restrict src, size_t lds, int P, int OC,
                                           const float *scale, const float *shift, int relu,
                                           double *restrict stats)
{
    int p4 = P & ~3, oc4 = OC & ~3;
    for (int o = 0; o < oc4; o += 4) {
        v4f k, b;
        affine4(&k, &b, scale, shift, o);
        v4d s1[4] = {0}, s2[4] = {0}; /* [pixel lane] over 4 channels */
        for (int p = 0; p < p4; p += 4) {
            v4f r[4];
            for (int i = 0; i < 4; i++) {
                memcpy(&r[i], src + (size_t)(p + i) * lds + o, sizeof r[i]);
                r[i] = r[i] * k + b;
                if (relu)
                    r[i] = relu4(r[i]);
                if (stats) {
                    v4d d = ST_WIDEN4(r[i]);
                    s1[i] += d;
                    s2[i] += d * d;
                }
            }
            v4f c[4];
            transpose4(c, r);
            for (int i = 0; i < 4; i++)
                memcpy(dst + (size_t)(o + i) * ldd + p, &c[i], sizeof c[i]);
        }
        if (stats) {
            v4d t1 = (s1[0] + s1[1]) + (s1[2] + s1[3]), t2 = (s2[0] + s2[1]) + (s2[2] + s2[3]);
            for (int j = 0; j < 4; j++) {
                stats[2 * (o + j)] += t1[j];
                stats[2 * (o + j) + 1] += t2[j];
            }
        }
    }
    /* what the blocks left: the last P % 4 pixels, OC % 4 rows */
    for (int oc = p4 < P ? 0 : oc4; oc < OC; oc++) {
        float kk = scale ? scale[oc] : 1.0f, bb = shift ? shift[oc] : 0.0f;
        double a1 = 0.0, a2 = 0.0;
        for (int p = oc < oc4 ? p4 : 0; p < P; p++) {
            float v = src[(size_t)p * lds + oc] * kk + bb;
            v = relu ? st_relu(v) : v;
            dst[(size_t)oc * ldd + p] = v;
            a1 += v;
            a2 += (double)v * v;
        }
        if (stats) {
            stats[2 * oc] += a1;
            stats[2 * oc + 1] += a2;
        }
    }
}

/* The maximum so far p and the next candidate n of a max pool: n where it is greater, or a NaN
 * after a number (PyTorch's rule, as kernels.c's pool applies it), lane by lane. */
static inline v4f pool_max4(v4f p, v4f n)
{
    v4i t = ((n > p) | (n != n)) & (p == p);
    return (v4f)((t & (v4i)n) | (~t & (v4i)p));
}

static inline float pool_max1(float p, float n)
{
    return ((n > p) || n != n) && p == p ? n : p;
}

/* max(p, n) as pool_max4 takes it, for inputs known to hold no NaN: n where it is greater, else
 * p (ties keep p, so -0 and +0 come out as pool_max4 gives them). SSE's maxps is exactly that
 * (it returns its second operand unless the first is greater); elsewhere, a select. */
static inline v4f max4_nonan(v4f p, v4f n)
{
#if defined(__SSE__)
    return (v4f)_mm_max_ps((__m128)n, (__m128)p);
#else
    v4i t = n > p;
    return (v4f)((t & (v4i)n) | (~t & (v4i)p));
#endif
}

/* Lanes where a or b is a NaN: all ones. */
static inline v4i unordered4(v4f a, v4f b)
{
#if defined(__SSE__)
    return (v4i)_mm_cmpunord_ps((__m128)a, (__m128)b);
#else
    return (a != a) | (b != b);
#endif
}

/* One row of 2x2 windows for channels [o, o + 4) of affine_pool_transpose (d: the row's first
 * output of channel o; s0: its windows' top-left inputs, pixels ps and rows `row` floats
 * apart). raw: the window's input is chosen first (see affine_pool_transpose), fast: by maxps,
 * with a ReLU as max(v, 0), assuming no NaN; returns 1 if the row held one after all (its
 * values are then wrong: the caller writes the row again without fast), else 0. */
static inline __attribute__((always_inline)) int
pool_row4(float *restrict d, size_t ldd, const float *restrict s0, size_t row, size_t ps, int PW,
          v4f k, v4f b, v4i flip, int relu, int raw, int fast)
{
    v4i nan = {0, 0, 0, 0};
    for (int j = 0;; j += 4) {
        j = j > PW - 4 ? PW - 4 : j; /* the last four overlap: the same values again */
        v4f r[4], c[4];
        for (int q = 0; q < 4; q++) {
            const float *p = s0 + 2 * (size_t)(j + q) * ps;
            v4f v[4], zero = {0, 0, 0, 0};
            memcpy(&v[0], p, sizeof v[0]), memcpy(&v[1], p + ps, sizeof v[1]);
            memcpy(&v[2], p + row, sizeof v[2]), memcpy(&v[3], p + row + ps, sizeof v[3]);
            if (raw) {
                for (int e = 0; e < 4; e++)
                    v[e] = (v4f)((v4i)v[e] ^ flip);
                v4f m;
                if (fast) {
                    nan |= unordered4(v[0], v[1]) | unordered4(v[2], v[3]);
                    m = max4_nonan(max4_nonan(v[0], v[1]), max4_nonan(v[2], v[3]));
                    m = (v4f)((v4i)m ^ flip) * k + b;
                    r[q] = max4_nonan(zero, m); /* (m is no NaN: k, b finite, k nonzero) */
                } else {
                    m = pool_max4(pool_max4(v[0], v[1]), pool_max4(v[2], v[3]));
                    m = (v4f)((v4i)m ^ flip) * k + b;
                    r[q] = relu4(m);
                }
                continue;
            }
            for (int e = 0; e < 4; e++) {
                v[e] = v[e] * k + b;
                if (relu)
                    v[e] = relu4(v[e]);
            }
            r[q] = pool_max4(pool_max4(v[0], v[1]), pool_max4(v[2], v[3]));
        }
        transpose4(c, r);
        for (int e = 0; e < 4; e++)
            memcpy(d + (size_t)e * ldd + j, &c[e], sizeof c[e]);
        if (j == PW - 4)
            break;
    }
    return (nan[0] | nan[1] | nan[2] | nan[3]) != 0;
}

/* affine_transpose's values (without sums), 2x2 max-pooled with stride 2 as they are written:
 * src holds 2 * PH rows of OW pixels x OC channels (pixels lds floats apart); dst[oc * ldd +
 * i * (OW / 2) + j] receives the maximum of window (i, j) (an odd last column is dropped, as
 * PyTorch's floor mode does).
 * The pool compares the affine map's (and ReLU's) output in kernels.c's order (the top pair,
 * the bottom pair, then those two), so the values are those of the layers run one by one. */
ST_VEC_CLONES static void affine_pool_transpose(float *restrict dst, size_t ldd,
                                                const float *restrict src, size_t lds, int PH,
                                                int OW, int OC, const float *scale,
                                                const float *shift, int relu)
{
    int PW = OW / 2, oc4 = OC & ~3;
    size_t row = (size_t)OW * lds;
    for (int o = 0; o < oc4 && PW >= 4; o += 4) {
        v4f k, b, zero = {0, 0, 0, 0};
        affine4(&k, &b, scale, shift, o);
        /* With a ReLU and a finite, nonzero scale and a finite shift, v -> max(v * k + b, 0) is
         * monotone in v * sign(k) (IEEE rounding is monotone; flipping a sign is exact), so the
         * window's maximum is that of its input chosen by v * sign(k), mapped once: the same
         * value, to the bit (a NaN input is chosen as the maximum would choose its image, and
         * mapped by the same operations). Rows are first written assuming no NaN (maxps), and
         * written again by the exact rule where one turns up. */
        int raw = relu;
        for (int e = 0; e < 4; e++)
            raw &= k[e] != 0.0f && isfinite(k[e]) && isfinite(b[e]);
        v4i flip = (v4i)(k < zero) & (v4i){INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN};
        for (int i = 0; i < PH; i++) {
            const float *s0 = src + 2 * (size_t)i * row + o;
            float *d = dst + (size_t)o * ldd + (size_t)i * PW;
            if (!raw)
                pool_row4(d, ldd, s0, row, lds, PW, k, b, flip, relu, 0, 0);
            else if (pool_row4(d, ldd, s0, row, lds, PW, k, b, flip, relu, 1, 1))
                pool_row4(d, ldd, s0, row, lds, PW, k, b, flip, relu, 1, 0);
        }
    }
    for (int oc = 0; oc < OC; oc++) { /* what the blocks left: rows under 4 windows, OC % 4 */
        if (oc < oc4 && PW >= 4)
            continue;
        float kk = scale ? scale[oc] : 1.0f, bb = shift ? shift[oc] : 0.0f;
        for (int i = 0; i < PH; i++)
            for (int j = 0; j < PW; j++) {
                const float *p = src + 2 * (size_t)i * row + 2 * (size_t)j * lds + oc;
                float v[4] = {p[0] * kk + bb, p[lds] * kk + bb, p[row] * kk + bb,
                              p[row + lds] * kk + bb};
                for (int e = 0; relu && e < 4; e++)
                    v[e] = st_relu(v[e]);
                dst[(size_t)oc * ldd + (size_t)i * PW + j] =
                    pool_max1(pool_max1(v[0], v[1]), pool_max1(v[2], v[3]));
            }
    }
}

/* The GEMM a group runs: threaded itself (inner: a single group, see run_groups), or on the
 * calling thread. Both compute the same result. */
typedef void (*gemm_fn)(int, int, int, int, int, float, const float *, int, const float *, int,
                        float, float *, int);

static gemm_fn group_gemm(int inner)
{
    return inner ? st_sgemm : st_sgemm_st;
}

/* ---------------------------------------------------------------- Winograd F(m x m, 3x3)
 *
 * A 3x3 conv with stride 1 and padding 1 computes each m x m block of outputs ("tile") from the
 * a x a block of input around it (a = m + 2) as Y = A^T [ (G g G^T) .* (B^T d B) ] A summed over
 * the input channels (Lavin & Gray, 2015): a^2 products per tile and channel pair instead of
 * 9 m^2, with m = 2 (16 instead of 36) or m = 4 (36 instead of 144), whichever leaves less to
 * multiply for the shape once the last tiles are padded out (wino_tile_for: m = 4 for the CNN's
 * 14x14 and 7x7). With the transformed inputs V[xi][tile][c] = (B^T d B)[xi] and weights
 * U[xi][c][oc] = (G g G^T)[xi], the sum over channels is a^2 GEMMs
 * M[xi][tile][oc] = V[xi] * U[xi]; the output transform then gives y^T[pixel][oc], and
 * affine_transpose (bias or batch norm, ReLU, sums) writes NCHW as in the transposed im2col path.
 * The input gradient of the same conv is the same computation on the output gradient with U
 * built from the kernels rotated by 180 degrees and the channel roles swapped; the weight
 * gradient, a^2 products over the tiles of the forward's V and the output gradient's transposed
 * output transform (wino_grad_output). The transforms only add, subtract and scale by small
 * constants, so the results differ from im2col's by float rounding (a little more with m = 4,
 * whose constants go up to 8 and down to 1/24: still well within the tests' 1e-5 of the terms'
 * magnitude); the order of every sum depends on the shape alone, so results are still the same
 * whatever the number of threads. Beyond rounding: a NaN input or weight reaches every output
 * im2col's NaN reaches - with m = 2 exactly those (each transformed value mixes only inputs that
 * share the outputs' windows), with m = 4 also the rest of its tiles' outputs (the inner rows
 * of B^T reach every output of A^T); an infinite one can give NaN where im2col gives an infinity
 * (the transforms subtract values from each other: inf - inf); and a NaN input next to the
 * image's edge makes all 9 weight gradients of its channel NaN, where im2col spares the taps
 * that only read the padding there. */

static int winograd_on = 1, wino_forced_m = 0;

void st_conv_set_winograd(int on)
{
    winograd_on = on != 0;
}

void st_conv_set_winograd_tile(int m)
{
    wino_forced_m = m == 2 || m == 4 ? m : 0;
}

/* The shapes Winograd serves, whether or not it is switched on and at any batch size: workspaces
 * are sized by this, so that switching it on later stays within them. */
static int wino_fits(const st_conv_shape *s)
{
    return s->KH == 3 && s->KW == 3 && s->stride == 1 && s->pad == 1 && s->C % 8 == 0 &&
           s->OC % 8 == 0 && s->C > 0 && s->OC > 0;
}

int st_conv_winograd(const st_conv_shape *s, int N)
{
    return winograd_on && wino_fits(s) && N >= ST_CONV_WINOGRAD_MIN_BATCH;
}

/* The tile's output size m: 4 where its a^2 = 36 products per tile, over the tiles that cover
 * the image, are fewer than 16 per 2x2 tile (14x14: 16 tiles x 36 = 576 < 49 x 16 = 784; 7x7:
 * 144 < 256); 2 for small images, where a 4x4 tile would be mostly outside. */
static int wino_tile_auto(const st_conv_shape *s)
{
    long t2 = (long)((s->OH + 1) / 2) * ((s->OW + 1) / 2) * 16;
    long t4 = (long)((s->OH + 3) / 4) * ((s->OW + 3) / 4) * 36;
    return t4 < t2 ? 4 : 2;
}

static int wino_tile_for(const st_conv_shape *s)
{
    return wino_forced_m ? wino_forced_m : wino_tile_auto(s);
}

int st_conv_winograd_tile(const st_conv_shape *s)
{
    return wino_fits(s) ? wino_tile_for(s) : 0;
}

size_t st_conv_wcache_floats(const st_conv_shape *s)
{
    return wino_fits(s) ? (size_t)s->OC * s->C * 9 + WINO_NX_MAX * (size_t)s->C * s->OC : 0;
}

/* Tiles of one image (TH x TW of them, m x m outputs each; where m does not divide the size, the
 * last ones are partly outside), the zero-padded channels-last copy of its input (Hp x Wp pixels:
 * one zero row and column before, enough after to complete the last tiles), and how many images
 * a chunk transforms at once (about 64K floats of V and of M each). a = m + 2 inputs per tile
 * side; nx = a^2 transformed values per tile. */
typedef struct wino_geom {
    int m, a, nx, TH, TW, T, Hp, Wp, chunk, maxch;
} wino_geom;

static wino_geom wino_geometry_m(const st_conv_shape *s, int m)
{
    wino_geom g;
    g.m = m, g.a = m + 2, g.nx = g.a * g.a;
    g.TH = (s->OH + m - 1) / m, g.TW = (s->OW + m - 1) / m, g.T = g.TH * g.TW;
    g.Hp = m * g.TH + 2, g.Wp = m * g.TW + 2;
    g.maxch = s->C > s->OC ? s->C : s->OC;
    long per_image = (long)g.nx * g.T * g.maxch;
    g.chunk = (int)(65536 / per_image);
    if (g.chunk < 1)
        g.chunk = 1;
    return g;
}

static wino_geom wino_geometry(const st_conv_shape *s)
{
    return wino_geometry_m(s, wino_tile_for(s));
}

/* Transformed floats per image with the shape's own tile size (whatever is forced: the groups
 * must not change with it, the workspaces are sized by them). */
static long wino_image_floats(const st_conv_shape *s)
{
    wino_geom g = wino_geometry_m(s, wino_tile_auto(s));
    return (long)g.nx * g.T * g.maxch;
}

/* A thread's Winograd scratch (wino_floats) as its parts: the channels-last copy, V, M (vm
 * floats each), and a row of channels for the outputs of tiles past the image's edge. */
typedef struct wino_scratch_parts {
    float *hwc, *V, *M, *junk;
    size_t vm;
} wino_scratch_parts;

/* The distance between the nx planes of V, M and dU (one per xi): n floats each, and 16 more. A
 * transform reads or writes all of them at once; where n * 4 bytes is a multiple of 4 KB (conv3's
 * with m = 2: 64 tiles x 64 channels, or 16 x 64 for one image), they would all fall into one
 * set of the L1 cache, which holds 8, and evict each other at every step. */
#define WINO_PAD 16
static size_t wino_ld(size_t n)
{
    return n + WINO_PAD;
}

/* Floats of V, and of M: nx planes of transformed values, per tile and channel of a chunk's
 * images. */
static size_t wino_vm(const wino_geom *g)
{
    return (size_t)g->nx * wino_ld((size_t)g->chunk * g->T * g->maxch);
}

static wino_scratch_parts wino_parts(float *wino, const wino_geom *g)
{
    wino_scratch_parts w;
    w.vm = wino_vm(g);
    w.hwc = wino;
    w.V = w.hwc + (size_t)g->Hp * g->Wp * g->maxch;
    w.M = w.V + w.vm;
    w.junk = w.M + w.vm;
    return w;
}

/* Per-thread floats: the channels-last copy, V, M, and a row of channels for the outputs of
 * tiles past the image's edge (wino_parts); for either tile size, so that the workspace serves
 * whichever runs (st_conv_set_winograd_tile). */
static size_t wino_floats(const st_conv_shape *s)
{
    if (!wino_fits(s))
        return 0;
    size_t most = 0;
    for (int m = 2; m <= 4; m += 2) {
        wino_geom g = wino_geometry_m(s, m);
        size_t n = (size_t)g.Hp * g.Wp * g.maxch + 2 * wino_vm(&g) + g.maxch;
        most = n > most ? n : most;
    }
    return (most + 15) & ~(size_t)15;
}

/* Calls fn(args..., m) with m = g_m as a constant (4 or 2), so that the transforms inlined into
 * fn are specialised for that tile size. */
#define WINO_BY_TILE(g_m, fn, ...) ((g_m) == 4 ? fn(__VA_ARGS__, 4) : fn(__VA_ARGS__, 2))

/* The three transforms along one side of a tile, for m = 2 and m = 4 (the compiler keeps only
 * the one asked for: m is a constant wherever these are inlined).
 * Inputs, r = B^T x (a values to a). */
static inline __attribute__((always_inline)) void wino_bt(v8f *r, const v8f *x, int m)
{
    if (m == 2) {
        r[0] = x[0] - x[2], r[1] = x[1] + x[2], r[2] = x[2] - x[1], r[3] = x[1] - x[3];
        return;
    }
    /* B^T = (4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
     *        0 4 0 -5 0 1) */
    v8f t = x[4] - x[2], f = x[3] - x[1];
    r[0] = (x[0] - x[2]) * 4.0f + t;
    r[1] = (x[3] + x[4]) - (x[1] + x[2]) * 4.0f;
    r[2] = (x[4] - x[3]) + (x[1] - x[2]) * 4.0f;
    r[3] = t + f * 2.0f;
    r[4] = t - f * 2.0f;
    r[5] = (x[1] - x[3]) * 4.0f + (x[5] - x[3]);
}

/* Outputs, r = A^T x (a values to m). */
static inline __attribute__((always_inline)) void wino_at(v8f *r, const v8f *x, int m)
{
    if (m == 2) {
        r[0] = x[0] + x[1] + x[2], r[1] = x[1] - x[2] - x[3];
        return;
    }
    /* A^T = (1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1) */
    v8f s12 = x[1] + x[2], d12 = x[1] - x[2], s34 = x[3] + x[4], d34 = x[3] - x[4];
    r[0] = x[0] + s12 + s34;
    r[1] = d12 + d34 * 2.0f;
    r[2] = s12 + s34 * 4.0f;
    r[3] = d12 + d34 * 8.0f + x[5];
}

/* Output gradients, r = A y (m values to a: A^T's transpose). */
static inline __attribute__((always_inline)) void wino_a(v8f *r, const v8f *y, int m)
{
    if (m == 2) {
        r[0] = y[0], r[1] = y[0] + y[1], r[2] = y[0] - y[1], r[3] = -y[1];
        return;
    }
    v8f s02 = y[0] + y[2], s13 = y[1] + y[3];
    v8f t02 = y[0] + y[2] * 4.0f, t13 = y[1] * 2.0f + y[3] * 8.0f;
    r[0] = y[0], r[1] = s02 + s13, r[2] = s02 - s13, r[3] = t02 + t13, r[4] = t02 - t13;
    r[5] = y[3];
}

/* Weights, r = G g (3 values to a). */
static inline __attribute__((always_inline)) void wino_g(v8f *r, const v8f *g, int m)
{
    if (m == 2) {
        r[0] = g[0], r[1] = (g[0] + g[1] + g[2]) * 0.5f, r[2] = (g[0] - g[1] + g[2]) * 0.5f;
        r[3] = g[2];
        return;
    }
    /* G = (1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1) */
    v8f s = g[0] + g[2], q = g[0] + g[2] * 4.0f, b = g[1] * 2.0f;
    r[0] = g[0] * 0.25f;
    r[1] = (s + g[1]) * (-1.0f / 6.0f);
    r[2] = (s - g[1]) * (-1.0f / 6.0f);
    r[3] = (q + b) * (1.0f / 24.0f);
    r[4] = (q - b) * (1.0f / 24.0f);
    r[5] = g[2];
}

/* Weight gradients, r = G^T u (a values to 3). */
static inline __attribute__((always_inline)) void wino_gt(v8f *r, const v8f *u, int m)
{
    if (m == 2) {
        r[0] = u[0] + (u[1] + u[2]) * 0.5f, r[1] = (u[1] - u[2]) * 0.5f;
        r[2] = (u[1] + u[2]) * 0.5f + u[3];
        return;
    }
    v8f p = u[1] + u[2], q = u[1] - u[2], r34 = u[3] + u[4], s34 = u[3] - u[4];
    r[0] = u[0] * 0.25f - p * (1.0f / 6.0f) + r34 * (1.0f / 24.0f);
    r[1] = s34 * (1.0f / 12.0f) - q * (1.0f / 6.0f);
    r[2] = (r34 - p) * (1.0f / 6.0f) + u[5];
}

enum { WINO_BT, WINO_AT, WINO_A, WINO_G, WINO_GT };

static inline __attribute__((always_inline)) void wino_1d(int kind, v8f *r, const v8f *x, int m)
{
    switch (kind) {
    case WINO_BT: wino_bt(r, x, m); break;
    case WINO_AT: wino_at(r, x, m); break;
    case WINO_A: wino_a(r, x, m); break;
    case WINO_G: wino_g(r, x, m); break;
    default: wino_gt(r, x, m); break;
    }
}

/* y = T x T^T for an n x n block x of 8-lane vectors (x[i][k] at x + i * xr + k * xc floats) and
 * the transform T of kind (n values to p along each side), into y[i][k] at y + i * yr + k * yc:
 * T x column by column, then (T x) T^T row by row. */
static inline __attribute__((always_inline)) void wino_2d(int kind, float *y, size_t yr,
                                                          size_t yc, const float *x, size_t xr,
                                                          size_t xc, int n, int p, int m)
{
    v8f t[6][6];
    for (int k = 0; k < n; k++) {
        v8f col[6], r[6];
        for (int i = 0; i < n; i++)
            col[i] = *(const v8f *)(x + (size_t)i * xr + (size_t)k * xc);
        wino_1d(kind, r, col, m);
        for (int i = 0; i < p; i++)
            t[i][k] = r[i];
    }
    for (int i = 0; i < p; i++) {
        v8f r[6];
        wino_1d(kind, r, t[i], m);
        for (int k = 0; k < p; k++)
            *(v8f *)(y + (size_t)i * yr + (size_t)k * yc) = r[k];
    }
}

/* U[xi][i][o] = (G g G^T)[xi], g the 3x3 kernel from input channel i to output channel o of the
 * product: the conv's own (flip = 0: i < C, o < OC, g = w[o][i]), or for its input gradient
 * (flip = 1: i < OC, o < C, g = w[i][o] rotated by 180 degrees); for the 8 products o .. o + 7
 * at once, one per lane. */
static inline __attribute__((always_inline)) void
wino_weights8(float *restrict U, const float *restrict w, int C, int OC, int flip, int i, int o,
              int m)
{
    int ni = flip ? OC : C, no = flip ? C : OC, a = m + 2;
    v8f g[3][3];
    for (int l = 0; l < 8; l++) {
        const float *k = flip ? w + ((size_t)i * C + o + l) * 9 : w + ((size_t)(o + l) * C + i) * 9;
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++)
                g[r][c][l] = flip ? k[(2 - r) * 3 + 2 - c] : k[r * 3 + c];
    }
    size_t plane = (size_t)ni * no; /* U[xi] */
    wino_2d(WINO_G, U + (size_t)i * no + o, a * plane, plane, (const float *)g, 24, 8, 3, a, m);
}

/* Part `part` of `parts` of wino_weights: a range of its input channels (of C, or of OC with
 * flip). */
ST_VEC_CLONES static void wino_weights_part(float *restrict U, const float *restrict w, int C,
                                            int OC, int flip, int m, int part, int parts)
{
    int ni = flip ? OC : C, no = flip ? C : OC; /* no: a multiple of 8 */
    int lo, hi;
    st_part_range(ni, part, parts, &lo, &hi);
    for (int i = lo; i < hi; i++)
        for (int o = 0; o < no; o += 8)
            WINO_BY_TILE(m, wino_weights8, U, w, C, OC, flip, i, o);
}

static void wino_weights(float *restrict U, const float *restrict w, int C, int OC, int flip,
                         int m)
{
    /* (training transforms the weights at every call: conv3's take about 1% of a step alone) */
    ST_PARALLEL(C * OC >= 2048 ? st_get_threads() : 1,
                wino_weights_part(U, w, C, OC, flip, m, part, parts));
}

/* hwc = the image's C planes (plane c at src + c * cs, H x W; C a multiple of 8) channels-last,
 * with a border of zeros (Hp x Wp pixels: one zero row and column before, the rest after);
 * 4 x 4 blocks at a time. Only hwc's rows [r0, r1) are written (0, Hp: all of them). */
ST_VEC_CLONES static void wino_hwc(float *restrict hwc, const float *restrict src, size_t cs,
                                   int C, int H, int W, const wino_geom *g, int r0, int r1)
{
    size_t rs = (size_t)g->Wp * C;
    if (r0 == 0)
        memset(hwc, 0, sizeof(float) * rs);
    int z = r0 > H + 1 ? r0 : H + 1; /* the zero rows after the image */
    if (r1 > z)
        memset(hwc + (size_t)z * rs, 0, sizeof(float) * rs * (size_t)(r1 - z));
    int h0 = r0 > 1 ? r0 - 1 : 0, h1 = r1 - 1 < H ? r1 - 1 : H;
    for (int h = h0; h < h1; h++) {
        float *row = hwc + (size_t)(h + 1) * rs;
        memset(row, 0, sizeof(float) * (size_t)C);
        memset(row + (size_t)(W + 1) * C, 0, sizeof(float) * (size_t)C * (size_t)(g->Wp - W - 1));
        const float *s0 = src + (size_t)h * W;
        if (W < 4) {
            for (int x = 0; x < W; x++)
                for (int c = 0; c < C; c++)
                    row[(size_t)(x + 1) * C + c] = s0[(size_t)c * cs + x];
            continue;
        }
        /* blocks of 4 columns, the last from W - 4 (rewriting a few with the same values) */
        for (int x = 0;; x += 4) {
            if (x > W - 4)
                x = W - 4;
            for (int c = 0; c < C; c += 4) {
                v4f r[4];
                for (int i = 0; i < 4; i++)
                    memcpy(&r[i], s0 + (size_t)(c + i) * cs + x, sizeof r[i]);
                v4f o[4];
                transpose4(o, r);
                for (int k = 0; k < 4; k++)
                    memcpy(row + (size_t)(x + 1 + k) * C + c, &o[k], sizeof o[k]);
            }
            if (x == W - 4)
                break;
        }
    }
}

/* wino_hwc from an image already channels-last (src: H x W x C): its rows copied whole, with
 * the border of zeros. */
static void wino_hwc_nhwc(float *restrict hwc, const float *restrict src, int C, int H, int W,
                          const wino_geom *g)
{
    size_t rs = (size_t)g->Wp * C, row = (size_t)W * C;
    memset(hwc, 0, sizeof(float) * rs);
    memset(hwc + (size_t)(H + 1) * rs, 0, sizeof(float) * rs * (size_t)(g->Hp - H - 1));
    for (int h = 0; h < H; h++) {
        float *r = hwc + (size_t)(h + 1) * rs;
        memset(r, 0, sizeof(float) * (size_t)C);
        memcpy(r + C, src + (size_t)h * row, sizeof(float) * row);
        memset(r + C + row, 0, sizeof(float) * (size_t)C * (size_t)(g->Wp - W - 1));
    }
}

/* The channels-last copy of image j of src for wino_input (all rows): its planes c at
 * src + j * is + c * cs, or (nhwc) its pixels' channels at src + j * is. */
static void wino_hwc_image(float *restrict hwc, const float *src, size_t is, size_t cs, int nhwc,
                           int j, int C, int H, int W, const wino_geom *g)
{
    if (nhwc)
        wino_hwc_nhwc(hwc, src + (size_t)j * is, C, H, W, g);
    else
        wino_hwc(hwc, src + (size_t)j * is, cs, C, H, W, g, 0, g->Hp);
}

/* V[xi][t0 + tile][c] = (B^T d B)[xi] for the tiles of one image in tile rows [ty0, ty1) (d: a
 * tile's a x a input block), ldv = floats per xi; 8 channels at a time (C is a multiple of 8). */
static inline __attribute__((always_inline)) void
wino_input_m(float *restrict V, size_t ldv, int t0, const float *restrict hwc, int C,
             const wino_geom *g, int ty0, int ty1, int m)
{
    int a = m + 2;
    size_t rs = (size_t)g->Wp * C; /* one row of hwc */
    for (int ty = ty0; ty < ty1; ty++)
        for (int tx = 0; tx < g->TW; tx++) {
            const float *p = hwc + (size_t)(m * ty) * rs + (size_t)(m * tx) * C;
            float *v = V + (size_t)(t0 + ty * g->TW + tx) * C;
            for (int c = 0; c < C; c += 8)
                wino_2d(WINO_BT, v + c, a * ldv, ldv, p + c, rs, (size_t)C, a, a, m);
        }
}

ST_VEC_CLONES static void wino_input(float *restrict V, size_t ldv, int t0,
                                     const float *restrict hwc, int C, const wino_geom *g,
                                     int ty0, int ty1)
{
    WINO_BY_TILE(g->m, wino_input_m, V, ldv, t0, hwc, C, g, ty0, ty1);
}

/* yt[pixel][o] (one image, OH x OW pixels, O channels, a multiple of 8) = A^T M A for each of
 * its tiles in tile rows [ty0, ty1) and channels o in [o0, o1) (multiples of 8), from
 * M[xi][t0 + tile][o] (ldm floats per xi); outputs past the edge go to junk. */
static inline __attribute__((always_inline)) void
wino_output_m(float *restrict yt, const float *restrict M, size_t ldm, int t0, int O, int OH,
              int OW, const wino_geom *g, float *restrict junk, int ty0, int ty1, int o0, int o1,
              int m)
{
    int a = m + 2;
    for (int ty = ty0; ty < ty1; ty++)
        for (int tx = 0; tx < g->TW; tx++) {
            const float *mt = M + (size_t)(t0 + ty * g->TW + tx) * O;
            float *out[4][4];
            for (int i = 0; i < m; i++)
                for (int k = 0; k < m; k++) {
                    int y = m * ty + i, x = m * tx + k;
                    out[i][k] = y < OH && x < OW ? yt + ((size_t)y * OW + x) * O : junk;
                }
            /* the tile below's outputs, asked for ahead of its writes (past the last tile row:
             * the next image's first; a prefetch never faults) */
            for (int i = 0; i < m; i++) {
                const float *q = yt + ((size_t)(m * ty + m + i) * OW + (size_t)m * tx) * O;
                for (int k = 0; k < m * O; k += 16)
                    __builtin_prefetch(q + k, 1);
            }
            for (int o = o0; o < o1; o += 8) {
                v8f y[4][4];
                wino_2d(WINO_AT, (float *)y, 32, 8, mt + o, a * ldm, ldm, a, m, m);
                for (int i = 0; i < m; i++)
                    for (int k = 0; k < m; k++)
                        *(v8f *)(out[i][k] + o) = y[i][k];
            }
        }
}

ST_VEC_CLONES static void wino_output(float *restrict yt, const float *restrict M, size_t ldm,
                                      int t0, int O, int OH, int OW, const wino_geom *g,
                                      float *restrict junk, int ty0, int ty1, int o0, int o1)
{
    WINO_BY_TILE(g->m, wino_output_m, yt, M, ldm, t0, O, OH, OW, g, junk, ty0, ty1, o0, o1);
}

/* The weight gradient by Winograd: the forward's products M[xi] = V[xi] * U[xi], summed over
 * tiles, give dU[xi][o][c] = sum over tiles of dM[xi][tile][o] V[xi][tile][c], with V the
 * forward's input transform and dM = A dY A^T (the output transform's transpose) of each m x m
 * tile of the output gradient; then dw = G^T dU G (the weight transform's transpose) for each
 * kernel. a^2 GEMMs over the tiles instead of im2col and one over the pixels. Exact but for
 * rounding, like the forward.
 *
 * dM[xi][t0 + tile][o] (ldm floats per xi) for the tiles of one image, from its output gradient
 * channels-last (wino_hwc: one zero row and column before, zeros past the edge, which become the
 * zero gradients of the outputs of tiles partly outside); 8 channels at a time. */
static inline __attribute__((always_inline)) void
wino_grad_output_m(float *restrict dM, size_t ldm, int t0, const float *restrict hwc, int O,
                   const wino_geom *g, int m)
{
    int a = m + 2;
    size_t rs = (size_t)g->Wp * O;
    for (int ty = 0; ty < g->TH; ty++)
        for (int tx = 0; tx < g->TW; tx++) {
            const float *p = hwc + (size_t)(m * ty + 1) * rs + (size_t)(m * tx + 1) * O;
            float *d = dM + (size_t)(t0 + ty * g->TW + tx) * O;
            for (int o = 0; o < O; o += 8)
                wino_2d(WINO_A, d + o, a * ldm, ldm, p + o, rs, (size_t)O, m, a, m);
        }
}

ST_VEC_CLONES static void wino_grad_output(float *restrict dM, size_t ldm, int t0,
                                           const float *restrict hwc, int O, const wino_geom *g)
{
    WINO_BY_TILE(g->m, wino_grad_output_m, dM, ldm, t0, hwc, O, g);
}

/* dw[o][c][3][3] = G^T dU G for each (o, c), from dU[xi][o][c] (O x C floats per xi, ldu apart;
 * C a multiple of 8); 8 kernels at a time, one per lane. */
static inline __attribute__((always_inline)) void
wino_grad_weights_m(float *restrict dw, const float *restrict dU, size_t ldu, int C, int O, int m)
{
    int a = m + 2;
    size_t n = (size_t)O * C;
    for (size_t k = 0; k < n; k += 8) { /* k = o * C + c, as in dw */
        v8f d[3][3];
        wino_2d(WINO_GT, (float *)d, 24, 8, dU + k, a * ldu, ldu, a, 3, m);
        for (int l = 0; l < 8; l++) /* the lanes' 9 values each, contiguous in dw */
            for (int q = 0; q < 9; q++)
                dw[(k + (size_t)l) * 9 + (size_t)q] = d[q / 3][q % 3][l];
    }
}

ST_VEC_CLONES static void wino_grad_weights(float *restrict dw, const float *restrict dU,
                                            size_t ldu, int C, int O, int m)
{
    WINO_BY_TILE(m, wino_grad_weights_m, dw, dU, ldu, C, O);
}

/* C[M][N] = op(A) B (beta 0) or C + op(A) B (beta 1), op(A) = A (ta = 0: M x K, rows lda floats
 * apart) or A^T (ta = 1: A stored K x M), B K x N (ldb), straight through the GEMM micro-kernel
 * with A and B read in place: the Winograd products are small (K = 16 to 64 channels, or a
 * chunk's tiles) and many, so the blocked GEMM's planning and edge packing cost a good share of
 * their time. A tile's rows past M read whatever follows them in A (rows of A: the caller keeps
 * mr - 1 rows of readable memory after A; A^T: up to mr - 1 floats past its end) and go to a
 * scratch tile, so only C's own rows are written. Every element is the same FMA chain over k as
 * in st_sgemm_st, which this falls back to where N is not a multiple of the tile's width. */
static void small_gemm(int ta, int M, int N, int K, const float *A, int lda, const float *B,
                       int ldb, float beta, float *C, int ldc)
{
    const st_gemm_kernel *kr = st_gemm_kernel_for_level(st_cpu_level());
    int mr = kr->mr, nr = kr->nr;
    if (N % nr) {
        st_sgemm_st(ta, 0, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    for (int i = 0; i < M; i += mr) {
        const float *a = ta ? A + i : A + (size_t)i * lda;
        int rows; /* (the last rows by the level's tail kernel where it has one that fits) */
        st_gemm_ukr_fn ukr = st_gemm_ukr_for(kr, M - i < mr ? M - i : mr, !ta, &rows);
        for (int j = 0; j < N; j += nr) {
            float *c = C + (size_t)i * ldc + j;
            if (i + rows <= M)
                ukr(K, a, lda, B + j, ldb, c, ldc, 1.0f, beta);
            else
                st_gemm_partial_tile(kr, ukr, K, a, lda, B + j, ldb, c, ldc, M - i, nr, 1.0f,
                                     beta);
        }
    }
}

/* The conv (or its input gradient) of images [0, n) by Winograd, a chunk at a time, into
 * yt[image * P + pixel][O]: src holds the images' I input planes (plane c of image j at
 * src + j * is + c * cs), or with src_nhwc their pixels' I channels (image j at src + j * is),
 * U the transformed weights (I x O per xi). wino: this thread's scratch (wino_floats). */
static void wino_conv(float *yt, const float *src, size_t is, size_t cs, int src_nhwc, int I,
                      int O, int n, const float *U, const st_conv_shape *s, float *wino)
{
    wino_geom g = wino_geometry(s);
    int H = s->OH, W = s->OW; /* input and output planes have the same size */
    size_t P = (size_t)H * W;
    wino_scratch_parts sp = wino_parts(wino, &g);
    float *hwc = sp.hwc, *V = sp.V, *M = sp.M, *junk = sp.junk;
    for (int j0 = 0; j0 < n; j0 += g.chunk) {
        int cn = n - j0 < g.chunk ? n - j0 : g.chunk, T = cn * g.T;
        size_t ldv = wino_ld((size_t)T * I), ldm = wino_ld((size_t)T * O);
        for (int j = 0; j < cn; j++) {
            wino_hwc_image(hwc, src, is, cs, src_nhwc, j0 + j, I, H, W, &g);
            wino_input(V, ldv, j * g.T, hwc, I, &g, 0, g.TH);
        }
        /* (small_gemm reads up to mr - 1 rows past each product's V: the next one's, then M) */
        for (int xi = 0; xi < g.nx; xi++)
            small_gemm(0, T, O, I, V + xi * ldv, I, U + (size_t)xi * I * O, O, 0.0f,
                       M + xi * ldm, O);
        for (int j = 0; j < cn; j++)
            wino_output(yt + (size_t)(j0 + j) * P * O, M, ldm, j * g.T, O, H, W, &g, junk, 0,
                        g.TH, 0, O);
    }
}

/* ---------------------------------------------------------------- one input channel
 *
 * A conv with one input channel and stride 1 (the CNN's first layer) needs no im2col. On the
 * zero-padded image, Wp = OW + KW - 1 floats wide, output pixel (oh, ow) reads
 * x[(oh + kh) * Wp + ow + kw]: consecutive pixels of an output row read the same window shifted
 * by one float, so a tile of mr pixels x nr channels is a product whose A rows are the padded
 * image itself, one float apart; a window micro-kernel (ukr_win) reads them in place, summing
 * over (kh, kw) in the order im2col + GEMM would. The tiles are written to yt[pixel][OC] for the
 * transposed epilogue. */
static int direct_fits(const st_conv_shape *s)
{
    return s->C == 1 && s->stride == 1 && s->OH > 0 && s->OW > 0;
}

int st_conv_direct(const st_conv_shape *s)
{
    return direct_fits(s);
}

/* The kernel rows as the micro-kernel's B operand: for each block of nr output channels, for
 * each (kh, kw), nr weights (zero past OC). */
static void direct_weights(float *restrict panel, const float *restrict w, const st_conv_shape *s,
                           int nr)
{
    int KK = s->KH * s->KW;
    for (int o0 = 0; o0 < s->OC; o0 += nr)
        for (int k = 0; k < KK; k++)
            for (int c = 0; c < nr; c++)
                panel[((size_t)o0 * KK) + (size_t)k * nr + c] =
                    o0 + c < s->OC ? w[(size_t)(o0 + c) * KK + k] : 0.0f;
}

/* yt[oh * OW + ow][OC] for the output rows [oh0, oh1) of the image padded in xp (followed by
 * DIRECT_SLACK floats of zeros): each output row in tiles of mr pixels, written in place where
 * whole (and OC a multiple of nr), the row's last, partial tile through a scratch tile (its extra
 * pixels read the row's padding or the next row, and are dropped). */
static void direct_rows(float *restrict yt, const float *xp, const float *panel,
                        const st_conv_shape *s, int oh0, int oh1)
{
    const st_gemm_kernel *kr = st_gemm_kernel_for_level(st_cpu_level());
    int mr = kr->mr, nr = kr->nr, Wp = s->W + 2 * s->pad, OC = s->OC, OW = s->OW;
    int KK = s->KH * s->KW, in_place = OC % nr == 0;
    _Alignas(64) float tile[ST_GEMM_MR_MAX * ST_GEMM_NR_MAX];
    for (int oh = oh0; oh < oh1; oh++)
        for (int ow = 0; ow < OW; ow += mr)
            for (int o0 = 0; o0 < OC; o0 += nr) {
                const float *a = xp + (size_t)oh * Wp + ow, *b = panel + (size_t)o0 * KK;
                float *y = yt + ((size_t)oh * OW + ow) * OC + o0;
                if (in_place && ow + mr <= OW) {
                    kr->ukr_win(s->KH, s->KW, a, Wp, b, nr, y, OC);
                    continue;
                }
                kr->ukr_win(s->KH, s->KW, a, Wp, b, nr, tile, nr);
                int cols = OC - o0 < nr ? OC - o0 : nr;
                for (int i = 0; i < mr && ow + i < OW; i++)
                    memcpy(y + (size_t)i * OC, tile + (size_t)i * nr, sizeof(float) * (size_t)cols);
            }
}

/* The padded copy of one image for direct_rows, with its slack of zeros. */
static void direct_pad(float *xp, const float *img, const st_conv_shape *s)
{
    memset(xp + (size_t)(s->H + 2 * s->pad) * (s->W + 2 * s->pad), 0,
           sizeof(float) * DIRECT_SLACK);
    pad_image(xp, img, s);
}

/* yt[j * P + pixel][OC] for the images [0, n) at img (one plane each, P = OH * OW). */
static void direct_forward(float *restrict yt, const float *img, int n, const float *panel,
                           const st_conv_shape *s, float *xp)
{
    size_t P = (size_t)s->OH * s->OW;
    for (int j = 0; j < n; j++) {
        direct_pad(xp, img + (size_t)j * s->H * s->W, s);
        direct_rows(yt + (size_t)j * P * s->OC, xp, panel, s, 0, s->OH);
    }
}

/* One call's operands and layout, shared by the groups. */
typedef struct conv_call {
    const st_conv_shape *s;
    int N, P, CKK, ng, relu;
    size_t G, per_thread, colf, in_size, out_size; /* colf: col_floats */
    const float *inp, *w, *b, *dout;
    const float *scale; /* forward (evaluation): per-channel scale applied before b, or NULL */
    const st_conv_bn_grad *bn; /* backward: dout is this batch norm's output gradient, or NULL */
    int transposed;     /* forward: run the GEMM as col^T * W^T (st_conv_forward_transposed) */
    int wino;           /* forward and input gradient by Winograd (st_conv_winograd) */
    const float *panel; /* forward of one input channel (direct_fits): direct_weights, or NULL */
    float *U;           /* Winograd: the transformed weights, nx x C x OC floats */
    float *pooled;      /* forward (evaluation): out's 2x2 max pool is written here instead */
    int in_nhwc, out_nhwc; /* training: layouts channels-last (st_conv_shape.layout) */
    float *out, *dinp, *ws, *partial;
    double *stats_partial; /* forward: per-group [OC][2] sums, or NULL */
} conv_call;

/* The channels-last output of a group, gn images of P pixels x OC channels (a multiple of 8) in
 * place: y + bias (b: NULL, none), and with stats the sum and the sum of squares of each channel
 * added to stats[2 oc], stats[2 oc + 1], per image as affine_transpose sums its planes (the same
 * additions in the same order: the NCHW layout's bits): in double, one lane per pixel p mod 4 of
 * the image, the lanes added in a fixed tree, then the last P % 4 pixels. */
ST_VEC_CLONES static void bias_stats_nhwc(float *restrict y, int gn, int P, int OC,
                                          const float *b, double *restrict stats)
{
    int p4 = P & ~3;
    for (int j = 0; j < gn; j++) {
        float *img = y + (size_t)j * P * OC;
        for (int o = 0; o < OC; o += 4) {
            v4f bb = {0, 0, 0, 0};
            if (b)
                memcpy(&bb, b + o, sizeof bb);
            v4d s1[4] = {0}, s2[4] = {0}, t1 = {0}, t2 = {0};
            for (int p = 0; p < p4; p += 4)
                for (int i = 0; i < 4; i++) { /* lane i: pixels p + i */
                    float *q = img + (size_t)(p + i) * OC + o;
                    v4f r;
                    memcpy(&r, q, sizeof r);
                    r = r * 1.0f + bb; /* (affine_transpose's scale 1: the same values, -0 too) */
                    memcpy(q, &r, sizeof r);
                    v4d d = ST_WIDEN4(r);
                    s1[i] += d, s2[i] += d * d;
                }
            for (int p = p4; p < P; p++) {
                float *q = img + (size_t)p * OC + o;
                v4f r;
                memcpy(&r, q, sizeof r);
                r = r * 1.0f + bb;
                memcpy(q, &r, sizeof r);
                v4d d = ST_WIDEN4(r);
                t1 += d, t2 += d * d;
            }
            if (!stats)
                continue;
            v4d u1 = (s1[0] + s1[1]) + (s1[2] + s1[3]), u2 = (s2[0] + s2[1]) + (s2[2] + s2[3]);
            for (int k = 0; k < 4; k++) {
                stats[2 * (o + k)] += u1[k];
                stats[2 * (o + k) + 1] += u2[k];
                if (p4 < P) {
                    stats[2 * (o + k)] += t1[k];
                    stats[2 * (o + k) + 1] += t2[k];
                }
            }
        }
    }
}

/* Output rows [r0, r1) of channels [o0, o1) of one image (r0 even; with pooled, r1 too) from
 * their rows of its y^T (yt[pixel][OC]) into its planes out, or 2x2-pooled into its planes
 * pooled, for a team's member (write_rows: all channels, also for a group; stats: with out
 * only, all channels). */
static void write_part(float *out, float *pooled, const float *yt, const st_conv_shape *s,
                       int r0, int r1, int o0, int o1, const float *scale, const float *shift,
                       int relu, double *stats)
{
    int OC = s->OC, OW = s->OW;
    const float *src = yt + (size_t)r0 * OW * OC + o0;
    scale = scale ? scale + o0 : NULL, shift = shift ? shift + o0 : NULL;
    if (pooled) {
        int PW = OW / 2;
        size_t plane = (size_t)(s->OH / 2) * PW;
        affine_pool_transpose(pooled + (size_t)o0 * plane + (size_t)(r0 / 2) * PW, plane, src,
                              (size_t)OC, (r1 - r0) / 2, OW, o1 - o0, scale, shift, relu);
        return;
    }
    size_t plane = (size_t)s->OH * OW;
    affine_transpose(out + (size_t)o0 * plane + (size_t)r0 * OW, plane, src, (size_t)OC,
                     (r1 - r0) * OW, o1 - o0, scale, shift, relu, stats);
}

static void write_rows(float *out, float *pooled, const float *yt, const st_conv_shape *s,
                       int r0, int r1, const float *scale, const float *shift, int relu,
                       double *stats)
{
    write_part(out, pooled, yt, s, r0, r1, 0, s->OC, scale, shift, relu, stats);
}

/* A group's y^T[gn*P, OC] into the images' NCHW planes, each row with the channels' affine map
 * (and ReLU, and sums), or into the planes of the 2x2 max pool after them (c->pooled, in
 * evaluation). y^T comes from Winograd, the one-channel kernel, or the forward GEMM
 * transposed, col^T * W^T: each output there is the same chain of FMAs over k as in W * col, so
 * the GEMM's result is the same to the bit; only the tiling changes (see
 * st_conv2d_forward_affine). */
static void write_group_t(const conv_call *c, int lo, int gn, const float *yt, double *gstats)
{
    const st_conv_shape *s = c->s;
    int OC = s->OC, rows = c->pooled ? s->OH & ~1 : s->OH; /* (pooled: an odd last row drops) */
    size_t pooled_size = (size_t)OC * (s->OH / 2) * (s->OW / 2);
    if (gstats)
        memset(gstats, 0, sizeof(double) * 2 * (size_t)OC);
    for (int j = 0; j < gn; j++)
        write_rows(c->out + (size_t)(lo + j) * c->out_size,
                   c->pooled ? c->pooled + (size_t)(lo + j) * pooled_size : NULL,
                   yt + (size_t)j * c->P * OC, s, 0, rows, c->scale, c->b, c->relu, gstats);
}

/* The untransposed forward of a group from its col: y[OC, gn*P] = W * col, each row scattered
 * into its image's plane with the channel's affine map (and ReLU, and sums). */
static void forward_group_w(const conv_call *c, int lo, int gn, const float *col, float *y,
                            int inner, double *gstats)
{
    const st_conv_shape *s = c->s;
    int P = c->P, CKK = c->CKK;
    size_t ldc = (size_t)gn * P;
    group_gemm(inner)(0, 0, s->OC, (int)ldc, CKK, 1.0f, c->w, CKK, col, (int)ldc, 0.0f, y,
                      (int)ldc);
    for (int oc = 0; oc < s->OC; oc++) {
        double acc1[8] = {0}, acc2[8] = {0};
        float bias = c->b ? c->b[oc] : 0.0f, scale = c->scale ? c->scale[oc] : 1.0f;
        for (int j = 0; j < gn; j++)
            scatter_row(c->out + (size_t)(lo + j) * c->out_size + (size_t)oc * P,
                        y + (size_t)oc * ldc + (size_t)j * P, scale, bias, P,
                        gstats ? acc1 : NULL, acc2, c->relu);
        if (gstats) {
            gstats[2 * oc] = st_sum8(acc1);
            gstats[2 * oc + 1] = st_sum8(acc2);
        }
    }
}

/* This thread's Winograd scratch, after its col, y and padded image. */
static float *wino_scratch(const conv_call *c, float *col)
{
    return col + (c->per_thread - wino_floats(c->s));
}

/* Forward of group g on the calling thread with its scratch col; inner: thread the GEMM. */
static void forward_group(const conv_call *c, int g, float *col, int inner)
{
    const st_conv_shape *s = c->s;
    int lo, hi;
    st_part_range(c->N, g, c->ng, &lo, &hi);
    int gn = hi - lo, P = c->P, CKK = c->CKK;
    size_t ldc = (size_t)gn * P;
    float *y = col + c->colf, *xp = y + (size_t)s->OC * c->G * P;
    double *gstats = c->stats_partial ? c->stats_partial + (size_t)g * 2 * s->OC : NULL;
    const float *img = c->inp + (size_t)lo * c->in_size;
    if (c->out_nhwc) { /* y^T is the output itself */
        y = c->out + (size_t)lo * c->out_size;
        if (c->wino)
            wino_conv(y, img, c->in_size, (size_t)s->H * s->W, c->in_nhwc, s->C, s->OC, gn, c->U,
                      s, wino_scratch(c, col));
        else
            direct_forward(y, img, gn, c->panel, s, xp);
        if (gstats)
            memset(gstats, 0, sizeof(double) * 2 * (size_t)s->OC);
        bias_stats_nhwc(y, gn, P, s->OC, c->b, gstats);
        return;
    }
    /* y^T[gn*P, OC] by Winograd, the one-channel kernel, or col^T * W^T; or y = W * col */
    if (c->wino) {
        wino_conv(y, img, c->in_size, (size_t)s->H * s->W, c->in_nhwc, s->C, s->OC, gn, c->U, s,
                  wino_scratch(c, col));
    } else if (c->panel) {
        direct_forward(y, img, gn, c->panel, s, xp);
    } else {
        for (int j = 0; j < gn; j++)
            im2col(col + (size_t)j * P, ldc, img + (size_t)j * c->in_size, s, xp);
        if (!c->transposed) {
            forward_group_w(c, lo, gn, col, y, inner, gstats);
            return;
        }
        group_gemm(inner)(1, 1, (int)ldc, s->OC, CKK, 1.0f, col, (int)ldc, c->w, CKK, 0.0f, y,
                          s->OC);
    }
    write_group_t(c, lo, gn, y, gstats);
}

/* The weight gradient of the images [lo, lo + gn) by Winograd (see wino_grad_output) into dw
 * (OC x C x 9), from their output gradient dy (plane o of image j at dy + o * ldy + j * P, or
 * with NHWC_OUT image j's pixels at dy + j * P * OC): the
 * images a chunk at a time (as wino_conv), each chunk's nx products over its tiles added to dU
 * (nx x OC x C floats) in chunk order. wino: this thread's scratch (wino_floats). */
static void wino_weight_grad(float *dw, const conv_call *c, int lo, int gn, const float *dy,
                             size_t ldy, float *dU, float *wino)
{
    const st_conv_shape *s = c->s;
    wino_geom g = wino_geometry(s);
    int C = s->C, O = s->OC, H = s->H, W = s->W; /* (outputs as large as inputs) */
    size_t P = (size_t)H * W;
    wino_scratch_parts sp = wino_parts(wino, &g);
    size_t ldu = wino_ld((size_t)O * C);
    for (int j0 = 0; j0 < gn; j0 += g.chunk) {
        int cn = gn - j0 < g.chunk ? gn - j0 : g.chunk, T = cn * g.T;
        size_t ldv = wino_ld((size_t)T * C), ldm = wino_ld((size_t)T * O);
        for (int j = 0; j < cn; j++) {
            wino_hwc_image(sp.hwc, c->inp, c->in_size, P, c->in_nhwc, lo + j0 + j, C, H, W, &g);
            wino_input(sp.V, ldv, j * g.T, sp.hwc, C, &g, 0, g.TH);
            if (c->out_nhwc)
                wino_hwc_image(sp.hwc, dy, P * O, 0, 1, j0 + j, O, H, W, &g);
            else
                wino_hwc_image(sp.hwc, dy, P, ldy, 0, j0 + j, O, H, W, &g);
            wino_grad_output(sp.M, ldm, j * g.T, sp.hwc, O, &g);
        }
        /* dU[xi] (+)= dM[xi]^T * V[xi] (small_gemm reads past M's last product: junk) */
        for (int xi = 0; xi < g.nx; xi++)
            small_gemm(1, O, C, T, sp.M + xi * ldm, O, sp.V + xi * ldv, C, j0 ? 1.0f : 0.0f,
                       dU + xi * ldu, C);
    }
    wino_grad_weights(dw, dU, ldu, C, O, g.m);
}

/* The weight gradient of a one-channel conv (stride 1) without im2col, into dw (OC x KH x KW)
 * from the output gradient dy of the images [lo, lo + gn) (plane o of image j at
 * dy + o * ldy + j * P, or with NHWC_OUT image j's pixels at dy + j * P * OC, read in place where
 * OC is a whole number of tiles' widths): with dy channels-last, dyt[pixel][OC], the window micro-kernel over a
 * whole image, ukr_win(OH, OW, xp + kh * Wp + kw, Wp, dyt, ...) would sum
 *     x[oh + kh][ow + kw + i] * dy[oh][ow][oc]   over (oh, ow), in that order,
 * which is dw[oc][kh][kw + i] for its mr rows i (those past KW are dropped); in bands of a few
 * output rows, each band's sums added to dw in order, images in order. dyt: col_floats (dyt,
 * then the sums channels-last); xp: the padded image's room. */
static void direct_weight_grad(float *restrict dw, const conv_call *c, int lo, int gn,
                               const float *dy, size_t ldy, float *dyt, float *xp)
{
    const st_conv_shape *s = c->s;
    const st_gemm_kernel *kr = st_gemm_kernel_for_level(st_cpu_level());
    int mr = kr->mr, nr = kr->nr, OC = s->OC, KH = s->KH, KW = s->KW, P = c->P;
    int OCp = (OC + nr - 1) / nr * nr, Wp = s->W + 2 * s->pad, KWp = (KW + mr - 1) / mr * mr;
    /* bands of output rows whose gradient (the B operand of KH * KW / mr calls) stays in L1 */
    int band = 2048 / (s->OW * OCp);
    band = band < 1 ? 1 : band;
    _Alignas(64) float tile[ST_GEMM_MR_MAX * ST_GEMM_NR_MAX];
    /* the sums channels-last, dwt[kh][kw][OCp] (kw < KWp), as the tiles come: whole rows of
     * them added at once; dw in its own layout at the end (the same additions in order) */
    float *dwt = dyt + (size_t)P * OCp;
    memset(dwt, 0, sizeof(float) * (size_t)KH * KWp * OCp);
    if (OCp > OC) /* the channels past OC: zeros, never written below */
        for (int p = 0; p < P; p++)
            memset(dyt + (size_t)p * OCp + OC, 0, sizeof(float) * (size_t)(OCp - OC));
    for (int j = 0; j < gn; j++) {
        const float *dyj = dyt; /* image j's dy channels-last, OCp floats per pixel */
        if (!c->out_nhwc)
            affine_transpose(dyt, (size_t)OCp, dy + (size_t)j * P, ldy, OC, P, NULL, NULL, 0,
                             NULL);
        else if (OCp == OC)
            dyj = dy + (size_t)j * P * OC;
        else
            for (int p = 0; p < P; p++)
                memcpy(dyt + (size_t)p * OCp, dy + ((size_t)j * P + p) * OC,
                       sizeof(float) * (size_t)OC);
        direct_pad(xp, c->inp + (size_t)(lo + j) * c->in_size, s);
        for (int r0 = 0; r0 < s->OH; r0 += band) {
            int rows = s->OH - r0 < band ? s->OH - r0 : band;
            const float *b = dyj + (size_t)r0 * s->OW * OCp, *a = xp + (size_t)r0 * Wp;
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw += mr)
                    for (int o0 = 0; o0 < OC; o0 += nr) {
                        kr->ukr_win(rows, s->OW, a + (size_t)kh * Wp + kw, Wp, b + o0, OCp, tile,
                                    nr);
                        for (int i = 0; i < mr; i++)
                            add_row(dwt + ((size_t)kh * KWp + kw + i) * OCp + o0, tile + i * nr,
                                    nr);
                    }
        }
    }
    for (int o = 0; o < OC; o++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++)
                dw[((size_t)o * KH + kh) * KW + kw] = dwt[((size_t)kh * KWp + kw) * OCp + o];
}

typedef int32_t v8i __attribute__((vector_size(32), aligned(4), may_alias));

/* a[0..8) += d[0..8), widened to double */
static inline void add_widened8(double *restrict a, const float *restrict d)
{
    v4f h[2];
    memcpy(h, d, sizeof h);
    v4d lo = ST_WIDEN4(h[0]), hi = ST_WIDEN4(h[1]), a0, a1;
    memcpy(&a0, a, sizeof a0);
    memcpy(&a1, a + 4, sizeof a1);
    a0 += lo, a1 += hi;
    memcpy(a, &a0, sizeof a0);
    memcpy(a + 4, &a1, sizeof a1);
}

/* acc[p mod 8][o] += d[p][o] for the P pixels of d (OC channels each, a multiple of 8) */
static inline void add_pixels8(double (*restrict acc)[ST_CONV_NHWC_MAX_CH],
                               const float *restrict d, int P, int OC)
{
    for (int p = 0; p < P; p++)
        for (int o = 0; o < OC; o += 8)
            add_widened8(acc[p & 7] + o, d + (size_t)p * OC + o);
}

/* x, the conv's output from the forward (3.2 MB for the first conv of the CNN), comes back from
 * memory: read this many floats (16 KB) ahead */
#define GATHER_PREFETCH 4096

/* backward_group's dy and bias gradient with the output channels-last (NHWC_OUT): dy[gn * P][OC]
 * for the images [lo, lo + gn), the values bn_dx_sum computes (or dout itself), and pb[oc] their
 * sum over the group, in bn_dx_sum's order (lane k mod 8 of each plane, images in order): the
 * NCHW layout's bits. Eight channels at a time (OC is a multiple of 8), element-wise as
 * st_bn_dx / st_bn_out / st_relu_mask compute them, each pixel's sums added as it is written
 * (with a pool: once its maxima are in, by a second pass over the image, still in cache). */
ST_VEC_CLONES static void gather_dy_nhwc(float *restrict dy, float *restrict pb, const conv_call *c,
                                         int lo, int gn)
{
    const st_conv_shape *s = c->s;
    const st_conv_bn_grad *bn = c->bn;
    int OC = s->OC, P = c->P;
    _Alignas(32) float mdy[ST_CONV_NHWC_MAX_CH], mdyx[ST_CONV_NHWC_MAX_CH],
        sc[ST_CONV_NHWC_MAX_CH], mean[ST_CONV_NHWC_MAX_CH], invstd[ST_CONV_NHWC_MAX_CH],
        g[ST_CONV_NHWC_MAX_CH], b[ST_CONV_NHWC_MAX_CH];
    for (int o = 0; bn && o < OC; o++) {
        mdy[o] = bn->coef[3 * o], mdyx[o] = bn->coef[3 * o + 1], sc[o] = bn->coef[3 * o + 2];
        mean[o] = bn->mean[o], invstd[o] = bn->invstd[o], g[o] = bn->gamma[o], b[o] = bn->beta[o];
    }
    _Alignas(32) double acc[8][ST_CONV_NHWC_MAX_CH];
    for (int k = 0; k < 8; k++)
        memset(acc[k], 0, sizeof(double) * (size_t)OC);
    const v8f zero = {0, 0, 0, 0, 0, 0, 0, 0};
#define LD8(q) (*(const v8f *)(q))
/* st_bn_dx(t, x, ...) of channels o..o+7, xhat computed once for the ReLU's mask too */
#define BN_DX8(t, xh, o) (((t) - LD8(mdy + (o)) - (xh) * LD8(mdyx + (o))) * LD8(sc + (o)))
#define XHAT8(xv, o) (((xv) - LD8(mean + (o))) * LD8(invstd + (o)))
#define RELU_MASK8(t, xh, o)                                                                    \
    ((v8f)((v8i)(t) & (v8i)((xh) * LD8(g + (o)) + LD8(b + (o)) > zero)))
    /* image by image (its dy stays in cache from one pass to the next) */
    for (int j = 0; j < gn; j++) {
        size_t off = (size_t)(lo + j) * c->out_size;
        float *dj = dy + (size_t)j * P * OC;
        const float *x = bn ? bn->x + off : NULL, *dout = c->dout + off;
        if (!bn) {
            memcpy(dj, dout, sizeof(float) * (size_t)P * OC);
            add_pixels8(acc, dj, P, OC);
        } else if (bn->argmax) { /* zero gradient but at the pool's maxima, below */
            for (int p = 0; p < P; p++)
                for (int o = 0; o < OC; o += 8) {
                    size_t e = (size_t)p * OC + o;
                    if (!(e & 15))
                        __builtin_prefetch(x + e + GATHER_PREFETCH);
                    v8f xh = XHAT8(LD8(x + e), o);
                    *(v8f *)(dj + e) = BN_DX8(zero, xh, o);
                }
            /* the maxima: the pool's output gradient, x there from xmax */
            size_t q0 = (size_t)(lo + j) * bn->pool_hw * OC;
            for (int k = 0; k < bn->pool_hw; k++)
                for (int o = 0; o < OC; o += 8) {
                    size_t q = q0 + (size_t)k * OC + o;
                    const int32_t *am = bn->argmax + q;
                    v8f t = LD8(c->dout + q), xh = XHAT8(LD8(bn->xmax + q), o);
                    if (bn->relu)
                        t = RELU_MASK8(t, xh, o);
                    v8f v = BN_DX8(t, xh, o);
                    for (int i = 0; i < 8; i++)
                        dj[(size_t)am[i] * OC + o + i] = v[i];
                }
            add_pixels8(acc, dj, P, OC);
        } else {
            for (int p = 0; p < P; p++) {
                double *a = acc[p & 7];
                for (int o = 0; o < OC; o += 8) {
                    size_t e = (size_t)p * OC + o;
                    v8f t = LD8(dout + e), xh = XHAT8(LD8(x + e), o);
                    if (bn->relu)
                        t = RELU_MASK8(t, xh, o);
                    v8f d = BN_DX8(t, xh, o);
                    *(v8f *)(dj + e) = d;
                    add_widened8(a + o, dj + e);
                }
            }
        }
    }
#undef LD8
#undef BN_DX8
#undef XHAT8
#undef RELU_MASK8
    for (int o = 0; o < OC; o++) {
        double l[8];
        for (int k = 0; k < 8; k++)
            l[k] = acc[k][o];
        pb[o] = (float)st_sum8(l);
    }
}

/* backward_group's dy[OC, gn*P] and bias gradient pb for the images [lo, lo + gn), from NCHW:
 * image by image through ST_CHAN_BLOCK channels at a time, so that each image's planes are read
 * in order (one stream, not one per plane), each channel's sums still over the images in order. */
static void gather_dy(float *restrict dy, float *restrict pb, const conv_call *c, int lo, int gn)
{
    const st_conv_shape *s = c->s;
    const st_conv_bn_grad *bn = c->bn;
    int P = c->P;
    size_t ldc = (size_t)gn * P;
    for (int o0 = 0; o0 < s->OC; o0 += ST_CHAN_BLOCK) {
        int o1 = s->OC - o0 < ST_CHAN_BLOCK ? s->OC : o0 + ST_CHAN_BLOCK;
        double acc[ST_CHAN_BLOCK][8] = {{0}};
        for (int j = 0; j < gn; j++)
            for (int oc = o0; oc < o1; oc++) {
                size_t off = (size_t)(lo + j) * c->out_size + (size_t)oc * P;
                float *dst = dy + (size_t)oc * ldc + (size_t)j * P;
                if (!bn) {
                    memcpy(dst, c->dout + off, sizeof(float) * (size_t)P);
                    st_add_lanes8(acc[oc - o0], dst, P);
                    continue;
                }
                /* with a pool, dout holds pool_hw values per plane, and their positions */
                size_t doff = bn->argmax ? ((size_t)(lo + j) * s->OC + oc) * bn->pool_hw : off;
                bn_dx_sum(dst, acc[oc - o0], c->dout + doff,
                          bn->argmax ? bn->argmax + doff : NULL,
                          bn->argmax ? bn->xmax + doff : NULL, bn->x + off, bn, oc, P);
            }
        for (int oc = o0; oc < o1; oc++)
            pb[oc] = (float)st_sum8(acc[oc - o0]);
    }
}

/* Backward of group g: its weight-gradient partial, and its images' input gradients. */
static void backward_group(const conv_call *c, int g, float *col, int inner)
{
    const st_conv_shape *s = c->s;
    int lo, hi;
    st_part_range(c->N, g, c->ng, &lo, &hi);
    int gn = hi - lo, P = c->P, CKK = c->CKK;
    size_t ldc = (size_t)gn * P, wsize = (size_t)s->OC * CKK;
    float *dy = col + c->colf, *xp = dy + (size_t)s->OC * c->G * P;
    float *pw = c->partial + (size_t)g * (wsize + (size_t)s->OC), *pb = pw + wsize;
    if (c->out_nhwc)
        gather_dy_nhwc(dy, pb, c, lo, gn);
    else
        gather_dy(dy, pb, c, lo, gn);
    if (c->wino) {
        wino_weight_grad(pw, c, lo, gn, dy, ldc, col, wino_scratch(c, col));
    } else if (direct_fits(s)) {
        direct_weight_grad(pw, c, lo, gn, dy, ldc, col, xp);
    } else {
        for (int j = 0; j < gn; j++)
            im2col(col + (size_t)j * P, ldc, c->inp + (size_t)(lo + j) * c->in_size, s, xp);
        /* dW_g[OC, CKK] = dy[OC, gn*P] * col[CKK, gn*P]^T */
        group_gemm(inner)(0, 1, s->OC, CKK, (int)ldc, 1.0f, dy, (int)ldc, col, (int)ldc, 0.0f, pw,
                          CKK);
    }
    if (!c->dinp)
        return;
    if (c->wino) { /* dX^T by Winograd into col, then transposed into the images' planes */
        float *dxt = c->in_nhwc ? c->dinp + (size_t)lo * c->in_size : col;
        if (c->out_nhwc)
            wino_conv(dxt, dy, (size_t)P * s->OC, 0, 1, s->OC, s->C, gn, c->U, s,
                      wino_scratch(c, col));
        else
            wino_conv(dxt, dy, (size_t)P, ldc, 0, s->OC, s->C, gn, c->U, s, wino_scratch(c, col));
        if (c->in_nhwc) /* (dX^T is the input gradient) */
            return;
        for (int j = 0; j < gn; j++)
            affine_transpose(c->dinp + (size_t)(lo + j) * c->in_size, (size_t)P,
                             col + (size_t)j * P * s->C, (size_t)s->C, P, s->C, NULL, NULL, 0,
                             NULL);
        return;
    }
    /* dcol[CKK, gn*P] = W^T * dy, reusing col (with one input channel both layouts are one) */
    if (c->out_nhwc)
        group_gemm(inner)(1, 1, CKK, (int)ldc, s->OC, 1.0f, c->w, CKK, dy, s->OC, 0.0f, col,
                          (int)ldc);
    else
        group_gemm(inner)(1, 0, CKK, (int)ldc, s->OC, 1.0f, c->w, CKK, dy, (int)ldc, 0.0f, col,
                          (int)ldc);
    for (int j = 0; j < gn; j++)
        col2im(c->dinp + (size_t)(lo + j) * c->in_size, col + (size_t)j * P, ldc, s, xp);
}

static conv_call conv_call_init(const st_conv_shape *s, int N, float *ws, int nthreads)
{
    conv_call c = {0};
    c.s = s;
    c.N = N;
    c.P = s->OH * s->OW;
    c.CKK = s->C * s->KH * s->KW;
    c.ng = num_groups(s, N);
    c.G = (size_t)max_group(s, N);
    c.per_thread = per_thread_floats(s, c.G);
    c.colf = col_floats(s, c.G);
    c.in_size = (size_t)s->C * s->H * s->W;
    c.out_size = (size_t)s->OC * c.P;
    c.ws = ws;
    c.partial = ws + c.per_thread * (size_t)nthreads;
    c.wino = st_conv_winograd(s, N);
    if (c.wino)
        c.U = c.partial + partial_floats(s);
    c.in_nhwc = (s->layout & ST_CONV_NHWC_IN) != 0;
    c.out_nhwc = (s->layout & ST_CONV_NHWC_OUT) != 0;
    return c;
}

int st_conv_nhwc_fits(const st_conv_shape *s, int N, int layout)
{
    int wino = st_conv_winograd(s, N);
    if (s->OC % 8 || s->OC > ST_CONV_NHWC_MAX_CH || (s->C % 8 && s->C != 1) ||
        s->C > ST_CONV_NHWC_MAX_CH)
        return 0;
    if ((layout & ST_CONV_NHWC_IN) && !(wino || s->C == 1))
        return 0;
    return !(layout & ST_CONV_NHWC_OUT) || wino || direct_fits(s);
}

typedef void (*group_fn)(const conv_call *, int, float *, int);

/* Thread `part`'s share of run_groups: the next group not taken, until none is left, in the
 * part's own workspace. */
static void groups_part(const conv_call *c, group_fn fn, atomic_int *next, int part)
{
    float *ws = c->ws + (size_t)part * c->per_thread;
    for (int g; (g = atomic_fetch_add_explicit(next, 1, memory_order_relaxed)) < c->ng;)
        fn(c, g, ws, 0);
}

/* Runs fn over the groups: one group per thread at a time; with a single group (or thread),
 * outside any parallel region, so that the GEMMs themselves can be threaded (a parallel region
 * nested in an inactive one would start new threads at every call). */
static void run_groups(const conv_call *c, int nthreads, group_fn fn)
{
    int nt = threads_for(c->ng, nthreads);
    if (nt > 1) {
        atomic_int next;
        atomic_init(&next, 0);
        ST_PARALLEL(nt, groups_part(c, fn, &next, part));
    } else {
        int inner = st_get_threads() > 1; /* few groups: thread the GEMMs */
        for (int g = 0; g < c->ng; g++)
            fn(c, g, c->ws, inner);
    }
}

/* A forward's weights as its path reads them: the one-channel forward's panels, or Winograd's
 * transform. With a cache (st_conv_wcache_floats: a copy of the weights it was made from, then
 * their transform), Winograd also serves batches under the minimum, and the transform is redone
 * only when the weights differ from that copy (bytewise: a zeroed cache holds the transform of
 * zero weights, and a NaN compares equal to itself). */
static void forward_weights(conv_call *c, const float *w, float *wcache)
{
    const st_conv_shape *s = c->s;
    if (direct_fits(s)) {
        float *panel = c->partial + partial_floats(s);
        direct_weights(panel, w, s, st_gemm_kernel_for_level(st_cpu_level())->nr);
        c->panel = panel;
        return;
    }
    if (wcache && winograd_on && wino_fits(s))
        c->wino = 1; /* (at any batch size) */
    if (!c->wino)
        return;
    if (!wcache) {
        wino_weights(c->U, w, s->C, s->OC, 0, wino_tile_for(s));
        return;
    }
    c->U = (float *)cached_wino_weights(w, s, wcache);
}

void st_conv2d_forward(float *out, const float *inp, const float *w, const float *b,
                       const st_conv_shape *s, int N, float *ws, int nthreads, double *stats,
                       int relu, float *wcache)
{
    conv_call c = conv_call_init(s, N, ws, nthreads);
    c.inp = inp, c.w = w, c.b = b, c.out = out, c.relu = relu;
    c.stats_partial = stats ? (double *)(void *)c.partial : NULL;
    c.transposed = st_conv_forward_transposed(s, N);
    forward_weights(&c, w, wcache);
    run_groups(&c, nthreads, forward_group);
    if (stats) /* the groups' sums, added in group order */
        for (int oc = 0; oc < s->OC; oc++) {
            double s1 = 0.0, s2 = 0.0;
            for (int g = 0; g < c.ng; g++) {
                s1 += c.stats_partial[(size_t)g * 2 * s->OC + 2 * oc];
                s2 += c.stats_partial[(size_t)g * 2 * s->OC + 2 * oc + 1];
            }
            stats[2 * oc] = s1;
            stats[2 * oc + 1] = s2;
        }
}

/* Multiply-adds the micro-kernel tiles do for an m x n product: whole tiles of mr x nr. */
static long tiled(long m, long n, int mr, int nr)
{
    return (m + mr - 1) / mr * mr * ((n + nr - 1) / nr * nr);
}

int st_conv_forward_transposed(const st_conv_shape *s, int N)
{
    const st_gemm_kernel *kr = st_gemm_kernel_for_level(st_cpu_level());
    long n = (long)max_group(s, N) * s->OH * s->OW; /* columns of the largest group's product */
    return tiled(n, s->OC, kr->mr, kr->nr) < tiled(s->OC, n, kr->mr, kr->nr);
}

int st_conv_forward_pools(const st_conv_shape *s, int N, int cached)
{
    /* every path but the untransposed GEMM (y = W * col, rows scattered) writes from y^T */
    return direct_fits(s) || st_conv_winograd(s, N) || (cached && winograd_on && wino_fits(s)) ||
           st_conv_forward_transposed(s, N);
}

int st_conv2d_forward_affine(float *out, float *pooled, const float *inp, const float *w,
                             const float *scale, const float *shift, const st_conv_shape *s,
                             int N, float *ws, int nthreads, int relu, float *wcache)
{
    conv_call c = conv_call_init(s, N, ws, nthreads);
    c.inp = inp, c.w = w, c.scale = scale, c.b = shift, c.out = out, c.relu = relu;
    c.transposed = st_conv_forward_transposed(s, N);
    forward_weights(&c, w, wcache);
    if (pooled && st_conv_forward_pools(s, N, wcache != NULL))
        c.pooled = pooled;
    run_groups(&c, nthreads, forward_group);
    return c.pooled != NULL;
}

/* Slice ch (4096 floats) of the weight gradient: the groups' partials added in group order. */
static void add_partials(float *dw, const float *partial, int ng, size_t part_size, size_t wsize,
                         long ch)
{
    size_t lo = (size_t)ch * 4096, hi = lo + 4096 < wsize ? lo + 4096 : wsize;
    for (int g = 0; g < ng; g++)
        add_row(dw + lo, partial + (size_t)g * part_size + lo, (int)(hi - lo));
}

void st_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const st_conv_shape *s, int N, float *ws, int nthreads,
                        const st_conv_bn_grad *bn)
{
    conv_call c = conv_call_init(s, N, ws, nthreads);
    c.inp = inp, c.w = w, c.dout = dout, c.dinp = dinp, c.bn = bn;
    if (c.wino && dinp)
        wino_weights(c.U, w, s->C, s->OC, 1, wino_tile_for(s));
    run_groups(&c, nthreads, backward_group);
    size_t wsize = (size_t)s->OC * c.CKK, part_size = wsize + (size_t)s->OC;
    float *partial = c.partial;
    int ng = c.ng;
    /* add the group partials in group order (the same sums whatever the threads), threads
     * taking slices of the weights */
    long nchunks = (long)((wsize + 4095) / 4096);
    ST_PARALLEL_FOR(st_get_threads(), 1, ch, nchunks,
                    add_partials(dw, partial, ng, part_size, wsize, ch));
    if (db)
        for (int g = 0; g < ng; g++)
            for (int oc = 0; oc < s->OC; oc++)
                db[oc] += partial[(size_t)g * part_size + wsize + oc];
}

/* ---------------------------------------------------------------- a team on one image
 *
 * Evaluation of one image by a team (team.h), each conv one phase. One input channel: items of
 * output rows (st_team_items() of them; the member pads the image and builds the weight panels
 * in its own scratch before its first one), each written (affine map, ReLU, transpose, or the
 * pool) into the planes. Winograd: one item per member, a band of tile rows or of output
 * channels, run start to end in the member's own scratch (see st_conv_forward_member). The
 * same functions as the single-threaded path compute every value, so the result is the same to
 * the bit. */

/* Winograd for a team: room in a member's V after the image's products for the rows small_gemm
 * reads past them (the member's M follows). */
static int member_wino(const st_conv_shape *s)
{
    if (!winograd_on || !wino_fits(s))
        return 0;
    wino_geom g = wino_geometry(s);
    return (size_t)g.nx * wino_ld((size_t)g.T * s->C) + (size_t)(ST_GEMM_MR_MAX - 1) * s->C <=
           wino_vm(&g);
}

int st_conv_member_fits(const st_conv_shape *s, int cached)
{
    if (direct_fits(s)) { /* the panels fit where this member's col would be */
        int nr = st_gemm_kernel_for_level(st_cpu_level())->nr;
        return (long)s->OH * s->OW >= (long)(s->OC + nr - 1) / nr * nr;
    }
    return cached && member_wino(s);
}

/* Winograd's transform of w in wcache (st_conv_wcache_floats), redone only when w differs from
 * the copy it was made from; returns the transform. */
static const float *cached_wino_weights(const float *w, const st_conv_shape *s, float *wcache)
{
    size_t nw = (size_t)s->OC * s->C * 9;
    if (memcmp(wcache, w, nw * sizeof(float)) != 0) {
        wino_weights(wcache + nw, w, s->C, s->OC, 0, wino_tile_for(s));
        memcpy(wcache, w, nw * sizeof(float));
    }
    return wcache + nw;
}

void st_conv_member_weights(const float *w, const st_conv_shape *s, float *wcache)
{
    if (!direct_fits(s) && wcache && member_wino(s))
        cached_wino_weights(w, s, wcache);
}

void st_conv_forward_member(float *out, float *pooled, const float *inp, const float *w,
                            const float *scale, const float *shift, const st_conv_shape *s,
                            float *ws, int nthreads, int relu, const float *wcache, st_member *me)
{
    conv_call c = conv_call_init(s, 1, ws, nthreads);
    int P = c.P, OC = s->OC, OW = s->OW, lo, hi, it;
    float *mine = ws + (size_t)me->id * c.per_thread;     /* this member's scratch */
    float *yt = ws + c.colf;                              /* y^T, in member 0's scratch */
    if (direct_fits(s)) {
        float *panel = mine, *xp = mine + c.colf + (size_t)OC * c.G * P;
        /* items of output rows, or of pairs of them (pooled) */
        int rows = pooled ? s->OH / 2 : s->OH, step = pooled ? 2 : 1;
        int n = st_team_items(me->size), ready = 0;
        n = n < rows ? n : rows;
        while (st_team_item(me, n, &it)) {
            if (!ready) {
                direct_weights(panel, w, s, st_gemm_kernel_for_level(st_cpu_level())->nr);
                direct_pad(xp, inp, s);
                ready = 1;
            }
            st_team_part(rows, n, it, &lo, &hi);
            direct_rows(yt, xp, panel, s, step * lo, step * hi);
            write_rows(out, pooled, yt, s, step * lo, step * hi, scale, shift, relu, NULL);
            st_team_item_done(me);
        }
        st_team_phase_end(me, n);
        return;
    }
    /* One phase: each item, run start to end in its member's own scratch (input transform,
     * products, output transform, the write), is a band of tile rows or, where bands would
     * leave the micro-kernel's rows emptier (on two members, conv3 at 7x7: 2 bands of 2 tiles
     * fill 12 rows where all 4 fill 6), a band of output channels over the whole image (its
     * input transform is then made by every member: a small share). Nothing crosses to another
     * core but the input and the items' outputs. A product's rows and columns are computed
     * alike whatever item they fall in, so the values are those of the whole image at once.
     * Items: one per member, taken by whoever is free. */
    wino_geom g = wino_geometry(s);
    wino_scratch_parts own = wino_parts(wino_scratch(&c, mine), &g);
    const float *U = wcache + (size_t)OC * s->C * 9;
    const st_gemm_kernel *kr = st_gemm_kernel_for_level(st_cpu_level());
    int I = s->C, TW = g.TW, mr = kr->mr, nr = kr->nr, n = me->size < g.TH ? me->size : g.TH;
    int band_rows = 0, units = OC / nr;
    for (int i = 0; i < n; i++) {
        st_team_part(g.TH, n, i, &lo, &hi);
        band_rows += ((hi - lo) * TW + mr - 1) / mr * mr;
    }
    int by_oc = OC % nr == 0 && units >= 2 && band_rows > (g.T + mr - 1) / mr * mr;
    if (by_oc)
        n = me->size < units ? me->size : units;
    while (st_team_item(me, n, &it)) {
        st_team_part(by_oc ? units : g.TH, n, it, &lo, &hi);
        /* tile rows [ty0, ty1) (input rows [m ty0, m ty1 + 2)), channels [o0, o1) */
        int ty0 = by_oc ? 0 : lo, ty1 = by_oc ? g.TH : hi;
        int o0 = by_oc ? lo * nr : 0, o1 = by_oc ? hi * nr : OC, T = (ty1 - ty0) * TW;
        size_t ldv = wino_ld((size_t)T * I), ldm = wino_ld((size_t)T * OC);
        wino_hwc(own.hwc, inp, (size_t)s->H * s->W, I, s->H, s->W, &g, g.m * ty0,
                 g.m * ty1 + 2);
        wino_input(own.V, ldv, -ty0 * TW, own.hwc, I, &g, ty0, ty1);
        for (int xi = 0; xi < g.nx; xi++)
            small_gemm(0, T, o1 - o0, I, own.V + xi * ldv, I, U + (size_t)xi * I * OC + o0, OC,
                       0.0f, own.M + xi * ldm + o0, OC);
        wino_output(yt, own.M, ldm, -ty0 * TW, OC, s->OH, OW, &g, own.junk, ty0, ty1, o0, o1);
        /* (pooled: tile rows are the pool's rows; an odd last row is dropped) */
        int lim = pooled ? s->OH & ~1 : s->OH, r0 = g.m * ty0;
        int r1 = g.m * ty1 < lim ? g.m * ty1 : lim;
        if (r1 > r0)
            write_part(out, pooled, yt, s, r0, r1, o0, o1, scale, shift, relu, NULL);
        st_team_item_done(me);
    }
    st_team_phase_end(me, n);
}
