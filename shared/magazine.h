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
 * for another slot's object, whose holder's count it owes after the
 * retag: sp_mag_owe()).
 * The held counts keep the slot's held bound
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

/*
 * sp_mag_entry_tag() - the owner tag of the object a magazine entry @o
 * names, for a pop: inside the data area, at the start of an object below
 * objperslab of its slab (the pop's check: the entry was checked fully
 * when it went in, and its tag, which the caller compares, is what keeps
 * others' hands off it).  Does not sleep.
 * Return: the tag, or NULL when @o is no object's place.
 */
sp_fast_inline uint16_t *sp_mag_entry_tag(const struct sp_mag_geo *g, sp_off_t o)
{
	uint64_t rel = o - g->data_off, slab_rel, orel, i;
	struct sp_slab *sl;

	if (sp_unlikely(rel >= g->data_size))
		return NULL;
	slab_rel = rel & g->slab_mask;
	sl = (struct sp_slab *)(g->data + slab_rel);
	orel = rel - slab_rel - g->obj_start - sl->colour;
	i = (uint64_t)(((unsigned __int128)orel * g->recip) >> 64);
	if (sp_unlikely(i >= g->objperslab || i * g->stride != orel))
		return NULL;
	return sp_mag_geo_tag(g, sl, (uint32_t)i); /* read only once i is checked */
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
	uint16_t *tag;

	if (sp_unlikely(n - 1 >= SP_MAG_OBJS))
		return n ? SP_MAG_BAD : SP_MAG_EMPTY;
	o = m->objs[n - 1];
	tag = sp_mag_entry_tag(g, o);
	if (sp_unlikely(!tag || *tag != SP_OWNER_MAG(owner)))
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

void sp_mag_owe_slow(struct sp_seg *s, struct sp_mag *m, uint16_t holder);
void sp_mag_settle(struct sp_seg *s, struct sp_mag *m);

/*
 * sp_mag_owe() - record that @m took in an object of the slot whose user
 * tag is @holder (its tag already rewritten): one off that slot's held
 * bound, owed in the magazine and paid with one atomic add at the next
 * refill or flush, or when another holder comes (sp_mag_settle()).  A
 * plain store in the common case: an atomic add on the holder's line for
 * each object cost a producer/consumer pair a quarter of its rate.  An
 * owed count lost in a crash leaves the holder's bound high: its release
 * walks, as without the count-down.  Does not sleep.
 */
sp_fast_inline void sp_mag_owe(struct sp_seg *s, struct sp_mag *m, uint16_t holder)
{
	uint32_t o = m->owed;

	if (sp_likely(o >> 16 == holder && (o & 0xffffu) != 0xffffu))
		m->owed = o + 1;
	else
		sp_mag_owe_slow(s, m, holder);
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
		uint16_t was = __atomic_load_n(tag, __ATOMIC_RELAXED);

		if (!sp_owner_is_user(was))
			return SP_MAG_REFUSED;
		if (n >= g->mag_cap)
			return SP_MAG_FULL;
		/* another slot's: not in our bound yet, and ours once retagged */
		m->held++; /* before the tag: counted while unlisted */
		__asm__ __volatile__("" ::: "memory"); /* a death here over-counts */
		*tag = SP_OWNER_MAG(s->owner);
		sp_mag_owe(s, m, was); /* after the tag: its holder's no more */
		goto tagged;
	}
	if (sp_unlikely(n >= g->mag_cap))
		return SP_MAG_FULL;
	*tag = SP_OWNER_MAG(s->owner);
tagged:
	SP_CRASH_POINT("mag.push");
	m->objs[n] = off;
	m->nr = n + 1;
	SP_CRASH_POINT("mag.push.held"); /* listed: it no longer counts */
	m->held--; /* after the commit (own object: -1 net; another's: 0 net) */
	m->nr_free++;
	return SP_MAG_PUSHED;
}

/*
 * sp_mag_take_run() - sp_mag_take() of up to @n objects at once (the bulk
 * calls).
 * @s: @g: @m: as for sp_mag_take().  @v: receives the objects as pointers
 * (@g->base + offset).  @n: how many at most.
 *
 * The entries from the top, each checked as a single pop checks it and
 * retagged to the caller, then one nr commit for all.  The held count goes
 * up by @n before the first tag (each may be held after) and down by what
 * was not taken after the commit.  A death before the commit leaves the
 * retagged objects held and still listed, orphans of the dead slot never
 * handed out again, as a single pop's death between its stores does.
 * Stops at an entry that is not this slot's cached object (the single pop
 * then drops it).  Does not sleep.
 * Return: how many were taken, 0..@n.
 */
sp_fast_inline unsigned sp_mag_take_run(struct sp_seg *s, const struct sp_mag_geo *g,
					struct sp_mag *m, void **v, unsigned n)
{
	uint32_t nr = m->nr, k;
	uint16_t owner = s->owner, mag = SP_OWNER_MAG(owner);

	if (sp_unlikely(nr > SP_MAG_OBJS))
		return 0;
	if (n > nr)
		n = nr;
	if (!n)
		return 0;
	m->held += n; /* before the tags: each may be held after */
	SP_CRASH_POINT("mag.pop.held");
	for (k = 0; k < n; k++) {
		sp_off_t o = m->objs[nr - 1 - k];
		uint16_t *tag = sp_mag_entry_tag(g, o);

		if (sp_unlikely(!tag || *tag != mag))
			break;
		*tag = owner;
		v[k] = g->base + o;
	}
	SP_CRASH_POINT("mag.pop");
	m->nr = nr - k;
	m->nr_alloc += k;
	SP_CRASH_POINT("mag.run.held"); /* committed: the rest never were held */
	m->held -= n - k;
	return k;
}

/*
 * sp_mag_put_run() - sp_mag_put() of up to @n objects at once (the bulk
 * calls).
 * @s: @g: @m: as for sp_mag_put().  @v: the objects (pointers into @g's
 * mapping).  @n: how many at most.
 *
 * Each checked as a single push checks it, retagged cached and listed
 * above nr, then one nr commit for all.  The held count goes up by @n
 * before the first tag (any may be another slot's, counted while
 * unlisted) and, after the commit, down by @n and by one for each of the
 * caller's own (net: -1 for each own object, 0 for another slot's, as a
 * single push); another slot's count goes down after each retag of its
 * object, owed as in sp_mag_put().  A death before the commit leaves cached objects that no
 * entry lists, counted, found and freed by the slot's release.  Stops at
 * the first object a single push would refuse or at a full magazine (the
 * single call then says why, or flushes).  Does not sleep.
 * Return: how many were pushed, 0..@n.
 */
sp_fast_inline unsigned sp_mag_put_run(struct sp_seg *s, const struct sp_mag_geo *g,
				       struct sp_mag *m, void *const *v, unsigned n)
{
	uint32_t nr = m->nr, k, own = 0;
	uint16_t owner = s->owner, mag = SP_OWNER_MAG(owner);

	if (sp_unlikely(nr >= g->mag_cap))
		return 0;
	if (n > g->mag_cap - nr)
		n = g->mag_cap - nr;
	if (!n)
		return 0;
	m->held += n; /* before the tags: any may be another slot's */
	SP_CRASH_POINT("mag.run.held");
	for (k = 0; k < n; k++) {
		sp_off_t off = (uintptr_t)v[k] - (uintptr_t)g->base;
		struct sp_slab *slab;
		uint16_t *tag, t;
		uint32_t idx;

		if (sp_unlikely(!sp_mag_geo_locate(g, off, &slab, &idx)))
			break;
		tag = sp_mag_geo_tag(g, slab, idx);
		t = *tag;
		if (sp_unlikely(!(slab->bitmap[idx / 64] >> (idx % 64) & 1) ||
				(t != owner && !sp_owner_is_user(t))))
			break;
		own += t == owner;
		*tag = mag;
		if (sp_unlikely(t != owner)) /* after the tag: its holder's no more */
			sp_mag_owe(s, m, t);
		m->objs[nr + k] = off;
	}
	SP_CRASH_POINT("mag.push");
	m->nr = nr + k;
	SP_CRASH_POINT("mag.push.held"); /* listed: they no longer count */
	m->held -= (int64_t)n + own;
	m->nr_free += k;
	return k;
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
unsigned sp_mag_pop_run(struct sp_seg *s, const struct sp_cache *c, struct sp_mag *m, void **v,
			unsigned n);
unsigned sp_mag_push_run(struct sp_seg *s, const struct sp_cache *c, struct sp_mag *m,
			 void *const *v, unsigned n);
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
