/* stride.h - Stride: a small, fast C library that trains and runs convolutional neural networks.
 *
 * Conventions
 *  - float32, NCHW activations, PyTorch layouts: Conv2d weight [out, in, kh, kw], Linear weight
 *    [out, in]; flatten in C, H, W order.
 *  - Functions that can fail return 0 (or a non-NULL pointer) on success and -1 (or NULL) on
 *    failure, with a one-line message in the st_error they were given (err may be NULL).
 *    The library never prints and never exits.
 *  - Models, optimisers and datasets are opaque objects created and freed by the functions here.
 *    All memory a training step or an evaluation pass needs is allocated when the model and its
 *    optimiser are created: st_model_forward, st_model_loss, st_model_backward and the
 *    optimiser's steps allocate nothing and start no thread (tests/test_alloc.c, 1 to 4
 *    threads).
 */
#ifndef STRIDE_H
#define STRIDE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STRIDE_VERSION "0.1.0"

/* ---------------------------------------------------------------- errors */

typedef struct st_error {
    char msg[512]; /* one line, no trailing newline */
} st_error;

/* ---------------------------------------------------------------- random numbers */

/* Stride's own generator: xoshiro256** (Blackman & Vigna), seeded through splitmix64, so results
 * do not depend on the C library. st_rng_uniform returns a float in [0, 1) built from the top 24
 * bits; st_rng_below(n) is unbiased in [0, n) (Lemire's method). */
typedef struct st_rng {
    uint64_t s[4];
} st_rng;

void st_rng_seed(st_rng *rng, uint64_t seed);
uint64_t st_rng_next(st_rng *rng);
float st_rng_uniform(st_rng *rng);
uint32_t st_rng_below(st_rng *rng, uint32_t n);

/* ---------------------------------------------------------------- threads and CPU */

/* Number of threads used by the kernels: n from 1 to ST_MAX_THREADS (larger: ST_MAX_THREADS), or
 * 0 for the default, OMP_NUM_THREADS where it is set (its first number), else all the CPUs the
 * process may run on. Results are bit-identical whatever the number of threads. A forward pass
 * of one image in evaluation mode (the CNN; the smaller nets stay on one thread) runs either on
 * the calling thread or by a team of these threads that shares out each layer, whichever the
 * model has timed as faster lately: on a shared machine a second core can be worth nothing for
 * a while (two virtual CPUs on one physical core). */
#define ST_MAX_THREADS 1024
void st_set_threads(int n);
int st_get_threads(void);
/* Name of the kernel family chosen at run time for this CPU: "avx512", "avx2" or "portable". */
const char *st_kernel_name(void);

/* ---------------------------------------------------------------- models */

typedef enum st_model_kind {
    ST_MODEL_CNN = 0, /* ConvNet: 3 conv blocks + classifier, 426,602 parameters */
    ST_MODEL_LINEAR,  /* SingleLayerNet: Linear(784, 10), 7,850 parameters */
    ST_MODEL_MLP      /* MultiLayerNet: 784-512-256-10 with ReLU, 535,818 parameters */
} st_model_kind;

#define ST_NUM_CLASSES 10

typedef struct st_model st_model;

/* "cnn", "linear" or "mlp" -> kind; -1 on an unknown name. */
int st_model_kind_parse(const char *name, st_model_kind *kind, st_error *err);
const char *st_model_kind_name(st_model_kind kind);
/* The PyTorch class the model mirrors: "ConvNet", "SingleLayerNet", "MultiLayerNet". */
const char *st_model_class_name(st_model_kind kind);

/* Builds a model for inputs of 1x28x28 with batches of up to max_batch images, initialised as
 * PyTorch initialises it (Kaiming-uniform, a = sqrt(5)) from Stride's generator seeded with seed.
 * Shapes are inferred and checked here, once. */
st_model *st_model_create(st_model_kind kind, int max_batch, uint64_t seed, st_error *err);
void st_model_free(st_model *m);
st_model_kind st_model_get_kind(const st_model *m);
int st_model_max_batch(const st_model *m);
size_t st_model_num_params(const st_model *m);

/* Training mode (batch statistics, dropout on) or evaluation mode (running statistics, no
 * dropout). A new model is in training mode. */
void st_model_set_training(st_model *m, int training);
int st_model_is_training(const st_model *m);
/* Turns dropout off (or back on) in training mode; used to compare with PyTorch exactly. */
void st_model_set_dropout(st_model *m, int enabled);
/* The generator that draws dropout masks. */
st_rng *st_model_rng(st_model *m);

/* Forward pass of n images (n <= max_batch), x is n x 1 x 28 x 28 in [0, 1]. On success *logits
 * points to n x 10 scores owned by the model, valid until the next forward. */
int st_model_forward(st_model *m, const float *x, int n, const float **logits, st_error *err);
/* Mean cross-entropy of the last forward's logits against labels (0..9); also stores the gradient
 * of the loss with respect to the logits for st_model_backward. Returns -1 on a bad label. */
int st_model_loss(st_model *m, const uint8_t *labels, float *loss, st_error *err);
/* Back-propagates the last loss, accumulating (+=) into the parameter gradients. */
int st_model_backward(st_model *m, st_error *err);
void st_model_zero_grad(st_model *m);

/* Flat views of all parameters and their gradients (num_params floats each, state_dict order). */
float *st_model_params(st_model *m);
float *st_model_grads(st_model *m);

/* Layers, for shape traces, summaries and feature maps. */
typedef struct st_layer_info {
    const char *name;  /* PyTorch module path: "block1.0", "classifier.1", "layers.2", "flatten" */
    const char *block; /* the top-level module: "block1", "classifier", "linear", "layers" */
    char desc[64];     /* "Conv2d(1->16, 5x5, stride=1, padding=2)", "ReLU", ... */
    int in_c, in_h, in_w;    /* per-image input shape (in_h = in_w = 1 for vectors) */
    int out_c, out_h, out_w; /* per-image output shape */
    size_t num_params;       /* trainable parameters of this layer */
    int channels_last;       /* st_model_layer_output holds this layer's output of the last
                                forward as n x out_h x out_w x out_c (see there), not NCHW */
} st_layer_info;

int st_model_num_layers(const st_model *m);
void st_model_layer_info(const st_model *m, int i, st_layer_info *info);
/* Output of layer i from the last forward: n x out_c x out_h x out_w. ReLU runs in place, so a
 * layer followed by a ReLU shows the ReLU's output (the blocks' outputs are exact). In evaluation
 * mode a forward of more than 64 images runs 64 at a time, and the layers before the last then
 * hold the last chunk's images only (the logits are always complete); a convolution followed by
 * batch norm applies the batch norm as it writes, so only the batch norm's output is kept, and
 * where a ReLU and a 2x2 max pool follow, only the pool's. In training mode, a batch norm and
 * ReLU followed by a 2x2 max pool are applied by the pool as it reads the convolution's output,
 * so their own output is not kept (the pool's is); and where such a pool feeds a 3x3
 * convolution (the CNN's first two blocks, batches of 4 images or more), that convolution's
 * output and the pool's are kept channels-last, n x out_h x out_w x out_c (st_layer_info's
 * channels_last says which, for the last forward). */
const float *st_model_layer_output(const st_model *m, int i);

/* Named tensors in PyTorch state_dict order: parameters and buffers (BatchNorm running_mean,
 * running_var, and num_batches_tracked, which is int64). */
typedef enum st_dtype { ST_F32 = 0, ST_I64 = 1 } st_dtype;

typedef struct st_tensor {
    char name[48];    /* "block1.0.weight", "block1.1.num_batches_tracked", ... */
    st_dtype dtype;
    int ndim;
    int64_t shape[4];
    size_t numel;
    void *data;       /* float* or int64_t* */
    float *grad;      /* NULL for buffers */
} st_tensor;

int st_model_num_tensors(const st_model *m);
const st_tensor *st_model_tensor(const st_model *m, int i);
const st_tensor *st_model_find_tensor(const st_model *m, const char *name);

/* ---------------------------------------------------------------- optimisers */

typedef enum st_optim_kind { ST_OPTIM_ADAM = 0, ST_OPTIM_SGD } st_optim_kind;

typedef struct st_optim_config {
    st_optim_kind kind;
    double lr;
    double beta1, beta2, eps; /* Adam: 0.9, 0.999, 1e-8 (double, as PyTorch's scalars) */
    double momentum;          /* SGD: 0 for plain SGD */
} st_optim_config;

st_optim_config st_adam_config(double lr);
st_optim_config st_sgd_config(double lr, double momentum);

typedef struct st_optim st_optim;

/* An optimiser over all the parameters of m (PyTorch semantics: torch.optim.Adam, torch.optim.SGD
 * with dampening 0 and no weight decay). */
st_optim *st_optim_create(st_model *m, const st_optim_config *cfg, st_error *err);
void st_optim_free(st_optim *o);
/* One update of every parameter from its accumulated gradient. */
void st_optim_step(st_optim *o);
/* st_optim_step then st_model_zero_grad, in one pass over the gradients (each is zeroed right
 * after it is used, while it is still in cache): what a training loop does between batches. */
void st_optim_step_zero_grad(st_optim *o);
/* State for checkpoints: step count, first and second moments (Adam) or momentum buffer (SGD,
 * in *m1; *m2 is NULL). Each array has st_model_num_params floats. */
const st_optim_config *st_optim_get_config(const st_optim *o);
int64_t st_optim_steps(const st_optim *o);
void st_optim_set_steps(st_optim *o, int64_t steps);
void st_optim_state(st_optim *o, float **m1, float **m2);

/* ---------------------------------------------------------------- data */

typedef struct st_dataset {
    int n;              /* number of images */
    int rows, cols;     /* 28 x 28 */
    uint8_t *images;    /* n * rows * cols bytes */
    uint8_t *labels;    /* n labels in 0..9 */
} st_dataset;

extern const char *const st_class_names[ST_NUM_CLASSES];

/* Reads an IDX image file and an IDX label file (gzip-compressed or not) and validates them. */
int st_dataset_load_idx(st_dataset *ds, const char *images_path, const char *labels_path,
                        st_error *err);
/* Reads FashionMNIST's train (train != 0) or test set from dir, trying the usual file names
 * (train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz], ...). */
int st_dataset_load_fashion(st_dataset *ds, const char *dir, int train, st_error *err);
void st_dataset_free(st_dataset *ds);
/* Keeps only the first n images (n <= ds->n). */
void st_dataset_truncate(st_dataset *ds, int n);
/* Converts images idx[0..n) to floats in [0, 1] (ToTensor) and copies their labels. */
void st_dataset_batch(const st_dataset *ds, const uint32_t *idx, int n, float *x, uint8_t *y);

/* ---------------------------------------------------------------- training and evaluation */

/* Called after every batch; return non-zero to stop the epoch early (after that batch). */
typedef int (*st_progress_fn)(void *user, int batch, int num_batches, double running_cost,
                              double seconds);

typedef struct st_epoch_result {
    double cost;     /* sum of batch losses / number of batches (the notebook's avg_cost) */
    double seconds;  /* wall time of the epoch */
    int batches;     /* batches run (fewer than num_batches if stopped) */
    int num_batches; /* ceil(n / batch) */
    int stopped;     /* the progress callback asked to stop */
    double cost_sum; /* sum of the batch losses so far (for checkpoints) */
} st_epoch_result;

/* One epoch: shuffles the data with shuffle_rng (a Fisher-Yates permutation of 0..n-1), runs
 * batches of `batch` images (the last may be smaller), and updates the model. A loss that is not
 * finite is an error naming the batch. */
int st_train_epoch(st_model *m, st_optim *o, const st_dataset *ds, int batch, st_rng *shuffle_rng,
                   st_progress_fn progress, void *user, st_epoch_result *res, st_error *err);

/* The same epoch resumed after `start_batch` batches were done: shuffle_rng must be the shuffle
 * generator as it was at the start of the epoch (the same permutation is drawn again), cost_sum
 * the sum of the losses of the batches done and seconds their time. With the model, optimiser
 * and dropout generator restored too, the result is bit-identical to an uninterrupted epoch. */
int st_train_epoch_resume(st_model *m, st_optim *o, const st_dataset *ds, int batch,
                          st_rng *shuffle_rng, int start_batch, double cost_sum, double seconds,
                          st_progress_fn progress, void *user, st_epoch_result *res,
                          st_error *err);

typedef struct st_eval_result {
    int correct, total;
    int class_correct[ST_NUM_CLASSES], class_total[ST_NUM_CLASSES];
    int confusion[ST_NUM_CLASSES][ST_NUM_CLASSES]; /* [true][predicted] */
    double seconds;
} st_eval_result;

/* Evaluates m (in evaluation mode; its mode is restored after) on ds in batches of `batch`.
 * predictions, if not NULL, receives the predicted class of each of the ds->n images. */
int st_evaluate(st_model *m, const st_dataset *ds, int batch, st_eval_result *res,
                uint8_t *predictions, st_error *err);

/* ---------------------------------------------------------------- weights files */

/* Saves the state_dict as safetensors (metadata: format "pt", stride_model "cnn" / "linear" /
 * "mlp"), atomically: a temporary file in the same directory, flushed and renamed. */
int st_model_save(const st_model *m, const char *path, st_error *err);
/* Loads a file written by st_model_save or by tools/stride_torch.py; the model kind comes from
 * the metadata. Every tensor is checked against the model (names, dtypes, shapes). */
st_model *st_model_load(const char *path, int max_batch, st_error *err);
/* Loads weights from path into an existing model of the right kind. */
int st_model_load_into(st_model *m, const char *path, st_error *err);

/* ---------------------------------------------------------------- checkpoints */

#define ST_MAX_EPOCHS 1000

/* Where a training run stands, for checkpoints. */
typedef struct st_train_state {
    int epochs;       /* epochs the run is meant to have */
    int epoch;        /* epochs completed */
    int batch;        /* batches completed in the next epoch (0 at an epoch boundary) */
    double cost_sum;  /* sum of the losses of those batches */
    double seconds;   /* their time */
    st_rng shuffle;   /* the shuffle generator as it was at the start of the next epoch */
    int batch_size;
    double lr;
    uint64_t seed;
    int limit;        /* images used (0: all) */
    double costs[ST_MAX_EPOCHS], times[ST_MAX_EPOCHS]; /* per completed epoch */
} st_train_state;

/* Writes a checkpoint (safetensors: the model's state_dict, the optimiser's moments and step
 * count, the dropout and shuffle generators, and the metrics so far), atomically. */
int st_checkpoint_save(const char *path, const st_model *m, st_optim *o, const st_train_state *s,
                       st_error *err);
/* Reads a checkpoint: creates the model (for batches up to max_batch, at least s->batch_size)
 * and its optimiser (Adam or SGD, as saved) and fills s. */
int st_checkpoint_load(const char *path, int max_batch, st_model **m, st_optim **o,
                       st_train_state *s, st_error *err);

#ifdef __cplusplus
}
#endif

#endif
