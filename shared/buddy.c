/* SPDX-License-Identifier: MIT */
/*
 * buddy.c - the buddy page allocator of the data area.
 *
 * Pages are numbered 0..nr_pages-1 (pfn).  A block of order o is 2^o pages
 * starting at a pfn that is a multiple of 2^o.  Its buddy is the other half
 * of the order-(o+1) block containing it, and its parent starts at the lower
 * of the two:
 *
 *	buddy  = pfn ^ (1 << o)
 *	parent = pfn & ~(1 << o)
 *
 * Worked example, order 2 (4 pages): block 12 (pages 12..15) has buddy
 * 12 ^ 4 = 8 (pages 8..11); if 8 is free with order 2 they merge into the
 * order-3 block 12 & ~4 = 8 (pages 8..15), whose buddy is 8 ^ 8 = 0.
 * Allocating order 0 from a free order-3 block at 8 splits it three times:
 * 12 (order 2), 10 (order 1) and 9 (order 0) go back to the free lists and
 * page 8 is handed out.
 *
 * Truth and crash safety: sp_page.info of each head says FREE or ALLOC, its
 * order and kind; every page of a block but the head is a TAIL pointing at
 * the head.  Each change is ordered so that one 32-bit store commits it:
 *   alloc: unlink, mark the split-off halves FREE, mark tails, then write the
 *          head's ALLOC info (the commit: before it the block is still free);
 *   free:  write FREE into the head (commit), then merge: the lower half's
 *          info grows to order + 1 before the upper half becomes a TAIL.
 * Walking heads from pfn 0 by 1 << order therefore always sees a consistent
 * partition, whatever instruction a process died at, and
 * sp_buddy_recover_locked() rebuilds the lists and counters from that walk.
 *
 * Backing store: before a block is handed out, its pages that tmpfs has not
 * yet backed are reserved with fallocate (sp_prim_reserve), so a full
 * /dev/shm yields -ENOMEM here instead of SIGBUS in the first store.
 *
 * Locking: hdr->buddy.lock (level 4, innermost) protects every FREE head's
 * list links and the info of every page; owners of ALLOC blocks (caches,
 * pools) change only next/prev of their own heads under their own lock.
 */
#include <errno.h>
#include <string.h>

#include "core.h"

static inline struct sp_buddy *zone(struct sp_seg *s)
{
	return &s->hdr->buddy;
}

static bool pfn_ok(const struct sp_seg *s, uint32_t pfn)
{
	return pfn < s->geo.nr_pages;
}

static void add_free(struct sp_seg *s, uint32_t pfn, unsigned order)
{
	sp_plist_add(s, &zone(s)->free_head[order], pfn);
	zone(s)->nr_free[order]++;
	zone(s)->free_pages += 1ull << order;
}

static void del_free(struct sp_seg *s, uint32_t pfn, unsigned order)
{
	sp_plist_del(s, &zone(s)->free_head[order], pfn);
	zone(s)->nr_free[order]--;
	zone(s)->free_pages -= 1ull << order;
}

static void set_tails(struct sp_seg *s, uint32_t pfn, unsigned order)
{
	for (uint32_t i = 1; i < (1u << order); i++) {
		s->pages[pfn + i].owner = pfn;
		__atomic_store_n(&s->pages[pfn + i].info, SP_PG_TAIL, __ATOMIC_RELAXED);
	}
}

/*
 * Free block @pfn of @order and merge it with free buddies.  With
 * @left_only (recovery's rebuild walk) only buddies below @pfn are merged,
 * because blocks above it are not on the lists yet.
 */
static void merge_insert(struct sp_seg *s, uint32_t pfn, unsigned order, bool left_only)
{
	unsigned max = s->geo.max_order;

	while (order < max) {
		uint32_t buddy = pfn ^ (1u << order);
		uint32_t lo = pfn < buddy ? pfn : buddy, hi = pfn ^ buddy ^ lo;

		if ((uint64_t)buddy + (1u << order) > s->geo.nr_pages)
			break;
		if (left_only && buddy > pfn)
			break;
		if (s->pages[buddy].info != SP_PG_INFO(SP_PG_FREE, order, SP_KIND_NONE))
			break;
		del_free(s, buddy, order);
		__atomic_store_n(&s->pages[lo].info, SP_PG_INFO(SP_PG_FREE, order + 1, SP_KIND_NONE),
				 __ATOMIC_RELEASE);
		SP_CRASH_POINT("buddy.free.merged");
		s->pages[hi].owner = lo;
		__atomic_store_n(&s->pages[hi].info, SP_PG_TAIL, __ATOMIC_RELEASE);
		pfn = lo;
		order++;
	}
	add_free(s, pfn, order);
}

/**
 * sp_buddy_init() - carve the data area into free blocks (at creation).
 * @s: a segment being created; nothing else sees it yet.
 *
 * Does not sleep.
 */
void sp_buddy_init(struct sp_seg *s)
{
	struct sp_buddy *z = zone(s);
	uint32_t pfn = 0, n = s->geo.nr_pages;

	z->max_order = s->geo.max_order;
	z->nr_pages = n;
	sp_lock_init(&z->lock, SP_LOCK_BUDDY);
	while (pfn < n) {
		unsigned o = s->geo.max_order;

		while ((pfn & ((1u << o) - 1)) || (uint64_t)pfn + (1u << o) > n)
			o--;
		set_tails(s, pfn, o);
		s->pages[pfn].info = SP_PG_INFO(SP_PG_FREE, o, SP_KIND_NONE);
		add_free(s, pfn, o);
		pfn += 1u << o;
	}
}

/**
 * sp_buddy_recover_locked() - rebuild free lists and counters from page info.
 * @s: segment; the buddy lock is held (its previous owner died).
 *
 * Pass 1 walks heads from pfn 0 and rewrites every tail; a page where a
 * head should be but whose info is impossible (only corruption produces
 * one) is kept out of circulation as an allocated order-0 block with no
 * owner, for the checker to report: never handed out twice.  Pass 1 also
 * recounts nr_pages_out of every page-backed pool (it is under this lock
 * too, and a process killed in a pool's backing alloc or free leaves it off
 * by one).  Pass 2 puts the free heads back on the lists, merging buddies.
 * Does not sleep.
 */
void sp_buddy_recover_locked(struct sp_seg *s)
{
	struct sp_buddy *z = zone(s);
	uint32_t pfn, n = s->geo.nr_pages;

	sp_assert(sp_lock_held(&z->lock));
	z->max_order = s->geo.max_order;
	z->nr_pages = n;
	for (uint32_t i = 0; i < s->geo.max_pools; i++)
		sp_pools(s)[i].nr_pages_out = 0;
	for (pfn = 0; pfn < n;) {
		uint32_t info = s->pages[pfn].info;
		unsigned st = SP_PG_STATE(info), o = SP_PG_ORDER(info);

		if ((st != SP_PG_FREE && st != SP_PG_ALLOC) || o > s->geo.max_order ||
		    (pfn & ((1u << o) - 1)) || (uint64_t)pfn + (1u << o) > n ||
		    (st == SP_PG_FREE && SP_PG_KIND(info) != SP_KIND_NONE)) {
			s->pages[pfn].owner = 0;
			s->pages[pfn].slot = 0;
			s->pages[pfn].info = SP_PG_INFO(SP_PG_ALLOC, 0, SP_KIND_NONE);
			o = 0;
		} else if (st == SP_PG_ALLOC && SP_PG_KIND(info) == SP_KIND_POOL &&
			   s->pages[pfn].owner < s->geo.max_pools &&
			   sp_pools(s)[s->pages[pfn].owner].page_order == o) {
			sp_pools(s)[s->pages[pfn].owner].nr_pages_out++;
		}
		set_tails(s, pfn, o);
		pfn += 1u << o;
	}
	memset(z->free_head, 0, sizeof(z->free_head));
	memset(z->nr_free, 0, sizeof(z->nr_free));
	z->free_pages = 0;
	for (pfn = 0; pfn < n;) {
		uint32_t info = s->pages[pfn].info;
		unsigned o = SP_PG_ORDER(info);

		if (SP_PG_STATE(info) == SP_PG_FREE)
			merge_insert(s, pfn, o, true);
		pfn += 1u << o;
	}
}

/**
 * sp_buddy_lock() - take the buddy lock, recovering it if its owner died.
 * @s: segment.
 *
 * May sleep.
 * Return: 0 or a negative errno from sp_lock().
 */
int sp_buddy_lock(struct sp_seg *s)
{
	int rc = sp_lock(s, &zone(s)->lock);

	if (sp_unlikely(rc == SP_LOCK_RECOVER)) {
		sp_buddy_recover_locked(s);
		sp_lock_consistent(&zone(s)->lock);
		rc = 0;
	}
	return rc;
}

void sp_buddy_unlock(struct sp_seg *s)
{
	sp_unlock(&zone(s)->lock);
}

/* Reserve tmpfs backing for every page of [pfn, pfn + 2^order) not yet backed. */
static int reserve_backing(struct sp_seg *s, uint32_t pfn, unsigned order)
{
	uint32_t end = pfn + (1u << order), i = pfn;

	while (i < end) {
		uint32_t j;
		int rc;

		if (s->pages[i].flags & SP_PGF_BACKED) {
			i++;
			continue;
		}
		for (j = i; j < end && !(s->pages[j].flags & SP_PGF_BACKED); j++)
			;
		rc = sp_prim_reserve(s->fd, sp_pfn_off(s, i), (uint64_t)(j - i) << SP_PAGE_SHIFT);
		if (rc)
			return rc;
		for (; i < j; i++)
			s->pages[i].flags |= SP_PGF_BACKED;
	}
	return 0;
}

/**
 * sp_buddy_alloc_locked() - take a block of 2^@order pages.
 * @s: segment; the buddy lock is held.
 * @order: 0..max_order.
 * @kind: SP_KIND_* recorded in the head.
 * @owner: cache or pool id recorded in the head.
 * @slot: owner tag recorded in the head.
 * @pfn: the block's first page.
 *
 * May sleep (fallocate).
 * Return: 0; -ENOMEM when no block is free or /dev/shm cannot back it;
 * -EINVAL for an order above max_order; -EFAULT when the free list is
 * corrupted (the list is rebuilt before returning).
 */
int sp_buddy_alloc_locked(struct sp_seg *s, unsigned order, unsigned kind, uint32_t owner,
			  uint16_t slot, uint32_t *pfn)
{
	struct sp_buddy *z = zone(s);
	unsigned o;
	uint32_t p;
	int rc;

	sp_assert(sp_lock_held(&z->lock));
	/* the zone's own max_order is shared and writable: bound by the copy */
	if (order > s->geo.max_order)
		return sp_err(-EINVAL, "order %u is above max_order %u", order, s->geo.max_order);
	for (o = order; o <= s->geo.max_order && !z->free_head[o]; o++)
		;
	if (o > s->geo.max_order) {
		z->nr_fail++;
		return sp_err(-ENOMEM, "no free block of order %u (segment full)", order);
	}
	p = z->free_head[o] - 1;
	if (!pfn_ok(s, p) || s->pages[p].info != SP_PG_INFO(SP_PG_FREE, o, SP_KIND_NONE) ||
	    (p & ((1u << o) - 1))) {
		sp_buddy_recover_locked(s);
		return sp_err(-EFAULT, "buddy free list %u was corrupted; rebuilt it", o);
	}
	rc = reserve_backing(s, p, order);
	if (rc) {
		z->nr_backing_fail++;
		z->nr_fail++;
		return rc;
	}
	del_free(s, p, o);
	SP_CRASH_POINT("buddy.alloc.unlinked");
	while (o > order) {
		o--;
		__atomic_store_n(&s->pages[p + (1u << o)].info,
				 SP_PG_INFO(SP_PG_FREE, o, SP_KIND_NONE), __ATOMIC_RELEASE);
		add_free(s, p + (1u << o), o);
		SP_CRASH_POINT("buddy.alloc.split");
	}
	set_tails(s, p, order);
	if (kind == SP_KIND_SLAB)
		memset(s->base + sp_pfn_off(s, p), 0, sizeof(struct sp_slab)); /* no stale magic */
	s->pages[p].owner = owner;
	/* before the tag names the slot; a magazine set is found through its
	 * slot's list, and a loose one marked by the registry's recovery
	 * (SP_SLOT_LOOSE_SETS in layout.h) */
	if (kind != SP_KIND_MAG)
		sp_slot_note(s, slot, SP_NOTE_BLOCKS);
	s->pages[p].slot = slot;
	s->pages[p].next = s->pages[p].prev = 0;
	__atomic_store_n(&s->pages[p].info, SP_PG_INFO(SP_PG_ALLOC, order, kind), __ATOMIC_RELEASE);
	SP_CRASH_POINT("buddy.alloc.committed");
	z->nr_alloc++;
	*pfn = p;
	return 0;
}

/**
 * sp_buddy_free_locked() - return an allocated block to the free lists.
 * @s: segment; the buddy lock is held.
 * @pfn: head of an ALLOC block (the caller validated it).
 *
 * Does not sleep.
 */
void sp_buddy_free_locked(struct sp_seg *s, uint32_t pfn)
{
	uint32_t info = s->pages[pfn].info;
	unsigned order = SP_PG_ORDER(info);

	sp_assert(sp_lock_held(&zone(s)->lock));
	sp_assert(SP_PG_STATE(info) == SP_PG_ALLOC);
	__atomic_store_n(&s->pages[pfn].info, SP_PG_INFO(SP_PG_FREE, order, SP_KIND_NONE),
			 __ATOMIC_RELEASE);
	/* after the commit: dying before it must leave the block allocated and
	 * still attributed, not an ALLOC block with no owner for ever */
	s->pages[pfn].owner = 0;
	s->pages[pfn].slot = 0;
	SP_CRASH_POINT("buddy.free.linked");
	merge_insert(s, pfn, order, false);
	zone(s)->nr_free_calls++;
}

/**
 * sp_block_head() - the head of the allocated block holding a page.
 * @s: segment.
 * @pfn: any page of the block.
 * @head: its head.
 *
 * Reads page info without the buddy lock: the caller holds the lock of the
 * block's owner, which is what keeps the block allocated.  Does not sleep.
 * Return: 0, or -EINVAL when the page is not inside an allocated block.
 */
int sp_block_head(const struct sp_seg *s, uint32_t pfn, uint32_t *head)
{
	uint32_t info, h;

	if (!pfn_ok(s, pfn))
		return -EINVAL;
	info = __atomic_load_n(&s->pages[pfn].info, __ATOMIC_ACQUIRE);
	if (SP_PG_STATE(info) == SP_PG_ALLOC) {
		*head = pfn;
		return 0;
	}
	if (SP_PG_STATE(info) != SP_PG_TAIL)
		return -EINVAL;
	h = s->pages[pfn].owner;
	if (h >= pfn || !pfn_ok(s, h))
		return -EINVAL;
	info = __atomic_load_n(&s->pages[h].info, __ATOMIC_ACQUIRE);
	if (SP_PG_STATE(info) != SP_PG_ALLOC || SP_PG_ORDER(info) > s->geo.max_order ||
	    pfn - h >= (1u << SP_PG_ORDER(info)))
		return -EINVAL;
	*head = h;
	return 0;
}

/**
 * sp_buddy_alloc() - allocate raw pages for the caller's own use.
 * @s: segment with a registered slot (the block records it as owner).
 * @order: 2^order pages.
 * @off: offset of the block.
 *
 * May sleep.
 * Return: 0, -ENOMEM, -EINVAL.
 */
int sp_buddy_alloc(struct sp_seg *s, unsigned order, sp_off_t *off)
{
	uint32_t pfn;
	int rc;

	if (!s->owner)
		return sp_err(-EPERM, "register a client slot before allocating");
	rc = sp_buddy_lock(s);
	if (rc)
		return rc;
	rc = sp_buddy_alloc_locked(s, order, SP_KIND_RAW, 0, s->owner, &pfn);
	sp_buddy_unlock(s);
	if (!rc)
		*off = sp_pfn_off(s, pfn);
	return rc;
}

/**
 * sp_buddy_free() - free a block from sp_buddy_alloc().
 * @s: segment.
 * @off: the offset sp_buddy_alloc() returned.
 *
 * May sleep.
 * Return: 0, or -EINVAL when @off is not the start of a raw block.
 */
int sp_buddy_free(struct sp_seg *s, sp_off_t off)
{
	uint32_t pfn, info;
	int rc;

	if (!sp_off_pfn(s, off, &pfn) || (off - s->geo.data.off) & (SP_PAGE_SIZE - 1))
		return sp_err(-EINVAL, "offset %#llx is not a page in the data area",
			      (unsigned long long)off);
	rc = sp_buddy_lock(s);
	if (rc)
		return rc;
	info = s->pages[pfn].info;
	if (SP_PG_STATE(info) != SP_PG_ALLOC || SP_PG_KIND(info) != SP_KIND_RAW) {
		sp_buddy_unlock(s);
		return sp_err(-EINVAL, "offset %#llx is not an allocated page block",
			      (unsigned long long)off);
	}
	sp_buddy_free_locked(s, pfn);
	sp_buddy_unlock(s);
	return 0;
}
