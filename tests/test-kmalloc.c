/* SPDX-License-Identifier: MIT */
/*
 * test-kmalloc.c - general allocation: the size classes (8..128 in steps of
 * 8, then 192, 256, 512, 1024, 2048, 4096, 8192), every size 1..8192 with
 * its contents, large allocations from buddy pages, size limits, the
 * per-class prefill stock, and refused frees of garbage offsets.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test-util.h"

#define NORD (SP_MAX_ORDER_LIMIT + 1)

/* The classes, written out independently of kmalloc.c. */
static const uint32_t classes[] = { 8,	 16,  24,  32,	40,   48,   56,	  64,	72,   80,  88, 96,
				    104, 112, 120, 128, 192, 256, 512, 1024, 2048, 4096, 8192 };
#define NCLASSES (sizeof(classes) / sizeof(classes[0]))

static int expected_class(uint64_t size)
{
	for (unsigned i = 0; i < NCLASSES; i++)
		if (size <= classes[i])
			return (int)i;
	return -1;
}

static uint8_t pbyte(uint64_t seed, uint64_t i)
{
	return (uint8_t)((seed * 0x9e3779b1u + i * 0x85ebca6bu + (i >> 8) * 31) >> 13);
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
			fail_msg("allocation %#llx (seed %llu): byte %llu of %llu overwritten",
				 (unsigned long long)off, (unsigned long long)seed,
				 (unsigned long long)i, (unsigned long long)len);
}

static uint64_t total_active(struct sp_seg *s)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < s->hdr->nr_kmalloc; i++)
		n += sp_caches(s)[i].active_objs;
	return n;
}

/* The block head holding an offset. */
static uint32_t head_of(struct sp_seg *s, sp_off_t off)
{
	uint32_t pfn = 0, head = 0;

	assert_true(sp_off_pfn(s, off, &pfn));
	TU_ASSERT_OK(sp_block_head(s, pfn, &head));
	return head;
}

/* ---- tests ------------------------------------------------------------- */

static void class_table(void **state)
{
	struct sp_seg *s = tu_seg_new(8u << 20);

	assert_int_equal(sp_nr_kmalloc_classes, NCLASSES);
	assert_int_equal(s->hdr->nr_kmalloc, NCLASSES);
	assert_int_equal(SP_KMALLOC_MAX, 8192);
	for (unsigned i = 0; i < NCLASSES; i++) {
		struct sp_cache *c = sp_cache_get(s, i);
		char name[32];

		assert_int_equal(sp_kmalloc_sizes[i], classes[i]);
		assert_non_null(c);
		snprintf(name, sizeof(name), "kmalloc-%u", classes[i]);
		assert_string_equal(c->name, name);
		assert_int_equal(c->obj_size, classes[i]);
		assert_true(c->flags & SP_CACHE_KMALLOC);
		assert_int_equal(c->align, 8);
	}
	for (uint64_t size = 1; size <= 8192; size++) {
		int cls = sp_kmalloc_class(size);

		if (cls != expected_class(size))
			fail_msg("size %llu: class %d, expected %d", (unsigned long long)size, cls,
				 expected_class(size));
		assert_true(sp_kmalloc_sizes[cls] >= size);
		if (cls > 0) /* the smallest class that fits */
			assert_true(sp_kmalloc_sizes[cls - 1] < size);
	}
	assert_int_equal(sp_kmalloc_class(8193), -1);
	assert_int_equal(sp_kmalloc_class(1u << 20), -1);
	assert_int_equal(sp_kmalloc_class(UINT64_MAX), -1);
	tu_seg_free(s);
}

#define WINDOW 384

struct live {
	sp_off_t off;
	uint64_t size, ksize;
};

static void assert_no_overlap(const struct live *w, unsigned n, const struct live *x)
{
	for (unsigned i = 0; i < n; i++)
		if (w[i].off < x->off + x->ksize && x->off < w[i].off + w[i].ksize)
			fail_msg("allocations %#llx (+%llu) and %#llx (+%llu) overlap",
				 (unsigned long long)w[i].off, (unsigned long long)w[i].ksize,
				 (unsigned long long)x->off, (unsigned long long)x->ksize);
}

static void every_size(void **state)
{
	struct sp_seg *s = tu_seg_new(32u << 20);
	struct live w[WINDOW];
	uint64_t active0[NCLASSES];
	unsigned head = 0, n = 0;

	for (unsigned i = 0; i < NCLASSES; i++)
		active0[i] = sp_caches(s)[i].active_objs;
	for (uint64_t size = 1; size <= 8192; size++) {
		struct live x = { .size = size };
		int cls = expected_class(size);
		uint32_t hd;

		if (n == WINDOW) { /* retire the oldest */
			assert_filled(s, w[head].off, w[head].ksize, w[head].size);
			TU_ASSERT_OK(sp_kfree(s, w[head].off));
			head = (head + 1) % WINDOW;
			n--;
		}
		TU_ASSERT_OK(sp_kmalloc(s, size, &x.off));
		TU_ASSERT_OK(sp_ksize(s, x.off, &x.ksize));
		assert_int_equal(x.ksize, classes[cls]);
		assert_true(x.ksize >= size);
		assert_int_equal(x.off % 8, 0);
		/* it is an object of the class's cache, tagged with our slot */
		hd = head_of(s, x.off);
		assert_int_equal(SP_PG_KIND(s->pages[hd].info), SP_KIND_SLAB);
		assert_int_equal(s->pages[hd].owner, (uint32_t)cls);
		{
			struct sp_cache *c = &sp_caches(s)[cls];
			struct sp_slab *slab;
			uint32_t idx;

			TU_ASSERT_OK(sp_cache_obj_locate(s, c, x.off, &slab, &idx));
			assert_int_equal(sp_slab_owners(c, slab)[idx], s->owner);
		}
		/* the whole usable size is ours */
		for (unsigned i = 0, j = head; i < n; i++, j = (j + 1) % WINDOW)
			assert_no_overlap(&w[j], 1, &x);
		fill(s, x.off, x.ksize, size);
		w[(head + n) % WINDOW] = x;
		n++;
		if (size % 1024 == 0) {
			for (unsigned i = 0, j = head; i < n; i++, j = (j + 1) % WINDOW)
				assert_filled(s, w[j].off, w[j].ksize, w[j].size);
			tu_check_clean(s);
		}
	}
	for (unsigned i = 0; i < n; i++, head = (head + 1) % WINDOW) {
		assert_filled(s, w[head].off, w[head].ksize, w[head].size);
		TU_ASSERT_OK(sp_kfree(s, w[head].off));
	}
	for (unsigned i = 0; i < NCLASSES; i++)
		assert_int_equal(sp_caches(s)[i].active_objs, active0[i]);
	tu_check_clean(s);
	tu_seg_free(s);
}

static unsigned order_for(uint64_t size)
{
	unsigned o = 0;

	while (((uint64_t)SP_PAGE_SIZE << o) < size)
		o++;
	return o;
}

static void large(void **state)
{
	struct sp_seg *s = tu_seg_new(32u << 20);
	uint64_t top = (uint64_t)SP_PAGE_SIZE << s->hdr->max_order;
	const uint64_t sizes[] = { 8193, 12288, 12289, 64u << 10, (64u << 10) + 1, 100000,
				   1u << 20, (1u << 20) - 1, 3u << 20, top };
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	sp_off_t off[N], small[N];
	uint32_t nr_free0[NORD];
	uint64_t free0 = s->hdr->buddy.free_pages, act0 = total_active(s);

	memcpy(nr_free0, s->hdr->buddy.nr_free, sizeof(nr_free0));
	for (unsigned i = 0; i < N; i++) {
		uint64_t before = s->hdr->buddy.free_pages, ks = 0;
		unsigned o = order_for(sizes[i]);
		uint32_t pfn = 0;

		TU_ASSERT_OK(sp_kmalloc(s, sizes[i], &off[i]));
		TU_ASSERT_OK(sp_ksize(s, off[i], &ks));
		assert_int_equal(ks, (uint64_t)SP_PAGE_SIZE << o);
		assert_true(ks >= sizes[i]);
		assert_true(sp_off_pfn(s, off[i], &pfn));
		assert_int_equal(sp_pfn_off(s, pfn), off[i]);
		assert_int_equal((off[i] - s->hdr->data.off) % ks, 0);
		assert_int_equal(s->pages[pfn].info, SP_PG_INFO(SP_PG_ALLOC, o, SP_KIND_LARGE));
		assert_int_equal(s->pages[pfn].slot, s->owner);
		assert_int_equal(s->hdr->buddy.free_pages, before - (1ull << o));
		fill(s, off[i], ks, 1000 + i);
		/* small allocations in between do not disturb it */
		TU_ASSERT_OK(sp_kmalloc(s, 24 + 100 * i, &small[i]));
		fill(s, small[i], 24 + 100 * i, 2000 + i);
	}
	assert_int_equal(total_active(s), act0 + N);
	tu_check_clean(s);
	for (unsigned i = 0; i < N; i++) {
		assert_filled(s, off[i], (uint64_t)SP_PAGE_SIZE << order_for(sizes[i]), 1000 + i);
		assert_filled(s, small[i], 24 + 100 * i, 2000 + i);
	}
	for (unsigned i = 0; i < N; i++) {
		uint64_t before = s->hdr->buddy.free_pages;

		TU_ASSERT_OK(sp_kfree(s, off[i]));
		assert_int_equal(s->hdr->buddy.free_pages, before + (1ull << order_for(sizes[i])));
		assert_int_equal(sp_kfree(s, off[i]), -EINVAL); /* double free */
		TU_ASSERT_OK(sp_kfree(s, small[i]));
	}
	assert_int_equal(total_active(s), act0);
	for (unsigned o = 0; o < NORD; o++)
		assert_int_equal(s->hdr->buddy.nr_free[o], nr_free0[o]);
	assert_int_equal(s->hdr->buddy.free_pages, free0);
	tu_check_clean(s);
	tu_seg_free(s);
}

static void limits(void **state)
{
	struct sp_seg_params p;
	struct sp_seg *s = tu_seg_new(8u << 20), *t;
	uint64_t top = (uint64_t)SP_PAGE_SIZE << s->hdr->max_order, free0;
	const uint64_t too_big[] = { top + 1, 2 * top, 1ull << 40, UINT64_MAX };
	sp_off_t off = 0x4242, offs[64];
	unsigned n = 0;
	int rc;

	free0 = s->hdr->buddy.free_pages;
	for (unsigned i = 0; i < sizeof(too_big) / sizeof(too_big[0]); i++) {
		assert_int_equal(sp_kmalloc(s, too_big[i], &off), -ENOMEM);
		assert_non_null(strstr(sp_errmsg(), "largest block"));
	}
	assert_int_equal(sp_kmalloc(s, 0, &off), -EINVAL);
	assert_non_null(strstr(sp_errmsg(), "0 bytes"));
	assert_int_equal(off, 0x4242);
	assert_int_equal(s->hdr->buddy.free_pages, free0);
	/* without a client slot nothing is allocated */
	t = tu_seg_reattach(s, NULL);
	assert_int_equal(sp_kmalloc(t, 64, &off), -EPERM);
	assert_int_equal(sp_kmalloc(t, 1u << 16, &off), -EPERM);
	sp_seg_detach(t);
	/* largest blocks until the segment is full: -ENOMEM with a message */
	while ((rc = sp_kmalloc(s, top, &offs[n])) == 0) {
		fill(s, offs[n], top, n);
		n++;
		assert_true(n < 64);
	}
	assert_int_equal(rc, -ENOMEM);
	assert_true(strlen(sp_errmsg()) > 0);
	assert_true(n >= 1);
	tu_check_clean(s);
	for (unsigned i = 0; i < n; i++) {
		assert_filled(s, offs[i], top, i);
		TU_ASSERT_OK(sp_kfree(s, offs[i]));
	}
	assert_int_equal(s->hdr->buddy.free_pages, free0);
	tu_check_clean(s);
	tu_seg_free(s);

	/* a small max_order lowers the limit */
	sp_seg_params_default(&p);
	p.size = 4u << 20;
	p.max_order = 3;
	s = tu_seg_new_params(&p);
	TU_ASSERT_OK(sp_kmalloc(s, 8u * SP_PAGE_SIZE, &off));
	fill(s, off, 8u * SP_PAGE_SIZE, 3);
	assert_int_equal(sp_kmalloc(s, 8u * SP_PAGE_SIZE + 1, &offs[0]), -ENOMEM);
	assert_non_null(strstr(sp_errmsg(), "largest block"));
	assert_filled(s, off, 8u * SP_PAGE_SIZE, 3);
	TU_ASSERT_OK(sp_kfree(s, off));
	/* every class still works */
	for (unsigned i = 0; i < NCLASSES; i++) {
		TU_ASSERT_OK(sp_kmalloc(s, classes[i], &off));
		fill(s, off, classes[i], i);
		assert_filled(s, off, classes[i], i);
		TU_ASSERT_OK(sp_kfree(s, off));
	}
	tu_check_clean(s);
	tu_seg_free(s);
}

/* Stock right after creation: at least min_free, and not a slab more. */
static void assert_fresh_stock(struct sp_seg *s, uint32_t prefill)
{
	assert_int_equal(s->hdr->kmalloc_prefill, prefill);
	for (unsigned i = 0; i < s->hdr->nr_kmalloc; i++) {
		struct sp_cache *c = &sp_caches(s)[i];
		uint64_t stock = c->total_objs - c->active_objs;

		assert_int_equal(c->min_free, prefill);
		assert_int_equal(c->active_objs, 0);
		if (stock < prefill)
			fail_msg("%s: %llu free objects after creation, prefill %u", c->name,
				 (unsigned long long)stock, prefill);
		assert_int_equal(c->nr_slabs, (prefill + c->objperslab - 1) / c->objperslab);
	}
}

static void prefill(void **state)
{
	static const uint32_t prefills[] = { 20, 0, 1, 50 };
	struct sp_seg_params p;
	struct sp_seg *s;

	for (unsigned t = 0; t < sizeof(prefills) / sizeof(prefills[0]); t++) {
		sp_seg_params_default(&p);
		p.size = 16u << 20;
		p.kmalloc_prefill = prefills[t];
		s = tu_seg_new_params(&p);
		assert_fresh_stock(s, prefills[t]);
		tu_check_clean(s);
		tu_seg_free(s);
	}

	/* draining below half the stock refills it */
	s = tu_seg_new(64u << 20);
	assert_fresh_stock(s, 20);
	for (unsigned i = 0; i < s->hdr->nr_kmalloc; i++) {
		struct sp_cache *c = &sp_caches(s)[i];
		uint32_t slabs0 = c->nr_slabs, refills = 0, cap, n = 0;
		sp_off_t *obj;

		cap = 2 * c->objperslab + 2 * c->min_free + 4;
		obj = calloc(cap, sizeof(*obj));
		assert_non_null(obj);
		while (refills < 2) {
			uint64_t before = c->total_objs - c->active_objs, after;
			uint64_t grows = c->nr_grow;

			assert_true(n < cap);
			TU_ASSERT_OK(sp_kmalloc(s, c->obj_size, &obj[n]));
			*(uint64_t *)sp_ptr(s, obj[n]) = n;
			n++;
			after = c->total_objs - c->active_objs;
			if (before - 1 < c->min_free / 2) {
				/* fell below the low watermark: refilled to min_free */
				if (after < c->min_free)
					fail_msg("%s: stock %llu after a refill, want >= %u", c->name,
						 (unsigned long long)after, c->min_free);
				assert_true(c->nr_grow > grows);
				refills++;
			} else {
				assert_int_equal(after, before - 1);
				assert_int_equal(c->nr_grow, grows);
			}
			assert_true(after >= c->min_free / 2);
		}
		tu_check_clean(s);
		for (unsigned k = 0; k < n; k++) {
			assert_int_equal(*(uint64_t *)sp_ptr(s, obj[k]), k);
			TU_ASSERT_OK(sp_kfree(s, obj[k]));
		}
		assert_int_equal(c->active_objs, 0);
		assert_true(c->total_objs >= c->min_free);
		/* shrinking keeps exactly the stock */
		assert_true(sp_cache_shrink(s, c) >= 0);
		assert_int_equal(c->nr_slabs, slabs0);
		assert_true(c->total_objs >= c->min_free);
		free(obj);
	}
	tu_check_clean(s);
	tu_seg_free(s);
}

static void garbage_frees(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	struct sp_cache *c64 = &sp_caches(s)[expected_class(64)];
	sp_off_t small, small2, big, raw, named, freeobj = 0;
	uint32_t cid, pfn, idx;
	uint64_t act, free_pages, bad64, ks;
	struct sp_slab *slab;

	TU_ASSERT_OK(sp_kmalloc(s, 64, &small));
	TU_ASSERT_OK(sp_kmalloc(s, 64, &small2));
	TU_ASSERT_OK(sp_kfree(s, small2)); /* for a double free */
	TU_ASSERT_OK(sp_kmalloc(s, 20000, &big));
	TU_ASSERT_OK(sp_buddy_alloc(s, 1, &raw));
	TU_ASSERT_OK(sp_cache_create(s, "not-kmalloc", 64, 0, 0, NULL, &cid));
	TU_ASSERT_OK(sp_cache_alloc(s, sp_cache_get(s, cid), s->owner, &named));
	fill(s, small, 64, 1);
	fill(s, big, 32768, 2);
	fill(s, named, 64, 3);
	/* a never allocated object of the same slab as small */
	TU_ASSERT_OK(sp_cache_obj_locate(s, c64, small, &slab, &idx));
	for (uint32_t i = 0; i < c64->objperslab && !freeobj; i++)
		if (!(slab->bitmap[i / 64] >> (i % 64) & 1))
			freeobj = (sp_off_t)(sp_slab_obj(c64, slab, i) - s->base);
	assert_int_not_equal(freeobj, 0);
	assert_true(sp_off_pfn(s, small, &pfn));

	act = total_active(s);
	free_pages = s->hdr->buddy.free_pages;
	bad64 = c64->nr_bad_free;
	tu_check_clean(s);
	{
		const struct {
			sp_off_t off;
			const char *what;
		} bad[] = {
			{ 0, "NULL" },
			{ 1, "offset 1" },
			{ 8, "the header" },
			{ s->hdr->pages.off, "page metadata" },
			{ s->hdr->data.off - 8, "just before the data area" },
			{ s->hdr->data.off + s->hdr->data.size, "just past the data area" },
			{ s->size, "end of the segment" },
			{ s->size + 64, "past the segment" },
			{ UINT64_MAX & ~7ull, "huge" },
			{ small + 1, "misaligned" },
			{ small + 4, "misaligned by 4" },
			{ small + 8, "middle of an object" },
			{ small + 56, "end of an object" },
			{ small2, "double free" },
			{ freeobj, "never allocated object" },
			{ sp_pfn_off(s, head_of(s, small)), "slab header" },
			{ big + 8, "inside a large block" },
			{ big + SP_PAGE_SIZE, "tail page of a large block" },
			{ raw, "raw buddy block" },
			{ named, "object of a named cache" },
			{ sp_pfn_off(s, s->hdr->buddy.free_head[s->hdr->max_order] - 1),
			  "free page" },
		};

		for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			int rc = sp_kfree(s, bad[i].off);

			if (rc != -EINVAL)
				fail_msg("kfree of %s (%#llx) returned %d, not -EINVAL", bad[i].what,
					 (unsigned long long)bad[i].off, rc);
			assert_true(strlen(sp_errmsg()) > 0);
			assert_int_equal(total_active(s), act);
			assert_int_equal(s->hdr->buddy.free_pages, free_pages);
		}
		/* offsets that are nobody's allocation have no size either */
		assert_int_equal(sp_ksize(s, 0, &ks), -EINVAL);
		assert_int_equal(sp_ksize(s, s->size + 64, &ks), -EINVAL);
		assert_int_equal(sp_ksize(s, raw, &ks), -EINVAL);
		assert_int_equal(sp_ksize(s, named, &ks), -EINVAL);
	}
	/* the refusals that reached kmalloc-64 were counted there */
	assert_true(c64->nr_bad_free >= bad64 + 6);
	tu_check_clean(s);
	assert_filled(s, small, 64, 1);
	assert_filled(s, big, 32768, 2);
	assert_filled(s, named, 64, 3);
	TU_ASSERT_OK(sp_kfree(s, small));
	TU_ASSERT_OK(sp_kfree(s, big));
	TU_ASSERT_OK(sp_buddy_free(s, raw));
	TU_ASSERT_OK(sp_cache_free(s, sp_cache_get(s, cid), named));
	TU_ASSERT_OK(sp_cache_destroy(s, cid));
	tu_check_clean(s);
	tu_seg_free(s);
}

/* ---- another process ---------------------------------------------------- */

#define XN 40

struct xarg {
	const char *name;
	sp_off_t result; /* sp_off_t[XN] */
};

static uint64_t xsize(unsigned i)
{
	return i < XN / 2 ? 1 + i * 411 : 8192 + (i - XN / 2) * 5000;
}

static int child_kmalloc(void *argp)
{
	struct xarg *a = argp;
	struct sp_seg *t = NULL;
	uint32_t slot;
	sp_off_t *res;

	if (sp_seg_attach(a->name, -1, 0, &t) ||
	    sp_client_register(t, "kmalloc-child", getpid(), getuid(), getgid(), &slot) ||
	    sp_client_use_slot(t, slot))
		return 10;
	res = sp_ptr(t, a->result);
	for (unsigned i = 0; i < XN; i++) {
		if (sp_kmalloc(t, xsize(i), &res[i]))
			return 11;
		fill(t, res[i], xsize(i), 7000 + i);
	}
	sp_seg_detach(t);
	return 0;
}

static void other_process(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	struct xarg a = { .name = s->name };
	uint64_t act, free_pages;
	sp_off_t *res;

	TU_ASSERT_OK(sp_kmalloc(s, XN * sizeof(sp_off_t), &a.result));
	act = total_active(s);
	free_pages = s->hdr->buddy.free_pages;
	assert_int_equal(tu_wait(tu_fork(child_kmalloc, &a)), 0);
	res = sp_ptr(s, a.result);
	tu_check_clean(s);
	for (unsigned i = 0; i < XN; i++) {
		assert_filled(s, res[i], xsize(i), 7000 + i);
		TU_ASSERT_OK(sp_kfree(s, res[i]));
	}
	assert_int_equal(total_active(s), act);
	assert_int_equal(s->hdr->buddy.free_pages, free_pages);
	TU_ASSERT_OK(sp_kfree(s, a.result));
	tu_check_clean(s);
	tu_seg_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(class_table),
		cmocka_unit_test(every_size),
		cmocka_unit_test(large),
		cmocka_unit_test(limits),
		cmocka_unit_test(prefill),
		cmocka_unit_test(garbage_frees),
		cmocka_unit_test(other_process),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
