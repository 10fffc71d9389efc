/* SPDX-License-Identifier: MIT */
/*
 * test-mempool.c - named mempools (mempool_t in shared memory), every
 * backing (own slab cache, buddy pages, a shared kmalloc class): the
 * reserve survives an exhausted segment, free refills the reserve first,
 * waiters in other processes wake, timed waits expire, max_nr caps, resize,
 * destroy, refused input and frees, a pool registry of 10,000 pools, and
 * two processes sharing elements through offsets.  For kmalloc backing
 * also: pools sharing a class keep separate reserves, frees of other
 * classes are refused, and the recovery of each interrupted step (put_off,
 * re-tagged entries, no stray RESERVE tag adopted).
 *
 * Children never call cmocka: they report through their exit status (and
 * pipes), and every child arms alarm() so that no test can hang.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-util.h"

static const char *const backing_name[] = { "slab", "pages", "kmalloc" };

/* ---- helpers -------------------------------------------------------------- */

static uint32_t pool_new(struct sp_seg *s, const char *name, uint32_t backing, uint64_t size,
			 uint32_t min, uint32_t max, uint32_t flags)
{
	struct sp_pool_params pp = {
		.elem_size = size, .min_nr = min, .max_nr = max, .backing = backing, .flags = flags,
	};
	uint32_t id = UINT32_MAX;

	TU_ASSERT_OK(sp_pool_create(s, name, &pp, &id));
	assert_non_null(sp_pool_get(s, id));
	assert_int_equal(sp_pool_get(s, id)->min_nr, min);
	assert_int_equal(sp_pool_get(s, id)->curr_nr, min);
	return id;
}

/* Elements the backing has allocated, reserve included. */
static uint64_t backing_used(struct sp_seg *s, struct sp_pool *p)
{
	if (p->backing == SP_BACK_SLAB)
		return sp_caches(s)[p->cache_id].active_objs;
	if (p->backing == SP_BACK_KMALLOC) /* a shared class: the pool's own count */
		return p->nr_objs;
	return p->nr_pages_out;
}

static uint64_t free_pages(struct sp_seg *s)
{
	return s->hdr->buddy.free_pages;
}

static uint16_t elem_owner(struct sp_seg *s, struct sp_pool *p, sp_off_t off)
{
	uint16_t tag = 0xdead;

	TU_ASSERT_OK(sp_pool_elem_owner(s, p, off, &tag));
	return tag;
}

/* What must not change when a call is refused. */
struct snap {
	uint32_t state, min_nr, curr_nr, max_nr;
	uint64_t used, nr_free, nr_alloc, nr_reserve_alloc, free_pages;
	uint32_t live_pools;
};

static struct snap snap_of(struct sp_seg *s, struct sp_pool *p)
{
	struct snap x;

	memset(&x, 0, sizeof(x)); /* padding too: snaps are compared with memcmp */
	x.state = p->state;
	x.min_nr = p->min_nr;
	x.curr_nr = p->curr_nr;
	x.max_nr = p->max_nr;
	x.used = backing_used(s, p);
	x.nr_free = p->nr_free;
	x.nr_alloc = p->nr_alloc;
	x.nr_reserve_alloc = p->nr_reserve_alloc;
	x.free_pages = free_pages(s);
	x.live_pools = s->hdr->nr_live_pools;
	return x;
}

static void snap_equal(struct snap x, struct snap y, const char *what)
{
	const struct snap *a = &x, *b = &y;

	if (memcmp(a, b, sizeof(*a)) != 0)
		fail_msg("%s changed the pool: state %u->%u min %u->%u curr %u->%u max %u->%u "
			 "used %llu->%llu nr_free %llu->%llu nr_alloc %llu->%llu reserve_alloc "
			 "%llu->%llu free_pages %llu->%llu live %u->%u",
			 what, a->state, b->state, a->min_nr, b->min_nr, a->curr_nr, b->curr_nr,
			 a->max_nr, b->max_nr, (unsigned long long)a->used,
			 (unsigned long long)b->used, (unsigned long long)a->nr_free,
			 (unsigned long long)b->nr_free, (unsigned long long)a->nr_alloc,
			 (unsigned long long)b->nr_alloc, (unsigned long long)a->nr_reserve_alloc,
			 (unsigned long long)b->nr_reserve_alloc, (unsigned long long)a->free_pages,
			 (unsigned long long)b->free_pages, a->live_pools, b->live_pools);
}

/* Offsets held outside pools, to be given back at the end. */
enum { HK_KMALLOC, HK_RAW };
struct held {
	sp_off_t *off;
	uint8_t *kind;
	size_t n, cap;
};

static void held_push(struct held *h, sp_off_t off, uint8_t kind)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 256;
		h->off = realloc(h->off, h->cap * sizeof(*h->off));
		h->kind = realloc(h->kind, h->cap * sizeof(*h->kind));
		assert_non_null(h->off);
		assert_non_null(h->kind);
	}
	h->off[h->n] = off;
	h->kind[h->n++] = kind;
}

static void held_release(struct sp_seg *s, struct held *h)
{
	while (h->n) {
		h->n--;
		if (h->kind[h->n] == HK_RAW)
			TU_ASSERT_OK(sp_buddy_free(s, h->off[h->n]));
		else
			TU_ASSERT_OK(sp_kfree(s, h->off[h->n]));
	}
	free(h->off);
	free(h->kind);
	memset(h, 0, sizeof(*h));
}

#define ALLOC_LIMIT (1u << 20) /* no loop below may run away */

/* Take every free page of the segment: large kmalloc, raw pages, small kmalloc. */
static void exhaust_segment(struct sp_seg *s, struct held *h)
{
	sp_off_t off;
	unsigned n;
	int rc = 0;

	for (n = 0; n < ALLOC_LIMIT && (rc = sp_kmalloc(s, 64u << 10, &off)) == 0; n++)
		held_push(h, off, HK_KMALLOC);
	assert_int_equal(rc, -ENOMEM);
	for (n = 0; n < ALLOC_LIMIT && (rc = sp_buddy_alloc(s, 0, &off)) == 0; n++)
		held_push(h, off, HK_RAW);
	assert_int_equal(rc, -ENOMEM);
	for (n = 0; n < ALLOC_LIMIT && (rc = sp_kmalloc(s, 64, &off)) == 0; n++)
		held_push(h, off, HK_KMALLOC);
	assert_int_equal(rc, -ENOMEM);
	assert_int_equal(free_pages(s), 0);
	assert_int_equal(sp_buddy_alloc(s, 0, &off), -ENOMEM);
	assert_int_equal(sp_kmalloc(s, 8192 + 1, &off), -ENOMEM);
}


static int cmp_off(const void *a, const void *b)
{
	sp_off_t x = *(const sp_off_t *)a, y = *(const sp_off_t *)b;

	return x < y ? -1 : x > y;
}

static void assert_distinct(sp_off_t *v, size_t n)
{
	sp_off_t *c = malloc((n + 1) * sizeof(*c));

	assert_non_null(c);
	memcpy(c, v, n * sizeof(*c));
	qsort(c, n, sizeof(*c), cmp_off);
	for (size_t i = 1; i < n; i++)
		if (c[i] == c[i - 1])
			fail_msg("element %#llx handed out twice", (unsigned long long)c[i]);
	free(c);
}

/* ---- the point of a mempool: the reserve outlives an exhausted segment ----- */

static void reserve_survives_exhaustion_one(uint32_t backing)
{
	enum { N = 8 };
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint64_t esize = backing == SP_BACK_PAGES ? 2 * SP_PAGE_SIZE : 200;
	uint32_t id = pool_new(s, "guaranteed", backing, esize, N, 0, 0);
	struct sp_pool *p = sp_pool_get(s, id);
	struct held other = { 0 };
	sp_off_t el[1024], off, back;
	size_t nel = 0;
	uint64_t base_free, from_backing = 0, free_in_backing = 0, used_full, fails;
	uint32_t curr;

	assert_int_equal(backing_used(s, p), N);
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	base_free = free_pages(s);
	exhaust_segment(s, &other);
	if (backing != SP_BACK_PAGES) { /* its own cache, or its class's stock */
		struct sp_cache *c = &sp_caches(s)[p->cache_id];

		free_in_backing = c->total_objs - c->active_objs;
	}
	/* drain the backing: allocations leave the reserve alone until it is empty */
	for (;;) {
		curr = p->curr_nr;
		assert_true(nel < 1024 - N);
		TU_ASSERT_OK(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &el[nel]));
		nel++;
		if (p->curr_nr != curr)
			break;
		from_backing++;
		assert_int_equal(p->nr_reserve_alloc, 0);
		assert_true(from_backing <= free_in_backing);
	}
	assert_int_equal(from_backing, free_in_backing); /* PAGES: buddy is empty, 0 */
	/* that last one came from the reserve; exactly N - 1 more do */
	assert_int_equal(p->curr_nr, N - 1);
	assert_int_equal(p->nr_reserve_alloc, 1);
	used_full = backing_used(s, p);
	for (unsigned i = 1; i < N; i++) {
		TU_ASSERT_OK(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &el[nel]));
		nel++;
		assert_int_equal(p->curr_nr, N - 1 - i);
		assert_int_equal(p->nr_reserve_alloc, 1 + i);
		/* reserve elements were allocated in the backing all along */
		assert_int_equal(backing_used(s, p), used_full);
	}
	assert_int_equal(p->curr_nr, 0);
	assert_int_equal(p->nr_reserve_alloc, N);
	assert_int_equal(sp_pool_nr_out(s, p), nel);
	assert_int_equal(free_pages(s), 0);
	assert_distinct(el, nel);
	for (size_t i = 0; i < nel; i++) {
		assert_int_equal(elem_owner(s, p, el[i]), s->owner);
		memset(sp_ptr(s, el[i]), 0x5a, esize); /* every byte is usable */
	}
	/* now both backing and reserve are empty */
	fails = p->nr_fail;
	assert_int_equal(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &off), -ENOMEM);
	assert_non_null(strstr(sp_errmsg(), "guaranteed"));
	assert_int_equal(p->nr_fail, fails + 1);
	assert_int_equal(sp_pool_alloc(s, p, 0, 0, &off), -ETIMEDOUT);
	tu_check_clean(s);

	/* a free refills the reserve first, and the next alloc gets it back */
	back = el[--nel];
	TU_ASSERT_OK(sp_pool_free(s, p, back));
	assert_int_equal(p->curr_nr, 1);
	assert_int_equal(backing_used(s, p), used_full);
	assert_int_equal(free_pages(s), 0);
	assert_int_equal(elem_owner(s, p, back), SP_OWNER_RESERVE);
	TU_ASSERT_OK(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &off));
	assert_int_equal(off, back);
	assert_int_equal(p->curr_nr, 0);
	assert_int_equal(p->nr_reserve_alloc, N + 1);
	assert_int_equal(elem_owner(s, p, off), s->owner);
	el[nel++] = off;
	tu_check_clean(s);

	/* give everything back: the first N frees refill the reserve */
	for (size_t i = 0; i < nel; i++) {
		TU_ASSERT_OK(sp_pool_free(s, p, el[nel - 1 - i]));
		if (i < N) {
			assert_int_equal(p->curr_nr, i + 1);
			assert_int_equal(backing_used(s, p), used_full);
		} else {
			assert_int_equal(p->curr_nr, N);
			assert_int_equal(backing_used(s, p), used_full - (i + 1 - N));
		}
	}
	assert_int_equal(backing_used(s, p), N);
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	assert_int_equal(p->nr_bad_free, 0);
	held_release(s, &other);
	assert_int_equal(free_pages(s), base_free);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_pool_destroy(s, id));
	tu_check_clean(s);
	tu_seg_free(s);
}

static void reserve_survives_exhaustion(void **state)
{
	reserve_survives_exhaustion_one(SP_BACK_SLAB);
	reserve_survives_exhaustion_one(SP_BACK_PAGES);
	reserve_survives_exhaustion_one(SP_BACK_KMALLOC);
}

/* ---- free refills the reserve first, else returns to the backing ------------ */

static void free_refills_reserve_first_one(uint32_t backing)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint64_t esize = backing == SP_BACK_PAGES ? SP_PAGE_SIZE : 64; /* KMALLOC: one class */
	uint32_t id = pool_new(s, "refill", backing, esize, 4, 6, 0);
	uint32_t id2 = pool_new(s, "plenty", backing, esize, 2, 0, 0);
	struct sp_pool *p = sp_pool_get(s, id), *q = sp_pool_get(s, id2);
	uint64_t pg, fp;
	sp_off_t el[6], x[3], off;

	/* with memory to spare, allocations come from the backing */
	for (int i = 0; i < 3; i++) {
		TU_ASSERT_OK(sp_pool_alloc(s, q, SP_ALLOC_NOWAIT, 0, &x[i]));
		assert_int_equal(q->curr_nr, 2);
		assert_int_equal(backing_used(s, q), 3 + i);
	}
	assert_int_equal(q->nr_reserve_alloc, 0);
	assert_int_equal(sp_pool_nr_out(s, q), 3);
	for (int i = 0; i < 3; i++) { /* reserve is full: straight back to the backing */
		TU_ASSERT_OK(sp_pool_free(s, q, x[i]));
		assert_int_equal(q->curr_nr, 2);
		assert_int_equal(backing_used(s, q), 4 - i);
	}

	/* max_nr 6 with min_nr 4: two from the backing, then the four reserved */
	for (int i = 0; i < 6; i++) {
		TU_ASSERT_OK(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &el[i]));
		assert_int_equal(p->curr_nr, i < 2 ? 4 : 4 - (i - 1));
		assert_int_equal(backing_used(s, p), i < 2 ? 5 + i : 6);
		assert_int_equal(sp_pool_nr_out(s, p), i + 1);
	}
	assert_int_equal(p->nr_reserve_alloc, 4);
	assert_int_equal(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &off), -ENOMEM);
	pg = 1u << p->page_order;
	fp = free_pages(s);
	tu_check_clean(s);
	for (int i = 0; i < 6; i++) {
		TU_ASSERT_OK(sp_pool_free(s, p, el[i]));
		if (i < 4) { /* the reserve takes it: the backing keeps it allocated */
			assert_int_equal(p->curr_nr, i + 1);
			assert_int_equal(backing_used(s, p), 6);
			assert_int_equal(elem_owner(s, p, el[i]), SP_OWNER_RESERVE);
			if (backing == SP_BACK_PAGES)
				assert_int_equal(free_pages(s), fp);
		} else { /* reserve full: the backing gets it */
			assert_int_equal(p->curr_nr, 4);
			assert_int_equal(backing_used(s, p), 6 - (i - 3));
			if (backing == SP_BACK_PAGES)
				assert_int_equal(free_pages(s), fp + (i - 3) * pg);
		}
		assert_int_equal(sp_pool_nr_out(s, p), 5 - i);
		tu_check_clean(s);
	}
	assert_int_equal(p->nr_free, 6);
	assert_int_equal(p->nr_bad_free, 0);
	TU_ASSERT_OK(sp_pool_destroy(s, id));
	TU_ASSERT_OK(sp_pool_destroy(s, id2));
	tu_check_clean(s);
	tu_seg_free(s);
}

static void free_refills_reserve_first(void **state)
{
	free_refills_reserve_first_one(SP_BACK_SLAB);
	free_refills_reserve_first_one(SP_BACK_PAGES);
	free_refills_reserve_first_one(SP_BACK_KMALLOC);
}

/* ---- waiting ---------------------------------------------------------------- */

struct waiter_arg {
	struct sp_seg *s;
	uint32_t id;
	int timeout_ms;
	int fd; /* write end: slot, then the element */
};

static int waiter_child(void *arg)
{
	struct waiter_arg *a = arg;
	struct sp_seg *c;
	struct sp_pool *p;
	sp_off_t off = 0;
	uint32_t slot, id;
	uint16_t tag;

	alarm(20);
	c = tu_child_attach((a->s)->name, "waiter");
	if (!c)
		return 10;
	slot = c->slot;
	if (write(a->fd, &slot, sizeof(slot)) != sizeof(slot))
		return 11;
	if (sp_pool_lookup(c, "waitpool", &id) || id != a->id)
		return 12;
	p = sp_pool_get(c, id); /* this mapping's descriptor */
	if (!p)
		return 13;
	if (sp_pool_alloc(c, p, 0, a->timeout_ms, &off) != 0) {
		fprintf(stderr, "child: sp_pool_alloc: %s\n", sp_errmsg());
		return 14;
	}
	if (sp_pool_elem_owner(c, p, off, &tag) || tag != c->owner)
		return 15;
	memset(sp_ptr(c, off), 0xc5, p->elem_size);
	if (write(a->fd, &off, sizeof(off)) != sizeof(off))
		return 16;
	sp_seg_detach(c);
	return 0; /* exits holding the element: the parent frees it */
}

/*
 * Exhaust a pool - through its max_nr, or (@exhaust) by filling the whole
 * segment and then the pool - block a child in sp_pool_alloc, free one element.
 */
static void waiter_case(uint32_t backing, uint32_t min, uint32_t max, int timeout_ms,
			bool exhaust)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint64_t esize = backing == SP_BACK_PAGES ? SP_PAGE_SIZE : 128;
	uint32_t id = pool_new(s, "waitpool", backing, esize, min, max, 0), slot = UINT32_MAX;
	struct sp_pool *p = sp_pool_get(s, id);
	struct waiter_arg a = { .s = s, .id = id, .timeout_ms = timeout_ms };
	struct held other = { 0 };
	sp_off_t el[1024], got = 0;
	int fds[2], st, i, rc = 0;
	uint32_t nel = 0;
	pid_t pid;
	uint64_t waits;

	if (exhaust)
		exhaust_segment(s, &other);
	while (nel < 1024 && (rc = sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &el[nel])) == 0)
		nel++;
	assert_int_equal(rc, -ENOMEM);
	assert_int_equal(p->curr_nr, 0);
	if (max)
		assert_int_equal(nel, max);
	else
		assert_true(nel >= min);
	if (exhaust)
		assert_int_equal(free_pages(s), 0);
	assert_int_equal(p->nr_waiters, 0);
	waits = p->nr_wait;
	assert_int_equal(pipe(fds), 0);
	a.fd = fds[1];
	pid = tu_fork(waiter_child, &a);
	close(fds[1]);
	/* wait (bounded) until the child sleeps on the pool */
	for (i = 0; i < 10000 && !__atomic_load_n(&p->nr_waiters, __ATOMIC_SEQ_CST); i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			fail_msg("the waiter exited early with status %#x", st);
		usleep(1000);
	}
	if (!p->nr_waiters) {
		kill(pid, SIGKILL);
		tu_wait(pid);
		fail_msg("the child never waited on the pool");
	}
	usleep(20 * 1000);
	assert_int_equal(waitpid(pid, &st, WNOHANG), 0); /* still blocked */
	assert_true(p->nr_wait > waits);
	/* one free must wake it */
	TU_ASSERT_OK(sp_pool_free(s, p, el[nel - 1]));
	assert_int_equal(tu_wait(pid), 0);
	assert_int_equal(read(fds[0], &slot, sizeof(slot)), sizeof(slot));
	assert_int_equal(read(fds[0], &got, sizeof(got)), sizeof(got));
	close(fds[0]);
	assert_true(slot < s->hdr->max_clients && slot != s->slot);
	/* the child holds the element under its own slot; its bytes are visible here */
	assert_int_equal(elem_owner(s, p, got), slot + 1);
	assert_int_equal(((uint8_t *)sp_ptr(s, got))[esize - 1], 0xc5);
	assert_int_equal(p->nr_waiters, 0);
	assert_int_equal(sp_pool_nr_out(s, p), nel);
	assert_int_equal(p->curr_nr, 0);
	tu_check_clean(s); /* the child's slot is still ALIVE: its element is attributed */
	TU_ASSERT_OK(sp_pool_free(s, p, got));
	for (i = 0; i < (int)nel - 1; i++)
		TU_ASSERT_OK(sp_pool_free(s, p, el[i]));
	assert_int_equal(p->curr_nr, min);
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	held_release(s, &other);
	assert_int_equal(sp_client_reap(s), 1);
	TU_ASSERT_OK(sp_slot_release(s, slot, false, NULL));
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_pool_destroy(s, id));
	tu_check_clean(s);
	tu_seg_free(s);
}

static void waiter_in_other_process_wakes(void **state)
{
	/* the free refills the reserve (curr_nr < min_nr) and wakes */
	waiter_case(SP_BACK_SLAB, 2, 2, -1, false);
	waiter_case(SP_BACK_PAGES, 2, 2, 30000, false);
	/* no reserve: the free goes to the backing and wakes */
	waiter_case(SP_BACK_SLAB, 0, 1, 30000, false);
	waiter_case(SP_BACK_PAGES, 0, 1, -1, false);
	/* the whole segment is full: only the reserve can serve the waiter */
	waiter_case(SP_BACK_SLAB, 3, 0, -1, true);
	waiter_case(SP_BACK_PAGES, 3, 0, 30000, true);
	/* a shared kmalloc class: the same three ways */
	waiter_case(SP_BACK_KMALLOC, 2, 2, 30000, false);
	waiter_case(SP_BACK_KMALLOC, 0, 1, -1, false);
	waiter_case(SP_BACK_KMALLOC, 3, 0, -1, true);
}

/* Wait (bounded) until *word == want; false on timeout. */
static bool poll_u32(uint32_t *word, uint32_t want)
{
	for (int i = 0; i < 10000; i++) {
		if (__atomic_load_n(word, __ATOMIC_SEQ_CST) == want)
			return true;
		usleep(1000);
	}
	return false;
}

/* Reap one exited child within 10 s: its index, or -1 after killing them all. */
static int wait_any(pid_t *pids, int n, int *status)
{
	for (int i = 0; i < 10000; i++) {
		for (int k = 0; k < n; k++) {
			int st;

			if (pids[k] > 0 && waitpid(pids[k], &st, WNOHANG) == pids[k]) {
				pids[k] = 0;
				*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
				return k;
			}
		}
		usleep(1000);
	}
	for (int k = 0; k < n; k++) {
		if (pids[k] > 0) {
			kill(pids[k], SIGKILL);
			tu_wait(pids[k]);
			pids[k] = 0;
		}
	}
	return -1;
}

static int short_lived(void *arg)
{
	struct sp_seg *c = tu_child_attach(((struct sp_seg *)arg)->name, "short-lived");

	return c ? 0 : 1; /* exits without unregistering: a death */
}

/*
 * A wake-up can die with the waiter it was meant for; the others must not
 * sleep on beside a free element.  Here the element appears without any
 * wake-up at all (the segment-wide shortage ends by a plain free of other
 * memory, which wakes no pool waiter), and the next client death found -
 * sp_client_mark_dead() - wakes the waiter, which then allocates.
 */
static void waiter_woken_by_a_death_one(uint32_t backing)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint64_t esize = backing == SP_BACK_PAGES ? SP_PAGE_SIZE : 128;
	uint32_t id = pool_new(s, "waitpool", backing, esize, 2, 0, 0), slot, nel = 0;
	struct sp_pool *p = sp_pool_get(s, id);
	struct waiter_arg a = { .s = s, .id = id, .timeout_ms = -1 };
	struct held other = { 0 };
	sp_off_t el[64], got;
	int fds[2], st, rc = 0;
	uint64_t waits;
	pid_t pid;

	exhaust_segment(s, &other);
	while (nel < 64 && (rc = sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &el[nel])) == 0)
		nel++;
	assert_int_equal(rc, -ENOMEM);
	assert_int_equal(pipe(fds), 0);
	a.fd = fds[1];
	waits = __atomic_load_n(&p->nr_wait, __ATOMIC_SEQ_CST);
	pid = tu_fork(waiter_child, &a);
	close(fds[1]);
	if (!poll_u32(&p->nr_waiters, 1))
		fail_msg("the child never waited on the pool");
	/* and past its last look at the backing (nr_waiters is raised before
	 * it, nr_wait after it failed): a release before that would serve it */
	for (int i = 0; i < 10000 && __atomic_load_n(&p->nr_wait, __ATOMIC_SEQ_CST) == waits; i++)
		usleep(1000);
	assert_true(__atomic_load_n(&p->nr_wait, __ATOMIC_SEQ_CST) > waits);
	held_release(s, &other); /* the backing could serve it now: nobody says so */
	usleep(50 * 1000);
	assert_int_equal(waitpid(pid, &st, WNOHANG), 0);
	assert_int_equal(tu_wait(tu_fork(short_lived, s)), 0);
	assert_int_equal(sp_client_reap(s), 1); /* marks it dead: wakes the waiter */
	assert_int_equal(tu_wait(pid), 0);
	assert_int_equal(read(fds[0], &slot, sizeof(slot)), sizeof(slot));
	assert_int_equal(read(fds[0], &got, sizeof(got)), sizeof(got));
	close(fds[0]);
	assert_int_equal(elem_owner(s, p, got), slot + 1);
	TU_ASSERT_OK(sp_pool_free(s, p, got));
	for (uint32_t i = 0; i < nel; i++)
		TU_ASSERT_OK(sp_pool_free(s, p, el[i]));
	assert_int_equal(sp_client_reap(s), 1); /* the waiter */
	for (uint32_t i = 0; i < s->hdr->max_clients; i++)
		if (sp_clients(s)[i].state == SP_CLIENT_DEAD)
			TU_ASSERT_OK(sp_slot_release(s, i, false, NULL));
	tu_check_clean(s);
	TU_ASSERT_OK(sp_pool_destroy(s, id));
	tu_seg_free(s);
}

static void waiter_woken_by_a_death(void **state)
{
	(void)state;
	waiter_woken_by_a_death_one(SP_BACK_SLAB);
	waiter_woken_by_a_death_one(SP_BACK_PAGES);
	waiter_woken_by_a_death_one(SP_BACK_KMALLOC);
}

/* Three processes wait; every free wakes exactly one of them. */
static void several_waiters_one(uint32_t backing)
{
	enum { NW = 3 };
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint32_t id = pool_new(s, "waitpool", backing, 256, 2, 2, 0);
	struct sp_pool *p = sp_pool_get(s, id);
	struct waiter_arg a = { .s = s, .id = id, .timeout_ms = -1 };
	sp_off_t el[2], got[NW], off;
	uint32_t slot[NW];
	pid_t pids[NW];
	int rfd[NW], fds[2], st;

	TU_ASSERT_OK(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &el[0]));
	TU_ASSERT_OK(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &el[1]));
	assert_int_equal(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &off), -ENOMEM);
	for (int k = 0; k < NW; k++) {
		assert_int_equal(pipe(fds), 0);
		a.fd = fds[1];
		pids[k] = tu_fork(waiter_child, &a);
		close(fds[1]);
		rfd[k] = fds[0];
	}
	if (!poll_u32(&p->nr_waiters, NW)) {
		uint32_t nw = p->nr_waiters;

		for (int k = 0; k < NW; k++) {
			kill(pids[k], SIGKILL);
			tu_wait(pids[k]);
		}
		fail_msg("only %u of %d children wait", nw, NW);
	}
	for (int k = 0; k < NW; k++) {
		int j;

		/* free one element: exactly one child gets it and exits */
		TU_ASSERT_OK(sp_pool_free(s, p, k < 2 ? el[k] : got[0]));
		j = wait_any(pids, NW, &st);
		if (j < 0)
			fail_msg("no waiter woke after free %d", k + 1);
		assert_int_equal(st, 0);
		assert_int_equal(read(rfd[j], &slot[k], sizeof(slot[k])), sizeof(slot[k]));
		assert_int_equal(read(rfd[j], &got[k], sizeof(got[k])), sizeof(got[k]));
		close(rfd[j]);
		assert_int_equal(elem_owner(s, p, got[k]), slot[k] + 1);
		if (!poll_u32(&p->nr_waiters, NW - 1 - k))
			fail_msg("%u waiters left after %d frees, want %d", p->nr_waiters, k + 1,
				 NW - 1 - k);
		/* the others are still asleep */
		for (int m = 0; m < NW; m++)
			if (pids[m])
				assert_int_equal(waitpid(pids[m], &st, WNOHANG), 0);
	}
	assert_int_equal(got[2], got[0]); /* the element freed last went round */
	assert_int_equal(sp_pool_nr_out(s, p), 2);
	TU_ASSERT_OK(sp_pool_free(s, p, got[1]));
	TU_ASSERT_OK(sp_pool_free(s, p, got[2]));
	assert_int_equal(p->curr_nr, 2);
	assert_int_equal(sp_client_reap(s), NW);
	for (int k = 0; k < NW; k++)
		TU_ASSERT_OK(sp_slot_release(s, slot[k], false, NULL));
	TU_ASSERT_OK(sp_pool_destroy(s, id));
	tu_check_clean(s);
	tu_seg_free(s);
}

static void several_waiters(void **state)
{
	several_waiters_one(SP_BACK_SLAB);
	several_waiters_one(SP_BACK_PAGES);
	several_waiters_one(SP_BACK_KMALLOC);
}

struct timed_arg {
	struct sp_seg *s;
	uint32_t id;
	int fd; /* write end: rc, off, elapsed ms */
};

/* The timed wait runs in a child under alarm(): a wait that never expires
 * fails the test instead of hanging it. */
static int timed_child(void *arg)
{
	struct timed_arg *a = arg;
	struct sp_seg *c;
	struct sp_pool *p;
	sp_off_t off = 0;
	uint64_t t0, t1;
	int64_t msg[3];
	int rc;

	alarm(10);
	c = tu_child_attach((a->s)->name, "timed");
	if (!c || !(p = sp_pool_get(c, a->id)))
		return 10;
	t0 = sp_now_ms();
	rc = sp_pool_alloc(c, p, 0, 200, &off);
	t1 = sp_now_ms();
	if (rc == -ETIMEDOUT && !strstr(sp_errmsg(), "200 ms"))
		return 11;
	msg[0] = rc;
	msg[1] = (int64_t)off;
	msg[2] = (int64_t)(t1 - t0);
	if (write(a->fd, msg, sizeof(msg)) != sizeof(msg))
		return 12;
	sp_client_unregister(c, c->slot);
	sp_seg_detach(c);
	return 0;
}

static void timed_wait_expires_one(uint32_t backing)
{
	struct sp_seg *s = tu_seg_new(8u << 20);
	uint32_t id = pool_new(s, "timed", backing, 100, 1, 1, 0);
	struct sp_pool *p = sp_pool_get(s, id);
	struct timed_arg ta = { .s = s, .id = id };
	sp_off_t a, off = 0;
	uint64_t fails, waits;
	int64_t msg[3];
	int fds[2];
	pid_t pid;

	TU_ASSERT_OK(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &a));
	fails = p->nr_fail;
	waits = p->nr_wait;
	assert_int_equal(pipe(fds), 0);
	ta.fd = fds[1];
	pid = tu_fork(timed_child, &ta);
	close(fds[1]);
	assert_int_equal(tu_wait(pid), 0);
	assert_int_equal(read(fds[0], msg, sizeof(msg)), sizeof(msg));
	close(fds[0]);
	assert_int_equal(msg[0], -ETIMEDOUT);
	assert_int_equal(msg[1], 0);	   /* nothing handed out */
	assert_true(msg[2] >= 200);	   /* waited at least the timeout */
	assert_int_equal(p->nr_waiters, 0);
	assert_int_equal(p->nr_fail, fails + 1);
	assert_true(p->nr_wait > waits);
	assert_int_equal(sp_pool_nr_out(s, p), 1);
	TU_ASSERT_OK(sp_pool_free(s, p, a));
	/* something free: a timed alloc returns at once */
	TU_ASSERT_OK(sp_pool_alloc(s, p, 0, 200, &off));
	assert_int_equal(off, a);
	TU_ASSERT_OK(sp_pool_free(s, p, off));
	TU_ASSERT_OK(sp_pool_destroy(s, id)); /* no waiter left registered */
	tu_check_clean(s);
	tu_seg_free(s);
}

static void timed_wait_expires(void **state)
{
	timed_wait_expires_one(SP_BACK_SLAB);
	timed_wait_expires_one(SP_BACK_PAGES);
	timed_wait_expires_one(SP_BACK_KMALLOC);
}

/* ---- max_nr -------------------------------------------------------------------- */

static void max_nr_caps_one(uint32_t backing)
{
	static const struct { uint32_t min, max; } cases[] = { { 2, 5 }, { 0, 3 }, { 3, 3 } };
	struct sp_seg *s = tu_seg_new(16u << 20);
	struct sp_pool_params pp = { .elem_size = 300, .min_nr = 4, .max_nr = 3, .backing = backing };
	uint32_t id = 77, live = s->hdr->nr_live_pools;
	uint64_t fp = free_pages(s);
	sp_off_t el[8], off;

	assert_int_equal(sp_pool_create(s, "capped", &pp, &id), -EINVAL);
	assert_non_null(strstr(sp_errmsg(), "max_nr"));
	assert_int_equal(id, 77);
	assert_int_equal(sp_pool_lookup(s, "capped", &id), -ENOENT);
	assert_int_equal(s->hdr->nr_live_pools, live);
	assert_int_equal(free_pages(s), fp);
	for (unsigned k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct sp_pool *p;
		uint32_t n;

		id = pool_new(s, "capped", backing, 300, cases[k].min, cases[k].max, 0);
		p = sp_pool_get(s, id);
		for (n = 0; n < 8; n++)
			if (sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &el[n]) != 0)
				break;
		assert_int_equal(n, cases[k].max); /* reserve + out never exceed max_nr */
		assert_int_equal(sp_pool_nr_out(s, p), cases[k].max);
		assert_int_equal(p->curr_nr, 0);
		assert_int_equal(backing_used(s, p), cases[k].max);
		assert_int_equal(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &off), -ENOMEM);
		/* the cap is not a memory shortage: the segment still has room */
		assert_true(free_pages(s) > 100);
		/* resizing beyond max_nr is refused */
		assert_int_equal(sp_pool_resize(s, p, cases[k].max + 1), -EINVAL);
		assert_int_equal(p->min_nr, cases[k].min);
		/* one back, one more out */
		TU_ASSERT_OK(sp_pool_free(s, p, el[0]));
		TU_ASSERT_OK(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &el[0]));
		assert_int_equal(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &off), -ENOMEM);
		tu_check_clean(s);
		for (uint32_t i = 0; i < n; i++)
			TU_ASSERT_OK(sp_pool_free(s, p, el[i]));
		assert_int_equal(p->curr_nr, cases[k].min);
		assert_int_equal(backing_used(s, p), cases[k].min);
		TU_ASSERT_OK(sp_pool_destroy(s, id));
	}
	tu_check_clean(s);
	assert_int_equal(free_pages(s), fp);
	tu_seg_free(s);
}

static void max_nr_caps(void **state)
{
	max_nr_caps_one(SP_BACK_SLAB);
	max_nr_caps_one(SP_BACK_PAGES);
	max_nr_caps_one(SP_BACK_KMALLOC);
}

/* ---- resize --------------------------------------------------------------------- */

static void resize_one(uint32_t backing)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint64_t esize = backing == SP_BACK_PAGES ? SP_PAGE_SIZE : 1000;
	uint32_t id = pool_new(s, "elastic", backing, esize, 2, 0, 0), huge;
	struct sp_pool *p = sp_pool_get(s, id);
	uint64_t fp = free_pages(s), before;
	sp_off_t a, b;

	/* up: the reserve is filled from the backing */
	TU_ASSERT_OK(sp_pool_resize(s, p, 10));
	assert_int_equal(p->min_nr, 10);
	assert_int_equal(p->curr_nr, 10);
	assert_int_equal(backing_used(s, p), 10);
	if (backing == SP_BACK_PAGES)
		assert_int_equal(free_pages(s), fp - 8);
	tu_check_clean(s);
	/* down: the surplus goes back */
	TU_ASSERT_OK(sp_pool_resize(s, p, 3));
	assert_int_equal(p->min_nr, 3);
	assert_int_equal(p->curr_nr, 3);
	assert_int_equal(backing_used(s, p), 3);
	if (backing == SP_BACK_PAGES)
		assert_int_equal(free_pages(s), fp - 1);
	tu_check_clean(s);
	/* down while elements are out: only the reserve beyond the new min goes */
	TU_ASSERT_OK(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &a));
	TU_ASSERT_OK(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &b));
	assert_int_equal(p->curr_nr, 3); /* from the backing */
	TU_ASSERT_OK(sp_pool_resize(s, p, 1));
	assert_int_equal(p->curr_nr, 1);
	assert_int_equal(backing_used(s, p), 3);
	assert_int_equal(sp_pool_nr_out(s, p), 2);
	TU_ASSERT_OK(sp_pool_free(s, p, a));
	TU_ASSERT_OK(sp_pool_free(s, p, b));
	assert_int_equal(p->curr_nr, 1);
	assert_int_equal(backing_used(s, p), 1);
	TU_ASSERT_OK(sp_pool_resize(s, p, 0));
	assert_int_equal(p->curr_nr, 0);
	assert_int_equal(backing_used(s, p), 0);
	TU_ASSERT_OK(sp_pool_resize(s, p, 4));
	assert_int_equal(p->curr_nr, 4);
	tu_check_clean(s);

	/* up beyond what fits: -ENOMEM, min_nr unchanged, nothing leaked */
	huge = backing == SP_BACK_PAGES ? 5000 : 20000; /* > 16 MiB of elements */
	before = free_pages(s);
	assert_int_equal(sp_pool_resize(s, p, huge), -ENOMEM);
	assert_non_null(strstr(sp_errmsg(), "elastic"));
	assert_int_equal(p->min_nr, 4);
	assert_int_equal(p->curr_nr, 4);
	assert_int_equal(backing_used(s, p), 4);
	assert_int_equal(free_pages(s), before);
	tu_check_clean(s);
	/* and beyond any possible array: refused the same way */
	assert_int_equal(sp_pool_resize(s, p, 1u << 24), -ENOMEM);
	assert_int_equal(p->min_nr, 4);
	assert_int_equal(free_pages(s), before);
	assert_int_equal(sp_pool_resize(s, p, (1u << 24) + 1), -EINVAL);
	assert_int_equal(p->min_nr, 4);
	/* still fully usable */
	TU_ASSERT_OK(sp_pool_resize(s, p, 6));
	assert_int_equal(p->curr_nr, 6);
	TU_ASSERT_OK(sp_pool_destroy(s, id));
	tu_check_clean(s);
	tu_seg_free(s);
}

static void resize(void **state)
{
	resize_one(SP_BACK_SLAB);
	resize_one(SP_BACK_PAGES);
	resize_one(SP_BACK_KMALLOC);
}

/* ---- destroy ----------------------------------------------------------------------- */

static void destroy_one(uint32_t backing)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint64_t fp = free_pages(s);
	uint32_t live = s->hdr->nr_live_pools, id, id2, found;
	uint64_t esize = backing == SP_BACK_PAGES ? 3 * SP_PAGE_SIZE : 512;
	struct sp_pool *p;
	struct snap before;
	sp_off_t a, b;

	id = pool_new(s, "doomed", backing, esize, 3, 0, 0);
	p = sp_pool_get(s, id);
	assert_int_equal(s->hdr->nr_live_pools, live + 1);
	TU_ASSERT_OK(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &a));
	TU_ASSERT_OK(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &b));
	before = snap_of(s, p);
	assert_int_equal(sp_pool_destroy(s, id), -EBUSY);
	assert_non_null(strstr(sp_errmsg(), "2 elements out"));
	snap_equal(before, snap_of(s, p), "destroy with elements out");
	assert_ptr_equal(sp_pool_get(s, id), p);
	TU_ASSERT_OK(sp_pool_lookup(s, "doomed", &found));
	assert_int_equal(found, id);
	assert_int_equal(elem_owner(s, p, a), s->owner);
	tu_check_clean(s);
	/* still a working pool */
	TU_ASSERT_OK(sp_pool_free(s, p, a));
	assert_int_equal(sp_pool_destroy(s, id), -EBUSY);
	assert_non_null(strstr(sp_errmsg(), "1 elements out"));
	TU_ASSERT_OK(sp_pool_free(s, p, b));
	TU_ASSERT_OK(sp_pool_destroy(s, id));
	assert_null(sp_pool_get(s, id));
	assert_int_equal(sp_pool_lookup(s, "doomed", &found), -ENOENT);
	assert_int_equal(sp_pool_destroy(s, id), -ENOENT);
	assert_int_equal(s->hdr->nr_live_pools, live);
	assert_int_equal(free_pages(s), fp);
	if (backing == SP_BACK_SLAB)
		assert_int_equal(sp_caches(s)[sp_pool_cache_id(s, id)].state, SP_DESC_FREE);
	tu_check_clean(s);
	/* the name is free again, for either backing */
	id2 = pool_new(s, "doomed", !backing, 100, 5, 0, 0);
	TU_ASSERT_OK(sp_pool_lookup(s, "doomed", &found));
	assert_int_equal(found, id2);
	assert_int_equal(sp_pool_get(s, id2)->backing, !backing);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_pool_destroy(s, id2));
	assert_int_equal(free_pages(s), fp);
	assert_int_equal(sp_pool_lookup(s, "doomed", &found), -ENOENT);
	tu_check_clean(s);
	tu_seg_free(s);
}

static void destroy(void **state)
{
	destroy_one(SP_BACK_SLAB);
	destroy_one(SP_BACK_PAGES);
	destroy_one(SP_BACK_KMALLOC);
}

/* ---- refused input ---------------------------------------------------------------- */

static void expect_create_fails(struct sp_seg *s, const char *name, uint64_t esize,
				uint32_t min, uint32_t max, uint32_t backing, uint32_t flags,
				int want)
{
	struct sp_pool_params pp = {
		.elem_size = esize, .min_nr = min, .max_nr = max, .backing = backing, .flags = flags,
	};
	uint32_t id = 12345, live = s->hdr->nr_live_pools;
	uint64_t fp = free_pages(s);
	int rc = sp_pool_create(s, name, &pp, &id);

	if (rc != want)
		fail_msg("create(%s, size %llu, min %u, %s) returned %d (%s), want %d", name,
			 (unsigned long long)esize, min, backing < 3 ? backing_name[backing] : "?",
			 rc, sp_errmsg(), want);
	assert_true(strlen(sp_errmsg()) > 0);
	assert_int_equal(id, 12345);
	assert_int_equal(s->hdr->nr_live_pools, live);
	assert_int_equal(free_pages(s), fp);
	for (uint32_t i = 0; i < s->hdr->max_pools; i++) {
		assert_int_equal(sp_pools(s)[i].state == SP_DESC_LIVE, i < live);
		if (i >= live)
			assert_int_equal(sp_caches(s)[sp_pool_cache_id(s, i)].state, SP_DESC_FREE);
	}
	tu_check_clean(s);
}

static void bad_create(void **state)
{
	struct sp_seg_params sp;
	struct sp_seg *s;
	char name[80];
	uint32_t id, id2;

	sp_seg_params_default(&sp);
	sp.size = 16u << 20;
	sp.max_pools = 2;
	s = tu_seg_new_params(&sp);
	for (int b = 0; b < 3; b++) {
		expect_create_fails(s, "", 64, 1, 0, b, 0, -EINVAL);
		expect_create_fails(s, NULL, 64, 1, 0, b, 0, -EINVAL);
		expect_create_fails(s, "a/b", 64, 1, 0, b, 0, -EINVAL);
		expect_create_fails(s, "a b", 64, 1, 0, b, 0, -EINVAL);
		expect_create_fails(s, "tab\there", 64, 1, 0, b, 0, -EINVAL);
		expect_create_fails(s, "caf\xc3\xa9", 64, 1, 0, b, 0, -EINVAL);
		memset(name, 'n', 64);
		name[64] = '\0';
		expect_create_fails(s, name, 64, 1, 0, b, 0, -ENAMETOOLONG);
		expect_create_fails(s, "zero", 0, 1, 0, b, 0, -EINVAL);
		expect_create_fails(s, "huge", s->size + 1, 1, 0, b, 0, -EINVAL);
		expect_create_fails(s, "huge", UINT64_MAX, 1, 0, b, 0, -EINVAL);
		/* larger than the largest block (PAGES) or a slab object (SLAB) */
		expect_create_fails(s, "huge", 8u << 20, 0, 0, b, 0, -EINVAL);
		/* min_nr that cannot fit: obviously, and only once tried */
		expect_create_fails(s, "fat", 4096, 5000, 0, b, 0, -ENOMEM);
		expect_create_fails(s, "fat", 64, UINT32_MAX, 0, b, 0, -ENOMEM);
		/* passes the size estimate, fails while filling the reserve */
		expect_create_fails(s, "fat", b == SP_BACK_PAGES ? 4096 : 1000,
				    (b == SP_BACK_PAGES ? 1 : 4) * s->hdr->nr_pages, 0, b, 0, -ENOMEM);
		expect_create_fails(s, "fat", 8, 600000, 0, b, 0, -ENOMEM); /* array too big */
		expect_create_fails(s, "capped", 64, 5, 4, b, 0, -EINVAL);
		expect_create_fails(s, "flags", 64, 1, 0, b, 0x80, -EINVAL);
	}
	expect_create_fails(s, "backing", 64, 1, 0, 7, 0, -EINVAL);
	/* a kmalloc class: up to 8 KiB, shared, so no reclaim, debug flags, alignment */
	expect_create_fails(s, "kbig", SP_KMALLOC_MAX + 1, 1, 0, SP_BACK_KMALLOC, 0, -EINVAL);
	assert_non_null(strstr(sp_errmsg(), "largest kmalloc class"));
	expect_create_fails(s, "krec", 64, 1, 0, SP_BACK_KMALLOC, SP_POOL_RECLAIM_ON_EXIT, -EINVAL);
	assert_non_null(strstr(sp_errmsg(), "reclaim-on-exit"));
	{
		struct sp_pool_params pp = { .elem_size = 64, .min_nr = 1,
					     .backing = SP_BACK_KMALLOC };

		pp.cache_flags = SP_CACHE_POISON;
		assert_int_equal(sp_pool_create(s, "kdbg", &pp, &id), -EINVAL);
		assert_non_null(strstr(sp_errmsg(), "need slab backing"));
		pp.cache_flags = 0;
		pp.align = 64;
		assert_int_equal(sp_pool_create(s, "kalign", &pp, &id), -EINVAL);
		assert_non_null(strstr(sp_errmsg(), "align"));
		assert_int_equal(s->hdr->nr_live_pools, 0);
	}
	/* no table slot was consumed: both fit, in slots 0 and 1 */
	memset(name, 'n', 63);
	name[63] = '\0';
	id = pool_new(s, name, SP_BACK_SLAB, 64, 1, 0, 0); /* 63 characters is fine */
	assert_int_equal(id, 0);
	{
		struct sp_pool_params pp = { .elem_size = 32, .min_nr = 1, .backing = SP_BACK_PAGES };

		assert_int_equal(sp_pool_create(s, name, &pp, &id2), -EEXIST);
		assert_non_null(strstr(sp_errmsg(), "already exists"));
		assert_int_equal(sp_pool_get(s, id)->elem_size, 64);
		assert_int_equal(sp_pool_get(s, id)->backing, SP_BACK_SLAB);
		tu_check_clean(s);
	}
	id2 = pool_new(s, "A-z_0.9", SP_BACK_PAGES, 64, 1, 0, 0);
	assert_int_equal(id2, 1);
	expect_create_fails(s, "third", 64, 1, 0, SP_BACK_SLAB, 0, -ENFILE);
	assert_int_equal(sp_pool_lookup(s, "", &id), -EINVAL);
	assert_int_equal(sp_pool_lookup(s, "no-such", &id), -ENOENT);
	assert_int_equal(id, 0);
	TU_ASSERT_OK(sp_pool_destroy(s, 0));
	TU_ASSERT_OK(sp_pool_destroy(s, id2));
	assert_int_equal(sp_pool_destroy(s, 2), -ENOENT);
	tu_check_clean(s);
	tu_seg_free(s);
}

/* A refused free: -EINVAL, counted, nothing else changed in any pool. */
static void expect_bad_free(struct sp_seg *s, struct sp_pool *p, sp_off_t off,
			    struct sp_pool **others, int nothers, const char *what)
{
	struct snap b = snap_of(s, p), ob[4];
	uint64_t bad = p->nr_bad_free;
	int rc;

	for (int i = 0; i < nothers; i++)
		ob[i] = snap_of(s, others[i]);
	rc = sp_pool_free(s, p, off);
	if (rc != -EINVAL)
		fail_msg("freeing %s (%#llx) into pool %s returned %d, want -EINVAL", what,
			 (unsigned long long)off, p->name, rc);
	assert_true(strlen(sp_errmsg()) > 0);
	assert_int_equal(p->nr_bad_free, bad + 1);
	snap_equal(b, snap_of(s, p), what);
	for (int i = 0; i < nothers; i++)
		snap_equal(ob[i], snap_of(s, others[i]), what);
}

static void bad_free_one(uint32_t backing)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint64_t esize = backing == SP_BACK_SLAB ? 96 : 2 * SP_PAGE_SIZE;
	/* a: reserve full, frees go to the backing; r: reserve in use, frees refill it */
	uint32_t ida = pool_new(s, "a", backing, esize, 2, 0, 0);
	uint32_t idr = pool_new(s, "r", backing, esize, 2, 3, 0);
	uint32_t idb = pool_new(s, "b", backing, esize, 2, 0, 0);
	uint32_t idc = pool_new(s, "c", !backing, esize, 2, 0, 0);
	struct sp_pool *a = sp_pool_get(s, ida), *r = sp_pool_get(s, idr);
	struct sp_pool *b = sp_pool_get(s, idb), *c = sp_pool_get(s, idc);
	struct sp_pool *all[4] = { a, r, b, c };
	sp_off_t a1, a2, r1, r2, r3, b1, c1, k, raw, big, gone;
	uint64_t ksz;

	TU_ASSERT_OK(sp_pool_alloc(s, a, SP_ALLOC_NOWAIT, 0, &a1));
	TU_ASSERT_OK(sp_pool_alloc(s, a, SP_ALLOC_NOWAIT, 0, &a2));
	assert_int_equal(a->curr_nr, 2); /* from the backing */
	TU_ASSERT_OK(sp_pool_alloc(s, r, SP_ALLOC_NOWAIT, 0, &r1));
	TU_ASSERT_OK(sp_pool_alloc(s, r, SP_ALLOC_NOWAIT, 0, &r2));
	assert_int_equal(r->curr_nr, 1); /* r2 came from the reserve: frees refill it */
	TU_ASSERT_OK(sp_pool_alloc(s, b, SP_ALLOC_NOWAIT, 0, &b1));
	TU_ASSERT_OK(sp_pool_alloc(s, c, SP_ALLOC_NOWAIT, 0, &c1));
	TU_ASSERT_OK(sp_kmalloc(s, 64, &k));
	TU_ASSERT_OK(sp_kmalloc(s, 3 * SP_PAGE_SIZE, &big));
	TU_ASSERT_OK(sp_buddy_alloc(s, 1, &raw));
	/* a freed element that nothing reuses in between */
	TU_ASSERT_OK(sp_pool_alloc(s, b, SP_ALLOC_NOWAIT, 0, &gone));
	TU_ASSERT_OK(sp_pool_free(s, b, gone));

	for (int i = 0; i < 2; i++) {
		struct sp_pool *p = i ? r : a;
		sp_off_t mine = i ? r1 : a1;
		struct sp_pool *rest[3];
		int n = 0;

		for (int j = 0; j < 4; j++)
			if (all[j] != p)
				rest[n++] = all[j];
		expect_bad_free(s, p, 0, rest, n, "offset 0");
		expect_bad_free(s, p, 64, rest, n, "the header");
		expect_bad_free(s, p, s->hdr->pages.off, rest, n, "page metadata");
		expect_bad_free(s, p, s->size + SP_PAGE_SIZE, rest, n, "beyond the segment");
		expect_bad_free(s, p, UINT64_MAX - 7, rest, n, "an absurd offset");
		expect_bad_free(s, p, k, rest, n, "a kmalloc object");
		expect_bad_free(s, p, big, rest, n, "a large kmalloc block");
		expect_bad_free(s, p, raw, rest, n, "raw buddy pages");
		expect_bad_free(s, p, b1, rest, n, "another pool's element");
		expect_bad_free(s, p, c1, rest, n, "an element of a pool of the other backing");
		expect_bad_free(s, p, gone, rest, n, "another pool's freed element");
		expect_bad_free(s, p, mine + 8, rest, n, "the middle of an element");
		expect_bad_free(s, p, mine + esize / 2, rest, n, "the middle of an element");
		expect_bad_free(s, p, mine - 8, rest, n, "just before an element");
		expect_bad_free(s, p, ((sp_off_t *)sp_ptr(s, p->elements_off))[0], rest, n,
				"an element in the reserve");
		assert_int_equal(elem_owner(s, p, mine), s->owner);
	}
	/* double free through the backing path */
	TU_ASSERT_OK(sp_pool_free(s, a, a1));
	assert_int_equal(a->curr_nr, 2);
	expect_bad_free(s, a, a1, (struct sp_pool *[]){ r, b, c }, 3, "a double free");
	/* a reserve element freed twice while the reserve is short (reserve path) */
	TU_ASSERT_OK(sp_pool_alloc(s, r, SP_ALLOC_NOWAIT, 0, &r3));
	assert_int_equal(r->curr_nr, 0);
	TU_ASSERT_OK(sp_pool_free(s, r, r2));
	assert_int_equal(r->curr_nr, 1);
	assert_int_equal(elem_owner(s, r, r2), SP_OWNER_RESERVE);
	expect_bad_free(s, r, r2, (struct sp_pool *[]){ a, b, c }, 3,
			"a reserve element freed twice (reserve short)");
	/* ... and once the reserve is full again (backing path) */
	TU_ASSERT_OK(sp_pool_free(s, r, r3));
	assert_int_equal(r->curr_nr, 2);
	expect_bad_free(s, r, r3, (struct sp_pool *[]){ a, b, c }, 3,
			"a reserve element freed twice (reserve full)");
	expect_bad_free(s, r, r2, (struct sp_pool *[]){ a, b, c }, 3,
			"a reserve element freed twice (reserve full)");
	/* the last one goes to the backing; freeing it again is a double free */
	TU_ASSERT_OK(sp_pool_free(s, r, r1));
	assert_int_equal(sp_pool_nr_out(s, r), 0);
	expect_bad_free(s, r, r1, (struct sp_pool *[]){ a, b, c }, 3, "a double free");
	/* every victim survived */
	assert_int_equal(elem_owner(s, b, b1), s->owner);
	assert_int_equal(elem_owner(s, c, c1), s->owner);
	TU_ASSERT_OK(sp_ksize(s, k, &ksz));
	assert_int_equal(ksz, 64);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_pool_free(s, a, a2));
	TU_ASSERT_OK(sp_pool_free(s, b, b1));
	TU_ASSERT_OK(sp_pool_free(s, c, c1));
	TU_ASSERT_OK(sp_kfree(s, k));
	TU_ASSERT_OK(sp_kfree(s, big));
	TU_ASSERT_OK(sp_buddy_free(s, raw));
	for (int j = 0; j < 4; j++) {
		assert_int_equal(all[j]->curr_nr, all[j]->min_nr);
		assert_int_equal(sp_pool_nr_out(s, all[j]), 0);
	}
	TU_ASSERT_OK(sp_pool_destroy(s, ida));
	TU_ASSERT_OK(sp_pool_destroy(s, idr));
	TU_ASSERT_OK(sp_pool_destroy(s, idb));
	TU_ASSERT_OK(sp_pool_destroy(s, idc));
	tu_check_clean(s);
	tu_seg_free(s);
}

static void bad_free(void **state)
{
	bad_free_one(SP_BACK_SLAB);
	bad_free_one(SP_BACK_PAGES);
}


/* ---- a shared kmalloc class as the backing ------------------------------------------ */

/* The owner tag of object @off of kmalloc class @cls (tests are single-threaded here). */
static uint16_t *class_tag(struct sp_seg *s, int cls, sp_off_t off)
{
	struct sp_cache *c = &sp_caches(s)[cls];
	struct sp_slab *slab;
	uint32_t idx;

	TU_ASSERT_OK(sp_cache_obj_locate(s, c, off, &slab, &idx));
	assert_true(slab->bitmap[idx / 64] >> (idx % 64) & 1);
	return &sp_slab_owners(c, slab)[idx];
}

static bool class_allocated(struct sp_seg *s, int cls, sp_off_t off)
{
	struct sp_cache *c = &sp_caches(s)[cls];
	struct sp_slab *slab;
	uint32_t idx;

	TU_ASSERT_OK(sp_cache_obj_locate(s, c, off, &slab, &idx));
	return slab->bitmap[idx / 64] >> (idx % 64) & 1;
}

static sp_off_t *reserve_of(struct sp_seg *s, struct sp_pool *p)
{
	return sp_ptr(s, p->elements_off);
}

/* Does the checker report @what (with or without its locks)? */
static bool reports(struct sp_seg *s, int flags, const char *what)
{
	struct sp_report r = { .cap = 64 };
	bool found = false;

	r.v = calloc(r.cap, sizeof(*r.v));
	assert_non_null(r.v);
	assert_true(sp_check(s, flags, &r) > 0);
	for (unsigned i = 0; i < r.nr && i < r.cap; i++)
		found |= strstr(r.v[i].what, what) != NULL;
	sp_report_free(&r);
	return found;
}

/*
 * Two pools on one class keep their own reserves: resizing one leaves the
 * other alone, elements of both (and sp_kmalloc()) are distinct objects of
 * the class, and each pool's count follows only its own elements.
 */
static void kmalloc_shared_class(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	int cls = sp_kmalloc_class(96);
	struct sp_cache *c = &sp_caches(s)[cls];
	uint64_t active0 = c->active_objs, ksz;
	uint32_t i1 = pool_new(s, "k1", SP_BACK_KMALLOC, 90, 4, 0, 0);
	uint32_t i2 = pool_new(s, "k2", SP_BACK_KMALLOC, 96, 3, 0, 0);
	struct sp_pool *k1 = sp_pool_get(s, i1), *k2 = sp_pool_get(s, i2);
	sp_off_t v[64], r2[3], k;
	uint32_t n = 0;

	assert_int_equal(k1->cache_id, cls);
	assert_int_equal(k2->cache_id, cls);
	assert_int_equal(c->active_objs, active0 + 7);
	assert_int_equal(sp_pool_nr_out(s, k1), 0);
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(*class_tag(s, cls, reserve_of(s, k1)[i]), SP_OWNER_RESERVE);
	memcpy(r2, reserve_of(s, k2), sizeof(r2));
	tu_check_clean(s);

	/* resizing one reserve leaves the other's alone */
	TU_ASSERT_OK(sp_pool_resize(s, k1, 10));
	assert_int_equal(k1->curr_nr, 10);
	assert_int_equal(k1->nr_objs, 10);
	assert_int_equal(k2->curr_nr, 3);
	assert_int_equal(k2->nr_objs, 3);
	assert_memory_equal(reserve_of(s, k2), r2, sizeof(r2));
	assert_int_equal(c->active_objs, active0 + 13);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_pool_resize(s, k2, 1));
	assert_int_equal(k1->curr_nr, 10);
	assert_int_equal(k2->curr_nr, 1);
	assert_int_equal(c->active_objs, active0 + 11);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_pool_resize(s, k1, 4));
	TU_ASSERT_OK(sp_pool_resize(s, k2, 3));
	assert_int_equal(k1->curr_nr, 4);
	assert_int_equal(k2->curr_nr, 3);
	assert_int_equal(c->active_objs, active0 + 7);
	tu_check_clean(s);

	/* elements of both, and sp_kmalloc() of the size: distinct objects */
	for (int i = 0; i < 5; i++) {
		TU_ASSERT_OK(sp_pool_alloc(s, k1, SP_ALLOC_NOWAIT, 0, &v[n++]));
		TU_ASSERT_OK(sp_pool_alloc(s, k2, SP_ALLOC_NOWAIT, 0, &v[n++]));
	}
	TU_ASSERT_OK(sp_kmalloc(s, 96, &k));
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(*class_tag(s, cls, v[i]), s->owner);
		TU_ASSERT_OK(sp_ksize(s, v[i], &ksz));
		assert_int_equal(ksz, 96);
	}
	memcpy(v + n, reserve_of(s, k1), 4 * sizeof(*v));
	memcpy(v + n + 4, reserve_of(s, k2), 3 * sizeof(*v));
	v[n + 7] = k;
	assert_distinct(v, n + 8);
	assert_int_equal(k1->curr_nr, 4); /* the class had room: the reserves stay */
	assert_int_equal(k2->curr_nr, 3);
	assert_int_equal(sp_pool_nr_out(s, k1), 5);
	assert_int_equal(sp_pool_nr_out(s, k2), 5);
	assert_int_equal(c->active_objs, active0 + 7 + 11);
	tu_check_clean(s);
	/* a shrunk reserve refills from frees, each pool from its own */
	TU_ASSERT_OK(sp_pool_resize(s, k2, 0));
	TU_ASSERT_OK(sp_pool_resize(s, k2, 3));
	assert_int_equal(k2->curr_nr, 3);
	for (uint32_t i = 0; i < n; i++)
		TU_ASSERT_OK(sp_pool_free(s, i % 2 ? k2 : k1, v[i]));
	assert_int_equal(sp_pool_nr_out(s, k1), 0);
	assert_int_equal(sp_pool_nr_out(s, k2), 0);
	assert_int_equal(k1->nr_bad_free + k2->nr_bad_free, 0);
	TU_ASSERT_OK(sp_kfree(s, k));
	assert_int_equal(c->active_objs, active0 + 7);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_pool_destroy(s, i1));
	assert_int_equal(k2->curr_nr, 3);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_pool_destroy(s, i2));
	assert_int_equal(c->active_objs, active0);
	tu_check_clean(s);
	tu_seg_free(s);
}

/*
 * What a pool on a shared class can refuse: anything not an object of its
 * class, what is in its reserve, double frees; and an object of the class
 * while it has nothing out.  sp_kfree() refuses a reserve element.
 */
static void kmalloc_refused_frees(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	int cls = sp_kmalloc_class(96);
	uint32_t ia = pool_new(s, "ka", SP_BACK_KMALLOC, 96, 2, 0, 0);
	uint32_t ib = pool_new(s, "kb", SP_BACK_KMALLOC, 96, 2, 0, 0);
	uint32_t ir = pool_new(s, "kr", SP_BACK_KMALLOC, 96, 2, 3, 0);
	uint32_t ic = pool_new(s, "kc", SP_BACK_KMALLOC, 200, 2, 0, 0);
	uint32_t is = pool_new(s, "sl", SP_BACK_SLAB, 96, 2, 0, 0);
	struct sp_pool *a = sp_pool_get(s, ia), *b = sp_pool_get(s, ib), *r = sp_pool_get(s, ir);
	struct sp_pool *c = sp_pool_get(s, ic), *sl = sp_pool_get(s, is);
	struct sp_pool *others[4] = { b, r, c, sl };
	sp_off_t a1, c1, s1, k64, k96, big, res, r1, r2, r3;

	TU_ASSERT_OK(sp_pool_alloc(s, a, SP_ALLOC_NOWAIT, 0, &a1));
	TU_ASSERT_OK(sp_pool_alloc(s, c, SP_ALLOC_NOWAIT, 0, &c1));
	TU_ASSERT_OK(sp_pool_alloc(s, sl, SP_ALLOC_NOWAIT, 0, &s1));
	TU_ASSERT_OK(sp_kmalloc(s, 64, &k64));
	TU_ASSERT_OK(sp_kmalloc(s, 96, &k96));
	TU_ASSERT_OK(sp_kmalloc(s, 20000, &big));
	res = reserve_of(s, a)[0];

	/* not an object of its class: refused, saying so */
	expect_bad_free(s, a, c1, others, 4, "an element of a pool of another class");
	assert_non_null(strstr(sp_errmsg(), "not an element of pool ka"));
	expect_bad_free(s, a, s1, others, 4, "an element of a slab-backed pool");
	assert_non_null(strstr(sp_errmsg(), "not an element of pool ka"));
	expect_bad_free(s, a, k64, others, 4, "a kmalloc object of another class");
	expect_bad_free(s, a, big, others, 4, "a large kmalloc block");
	expect_bad_free(s, a, 0, others, 4, "offset 0");
	expect_bad_free(s, a, s->size + 4096, others, 4, "beyond the segment");
	expect_bad_free(s, a, a1 + 8, others, 4, "the middle of an element");
	expect_bad_free(s, a, res, others, 4, "an element in the reserve");
	/* b has nothing out: no object of the class can be its element */
	others[0] = a;
	expect_bad_free(s, b, a1, others, 4, "another pool's element, none out");
	assert_non_null(strstr(sp_errmsg(), "no elements out"));
	expect_bad_free(s, b, k96, others, 4, "a kmalloc object of the class, none out");
	/* sp_kfree() of a reserve element: refused, the reserve intact */
	assert_int_equal(sp_kfree(s, res), -EINVAL);
	assert_non_null(strstr(sp_errmsg(), "reserve"));
	assert_int_equal(*class_tag(s, cls, res), SP_OWNER_RESERVE);
	tu_check_clean(s);

	/* double frees: to the class (reserve full), and into the reserve */
	TU_ASSERT_OK(sp_pool_free(s, a, a1));
	others[0] = b;
	expect_bad_free(s, a, a1, others, 4, "a double free (class)");
	TU_ASSERT_OK(sp_pool_alloc(s, r, SP_ALLOC_NOWAIT, 0, &r1)); /* from the class */
	TU_ASSERT_OK(sp_pool_alloc(s, r, SP_ALLOC_NOWAIT, 0, &r2)); /* max_nr: the reserve */
	TU_ASSERT_OK(sp_pool_alloc(s, r, SP_ALLOC_NOWAIT, 0, &r3));
	assert_int_equal(r->curr_nr, 0);
	assert_int_equal(r->nr_objs, 3);
	assert_int_equal(sp_pool_alloc(s, r, SP_ALLOC_NOWAIT, 0, &res), -ENOMEM);
	TU_ASSERT_OK(sp_pool_free(s, r, r2));
	assert_int_equal(r->curr_nr, 1);
	others[1] = a;
	expect_bad_free(s, r, r2, others, 4, "a double free (reserve)");
	TU_ASSERT_OK(sp_pool_free(s, r, r3));
	TU_ASSERT_OK(sp_pool_free(s, r, r1));
	assert_int_equal(r->curr_nr, 2);
	assert_int_equal(r->nr_objs, 2);
	TU_ASSERT_OK(sp_pool_free(s, c, c1));
	TU_ASSERT_OK(sp_pool_free(s, sl, s1));
	TU_ASSERT_OK(sp_kfree(s, k64));
	TU_ASSERT_OK(sp_kfree(s, k96));
	TU_ASSERT_OK(sp_kfree(s, big));
	tu_check_clean(s);
	TU_ASSERT_OK(sp_pool_destroy(s, ia));
	TU_ASSERT_OK(sp_pool_destroy(s, ib));
	TU_ASSERT_OK(sp_pool_destroy(s, ir));
	TU_ASSERT_OK(sp_pool_destroy(s, ic));
	TU_ASSERT_OK(sp_pool_destroy(s, is));
	tu_check_clean(s);
	tu_seg_free(s);
}

/*
 * Recovery of a pool on a shared class, from each state a kill -9 can
 * leave (set up by hand under the pool lock, as the dead process would
 * have left it): put_off and the reserve entries are the only truth, and
 * a stray RESERVE tag of the class is adopted by no pool.
 */
static void kmalloc_recovery(void **state)
{
	struct sp_seg *s = tu_seg_new(8u << 20);
	int cls = sp_kmalloc_class(64);
	uint32_t ia = pool_new(s, "ra", SP_BACK_KMALLOC, 64, 4, 6, 0);
	uint32_t ib = pool_new(s, "rb", SP_BACK_KMALLOC, 64, 4, 0, 0);
	struct sp_pool *a = sp_pool_get(s, ia), *b = sp_pool_get(s, ib);
	sp_off_t e[4], rb[4], last, x, k;
	uint64_t ksz;

	for (int i = 0; i < 4; i++) /* two from the class (max_nr), two from the reserve */
		TU_ASSERT_OK(sp_pool_alloc(s, a, SP_ALLOC_NOWAIT, 0, &e[i]));
	assert_int_equal(a->curr_nr, 2);
	assert_int_equal(a->nr_objs, 6);
	memcpy(rb, reserve_of(s, b), sizeof(rb));

	/* a put cut short after its tag: it joins the reserve */
	TU_ASSERT_OK(sp_pool_lock(s, a));
	a->put_off = e[3];
	*class_tag(s, cls, e[3]) = SP_OWNER_RESERVE;
	sp_pool_recover_locked(s, a);
	sp_pool_unlock(a);
	assert_int_equal(a->curr_nr, 3);
	assert_int_equal(reserve_of(s, a)[2], e[3]);
	assert_int_equal(a->put_off, 0);
	assert_int_equal(a->nr_objs, 6);
	tu_check_clean(s);

	/* a put cut short before its tag: its holder keeps it */
	TU_ASSERT_OK(sp_pool_lock(s, a));
	a->put_off = e[2];
	sp_pool_recover_locked(s, a);
	sp_pool_unlock(a);
	assert_int_equal(a->curr_nr, 3);
	assert_int_equal(*class_tag(s, cls, e[2]), s->owner);
	assert_int_equal(a->put_off, 0);
	tu_check_clean(s);

	/* a take cut short before its commit: back to RESERVE */
	last = reserve_of(s, a)[2];
	TU_ASSERT_OK(sp_pool_lock(s, a));
	*class_tag(s, cls, last) = s->owner;
	sp_pool_recover_locked(s, a);
	sp_pool_unlock(a);
	assert_int_equal(a->curr_nr, 3);
	assert_int_equal(*class_tag(s, cls, last), SP_OWNER_RESERVE);
	tu_check_clean(s);

	/* a drain cut short before its commit: back to RESERVE */
	TU_ASSERT_OK(sp_pool_lock(s, a));
	a->put_off = last;
	*class_tag(s, cls, last) = SP_OWNER_INTERNAL;
	sp_pool_recover_locked(s, a);
	sp_pool_unlock(a);
	assert_int_equal(a->curr_nr, 3);
	assert_int_equal(*class_tag(s, cls, last), SP_OWNER_RESERVE);
	assert_int_equal(a->put_off, 0);
	tu_check_clean(s);

	/* a drain cut short after its commit: the element goes back to the class */
	TU_ASSERT_OK(sp_pool_lock(s, a));
	a->put_off = last;
	*class_tag(s, cls, last) = SP_OWNER_INTERNAL;
	a->curr_nr--;
	sp_pool_recover_locked(s, a);
	sp_pool_unlock(a);
	assert_int_equal(a->curr_nr, 2);
	assert_false(class_allocated(s, cls, last));
	assert_int_equal(a->nr_objs, 5);
	assert_int_equal(a->put_off, 0);
	tu_check_clean(s);

	/* a fill cut short before its tag: the same */
	TU_ASSERT_OK(sp_registry_lock(s));
	TU_ASSERT_OK(sp_pool_lock(s, a));
	TU_ASSERT_OK(sp_kmalloc_owner(s, 64, SP_OWNER_INTERNAL, &x));
	a->nr_objs++;
	a->put_off = x;
	sp_pool_recover_locked(s, a);
	sp_pool_unlock(a);
	sp_registry_unlock(s);
	assert_false(class_allocated(s, cls, x));
	assert_int_equal(a->nr_objs, 5);
	assert_int_equal(a->curr_nr, 2);
	tu_check_clean(s);

	/* a RESERVE tag on an object of the class that no reserve lists: the
	 * checker reports it, and no pool's recovery adopts it */
	TU_ASSERT_OK(sp_kmalloc(s, 64, &k));
	*class_tag(s, cls, k) = SP_OWNER_RESERVE;
	assert_true(reports(s, 0, "objects tagged RESERVE"));
	assert_true(reports(s, SP_CHECK_NOLOCK, "objects tagged RESERVE"));
	for (int i = 0; i < 2; i++) {
		struct sp_pool *p = i ? b : a;

		TU_ASSERT_OK(sp_pool_lock(s, p));
		sp_pool_recover_locked(s, p);
		sp_pool_unlock(p);
	}
	assert_int_equal(a->curr_nr, 2);
	assert_int_equal(b->curr_nr, 4);
	assert_int_equal(*class_tag(s, cls, k), SP_OWNER_RESERVE);
	/* and sp_kfree() will not free it either */
	assert_int_equal(sp_kfree(s, k), -EINVAL);
	*class_tag(s, cls, k) = s->owner;
	TU_ASSERT_OK(sp_ksize(s, k, &ksz));
	TU_ASSERT_OK(sp_kfree(s, k));
	tu_check_clean(s);

	/* the other pool of the class never noticed */
	assert_memory_equal(reserve_of(s, b), rb, sizeof(rb));
	assert_int_equal(b->nr_objs, 4);
	/* and the count stayed exact: e[3] joined the reserve, was drained */
	for (int i = 0; i < 3; i++)
		TU_ASSERT_OK(sp_pool_free(s, a, e[i]));
	assert_int_equal(a->curr_nr, 4);
	assert_int_equal(a->nr_objs, 4);
	assert_int_equal(sp_pool_nr_out(s, a), 0);
	tu_check_clean(s);
	TU_ASSERT_OK(sp_pool_destroy(s, ia));
	TU_ASSERT_OK(sp_pool_destroy(s, ib));
	tu_check_clean(s);
	tu_seg_free(s);
}

struct kholder_arg {
	const char *shm_name;
	uint32_t id;
	int n;
};

/* Take n elements and exit holding them. */
static int kholder_child(void *arg)
{
	struct kholder_arg *a = arg;
	struct sp_seg *c;
	struct sp_pool *p;
	sp_off_t off;

	alarm(20);
	c = tu_child_attach(a->shm_name, "kholder");
	if (!c || !(p = sp_pool_get(c, a->id)))
		return 10;
	for (int i = 0; i < a->n; i++)
		if (sp_pool_alloc(c, p, SP_ALLOC_NOWAIT, 0, &off))
			return 11;
	return 0;
}

/*
 * A dead process's elements of a pool on a shared class: attributed to its
 * slot, kept by the automatic (reclaim-only) release, freed as objects of
 * the class by an explicit one - after which the pool's count is clamped to
 * what the class's users hold, and destroy recounts.
 */
static void kmalloc_dead_holder(void **state)
{
	struct sp_seg *s = tu_seg_new(8u << 20);
	uint32_t id = pool_new(s, "kd", SP_BACK_KMALLOC, 48, 2, 8, 0), slot;
	struct sp_pool *p = sp_pool_get(s, id);
	struct kholder_arg a = { s->name, id, 5 };
	struct sp_holdings h;
	sp_off_t mine, v[16];
	uint32_t n = 0;

	assert_int_equal(tu_wait(tu_fork(kholder_child, &a)), 0);
	assert_int_equal(sp_client_reap(s), 1);
	for (slot = 0; slot < s->hdr->max_clients; slot++)
		if (sp_clients(s)[slot].state == SP_CLIENT_DEAD)
			break;
	assert_true(slot < s->hdr->max_clients);
	assert_int_equal(sp_pool_nr_out(s, p), 5);
	TU_ASSERT_OK(sp_slot_holdings(s, slot, &h));
	assert_int_equal(h.objects, 5); /* objects of a kmalloc class, as far as it knows */
	tu_check_clean(s);
	assert_int_equal(sp_pool_destroy(s, id), -EBUSY);
	assert_non_null(strstr(sp_errmsg(), "5 elements out"));
	/* the daemon's release on death: nothing to reclaim here */
	TU_ASSERT_OK(sp_slot_release(s, slot, true, NULL));
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_DEAD);
	assert_int_equal(sp_pool_nr_out(s, p), 5);
	/* an explicit release: back to the class; the count follows what users hold */
	TU_ASSERT_OK(sp_kmalloc(s, 48, &mine));
	TU_ASSERT_OK(sp_slot_release(s, slot, false, NULL));
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	assert_int_equal(sp_pool_nr_out(s, p), 1); /* could be ours: mine */
	assert_int_equal(p->curr_nr, 2);
	tu_check_clean(s);
	/* max_nr 8 still holds, one short for the element it cannot rule out */
	while (n < 16 && sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &v[n]) == 0)
		n++;
	assert_int_equal(n, 7);
	assert_int_equal(p->curr_nr, 0);
	while (n)
		TU_ASSERT_OK(sp_pool_free(s, p, v[--n]));
	assert_int_equal(sp_pool_nr_out(s, p), 1);
	assert_int_equal(sp_pool_destroy(s, id), -EBUSY);
	assert_non_null(strstr(sp_errmsg(), "1 elements out"));
	TU_ASSERT_OK(sp_kfree(s, mine));
	TU_ASSERT_OK(sp_pool_destroy(s, id)); /* nobody holds an object of the class */
	tu_check_clean(s);
	tu_seg_free(s);
}

/* ---- registry scale ---------------------------------------------------------------- */

static void registry_scale(void **state)
{
	enum { NPOOLS = 10000 };
	struct sp_seg_params sp;
	struct sp_seg *s;
	uint32_t *ids = calloc(NPOOLS, sizeof(*ids)), found;
	uint64_t fp, t0 = sp_now_ms();
	char name[32];

	assert_non_null(ids);
	sp_seg_params_default(&sp);
	sp.size = 256u << 20;
	sp.max_pools = NPOOLS;
	s = tu_seg_new_params(&sp);
	fp = free_pages(s);
	for (uint32_t i = 0; i < NPOOLS; i++) {
		struct sp_pool_params pp = {
			.elem_size = 32 + (i % 7) * 8, .min_nr = i % 2, .backing = (i / 2) % 2,
		};

		snprintf(name, sizeof(name), "pool-%05u", i);
		TU_ASSERT_OK(sp_pool_create(s, name, &pp, &ids[i]));
	}
	assert_int_equal(s->hdr->nr_live_pools, NPOOLS);
	{
		struct sp_pool_params pp = { .elem_size = 8 };

		assert_int_equal(sp_pool_create(s, "one-too-many", &pp, &found), -ENFILE);
	}
	for (uint32_t i = 0; i < NPOOLS; i++) {
		struct sp_pool *p;

		snprintf(name, sizeof(name), "pool-%05u", i);
		TU_ASSERT_OK(sp_pool_lookup(s, name, &found));
		assert_int_equal(found, ids[i]);
		p = sp_pool_get(s, found);
		assert_non_null(p);
		assert_string_equal(p->name, name);
		assert_int_equal(p->curr_nr, i % 2);
		assert_int_equal(p->backing, (i / 2) % 2);
	}
	assert_int_equal(sp_pool_lookup(s, "pool-10000", &found), -ENOENT);
	tu_check_clean(s);
	for (uint32_t i = 0; i < NPOOLS; i++)
		TU_ASSERT_OK(sp_pool_destroy(s, ids[(i * 7919u) % NPOOLS])); /* scattered order */
	assert_int_equal(s->hdr->nr_live_pools, 0);
	for (uint32_t i = 0; i < NPOOLS; i += 97) {
		snprintf(name, sizeof(name), "pool-%05u", i);
		assert_int_equal(sp_pool_lookup(s, name, &found), -ENOENT);
	}
	/* the names work again after all those deletions */
	for (uint32_t i = 0; i < 100; i++) {
		struct sp_pool_params pp = { .elem_size = 64, .min_nr = 1 };

		snprintf(name, sizeof(name), "pool-%05u", i * 13);
		TU_ASSERT_OK(sp_pool_create(s, name, &pp, &ids[i]));
	}
	for (uint32_t i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "pool-%05u", i * 13);
		TU_ASSERT_OK(sp_pool_lookup(s, name, &found));
		assert_int_equal(found, ids[i]);
		TU_ASSERT_OK(sp_pool_destroy(s, found));
	}
	tu_check_clean(s);
	/* everything the pools held came back (kmalloc keeps its stock slabs) */
	assert_true(free_pages(s) + 64 >= fp);
	fprintf(stderr, "registry_scale: %u pools in %llu ms\n", NPOOLS,
		(unsigned long long)(sp_now_ms() - t0));
	free(ids);
	tu_seg_free(s);
}

/* ---- two processes share a pool through offsets ------------------------------------ */

struct share_arg {
	struct sp_seg *s;
	sp_off_t table; /* kmalloc'd by the parent: NSHARE offsets */
	int nshare;
};

static int share_child(void *arg)
{
	struct share_arg *a = arg;
	struct sp_seg *c;
	struct sp_pool *p;
	sp_off_t *table;
	uint32_t id;

	alarm(20);
	c = tu_child_attach((a->s)->name, "sharer");
	if (!c)
		return 10;
	if (sp_pool_lookup(c, "shared", &id))
		return 11;
	p = sp_pool_get(c, id);
	table = sp_ptr_checked(c, a->table, a->nshare * sizeof(sp_off_t), 8);
	if (!p || !table)
		return 12;
	for (int i = 0; i < a->nshare; i++) {
		sp_off_t off;
		uint8_t *e;

		if (sp_pool_alloc(c, p, SP_ALLOC_NOWAIT, 0, &off))
			return 13;
		e = sp_ptr(c, off);
		for (uint64_t j = 0; j < p->elem_size; j++)
			e[j] = (uint8_t)(i * 31 + j);
		snprintf((char *)e, p->elem_size, "elem %d of %d", i, (int)getpid());
		__atomic_store_n(&table[i], off, __ATOMIC_RELEASE);
	}
	sp_client_unregister(c, c->slot); /* holds elements: the slot stays DEAD */
	sp_seg_detach(c);
	return 0;
}

static void share_one(uint32_t backing)
{
	enum { NSHARE = 12 };
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint64_t esize = backing == SP_BACK_PAGES ? 5000 : 256;
	uint32_t id = pool_new(s, "shared", backing, esize, 4, 0, 0);
	struct sp_pool *p = sp_pool_get(s, id);
	struct share_arg a = { .s = s, .nshare = NSHARE };
	sp_off_t *table;
	pid_t pid;
	uint32_t slot = UINT32_MAX;
	char want[64];

	TU_ASSERT_OK(sp_kmalloc(s, NSHARE * sizeof(sp_off_t), &a.table));
	table = sp_ptr(s, a.table);
	memset(table, 0, NSHARE * sizeof(sp_off_t));
	pid = tu_fork(share_child, &a);
	assert_int_equal(tu_wait(pid), 0);
	assert_int_equal(sp_pool_nr_out(s, p), NSHARE);
	assert_distinct(table, NSHARE);
	for (int i = 0; i < NSHARE; i++) {
		uint8_t *e = sp_ptr(s, table[i]);
		uint16_t tag = elem_owner(s, p, table[i]);

		assert_non_null(e);
		assert_ptr_not_equal(e, (uint8_t *)(uintptr_t)table[i]);
		snprintf(want, sizeof(want), "elem %d of %d", i, (int)pid);
		assert_string_equal((char *)e, want);
		for (uint64_t j = strlen(want) + 1; j < esize; j++)
			if (e[j] != (uint8_t)(i * 31 + j))
				fail_msg("element %d byte %llu differs", i, (unsigned long long)j);
		assert_true(tag != s->owner && tag >= 1 && tag <= s->hdr->max_clients);
		if (slot == UINT32_MAX)
			slot = tag - 1u;
		assert_int_equal(tag, slot + 1);
	}
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_DEAD);
	assert_int_equal(sp_clients(s)[slot].pid, pid);
	tu_check_clean(s);
	for (int i = 0; i < NSHARE; i++)
		TU_ASSERT_OK(sp_pool_free(s, p, table[i]));
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	assert_int_equal(p->curr_nr, 4);
	TU_ASSERT_OK(sp_slot_release(s, slot, false, NULL)); /* holds nothing now */
	assert_int_equal(sp_clients(s)[slot].state, SP_CLIENT_FREE);
	TU_ASSERT_OK(sp_kfree(s, a.table));
	TU_ASSERT_OK(sp_pool_destroy(s, id));
	tu_check_clean(s);
	tu_seg_free(s);
}

static void two_processes_share(void **state)
{
	share_one(SP_BACK_SLAB);
	share_one(SP_BACK_PAGES);
	share_one(SP_BACK_KMALLOC);
}

/*
 * A pool's locked path with the caller's kept snapshot of its backing cache
 * (sp_pool_backing_snapshot(), what a client handle keeps) does not read the
 * cache descriptor again: scribbled on (magic, pool_id), the kept snapshot
 * still serves alloc and free, while a call without one reads it and
 * refuses; another pool's snapshot is not taken for this pool's.
 */
static void kept_backing_snapshot(void **state)
{
	struct sp_seg *s = tu_seg_new(16u << 20);
	uint32_t id = pool_new(s, "kept", SP_BACK_SLAB, 48, 2, 0, 0);
	uint32_t other = pool_new(s, "other", SP_BACK_SLAB, 48, 2, 0, 0);
	struct sp_pool *p = sp_pool_get(s, id);
	struct sp_cache *c = &sp_caches(s)[sp_pool_cache_id(s, id)], snap, osnap;
	uint32_t magic = c->magic, pool_id = c->pool_id;
	sp_off_t e[3];

	(void)state;
	TU_ASSERT_OK(sp_pool_backing_snapshot(s, p, &snap));
	TU_ASSERT_OK(sp_pool_backing_snapshot(s, sp_pool_get(s, other), &osnap));
	TU_ASSERT_OK(sp_pool_alloc_geo(s, p, &snap, SP_ALLOC_NOWAIT, -1, &e[0]));
	TU_ASSERT_OK(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, -1, &e[1]));
	c->magic ^= 1;
	c->pool_id = 0;
	assert_int_equal(sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, -1, &e[2]), -ENOENT);
	assert_int_equal(sp_pool_free(s, p, e[1]), -ENOENT);
	assert_int_equal(sp_pool_alloc_geo(s, p, &osnap, SP_ALLOC_NOWAIT, -1, &e[2]), -ENOENT);
	TU_ASSERT_OK(sp_pool_alloc_geo(s, p, &snap, SP_ALLOC_NOWAIT, -1, &e[2]));
	TU_ASSERT_OK(sp_pool_free_geo(s, p, &snap, e[2]));
	assert_int_equal(sp_pool_free_geo(s, p, &snap, e[2]), -EINVAL); /* still checked */
	TU_ASSERT_OK(sp_pool_free_geo(s, p, &snap, e[1]));
	c->magic = magic;
	c->pool_id = pool_id;
	tu_check_clean(s);
	/* another pool's snapshot: the descriptor is read, as without one */
	TU_ASSERT_OK(sp_pool_free_geo(s, p, &osnap, e[0]));
	assert_int_equal(sp_pool_nr_out(s, p), 0);
	assert_int_equal(p->nr_bad_free, 2); /* the refused free and the double free */
	TU_ASSERT_OK(sp_pool_destroy(s, id));
	TU_ASSERT_OK(sp_pool_destroy(s, other));
	tu_check_clean(s);
	tu_seg_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reserve_survives_exhaustion),
		cmocka_unit_test(free_refills_reserve_first),
		cmocka_unit_test(waiter_in_other_process_wakes),
		cmocka_unit_test(waiter_woken_by_a_death),
		cmocka_unit_test(several_waiters),
		cmocka_unit_test(timed_wait_expires),
		cmocka_unit_test(max_nr_caps),
		cmocka_unit_test(resize),
		cmocka_unit_test(destroy),
		cmocka_unit_test(bad_create),
		cmocka_unit_test(bad_free),
		cmocka_unit_test(kmalloc_shared_class),
		cmocka_unit_test(kmalloc_refused_frees),
		cmocka_unit_test(kmalloc_recovery),
		cmocka_unit_test(kmalloc_dead_holder),
		cmocka_unit_test(registry_scale),
		cmocka_unit_test(two_processes_share),
		cmocka_unit_test(kept_backing_snapshot),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
