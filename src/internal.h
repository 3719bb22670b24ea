/* internal.h - declarations shared by the library's source files (not installed). */
#ifndef STRIDE_INTERNAL_H
#define STRIDE_INTERNAL_H

#include "stride.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__GNUC__)
#define ST_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define ST_PRINTF(a, b)
#endif

/* Element-wise loops built twice, for AVX2 and for the baseline, chosen at run time by the CPU.
 * AVX2 without FMA: the same operations, rounded the same way, so the results are identical. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__clang__)
#define ST_VEC_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ST_VEC_CLONES
#endif

/* A shuffle of two 4-lane vectors by constant lane numbers (0-3: a's lanes, 4-7: b's). GCC from
 * 12 and clang have __builtin_shufflevector; older GCC only __builtin_shuffle. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define ST_SHUFFLE4(a, b, i, j, k, l) __builtin_shufflevector(a, b, i, j, k, l)
#else
#define ST_SHUFFLE4(a, b, i, j, k, l) __builtin_shuffle(a, b, (__typeof__((a) > (a))){i, j, k, l})
#endif

/* OpenMP parallel regions, all of one size, that are not entered when one thread would run them
 * (NT <= 1, or inside another region): the work then runs on the calling thread.
 *
 * Every region the library enters has st_region_threads() threads (the count set), however
 * many of them work in it (NT, at most that many): libgomp keeps one pool of threads and one
 * team for the last region's size, and a region of another size allocates a new team; one with
 * fewer threads than the region before also makes the surplus threads exit, so that the next
 * larger region starts new ones (on 4 threads a CNN step did that twice). A region of one thread
 * still costs its start and a team. A training step and an evaluation pass allocate nothing
 * and start no thread (tests/test_alloc.c).
 *   ST_PARALLEL(NT, CALL): CALL, a statement, run by each of min(NT, team) threads, with the ints
 *     `part` (the thread's number) and `parts` (how many run it) in scope; the others wait at
 *     the region's end;
 *   ST_PARALLEL_FOR(NT, CHUNK, I, N, CALL): for (long I = 0; I < N; I++) CALL, CHUNK iterations
 *     at a time handed to whichever thread is free (a dynamic schedule; with fewer iterations
 *     than threads, some get none).
 * Which thread runs what must never change a value (the callers' loops write disjoint parts).
 * Use in files that include <omp.h>. */
int st_region_threads(void); /* cpu.c: the thread count set, whatever the thread's cap */
#define ST_PARALLEL(NT, CALL)                                                                     \
    do {                                                                                          \
        const int st_nt_ = (NT), st_width_ = st_region_threads();                                 \
        if (st_nt_ > 1 && st_width_ > 1 && !omp_in_parallel()) {                                  \
            _Pragma("omp parallel num_threads(st_width_)")                                        \
            {                                                                                     \
                const int part = omp_get_thread_num();                                            \
                const int parts = st_nt_ < omp_get_num_threads() ? st_nt_ : omp_get_num_threads(); \
                if (part < parts)                                                                 \
                    CALL;                                                                         \
            }                                                                                     \
        } else {                                                                                  \
            const int part = 0, parts = 1;                                                        \
            (void)part, (void)parts;                                                              \
            CALL;                                                                                 \
        }                                                                                         \
    } while (0)

#define ST_PARALLEL_FOR(NT, CHUNK, I, N, CALL)                                                    \
    do {                                                                                          \
        const int st_nt_ = (NT), st_chunk_ = (CHUNK), st_width_ = st_region_threads();            \
        const long st_n_ = (N);                                                                   \
        if (st_nt_ > 1 && st_width_ > 1 && st_n_ > 1 && !omp_in_parallel()) {                     \
            _Pragma("omp parallel for schedule(dynamic, st_chunk_) num_threads(st_width_)")       \
            for (long I = 0; I < st_n_; I++)                                                      \
                CALL;                                                                             \
        } else {                                                                                  \
            for (long I = 0; I < st_n_; I++)                                                      \
                CALL;                                                                             \
        }                                                                                         \
    } while (0)

/* dy where a ReLU passed its input (out > 0), else 0: the ReLU's backward, without a branch so that
 * the loops around it vectorise. */
static inline float st_relu_mask(float dy, float out)
{
    uint32_t bits; /* dy & (all ones or zero) */
    memcpy(&bits, &dy, sizeof bits);
    bits &= (uint32_t) - (int32_t)(out > 0.0f);
    memcpy(&dy, &bits, sizeof dy);
    return dy;
}

/* ReLU, max(v, 0), with NaN kept (PyTorch's rule); branch-free, so the loops around it
 * vectorise. */
static inline float st_relu(float v)
{
    return v > 0.0f ? v : (v != v ? v : 0.0f);
}

/* Batch norm's output for one element, (x - mean) * invstd * gamma + beta, in float: the forward
 * pass and the backward passes that recompute the fused ReLU's mask from x use this one sequence
 * of operations (no contraction to FMA under -std=c11), so they agree to the bit. */
static inline float st_bn_out(float x, float mean, float invstd, float gamma, float beta)
{
    return (x - mean) * invstd * gamma + beta;
}

/* Batch norm's input gradient of one element (training mode),
 *     dx = (dy - mean(dy) - xhat * mean(dy * xhat)) * invstd * gamma,  xhat = (x - mean) * invstd,
 * with the channel's mdy = mean(dy), mdyx = mean(dy * xhat), scale = invstd * gamma (summed in
 * double, rounded to float); element-wise in float, as PyTorch does (8 lanes per AVX2 vector). */
static inline float st_bn_dx(float dy, float x, float mean, float invstd, float mdy, float mdyx,
                             float scale)
{
    float xhat = (x - mean) * invstd;
    return (dy - mdy - xhat * mdyx) * scale;
}

/* The initializer of a vector of 4 doubles from a vector of 4 floats, lane by lane: GCC 12
 * lowers __builtin_convertvector to that type as two 128-bit conversions (the upper half through
 * memory); this form becomes a single 256-bit vcvtps2pd where AVX is enabled. */
#define ST_WIDEN4(v) {(double)(v)[0], (double)(v)[1], (double)(v)[2], (double)(v)[3]}

/* Per-channel sums over a batch read image by image (each image's planes in order, one stream)
 * keep this many channels' lane sums at once. */
#define ST_CHAN_BLOCK 64

/* Part `part` of `parts` nearly equal consecutive parts of [0, n): [*lo, *hi). */
static inline void st_part_range(int n, int part, int parts, int *lo, int *hi)
{
    *lo = (int)((long)n * part / parts);
    *hi = (int)((long)n * (part + 1) / parts);
}

/* Sum of 8 partial sums (lanes) in a fixed tree: the reductions that keep 8 interleaved lanes to
 * vectorise use it, so their results do not depend on the number of threads. */
static inline double st_sum8(const double *a)
{
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* acc[k % 8] += x[k] for k < n, in double: the 8 interleaved lanes that st_sum8 then adds
 * (vectorisable, and the same whatever the number of threads). */
static inline void st_add_lanes8(double *restrict acc, const float *restrict x, int n)
{
    int k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += x[k + j];
    for (; k < n; k++)
        acc[k & 7] += x[k];
}

/* Writes a formatted message into err (if not NULL) and returns -1, so that
 * callers can write `return st_seterr(err, "...", ...);`. */
int st_seterr(st_error *err, const char *fmt, ...) ST_PRINTF(2, 3);

/* Defined in builds with AddressSanitizer, GCC's or clang's (the fuzz targets'). */
#if defined(__SANITIZE_ADDRESS__)
#define ST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ST_ASAN 1
#endif
#endif

/* The large buffers of models, optimisers and workspaces (memory.c): n * size zero bytes, as
 * calloc's, on huge pages where the system offers them; NULL if out of memory. Released only by
 * st_buffer_free (NULL: nothing). */
void *st_buffer_alloc(size_t n, size_t size);
void st_buffer_free(void *p);

/* xoshiro256** step (the same as st_rng_next), inlined for the kernels' inner loops. */
static inline uint64_t st_rng_next_inline(st_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Dropout masks (layers.c and kernels.c draw the same ones). Each call takes one 64-bit key from
 * the model's generator; element i belongs to block i / ST_DROPOUT_BLOCK, whose own xoshiro256**
 * generator is seeded from (key, block) through splitmix64, and each of its 64-bit draws decides
 * two elements by 24-bit fractions (bits 63..40, then bits 39..16): dropped when below p. Blocks
 * are independent, so they can be drawn in parallel, with the same masks for any thread count. */
#define ST_DROPOUT_BLOCK 4096

/* Elements [0, n) of block `block` (n <= ST_DROPOUT_BLOCK): mask = 0 or scale, out = in * mask.
 * threshold = ceil(p * 2^24). No branch on the random values. */
static inline void st_dropout_block(float *restrict out, float *restrict mask,
                                    const float *restrict in, size_t n, uint64_t key,
                                    uint64_t block, uint64_t threshold, float scale)
{
    st_rng g;
    st_rng_seed(&g, key ^ (block * 0xd1b54a32d192ed03ULL));
    uint32_t sb;
    memcpy(&sb, &scale, sizeof sb);
    for (size_t i = 0; i < n; i += 2) {
        uint64_t r = st_rng_next_inline(&g);
        uint32_t k0 = sb & ((uint32_t)0 - (uint32_t)((r >> 40) >= threshold));
        uint32_t k1 = sb & ((uint32_t)0 - (uint32_t)(((r >> 16) & 0xffffff) >= threshold));
        float m0, m1;
        memcpy(&m0, &k0, sizeof m0);
        memcpy(&m1, &k1, sizeof m1);
        mask[i] = m0;
        out[i] = in[i] * m0;
        if (i + 1 < n) {
            mask[i + 1] = m1;
            out[i + 1] = in[i + 1] * m1;
        }
    }
}

static inline uint64_t st_dropout_threshold(float p)
{
    double t = ceil((double)p * 16777216.0);
    return t < 0.0 ? 0 : (uint64_t)t;
}

#endif
