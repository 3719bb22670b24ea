/* train.c - the tutorial's training epoch and evaluation loop. */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The input staging area for one batch lives beside the model's activations (allocated once per
 * call of st_train_epoch / st_evaluate, not per batch). */
typedef struct batch_buf {
    float *x;
    uint8_t *y;
    uint32_t *idx;
} batch_buf;

static int batch_buf_init(batch_buf *b, int batch, int n, st_error *err)
{
    b->x = malloc((size_t)batch * 784 * sizeof(float));
    b->y = malloc((size_t)batch);
    b->idx = malloc((size_t)n * sizeof(uint32_t));
    if (!b->x || !b->y || !b->idx) {
        free(b->x), free(b->y), free(b->idx);
        return st_seterr(err, "out of memory for batches of %d images", batch);
    }
    return 0;
}

static void batch_buf_free(batch_buf *b)
{
    free(b->x), free(b->y), free(b->idx);
}

int st_train_epoch(st_model *m, st_optim *o, const st_dataset *ds, int batch, st_rng *shuffle_rng,
                   st_progress_fn progress, void *user, st_epoch_result *res, st_error *err)
{
    return st_train_epoch_resume(m, o, ds, batch, shuffle_rng, 0, 0.0, 0.0, progress, user, res,
                                 err);
}

int st_train_epoch_resume(st_model *m, st_optim *o, const st_dataset *ds, int batch,
                          st_rng *shuffle_rng, int start_batch, double cost_sum, double seconds,
                          st_progress_fn progress, void *user, st_epoch_result *res,
                          st_error *err)
{
    memset(res, 0, sizeof *res);
    if (batch < 1 || batch > m->max_batch)
        return st_seterr(err, "batch size %d is out of range: expected 1 to %d", batch,
                         m->max_batch);
    if (ds->n < 1 || ds->rows != 28 || ds->cols != 28)
        return st_seterr(err, "dataset of %d images of %dx%d: expected at least one 28x28 image",
                         ds->n, ds->rows, ds->cols);
    batch_buf b;
    if (batch_buf_init(&b, batch, ds->n, err) != 0)
        return -1;
    /* Fisher-Yates shuffle of 0..n-1 */
    for (int i = 0; i < ds->n; i++)
        b.idx[i] = (uint32_t)i;
    for (int i = ds->n - 1; i > 0; i--) {
        uint32_t j = st_rng_below(shuffle_rng, (uint32_t)i + 1);
        uint32_t t = b.idx[i];
        b.idx[i] = b.idx[j];
        b.idx[j] = t;
    }
    st_model_set_training(m, 1);
    int nb = (ds->n + batch - 1) / batch;
    res->num_batches = nb;
    if (start_batch < 0 || start_batch > nb) {
        batch_buf_free(&b);
        return st_seterr(err, "cannot resume at batch %d: the epoch has %d batches", start_batch,
                         nb);
    }
    double t0 = now_seconds() - seconds, sum = cost_sum;
    res->batches = start_batch;
    int rc = 0;
    st_model_zero_grad(m); /* then zeroed by each step as it uses them */
    /* the batch straight where the first layer would copy it, if it would (a Flatten) */
    float *x = st_model_input_slot(m);
    if (!x)
        x = b.x;
    for (int bi = start_batch; bi < nb; bi++) {
        int lo = bi * batch, n = ds->n - lo < batch ? ds->n - lo : batch;
        st_dataset_batch(ds, b.idx + lo, n, x, b.y);
        float loss;
        if (st_model_forward(m, x, n, NULL, err) != 0 || st_model_loss(m, b.y, &loss, err) != 0) {
            rc = -1;
            break;
        }
        if (!isfinite(loss)) {
            rc = st_seterr(err, "the loss became %s at batch %d of %d (learning rate too high?)",
                           isnan(loss) ? "NaN" : "infinite", bi + 1, nb);
            break;
        }
        if (st_model_backward(m, err) != 0) {
            rc = -1;
            break;
        }
        st_optim_step_zero_grad(o);
        sum += loss;
        res->batches = bi + 1;
        if (progress && progress(user, bi + 1, nb, sum / (bi + 1), now_seconds() - t0)) {
            res->stopped = 1;
            break;
        }
    }
    /* The notebook adds cost.item() / total_batch for every batch. */
    res->cost_sum = sum;
    res->cost = sum / nb;
    res->seconds = now_seconds() - t0;
    batch_buf_free(&b);
    return rc;
}

int st_evaluate(st_model *m, const st_dataset *ds, int batch, st_eval_result *res,
                uint8_t *predictions, st_error *err)
{
    memset(res, 0, sizeof *res);
    if (batch < 1 || batch > m->max_batch)
        batch = m->max_batch;
    batch_buf b;
    if (batch_buf_init(&b, batch, ds->n, err) != 0)
        return -1;
    for (int i = 0; i < ds->n; i++)
        b.idx[i] = (uint32_t)i;
    int was_training = m->training;
    st_model_set_training(m, 0);
    double t0 = now_seconds();
    int rc = 0;
    for (int lo = 0; lo < ds->n; lo += batch) {
        int n = ds->n - lo < batch ? ds->n - lo : batch;
        st_dataset_batch(ds, b.idx + lo, n, b.x, b.y);
        const float *logits;
        if (st_model_forward(m, b.x, n, &logits, err) != 0) {
            rc = -1;
            break;
        }
        for (int i = 0; i < n; i++) {
            const float *z = logits + (size_t)i * ST_NUM_CLASSES;
            int best = 0; /* torch.max returns the first maximum */
            for (int c = 1; c < ST_NUM_CLASSES; c++)
                if (z[c] > z[best])
                    best = c;
            int y = b.y[i];
            if (predictions)
                predictions[lo + i] = (uint8_t)best;
            res->total++;
            res->class_total[y]++;
            res->confusion[y][best]++;
            if (best == y) {
                res->correct++;
                res->class_correct[y]++;
            }
        }
    }
    res->seconds = now_seconds() - t0;
    st_model_set_training(m, was_training);
    batch_buf_free(&b);
    return rc;
}
