/* SPDX-License-Identifier: MIT */
/*
 * test-slab.c - named slab caches (kmem_cache): geometry and slabinfo
 * counters, growing and shrinking back to the buddy allocator, colouring,
 * alignment, init templates, destroy, name and size validation, the POISON
 * and REDZONE debug flags, refused frees (double, foreign, mid-object),
 * objects shared between processes, and a caller's kept snapshot of the
 * geometry (used only while the cache keeps its generation); the
 * single-object locked alloc (hint, corrupted lists) and the free's locate
 * by buddy alignment.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test-util.h"

#define NORD (SP_MAX_ORDER_LIMIT + 1)

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

static struct sp_cache *mkcache(struct sp_seg *s, const char *name, uint64_t size,
				uint64_t align, uint32_t flags, const void *tmpl)
{
	uint32_t id = UINT32_MAX, id2 = UINT32_MAX;
	struct sp_cache *c;

	TU_ASSERT_OK(sp_cache_create(s, name, size, align, flags, tmpl, &id));
	TU_ASSERT_OK(sp_cache_lookup(s, name, &id2));
	assert_int_equal(id, id2);
	assert_true(id >= s->hdr->nr_kmalloc && id < s->hdr->nr_kmalloc + s->hdr->max_caches);
	c = sp_cache_get(s, id);
	assert_non_null(c);
	assert_string_equal(c->name, name);
	assert_int_equal(c->obj_size, size);
	assert_int_equal(c->flags, flags);
	return c;
}

/* The geometry follows from layout.h: header, bitmap, owner tags, objects. */
static void assert_geometry(struct sp_seg *s, struct sp_cache *c)
{
	uint64_t bytes = (uint64_t)SP_PAGE_SIZE << c->order, n = c->objperslab;
	uint64_t meta = sizeof(struct sp_slab) + 8 * ((n + 63) / 64) + 2 * n;
	uint64_t meta1 = sizeof(struct sp_slab) + 8 * ((n + 64) / 64) + 2 * (n + 1);
	uint64_t want_stride =
		align_up(c->obj_size + ((c->flags & SP_CACHE_REDZONE) ? SP_REDZONE_SIZE : 0),
			 c->align);

	assert_true(n >= 1);
	assert_true(c->order <= s->hdr->max_order);
	assert_int_equal(c->stride, want_stride);
	assert_int_equal(c->bitmap_words, (n + 63) / 64);
	assert_int_equal(c->obj_start, align_up(meta, c->align));
	/* objects and every colour fit the slab, and one more object would not */
	assert_true(c->obj_start + n * c->stride + (uint64_t)(c->colour_num - 1) * c->colour_off <=
		    bytes);
	assert_true(align_up(meta1, c->align) + (n + 1) * c->stride > bytes);
	assert_int_equal(c->colour_off, c->align > 64 ? c->align : 64);
	assert_int_equal(c->colour_num, (bytes - c->obj_start - n * c->stride) / c->colour_off + 1);
}

/* Where an object lives: its slab head pfn and index. */
static void locate(struct sp_seg *s, struct sp_cache *c, sp_off_t off, uint32_t *pfn,
		   uint32_t *idx)
{
	struct sp_slab *slab = NULL;

	TU_ASSERT_OK(sp_cache_obj_locate(s, c, off, &slab, idx));
	*pfn = (uint32_t)(((uint8_t *)slab - s->data) >> SP_PAGE_SHIFT);
}

static uint16_t owner_of(struct sp_seg *s, struct sp_cache *c, sp_off_t off)
{
	uint32_t pfn, idx;

	locate(s, c, off, &pfn, &idx);
	return sp_slab_owners(c, sp_slab_at(s, c, pfn))[idx];
}

static uint8_t pbyte(uint64_t seed, uint64_t i)
{
	uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ULL + i * 0x2545f4914f6cdd1dULL;

	return (uint8_t)(x >> 56);
}

static void fill(struct sp_seg *s, sp_off_t off, uint64_t len, uint64_t seed)
{
	uint8_t *p = sp_ptr(s, off);

	for (uint64_t i = 0; i < len; i++)
		p[i] = pbyte(seed, i);
}

static void assert_filled(struct sp_seg *s, sp_off_t off, uint64_t len, uint64_t seed)
{
	const uint8_t *p = sp_ptr(s, off);

	for (uint64_t i = 0; i < len; i++)
		if (p[i] != pbyte(seed, i))
			fail_msg("object %#llx: byte %llu overwritten", (unsigned long long)off,
				 (unsigned long long)i);
}

/* Counters of a cache that a refused operation must not change. */
struct cstate {
	uint64_t active, total, nr_alloc, nr_free, bad;
	uint32_t nr_slabs, nr_list[4];
};

static void cstate_take(struct sp_cache *c, struct cstate *x)
{
	x->active = c->active_objs;
	x->total = c->total_objs;
	x->nr_alloc = c->nr_alloc;
	x->nr_free = c->nr_free;
	x->bad = c->nr_bad_free;
	x->nr_slabs = c->nr_slabs;
	memcpy(x->nr_list, c->nr_list, sizeof(x->nr_list));
}

static void assert_cstate(struct sp_cache *c, const struct cstate *x, uint64_t extra_bad)
{
	assert_int_equal(c->active_objs, x->active);
	assert_int_equal(c->total_objs, x->total);
	assert_int_equal(c->nr_alloc, x->nr_alloc);
	assert_int_equal(c->nr_free, x->nr_free);
	assert_int_equal(c->nr_slabs, x->nr_slabs);
	for (unsigned l = 0; l < 4; l++)
		assert_int_equal(c->nr_list[l], x->nr_list[l]);
	assert_int_equal(c->nr_bad_free, x->bad + extra_bad);
}

static void assert_buddy_vector(struct sp_seg *s, const uint32_t *nr_free, uint64_t free_pages)
{
	for (unsigned o = 0; o < NORD; o++)
		if (s->hdr->buddy.nr_free[o] != nr_free[o])
			fail_msg("buddy nr_free[%u] is %u, expected %u", o,
				 s->hdr->buddy.nr_free[o], nr_free[o]);
	assert_int_equal(s->hdr->buddy.free_pages, free_pages);
}

/* slabinfo of a cache holding @active objects on slabs filled in order */
static void assert_counters(struct sp_cache *c, uint64_t active, uint32_t slabs)
{
	uint32_t full = (uint32_t)(active / c->objperslab);
	uint32_t partial = active % c->objperslab ? 1 : 0;

	assert_int_equal(c->active_objs, active);
	assert_int_equal(c->nr_slabs, slabs);
	assert_int_equal(c->total_objs, (uint64_t)slabs * c->objperslab);
	assert_int_equal(c->nr_list[SP_LIST_FULL], full);
	assert_int_equal(c->nr_list[SP_LIST_PARTIAL], partial);
	assert_int_equal(c->nr_list[SP_LIST_EMPTY], slabs - full - partial);
}

/* ---- tests ------------------------------------------------------------- */

static void fill_free_shrink(void **state)
{
	static const uint64_t sizes[] = { 40, 100, 1000, 3000, 20000 };
	struct sp_seg *s = tu_seg_new(32u << 20);

	for (unsigned t = 0; t < sizeof(sizes) / sizeof(sizes[0]); t++) {
		uint32_t nr_free0[NORD];
		uint64_t free0 = s->hdr->buddy.free_pages, n;
		struct sp_cache *c;
		sp_off_t *obj;
		uint32_t slabs;
		char name[32];

		memcpy(nr_free0, s->hdr->buddy.nr_free, sizeof(nr_free0));
		snprintf(name, sizeof(name), "fill-%llu", (unsigned long long)sizes[t]);
		c = mkcache(s, name, sizes[t], 0, 0, NULL);
		assert_geometry(s, c);
		assert_int_equal(c->align, 8);
		assert_counters(c, 0, 0);
		slabs = 4;
		n = (uint64_t)(slabs - 1) * c->objperslab + (c->objperslab + 1) / 2;
		obj = calloc(n, sizeof(*obj));
		assert_non_null(obj);
		for (uint64_t i = 0; i < n; i++) {
			TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &obj[i]));
			assert_int_equal(c->active_objs, i + 1);
			assert_int_equal(c->nr_slabs, i / c->objperslab + 1);
			assert_int_equal(owner_of(s, c, obj[i]), s->owner);
			fill(s, obj[i], c->obj_size, t * 100000 + i);
		}
		assert_counters(c, n, slabs);
		assert_int_equal(c->nr_alloc, n);
		assert_int_equal(c->nr_grow, slabs);
		/* the slabs came from the buddy allocator */
		assert_int_equal(s->hdr->buddy.free_pages, free0 - ((uint64_t)slabs << c->order));
		tu_check_clean(s);
		for (uint64_t i = 0; i < n; i++)
			assert_filled(s, obj[i], c->obj_size, t * 100000 + i);
		/* objects are distinct: index and slab differ pairwise (sort-free check) */
		for (uint64_t i = 1; i < n; i++)
			assert_true(obj[i] != obj[i - 1]);

		/* free the odd ones, then the rest */
		for (uint64_t i = 1; i < n; i += 2)
			TU_ASSERT_OK(sp_cache_free(s, c, obj[i]));
		assert_int_equal(c->active_objs, n - n / 2);
		tu_check_clean(s);
		for (uint64_t i = 0; i < n; i += 2)
			assert_filled(s, obj[i], c->obj_size, t * 100000 + i);
		for (uint64_t i = 0; i < n; i += 2)
			TU_ASSERT_OK(sp_cache_free(s, c, obj[i]));
		assert_int_equal(c->active_objs, 0);
		assert_int_equal(c->nr_free, n);
		/* one empty slab stays cached, the others went back */
		assert_int_equal(c->nr_slabs, 1);
		assert_int_equal(c->nr_list[SP_LIST_EMPTY], 1);
		assert_int_equal(s->hdr->buddy.free_pages, free0 - (1ull << c->order));
		assert_int_equal(sp_cache_shrink(s, c), 1);
		assert_counters(c, 0, 0);
		assert_int_equal(sp_cache_shrink(s, c), 0);
		assert_buddy_vector(s, nr_free0, free0);
		tu_check_clean(s);
		/* usable again after shrinking */
		TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &obj[0]));
		assert_counters(c, 1, 1);
		TU_ASSERT_OK(sp_cache_free(s, c, obj[0]));
		TU_ASSERT_OK(sp_cache_destroy(s, c->id));
		assert_buddy_vector(s, nr_free0, free0);
		free(obj);
	}
	tu_check_clean(s);
	tu_seg_free(s);
}

/* Objects freed from a full slab are handed out again, whatever their index. */
static void refill_full_slab(void **state)
{
	static const uint64_t sizes[] = { 8, 40, 48, 100, 200, 5000 };
	struct sp_seg *s = tu_seg_new(32u << 20);
	uint64_t rng = 7;

	for (unsigned t = 0; t < sizeof(sizes) / sizeof(sizes[0]); t++) {
		struct sp_cache *c;
		sp_off_t *obj, *freed;
		uint32_t n, nfree;
		char name[32];

		snprintf(name, sizeof(name), "refill-%llu", (unsigned long long)sizes[t]);
		c = mkcache(s, name, sizes[t], 0, 0, NULL);
		n = c->objperslab;
		obj = calloc(n, sizeof(*obj));
		freed = calloc(n, sizeof(*freed));
		assert_non_null(obj);
		assert_non_null(freed);
		for (uint32_t i = 0; i < n; i++)
			TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &obj[i]));
		assert_counters(c, n, 1);
		for (int round = 0; round < 4; round++) {
			/* round 0: the first object only; then random ones */
			nfree = round == 0 ? 1
					   : 1 + (uint32_t)(tu_rand(&rng) % (n - 1 < 70 ? n - 1 : 70));
			for (uint32_t k = 0; k < nfree; k++) {
				uint32_t i = round == 0 ? 0 : (uint32_t)(tu_rand(&rng) % n);

				while (!obj[i])
					i = (i + 1) % n;
				freed[k] = obj[i];
				obj[i] = 0;
				TU_ASSERT_OK(sp_cache_free(s, c, freed[k]));
			}
			assert_int_equal(c->active_objs, n - nfree);
			assert_int_equal(c->nr_list[SP_LIST_PARTIAL], 1);
			/* the freed objects come back, from the same slab */
			for (uint32_t k = 0; k < nfree; k++) {
				sp_off_t off = 0;
				uint32_t j;

				TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &off));
				for (j = 0; j < nfree && freed[j] != off; j++)
					;
				if (j == nfree)
					fail_msg("cache %s: got %#llx, not one of the freed objects",
						 name, (unsigned long long)off);
				freed[j] = 1; /* taken */
				for (j = 0; j < n && obj[j]; j++)
					;
				obj[j] = off;
			}
			assert_counters(c, n, 1);
			tu_check_clean(s);
		}
		for (uint32_t i = 0; i < n; i++)
			TU_ASSERT_OK(sp_cache_free(s, c, obj[i]));
		TU_ASSERT_OK(sp_cache_destroy(s, c->id));
		free(obj);
		free(freed);
	}
	tu_check_clean(s);
	tu_seg_free(s);
}

static void colouring(void **state)
{
	static const struct {
		uint64_t size, align;
	} cases[] = { { 5000, 0 }, { 3000, 0 }, { 1000, 256 }, { 72, 0 } };
	struct sp_seg *s = tu_seg_new(32u << 20);

	for (unsigned t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
		struct sp_cache *c;
		uint32_t nslabs, prev_rel = UINT32_MAX;
		sp_off_t *obj;
		uint64_t n;
		char name[32];

		snprintf(name, sizeof(name), "colour-%u", t);
		c = mkcache(s, name, cases[t].size, cases[t].align, 0, NULL);
		assert_geometry(s, c);
		if (c->colour_num < 2)
			fail_msg("%s: expected several colours, got %u", name, c->colour_num);
		nslabs = c->colour_num + 3;
		n = (uint64_t)nslabs * c->objperslab;
		obj = calloc(n, sizeof(*obj));
		assert_non_null(obj);
		for (uint64_t i = 0; i < n; i++)
			TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &obj[i]));
		assert_counters(c, n, nslabs);
		for (uint32_t k = 0; k < nslabs; k++) {
			uint64_t first = k * (uint64_t)c->objperslab;
			uint32_t pfn = 0, idx = 0, rel;

			/* every object of slab k sits at its colour plus index * stride */
			for (uint32_t i = 0; i < c->objperslab; i++) {
				uint32_t p2;

				locate(s, c, obj[first + i], &p2, &idx);
				if (i == 0)
					pfn = p2;
				assert_int_equal(p2, pfn);
				assert_int_equal(idx, i);
				rel = (uint32_t)(obj[first + i] - sp_pfn_off(s, pfn));
				assert_int_equal(rel, c->obj_start + (k % c->colour_num) * c->colour_off +
							      (uint64_t)i * c->stride);
			}
			rel = (uint32_t)(obj[first] - sp_pfn_off(s, pfn));
			assert_int_not_equal(rel, prev_rel); /* consecutive slabs differ */
			assert_int_equal(sp_slab_at(s, c, pfn)->colour,
					 (k % c->colour_num) * c->colour_off);
			prev_rel = rel;
		}
		tu_check_clean(s);
		for (uint64_t i = 0; i < n; i++)
			TU_ASSERT_OK(sp_cache_free(s, c, obj[i]));
		TU_ASSERT_OK(sp_cache_destroy(s, c->id));
		free(obj);
	}
	tu_check_clean(s);
	tu_seg_free(s);
}

static void alignment(void **state)
{
	static const uint64_t sizes[] = { 1, 24, 100, 1000, 5000 };
	static const struct {
		uint64_t align;
		uint32_t flags;
		uint64_t want;
	} al[] = {
		{ 0, 0, 8 },	 { 1, 0, 8 },	  { 4, 0, 8 },	  { 8, 0, 8 },
		{ 64, 0, 64 },	 { 256, 0, 256 }, { 4096, 0, 4096 },
		{ 0, SP_CACHE_HWCACHE_ALIGN, 64 }, { 16, SP_CACHE_HWCACHE_ALIGN, 64 },
		{ 256, SP_CACHE_HWCACHE_ALIGN, 256 },
	};
	struct sp_seg *s = tu_seg_new(64u << 20);
	unsigned seq = 0;

	for (unsigned a = 0; a < sizeof(al) / sizeof(al[0]); a++) {
		for (unsigned t = 0; t < sizeof(sizes) / sizeof(sizes[0]); t++) {
			struct sp_cache *c;
			sp_off_t *obj;
			uint64_t n;
			char name[40];

			snprintf(name, sizeof(name), "align-%u", seq++);
			c = mkcache(s, name, sizes[t], al[a].align, al[a].flags, NULL);
			assert_int_equal(c->align, al[a].want);
			assert_geometry(s, c);
			n = 2 * (uint64_t)c->objperslab + 1;
			if (n > 200)
				n = 200;
			obj = calloc(n, sizeof(*obj));
			assert_non_null(obj);
			for (uint64_t i = 0; i < n; i++) {
				TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &obj[i]));
				if ((obj[i] - s->hdr->data.off) % al[a].want ||
				    (uintptr_t)sp_ptr(s, obj[i]) % al[a].want)
					fail_msg("%s (size %llu, align %llu): object %#llx misaligned",
						 name, (unsigned long long)sizes[t],
						 (unsigned long long)al[a].want,
						 (unsigned long long)obj[i]);
				fill(s, obj[i], c->obj_size, seq * 1000 + i);
			}
			for (uint64_t i = 0; i < n; i++)
				assert_filled(s, obj[i], c->obj_size, seq * 1000 + i);
			tu_check_clean(s);
			for (uint64_t i = 0; i < n; i++)
				TU_ASSERT_OK(sp_cache_free(s, c, obj[i]));
			TU_ASSERT_OK(sp_cache_destroy(s, c->id));
			free(obj);
		}
	}
	tu_check_clean(s);
	tu_seg_free(s);
}

static void bad_geometry(void **state)
{
	struct sp_seg_params p;
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint32_t live = s->hdr->nr_live_caches, id = 12345;
	uint64_t kact = sp_caches(s)[sp_kmalloc_class(100)].active_objs;
	static const uint64_t bad_sizes[] = { 0, (256u << 10) + 1, 1u << 20, UINT64_MAX,
					      (uint64_t)UINT32_MAX + 1 };
	static const uint64_t bad_align[] = { 3, 6, 12, 100, 8192, 1u << 20, UINT64_MAX };
	uint8_t tmpl[100] = { 0 };

	for (unsigned i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		if (sp_cache_create(s, "sz", bad_sizes[i], 0, 0, NULL, &id) != -EINVAL)
			fail_msg("object size %llu was not refused",
				 (unsigned long long)bad_sizes[i]);
		assert_true(strlen(sp_errmsg()) > 0);
	}
	for (unsigned i = 0; i < sizeof(bad_align) / sizeof(bad_align[0]); i++) {
		if (sp_cache_create(s, "al", 100, bad_align[i], 0, tmpl, &id) != -EINVAL)
			fail_msg("alignment %llu was not refused", (unsigned long long)bad_align[i]);
		assert_non_null(strstr(sp_errmsg(), "alignment"));
	}
	/* flags a user may not set */
	assert_int_equal(sp_cache_create(s, "fl", 100, 0, SP_CACHE_KMALLOC, NULL, &id), -EINVAL);
	assert_int_equal(sp_cache_create(s, "fl", 100, 0, SP_CACHE_ANON, NULL, &id), -EINVAL);
	assert_int_equal(sp_cache_create(s, "fl", 100, 0, 0x80000000u, NULL, &id), -EINVAL);
	assert_int_equal(id, 12345);
	/* nothing was registered or leaked */
	assert_int_equal(s->hdr->nr_live_caches, live);
	assert_int_equal(sp_cache_lookup(s, "sz", &id), -ENOENT);
	assert_int_equal(sp_cache_lookup(s, "al", &id), -ENOENT);
	assert_int_equal(sp_cache_lookup(s, "fl", &id), -ENOENT);
	assert_int_equal(sp_caches(s)[sp_kmalloc_class(100)].active_objs, kact);
	/* the limits themselves are fine */
	TU_ASSERT_OK(sp_cache_create(s, "one", 1, 0, 0, NULL, &id));
	TU_ASSERT_OK(sp_cache_destroy(s, id));
	TU_ASSERT_OK(sp_cache_create(s, "max", 256u << 10, 0, 0, NULL, &id));
	{
		struct sp_cache *c = sp_cache_get(s, id);
		sp_off_t off;

		assert_non_null(c);
		assert_geometry(s, c);
		TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &off));
		fill(s, off, c->obj_size, 5);
		assert_filled(s, off, c->obj_size, 5);
		TU_ASSERT_OK(sp_cache_free(s, c, off));
	}
	TU_ASSERT_OK(sp_cache_destroy(s, id));
	tu_check_clean(s);
	tu_seg_free(s);

	/* a full cache table */
	sp_seg_params_default(&p);
	p.size = 8u << 20;
	p.max_caches = 2;
	s = tu_seg_new_params(&p);
	TU_ASSERT_OK(sp_cache_create(s, "t1", 64, 0, 0, NULL, &id));
	TU_ASSERT_OK(sp_cache_create(s, "t2", 64, 0, 0, NULL, &id));
	assert_int_equal(sp_cache_create(s, "t3", 64, 0, 0, NULL, &id), -ENFILE);
	TU_ASSERT_OK(sp_cache_destroy(s, id));
	TU_ASSERT_OK(sp_cache_create(s, "t3", 64, 0, 0, NULL, &id));
	tu_check_clean(s);
	tu_seg_free(s);
}

static void names(void **state)
{
	struct sp_seg *s = tu_seg_new(8u << 20);
	static const char *const bad[] = { "", "a b", "a/b", "tab\t", "new\nline", "colon:x",
					   "caf\xc3\xa9", "star*", "..%", "semi;" };
	char n63[64], n64[65], n200[201];
	uint32_t id = 777, id2, live = s->hdr->nr_live_caches;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (sp_cache_create(s, bad[i], 64, 0, 0, NULL, &id) != -EINVAL)
			fail_msg("name '%s' was not refused with -EINVAL", bad[i]);
		assert_true(strlen(sp_errmsg()) > 0);
		assert_int_equal(sp_cache_lookup(s, bad[i], &id), -EINVAL);
	}
	assert_int_equal(sp_cache_create(s, NULL, 64, 0, 0, NULL, &id), -EINVAL);
	memset(n63, 'x', 63);
	n63[63] = 0;
	memset(n64, 'y', 64);
	n64[64] = 0;
	memset(n200, 'z', 200);
	n200[200] = 0;
	assert_int_equal(sp_cache_create(s, n64, 64, 0, 0, NULL, &id), -ENAMETOOLONG);
	assert_int_equal(sp_cache_create(s, n200, 64, 0, 0, NULL, &id), -ENAMETOOLONG);
	assert_int_equal(id, 777);
	assert_int_equal(s->hdr->nr_live_caches, live);
	/* 63 characters and every allowed character are fine */
	mkcache(s, n63, 64, 0, 0, NULL);
	mkcache(s, "AZaz09._-", 64, 0, 0, NULL);
	assert_int_equal(s->hdr->nr_live_caches, live + 2);
	/* duplicates are refused, whatever the geometry */
	TU_ASSERT_OK(sp_cache_lookup(s, n63, &id));
	assert_int_equal(sp_cache_create(s, n63, 64, 0, 0, NULL, &id2), -EEXIST);
	assert_int_equal(sp_cache_create(s, n63, 1000, 64, SP_CACHE_POISON, NULL, &id2), -EEXIST);
	assert_non_null(strstr(sp_errmsg(), n63));
	assert_int_equal(sp_cache_create(s, "AZaz09._-", 8, 0, 0, NULL, &id2), -EEXIST);
	assert_int_equal(s->hdr->nr_live_caches, live + 2);
	/* names are case sensitive and not prefixes */
	assert_int_equal(sp_cache_lookup(s, "azaz09._-", &id2), -ENOENT);
	assert_int_equal(sp_cache_lookup(s, "AZaz09._", &id2), -ENOENT);
	TU_ASSERT_OK(sp_cache_lookup(s, n63, &id2));
	assert_int_equal(id, id2);
	tu_check_clean(s);
	tu_seg_free(s);
}

static void destroy(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint8_t tmpl[300];
	uint32_t nr_free0[NORD], id, id2, live = s->hdr->nr_live_caches;
	uint64_t free0 = s->hdr->buddy.free_pages;
	uint64_t kact = sp_caches(s)[sp_kmalloc_class(300)].active_objs;
	struct sp_cache *c;
	struct cstate cs;
	sp_off_t obj[50], off;
	unsigned n = 50;

	memcpy(nr_free0, s->hdr->buddy.nr_free, sizeof(nr_free0));
	memset(tmpl, 0xa5, sizeof(tmpl));
	c = mkcache(s, "doomed", 300, 0, 0, tmpl);
	id = c->id;
	assert_int_equal(s->hdr->nr_live_caches, live + 1);
	for (unsigned i = 0; i < n; i++) {
		TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &obj[i]));
		fill(s, obj[i], 300, i);
	}
	/* live objects: -EBUSY and nothing changes */
	cstate_take(c, &cs);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(sp_cache_destroy(s, id), -EBUSY);
		assert_non_null(strstr(sp_errmsg(), "doomed"));
		assert_cstate(c, &cs, 0);
		assert_ptr_equal(sp_cache_get(s, id), c);
		TU_ASSERT_OK(sp_cache_lookup(s, "doomed", &id2));
		assert_int_equal(id2, id);
		assert_filled(s, obj[i], 300, i);
		TU_ASSERT_OK(sp_cache_free(s, c, obj[i]));
		cstate_take(c, &cs);
	}
	assert_int_equal(s->hdr->nr_live_caches, live + 1);
	tu_check_clean(s);
	/* empty: destroyed, slabs and template returned */
	TU_ASSERT_OK(sp_cache_destroy(s, id));
	assert_null(sp_cache_get(s, id));
	assert_int_equal(sp_cache_lookup(s, "doomed", &id2), -ENOENT);
	assert_int_equal(sp_cache_destroy(s, id), -ENOENT);
	assert_int_equal(s->hdr->nr_live_caches, live);
	assert_int_equal(sp_caches(s)[sp_kmalloc_class(300)].active_objs, kact);
	assert_buddy_vector(s, nr_free0, free0);
	/* a stale handle cannot allocate */
	assert_int_equal(sp_cache_alloc(s, c, s->owner, &off), -ENOENT);
	tu_check_clean(s);
	/* the name is free again, with another geometry */
	c = mkcache(s, "doomed", 5000, 64, SP_CACHE_REDZONE, NULL);
	assert_int_equal(c->align, 64);
	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &off));
	memset(sp_ptr(s, off), 0x11, 5000); /* the old template is gone */
	TU_ASSERT_OK(sp_cache_free(s, c, off));
	TU_ASSERT_OK(sp_cache_destroy(s, c->id));
	/* internal caches cannot be destroyed; bad ids are refused */
	assert_int_equal(sp_cache_destroy(s, 0), -EPERM);
	assert_int_equal(sp_cache_destroy(s, s->hdr->nr_kmalloc - 1), -EPERM);
	assert_int_equal(sp_cache_destroy(s, sp_nr_cache_slots(s)), -ENOENT);
	assert_int_equal(sp_cache_destroy(s, UINT32_MAX), -ENOENT);
	assert_non_null(sp_cache_get(s, 0));
	assert_buddy_vector(s, nr_free0, free0);
	tu_check_clean(s);
	tu_seg_free(s);
}

/* ---- templates ----------------------------------------------------------- */

#define TMPL_SIZE 200

struct tmpl_arg {
	const char *name;
	uint32_t count;
	sp_off_t result;	/* sp_off_t[count + 1]: [0] = owner, then objects */
};

static void make_tmpl(uint8_t *t, unsigned len)
{
	for (unsigned i = 0; i < len; i++)
		t[i] = (uint8_t)(i * 37 + 11);
}

static int tmpl_child(void *argp)
{
	struct tmpl_arg *a = argp;
	uint8_t want[TMPL_SIZE];
	struct sp_seg *t = NULL;
	struct sp_cache *c;
	uint32_t slot, id;
	sp_off_t *res;

	make_tmpl(want, TMPL_SIZE);
	if (sp_seg_attach(a->name, -1, 0, &t) ||
	    sp_client_register(t, "slab-child", getpid(), getuid(), getgid(), &slot) ||
	    sp_client_use_slot(t, slot))
		return 10;
	if (sp_cache_lookup(t, "tmpl", &id) || !(c = sp_cache_get(t, id)))
		return 11;
	res = sp_ptr(t, a->result);
	res[0] = t->owner;
	for (uint32_t i = 0; i < a->count; i++) {
		uint8_t *p;

		if (sp_cache_alloc(t, c, t->owner, &res[i + 1]))
			return 12;
		p = sp_ptr(t, res[i + 1]);
		if (memcmp(p, want, TMPL_SIZE))
			return 13; /* a new object without the template */
		memset(p, 0xc0 + (i & 15), TMPL_SIZE);
	}
	sp_seg_detach(t);
	return 0;
}

static void init_template(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint8_t tmpl[TMPL_SIZE], want[TMPL_SIZE];
	struct tmpl_arg a = { .name = s->name };
	struct sp_cache *c;
	sp_off_t mine[3], *res;
	uint32_t n;

	make_tmpl(tmpl, TMPL_SIZE);
	memcpy(want, tmpl, TMPL_SIZE);
	c = mkcache(s, "tmpl", TMPL_SIZE, 0, 0, tmpl);
	assert_int_not_equal(c->tmpl_off, 0);
	assert_memory_equal(sp_ptr(s, c->tmpl_off), want, TMPL_SIZE);
	memset(tmpl, 0, TMPL_SIZE); /* the cache keeps its own copy */
	n = c->objperslab;
	for (unsigned i = 0; i < 3; i++) {
		TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &mine[i]));
		assert_memory_equal(sp_ptr(s, mine[i]), want, TMPL_SIZE);
		memset(sp_ptr(s, mine[i]), 0x99, TMPL_SIZE);
	}
	/* another process: objects of the partial slab and of new slabs */
	a.count = 2 * n + 5;
	TU_ASSERT_OK(sp_kmalloc(s, (a.count + 1) * sizeof(sp_off_t), &a.result));
	assert_int_equal(tu_wait(tu_fork(tmpl_child, &a)), 0);
	res = sp_ptr(s, a.result);
	assert_int_equal(c->active_objs, 3 + a.count);
	assert_true(c->nr_slabs >= 3);
	for (uint32_t i = 0; i < a.count; i++) {
		uint8_t exp[TMPL_SIZE];

		memset(exp, 0xc0 + (i & 15), TMPL_SIZE);
		assert_memory_equal(sp_ptr(s, res[i + 1]), exp, TMPL_SIZE);
		assert_int_equal(owner_of(s, c, res[i + 1]), res[0]);
	}
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(owner_of(s, c, mine[i]), s->owner);
	tu_check_clean(s);
	/* a slab made after all that still starts from the template */
	{
		uint32_t more = c->total_objs - c->active_objs + 1;
		sp_off_t *extra = calloc(more, sizeof(*extra));

		assert_non_null(extra);
		for (uint32_t i = 0; i < more; i++) {
			TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &extra[i]));
			assert_memory_equal(sp_ptr(s, extra[i]), want, TMPL_SIZE);
		}
		for (uint32_t i = 0; i < more; i++)
			TU_ASSERT_OK(sp_cache_free(s, c, extra[i]));
		free(extra);
	}
	for (uint32_t i = 0; i < a.count; i++)
		TU_ASSERT_OK(sp_cache_free(s, c, res[i + 1]));
	for (unsigned i = 0; i < 3; i++)
		TU_ASSERT_OK(sp_cache_free(s, c, mine[i]));
	TU_ASSERT_OK(sp_kfree(s, a.result));
	assert_int_equal(c->active_objs, 0);
	TU_ASSERT_OK(sp_cache_destroy(s, c->id));
	tu_check_clean(s);
	tu_seg_free(s);
}

/* A template bigger than the kmalloc classes lives in a large block. */
static void big_template(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint64_t free0 = s->hdr->buddy.free_pages;
	uint8_t *tmpl = malloc(20000);
	struct sp_cache *c;
	sp_off_t obj[8];
	uint32_t pfn = 0;

	assert_non_null(tmpl);
	for (unsigned i = 0; i < 20000; i++)
		tmpl[i] = (uint8_t)(i ^ (i >> 7));
	c = mkcache(s, "big-tmpl", 20000, 0, SP_CACHE_REDZONE, tmpl);
	assert_true(sp_off_pfn(s, c->tmpl_off, &pfn));
	assert_int_equal(SP_PG_KIND(s->pages[pfn].info), SP_KIND_LARGE);
	assert_int_equal(s->pages[pfn].slot, SP_OWNER_INTERNAL);
	for (unsigned i = 0; i < 8; i++) {
		uint8_t *p;

		TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &obj[i]));
		p = sp_ptr(s, obj[i]);
		assert_memory_equal(p, tmpl, 20000);
		for (unsigned z = 0; z < SP_REDZONE_SIZE; z++)
			assert_int_equal(p[20000 + z], SP_REDZONE_BYTE);
	}
	tu_check_clean(s);
	for (unsigned i = 0; i < 8; i++)
		TU_ASSERT_OK(sp_cache_free(s, c, obj[i]));
	assert_int_equal(c->nr_redzone_err, 0);
	TU_ASSERT_OK(sp_cache_destroy(s, c->id));
	/* slabs and the template block are back */
	assert_int_equal(s->hdr->buddy.free_pages, free0);
	tu_check_clean(s);
	free(tmpl);
	tu_seg_free(s);
}

/* A cache that cannot grow fails cleanly and works again afterwards. */
static void segment_full(void **state)
{
	struct sp_seg *s = tu_seg_new(4u << 20);
	struct sp_cache *c = mkcache(s, "starved", 1000, 0, 0, NULL);
	uint32_t cap = s->hdr->nr_pages, nraw = 0, n = 0;
	sp_off_t *raw = calloc(cap, sizeof(*raw)), obj[64], off = 0x77;
	struct cstate cs;
	uint64_t fails;

	assert_non_null(raw);
	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &obj[n++]));
	while (sp_buddy_alloc(s, 0, &raw[nraw]) == 0)
		nraw++;
	assert_int_equal(s->hdr->buddy.free_pages, 0);
	/* the first slab still has room */
	while (c->active_objs < c->total_objs)
		TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &obj[n++]));
	cstate_take(c, &cs);
	fails = c->nr_fail;
	assert_int_equal(sp_cache_alloc(s, c, s->owner, &off), -ENOMEM);
	assert_true(strlen(sp_errmsg()) > 0);
	assert_int_equal(off, 0x77);
	assert_cstate(c, &cs, 0);
	assert_int_equal(c->nr_fail, fails + 1);
	tu_check_clean(s);
	/* memory comes back: the cache grows again */
	TU_ASSERT_OK(sp_buddy_free(s, raw[--nraw]));
	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &obj[n++]));
	assert_int_equal(c->nr_slabs, cs.nr_slabs + 1);
	tu_check_clean(s);
	while (n)
		TU_ASSERT_OK(sp_cache_free(s, c, obj[--n]));
	while (nraw)
		TU_ASSERT_OK(sp_buddy_free(s, raw[--nraw]));
	TU_ASSERT_OK(sp_cache_destroy(s, c->id));
	tu_check_clean(s);
	free(raw);
	tu_seg_free(s);
}

/* The slabinfo view: the /proc/slabinfo columns and the counters, per cache. */
static void slabinfo_view(void **state)
{
	struct sp_seg *s = tu_seg_new(0);
	struct sp_cache *c = mkcache(s, "viewed", 100, 0, 0, NULL);
	unsigned long long act, num, allocs, frees, fails;
	unsigned osz, per, pages, aslabs, nslabs;
	sp_off_t obj[5];
	char *buf = NULL, *row, name[32];
	size_t len = 0;
	FILE *f;

	for (int i = 0; i < 5; i++)
		TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &obj[i]));
	TU_ASSERT_OK(sp_cache_free(s, c, obj[4]));
	TU_ASSERT_OK(sp_cache_free(s, c, obj[3]));
	c->nr_fail = 7; /* no cheap way to starve only this cache here: segment_full does */
	f = open_memstream(&buf, &len);
	assert_non_null(f);
	sp_dump_slabinfo(s, f, false);
	fclose(f);
	assert_non_null(strstr(buf, "active_objs"));
	assert_non_null(strstr(buf, "frees"));
	assert_null(strstr(buf, "kmalloc-8 ")); /* empty classes left out ... */
	row = strstr(buf, "\nviewed ");
	assert_non_null(row);
	assert_int_equal(sscanf(row, "%31s %llu %llu %u %u %u %u %u %llu %llu %llu", name, &act,
				&num, &osz, &per, &pages, &aslabs, &nslabs, &allocs, &frees, &fails),
			 11);
	assert_int_equal(act, 3);
	assert_int_equal(num, c->total_objs);
	assert_int_equal(osz, 100);
	assert_int_equal(per, c->objperslab);
	assert_int_equal(pages, 1u << c->order);
	assert_int_equal(aslabs, 1);
	assert_int_equal(nslabs, 1);
	assert_int_equal(allocs, 5);
	assert_int_equal(frees, 2);
	assert_int_equal(fails, 7);
	free(buf);
	f = open_memstream(&buf, &len);
	assert_non_null(f);
	sp_dump_slabinfo(s, f, true);
	fclose(f);
	assert_non_null(strstr(buf, "kmalloc-8 ")); /* ... unless asked for */
	free(buf);
	c->nr_fail = 0;
	for (int i = 0; i < 3; i++)
		TU_ASSERT_OK(sp_cache_free(s, c, obj[i]));
	tu_seg_free(s);
}

/* ---- debug flags ---------------------------------------------------------- */

static void poison(void **state)
{
	struct sp_seg *s = tu_seg_new(8u << 20);
	struct sp_cache *c = mkcache(s, "poisoned", 100, 0, SP_CACHE_POISON, NULL);
	sp_off_t off, again, other;
	uint8_t *p;

	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &off));
	p = sp_ptr(s, off);
	/* a fresh object carries the poison */
	for (unsigned i = 0; i < 100; i++)
		assert_int_equal(p[i], SP_POISON_FREE);
	memset(p, 0x12, 100);
	TU_ASSERT_OK(sp_cache_free(s, c, off));
	for (unsigned i = 0; i < 100; i++)
		assert_int_equal(p[i], SP_POISON_FREE); /* poisoned again on free */
	tu_check_clean(s);
	/* reuse without a stray write: no error */
	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &again));
	assert_int_equal(again, off);
	assert_int_equal(c->nr_poison_err, 0);
	TU_ASSERT_OK(sp_cache_free(s, c, again));

	/* use after free: the checker sees it, the next alloc counts it */
	p[57] = 0;
	assert_int_equal(tu_check_count(s, 0), 1);
	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &again));
	assert_int_equal(again, off);
	assert_int_equal(c->nr_poison_err, 1);
	tu_check_clean(s); /* allocated now: its contents are the user's */
	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &other));
	assert_int_equal(c->nr_poison_err, 1);
	TU_ASSERT_OK(sp_cache_free(s, c, again));
	TU_ASSERT_OK(sp_cache_free(s, c, other));
	/* a write into the last byte is caught too */
	p[99] ^= 1;
	assert_int_equal(tu_check_count(s, 0), 1);
	p[99] ^= 1;
	tu_check_clean(s);
	TU_ASSERT_OK(sp_cache_destroy(s, c->id));
	tu_check_clean(s);
	tu_seg_free(s);
}

static void redzone(void **state)
{
	static const uint32_t flag_sets[] = { SP_CACHE_REDZONE,
					      SP_CACHE_REDZONE | SP_CACHE_POISON,
					      SP_CACHE_REDZONE | SP_CACHE_HWCACHE_ALIGN };
	struct sp_seg *s = tu_seg_new(8u << 20);

	for (unsigned f = 0; f < sizeof(flag_sets) / sizeof(flag_sets[0]); f++) {
		static const uint32_t sizes[] = { 100, 64, 1 };
		char name[32];

		for (unsigned z = 0; z < 3; z++) {
			uint32_t size = sizes[z];
			struct sp_cache *c;
			sp_off_t off, off2;
			uint8_t *p;

			snprintf(name, sizeof(name), "rz-%u-%u", f, size);
			c = mkcache(s, name, size, 0, flag_sets[f], NULL);
			assert_true(c->stride >= size + SP_REDZONE_SIZE);
			TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &off));
			TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &off2));
			p = sp_ptr(s, off);
			for (unsigned i = 0; i < SP_REDZONE_SIZE; i++)
				assert_int_equal(p[size + i], SP_REDZONE_BYTE);
			/* writing the whole object is fine */
			memset(p, 0x44, size);
			TU_ASSERT_OK(sp_cache_free(s, c, off2));
			TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &off2));
			memset(sp_ptr(s, off2), 0x45, size);
			tu_check_clean(s);
			/* one byte past the end: the checker sees it at once */
			p[size] = 0x00;
			assert_int_equal(tu_check_count(s, 0), 1);
			assert_int_equal(c->nr_redzone_err, 0);
			/* free counts it and repairs the zone */
			TU_ASSERT_OK(sp_cache_free(s, c, off));
			assert_int_equal(c->nr_redzone_err, 1);
			tu_check_clean(s);
			/* the last red zone byte is checked too */
			((uint8_t *)sp_ptr(s, off2))[size + SP_REDZONE_SIZE - 1] = 0x7f;
			assert_int_equal(tu_check_count(s, 0), 1);
			TU_ASSERT_OK(sp_cache_free(s, c, off2));
			assert_int_equal(c->nr_redzone_err, 2);
			assert_int_equal(c->active_objs, 0);
			tu_check_clean(s);
			TU_ASSERT_OK(sp_cache_destroy(s, c->id));
		}
	}
	tu_check_clean(s);
	tu_seg_free(s);
}

/* ---- refused frees -------------------------------------------------------- */

static void bad_frees(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	struct sp_cache *a = mkcache(s, "cache-a", 64, 0, 0, NULL);
	struct sp_cache *b = mkcache(s, "cache-b", 64, 0, 0, NULL);
	struct sp_cache *km = &sp_caches(s)[sp_kmalloc_class(64)];
	sp_off_t ao[3], bo, ko, raw, first_end;
	struct cstate csa, csb, csk;
	uint32_t pfn, idx;
	uint64_t bad = 0;

	for (unsigned i = 0; i < 3; i++) {
		TU_ASSERT_OK(sp_cache_alloc(s, a, s->owner, &ao[i]));
		fill(s, ao[i], 64, i);
	}
	TU_ASSERT_OK(sp_cache_alloc(s, b, s->owner, &bo));
	fill(s, bo, 64, 10);
	TU_ASSERT_OK(sp_kmalloc(s, 64, &ko));
	fill(s, ko, 64, 11);
	TU_ASSERT_OK(sp_buddy_alloc(s, 0, &raw));
	TU_ASSERT_OK(sp_cache_free(s, a, ao[2])); /* for the double free below */
	locate(s, a, ao[0], &pfn, &idx);
	first_end = sp_pfn_off(s, pfn) + a->obj_start + sp_slab_at(s, a, pfn)->colour +
		    (uint64_t)a->objperslab * a->stride;
	cstate_take(a, &csa);
	cstate_take(b, &csb);
	cstate_take(km, &csk);
	tu_check_clean(s);

#define REFUSE(off, what)                                                               \
	do {                                                                            \
		int rc_ = sp_cache_free(s, a, (off));                                   \
		if (rc_ != -EINVAL)                                                     \
			fail_msg("%s: sp_cache_free returned %d, not -EINVAL", what, rc_); \
		assert_true(strlen(sp_errmsg()) > 0);                                   \
		assert_cstate(a, &csa, ++bad);                                          \
	} while (0)

	REFUSE(ao[2], "double free");
	REFUSE(bo, "object of another cache");
	REFUSE(ko, "kmalloc object");
	REFUSE(raw, "raw buddy block");
	REFUSE(ao[0] + 1, "one byte into an object");
	REFUSE(ao[0] + 8, "eight bytes into an object");
	REFUSE(ao[0] + 63, "last byte of an object");
	REFUSE(ao[1] + 32, "middle of another object");
	REFUSE(sp_pfn_off(s, pfn), "slab header");
	REFUSE(sp_pfn_off(s, pfn) + a->obj_start - 8, "owner tags");
	if (first_end < sp_pfn_off(s, pfn) + ((uint64_t)SP_PAGE_SIZE << a->order))
		REFUSE(first_end, "past the last object");
	REFUSE(0, "offset 0");
	REFUSE(8, "the header");
	REFUSE(s->hdr->pages.off, "page metadata");
	REFUSE(s->size, "end of segment");
	REFUSE(s->size + 4096, "past the segment");
	REFUSE(UINT64_MAX - 7, "huge offset");
	{
		/* a free page of the data area */
		uint32_t f = s->hdr->buddy.free_head[s->hdr->max_order] - 1;

		assert_true(f < s->hdr->nr_pages);
		REFUSE(sp_pfn_off(s, f), "free page");
	}
#undef REFUSE
	assert_int_equal(a->nr_bad_free, 17 + (first_end < sp_pfn_off(s, pfn) +
							    ((uint64_t)SP_PAGE_SIZE << a->order)));
	/* nothing else moved */
	assert_cstate(b, &csb, 0);
	assert_cstate(km, &csk, 0);
	for (unsigned i = 0; i < 2; i++)
		assert_filled(s, ao[i], 64, i);
	assert_filled(s, bo, 64, 10);
	assert_filled(s, ko, 64, 11);
	assert_int_equal(owner_of(s, b, bo), s->owner);
	tu_check_clean(s);

	/* the right cache takes each of them */
	TU_ASSERT_OK(sp_cache_free(s, b, bo));
	TU_ASSERT_OK(sp_kfree(s, ko));
	TU_ASSERT_OK(sp_buddy_free(s, raw));
	for (unsigned i = 0; i < 2; i++)
		TU_ASSERT_OK(sp_cache_free(s, a, ao[i]));
	assert_int_equal(a->active_objs, 0);
	assert_int_equal(sp_cache_free(s, b, bo), -EINVAL);
	assert_int_equal(b->nr_bad_free, 1);
	TU_ASSERT_OK(sp_cache_destroy(s, a->id));
	TU_ASSERT_OK(sp_cache_destroy(s, b->id));
	tu_check_clean(s);
	tu_seg_free(s);
}

/*
 * One object at a time (sp_cache_alloc(): the single-object locked path):
 * the first free bit from the slab's hint word, the hint kept where the
 * last object was found; a scribbled hint out of range restarts at word 0;
 * a slab list naming no slab of the cache, or a full slab on the partial
 * list, is refused with -EFAULT and rebuilt, and the next alloc works.
 */
static void alloc_one_object(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	struct sp_cache *c = mkcache(s, "ones", 8, 0, 0, NULL);
	sp_off_t o[200], x;
	uint32_t head, pfn, idx, n = 0;
	struct sp_slab *slab;
	uint64_t fail;

	(void)state;
	assert_true(c->bitmap_words >= 3 && c->objperslab > 140);
	for (n = 0; n < 140; n++) { /* words 0, 1 and part of 2, in order */
		TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &o[n]));
		locate(s, c, o[n], &pfn, &idx);
		if (!n)
			head = pfn;
		assert_int_equal(pfn, head);
		assert_int_equal(idx, n);
		assert_int_equal(owner_of(s, c, o[n]), s->owner);
	}
	slab = sp_slab_at(s, c, head);
	assert_int_equal(slab->hint, 2);
	assert_int_equal(c->nr_alloc, 140);
	/* a hole in word 0: the hint keeps the search in word 2 */
	TU_ASSERT_OK(sp_cache_free(s, c, o[5]));
	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &x));
	locate(s, c, x, &pfn, &idx);
	assert_int_equal(idx, 140);
	o[n++] = x;
	/* a hint out of range: from word 0, so the hole */
	slab->hint = 1000;
	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &o[5]));
	locate(s, c, o[5], &pfn, &idx);
	assert_int_equal(idx, 5);
	assert_int_equal(slab->hint, 0);
	tu_check_clean(s);

	/* the partial list names a free page: refused, rebuilt */
	fail = c->nr_fail;
	c->list_head[SP_LIST_PARTIAL] = s->hdr->buddy.free_head[s->hdr->max_order];
	assert_int_equal(sp_cache_alloc(s, c, s->owner, &x), -EFAULT);
	assert_int_equal(c->nr_fail, fail + 1);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &o[n]));
	locate(s, c, o[n++], &pfn, &idx);
	assert_int_equal(idx, 141);

	/* a slab claiming to be full on the partial list: refused, rebuilt */
	slab->inuse = c->objperslab;
	assert_int_equal(sp_cache_alloc(s, c, s->owner, &x), -EFAULT);
	assert_int_equal(c->nr_fail, fail + 2);
	tu_check_clean(s);
	assert_int_equal(slab->inuse, n);
	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &o[n]));
	locate(s, c, o[n++], &pfn, &idx);
	assert_int_equal(idx, 142);

	for (uint32_t i = 0; i < n; i++)
		TU_ASSERT_OK(sp_cache_free(s, c, o[i]));
	assert_int_equal(c->active_objs, 0);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_cache_destroy(s, c->id));
	tu_seg_free(s);
}

/*
 * A free finds an object's slab by buddy alignment (its page with the low
 * order bits cleared), not through the tail page's record: an object in a
 * tail page whose record is scribbled is still found and freed, and the
 * slab's own head record and header are still checked (an object whose
 * head says another cache is refused, as is a pointer into an object).
 */
static void locate_by_alignment(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	struct sp_cache *c = mkcache(s, "wide", 1500, 0, 0, NULL);
	sp_off_t obj[64], tail_obj = 0;
	uint32_t head = UINT32_MAX, pfn, idx, n = 0;
	struct sp_page saved;
	uint64_t bad;

	(void)state;
	assert_true(c->order >= 1 && c->objperslab <= 64);
	for (n = 0; n < c->objperslab; n++) { /* one slab's worth: the first slab */
		TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &obj[n]));
		locate(s, c, obj[n], &pfn, &idx);
		if (head == UINT32_MAX)
			head = pfn;
		assert_int_equal(pfn, head);
		if (!tail_obj && (obj[n] - s->hdr->data.off) >> SP_PAGE_SHIFT != head)
			tail_obj = obj[n];
	}
	assert_true(tail_obj != 0);
	pfn = (uint32_t)((tail_obj - s->hdr->data.off) >> SP_PAGE_SHIFT);
	assert_int_equal(s->pages[pfn].info, SP_PG_TAIL);

	/* the tail's record scribbled: not read, the object is found and freed */
	saved = s->pages[pfn];
	s->pages[pfn].info = SP_PG_INFO(SP_PG_FREE, 0, SP_KIND_NONE);
	s->pages[pfn].owner = 0;
	TU_ASSERT_OK(sp_cache_free(s, c, tail_obj));
	assert_int_equal(sp_cache_free(s, c, tail_obj), -EINVAL); /* and a double free refused */
	s->pages[pfn] = saved;
	tu_check_clean(s);
	TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &tail_obj)); /* back: the slab's only hole */
	assert_int_equal((tail_obj - s->hdr->data.off) >> SP_PAGE_SHIFT, pfn);

	/* the head's record still decides: another cache's, and every object
	 * of the slab is refused, untouched */
	bad = c->nr_bad_free;
	s->pages[head].owner = c->id + 1;
	assert_int_equal(sp_cache_free(s, c, tail_obj), -EINVAL);
	assert_non_null(strstr(sp_errmsg(), "another cache"));
	assert_int_equal(sp_cache_free(s, c, obj[0]), -EINVAL);
	s->pages[head].owner = c->id;
	assert_int_equal(c->nr_bad_free, bad + 2);
	/* ... and the index must be exact */
	assert_int_equal(sp_cache_free(s, c, tail_obj + 8), -EINVAL);
	assert_non_null(strstr(sp_errmsg(), "middle"));
	tu_check_clean(s);
	for (uint32_t i = 0; i < n; i++)
		TU_ASSERT_OK(sp_cache_free(s, c, obj[i]));
	assert_int_equal(c->active_objs, 0);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_cache_destroy(s, c->id));
	tu_seg_free(s);
}

/* ---- other processes ------------------------------------------------------ */

#define SHARE_N 300

struct share_arg {
	const char *name;
	sp_off_t result;	/* sp_off_t[SHARE_N + 1]: [0] = owner tag */
	uint32_t count;
};

static int share_child(void *argp)
{
	struct share_arg *a = argp;
	struct sp_seg *t = NULL;
	struct sp_cache *c;
	uint32_t slot, id;
	sp_off_t *res;

	if (sp_seg_attach(a->name, -1, 0, &t) ||
	    sp_client_register(t, "slab-share", getpid(), getuid(), getgid(), &slot) ||
	    sp_client_use_slot(t, slot))
		return 10;
	if (sp_cache_lookup(t, "shared", &id) || !(c = sp_cache_get(t, id)))
		return 11;
	res = sp_ptr(t, a->result);
	res[0] = t->owner;
	for (uint32_t i = 0; i < a->count; i++) {
		if (sp_cache_alloc(t, c, t->owner, &res[i + 1]))
			return 12;
		fill(t, res[i + 1], c->obj_size, 50000 + i);
	}
	sp_seg_detach(t);
	return 0;
}

static int cmp_off(const void *x, const void *y)
{
	sp_off_t a = *(const sp_off_t *)x, b = *(const sp_off_t *)y;

	return a < b ? -1 : a > b;
}

static void shared_between_processes(void **state)
{
	struct sp_seg *s = tu_seg_new(32u << 20);
	struct sp_cache *c = mkcache(s, "shared", 120, 0, 0, NULL);
	struct share_arg a = { .name = s->name, .count = SHARE_N };
	sp_off_t *res, mine[SHARE_N], all[2 * SHARE_N];
	pid_t pid;

	TU_ASSERT_OK(sp_kmalloc(s, (SHARE_N + 1) * sizeof(sp_off_t), &a.result));
	/* the child allocates while the parent does too */
	pid = tu_fork(share_child, &a);
	for (unsigned i = 0; i < SHARE_N; i++) {
		TU_ASSERT_OK(sp_cache_alloc(s, c, s->owner, &mine[i]));
		fill(s, mine[i], c->obj_size, 90000 + i);
	}
	assert_int_equal(tu_wait(pid), 0);
	res = sp_ptr(s, a.result);
	assert_int_not_equal(res[0], s->owner);
	assert_int_equal(c->active_objs, 2 * SHARE_N);
	for (unsigned i = 0; i < SHARE_N; i++) {
		assert_filled(s, res[i + 1], c->obj_size, 50000 + i); /* child's writes */
		assert_filled(s, mine[i], c->obj_size, 90000 + i);
		assert_int_equal(owner_of(s, c, res[i + 1]), res[0]);
		assert_int_equal(owner_of(s, c, mine[i]), s->owner);
		all[i] = mine[i];
		all[SHARE_N + i] = res[i + 1];
	}
	qsort(all, 2 * SHARE_N, sizeof(all[0]), cmp_off);
	for (unsigned i = 1; i < 2 * SHARE_N; i++)
		assert_true(all[i] >= all[i - 1] + c->obj_size);
	tu_check_clean(s);
	/* the parent frees what the child allocated */
	for (unsigned i = 0; i < SHARE_N; i++)
		TU_ASSERT_OK(sp_cache_free(s, c, res[i + 1]));
	assert_int_equal(c->active_objs, SHARE_N);
	for (unsigned i = 0; i < SHARE_N; i++)
		assert_filled(s, mine[i], c->obj_size, 90000 + i);
	for (unsigned i = 0; i < SHARE_N; i++)
		TU_ASSERT_OK(sp_cache_free(s, c, mine[i]));
	assert_int_equal(c->active_objs, 0);
	TU_ASSERT_OK(sp_kfree(s, a.result));
	tu_check_clean(s);
	TU_ASSERT_OK(sp_cache_destroy(s, c->id));
	tu_check_clean(s);
	tu_seg_free(s);
}

/*
 * sp_cache_alloc_geo() and sp_cache_free_geo() use the caller's snapshot in
 * place of one per call, and only for the incarnation of the cache it was
 * taken of: for a cache created again at the same id (another geometry,
 * another generation) they take a fresh one, so objects follow the new
 * geometry; and a scribbled descriptor does not stop the kept one.
 */
static void kept_snapshot(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	struct sp_cache *c, old, *g;
	sp_off_t a, b, x[2];
	uint32_t id, pfn, idx, stride;

	(void)state;
	c = mkcache(s, "kept", 40, 0, 0, NULL);
	id = c->id;
	TU_ASSERT_OK(sp_cache_snapshot(s, c, &old));
	TU_ASSERT_OK(sp_cache_alloc_geo(s, c, &old, s->owner, &a));
	TU_ASSERT_OK(sp_cache_alloc_geo(s, c, &old, s->owner, &b));
	assert_int_equal(b - a, c->stride);
	/* the shared descriptor scribbled on: the kept geometry still serves */
	stride = c->stride;
	c->stride = 12345;
	TU_ASSERT_OK(sp_cache_free_geo(s, c, &old, b));
	assert_int_equal(sp_cache_free(s, c, a), -EFAULT); /* a fresh snapshot refuses it */
	TU_ASSERT_OK(sp_cache_free_geo(s, c, &old, a));
	assert_int_equal(sp_cache_free_geo(s, c, &old, a), -EINVAL); /* still checked */
	c->stride = stride;
	assert_int_equal(c->active_objs, 0);
	TU_ASSERT_OK(sp_cache_destroy(s, id));

	/* created again at the same id, with another geometry */
	c = mkcache(s, "kept2", 200, 0, 0, NULL);
	assert_int_equal(c->id, id);
	assert_int_not_equal(c->gen, old.gen);
	for (int i = 0; i < 2; i++)
		TU_ASSERT_OK(sp_cache_alloc_geo(s, c, &old, s->owner, &x[i]));
	assert_int_equal(x[1] - x[0], c->stride);
	locate(s, c, x[1], &pfn, &idx);
	assert_int_equal(sp_cache_geo_locked(s, c, &old, &(struct sp_cache){ 0 },
					     (const struct sp_cache **)&g), 0);
	assert_ptr_not_equal(g, &old);
	for (int i = 0; i < 2; i++)
		TU_ASSERT_OK(sp_cache_free_geo(s, c, &old, x[i]));
	assert_int_equal(c->active_objs, 0);
	TU_ASSERT_OK(sp_cache_destroy(s, id));
	tu_seg_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fill_free_shrink),
		cmocka_unit_test(refill_full_slab),
		cmocka_unit_test(colouring),
		cmocka_unit_test(alignment),
		cmocka_unit_test(bad_geometry),
		cmocka_unit_test(names),
		cmocka_unit_test(destroy),
		cmocka_unit_test(init_template),
		cmocka_unit_test(big_template),
		cmocka_unit_test(segment_full),
		cmocka_unit_test(slabinfo_view),
		cmocka_unit_test(poison),
		cmocka_unit_test(redzone),
		cmocka_unit_test(bad_frees),
		cmocka_unit_test(alloc_one_object),
		cmocka_unit_test(locate_by_alignment),
		cmocka_unit_test(shared_between_processes),
		cmocka_unit_test(kept_snapshot),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
