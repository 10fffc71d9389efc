/* SPDX-License-Identifier: MIT */
/*
 * test-client-fork.c - handles inherited across fork().
 *
 * A child must never allocate with its parent's slot: every call on an
 * inherited handle fails with ECHILD and says what to do; shmp_disconnect
 * on it releases only the child's memory (no Goodbye for the parent); a
 * fresh shmp_connect in the child works and gets a slot of its own; and
 * the parent's session is untouched by all of it.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "client-util.h"

struct fork_arg {
	struct cl_daemon *d;
	shmp_client *c;
	shmp_pool *p;
	shmp_cache *k;
	void *elem;		/* allocated by the parent */
	void *mem;		/* shmp_malloc'd by the parent */
	uint32_t parent_slot;
	pid_t owner;		/* the process that connected c */
};

/* Does the last error say that the handle was connected in pid @pid? */
static bool connected_in(pid_t pid)
{
	char want[64];

	snprintf(want, sizeof(want), "connected in pid %d, this is pid %d", (int)pid,
		 (int)getpid());
	return strstr(shmp_errmsg(), want) != NULL;
}

static int child(void *arg)
{
	struct fork_arg *a = arg;
	struct shmp_segment_stats st;
	struct shmp_pool_stats ps;
	shmp_client *c2;
	shmp_pool *p2, *x = NULL;
	void *e;

	/* every kind of call on inherited handles: ECHILD */
	errno = 0;
	CHILD_CHECK(shmp_pool_alloc(a->p, 0) == NULL && errno == ECHILD);
	CHILD_CHECK(strstr(shmp_errmsg(), "inherited across fork"));
	CHILD_CHECK(connected_in(a->owner));
	CHILD_CHECK(strstr(shmp_errmsg(), "shmp_connect in the child"));
	errno = 0;
	CHILD_CHECK(shmp_pool_alloc_timeout(a->p, 10) == NULL && errno == ECHILD);
	CHILD_CHECK(shmp_pool_free(a->p, a->elem) == -ECHILD);
	CHILD_CHECK(shmp_pool_stats(a->p, &ps) == -ECHILD);
	CHILD_CHECK(shmp_pool_resize(a->p, 3) == -ECHILD);
	errno = 0;
	CHILD_CHECK(shmp_cache_alloc(a->k, 0) == NULL && errno == ECHILD);
	errno = 0;
	CHILD_CHECK(shmp_malloc(a->c, 10) == NULL && errno == ECHILD);
	errno = 0;
	CHILD_CHECK(shmp_calloc(a->c, 1, 10) == NULL && errno == ECHILD);
	CHILD_CHECK(shmp_free_checked(a->c, a->mem) == -ECHILD);
	errno = 0;
	shmp_free(a->c, a->mem);
	CHILD_CHECK(errno == ECHILD);
	CHILD_CHECK(shmp_off(a->c, a->mem) == 0 && errno == ECHILD);
	CHILD_CHECK(shmp_ptr(a->c, 4096) == NULL && errno == ECHILD);
	CHILD_CHECK(shmp_segment_stats(a->c, &st) == -ECHILD);
	CHILD_CHECK(shmp_pool_create(a->c, "fork.child", 8, 1, &x) == -ECHILD && !x);
	CHILD_CHECK(shmp_pool_open(a->c, "fork.pool", &x) == -ECHILD && !x);
	CHILD_CHECK(shmp_pool_destroy(a->c, "fork.pool") == -ECHILD);
	CHILD_CHECK(shmp_check(a->c, NULL) == -ECHILD);

	/* the child's own session works, with a slot of its own */
	CHILD_CHECK(shmp_connect(a->d->sock, "fork-child", &c2) == 0);
	CHILD_CHECK(shmp_segment_stats(c2, &st) == 0 && st.slot != a->parent_slot);
	CHILD_CHECK(shmp_pool_open(c2, "fork.pool", &p2) == 0);
	CHILD_CHECK((e = shmp_pool_alloc(p2, 0)) != NULL);
	CHILD_CHECK(shmp_pool_free(p2, e) == 0);
	/* the parent's pointer lies in the inherited mapping, not in c2's */
	CHILD_CHECK(shmp_pool_free(p2, a->elem) == -EINVAL);

	/* releasing inherited handles: local memory only, no Goodbye */
	shmp_pool_close(a->p);
	shmp_cache_close(a->k);
	shmp_disconnect(a->c);
	shmp_pool_close(p2);
	shmp_disconnect(c2);
	return 0;
}

static int grandchild_main(void *arg)
{
	struct fork_arg *a = arg;
	shmp_client *c;
	shmp_pool *p;
	void *e;

	errno = 0;
	CHILD_CHECK(shmp_pool_alloc(a->p, 0) == NULL && errno == ECHILD);
	/* the session knew its process: the middle one, not the first parent */
	CHILD_CHECK(connected_in(a->owner));
	CHILD_CHECK(shmp_connect(a->d->sock, "grandchild", &c) == 0);
	CHILD_CHECK(shmp_pool_open(c, "fork.pool", &p) == 0);
	CHILD_CHECK((e = shmp_pool_alloc(p, 0)) != NULL);
	CHILD_CHECK(shmp_pool_free(p, e) == 0);
	shmp_pool_close(p);
	shmp_disconnect(c);
	return 0;
}

/* A child with its own session forks again: the grandchild sees ECHILD on
 * the child's handles too. */
static int child_forks(void *arg)
{
	struct fork_arg *a = arg, b = *a;
	pid_t pid;

	CHILD_CHECK(shmp_connect(a->d->sock, "middle", &b.c) == 0);
	b.owner = getpid();
	CHILD_CHECK(shmp_pool_open(b.c, "fork.pool", &b.p) == 0);
	pid = cl_fork(grandchild_main, &b);
	CHILD_CHECK(tu_wait(pid) == 0);
	/* and the middle process' session still works */
	CHILD_CHECK(shmp_pool_resize(b.p, 3) == 0);
	shmp_pool_close(b.p);
	shmp_disconnect(b.c);
	return 0;
}

static void test_fork(void **state)
{
	struct cl_daemon *d = *state;
	struct fork_arg a = { .d = d };
	struct shmp_segment_stats st;
	struct shmp_pool_stats ps;
	pid_t pid;

	a.c = cl_connect(d, "fork-parent");
	a.owner = getpid();
	CL_OK(shmp_segment_stats(a.c, &st));
	a.parent_slot = st.slot;
	CL_OK(shmp_pool_create(a.c, "fork.pool", 32, 2, &a.p));
	CL_OK(shmp_cache_create(a.c, "fork.cache", 32, 0, NULL, &a.k));
	assert_non_null(a.elem = shmp_pool_alloc(a.p, 0));
	assert_non_null(a.mem = shmp_malloc(a.c, 64));

	pid = cl_fork(child, &a);
	assert_int_equal(tu_wait(pid), 0);
	pid = cl_fork(child_forks, &a);
	assert_int_equal(tu_wait(pid), 0);

	/* the parent's session survived: same slot, still connected, all works */
	CL_OK(shmp_segment_stats(a.c, &st));
	assert_int_equal(st.slot, a.parent_slot);
	assert_true(st.connected);
	CL_OK(shmp_pool_stats(a.p, &ps));
	assert_int_equal(ps.nr_out, 1);
	assert_int_equal(ps.min_nr, 3); /* the middle process resized it */
	CL_OK(shmp_pool_free(a.p, a.elem));
	CL_OK(shmp_free_checked(a.c, a.mem));
	CL_OK(shmp_pool_resize(a.p, 1));
	shmp_pool_close(a.p);
	shmp_cache_close(a.k);
	CL_OK(shmp_pool_destroy(a.c, "fork.pool"));
	CL_OK(shmp_cache_destroy(a.c, "fork.cache"));
	cl_check(a.c);
	shmp_disconnect(a.c);
}

/* fork() while another thread is inside a control call (the session lock
 * held): the child's disconnect must not touch that lock. */
struct busy {
	shmp_client *c;
	volatile int stop;
};

static void *busy_main(void *arg)
{
	struct busy *b = arg;
	unsigned n;

	while (!b->stop)
		shmp_check(b->c, &n);
	return NULL;
}

static int lock_child(void *arg)
{
	struct fork_arg *a = arg;
	shmp_client *c;

	CHILD_CHECK(shmp_check(a->c, NULL) == -ECHILD);
	shmp_disconnect(a->c);
	CHILD_CHECK(shmp_connect(a->d->sock, "lock-child", &c) == 0);
	CHILD_CHECK(shmp_check(c, NULL) == 0);
	shmp_disconnect(c);
	return 0;
}

static void test_fork_while_busy(void **state)
{
	struct cl_daemon *d = *state;
	struct fork_arg a = { .d = d };
	struct busy b;
	pthread_t th;

	a.c = cl_connect(d, "busy-parent");
	b = (struct busy){ .c = a.c };
	assert_int_equal(pthread_create(&th, NULL, busy_main, &b), 0);
	for (int i = 0; i < 20; i++)
		assert_int_equal(tu_wait(cl_fork(lock_child, &a)), 0);
	b.stop = 1;
	pthread_join(th, NULL);
	cl_check(a.c);
	shmp_disconnect(a.c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fork, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_fork_while_busy, cl_setup, cl_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
