/* SPDX-License-Identifier: MIT */
/*
 * test-rel-restarts.c - the daemon is SIGKILLed and restarted again and
 * again while clients work; nothing is lost.
 *
 * Several worker processes (libshmpool, one session each) allocate and free
 * without pause through a pool, a named cache and shmp_malloc, counting
 * every allocation and free, writing a pattern into everything they hold
 * and verifying it before each free.  Every ~100 operations each makes a
 * control call (PoolOpen or Check), which fails while the daemon is down
 * and, once it is back, reconnects and resumes the session.
 *
 * The driver kills the daemon with SIGKILL at a random moment (after a
 * random number of the workers' operations), waits until the workers have
 * done more work during the downtime, restarts it on the same socket and
 * segment, and waits until every worker has resumed (a control call
 * succeeded again, on the same slot).  RESTARTS times: 20 in `make test`,
 * 100 in `make soak` ($SHMPOOL_RESTARTS overrides).
 *
 * At the end, with the workers stopped but still holding what they hold:
 * the pool's and the cache's counters equal the workers' counts
 * (nr_alloc, nr_free, elements out), the daemon's Stats attribute to each
 * worker's slot exactly what it holds, and the daemon's Check finds no
 * violation.  Then the workers free everything and say goodbye: nothing
 * is out, the slots are free, the Check is still clean.
 *
 * A second test kills the daemon in the middle of a Check - which holds the
 * lock of every pool and cache in use - with a full pool table, more locks
 * than the kernel releases for one dying thread: the next daemon must
 * answer, and the pools whose locks were taken first must work (5 kills,
 * 20 in `make soak`; $SHMPOOL_CHECK_KILLS overrides).
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "client-util.h"
#include "rel-util.h"

#define MAX_WORKERS 8
#define NHELD 48		/* per kind and worker */
#define POLL_MS 20000		/* bound of every wait */

struct wstat {
	_Atomic uint64_t pool_allocs, pool_frees, cache_allocs, cache_frees, mallocs, mfrees;
	_Atomic uint64_t held_pool, held_cache, held_malloc;
	_Atomic uint64_t ops;		/* data-path operations */
	_Atomic uint64_t ctl_ok;	/* control calls that succeeded */
	_Atomic uint64_t ctl_down;	/* refused while the daemon was down */
	_Atomic uint64_t resumes;	/* first success after a failure */
	_Atomic uint32_t slot;
	_Atomic uint32_t errors;
	_Atomic uint32_t stopped;
	char error[256];
};

/* Shared by the driver and the workers (anonymous MAP_SHARED). */
struct shared {
	_Atomic uint32_t stop;		/* driver -> workers: stop, keep holdings */
	_Atomic uint32_t release;	/* driver -> workers: free all, goodbye */
	struct wstat w[MAX_WORKERS];
};

struct warg {
	struct td_daemon *d;
	struct shared *sh;
	unsigned id;
};

struct held {
	uint64_t *v[NHELD];
	unsigned n;
};

static void werror(struct wstat *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void werror(struct wstat *w, const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&w->errors, 1) == 0) {
		va_start(ap, fmt);
		vsnprintf(w->error, sizeof(w->error), fmt, ap);
		va_end(ap);
	}
}

static uint64_t pattern(unsigned id, const void *p)
{
	return (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull ^ id;
}

/* One control call: PoolOpen + close, or Check.  Counts what happened. */
static void control(struct wstat *w, shmp_client *c, unsigned k, bool *down)
{
	struct shmp_segment_stats st;
	shmp_pool *p = NULL;
	unsigned nv = 0;
	int rc;

	if (k & 1) {
		rc = shmp_pool_open(c, "rel.pool", &p);
		shmp_pool_close(p);
	} else {
		rc = shmp_check(c, &nv);
		if (rc == 0 && nv)
			werror(w, "Check found %u violations: %s", nv, shmp_errmsg());
	}
	if (rc == 0) {
		if (*down)
			atomic_fetch_add(&w->resumes, 1);
		*down = false;
		atomic_fetch_add(&w->ctl_ok, 1);
		if (shmp_segment_stats(c, &st) || st.slot != atomic_load(&w->slot))
			werror(w, "the session came back on slot %u, not %u", st.slot,
			       atomic_load(&w->slot));
	} else if (rc == -ECONNREFUSED || rc == -ENOTCONN) {
		*down = true;
		atomic_fetch_add(&w->ctl_down, 1);
	} else {
		werror(w, "control call failed: %s: %s", shmp_err_name(rc), shmp_errmsg());
	}
}

static bool drop(struct wstat *w, unsigned id, struct held *h, unsigned i, int kind,
		 shmp_pool *p, shmp_cache *k, shmp_client *c)
{
	uint64_t *e = h->v[i];
	int rc;

	if (e[0] != pattern(id, e) || e[1] != ~pattern(id, e))
		werror(w, "an element held by worker %u was overwritten", id);
	rc = kind == 0 ? shmp_pool_free(p, e) : kind == 1 ? shmp_cache_free(k, e)
							   : shmp_free_checked(c, e);
	if (rc) {
		werror(w, "free (kind %d) failed: %s: %s", kind, shmp_err_name(rc), shmp_errmsg());
		return false;
	}
	h->v[i] = h->v[--h->n];
	return true;
}

static int worker(void *arg)
{
	struct warg *a = arg;
	struct wstat *w = &a->sh->w[a->id];
	struct held h[3] = { 0 };
	struct shmp_segment_stats st;
	uint64_t rng = 0x1234567 + a->id;
	shmp_client *c = NULL;
	shmp_pool *p = NULL;
	shmp_cache *k = NULL;
	bool down = false;
	unsigned calls = 0;

	if (shmp_connect(a->d->sock, "rel-worker", &c) || shmp_pool_open(c, "rel.pool", &p) ||
	    shmp_cache_open(c, "rel.cache", &k) || shmp_segment_stats(c, &st)) {
		werror(w, "set-up failed: %s", shmp_errmsg());
		return 1;
	}
	atomic_store(&w->slot, st.slot);
	control(w, c, 0, &down);
	while (!atomic_load(&a->sh->stop)) {
		uint64_t r = tu_rand(&rng);
		int kind = (int)(r % 3);
		struct held *hk = &h[kind];

		if (hk->n < NHELD && (hk->n == 0 || (r >> 8) % 2)) {
			uint64_t *e = kind == 0 ? shmp_pool_alloc(p, SHMP_NOWAIT)
				      : kind == 1 ? shmp_cache_alloc(k, 0)
						  : shmp_malloc(c, 16 + (r >> 16) % 2000);

			if (!e) {
				werror(w, "alloc (kind %d) failed: %s: %s", kind,
				       shmp_err_name(-errno), shmp_errmsg());
				break;
			}
			e[0] = pattern(a->id, e);
			e[1] = ~pattern(a->id, e);
			hk->v[hk->n++] = e;
			atomic_fetch_add(kind == 0 ? &w->pool_allocs : kind == 1 ? &w->cache_allocs
										 : &w->mallocs, 1);
		} else if (drop(w, a->id, hk, (unsigned)((r >> 8) % hk->n), kind, p, k, c)) {
			atomic_fetch_add(kind == 0 ? &w->pool_frees : kind == 1 ? &w->cache_frees
										: &w->mfrees, 1);
		} else {
			break;
		}
		atomic_store(&w->held_pool, h[0].n);
		atomic_store(&w->held_cache, h[1].n);
		atomic_store(&w->held_malloc, h[2].n);
		if (atomic_fetch_add(&w->ops, 1) % 100 == 99)
			control(w, c, calls++, &down);
	}
	atomic_store(&w->stopped, 1);
	while (!atomic_load(&a->sh->release))
		cl_msleep(1);
	for (int kind = 0; kind < 3; kind++)
		while (h[kind].n && drop(w, a->id, &h[kind], h[kind].n - 1, kind, p, k, c))
			;
	control(w, c, 0, &down); /* the daemon is up: this must work */
	if (down)
		werror(w, "the last control call failed");
	shmp_pool_close(p);
	shmp_cache_close(k);
	shmp_disconnect(c);
	return atomic_load(&w->errors) ? 1 : 0;
}

static uint64_t sum(struct shared *sh, unsigned n, size_t field)
{
	uint64_t t = 0;

	for (unsigned i = 0; i < n; i++)
		t += atomic_load((_Atomic uint64_t *)((char *)&sh->w[i] + field));
	return t;
}
#define SUM(sh, n, f) sum((sh), (n), offsetof(struct wstat, f))

static void fail_workers(struct shared *sh, unsigned n, const char *what)
{
	for (unsigned i = 0; i < n; i++)
		if (atomic_load(&sh->w[i].errors))
			fail_msg("%s: worker %u: %s", what, i, sh->w[i].error);
}

static void test_restarts(void **state)
{
	unsigned nw = (unsigned)rel_param("SHMPOOL_WORKERS", 3, 4);
	long restarts = rel_param("SHMPOOL_RESTARTS", 20, 100);
	static const char *const args[] = { "--log-level", "info", NULL };
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t rng = 42, t0, downtime_ops = 0, ctl_down0;
	struct warg wa[MAX_WORKERS];
	pid_t pids[MAX_WORKERS];
	struct td_daemon d;
	shmp_client *c;
	shmp_pool *p;
	shmp_cache *k;
	Shmpool__Response *r;
	int admin;

	(void)state;
	assert_true(sh != MAP_FAILED);
	if (nw > MAX_WORKERS)
		nw = MAX_WORKERS;
	td_init(&d);
	td_start(&d, args);
	/* the pool and the cache the workers share */
	CL_OK(shmp_connect(d.sock, "rel-setup", &c));
	CL_OK(shmp_pool_create(c, "rel.pool", 48, 8, &p));
	CL_OK(shmp_cache_create(c, "rel.cache", 40, 0, NULL, &k));
	shmp_pool_close(p);
	shmp_cache_close(k);
	shmp_disconnect(c);

	for (unsigned i = 0; i < nw; i++) {
		wa[i] = (struct warg){ .d = &d, .sh = sh, .id = i };
		pids[i] = cl_fork(worker, &wa[i]);
	}
	for (unsigned i = 0; i < nw; i++)
		if (!CL_POLL(atomic_load(&sh->w[i].ctl_ok) >= 2 || atomic_load(&sh->w[i].errors),
			     POLL_MS))
			fail_msg("worker %u did not get going", i);
	fail_workers(sh, nw, "start");

	t0 = rel_now_ms();
	ctl_down0 = SUM(sh, nw, ctl_down);
	for (long round = 0; round < restarts; round++) {
		uint64_t ops = SUM(sh, nw, ops), wait = 50 + tu_rand(&rng) % 2000, mark;
		uint64_t ok[MAX_WORKERS];

		/* a random moment during the workers' activity */
		if (!CL_POLL(SUM(sh, nw, ops) >= ops + wait, POLL_MS))
			fail_msg("round %ld: the workers stalled", round);
		td_kill9(&d);
		/* down: the data path goes on */
		mark = SUM(sh, nw, ops);
		if (!CL_POLL(SUM(sh, nw, ops) >= mark + 300, POLL_MS))
			fail_msg("round %ld: the workers stalled while the daemon was down", round);
		downtime_ops += SUM(sh, nw, ops) - mark;
		for (unsigned i = 0; i < nw; i++)
			ok[i] = atomic_load(&sh->w[i].ctl_ok);
		td_start(&d, args);
		/* every worker resumes: a control call succeeds again */
		for (unsigned i = 0; i < nw; i++)
			if (!CL_POLL(atomic_load(&sh->w[i].ctl_ok) > ok[i] ||
				     atomic_load(&sh->w[i].errors), POLL_MS))
				fail_msg("round %ld: worker %u did not resume", round, i);
		fail_workers(sh, nw, "after a restart");
	}

	atomic_store(&sh->stop, 1);
	for (unsigned i = 0; i < nw; i++)
		if (!CL_POLL(atomic_load(&sh->w[i].stopped), POLL_MS))
			fail_msg("worker %u did not stop", i);
	fail_workers(sh, nw, "at the end");

	/* nothing lost: the segment's counters are the workers' counts */
	admin = rel_admin(&d);
	r = rel_stats(admin);
	{
		Shmpool__PoolInfo *pi = td_stats_pool(r, "rel.pool");
		Shmpool__CacheInfo *ci = rel_stats_cache(r, "rel.cache");

		assert_non_null(pi);
		assert_non_null(ci);
		printf("restarts: %ld in %.1f s; workers: %u; data-path operations: %llu, "
		       "%llu of them while the daemon was down; control calls refused while "
		       "down: %llu; sessions resumed: %llu\n", restarts,
		       (double)(rel_now_ms() - t0) / 1000, nw,
		       (unsigned long long)SUM(sh, nw, ops), (unsigned long long)downtime_ops,
		       (unsigned long long)(SUM(sh, nw, ctl_down) - ctl_down0),
		       (unsigned long long)SUM(sh, nw, resumes));
		printf("pool:  %llu allocs, %llu frees, %llu out (workers: %llu, %llu, %llu)\n",
		       (unsigned long long)pi->nr_alloc, (unsigned long long)pi->nr_free,
		       (unsigned long long)pi->nr_out,
		       (unsigned long long)SUM(sh, nw, pool_allocs),
		       (unsigned long long)SUM(sh, nw, pool_frees),
		       (unsigned long long)SUM(sh, nw, held_pool));
		printf("cache: %llu allocs, %llu frees, %llu active (workers: %llu, %llu, %llu)\n",
		       (unsigned long long)ci->nr_alloc, (unsigned long long)ci->nr_free,
		       (unsigned long long)ci->active_objs,
		       (unsigned long long)SUM(sh, nw, cache_allocs),
		       (unsigned long long)SUM(sh, nw, cache_frees),
		       (unsigned long long)SUM(sh, nw, held_cache));
		printf("shmp_malloc: %llu allocs, %llu frees\n",
		       (unsigned long long)SUM(sh, nw, mallocs),
		       (unsigned long long)SUM(sh, nw, mfrees));
		assert_int_equal(pi->nr_alloc, SUM(sh, nw, pool_allocs));
		assert_int_equal(pi->nr_free, SUM(sh, nw, pool_frees));
		assert_int_equal(pi->nr_out, SUM(sh, nw, held_pool));
		assert_int_equal(ci->nr_alloc, SUM(sh, nw, cache_allocs));
		assert_int_equal(ci->nr_free, SUM(sh, nw, cache_frees));
		assert_int_equal(ci->active_objs, SUM(sh, nw, held_cache));
	}
	for (unsigned i = 0; i < nw; i++) {
		Shmpool__ClientInfo *ci = td_stats_client(r, atomic_load(&sh->w[i].slot));
		uint64_t held = atomic_load(&sh->w[i].held_pool) +
				atomic_load(&sh->w[i].held_cache) +
				atomic_load(&sh->w[i].held_malloc);

		assert_non_null(ci);
		assert_string_equal(ci->state, "alive");
		if (ci->objects != held || ci->pool_elems != atomic_load(&sh->w[i].held_pool))
			fail_msg("slot %u: the daemon says %llu objects (%llu pool elements), the "
				 "worker holds %llu (%llu)", ci->slot,
				 (unsigned long long)ci->objects,
				 (unsigned long long)ci->pool_elems, (unsigned long long)held,
				 (unsigned long long)atomic_load(&sh->w[i].held_pool));
	}
	td_free(r);
	td_check_clean(admin);

	/* the workers free everything and say goodbye */
	atomic_store(&sh->release, 1);
	for (unsigned i = 0; i < nw; i++)
		if (tu_wait(pids[i]) != 0)
			fail_msg("worker %u exited with an error: %s", i, sh->w[i].error);
	r = rel_stats(admin);
	assert_int_equal(td_stats_pool(r, "rel.pool")->nr_out, 0);
	assert_int_equal(rel_stats_cache(r, "rel.cache")->active_objs, 0);
	for (unsigned i = 0; i < nw; i++)
		assert_null(td_stats_client(r, atomic_load(&sh->w[i].slot)));
	td_free(r);
	td_check_clean(admin);
	close(admin);
	td_cleanup(&d);
	munmap(sh, sizeof(*sh));
}

/* ---- killed in the middle of a Check, with a full pool table ----------------- */

struct checker {
	struct td_daemon *d;
	_Atomic uint64_t checks;
};

/* Ask for Check after Check until the daemon dies under it. */
static int checker(void *arg)
{
	struct checker *k = arg;
	shmp_client *c;
	unsigned nv;

	if (shmp_connect(k->d->sock, "rel-checker", &c))
		return 1;
	while (shmp_check(c, &nv) == 0 && nv == 0)
		atomic_fetch_add(&k->checks, 1);
	return 0;
}

/*
 * Check stops the world: it holds the lock of every pool and cache in use
 * at once.  With a full pool table (1,024 pools, each with its own cache)
 * and 100 named caches that is 2,173 locks: more than the 2,048 robust
 * mutexes the kernel releases for a dying thread.  Kill
 * the daemon while it checks, KILLS times: the next daemon must answer
 * Hello and Check, and clients must use the pools whose locks it took
 * first.
 */
static void test_kill_during_check(void **state)
{
	static const char *const args[] = { "--log-level", "warn", NULL };
	long kills = rel_param("SHMPOOL_CHECK_KILLS", 5, 20);
	unsigned npools = 1024, ncaches = 100; /* a full pool table */
	struct checker *k = mmap(NULL, sizeof(*k), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t rng = 7, t0;
	struct td_daemon d;
	unsigned recovered = 0;
	long round;
	char name[32];
	shmp_client *c;
	shmp_pool *p;
	int admin;

	(void)state;
	assert_true(k != MAP_FAILED);
	td_init(&d);
	td_start(&d, args);
	admin = rel_admin(&d);
	for (unsigned i = 0; i < npools; i++) {
		snprintf(name, sizeof(name), "chk.%u", i);
		TD_EXPECT_FREE(td_pool_create(admin, name, 16, 1, 0), 0);
	}
	for (unsigned i = 0; i < ncaches; i++) {
		snprintf(name, sizeof(name), "chk.cache.%u", i);
		TD_EXPECT_FREE(td_cache_create(admin, name, 32, NULL, 0), 0);
	}
	close(admin);
	t0 = rel_now_ms();
	/* KILLS rounds, and more (up to 4 x KILLS) until one landed in a Check */
	for (round = 0; round < kills || (!recovered && round < 4 * kills); round++) {
		uint64_t want = 1 + tu_rand(&rng) % 4;
		struct sp_seg *seg;
		pid_t pid[2];
		void *e;

		k->d = &d;
		atomic_store(&k->checks, 0);
		/* two of them: the daemon always has the next Check waiting */
		for (int i = 0; i < 2; i++)
			pid[i] = cl_fork(checker, k);
		if (!CL_POLL(atomic_load(&k->checks) >= want, POLL_MS))
			fail_msg("round %ld: no Check went through", round);
		td_kill9(&d);
		for (int i = 0; i < 2; i++)
			tu_wait(pid[i]);
		td_start(&d, args);
		/* the registry lock (the first a Check takes) recovered from a dead
		 * owner: this kill landed in the middle of a Check */
		CL_OK(sp_seg_attach(d.shm, -1, SP_ATTACH_RDONLY, &seg));
		recovered = seg->hdr->registry_lock.recoveries;
		sp_seg_detach(seg);
		/* Hello and Check need the registry lock, taken first by the dead Check */
		admin = rel_admin(&d);
		td_check_clean(admin);
		close(admin);
		CL_OK(shmp_connect(d.sock, "rel-after", &c));
		CL_OK(shmp_pool_open(c, "chk.0", &p));
		e = shmp_pool_alloc(p, SHMP_NOWAIT);
		assert_non_null(e);
		CL_OK(shmp_pool_free(p, e));
		shmp_pool_close(p);
		shmp_disconnect(c);
	}
	printf("killed during Check with %u pools and %u caches (%u locks held): %ld times in "
	       "%.1f s, %u of them holding the registry lock; the next daemon answered Hello "
	       "and Check every time\n", npools, ncaches, 2 * npools + ncaches + 23 + 2, round,
	       (double)(rel_now_ms() - t0) / 1000, recovered);
	assert_true(recovered >= 1);
	td_cleanup(&d);
	munmap(k, sizeof(*k));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_restarts),
		cmocka_unit_test(test_kill_during_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
