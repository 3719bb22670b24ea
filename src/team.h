/* team.h - a team of threads that stays together through a whole forward pass.
 *
 * Evaluating one image, each layer is a few microseconds of work: starting a parallel region
 * per layer (about 1.5 us here) costs what a second thread saves. A team instead enters one
 * region for the whole network, which it runs as a sequence of phases (a layer, or a step of
 * one), each cut into items. Members take items as they come free, from one counter of tickets
 * for the whole pass; before running an item of a phase, a member waits until every item of the
 * phases before it is finished. No member ever waits for another to arrive, only for items
 * being run: on a shared machine, where a core can be taken away for a while, the others carry
 * on with the rest. Which member runs an item never changes how it is computed, so results are
 * the same to the bit whatever the team's size.
 *
 *     for (int it; st_team_item(me, n, &it);)
 *         ...item it of the phase's n...
 *     st_team_phase_end(me, n);
 */
#ifndef STRIDE_TEAM_H
#define STRIDE_TEAM_H

#include <sched.h>
#include <stdatomic.h>

#define ST_TEAM_MAX 4 /* members at most: layers of one image have little work to split */

typedef struct st_team {
    _Alignas(64) atomic_int next; /* tickets handed out: item i of the pass is ticket i */
    _Alignas(64) atomic_int done; /* items finished */
} st_team;

/* One member's view: its index, the first ticket of the current phase, and the ticket it holds
 * (taken, not yet run; -1: none). */
typedef struct st_member {
    st_team *team;
    int id, size, base, ticket;
} st_member;

static inline void st_team_pause(unsigned spins)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    if (spins % 1024 == 0) /* a team larger than the free cores still progresses */
        sched_yield();
}

/* Waits until items [0, n) of the pass are finished. */
static inline void st_team_wait(const st_member *me, int n)
{
    for (unsigned spins = 1; atomic_load_explicit(&me->team->done, memory_order_acquire) < n;
         spins++)
        st_team_pause(spins);
}

/* The next item of the current phase of n items for this member: 1 and *item, once the phases
 * before it are finished; 0 when the phase has none left. */
static inline int st_team_item(st_member *me, int n, int *item)
{
    if (me->ticket < 0)
        me->ticket = atomic_fetch_add_explicit(&me->team->next, 1, memory_order_relaxed);
    if (me->ticket >= me->base + n)
        return 0; /* (a later phase's: kept) */
    st_team_wait(me, me->base);
    *item = me->ticket - me->base;
    me->ticket = -1;
    return 1;
}

/* Marks the member's item finished: what it wrote is visible to whoever waits for it. */
static inline void st_team_item_done(st_member *me)
{
    atomic_fetch_add_explicit(&me->team->done, 1, memory_order_release);
}

/* After the loop over a phase of n items: on to the next phase. */
static inline void st_team_phase_end(st_member *me, int n)
{
    me->base += n;
}

/* Items for a layer's phase worth cutting up, with a team of `size` members: a few per member
 * (each item costs two cross-core hand-overs of a counter). */
static inline int st_team_items(int size)
{
    return 2 * size;
}

/* Item `item` of n covers [*lo, *hi) of `units` units: consecutive, nearly equal parts. */
static inline void st_team_part(int units, int n, int item, int *lo, int *hi)
{
    *lo = (int)((long)units * item / n);
    *hi = (int)((long)units * (item + 1) / n);
}

#endif
