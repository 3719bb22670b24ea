/* cli.h - the `stride` command: shared options, output helpers and the subcommands. */
#ifndef STRIDE_CLI_H
#define STRIDE_CLI_H

#include "stride.h"

#include <stdint.h>
#include <stdio.h>

#define DEFAULT_SEED 777

/* Options shared by the subcommands; each subcommand accepts a subset (see its --help). */
typedef struct options {
    const char *data;     /* --data DIR */
    int epochs;           /* --epochs N (15) */
    int batch;            /* --batch N (64) */
    double lr;            /* --lr X (0.001) */
    uint64_t seed;        /* --seed N (777) */
    int threads;          /* --threads N (0: OMP_NUM_THREADS, else all cores) */
    int limit;            /* --limit N (0: all images) */
    const char *model;    /* --model M */
    const char *out;      /* --out DIR or FILE */
    const char *save;     /* --save FILE */
    const char *metrics;  /* --metrics FILE */
    const char *weights;  /* --weights FILE */
    const char *resume;   /* --resume FILE */
    const char *format;   /* --format png|svg|pdf */
    const char *invert;   /* --invert auto|yes|no */
    const char *predictions; /* --predictions FILE */
    int index;            /* --index I */
    int confusion;        /* --confusion */
    int json;             /* --json */
    int show;             /* --show */
    int quiet;            /* --quiet: no progress bar */
    int help;
    const char *positional[256];
    int npositional;
} options;

/* Flags a subcommand accepts, as a bit set. */
enum {
    OPT_DATA = 1 << 0, OPT_EPOCHS = 1 << 1, OPT_BATCH = 1 << 2, OPT_LR = 1 << 3,
    OPT_SEED = 1 << 4, OPT_THREADS = 1 << 5, OPT_LIMIT = 1 << 6, OPT_MODEL = 1 << 7,
    OPT_OUT = 1 << 8, OPT_SAVE = 1 << 9, OPT_METRICS = 1 << 10, OPT_WEIGHTS = 1 << 11,
    OPT_RESUME = 1 << 12, OPT_FORMAT = 1 << 13, OPT_INVERT = 1 << 14, OPT_INDEX = 1 << 15,
    OPT_CONFUSION = 1 << 16, OPT_JSON = 1 << 17, OPT_SHOW = 1 << 18, OPT_QUIET = 1 << 19,
    OPT_POSITIONAL = 1 << 20, OPT_PREDICTIONS = 1 << 21,
    OPT_COMMON = OPT_DATA | OPT_EPOCHS | OPT_BATCH | OPT_LR | OPT_SEED | OPT_THREADS | OPT_LIMIT |
                 OPT_QUIET,
};

/* Parses argv (after the subcommand name) into o. Returns 0, or prints a one-line error and
 * returns 2. */
int parse_options(const char *cmd, int argc, char **argv, unsigned allowed, options *o);

/* Prints "stride: <message>" to stderr; returns the exit status given. */
int fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Loads FashionMNIST (train and/or test) from --data, $STRIDE_DATA, ./data/FashionMNIST/raw or
 * /usr/share/datasets/fashion-mnist; applies --limit. Prints an error and where it looked on
 * failure. */
int load_data(const options *o, st_dataset *train, st_dataset *test);

/* "60,000" */
const char *fmt_int(long long v, char *buf, size_t size);

/* Output of one model's training, for the report and metrics.json. */
typedef struct train_record {
    st_model_kind kind;
    const char *label; /* "CNN (3-Block)" */
    size_t params;
    int epochs;
    double costs[1000], times[1000];
    st_eval_result eval;
    int evaluated;
} train_record;

/* A fresh training state for the options (epochs, batch, lr, seed, limit; shuffle stream). */
void init_train_state(st_train_state *s, const options *o);
/* Trains m from state s to s->epochs, printing the epoch lines (and a progress bar on a
 * terminal). With ckpt, writes a checkpoint there after every epoch and on SIGINT/SIGTERM (then
 * returns 128 + the signal). Returns 0 or an exit status (message printed). */
int train_model(st_model *m, st_optim *opt, const st_dataset *train, train_record *rec,
                st_train_state *s, const char *indent, const char *ckpt, int quiet);
void print_epoch_summary(const train_record *rec);
void print_eval(const char *title, const st_eval_result *r, int confusion);
void print_shapes(st_model_kind kind);
void print_structure(const st_model *m);
void print_block_params(const st_model *m);
int write_predictions(const char *path, const st_dataset *ds, const uint8_t *pred);
int write_metrics_json(const char *path, const train_record *recs, int n, const options *o);

/* Figures (figures.c): draw and print "saved PATH"; format NULL picks it from the path. */
/* The CNN's three block outputs for test image `index`, copied out of the model, so that the
 * model can be freed before drawing (the fonts the drawing loads then do not add to the model's
 * memory at the peak). */
typedef struct featuremaps {
    float img[784];
    float maps[3][64 * 7 * 7]; /* the largest block output of the tutorial's CNN: 3136 */
    int sizes[3], channels[3];
    uint8_t label;
    int index;
} featuremaps;
int featuremaps_compute(st_model *cnn, const st_dataset *test, int index, featuremaps *fm);
int featuremaps_draw(const featuremaps *fm, const char *path, const char *format, int verbose);
int draw_comparison(const train_record recs[3], const char *path, const char *format);

/* Subcommands */
int cmd_run(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_shapes(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_featuremaps(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_predict(int argc, char **argv);

/* Set when SIGINT/SIGTERM arrives during training (0 otherwise). */
extern volatile int g_stop_signal;
void install_stop_handlers(void);

#endif
