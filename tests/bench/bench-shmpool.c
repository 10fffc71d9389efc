/* SPDX-License-Identifier: MIT */
/*
 * bench-shmpool.c - shmpool's data path as applications use it: through
 * libshmpool's public API, against a running shmpoold (--socket; bench.py
 * starts a fresh daemon for every run of this program).  Every call below
 * runs in this process on the mapped segment, under the segment's robust
 * process-shared locks; the daemon is only asked to create the pools and
 * caches.
 *
 * Allocators:
 *   shmpool-pool    shmp_pool_alloc / shmp_pool_free on a pool of the object
 *                   size (slab backing, 16 elements in reserve)
 *   shmpool-cache   shmp_cache_alloc / shmp_cache_free on a named cache
 *   shmpool-malloc  shmp_malloc / shmp_free (kmalloc size classes)
 *   shmpool-pool-bulk, shmpool-cache-bulk
 *                   batch 256 through shmp_{pool,cache}_alloc_bulk and
 *                   _free_bulk (one call per 256 objects)
 *
 * By default every session has per-thread magazines (the cached path).
 * With --locked (or SHMPOOL_MAGAZINES=0 in the environment) every session
 * of this run, the forked workers' included, connects with
 * SHMP_CONNECT_NO_MAGAZINES, so that every call takes the locked path, and
 * every allocator name gets the suffix "-locked" (shmpool-pool-locked ...);
 * the bulk rows are then left out.  bench.py runs the program both ways.
 *
 * Parts:
 *   pair      64 B, 256 B and 4 KiB alloc+free pairs, batch 1 and 256 (part 1)
 *   scale     64 B pool and cache pairs from one process, then from two
 *             processes (each its own session) on the same pool (part 2)
 *   prodcons  process A allocates pool elements and hands their offsets to
 *             process B through a ring allocated in the segment; B frees
 *             them (part 3)
 *   trace     the mixed-size trace through shmp_malloc: footprint (growth of
 *             the buddy allocator's used pages, sampled at every
 *             allocation, in a first replay) and time (a second replay)
 *             (part 4)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench-util.h"
#include "shmpool.h"

static struct bench_opts opts;
static shmp_client *client;
static bool locked; /* --locked: magazines off, names end in "-locked" */

static void check(int rc, const char *what)
{
	if (rc < 0)
		bench_die("%s: %s: %s", what, shmp_strerror(rc), shmp_errmsg());
}

/* Every session of the run, the workers' included, connects through here. */
static int session(const char *name, shmp_client **c)
{
	struct shmp_connect_opts co = { .flags = locked ? SHMP_CONNECT_NO_MAGAZINES : 0 };

	return shmp_connect_ex(opts.socket, name, &co, c);
}

static shmp_client *connect_daemon(void)
{
	shmp_client *c;

	check(session("bench", &c), "shmp_connect");
	return c;
}

/* The allocator's name in RESULT lines: @base, or @base-locked. */
static const char *alloc_name(const char *base)
{
	static char buf[8][64];
	static unsigned next;
	char *b = buf[next++ % 8];

	snprintf(b, sizeof(buf[0]), "%s%s", base, locked ? "-locked" : "");
	return b;
}

/* ---- the three allocators ------------------------------------------------ */

static inline void *pool_alloc(shmp_pool *p, size_t size)
{
	(void)size;
	return shmp_pool_alloc(p, 0);
}

static inline void pool_free(shmp_pool *p, void *e, size_t size)
{
	(void)size;
	if (__builtin_expect(shmp_pool_free(p, e) != 0, 0))
		bench_die("shmp_pool_free: %s", shmp_errmsg());
}

static inline void *cache_alloc(shmp_cache *k, size_t size)
{
	(void)size;
	return shmp_cache_alloc(k, 0);
}

static inline void cache_free(shmp_cache *k, void *o, size_t size)
{
	(void)size;
	if (__builtin_expect(shmp_cache_free(k, o) != 0, 0))
		bench_die("shmp_cache_free: %s", shmp_errmsg());
}

static inline void *kmalloc_alloc(shmp_client *c, size_t size)
{
	return shmp_malloc(c, size);
}

static inline void kmalloc_free(shmp_client *c, void *p, size_t size)
{
	(void)size;
	if (__builtin_expect(shmp_free_checked(c, p) != 0, 0))
		bench_die("shmp_free: %s", shmp_errmsg());
}

BENCH_PAIRS_DEFINE(pool_pairs, shmp_pool *, pool_alloc, pool_free)
BENCH_PAIRS_DEFINE(cache_pairs, shmp_cache *, cache_alloc, cache_free)
BENCH_PAIRS_DEFINE(kmalloc_pairs, shmp_client *, kmalloc_alloc, kmalloc_free)
BENCH_TRACE_DEFINE(kmalloc_trace, shmp_client *, kmalloc_alloc, kmalloc_free)

/*
 * Batches through the bulk calls (shmp_pool_alloc_bulk / _free_bulk, and the
 * cache's): 256 objects per call, each written to once, as in
 * BENCH_PAIRS_DEFINE.  Return: ns per object allocated and freed.
 */
static double bulk_pairs(shmp_pool *p, shmp_cache *k, uint64_t n)
{
	uint64_t rounds = n / 256 ? n / 256 : 1, t0 = bench_now_ns(), r = 0;
	void *v[256];

	for (unsigned pass = 0; pass < 2; pass++) {
		uint64_t nr = pass ? rounds : rounds / 8 + 1; /* warm-up first */

		if (pass)
			t0 = bench_now_ns();
		for (r = 0; r < nr;) {
			int rc = p ? shmp_pool_alloc_bulk(p, 0, v, 256)
				   : shmp_cache_alloc_bulk(k, 0, v, 256);

			if (rc != 256)
				bench_die("bulk alloc: %s", shmp_errmsg());
			for (unsigned i = 0; i < 256; i++)
				bench_touch(v[i]);
			rc = p ? shmp_pool_free_bulk(p, v, 256) : shmp_cache_free_bulk(k, v, 256);
			if (rc)
				bench_die("bulk free: %s", shmp_errmsg());
			if (++r % 16 == 0 && bench_now_ns() - t0 > bench_case_budget_ns)
				break; /* r rounds done */
		}
	}
	return (double)(bench_now_ns() - t0) / (double)(r * 256);
}

static shmp_pool *make_pool(shmp_client *c, const char *what, size_t size)
{
	char name[64];
	shmp_pool *p;

	snprintf(name, sizeof(name), "bench.%s.%zu.%d", what, size, (int)getpid());
	check(shmp_pool_create(c, name, size, 16, &p), "shmp_pool_create");
	return p;
}

static shmp_cache *make_cache(shmp_client *c, const char *what, size_t size)
{
	char name[64];
	shmp_cache *k;

	snprintf(name, sizeof(name), "bench.%s.%zu.%d", what, size, (int)getpid());
	check(shmp_cache_create(c, name, size, 0, NULL, &k), "shmp_cache_create");
	return k;
}

/* ---- part 2: two processes on one pool ------------------------------------- */

static char scale_pool[64], scale_cache[64];
static shmp_pool *scale_p;
static shmp_cache *scale_k;

/* BENCH_SCALE_CHUNK pairs on the worker's pool or cache; the count is
 * exact (no case budget in a worker) and includes the warm-up. */
static uint64_t scale_chunk(void *ctx)
{
	(void)ctx;
	if (scale_k)
		cache_pairs(scale_k, 64, 1, BENCH_SCALE_CHUNK);
	else
		pool_pairs(scale_p, 64, 1, BENCH_SCALE_CHUNK);
	return BENCH_SCALE_CHUNK + BENCH_SCALE_CHUNK / 8;
}

static int scale_worker(void *arg, unsigned idx)
{
	bool use_cache = arg != NULL;
	shmp_client *c;
	int rc;

	bench_case_budget_ns = UINT64_MAX; /* the count must be exact */
	rc = session("bench-scale", &c);
	if (!rc)
		rc = use_cache ? shmp_cache_open(c, scale_cache, &scale_k)
			       : shmp_pool_open(c, scale_pool, &scale_p);
	if (rc) {
		bench_gate->failed = 1;
		bench_die("scale worker: %s: %s", shmp_strerror(rc), shmp_errmsg());
	}
	bench_gate_wait(bench_gate);
	bench_scale_timed(idx, scale_chunk, NULL);
	shmp_pool_close(scale_p);
	shmp_cache_close(scale_k);
	shmp_disconnect(c);
	return 0;
}

/* ---- part 3: producer/consumer ----------------------------------------------- */

static char pc_pool[64];
static shmp_off_t pc_ring;

static int prodcons_worker(void *arg, unsigned idx)
{
	struct bench_ring *r;
	shmp_client *c;
	shmp_pool *p = NULL;
	uint64_t t0, n = opts.iters;
	int rc;

	(void)arg;
	rc = session(idx ? "bench-consumer" : "bench-producer", &c);
	if (!rc)
		rc = shmp_pool_open(c, pc_pool, &p);
	r = rc ? NULL : shmp_ptr(c, pc_ring);
	if (rc || !r) {
		bench_gate->failed = 1;
		bench_die("prodcons worker: %s", shmp_errmsg());
	}
	bench_gate_wait(bench_gate);
	t0 = bench_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		if (idx == 0) {
			void *e = shmp_pool_alloc(p, 0);

			if (!e)
				bench_die("producer: shmp_pool_alloc: %s", shmp_errmsg());
			bench_touch(e);
			bench_ring_push(r, shmp_off(c, e));
		} else {
			void *e = shmp_ptr(c, bench_ring_pop(r));

			if (!e || shmp_pool_free(p, e))
				bench_die("consumer: bad element: %s", shmp_errmsg());
		}
	}
	bench_scale_record(idx, t0, idx == 0 ? n : 0);
	shmp_pool_close(p);
	shmp_disconnect(c);
	return 0;
}

/* ---- part 4: footprint of the trace ------------------------------------------- */

struct pages_peak {
	uint64_t base, peak;
};

static void pages_sample(void *arg, uint64_t live)
{
	struct pages_peak *pk = arg;
	struct shmp_segment_stats st;

	(void)live;
	if (shmp_segment_stats(client, &st) == 0 && st.nr_pages - st.free_pages > pk->peak)
		pk->peak = st.nr_pages - st.free_pages;
}

static uint64_t used_pages(void)
{
	struct shmp_segment_stats st;

	check(shmp_segment_stats(client, &st), "shmp_segment_stats");
	return st.nr_pages - st.free_pages;
}

int main(int argc, char **argv)
{
	const char *env = getenv("SHMPOOL_MAGAZINES");

	locked = bench_take_flag(&argc, argv, "--locked");
	if (env && !strcmp(env, "0"))
		locked = true; /* libshmpool turns the magazines off anyway */
	bench_parse(argc, argv, &opts);
	if (!opts.socket)
		bench_die("bench-shmpool needs --socket (bench.py starts a daemon and passes it)");
	bench_idle_thread();
	client = connect_daemon();

	if (opts.one_alloc[0]) {
		size_t z = opts.one_size;

		if (!strcmp(opts.one_alloc, "pool"))
			pool_pairs(make_pool(client, "one", z), z, opts.one_batch, opts.one_n);
		else if (!strcmp(opts.one_alloc, "cache"))
			cache_pairs(make_cache(client, "one", z), z, opts.one_batch, opts.one_n);
		else if (!strcmp(opts.one_alloc, "malloc"))
			kmalloc_pairs(client, z, opts.one_batch, opts.one_n);
		else if (!strcmp(opts.one_alloc, "pool-bulk")) /* batch: always 256 */
			bulk_pairs(make_pool(client, "one", z), NULL, opts.one_n);
		else if (!strcmp(opts.one_alloc, "cache-bulk"))
			bulk_pairs(NULL, make_cache(client, "one", z), opts.one_n);
		else
			bench_die("--one: pool, cache, malloc, pool-bulk or cache-bulk");
		return 0;
	}
	if (bench_part(&opts, "trace")) {
		/* first: the footprint is measured on the fresh segment */
		struct bench_trace t;
		struct pages_peak pk;
		double ns;

		bench_trace_make(&t, opts.trace_ops, opts.trace_high, 42);
		pk.base = pk.peak = used_pages();
		kmalloc_trace(client, &t, pages_sample, &pk);
		ns = kmalloc_trace(client, &t, NULL, NULL);
		bench_result(
			"trace", alloc_name("shmpool-malloc"),
			", \"value\": %.2f, \"unit\": \"ns/op\", \"ops\": %u, \"peak_live\": %llu, "
			"\"peak_footprint\": %llu, \"footprint_by\": \"buddy pages used, growth\"",
			ns / t.n, t.n, (unsigned long long)t.peak_live,
			(unsigned long long)((pk.peak - pk.base) * 4096));
		bench_trace_free(&t);
	}
	if (bench_part(&opts, "pair")) {
		for (unsigned s = 0; s < 3; s++) {
			size_t z = bench_sizes[s];
			shmp_pool *p = make_pool(client, "pool", z);
			shmp_cache *k = make_cache(client, "cache", z);
			const char *fmt = ", \"size\": %zu, \"batch\": %u, \"value\": %.2f, "
					  "\"unit\": \"ns/pair\"";

			for (unsigned b = 0; b < 2; b++) {
				unsigned batch = bench_batches[b];

				bench_result("pair", alloc_name("shmpool-pool"), fmt, z, batch,
					     pool_pairs(p, z, batch, opts.iters));
				bench_result("pair", alloc_name("shmpool-cache"), fmt, z, batch,
					     cache_pairs(k, z, batch, opts.iters));
				bench_result("pair", alloc_name("shmpool-malloc"), fmt, z, batch,
					     kmalloc_pairs(client, z, batch, opts.iters));
			}
			if (!locked) {
				bench_result("pair", "shmpool-pool-bulk", fmt, z, 256u,
					     bulk_pairs(p, NULL, opts.iters));
				bench_result("pair", "shmpool-cache-bulk", fmt, z, 256u,
					     bulk_pairs(NULL, k, opts.iters));
			}
			shmp_pool_close(p);
			shmp_cache_close(k);
		}
	}
	if (bench_part(&opts, "scale")) {
		shmp_pool *p = make_pool(client, "scale", 64);
		shmp_cache *k = make_cache(client, "scale", 64);

		snprintf(scale_pool, sizeof(scale_pool), "bench.scale.64.%d", (int)getpid());
		snprintf(scale_cache, sizeof(scale_cache), "bench.scale.64.%d", (int)getpid());
		for (unsigned use_cache = 0; use_cache <= 1; use_cache++)
			bench_scale_1v2(alloc_name(use_cache ? "shmpool-cache" : "shmpool-pool"),
					scale_worker, use_cache ? (void *)1 : NULL);
		shmp_pool_close(p);
		shmp_cache_close(k);
	}
	if (bench_part(&opts, "prodcons")) {
		shmp_pool *p = make_pool(client, "pc", 64);
		struct bench_ring *r = shmp_calloc(client, 1, sizeof(*r));
		double ops;

		if (!r)
			bench_die("shmp_calloc of the ring: %s", shmp_errmsg());
		snprintf(pc_pool, sizeof(pc_pool), "bench.pc.64.%d", (int)getpid());
		pc_ring = shmp_off(client, r);
		ops = bench_scale(2, prodcons_worker, NULL);
		if (ops < 0)
			bench_die("a producer/consumer worker failed");
		bench_result("prodcons", alloc_name("shmpool-pool"),
			     ", \"size\": 64, \"value\": %.3f, \"unit\": \"Mitems/s\"", ops / 1e6);
		shmp_free(client, r);
		shmp_pool_close(p);
	}
	shmp_disconnect(client);
	return 0;
}
