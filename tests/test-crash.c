/* SPDX-License-Identifier: MIT */
/*
 * test-crash.c - kill -9 safety: a process may die at any instruction and
 * the next one recovers.
 *
 * With fault injection compiled in (build-fault), one test per entry of
 * sp_crash_points[]: forked children with their own slot arm the point with
 * SHMPOOL_CRASH_POINT=name[:N] and run a workload that passes through it, in
 * several variants (different callers of the same point).  Each must die by
 * SIGKILL.  The parent then reaps the slot, works on the same structures
 * (taking the locks runs the recovery), runs the checker, releases the dead
 * slot, runs the checker again - and once more in the other order, the
 * release first, straight after the reap, as the daemon does it - and
 * verifies that nothing is handed out twice or lost: what it allocated
 * right after the crash, before any recovery, must stay its own; it drains
 * every capped pool, a slab's worth of the named cache and every free page,
 * and checks that all offsets are distinct, none is something it already
 * holds, the counts match the counters, and no INTERNAL memory leaked.
 * The pool points (pool.*) also run on a pool backed by a shared kmalloc
 * class, whose reserve recovery rebuilds from its elements array and
 * put_off alone; the parent holds it at its cap, so that every element the
 * dying child takes comes from the reserve, and the child holds nothing but
 * the element in flight (what a dead holder keeps of such a pool goes back
 * to the class as kmalloc objects on release, and the pool's count of
 * elements out can then only be bounded: mempool.c).  A death inside the
 * class's own alloc or free during a fill or drain (slab.alloc.bit,
 * slab.free.bit) leaves that count one high, never low, and the object
 * INTERNAL for the registry's sweep: nothing leaked, nothing twice.
 * The magazine points (mag.*) run in children with two threads' magazine
 * sets on a named cache, a kmalloc class and an uncapped slab pool, objects
 * allocated by one thread and freed by the other, and a flush into a pool
 * whose reserve ran short; a dead slot's magazines (client.release) are
 * released by another process that dies half way.  After the release no
 * object or set carries the dead slot's tags, and the alloc and free
 * counts, magazines included, match what is out.  The client points
 * (client.register, client.mark_dead) run what the daemon does for each
 * client: register a slot, mark it dead, release it; after every scenario
 * no slot but the parent's is left in use.  The filter point (slot.note:
 * a slot's filter bit set before the first tag naming it in a cache or a
 * block) runs on every kind of allocation that sets one; the checker
 * verifies that every tag naming a slot is covered by its filter.  A
 * further test checks
 * that the catalogue matches the SP_CRASH_POINT()s in shared/ sources and
 * headers (the magazine fast paths are inline).
 *
 * In every build: a random-kill torture.  Children run a mixed workload
 * (shared pools, cache and kmalloc; private pools and caches created and
 * destroyed; reserve resizes) while the parent SIGKILLs one at a random
 * moment and starts a replacement, releases dead slots and runs the locking
 * checker as it goes; then everything is stopped and the segment must be
 * clean, every lock usable, every reserve full and every capped pool fully
 * obtainable.  SHMPOOL_CRASH_KILLS (150), SHMPOOL_CRASH_SECONDS (30) and
 * SHMPOOL_CRASH_SEED tune it.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "magazine.h"
#include "test-util.h"

/* ---- helpers shared by both parts --------------------------------------- */

/* The segment of the running test, unlinked by teardown if the test fails. */
static char current_seg[256];

static struct sp_seg *seg_new(const struct sp_seg_params *p)
{
	struct sp_seg *s = tu_seg_new_params(p);

	snprintf(current_seg, sizeof(current_seg), "%s", s->name);
	s->lock_timeout_ms = 20000; /* a wedged lock fails the test instead of hanging it */
	return s;
}

static void seg_free(struct sp_seg *s)
{
	current_seg[0] = '\0';
	tu_seg_free(s);
}

static int unlink_leftover(void **state)
{
	if (current_seg[0])
		shm_unlink(current_seg);
	current_seg[0] = '\0';
	return 0;
}



static uint64_t stamp(uint16_t owner, uint32_t seq, sp_off_t off, uint64_t i)
{
	if (i == 0)
		return (uint64_t)owner << 48 | seq;
	return ((uint64_t)owner << 48) ^ ((uint64_t)seq << 16) ^ (off * 0xff51afd7ed558ccdULL) ^
	       ((i + 1) * 0x9e3779b97f4a7c15ULL);
}

static void fill(struct sp_seg *s, sp_off_t off, uint64_t size, uint32_t seq)
{
	uint8_t *p = sp_ptr(s, off);

	for (uint64_t i = 0; i < size / 8; i++) {
		uint64_t v = stamp(s->owner, seq, off, i);

		memcpy(p + 8 * i, &v, 8);
	}
	for (uint64_t b = size & ~7ull; b < size; b++)
		p[b] = (uint8_t)(stamp(s->owner, seq, off, size / 8) >> (8 * (b % 8)));
}

static bool intact(struct sp_seg *s, sp_off_t off, uint64_t size, uint32_t seq)
{
	const uint8_t *p = sp_ptr(s, off);

	for (uint64_t i = 0; i < size / 8; i++) {
		uint64_t v = stamp(s->owner, seq, off, i), got;

		memcpy(&got, p + 8 * i, 8);
		if (got != v)
			return false;
	}
	for (uint64_t b = size & ~7ull; b < size; b++)
		if (p[b] != (uint8_t)(stamp(s->owner, seq, off, size / 8) >> (8 * (b % 8))))
			return false;
	return true;
}

static int cmp_off(const void *a, const void *b)
{
	sp_off_t x = *(const sp_off_t *)a, y = *(const sp_off_t *)b;

	return x < y ? -1 : x > y;
}

/* Fail unless the offsets in @v are distinct. */
static void assert_distinct(const char *what, sp_off_t *v, uint32_t n)
{
	sp_off_t *c = malloc((n + 1) * sizeof(*c));

	assert_non_null(c);
	memcpy(c, v, n * sizeof(*c));
	qsort(c, n, sizeof(*c), cmp_off);
	for (uint32_t i = 1; i < n; i++)
		if (c[i] == c[i - 1])
			fail_msg("%s: offset %#llx handed out twice", what,
				 (unsigned long long)c[i]);
	free(c);
}

/* Release every DEAD slot; each must end up FREE and holding nothing. */
static void release_dead_slots(struct sp_seg *s)
{
	for (uint32_t i = 0; i < s->hdr->max_clients; i++) {
		struct sp_holdings h;

		if (sp_clients(s)[i].state != SP_CLIENT_DEAD)
			continue;
		TU_ASSERT_OK(sp_slot_release(s, i, false, NULL));
		/* released: FREE, or already ALIVE again for a new child; a slot
		 * left DEAD still holds something (and cannot be reused meanwhile) */
		if (sp_clients(s)[i].state != SP_CLIENT_DEAD)
			continue;
		TU_ASSERT_OK(sp_slot_holdings(s, i, &h));
		{
			for (uint32_t pfn = 0; pfn < s->hdr->nr_pages;) {
				struct sp_page *pg = &s->pages[pfn];
				uint32_t o = SP_PG_ORDER(pg->info);

				if (SP_PG_STATE(pg->info) == SP_PG_ALLOC && pg->slot == i + 1) {
					struct sp_pool *p = SP_PG_KIND(pg->info) == SP_KIND_POOL &&
								    pg->owner < s->hdr->max_pools
							    ? &sp_pools(s)[pg->owner] : NULL;

					printf("  held: page %u info %#x owner %u%s%.63s state %u\n", pfn,
					       pg->info, pg->owner, p ? " pool " : "",
					       p ? p->name : "", p ? p->state : 0);
				}
				pfn += 1u << (o > s->hdr->max_order ? 0 : o);
			}
			for (uint32_t id = 0; id < sp_nr_cache_slots(s); id++) {
				struct sp_cache *c = &sp_caches(s)[id];

				for (uint32_t pfn = 0; c->state != SP_DESC_FREE && pfn < s->hdr->nr_pages;) {
					uint32_t o = SP_PG_ORDER(s->pages[pfn].info);

					if (sp_slab_valid(s, c, pfn)) {
						struct sp_slab *sl = sp_slab_at(s, c, pfn);

						for (uint32_t k = 0; k < c->objperslab; k++)
							if ((sl->bitmap[k / 64] >> (k % 64) & 1) &&
							    sp_slab_owners(c, sl)[k] == i + 1)
								printf("  held: cache %.63s (state %u, pool %u state %u) slab %u list %u inuse %u object %u\n",
								       c->name, c->state, c->pool_id,
								       c->pool_id ? sp_pools(s)[c->pool_id - 1].state : 0,
								       pfn, sl->list, sl->inuse, k);
					}
					pfn += 1u << (o > s->hdr->max_order ? 0 : o);
				}
			}
			fail_msg("dead slot %u still holds %llu objects, %llu pages after release",
				 i, (unsigned long long)h.objects, (unsigned long long)h.pages);
		}
	}
}

/* Page-backed elements of pool @id, counted from the page metadata. */
static uint32_t count_pool_pages(struct sp_seg *s, uint32_t id)
{
	uint32_t n = 0, pfn;

	TU_ASSERT_OK(sp_buddy_lock(s));
	for (pfn = 0; pfn < s->hdr->nr_pages;) {
		uint32_t info = s->pages[pfn].info, o = SP_PG_ORDER(info);

		if (SP_PG_STATE(info) == SP_PG_ALLOC && SP_PG_KIND(info) == SP_KIND_POOL &&
		    s->pages[pfn].owner == id)
			n++;
		pfn += 1u << (o > s->hdr->max_order ? 0 : o);
	}
	sp_buddy_unlock(s);
	return n;
}

/*
 * How far a kmalloc-backed pool's count of its class objects may run high:
 * a death inside the class's alloc or free, between the object and the
 * count, leaves it one high (never low: mempool.c).  Set per scenario.
 */
static unsigned kcount_slack;

/*
 * A pool's counters reconcile: reserve full, and its backing holds exactly
 * the reserve plus the @out elements the caller knows are out.
 */
static void check_pool_counters(struct sp_seg *s, struct sp_pool *p, uint32_t out)
{
	uint32_t curr, min, pages = 0, pages_out = 0;
	uint64_t active = 0, objs = 0;

	/* read under the locks, fail after releasing them */
	TU_ASSERT_OK(sp_pool_lock(s, p));
	curr = p->curr_nr;
	min = p->min_nr;
	if (p->backing == SP_BACK_SLAB) {
		struct sp_cache *c = &sp_caches(s)[p->cache_id];

		if (sp_cache_lock(s, c) == 0) {
			active = c->active_objs;
			sp_cache_unlock(c);
		}
	} else if (p->backing == SP_BACK_KMALLOC) {
		struct sp_cache *c = &sp_caches(s)[p->cache_id];

		if (sp_cache_lock(s, c) == 0) {
			objs = p->nr_objs;
			sp_cache_unlock(c);
		}
	} else {
		pages = count_pool_pages(s, p->id);
		pages_out = p->nr_pages_out;
	}
	sp_pool_unlock(p);
	if (curr != min)
		fail_msg("pool %s: reserve holds %u of min_nr %u after everything was released",
			 p->name, curr, min);
	if (p->backing == SP_BACK_SLAB && active != (uint64_t)curr + out)
		fail_msg("pool %s: its cache has %llu objects, expected reserve %u + %u out",
			 p->name, (unsigned long long)active, curr, out);
	/* its class's RESERVE tags match the reserves: the checker sees to it */
	if (p->backing == SP_BACK_KMALLOC &&
	    (objs < (uint64_t)curr + out || objs > (uint64_t)curr + out + kcount_slack))
		fail_msg("pool %s: counts %llu objects of its kmalloc class, expected reserve %u "
			 "+ %u out", p->name, (unsigned long long)objs, curr, out);
	if (p->backing == SP_BACK_PAGES && (pages_out != pages || pages != curr + out))
		fail_msg("pool %s: nr_pages_out %u, %u element pages, expected reserve %u + %u out",
			 p->name, pages_out, pages, curr, out);
}

/*
 * Take everything a capped pool gives (NOWAIT): exactly max_nr - @nheld
 * elements, all distinct and none of @held; stamp, verify, give back.
 */
static void exhaust_pool(struct sp_seg *s, struct sp_pool *p, const sp_off_t *held,
			 uint32_t nheld)
{
	uint32_t cap = p->max_nr ? p->max_nr + 1 : p->min_nr + 256, n = 0;
	sp_off_t *v = calloc(cap + nheld + 1, sizeof(*v));
	int rc;

	assert_non_null(v);
	while (n < cap && (rc = sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &v[n])) == 0) {
		fill(s, v[n], p->elem_size, 0x7000 + n);
		n++;
	}
	if (n < cap && rc != -ENOMEM)
		fail_msg("pool %s: allocation %u failed: %s: %s", p->name, n, sp_strerror(rc),
			 sp_errmsg());
	if (p->max_nr && (n + nheld > p->max_nr ||
			  n + nheld + (p->backing == SP_BACK_KMALLOC ? kcount_slack : 0) <
				  p->max_nr))
		fail_msg("pool %s: obtained %u elements with %u held, max_nr is %u", p->name, n,
			 nheld, p->max_nr);
	for (uint32_t i = 0; i < n; i++)
		if (!intact(s, v[i], p->elem_size, 0x7000 + i))
			fail_msg("pool %s: element %#llx overwritten: handed out twice", p->name,
				 (unsigned long long)v[i]);
	if (nheld)
		memcpy(v + n, held, nheld * sizeof(*v));
	assert_distinct(p->name, v, n + nheld);
	for (uint32_t i = 0; i < n; i++)
		TU_ASSERT_OK(sp_pool_free(s, p, v[i]));
	assert_int_equal(p->curr_nr, p->min_nr);
	free(v);
}

/* Allocate every free object of a cache plus one slab's worth: distinct, new. */
static void exhaust_cache(struct sp_seg *s, struct sp_cache *c, const sp_off_t *held,
			  uint32_t nheld)
{
	uint64_t want = c->total_objs - c->active_objs + c->objperslab;
	sp_off_t *v = calloc(want + nheld + 1, sizeof(*v));

	assert_non_null(v);
	for (uint64_t i = 0; i < want; i++) {
		TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &v[i]));
		fill(s, v[i], c->obj_size, 0x8000 + (uint32_t)i);
	}
	for (uint64_t i = 0; i < want; i++)
		if (!intact(s, v[i], c->obj_size, 0x8000 + (uint32_t)i))
			fail_msg("cache %s: object %#llx overwritten: handed out twice", c->name,
				 (unsigned long long)v[i]);
	if (nheld)
		memcpy(v + want, held, nheld * sizeof(*v));
	assert_distinct(c->name, v, (uint32_t)(want + nheld));
	for (uint64_t i = 0; i < want; i++)
		TU_ASSERT_OK(sp_cache_free(s, c, v[i]));
	free(v);
}

/*
 * Take every free page as an order-0 block: as many as the free_pages
 * counter says, distinct, none inside a block in @held/@held_len.
 */
static void exhaust_pages(struct sp_seg *s, const sp_off_t *held, const uint64_t *held_len,
			  uint32_t nheld)
{
	uint64_t free_pages = s->hdr->buddy.free_pages, n = 0;
	sp_off_t *v = calloc(free_pages + 2, sizeof(*v));
	int rc;

	assert_non_null(v);
	while (n < free_pages + 1 && (rc = sp_buddy_alloc(s, 0, &v[n])) == 0) {
		for (uint32_t h = 0; h < nheld; h++)
			if (v[n] + SP_PAGE_SIZE > held[h] && v[n] < held[h] + held_len[h])
				fail_msg("page %#llx handed out inside a held block at %#llx",
					 (unsigned long long)v[n], (unsigned long long)held[h]);
		n++;
	}
	if (n != free_pages)
		fail_msg("obtained %llu free pages, the buddy counter said %llu (last: %s)",
			 (unsigned long long)n, (unsigned long long)free_pages, sp_errmsg());
	assert_distinct("buddy", v, (uint32_t)n);
	while (n)
		TU_ASSERT_OK(sp_buddy_free(s, v[--n]));
	free(v);
}

/* Count INTERNAL objects (kmalloc objects and large blocks). */
static uint64_t count_internal(struct sp_seg *s)
{
	uint64_t n = 0;

	for (uint32_t id = 0; id < s->hdr->nr_kmalloc; id++) {
		struct sp_cache *c = &sp_caches(s)[id];

		TU_ASSERT_OK(sp_cache_lock(s, c));
		TU_ASSERT_OK(sp_buddy_lock(s));
		for (uint32_t pfn = 0; pfn < s->hdr->nr_pages;) {
			uint32_t o = SP_PG_ORDER(s->pages[pfn].info);

			if (sp_slab_valid(s, c, pfn)) {
				struct sp_slab *slab = sp_slab_at(s, c, pfn);

				for (uint32_t i = 0; i < c->objperslab; i++)
					n += (slab->bitmap[i / 64] >> (i % 64) & 1) &&
					     sp_slab_owners(c, slab)[i] == SP_OWNER_INTERNAL;
			}
			pfn += 1u << (o > s->hdr->max_order ? 0 : o);
		}
		sp_buddy_unlock(s);
		sp_cache_unlock(c);
	}
	TU_ASSERT_OK(sp_buddy_lock(s));
	for (uint32_t pfn = 0; pfn < s->hdr->nr_pages;) {
		uint32_t info = s->pages[pfn].info, o = SP_PG_ORDER(info);

		n += SP_PG_STATE(info) == SP_PG_ALLOC && SP_PG_KIND(info) == SP_KIND_LARGE &&
		     s->pages[pfn].slot == SP_OWNER_INTERNAL;
		pfn += 1u << (o > s->hdr->max_order ? 0 : o);
	}
	sp_buddy_unlock(s);
	return n;
}

/* INTERNAL memory is exactly what the descriptors reference: nothing leaked. */
static void check_internal(struct sp_seg *s)
{
	uint64_t want = 0, got;

	TU_ASSERT_OK(sp_registry_lock(s));
	for (uint32_t i = 0; i < s->hdr->max_pools; i++)
		want += sp_pools(s)[i].state != SP_DESC_FREE && sp_pools(s)[i].elements_off;
	for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++)
		want += sp_caches(s)[i].state != SP_DESC_FREE && sp_caches(s)[i].tmpl_off;
	got = count_internal(s);
	sp_registry_unlock(s);
	if (got != want)
		fail_msg("%llu INTERNAL allocations exist, descriptors reference %llu: leaked",
			 (unsigned long long)got, (unsigned long long)want);
}

/* Every lock can be taken (recovering it if needed) and released. */
static void lock_everything(struct sp_seg *s)
{
	TU_ASSERT_OK(sp_registry_lock(s));
	sp_registry_unlock(s);
	for (uint32_t i = 0; i < s->hdr->max_pools; i++) {
		TU_ASSERT_OK(sp_pool_lock(s, &sp_pools(s)[i]));
		sp_pool_unlock(&sp_pools(s)[i]);
	}
	for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++) {
		TU_ASSERT_OK(sp_cache_lock(s, &sp_caches(s)[i]));
		sp_cache_unlock(&sp_caches(s)[i]);
	}
	TU_ASSERT_OK(sp_buddy_lock(s));
	sp_buddy_unlock(s);
}

static uint64_t total_recoveries(struct sp_seg *s)
{
	uint64_t n = s->hdr->registry_lock.recoveries + s->hdr->buddy.lock.recoveries;

	for (uint32_t i = 0; i < s->hdr->max_pools; i++)
		n += sp_pools(s)[i].lock.recoveries;
	for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++)
		n += sp_caches(s)[i].lock.recoveries;
	return n;
}

#if SP_FAULT_INJECTION
/* ---- (a) every named crash point ------------------------------------------ */

#define SLAB_MIN 4
#define SLAB_MAX 24
#define PAGES_MIN 3
#define PAGES_MAX 10
#define KPOOL_MIN 4	/* the pool on a shared kmalloc class */
#define KPOOL_MAX 12
#define KPOOL_SIZE 112

enum workload {
	W_RAW,		  /* raw buddy blocks: split, commit, free, merge */
	W_KMALLOC,	  /* kmalloc classes and large blocks */
	W_CACHE_CHURN,	  /* named cache: grow, alloc, free, list moves, shrink */
	W_POOL_CHURN,	  /* slab pool through its backing */
	W_POOL_RESERVE,	  /* slab pool: drain past the reserve, refill it */
	W_PAGES_RESERVE,  /* page pool: the same, through buddy blocks */
	W_POOL_CREATE,	  /* create, use, destroy a slab pool */
	W_PAGES_CREATE,	  /* create, use, destroy a page pool */
	W_POOL_RESIZE,	  /* grow and shrink a reserve */
	W_CACHE_CREATE,	  /* create a cache with a template, use, destroy */
	W_CACHE_TMPL,	  /* create a cache with a template, destroy it unused */
	W_RELEASE,	  /* sp_slot_release() of a dead slot holding everything */
	W_RELEASE_MAG,	  /* the same, the dead slot also caching in magazines */
	W_MAG_CACHE,	  /* two threads' magazines of a named cache, handing off */
	W_MAG_KMALLOC,	  /* the same on a kmalloc class */
	W_MAG_POOL,	  /* the same on an uncapped slab pool */
	W_MAG_POOL_SHORT, /* magazine flush to a pool with a short reserve */
	W_KPOOL_RESERVE,  /* kmalloc-class pool at its cap: take from the reserve, put back */
	W_KPOOL_CREATE,	  /* create, use, destroy a kmalloc-class pool */
	W_KPOOL_RESIZE,	  /* grow and shrink a kmalloc-class pool's reserve */
	W_CLIENTS,	  /* register a slot, mark it dead, release it */
	W_RESIZE_CAPPED,  /* grow reserves to max_nr with elements out: rolled back */
	W_MAG_RUNS,	  /* two threads' magazines of a named cache, in bulk runs */
};

static const char *const wl_name[] = {
	"raw pages", "kmalloc", "cache churn", "slab pool churn", "slab pool reserve",
	"page pool reserve", "slab pool create/destroy", "page pool create/destroy",
	"pool resize", "cache create/destroy", "template cache create/destroy",
	"release of a dead slot", "release of a dead slot with magazines",
	"named cache magazines", "kmalloc magazines", "slab pool magazines",
	"magazine flush to a short reserve", "kmalloc pool reserve",
	"kmalloc pool create/destroy", "kmalloc pool resize", "client slots",
	"pool resize beyond what the cap leaves", "named cache magazine runs",
};

struct scenario {
	const char *point;
	enum workload wl;
	unsigned n; /* die at the n-th pass */
};

/* Every crash point, reached from each kind of caller that passes through it. */
static const struct scenario scenarios[] = {
	{ "buddy.alloc.unlinked", W_RAW, 1 },
	{ "buddy.alloc.unlinked", W_PAGES_RESERVE, 1 },
	{ "buddy.alloc.unlinked", W_CACHE_CHURN, 1 },
	{ "buddy.alloc.unlinked", W_KMALLOC, 3 },
	{ "buddy.alloc.split", W_RAW, 1 },
	{ "buddy.alloc.split", W_RAW, 4 },
	{ "buddy.alloc.split", W_PAGES_RESERVE, 1 },
	{ "buddy.alloc.split", W_CACHE_CHURN, 1 },
	{ "buddy.alloc.committed", W_RAW, 1 },
	{ "buddy.alloc.committed", W_PAGES_RESERVE, 1 },
	{ "buddy.alloc.committed", W_PAGES_RESERVE, 5 },
	{ "buddy.alloc.committed", W_CACHE_CHURN, 1 },
	{ "buddy.alloc.committed", W_KMALLOC, 2 },
	{ "buddy.alloc.committed", W_PAGES_CREATE, 2 },
	{ "buddy.free.merged", W_RAW, 1 },
	{ "buddy.free.merged", W_PAGES_RESERVE, 1 },
	{ "buddy.free.merged", W_KMALLOC, 1 },
	{ "buddy.free.merged", W_CACHE_CHURN, 1 },
	{ "buddy.free.linked", W_RAW, 2 },
	{ "buddy.free.linked", W_PAGES_RESERVE, 1 },
	{ "buddy.free.linked", W_PAGES_RESERVE, 3 },
	{ "buddy.free.linked", W_KMALLOC, 1 },
	{ "buddy.free.linked", W_CACHE_CREATE, 1 },
	{ "slab.grow.pages", W_CACHE_CHURN, 1 },
	{ "slab.grow.pages", W_CACHE_CHURN, 3 },
	{ "slab.grow.pages", W_CACHE_CREATE, 1 },
	{ "slab.grow.pages", W_POOL_CREATE, 1 },
	{ "slab.alloc.owner", W_CACHE_CHURN, 1 },
	{ "slab.alloc.owner", W_POOL_CHURN, 3 },
	{ "slab.alloc.owner", W_KMALLOC, 5 },
	{ "slab.alloc.bit", W_CACHE_CHURN, 1 },
	{ "slab.alloc.bit", W_CACHE_CHURN, 40 },
	{ "slab.alloc.bit", W_POOL_CHURN, 2 },
	{ "slab.alloc.bit", W_POOL_RESERVE, 7 },
	{ "slab.alloc.bit", W_KMALLOC, 4 },
	{ "slab.alloc.bit", W_POOL_RESIZE, 1 },
	{ "slab.alloc.bit", W_CACHE_CREATE, 1 },
	{ "slab.alloc.bit", W_KPOOL_RESIZE, 2 },	/* a fill's object from the class */
	{ "slab.free.bit", W_CACHE_CHURN, 1 },
	{ "slab.free.bit", W_CACHE_CHURN, 30 },
	{ "slab.free.bit", W_POOL_CHURN, 2 },
	{ "slab.free.bit", W_KMALLOC, 3 },
	{ "slab.free.bit", W_POOL_RESIZE, 1 },
	{ "slab.free.bit", W_CACHE_TMPL, 1 },
	{ "slab.free.bit", W_KPOOL_RESIZE, 3 },		/* a drained object to the class */
	{ "slab.list.move", W_CACHE_CHURN, 1 },
	{ "slab.list.move", W_CACHE_CHURN, 4 },
	{ "slab.list.move", W_KMALLOC, 2 },
	{ "slab.shrink.unlinked", W_CACHE_CHURN, 1 },
	{ "slab.shrink.unlinked", W_CACHE_CREATE, 1 },
	{ "slab.shrink.unlinked", W_POOL_CREATE, 1 },
	{ "pool.reserve.take", W_POOL_RESERVE, 1 },
	{ "pool.reserve.take", W_POOL_RESERVE, 3 },
	{ "pool.reserve.take", W_PAGES_RESERVE, 1 },
	{ "pool.reserve.take", W_PAGES_RESERVE, 2 },
	{ "pool.reserve.take", W_KPOOL_RESERVE, 1 },
	{ "pool.reserve.take", W_KPOOL_RESERVE, 3 },
	{ "pool.reserve.put", W_POOL_RESERVE, 1 },
	{ "pool.reserve.put", W_POOL_RESERVE, 4 },
	{ "pool.reserve.put", W_PAGES_RESERVE, 1 },
	{ "pool.reserve.put", W_PAGES_RESERVE, 3 },
	{ "pool.reserve.put", W_KPOOL_RESERVE, 1 },
	{ "pool.reserve.put", W_KPOOL_RESERVE, 2 },
	{ "pool.create.reserve", W_POOL_CREATE, 1 },
	{ "pool.create.reserve", W_POOL_CREATE, 3 },
	{ "pool.create.reserve", W_PAGES_CREATE, 2 },
	{ "pool.create.reserve", W_POOL_RESIZE, 1 },
	{ "pool.create.reserve", W_POOL_RESIZE, 4 },
	{ "pool.create.reserve", W_KPOOL_CREATE, 1 },
	{ "pool.create.reserve", W_KPOOL_CREATE, 3 },
	{ "pool.create.reserve", W_KPOOL_RESIZE, 1 },
	{ "pool.create.reserve", W_KPOOL_RESIZE, 5 },
	{ "pool.destroy.drain", W_POOL_CREATE, 1 },
	{ "pool.destroy.drain", W_POOL_CREATE, 3 },
	{ "pool.destroy.drain", W_PAGES_CREATE, 2 },
	{ "pool.destroy.drain", W_POOL_RESIZE, 1 },
	{ "pool.destroy.drain", W_KPOOL_CREATE, 1 },
	{ "pool.destroy.drain", W_KPOOL_CREATE, 4 },
	{ "pool.destroy.drain", W_KPOOL_RESIZE, 1 },
	{ "pool.destroy.drain", W_KPOOL_RESIZE, 3 },
	{ "pool.resize.swap", W_POOL_RESIZE, 1 },	/* a larger array */
	{ "pool.resize.swap", W_POOL_RESIZE, 2 },
	{ "pool.resize.swap", W_KPOOL_RESIZE, 1 },
	{ "pool.resize.swap", W_KPOOL_RESIZE, 2 },
	{ "pool.resize.swap", W_POOL_CREATE, 1 },	/* the first array */
	{ "pool.resize.swap", W_POOL_CREATE, 2 },	/* none, at destroy */
	{ "pool.resize.swap", W_PAGES_CREATE, 2 },
	{ "pool.resize.swap", W_KPOOL_CREATE, 2 },
	{ "pool.resize.swap", W_RESIZE_CAPPED, 1 },
	{ "pool.resize.swap", W_RESIZE_CAPPED, 2 },	/* back to the smaller array */
	{ "pool.resize.swap", W_RESIZE_CAPPED, 4 },	/* the same, a kmalloc class */
	{ "registry.insert", W_CACHE_CREATE, 1 },
	{ "registry.insert", W_CACHE_TMPL, 1 },
	{ "registry.insert", W_POOL_CREATE, 1 },
	{ "registry.insert", W_PAGES_CREATE, 1 },
	{ "registry.insert", W_KPOOL_CREATE, 1 },
	{ "registry.remove", W_CACHE_CREATE, 1 },
	{ "registry.remove", W_CACHE_TMPL, 2 },
	{ "registry.remove", W_POOL_CREATE, 1 },
	{ "registry.remove", W_PAGES_CREATE, 3 },
	{ "registry.remove", W_KPOOL_CREATE, 1 },
	{ "kmalloc.large.alloc", W_KMALLOC, 1 },
	{ "kmalloc.large.alloc", W_KMALLOC, 2 },
	{ "client.register", W_CLIENTS, 1 },	/* its own slot, in tu_child_attach() */
	{ "client.register", W_CLIENTS, 2 },
	{ "client.register", W_CLIENTS, 4 },
	{ "client.mark_dead", W_CLIENTS, 1 },
	{ "client.mark_dead", W_CLIENTS, 3 },
	{ "client.release", W_RELEASE, 1 },
	{ "client.release", W_RELEASE, 4 },
	{ "client.release", W_RELEASE, 9 },
	{ "client.release", W_RELEASE, 14 },
	{ "client.release", W_RELEASE_MAG, 1 },
	{ "client.release", W_RELEASE_MAG, 12 },
	{ "client.release", W_RELEASE_MAG, 40 },
	{ "client.release", W_RELEASE_MAG, 75 },
	{ "mag.set.linked", W_MAG_CACHE, 1 },
	{ "mag.set.linked", W_MAG_CACHE, 2 },
	{ "mag.set.linked", W_MAG_POOL, 1 },
	{ "mag.release", W_RELEASE_MAG, 1 },
	{ "mag.release", W_RELEASE_MAG, 3 },
	{ "mag.refill", W_MAG_CACHE, 1 },
	{ "mag.refill", W_MAG_CACHE, 3 },
	{ "mag.refill", W_MAG_KMALLOC, 2 },
	{ "mag.refill", W_MAG_POOL, 1 },
	{ "mag.refill", W_MAG_POOL, 5 },
	{ "mag.flush", W_MAG_CACHE, 1 },
	{ "mag.flush", W_MAG_CACHE, 31 },
	{ "mag.flush", W_MAG_KMALLOC, 45 },
	{ "mag.flush", W_MAG_POOL, 2 },
	{ "mag.flush", W_MAG_POOL_SHORT, 1 },
	{ "mag.flush", W_MAG_POOL_SHORT, 3 },
	{ "mag.flush", W_MAG_POOL_SHORT, 6 },
	{ "mag.pop", W_MAG_CACHE, 1 },
	{ "mag.pop", W_MAG_CACHE, 31 },
	{ "mag.pop", W_MAG_KMALLOC, 150 },
	{ "mag.pop", W_MAG_POOL, 1 },
	{ "mag.pop", W_MAG_POOL, 77 },
	{ "mag.push", W_MAG_CACHE, 1 },
	{ "mag.push", W_MAG_CACHE, 41 },
	{ "mag.push", W_MAG_KMALLOC, 150 },
	{ "mag.push", W_MAG_POOL, 1 },
	{ "mag.push", W_MAG_POOL, 60 },
	{ "mag.push", W_MAG_POOL_SHORT, 5 },
	/* the held bound: counted before a tag, uncounted after a commit */
	{ "mag.pop.held", W_MAG_CACHE, 1 },
	{ "mag.pop.held", W_MAG_CACHE, 31 },
	{ "mag.pop.held", W_MAG_KMALLOC, 150 },
	{ "mag.pop.held", W_MAG_POOL, 77 },
	{ "mag.push.held", W_MAG_CACHE, 1 },
	{ "mag.push.held", W_MAG_CACHE, 41 },
	{ "mag.push.held", W_MAG_KMALLOC, 150 },
	{ "mag.push.held", W_MAG_POOL, 60 },
	{ "mag.push.held", W_MAG_POOL_SHORT, 5 },
	{ "mag.refill.held", W_MAG_CACHE, 1 },
	{ "mag.refill.held", W_MAG_CACHE, 3 },
	{ "mag.refill.held", W_MAG_POOL, 1 },
	{ "mag.refill.listed", W_MAG_CACHE, 1 },
	{ "mag.refill.listed", W_MAG_CACHE, 3 },
	{ "mag.refill.listed", W_MAG_KMALLOC, 2 },
	{ "mag.refill.listed", W_MAG_POOL, 5 },
	{ "mag.flush.held", W_MAG_POOL_SHORT, 1 },
	{ "mag.flush.held", W_MAG_POOL_SHORT, 3 },
	{ "mag.flush.freed", W_MAG_POOL_SHORT, 1 },
	{ "mag.flush.freed", W_MAG_POOL_SHORT, 2 },
	{ "mag.forget", W_MAG_CACHE, 1 },
	{ "mag.forget", W_MAG_POOL, 2 },
	{ "mag.set.fold", W_MAG_CACHE, 1 },
	{ "mag.set.fold", W_MAG_CACHE, 2 },
	{ "mag.set.fold", W_MAG_POOL_SHORT, 1 },
	{ "mag.set.fold", W_RELEASE_MAG, 1 },
	{ "mag.set.fold", W_RELEASE_MAG, 3 },
	/* the bulk runs: one held raise for the run, one commit */
	{ "mag.run.held", W_MAG_RUNS, 1 },	/* a push run's raise */
	{ "mag.run.held", W_MAG_RUNS, 2 },	/* a pop run's rest, after its commit */
	{ "mag.run.held", W_MAG_RUNS, 9 },
	{ "mag.pop.held", W_MAG_RUNS, 2 },
	{ "mag.pop", W_MAG_RUNS, 2 },		/* a run's objects retagged, not committed */
	{ "mag.pop", W_MAG_RUNS, 7 },
	{ "mag.push", W_MAG_RUNS, 1 },		/* a run's objects tagged cached, unlisted */
	{ "mag.push", W_MAG_RUNS, 6 },
	{ "mag.push.held", W_MAG_RUNS, 3 },
	/* a slot's filter bit set, the tag naming it not yet written */
	{ "slot.note", W_RAW, 1 },		/* blocks */
	{ "slot.note", W_KMALLOC, 1 },
	{ "slot.note", W_KMALLOC, 2 },
	{ "slot.note", W_CACHE_CHURN, 1 },
	{ "slot.note", W_PAGES_RESERVE, 1 },
	{ "slot.note", W_POOL_RESERVE, 1 },
	{ "slot.note", W_MAG_CACHE, 1 },	/* magazine bind (a set notes nothing) */
	{ "slot.note", W_MAG_POOL, 1 },
};

enum hkind {
	H_SLAB, H_PAGES, H_CACHE, H_KMALLOC, H_LARGE, H_RAW, H_MPOOL, H_MCACHE, H_KPOOL, H_NR
};

/* The uncapped slab pool and the plain named cache that magazines serve. */
#define MPOOL_MIN 4
#define MPOOL_SIZE 192
#define MCACHE_SIZE 56

struct world {
	struct sp_seg *s;
	char name[256];
	uint32_t pool_slab, pool_pages, cache;
	uint32_t mpool, mcache;	/* what magazines may serve (no cap, no debug flags) */
	uint32_t kpool;		/* backed by a shared kmalloc class */
	uint32_t victim_slot;
	struct {
		sp_off_t off;
		uint64_t size;
		enum hkind kind;
	} held[40];
	uint32_t nheld;
	/* kmalloc objects taken right after the crash, before any recovery */
	sp_off_t grab[64 * 8];
	uint32_t grab_size[64 * 8], ngrab;
	/* for the children */
	const struct scenario *sc;
	bool victim_mags;	/* the victim also caches objects in magazines */
};

static void hold(struct world *w, enum hkind kind, sp_off_t off, uint64_t size)
{
	assert_true(w->nheld < 40);
	w->held[w->nheld].off = off;
	w->held[w->nheld].size = size;
	w->held[w->nheld].kind = kind;
	fill(w->s, off, size, 0x100 + w->nheld);
	w->nheld++;
}

static uint32_t held_of(struct world *w, enum hkind kind, sp_off_t *v)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < w->nheld; i++)
		if (w->held[i].kind == kind)
			v[n++] = w->held[i].off;
	return n;
}

static void world_new(struct world *w)
{
	struct sp_seg_params sp;
	struct sp_pool_params slab = { .elem_size = 128, .min_nr = SLAB_MIN, .max_nr = SLAB_MAX,
				       .backing = SP_BACK_SLAB };
	struct sp_pool_params pages = { .elem_size = 4096, .min_nr = PAGES_MIN,
					.max_nr = PAGES_MAX, .backing = SP_BACK_PAGES };
	struct sp_pool_params mpool = { .elem_size = MPOOL_SIZE, .min_nr = MPOOL_MIN,
					.backing = SP_BACK_SLAB };
	struct sp_pool_params kpool = { .elem_size = KPOOL_SIZE, .min_nr = KPOOL_MIN,
					.max_nr = KPOOL_MAX, .backing = SP_BACK_KMALLOC };
	sp_off_t off;

	memset(w, 0, sizeof(*w));
	sp_seg_params_default(&sp);
	sp.size = 8u << 20;
	sp.max_clients = 16;
	sp.max_caches = 8;
	sp.max_pools = 8;
	w->s = seg_new(&sp);
	snprintf(w->name, sizeof(w->name), "%s", w->s->name);
	TU_ASSERT_OK(sp_pool_create(w->s, "c.slab", &slab, &w->pool_slab));
	TU_ASSERT_OK(sp_pool_create(w->s, "c.pages", &pages, &w->pool_pages));
	TU_ASSERT_OK(sp_cache_create(w->s, "c.cache", 72, 0, SP_CACHE_POISON, NULL, &w->cache));
	TU_ASSERT_OK(sp_pool_create(w->s, "c.mpool", &mpool, &w->mpool));
	TU_ASSERT_OK(sp_cache_create(w->s, "c.mcache", MCACHE_SIZE, 0, 0, NULL, &w->mcache));
	TU_ASSERT_OK(sp_pool_create(w->s, "c.kpool", &kpool, &w->kpool));
	for (int i = 0; i < 2; i++) {
		TU_ASSERT_OK(sp_pool_alloc(w->s, sp_pool_get(w->s, w->mpool), 0, 0, &off));
		hold(w, H_MPOOL, off, MPOOL_SIZE);
		TU_ASSERT_OK(sp_cache_alloc(w->s, sp_cache_get(w->s, w->mcache), w->s->owner,
					    &off));
		hold(w, H_MCACHE, off, MCACHE_SIZE);
	}
	for (int i = 0; i < 2; i++) {
		TU_ASSERT_OK(sp_pool_alloc(w->s, sp_pool_get(w->s, w->pool_slab), 0, 0, &off));
		hold(w, H_SLAB, off, 128);
		TU_ASSERT_OK(sp_pool_alloc(w->s, sp_pool_get(w->s, w->pool_pages), 0, 0, &off));
		hold(w, H_PAGES, off, 4096);
		TU_ASSERT_OK(sp_pool_alloc(w->s, sp_pool_get(w->s, w->kpool), 0, 0, &off));
		hold(w, H_KPOOL, off, KPOOL_SIZE);
	}
	for (int i = 0; i < 3; i++) {
		TU_ASSERT_OK(sp_cache_alloc(w->s, sp_cache_get(w->s, w->cache), w->s->owner, &off));
		hold(w, H_CACHE, off, 72);
	}
	TU_ASSERT_OK(sp_kmalloc(w->s, 100, &off));
	hold(w, H_KMALLOC, off, 100);
	TU_ASSERT_OK(sp_kmalloc(w->s, 3000, &off));
	hold(w, H_KMALLOC, off, 3000);
	TU_ASSERT_OK(sp_kmalloc(w->s, 20000, &off));
	hold(w, H_LARGE, off, 20000);
	TU_ASSERT_OK(sp_buddy_alloc(w->s, 1, &off));
	hold(w, H_RAW, off, 2 * SP_PAGE_SIZE);
	tu_check_clean(w->s);
}

/* The uncapped pool's backing cache, which its magazines are bound to. */
static struct sp_cache *mpool_cache(struct sp_seg *s, const struct world *w)
{
	struct sp_pool *p = sp_pool_get(s, w->mpool);

	return p ? sp_cache_get(s, p->cache_id) : NULL;
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

	if (r == SP_MAG_FULL && sp_mag_flush(s, c, m, sp_mag_cap(c) / 2) == 0)
		r = sp_mag_push(s, c, m, off);
	return r == SP_MAG_PUSHED;
}

/* Take @n objects of @c through @set's magazine, give back all but @keep. */
static int victim_cache_in(struct sp_seg *s, struct sp_magset *set, struct sp_cache *c,
			   uint32_t n, uint32_t keep)
{
	struct sp_mag *m;
	sp_off_t v[128];

	if (!c || n > 128 || sp_mag_bind(s, set, c, &m))
		return 1;
	for (uint32_t i = 0; i < n; i++)
		if (!mag_alloc(s, c, m, &v[i]))
			return 1;
	for (uint32_t i = keep; i < n; i++)
		if (!mag_free(s, c, m, v[i]))
			return 1;
	return 0;
}

/*
 * Two threads' magazines of @c: thread 0 allocates, and hands every other
 * object to thread 1, which frees it into its own magazine.  A round takes
 * one and a half magazines' worth, so thread 0 refills several times a
 * round and thread 1's magazine fills up and flushes.
 */
static void mag_churn(struct sp_seg *s, struct sp_cache *c)
{
	struct sp_magset *set[2];
	struct sp_mag *m[2];
	sp_off_t v[3 * SP_MAG_OBJS / 2];
	uint32_t n, want;

	for (int t = 0; t < 2; t++)
		if (!c || sp_magset_create(s, 100 + (uint32_t)t, &set[t]) ||
		    sp_mag_bind(s, set[t], c, &m[t]))
			return;
	want = 3 * sp_mag_cap(c) / 2;
	for (int round = 0; round < 4; round++) {
		for (n = 0; n < want && mag_alloc(s, c, m[0], &v[n]); n++)
			fill(s, v[n], c->obj_size, n);
		for (uint32_t i = 0; i < n; i++)
			mag_free(s, c, m[i % 2], v[i]);
	}
	for (int t = 0; t < 2; t++)
		sp_magset_destroy(s, set[t]);
}

/*
 * mag_churn() through the bulk calls' runs (sp_mag_pop_run(),
 * sp_mag_push_run()), with a refill or a flush where a run stops, 100 at
 * a time, half of them freed by the other thread's magazine.
 */
static void mag_runs(struct sp_seg *s, struct sp_cache *c)
{
	struct sp_magset *set[2];
	struct sp_mag *m[2];
	void *v[3 * SP_MAG_OBJS / 2];
	uint32_t n, want, k, i;
	sp_off_t off;

	for (int t = 0; t < 2; t++)
		if (!c || sp_magset_create(s, 200 + (uint32_t)t, &set[t]) ||
		    sp_mag_bind(s, set[t], c, &m[t]))
			return;
	want = 3 * sp_mag_cap(c) / 2;
	for (int round = 0; round < 4; round++) {
		for (n = 0; n < want; n += k) {
			k = sp_mag_pop_run(s, c, m[0], v + n, want - n < 100 ? want - n : 100);
			if (!k && !mag_alloc(s, c, m[0], &off)) /* refills, or drops a bad entry */
				break;
			if (!k)
				v[n] = s->base + off, k = 1;
		}
		for (i = 0; i < n; i++)
			fill(s, (sp_off_t)((uint8_t *)v[i] - s->base), c->obj_size, i);
		for (i = 0; i < n; i += k) {
			struct sp_mag *to = m[i / 100 % 2];

			k = sp_mag_push_run(s, c, to, v + i, n - i < 100 ? n - i : 100);
			if (!k && !mag_free(s, c, to, (sp_off_t)((uint8_t *)v[i] - s->base)))
				break;
			if (!k)
				k = 1;
		}
	}
	for (int t = 0; t < 2; t++)
		sp_magset_destroy(s, set[t]);
}

/*
 * Drain the uncapped pool past its reserve while every free page is taken
 * (its backing cannot grow), give the pages back, then free everything
 * through a magazine: the flush refills the reserve first.
 */
static void mag_short_reserve(struct sp_seg *s, const struct world *w)
{
	struct sp_pool *p = sp_pool_get(s, w->mpool);
	struct sp_cache *c = mpool_cache(s, w);
	sp_off_t raw[256], v[512];
	struct sp_magset *set;
	struct sp_mag *m;
	uint32_t nraw = 0, n = 0;

	if (!p || !c || sp_magset_create(s, 1, &set) || sp_mag_bind(s, set, c, &m))
		return;
	for (int o = (int)s->geo.max_order; o >= 0; o--)
		while (nraw < 256 && sp_buddy_alloc(s, (unsigned)o, &raw[nraw]) == 0)
			nraw++;
	while (n < 512 && sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &v[n]) == 0)
		n++;
	while (nraw)
		sp_buddy_free(s, raw[--nraw]);
	for (uint32_t i = 0; i < n; i++)
		mag_free(s, c, m, v[i]);
	sp_mag_flush(s, c, m, 0);
	sp_magset_destroy(s, set);
}

/* A process that allocates from everything and dies without freeing. */
static int victim_main(void *arg)
{
	struct world *w = arg;
	struct sp_seg *s = tu_child_attach(w->name, "victim");
	struct sp_pool *ps, *pp;
	sp_off_t off;
	int bad = 0;

	tu_child_signals_default();
	if (!s)
		return 10;
	ps = sp_pool_get(s, w->pool_slab);
	pp = sp_pool_get(s, w->pool_pages);
	for (int i = 0; i < 4; i++) {
		bad |= sp_kmalloc(s, 24 + 300 * i, &off);
		bad |= sp_cache_alloc(s, sp_cache_get(s, w->cache), s->owner, &off);
		bad |= sp_pool_alloc(s, ps, SP_ALLOC_NOWAIT, 0, &off);
	}
	for (int i = 0; i < 3; i++)
		bad |= sp_pool_alloc(s, pp, SP_ALLOC_NOWAIT, 0, &off);
	bad |= sp_kmalloc(s, 50000, &off);
	bad |= sp_buddy_alloc(s, 0, &off);
	bad |= sp_buddy_alloc(s, 2, &off);
	if (w->victim_mags) { /* three threads' magazines, holding and caching */
		struct sp_magset *set[3];

		for (int t = 0; t < 3; t++)
			if (sp_magset_create(s, 200 + (uint32_t)t, &set[t]))
				return 12;
		bad |= victim_cache_in(s, set[0], sp_cache_get(s, w->mcache), 40, 6);
		bad |= victim_cache_in(s, set[0], mpool_cache(s, w), 20, 4);
		bad |= victim_cache_in(s, set[0], &sp_caches(s)[sp_kmalloc_class(100)], 10, 3);
		bad |= victim_cache_in(s, set[1], sp_cache_get(s, w->mcache), 90, 10);
		bad |= victim_cache_in(s, set[1], mpool_cache(s, w), 5, 5);
	}
	return bad ? 11 : 0; /* exits holding all of it */
}

static void run_workload(struct sp_seg *s, const struct world *w, enum workload wl)
{
	struct sp_pool *ps = sp_pool_get(s, w->pool_slab), *pp = sp_pool_get(s, w->pool_pages);
	struct sp_cache *c = sp_cache_get(s, w->cache);
	sp_off_t v[512];
	uint32_t n, id;

	switch (wl) {
	case W_RAW:
		for (int round = 0; round < 3; round++) {
			for (n = 0; n < 40; n++)
				if (sp_buddy_alloc(s, n % 3 == 2 ? 2 : n % 2, &v[n]))
					break;
			while (n)
				sp_buddy_free(s, v[--n]);
		}
		break;
	case W_KMALLOC: {
		static const uint64_t sizes[] = { 8, 100, 9000, 1000, 70000, 5000, 8192, 20000 };

		for (int round = 0; round < 3; round++) {
			n = 0;
			for (unsigned k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++)
				for (int i = 0; i < 6; i++)
					if (sp_kmalloc(s, sizes[k], &v[n]) == 0)
						n++;
			while (n)
				sp_kfree(s, v[--n]);
		}
		break;
	}
	case W_CACHE_CHURN:
		for (int round = 0; round < 3; round++) {
			for (n = 0; n < 3 * c->objperslab && n < 512; n++)
				if (sp_cache_alloc(s, c, s->owner, &v[n]))
					break;
			while (n)
				sp_cache_free(s, c, v[--n]);
			sp_cache_shrink(s, c);
		}
		break;
	case W_POOL_CHURN:
		for (int round = 0; round < 3; round++) {
			for (n = 0; n < 10; n++)
				if (sp_pool_alloc(s, ps, SP_ALLOC_NOWAIT, 0, &v[n]))
					break;
			while (n)
				sp_pool_free(s, ps, v[--n]);
		}
		break;
	case W_POOL_RESERVE:
	case W_PAGES_RESERVE: {
		struct sp_pool *p = wl == W_POOL_RESERVE ? ps : pp;

		for (int round = 0; round < 3; round++) {
			for (n = 0; n < 64; n++)
				if (sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &v[n]))
					break;
			while (n)
				sp_pool_free(s, p, v[--n]);
		}
		break;
	}
	case W_POOL_CREATE:
	case W_PAGES_CREATE: {
		struct sp_pool_params pr = { .elem_size = wl == W_POOL_CREATE ? 256 : 8192,
					     .min_nr = 5,
					     .backing = wl == W_POOL_CREATE ? SP_BACK_SLAB
									    : SP_BACK_PAGES };

		for (int round = 0; round < 3; round++) {
			struct sp_pool *p;

			if (sp_pool_create(s, "c.tmp", &pr, &id))
				continue;
			p = sp_pool_get(s, id);
			for (n = 0; n < 3; n++)
				if (sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &v[n]))
					break;
			while (n)
				sp_pool_free(s, p, v[--n]);
			sp_pool_destroy(s, id);
		}
		break;
	}
	case W_POOL_RESIZE:
		for (int round = 0; round < 3; round++) {
			sp_pool_resize(s, ps, 12); /* a larger reserve array each time */
			sp_pool_resize(s, ps, 20);
			sp_pool_resize(s, ps, 2);
			sp_pool_resize(s, ps, SLAB_MIN);
		}
		break;
	case W_CACHE_CREATE: {
		char tmpl[48];

		memset(tmpl, 0x3c, sizeof(tmpl));
		for (int round = 0; round < 3; round++) {
			struct sp_cache *nc;

			if (sp_cache_create(s, "c.new", sizeof(tmpl), 0, 0, tmpl, &id))
				continue;
			nc = sp_cache_get(s, id);
			for (n = 0; n < 2 * nc->objperslab && n < 512; n++)
				if (sp_cache_alloc(s, nc, s->owner, &v[n]))
					break;
			while (n)
				sp_cache_free(s, nc, v[--n]);
			sp_cache_destroy(s, id);
		}
		break;
	}
	case W_CACHE_TMPL: {
		char tmpl[48];

		memset(tmpl, 0x3d, sizeof(tmpl));
		for (int round = 0; round < 3; round++)
			if (sp_cache_create(s, "c.new", sizeof(tmpl), 0, 0, tmpl, &id) == 0)
				sp_cache_destroy(s, id);
		break;
	}
	case W_RELEASE:
	case W_RELEASE_MAG:
		sp_slot_release(s, w->victim_slot, false, NULL);
		break;
	case W_MAG_CACHE:
		mag_churn(s, sp_cache_get(s, w->mcache));
		break;
	case W_MAG_RUNS:
		mag_runs(s, sp_cache_get(s, w->mcache));
		break;
	case W_MAG_KMALLOC:
		mag_churn(s, &sp_caches(s)[sp_kmalloc_class(200)]);
		break;
	case W_MAG_POOL:
		mag_churn(s, mpool_cache(s, w));
		break;
	case W_MAG_POOL_SHORT:
		mag_short_reserve(s, w);
		break;
	case W_KPOOL_RESERVE: {
		struct sp_pool *kp = sp_pool_get(s, w->kpool);

		/* the parent holds it at its cap: every element comes from the
		 * reserve, and none but the one in flight is held here */
		for (int round = 0; round < 3; round++)
			if (sp_pool_alloc(s, kp, SP_ALLOC_NOWAIT, 0, &v[0]) == 0)
				sp_pool_free(s, kp, v[0]);
		break;
	}
	case W_KPOOL_CREATE: {
		struct sp_pool_params pr = { .elem_size = 160, .min_nr = 5,
					     .backing = SP_BACK_KMALLOC };

		for (int round = 0; round < 3; round++) {
			struct sp_pool *p;

			if (sp_pool_create(s, "c.tmp", &pr, &id))
				continue;
			p = sp_pool_get(s, id);
			for (n = 0; n < 3; n++)
				if (sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &v[n]))
					break;
			while (n)
				sp_pool_free(s, p, v[--n]);
			sp_pool_destroy(s, id);
		}
		break;
	}
	case W_KPOOL_RESIZE: {
		struct sp_pool *kp = sp_pool_get(s, w->kpool);

		for (int round = 0; round < 3; round++) {
			sp_pool_resize(s, kp, 8); /* a larger reserve array each time */
			sp_pool_resize(s, kp, 10);
			sp_pool_resize(s, kp, 2);
			sp_pool_resize(s, kp, KPOOL_MIN);
		}
		break;
	}
	case W_RESIZE_CAPPED: /* the parent holds elements: the fills fail, a
			       * larger array comes and goes back to the old size */
		sp_pool_resize(s, ps, SLAB_MAX);
		sp_pool_resize(s, sp_pool_get(s, w->kpool), KPOOL_MAX);
		break;
	case W_CLIENTS: /* what the daemon does for each client */
		for (int round = 0; round < 3; round++) {
			uint32_t slot;

			if (sp_client_register(s, "c.extra", (int)getpid(), getuid(), getgid(),
					       &slot))
				break;
			sp_client_mark_dead(s, slot);
			sp_slot_release(s, slot, false, NULL);
		}
		break;
	}
}

static int crash_child(void *arg)
{
	struct world *w = arg;
	char spec[160];
	struct sp_seg *s;

	tu_child_signals_default();
	/* before the first crash point this process passes */
	snprintf(spec, sizeof(spec), "%s:%u", w->sc->point, w->sc->n);
	setenv("SHMPOOL_CRASH_POINT", spec, 1);
	s = tu_child_attach(w->name, "crash");
	if (!s)
		return 10;
	run_workload(s, w, w->sc->wl);
	return 0; /* not reached when the point is */
}

/*
 * The alloc and free counts (magazines' unfolded ones included) account for
 * what is out.  A death between the two stores of a pop or a push loses
 * that one operation's count (@slack).
 */
static void check_counts(struct sp_seg *s, struct sp_pool *p, struct sp_cache *c, int slack)
{
	uint64_t na, nf;
	int64_t d;

	sp_pool_counters(s, p, &na, &nf);
	d = (int64_t)(na - nf) - (int64_t)sp_pool_nr_out(s, p);
	if (d < -slack || d > slack)
		fail_msg("pool %s: %llu allocs - %llu frees, but %llu elements out", p->name,
			 (unsigned long long)na, (unsigned long long)nf,
			 (unsigned long long)sp_pool_nr_out(s, p));
	sp_cache_counters(s, c, &na, &nf);
	d = (int64_t)(na - nf) - (int64_t)sp_cache_in_use(s, c);
	if (d < -slack || d > slack)
		fail_msg("cache %s: %llu allocs - %llu frees, but %llu objects in use", c->name,
			 (unsigned long long)na, (unsigned long long)nf,
			 (unsigned long long)sp_cache_in_use(s, c));
}

/* Everything that must hold after a crash, the recovery and the release. */
static void verify_world(struct world *w)
{
	struct sp_seg *s = w->s;
	struct sp_pool *ps = sp_pool_get(s, w->pool_slab), *pp = sp_pool_get(s, w->pool_pages);
	struct sp_cache *c = sp_cache_get(s, w->cache);
	struct sp_pool *pm = sp_pool_get(s, w->mpool);
	struct sp_cache *mc = sp_cache_get(s, w->mcache);
	struct sp_pool *kp = sp_pool_get(s, w->kpool);
	struct sp_pool_params tmp = { .elem_size = 256, .min_nr = 2, .backing = SP_BACK_SLAB };
	/* a pop or push cut short before its nr_alloc/nr_free count: one, or
	 * a whole run of mag_runs() (the counts are statistics; what is in use
	 * comes from the bitmaps and tags, and those must agree exactly) */
	int slack = (!strcmp(w->sc->point, "mag.pop") || !strcmp(w->sc->point, "mag.push") ||
		     !strcmp(w->sc->point, "mag.push.held")) *
		    (w->sc->wl == W_MAG_RUNS ? 100 : 1);
	sp_off_t v[16], large[16];
	uint64_t large_len[16];
	uint32_t n, nl = 0, id;
	char tmpl[48] = { 0 };
	int rc;

	assert_non_null(ps);
	assert_non_null(pp);
	assert_non_null(c);
	assert_non_null(pm);
	assert_non_null(mc);
	assert_non_null(kp);
	for (uint32_t i = 0; i < w->nheld; i++) {
		uint16_t tag = 0;

		if (!intact(s, w->held[i].off, w->held[i].size, 0x100 + i))
			fail_msg("the parent's allocation %#llx was overwritten",
				 (unsigned long long)w->held[i].off);
		if (w->held[i].kind == H_SLAB || w->held[i].kind == H_PAGES ||
		    w->held[i].kind == H_MPOOL || w->held[i].kind == H_KPOOL) {
			TU_ASSERT_OK(sp_pool_elem_owner(s, w->held[i].kind == H_SLAB ? ps
							   : w->held[i].kind == H_PAGES ? pp
							   : w->held[i].kind == H_KPOOL ? kp : pm,
							w->held[i].off, &tag));
			if (tag != s->owner)
				fail_msg("the parent's pool element %#llx is now tagged %u",
					 (unsigned long long)w->held[i].off, tag);
		}
		if (w->held[i].kind == H_LARGE || w->held[i].kind == H_RAW) {
			large[nl] = w->held[i].off;
			large_len[nl++] = w->held[i].size;
		}
	}
	check_pool_counters(s, ps, held_of(w, H_SLAB, v));
	check_pool_counters(s, pp, held_of(w, H_PAGES, v));
	assert_int_equal(c->active_objs, held_of(w, H_CACHE, v));
	/* no magazine is left: every cached object went back */
	check_pool_counters(s, pm, held_of(w, H_MPOOL, v));
	assert_int_equal(mc->active_objs, held_of(w, H_MCACHE, v));
	assert_int_equal(sp_mag_cached(s, mc->id), 0);
	check_counts(s, pm, mc, slack);
	/* a crashed resize was rolled back or completed; either way set it back */
	TU_ASSERT_OK(sp_pool_resize(s, ps, SLAB_MIN));
	check_pool_counters(s, ps, held_of(w, H_SLAB, v));
	/* on a kmalloc class it may have stopped half way, min_nr raised */
	TU_ASSERT_OK(sp_pool_resize(s, kp, KPOOL_MIN));
	check_pool_counters(s, kp, held_of(w, H_KPOOL, v));

	/* interrupted creations were rolled back, destructions finished; what
	 * was LIVE when its creator died is intact and can be destroyed */
	rc = sp_pool_lookup(s, "c.tmp", &id);
	if (rc == 0) {
		assert_int_equal(sp_pools(s)[id].state, SP_DESC_LIVE);
		check_pool_counters(s, sp_pool_get(s, id), 0);
		TU_ASSERT_OK(sp_pool_destroy(s, id));
	}
	rc = sp_cache_lookup(s, "c.new", &id);
	if (rc == 0) {
		assert_int_equal(sp_cache_get(s, id)->active_objs, 0);
		TU_ASSERT_OK(sp_cache_destroy(s, id));
	}
	TU_ASSERT_OK(sp_pool_create(s, "c.tmp", &tmp, &id));
	TU_ASSERT_OK(sp_pool_destroy(s, id));
	TU_ASSERT_OK(sp_cache_create(s, "c.new", sizeof(tmpl), 0, 0, tmpl, &id));
	TU_ASSERT_OK(sp_cache_destroy(s, id));
	check_internal(s);

	n = held_of(w, H_SLAB, v);
	exhaust_pool(s, ps, v, n);
	n = held_of(w, H_PAGES, v);
	exhaust_pool(s, pp, v, n);
	n = held_of(w, H_CACHE, v);
	exhaust_cache(s, c, v, n);
	n = held_of(w, H_MPOOL, v);
	exhaust_pool(s, pm, v, n);
	n = held_of(w, H_MCACHE, v);
	exhaust_cache(s, mc, v, n);
	n = held_of(w, H_KPOOL, v);
	exhaust_pool(s, kp, v, n);
	exhaust_pages(s, large, large_len, nl);
	check_pool_counters(s, kp, held_of(w, H_KPOOL, v));
	check_pool_counters(s, ps, held_of(w, H_SLAB, v));
	check_pool_counters(s, pp, held_of(w, H_PAGES, v));
	check_pool_counters(s, pm, held_of(w, H_MPOOL, v));
	check_counts(s, pm, mc, slack);
	tu_check_clean(s);
}

/*
 * Right after the crash, before anything recovers: take kmalloc objects of
 * every class (reusing what the dead process may have just freed).  No
 * recovery may free them or hand them out again.
 */
static void grab_kmalloc(struct world *w)
{
	w->ngrab = 0;
	for (unsigned k = 0; k < sp_nr_kmalloc_classes && k < 64; k++) {
		for (int i = 0; i < 8; i++) {
			sp_off_t off;

			TU_ASSERT_OK(sp_kmalloc(w->s, sp_kmalloc_sizes[k], &off));
			w->grab[w->ngrab] = off;
			w->grab_size[w->ngrab] = sp_kmalloc_sizes[k];
			fill(w->s, off, sp_kmalloc_sizes[k], 0xa000 + w->ngrab);
			w->ngrab++;
		}
	}
}

static void check_grabbed(struct world *w)
{
	struct sp_seg *s = w->s;

	assert_distinct("kmalloc", w->grab, w->ngrab);
	for (uint32_t i = 0; i < w->ngrab; i++) {
		struct sp_cache *c = &sp_caches(s)[sp_kmalloc_class(w->grab_size[i])];
		struct sp_slab *slab;
		uint32_t idx;
		uint16_t tag = 0;
		bool set = false;

		if (!intact(s, w->grab[i], w->grab_size[i], 0xa000 + i))
			fail_msg("kmalloc object %#llx (%u bytes) taken after the crash was "
				 "overwritten", (unsigned long long)w->grab[i], w->grab_size[i]);
		TU_ASSERT_OK(sp_cache_lock(s, c));
		if (sp_cache_obj_locate(s, c, w->grab[i], &slab, &idx) == 0) {
			tag = sp_slab_owners(c, slab)[idx];
			set = slab->bitmap[idx / 64] >> (idx % 64) & 1;
		}
		sp_cache_unlock(c);
		if (!set || tag != s->owner)
			fail_msg("kmalloc object %#llx taken after the crash was freed or retagged "
				 "by a recovery (allocated %d, tag %u)",
				 (unsigned long long)w->grab[i], set, tag);
		TU_ASSERT_OK(sp_kfree(s, w->grab[i]));
	}
	w->ngrab = 0;
}

/* Use every structure once: the locks whose owner died are recovered here. */
static void exercise(struct world *w)
{
	struct sp_seg *s = w->s;
	struct sp_pool *ps = sp_pool_get(s, w->pool_slab), *pp = sp_pool_get(s, w->pool_pages);
	struct sp_cache *c = sp_cache_get(s, w->cache);
	sp_off_t a, b, k, l;
	uint32_t id;
	int rc;

	assert_non_null(ps);
	assert_non_null(pp);
	assert_non_null(c);
	/* the dead slot may hold the capped pools' last elements: ENOMEM is fine */
	rc = sp_pool_alloc(s, ps, SP_ALLOC_NOWAIT, 0, &a);
	if (rc && rc != -ENOMEM)
		fail_msg("slab pool alloc after the crash: %s: %s", sp_strerror(rc), sp_errmsg());
	if (!rc)
		TU_ASSERT_OK(sp_pool_free(s, ps, a));
	rc = sp_pool_alloc(s, pp, SP_ALLOC_NOWAIT, 0, &b);
	if (rc && rc != -ENOMEM)
		fail_msg("page pool alloc after the crash: %s: %s", sp_strerror(rc), sp_errmsg());
	if (!rc)
		TU_ASSERT_OK(sp_pool_free(s, pp, b));
	TU_ASSERT_OK(sp_pool_alloc(s, sp_pool_get(s, w->mpool), SP_ALLOC_NOWAIT, 0, &a));
	TU_ASSERT_OK(sp_pool_free(s, sp_pool_get(s, w->mpool), a));
	rc = sp_pool_alloc(s, sp_pool_get(s, w->kpool), SP_ALLOC_NOWAIT, 0, &a);
	if (rc && rc != -ENOMEM)
		fail_msg("kmalloc pool alloc after the crash: %s: %s", sp_strerror(rc),
			 sp_errmsg());
	if (!rc)
		TU_ASSERT_OK(sp_pool_free(s, sp_pool_get(s, w->kpool), a));
	TU_ASSERT_OK(sp_cache_alloc(s, sp_cache_get(s, w->mcache), s->owner, &a));
	TU_ASSERT_OK(sp_cache_free(s, sp_cache_get(s, w->mcache), a));
	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &a));
	TU_ASSERT_OK(sp_kmalloc(s, 100, &b));
	TU_ASSERT_OK(sp_kmalloc(s, 30000, &k));
	TU_ASSERT_OK(sp_buddy_alloc(s, 0, &l));
	TU_ASSERT_OK(sp_cache_free(s, c, a));
	TU_ASSERT_OK(sp_kfree(s, b));
	TU_ASSERT_OK(sp_kfree(s, k));
	TU_ASSERT_OK(sp_buddy_free(s, l));
	assert_int_equal(sp_pool_lookup(s, "c.slab", &id), 0);
	lock_everything(s);
}

/* ALIVE client slots of process @pid. */
static uint32_t alive_slots_of(struct sp_seg *s, pid_t pid)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < s->geo.max_clients; i++)
		n += sp_clients(s)[i].state == SP_CLIENT_ALIVE && sp_clients(s)[i].pid == (uint32_t)pid;
	return n;
}

/* After the release every slot but ours is FREE: none leaked, none left DEAD. */
static void check_slots_free(struct sp_seg *s)
{
	for (uint32_t i = 0; i < s->geo.max_clients; i++)
		if (i != s->slot && sp_clients(s)[i].state != SP_CLIENT_FREE)
			fail_msg("client slot %u (pid %u) left in state %u", i, sp_clients(s)[i].pid,
				 sp_clients(s)[i].state);
}

/*
 * @release_first: release the dead slot right after reaping it, before
 * anything else touches the structures (the daemon's order); otherwise
 * first work on them and check (recovery runs on the way), then release.
 */
static void run_scenario(const struct scenario *sc, bool release_first)
{
	struct world w;
	pid_t pid;
	int st;
	uint64_t rec;
	uint32_t alive;

	world_new(&w);
	w.victim_mags = sc->wl == W_RELEASE_MAG;
	if (sc->wl == W_KPOOL_RESERVE) { /* at its cap: the child takes from the reserve */
		struct sp_pool *kp = sp_pool_get(w.s, w.kpool);
		sp_off_t off;

		while (kp->nr_objs < kp->max_nr) {
			TU_ASSERT_OK(sp_pool_alloc(w.s, kp, SP_ALLOC_NOWAIT, 0, &off));
			hold(&w, H_KPOOL, off, KPOOL_SIZE);
		}
		assert_int_equal(kp->curr_nr, KPOOL_MIN);
	}
	if (sc->wl == W_RELEASE || sc->wl == W_RELEASE_MAG) {
		pid = tu_fork(victim_main, &w);
		assert_int_equal(tu_wait(pid), 0);
		assert_int_equal(sp_client_reap(w.s), 1);
		for (w.victim_slot = 0; w.victim_slot < w.s->hdr->max_clients; w.victim_slot++)
			if (sp_clients(w.s)[w.victim_slot].state == SP_CLIENT_DEAD)
				break;
	}
	w.sc = sc;
	/* a kmalloc-backed pool's count: exact unless the death came inside
	 * its class's alloc or free (then at most one high) */
	kcount_slack = (sc->wl == W_KPOOL_RESIZE || sc->wl == W_KPOOL_CREATE ||
			sc->wl == W_KPOOL_RESERVE) && !strncmp(sc->point, "slab.", 5);
	rec = total_recoveries(w.s);
	pid = tu_fork(crash_child, &w);
	st = tu_wait(pid);
	if (st != 128 + SIGKILL)
		fail_msg("%s:%u (%s): the child %s %d instead of dying at the crash point",
			 sc->point, sc->n, wl_name[sc->wl], st > 128 ? "died by signal" : "exited",
			 st > 128 ? st - 128 : st);
	grab_kmalloc(&w);
	/* its slot; none if it died registering it (client.register:1) */
	alive = alive_slots_of(w.s, pid);
	if (alive != 1 && !(alive == 0 && !strcmp(sc->point, "client.register") && sc->n == 1))
		fail_msg("%s:%u: the dead child has %u live slots", sc->point, sc->n, alive);
	assert_int_equal(sp_client_reap(w.s), alive);
	if (release_first) {
		release_dead_slots(w.s);
		/* straight from the backings, before any pool lock is taken */
		for (int i = 0; i < 3; i++) {
			sp_off_t off;

			if (sp_pool_alloc(w.s, sp_pool_get(w.s, w.pool_slab), SP_ALLOC_NOWAIT, 0,
					  &off) == 0)
				hold(&w, H_SLAB, off, 128);
			if (sp_pool_alloc(w.s, sp_pool_get(w.s, w.pool_pages), SP_ALLOC_NOWAIT, 0,
					  &off) == 0)
				hold(&w, H_PAGES, off, 4096);
		}
		tu_check_clean(w.s);
		exercise(&w);
	} else {
		exercise(&w);
		tu_check_clean(w.s);
		release_dead_slots(w.s);
	}
	tu_check_clean(w.s);
	verify_world(&w);
	check_grabbed(&w);
	check_slots_free(w.s);
	tu_check_clean(w.s);
	printf("  %s:%u (%s, %s): died, %llu lock recoveries, clean\n", sc->point, sc->n,
	       wl_name[sc->wl], release_first ? "released first" : "recovered first",
	       (unsigned long long)(total_recoveries(w.s) - rec));
	seg_free(w.s);
}

/* One cmocka test per crash point: every scenario that names it. */
static void crash_point_test(void **state)
{
	const char *point = sp_crash_points[(uintptr_t)*state];
	unsigned ran = 0;

	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		if (strcmp(scenarios[i].point, point))
			continue;
		run_scenario(&scenarios[i], false);
		run_scenario(&scenarios[i], true);
		ran++;
	}
	if (!ran)
		fail_msg("no workload reaches crash point %s: add a scenario", point);
}

/* Strip C comments and collect every SP_CRASH_POINT("name") in @text. */
static unsigned collect_points(const char *text, char names[][64], unsigned n, unsigned cap)
{
	size_t len = strlen(text);
	char *code = malloc(len + 1), *p;
	size_t j = 0;

	assert_non_null(code);
	for (size_t i = 0; i < len;) {
		if (text[i] == '/' && text[i + 1] == '*') {
			const char *e = strstr(text + i + 2, "*/");

			i = e ? (size_t)(e - text) + 2 : len;
			code[j++] = ' ';
		} else if (text[i] == '/' && text[i + 1] == '/') {
			while (i < len && text[i] != '\n')
				i++;
		} else if (text[i] == '"' || text[i] == '\'') {
			char q = text[i];

			code[j++] = text[i++];
			while (i < len && text[i] != q) {
				if (text[i] == '\\' && i + 1 < len)
					code[j++] = text[i++];
				code[j++] = text[i++];
			}
			if (i < len)
				code[j++] = text[i++];
		} else {
			code[j++] = text[i++];
		}
	}
	code[j] = '\0';
	for (p = code; (p = strstr(p, "SP_CRASH_POINT")); p += 14) {
		char *q = p + 14, *end;

		if (p > code && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
			continue;
		while (isspace((unsigned char)*q))
			q++;
		if (*q != '(')
			continue;
		q++;
		while (isspace((unsigned char)*q))
			q++;
		if (*q != '"')
			continue; /* the macro's own definition */
		end = strchr(q + 1, '"');
		assert_non_null(end);
		assert_true(end - q - 1 < 64);
		if (n < cap) {
			memcpy(names[n], q + 1, (size_t)(end - q - 1));
			names[n][end - q - 1] = '\0';
		}
		n++;
	}
	free(code);
	return n;
}

static void crash_catalogue_matches_code(void **state)
{
	const char *root = getenv("SHMPOOL_SOURCE_ROOT");
	char dir[4096], path[4600], names[256][64];
	unsigned n = 0, files = 0;
	struct dirent *de;
	DIR *d;

	if (!root)
		fail_msg("SHMPOOL_SOURCE_ROOT is not set (run through meson test)");
	snprintf(dir, sizeof(dir), "%s/shared", root);
	d = opendir(dir);
	if (!d)
		fail_msg("cannot open %s: %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		FILE *f;
		char *text;
		long size;

		/* sources and headers: the magazine fast paths are inline */
		if (l < 3 || (strcmp(de->d_name + l - 2, ".c") && strcmp(de->d_name + l - 2, ".h")))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		f = fopen(path, "r");
		assert_non_null(f);
		fseek(f, 0, SEEK_END);
		size = ftell(f);
		fseek(f, 0, SEEK_SET);
		text = calloc(1, (size_t)size + 1);
		assert_non_null(text);
		assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
		fclose(f);
		n = collect_points(text, names, n, 256);
		free(text);
		files++;
	}
	closedir(d);
	assert_true(files > 5);
	assert_true(n <= 256);
	/* every point in the code is catalogued ... */
	for (unsigned i = 0; i < n; i++) {
		unsigned k;

		for (k = 0; k < sp_nr_crash_points; k++)
			if (!strcmp(names[i], sp_crash_points[k]))
				break;
		if (k == sp_nr_crash_points)
			fail_msg("SP_CRASH_POINT(\"%s\") in shared/ is missing from sp_crash_points[]",
				 names[i]);
	}
	/* ... and every catalogued point is in the code, once in the catalogue */
	for (unsigned k = 0; k < sp_nr_crash_points; k++) {
		unsigned i;

		for (i = 0; i < n; i++)
			if (!strcmp(names[i], sp_crash_points[k]))
				break;
		if (i == n)
			fail_msg("sp_crash_points[] lists \"%s\", which no SP_CRASH_POINT() in "
				 "shared/ names", sp_crash_points[k]);
		for (unsigned j = k + 1; j < sp_nr_crash_points; j++)
			if (!strcmp(sp_crash_points[j], sp_crash_points[k]))
				fail_msg("sp_crash_points[] lists \"%s\" twice", sp_crash_points[k]);
	}
	printf("  %u SP_CRASH_POINT() uses in %u files, %u catalogued names\n", n, files,
	       sp_nr_crash_points);
}

/* ---- (a') the wake-ups a dead registry owner owed --------------------------- */

struct wake_arg {
	char name[256];		/* the segment */
	uint32_t pool;
	const char *point;	/* the killer's crash point */
};

/* The waiter of recovery_wakes_waiters(), killed by its teardown on failure. */
static pid_t wake_waiter_pid;

static int kill_wake_waiter(void **state)
{
	if (wake_waiter_pid > 0) {
		kill(wake_waiter_pid, SIGKILL);
		tu_wait(wake_waiter_pid);
	}
	wake_waiter_pid = 0;
	return unlink_leftover(state);
}

/* Sleep in sp_pool_alloc() until the pool is destroyed: 0 on -ENOENT. */
static int wake_waiter(void *arg)
{
	const struct wake_arg *a = arg;
	struct sp_seg *s;
	struct sp_pool *p;
	sp_off_t off;

	tu_child_signals_default();
	s = tu_child_attach(a->name, "waiter");
	p = s ? sp_pool_get(s, a->pool) : NULL;
	if (!p)
		return 10;
	return sp_pool_alloc(s, p, 0, -1, &off) == -ENOENT ? 0 : 11;
}

/* Die at a->point: marking our own slot dead, or destroying the pool. */
static int wake_killer(void *arg)
{
	const struct wake_arg *a = arg;
	struct sp_seg *s;

	tu_child_signals_default();
	setenv("SHMPOOL_CRASH_POINT", a->point, 1);
	s = tu_child_attach(a->name, "killer");
	if (!s)
		return 10;
	if (!strcmp(a->point, "client.mark_dead"))
		sp_client_mark_dead(s, s->slot);
	else
		sp_pool_destroy(s, a->pool);
	return 0; /* not reached when the point is */
}

/* Until @cond or @ms pass. */
#define POLL_MS(cond, ms)                                                        \
	({                                                                       \
		uint64_t poll_end_ = sp_now_ms() + (ms);                         \
		while (!(cond) && sp_now_ms() < poll_end_)                       \
			usleep(1000);                                            \
		(cond);                                                          \
	})

/* The waiter's exit status within @ms, or -1 (still running). */
static int wait_exit(pid_t pid, uint64_t ms)
{
	uint64_t end = sp_now_ms() + ms;
	int raw;

	do {
		if (waitpid(pid, &raw, WNOHANG) == pid)
			return WIFSIGNALED(raw) ? 128 + WTERMSIG(raw) : WEXITSTATUS(raw);
		usleep(1000);
	} while (sp_now_ms() < end);
	return -1;
}

/*
 * A process killed under the registry lock may owe pool waiters a
 * wake-up: a client's death wakes every pool's (the dead process may have
 * died with a wake-up meant for one of them: mempool.c), a destroy the
 * destroyed pool's (they return -ENOENT).  Killed between the commit and
 * the wake-up (client.mark_dead, registry.remove), the next registry
 * locker's recovery makes it up.  The waiter sleeps without a timeout on
 * a page pool whose backing is exhausted (every page taken) and whose
 * reserve is empty (min_nr 0); nr_wait counts its sleeps.
 */
static void recovery_wakes_waiters(void **state)
{
	static const char *const points[] = { "client.mark_dead", "registry.remove" };
	struct sp_pool_params pp = { .elem_size = SP_PAGE_SIZE, .backing = SP_BACK_PAGES };

	for (unsigned k = 0; k < sizeof(points) / sizeof(points[0]); k++) {
		struct wake_arg a = { .point = points[k] };
		struct sp_seg_params sp;
		struct sp_seg *s;
		struct sp_pool *p;
		sp_off_t raw[64];
		uint32_t nraw = 0;
		int st;

		sp_seg_params_default(&sp);
		sp.size = 4u << 20;
		sp.max_clients = 8;
		s = seg_new(&sp);
		snprintf(a.name, sizeof(a.name), "%s", s->name);
		TU_ASSERT_OK(sp_pool_create(s, "w.pages", &pp, &a.pool));
		p = sp_pool_get(s, a.pool);
		for (int o = (int)s->geo.max_order; o >= 0; o--)
			while (nraw < 64 && sp_buddy_alloc(s, (unsigned)o, &raw[nraw]) == 0)
				nraw++;
		assert_int_equal(s->hdr->buddy.free_pages, 0);

		wake_waiter_pid = tu_fork(wake_waiter, &a);
		if (!POLL_MS(p->nr_wait == 1 && p->nr_waiters == 1, 10000))
			fail_msg("the waiter did not go to sleep on pool w.pages");
		st = tu_wait(tu_fork(wake_killer, &a));
		if (st != 128 + SIGKILL)
			fail_msg("%s: the killer ended with status %d, not at the crash point",
				 points[k], st);
		/* nobody woke it: the killer died owing the wake-up */
		assert_int_equal(p->nr_wait, 1);

		TU_ASSERT_OK(sp_registry_lock(s)); /* recovers */
		sp_registry_unlock(s);
		if (!strcmp(points[k], "client.mark_dead")) {
			/* it looked again, found nothing, sleeps again */
			if (!POLL_MS(p->nr_wait == 2, 10000))
				fail_msg("%s: the waiter was not woken by the recovery", points[k]);
			TU_ASSERT_OK(sp_pool_destroy(s, a.pool));
		}
		st = wait_exit(wake_waiter_pid, 10000);
		if (st < 0)
			fail_msg("%s: the waiter still sleeps on pool w.pages, destroyed 10 s ago",
				 points[k]);
		wake_waiter_pid = 0;
		assert_int_equal(st, 0); /* -ENOENT: the pool is gone */
		assert_int_equal(sp_pool_lookup(s, "w.pages", &(uint32_t){0}), -ENOENT);
		while (nraw)
			TU_ASSERT_OK(sp_buddy_free(s, raw[--nraw]));
		sp_client_reap(s);
		release_dead_slots(s);
		check_slots_free(s);
		tu_check_clean(s);
		printf("  %s: the waiter was woken by the recovery\n", points[k]);
		seg_free(s);
	}
}
#endif /* SP_FAULT_INJECTION */

/* ---- (b) random kills, in every build ------------------------------------- */

#define T_CHILDREN 4
#define T_HELD 160

/* The torture's running children, killed by the teardown if the test fails. */
static pid_t torture_pids[T_CHILDREN];

static int kill_torture_children(void **state)
{
	for (int i = 0; i < T_CHILDREN; i++) {
		if (torture_pids[i] > 0) {
			kill(torture_pids[i], SIGKILL);
			tu_wait(torture_pids[i]);
		}
		torture_pids[i] = 0;
	}
	return unlink_leftover(state);
}

struct ctl {
	int stop;
	int failures;
	uint64_t ops;
	char msg[4][240];
};

struct torture {
	char name[256];
	uint32_t pool[3], cache;
	uint64_t seed;
	uint64_t spawn;
	struct ctl *ctl;
};

enum tkind { T_POOL0, T_POOL1, T_POOL2, T_CACHE, T_KMALLOC, T_LARGE };

struct theld {
	sp_off_t off;
	uint64_t size;
	uint32_t seq;
	uint8_t kind;
};

static void tfail(struct ctl *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tfail(struct ctl *ctl, const char *fmt, ...)
{
	int k = __atomic_fetch_add(&ctl->failures, 1, __ATOMIC_RELAXED);
	va_list ap;

	if (k < 4) {
		va_start(ap, fmt);
		vsnprintf(ctl->msg[k], sizeof(ctl->msg[k]), fmt, ap);
		va_end(ap);
	}
}

static int tfree(struct sp_seg *s, const struct torture *t, struct theld *h)
{
	uint16_t tag = 0;
	int rc;

	if (!intact(s, h->off, h->size, h->seq)) {
		uint64_t head = 0;

		memcpy(&head, sp_ptr(s, h->off), h->size >= 8 ? 8 : 0);
		tfail(t->ctl, "pid %d: kind %u element %#llx (seq %u) overwritten, header %#llx: "
			      "handed out twice?", (int)getpid(), h->kind,
		      (unsigned long long)h->off, h->seq, (unsigned long long)head);
		return 11;
	}
	switch (h->kind) {
	case T_POOL0:
	case T_POOL1:
	case T_POOL2: {
		struct sp_pool *p = sp_pool_get(s, t->pool[h->kind]);

		rc = sp_pool_elem_owner(s, p, h->off, &tag);
		if (rc || tag != s->owner) {
			tfail(t->ctl, "pid %d: pool element %#llx tagged %u, we are %u",
			      (int)getpid(), (unsigned long long)h->off, tag, s->owner);
			return 13;
		}
		rc = sp_pool_free(s, p, h->off);
		break;
	}
	case T_CACHE:
		rc = sp_cache_free(s, sp_cache_get(s, t->cache), h->off);
		break;
	default:
		rc = sp_kfree(s, h->off);
		break;
	}
	if (rc) {
		tfail(t->ctl, "pid %d: free of kind %u element %#llx: %s: %s", (int)getpid(),
		      h->kind, (unsigned long long)h->off, sp_strerror(rc), sp_errmsg());
		return 12;
	}
	return 0;
}

/* Create, use and destroy a private pool or cache (1 = table full: fine). */
static int temp_cycle(struct sp_seg *s, const struct torture *t, uint64_t *rng, uint32_t nr)
{
	char name[64];
	sp_off_t v[4];
	uint32_t id, n;
	int rc;

	snprintf(name, sizeof(name), "tmp.%llu.%u", (unsigned long long)t->spawn, nr);
	if (tu_rand(rng) % 2) {
		struct sp_pool_params pp = { .elem_size = 100 + nr % 5000, .min_nr = 2,
					     .backing = nr % 3 ? SP_BACK_SLAB : SP_BACK_PAGES };
		struct sp_pool *p;

		rc = sp_pool_create(s, name, &pp, &id);
		if (rc == -ENFILE)
			return 1;
		if (rc)
			goto fail;
		p = sp_pool_get(s, id);
		for (n = 0; n < 4; n++) {
			if ((rc = sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &v[n])))
				goto fail;
			fill(s, v[n], pp.elem_size, n);
		}
		for (n = 0; n < 4; n++) {
			if (!intact(s, v[n], pp.elem_size, n)) {
				tfail(t->ctl, "pid %d: element of private pool %s overwritten",
				      (int)getpid(), name);
				return 11;
			}
			if ((rc = sp_pool_free(s, p, v[n])))
				goto fail;
		}
		if ((rc = sp_pool_destroy(s, id)))
			goto fail;
	} else {
		char tmpl[40];
		struct sp_cache *c;

		memset(tmpl, 0x5e, sizeof(tmpl));
		rc = sp_cache_create(s, name, sizeof(tmpl), 0, 0, tmpl, &id);
		if (rc == -ENFILE)
			return 1;
		if (rc)
			goto fail;
		c = sp_cache_get(s, id);
		for (n = 0; n < 4; n++) {
			if ((rc = sp_cache_alloc(s, c, s->owner, &v[n])))
				goto fail;
			if (memcmp(sp_ptr(s, v[n]), tmpl, sizeof(tmpl))) {
				tfail(t->ctl, "pid %d: new object of cache %s lacks its template",
				      (int)getpid(), name);
				return 11;
			}
		}
		for (n = 0; n < 4; n++)
			if ((rc = sp_cache_free(s, c, v[n])))
				goto fail;
		if ((rc = sp_cache_destroy(s, id)))
			goto fail;
	}
	return 0;
fail:
	tfail(t->ctl, "pid %d: private pool/cache %s: %s: %s", (int)getpid(), name,
	      sp_strerror(rc), sp_errmsg());
	return 12;
}

static int torture_child(void *arg)
{
	const struct torture *t = arg;
	struct theld held[T_HELD];
	uint64_t rng = t->seed;
	uint32_t nheld = 0, seq = 0, window = 4 + (uint32_t)(t->seed % 60), ntemp = 0;
	struct sp_seg *s = tu_child_attach(t->name, "torture");
	int rc = 0;

	tu_child_signals_default();
	if (!s) {
		tfail(t->ctl, "pid %d: attach: %s", (int)getpid(), sp_errmsg());
		return 10;
	}
	while (!rc && !__atomic_load_n(&t->ctl->stop, __ATOMIC_ACQUIRE)) {
		uint64_t r = tu_rand(&rng) % 1000;
		struct theld *h;

		if (nheld && (nheld >= window || r < 440)) {
			uint32_t i = (uint32_t)(tu_rand(&rng) % nheld);

			rc = tfree(s, t, &held[i]);
			held[i] = held[--nheld];
			continue;
		}
		if (r < 446) {
			rc = temp_cycle(s, t, &rng, ntemp++);
			rc = rc == 1 ? 0 : rc;
			continue;
		}
		if (r < 448) {
			sp_cache_shrink(s, sp_cache_get(s, t->cache));
			continue;
		}
		if (r < 450) { /* grow or shrink the uncapped pool's reserve */
			rc = sp_pool_resize(s, sp_pool_get(s, t->pool[0]),
					    4 + (uint32_t)(tu_rand(&rng) % 24));
			if (rc) {
				tfail(t->ctl, "pid %d: resize: %s: %s", (int)getpid(),
				      sp_strerror(rc), sp_errmsg());
				rc = 12;
			}
			continue;
		}
		h = &held[nheld];
		h->seq = ++seq;
		r = tu_rand(&rng) % 100;
		h->kind = r < 22 ? T_POOL0 : r < 36 ? T_POOL1 : r < 46 ? T_POOL2 : r < 66 ? T_CACHE
			: r < 97 ? T_KMALLOC : T_LARGE;
		switch (h->kind) {
		case T_POOL0:
		case T_POOL1:
		case T_POOL2: {
			struct sp_pool *p = sp_pool_get(s, t->pool[h->kind]);

			h->size = p->elem_size;
			rc = h->kind == T_POOL1 && r % 4 == 0
				     ? sp_pool_alloc(s, p, 0, 2, &h->off)
				     : sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &h->off);
			if (h->kind != T_POOL0 && (rc == -ENOMEM || rc == -ETIMEDOUT))
				rc = 1;
			break;
		}
		case T_CACHE:
			h->size = sp_cache_get(s, t->cache)->obj_size;
			rc = sp_cache_alloc(s, sp_cache_get(s, t->cache), s->owner, &h->off);
			break;
		case T_KMALLOC:
			h->size = 1 + tu_rand(&rng) % SP_KMALLOC_MAX;
			rc = sp_kmalloc(s, h->size, &h->off);
			break;
		default:
			h->size = SP_KMALLOC_MAX + 1 + tu_rand(&rng) % (40u << 10);
			rc = sp_kmalloc(s, h->size, &h->off);
			break;
		}
		if (rc == 1) {
			rc = 0;
			continue;
		}
		if (rc) {
			tfail(t->ctl, "pid %d: allocating kind %u (%llu bytes): %s: %s",
			      (int)getpid(), h->kind, (unsigned long long)h->size, sp_strerror(rc),
			      sp_errmsg());
			rc = 12;
			break;
		}
		fill(s, h->off, h->size, h->seq);
		nheld++;
		__atomic_fetch_add(&t->ctl->ops, 1, __ATOMIC_RELAXED);
	}
	while (!rc && nheld)
		rc = tfree(s, t, &held[--nheld]);
	if (!rc && sp_client_unregister(s, s->slot)) {
		tfail(t->ctl, "pid %d: unregister: %s", (int)getpid(), sp_errmsg());
		rc = 12;
	}
	sp_seg_detach(s);
	return rc;
}

static void random_kill_torture(void **state)
{
	long kills = tu_env_long("SHMPOOL_CRASH_KILLS", 150);
	long budget_ms = tu_env_long("SHMPOOL_CRASH_SECONDS", 30) * 1000;
	uint64_t seed = (uint64_t)tu_env_long("SHMPOOL_CRASH_SEED", 1), rng = seed * 7919 + 13;
	struct sp_pool_params pp[3] = {
		{ .elem_size = 160, .min_nr = 12, .backing = SP_BACK_SLAB },
		{ .elem_size = 96, .min_nr = 6, .max_nr = 20, .backing = SP_BACK_SLAB,
		  .cache_flags = SP_CACHE_POISON | SP_CACHE_REDZONE },
		{ .elem_size = 4096, .min_nr = 4, .max_nr = 12, .backing = SP_BACK_PAGES },
	};
	static const char *const names[3] = { "t.slab", "t.capped", "t.pages" };
	struct sp_seg_params sp;
	struct torture t;
	struct sp_seg *s;
	pid_t *pids = torture_pids;
	uint64_t t0 = sp_now_ms(), spawned = 0, rec0;
	long done = 0;
	int releases = 0, checks = 0;

	memset(&t, 0, sizeof(t));
	t.ctl = mmap(NULL, sizeof(*t.ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		     0);
	assert_true(t.ctl != MAP_FAILED);
	memset(t.ctl, 0, sizeof(*t.ctl));
	sp_seg_params_default(&sp);
	sp.size = 32u << 20;
	sp.max_clients = 128;
	sp.max_caches = 128;
	sp.max_pools = 128;
	s = seg_new(&sp);
	snprintf(t.name, sizeof(t.name), "%s", s->name);
	for (int i = 0; i < 3; i++)
		TU_ASSERT_OK(sp_pool_create(s, names[i], &pp[i], &t.pool[i]));
	TU_ASSERT_OK(sp_cache_create(s, "t.cache", 80, 0, SP_CACHE_POISON, NULL, &t.cache));
	rec0 = total_recoveries(s);
	printf("  torture: %ld kills of %d children, seed %llu\n", kills, T_CHILDREN,
	       (unsigned long long)seed);

	for (int i = 0; i < T_CHILDREN; i++) {
		t.spawn = ++spawned;
		t.seed = seed * 1000003 + spawned;
		pids[i] = tu_fork(torture_child, &t);
	}
	while (done < kills && (long)(sp_now_ms() - t0) < budget_ms) {
		struct timespec ts = { 0, (long)(tu_rand(&rng) % 3000) * 1000 };
		int i = (int)(tu_rand(&rng) % T_CHILDREN), st;

		nanosleep(&ts, NULL);
		kill(pids[i], SIGKILL);
		st = tu_wait(pids[i]);
		pids[i] = 0;
		if (st != 128 + SIGKILL) {
			for (int k = 0; k < T_CHILDREN; k++)
				if (k != i)
					kill(pids[k], SIGKILL);
			for (int k = 0; k < 4 && k < t.ctl->failures; k++)
				printf("  %s\n", t.ctl->msg[k]);
			fail_msg("a torture child exited with status %d before it was killed", st);
		}
		done++;
		t.spawn = ++spawned;
		t.seed = seed * 1000003 + spawned;
		pids[i] = tu_fork(torture_child, &t);
		if (done % 16 == 0) { /* clean up after the dead while the others run */
			sp_client_reap(s);
			release_dead_slots(s);
			releases++;
		}
		if (done % 40 == 0) {
			int n = tu_check_count(s, 0);

			checks++;
			if (n) {
				for (int k = 0; k < T_CHILDREN; k++)
					kill(pids[k], SIGKILL);
				fail_msg("checker found %d violation(s) during the torture", n);
			}
		}
	}
	__atomic_store_n(&t.ctl->stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < T_CHILDREN; i++) {
		uint64_t deadline = sp_now_ms() + 20000;
		int st = -1, raw;

		while (sp_now_ms() < deadline) {
			pid_t w = waitpid(pids[i], &raw, WNOHANG);

			if (w == pids[i]) {
				st = WIFSIGNALED(raw) ? 128 + WTERMSIG(raw) : WEXITSTATUS(raw);
				pids[i] = 0;
				break;
			}
			usleep(2000);
		}
		if (st < 0) {
			for (int k = i; k < T_CHILDREN; k++)
				kill(pids[k], SIGKILL);
			fail_msg("a torture child did not stop within 20 s (deadlock?)");
		}
		if (st != 0) {
			for (int k = 0; k < 4 && k < t.ctl->failures; k++)
				printf("  %s\n", t.ctl->msg[k]);
			fail_msg("a surviving torture child exited with status %d", st);
		}
	}
	for (int k = 0; k < 4 && k < t.ctl->failures; k++)
		printf("  %s\n", t.ctl->msg[k]);
	assert_int_equal(t.ctl->failures, 0);

	sp_client_reap(s);
	release_dead_slots(s);
	tu_check_clean(s);
	lock_everything(s);
	for (uint32_t i = 0; i < s->hdr->max_clients; i++)
		if (i != s->slot && sp_clients(s)[i].state != SP_CLIENT_FREE)
			fail_msg("client slot %u left in state %u", i, sp_clients(s)[i].state);
	/* every reserve is complete again, shared and orphaned private pools alike */
	for (uint32_t i = 0; i < s->hdr->max_pools; i++) {
		struct sp_pool *p = sp_pool_get(s, i);

		if (p)
			check_pool_counters(s, p, 0);
	}
	assert_int_equal(sp_cache_get(s, t.cache)->active_objs, 0);
	for (int i = 1; i < 3; i++)
		exhaust_pool(s, sp_pool_get(s, t.pool[i]), NULL, 0);
	exhaust_cache(s, sp_cache_get(s, t.cache), NULL, 0);
	/* what killed children left behind is intact and can be destroyed */
	for (uint32_t i = 0; i < s->hdr->max_pools; i++) {
		struct sp_pool *p = sp_pool_get(s, i);

		if (p && !strncmp(p->name, "tmp.", 4))
			TU_ASSERT_OK(sp_pool_destroy(s, i));
	}
	for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++) {
		struct sp_cache *c = sp_cache_get(s, i);

		if (c && !strncmp(c->name, "tmp.", 4))
			TU_ASSERT_OK(sp_cache_destroy(s, i));
	}
	check_internal(s);
	exhaust_pages(s, NULL, NULL, 0);
	tu_check_clean(s);
	printf("  torture: %ld kills in %llu ms, %llu ops, %llu lock recoveries, %d releases and "
	       "%d locked checks meanwhile\n", done, (unsigned long long)(sp_now_ms() - t0),
	       (unsigned long long)t.ctl->ops, (unsigned long long)(total_recoveries(s) - rec0),
	       releases, checks);
	munmap(t.ctl, sizeof(*t.ctl));
	seg_free(s);
}

int main(void)
{
	struct CMUnitTest tests[64];
	size_t n = 0;

#if SP_FAULT_INJECTION
	static char names[64][96];

	tests[n++] = (struct CMUnitTest){ .name = "crash_catalogue_matches_code",
					  .test_func = crash_catalogue_matches_code };
	tests[n++] = (struct CMUnitTest){ .name = "recovery_wakes_waiters",
					  .test_func = recovery_wakes_waiters,
					  .teardown_func = kill_wake_waiter };
	for (unsigned i = 0; i < sp_nr_crash_points && n < 60; i++) {
		snprintf(names[i], sizeof(names[i]), "crash_point:%s", sp_crash_points[i]);
		tests[n++] = (struct CMUnitTest){ .name = names[i],
						  .test_func = crash_point_test,
						  .teardown_func = unlink_leftover,
						  .initial_state = (void *)(uintptr_t)i };
	}
#endif
	tests[n++] = (struct CMUnitTest){ .name = "random_kill_torture",
					  .test_func = random_kill_torture,
					  .teardown_func = kill_torture_children };
	return _cmocka_run_group_tests("crash", tests, n, NULL, NULL);
}
