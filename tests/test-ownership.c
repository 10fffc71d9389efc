/* SPDX-License-Identifier: MIT */
/*
 * test-ownership.c - the client table and the ownership model (client.c):
 * every allocation records the slot that made it (slab owner tags for
 * objects, page metadata for large blocks, raw pages and page-pool
 * elements); a process that dies holding memory leaves a DEAD slot whose
 * orphans stay attributed to it (the checker is clean) until
 * sp_slot_release() gives them back, pool elements refilling reserves first;
 * RECLAIM_ON_EXIT pools; a full client table; unregister; every slot's
 * holdings counted in one walk (sp_holdings_all()) match the per-slot walk.
 *
 * Children never call cmocka (a failed assertion would longjmp into the
 * child's copy of the runner): they report through pipes and exit codes,
 * and arm alarm() so that nothing can hang.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-util.h"

/* ---- helpers -------------------------------------------------------------- */

static uint32_t pool_new(struct sp_seg *s, const char *name, uint32_t backing, uint64_t size,
			 uint32_t min, uint32_t max, uint32_t flags)
{
	struct sp_pool_params pp = {
		.elem_size = size, .min_nr = min, .max_nr = max, .backing = backing, .flags = flags,
	};
	uint32_t id = UINT32_MAX;

	TU_ASSERT_OK(sp_pool_create(s, name, &pp, &id));
	assert_non_null(sp_pool_get(s, id));
	return id;
}

static uint64_t backing_used(struct sp_seg *s, struct sp_pool *p)
{
	if (p->backing == SP_BACK_SLAB)
		return sp_caches(s)[p->cache_id].active_objs;
	return p->nr_pages_out;
}

static uint64_t free_pages(struct sp_seg *s)
{
	return s->hdr->buddy.free_pages;
}

/*
 * The owner tag of any allocation, read from where the allocator keeps it:
 * the slab's owner array for objects (0 when the object is free), the head
 * page's slot for large / raw / page-pool blocks.
 */
static uint16_t tag_of(struct sp_seg *s, sp_off_t off)
{
	uint32_t pfn, head, info, idx;
	struct sp_slab *slab;
	struct sp_cache *c;

	if (!sp_off_pfn(s, off, &pfn) || sp_block_head(s, pfn, &head))
		return SP_OWNER_NONE; /* not inside an allocated block */
	info = s->pages[head].info;
	if (SP_PG_KIND(info) != SP_KIND_SLAB) {
		assert_int_equal(sp_pfn_off(s, head), off); /* blocks: the head itself */
		return s->pages[head].slot;
	}
	c = &sp_caches(s)[s->pages[head].owner];
	TU_ASSERT_OK(sp_cache_obj_locate(s, c, off, &slab, &idx));
	if (!(slab->bitmap[idx / 64] >> (idx % 64) & 1)) {
		assert_int_equal(sp_slab_owners(c, slab)[idx], SP_OWNER_NONE);
		return SP_OWNER_NONE;
	}
	return sp_slab_owners(c, slab)[idx];
}

static void holdings_equal(const struct sp_holdings *a, const struct sp_holdings *b,
			   const char *what)
{
	if (a->objects != b->objects || a->bytes != b->bytes || a->pool_elems != b->pool_elems ||
	    a->large_blocks != b->large_blocks || a->pages != b->pages)
		fail_msg("%s: objects %llu/%llu bytes %llu/%llu pool_elems %llu/%llu "
			 "large_blocks %llu/%llu pages %llu/%llu",
			 what, (unsigned long long)a->objects, (unsigned long long)b->objects,
			 (unsigned long long)a->bytes, (unsigned long long)b->bytes,
			 (unsigned long long)a->pool_elems, (unsigned long long)b->pool_elems,
			 (unsigned long long)a->large_blocks, (unsigned long long)b->large_blocks,
			 (unsigned long long)a->pages, (unsigned long long)b->pages);
}

static void assert_holds_nothing(struct sp_seg *s, uint32_t slot)
{
	struct sp_holdings h, zero = { 0 };

	TU_ASSERT_OK(sp_slot_holdings(s, slot, &h));
	holdings_equal(&h, &zero, "holdings of an empty slot");
}


/* ---- every allocation records its slot ------------------------------------- */

static void allocations_record_slot(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20), *t = tu_seg_reattach(s, "second");
	uint32_t sid = pool_new(s, "slabs", SP_BACK_SLAB, 48, 1, 2, 0);
	uint32_t pid = pool_new(s, "pages", SP_BACK_PAGES, 6000, 1, 0, 0), cid;
	struct sp_pool *sp = sp_pool_get(s, sid), *pp = sp_pool_get(s, pid);
	struct sp_pool *tsp = sp_pool_get(t, sid), *tpp = sp_pool_get(t, pid);
	sp_off_t k[32], big, raw, e1, e2, e3, e4, o1, o2, treserve;
	unsigned nk = 0;

	assert_int_not_equal(s->owner, t->owner);
	assert_int_equal(s->owner, s->slot + 1);
	assert_int_equal(t->owner, t->slot + 1);
	TU_ASSERT_OK(sp_cache_create(s, "things", 200, 0, 0, NULL, &cid));
	/* every kmalloc class, then a large block, raw pages */
	for (unsigned i = 0; i < sp_nr_kmalloc_classes; i++) {
		struct sp_seg *who = i % 2 ? t : s;

		TU_ASSERT_OK(sp_kmalloc(who, sp_kmalloc_sizes[i], &k[nk]));
		assert_int_equal(tag_of(s, k[nk]), who->owner);
		assert_int_equal(tag_of(t, k[nk]), who->owner); /* same, seen by the other */
		nk++;
	}
	TU_ASSERT_OK(sp_kmalloc(t, 3 * SP_PAGE_SIZE, &big));
	assert_int_equal(tag_of(s, big), t->owner);
	assert_int_equal(SP_PG_KIND(t->pages[(big - t->hdr->data.off) >> SP_PAGE_SHIFT].info),
			 SP_KIND_LARGE);
	TU_ASSERT_OK(sp_buddy_alloc(t, 2, &raw));
	assert_int_equal(tag_of(s, raw), t->owner);
	/* named cache objects */
	TU_ASSERT_OK(sp_cache_alloc(s, sp_cache_get(s, cid), s->owner, &o1));
	TU_ASSERT_OK(sp_cache_alloc(t, sp_cache_get(t, cid), t->owner, &o2));
	assert_int_equal(tag_of(s, o1), s->owner);
	assert_int_equal(tag_of(s, o2), t->owner);
	/* pool elements: from the backing, then from the reserve (retagged) */
	treserve = ((sp_off_t *)sp_ptr(s, sp->elements_off))[0];
	assert_int_equal(tag_of(s, treserve), SP_OWNER_RESERVE);
	TU_ASSERT_OK(sp_pool_alloc(t, tsp, SP_ALLOC_NOWAIT, 0, &e1));
	assert_int_equal(sp->curr_nr, 1);
	TU_ASSERT_OK(sp_pool_alloc(s, sp, SP_ALLOC_NOWAIT, 0, &e2));
	assert_int_equal(sp->curr_nr, 0);
	assert_int_equal(e2, treserve);
	assert_int_equal(tag_of(s, e1), t->owner);
	assert_int_equal(tag_of(s, e2), s->owner);
	TU_ASSERT_OK(sp_pool_alloc(t, tpp, SP_ALLOC_NOWAIT, 0, &e3));
	assert_int_equal(tag_of(s, e3), t->owner);
	assert_int_equal(SP_PG_KIND(s->pages[(e3 - s->hdr->data.off) >> SP_PAGE_SHIFT].info),
			 SP_KIND_POOL);
	TU_ASSERT_OK(sp_pool_alloc(s, pp, SP_ALLOC_NOWAIT, 0, &e4));
	assert_int_equal(tag_of(s, e4), s->owner);
	{
		struct sp_holdings hs, ht;

		TU_ASSERT_OK(sp_slot_holdings(s, s->slot, &hs));
		TU_ASSERT_OK(sp_slot_holdings(s, t->slot, &ht));
		/* s: 12 kmalloc classes + o1 + e2; pool element e4 (pages) */
		assert_int_equal(hs.objects, (sp_nr_kmalloc_classes + 1) / 2 + 2);
		assert_int_equal(hs.pool_elems, 2);
		assert_int_equal(hs.large_blocks, 0);
		assert_int_equal(hs.pages, 2);
		/* t: 11 kmalloc classes + o2 + e1; e3; big and raw */
		assert_int_equal(ht.objects, sp_nr_kmalloc_classes / 2 + 2);
		assert_int_equal(ht.pool_elems, 2);
		assert_int_equal(ht.large_blocks, 2);
		assert_int_equal(ht.pages, 4 + 4 + 2);
	}
	tu_check_clean(s);
	/* freed memory carries no tag any more, whoever frees it */
	for (unsigned i = 0; i < nk; i++) {
		TU_ASSERT_OK(sp_kfree(i % 3 ? s : t, k[i]));
		assert_int_equal(tag_of(s, k[i]), SP_OWNER_NONE);
	}
	TU_ASSERT_OK(sp_kfree(s, big));
	TU_ASSERT_OK(sp_buddy_free(s, raw));
	assert_int_equal(s->pages[(big - s->hdr->data.off) >> SP_PAGE_SHIFT].slot, 0);
	assert_int_equal(s->pages[(raw - s->hdr->data.off) >> SP_PAGE_SHIFT].slot, 0);
	TU_ASSERT_OK(sp_cache_free(s, sp_cache_get(s, cid), o1));
	TU_ASSERT_OK(sp_cache_free(t, sp_cache_get(t, cid), o2));
	assert_int_equal(tag_of(s, o2), SP_OWNER_NONE);
	TU_ASSERT_OK(sp_pool_free(s, sp, e1)); /* refills the reserve */
	assert_int_equal(tag_of(s, e1), SP_OWNER_RESERVE);
	TU_ASSERT_OK(sp_pool_free(t, tsp, e2));
	TU_ASSERT_OK(sp_pool_free(s, pp, e3));
	TU_ASSERT_OK(sp_pool_free(s, pp, e4));
	assert_holds_nothing(s, s->slot);
	assert_holds_nothing(s, t->slot);
	TU_ASSERT_OK(sp_pool_destroy(s, sid));
	TU_ASSERT_OK(sp_pool_destroy(s, pid));
	TU_ASSERT_OK(sp_cache_destroy(s, cid));
	tu_check_clean(s);
	sp_seg_detach(t);
	tu_seg_free(s);
}

/* ---- every slot's holdings in one walk ------------------------------------- */

/* Every field of @a and @b, slot @slot: the one-pass and the per-slot walk. */
static void holdings_same(const struct sp_holdings *a, const struct sp_holdings *b,
			  uint32_t slot)
{
	const uint64_t fa[] = { a->cached, a->magsets, a->objects, a->bytes, a->pool_elems,
				a->large_blocks, a->pages };
	const uint64_t fb[] = { b->cached, b->magsets, b->objects, b->bytes, b->pool_elems,
				b->large_blocks, b->pages };
	static const char *const name[] = { "cached", "magsets", "objects", "bytes",
					    "pool_elems", "large_blocks", "pages" };

	for (unsigned i = 0; i < sizeof(fa) / sizeof(fa[0]); i++)
		if (fa[i] != fb[i])
			fail_msg("slot %u: %s %llu in sp_holdings_all, %llu in sp_slot_holdings",
				 slot, name[i], (unsigned long long)fa[i],
				 (unsigned long long)fb[i]);
}

/* sp_holdings_all()[slot] == sp_slot_holdings(slot), for every slot. */
static void assert_holdings_all(struct sp_seg *s)
{
	uint32_t n = s->geo.max_clients;
	struct sp_holdings *all = calloc(n, sizeof(*all));

	assert_non_null(all);
	TU_ASSERT_OK(sp_holdings_all(s, all, n));
	for (uint32_t slot = 0; slot < n; slot++) {
		struct sp_holdings h;

		TU_ASSERT_OK(sp_slot_holdings(s, slot, &h));
		holdings_same(&all[slot], &h, slot);
	}
	free(all);
}

static void holdings_all_match_per_slot(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20), *t = tu_seg_reattach(s, "second");
	struct sp_seg *u = tu_seg_reattach(s, "third");
	uint32_t sid = pool_new(s, "slabs", SP_BACK_SLAB, 48, 1, 0, 0);
	uint32_t pid = pool_new(s, "pages", SP_BACK_PAGES, 6000, 1, 0, 0), cid;
	struct sp_seg *who[] = { s, t, u };
	struct sp_magset *ms, *mt;
	struct sp_mag *m;
	struct sp_cache *c;
	struct sp_holdings h;
	sp_off_t off;

	(void)state;
	assert_holdings_all(s); /* nothing held by anyone */
	TU_ASSERT_OK(sp_cache_create(s, "things", 200, 0, 0, NULL, &cid));
	c = sp_cache_get(s, cid);
	/* mixed holdings, different amounts per slot */
	for (unsigned k = 0; k < 3; k++) {
		struct sp_seg *w = who[k];

		for (unsigned i = 0; i <= k; i++) {
			TU_ASSERT_OK(sp_kmalloc(w, sp_kmalloc_sizes[i + k], &off));
			TU_ASSERT_OK(sp_cache_alloc(w, sp_cache_get(w, cid), w->owner, &off));
			TU_ASSERT_OK(sp_pool_alloc(w, sp_pool_get(w, sid), SP_ALLOC_NOWAIT, 0,
						   &off)); /* slab-backed element */
		}
		for (unsigned i = 0; i < 2 - k; i++)
			TU_ASSERT_OK(sp_pool_alloc(w, sp_pool_get(w, pid), SP_ALLOC_NOWAIT, 0,
						   &off)); /* page-backed element */
	}
	TU_ASSERT_OK(sp_kmalloc(t, 3 * SP_PAGE_SIZE, &off)); /* large */
	TU_ASSERT_OK(sp_kmalloc(u, 5 * SP_PAGE_SIZE, &off));
	TU_ASSERT_OK(sp_buddy_alloc(t, 2, &off)); /* raw */
	/* objects cached in magazines: s in the named cache, t in a kmalloc class */
	TU_ASSERT_OK(sp_magset_create(s, 1, &ms));
	TU_ASSERT_OK(sp_mag_bind(s, ms, c, &m));
	assert_true(sp_mag_refill(s, c, m) > 0);
	TU_ASSERT_OK(sp_magset_create(t, 2, &mt));
	c = &sp_caches(t)[sp_kmalloc_class(64)];
	TU_ASSERT_OK(sp_mag_bind(t, mt, c, &m));
	assert_true(sp_mag_refill(t, c, m) > 0);
	/* the walk is only worth comparing if every kind is there */
	TU_ASSERT_OK(sp_slot_holdings(s, s->slot, &h));
	assert_true(h.cached > 0 && h.magsets == 1 && h.objects > 0 && h.pool_elems > 0);
	TU_ASSERT_OK(sp_slot_holdings(s, t->slot, &h));
	assert_true(h.cached > 0 && h.magsets == 1 && h.large_blocks == 2 && h.pages > 0);
	TU_ASSERT_OK(sp_slot_holdings(s, u->slot, &h));
	assert_true(h.objects > 0 && h.large_blocks == 1 && h.magsets == 0);
	assert_holdings_all(s);
	/* a DEAD slot keeps its holdings, its magazines included, until released */
	TU_ASSERT_OK(sp_client_mark_dead(s, t->slot));
	assert_holdings_all(s);
	TU_ASSERT_OK(sp_slot_release(s, t->slot, false, NULL));
	assert_holds_nothing(s, t->slot);
	assert_holdings_all(s);
	/* fewer entries than slots: only those are filled */
	{
		struct sp_holdings one[2] = { { 0 }, { .objects = 99 } };

		TU_ASSERT_OK(sp_holdings_all(s, one, 1));
		TU_ASSERT_OK(sp_slot_holdings(s, 0, &h));
		holdings_same(&one[0], &h, 0);
		assert_int_equal(one[1].objects, 99);
	}
	tu_check_clean(s);
	sp_magset_destroy(s, ms);
	assert_holdings_all(s);
	sp_seg_detach(t);
	sp_seg_detach(u);
	tu_seg_free(s);
}

/* ---- orphans of a dead process ------------------------------------------------ */

enum { N_SLAB = 5, N_PAGE = 3, N_CACHE = 7, N_SMALL = 4, N_LARGE = 2 };
#define SMALL_SIZE 100u		/* kmalloc-104 */
#define LARGE_SIZE 20000u	/* order 3: 8 pages */
#define RAW_ORDER 2u

struct report {
	uint32_t slot;
	int err;
	sp_off_t slab[N_SLAB], page[N_PAGE], cache[N_CACHE], small[N_SMALL], large[N_LARGE];
	sp_off_t raw;
};

struct orphan_arg {
	struct sp_seg *s;
	int fd;
	bool wait_for_kill;
};

static int orphan_child(void *arg)
{
	struct orphan_arg *a = arg;
	struct report r;
	struct sp_seg *c;
	struct sp_pool *sp, *pp;
	struct sp_cache *cc;
	uint32_t id;
	int i, e = 0;

	alarm(20);
	memset(&r, 0, sizeof(r));
	c = tu_child_attach((a->s)->name, "orphan-maker");
	if (!c)
		return 10;
	r.slot = c->slot;
	if (sp_pool_lookup(c, "slabpool", &id) || !(sp = sp_pool_get(c, id)) ||
	    sp_pool_lookup(c, "pagepool", &id) || !(pp = sp_pool_get(c, id)) ||
	    sp_cache_lookup(c, "objs", &id) || !(cc = sp_cache_get(c, id)))
		return 11;
	for (i = 0; !e && i < N_SLAB; i++)
		e = sp_pool_alloc(c, sp, SP_ALLOC_NOWAIT, 0, &r.slab[i]);
	for (i = 0; !e && i < N_PAGE; i++)
		e = sp_pool_alloc(c, pp, SP_ALLOC_NOWAIT, 0, &r.page[i]);
	for (i = 0; !e && i < N_CACHE; i++)
		e = sp_cache_alloc(c, cc, c->owner, &r.cache[i]);
	for (i = 0; !e && i < N_SMALL; i++)
		e = sp_kmalloc(c, SMALL_SIZE, &r.small[i]);
	for (i = 0; !e && i < N_LARGE; i++)
		e = sp_kmalloc(c, LARGE_SIZE, &r.large[i]);
	if (!e)
		e = sp_buddy_alloc(c, RAW_ORDER, &r.raw);
	r.err = e;
	if (write(a->fd, &r, sizeof(r)) != sizeof(r))
		return 12;
	if (e)
		return 13;
	if (a->wait_for_kill)
		for (;;)
			pause(); /* SIGKILL, or SIGALRM after 20 s */
	return 0; /* exit holding everything, without a goodbye */
}

static void orphans_case(bool kill_it)
{
	struct sp_seg *s = tu_seg_new(32u << 20);
	uint32_t sid = pool_new(s, "slabpool", SP_BACK_SLAB, 128, 2, 5, 0);
	uint32_t pid_ = pool_new(s, "pagepool", SP_BACK_PAGES, SP_PAGE_SIZE, 2, 3, 0), cid, slot;
	struct sp_pool *sp = sp_pool_get(s, sid), *pp = sp_pool_get(s, pid_);
	struct orphan_arg a = { .s = s, .wait_for_kill = kill_it };
	struct sp_holdings h, rel;
	struct sp_cache *cc;
	struct sp_client *cl;
	struct report r;
	sp_off_t warm;
	uint64_t fp;
	int fds[2], n, i;
	pid_t pid;

	TU_ASSERT_OK(sp_cache_create(s, "objs", 96, 0, 0, NULL, &cid));
	cc = sp_cache_get(s, cid);
	/* warm the cache so that its first slab is not part of the comparison */
	TU_ASSERT_OK(sp_cache_alloc(s, cc, s->owner, &warm));
	TU_ASSERT_OK(sp_cache_free(s, cc, warm));
	fp = free_pages(s);

	assert_int_equal(pipe(fds), 0);
	a.fd = fds[1];
	pid = tu_fork(orphan_child, &a);
	close(fds[1]);
	n = (int)read(fds[0], &r, sizeof(r));
	close(fds[0]);
	if (n != (int)sizeof(r)) {
		kill(pid, SIGKILL);
		fail_msg("child died before reporting (exit %d)", tu_wait(pid));
	}
	if (r.err) {
		kill(pid, SIGKILL);
		tu_wait(pid);
		fail_msg("child could not allocate: %d (%s)", r.err, sp_strerror(r.err));
	}
	slot = r.slot;
	assert_true(slot < s->hdr->max_clients && slot != s->slot);
	cl = &sp_clients(s)[slot];
	assert_int_equal(cl->state, SP_CLIENT_ALIVE);
	assert_int_equal(cl->pid, pid);
	assert_string_equal(cl->name, "orphan-maker");
	if (kill_it) {
		/* a live process is never reaped */
		assert_int_equal(sp_client_reap(s), 0);
		assert_int_equal(cl->state, SP_CLIENT_ALIVE);
		assert_int_equal(kill(pid, SIGKILL), 0);
		/* reaped as soon as it is a zombie, before anybody waits for it */
		for (i = 0, n = 0; i < 5000 && n == 0; i++) {
			n = sp_client_reap(s);
			if (!n)
				usleep(1000);
		}
		assert_int_equal(n, 1);
		assert_int_equal(tu_wait(pid), 128 + SIGKILL);
	} else {
		assert_int_equal(tu_wait(pid), 0);
		assert_int_equal(cl->state, SP_CLIENT_ALIVE); /* nobody noticed yet */
		assert_int_equal(sp_client_reap(s), 1);
	}
	assert_int_equal(cl->state, SP_CLIENT_DEAD);
	assert_true(cl->death_time != 0);
	assert_int_equal(cl->pid, pid); /* identity kept for attribution */
	assert_string_equal(cl->name, "orphan-maker");
	assert_int_equal(sp_client_reap(s), 0); /* once only */

	/* the child drained both reserves */
	assert_int_equal(sp->curr_nr, 0);
	assert_int_equal(pp->curr_nr, 0);
	/* every orphan carries the dead slot's tag */
	for (i = 0; i < N_SLAB; i++)
		assert_int_equal(tag_of(s, r.slab[i]), slot + 1);
	for (i = 0; i < N_PAGE; i++)
		assert_int_equal(tag_of(s, r.page[i]), slot + 1);
	for (i = 0; i < N_CACHE; i++)
		assert_int_equal(tag_of(s, r.cache[i]), slot + 1);
	for (i = 0; i < N_SMALL; i++)
		assert_int_equal(tag_of(s, r.small[i]), slot + 1);
	for (i = 0; i < N_LARGE; i++)
		assert_int_equal(tag_of(s, r.large[i]), slot + 1);
	assert_int_equal(tag_of(s, r.raw), slot + 1);

	/* holdings: exactly what it took */
	TU_ASSERT_OK(sp_slot_holdings(s, slot, &h));
	assert_int_equal(h.objects, N_SLAB + N_CACHE + N_SMALL);
	assert_int_equal(h.pool_elems, N_SLAB + N_PAGE);
	assert_int_equal(h.large_blocks, N_LARGE + 1);
	assert_int_equal(h.pages, N_PAGE * 1 + N_LARGE * 8 + (1u << RAW_ORDER));
	assert_int_equal(h.bytes, N_SLAB * 128 + N_CACHE * 96 + N_SMALL * 104 +
					  (uint64_t)(N_PAGE + N_LARGE * 8 + (1u << RAW_ORDER)) *
						  SP_PAGE_SIZE);
	assert_holds_nothing(s, s->slot); /* the parent holds nothing */
	/* orphans are attributed, not violations */
	tu_check_clean(s);
	/* a DEAD slot cannot be used again */
	assert_int_equal(sp_client_use_slot(s, slot), -ESRCH);

	/* release: everything back, reserves first, then the slot */
	TU_ASSERT_OK(sp_slot_release(s, slot, false, &rel));
	holdings_equal(&rel, &h, "released vs held");
	assert_holds_nothing(s, slot);
	assert_int_equal(cl->state, SP_CLIENT_FREE);
	assert_int_equal(sp->curr_nr, 2);
	assert_int_equal(backing_used(s, sp), 2);
	assert_int_equal(pp->curr_nr, 2);
	assert_int_equal(backing_used(s, pp), 2);
	for (i = 0; i < 2; i++) { /* the reserve now holds two of the orphans */
		sp_off_t e = ((sp_off_t *)sp_ptr(s, sp->elements_off))[i];
		sp_off_t f = ((sp_off_t *)sp_ptr(s, pp->elements_off))[i];
		bool found_e = false, found_f = false;

		for (int j = 0; j < N_SLAB; j++)
			found_e |= r.slab[j] == e;
		for (int j = 0; j < N_PAGE; j++)
			found_f |= r.page[j] == f;
		assert_true(found_e && found_f);
		assert_int_equal(tag_of(s, e), SP_OWNER_RESERVE);
		assert_int_equal(tag_of(s, f), SP_OWNER_RESERVE);
	}
	assert_int_equal(sp->nr_bad_free, 0);
	assert_int_equal(pp->nr_bad_free, 0);
	assert_int_equal(cc->active_objs, 0);
	for (i = 0; i < N_SMALL; i++)
		assert_int_equal(tag_of(s, r.small[i]), SP_OWNER_NONE);
	assert_int_equal(free_pages(s), fp);
	tu_check_clean(s);
	/* nothing is out: pools and cache go away */
	TU_ASSERT_OK(sp_pool_destroy(s, sid));
	TU_ASSERT_OK(sp_pool_destroy(s, pid_));
	TU_ASSERT_OK(sp_cache_destroy(s, cid));
	tu_check_clean(s);
	/* releasing a FREE slot is harmless */
	TU_ASSERT_OK(sp_slot_release(s, slot, false, &rel));
	assert_int_equal(rel.objects + rel.pages, 0);
	assert_int_equal(sp_slot_release(s, s->hdr->max_clients, false, NULL), -ESRCH);
	tu_seg_free(s);
}

static void orphans_of_exit(void **state)
{
	orphans_case(false);
}

static void orphans_of_sigkill(void **state)
{
	orphans_case(true);
}

/* ---- RECLAIM_ON_EXIT ---------------------------------------------------------- */

struct reclaim_arg {
	struct sp_seg *s;
	int fd;
};

static int reclaim_child(void *arg)
{
	static const char *const names[] = { "R", "RP", "N", "NP" };
	static const int count[] = { 3, 2, 3, 2 };
	struct reclaim_arg *a = arg;
	struct sp_seg *c;
	sp_off_t off;
	uint32_t id, slot;

	alarm(20);
	c = tu_child_attach((a->s)->name, "reclaimer");
	if (!c)
		return 10;
	slot = c->slot;
	if (write(a->fd, &slot, sizeof(slot)) != sizeof(slot))
		return 11;
	for (int k = 0; k < 4; k++) {
		struct sp_pool *p;

		if (sp_pool_lookup(c, names[k], &id) || !(p = sp_pool_get(c, id)))
			return 12;
		for (int i = 0; i < count[k]; i++)
			if (sp_pool_alloc(c, p, SP_ALLOC_NOWAIT, 0, &off))
				return 13;
	}
	if (sp_kmalloc(c, 40, &off) || sp_kmalloc(c, 9000, &off))
		return 14;
	return 0;
}

static void reclaim_on_exit(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint32_t ir = pool_new(s, "R", SP_BACK_SLAB, 64, 2, 3, SP_POOL_RECLAIM_ON_EXIT);
	uint32_t irp = pool_new(s, "RP", SP_BACK_PAGES, 4096, 1, 2, SP_POOL_RECLAIM_ON_EXIT);
	uint32_t in = pool_new(s, "N", SP_BACK_SLAB, 64, 2, 3, 0);
	uint32_t inp = pool_new(s, "NP", SP_BACK_PAGES, 4096, 1, 2, 0);
	struct sp_pool *R = sp_pool_get(s, ir), *RP = sp_pool_get(s, irp);
	struct sp_pool *N = sp_pool_get(s, in), *NP = sp_pool_get(s, inp);
	struct reclaim_arg a = { .s = s };
	struct sp_holdings h0, h1, rel;
	uint32_t slot = UINT32_MAX;
	int fds[2];
	pid_t pid;

	assert_int_equal(R->flags, SP_POOL_RECLAIM_ON_EXIT);
	assert_int_equal(N->flags, 0);
	assert_int_equal(pipe(fds), 0);
	a.fd = fds[1];
	pid = tu_fork(reclaim_child, &a);
	close(fds[1]);
	assert_int_equal(tu_wait(pid), 0);
	assert_int_equal(read(fds[0], &slot, sizeof(slot)), sizeof(slot));
	close(fds[0]);
	assert_int_equal(sp_client_reap(s), 1);
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_DEAD);
	/* every reserve is drained */
	assert_int_equal(R->curr_nr + RP->curr_nr + N->curr_nr + NP->curr_nr, 0);
	TU_ASSERT_OK(sp_slot_holdings(s, slot, &h0));
	assert_int_equal(h0.objects, 3 + 3 + 1);
	assert_int_equal(h0.pool_elems, 10);
	assert_int_equal(h0.large_blocks, 1);
	assert_int_equal(h0.pages, 2 + 2 + 4);
	tu_check_clean(s);

	/* automatic reclaim: only the RECLAIM_ON_EXIT pools get theirs back */
	TU_ASSERT_OK(sp_slot_release(s, slot, true, &rel));
	holdings_equal(&rel, &h0, "only_reclaim: what was held");
	assert_int_equal(R->curr_nr, 2);
	assert_int_equal(backing_used(s, R), 2);
	assert_int_equal(RP->curr_nr, 1);
	assert_int_equal(backing_used(s, RP), 1);
	assert_int_equal(sp_pool_nr_out(s, R) + sp_pool_nr_out(s, RP), 0);
	assert_int_equal(N->curr_nr, 0);
	assert_int_equal(backing_used(s, N), 3);
	assert_int_equal(NP->curr_nr, 0);
	assert_int_equal(backing_used(s, NP), 2);
	TU_ASSERT_OK(sp_slot_holdings(s, slot, &h1));
	assert_int_equal(h1.objects, 3 + 1);
	assert_int_equal(h1.pool_elems, 5);
	assert_int_equal(h1.large_blocks, 1);
	assert_int_equal(h1.pages, 2 + 4);
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_DEAD); /* still holds some */
	tu_check_clean(s);
	/* the RECLAIM pools are whole again: they can be destroyed, the others not */
	assert_int_equal(sp_pool_destroy(s, in), -EBUSY);
	assert_int_equal(sp_pool_destroy(s, inp), -EBUSY);
	TU_ASSERT_OK(sp_pool_destroy(s, ir));
	TU_ASSERT_OK(sp_pool_destroy(s, irp));
	tu_check_clean(s);

	/* a full release gives back the rest, reserves first, and frees the slot */
	TU_ASSERT_OK(sp_slot_release(s, slot, false, &rel));
	holdings_equal(&rel, &h1, "full release: what was held");
	assert_holds_nothing(s, slot);
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	assert_int_equal(N->curr_nr, 2);
	assert_int_equal(backing_used(s, N), 2);
	assert_int_equal(NP->curr_nr, 1);
	assert_int_equal(backing_used(s, NP), 1);
	assert_int_equal(N->nr_bad_free + NP->nr_bad_free, 0);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_pool_destroy(s, in));
	TU_ASSERT_OK(sp_pool_destroy(s, inp));
	tu_check_clean(s);
	tu_seg_free(s);
}

/* A dead slot whose only holdings are in a RECLAIM pool is freed by the reclaim. */
static void reclaim_frees_slot_when_nothing_left(void **state)
{
	struct sp_seg *s = tu_seg_new(8u << 20), *t = tu_seg_reattach(s, "short-lived");
	uint32_t id = pool_new(s, "R", SP_BACK_PAGES, 100, 1, 0, SP_POOL_RECLAIM_ON_EXIT);
	struct sp_pool *p = sp_pool_get(t, id);
	uint32_t slot = t->slot;
	struct sp_holdings rel;
	sp_off_t e;

	TU_ASSERT_OK(sp_pool_alloc(t, p, SP_ALLOC_NOWAIT, 0, &e));
	TU_ASSERT_OK(sp_client_mark_dead(s, slot));
	TU_ASSERT_OK(sp_slot_release(s, slot, true, &rel));
	assert_int_equal(rel.pool_elems, 1);
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	assert_int_equal(tag_of(s, e), SP_OWNER_NONE); /* reserve full: back to the backing */
	tu_check_clean(s);
	TU_ASSERT_OK(sp_pool_destroy(s, id));
	sp_seg_detach(t);
	tu_seg_free(s);
}

/* ---- the client table --------------------------------------------------------- */

static void client_table_fills(void **state)
{
	struct sp_seg_params sp;
	struct sp_seg *s, *t;
	uint32_t slot, extra[3];
	sp_off_t k;

	sp_seg_params_default(&sp);
	sp.size = 8u << 20;
	sp.max_clients = 4;
	s = tu_seg_new_params(&sp); /* slot 0 */
	assert_int_equal(s->slot, 0);
	for (int i = 0; i < 3; i++) {
		TU_ASSERT_OK(sp_client_register(s, "filler", getpid(), getuid(), getgid(), &extra[i]));
		assert_int_equal(extra[i], i + 1);
		assert_int_equal(sp_clients(s)[extra[i]].state, SP_CLIENT_ALIVE);
	}
	slot = 99;
	assert_int_equal(sp_client_register(s, "one-more", getpid(), getuid(), getgid(), &slot),
			 -ENFILE);
	assert_int_equal(slot, 99);
	assert_non_null(strstr(sp_errmsg(), "client table full"));
	assert_non_null(strstr(sp_errmsg(), "4"));
	/* a DEAD slot still counts until it is released */
	TU_ASSERT_OK(sp_client_mark_dead(s, 2));
	assert_int_equal(sp_clients(s)[2].state, SP_CLIENT_DEAD);
	assert_int_equal(sp_client_register(s, "one-more", getpid(), getuid(), getgid(), &slot),
			 -ENFILE);
	TU_ASSERT_OK(sp_slot_release(s, 2, false, NULL));
	assert_int_equal(sp_clients(s)[2].state, SP_CLIENT_FREE);
	TU_ASSERT_OK(sp_client_register(s, "one-more", getpid(), getuid(), getgid(), &slot));
	assert_int_equal(slot, 2);
	assert_string_equal(sp_clients(s)[2].name, "one-more");
	/* a DEAD slot holding memory stays taken through a reclaim-only release */
	t = tu_seg_reattach(s, NULL);
	TU_ASSERT_OK(sp_client_use_slot(t, 3));
	TU_ASSERT_OK(sp_kmalloc(t, 64, &k));
	TU_ASSERT_OK(sp_client_mark_dead(s, 3));
	TU_ASSERT_OK(sp_slot_release(s, 3, true, NULL));
	assert_int_equal(sp_clients(s)[3].state, SP_CLIENT_DEAD);
	assert_int_equal(tag_of(s, k), 4);
	assert_int_equal(sp_client_register(s, "one-more", getpid(), getuid(), getgid(), &slot),
			 -ENFILE);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_slot_release(s, 3, false, NULL));
	assert_int_equal(sp_clients(s)[3].state, SP_CLIENT_FREE);
	assert_int_equal(tag_of(s, k), SP_OWNER_NONE);
	TU_ASSERT_OK(sp_client_register(s, "last", getpid(), getuid(), getgid(), &slot));
	assert_int_equal(slot, 3);
	/* wrong slots and processes */
	assert_int_equal(sp_client_register(s, "ghost", 0x3ffffff0, 0, 0, &slot), -ESRCH);
	assert_int_equal(sp_client_use_slot(s, 4), -ESRCH);
	assert_int_equal(sp_client_use_slot(s, UINT32_MAX), -ESRCH);
	assert_int_equal(sp_client_mark_dead(s, 4), -ESRCH);
	TU_ASSERT_OK(sp_client_mark_dead(s, 1));
	TU_ASSERT_OK(sp_slot_release(s, 1, false, NULL));
	assert_int_equal(sp_client_use_slot(s, 1), -ESRCH); /* FREE */
	assert_int_equal(sp_client_mark_dead(s, 1), -ESRCH);
	assert_int_equal(sp_slot_holdings(s, 4, &(struct sp_holdings){ 0 }), -ESRCH);
	/* a long name is truncated, never overflows */
	TU_ASSERT_OK(sp_client_register(s, "a-client-name-much-longer-than-thirty-one-bytes",
					getpid(), getuid(), getgid(), &slot));
	assert_int_equal(strlen(sp_clients(s)[slot].name), SP_CLIENT_NAME_MAX);
	tu_check_clean(s);
	sp_seg_detach(t);
	tu_seg_free(s);
}

/* A slot whose pid now names another process (start time differs) is reaped. */
static void reap_detects_pid_reuse(void **state)
{
	struct sp_seg *s = tu_seg_new(8u << 20);
	uint32_t slot;

	TU_ASSERT_OK(sp_client_register(s, "reused", getpid(), getuid(), getgid(), &slot));
	assert_int_equal(sp_client_reap(s), 0); /* this process is alive */
	sp_clients(s)[slot].start_time ^= 0x5555;
	assert_int_equal(sp_client_reap(s), 1);
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_DEAD);
	assert_int_equal(sp_clients(s)[s->slot].state, SP_CLIENT_ALIVE);
	TU_ASSERT_OK(sp_slot_release(s, slot, false, NULL));
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	tu_check_clean(s);
	tu_seg_free(s);
}

/*
 * A slot registered without a start time (the daemon records it after its
 * reply): only sp_client_set_start_time() for the same live pid fills it;
 * a reap fills it from a live pid and marks the slot dead when the pid is
 * gone.
 */
static void reap_fills_unknown_start_time(void **state)
{
	struct sp_seg *s = tu_seg_new(8u << 20);
	uint64_t mine = sp_proc_start_time(getpid());
	uint32_t a, b, c;
	pid_t dead;

	(void)state;
	assert_true(mine != 0);
	dead = fork();
	assert_true(dead >= 0);
	if (dead == 0)
		_exit(0);
	assert_int_equal(tu_wait(dead), 0);
	TU_ASSERT_OK(sp_client_register_ex(s, "late", getpid(), getuid(), getgid(), 0, &a));
	TU_ASSERT_OK(sp_client_register_ex(s, "gone", dead, getuid(), getgid(), 0, &b));
	TU_ASSERT_OK(sp_client_register_ex(s, "known", getpid(), getuid(), getgid(), 0, &c));
	assert_int_equal(sp_clients(s)[a].start_time, 0);
	/* set: only for the slot's pid, only once */
	assert_int_equal(sp_client_set_start_time(s, c, dead, 77), -ESRCH);
	TU_ASSERT_OK(sp_client_set_start_time(s, c, getpid(), mine));
	assert_int_equal(sp_client_set_start_time(s, c, getpid(), mine + 1), -ESRCH);
	assert_int_equal(sp_clients(s)[c].start_time, mine);
	/* reap: the live one is filled in, the gone one marked */
	assert_int_equal(sp_client_reap(s), 1);
	assert_int_equal(sp_clients(s)[a].state, SP_CLIENT_ALIVE);
	assert_int_equal(sp_clients(s)[a].start_time, mine);
	assert_int_equal(sp_clients(s)[b].state, SP_CLIENT_DEAD);
	assert_int_equal(sp_clients(s)[c].state, SP_CLIENT_ALIVE);
	assert_int_equal(sp_client_reap(s), 0);
	TU_ASSERT_OK(sp_slot_release(s, b, false, NULL));
	TU_ASSERT_OK(sp_client_mark_dead(s, a));
	TU_ASSERT_OK(sp_client_mark_dead(s, c));
	TU_ASSERT_OK(sp_slot_release(s, a, false, NULL));
	TU_ASSERT_OK(sp_slot_release(s, c, false, NULL));
	tu_check_clean(s);
	tu_seg_free(s);
}

/* ---- session tokens --------------------------------------------------------- */

#define TOK_N 40

struct tok_child {
	int pipe_wr;
};

static int tok_child_main(void *arg)
{
	struct tok_child *tc = arg;
	uint64_t v[TOK_N];

	for (int i = 0; i < TOK_N; i++)
		if (sp_prim_random(&v[i], sizeof(v[i])))
			return 1;
	return write(tc->pipe_wr, v, sizeof(v)) == (ssize_t)sizeof(v) ? 0 : 2;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Are the @n values of @v all different? */
static bool all_distinct(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	for (size_t i = 1; i < n; i++)
		if (v[i] == v[i - 1])
			return false;
	return true;
}

/*
 * Tokens come from a batch of random bytes (sp_prim_random()): no byte is
 * handed out twice, within a process or across fork().  A child forked
 * while the parent's batch is half used starts with none of it: were it
 * to inherit the batch, its values would be the parent's next ones.
 */
static void tokens_never_repeat(void **state)
{
	struct sp_seg *s = tu_seg_new(8u << 20);
	enum { SEQ = 2000 };
	uint64_t *v = calloc(SEQ + 2 * TOK_N, sizeof(*v));
	struct tok_child tc;
	uint32_t a, b;
	int fds[2];
	pid_t pid;

	(void)state;
	assert_non_null(v);
	/* a long run in one process wraps the batch many times */
	for (int i = 0; i < SEQ; i++)
		TU_ASSERT_OK(sp_prim_random(&v[i], sizeof(v[i])));
	assert_true(all_distinct(v, SEQ));
	/* the parent's batch is partly used now: the child must not repeat it */
	TU_ASSERT_OK(sp_prim_random(&v[0], sizeof(v[0])));
	assert_int_equal(pipe(fds), 0);
	tc.pipe_wr = fds[1];
	pid = tu_fork(tok_child_main, &tc);
	close(fds[1]);
	for (int i = 0; i < TOK_N; i++)
		TU_ASSERT_OK(sp_prim_random(&v[i], sizeof(v[i])));
	assert_int_equal(read(fds[0], v + TOK_N, TOK_N * sizeof(*v)), TOK_N * sizeof(*v));
	close(fds[0]);
	assert_int_equal(tu_wait(pid), 0);
	assert_true(all_distinct(v, 2 * TOK_N));
	/* and slots get such tokens: different, never 0 */
	TU_ASSERT_OK(sp_client_register(s, "tok-a", getpid(), getuid(), getgid(), &a));
	TU_ASSERT_OK(sp_client_register(s, "tok-b", getpid(), getuid(), getgid(), &b));
	assert_true(sp_clients(s)[a].token && sp_clients(s)[b].token);
	assert_true(sp_clients(s)[a].token != sp_clients(s)[b].token);
	TU_ASSERT_OK(sp_client_mark_dead(s, a));
	TU_ASSERT_OK(sp_client_mark_dead(s, b));
	TU_ASSERT_OK(sp_slot_release(s, a, false, NULL));
	TU_ASSERT_OK(sp_slot_release(s, b, false, NULL));
	free(v);
	tu_check_clean(s);
	tu_seg_free(s);
}

static void unregister(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20), *t, *u;
	uint32_t id = pool_new(s, "up", SP_BACK_SLAB, 32, 1, 0, 0), x, y;
	struct sp_holdings h;
	sp_off_t k, big, e;

	/* holding nothing: the slot is freed at once */
	t = tu_seg_reattach(s, "temp");
	x = t->slot;
	assert_int_equal(sp_clients(s)[x].state, SP_CLIENT_ALIVE);
	TU_ASSERT_OK(sp_client_unregister(t, x));
	assert_int_equal(sp_clients(s)[x].state, SP_CLIENT_FREE);
	assert_int_equal(t->owner, SP_OWNER_NONE);
	assert_int_equal(t->slot, UINT32_MAX);
	assert_int_equal(sp_kmalloc(t, 64, &k), -EPERM);
	assert_int_equal(sp_pool_alloc(t, sp_pool_get(t, id), SP_ALLOC_NOWAIT, 0, &e), -EPERM);
	assert_int_equal(sp_client_unregister(t, x), -ESRCH);
	/* holding something: DEAD, holdings attributed */
	u = tu_seg_reattach(s, "holder");
	y = u->slot;
	TU_ASSERT_OK(sp_kmalloc(u, 64, &k));
	TU_ASSERT_OK(sp_kmalloc(u, 5 * SP_PAGE_SIZE, &big));
	TU_ASSERT_OK(sp_pool_alloc(u, sp_pool_get(u, id), SP_ALLOC_NOWAIT, 0, &e));
	TU_ASSERT_OK(sp_client_unregister(u, y));
	assert_int_equal(sp_clients(s)[y].state, SP_CLIENT_DEAD);
	assert_int_equal(u->owner, SP_OWNER_NONE);
	TU_ASSERT_OK(sp_slot_holdings(s, y, &h));
	assert_int_equal(h.objects, 2);
	assert_int_equal(h.pool_elems, 1);
	assert_int_equal(h.large_blocks, 1);
	assert_int_equal(h.pages, 8);
	assert_int_equal(tag_of(s, k), y + 1);
	assert_int_equal(tag_of(s, big), y + 1);
	assert_int_equal(tag_of(s, e), y + 1);
	tu_check_clean(s);
	assert_int_equal(sp_client_unregister(u, y), -ESRCH);
	/* the handle can register afresh; the old slot is not reused while DEAD */
	tu_register(u, "again");
	assert_int_not_equal(u->slot, y);
	TU_ASSERT_OK(sp_slot_release(s, y, false, NULL));
	assert_int_equal(sp_clients(s)[y].state, SP_CLIENT_FREE);
	assert_holds_nothing(s, y);
	assert_int_equal(sp_pool_get(s, id)->curr_nr, 1);
	TU_ASSERT_OK(sp_client_unregister(u, u->slot));
	TU_ASSERT_OK(sp_pool_destroy(s, id));
	tu_check_clean(s);
	sp_seg_detach(t);
	sp_seg_detach(u);
	tu_seg_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(allocations_record_slot),
		cmocka_unit_test(holdings_all_match_per_slot),
		cmocka_unit_test(orphans_of_exit),
		cmocka_unit_test(orphans_of_sigkill),
		cmocka_unit_test(reclaim_on_exit),
		cmocka_unit_test(reclaim_frees_slot_when_nothing_left),
		cmocka_unit_test(client_table_fills),
		cmocka_unit_test(reap_detects_pid_reuse),
		cmocka_unit_test(tokens_never_repeat),
		cmocka_unit_test(reap_fills_unknown_start_time),
		cmocka_unit_test(unregister),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
