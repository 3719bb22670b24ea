/* refio.h - reads the PyTorch reference files written by tests/gen_ref.py, and compares arrays.
 *
 * Format (little-endian): "STRIDREF", u32 version (1), u32 count, then count tensors, each:
 * u16 name length, name, u8 dtype (0 f32, 1 i64, 2 u8, 3 f16, 4 i32, 5 f64), u8 ndim, ndim x i64 dims,
 * data. float16 tensors are converted to float32 on load (exactly), so every floating tensor is
 * read as float. Files are looked up in $STRIDE_REF_DIR, tests/ref, or ../../tests/ref next to the
 * test program (build/tests/test_x).
 *
 * Comparisons print one line each: the largest absolute difference, the largest relative
 * difference (over elements with |expected| >= 1e-3 * max|expected|), and "use", the largest
 * |got - exp| / (atol + rtol * |exp|), which must be <= 1 to pass. With REF_HIST set in the
 * environment, each comparison also prints how many differences exceed 1e-9, 1e-8, ..., 1e-2. */
#ifndef STRIDE_REFIO_H
#define STRIDE_REFIO_H

#include <float.h>
#include <limits.h>
#include <stdarg.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { REF_F32 = 0, REF_I64 = 1, REF_U8 = 2, REF_F16 = 3, REF_I32 = 4, REF_F64 = 5 };

typedef struct ref_tensor {
    char name[128];
    int dtype; /* REF_F32 (also for float16 on disk), REF_I64, REF_U8, REF_I32, REF_F64 */
    int ndim;
    int64_t dims[8];
    size_t numel;
    void *data;
} ref_tensor;

typedef struct ref_file {
    char path[PATH_MAX];
    int n;
    ref_tensor *t;
} ref_file;

/* Elements kept in a sampled big tensor (gen_ref.py's sample_mask). */
#define REF_SAMPLE_EDGE 256
#define REF_SAMPLE_STEP 7

static inline int ref_sampled(size_t i, size_t numel)
{
    return i < REF_SAMPLE_EDGE || i + REF_SAMPLE_EDGE >= numel || i % REF_SAMPLE_STEP == 0;
}

static inline float ref_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal half: normalise */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline int ref_read(FILE *f, void *p, size_t n)
{
    return fread(p, 1, n, f) == n ? 0 : -1;
}

static inline void ref_close(ref_file *rf)
{
    for (int i = 0; i < rf->n; i++) free(rf->t[i].data);
    free(rf->t);
    rf->t = NULL;
    rf->n = 0;
}

static inline FILE *ref_fopen(const char *file, char *path, size_t cap)
{
    const char *env = getenv("STRIDE_REF_DIR");
    FILE *f;
    if (env && *env) {
        snprintf(path, cap, "%s/%s", env, file);
        if ((f = fopen(path, "rb"))) return f;
    }
    snprintf(path, cap, "tests/ref/%s", file);
    if ((f = fopen(path, "rb"))) return f;
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            int k = snprintf(path, cap, "%s/../../tests/ref/%s", exe, file);
            if (k > 0 && (size_t)k < cap && (f = fopen(path, "rb"))) return f;
        }
    }
    snprintf(path, cap, "tests/ref/%s", file);
    return NULL;
}

/* Loads a whole reference file; returns 0, or -1 after printing why. */
static inline int ref_open(ref_file *rf, const char *file)
{
    memset(rf, 0, sizeof *rf);
    FILE *f = ref_fopen(file, rf->path, sizeof rf->path);
    if (!f) {
        fprintf(stderr, "    cannot open reference file %s (run /usr/bin/python3 tests/gen_ref.py, "
                        "or set STRIDE_REF_DIR)\n", rf->path);
        return -1;
    }
    char magic[8];
    uint32_t hdr[2];
    if (ref_read(f, magic, 8) || memcmp(magic, "STRIDREF", 8) || ref_read(f, hdr, 8) ||
        hdr[0] != 1 || hdr[1] > 100000)
        goto bad;
    rf->t = calloc(hdr[1] ? hdr[1] : 1, sizeof *rf->t);
    if (!rf->t) goto bad;
    for (uint32_t k = 0; k < hdr[1]; k++) {
        ref_tensor *t = &rf->t[k];
        uint16_t nl;
        uint8_t dt_nd[2];
        if (ref_read(f, &nl, 2) || nl >= sizeof t->name || ref_read(f, t->name, nl)) goto bad;
        t->name[nl] = 0;
        if (ref_read(f, dt_nd, 2) || dt_nd[0] > REF_F64 || dt_nd[1] > 8) goto bad;
        t->ndim = dt_nd[1];
        t->numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (ref_read(f, &t->dims[d], 8) || t->dims[d] < 0 || t->dims[d] > (1 << 28)) goto bad;
            t->numel *= (size_t)t->dims[d];
        }
        if (t->numel > (1u << 28)) goto bad;
        static const size_t esize[] = {4, 8, 1, 2, 4, 8};
        size_t disk = t->numel * esize[dt_nd[0]];
        t->dtype = dt_nd[0] == REF_F16 ? REF_F32 : dt_nd[0];
        t->data = malloc(t->numel * esize[t->dtype] + 1);
        rf->n = (int)k + 1;
        if (!t->data) goto bad;
        if (dt_nd[0] == REF_F16) {
            uint16_t *h = malloc(disk + 1);
            if (!h || ref_read(f, h, disk)) {
                free(h);
                goto bad;
            }
            for (size_t i = 0; i < t->numel; i++) ((float *)t->data)[i] = ref_half_to_float(h[i]);
            free(h);
        } else if (ref_read(f, t->data, disk)) {
            goto bad;
        }
    }
    if (fgetc(f) != EOF) goto bad;
    fclose(f);
    return 0;
bad:
    fprintf(stderr, "    reference file %s is corrupt\n", rf->path);
    fclose(f);
    ref_close(rf);
    return -1;
}

static inline const ref_tensor *ref_find(const ref_file *rf, const char *name)
{
    for (int i = 0; i < rf->n; i++)
        if (!strcmp(rf->t[i].name, name)) return &rf->t[i];
    return NULL;
}

/* A tensor by printf-style name with the given dtype. When it is missing (or of another dtype):
 * NULL if optional, otherwise the test program exits after a message (the reference files are part
 * of the repository, so a missing tensor is a broken test, not a result). */
static inline const ref_tensor *ref_lookup(const ref_file *rf, int dtype, int optional,
                                           const char *fmt, va_list ap)
{
    char name[128];
    vsnprintf(name, sizeof name, fmt, ap);
    const ref_tensor *t = ref_find(rf, name);
    if (t && t->dtype == dtype) return t;
    if (optional && !t) return NULL;
    fprintf(stderr, "    %s: no tensor %s of dtype %d\n", rf->path, name, dtype);
    exit(2);
}

#define REF_ACCESSOR(fn, ctype, dtype, optional)                                                  \
    static inline const ctype *fn(const ref_file *rf, const char *fmt, ...)                       \
        __attribute__((format(printf, 2, 3)));                                                    \
    static inline const ctype *fn(const ref_file *rf, const char *fmt, ...)                       \
    {                                                                                             \
        va_list ap;                                                                               \
        va_start(ap, fmt);                                                                        \
        const ref_tensor *t = ref_lookup(rf, dtype, optional, fmt, ap);                           \
        va_end(ap);                                                                               \
        return t ? (const ctype *)t->data : NULL;                                                 \
    }
REF_ACCESSOR(ref_f32, float, REF_F32, 0)
REF_ACCESSOR(ref_f32_opt, float, REF_F32, 1)
REF_ACCESSOR(ref_f64, double, REF_F64, 0)
REF_ACCESSOR(ref_i64, int64_t, REF_I64, 0)
REF_ACCESSOR(ref_i64_opt, int64_t, REF_I64, 1)
REF_ACCESSOR(ref_i32, int32_t, REF_I32, 0)
REF_ACCESSOR(ref_u8, uint8_t, REF_U8, 0)

/* The whole tensor (shape included), or exit as above. */
static inline const ref_tensor *ref_tensor_of(const ref_file *rf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline const ref_tensor *ref_tensor_of(const ref_file *rf, const char *fmt, ...)
{
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const ref_tensor *t = ref_find(rf, name);
    if (!t) {
        fprintf(stderr, "    %s: no tensor %s\n", rf->path, name);
        exit(2);
    }
    return t;
}

/* ------------------------------------------------------------------------------ comparisons */

typedef struct ref_diff {
    double max_abs, max_rel, use; /* use: max |d| / (atol + rtol |exp|); passes when <= 1 */
    size_t worst;                 /* index of the element with the largest use */
    size_t bad;                   /* elements over tolerance (NaN counts) */
} ref_diff;

/* Compares got[i] with exp[i] for i in [0, n), with tolerance atol_i + rtol * |exp[i]| where
 * atol_i = atol + (atol_v ? atol_v[i] : 0). Up to max_outliers elements may exceed it, provided
 * they stay within hard_atol (for results where rare elements are known to be ill-conditioned;
 * pass 0, 0 otherwise). Prints one line; returns 1 on success. */
static inline int ref_compare_budget(const char *what, const float *got, const float *exp, size_t n,
                                     double atol, const double *atol_v, double rtol,
                                     size_t max_outliers, double hard_atol)
{
    ref_diff d = {0, 0, 0, 0, 0};
    size_t hard_bad = 0;
    double emax = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(exp[i]) > emax) emax = fabs(exp[i]);
    for (size_t i = 0; i < n; i++) {
        double e = exp[i], g = got[i], a = fabs(g - e);
        double tol = atol + (atol_v ? atol_v[i] : 0) + rtol * fabs(e);
        double u = tol > 0 ? a / tol : (a > 0 ? INFINITY : 0);
        if (isnan(a)) u = INFINITY, a = INFINITY;
        if (a > d.max_abs) d.max_abs = a;
        if (fabs(e) >= 1e-3 * emax && fabs(e) > 0 && a / fabs(e) > d.max_rel) d.max_rel = a / fabs(e);
        if (u > d.use || (d.use == 0 && i == 0)) d.use = u, d.worst = i;
        if (!(u <= 1)) {
            d.bad++;
            if (!(a <= hard_atol)) hard_bad++;
        }
    }
    int ok = hard_bad == 0 && d.bad <= max_outliers;
    if (getenv("REF_HIST")) { /* diagnosis: how many differences exceed 1e-9, 1e-8, ... 1e-2 */
        size_t h[8] = {0};
        for (size_t i = 0; i < n; i++)
            for (int k = 0; k < 8; k++) h[k] += fabs((double)got[i] - exp[i]) > 1e-9 * pow(10, k);
        printf("      |d| > 1e-9 .. 1e-2: %zu %zu %zu %zu %zu %zu %zu %zu\n", h[0], h[1], h[2], h[3],
               h[4], h[5], h[6], h[7]);
    }
    char extra[64] = "";
    if (max_outliers)
        snprintf(extra, sizeof extra, " outliers=%zu (<= %zu allowed, within %.2g)", d.bad,
                 max_outliers, hard_atol);
    printf("    %-44s n=%-7zu max|d|=%.3g max rel=%.3g use=%.3g%s%s\n", what, n, d.max_abs,
           d.max_rel, d.use, extra, ok ? "" : "  <-- FAIL");
    if (!ok)
        fprintf(stderr, "    %s: %zu of %zu elements over tolerance; worst [%zu] got %.9g exp %.9g\n",
                what, d.bad, n, d.worst, (double)got[d.worst], (double)exp[d.worst]);
    fflush(stdout);
    return ok;
}

static inline int ref_compare_v(const char *what, const float *got, const float *exp, size_t n,
                                double atol, const double *atol_v, double rtol)
{
    return ref_compare_budget(what, got, exp, n, atol, atol_v, rtol, 0, 0);
}

static inline int ref_compare(const char *what, const float *got, const float *exp, size_t n,
                              double atol, double rtol)
{
    return ref_compare_v(what, got, exp, n, atol, NULL, rtol);
}

static inline double ref_max_abs(const float *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

#endif
