/* SPDX-License-Identifier: MIT */
/*
 * test-magazine.c - the per-thread magazine layer (shared/magazine.[ch]) at
 * the core level: refill, pop, push and flush move exactly the objects and
 * counts they should; objects cached in a magazine count as free in every
 * statistic and for the checker; a user free of a cached object is a
 * double free and changes nothing; a push refuses what is not a held
 * object of the magazine's cache; a flush refills a pool's short reserve
 * first and wakes a waiter in another process; a destroy is busy while
 * objects are cached; a dead slot's sets and cached objects are freed by
 * its release; lists are rebuilt by the registry's recovery; many sets
 * (threads) per slot; and the checker reports corrupted magazine state.
 *
 * Children never call cmocka: they report through their exit status (and
 * pipes), and every child arms alarm() so that no test can hang.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "magazine.h"
#include "test-util.h"

/* every cache here has objects of 256 bytes or less: magazines of SP_MAG_OBJS */
#define HALF (SP_MAG_OBJS / 2)		/* what a refill fills to, a full flush keeps */
#define REST (SP_MAG_OBJS - HALF)	/* what fills it up again */
#define HELD (REST + 10)		/* held objects that overfill a magazine */
#define NV 2048				/* more than a set of magazines and a reserve hold */

/* ---- helpers -------------------------------------------------------------- */

static struct sp_cache *cache_new(struct sp_seg *s, const char *name, uint64_t size,
				  uint32_t flags)
{
	uint32_t id;

	TU_ASSERT_OK(sp_cache_create(s, name, size, 0, flags, NULL, &id));
	assert_non_null(sp_cache_get(s, id));
	return sp_cache_get(s, id);
}

static struct sp_pool *pool_new(struct sp_seg *s, const char *name, uint64_t size, uint32_t min)
{
	struct sp_pool_params pp = { .elem_size = size, .min_nr = min, .backing = SP_BACK_SLAB };
	uint32_t id;

	TU_ASSERT_OK(sp_pool_create(s, name, &pp, &id));
	assert_non_null(sp_pool_get(s, id));
	return sp_pool_get(s, id);
}

/* A pool's backing cache: what its magazines are bound to. */
static struct sp_cache *pool_cache(struct sp_seg *s, struct sp_pool *p)
{
	struct sp_cache *c = sp_cache_get(s, p->cache_id);

	assert_non_null(c);
	assert_int_equal(c->pool_id, p->id + 1);
	return c;
}

static struct sp_cache *kmalloc_cache(struct sp_seg *s, uint64_t size)
{
	return &sp_caches(s)[sp_kmalloc_class(size)];
}

static struct sp_magset *set_new(struct sp_seg *s, uint32_t tid)
{
	struct sp_magset *set = NULL;

	TU_ASSERT_OK(sp_magset_create(s, tid, &set));
	assert_non_null(set);
	assert_int_equal(set->slot, s->slot);
	assert_int_equal(set->tid, tid);
	return set;
}

static struct sp_mag *bind(struct sp_seg *s, struct sp_magset *set, struct sp_cache *c)
{
	struct sp_mag *m = NULL;

	TU_ASSERT_OK(sp_mag_bind(s, set, c, &m));
	assert_ptr_equal(m, &set->mag[sp_mag_index(c->id)]);
	assert_true(sp_mag_bound(m, c));
	return m;
}

static uint32_t set_pfn(struct sp_seg *s, const struct sp_magset *set)
{
	return (uint32_t)(((const uint8_t *)set - s->data) >> SP_PAGE_SHIFT);
}

/* An alloc as the client library's fast path does it: pop, else refill. */
static bool mag_alloc(struct sp_seg *s, struct sp_cache *c, struct sp_mag *m, sp_off_t *off)
{
	return sp_mag_pop(s, c, m, off) || (sp_mag_refill(s, c, m) > 0 && sp_mag_pop(s, c, m, off));
}

/* A free as the fast path does it: push, else flush half and push again. */
static bool mag_free(struct sp_seg *s, struct sp_cache *c, struct sp_mag *m, sp_off_t off)
{
	enum sp_mag_push_result r = sp_mag_push(s, c, m, off);

	if (r == SP_MAG_FULL && sp_mag_flush(s, c, m, HALF) == 0)
		r = sp_mag_push(s, c, m, off);
	return r == SP_MAG_PUSHED;
}

/* The owner tag of object @off of @c (0xdead if it is none); *@allocated. */
static uint16_t obj_tag(struct sp_seg *s, struct sp_cache *c, sp_off_t off, bool *allocated)
{
	struct sp_slab *slab;
	uint32_t idx;
	uint16_t tag = 0xdead;

	*allocated = false;
	TU_ASSERT_OK(sp_cache_lock(s, c));
	if (sp_cache_obj_locate(s, c, off, &slab, &idx) == 0) {
		tag = sp_slab_owners(c, slab)[idx];
		*allocated = slab->bitmap[idx / 64] >> (idx % 64) & 1;
	}
	sp_cache_unlock(c);
	return tag;
}

static void assert_tag(struct sp_seg *s, struct sp_cache *c, sp_off_t off, uint16_t want)
{
	bool allocated;
	uint16_t tag = obj_tag(s, c, off, &allocated);

	if (tag != want || allocated != (want != SP_OWNER_NONE))
		fail_msg("cache %s: object %#llx tagged %#x (allocated %d), expected %#x", c->name,
			 (unsigned long long)off, tag, allocated, want);
}

/* Free in its slab, or its slab went back to the buddy allocator empty. */
static void assert_freed(struct sp_seg *s, struct sp_cache *c, sp_off_t off)
{
	bool allocated;
	uint16_t tag = obj_tag(s, c, off, &allocated);

	if (tag != 0xdead)
		assert_tag(s, c, off, SP_OWNER_NONE);
}

static int cmp_off(const void *a, const void *b)
{
	sp_off_t x = *(const sp_off_t *)a, y = *(const sp_off_t *)b;

	return x < y ? -1 : x > y;
}

static void assert_distinct(const sp_off_t *v, uint32_t n)
{
	sp_off_t *c = malloc((n + 1) * sizeof(*c));

	assert_non_null(c);
	memcpy(c, v, n * sizeof(*c));
	qsort(c, n, sizeof(*c), cmp_off);
	for (uint32_t i = 1; i < n; i++)
		if (c[i] == c[i - 1])
			fail_msg("offset %#llx listed twice", (unsigned long long)c[i]);
	free(c);
}

/* Length of @slot's list of magazine sets (bounded). */
static uint32_t list_len(struct sp_seg *s, uint32_t slot)
{
	uint32_t pfn = sp_clients(s)[slot].mag_head, n = 0;

	while (pfn && n <= s->geo.nr_pages) {
		assert_true(sp_magset_valid(s, pfn - 1));
		n++;
		pfn = s->pages[pfn - 1].next;
	}
	return n;
}

/* Magazine set blocks (committed or not) tagged with @tag, from the pages. */
static uint32_t mag_blocks(struct sp_seg *s, uint16_t tag)
{
	uint32_t n = 0;

	TU_ASSERT_OK(sp_buddy_lock(s));
	for (uint32_t pfn = 0; pfn < s->geo.nr_pages;) {
		uint32_t info = s->pages[pfn].info, o = SP_PG_ORDER(info);

		n += SP_PG_STATE(info) == SP_PG_ALLOC && SP_PG_KIND(info) == SP_KIND_MAG &&
		     s->pages[pfn].slot == tag;
		pfn += 1u << (o > s->geo.max_order ? 0 : o);
	}
	sp_buddy_unlock(s);
	return n;
}

/* Take every free page as raw blocks (no backing can grow); give back. */
struct pages {
	sp_off_t off[512];
	uint32_t n;
};

static void pages_take_all(struct sp_seg *s, struct pages *pg)
{
	pg->n = 0;
	for (int o = (int)s->geo.max_order; o >= 0; o--)
		while (pg->n < 512 && sp_buddy_alloc(s, (unsigned)o, &pg->off[pg->n]) == 0)
			pg->n++;
	assert_int_equal(s->hdr->buddy.free_pages, 0);
}

static void pages_give_back(struct sp_seg *s, struct pages *pg)
{
	while (pg->n)
		TU_ASSERT_OK(sp_buddy_free(s, pg->off[--pg->n]));
}

/* Alloc and free counts, magazines included, account exactly for what is out. */
static void assert_counts(struct sp_seg *s, struct sp_pool *p, struct sp_cache *c)
{
	uint64_t na, nf;

	if (p) {
		sp_pool_counters(s, p, &na, &nf);
		if (na - nf != sp_pool_nr_out(s, p))
			fail_msg("pool %s: %llu allocs - %llu frees, but %llu elements out",
				 p->name, (unsigned long long)na, (unsigned long long)nf,
				 (unsigned long long)sp_pool_nr_out(s, p));
	}
	if (c) {
		sp_cache_counters(s, c, &na, &nf);
		if (na - nf != sp_cache_in_use(s, c))
			fail_msg("cache %s: %llu allocs - %llu frees, but %llu objects in use",
				 c->name, (unsigned long long)na, (unsigned long long)nf,
				 (unsigned long long)sp_cache_in_use(s, c));
	}
}

static void assert_check_both(struct sp_seg *s, bool clean)
{
	int locked = tu_check_count(s, 0), nolock = tu_check_count(s, SP_CHECK_NOLOCK);

	if (clean && (locked || nolock))
		fail_msg("checker: %d violation(s) locked, %d without locks", locked, nolock);
	if (!clean && (!locked || !nolock))
		fail_msg("checker missed the corruption: %d violation(s) locked, %d without locks",
			 locked, nolock);
}

/* ---- refill, pop, push, flush --------------------------------------------- */

static void refill_pop_push_flush(void **state)
{
	struct sp_seg *s = tu_seg_new(0);
	struct sp_cache *c = cache_new(s, "m.cache", 64, 0);
	struct sp_magset *set = set_new(s, 7);
	uint16_t mine = SP_OWNER_MAG(s->owner);
	sp_off_t popped[10], held[HELD], flushed[REST], off = 0;
	struct sp_mag *m = bind(s, set, c);
	uint64_t na, nf;

	assert_int_equal(sp_clients(s)[s->slot].mag_head, set_pfn(s, set) + 1);
	assert_int_equal(m->nr, 0);
	assert_false(sp_mag_pop(s, c, m, &off)); /* empty: the caller refills */

	/* a refill takes half a magazine in one go: allocated, tagged cached, free */
	assert_int_equal(sp_mag_refill(s, c, m), HALF);
	assert_int_equal(m->nr, HALF);
	assert_int_equal(c->active_objs, HALF);
	assert_int_equal(c->nr_mag_refill, 1);
	assert_int_equal(c->nr_alloc, 0);
	assert_distinct(m->objs, m->nr);
	for (uint32_t i = 0; i < m->nr; i++)
		assert_tag(s, c, m->objs[i], mine);
	assert_int_equal(sp_mag_cached(s, c->id), HALF);
	assert_int_equal(sp_cache_in_use(s, c), 0);
	/* at least half full: nothing to do */
	assert_int_equal(sp_mag_refill(s, c, m), HALF);
	assert_int_equal(c->active_objs, HALF);
	assert_int_equal(c->nr_mag_refill, 1);

	/* pops are LIFO, retag the object to the caller, count in the magazine */
	for (int i = 0; i < 10; i++) {
		sp_off_t top = m->objs[m->nr - 1];

		assert_true(sp_mag_pop(s, c, m, &popped[i]));
		assert_int_equal(popped[i], top);
		assert_tag(s, c, popped[i], s->owner);
	}
	assert_int_equal(m->nr, HALF - 10);
	assert_int_equal(m->nr_alloc, 10);
	assert_int_equal(c->nr_alloc, 0); /* not folded yet ... */
	sp_cache_counters(s, c, &na, &nf);
	assert_int_equal(na, 10); /* ... but counted */
	assert_int_equal(nf, 0);
	assert_int_equal(sp_cache_in_use(s, c), 10);
	assert_int_equal(sp_mag_cached(s, c->id), HALF - 10);
	assert_counts(s, NULL, c);

	/* pushes retag to cached */
	for (int i = 0; i < 10; i++) {
		assert_int_equal(sp_mag_push(s, c, m, popped[i]), SP_MAG_PUSHED);
		assert_tag(s, c, popped[i], mine);
	}
	assert_int_equal(m->nr, HALF);
	assert_int_equal(m->nr_free, 10);
	assert_int_equal(sp_cache_in_use(s, c), 0);
	assert_counts(s, NULL, c);

	/* objects from the locked path go in too; a full magazine says so */
	assert_int_equal(sp_mag_cap(c), SP_MAG_OBJS);
	for (int i = 0; i < HELD; i++)
		TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &held[i]));
	assert_int_equal(c->nr_alloc, HELD);
	for (int i = 0; i < REST; i++)
		assert_int_equal(sp_mag_push(s, c, m, held[i]), SP_MAG_PUSHED);
	assert_int_equal(m->nr, SP_MAG_OBJS);
	assert_int_equal(sp_mag_push(s, c, m, held[REST]), SP_MAG_FULL);
	assert_int_equal(m->nr, SP_MAG_OBJS);
	assert_tag(s, c, held[REST], s->owner); /* refused: still the caller's */
	assert_counts(s, NULL, c);

	/* a flush folds the counts and frees from the top down to @keep */
	memcpy(flushed, &m->objs[HALF], sizeof(flushed));
	TU_ASSERT_OK(sp_mag_flush(s, c, m, HALF));
	assert_int_equal(m->nr, HALF);
	assert_int_equal(c->nr_mag_flush, 1);
	assert_int_equal(m->nr_alloc, 0);
	assert_int_equal(m->nr_free, 0);
	assert_int_equal(c->nr_alloc, HELD + 10);
	assert_int_equal(c->nr_free, 10 + REST);
	for (int i = 0; i < REST; i++)
		assert_freed(s, c, flushed[i]);
	assert_int_equal(c->active_objs, HALF + HELD - REST); /* cached + held[REST..] */
	for (int i = REST; i < HELD; i++)
		assert_int_equal(sp_mag_push(s, c, m, held[i]), SP_MAG_PUSHED);
	assert_int_equal(sp_cache_in_use(s, c), 0);
	sp_cache_counters(s, c, &na, &nf);
	assert_int_equal(na, HELD + 10);
	assert_int_equal(nf, HELD + 10);
	tu_check_clean(s);

	TU_ASSERT_OK(sp_mag_flush(s, c, m, 0));
	assert_int_equal(m->nr, 0);
	assert_int_equal(c->active_objs, 0);
	assert_int_equal(c->nr_free, HELD + 10);
	assert_int_equal(c->nr_mag_flush, 2);
	/* flushed objects are allocatable again, through a refill too */
	assert_int_equal(sp_mag_refill(s, c, m), HALF);
	assert_true(mag_alloc(s, c, m, &off));
	assert_true(mag_free(s, c, m, off));

	/* destroying the set empties it and frees its block */
	sp_magset_destroy(s, set);
	assert_int_equal(c->active_objs, 0);
	assert_int_equal(c->nr_alloc, c->nr_free);
	assert_int_equal(sp_clients(s)[s->slot].mag_head, 0);
	assert_int_equal(mag_blocks(s, s->owner), 0);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_cache_destroy(s, c->id));
	tu_seg_free(s);
}

/* A magazine shared by two caches (ids equal modulo the set size) rebinds. */
static void rebind_flushes_the_other_cache(void **state)
{
	struct sp_seg_params sp;
	struct sp_seg *s;
	struct sp_cache *k, *c = NULL;
	struct sp_magset *set;
	struct sp_mag *m;
	uint64_t before;
	char name[32];

	sp_seg_params_default(&sp);
	sp.size = 16u << 20;
	sp.max_caches = 64;
	s = tu_seg_new_params(&sp);
	k = kmalloc_cache(s, 8); /* id 0 */
	for (int i = 0; !c || sp_mag_index(c->id) != sp_mag_index(k->id); i++) {
		snprintf(name, sizeof(name), "m.c%d", i);
		c = cache_new(s, name, 40, 0);
	}
	set = set_new(s, 1);
	before = k->active_objs;
	m = bind(s, set, k);
	assert_int_equal(sp_mag_refill(s, k, m), HALF);
	assert_int_equal(k->active_objs, before + HALF);
	assert_ptr_equal(bind(s, set, c), m); /* the kmalloc objects went back */
	assert_false(sp_mag_bound(m, k));
	assert_int_equal(m->nr, 0);
	assert_int_equal(k->active_objs, before);
	assert_int_equal(sp_mag_cached(s, k->id), 0);
	assert_int_equal(sp_mag_refill(s, c, m), HALF);
	assert_int_equal(sp_mag_cached(s, c->id), HALF);
	tu_check_clean(s);
	sp_magset_destroy(s, set);
	assert_int_equal(c->active_objs, 0);
	tu_check_clean(s);
	tu_seg_free(s);
}

/* Entries that are not this slot's cached objects are dropped, never handed out. */
static void pop_drops_scribbled_entries(void **state)
{
	struct sp_seg *s = tu_seg_new(0);
	struct sp_cache *c = cache_new(s, "m.cache", 64, 0);
	struct sp_magset *set = set_new(s, 1);
	struct sp_mag *m = bind(s, set, c);
	sp_off_t mine, below, off = 0;

	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &mine));
	assert_int_equal(sp_mag_refill(s, c, m), HALF);
	below = m->objs[m->nr - 2];
	m->objs[m->nr - 1] = mine; /* held, not cached */
	assert_true(sp_mag_pop(s, c, m, &off));
	assert_int_equal(off, below);
	assert_int_equal(m->nr, HALF - 2);
	assert_tag(s, c, mine, s->owner);
	m->objs[m->nr - 1] = 8; /* not in the data area */
	below = m->objs[m->nr - 2];
	assert_true(sp_mag_pop(s, c, m, &off));
	assert_int_equal(off, below);
	below = m->objs[m->nr - 2];
	m->objs[m->nr - 1] = below + 8; /* inside a cached object of ours */
	assert_true(sp_mag_pop(s, c, m, &off));
	assert_int_equal(off, below);
	assert_tag(s, c, below, s->owner);
	m->nr = 1000; /* a scribbled count empties the magazine */
	assert_false(sp_mag_pop(s, c, m, &off));
	assert_int_equal(m->nr, 0);
	assert_true(mag_alloc(s, c, m, &off)); /* and it works again */
	tu_check_clean(s);
	tu_seg_free(s);
}

/* ---- cached objects are free: stats, checker, frees ------------------------ */

static void stats_count_cached_as_free(void **state)
{
	struct sp_seg *s = tu_seg_new(0);
	struct sp_pool *p = pool_new(s, "m.pool", 100, 2);
	struct sp_cache *pc = pool_cache(s, p), *k = kmalloc_cache(s, 100);
	struct sp_magset *set = set_new(s, 1), *set2 = set_new(s, 2);
	struct sp_mag *m = bind(s, set, pc), *mk = bind(s, set2, k);
	uint64_t na, nf, kin = sp_cache_in_use(s, k);
	sp_off_t v[5], kv[4];

	assert_int_equal(sp_pool_nr_out(s, p), 0);
	for (int i = 0; i < 5; i++)
		assert_true(mag_alloc(s, pc, m, &v[i]));
	assert_int_equal(sp_pool_nr_out(s, p), 5);
	assert_int_equal(p->curr_nr, 2);	/* the reserve is not touched */
	assert_int_equal(p->nr_alloc, 0);	/* unfolded ... */
	sp_pool_counters(s, p, &na, &nf);
	assert_int_equal(na, 5);		/* ... but counted */
	assert_int_equal(nf, 0);
	assert_int_equal(sp_cache_in_use(s, pc), 5 + p->curr_nr);
	assert_int_equal(sp_mag_cached(s, pc->id), HALF - 5);
	for (int i = 0; i < 2; i++)
		assert_int_equal(sp_mag_push(s, pc, m, v[i]), SP_MAG_PUSHED);
	assert_int_equal(sp_pool_nr_out(s, p), 3);
	sp_pool_counters(s, p, &na, &nf);
	assert_int_equal(na, 5);
	assert_int_equal(nf, 2);
	assert_counts(s, p, NULL);
	TU_ASSERT_OK(sp_mag_flush(s, pc, m, 0));
	assert_int_equal(p->nr_alloc, 5); /* folded */
	assert_int_equal(p->nr_free, 2);
	assert_int_equal(sp_pool_nr_out(s, p), 3);
	assert_counts(s, p, NULL);

	for (int i = 0; i < 4; i++)
		assert_true(mag_alloc(s, k, mk, &kv[i]));
	assert_int_equal(sp_cache_in_use(s, k), kin + 4);
	assert_int_equal(sp_mag_cached(s, k->id), HALF - 4);
	for (int i = 0; i < 4; i++)
		assert_true(mag_free(s, k, mk, kv[i]));
	assert_int_equal(sp_cache_in_use(s, k), kin);

	/* freed through the locked path: the pool's own counters */
	for (int i = 2; i < 5; i++)
		TU_ASSERT_OK(sp_pool_free(s, p, v[i]));
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	assert_counts(s, p, NULL);
	sp_magset_destroy(s, set);
	sp_magset_destroy(s, set2);
	assert_int_equal(sp_cache_in_use(s, k), kin);
	assert_counts(s, p, NULL);
	TU_ASSERT_OK(sp_pool_destroy(s, p->id));
	tu_check_clean(s);
	tu_seg_free(s);
}

static void checker_clean_with_cached_objects(void **state)
{
	struct sp_seg *s = tu_seg_new(0), *ro = NULL;
	struct sp_pool *p = pool_new(s, "m.pool", 100, 3);
	struct sp_cache *c = cache_new(s, "m.cache", 64, 0);
	struct sp_cache *caches[3] = { pool_cache(s, p), c, kmalloc_cache(s, 128) };
	struct sp_magset *a[3], *b[3];
	sp_off_t off[3][5];

	for (int k = 0; k < 3; k++) {
		struct sp_mag *m;

		a[k] = set_new(s, 1 + (uint32_t)k);
		b[k] = set_new(s, 11 + (uint32_t)k);
		m = bind(s, a[k], caches[k]);
		for (int i = 0; i < 5; i++)
			assert_true(mag_alloc(s, caches[k], m, &off[k][i]));
		for (int i = 0; i < 2; i++)
			assert_true(mag_free(s, caches[k], m, off[k][i]));
		assert_true(sp_mag_refill(s, caches[k], bind(s, b[k], caches[k])) > 0);
	}
	assert_int_equal(list_len(s, s->slot), 6);
	for (int k = 0; k < 3; k++)
		assert_int_equal(sp_mag_cached(s, caches[k]->id), 2 * HALF - 3);
	assert_check_both(s, true);
	TU_ASSERT_OK(sp_seg_attach(s->name, -1, SP_ATTACH_RDONLY, &ro));
	assert_int_equal(tu_check_count(ro, SP_CHECK_NOLOCK), 0);
	sp_seg_detach(ro);
	for (int k = 0; k < 3; k++) {
		sp_magset_destroy(s, a[k]);
		sp_magset_destroy(s, b[k]);
	}
	assert_check_both(s, true);
	for (int k = 0; k < 3; k++) /* the held ones were not cached: still ours */
		for (int i = 2; i < 5; i++)
			assert_tag(s, caches[k], off[k][i], s->owner);
	tu_seg_free(s);
}

static void user_free_of_cached_is_double_free(void **state)
{
	struct sp_seg *s = tu_seg_new(0);
	struct sp_pool *p = pool_new(s, "m.pool", 100, 2);
	struct sp_cache *c = cache_new(s, "m.cache", 64, 0), *pc = pool_cache(s, p);
	struct sp_cache *k = kmalloc_cache(s, 300);
	struct sp_magset *set[3] = { set_new(s, 1), set_new(s, 2), set_new(s, 3) };
	struct sp_mag *mc = bind(s, set[0], c), *mp = bind(s, set[1], pc), *mk = bind(s, set[2], k);
	uint16_t mine = SP_OWNER_MAG(s->owner);
	uint64_t active, bad, nfree, pbad, curr, kactive;
	sp_off_t o = 0, x = 0, drained[64];
	uint32_t nr, n = 0;
	struct pages pg;

	assert_int_equal(sp_mag_refill(s, c, mc), HALF);
	assert_int_equal(sp_mag_refill(s, pc, mp), HALF);
	assert_int_equal(sp_mag_refill(s, k, mk), sp_mag_cap(k) / 2); /* 512-byte class */

	/* cache */
	o = mc->objs[HALF / 2];
	active = c->active_objs;
	bad = c->nr_bad_free;
	nfree = c->nr_free;
	assert_int_equal(sp_cache_free(s, c, o), -EINVAL);
	assert_int_equal(c->nr_bad_free, bad + 1);
	assert_int_equal(c->active_objs, active);
	assert_int_equal(c->nr_free, nfree);
	assert_int_equal(mc->nr, HALF);
	assert_tag(s, c, o, mine);

	/* pool (full reserve: the backing refuses it) */
	o = mp->objs[mp->nr - 1];
	pbad = p->nr_bad_free;
	curr = p->curr_nr;
	active = pc->active_objs;
	assert_int_equal(sp_pool_free(s, p, o), -EINVAL);
	assert_int_equal(p->nr_bad_free, pbad + 1);
	assert_int_equal(p->curr_nr, curr);
	assert_int_equal(pc->active_objs, active);
	assert_tag(s, pc, o, mine);
	/* and with a short reserve, which must never take it either */
	pages_take_all(s, &pg);
	while (n < 64 && sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &drained[n]) == 0)
		n++;
	pages_give_back(s, &pg);
	assert_int_equal(p->curr_nr, 0);
	assert_int_equal(sp_pool_free(s, p, o), -EINVAL);
	assert_int_equal(p->curr_nr, 0);
	assert_tag(s, pc, o, mine);
	while (n)
		TU_ASSERT_OK(sp_pool_free(s, p, drained[--n]));
	assert_int_equal(p->curr_nr, 2);

	/* kmalloc */
	o = mk->objs[0];
	kactive = k->active_objs;
	assert_int_equal(sp_kfree(s, o), -EINVAL);
	assert_int_equal(k->active_objs, kactive);
	assert_tag(s, k, o, mine);

	/* sequential double frees: push then free, push twice */
	assert_true(sp_mag_pop(s, c, mc, &x));
	assert_int_equal(sp_mag_push(s, c, mc, x), SP_MAG_PUSHED);
	nr = mc->nr;
	assert_int_equal(sp_cache_free(s, c, x), -EINVAL);
	assert_int_equal(sp_mag_push(s, c, mc, x), SP_MAG_REFUSED);
	assert_int_equal(mc->nr, nr);
	assert_true(sp_mag_pop(s, c, mc, &o)); /* handed out once */
	assert_int_equal(o, x);
	assert_int_equal(sp_mag_pop(s, c, mc, &o), true);
	assert_true(o != x);
	TU_ASSERT_OK(sp_cache_free(s, c, x)); /* held again: an ordinary free */
	assert_int_equal(sp_cache_free(s, c, x), -EINVAL);
	assert_int_equal(sp_mag_push(s, c, mc, x), SP_MAG_REFUSED);
	assert_int_equal(sp_mag_push(s, c, mc, o), SP_MAG_PUSHED);

	tu_check_clean(s);
	for (int i = 0; i < 3; i++)
		sp_magset_destroy(s, set[i]);
	assert_int_equal(c->active_objs, 0);
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	assert_counts(s, p, NULL);
	assert_counts(s, NULL, c);
	tu_check_clean(s);
	tu_seg_free(s);
}

static void push_refuses_what_is_not_held(void **state)
{
	struct sp_seg *s = tu_seg_new(0);
	struct sp_pool *p = pool_new(s, "m.pool", 100, 2);
	struct sp_cache *c = cache_new(s, "m.cache", 64, 0), *c2 = cache_new(s, "m.other", 64, 0);
	struct sp_cache *pc = pool_cache(s, p), *k;
	struct sp_magset *set = set_new(s, 1);
	sp_off_t a, other, elem, freed, raw, large, reserve, data = s->geo.data.off;
	sp_off_t internal = p->elements_off; /* the reserve array: INTERNAL kmalloc */
	uint32_t pfn = 0, head = 0;
	struct bad_push {
		struct sp_cache *c;
		sp_off_t off;
		const char *what;
	} bad[12];
	unsigned n = 0;

	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &a));
	TU_ASSERT_OK(sp_cache_alloc(s, c2, s->owner, &other));
	TU_ASSERT_OK(sp_pool_alloc(s, p, 0, 0, &elem));
	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &freed));
	TU_ASSERT_OK(sp_cache_free(s, c, freed));
	TU_ASSERT_OK(sp_buddy_alloc(s, 0, &raw));
	TU_ASSERT_OK(sp_kmalloc(s, 20000, &large));
	reserve = ((sp_off_t *)sp_ptr(s, p->elements_off))[0];
	/* the kmalloc class holding the reserve array */
	assert_true(sp_off_pfn(s, internal, &pfn));
	TU_ASSERT_OK(sp_block_head(s, pfn, &head));
	assert_int_equal(SP_PG_KIND(s->pages[head].info), SP_KIND_SLAB);
	assert_true(s->pages[head].owner < s->geo.nr_kmalloc);
	k = &sp_caches(s)[s->pages[head].owner];

	bad[n++] = (struct bad_push){ c, a + 8, "mid-object pointer" };
	bad[n++] = (struct bad_push){ c, 8, "the segment header" };
	bad[n++] = (struct bad_push){ c, data - 8, "below the data area" };
	bad[n++] = (struct bad_push){ c, s->size - 8, "the last bytes of the segment" };
	bad[n++] = (struct bad_push){ c, other, "another cache's object" };
	bad[n++] = (struct bad_push){ c, elem, "a pool element" };
	bad[n++] = (struct bad_push){ c, freed, "a free object" };
	bad[n++] = (struct bad_push){ c, raw, "a raw page" };
	bad[n++] = (struct bad_push){ k, large, "a large kmalloc block" };
	bad[n++] = (struct bad_push){ pc, reserve, "a reserve element" };
	bad[n++] = (struct bad_push){ k, internal, "segment metadata (INTERNAL)" };
	for (unsigned i = 0; i < n; i++) {
		struct sp_mag *m = bind(s, set, bad[i].c); /* as the library: bind, push */
		uint32_t nr = m->nr;

		if (sp_mag_push(s, bad[i].c, m, bad[i].off) != SP_MAG_REFUSED)
			fail_msg("push of %s was not refused", bad[i].what);
		assert_int_equal(m->nr, nr);
	}
	assert_tag(s, c, a, s->owner);
	assert_tag(s, c2, other, s->owner);
	assert_tag(s, pc, elem, s->owner);
	assert_tag(s, c, freed, SP_OWNER_NONE);
	assert_tag(s, pc, reserve, SP_OWNER_RESERVE);
	assert_tag(s, k, internal, SP_OWNER_INTERNAL);
	assert_int_equal(p->curr_nr, 2);
	/* what is held goes in */
	assert_int_equal(sp_mag_push(s, c, bind(s, set, c), a), SP_MAG_PUSHED);
	assert_int_equal(sp_mag_push(s, pc, bind(s, set, pc), elem), SP_MAG_PUSHED);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_cache_free(s, c2, other));
	TU_ASSERT_OK(sp_buddy_free(s, raw));
	TU_ASSERT_OK(sp_kfree(s, large));
	sp_magset_destroy(s, set);
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	assert_int_equal(c->active_objs, 0);
	tu_check_clean(s);
	tu_seg_free(s);
}

/* ---- pools: the reserve first, waiters woken ------------------------------ */

static void flush_refills_short_reserve_first(void **state)
{
	struct sp_seg *s = tu_seg_new(0);
	struct sp_pool *p = pool_new(s, "m.pool", 128, 4);
	struct sp_cache *pc = pool_cache(s, p);
	struct sp_magset *set = set_new(s, 1);
	struct sp_mag *m = bind(s, set, pc);
	sp_off_t v[NV], *el;
	struct pages pg;
	uint32_t n = 0;
	int rc;

	/* the backing cannot grow: a refill gets only its free objects, never
	 * the reserve */
	pages_take_all(s, &pg);
	while (n < NV && mag_alloc(s, pc, m, &v[n]))
		n++;
	assert_true(n > 0 && n < NV);
	assert_int_equal(sp_mag_refill(s, pc, m), -ENOMEM);
	assert_int_equal(p->curr_nr, 4);
	/* the locked path takes the reserve */
	while (n < NV && (rc = sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &v[n])) == 0)
		n++;
	assert_int_equal(rc, -ENOMEM);
	assert_int_equal(p->curr_nr, 0);
	assert_int_equal(p->nr_reserve_alloc, 4);
	pages_give_back(s, &pg);

	/* frees into the magazine leave the reserve short ... */
	assert_true(n > 14 && n < SP_MAG_OBJS);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(sp_mag_push(s, pc, m, v[i]), SP_MAG_PUSHED);
	assert_int_equal(p->curr_nr, 0);
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	assert_counts(s, p, NULL);
	/* ... until a flush, which refills it first */
	TU_ASSERT_OK(sp_mag_flush(s, pc, m, 10));
	assert_int_equal(m->nr, 10);
	assert_int_equal(p->curr_nr, 4);
	el = sp_ptr(s, p->elements_off);
	for (int i = 0; i < 4; i++)
		assert_tag(s, pc, el[i], SP_OWNER_RESERVE);
	assert_int_equal(pc->active_objs, 4 + 10);
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	assert_counts(s, p, NULL);
	tu_check_clean(s);
	sp_magset_destroy(s, set);
	assert_int_equal(pc->active_objs, 4);
	assert_counts(s, p, NULL);
	TU_ASSERT_OK(sp_pool_destroy(s, p->id));
	tu_check_clean(s);
	tu_seg_free(s);
}

struct waiter_arg {
	char name[256];
	uint32_t id;
	int fd; /* write end: slot, then the element */
};

static int waiter_child(void *arg)
{
	struct waiter_arg *a = arg;
	struct sp_seg *c;
	struct sp_pool *p;
	sp_off_t off = 0;
	uint32_t slot;
	uint16_t tag;

	alarm(20);
	tu_child_signals_default();
	c = tu_child_attach(a->name, "waiter");
	if (!c)
		return 10;
	slot = c->slot;
	if (write(a->fd, &slot, sizeof(slot)) != sizeof(slot))
		return 11;
	p = sp_pool_get(c, a->id);
	if (!p)
		return 12;
	if (sp_pool_alloc(c, p, 0, 15000, &off) != 0) {
		fprintf(stderr, "waiter: sp_pool_alloc: %s\n", sp_errmsg());
		return 13;
	}
	if (sp_pool_elem_owner(c, p, off, &tag) || tag != c->owner)
		return 14;
	if (write(a->fd, &off, sizeof(off)) != sizeof(off))
		return 15;
	if (sp_pool_free(c, p, off) || sp_client_unregister(c, slot))
		return 16;
	sp_seg_detach(c);
	return 0;
}

/* A waiter sleeping on an empty pool wakes when a magazine is flushed. */
static void flush_wakes_waiter_one(uint32_t min)
{
	struct sp_seg *s = tu_seg_new(0);
	struct sp_pool *p = pool_new(s, "m.wait", 128, min);
	struct sp_cache *pc = pool_cache(s, p);
	struct sp_magset *set = set_new(s, 1);
	struct sp_mag *m = bind(s, set, pc);
	struct waiter_arg a = { .id = p->id };
	sp_off_t v[NV], got = 0;
	uint32_t n = 0, slot = UINT32_MAX, cached;
	struct pages pg;
	int fds[2], st, i, rc;
	bool found = false;
	pid_t pid;

	snprintf(a.name, sizeof(a.name), "%s", s->name);
	assert_true(mag_alloc(s, pc, m, &v[n++])); /* the backing has a slab now */
	pages_take_all(s, &pg);
	while (n < NV && mag_alloc(s, pc, m, &v[n]))
		n++;
	while (n < NV && (rc = sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &v[n])) == 0)
		n++;
	assert_int_equal(rc, -ENOMEM);
	assert_int_equal(p->curr_nr, 0);
	assert_true(n > 5 && n < NV);
	/* five go back into the magazine: cached, nothing the waiter can take */
	cached = 5;
	for (i = 0; i < (int)cached; i++)
		assert_int_equal(sp_mag_push(s, pc, m, v[n - 1 - i]), SP_MAG_PUSHED);
	n -= cached;

	assert_int_equal(pipe(fds), 0);
	a.fd = fds[1];
	pid = tu_fork(waiter_child, &a);
	close(fds[1]);
	for (i = 0; i < 10000 && !__atomic_load_n(&p->nr_waiters, __ATOMIC_SEQ_CST); i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			fail_msg("the waiter exited early with status %#x", st);
		usleep(1000);
	}
	if (!p->nr_waiters) {
		kill(pid, SIGKILL);
		tu_wait(pid);
		fail_msg("the child never waited on the pool");
	}
	usleep(20 * 1000);
	assert_int_equal(waitpid(pid, &st, WNOHANG), 0); /* still asleep */
	/* the flush goes through the pool's free path: reserve, then wake */
	TU_ASSERT_OK(sp_mag_flush(s, pc, m, 0));
	assert_int_equal(tu_wait(pid), 0);
	assert_int_equal(read(fds[0], &slot, sizeof(slot)), sizeof(slot));
	assert_int_equal(read(fds[0], &got, sizeof(got)), sizeof(got));
	close(fds[0]);
	for (i = 0; i < (int)cached; i++)
		found |= got == v[n + i];
	assert_true(found); /* it got one of the flushed elements */
	assert_int_equal(p->nr_waiters, 0);
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	pages_give_back(s, &pg);
	for (i = 0; i < (int)n; i++)
		TU_ASSERT_OK(sp_pool_free(s, p, v[i]));
	assert_int_equal(p->curr_nr, min);
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	assert_counts(s, p, NULL);
	sp_magset_destroy(s, set);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_pool_destroy(s, p->id));
	tu_seg_free(s);
}

static void flush_wakes_waiter_in_other_process(void **state)
{
	flush_wakes_waiter_one(2); /* the reserve is short: refilled, the waiter takes it */
	flush_wakes_waiter_one(0); /* no reserve: freed to the backing and woken */
}

/* ---- destroy ---------------------------------------------------------------- */

static void destroy_busy_while_cached(void **state)
{
	struct sp_seg *s = tu_seg_new(0);
	struct sp_cache *c = cache_new(s, "m.cache", 64, 0), *c2;
	struct sp_pool *p = pool_new(s, "m.pool", 100, 2);
	struct sp_cache *pc = pool_cache(s, p);
	struct sp_magset *set = set_new(s, 1), *set2 = set_new(s, 2);
	struct sp_mag *m = bind(s, set, c), *mp = bind(s, set2, pc);
	uint32_t cid = c->id, pid = p->id, id;

	assert_int_equal(sp_mag_refill(s, c, m), HALF);
	assert_int_equal(sp_cache_in_use(s, c), 0);
	assert_int_equal(sp_cache_destroy(s, cid), -EBUSY);
	printf("  cache destroy: %s\n", sp_errmsg());
	assert_non_null(strstr(sp_errmsg(), "magazine"));
	assert_non_null(sp_cache_get(s, cid));
	assert_int_equal(sp_mag_refill(s, pc, mp), HALF);
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	assert_int_equal(sp_pool_destroy(s, pid), -EBUSY);
	printf("  pool destroy: %s\n", sp_errmsg());
	assert_non_null(strstr(sp_errmsg(), "magazine"));
	assert_non_null(sp_pool_get(s, pid));
	tu_check_clean(s);

	TU_ASSERT_OK(sp_mag_flush(s, c, m, 0));
	TU_ASSERT_OK(sp_cache_destroy(s, cid));
	TU_ASSERT_OK(sp_mag_flush(s, pc, mp, 0));
	TU_ASSERT_OK(sp_pool_destroy(s, pid));
	tu_check_clean(s);

	/* a new cache in the same descriptor has a new generation: the stale
	 * binding is dropped, not flushed into it */
	TU_ASSERT_OK(sp_cache_create(s, "m.cache2", 64, 0, 0, NULL, &id));
	assert_int_equal(id, cid);
	c2 = sp_cache_get(s, id);
	assert_false(sp_mag_bound(m, c2));
	assert_ptr_equal(bind(s, set, c2), m);
	assert_int_equal(m->nr, 0);
	assert_int_equal(sp_mag_refill(s, c2, m), HALF);
	sp_magset_destroy(s, set);
	sp_magset_destroy(s, set2);
	assert_int_equal(c2->active_objs, 0);
	TU_ASSERT_OK(sp_cache_destroy(s, id));
	tu_check_clean(s);
	tu_seg_free(s);
}

/* ---- slots: death, release, unregister ------------------------------------- */

struct slot_arg {
	char name[256];
	uint32_t cache, pool;
	bool hold;		/* keep some objects (else cache only) */
	bool goodbye;		/* unregister before exiting */
	int fd;			/* write end: the slot */
};

/* Take @n objects of @c through the magazine, give all but @keep back. */
static int child_cache_in(struct sp_seg *s, struct sp_magset *set, struct sp_cache *c, int n,
			  int keep)
{
	struct sp_mag *m;
	sp_off_t v[128];

	if (!c || n > 128 || sp_mag_bind(s, set, c, &m))
		return 1;
	for (int i = 0; i < n; i++)
		if (!mag_alloc(s, c, m, &v[i]))
			return 1;
	for (int i = keep; i < n; i++)
		if (!mag_free(s, c, m, v[i]))
			return 1;
	return 0;
}

static int slot_child(void *arg)
{
	struct slot_arg *a = arg;
	struct sp_magset *set[4];
	struct sp_cache *c, *pc, *k;
	struct sp_seg *s;
	int bad = 0, h = a->hold;

	alarm(20);
	tu_child_signals_default();
	s = tu_child_attach(a->name, "cacher");
	if (!s)
		return 10;
	if (write(a->fd, &s->slot, sizeof(s->slot)) != sizeof(s->slot))
		return 11;
	c = sp_cache_get(s, a->cache);
	pc = sp_pool_get(s, a->pool) ? sp_cache_get(s, sp_pool_get(s, a->pool)->cache_id) : NULL;
	k = &sp_caches(s)[sp_kmalloc_class(100)];
	for (int t = 0; t < 4; t++) /* four threads */
		if (sp_magset_create(s, 300 + (uint32_t)t, &set[t]))
			return 12;
	bad |= child_cache_in(s, set[0], c, 40, h ? 6 : 0);
	bad |= child_cache_in(s, set[1], pc, 20, h ? 4 : 0);
	bad |= child_cache_in(s, set[2], k, 10, h ? 3 : 0);
	bad |= child_cache_in(s, set[3], c, 90, h ? 10 : 0);
	if (bad)
		return 13;
	if (a->goodbye) {
		if (sp_client_unregister(s, s->slot))
			return 14;
		sp_seg_detach(s);
	}
	return 0; /* without a goodbye the sets and their objects stay */
}

static uint32_t run_slot_child(struct sp_seg *s, struct slot_arg *a)
{
	uint32_t slot = UINT32_MAX;
	int fds[2];
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	a->fd = fds[1];
	snprintf(a->name, sizeof(a->name), "%s", s->name);
	pid = tu_fork(slot_child, a);
	close(fds[1]);
	assert_int_equal(tu_wait(pid), 0);
	assert_int_equal(read(fds[0], &slot, sizeof(slot)), sizeof(slot));
	close(fds[0]);
	assert_true(slot < s->geo.max_clients && slot != s->slot);
	return slot;
}

static void dead_slot_magazines_released(void **state)
{
	struct sp_seg *s = tu_seg_new(0);
	struct sp_cache *c = cache_new(s, "m.cache", 64, 0);
	struct sp_pool *p = pool_new(s, "m.pool", 100, 3);
	struct sp_cache *pc = pool_cache(s, p), *k = kmalloc_cache(s, 100);
	struct slot_arg a = { .cache = c->id, .pool = p->id, .hold = true };
	uint64_t kin = sp_cache_in_use(s, k), kactive = k->active_objs, cached;
	struct sp_holdings h, rel;
	struct sp_magset *mine;
	struct sp_mag *mm;
	uint32_t slot, nr;
	sp_off_t off = 0;

	/* our own live magazine, which no release of any slot may touch */
	mine = set_new(s, 1);
	mm = bind(s, mine, c);
	assert_int_equal(sp_mag_refill(s, c, mm), HALF);

	slot = run_slot_child(s, &a);
	assert_int_equal(list_len(s, slot), 4);
	assert_int_equal(mag_blocks(s, (uint16_t)(slot + 1)), 4);
	TU_ASSERT_OK(sp_slot_holdings(s, slot, &h));
	assert_int_equal(h.magsets, 4);
	assert_int_equal(h.objects, 6 + 4 + 3 + 10);
	assert_int_equal(h.pool_elems, 4);
	cached = sp_mag_cached(s, c->id) - HALF; /* ours: HALF */
	cached += sp_mag_cached(s, pc->id) + sp_mag_cached(s, k->id);
	assert_int_equal(h.cached, cached);
	assert_true(cached > 0);
	assert_int_equal(sp_cache_in_use(s, c), 16);
	assert_int_equal(sp_pool_nr_out(s, p), 4);
	assert_int_equal(sp_cache_in_use(s, k), kin + 3);
	tu_check_clean(s); /* the slot is still ALIVE: its tags are attributed */

	assert_int_equal(sp_client_reap(s), 1);
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_DEAD);
	/* a reclaim-only release still frees what was cached, and the sets */
	TU_ASSERT_OK(sp_slot_release(s, slot, true, &rel));
	assert_int_equal(rel.cached, cached);
	assert_int_equal(rel.magsets, 4);
	TU_ASSERT_OK(sp_slot_holdings(s, slot, &h));
	assert_int_equal(h.cached, 0);
	assert_int_equal(h.magsets, 0);
	assert_int_equal(h.objects, 6 + 4 + 3 + 10);
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_DEAD);
	assert_int_equal(sp_clients(s)[slot].mag_head, 0);
	assert_int_equal(mag_blocks(s, (uint16_t)(slot + 1)), 0);
	assert_int_equal(sp_mag_cached(s, c->id), HALF); /* ours only */
	assert_int_equal(c->active_objs, HALF + 16);
	assert_int_equal(k->active_objs, kactive + 3);
	assert_counts(s, p, NULL);
	assert_counts(s, NULL, c);
	tu_check_clean(s);
	/* the full release frees the rest and the slot */
	TU_ASSERT_OK(sp_slot_release(s, slot, false, &rel));
	assert_int_equal(rel.objects, 6 + 4 + 3 + 10);
	assert_int_equal(rel.cached, 0);
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	assert_int_equal(c->active_objs, HALF);
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	assert_int_equal(p->curr_nr, 3);
	assert_int_equal(pc->active_objs, 3);
	assert_int_equal(k->active_objs, kactive);
	assert_counts(s, p, NULL);
	assert_counts(s, NULL, c);
	tu_check_clean(s);

	/* a release of a live slot (ours) leaves its magazines alone */
	nr = mm->nr;
	TU_ASSERT_OK(sp_slot_release(s, s->slot, false, &rel));
	assert_int_equal(rel.cached, HALF);
	assert_int_equal(mm->nr, nr);
	assert_int_equal(mag_blocks(s, s->owner), 1);
	assert_true(sp_mag_pop(s, c, mm, &off));
	assert_tag(s, c, off, s->owner);
	assert_int_equal(sp_mag_push(s, c, mm, off), SP_MAG_PUSHED);

	/* a goodbye with only cached objects frees the slot at once */
	a.hold = false;
	a.goodbye = true;
	slot = run_slot_child(s, &a);
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	assert_int_equal(mag_blocks(s, (uint16_t)(slot + 1)), 0);
	assert_int_equal(sp_mag_cached(s, c->id), HALF);
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	assert_int_equal(c->active_objs, HALF);
	tu_check_clean(s);
	/* a goodbye still holding objects: they stay attributed to the DEAD
	 * slot, but what its magazines cached is nobody's and goes at once */
	a.hold = true;
	slot = run_slot_child(s, &a);
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_DEAD);
	TU_ASSERT_OK(sp_slot_holdings(s, slot, &h));
	assert_int_equal(h.objects, 6 + 4 + 3 + 10);
	assert_int_equal(h.cached, 0);
	assert_int_equal(h.magsets, 0);
	assert_int_equal(sp_clients(s)[slot].mag_head, 0);
	assert_int_equal(sp_mag_cached(s, c->id), HALF);
	assert_int_equal(c->active_objs, HALF + 16);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_slot_release(s, slot, false, NULL));
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	assert_int_equal(c->active_objs, HALF);
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	tu_check_clean(s);
	sp_magset_destroy(s, mine);
	assert_counts(s, p, NULL);
	assert_counts(s, NULL, c);
	TU_ASSERT_OK(sp_cache_destroy(s, c->id));
	TU_ASSERT_OK(sp_pool_destroy(s, p->id));
	tu_check_clean(s);
	tu_seg_free(s);
}

/* ---- lists ------------------------------------------------------------------ */

struct lock_arg {
	char name[256];
	uint32_t victim_slot;	/* whose list to break */
	uint32_t pfn;		/* a set on it */
	bool make_set;		/* instead: make a set and exit */
};

/* Break a list under the registry lock and die holding the lock. */
static int breaker_child(void *arg)
{
	struct lock_arg *a = arg;
	struct sp_seg *s;

	alarm(20);
	tu_child_signals_default();
	s = tu_child_attach(a->name, "breaker");
	if (!s)
		return 10;
	if (a->make_set) {
		struct sp_magset *set;

		return sp_magset_create(s, 1, &set) ? 11 : 0;
	}
	if (sp_registry_lock(s))
		return 12;
	s->pages[a->pfn].prev = 0x7777; /* a wrong back link */
	sp_clients(s)[a->victim_slot].mag_head = 0;
	_exit(0); /* holding the registry lock */
}

static void relink_rebuilds_lists(void **state)
{
	struct sp_seg *s = tu_seg_new(0);
	struct sp_magset *set[3];
	struct lock_arg a = { 0 };
	uint64_t rec = s->hdr->registry_lock.recoveries, free_pages;
	uint32_t slot;

	for (int i = 0; i < 3; i++)
		set[i] = set_new(s, 10 + (uint32_t)i);
	assert_int_equal(list_len(s, s->slot), 3);
	assert_check_both(s, true);

	/* a lost head: the sets are in the pages, not on the list */
	sp_clients(s)[s->slot].mag_head = 0;
	assert_check_both(s, false);
	TU_ASSERT_OK(sp_registry_lock(s));
	sp_mag_relink_locked(s);
	sp_registry_unlock(s);
	assert_int_equal(list_len(s, s->slot), 3);
	assert_check_both(s, true);

	/* a broken list left by a process that died holding the registry lock:
	 * the next locker's recovery rebuilds it */
	snprintf(a.name, sizeof(a.name), "%s", s->name);
	a.victim_slot = s->slot;
	a.pfn = set_pfn(s, set[1]);
	assert_int_equal(tu_wait(tu_fork(breaker_child, &a)), 0);
	assert_true(tu_check_count(s, SP_CHECK_NOLOCK) > 0);
	TU_ASSERT_OK(sp_registry_lock(s));
	sp_registry_unlock(s);
	assert_int_equal(s->hdr->registry_lock.recoveries, rec + 1);
	assert_int_equal(list_len(s, s->slot), 3);
	assert_int_equal(sp_client_reap(s), 1);
	for (slot = 0; sp_clients(s)[slot].state != SP_CLIENT_DEAD; slot++)
		;
	TU_ASSERT_OK(sp_slot_release(s, slot, false, NULL));
	assert_check_both(s, true);

	/* a set tagged with a slot that is FREE (scribbled state): freed */
	a.make_set = true;
	assert_int_equal(tu_wait(tu_fork(breaker_child, &a)), 0);
	assert_int_equal(sp_client_reap(s), 1);
	for (slot = 0; sp_clients(s)[slot].state != SP_CLIENT_DEAD; slot++)
		;
	assert_int_equal(mag_blocks(s, (uint16_t)(slot + 1)), 1);
	free_pages = s->hdr->buddy.free_pages;
	sp_clients(s)[slot].state = SP_CLIENT_FREE;
	assert_check_both(s, false);
	TU_ASSERT_OK(sp_registry_lock(s));
	sp_mag_relink_locked(s);
	sp_registry_unlock(s);
	assert_int_equal(mag_blocks(s, (uint16_t)(slot + 1)), 0);
	assert_int_equal(s->hdr->buddy.free_pages, free_pages + (1u << SP_MAGSET_ORDER));
	assert_int_equal(sp_clients(s)[slot].mag_head, 0);
	assert_int_equal(list_len(s, s->slot), 3);
	assert_check_both(s, true);

	/* destroyed in list order: head, tail, middle */
	sp_magset_destroy(s, set[2]);
	sp_magset_destroy(s, set[0]);
	assert_int_equal(list_len(s, s->slot), 1);
	assert_check_both(s, true);
	sp_magset_destroy(s, set[1]);
	assert_int_equal(sp_clients(s)[s->slot].mag_head, 0);
	assert_check_both(s, true);
	tu_seg_free(s);
}

/* ---- many sets per slot ---------------------------------------------------- */

#define NSETS 40
#define NTHREADS 6
#define NBOX 16

struct shared_run {
	struct sp_seg *s;
	struct sp_cache *c, *pc, *k;
	sp_off_t box[NBOX];	/* handoff: an object one thread allocated, another frees */
	int failed;
	char msg[240];
};

struct thread_arg {
	struct shared_run *r;
	int idx;
};

static void run_fail(struct shared_run *r, const char *what, sp_off_t off)
{
	if (__atomic_fetch_add(&r->failed, 1, __ATOMIC_RELAXED) == 0)
		snprintf(r->msg, sizeof(r->msg), "%s (object %#llx): %s", what,
			 (unsigned long long)off, sp_errmsg());
}

static uint64_t pattern(sp_off_t off)
{
	return off * 0x9e3779b97f4a7c15ULL ^ 0x5a5a;
}

static void *thread_main(void *p)
{
	struct thread_arg *ta = p;
	struct shared_run *r = ta->r;
	struct sp_seg *s = r->s;
	struct sp_cache *cs[3] = { r->c, r->pc, r->k };
	struct sp_magset *set;
	struct sp_mag *m;
	struct {
		sp_off_t off;
		int k;
	} held[64];
	uint64_t rng = 77 + (uint64_t)ta->idx;
	int n = 0;

	if (sp_magset_create(s, 1000 + (uint32_t)ta->idx, &set)) {
		run_fail(r, "sp_magset_create", 0);
		return NULL;
	}
	for (int it = 0; it < 20000 && !__atomic_load_n(&r->failed, __ATOMIC_RELAXED); it++) {
		uint64_t x = tu_rand(&rng);
		int k = (int)(x % 3);
		sp_off_t off = 0;

		if (n < 64 && (x >> 8) % 3) {
			/* bound at every use, as the library does: the named cache
			 * and the pool's share a magazine (ids equal modulo 32) */
			if (sp_mag_bind(s, set, cs[k], &m) || !mag_alloc(s, cs[k], m, &off)) {
				run_fail(r, "alloc", 0);
				break;
			}
			*(uint64_t *)sp_ptr(s, off) = pattern(off);
			held[n].off = off;
			held[n++].k = k;
		} else if (n) {
			int i = (int)((x >> 16) % (uint64_t)n);
			sp_off_t got;

			off = held[i].off;
			k = held[i].k;
			held[i] = held[--n];
			if (*(uint64_t *)sp_ptr(s, off) != pattern(off)) {
				run_fail(r, "object overwritten: handed out twice", off);
				break;
			}
			/* named-cache objects go through a mailbox to another thread */
			if (k == 0) {
				got = __atomic_exchange_n(&r->box[(x >> 24) % NBOX], off,
							  __ATOMIC_ACQ_REL);
				if (!got)
					continue;
				off = got;
				if (*(uint64_t *)sp_ptr(s, off) != pattern(off)) {
					run_fail(r, "handed-off object overwritten", off);
					break;
				}
			}
			*(uint64_t *)sp_ptr(s, off) = 0;
			if (sp_mag_bind(s, set, cs[k], &m) || !mag_free(s, cs[k], m, off)) {
				run_fail(r, "free refused", off);
				break;
			}
		}
	}
	while (n--)
		if (sp_mag_bind(s, set, cs[held[n].k], &m) ||
		    !mag_free(s, cs[held[n].k], m, held[n].off))
			run_fail(r, "final free refused", held[n].off);
	sp_magset_destroy(s, set);
	return NULL;
}

static void many_sets_per_slot(void **state)
{
	struct sp_seg *s = tu_seg_new(32u << 20);
	struct sp_pool *p = pool_new(s, "m.pool", 96, 8);
	struct shared_run r = { .s = s, .c = cache_new(s, "m.cache", 48, 0), .pc = pool_cache(s, p),
				.k = kmalloc_cache(s, 64) };
	struct thread_arg ta[NTHREADS];
	pthread_t th[NTHREADS];
	struct sp_magset *set[NSETS];
	struct sp_holdings h;
	uint64_t kin = sp_cache_in_use(s, r.k);

	/* one set per thread, all on the slot's list */
	for (int i = 0; i < NSETS; i++) {
		set[i] = set_new(s, (uint32_t)i + 1);
		assert_int_equal(sp_mag_refill(s, r.c, bind(s, set[i], r.c)), HALF);
	}
	assert_int_equal(list_len(s, s->slot), NSETS);
	assert_int_equal(mag_blocks(s, s->owner), NSETS);
	TU_ASSERT_OK(sp_slot_holdings(s, s->slot, &h));
	assert_int_equal(h.magsets, NSETS);
	assert_int_equal(h.cached, NSETS * HALF);
	assert_int_equal(sp_mag_cached(s, r.c->id), NSETS * HALF);
	assert_int_equal(sp_cache_in_use(s, r.c), 0);
	for (int i = 0; i < NSETS; i += 2)
		sp_magset_destroy(s, set[i]);
	assert_int_equal(list_len(s, s->slot), NSETS / 2);
	assert_int_equal(sp_mag_cached(s, r.c->id), NSETS / 2 * HALF);
	assert_check_both(s, true);
	for (int i = 1; i < NSETS; i += 2)
		sp_magset_destroy(s, set[i]);
	assert_int_equal(sp_clients(s)[s->slot].mag_head, 0);
	assert_int_equal(r.c->active_objs, 0);

	/* threads of one slot, each with its own set, handing objects off */
	for (int i = 0; i < NTHREADS; i++) {
		ta[i] = (struct thread_arg){ &r, i };
		assert_int_equal(pthread_create(&th[i], NULL, thread_main, &ta[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	if (r.failed)
		fail_msg("%d thread failure(s): %s", r.failed, r.msg);
	for (int i = 0; i < NBOX; i++) { /* what is left in the mailboxes */
		if (r.box[i])
			TU_ASSERT_OK(sp_cache_free(s, r.c, r.box[i]));
	}
	assert_int_equal(sp_clients(s)[s->slot].mag_head, 0);
	assert_int_equal(mag_blocks(s, s->owner), 0);
	assert_int_equal(r.c->active_objs, 0);
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	assert_int_equal(p->curr_nr, 8);
	assert_int_equal(sp_cache_in_use(s, r.k), kin);
	assert_counts(s, p, NULL);
	assert_counts(s, NULL, r.c);
	tu_check_clean(s);
	tu_seg_free(s);
}

/* ---- the checker sees corrupted magazine state ----------------------------- */

static void checker_reports_corrupt_magazines(void **state)
{
	struct sp_seg *s = tu_seg_new(0);
	struct sp_cache *c = cache_new(s, "m.cache", 64, 0), *k = kmalloc_cache(s, 64);
	struct sp_magset *a = set_new(s, 1), *b = set_new(s, 2);
	struct sp_mag *m = bind(s, a, c);
	uint32_t pa = set_pfn(s, a), pb = set_pfn(s, b), f, save, slab_pfn;
	uint16_t *tag, old;
	struct sp_slab *slab;
	uint32_t idx;
	bool allocated;

	assert_int_equal(sp_mag_refill(s, c, m), HALF);
	assert_true(sp_mag_refill(s, k, bind(s, b, k)) > 0);
	for (f = s->geo.max_clients - 1; sp_clients(s)[f].state != SP_CLIENT_FREE; f--)
		;
	assert_check_both(s, true);

	/* a set block tagged with a FREE slot */
	save = s->pages[pa].slot;
	s->pages[pa].slot = (uint16_t)(f + 1);
	assert_check_both(s, false);
	s->pages[pa].slot = (uint16_t)save;
	assert_check_both(s, true);

	/* broken list links: a back link, a head to a page that is no set */
	save = s->pages[pb].prev;
	s->pages[pb].prev = 0x1234;
	assert_check_both(s, false);
	s->pages[pb].prev = save;
	save = sp_clients(s)[s->slot].mag_head;
	assert_int_equal(sp_cache_obj_locate(s, c, m->objs[0], &slab, &idx), 0);
	slab_pfn = (uint32_t)(((uint8_t *)slab - s->data) >> SP_PAGE_SHIFT);
	sp_clients(s)[s->slot].mag_head = slab_pfn + 1;
	assert_check_both(s, false);
	sp_clients(s)[s->slot].mag_head = save;
	/* an uncommitted set on a list */
	save = a->magic;
	a->magic = 0;
	assert_check_both(s, false);
	a->magic = save;
	assert_check_both(s, true);

	/* an uncommitted set off every list (its maker died under the registry
	 * lock): a violation until the slot is marked loose, which is what the
	 * registry's recovery does; the slot's release then walks the pages */
	{
		struct sp_magset *t = set_new(s, 3);
		uint32_t pt = set_pfn(s, t), *flags = &sp_clients(s)[s->slot].flags;

		assert_int_equal(sp_registry_lock(s), 0);
		sp_plist_del(s, &sp_clients(s)[s->slot].mag_head, pt);
		t->magic = 0;
		sp_registry_unlock(s);
		assert_false(*flags & SP_SLOT_LOOSE_SETS);
		assert_check_both(s, false);
		assert_int_equal(sp_registry_lock(s), 0);
		sp_mag_relink_locked(s); /* as after the death of the lock's owner */
		sp_registry_unlock(s);
		assert_true(*flags & SP_SLOT_LOOSE_SETS);
		assert_int_equal(s->pages[pt].info,
				 SP_PG_INFO(SP_PG_ALLOC, SP_MAGSET_ORDER, SP_KIND_MAG));
		assert_check_both(s, true);
		assert_int_equal(sp_buddy_lock(s), 0); /* what that page walk would do */
		sp_buddy_free_locked(s, pt);
		sp_buddy_unlock(s);
		__atomic_fetch_and(flags, ~SP_SLOT_LOOSE_SETS, __ATOMIC_SEQ_CST);
		assert_check_both(s, true);
	}

	/* a cached object whose magazine tag names a FREE slot */
	assert_int_equal(obj_tag(s, c, m->objs[3], &allocated), SP_OWNER_MAG(s->owner));
	assert_int_equal(sp_cache_obj_locate(s, c, m->objs[3], &slab, &idx), 0);
	tag = &sp_slab_owners(c, slab)[idx];
	old = *tag;
	*tag = SP_OWNER_MAG(f + 1);
	assert_check_both(s, false);
	*tag = old;
	assert_check_both(s, true);

	sp_magset_destroy(s, a);
	sp_magset_destroy(s, b);
	assert_check_both(s, true);
	tu_seg_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(refill_pop_push_flush),
		cmocka_unit_test(rebind_flushes_the_other_cache),
		cmocka_unit_test(pop_drops_scribbled_entries),
		cmocka_unit_test(stats_count_cached_as_free),
		cmocka_unit_test(checker_clean_with_cached_objects),
		cmocka_unit_test(user_free_of_cached_is_double_free),
		cmocka_unit_test(push_refuses_what_is_not_held),
		cmocka_unit_test(flush_refills_short_reserve_first),
		cmocka_unit_test(flush_wakes_waiter_in_other_process),
		cmocka_unit_test(destroy_busy_while_cached),
		cmocka_unit_test(dead_slot_magazines_released),
		cmocka_unit_test(relink_rebuilds_lists),
		cmocka_unit_test(many_sets_per_slot),
		cmocka_unit_test(checker_reports_corrupt_magazines),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
