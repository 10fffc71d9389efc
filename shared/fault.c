/* SPDX-License-Identifier: MIT */
/*
 * fault.c - named crash points for the kill -9 tests.
 *
 * With -Dfault_injection=true every critical section of the core calls
 * SP_CRASH_POINT("name").  Setting SHMPOOL_CRASH_POINT=name[:N] in a
 * process's environment makes its N-th pass (default 1st) through that point
 * raise SIGKILL, so a test can show that the next locker recovers from a
 * death at exactly that instruction.  Without the option the macro is empty.
 * The list below is the catalogue the tests iterate over; check it matches
 * the code with tests/test-crash.c, which greps shared/ for SP_CRASH_POINT.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

const char *const sp_crash_points[] = {
	"buddy.alloc.unlinked",	 /* block off its free list, not split yet */
	"buddy.alloc.split",	 /* halfway through splitting */
	"buddy.alloc.committed", /* head marked allocated, stats not updated */
	"buddy.free.merged",	 /* lower half grown, upper not yet a tail */
	"buddy.free.linked",	 /* freed block half linked */
	"slab.grow.pages",	 /* slab pages taken, header not written */
	"slab.alloc.owner",	 /* owner tag written, bit not yet set */
	"slab.alloc.bit",	 /* bit set, counters and lists not updated */
	"slab.free.bit",	 /* bit cleared, counters and lists not updated */
	"slab.list.move",	 /* slab unlinked from one list, not on the next */
	"slab.shrink.unlinked",	 /* empty slab off its list, pages not freed */
	"pool.reserve.take",	 /* reserve element tagged, curr_nr not lowered */
	"pool.reserve.put",	 /* element stored in elements[], curr_nr not raised */
	"pool.create.reserve",	 /* pool half filled, not yet LIVE */
	"pool.destroy.drain",	 /* reserve half returned, descriptor DESTROYING */
	"pool.resize.swap",	 /* new reserve array in place, cap and old array not */
	"registry.insert",	 /* hash slot written, descriptor not LIVE */
	"registry.remove",	 /* destroy: name removed, descriptor or count not final */
	"kmalloc.large.alloc",	 /* large block allocated, not yet returned */
	"client.register",	 /* slot filled in, not yet ALIVE */
	"client.mark_dead",	 /* slot DEAD, pool waiters not yet woken */
	"client.release",	 /* dead slot's objects half released */
	"mag.set.linked",	 /* magazine set on the slot's list, not committed */
	"mag.release",		 /* dead slot's set uncommitted, still on its list */
	"mag.refill",		 /* objects tagged for the magazine, nr not raised */
	"mag.flush",		 /* magazine half flushed */
	"mag.pop",		 /* object retagged to the user, nr not lowered */
	"mag.push",		 /* object tagged cached, not yet in the magazine */
	"slot.note",		 /* slot filter bit set, the tag naming it not written */
	/* the held bound (layout.h): a death at each only over-counts */
	"mag.pop.held",		 /* magazine's held raised, object still cached */
	"mag.push.held",	 /* object listed, magazine's held not lowered */
	"mag.refill.held",	 /* held raised by the refill, nothing tagged yet */
	"mag.refill.listed",	 /* refill listed, its held not lowered */
	"mag.flush.held",	 /* held raised, entry not yet dropped for the pool */
	"mag.flush.freed",	 /* entry freed into the pool, held not lowered */
	"mag.forget",		 /* entries counted as held, nr not zeroed */
	"mag.set.fold",		 /* set's counts added to the slot's, not zeroed */
	"mag.run.held",		 /* a bulk run's held raised for all, or not lowered */
};
const unsigned sp_nr_crash_points = sizeof(sp_crash_points) / sizeof(sp_crash_points[0]);

#if SP_FAULT_INJECTION
static const char *armed;
static unsigned long countdown;
static int parsed;

/* A forked child reads its own environment again: it may arm another point. */
static void crash_point_forked(void)
{
	parsed = 0;
	armed = NULL;
}

/**
 * sp_crash_point() - die here if this point is armed for this process.
 * @name: the crash point's name (one of sp_crash_points).
 *
 * Does not sleep (it may not return).
 */
void sp_crash_point(const char *name)
{
	if (!parsed) {
		const char *e = getenv("SHMPOOL_CRASH_POINT");
		static char buf[128];
		static int atfork_done;

		if (!atfork_done) {
			atfork_done = 1;
			pthread_atfork(NULL, NULL, crash_point_forked);
		}
		parsed = 1;
		if (e && strlen(e) < sizeof(buf)) {
			char *colon;

			strcpy(buf, e);
			colon = strchr(buf, ':');
			countdown = 1;
			if (colon) {
				*colon = '\0';
				countdown = strtoul(colon + 1, NULL, 10);
				if (!countdown)
					countdown = 1;
			}
			armed = buf;
		}
	}
	if (armed && strcmp(armed, name) == 0 && --countdown == 0)
		raise(SIGKILL);
}
#endif
