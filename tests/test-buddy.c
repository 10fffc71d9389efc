/* SPDX-License-Identifier: MIT */
/*
 * test-buddy.c - the buddy page allocator: raw blocks from sp_buddy_alloc()
 * and sp_buddy_free(), seen through the zone counters (nr_free[order] is the
 * /proc/buddyinfo view, free_pages their sum in pages).
 *
 * Covered: every order 0..max_order; the split arithmetic of an order-0
 * allocation (one block fewer at the split order, one more at each order
 * below it); merging (freeing everything restores the exact nr_free vector,
 * in any order); buddy addresses (two order-o buddies differ by 2^o pages and
 * merge into their order-(o+1) parent); exhaustion to -ENOMEM and back;
 * refused frees (not a block start, outside the data area, double free, a
 * slab or large block, a free block); orders above max_order; a segment with
 * a small max_order; a block allocated by another process.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test-util.h"

#define NORD (SP_MAX_ORDER_LIMIT + 1)

struct snap {
	uint32_t nr_free[NORD];
	uint64_t free_pages;
};

static void snap_take(struct sp_seg *s, struct snap *x)
{
	memcpy(x->nr_free, s->hdr->buddy.nr_free, sizeof(x->nr_free));
	x->free_pages = s->hdr->buddy.free_pages;
}

static void assert_snap(struct sp_seg *s, const struct snap *want, const char *what)
{
	for (unsigned o = 0; o < NORD; o++)
		if (s->hdr->buddy.nr_free[o] != want->nr_free[o])
			fail_msg("%s: nr_free[%u] is %u, expected %u", what, o,
				 s->hdr->buddy.nr_free[o], want->nr_free[o]);
	if (s->hdr->buddy.free_pages != want->free_pages)
		fail_msg("%s: free_pages is %llu, expected %llu", what,
			 (unsigned long long)s->hdr->buddy.free_pages,
			 (unsigned long long)want->free_pages);
}

static uint32_t pfn_of(struct sp_seg *s, sp_off_t off)
{
	return (uint32_t)((off - s->hdr->data.off) >> SP_PAGE_SHIFT);
}

/* A word pattern that differs per block (seed) and per position. */
static uint64_t pat(uint64_t seed, uint64_t i)
{
	return (seed + 1) * 0x9e3779b97f4a7c15ULL ^ (i * 0xff51afd7ed558ccdULL) ^ i;
}

static void fill(struct sp_seg *s, sp_off_t off, unsigned order, uint64_t seed)
{
	uint64_t *w = sp_ptr(s, off), n = ((uint64_t)SP_PAGE_SIZE << order) / 8;

	for (uint64_t i = 0; i < n; i++)
		w[i] = pat(seed, i);
}

/* Returns the index of the first wrong word, or -1. */
static long verify(struct sp_seg *s, sp_off_t off, unsigned order, uint64_t seed)
{
	const uint64_t *w = sp_ptr(s, off);
	uint64_t n = ((uint64_t)SP_PAGE_SIZE << order) / 8;

	for (uint64_t i = 0; i < n; i++)
		if (w[i] != pat(seed, i))
			return (long)i;
	return -1;
}

static void assert_pattern(struct sp_seg *s, sp_off_t off, unsigned order, uint64_t seed)
{
	long bad = verify(s, off, order, seed);

	if (bad >= 0)
		fail_msg("block %#llx (order %u): word %ld overwritten", (unsigned long long)off,
			 order, bad);
}

/* Check what the page metadata says about a raw block just allocated. */
static void assert_raw_block(struct sp_seg *s, sp_off_t off, unsigned order)
{
	uint32_t pfn = 0;

	assert_true(sp_off_pfn(s, off, &pfn));
	assert_int_equal((off - s->hdr->data.off) % ((uint64_t)SP_PAGE_SIZE << order), 0);
	assert_true((uint64_t)pfn + (1u << order) <= s->hdr->nr_pages);
	assert_int_equal(s->pages[pfn].info, SP_PG_INFO(SP_PG_ALLOC, order, SP_KIND_RAW));
	assert_int_equal(s->pages[pfn].slot, s->owner);
	for (uint32_t i = 1; i < (1u << order); i++) {
		assert_int_equal(s->pages[pfn + i].info, SP_PG_TAIL);
		assert_int_equal(s->pages[pfn + i].owner, pfn);
	}
}

static struct sp_seg *seg_prefill0(uint64_t size, uint32_t max_order)
{
	struct sp_seg_params p;

	sp_seg_params_default(&p);
	p.size = size;
	p.max_order = max_order;
	p.kmalloc_prefill = 0;
	return tu_seg_new_params(&p);
}

/* The carving sp_buddy_init() does: max_order blocks, then the binary digits. */
static void expected_initial(struct sp_seg *s, struct snap *x)
{
	uint32_t n = s->hdr->nr_pages, max = s->hdr->max_order;

	memset(x, 0, sizeof(*x));
	x->nr_free[max] = n >> max;
	for (unsigned o = 0; o < max; o++)
		x->nr_free[o] = (n >> o) & 1;
	x->free_pages = n;
}

/* ---- tests ------------------------------------------------------------- */

static void initial_carving(void **state)
{
	static const uint32_t orders[] = { 10, 3, 2, 7 };

	for (unsigned t = 0; t < sizeof(orders) / sizeof(orders[0]); t++) {
		struct sp_seg *s = seg_prefill0((5u << 20) + 7 * SP_PAGE_SIZE, orders[t]);
		struct snap want;

		assert_int_equal(s->hdr->buddy.max_order, orders[t]);
		assert_int_equal(s->hdr->buddy.nr_pages, s->hdr->nr_pages);
		/* no kmalloc stock: the data area is all free and fully merged */
		expected_initial(s, &want);
		assert_snap(s, &want, "fresh segment without kmalloc stock");
		tu_check_clean(s);
		tu_seg_free(s);
	}
}

static void every_order(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	unsigned max = s->hdr->max_order;
	sp_off_t off[NORD];
	struct snap before, cur;

	assert_int_equal(max, SP_DEFAULT_MAX_ORDER);
	snap_take(s, &before);
	for (unsigned o = 0; o <= max; o++) {
		snap_take(s, &cur);
		TU_ASSERT_OK(sp_buddy_alloc(s, o, &off[o]));
		assert_raw_block(s, off[o], o);
		assert_int_equal(s->hdr->buddy.free_pages, cur.free_pages - (1ull << o));
		fill(s, off[o], o, o);
	}
	/* the blocks are disjoint */
	for (unsigned a = 0; a <= max; a++)
		for (unsigned b = a + 1; b <= max; b++) {
			uint64_t ea = off[a] + ((uint64_t)SP_PAGE_SIZE << a);
			uint64_t eb = off[b] + ((uint64_t)SP_PAGE_SIZE << b);

			if (off[a] < eb && off[b] < ea)
				fail_msg("order-%u and order-%u blocks overlap", a, b);
		}
	tu_check_clean(s);
	for (unsigned o = 0; o <= max; o++)
		assert_pattern(s, off[o], o, o);
	for (unsigned o = 0; o <= max; o++) {
		snap_take(s, &cur);
		TU_ASSERT_OK(sp_buddy_free(s, off[o]));
		assert_int_equal(s->hdr->buddy.free_pages, cur.free_pages + (1ull << o));
	}
	assert_snap(s, &before, "after freeing one block of every order");
	tu_check_clean(s);
	tu_seg_free(s);
}

/* Lowest order with a free block, or NORD. */
static unsigned lowest_free_order(struct sp_seg *s)
{
	for (unsigned o = 0; o <= s->hdr->max_order; o++)
		if (s->hdr->buddy.nr_free[o])
			return o;
	return NORD;
}

static void split_arithmetic(void **state)
{
	struct sp_seg *s = seg_prefill0(6u << 20, SP_DEFAULT_MAX_ORDER);
	sp_off_t drained[64], a, b;
	unsigned nd = 0, k;
	uint32_t p;
	struct snap init, cur, want;

	snap_take(s, &init);
	/* take the free blocks below order 3 whole: no split happens */
	while ((k = lowest_free_order(s)) < 3) {
		snap_take(s, &cur);
		assert_true(nd < 64);
		TU_ASSERT_OK(sp_buddy_alloc(s, k, &drained[nd]));
		fill(s, drained[nd], k, 100 + nd);
		want = cur;
		want.nr_free[k]--;
		want.free_pages -= 1u << k;
		assert_snap(s, &want, "allocating an order with a free block");
		nd++;
	}
	assert_true(k <= s->hdr->max_order);
	snap_take(s, &cur);

	/* order 0 now splits an order-k block: one fewer there, one more below */
	TU_ASSERT_OK(sp_buddy_alloc(s, 0, &a));
	want = cur;
	want.nr_free[k]--;
	for (unsigned j = 0; j < k; j++)
		want.nr_free[j]++;
	want.free_pages--;
	assert_snap(s, &want, "order-0 allocation splitting a larger block");
	p = pfn_of(s, a);
	assert_int_equal(p % (1u << k), 0); /* the lowest page of the split block */
	for (unsigned j = 0; j < k; j++) /* the upper halves went back, one per order */
		assert_int_equal(s->pages[p + (1u << j)].info,
				 SP_PG_INFO(SP_PG_FREE, j, SP_KIND_NONE));
	tu_check_clean(s);

	/* the only free order-0 block is a's buddy */
	TU_ASSERT_OK(sp_buddy_alloc(s, 0, &b));
	assert_int_equal(b, a + SP_PAGE_SIZE);
	assert_int_equal(s->hdr->buddy.nr_free[0], 0);
	fill(s, a, 0, 1);
	fill(s, b, 0, 2);
	assert_pattern(s, a, 0, 1);
	assert_pattern(s, b, 0, 2);

	/* free a: its buddy is allocated, so no merge */
	TU_ASSERT_OK(sp_buddy_free(s, a));
	assert_int_equal(s->hdr->buddy.nr_free[0], 1);
	assert_int_equal(s->pages[p].info, SP_PG_INFO(SP_PG_FREE, 0, SP_KIND_NONE));
	assert_pattern(s, b, 0, 2);
	/* free b: merges all the way back into the order-k block */
	TU_ASSERT_OK(sp_buddy_free(s, b));
	assert_snap(s, &cur, "after the split block was freed again");
	assert_int_equal(s->pages[p].info, SP_PG_INFO(SP_PG_FREE, k, SP_KIND_NONE));
	for (uint32_t i = 1; i < (1u << k); i++)
		assert_int_equal(s->pages[p + i].info, SP_PG_TAIL);
	/* double frees after the merge: a is a free head, b a tail */
	assert_int_equal(sp_buddy_free(s, a), -EINVAL);
	assert_int_equal(sp_buddy_free(s, b), -EINVAL);
	assert_snap(s, &cur, "after double frees of merged blocks");
	tu_check_clean(s);

	for (unsigned i = 0; i < nd; i++) {
		assert_pattern(s, drained[i], SP_PG_ORDER(s->pages[pfn_of(s, drained[i])].info),
			       100 + i);
		TU_ASSERT_OK(sp_buddy_free(s, drained[i]));
	}
	assert_snap(s, &init, "after freeing everything");
	tu_check_clean(s);
	tu_seg_free(s);
}

static void buddies_merge(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	unsigned max = s->hdr->max_order;
	struct snap init;

	snap_take(s, &init);
	for (unsigned o = 0; o < max; o++) {
		unsigned limit = s->hdr->buddy.nr_free[o] + 4, n = 0;
		sp_off_t *blk = calloc(limit, sizeof(*blk)), lo = 0, hi = 0;
		struct snap cur, want;
		bool found = false;

		assert_non_null(blk);
		while (!found && n < limit) {
			TU_ASSERT_OK(sp_buddy_alloc(s, o, &blk[n]));
			fill(s, blk[n], o, 1000 * o + n);
			for (unsigned i = 0; i < n && !found; i++) {
				if ((pfn_of(s, blk[i]) ^ (1u << o)) == pfn_of(s, blk[n])) {
					lo = blk[i] < blk[n] ? blk[i] : blk[n];
					hi = blk[i] ^ blk[n] ^ lo;
					found = true;
				}
			}
			n++;
		}
		if (!found)
			fail_msg("order %u: no two buddies among %u allocated blocks", o, n);
		/* buddy arithmetic: 2^o pages apart, the pair aligned to its parent */
		assert_int_equal(hi - lo, (uint64_t)SP_PAGE_SIZE << o);
		assert_int_equal((lo - s->hdr->data.off) % ((uint64_t)SP_PAGE_SIZE << (o + 1)), 0);
		for (unsigned i = 0; i < n; i++) {
			assert_pattern(s, blk[i], o, 1000 * o + i);
			if (blk[i] != lo && blk[i] != hi)
				TU_ASSERT_OK(sp_buddy_free(s, blk[i]));
		}
		snap_take(s, &cur);
		TU_ASSERT_OK(sp_buddy_free(s, hi)); /* its buddy lo is allocated: no merge */
		want = cur;
		want.nr_free[o]++;
		want.free_pages += 1u << o;
		assert_snap(s, &want, "freeing one of two allocated buddies");
		assert_int_equal(s->pages[pfn_of(s, hi)].info,
				 SP_PG_INFO(SP_PG_FREE, o, SP_KIND_NONE));
		TU_ASSERT_OK(sp_buddy_free(s, lo)); /* merges with hi */
		assert_int_equal(s->hdr->buddy.free_pages, cur.free_pages + (2u << o));
		assert_int_equal(s->pages[pfn_of(s, hi)].info, SP_PG_TAIL);
		{
			uint32_t info = s->pages[pfn_of(s, lo)].info;

			assert_int_equal(SP_PG_STATE(info), SP_PG_FREE);
			assert_true(SP_PG_ORDER(info) > o);
		}
		assert_snap(s, &init, "after freeing every block of one order");
		tu_check_clean(s);
		free(blk);
	}
	tu_seg_free(s);
}

/* Free blocks in a shuffled order: merging does not depend on it. */
static void shuffle(sp_off_t *v, unsigned n, uint64_t *rng)
{
	for (unsigned i = n; i > 1; i--) {
		unsigned j = (unsigned)(tu_rand(rng) % i);
		sp_off_t t = v[i - 1];

		v[i - 1] = v[j];
		v[j] = t;
	}
}

static void exhaust_and_restore(struct sp_seg *s, uint64_t seed)
{
	uint64_t fails = s->hdr->buddy.nr_fail, rng = seed;
	uint32_t cap = s->hdr->nr_pages;
	sp_off_t *blk = calloc(cap + 1, sizeof(*blk)), extra;
	struct snap init, full;
	unsigned n = 0;
	int rc;

	assert_non_null(blk);
	snap_take(s, &init);
	assert_true(init.free_pages > 0);
	while ((rc = sp_buddy_alloc(s, 0, &blk[n])) == 0) {
		fill(s, blk[n], 0, seed + n);
		n++;
		assert_true(n <= cap);
	}
	assert_int_equal(rc, -ENOMEM);
	assert_true(strlen(sp_errmsg()) > 0);
	assert_int_equal(n, init.free_pages); /* every free page was handed out */
	memset(&full, 0, sizeof(full));
	assert_snap(s, &full, "exhausted segment");
	assert_int_equal(s->hdr->buddy.nr_fail, fails + 1);
	for (unsigned o = 0; o <= s->hdr->max_order; o++)
		assert_int_equal(sp_buddy_alloc(s, o, &extra), -ENOMEM);
	tu_check_clean(s);
	for (unsigned i = 0; i < n; i++)
		assert_pattern(s, blk[i], 0, seed + i);
	/* the kmalloc stock still serves small requests */
	if (s->hdr->kmalloc_prefill) {
		TU_ASSERT_OK(sp_kmalloc(s, 64, &extra));
		memset(sp_ptr(s, extra), 0x5a, 64);
		TU_ASSERT_OK(sp_kfree(s, extra));
	}
	shuffle(blk, n, &rng);
	for (unsigned i = 0; i < n; i++)
		TU_ASSERT_OK(sp_buddy_free(s, blk[i]));
	assert_snap(s, &init, "after freeing an exhausted segment");
	tu_check_clean(s);
	free(blk);
}

static void exhaustion(void **state)
{
	struct sp_seg *s = tu_seg_new(8u << 20);

	exhaust_and_restore(s, 1);
	exhaust_and_restore(s, 2); /* and again, from the restored state */
	tu_seg_free(s);
}

static void invalid_frees(void **state)
{
	struct sp_seg *s = tu_seg_new(8u << 20);
	sp_off_t blk, small, large, d = s->hdr->data.off, dend = d + s->hdr->data.size;
	uint32_t pfn = 0, head = 0;
	struct snap cur;
	const sp_off_t outside[] = {
		0, 1, SP_PAGE_SIZE, d - SP_PAGE_SIZE, dend, dend + SP_PAGE_SIZE, s->size,
		s->size + SP_PAGE_SIZE, UINT64_MAX, UINT64_MAX & ~(uint64_t)(SP_PAGE_SIZE - 1),
		d - (uint64_t)s->hdr->nr_pages * SP_PAGE_SIZE,
	};

	TU_ASSERT_OK(sp_buddy_alloc(s, 2, &blk));
	fill(s, blk, 2, 42);
	snap_take(s, &cur);

	/* not the start of the block: tails and unaligned offsets */
	for (unsigned i = 1; i < 4; i++) {
		assert_int_equal(sp_buddy_free(s, blk + i * SP_PAGE_SIZE), -EINVAL);
		assert_true(strlen(sp_errmsg()) > 0);
	}
	assert_int_equal(sp_buddy_free(s, blk + 8), -EINVAL);
	assert_int_equal(sp_buddy_free(s, blk + SP_PAGE_SIZE / 2), -EINVAL);
	assert_int_equal(sp_buddy_free(s, blk - 1), -EINVAL);
	/* not in the data area */
	for (unsigned i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
		if (sp_buddy_free(s, outside[i]) != -EINVAL)
			fail_msg("sp_buddy_free(%#llx) was not refused",
				 (unsigned long long)outside[i]);
	}
	assert_snap(s, &cur, "after refused frees");
	assert_int_equal(s->pages[pfn_of(s, blk)].info, SP_PG_INFO(SP_PG_ALLOC, 2, SP_KIND_RAW));
	assert_pattern(s, blk, 2, 42);
	tu_check_clean(s);

	/* a page of a slab and a large kmalloc block are not raw blocks */
	TU_ASSERT_OK(sp_kmalloc(s, 64, &small));
	TU_ASSERT_OK(sp_kmalloc(s, 3 * SP_PAGE_SIZE, &large));
	snap_take(s, &cur);
	assert_true(sp_off_pfn(s, small, &pfn));
	TU_ASSERT_OK(sp_block_head(s, pfn, &head));
	assert_int_equal(SP_PG_KIND(s->pages[head].info), SP_KIND_SLAB);
	assert_int_equal(sp_buddy_free(s, sp_pfn_off(s, head)), -EINVAL);
	assert_int_equal(sp_buddy_free(s, sp_pfn_off(s, pfn)), -EINVAL);
	assert_int_equal(sp_buddy_free(s, large), -EINVAL);
	assert_int_equal(sp_buddy_free(s, large + SP_PAGE_SIZE), -EINVAL);
	assert_snap(s, &cur, "after refusing to free slab and large pages");
	tu_check_clean(s);
	TU_ASSERT_OK(sp_kfree(s, small));
	TU_ASSERT_OK(sp_kfree(s, large));

	/* a block that is free */
	{
		uint32_t f = s->hdr->buddy.free_head[s->hdr->max_order] - 1;

		assert_true(f < s->hdr->nr_pages);
		snap_take(s, &cur);
		assert_int_equal(sp_buddy_free(s, sp_pfn_off(s, f)), -EINVAL);
		assert_int_equal(sp_buddy_free(s, sp_pfn_off(s, f + 1)), -EINVAL);
		assert_snap(s, &cur, "after refusing to free a free block");
	}

	/* double free, before and after the block merged away */
	snap_take(s, &cur);
	TU_ASSERT_OK(sp_buddy_free(s, blk));
	assert_int_equal(s->hdr->buddy.free_pages, cur.free_pages + 4);
	snap_take(s, &cur);
	assert_int_equal(sp_buddy_free(s, blk), -EINVAL);
	assert_snap(s, &cur, "after a double free");
	tu_check_clean(s);
	tu_seg_free(s);
}

static void order_too_large(void **state)
{
	struct sp_seg *s = tu_seg_new(4u << 20);
	unsigned max = s->hdr->max_order;
	const unsigned bad[] = { max + 1, SP_MAX_ORDER_LIMIT, SP_MAX_ORDER_LIMIT + 1, 63, 255, 256,
				 4096, 0x7fffffffu, 0xffffffffu };
	sp_off_t off = 0x1234;
	struct snap cur;

	snap_take(s, &cur);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (sp_buddy_alloc(s, bad[i], &off) != -EINVAL)
			fail_msg("order %u was not refused with -EINVAL", bad[i]);
		assert_non_null(strstr(sp_errmsg(), "max_order"));
		assert_int_equal(off, 0x1234); /* untouched */
	}
	assert_snap(s, &cur, "after refused orders");
	tu_check_clean(s);
	tu_seg_free(s);
}

static void small_max_order(void **state)
{
	struct sp_seg_params p;
	struct sp_seg *s;
	struct snap init, want, cur;
	sp_off_t off[4];

	/* without stock: the data area is carved into order-3 blocks */
	s = seg_prefill0(3u << 20, 3);
	assert_int_equal(s->hdr->max_order, 3);
	expected_initial(s, &want);
	assert_snap(s, &want, "fresh max_order 3 segment");
	for (unsigned o = 4; o < NORD; o++)
		assert_int_equal(s->hdr->buddy.nr_free[o], 0);
	tu_seg_free(s);

	sp_seg_params_default(&p);
	p.size = 3u << 20;
	p.max_order = 3;
	s = tu_seg_new_params(&p);
	snap_take(s, &init);
	for (unsigned o = 0; o <= 3; o++) {
		snap_take(s, &cur);
		TU_ASSERT_OK(sp_buddy_alloc(s, o, &off[o]));
		assert_raw_block(s, off[o], o);
		assert_int_equal(s->hdr->buddy.free_pages, cur.free_pages - (1u << o));
		fill(s, off[o], o, 7 * o);
	}
	assert_int_equal(sp_buddy_alloc(s, 4, &(sp_off_t){0}), -EINVAL);
	assert_int_equal(sp_buddy_alloc(s, SP_DEFAULT_MAX_ORDER, &(sp_off_t){0}), -EINVAL);
	for (unsigned o = 0; o <= 3; o++) {
		assert_pattern(s, off[o], o, 7 * o);
		TU_ASSERT_OK(sp_buddy_free(s, off[o]));
	}
	assert_snap(s, &init, "max_order 3, after freeing every order");
	/* merging stops at order 3 */
	for (unsigned o = 4; o < NORD; o++)
		assert_int_equal(s->hdr->buddy.nr_free[o], 0);
	tu_check_clean(s);
	exhaust_and_restore(s, 3);
	for (unsigned o = 4; o < NORD; o++)
		assert_int_equal(s->hdr->buddy.nr_free[o], 0);
	tu_seg_free(s);
}

/* ---- another process ---------------------------------------------------- */

struct child_arg {
	const char *name;
	sp_off_t result;	/* offset of a sp_off_t[2] in the segment */
};

static int child_alloc(void *argp)
{
	struct child_arg *a = argp;
	struct sp_seg *t = NULL;
	sp_off_t off, *res;
	uint32_t slot;

	if (sp_seg_attach(a->name, -1, 0, &t))
		return 10;
	if (sp_buddy_alloc(t, 0, &off) != -EPERM) /* no slot yet */
		return 11;
	if (sp_client_register(t, "buddy-child", getpid(), getuid(), getgid(), &slot) ||
	    sp_client_use_slot(t, slot))
		return 12;
	if (sp_buddy_alloc(t, 3, &off))
		return 13;
	fill(t, off, 3, 77);
	res = sp_ptr(t, a->result);
	res[0] = off;
	res[1] = t->owner;
	sp_seg_detach(t);
	return 0;
}

static void other_process(void **state)
{
	struct sp_seg *s = tu_seg_new(8u << 20);
	struct child_arg a = { .name = s->name };
	struct snap init;
	sp_off_t *res, off;

	TU_ASSERT_OK(sp_kmalloc(s, 2 * sizeof(sp_off_t), &a.result));
	snap_take(s, &init);
	assert_int_equal(tu_wait(tu_fork(child_alloc, &a)), 0);
	res = sp_ptr(s, a.result);
	off = res[0];
	assert_int_not_equal(res[1], s->owner);
	assert_int_equal(s->hdr->buddy.free_pages, init.free_pages - 8);
	assert_int_equal(s->pages[pfn_of(s, off)].info, SP_PG_INFO(SP_PG_ALLOC, 3, SP_KIND_RAW));
	assert_int_equal(s->pages[pfn_of(s, off)].slot, res[1]); /* the child's tag */
	assert_pattern(s, off, 3, 77); /* written through the child's mapping */
	tu_check_clean(s);
	TU_ASSERT_OK(sp_buddy_free(s, off));
	assert_snap(s, &init, "after freeing the child's block");
	TU_ASSERT_OK(sp_kfree(s, a.result));
	tu_check_clean(s);
	tu_seg_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(initial_carving),
		cmocka_unit_test(every_order),
		cmocka_unit_test(split_arithmetic),
		cmocka_unit_test(buddies_merge),
		cmocka_unit_test(exhaustion),
		cmocka_unit_test(invalid_frees),
		cmocka_unit_test(order_too_large),
		cmocka_unit_test(small_max_order),
		cmocka_unit_test(other_process),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
