/* conv.c - the fast Conv2d: im2col + GEMM over groups of images, threaded and deterministic.
 *
 * The batch is cut into at most ST_CONV_GROUPS groups of consecutive images; the cut depends on
 * the batch size only, never on the number of threads. For a group of G images:
 *   forward:  col[CKK, G*P] = im2col(images), y[OC, G*P] = W[OC, CKK] * col, then y is scattered
 *             into NCHW with the bias added (P = OH*OW, CKK = C*KH*KW);
 *   backward: dy[OC, G*P] gathered from NCHW, dW_g = dy * col^T, db_g = row sums of dy,
 *             dcol = W^T * dy, dX = col2im(dcol).
 * Groups run in parallel, one per thread at a time; the per-group weight gradients are then added
 * in group order, so the result is bit-identical whatever the number of threads. With fewer groups
 * than threads (batch 1, inference latency) the GEMMs themselves are threaded instead.
 */
#include "conv.h"

#include "gemm.h"

#include <omp.h>
#include <string.h>

static void group_range(int N, int g, int ngroups, int *lo, int *hi)
{
    *lo = (int)((long)N * g / ngroups);
    *hi = (int)((long)N * (g + 1) / ngroups);
}

static int num_groups(int N)
{
    return N < ST_CONV_GROUPS ? N : ST_CONV_GROUPS;
}

static int max_group(int N)
{
    int ng = num_groups(N);
    return (N + ng - 1) / ng;
}

size_t st_conv_ws_floats(const st_conv_shape *s, int max_batch, int nthreads)
{
    size_t P = (size_t)s->OH * s->OW, CKK = (size_t)s->C * s->KH * s->KW;
    size_t G = (size_t)max_group(max_batch);
    size_t per_thread = CKK * G * P + (size_t)s->OC * G * P;
    size_t partial = (size_t)ST_CONV_GROUPS * ((size_t)s->OC * CKK + (size_t)s->OC);
    return per_thread * (size_t)nthreads + partial;
}

/* r[0..n) = src[0..n) inside [lo, hi), zero outside (rows are short: no library calls) */
static inline void copy_row(float *restrict r, const float *restrict src, int lo, int hi, int n)
{
    for (int i = 0; i < lo; i++)
        r[i] = 0.0f;
    for (int i = lo; i < hi; i++)
        r[i] = src[i];
    for (int i = hi; i < n; i++)
        r[i] = 0.0f;
}

/* col[(c*KH + kh)*KW + kw][j*P + oh*OW + ow] for image j of the group; ldc = G*P. */
static void im2col(float *col, size_t ldc, const float *img, const st_conv_shape *s)
{
    int P = s->OH * s->OW;
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
                    if (s->stride == 1) {
                        int iw0 = -s->pad + kw; /* iw = ow + iw0 */
                        int lo = iw0 < 0 ? -iw0 : 0;
                        int hi = s->W - iw0 < s->OW ? s->W - iw0 : s->OW;
                        if (hi < lo)
                            hi = lo;
                        copy_row(r, src + iw0, lo, hi, s->OW);
                    } else {
                        for (int ow = 0; ow < s->OW; ow++) {
                            int iw = ow * s->stride - s->pad + kw;
                            r[ow] = (iw >= 0 && iw < s->W) ? src[iw] : 0.0f;
                        }
                    }
                }
                (void)P;
            }
}

static void add_row(float *restrict dst, const float *restrict src, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] += src[i];
}

/* dimg += col2im(dcol) for one image; dimg must be zeroed by the caller. */
static void col2im(float *dimg, const float *dcol, size_t ldc, const st_conv_shape *s)
{
    if (s->stride == 1) { /* each row of dcol adds to a contiguous run of an input row */
        for (int c = 0; c < s->C; c++)
            for (int kh = 0; kh < s->KH; kh++)
                for (int kw = 0; kw < s->KW; kw++) {
                    const float *row = dcol + ((size_t)(c * s->KH + kh) * s->KW + kw) * ldc;
                    float *plane = dimg + (size_t)c * s->H * s->W;
                    int iw0 = kw - s->pad; /* iw = ow + iw0 */
                    int lo = iw0 < 0 ? -iw0 : 0;
                    int hi = s->W - iw0 < s->OW ? s->W - iw0 : s->OW;
                    if (hi <= lo)
                        continue;
                    for (int oh = 0; oh < s->OH; oh++) {
                        int ih = oh - s->pad + kh;
                        if (ih < 0 || ih >= s->H)
                            continue;
                        add_row(plane + (size_t)ih * s->W + lo + iw0, row + (size_t)oh * s->OW + lo,
                                hi - lo);
                    }
                }
        return;
    }
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

static int threads_for(int ngroups, int nthreads)
{
    int t = st_get_threads();
    if (t > nthreads)
        t = nthreads;
    if (t > ngroups)
        t = ngroups;
    return t < 1 ? 1 : t;
}

void st_conv2d_forward(float *out, const float *inp, const float *w, const float *b,
                       const st_conv_shape *s, int N, float *ws, int nthreads)
{
    int P = s->OH * s->OW, CKK = s->C * s->KH * s->KW, ng = num_groups(N);
    size_t G = (size_t)max_group(N);
    size_t per_thread = (size_t)CKK * G * P + (size_t)s->OC * G * P;
    size_t in_size = (size_t)s->C * s->H * s->W, out_size = (size_t)s->OC * P;
    int nt = threads_for(ng, nthreads);
    int inner_threads = nt < 2 && st_get_threads() > 1; /* few groups: thread the GEMM */
#pragma omp parallel for schedule(static, 1) num_threads(nt) if (nt > 1)
    for (int g = 0; g < ng; g++) {
        int lo, hi;
        group_range(N, g, ng, &lo, &hi);
        int gn = hi - lo;
        size_t ldc = (size_t)gn * P;
        float *col = ws + (size_t)omp_get_thread_num() * per_thread;
        float *y = col + (size_t)CKK * G * P;
        for (int j = 0; j < gn; j++)
            im2col(col + (size_t)j * P, ldc, inp + (size_t)(lo + j) * in_size, s);
        if (inner_threads)
            st_sgemm(0, 0, s->OC, (int)ldc, CKK, 1.0f, w, CKK, col, (int)ldc, 0.0f, y, (int)ldc);
        else
            st_sgemm_st(0, 0, s->OC, (int)ldc, CKK, 1.0f, w, CKK, col, (int)ldc, 0.0f, y,
                        (int)ldc);
        for (int j = 0; j < gn; j++)
            for (int oc = 0; oc < s->OC; oc++) {
                float *dst = out + (size_t)(lo + j) * out_size + (size_t)oc * P;
                const float *src = y + (size_t)oc * ldc + (size_t)j * P;
                float bias = b ? b[oc] : 0.0f;
                for (int p = 0; p < P; p++)
                    dst[p] = src[p] + bias;
            }
    }
}

void st_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const st_conv_shape *s, int N, float *ws, int nthreads)
{
    int P = s->OH * s->OW, CKK = s->C * s->KH * s->KW, ng = num_groups(N);
    size_t G = (size_t)max_group(N);
    size_t per_thread = (size_t)CKK * G * P + (size_t)s->OC * G * P;
    size_t in_size = (size_t)s->C * s->H * s->W, out_size = (size_t)s->OC * P;
    size_t wsize = (size_t)s->OC * CKK, part_size = wsize + (size_t)s->OC;
    float *partial = ws + per_thread * (size_t)nthreads;
    int nt = threads_for(ng, nthreads);
    int inner_threads = nt < 2 && st_get_threads() > 1;
#pragma omp parallel for schedule(static, 1) num_threads(nt) if (nt > 1)
    for (int g = 0; g < ng; g++) {
        int lo, hi;
        group_range(N, g, ng, &lo, &hi);
        int gn = hi - lo;
        size_t ldc = (size_t)gn * P;
        float *col = ws + (size_t)omp_get_thread_num() * per_thread;
        float *dy = col + (size_t)CKK * G * P;
        float *pw = partial + (size_t)g * part_size, *pb = pw + wsize;
        /* gather dy[OC, gn*P] and the bias gradient of this group */
        for (int oc = 0; oc < s->OC; oc++) {
            float sum = 0.0f;
            for (int j = 0; j < gn; j++) {
                const float *src = dout + (size_t)(lo + j) * out_size + (size_t)oc * P;
                float *dst = dy + (size_t)oc * ldc + (size_t)j * P;
                for (int p = 0; p < P; p++) {
                    dst[p] = src[p];
                    sum += src[p];
                }
            }
            pb[oc] = sum;
        }
        for (int j = 0; j < gn; j++)
            im2col(col + (size_t)j * P, ldc, inp + (size_t)(lo + j) * in_size, s);
        /* dW_g[OC, CKK] = dy[OC, gn*P] * col[CKK, gn*P]^T */
        if (inner_threads)
            st_sgemm(0, 1, s->OC, CKK, (int)ldc, 1.0f, dy, (int)ldc, col, (int)ldc, 0.0f, pw, CKK);
        else
            st_sgemm_st(0, 1, s->OC, CKK, (int)ldc, 1.0f, dy, (int)ldc, col, (int)ldc, 0.0f, pw,
                        CKK);
        if (dinp) {
            /* dcol[CKK, gn*P] = W^T * dy, reusing col */
            if (inner_threads)
                st_sgemm(1, 0, CKK, (int)ldc, s->OC, 1.0f, w, CKK, dy, (int)ldc, 0.0f, col,
                         (int)ldc);
            else
                st_sgemm_st(1, 0, CKK, (int)ldc, s->OC, 1.0f, w, CKK, dy, (int)ldc, 0.0f, col,
                            (int)ldc);
            for (int j = 0; j < gn; j++) {
                float *dimg = dinp + (size_t)(lo + j) * in_size;
                memset(dimg, 0, sizeof(float) * in_size);
                col2im(dimg, col + (size_t)j * P, ldc, s);
            }
        }
    }
    /* add the group partials in group order: the same sums whatever the threads */
    for (int g = 0; g < ng; g++) {
        const float *pw = partial + (size_t)g * part_size, *pb = pw + wsize;
        for (size_t i = 0; i < wsize; i++)
            dw[i] += pw[i];
        if (db)
            for (int oc = 0; oc < s->OC; oc++)
                db[oc] += pb[oc];
    }
}
