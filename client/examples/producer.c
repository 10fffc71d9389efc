/* SPDX-License-Identifier: MIT */
/*
 * producer.c - the producer half of the libshmpool example.
 *
 *   shmp-producer [-n COUNT] [-s SOCKET]
 *
 * Creates (or opens) the pool "example.items" with a reserve of 16 and a
 * cap of 64 elements, allocates a ring in the segment with shmp_calloc(),
 * prints the ring's offset and the consumer command line, then allocates
 * COUNT elements, fills each one and queues its offset on the ring.  With
 * 64 elements out at most, shmp_pool_alloc() sleeps whenever the consumer
 * lags behind, until the consumer frees one.  Finally it waits for the
 * consumer to drain the ring, frees the ring and destroys the pool.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* getopt, nanosleep with -std=c11 */
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"

static void nap(void)
{
	struct timespec ts = { 0, 200 * 1000 };

	nanosleep(&ts, NULL);
}

static int die(const char *what, int err)
{
	fprintf(stderr, "shmp-producer: %s: %s (%s)\n", what, shmp_strerror(err), shmp_errmsg());
	return 1;
}

int main(int argc, char **argv)
{
	struct shmp_pool_opts opts = { .max_nr = 64, .flags = SHMP_POOL_RECLAIM_ON_EXIT };
	const char *sock = NULL;
	unsigned long count = 100000;
	shmp_client *c;
	shmp_pool *pool;
	struct ring *ring;
	int opt, rc;

	while ((opt = getopt(argc, argv, "n:s:h")) != -1) {
		if (opt == 'n')
			count = strtoul(optarg, NULL, 0);
		else if (opt == 's')
			sock = optarg;
		else {
			fprintf(stderr, "usage: shmp-producer [-n COUNT] [-s SOCKET]\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	rc = shmp_connect(sock, "producer", &c);
	if (rc)
		return die("connect", rc);
	rc = shmp_pool_create_ex(c, ITEM_POOL, sizeof(struct item), 16, &opts, &pool);
	if (rc == -EEXIST)
		rc = shmp_pool_open(c, ITEM_POOL, &pool);
	if (rc)
		return die("pool " ITEM_POOL, rc);
	ring = shmp_calloc(c, 1, sizeof(*ring));
	if (!ring)
		return die("ring", -errno);
	ring->cap = RING_CAP;
	atomic_store(&ring->head, 0);
	atomic_store(&ring->tail, 0);
	atomic_store(&ring->done, 0);
	/* the consumer checks the magic first: publish it last */
	atomic_thread_fence(memory_order_release);
	ring->magic = RING_MAGIC;

	printf("ring at offset %#llx; now run:  shmp-consumer %#llx\n",
	       (unsigned long long)shmp_off(c, ring), (unsigned long long)shmp_off(c, ring));
	fflush(stdout);

	for (uint64_t seq = 0; seq < count; seq++) {
		struct item *it = shmp_pool_alloc(pool, 0); /* sleeps at 64 out */
		uint64_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);

		if (!it)
			return die("shmp_pool_alloc", -errno);
		it->seq = seq;
		it->producer_pid = (uint32_t)getpid();
		snprintf(it->text, sizeof(it->text), "item %llu", (unsigned long long)seq);
		it->checksum = item_sum(it);
		while (head - atomic_load_explicit(&ring->tail, memory_order_acquire) == RING_CAP)
			nap(); /* ring full */
		ring->slot[head % RING_CAP] = shmp_off(c, it);
		atomic_store_explicit(&ring->head, head + 1, memory_order_release);
	}
	atomic_store_explicit(&ring->done, 1, memory_order_release);
	fprintf(stderr, "shmp-producer: queued %lu items; waiting for the consumer\n", count);
	while (atomic_load_explicit(&ring->tail, memory_order_acquire) != count)
		nap();

	shmp_free(c, ring);
	shmp_pool_close(pool);
	rc = shmp_pool_destroy(c, ITEM_POOL);
	if (rc)
		fprintf(stderr, "shmp-producer: destroy: %s (%s)\n", shmp_strerror(rc),
			shmp_errmsg());
	shmp_disconnect(c);
	printf("producer: done, %lu items\n", count);
	return rc ? 1 : 0;
}
