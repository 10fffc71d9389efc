/* SPDX-License-Identifier: MIT */
/*
 * ring.h - the example's hand-off queue: a single-producer single-consumer
 * ring of element offsets.  Lives in shared memory (the producer allocates
 * it with shmp_calloc and passes its offset on the consumer's command line).
 *
 * Offsets, never pointers: each process maps the segment at its own
 * address, so the producer stores shmp_off(element) and the consumer turns
 * it back with shmp_ptr().
 *
 * Invariant: tail <= head <= tail + RING_CAP.  Only the producer writes
 * head (release, after filling the slot; paired with the consumer's acquire
 * load), only the consumer writes tail (release, after it is done with the
 * slot; paired with the producer's acquire load).
 */
#ifndef SHMP_EXAMPLE_RING_H
#define SHMP_EXAMPLE_RING_H

#include <stdatomic.h>
#include <stdint.h>

#include <shmpool.h>

#define RING_MAGIC 0x52494e47u /* "RING" */
#define RING_CAP 256
#define ITEM_POOL "example.items"

struct ring {
	uint32_t magic;			/* RING_MAGIC once initialised */
	uint32_t cap;			/* RING_CAP */
	_Atomic uint64_t head;		/* next slot the producer fills */
	_Atomic uint64_t tail;		/* next slot the consumer reads */
	_Atomic uint32_t done;		/* the producer is finished: head is final */
	uint32_t pad;
	shmp_off_t slot[RING_CAP];	/* element offsets */
};

/* One pool element, as the producer fills it and the consumer checks it. */
struct item {
	uint64_t seq;			/* 0, 1, 2, ... in production order */
	uint64_t checksum;		/* item_sum() of the fields below */
	uint32_t producer_pid;
	char text[44];
};

static inline uint64_t item_sum(const struct item *it)
{
	const unsigned char *p = (const unsigned char *)it->text;
	uint64_t x = 0xcbf29ce484222325ULL ^ it->seq ^ ((uint64_t)it->producer_pid << 32);

	for (unsigned i = 0; i < sizeof(it->text); i++)
		x = (x ^ p[i]) * 0x100000001b3ULL;
	return x;
}

#endif
