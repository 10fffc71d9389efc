/* SPDX-License-Identifier: MIT */
/*
 * malloc.c - general allocations (the core's kmalloc), offsets and
 * pointers, and the segment's statistics.  All in process, no daemon.
 *
 * shmp_malloc() is sp_kmalloc() tagged with this session's slot: size
 * classes of 8 .. 8192 bytes from slab caches, whole buddy blocks above.
 * shmp_free() does what sp_kfree() does, but refuses memory the segment
 * uses for its own metadata (owner tag SP_OWNER_INTERNAL: pool reserve
 * arrays, cache templates), which the core's sp_kfree() must be able to
 * free and an application never may.  The check and the free happen under
 * the same lock (the class cache's, or the buddy lock for large blocks), so
 * a refused free changes nothing.
 *
 * The size classes go through the calling thread's magazines first
 * (tcache.c): shmp_free() finds the class from the page the pointer lies
 * in, and a pointer the magazine path refuses takes the locked path,
 * which says why.  The fast paths read the classes' geometry from the
 * session's private copy, which its first shmp_malloc or shmp_free takes
 * (slow path, client.c).
 *
 * The locked path (no magazines, or what they refuse) passes the core the
 * class's checked snapshot that the session keeps (ksnap(), taken with the
 * fast path's copies by the same first call), not one taken per call:
 * sp_cache_geo_locked() uses it while the class keeps its generation,
 * which a kmalloc class always does.
 *
 * Offsets: every process maps the segment at its own address; shmp_off()
 * and shmp_ptr() convert, and refuse anything outside [1, size).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/*
 * The session's checked snapshot of kmalloc class @cls (shmp__kgeo_take()),
 * or NULL before it is taken (the core then takes one per call).  Does not
 * sleep.
 */
static inline const struct sp_cache *ksnaps(const shmp_client *c)
{
	return __atomic_load_n(&c->ksnap_ok, __ATOMIC_ACQUIRE) ? c->ksnap : NULL;
}

/* The one of class @cls, or NULL. */
static inline const struct sp_cache *ksnap(const shmp_client *c, uint32_t cls)
{
	const struct sp_cache *v = ksnaps(c);

	return sp_likely(v && cls < SP_NR_KMALLOC) ? &v[cls] : NULL;
}

static __attribute__((noinline)) void *malloc_slow(shmp_client *c, size_t size)
{
	sp_off_t off;
	int rc = shmp__usable(c);

	if (sp_unlikely(rc))
		return shmp__fail_ptr(rc);
	if (sp_unlikely(!__atomic_load_n(&c->kgeo_taken, __ATOMIC_RELAXED)))
		shmp__kgeo_take(c); /* the next call takes the fast path */
	if (sp_unlikely(!size))
		return shmp__fail_ptr(sp_err(-EINVAL, "shmp_malloc of 0 bytes"));
	if (sp_likely(size <= SP_KMALLOC_MAX && c->magazines) &&
	    shmp__mag_alloc(c, &sp_caches(c->seg)[sp_kmalloc_class(size)], &off) == 0)
		return c->seg->base + off;
	rc = sp_kmalloc_geo(c->seg, size, ksnaps(c), &off);
	if (sp_unlikely(rc))
		return shmp__fail_ptr(rc);
	return sp_ptr(c->seg, off);
}

void *shmp_malloc(shmp_client *c, size_t size)
{
	const struct sp_mag_geo *g;
	struct sp_seg *s;
	struct sp_mag *m;
	sp_off_t off;

	/* the class's bound magazine through the session's private geometry */
	if (sp_likely(c && shmp__kfast(c) && size - 1 < SP_KMALLOC_MAX)) {
		g = &c->kgeo[sp_kmalloc_index(size)];
		if ((m = shmp__fast_mag(c, g, &s)) &&
		    sp_likely(sp_mag_take(s, g, m, &off) == SP_MAG_TAKEN))
			return g->base + off;
	}
	return malloc_slow(c, size);
}

void *shmp_calloc(shmp_client *c, size_t n, size_t size)
{
	void *p;

	if (size && n > SIZE_MAX / size)
		return shmp__fail_ptr(sp_err(-ENOMEM, "shmp_calloc: %zu * %zu bytes overflows", n,
					     size));
	p = shmp_malloc(c, n * size);
	if (p)
		memset(p, 0, n * size);
	return p;
}

/*
 * Find the kmalloc class cache (*c) or the large block (*c = NULL, *head)
 * holding @off.  Unlocked: the caller re-checks under the lock.
 */
static int kmalloc_locate(struct sp_seg *s, sp_off_t off, struct sp_cache **c, uint32_t *head)
{
	uint32_t pfn, info;

	if (!off || !sp_off_pfn(s, off, &pfn) || sp_block_head(s, pfn, head))
		return sp_err(-EINVAL, "offset %#llx is not a shmp_malloc allocation",
			      (unsigned long long)off);
	info = s->pages[*head].info;
	if (SP_PG_KIND(info) == SP_KIND_LARGE) {
		*c = NULL;
		return 0;
	}
	if (SP_PG_KIND(info) == SP_KIND_SLAB && s->pages[*head].owner < s->geo.nr_kmalloc) {
		*c = &sp_caches(s)[s->pages[*head].owner];
		return 0;
	}
	return sp_err(-EINVAL, "offset %#llx is not a shmp_malloc allocation (pool or cache "
			       "memory?)",
		      (unsigned long long)off);
}

/*
 * Under the lock that protects it: is @off a live user allocation?  Its
 * usable size in *@size.  With @do_free, free it.
 */
static int kmalloc_op(shmp_client *cl, sp_off_t off, bool do_free, uint64_t *size)
{
	struct sp_seg *s = cl->seg;
	struct sp_cache *c = NULL;
	uint32_t head = 0, info;
	int rc = kmalloc_locate(s, off, &c, &head);

	if (rc)
		return rc;
	if (c) {
		const struct sp_cache *mine = ksnap(cl, (uint32_t)(c - sp_caches(s))), *g;
		struct sp_cache buf;
		struct sp_slab *slab;
		uint32_t idx;
		uint16_t tag;

		rc = sp_cache_lock(s, c);
		if (rc)
			return rc;
		/* located in a checked private geometry, once: the free uses it */
		rc = sp_cache_geo_locate(s, c, mine, &buf, &g, off, &slab, &idx);
		if (!rc) {
			tag = sp_slab_owners(g, slab)[idx];
			if (!(slab->bitmap[idx / 64] >> (idx % 64) & 1) || tag == SP_OWNER_NONE ||
			    sp_owner_is_mag(tag))
				rc = sp_err(-EINVAL, "%s object at %#llx is not allocated "
						     "(double free?)",
					    c->name, (unsigned long long)off);
			else if (tag == SP_OWNER_INTERNAL)
				rc = sp_err(-EINVAL, "offset %#llx is segment metadata, not a "
						     "shmp_malloc allocation",
					    (unsigned long long)off);
			else if (tag == SP_OWNER_RESERVE) /* a kmalloc-backed pool's */
				rc = sp_err(-EINVAL, "offset %#llx is in a pool's reserve, not a "
						     "shmp_malloc allocation",
					    (unsigned long long)off);
		}
		if (!rc) {
			*size = g->obj_size;
			if (do_free) { /* what sp_cache_free_locked() checks was checked */
				sp_cache_free_obj_locked(s, c, g, slab, idx);
				c->nr_free++;
			}
		}
		sp_cache_unlock(c);
		return rc;
	}
	rc = sp_buddy_lock(s);
	if (rc)
		return rc;
	info = s->pages[head].info;
	if (SP_PG_STATE(info) != SP_PG_ALLOC || SP_PG_KIND(info) != SP_KIND_LARGE ||
	    sp_pfn_off(s, head) != off)
		rc = sp_err(-EINVAL, "offset %#llx is not the start of a live large allocation "
				     "(double free, or a pointer into its middle?)",
			    (unsigned long long)off);
	else if (s->pages[head].slot == SP_OWNER_INTERNAL)
		rc = sp_err(-EINVAL, "offset %#llx is segment metadata, not a shmp_malloc "
				     "allocation",
			    (unsigned long long)off);
	*size = (uint64_t)SP_PAGE_SIZE << SP_PG_ORDER(info);
	if (!rc && do_free)
		sp_buddy_free_locked(s, head);
	sp_buddy_unlock(s);
	return rc;
}

/*
 * The kmalloc class of the block page @pfn lies in (a tail page names its
 * head), or UINT32_MAX.  Unlocked reads of shared page records, each once:
 * the magazine that gets the object checks it again and refuses a wrong
 * class.
 */
static inline uint32_t page_class(const struct sp_page *pages, uint32_t nr_pages,
				  uint32_t nr_classes, uint32_t pfn)
{
	uint32_t info = pages[pfn].info, head = info == SP_PG_TAIL ? pages[pfn].owner : pfn, cls;

	if (head >= nr_pages)
		return UINT32_MAX;
	info = pages[head].info;
	cls = pages[head].owner;
	return SP_PG_KIND(info) == SP_KIND_SLAB && cls < nr_classes ? cls : UINT32_MAX;
}

static __attribute__((noinline)) int free_slow(shmp_client *c, void *p)
{
	uint64_t size;
	sp_off_t off;
	int rc = shmp__usable(c);

	if (sp_unlikely(rc))
		return rc;
	if (sp_unlikely(!__atomic_load_n(&c->kgeo_taken, __ATOMIC_RELAXED)))
		shmp__kgeo_take(c);
	if (!p)
		return 0;
	off = sp_off(c->seg, p);
	if (sp_unlikely(!off))
		return sp_err(-EINVAL, "shmp_free: %p is not inside the segment", p);
	if (sp_likely(c->magazines)) {
		struct sp_seg *s = c->seg;
		uint32_t pfn, cls;

		if (sp_off_pfn(s, off, &pfn)) {
			cls = page_class(s->pages, s->geo.nr_pages, s->geo.nr_kmalloc, pfn);
			if (cls != UINT32_MAX && shmp__mag_free(c, &sp_caches(s)[cls], off) == 0)
				return 0;
		}
	}
	return kmalloc_op(c, off, true, &size);
}

int shmp_free_checked(shmp_client *c, void *p)
{
	const struct sp_mag_geo *g;
	struct sp_seg *s;
	struct sp_mag *m;
	uint64_t rel;
	uint32_t pfn, cls;

	/* the class's private geometry checks the object again, the head page too */
	if (sp_likely(c && shmp__kfast(c))) {
		g = &c->kgeo[0];
		rel = (uintptr_t)p - (uintptr_t)g->data;
		if (sp_likely(rel < g->data_size)) {
			pfn = (uint32_t)(rel >> SP_PAGE_SHIFT);
			cls = page_class(g->pages, (uint32_t)(g->data_size >> SP_PAGE_SHIFT),
					 SP_NR_KMALLOC, pfn);
			if (sp_likely(cls != UINT32_MAX)) {
				g = &c->kgeo[cls];
				if ((m = shmp__fast_mag(c, g, &s)) &&
				    sp_likely(sp_mag_put(s, g, m, rel + g->data_off) == SP_MAG_PUSHED))
					return 0;
			}
		}
	}
	return free_slow(c, p);
}

void shmp_free(shmp_client *c, void *p)
{
	int rc = shmp_free_checked(c, p);

	if (rc)
		errno = -rc;
}

size_t shmp_malloc_usable_size(shmp_client *c, const void *p)
{
	uint64_t size = 0;
	sp_off_t off;
	int rc = shmp__usable(c);

	if (rc) {
		errno = -rc;
		return 0;
	}
	off = sp_off(c->seg, p);
	if (!off) {
		errno = EINVAL;
		sp_err(-EINVAL, "%p is not inside the segment", p);
		return 0;
	}
	rc = kmalloc_op(c, off, false, &size);
	if (rc) {
		errno = -rc;
		return 0;
	}
	return (size_t)size;
}

shmp_off_t shmp_off(shmp_client *c, const void *p)
{
	sp_off_t off;
	int rc = shmp__usable(c);

	if (sp_unlikely(rc)) {
		errno = -rc;
		return 0;
	}
	if (!p)
		return 0;
	off = sp_off(c->seg, p);
	if (sp_unlikely(!off)) {
		errno = EINVAL;
		sp_err(-EINVAL, "%p is not inside the segment", p);
	}
	return off;
}

void *shmp_ptr(shmp_client *c, shmp_off_t off)
{
	int rc = shmp__usable(c);

	if (sp_unlikely(rc))
		return shmp__fail_ptr(rc);
	if (!off)
		return NULL;
	if (sp_unlikely(off >= c->seg->size))
		return shmp__fail_ptr(sp_err(-EINVAL, "offset %#llx is outside the %llu-byte segment",
					     (unsigned long long)off,
					     (unsigned long long)c->seg->size));
	return c->seg->base + off;
}

int shmp_segment_stats(shmp_client *c, struct shmp_segment_stats *st)
{
	const struct sp_header *h, *g;
	int rc = shmp__usable(c);

	if (rc)
		return rc;
	if (!st)
		return sp_err(-EINVAL, "NULL stats pointer");
	h = c->seg->hdr;
	g = &c->seg->geo;
	memset(st, 0, sizeof(*st));
	st->size = c->seg->size;
	st->page_size = SP_PAGE_SIZE;
	st->slot = c->seg->slot;
	st->nr_pages = g->nr_pages;
	st->free_pages = __atomic_load_n(&h->buddy.free_pages, __ATOMIC_RELAXED);
	st->max_alloc = (uint64_t)SP_PAGE_SIZE << g->max_order;
	st->connected = __atomic_load_n(&c->sock, __ATOMIC_RELAXED) >= 0;
	snprintf(st->name, sizeof(st->name), "%s", c->seg_name);
	return 0;
}
