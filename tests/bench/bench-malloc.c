/* SPDX-License-Identifier: MIT */
/*
 * bench-malloc.c - the process-private malloc peers: glibc, jemalloc,
 * mimalloc and tcmalloc.
 *
 * One source, one executable per malloc (meson builds bench-malloc-<name>
 * with BENCH_MALLOC_NAME set and the library linked): linking jemalloc,
 * mimalloc or tcmalloc replaces malloc() for the whole process, so each
 * needs an executable of its own.  The program prints which shared object
 * its malloc() really comes from, and refuses to run when that is not the
 * one it was built for (a silently glibc-backed "jemalloc" row would be a
 * fake number).
 *
 * Parts:
 *   pair   64 B, 256 B and 4 KiB malloc+free pairs, batch 1 and 256 (part 1)
 *   scale  64 B pairs in one process, then in two processes at once (part 2:
 *          private heaps, the ideal scaling shmpool is compared with)
 *   trace  the mixed-size trace: footprint (peak RSS growth, sampled every
 *          64 allocations in a first, cold replay) and time (a second replay)
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"

#ifndef BENCH_MALLOC_NAME
#error "build with -DBENCH_MALLOC_NAME=\"glibc\" (or jemalloc, mimalloc, tcmalloc)"
#endif
#ifndef BENCH_MALLOC_LIB
#define BENCH_MALLOC_LIB "libc.so"
#endif

#define M_ALLOC(ctx, size) malloc(size)
#define M_FREE(ctx, p, size) free(p)

BENCH_PAIRS_DEFINE(malloc_pairs, void *, M_ALLOC, M_FREE)
BENCH_TRACE_DEFINE(malloc_trace, void *, M_ALLOC, M_FREE)

static struct bench_opts opts;

/* BENCH_SCALE_CHUNK pairs, warm-up included. */
static uint64_t scale_chunk(void *ctx)
{
	(void)ctx;
	malloc_pairs(NULL, 64, 1, BENCH_SCALE_CHUNK);
	return BENCH_SCALE_CHUNK + BENCH_SCALE_CHUNK / 8;
}

static int scale_worker(void *arg, unsigned idx)
{
	(void)arg;
	/* the count must be exact; warm this process's heap first */
	bench_case_budget_ns = UINT64_MAX;
	malloc_pairs(NULL, 64, 1, BENCH_SCALE_CHUNK);
	bench_gate_wait(bench_gate);
	bench_scale_timed(idx, scale_chunk, NULL);
	return 0;
}

struct rss_peak {
	uint64_t base, peak;
	uint32_t calls;
};

static void rss_sample(void *arg, uint64_t live)
{
	struct rss_peak *r = arg;

	(void)live;
	if (r->calls++ % 64 == 0) {
		uint64_t rss = bench_rss_bytes();

		if (rss > r->peak)
			r->peak = rss;
	}
}

int main(int argc, char **argv)
{
	const char *origin = bench_malloc_origin();

	bench_parse(argc, argv, &opts);
	bench_idle_thread();
	if (!strstr(origin, BENCH_MALLOC_LIB))
		bench_die("%s: malloc() comes from %s, not %s", BENCH_MALLOC_NAME, origin,
			  BENCH_MALLOC_LIB);
	printf("# %s: malloc() from %s\n", BENCH_MALLOC_NAME, origin);

	if (opts.one_alloc[0]) {
		malloc_pairs(NULL, opts.one_size, opts.one_batch, opts.one_n);
		return 0;
	}
	if (bench_part(&opts, "trace")) {
		/* first, so that the footprint is measured on a fresh heap */
		struct bench_trace t;
		struct rss_peak r = { 0 };
		double ns;

		bench_trace_make(&t, opts.trace_ops, opts.trace_high, 42);
		r.base = r.peak = bench_rss_bytes();
		malloc_trace(NULL, &t, rss_sample, &r);
		ns = malloc_trace(NULL, &t, NULL, NULL);
		bench_result(
			"trace", BENCH_MALLOC_NAME,
			", \"value\": %.2f, \"unit\": \"ns/op\", \"ops\": %u, \"peak_live\": %llu, "
			"\"peak_footprint\": %llu, \"footprint_by\": \"RSS growth\"",
			ns / t.n, t.n, (unsigned long long)t.peak_live,
			(unsigned long long)(r.peak - r.base));
		bench_trace_free(&t);
	}
	if (bench_part(&opts, "pair")) {
		for (unsigned s = 0; s < 3; s++)
			for (unsigned b = 0; b < 2; b++)
				bench_result("pair", BENCH_MALLOC_NAME,
					     ", \"size\": %zu, \"batch\": %u, \"value\": %.2f, "
					     "\"unit\": \"ns/pair\"",
					     bench_sizes[s], bench_batches[b],
					     malloc_pairs(NULL, bench_sizes[s], bench_batches[b],
							  opts.iters));
	}
	if (bench_part(&opts, "scale"))
		bench_scale_1v2(BENCH_MALLOC_NAME, scale_worker, NULL);
	return 0;
}
