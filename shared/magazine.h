/* SPDX-License-Identifier: MIT */
/*
 * magazine.h - the per-thread magazine fast paths, inlined into the
 * client library's alloc and free calls.  The slow paths (refill, flush,
 * binding, sets, release of a dead slot) are in magazine.c, whose header
 * comment describes the design.
 *
 * These functions run with no lock and touch only the calling thread's
 * magazine and the owner tag of one object, with plain stores: a pop
 * raises the magazine's held count, retags MAG -> user, then lowers nr; a
 * push retags user -> MAG, raises nr, then lowers held (raising it first
 * for another slot's object).  The held counts keep the slot's held bound
 * (layout.h) >= what a walk of its caches could find, at every
 * instruction: each increment is stored before the tag it announces and
 * each decrement after the nr commit, with a compiler barrier
 * (SP_CRASH_POINT()) between.  A kill -9 between two of these stores
 * leaves an object whose tag tells the daemon what to do with it (see
 * magazine.c), so nothing is lost or handed out twice, and the held bound
 * at worst too high.  Two threads freeing the same object at the same
 * moment is a double free that a plain store cannot catch (an atomic
 * compare-and-swap would, at 6 ns, as much as the whole pair); sequential
 * double frees are caught: the second sees a magazine tag.
 */
#ifndef SHMPOOL_MAGAZINE_H
#define SHMPOOL_MAGAZINE_H

#include <stddef.h>
#include <string.h>

#include "core.h"

/*
 * struct sp_mag_geo - what the fast paths need to know of one cache,
 * copied out of its descriptor once (sp_mag_geo_init()) and checked then:
 * the client library keeps one per handle and per kmalloc class in its
 * own memory, so a pop or push reads no shared descriptor and follows no
 * pointer chain, and a descriptor scribbled on later cannot steer it.
 * Immutable while the cache keeps the generation @gen.
 */
struct sp_mag_geo {
	uint8_t *base;		/* the segment's mapping */
	uint8_t *data;		/* its data area */
	const struct sp_page *pages;
	uint64_t data_off;	/* data - base */
	uint64_t data_size;
	uint64_t slab_mask;	/* ~(slab bytes - 1) */
	uint64_t page_key;	/* a slab head's sp_page info | owner << 32 */
	uint64_t recip;		/* the cache's: index = offset * recip >> 64 */
	uint32_t obj_start;
	uint32_t stride;
	uint32_t objperslab;
	uint32_t owners_off;
	uint32_t magic;		/* SP_SLAB_MAGIC ^ id; each slab ^ pfn << 8 */
	uint32_t bound_id;	/* sp_mag.cache_id of a magazine bound to it */
	uint32_t gen;
	uint32_t mag_index;	/* sp_mag_index(id) */
	uint32_t mag_cap;	/* sp_mag_cap_of(stride) */
};

bool sp_mag_geo_init(const struct sp_seg *s, const struct sp_cache *c, struct sp_mag_geo *g);
void sp_mag_geo_of(const struct sp_seg *s, const struct sp_cache *d, struct sp_mag_geo *g);

/*
 * sp_mag_geo_locate() - slab and index of object @off.
 * @g: the cache's geometry.  @off: claimed object of it.  @slab: @idx:
 * where it is.
 *
 * Checks what a free must check: inside the data area, in a committed slab
 * of the cache (slabs are buddy blocks, so aligned to their size: no page
 * walk), at the start of an object.  Does not sleep.
 * Return: false when @off is not an object of the cache.
 */
sp_fast_inline bool sp_mag_geo_locate(const struct sp_mag_geo *g, sp_off_t off,
				     struct sp_slab **slab, uint32_t *idx)
{
	uint64_t rel = off - g->data_off, slab_rel, orel, i, key;
	uint32_t pfn;
	struct sp_slab *sl;

	if (sp_unlikely(rel >= g->data_size))
		return false;
	slab_rel = rel & g->slab_mask;
	pfn = (uint32_t)(slab_rel >> SP_PAGE_SHIFT);
	memcpy(&key, &g->pages[pfn], sizeof(key)); /* info and owner at once */
	sl = (struct sp_slab *)(g->data + slab_rel);
	if (sp_unlikely(key != g->page_key || sl->magic != (g->magic ^ (pfn << 8))))
		return false;
	orel = rel - slab_rel - g->obj_start - sl->colour;
	i = (uint64_t)(((unsigned __int128)orel * g->recip) >> 64);
	if (sp_unlikely(i >= g->objperslab || i * g->stride != orel))
		return false;
	*slab = sl;
	*idx = (uint32_t)i;
	return true;
}

/* The owner tag of object @idx of @slab. */
sp_fast_inline uint16_t *sp_mag_geo_tag(const struct sp_mag_geo *g, struct sp_slab *slab,
				       uint32_t idx)
{
	return (uint16_t *)((uint8_t *)slab + g->owners_off) + idx;
}

_Static_assert(offsetof(struct sp_mag, cache_gen) == offsetof(struct sp_mag, cache_id) + 4 &&
		       offsetof(struct sp_mag_geo, gen) == offsetof(struct sp_mag_geo, bound_id) + 4,
	       "id and generation side by side: one compare");

/* Is @m bound to the cache @g describes, in @g's generation? */
sp_fast_inline bool sp_mag_geo_bound(const struct sp_mag *m, const struct sp_mag_geo *g)
{
	uint64_t bound, want;

	/* id and gen at once, from the structs (not a member: 8 bytes span two) */
	memcpy(&bound, (const uint8_t *)m + offsetof(struct sp_mag, cache_id), sizeof(bound));
	memcpy(&want, (const uint8_t *)g + offsetof(struct sp_mag_geo, bound_id), sizeof(want));
	return bound == want;
}

enum sp_mag_take_result {
	SP_MAG_TAKEN = 0,
	SP_MAG_EMPTY = 1,	/* refill, then take again */
	SP_MAG_BAD = 2,		/* the top entry is not this slot's: drop it */
};

/*
 * sp_mag_take() - take the top object of @m for the calling slot.
 * @s: segment with a slot.  @g: the cache @m is bound to.  @m: this
 * thread's magazine.  @off: the object.
 *
 * The entry was checked fully when it was pushed or refilled, and while it
 * sits here its tag says "cached by this slot", which keeps every other
 * process's hands off it (a free, a shrink, a reclaim).  Only a scribbled
 * magazine could be wrong, and then the place it points at (inside the
 * data area, the start of an object below objperslab) does not carry this
 * slot's magazine tag: SP_MAG_BAD, never handed out.  Does not sleep.
 * Return: an enum sp_mag_take_result.
 */
sp_fast_inline enum sp_mag_take_result sp_mag_take(struct sp_seg *s, const struct sp_mag_geo *g,
						  struct sp_mag *m, sp_off_t *off)
{
	uint32_t n = m->nr;
	uint16_t owner = s->owner; /* a register across the barriers */
	sp_off_t o;
	uint64_t rel, slab_rel, orel, i;
	struct sp_slab *sl;
	uint16_t *tag;

	if (sp_unlikely(n - 1 >= SP_MAG_OBJS))
		return n ? SP_MAG_BAD : SP_MAG_EMPTY;
	o = m->objs[n - 1];
	rel = o - g->data_off;
	if (sp_unlikely(rel >= g->data_size))
		return SP_MAG_BAD;
	slab_rel = rel & g->slab_mask;
	sl = (struct sp_slab *)(g->data + slab_rel);
	orel = rel - slab_rel - g->obj_start - sl->colour;
	i = (uint64_t)(((unsigned __int128)orel * g->recip) >> 64);
	tag = sp_mag_geo_tag(g, sl, (uint32_t)i); /* read only once i is checked */
	if (sp_unlikely(i >= g->objperslab || i * g->stride != orel ||
			*tag != SP_OWNER_MAG(owner)))
		return SP_MAG_BAD;
	m->held++; /* before the tag: a held object counts (layout.h) */
	SP_CRASH_POINT("mag.pop.held");
	*tag = owner;
	SP_CRASH_POINT("mag.pop");
	m->nr = n - 1;
	m->nr_alloc++;
	*off = o;
	return SP_MAG_TAKEN;
}

enum sp_mag_push_result {
	SP_MAG_PUSHED = 0,
	SP_MAG_FULL = 1,	/* flush, then push again */
	SP_MAG_REFUSED = 2,	/* not a held object of @c: the locked path says why */
};

/*
 * sp_mag_put() - put a held object into @m.
 * @s: segment with a slot.  @g: the cache @m is bound to.  @m: this
 * thread's magazine.  @off: the object.
 *
 * Does not sleep.
 * Return: an enum sp_mag_push_result.
 */
sp_fast_inline enum sp_mag_push_result sp_mag_put(struct sp_seg *s, const struct sp_mag_geo *g,
						 struct sp_mag *m, sp_off_t off)
{
	uint32_t n = m->nr, idx;
	struct sp_slab *slab;
	uint16_t *tag, t;

	if (sp_unlikely(!sp_mag_geo_locate(g, off, &slab, &idx)))
		return SP_MAG_REFUSED;
	tag = sp_mag_geo_tag(g, slab, idx);
	t = *tag;
	if (sp_unlikely(!(slab->bitmap[idx / 64] >> (idx % 64) & 1)))
		return SP_MAG_REFUSED;
	if (sp_unlikely(t != s->owner)) { /* ours is a user tag: no need to test that */
		/* read again: keeping t would cost the common case a register */
		if (!sp_owner_is_user(__atomic_load_n(tag, __ATOMIC_RELAXED)))
			return SP_MAG_REFUSED;
		if (n >= g->mag_cap)
			return SP_MAG_FULL;
		/* another slot's: not in our bound yet, and ours once retagged */
		m->held++; /* before the tag: counted while unlisted */
		__asm__ __volatile__("" ::: "memory"); /* a death here over-counts */
	} else if (sp_unlikely(n >= g->mag_cap)) {
		return SP_MAG_FULL;
	}
	*tag = SP_OWNER_MAG(s->owner);
	SP_CRASH_POINT("mag.push");
	m->objs[n] = off;
	m->nr = n + 1;
	SP_CRASH_POINT("mag.push.held"); /* listed: it no longer counts */
	m->held--; /* after the commit (own object: -1 net; another's: 0 net) */
	m->nr_free++;
	return SP_MAG_PUSHED;
}

/*
 * The same operations for a cache descriptor (the core's own callers and
 * the tests): they copy the geometry first.  See magazine.c.
 */
bool sp_mag_locate(const struct sp_seg *s, const struct sp_cache *c, sp_off_t off,
		   struct sp_slab **slab, uint32_t *idx);
uint16_t *sp_mag_tag(const struct sp_seg *s, const struct sp_cache *c, sp_off_t off,
		     bool *allocated);
bool sp_mag_pop(struct sp_seg *s, const struct sp_cache *c, struct sp_mag *m, sp_off_t *off);
enum sp_mag_push_result sp_mag_push(struct sp_seg *s, const struct sp_cache *c, struct sp_mag *m,
				    sp_off_t off);

/* Objects a magazine of @c holds at most; refills fill to half. */
static inline uint32_t sp_mag_cap(const struct sp_cache *c)
{
	return sp_mag_cap_of(c->stride);
}

/* Is @m bound to the LIVE cache @c as it is now? */
sp_fast_inline bool sp_mag_bound(const struct sp_mag *m, const struct sp_cache *c)
{
	return m->cache_id == c->id + 1 && m->cache_gen == c->gen;
}

#endif /* SHMPOOL_MAGAZINE_H */
