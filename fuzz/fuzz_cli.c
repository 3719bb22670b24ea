/* fuzz_cli.c - libFuzzer target for the command-line parser (cli/options.c).
 *
 * The input is split at NUL bytes into arguments; its first byte picks the subcommand whose
 * flags are allowed. parse_options must never crash, hang or read out of bounds, whatever the
 * arguments. Built and run by fuzz/run. */
#include "cli.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

volatile int g_stop_signal;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct {
        const char *name;
        unsigned allowed;
    } cmds[] = {
        {"run", OPT_COMMON | OPT_OUT | OPT_FORMAT},
        {"train", OPT_COMMON | OPT_MODEL | OPT_SAVE | OPT_METRICS | OPT_RESUME},
        {"eval", OPT_DATA | OPT_BATCH | OPT_THREADS | OPT_LIMIT | OPT_WEIGHTS | OPT_CONFUSION |
                     OPT_PREDICTIONS},
        {"predict", OPT_WEIGHTS | OPT_INVERT | OPT_JSON | OPT_SHOW | OPT_THREADS | OPT_POSITIONAL},
        {"featuremaps", OPT_DATA | OPT_WEIGHTS | OPT_INDEX | OPT_OUT | OPT_FORMAT | OPT_THREADS},
        {"all", ~0u},
    };
    if (size < 1 || size > 4096)
        return 0;
    int c = data[0] % (int)(sizeof cmds / sizeof *cmds);
    char *buf = malloc(size); /* arguments, each NUL-terminated */
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    char *argv[300];
    int argc = 0;
    for (size_t i = 0; i < size - 1 && argc < 300; i++) {
        argv[argc++] = buf + i;
        i += strlen(buf + i);
    }
    options o;
    parse_options(cmds[c].name, argc, argv, cmds[c].allowed, &o);
    st_set_threads(1);
    free(buf);
    return 0;
}
