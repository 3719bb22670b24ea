/* model_io.h - reading a model's tensors out of a parsed safetensors file (library-internal). */
#ifndef STRIDE_MODEL_IO_H
#define STRIDE_MODEL_IO_H

#include "safetensors.h"

/* Checks every tensor of m against sf (names, dtypes, shapes), then copies them all; nothing is
 * copied if a check fails. strict: the file may hold no other tensor (PyTorch's
 * load_state_dict(strict=True)); otherwise other tensors (a checkpoint's optimiser state) are
 * ignored. Messages are prefixed with path. */
int st_model_read_tensors(st_model *m, const st_safetensors *sf, const char *path, int strict,
                          st_error *err);

#endif
