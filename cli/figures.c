/* figures.c - `stride featuremaps`, `stride plot`, and the figures `stride run` draws. */
#include "cli.h"

#include "fileio.h"
#include "json.h"
#include "plot.h"

#include <stdlib.h>
#include <string.h>

/* Picks the format from --format, else from the file name's extension, else PNG. */
static int figure_format(const char *path, const char *flag, st_plot_format *fmt)
{
    if (flag) {
        *fmt = strcmp(flag, "svg") == 0 ? ST_PLOT_SVG
               : strcmp(flag, "pdf") == 0 ? ST_PLOT_PDF
                                          : ST_PLOT_PNG;
        return 0;
    }
    st_error err;
    if (st_plot_format_from_path(path, fmt, &err) != 0)
        *fmt = ST_PLOT_PNG;
    return 0;
}

int featuremaps_compute(st_model *cnn, const st_dataset *test, int index, featuremaps *fm)
{
    st_error err;
    if (index < 0 || index >= test->n)
        return fail(2, "featuremaps: --index %d is out of range: the test set has %d images "
                       "(0 to %d)",
                    index, test->n, test->n - 1);
    uint32_t idx = (uint32_t)index;
    st_dataset_batch(test, &idx, 1, fm->img, &fm->label);
    fm->index = index;
    int was_training = st_model_is_training(cnn);
    st_model_set_training(cnn, 0);
    int rc = st_model_forward(cnn, fm->img, 1, NULL, &err);
    st_model_set_training(cnn, was_training);
    if (rc != 0)
        return fail(1, "%s", err.msg);
    /* the outputs of the three blocks: the last layer of each */
    int last[3] = {-1, -1, -1};
    for (int i = 0; i < st_model_num_layers(cnn); i++) {
        st_layer_info li;
        st_model_layer_info(cnn, i, &li);
        int b = strncmp(li.block, "block", 5) == 0 ? li.block[5] - '1' : -1;
        if (b >= 0 && b <= 2)
            last[b] = i;
    }
    for (int b = 0; b < 3; b++) {
        if (last[b] < 0)
            return fail(1, "featuremaps: the model has no block %d", b + 1);
        st_layer_info li;
        st_model_layer_info(cnn, last[b], &li);
        size_t n = (size_t)li.out_c * li.out_h * li.out_w;
        if (n > sizeof fm->maps[b] / sizeof fm->maps[b][0])
            return fail(1, "featuremaps: block %d's output [%d, %d, %d] is larger than expected",
                        b + 1, li.out_c, li.out_h, li.out_w);
        memcpy(fm->maps[b], st_model_layer_output(cnn, last[b]), n * sizeof(float));
        fm->sizes[b] = li.out_h;
        fm->channels[b] = li.out_c;
    }
    return 0;
}

int featuremaps_draw(const featuremaps *fm, const char *path, const char *format, int verbose)
{
    if (verbose) {
        printf("Original image: %s (test image %d)\n", st_class_names[fm->label], fm->index);
        for (int b = 0; b < 3; b++)
            printf("Block %d output: [1, %d, %d, %d] (%d channels, %dx%d)\n", b + 1,
                   fm->channels[b], fm->sizes[b], fm->sizes[b], fm->channels[b], fm->sizes[b],
                   fm->sizes[b]);
    }
    st_plot_format fmt;
    figure_format(path, format, &fmt);
    const float *maps[3] = {fm->maps[0], fm->maps[1], fm->maps[2]};
    st_error err;
    if (st_plot_featuremaps(path, fmt, fm->img, st_class_names[fm->label], maps, fm->sizes,
                            &err) != 0)
        return fail(1, "%s", err.msg);
    printf("saved %s\n", path);
    return 0;
}

int draw_comparison(const train_record recs[3], const char *path, const char *format)
{
    const double *costs[3], *times[3];
    double acc[3];
    for (int i = 0; i < 3; i++) {
        costs[i] = recs[i].costs;
        times[i] = recs[i].times;
        acc[i] = recs[i].eval.total ? 100.0 * recs[i].eval.correct / recs[i].eval.total : 0.0;
    }
    st_plot_format fmt;
    figure_format(path, format, &fmt);
    st_error err;
    if (st_plot_comparison(path, fmt, recs[2].epochs, costs, times, acc, &err) != 0)
        return fail(1, "%s", err.msg);
    printf("saved %s\n", path);
    return 0;
}

int cmd_featuremaps(int argc, char **argv)
{
    options o;
    int rc = parse_options("featuremaps", argc, argv,
                           OPT_DATA | OPT_WEIGHTS | OPT_INDEX | OPT_OUT | OPT_FORMAT | OPT_THREADS,
                           &o);
    if (rc)
        return rc;
    if (o.help) {
        fputs("usage: stride featuremaps --weights FILE [--index I] [--out FILE.png]\n\n"
              "Draws a test image and the first 8 channels of each CNN block's output (4 x 8\n"
              "grid, viridis).\n\noptions:\n"
              "  --weights FILE trained CNN weights (safetensors)\n"
              "  --index I      test image index (0)\n"
              "  --out FILE     output file (featuremaps.png)\n"
              "  --format F     png, svg or pdf (default: from the file name)\n"
              "  --data DIR     FashionMNIST directory\n",
              stdout);
        return 0;
    }
    if (!o.weights)
        return fail(2, "featuremaps: --weights FILE is required");
    st_error err;
    st_model *m = st_model_load(o.weights, 1, &err);
    if (!m)
        return fail(1, "%s", err.msg);
    if (st_model_get_kind(m) != ST_MODEL_CNN) {
        const char *kind = st_model_kind_name(st_model_get_kind(m));
        st_model_free(m);
        return fail(2, "featuremaps: %s holds a %s model; feature maps need the cnn", o.weights,
                    kind);
    }
    st_dataset test;
    if (load_data(&o, NULL, &test)) {
        st_model_free(m);
        return 1;
    }
    const char *fallback = !o.format                      ? "featuremaps.png"
                           : strcmp(o.format, "svg") == 0 ? "featuremaps.svg"
                           : strcmp(o.format, "pdf") == 0 ? "featuremaps.pdf"
                                                          : "featuremaps.png";
    static featuremaps fm;
    rc = featuremaps_compute(m, &test, o.index, &fm);
    st_model_free(m);
    st_dataset_free(&test);
    if (rc == 0)
        rc = featuremaps_draw(&fm, o.out ? o.out : fallback, o.format, 1);
    return rc;
}

/* Reads one model's series from metrics.json into rec. */
static int read_series(const st_json *model, const char *key, double *out, int *n,
                       const char *path)
{
    const st_json *arr = st_json_get(model, key);
    if (!arr || arr->type != ST_JSON_ARRAY || arr->count == 0 || arr->count > 1000)
        return fail(1, "%s: each model needs a \"%s\" array of 1 to 1000 numbers", path, key);
    for (size_t i = 0; i < arr->count; i++) {
        const st_json *v = arr->items[i];
        if (v->type != ST_JSON_INT && v->type != ST_JSON_NUMBER)
            return fail(1, "%s: \"%s\"[%zu] is not a number", path, key, i);
        out[i] = v->number;
    }
    *n = (int)arr->count;
    return 0;
}

int cmd_plot(int argc, char **argv)
{
    options o;
    int rc = parse_options("plot", argc, argv, OPT_METRICS | OPT_OUT | OPT_FORMAT, &o);
    if (rc)
        return rc;
    if (o.help) {
        fputs("usage: stride plot --metrics metrics.json [--out FILE.png]\n\n"
              "Redraws the comparison chart (cost, time per epoch, test accuracy) from the\n"
              "metrics.json that 'stride run' wrote.\n\noptions:\n"
              "  --metrics FILE metrics.json from 'stride run'\n"
              "  --out FILE     output file (comparison.png)\n"
              "  --format F     png, svg or pdf (default: from the file name)\n",
              stdout);
        return 0;
    }
    if (!o.metrics)
        return fail(2, "plot: --metrics FILE is required");
    uint8_t *buf;
    size_t len;
    st_error err;
    if (st_read_file(o.metrics, &buf, &len, 64u << 20, &err) != 0)
        return fail(1, "%s", err.msg);
    st_json_doc *doc;
    const st_json *root;
    if (st_json_parse((const char *)buf, len, 32, 1000000, &doc, &root, &err) != 0) {
        free(buf);
        return fail(1, "%s: %s", o.metrics, err.msg);
    }
    static train_record recs[3];
    const char *order[3] = {"linear", "mlp", "cnn"};
    const st_json *models = root->type == ST_JSON_OBJECT ? st_json_get(root, "models") : NULL;
    if (!models || models->type != ST_JSON_ARRAY) {
        rc = fail(1, "%s: no \"models\" array: expected the metrics.json of 'stride run'",
                  o.metrics);
        goto done;
    }
    for (int k = 0; k < 3 && rc == 0; k++) {
        const st_json *found = NULL;
        for (size_t i = 0; i < models->count; i++) {
            const st_json *name = models->items[i]->type == ST_JSON_OBJECT
                                      ? st_json_get(models->items[i], "model")
                                      : NULL;
            if (name && name->type == ST_JSON_STRING && strcmp(name->str, order[k]) == 0)
                found = models->items[i];
        }
        if (!found) {
            rc = fail(1, "%s: no entry for model \"%s\": the chart needs linear, mlp and cnn",
                      o.metrics, order[k]);
            break;
        }
        int n1, n2;
        if ((rc = read_series(found, "cost", recs[k].costs, &n1, o.metrics)) != 0 ||
            (rc = read_series(found, "time", recs[k].times, &n2, o.metrics)) != 0)
            break;
        const st_json *acc = st_json_get(found, "test_accuracy");
        if (n1 != n2 || !acc || (acc->type != ST_JSON_NUMBER && acc->type != ST_JSON_INT)) {
            rc = fail(1, "%s: model \"%s\" needs cost and time arrays of the same length and a "
                         "test_accuracy",
                      o.metrics, order[k]);
            break;
        }
        recs[k].epochs = n1;
        /* draw_comparison reads the accuracy from eval: store it as correct / 10^6 */
        recs[k].eval.total = 1000000;
        recs[k].eval.correct = (int)(acc->number * 10000.0 + 0.5);
    }
    if (rc == 0 && (recs[0].epochs != recs[2].epochs || recs[1].epochs != recs[2].epochs))
        rc = fail(1, "%s: the three models have different numbers of epochs (%d, %d, %d)",
                  o.metrics, recs[0].epochs, recs[1].epochs, recs[2].epochs);
    if (rc == 0) {
        const char *fallback = !o.format                      ? "comparison.png"
                               : strcmp(o.format, "svg") == 0 ? "comparison.svg"
                               : strcmp(o.format, "pdf") == 0 ? "comparison.pdf"
                                                              : "comparison.png";
        rc = draw_comparison(recs, o.out ? o.out : fallback, o.format);
    }
done:
    st_json_free(doc);
    free(buf);
    return rc;
}
