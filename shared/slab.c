/* SPDX-License-Identifier: MIT */
/*
 * slab.c - slab caches (kmem_cache) of fixed-size objects.
 *
 * A slab is a buddy block of 2^order pages whose head page has kind SLAB and
 * owner = cache id.  It starts with struct sp_slab, then the allocation
 * bitmap, then one 16-bit owner tag per object, then (after a colour offset
 * that differs from slab to slab, so that objects of different slabs fall on
 * different cache lines) the objects:
 *
 *	| sp_slab | bitmap | owner[n] | colour | obj 0 | obj 1 | ... | unused |
 *
 * The order is the smallest one whose unused tail is at most 1/16 of the
 * slab (SLUB's rule), up to order 5; colours spread that unused tail.
 *
 * Truth and crash safety: the bitmap is the truth.  alloc writes the owner
 * tag, then sets the bit (the commit); free clears the bit (the commit),
 * then the tag.  Counters, lists and hints are derived and are rebuilt by
 * sp_cache_recover_locked() from the bitmaps of the slabs the page metadata
 * says the cache owns.  So a process killed anywhere leaves every object
 * either free or allocated and attributed to its slot: never handed out
 * twice, never lost without an owner.  A slab whose header was not yet
 * committed (magic written last) goes back to the buddy allocator.
 *
 * Locking: cache->lock (level 3) protects the slabs of the cache; growing
 * and shrinking take the buddy lock inside it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

#define SP_SLAB_MAX_ORDER 5
#define SP_MAX_OBJ_SIZE (256u << 10)

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

static uint32_t slab_magic(const struct sp_cache *c, uint32_t pfn)
{
	return SP_SLAB_MAGIC ^ c->id ^ (pfn << 8);
}

static uint64_t meta_bytes(uint64_t n)
{
	return sizeof(struct sp_slab) + 8 * ((n + 63) / 64) + 2 * n;
}

/* Bytes from one object to the next: the object, its red zone, aligned. */
static uint64_t stride_of(uint64_t obj_size, uint64_t align, uint32_t flags)
{
	return align_up(obj_size + ((flags & SP_CACHE_REDZONE) ? SP_REDZONE_SIZE : 0), align);
}

/* Colours step by at least a cache line, so that they move objects apart. */
static uint64_t colour_off_of(uint64_t align)
{
	return align > 64 ? align : 64;
}

/* Colours that fit the unused tail of a slab whose objects end at @objs_end;
 * @colour_off is a power of two (colour_off_of()): a shift, no divide. */
static uint64_t colour_num_of(uint64_t slab_bytes, uint64_t objs_end, uint64_t colour_off)
{
	return ((slab_bytes - objs_end) >> __builtin_ctzll(colour_off)) + 1;
}

/**
 * sp_cache_geometry_ok() - is @c's geometry the one sp_cache_setup() makes?
 * @s: segment.  @c: a cache descriptor (shared: anybody may have written it).
 *
 * The geometry is derived from obj_size, align, flags, order and objperslab
 * by the formulas of sp_cache_setup(); every derived field must match them
 * exactly, and the result must fit a slab:
 *
 *   order <= max_order, 4 KiB << order <= the data area
 *   1 <= obj_size <= 256 KiB;  align a power of two in 8 .. 4096
 *   stride == align_up(obj_size + red zone, align);  recip == UINT64_MAX / stride + 1
 *   objperslab >= 1;  bitmap_words == ceil(objperslab / 64)
 *   owners_off == sizeof(sp_slab) + 8 * bitmap_words
 *   obj_start == align_up(owners_off + 2 * objperslab, align)
 *   obj_start + objperslab * stride <= slab bytes
 *   colour_off == max(align, 64);  colour_num == unused tail / colour_off + 1
 *
 * so the header, bitmap and owner tags lie before obj_start, and the objects
 * of the last colour end inside the slab.  Code that walks a cache's slabs
 * calls it first: it bounds every index and offset derived from the
 * descriptor.  Does not sleep.
 * Return: true when the slab code may use @c's geometry.
 */
bool sp_cache_geometry_ok(const struct sp_seg *s, const struct sp_cache *c)
{
	uint64_t n = c->objperslab, a = c->align, bytes, objs_end;

	if (c->order > s->geo.max_order || c->order > SP_MAX_ORDER_LIMIT)
		return false;
	bytes = (uint64_t)SP_PAGE_SIZE << c->order;
	if (bytes > s->geo.data.size || !n || !c->obj_size || c->obj_size > SP_MAX_OBJ_SIZE ||
	    a < 8 || a > SP_PAGE_SIZE || (a & (a - 1)) ||
	    c->stride != stride_of(c->obj_size, a, c->flags))
		return false;
	if (c->bitmap_words != (n + 63) / 64 ||
	    c->owners_off != sizeof(struct sp_slab) + 8ull * c->bitmap_words ||
	    c->obj_start != align_up(meta_bytes(n), a))
		return false;
	objs_end = c->obj_start + n * c->stride;
	if (objs_end > bytes || c->colour_off != colour_off_of(a) ||
	    c->colour_num != colour_num_of(bytes, objs_end, c->colour_off) || !c->recip)
		return false;
	/* no divide (the locked paths call this): recip - 1 == floor(UINT64_MAX /
	 * stride), checked by multiplying back */
	return (unsigned __int128)(c->recip - 1) * c->stride <= UINT64_MAX &&
	       (unsigned __int128)c->recip * c->stride > UINT64_MAX;
}

/* -EFAULT: @c's geometry fails sp_cache_geometry_ok(). */
static int bad_geometry(const struct sp_cache *c)
{
	return sp_err(-EFAULT, "cache %.63s: geometry corrupted, not used (see the checker)",
		      c->name);
}

/*
 * The geometry block of the last snapshot this thread found right, with the
 * segment geometry it was checked against: a snapshot equal to it is right
 * too, and comparing 9 words costs a third of the check (the locked alloc
 * and free take a snapshot on every call: about 100 instructions a pair
 * less).  Thread-private: no other process can put a wrong one here.
 */
#define GEO_FIRST offsetof(struct sp_cache, flags)
#define GEO_WORDS ((offsetof(struct sp_cache, recip) + sizeof(uint64_t) - GEO_FIRST) / 8)
_Static_assert(GEO_FIRST % 8 == 0 &&
		       offsetof(struct sp_cache, owners_off) < offsetof(struct sp_cache, recip),
	       "flags .. recip: the geometry, in whole words");
static _Thread_local uint64_t geo_seen[GEO_WORDS] __attribute__((tls_model("initial-exec")));
static _Thread_local uint64_t geo_seen_area __attribute__((tls_model("initial-exec")));

/* The check also depends on the segment's data size and max order, so both
 * are in the key (not the handle's address, which another segment may
 * reuse): the size is whole pages, the order below 4096, one word holds both. */
static uint64_t area_key(const struct sp_seg *s)
{
	return s->geo.data.size | s->geo.max_order;
}

static bool geo_seen_before(const struct sp_seg *s, const struct sp_cache *g)
{
	return geo_seen_area == area_key(s) &&
	       !memcmp((const uint8_t *)g + GEO_FIRST, geo_seen, sizeof(geo_seen));
}

/**
 * sp_cache_snapshot() - a private copy of @c whose geometry was checked.
 * @s: segment.  @c: a cache descriptor (shared: anybody may write it, even
 * while we walk its slabs).  @g: the copy, private to the caller.
 *
 * Checking @c itself and then reading its geometry again in a loop is a
 * time-of-check/time-of-use hole: a client rewriting objperslab or
 * bitmap_words in between drives the walk out of the slab.  So walks check
 * and use only @g for the geometry (and the slab helpers take it); the
 * lock, list heads and counters still live in @c.  A geometry equal to the
 * last one this thread found right is not checked again (geo_seen).
 * Does not sleep.
 * Return: 0, or -EFAULT when @g fails sp_cache_geometry_ok() (@g is
 * filled anyway).
 */
int sp_cache_snapshot(const struct sp_seg *s, const struct sp_cache *c, struct sp_cache *g)
{
	memcpy(g, c, sizeof(*g));
	/* compiler barrier: later reads of @g must not be turned into reads of @c */
	__asm__ __volatile__("" ::: "memory");
	if (geo_seen_before(s, g))
		return 0;
	if (!sp_cache_geometry_ok(s, g))
		return bad_geometry(g);
	memcpy(geo_seen, (const uint8_t *)g + GEO_FIRST, sizeof(geo_seen));
	geo_seen_area = area_key(s);
	return 0;
}

/**
 * sp_cache_geo_locked() - the geometry the locked paths use for @c.
 * @s: segment.  @c: cache, locked.
 * @mine: NULL, or a snapshot of @c that sp_cache_snapshot() accepted, kept
 *        by the caller in its own memory (a client handle: built once per
 *        handle, not once per call).
 * @buf: where a fresh snapshot goes when @mine cannot be used.
 * @g: set to @mine or @buf.
 *
 * @mine is used while it names @c in its current incarnation (same id and
 * generation, read under the lock: a destroy leaves LIVE under it, and a
 * cache created again at the id has another generation); its geometry
 * was checked when it was taken and is private, so a descriptor scribbled
 * on since cannot steer the caller, and no copy or check is made per call.
 * Otherwise (no @mine, a stale one) a snapshot is taken as always.
 * Does not sleep.
 * Return: 0, or -EFAULT when the fresh snapshot fails the check.
 */
int sp_cache_geo_locked(const struct sp_seg *s, const struct sp_cache *c,
			const struct sp_cache *mine, struct sp_cache *buf, const struct sp_cache **g)
{
	if (mine && mine->id == c->id && mine->gen == __atomic_load_n(&c->gen, __ATOMIC_RELAXED)) {
		*g = mine;
		return 0;
	}
	*g = buf;
	return sp_cache_snapshot(s, c, buf);
}

/* The slab helpers below (and sp_slab_owners(), sp_slab_at() in core.h)
 * take the geometry from @c: pass a snapshot (sp_cache_snapshot()) when
 * others may write the descriptor meanwhile. */

/*
 * The colour of @slab, read once and kept to one of @c's colours: the
 * header is shared and may change after sp_slab_valid() checked it, and
 * every colour of a valid geometry keeps the objects inside the slab.
 */
static uint32_t slab_colour(const struct sp_cache *c, const struct sp_slab *slab)
{
	uint32_t colour = __atomic_load_n(&slab->colour, __ATOMIC_RELAXED) & ~(c->colour_off - 1);

	return colour < (uint64_t)c->colour_off * c->colour_num ? colour : 0;
}

uint8_t *sp_slab_obj(const struct sp_cache *c, struct sp_slab *slab, uint32_t idx)
{
	return (uint8_t *)slab + c->obj_start + slab_colour(c, slab) + (uint64_t)idx * c->stride;
}

/*
 * sp_slab_valid() in a geometry sp_cache_geometry_ok() accepted: a checked
 * snapshot private to the caller (sp_cache_snapshot(), sp_cache_geo_locked()),
 * or a descriptor just checked.  That check already established, from the
 * same private copy, what sp_slab_valid() asks of the geometry itself
 * (colour_off a power of two, stride non-zero, order <= max_order), so only
 * the shared page record and slab header are checked here - all of them.
 * *@colour: the header's colour as read and checked here (read once: the
 * header is shared), for the caller to place objects with instead of
 * reading it again (slab_colour()).
 */
static inline bool slab_valid_geo(const struct sp_seg *s, const struct sp_cache *g,
				  uint32_t pfn, uint32_t *colour)
{
	const struct sp_slab *slab;

	/* pfn + 2^order <= nr_pages also bounds pfn itself */
	if ((uint64_t)pfn + (1u << g->order) > s->geo.nr_pages)
		return false;
	if (s->pages[pfn].info != SP_PG_INFO(SP_PG_ALLOC, g->order, SP_KIND_SLAB) ||
	    s->pages[pfn].owner != g->id)
		return false;
	slab = (const struct sp_slab *)(s->base + sp_pfn_off(s, pfn));
	*colour = __atomic_load_n(&slab->colour, __ATOMIC_RELAXED); /* shared: read once */
	return slab->magic == slab_magic(g, pfn) && slab->cache_id == g->id &&
	       !(*colour & (g->colour_off - 1)) &&
	       *colour < (uint64_t)g->colour_off * g->colour_num;
}

/**
 * sp_slab_valid() - is @pfn the head of a committed slab of @c?
 * @s: segment.  @c: cache.  @pfn: candidate head.
 *
 * Checks the page metadata and the header against the cache geometry, so
 * that code walking slabs never trusts a scribbled header.  Does not sleep.
 * Return: true when it is safe to use the slab's bitmap, owners and objects.
 */
bool sp_slab_valid(const struct sp_seg *s, const struct sp_cache *c, uint32_t pfn)
{
	uint32_t colour;

	/* colour_off is a power of two (sp_cache_setup()): no divide on this path */
	if (!c->colour_off || (c->colour_off & (c->colour_off - 1)) || !c->stride ||
	    c->order > s->geo.max_order || c->order > SP_MAX_ORDER_LIMIT)
		return false;
	return slab_valid_geo(s, c, pfn, &colour);
}

/**
 * sp_cache_setup() - compute a cache's geometry into a descriptor.
 * @s: segment.  @c: a descriptor not yet LIVE.  @name: its name.
 * @obj_size: bytes per object (1 .. 256 KiB).
 * @align: 0 (8) or a power of two up to 4096.
 * @flags: SP_CACHE_*.
 *
 * sp_cache_geometry_ok() checks a descriptor against the same formulas.
 * Does not sleep.
 * Return: 0 or -EINVAL with a message.
 */
int sp_cache_setup(struct sp_seg *s, struct sp_cache *c, const char *name, uint64_t obj_size,
		   uint64_t align, uint32_t flags)
{
	unsigned k, best = 0, max_k = s->geo.max_order;
	uint64_t stride, best_waste = 0, n, best_n = 0;

	if (!obj_size || obj_size > SP_MAX_OBJ_SIZE)
		return sp_err(-EINVAL, "object size %llu is outside 1..%u",
			      (unsigned long long)obj_size, SP_MAX_OBJ_SIZE);
	if (!align)
		align = 8;
	if (align & (align - 1) || align > SP_PAGE_SIZE)
		return sp_err(-EINVAL, "alignment %llu is not a power of two up to %u",
			      (unsigned long long)align, SP_PAGE_SIZE);
	if (align < 8)
		align = 8;
	if ((flags & SP_CACHE_HWCACHE_ALIGN) && align < 64)
		align = 64;
	stride = stride_of(obj_size, align, flags);
	if (max_k > SP_SLAB_MAX_ORDER)
		max_k = SP_SLAB_MAX_ORDER;
	for (k = 0; k <= s->geo.max_order; k++) {
		uint64_t bytes = (uint64_t)SP_PAGE_SIZE << k, waste;

		n = bytes / stride;
		while (n && align_up(meta_bytes(n), align) + n * stride > bytes)
			n--;
		if (!n)
			continue;
		/* the unused tail; the header and bitmaps are paid for per object */
		waste = bytes - align_up(meta_bytes(n), align) - n * stride;
		/* fewer wasted bytes per slab byte than the best so far? */
		if (!best_n || waste * ((uint64_t)SP_PAGE_SIZE << best) < best_waste * bytes) {
			best = k;
			best_n = n;
			best_waste = waste;
		}
		if (waste * 16 <= bytes || k >= max_k)
			break;
	}
	if (!best_n)
		return sp_err(-EINVAL, "object size %llu does not fit a slab of order %u",
			      (unsigned long long)obj_size, s->geo.max_order);

	memset(c->name, 0, sizeof(c->name));
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->flags = flags;
	c->obj_size = (uint32_t)obj_size;
	c->stride = (uint32_t)stride;
	c->align = (uint32_t)align;
	c->order = best;
	c->objperslab = (uint32_t)best_n;
	c->bitmap_words = (uint32_t)((best_n + 63) / 64);
	c->obj_start = (uint32_t)align_up(meta_bytes(best_n), align);
	c->colour_off = (uint32_t)colour_off_of(align);
	c->colour_num = (uint32_t)colour_num_of((uint64_t)SP_PAGE_SIZE << best,
						c->obj_start + best_n * stride, c->colour_off);
	c->owners_off = (uint32_t)(sizeof(struct sp_slab) + 8 * c->bitmap_words);
	c->recip = UINT64_MAX / stride + 1; /* exact for offsets inside a slab */
	c->colour_next = 0;
	c->min_free = 0;
	c->max_objs = 0;
	c->pool_id = 0;
	c->tmpl_off = 0;
	memset(c->list_head, 0, sizeof(c->list_head));
	memset(c->nr_list, 0, sizeof(c->nr_list));
	c->nr_slabs = 0;
	c->active_objs = c->total_objs = 0;
	c->nr_alloc = c->nr_free = c->nr_fail = c->nr_bad_free = 0;
	c->nr_poison_err = c->nr_redzone_err = c->nr_grow = c->nr_shrink = 0;
	c->nr_mag_refill = c->nr_mag_flush = 0;
	return 0;
}

/**
 * sp_cache_get() - the LIVE cache with this id.
 * @s: segment.  @id: index into the cache table.
 *
 * Does not sleep.
 * Return: the descriptor, or NULL for a bad id or a cache not LIVE.
 */
struct sp_cache *sp_cache_get(struct sp_seg *s, uint32_t id)
{
	struct sp_cache *c;

	if (id >= sp_nr_cache_slots(s))
		return NULL;
	c = &sp_caches(s)[id];
	if (__atomic_load_n(&c->state, __ATOMIC_ACQUIRE) != SP_DESC_LIVE ||
	    c->magic != (SP_CACHE_MAGIC ^ id) || c->id != id)
		return NULL;
	return c;
}

/* Take a slab off the list its header names, if any; cache locked.  The
 * header is shared: list is read once, and bounded before it indexes @c. */
static void slab_unlist(struct sp_seg *s, struct sp_cache *c, struct sp_slab *slab, uint32_t pfn)
{
	uint32_t l = __atomic_load_n(&slab->list, __ATOMIC_RELAXED);

	if (l >= SP_LIST_PARTIAL && l <= SP_LIST_EMPTY) {
		sp_plist_del(s, &c->list_head[l], pfn);
		c->nr_list[l]--;
	}
	slab->list = SP_LIST_NONE;
}

/* slab_relist()'s move.  Inline, list operations included: a lone object
 * in an otherwise empty slab moves it on every alloc and every free. */
static inline void slab_move(struct sp_seg *s, struct sp_cache *c, struct sp_slab *slab,
			     uint32_t pfn, uint32_t want)
{
	slab_unlist(s, c, slab, pfn);
	SP_CRASH_POINT("slab.list.move");
	sp_plist_add(s, &c->list_head[want], pfn);
	c->nr_list[want]++;
	slab->list = want;
}

/* Move a slab to the list its inuse count calls for (any count gives a
 * list in range: inuse is only compared). */
static inline void slab_relist(struct sp_seg *s, struct sp_cache *c, struct sp_slab *slab,
			       uint32_t pfn)
{
	uint32_t want = slab->inuse == 0 ? SP_LIST_EMPTY
			: slab->inuse == c->objperslab ? SP_LIST_FULL
						       : SP_LIST_PARTIAL;

	if (slab->list != want)
		slab_move(s, c, slab, pfn, want);
}

/* The truth, not inuse: may this slab go back to the buddy allocator?
 * @g: a snapshot (sp_cache_snapshot()). */
static bool slab_empty(const struct sp_cache *g, const struct sp_slab *slab)
{
	for (uint32_t w = 0; w < g->bitmap_words; w++)
		if (slab->bitmap[w])
			return false;
	return true;
}

/* Unlink an empty slab, uncommit it and give its pages back; cache locked. */
static void slab_release_locked(struct sp_seg *s, struct sp_cache *c, uint32_t pfn)
{
	struct sp_slab *slab = sp_slab_at(s, c, pfn);

	sp_assert(sp_lock_held(&c->lock));
	slab_unlist(s, c, slab, pfn);
	slab->magic = 0; /* uncommitted: recovery would free it */
	c->nr_slabs--;
	c->total_objs -= c->objperslab;
	c->nr_shrink++;
	SP_CRASH_POINT("slab.shrink.unlinked");
	if (sp_buddy_lock(s) == 0) {
		sp_buddy_free_locked(s, pfn);
		sp_buddy_unlock(s);
	}
}

/* Add one slab, its objects poisoned or templated, to the empty list; cache
 * locked, @g its snapshot. */
static int grow_locked(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *g)
{
	struct sp_slab *slab;
	const uint8_t *tmpl = NULL;
	uint32_t pfn, i;
	int rc;

	sp_assert(sp_lock_held(&c->lock));
	if (g->tmpl_off) {
		tmpl = sp_ptr_checked(s, g->tmpl_off, g->obj_size, 8);
		if (!tmpl)
			return sp_err(-EFAULT, "cache %s: template offset is corrupted", c->name);
	}
	rc = sp_buddy_lock(s);
	if (rc)
		return rc;
	rc = sp_buddy_alloc_locked(s, g->order, SP_KIND_SLAB, g->id, 0, &pfn);
	sp_buddy_unlock(s);
	if (rc)
		return rc;
	SP_CRASH_POINT("slab.grow.pages");
	slab = sp_slab_at(s, g, pfn);
	memset(slab, 0, g->obj_start);
	slab->cache_id = g->id;
	/* colour_next is state, not geometry: any value gives a colour in range */
	slab->colour = (c->colour_next % g->colour_num) * g->colour_off;
	c->colour_next = (c->colour_next + 1) % g->colour_num;
	for (i = 0; i < g->objperslab; i++) {
		uint8_t *obj = sp_slab_obj(g, slab, i);

		if (tmpl)
			memcpy(obj, tmpl, g->obj_size);
		else if (g->flags & SP_CACHE_POISON)
			memset(obj, SP_POISON_FREE, g->obj_size);
		if (g->flags & SP_CACHE_REDZONE)
			memset(obj + g->obj_size, SP_REDZONE_BYTE, SP_REDZONE_SIZE);
	}
	slab->list = SP_LIST_NONE;
	__atomic_store_n(&slab->magic, slab_magic(g, pfn), __ATOMIC_RELEASE);
	c->nr_slabs++;
	c->total_objs += g->objperslab;
	c->nr_grow++;
	slab_relist(s, c, slab, pfn);
	return 0;
}

/**
 * sp_cache_recover_locked() - rebuild a cache from its slabs' bitmaps.
 * @s: segment.  @c: cache whose lock is held (its previous owner died).
 *
 * Walks every block (under the buddy lock), adopts the slabs this cache
 * owns, frees the ones whose header was never committed, clears owner tags
 * of free objects and recomputes inuse, lists and counters.  A cache whose
 * geometry is corrupted is left as it is: its slabs cannot be told from
 * uncommitted ones, and freeing them would free live objects; every path
 * that walks it refuses it instead (and the checker reports it).
 * May sleep (buddy lock).
 * Return: 0; -EFAULT for a corrupted geometry; or the buddy lock's error.
 */
int sp_cache_recover_locked(struct sp_seg *s, struct sp_cache *c)
{
	uint32_t pfn, n = s->geo.nr_pages;
	struct sp_cache g;
	int rc;

	sp_assert(sp_lock_held(&c->lock));
	if (sp_cache_snapshot(s, c, &g))
		return bad_geometry(c);
	rc = sp_buddy_lock(s);
	if (rc)
		return rc;
	memset(c->list_head, 0, sizeof(c->list_head));
	memset(c->nr_list, 0, sizeof(c->nr_list));
	c->nr_slabs = 0;
	c->active_objs = c->total_objs = 0;
	for (pfn = 0; pfn < n;) {
		uint32_t info = s->pages[pfn].info, o = SP_PG_ORDER(info);
		struct sp_slab *slab;
		uint16_t *owner;
		uint32_t i, cnt = 0;

		if (o > s->geo.max_order)
			o = 0;
		if (SP_PG_STATE(info) != SP_PG_ALLOC || SP_PG_KIND(info) != SP_KIND_SLAB ||
		    s->pages[pfn].owner != g.id) {
			pfn += 1u << o;
			continue;
		}
		if (!sp_slab_valid(s, &g, pfn)) {
			/* never committed: no object of it was ever handed out */
			if (o == g.order)
				sp_buddy_free_locked(s, pfn);
			/* if it merged upwards, the walk steps over tails one by one */
			pfn += 1u << o;
			continue;
		}
		slab = sp_slab_at(s, &g, pfn);
		owner = sp_slab_owners(&g, slab);
		if (g.objperslab % 64)
			slab->bitmap[g.bitmap_words - 1] &= (1ull << (g.objperslab % 64)) - 1;
		for (i = 0; i < g.objperslab; i++) {
			if (slab->bitmap[i / 64] >> (i % 64) & 1)
				cnt++;
			else
				owner[i] = SP_OWNER_NONE;
		}
		slab->inuse = cnt;
		slab->hint = 0;
		slab->list = SP_LIST_NONE;
		c->nr_slabs++;
		c->total_objs += g.objperslab;
		c->active_objs += cnt;
		slab_relist(s, c, slab, pfn);
		pfn += 1u << o;
	}
	sp_buddy_unlock(s);
	return 0;
}

/**
 * sp_cache_lock_recover() - sp_cache_lock() when the lock's owner died.
 * @s: segment.  @c: cache, just locked with SP_LOCK_RECOVER.
 *
 * Rebuilds the cache, then declares the lock consistent.  A cache it cannot
 * rebuild (a corrupted geometry) is refused by every path that would walk
 * it: the lock itself stays usable.  May sleep (buddy lock).
 * Return: 0.
 */
int sp_cache_lock_recover(struct sp_seg *s, struct sp_cache *c)
{
	sp_cache_recover_locked(s, c);
	sp_lock_consistent(&c->lock);
	return 0;
}

/* Bits of bitmap word @w that stand for objects: the last word's high bits
 * are padding beyond objperslab and always clear, never a free object. */
static uint64_t obj_bits(const struct sp_cache *g, uint32_t w)
{
	uint32_t left = g->objperslab - w * 64;

	return left >= 64 ? ~0ull : (1ull << left) - 1;
}

/* The bitmap word to start @slab's search at: its hint, read once (shared)
 * and kept inside the bitmap. */
static inline __attribute__((always_inline)) uint32_t
slab_hint(const struct sp_cache *g, const struct sp_slab *slab)
{
	uint32_t w = __atomic_load_n(&slab->hint, __ATOMIC_RELAXED);

	return w < g->bitmap_words ? w : 0;
}

/* The first word from @w on (wrapping) with a free object bit; @w itself
 * when there is none, which the caller finds by its obj_bits(). */
static inline __attribute__((always_inline)) uint32_t
free_word_from(const struct sp_cache *g, const struct sp_slab *slab, uint32_t w)
{
	for (uint32_t i = 0; i < g->bitmap_words; i++, w = (w + 1 == g->bitmap_words ? 0 : w + 1))
		if (~slab->bitmap[w] & obj_bits(g, w))
			break;
	return w;
}

/* @size: from the snapshot, never re-read from @c */
static void check_poison(struct sp_cache *c, uint32_t size, const uint8_t *obj)
{
	for (uint32_t i = 0; i < size; i++) {
		if (obj[i] != SP_POISON_FREE) {
			c->nr_poison_err++;
			return;
		}
	}
}

/* The slab to allocate from: partial, else empty, else a new one; 0 or < 0.
 * Cache locked (asserted by the entry points, not again per call here),
 * @g its snapshot; *@colour the slab's, checked (slab_valid_geo()). */
static int alloc_slab_locked(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *g,
			     uint32_t *pfn, uint32_t *colour)
{
	int rc;

	*pfn = c->list_head[SP_LIST_PARTIAL];
	if (!*pfn)
		*pfn = c->list_head[SP_LIST_EMPTY];
	if (!*pfn) {
		rc = grow_locked(s, c, g);
		if (rc)
			return rc;
		*pfn = c->list_head[SP_LIST_EMPTY];
	}
	(*pfn)--;
	if (sp_unlikely(!slab_valid_geo(s, g, *pfn, colour))) {
		sp_cache_recover_locked(s, c);
		return sp_err(-EFAULT, "cache %s: corrupted slab list rebuilt", c->name);
	}
	return 0;
}

/* sp_cache_alloc_bulk_locked() with the geometry of sp_cache_geo_locked(). */
static int alloc_bulk_geo_locked(struct sp_seg *s, struct sp_cache *c,
				 const struct sp_cache *mine, uint16_t owner, sp_off_t *v,
				 unsigned n)
{
	const struct sp_cache *g;
	struct sp_cache buf;
	unsigned got = 0;
	int rc = 0;

	if (sp_unlikely(c->state != SP_DESC_LIVE))
		return sp_err(-ENOENT, "cache %s was destroyed", c->name);
	if (sp_unlikely(sp_cache_geo_locked(s, c, mine, &buf, &g))) {
		c->nr_fail++;
		return bad_geometry(c);
	}
	sp_slot_note(s, owner, sp_cache_index(s, c)); /* before any tag names the slot here */
	while (got < n) {
		struct sp_slab *slab;
		uint16_t *owners;
		uint8_t *objs;
		uint32_t pfn, w, colour = 0; /* set by alloc_slab_locked() when it succeeds */

		if (c->max_objs && c->active_objs >= c->max_objs) {
			rc = sp_err(-ENOMEM, "cache %s reached its cap of %u objects", c->name,
				    c->max_objs);
			break;
		}
		rc = alloc_slab_locked(s, c, g, &pfn, &colour);
		if (rc)
			break;
		slab = sp_slab_at(s, g, pfn);
		owners = sp_slab_owners(g, slab);
		/* sp_slab_obj() with the colour checked once, above */
		objs = (uint8_t *)slab + g->obj_start + colour;
		w = slab_hint(g, slab);
		if (sp_unlikely(slab->inuse >= g->objperslab)) { /* a full slab on a free list */
			sp_cache_recover_locked(s, c);
			if (got)
				break;
			c->nr_fail++;
			return sp_err(-EFAULT, "cache %s: corrupted slab list rebuilt", c->name);
		}
		/* inuse is the slab's (shared) word: only a bound, the bitmap decides */
		while (got < n && slab->inuse < g->objperslab &&
		       (!c->max_objs || c->active_objs < c->max_objs)) {
			uint64_t word, bits;
			uint32_t bit, idx;

			w = free_word_from(g, slab, w);
			word = slab->bitmap[w];
			bits = ~word & obj_bits(g, w);
			bit = bits ? (uint32_t)__builtin_ctzll(bits) : 64;
			idx = w * 64 + bit;
			if (sp_unlikely(bit == 64 || idx >= g->objperslab)) {
				sp_cache_recover_locked(s, c);
				if (got)
					return (int)got;
				return sp_err(-EFAULT, "cache %s: slab counters disagreed with bitmap",
					      c->name);
			}
			sp_slot_held_add(s, owner, 1); /* before the tag (layout.h) */
			owners[idx] = owner;
			SP_CRASH_POINT("slab.alloc.owner");
			__atomic_store_n(&slab->bitmap[w], word | (1ull << bit), __ATOMIC_RELEASE);
			SP_CRASH_POINT("slab.alloc.bit");
			slab->inuse++;
			c->active_objs++;
			if ((g->flags & SP_CACHE_POISON) && !g->tmpl_off)
				check_poison(c, g->obj_size, objs + (uint64_t)idx * g->stride);
			v[got++] = (sp_off_t)(objs + (uint64_t)idx * g->stride - s->base);
		}
		slab->hint = w;
		slab_relist(s, c, slab, pfn);
	}
	if (!got) {
		c->nr_fail++;
		return rc;
	}
	/* kmalloc stock: refill below the low watermark (half the prefill) */
	if (c->min_free && c->total_objs - c->active_objs < c->min_free / 2)
		sp_cache_stock_locked(s, c);
	return (int)got;
}

/*
 * sp_cache_alloc_geo_locked()'s one object, without the bulk loop: the
 * first slab alloc_slab_locked() offers, the first free bit from its hint,
 * the tag, then the bit (the commit), the counters.  The checks are
 * alloc_bulk_geo_locked()'s, in its order: LIVE, the geometry, the cap, a
 * slab valid in that geometry (slab_valid_geo()), its inuse below
 * objperslab, a free bit below objperslab (obj_bits()); anything else -
 * a cap, a full slab on a free list, a bitmap with no free bit - goes to
 * the bulk path, which says why and recovers; alloc_slab_locked()'s errors
 * are returned as the bulk path returns them.  Cache locked (asserted by
 * the caller).  Return: 0 or a negative errno; the object in *@off.
 */
static inline __attribute__((always_inline)) int
alloc_one_geo_locked(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *mine,
		     uint16_t owner, sp_off_t *off)
{
	const struct sp_cache *g;
	struct sp_cache buf;
	struct sp_slab *slab;
	uint64_t word, bits;
	uint32_t pfn, w, bit, idx, colour = 0; /* set by alloc_slab_locked() when it succeeds */
	uint8_t *obj;
	int rc;

	if (sp_unlikely(c->state != SP_DESC_LIVE || c->max_objs ||
			sp_cache_geo_locked(s, c, mine, &buf, &g)))
		goto bulk;
	sp_slot_note(s, owner, sp_cache_index(s, c)); /* before any tag names the slot here */
	/* alloc_slab_locked()'s choice, inline while a list offers a valid slab */
	pfn = c->list_head[SP_LIST_PARTIAL];
	if (!pfn)
		pfn = c->list_head[SP_LIST_EMPTY];
	if (sp_unlikely(!pfn-- || !slab_valid_geo(s, g, pfn, &colour))) {
		rc = alloc_slab_locked(s, c, g, &pfn, &colour); /* grows, or rebuilds */
		if (rc) { /* no memory, or a corrupted list rebuilt: as the bulk path */
			c->nr_fail++;
			return rc;
		}
	}
	slab = sp_slab_at(s, g, pfn);
	if (sp_unlikely(slab->inuse >= g->objperslab))
		goto bulk;
	w = free_word_from(g, slab, slab_hint(g, slab));
	word = slab->bitmap[w];
	bits = ~word & obj_bits(g, w); /* obj_bits(): idx below objperslab */
	if (sp_unlikely(!bits))
		goto bulk;
	bit = (uint32_t)__builtin_ctzll(bits);
	idx = w * 64 + bit;
	sp_slot_held_add(s, owner, 1); /* before the tag (layout.h) */
	sp_slab_owners(g, slab)[idx] = owner;
	SP_CRASH_POINT("slab.alloc.owner");
	__atomic_store_n(&slab->bitmap[w], word | (1ull << bit), __ATOMIC_RELEASE);
	SP_CRASH_POINT("slab.alloc.bit");
	slab->inuse++;
	c->active_objs++;
	/* sp_slab_obj() with the colour checked once, by slab_valid_geo() */
	obj = (uint8_t *)slab + g->obj_start + colour + (uint64_t)idx * g->stride;
	if (sp_unlikely((g->flags & SP_CACHE_POISON) && !g->tmpl_off))
		check_poison(c, g->obj_size, obj);
	*off = (sp_off_t)(obj - s->base);
	slab->hint = w;
	slab_relist(s, c, slab, pfn);
	/* kmalloc stock: refill below the low watermark (half the prefill) */
	if (c->min_free && c->total_objs - c->active_objs < c->min_free / 2)
		sp_cache_stock_locked(s, c);
	return 0;
bulk:
	rc = alloc_bulk_geo_locked(s, c, mine, owner, off, 1);
	return rc < 0 ? rc : 0;
}

/**
 * sp_cache_alloc_bulk_locked() - allocate up to @n objects.
 * @s: segment.  @c: cache, locked.
 * @owner: tag recorded for each object (slot + 1, a magazine tag, RESERVE
 *         or INTERNAL).
 * @v: the objects' offsets.  @n: how many are wanted (>= 1).
 *
 * Takes objects slab by slab, so a magazine refill costs one list move per
 * slab rather than per object.  Does not count them in nr_alloc: callers
 * count what they hand out.  May sleep (growing takes the buddy lock and
 * may fallocate).
 * Return: how many (1..@n); or -ENOMEM when the segment is full or the
 * cache's cap is reached; -ENOENT when the cache was destroyed; -EFAULT
 * when a corrupted slab list had to be rebuilt or the geometry is corrupted.
 */
int sp_cache_alloc_bulk_locked(struct sp_seg *s, struct sp_cache *c, uint16_t owner, sp_off_t *v,
			       unsigned n)
{
	sp_assert(sp_lock_held(&c->lock));
	return alloc_bulk_geo_locked(s, c, NULL, owner, v, n);
}

/* sp_cache_alloc_geo_locked(), inline: also the body of sp_cache_alloc_geo(),
 * which took the lock itself. */
static inline __attribute__((always_inline)) int
alloc_geo_took_lock(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *mine,
		    uint16_t owner, sp_off_t *off)
{
	int rc;

	sp_assert(sp_lock_held(&c->lock));
	rc = alloc_one_geo_locked(s, c, mine, owner, off);
	if (rc < 0)
		return rc;
	c->nr_alloc++;
	return 0;
}

/**
 * sp_cache_alloc_geo_locked() - allocate one object with a kept snapshot.
 * @s: segment.  @c: cache, locked.  @mine: NULL or the caller's snapshot
 * of @c (sp_cache_geo_locked()).  @owner: @off: as sp_cache_alloc_locked().
 *
 * May sleep (growing takes the buddy lock and may fallocate).
 * Return: as sp_cache_alloc_locked().
 */
int sp_cache_alloc_geo_locked(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *mine,
			      uint16_t owner, sp_off_t *off)
{
	return alloc_geo_took_lock(s, c, mine, owner, off);
}

/**
 * sp_cache_alloc_locked() - allocate one object.
 * @s: segment.  @c: cache, locked.
 * @owner: tag recorded for the object (slot + 1, RESERVE or INTERNAL).
 * @off: the object's offset.
 *
 * May sleep (growing takes the buddy lock and may fallocate).
 * Return: 0; -ENOMEM when the segment is full or the cache's cap is
 * reached; -ENOENT when the cache was destroyed.
 */
int sp_cache_alloc_locked(struct sp_seg *s, struct sp_cache *c, uint16_t owner, sp_off_t *off)
{
	return sp_cache_alloc_geo_locked(s, c, NULL, owner, off);
}

/**
 * sp_cache_stock_locked() - grow until min_free objects are free.
 * @s: segment.  @c: cache, locked.
 *
 * May sleep (buddy lock, fallocate).
 * Return: 0, -ENOMEM when the segment cannot hold the stock, or -EFAULT
 * for a corrupted geometry.
 */
int sp_cache_stock_locked(struct sp_seg *s, struct sp_cache *c)
{
	struct sp_cache g;
	int rc = 0;

	sp_assert(sp_lock_held(&c->lock));
	if (sp_cache_snapshot(s, c, &g))
		return bad_geometry(c);
	while (!rc && c->total_objs - c->active_objs < c->min_free)
		rc = grow_locked(s, c, &g);
	return rc;
}

/**
 * sp_cache_alloc() - allocate one object, taking the cache lock.
 * @s: segment.  @c: cache.  @owner: owner tag.  @off: result.
 *
 * May sleep.
 * Return: as sp_cache_alloc_locked().
 */
int sp_cache_alloc(struct sp_seg *s, struct sp_cache *c, uint16_t owner, sp_off_t *off)
{
	return sp_cache_alloc_geo(s, c, NULL, owner, off);
}

/**
 * sp_cache_alloc_geo() - sp_cache_alloc() with the caller's kept snapshot.
 * @s: segment.  @c: cache.  @mine: NULL or the caller's snapshot of @c
 * (sp_cache_geo_locked()).  @owner: owner tag.  @off: result.
 *
 * May sleep.
 * Return: as sp_cache_alloc_locked().
 */
int sp_cache_alloc_geo(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *mine,
		       uint16_t owner, sp_off_t *off)
{
	int rc = sp_cache_lock(s, c);

	if (rc)
		return rc;
	rc = alloc_geo_took_lock(s, c, mine, owner, off);
	sp_cache_unlock(c);
	return rc;
}

/*
 * locate_in() by the page records: the head of the block holding @off
 * (sp_block_head(), through a tail's record), then the slab there.  Out of
 * line: it runs when the aligned head was not a slab of @c, to say why.
 */
static __attribute__((noinline)) int locate_walk(const struct sp_seg *s, const struct sp_cache *c,
						 sp_off_t off, struct sp_slab **slab, uint32_t *idx)
{
	uint32_t pfn, head, colour;
	uint64_t first, rel, q;

	if (!sp_off_pfn(s, off, &pfn) || sp_block_head(s, pfn, &head) ||
	    SP_PG_KIND(s->pages[head].info) != SP_KIND_SLAB)
		return sp_err(-EINVAL, "offset %#llx is not a slab object",
			      (unsigned long long)off);
	if (!slab_valid_geo(s, c, head, &colour)) /* checks the owner too */
		return sp_err(-EINVAL, "offset %#llx belongs to another cache than %s",
			      (unsigned long long)off, c->name);
	*slab = sp_slab_at(s, c, head);
	first = sp_pfn_off(s, head) + c->obj_start + colour; /* checked above, read once */
	rel = off - first;
	/* rel / stride by the reciprocal: exact for offsets inside a slab */
	q = off < first ? UINT64_MAX : (uint64_t)(((unsigned __int128)rel * c->recip) >> 64);
	if (q >= c->objperslab || q * c->stride != rel)
		return sp_err(-EINVAL, "offset %#llx points into the middle of a %s object",
			      (unsigned long long)off, c->name);
	*idx = (uint32_t)q;
	return 0;
}

/*
 * sp_cache_obj_locate() in a geometry already checked (@c: a checked
 * snapshot, or a descriptor just checked).  A slab is a buddy block of
 * 2^order pages, aligned to its size, so its head is the page of @off with
 * the low order bits cleared: no walk through a tail's record, as for the
 * magazines' sp_mag_geo_locate().  That head is then checked exactly as
 * the walk checks the head it finds (slab_valid_geo(): page record ALLOC,
 * this order, kind SLAB, owner; header magic, cache id, colour), and it
 * covers @off's page by its order; the index is exact or refused as there.
 * Only a tail's record is not read: the slab's own records say where it
 * is.  Anything refused takes the walk (locate_walk()), which says why.
 */
static inline __attribute__((always_inline)) int
locate_in(const struct sp_seg *s, const struct sp_cache *c, sp_off_t off, struct sp_slab **slab,
	  uint32_t *idx)
{
	uint64_t rel = off - s->geo.data.off, first, orel, q;
	uint32_t head, colour;

	if (sp_likely(rel < s->geo.data.size)) { /* also off below the data area: wraps */
		head = (uint32_t)(rel >> SP_PAGE_SHIFT) & ~((1u << c->order) - 1);
		if (sp_likely(slab_valid_geo(s, c, head, &colour))) {
			first = ((uint64_t)head << SP_PAGE_SHIFT) + c->obj_start + colour;
			orel = rel - first;
			/* orel / stride by the reciprocal: exact for offsets inside a slab */
			q = rel < first ? UINT64_MAX
					: (uint64_t)(((unsigned __int128)orel * c->recip) >> 64);
			if (sp_likely(q < c->objperslab && q * c->stride == orel)) {
				*slab = sp_slab_at(s, c, head);
				*idx = (uint32_t)q;
				return 0;
			}
		}
	}
	return locate_walk(s, c, off, slab, idx);
}

/**
 * sp_cache_obj_locate() - find the slab and index of an object offset.
 * @s: segment.  @c: cache: its snapshot (sp_cache_snapshot()) when others
 *      may write the descriptor meanwhile, and then the caller uses that
 *      same snapshot with @slab and @idx.
 * @off: offset claimed to be an object of @c.  @slab: its slab.  @idx: its index.
 *
 * Does not sleep.
 * Return: 0, or -EINVAL with a message saying whether @off is outside the
 * data area, in another cache's memory, or in the middle of an object;
 * -EFAULT when @c's geometry is corrupted.
 */
int sp_cache_obj_locate(const struct sp_seg *s, const struct sp_cache *c, sp_off_t off,
			struct sp_slab **slab, uint32_t *idx)
{
	if (sp_unlikely(!sp_cache_geometry_ok(s, c)))
		return bad_geometry(c);
	return locate_in(s, c, off, slab, idx);
}

/* sp_cache_geo_locate(), inlined into this file's free. */
static inline __attribute__((always_inline)) int
geo_locate(const struct sp_seg *s, const struct sp_cache *c, const struct sp_cache *mine,
	   struct sp_cache *buf, const struct sp_cache **g, sp_off_t off, struct sp_slab **slab,
	   uint32_t *idx)
{
	int rc = sp_cache_geo_locked(s, c, mine, buf, g);

	return rc ? rc : locate_in(s, *g, off, slab, idx);
}

/**
 * sp_cache_snap_locate() - take a checked snapshot of @c, then find object
 * @off in it, with one geometry check: sp_cache_geo_locate() with no kept
 * snapshot.
 * @s: segment.  @c: a cache descriptor (shared).  @g: its snapshot
 * (sp_cache_snapshot()), for the caller to use with @slab and @idx.
 * @off: @slab: @idx: as for sp_cache_obj_locate().
 *
 * Does not sleep.
 * Return: 0, -EINVAL or -EFAULT, as sp_cache_obj_locate().
 */
int sp_cache_snap_locate(const struct sp_seg *s, const struct sp_cache *c, struct sp_cache *g,
			 sp_off_t off, struct sp_slab **slab, uint32_t *idx)
{
	const struct sp_cache *used; /* @g: with no kept snapshot, always a fresh one */

	return geo_locate(s, c, NULL, g, &used, off, slab, idx);
}

/**
 * sp_cache_geo_locate() - sp_cache_snap_locate() with the caller's kept
 * snapshot: find object @off in the geometry sp_cache_geo_locked() picks.
 * @s: segment.  @c: cache, locked.  @mine: NULL or the caller's snapshot.
 * @buf: room for a fresh one.  @g: the geometry used, for the caller to use
 * with @slab and @idx.  @off: @slab: @idx: as for sp_cache_obj_locate().
 *
 * Does not sleep.
 * Return: 0, -EINVAL or -EFAULT, as sp_cache_obj_locate().
 */
int sp_cache_geo_locate(const struct sp_seg *s, const struct sp_cache *c,
			const struct sp_cache *mine, struct sp_cache *buf, const struct sp_cache **g,
			sp_off_t off, struct sp_slab **slab, uint32_t *idx)
{
	return geo_locate(s, c, mine, buf, g, off, slab, idx);
}


/* sp_cache_free_obj_locked() for callers that asserted the cache lock
 * themselves (once per entry point). */
static inline __attribute__((always_inline)) void
free_obj_locked(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *g,
		struct sp_slab *slab, uint32_t idx)
{
	uint64_t mask = 1ull << (idx % 64), word = slab->bitmap[idx / 64];
	uint16_t was = sp_slab_owners(g, slab)[idx];
	uint8_t *obj = NULL;
	uint32_t pfn;

	sp_assert(word & mask);
	if (g->flags & (SP_CACHE_REDZONE | SP_CACHE_POISON)) /* only then: a read of the header */
		obj = sp_slab_obj(g, slab, idx);
	if (g->flags & SP_CACHE_REDZONE) {
		for (uint32_t i = 0; i < SP_REDZONE_SIZE; i++) {
			if (obj[g->obj_size + i] != SP_REDZONE_BYTE) {
				c->nr_redzone_err++;
				memset(obj + g->obj_size, SP_REDZONE_BYTE, SP_REDZONE_SIZE);
				break;
			}
		}
	}
	if ((g->flags & SP_CACHE_POISON) && !g->tmpl_off)
		memset(obj, SP_POISON_FREE, g->obj_size);
	__atomic_store_n(&slab->bitmap[idx / 64], word & ~mask, __ATOMIC_RELEASE);
	SP_CRASH_POINT("slab.free.bit");
	sp_slab_owners(g, slab)[idx] = SP_OWNER_NONE;
	if (sp_owner_is_user(was)) /* its holder's count, after the untag (layout.h) */
		sp_slot_held_add(s, was, -1);
	slab->inuse--; /* a counter only: slab_empty() decides, from the bitmap */
	c->active_objs--;
	pfn = (uint32_t)((sp_off_t)((uint8_t *)slab - s->data) >> SP_PAGE_SHIFT);
	if (slab->inuse == 0 || slab->inuse == g->objperslab - 1)
		slab_relist(s, c, slab, pfn);
	/* keep one empty slab (and the kmalloc stock); give the rest back */
	if (slab->inuse == 0 && c->nr_list[SP_LIST_EMPTY] > 1 &&
	    c->total_objs - c->active_objs >= (uint64_t)c->min_free + g->objperslab) {
		if (slab_empty(g, slab))
			slab_release_locked(s, c, pfn);
		else /* inuse lied: never give back a slab whose bitmap is in use */
			sp_cache_recover_locked(s, c);
	}
}

/**
 * sp_cache_free_obj_locked() - free object @idx of @slab, already located.
 * @s: segment.  @c: cache, locked.
 * @g: the snapshot of @c (sp_cache_snapshot()) @slab and @idx were found with.
 * @slab: a valid slab of @g.  @idx: an allocated object of it.
 *
 * Checks the red zone, poisons, clears the bit (the commit), then the tag;
 * gives a surplus empty slab back.  Does not count nr_free.
 * May sleep (buddy lock).
 */
void sp_cache_free_obj_locked(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *g,
			      struct sp_slab *slab, uint32_t idx)
{
	sp_assert(sp_lock_held(&c->lock));
	free_obj_locked(s, c, g, slab, idx);
}

/**
 * sp_cache_free_locked() - free one object.
 * @s: segment.  @c: cache, locked.  @off: the object.
 *
 * A pointer that is not an allocated object of @c (double free, foreign or
 * mid-object pointer, an object cached free in a magazine, or one in a
 * pool's reserve: a KMALLOC-backed pool's in a kmalloc class) is refused
 * and counted; nothing is modified.
 * May sleep (releasing a surplus empty slab takes the buddy lock).
 * Return: 0, -EINVAL, or -EFAULT when @c's geometry is corrupted.
 */
int sp_cache_free_locked(struct sp_seg *s, struct sp_cache *c, sp_off_t off)
{
	return sp_cache_free_geo_locked(s, c, NULL, off);
}

/**
 * sp_cache_free_geo_locked() - sp_cache_free_locked() with the caller's
 * kept snapshot.
 * @s: segment.  @c: cache, locked.  @mine: NULL or the caller's snapshot
 * of @c (sp_cache_geo_locked()).  @off: the object.
 *
 * May sleep (releasing a surplus empty slab takes the buddy lock).
 * Return: as sp_cache_free_locked().
 */
int sp_cache_free_geo_locked(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *mine,
			     sp_off_t off)
{
	const struct sp_cache *g;
	struct sp_cache buf;
	struct sp_slab *slab = NULL; /* slab and idx: set when geo_locate() succeeds */
	uint16_t tag;
	uint32_t idx = 0;
	int rc;

	sp_assert(sp_lock_held(&c->lock));
	rc = geo_locate(s, c, mine, &buf, &g, off, &slab, &idx);
	if (rc) {
		c->nr_bad_free++;
		return rc;
	}
	tag = sp_slab_owners(g, slab)[idx];
	if (!(slab->bitmap[idx / 64] >> (idx % 64) & 1) || sp_owner_is_mag(tag)) {
		c->nr_bad_free++;
		return sp_err(-EINVAL, "double free of %s object at %#llx", c->name,
			      (unsigned long long)off);
	}
	if (tag == SP_OWNER_RESERVE) {
		c->nr_bad_free++;
		return sp_err(-EINVAL, "%s object at %#llx is in a pool's reserve", c->name,
			      (unsigned long long)off);
	}
	free_obj_locked(s, c, g, slab, idx); /* the lock: asserted above */
	c->nr_free++;
	return 0;
}

/**
 * sp_cache_free() - free one object, taking the cache lock.
 * @s: segment.  @c: cache.  @off: the object.
 *
 * May sleep.
 * Return: 0 or -EINVAL.
 */
int sp_cache_free(struct sp_seg *s, struct sp_cache *c, sp_off_t off)
{
	return sp_cache_free_geo(s, c, NULL, off);
}

/**
 * sp_cache_free_geo() - sp_cache_free() with the caller's kept snapshot.
 * @s: segment.  @c: cache.  @mine: NULL or the caller's snapshot of @c
 * (sp_cache_geo_locked()).  @off: the object.
 *
 * May sleep.
 * Return: 0 or -EINVAL.
 */
int sp_cache_free_geo(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *mine,
		      sp_off_t off)
{
	int rc = sp_cache_lock(s, c);

	if (rc)
		return rc;
	rc = sp_cache_free_geo_locked(s, c, mine, off);
	sp_cache_unlock(c);
	return rc;
}

/**
 * sp_cache_shrink() - give every empty slab beyond the stock back to buddy.
 * @s: segment.  @c: cache.
 *
 * May sleep.
 * Return: the number of slabs released, or a negative errno (-EFAULT for a
 * corrupted geometry).
 */
int sp_cache_shrink(struct sp_seg *s, struct sp_cache *c)
{
	int rc = sp_cache_lock(s, c), n = 0, recovered = 0;
	struct sp_cache g;

	if (rc)
		return rc;
	if (sp_cache_snapshot(s, c, &g)) {
		sp_cache_unlock(c);
		return bad_geometry(c);
	}
	while (c->list_head[SP_LIST_EMPTY] &&
	       c->total_objs - c->active_objs >= (uint64_t)c->min_free + g.objperslab) {
		uint32_t pfn = c->list_head[SP_LIST_EMPTY] - 1;

		/* a corrupted list or count: rebuild once from the bitmaps */
		if (!sp_slab_valid(s, &g, pfn) || !slab_empty(&g, sp_slab_at(s, &g, pfn))) {
			if (recovered++)
				break;
			sp_cache_recover_locked(s, c);
			continue;
		}
		slab_release_locked(s, c, pfn);
		n++;
	}
	sp_cache_unlock(c);
	return n;
}

/* -EBUSY: @c has live objects; say how many are only cached free. */
static int busy(struct sp_seg *s, struct sp_cache *c)
{
	uint64_t cached = sp_mag_cached(s, c->id);

	if (cached && cached <= c->active_objs)
		return sp_err(-EBUSY, "cache %s still has %llu live objects and %llu cached free "
				      "in the magazines of live threads (each must flush them "
				      "first)",
			      c->name, (unsigned long long)(c->active_objs - cached),
			      (unsigned long long)cached);
	return sp_err(-EBUSY, "cache %s still has %llu live objects", c->name,
		      (unsigned long long)c->active_objs);
}

/**
 * sp_cache_teardown_locked() - release every slab of an empty cache.
 * @s: segment.  @c: cache, locked, with no live objects.
 *
 * May sleep.
 * Return: 0, -EBUSY when objects are still allocated, or -EFAULT when its
 * geometry or its lists are corrupted.
 */
int sp_cache_teardown_locked(struct sp_seg *s, struct sp_cache *c)
{
	bool recovered = false;
	struct sp_cache g;

	sp_assert(sp_lock_held(&c->lock));
	if (sp_cache_snapshot(s, c, &g))
		return bad_geometry(c);
	if (c->active_objs)
		return busy(s, c);
	for (unsigned l = SP_LIST_PARTIAL; l <= SP_LIST_EMPTY; l++) {
		while (c->list_head[l]) {
			uint32_t pfn = c->list_head[l] - 1;

			/* never trust active_objs alone: the bitmap must be empty */
			if (!sp_slab_valid(s, &g, pfn) || !slab_empty(&g, sp_slab_at(s, &g, pfn))) {
				if (recovered)
					return sp_err(-EFAULT, "cache %s: slab lists corrupted",
						      c->name);
				sp_cache_recover_locked(s, c);
				recovered = true;
				if (c->active_objs)
					return sp_err(-EBUSY, "cache %s still has live objects",
						      c->name);
				l = SP_LIST_PARTIAL;
				continue;
			}
			slab_release_locked(s, c, pfn);
		}
	}
	return 0;
}

/**
 * sp_cache_create() - create a named cache.
 * @s: segment.  @name: 1..63 of [A-Za-z0-9._-].
 * @obj_size: bytes per object.  @align: 0 or a power of two.
 * @flags: SP_CACHE_USER_FLAGS.
 * @tmpl: NULL, or @obj_size bytes copied into every object when its slab is
 *        created (the cross-process form of a constructor).
 * @id: the new cache's id.
 *
 * May sleep.
 * Return: 0; -EEXIST; -EINVAL (name, size, align); -ENFILE (table full);
 * -ENOMEM (no room for the template).
 */
int sp_cache_create(struct sp_seg *s, const char *name, uint64_t obj_size, uint64_t align,
		    uint32_t flags, const void *tmpl, uint32_t *id)
{
	uint32_t i, first = s->geo.nr_kmalloc, end = first + s->geo.max_caches, found;
	struct sp_cache *c = NULL;
	int rc;

	rc = sp_name_check(name);
	if (rc)
		return rc;
	if (flags & ~SP_CACHE_USER_FLAGS)
		return sp_err(-EINVAL, "unknown cache flags %#x", flags & ~SP_CACHE_USER_FLAGS);
	rc = sp_registry_lock(s);
	if (rc)
		return rc;
	if (sp_hash_lookup_locked(s, false, name, &found) == 0) {
		rc = sp_err(-EEXIST, "cache %s already exists", name);
		goto out;
	}
	for (i = first; i < end; i++) {
		if (sp_caches(s)[i].state == SP_DESC_FREE) {
			c = &sp_caches(s)[i];
			break;
		}
	}
	if (!c) {
		rc = sp_err(-ENFILE, "cache table full (%u caches)", s->geo.max_caches);
		goto out;
	}
	c->magic = SP_CACHE_MAGIC ^ i;
	c->state = SP_DESC_CREATING;
	rc = sp_cache_setup(s, c, name, obj_size, align, flags);
	if (!rc && tmpl) {
		rc = sp_kmalloc_owner(s, obj_size, SP_OWNER_INTERNAL, &c->tmpl_off);
		if (!rc)
			memcpy(sp_ptr(s, c->tmpl_off), tmpl, obj_size);
	}
	if (!rc)
		rc = sp_hash_insert_locked(s, false, name, i);
	if (rc) {
		if (c->tmpl_off) { /* forget it first: dying here leaks, never frees twice */
			sp_off_t old_tmpl = c->tmpl_off;

			c->tmpl_off = 0;
			sp_kfree(s, old_tmpl);
		}
		c->state = SP_DESC_FREE;
		c->magic = 0;
		goto out;
	}
	SP_CRASH_POINT("registry.insert");
	c->creator_uid = 0;
	c->mode = 0600;
	c->gen++;
	__atomic_store_n(&c->state, SP_DESC_LIVE, __ATOMIC_RELEASE);
	s->hdr->nr_live_caches++;
	*id = i;
out:
	sp_registry_unlock(s);
	return rc;
}

/**
 * sp_cache_lookup() - find a named cache.
 * @s: segment.  @name: its name.  @id: its id.
 *
 * May sleep.
 * Return: 0 or -ENOENT.
 */
int sp_cache_lookup(struct sp_seg *s, const char *name, uint32_t *id)
{
	return sp_registry_lookup(s, false, name, id);
}

/**
 * sp_cache_destroy() - destroy a named cache with no live objects.
 * @s: segment.  @id: the cache.
 *
 * May sleep.
 * Return: 0; -EBUSY while objects are live; -ENOENT; -EPERM for a kmalloc
 * class or a pool's cache.
 */
int sp_cache_destroy(struct sp_seg *s, uint32_t id)
{
	struct sp_cache *c;
	int rc;

	rc = sp_registry_lock(s);
	if (rc)
		return rc;
	c = sp_cache_get(s, id);
	if (!c) {
		rc = sp_err(-ENOENT, "no cache with id %u", id);
		goto out;
	}
	if (c->flags & (SP_CACHE_KMALLOC | SP_CACHE_ANON)) {
		rc = sp_err(-EPERM, "cache %s is internal and cannot be destroyed", c->name);
		goto out;
	}
	rc = sp_cache_lock(s, c);
	if (rc)
		goto out;
	if (c->active_objs) {
		rc = busy(s, c);
		sp_cache_unlock(c);
		goto out;
	}
	c->state = SP_DESC_DESTROYING;
	rc = sp_cache_teardown_locked(s, c);
	sp_cache_unlock(c);
	if (rc) {
		c->state = SP_DESC_LIVE;
		goto out;
	}
	if (c->tmpl_off) { /* forget it first: dying here leaks, never frees twice */
		sp_off_t old_tmpl = c->tmpl_off;

		c->tmpl_off = 0;
		sp_kfree(s, old_tmpl);
	}
	sp_hash_remove_locked(s, false, c->name);
	SP_CRASH_POINT("registry.remove"); /* DESTROYING: recovery finishes it */
	c->magic = 0;
	__atomic_store_n(&c->state, SP_DESC_FREE, __ATOMIC_RELEASE);
	s->hdr->nr_live_caches--;
out:
	sp_registry_unlock(s);
	return rc;
}
