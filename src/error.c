/* error.c - error reporting: library functions fill an st_error, never print or exit. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

int st_seterr(st_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}
