/* SPDX-License-Identifier: MIT */
/*
 * test-rel-exhaustion.c - the daemon's own limits reached: clean errors,
 * and the daemon keeps serving.  (tests/test-exhaustion.c covers a full
 * /dev/shm in the core; test-daemon-badinput.c covers --max-connections.)
 *
 * The client table full: a segment made with --max-clients 6 takes six
 * sessions; the seventh shmp_connect() fails with -ENFILE and a message
 * that says so, while the six keep allocating and the daemon keeps
 * answering.  A client killed holding memory keeps its slot (DEAD, its
 * holdings attributed to it), so the table stays full until a Reclaim of
 * that slot frees it; then a new client gets in.
 *
 * The daemon's file descriptor limit: RLIMIT_NOFILE of the running daemon
 * is lowered (prlimit) to a few fds above what it uses.  New connections
 * then fail at once with a clean error: a connection closed at once when
 * the daemon cannot accept it (libuv accepts and closes it on a reserve
 * fd, without telling the daemon) - never a hang, never a misleading
 * "process does not exist".  (One it accepts gets its Hello answered even
 * if /proc cannot be read then: the start time is recorded later, and the
 * daemon logs why.)  The sessions already open keep
 * working; once some of them close, new ones connect again.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-util.h"
#include "rel-util.h"

#define POLL_MS 20000

/* A client that allocates, reports its slot, and dies with SIGKILL. */
static int doomed(void *arg)
{
	struct td_daemon *d = arg;
	struct shmp_segment_stats st;
	shmp_client *c;
	shmp_pool *p;
	int fd = 3; /* the pipe's write end, dup2()ed by the parent's fork */

	(void)fd;
	CHILD_CHECK(shmp_connect(d->sock, "doomed", &c) == 0);
	CHILD_CHECK(shmp_pool_open(c, "ex.pool", &p) == 0);
	CHILD_CHECK(shmp_pool_alloc(p, 0) != NULL);
	CHILD_CHECK(shmp_pool_alloc(p, 0) != NULL);
	for (int i = 0; i < 3; i++)
		CHILD_CHECK(shmp_malloc(c, 100) != NULL);
	CHILD_CHECK(shmp_segment_stats(c, &st) == 0);
	printf("doomed client: slot %u\n", st.slot);
	fflush(stdout);
	raise(SIGKILL);
	return 1;
}

static Shmpool__ClientInfo *find_client(Shmpool__Response *r, const char *name)
{
	for (size_t i = 0; i < r->stats->n_clients; i++)
		if (strcmp(r->stats->clients[i]->name, name) == 0)
			return r->stats->clients[i];
	return NULL;
}

static void test_slot_table_full(void **state)
{
	static const char *const args[] = { "--max-clients", "6", "--log-level", "info", NULL };
	shmp_client *c[6], *x = NULL;
	Shmpool__ClientInfo *ci;
	Shmpool__Response *r;
	struct td_daemon d;
	shmp_pool *p;
	uint32_t dead;
	int admin;
	pid_t pid;

	(void)state;
	td_init(&d);
	td_start(&d, args);
	for (int i = 0; i < 6; i++)
		CL_OK(shmp_connect(d.sock, "ex-client", &c[i]));
	CL_OK(shmp_pool_create(c[0], "ex.pool", 64, 2, &p));
	CL_ERR(shmp_connect(d.sock, "ex-seventh", &x), -ENFILE);
	printf("seventh client: %s: %s\n", shmp_err_name(-ENFILE), shmp_errmsg());
	assert_non_null(strstr(shmp_errmsg(), "client table full"));
	/* the six go on: data path and control calls */
	for (int i = 0; i < 6; i++) {
		void *m = shmp_malloc(c[i], 200);

		assert_non_null(m);
		CL_OK(shmp_free_checked(c[i], m));
	}
	cl_check(c[1]);

	/* a client dies holding memory: its slot stays taken */
	shmp_disconnect(c[5]);
	pid = cl_fork(doomed, &d);
	assert_int_equal(tu_wait(pid), 128 + SIGKILL);
	CL_ERR(shmp_connect(d.sock, "ex-seventh", &x), -ENFILE);
	shmp_disconnect(c[4]);
	admin = rel_admin(&d);
	ci = NULL;
	for (int i = 0; i < POLL_MS / 5; i++) {
		r = rel_stats(admin);
		ci = find_client(r, "doomed");
		if (ci && strcmp(ci->state, "dead") == 0)
			break;
		td_free(r);
		r = NULL;
		cl_msleep(5);
	}
	if (!r)
		fail_msg("the daemon did not mark the killed client dead");
	dead = ci->slot;
	printf("dead slot %u holds %llu objects (%llu pool elements)\n", dead,
	       (unsigned long long)ci->objects, (unsigned long long)ci->pool_elems);
	assert_int_equal(ci->objects, 5);
	assert_int_equal(ci->pool_elems, 2);
	td_free(r);
	CL_ERR(shmp_connect(d.sock, "ex-seventh", &x), -ENFILE); /* admin took c[4]'s */

	/* Reclaim frees the dead slot: the next client gets in */
	r = td_reclaim(admin, dead);
	TD_EXPECT(r, 0);
	assert_int_equal(r->reclaim->objects, 5);
	td_free(r);
	CL_OK(shmp_connect(d.sock, "ex-seventh", &x));
	r = rel_stats(admin);
	assert_int_equal(td_stats_pool(r, "ex.pool")->nr_out, 0);
	td_free(r);
	td_check_clean(admin);
	close(admin);
	shmp_disconnect(x);
	shmp_pool_close(p);
	for (int i = 0; i < 4; i++)
		shmp_disconnect(c[i]);
	td_cleanup(&d);
}

static int set_nofile(pid_t pid, rlim_t n)
{
	struct rlimit rl = { n, n };

	return prlimit(pid, RLIMIT_NOFILE, &rl, NULL);
}

static void test_fd_limit(void **state)
{
	static const char *const args[] = { "--log-level", "info", NULL };
	struct shmp_connect_opts opts = { .timeout_ms = 5000 };
	enum { MAX_TRIES = 32 };
	shmp_client *c[MAX_TRIES] = { 0 }, *c0, *x = NULL;
	struct rel_sample base, now;
	struct td_daemon d;
	unsigned ok = 0;
	int rc = 0, raw[4];

	(void)state;
	td_init(&d);
	td_start(&d, args);
	CL_OK(shmp_connect(d.sock, "ex-first", &c0));
	assert_true(rel_sample(d.pid, &base));
	/* room for three more connections */
	if (set_nofile(d.pid, base.fds + 3) < 0)
		fail_msg("prlimit: %s", strerror(errno));
	while (ok < MAX_TRIES) {
		rc = shmp_connect_ex(d.sock, "ex-more", &opts, &c[ok]);
		if (rc)
			break;
		ok++;
	}
	printf("daemon fd limit %u: %u more sessions connected, then: %s (%d): %s\n",
	       base.fds + 3, ok, shmp_err_name(rc), rc, shmp_errmsg());
	assert_true(ok >= 1);
	assert_true(rc != 0);
	assert_true(rc != -ETIMEDOUT); /* an answer, not silence */
	/* more attempts: each fails at once, whether accept() or Hello fails */
	for (int i = 0; i < 3; i++) {
		rc = shmp_connect_ex(d.sock, "ex-more", &opts, &x);
		printf("  attempt %d: %s (%d): %s\n", i + 2, shmp_err_name(rc), rc, shmp_errmsg());
		assert_true(rc != 0 && rc != -ETIMEDOUT);
	}
	/* connections that never say Hello take the last fds: the daemon cannot
	 * accept the ones after them, and libuv closes those at once (on its
	 * reserve fd, silently: this case leaves no line in the log) */
	for (int i = 0; i < 4; i++)
		raw[i] = td_connect(d.sock);
	assert_true(td_closed_by_peer(raw[3]));
	for (int i = 0; i < 4; i++)
		close(raw[i]);
	/* the daemon goes on serving the sessions it has */
	assert_int_equal(kill(d.pid, 0), 0);
	cl_check(c0);
	for (unsigned i = 0; i < ok; i++) {
		void *m = shmp_malloc(c[i], 64);

		assert_non_null(m);
		shmp_free(c[i], m);
	}
	/* and takes new ones again once fds are free */
	shmp_disconnect(c[--ok]);
	shmp_disconnect(c[--ok]);
	if (!CL_POLL(rel_sample(d.pid, &now) && now.fds <= base.fds + 1, POLL_MS))
		fail_msg("the daemon still holds %u fds", now.fds);
	CL_OK(shmp_connect_ex(d.sock, "ex-again", &opts, &x));
	cl_check(x);
	shmp_disconnect(x);
	assert_true(td_log_contains(&d, "Too many open files") ||
		    td_log_contains(&d, "too many open files"));
	set_nofile(d.pid, 1024);
	while (ok)
		shmp_disconnect(c[--ok]);
	shmp_disconnect(c0);
	td_cleanup(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slot_table_full),
		cmocka_unit_test(test_fd_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
