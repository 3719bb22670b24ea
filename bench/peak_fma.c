/* peak_fma.c - measures this machine's float32 FMA peak in GFLOP/s (not a test).
 *
 * Build by hand:  gcc -O2 -fopenmp bench/peak_fma.c -o /tmp/peak_fma && /tmp/peak_fma [seconds]
 *
 * Each thread runs many independent FMA chains held in vector registers (enough chains to hide
 * the FMA latency on two FMA pipes: 12 for AVX2/ymm, 24 for AVX-512/zmm), so the loop is bound
 * only by FMA throughput. One FMA on a W-wide vector counts as 2*W flops. The widest vector unit
 * the CPU supports is used (AVX-512F, else AVX2+FMA, else a scalar C loop for reference).
 * It prints the result with 1 thread and with all threads (OpenMP): first the sum over threads
 * of flops / CPU time of the thread (the hardware's rate, which other programs sharing the cores
 * do not distort; equal to the wall-time figure on an idle machine), then flops / wall time.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ITERS 1000000L /* FMA rounds per timed call */

/* Returns the flops done; *sink receives a value that depends on every chain. */
__attribute__((target("avx2,fma"), noinline)) static double run_avx2(long rounds, float *sink)
{
    /* distinct start values, or the compiler merges the identical chains into one */
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = _mm256_set1_ps(2.0f), a2 = _mm256_set1_ps(3.0f);
    __m256 a3 = _mm256_set1_ps(4.0f), a4 = _mm256_set1_ps(5.0f), a5 = _mm256_set1_ps(6.0f);
    __m256 a6 = _mm256_set1_ps(7.0f), a7 = _mm256_set1_ps(8.0f), a8 = _mm256_set1_ps(9.0f);
    __m256 a9 = _mm256_set1_ps(10.0f), a10 = _mm256_set1_ps(11.0f), a11 = _mm256_set1_ps(12.0f);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
    for (long r = 0; r < rounds; r++) {
        a0 = _mm256_fmadd_ps(a0, m, c);   a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c);   a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c);   a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c);   a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c);   a9 = _mm256_fmadd_ps(a9, m, c);
        a10 = _mm256_fmadd_ps(a10, m, c); a11 = _mm256_fmadd_ps(a11, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    *sink = out[0];
    return (double)rounds * 12 * 8 * 2;
}

#define FMA24(OP)                                                                                 \
    OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11) OP(12) OP(13) OP(14) \
        OP(15) OP(16) OP(17) OP(18) OP(19) OP(20) OP(21) OP(22) OP(23)

__attribute__((target("avx512f"), noinline)) static double run_avx512(long rounds, float *sink)
{
#define DECL(i) __m512 a##i = _mm512_set1_ps(1.0f + (float)(i));
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, m, c);
#define SUM(i) s = _mm512_add_ps(s, a##i);
    FMA24(DECL)
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
    for (long r = 0; r < rounds; r++) {
        FMA24(STEP)
    }
    __m512 s = _mm512_setzero_ps();
    FMA24(SUM)
    *sink = _mm512_reduce_add_ps(s);
    return (double)rounds * 24 * 16 * 2;
#undef DECL
#undef STEP
#undef SUM
}

__attribute__((noinline)) static double run_scalar(long rounds, float *sink)
{
    float a[8] = {1, 2, 3, 4, 5, 6, 7, 8}; /* may be vectorised by the compiler */
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < 8; i++)
            a[i] = a[i] * 0.999999f + 1e-6f;
    *sink = a[0] + a[7];
    return (double)rounds * 8 * 2;
}

typedef double (*run_fn)(long, float *);

/* CPU time of the calling thread: unlike wall time, it does not count the time other programs
 * on a shared machine take the core away. */
static double thread_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs fn on `threads` threads for about `seconds` each (best of 5 rounds). *per_cpu gets the sum
 * over threads of flops / thread CPU time (the rate while running); returns flops / wall time. */
static double measure(run_fn fn, int threads, double seconds, double *per_cpu)
{
    double best_wall = 0, best_cpu = 0;
    long rounds = ITERS / 10;
    /* calibrate: grow the round count until one call takes ~seconds/5 */
    for (;;) {
        float sink;
        double t0 = thread_cpu_seconds();
        fn(rounds, &sink);
        if (thread_cpu_seconds() - t0 > seconds / 5 || rounds > (1L << 40))
            break;
        rounds *= 2;
    }
    for (int rep = 0; rep < 5; rep++) {
        double flops = 0, rate = 0;
        double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : flops, rate)
        {
            float sink;
            double c0 = thread_cpu_seconds();
            double f = fn(rounds, &sink);
            rate += f / (thread_cpu_seconds() - c0);
            flops += f;
            if (sink == 12345.0f) /* keep the result alive */
                printf("%g\n", sink);
        }
        double dt = omp_get_wtime() - t0;
        if (flops / dt > best_wall)
            best_wall = flops / dt;
        if (rate > best_cpu)
            best_cpu = rate;
    }
    *per_cpu = best_cpu * 1e-9;
    return best_wall * 1e-9;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.5;
    __builtin_cpu_init();
    run_fn fn = run_scalar;
    const char *name = "scalar C";
    if (__builtin_cpu_supports("avx512f")) {
        fn = run_avx512;
        name = "AVX-512F (zmm FMA)";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        fn = run_avx2;
        name = "AVX2 + FMA (ymm FMA)";
    }
    int procs = omp_get_num_procs();
    double cpu1, cpun;
    double wall1 = measure(fn, 1, seconds, &cpu1);
    double walln = measure(fn, procs, seconds, &cpun);
    /* bench/run parses these lines: the first number of each is the peak */
    printf("fp32 FMA peak, %s\n", name);
    printf("  1 thread : %7.1f GFLOP/s  (per wall time: %.1f)\n", cpu1, wall1);
    printf("  %d threads: %7.1f GFLOP/s  (per wall time: %.1f)\n", procs, cpun, walln);
    return 0;
}
