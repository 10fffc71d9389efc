/* SPDX-License-Identifier: MIT */
/*
 * test-client-magazine.c - the per-thread magazines seen through the
 * public API (client/tcache.c over shared/magazine.c).
 *
 * Expected: objects a thread freed stay cached in its magazines and count
 * as free in every statistic; they go back when the thread exits, at
 * shmp_flush(), when its session disconnects (also for another thread's
 * magazines) or when its process is killed (the daemon frees them); a
 * destroy fails with -EBUSY, saying why, while another thread caches
 * objects of the pool or cache, and succeeds once that thread flushed or
 * exited; SHMPOOL_MAGAZINES=0 and SHMP_CONNECT_NO_MAGAZINES take the locked
 * path (no magazine set is ever made for the session) with the same
 * results; a double free and a free to the wrong pool or cache are refused
 * with -EINVAL by the fast path too; a stale handle of a destroyed pool
 * frees nothing into a recreated one, even from a thread whose magazine is
 * still bound to the old one (-ENOENT); a child inheriting a session across
 * fork() gets -ECHILD and leaves the parent's magazines alone; in a
 * fault-injection build, a process killed at each magazine crash point
 * leaves nothing behind once the daemon released it; the locked path of a
 * pool, cache or kmalloc class uses the geometry its handle (or session)
 * checked once, so a descriptor scribbled on since neither stops nor
 * steers it.  The
 * segment is read through a read-only mapping of the test's own to see the
 * magazine sets and cached objects; the checker runs after every test.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client-util.h"
#include "magazine.h"

/* ---- a read-only look at the segment --------------------------------------- */

static struct sp_seg *ro_attach(struct cl_daemon *d)
{
	struct sp_seg *s = NULL;

	TU_ASSERT_OK(sp_seg_attach(d->shm, -1, SP_ATTACH_RDONLY, &s));
	return s;
}

/* Magazine set blocks tagged with @slot (or, @others, with any other). */
static uint32_t ro_magsets_of(struct cl_daemon *d, uint32_t slot, bool others)
{
	struct sp_seg *s = ro_attach(d);
	uint32_t n = 0;

	for (uint32_t pfn = 0; pfn < s->geo.nr_pages;) {
		uint32_t info = s->pages[pfn].info, o = SP_PG_ORDER(info);

		n += SP_PG_STATE(info) == SP_PG_ALLOC && SP_PG_KIND(info) == SP_KIND_MAG &&
		     (s->pages[pfn].slot == slot + 1) != others;
		pfn += 1u << (o > s->geo.max_order ? 0 : o);
	}
	sp_seg_detach(s);
	return n;
}

static uint32_t ro_magsets(struct cl_daemon *d, uint32_t slot)
{
	return ro_magsets_of(d, slot, false);
}

/* The id of the LIVE cache named @name, or of pool @name's backing cache. */
static uint32_t ro_cache_id(struct sp_seg *s, const char *name, bool pool)
{
	if (pool) {
		for (uint32_t i = 0; i < s->geo.max_pools; i++) {
			struct sp_pool *p = &sp_pools(s)[i];

			if (p->state == SP_DESC_LIVE && !strcmp(p->name, name))
				return p->cache_id;
		}
	} else {
		for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++) {
			struct sp_cache *c = &sp_caches(s)[i];

			if (c->state == SP_DESC_LIVE && !strcmp(c->name, name))
				return i;
		}
	}
	CL_FAIL("no %s named %s in the segment", pool ? "pool" : "cache", name);
	return 0;
}

/* Free objects of pool or cache @name cached in magazines, all slots. */
static uint64_t ro_cached(struct cl_daemon *d, const char *name, bool pool)
{
	struct sp_seg *s = ro_attach(d);
	uint64_t n = sp_mag_cached(s, ro_cache_id(s, name, pool));

	sp_seg_detach(s);
	return n;
}

/* Allocated objects of pool or cache @name tagged as cached in a
 * magazine (of any slot), from the slabs themselves. */
static uint64_t ro_mag_tagged(struct cl_daemon *d, const char *name, bool pool)
{
	struct sp_seg *s = ro_attach(d);
	struct sp_cache *c = &sp_caches(s)[ro_cache_id(s, name, pool)];
	uint64_t n = 0;

	for (uint32_t pfn = 0; pfn < s->geo.nr_pages;) {
		uint32_t o = SP_PG_ORDER(s->pages[pfn].info);

		if (sp_slab_valid(s, c, pfn)) {
			struct sp_slab *slab = sp_slab_at(s, c, pfn);

			for (uint32_t i = 0; i < c->objperslab; i++)
				n += (slab->bitmap[i / 64] >> (i % 64) & 1) &&
				     sp_owner_is_mag(sp_slab_owners(c, slab)[i]);
		}
		pfn += 1u << (o > s->geo.max_order ? 0 : o);
	}
	sp_seg_detach(s);
	return n;
}

/* Magazine refills of pool or cache @name so far. */
static uint64_t ro_refills(struct cl_daemon *d, const char *name, bool pool)
{
	struct sp_seg *s = ro_attach(d);
	uint64_t n = sp_caches(s)[ro_cache_id(s, name, pool)].nr_mag_refill;

	sp_seg_detach(s);
	return n;
}

static uint32_t my_slot(shmp_client *c)
{
	struct shmp_segment_stats st;

	CL_OK(shmp_segment_stats(c, &st));
	return st.slot;
}

static struct shmp_pool_stats pool_stats(shmp_pool *p)
{
	struct shmp_pool_stats st;

	CL_OK(shmp_pool_stats(p, &st));
	return st;
}

static struct shmp_cache_stats cache_stats(shmp_cache *k)
{
	struct shmp_cache_stats st;

	CL_OK(shmp_cache_stats(k, &st));
	return st;
}

/* ---- threads: cached objects go back when they exit ------------------------ */

#define NTHREADS 4
#define HOLD 40

struct work {
	shmp_client *c;
	shmp_pool *p;
	shmp_cache *k;
	int iters;
	int failed;
	char msg[200];
	/* for the parked thread */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stage;		/* 1: the thread parked, 2: it may go on, 3: flush, then park */
};

static void work_fail(struct work *w, const char *what)
{
	if (__atomic_fetch_add(&w->failed, 1, __ATOMIC_RELAXED) == 0)
		snprintf(w->msg, sizeof(w->msg), "%s: %s", what, shmp_errmsg());
}

/* Random allocations and frees from the pool, the cache and shmp_malloc. */
static void churn(struct work *w, unsigned seed, int iters)
{
	struct {
		void *p;
		int kind;
	} held[HOLD];
	int n = 0;

	for (int i = 0; i < iters && !w->failed; i++) {
		unsigned r = rand_r(&seed);
		int kind = (int)(r % 3);

		if (n < HOLD && (r >> 4) % 2) {
			void *x = kind == 0 ? shmp_pool_alloc(w->p, 0)
				: kind == 1 ? shmp_cache_alloc(w->k, 0)
					    : shmp_malloc(w->c, 1 + (r >> 8) % 600);

			if (!x) {
				work_fail(w, "alloc");
				break;
			}
			memset(x, 0x5a, 16);
			held[n].p = x;
			held[n++].kind = kind;
		} else if (n) {
			int j = (int)((r >> 8) % (unsigned)n), rc;

			rc = held[j].kind == 0 ? shmp_pool_free(w->p, held[j].p)
			   : held[j].kind == 1 ? shmp_cache_free(w->k, held[j].p)
					       : shmp_free_checked(w->c, held[j].p);
			if (rc) {
				work_fail(w, "free");
				break;
			}
			held[j] = held[--n];
		}
	}
	while (n--) {
		int rc = held[n].kind == 0 ? shmp_pool_free(w->p, held[n].p)
		       : held[n].kind == 1 ? shmp_cache_free(w->k, held[n].p)
					   : shmp_free_checked(w->c, held[n].p);
		if (rc)
			work_fail(w, "final free");
	}
}

static void *churn_main(void *arg)
{
	struct work *w = arg;

	churn(w, (unsigned)(uintptr_t)pthread_self(), w->iters);
	return NULL;
}

static void wait_stage(struct work *w, int stage)
{
	pthread_mutex_lock(&w->mu);
	while (w->stage != stage)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

static void set_stage(struct work *w, int stage)
{
	pthread_mutex_lock(&w->mu);
	w->stage = stage;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Churns, keeps 3 pool elements and 2 cache objects, parks; frees, exits. */
static void *parked_main(void *arg)
{
	struct work *w = arg;
	void *e[3] = { 0 }, *o[2] = { 0 };

	churn(w, 99, 500);
	for (int i = 0; i < 3; i++)
		if (!(e[i] = shmp_pool_alloc(w->p, 0)))
			work_fail(w, "parked alloc");
	for (int i = 0; i < 2; i++)
		if (!(o[i] = shmp_cache_alloc(w->k, 0)))
			work_fail(w, "parked alloc");
	set_stage(w, 1);
	wait_stage(w, 2);
	for (int i = 0; i < 3; i++)
		if (e[i] && shmp_pool_free(w->p, e[i]))
			work_fail(w, "parked free");
	for (int i = 0; i < 2; i++)
		if (o[i] && shmp_cache_free(w->k, o[i]))
			work_fail(w, "parked free");
	return NULL; /* the thread's magazines go back as it exits */
}

static void test_thread_exit_returns_cached(void **state)
{
	struct cl_daemon *d = *state;
	struct work w = { .iters = 4000, .mu = PTHREAD_MUTEX_INITIALIZER,
			  .cv = PTHREAD_COND_INITIALIZER };
	struct shmp_pool_stats ps;
	struct shmp_cache_stats cs;
	pthread_t th[NTHREADS], parked;
	uint32_t slot;

	w.c = cl_connect(d, "mag-threads");
	slot = my_slot(w.c);
	CL_OK(shmp_pool_create(w.c, "mag.pool", 64, 4, &w.p));
	CL_OK(shmp_cache_create(w.c, "mag.cache", 48, 0, NULL, &w.k));

	/* a thread holding some and caching more: cached counts as free */
	assert_int_equal(pthread_create(&parked, NULL, parked_main, &w), 0);
	wait_stage(&w, 1);
	ps = pool_stats(w.p);
	cs = cache_stats(w.k);
	assert_int_equal(ps.nr_out, 3);
	assert_int_equal(cs.active_objs, 2);
	assert_int_equal(ps.nr_alloc - ps.nr_free, 3); /* the thread's counts included */
	assert_int_equal(cs.nr_alloc - cs.nr_free, 2);
	/* (the first pool and the first cache may share a magazine: ids
	 * equal modulo 32; then only the one used last keeps objects) */
	assert_true(ro_cached(d, "mag.pool", true) + ro_cached(d, "mag.cache", false) > 0);
	assert_int_equal(ro_magsets(d, slot), 1);
	cl_check(w.c);
	set_stage(&w, 2);
	pthread_join(parked, NULL);
	if (w.failed)
		CL_FAIL("parked thread: %s", w.msg);
	assert_int_equal(ro_magsets(d, slot), 0);
	assert_int_equal(ro_cached(d, "mag.pool", true), 0);
	assert_int_equal(ro_cached(d, "mag.cache", false), 0);

	/* several threads at once, each exiting with a full magazine */
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, churn_main, &w), 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	if (w.failed)
		CL_FAIL("thread: %s", w.msg);
	ps = pool_stats(w.p);
	cs = cache_stats(w.k);
	assert_int_equal(ps.nr_out, 0);
	assert_int_equal(ps.curr_nr, 4);
	assert_int_equal(ps.nr_alloc, ps.nr_free);
	assert_int_equal(cs.active_objs, 0);
	assert_int_equal(cs.nr_alloc, cs.nr_free);
	assert_true(cs.nr_alloc > 1000);
	assert_int_equal(ro_magsets(d, slot), 0);
	assert_int_equal(ro_cached(d, "mag.pool", true), 0);
	assert_int_equal(ro_cached(d, "mag.cache", false), 0);
	cl_check(w.c);
	shmp_pool_close(w.p);
	shmp_cache_close(w.k);
	CL_OK(shmp_pool_destroy(w.c, "mag.pool"));
	CL_OK(shmp_cache_destroy(w.c, "mag.cache"));
	cl_check(w.c);
	shmp_disconnect(w.c);
}

/* ---- shmp_flush() and destroy while another thread caches ------------------ */

static void test_flush(void **state)
{
	struct cl_daemon *d = *state;
	shmp_client *c = cl_connect(d, "mag-flush");
	uint32_t slot = my_slot(c);
	shmp_pool *p;
	void *e;

	CL_OK(shmp_pool_create(c, "flush.pool", 100, 2, &p));
	assert_non_null(e = shmp_pool_alloc(p, 0));
	CL_OK(shmp_pool_free(p, e));
	assert_non_null(e = shmp_malloc(c, 200));
	shmp_free(c, e);
	assert_true(ro_cached(d, "flush.pool", true) > 0);
	assert_int_equal(pool_stats(p).nr_out, 0);
	CL_OK(shmp_flush(c));
	assert_int_equal(ro_cached(d, "flush.pool", true), 0);
	assert_int_equal(ro_magsets(d, slot), 1); /* the set stays for the next use */
	assert_non_null(e = shmp_pool_alloc(p, 0));
	CL_OK(shmp_pool_free(p, e));
	CL_OK(shmp_flush(c));
	CL_OK(shmp_flush(c)); /* nothing cached: fine */
	shmp_pool_close(p);
	CL_OK(shmp_pool_destroy(c, "flush.pool"));
	cl_check(c);
	shmp_disconnect(c);
	assert_int_equal(ro_magsets(d, slot), 0);
}

struct holder {
	struct work w;
	bool cache;		/* cache objects of the cache, else of the pool */
	bool exit_instead;	/* at stage 3, exit instead of shmp_flush() */
	bool idle;		/* at stage 3, exit: the session may be gone */
};

/* Caches objects of the pool or the cache, parks; flushes or exits. */
static void *holder_main(void *arg)
{
	struct holder *h = arg;
	struct work *w = &h->w;
	void *e, *o;

	if (h->cache ? !(o = shmp_cache_alloc(w->k, 0)) || shmp_cache_free(w->k, o)
		     : !(e = shmp_pool_alloc(w->p, 0)) || shmp_pool_free(w->p, e))
		work_fail(w, "holder");
	set_stage(w, 1);
	wait_stage(w, 3);
	if (h->exit_instead || h->idle)
		return NULL; /* (idle: the session may be gone, no call on it) */
	if (shmp_flush(w->c))
		work_fail(w, "shmp_flush");
	set_stage(w, 4);
	wait_stage(w, 5);
	return NULL;
}

static void destroy_busy_one(struct cl_daemon *d, bool exit_instead)
{
	struct holder h[2];
	shmp_client *c = cl_connect(d, "mag-destroy");
	shmp_pool *p;
	shmp_cache *k;
	pthread_t th[2];

	CL_OK(shmp_pool_create(c, "busy.pool", 64, 2, &p));
	CL_OK(shmp_cache_create(c, "busy.cache", 64, 0, NULL, &k));
	/* thread B caches pool elements, thread C cache objects */
	for (int i = 0; i < 2; i++) {
		h[i] = (struct holder){ .w = { .c = c, .p = p, .k = k,
					       .mu = PTHREAD_MUTEX_INITIALIZER,
					       .cv = PTHREAD_COND_INITIALIZER },
					.cache = i, .exit_instead = exit_instead };
		assert_int_equal(pthread_create(&th[i], NULL, holder_main, &h[i]), 0);
		wait_stage(&h[i].w, 1);
	}
	assert_true(ro_cached(d, "busy.pool", true) > 0);
	assert_true(ro_cached(d, "busy.cache", false) > 0);
	assert_int_equal(pool_stats(p).nr_out, 0);
	assert_int_equal(cache_stats(k).active_objs, 0);
	/* the main thread's destroys are refused while they cache, and say why */
	CL_ERR(shmp_pool_destroy(c, "busy.pool"), -EBUSY);
	if (!strstr(shmp_errmsg(), "magazine"))
		CL_FAIL("the -EBUSY message does not say why: %s", shmp_errmsg());
	printf("  %s\n", shmp_errmsg());
	CL_ERR(shmp_cache_destroy(c, "busy.cache"), -EBUSY);
	if (!strstr(shmp_errmsg(), "magazine"))
		CL_FAIL("the -EBUSY message does not say why: %s", shmp_errmsg());
	printf("  %s\n", shmp_errmsg());
	for (int i = 0; i < 2; i++) {
		set_stage(&h[i].w, 3);
		if (exit_instead)
			pthread_join(th[i], NULL);
		else
			wait_stage(&h[i].w, 4);
		if (h[i].w.failed)
			CL_FAIL("thread %c: %s", 'B' + i, h[i].w.msg);
	}
	assert_int_equal(ro_cached(d, "busy.pool", true), 0);
	assert_int_equal(ro_cached(d, "busy.cache", false), 0);
	shmp_pool_close(p);
	shmp_cache_close(k);
	CL_OK(shmp_pool_destroy(c, "busy.pool"));
	CL_OK(shmp_cache_destroy(c, "busy.cache"));
	for (int i = 0; i < 2 && !exit_instead; i++) {
		set_stage(&h[i].w, 5);
		pthread_join(th[i], NULL);
	}
	cl_check(c);
	shmp_disconnect(c);
}

static void test_destroy_busy_while_cached(void **state)
{
	destroy_busy_one(*state, false); /* thread B calls shmp_flush() */
	destroy_busy_one(*state, true);	 /* thread B exits */
}

/*
 * A stale handle in a thread whose magazine is still bound to the
 * destroyed pool (empty, as destroy requires) must not free an element of
 * the pool recreated in its place into that magazine: -ENOENT, nothing
 * changed.  Thread B binds its magazine and empties it by allocating
 * exactly what one refill brought; the main thread frees those (into its
 * own magazine), destroys and recreates the pool, then B frees one of the
 * new pool's elements through its stale handle.
 */
struct stale {
	struct work w;
	void *got[SP_MAG_OBJS];
	unsigned n;
	void *victim;
	int rc;
};

static void *stale_main(void *arg)
{
	struct stale *st = arg;
	struct work *w = &st->w;

	for (st->n = 0; st->n < sp_mag_cap_of(64) / 2; st->n++)
		if (!(st->got[st->n] = shmp_pool_alloc(w->p, 0)))
			work_fail(w, "stale alloc");
	set_stage(w, 1);
	wait_stage(w, 2);
	st->rc = shmp_pool_free(w->p, st->victim); /* the stale handle */
	set_stage(w, 3);
	return NULL;
}

static void test_stale_handle_bound_magazine(void **state)
{
	struct cl_daemon *d = *state;
	shmp_client *c = cl_connect(d, "mag-stale");
	struct stale st = { .w = { .c = c, .mu = PTHREAD_MUTEX_INITIALIZER,
				   .cv = PTHREAD_COND_INITIALIZER } };
	shmp_pool *fresh;
	uint64_t cached;
	pthread_t th;

	CL_OK(shmp_pool_create(c, "stale.pool", 64, 1, &st.w.p));
	assert_int_equal(pthread_create(&th, NULL, stale_main, &st), 0);
	wait_stage(&st.w, 1);
	if (st.w.failed)
		CL_FAIL("thread B: %s", st.w.msg);
	assert_int_equal(ro_cached(d, "stale.pool", true), 0); /* B's magazine: empty */
	for (unsigned i = 0; i < st.n; i++)
		CL_OK(shmp_pool_free(st.w.p, st.got[i]));
	CL_OK(shmp_pool_destroy(c, "stale.pool"));
	CL_OK(shmp_pool_create(c, "stale.pool", 64, 1, &fresh));
	st.victim = shmp_pool_alloc(fresh, 0);
	assert_non_null(st.victim);
	cached = ro_cached(d, "stale.pool", true); /* what this thread's refill left */
	set_stage(&st.w, 2);
	wait_stage(&st.w, 3);
	assert_int_equal(st.rc, -ENOENT);
	assert_int_equal(pool_stats(fresh).nr_out, 1); /* still out, not cached by B */
	assert_int_equal(ro_cached(d, "stale.pool", true), cached);
	CL_OK(shmp_pool_free(fresh, st.victim));
	pthread_join(th, NULL);
	shmp_pool_close(st.w.p);
	shmp_pool_close(fresh);
	CL_OK(shmp_pool_destroy(c, "stale.pool"));
	cl_check(c);
	shmp_disconnect(c);
}

/* Disconnect while another, idle thread still caches: the daemon frees it. */
static void test_disconnect_with_idle_thread(void **state)
{
	struct cl_daemon *d = *state;
	struct holder h = { .w = { .mu = PTHREAD_MUTEX_INITIALIZER,
				   .cv = PTHREAD_COND_INITIALIZER },
			    .idle = true };
	shmp_client *other = cl_connect(d, "mag-observer");
	shmp_pool *op;
	pthread_t th;
	uint32_t slot;

	h.w.c = cl_connect(d, "mag-leaver");
	slot = my_slot(h.w.c);
	CL_OK(shmp_pool_create(h.w.c, "leave.pool", 64, 2, &h.w.p));
	CL_OK(shmp_cache_create(h.w.c, "leave.cache", 64, 0, NULL, &h.w.k));
	assert_int_equal(pthread_create(&th, NULL, holder_main, &h), 0);
	wait_stage(&h.w, 1);
	assert_int_equal(ro_magsets(d, slot), 1);
	shmp_pool_close(h.w.p);
	shmp_cache_close(h.w.k);
	shmp_disconnect(h.w.c); /* Goodbye: the daemon frees the other thread's set */
	if (!CL_POLL(ro_magsets(d, slot) == 0, 20000))
		CL_FAIL("the idle thread's magazine set outlived the session");
	assert_int_equal(ro_cached(d, "leave.pool", true), 0);
	set_stage(&h.w, 3);
	pthread_join(th, NULL); /* its exit leaves the freed set alone */
	if (h.w.failed)
		CL_FAIL("thread B: %s", h.w.msg);
	CL_OK(shmp_pool_open(other, "leave.pool", &op));
	assert_int_equal(pool_stats(op).nr_out, 0);
	shmp_pool_close(op);
	CL_OK(shmp_pool_destroy(other, "leave.pool"));
	CL_OK(shmp_cache_destroy(other, "leave.cache"));
	cl_check(other);
	shmp_disconnect(other);
}

/*
 * A thread whose magazine served the session, still holding handles (which
 * keep the session object alive) after another thread disconnected it:
 * its next data calls must fail with -ENOTCONN through the slow path, not
 * run the fast path on a set in a mapping that is gone.  (The fast path
 * recognises the session by its sid alone; the disconnect retires it.)
 */
struct after {
	struct work w;
	void *e, *o;		/* one element and one object it holds */
};

static void *after_main(void *arg)
{
	struct after *a = arg;
	struct work *w = &a->w;
	void *x;

	/* one pair each through the magazine, then hold one of each */
	if (!(x = shmp_pool_alloc(w->p, 0)) || shmp_pool_free(w->p, x) ||
	    !(x = shmp_cache_alloc(w->k, 0)) || shmp_cache_free(w->k, x) ||
	    !(a->e = shmp_pool_alloc(w->p, 0)) || !(a->o = shmp_cache_alloc(w->k, 0)))
		work_fail(w, "after: before the disconnect");
	set_stage(w, 1);
	wait_stage(w, 3);
	errno = 0;
	if (shmp_pool_alloc(w->p, SHMP_NOWAIT) || errno != ENOTCONN)
		work_fail(w, "after: pool alloc did not say ENOTCONN");
	if (shmp_pool_free(w->p, a->e) != -ENOTCONN)
		work_fail(w, "after: pool free did not say ENOTCONN");
	errno = 0;
	if (shmp_cache_alloc(w->k, 0) || errno != ENOTCONN)
		work_fail(w, "after: cache alloc did not say ENOTCONN");
	if (shmp_cache_free(w->k, a->o) != -ENOTCONN)
		work_fail(w, "after: cache free did not say ENOTCONN");
	set_stage(w, 4);
	return NULL;
}

static void test_handles_after_disconnect(void **state)
{
	struct cl_daemon *d = *state;
	struct after a = { .w = { .mu = PTHREAD_MUTEX_INITIALIZER,
				  .cv = PTHREAD_COND_INITIALIZER } };
	shmp_client *other = cl_connect(d, "mag-after-observer");
	pthread_t th;

	a.w.c = cl_connect(d, "mag-after");
	CL_OK(shmp_pool_create(a.w.c, "after.pool", 64, 2, &a.w.p));
	CL_OK(shmp_cache_create(a.w.c, "after.cache", 64, 0, NULL, &a.w.k));
	assert_int_equal(pthread_create(&th, NULL, after_main, &a), 0);
	wait_stage(&a.w, 1);
	assert_int_equal(ro_magsets(d, my_slot(a.w.c)), 1);
	shmp_disconnect(a.w.c); /* the handles stay open */
	set_stage(&a.w, 3);
	wait_stage(&a.w, 4);
	pthread_join(th, NULL);
	if (a.w.failed)
		CL_FAIL("thread B: %s", a.w.msg);
	shmp_pool_close(a.w.p);
	shmp_cache_close(a.w.k);
	cl_check(other);
	shmp_disconnect(other);
}

/* ---- bulk calls: runs of pops and pushes ------------------------------------ */

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;

	return x < y ? -1 : x > y;
}

/* @n pointers, none NULL, all different. */
static void all_distinct(void **v, unsigned n)
{
	void **w = malloc(n * sizeof(*w));

	assert_non_null(w);
	memcpy(w, v, n * sizeof(*w));
	qsort(w, n, sizeof(*w), cmp_ptr);
	for (unsigned i = 0; i < n; i++) {
		assert_non_null(w[i]);
		if (i && w[i] == w[i - 1])
			CL_FAIL("bulk alloc handed out %p twice", w[i]);
	}
	free(w);
}

/*
 * The bulk calls pop and push runs straight from the magazine and make one
 * full call where a run stops: more than a magazine holds (refills and
 * flushes in between), every object once, and a bad pointer in the middle
 * of a free run reported while every other one is freed.
 */
static void test_bulk_runs(void **state)
{
	struct cl_daemon *d = *state;
	shmp_client *c = cl_connect(d, "mag-bulk");
	enum { N = 1200 }; /* over two magazines' worth of 64 B objects */
	void **v = calloc(N, sizeof(*v)), **w = calloc(N, sizeof(*w)), *x, *bad[3];
	shmp_pool *p;
	shmp_cache *k;

	assert_true(v && w);
	CL_OK(shmp_pool_create(c, "bulk.pool", 64, 4, &p));
	CL_OK(shmp_cache_create(c, "bulk.cache", 64, 0, NULL, &k));
	for (int round = 0; round < 3; round++) {
		assert_int_equal(shmp_pool_alloc_bulk(p, 0, v, N), N);
		assert_int_equal(shmp_cache_alloc_bulk(k, 0, w, N), N);
		assert_int_equal(pool_stats(p).nr_out, N);
		assert_int_equal(cache_stats(k).active_objs, N);
		all_distinct(v, N);
		all_distinct(w, N);
		for (unsigned i = 0; i < N; i++) /* each is usable, and its own */
			memset(v[i], round, 64), memset(w[i], round + 1, 64);
		for (unsigned i = 0; i < N; i++)
			if (((unsigned char *)v[i])[63] != round ||
			    ((unsigned char *)w[i])[63] != round + 1)
				CL_FAIL("object %u was written by another", i);
		/* a bad pointer in the middle: reported, the rest freed */
		x = v[N / 2];
		v[N / 2] = w[0];
		CL_ERR(shmp_pool_free_bulk(p, v, N), -EINVAL);
		assert_int_equal(pool_stats(p).nr_out, 1);
		CL_OK(shmp_pool_free(p, x));
		CL_OK(shmp_cache_free_bulk(k, w, N));
		assert_int_equal(pool_stats(p).nr_out, 0);
		assert_int_equal(cache_stats(k).active_objs, 0);
	}
	/* a double free inside one call: the first goes, the second is refused */
	assert_int_equal(shmp_cache_alloc_bulk(k, 0, bad, 1), 1);
	bad[1] = bad[0];
	bad[2] = (char *)bad[0] + 8;
	CL_ERR(shmp_cache_free_bulk(k, bad, 3), -EINVAL);
	assert_int_equal(cache_stats(k).active_objs, 0);
	/* unknown flags: nothing taken */
	CL_ERR(shmp_pool_alloc_bulk(p, 0x40, v, 8), -EINVAL);
	assert_int_equal(pool_stats(p).nr_out, 0);
	cl_check(c);
	shmp_pool_close(p);
	shmp_cache_close(k);
	CL_OK(shmp_pool_destroy(c, "bulk.pool"));
	CL_OK(shmp_cache_destroy(c, "bulk.cache"));
	shmp_disconnect(c);
	free(v);
	free(w);
}

/* ---- magazines off ---------------------------------------------------------- */

/* One session's work; @magazines: whether it should have used magazines. */
static void same_results(struct cl_daemon *d, shmp_client *c, const char *tag, bool magazines)
{
	char pname[32], kname[32];
	struct shmp_pool_stats ps;
	struct shmp_cache_stats cs;
	uint32_t slot = my_slot(c);
	void *e[50], *o[50], *m[50];
	shmp_pool *p;
	shmp_cache *k;

	snprintf(pname, sizeof(pname), "%s.pool", tag);
	snprintf(kname, sizeof(kname), "%s.cache", tag);
	CL_OK(shmp_pool_create(c, pname, 64, 4, &p));
	CL_OK(shmp_cache_create(c, kname, 48, 0, NULL, &k));
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 50; i++) {
			assert_non_null(e[i] = shmp_pool_alloc(p, 0));
			assert_non_null(o[i] = shmp_cache_alloc(k, 0));
			assert_non_null(m[i] = shmp_malloc(c, 24));
		}
		for (int i = 0; i < 50; i++) {
			CL_OK(shmp_pool_free(p, e[i]));
			CL_OK(shmp_cache_free(k, o[i]));
			CL_OK(shmp_free_checked(c, m[i]));
		}
	}
	/* what the statistics say is the same either way */
	ps = pool_stats(p);
	cs = cache_stats(k);
	assert_int_equal(ps.nr_out, 0);
	assert_int_equal(ps.curr_nr, 4);
	assert_int_equal(ps.nr_alloc, 150);
	assert_int_equal(ps.nr_free, 150);
	assert_int_equal(ps.nr_reserve_alloc, 0);
	assert_int_equal(cs.active_objs, 0);
	assert_int_equal(cs.nr_alloc, 150);
	assert_int_equal(cs.nr_free, 150);
	/* what differs is underneath: a magazine set and refills, or none */
	if (magazines) {
		assert_int_equal(ro_magsets(d, slot), 1);
		assert_true(ro_refills(d, pname, true) > 0);
		assert_true(ro_refills(d, kname, false) > 0);
		assert_true(ro_cached(d, kname, false) + ro_cached(d, pname, true) > 0);
	} else {
		assert_int_equal(ro_magsets(d, slot), 0);
		assert_int_equal(ro_refills(d, pname, true), 0);
		assert_int_equal(ro_refills(d, kname, false), 0);
		assert_int_equal(ro_cached(d, kname, false) + ro_cached(d, pname, true), 0);
	}
	shmp_pool_close(p);
	shmp_cache_close(k);
	CL_OK(shmp_pool_destroy(c, pname));
	CL_OK(shmp_cache_destroy(c, kname));
	cl_check(c);
}

static void test_magazines_off(void **state)
{
	struct cl_daemon *d = *state;
	struct shmp_connect_opts opts = { .flags = SHMP_CONNECT_NO_MAGAZINES };
	shmp_client *c;

	c = cl_connect(d, "mag-on");
	same_results(d, c, "on", true);
	shmp_disconnect(c);

	CL_OK(shmp_connect_ex(d->sock, "mag-flag-off", &opts, &c));
	same_results(d, c, "flag", false);
	CL_OK(shmp_flush(c)); /* nothing to flush: fine */
	shmp_disconnect(c);

	setenv("SHMPOOL_MAGAZINES", "0", 1);
	c = cl_connect(d, "mag-env-off");
	unsetenv("SHMPOOL_MAGAZINES");
	same_results(d, c, "env", false);
	shmp_disconnect(c);
}

/* ---- the locked path's kept geometry ----------------------------------------- */

/*
 * The locked path passes the core the snapshot its handle took (the
 * session's, for a kmalloc class), not one per call: with the shared
 * descriptors' stride scribbled on after the first call, every call
 * still works in the true geometry.  A snapshot per call would refuse
 * the corrupted geometry (-EFAULT) instead.
 */
static void test_locked_kept_geometry(void **state)
{
	struct cl_daemon *d = *state;
	struct shmp_connect_opts opts = { .flags = SHMP_CONNECT_NO_MAGAZINES };
	uint32_t ids[3], good[3];
	struct sp_seg *s = NULL;
	void *v[3][3], *x;
	shmp_client *c;
	shmp_pool *p;
	shmp_cache *k;

	CL_OK(shmp_connect_ex(d->sock, "kept-geo", &opts, &c));
	CL_OK(shmp_pool_create(c, "kg.pool", 64, 2, &p));
	CL_OK(shmp_cache_create(c, "kg.cache", 48, 0, NULL, &k));
	/* one locked call each: the kmalloc class's snapshot is taken on first use */
	assert_non_null(x = shmp_malloc(c, 24));
	CL_OK(shmp_free_checked(c, x));

	TU_ASSERT_OK(sp_seg_attach(d->shm, -1, 0, &s));
	ids[0] = ro_cache_id(s, "kg.pool", true);
	ids[1] = ro_cache_id(s, "kg.cache", false);
	ids[2] = (uint32_t)sp_kmalloc_class(24);
	for (int i = 0; i < 3; i++) {
		good[i] = sp_caches(s)[ids[i]].stride;
		__atomic_store_n(&sp_caches(s)[ids[i]].stride, good[i] + 8, __ATOMIC_RELAXED);
		assert_false(sp_cache_geometry_ok(s, &sp_caches(s)[ids[i]]));
	}
	for (int j = 0; j < 3; j++) {
		v[0][j] = shmp_pool_alloc(p, SHMP_NOWAIT);
		v[1][j] = shmp_cache_alloc(k, SHMP_NOWAIT);
		v[2][j] = shmp_malloc(c, 24);
		for (int i = 0; i < 3; i++)
			if (!v[i][j])
				CL_FAIL("locked alloc %d of cache %u with a scribbled stride: %s", j,
					ids[i], shmp_errmsg());
	}
	/* objects of one slab, in the true geometry: a whole stride apart */
	for (int i = 0; i < 3; i++)
		assert_int_equal(((uintptr_t)v[i][1] - (uintptr_t)v[i][0]) % good[i], 0);
	for (int j = 0; j < 3; j++) {
		CL_OK(shmp_pool_free(p, v[0][j]));
		CL_OK(shmp_cache_free(k, v[1][j]));
		CL_OK(shmp_free_checked(c, v[2][j]));
	}
	/* and the checks stay: a double free is still refused */
	CL_ERR(shmp_cache_free(k, v[1][0]), -EINVAL);
	for (int i = 0; i < 3; i++)
		__atomic_store_n(&sp_caches(s)[ids[i]].stride, good[i], __ATOMIC_RELAXED);
	sp_seg_detach(s);
	shmp_pool_close(p);
	shmp_cache_close(k);
	CL_OK(shmp_pool_destroy(c, "kg.pool"));
	CL_OK(shmp_cache_destroy(c, "kg.cache"));
	cl_check(c);
	shmp_disconnect(c);
}

/* ---- refused frees on the fast path ----------------------------------------- */

static void test_double_and_wrong_frees(void **state)
{
	struct cl_daemon *d = *state;
	shmp_client *c = cl_connect(d, "mag-frees");
	shmp_pool *p, *p2;
	shmp_cache *k, *k2;
	struct shmp_pool_stats ps;
	struct shmp_cache_stats cs;
	void *e, *e2, *e3, *o, *o2, *m;

	CL_OK(shmp_pool_create(c, "frees.pool", 64, 2, &p));
	CL_OK(shmp_pool_create(c, "frees.pool2", 64, 2, &p2));
	CL_OK(shmp_cache_create(c, "frees.cache", 64, 0, NULL, &k));
	CL_OK(shmp_cache_create(c, "frees.cache2", 64, 0, NULL, &k2));

	/* a double free: the second finds the object cached */
	assert_non_null(e = shmp_pool_alloc(p, 0));
	CL_OK(shmp_pool_free(p, e));
	ps = pool_stats(p);
	CL_ERR(shmp_pool_free(p, e), -EINVAL);
	assert_int_equal(pool_stats(p).nr_bad_free, ps.nr_bad_free + 1);
	assert_int_equal(pool_stats(p).nr_out, 0);
	assert_int_equal(pool_stats(p).nr_free, ps.nr_free);
	assert_non_null(o = shmp_cache_alloc(k, 0));
	CL_OK(shmp_cache_free(k, o));
	cs = cache_stats(k);
	CL_ERR(shmp_cache_free(k, o), -EINVAL);
	assert_int_equal(cache_stats(k).nr_bad_free, cs.nr_bad_free + 1);
	assert_int_equal(cache_stats(k).active_objs, 0);
	assert_non_null(m = shmp_malloc(c, 100));
	CL_OK(shmp_free_checked(c, m));
	CL_ERR(shmp_free_checked(c, m), -EINVAL);
	/* handed out once again, not twice */
	assert_true((e2 = shmp_pool_alloc(p, 0)) == e);
	assert_non_null(e3 = shmp_pool_alloc(p, 0));
	assert_true(e3 != e);

	/* to the wrong pool or cache, or the wrong kind of call */
	assert_non_null(o2 = shmp_cache_alloc(k, 0));
	CL_ERR(shmp_pool_free(p2, e2), -EINVAL);
	CL_ERR(shmp_cache_free(k2, o2), -EINVAL);
	CL_ERR(shmp_cache_free(k, e2), -EINVAL);
	CL_ERR(shmp_pool_free(p, o2), -EINVAL);
	CL_ERR(shmp_free_checked(c, e2), -EINVAL);
	CL_ERR(shmp_free_checked(c, o2), -EINVAL);
	CL_ERR(shmp_pool_free(p, (char *)e2 + 8), -EINVAL);
	CL_ERR(shmp_cache_free(k, (char *)o2 + 8), -EINVAL);
	assert_non_null(m = shmp_malloc(c, 100));
	CL_ERR(shmp_pool_free(p, m), -EINVAL);
	CL_ERR(shmp_cache_free(k, m), -EINVAL);
	/* nothing was lost: each goes back where it belongs */
	CL_OK(shmp_pool_free(p, e2));
	CL_OK(shmp_cache_free(k, o2));
	CL_OK(shmp_free_checked(c, m));
	CL_OK(shmp_flush(c));
	assert_int_equal(pool_stats(p).nr_out, 1); /* e3 */
	CL_OK(shmp_pool_free(p, e3));
	CL_ERR(shmp_pool_free(p, e3), -EINVAL);
	assert_int_equal(pool_stats(p).nr_out, 0);
	assert_int_equal(pool_stats(p2).nr_out, 0);
	assert_int_equal(cache_stats(k).active_objs, 0);
	assert_int_equal(cache_stats(k2).active_objs, 0);
	cl_check(c);
	shmp_pool_close(p);
	shmp_pool_close(p2);
	shmp_cache_close(k);
	shmp_cache_close(k2);
	CL_OK(shmp_pool_destroy(c, "frees.pool"));
	CL_OK(shmp_pool_destroy(c, "frees.pool2"));
	CL_OK(shmp_cache_destroy(c, "frees.cache"));
	CL_OK(shmp_cache_destroy(c, "frees.cache2"));
	shmp_disconnect(c);
}

/* ---- a killed process with cached objects ----------------------------------- */

struct victim_arg {
	struct cl_daemon *d;
	int pipe[2];
};

static int victim(void *arg)
{
	struct victim_arg *a = arg;
	struct shmp_segment_stats st;
	shmp_client *c;
	shmp_pool *rp, *kp;
	shmp_cache *k;
	void *v[40];
	uint32_t slot;

	CHILD_CHECK(shmp_connect(a->d->sock, "mag-victim", &c) == 0);
	CHILD_CHECK(shmp_pool_open(c, "kill.reclaim", &rp) == 0);
	CHILD_CHECK(shmp_pool_open(c, "kill.keep", &kp) == 0);
	CHILD_CHECK(shmp_cache_open(c, "kill.cache", &k) == 0);
	for (int i = 0; i < 40; i++) /* 35 cached, 5 held */
		CHILD_CHECK((v[i] = shmp_pool_alloc(rp, 0)) != NULL);
	for (int i = 5; i < 40; i++)
		CHILD_CHECK(shmp_pool_free(rp, v[i]) == 0);
	for (int i = 0; i < 40; i++) /* all cached */
		CHILD_CHECK((v[i] = shmp_pool_alloc(kp, 0)) != NULL);
	for (int i = 0; i < 40; i++)
		CHILD_CHECK(shmp_pool_free(kp, v[i]) == 0);
	for (int i = 0; i < 10; i++) /* 8 cached, 2 held (orphans) */
		CHILD_CHECK((v[i] = shmp_cache_alloc(k, 0)) != NULL);
	for (int i = 2; i < 10; i++)
		CHILD_CHECK(shmp_cache_free(k, v[i]) == 0);
	CHILD_CHECK((v[0] = shmp_malloc(c, 500)) != NULL);
	shmp_free(c, v[0]);
	CHILD_CHECK(shmp_segment_stats(c, &st) == 0);
	slot = st.slot;
	CHILD_CHECK(write(a->pipe[1], &slot, sizeof(slot)) == sizeof(slot));
	for (;;)
		pause();
}

static void test_killed_process_cached(void **state)
{
	struct cl_daemon *d = *state;
	struct shmp_pool_opts reclaim = { .flags = SHMP_POOL_RECLAIM_ON_EXIT };
	struct victim_arg a = { .d = d };
	shmp_client *c = cl_connect(d, "mag-survivor");
	shmp_pool *rp, *kp;
	shmp_cache *k;
	uint32_t slot;
	pid_t pid;

	assert_int_equal(pipe(a.pipe), 0);
	CL_OK(shmp_pool_create_ex(c, "kill.reclaim", 64, 4, &reclaim, &rp));
	CL_OK(shmp_pool_create(c, "kill.keep", 64, 4, &kp));
	CL_OK(shmp_cache_create(c, "kill.cache", 40, 0, NULL, &k));
	pid = cl_fork(victim, &a);
	assert_int_equal(read(a.pipe[0], &slot, sizeof(slot)), sizeof(slot));
	assert_int_equal(pool_stats(rp).nr_out, 5);
	assert_int_equal(pool_stats(kp).nr_out, 0);
	assert_int_equal(cache_stats(k).active_objs, 2);
	/* (a pool and a cache may share a magazine: ids equal modulo 32) */
	assert_true(ro_cached(d, "kill.reclaim", true) + ro_cached(d, "kill.keep", true) +
		    ro_cached(d, "kill.cache", false) >= 40);
	assert_int_equal(ro_magsets(d, slot), 1);
	assert_true(ro_mag_tagged(d, "kill.reclaim", true) + ro_mag_tagged(d, "kill.keep", true) +
		    ro_mag_tagged(d, "kill.cache", false) >= 40);
	kill(pid, SIGKILL);
	assert_int_equal(tu_wait(pid), 128 + SIGKILL);

	/* the daemon notices: reclaimed, cached objects and sets freed */
	if (!CL_POLL(pool_stats(rp).nr_out == 0 && ro_magsets(d, slot) == 0, 20000))
		CL_FAIL("after the kill: %llu elements out, %u magazine sets left",
			(unsigned long long)pool_stats(rp).nr_out, ro_magsets(d, slot));
	assert_int_equal(ro_mag_tagged(d, "kill.reclaim", true), 0);
	assert_int_equal(ro_mag_tagged(d, "kill.keep", true), 0);
	assert_int_equal(ro_mag_tagged(d, "kill.cache", false), 0);
	assert_int_equal(pool_stats(kp).nr_out, 0);
	assert_int_equal(pool_stats(rp).curr_nr, 4);
	assert_int_equal(cache_stats(k).active_objs, 2); /* orphans stay attributed */
	cl_check(c);
	shmp_pool_close(rp);
	shmp_pool_close(kp);
	shmp_cache_close(k);
	CL_OK(shmp_pool_destroy(c, "kill.reclaim"));
	CL_OK(shmp_pool_destroy(c, "kill.keep"));
	shmp_disconnect(c);
}

/* ---- fork ------------------------------------------------------------------- */

struct fork_arg {
	struct cl_daemon *d;
	shmp_client *c;
	shmp_pool *p;
	shmp_cache *k;
	void *elem;	/* held by the parent */
};

static int fork_child(void *arg)
{
	struct fork_arg *a = arg;
	shmp_client *c2;
	shmp_pool *p2;
	void *e;

	errno = 0;
	CHILD_CHECK(shmp_pool_alloc(a->p, 0) == NULL && errno == ECHILD);
	errno = 0;
	CHILD_CHECK(shmp_cache_alloc(a->k, 0) == NULL && errno == ECHILD);
	errno = 0;
	CHILD_CHECK(shmp_malloc(a->c, 16) == NULL && errno == ECHILD);
	CHILD_CHECK(shmp_pool_free(a->p, a->elem) == -ECHILD);
	CHILD_CHECK(shmp_flush(a->c) == -ECHILD);
	/* its own session gets magazines of its own */
	CHILD_CHECK(shmp_connect(a->d->sock, "mag-fork-child", &c2) == 0);
	CHILD_CHECK(shmp_pool_open(c2, "fork.pool", &p2) == 0);
	for (int i = 0; i < 100; i++) {
		CHILD_CHECK((e = shmp_pool_alloc(p2, 0)) != NULL);
		CHILD_CHECK(shmp_pool_free(p2, e) == 0);
	}
	shmp_pool_close(p2);
	shmp_disconnect(c2);
	/* the inherited ones: local memory only */
	shmp_pool_close(a->p);
	shmp_cache_close(a->k);
	shmp_disconnect(a->c);
	return 0;
}

static void test_fork_child(void **state)
{
	struct cl_daemon *d = *state;
	struct fork_arg a = { .d = d };
	void *v[20];
	uint64_t cached;
	uint32_t slot;

	a.c = cl_connect(d, "mag-fork-parent");
	slot = my_slot(a.c);
	CL_OK(shmp_pool_create(a.c, "fork.pool", 64, 2, &a.p));
	CL_OK(shmp_cache_create(a.c, "fork.cache", 64, 0, NULL, &a.k));
	assert_non_null(a.elem = shmp_pool_alloc(a.p, 0));
	memset(a.elem, 0x7e, 64);
	for (int i = 0; i < 20; i++)
		assert_non_null(v[i] = shmp_cache_alloc(a.k, 0));
	for (int i = 0; i < 20; i++)
		CL_OK(shmp_cache_free(a.k, v[i]));
	cached = ro_cached(d, "fork.cache", false);
	assert_true(cached > 0);

	assert_int_equal(tu_wait(cl_fork(fork_child, &a)), 0);

	/* the parent's magazines are as they were, and keep working */
	assert_int_equal(ro_cached(d, "fork.cache", false), cached);
	assert_int_equal(ro_magsets(d, slot), 1);
	for (int i = 0; i < 20; i++)
		assert_non_null(v[i] = shmp_cache_alloc(a.k, 0));
	assert_int_equal(cache_stats(a.k).active_objs, 20);
	for (int i = 0; i < 20; i++)
		CL_OK(shmp_cache_free(a.k, v[i]));
	assert_int_equal(((uint8_t *)a.elem)[63], 0x7e);
	assert_int_equal(pool_stats(a.p).nr_out, 1);
	CL_OK(shmp_pool_free(a.p, a.elem));
	assert_int_equal(pool_stats(a.p).nr_out, 0);
	cl_check(a.c);
	shmp_pool_close(a.p);
	shmp_cache_close(a.k);
	CL_OK(shmp_pool_destroy(a.c, "fork.pool"));
	CL_OK(shmp_cache_destroy(a.c, "fork.cache"));
	shmp_disconnect(a.c);
}

/* ---- (fault-injection build) killed inside the magazine code ---------------- */

#if SP_FAULT_INJECTION
struct crash_arg {
	struct cl_daemon *d;
	const char *point;
};

/* Pool, cache and kmalloc through the magazines: refills, flushes, two threads. */
static void *mag_workload(void *arg)
{
	struct work *w = arg;

	churn(w, 5, 3000);
	return NULL;
}

static int mag_crasher(void *arg)
{
	struct crash_arg *a = arg;
	struct work w = { 0 };
	pthread_t th;

	setenv("SHMPOOL_CRASH_POINT", a->point, 1);
	CHILD_CHECK(shmp_connect(a->d->sock, "mag-crasher", &w.c) == 0);
	CHILD_CHECK(shmp_pool_open(w.c, "crash.pool", &w.p) == 0);
	CHILD_CHECK(shmp_cache_open(w.c, "crash.cache", &w.k) == 0);
	CHILD_CHECK(pthread_create(&th, NULL, mag_workload, &w) == 0);
	mag_workload(&w);
	pthread_join(th, NULL);
	CHILD_CHECK(!w.failed);
	shmp_disconnect(w.c);
	return 0; /* the point was never reached */
}
#endif

static void test_crash_points(void **state)
{
#if SP_FAULT_INJECTION
	static const char *const points[] = {
		"mag.set.linked", "mag.set.linked:2", "mag.refill", "mag.refill:7", "mag.pop",
		"mag.pop:300", "mag.push", "mag.push:400", "mag.flush", "mag.flush:50",
	};
	struct cl_daemon *d = *state;
	struct shmp_pool_opts opts = { .flags = SHMP_POOL_RECLAIM_ON_EXIT };
	struct work w = { 0 };
	uint32_t slot;

	w.c = cl_connect(d, "mag-survivor");
	slot = my_slot(w.c);
	CL_OK(shmp_pool_create_ex(w.c, "crash.pool", 64, 4, &opts, &w.p));
	CL_OK(shmp_cache_create(w.c, "crash.cache", 40, 0, NULL, &w.k));
	for (unsigned i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
		struct crash_arg a = { .d = d, .point = points[i] };
		int st = tu_wait(cl_fork(mag_crasher, &a));

		if (st != 128 + SIGKILL)
			CL_FAIL("crash point %s: the child exited with %d, not SIGKILL", points[i],
				st);
		/* its reclaim-on-exit elements, cached objects and sets come back */
		if (!CL_POLL(pool_stats(w.p).nr_out == 0 && ro_magsets_of(d, slot, true) == 0,
			     20000))
			CL_FAIL("after %s: %llu elements out, %u magazine sets left", points[i],
				(unsigned long long)pool_stats(w.p).nr_out,
				ro_magsets_of(d, slot, true));
		assert_int_equal(ro_mag_tagged(d, "crash.pool", true), 0);
		assert_int_equal(ro_mag_tagged(d, "crash.cache", false), 0);
		assert_int_equal(pool_stats(w.p).curr_nr, 4);
		cl_check(w.c); /* what it held of the cache stays, attributed to it */
		/* the survivor works on, through its own magazines */
		churn(&w, i, 1000);
		if (w.failed)
			CL_FAIL("after %s: the survivor's workload failed: %s", points[i], w.msg);
		assert_int_equal(pool_stats(w.p).nr_out, 0);
		CL_OK(shmp_flush(w.c)); /* so that what is cached next is the victim's */
	}
	CL_OK(shmp_flush(w.c));
	cl_check(w.c);
	shmp_pool_close(w.p);
	shmp_cache_close(w.k);
	shmp_disconnect(w.c);
#else
	(void)state;
	skip(); /* needs -Dfault_injection=true */
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_thread_exit_returns_cached, cl_setup,
						cl_teardown),
		cmocka_unit_test_setup_teardown(test_flush, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_destroy_busy_while_cached, cl_setup,
						cl_teardown),
		cmocka_unit_test_setup_teardown(test_stale_handle_bound_magazine, cl_setup,
						cl_teardown),
		cmocka_unit_test_setup_teardown(test_disconnect_with_idle_thread, cl_setup,
						cl_teardown),
		cmocka_unit_test_setup_teardown(test_handles_after_disconnect, cl_setup,
						cl_teardown),
		cmocka_unit_test_setup_teardown(test_bulk_runs, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_magazines_off, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_locked_kept_geometry, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_double_and_wrong_frees, cl_setup,
						cl_teardown),
		cmocka_unit_test_setup_teardown(test_killed_process_cached, cl_setup,
						cl_teardown),
		cmocka_unit_test_setup_teardown(test_fork_child, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_crash_points, cl_setup, cl_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
