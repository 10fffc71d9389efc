/* SPDX-License-Identifier: MIT */
/*
 * test-slotwalk.c - the per-slot filter of where a slot may hold something
 * (sp_client.used / flags, client.c) and the walks that trust it.
 *
 * Every path that writes a tag naming a slot sets the slot's bit for that
 * cache (or its blocks flag) first: a locked alloc from a named cache or a
 * kmalloc class, a magazine bind (a slot that only freed into its magazine
 * holds the bound cache's objects cached), a pool element taken from the
 * reserve, kmalloc large blocks, raw blocks, page-pool elements and magazine
 * sets.  The walk of one slot (disconnect, death, holdings) visits only the
 * caches its filter names, and the page table only with the blocks flag: a
 * cache it never touched is not walked, even one whose descriptor is
 * scribbled (which would otherwise keep a DEAD slot for ever).  The checker
 * reports a tag naming a slot whose filter lacks the cache or the blocks
 * flag.  A handle remembers the bits it found set for its own tag and does
 * not look again until its owner changes.  A walk of a big cache drops the
 * cache lock every 64 slabs: another
 * thread gets the lock during the walk, and a DEAD slot's objects are all
 * freed while others allocate from the same cache.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "magazine.h"
#include "test-util.h"

static bool has_bit(struct sp_seg *s, uint32_t slot, uint32_t id)
{
	return sp_slot_may_hold(s, slot, id);
}

static bool filter_empty(struct sp_seg *s, uint32_t slot)
{
	struct sp_client *cl = &sp_clients(s)[slot];

	for (unsigned i = 0; i < SP_SLOT_FILTER_BITS / 64; i++)
		if (cl->used[i])
			return false;
	return cl->flags == 0;
}

static uint32_t nbits(struct sp_seg *s, uint32_t slot)
{
	uint32_t n = 0;

	for (unsigned i = 0; i < SP_SLOT_FILTER_BITS / 64; i++)
		n += (uint32_t)__builtin_popcountll(sp_clients(s)[slot].used[i]);
	return n;
}

static uint32_t cache_new(struct sp_seg *s, const char *name, uint64_t size)
{
	uint32_t id;

	TU_ASSERT_OK(sp_cache_create(s, name, size, 0, 0, NULL, &id));
	return id;
}

static uint32_t pool_new(struct sp_seg *s, const char *name, uint32_t backing, uint64_t size,
			 uint32_t min, uint32_t max)
{
	struct sp_pool_params pp = {
		.elem_size = size, .min_nr = min, .max_nr = max, .backing = backing,
	};
	uint32_t id = UINT32_MAX;

	TU_ASSERT_OK(sp_pool_create(s, name, &pp, &id));
	return id;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- the filter is set on every path ------------------------------------- */

static void filter_set_on_every_path(void **state)
{
	struct sp_seg *s = tu_seg_new(32u << 20);
	struct sp_seg *a = tu_seg_reattach(s, "cache"), *b = tu_seg_reattach(s, "kmalloc");
	struct sp_seg *c = tu_seg_reattach(s, "large"), *d = tu_seg_reattach(s, "raw");
	struct sp_seg *e = tu_seg_reattach(s, "pages"), *f = tu_seg_reattach(s, "reserve");
	struct sp_seg *g = tu_seg_reattach(s, "magazine"), *h = tu_seg_reattach(s, "magset");
	uint32_t x = cache_new(s, "x", 72), y = cache_new(s, "y", 72);
	uint32_t pp = pool_new(s, "pages", SP_BACK_PAGES, 5000, 1, 0);
	uint32_t rp = pool_new(s, "capped", SP_BACK_PAGES, 5000, 2, 2);
	uint32_t sp = pool_new(s, "slabcap", SP_BACK_SLAB, 40, 2, 2);
	uint32_t k64 = (uint32_t)sp_kmalloc_class(64);
	struct sp_magset *set;
	struct sp_mag *m;
	sp_off_t off, obj;

	(void)state;
	/* a new slot's filter is empty, and the segment's own slot's is not
	 * touched by the others' allocations */
	assert_true(filter_empty(s, a->slot));
	assert_true(filter_empty(s, h->slot));

	/* a named cache: its bit, nothing else */
	TU_ASSERT_OK(sp_cache_alloc(a, sp_cache_get(a, x), a->owner, &off));
	assert_true(has_bit(s, a->slot, x));
	assert_false(has_bit(s, a->slot, y));
	assert_false(has_bit(s, a->slot, SP_NOTE_BLOCKS));
	assert_int_equal(nbits(s, a->slot), 1);

	/* a kmalloc class */
	TU_ASSERT_OK(sp_kmalloc(b, 60, &off));
	assert_true(has_bit(s, b->slot, k64));
	assert_false(has_bit(s, b->slot, SP_NOTE_BLOCKS));

	/* a large kmalloc block: the blocks flag */
	TU_ASSERT_OK(sp_kmalloc(c, 3u << 20, &off));
	assert_true(has_bit(s, c->slot, SP_NOTE_BLOCKS));

	/* raw pages */
	TU_ASSERT_OK(sp_buddy_alloc(d, 2, &off));
	assert_true(has_bit(s, d->slot, SP_NOTE_BLOCKS));
	assert_int_equal(nbits(s, d->slot), 0);

	/* a page-pool element */
	TU_ASSERT_OK(sp_pool_alloc(e, sp_pool_get(e, pp), SP_ALLOC_NOWAIT, 0, &off));
	assert_true(has_bit(s, e->slot, SP_NOTE_BLOCKS));

	/* elements handed out from the reserve: a page pool at its cap (the
	 * backing is not even tried), then a slab pool at its cap */
	TU_ASSERT_OK(sp_pool_alloc(f, sp_pool_get(f, rp), SP_ALLOC_NOWAIT, 0, &off));
	assert_true(has_bit(s, f->slot, SP_NOTE_BLOCKS));
	TU_ASSERT_OK(sp_pool_alloc(f, sp_pool_get(f, sp), SP_ALLOC_NOWAIT, 0, &off));
	assert_true(has_bit(s, f->slot, sp_pool_cache_id(s, sp)));

	/* a magazine set: no blocks flag (its slot's list finds it, and a set
	 * torn by a death is marked loose by the registry's recovery), and
	 * binding a magazine to cache y sets y's bit before any object of y
	 * is tagged cached by the slot */
	TU_ASSERT_OK(sp_magset_create(h, 1, &set));
	assert_false(has_bit(s, h->slot, SP_NOTE_BLOCKS));
	assert_int_equal(sp_clients(s)[h->slot].mag_head,
			 ((uint8_t *)set - h->data) / SP_PAGE_SIZE + 1);
	assert_int_equal(nbits(s, h->slot), 0);
	TU_ASSERT_OK(sp_mag_bind(h, set, sp_cache_get(h, y), &m));
	assert_true(has_bit(s, h->slot, y));
	assert_int_equal(nbits(s, h->slot), 1);

	/* a slot that only frees into its magazine: object of y allocated by
	 * the segment's own slot, freed by g's thread into g's magazine */
	TU_ASSERT_OK(sp_cache_alloc(s, sp_cache_get(s, y), s->owner, &obj));
	sp_magset_destroy(h, set);
	TU_ASSERT_OK(sp_magset_create(g, 2, &set));
	TU_ASSERT_OK(sp_mag_bind(g, set, sp_cache_get(g, y), &m));
	assert_int_equal(sp_mag_push(g, sp_cache_get(g, y), m, obj), SP_MAG_PUSHED);
	assert_true(has_bit(s, g->slot, y));
	{
		struct sp_holdings hd;

		TU_ASSERT_OK(sp_slot_holdings(s, g->slot, &hd));
		assert_int_equal(hd.cached, 1);
		assert_int_equal(hd.magsets, 1);
	}
	tu_check_clean(s);

	/* g dies with the object cached: its release frees it (found through
	 * the filter) and the slot, whose filter is then clear */
	TU_ASSERT_OK(sp_client_mark_dead(s, g->slot));
	TU_ASSERT_OK(sp_slot_release(s, g->slot, false, NULL));
	assert_int_equal(sp_clients(s)[g->slot].state, SP_CLIENT_FREE);
	assert_true(filter_empty(s, g->slot));
	tu_check_clean(s);

	sp_seg_detach(a);
	sp_seg_detach(b);
	sp_seg_detach(c);
	sp_seg_detach(d);
	sp_seg_detach(e);
	sp_seg_detach(f);
	sp_seg_detach(g);
	sp_seg_detach(h);
	tu_seg_free(s);
}

/* ---- a walk of one slot visits only what its filter names ----------------- */

static void walk_skips_unmarked_caches(void **state)
{
	struct sp_seg *s = tu_seg_new(32u << 20), *t = tu_seg_reattach(s, "one cache");
	uint32_t ids[12], mine;
	uint64_t c0, b0;
	struct sp_holdings h;
	sp_off_t off;
	char name[32];

	(void)state;
	/* a dozen caches full of the segment slot's objects, and kmalloc ones */
	for (unsigned i = 0; i < 12; i++) {
		snprintf(name, sizeof(name), "busy%u", i);
		ids[i] = cache_new(s, name, 32 + 8 * i);
		for (unsigned j = 0; j < 50; j++)
			TU_ASSERT_OK(sp_cache_alloc(s, sp_cache_get(s, ids[i]), s->owner, &off));
	}
	TU_ASSERT_OK(sp_kmalloc(s, 1u << 20, &off));
	mine = cache_new(s, "mine", 100);
	TU_ASSERT_OK(sp_cache_alloc(t, sp_cache_get(t, mine), t->owner, &off));

	c0 = s->nr_walk_caches;
	b0 = s->nr_walk_blocks;
	TU_ASSERT_OK(sp_slot_holdings(s, t->slot, &h));
	assert_int_equal(h.objects, 1);
	assert_int_equal(s->nr_walk_caches - c0, 1); /* only "mine" */
	assert_int_equal(s->nr_walk_blocks - b0, 0); /* no blocks */

	/* a slot that allocated nothing walks nothing at all */
	sp_seg_detach(t);
	t = tu_seg_reattach(s, "nothing");
	c0 = s->nr_walk_caches;
	TU_ASSERT_OK(sp_client_unregister(s, t->slot));
	assert_int_equal(s->nr_walk_caches - c0, 0);
	assert_int_equal(s->nr_walk_blocks - b0, 0);
	assert_int_equal(sp_clients(s)[t->slot].state, SP_CLIENT_FREE);
	sp_seg_detach(t);
	tu_seg_free(s);
}

/*
 * Goodbye of a slot that announced nothing (the client that connects, asks
 * and leaves): the slot is freed without the kmalloc settle that guards a
 * release's frees, there being none.  One that took and gave back a
 * kmalloc object (its filter names the class) is still released the long
 * way, settle included, and is freed as well.
 */
static void unregister_unnoted_is_short(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20), *t;
	uint64_t n0, c0, b0;
	sp_off_t off;
	uint32_t slot;

	(void)state;
	t = tu_seg_reattach(s, "nothing");
	slot = t->slot;
	n0 = s->nr_settles;
	c0 = s->nr_walk_caches;
	b0 = s->nr_walk_blocks;
	TU_ASSERT_OK(sp_client_unregister(s, slot));
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	assert_int_equal(s->nr_settles - n0, 0);
	assert_int_equal(s->nr_walk_caches - c0, 0);
	assert_int_equal(s->nr_walk_blocks - b0, 0);
	sp_seg_detach(t);

	t = tu_seg_reattach(s, "one kmalloc");
	slot = t->slot;
	TU_ASSERT_OK(sp_kmalloc(t, 100, &off));
	TU_ASSERT_OK(sp_kfree(t, off));
	n0 = s->nr_settles;
	TU_ASSERT_OK(sp_client_unregister(s, slot));
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	assert_true(s->nr_settles - n0 >= 1);
	sp_seg_detach(t);
	tu_check_clean(s);
	tu_seg_free(s);
}

/*
 * A cache whose descriptor is scribbled cannot be walked (skipped_caches),
 * and a DEAD slot that may hold objects there stays.  One the slot never
 * touched is no reason to keep it: before the filter, every cache was walked
 * and such a slot was never freed.
 */
static void scribbled_untouched_cache_not_visited(void **state)
{
	struct sp_seg *s = tu_seg_new(32u << 20), *t = tu_seg_reattach(s, "victim");
	uint32_t bad = cache_new(s, "garbage", 64), mine = cache_new(s, "mine", 64);
	struct sp_cache *bc = sp_cache_get(s, bad);
	uint32_t saved;
	sp_off_t off, keep;
	struct sp_holdings h;

	(void)state;
	TU_ASSERT_OK(sp_cache_alloc(s, bc, s->owner, &keep));
	TU_ASSERT_OK(sp_cache_alloc(t, sp_cache_get(t, mine), t->owner, &off));
	saved = bc->objperslab;
	bc->objperslab = 0xdead; /* the snapshot refuses it */

	TU_ASSERT_OK(sp_slot_holdings(s, t->slot, &h));
	assert_int_equal(h.skipped_caches, 0);
	assert_int_equal(h.objects, 1);
	TU_ASSERT_OK(sp_client_mark_dead(s, t->slot));
	TU_ASSERT_OK(sp_slot_release(s, t->slot, false, &h));
	assert_int_equal(h.objects, 1);
	assert_int_equal(sp_clients(s)[t->slot].state, SP_CLIENT_FREE);

	/* the same with the scribbled cache in the filter: the slot stays */
	sp_seg_detach(t);
	t = tu_seg_reattach(s, "touched");
	bc->objperslab = saved;
	TU_ASSERT_OK(sp_cache_alloc(t, bc, t->owner, &off));
	bc->objperslab = 0xdead;
	TU_ASSERT_OK(sp_client_mark_dead(s, t->slot));
	TU_ASSERT_OK(sp_slot_release(s, t->slot, false, &h));
	assert_int_equal(h.skipped_caches, 1);
	assert_int_equal(sp_clients(s)[t->slot].state, SP_CLIENT_DEAD);
	bc->objperslab = saved;
	TU_ASSERT_OK(sp_slot_release(s, t->slot, false, &h));
	assert_int_equal(h.objects, 1);
	assert_int_equal(sp_clients(s)[t->slot].state, SP_CLIENT_FREE);
	tu_check_clean(s);
	sp_seg_detach(t);
	tu_seg_free(s);
}

/* ---- the checker reports what the filter hides ---------------------------- */

static void checker_reports_missing_bit(void **state)
{
	struct sp_seg *s = tu_seg_new(32u << 20), *t = tu_seg_reattach(s, "scribbler");
	uint32_t x = cache_new(s, "x", 64);
	struct sp_client *cl = &sp_clients(s)[t->slot];
	uint64_t saved[SP_SLOT_FILTER_BITS / 64];
	struct sp_holdings h;
	sp_off_t off, big;

	(void)state;
	TU_ASSERT_OK(sp_cache_alloc(t, sp_cache_get(t, x), t->owner, &off));
	TU_ASSERT_OK(sp_kmalloc(t, 2u << 20, &big));
	tu_check_clean(s);

	/* the slot clears its own cache bits: its object is hidden from its walk */
	memcpy(saved, cl->used, sizeof(saved));
	memset(cl->used, 0, sizeof(cl->used));
	assert_int_equal(tu_check_count(s, 0), 1);
	TU_ASSERT_OK(sp_slot_holdings(s, t->slot, &h));
	assert_int_equal(h.objects, 0); /* the trade-off: hidden, but reported */
	memcpy(cl->used, saved, sizeof(saved));
	tu_check_clean(s);

	/* ... or its blocks flag */
	cl->flags = 0;
	assert_int_equal(tu_check_count(s, 0), 1);
	cl->flags = SP_SLOT_MAY_BLOCKS;
	tu_check_clean(s);

	/* setting every bit costs only walks */
	memset(cl->used, 0xff, sizeof(cl->used));
	tu_check_clean(s);
	TU_ASSERT_OK(sp_slot_holdings(s, t->slot, &h));
	assert_int_equal(h.objects, 1);
	assert_int_equal(h.large_blocks, 1);
	sp_seg_detach(t);
	tu_seg_free(s);
}

/*
 * The handle's memo of the bits it noted (sp_seg.noted): once its own
 * tag's bit for a cache was found set, a locked alloc does not look at the
 * filter again - the bit stays until the slot is FREE - so a bit the slot
 * scribbled away stays away (the checker reports it); a new owner for the
 * handle forgets the memo; and a tag naming another slot is never served
 * from it.
 */
static void note_memo(void **state)
{
	struct sp_seg *s = tu_seg_new(32u << 20), *t = tu_seg_reattach(s, "memo");
	uint32_t x = cache_new(s, "x", 64), y = cache_new(s, "y", 64), slot = t->slot;
	struct sp_cache *c = sp_cache_get(t, x), *d = sp_cache_get(t, y);
	struct sp_client *cl = &sp_clients(s)[slot];
	sp_off_t o[5];

	(void)state;
	TU_ASSERT_OK(sp_cache_alloc(t, c, t->owner, &o[0]));
	assert_true(has_bit(s, slot, x));
	/* scribbled away: the memo answers, the filter is not set again */
	memset(cl->used, 0, sizeof(cl->used));
	TU_ASSERT_OK(sp_cache_alloc(t, c, t->owner, &o[1]));
	assert_false(has_bit(s, slot, x));
	assert_int_equal(tu_check_count(s, 0), 1); /* no bit behind its objects: reported */
	/* the handle takes its slot again: the memo is forgotten */
	TU_ASSERT_OK(sp_client_use_slot(t, slot));
	TU_ASSERT_OK(sp_cache_alloc(t, c, t->owner, &o[2]));
	assert_true(has_bit(s, slot, x));
	tu_check_clean(s);
	/* another slot's tag through this handle: noted in that slot's filter,
	 * not remembered as this handle's own (its next alloc there notes it) */
	assert_false(has_bit(s, s->slot, y));
	TU_ASSERT_OK(sp_cache_alloc(t, d, s->owner, &o[3]));
	assert_true(has_bit(s, s->slot, y));
	assert_false(has_bit(s, slot, y));
	TU_ASSERT_OK(sp_cache_alloc(t, d, t->owner, &o[4]));
	assert_true(has_bit(s, slot, y));
	tu_check_clean(s);
	for (unsigned i = 0; i < 5; i++)
		TU_ASSERT_OK(sp_cache_free(s, i < 3 ? c : d, o[i]));
	/* no owner: nothing noted, nothing remembered */
	sp_seg_set_owner(t, UINT32_MAX);
	for (unsigned i = 0; i < SP_SLOT_FILTER_BITS / 64; i++)
		assert_int_equal(t->noted[i], 0);
	sp_seg_detach(t);
	tu_check_clean(s);
	tu_seg_free(s);
}

/* ---- a walk of a big cache lets others in ---------------------------------- */

struct contender {
	struct sp_seg *s;
	uint32_t cache;
	volatile int walking, stop;
	double max_wait_ms;
	unsigned during;      /* lock taken while a walk was running */
	sp_off_t objs[4096];
	unsigned nobjs;
	bool alloc;           /* allocate (and keep) an object each time */
	int err;
};

static void *contend(void *arg)
{
	struct contender *k = arg;
	struct sp_cache *c = sp_cache_get(k->s, k->cache);

	while (!k->stop) {
		int w = k->walking;
		double t0 = now_ms(), t1;

		if (k->alloc && k->nobjs < 4096) {
			int rc = sp_cache_alloc(k->s, c, k->s->owner, &k->objs[k->nobjs]);

			if (rc) {
				k->err = rc;
				break;
			}
			k->nobjs++;
		} else {
			if (sp_cache_lock(k->s, c)) {
				k->err = -1;
				break;
			}
			sp_cache_unlock(c);
		}
		t1 = now_ms();
		if (w && k->walking) {
			k->during++;
			if (t1 - t0 > k->max_wait_ms)
				k->max_wait_ms = t1 - t0;
		}
		usleep(100);
	}
	return NULL;
}

/* Fill cache @id with objects of @owner until a walk of @slot takes at least
 * @ms (or 2M objects); return the time of one walk. */
static double fill_until(struct sp_seg *s, uint32_t id, struct sp_seg *owner, double ms)
{
	struct sp_cache *c = sp_cache_get(s, id);
	struct sp_holdings h;
	double t = 0;
	sp_off_t off;

	for (unsigned n = 0; n < 2000000;) {
		for (unsigned i = 0; i < 50000; i++, n++)
			TU_ASSERT_OK(sp_cache_alloc(owner, c, owner->owner, &off));
		t = 1e9;
		for (int k = 0; k < 2; k++) { /* the first one may fault pages in */
			double t0 = now_ms();

			TU_ASSERT_OK(sp_slot_holdings(s, owner->slot, &h));
			t0 = now_ms() - t0;
			if (t0 < t)
				t = t0;
		}
		if (t >= ms)
			break;
	}
	return t;
}

static void chunked_walk_lets_others_in(void **state)
{
	struct sp_seg *s = tu_seg_new(512u << 20), *t = tu_seg_reattach(s, "big");
	struct sp_seg *u = tu_seg_reattach(s, "contender");
	uint32_t id = cache_new(s, "big", 64);
	struct contender *k = calloc(1, sizeof(*k));
	struct sp_holdings h;
	double walk_ms, best = 1e9;
	uint64_t r0;
	pthread_t th;

	(void)state;
	walk_ms = fill_until(s, id, t, 20);

	k->s = u;
	k->cache = id;
	assert_int_equal(pthread_create(&th, NULL, contend, k), 0);
	for (int i = 0; i < 8; i++) {
		double t0 = now_ms();

		k->walking = 1;
		TU_ASSERT_OK(sp_slot_holdings(s, t->slot, &h));
		k->walking = 0;
		t0 = now_ms() - t0;
		if (t0 < best)
			best = t0;
		usleep(2000);
	}
	k->stop = 1;
	pthread_join(th, NULL);
	print_message("walk of %llu objects: %.1f ms (fill %.1f); the contender took the lock "
		      "%u times during walks, waiting %.3f ms at most\n",
		      (unsigned long long)h.objects, best, walk_ms, k->during, k->max_wait_ms);
	assert_int_equal(k->err, 0);
	/* held for a whole walk, the lock is taken at most about once per walk
	 * (as it starts or ends); dropped every 64 slabs, many times in each */
	assert_true(k->during >= 8 * 4);
	r0 = s->nr_walk_relocks;
	TU_ASSERT_OK(sp_slot_holdings(s, t->slot, &h));
	assert_true(s->nr_walk_relocks - r0 >= sp_caches(s)[id].nr_slabs / 64 - 1);
	free(k);
	sp_seg_detach(u);
	sp_seg_detach(t);
	tu_seg_free(s);
}

/* A DEAD slot's release, chunked, while another slot allocates from the same
 * cache in the gaps: every object of the dead slot is freed, none of the
 * other's. */
static void chunked_release_finds_everything(void **state)
{
	struct sp_seg *s = tu_seg_new(256u << 20), *t = tu_seg_reattach(s, "dying");
	struct sp_seg *u = tu_seg_reattach(s, "allocating");
	uint32_t id = cache_new(s, "shared", 48);
	struct sp_cache *c = sp_cache_get(s, id);
	struct contender *k = calloc(1, sizeof(*k));
	struct sp_holdings h, before;
	uint64_t r0 = s->nr_walk_relocks;
	pthread_t th;
	sp_off_t off;

	(void)state;
	/* interleave the dying slot's objects with the segment slot's, some
	 * freed again, so the slabs are mixed and partial */
	for (unsigned i = 0; i < 120000; i++) {
		TU_ASSERT_OK(sp_cache_alloc(i % 3 ? t : s, c, i % 3 ? t->owner : s->owner, &off));
		if (i % 7 == 0 && i % 3)
			TU_ASSERT_OK(sp_cache_free(t, c, off));
	}
	TU_ASSERT_OK(sp_slot_holdings(s, t->slot, &before));
	TU_ASSERT_OK(sp_client_mark_dead(s, t->slot));
	k->s = u;
	k->cache = id;
	k->alloc = true;
	k->walking = 1;
	assert_int_equal(pthread_create(&th, NULL, contend, k), 0);
	usleep(2000);
	TU_ASSERT_OK(sp_slot_release(s, t->slot, false, &h));
	k->stop = 1;
	pthread_join(th, NULL);
	assert_int_equal(k->err, 0);
	assert_true(s->nr_walk_relocks - r0 > 10);
	assert_int_equal(h.objects, before.objects);
	assert_int_equal(sp_clients(s)[t->slot].state, SP_CLIENT_FREE);
	TU_ASSERT_OK(sp_slot_holdings(s, u->slot, &h));
	assert_int_equal(h.objects, k->nobjs);
	TU_ASSERT_OK(sp_slot_holdings(s, s->slot, &h));
	assert_int_equal(h.objects, 40000);
	tu_check_clean(s);
	free(k);
	sp_seg_detach(u);
	sp_seg_detach(t);
	tu_seg_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(filter_set_on_every_path),
		cmocka_unit_test(walk_skips_unmarked_caches),
		cmocka_unit_test(unregister_unnoted_is_short),
		cmocka_unit_test(scribbled_untouched_cache_not_visited),
		cmocka_unit_test(checker_reports_missing_bit),
		cmocka_unit_test(note_memo),
		cmocka_unit_test(chunked_walk_lets_others_in),
		cmocka_unit_test(chunked_release_finds_everything),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
