/* SPDX-License-Identifier: MIT */
/*
 * test-corrupt.c - the segment's contents are untrusted input.
 *
 * A healthy populated segment (pools with partly drained reserves, named
 * caches, kmalloc objects and large blocks, raw pages, a dead client slot
 * still holding memory, tombstones in the name tables) is copied into fresh
 * memfds and corrupted:
 *   (a) random byte flips in every metadata region (client, cache and pool
 *       tables, name hashes, page metadata, slab headers and bitmaps, the
 *       buddy zone and the rest of the header's mutable part, reserve
 *       arrays): the checker on a read-only attach (SP_CHECK_NOLOCK) must
 *       return, in a forked child under alarm(), without crashing or
 *       hanging; and a set of targeted corruptions of structures it verifies
 *       must each yield at least one violation.  The read-only mapping
 *       ends at a PROT_NONE page, so reading past the segment faults; one
 *       case puts a slab whose objects fill it exactly on the last page and
 *       gives its cache a red zone it has no room for;
 *   (b) any flip in the header geometry makes sp_seg_attach() fail with
 *       -EBADMSG or -EPROTONOSUPPORT and a message, and so does an impossible
 *       geometry carrying a valid checksum;
 *   (c) a writable attach of a copy with flipped slab, list and reserve
 *       metadata, followed by locked operations (alloc, free, shrink,
 *       release, the locking checker), must not crash or hang either; where
 *       only derived metadata (lists, counters, hints) was flipped, nothing
 *       may be handed out twice: the memory allocated before the corruption
 *       and what the child allocates afterwards must not overlap.
 *   (f) every geometry field of a cache descriptor (order, objperslab, bitmap
 *       and owner offsets, stride, its reciprocal, colours, sizes) scribbled
 *       to 0, the largest value, one past the slab and off by one, in caches
 *       holding objects of a live and a dead slot: the checker reports it,
 *       and the views, holdings, recovery after a lock owner's death, the
 *       pool paths, the registry's sweep and the release of the dead slot
 *       neither crash nor hang, nor free the cache's slabs or the dead slot.
 *   (g) the same geometry fields, and the colour, hint and list of one slab,
 *       rewritten between healthy and bad values by a scribbler process in a
 *       tight loop while the checker and those daemon paths run over and
 *       over (a time-of-check/time-of-use race): no crash, no hang.
 * SHMPOOL_CORRUPT_ROUNDS (default 500) and SHMPOOL_CORRUPT_SEED tune (a)
 * and (c).
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-util.h"

#define MAX_ORIG 256

/* What the children report through a shared page (which also carries the
 * victim's list of allocations to the parent). */
struct result {
	int attach_rc;
	int nviol;
	int bad; /* (c): 1 = own allocations overlap, 2 = older allocations overwritten */
	int guarded; /* (a): the mapping ended at a PROT_NONE page */
	char msg[240];
};

#define SHARED_SIZE 8192

/* A populated segment and what lives in it. */
struct world {
	struct sp_seg *s;
	uint32_t pool_slab, pool_pages, pool_big, cache, tcache;
	uint32_t victim_slot;
	/* every allocation made before the corruption, stamped by its offset */
	sp_off_t orig[MAX_ORIG];
	uint64_t orig_len[MAX_ORIG];
	uint32_t norig;
};

struct victim_out {
	sp_off_t off[64];
	uint64_t len[64];
	uint32_t n;
};

static void *shared_page; /* MAP_SHARED: struct result, or a struct victim_out */
static struct result *res;
static char current_seg[256];

/* ---- stamps keyed by the allocation's offset (any process can verify) ---- */

/* Byte @i of the allocation at @off: overlapping allocations differ. */
static uint8_t ostamp(sp_off_t off, uint64_t i)
{
	uint64_t x = ((off + 1) * 0x9e3779b97f4a7c15ULL) ^ ((i + 1) * 0xff51afd7ed558ccdULL);

	return (uint8_t)((x ^ (x >> 29)) >> 48);
}

static void ofill(uint8_t *base, sp_off_t off, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		base[off + i] = ostamp(off, i);
}

static bool ocheck(const uint8_t *base, sp_off_t off, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		if (base[off + i] != ostamp(off, i))
			return false;
	return true;
}

/* ---- the healthy segment ------------------------------------------------- */

static void orig_add(struct world *w, sp_off_t off, uint64_t len)
{
	assert_true(w->norig < MAX_ORIG);
	w->orig[w->norig] = off;
	w->orig_len[w->norig++] = len;
	ofill(w->s->base, off, len);
}

static void orig_del(struct world *w, uint32_t i)
{
	w->orig[i] = w->orig[--w->norig];
	w->orig_len[i] = w->orig_len[w->norig];
}

static void victim_keep(struct victim_out *v, int rc, const sp_off_t *off, uint64_t len)
{
	if (rc == 0 && v->n < 64) {
		v->off[v->n] = *off;
		v->len[v->n++] = len;
	}
}

/* A client that allocates from everything and dies holding it. */
static int victim_main(void *arg)
{
	struct world *w = arg;
	struct victim_out *v = shared_page;
	struct sp_seg *s = NULL;
	uint32_t slot;
	sp_off_t off;
	int rc;

	tu_child_signals_default();
	if (sp_seg_attach(w->s->name, -1, 0, &s) ||
	    sp_client_register(s, "victim", getpid(), getuid(), getgid(), &slot) ||
	    sp_client_use_slot(s, slot))
		return 10;
	for (int i = 0; i < 6; i++) {
		uint64_t len = 16 + 700 * (uint64_t)i;

		rc = sp_kmalloc(s, len, &off);
		victim_keep(v, rc, &off, len);
		rc = sp_cache_alloc(s, sp_cache_get(s, w->cache), s->owner, &off);
		victim_keep(v, rc, &off, 56);
	}
	for (int i = 0; i < 3; i++) {
		rc = sp_pool_alloc(s, sp_pool_get(s, w->pool_slab), SP_ALLOC_NOWAIT, 0, &off);
		victim_keep(v, rc, &off, 128);
		rc = sp_pool_alloc(s, sp_pool_get(s, w->pool_pages), SP_ALLOC_NOWAIT, 0, &off);
		victim_keep(v, rc, &off, 4096);
	}
	rc = sp_kmalloc(s, 12000, &off);
	victim_keep(v, rc, &off, 12000);
	for (uint32_t i = 0; i < v->n; i++)
		ofill(s->base, v->off[i], v->len[i]);
	return v->n == 19 ? 0 : 11; /* and exits holding all of it */
}

static void world_new(struct world *w)
{
	struct sp_seg_params sp;
	struct sp_pool_params slab = { .elem_size = 128, .min_nr = 6, .max_nr = 30,
				       .backing = SP_BACK_SLAB };
	struct sp_pool_params pages = { .elem_size = 4096, .min_nr = 4, .max_nr = 14,
					.backing = SP_BACK_PAGES };
	struct sp_pool_params big = { .elem_size = 300, .min_nr = 200, .backing = SP_BACK_SLAB };
	struct sp_pool_params tmp = { .elem_size = 64, .min_nr = 1 };
	struct victim_out v;
	sp_off_t off, extra[200];
	char tmpl[40];
	uint32_t id, n;
	pid_t pid;

	memset(w, 0, sizeof(*w));
	sp_seg_params_default(&sp);
	sp.size = 3u << 20;
	sp.max_clients = 8;
	sp.max_caches = 8;
	sp.max_pools = 8;
	w->s = tu_seg_new_params(&sp);
	snprintf(current_seg, sizeof(current_seg), "%s", w->s->name);
	memset(tmpl, 0x42, sizeof(tmpl));
	TU_ASSERT_OK(sp_pool_create(w->s, "k.slab", &slab, &w->pool_slab));
	TU_ASSERT_OK(sp_pool_create(w->s, "k.pages", &pages, &w->pool_pages));
	TU_ASSERT_OK(sp_pool_create(w->s, "k.big", &big, &w->pool_big)); /* a large reserve */
	TU_ASSERT_OK(sp_cache_create(w->s, "k.cache", 56, 0, SP_CACHE_POISON | SP_CACHE_REDZONE,
				     NULL, &w->cache));
	TU_ASSERT_OK(sp_cache_create(w->s, "k.tmpl", sizeof(tmpl), 0, 0, tmpl, &w->tcache));
	/* tombstones in both name tables */
	TU_ASSERT_OK(sp_pool_create(w->s, "k.gone", &tmp, &id));
	TU_ASSERT_OK(sp_pool_destroy(w->s, id));
	TU_ASSERT_OK(sp_cache_create(w->s, "k.gone", 24, 0, 0, NULL, &id));
	TU_ASSERT_OK(sp_cache_destroy(w->s, id));

	/* k.cache: two slabs' worth freed again leaves an empty slab in stock */
	n = 2 * sp_cache_get(w->s, w->cache)->objperslab;
	assert_true(n <= 200);
	for (uint32_t i = 0; i < n; i++)
		TU_ASSERT_OK(sp_cache_alloc(w->s, sp_cache_get(w->s, w->cache), w->s->owner,
					    &extra[i]));
	for (int i = 0; i < 40; i++) {
		TU_ASSERT_OK(sp_kmalloc(w->s, 1 + (uint64_t)i * 97 % 8192, &off));
		orig_add(w, off, 1 + (uint64_t)i * 97 % 8192);
	}
	for (int i = 0; i < 30; i++) {
		TU_ASSERT_OK(sp_cache_alloc(w->s, sp_cache_get(w->s, w->cache), w->s->owner, &off));
		orig_add(w, off, 56);
		TU_ASSERT_OK(sp_cache_alloc(w->s, sp_cache_get(w->s, w->tcache), w->s->owner, &off));
		orig_add(w, off, sizeof(tmpl));
	}
	for (uint32_t i = 0; i < n; i++)
		TU_ASSERT_OK(sp_cache_free(w->s, sp_cache_get(w->s, w->cache), extra[i]));
	/* drain the capped pools into their reserves */
	for (int i = 0; i < 25; i++) {
		TU_ASSERT_OK(sp_pool_alloc(w->s, sp_pool_get(w->s, w->pool_slab), 0, 0, &off));
		orig_add(w, off, 128);
	}
	for (int i = 0; i < 8; i++) {
		TU_ASSERT_OK(sp_pool_alloc(w->s, sp_pool_get(w->s, w->pool_pages), 0, 0, &off));
		orig_add(w, off, 4096);
	}
	TU_ASSERT_OK(sp_kmalloc(w->s, 20000, &off));
	orig_add(w, off, 20000);
	TU_ASSERT_OK(sp_buddy_alloc(w->s, 1, &off));
	orig_add(w, off, 2 * SP_PAGE_SIZE);
	/* single free pages between allocated ones: buddy lists longer than 1 */
	for (int i = 0; i < 12; i++)
		TU_ASSERT_OK(sp_buddy_alloc(w->s, 0, &extra[i]));
	for (int i = 0; i < 12; i++) {
		if (i % 2)
			orig_add(w, extra[i], SP_PAGE_SIZE);
		else
			TU_ASSERT_OK(sp_buddy_free(w->s, extra[i]));
	}
	/* free some kmalloc objects, so that slabs are partial and lists mixed */
	for (uint32_t i = 0; i < w->norig; i += 4) {
		uint32_t pfn = 0, head = 0;

		assert_true(sp_off_pfn(w->s, w->orig[i], &pfn));
		TU_ASSERT_OK(sp_block_head(w->s, pfn, &head));
		if (SP_PG_KIND(w->s->pages[head].info) == SP_KIND_SLAB &&
		    w->s->pages[head].owner < w->s->hdr->nr_kmalloc) {
			TU_ASSERT_OK(sp_kfree(w->s, w->orig[i]));
			orig_del(w, i);
		}
	}
	/* a dead client that still holds memory */
	memset(shared_page, 0, SHARED_SIZE);
	pid = tu_fork(victim_main, w);
	assert_int_equal(tu_wait(pid), 0);
	memcpy(&v, shared_page, sizeof(v));
	memset(shared_page, 0, SHARED_SIZE);
	for (uint32_t i = 0; i < v.n; i++) {
		assert_true(w->norig < MAX_ORIG);
		w->orig[w->norig] = v.off[i];
		w->orig_len[w->norig++] = v.len[i];
	}
	assert_int_equal(sp_client_reap(w->s), 1);
	for (w->victim_slot = 0; w->victim_slot < w->s->hdr->max_clients; w->victim_slot++)
		if (sp_clients(w->s)[w->victim_slot].state == SP_CLIENT_DEAD)
			break;
	assert_true(w->victim_slot < w->s->hdr->max_clients);
	for (uint32_t i = 0; i < w->norig; i++)
		assert_true(ocheck(w->s->base, w->orig[i], w->orig_len[i]));
	assert_true(sp_pool_get(w->s, w->pool_slab)->curr_nr < 6);
	tu_check_clean(w->s);
}

static void world_free(struct world *w)
{
	current_seg[0] = '\0';
	tu_seg_free(w->s);
}

static int unlink_leftover(void **state)
{
	if (current_seg[0])
		shm_unlink(current_seg);
	current_seg[0] = '\0';
	return 0;
}

static int setup_shared(void **state)
{
	shared_page = mmap(NULL, SHARED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			   -1, 0);
	if (shared_page == MAP_FAILED)
		return -1;
	res = shared_page;
	return 0;
}

static int teardown_shared(void **state)
{
	munmap(shared_page, SHARED_SIZE);
	return 0;
}

/* ---- copies -------------------------------------------------------------- */

struct copy {
	int fd;
	uint8_t *map;
	uint64_t size;
};

static void copy_new(struct copy *c, const struct sp_seg *s)
{
	c->size = s->size;
	c->fd = memfd_create("shmpool-corrupt", MFD_CLOEXEC);
	assert_true(c->fd >= 0);
	assert_int_equal(ftruncate(c->fd, (off_t)c->size), 0);
	c->map = mmap(NULL, c->size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	assert_true(c->map != MAP_FAILED);
	memcpy(c->map, s->base, c->size);
}

static void copy_free(struct copy *c)
{
	munmap(c->map, c->size);
	close(c->fd);
}

/* Offset of a field inside the copy, from its address in the healthy segment. */
#define AT(w, ptr) ((uint64_t)((const uint8_t *)(ptr) - (w)->s->base))

/* ---- (a) the checker on a read-only attach ------------------------------- */

static int check_child(void *arg)
{
	struct copy *c = arg;
	struct sp_report r = { .cap = 2 };
	struct sp_seg *ro = NULL;
	int rc;

	tu_child_signals_default();
	uint8_t *hole;

	alarm(10);
	r.v = calloc(r.cap, sizeof(*r.v));
	/* leave a hole of exactly the segment's size just below a PROT_NONE
	 * page, so that the mapping lands there and a read past its end faults */
	hole = mmap(NULL, c->size + SP_PAGE_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (hole != MAP_FAILED)
		munmap(hole, c->size);
	rc = sp_seg_attach(NULL, dup(c->fd), SP_ATTACH_RDONLY, &ro);
	res->attach_rc = rc;
	if (rc) {
		snprintf(res->msg, sizeof(res->msg), "%s", sp_errmsg());
		return 0;
	}
	res->guarded = hole != MAP_FAILED && ro->base == hole;
	res->nviol = sp_check(ro, SP_CHECK_NOLOCK, &r);
	snprintf(res->msg, sizeof(res->msg), "%s", r.nr && r.v ? r.v[0].what : "");
	sp_report_free(&r);
	sp_seg_detach(ro);
	return 0;
}

/* Run the read-only checker on @c in a child; return its violation count. */
static int checked_violations(struct copy *c, const char *what)
{
	pid_t pid;
	int st;

	memset(res, 0, sizeof(*res));
	res->nviol = -1;
	pid = tu_fork(check_child, c);
	st = tu_wait(pid);
	if (st == 128 + SIGALRM)
		fail_msg("%s: the checker hung (no answer in 10 s)", what);
	if (st)
		fail_msg("%s: the checker crashed (status %d%s)", what, st,
			 st > 128 ? ", a signal" : "");
	if (res->attach_rc)
		fail_msg("%s: read-only attach failed: %s", what, res->msg);
	return res->nviol;
}

enum rtype { R_CLIENTS, R_CACHES, R_POOLS, R_HASHES, R_PAGES, R_SLABS, R_HEADER, R_RESERVE,
	     R_NTYPES };
static const char *const rtype_name[R_NTYPES] = {
	"client table", "cache table", "pool table",	      "name hashes",
	"page metadata", "slab headers", "header mutable part", "reserve arrays",
};

struct region {
	uint64_t off, len;
	enum rtype type;
};

#define MAX_REGIONS 512

static uint32_t regions_of(struct world *w, struct region *r)
{
	struct sp_seg *s = w->s;
	struct sp_header *h = s->hdr;
	uint32_t n = 0;

#define ADD(t, o, l)                                 \
	do {                                         \
		if (n < MAX_REGIONS && (l) != 0) {   \
			r[n].off = (o);              \
			r[n].len = (l);              \
			r[n++].type = (t);           \
		}                                    \
	} while (0)
	ADD(R_CLIENTS, h->clients.off, h->clients.size);
	ADD(R_CACHES, h->caches.off, h->caches.size);
	for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++) /* the used ones, more often */
		if (sp_caches(s)[i].state != SP_DESC_FREE)
			ADD(R_CACHES, AT(w, &sp_caches(s)[i]), sizeof(struct sp_cache));
	ADD(R_POOLS, h->pools.off, h->pools.size);
	for (uint32_t i = 0; i < h->max_pools; i++)
		if (sp_pools(s)[i].state != SP_DESC_FREE)
			ADD(R_POOLS, AT(w, &sp_pools(s)[i]), sizeof(struct sp_pool));
	ADD(R_HASHES, h->chash.off, h->chash.size);
	ADD(R_HASHES, h->phash.off, h->phash.size);
	ADD(R_PAGES, h->pages.off, h->pages.size);
	for (uint32_t pfn = 0; pfn < h->nr_pages;) {
		uint32_t info = s->pages[pfn].info;

		if (SP_PG_STATE(info) == SP_PG_ALLOC && SP_PG_KIND(info) == SP_KIND_SLAB)
			ADD(R_SLABS, sp_pfn_off(s, pfn),
			    sp_caches(s)[s->pages[pfn].owner].obj_start);
		pfn += 1u << SP_PG_ORDER(info);
	}
	ADD(R_HEADER, offsetof(struct sp_header, buddy), sizeof(struct sp_buddy));
	ADD(R_HEADER, offsetof(struct sp_header, registry_lock),
	    sizeof(struct sp_header) - offsetof(struct sp_header, registry_lock));
	for (uint32_t i = 0; i < h->max_pools; i++)
		if (sp_pools(s)[i].state == SP_DESC_LIVE)
			ADD(R_RESERVE, sp_pools(s)[i].elements_off,
			    (uint64_t)sp_pools(s)[i].elements_cap * 8);
#undef ADD
	return n;
}

static void random_flips_readonly(void **state)
{
	struct world w;
	struct copy c;
	struct region reg[MAX_REGIONS];
	uint32_t nreg, of_type[R_NTYPES][MAX_REGIONS], ntype[R_NTYPES] = { 0 };
	long rounds = tu_env_long("SHMPOOL_CORRUPT_ROUNDS", 500);
	uint64_t rng = (uint64_t)tu_env_long("SHMPOOL_CORRUPT_SEED", 1) * 2654435761u + 7;
	unsigned hits[R_NTYPES] = { 0 }, flagged[R_NTYPES] = { 0 };

	world_new(&w);
	nreg = regions_of(&w, reg);
	for (uint32_t i = 0; i < nreg; i++)
		of_type[reg[i].type][ntype[reg[i].type]++] = i;
	for (int t = 0; t < R_NTYPES; t++)
		assert_true(ntype[t] > 0);
	copy_new(&c, w.s);
	assert_int_equal(checked_violations(&c, "healthy copy"), 0);
	for (long round = 0; round < rounds; round++) {
		uint64_t where[4];
		uint8_t saved[4];
		uint32_t nflip = 1 + (uint32_t)(tu_rand(&rng) % 3), k;
		enum rtype type = (enum rtype)(tu_rand(&rng) % R_NTYPES);
		struct region *r = &reg[of_type[type][tu_rand(&rng) % ntype[type]]];
		char what[160];
		int n;

		for (k = 0; k < nflip; k++) {
			where[k] = r->off + tu_rand(&rng) % r->len;
			saved[k] = c.map[where[k]];
			c.map[where[k]] ^= (uint8_t)(1 + tu_rand(&rng) % 255);
		}
		snprintf(what, sizeof(what), "round %ld: %u byte(s) flipped in the %s at %#llx",
			 round, nflip, rtype_name[type], (unsigned long long)where[0]);
		n = checked_violations(&c, what);
		hits[type]++;
		flagged[type] += n > 0;
		while (k--) /* the checker only read the copy: restore it */
			c.map[where[k]] = saved[k];
	}
	for (int t = 0; t < R_NTYPES; t++)
		printf("  %-20s %4u rounds, %4u with violations reported\n", rtype_name[t], hits[t],
		       flagged[t]);
	assert_int_equal(checked_violations(&c, "restored copy"), 0);
	copy_free(&c);
	world_free(&w);
}

/* ---- (a) targeted corruptions: each must be reported -------------------- */

/* The first valid slab of cache @id with some allocated and some free objects. */
static uint32_t mixed_slab(struct world *w, uint32_t id)
{
	struct sp_seg *s = w->s;
	struct sp_cache *c = &sp_caches(s)[id];

	for (uint32_t pfn = 0; pfn < s->hdr->nr_pages;) {
		uint32_t o = SP_PG_ORDER(s->pages[pfn].info);

		if (sp_slab_valid(s, c, pfn)) {
			struct sp_slab *slab = sp_slab_at(s, c, pfn);

			if (slab->inuse && slab->inuse < c->objperslab)
				return pfn;
		}
		pfn += 1u << o;
	}
	fail_msg("cache %s has no partially used slab", c->name);
	return 0;
}

static uint32_t first_head(struct world *w, uint32_t state, uint32_t kind, unsigned min_order)
{
	struct sp_seg *s = w->s;

	for (uint32_t pfn = 0; pfn < s->hdr->nr_pages;) {
		uint32_t info = s->pages[pfn].info;

		if (SP_PG_STATE(info) == state && (state == SP_PG_FREE || SP_PG_KIND(info) == kind) &&
		    SP_PG_ORDER(info) >= min_order)
			return pfn;
		pfn += 1u << SP_PG_ORDER(info);
	}
	fail_msg("no block with state %u kind %u order >= %u", state, kind, min_order);
	return 0;
}

static void put32(struct copy *c, uint64_t off, uint32_t v)
{
	memcpy(c->map + off, &v, 4);
}

static void put64(struct copy *c, uint64_t off, uint64_t v)
{
	memcpy(c->map + off, &v, 8);
}

static void targeted_readonly(void **state)
{
	struct world w;
	struct copy c;
	struct sp_seg *s;
	struct sp_buddy *z;
	struct sp_slab *slab;
	struct sp_pool *ps, *pp;
	struct sp_cache *kc;
	uint32_t pfn, o, idx, size, *t;
	sp_off_t *el;
	int n, cases = 0;

	world_new(&w);
	s = w.s;
	z = &s->hdr->buddy;
	ps = sp_pool_get(s, w.pool_slab);
	pp = sp_pool_get(s, w.pool_pages);
	kc = sp_cache_get(s, w.cache);
	copy_new(&c, s);

#define EXPECT_REPORTED(what)                                                           \
	do {                                                                            \
		n = checked_violations(&c, what);                                       \
		if (n < 1)                                                              \
			fail_msg("%s: the checker found nothing", what);                 \
		printf("  %-34s %3d violation(s), first: %s\n", what, n, res->msg);     \
		memcpy(c.map, s->base, c.size);                                         \
		cases++;                                                                \
	} while (0)

	/* buddy: a free-list link to an allocated block */
	for (o = 0; o <= z->max_order && z->nr_free[o] < 2; o++)
		;
	assert_true(o <= z->max_order);
	put32(&c, AT(&w, &s->pages[z->free_head[o] - 1].next),
	      first_head(&w, SP_PG_ALLOC, SP_KIND_SLAB, 0) + 1);
	EXPECT_REPORTED("buddy free-list link");
	/* buddy: a free-list link cut short */
	put32(&c, AT(&w, &s->pages[z->free_head[o] - 1].next), 0);
	EXPECT_REPORTED("buddy free-list cut");
	/* buddy: a counter */
	put32(&c, AT(&w, &z->nr_free[o]), z->nr_free[o] + 1);
	EXPECT_REPORTED("buddy nr_free counter");
	put64(&c, AT(&w, &z->free_pages), z->free_pages - 1);
	EXPECT_REPORTED("buddy free_pages counter");

	/* a slab bitmap bit: a free object marked allocated, and the reverse */
	pfn = mixed_slab(&w, w.cache);
	slab = sp_slab_at(s, kc, pfn);
	for (idx = 0; idx < kc->objperslab && (slab->bitmap[idx / 64] >> (idx % 64) & 1); idx++)
		;
	put64(&c, AT(&w, &slab->bitmap[idx / 64]), slab->bitmap[idx / 64] | 1ull << (idx % 64));
	EXPECT_REPORTED("slab bitmap bit set");
	for (idx = 0; idx < kc->objperslab && !(slab->bitmap[idx / 64] >> (idx % 64) & 1); idx++)
		;
	put64(&c, AT(&w, &slab->bitmap[idx / 64]), slab->bitmap[idx / 64] & ~(1ull << (idx % 64)));
	EXPECT_REPORTED("slab bitmap bit cleared");
	/* a slab's inuse count, list and magic */
	put32(&c, AT(&w, &slab->inuse), slab->inuse + 1);
	EXPECT_REPORTED("slab inuse count");
	put32(&c, AT(&w, &slab->list), SP_LIST_FULL);
	EXPECT_REPORTED("slab list field");
	put32(&c, AT(&w, &slab->magic), slab->magic ^ 0x100);
	EXPECT_REPORTED("slab magic");
	/* an owner tag of an allocated object */
	for (idx = 0; idx < kc->objperslab && !(slab->bitmap[idx / 64] >> (idx % 64) & 1); idx++)
		;
	c.map[AT(&w, &sp_slab_owners(kc, slab)[idx])] = 0x77;
	c.map[AT(&w, &sp_slab_owners(kc, slab)[idx]) + 1] = 0x77;
	EXPECT_REPORTED("object owner tag");
	/* a cache's list head and counters */
	put32(&c, AT(&w, &kc->list_head[SP_LIST_PARTIAL]), first_head(&w, SP_PG_FREE, 0, 0) + 1);
	EXPECT_REPORTED("cache list head");
	put64(&c, AT(&w, &kc->active_objs), kc->active_objs + 3);
	EXPECT_REPORTED("cache active_objs");

	/* page info words: a head's order, a tail, an allocated block's kind */
	pfn = first_head(&w, SP_PG_ALLOC, SP_KIND_LARGE, 1);
	put32(&c, AT(&w, &s->pages[pfn].info), s->pages[pfn].info ^ (1u << 8));
	EXPECT_REPORTED("page info (head order)");
	put32(&c, AT(&w, &s->pages[pfn + 1].info), SP_PG_INFO(SP_PG_FREE, 0, 0));
	EXPECT_REPORTED("page info (tail)");
	put32(&c, AT(&w, &s->pages[pfn].info), SP_PG_INFO(SP_PG_ALLOC, SP_PG_ORDER(s->pages[pfn].info),
						    9));
	EXPECT_REPORTED("page info (kind)");
	put32(&c, AT(&w, &s->pages[pfn].slot), 0);
	EXPECT_REPORTED("large block owner tag");

	/* pools: curr_nr, a reserve entry, the reserve array, a page element's tag */
	assert_true(pp->curr_nr >= 2);
	put32(&c, AT(&w, &pp->curr_nr), pp->curr_nr - 1);
	EXPECT_REPORTED("pool curr_nr lowered");
	put32(&c, AT(&w, &pp->curr_nr), pp->min_nr + 1);
	EXPECT_REPORTED("pool curr_nr above min_nr");
	el = sp_ptr(s, pp->elements_off);
	put64(&c, AT(&w, &el[0]), el[1]);
	EXPECT_REPORTED("pool reserve entry duplicated");
	put64(&c, AT(&w, &el[0]), el[0] + 64);
	EXPECT_REPORTED("pool reserve entry moved");
	el = sp_ptr(s, sp_pool_get(s, w.pool_big)->elements_off);
	put64(&c, AT(&w, &el[7]), el[7] + 1);
	EXPECT_REPORTED("slab pool reserve entry");
	put64(&c, AT(&w, &ps->elements_off), s->size - 8);
	EXPECT_REPORTED("pool elements_off");
	if (!sp_off_pfn(s, el[3], &pfn) || sp_block_head(s, pfn, &pfn))
		fail_msg("reserve element outside the data area");
	{
		struct sp_cache *bc = &sp_caches(s)[sp_pool_get(s, w.pool_big)->cache_id];
		struct sp_slab *bs;

		TU_ASSERT_OK(sp_cache_obj_locate(s, bc, el[3], &bs, &idx));
		c.map[AT(&w, &sp_slab_owners(bc, bs)[idx])] = 1;
		c.map[AT(&w, &sp_slab_owners(bc, bs)[idx]) + 1] = 0;
		EXPECT_REPORTED("reserve element retagged");
	}

	/* the registry: a pool's and a cache's name entry lost, a stray entry */
	t = (uint32_t *)(s->base + s->hdr->phash.off);
	size = s->hdr->phash_size;
	for (idx = 0; idx < size && t[idx] != w.pool_pages + 1; idx++)
		;
	assert_true(idx < size);
	put32(&c, AT(&w, &t[idx]), 0);
	EXPECT_REPORTED("registry pool hash entry");
	t = (uint32_t *)(s->base + s->hdr->chash.off);
	size = s->hdr->chash_size;
	for (idx = 0; idx < size && t[idx] != w.tcache + 1; idx++)
		;
	assert_true(idx < size);
	put32(&c, AT(&w, &t[idx]), 0xffffffffu);
	EXPECT_REPORTED("registry cache hash entry");
	for (idx = 0; idx < size && t[idx]; idx++)
		;
	put32(&c, AT(&w, &t[idx]), s->hdr->nr_kmalloc + 7);
	EXPECT_REPORTED("registry stray hash entry");

	/* clients: a dead slot's state lost or impossible, a live slot's pid */
	put32(&c, AT(&w, &sp_clients(s)[w.victim_slot].state), SP_CLIENT_FREE);
	EXPECT_REPORTED("client state (holder freed)");
	put32(&c, AT(&w, &sp_clients(s)[w.victim_slot].state), 9);
	EXPECT_REPORTED("client state (impossible)");
	put32(&c, AT(&w, &sp_clients(s)[s->slot].pid), 0);
	EXPECT_REPORTED("client pid");
#undef EXPECT_REPORTED
	printf("  %d targeted corruptions, every one reported\n", cases);
	copy_free(&c);
	world_free(&w);
}

/*
 * A cache's flags gain REDZONE while its objects fill their slab exactly
 * (kmalloc-8: stride 8, no room for a red zone), and that slab is the last
 * page of a segment whose data area ends at the end of the file: checking
 * the red zones must not read past the slab (past the mapping).
 */
static void redzone_flag_at_segment_end(void **state)
{
	struct sp_seg_params sp;
	struct sp_seg *s;
	struct copy c;
	sp_off_t *raw, off;
	uint64_t pages_off, n = 0, last;
	struct sp_cache *k8;
	int guard = 0;

	/* a size whose data area ends exactly at the end of the file */
	sp_seg_params_default(&sp);
	sp.size = 2u << 20;
	sp.max_clients = 8;
	sp.max_caches = 8;
	sp.max_pools = 8;
	s = tu_seg_new_params(&sp);
	pages_off = s->hdr->pages.off;
	tu_seg_free(s);
	/* 1024 pages: one max-order block, whose last page stays free the longest */
	sp.size = ((pages_off + 1024 * sizeof(struct sp_page) + SP_PAGE_SIZE - 1) &
		   ~(uint64_t)(SP_PAGE_SIZE - 1)) + 1024ull * SP_PAGE_SIZE;
	s = tu_seg_new_params(&sp);
	snprintf(current_seg, sizeof(current_seg), "%s", s->name);
	assert_int_equal(s->hdr->data.off + s->hdr->data.size, s->size);
	k8 = &sp_caches(s)[0];
	assert_int_equal(k8->obj_size, 8);
	assert_int_equal(k8->stride, 8);
	/* take every free page, give back only the last one, let kmalloc-8 grow into it */
	raw = calloc(s->hdr->nr_pages, sizeof(*raw));
	assert_non_null(raw);
	while (sp_buddy_alloc(s, 0, &raw[n]) == 0)
		n++;
	last = s->hdr->nr_pages - 1;
	for (uint64_t i = 0; i < n; i++) {
		if (raw[i] == sp_pfn_off(s, (uint32_t)last)) {
			TU_ASSERT_OK(sp_buddy_free(s, raw[i]));
			raw[i] = 0;
		}
	}
	while (SP_PG_KIND(s->pages[last].info) != SP_KIND_SLAB && guard++ < 4096)
		TU_ASSERT_OK(sp_kmalloc(s, 8, &off));
	assert_int_equal(s->pages[last].info, SP_PG_INFO(SP_PG_ALLOC, 0, SP_KIND_SLAB));
	assert_int_equal(s->pages[last].owner, 0);
	for (uint64_t i = 0; i < n; i++)
		if (raw[i])
			TU_ASSERT_OK(sp_buddy_free(s, raw[i]));
	free(raw);
	tu_check_clean(s);

	copy_new(&c, s);
	((struct sp_cache *)(c.map + s->hdr->caches.off))[0].flags |= SP_CACHE_REDZONE;
	printf("  %d violation(s), first: %s\n",
	       checked_violations(&c, "REDZONE on kmalloc-8 with a slab at the end"), res->msg);
	assert_true(res->guarded); /* else a read past the end could go unnoticed */
	copy_free(&c);
	current_seg[0] = '\0';
	tu_seg_free(s);
}

/* ---- (b) the header geometry --------------------------------------------- */

static void expect_refused(struct copy *c, const char *what)
{
	struct sp_seg *t = NULL;
	int rc = sp_seg_attach(NULL, dup(c->fd), SP_ATTACH_RDONLY, &t);

	if (rc == 0) {
		sp_seg_detach(t);
		fail_msg("%s: attach accepted a corrupted header", what);
	}
	if (rc != -EBADMSG && rc != -EPROTONOSUPPORT)
		fail_msg("%s: attach failed with %d (%s), not EBADMSG/EPROTONOSUPPORT", what, rc,
			 sp_strerror(rc));
	if (strlen(sp_errmsg()) < 10)
		fail_msg("%s: no message (\"%s\")", what, sp_errmsg());
	rc = sp_seg_attach(NULL, dup(c->fd), 0, &t);
	if (rc != -EBADMSG && rc != -EPROTONOSUPPORT)
		fail_msg("%s: writable attach returned %d", what, rc);
}

/* Set a header field in the copy and make the checksum valid again. */
static void forge(struct copy *c, size_t off, const void *v, size_t len)
{
	struct sp_header *h = (struct sp_header *)c->map;

	memcpy(c->map + off, v, len);
	h->geometry_sum = sp_geometry_sum(h);
}

static void header_geometry(void **state)
{
	struct world w;
	struct copy c;
	struct sp_header *h;
	struct sp_seg *t = NULL;
	size_t geo = offsetof(struct sp_header, geometry_sum) + sizeof(uint64_t);
	uint64_t rng = 12345;
	uint8_t saved[sizeof(struct sp_header)];
	char what[96];
	unsigned refused = 0;

	world_new(&w);
	copy_new(&c, w.s);
	h = (struct sp_header *)c.map;
	memcpy(saved, c.map, sizeof(saved));
	TU_ASSERT_OK(sp_seg_attach(NULL, dup(c.fd), SP_ATTACH_RDONLY, &t));
	sp_seg_detach(t);
	/* every byte of the geometry, each with a few different flips */
	for (size_t i = 0; i < geo; i++) {
		for (int k = 0; k < 3; k++) {
			c.map[i] ^= k == 0 ? 0x01 : k == 1 ? 0x80 : (uint8_t)(1 + tu_rand(&rng) % 255);
			snprintf(what, sizeof(what), "header byte %zu", i);
			expect_refused(&c, what);
			memcpy(c.map, saved, sizeof(saved));
			refused++;
		}
	}
	/* several bytes at once */
	for (int round = 0; round < 200; round++) {
		for (int k = 0; k < 4; k++)
			c.map[tu_rand(&rng) % geo] ^= (uint8_t)(1 + tu_rand(&rng) % 255);
		if (memcmp(c.map, saved, geo)) {
			expect_refused(&c, "several header bytes");
			refused++;
		}
		memcpy(c.map, saved, sizeof(saved));
	}
	/* impossible geometry under a valid checksum */
#define FORGE(field, value, label)                                        \
	do {                                                              \
		__typeof__(h->field) v_ = (value);                        \
		forge(&c, offsetof(struct sp_header, field), &v_, sizeof(v_)); \
		expect_refused(&c, label);                                \
		memcpy(c.map, saved, sizeof(saved));                      \
		refused++;                                                \
	} while (0)
	FORGE(max_order, SP_MAX_ORDER_LIMIT + 1, "max_order above the limit");
	FORGE(nr_pages, h->nr_pages + 1, "nr_pages without its regions");
	FORGE(nr_pages, h->nr_pages * 2, "nr_pages doubled");
	FORGE(nr_pages, 3, "nr_pages tiny");
	FORGE(max_clients, 0, "no client slots");
	FORGE(max_clients, SP_MAX_CLIENTS_LIMIT + 1, "too many client slots");
	FORGE(max_caches, h->max_caches + 1, "max_caches without its table");
	FORGE(max_pools, 1u << 21, "max_pools huge");
	FORGE(nr_kmalloc, h->nr_kmalloc - 1, "a kmalloc class missing");
	FORGE(chash_size, h->chash_size - 1, "hash size not a power of two");
	FORGE(phash_size, h->phash_size / 4, "hash size too small");
	FORGE(seg_size, h->seg_size + SP_PAGE_SIZE, "segment size larger than the file");
	FORGE(seg_size, h->seg_size - SP_PAGE_SIZE, "segment size smaller than the file");
	FORGE(clients.off, 0, "client table at offset 0");
	FORGE(caches.off, h->clients.off, "cache table over the client table");
	FORGE(pools.off, h->pools.off + 4, "pool table misaligned");
	FORGE(pages.off, h->phash.off, "page metadata over the pool hash");
	FORGE(pages.size, h->pages.size + 24, "page metadata size");
	FORGE(data.off, h->data.off + 8, "data area misaligned");
	FORGE(data.off, UINT64_MAX - 4095, "data area beyond any file");
	FORGE(data.size, UINT64_MAX, "data size huge");
	FORGE(page_size, 8192, "another page size");
	FORGE(sizeof_mutex, h->sizeof_mutex + 8, "another pthread_mutex_t");
	FORGE(layout_version, SP_LAYOUT_VERSION + 1, "another layout version");
	FORGE(magic, 0, "no magic");
#undef FORGE
	printf("  %u corrupted headers refused with a message\n", refused);
	copy_free(&c);
	world_free(&w);
}

/* ---- (c) a writable attach of a corrupted copy --------------------------- */

struct ops_job {
	struct copy *c;
	struct world *w;
	bool derived;	   /* only derived metadata was flipped: check for overlaps */
	sp_off_t free_first; /* an older allocation to free first (0: none) */
	uint64_t seed;
};

#define OPS_MAX 600

static int ops_child(void *arg)
{
	struct ops_job *j = arg;
	struct world *w = j->w;
	struct sp_report r = { .cap = 1 };
	struct sp_seg *s = NULL;
	sp_off_t own[OPS_MAX];
	uint64_t own_len[OPS_MAX], rng = j->seed;
	uint32_t n = 0, slot;
	char tmpl[40];

	tu_child_signals_default();
	alarm(30);
	r.v = calloc(1, sizeof(*r.v));
	memset(tmpl, 0x42, sizeof(tmpl));
	if (sp_seg_attach(NULL, dup(j->c->fd), 0, &s)) {
		snprintf(res->msg, sizeof(res->msg), "attach: %s", sp_errmsg());
		return 3;
	}
	s->lock_timeout_ms = 3000;
	if (sp_client_register(s, "ops", getpid(), getuid(), getgid(), &slot) ||
	    sp_client_use_slot(s, slot)) {
		snprintf(res->msg, sizeof(res->msg), "register: %s", sp_errmsg());
		return 3;
	}
	if (j->free_first)
		sp_cache_free(s, sp_cache_get(s, w->cache), j->free_first);
	for (int round = 0; round < 3; round++) {
		struct {
			int rc;
			uint64_t len;
		} a;
		sp_off_t off;

		for (int i = 0; i < 100 && n < OPS_MAX - 10; i++) {
			uint64_t r2 = tu_rand(&rng) % 100;
			struct sp_cache *c;

			off = 0;
			if (r2 < 40) {
				a.len = 1 + tu_rand(&rng) % SP_KMALLOC_MAX;
				a.rc = sp_kmalloc(s, a.len, &off);
			} else if (r2 < 43) {
				a.len = 10000 + tu_rand(&rng) % 30000;
				a.rc = sp_kmalloc(s, a.len, &off);
			} else if (r2 < 65) {
				c = sp_cache_get(s, r2 % 2 ? w->cache : w->tcache);
				a.len = c ? c->obj_size : 0;
				a.rc = c ? sp_cache_alloc(s, c, s->owner, &off) : -ENOENT;
			} else if (r2 < 75) {
				a.len = 128;
				a.rc = sp_pool_alloc(s, sp_pool_get(s, w->pool_slab), SP_ALLOC_NOWAIT,
						     0, &off);
			} else if (r2 < 85) {
				a.len = 4096;
				a.rc = sp_pool_alloc(s, sp_pool_get(s, w->pool_pages),
						     SP_ALLOC_NOWAIT, 0, &off);
			} else if (r2 < 95) {
				a.len = 300;
				a.rc = sp_pool_alloc(s, sp_pool_get(s, w->pool_big), SP_ALLOC_NOWAIT,
						     0, &off);
			} else {
				a.len = SP_PAGE_SIZE;
				a.rc = sp_buddy_alloc(s, 0, &off);
			}
			if (a.rc || !sp_ptr_checked(s, off, a.len, 1))
				continue;
			own[n] = off;
			own_len[n++] = a.len;
			ofill(s->base, off, a.len);
		}
		for (uint32_t i = 0; i < n; i++) {
			if (!ocheck(s->base, own[i], own_len[i]) && j->derived) {
				snprintf(res->msg, sizeof(res->msg),
					 "allocation %#llx (%llu bytes) overlaps a later one",
					 (unsigned long long)own[i], (unsigned long long)own_len[i]);
				res->bad = 1;
				return 0;
			}
		}
		/* free every other one, any way it will go */
		for (uint32_t i = 0; i < n; i += 2) {
			if (sp_kfree(s, own[i]) && sp_cache_free(s, sp_cache_get(s, w->cache), own[i]) &&
			    sp_cache_free(s, sp_cache_get(s, w->tcache), own[i]) &&
			    sp_pool_free(s, sp_pool_get(s, w->pool_slab), own[i]) &&
			    sp_pool_free(s, sp_pool_get(s, w->pool_pages), own[i]) &&
			    sp_pool_free(s, sp_pool_get(s, w->pool_big), own[i]))
				sp_buddy_free(s, own[i]);
			own[i] = own[--n];
			own_len[i] = own_len[n];
		}
		sp_pool_resize(s, sp_pool_get(s, w->pool_slab), 3 + (uint32_t)round * 4);
	}
	for (uint32_t id = 0; id < sp_nr_cache_slots(s); id++)
		if (sp_cache_get(s, id))
			sp_cache_shrink(s, sp_cache_get(s, id));
	res->nviol = sp_check(s, 0, &r);
	if (j->derived) {
		for (uint32_t i = 0; i < w->norig; i++) {
			if (w->orig[i] == j->free_first)
				continue;
			if (!ocheck(s->base, w->orig[i], w->orig_len[i])) {
				snprintf(res->msg, sizeof(res->msg),
					 "allocation %#llx (%llu bytes) made before the corruption "
					 "was overwritten: handed out twice",
					 (unsigned long long)w->orig[i],
					 (unsigned long long)w->orig_len[i]);
				res->bad = 2;
				return 0;
			}
		}
	}
	sp_slot_release(s, w->victim_slot, false, NULL);
	sp_check(s, 0, &r);
	sp_report_free(&r);
	sp_seg_detach(s);
	return 0;
}

static void run_ops(struct ops_job *j, const char *what)
{
	pid_t pid;
	int st;

	memset(res, 0, sizeof(*res));
	pid = tu_fork(ops_child, j);
	st = tu_wait(pid);
	if (st == 128 + SIGALRM)
		fail_msg("%s: operations on the corrupted copy hung", what);
	if (st)
		fail_msg("%s: operations on the corrupted copy crashed (status %d%s) %s", what, st,
			 st > 128 ? ", a signal" : "", res->msg);
	if (res->bad)
		fail_msg("%s: %s", what, res->msg);
}

/* A field that may be flipped, and whether it is only derived data. */
struct field {
	uint64_t off;
	uint32_t len;
	bool derived;
	const char *what;
};

#define MAX_FIELDS 4096

static uint32_t fields_of(struct world *w, struct field *f)
{
	struct sp_seg *s = w->s;
	struct sp_buddy *z = &s->hdr->buddy;
	uint32_t n = 0;

#define F(ptr, d, name)                                             \
	do {                                                        \
		if (n < MAX_FIELDS) {                               \
			f[n].off = AT(w, (ptr));                    \
			f[n].len = sizeof(*(ptr));                  \
			f[n].derived = (d);                         \
			f[n++].what = (name);                       \
		}                                                   \
	} while (0)
	for (uint32_t o = 0; o <= z->max_order; o++) {
		F(&z->free_head[o], true, "buddy free list head");
		F(&z->nr_free[o], true, "buddy nr_free");
	}
	F(&z->free_pages, true, "buddy free_pages");
	for (uint32_t pfn = 0; pfn < s->hdr->nr_pages;) {
		struct sp_page *pg = &s->pages[pfn];
		uint32_t info = pg->info;

		if (SP_PG_STATE(info) == SP_PG_FREE ||
		    (SP_PG_STATE(info) == SP_PG_ALLOC && SP_PG_KIND(info) == SP_KIND_SLAB)) {
			F(&pg->next, true, "page next link");
			F(&pg->prev, true, "page prev link");
		}
		if (SP_PG_STATE(info) == SP_PG_ALLOC && SP_PG_KIND(info) == SP_KIND_SLAB) {
			struct sp_cache *c = &sp_caches(s)[pg->owner];
			struct sp_slab *slab = sp_slab_at(s, c, pfn);

			F(&slab->inuse, true, "slab inuse");
			F(&slab->hint, true, "slab hint");
			F(&slab->list, true, "slab list");
			F(&slab->magic, false, "slab magic");
			F(&slab->colour, false, "slab colour");
			for (uint32_t k = 0; k < c->bitmap_words; k++)
				F(&slab->bitmap[k], false, "slab bitmap");
			F(&sp_slab_owners(c, slab)[pfn % c->objperslab], false, "object owner tag");
		}
		pfn += 1u << SP_PG_ORDER(info);
	}
	for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++) {
		struct sp_cache *c = &sp_caches(s)[i];

		if (c->state == SP_DESC_FREE)
			continue;
		for (int l = 0; l < 4; l++) {
			F(&c->list_head[l], true, "cache list head");
			F(&c->nr_list[l], true, "cache list count");
		}
		F(&c->nr_slabs, true, "cache nr_slabs");
		F(&c->active_objs, true, "cache active_objs");
		F(&c->total_objs, true, "cache total_objs");
		F(&c->colour_next, true, "cache colour_next");
	}
	for (uint32_t i = 0; i < s->hdr->max_pools; i++) {
		struct sp_pool *p = &sp_pools(s)[i];
		sp_off_t *el = sp_ptr(s, p->elements_off);

		if (p->state != SP_DESC_LIVE)
			continue;
		F(&p->curr_nr, false, "pool curr_nr");
		F(&p->nr_pages_out, false, "pool nr_pages_out");
		F(&p->nr_waiters, true, "pool nr_waiters");
		for (uint32_t k = 0; el && k < p->elements_cap && k < 8; k++)
			F(&el[k], false, "pool reserve entry");
	}
#undef F
	return n;
}

static void corrupt_value(struct copy *c, const struct field *f, uint64_t *rng)
{
	uint64_t v = 0, r = tu_rand(rng);

	memcpy(&v, c->map + f->off, f->len);
	switch (r % 6) {
	case 0:
		v++;
		break;
	case 1:
		v--;
		break;
	case 2:
		v = 0;
		break;
	case 3:
		v ^= 1ull << ((r >> 8) % (8 * f->len));
		break;
	case 4:
		v = (r >> 16) % 64; /* small: a plausible index or pfn */
		break;
	default:
		v = r >> 3; /* anything */
		break;
	}
	memcpy(c->map + f->off, &v, f->len);
}

static void writable_corrupted(void **state)
{
	struct world w;
	struct copy c;
	static struct field f[MAX_FIELDS];
	uint32_t nf;
	long rounds = tu_env_long("SHMPOOL_CORRUPT_ROUNDS", 500) / 3;
	uint64_t rng = (uint64_t)tu_env_long("SHMPOOL_CORRUPT_SEED", 1) * 40503u + 11;
	struct ops_job j = { .c = &c, .w = &w };
	unsigned derived_rounds = 0;
	char what[200];

	world_new(&w);
	nf = fields_of(&w, f);
	copy_new(&c, w.s);
	/* the healthy copy first: nothing may overlap there either */
	j.derived = true;
	j.seed = 1;
	run_ops(&j, "healthy copy");

	/* targeted: derived counters that would free live memory if trusted */
	{
		struct sp_cache *kc = sp_cache_get(w.s, w.cache);
		uint32_t pfn = 0, head = 0, i;
		struct sp_slab *slab = NULL;

		for (i = 0; i < w.norig; i++) {
			if (w.orig_len[i] != 56 || !sp_off_pfn(w.s, w.orig[i], &pfn) ||
			    sp_block_head(w.s, pfn, &head) || w.s->pages[head].owner != kc->id)
				continue;
			slab = sp_slab_at(w.s, kc, head);
			if (slab->inuse >= 3)
				break;
		}
		assert_true(i < w.norig);
		memcpy(c.map, w.s->base, c.size);
		put32(&c, AT(&w, &slab->inuse), 1);
		j.free_first = w.orig[i];
		j.seed = 2;
		run_ops(&j, "slab inuse 1 while more objects are allocated");
		memcpy(c.map, w.s->base, c.size);
		put64(&c, AT(&w, &kc->active_objs), 1);
		j.seed = 3;
		run_ops(&j, "cache active_objs 1 while more objects are allocated");
		memcpy(c.map, w.s->base, c.size);
		put32(&c, AT(&w, &slab->list), SP_LIST_EMPTY);
		j.seed = 4;
		run_ops(&j, "a used slab claims to be on the empty list");
		j.free_first = 0;
	}
	/* targeted: reserve metadata pointing outside its array */
	{
		struct sp_pool *ps = sp_pool_get(w.s, w.pool_slab);

		j.derived = false;
		memcpy(c.map, w.s->base, c.size);
		put32(&c, AT(&w, &ps->curr_nr), 0x7ffffff0u);
		j.seed = 5;
		run_ops(&j, "pool curr_nr far beyond its reserve array");
		memcpy(c.map, w.s->base, c.size);
		put32(&c, AT(&w, &ps->min_nr), 0x7ffffff0u);
		put32(&c, AT(&w, &ps->curr_nr), 0x7fffffe0u);
		j.seed = 6;
		run_ops(&j, "pool min_nr and curr_nr beyond the array");
		memcpy(c.map, w.s->base, c.size);
		put64(&c, AT(&w, &ps->elements_off), 8);
		j.seed = 7;
		run_ops(&j, "pool reserve array in the header");
	}
	for (long round = 0; round < rounds; round++) {
		uint32_t nflip = 1 + (uint32_t)(tu_rand(&rng) % 3);
		bool derived = true;

		memcpy(c.map, w.s->base, c.size);
		snprintf(what, sizeof(what), "round %ld:", round);
		for (uint32_t k = 0; k < nflip; k++) {
			const struct field *fl = &f[tu_rand(&rng) % nf];

			corrupt_value(&c, fl, &rng);
			derived &= fl->derived;
			snprintf(what + strlen(what), sizeof(what) - strlen(what), " %s at %#llx;",
				 fl->what, (unsigned long long)fl->off);
		}
		j.derived = derived;
		j.seed = tu_rand(&rng);
		derived_rounds += derived;
		run_ops(&j, what);
	}
	printf("  %ld rounds of locked operations on corrupted copies (%u with only derived "
	       "metadata flipped, checked for double allocation)\n", rounds, derived_rounds);
	copy_free(&c);
	world_free(&w);
}

/* ---- (d) the header rewritten after attach --------------------------------- */

/* The owner tag of allocation @off: its slab's owner array or its block head. */
static uint16_t tag_of(struct sp_seg *s, sp_off_t off)
{
	uint32_t pfn, head, idx;
	struct sp_slab *slab;
	struct sp_cache *c;

	if (!sp_off_pfn(s, off, &pfn) || sp_block_head(s, pfn, &head))
		return SP_OWNER_NONE;
	if (SP_PG_KIND(s->pages[head].info) != SP_KIND_SLAB)
		return s->pages[head].slot;
	c = &sp_caches(s)[s->pages[head].owner];
	if (sp_cache_obj_locate(s, c, off, &slab, &idx))
		return SP_OWNER_NONE;
	return sp_slab_owners(c, slab)[idx];
}

struct geo_job {
	struct copy *c;
	struct world *w;
	uint64_t fields;	/* GEO_* to overwrite */
	bool resum;		/* recompute the checksum, so validation passes */
};

enum {
	GEO_NR_PAGES = 1 << 0,	/* far more pages than the file holds */
	GEO_DATA = 1 << 1,	/* the data area beyond the end of the file */
	GEO_PAGES = 1 << 2,	/* page metadata beyond the end of the file */
	GEO_POOLS = 1 << 3,	/* max_pools, and the pool table's offset */
	GEO_CACHES = 1 << 4,	/* max_caches, nr_kmalloc, the cache table's offset */
	GEO_CLIENTS = 1 << 5,	/* max_clients, and the client table's offset */
	GEO_HASHES = 1 << 6,	/* name table sizes and offsets */
	GEO_ORDER = 1 << 7,	/* max_order in the header and in the buddy zone */
	GEO_ALL = (1 << 8) - 1,
};

static void scribble_header(struct sp_seg *s, uint64_t f, bool resum)
{
	struct sp_header *h = s->hdr;
	uint64_t beyond = s->size + (1ull << 30);

	if (f & GEO_NR_PAGES)
		h->nr_pages = 0xfffffff0u;
	if (f & GEO_DATA) {
		h->data.off = beyond;
		h->data.size = 1ull << 40;
	}
	if (f & GEO_PAGES)
		h->pages.off = beyond;
	if (f & GEO_POOLS) {
		h->max_pools = 1u << 30;
		h->pools.off = beyond;
	}
	if (f & GEO_CACHES) {
		h->max_caches = 1u << 30;
		h->nr_kmalloc = 4000;
		h->caches.off = beyond;
	}
	if (f & GEO_CLIENTS) {
		h->max_clients = 0xfff0;
		h->clients.off = beyond;
	}
	if (f & GEO_HASHES) {
		h->chash_size = h->phash_size = 1u << 31;
		h->chash.off = h->phash.off = beyond;
	}
	if (f & GEO_ORDER) {
		h->max_order = 31;
		h->buddy.max_order = 200; /* the zone's copy is shared too */
		h->buddy.nr_pages = 0xfffffff0u;
	}
	if (resum)
		h->geometry_sum = sp_geometry_sum(h);
}

#define GEO_OK(what, expr)                                                                \
	do {                                                                              \
		int geo_rc_ = (expr);                                                     \
		if (geo_rc_ != 0 && !res->bad) {                                          \
			res->bad = 1;                                                     \
			snprintf(res->msg, sizeof(res->msg), "%s: %s: %s", what,          \
				 sp_err_name(geo_rc_), sp_errmsg());                      \
		}                                                                         \
	} while (0)

/*
 * A process attached (header validated), then someone rewrote the header's
 * geometry: everything this process does must go on with the geometry it
 * validated, reading nothing outside the mapping, which ends at a PROT_NONE
 * page.
 */
static int geo_child(void *arg)
{
	struct geo_job *j = arg;
	struct world *w = j->w;
	struct sp_report r = { .cap = 4 };
	struct sp_seg *s = NULL;
	struct sp_holdings h;
	FILE *null = fopen("/dev/null", "w");
	sp_off_t off[8];
	uint32_t slot, id;
	uint8_t *hole;

	tu_child_signals_default();
	alarm(30);
	r.v = calloc(r.cap, sizeof(*r.v));
	hole = mmap(NULL, j->c->size + SP_PAGE_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		    0);
	if (hole != MAP_FAILED)
		munmap(hole, j->c->size);
	if (sp_seg_attach(NULL, dup(j->c->fd), 0, &s) ||
	    sp_client_register(s, "geo", getpid(), getuid(), getgid(), &slot) ||
	    sp_client_use_slot(s, slot)) {
		snprintf(res->msg, sizeof(res->msg), "attach: %s", sp_errmsg());
		return 3;
	}
	res->guarded = hole != MAP_FAILED && s->base == hole;
	s->lock_timeout_ms = 3000;
	scribble_header(s, j->fields, j->resum);

	/* the checker reports the header and checks the rest by the copy */
	res->nviol = sp_check(s, 0, &r);
	snprintf(res->msg, sizeof(res->msg), "%s", r.nr && r.v ? r.v[0].what : "");
	if (sp_check(s, SP_CHECK_NOLOCK, &r) != res->nviol)
		res->bad = 3;
	if (null) {
		sp_dump_buddyinfo(s, null);
		sp_dump_slabinfo(s, null, true);
		sp_dump_pools(s, null);
		sp_dump_clients(s, null);
		fclose(null);
	}
	/* a healthy segment behind a lying header: every operation works */
	GEO_OK("kmalloc", sp_kmalloc(s, 100, &off[0]));
	GEO_OK("large kmalloc", sp_kmalloc(s, 20000, &off[1]));
	GEO_OK("cache alloc", sp_cache_alloc(s, sp_cache_get(s, w->cache), s->owner, &off[2]));
	GEO_OK("slab pool alloc", sp_pool_alloc(s, sp_pool_get(s, w->pool_slab), SP_ALLOC_NOWAIT,
						0, &off[3]));
	GEO_OK("page pool alloc", sp_pool_alloc(s, sp_pool_get(s, w->pool_pages),
						SP_ALLOC_NOWAIT, 0, &off[4]));
	GEO_OK("buddy alloc", sp_buddy_alloc(s, 1, &off[5]));
	if (!res->bad) {
		GEO_OK("kfree", sp_kfree(s, off[0]));
		GEO_OK("large kfree", sp_kfree(s, off[1]));
		GEO_OK("cache free", sp_cache_free(s, sp_cache_get(s, w->cache), off[2]));
		GEO_OK("slab pool free", sp_pool_free(s, sp_pool_get(s, w->pool_slab), off[3]));
		GEO_OK("page pool free", sp_pool_free(s, sp_pool_get(s, w->pool_pages), off[4]));
		GEO_OK("buddy free", sp_buddy_free(s, off[5]));
	}
	GEO_OK("pool lookup", sp_pool_lookup(s, "k.slab", &id));
	GEO_OK("cache lookup", sp_cache_lookup(s, "k.cache", &id));
	{
		struct sp_pool_params pp = { .elem_size = 48, .min_nr = 2 };

		GEO_OK("pool create", sp_pool_create(s, "k.geo", &pp, &id));
		GEO_OK("pool destroy", sp_pool_destroy(s, id));
	}
	GEO_OK("holdings", sp_slot_holdings(s, w->victim_slot, &h));
	id = (uint32_t)sp_client_reap(s);
	GEO_OK("reap", (int)id < 0 ? (int)id : 0);
	GEO_OK("release", sp_slot_release(s, w->victim_slot, false, NULL));
	for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++)
		if (sp_cache_get(s, i))
			sp_cache_shrink(s, sp_cache_get(s, i));
	/* what was there before is still there: nothing was handed out twice */
	for (uint32_t i = 0; i < w->norig && !res->bad; i++) {
		if (!ocheck(s->base, w->orig[i], w->orig_len[i])) {
			res->bad = 2;
			snprintf(res->msg, sizeof(res->msg), "allocation %#llx overwritten",
				 (unsigned long long)w->orig[i]);
		}
	}
	sp_report_free(&r);
	sp_seg_detach(s);
	return 0;
}

static void header_rewritten_after_attach(void **state)
{
	static const struct {
		uint64_t fields;
		const char *what;
	} cases[] = {
		{ GEO_NR_PAGES, "nr_pages huge" },
		{ GEO_DATA, "data area beyond the file" },
		{ GEO_PAGES, "page metadata beyond the file" },
		{ GEO_POOLS, "max_pools huge, pool table beyond the file" },
		{ GEO_CACHES, "max_caches, nr_kmalloc huge, cache table beyond the file" },
		{ GEO_CLIENTS, "max_clients huge, client table beyond the file" },
		{ GEO_HASHES, "name tables huge and beyond the file" },
		{ GEO_ORDER, "max_order 31, buddy zone max_order 200" },
		{ GEO_ALL, "all of it" },
	};
	struct world w;
	struct copy c;
	unsigned guarded = 0, runs = 0;

	(void)state;
	world_new(&w);
	/* the children release the dead victim's orphans, which may then be
	 * handed out again: compare only what the live client holds */
	for (uint32_t i = 0; i < w.norig;) {
		if (tag_of(w.s, w.orig[i]) == w.victim_slot + 1)
			orig_del(&w, i);
		else
			i++;
	}
	copy_new(&c, w.s);
	for (unsigned k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		for (int resum = 0; resum < 2; resum++) {
			struct geo_job j = { .c = &c, .w = &w, .fields = cases[k].fields,
					     .resum = resum };
			int st;

			memcpy(c.map, w.s->base, c.size);
			memset(res, 0, sizeof(*res));
			res->nviol = -1;
			st = tu_wait(tu_fork(geo_child, &j));
			if (st == 128 + SIGALRM)
				fail_msg("%s%s: hung", cases[k].what, resum ? " (checksum redone)" : "");
			if (st)
				fail_msg("%s%s: the process crashed or failed (status %d%s) %s",
					 cases[k].what, resum ? " (checksum redone)" : "", st,
					 st > 128 ? ", a signal" : "", res->msg);
			if (res->bad)
				fail_msg("%s%s: %s", cases[k].what,
					 resum ? " (checksum redone)" : "", res->msg);
			/* reported, as a header problem, whether or not the sum was redone */
			if (res->nviol < 1 || !strstr(res->msg, "header"))
				fail_msg("%s%s: the checker did not report the header (%d: %s)",
					 cases[k].what, resum ? " (checksum redone)" : "",
					 res->nviol, res->msg);
			guarded += res->guarded;
			runs++;
		}
	}
	printf("  %u header rewrites after attach: checker, views, alloc/free, create, "
	       "reclaim all worked by the validated geometry (%u of them with the mapping "
	       "ending at a PROT_NONE page)\n", runs, guarded);
	copy_free(&c);
	world_free(&w);
}

/* ---- (e) checker: page-pool block counts, leaked INTERNAL memory --------------- */

/* Does a check (@flags) report a violation containing @needle? */
static bool reports(struct sp_seg *s, int flags, const char *needle)
{
	struct sp_report r = { .cap = 64 };
	bool found = false;

	r.v = calloc(r.cap, sizeof(*r.v));
	assert_non_null(r.v);
	assert_true(sp_check(s, flags, &r) >= 0);
	for (unsigned i = 0; i < r.nr && i < r.cap; i++)
		found |= strstr(r.v[i].what, needle) != NULL;
	sp_report_free(&r);
	return found;
}

static void checker_gaps(void **state)
{
	struct sp_pool_params pages = { .elem_size = 4096, .min_nr = 3, .max_nr = 10,
					.backing = SP_BACK_PAGES };
	struct sp_pool_params slab = { .elem_size = 100, .min_nr = 4, .backing = SP_BACK_SLAB };
	struct sp_seg *s = tu_seg_new(0);
	sp_off_t el[4], leak, big;
	char tmpl[24] = "template";
	uint32_t pid, sid, cid;
	struct sp_pool *p;

	(void)state;
	snprintf(current_seg, sizeof(current_seg), "%s", s->name);
	/* referenced INTERNAL memory: reserve arrays and a template */
	TU_ASSERT_OK(sp_pool_create(s, "g.pages", &pages, &pid));
	TU_ASSERT_OK(sp_pool_create(s, "g.slab", &slab, &sid));
	TU_ASSERT_OK(sp_cache_create(s, "g.tmpl", sizeof(tmpl), 0, 0, tmpl, &cid));
	p = sp_pool_get(s, pid);
	for (int i = 0; i < 4; i++)
		TU_ASSERT_OK(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &el[i]));
	assert_int_equal(p->nr_pages_out, 7); /* the reserve's 3 blocks and 4 out */
	tu_check_clean(s);
	assert_int_equal(tu_check_count(s, SP_CHECK_NOLOCK), 0);

	/* (a) a page-backed pool's block count drifts */
	p->nr_pages_out++;
	assert_true(reports(s, 0, "nr_pages_out 8, but 7 blocks"));
	assert_true(reports(s, SP_CHECK_NOLOCK, "nr_pages_out 8, but 7 blocks"));
	p->nr_pages_out -= 2;
	assert_true(reports(s, 0, "nr_pages_out 6, but 7 blocks"));
	p->nr_pages_out++;
	tu_check_clean(s);
	for (int i = 0; i < 4; i++)
		TU_ASSERT_OK(sp_pool_free(s, p, el[i]));
	assert_int_equal(p->nr_pages_out, 3); /* the reserve's blocks */
	tu_check_clean(s);

	/* (b) INTERNAL memory nothing references: an object and a large block */
	TU_ASSERT_OK(sp_kmalloc_owner(s, 100, SP_OWNER_INTERNAL, &leak));
	assert_true(reports(s, 0, "INTERNAL object"));
	assert_true(reports(s, SP_CHECK_NOLOCK, "referenced by no pool or cache: leaked"));
	TU_ASSERT_OK(sp_kfree(s, leak));
	tu_check_clean(s);
	TU_ASSERT_OK(sp_kmalloc_owner(s, 3 * SP_PAGE_SIZE, SP_OWNER_INTERNAL, &big));
	assert_true(reports(s, 0, "INTERNAL large block"));
	TU_ASSERT_OK(sp_kfree(s, big));
	tu_check_clean(s);

	/* a reserve array a dead resizer replaced but never freed: the checker
	 * and the registry's recovery sweep agree on what is leaked */
	{
		struct sp_pool *ps = sp_pool_get(s, sid);
		sp_off_t old = ps->elements_off;

		TU_ASSERT_OK(sp_kmalloc_owner(s, (uint64_t)ps->elements_cap * 8,
					      SP_OWNER_INTERNAL, &leak));
		memcpy(sp_ptr(s, leak), sp_ptr(s, old), (size_t)ps->elements_cap * 8);
		ps->elements_off = leak; /* the old array is now referenced by nothing */
		assert_true(reports(s, 0, "INTERNAL object"));
		TU_ASSERT_OK(sp_kmalloc_owner(s, 20000, SP_OWNER_INTERNAL, &big));
		assert_int_equal(tu_check_count(s, 0), 2);
		TU_ASSERT_OK(sp_registry_lock(s));
		sp_registry_recover_locked(s);
		sp_registry_unlock(s);
		tu_check_clean(s);
		assert_int_equal(ps->elements_off, leak); /* the referenced one stayed */
	}
	TU_ASSERT_OK(sp_pool_destroy(s, pid));
	TU_ASSERT_OK(sp_pool_destroy(s, sid));
	TU_ASSERT_OK(sp_cache_destroy(s, cid));
	tu_check_clean(s);
	printf("  pool nr_pages_out drift and leaked INTERNAL objects and blocks reported; "
	       "none on the clean segment\n");
	current_seg[0] = '\0';
	tu_seg_free(s);
}

/* ---- (f) a cache's geometry scribbled on ---------------------------------- */

struct cgeo_job {
	struct copy *c;
	struct world *w;
	uint32_t cache;		/* the scribbled cache */
	uint32_t kpool;		/* a KMALLOC-backed pool on a class with objects of both slots */
	uint64_t until_ms;	/* (g): when to stop */
};

static struct sp_lock *die_lock;
static struct sp_seg *die_seg;

static int die_holding(void *arg)
{
	(void)arg;
	alarm(10);
	if (sp_lock(die_seg, die_lock) < 0)
		return 1;
	_exit(0); /* holding it */
}

/* A process that dies holding @l, so that the next locker recovers what it
 * protects.  Return: the lock's count of recoveries before that. */
static uint32_t die_holding_lock(struct sp_seg *s, struct sp_lock *l)
{
	die_seg = s;
	die_lock = l;
	tu_wait(tu_fork(die_holding, NULL));
	return l->recoveries;
}

/* The next locker after die_holding_lock() recovered @l. */
static void expect_recovered(const struct sp_lock *l, uint32_t before)
{
	if (l->recoveries != before + 1 && !res->bad) {
		res->bad = 3;
		snprintf(res->msg, sizeof(res->msg), "a lock whose owner died was not recovered");
	}
}

/* Slabs the page metadata gives cache @id. */
static uint32_t slabs_of(struct sp_seg *s, uint32_t id)
{
	uint32_t n = 0;

	for (uint32_t pfn = 0; pfn < s->geo.nr_pages; pfn++)
		n += SP_PG_STATE(s->pages[pfn].info) == SP_PG_ALLOC &&
		     SP_PG_KIND(s->pages[pfn].info) == SP_KIND_SLAB && s->pages[pfn].owner == id;
	return n;
}

/* Attach the copy of @j as a client of its own: the daemon's view. */
static struct sp_seg *cgeo_attach(struct cgeo_job *j, const char *name)
{
	struct sp_seg *s = NULL;
	uint32_t slot;

	if (sp_seg_attach(NULL, dup(j->c->fd), 0, &s) ||
	    sp_client_register(s, name, getpid(), getuid(), getgid(), &slot) ||
	    sp_client_use_slot(s, slot)) {
		snprintf(res->msg, sizeof(res->msg), "attach: %s", sp_errmsg());
		return NULL;
	}
	s->lock_timeout_ms = 3000;
	return s;
}

/*
 * Everything the daemon runs over cache @j->cache but the checker: views,
 * holdings, recovery of the cache and of the pools after their lock owners
 * died, the pool and cache paths, the registry's sweep, the release of the
 * dead slot's holdings (not of the slot).
 */
static void daemon_paths(struct sp_seg *s, struct cgeo_job *j)
{
	struct world *w = j->w;
	struct sp_holdings h, *all;
	struct sp_cache *c = &sp_caches(s)[j->cache];
	FILE *null = fopen("/dev/null", "w");
	uint32_t rec, pools[] = { w->pool_slab, w->pool_pages, w->pool_big, j->kpool };
	uint64_t a, b;
	sp_off_t off;

	/* views */
	if (null) {
		sp_dump_buddyinfo(s, null);
		sp_dump_slabinfo(s, null, true);
		sp_dump_pools(s, null);
		sp_dump_clients(s, null);
		fclose(null);
	}
	sp_cache_in_use(s, c);
	sp_cache_counters(s, c, &a, &b);
	for (unsigned i = 0; i < sizeof(pools) / sizeof(pools[0]); i++) {
		sp_pool_nr_out(s, &sp_pools(s)[pools[i]]);
		sp_pool_counters(s, &sp_pools(s)[pools[i]], &a, &b);
	}
	/* holdings */
	sp_slot_holdings(s, w->victim_slot, &h);
	all = calloc(s->geo.max_clients, sizeof(*all));
	if (all)
		sp_holdings_all(s, all, s->geo.max_clients);
	free(all);
	/* recovery: of the cache, of each pool, after their lock owners died */
	rec = die_holding_lock(s, &c->lock);
	if (sp_cache_lock(s, c) == 0)
		sp_cache_unlock(c);
	expect_recovered(&c->lock, rec);
	if (sp_cache_lock(s, c) == 0) {
		sp_cache_recover_locked(s, c);
		sp_cache_unlock(c);
	}
	for (unsigned i = 0; i < sizeof(pools) / sizeof(pools[0]); i++) {
		struct sp_pool *p = &sp_pools(s)[pools[i]];

		rec = die_holding_lock(s, &p->lock);
		if (sp_pool_lock(s, p) == 0)
			sp_pool_unlock(p);
		expect_recovered(&p->lock, rec);
	}
	/* the pools' and the cache's own paths, reserves included */
	for (unsigned i = 0; i < sizeof(pools) / sizeof(pools[0]); i++) {
		struct sp_pool *p = sp_pool_get(s, pools[i]);

		if (p && sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &off) == 0)
			sp_pool_free(s, p, off);
		if (p)
			sp_pool_resize(s, p, p->min_nr + 2);
		if (p)
			sp_pool_resize(s, p, p->min_nr > 2 ? p->min_nr - 2 : 0);
	}
	sp_pool_kmalloc_settle(s, true);
	if (sp_cache_alloc(s, c, s->owner, &off) == 0)
		sp_cache_free(s, c, off);
	if (c->obj_size && c->obj_size <= SP_KMALLOC_MAX && sp_kmalloc(s, c->obj_size, &off) == 0)
		sp_kfree(s, off);
	sp_cache_shrink(s, c);
	/* the registry's recovery sweeps INTERNAL objects of the kmalloc classes */
	if (sp_registry_lock(s) == 0) {
		sp_registry_recover_locked(s);
		sp_registry_unlock(s);
	}
	/* reclaim: the dead slot's holdings */
	sp_slot_release(s, w->victim_slot, false, NULL);
}

/*
 * Everything the daemon runs over a cache, on a copy whose cache @j->cache
 * has a scribbled geometry field: the checker, daemon_paths() and the
 * release of the dead slot.  It must report the cache and never crash,
 * hang, or free its slabs.
 */
static int cgeo_child(void *arg)
{
	struct cgeo_job *j = arg;
	struct world *w = j->w;
	struct sp_report r = { .cap = 1 };
	struct sp_seg *s;
	uint32_t slabs;

	tu_child_signals_default();
	alarm(30);
	r.v = calloc(1, sizeof(*r.v));
	s = cgeo_attach(j, "cgeo");
	if (!s)
		return 3;
	slabs = slabs_of(s, j->cache);

	res->nviol = sp_check(s, 0, &r);
	snprintf(res->msg, sizeof(res->msg), "%s", r.nr && r.v ? r.v[0].what : "");
	if (sp_check(s, SP_CHECK_NOLOCK, &r) < 1)
		res->nviol = 0;
	daemon_paths(s, j);
	sp_slot_release(s, w->victim_slot, true, NULL);
	if (sp_check(s, 0, &r) < 1)
		res->nviol = 0;
	/* its slabs stay its own, and its objects the dead slot's */
	if (slabs_of(s, j->cache) != slabs) {
		res->bad = 1;
		snprintf(res->msg, sizeof(res->msg), "it had %u slabs, now %u", slabs,
			 slabs_of(s, j->cache));
	} else if (sp_clients(s)[w->victim_slot].state != SP_CLIENT_DEAD) {
		res->bad = 2;
		snprintf(res->msg, sizeof(res->msg),
			 "the dead slot was freed while the cache holds its objects");
	}
	sp_report_free(&r);
	sp_seg_detach(s);
	return 0;
}

/* The smallest value of a geometry field that puts something past the slab. */
static uint64_t past_slab(const struct sp_seg *s, const struct sp_cache *c, size_t field)
{
	uint64_t bytes = (uint64_t)SP_PAGE_SIZE << c->order, n = c->objperslab;
	uint64_t last = (uint64_t)(c->colour_num - 1) * c->colour_off; /* the last colour */
	uint64_t slack = bytes - c->obj_start - n * c->stride;

	switch (field) {
	case offsetof(struct sp_cache, order):
		return s->geo.max_order + 1;
	case offsetof(struct sp_cache, objperslab):
		return (bytes - c->obj_start - last) / c->stride + 1;
	case offsetof(struct sp_cache, bitmap_words):
		return (bytes - sizeof(struct sp_slab)) / 8 + 1;
	case offsetof(struct sp_cache, obj_start):
		return bytes - last - n * c->stride + 1;
	case offsetof(struct sp_cache, owners_off):
		return bytes - 2 * n + 1;
	case offsetof(struct sp_cache, stride):
		return (bytes - c->obj_start - last) / n + 1;
	case offsetof(struct sp_cache, colour_off):
		return c->colour_num > 1 ? slack / (c->colour_num - 1) + 1 : bytes;
	case offsetof(struct sp_cache, colour_num):
		return slack / c->colour_off + 2;
	case offsetof(struct sp_cache, obj_size): /* its red zone or poison past the stride */
		return c->stride + 1;
	case offsetof(struct sp_cache, align):
		return SP_PAGE_SIZE * 2;
	default: /* recip */
		return c->recip + 1;
	}
}

/*
 * The values to scribble on the geometry field at @field (@len bytes) of
 * @c: 0, one past the slab, the largest, off by one; each once and never
 * the healthy value.  obj_size - 1 is left out: a consistent geometry (the
 * stride has room), so there is nothing to find.  Return: how many.
 */
static unsigned bad_values(const struct sp_seg *s, const struct sp_cache *c, size_t field,
			   unsigned len, uint64_t *bad)
{
	uint64_t v = 0, huge = len == 8 ? UINT64_MAX : UINT32_MAX, cand[5];
	unsigned n = 0;

	memcpy(&v, (const uint8_t *)c + field, len);
	cand[0] = 0;
	cand[1] = past_slab(s, c, field);
	cand[2] = huge;
	cand[3] = v + 1;
	cand[4] = v ? v - 1 : huge;
	for (unsigned i = 0; i < 5; i++) {
		bool seen = cand[i] == v;

		if (i == 4 && field == offsetof(struct sp_cache, obj_size))
			continue;
		for (unsigned k = 0; k < n; k++)
			seen |= bad[k] == cand[i];
		if (!seen)
			bad[n++] = cand[i];
	}
	return n;
}

/* Run cgeo_child() on the scribbled copy; fail the test on what it found. */
static void run_cgeo(struct cgeo_job *j, const char *what)
{
	int st;

	memset(res, 0, sizeof(*res));
	st = tu_wait(tu_fork(cgeo_child, j));
	if (st == 128 + SIGALRM)
		fail_msg("%s: hung", what);
	if (st)
		fail_msg("%s: crashed (status %d%s) %s", what, st, st > 128 ? ", a signal" : "",
			 res->msg);
	if (res->bad)
		fail_msg("%s: %s", what, res->msg);
	if (res->nviol < 1)
		fail_msg("%s: the checker found nothing", what);
}

#define GEO_FIELD(f) { offsetof(struct sp_cache, f), sizeof(((struct sp_cache *)0)->f), #f }
static const struct {
	size_t off;
	unsigned len;
	const char *name;
} geo_fields[] = {
	GEO_FIELD(order),     GEO_FIELD(objperslab), GEO_FIELD(bitmap_words),
	GEO_FIELD(obj_start), GEO_FIELD(owners_off), GEO_FIELD(stride),
	GEO_FIELD(recip),     GEO_FIELD(colour_off), GEO_FIELD(colour_num),
	GEO_FIELD(obj_size),  GEO_FIELD(align),
};
#undef GEO_FIELD
#define NGEO_FIELDS (sizeof(geo_fields) / sizeof(geo_fields[0]))

/* The world of (f): a KMALLOC-backed pool on kmalloc-1024, where both slots
 * hold objects; the three caches to scribble on into @caches; a copy. */
static void cgeo_world(struct world *w, struct copy *c, struct cgeo_job *j, uint32_t caches[3])
{
	struct sp_pool_params kp = { .elem_size = 1000, .min_nr = 2, .backing = SP_BACK_KMALLOC };
	sp_off_t off;

	world_new(w);
	*j = (struct cgeo_job){ .c = c, .w = w };
	TU_ASSERT_OK(sp_pool_create(w->s, "k.kpool", &kp, &j->kpool));
	TU_ASSERT_OK(sp_pool_alloc(w->s, sp_pool_get(w->s, j->kpool), SP_ALLOC_NOWAIT, 0, &off));
	tu_check_clean(w->s);
	caches[0] = w->cache;
	caches[1] = sp_pool_get(w->s, w->pool_slab)->cache_id;
	caches[2] = sp_pool_get(w->s, j->kpool)->cache_id;
	copy_new(c, w->s);
}

static void cache_geometry_scribbled(void **state)
{
	const struct sp_cache *hc;
	struct world w;
	struct copy c;
	struct cgeo_job j;
	uint32_t caches[3];
	unsigned runs = 0;

	(void)state;
	cgeo_world(&w, &c, &j, caches);
	for (unsigned k = 0; k < 3; k++) {
		hc = &sp_caches(w.s)[caches[k]];
		j.cache = caches[k];
		for (unsigned f = 0; f < NGEO_FIELDS; f++) {
			uint64_t v = 0, bad[5];
			unsigned nbad;

			memcpy(&v, (const uint8_t *)hc + geo_fields[f].off, geo_fields[f].len);
			nbad = bad_values(w.s, hc, geo_fields[f].off, geo_fields[f].len, bad);
			for (unsigned i = 0; i < nbad; i++) {
				char what[160];

				memcpy(c.map, w.s->base, c.size);
				memcpy(c.map + AT(&w, hc) + geo_fields[f].off, &bad[i], geo_fields[f].len);
				snprintf(what, sizeof(what), "cache %s: %s %llu -> %llu", hc->name,
					 geo_fields[f].name, (unsigned long long)v,
					 (unsigned long long)bad[i]);
				run_cgeo(&j, what);
				runs++;
			}
		}
	}
	printf("  %u scribbled geometry fields of 3 caches: reported by the checker; views, "
	       "holdings, recovery, pools, release all survived and freed none of their slabs\n",
	       runs);
	copy_free(&c);
	world_free(&w);
}

/* ---- (g) a cache's geometry rewritten while the daemon walks it --------- */

/* One shared word the scribbler rewrites: its healthy value and bad ones. */
struct poke {
	uint64_t at, good, bad[5];
	unsigned len, nbad;
};

#define MAX_POKES (NGEO_FIELDS + 3)
#define RACE_MS 600

struct race_job {
	struct copy *c;
	struct poke pokes[MAX_POKES];
	unsigned npokes;
	uint64_t until_ms;	/* both children stop then */
};

static void poke(uint8_t *p, unsigned len, uint64_t v)
{
	/* atomic stores: the bad value must not be optimized away as dead */
	if (len == 8)
		__atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED);
	else
		__atomic_store_n((uint32_t *)p, (uint32_t)v, __ATOMIC_RELAXED);
}

/* Busy-wait up to @n rounds: a bad value stays for a while, or not at all. */
static void spin(uint64_t n)
{
	for (volatile uint64_t i = 0; i < n; i++)
		;
}

/* Rewrite random words of @j->pokes with bad values and back, until the end. */
static int scribbler(void *arg)
{
	struct race_job *j = arg;
	uint64_t rng = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull, n = 0;

	tu_child_signals_default();
	alarm(20);
	while ((++n & 255) || sp_now_ms() < j->until_ms) {
		const struct poke *k = &j->pokes[tu_rand(&rng) % j->npokes];
		uint8_t *p = j->c->map + k->at;

		poke(p, k->len, k->bad[tu_rand(&rng) % k->nbad]);
		spin(tu_rand(&rng) % 4000);
		poke(p, k->len, k->good);
		spin(tu_rand(&rng) % 4000);
	}
	return 0;
}

/* The checker and daemon_paths(), over and over until the end. */
static int race_child(void *arg)
{
	struct cgeo_job *j = arg;
	struct sp_report r = { .cap = 1 };
	struct sp_seg *s;

	tu_child_signals_default();
	alarm(20);
	r.v = calloc(1, sizeof(*r.v));
	s = cgeo_attach(j, "race");
	if (!s)
		return 3;
	do {
		sp_check(s, 0, &r);
		sp_check(s, SP_CHECK_NOLOCK, &r);
		daemon_paths(s, j);
		res->nviol++; /* rounds */
	} while (sp_now_ms() < j->until_ms);
	sp_report_free(&r);
	sp_seg_detach(s);
	return 0;
}

/* The healthy value and the bad ones of a @len-byte word at @p of @w. */
static void poke_add(struct race_job *rj, struct world *w, const void *p, unsigned len,
		     const uint64_t *bad, unsigned nbad)
{
	struct poke *k = &rj->pokes[rj->npokes++];

	assert_true(rj->npokes <= MAX_POKES && nbad && nbad <= 5);
	k->at = AT(w, p);
	k->len = len;
	memcpy(&k->good, p, len);
	memcpy(k->bad, bad, nbad * sizeof(*bad));
	k->nbad = nbad;
}

/*
 * (g): a scribbler process rewrites the geometry of a cache (and the
 * colour, hint and list of one of its slabs) between healthy and bad
 * values in a tight loop, while another runs the checker and everything
 * the daemon runs over the cache.  A walk that checked the descriptor and
 * then read it again would be driven out of the slab (a crash, or a
 * sanitizer report); none may crash or hang.
 */
static void cache_geometry_raced(void **state)
{
	struct world w;
	struct copy c;
	struct cgeo_job j;
	struct race_job rj;
	uint32_t caches[3];
	unsigned rounds = 0;

	(void)state;
	cgeo_world(&w, &c, &j, caches);
	for (unsigned k = 0; k < 3; k++) {
		const struct sp_cache *hc = &sp_caches(w.s)[caches[k]];
		uint32_t head = hc->list_head[SP_LIST_PARTIAL] ? hc->list_head[SP_LIST_PARTIAL]
							       : hc->list_head[SP_LIST_FULL];
		pid_t sc, rc;
		int st;

		memset(&rj, 0, sizeof(rj));
		rj.c = &c;
		for (unsigned f = 0; f < NGEO_FIELDS; f++) {
			uint64_t bad[5];
			unsigned nbad = bad_values(w.s, hc, geo_fields[f].off, geo_fields[f].len, bad);

			poke_add(&rj, &w, (const uint8_t *)hc + geo_fields[f].off, geo_fields[f].len,
				 bad, nbad);
		}
		if (head) { /* a slab with objects: its header is shared too */
			struct sp_slab *sl = sp_slab_at(w.s, hc, head - 1);
			uint64_t colour[] = { sl->colour + 8, (uint64_t)hc->colour_off * hc->colour_num,
					      UINT32_MAX };
			uint64_t hint[] = { hc->bitmap_words, UINT32_MAX };
			uint64_t list[] = { 4, UINT32_MAX };

			poke_add(&rj, &w, &sl->colour, 4, colour, 3);
			poke_add(&rj, &w, &sl->hint, 4, hint, 2);
			poke_add(&rj, &w, &sl->list, 4, list, 2);
		}
		memcpy(c.map, w.s->base, c.size);
		memset(res, 0, sizeof(*res));
		j.cache = caches[k];
		j.until_ms = rj.until_ms = sp_now_ms() + RACE_MS;
		sc = tu_fork(scribbler, &rj);
		rc = tu_fork(race_child, &j);
		st = tu_wait(rc);
		if (st == 128 + SIGALRM)
			fail_msg("cache %u (%s) raced: hung (%s)", caches[k], hc->name, res->msg);
		if (st)
			fail_msg("cache %u (%s) raced: crashed (status %d%s) %s", caches[k], hc->name, st,
				 st > 128 ? ", a signal" : "", res->msg);
		assert_int_equal(tu_wait(sc), 0);
		if (res->bad)
			fail_msg("cache %u (%s) raced: %s", caches[k], hc->name, res->msg);
		rounds += (unsigned)res->nviol;
	}
	printf("  3 caches' geometry rewritten for %u ms each under %u rounds of the checker "
	       "and the daemon's paths: no crash, no hang\n", RACE_MS, rounds);
	copy_free(&c);
	world_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(random_flips_readonly, unlink_leftover),
		cmocka_unit_test_teardown(targeted_readonly, unlink_leftover),
		cmocka_unit_test_teardown(redzone_flag_at_segment_end, unlink_leftover),
		cmocka_unit_test_teardown(header_geometry, unlink_leftover),
		cmocka_unit_test_teardown(writable_corrupted, unlink_leftover),
		cmocka_unit_test_teardown(header_rewritten_after_attach, unlink_leftover),
		cmocka_unit_test_teardown(checker_gaps, unlink_leftover),
		cmocka_unit_test_teardown(cache_geometry_scribbled, unlink_leftover),
		cmocka_unit_test_teardown(cache_geometry_raced, unlink_leftover),
	};

	return cmocka_run_group_tests(tests, setup_shared, teardown_shared);
}
