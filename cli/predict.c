/* predict.c - `stride predict`: what does a picture show? */
#include "cli.h"

#include "image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static st_render_style render_style(void)
{
    if (!isatty(1))
        return ST_RENDER_PLAIN;
    const char *ct = getenv("COLORTERM");
    if (ct && (strstr(ct, "truecolor") || strstr(ct, "24bit")))
        return ST_RENDER_TRUECOLOR;
    return ST_RENDER_256;
}

int cmd_predict(int argc, char **argv)
{
    options o;
    int rc = parse_options("predict", argc, argv,
                           OPT_WEIGHTS | OPT_INVERT | OPT_JSON | OPT_SHOW | OPT_THREADS |
                               OPT_POSITIONAL,
                           &o);
    if (rc)
        return rc;
    /* One picture at a time: a batch-1 forward pass (about 1 ms) is too small to split across
     * threads; waiting for threads would cost more than it saves. */
    if (o.threads == 0)
        st_set_threads(1);
    if (o.help) {
        fputs("usage: stride predict --weights FILE [options] IMAGE...\n\n"
              "Classifies pictures (PNG, JPEG, PGM/PPM, BMP; '-' reads standard input) with\n"
              "trained weights and prints the 3 most likely classes. Pictures are converted to\n"
              "grayscale, fit into 28 x 28 keeping their aspect ratio, and shown as FashionMNIST\n"
              "shows clothes: a light object on a dark background.\n\noptions:\n"
              "  --weights FILE trained weights (safetensors)\n"
              "  --invert M     auto (invert pictures with a light border), yes or no (auto)\n"
              "  --json         one JSON object per line\n"
              "  --show         draw the 28 x 28 input the network sees in the terminal\n",
              stdout);
        return 0;
    }
    if (!o.weights)
        return fail(2, "predict: --weights FILE is required");
    if (o.npositional == 0)
        return fail(2, "predict: no image given (usage: stride predict --weights FILE IMAGE...)");
    st_invert_mode mode = !o.invert                      ? ST_INVERT_AUTO
                          : strcmp(o.invert, "yes") == 0 ? ST_INVERT_YES
                          : strcmp(o.invert, "no") == 0  ? ST_INVERT_NO
                                                         : ST_INVERT_AUTO;
    st_error err;
    st_model *m = st_model_load(o.weights, 1, &err);
    if (!m)
        return fail(1, "%s", err.msg);
    st_model_set_training(m, 0);
    int failed = 0, stdin_used = 0;
    for (int i = 0; i < o.npositional; i++) {
        const char *path = o.positional[i];
        const char *shown = strcmp(path, "-") == 0 ? "<stdin>" : path;
        if (strcmp(path, "-") == 0 && stdin_used++) {
            fail(1, "%s: standard input can be read only once", shown);
            failed++;
            continue;
        }
        float img[ST_IMAGE_PIXELS];
        int inverted = 0;
        const float *logits;
        if (st_image_load(path, mode, img, &inverted, &err) != 0 ||
            st_model_forward(m, img, 1, &logits, &err) != 0) {
            fail(1, "%s", err.msg);
            failed++;
            continue;
        }
        double prob[ST_NUM_CLASSES], mx = logits[0], sum = 0.0;
        for (int c = 1; c < ST_NUM_CLASSES; c++)
            mx = logits[c] > mx ? logits[c] : mx;
        for (int c = 0; c < ST_NUM_CLASSES; c++)
            sum += prob[c] = exp(logits[c] - mx);
        int top[3];
        for (int k = 0; k < 3; k++) {
            int best = -1;
            for (int c = 0; c < ST_NUM_CLASSES; c++) {
                int taken = 0;
                for (int j = 0; j < k; j++)
                    taken |= top[j] == c;
                if (!taken && (best < 0 || prob[c] > prob[best]))
                    best = c;
            }
            top[k] = best;
        }
        if (o.show && !o.json) {
            static char art[ST_IMAGE_RENDER_MAX];
            if (st_image_render_ansi(img, render_style(), art, sizeof art) > 0)
                fputs(art, stdout);
        }
        if (o.json) {
            printf("{\"file\": ");
            json_string(shown);
            printf(", \"inverted\": %s, \"top\": [", inverted ? "true" : "false");
            for (int k = 0; k < 3; k++) {
                printf("%s{\"class\": ", k ? ", " : "");
                json_string(st_class_names[top[k]]);
                printf(", \"index\": %d, \"probability\": %.6f}", top[k], prob[top[k]] / sum);
            }
            printf("]}\n");
        } else {
            printf("%s:", shown);
            for (int k = 0; k < 3; k++)
                printf("%s %s %.1f%%", k ? "," : "", st_class_names[top[k]],
                       100.0 * prob[top[k]] / sum);
            printf("%s\n", inverted ? "  (inverted)" : "");
        }
        fflush(stdout);
    }
    st_model_free(m);
    return failed ? 1 : 0;
}
