/* checkpoint.c - training checkpoints: everything needed to resume a run bit-identically.
 *
 * A checkpoint is a safetensors file holding
 *   - the model's state_dict under its PyTorch names (so it is also a readable model file),
 *   - "optimizer.exp_avg" and "optimizer.exp_avg_sq" (Adam) or "optimizer.momentum_buffer" (SGD),
 *     flat over all parameters in state_dict order,
 *   - "rng.dropout" and "rng.shuffle" (U64[4], xoshiro256** states),
 *   - "metrics.cost" and "metrics.time" (F64, one per completed epoch),
 * and metadata: format "stride-checkpoint", the model, the optimiser and its settings, the step
 * count, the epoch and batch reached, and the run's settings. Written atomically, so a crash at
 * any moment leaves the previous checkpoint readable.
 */
#include "model_io.h"
#include "safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CKPT_FILE_MAX ((size_t)1 << 31)

int st_checkpoint_save(const char *path, const st_model *m, st_optim *o, const st_train_state *s,
                       st_error *err)
{
    if (s->epoch < 0 || s->epoch > ST_MAX_EPOCHS)
        return st_seterr(err, "%s: epoch %d is out of range 0..%d", path, s->epoch,
                         ST_MAX_EPOCHS);
    int nt = st_model_num_tensors(m);
    st_sf_tensor_w *w = calloc((size_t)nt + 8, sizeof *w);
    if (!w)
        return st_seterr(err, "%s: out of memory", path);
    for (int i = 0; i < nt; i++) {
        const st_tensor *t = st_model_tensor(m, i);
        w[i] = (st_sf_tensor_w){t->name, st_sf_dtype_from_st(t->dtype), t->ndim, t->shape,
                                t->data};
    }
    int n = nt;
    const st_optim_config *cfg = st_optim_get_config(o);
    float *m1, *m2;
    st_optim_state(o, &m1, &m2);
    int64_t np = (int64_t)st_model_num_params(m), four = 4, ne = s->epoch;
    if (cfg->kind == ST_OPTIM_ADAM) {
        w[n++] = (st_sf_tensor_w){"optimizer.exp_avg", ST_SF_F32, 1, &np, m1};
        w[n++] = (st_sf_tensor_w){"optimizer.exp_avg_sq", ST_SF_F32, 1, &np, m2};
    } else {
        w[n++] = (st_sf_tensor_w){"optimizer.momentum_buffer", ST_SF_F32, 1, &np, m1};
    }
    st_rng dropout = *st_model_rng((st_model *)m);
    w[n++] = (st_sf_tensor_w){"rng.dropout", ST_SF_U64, 1, &four, dropout.s};
    w[n++] = (st_sf_tensor_w){"rng.shuffle", ST_SF_U64, 1, &four, s->shuffle.s};
    w[n++] = (st_sf_tensor_w){"metrics.cost", ST_SF_F64, 1, &ne, s->costs};
    w[n++] = (st_sf_tensor_w){"metrics.time", ST_SF_F64, 1, &ne, s->times};

    char v[16][64];
    snprintf(v[0], sizeof v[0], "%d", s->epochs);
    snprintf(v[1], sizeof v[1], "%d", s->epoch);
    snprintf(v[2], sizeof v[2], "%d", s->batch);
    snprintf(v[3], sizeof v[3], "%a", s->cost_sum); /* hex float: exact */
    snprintf(v[4], sizeof v[4], "%a", s->seconds);
    snprintf(v[5], sizeof v[5], "%d", s->batch_size);
    snprintf(v[6], sizeof v[6], "%a", cfg->lr);
    snprintf(v[7], sizeof v[7], "%" PRIu64, s->seed);
    snprintf(v[8], sizeof v[8], "%d", s->limit);
    snprintf(v[9], sizeof v[9], "%" PRId64, st_optim_steps(o));
    snprintf(v[10], sizeof v[10], "%a", cfg->beta1);
    snprintf(v[11], sizeof v[11], "%a", cfg->beta2);
    snprintf(v[12], sizeof v[12], "%a", cfg->eps);
    snprintf(v[13], sizeof v[13], "%a", cfg->momentum);
    const char *meta[] = {
        "format",     "stride-checkpoint",
        "stride_model", st_model_kind_name(st_model_get_kind(m)),
        "stride_version", STRIDE_VERSION,
        "optimizer",  cfg->kind == ST_OPTIM_ADAM ? "adam" : "sgd",
        "epochs",     v[0],
        "epoch",      v[1],
        "batch",      v[2],
        "cost_sum",   v[3],
        "seconds",    v[4],
        "batch_size", v[5],
        "lr",         v[6],
        "seed",       v[7],
        "limit",      v[8],
        "steps",      v[9],
        "beta1",      v[10],
        "beta2",      v[11],
        "eps",        v[12],
        "momentum",   v[13],
    };
    int rc = st_safetensors_write(path, w, n, meta, (int)(sizeof meta / sizeof *meta / 2), err);
    free(w);
    return rc;
}

/* Metadata helpers: each names the file and the key on error. */
static int meta_str(const st_safetensors *sf, const char *path, const char *key, const char **out,
                    st_error *err)
{
    *out = st_safetensors_meta(sf, key);
    if (!*out)
        return st_seterr(err, "%s: not a Stride checkpoint: metadata '%s' is missing", path, key);
    return 0;
}

static int meta_double(const st_safetensors *sf, const char *path, const char *key, double *out,
                       st_error *err)
{
    const char *s;
    if (meta_str(sf, path, key, &s, err))
        return -1;
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(*out))
        return st_seterr(err, "%s: checkpoint metadata '%s' is '%s', expected a number", path,
                         key, s);
    return 0;
}

static int meta_int(const st_safetensors *sf, const char *path, const char *key, long long lo,
                    long long hi, long long *out, st_error *err)
{
    const char *s;
    if (meta_str(sf, path, key, &s, err))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return st_seterr(err, "%s: checkpoint metadata '%s' is '%s', expected an integer in "
                              "%lld..%lld",
                         path, key, s, lo, hi);
    *out = v;
    return 0;
}

static int copy_tensor(const st_safetensors *sf, const char *path, const char *name,
                       st_sf_dtype dtype, size_t numel, void *dst, st_error *err)
{
    const st_sf_tensor *t = st_safetensors_find(sf, name);
    if (!t)
        return st_seterr(err, "%s: checkpoint tensor '%s' is missing", path, name);
    if (t->dtype != dtype || t->ndim != 1 || t->numel != numel)
        return st_seterr(err, "%s: checkpoint tensor '%s' is %s with %zu values, expected %s with "
                              "%zu",
                         path, name, st_sf_dtype_name(t->dtype), t->numel,
                         st_sf_dtype_name(dtype), numel);
    if (t->nbytes)
        memcpy(dst, t->data, t->nbytes);
    return 0;
}

int st_checkpoint_load(const char *path, int max_batch, st_model **mp, st_optim **op,
                       st_train_state *s, st_error *err)
{
    *mp = NULL;
    *op = NULL;
    memset(s, 0, sizeof *s);
    st_safetensors sf;
    if (st_safetensors_read(path, CKPT_FILE_MAX, &sf, err) != 0)
        return -1;
    st_model *m = NULL;
    st_optim *o = NULL;
    int rc = -1;
    const char *format, *model, *optim;
    long long epochs, epoch, batch, batch_size, limit, steps;
    double lr, cost_sum, seconds, b1, b2, eps, mom;
    if (meta_str(&sf, path, "format", &format, err))
        goto done;
    if (strcmp(format, "stride-checkpoint") != 0) {
        st_seterr(err, "%s: not a Stride checkpoint (its format is '%s'; a checkpoint is the "
                       ".ckpt file written beside the weights)",
                  path, format);
        goto done;
    }
    if (meta_str(&sf, path, "stride_model", &model, err) ||
        meta_str(&sf, path, "optimizer", &optim, err) ||
        meta_int(&sf, path, "epochs", 1, ST_MAX_EPOCHS, &epochs, err) ||
        meta_int(&sf, path, "epoch", 0, ST_MAX_EPOCHS, &epoch, err) ||
        meta_int(&sf, path, "batch", 0, 100000000, &batch, err) ||
        meta_int(&sf, path, "batch_size", 1, 65536, &batch_size, err) ||
        meta_int(&sf, path, "limit", 0, 100000000, &limit, err) ||
        meta_int(&sf, path, "steps", 0, (long long)1 << 50, &steps, err) ||
        meta_double(&sf, path, "lr", &lr, err) || meta_double(&sf, path, "cost_sum", &cost_sum, err) ||
        meta_double(&sf, path, "seconds", &seconds, err) ||
        meta_double(&sf, path, "beta1", &b1, err) || meta_double(&sf, path, "beta2", &b2, err) ||
        meta_double(&sf, path, "eps", &eps, err) || meta_double(&sf, path, "momentum", &mom, err))
        goto done;
    const char *seed_s;
    if (meta_str(&sf, path, "seed", &seed_s, err))
        goto done;
    char *end;
    errno = 0;
    unsigned long long seed = strtoull(seed_s, &end, 10);
    if (errno || end == seed_s || *end) {
        st_seterr(err, "%s: checkpoint metadata 'seed' is '%s', expected an integer", path, seed_s);
        goto done;
    }
    st_model_kind kind;
    if (st_model_kind_parse(model, &kind, err) != 0) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        st_seterr(err, "%s: %s", path, msg);
        goto done;
    }
    if (max_batch < batch_size)
        max_batch = (int)batch_size;
    m = st_model_create(kind, max_batch, 0, err);
    if (!m || st_model_read_tensors(m, &sf, path, 0, err) != 0)
        goto done;
    st_optim_config cfg;
    if (strcmp(optim, "adam") == 0) {
        cfg = st_adam_config(lr);
        cfg.beta1 = b1, cfg.beta2 = b2, cfg.eps = eps;
    } else if (strcmp(optim, "sgd") == 0) {
        cfg = st_sgd_config(lr, mom);
    } else {
        st_seterr(err, "%s: checkpoint optimizer is '%s', expected adam or sgd", path, optim);
        goto done;
    }
    o = st_optim_create(m, &cfg, err);
    if (!o)
        goto done;
    float *m1, *m2;
    st_optim_state(o, &m1, &m2);
    size_t np = st_model_num_params(m);
    if (cfg.kind == ST_OPTIM_ADAM) {
        if (copy_tensor(&sf, path, "optimizer.exp_avg", ST_SF_F32, np, m1, err) ||
            copy_tensor(&sf, path, "optimizer.exp_avg_sq", ST_SF_F32, np, m2, err))
            goto done;
    } else if (copy_tensor(&sf, path, "optimizer.momentum_buffer", ST_SF_F32, np, m1, err)) {
        goto done;
    }
    st_optim_set_steps(o, steps);
    if (copy_tensor(&sf, path, "rng.dropout", ST_SF_U64, 4, st_model_rng(m)->s, err) ||
        copy_tensor(&sf, path, "rng.shuffle", ST_SF_U64, 4, s->shuffle.s, err) ||
        copy_tensor(&sf, path, "metrics.cost", ST_SF_F64, (size_t)epoch, s->costs, err) ||
        copy_tensor(&sf, path, "metrics.time", ST_SF_F64, (size_t)epoch, s->times, err))
        goto done;
    if (epoch > epochs) {
        st_seterr(err, "%s: checkpoint says epoch %lld of %lld", path, epoch, epochs);
        goto done;
    }
    s->epochs = (int)epochs;
    s->epoch = (int)epoch;
    s->batch = (int)batch;
    s->cost_sum = cost_sum;
    s->seconds = seconds;
    s->batch_size = (int)batch_size;
    s->lr = lr;
    s->seed = seed;
    s->limit = (int)limit;
    rc = 0;
done:
    st_safetensors_free(&sf);
    if (rc != 0) {
        st_optim_free(o);
        st_model_free(m);
        return -1;
    }
    *mp = m;
    *op = o;
    return 0;
}
