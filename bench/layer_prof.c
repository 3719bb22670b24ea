/* layer_prof.c - where a CNN training step spends its time, layer by layer (not a test).
 *
 *   build/bench/layer_prof [batch] [steps] [threads] [train|eval] [cnn|mlp|linear]
 *
 * Builds one of the tutorial's models (default: the CNN), feeds it random images, and times each
 * layer's forward and backward pass over `steps` steps (after two warm-up steps). With "eval" as
 * the fourth argument it times inference (evaluation mode) only; at batch 1 with 2 or more threads
 * it then also times whole passes alone and by a team of threads (st_forward_team), alternated.
 * LAYER_PROF_NO_WINOGRAD=1 runs every conv by im2col + GEMM, LAYER_PROF_NCHW=1 keeps the
 * training tensors NCHW (no NHWC chain, see kernels.c) (to compare). Uses the library's internal
 * headers. */
#include "model.h"
#include "conv.h"
#include "gemm.h"
#include "kernels.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    int batch = argc > 1 ? atoi(argv[1]) : 64;
    int steps = argc > 2 ? atoi(argv[2]) : 50;
    int threads = argc > 3 ? atoi(argv[3]) : 2;
    int eval = argc > 4 && strcmp(argv[4], "eval") == 0;
    st_model_kind kind = ST_MODEL_CNN;
    st_set_threads(threads);
    if (getenv("LAYER_PROF_NO_WINOGRAD"))
        st_conv_set_winograd(0);
    int nchw = getenv("LAYER_PROF_NCHW") != NULL;
    st_threads_cap(batch < ST_SMALL_BATCH ? 1 : 0); /* as st_model_forward does */
    st_error err;
    if (argc > 5 && st_model_kind_parse(argv[5], &kind, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    st_model *m = st_model_create(kind, batch, 1, &err);
    if (!m) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    st_model_set_training(m, !eval);
    if (nchw)
        st_model_use_nhwc(m, 0);
    float *x = malloc(sizeof(float) * 784 * (size_t)batch);
    uint8_t *y = malloc((size_t)batch);
    st_rng r;
    st_rng_seed(&r, 5);
    for (int i = 0; i < 784 * batch; i++)
        x[i] = (float)(st_rng_next(&r) >> 40) / (float)(1 << 24);
    for (int i = 0; i < batch; i++)
        y[i] = (uint8_t)(st_rng_next(&r) % 10);
    int L = m->nlayers;
    double *tf = calloc((size_t)L, sizeof(double)), *tb = calloc((size_t)L, sizeof(double));
    double t_loss = 0, t_total = 0, t_opt = 0;
    st_optim_config cfg = st_adam_config(1e-3);
    st_optim *opt = eval ? NULL : st_optim_create(m, &cfg, &err);
    /* LAYER_PROF_DATA=DIR: real FashionMNIST training batches instead of random images */
    st_dataset ds = {0};
    const char *dir = getenv("LAYER_PROF_DATA");
    if (dir && st_dataset_load_fashion(&ds, dir, 1, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    for (int s = 0; s < steps + 2; s++) {
        int rec = s >= 2;
        if (ds.n) {
            uint32_t idx[4096];
            for (int i = 0; i < batch && i < 4096; i++)
                idx[i] = (uint32_t)((((uint64_t)s * batch + i) * 2654435761u) % (uint64_t)ds.n);
            st_dataset_batch(&ds, idx, batch, x, y);
        }
        double t0 = omp_get_wtime();
        m->input = x;
        m->batch = batch;
        m->nhwc = st_kernels_nhwc(m, batch); /* as st_model_forward does */
        const float *in = x;
        for (int i = 0; i < L; i++) {
            double a = omp_get_wtime();
            st_layer_forward(m, &m->layers[i], in, batch);
            if (rec)
                tf[i] += omp_get_wtime() - a;
            in = m->layers[i].out;
        }
        if (!eval) {
            double a = omp_get_wtime();
            float loss; /* (the gradients were zeroed by the last step, as in st_train_epoch) */
            st_model_loss(m, y, &loss, &err);
            if (rec)
                t_loss += omp_get_wtime() - a;
            int cur = 0, first = m->first_trainable; /* as st_model_backward */
            for (int i = L - 1; i >= first; i--) {
                st_layer *l = &m->layers[i];
                const float *lin = i > 0 ? m->layers[i - 1].out : m->input;
                int t = (l->kind == ST_L_RELU || l->kind == ST_L_DROPOUT ||
                         l->kind == ST_L_FLATTEN || l->kind == ST_L_BN)
                            ? cur
                            : cur ^ 1;
                float *dinp = i > first ? m->dbuf[t] : NULL;
                a = omp_get_wtime();
                st_layer_backward(m, l, lin, m->dbuf[cur], dinp, batch);
                if (rec)
                    tb[i] += omp_get_wtime() - a;
                cur = t;
            }
            a = omp_get_wtime();
            st_optim_step_zero_grad(opt);
            if (rec)
                t_opt += omp_get_wtime() - a;
        }
        if (rec)
            t_total += omp_get_wtime() - t0;
    }
    printf("%s %s, batch %d, %d threads, kernel %s: %.3f ms per step (%.0f images/s)\n",
           st_model_kind_name(kind), eval ? "inference" : "training", batch, threads,
           st_kernel_name(), 1e3 * t_total / steps, batch * steps / t_total);
    printf("%-14s %-32s %9s %9s %6s\n", "layer", "", "fwd ms", "bwd ms", "share");
    for (int i = 0; i < L; i++)
        printf("%-14s %-32s %9.3f %9.3f %5.1f%%\n", m->layers[i].name, m->layers[i].desc,
               1e3 * tf[i] / steps, 1e3 * tb[i] / steps, 100 * (tf[i] + tb[i]) / t_total);
    printf("%-14s %-32s %9.3f\n", "loss", "", 1e3 * t_loss / steps);
    if (opt)
        printf("%-14s %-32s %9.3f\n", "adam + zero", "", 1e3 * t_opt / steps);
    st_threads_cap(0);
    int team = st_team_size(m, batch);
    if (team > 1) { /* one image: the whole pass alone and by a team, alternated in rounds */
        double t_team = 0.0, t_solo = 0.0;
        for (int round = 0; round < 10; round++)
            for (int way = 0; way < 2; way++) {
                double a = omp_get_wtime();
                for (int s = 0; s < steps / 10 + 1; s++) {
                    if (way) {
                        st_forward_team(m, x, team);
                        continue;
                    }
                    st_threads_cap(1); /* as st_model_forward does */
                    const float *in = x;
                    for (int i = 0; i < L; i++) {
                        st_layer_forward(m, &m->layers[i], in, 1);
                        in = m->layers[i].out;
                    }
                    st_threads_cap(0);
                }
                *(way ? &t_team : &t_solo) += omp_get_wtime() - a;
            }
        int n = 10 * (steps / 10 + 1);
        printf("whole pass, one thread: %.1f us; a team of %d: %.1f us (%.2fx)\n",
               1e6 * t_solo / n, team, 1e6 * t_team / n, t_solo / t_team);
    }
    st_optim_free(opt);
    st_model_free(m);
    st_dataset_free(&ds);
    free(x);
    free(y);
    free(tf);
    free(tb);
    return 0;
}
