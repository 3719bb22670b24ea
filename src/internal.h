/* internal.h - declarations shared by the library's source files (not installed). */
#ifndef STRIDE_INTERNAL_H
#define STRIDE_INTERNAL_H

#include "stride.h"

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define ST_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define ST_PRINTF(a, b)
#endif

/* Writes a formatted message into err (if not NULL) and returns -1, so that
 * callers can write `return st_seterr(err, "...", ...);`. */
int st_seterr(st_error *err, const char *fmt, ...) ST_PRINTF(2, 3);

#endif
