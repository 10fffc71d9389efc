/* SPDX-License-Identifier: MIT */
/*
 * test-held.c - the held bound (layout.h, "The held bound"): per slot,
 * sp_client.held plus the held of its magazines bounds what a walk of its
 * caches could find (objects with its user tag, or its magazine tag while
 * no magazine of its lists them).  A release of a slot that is not ALIVE
 * and whose bound is <= 0 walks no cache its magazines do not list.
 *
 * A slot that allocates and frees its own objects, through its magazines
 * and through the locked path in every combination, ends with a bound of
 * exactly 0 and its release walks nothing (s->nr_walk_caches does not
 * move).  A slot whose objects another slot freed (a locked free, a
 * push into the other's magazine, one at a time or in a run) is counted
 * down by the freer and skipped as well; one that dies holding an object
 * (taken from its magazine) is walked and the object found.  The checker reports a bound scribbled below what the
 * slot holds, for a live slot only when told the segment is quiescent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "magazine.h"
#include "test-util.h"

#define BIG_OBJS 3000 /* the other slot's: many slabs to walk */

static uint32_t cache_new(struct sp_seg *s, const char *name, uint64_t size)
{
	uint32_t id;

	TU_ASSERT_OK(sp_cache_create(s, name, size, 0, 0, NULL, &id));
	return id;
}

/* A cache another slot (the segment's) fills, so a walk of it shows. */
static struct sp_cache *big_cache(struct sp_seg *s)
{
	struct sp_cache *c = sp_cache_get(s, cache_new(s, "big", 64));
	sp_off_t off;

	for (unsigned i = 0; i < BIG_OBJS; i++)
		TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &off));
	return c;
}

static sp_off_t mag_alloc(struct sp_seg *t, struct sp_cache *c, struct sp_mag *m)
{
	sp_off_t off;

	if (!sp_mag_pop(t, c, m, &off)) {
		assert_true(sp_mag_refill(t, c, m) > 0);
		assert_true(sp_mag_pop(t, c, m, &off));
	}
	return off;
}

static void mag_free(struct sp_seg *t, struct sp_cache *c, struct sp_mag *m, sp_off_t off)
{
	enum sp_mag_push_result r = sp_mag_push(t, c, m, off);

	if (r == SP_MAG_FULL) {
		TU_ASSERT_OK(sp_mag_flush(t, c, m, sp_mag_cap(c) / 2));
		r = sp_mag_push(t, c, m, off);
	}
	assert_int_equal(r, SP_MAG_PUSHED);
}

static int64_t bound(struct sp_seg *s, uint32_t slot)
{
	int64_t sum = -999;

	TU_ASSERT_OK(sp_slot_held_sum(s, slot, &sum, NULL));
	return sum;
}

/* Unregister @t's slot as the daemon does (Goodbye); return the caches
 * walked for it. */
static uint64_t goodbye(struct sp_seg *s, struct sp_seg *t)
{
	uint64_t c0 = s->nr_walk_caches;
	uint32_t slot = t->slot;

	TU_ASSERT_OK(sp_client_unregister(s, slot));
	sp_seg_detach(t);
	return s->nr_walk_caches - c0;
}

/* Own objects, every way in and out: the bound ends at 0, no walk. */
static void own_frees_skip_walk(void **state)
{
	struct sp_seg *s = tu_seg_new(32u << 20), *t = tu_seg_reattach(s, "own");
	struct sp_cache *c = big_cache(s);
	struct sp_magset *set;
	struct sp_mag *m;
	sp_off_t v[600];
	uint64_t k0 = s->nr_walk_skips;
	uint32_t slot = t->slot;

	(void)state;
	TU_ASSERT_OK(sp_magset_create(t, 1, &set));
	TU_ASSERT_OK(sp_mag_bind(t, set, c, &m));
	/* magazine in, magazine out: refills, pops, pushes, a flush */
	for (unsigned i = 0; i < 600; i++)
		v[i] = mag_alloc(t, c, m);
	assert_int_equal(bound(s, slot), 600);
	for (unsigned i = 0; i < 600; i++)
		mag_free(t, c, m, v[i]);
	assert_int_equal(bound(s, slot), 0);
	/* magazine in, locked out; locked in, magazine out; locked both */
	for (unsigned i = 0; i < 10; i++)
		v[i] = mag_alloc(t, c, m);
	for (unsigned i = 10; i < 20; i++)
		TU_ASSERT_OK(sp_cache_alloc(t, c, t->owner, &v[i]));
	assert_int_equal(bound(s, slot), 20);
	for (unsigned i = 0; i < 10; i++)
		TU_ASSERT_OK(sp_cache_free(t, c, v[i]));
	for (unsigned i = 10; i < 15; i++)
		mag_free(t, c, m, v[i]);
	for (unsigned i = 15; i < 20; i++)
		TU_ASSERT_OK(sp_cache_free(t, c, v[i]));
	assert_int_equal(bound(s, slot), 0);
	/* a kmalloc class through the locked path too */
	TU_ASSERT_OK(sp_kmalloc(t, 200, &v[0]));
	assert_int_equal(bound(s, slot), 1);
	TU_ASSERT_OK(sp_kfree(t, v[0]));
	assert_int_equal(bound(s, slot), 0);
	/* the set goes (thread exit): its counts move to the slot */
	sp_magset_destroy(t, set);
	assert_int_equal(bound(s, slot), 0);
	tu_check_count(s, SP_CHECK_QUIESCENT);
	assert_int_equal(tu_check_count(s, SP_CHECK_QUIESCENT), 0);

	assert_int_equal(goodbye(s, t), 0); /* the skip: no cache walked */
	assert_true(s->nr_walk_skips > k0);
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	assert_int_equal(sp_clients(s)[slot].held, 0);
	tu_check_clean(s);
	tu_seg_free(s);
}

/* A slot that dies with its magazine still listing objects (no flush):
 * the bound stays 0, the listed cache is walked for them, nothing else. */
static void listed_cache_still_walked(void **state)
{
	struct sp_seg *s = tu_seg_new(32u << 20), *t = tu_seg_reattach(s, "listed");
	struct sp_cache *c = big_cache(s);
	struct sp_cache *other = sp_cache_get(s, cache_new(s, "other", 32));
	struct sp_magset *set;
	struct sp_mag *m;
	struct sp_holdings h;
	uint32_t slot = t->slot;
	sp_off_t off;
	uint64_t c0;

	(void)state;
	TU_ASSERT_OK(sp_magset_create(t, 1, &set));
	TU_ASSERT_OK(sp_mag_bind(t, set, c, &m));
	mag_free(t, c, m, mag_alloc(t, c, m)); /* cached objects, listed */
	TU_ASSERT_OK(sp_cache_alloc(t, other, t->owner, &off));
	TU_ASSERT_OK(sp_cache_free(t, other, off));
	assert_true(m->nr > 0);
	assert_int_equal(bound(s, slot), 0);
	TU_ASSERT_OK(sp_client_mark_dead(s, slot)); /* died: the set stays */
	c0 = s->nr_walk_caches;
	TU_ASSERT_OK(sp_slot_holdings(s, slot, &h));
	assert_int_equal(s->nr_walk_caches - c0, 1); /* "big", not "other" */
	assert_int_equal(h.objects, 0);
	assert_int_equal(h.cached, m->nr);
	TU_ASSERT_OK(sp_slot_release(s, slot, false, NULL));
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	sp_seg_detach(t);
	tu_check_clean(s);
	tu_seg_free(s);
}

/* Another slot freed our objects: it counted them down, no walk. */
static void foreign_frees_count_down(void **state)
{
	struct sp_seg *s = tu_seg_new(32u << 20), *t = tu_seg_reattach(s, "producer");
	struct sp_seg *u = tu_seg_reattach(s, "consumer");
	struct sp_cache *c = big_cache(s);
	struct sp_magset *ts, *us;
	struct sp_mag *tm, *um;
	struct sp_mag_geo g;
	void *run[8];
	sp_off_t a, b;

	(void)state;
	TU_ASSERT_OK(sp_magset_create(t, 1, &ts));
	TU_ASSERT_OK(sp_mag_bind(t, ts, c, &tm));
	TU_ASSERT_OK(sp_magset_create(u, 2, &us));
	TU_ASSERT_OK(sp_mag_bind(u, us, c, &um));
	/* t's locked alloc pushed into u's magazine; t's pop freed locked by u */
	TU_ASSERT_OK(sp_cache_alloc(t, c, t->owner, &a));
	b = mag_alloc(t, c, tm);
	mag_free(u, c, um, a);
	TU_ASSERT_OK(sp_cache_free(u, c, b));
	assert_int_equal(bound(s, t->slot), 1); /* the locked free counted down at once */
	assert_int_equal(um->owed, (uint32_t)t->owner << 16 | 1); /* the push owes it */
	sp_mag_settle(u, um); /* as u's next refill or flush does */
	assert_int_equal(um->owed, 0);
	assert_int_equal(bound(s, t->slot), 0);
	assert_int_equal(bound(s, u->slot), 0); /* u's push of another's: net 0 */
	/* t's objects pushed by u in one run */
	for (int i = 0; i < 8; i++)
		run[i] = t->base + mag_alloc(t, c, tm);
	assert_int_equal(bound(s, t->slot), 8);
	for (int i = 0; i < 8; i++) /* u's pointers into the same objects */
		run[i] = u->base + ((uint8_t *)run[i] - t->base);
	assert_true(sp_mag_geo_init(u, c, &g));
	assert_int_equal(sp_mag_put_run(u, &g, um, run, 8), 8);
	assert_int_equal(bound(s, t->slot), 8); /* owed ... */
	assert_int_equal(bound(s, u->slot), 0);
	sp_magset_destroy(t, ts);
	sp_magset_destroy(u, us); /* ... and paid as the set goes */
	assert_int_equal(bound(s, t->slot), 0);
	assert_int_equal(goodbye(s, u), 0);
	assert_int_equal(goodbye(s, t), 0); /* the skip: nothing of t's is left */
	tu_check_clean(s);
	tu_seg_free(s);
}

/* A slot that dies holding what it popped: counted, walked, found. */
static void held_object_found(void **state)
{
	struct sp_seg *s = tu_seg_new(32u << 20), *t = tu_seg_reattach(s, "holder");
	struct sp_cache *c = big_cache(s);
	struct sp_magset *set;
	struct sp_mag *m;
	struct sp_holdings h;
	uint32_t slot = t->slot;
	uint64_t c0;

	(void)state;
	TU_ASSERT_OK(sp_magset_create(t, 1, &set));
	TU_ASSERT_OK(sp_mag_bind(t, set, c, &m));
	mag_alloc(t, c, m); /* kept */
	sp_magset_destroy(t, set);
	assert_int_equal(bound(s, slot), 1);
	c0 = s->nr_walk_caches;
	TU_ASSERT_OK(sp_client_unregister(s, slot));
	assert_true(s->nr_walk_caches > c0);
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_DEAD); /* still holds it */
	TU_ASSERT_OK(sp_slot_holdings(s, slot, &h));
	assert_int_equal(h.objects, 1);
	TU_ASSERT_OK(sp_slot_release(s, slot, false, &h));
	assert_int_equal(h.objects, 1);
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	sp_seg_detach(t);
	tu_check_clean(s);
	tu_seg_free(s);
}

static bool reports(struct sp_seg *s, int flags, const char *needle)
{
	struct sp_report r = { .cap = 64 };
	bool found = false;

	r.v = calloc(r.cap, sizeof(*r.v));
	sp_check(s, flags, &r);
	for (unsigned i = 0; i < r.nr && i < r.cap; i++)
		found |= strstr(r.v[i].what, needle) != NULL;
	sp_report_free(&r);
	return found;
}

/* A decrement too many (a scribble): the checker says the release would
 * skip what the slot holds. */
static void checker_reports_undercount(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20), *t = tu_seg_reattach(s, "under");
	struct sp_cache *c = sp_cache_get(s, cache_new(s, "c", 48));
	uint32_t slot = t->slot;
	sp_off_t off;

	(void)state;
	TU_ASSERT_OK(sp_cache_alloc(t, c, t->owner, &off));
	assert_int_equal(tu_check_count(s, SP_CHECK_QUIESCENT), 0);
	sp_clients(s)[slot].held = 0;
	assert_true(reports(s, SP_CHECK_QUIESCENT, "held bound is 0"));
	assert_true(reports(s, SP_CHECK_QUIESCENT | SP_CHECK_NOLOCK, "held bound is 0"));
	/* live, and not said to be quiescent: its threads may be mid-push */
	assert_int_equal(tu_check_count(s, 0), 0);
	TU_ASSERT_OK(sp_client_mark_dead(s, slot));
	assert_true(reports(s, 0, "held bound is 0")); /* dead: always checked */
	sp_clients(s)[slot].held = 1;
	tu_check_clean(s);
	TU_ASSERT_OK(sp_slot_release(s, slot, false, NULL));
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	sp_seg_detach(t);
	tu_check_clean(s);
	tu_seg_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(own_frees_skip_walk),
		cmocka_unit_test(listed_cache_still_walked),
		cmocka_unit_test(foreign_frees_count_down),
		cmocka_unit_test(held_object_found),
		cmocka_unit_test(checker_reports_undercount),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
