/* SPDX-License-Identifier: MIT */
/*
 * kmalloc.c - general allocation in size classes, as in the design article:
 * every multiple of 8 up to 128 bytes, then 192, 256, 512, 1024, 2048, 4096
 * and 8192.  Each class is a slab cache (ids 0 .. nr_kmalloc-1) that keeps
 * a stock of kmalloc_prefill free objects (default 20), refilled when it
 * falls below half of that (slab.c).  Larger requests take a buddy block of
 * the next order, marked LARGE with the owner's tag in its head page, so
 * that free needs no size.
 */
#include <errno.h>
#include <stdio.h>

#include "core.h"

const uint32_t sp_kmalloc_sizes[] = {
	8,   16,  24,  32,  40,	 48,   56,   64,   72,	 80,   88,  96,
	104, 112, 120, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
};
const unsigned sp_nr_kmalloc_classes = sizeof(sp_kmalloc_sizes) / sizeof(sp_kmalloc_sizes[0]);
_Static_assert(sizeof(sp_kmalloc_sizes) / sizeof(sp_kmalloc_sizes[0]) == SP_NR_KMALLOC,
	       "sp_kmalloc_index() knows every class");

/**
 * sp_kmalloc_class() - the class serving a request size.
 * @size: 1 .. SP_KMALLOC_MAX.
 *
 * Does not sleep.
 * Return: the class index (its cache id), or -1 when @size needs pages.
 */
int sp_kmalloc_class(uint64_t size)
{
	if (!size)
		return 0;
	return size <= SP_KMALLOC_MAX ? (int)sp_kmalloc_index(size) : -1;
}

/**
 * sp_kmalloc_init() - create the class caches and fill their stock.
 * @s: a segment being created.
 *
 * May sleep.
 * Return: 0 or a negative errno (the segment is too small for the stock).
 */
int sp_kmalloc_init(struct sp_seg *s)
{
	for (unsigned i = 0; i < sp_nr_kmalloc_classes; i++) {
		struct sp_cache *c = &sp_caches(s)[i];
		char name[32];
		int rc;

		snprintf(name, sizeof(name), "kmalloc-%u", sp_kmalloc_sizes[i]);
		c->magic = SP_CACHE_MAGIC ^ i;
		rc = sp_cache_setup(s, c, name, sp_kmalloc_sizes[i], 8, SP_CACHE_KMALLOC);
		if (rc)
			return rc;
		c->min_free = s->geo.kmalloc_prefill;
		c->mode = 0666;
		c->gen = 1;
		c->state = SP_DESC_LIVE;
		rc = sp_cache_lock(s, c);
		if (rc)
			return rc;
		rc = sp_cache_stock_locked(s, c);
		sp_cache_unlock(c);
		if (rc)
			return sp_err(rc, "segment too small for the kmalloc stock: %s",
				      sp_errmsg());
	}
	return 0;
}

static unsigned large_order(uint64_t size)
{
	unsigned o = 0;

	while (((uint64_t)SP_PAGE_SIZE << o) < size)
		o++;
	return o;
}

/* sp_kmalloc_owner(), a class taking its geometry from @snaps[class]
 * when @snaps is not NULL (sp_kmalloc_geo()). */
static int kmalloc_in(struct sp_seg *s, uint64_t size, const struct sp_cache *snaps,
		      uint16_t owner, sp_off_t *off)
{
	int cls;
	uint32_t pfn;
	unsigned order;
	int rc;

	if (!size)
		return sp_err(-EINVAL, "allocation of 0 bytes");
	cls = sp_kmalloc_class(size);
	if (cls >= 0)
		return sp_cache_alloc_geo(s, &sp_caches(s)[cls], snaps ? &snaps[cls] : NULL, owner,
					  off);
	if (size > ((uint64_t)SP_PAGE_SIZE << s->geo.max_order))
		return sp_err(-ENOMEM, "%llu bytes is more than the largest block (%llu)",
			      (unsigned long long)size,
			      (unsigned long long)SP_PAGE_SIZE << s->geo.max_order);
	order = large_order(size);
	rc = sp_buddy_lock(s);
	if (rc)
		return rc;
	rc = sp_buddy_alloc_locked(s, order, SP_KIND_LARGE, 0, owner, &pfn);
	sp_buddy_unlock(s);
	if (rc)
		return rc;
	SP_CRASH_POINT("kmalloc.large.alloc");
	*off = sp_pfn_off(s, pfn);
	return 0;
}

/**
 * sp_kmalloc_owner() - allocate @size bytes for a given owner tag.
 * @s: segment.  @size: 1 .. the largest buddy block.
 * @owner: tag recorded for the allocation.
 * @off: its offset, aligned to 8 (to 4096 above 8 KiB).
 *
 * May sleep.
 * Return: 0; -EINVAL for size 0; -ENOMEM.
 */
int sp_kmalloc_owner(struct sp_seg *s, uint64_t size, uint16_t owner, sp_off_t *off)
{
	return kmalloc_in(s, size, NULL, owner, off);
}

/**
 * sp_kmalloc() - allocate @size bytes owned by this process's slot.
 * @s: segment with a registered slot.  @size: bytes.  @off: result.
 *
 * May sleep.
 * Return: as sp_kmalloc_owner(); -EPERM without a slot.
 */
int sp_kmalloc(struct sp_seg *s, uint64_t size, sp_off_t *off)
{
	return sp_kmalloc_geo(s, size, NULL, off);
}

/**
 * sp_kmalloc_geo() - sp_kmalloc() with the caller's kept snapshots.
 * @s: segment with a registered slot.  @size: bytes.
 * @snaps: NULL, or one checked snapshot per kmalloc class, indexed by
 *         class, kept by the caller (a client session): a class allocation
 *         uses its class's (sp_cache_geo_locked()) instead of taking one.
 * @off: result.
 *
 * May sleep.
 * Return: as sp_kmalloc().
 */
int sp_kmalloc_geo(struct sp_seg *s, uint64_t size, const struct sp_cache *snaps, sp_off_t *off)
{
	if (!s->owner)
		return sp_err(-EPERM, "register a client slot before allocating");
	return kmalloc_in(s, size, snaps, s->owner, off);
}

/* The kmalloc class cache or large block holding @off, validated. */
static int classify(struct sp_seg *s, sp_off_t off, struct sp_cache **c, uint32_t *head)
{
	uint32_t pfn, info;

	if (!sp_off_pfn(s, off, &pfn) || sp_block_head(s, pfn, head))
		return sp_err(-EINVAL, "offset %#llx is not an allocation of this segment",
			      (unsigned long long)off);
	info = s->pages[*head].info;
	if (SP_PG_KIND(info) == SP_KIND_LARGE && SP_PG_ORDER(info) <= s->geo.max_order) {
		*c = NULL;
		return 0;
	}
	if (SP_PG_KIND(info) == SP_KIND_SLAB && s->pages[*head].owner < s->geo.nr_kmalloc) {
		*c = &sp_caches(s)[s->pages[*head].owner];
		return 0;
	}
	return sp_err(-EINVAL, "offset %#llx is not a kmalloc allocation (pool or cache memory?)",
		      (unsigned long long)off);
}

/**
 * sp_kfree() - free what sp_kmalloc() returned.
 * @s: segment.  @off: the offset.
 *
 * Double frees, foreign and mid-object pointers are refused.
 * May sleep.
 * Return: 0 or -EINVAL.
 */
int sp_kfree(struct sp_seg *s, sp_off_t off)
{
	struct sp_cache *c = NULL; /* set whenever classify() succeeds */
	uint32_t head, info;
	int rc = classify(s, off, &c, &head);

	if (rc)
		return rc;
	if (c)
		return sp_cache_free(s, c, off);
	rc = sp_buddy_lock(s);
	if (rc)
		return rc;
	info = s->pages[head].info;
	if (SP_PG_STATE(info) != SP_PG_ALLOC || SP_PG_KIND(info) != SP_KIND_LARGE ||
	    sp_pfn_off(s, head) != off)
		rc = sp_err(-EINVAL, "offset %#llx is not the start of a large allocation",
			    (unsigned long long)off);
	else
		sp_buddy_free_locked(s, head);
	sp_buddy_unlock(s);
	return rc;
}

/**
 * sp_ksize() - usable size of a kmalloc allocation.
 * @s: segment.  @off: the allocation.  @size: its usable size.
 *
 * Does not sleep.
 * Return: 0 or -EINVAL.
 */
int sp_ksize(struct sp_seg *s, sp_off_t off, uint64_t *size)
{
	struct sp_cache *c = NULL; /* set whenever classify() succeeds */
	uint32_t head;
	int rc = classify(s, off, &c, &head);

	if (rc)
		return rc;
	*size = c ? c->obj_size : (uint64_t)SP_PAGE_SIZE << SP_PG_ORDER(s->pages[head].info);
	return 0;
}
