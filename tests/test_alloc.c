/* test_alloc.c - a training step allocates nothing (stride.h: "All memory a training step needs
 * is allocated when the model is created"), nor does an evaluation pass.
 *
 * The test counts every allocation the process makes while a step runs, on every thread: the
 * library's, OpenMP's and the C library's own. It replaces malloc, calloc, realloc,
 * aligned_alloc, posix_memalign and memalign with counting versions of glibc's, and mmap (the
 * library's large buffers) with one that counts, then calls the kernel. Under AddressSanitizer,
 * which owns malloc, it counts through the sanitizer's allocation hook instead. Each model
 * (CNN, multi-layer, 1-layer) is created and warmed up by one step at its full batch (OpenMP
 * starts its threads then), and then trained and evaluated at batch sizes 100 (evaluated 64
 * images at a time), 64, 32 (an epoch's last batch), 3 and 1 (one thread; one image by a team
 * of threads in evaluation), at 1 to 4 threads, with Adam and SGD with momentum.
 *
 * It also checks that no thread starts or ends during those steps (on Linux, by the thread ids
 * in /proc/self/task): libgomp keeps one pool of threads, sized for the last parallel region,
 * and a region with fewer threads than the one before makes the surplus threads exit, so that
 * the next larger one starts new ones. On 3 or 4 threads a CNN step used to do that once or
 * twice (and allocate a new team each time). */
#include "stride.h"

#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__linux__)
#include <dirent.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define COUNT_WITH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COUNT_WITH_ASAN 1
#endif
#endif

static volatile int counting;
static long allocations; /* while counting, on any thread */

static void counted(void)
{
    if (counting)
        __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
}

#if defined(COUNT_WITH_ASAN)
/* The sanitizers' allocation hooks (sanitizer/allocator_interface.h, which GCC does not ship). */
int __sanitizer_install_malloc_and_free_hooks(void (*on_malloc)(const volatile void *, size_t),
                                              void (*on_free)(const volatile void *));

static void on_malloc(const volatile void *p, size_t n)
{
    (void)p, (void)n;
    counted();
}

static void on_free(const volatile void *p)
{
    (void)p;
}

static int start_counting(void)
{
    return __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) ? 0 : -1;
}

#elif defined(__GLIBC__) && defined(__linux__)
#include <malloc.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* glibc's allocator under its other names (exported for exactly this). */
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void *__libc_memalign(size_t align, size_t n);
void __libc_free(void *p);

void *malloc(size_t n)
{
    counted();
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    counted();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    counted();
    return __libc_realloc(p, n);
}

void *memalign(size_t align, size_t n)
{
    counted();
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    counted();
    return __libc_memalign(align, n);
}

int posix_memalign(void **p, size_t align, size_t n)
{
    counted();
    if (align < sizeof(void *) || (align & (align - 1)))
        return 22; /* EINVAL */
    *p = __libc_memalign(align, n);
    return *p ? 0 : 12; /* ENOMEM */
}

void free(void *p)
{
    __libc_free(p);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    counted();
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

static int start_counting(void)
{
    return 0;
}

#else
static int start_counting(void)
{
    return -1; /* no way to count here */
}
#endif

/* Allocations made by fn(arg) on any thread. */
static long allocations_in(void (*fn)(void *), void *arg)
{
    __atomic_store_n(&allocations, 0, __ATOMIC_RELAXED);
    counting = 1;
    fn(arg);
    counting = 0;
    return __atomic_load_n(&allocations, __ATOMIC_RELAXED);
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* The process's threads, by id, into tids (sorted): how many, or -1 if unknown (more than
 * max, or no /proc). */
static int thread_ids(long *tids, int max)
{
#if defined(__linux__)
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.') {
            if (n == max) {
                n = -1;
                break;
            }
            tids[n++] = atol(e->d_name);
        }
    closedir(d);
    if (n > 0)
        qsort(tids, (size_t)n, sizeof *tids, cmp_long);
    return n;
#else
    (void)tids, (void)max;
    return -1;
#endif
}

enum { MAX_TIDS = 64 };

/* Waits (up to 2 s) until the process's threads stay the same for 50 ms: threads that libgomp
 * let go before (when the thread count was lowered) may still be ending. */
static void settle_threads(void)
{
    long a[MAX_TIDS], b[MAX_TIDS];
    int na = thread_ids(a, MAX_TIDS);
    for (int i = 0; i < 40 && na >= 0; i++) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        int nb = thread_ids(b, MAX_TIDS);
        if (nb < 0 || (nb == na && memcmp(a, b, sizeof(long) * na) == 0))
            return;
        na = nb;
        memcpy(a, b, sizeof(long) * nb);
    }
}

/* Runs fn(arg), counting its allocations; *same: whether the process had the same threads
 * before and after (1 where that cannot be known). */
static long allocations_and_threads(void (*fn)(void *), void *arg, int *same)
{
    long before[MAX_TIDS], after[MAX_TIDS];
    int nb = thread_ids(before, MAX_TIDS);
    long a = allocations_in(fn, arg);
    int na = thread_ids(after, MAX_TIDS);
    *same = nb < 0 || na < 0 || (na == nb && memcmp(before, after, sizeof(long) * nb) == 0);
    return a;
}

/* The counters themselves count: a malloc and a mapping are seen. */
static void allocate_some(void *arg)
{
    (void)arg;
    void *volatile p = malloc(100);
    free(p);
#if !defined(COUNT_WITH_ASAN) && defined(__GLIBC__)
    void *m = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m != MAP_FAILED)
        munmap(m, 1 << 16);
#endif
}

typedef struct job {
    st_model *m;
    st_optim *o;
    const float *x;
    const uint8_t *y;
    int n, steps, ok;
} job;

static void train_steps(void *arg)
{
    job *j = arg;
    st_error err;
    for (int s = 0; s < j->steps; s++) {
        float loss;
        if (st_model_forward(j->m, j->x, j->n, NULL, &err) != 0 ||
            st_model_loss(j->m, j->y, &loss, &err) != 0 || st_model_backward(j->m, &err) != 0) {
            j->ok = 0;
            return;
        }
        st_optim_step_zero_grad(j->o);
    }
}

static void eval_passes(void *arg)
{
    job *j = arg;
    st_error err;
    for (int s = 0; s < j->steps; s++) {
        const float *logits;
        if (st_model_forward(j->m, j->x, j->n, &logits, &err) != 0) {
            j->ok = 0;
            return;
        }
    }
}

static void test_counters_count(void)
{
    CHECKF(start_counting() == 0, "this build cannot count allocations (glibc or ASan needed)");
#if defined(COUNT_WITH_ASAN) || !defined(__GLIBC__)
    CHECK(allocations_in(allocate_some, NULL) >= 1);
#else
    CHECK(allocations_in(allocate_some, NULL) >= 2);
#endif
}

static void check_model(st_model_kind kind, int threads, int sgd)
{
    enum { B = 100 }; /* (evaluation goes through batches over 64 in chunks of 64 images) */
    static float x[B * 784];
    static uint8_t y[B];
    for (int i = 0; i < B * 784; i++)
        x[i] = (float)((i * 37) % 256) / 255.0f;
    for (int i = 0; i < B; i++)
        y[i] = (uint8_t)(i * 7 % 10);
    st_set_threads(threads);
    st_error err = {{0}};
    st_optim_config cfg = sgd ? st_sgd_config(0.01, 0.9) : st_adam_config(1e-3);
    st_model *m = st_model_create(kind, B, 3, &err);
    st_optim *o = m ? st_optim_create(m, &cfg, &err) : NULL;
    CHECKF(o, "%s", err.msg);
    if (o) {
        job j = {m, o, x, y, B, 1, 1};
        st_model_set_training(m, 1);
        train_steps(&j); /* warm-up: OpenMP's threads start */
        settle_threads();
        const int sizes[5] = {B, 64, 32, 3, 1};
        for (int t = 0; t < 5; t++) {
            j.n = sizes[t];
            j.steps = 2;
            int same;
            st_model_set_training(m, 1);
            long a = allocations_and_threads(train_steps, &j, &same);
            CHECKF(a == 0 && j.ok, "%s, %s, %d thread(s), batch %d: %ld allocations in 2 steps",
                   st_model_kind_name(kind), sgd ? "SGD" : "Adam", threads, sizes[t], a);
            CHECKF(same, "%s, %d thread(s), batch %d: threads started or ended in 2 steps",
                   st_model_kind_name(kind), threads, sizes[t]);
            st_model_set_training(m, 0);
            a = allocations_and_threads(eval_passes, &j, &same);
            CHECKF(a == 0 && j.ok, "%s, %d thread(s), batch %d: %ld allocations in 2 evaluations",
                   st_model_kind_name(kind), threads, sizes[t], a);
            CHECKF(same, "%s, %d thread(s), batch %d: threads started or ended in 2 evaluations",
                   st_model_kind_name(kind), threads, sizes[t]);
        }
    }
    st_optim_free(o);
    st_model_free(m);
    st_set_threads(0);
}

static void test_cnn_steps(void)
{
    check_model(ST_MODEL_CNN, 1, 0);
    check_model(ST_MODEL_CNN, 2, 0);
    check_model(ST_MODEL_CNN, 3, 1);
    check_model(ST_MODEL_CNN, 4, 0);
}

static void test_mlp_steps(void)
{
    check_model(ST_MODEL_MLP, 1, 0);
    check_model(ST_MODEL_MLP, 2, 1);
    check_model(ST_MODEL_MLP, 3, 0);
    check_model(ST_MODEL_MLP, 4, 1);
}

static void test_linear_steps(void)
{
    check_model(ST_MODEL_LINEAR, 1, 1);
    check_model(ST_MODEL_LINEAR, 2, 0);
    check_model(ST_MODEL_LINEAR, 4, 1);
}

int main(void)
{
    RUN(test_counters_count);
    RUN(test_cnn_steps);
    RUN(test_mlp_steps);
    RUN(test_linear_steps);
    return CHECK_DONE();
}
