/* model.h - the inside of a model: its layers, parameters and buffers (library-internal). */
#ifndef STRIDE_MODEL_H
#define STRIDE_MODEL_H

#include "internal.h"

#include <stdio.h>

typedef enum st_layer_kind {
    ST_L_CONV,
    ST_L_BN,
    ST_L_RELU,
    ST_L_MAXPOOL,
    ST_L_DROPOUT,
    ST_L_LINEAR,
    ST_L_FLATTEN
} st_layer_kind;

#define ST_BN_MOMENTUM 0.1f
#define ST_BN_EPS 1e-5f
/* Batches smaller than this run on one thread (waking threads costs more than it saves). */
#define ST_SMALL_BATCH 4
/* Evaluation-mode forwards of more images than this run chunk by chunk (model.c). */
#define ST_EVAL_CHUNK 64

typedef struct st_layer {
    st_layer_kind kind;
    char name[24];  /* PyTorch module path: "block1.0" */
    char block[16]; /* top-level module: "block1" */
    char desc[64];
    int in_c, in_h, in_w;    /* per-image input shape */
    int out_c, out_h, out_w; /* per-image output shape */
    size_t in_size, out_size;
    union {
        struct { int ic, oc, kh, kw, stride, pad; } conv;
        struct { int k, s; } pool;
        struct { float p; } drop;
        struct { int in, out; } lin;
    };
    float *w, *b, *dw, *db;              /* into the model's params / grads (conv, bn, linear) */
    float *running_mean, *running_var;   /* batch norm buffers (into model->buffers) */
    int64_t num_batches_tracked;
    float *save_mean, *save_invstd;      /* batch norm: statistics of the last training batch */
    int32_t *argmax;                     /* max pool: index of the maximum, per output */
    float *mask;                         /* dropout: 0 or 1/(1-p), per output */
    /* Fusions of the fast path (kernels.c; the reference path ignores them). A forward pass runs
     * every layer in one mode, so a batch norm can rely on what the conv before it just did. */
    double *conv_stats;   /* conv feeding a batch norm: [oc][2] sum and sum of squares of its
                             output over the current training batch, computed as it is written */
    struct st_layer *stats_src; /* batch norm: the conv before it (training: conv_stats describe
                                   its input; evaluation: the conv applies it) */
    int relu_fused;       /* batch norm: also applies the ReLU that follows it (both passes) */
    float *dx_coef;       /* batch norm after a conv: [C][3] mean(dy), mean(dy * xhat) and
                             invstd * gamma of the last backward pass. Its input gradient is not
                             written: the conv's backward computes it from these as it reads it */
    struct st_layer *pool_after; /* batch norm after a conv, with a fused ReLU: the 2x2 max pool
                                    after that ReLU. In training, the pool applies the batch norm
                                    and ReLU as it reads the conv's output (the batch norm's and
                                    ReLU's output is not written), and the batch norm does the
                                    pool's backward (from its output gradient and argmax) */
    struct st_layer *bn_before; /* max pool: that batch norm (see pool_after) */
    int pooled_by_conv;   /* max pool with bn_before, evaluation: the conv before that batch norm
                             wrote this output in the last forward (kernels.c) */
    float *xmax;          /* max pool with bn_before: the batch norm's input (the conv's output)
                             at each argmax, written by the training forward, so that the
                             backward passes read them in order instead of gathering them */
    struct st_layer *bn_next; /* conv: the batch norm it feeds. In evaluation mode the conv
                                 applies that batch norm (and its ReLU) as it writes its output,
                                 which is the batch norm's output */
    float *bn_affine;     /* conv: OC scales, then OC shifts (that batch norm and the bias) */
    float *wcache;        /* conv served by Winograd: the evaluation forward's transformed
                             weights (st_conv2d_forward's wcache), or NULL */
    int fused;            /* ReLU: done by the batch norm before it (or by the conv before
                             that in evaluation, or by a max pool after it in training) */
    int nhwc;             /* the NHWC chain (model.c): conv, ST_CONV_NHWC_IN / _OUT; max pool
                             (and the batch norm before it), 1: in a training pass that runs
                             the chain, these tensors are channels-last */
    float *out;                          /* output activations, max_batch * out_size */
    int shares_out;                      /* out is the previous layer's buffer (in place) */
} st_layer;

/* Evaluation of one image runs alone or by a team of threads (kernels.c), whichever has been
 * faster lately: on a shared machine that changes with what else runs (model.c). */
typedef struct st_b1_timer {
    int size;             /* the team's size these were measured with */
    double us[2];         /* time per image alone [0], by the team [1]; 0 until measured */
    int trial, trial_left; /* a trial of way `trial` under way: images left */
    double trial_sum;     /* its counted time so far */
    double team_trial_at; /* when to try the team again while alone is faster (us) */
    double team_every;    /* the wait before that: doubles while the team keeps losing (us) */
    unsigned since_trial; /* images by the team since alone was last tried */
    unsigned runs[2];     /* images run alone, by the team (for tests) */
} st_b1_timer;

/* The timer's choice for the next image, begun at `now` (us): 1 by the team, 0 alone; then what
 * it took (us), ended at `end`. (model.c; apart for tests, which feed them made-up times.) */
int st_b1_choose(st_b1_timer *b, double now);
void st_b1_record(st_b1_timer *b, int use_team, double us, double end);

struct st_model {
    st_model_kind kind;
    int max_batch;
    int training, dropout_enabled;
    int nlayers;
    st_layer *layers;
    size_t num_params, num_buffers;
    float *params, *grads; /* contiguous, state_dict order */
    float *buffers;        /* batch norm running statistics */
    st_tensor *tensors;
    int ntensors;
    float *dbuf[2];        /* gradient buffers, alternating except through in-place layers */
    int first_trainable;   /* the first layer with parameters: backward stops there */
    uint8_t *labels;
    const float *input;    /* input of the last forward */
    int batch;             /* batch size of the last forward */
    int have_loss;
    size_t max_col;        /* largest im2col matrix of one image */
    float *ws;             /* kernel workspace (kernels.c) */
    int ws_threads;        /* threads the workspace was sized for */
    int reference;         /* run the reference kernels (tests) */
    int nhwc;              /* the last forward ran the NHWC chain (kernels.c) */
    int nhwc_off;          /* never run it (st_model_use_nhwc) */
    st_b1_timer b1;        /* evaluation of one image: alone or by a team (model.c) */
    size_t bytes;          /* memory allocated */
    st_rng rng;            /* dropout masks */
};

/* Runs the plain reference kernels of layers.h instead of the fast ones (for tests). Set it
 * between training steps, not between a forward pass and its backward pass: the fast path's
 * fusions leave some activations unwritten that the reference backward would read. */
void st_model_use_reference(st_model *m, int on);
/* For tests and benchmarks: 0 keeps every tensor NCHW in the fast path's training passes (the
 * same values to the bit), 1 lets them run the NHWC chain where it fits (the default). Set it
 * between training steps, like st_model_use_reference. */
void st_model_use_nhwc(st_model *m, int on);
/* Where a caller may place a batch of inputs (max_batch images) so that a forward reading it
 * does not copy it: the first layer's output buffer when that layer is a Flatten, whose forward
 * is then a view; NULL otherwise. The batch stays there until the next forward. */
float *st_model_input_slot(st_model *m);

#endif
