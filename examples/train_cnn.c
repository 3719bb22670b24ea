/* train_cnn.c - the tutorial's CNN with the Stride library directly: build it, train one epoch,
 * evaluate it, save it.
 *
 *   train_cnn [DATA_DIR [LIMIT [OUT.safetensors]]]
 *
 * Build: cc train_cnn.c $(pkg-config --cflags --libs stride) (or `make`, which builds it as
 * build/examples/train_cnn). */
#include <stdio.h>
#include <stdlib.h>

#include "stride.h"

static int report(void *user, int batch, int num_batches, double running_cost, double seconds)
{
    (void)user;
    if (batch % 100 == 0 || batch == num_batches)
        fprintf(stderr, "  batch %d/%d  cost %.4f  %.1fs\n", batch, num_batches, running_cost,
                seconds);
    return 0; /* non-zero would stop the epoch */
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
    int limit = argc > 2 ? atoi(argv[2]) : 0;
    const char *out = argc > 3 ? argv[3] : "cnn.safetensors";
    st_error err;
    st_dataset train, test;
    if (st_dataset_load_fashion(&train, dir, 1, &err) != 0 ||
        st_dataset_load_fashion(&test, dir, 0, &err) != 0) {
        fprintf(stderr, "train_cnn: %s\n", err.msg);
        return 1;
    }
    if (limit > 0) {
        if (limit < train.n)
            st_dataset_truncate(&train, limit);
        if (limit < test.n)
            st_dataset_truncate(&test, limit);
    }

    st_model *cnn = st_model_create(ST_MODEL_CNN, 64, 777, &err);
    if (!cnn) {
        fprintf(stderr, "train_cnn: %s\n", err.msg);
        return 1;
    }
    printf("CNN with %zu parameters, %s kernels, %d threads\n", st_model_num_params(cnn),
           st_kernel_name(), st_get_threads());

    st_optim_config cfg = st_adam_config(0.001);
    st_optim *adam = st_optim_create(cnn, &cfg, &err);
    st_rng shuffle;
    st_rng_seed(&shuffle, 1);
    st_epoch_result epoch;
    if (!adam || st_train_epoch(cnn, adam, &train, 64, &shuffle, report, NULL, &epoch, &err) != 0) {
        fprintf(stderr, "train_cnn: %s\n", err.msg);
        return 1;
    }
    printf("epoch 1: cost %.6f in %.2fs\n", epoch.cost, epoch.seconds);

    st_eval_result ev;
    if (st_evaluate(cnn, &test, 64, &ev, NULL, &err) != 0) {
        fprintf(stderr, "train_cnn: %s\n", err.msg);
        return 1;
    }
    printf("test accuracy: %.2f%% (%d / %d)\n", 100.0 * ev.correct / ev.total, ev.correct,
           ev.total);
    if (st_model_save(cnn, out, &err) != 0) {
        fprintf(stderr, "train_cnn: %s\n", err.msg);
        return 1;
    }
    printf("saved %s\n", out);

    st_optim_free(adam);
    st_model_free(cnn);
    st_dataset_free(&train);
    st_dataset_free(&test);
    return 0;
}
