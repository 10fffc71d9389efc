/* SPDX-License-Identifier: MIT */
/*
 * magazine.h - the per-thread magazine fast paths, inlined into the
 * client library's alloc and free calls.  The slow paths (refill, flush,
 * binding, sets, release of a dead slot) are in magazine.c, whose header
 * comment describes the design.
 *
 * These functions run with no lock and touch only the calling thread's
 * magazine and the owner tag of one object, with plain stores: a pop
 * retags MAG -> user then lowers nr; a push retags user -> MAG then raises
 * nr.  A kill -9 between the two stores leaves an object whose tag tells
 * the daemon what to do with it (see magazine.c), so nothing is lost or
 * handed out twice.  Two threads freeing the same object at the same
 * moment is a double free that a plain store cannot catch (an atomic
 * compare-and-swap would, at 6 ns, as much as the whole pair); sequential
 * double frees are caught: the second sees a magazine tag.
 */
#ifndef SHMPOOL_MAGAZINE_H
#define SHMPOOL_MAGAZINE_H

#include "core.h"

/*
 * sp_mag_locate() - slab and index of object @off of cache @c.
 * @s: segment.  @c: a LIVE cache.  @off: claimed object of @c.
 * @slab: @idx: where it is.
 *
 * Checks what a free must check: inside the data area, in a committed slab
 * of @c (slabs are buddy blocks, so aligned to their size: no page walk),
 * at the start of an object.  Does not sleep.
 * Return: false when @off is not an object of @c.
 */
sp_fast_inline bool sp_mag_locate(const struct sp_seg *s, const struct sp_cache *c, sp_off_t off,
				 struct sp_slab **slab, uint32_t *idx)
{
	uint64_t rel = off - (uint64_t)(s->data - s->base), slab_rel, orel, i;
	uint32_t order = c->order, pfn;
	const struct sp_page *pg;
	struct sp_slab *sl;

	if (sp_unlikely(rel >= s->geo.data.size || order > SP_MAX_ORDER_LIMIT))
		return false;
	slab_rel = rel & ~(((uint64_t)SP_PAGE_SIZE << order) - 1);
	pfn = (uint32_t)(slab_rel >> SP_PAGE_SHIFT);
	pg = &s->pages[pfn];
	if (sp_unlikely(pg->info != SP_PG_INFO(SP_PG_ALLOC, order, SP_KIND_SLAB) ||
			pg->owner != c->id))
		return false;
	sl = (struct sp_slab *)(s->data + slab_rel);
	if (sp_unlikely(sl->magic != (SP_SLAB_MAGIC ^ c->id ^ (pfn << 8))))
		return false;
	orel = rel - slab_rel - c->obj_start - sl->colour;
	i = (uint64_t)(((unsigned __int128)orel * c->recip) >> 64);
	if (sp_unlikely(i >= c->objperslab || i * c->stride != orel))
		return false;
	*slab = sl;
	*idx = (uint32_t)i;
	return true;
}

/*
 * sp_mag_tag() - the owner tag of object @off of cache @c, or NULL.
 * @s: segment.  @c: a LIVE cache.  @off: claimed object of @c.
 * @allocated: whether the bitmap says the object is allocated.
 *
 * See sp_mag_locate().  Does not sleep.
 */
sp_fast_inline uint16_t *sp_mag_tag(const struct sp_seg *s, const struct sp_cache *c, sp_off_t off,
				   bool *allocated)
{
	struct sp_slab *slab;
	uint32_t idx;

	if (sp_unlikely(!sp_mag_locate(s, c, off, &slab, &idx)))
		return NULL;
	*allocated = slab->bitmap[idx / 64] >> (idx % 64) & 1;
	return (uint16_t *)((uint8_t *)slab + c->owners_off) + idx;
}

/*
 * sp_mag_pop() - take an object from @m for the calling slot.
 * @s: segment with a slot.  @c: the cache @m is bound to.  @m: this
 * thread's magazine.  @off: the object.
 *
 * An entry whose tag is not this slot's magazine tag (the segment was
 * scribbled on) is dropped, never handed out.  Does not sleep.
 * Return: true, or false when the magazine is empty (refill it).
 */
sp_fast_inline bool sp_mag_pop(struct sp_seg *s, const struct sp_cache *c, struct sp_mag *m,
			      sp_off_t *off)
{
	uint64_t mask = ~(((uint64_t)SP_PAGE_SIZE << (c->order & 31)) - 1);
	uint16_t mine = SP_OWNER_MAG(s->owner);
	uint32_t n = m->nr;

	if (sp_unlikely(n > SP_MAG_OBJS))
		n = m->nr = 0;
	while (n) {
		/*
		 * The entry was checked fully when it was pushed or refilled,
		 * and while it sits here its tag says "cached by this slot",
		 * which keeps every other process's hands off it (a free, a
		 * shrink, a reclaim).  Only a scribbled magazine could be
		 * wrong, and then the place it points at (inside the data
		 * area, the start of an object below objperslab) does not
		 * carry this slot's magazine tag: the entry is dropped.
		 */
		sp_off_t o = m->objs[n - 1];
		uint64_t rel = o - (uint64_t)(s->data - s->base), slab_rel = rel & mask, orel, i;
		const struct sp_slab *sl = (const struct sp_slab *)(s->data + slab_rel);
		uint16_t *tag;

		if (sp_likely(rel < s->geo.data.size)) {
			orel = rel - slab_rel - c->obj_start - sl->colour;
			i = (uint64_t)(((unsigned __int128)orel * c->recip) >> 64);
			tag = (uint16_t *)((uint8_t *)sl + c->owners_off) + i;
			if (sp_likely(i < c->objperslab && i * c->stride == orel &&
				      *tag == mine)) {
				*tag = s->owner;
				SP_CRASH_POINT("mag.pop");
				m->nr = n - 1;
				m->nr_alloc++;
				*off = o;
				return true;
			}
		}
		m->nr = --n;
	}
	return false;
}

enum sp_mag_push_result {
	SP_MAG_PUSHED = 0,
	SP_MAG_FULL = 1,	/* flush, then push again */
	SP_MAG_REFUSED = 2,	/* not a held object of @c: the locked path says why */
};

/*
 * sp_mag_push() - put a held object of @c into @m.
 * @s: segment with a slot.  @c: the cache @m is bound to.  @m: this
 * thread's magazine.  @off: the object.
 *
 * Does not sleep.
 * Return: an enum sp_mag_push_result.
 */
sp_fast_inline enum sp_mag_push_result sp_mag_push(struct sp_seg *s, const struct sp_cache *c,
						  struct sp_mag *m, sp_off_t off)
{
	uint32_t n = m->nr;
	bool allocated;
	uint16_t *tag = sp_mag_tag(s, c, off, &allocated);

	if (sp_unlikely(!tag || !allocated || !sp_owner_is_user(*tag)))
		return SP_MAG_REFUSED;
	if (sp_unlikely(n >= SP_MAG_OBJS))
		return SP_MAG_FULL;
	*tag = SP_OWNER_MAG(s->owner);
	SP_CRASH_POINT("mag.push");
	m->objs[n] = off;
	m->nr = n + 1;
	m->nr_free++;
	return SP_MAG_PUSHED;
}

/* Is @m bound to the LIVE cache @c as it is now? */
sp_fast_inline bool sp_mag_bound(const struct sp_mag *m, const struct sp_cache *c)
{
	return m->cache_id == c->id + 1 && m->cache_gen == c->gen;
}

#endif /* SHMPOOL_MAGAZINE_H */
