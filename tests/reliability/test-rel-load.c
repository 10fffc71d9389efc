/* SPDX-License-Identifier: MIT */
/*
 * test-rel-load.c - many concurrent clients connecting, allocating and
 * disconnecting in churn: the daemon's memory and file descriptors stay
 * flat.
 *
 * LOADERS processes hold CLIENTS sessions between them (libshmpool, each
 * its own connection and client slot), all connected at once.  Each
 * session opens a shared pool and holds a few elements and a shmp_malloc
 * block.  Then, for SECONDS, every loader picks one of its sessions at
 * random, frees what it holds, says goodbye, connects again, reopens the
 * pool and allocates again - over and over.  The daemon runs with
 * --max-clients and --max-connections above CLIENTS and the test's
 * RLIMIT_NOFILE raised so the daemon (which inherits it) can hold them.
 *
 * Every 250 ms the driver samples the daemon's /proc/PID/status (VmRSS,
 * RssAnon, RssShmem) and the entries of /proc/PID/fd, and prints them.
 * Flat means: the last sample is no more than a generous bound above the
 * first sample after a warm-up (a quarter of the run): RssAnon (the heap,
 * where a per-connection leak shows) +4 MiB + 25%, VmRSS +16 MiB + 25%
 * (it also counts the segment pages the daemon touched), fds + LOADERS
 * (sessions between goodbye and connect).  After every loader has gone,
 * the daemon's fd count is back to what it was before they came, no client
 * slot is left, nothing is out in the pool, and the Check is clean.
 *
 * Short version (make test): 200 clients, 10 s.  make soak: 1,000 clients,
 * 60 s.  $SHMPOOL_CLIENTS, $SHMPOOL_LOAD_SECONDS, $SHMPOOL_LOADERS override.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-util.h"
#include "rel-util.h"

#define MAX_LOADERS 64
#define PER_SESSION 4		/* pool elements each session holds */
#define POLL_MS 60000
#define MAX_SAMPLES 4096

struct lstat {
	_Atomic uint64_t connects;	/* sessions opened */
	_Atomic uint64_t allocs;
	_Atomic uint32_t ready;		/* all its sessions connected */
	_Atomic uint32_t errors;
	char error[256];
};

struct shared {
	_Atomic uint32_t stop;
	struct lstat l[MAX_LOADERS];
};

struct larg {
	struct td_daemon *d;
	struct shared *sh;
	unsigned id, n;
};

struct session {
	shmp_client *c;
	shmp_pool *p;
	void *e[PER_SESSION];
	void *m;
};

static int open_session(struct lstat *l, const struct td_daemon *d, struct session *s,
			uint64_t *rng)
{
	int rc = shmp_connect(d->sock, "rel-load", &s->c);

	if (!rc)
		rc = shmp_pool_open(s->c, "load.pool", &s->p);
	if (rc) {
		if (atomic_fetch_add(&l->errors, 1) == 0)
			snprintf(l->error, sizeof(l->error), "connect/open: %s: %s",
				 shmp_err_name(rc), shmp_errmsg());
		return rc;
	}
	for (unsigned i = 0; i < PER_SESSION; i++) {
		s->e[i] = shmp_pool_alloc(s->p, SHMP_NOWAIT);
		if (s->e[i])
			memset(s->e[i], 0x11, 64);
	}
	s->m = shmp_malloc(s->c, 32 + tu_rand(rng) % 4000);
	atomic_fetch_add(&l->connects, 1);
	atomic_fetch_add(&l->allocs, PER_SESSION + 1);
	return 0;
}

static void close_session(struct lstat *l, struct session *s)
{
	for (unsigned i = 0; i < PER_SESSION; i++)
		if (s->e[i] && shmp_pool_free(s->p, s->e[i]) && atomic_fetch_add(&l->errors, 1) == 0)
			snprintf(l->error, sizeof(l->error), "pool free: %s", shmp_errmsg());
	if (s->m && shmp_free_checked(s->c, s->m) && atomic_fetch_add(&l->errors, 1) == 0)
		snprintf(l->error, sizeof(l->error), "free: %s", shmp_errmsg());
	shmp_pool_close(s->p);
	shmp_disconnect(s->c);
	memset(s, 0, sizeof(*s));
}

static int loader(void *arg)
{
	struct larg *a = arg;
	struct lstat *l = &a->sh->l[a->id];
	struct session *s = calloc(a->n, sizeof(*s));
	uint64_t rng = 77 + a->id;

	if (!s)
		return 1;
	for (unsigned i = 0; i < a->n; i++)
		if (open_session(l, a->d, &s[i], &rng))
			return 1;
	atomic_store(&l->ready, 1);
	while (!atomic_load(&a->sh->stop)) {
		struct session *x = &s[tu_rand(&rng) % a->n];

		close_session(l, x);
		if (open_session(l, a->d, x, &rng))
			return 1;
	}
	for (unsigned i = 0; i < a->n; i++)
		close_session(l, &s[i]);
	free(s);
	return atomic_load(&l->errors) ? 1 : 0;
}

static uint64_t total_connects(struct shared *sh, unsigned n)
{
	uint64_t t = 0;

	for (unsigned i = 0; i < n; i++)
		t += atomic_load(&sh->l[i].connects);
	return t;
}

static void test_load(void **state)
{
	long clients = rel_param("SHMPOOL_CLIENTS", 200, 1000);
	long seconds = rel_param("SHMPOOL_LOAD_SECONDS", 10, 60);
	unsigned nl = (unsigned)rel_param("SHMPOOL_LOADERS", 10, 20);
	char slots[24], conns[24];
	const char *args[] = { "--max-clients", slots, "--max-connections", conns, "--size", "32M",
			       "--log-level", "warn", NULL };
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	static struct rel_sample smp[MAX_SAMPLES];
	static uint64_t smp_ms[MAX_SAMPLES], smp_conn[MAX_SAMPLES];
	struct rel_sample before, peak = { 0 }, after, warm;
	struct larg la[MAX_LOADERS];
	pid_t pids[MAX_LOADERS];
	unsigned long nofile;
	unsigned ns = 0, iwarm;
	struct td_daemon d;
	uint64_t t0, t1;
	Shmpool__Response *r;
	shmp_client *c;
	shmp_pool *p;
	int admin;

	(void)state;
	assert_true(sh != MAP_FAILED);
	if (nl > MAX_LOADERS)
		nl = MAX_LOADERS;
	/* the daemon inherits it: one fd per connection, plus its own */
	nofile = rel_set_nofile((unsigned long)clients * 2 + 512);
	if (nofile < (unsigned long)clients + 128)
		fail_msg("RLIMIT_NOFILE is %lu: too low for %ld clients", nofile, clients);
	/* under AddressSanitizer, freed memory waits in a quarantine (256 MiB)
	 * before reuse: the daemon's RSS would grow by design, not by a leak */
	{
		const char *asan = getenv("ASAN_OPTIONS");
		char opts[512];

		snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=0", asan ? asan : "",
			 asan && *asan ? ":" : "");
		setenv("ASAN_OPTIONS", opts, 1);
	}
	snprintf(slots, sizeof(slots), "%ld", clients + 100);
	snprintf(conns, sizeof(conns), "%ld", clients + 100);
	td_init(&d);
	td_start(&d, args);
	CL_OK(shmp_connect(d.sock, "rel-load-setup", &c));
	CL_OK(shmp_pool_create(c, "load.pool", 128, 16, &p));
	shmp_pool_close(p);
	shmp_disconnect(c);
	assert_true(rel_sample(d.pid, &before));

	for (unsigned i = 0; i < nl; i++) {
		la[i] = (struct larg){ .d = &d, .sh = sh, .id = i,
				       .n = (unsigned)(clients / nl + (i < clients % nl)) };
		pids[i] = cl_fork(loader, &la[i]);
	}
	for (unsigned i = 0; i < nl; i++)
		if (!CL_POLL(atomic_load(&sh->l[i].ready) || atomic_load(&sh->l[i].errors) ||
			     waitpid(pids[i], NULL, WNOHANG) != 0, POLL_MS) ||
		    !atomic_load(&sh->l[i].ready))
			fail_msg("loader %u did not connect its %u sessions: %s", i, la[i].n,
				 sh->l[i].error);
	/* all of them connected at once */
	assert_true(rel_sample(d.pid, &peak));
	printf("%ld sessions connected at once from %u processes: daemon fds %u (before: %u), "
	       "VmRSS %llu kB (before: %llu kB)\n", clients, nl, peak.fds, before.fds,
	       (unsigned long long)peak.vm_rss_kb, (unsigned long long)before.vm_rss_kb);
	assert_true(peak.fds + nl >= before.fds + (unsigned)clients); /* a few are reconnecting */

	t0 = rel_now_ms();
	t1 = t0 + (uint64_t)seconds * 1000;
	while (rel_now_ms() < t1 && ns < MAX_SAMPLES) {
		cl_msleep(250);
		if (!rel_sample(d.pid, &smp[ns]))
			fail_msg("the daemon is gone");
		smp_ms[ns] = rel_now_ms() - t0;
		smp_conn[ns] = total_connects(sh, nl);
		ns++;
		for (unsigned i = 0; i < nl; i++)
			if (atomic_load(&sh->l[i].errors))
				fail_msg("loader %u: %s", i, sh->l[i].error);
	}
	atomic_store(&sh->stop, 1);
	for (unsigned i = 0; i < nl; i++)
		if (tu_wait(pids[i]) != 0)
			fail_msg("loader %u failed: %s", i, sh->l[i].error);

	assert_true(ns >= 4);
	printf("%8s %10s %10s %10s %6s %10s\n", "ms", "VmRSS kB", "RssAnon kB", "RssShmem kB",
	       "fds", "sessions");
	for (unsigned i = 0; i < ns; i++)
		if (i < 4 || i % 8 == 0 || i + 1 == ns)
			printf("%8llu %10llu %10llu %10llu %6u %10llu\n",
			       (unsigned long long)smp_ms[i], (unsigned long long)smp[i].vm_rss_kb,
			       (unsigned long long)smp[i].rss_anon_kb,
			       (unsigned long long)smp[i].rss_shmem_kb, smp[i].fds,
			       (unsigned long long)smp_conn[i]);
	iwarm = ns / 4;
	warm = smp[iwarm];
	printf("churn: %llu sessions opened and closed in %.1f s (%.0f/s); warm-up sample at %llu "
	       "ms\n", (unsigned long long)smp_conn[ns - 1], (double)smp_ms[ns - 1] / 1000,
	       smp_ms[ns - 1] ? (double)smp_conn[ns - 1] * 1000 / (double)smp_ms[ns - 1] : 0.0,
	       (unsigned long long)smp_ms[iwarm]);
	printf("flat: RssAnon %llu -> %llu kB, VmRSS %llu -> %llu kB, fds %u -> %u\n",
	       (unsigned long long)warm.rss_anon_kb, (unsigned long long)smp[ns - 1].rss_anon_kb,
	       (unsigned long long)warm.vm_rss_kb, (unsigned long long)smp[ns - 1].vm_rss_kb,
	       warm.fds, smp[ns - 1].fds);
	assert_true(smp[ns - 1].rss_anon_kb <= warm.rss_anon_kb + 4096 + warm.rss_anon_kb / 4);
	assert_true(smp[ns - 1].vm_rss_kb <= warm.vm_rss_kb + 16384 + warm.vm_rss_kb / 4);
	assert_true(smp[ns - 1].fds <= warm.fds + nl);

	/* everyone gone: the fds are back, nothing is left behind */
	if (!CL_POLL(rel_sample(d.pid, &after) && after.fds <= before.fds, POLL_MS))
		fail_msg("the daemon holds %u fds after every client left, %u before they came",
			 after.fds, before.fds);
	printf("after all clients left: fds %u, VmRSS %llu kB, RssAnon %llu kB\n", after.fds,
	       (unsigned long long)after.vm_rss_kb, (unsigned long long)after.rss_anon_kb);
	admin = rel_admin(&d);
	r = rel_stats(admin);
	assert_int_equal(r->stats->n_clients, 1); /* the admin connection itself */
	assert_int_equal(td_stats_pool(r, "load.pool")->nr_out, 0);
	td_free(r);
	td_check_clean(admin);
	close(admin);
	td_cleanup(&d);
	munmap(sh, sizeof(*sh));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
