/* gemm_bench.c - GFLOP/s of Stride's SGEMM on the shapes its layers use (not a test).
 *
 * Build by hand from the repository root:
 *   gcc -std=c11 -D_GNU_SOURCE -O2 -fopenmp -Iinclude -Isrc bench/gemm_bench.c src/gemm.c \
 *       src/gemm_avx2.c src/gemm_avx512.c src/cpu.c src/error.c -lm -o /tmp/gemm_bench
 *   /tmp/gemm_bench [-t threads] [-l level] [-s seconds] [-a] [-1 M N K NN|NT|TN|TT]
 *
 * Default: single-threaded st_sgemm_st at the CPU's kernel level, ~0.05 s per shape (best of
 * 100 short timed batches, in CPU time of the thread, so that other programs sharing the cores
 * disturb the figures less). -t N times st_sgemm with N threads instead (wall time); -l 0|1|2
 * forces the portable / AVX2 / AVX-512 kernels; -a also runs big square sizes; -1 times one
 * shape. Each multiply-add counts as 2 flops; operands are warm in cache, as inside a layer.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include "gemm.h"
#include "stride.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct shape {
    int M, N, K, ta, tb;
    const char *what;
} shape;

static const shape shapes[] = {
    {16, 784, 25, 0, 0, "conv1 fwd  W*col"},
    {32, 196, 144, 0, 0, "conv2 fwd  W*col"},
    {64, 49, 288, 0, 0, "conv3 fwd  W*col"},
    {16, 25, 784, 0, 1, "conv1 dW   dY*col^T"},
    {32, 144, 196, 0, 1, "conv2 dW   dY*col^T"},
    {64, 288, 49, 0, 1, "conv3 dW   dY*col^T"},
    {16, 25, 64 * 784, 0, 1, "conv1 dW   batched K=64*784"},
    {32, 144, 64 * 196, 0, 1, "conv2 dW   batched K=64*196"},
    {64, 288, 64 * 49, 0, 1, "conv3 dW   batched K=64*49"},
    {16, 4 * 784, 25, 0, 0, "conv1 fwd  4 images"},
    {32, 4 * 196, 144, 0, 0, "conv2 fwd  4 images"},
    {64, 4 * 49, 288, 0, 0, "conv3 fwd  4 images"},
    {16, 25, 4 * 784, 0, 1, "conv1 dW   4 images"},
    {32, 144, 4 * 196, 0, 1, "conv2 dW   4 images"},
    {64, 288, 4 * 49, 0, 1, "conv3 dW   4 images"},
    {25, 4 * 784, 16, 1, 0, "conv1 dcol 4 images"},
    {144, 4 * 196, 32, 1, 0, "conv2 dcol 4 images"},
    {288, 4 * 49, 64, 1, 0, "conv3 dcol 4 images"},
    {25, 784, 16, 1, 0, "conv1 dcol W^T*dY"},
    {144, 196, 32, 1, 0, "conv2 dcol W^T*dY"},
    {288, 49, 64, 1, 0, "conv3 dcol W^T*dY"},
    {64, 128, 3136, 0, 1, "fc1 fwd    x*W^T"},
    {64, 512, 784, 0, 1, "mlp1 fwd   x*W^T"},
    {64, 256, 512, 0, 1, "mlp2 fwd   x*W^T"},
    {64, 10, 256, 0, 1, "mlp3 fwd   x*W^T"},
    {64, 10, 784, 0, 1, "linear fwd x*W^T"},
    {128, 3136, 64, 1, 0, "fc1 dW     dout^T*x"},
    {512, 784, 64, 1, 0, "mlp1 dW    dout^T*x"},
    {256, 512, 64, 1, 0, "mlp2 dW    dout^T*x"},
    {10, 256, 64, 1, 0, "mlp3 dW    dout^T*x"},
    {10, 784, 64, 1, 0, "linear dW  dout^T*x"},
    {64, 3136, 128, 0, 0, "fc1 dx     dout*W"},
    {64, 784, 512, 0, 0, "mlp1 dx    dout*W"},
    {64, 512, 256, 0, 0, "mlp2 dx    dout*W"},
    {64, 256, 10, 0, 0, "mlp3 dx    dout*W"},
};

static const shape squares[] = {
    {256, 256, 256, 0, 0, "square"},    {512, 512, 512, 0, 0, "square"},
    {1024, 1024, 1024, 0, 0, "square"}, {1024, 1024, 1024, 1, 0, "square TN"},
    {1024, 1024, 1024, 0, 1, "square NT"},
};

static int threads = 0; /* 0: st_sgemm_st */
static double seconds = 0.05;

/* Single-threaded runs are timed in CPU time of the calling thread, so that other programs
 * sharing the cores do not distort them; multi-threaded runs in wall time. */
static double now(void)
{
    if (threads)
        return omp_get_wtime();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double bench(const shape *s)
{
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N, ldc = s->N;
    size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, nc = (size_t)s->M * s->N;
    float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb);
    float *C = malloc(sizeof(float) * nc);
    for (size_t i = 0; i < na; i++)
        A[i] = (float)(i % 7) * 0.25f - 0.75f;
    for (size_t i = 0; i < nb; i++)
        B[i] = (float)(i % 5) * 0.25f - 0.5f;
    memset(C, 0, sizeof(float) * nc);
    const double flops = 2.0 * s->M * s->N * s->K;
    /* calibrate a batch of calls taking ~seconds/100, then keep the best of 100 batches (the
     * least disturbed by whatever else runs on the machine) */
    long reps = 1;
    for (;;) {
        double t0 = now();
        for (long r = 0; r < reps; r++) {
            if (threads)
                st_sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
            else
                st_sgemm_st(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
        }
        if (now() - t0 > seconds / 100)
            break;
        reps *= 2;
    }
    double best = 1e30;
    for (int round = 0; round < 100; round++) {
        double t0 = now();
        for (long r = 0; r < reps; r++) {
            if (threads)
                st_sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
            else
                st_sgemm_st(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
        }
        double dt = (now() - t0) / (double)reps;
        if (dt < best)
            best = dt;
    }
    free(A);
    free(B);
    free(C);
    return flops / best * 1e-9;
}

static void run(const shape *s)
{
    double g = bench(s);
    printf("  %-28s M=%4d N=%4d K=%5d %c%c  %7.1f GFLOP/s\n", s->what, s->M, s->N, s->K,
           s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', g);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int all = 0;
    shape one = {0, 0, 0, 0, 0, NULL};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "-l") == 0 && i + 1 < argc)
            st_cpu_force_level(atoi(argv[++i]));
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "-a") == 0)
            all = 1;
        else if (strcmp(argv[i], "-1") == 0 && i + 4 < argc) { /* one shape: -1 M N K NT */
            one.M = atoi(argv[i + 1]);
            one.N = atoi(argv[i + 2]);
            one.K = atoi(argv[i + 3]);
            one.ta = argv[i + 4][0] == 'T';
            one.tb = argv[i + 4][1] == 'T';
            one.what = "custom";
            i += 4;
        } else {
            fprintf(stderr, "usage: %s [-t threads] [-l level] [-s seconds] [-a] [-1 M N K NN]\n",
                    argv[0]);
            return 2;
        }
    }
    if (threads)
        st_set_threads(threads);
    if (one.what) {
        run(&one);
        return 0;
    }
    printf("SGEMM, kernel %s, %s\n", st_kernel_name(),
           threads ? "st_sgemm (threads set by -t)" : "st_sgemm_st (1 thread)");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        run(&shapes[i]);
    if (all)
        for (size_t i = 0; i < sizeof squares / sizeof squares[0]; i++)
            run(&squares[i]);
    return 0;
}
