/* cpu.c - thread count and run-time choice of the kernel level (AVX-512F, AVX2+FMA or portable).
 *
 * The level is detected once, on first use, with __builtin_cpu_supports (which also checks that
 * the OS saves the vector registers), and may be lowered with STRIDE_KERNEL=portable|avx2|avx512
 * to test the fallbacks. The thread count defaults to OMP_NUM_THREADS, else to the CPUs this
 * process may run on (omp_get_num_procs).
 */
#include "gemm.h"
#include "internal.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_int g_threads;         /* 0: default (omp_get_num_procs) */
static atomic_int g_hw_level = -1;   /* what the CPU supports; -1: not detected yet */
static atomic_int g_level = -1;      /* level in use; -1: not chosen yet */

void st_set_threads(int n)
{
    atomic_store(&g_threads, n > ST_MAX_THREADS ? ST_MAX_THREADS : n > 0 ? n : 0);
    /* so that other OpenMP regions of the library (and the program) follow the same setting */
    omp_set_num_threads(st_get_threads());
}

/* A per-thread cap on st_get_threads (0: none): small batches run on the calling thread alone. */
static _Thread_local int tl_thread_cap;

int st_threads_cap(int n)
{
    int old = tl_thread_cap;
    tl_thread_cap = n;
    return old;
}

int st_get_threads(void)
{
    if (tl_thread_cap > 0)
        return tl_thread_cap;
    return st_region_threads();
}

/* The default thread count, read once: OMP_NUM_THREADS where it starts with a number from 1 to
 * ST_MAX_THREADS (its first level: "4,2" is 4), as OpenMP's runtime and PyTorch read it; else
 * every CPU this process may run on. */
static int default_threads(void)
{
    static atomic_int cached; /* 0: not read yet */
    int n = atomic_load(&cached);
    if (n > 0)
        return n;
    const char *env = getenv("OMP_NUM_THREADS");
    char *end = NULL;
    long v = env ? strtol(env, &end, 10) : 0;
    if (env && end != env && v >= 1 && v <= ST_MAX_THREADS && (*end == '\0' || *end == ','))
        n = (int)v;
    else
        n = omp_get_num_procs();
    if (n < 1)
        n = 1;
    if (n > ST_MAX_THREADS)
        n = ST_MAX_THREADS;
    atomic_store(&cached, n);
    return n;
}

int st_region_threads(void)
{
    int n = atomic_load(&g_threads);
    return n > 0 ? n : default_threads();
}

static int detect_hw_level(void)
{
#if defined(ST_HAVE_X86_KERNELS)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return ST_CPU_PORTABLE;
#if defined(ST_EMULATE_AVX512) /* (a test build: gemm_avx512.c) */
    return ST_CPU_AVX512;
#endif
    if (__builtin_cpu_supports("avx512f"))
        return ST_CPU_AVX512;
    return ST_CPU_AVX2;
#else
    return ST_CPU_PORTABLE;
#endif
}

int st_cpu_max_level(void)
{
    int hw = atomic_load(&g_hw_level);
    if (hw < 0) {
        hw = detect_hw_level(); /* idempotent: a race stores the same value twice */
        atomic_store(&g_hw_level, hw);
    }
    return hw;
}

/* The automatic choice: the CPU's level, lowered by STRIDE_KERNEL. */
static int auto_level(void)
{
    int level = st_cpu_max_level();
    const char *env = getenv("STRIDE_KERNEL");
    int want = level;
    if (env) {
        if (strcmp(env, "portable") == 0)
            want = ST_CPU_PORTABLE;
        else if (strcmp(env, "avx2") == 0)
            want = ST_CPU_AVX2;
        else if (strcmp(env, "avx512") == 0)
            want = ST_CPU_AVX512;
    }
    return want < level ? want : level;
}

int st_cpu_level(void)
{
    int level = atomic_load(&g_level);
    if (level < 0) {
        level = auto_level();
        atomic_store(&g_level, level);
    }
    return level;
}

void st_cpu_force_level(int level)
{
    if (level < 0) {
        atomic_store(&g_level, auto_level());
        return;
    }
    int hw = st_cpu_max_level();
    atomic_store(&g_level, level < hw ? level : hw);
}

const char *st_kernel_name(void)
{
    switch (st_cpu_level()) {
    case ST_CPU_AVX512:
        return "avx512";
    case ST_CPU_AVX2:
        return "avx2";
    default:
        return "portable";
    }
}
