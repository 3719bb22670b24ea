/* model_io.c - saving and loading a model's state_dict as a safetensors file (st_model_save,
 * st_model_load, st_model_load_into in stride.h).
 *
 * Only the public model API is used: the tensors of st_model_tensor are the state_dict, in order.
 * Loading is strict, like PyTorch's load_state_dict(strict=True): every tensor of the model must
 * be in the file with the same dtype and shape, and the file may hold no other tensor. Everything
 * is checked before anything is copied, so a failed load leaves the model unchanged.
 */
#include "model_io.h"

#include <stdlib.h>
#include <string.h>

/* Model files are a few MB; refuse anything absurd before reading it into memory. */
#define MODEL_FILE_MAX ((size_t)1 << 30)

int st_model_save(const st_model *m, const char *path, st_error *err)
{
    int n = st_model_num_tensors(m);
    st_sf_tensor_w *w = calloc(n > 0 ? (size_t)n : 1, sizeof *w);
    if (!w)
        return st_seterr(err, "%s: out of memory", path);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_model_tensor(m, i);
        w[i].name = t->name;
        w[i].dtype = st_sf_dtype_from_st(t->dtype);
        w[i].ndim = t->ndim;
        w[i].shape = t->shape;
        w[i].data = t->data;
    }
    const char *meta[] = {"format",         "pt",
                          "stride_model",   st_model_kind_name(st_model_get_kind(m)),
                          "stride_version", STRIDE_VERSION};
    int rc = st_safetensors_write(path, w, n, meta, 3, err);
    free(w);
    return rc;
}

/* The kind of model a file holds: from the "stride_model" metadata, or else from a tensor name
 * that only one kind has (files written by PyTorch through the safetensors package carry no
 * stride_model). Returns 1 with *kind set, 0 if it cannot tell, -1 on a bad metadata value. */
static int file_kind(const st_safetensors *sf, const char *path, st_model_kind *kind,
                     st_error *err)
{
    const char *name = st_safetensors_meta(sf, "stride_model");
    if (name) {
        if (st_model_kind_parse(name, kind, NULL) != 0) {
            char q[64];
            return st_seterr(err, "%s: metadata stride_model is %s, expected cnn, linear or mlp",
                             path, st_sf_quote(q, sizeof q, name));
        }
        return 1;
    }
    static const struct {
        const char *tensor;
        st_model_kind kind;
    } marks[] = {
        {"block1.0.weight", ST_MODEL_CNN},
        {"linear.weight", ST_MODEL_LINEAR},
        {"layers.0.weight", ST_MODEL_MLP},
    };
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
        if (st_safetensors_find(sf, marks[i].tensor)) {
            *kind = marks[i].kind;
            return 1;
        }
    return 0;
}

/* Checks every tensor of m against the file, then copies them all. */
int st_model_read_tensors(st_model *m, const st_safetensors *sf, const char *path, int strict,
                          st_error *err)
{
    const int n = st_model_num_tensors(m);
    const char *kind = st_model_kind_name(st_model_get_kind(m));
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_model_tensor(m, i);
        const st_sf_tensor *f = st_safetensors_find(sf, t->name);
        if (!f)
            return st_seterr(err, "%s: tensor '%s' of the %s model is missing", path, t->name,
                             kind);
        st_sf_dtype want = st_sf_dtype_from_st(t->dtype);
        if (f->dtype != want)
            return st_seterr(err, "%s: tensor '%s' has dtype %s, expected %s", path, t->name,
                             st_sf_dtype_name(f->dtype), st_sf_dtype_name(want));
        int same = f->ndim == t->ndim && f->numel == t->numel;
        for (int d = 0; same && d < t->ndim; d++)
            same = f->shape[d] == t->shape[d];
        if (!same) {
            char got[96], exp[96];
            st_sf_format_shape(got, sizeof got, f->shape, f->ndim);
            st_sf_format_shape(exp, sizeof exp, t->shape, t->ndim);
            return st_seterr(err, "%s: tensor '%s' has shape %s, expected %s", path, t->name,
                             got, exp);
        }
    }
    /* Names are unique in both, so the file has extra tensors exactly when it has more. */
    if (strict && st_safetensors_count(sf) != n) {
        for (int i = 0; i < st_safetensors_count(sf); i++) {
            const st_sf_tensor *f = st_safetensors_at(sf, i);
            if (!st_model_find_tensor(m, f->name)) {
                char q[96];
                return st_seterr(err, "%s: unexpected tensor %s (not in the %s model)", path,
                                 st_sf_quote(q, sizeof q, f->name), kind);
            }
        }
    }
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_model_tensor(m, i);
        const st_sf_tensor *f = st_safetensors_find(sf, t->name);
        /* The file buffer has no alignment guarantee: copy bytes. */
        if (f->nbytes)
            memcpy(t->data, f->data, f->nbytes);
    }
    return 0;
}

st_model *st_model_load(const char *path, int max_batch, st_error *err)
{
    st_safetensors sf;
    if (st_safetensors_read(path, MODEL_FILE_MAX, &sf, err) != 0)
        return NULL;
    st_model_kind kind;
    int r = file_kind(&sf, path, &kind, err);
    if (r == 0)
        st_seterr(err, "%s: cannot tell which model this is: no stride_model metadata and no "
                       "block1.0.weight, linear.weight or layers.0.weight tensor", path);
    st_model *m = NULL;
    if (r == 1) {
        m = st_model_create(kind, max_batch, 0, err);
        if (m && st_model_read_tensors(m, &sf, path, 1, err) != 0) {
            st_model_free(m);
            m = NULL;
        }
    }
    st_safetensors_free(&sf);
    return m;
}

int st_model_load_into(st_model *m, const char *path, st_error *err)
{
    st_safetensors sf;
    if (st_safetensors_read(path, MODEL_FILE_MAX, &sf, err) != 0)
        return -1;
    st_model_kind kind;
    int r = file_kind(&sf, path, &kind, err);
    int rc = r < 0 ? -1 : 0;
    if (r == 1 && kind != st_model_get_kind(m))
        rc = st_seterr(err, "%s: the file holds a %s model (%s), not a %s model (%s)", path,
                       st_model_kind_name(kind), st_model_class_name(kind),
                       st_model_kind_name(st_model_get_kind(m)),
                       st_model_class_name(st_model_get_kind(m)));
    if (rc == 0)
        rc = st_model_read_tensors(m, &sf, path, 1, err);
    st_safetensors_free(&sf);
    return rc;
}
