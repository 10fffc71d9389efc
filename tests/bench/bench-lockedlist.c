/* SPDX-License-Identifier: MIT */
/*
 * bench-lockedlist.c - the baseline shmpool's locked path is measured
 * against: a free list of fixed-size nodes in shared memory, guarded by one
 * pthread mutex with PTHREAD_PROCESS_SHARED and PTHREAD_MUTEX_ROBUST, and
 * nothing else: no owner tags, no bitmaps, no validation of frees, no
 * statistics.  With --pi the mutex is also PTHREAD_PRIO_INHERIT, the kind
 * shmpool's locks are (a robust mutex's wake-up dies with a waiter killed
 * before it takes the lock; see docs/RELIABILITY.md), and the rows are
 * named lockedlist-pi and mutex-only-pi.
 *
 *	| struct llist (mutex, head) | node | node | ... |   one MAP_SHARED mapping
 *
 * alloc: lock, pop the head node, unlock.  free: lock, push, unlock.  A
 * free node's first 8 bytes hold the offset of the next one (0 = end).
 *
 * Parts:
 *   pair      64 B, 256 B and 4 KiB alloc+free pairs, batch 1 and 256
 *   mutex     the robust mutex alone: two lock+unlock per "pair"
 *   scale     64 B pairs from one process, then from two processes at once
 *   prodcons  allocate in process A, hand the offset to B through a ring in
 *             the mapping, free in B
 */
#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench-util.h"

#define NODES_PER_LIST 2048u

/*
 * struct llist - lives in shared memory.
 * Invariant: the list from head holds exactly the nodes not handed out.
 */
struct llist {
	pthread_mutex_t lock;
	uint64_t head; /* offset of the first free node from base, 0 = none */
	uint64_t nr_free;
	uint8_t *base; /* every process inherits the mapping at one address */
	size_t node_size;
};

struct region {
	struct llist list[3]; /* 64 B, 256 B, 4 KiB */
	struct bench_ring ring;
};

static struct region *region;
static struct bench_opts opts;
static bool pi;			/* --pi: PTHREAD_PRIO_INHERIT as well */
static const char *list_name = "lockedlist", *mutex_name = "mutex-only";

static void lock(struct llist *l)
{
	int rc = pthread_mutex_lock(&l->lock);

	if (__builtin_expect(rc == EOWNERDEAD, 0))
		pthread_mutex_consistent(&l->lock); /* nothing to repair in a benchmark */
	else if (__builtin_expect(rc != 0, 0))
		bench_die("pthread_mutex_lock: %s", strerror(rc));
}

static inline void *ll_alloc(struct llist *l, size_t size)
{
	uint64_t off;

	(void)size;
	lock(l);
	off = l->head;
	if (__builtin_expect(off != 0, 1)) {
		l->head = *(uint64_t *)(l->base + off);
		l->nr_free--;
	}
	pthread_mutex_unlock(&l->lock);
	return off ? l->base + off : NULL;
}

static inline void ll_free(struct llist *l, void *p, size_t size)
{
	(void)size;
	lock(l);
	*(uint64_t *)p = l->head;
	l->head = (uint64_t)((uint8_t *)p - l->base);
	l->nr_free++;
	pthread_mutex_unlock(&l->lock);
}

/* The mutex alone: what alloc and free pay for locking.  The "object" is a
 * private scratch buffer (the loop writes to it; a list node must not be). */
static inline void *mutex_only_alloc(struct llist *l, size_t size)
{
	static char scratch[64];

	(void)size;
	lock(l);
	pthread_mutex_unlock(&l->lock);
	return scratch;
}

static inline void mutex_only_free(struct llist *l, void *p, size_t size)
{
	(void)p;
	(void)size;
	lock(l);
	pthread_mutex_unlock(&l->lock);
}

BENCH_PAIRS_DEFINE(ll_pairs, struct llist *, ll_alloc, ll_free)
BENCH_PAIRS_DEFINE(mutex_pairs, struct llist *, mutex_only_alloc, mutex_only_free)

static struct llist *list_for(size_t size)
{
	for (unsigned i = 0; i < 3; i++)
		if (region->list[i].node_size == size)
			return &region->list[i];
	bench_die("no list of %zu-byte nodes", size);
}

static void setup(void)
{
	size_t bytes = sizeof(struct region);
	pthread_mutexattr_t a;
	uint8_t *base;

	for (unsigned i = 0; i < 3; i++)
		bytes += (size_t)NODES_PER_LIST * bench_sizes[i];
	base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		bench_die("mmap %zu bytes: %s", bytes, strerror(errno));
	region = (struct region *)base;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (pi && pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT))
		bench_die("PTHREAD_PRIO_INHERIT is not supported here");
	bytes = sizeof(struct region);
	for (unsigned i = 0; i < 3; i++) {
		struct llist *l = &region->list[i];

		pthread_mutex_init(&l->lock, &a);
		l->base = base;
		l->node_size = bench_sizes[i];
		for (unsigned k = 0; k < NODES_PER_LIST; k++) {
			ll_free(l, base + bytes, l->node_size);
			bytes += l->node_size;
		}
	}
	pthread_mutexattr_destroy(&a);
}

/* BENCH_SCALE_CHUNK pairs, warm-up included. */
static uint64_t scale_chunk(void *ctx)
{
	ll_pairs(ctx, 64, 1, BENCH_SCALE_CHUNK);
	return BENCH_SCALE_CHUNK + BENCH_SCALE_CHUNK / 8;
}

static int scale_worker(void *arg, unsigned idx)
{
	(void)arg;
	bench_case_budget_ns = UINT64_MAX; /* the count must be exact */
	bench_gate_wait(bench_gate);
	bench_scale_timed(idx, scale_chunk, list_for(64));
	return 0;
}

/* idx 0 produces: alloc and push; idx 1 consumes: pop and free. */
static int prodcons_worker(void *arg, unsigned idx)
{
	struct llist *l = list_for(64);
	struct bench_ring *r = &region->ring;
	uint64_t t0, n = opts.iters;

	(void)arg;
	bench_gate_wait(bench_gate);
	t0 = bench_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		if (idx == 0) {
			void *p = ll_alloc(l, 64);

			if (!p) {
				bench_gate->failed = 1;
				bench_die("producer: list empty");
			}
			bench_touch(p);
			bench_ring_push(r, (uint64_t)((uint8_t *)p - l->base));
		} else {
			ll_free(l, l->base + bench_ring_pop(r), 64);
		}
	}
	bench_scale_record(idx, t0, idx == 0 ? n : 0);
	return 0;
}

int main(int argc, char **argv)
{
	pi = bench_take_flag(&argc, argv, "--pi");
	if (pi) {
		list_name = "lockedlist-pi";
		mutex_name = "mutex-only-pi";
	}
	bench_parse(argc, argv, &opts);
	bench_idle_thread();
	setup();

	if (opts.one_alloc[0]) {
		if (!strcmp(opts.one_alloc, "mutex"))
			mutex_pairs(list_for(64), opts.one_size, opts.one_batch, opts.one_n);
		else
			ll_pairs(list_for(opts.one_size), opts.one_size, opts.one_batch,
				 opts.one_n);
		return 0;
	}
	if (bench_part(&opts, "pair")) {
		for (unsigned s = 0; s < 3; s++)
			for (unsigned b = 0; b < 2; b++)
				bench_result("pair", list_name,
					     ", \"size\": %zu, \"batch\": %u, \"value\": %.2f, "
					     "\"unit\": \"ns/pair\"",
					     bench_sizes[s], bench_batches[b],
					     ll_pairs(list_for(bench_sizes[s]), bench_sizes[s],
						      bench_batches[b], opts.iters));
	}
	if (bench_part(&opts, "mutex"))
		bench_result("pair", mutex_name,
			     ", \"size\": 64, \"batch\": 1, \"value\": %.2f, \"unit\": \"ns/pair\"",
			     mutex_pairs(list_for(64), 64, 1, opts.iters));
	if (bench_part(&opts, "scale"))
		bench_scale_1v2(list_name, scale_worker, NULL);
	if (bench_part(&opts, "prodcons")) {
		double ops;

		memset(&region->ring, 0, sizeof(region->ring));
		ops = bench_scale(2, prodcons_worker, NULL);
		if (ops < 0)
			bench_die("a producer/consumer worker failed");
		bench_result("prodcons", list_name,
			     ", \"size\": 64, \"value\": %.3f, \"unit\": \"Mitems/s\"", ops / 1e6);
	}
	return 0;
}
