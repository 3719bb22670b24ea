/* optim.c - Adam and SGD over all of a model's parameters (PyTorch semantics). */
#include "layers.h"
#include "model.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct st_optim {
    st_optim_config cfg;
    st_model *model;
    int64_t steps;
    float *m1, *m2; /* Adam: first and second moments; SGD: momentum buffer in m1 */
};

st_optim_config st_adam_config(double lr)
{
    st_optim_config c = {ST_OPTIM_ADAM, lr, 0.9, 0.999, 1e-8, 0.0};
    return c;
}

st_optim_config st_sgd_config(double lr, double momentum)
{
    st_optim_config c = {ST_OPTIM_SGD, lr, 0.0, 0.0, 0.0, momentum};
    return c;
}

st_optim *st_optim_create(st_model *m, const st_optim_config *cfg, st_error *err)
{
    if (cfg->kind != ST_OPTIM_ADAM && cfg->kind != ST_OPTIM_SGD) {
        st_seterr(err, "unknown optimiser kind %d: expected Adam or SGD", (int)cfg->kind);
        return NULL;
    }
    if (!(cfg->lr > 0.0) || !isfinite(cfg->lr)) {
        st_seterr(err, "learning rate %g is out of range: expected a positive number", cfg->lr);
        return NULL;
    }
    if (cfg->kind == ST_OPTIM_ADAM &&
        !(cfg->beta1 >= 0.0 && cfg->beta1 < 1.0 && cfg->beta2 >= 0.0 && cfg->beta2 < 1.0 &&
          cfg->eps >= 0.0)) {
        st_seterr(err, "Adam betas (%g, %g) must be in [0, 1) and eps %g >= 0", cfg->beta1,
                  cfg->beta2, cfg->eps);
        return NULL;
    }
    if (cfg->kind == ST_OPTIM_SGD && !(cfg->momentum >= 0.0)) {
        st_seterr(err, "SGD momentum %g must be >= 0", cfg->momentum);
        return NULL;
    }
    st_optim *o = calloc(1, sizeof *o);
    size_t n = m->num_params;
    if (o) {
        o->m1 = st_buffer_alloc(n, sizeof(float));
        o->m2 = cfg->kind == ST_OPTIM_ADAM ? st_buffer_alloc(n, sizeof(float)) : NULL;
    }
    if (!o || !o->m1 || (cfg->kind == ST_OPTIM_ADAM && !o->m2)) {
        st_optim_free(o);
        st_seterr(err, "out of memory creating the optimiser for %zu parameters", n);
        return NULL;
    }
    o->cfg = *cfg;
    o->model = m;
    return o;
}

void st_optim_free(st_optim *o)
{
    if (!o)
        return;
    st_buffer_free(o->m1);
    st_buffer_free(o->m2);
    free(o);
}

#define STEP_CHUNK 16384

/* Chunk c (STEP_CHUNK parameters) of an update. */
static void step_chunk(st_optim *o, int zero_grad, long c)
{
    st_model *m = o->model;
    size_t n = m->num_params, lo = (size_t)c * STEP_CHUNK;
    size_t len = lo + STEP_CHUNK <= n ? STEP_CHUNK : n - lo;
    if (o->cfg.kind == ST_OPTIM_ADAM)
        adam_update_ref(m->params + lo, m->grads + lo, o->m1 + lo, o->m2 + lo, len, o->cfg.lr,
                        o->cfg.beta1, o->cfg.beta2, o->cfg.eps, o->steps);
    else
        sgd_update_ref(m->params + lo, m->grads + lo, o->m1 + lo, len, o->cfg.lr,
                       o->cfg.momentum, o->steps);
    if (zero_grad)
        memset(m->grads + lo, 0, len * sizeof(float));
}

static void step(st_optim *o, int zero_grad)
{
    o->steps++;
    /* Element-wise, so splitting the range among threads leaves every value bit-identical. */
    long nchunks = (long)((o->model->num_params + STEP_CHUNK - 1) / STEP_CHUNK);
    ST_PARALLEL_FOR(nchunks > 4 ? st_get_threads() : 1, 1, c, nchunks,
                    step_chunk(o, zero_grad, c));
}

void st_optim_step(st_optim *o)
{
    step(o, 0);
}

void st_optim_step_zero_grad(st_optim *o)
{
    step(o, 1);
}

const st_optim_config *st_optim_get_config(const st_optim *o) { return &o->cfg; }
int64_t st_optim_steps(const st_optim *o) { return o->steps; }
void st_optim_set_steps(st_optim *o, int64_t steps) { o->steps = steps; }

void st_optim_state(st_optim *o, float **m1, float **m2)
{
    *m1 = o->m1;
    *m2 = o->m2;
}
