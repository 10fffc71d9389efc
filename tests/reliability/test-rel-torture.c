/* SPDX-License-Identifier: MIT */
/*
 * test-rel-torture.c - kill -9 torture through the real daemon and the
 * client library: 1,000 SIGKILLs of client processes at random moments,
 * and nothing is ever handed out twice, lost, or left locked.
 *
 * Design.  The driver starts a shmpoold and creates, once:
 *   torture.pool     slab-backed pool, reclaim-on-exit (kills never drain it),
 *                    capped at 64 elements: its reserve is used all the time
 *   torture.handoff  page-backed pool (4 KiB elements), kept on death
 *   torture.cache    a named slab cache
 * WORKERS processes (libshmpool, one session each) loop over: shmp_malloc
 * and shmp_free of random sizes (8..8192, one in 32 a large block of
 * 16..128 KiB), local pool and cache allocations and frees, and HAND-OFFS:
 * a worker allocates a handoff element, stamps it and publishes its offset
 * in a ring in a shared mapping of the test; another worker (any, itself
 * included) claims the entry, verifies the stamp, re-stamps it as its own,
 * verifies again and frees it.
 *
 * Stamps.  Everything a worker holds carries (holder, generation, pattern):
 * written right after the allocation, verified before every free and on
 * receipt.  The holder is the worker's incarnation number, unique over the
 * run.  If the allocator handed one piece of memory to two holders, the
 * first one's verification fails: the worker writes a failure record into
 * the shared area and exits 1, which fails the test.
 *
 * What a worker holds is also written, between operations, into its record
 * in the shared area: the offsets by kind, and the operation in flight
 * (allocation or free of which kind).  So after a kill the driver knows
 * what the dead slot must hold, to within the one operation in flight.
 *
 * Ring entries move EMPTY -> FILLING(sender) -> FULL -> CLAIMED(receiver)
 * -> FREEING(receiver) -> EMPTY, each step by one process, the first and
 * the claim by compare-and-swap.  An entry left in FILLING, CLAIMED or
 * FREEING names a dead process; one left FULL by a dead sender holds an
 * element attributed to the dead slot.
 *
 * The driver, KILLS times: picks a worker at random (seeded), waits a
 * random 0..5 ms, SIGKILLs it, waits for the daemon to notice (Stats no
 * longer shows the pid alive: the slot is DEAD with its orphans or already
 * freed, and the reclaim-on-exit pool has its elements back), and starts a
 * replacement.  One kill in 16 hits a replacement still connecting.  After
 * each kill, with the workers running, a Check through the daemon (the
 * checker takes every lock) finds no violation.  Every CHECK_EVERY kills,
 * and at the end, a checkpoint:
 *   1. pause: every worker stops at a safe point (between operations);
 *   2. ring entries claimed by dead receivers: the driver frees the element
 *      (it is still allocated: the claim was not released) or, when the
 *      receiver died freeing it, frees it only if it still carries the
 *      receiver's stamp (else it was freed and is someone else's now);
 *   3. Stats: every live worker's slot holds exactly what its record says
 *      (cache objects + small blocks + local pool elements; pool elements =
 *      local + its FULL ring entries; large blocks); every dead slot holds
 *      what its record at death says, within the operation in flight, no
 *      local pool element at all (reclaimed on exit), and as many handoff
 *      elements as the ring still attributes to it; no other slot holds
 *      anything: every orphan is attributed to its dead slot;
 *   4. the ring entries of dead senders are dropped (their stamps verified)
 *      and every dead slot is reclaimed: the Reclaim frees exactly what
 *      Stats attributed to it, the slot is free afterwards;
 *   5. Check through the daemon (shmp_check): zero violations;
 *   6. no lock is held: the futex word of every shared mutex (registry,
 *      buddy, every pool and cache) reads 0 in a read-only mapping - held
 *      by nobody, and none left owned by a dead process.
 * At the end the workers drain the ring, free everything, disconnect; then
 * no slot is left, both pools' reserves are full (curr_nr == min_nr) with
 * nothing out, the cache is empty, and the Check and the locks are clean.
 *
 * In a fault-injection build (-Dfault_injection=true), every other
 * replacement is armed with SHMPOOL_CRASH_POINT=<point>:<N> (a point the
 * client library can reach, N in 1..8): it kills itself there, inside a
 * critical section.  Each such death must be a SIGKILL; the driver counts
 * them among the kills and per point (SHMPOOL_TORTURE_CRASH_POINTS=0
 * leaves them unarmed).  Such a death is buried only when the driver next
 * looks: if the daemon freed the slot at once (nothing to attribute), a
 * replacement may hold that slot already, so a death is recorded against
 * a slot only while the daemon still lists it with the dead pid.  The
 * daemon-only points are killed at by tests/test-crash.c; every point is
 * also hit deterministically there and, through the library, by
 * tests/client/test-client-death.c and test-client-magazine.c.
 *
 * Parameters: SHMPOOL_TORTURE_KILLS (1,000; `make soak`: 5,000),
 * SHMPOOL_TORTURE_WORKERS (4), SHMPOOL_TORTURE_CHECK_EVERY (50),
 * SHMPOOL_TORTURE_SEED (printed; seeds the victims, delays and the
 * workers' choices; the kill timing itself stays the scheduler's).  On two
 * cores 1,000 kills take about 20 s, 40 s under AddressSanitizer.  A
 * worker that does not start or pause within 20 s fails the test with its
 * operation in flight, system call and kernel stack (SHMPOOL_TORTURE_GDB=1:
 * and a gdb backtrace of it).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client-util.h"
#include "rel-util.h"

#if defined(__SANITIZE_ADDRESS__)
#define TORTURE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TORTURE_ASAN 1
#endif
#endif
#ifndef TORTURE_ASAN
#define TORTURE_ASAN 0
#endif

#define MAX_WORKERS 16
#define NHELD 24		/* per kind and worker */
#define RING 64			/* hand-off entries */
#define POLL_MS 20000		/* bound of every wait */
#define ELEM_SIZE 64		/* torture.pool */
#define OBJ_SIZE 48		/* torture.cache */
#define HANDOFF_SIZE 4096	/* torture.handoff: one page */
#define POOL_MIN 16
#define POOL_MAX 64		/* the workers would hold up to WORKERS x NHELD */
#define HANDOFF_MIN 8
#define MAX_FAIL 8

enum kind { K_POOL, K_CACHE, K_MALLOC, K_NKINDS };
static const char *const kind_name[K_NKINDS] = { "pool", "cache", "malloc" };

/* struct wrec.op: the operation in flight */
enum { OP_NONE, OP_ALLOC, OP_FREE };

/* A held allocation; off != 0 marks the entry used (its store commits it). */
struct item {
	shmp_off_t off;
	uint32_t size;
	uint32_t gen;
};

/* One worker position's record, rewritten by each incarnation.  Shared. */
struct wrec {
	_Atomic uint32_t inc;		/* incarnation (holder id); set by the driver */
	_Atomic uint32_t slot;		/* UINT32_MAX until connected */
	_Atomic uint32_t ready;		/* connected, handles open */
	_Atomic uint32_t paused;	/* the pause epoch acknowledged */
	_Atomic uint32_t op, op_kind, op_index, op_large; /* op on held[op_kind][op_index] */
	struct item held[K_NKINDS][NHELD];
	char point[64];			/* armed crash point, "" if none */
};

enum { R_EMPTY, R_FILLING, R_FULL, R_CLAIMED, R_FREEING };
#define RWORD(state, inc) ((uint64_t)(inc) << 8 | (state))
#define RSTATE(w) ((unsigned)((w) & 0xff))
#define RINC(w) ((uint32_t)((w) >> 8))

/* One hand-off entry.  Fields are written by the process that holds the
 * entry (FILLING, CLAIMED, FREEING), published by the store of word. */
struct rentry {
	_Atomic uint64_t word;
	shmp_off_t off;
	uint32_t sender;		/* incarnation */
	uint32_t gen;
};

/* Figures, per worker position (one writer at a time, summed at the end). */
struct counters {
	uint64_t allocs, frees, sent, received, nomem;
};

/* Everything the driver and the workers share (anonymous MAP_SHARED). */
struct shared {
	_Atomic uint32_t pause;		/* epoch; workers stop while != their ack */
	_Atomic uint32_t unpause;	/* epoch released */
	_Atomic uint32_t drain;		/* the end: no more sends, empty the ring */
	_Atomic uint32_t nfail;
	char fail[MAX_FAIL][256];
	struct counters cnt[MAX_WORKERS];
	struct wrec w[MAX_WORKERS];
	struct rentry ring[RING];
};

/* What a dead incarnation left: its record as of its death. */
struct dead {
	uint32_t inc, slot;
	struct wrec rec;
};

struct torture {
	struct td_daemon d;
	struct shared *sh;
	shmp_client *c;			/* the driver's session: Check, frees */
	shmp_pool *handoff;
	int admin;			/* raw protocol: Stats, Reclaim */
	struct sp_seg *ro;		/* read-only mapping: lock words */
	pid_t pid[MAX_WORKERS];		/* 0: position empty */
	unsigned nw;
	unsigned starting;		/* the position a forked worker takes */
	uint32_t next_inc;
	uint64_t seed, rng;
	struct dead *dead;
	unsigned ndead, dead_cap;
	/* figures */
	uint64_t kills, connect_kills, crash_deaths, checks, live_checks, orphans, ring_dropped,
		 ring_freed, reclaims, locks_seen;
	unsigned point_deaths[64];
	unsigned armed;
	bool arm_points;		/* fault build, unless SHMPOOL_TORTURE_CRASH_POINTS=0 */
};

/* A shared mutex, named for messages. */
struct lock_ref {
	const struct sp_lock *l;
	const char *what;	/* "registry", "buddy", "pool", "cache" */
	uint32_t id;		/* pool or cache table index */
};

static uint32_t held_locks(struct torture *t, bool print, struct lock_ref *first,
			   uint32_t *total);

/* ---- stamps --------------------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x9e3779b97f4a7c15ull;
	x ^= x >> 29;
	return x;
}

/* Write (holder, gen, pattern) into the first 24 bytes and the last 8. */
static void stamp(void *p, uint32_t size, uint32_t holder, uint32_t gen, shmp_off_t off)
{
	uint64_t *w = p, pat = mix(((uint64_t)holder << 32 | gen) ^ off * 31 ^ size);

	w[0] = (uint64_t)holder << 32 | gen;
	if (size >= 16)
		w[1] = pat;
	if (size >= 24)
		w[2] = ~pat;
	if (size >= 40)
		w[size / 8 - 1] = pat ^ 0x5555aaaa5555aaaaull;
}

static bool stamped(const void *p, uint32_t size, uint32_t holder, uint32_t gen, shmp_off_t off)
{
	const uint64_t *w = p;
	uint64_t pat = mix(((uint64_t)holder << 32 | gen) ^ off * 31 ^ size);

	return w[0] == ((uint64_t)holder << 32 | gen) && (size < 16 || w[1] == pat) &&
	       (size < 24 || w[2] == ~pat) &&
	       (size < 40 || w[size / 8 - 1] == (pat ^ 0x5555aaaa5555aaaaull));
}

/* ---- the worker ------------------------------------------------------------------ */

struct worker {
	struct shared *sh;
	struct wrec *me;
	struct counters *cnt;
	uint32_t n[K_NKINDS];		/* used entries of me->held[kind] */
	uint32_t inc, gen;
	uint64_t rng;
	shmp_client *c;
	shmp_pool *pool, *handoff;
	shmp_cache *cache;
};

static int wfail(struct worker *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int wfail(struct worker *k, const char *fmt, ...)
{
	uint32_t i = atomic_fetch_add(&k->sh->nfail, 1);
	va_list ap;

	if (i < MAX_FAIL) {
		int n = snprintf(k->sh->fail[i], sizeof(k->sh->fail[i]), "worker %u (pid %d): ",
				 k->inc, (int)getpid());

		va_start(ap, fmt);
		vsnprintf(k->sh->fail[i] + n, sizeof(k->sh->fail[i]) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return 1;
}

static uint64_t wrand(struct worker *k)
{
	return tu_rand(&k->rng);
}

static void *do_alloc(struct worker *k, int kind, uint32_t size)
{
	return kind == K_POOL ? shmp_pool_alloc(k->pool, SHMP_NOWAIT)
	       : kind == K_CACHE ? shmp_cache_alloc(k->cache, SHMP_NOWAIT)
				 : shmp_malloc(k->c, size);
}

static int do_free(struct worker *k, int kind, void *p)
{
	return kind == K_POOL ? shmp_pool_free(k->pool, p)
	       : kind == K_CACHE ? shmp_cache_free(k->cache, p) : shmp_free_checked(k->c, p);
}

/*
 * The record of what a worker holds changes by one store per operation, so
 * that a kill anywhere leaves it exact but for the operation in flight,
 * named by op: an allocation not recorded yet (its entry still empty) or a
 * free not unrecorded yet (its entry still used).
 */
static void op_begin(struct wrec *me, int op, int kind, uint32_t i, bool large)
{
	atomic_store(&me->op_kind, (uint32_t)kind);
	atomic_store(&me->op_index, i);
	atomic_store(&me->op_large, large);
	atomic_store(&me->op, (uint32_t)op);
}

/* Allocate one of @kind, stamp it, record it. */
static int take(struct worker *k, int kind)
{
	struct wrec *me = k->me;
	uint32_t size = kind == K_POOL ? ELEM_SIZE : kind == K_CACHE ? OBJ_SIZE : 0, i = 0;
	void *p;

	while (me->held[kind][i].off) /* the caller saw n < NHELD */
		i++;

	if (kind == K_MALLOC) {
		uint64_t r = wrand(k);

		size = r % 32 == 0 ? 16384 + (uint32_t)(r >> 8) % (112 * 1024)
				   : 8 + (uint32_t)(r >> 8) % 8185;
	}
	op_begin(me, OP_ALLOC, kind, i, size > 8192);
	p = do_alloc(k, kind, size);
	if (!p) {
		atomic_store(&me->op, OP_NONE);
		if (errno == ENOMEM) {
			k->cnt->nomem++;
			return 0;
		}
		return wfail(k, "%s alloc of %u bytes: %s: %s", kind_name[kind], size,
			     shmp_err_name(-errno), shmp_errmsg());
	}
	k->gen++;
	stamp(p, size, k->inc, k->gen, shmp_off(k->c, p));
	me->held[kind][i].size = size;
	me->held[kind][i].gen = k->gen;
	atomic_store((_Atomic shmp_off_t *)&me->held[kind][i].off, shmp_off(k->c, p));
	k->n[kind]++;
	atomic_store(&me->op, OP_NONE);
	k->cnt->allocs++;
	return 0;
}

/* Verify and free the @nth used entry of @kind. */
static int drop(struct worker *k, int kind, uint32_t nth)
{
	struct wrec *me = k->me;
	uint32_t i = 0;
	struct item it;
	void *p;
	int rc;

	for (;; i++)
		if (me->held[kind][i].off && nth-- == 0)
			break;
	it = me->held[kind][i];
	p = shmp_ptr(k->c, it.off);
	if (!p || !stamped(p, it.size, k->inc, it.gen, it.off))
		return wfail(k, "%s %#llx (%u bytes, gen %u) no longer carries its stamp: "
				"handed out twice? (word0 %#llx)", kind_name[kind],
			     (unsigned long long)it.off, it.size, it.gen,
			     p ? (unsigned long long)*(uint64_t *)p : 0ull);
	op_begin(me, OP_FREE, kind, i, it.size > 8192);
	rc = do_free(k, kind, p);
	if (rc)
		return wfail(k, "%s free of %#llx: %s: %s", kind_name[kind],
			     (unsigned long long)it.off, shmp_err_name(rc), shmp_errmsg());
	atomic_store((_Atomic shmp_off_t *)&me->held[kind][i].off, 0);
	k->n[kind]--;
	atomic_store(&me->op, OP_NONE);
	k->cnt->frees++;
	return 0;
}

/* Publish a fresh handoff element in an empty ring entry (if one is free). */
static int handoff_send(struct worker *k)
{
	uint32_t start = (uint32_t)(wrand(k) % RING);

	for (uint32_t t = 0; t < 8; t++) {
		struct rentry *e = &k->sh->ring[(start + t) % RING];
		uint64_t w = RWORD(R_EMPTY, 0);
		void *p;

		if (!atomic_compare_exchange_strong(&e->word, &w, RWORD(R_FILLING, k->inc)))
			continue;
		/* off is 0 (whoever empties an entry clears it first), so a death
		 * before the store below leaves FILLING without an offset */
		e->sender = k->inc;
		p = shmp_pool_alloc(k->handoff, SHMP_NOWAIT);
		if (!p) {
			atomic_store(&e->word, RWORD(R_EMPTY, 0));
			if (errno == ENOMEM) {
				k->cnt->nomem++;
				return 0;
			}
			return wfail(k, "handoff alloc: %s: %s", shmp_err_name(-errno),
				     shmp_errmsg());
		}
		k->gen++;
		stamp(p, HANDOFF_SIZE, k->inc, k->gen, shmp_off(k->c, p));
		e->gen = k->gen;
		e->off = shmp_off(k->c, p);
		atomic_store(&e->word, RWORD(R_FULL, k->inc));
		k->cnt->sent++;
		k->cnt->allocs++;
		return 0;
	}
	return 0;
}

/* Claim a published element, verify, re-stamp as ours, verify, free. */
static int handoff_receive(struct worker *k, bool *got)
{
	uint32_t start = (uint32_t)(wrand(k) % RING);

	*got = false;
	for (uint32_t t = 0; t < RING; t++) {
		struct rentry *e = &k->sh->ring[(start + t) % RING];
		uint64_t w = atomic_load(&e->word);
		void *p;
		int rc;

		if (RSTATE(w) != R_FULL ||
		    !atomic_compare_exchange_strong(&e->word, &w, RWORD(R_CLAIMED, k->inc)))
			continue;
		*got = true;
		p = shmp_ptr(k->c, e->off);
		if (!p || !stamped(p, HANDOFF_SIZE, e->sender, e->gen, e->off))
			return wfail(k, "handed-off element %#llx from worker %u (gen %u) does not "
					"carry its sender's stamp: handed out twice? (word0 %#llx)",
				     (unsigned long long)e->off, e->sender, e->gen,
				     p ? (unsigned long long)*(uint64_t *)p : 0ull);
		k->gen++;
		stamp(p, HANDOFF_SIZE, k->inc, k->gen, e->off);
		if (!stamped(p, HANDOFF_SIZE, k->inc, k->gen, e->off))
			return wfail(k, "handed-off element %#llx changed under its receiver",
				     (unsigned long long)e->off);
		e->gen = k->gen; /* for the driver, should we die freeing it */
		atomic_store(&e->word, RWORD(R_FREEING, k->inc));
		rc = shmp_pool_free(k->handoff, p);
		if (rc)
			return wfail(k, "handoff free of %#llx: %s: %s", (unsigned long long)e->off,
				     shmp_err_name(rc), shmp_errmsg());
		e->off = 0;
		atomic_store(&e->word, RWORD(R_EMPTY, 0));
		k->cnt->received++;
		k->cnt->frees++;
		return 0;
	}
	return 0;
}

static bool ring_empty(struct shared *sh)
{
	for (unsigned i = 0; i < RING; i++)
		if (atomic_load(&sh->ring[i].word) != RWORD(R_EMPTY, 0))
			return false;
	return true;
}

/* Between operations: stop while the driver checks. */
static void safe_point(struct worker *k)
{
	uint32_t e = atomic_load(&k->sh->pause);

	if (e == atomic_load(&k->me->paused))
		return;
	atomic_store(&k->me->paused, e);
	while (atomic_load(&k->sh->unpause) != e)
		cl_msleep(1);
}

static int worker_main(void *arg)
{
	struct torture *t = arg; /* the child's copy of the driver's state */
	struct worker k = { .sh = t->sh, .me = &t->sh->w[t->starting],
			    .cnt = &t->sh->cnt[t->starting] };
	int rc;

	k.inc = atomic_load(&k.me->inc);
	k.rng = t->seed ^ ((uint64_t)k.inc * 0x9e3779b97f4a7c15ull) ^ 1;
	if (k.me->point[0])
		setenv("SHMPOOL_CRASH_POINT", k.me->point, 1);
	rc = shmp_connect(t->d.sock, "torture", &k.c);
	if (!rc)
		rc = shmp_pool_open(k.c, "torture.pool", &k.pool);
	if (!rc)
		rc = shmp_pool_open(k.c, "torture.handoff", &k.handoff);
	if (!rc)
		rc = shmp_cache_open(k.c, "torture.cache", &k.cache);
	if (rc)
		return wfail(&k, "set-up: %s: %s", shmp_err_name(rc), shmp_errmsg());
	{
		struct shmp_segment_stats st;

		if (shmp_segment_stats(k.c, &st))
			return wfail(&k, "segment stats: %s", shmp_errmsg());
		atomic_store(&k.me->slot, st.slot);
	}
	atomic_store(&k.me->ready, 1);

	while (!atomic_load(&k.sh->drain)) {
		uint64_t r = wrand(&k);
		unsigned what = (unsigned)(r % 100);
		int kind = what < 30 ? K_MALLOC : what < 50 ? K_POOL : what < 70 ? K_CACHE : -1;
		bool got;

		safe_point(&k);
		if (kind >= 0) {
			uint32_t n = k.n[kind];

			if (n < NHELD && (n == 0 || (r >> 8) % 2))
				rc = take(&k, kind);
			else
				rc = drop(&k, kind, (uint32_t)((r >> 16) % n));
		} else if (what < 85) {
			rc = handoff_send(&k);
		} else {
			rc = handoff_receive(&k, &got);
		}
		if (rc)
			return rc;
	}
	/* the end: empty the ring (our own entries too), free the rest, leave */
	for (;;) {
		bool got = false;

		safe_point(&k);
		if (handoff_receive(&k, &got))
			return 1;
		if (!got && ring_empty(k.sh))
			break;
		if (!got)
			cl_msleep(1);
	}
	for (int kind = 0; kind < K_NKINDS; kind++)
		while (k.n[kind])
			if (drop(&k, kind, 0))
				return 1;
	shmp_pool_close(k.pool);
	shmp_pool_close(k.handoff);
	shmp_cache_close(k.cache);
	shmp_disconnect(k.c);
	return 0;
}

/* ---- the driver ------------------------------------------------------------------ */

static void fail_if_failed(struct torture *t, const char *when)
{
	uint32_t n = atomic_load(&t->sh->nfail);

	if (!n)
		return;
	for (uint32_t i = 0; i < n && i < MAX_FAIL; i++)
		fprintf(stderr, "failure record %u: %s\n", i, t->sh->fail[i]);
	fail_msg("%s: %u failure record(s); first: %s", when, n, t->sh->fail[0]);
}

#if SP_FAULT_INJECTION
/* Points the client library can reach (the rest run in the daemon only). */
static bool client_point(const char *p)
{
	static const char *const daemon_only[] = {
		"pool.create.reserve", "pool.destroy.drain", "pool.resize.swap",
		"registry.insert", "registry.remove", "client.register", "client.mark_dead",
		"client.release", "mag.release",
	};

	for (unsigned i = 0; i < sizeof(daemon_only) / sizeof(daemon_only[0]); i++)
		if (!strcmp(p, daemon_only[i]))
			return false;
	return true;
}
#endif

static void start_worker(struct torture *t, unsigned pos, bool may_arm)
{
	struct wrec *w = &t->sh->w[pos];

	memset(w, 0, sizeof(*w));
	atomic_store(&w->inc, ++t->next_inc);
	atomic_store(&w->slot, UINT32_MAX);
	atomic_store(&w->paused, atomic_load(&t->sh->unpause));
#if SP_FAULT_INJECTION
	if (may_arm && t->arm_points && tu_rand(&t->rng) % 2) {
		const char *p;

		do
			p = sp_crash_points[tu_rand(&t->rng) % sp_nr_crash_points];
		while (!client_point(p));
		snprintf(w->point, sizeof(w->point), "%s:%u", p,
			 1 + (unsigned)(tu_rand(&t->rng) % 8));
		t->armed++;
	}
#else
	(void)may_arm;
#endif
	t->starting = pos;
	t->pid[pos] = cl_fork(worker_main, t);
}

/* Poll Stats until no live slot belongs to @pid: the daemon has seen the
 * death, marked the slot DEAD (or freed it) and reclaimed what the
 * reclaim-on-exit pool lent it.  Returns the slot the daemon had, or
 * UINT32_MAX. */
static uint32_t wait_noticed(struct torture *t, pid_t pid)
{
	uint64_t t0 = rel_now_ms();

	for (;;) {
		Shmpool__Response *r = rel_stats(t->admin);
		uint32_t slot = UINT32_MAX;
		bool alive = false;

		for (size_t i = 0; i < r->stats->n_clients; i++) {
			Shmpool__ClientInfo *ci = r->stats->clients[i];

			if (ci->pid == pid) {
				slot = ci->slot;
				alive |= strcmp(ci->state, "alive") == 0;
			}
		}
		td_free(r);
		if (!alive)
			return slot;
		if (rel_now_ms() - t0 > POLL_MS) {
			fprintf(stderr, "slot %u of pid %d still alive; locks held now:\n", slot,
				(int)pid);
			held_locks(t, true, NULL, NULL);
			fail_msg("the daemon did not notice the death of pid %d in %d ms", (int)pid,
				 POLL_MS);
		}
		cl_msleep(1);
	}
}

/* What @w's record holds: local pool elements, other small objects (cache
 * objects and kmalloc blocks), large blocks. */
static void counts_of(const struct wrec *w, uint64_t *pool, uint64_t *small, uint64_t *large)
{
	*pool = *small = *large = 0;
	for (int kind = 0; kind < K_NKINDS; kind++) {
		for (uint32_t i = 0; i < NHELD; i++) {
			if (!w->held[kind][i].off)
				continue;
			if (kind == K_POOL)
				++*pool;
			else if (w->held[kind][i].size > 8192)
				++*large;
			else
				++*small;
		}
	}
}

/* Handoff elements the ring attributes to sender incarnation @inc:
 * [*lo, *hi] (an entry left FILLING without an offset may or may not hold
 * an element: the sender died in its alloc). */
static void ring_count(struct torture *t, uint32_t inc, uint64_t *lo, uint64_t *hi)
{
	*lo = *hi = 0;
	for (unsigned i = 0; i < RING; i++) {
		struct rentry *e = &t->sh->ring[i];
		uint64_t w = atomic_load(&e->word);

		if (RSTATE(w) == R_FULL && e->sender == inc) {
			++*lo, ++*hi;
		} else if (RSTATE(w) == R_FILLING && RINC(w) == inc) {
			*hi += 1;
			*lo += e->off != 0;
		}
	}
}

/* A dead worker whose slot the daemon freed at once: it held nothing that
 * outlives it (cache objects, kmalloc memory, hand-offs it allocated and
 * the ring still attributes to it). */
static void expect_nothing_left(struct torture *t, const struct wrec *w)
{
	uint32_t inc = atomic_load(&w->inc), allow = 0;
	uint64_t pool, small, large, held, lo, hi;

	counts_of(w, &pool, &small, &large);
	held = small + large; /* cache objects, kmalloc memory */
	if (atomic_load(&w->op) == OP_FREE && atomic_load(&w->op_kind) != K_POOL)
		allow = 1; /* freed, not yet unrecorded */
	if (held > allow)
		fail_msg("worker %u died holding %llu cache objects and kmalloc blocks, yet the "
			 "daemon freed its slot %u at once", inc, (unsigned long long)held,
			 atomic_load(&w->slot));
	ring_count(t, inc, &lo, &hi);
	if (lo)
		fail_msg("worker %u left %llu hand-off(s) in the ring, yet the daemon freed its "
			 "slot %u at once", inc, (unsigned long long)lo, atomic_load(&w->slot));
}

/* Position @pos's process is gone with status @st: check how, remember
 * what it held, wait for the daemon.  The position is left empty. */
static void buried(struct torture *t, unsigned pos, int st, bool killed)
{
	struct wrec *w = &t->sh->w[pos];
	pid_t pid = t->pid[pos];
	uint32_t slot;

	t->pid[pos] = 0;
	if (st != 128 + SIGKILL) {
		fail_if_failed(t, "a worker exited");
		fail_msg("worker %u (pid %d%s%s) ended with status %d, not by SIGKILL",
			 atomic_load(&w->inc), (int)pid, w->point[0] ? ", crash point " : "",
			 w->point, st);
	}
	if (!killed) {
		/* it killed itself: only an armed crash point does that */
		if (!w->point[0])
			fail_msg("worker %u died of SIGKILL nobody sent", atomic_load(&w->inc));
		t->crash_deaths++;
		for (unsigned i = 0; i < sp_nr_crash_points && i < 64; i++)
			if (!strncmp(w->point, sp_crash_points[i], strlen(sp_crash_points[i])) &&
			    w->point[strlen(sp_crash_points[i])] == ':')
				t->point_deaths[i]++;
	}
	slot = wait_noticed(t, pid);
	if (slot == UINT32_MAX) {
		/*
		 * The daemon freed the slot at once: nothing was left to
		 * attribute to it, and it may be another worker's already (a
		 * crash-point death is buried only when the driver next looks,
		 * and a replacement elsewhere may have connected meanwhile).
		 * Record no death for it; its worker must have held nothing
		 * but reclaimed pool elements, give or take the free in flight.
		 */
		expect_nothing_left(t, w);
		return;
	}
	if (atomic_load(&w->slot) != UINT32_MAX && atomic_load(&w->slot) != slot)
		fail_msg("worker %u recorded slot %u, the daemon had pid %d in slot %u",
			 atomic_load(&w->inc), atomic_load(&w->slot), (int)pid, slot);
	if (atomic_load(&w->slot) != UINT32_MAX) {
		/* an older record of this slot: the slot was freed since (its
		 * release completed on a retry) and reused */
		for (unsigned i = 0; i < t->ndead;)
			if (t->dead[i].slot == slot)
				t->dead[i] = t->dead[--t->ndead];
			else
				i++;
		if (t->ndead == t->dead_cap) {
			t->dead_cap = t->dead_cap ? 2 * t->dead_cap : 64;
			t->dead = realloc(t->dead, t->dead_cap * sizeof(*t->dead));
			assert_non_null(t->dead);
		}
		t->dead[t->ndead].inc = atomic_load(&w->inc);
		t->dead[t->ndead].slot = atomic_load(&w->slot);
		memcpy(&t->dead[t->ndead].rec, w, sizeof(*w));
		t->ndead++;
	}
}

/* Collect every worker that died by itself (crash points); true if any. */
static bool reap_self_deaths(struct torture *t)
{
	bool any = false;

	for (unsigned i = 0; i < t->nw; i++) {
		int st;

		if (t->pid[i] > 0 && waitpid(t->pid[i], &st, WNOHANG) == t->pid[i]) {
			buried(t, i, WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st), false);
			any = true;
		}
	}
	return any;
}

static void refill(struct torture *t)
{
	for (unsigned i = 0; i < t->nw; i++)
		if (!t->pid[i])
			start_worker(t, i, true);
}

/* A worker that does not answer: say where it is, for the failure message. */
static void explain_stuck(struct torture *t, unsigned pos)
{
	struct wrec *w = &t->sh->w[pos];
	char path[64], line[512] = "", cmd[256];
	FILE *f;

	fprintf(stderr, "worker %u (pid %d): ready %u, op %u on %s entry %u, blocked in system "
		"call %ld\n", atomic_load(&w->inc), (int)t->pid[pos], atomic_load(&w->ready),
		atomic_load(&w->op), kind_name[atomic_load(&w->op_kind) % K_NKINDS],
		atomic_load(&w->op_index), cl_blocked_syscall(t->pid[pos]));
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)t->pid[pos]);
	if ((f = fopen(path, "r"))) {
		if (fgets(line, sizeof(line), f))
			fprintf(stderr, "  %s", line);
		fclose(f);
	}
	snprintf(path, sizeof(path), "/proc/%d/stack", (int)t->pid[pos]);
	if ((f = fopen(path, "r"))) {
		while (fgets(line, sizeof(line), f))
			fprintf(stderr, "  %s", line);
		fclose(f);
	}
	fprintf(stderr, "  locks held now:\n");
	held_locks(t, true, NULL, NULL);
	snprintf(cmd, sizeof(cmd), "tail -n 30 '%s' | sed 's/^/  daemon: /' >&2", t->d.log);
	if (system(cmd) < 0)
		fprintf(stderr, "  (no daemon log)\n");
	if (getenv("SHMPOOL_TORTURE_GDB")) { /* a user-space backtrace, when asked */
		snprintf(cmd, sizeof(cmd), "gdb -p %d -batch -ex 'thread apply all bt' >&2 2>&1",
			 (int)t->pid[pos]);
		if (system(cmd) < 0)
			fprintf(stderr, "  (gdb did not run)\n");
	}
}

static void wait_ready(struct torture *t)
{
	uint64_t t0 = rel_now_ms();

	for (unsigned i = 0; i < t->nw; i++) {
		while (t->pid[i] && !atomic_load(&t->sh->w[i].ready)) {
			fail_if_failed(t, "start-up");
			if (reap_self_deaths(t)) {
				refill(t);
				i = 0;
				continue;
			}
			if (rel_now_ms() - t0 > POLL_MS) {
				explain_stuck(t, i);
				fail_msg("worker %u did not get going", atomic_load(&t->sh->w[i].inc));
			}
			cl_msleep(1);
		}
	}
}

/* Kill one worker (two when it kills a fresh replacement: at most @budget). */
static void one_kill(struct torture *t, uint64_t budget)
{
	unsigned pos = (unsigned)(tu_rand(&t->rng) % t->nw);
	bool early = tu_rand(&t->rng) % 16 == 0 && budget >= 2;
	uint64_t us = tu_rand(&t->rng) % 5001;
	struct timespec ts = { 0, (long)us * 1000 };
	int st;

	if (!early) {
		wait_ready(t);
	} else { /* a fresh replacement, still connecting */
		if (t->pid[pos]) {
			kill(t->pid[pos], SIGKILL);
			st = tu_wait(t->pid[pos]);
			t->kills++;
			buried(t, pos, st, true);
		}
		start_worker(t, pos, false);
		ts.tv_nsec = (long)(us % 2001) * 1000;
	}
	nanosleep(&ts, NULL);
	fail_if_failed(t, "before a kill");
	if (reap_self_deaths(t) && !t->pid[pos])
		return; /* the crash point was faster */
	if (!t->pid[pos])
		return;
	kill(t->pid[pos], SIGKILL);
	st = tu_wait(t->pid[pos]);
	if (early && !atomic_load(&t->sh->w[pos].ready))
		t->connect_kills++;
	t->kills++;
	buried(t, pos, st, true);
}

/* Stop every worker at a safe point (deaths meanwhile are buried, not
 * replaced). */
static void pause_all(struct torture *t)
{
	uint32_t e = atomic_load(&t->sh->pause) + 1;
	uint64_t t0 = rel_now_ms();

	atomic_store(&t->sh->pause, e);
	for (unsigned i = 0; i < t->nw; i++) {
		while (t->pid[i] && atomic_load(&t->sh->w[i].paused) != e) {
			fail_if_failed(t, "pausing");
			reap_self_deaths(t);
			if (rel_now_ms() - t0 > POLL_MS) {
				explain_stuck(t, i);
				fail_msg("worker %u did not pause", atomic_load(&t->sh->w[i].inc));
			}
			cl_msleep(1);
		}
	}
}

static void resume_all(struct torture *t)
{
	atomic_store(&t->sh->unpause, atomic_load(&t->sh->pause));
}

static struct wrec *live_rec(struct torture *t, uint32_t inc)
{
	for (unsigned i = 0; i < t->nw; i++)
		if (t->pid[i] && atomic_load(&t->sh->w[i].inc) == inc)
			return &t->sh->w[i];
	return NULL;
}

static struct dead *dead_rec(struct torture *t, uint32_t slot)
{
	for (unsigned i = 0; i < t->ndead; i++)
		if (t->dead[i].slot == slot)
			return &t->dead[i];
	return NULL;
}

/* Step 2: entries a dead receiver held.  Paused: no live worker holds any. */
static void resolve_claims(struct torture *t)
{
	for (unsigned i = 0; i < RING; i++) {
		struct rentry *e = &t->sh->ring[i];
		uint64_t w = atomic_load(&e->word);
		void *p = shmp_ptr(t->c, e->off);
		int rc;

		if (RSTATE(w) == R_CLAIMED) {
			/* the claim was never released: still allocated, whatever
			 * its (partly rewritten) stamp says */
			rc = shmp_pool_free(t->handoff, p);
			if (rc)
				fail_msg("ring entry %u claimed by dead worker %u: element %#llx was "
					 "no longer allocated: %s", i, RINC(w),
					 (unsigned long long)e->off, shmp_errmsg());
			t->ring_freed++;
		} else if (RSTATE(w) == R_FREEING) {
			/* died freeing it: still its stamp means still allocated by
			 * it, or freed and not reused; else it is someone else's */
			if (p && stamped(p, HANDOFF_SIZE, RINC(w), e->gen, e->off)) {
				rc = shmp_pool_free(t->handoff, p);
				if (rc && rc != -EINVAL)
					fail_msg("ring entry %u: free of %#llx: %s", i,
						 (unsigned long long)e->off, shmp_errmsg());
				t->ring_freed += rc == 0;
			}
		} else {
			continue;
		}
		e->off = 0;
		atomic_store(&e->word, RWORD(R_EMPTY, 0));
	}
}

/* On a mismatch: what the ring and the segment say about @inc's entries. */
static void explain_ring(struct torture *t, uint32_t inc)
{
	for (unsigned i = 0; i < RING; i++) {
		struct rentry *e = &t->sh->ring[i];
		uint64_t w = atomic_load(&e->word);
		uint32_t pfn = 0;

		if (e->sender != inc && RINC(w) != inc)
			continue;
		fprintf(stderr, "  ring %u: state %u by %u, sender %u gen %u off %#llx", i,
			RSTATE(w), RINC(w), e->sender, e->gen, (unsigned long long)e->off);
		if (e->off && sp_off_pfn(t->ro, e->off, &pfn))
			fprintf(stderr, "; page %u info %#x owner %u slot %u; word0 %#llx", pfn,
				t->ro->pages[pfn].info, t->ro->pages[pfn].owner,
				t->ro->pages[pfn].slot,
				(unsigned long long)*(uint64_t *)(t->ro->base + e->off));
		fprintf(stderr, "\n");
	}
}

/* Who wrote stamp word 0 (holder incarnation << 32 | generation). */
static void print_holder(struct torture *t, uint64_t word0)
{
	uint32_t holder = (uint32_t)(word0 >> 32);

	for (unsigned i = 0; i < t->nw; i++)
		if (t->pid[i] && atomic_load(&t->sh->w[i].inc) == holder) {
			fprintf(stderr, " (stamped by live worker %u, gen %u)", holder,
				(uint32_t)word0);
			return;
		}
	for (unsigned i = 0; i < t->ndead; i++)
		if (t->dead[i].inc == holder) {
			fprintf(stderr, " (stamped by dead worker %u of slot %u, gen %u)", holder,
				t->dead[i].slot, (uint32_t)word0);
			return;
		}
	fprintf(stderr, " (stamp of incarnation %u, gen %u)", holder, (uint32_t)word0);
}

/* On a mismatch: the slot's allocated slab objects, by cache, with stamps. */
static void explain_slot(struct torture *t, uint32_t slot)
{
	struct sp_seg *s = t->ro;
	uint16_t user = (uint16_t)(slot + 1), mag = SP_OWNER_MAG(slot + 1);
	unsigned shown = 0;

	for (uint32_t pfn = 0; pfn < s->geo.nr_pages; pfn++) {
		uint32_t info = s->pages[pfn].info, cid = s->pages[pfn].owner;
		struct sp_cache *c;
		struct sp_slab *slab;

		if (SP_PG_STATE(info) != SP_PG_ALLOC || SP_PG_KIND(info) != SP_KIND_SLAB ||
		    cid >= sp_nr_cache_slots(s))
			continue;
		c = &sp_caches(s)[cid];
		if (!sp_slab_valid(s, c, pfn))
			continue;
		slab = sp_slab_at(s, c, pfn);
		for (uint32_t i = 0; i < c->objperslab; i++) {
			uint16_t tag = sp_slab_owners(c, slab)[i];
			uint8_t *obj;

			if ((tag != user && tag != mag) || !(slab->bitmap[i / 64] >> (i % 64) & 1))
				continue;
			obj = sp_slab_obj(c, slab, i);
			if (shown++ < 40) {
				fprintf(stderr, "  %s object %#llx of cache %s (slab %u, index %u), "
					"word0 %#llx", tag == mag ? "cached" : "held",
					(unsigned long long)(obj - s->base), c->name, pfn, i,
					(unsigned long long)*(uint64_t *)obj);
				print_holder(t, *(uint64_t *)obj);
				fprintf(stderr, "\n");
			}
		}
	}
	fprintf(stderr, "  %u allocated slab objects carry slot %u's tags\n", shown, slot);
}

#define EXPECT_RANGE(what, v, lo, hi)                                                     \
	do {                                                                              \
		if ((v) < (lo) || (v) > (hi)) {                                           \
			explain_ring(t, inc);                                             \
			explain_slot(t, ci->slot);                                        \
			fail_msg("slot %u (%s worker %u, crash point \"%s\", op %u on %s "  \
				 "%u; slot holds %llu pool elements, record %llu pool): "     \
				 "%s %llu, expected %llu..%llu",                              \
				 ci->slot, live ? "live" : "dead", inc, w->point,           \
				 atomic_load(&w->op), kind_name[atomic_load(&w->op_kind) %  \
								 K_NKINDS],                 \
				 atomic_load(&w->op_index),                                 \
				 (unsigned long long)ci->pool_elems, (unsigned long long)pool, \
				 what, (unsigned long long)(v),                             \
				 (unsigned long long)(lo), (unsigned long long)(hi));       \
		}                                                                         \
	} while (0)

/* Step 3: every slot holds what its worker's record says. */
static void check_attribution(struct torture *t, Shmpool__Response *r)
{
	uint32_t my_slot;
	struct shmp_segment_stats st;

	CL_OK(shmp_segment_stats(t->c, &st));
	my_slot = st.slot;
	for (size_t i = 0; i < r->stats->n_clients; i++) {
		Shmpool__ClientInfo *ci = r->stats->clients[i];
		bool live = strcmp(ci->state, "alive") == 0;
		uint64_t pool, small, large, hlo, hhi, olo, ohi, llo, lhi;
		struct wrec *w = NULL;
		struct dead *dd = NULL;
		uint32_t inc = 0;

		if (live) {
			for (unsigned k = 0; k < t->nw; k++)
				if (t->pid[k] && atomic_load(&t->sh->w[k].slot) == ci->slot)
					w = &t->sh->w[k];
		} else {
			dd = dead_rec(t, ci->slot);
			w = dd ? &dd->rec : NULL;
		}
		if (!w) {
			/* the driver's own sessions, or a slot nobody recorded (a
			 * worker killed before it learned its slot): nothing held */
			if (ci->objects || ci->pool_elems || ci->large_blocks)
				fail_msg("slot %u (%s, pid %d%s) holds %llu objects, %llu pool elements, "
					 "%llu large blocks that no worker accounts for", ci->slot,
					 ci->state, ci->pid, ci->slot == my_slot ? ", the driver" : "",
					 (unsigned long long)ci->objects,
					 (unsigned long long)ci->pool_elems,
					 (unsigned long long)ci->large_blocks);
			continue;
		}
		inc = atomic_load(&w->inc);
		counts_of(w, &pool, &small, &large);
		ring_count(t, inc, &hlo, &hhi);
		if (live) {
			/* paused between operations: exact */
			EXPECT_RANGE("objects", ci->objects, pool + small, pool + small);
			EXPECT_RANGE("pool elements", ci->pool_elems, pool + hlo, pool + hlo);
			EXPECT_RANGE("large blocks", ci->large_blocks, large, large);
			continue;
		}
		/* dead: its local pool elements went back at once (reclaim on
		 * exit); the rest as recorded, but for the operation in flight:
		 * an allocation maybe made but not recorded, a free maybe made
		 * but not unrecorded */
		olo = ohi = small;
		llo = lhi = large;
		if (atomic_load(&w->op) != OP_NONE && atomic_load(&w->op_kind) != K_POOL) {
			const struct item *it = &w->held[atomic_load(&w->op_kind)]
							[atomic_load(&w->op_index) % NHELD];
			uint64_t *lo = atomic_load(&w->op_large) ? &llo : &olo;
			uint64_t *hi = atomic_load(&w->op_large) ? &lhi : &ohi;

			if (atomic_load(&w->op) == OP_ALLOC && !it->off)
				++*hi;
			else if (atomic_load(&w->op) == OP_FREE && it->off)
				--*lo;
		}
		EXPECT_RANGE("objects", ci->objects, olo, ohi);
		EXPECT_RANGE("large blocks", ci->large_blocks, llo, lhi);
		EXPECT_RANGE("pool elements (handoff only: the local pool reclaims on exit)",
			     ci->pool_elems, hlo, hhi);
		t->orphans += ci->objects + ci->pool_elems + ci->large_blocks;
	}
}

/* Step 4: drop the dead senders' entries (verified), reclaim dead slots. */
static void reclaim_dead(struct torture *t, Shmpool__Response *stats)
{
	for (unsigned i = 0; i < RING; i++) {
		struct rentry *e = &t->sh->ring[i];
		uint64_t w = atomic_load(&e->word);
		uint32_t sender = RSTATE(w) == R_FULL ? e->sender : RINC(w);

		if (RSTATE(w) == R_EMPTY || live_rec(t, sender))
			continue;
		if (RSTATE(w) == R_FULL &&
		    !stamped(shmp_ptr(t->c, e->off), HANDOFF_SIZE, e->sender, e->gen, e->off))
			fail_msg("ring entry %u: element %#llx of dead worker %u lost its stamp: "
				 "handed out twice?", i, (unsigned long long)e->off, e->sender);
		t->ring_dropped += e->off != 0;
		e->off = 0;
		atomic_store(&e->word, RWORD(R_EMPTY, 0));
	}
	for (size_t i = 0; i < stats->stats->n_clients; i++) {
		Shmpool__ClientInfo *ci = stats->stats->clients[i];
		Shmpool__Response *rr;

		if (strcmp(ci->state, "dead") != 0)
			continue;
		rr = td_reclaim(t->admin, ci->slot);
		TD_EXPECT(rr, 0);
		if (rr->reclaim->objects != ci->objects || rr->reclaim->pool_elems != ci->pool_elems ||
		    rr->reclaim->large_blocks != ci->large_blocks)
			fail_msg("Reclaim of dead slot %u freed %llu objects, %llu pool elements, "
				 "%llu large blocks; Stats attributed %llu, %llu, %llu", ci->slot,
				 (unsigned long long)rr->reclaim->objects,
				 (unsigned long long)rr->reclaim->pool_elems,
				 (unsigned long long)rr->reclaim->large_blocks,
				 (unsigned long long)ci->objects, (unsigned long long)ci->pool_elems,
				 (unsigned long long)ci->large_blocks);
		td_free(rr);
		t->reclaims++;
	}
	t->ndead = 0;
}

/* Who is tid @tid: a worker position, the daemon, or nobody alive. */
static const char *whose(struct torture *t, int tid, char *buf, size_t len)
{
	for (unsigned i = 0; i < t->nw; i++)
		if (t->pid[i] == tid) {
			snprintf(buf, len, "worker %u", atomic_load(&t->sh->w[i].inc));
			return buf;
		}
	snprintf(buf, len, "%s", tid == t->d.pid ? "the daemon"
				 : kill(tid, 0) ? "gone"
						: "another live process");
	return buf;
}

/* glibc's futex word: owner tid (| FUTEX_WAITERS), or FUTEX_OWNER_DIED once
 * the kernel released it for a dead owner; 0 when free. */
static uint32_t lock_word(const struct sp_lock *l)
{
	return (uint32_t)__atomic_load_n(&l->mutex.__data.__lock, __ATOMIC_ACQUIRE);
}

/* One lock of held_locks(): count it if held, remember the first, print. */
static void visit_lock(struct torture *t, const struct sp_lock *l, const char *what, uint32_t id,
		       bool print, struct lock_ref *first, uint32_t *nheld)
{
	uint32_t w = lock_word(l);
	char who[64];

	if (!w)
		return;
	if (!(*nheld)++ && first)
		*first = (struct lock_ref){ l, what, id };
	if (print)
		fprintf(stderr, "  %s lock %u held: futex word %#x, owner tid %d (%s)\n", what, id,
			w, (int)(w & 0x3fffffff), whose(t, (int)(w & 0x3fffffff), who, sizeof(who)));
}

/*
 * Every shared mutex: the registry, the buddy, every pool and cache.  With
 * @print, each held one is described on stderr.  Returns how many are held
 * (the first in *@first unless NULL); *@total (unless NULL) gets how many
 * there are.
 */
static uint32_t held_locks(struct torture *t, bool print, struct lock_ref *first,
			   uint32_t *total)
{
	struct sp_seg *s = t->ro;
	uint32_t nheld = 0;

	visit_lock(t, &s->hdr->registry_lock, "registry", 0, print, first, &nheld);
	visit_lock(t, &s->hdr->buddy.lock, "buddy", 0, print, first, &nheld);
	for (uint32_t i = 0; i < s->geo.max_pools; i++)
		visit_lock(t, &sp_pools(s)[i].lock, "pool", i, print, first, &nheld);
	for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++)
		visit_lock(t, &sp_caches(s)[i].lock, "cache", i, print, first, &nheld);
	if (total)
		*total = 2 + s->geo.max_pools + sp_nr_cache_slots(s);
	return nheld;
}

/* Step 6: every shared mutex is free, none owned by a dead thread. */
static void check_locks(struct torture *t)
{
	uint64_t t0 = rel_now_ms();

	for (;;) {
		struct lock_ref h;
		uint32_t n;
		char who[64];

		if (!held_locks(t, false, &h, &n)) {
			t->locks_seen = n;
			return;
		}
		if (rel_now_ms() - t0 > 2000)
			fail_msg("the %s lock %u is held: futex word %#x, owner tid %d (%s)", h.what,
				 h.id, lock_word(h.l), h.l->mutex.__data.__owner,
				 whose(t, h.l->mutex.__data.__owner, who, sizeof(who)));
		cl_msleep(1);
	}
}

/* After every kill the daemon has noticed, with the workers running: the
 * checker (which takes every lock) finds nothing wrong. */
static void live_check(struct torture *t)
{
	unsigned nv = 0;

	CL_OK(shmp_check(t->c, &nv));
	if (nv)
		CL_FAIL("after %llu kills, with the workers running, the checker found %u "
			"violation(s); first: %s", (unsigned long long)(t->kills + t->crash_deaths),
			nv, shmp_errmsg());
	t->live_checks++;
}

static void checkpoint(struct torture *t)
{
	Shmpool__Response *r;
	unsigned nv = 0;

	pause_all(t);
	fail_if_failed(t, "checkpoint");
	resolve_claims(t);
	r = rel_stats(t->admin);
	check_attribution(t, r);
	reclaim_dead(t, r);
	td_free(r);
	r = rel_stats(t->admin);
	for (size_t i = 0; i < r->stats->n_clients; i++)
		if (strcmp(r->stats->clients[i]->state, "alive") != 0)
			fail_msg("slot %u still %s after its Reclaim", r->stats->clients[i]->slot,
				 r->stats->clients[i]->state);
	td_free(r);
	CL_OK(shmp_check(t->c, &nv));
	if (nv)
		CL_FAIL("after %llu kills the checker found %u violation(s); first: %s",
			(unsigned long long)t->kills, nv, shmp_errmsg());
	t->checks++;
	check_locks(t);
	resume_all(t);
}

/* The run in progress, for after_failure(); NULL once it ended well. */
static struct torture *unfinished;

static void test_torture(void **state)
{
	static const char *const args[] = { "--size", "64M", "--log-level", "error", NULL };
	long kills = rel_param("SHMPOOL_TORTURE_KILLS", 1000, 5000);
	long every = rel_param("SHMPOOL_TORTURE_CHECK_EVERY", 50, 50);
	/* capped below what the workers would hold: the reserve is drained and
	 * refilled all the time, and some allocations fail (counted) */
	struct shmp_pool_opts reclaim = { .flags = SHMP_POOL_RECLAIM_ON_EXIT, .max_nr = POOL_MAX };
	struct shmp_pool_opts pages = { .backing = SHMP_BACKING_PAGES };
	struct torture *t = calloc(1, sizeof(*t));
	const char *seed_env = getenv("SHMPOOL_TORTURE_SEED");
	uint64_t t0, allocs;
	shmp_pool *p;
	shmp_cache *k;
	Shmpool__Response *r;

	(void)state;
	assert_non_null(t);
	t->nw = (unsigned)rel_param("SHMPOOL_TORTURE_WORKERS", 4, 4);
	if (t->nw < 1 || t->nw > MAX_WORKERS)
		t->nw = 4;
	if (every < 1)
		every = 50;
	t->seed = seed_env && *seed_env ? strtoull(seed_env, NULL, 0)
					: (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
	t->rng = t->seed * 2654435761u + 1;
	t->arm_points = SP_FAULT_INJECTION && !(getenv("SHMPOOL_TORTURE_CRASH_POINTS") &&
						!strcmp(getenv("SHMPOOL_TORTURE_CRASH_POINTS"), "0"));
	printf("seed %llu (SHMPOOL_TORTURE_SEED=%llu repeats the schedule); %ld kills, %u "
	       "workers, a check every %ld kills%s%s\n", (unsigned long long)t->seed,
	       (unsigned long long)t->seed, kills, t->nw, every,
	       TORTURE_ASAN ? "; AddressSanitizer build" : "",
	       t->arm_points ? "; fault injection: every other replacement armed with a "
			       "crash point"
	       : SP_FAULT_INJECTION ? "; crash points not armed (SHMPOOL_TORTURE_CRASH_POINTS=0)"
				    : "");
	fflush(stdout);
	t->sh = mmap(NULL, sizeof(*t->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		     -1, 0);
	assert_true(t->sh != MAP_FAILED);
	td_init(&t->d);
	unfinished = t;
	td_start(&t->d, args);
	t->admin = rel_admin(&t->d);
	CL_OK(shmp_connect(t->d.sock, "torture-driver", &t->c));
	CL_OK(shmp_pool_create_ex(t->c, "torture.pool", ELEM_SIZE, POOL_MIN, &reclaim, &p));
	shmp_pool_close(p);
	CL_OK(shmp_pool_create_ex(t->c, "torture.handoff", HANDOFF_SIZE, HANDOFF_MIN, &pages,
				  &t->handoff));
	CL_OK(shmp_cache_create(t->c, "torture.cache", OBJ_SIZE, 0, NULL, &k));
	shmp_cache_close(k);
	CL_OK(sp_seg_attach(t->d.shm, -1, SP_ATTACH_RDONLY, &t->ro));

	for (unsigned i = 0; i < t->nw; i++)
		start_worker(t, i, false);
	wait_ready(t);
	t0 = rel_now_ms();
	while (t->kills + t->crash_deaths < (uint64_t)kills) {
		uint64_t before = t->kills + t->crash_deaths;

		one_kill(t, (uint64_t)kills - before);
		refill(t);
		if ((t->kills + t->crash_deaths) / (uint64_t)every != before / (uint64_t)every)
			checkpoint(t);
		else
			live_check(t);
	}
	/* the end: armed workers replaced (they would die draining), a last
	 * checkpoint, then drain and leave */
	for (unsigned i = 0; i < t->nw; i++) {
		if (t->pid[i] && t->sh->w[i].point[0]) {
			kill(t->pid[i], SIGKILL);
			buried(t, i, tu_wait(t->pid[i]), true);
			t->kills++;
		}
	}
	reap_self_deaths(t);
	for (unsigned i = 0; i < t->nw; i++)
		if (!t->pid[i])
			start_worker(t, i, false);
	wait_ready(t);
	checkpoint(t);
	pause_all(t);
	atomic_store(&t->sh->drain, 1);
	resume_all(t);
	for (unsigned i = 0; i < t->nw; i++) {
		int st = td_waitpid(t->pid[i], POLL_MS);

		fail_if_failed(t, "the end");
		if (st != 0)
			fail_msg("worker %u ended with status %d", atomic_load(&t->sh->w[i].inc), st);
		t->pid[i] = 0;
	}
	r = rel_stats(t->admin);
	{
		Shmpool__PoolInfo *pi = td_stats_pool(r, "torture.pool");
		Shmpool__PoolInfo *hi = td_stats_pool(r, "torture.handoff");
		Shmpool__CacheInfo *ci = rel_stats_cache(r, "torture.cache");

		assert_non_null(pi);
		assert_non_null(hi);
		assert_non_null(ci);
		if (pi->nr_out || pi->curr_nr != pi->min_nr || hi->nr_out || hi->curr_nr != hi->min_nr ||
		    ci->active_objs)
			fail_msg("at the end: pool %llu out, reserve %u of %u; handoff %llu out, "
				 "reserve %u of %u; cache %llu objects", (unsigned long long)pi->nr_out,
				 pi->curr_nr, pi->min_nr, (unsigned long long)hi->nr_out, hi->curr_nr,
				 hi->min_nr, (unsigned long long)ci->active_objs);
		for (size_t i = 0; i < r->stats->n_clients; i++) {
			Shmpool__ClientInfo *cl = r->stats->clients[i];

			if (cl->objects || cl->pool_elems || cl->large_blocks ||
			    strcmp(cl->state, "alive"))
				fail_msg("at the end: slot %u (%s, pid %d) holds %llu objects", cl->slot,
					 cl->state, cl->pid, (unsigned long long)cl->objects);
		}
	}
	td_free(r);
	{
		unsigned nv = 0;

		CL_OK(shmp_check(t->c, &nv));
		if (nv)
			CL_FAIL("at the end the checker found %u violation(s): %s", nv,
				shmp_errmsg());
		t->checks++;
	}
	check_locks(t);
	for (unsigned i = 1; i < t->nw; i++) {
		t->sh->cnt[0].allocs += t->sh->cnt[i].allocs;
		t->sh->cnt[0].frees += t->sh->cnt[i].frees;
		t->sh->cnt[0].sent += t->sh->cnt[i].sent;
		t->sh->cnt[0].received += t->sh->cnt[i].received;
		t->sh->cnt[0].nomem += t->sh->cnt[i].nomem;
	}
	allocs = t->sh->cnt[0].allocs;
	printf("kills: %llu in %.1f s (%llu by the driver, %llu of them during connect; %llu at "
	       "crash points); workers: %u at a time, %u in all\n",
	       (unsigned long long)(t->kills + t->crash_deaths),
	       (double)(rel_now_ms() - t0) / 1000, (unsigned long long)t->kills,
	       (unsigned long long)t->connect_kills, (unsigned long long)t->crash_deaths, t->nw,
	       t->next_inc);
	printf("allocations: %llu, frees: %llu, hand-offs: %llu sent, %llu received, ENOMEM: %llu\n",
	       (unsigned long long)allocs, (unsigned long long)t->sh->cnt[0].frees,
	       (unsigned long long)t->sh->cnt[0].sent, (unsigned long long)t->sh->cnt[0].received,
	       (unsigned long long)t->sh->cnt[0].nomem);
	printf("live checks (workers running, after each kill between the checkpoints): %llu, each with 0 "
	       "violations\n", (unsigned long long)t->live_checks);
	printf("checks through the daemon: %llu, each with 0 violations and all %llu locks free; "
	       "orphans attributed to dead slots and reclaimed: %llu (%llu dead slots); hand-off "
	       "elements of killed workers: %llu left in the ring and freed by reclaim, %llu "
	       "claimed by a dead receiver and freed by the driver\n",
	       (unsigned long long)t->checks, (unsigned long long)t->locks_seen,
	       (unsigned long long)t->orphans, (unsigned long long)t->reclaims,
	       (unsigned long long)t->ring_dropped, (unsigned long long)t->ring_freed);
	if (SP_FAULT_INJECTION) {
		printf("crash points: %u replacements armed, %llu died at their point:",
		       t->armed, (unsigned long long)t->crash_deaths);
		for (unsigned i = 0; i < sp_nr_crash_points && i < 64; i++)
			if (t->point_deaths[i])
				printf(" %s %u", sp_crash_points[i], t->point_deaths[i]);
		printf("\n");
	}
	unfinished = NULL;
	sp_seg_detach(t->ro);
	shmp_pool_close(t->handoff);
	shmp_disconnect(t->c);
	close(t->admin);
	td_cleanup(&t->d);
	munmap(t->sh, sizeof(*t->sh));
	free(t->dead);
	free(t);
}

/* After a failure: stop the workers and the daemon, show the daemon's log
 * (errors only: a failed release or lock says so there). */
static int after_failure(void **state)
{
	struct torture *t = unfinished;

	(void)state;
	if (!t)
		return 0;
	for (unsigned i = 0; i < t->nw; i++)
		if (t->pid[i] > 0) {
			kill(t->pid[i], SIGKILL);
			waitpid(t->pid[i], NULL, 0);
		}
	td_cleanup(&t->d);
	unfinished = NULL;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_torture, after_failure),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
