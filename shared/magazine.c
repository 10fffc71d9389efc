/* SPDX-License-Identifier: MIT */
/*
 * magazine.c - per-thread magazines of free objects (Bonwick's magazine
 * layer; SLUB's per-cpu freelists) in front of every slab cache.
 *
 * Each thread of each client that allocates gets a magazine set: one
 * 128 KiB buddy block (kind SP_KIND_MAG, page slot = the client's owner
 * tag) holding SP_MAGSET_MAGS magazines, picked by a hash of the cache
 * id (sp_mag_index()).  A magazine is a stack of up to sp_mag_cap() free
 * objects of one cache.
 * Alloc pops and free pushes with no lock (magazine.h); when a magazine
 * runs empty it is refilled with half a magazine in one go under the cache
 * lock, and when it is full half of it is flushed back the same way.
 *
 *	thread ---pop/push---> struct sp_mag ---refill/flush---> slab cache
 *	          (no lock)     (in the segment)   (cache lock, in bulk)
 *
 * The owner tag is the truth.  An object in a magazine stays allocated in
 * its slab's bitmap but is tagged SP_OWNER_MAG(slot + 1): free, cached by
 * that slot.  So:
 *   - the checker and stats count it as free (sp_mag_cached() sums the
 *     magazines of the live slots; the checker counts tags);
 *   - a user free of it is a double free (the tag is not a user tag);
 *   - when a client dies, the daemon frees every object tagged with its
 *     magazine tag (client.c, whatever the magazine arrays say) and the
 *     blocks of its magazine sets: nothing is lost, whatever instruction
 *     the client died at.  The arrays are only a cache of which objects
 *     carry the tag; a push or pop killed between its two stores leaves
 *     either a cached object the array does not list (freed by the
 *     daemon) or a held object the array still lists (an orphan of the
 *     dead slot, never handed out again: the array dies with the process).
 *
 * What never goes into a magazine: mempool reserve elements (reserve takes
 * and refills use the pool lock, as without magazines), objects of caches
 * with poisoning or red zones, of pools with a max_nr cap, or when a pool
 * has waiters or a short reserve (the client library takes the locked path
 * then, and flushing a pool's magazine refills its reserve first).
 *
 * Counters: pops and pushes count in the magazine and are folded into the
 * cache's (and pool's) nr_alloc/nr_free at each refill and flush.
 *
 * Runs: the bulk calls pop and push many at once (sp_mag_take_run(),
 * sp_mag_put_run() in magazine.h): each object checked and retagged as a
 * single pop or push does, one held raise before the first tag and one nr
 * commit after the last.  A death inside a run leaves each of its objects
 * in a state a single pop's or push's death leaves; the run's alloc or
 * free counts (statistics) are lost with it, as a single one's are.
 *
 * The held bound (layout.h): each magazine's held is its share of its
 * slot's bound of what a walk could find.  A pop raises it before its
 * retag, a push lowers it after its nr commit (raising it before its
 * retag for another slot's object), a refill adds what it asks for before
 * the bulk alloc tags them and takes it off after nr lists them, a flush
 * into a pool's reserve covers the entry it drops until the element is
 * freed, and emptying a magazine without freeing (forget(): its cache
 * went, or nr was scribbled) adds what it listed.  When a set goes
 * (sp_magset_destroy(), sp_mag_release_slot()) its counts and what it
 * lists move to the slot's held, the positive terms before the set is
 * uncommitted and the negative ones after: a death anywhere over-counts.
 *
 * Locking: a magazine is written only by its thread.  Refill and flush take
 * the cache lock (3); the pool lock (2) is taken before it, never inside.
 * Creating and destroying a set takes the registry lock (1), which protects
 * the per-slot list of sets (sp_client.mag_head through sp_page.next/prev),
 * then the buddy lock (4).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "magazine.h"

/**
 * sp_magset_valid() - is @pfn the head of a committed magazine set?
 * @s: segment.  @pfn: candidate head.
 *
 * Does not sleep.
 * Return: true when the block, its slot and its magic agree.
 */
bool sp_magset_valid(const struct sp_seg *s, uint32_t pfn)
{
	const struct sp_magset *set;
	uint32_t slot;

	if (pfn >= s->geo.nr_pages || (uint64_t)pfn + (1u << SP_MAGSET_ORDER) > s->geo.nr_pages ||
	    s->pages[pfn].info != SP_PG_INFO(SP_PG_ALLOC, SP_MAGSET_ORDER, SP_KIND_MAG))
		return false;
	set = (const struct sp_magset *)(s->base + sp_pfn_off(s, pfn));
	slot = set->slot;
	return set->magic == (SP_MAGSET_MAGIC ^ pfn) && slot < s->geo.max_clients &&
	       s->pages[pfn].slot == slot + 1;
}

static uint32_t set_pfn(const struct sp_seg *s, const struct sp_magset *set)
{
	return (uint32_t)(((const uint8_t *)set - s->data) >> SP_PAGE_SHIFT);
}

/* Objects @m lists, at most SP_MAG_OBJS (nr may be scribbled). */
static uint32_t listed(const struct sp_mag *m)
{
	uint32_t nr = __atomic_load_n(&m->nr, __ATOMIC_RELAXED);

	return nr <= SP_MAG_OBJS ? nr : SP_MAG_OBJS;
}

/* Empty @m without freeing what it lists: those objects keep our magazine
 * tag (freed by tag when the slot goes), unlisted, so they join the held
 * bound first (layout.h).  Its thread only. */
static void forget(struct sp_mag *m)
{
	m->held = (int64_t)((uint64_t)m->held + listed(m));
	SP_CRASH_POINT("mag.forget");
	m->nr = 0;
}

/**
 * sp_mag_geo_init() - copy what the fast paths need of @c into @g.
 * @s: segment.  @c: a LIVE cache of it.  @g: filled.
 *
 * Checks a snapshot of the descriptor (sp_cache_snapshot()) and copies
 * from that same snapshot, since the descriptor is shared and may be
 * scribbled on at any time: the slab fits the data area, the bitmap and
 * the owner tags fit the slab, the reciprocal matches the stride.  So the
 * fast paths can trust the copy and only check what they read from the
 * slabs.  Does not sleep.
 * Return: false when @c's geometry is inconsistent (take the locked path).
 */
bool sp_mag_geo_init(const struct sp_seg *s, const struct sp_cache *c, struct sp_mag_geo *g)
{
	struct sp_cache d;

	memset(g, 0, sizeof(*g));
	if (sp_cache_snapshot(s, c, &d))
		return false;
	sp_mag_geo_of(s, &d, g);
	return true;
}

/**
 * sp_mag_geo_of() - sp_mag_geo_init() from a snapshot already taken.
 * @s: segment.  @d: a snapshot sp_cache_snapshot() accepted.  @g: filled.
 *
 * Does not sleep.
 */
void sp_mag_geo_of(const struct sp_seg *s, const struct sp_cache *d, struct sp_mag_geo *g)
{
	memset(g, 0, sizeof(*g));
	g->base = s->base;
	g->data = s->data;
	g->pages = s->pages;
	g->data_off = (uint64_t)(s->data - s->base);
	g->data_size = s->geo.data.size;
	g->slab_mask = ~(((uint64_t)SP_PAGE_SIZE << d->order) - 1);
	g->page_key = SP_PG_INFO(SP_PG_ALLOC, d->order, SP_KIND_SLAB) | (uint64_t)d->id << 32;
	g->recip = d->recip;
	g->obj_start = d->obj_start;
	g->stride = d->stride;
	g->objperslab = d->objperslab;
	g->owners_off = d->owners_off;
	g->magic = SP_SLAB_MAGIC ^ d->id;
	g->bound_id = d->id + 1;
	g->gen = d->gen;
	g->mag_index = sp_mag_index(d->id);
	g->mag_cap = sp_mag_cap_of(d->stride);
}

/**
 * sp_mag_locate() - sp_mag_geo_locate() for a cache descriptor.
 * @s: segment.  @c: a LIVE cache.  @off: claimed object of @c.
 * @slab: @idx: where it is.
 *
 * Does not sleep.
 * Return: false when @off is not an object of @c.
 */
bool sp_mag_locate(const struct sp_seg *s, const struct sp_cache *c, sp_off_t off,
		   struct sp_slab **slab, uint32_t *idx)
{
	struct sp_mag_geo g;

	return sp_mag_geo_init(s, c, &g) && sp_mag_geo_locate(&g, off, slab, idx);
}

/**
 * sp_mag_tag() - the owner tag of object @off of cache @c, or NULL.
 * @s: segment.  @c: a LIVE cache.  @off: claimed object of @c.
 * @allocated: whether the bitmap says the object is allocated.
 *
 * See sp_mag_geo_locate().  Does not sleep.
 */
uint16_t *sp_mag_tag(const struct sp_seg *s, const struct sp_cache *c, sp_off_t off,
		     bool *allocated)
{
	struct sp_mag_geo g;
	struct sp_slab *slab;
	uint32_t idx;

	if (!sp_mag_geo_init(s, c, &g) || !sp_mag_geo_locate(&g, off, &slab, &idx))
		return NULL;
	*allocated = slab->bitmap[idx / 64] >> (idx % 64) & 1;
	return sp_mag_geo_tag(&g, slab, idx);
}

/**
 * sp_mag_pop() - take an object from @m for the calling slot.
 * @s: segment with a slot.  @c: the cache @m is bound to.  @m: this
 * thread's magazine.  @off: the object.
 *
 * Entries that are not this slot's cached objects (a scribbled magazine)
 * are dropped, never handed out.  Does not sleep.
 * Return: true, or false when the magazine is empty (refill it).
 */
bool sp_mag_pop(struct sp_seg *s, const struct sp_cache *c, struct sp_mag *m, sp_off_t *off)
{
	struct sp_mag_geo g;
	enum sp_mag_take_result r;

	if (!sp_mag_geo_init(s, c, &g)) {
		forget(m); /* what it listed is still tagged, freed at exit */
		return false;
	}
	while ((r = sp_mag_take(s, &g, m, off)) == SP_MAG_BAD) {
		if (m->nr > SP_MAG_OBJS)
			forget(m);
		else /* the top entry is not our cached object: nothing unlisted */
			m->nr--;
	}
	return r == SP_MAG_TAKEN;
}

/**
 * sp_mag_pop_run() - sp_mag_take_run() for a cache descriptor.
 * @s: segment with a slot.  @c: the cache @m is bound to.  @m: magazine.
 * @v: receives pointers.  @n: how many at most.
 *
 * Does not sleep.
 * Return: how many were taken (0: none cached, or the top entry is bad:
 * sp_mag_pop() drops it).
 */
unsigned sp_mag_pop_run(struct sp_seg *s, const struct sp_cache *c, struct sp_mag *m, void **v,
			unsigned n)
{
	struct sp_mag_geo g;

	return sp_mag_geo_init(s, c, &g) ? sp_mag_take_run(s, &g, m, v, n) : 0;
}

/**
 * sp_mag_push_run() - sp_mag_put_run() for a cache descriptor.
 * @s: segment with a slot.  @c: the cache @m is bound to.  @m: magazine.
 * @v: the objects (pointers).  @n: how many at most.
 *
 * Does not sleep.
 * Return: how many were pushed (sp_mag_push() says why the next one is not).
 */
unsigned sp_mag_push_run(struct sp_seg *s, const struct sp_cache *c, struct sp_mag *m,
			 void *const *v, unsigned n)
{
	struct sp_mag_geo g;

	return sp_mag_geo_init(s, c, &g) ? sp_mag_put_run(s, &g, m, v, n) : 0;
}

/**
 * sp_mag_push() - put a held object of @c into @m.
 * @s: segment with a slot.  @c: the cache @m is bound to.  @m: this
 * thread's magazine.  @off: the object.
 *
 * Does not sleep.
 * Return: an enum sp_mag_push_result.
 */
enum sp_mag_push_result sp_mag_push(struct sp_seg *s, const struct sp_cache *c, struct sp_mag *m,
				    sp_off_t off)
{
	struct sp_mag_geo g;

	if (!sp_mag_geo_init(s, c, &g))
		return SP_MAG_REFUSED;
	return sp_mag_put(s, &g, m, off);
}

/**
 * sp_magset_create() - a magazine set for the calling thread.
 * @s: segment with a registered slot.  @tid: the thread (for views).
 * @out: the set.
 *
 * May sleep.
 * Return: 0; -EPERM without a slot; -ENOMEM when the segment is full.
 */
int sp_magset_create(struct sp_seg *s, uint32_t tid, struct sp_magset **out)
{
	struct sp_magset *set;
	uint32_t pfn;
	int rc;

	if (!s->owner || s->slot >= s->geo.max_clients)
		return sp_err(-EPERM, "register a client slot before allocating");
	rc = sp_registry_lock(s);
	if (rc)
		return rc;
	rc = sp_buddy_lock(s);
	if (rc)
		goto out;
	rc = sp_buddy_alloc_locked(s, SP_MAGSET_ORDER, SP_KIND_MAG, 0, s->owner, &pfn);
	sp_buddy_unlock(s);
	if (rc)
		goto out;
	set = (struct sp_magset *)(s->base + sp_pfn_off(s, pfn));
	memset(set, 0, sizeof(*set));
	set->slot = s->slot;
	set->tid = tid;
	sp_plist_add(s, &sp_clients(s)[s->slot].mag_head, pfn);
	SP_CRASH_POINT("mag.set.linked");
	__atomic_store_n(&set->magic, SP_MAGSET_MAGIC ^ pfn, __ATOMIC_RELEASE);
	*out = set;
out:
	sp_registry_unlock(s);
	return rc;
}

/* Add what @m counted since the last fold to the counters; cache locked. */
static void fold_locked(struct sp_seg *s, struct sp_cache *c, struct sp_mag *m)
{
	uint32_t na = m->nr_alloc, nf = m->nr_free;

	sp_assert(sp_lock_held(&c->lock));
	if (!na && !nf)
		return;
	m->nr_alloc = m->nr_free = 0;
	c->nr_alloc += na;
	c->nr_free += nf;
	if (c->pool_id && c->pool_id <= s->geo.max_pools) {
		struct sp_pool *p = &sp_pools(s)[c->pool_id - 1];

		__atomic_fetch_add(&p->nr_alloc, na, __ATOMIC_RELAXED);
		__atomic_fetch_add(&p->nr_free, nf, __ATOMIC_RELAXED);
	}
}

/**
 * sp_mag_settle() - pay what @m owes another slot's held bound (sp_mag_owe()).
 * @s: segment with a slot.  @m: the calling thread's magazine.
 *
 * The debt is cleared before it is paid, so a death in between loses it
 * (the holder's bound stays high: safe) and never pays it twice.  Does not
 * sleep.
 */
void sp_mag_settle(struct sp_seg *s, struct sp_mag *m)
{
	uint32_t o = m->owed;

	if (!(o & 0xffffu))
		return;
	m->owed = 0;
	__asm__ __volatile__("" ::: "memory"); /* cleared, not paid: over-counts */
	sp_slot_held_add(s, (uint16_t)(o >> 16), -(int64_t)(o & 0xffffu));
}

/* sp_mag_owe() when the debt is to another holder, or full. */
void sp_mag_owe_slow(struct sp_seg *s, struct sp_mag *m, uint16_t holder)
{
	sp_mag_settle(s, m);
	m->owed = (uint32_t)holder << 16 | 1u;
}

/**
 * sp_mag_refill() - fill @m to half a magazine from its cache.
 * @s: segment with a slot.  @c: the LIVE cache @m is bound to.  @m: a
 * magazine of the calling thread.
 *
 * May sleep (cache lock; growing the cache).
 * Return: objects now in @m (> 0), or a negative errno (-ENOMEM: the cache
 * cannot grow; the caller falls back to the locked path).
 */
int sp_mag_refill(struct sp_seg *s, struct sp_cache *c, struct sp_mag *m)
{
	int rc, k;
	uint32_t want;

	sp_mag_settle(s, m);
	rc = sp_cache_lock(s, c);
	if (rc)
		return rc;
	fold_locked(s, c, m);
	if (m->nr > SP_MAG_OBJS)
		forget(m); /* scribbled: what it listed is still tagged, freed at exit */
	if (m->nr >= sp_mag_cap(c) / 2) {
		k = (int)m->nr;
		goto out;
	}
	/* the bulk alloc tags them ours before nr lists them: counted first */
	want = sp_mag_cap(c) / 2 - m->nr;
	m->held += want;
	SP_CRASH_POINT("mag.refill.held");
	k = sp_cache_alloc_bulk_locked(s, c, SP_OWNER_MAG(s->owner), &m->objs[m->nr], want);
	if (k > 0) {
		SP_CRASH_POINT("mag.refill");
		m->nr += (uint32_t)k;
		c->nr_mag_refill++;
		k = (int)m->nr;
	}
	SP_CRASH_POINT("mag.refill.listed"); /* listed (or never tagged): uncounted */
	m->held -= want;
out:
	sp_cache_unlock(c);
	return k;
}

/* Pool whose backing is @c, when its reserve is short or it has waiters. */
static struct sp_pool *needy_pool(struct sp_seg *s, struct sp_cache *c)
{
	struct sp_pool *p;

	if (!c->pool_id)
		return NULL;
	p = sp_pool_get(s, c->pool_id - 1);
	if (!p || (__atomic_load_n(&p->curr_nr, __ATOMIC_RELAXED) >= p->min_nr &&
		   !__atomic_load_n(&p->nr_waiters, __ATOMIC_RELAXED)))
		return NULL;
	return p;
}

/**
 * sp_mag_flush() - give objects of @m back until @keep are left.
 * @s: segment with a slot.  @c: the cache @m is bound to.  @m: a magazine
 * of the calling thread.  @keep: objects to leave in it.
 *
 * A pool's short reserve is refilled first and its waiters woken, as by
 * any free.  Entries that are not this slot's cached objects (a scribbled
 * magazine) are dropped.  May sleep.
 * Return: 0 or a negative errno (a lock could not be taken).
 */
int sp_mag_flush(struct sp_seg *s, struct sp_cache *c, struct sp_mag *m, unsigned keep)
{
	uint16_t mytag = SP_OWNER_MAG(s->owner);
	struct sp_pool *p = needy_pool(s, c);
	struct sp_cache d; /* what locate and the free use must be one snapshot */
	struct sp_mag_geo g;
	bool geo_ok = sp_cache_snapshot(s, c, &d) == 0 && sp_mag_geo_init(s, &d, &g);
	int rc;

	sp_mag_settle(s, m);
	if (m->nr > SP_MAG_OBJS)
		forget(m);
	/* through the pool's free path: reserve first, waiters woken; it is
	 * unlisted before its free, so counted in between (layout.h) */
	while (p && m->nr > keep && (p->curr_nr < p->min_nr || p->nr_waiters)) {
		sp_off_t off = m->objs[m->nr - 1];

		m->held++;
		SP_CRASH_POINT("mag.flush.held");
		m->nr--;
		SP_CRASH_POINT("mag.flush");
		if (sp_pool_free_owned(s, p, off, mytag) == 0) {
			SP_CRASH_POINT("mag.flush.freed");
			m->held--; /* untagged (or in the reserve): no longer ours */
		} /* else not ours, or still tagged: stays counted */
	}
	rc = sp_cache_lock(s, c);
	if (rc)
		return rc;
	fold_locked(s, c, m);
	while (m->nr > keep) {
		sp_off_t off = m->objs[m->nr - 1];
		struct sp_slab *slab;
		uint32_t idx;

		if (geo_ok && sp_mag_geo_locate(&g, off, &slab, &idx) && /* cheaper than obj_locate */
		    (slab->bitmap[idx / 64] >> (idx % 64) & 1) &&
		    sp_slab_owners(&d, slab)[idx] == mytag)
			sp_cache_free_obj_locked(s, c, &d, slab, idx);
		SP_CRASH_POINT("mag.flush");
		m->nr--;
	}
	c->nr_mag_flush++;
	sp_cache_unlock(c);
	return 0;
}

/* Empty and unbind @m; its objects go back to its cache if that still
 * exists as bound (otherwise they stay tagged and go at the slot's end). */
static int unbind(struct sp_seg *s, struct sp_mag *m)
{
	struct sp_cache *c;
	int rc = 0;

	sp_mag_settle(s, m);
	if (!m->cache_id)
		return 0;
	c = sp_cache_get(s, m->cache_id - 1);
	if (c && c->gen == m->cache_gen)
		rc = sp_mag_flush(s, c, m, 0);
	if (rc)
		return rc;
	forget(m); /* empty after a flush; else its cache went: tagged, unlisted */
	m->cache_id = 0;
	m->nr_alloc = m->nr_free = 0;
	return 0;
}

/**
 * sp_mag_bind() - the calling thread's magazine for @c, bound to it.
 * @s: segment with a slot.  @set: the thread's set.  @c: a LIVE cache.
 * @out: the magazine.
 *
 * The magazine @c maps to is emptied first when another cache used it.
 * May sleep.
 * Return: 0 or a negative errno (the caller takes the locked path).
 */
int sp_mag_bind(struct sp_seg *s, struct sp_magset *set, struct sp_cache *c, struct sp_mag **out)
{
	struct sp_mag *m = &set->mag[sp_mag_index(c->id)];
	int rc;

	if (!sp_mag_bound(m, c)) {
		rc = unbind(s, m);
		if (rc)
			return rc;
		/* frees of @c's objects may tag them cached by this slot */
		sp_slot_note(s, SP_OWNER_MAG(s->owner), sp_cache_index(s, c));
		m->cache_gen = c->gen;
		__atomic_store_n(&m->cache_id, c->id + 1, __ATOMIC_RELEASE);
	}
	*out = m;
	return 0;
}

/**
 * sp_mag_flush_all() - empty every magazine of @set.
 * @s: segment.  @set: the calling thread's set.
 *
 * For thread exit, disconnect and shmp_flush().  May sleep.
 * Return: 0 or the first error (the other magazines are still emptied).
 */
int sp_mag_flush_all(struct sp_seg *s, struct sp_magset *set)
{
	int rc = 0;

	for (unsigned i = 0; i < SP_MAGSET_MAGS; i++) {
		int r = unbind(s, &set->mag[i]);

		if (r && !rc)
			rc = r;
	}
	return rc;
}

/*
 * @set is about to stop being one of @slot's sets (uncommitted): what its
 * magazines count (held) and list (their entries become unlisted) moves
 * to the slot's count, in two halves, so that a death at any point only
 * over-counts: the positive terms now, while the set still counts, and
 * the negative ones - returned, for the caller to add with
 * fold_held_rest() - only once the set is uncommitted (a magazine's
 * held is negative when another thread of the slot took what it freed).
 * Registry locked, the set committed.
 */
static int64_t fold_held_locked(struct sp_seg *s, struct sp_magset *set, uint32_t slot)
{
	uint64_t pos = 0, neg = 0;

	sp_assert(sp_lock_held(&s->hdr->registry_lock));
	for (unsigned j = 0; j < SP_MAGSET_MAGS; j++) {
		int64_t h = set->mag[j].held;

		if (h < 0)
			neg += (uint64_t)h;
		else
			pos += (uint64_t)h;
		pos += listed(&set->mag[j]);
	}
	__atomic_fetch_add(&sp_clients(s)[slot].held, (int64_t)pos, __ATOMIC_SEQ_CST);
	SP_CRASH_POINT("mag.set.fold"); /* counted twice until uncommitted: over */
	return (int64_t)neg;
}

/* The negative half of fold_held_locked(), the set uncommitted. */
static void fold_held_rest(struct sp_seg *s, uint32_t slot, int64_t neg)
{
	__atomic_fetch_add(&sp_clients(s)[slot].held, neg, __ATOMIC_SEQ_CST);
}

/**
 * sp_magset_destroy() - empty and free the calling thread's set.
 * @s: segment.  @set: from sp_magset_create() by this slot.
 *
 * May sleep.
 */
void sp_magset_destroy(struct sp_seg *s, struct sp_magset *set)
{
	uint32_t pfn = set_pfn(s, set);

	sp_mag_flush_all(s, set);
	if (sp_registry_lock(s))
		return;
	if (sp_magset_valid(s, pfn) && set->slot == s->slot) {
		int64_t neg = fold_held_locked(s, set, set->slot);

		sp_plist_del(s, &sp_clients(s)[set->slot].mag_head, pfn);
		__atomic_store_n(&set->magic, 0, __ATOMIC_RELEASE);
		fold_held_rest(s, s->slot, neg); /* after: it no longer counts */
		if (sp_buddy_lock(s) == 0) {
			sp_buddy_free_locked(s, pfn);
			sp_buddy_unlock(s);
		}
	}
	sp_registry_unlock(s);
}

/*
 * Add what the magazines of every slot's sets hold and counted to the sums
 * of their caches: v[cache id] for every cache, or, with @only a cache id,
 * that cache's into v[0].  Unlocked and bounded: a set freed meanwhile
 * fails sp_magset_valid() and ends its list's walk.
 */
static void sum_sets(struct sp_seg *s, uint32_t only, struct sp_mag_sums *v)
{
	uint32_t n = sp_nr_cache_slots(s), steps = s->geo.nr_pages >> SP_MAGSET_ORDER;
	unsigned jlo = only < n ? sp_mag_index(only) : 0;
	unsigned jhi = only < n ? jlo + 1 : SP_MAGSET_MAGS;

	for (uint32_t slot = 0; slot < s->geo.max_clients; slot++) {
		uint32_t pfn = __atomic_load_n(&sp_clients(s)[slot].mag_head, __ATOMIC_ACQUIRE);

		while (pfn && steps && sp_magset_valid(s, pfn - 1)) {
			const struct sp_magset *set =
				(const struct sp_magset *)(s->base + sp_pfn_off(s, pfn - 1));

			for (unsigned j = jlo; j < jhi; j++) {
				const struct sp_mag *m = &set->mag[j];
				uint32_t id = m->cache_id - 1, nr;
				struct sp_mag_sums *o;

				/* bound to a cache as it is now, in its own place */
				if (!m->cache_id || id >= n || (only < n && id != only) ||
				    sp_mag_index(id) != j || m->cache_gen != sp_caches(s)[id].gen)
					continue;
				o = &v[only < n ? 0 : id];
				nr = __atomic_load_n(&m->nr, __ATOMIC_RELAXED);
				o->cached += nr <= SP_MAG_OBJS ? nr : 0;
				o->nr_alloc += __atomic_load_n(&m->nr_alloc, __ATOMIC_RELAXED);
				o->nr_free += __atomic_load_n(&m->nr_free, __ATOMIC_RELAXED);
			}
			pfn = s->pages[pfn - 1].next;
			steps--;
		}
	}
}

/* A snapshot of every cache's sums, taken once for a whole view (stats). */
static _Thread_local struct {
	struct sp_seg *s;
	struct sp_mag_sums *v;
} snap;

/**
 * sp_mag_snapshot_begin() - sum every cache's magazines in one pass.
 * @s: segment.
 *
 * Until sp_mag_snapshot_end(), sp_mag_sum() on @s by this thread (and so
 * every statistic built on it) answers from this snapshot: one walk of the
 * sets for a whole Stats reply instead of one per cache.  Without memory
 * it does nothing (each sum walks again).  Does not sleep.
 */
void sp_mag_snapshot_begin(struct sp_seg *s)
{
	struct sp_mag_sums *v = calloc(sp_nr_cache_slots(s), sizeof(*v));

	if (!v)
		return;
	sum_sets(s, UINT32_MAX, v);
	free(snap.v);
	snap.s = s;
	snap.v = v;
}

/**
 * sp_mag_snapshot_end() - back to live sums.
 *
 * Does not sleep.
 */
void sp_mag_snapshot_end(void)
{
	free(snap.v);
	snap.v = NULL;
	snap.s = NULL;
}

/**
 * sp_mag_sum() - what the magazines of every slot hold and counted for a
 * cache.
 * @s: segment.  @cache_id: the cache.  @out: the sums.
 *
 * Walks each slot's sets without locks: a snapshot, exact when the
 * magazines' threads are quiet.  Does not sleep.
 */
void sp_mag_sum(struct sp_seg *s, uint32_t cache_id, struct sp_mag_sums *out)
{
	memset(out, 0, sizeof(*out));
	if (cache_id >= sp_nr_cache_slots(s))
		return;
	if (snap.s == s && snap.v) {
		*out = snap.v[cache_id];
		return;
	}
	sum_sets(s, cache_id, out);
}

/**
 * sp_mag_cached() - free objects of a cache held in magazines.
 * @s: segment.  @cache_id: the cache.
 *
 * See sp_mag_sum().  Does not sleep.
 * Return: the number of objects.
 */
uint64_t sp_mag_cached(struct sp_seg *s, uint32_t cache_id)
{
	struct sp_mag_sums sums;

	sp_mag_sum(s, cache_id, &sums);
	return sums.cached;
}

/**
 * sp_cache_in_use() - objects of @c allocated and not cached in magazines.
 * @s: segment.  @c: cache.
 *
 * What stats call active: the slab bitmaps count magazine objects as
 * allocated, the owner tags and this count them as free.  Unlocked
 * snapshot.  Does not sleep.
 * Return: the count.
 */
uint64_t sp_cache_in_use(struct sp_seg *s, const struct sp_cache *c)
{
	uint64_t active = __atomic_load_n(&c->active_objs, __ATOMIC_RELAXED);
	uint64_t cached = sp_mag_cached(s, c->id);

	return active > cached ? active - cached : 0;
}

/**
 * sp_cache_counters() - a cache's alloc and free counts, magazines included.
 * @s: segment.  @c: cache.  @nr_alloc: @nr_free: the counts.
 *
 * Unlocked snapshot.  Does not sleep.
 */
void sp_cache_counters(struct sp_seg *s, const struct sp_cache *c, uint64_t *nr_alloc,
		       uint64_t *nr_free)
{
	struct sp_mag_sums m;

	sp_mag_sum(s, c->id, &m);
	*nr_alloc = __atomic_load_n(&c->nr_alloc, __ATOMIC_RELAXED) + m.nr_alloc;
	*nr_free = __atomic_load_n(&c->nr_free, __ATOMIC_RELAXED) + m.nr_free;
}

/**
 * sp_pool_counters() - a pool's alloc and free counts, magazines included.
 * @s: segment.  @p: pool.  @nr_alloc: @nr_free: the counts.
 *
 * Unlocked snapshot.  Does not sleep.
 */
void sp_pool_counters(struct sp_seg *s, const struct sp_pool *p, uint64_t *nr_alloc,
		      uint64_t *nr_free)
{
	struct sp_mag_sums m = { 0 };

	if (p->backing == SP_BACK_SLAB && p->cache_id < sp_nr_cache_slots(s) &&
	    sp_caches(s)[p->cache_id].pool_id == p->id + 1)
		sp_mag_sum(s, p->cache_id, &m);
	*nr_alloc = __atomic_load_n(&p->nr_alloc, __ATOMIC_RELAXED) + m.nr_alloc;
	*nr_free = __atomic_load_n(&p->nr_free, __ATOMIC_RELAXED) + m.nr_free;
}

/**
 * sp_mag_release_slot() - free a dead slot's magazine sets.
 * @s: segment.  @slot: a DEAD slot.
 *
 * Folds each set's uncounted operations into the counters, then
 * uncommits the set (magic cleared), takes it off the slot's list and
 * frees its block, all under the registry lock, so that a death on the
 * way leaves every set either committed and listed or torn (the
 * registry's recovery relinks the committed ones and marks the slot's
 * sets loose for a page walk: SP_SLOT_LOOSE_SETS).  client.c then frees
 * every object still tagged with the slot's magazine tag.  May sleep.
 * Return: the number of sets freed, or a negative errno.
 */
int sp_mag_release_slot(struct sp_seg *s, uint32_t slot)
{
	uint32_t pfn;
	int rc, freed = 0;

	if (slot >= s->geo.max_clients)
		return sp_err(-ESRCH, "no client slot %u", slot);
	rc = sp_registry_lock(s);
	if (rc)
		return rc;
	if (sp_clients(s)[slot].state == SP_CLIENT_ALIVE) {
		sp_registry_unlock(s);
		return sp_err(-EBUSY, "client slot %u is alive", slot);
	}
	while ((pfn = sp_clients(s)[slot].mag_head) != 0) {
		struct sp_magset *set;
		int64_t neg;

		if (!sp_magset_valid(s, pfn - 1) ||
		    ((struct sp_magset *)(s->base + sp_pfn_off(s, pfn - 1)))->slot != slot) {
			/* corrupted: the blocks go by their tag, in a page walk */
			__atomic_fetch_or(&sp_clients(s)[slot].flags, SP_SLOT_LOOSE_SETS,
					  __ATOMIC_SEQ_CST);
			sp_clients(s)[slot].mag_head = 0;
			break;
		}
		set = (struct sp_magset *)(s->base + sp_pfn_off(s, pfn - 1));
		for (unsigned j = 0; j < SP_MAGSET_MAGS; j++) {
			struct sp_mag *m = &set->mag[j];
			struct sp_cache *c = m->cache_id ? sp_cache_get(s, m->cache_id - 1) : NULL;

			/* the registry lock ranks above the cache lock; a fold
			 * zeroes the magazine's counts, so it never counts twice */
			if (c && c->gen == m->cache_gen && sp_cache_lock(s, c) == 0) {
				fold_locked(s, c, m);
				sp_cache_unlock(c);
			}
		}
		neg = fold_held_locked(s, set, slot); /* its entries go by their tags now */
		__atomic_store_n(&set->magic, 0, __ATOMIC_RELEASE);
		/* dead here: the registry's recovery finds it uncommitted and
		 * marks the slot's sets loose (SP_SLOT_LOOSE_SETS) */
		SP_CRASH_POINT("mag.release");
		sp_plist_del(s, &sp_clients(s)[slot].mag_head, pfn - 1);
		fold_held_rest(s, slot, neg);
		/* and the block itself: no page walk needed for sets */
		if (sp_buddy_lock(s) == 0) {
			sp_buddy_free_locked(s, pfn - 1);
			sp_buddy_unlock(s);
			freed++;
		} else { /* left to a page walk of the slot's release */
			__atomic_fetch_or(&sp_clients(s)[slot].flags, SP_SLOT_LOOSE_SETS,
					  __ATOMIC_SEQ_CST);
		}
	}
	sp_registry_unlock(s);
	return freed;
}

/**
 * sp_slot_held_sum() - read a slot's held bound (layout.h, "The held bound").
 * @s: segment; the caller holds the registry lock (the slot's list of sets
 *     stays as it is), or reads a segment it knows is quiescent (the
 *     checker without locks).
 * @slot: the slot.
 * @sum: the slot's held plus the held of every magazine of its listed sets.
 * @lists: SP_SLOT_FILTER_BITS bits: bit id % SP_SLOT_FILTER_BITS set for
 *          each cache a magazine of those sets lists objects of (what the
 *          bound does not cover: a walk of those still finds them), or NULL.
 *
 * Bounded and untrusting: a list that links a page which is not one of
 * the slot's committed sets, that does not end within the segment's
 * number of set-sized blocks, a magazine listing objects but bound to no
 * cache, or a sum that overflows, make the bound unknown.  The counters
 * are read as they are: for a slot whose threads still run, the sum is
 * not one instant's and may be low; only a slot that is not ALIVE (its
 * threads gone or done) may be trusted.  Does not sleep.
 * Return: 0, or -EFAULT when the bound is unknown (walk everything).
 */
int sp_slot_held_sum(const struct sp_seg *s, uint32_t slot, int64_t *sum, uint64_t *lists)
{
	uint32_t n = sp_nr_cache_slots(s), steps = (s->geo.nr_pages >> SP_MAGSET_ORDER) + 1, pfn;
	int64_t v;

	if (slot >= s->geo.max_clients)
		return -EFAULT;
	if (lists)
		memset(lists, 0, SP_SLOT_FILTER_BITS / 8);
	v = __atomic_load_n(&sp_clients(s)[slot].held, __ATOMIC_ACQUIRE);
	pfn = __atomic_load_n(&sp_clients(s)[slot].mag_head, __ATOMIC_ACQUIRE);
	for (; pfn; pfn = s->pages[pfn - 1].next) {
		const struct sp_magset *set;

		if (!steps-- || !sp_magset_valid(s, pfn - 1))
			return -EFAULT;
		set = (const struct sp_magset *)(s->base + sp_pfn_off(s, pfn - 1));
		if (set->slot != slot)
			return -EFAULT;
		for (unsigned j = 0; j < SP_MAGSET_MAGS; j++) {
			const struct sp_mag *m = &set->mag[j];
			uint32_t id = __atomic_load_n(&m->cache_id, __ATOMIC_RELAXED) - 1u;

			if (__builtin_add_overflow(v, __atomic_load_n(&m->held, __ATOMIC_RELAXED), &v))
				return -EFAULT;
			if (!listed(m))
				continue;
			if (id >= n)
				return -EFAULT;
			if (lists)
				lists[id % SP_SLOT_FILTER_BITS / 64] |= 1ull << (id % 64);
		}
	}
	*sum = v;
	return 0;
}

/**
 * sp_mag_relink_locked() - rebuild every slot's list of magazine sets.
 * @s: segment; registry lock held (its previous owner died).
 *
 * Sets of slots that are FREE are freed: nobody can use them.  A set block
 * that is not committed (its maker or its releaser died with the registry
 * lock, the only lock sets change under) is freed if its slot is FREE,
 * else its slot is marked SP_SLOT_LOOSE_SETS: the slot's release then
 * walks the pages and frees it (the slot may still be ALIVE for a moment
 * after its process died, so the block is not freed here).
 * May sleep (buddy lock).
 */
void sp_mag_relink_locked(struct sp_seg *s)
{
	uint32_t pfn, n = s->geo.nr_pages;

	sp_assert(sp_lock_held(&s->hdr->registry_lock));
	if (sp_buddy_lock(s))
		return;
	for (uint32_t i = 0; i < s->geo.max_clients; i++)
		sp_clients(s)[i].mag_head = 0;
	for (pfn = 0; pfn < n;) {
		uint32_t info = s->pages[pfn].info, o = SP_PG_ORDER(info);

		if (o > s->geo.max_order)
			o = 0;
		if (sp_magset_valid(s, pfn)) {
			struct sp_magset *set = (struct sp_magset *)(s->base + sp_pfn_off(s, pfn));

			if (sp_clients(s)[set->slot].state == SP_CLIENT_FREE) {
				set->magic = 0;
				sp_buddy_free_locked(s, pfn); /* merged: the walk steps over tails */
			} else {
				sp_plist_add(s, &sp_clients(s)[set->slot].mag_head, pfn);
			}
		} else if (info == SP_PG_INFO(SP_PG_ALLOC, SP_MAGSET_ORDER, SP_KIND_MAG)) {
			uint32_t slot = sp_owner_slot(s->pages[pfn].slot);

			if (slot >= s->geo.max_clients) /* not a slot's: the checker says */
				;
			else if (sp_clients(s)[slot].state == SP_CLIENT_FREE)
				sp_buddy_free_locked(s, pfn); /* nobody's */
			else
				__atomic_fetch_or(&sp_clients(s)[slot].flags, SP_SLOT_LOOSE_SETS,
						  __ATOMIC_SEQ_CST);
		}
		pfn += 1u << o;
	}
	sp_buddy_unlock(s);
}
