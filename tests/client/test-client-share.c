/* SPDX-License-Identifier: MIT */
/*
 * test-client-share.c - processes sharing pools through offsets, and the
 * reserve's sleep/wake across processes, all through libshmpool.
 *
 * Helpers are forked children with sessions of their own (shmp_connect in
 * the child); offsets travel over pipes.  Waiting for a child to go to
 * sleep is a bounded poll on the pool's nr_waiters, never a timed sleep.
 */
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-util.h"

#define MAGIC 0x5348415245ull /* "SHARE" */

struct elem {
	uint64_t magic;
	uint64_t index;
	uint64_t writer;
	char text[40];
};

static int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n) {
		ssize_t k = write(fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t n)
{
	char *p = buf;

	while (n) {
		ssize_t k = read(fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* ---- two processes, one pool, offsets ------------------------------------------- */

struct share_arg {
	struct cl_daemon *d;
	int to_child[2], to_parent[2];
};

/* Checks and frees the parent's 50 elements, then hands 10 of its own back. */
static int share_child(void *arg)
{
	struct share_arg *a = arg;
	shmp_client *c;
	shmp_pool *p;
	shmp_off_t off[50];
	char go;

	CHILD_CHECK(shmp_connect(a->d->sock, "share-child", &c) == 0);
	CHILD_CHECK(shmp_pool_open(c, "share.pool", &p) == 0);
	CHILD_CHECK(read_all(a->to_child[0], off, sizeof(off)) == 0);
	for (unsigned i = 0; i < 50; i++) {
		struct elem *e = shmp_ptr(c, off[i]);

		CHILD_CHECK(e && e->magic == MAGIC && e->index == i && e->writer == 1);
		CHILD_CHECK(strcmp(e->text, "from the parent") == 0);
		CHILD_CHECK(shmp_pool_free(p, e) == 0);
	}
	for (unsigned i = 0; i < 10; i++) {
		struct elem *e = shmp_pool_alloc(p, 0);

		CHILD_CHECK(e);
		*e = (struct elem){ .magic = MAGIC, .index = i, .writer = 2 };
		snprintf(e->text, sizeof(e->text), "from the child");
		off[i] = shmp_off(c, e);
	}
	CHILD_CHECK(write_all(a->to_parent[1], off, 10 * sizeof(off[0])) == 0);
	CHILD_CHECK(read_all(a->to_child[0], &go, 1) == 0); /* parent freed them */
	shmp_pool_close(p);
	shmp_disconnect(c);
	return 0;
}

static void test_share_offsets(void **state)
{
	struct cl_daemon *d = *state;
	struct share_arg a = { .d = d };
	shmp_client *c = cl_connect(d, "share-parent");
	struct shmp_pool_stats st;
	shmp_off_t off[50];
	shmp_pool *p;
	pid_t pid;

	assert_int_equal(pipe(a.to_child), 0);
	assert_int_equal(pipe(a.to_parent), 0);
	CL_OK(shmp_pool_create(c, "share.pool", sizeof(struct elem), 4, &p));
	for (unsigned i = 0; i < 50; i++) {
		struct elem *e = shmp_pool_alloc(p, 0);

		assert_non_null(e);
		*e = (struct elem){ .magic = MAGIC, .index = i, .writer = 1 };
		snprintf(e->text, sizeof(e->text), "from the parent");
		off[i] = shmp_off(c, e);
	}
	pid = cl_fork(share_child, &a);
	assert_int_equal(write_all(a.to_child[1], off, sizeof(off)), 0);
	assert_int_equal(read_all(a.to_parent[0], off, 10 * sizeof(off[0])), 0);
	CL_OK(shmp_pool_stats(p, &st));
	assert_int_equal(st.nr_out, 10); /* the parent's 50 came back, the child holds 10 */
	for (unsigned i = 0; i < 10; i++) {
		struct elem *e = shmp_ptr(c, off[i]);

		assert_non_null(e);
		assert_true(e->magic == MAGIC && e->index == i && e->writer == 2);
		assert_string_equal(e->text, "from the child");
		CL_OK(shmp_pool_free(p, e)); /* freed by another process than the allocator */
	}
	assert_int_equal(write_all(a.to_child[1], "g", 1), 0);
	assert_int_equal(tu_wait(pid), 0);
	CL_OK(shmp_pool_stats(p, &st));
	assert_int_equal(st.nr_out, 0);
	assert_int_equal(st.nr_alloc, 60);
	assert_int_equal(st.nr_free, 60);
	shmp_pool_close(p);
	CL_OK(shmp_pool_destroy(c, "share.pool"));
	cl_check(c);
	shmp_disconnect(c);
	close(a.to_child[0]), close(a.to_child[1]);
	close(a.to_parent[0]), close(a.to_parent[1]);
}

/* ---- reserve: sleep in one process, wake on a free in another --------------------- */

struct wait_arg {
	struct cl_daemon *d;
	int timeout_ms;		/* < 0: shmp_pool_alloc(p, 0) */
	int pipe[2];
};

static int wait_child(void *arg)
{
	struct wait_arg *a = arg;
	shmp_client *c;
	shmp_pool *p;
	shmp_off_t off;
	void *e;

	CHILD_CHECK(shmp_connect(a->d->sock, "waiter", &c) == 0);
	CHILD_CHECK(shmp_pool_open(c, "wait.pool", &p) == 0);
	e = a->timeout_ms < 0 ? shmp_pool_alloc(p, 0) : shmp_pool_alloc_timeout(p, a->timeout_ms);
	CHILD_CHECK(e);
	off = shmp_off(c, e);
	CHILD_CHECK(write_all(a->pipe[1], &off, sizeof(off)) == 0);
	CHILD_CHECK(shmp_pool_free(p, e) == 0);
	shmp_pool_close(p);
	shmp_disconnect(c);
	return 0;
}

static unsigned waiters(shmp_pool *p)
{
	struct shmp_pool_stats st;

	return shmp_pool_stats(p, &st) ? 0 : st.nr_waiters;
}

static void wait_wake(struct cl_daemon *d, int timeout_ms, unsigned nchildren)
{
	struct shmp_pool_opts capped = { .max_nr = 4 };
	struct wait_arg a = { .d = d, .timeout_ms = timeout_ms };
	shmp_client *c = cl_connect(d, "wait-parent");
	struct shmp_pool_stats st;
	shmp_off_t got[4];
	void *e[4];
	pid_t pid[4];
	shmp_pool *p;

	assert_int_equal(pipe(a.pipe), 0);
	CL_OK(shmp_pool_create_ex(c, "wait.pool", 32, 2, &capped, &p));
	for (unsigned i = 0; i < 4; i++)
		assert_non_null(e[i] = shmp_pool_alloc(p, SHMP_NOWAIT));
	CL_NULL(shmp_pool_alloc(p, SHMP_NOWAIT), ENOMEM); /* exhausted */

	for (unsigned i = 0; i < nchildren; i++)
		pid[i] = cl_fork(wait_child, &a);
	if (!CL_POLL(waiters(p) >= nchildren, 20000))
		CL_FAIL("%u children did not go to sleep in shmp_pool_alloc", nchildren);
	/* each free wakes one sleeper, which gets exactly the element freed */
	for (unsigned i = 0; i < nchildren; i++) {
		CL_OK(shmp_pool_free(p, e[i]));
		assert_int_equal(read_all(a.pipe[0], &got[i], sizeof(got[i])), 0);
	}
	for (unsigned i = 0; i < nchildren; i++)
		assert_int_equal(tu_wait(pid[i]), 0);
	for (unsigned i = 0; i < nchildren; i++) {
		bool found = false;

		for (unsigned j = 0; j < nchildren; j++)
			found |= got[i] == shmp_off(c, e[j]);
		assert_true(found);
	}
	CL_OK(shmp_pool_stats(p, &st));
	assert_true(st.nr_wait >= nchildren);
	assert_int_equal(st.nr_out, 4 - nchildren);
	CL_OK(shmp_pool_free_bulk(p, e + nchildren, 4 - nchildren));
	shmp_pool_close(p);
	CL_OK(shmp_pool_destroy(c, "wait.pool"));
	cl_check(c);
	shmp_disconnect(c);
	close(a.pipe[0]), close(a.pipe[1]);
}

static void test_wait_wake(void **state)
{
	wait_wake(*state, -1, 1);
}

static void test_wait_wake_timeout(void **state)
{
	wait_wake(*state, 60000, 1);
}

static void test_wait_wake_many(void **state)
{
	wait_wake(*state, -1, 3);
}

/* A sleeper is woken by a signal: NULL + EINTR, the pool stays consistent. */
static void on_usr1(int sig)
{
	(void)sig;
}

static int eintr_child(void *arg)
{
	struct wait_arg *a = arg;
	struct sigaction sa = { .sa_handler = on_usr1 };
	shmp_client *c;
	shmp_pool *p;
	char ok = 1;

	sigaction(SIGUSR1, &sa, NULL); /* no SA_RESTART */
	CHILD_CHECK(shmp_connect(a->d->sock, "eintr", &c) == 0);
	CHILD_CHECK(shmp_pool_open(c, "wait.pool", &p) == 0);
	errno = 0;
	CHILD_CHECK(shmp_pool_alloc(p, 0) == NULL && errno == EINTR);
	CHILD_CHECK(write_all(a->pipe[1], &ok, 1) == 0);
	shmp_pool_close(p);
	shmp_disconnect(c);
	return 0;
}

static void test_wait_interrupted(void **state)
{
	struct cl_daemon *d = *state;
	struct shmp_pool_opts capped = { .max_nr = 1 };
	struct wait_arg a = { .d = d };
	shmp_client *c = cl_connect(d, "eintr-parent");
	shmp_pool *p;
	void *e;
	pid_t pid;
	char ok;

	assert_int_equal(pipe(a.pipe), 0);
	CL_OK(shmp_pool_create_ex(c, "wait.pool", 32, 0, &capped, &p));
	assert_non_null(e = shmp_pool_alloc(p, 0));
	pid = cl_fork(eintr_child, &a);
	/*
	 * A signal that comes after the child registered as a waiter but
	 * before it entered futex() is handled and lost; so signal only once
	 * it sleeps in futex(), and again until it answers.
	 */
	for (int i = 0;; i++) {
		struct pollfd pfd = { .fd = a.pipe[0], .events = POLLIN };

		if (i == 2000)
			CL_FAIL("the child never returned from shmp_pool_alloc with EINTR");
		/* a child slower than the poll below to answer has stopped waiting */
		if (!CL_POLL(poll(&pfd, 1, 0) == 1 ||
				     (waiters(p) >= 1 && cl_blocked_syscall(pid) == SYS_futex),
			     20000))
			CL_FAIL("the child neither went to sleep nor answered");
		if (pfd.revents)
			break;
		kill(pid, SIGUSR1);
		if (poll(&pfd, 1, 10) == 1)
			break;
	}
	assert_int_equal(read_all(a.pipe[0], &ok, 1), 0);
	assert_int_equal(tu_wait(pid), 0);
	CL_OK(shmp_pool_free(p, e));
	shmp_pool_close(p);
	CL_OK(shmp_pool_destroy(c, "wait.pool"));
	cl_check(c);
	shmp_disconnect(c);
	close(a.pipe[0]), close(a.pipe[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_share_offsets, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_wait_wake, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_wait_wake_timeout, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_wait_wake_many, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_wait_interrupted, cl_setup, cl_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
