/* SPDX-License-Identifier: MIT */
/*
 * bench-util.c - clock, idle thread, RESULT lines, the mixed-size trace,
 * the offset ring and the worker start line (see bench-util.h).
 */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

const size_t bench_sizes[3] = { 64, 256, 4096 };
uint64_t bench_case_budget_ns = 1000000000ull;
uint64_t bench_scale_ns = 150000000ull;
const unsigned bench_batches[2] = { 1, 256 };

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *idle_main(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

void bench_idle_thread(void)
{
	pthread_t t;
	int rc = pthread_create(&t, NULL, idle_main, NULL);

	if (rc)
		bench_die("pthread_create: %s", strerror(rc));
	pthread_detach(t);
}

void bench_result(const char *part, const char *alloc, const char *fmt, ...)
{
	char rest[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rest, sizeof(rest), fmt, ap);
	va_end(ap);
	printf("RESULT {\"part\": \"%s\", \"alloc\": \"%s\"%s}\n", part, alloc, rest);
	fflush(stdout);
}

void bench_die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

uint64_t bench_rss_bytes(void)
{
	unsigned long size = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &rss) != 2)
		rss = 0;
	fclose(f);
	return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

const char *bench_malloc_origin(void)
{
	void *(*volatile m)(size_t) = malloc;
	Dl_info info;
	const char *slash;

	if (!dladdr((void *)m, &info) || !info.dli_fname)
		return "unknown";
	slash = strrchr(info.dli_fname, '/');
	return slash ? slash + 1 : info.dli_fname;
}

/* ---- command line ---------------------------------------------------------- */

static uint64_t parse_u64(const char *what, const char *v)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(v ? v : "", &end, 10);
	if (!v || !*v || *end || errno)
		bench_die("%s wants a number, not '%s'", what, v ? v : "");
	return x;
}

void bench_parse(int argc, char **argv, struct bench_opts *o)
{
	bool iters_set = false, ops_set = false;

	memset(o, 0, sizeof(*o));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--quick")) {
			o->quick = true;
		} else if (!strcmp(a, "--iters")) {
			o->iters = parse_u64(a, v);
			iters_set = true;
			i++;
		} else if (!strcmp(a, "--trace-ops")) {
			o->trace_ops = (uint32_t)parse_u64(a, v);
			ops_set = true;
			i++;
		} else if (!strcmp(a, "--parts")) {
			if (!v)
				bench_die("--parts wants a list");
			o->parts = v;
			i++;
		} else if (!strcmp(a, "--socket")) {
			if (!v)
				bench_die("--socket wants a path");
			o->socket = v;
			i++;
		} else if (!strcmp(a, "--one")) {
			unsigned long long n = 0;
			size_t size = 0;
			unsigned batch = 0;

			if (!v ||
			    sscanf(v, "%63[^:]:%zu:%u:%llu", o->one_alloc, &size, &batch, &n) !=
				    4 ||
			    !size || !batch || batch > 256 || !n)
				bench_die("--one wants ALLOC:SIZE:BATCH:N");
			o->one_size = size;
			o->one_batch = batch;
			o->one_n = n;
			i++;
		} else {
			bench_die("unknown argument '%s'", a);
		}
	}
	if (!iters_set)
		o->iters = o->quick ? 20000 : 1000000;
	if (!ops_set)
		o->trace_ops = o->quick ? 20000 : 1000000;
	bench_case_budget_ns = o->quick ? 200000000ull : 1000000000ull;
	bench_scale_ns = o->quick ? 20000000ull : 150000000ull;
	if (o->one_alloc[0])
		bench_case_budget_ns = UINT64_MAX; /* callgrind counts exactly n pairs */
	if (!o->iters || o->trace_ops < 16)
		bench_die("--iters and --trace-ops must be positive (trace: 16 at least)");
	/* about 8 operations per object at the high-water mark */
	o->trace_high = o->trace_ops / 64 > 8000 ? 8000 : o->trace_ops / 64 + 1;
}

bool bench_take_flag(int *argc, char **argv, const char *flag)
{
	bool found = false;
	int n = 1;

	for (int i = 1; i < *argc; i++) {
		if (!strcmp(argv[i], flag))
			found = true;
		else
			argv[n++] = argv[i];
	}
	argv[n] = NULL;
	*argc = n;
	return found;
}

bool bench_part(const struct bench_opts *o, const char *name)
{
	size_t len = strlen(name);
	const char *p = o->parts;

	if (o->one_alloc[0])
		return false;
	if (!p)
		return true;
	while (*p) {
		if (!strncmp(p, name, len) && (p[len] == ',' || p[len] == '\0'))
			return true;
		p = strchr(p, ',');
		if (!p)
			break;
		p++;
	}
	return false;
}

/* ---- the mixed-size trace ------------------------------------------------- */

static uint64_t xorshift(uint64_t *s)
{
	/* xorshift64* (Vigna) */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static double uniform(uint64_t *s)
{
	return (double)(xorshift(s) >> 11) / 9007199254740992.0; /* [0, 1) */
}

/* The live-object target at step i: 0 -> high -> high/8 -> high -> high/8. */
static uint32_t target_at(uint32_t i, uint32_t n, uint32_t high)
{
	double q = (double)i / ((double)n / 4.0), low = high / 8.0;
	unsigned seg = (unsigned)q;
	double f = q - seg;

	switch (seg) {
	case 0:
		return (uint32_t)(f * high);
	case 1:
		return (uint32_t)(high - f * (high - low));
	case 2:
		return (uint32_t)(low + f * (high - low));
	default:
		return (uint32_t)(high - f * (high - low));
	}
}

void bench_trace_make(struct bench_trace *t, uint32_t n, uint32_t high, uint64_t seed)
{
	uint32_t *live, *freeslots, *where, nr_live = 0, nr_free, i;
	uint32_t *cur;
	uint64_t s = seed ? seed : 1, bytes = 0;

	memset(t, 0, sizeof(*t));
	t->n = n;
	t->nr_slots = high + high / 4 + 1;
	t->size = calloc(n, sizeof(*t->size));
	t->slot = calloc(n, sizeof(*t->slot));
	live = calloc(t->nr_slots, sizeof(*live));
	where = calloc(t->nr_slots, sizeof(*where));
	cur = calloc(t->nr_slots, sizeof(*cur));
	freeslots = calloc(t->nr_slots, sizeof(*freeslots));
	if (!t->size || !t->slot || !live || !where || !cur || !freeslots)
		bench_die("out of memory making the trace");
	for (i = 0; i < t->nr_slots; i++)
		freeslots[i] = t->nr_slots - 1 - i;
	nr_free = t->nr_slots;
	for (i = 0; i < n; i++) {
		uint32_t target = target_at(i, n, high);
		bool grow = nr_live < target;
		bool alloc = uniform(&s) < (grow ? 0.8 : 0.2);

		if (nr_live == 0)
			alloc = true;
		if (nr_free == 0)
			alloc = false;
		if (alloc) {
			uint32_t slot = freeslots[--nr_free];
			uint32_t size = (uint32_t)(8.0 * exp2(uniform(&s) * 10.0));

			if (size < 8)
				size = 8;
			if (size > 8192)
				size = 8192;
			t->size[i] = size;
			t->slot[i] = slot;
			cur[slot] = size;
			where[slot] = nr_live;
			live[nr_live++] = slot;
			bytes += size;
			t->nr_alloc++;
			if (bytes > t->peak_live)
				t->peak_live = bytes;
		} else {
			uint32_t k = (uint32_t)(uniform(&s) * nr_live), slot = live[k];

			t->size[i] = 0;
			t->slot[i] = slot;
			bytes -= cur[slot];
			live[k] = live[--nr_live];
			where[live[k]] = k;
			freeslots[nr_free++] = slot;
		}
	}
	free(live);
	free(where);
	free(cur);
	free(freeslots);
	t->obj = calloc(t->nr_slots, sizeof(*t->obj));
	t->obj_size = calloc(t->nr_slots, sizeof(*t->obj_size));
	if (!t->obj || !t->obj_size)
		bench_die("out of memory making the trace");
	/* touch every page now: calloc may hand out untouched zero pages */
	for (size_t k = 0; k < t->nr_slots; k += 512) {
		((void *volatile *)t->obj)[k] = NULL;
		((volatile uint32_t *)t->obj_size)[k] = 0;
	}
}

void bench_trace_free(struct bench_trace *t)
{
	free(t->size);
	free(t->slot);
	free(t->obj);
	free(t->obj_size);
	memset(t, 0, sizeof(*t));
}

/* ---- the ring ----------------------------------------------------------------- */

/* Spin a little, then give the CPU away: on a machine with two cores (and
 * other work), the process we wait for may need ours. */
static inline void cpu_relax(unsigned *spins)
{
	if (++*spins % 128 == 0) {
		sched_yield();
		return;
	}
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

void bench_ring_push(struct bench_ring *r, uint64_t v)
{
	uint64_t head = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
	unsigned spins = 0;

	/* paired with the release store of tail in bench_ring_pop() */
	while (head - __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) >= BENCH_RING_SIZE)
		cpu_relax(&spins);
	r->slot[head % BENCH_RING_SIZE] = v;
	/* paired with the acquire load of head in bench_ring_pop() */
	__atomic_store_n(&r->head, head + 1, __ATOMIC_RELEASE);
}

uint64_t bench_ring_pop(struct bench_ring *r)
{
	uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_RELAXED), v;
	unsigned spins = 0;

	/* paired with the release store of head in bench_ring_push() */
	while (__atomic_load_n(&r->head, __ATOMIC_ACQUIRE) == tail)
		cpu_relax(&spins);
	v = r->slot[tail % BENCH_RING_SIZE];
	/* paired with the acquire load of tail in bench_ring_push() */
	__atomic_store_n(&r->tail, tail + 1, __ATOMIC_RELEASE);
	return v;
}

/* ---- processes ------------------------------------------------------------------ */

struct bench_gate *bench_gate_new(void)
{
	struct bench_gate *g =
		mmap(NULL, sizeof(*g), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (g == MAP_FAILED)
		bench_die("mmap: %s", strerror(errno));
	memset(g, 0, sizeof(*g));
	return g;
}

void bench_gate_wait(struct bench_gate *g)
{
	__atomic_fetch_add(&g->ready, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&g->go, __ATOMIC_ACQUIRE))
		sched_yield();
}

void bench_gate_open(struct bench_gate *g, unsigned nr_workers)
{
	while (__atomic_load_n(&g->ready, __ATOMIC_ACQUIRE) < nr_workers &&
	       !__atomic_load_n(&g->failed, __ATOMIC_RELAXED))
		sched_yield();
	g->deadline_ns = bench_now_ns() + bench_scale_ns;
	__atomic_store_n(&g->go, 1, __ATOMIC_RELEASE);
}

void bench_scale_record(unsigned idx, uint64_t t0, uint64_t count)
{
	bench_gate->start_ns[idx] = t0;
	bench_gate->end_ns[idx] = bench_now_ns();
	bench_gate->count[idx] = count;
}

void bench_scale_timed(unsigned idx, uint64_t (*chunk)(void *ctx), void *ctx)
{
	uint64_t t0 = bench_now_ns(), n = 0;

	do
		n += chunk(ctx);
	while (bench_now_ns() < bench_gate->deadline_ns);
	bench_scale_record(idx, t0, n);
}

int bench_fork(int (*fn)(void *arg, unsigned idx), void *arg, unsigned idx)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		bench_die("fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		bench_idle_thread();
		_exit(fn(arg, idx));
	}
	return (int)pid;
}

bool bench_wait(int pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return false;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

struct bench_gate *bench_gate;

double bench_scale(unsigned nr_procs, int (*fn)(void *arg, unsigned idx), void *arg)
{
	int pids[8];
	uint64_t first = UINT64_MAX, last = 0, total = 0;
	bool ok = true;

	if (nr_procs > 8)
		bench_die("at most 8 workers");
	if (!bench_gate)
		bench_gate = bench_gate_new();
	memset(bench_gate, 0, sizeof(*bench_gate));
	for (unsigned i = 0; i < nr_procs; i++)
		pids[i] = bench_fork(fn, arg, i);
	bench_gate_open(bench_gate, nr_procs);
	for (unsigned i = 0; i < nr_procs; i++)
		ok &= bench_wait(pids[i]);
	if (!ok || bench_gate->failed)
		return -1;
	for (unsigned i = 0; i < nr_procs; i++) {
		if (bench_gate->start_ns[i] < first)
			first = bench_gate->start_ns[i];
		if (bench_gate->end_ns[i] > last)
			last = bench_gate->end_ns[i];
		total += bench_gate->count[i];
	}
	return last > first ? (double)total / ((double)(last - first) / 1e9) : -1;
}

void bench_scale_1v2(const char *alloc, int (*fn)(void *arg, unsigned idx), void *arg)
{
	double one = bench_scale(1, fn, arg), two = bench_scale(2, fn, arg);
	double again = bench_scale(1, fn, arg);

	if (one < 0 || two < 0 || again < 0)
		bench_die("a scale worker failed");
	if (again > one)
		one = again;
	for (unsigned procs = 1; procs <= 2; procs++)
		bench_result("scale", alloc,
			     ", \"procs\": %u, \"size\": 64, \"value\": %.3f, \"unit\": \"Mpairs/s\"",
			     procs, (procs == 1 ? one : two) / 1e6);
}
