/* SPDX-License-Identifier: MIT */
/*
 * bench-util.h - what every benchmark program of tests/bench shares: the
 * clock, the idle second thread, the result lines the driver (bench.py)
 * reads, the deterministic mixed-size trace and the ring that hands
 * offsets from one process to another.
 *
 * Output: every measurement is one line on stdout,
 *
 *	RESULT {"part": "pair", "alloc": "glibc", "size": 64, "batch": 1,
 *		"value": 5.93, "unit": "ns/pair", ...}
 *
 * one JSON object after the word RESULT (other lines are for humans and
 * are ignored).  A program prints each of its measurements once per run;
 * the driver runs it several times and takes medians.
 *
 * Everything here is process-private; the trace and the ring are plain C
 * so that the C++ Boost program shares them unchanged.
 */
#ifndef SHMPOOL_BENCH_UTIL_H
#define SHMPOOL_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- time and output -------------------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/*
 * bench_idle_thread() - start one thread that sleeps until the process
 * exits.  glibc skips atomic instructions while a process has a single
 * thread; every benchmark program (and every forked worker, since fork()
 * keeps only the calling thread) starts one so that all allocators pay the
 * multi-threaded price they pay in real programs.
 */
void bench_idle_thread(void);

/* Keep the compiler from dropping an allocation: write one byte to it. */
static inline void bench_touch(void *p)
{
	*(volatile char *)p = 1;
	__asm__ __volatile__("" : : "r"(p) : "memory");
}

/*
 * bench_result() - print one RESULT line.
 * @part: which benchmark ("pair", "scale", "prodcons", "trace", ...).
 * @alloc: which allocator ("glibc", "shmpool-pool", ...).
 * @fmt: the remaining JSON members, without braces, starting with a comma
 *       when not empty, e.g. ", \"size\": %u, \"value\": %.3f".
 */
void bench_result(const char *part, const char *alloc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Print a fatal error and exit with status 1. */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* The process's resident set in bytes, from /proc/self/statm. */
uint64_t bench_rss_bytes(void);

/* Which shared object the process's malloc() comes from ("libc.so.6"). */
const char *bench_malloc_origin(void);

/* ---- command line ------------------------------------------------------ */

/*
 * Options every program understands:
 *   --quick            few iterations (the smoke test): about a second
 *   --iters N          alloc+free pairs per case (default 1000000; quick 20000)
 *   --trace-ops N      operations of the mixed trace (default 1000000; quick 20000)
 *   --parts a,b,...    run only these parts (default: all the program has)
 *   --one ALLOC:SIZE:BATCH:N   run one pair case and nothing else (for
 *                      callgrind instruction counts); no RESULT line
 *   --socket PATH      the daemon's socket (shmpool programs)
 */
struct bench_opts {
	bool quick;
	uint64_t iters;
	uint32_t trace_ops;
	uint32_t trace_high;	/* live objects at the trace's high-water mark */
	const char *parts;	/* NULL: all */
	const char *socket;
	char one_alloc[64];	/* empty: not --one */
	size_t one_size;
	unsigned one_batch;
	uint64_t one_n;
};

void bench_parse(int argc, char **argv, struct bench_opts *o);
/* Takes the program's own @flag out of argv (before bench_parse()): was it there? */
bool bench_take_flag(int *argc, char **argv, const char *flag);
/* Does this run include part @name? */
bool bench_part(const struct bench_opts *o, const char *name);

/* ---- the alloc+free pair loops ----------------------------------------- */

/* The sizes and batches of part 1. */
extern const size_t bench_sizes[3];
extern const unsigned bench_batches[2];

/* Longest a timed pair loop runs before it stops early (bench_parse sets
 * it: 1 s, quick 0.2 s): the slowest allocator/size pairs then measure fewer
 * pairs instead of holding up the run. */
extern uint64_t bench_case_budget_ns;

/*
 * BENCH_PAIRS_DEFINE() - define `static double fname(CTX_T ctx, size_t
 * size, unsigned batch, uint64_t n)`, which times @n alloc+free pairs of
 * @size bytes, @batch at a time (batch 1: alloc, free, alloc, free ...;
 * batch 256: 256 allocs, then their 256 frees in the same order) and
 * returns nanoseconds per pair.  ALLOC(ctx, size) and FREE(ctx, p, size)
 * are called directly (no function pointer), so every allocator is timed
 * by the same loop at the cost of its own calls.  Each allocation is
 * written to once; a NULL allocation is fatal.  A warm-up of n / 8 pairs
 * runs first.  The clock is read every 4096 pairs; once a loop has run
 * bench_case_budget_ns it stops, and the result is over the pairs done.
 */
#define BENCH_PAIRS_DEFINE(fname, CTX_T, ALLOC, FREE)                                    \
	static uint64_t fname##_loop(CTX_T ctx, size_t size, unsigned batch, uint64_t rounds, \
				     uint64_t t0)                                         \
	{                                                                                \
		void *v_[256];                                                           \
		uint64_t r_ = 0, every_ = 4096 / batch ? 4096 / batch : 1;               \
		while (r_ < rounds) { /* chunks of every_ rounds, then the clock */     \
			uint64_t end_ = rounds - r_ > every_ ? r_ + every_ : rounds;     \
			for (; r_ < end_; r_++) {                                        \
				for (unsigned i_ = 0; i_ < batch; i_++) {                \
					v_[i_] = ALLOC(ctx, size);                       \
					if (__builtin_expect(!v_[i_], 0))                \
						bench_die("%s: allocation of %zu bytes " \
							  "failed",                      \
							  #fname, size);                 \
					bench_touch(v_[i_]);                             \
				}                                                        \
				for (unsigned i_ = 0; i_ < batch; i_++)                  \
					FREE(ctx, v_[i_], size);                         \
			}                                                                \
			if (bench_now_ns() - t0 > bench_case_budget_ns)                  \
				break;                                                   \
		}                                                                        \
		return r_;                                                               \
	}                                                                                \
	static double fname(CTX_T ctx, size_t size, unsigned batch, uint64_t n)         \
	{                                                                                \
		uint64_t rounds = n / batch ? n / batch : 1, t0_, done_;                 \
		if (batch > 256)                                                         \
			bench_die("batch %u is above 256", batch);                       \
		t0_ = bench_now_ns();                                                    \
		fname##_loop(ctx, size, batch, rounds / 8 ? rounds / 8 : 1, t0_);        \
		t0_ = bench_now_ns();                                                    \
		done_ = fname##_loop(ctx, size, batch, rounds, t0_);                     \
		return (double)(bench_now_ns() - t0_) / (double)(done_ * batch);         \
	}

/* ---- the mixed-size trace --------------------------------------------- */

/*
 * A deterministic trace of allocations and frees: sizes 8..8192 bytes,
 * log-uniform (as many 8..16 B requests as 4..8 KiB ones), random
 * lifetimes (each free picks a uniformly random live object).  The number
 * of live objects rises to a high-water mark, falls to an eighth of it,
 * rises again and falls again, so that freed memory must be reused across
 * size classes.
 */
struct bench_trace {
	uint32_t n;		/* operations */
	uint32_t nr_slots;	/* distinct live objects at most */
	uint32_t *size;		/* op i: > 0 allocate that many bytes into slot[i], 0 free */
	uint32_t *slot;		/* op i: which object */
	uint64_t peak_live;	/* largest sum of live requested bytes */
	uint64_t nr_alloc;
	/* replay state, allocated and touched here so that a footprint
	 * baseline taken after bench_trace_make() already includes it */
	void **obj;		/* [nr_slots] the live objects */
	uint32_t *obj_size;	/* [nr_slots] their sizes */
};

/* @n operations, @high objects live at most, from @seed. */
void bench_trace_make(struct bench_trace *t, uint32_t n, uint32_t high, uint64_t seed);
void bench_trace_free(struct bench_trace *t);

/*
 * BENCH_TRACE_DEFINE() - define `static double fname(CTX_T ctx, const
 * struct bench_trace *t, void (*sample)(void *arg, uint64_t live), void
 * *arg)` that replays @t through ALLOC/FREE (as for BENCH_PAIRS_DEFINE),
 * frees what is still live at the end, and returns the nanoseconds of the
 * whole replay.  @sample, when not NULL, is called after every allocation
 * with the live requested bytes (footprint runs; never in a timed run).
 */
#define BENCH_TRACE_DEFINE(fname, CTX_T, ALLOC, FREE)                                    \
	static double fname(CTX_T ctx, const struct bench_trace *t,                      \
			    void (*sample)(void *arg, uint64_t live), void *arg)           \
	{                                                                                \
		void **obj_ = t->obj;                                                    \
		uint32_t *sz_ = t->obj_size;                                             \
		uint64_t live_ = 0, t0_, t1_;                                            \
		t0_ = bench_now_ns();                                                    \
		for (uint32_t i_ = 0; i_ < t->n; i_++) {                                 \
			uint32_t s_ = t->slot[i_];                                       \
			if (t->size[i_]) {                                               \
				obj_[s_] = ALLOC(ctx, t->size[i_]);                      \
				if (__builtin_expect(!obj_[s_], 0))                      \
					bench_die("%s: trace allocation of %u bytes failed", \
						  #fname, t->size[i_]);                  \
				bench_touch(obj_[s_]);                                   \
				sz_[s_] = t->size[i_];                                   \
				live_ += sz_[s_];                                        \
				if (sample)                                              \
					sample(arg, live_);                              \
			} else {                                                         \
				FREE(ctx, obj_[s_], sz_[s_]);                            \
				live_ -= sz_[s_];                                        \
				obj_[s_] = NULL;                                         \
			}                                                                \
		}                                                                        \
		t1_ = bench_now_ns();                                                    \
		for (uint32_t s_ = 0; s_ < t->nr_slots; s_++) {                          \
			if (obj_[s_])                                                    \
				FREE(ctx, obj_[s_], sz_[s_]);                            \
			obj_[s_] = NULL;                                                 \
		}                                                                        \
		return (double)(t1_ - t0_);                                              \
	}

/* ---- a single-producer single-consumer ring of offsets ------------------ */

/*
 * struct bench_ring - lives in shared memory (the shmpool segment, or a
 * shared mapping for the baseline).  head is written only by the producer,
 * tail only by the consumer; each on its own cache line.
 * Invariant: 0 <= head - tail <= BENCH_RING_SIZE.
 */
#define BENCH_RING_SIZE 1024u
struct bench_ring {
	uint64_t head __attribute__((aligned(64)));	/* next slot to fill */
	uint64_t tail __attribute__((aligned(64)));	/* next slot to drain */
	uint64_t slot[BENCH_RING_SIZE] __attribute__((aligned(64)));
};

/* Spin until there is room, then publish @v (release; paired with the
 * acquire load of head in bench_ring_pop()). */
void bench_ring_push(struct bench_ring *r, uint64_t v);
/* Spin until a value is there, then take it. */
uint64_t bench_ring_pop(struct bench_ring *r);

/* ---- processes ------------------------------------------------------------ */

/*
 * A start line for forked workers: each worker calls bench_gate_wait()
 * when ready; the parent calls bench_gate_open() once all are ready, so
 * that the timed sections overlap.  Lives in shared memory.
 */
struct bench_gate {
	uint32_t ready;
	uint32_t go;
	uint64_t deadline_ns;	/* bench_now_ns() at which timed workers stop */
	uint64_t start_ns[8];	/* each worker's timed section, bench_now_ns() */
	uint64_t end_ns[8];
	uint64_t count[8];	/* each worker's operations */
	int failed;
};

struct bench_gate *bench_gate_new(void);	/* MAP_SHARED|MAP_ANONYMOUS */
void bench_gate_wait(struct bench_gate *g);
/* Opens the gate and sets the deadline bench_scale_ns from now. */
void bench_gate_open(struct bench_gate *g, unsigned nr_workers);

/* fork() a worker that starts its idle thread and runs fn(arg, idx). */
int bench_fork(int (*fn)(void *arg, unsigned idx), void *arg, unsigned idx);
/* Wait for @pid; false when it did not exit with status 0. */
bool bench_wait(int pid);

/*
 * How long a timed scale worker runs (bench_parse sets it: 150 ms, quick
 * 20 ms).  Workers of fixed length (a few milliseconds) were at the mercy
 * of this kind of virtual machine: a second vCPU that takes a while to
 * come back, or a worker scheduled late, decided the result.
 */
extern uint64_t bench_scale_ns;

/* Pairs a scale worker's chunk function runs per call (warm-up included). */
#define BENCH_SCALE_CHUNK 16384u

/*
 * bench_scale_timed() - a scale worker's timed section: after
 * bench_gate_wait(), call @chunk(@ctx) (which runs some pairs and returns
 * how many) until the gate's deadline, and record the section's start,
 * end and count for worker @idx.
 */
void bench_scale_timed(unsigned idx, uint64_t (*chunk)(void *ctx), void *ctx);

/* Record worker @idx's timed section: from @t0 to now, @count operations. */
void bench_scale_record(unsigned idx, uint64_t t0, uint64_t count);

/*
 * bench_scale() - run @nr_procs forked workers fn(arg, idx) at once.
 * Each worker prepares, calls bench_gate_wait(bench_gate), runs its timed
 * section (bench_scale_timed(), or a fixed amount of work) and records it
 * with bench_scale_record() (or sets ->failed and returns non-zero).
 * Return: the aggregate throughput in operations per second, all
 * operations over the wall time from the first worker's start to the last
 * one's end (a worker that starts late lengthens it: workers that did not
 * overlap are not counted as parallel), or -1 when a worker failed.
 */
extern struct bench_gate *bench_gate; /* the running bench_scale()'s */
double bench_scale(unsigned nr_procs, int (*fn)(void *arg, unsigned idx), void *arg);

/*
 * bench_scale_1v2() - part 2 for allocator @alloc: one process, two
 * processes, then one process again, all with @fn(@arg, idx) as
 * bench_scale() runs them; prints the RESULT lines for one process (the
 * better of its two runs: right after the pair part the first can lose
 * part of its time to the kernel cleaning up after it, which would flatter
 * the two-process ratio) and for two.  A failed worker is fatal.
 */
void bench_scale_1v2(const char *alloc, int (*fn)(void *arg, unsigned idx), void *arg);

#ifdef __cplusplus
}
#endif

#endif /* SHMPOOL_BENCH_UTIL_H */
