/* main.c - `stride`: the tutorial from one command, and its pieces as subcommands. */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

volatile int g_stop_signal = 0;

static void on_signal(int sig)
{
    g_stop_signal = sig;
}

void install_stop_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static const char *usage_text =
    "usage: stride <command> [options]\n"
    "\n"
    "Stride trains and runs the FashionMNIST CNN tutorial's models in C.\n"
    "\n"
    "commands:\n"
    "  run          the whole tutorial: data, shapes, CNN training, feature maps, FC nets,\n"
    "               evaluation, comparison; writes models, metrics and figures to --out\n"
    "  train        train one model (--model cnn|linear|mlp) and save it\n"
    "  eval         evaluate saved weights on the test set\n"
    "  predict      classify your own images with saved weights\n"
    "  shapes       trace the shape of a 1x1x28x28 input through every layer\n"
    "  summary      parameters per block and in total\n"
    "  featuremaps  draw the feature maps of a test image\n"
    "  plot         redraw the comparison chart from metrics.json\n"
    "\n"
    "Run 'stride <command> --help' for a command's options. Version " STRIDE_VERSION ".\n";

static const char *common_help =
    "  --data DIR     FashionMNIST directory (default: $STRIDE_DATA, ./data/FashionMNIST/raw,\n"
    "                 /usr/share/datasets/fashion-mnist)\n"
    "  --epochs N     training epochs (15)\n"
    "  --batch N      batch size (64)\n"
    "  --lr X         Adam learning rate (0.001)\n"
    "  --seed N       random seed for initialisation, shuffling and dropout (777)\n"
    "  --threads N    threads (default: $OMP_NUM_THREADS, else all cores; results do\n"
    "                 not depend on it)\n"
    "  --limit N      use only the first N training and test images\n"
    "  --quiet        no progress bar\n";

static int help(const char *text, const char *extra)
{
    fputs(text, stdout);
    if (extra)
        fputs(extra, stdout);
    return 0;
}

/* Makes dir (one level) if needed and checks that files can be created in it. */
static int prepare_out_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (mkdir(dir, 0777) != 0)
            return fail(1, "cannot create output directory '%s': %s", dir, strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
        return fail(1, "output path '%s' exists and is not a directory", dir);
    }
    if (access(dir, W_OK | X_OK) != 0)
        return fail(1, "output directory '%s' is not writable: %s", dir, strerror(errno));
    return 0;
}

static void join(char *buf, size_t size, const char *dir, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
}

static double mean(const double *v, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += v[i];
    return n ? s / n : 0.0;
}

static double accuracy(const st_eval_result *r)
{
    return r->total ? 100.0 * r->correct / r->total : 0.0;
}

/* ------------------------------------------------------------------------------ run */

int cmd_run(int argc, char **argv)
{
    options o;
    int rc = parse_options("run", argc, argv, OPT_COMMON | OPT_OUT | OPT_FORMAT, &o);
    if (rc)
        return rc;
    if (o.help)
        return help("usage: stride run [options]\n\n"
                    "Runs the whole tutorial in the notebook's order and writes the trained\n"
                    "models (cnn/linear/mlp.safetensors), metrics.json and the figures into\n"
                    "--out.\n\noptions:\n"
                    "  --out DIR      output directory (./stride-out)\n"
                    "  --format F     figure format: png, svg or pdf (png)\n",
                    common_help);
    const char *out = o.out ? o.out : "./stride-out";
    if (prepare_out_dir(out))
        return 1;
    install_stop_handlers();
    printf("Stride %s: the FashionMNIST CNN tutorial (%d epochs per model, output in %s)\n\n",
           STRIDE_VERSION, o.epochs, out);
    fflush(stdout);
    st_dataset train, test;
    if (load_data(&o, &train, &test))
        return 1;
    char num[3][32];

    /* 1. data */
    int nt = st_get_threads();
    printf("Device: cpu (%s kernels, %d thread%s)\n", st_kernel_name(), nt, nt == 1 ? "" : "s");
    printf("Training data: %s images\n", fmt_int(train.n, num[0], sizeof num[0]));
    printf("Test data: %s images\n", fmt_int(test.n, num[1], sizeof num[1]));
    printf("Batch size: %d\n", o.batch);
    printf("Seed: %llu\n", (unsigned long long)o.seed);

    /* 2. shapes */
    printf("\n== Shape trace ==\n");
    print_shapes(ST_MODEL_CNN);

    /* 3. model */
    printf("\n== CNN model ==\n");
    static train_record recs[3];
    const st_model_kind kinds[3] = {ST_MODEL_LINEAR, ST_MODEL_MLP, ST_MODEL_CNN};
    const char *labels[3] = {"FC 1-Layer", "FC Multi-Layer", "CNN (3-Block)"};
    st_model *models[3] = {NULL, NULL, NULL};
    st_optim *opts[3] = {NULL, NULL, NULL};
    static st_train_state states[3];
    st_optim_config cfg = st_adam_config(o.lr);
    st_error err;
    /* One model at a time is alive (created, trained, evaluated, saved, freed), which keeps the
     * peak memory to the data and one model. */
    char saved[3][4096];
#define CREATE(i)                                                                                 \
    do {                                                                                          \
        models[i] = st_model_create(kinds[i], o.batch, o.seed + (uint64_t)(i), &err);             \
        opts[i] = models[i] ? st_optim_create(models[i], &cfg, &err) : NULL;                     \
        if (!opts[i]) {                                                                           \
            rc = fail(1, "%s", err.msg);                                                          \
            goto done;                                                                            \
        }                                                                                         \
        init_train_state(&states[i], &o);                                                         \
        recs[i].kind = kinds[i];                                                                  \
        recs[i].label = labels[i];                                                                \
        recs[i].params = st_model_num_params(models[i]);                                          \
    } while (0)
#define FINISH(i)                                                                                 \
    do {                                                                                          \
        if (st_evaluate(models[i], &test, o.batch, &recs[i].eval, NULL, &err) != 0) {             \
            rc = fail(1, "%s", err.msg);                                                          \
            goto done;                                                                            \
        }                                                                                         \
        recs[i].evaluated = 1;                                                                    \
        char name_[64];                                                                           \
        snprintf(name_, sizeof name_, "%s.safetensors", st_model_kind_name(kinds[i]));            \
        join(saved[i], sizeof saved[i], out, name_);                                              \
        if (st_model_save(models[i], saved[i], &err) != 0) {                                      \
            rc = fail(1, "%s", err.msg);                                                          \
            goto done;                                                                            \
        }                                                                                         \
        st_optim_free(opts[i]);                                                                   \
        st_model_free(models[i]);                                                                 \
        opts[i] = NULL;                                                                           \
        models[i] = NULL;                                                                         \
    } while (0)
    CREATE(2);
    st_model *cnn = models[2];
    print_structure(cnn);
    print_block_params(cnn);
    printf("\nBatch image shape: [%d, 1, 28, 28]\n", o.batch);
    printf("Batch label shape: [%d]\n", o.batch);
    printf("\n-> the CNN takes (N, C, H, W) as it is (no flattening)\n");
    printf("  FC NN: [%d, 1, 28, 28] -> view(-1, 784) -> [%d, 784]\n", o.batch, o.batch);
    printf("  CNN:   [%d, 1, 28, 28] -> as it is\n", o.batch);

    /* 4. CNN training */
    printf("\n== CNN training (Adam, lr %g, %d epochs) ==\n", o.lr, o.epochs);
    if ((rc = train_model(cnn, opts[2], &train, &recs[2], &states[2], "", NULL, o.quiet)) != 0)
        goto done;
    print_epoch_summary(&recs[2]);

    /* 5. feature maps (drawn once the CNN is freed) */
    printf("\n== Feature maps ==\n");
    {
        static featuremaps fm;
        char path[4096];
        snprintf(path, sizeof path, "%s/featuremaps.%s", out, o.format ? o.format : "png");
        if ((rc = featuremaps_compute(cnn, &test, 0, &fm)) != 0)
            goto done;
        FINISH(2);
        if ((rc = featuremaps_draw(&fm, path, o.format, 1)) != 0)
            goto done;
    }

    /* 6. the fully-connected nets */
    printf("\n== FC nets (same settings) ==\n");
    for (int i = 0; i < 2; i++) {
        printf("%s training...\n", labels[i]);
        CREATE(i);
        if ((rc = train_model(models[i], opts[i], &train, &recs[i], &states[i], "  ", NULL,
                              o.quiet)) != 0)
            goto done;
        printf("  done - final cost: %.6f\n", recs[i].costs[recs[i].epochs - 1]);
        FINISH(i);
    }
    printf("\nFC 1-Layer / FC Multi-Layer / CNN training done.\n");

    /* 7. evaluation */
    printf("\n== Test evaluation ==\n");
    print_eval("CNN", &recs[2].eval, 0);

    /* 8. comparison */
    printf("\n== Comparison ==\n");
    {
        char path[4096];
        snprintf(path, sizeof path, "%s/comparison.%s", out, o.format ? o.format : "png");
        if ((rc = draw_comparison(recs, path, o.format)) != 0)
            goto done;
    }
    printf("\n%-18s %12s %12s %12s %14s\n", "Model", "Parameters", "Mean time(s)", "Final cost",
           "Test accuracy");
    printf("========================================================================\n");
    for (int i = 0; i < 3; i++)
        printf("%-18s %12s %12.2f %12.6f %13.1f%%\n", labels[i],
               fmt_int((long long)recs[i].params, num[0], sizeof num[0]),
               mean(recs[i].times, recs[i].epochs), recs[i].costs[recs[i].epochs - 1],
               accuracy(&recs[i].eval));
    double acc_cnn = accuracy(&recs[2].eval), acc_mlp = accuracy(&recs[1].eval);
    printf("\nCNN vs FC Multi-Layer:\n");
    printf("  Parameters: %s vs %s (%.1f%%)\n",
           fmt_int((long long)recs[2].params, num[0], sizeof num[0]),
           fmt_int((long long)recs[1].params, num[1], sizeof num[1]),
           100.0 * (double)recs[2].params / (double)recs[1].params);
    printf("  Accuracy:   %.1f%% vs %.1f%% (difference: %+.1f%%p)\n", acc_cnn, acc_mlp,
           acc_cnn - acc_mlp);

    /* 9. files */
    printf("\n== Files ==\n");
    for (int i = 0; i < 3; i++)
        printf("saved %s\n", saved[i]);
    {
        char path[4096];
        join(path, sizeof path, out, "metrics.json");
        if ((rc = write_metrics_json(path, recs, 3, &o)) != 0)
            goto done;
        printf("saved %s\n", path);
    }
done:
    for (int i = 0; i < 3; i++) {
        st_optim_free(opts[i]);
        st_model_free(models[i]);
    }
    st_dataset_free(&train);
    st_dataset_free(&test);
    return rc;
}

/* ------------------------------------------------------------------------------ train / eval */

/* Fails early (before hours of training) when path's directory cannot take a new file. */
static int check_writable(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    struct stat st;
    if (stat(dir, &st) != 0)
        return fail(1, "cannot write %s: directory %s: %s", path, dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return fail(1, "cannot write %s: %s is not a directory", path, dir);
    if (access(dir, W_OK | X_OK) != 0)
        return fail(1, "cannot write %s: directory %s is not writable", path, dir);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return fail(1, "cannot write %s: it is a directory", path);
    return 0;
}

/* W.safetensors -> W.ckpt; W.ckpt -> W.safetensors; other names get the suffix added. */
static void swap_suffix(char *buf, size_t size, const char *path, const char *from, const char *to)
{
    size_t n = strlen(path), f = strlen(from);
    if (n > f && strcmp(path + n - f, from) == 0)
        snprintf(buf, size, "%.*s%s", (int)(n - f), path, to);
    else
        snprintf(buf, size, "%s%s", path, to);
}

int cmd_train(int argc, char **argv)
{
    options o;
    int rc = parse_options("train", argc, argv,
                           OPT_COMMON | OPT_MODEL | OPT_SAVE | OPT_METRICS | OPT_RESUME, &o);
    if (rc)
        return rc;
    if (o.help)
        return help("usage: stride train --model cnn|linear|mlp [options]\n"
                    "       stride train --resume FILE.ckpt [--epochs N] [options]\n\n"
                    "Trains one model with Adam and cross-entropy, evaluates it on the test set\n"
                    "and saves it. With --save W.safetensors, a checkpoint W.ckpt is rewritten\n"
                    "after every epoch and when interrupted (Ctrl-C, SIGTERM); --resume continues\n"
                    "from it, bit-identically to an uninterrupted run.\n\noptions:\n"
                    "  --model M      cnn, linear or mlp (required unless --resume)\n"
                    "  --save FILE    weights file to write (safetensors; PyTorch state_dict)\n"
                    "  --resume FILE  continue from a checkpoint (its model, batch size, learning\n"
                    "                 rate, seed and --limit are used; --epochs N sets the end)\n"
                    "  --metrics FILE per-epoch metrics as JSON\n",
                    common_help);
    int epochs_given = 0;
    for (int i = 0; i < argc; i++)
        epochs_given |= strncmp(argv[i], "--epochs", 8) == 0;
    if (!o.model && !o.resume)
        return fail(2, "train: --model is required (cnn, linear or mlp)");
    if (o.model && o.resume)
        return fail(2, "train: give either --model or --resume, not both (the checkpoint names "
                       "its model)");
    st_error err;
    st_model *m = NULL;
    st_optim *opt = NULL;
    static st_train_state state;
    char ckpt[4096] = "", save[4096] = "";
    if (o.resume) {
        if (st_checkpoint_load(o.resume, 1, &m, &opt, &state, &err) != 0)
            return fail(1, "%s", err.msg);
        if (epochs_given)
            state.epochs = o.epochs;
        if (state.epochs < state.epoch || (state.epochs == state.epoch && state.batch > 0)) {
            st_optim_free(opt);
            st_model_free(m);
            return fail(2, "train: %s has already reached epoch %d: --epochs %d is too few",
                        o.resume, state.epoch + (state.batch > 0), state.epochs);
        }
        o.batch = state.batch_size;
        o.lr = state.lr;
        o.seed = state.seed;
        o.limit = state.limit;
        o.epochs = state.epochs;
        snprintf(ckpt, sizeof ckpt, "%s", o.resume);
        if (o.save)
            snprintf(save, sizeof save, "%s", o.save);
        else
            swap_suffix(save, sizeof save, o.resume, ".ckpt", ".safetensors");
    } else if (o.save) {
        snprintf(save, sizeof save, "%s", o.save);
        swap_suffix(ckpt, sizeof ckpt, o.save, ".safetensors", ".ckpt");
    }
    if ((save[0] && check_writable(save)) || (ckpt[0] && check_writable(ckpt)) ||
        (o.metrics && check_writable(o.metrics))) {
        st_optim_free(opt);
        st_model_free(m);
        return 1;
    }
    install_stop_handlers();
    st_dataset train, test;
    if (load_data(&o, &train, &test)) {
        st_optim_free(opt);
        st_model_free(m);
        return 1;
    }
    if (!m) {
        st_model_kind kind;
        st_model_kind_parse(o.model, &kind, NULL);
        m = st_model_create(kind, o.batch, o.seed, &err);
        st_optim_config cfg = st_adam_config(o.lr);
        opt = m ? st_optim_create(m, &cfg, &err) : NULL;
        if (!opt) {
            st_model_free(m);
            st_dataset_free(&train);
            st_dataset_free(&test);
            return fail(1, "%s", err.msg);
        }
        init_train_state(&state, &o);
    }
    static train_record rec;
    const char *labels[3] = {"CNN (3-Block)", "FC 1-Layer", "FC Multi-Layer"};
    rec.kind = st_model_get_kind(m);
    rec.label = labels[rec.kind];
    rec.params = st_model_num_params(m);
    char num[2][32];
    if (o.resume)
        printf("Resuming %s from %s at epoch %d, batch %d\n", rec.label, o.resume,
               state.epoch + 1, state.batch);
    int nt = st_get_threads();
    printf("Training %s (%s parameters) on %s images, batch %d, Adam lr %g, seed %llu, %d "
           "thread%s\n",
           rec.label, fmt_int((long long)rec.params, num[0], sizeof num[0]),
           fmt_int(train.n, num[1], sizeof num[1]), o.batch, o.lr, (unsigned long long)o.seed, nt,
           nt == 1 ? "" : "s");
    rc = train_model(m, opt, &train, &rec, &state, "", ckpt[0] ? ckpt : NULL, o.quiet);
    if (rc == 0) {
        print_epoch_summary(&rec);
        if (st_evaluate(m, &test, o.batch, &rec.eval, NULL, &err) != 0)
            rc = fail(1, "%s", err.msg);
        else {
            rec.evaluated = 1;
            printf("\n");
            print_eval(rec.label, &rec.eval, 0);
        }
    }
    if (rc == 0 && save[0]) {
        if (st_model_save(m, save, &err) != 0)
            rc = fail(1, "%s", err.msg);
        else
            printf("saved %s (checkpoint: %s)\n", save, ckpt);
    }
    if (rc == 0 && o.metrics) {
        rc = write_metrics_json(o.metrics, &rec, 1, &o);
        if (rc == 0)
            printf("saved %s\n", o.metrics);
    }
    st_optim_free(opt);
    st_model_free(m);
    st_dataset_free(&train);
    st_dataset_free(&test);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    options o;
    int rc = parse_options("eval", argc, argv,
                           OPT_DATA | OPT_BATCH | OPT_THREADS | OPT_LIMIT | OPT_WEIGHTS |
                               OPT_CONFUSION | OPT_PREDICTIONS,
                           &o);
    if (rc)
        return rc;
    if (o.help)
        return help("usage: stride eval --weights FILE [options]\n\n"
                    "Evaluates saved weights on the FashionMNIST test set.\n\noptions:\n"
                    "  --weights FILE weights (safetensors written by stride or PyTorch)\n"
                    "  --confusion    print the confusion matrix\n"
                    "  --predictions FILE  write each image's index, label and predicted class\n"
                    "                 as CSV\n"
                    "  --data DIR     FashionMNIST directory\n"
                    "  --batch N      batch size (64)\n"
                    "  --threads N    threads ($OMP_NUM_THREADS, else all cores)\n"
                    "  --limit N      use only the first N test images\n",
                    NULL);
    if (!o.weights)
        return fail(2, "eval: --weights FILE is required");
    st_error err;
    st_model *m = st_model_load(o.weights, o.batch, &err);
    if (!m)
        return fail(1, "%s", err.msg);
    st_dataset test;
    if (load_data(&o, NULL, &test)) {
        st_model_free(m);
        return 1;
    }
    st_eval_result r;
    uint8_t *pred = o.predictions ? malloc((size_t)test.n) : NULL;
    if (o.predictions && !pred)
        rc = fail(1, "out of memory");
    else if (st_evaluate(m, &test, o.batch, &r, pred, &err) != 0)
        rc = fail(1, "%s", err.msg);
    else if (pred && (rc = write_predictions(o.predictions, &test, pred)) != 0)
        ;
    else {
        printf("Model: %s (%s) from %s\n", st_model_class_name(st_model_get_kind(m)),
               st_model_kind_name(st_model_get_kind(m)), o.weights);
        print_eval("Model", &r, o.confusion);
    }
    free(pred);
    st_model_free(m);
    st_dataset_free(&test);
    return rc;
}

/* ------------------------------------------------------------------------------ info */

int cmd_shapes(int argc, char **argv)
{
    options o;
    int rc = parse_options("shapes", argc, argv, OPT_MODEL, &o);
    if (rc)
        return rc;
    if (o.help)
        return help("usage: stride shapes [--model cnn|linear|mlp]\n\n"
                    "Traces the shape of a 1x1x28x28 input through every layer (default: cnn).\n",
                    NULL);
    st_model_kind kind = ST_MODEL_CNN;
    if (o.model)
        st_model_kind_parse(o.model, &kind, NULL);
    print_shapes(kind);
    return 0;
}

int cmd_summary(int argc, char **argv)
{
    options o;
    int rc = parse_options("summary", argc, argv, OPT_MODEL, &o);
    if (rc)
        return rc;
    if (o.help)
        return help("usage: stride summary [--model cnn|linear|mlp]\n\n"
                    "Prints the model's structure and its parameters per block and in total.\n",
                    NULL);
    st_model_kind kind = ST_MODEL_CNN;
    if (o.model)
        st_model_kind_parse(o.model, &kind, NULL);
    st_error err;
    st_model *m = st_model_create(kind, 1, 0, &err);
    if (!m)
        return fail(1, "%s", err.msg);
    print_structure(m);
    print_block_params(m);
    st_model_free(m);
    return 0;
}

/* ------------------------------------------------------------------------------ main */

static const struct {
    const char *name;
    int (*fn)(int, char **);
} commands[] = {
    {"run", cmd_run},         {"train", cmd_train},     {"eval", cmd_eval},
    {"shapes", cmd_shapes},   {"summary", cmd_summary}, {"featuremaps", cmd_featuremaps},
    {"plot", cmd_plot},       {"predict", cmd_predict},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("stride %s\n", STRIDE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 2, argv + 2);
    return fail(2, "unknown command '%s' (see 'stride --help')", argv[1]);
}
