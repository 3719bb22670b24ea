/* options.c - command-line flags, data lookup and small output helpers for `stride`. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int fail(int status, const char *fmt, ...)
{
    va_list ap;
    fputs("stride: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return status;
}

const char *fmt_int(long long v, char *buf, size_t size)
{
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%lld", v < 0 ? -v : v);
    size_t j = 0;
    if (v < 0 && j + 1 < size)
        buf[j++] = '-';
    for (int i = 0; i < len && j + 1 < size; i++) {
        if (i > 0 && (len - i) % 3 == 0 && j + 1 < size)
            buf[j++] = ',';
        buf[j++] = tmp[i];
    }
    buf[j] = '\0';
    return buf;
}

static int parse_int(const char *flag, const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        return fail(2, "invalid value '%s' for %s: expected an integer from %ld to %ld", s, flag,
                    lo, hi);
    *out = (int)v;
    return 0;
}

static const struct {
    const char *name;
    unsigned bit;
    int takes_value;
} flags[] = {
    {"--data", OPT_DATA, 1},       {"--epochs", OPT_EPOCHS, 1},   {"--batch", OPT_BATCH, 1},
    {"--lr", OPT_LR, 1},           {"--seed", OPT_SEED, 1},       {"--threads", OPT_THREADS, 1},
    {"--limit", OPT_LIMIT, 1},     {"--model", OPT_MODEL, 1},     {"--out", OPT_OUT, 1},
    {"--save", OPT_SAVE, 1},       {"--metrics", OPT_METRICS, 1}, {"--weights", OPT_WEIGHTS, 1},
    {"--resume", OPT_RESUME, 1},   {"--format", OPT_FORMAT, 1},   {"--invert", OPT_INVERT, 1},
    {"--index", OPT_INDEX, 1},     {"--confusion", OPT_CONFUSION, 0},
    {"--predictions", OPT_PREDICTIONS, 1},
    {"--json", OPT_JSON, 0},       {"--show", OPT_SHOW, 0},       {"--quiet", OPT_QUIET, 0},
};

int parse_options(const char *cmd, int argc, char **argv, unsigned allowed, options *o)
{
    memset(o, 0, sizeof *o);
    o->epochs = 15;
    o->batch = 64;
    o->lr = 0.001;
    o->seed = DEFAULT_SEED;
    o->index = 0;
    int only_positional = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_positional && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            o->help = 1;
            return 0;
        }
        if (!only_positional && strcmp(a, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (only_positional || a[0] != '-' || strcmp(a, "-") == 0) {
            if (!(allowed & OPT_POSITIONAL))
                return fail(2, "%s: unexpected argument '%s' (see 'stride %s --help')", cmd, a,
                            cmd);
            if (o->npositional >= (int)(sizeof o->positional / sizeof *o->positional))
                return fail(2, "%s: too many arguments (at most %d)", cmd,
                            (int)(sizeof o->positional / sizeof *o->positional));
            o->positional[o->npositional++] = a;
            continue;
        }
        /* --flag=value or --flag value */
        char name[32];
        const char *value = NULL;
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        if (nlen >= sizeof name)
            return fail(2, "%s: unknown option '%s' (see 'stride %s --help')", cmd, a, cmd);
        memcpy(name, a, nlen);
        name[nlen] = '\0';
        int f = -1;
        for (int k = 0; k < (int)(sizeof flags / sizeof *flags); k++)
            if (strcmp(name, flags[k].name) == 0)
                f = k;
        if (f < 0 || !(allowed & flags[f].bit))
            return fail(2, "%s: unknown option '%s' (see 'stride %s --help')", cmd, name, cmd);
        if (flags[f].takes_value) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return fail(2, "%s: option %s needs a value", cmd, name);
        } else if (eq) {
            return fail(2, "%s: option %s takes no value", cmd, name);
        }
        unsigned bit = flags[f].bit;
        int rc = 0;
        if (bit == OPT_DATA) o->data = value;
        else if (bit == OPT_EPOCHS) rc = parse_int(name, value, 1, 1000, &o->epochs);
        else if (bit == OPT_BATCH) rc = parse_int(name, value, 1, 65536, &o->batch);
        else if (bit == OPT_THREADS) rc = parse_int(name, value, 1, ST_MAX_THREADS, &o->threads);
        else if (bit == OPT_LIMIT) rc = parse_int(name, value, 1, 100000000, &o->limit);
        else if (bit == OPT_INDEX) rc = parse_int(name, value, 0, 100000000, &o->index);
        else if (bit == OPT_LR) {
            char *end;
            errno = 0;
            o->lr = strtod(value, &end);
            if (errno || end == value || *end || !(o->lr > 0.0) || !isfinite(o->lr))
                return fail(2, "invalid value '%s' for --lr: expected a positive number such "
                               "as 0.001", value);
        } else if (bit == OPT_SEED) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(value, &end, 10);
            if (errno || end == value || *end || value[0] == '-')
                return fail(2, "invalid value '%s' for --seed: expected a non-negative integer",
                            value);
            o->seed = v;
        } else if (bit == OPT_MODEL) {
            st_model_kind k;
            if (st_model_kind_parse(value, &k, NULL) != 0)
                return fail(2, "invalid value '%s' for --model: expected cnn, linear or mlp",
                            value);
            o->model = value;
        } else if (bit == OPT_OUT) o->out = value;
        else if (bit == OPT_SAVE) o->save = value;
        else if (bit == OPT_METRICS) o->metrics = value;
        else if (bit == OPT_WEIGHTS) o->weights = value;
        else if (bit == OPT_PREDICTIONS) o->predictions = value;
        else if (bit == OPT_RESUME) o->resume = value;
        else if (bit == OPT_FORMAT) {
            if (strcmp(value, "png") && strcmp(value, "svg") && strcmp(value, "pdf"))
                return fail(2, "invalid value '%s' for --format: expected png, svg or pdf",
                            value);
            o->format = value;
        } else if (bit == OPT_INVERT) {
            if (strcmp(value, "auto") && strcmp(value, "yes") && strcmp(value, "no"))
                return fail(2, "invalid value '%s' for --invert: expected auto, yes or no",
                            value);
            o->invert = value;
        } else if (bit == OPT_CONFUSION) o->confusion = 1;
        else if (bit == OPT_JSON) o->json = 1;
        else if (bit == OPT_SHOW) o->show = 1;
        else if (bit == OPT_QUIET) o->quiet = 1;
        if (rc)
            return rc;
    }
    if (o->threads > 0)
        st_set_threads(o->threads);
    return 0;
}

static int is_dir(const char *p)
{
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int load_data(const options *o, st_dataset *train, st_dataset *test)
{
    const char *env = getenv("STRIDE_DATA");
    const char *candidates[] = {"./data/FashionMNIST/raw", "/usr/share/datasets/fashion-mnist"};
    const char *dir = o->data ? o->data : (env && *env ? env : NULL);
    if (!dir) {
        for (int i = 0; i < 2 && !dir; i++)
            if (is_dir(candidates[i]))
                dir = candidates[i];
        if (!dir)
            dir = candidates[1];
    }
    st_error err;
    int failed = 0;
    if (train && st_dataset_load_fashion(train, dir, 1, &err) != 0)
        failed = 1;
    if (!failed && test && st_dataset_load_fashion(test, dir, 0, &err) != 0) {
        failed = 1;
        if (train)
            st_dataset_free(train);
    }
    if (failed) {
        fail(1, "%s", err.msg);
        fprintf(stderr,
                "  looked in: %s (%s)\n"
                "  order: --data DIR, $STRIDE_DATA, ./data/FashionMNIST/raw, "
                "/usr/share/datasets/fashion-mnist\n"
                "  to get the data: sudo apt-get install dataset-fashion-mnist, or pass --data DIR "
                "holding train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]\n",
                dir,
                o->data ? "--data" : (env && *env ? "$STRIDE_DATA" : "default"));
        return 1;
    }
    if (o->limit > 0) {
        if (train && o->limit < train->n)
            st_dataset_truncate(train, o->limit);
        if (test && o->limit < test->n)
            st_dataset_truncate(test, o->limit);
    }
    return 0;
}
