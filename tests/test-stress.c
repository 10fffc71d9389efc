/* SPDX-License-Identifier: MIT */
/*
 * test-stress.c - deterministic multi-process stress of every allocator.
 *
 * SHMPOOL_STRESS_PROCS (default 4) forked processes, each with its own
 * mapping and client slot, hammer the same three pools (slab-backed
 * uncapped, slab-backed capped with POISON|REDZONE, page-backed capped; all
 * with reserves), a named POISON|REDZONE cache and kmalloc with random sizes
 * (1..8192 and some large blocks), holding a random window of allocations.
 * Every allocation is stamped with (owner tag, sequence number, offset) and
 * verified, together with its owner tag in the segment, before it is freed:
 * an element handed out twice would break the stamp.  Every child's
 * operation sequence is a function of SHMPOOL_STRESS_SEED and its index
 * (SHMPOOL_STRESS_ITER operations each, default 20000).
 *
 * Meanwhile the parent runs the locking checker and resizes the uncapped
 * pool's reserve.  At the end the parent asserts every child succeeded, the
 * checker is clean and the counters reconcile: every reserve is full
 * (curr_nr == min_nr), every pool's backing holds exactly its reserve, the
 * named cache is empty and no large block is left.
 *
 * stress_magazines: the same processes allocate and free through per-thread
 * magazines (shared/magazine.h; two sets per process, as two threads) from
 * an uncapped slab pool, a plain named cache and kmalloc, flush them, end
 * and start "threads", and hand stamped objects to each other through
 * shared mailboxes: an object taken from a mailbox is verified (stamp and
 * owner tag of whoever put it there) and freed into the taker's magazine.
 * Half of the processes say goodbye, the other half exit with their
 * magazines full; the parent empties the mailboxes, releases the slots,
 * and everything must be back: checker clean, no magazine set left, the
 * pool's reserve full and nothing out, the counts (magazines included)
 * matching.
 */
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

#define NPOOLS 3
#define MAX_HELD 320
#define MAX_PROCS 32

enum kind { K_POOL0, K_POOL1, K_POOL2, K_CACHE, K_KMALLOC, K_LARGE };

struct held {
	sp_off_t off;
	uint64_t size;
	uint32_t seq;
	uint8_t kind;
};

/* What the parent sets up and every child inherits. */
struct setup {
	char name[256];
	uint32_t pool[NPOOLS];
	uint32_t cache;
	long iter;
	uint64_t seed;
	int idx;
};

/* Shared (MAP_SHARED anonymous) report page: children explain failures here. */
struct report {
	int failed;
	char msg[MAX_PROCS][240];
	uint64_t ops[MAX_PROCS], reserve_hits[MAX_PROCS];
};

static struct report *rep;

/* Children still running and the segment, for the teardown of a failed run. */
static pid_t running[MAX_PROCS];
static char seg_name[256];

static int stress_teardown(void **state)
{
	for (int i = 0; i < MAX_PROCS; i++) {
		if (running[i] > 0) {
			kill(running[i], SIGKILL);
			tu_wait(running[i]);
		}
		running[i] = 0;
	}
	if (seg_name[0])
		shm_unlink(seg_name);
	seg_name[0] = '\0';
	return 0;
}

static void child_fail(int idx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void child_fail(int idx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (rep && idx < MAX_PROCS && !rep->msg[idx][0])
		vsnprintf(rep->msg[idx], sizeof(rep->msg[idx]), fmt, ap);
	va_end(ap);
	if (rep)
		__atomic_fetch_add(&rep->failed, 1, __ATOMIC_RELAXED);
}



static uint64_t stamp(uint16_t owner, uint32_t seq, sp_off_t off, uint64_t i)
{
	if (i == 0)
		return (uint64_t)owner << 48 | seq;
	return ((uint64_t)owner << 48) ^ ((uint64_t)seq << 16) ^ (off * 0xff51afd7ed558ccdULL) ^
	       ((i + 1) * 0x9e3779b97f4a7c15ULL);
}

static void fill(uint8_t *p, uint64_t size, uint16_t owner, uint32_t seq, sp_off_t off)
{
	uint64_t nw = size / 8, i;

	for (i = 0; i < nw; i++) {
		uint64_t v = stamp(owner, seq, off, i);

		memcpy(p + 8 * i, &v, 8);
	}
	for (uint64_t b = 8 * nw; b < size; b++)
		p[b] = (uint8_t)(stamp(owner, seq, off, nw) >> (8 * (b % 8)));
}

/* Return the first byte index that differs, or -1. */
static long verify(const uint8_t *p, uint64_t size, uint16_t owner, uint32_t seq, sp_off_t off)
{
	uint64_t nw = size / 8, i;

	for (i = 0; i < nw; i++) {
		uint64_t v = stamp(owner, seq, off, i), got;

		memcpy(&got, p + 8 * i, 8);
		if (got != v)
			return (long)(8 * i);
	}
	for (uint64_t b = 8 * nw; b < size; b++)
		if (p[b] != (uint8_t)(stamp(owner, seq, off, nw) >> (8 * (b % 8))))
			return (long)b;
	return -1;
}

static const char *kind_name(int k)
{
	static const char *const n[] = { "pool0", "pool1", "pool2", "cache", "kmalloc", "large" };

	return n[k];
}

/* Is @h tagged with our owner tag in the segment? */
static bool owner_ok(struct sp_seg *s, const struct setup *su, const struct held *h,
		     uint16_t *got)
{
	struct sp_cache *c;
	struct sp_slab *slab;
	uint32_t idx, pfn;
	bool ok = false;

	*got = 0;
	switch (h->kind) {
	case K_POOL0:
	case K_POOL1:
	case K_POOL2:
		if (sp_pool_elem_owner(s, sp_pool_get(s, su->pool[h->kind]), h->off, got))
			return false;
		return *got == s->owner;
	case K_CACHE:
	case K_KMALLOC:
		c = h->kind == K_CACHE ? sp_cache_get(s, su->cache)
				       : sp_cache_get(s, (uint32_t)sp_kmalloc_class(h->size));
		if (!c || sp_cache_lock(s, c))
			return false;
		if (sp_cache_obj_locate(s, c, h->off, &slab, &idx) == 0) {
			*got = sp_slab_owners(c, slab)[idx];
			ok = *got == s->owner && (slab->bitmap[idx / 64] >> (idx % 64) & 1);
		}
		sp_cache_unlock(c);
		return ok;
	default:
		if (!sp_off_pfn(s, h->off, &pfn) || sp_buddy_lock(s))
			return false;
		*got = s->pages[pfn].slot;
		ok = SP_PG_STATE(s->pages[pfn].info) == SP_PG_ALLOC &&
		     SP_PG_KIND(s->pages[pfn].info) == SP_KIND_LARGE && *got == s->owner;
		sp_buddy_unlock(s);
		return ok;
	}
}

static int release_one(struct sp_seg *s, const struct setup *su, struct held *h)
{
	long bad = verify(sp_ptr(s, h->off), h->size, s->owner, h->seq, h->off);
	uint16_t tag;
	int rc;

	if (bad >= 0) {
		uint64_t head = 0;

		memcpy(&head, sp_ptr(s, h->off), h->size >= 8 ? 8 : 0);
		child_fail(su->idx,
			   "child %d: %s element %#llx (%llu bytes, seq %u) corrupted at byte %ld; "
			   "header now %#llx (owner %u seq %u): handed out twice?",
			   su->idx, kind_name(h->kind), (unsigned long long)h->off,
			   (unsigned long long)h->size, h->seq, bad, (unsigned long long)head,
			   (unsigned)(head >> 48), (unsigned)(head & 0xffffffffu));
		return 11;
	}
	if (!owner_ok(s, su, h, &tag)) {
		child_fail(su->idx, "child %d: %s element %#llx is tagged %u, we are %u",
			   su->idx, kind_name(h->kind), (unsigned long long)h->off, tag, s->owner);
		return 13;
	}
	switch (h->kind) {
	case K_POOL0:
	case K_POOL1:
	case K_POOL2:
		rc = sp_pool_free(s, sp_pool_get(s, su->pool[h->kind]), h->off);
		break;
	case K_CACHE:
		rc = sp_cache_free(s, sp_cache_get(s, su->cache), h->off);
		break;
	default:
		rc = sp_kfree(s, h->off);
		break;
	}
	if (rc) {
		child_fail(su->idx, "child %d: freeing %s element %#llx: %s: %s", su->idx,
			   kind_name(h->kind), (unsigned long long)h->off, sp_strerror(rc),
			   sp_errmsg());
		return 12;
	}
	return 0;
}

/* Allocate one element of @kind; 1 when the allocator is (legitimately) empty. */
static int alloc_one(struct sp_seg *s, const struct setup *su, uint64_t *rng, int kind,
		     struct held *h, uint32_t seq)
{
	struct sp_pool *p;
	uint64_t r = tu_rand(rng);
	int rc;

	h->kind = (uint8_t)kind;
	h->seq = seq;
	switch (kind) {
	case K_POOL0:
	case K_POOL1:
	case K_POOL2:
		p = sp_pool_get(s, su->pool[kind]);
		if (kind == K_POOL1 && r % 8 == 0)
			rc = sp_pool_alloc(s, p, 0, 1 + (int)((r >> 8) % 3), &h->off); /* may wait */
		else
			rc = sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &h->off);
		h->size = p->elem_size;
		if (kind != K_POOL0 && (rc == -ENOMEM || rc == -ETIMEDOUT))
			return 1;
		break;
	case K_CACHE:
		rc = sp_cache_alloc(s, sp_cache_get(s, su->cache), s->owner, &h->off);
		h->size = sp_cache_get(s, su->cache)->obj_size;
		break;
	case K_KMALLOC:
		/* favour small sizes, but cover every class up to 8192 */
		h->size = r % 4 ? 1 + (r >> 8) % 256 : 1 + (r >> 8) % SP_KMALLOC_MAX;
		rc = sp_kmalloc(s, h->size, &h->off);
		break;
	default:
		h->size = SP_KMALLOC_MAX + 1 + (r >> 8) % (56u << 10);
		rc = sp_kmalloc(s, h->size, &h->off);
		break;
	}
	if (rc) {
		child_fail(su->idx, "child %d: allocating %s (%llu bytes): %s: %s", su->idx,
			   kind_name(kind), (unsigned long long)h->size, sp_strerror(rc),
			   sp_errmsg());
		return -1;
	}
	fill(sp_ptr(s, h->off), h->size, s->owner, seq, h->off);
	return 0;
}

static int child_main(void *arg)
{
	const struct setup *su = arg;
	struct held held[MAX_HELD];
	uint64_t rng = su->seed * 0x100000001b3ULL + (uint64_t)su->idx * 0x9e3779b97f4a7c15ULL + 1;
	uint32_t nheld = 0, seq = 0, window;
	char cname[32];
	struct sp_seg *s;
	int rc = 0;

	tu_child_signals_default();
	snprintf(cname, sizeof(cname), "stress-%d", su->idx);
	s = tu_child_attach(su->name, cname);
	if (!s) {
		child_fail(su->idx, "child %d: attach/register: %s", su->idx, sp_errmsg());
		return 10;
	}
	window = 8 + (uint32_t)(tu_rand(&rng) % 89);
	for (long it = 0; it < su->iter && !rc; it++) {
		uint64_t r = tu_rand(&rng) % 1000;
		int kind, got;

		if (it % 2500 == 1249 || it % 2500 == 2499) {
			/* burst: drain a capped pool down to its reserve and past it */
			kind = it % 2500 == 1249 ? K_POOL1 : K_POOL2;
			while (nheld < MAX_HELD) {
				got = alloc_one(s, su, &rng, kind, &held[nheld], ++seq);
				if (got < 0) {
					rc = 12;
					break;
				}
				if (got)
					break;
				nheld++;
			}
			rep->reserve_hits[su->idx]++;
			continue;
		}
		if (it % 1000 == 999) { /* re-verify everything held */
			for (uint32_t i = 0; i < nheld && !rc; i++) {
				long bad = verify(sp_ptr(s, held[i].off), held[i].size, s->owner,
						  held[i].seq, held[i].off);
				if (bad >= 0) {
					child_fail(su->idx,
						   "child %d: held %s element %#llx changed at byte %ld",
						   su->idx, kind_name(held[i].kind),
						   (unsigned long long)held[i].off, bad);
					rc = 11;
				}
			}
			window = 8 + (uint32_t)(tu_rand(&rng) % 89);
			continue;
		}
		if (nheld && (nheld >= window || r < 450)) {
			uint32_t i = (uint32_t)(tu_rand(&rng) % nheld);

			rc = release_one(s, su, &held[i]);
			held[i] = held[--nheld];
			continue;
		}
		r = tu_rand(&rng) % 100;
		kind = r < 25 ? K_POOL0 : r < 40 ? K_POOL1 : r < 50 ? K_POOL2 : r < 70 ? K_CACHE
		     : r < 98 ? K_KMALLOC : K_LARGE;
		got = alloc_one(s, su, &rng, kind, &held[nheld], ++seq);
		if (got < 0)
			rc = 12;
		else if (got == 0)
			nheld++;
		rep->ops[su->idx]++;
	}
	while (nheld && !rc) {
		rc = release_one(s, su, &held[nheld - 1]);
		nheld--;
	}
	if (!rc) {
		int u = sp_client_unregister(s, s->slot);

		if (u) {
			child_fail(su->idx, "child %d: unregister: %s", su->idx, sp_errmsg());
			rc = 12;
		}
	}
	sp_seg_detach(s);
	return rc;
}

/* Count the page-backed elements of pool @id (what nr_pages_out must be). */
static uint32_t count_pool_pages(struct sp_seg *s, uint32_t id, uint32_t *large)
{
	uint32_t n = 0, pfn;

	*large = 0;
	TU_ASSERT_OK(sp_buddy_lock(s));
	for (pfn = 0; pfn < s->hdr->nr_pages;) {
		uint32_t info = s->pages[pfn].info, o = SP_PG_ORDER(info);

		if (SP_PG_STATE(info) == SP_PG_ALLOC && SP_PG_KIND(info) == SP_KIND_POOL &&
		    s->pages[pfn].owner == id)
			n++;
		if (SP_PG_STATE(info) == SP_PG_ALLOC &&
		    (SP_PG_KIND(info) == SP_KIND_LARGE || SP_PG_KIND(info) == SP_KIND_RAW))
			(*large)++;
		pfn += 1u << (o > s->hdr->max_order ? 0 : o);
	}
	sp_buddy_unlock(s);
	return n;
}

static void stress(void **state)
{
	struct sp_seg_params sp;
	struct sp_seg *s;
	struct setup su;
	struct sp_pool_params pp[NPOOLS] = {
		{ .elem_size = 200, .min_nr = 16, .backing = SP_BACK_SLAB },
		{ .elem_size = 64, .min_nr = 8, .max_nr = 24, .backing = SP_BACK_SLAB,
		  .cache_flags = SP_CACHE_POISON | SP_CACHE_REDZONE },
		{ .elem_size = 8192, .min_nr = 4, .max_nr = 12, .backing = SP_BACK_PAGES },
	};
	static const char *const pname[NPOOLS] = { "stress.slab", "stress.capped",
						    "stress.pages" };
	long procs = tu_env_long("SHMPOOL_STRESS_PROCS", 4);
	pid_t pids[MAX_PROCS];
	int status[MAX_PROCS], alive, checks = 0, resizes = 0;
	uint64_t kmalloc_before = 0, kmalloc_after, rng, t0 = sp_now_ms();
	uint32_t large, npages;

	memset(&su, 0, sizeof(su));
	su.iter = tu_env_long("SHMPOOL_STRESS_ITER", 20000);
	su.seed = (uint64_t)tu_env_long("SHMPOOL_STRESS_SEED", 1);
	if (procs < 1 || procs > MAX_PROCS)
		fail_msg("SHMPOOL_STRESS_PROCS must be 1..%d", MAX_PROCS);
	printf("stress: %ld processes x %ld operations, seed %llu\n", procs, su.iter,
	       (unsigned long long)su.seed);
	rng = su.seed ^ 0xabcdef;

	rep = mmap(NULL, sizeof(*rep), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(rep != MAP_FAILED);
	memset(rep, 0, sizeof(*rep));

	sp_seg_params_default(&sp);
	sp.size = 64u << 20;
	sp.max_clients = 64;
	sp.max_caches = 16;
	sp.max_pools = 16;
	s = tu_seg_new_params(&sp);
	s->lock_timeout_ms = 20000; /* a wedged lock fails the test instead of hanging it */
	snprintf(su.name, sizeof(su.name), "%s", s->name);
	snprintf(seg_name, sizeof(seg_name), "%s", s->name);
	for (int i = 0; i < NPOOLS; i++)
		TU_ASSERT_OK(sp_pool_create(s, pname[i], &pp[i], &su.pool[i]));
	TU_ASSERT_OK(sp_cache_create(s, "stress.cache", 96, 0, SP_CACHE_POISON | SP_CACHE_REDZONE,
				     NULL, &su.cache));
	tu_check_clean(s);
	for (uint32_t i = 0; i < s->hdr->nr_kmalloc; i++)
		kmalloc_before += sp_caches(s)[i].active_objs;

	for (long i = 0; i < procs; i++) {
		su.idx = (int)i;
		pids[i] = running[i] = tu_fork(child_main, &su);
		status[i] = -1;
	}

	/* while they run: check with every lock held, and resize the uncapped reserve */
	do {
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		int n;

		nanosleep(&ts, NULL);
		alive = 0;
		for (long i = 0; i < procs; i++) {
			if (status[i] < 0) {
				int st;
				pid_t w = waitpid(pids[i], &st, WNOHANG);

				if (w == pids[i]) {
					status[i] = WIFSIGNALED(st) ? 128 + WTERMSIG(st)
								    : WEXITSTATUS(st);
					running[i] = 0;
				} else
					alive++;
			}
		}
		if (!alive)
			break;
		n = tu_check_count(s, 0);
		checks++;
		if (n) {
			for (long i = 0; i < procs; i++)
				if (status[i] < 0)
					kill(pids[i], SIGKILL);
			fail_msg("checker found %d violation(s) during the run", n);
		}
		if (checks % 3 == 0) {
			uint32_t want = 4 + (uint32_t)(tu_rand(&rng) % 40);
			int rc = sp_pool_resize(s, sp_pool_get(s, su.pool[0]), want);

			if (rc && rc != -ENOMEM)
				fail_msg("sp_pool_resize: %s: %s", sp_strerror(rc), sp_errmsg());
			resizes++;
		}
		if (sp_now_ms() - t0 > 240000) {
			for (long i = 0; i < procs; i++)
				if (status[i] < 0)
					kill(pids[i], SIGKILL);
			fail_msg("children still running after 240 s (deadlock?)");
		}
	} while (alive);

	for (long i = 0; i < procs; i++) {
		if (rep->msg[i][0])
			printf("  %s\n", rep->msg[i]);
		if (status[i] != 0)
			fail_msg("child %ld exited with status %d", i, status[i]);
	}
	assert_int_equal(rep->failed, 0);
	printf("stress: %d locked checks and %d resizes during the run, %llu ms\n", checks,
	       resizes, (unsigned long long)(sp_now_ms() - t0));

	/* back to the reserve the pool was created with */
	TU_ASSERT_OK(sp_pool_resize(s, sp_pool_get(s, su.pool[0]), pp[0].min_nr));
	tu_check_clean(s);
	assert_int_equal(sp_client_reap(s), 0); /* every child said goodbye */
	for (uint32_t i = 0; i < s->hdr->max_clients; i++)
		if (i != s->slot)
			assert_int_equal(sp_clients(s)[i].state, SP_CLIENT_FREE);

	/* counters reconcile */
	for (int i = 0; i < NPOOLS; i++) {
		struct sp_pool *p = sp_pool_get(s, su.pool[i]);

		assert_non_null(p);
		TU_ASSERT_OK(sp_pool_lock(s, p));
		if (p->curr_nr != p->min_nr || p->min_nr != pp[i].min_nr)
			fail_msg("pool %s: curr_nr %u, min_nr %u, created with %u", p->name,
				 p->curr_nr, p->min_nr, pp[i].min_nr);
		if (p->backing == SP_BACK_SLAB) {
			struct sp_cache *c = &sp_caches(s)[p->cache_id];

			if (c->active_objs != p->curr_nr)
				fail_msg("pool %s: its cache holds %llu objects, reserve %u", p->name,
					 (unsigned long long)c->active_objs, p->curr_nr);
		} else {
			npages = count_pool_pages(s, p->id, &large);
			if (p->nr_pages_out != p->curr_nr || npages != p->curr_nr)
				fail_msg("pool %s: nr_pages_out %u, %u element pages, reserve %u",
					 p->name, p->nr_pages_out, npages, p->curr_nr);
		}
		assert_int_equal(sp_pool_nr_out(s, p), 0);
		sp_pool_unlock(p);
		if (i)
			assert_true(p->nr_reserve_alloc > 0); /* the bursts reached the reserve */
	}
	assert_int_equal(sp_cache_get(s, su.cache)->active_objs, 0);
	/* only the pools' INTERNAL reserve arrays are left (resizing may move them) */
	kmalloc_after = 0;
	for (uint32_t i = 0; i < s->hdr->nr_kmalloc; i++)
		kmalloc_after += sp_caches(s)[i].active_objs;
	if (kmalloc_after != kmalloc_before)
		fail_msg("%llu kmalloc objects allocated, %llu before the run",
			 (unsigned long long)kmalloc_after, (unsigned long long)kmalloc_before);
	count_pool_pages(s, UINT32_MAX, &large);
	assert_int_equal(large, 0);
	tu_check_clean(s);
	munmap(rep, sizeof(*rep));
	rep = NULL;
	seg_name[0] = '\0';
	tu_seg_free(s);
}

/* ---- through magazines ----------------------------------------------------- */

#define NBOX 32
enum mkind { M_POOL, M_CACHE, M_KMALLOC };

/* Shared (MAP_SHARED anonymous): mailboxes of held objects, by kind. */
struct mboxes {
	sp_off_t box[2][NBOX];
};

static struct mboxes *mbox;

struct msetup {
	char name[256];
	uint32_t pool, cache;
	long iter;
	uint64_t seed;
	int idx;
};

static struct sp_cache *mkind_cache(struct sp_seg *s, const struct msetup *su, int kind,
				    uint64_t size)
{
	struct sp_pool *p;

	switch (kind) {
	case M_POOL:
		p = sp_pool_get(s, su->pool);
		return p ? sp_cache_get(s, p->cache_id) : NULL;
	case M_CACHE:
		return sp_cache_get(s, su->cache);
	default:
		return &sp_caches(s)[sp_kmalloc_class(size)];
	}
}

/* Stamp and owner tag of a held object: 0, or 11 (and the report). */
static int mverify(struct sp_seg *s, const struct msetup *su, struct sp_cache *c,
		   const struct held *h, uint16_t owner, const char *how)
{
	long bad = verify(sp_ptr(s, h->off), h->size, owner, h->seq, h->off);
	bool allocated = false;
	uint16_t *tag = sp_mag_tag(s, c, h->off, &allocated);

	if (bad >= 0 || !tag || !allocated || *tag != owner) {
		child_fail(su->idx, "child %d: %s %s object %#llx (seq %u of tag %u): %s (tag %u)",
			   su->idx, how, c->name, (unsigned long long)h->off, h->seq, owner,
			   bad >= 0 ? "stamp broken: handed out twice?" : "not held by its owner",
			   tag ? *tag : 0);
		return 11;
	}
	return 0;
}

/* Free into the thread's magazine, flushing half of it when full: 0 or 12. */
static int mfree(struct sp_seg *s, const struct msetup *su, struct sp_magset *set,
		 struct sp_cache *c, sp_off_t off)
{
	enum sp_mag_push_result r = SP_MAG_REFUSED;
	struct sp_mag *m;

	if (sp_mag_bind(s, set, c, &m) == 0) {
		r = sp_mag_push(s, c, m, off);
		if (r == SP_MAG_FULL && sp_mag_flush(s, c, m, sp_mag_cap(c) / 2) == 0)
			r = sp_mag_push(s, c, m, off);
	}
	if (r == SP_MAG_PUSHED)
		return 0;
	child_fail(su->idx, "child %d: magazine free of %s object %#llx refused (%d): %s",
		   su->idx, c->name, (unsigned long long)off, (int)r, sp_errmsg());
	return 12;
}

/* Allocate from the thread's magazine, refilling it: 0 or 12. */
static int malloc_mag(struct sp_seg *s, const struct msetup *su, struct sp_magset *set,
		      struct sp_cache *c, sp_off_t *off)
{
	struct sp_mag *m;

	if (c && sp_mag_bind(s, set, c, &m) == 0 &&
	    (sp_mag_pop(s, c, m, off) ||
	     (sp_mag_refill(s, c, m) > 0 && sp_mag_pop(s, c, m, off))))
		return 0;
	child_fail(su->idx, "child %d: magazine alloc from %s: %s", su->idx, c ? c->name : "?",
		   sp_errmsg());
	return 12;
}

static int mag_child_main(void *arg)
{
	const struct msetup *su = arg;
	uint64_t rng = su->seed * 0x100000001b3ULL + (uint64_t)su->idx * 0x9e3779b97f4a7c15ULL + 7;
	struct held held[MAX_HELD];
	struct sp_magset *set[2];
	uint32_t nheld = 0, seq = 0, window = 8 + (uint32_t)(rng % 120);
	struct sp_seg *s;
	int rc = 0;

	tu_child_signals_default();
	s = tu_child_attach(su->name, "mstress");
	if (!s || sp_magset_create(s, 1, &set[0]) || sp_magset_create(s, 2, &set[1])) {
		child_fail(su->idx, "child %d: attach or magazine sets: %s", su->idx, sp_errmsg());
		return 10;
	}
	for (long it = 0; it < su->iter && !rc; it++) {
		uint64_t r = tu_rand(&rng) % 1000;
		int t = (int)(tu_rand(&rng) & 1);
		struct sp_cache *c;
		struct held *h;

		if (r < 4) { /* a thread flushes */
			if (sp_mag_flush_all(s, set[t])) {
				child_fail(su->idx, "child %d: flush: %s", su->idx, sp_errmsg());
				rc = 12;
			}
			continue;
		}
		if (r < 6) { /* a thread ends, another starts */
			sp_magset_destroy(s, set[t]);
			if (sp_magset_create(s, 3 + (uint32_t)it, &set[t])) {
				child_fail(su->idx, "child %d: new set: %s", su->idx, sp_errmsg());
				rc = 12;
			}
			continue;
		}
		if (nheld && (nheld >= window || r < 470)) {
			uint32_t i = (uint32_t)(tu_rand(&rng) % nheld);
			struct held x = held[i];

			held[i] = held[--nheld];
			c = mkind_cache(s, su, x.kind, x.size);
			if ((rc = mverify(s, su, c, &x, s->owner, "freeing")))
				break;
			if (x.kind != M_KMALLOC && r % 3 == 0) {
				/* hand it to whoever comes next; free what was there */
				sp_off_t got = __atomic_exchange_n(&mbox->box[x.kind][r % NBOX], x.off,
								   __ATOMIC_ACQ_REL);
				uint64_t w0;

				if (!got)
					continue;
				memcpy(&w0, sp_ptr(s, got), 8);
				x.off = got;
				x.seq = (uint32_t)w0;
				if ((rc = mverify(s, su, c, &x, (uint16_t)(w0 >> 48), "taking over")))
					break;
			}
			memset(sp_ptr(s, x.off), 0, 8);
			rc = mfree(s, su, set[t], c, x.off);
			continue;
		}
		if (nheld == MAX_HELD)
			continue;
		h = &held[nheld];
		h->kind = (uint8_t)(tu_rand(&rng) % 3);
		h->size = h->kind == M_POOL ? 200 : h->kind == M_CACHE ? 96
			: 1 + tu_rand(&rng) % (r % 4 ? 256 : SP_KMALLOC_MAX);
		h->seq = ++seq;
		c = mkind_cache(s, su, h->kind, h->size);
		if ((rc = malloc_mag(s, su, set[t], c, &h->off)))
			break;
		fill(sp_ptr(s, h->off), h->size, s->owner, h->seq, h->off);
		nheld++;
		rep->ops[su->idx]++;
	}
	while (nheld && !rc) {
		struct held *x = &held[--nheld];
		struct sp_cache *c = mkind_cache(s, su, x->kind, x->size);

		rc = mverify(s, su, c, x, s->owner, "freeing");
		if (!rc)
			rc = mfree(s, su, set[0], c, x->off);
	}
	if (rc || su->idx % 2)
		return rc; /* no goodbye: the parent releases the slot, sets and all */
	sp_magset_destroy(s, set[0]);
	sp_magset_destroy(s, set[1]);
	if (sp_client_unregister(s, s->slot)) {
		child_fail(su->idx, "child %d: unregister: %s", su->idx, sp_errmsg());
		return 12;
	}
	sp_seg_detach(s);
	return 0;
}

static void stress_magazines(void **state)
{
	struct sp_pool_params pp = { .elem_size = 200, .min_nr = 16, .backing = SP_BACK_SLAB };
	long procs = tu_env_long("SHMPOOL_STRESS_PROCS", 4);
	int status[MAX_PROCS], alive, checks = 0;
	uint64_t kmalloc_before = 0, kmalloc_after = 0, t0 = sp_now_ms(), na, nf;
	struct sp_seg_params sp;
	struct sp_pool *p;
	struct sp_cache *c;
	struct msetup su;
	struct sp_seg *s;
	pid_t pids[MAX_PROCS];

	memset(&su, 0, sizeof(su));
	su.iter = tu_env_long("SHMPOOL_STRESS_ITER", 20000);
	su.seed = (uint64_t)tu_env_long("SHMPOOL_STRESS_SEED", 1);
	if (procs < 1 || procs > MAX_PROCS)
		fail_msg("SHMPOOL_STRESS_PROCS must be 1..%d", MAX_PROCS);
	printf("stress_magazines: %ld processes x %ld operations, seed %llu\n", procs, su.iter,
	       (unsigned long long)su.seed);
	rep = mmap(NULL, sizeof(*rep), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	mbox = mmap(NULL, sizeof(*mbox), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(rep != MAP_FAILED && mbox != MAP_FAILED);
	memset(rep, 0, sizeof(*rep));
	memset(mbox, 0, sizeof(*mbox));

	sp_seg_params_default(&sp);
	sp.size = 64u << 20;
	sp.max_clients = 64;
	sp.max_caches = 16;
	sp.max_pools = 16;
	s = tu_seg_new_params(&sp);
	s->lock_timeout_ms = 20000;
	snprintf(su.name, sizeof(su.name), "%s", s->name);
	snprintf(seg_name, sizeof(seg_name), "%s", s->name);
	TU_ASSERT_OK(sp_pool_create(s, "mstress.pool", &pp, &su.pool));
	TU_ASSERT_OK(sp_cache_create(s, "mstress.cache", 96, 0, 0, NULL, &su.cache));
	p = sp_pool_get(s, su.pool);
	c = sp_cache_get(s, su.cache);
	for (uint32_t i = 0; i < s->geo.nr_kmalloc; i++)
		kmalloc_before += sp_caches(s)[i].active_objs;

	for (long i = 0; i < procs; i++) {
		su.idx = (int)i;
		pids[i] = running[i] = tu_fork(mag_child_main, &su);
		status[i] = -1;
	}
	do { /* the locking checker while they run */
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		int n;

		nanosleep(&ts, NULL);
		alive = 0;
		for (long i = 0; i < procs; i++) {
			int st;

			if (status[i] >= 0)
				continue;
			if (waitpid(pids[i], &st, WNOHANG) == pids[i]) {
				status[i] = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
				running[i] = 0;
			} else {
				alive++;
			}
		}
		if (!alive)
			break;
		n = tu_check_count(s, 0);
		checks++;
		if (n || sp_now_ms() - t0 > 240000) {
			for (long i = 0; i < procs; i++)
				if (status[i] < 0)
					kill(pids[i], SIGKILL);
			if (n)
				fail_msg("checker found %d violation(s) during the run", n);
			fail_msg("children still running after 240 s (deadlock?)");
		}
	} while (alive);
	for (long i = 0; i < procs; i++) {
		if (rep->msg[i][0])
			printf("  %s\n", rep->msg[i]);
		if (status[i] != 0)
			fail_msg("child %ld exited with status %d", i, status[i]);
	}
	assert_int_equal(rep->failed, 0);
	tu_check_clean(s);

	/* what is left in the mailboxes is held by whoever put it there */
	for (int k = 0; k < 2; k++) {
		for (int i = 0; i < NBOX; i++) {
			sp_off_t off = mbox->box[k][i];
			uint64_t w0;

			if (!off)
				continue;
			memcpy(&w0, sp_ptr(s, off), 8);
			if (verify(sp_ptr(s, off), k == M_POOL ? 200 : 96, (uint16_t)(w0 >> 48),
				   (uint32_t)w0, off) >= 0)
				fail_msg("mailbox object %#llx overwritten", (unsigned long long)off);
			TU_ASSERT_OK(k == M_POOL ? sp_pool_free(s, p, off) : sp_cache_free(s, c, off));
		}
	}
	/* those without a goodbye; those with one but whose objects were in a
	 * mailbox are DEAD already */
	assert_int_equal(sp_client_reap(s), (int)(procs / 2));
	for (uint32_t i = 0; i < s->geo.max_clients; i++) {
		struct sp_holdings h;
		long k;

		if (sp_clients(s)[i].state != SP_CLIENT_DEAD)
			continue;
		for (k = 0; k < procs && (uint32_t)pids[k] != sp_clients(s)[i].pid; k++)
			;
		assert_true(k < procs);
		TU_ASSERT_OK(sp_slot_release(s, i, false, &h));
		assert_int_equal(h.objects, 0); /* everything was freed ... */
		assert_int_equal(h.magsets, k % 2 ? 2 : 0); /* ... into two threads' magazines */
		assert_true(k % 2 ? h.cached > 0 : h.cached == 0);
	}
	for (uint32_t i = 0; i < s->geo.max_clients; i++)
		if (i != s->slot)
			assert_int_equal(sp_clients(s)[i].state, SP_CLIENT_FREE);
	TU_ASSERT_OK(sp_pool_lock(s, p));
	sp_pool_unlock(p);
	assert_int_equal(p->curr_nr, p->min_nr);
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	assert_int_equal(sp_caches(s)[p->cache_id].active_objs, p->curr_nr);
	assert_int_equal(c->active_objs, 0);
	sp_pool_counters(s, p, &na, &nf);
	assert_int_equal(na - nf, 0);
	sp_cache_counters(s, c, &na, &nf);
	assert_int_equal(na - nf, 0);
	for (uint32_t i = 0; i < s->geo.nr_kmalloc; i++) {
		kmalloc_after += sp_caches(s)[i].active_objs;
		assert_int_equal(sp_mag_cached(s, i), 0);
	}
	assert_int_equal(kmalloc_after, kmalloc_before);
	tu_check_clean(s);
	printf("stress_magazines: %d locked checks during the run, %llu ms\n", checks,
	       (unsigned long long)(sp_now_ms() - t0));
	munmap(rep, sizeof(*rep));
	munmap(mbox, sizeof(*mbox));
	rep = NULL;
	seg_name[0] = '\0';
	tu_seg_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(stress, stress_teardown),
		cmocka_unit_test_teardown(stress_magazines, stress_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
