/* SPDX-License-Identifier: MIT */
/*
 * test-client-restart.c - the daemon dies (SIGKILL) and comes back while
 * clients keep working.
 *
 * The data path never touches the daemon: a worker process allocates and
 * frees all through the downtime, counting what it does, and nothing may
 * be lost (the pool's counters must equal the clients' counts).  Control
 * calls fail with -ECONNREFUSED while the daemon is down; the first one
 * after it is back reconnects and resumes the session (same slot, same
 * mapping).  A daemon that comes back with another segment (--reset) makes
 * control calls fail with -ESTALE, and once a control call found that,
 * the data path too (its magazines are in a slot the daemon no longer
 * counts as ours).  A daemon that dies while a request is
 * in flight fails that call with -ENOTCONN; one that does not answer in
 * time fails it with -ETIMEDOUT and the session survives.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "client-util.h"

/* The worker's counters.  Lives in the segment (shmp_calloc). */
struct ctl {
	_Atomic uint64_t allocs;
	_Atomic uint64_t frees;
	_Atomic uint64_t held;
	_Atomic uint32_t stop;		/* parent -> worker: stop allocating */
	_Atomic uint32_t stopped;	/* worker -> parent: counters final */
	_Atomic uint32_t release;	/* parent -> worker: free all, exit */
	_Atomic uint32_t errors;
};

struct worker_arg {
	struct cl_daemon *d;
	shmp_off_t ctl_off;
};

#define NHELD 64

static int worker(void *arg)
{
	struct worker_arg *a = arg;
	uint64_t *held[NHELD] = { 0 }, rng = 12345;
	unsigned n = 0;
	shmp_client *c;
	shmp_pool *p, *p2;
	struct ctl *ctl;
	unsigned nv;

	CHILD_CHECK(shmp_connect(a->d->sock, "worker", &c) == 0);
	CHILD_CHECK(shmp_pool_open(c, "restart.pool", &p) == 0);
	CHILD_CHECK((ctl = shmp_ptr(c, a->ctl_off)) != NULL);
	while (!atomic_load(&ctl->stop)) {
		uint64_t r = tu_rand(&rng);

		if (n < NHELD && (n == 0 || r % 3)) {
			uint64_t *e = shmp_pool_alloc(p, 0);

			if (!e) {
				atomic_fetch_add(&ctl->errors, 1);
				continue;
			}
			e[0] = (uint64_t)(uintptr_t)e ^ 0x5a5a;
			held[n++] = e;
			atomic_fetch_add(&ctl->allocs, 1);
		} else {
			unsigned i = (unsigned)(r >> 8) % n;

			if (held[i][0] != ((uint64_t)(uintptr_t)held[i] ^ 0x5a5a) ||
			    shmp_pool_free(p, held[i]) != 0)
				atomic_fetch_add(&ctl->errors, 1);
			held[i] = held[--n];
			atomic_fetch_add(&ctl->frees, 1);
		}
		atomic_store(&ctl->held, n);
	}
	atomic_store(&ctl->stopped, 1);
	while (!atomic_load(&ctl->release))
		cl_msleep(1);
	while (n) {
		CHILD_CHECK(shmp_pool_free(p, held[--n]) == 0);
		atomic_fetch_add(&ctl->frees, 1);
	}
	/* the worker's own first control call since the restart: resume */
	CHILD_CHECK(shmp_pool_open(c, "restart.pool", &p2) == 0);
	CHILD_CHECK(shmp_check(c, &nv) == 0 && nv == 0);
	CHILD_CHECK(atomic_load(&ctl->errors) == 0);
	shmp_pool_close(p2);
	shmp_pool_close(p);
	shmp_disconnect(c); /* unmaps: ctl is gone */
	return 0;
}

static void test_kill_and_restart(void **state)
{
	struct cl_daemon *d = *state;
	struct worker_arg a = { .d = d };
	shmp_client *c = cl_connect(d, "restart-parent");
	struct shmp_segment_stats seg0, seg;
	struct shmp_pool_stats st;
	shmp_pool *p, *x = NULL;
	struct ctl *ctl;
	void *mine[10];
	uint64_t mark;
	pid_t pid;

	CL_OK(shmp_pool_create(c, "restart.pool", 48, 8, &p));
	CL_OK(shmp_segment_stats(c, &seg0));
	ctl = shmp_calloc(c, 1, sizeof(*ctl));
	assert_non_null(ctl);
	a.ctl_off = shmp_off(c, ctl);
	pid = cl_fork(worker, &a);
	if (!CL_POLL(atomic_load(&ctl->allocs) >= 2000, 20000))
		CL_FAIL("the worker did not get going");

	cl_daemon_kill(d, SIGKILL);
	mark = atomic_load(&ctl->allocs);
	/* control calls fail while the daemon is down ... */
	CL_ERR(shmp_pool_open(c, "restart.pool", &x), -ECONNREFUSED);
	assert_null(x);
	CL_ERR(shmp_pool_resize(p, 9), -ECONNREFUSED);
	CL_OK(shmp_segment_stats(c, &seg));
	assert_false(seg.connected);
	/* ... the data path does not care */
	for (int i = 0; i < 10; i++)
		assert_non_null(mine[i] = shmp_pool_alloc(p, 0));
	for (int i = 5; i < 10; i++)
		CL_OK(shmp_pool_free(p, mine[i]));
	if (!CL_POLL(atomic_load(&ctl->allocs) >= mark + 2000, 20000))
		CL_FAIL("the worker stalled while the daemon was down");

	cl_daemon_start(d, NULL); /* same socket, same segment: re-attached */
	CL_OK(shmp_pool_open(c, "restart.pool", &x)); /* reconnects and resumes */
	CL_OK(shmp_segment_stats(c, &seg));
	assert_true(seg.connected);
	assert_int_equal(seg.slot, seg0.slot);
	CL_OK(shmp_pool_resize(x, 12));
	mark = atomic_load(&ctl->allocs);
	if (!CL_POLL(atomic_load(&ctl->allocs) >= mark + 1000, 20000))
		CL_FAIL("the worker stalled after the restart");

	/* count: nothing lost, nothing doubled */
	atomic_store(&ctl->stop, 1);
	if (!CL_POLL(atomic_load(&ctl->stopped), 20000))
		CL_FAIL("the worker did not stop");
	CL_OK(shmp_pool_stats(p, &st));
	assert_int_equal(atomic_load(&ctl->errors), 0);
	assert_int_equal(st.nr_out, atomic_load(&ctl->held) + 5);
	assert_int_equal(st.nr_alloc, atomic_load(&ctl->allocs) + 10);
	assert_int_equal(st.nr_free, atomic_load(&ctl->frees) + 5);
	assert_int_equal(st.min_nr, 12);
	atomic_store(&ctl->release, 1);
	assert_int_equal(tu_wait(pid), 0);
	for (int i = 0; i < 5; i++)
		CL_OK(shmp_pool_free(p, mine[i]));
	CL_OK(shmp_pool_stats(p, &st));
	assert_int_equal(st.nr_out, 0);
	assert_int_equal(st.nr_alloc, st.nr_free);
	shmp_free(c, ctl);
	shmp_pool_close(p);
	shmp_pool_close(x);
	CL_OK(shmp_pool_destroy(c, "restart.pool"));
	cl_check(c);
	shmp_disconnect(c);
}

/* Down for good: control calls keep failing, nothing hangs, disconnect works. */
static void test_daemon_gone(void **state)
{
	struct cl_daemon *d = *state;
	shmp_client *c = cl_connect(d, "orphan");
	shmp_pool *p, *x = NULL;
	void *e;

	CL_OK(shmp_pool_create(c, "gone.pool", 16, 2, &p));
	cl_daemon_kill(d, SIGKILL);
	for (int i = 0; i < 3; i++)
		CL_ERR(shmp_pool_open(c, "gone.pool", &x), -ECONNREFUSED);
	CL_ERR(shmp_check(c, NULL), -ECONNREFUSED);
	assert_non_null(e = shmp_pool_alloc(p, 0));
	CL_OK(shmp_pool_free(p, e));
	assert_non_null(e = shmp_malloc(c, 100));
	shmp_free(c, e);
	shmp_pool_close(p);
	shmp_disconnect(c);
	cl_daemon_start(d, NULL); /* for the teardown's checks */
}

/* Back with a new segment: -ESTALE until the application reconnects. */
static void test_reset_is_stale(void **state)
{
	struct cl_daemon *d = *state;
	shmp_client *c = cl_connect(d, "stale");
	shmp_pool *x = NULL, *p;
	void *e, *m;

	CL_OK(shmp_pool_create(c, "stale.pool", 64, 2, &p));
	assert_non_null(e = shmp_pool_alloc(p, 0)); /* through the magazine */
	CL_OK(shmp_pool_free(p, e));
	assert_non_null(e = shmp_pool_alloc(p, 0));
	assert_non_null(m = shmp_malloc(c, 40));
	cl_daemon_kill(d, SIGKILL);
	cl_daemon_start(d, "--reset");
	CL_ERR(shmp_pool_open(c, "anything", &x), -ESTALE);
	assert_non_null(strstr(shmp_errmsg(), "connect again"));
	CL_ERR(shmp_check(c, NULL), -ESTALE);
	/* the data path knows it too now: nothing from the old slot's magazines */
	errno = 0;
	assert_null(shmp_pool_alloc(p, SHMP_NOWAIT));
	assert_int_equal(errno, ESTALE);
	CL_ERR(shmp_pool_free(p, e), -ESTALE);
	errno = 0;
	assert_null(shmp_malloc(c, 40));
	assert_int_equal(errno, ESTALE);
	CL_ERR(shmp_free_checked(c, m), -ESTALE);
	CL_ERR(shmp_flush(c), -ESTALE);
	shmp_pool_close(p);
	shmp_disconnect(c);
	c = cl_connect(d, "fresh");
	cl_check(c);
	shmp_disconnect(c);
}

/* ---- a request in flight when the daemon dies; a daemon too slow ------------------ */

struct inflight {
	shmp_client *c;
	pid_t tid;
	int rc;
};

static void *inflight_main(void *arg)
{
	struct inflight *t = arg;
	unsigned n;

	t->tid = (pid_t)syscall(SYS_gettid);
	t->rc = shmp_check(t->c, &n);
	return NULL;
}

/* Is thread @tid blocked in recvmsg() (so its request went out)? */
static bool in_recvmsg(pid_t tid)
{
	return cl_blocked_syscall(tid) == SYS_recvmsg;
}

static void test_dies_in_flight(void **state)
{
	struct cl_daemon *d = *state;
	struct inflight t = { .c = cl_connect(d, "inflight") };
	pthread_t th;

	kill(d->pid, SIGSTOP);
	if (!CL_POLL(tu_process_stopped(d->pid), 10000))
		CL_FAIL("the daemon did not stop");
	assert_int_equal(pthread_create(&th, NULL, inflight_main, &t), 0);
	if (!CL_POLL(t.tid && in_recvmsg(t.tid), 10000))
		CL_FAIL("the request did not go out");
	cl_daemon_kill(d, SIGKILL);
	pthread_join(th, NULL);
	assert_int_equal(t.rc, -ENOTCONN);
	cl_daemon_start(d, NULL);
	cl_check(t.c); /* resumed */
	shmp_disconnect(t.c);
}

static void test_slow_daemon(void **state)
{
	struct cl_daemon *d = *state;
	struct shmp_connect_opts opts = { .timeout_ms = 100 };
	shmp_client *c = NULL;
	struct shmp_segment_stats seg0, seg;
	unsigned n = 1;
	int rc = -ETIMEDOUT;

	/* a loaded machine may take longer than 100 ms for Hello: retry */
	for (int i = 0; i < 100 && rc == -ETIMEDOUT; i++)
		rc = shmp_connect_ex(d->sock, "impatient", &opts, &c);
	CL_OK(rc);
	CL_OK(shmp_segment_stats(c, &seg0));
	kill(d->pid, SIGSTOP);
	if (!CL_POLL(tu_process_stopped(d->pid), 10000))
		CL_FAIL("the daemon did not stop");
	CL_ERR(shmp_check(c, &n), -ETIMEDOUT);
	CL_ERR(shmp_check(c, &n), -ETIMEDOUT); /* still waiting for the first reply */
	kill(d->pid, SIGCONT);
	/* the late reply is dropped; the session is the same one */
	rc = -ETIMEDOUT;
	for (int i = 0; i < 1000 && rc == -ETIMEDOUT; i++)
		rc = shmp_check(c, &n);
	CL_OK(rc);
	assert_int_equal(n, 0);
	CL_OK(shmp_segment_stats(c, &seg));
	assert_true(seg.connected);
	assert_int_equal(seg.slot, seg0.slot);
	shmp_disconnect(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_kill_and_restart, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_daemon_gone, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_reset_is_stale, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_dies_in_flight, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_slow_daemon, cl_setup, cl_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
