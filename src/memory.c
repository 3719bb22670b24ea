/* memory.c - the large buffers of models, optimisers and workspaces.
 *
 * A training step streams 20-30 MB of activations, gradients and workspaces through the caches,
 * and with 4 KiB pages the address translations of those streams miss the TLB: on Linux, a
 * buffer of 2 MiB or more is therefore mapped on its own, starting on a 2 MiB boundary, and each
 * whole 2 MiB of it is offered to transparent huge pages (madvise MADV_HUGEPAGE, a hint the
 * kernel may decline; the partial last stretch keeps small pages, so nothing past the buffer is
 * backed). Like calloc's, the pages are zero and stay unbacked until first written, but a huge
 * page is backed whole at its first write: parts of a buffer that are never written cost memory
 * if they share a 2 MiB stretch with parts that are (the conv workspace, sized for im2col, and
 * the gradient buffers, sized for the reference kernels too: about 2.4 MB of the CNN's training
 * peak).
 * Builds with AddressSanitizer keep calloc, whose bounds it checks. */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>

#if defined(__linux__) && !defined(ST_ASAN)
#include <sys/mman.h>
#include <unistd.h>
#if defined(MADV_HUGEPAGE)
#define ST_HUGE_PAGES 1
#endif
#endif

#define HUGE_PAGE ((size_t)2 << 20)
#define HEAD_SIZE ((size_t)64) /* before a calloc'd buffer: its head (calloc's alignment kept) */

/* Just before every buffer: where its mapping starts and how long it is (base NULL: calloc'd,
 * the allocation starting HEAD_SIZE bytes before the buffer). */
typedef struct buffer_head {
    void *base;
    size_t len;
} buffer_head;

void *st_buffer_alloc(size_t n, size_t size)
{
    if (size && n > (SIZE_MAX - 2 * HUGE_PAGE) / size)
        return NULL;
    size_t bytes = n * size;
#if defined(ST_HUGE_PAGES)
    if (bytes >= HUGE_PAGE) {
        long ps = sysconf(_SC_PAGESIZE);
        size_t page = ps > 0 ? (size_t)ps : 4096, len = bytes + HUGE_PAGE + page;
        char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base != MAP_FAILED) {
            /* at least a page before the buffer for its head */
            uintptr_t at = ((uintptr_t)base + page + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
            char *p = (char *)at;
            (void)madvise(p, bytes & ~(HUGE_PAGE - 1), MADV_HUGEPAGE);
            buffer_head *h = (buffer_head *)p - 1;
            h->base = base;
            h->len = len;
            return p;
        }
    }
#endif
    char *q = calloc(1, bytes + HEAD_SIZE);
    if (!q)
        return NULL;
    ((buffer_head *)(q + HEAD_SIZE) - 1)->base = NULL;
    return q + HEAD_SIZE;
}

void st_buffer_free(void *p)
{
    if (!p)
        return;
#if defined(ST_HUGE_PAGES)
    buffer_head *h = (buffer_head *)p - 1;
    if (h->base) {
        munmap(h->base, h->len);
        return;
    }
#endif
    free((char *)p - HEAD_SIZE);
}
