/* SPDX-License-Identifier: MIT */
/*
 * mempool.c - named memory pools: the kernel's mempool_t in shared memory.
 *
 * A mempool exists for guaranteed allocations under memory pressure: it
 * keeps min_nr elements in reserve, taken from its backing allocator when
 * the pool is created.  Allocation tries the backing allocator first (the
 * pool's own slab cache, a kmalloc size class, or buddy blocks of one
 * order) and only when that
 * fails takes an element from the reserve; when both are empty it fails
 * (SP_ALLOC_NOWAIT) or sleeps until an element is freed or a timeout passes.
 * Free refills the reserve first while curr_nr < min_nr and wakes a waiter;
 * otherwise the element goes back to the backing allocator.  So min_nr
 * elements stay obtainable even when other allocations have exhausted the
 * whole segment.
 *
 * Reserve elements are allocated elements of the backing tagged
 * SP_OWNER_RESERVE; the elements array (INTERNAL kmalloc memory) lists them.
 * The order of each step is what makes a kill -9 harmless:
 *   take: tag the element with the taker's slot, then lower curr_nr (commit);
 *   put:  tag RESERVE, store into elements[curr_nr], then raise curr_nr.
 * sp_pool_recover_locked() treats elements[0, curr_nr) as the reserve and
 * re-tags it, and adopts any RESERVE-tagged element outside it.
 *
 * A kmalloc class as the backing (SP_BACK_KMALLOC) is shared - with
 * sp_kmalloc() and with every other KMALLOC-backed pool of that size - so
 * there a RESERVE tag no longer says whose reserve an object is in.  For
 * these pools elements[0, curr_nr) is the only truth of the reserve:
 * recovery never adopts a stray RESERVE-tagged object of the class (it may
 * be another pool's).  Instead each step that moves an element into or out
 * of the reserve first records it in put_off, the one place recovery looks
 * besides the array (e is the element, U the slot holding it):
 *   put   (a free refilling the reserve): put_off = e; tag U -> RESERVE (only
 *         if U holds it); elements[curr_nr] = e; curr_nr++ (the commit);
 *         put_off = 0.
 *   fill  (create, resize up; registry lock held): allocate e from the class
 *         tagged INTERNAL (nr_objs++ first), then put it as above, from
 *         INTERNAL instead of U.
 *   drain (resize down, destroy, a failed create; registry lock held):
 *         put_off = e; tag RESERVE -> INTERNAL; curr_nr-- (the commit);
 *         put_off = 0; free e expecting INTERNAL (nr_objs-- after).
 *   take: tag RESERVE -> U; curr_nr-- (the commit), as for every backing.
 * Recovery re-tags elements[0, curr_nr) RESERVE (an entry may carry U, a
 * take cut short, or INTERNAL, a drain cut short before its commit), then
 * looks at put_off when it is not among them:
 *   tagged RESERVE   a put or fill cut short after its tag: it joins the
 *                    reserve (there is room: see min_nr below);
 *   tagged INTERNAL  a fill cut short before its tag, or a drain after its
 *                    commit: it goes back to the class (nr_objs--);
 *   anything else    a put cut short before its tag: U still holds it (an
 *                    orphan of the dead putter's slot, released with it);
 * and clears put_off.  So a kill -9 at any instruction leaves each element
 * in exactly one place - in the reserve, held by a slot, or INTERNAL and
 * referenced by nothing, which the registry's recovery sweeps since the
 * dying process held the registry lock (every INTERNAL tag here is set
 * under it) - and never RESERVE-tagged outside every reserve.
 * Four rules keep that truth from being recycled before recovery reads it:
 * put_off never names a free object (a drain, and recovery, forget it
 * before the free: a freed object may be handed out and put into another
 * pool's reserve, where a stale put_off would adopt it a second time);
 * put_off counts as a reference to INTERNAL memory (sp_internal_refs());
 * the registry's sweep and the release of a dead slot's objects, the two
 * paths that free objects nobody holds any more, first lock (so recover)
 * every KMALLOC-backed pool (sp_pool_kmalloc_settle()); and min_nr moves so
 * that curr_nr <= min_nr at every instant - raised before a fill, lowered
 * after a drain - as recovery's clamp of curr_nr to min_nr would otherwise
 * drop elements nobody may adopt.
 *
 * A shared class keeps no count of one pool's objects, so a KMALLOC-backed
 * pool keeps its own: nr_objs, its class objects out and in reserve, under
 * the class's cache lock.  sp_pool_nr_out() is nr_objs - curr_nr; max_nr
 * caps nr_objs; destroy is -EBUSY while nr_objs > curr_nr.  Recovery cannot
 * recount it.  It moves before an allocation and after a free, so a crash
 * between the two leaves it high, never low; so does the release of a dead
 * slot, which frees the pool elements the slot held as kmalloc objects (it
 * cannot tell them from its others).  It is a statistic that may
 * over-count: destroy and the release of a dead slot clamp it to the
 * reserve plus what the class's users hold.  For the same reason neither
 * reclaim-on-exit nor debug flags apply to a shared class (create refuses
 * them), the client library's magazines stay off for it (client/pool.c),
 * and an object of the class that sp_kmalloc() or another pool of the class
 * handed out cannot be told from an element when freed into the pool; an
 * object of any other class or cache is refused.  As with buddy pages, a
 * waiter is woken by frees into its pool, not by sp_kfree() of the class.
 *
 * Waiting: wait_seq is a futex word in the segment.  A waiter registers in
 * nr_waiters, samples wait_seq and retries the backing under the pool lock
 * before sleeping; every free that may help bumps wait_seq and wakes one.
 * No condition variable is shared between processes.
 *
 * Locking: pool->lock (level 2) protects the reserve and put_off; the
 * backing's cache lock (3) or the buddy lock (4) nests inside it.
 * Creation, resizing and destruction also hold the registry lock (1).
 * nr_pages_out of a page-backed pool is protected by the buddy lock,
 * nr_objs of a KMALLOC-backed one by its class's cache lock.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define SP_POOL_MAX_MIN_NR (1u << 24)

static sp_off_t *elements(struct sp_seg *s, struct sp_pool *p)
{
	return sp_ptr_checked(s, p->elements_off, (uint64_t)p->elements_cap * sizeof(sp_off_t),
			      8);
}

/* The pool's own cache, LIVE or being torn down with the pool. */
static struct sp_cache *pool_cache(struct sp_seg *s, struct sp_pool *p)
{
	uint32_t id = sp_pool_cache_id(s, p->id);
	struct sp_cache *c = &sp_caches(s)[id];

	if (p->backing != SP_BACK_SLAB || p->id >= s->geo.max_pools || c->id != id ||
	    c->magic != (SP_CACHE_MAGIC ^ id) || c->state == SP_DESC_FREE ||
	    c->pool_id != p->id + 1)
		return NULL;
	return c;
}

/* The kmalloc class of a KMALLOC-backed pool (shared, always LIVE). */
static struct sp_cache *pool_class(struct sp_seg *s, struct sp_pool *p)
{
	uint32_t id = p->cache_id;
	struct sp_cache *c = &sp_caches(s)[id < s->geo.nr_kmalloc ? id : 0];

	if (p->backing != SP_BACK_KMALLOC || id >= s->geo.nr_kmalloc || c->id != id ||
	    c->magic != (SP_CACHE_MAGIC ^ id) || c->state != SP_DESC_LIVE ||
	    c->obj_size < p->elem_size)
		return NULL;
	return c;
}

/* The cache a pool's elements come from: its own, or its kmalloc class. */
static struct sp_cache *elem_cache(struct sp_seg *s, struct sp_pool *p)
{
	return p->backing == SP_BACK_KMALLOC ? pool_class(s, p) : pool_cache(s, p);
}

/*
 * pool_cache() for a caller with a kept snapshot @mine of it
 * (sp_pool_backing_snapshot()): the descriptor is not read again when the
 * snapshot names @p's own cache.  @mine is private and was taken from the
 * descriptor pool_cache() accepted (its id, magic, state and pool_id
 * checked then, pool_id copied into @mine); @p's index comes from where
 * @p is in the table, not from its shared id.  What may have changed since
 * is checked under the cache lock: sp_cache_geo_locked() uses @mine only
 * while the descriptor has its id and generation, and an alloc refuses a
 * cache that is not LIVE.  Anything else: pool_cache().
 */
static inline __attribute__((always_inline)) struct sp_cache *
own_cache(struct sp_seg *s, struct sp_pool *p, const struct sp_cache *mine)
{
	uint32_t idx = (uint32_t)(p - sp_pools(s)), id = sp_pool_cache_id(s, idx);

	if (sp_likely(mine && idx < s->geo.max_pools && mine->id == id &&
		      mine->pool_id == idx + 1 && (mine->flags & SP_CACHE_ANON)))
		return &sp_caches(s)[id];
	return pool_cache(s, p);
}

/**
 * sp_backing_name() - "slab", "pages" or "kmalloc".
 * @backing: enum sp_backing.
 *
 * Does not sleep.
 */
const char *sp_backing_name(uint32_t backing)
{
	static const char *const names[] = {
		[SP_BACK_SLAB] = "slab", [SP_BACK_PAGES] = "pages", [SP_BACK_KMALLOC] = "kmalloc",
	};

	return backing < sizeof(names) / sizeof(names[0]) ? names[backing] : "?";
}

/**
 * sp_pool_get() - the LIVE pool with this id.
 * @s: segment.  @id: index into the pool table.
 *
 * Does not sleep.
 * Return: the descriptor or NULL.
 */
struct sp_pool *sp_pool_get(struct sp_seg *s, uint32_t id)
{
	struct sp_pool *p;

	if (id >= s->geo.max_pools)
		return NULL;
	p = &sp_pools(s)[id];
	if (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != SP_DESC_LIVE ||
	    p->magic != (SP_POOL_MAGIC ^ id) || p->id != id)
		return NULL;
	return p;
}

/* ---- the backing allocator ------------------------------------------------ */

/* Locate a page-backed element; its head must be the element itself. */
static int page_elem(struct sp_seg *s, struct sp_pool *p, sp_off_t off, uint32_t *pfn)
{
	uint32_t info;

	if (!sp_off_pfn(s, off, pfn) || sp_pfn_off(s, *pfn) != off)
		return sp_err(-EINVAL, "offset %#llx is not an element of pool %s",
			      (unsigned long long)off, p->name);
	info = s->pages[*pfn].info;
	if (info != SP_PG_INFO(SP_PG_ALLOC, p->page_order, SP_KIND_POOL) ||
	    s->pages[*pfn].owner != p->id)
		return sp_err(-EINVAL, "offset %#llx is not an allocated element of pool %s",
			      (unsigned long long)off, p->name);
	return 0;
}

/*
 * An object of the class for a KMALLOC-backed pool.  nr_objs counts it
 * before it exists: a death in between over-counts, never under-counts.
 */
static int class_alloc(struct sp_seg *s, struct sp_pool *p, const struct sp_cache *mine,
		       uint16_t owner, sp_off_t *off)
{
	struct sp_cache *c = pool_class(s, p);
	int rc;

	if (!c)
		return sp_err(-EFAULT, "pool %s: its kmalloc class %u is corrupted", p->name,
			      p->cache_id);
	rc = sp_cache_lock(s, c);
	if (rc)
		return rc;
	if (p->state != SP_DESC_LIVE && p->state != SP_DESC_CREATING) {
		rc = sp_err(-ENOENT, "pool %s was destroyed", p->name);
	} else if (p->max_nr && p->nr_objs >= p->max_nr) {
		rc = sp_err(-ENOMEM, "pool %s reached max_nr %u", p->name, p->max_nr);
	} else {
		__atomic_store_n(&p->nr_objs, p->nr_objs + 1, __ATOMIC_RELAXED);
		rc = sp_cache_alloc_geo_locked(s, c, mine, owner, off);
		if (rc)
			__atomic_store_n(&p->nr_objs, p->nr_objs - 1, __ATOMIC_RELAXED);
	}
	sp_cache_unlock(c);
	return rc;
}

/* @mine: NULL or the caller's snapshot of the backing cache (sp_cache_geo_locked()).
 * Inline: the first try of every pool alloc. */
static inline __attribute__((always_inline)) int
backing_alloc(struct sp_seg *s, struct sp_pool *p, const struct sp_cache *mine, uint16_t owner,
	      sp_off_t *off)
{
	struct sp_cache *c;
	uint32_t pfn;
	int rc;

	if (p->backing == SP_BACK_SLAB) {
		c = own_cache(s, p, mine);
		if (!c)
			return sp_err(-ENOENT, "pool %s was destroyed", p->name);
		return sp_cache_alloc_geo(s, c, mine, owner, off);
	}
	if (p->backing == SP_BACK_KMALLOC)
		return class_alloc(s, p, mine, owner, off);
	rc = sp_buddy_lock(s);
	if (rc)
		return rc;
	if (p->state != SP_DESC_LIVE && p->state != SP_DESC_CREATING)
		rc = sp_err(-ENOENT, "pool %s was destroyed", p->name);
	else if (p->max_nr && p->nr_pages_out >= p->max_nr)
		rc = sp_err(-ENOMEM, "pool %s reached max_nr %u", p->name, p->max_nr);
	else
		rc = sp_buddy_alloc_locked(s, p->page_order, SP_KIND_POOL, p->id, owner, &pfn);
	if (!rc) {
		p->nr_pages_out++;
		*off = sp_pfn_off(s, pfn);
	}
	sp_buddy_unlock(s);
	return rc;
}

/*
 * May an element tagged @tag be freed by a caller expecting @expect?  0: any
 * user holding it (never a reserve element, nor one cached free in a
 * magazine); else exactly that tag (a reclaim, a magazine flush).
 */
static bool holder_ok(uint16_t tag, uint16_t expect)
{
	return expect ? tag == expect : sp_owner_is_user(tag);
}

static const char *holder_why(uint16_t expect)
{
	return expect ? "not held by the expected owner" : "free or in the reserve (double free?)";
}

/* -EINVAL naming the pool, not the class, for an object of a KMALLOC-backed
 * pool's class that is not its element (the message of locate's @rc).  Out
 * of line: its buffer would make every free set up a stack guard. */
static __attribute__((noinline, cold)) int not_class_elem(struct sp_pool *p, struct sp_cache *c,
							 sp_off_t off)
{
	char why[160];

	snprintf(why, sizeof(why), "%s", sp_errmsg());
	return sp_err(-EINVAL, "offset %#llx is not an element of pool %s, whose elements are %s "
			       "objects: %s",
		      (unsigned long long)off, p->name, c->name, why);
}

/*
 * Lock the backing of @p and find the owner tag of element @off: the slab
 * owner[] entry of an allocated object, or the head page's slot.  On
 * success the backing stays locked (*c is the cache for a slab backing,
 * NULL for pages, whose lock is the buddy lock) until unlock_backing();
 * *@g is the geometry of *c that @slab, @idx and @tag were found with (for
 * sp_cache_free_obj_locked()): @mine, the caller's kept snapshot, or a
 * fresh one in @buf (sp_cache_geo_locked()).
 */
static inline __attribute__((always_inline)) int
lock_elem_in(struct sp_seg *s, struct sp_pool *p, sp_off_t off, const struct sp_cache *mine,
	     struct sp_cache **c, struct sp_cache *buf, const struct sp_cache **g, uint16_t **tag,
	     uint32_t *pfn, struct sp_slab **slab, uint32_t *idx)
{
	int rc;

	*c = NULL;
	if (p->backing == SP_BACK_SLAB || p->backing == SP_BACK_KMALLOC) {
		*c = p->backing == SP_BACK_SLAB ? own_cache(s, p, mine) : pool_class(s, p);
		if (!*c || p->state == SP_DESC_FREE)
			return sp_err(-ENOENT, "pool %s was destroyed", p->name);
		rc = sp_cache_lock(s, *c);
		if (rc)
			return rc;
		rc = sp_cache_geo_locate(s, *c, mine, buf, g, off, slab, idx);
		if (rc && p->backing == SP_BACK_KMALLOC) /* name the pool, not the class */
			rc = not_class_elem(p, *c, off);
		if (!rc && !((*slab)->bitmap[*idx / 64] >> (*idx % 64) & 1))
			rc = sp_err(-EINVAL, "element %#llx of pool %s is not allocated (double free?)",
				    (unsigned long long)off, p->name);
		if (rc) {
			sp_cache_unlock(*c);
			return rc;
		}
		*tag = &sp_slab_owners(*g, *slab)[*idx];
		return 0;
	}
	rc = sp_buddy_lock(s);
	if (rc)
		return rc;
	rc = page_elem(s, p, off, pfn);
	if (rc) {
		sp_buddy_unlock(s);
		return rc;
	}
	*tag = &s->pages[*pfn].slot;
	return 0;
}

/* lock_elem_in() out of line, for the paths other than a plain free. */
static int lock_elem(struct sp_seg *s, struct sp_pool *p, sp_off_t off,
		     const struct sp_cache *mine, struct sp_cache **c, struct sp_cache *buf,
		     const struct sp_cache **g, uint16_t **tag, uint32_t *pfn,
		     struct sp_slab **slab, uint32_t *idx)
{
	return lock_elem_in(s, p, off, mine, c, buf, g, tag, pfn, slab, idx);
}

static void unlock_backing(struct sp_seg *s, struct sp_cache *c)
{
	if (c)
		sp_cache_unlock(c);
	else
		sp_buddy_unlock(s);
}

/*
 * KMALLOC: may a holder free @off into @p?  An object of the class held by
 * a slot cannot be told from an element, but while nr_objs (never low)
 * says nothing is out it is certainly not one.  Called with the class or
 * the pool locked; curr_nr may be read unlocked: it only lags the reserve.
 */
static int class_elem_out(struct sp_pool *p, sp_off_t off)
{
	if (p->backing != SP_BACK_KMALLOC ||
	    __atomic_load_n(&p->nr_objs, __ATOMIC_RELAXED) >
		    __atomic_load_n(&p->curr_nr, __ATOMIC_ACQUIRE))
		return 0;
	return sp_err(-EINVAL, "pool %s has no elements out, so %#llx is not one of them (a "
			       "double free, or another pool's or sp_kmalloc()'s object of its "
			       "size class)",
		      p->name, (unsigned long long)off);
}

/* Free an element to the backing if holder_ok(its tag, @expect); @mine as
 * for backing_alloc().  Inline into a plain free; backing_free() elsewhere. */
static inline __attribute__((always_inline)) int
backing_free_in(struct sp_seg *s, struct sp_pool *p, const struct sp_cache *mine, sp_off_t off,
		uint16_t expect)
{
	const struct sp_cache *g;
	struct sp_cache *c, buf;
	struct sp_slab *slab;
	uint16_t *tag = NULL; /* set whenever lock_elem_in() succeeds */
	uint32_t pfn, idx;
	int rc = lock_elem_in(s, p, off, mine, &c, &buf, &g, &tag, &pfn, &slab, &idx);

	if (rc)
		return rc;
	if (!holder_ok(*tag, expect))
		rc = sp_err(-EINVAL, "element %#llx of pool %s is %s", (unsigned long long)off,
			    p->name, holder_why(expect));
	else if (sp_owner_is_user(*tag))
		rc = class_elem_out(p, off);
	if (!rc && c) {
		sp_cache_free_obj_locked(s, c, g, slab, idx); /* located once, above */
		c->nr_free += !sp_owner_is_mag(expect); /* a cached one counted at its push */
		if (p->backing == SP_BACK_KMALLOC && p->nr_objs) /* after the free: never low */
			__atomic_store_n(&p->nr_objs, p->nr_objs - 1, __ATOMIC_RELAXED);
	} else if (!rc) {
		sp_buddy_free_locked(s, pfn);
		p->nr_pages_out--;
	}
	unlock_backing(s, c);
	return rc;
}

static int backing_free(struct sp_seg *s, struct sp_pool *p, const struct sp_cache *mine,
			sp_off_t off, uint16_t expect)
{
	return backing_free_in(s, p, mine, off, expect);
}

/*
 * Read an element's owner tag into *@old and, with @to non-zero, change it.
 * With @must, only when holder_ok(tag, *@must).  Takes the backing's lock.
 */
static int retag(struct sp_seg *s, struct sp_pool *p, sp_off_t off, uint16_t to,
		 const uint16_t *must, uint16_t *old)
{
	const struct sp_cache *g;
	struct sp_cache *c, buf;
	struct sp_slab *slab;
	uint16_t *tag = NULL; /* set whenever lock_elem() succeeds */
	uint32_t pfn, idx;
	int rc = lock_elem(s, p, off, NULL, &c, &buf, &g, &tag, &pfn, &slab, &idx);

	if (rc)
		return rc;
	*old = *tag;
	if (must && !holder_ok(*tag, *must))
		rc = sp_err(-EINVAL, "element %#llx of pool %s is %s", (unsigned long long)off,
			    p->name, holder_why(*must));
	else if (to) {
		sp_slot_note(s, to, c ? sp_cache_index(s, c) : SP_NOTE_BLOCKS); /* before the tag */
		if (c) /* an object of a cache: the held bound (layout.h), before the tag */
			sp_slot_held_add(s, to, 1);
		__atomic_store_n(tag, to, __ATOMIC_RELEASE);
		if (c && sp_owner_is_user(*old)) /* its holder's no more: after the tag */
			sp_slot_held_add(s, *old, -1);
	}
	unlock_backing(s, c);
	return rc;
}

/**
 * sp_pool_elem_owner() - the owner tag of one element.
 * @s: segment.  @p: pool.  @off: element.  @owner: its tag.
 *
 * May sleep.
 * Return: 0, or -EINVAL when @off is not an allocated element of @p.
 */
int sp_pool_elem_owner(struct sp_seg *s, struct sp_pool *p, sp_off_t off, uint16_t *owner)
{
	return retag(s, p, off, 0, NULL, owner);
}

/* Bump wait_seq and wake up to @n of the pool's waiters (INT_MAX: all,
 * to look again).  Does not sleep. */
static void wake_waiters(struct sp_pool *p, int n)
{
	__atomic_fetch_add(&p->wait_seq, 1, __ATOMIC_SEQ_CST);
	sp_futex_wake(&p->wait_seq, n);
}

/* ---- locking and recovery ------------------------------------------------- */

static int cmp_off(const void *a, const void *b)
{
	sp_off_t x = *(const sp_off_t *)a, y = *(const sp_off_t *)b;

	return x < y ? -1 : x > y;
}

/* Every element of the backing tagged RESERVE, into a malloc'd array;
 * -EFAULT when the pool's cache has a corrupted geometry. */
static int reserve_tagged(struct sp_seg *s, struct sp_pool *p, sp_off_t **out, uint32_t *nr)
{
	uint32_t n = 0, cap = 64, pfn;
	sp_off_t *v = malloc(cap * sizeof(*v));
	int rc = 0;

	if (!v)
		return -ENOMEM;
#define PUSH(x)                                                     \
	do {                                                        \
		if (n == cap) {                                     \
			sp_off_t *nv = realloc(v, 2 * cap * sizeof(*v)); \
			if (!nv) {                                  \
				rc = -ENOMEM;                       \
				goto out;                           \
			}                                           \
			v = nv, cap *= 2;                           \
		}                                                   \
		v[n++] = (x);                                       \
	} while (0)
	if (p->backing == SP_BACK_SLAB) {
		struct sp_cache *c = pool_cache(s, p), g;

		if (!c || (rc = sp_cache_lock(s, c)))
			goto out;
		rc = sp_cache_snapshot(s, c, &g);
		if (!rc)
			rc = sp_buddy_lock(s);
		for (pfn = 0; !rc && pfn < s->geo.nr_pages;) {
			uint32_t o = SP_PG_ORDER(s->pages[pfn].info);

			if (o > s->geo.max_order)
				o = 0;
			if (sp_slab_valid(s, &g, pfn)) {
				struct sp_slab *slab = sp_slab_at(s, &g, pfn);
				uint16_t *tag = sp_slab_owners(&g, slab);

				for (uint32_t i = 0; i < g.objperslab; i++)
					if (tag[i] == SP_OWNER_RESERVE &&
					    (slab->bitmap[i / 64] >> (i % 64) & 1))
						PUSH((sp_off_t)(sp_slab_obj(&g, slab, i) - s->base));
			}
			pfn += 1u << o;
		}
		if (!rc)
			sp_buddy_unlock(s);
		sp_cache_unlock(c);
	} else {
		rc = sp_buddy_lock(s);
		if (rc)
			goto out;
		p->nr_pages_out = 0;
		for (pfn = 0; pfn < s->geo.nr_pages;) {
			uint32_t info = s->pages[pfn].info, o = SP_PG_ORDER(info);

			if (o > s->geo.max_order)
				o = 0;
			if (info == SP_PG_INFO(SP_PG_ALLOC, p->page_order, SP_KIND_POOL) &&
			    s->pages[pfn].owner == p->id) {
				p->nr_pages_out++;
				if (s->pages[pfn].slot == SP_OWNER_RESERVE)
					PUSH(sp_pfn_off(s, pfn));
			}
			pfn += 1u << o;
		}
		sp_buddy_unlock(s);
	}
#undef PUSH
out:
	if (rc) {
		free(v);
		return rc;
	}
	*out = v;
	*nr = n;
	return 0;
}

/*
 * KMALLOC: re-tag an entry of elements[0, curr_nr) RESERVE when it may be
 * the pool's - RESERVE, a slot's tag (a take cut short) or INTERNAL (a
 * drain cut short) - never when it is free or cached in a magazine (the
 * array was scribbled on).  Return: 0, or why the entry is dropped.
 */
static int reclaim_entry(struct sp_seg *s, struct sp_pool *p, sp_off_t off)
{
	const struct sp_cache *g;
	struct sp_cache *c, buf;
	struct sp_slab *slab;
	uint16_t *tag = NULL; /* set whenever lock_elem() succeeds */
	uint32_t pfn, idx;
	int rc = lock_elem(s, p, off, NULL, &c, &buf, &g, &tag, &pfn, &slab, &idx);

	if (rc)
		return rc;
	if (*tag == SP_OWNER_RESERVE || *tag == SP_OWNER_INTERNAL || sp_owner_is_user(*tag))
		__atomic_store_n(tag, SP_OWNER_RESERVE, __ATOMIC_RELEASE);
	else
		rc = -EINVAL;
	unlock_backing(s, c);
	return rc;
}

/*
 * KMALLOC: finish the put, fill or drain that put_off records (see the top
 * of this file).  @el: elements[0, curr_nr), recovered and sorted.  Pool
 * locked.
 */
static void recover_put_locked(struct sp_seg *s, struct sp_pool *p, sp_off_t *el)
{
	sp_off_t off = p->put_off;
	const struct sp_cache *g;
	struct sp_cache *c, buf;
	struct sp_slab *slab;
	uint16_t *tag = NULL; /* set whenever lock_elem() succeeds */
	uint32_t pfn, idx;

	sp_assert(sp_lock_held(&p->lock));
	if (off && !(p->curr_nr && bsearch(&off, el, p->curr_nr, sizeof(*el), cmp_off)) &&
	    lock_elem(s, p, off, NULL, &c, &buf, &g, &tag, &pfn, &slab, &idx) == 0) {
		if (*tag == SP_OWNER_RESERVE && el && p->curr_nr < p->min_nr) {
			el[p->curr_nr] = off; /* a put or fill, cut short after its tag */
			__atomic_store_n(&p->curr_nr, p->curr_nr + 1, __ATOMIC_RELEASE);
		} else if (*tag == SP_OWNER_RESERVE || *tag == SP_OWNER_INTERNAL) {
			/* a fill before its tag, a drain after its commit (or no
			 * room: min_nr was scribbled on): back to the class,
			 * forgotten first (see class_drain_one_locked()) */
			__atomic_store_n(&p->put_off, 0, __ATOMIC_RELEASE);
			sp_cache_free_obj_locked(s, c, g, slab, idx);
			c->nr_free++;
			if (p->nr_objs)
				__atomic_store_n(&p->nr_objs, p->nr_objs - 1, __ATOMIC_RELAXED);
		} /* else a put before its tag: its holder still holds it */
		unlock_backing(s, c);
	}
	__atomic_store_n(&p->put_off, 0, __ATOMIC_RELEASE);
}

/**
 * sp_pool_recover_locked() - rebuild a pool's reserve after its lock owner died.
 * @s: segment.  @p: pool, locked.
 *
 * elements[0, curr_nr) is the reserve: invalid or duplicate entries are
 * dropped, the rest re-tagged RESERVE; RESERVE-tagged elements outside it
 * (a put or take cut short) rejoin the reserve while it has room and go back
 * to the backing otherwise.  A KMALLOC-backed pool adopts no stray RESERVE
 * tag of its shared class; its put_off says what was in flight instead.
 * When its cache's geometry is corrupted no entry can be verified, and the
 * reserve is left as it is (the cache refuses every use anyway).
 * May sleep.
 */
void sp_pool_recover_locked(struct sp_seg *s, struct sp_pool *p)
{
	sp_off_t *el = elements(s, p), *tagged = NULL, *sorted = NULL;
	struct sp_cache *c = elem_cache(s, p);
	uint32_t i, n = 0, ntag = 0;
	uint16_t old;

	sp_assert(sp_lock_held(&p->lock));
	if (!el)
		p->elements_cap = 0;
	if (p->min_nr > p->elements_cap)
		p->min_nr = p->elements_cap;
	if (p->curr_nr > p->min_nr)
		p->curr_nr = p->min_nr;
	if (c && !sp_cache_geometry_ok(s, c))
		goto out;
	/* keep valid, distinct entries (their order in the reserve is free) */
	if (p->curr_nr) /* el may be NULL: no array */
		qsort(el, p->curr_nr, sizeof(*el), cmp_off);
	for (i = 0; i < p->curr_nr; i++) {
		if (i && el[i] == el[i - 1])
			continue;
		if ((p->backing == SP_BACK_KMALLOC
			     ? reclaim_entry(s, p, el[i])
			     : retag(s, p, el[i], SP_OWNER_RESERVE, NULL, &old)) == 0)
			el[n++] = el[i];
	}
	p->curr_nr = n;
	if (p->backing == SP_BACK_KMALLOC)
		recover_put_locked(s, p, el);
	else if (reserve_tagged(s, p, &tagged, &ntag) == 0) {
		sorted = malloc((n ? n : 1) * sizeof(*sorted));
		if (sorted) {
			if (n)
				memcpy(sorted, el, n * sizeof(*sorted));
			qsort(sorted, n, sizeof(*sorted), cmp_off);
			for (i = 0; i < ntag; i++) {
				if (bsearch(&tagged[i], sorted, n, sizeof(*sorted), cmp_off))
					continue;
				if (p->curr_nr < p->min_nr)
					el[p->curr_nr++] = tagged[i];
				else
					backing_free(s, p, NULL, tagged[i], SP_OWNER_RESERVE);
			}
		}
		free(sorted);
		free(tagged);
	}
out:
	__atomic_store_n(&p->nr_waiters, 0, __ATOMIC_RELAXED);
	wake_waiters(p, INT_MAX); /* waiters re-register */
}

/**
 * sp_pool_lock() - lock a pool, recovering it if the owner died.
 * @s: segment.  @p: pool.
 *
 * May sleep.
 * Return: 0 or a negative errno.
 */
int sp_pool_lock(struct sp_seg *s, struct sp_pool *p)
{
	int rc = sp_lock(s, &p->lock);

	if (sp_unlikely(rc == SP_LOCK_RECOVER)) {
		sp_pool_recover_locked(s, p);
		sp_lock_consistent(&p->lock);
		rc = 0;
	}
	return rc;
}

void sp_pool_unlock(struct sp_pool *p)
{
	sp_unlock(&p->lock);
}

/**
 * sp_pool_nr_out() - elements currently handed out (not in the reserve).
 * @s: segment.  @p: pool.
 *
 * Unlocked snapshot.  For a KMALLOC-backed pool a statistic that may
 * over-count after a crash or the release of a dead slot (see the top of
 * this file).  Does not sleep.
 * Return: the count.
 */
uint64_t sp_pool_nr_out(struct sp_seg *s, struct sp_pool *p)
{
	uint64_t total, curr = __atomic_load_n(&p->curr_nr, __ATOMIC_RELAXED);
	struct sp_cache *c;

	if (p->backing == SP_BACK_SLAB) {
		c = pool_cache(s, p);
		total = c ? __atomic_load_n(&c->active_objs, __ATOMIC_RELAXED) : 0;
		curr += c ? sp_mag_cached(s, c->id) : 0; /* cached free, not out */
	} else if (p->backing == SP_BACK_KMALLOC) {
		total = __atomic_load_n(&p->nr_objs, __ATOMIC_RELAXED);
	} else {
		total = __atomic_load_n(&p->nr_pages_out, __ATOMIC_RELAXED);
	}
	return total > curr ? total - curr : 0;
}

/*
 * KMALLOC: nr_objs may over-count (see the top of this file).  Each element
 * out is an object of the class that a slot holds, so lower it to the
 * reserve plus what the class's users hold, if above.  Pool and class
 * locked: no live process is between a count and its object.
 */
static void class_clamp_locked(struct sp_seg *s, struct sp_pool *p, struct sp_cache *c)
{
	struct sp_cache g;
	uint64_t held = 0;

	sp_assert(sp_lock_held(&p->lock) && sp_lock_held(&c->lock));
	if (sp_cache_snapshot(s, c, &g))
		return; /* nothing can be counted: keep the over-count */
	for (unsigned l = SP_LIST_PARTIAL; l <= SP_LIST_FULL; l++) {
		uint32_t pg = c->list_head[l], len = 0;

		while (pg && len++ < c->nr_slabs && sp_slab_valid(s, &g, pg - 1)) {
			struct sp_slab *slab = sp_slab_at(s, &g, pg - 1);
			uint16_t *own = sp_slab_owners(&g, slab);

			for (uint32_t i = 0; i < g.objperslab; i++)
				held += (slab->bitmap[i / 64] >> (i % 64) & 1) &&
					sp_owner_is_user(own[i]);
			pg = s->pages[pg - 1].next;
		}
	}
	if (p->nr_objs > p->curr_nr + held)
		__atomic_store_n(&p->nr_objs, p->curr_nr + held, __ATOMIC_RELAXED);
}

/**
 * sp_pool_kmalloc_settle() - recover the KMALLOC-backed pools, and
 * optionally correct their counts.
 * @s: segment.
 * @clamp: also lower each LIVE one's nr_objs to its reserve plus what the
 *         users of its class hold, if above (after a dead slot's objects
 *         were released: the pool elements among them went back as
 *         kmalloc objects).
 *
 * Locking each pool recovers it if its owner died, which settles its
 * put_off and its reserve entries.  Call it before freeing objects that
 * nobody holds any more - the registry's sweep of INTERNAL memory, the
 * release of a dead slot - so that no object recovery is yet to look at
 * can be freed and handed out again first (see the top of this file).
 * Caller holds no pool or cache lock.  May sleep.
 */
void sp_pool_kmalloc_settle(struct sp_seg *s, bool clamp)
{
	s->nr_settles++;
	for (uint32_t i = 0; i < s->geo.max_pools; i++) {
		struct sp_pool *p = &sp_pools(s)[i];
		struct sp_cache *c;

		if (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) == SP_DESC_FREE ||
		    p->backing != SP_BACK_KMALLOC || sp_pool_lock(s, p))
			continue;
		c = pool_class(s, p);
		if (clamp && p->state == SP_DESC_LIVE && c && sp_cache_lock(s, c) == 0) {
			class_clamp_locked(s, p, c);
			sp_cache_unlock(c);
		}
		sp_pool_unlock(p);
	}
}

/* ---- create, resize, destroy ---------------------------------------------- */

/*
 * KMALLOC: put @off, held under a tag holder_ok() for @expect, into the
 * reserve, recorded in put_off until the commit (see the top of this
 * file).  @fill: from INTERNAL, filling the reserve; else a free.  Pool
 * locked, curr_nr < min_nr <= elements_cap, the array present.
 */
static int class_put_locked(struct sp_seg *s, struct sp_pool *p, sp_off_t off, uint16_t expect,
			    bool fill)
{
	uint16_t old;
	int rc;

	sp_assert(sp_lock_held(&p->lock));
	__atomic_store_n(&p->put_off, off, __ATOMIC_RELEASE);
	if (fill)
		SP_CRASH_POINT("pool.create.reserve");
	rc = retag(s, p, off, SP_OWNER_RESERVE, &expect, &old);
	if (rc) {
		__atomic_store_n(&p->put_off, 0, __ATOMIC_RELEASE);
		return rc;
	}
	elements(s, p)[p->curr_nr] = off;
	if (!fill)
		SP_CRASH_POINT("pool.reserve.put");
	__atomic_store_n(&p->curr_nr, p->curr_nr + 1, __ATOMIC_RELEASE); /* the commit */
	__atomic_store_n(&p->put_off, 0, __ATOMIC_RELEASE);
	return 0;
}

/* Fill the reserve up to @target.  Pool and registry locked. */
static int grow_reserve_locked(struct sp_seg *s, struct sp_pool *p, uint32_t target)
{
	sp_off_t *el = elements(s, p), off;
	int rc;

	sp_assert(sp_lock_held(&s->hdr->registry_lock) && sp_lock_held(&p->lock));
	if (!el && p->curr_nr < target)
		return sp_err(-EFAULT, "pool %s: reserve array is corrupted", p->name);
	/* KMALLOC: curr_nr <= min_nr at every instant, so min_nr is raised first */
	if (target > p->elements_cap || (p->backing == SP_BACK_KMALLOC && target > p->min_nr))
		return sp_err(-EFAULT, "pool %s: filling to %u, above min_nr %u or capacity %u",
			      p->name, target, p->min_nr, p->elements_cap);
	while (p->curr_nr < target) {
		if (p->backing == SP_BACK_KMALLOC) {
			/* INTERNAL until its put: a death in between leaves an
			 * object the registry's recovery sweeps (we hold its lock) */
			rc = backing_alloc(s, p, NULL, SP_OWNER_INTERNAL, &off);
			if (rc)
				return rc;
			rc = class_put_locked(s, p, off, SP_OWNER_INTERNAL, true);
			if (rc) {
				backing_free(s, p, NULL, off, SP_OWNER_INTERNAL);
				return rc;
			}
			continue;
		}
		rc = backing_alloc(s, p, NULL, SP_OWNER_RESERVE, &off);
		if (rc)
			return rc;
		el[p->curr_nr] = off;
		p->curr_nr++;
		SP_CRASH_POINT("pool.create.reserve");
	}
	return 0;
}

/*
 * KMALLOC: take the last reserve element out under put_off, tagged INTERNAL
 * until it is back in the class (see the top of this file).  Pool and
 * registry locked.
 */
static void class_drain_one_locked(struct sp_seg *s, struct sp_pool *p, sp_off_t off)
{
	uint16_t must = SP_OWNER_RESERVE, old;

	sp_assert(sp_lock_held(&s->hdr->registry_lock) && sp_lock_held(&p->lock));
	__atomic_store_n(&p->put_off, off, __ATOMIC_RELEASE);
	if (retag(s, p, off, SP_OWNER_INTERNAL, &must, &old)) {
		/* not a reserve element: the array was scribbled on; drop the
		 * entry, never free what may be somebody else's */
		__atomic_store_n(&p->put_off, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&p->curr_nr, p->curr_nr - 1, __ATOMIC_RELEASE);
		return;
	}
	SP_CRASH_POINT("pool.destroy.drain");
	__atomic_store_n(&p->curr_nr, p->curr_nr - 1, __ATOMIC_RELEASE); /* the commit */
	/* forget it before it is free: a free object may be handed out and put
	 * into another pool's reserve before our recovery reads put_off;
	 * dying in between leaves an INTERNAL object for the registry's sweep */
	__atomic_store_n(&p->put_off, 0, __ATOMIC_RELEASE);
	backing_free(s, p, NULL, off, SP_OWNER_INTERNAL);
}

/* Give the reserve back down to @target.  Pool and registry locked. */
static void drain_reserve_locked(struct sp_seg *s, struct sp_pool *p, uint32_t target)
{
	sp_off_t *el = elements(s, p);

	sp_assert(sp_lock_held(&s->hdr->registry_lock) && sp_lock_held(&p->lock));
	if (p->curr_nr > p->elements_cap) { /* corrupted: recovery clamps it */
		sp_pool_recover_locked(s, p);
		el = elements(s, p);
	}
	while (el && p->curr_nr > target) {
		sp_off_t off = el[p->curr_nr - 1];

		if (p->backing == SP_BACK_KMALLOC) {
			class_drain_one_locked(s, p, off);
			continue;
		}
		p->curr_nr--;
		SP_CRASH_POINT("pool.destroy.drain");
		backing_free(s, p, NULL, off, SP_OWNER_RESERVE);
	}
}

/*
 * Replace the reserve array by one of @cap entries (none for 0), keeping
 * the entries that fit.  Pool and registry locked: the arrays are INTERNAL
 * memory (registry.c), so a death before the old one is freed leaves it
 * to the registry's sweep.  elements_cap never exceeds the array in
 * elements_off: it is lowered before a swap to a smaller array and raised
 * after one to a larger, since recovery trusts it (a rolled-back resize
 * swaps back down; callers never leave more than @cap entries in use).
 */
static int set_elements_cap_locked(struct sp_seg *s, struct sp_pool *p, uint32_t cap)
{
	sp_off_t off = 0, old = p->elements_off;
	sp_off_t *el = elements(s, p);
	uint32_t n;
	int rc;

	sp_assert(sp_lock_held(&s->hdr->registry_lock) && sp_lock_held(&p->lock));
	if (cap) {
		rc = sp_kmalloc_owner(s, (uint64_t)cap * sizeof(sp_off_t), SP_OWNER_INTERNAL, &off);
		if (rc)
			return rc;
		n = p->curr_nr < p->elements_cap ? p->curr_nr : p->elements_cap;
		if (el && n) /* never more than either array holds */
			memcpy(sp_ptr(s, off), el, (size_t)(n < cap ? n : cap) * sizeof(sp_off_t));
	}
	if (cap < p->elements_cap)
		p->elements_cap = cap;
	p->elements_off = off;
	SP_CRASH_POINT("pool.resize.swap");
	p->elements_cap = cap;
	if (old)
		sp_kfree(s, old);
	return 0;
}

/**
 * sp_pool_teardown_locked() - give back everything a pool holds.
 * @s: segment; registry lock held.  @p: pool, locked, with nothing out.
 *
 * Used by destroy and by the rollback of a failed or interrupted create.
 * May sleep.
 * Return: 0 or -EBUSY when elements are still out.
 */
int sp_pool_teardown_locked(struct sp_seg *s, struct sp_pool *p)
{
	struct sp_cache *c = &sp_caches(s)[sp_pool_cache_id(s, p->id)];

	bool live = p->state == SP_DESC_LIVE;
	uint64_t out = 0;
	int rc;

	sp_assert(sp_lock_held(&s->hdr->registry_lock) && sp_lock_held(&p->lock));
	/* close the backing to new allocations and count what is out, atomically */
	if (p->backing == SP_BACK_SLAB && c->state != SP_DESC_FREE) {
		rc = sp_cache_lock(s, c);
		if (rc)
			return rc;
		out = c->active_objs > p->curr_nr ? c->active_objs - p->curr_nr : 0;
		if (!live || !out) {
			/* the pool first: dying between the two stores must not leave
			 * a LIVE pool whose cache refuses every allocation; a
			 * DESTROYING pool is finished by registry recovery */
			p->state = SP_DESC_DESTROYING;
			c->state = SP_DESC_DESTROYING;
		}
		sp_cache_unlock(c);
	} else if (p->backing == SP_BACK_PAGES) {
		rc = sp_buddy_lock(s);
		if (rc)
			return rc;
		out = p->nr_pages_out > p->curr_nr ? p->nr_pages_out - p->curr_nr : 0;
		if (!live || !out)
			p->state = SP_DESC_DESTROYING;
		sp_buddy_unlock(s);
	} else if (p->backing == SP_BACK_KMALLOC && pool_class(s, p)) {
		struct sp_cache *k = pool_class(s, p);

		/* under the class lock, which class_alloc() checks the state under */
		rc = sp_cache_lock(s, k);
		if (rc)
			return rc;
		if (live && p->nr_objs > p->curr_nr)
			class_clamp_locked(s, p, k);
		out = p->nr_objs > p->curr_nr ? p->nr_objs - p->curr_nr : 0;
		if (!live || !out)
			p->state = SP_DESC_DESTROYING;
		sp_cache_unlock(k);
	}
	if (live && out) {
		uint64_t cached = p->backing == SP_BACK_SLAB ? sp_mag_cached(s, c->id) : 0;

		if (cached && cached <= out)
			return sp_err(-EBUSY, "pool %s has %llu elements out and %llu cached free "
					      "in the magazines of live threads (each must flush "
					      "them first)",
				      p->name, (unsigned long long)(out - cached),
				      (unsigned long long)cached);
		return sp_err(-EBUSY, "pool %s has %llu elements out", p->name,
			      (unsigned long long)out);
	}
	p->state = SP_DESC_DESTROYING;
	drain_reserve_locked(s, p, 0);
	set_elements_cap_locked(s, p, 0);
	if (p->backing == SP_BACK_SLAB && c->state != SP_DESC_FREE) {
		if (sp_cache_lock(s, c) == 0) {
			if (sp_cache_teardown_locked(s, c) == 0) {
				c->magic = 0;
				c->state = SP_DESC_FREE;
			}
			sp_cache_unlock(c);
		}
	}
	p->magic = 0;
	__atomic_store_n(&p->state, SP_DESC_FREE, __ATOMIC_RELEASE);
	return 0;
}

/**
 * sp_pool_create() - create a named pool and fill its reserve.
 * @s: segment.  @name: 1..63 of [A-Za-z0-9._-].
 * @pp: element size, min_nr, max_nr, backing, flags.
 * @id: the new pool's id.
 *
 * May sleep.
 * Return: 0; -EEXIST; -EINVAL (name, size, max_nr < min_nr; for KMALLOC
 * backing a size above SP_KMALLOC_MAX, reclaim-on-exit, debug flags or an
 * alignment above 8); -ENFILE (pool table full); -ENOMEM when min_nr
 * elements do not fit (nothing is kept).
 */
int sp_pool_create(struct sp_seg *s, const char *name, const struct sp_pool_params *pp,
		   uint32_t *id)
{
	struct sp_pool *p = NULL;
	struct sp_cache *c;
	uint32_t i, found;
	char cname[SP_NAME_MAX + 1];
	int rc;

	rc = sp_name_check(name);
	if (rc)
		return rc;
	if (!pp->elem_size || pp->elem_size > s->size)
		return sp_err(-EINVAL, "element size %llu is outside 1..%llu (segment size)",
			      (unsigned long long)pp->elem_size, (unsigned long long)s->size);
	if (pp->min_nr > SP_POOL_MAX_MIN_NR || (uint64_t)pp->min_nr * pp->elem_size > s->size)
		return sp_err(-ENOMEM, "min_nr %u elements of %llu bytes cannot fit the segment",
			      pp->min_nr, (unsigned long long)pp->elem_size);
	if (pp->max_nr && pp->max_nr < pp->min_nr)
		return sp_err(-EINVAL, "max_nr %u is below min_nr %u", pp->max_nr, pp->min_nr);
	if (pp->backing != SP_BACK_SLAB && pp->backing != SP_BACK_PAGES &&
	    pp->backing != SP_BACK_KMALLOC)
		return sp_err(-EINVAL, "unknown backing allocator %u", pp->backing);
	if (pp->flags & ~SP_POOL_RECLAIM_ON_EXIT)
		return sp_err(-EINVAL, "unknown pool flags %#x", pp->flags);
	if (pp->backing == SP_BACK_KMALLOC) {
		if (pp->elem_size > SP_KMALLOC_MAX)
			return sp_err(-EINVAL, "element size %llu is above the largest kmalloc "
					       "class (%u bytes): use slab or pages backing",
				      (unsigned long long)pp->elem_size, SP_KMALLOC_MAX);
		if (pp->flags & SP_POOL_RECLAIM_ON_EXIT)
			return sp_err(-EINVAL, "reclaim-on-exit needs slab or pages backing: a "
					       "kmalloc class is shared, so a dead process's "
					       "elements cannot be told from its other objects");
		if (pp->cache_flags & SP_CACHE_USER_FLAGS)
			return sp_err(-EINVAL, "hwcache_align, poison and redzone need slab "
					       "backing: a kmalloc class is shared");
		if (pp->align > 8)
			return sp_err(-EINVAL, "alignment %u needs slab backing: kmalloc classes "
					       "align objects to 8 bytes", pp->align);
	}
	rc = sp_registry_lock(s);
	if (rc)
		return rc;
	if (sp_hash_lookup_locked(s, true, name, &found) == 0) {
		rc = sp_err(-EEXIST, "pool %s already exists", name);
		goto out;
	}
	for (i = 0; i < s->geo.max_pools; i++) {
		if (sp_pools(s)[i].state == SP_DESC_FREE &&
		    sp_caches(s)[sp_pool_cache_id(s, i)].state == SP_DESC_FREE) {
			p = &sp_pools(s)[i];
			break;
		}
	}
	if (!p) {
		rc = sp_err(-ENFILE, "pool table full (%u pools)", s->geo.max_pools);
		goto out;
	}
	rc = sp_pool_lock(s, p);
	if (rc)
		goto out;
	p->magic = SP_POOL_MAGIC ^ i;
	p->state = SP_DESC_CREATING;
	memset(p->name, 0, sizeof(p->name));
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->flags = pp->flags;
	p->backing = pp->backing;
	p->elem_size = pp->elem_size;
	p->max_nr = pp->max_nr;
	p->creator_uid = pp->uid;
	p->mode = pp->mode ? pp->mode : 0600;
	p->min_nr = p->curr_nr = p->elements_cap = p->nr_pages_out = 0;
	p->elements_off = p->put_off = 0;
	p->nr_objs = 0;
	p->nr_waiters = 0;
	p->nr_alloc = p->nr_free = p->nr_reserve_alloc = p->nr_fail = p->nr_wait = 0;
	p->nr_bad_free = 0;
	p->cache_id = sp_pool_cache_id(s, i);
	p->page_order = 0;
	if (pp->backing == SP_BACK_SLAB) {
		c = &sp_caches(s)[p->cache_id];
		snprintf(cname, sizeof(cname), "pool.%s", name);
		c->magic = SP_CACHE_MAGIC ^ p->cache_id;
		rc = sp_cache_setup(s, c, cname, pp->elem_size, pp->align,
				    SP_CACHE_ANON | (pp->cache_flags & SP_CACHE_USER_FLAGS));
		if (rc) {
			c->magic = 0;
			goto fail;
		}
		c->pool_id = i + 1;
		c->max_objs = pp->max_nr;
		c->creator_uid = pp->uid;
		c->mode = p->mode;
		c->gen++;
		__atomic_store_n(&c->state, SP_DESC_LIVE, __ATOMIC_RELEASE);
	} else if (pp->backing == SP_BACK_KMALLOC) {
		p->cache_id = (uint32_t)sp_kmalloc_class(pp->elem_size); /* shared with others */
		if (!pool_class(s, p)) {
			rc = sp_err(-EFAULT, "kmalloc class %u of %llu bytes is corrupted",
				    p->cache_id, (unsigned long long)pp->elem_size);
			goto fail;
		}
	} else {
		while (((uint64_t)SP_PAGE_SIZE << p->page_order) < pp->elem_size)
			p->page_order++;
		if (p->page_order > s->geo.max_order) {
			rc = sp_err(-EINVAL, "element size %llu is above the largest block",
				    (unsigned long long)pp->elem_size);
			goto fail;
		}
	}
	rc = set_elements_cap_locked(s, p, pp->min_nr);
	if (!rc) {
		p->min_nr = pp->min_nr;
		rc = grow_reserve_locked(s, p, pp->min_nr);
		if (rc)
			rc = sp_err(-ENOMEM, "min_nr %u elements of %llu bytes do not fit: only %u did",
				    pp->min_nr, (unsigned long long)pp->elem_size, p->curr_nr);
	}
	if (!rc)
		rc = sp_hash_insert_locked(s, true, name, i);
	if (rc)
		goto fail;
	SP_CRASH_POINT("registry.insert");
	p->gen++;
	__atomic_store_n(&p->state, SP_DESC_LIVE, __ATOMIC_RELEASE);
	s->hdr->nr_live_pools++;
	sp_pool_unlock(p);
	*id = i;
	goto out;
fail:
	sp_pool_teardown_locked(s, p);
	sp_pool_unlock(p);
out:
	sp_registry_unlock(s);
	return rc;
}

/**
 * sp_pool_lookup() - find a pool by name.
 * @s: segment.  @name: its name.  @id: its id.
 *
 * May sleep.
 * Return: 0, -EINVAL (bad name) or -ENOENT.
 */
int sp_pool_lookup(struct sp_seg *s, const char *name, uint32_t *id)
{
	return sp_registry_lookup(s, true, name, id);
}

/**
 * sp_pool_resize() - change min_nr, filling or draining the reserve.
 * @s: segment.  @p: pool.  @new_min_nr: the new reserve size.
 *
 * May sleep.
 * Return: 0; -ENOMEM when the larger reserve does not fit (min_nr is then
 * unchanged); -EINVAL when above max_nr.
 */
int sp_pool_resize(struct sp_seg *s, struct sp_pool *p, uint32_t new_min_nr)
{
	int rc;

	if (new_min_nr > SP_POOL_MAX_MIN_NR || (p->max_nr && new_min_nr > p->max_nr))
		return sp_err(-EINVAL, "min_nr %u is above max_nr %u", new_min_nr, p->max_nr);
	rc = sp_registry_lock(s);
	if (rc)
		return rc;
	rc = sp_pool_lock(s, p);
	if (rc)
		goto out;
	if (p->state != SP_DESC_LIVE) {
		rc = sp_err(-ENOENT, "pool was destroyed");
	} else if (new_min_nr > p->min_nr) {
		uint32_t old_min = p->min_nr, old_curr = p->curr_nr, old_cap = p->elements_cap;

		if (new_min_nr > p->elements_cap)
			rc = set_elements_cap_locked(s, p, new_min_nr);
		/*
		 * Fill first, raise min_nr last (the commit): if we die in between,
		 * recovery clamps curr_nr to the old min_nr and gives the extra
		 * elements back, so a resize is all or nothing, never a raised
		 * min_nr with a reserve that nobody will fill.  Not for a shared
		 * kmalloc class, where recovery may give back nothing it finds
		 * outside elements[0, curr_nr): min_nr goes first, and a death
		 * mid-way leaves a short reserve that frees refill.
		 */
		if (!rc && p->backing == SP_BACK_KMALLOC)
			p->min_nr = new_min_nr;
		if (!rc)
			rc = grow_reserve_locked(s, p, new_min_nr);
		if (!rc)
			p->min_nr = new_min_nr;
		if (rc) {
			drain_reserve_locked(s, p, old_curr > old_min ? old_min : old_curr);
			p->min_nr = old_min;
			/* give back what the attempt took: the larger array, empty slabs */
			if (p->elements_cap > old_cap)
				set_elements_cap_locked(s, p, old_cap);
			if (elem_cache(s, p))
				sp_cache_shrink(s, elem_cache(s, p));
			rc = sp_err(-ENOMEM, "pool %s: %u reserved elements do not fit", p->name,
				    new_min_nr);
		}
	} else if (p->backing == SP_BACK_KMALLOC) {
		drain_reserve_locked(s, p, new_min_nr); /* curr_nr <= min_nr throughout */
		p->min_nr = new_min_nr;
	} else {
		p->min_nr = new_min_nr;
		drain_reserve_locked(s, p, new_min_nr);
	}
	sp_pool_unlock(p);
out:
	sp_registry_unlock(s);
	return rc;
}

/**
 * sp_pool_destroy() - destroy a pool with no elements out.
 * @s: segment.  @id: the pool.
 *
 * May sleep.
 * Processes sleeping in sp_pool_alloc() on it wake up with -ENOENT.
 * Return: 0; -EBUSY while elements are out; -ENOENT.
 */
int sp_pool_destroy(struct sp_seg *s, uint32_t id)
{
	struct sp_pool *p;
	char name[SP_NAME_MAX + 1];
	int rc = sp_registry_lock(s);

	if (rc)
		return rc;
	p = sp_pool_get(s, id);
	if (!p) {
		rc = sp_err(-ENOENT, "no pool with id %u", id);
		goto out;
	}
	rc = sp_pool_lock(s, p);
	if (rc)
		goto out;
	memcpy(name, p->name, sizeof(name));
	rc = sp_pool_teardown_locked(s, p);
	if (!rc) {
		sp_hash_remove_locked(s, true, name);
		SP_CRASH_POINT("registry.remove"); /* FREE: recovery recounts the pools */
		s->hdr->nr_live_pools--;
		/* sleepers (nr_waiters is advisory: a killed waiter leaves it
		 * high) wake up, find the pool gone and return -ENOENT */
		__atomic_store_n(&p->nr_waiters, 0, __ATOMIC_RELAXED);
		wake_waiters(p, INT_MAX);
	}
	sp_pool_unlock(p);
out:
	sp_registry_unlock(s);
	return rc;
}

/* ---- the data path ---------------------------------------------------------- */

/* Take the last reserve element for the calling slot; pool locked. */
static int take_reserve_locked(struct sp_seg *s, struct sp_pool *p, sp_off_t *off)
{
	sp_off_t *el = elements(s, p);
	uint16_t old, reserve = SP_OWNER_RESERVE;
	int rc;

	sp_assert(sp_lock_held(&p->lock));
	if (!el || !p->curr_nr)
		return -ENOMEM;
	/* a corrupted entry or count: rebuild and let the caller retry */
	if (p->curr_nr > p->min_nr || p->min_nr > p->elements_cap)
		rc = -EFAULT;
	else /* in a shared class, only ever what carries the RESERVE tag */
		rc = retag(s, p, el[p->curr_nr - 1], s->owner,
			   p->backing == SP_BACK_KMALLOC ? &reserve : NULL, &old);
	if (rc) {
		sp_pool_recover_locked(s, p);
		return -EAGAIN;
	}
	SP_CRASH_POINT("pool.reserve.take");
	*off = el[p->curr_nr - 1];
	__atomic_store_n(&p->curr_nr, p->curr_nr - 1, __ATOMIC_RELEASE);
	p->nr_reserve_alloc++;
	return 0;
}

/*
 * sp_pool_alloc_geo() once the backing said -ENOMEM: the reserve, then
 * sleep and try the backing again, until @deadline (of @timeout_ms >= 0).
 * Out of line: on every call the backing can serve, its first try does.
 */
static __attribute__((noinline)) int alloc_reserve_or_wait(struct sp_seg *s, struct sp_pool *p,
							   const struct sp_cache *mine, int flags,
							   int timeout_ms, uint64_t deadline,
							   sp_off_t *off)
{
	unsigned rebuilt = 0;
	int rc;

	for (bool tried = true;; tried = false) {
		uint32_t seq;
		int left = -1;

		if (!tried) { /* the caller's first try said -ENOMEM */
			rc = backing_alloc(s, p, mine, s->owner, off);
			if (sp_likely(rc == 0))
				goto ok;
			if (rc != -ENOMEM)
				return rc;
		}
		rc = sp_pool_lock(s, p);
		if (rc)
			return rc;
		if (p->state != SP_DESC_LIVE) {
			sp_pool_unlock(p);
			return sp_err(-ENOENT, "pool was destroyed");
		}
		rc = take_reserve_locked(s, p, off);
		if (rc == 0 || rc == -EAGAIN) {
			sp_pool_unlock(p);
			if (rc == 0)
				goto ok;
			/* a rebuilt reserve that is still unusable: corrupted, give up */
			if (++rebuilt > 3)
				return sp_err(-EFAULT, "pool %s: reserve still corrupted after %u "
						       "rebuilds",
					      p->name, rebuilt - 1);
			continue;
		}
		if (flags & SP_ALLOC_NOWAIT) {
			p->nr_fail++;
			sp_pool_unlock(p);
			return sp_err(-ENOMEM, "pool %s: backing and reserve both empty", p->name);
		}
		if (timeout_ms >= 0) {
			uint64_t now = sp_now_ms();

			if (now >= deadline) {
				p->nr_fail++;
				sp_pool_unlock(p);
				return sp_err(-ETIMEDOUT, "pool %s: no element freed within %d ms",
					      p->name, timeout_ms);
			}
			left = (int)(deadline - now);
		}
		__atomic_fetch_add(&p->nr_waiters, 1, __ATOMIC_SEQ_CST);
		seq = __atomic_load_n(&p->wait_seq, __ATOMIC_SEQ_CST);
		/* a free to the backing may have come before we registered */
		rc = backing_alloc(s, p, mine, s->owner, off);
		if (rc == 0) {
			__atomic_fetch_sub(&p->nr_waiters, 1, __ATOMIC_RELAXED);
			sp_pool_unlock(p);
			goto ok;
		}
		p->nr_wait++;
		sp_pool_unlock(p);
		rc = sp_futex_wait(&p->wait_seq, seq, left);
		if (__atomic_load_n(&p->nr_waiters, __ATOMIC_RELAXED))
			__atomic_fetch_sub(&p->nr_waiters, 1, __ATOMIC_RELAXED);
		if (rc == -EINTR)
			return sp_err(-EINTR, "interrupted while waiting on pool %s", p->name);
	}
ok:
	__atomic_fetch_add(&p->nr_alloc, 1, __ATOMIC_RELAXED);
	return 0;
}

/**
 * sp_pool_alloc() - allocate one element (mempool_alloc).
 * @s: segment with a registered slot.  @p: pool.
 * @flags: SP_ALLOC_NOWAIT never sleeps.
 * @timeout_ms: < 0 waits for ever; otherwise the longest sleep.
 * @off: the element.
 *
 * Tries the backing allocator, then the reserve, then sleeps until a free.
 * May sleep unless SP_ALLOC_NOWAIT.
 * Return: 0; -ENOMEM (NOWAIT and nothing free); -ETIMEDOUT; -EINTR;
 * -ENOENT when the pool was destroyed.
 */
int sp_pool_alloc(struct sp_seg *s, struct sp_pool *p, int flags, int timeout_ms, sp_off_t *off)
{
	return sp_pool_alloc_geo(s, p, NULL, flags, timeout_ms, off);
}

/**
 * sp_pool_alloc_geo() - sp_pool_alloc() with the caller's kept snapshot of
 * the backing cache.
 * @s: @p: @flags: @timeout_ms: @off: as sp_pool_alloc().
 * @mine: NULL, or a snapshot from sp_pool_backing_snapshot() kept by the
 *        caller (sp_cache_geo_locked() says when it is used).
 *
 * May sleep unless SP_ALLOC_NOWAIT.
 * Return: as sp_pool_alloc().
 */
int sp_pool_alloc_geo(struct sp_seg *s, struct sp_pool *p, const struct sp_cache *mine, int flags,
		      int timeout_ms, sp_off_t *off)
{
	uint64_t deadline = timeout_ms >= 0 ? sp_now_ms() + (uint64_t)timeout_ms : 0;
	int rc;

	if (sp_unlikely(!s->owner))
		return sp_err(-EPERM, "register a client slot before allocating");
	rc = backing_alloc(s, p, mine, s->owner, off);
	if (sp_likely(rc == 0)) {
		__atomic_fetch_add(&p->nr_alloc, 1, __ATOMIC_RELAXED);
		return 0;
	}
	if (rc != -ENOMEM)
		return rc;
	return alloc_reserve_or_wait(s, p, mine, flags, timeout_ms, deadline, off);
}

/**
 * sp_pools_wake_waiters() - wake every waiter of every pool to look again.
 * @s: segment.
 *
 * A free wakes one waiter; if that one is killed before it allocates, the
 * wake-up dies with it while the others sleep on beside a free element.
 * Called when a client is found dead, so no wake-up is lost for longer
 * than the daemon takes to notice, and by the registry's recovery (its
 * dead owner may have owed one).  Waiters re-check and sleep again if
 * nothing is there.  Lock-free; does not sleep.
 */
void sp_pools_wake_waiters(struct sp_seg *s)
{
	for (uint32_t i = 0; i < s->geo.max_pools; i++) {
		struct sp_pool *p = &sp_pools(s)[i];

		if (__atomic_load_n(&p->nr_waiters, __ATOMIC_SEQ_CST))
			wake_waiters(p, INT_MAX);
	}
}

/* free_owned() to the backing, without the pool lock (no reserve to refill,
 * no reclaim); wakes a waiter. */
static inline int free_to_backing(struct sp_seg *s, struct sp_pool *p, const struct sp_cache *mine,
				  sp_off_t off, uint16_t expect)
{
	int rc;

	/* backing_free() refuses reserve elements: they never leave this way */
	rc = backing_free_in(s, p, mine, off, expect);
	if (rc) {
		__atomic_fetch_add(&p->nr_bad_free, 1, __ATOMIC_RELAXED);
		return rc;
	}
	__atomic_fetch_add(&p->nr_free, 1, __ATOMIC_RELAXED);
	if (__atomic_load_n(&p->nr_waiters, __ATOMIC_SEQ_CST)) {
		if (sp_pool_lock(s, p) == 0) {
			wake_waiters(p, 1);
			sp_pool_unlock(p);
		}
	}
	return 0;
}

/* free_owned() under the pool lock: a reclaim, or a reserve to refill. */
static __attribute__((noinline)) int free_pool_locked(struct sp_seg *s, struct sp_pool *p,
						      const struct sp_cache *mine, sp_off_t off,
						      uint16_t expect)
{
	bool counted = !sp_owner_is_mag(expect);
	uint16_t old;
	int rc;

	rc = sp_pool_lock(s, p);
	if (rc)
		return rc;
	if (p->curr_nr < p->min_nr && p->curr_nr < p->elements_cap && elements(s, p)) {
		if (p->backing == SP_BACK_KMALLOC) {
			/* what is wrong with a refused free, in that order */
			rc = retag(s, p, off, 0, &expect, &old);
			if (!rc)
				rc = class_elem_out(p, off);
			if (!rc)
				rc = class_put_locked(s, p, off, expect, false);
		} else {
			rc = retag(s, p, off, SP_OWNER_RESERVE, &expect, &old);
			if (!rc) {
				elements(s, p)[p->curr_nr] = off;
				SP_CRASH_POINT("pool.reserve.put");
				__atomic_store_n(&p->curr_nr, p->curr_nr + 1,
						 __ATOMIC_RELEASE);
			}
		}
		if (!rc) {
			if (counted)
				__atomic_fetch_add(&p->nr_free, 1, __ATOMIC_RELAXED);
			if (__atomic_load_n(&p->nr_waiters, __ATOMIC_SEQ_CST))
				wake_waiters(p, 1);
		} else {
			p->nr_bad_free++;
		}
		sp_pool_unlock(p);
		return rc;
	}
	if (expect) {
		rc = backing_free(s, p, mine, off, expect);
		if (rc) {
			p->nr_bad_free++;
		} else {
			if (counted)
				__atomic_fetch_add(&p->nr_free, 1, __ATOMIC_RELAXED);
			if (__atomic_load_n(&p->nr_waiters, __ATOMIC_SEQ_CST))
				wake_waiters(p, 1);
		}
		sp_pool_unlock(p);
		return rc;
	}
	sp_pool_unlock(p);
	return free_to_backing(s, p, mine, off, expect);
}

/* sp_pool_free_owned(); @mine as for sp_pool_alloc_geo(). */
static inline __attribute__((always_inline)) int
free_owned(struct sp_seg *s, struct sp_pool *p, const struct sp_cache *mine, sp_off_t off,
	   uint16_t expect)
{
	/*
	 * A reclaim (@expect set) always goes through the pool lock: if the
	 * dead holder died inside a reserve take, recovery must roll that take
	 * back (the element returns to the reserve) before the element could
	 * be freed to the backing and handed out again while still listed in
	 * elements[].
	 */
	if (expect || __atomic_load_n(&p->curr_nr, __ATOMIC_ACQUIRE) < p->min_nr)
		return free_pool_locked(s, p, mine, off, expect);
	return free_to_backing(s, p, mine, off, expect);
}

/**
 * sp_pool_free_owned() - free an element, optionally only if @expect holds it.
 * @s: segment.  @p: pool.  @off: the element.
 * @expect: 0 for any holder, else the owner tag it must carry (reclaim;
 *          a magazine tag: a flush or the release of a dead slot's cached
 *          objects, which nr_free counted when they were pushed).
 *
 * May sleep.
 * Return: 0 or -EINVAL (not an allocated element of @p, or in the reserve).
 */
int sp_pool_free_owned(struct sp_seg *s, struct sp_pool *p, sp_off_t off, uint16_t expect)
{
	return free_owned(s, p, NULL, off, expect);
}

/**
 * sp_pool_free() - free an element (mempool_free).
 * @s: segment.  @p: pool.  @off: an element from sp_pool_alloc().
 *
 * Refills the reserve first, else returns the element to the backing; wakes
 * one waiter.  May sleep.
 * Return: 0 or -EINVAL (not an allocated element of @p: double free,
 * foreign or mid-element pointer, or another pool's element).
 */
int sp_pool_free(struct sp_seg *s, struct sp_pool *p, sp_off_t off)
{
	return free_owned(s, p, NULL, off, 0);
}

/**
 * sp_pool_free_geo() - sp_pool_free() with the caller's kept snapshot.
 * @s: segment.  @p: pool.  @mine: as for sp_pool_alloc_geo().  @off: the
 * element.
 *
 * May sleep.
 * Return: as sp_pool_free().
 */
int sp_pool_free_geo(struct sp_seg *s, struct sp_pool *p, const struct sp_cache *mine,
		     sp_off_t off)
{
	return free_owned(s, p, mine, off, 0);
}

/**
 * sp_pool_backing_snapshot() - a checked snapshot of the cache @p's
 * elements come from, for a client handle to keep and pass to
 * sp_pool_alloc_geo() and sp_pool_free_geo().
 * @s: segment.  @p: a LIVE pool.  @g: the snapshot (the caller's memory).
 *
 * Does not sleep.
 * Return: 0; -ENOENT for a page-backed pool (no cache) or a cache not
 * there; -EFAULT when its geometry fails sp_cache_geometry_ok().
 */
int sp_pool_backing_snapshot(struct sp_seg *s, struct sp_pool *p, struct sp_cache *g)
{
	struct sp_cache *c = p->backing == SP_BACK_PAGES ? NULL : elem_cache(s, p);

	if (!c)
		return -ENOENT;
	return sp_cache_snapshot(s, c, g);
}
