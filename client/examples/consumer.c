/* SPDX-License-Identifier: MIT */
/*
 * consumer.c - the consumer half of the libshmpool example.
 *
 *   shmp-consumer RING_OFFSET [-s SOCKET]
 *
 * Maps the segment through its own session, finds the producer's ring at
 * RING_OFFSET, and takes element offsets off it: it turns each one into a
 * local pointer with shmp_ptr(), checks the sequence number and checksum
 * the producer wrote, and frees the element back to the pool, which wakes
 * the producer if it sleeps in shmp_pool_alloc().
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* getopt, nanosleep with -std=c11 */
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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
	fprintf(stderr, "shmp-consumer: %s: %s (%s)\n", what, shmp_strerror(err), shmp_errmsg());
	return 1;
}

int main(int argc, char **argv)
{
	const char *sock = NULL;
	shmp_off_t ring_off;
	uint64_t got = 0, bad = 0;
	shmp_client *c;
	shmp_pool *pool;
	struct ring *ring;
	int opt, rc;

	while ((opt = getopt(argc, argv, "s:h")) != -1) {
		if (opt == 's') {
			sock = optarg;
		} else {
			fprintf(stderr, "usage: shmp-consumer RING_OFFSET [-s SOCKET]\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: shmp-consumer RING_OFFSET [-s SOCKET]\n");
		return 2;
	}
	ring_off = strtoull(argv[optind], NULL, 0);
	rc = shmp_connect(sock, "consumer", &c);
	if (rc)
		return die("connect", rc);
	rc = shmp_pool_open(c, ITEM_POOL, &pool);
	if (rc)
		return die("pool " ITEM_POOL, rc);
	ring = shmp_ptr(c, ring_off);
	if (!ring || ring->magic != RING_MAGIC || ring->cap != RING_CAP) {
		fprintf(stderr, "shmp-consumer: no ring at offset %#llx\n",
			(unsigned long long)ring_off);
		return 1;
	}
	atomic_thread_fence(memory_order_acquire);

	for (;;) {
		uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
		struct item *it;

		if (atomic_load_explicit(&ring->head, memory_order_acquire) == tail) {
			if (atomic_load_explicit(&ring->done, memory_order_acquire) &&
			    atomic_load_explicit(&ring->head, memory_order_acquire) == tail)
				break;
			nap(); /* ring empty */
			continue;
		}
		it = shmp_ptr(c, ring->slot[tail % RING_CAP]);
		if (!it || it->seq != tail || it->checksum != item_sum(it))
			bad++;
		got++;
		rc = it ? shmp_pool_free(pool, it) : -EINVAL;
		if (rc)
			return die("shmp_pool_free", rc);
		atomic_store_explicit(&ring->tail, tail + 1, memory_order_release);
	}
	shmp_pool_close(pool);
	shmp_disconnect(c);
	printf("consumer: %llu items, %llu bad\n", (unsigned long long)got,
	       (unsigned long long)bad);
	return bad ? 1 : 0;
}
