/* check.h - a minimal test harness.
 *
 * Each test binary defines test functions and runs them with RUN(fn). A test fails when a CHECK
 * fails; the binary prints one line per test ("ok"/"FAIL") and, last, "N passed, N failed", and
 * exits non-zero if any failed. tests/run.sh adds up the counts of all binaries. */
#ifndef STRIDE_CHECK_H
#define STRIDE_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failed_in_test;
static int check_passed_total, check_failed_total;

#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "    %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);          \
            check_failed_in_test = 1;                                                             \
        }                                                                                         \
    } while (0)

#define CHECKF(cond, ...)                                                                         \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "    %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
            check_failed_in_test = 1;                                                             \
        }                                                                                         \
    } while (0)

#define RUN(fn)                                                                                   \
    do {                                                                                          \
        check_failed_in_test = 0;                                                                 \
        fn();                                                                                     \
        if (check_failed_in_test) {                                                               \
            check_failed_total++;                                                                 \
            printf("FAIL %s\n", #fn);                                                             \
        } else {                                                                                  \
            check_passed_total++;                                                                 \
            printf("ok   %s\n", #fn);                                                             \
        }                                                                                         \
        fflush(stdout);                                                                           \
    } while (0)

#define CHECK_DONE()                                                                              \
    (printf("%d passed, %d failed\n", check_passed_total, check_failed_total),                   \
     check_failed_total ? 1 : 0)

#endif
