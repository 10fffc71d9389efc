/* SPDX-License-Identifier: MIT */
/*
 * check.c - the whole-segment checker.
 *
 * Walks every structure and verifies the invariants written in layout.h,
 * returning a list of violations instead of asserting: the segment is
 * untrusted input, so every offset, index and count is bounds-checked before
 * it is used and every walk is bounded.  A scribbled segment yields
 * violations, never a crash or an endless loop.  Table sizes and region
 * offsets come from the geometry validated at attach (s->geo), never from
 * the writable header page, which is only compared with it.
 *
 * Consistency: by default the checker stops the world: it takes the
 * registry lock, the lock of every pool and cache in use (same-level locks
 * in ascending table order; nobody else ever holds two of one level) and
 * the buddy lock, recovering any whose owner died.  With SP_CHECK_NOLOCK (a
 * read-only mapping, or a quiescent segment) it reads without locks.
 *
 * The held bound (layout.h) is the one invariant the locks do not freeze:
 * magazine pops and pushes take no lock, so a live slot's threads move its
 * counters and tags while the world is stopped, and a count of its tags
 * taken during the walk may exceed counters read after a push committed.
 * So the bound is checked for slots that are not ALIVE (no thread of
 * theirs runs: their counters and magazines are still, and the locks
 * freeze their tags), and for ALIVE ones only with SP_CHECK_QUIESCENT,
 * the caller's word that no magazine fast path runs.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "magazine.h"

void sp_report_add(struct sp_report *r, const char *fmt, ...)
{
	va_list ap;

	if (r->nr < r->cap && r->v) {
		va_start(ap, fmt);
		vsnprintf(r->v[r->nr].what, sizeof(r->v[r->nr].what), fmt, ap);
		va_end(ap);
	}
	r->nr++;
}

void sp_report_free(struct sp_report *r)
{
	free(r->v);
	r->v = NULL;
	r->nr = r->cap = 0;
}

#define V(...) sp_report_add(r, __VA_ARGS__)

struct ctx {
	struct sp_seg *s;
	struct sp_report *r;
	uint32_t *slabs_per_cache; /* SLAB heads seen in page metadata, by cache id */
	uint64_t *reserve_pages;   /* RESERVE-tagged page elements, by pool id */
	uint32_t *magsets_per_slot; /* committed magazine sets, by slot */
	uint64_t *tagged_per_slot; /* allocated cache objects tagged with its user
				    * or magazine tag, by slot (the held bound) */
};

/* Is @tag a valid owner of memory of this kind? */
static bool tag_ok(struct ctx *x, uint16_t tag, bool reserve_ok, bool internal_ok)
{
	if (tag == SP_OWNER_RESERVE)
		return reserve_ok;
	if (tag == SP_OWNER_INTERNAL)
		return internal_ok;
	if (tag == SP_OWNER_NONE || tag - 1u >= x->s->geo.max_clients)
		return false;
	return sp_clients(x->s)[tag - 1].state != SP_CLIENT_FREE;
}

/*
 * Does the filter of the slot @tag names (a user or magazine tag of a slot
 * in use) cover cache @id (SP_NOTE_BLOCKS: blocks)?  A walk of that slot
 * skips what its filter leaves out (client.c), so a miss here is memory its
 * release would not find.  Other tags are checked by tag_ok().
 */
static bool filter_ok(struct ctx *x, uint16_t tag, uint32_t id)
{
	uint32_t slot = sp_owner_slot(tag);

	if (slot >= x->s->geo.max_clients || sp_clients(x->s)[slot].state == SP_CLIENT_FREE)
		return true;
	return sp_slot_may_hold(x->s, slot, id);
}

static void check_clients(struct ctx *x)
{
	struct sp_report *r = x->r;

	for (uint32_t i = 0; i < x->s->geo.max_clients; i++) {
		struct sp_client *cl = &sp_clients(x->s)[i];

		if (cl->state > SP_CLIENT_DEAD)
			V("client slot %u: impossible state %u", i, cl->state);
		else if (cl->state != SP_CLIENT_FREE && !cl->pid)
			V("client slot %u: in use without a pid", i);
	}
}

/* A magazine set's block: committed (or being created), of a slot in use. */
static void check_magset(struct ctx *x, uint32_t pfn, uint32_t order, uint16_t slot)
{
	struct sp_report *r = x->r;

	if (order != SP_MAGSET_ORDER || !tag_ok(x, slot, false, false)) {
		V("page %u: magazine set of order %u owned by invalid tag %u", pfn, order, slot);
		return;
	}
	if (sp_magset_valid(x->s, pfn))
		x->magsets_per_slot[slot - 1]++; /* on its list: check_maglists() */
	else if (!filter_ok(x, slot, SP_NOTE_BLOCKS))
		/* torn by a death under the registry lock, which the lock's
		 * recovery marks (SP_SLOT_LOOSE_SETS) for the slot's page walk */
		V("page %u: uncommitted magazine set of slot %u, not marked loose: its "
		  "release would not find it", pfn, slot - 1);
}

/* Each slot's list of magazine sets holds exactly its committed sets. */
static void check_maglists(struct ctx *x)
{
	struct sp_seg *s = x->s;
	struct sp_report *r = x->r;

	for (uint32_t i = 0; i < s->geo.max_clients; i++) {
		uint32_t p = sp_clients(s)[i].mag_head, prev = 0, len = 0;

		while (p && len <= s->geo.nr_pages) {
			if (!sp_magset_valid(s, p - 1) ||
			    ((struct sp_magset *)(s->base + sp_pfn_off(s, p - 1)))->slot != i) {
				V("client slot %u: magazine list links page %u, not one of its sets", i,
				  p - 1);
				break;
			}
			if (s->pages[p - 1].prev != prev) {
				V("client slot %u: magazine set %u has a wrong back link", i, p - 1);
				break;
			}
			prev = p;
			p = s->pages[p - 1].next;
			len++;
		}
		if (len != x->magsets_per_slot[i] && !p)
			V("client slot %u: %u magazine sets listed, %u in the page metadata", i, len,
			  x->magsets_per_slot[i]);
		if (sp_clients(s)[i].state == SP_CLIENT_FREE && x->magsets_per_slot[i])
			V("client slot %u: free, but %u magazine sets are still tagged with it", i,
			  x->magsets_per_slot[i]);
	}
}

static void check_buddy(struct ctx *x)
{
	struct sp_seg *s = x->s;
	struct sp_report *r = x->r;
	struct sp_buddy *z = &s->hdr->buddy;
	uint32_t n = s->geo.nr_pages, max = s->geo.max_order, pfn;
	uint64_t free_pages = 0, nr_free[SP_MAX_ORDER_LIMIT + 1] = { 0 };
	uint8_t *listed = calloc(n, 1);

	if (z->max_order != max || z->nr_pages != n)
		V("buddy: zone geometry (%u, %u) differs from the header (%u, %u)", z->max_order,
		  z->nr_pages, max, n);
	for (pfn = 0; pfn < n;) {
		uint32_t info = s->pages[pfn].info, st = SP_PG_STATE(info), o = SP_PG_ORDER(info);
		uint32_t kind = SP_PG_KIND(info), owner = s->pages[pfn].owner;
		uint16_t slot = s->pages[pfn].slot;

		if ((st != SP_PG_FREE && st != SP_PG_ALLOC) || o > max || (pfn & ((1u << o) - 1)) ||
		    (uint64_t)pfn + (1u << o) > n) {
			V("page %u: expected a block head, found info %#x", pfn, info);
			pfn++;
			continue;
		}
		for (uint32_t i = 1; i < (1u << o); i++) {
			if (s->pages[pfn + i].info != SP_PG_TAIL ||
			    (st == SP_PG_ALLOC && s->pages[pfn + i].owner != pfn)) {
				V("page %u: tail of block %u has info %#x owner %u", pfn + i, pfn,
				  s->pages[pfn + i].info, s->pages[pfn + i].owner);
				break;
			}
		}
		if (st == SP_PG_FREE) {
			uint32_t b = pfn ^ (1u << o);

			if (kind != SP_KIND_NONE)
				V("page %u: free block with kind %u", pfn, kind);
			nr_free[o]++;
			free_pages += 1u << o;
			if (o < max && (uint64_t)b + (1u << o) <= n &&
			    s->pages[b].info == SP_PG_INFO(SP_PG_FREE, o, SP_KIND_NONE))
				V("page %u: free order-%u block not merged with its free buddy %u",
				  pfn, o, b);
		} else if (kind == SP_KIND_SLAB) {
			if (owner >= sp_nr_cache_slots(s))
				V("page %u: slab of impossible cache %u", pfn, owner);
			else
				x->slabs_per_cache[owner]++;
		} else if (kind == SP_KIND_LARGE || kind == SP_KIND_RAW) {
			if (!tag_ok(x, slot, false, kind == SP_KIND_LARGE))
				V("page %u: %s block owned by invalid tag %u", pfn,
				  kind == SP_KIND_LARGE ? "large" : "raw", slot);
			else if (!filter_ok(x, slot, SP_NOTE_BLOCKS))
				V("page %u: %s block of slot %u, whose filter says it holds no blocks",
				  pfn, kind == SP_KIND_LARGE ? "large" : "raw", slot - 1);
		} else if (kind == SP_KIND_POOL) {
			struct sp_pool *p = owner < s->geo.max_pools ? &sp_pools(s)[owner] : NULL;

			if (!p || p->state == SP_DESC_FREE || p->backing != SP_BACK_PAGES ||
			    p->page_order != o)
				V("page %u: element of pool %u, which has no such elements", pfn,
				  owner);
			else if (!tag_ok(x, slot, true, false))
				V("page %u: element of pool %.63s owned by invalid tag %u", pfn, p->name,
				  slot);
			else if (slot == SP_OWNER_RESERVE)
				x->reserve_pages[owner]++;
			else if (!filter_ok(x, slot, SP_NOTE_BLOCKS))
				V("page %u: element of pool %.63s held by slot %u, whose filter says it "
				  "holds no blocks", pfn, p->name, slot - 1);
		} else if (kind == SP_KIND_MAG) {
			check_magset(x, pfn, o, slot);
		} else {
			V("page %u: allocated block of unknown kind %u", pfn, kind);
		}
		pfn += 1u << o;
	}
	for (uint32_t o = 0; o <= max; o++) {
		uint32_t p = z->free_head[o], prev = 0, len = 0;

		while (p && len <= n) {
			if (p - 1 >= n) {
				V("buddy list %u: link to impossible page %u", o, p - 1);
				break;
			}
			if (s->pages[p - 1].info != SP_PG_INFO(SP_PG_FREE, o, SP_KIND_NONE))
				V("buddy list %u: page %u is not a free order-%u head", o, p - 1, o);
			if (s->pages[p - 1].prev != prev)
				V("buddy list %u: page %u has a wrong back link", o, p - 1);
			if (listed && listed[p - 1]++) {
				V("buddy list %u: page %u listed twice (cycle?)", o, p - 1);
				break;
			}
			prev = p;
			p = s->pages[p - 1].next;
			len++;
		}
		if (len != nr_free[o] || z->nr_free[o] != nr_free[o])
			V("buddy order %u: %u free heads, %u listed, counter says %u", o,
			  (unsigned)nr_free[o], len, z->nr_free[o]);
	}
	if (z->free_pages != free_pages)
		V("buddy: free_pages counter %llu, actual %llu", (unsigned long long)z->free_pages,
		  (unsigned long long)free_pages);
	free(listed);
}

/* @c: the cache's snapshot (sp_cache_snapshot()): nothing here re-reads the
 * shared descriptor. */
static void check_slab(struct ctx *x, const struct sp_cache *c, uint32_t id, uint32_t pfn,
		       unsigned list, uint64_t *active)
{
	struct sp_seg *s = x->s;
	struct sp_report *r = x->r;
	struct sp_slab *slab = sp_slab_at(s, c, pfn);
	uint16_t *own = sp_slab_owners(c, slab);
	bool kmalloc = c->flags & SP_CACHE_KMALLOC;
	/* a pool's own cache, or a kmalloc class that KMALLOC-backed pools
	 * may share (check_class_reserves() counts its RESERVE tags) */
	bool reserve_ok = c->pool_id != 0 || kmalloc;
	uint32_t cnt = 0, want;
	bool filter_told = false; /* one report per slab */

	for (uint32_t i = 0; i < c->objperslab; i++) {
		bool used = slab->bitmap[i / 64] >> (i % 64) & 1;
		uint8_t *obj = sp_slab_obj(c, slab, i);

		if (used) {
			cnt++;
			if (sp_owner_slot(own[i]) < s->geo.max_clients)
				x->tagged_per_slot[sp_owner_slot(own[i])]++;
			if (sp_owner_is_mag(own[i])) { /* free, cached by a slot in use */
				if (!tag_ok(x, own[i] & 0x7fffu, false, false))
					V("cache %.63s: object %u of slab %u cached by invalid slot tag %u",
					  c->name, i, pfn, own[i] & 0x7fffu);
			} else if (!tag_ok(x, own[i], reserve_ok, kmalloc))
				V("cache %.63s: object %u of slab %u has invalid owner tag %u", c->name,
				  i, pfn, own[i]);
			if (!filter_told && !filter_ok(x, own[i], id)) {
				V("cache %.63s: object %u of slab %u tagged %#x by slot %u, whose filter "
				  "lacks the cache", c->name, i, pfn, own[i], (own[i] & 0x7fffu) - 1);
				filter_told = true;
			}
		} else {
			if (own[i] != SP_OWNER_NONE)
				V("cache %.63s: free object %u of slab %u still tagged %u", c->name, i,
				  pfn, own[i]);
			if ((c->flags & SP_CACHE_POISON) && !c->tmpl_off) {
				for (uint32_t b = 0; b < c->obj_size; b++) {
					if (obj[b] != SP_POISON_FREE) {
						V("cache %.63s: free object %u of slab %u written after free (byte %u)",
						  c->name, i, pfn, b);
						break;
					}
				}
			}
		}
		if (c->flags & SP_CACHE_REDZONE) {
			for (uint32_t b = 0; b < SP_REDZONE_SIZE; b++) {
				if (obj[c->obj_size + b] != SP_REDZONE_BYTE) {
					V("cache %.63s: red zone of object %u of slab %u overwritten",
					  c->name, i, pfn);
					break;
				}
			}
		}
	}
	for (uint32_t i = c->objperslab; i < c->bitmap_words * 64; i++)
		if (slab->bitmap[i / 64] >> (i % 64) & 1)
			V("cache %.63s: slab %u has bit %u set beyond its %u objects", c->name, pfn, i,
			  c->objperslab);
	if (slab->inuse != cnt)
		V("cache %.63s: slab %u inuse %u but bitmap holds %u", c->name, pfn, slab->inuse, cnt);
	want = cnt == 0 ? SP_LIST_EMPTY : cnt == c->objperslab ? SP_LIST_FULL : SP_LIST_PARTIAL;
	if (list != want || slab->list != list)
		V("cache %.63s: slab %u with %u of %u objects is on list %u (header says %u)", c->name,
		  pfn, cnt, c->objperslab, list, slab->list);
	*active += cnt;
}

static void check_cache(struct ctx *x, struct sp_cache *c, uint32_t id)
{
	struct sp_seg *s = x->s;
	struct sp_report *r = x->r;
	uint64_t active = 0;
	uint32_t slabs = 0;
	struct sp_cache g;

	if (c->magic != (SP_CACHE_MAGIC ^ id) || c->id != id) {
		V("cache %u: bad magic or id", id);
		return;
	}
	if (c->state > SP_DESC_DESTROYING) {
		V("cache %u: impossible state %u", id, c->state);
		return;
	}
	if (sp_cache_snapshot(s, c, &g)) {
		V("cache %.63s: impossible geometry", c->name);
		return;
	}
	if ((id < s->geo.nr_kmalloc) != !!(c->flags & SP_CACHE_KMALLOC))
		V("cache %.63s: kmalloc flag does not match its table position", c->name);
	for (unsigned l = SP_LIST_PARTIAL; l <= SP_LIST_EMPTY; l++) {
		uint32_t p = c->list_head[l], prev = 0, len = 0;

		while (p && len <= s->geo.nr_pages) {
			if (!sp_slab_valid(s, &g, p - 1)) {
				V("cache %.63s: list %u holds page %u, not a slab of this cache", c->name,
				  l, p - 1);
				break;
			}
			if (s->pages[p - 1].prev != prev)
				V("cache %.63s: slab %u has a wrong back link", c->name, p - 1);
			check_slab(x, &g, id, p - 1, l, &active);
			prev = p;
			p = s->pages[p - 1].next;
			len++;
		}
		if (len > s->geo.nr_pages)
			V("cache %.63s: list %u loops", c->name, l);
		if (len != c->nr_list[l])
			V("cache %.63s: list %u has %u slabs, counter says %u", c->name, l, len,
			  c->nr_list[l]);
		slabs += len;
	}
	if (slabs != c->nr_slabs || slabs != x->slabs_per_cache[id])
		V("cache %.63s: %u slabs on lists, nr_slabs %u, %u in page metadata", c->name, slabs,
		  c->nr_slabs, x->slabs_per_cache[id]);
	if (active != c->active_objs)
		V("cache %.63s: active_objs %llu but bitmaps hold %llu", c->name,
		  (unsigned long long)c->active_objs, (unsigned long long)active);
	if (c->total_objs != (uint64_t)c->nr_slabs * g.objperslab)
		V("cache %.63s: total_objs %llu != %u slabs x %u", c->name,
		  (unsigned long long)c->total_objs, c->nr_slabs, g.objperslab);
	if (c->max_objs && c->active_objs > c->max_objs)
		V("cache %.63s: %llu objects above its cap %u", c->name,
		  (unsigned long long)c->active_objs, c->max_objs);
	if (g.tmpl_off && !sp_ptr_checked(s, g.tmpl_off, g.obj_size, 8))
		V("cache %.63s: template offset outside the segment", c->name);
}

/* Is @off an allocated element of pool @p tagged RESERVE? */
static bool reserve_elem_ok(struct ctx *x, struct sp_pool *p, sp_off_t off)
{
	struct sp_seg *s = x->s;
	uint32_t pfn, idx;

	if (p->backing == SP_BACK_SLAB || p->backing == SP_BACK_KMALLOC) {
		/* KMALLOC: check_pool() made sure cache_id is a class */
		struct sp_cache *c = &sp_caches(s)[p->backing == SP_BACK_SLAB
							   ? sp_pool_cache_id(s, p->id)
							   : p->cache_id];
		struct sp_cache g;
		struct sp_slab *slab;

		if (sp_cache_snap_locate(s, c, &g, off, &slab, &idx))
			return false;
		return (slab->bitmap[idx / 64] >> (idx % 64) & 1) &&
		       sp_slab_owners(&g, slab)[idx] == SP_OWNER_RESERVE;
	}
	return sp_off_pfn(s, off, &pfn) && sp_pfn_off(s, pfn) == off &&
	       s->pages[pfn].info == SP_PG_INFO(SP_PG_ALLOC, p->page_order, SP_KIND_POOL) &&
	       s->pages[pfn].owner == p->id && s->pages[pfn].slot == SP_OWNER_RESERVE;
}

static uint64_t count_reserve_tags(struct ctx *x, struct sp_pool *p)
{
	struct sp_seg *s = x->s;
	struct sp_cache *c = &sp_caches(s)[sp_pool_cache_id(s, p->id)], g;
	uint64_t n = 0;

	if (p->backing != SP_BACK_SLAB)
		return x->reserve_pages[p->id];
	if (sp_cache_snapshot(s, c, &g))
		return 0;
	for (unsigned l = SP_LIST_PARTIAL; l <= SP_LIST_FULL; l++) {
		uint32_t pg = c->list_head[l], len = 0;

		while (pg && len++ <= s->geo.nr_pages && sp_slab_valid(s, &g, pg - 1)) {
			struct sp_slab *slab = sp_slab_at(s, &g, pg - 1);

			for (uint32_t i = 0; i < g.objperslab; i++)
				if (sp_slab_owners(&g, slab)[i] == SP_OWNER_RESERVE &&
				    (slab->bitmap[i / 64] >> (i % 64) & 1))
					n++;
			pg = s->pages[pg - 1].next;
		}
	}
	return n;
}

static int cmp_off(const void *a, const void *b)
{
	sp_off_t x = *(const sp_off_t *)a, y = *(const sp_off_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * A KMALLOC-backed pool draws from the class of its element size, and its
 * count of class objects (which may over-count after a crash, never
 * under-count, and never passes max_nr) covers its reserve.
 */
static bool kmalloc_pool_ok(struct ctx *x, struct sp_pool *p)
{
	struct sp_seg *s = x->s;
	struct sp_report *r = x->r;
	int cls = p->elem_size && p->elem_size <= SP_KMALLOC_MAX ? sp_kmalloc_class(p->elem_size)
								 : -1;

	if (cls < 0 || p->cache_id != (uint32_t)cls || p->cache_id >= s->geo.nr_kmalloc ||
	    sp_caches(s)[p->cache_id].state != SP_DESC_LIVE) {
		V("pool %.63s: kmalloc class %u does not serve its %llu-byte elements", p->name,
		  p->cache_id, (unsigned long long)p->elem_size);
		return false;
	}
	if (p->nr_objs < p->curr_nr || (p->max_nr && p->nr_objs > p->max_nr))
		V("pool %.63s: counts %llu objects of its class, but holds %u in reserve "
		  "(max_nr %u)", p->name, (unsigned long long)p->nr_objs, p->curr_nr, p->max_nr);
	return true;
}

static void check_pool(struct ctx *x, struct sp_pool *p, uint32_t id)
{
	struct sp_seg *s = x->s;
	struct sp_report *r = x->r;
	sp_off_t *el, *copy;
	uint64_t bytes;
	uint32_t found;
	char name[SP_NAME_MAX + 1];

	snprintf(name, sizeof(name), "%.*s", SP_NAME_MAX, p->name);

	if (p->magic != (SP_POOL_MAGIC ^ id) || p->id != id) {
		V("pool %u: bad magic or id", id);
		return;
	}
	if (p->state != SP_DESC_LIVE) {
		V("pool %.63s: left in state %u by a dead process", p->name, p->state);
		return;
	}
	if (sp_name_check(name) || sp_hash_find(s, true, name, &found) ||
	    found != id)
		V("pool %.63s: not found under its name in the registry", p->name);
	if (p->backing != SP_BACK_SLAB && p->backing != SP_BACK_PAGES &&
	    p->backing != SP_BACK_KMALLOC) {
		V("pool %.63s: unknown backing %u", p->name, p->backing);
		return;
	}
	if (p->backing == SP_BACK_KMALLOC && !kmalloc_pool_ok(x, p))
		return;
	if (p->backing == SP_BACK_SLAB &&
	    (p->cache_id != sp_pool_cache_id(s, id) ||
	     sp_caches(s)[p->cache_id].state != SP_DESC_LIVE ||
	     sp_caches(s)[p->cache_id].pool_id != id + 1))
		V("pool %.63s: its cache is missing", p->name);
	if (p->curr_nr > p->min_nr || p->min_nr > p->elements_cap) {
		V("pool %.63s: curr_nr %u, min_nr %u, capacity %u out of order", p->name, p->curr_nr,
		  p->min_nr, p->elements_cap);
		return;
	}
	if (p->max_nr && p->max_nr < p->min_nr)
		V("pool %.63s: max_nr %u below min_nr %u", p->name, p->max_nr, p->min_nr);
	el = sp_ptr_checked(s, p->elements_off, (uint64_t)p->elements_cap * 8, 8);
	if (p->elements_cap && !el) {
		V("pool %.63s: elements array outside the segment", p->name);
		return;
	}
	if (p->elements_off &&
	    (sp_ksize(s, p->elements_off, &bytes) || bytes < (uint64_t)p->elements_cap * 8)) {
		V("pool %.63s: its elements array is no kmalloc allocation of %u entries",
		  p->name, p->elements_cap);
		return;
	}
	for (uint32_t i = 0; i < p->curr_nr; i++)
		if (!reserve_elem_ok(x, p, el[i]))
			V("pool %.63s: reserve entry %u (%#llx) is not an allocated reserve element",
			  p->name, i, (unsigned long long)el[i]);
	copy = malloc((p->curr_nr + 1) * sizeof(*copy));
	if (copy && p->curr_nr) {
		memcpy(copy, el, p->curr_nr * sizeof(*copy));
		qsort(copy, p->curr_nr, sizeof(*copy), cmp_off);
		for (uint32_t i = 1; i < p->curr_nr; i++)
			if (copy[i] == copy[i - 1])
				V("pool %.63s: element %#llx twice in the reserve", p->name,
				  (unsigned long long)copy[i]);
	}
	free(copy);
	/* a shared class: check_class_reserves() counts its RESERVE tags */
	if (p->backing != SP_BACK_KMALLOC && count_reserve_tags(x, p) != p->curr_nr)
		V("pool %.63s: %llu elements tagged RESERVE but curr_nr is %u", p->name,
		  (unsigned long long)count_reserve_tags(x, p), p->curr_nr);
}

/*
 * A kmalloc class is shared by its KMALLOC-backed pools, whose reserves
 * are only their elements arrays (mempool.c): its RESERVE-tagged objects
 * must be exactly the union of elements[0, curr_nr) over those pools
 * (check_pool() checked each entry and each pool's distinctness; a count
 * equal to the sum also rules out one object in two reserves), plus an
 * element a put left between its tag and its commit, recorded in put_off
 * (only without the locks: with them, recovery has settled it).
 */
static void check_class_reserves(struct ctx *x)
{
	struct sp_seg *s = x->s;
	struct sp_report *r = x->r;
	uint32_t nk = s->geo.nr_kmalloc;
	uint64_t *want = calloc(nk + 1, sizeof(*want));

	if (!want)
		return;
	for (uint32_t i = 0; i < s->geo.max_pools; i++) {
		struct sp_pool *p = &sp_pools(s)[i];
		sp_off_t *el;

		if (p->state == SP_DESC_FREE || p->backing != SP_BACK_KMALLOC || p->cache_id >= nk ||
		    p->curr_nr > p->elements_cap)
			continue;
		want[p->cache_id] += p->curr_nr;
		el = sp_ptr_checked(s, p->elements_off, (uint64_t)p->elements_cap * 8, 8);
		if (p->put_off && reserve_elem_ok(x, p, p->put_off)) {
			uint32_t k = 0;

			while (el && k < p->curr_nr && el[k] != p->put_off)
				k++;
			want[p->cache_id] += !el || k == p->curr_nr;
		}
	}
	for (uint32_t id = 0; id < nk; id++) {
		struct sp_cache *c = &sp_caches(s)[id], g;
		uint64_t n = 0;

		if (c->state != SP_DESC_LIVE || sp_cache_snapshot(s, c, &g))
			continue; /* check_cache() reports it */
		for (unsigned l = SP_LIST_PARTIAL; l <= SP_LIST_FULL; l++) {
			uint32_t pg = c->list_head[l], len = 0;

			while (pg && len++ <= s->geo.nr_pages && sp_slab_valid(s, &g, pg - 1)) {
				struct sp_slab *slab = sp_slab_at(s, &g, pg - 1);

				for (uint32_t i = 0; i < g.objperslab; i++)
					n += sp_slab_owners(&g, slab)[i] == SP_OWNER_RESERVE &&
					     (slab->bitmap[i / 64] >> (i % 64) & 1);
				pg = s->pages[pg - 1].next;
			}
		}
		if (n != want[id])
			V("cache %.63s: %llu objects tagged RESERVE, but the reserves of its "
			  "kmalloc-backed pools hold %llu", c->name, (unsigned long long)n,
			  (unsigned long long)want[id]);
	}
	free(want);
}

static void check_registry(struct ctx *x)
{
	struct sp_seg *s = x->s;
	struct sp_report *r = x->r;
	uint32_t found, live = 0;
	char name[SP_NAME_MAX + 1];

	for (uint32_t i = s->geo.nr_kmalloc; i < s->geo.nr_kmalloc + s->geo.max_caches; i++) {
		struct sp_cache *c = &sp_caches(s)[i];

		if (c->state == SP_DESC_FREE)
			continue;
		if (c->state != SP_DESC_LIVE) {
			V("cache %u: left in state %u by a dead process", i, c->state);
			continue;
		}
		live++;
		snprintf(name, sizeof(name), "%.*s", SP_NAME_MAX, c->name);
		if (sp_name_check(name) || sp_hash_find(s, false, name, &found) ||
		    found != i)
			V("cache %.63s: not found under its name in the registry", c->name);
	}
	if (live != s->hdr->nr_live_caches)
		V("registry: %u live caches, counter says %u", live, s->hdr->nr_live_caches);
	live = 0;
	for (uint32_t i = 0; i < s->geo.max_pools; i++)
		live += sp_pools(s)[i].state == SP_DESC_LIVE;
	if (live != s->hdr->nr_live_pools)
		V("registry: %u live pools, counter says %u", live, s->hdr->nr_live_pools);
	for (int pools = 0; pools < 2; pools++) {
		uint32_t size = pools ? s->geo.phash_size : s->geo.chash_size;
		uint32_t *t = (uint32_t *)(s->base + (pools ? s->geo.phash.off : s->geo.chash.off));

		for (uint32_t i = 0; i < size; i++) {
			uint32_t e = t[i];

			if (!e || e == 0xffffffffu)
				continue;
			if (pools ? (e - 1 >= s->geo.max_pools ||
				     sp_pools(s)[e - 1].state != SP_DESC_LIVE)
				  : (e - 1 < s->geo.nr_kmalloc ||
				     e - 1 >= s->geo.nr_kmalloc + s->geo.max_caches ||
				     sp_caches(s)[e - 1].state != SP_DESC_LIVE))
				V("registry: %s name entry %u points at %u, not a live descriptor",
				  pools ? "pool" : "cache", i, e - 1);
		}
	}
}

/*
 * The header page is shared and writable.  Everything here uses the
 * geometry validated at attach (s->geo); the live header is only reported
 * on: a corrupted one, or one rewritten (checksum and all) since this
 * process validated it.
 */
static void check_header(struct ctx *x)
{
	struct sp_seg *s = x->s;
	struct sp_report *r = x->r;
	const uint8_t *live = (const uint8_t *)s->hdr, *mine = (const uint8_t *)&s->geo;
	size_t n = offsetof(struct sp_header, geometry_sum) + sizeof(s->geo.geometry_sum);

	if (sp_seg_validate_header(s->hdr, s->size))
		V("header: %s", sp_errmsg());
	for (size_t i = 0; i < n; i++) {
		if (live[i] != mine[i]) {
			V("header: geometry rewritten since this process attached (byte %zu); "
			  "checked with the geometry validated then", i);
			break;
		}
	}
}

/* Order of the block @pfn heads, or -1 when no block starts there
 * (check_buddy reports it; walks step one page). */
static int head_order(struct sp_seg *s, uint32_t pfn)
{
	uint32_t info = s->pages[pfn].info, st = SP_PG_STATE(info), o = SP_PG_ORDER(info);

	if ((st != SP_PG_FREE && st != SP_PG_ALLOC) || o > s->geo.max_order ||
	    (pfn & ((1u << o) - 1)) || (uint64_t)pfn + (1u << o) > s->geo.nr_pages)
		return -1;
	return (int)o;
}

/*
 * A page-backed pool's nr_pages_out counts its blocks (reserve included):
 * max_nr is enforced against it, so a drifted count lets a pool exceed its
 * cap or refuses allocations it should serve.  It is kept under the buddy
 * lock, which the checker holds.  Pools being created or destroyed are
 * check_pool()'s concern.
 */
static void check_pool_pages(struct ctx *x)
{
	struct sp_seg *s = x->s;
	struct sp_report *r = x->r;
	uint32_t np = s->geo.max_pools, *blocks = calloc(np + 1, sizeof(*blocks));
	int o;

	if (!blocks)
		return;
	for (uint32_t pfn = 0; pfn < s->geo.nr_pages; pfn += o < 0 ? 1 : 1u << o) {
		o = head_order(s, pfn);
		if (o >= 0 && s->pages[pfn].info == SP_PG_INFO(SP_PG_ALLOC, o, SP_KIND_POOL) &&
		    s->pages[pfn].owner < np)
			blocks[s->pages[pfn].owner]++;
	}
	for (uint32_t i = 0; i < np; i++) {
		struct sp_pool *p = &sp_pools(s)[i];

		if (p->state == SP_DESC_LIVE && p->backing == SP_BACK_PAGES &&
		    p->nr_pages_out != blocks[i])
			V("pool %.63s: nr_pages_out %u, but %u blocks of pages are its elements",
			  p->name, p->nr_pages_out, blocks[i]);
	}
	free(blocks);
}

/*
 * INTERNAL memory (templates, reserve arrays) that nothing references is
 * leaked: nobody will ever free it.  "Referenced" is sp_internal_refs(),
 * the definition the registry's recovery sweep frees by.  INTERNAL objects
 * live in kmalloc caches (tag_ok() refuses them elsewhere) and in large
 * blocks.
 */
static void check_internal(struct ctx *x)
{
	struct sp_seg *s = x->s;
	struct sp_report *r = x->r;
	uint32_t nref;
	sp_off_t *ref = sp_internal_refs(s, &nref);
	int o;

	if (!ref)
		return;
	for (uint32_t id = 0; id < s->geo.nr_kmalloc; id++) {
		struct sp_cache *c = &sp_caches(s)[id], g;

		if (c->state != SP_DESC_LIVE || sp_cache_snapshot(s, c, &g))
			continue; /* check_cache() reports it */
		for (unsigned l = SP_LIST_PARTIAL; l <= SP_LIST_EMPTY; l++) {
			uint32_t pg = c->list_head[l], len = 0;

			while (pg && len++ <= s->geo.nr_pages && sp_slab_valid(s, &g, pg - 1)) {
				struct sp_slab *slab = sp_slab_at(s, &g, pg - 1);
				uint16_t *own = sp_slab_owners(&g, slab);

				for (uint32_t i = 0; i < g.objperslab; i++) {
					sp_off_t off = (sp_off_t)(sp_slab_obj(&g, slab, i) - s->base);

					if ((slab->bitmap[i / 64] >> (i % 64) & 1) &&
					    own[i] == SP_OWNER_INTERNAL &&
					    !sp_internal_referenced(ref, nref, off))
						V("cache %.63s: INTERNAL object %#llx referenced by no "
						  "pool or cache: leaked", c->name,
						  (unsigned long long)off);
				}
				pg = s->pages[pg - 1].next;
			}
		}
	}
	for (uint32_t pfn = 0; pfn < s->geo.nr_pages; pfn += o < 0 ? 1 : 1u << o) {
		o = head_order(s, pfn);
		if (o >= 0 && s->pages[pfn].info == SP_PG_INFO(SP_PG_ALLOC, o, SP_KIND_LARGE) &&
		    s->pages[pfn].slot == SP_OWNER_INTERNAL &&
		    !sp_internal_referenced(ref, nref, sp_pfn_off(s, pfn)))
			V("page %u: INTERNAL large block referenced by no pool or cache: leaked",
			  pfn);
	}
	free(ref);
}

/*
 * Stopping the world takes the registry lock, then the locks of the pools
 * and caches that are not FREE (one stays FREE while the registry lock is
 * held), in table order, then the buddy lock.
 *
 * Never more than SP_LOCKS_PER_THREAD of them in one thread: when a thread
 * dies the kernel releases its robust mutexes from its robust list, newest
 * first and at most ROBUST_LIST_LIMIT (2048) of them, and the rest stay
 * owned by a dead thread for ever.  A daemon killed during a Check while
 * holding the lock of every table slot (about 2,300 with the default
 * geometry) wedged the registry lock and the first pools' locks: every
 * later locker timed out or hung (found by
 * tests/reliability/test-rel-restarts.c).  So the pools and caches in use
 * are cut into ranges of at most SP_LOCKS_PER_THREAD locks; the calling
 * thread takes the first range, and each further range is taken, in turn,
 * by a holder thread that keeps its locks until unlock_all() tells it to
 * release them.  Taking them one range after another keeps the lock order
 * across threads; a process killed meanwhile has every lock released, as
 * each thread's list stays short.
 */
#define SP_LOCKS_PER_THREAD 1024u

struct holder {
	pthread_t tid;
	struct sp_seg *s;
	struct sp_report *r;
	uint8_t *mine;
	uint32_t from, to;	/* its range of table indexes */
	int rc;			/* taking them: 0 or a negative errno */
	sem_t locked;		/* holder -> caller: rc is set */
	sem_t release;		/* caller -> holder: unlock and exit */
};

/* struct world - what one stopped world holds.  Process-private. */
struct world {
	uint8_t *mine;		/* [pools + caches + 1]: locks taken, buddy last */
	uint32_t end0;		/* the caller's own range is [0, end0) */
	struct holder *h;	/* holders of the further ranges */
	unsigned nh;		/* holders running */
};

/* Table index i: pool i below max_pools, else cache i - max_pools. */
static uint32_t desc_state(struct sp_seg *s, uint32_t i)
{
	uint32_t np = s->geo.max_pools;

	return i < np ? sp_pools(s)[i].state : sp_caches(s)[i - np].state;
}

static void unlock_range(struct sp_seg *s, uint8_t *mine, uint32_t from, uint32_t to)
{
	uint32_t np = s->geo.max_pools;

	for (uint32_t i = to; i-- > from;) {
		if (!mine[i])
			continue;
		if (i < np)
			sp_pool_unlock(&sp_pools(s)[i]);
		else
			sp_cache_unlock(&sp_caches(s)[i - np]);
		mine[i] = 0;
	}
}

/* Lock what is in use in [from, to); on failure nothing of it stays held. */
static int lock_range(struct sp_seg *s, struct sp_report *r, uint8_t *mine, uint32_t from,
		      uint32_t to)
{
	uint32_t np = s->geo.max_pools;
	int rc = 0;

	for (uint32_t i = from; !rc && i < to; i++) {
		if (desc_state(s, i) == SP_DESC_FREE)
			continue;
		rc = i < np ? sp_pool_lock(s, &sp_pools(s)[i]) : sp_cache_lock(s, &sp_caches(s)[i - np]);
		if (rc)
			V("%s %u lock: %s", i < np ? "pool" : "cache", i < np ? i : i - np, sp_errmsg());
		else
			mine[i] = 1;
	}
	if (rc)
		unlock_range(s, mine, from, to);
	return rc;
}

static void *holder_main(void *arg)
{
	struct holder *h = arg;

	sp_lock_allow_same_level(true);
	h->rc = lock_range(h->s, h->r, h->mine, h->from, h->to);
	sem_post(&h->locked);
	if (!h->rc) {
		while (sem_wait(&h->release) < 0)
			;
		unlock_range(h->s, h->mine, h->from, h->to);
	}
	sp_lock_allow_same_level(false);
	return NULL;
}

static void unlock_all(struct sp_seg *s, struct world *w)
{
	uint32_t n = s->geo.max_pools + sp_nr_cache_slots(s);

	if (w->mine[n])
		sp_buddy_unlock(s);
	w->mine[n] = 0;
	while (w->nh) {
		struct holder *h = &w->h[--w->nh];

		if (!h->rc)
			sem_post(&h->release);
		pthread_join(h->tid, NULL);
		sem_destroy(&h->locked);
		sem_destroy(&h->release);
	}
	free(w->h);
	w->h = NULL;
	unlock_range(s, w->mine, 0, w->end0);
	sp_lock_allow_same_level(false);
	sp_registry_unlock(s);
}

/* Start a holder for [from, to) and wait until it holds its locks. */
static int start_holder(struct sp_seg *s, struct sp_report *r, struct world *w, uint32_t from,
			uint32_t to)
{
	struct holder *h = &w->h[w->nh];
	int rc;

	*h = (struct holder){ .s = s, .r = r, .mine = w->mine, .from = from, .to = to };
	sem_init(&h->locked, 0, 0);
	sem_init(&h->release, 0, 0);
	rc = pthread_create(&h->tid, NULL, holder_main, h);
	if (rc) {
		sem_destroy(&h->locked);
		sem_destroy(&h->release);
		V("cannot start a lock holder thread: %s", strerror(rc));
		return -rc;
	}
	w->nh++;
	while (sem_wait(&h->locked) < 0)
		;
	return h->rc;
}

/* Stop the world (see above).  Return: 0, or a negative errno (reported;
 * nothing held). */
static int lock_all(struct sp_seg *s, struct sp_report *r, struct world *w)
{
	uint32_t n = s->geo.max_pools + sp_nr_cache_slots(s), from, count = 0, i;
	int rc = sp_registry_lock(s);

	if (rc) {
		V("registry lock: %s", sp_errmsg());
		return rc;
	}
	sp_lock_allow_same_level(true);
	/* the caller's range: the first SP_LOCKS_PER_THREAD - 2 in use */
	for (i = 0; i < n && count < SP_LOCKS_PER_THREAD - 2; i++)
		count += desc_state(s, i) != SP_DESC_FREE;
	w->end0 = i;
	w->h = calloc(n / SP_LOCKS_PER_THREAD + 2, sizeof(*w->h));
	rc = w->h ? lock_range(s, r, w->mine, 0, w->end0) : -ENOMEM;
	for (from = i; !rc && from < n; from = i) {
		for (count = 0; i < n && count < SP_LOCKS_PER_THREAD; i++)
			count += desc_state(s, i) != SP_DESC_FREE;
		rc = start_holder(s, r, w, from, i);
	}
	if (!rc) {
		rc = sp_buddy_lock(s);
		if (rc)
			V("buddy lock: %s", sp_errmsg());
		else
			w->mine[n] = 1;
	}
	if (rc == -ENOMEM && !w->h)
		V("out of process memory to stop the world");
	if (rc)
		unlock_all(s, w);
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Distinct objects the magazines of @slot's listed sets list that are
 * allocated and carry its magazine tag: those the held bound leaves out.
 * Bounded like sp_slot_held_sum(); -1 when the list cannot be walked.
 */
static int64_t mag_listed(struct ctx *x, uint32_t slot)
{
	struct sp_seg *s = x->s;
	uint32_t pfn = sp_clients(s)[slot].mag_head, steps = (s->geo.nr_pages >> SP_MAGSET_ORDER) + 1;
	uint64_t *v = NULL, n = 0, cap = 0, distinct = 0;

	for (; pfn; pfn = s->pages[pfn - 1].next) {
		struct sp_magset *set;

		if (!steps-- || !sp_magset_valid(s, pfn - 1)) {
			free(v);
			return -1;
		}
		set = (struct sp_magset *)(s->base + sp_pfn_off(s, pfn - 1));
		for (unsigned j = 0; j < SP_MAGSET_MAGS; j++) {
			struct sp_mag *m = &set->mag[j];
			uint32_t nr = m->nr <= SP_MAG_OBJS ? m->nr : SP_MAG_OBJS;
			struct sp_cache *c = m->cache_id ? sp_cache_get(s, m->cache_id - 1) : NULL;
			struct sp_mag_geo g;

			if (!c || c->gen != m->cache_gen || !sp_mag_geo_init(s, c, &g))
				continue;
			for (uint32_t k = 0; k < nr; k++) {
				struct sp_slab *slab;
				uint32_t idx;

				if (!sp_mag_geo_locate(&g, m->objs[k], &slab, &idx) ||
				    !(slab->bitmap[idx / 64] >> (idx % 64) & 1) ||
				    *sp_mag_geo_tag(&g, slab, idx) != SP_OWNER_MAG(slot + 1))
					continue;
				if (n == cap) {
					uint64_t *nv = realloc(v, (cap ? 2 * cap : 256) * sizeof(*v));

					if (!nv) {
						free(v);
						return -1;
					}
					v = nv;
					cap = cap ? 2 * cap : 256;
				}
				v[n++] = m->objs[k];
			}
		}
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_u64);
	for (uint64_t i = 0; i < n; i++)
		distinct += !i || v[i] != v[i - 1];
	free(v);
	return (int64_t)distinct;
}

/* Every slot's held bound covers what a walk of its caches would find
 * beyond what its magazines list (layout.h); see the top of this file for
 * which slots.  Run after the caches were checked (tagged_per_slot). */
static void check_held(struct ctx *x, bool quiescent)
{
	struct sp_seg *s = x->s;
	struct sp_report *r = x->r;

	for (uint32_t i = 0; i < s->geo.max_clients; i++) {
		uint32_t state = sp_clients(s)[i].state;
		int64_t sum, listed, found;

		if (state == SP_CLIENT_FREE || (state == SP_CLIENT_ALIVE && !quiescent))
			continue;
		/* a list that cannot be walked: reported by check_maglists(), and
		 * the bound is unknown there, so a release walks everything */
		if (sp_slot_held_sum(s, i, &sum, NULL) || (listed = mag_listed(x, i)) < 0)
			continue;
		found = (int64_t)x->tagged_per_slot[i] - listed;
		if (found > sum)
			V("client slot %u: %lld objects carry its tags outside its magazines, but its "
			  "held bound is %lld: its release would skip them", i, (long long)found,
			  (long long)sum);
	}
}

/**
 * sp_check() - verify every invariant of a segment.
 * @s: segment (possibly read-only, possibly corrupted).
 * @flags: SP_CHECK_NOLOCK to read without locking; SP_CHECK_QUIESCENT when
 *         no magazine fast path runs (also check live slots' held bounds).
 * @r: the report; the caller sets r->cap and r->v (or leaves them 0 to only
 *     count), and frees r->v.
 *
 * May sleep (takes every lock unless SP_CHECK_NOLOCK or read-only).
 * Return: the number of violations (0 = healthy), or a negative errno when
 * the check could not run.
 */
int sp_check(struct sp_seg *s, int flags, struct sp_report *r)
{
	bool locked = !(flags & SP_CHECK_NOLOCK) && !s->readonly;
	struct ctx x = { .s = s, .r = r };
	struct world w = { 0 };

	r->nr = 0;
	x.slabs_per_cache = calloc(sp_nr_cache_slots(s), sizeof(*x.slabs_per_cache));
	x.reserve_pages = calloc(s->geo.max_pools + 1, sizeof(*x.reserve_pages));
	x.magsets_per_slot = calloc(s->geo.max_clients + 1, sizeof(*x.magsets_per_slot));
	x.tagged_per_slot = calloc(s->geo.max_clients + 1, sizeof(*x.tagged_per_slot));
	w.mine = locked ? calloc(sp_nr_cache_slots(s) + s->geo.max_pools + 1, 1) : NULL;
	if (!x.slabs_per_cache || !x.reserve_pages || !x.magsets_per_slot || !x.tagged_per_slot ||
	    (locked && !w.mine)) {
		free(x.slabs_per_cache);
		free(x.reserve_pages);
		free(x.magsets_per_slot);
		free(x.tagged_per_slot);
		free(w.mine);
		return sp_err(-ENOMEM, "out of process memory");
	}
	check_header(&x);
	if (locked && lock_all(s, r, &w))
		locked = false; /* reported; check what can be read */
	check_clients(&x);
	check_buddy(&x);
	check_maglists(&x);
	for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++)
		if (sp_caches(s)[i].state != SP_DESC_FREE)
			check_cache(&x, &sp_caches(s)[i], i);
		else if (x.slabs_per_cache[i])
			V("cache %u is free but owns %u slabs", i, x.slabs_per_cache[i]);
	for (uint32_t i = 0; i < s->geo.max_pools; i++)
		if (sp_pools(s)[i].state != SP_DESC_FREE)
			check_pool(&x, &sp_pools(s)[i], i);
	check_class_reserves(&x);
	check_held(&x, flags & SP_CHECK_QUIESCENT);
	check_registry(&x);
	check_pool_pages(&x);
	check_internal(&x);
	if (locked)
		unlock_all(s, &w);
	free(x.slabs_per_cache);
	free(x.reserve_pages);
	free(x.magsets_per_slot);
	free(x.tagged_per_slot);
	free(w.mine);
	return (int)r->nr;
}
