/* SPDX-License-Identifier: MIT */
/*
 * test-daemon-restart.c - the daemon dies or stops, and comes back on the
 * same segment: pools and the elements live clients hold are intact, the
 * clients resume their slots (same process, right token), clients that
 * died meanwhile are reaped, --reset wipes, and an invalid segment is
 * refused with a hint to use --reset.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon-util.h"

static bool can_connect(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/* Resume @c's slot on a new connection to the restarted daemon. */
static void resume(struct td_client *c, const struct td_daemon *d)
{
	Shmpool__Response *r;
	int segfd;

	close(c->fd);
	c->fd = td_connect(d->sock);
	r = td_hello_resume(c->fd, c->slot, c->token, &segfd);
	TD_EXPECT(r, 0);
	assert_true(r->hello->resumed);
	assert_int_equal(r->hello->client_slot, c->slot);
	assert_int_equal(r->hello->session_token, c->token);
	assert_true(segfd >= 0);
	close(segfd); /* the mapping we have is still good */
	td_free(r);
}

/* The start time of @slot once the daemon recorded it (bounded wait), or 0. */
static uint64_t recorded_start(struct sp_seg *s, uint32_t slot)
{
	uint64_t t = 0;

	for (int i = 0; i < 20000 && !(t = __atomic_load_n(&sp_clients(s)[slot].start_time,
							      __ATOMIC_ACQUIRE)); i++)
		td_nap();
	return t;
}

/*
 * The daemon answers Hello before it reads the client's start time from
 * /proc, then records it.  Killed in between, it leaves an ALIVE slot
 * with no start time: the next daemon takes it from the live process (the
 * client then resumes), or marks the slot dead when the pid is gone.
 */
static void start_time_recorded_after_hello(void **state)
{
	struct td_daemon d;
	struct td_client a;
	uint32_t ghost;
	pid_t pid;
	int st;

	(void)state;
	td_init(&d);
	td_start(&d, NULL);
	td_client_open(&a, &d, "late-start");
	assert_int_equal(recorded_start(a.seg, a.slot), sp_proc_start_time(getpid()));

	/* a daemon killed between its reply and the record */
	td_kill9(&d);
	assert_true(td_closed_by_peer(a.fd));
	sp_clients(a.seg)[a.slot].start_time = 0;
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(sp_client_register_ex(a.seg, "ghost", pid, getuid(), getgid(), 0,
					       &ghost), 0);

	td_start(&d, NULL);
	/* reaped, and freed at once: it held nothing */
	assert_int_equal(sp_clients(a.seg)[ghost].state, SP_CLIENT_FREE);
	assert_int_equal(sp_clients(a.seg)[a.slot].state, SP_CLIENT_ALIVE);
	assert_int_equal(sp_clients(a.seg)[a.slot].start_time, sp_proc_start_time(getpid()));
	resume(&a, &d);
	td_check_clean(a.fd);
	td_client_close(&a, true);
	td_cleanup(&d);
}

static void kill9_restart_resume(void **state)
{
	struct td_daemon d;
	struct td_client a;
	Shmpool__Response *r;
	Shmpool__ClientInfo *ci;
	struct sp_pool *p;
	struct sp_cache *k;
	sp_off_t el[15], obj[2];

	(void)state;
	td_init(&d);
	td_start(&d, NULL);
	td_client_open(&a, &d, "survivor");
	TD_EXPECT_FREE(td_pool_create(a.fd, "persist", 256, 8, 0), 0);
	r = td_cache_create(a.fd, "persist.cache", 32, NULL, 0);
	TD_EXPECT(r, 0);
	k = sp_cache_get(a.seg, r->cache->id);
	td_free(r);
	p = td_client_pool(&a, "persist");
	for (int i = 0; i < 12; i++) {
		assert_int_equal(sp_pool_alloc(a.seg, p, SP_ALLOC_NOWAIT, 0, &el[i]), 0);
		memset(sp_ptr(a.seg, el[i]), i + 1, 256);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(sp_cache_alloc(a.seg, k, a.seg->owner, &obj[i]), 0);

	td_kill9(&d);
	assert_true(td_closed_by_peer(a.fd));
	/* the data path needs no daemon */
	for (int i = 12; i < 15; i++) {
		assert_int_equal(sp_pool_alloc(a.seg, p, SP_ALLOC_NOWAIT, 0, &el[i]), 0);
		memset(sp_ptr(a.seg, el[i]), i + 1, 256);
	}
	assert_false(can_connect(d.sock)); /* a stale socket file is left */

	td_start(&d, NULL);
	assert_true(td_log_contains(&d, "removed stale socket"));
	assert_true(td_log_contains(&d, "re-attached segment"));
	assert_true(td_log_contains(&d, "1 pools (15 elements out)"));
	assert_true(td_log_contains(&d, "is alive: it may resume"));
	resume(&a, &d);

	r = td_simple(a.fd, SHMPOOL__REQUEST__OP_STATS);
	TD_EXPECT(r, 0);
	assert_int_equal(td_stats_pool(r, "persist")->nr_out, 15);
	ci = td_stats_client(r, a.slot);
	assert_non_null(ci);
	assert_string_equal(ci->state, "alive");
	assert_true(ci->connected);
	assert_int_equal(ci->pool_elems, 15);
	assert_int_equal(ci->objects, 17);
	td_free(r);
	td_check_clean(a.fd);

	/* another process cannot take the slot over, even with its token */
	{
		pid_t pid;

		fflush(NULL);
		pid = fork();
		if (pid == 0) {
			int fd = td_connect(d.sock);
			Shmpool__Response *x = td_hello_resume(fd, a.slot, a.token, NULL);

			TD_CHECK(x->status == -EPERM);
			TD_CHECK(strstr(x->message, "belongs to pid") != NULL);
			td_free(x);
			_exit(0);
		}
		assert_int_equal(td_waitpid(pid, 20000), 0);
	}

	for (int i = 0; i < 15; i++) {
		for (int b = 0; b < 256; b++)
			assert_int_equal(((uint8_t *)sp_ptr(a.seg, el[i]))[b], i + 1);
		assert_int_equal(sp_pool_free(a.seg, p, el[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(sp_cache_free(a.seg, k, obj[i]), 0);
	TD_EXPECT_FREE(td_name_op(a.fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, "persist"), 0);
	TD_EXPECT_FREE(td_name_op(a.fd, SHMPOOL__REQUEST__OP_CACHE_DESTROY, "persist.cache"), 0);
	td_check_clean(a.fd);
	td_client_close(&a, true);
	assert_int_equal(td_stop(&d), 0);
	td_cleanup(&d);
}

/* A forked client that allocates 5 + 5 elements and waits to be killed. */
static pid_t spawn_holder(const struct td_daemon *d, uint32_t *slot)
{
	int p[2];
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		struct td_client c;
		const char *names[] = { "plain", "recl" };
		sp_off_t off;

		close(p[0]);
		td_client_open(&c, d, "holder");
		for (int k = 0; k < 2; k++) {
			struct sp_pool *pool = td_client_pool(&c, names[k]);

			for (int i = 0; i < 5; i++)
				TD_CHECK(sp_pool_alloc(c.seg, pool, SP_ALLOC_NOWAIT, 0, &off) == 0);
		}
		TD_CHECK(write(p[1], &c.slot, sizeof(c.slot)) == sizeof(c.slot));
		for (;;)
			pause();
	}
	close(p[1]);
	assert_int_equal(read(p[0], slot, sizeof(*slot)), sizeof(*slot));
	close(p[0]);
	return pid;
}

static Shmpool__ClientInfo *poll_state(int fd, uint32_t slot, const char *state,
				       Shmpool__Response **out)
{
	for (int i = 0; i < 4000; i++) {
		Shmpool__Response *r = td_simple(fd, SHMPOOL__REQUEST__OP_STATS);
		Shmpool__ClientInfo *ci;

		TD_EXPECT(r, 0);
		ci = td_stats_client(r, slot);
		if (ci && strcmp(ci->state, state) == 0) {
			*out = r;
			return ci;
		}
		td_free(r);
		td_nap();
	}
	fail_msg("slot %u never became %s", slot, state);
	return NULL;
}

static void clients_dying_around_a_restart(void **state)
{
	struct td_daemon d;
	struct td_client k;
	Shmpool__Response *r;
	Shmpool__ClientInfo *ci;
	uint32_t slot1, slot2;
	pid_t c1, c2;

	(void)state;
	td_init(&d);
	td_start(&d, NULL);
	td_client_open(&k, &d, "keeper");
	TD_EXPECT_FREE(td_pool_create(k.fd, "plain", 64, 2, 0), 0);
	TD_EXPECT_FREE(td_pool_create(k.fd, "recl", 64, 2, SP_POOL_RECLAIM_ON_EXIT), 0);
	c1 = spawn_holder(&d, &slot1);
	c2 = spawn_holder(&d, &slot2);

	td_kill9(&d);
	kill(c1, SIGKILL); /* dies while the daemon is down */
	assert_int_equal(td_waitpid(c1, 20000), 128 + SIGKILL);
	td_start(&d, NULL);
	assert_true(td_log_contains(&d, "exited while the daemon was down"));
	resume(&k, &d);

	ci = poll_state(k.fd, slot1, "dead", &r);
	assert_int_equal(ci->pool_elems, 5); /* "recl" got its 5 back */
	ci = td_stats_client(r, slot2);
	assert_non_null(ci);
	assert_string_equal(ci->state, "alive"); /* may still resume */
	assert_false(ci->connected);
	td_free(r);

	kill(c2, SIGKILL); /* dies while not connected: the reaper finds it */
	assert_int_equal(td_waitpid(c2, 20000), 128 + SIGKILL);
	ci = poll_state(k.fd, slot2, "dead", &r);
	assert_int_equal(ci->pool_elems, 5);
	assert_int_equal(td_stats_pool(r, "recl")->nr_out, 0);
	assert_int_equal(td_stats_pool(r, "plain")->nr_out, 10);
	td_free(r);
	assert_true(td_log_contains(&d, "exited while not connected"));
	td_check_clean(k.fd);

	TD_EXPECT_FREE(td_reclaim(k.fd, slot1), 0);
	TD_EXPECT_FREE(td_reclaim(k.fd, slot2), 0);
	td_check_clean(k.fd);
	td_client_close(&k, true);
	assert_int_equal(td_stop(&d), 0);
	td_cleanup(&d);
}

static void sigterm_keeps_segment_and_slots(void **state)
{
	struct td_daemon d;
	struct td_client a;
	struct sp_pool *p;
	sp_off_t el;
	int fd;

	(void)state;
	td_init(&d);
	td_start(&d, NULL);
	td_client_open(&a, &d, "stayer");
	TD_EXPECT_FREE(td_pool_create(a.fd, "kept", 64, 1, 0), 0);
	p = td_client_pool(&a, "kept");
	assert_int_equal(sp_pool_alloc(a.seg, p, SP_ALLOC_NOWAIT, 0, &el), 0);

	assert_int_equal(td_stop(&d), 0);
	assert_true(td_closed_by_peer(a.fd));
	assert_int_equal(access(d.sock, F_OK), -1); /* the socket is unlinked */
	fd = shm_open(d.shm, O_RDONLY, 0);	  /* the segment is not */
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(sp_clients(a.seg)[a.slot].state, SP_CLIENT_ALIVE);

	td_start(&d, NULL);
	assert_false(td_log_contains(&d, "removed stale socket"));
	resume(&a, &d);
	td_check_clean(a.fd);
	assert_int_equal(sp_pool_free(a.seg, p, el), 0);
	TD_EXPECT_FREE(td_name_op(a.fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, "kept"), 0);
	td_client_close(&a, true);
	assert_int_equal(td_stop(&d), 0);
	td_cleanup(&d);
}

static size_t nr_pools(const struct td_daemon *d)
{
	struct td_client c;
	Shmpool__Response *r;
	size_t n;

	td_client_open(&c, d, "counter");
	r = td_simple(c.fd, SHMPOOL__REQUEST__OP_LIST);
	TD_EXPECT(r, 0);
	n = r->list->n_pools;
	td_free(r);
	td_client_close(&c, true);
	return n;
}

static void reset_wipes(void **state)
{
	static const char *const reset[] = { "--reset", NULL };
	struct td_daemon d;
	struct td_client a;

	(void)state;
	td_init(&d);
	td_start(&d, NULL);
	td_client_open(&a, &d, "creator");
	TD_EXPECT_FREE(td_pool_create(a.fd, "old", 64, 1, 0), 0);
	td_client_close(&a, true);
	assert_int_equal(td_stop(&d), 0);

	td_start(&d, NULL);
	assert_int_equal(nr_pools(&d), 1);
	assert_int_equal(td_stop(&d), 0);

	td_start(&d, reset);
	assert_true(td_log_contains(&d, "--reset: discarding segment"));
	assert_int_equal(nr_pools(&d), 0);
	assert_int_equal(td_stop(&d), 0);
	td_cleanup(&d);
}

static void expect_refused(struct td_daemon *d, const char *why)
{
	td_spawn(d, NULL);
	assert_int_equal(td_wait_ready(d), -1);
	assert_int_equal(d->status, 1);
	assert_true(td_log_contains(d, why));
	assert_true(td_log_contains(d, "start with --reset"));
}

static void invalid_segment_refused(void **state)
{
	static const char *const reset[] = { "--reset", NULL };
	struct td_daemon d;
	struct sp_seg *s;
	int fd;

	(void)state;
	td_init(&d);
	/* not a shmpool segment at all */
	fd = shm_open(d.shm, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 2 << 20), 0);
	assert_int_equal(pwrite(fd, "garbage!", 8, 0), 8);
	close(fd);
	expect_refused(&d, "not a shmpool segment");
	fd = shm_open(d.shm, O_RDWR, 0);
	assert_int_equal(ftruncate(fd, 100), 0); /* far too small */
	close(fd);
	expect_refused(&d, "100 bytes");

	/* a real segment whose header was scribbled on */
	td_start(&d, reset);
	assert_int_equal(td_stop(&d), 0);
	assert_int_equal(sp_seg_attach(d.shm, -1, 0, &s), 0);
	s->hdr->max_pools ^= 1;
	sp_seg_detach(s);
	expect_refused(&d, "checksum");
	/* nothing was re-initialised: --reset is the only way */
	assert_int_equal(sp_seg_attach(d.shm, -1, 0, &s), -EBADMSG);
	td_start(&d, reset);
	assert_int_equal(nr_pools(&d), 0);
	assert_int_equal(td_stop(&d), 0);
	td_cleanup(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(kill9_restart_resume),
		cmocka_unit_test(start_time_recorded_after_hello),
		cmocka_unit_test(clients_dying_around_a_restart),
		cmocka_unit_test(sigterm_keeps_segment_and_slots),
		cmocka_unit_test(reset_wipes),
		cmocka_unit_test(invalid_segment_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
