/* kernels.c - runs each layer's forward and backward pass. */
#include "kernels.h"

#include "layers.h"

#include <string.h>

int st_kernels_init(st_model *m, st_error *err)
{
    (void)m;
    (void)err;
    return 0;
}

void st_kernels_free(st_model *m)
{
    (void)m;
}

void st_layer_forward(st_model *m, st_layer *l, const float *in, int n)
{
    size_t total = (size_t)n * l->out_size;
    switch (l->kind) {
    case ST_L_CONV:
        conv2d_forward_ref(l->out, in, l->w, l->b, n, l->in_c, l->in_h, l->in_w, l->conv.oc,
                           l->conv.kh, l->conv.kw, l->conv.stride, l->conv.pad);
        break;
    case ST_L_BN:
        if (m->training) {
            batchnorm2d_forward_train_ref(l->out, l->save_mean, l->save_invstd, l->running_mean,
                                          l->running_var, in, l->w, l->b, n, l->in_c,
                                          l->in_h * l->in_w, ST_BN_MOMENTUM, ST_BN_EPS);
            l->num_batches_tracked++;
        } else {
            batchnorm2d_forward_eval_ref(l->out, in, l->w, l->b, l->running_mean, l->running_var,
                                         n, l->in_c, l->in_h * l->in_w, ST_BN_EPS);
        }
        break;
    case ST_L_RELU:
        relu_forward_ref(l->out, in, total);
        break;
    case ST_L_MAXPOOL:
        maxpool2d_forward_ref(l->out, l->argmax, in, n, l->in_c, l->in_h, l->in_w, l->pool.k,
                              l->pool.s);
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
        linear_forward_ref(l->out, in, l->w, l->b, n, l->lin.in, l->lin.out);
        break;
    case ST_L_FLATTEN:
        memcpy(l->out, in, total * sizeof(float));
        break;
    }
}

void st_layer_backward(st_model *m, st_layer *l, const float *in, const float *dout, float *dinp,
                       int n)
{
    (void)m;
    size_t total = (size_t)n * l->out_size;
    switch (l->kind) {
    case ST_L_CONV:
        conv2d_backward_ref(dinp, l->dw, l->db, dout, in, l->w, n, l->in_c, l->in_h, l->in_w,
                            l->conv.oc, l->conv.kh, l->conv.kw, l->conv.stride, l->conv.pad);
        break;
    case ST_L_BN:
        batchnorm2d_backward_ref(dinp, l->dw, l->db, dout, in, l->save_mean, l->save_invstd, l->w,
                                 n, l->in_c, l->in_h * l->in_w);
        break;
    case ST_L_RELU:
        if (dinp)
            relu_backward_ref(dinp, dout, l->out, total);
        break;
    case ST_L_MAXPOOL:
        if (dinp)
            maxpool2d_backward_ref(dinp, dout, l->argmax, n, l->in_c, l->in_h, l->in_w, l->out_h,
                                   l->out_w);
        break;
    case ST_L_DROPOUT:
        if (dinp)
            dropout_backward_ref(dinp, dout, l->mask, total);
        break;
    case ST_L_LINEAR:
        linear_backward_ref(dinp, l->dw, l->db, dout, in, l->w, n, l->lin.in, l->lin.out);
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
