/* kernels.h - the layer kernels the model runs (fast paths, chosen per CPU), behind one interface. */
#ifndef STRIDE_KERNELS_H
#define STRIDE_KERNELS_H

#include "model.h"

/* Allocates the scratch memory the kernels need for m (called once by st_model_create). */
int st_kernels_init(st_model *m, st_error *err);
void st_kernels_free(st_model *m);
/* Whether a forward of n images runs the NHWC chain (kernels.c): training, the fast path, and
 * every conv in the chain able to at this batch size. */
int st_kernels_nhwc(const st_model *m, int n);

/* Forward of layer l on n images: reads in, writes l->out. */
void st_layer_forward(st_model *m, st_layer *l, const float *in, int n);
/* Backward of layer l: reads dout (gradient of l->out), writes dinp (gradient of in) unless NULL,
 * accumulates parameter gradients. */
void st_layer_backward(st_model *m, st_layer *l, const float *in, const float *dout, float *dinp,
                       int n);
/* Evaluation of one image by a team of threads (see kernels.c): the team's size for a forward of
 * n images with m (1: no team), and the forward pass of one image with it, the same to the bit
 * as st_layer_forward layer after layer. */
int st_team_size(const st_model *m, int n);
void st_forward_team(st_model *m, const float *x, int size);
/* Mean cross-entropy of logits (n x c); writes dlogits. */
float st_cross_entropy(float *dlogits, const float *logits, const uint8_t *labels, int n, int c);

#endif
