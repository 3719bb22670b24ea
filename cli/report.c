/* report.c - what `stride` prints: epoch lines, progress bar, shape trace, structure, parameter
 * tables, evaluation reports, and metrics.json. */
#include "cli.h"

#include "fileio.h"
#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------ training */

typedef struct progress_state {
    int enabled;
    int batch_size;
    double last_draw;
    const char *label;
} progress_state;

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int on_batch(void *user, int batch, int nb, double running, double seconds)
{
    progress_state *p = user;
    if (p->enabled) {
        double t = wall();
        if (batch == nb || t - p->last_draw > 0.1) {
            p->last_draw = t;
            int width = 24, fill = (int)((double)batch / nb * width);
            char bar[32];
            for (int i = 0; i < width; i++)
                bar[i] = i < fill ? '#' : '.';
            bar[width] = '\0';
            double ips = seconds > 0 ? (double)batch * p->batch_size / seconds : 0.0;
            double eta = batch > 0 ? seconds / batch * (nb - batch) : 0.0;
            fprintf(stderr, "\r\033[K  %s [%s] %d/%d  loss %.4f  %.0f img/s  ETA %.1fs", p->label,
                    bar, batch, nb, running, ips, eta);
            fflush(stderr);
        }
    }
    return g_stop_signal != 0;
}

void init_train_state(st_train_state *s, const options *o)
{
    memset(s, 0, sizeof *s);
    s->epochs = o->epochs;
    s->batch_size = o->batch;
    s->lr = o->lr;
    s->seed = o->seed;
    s->limit = o->limit;
    /* The shuffle has its own stream, derived from the seed, so that it does not depend on how
     * many numbers the initialisation or dropout drew. */
    st_rng_seed(&s->shuffle, o->seed ^ 0x5eed5eed5eed5eedULL);
}

int train_model(st_model *m, st_optim *opt, const st_dataset *train, train_record *rec,
                st_train_state *s, const char *indent, const char *ckpt, int quiet)
{
    st_error err;
    progress_state ps = {isatty(2) && !quiet, s->batch_size, 0.0, st_model_kind_name(rec->kind)};
    rec->epochs = s->epoch;
    for (int e = 0; e < s->epoch; e++) {
        rec->costs[e] = s->costs[e];
        rec->times[e] = s->times[e];
    }
    for (int e = s->epoch; e < s->epochs; e++) {
        st_rng epoch_start = s->shuffle;
        st_epoch_result r;
        int rc = st_train_epoch_resume(m, opt, train, s->batch_size, &s->shuffle, s->batch,
                                       s->cost_sum, s->seconds, on_batch, &ps, &r, &err);
        if (ps.enabled)
            fprintf(stderr, "\r\033[K");
        if (rc != 0) {
            fail(1, "training %s, epoch %d: %s", rec->label, e + 1, err.msg);
            if (ckpt && e > 0)
                fprintf(stderr, "  the last good checkpoint (end of epoch %d) is kept: %s\n", e,
                        ckpt);
            return 1;
        }
        if (r.stopped && r.batches < r.num_batches) {
            int sig = g_stop_signal ? g_stop_signal : 2;
            if (ckpt) {
                s->shuffle = epoch_start;
                s->epoch = e;
                s->batch = r.batches;
                s->cost_sum = r.cost_sum;
                s->seconds = r.seconds;
                if (st_checkpoint_save(ckpt, m, opt, s, &err) != 0) {
                    fail(128 + sig, "interrupted, and the checkpoint could not be saved: %s",
                         err.msg);
                    return 128 + sig;
                }
                fprintf(stderr,
                        "stride: interrupted in epoch %d at batch %d of %d; checkpoint saved to "
                        "%s\n  resume with: stride train --resume %s\n",
                        e + 1, r.batches, r.num_batches, ckpt, ckpt);
            } else {
                fail(128 + sig, "interrupted in epoch %d of %s (no checkpoint: use --save)", e + 1,
                     rec->label);
            }
            return 128 + sig;
        }
        rec->costs[e] = s->costs[e] = r.cost;
        rec->times[e] = s->times[e] = r.seconds;
        rec->epochs = e + 1;
        s->epoch = e + 1;
        s->batch = 0;
        s->cost_sum = 0.0;
        s->seconds = 0.0;
        printf("%sEpoch %02d/%d | cost = %.6f | time = %.2fs\n", indent, e + 1, s->epochs, r.cost,
               r.seconds);
        fflush(stdout);
        if (ckpt && st_checkpoint_save(ckpt, m, opt, s, &err) != 0)
            return fail(1, "%s", err.msg);
        if (g_stop_signal) { /* the signal came with the epoch's last batch */
            fprintf(stderr, "stride: interrupted after epoch %d%s%s\n", e + 1,
                    ckpt ? "; checkpoint saved to " : "", ckpt ? ckpt : "");
            return 128 + g_stop_signal;
        }
    }
    return 0;
}

void print_epoch_summary(const train_record *rec)
{
    double sum = 0.0;
    for (int e = 0; e < rec->epochs; e++)
        sum += rec->times[e];
    printf("\nMean epoch time: %.2fs\n", rec->epochs ? sum / rec->epochs : 0.0);
}

/* ------------------------------------------------------------------------------ evaluation */

void print_eval(const char *title, const st_eval_result *r, int confusion)
{
    double acc = r->total ? 100.0 * r->correct / r->total : 0.0;
    double p = acc / 100.0, se = r->total ? 100.0 * sqrt(p * (1.0 - p) / r->total) : 0.0;
    printf("%s per-class test accuracy:\n", title);
    printf("-----------------------------------\n");
    for (int c = 0; c < ST_NUM_CLASSES; c++) {
        double a = r->class_total[c] ? 100.0 * r->class_correct[c] / r->class_total[c] : 0.0;
        char bar[64];
        int len = (int)(a / 2);
        memset(bar, '#', (size_t)len);
        bar[len] = '\0';
        printf("  %-15s %5.1f%% %s\n", st_class_names[c], a, bar);
    }
    printf("\n  %-15s %5.1f%%\n\n", "Overall", acc);
    printf("Test accuracy: %.2f%% \u00b1 %.2f%% (%d of %d images)\n", acc, se, r->correct,
           r->total);
    printf("Time per image: %.2f us (%.0f images/s)\n",
           r->total ? 1e6 * r->seconds / r->total : 0.0,
           r->seconds > 0 ? r->total / r->seconds : 0.0);
    if (confusion) {
        printf("\nConfusion matrix (rows: true class, columns: predicted class):\n");
        printf("%-13s", "");
        for (int c = 0; c < ST_NUM_CLASSES; c++)
            printf(" %5d", c);
        printf("\n");
        for (int t = 0; t < ST_NUM_CLASSES; t++) {
            printf("%d %-11.11s", t, st_class_names[t]);
            for (int c = 0; c < ST_NUM_CLASSES; c++)
                printf(" %5d", r->confusion[t][c]);
            printf("\n");
        }
    }
}

/* ------------------------------------------------------------------------------ structure */

static const char *shape_note(const st_layer_info *li, int first_in_block)
{
    (void)first_in_block;
    if (strncmp(li->desc, "Conv2d", 6) == 0 && li->out_h == li->in_h)
        return "padding keeps the size";
    if (strncmp(li->desc, "BatchNorm2d", 11) == 0)
        return "per-channel normalisation (shape unchanged)";
    if (strcmp(li->desc, "ReLU") == 0)
        return "activation (shape unchanged)";
    if (strncmp(li->desc, "MaxPool2d", 9) == 0)
        return "halves height and width";
    if (strcmp(li->desc, "Flatten") == 0)
        return "C x H x W in one vector";
    return "";
}

static void print_shape(const char *label, int n, int c, int h, int w, const char *note)
{
    char shape[64];
    if (h == 1 && w == 1)
        snprintf(shape, sizeof shape, "[%d, %d]", n, c);
    else
        snprintf(shape, sizeof shape, "[%d, %d, %d, %d]", n, c, h, w);
    printf("%-40s %-18s%s%s\n", label, shape, *note ? "  <- " : "", note);
}

void print_shapes(st_model_kind kind)
{
    st_error err;
    st_model *m = st_model_create(kind, 1, 0, &err);
    if (!m) {
        fail(1, "%s", err.msg);
        return;
    }
    print_shape("Input:", 1, 1, 28, 28, "(batch, channels, height, width)");
    printf("======================================================================\n");
    const char *block = "";
    for (int i = 0; i < st_model_num_layers(m); i++) {
        st_layer_info li;
        st_model_layer_info(m, i, &li);
        if (strcmp(li.block, block) != 0) {
            block = li.block;
            printf("\n[%s]\n", li.block);
        }
        char label[80];
        snprintf(label, sizeof label, "%s:", li.desc);
        print_shape(label, 1, li.out_c, li.out_h, li.out_w, shape_note(&li, 0));
    }
    st_model_free(m);
}

/* Prints the model as PyTorch's print(model) does. */
void print_structure(const st_model *m)
{
    printf("%s(\n", st_model_class_name(st_model_get_kind(m)));
    const char *block = "";
    int open = 0;
    for (int i = 0; i < st_model_num_layers(m); i++) {
        st_layer_info li;
        st_model_layer_info(m, i, &li);
        if (strcmp(li.desc, "Flatten") == 0)
            continue; /* x.view(N, -1) in forward(), not a module */
        const char *dot = strchr(li.name, '.');
        char repr[160];
        int ic = li.in_c, oc = li.out_c;
        if (strncmp(li.desc, "Conv2d", 6) == 0) {
            int k = 0, s = 0, p = 0;
            sscanf(strchr(li.desc, ',') + 2, "%dx%*d, stride=%d, padding=%d", &k, &s, &p);
            snprintf(repr, sizeof repr,
                     "Conv2d(%d, %d, kernel_size=(%d, %d), stride=(%d, %d), padding=(%d, %d))", ic,
                     oc, k, k, s, s, p, p);
        } else if (strncmp(li.desc, "BatchNorm2d", 11) == 0) {
            snprintf(repr, sizeof repr,
                     "BatchNorm2d(%d, eps=1e-05, momentum=0.1, affine=True, "
                     "track_running_stats=True)",
                     ic);
        } else if (strcmp(li.desc, "ReLU") == 0) {
            snprintf(repr, sizeof repr, "ReLU()");
        } else if (strncmp(li.desc, "MaxPool2d", 9) == 0) {
            int k = 0, s = 0;
            sscanf(li.desc, "MaxPool2d(%d, stride=%d)", &k, &s);
            snprintf(repr, sizeof repr,
                     "MaxPool2d(kernel_size=%d, stride=%d, padding=0, dilation=1, "
                     "ceil_mode=False)",
                     k, s);
        } else if (strncmp(li.desc, "Dropout", 7) == 0) {
            double p = 0;
            sscanf(li.desc, "Dropout(p=%lf)", &p);
            snprintf(repr, sizeof repr, "Dropout(p=%.1f, inplace=False)", p);
        } else if (strncmp(li.desc, "Linear", 6) == 0) {
            snprintf(repr, sizeof repr, "Linear(in_features=%d, out_features=%d, bias=True)",
                     li.in_c * li.in_h * li.in_w, oc);
        } else {
            snprintf(repr, sizeof repr, "%s", li.desc);
        }
        if (!dot) { /* a top-level module */
            if (open)
                printf("  )\n"), open = 0;
            printf("  (%s): %s\n", li.name, repr);
            continue;
        }
        if (strcmp(li.block, block) != 0) {
            if (open)
                printf("  )\n");
            printf("  (%s): Sequential(\n", li.block);
            block = li.block;
            open = 1;
        }
        printf("    (%s): %s\n", dot + 1, repr);
    }
    if (open)
        printf("  )\n");
    printf(")\n");
}

static void block_title(const char *block, char *out, size_t size)
{
    if (strncmp(block, "block", 5) == 0)
        snprintf(out, size, "Block %s", block + 5);
    else
        snprintf(out, size, "%c%s", block[0] - 32 * (block[0] >= 'a' && block[0] <= 'z'),
                 block + 1);
}

void print_block_params(const st_model *m)
{
    char num[32];
    printf("\n%s total parameters: %s\n", st_model_class_name(st_model_get_kind(m)),
           fmt_int((long long)st_model_num_params(m), num, sizeof num));
    printf("\n%-15s %12s\n", "Block", "Parameters");
    printf("------------------------------\n");
    const char *block = NULL;
    size_t sum = 0;
    for (int i = 0; i <= st_model_num_layers(m); i++) {
        st_layer_info li;
        if (i < st_model_num_layers(m))
            st_model_layer_info(m, i, &li);
        if (block && (i == st_model_num_layers(m) || strcmp(li.block, block) != 0)) {
            if (strcmp(block, "flatten") != 0) {
                char title[32];
                block_title(block, title, sizeof title);
                printf("%-15s %12s\n", title, fmt_int((long long)sum, num, sizeof num));
            }
            sum = 0;
        }
        if (i == st_model_num_layers(m))
            break;
        block = li.block;
        sum += li.num_params;
    }
}

/* ------------------------------------------------------------------------------ metrics.json */

static void sb_doubles(st_strbuf *b, const double *v, int n)
{
    st_strbuf_printf(b, "[");
    for (int i = 0; i < n; i++)
        st_strbuf_printf(b, "%s%.9g", i ? ", " : "", v[i]);
    st_strbuf_printf(b, "]");
}

int write_predictions(const char *path, const st_dataset *ds, const uint8_t *pred)
{
    st_strbuf b;
    st_strbuf_init(&b);
    st_strbuf_printf(&b, "index,label,predicted,label_name,predicted_name\n");
    for (int i = 0; i < ds->n; i++)
        st_strbuf_printf(&b, "%d,%d,%d,%s,%s\n", i, ds->labels[i], pred[i], st_class_names[ds->labels[i]],
                  st_class_names[pred[i]]);
    if (b.failed) {
        st_strbuf_free(&b);
        return fail(1, "%s: out of memory writing predictions", path);
    }
    st_error err;
    const void *chunks[1] = {b.data};
    size_t sizes[1] = {b.len};
    int rc = st_write_file_atomic(path, chunks, sizes, 1, &err);
    st_strbuf_free(&b);
    return rc != 0 ? fail(1, "%s", err.msg) : 0;
}

int write_metrics_json(const char *path, const train_record *recs, int n, const options *o)
{
    st_strbuf b;
    st_strbuf_init(&b);
    st_strbuf_printf(&b, "{\n  \"stride_version\": \"%s\",\n", STRIDE_VERSION);
    st_strbuf_printf(&b,
              "  \"settings\": {\"epochs\": %d, \"batch\": %d, \"lr\": %.9g, \"seed\": %llu, "
              "\"threads\": %d, \"limit\": %d, \"kernel\": \"%s\"},\n",
              o->epochs, o->batch, o->lr, (unsigned long long)o->seed, st_get_threads(), o->limit,
              st_kernel_name());
    st_strbuf_printf(&b, "  \"models\": [\n");
    for (int i = 0; i < n; i++) {
        const train_record *r = &recs[i];
        double mean_time = 0.0;
        for (int e = 0; e < r->epochs; e++)
            mean_time += r->times[e];
        mean_time = r->epochs ? mean_time / r->epochs : 0.0;
        st_strbuf_printf(&b,
                  "    {\"model\": \"%s\", \"label\": \"%s\", \"parameters\": %zu, "
                  "\"epochs\": %d,\n",
                  st_model_kind_name(r->kind), r->label, r->params, r->epochs);
        st_strbuf_printf(&b, "     \"cost\": ");
        sb_doubles(&b, r->costs, r->epochs);
        st_strbuf_printf(&b, ",\n     \"time\": ");
        sb_doubles(&b, r->times, r->epochs);
        st_strbuf_printf(&b, ",\n     \"mean_epoch_time\": %.9g, \"final_cost\": %.9g", mean_time,
                  r->epochs ? r->costs[r->epochs - 1] : 0.0);
        if (r->evaluated) {
            const st_eval_result *ev = &r->eval;
            double acc = ev->total ? 100.0 * ev->correct / ev->total : 0.0;
            double p = acc / 100.0;
            st_strbuf_printf(&b,
                      ",\n     \"test_accuracy\": %.9g, \"test_accuracy_stderr\": %.9g, "
                      "\"test_correct\": %d, \"test_total\": %d, \"eval_seconds\": %.9g,\n"
                      "     \"class_accuracy\": {",
                      acc, ev->total ? 100.0 * sqrt(p * (1 - p) / ev->total) : 0.0, ev->correct,
                      ev->total, ev->seconds);
            for (int c = 0; c < ST_NUM_CLASSES; c++)
                st_strbuf_printf(&b, "%s\"%s\": %.9g", c ? ", " : "", st_class_names[c],
                          ev->class_total[c] ? 100.0 * ev->class_correct[c] / ev->class_total[c]
                                             : 0.0);
            st_strbuf_printf(&b, "},\n     \"confusion\": [");
            for (int t = 0; t < ST_NUM_CLASSES; t++) {
                st_strbuf_printf(&b, "%s[", t ? ", " : "");
                for (int c = 0; c < ST_NUM_CLASSES; c++)
                    st_strbuf_printf(&b, "%s%d", c ? ", " : "", ev->confusion[t][c]);
                st_strbuf_printf(&b, "]");
            }
            st_strbuf_printf(&b, "]");
        }
        st_strbuf_printf(&b, "}%s\n", i + 1 < n ? "," : "");
    }
    st_strbuf_printf(&b, "  ]\n}\n");
    if (b.failed) {
        st_strbuf_free(&b);
        return fail(1, "%s: out of memory writing metrics", path);
    }
    st_error err;
    const void *chunks[1] = {b.data};
    size_t sizes[1] = {b.len};
    int rc = st_write_file_atomic(path, chunks, sizes, 1, &err);
    st_strbuf_free(&b);
    if (rc != 0)
        return fail(1, "%s", err.msg);
    return 0;
}
