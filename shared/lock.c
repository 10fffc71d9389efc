/* SPDX-License-Identifier: MIT */
/*
 * lock.c - process-shared robust locks and the lock order.
 *
 * Every shared structure is guarded by a pthread mutex with
 * PTHREAD_PROCESS_SHARED and PTHREAD_MUTEX_ROBUST.  The kernel walks a dying
 * thread's robust list and marks the mutexes it held; the next locker gets
 * EOWNERDEAD, which sp_lock() turns into SP_LOCK_RECOVER: the caller must
 * rebuild the structure from its truth and call sp_lock_consistent() before
 * unlocking (see layout.h for what the truth of each structure is).
 *
 * The mutexes are also priority-inheritance (PTHREAD_PRIO_INHERIT) mutexes,
 * for what that gives robustness, not for priorities: a plain robust mutex
 * wakes one sleeper at unlock (or at its owner's death) and leaves the lock
 * free for it to take; if that sleeper is killed before it takes it, the
 * wake-up dies with it, and the other sleepers sleep on with the lock free
 * until some later contention happens to wake one (a kill-torture found
 * this: a worker blocked for ever on a free lock).  A PI futex is handed
 * over by the kernel: the woken sleeper already owns it when it wakes, and
 * a sleeper's death passes it on (exit_pi_state_list()).  Uncontended, a
 * PI mutex is locked and unlocked in user space like the others; a
 * contended one is first tried a little while (SP_LOCK_SPINS), since the
 * kernel's strict hand-over would otherwise convoy its users.
 *
 * Waiting for memory never uses a process-shared condition variable: a
 * process killed inside pthread_cond_wait() can wedge the condvar for
 * everybody.  Waiters sleep on futex words instead (prim-linux.c).
 *
 * Lock order: each thread keeps a small stack of the locks it holds; taking
 * a lock whose level is not above every held level is a bug, caught by
 * sp_assert (see the numbered order in layout.h).
 *
 * The uncontended sp_lock() (one trylock, the record) and sp_unlock() of
 * the lock on top of the record are inline in core.h, since every locked
 * alloc and free takes one; everything else is here: spinning and
 * sleeping, a dead owner, timeouts (sp_lock_slow()), an unlock out of
 * order (sp_unlock_slow()) and the lock-order check (sp_lock_order_check(),
 * called only while another lock is held).
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "core.h"


/*
 * Tries before sleeping.  A contended PI mutex is handed over through the
 * kernel (FUTEX_LOCK_PI / FUTEX_UNLOCK_PI) strictly in turn, which makes
 * two processes sharing one lock convoy: 20 times slower than one in the
 * benchmark's locked two-process case (7.95 -> 0.32 Mpairs/s; with this
 * spin 10.8 -> 1.8, as the plain robust mutex did).  The critical sections
 * last a few hundred nanoseconds, so a short spin (about 10 us at most)
 * mostly finds the lock free and never reaches the kernel.
 */
#define SP_LOCK_SPINS 1000

/* Does the mutex look free?  glibc's futex word; elsewhere: just try. */
static inline bool lock_word_free(const struct sp_lock *l)
{
#ifdef __GLIBC__
	return !__atomic_load_n(&l->mutex.__data.__lock, __ATOMIC_RELAXED);
#else
	(void)l;
	return true;
#endif
}

static inline void sp_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/*
 * initial-exec: these are read on every lock and unlock, and libshmpool.so
 * would otherwise reach them through __tls_get_addr (about 200
 * instructions per alloc+free pair).  About 80 bytes of static TLS, which
 * glibc's surplus covers even when the library is dlopen()ed.
 */
#define SP_TLS_IE __attribute__((tls_model("initial-exec")))
/* read by the inline sp_lock_held() (core.h): hidden, never exported */
_Thread_local const struct sp_lock *sp__held[SP_MAX_HELD] SP_TLS_IE SP_HIDDEN;
_Thread_local unsigned sp__nr_held SP_TLS_IE SP_HIDDEN;
static _Thread_local bool world_stopped SP_TLS_IE; /* the checker holds every lock */

/**
 * sp_lock_allow_same_level() - enter or leave stop-the-world mode.
 * @on: true while the checker takes every lock of a level in table order.
 *
 * In that mode locks of equal level may nest and sp_lock_held() answers
 * true (more locks are held than the per-thread record keeps).
 * Does not sleep.
 */
void sp_lock_allow_same_level(bool on)
{
	world_stopped = on;
}

/**
 * sp_lock_init() - initialise a lock in shared memory.
 * @l: the lock.
 * @level: its rank in the lock order.
 *
 * Only on a structure nobody else can see yet.  Does not sleep.
 * Return: 0 or a negative errno.
 */
int sp_lock_init(struct sp_lock *l, enum sp_lock_level level)
{
	pthread_mutexattr_t a;
	int rc;

	memset(l, 0, sizeof(*l));
	l->level = level;
	rc = pthread_mutexattr_init(&a);
	if (rc)
		return -rc;
	rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	if (!rc)
		rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (!rc) /* see the top of this file: a waiter's death loses no wake-up */
		rc = pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
	if (!rc)
		rc = pthread_mutex_init(&l->mutex, &a);
	pthread_mutexattr_destroy(&a);
	return rc ? sp_err(-rc, "pthread_mutex_init: %s", strerror(rc)) : 0;
}

/**
 * sp_lock_order_check() - may this thread take @l now?
 * @l: the lock about to be recorded as held; this thread holds others.
 *
 * The lock order (layout.h): every held lock's level must be below @l's
 * (equal levels only in stop-the-world mode).  Called by sp_lock() (core.h)
 * when SP_DEBUG_LEVEL >= 1 and a lock is already held; aborts with "lock
 * order" otherwise.  Does not sleep.
 */
void sp_lock_order_check(const struct sp_lock *l)
{
	for (unsigned i = 0; i < sp__nr_held && i < SP_MAX_HELD; i++)
		if (sp__held[i]->level > l->level ||
		    (sp__held[i]->level == l->level && !world_stopped))
			sp_assert_fail("lock order: level not above every held lock", __FILE__,
				       __LINE__);
}

static inline __attribute__((always_inline)) void push_held(const struct sp_lock *l)
{
	sp_lock_record(l);
}

/**
 * sp_lock_slow() - sp_lock() (core.h) after a trylock that did not take @l
 * at once: spin, then sleep; a dead owner, a timeout or an unusable mutex.
 * @s: segment.  @l: the lock.  @rc: the trylock's error, or EROFS when @s
 *     is read-only (no trylock made).
 *
 * Out of line, so that the uncontended path sets up no frame for it.
 * May sleep.
 * Return: as sp_lock().
 */
int sp_lock_slow(struct sp_seg *s, struct sp_lock *l, int rc)
{
	if (rc == EROFS && s->readonly)
		return sp_err(-EROFS, "cannot lock a read-only segment");
	for (unsigned spin = 0; rc == EBUSY && spin < SP_LOCK_SPINS; spin++) {
		sp_cpu_relax();
		if (lock_word_free(l)) /* read, not write, the line while it is held */
			rc = pthread_mutex_trylock(&l->mutex);
	}
	if (rc == EBUSY) {
		if (s->lock_timeout_ms > 0) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += s->lock_timeout_ms / 1000;
			ts.tv_nsec += (long)(s->lock_timeout_ms % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			rc = pthread_mutex_timedlock(&l->mutex, &ts);
		} else {
			rc = pthread_mutex_lock(&l->mutex);
		}
	}
	if (rc == 0) {
		push_held(l);
		return 0;
	}
	if (rc == EOWNERDEAD) {
		push_held(l);
		__atomic_fetch_add(&l->recoveries, 1, __ATOMIC_RELAXED);
		return SP_LOCK_RECOVER;
	}
	if (rc == ETIMEDOUT)
		return sp_err(-ETIMEDOUT, "lock (level %u) still held after %d ms", l->level,
			      s->lock_timeout_ms);
	return sp_err(-rc, "lock (level %u) unusable: %s", l->level, strerror(rc));
}

/**
 * sp_lock_consistent() - declare a recovered structure repaired.
 * @l: a lock sp_lock() returned SP_LOCK_RECOVER for, still held.
 *
 * Does not sleep.
 */
void sp_lock_consistent(struct sp_lock *l)
{
	sp_assert(sp_lock_held(l));
	pthread_mutex_consistent(&l->mutex);
}

/**
 * sp_unlock_slow() - sp_unlock() (core.h) of a lock not on top of this
 * thread's record of held locks.
 * @l: the lock.
 *
 * Does not sleep.
 */
void sp_unlock_slow(struct sp_lock *l)
{
	for (unsigned i = sp__nr_held < SP_MAX_HELD ? sp__nr_held : SP_MAX_HELD; i-- > 0;) {
		if (sp__held[i] == l) {
			for (unsigned j = i; j + 1 < sp__nr_held && j + 1 < SP_MAX_HELD; j++)
				sp__held[j] = sp__held[j + 1];
			sp__nr_held--;
			goto unlock;
		}
	}
	if (sp__nr_held > SP_MAX_HELD)
		sp__nr_held--; /* an unrecorded lock of stop-the-world mode */
unlock:
	pthread_mutex_unlock(&l->mutex);
}

/* sp_lock_held() (core.h) when @l is not the lock on top of the stack. */
bool sp_lock_held_slow(const struct sp_lock *l)
{
	if (world_stopped)
		return true;
	for (unsigned i = 0; i < sp__nr_held && i < SP_MAX_HELD; i++)
		if (sp__held[i] == l)
			return true;
	return false;
}
