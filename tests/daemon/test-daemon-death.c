/* SPDX-License-Identifier: MIT */
/*
 * test-daemon-death.c - a client killed with SIGKILL while holding
 * elements: the daemon sees its connection close without Goodbye, marks
 * its slot dead, gives the elements of reclaim-on-exit pools back, and
 * keeps the rest orphaned and attributed to the slot (Stats); the locks it
 * held are recovered; Check is clean; other clients are unaffected.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon-util.h"

struct ctx {
	struct td_daemon d;
	struct td_client keeper;
};

static void alloc_n(struct td_client *c, const char *pool, int n)
{
	struct sp_pool *p = td_client_pool(c, pool);
	sp_off_t off;

	for (int i = 0; i < n; i++) {
		TD_CHECK(sp_pool_alloc(c->seg, p, SP_ALLOC_NOWAIT, 0, &off) == 0);
		memset(sp_ptr(c->seg, off), 0x5a, p->elem_size < 64 ? p->elem_size : 64);
	}
}

/* The forked victim: allocate, report its slot, wait to be killed. */
static void victim(const struct td_daemon *d, int pipe_w, bool hold_locks)
{
	struct td_client c;
	struct sp_pool *recl;
	sp_off_t off;

	td_client_open(&c, d, "victim");
	alloc_n(&c, "plain", 10);
	alloc_n(&c, "recl", 7);
	alloc_n(&c, "recl.pages", 2);
	alloc_n(&c, "plain.pages", 1);
	for (int i = 0; i < 3; i++)
		TD_CHECK(sp_kmalloc(c.seg, 100, &off) == 0);
	TD_CHECK(sp_kmalloc(c.seg, 20000, &off) == 0); /* a large block */
	recl = td_client_pool(&c, "recl");
	if (hold_locks) { /* die inside critical sections, in lock order */
		TD_CHECK(sp_registry_lock(c.seg) == 0);
		TD_CHECK(sp_pool_lock(c.seg, recl) == 0);
	}
	TD_CHECK(write(pipe_w, &c.slot, sizeof(c.slot)) == sizeof(c.slot));
	for (;;)
		pause();
}

static int setup(void **state)
{
	static struct ctx x;
	Shmpool__PoolCreate pc = SHMPOOL__POOL_CREATE__INIT;

	td_init(&x.d);
	td_start(&x.d, NULL);
	td_client_open(&x.keeper, &x.d, "keeper");
	TD_EXPECT_FREE(td_pool_create(x.keeper.fd, "plain", 64, 4, 0), 0);
	TD_EXPECT_FREE(td_pool_create(x.keeper.fd, "recl", 64, 4, SP_POOL_RECLAIM_ON_EXIT), 0);
	pc.name = "recl.pages";
	pc.elem_size = 4096;
	pc.min_nr = 1;
	pc.backing = 1;
	pc.flags = SP_POOL_RECLAIM_ON_EXIT;
	TD_EXPECT_FREE(td_pool_create_ex(x.keeper.fd, &pc), 0);
	pc.name = "plain.pages";
	pc.flags = 0;
	TD_EXPECT_FREE(td_pool_create_ex(x.keeper.fd, &pc), 0);
	*state = &x;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *x = *state;

	td_check_clean(x->keeper.fd);
	td_client_close(&x->keeper, true);
	assert_int_equal(td_stop(&x->d), 0);
	td_cleanup(&x->d);
	return 0;
}

/* Fork a victim, wait for its report, kill it; return its slot. */
static uint32_t kill_a_victim(struct ctx *x, bool hold_locks, pid_t *victim_pid)
{
	int p[2];
	uint32_t slot = UINT32_MAX;
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		victim(&x->d, p[1], hold_locks);
	}
	close(p[1]);
	if (read(p[0], &slot, sizeof(slot)) != sizeof(slot)) {
		td_waitpid(pid, 20000);
		fail_msg("the victim died before reporting its slot");
	}
	close(p[0]);
	/* while alive, Stats attributes everything to it */
	{
		Shmpool__Response *r = td_simple(x->keeper.fd, SHMPOOL__REQUEST__OP_STATS);
		Shmpool__ClientInfo *ci;

		TD_EXPECT(r, 0);
		ci = td_stats_client(r, slot);
		assert_non_null(ci);
		assert_string_equal(ci->state, "alive");
		assert_string_equal(ci->name, "victim");
		assert_true(ci->connected);
		assert_int_equal(ci->pool_elems, 10 + 7 + 2 + 1);
		assert_int_equal(ci->objects, 10 + 7 + 3);
		assert_int_equal(ci->large_blocks, 1);
		td_free(r);
	}
	kill(pid, SIGKILL);
	assert_int_equal(td_waitpid(pid, 20000), 128 + SIGKILL);
	*victim_pid = pid;
	return slot;
}

/* Poll Stats until @slot is dead (bounded); the caller frees the response. */
static Shmpool__Response *stats_when_dead(struct ctx *x, uint32_t slot)
{
	for (int i = 0; i < 4000; i++) {
		Shmpool__Response *r = td_simple(x->keeper.fd, SHMPOOL__REQUEST__OP_STATS);
		Shmpool__ClientInfo *ci;

		TD_EXPECT(r, 0);
		ci = td_stats_client(r, slot);
		if (ci && strcmp(ci->state, "dead") == 0)
			return r;
		td_free(r);
		td_nap();
	}
	fail_msg("slot %u never showed up dead in Stats", slot);
	return NULL;
}

static void check_after_death(struct ctx *x, uint32_t slot, pid_t pid)
{
	Shmpool__Response *r = stats_when_dead(x, slot);
	Shmpool__ClientInfo *ci = td_stats_client(r, slot);
	struct sp_pool *p;
	sp_off_t off;

	/* orphans stay attributed: the plain pools' elements, kmalloc, the large block */
	assert_false(ci->connected);
	assert_int_equal(ci->pid, pid); /* kept for attribution */
	assert_string_equal(ci->name, "victim");
	assert_int_equal(ci->pool_elems, 10 + 1);
	assert_int_equal(ci->objects, 10 + 3);
	assert_int_equal(ci->large_blocks, 1);
	/* reclaim-on-exit pools got theirs back, reserves refilled first */
	assert_int_equal(td_stats_pool(r, "recl")->nr_out, 0);
	assert_int_equal(td_stats_pool(r, "recl")->curr_nr, 4);
	assert_int_equal(td_stats_pool(r, "recl.pages")->nr_out, 0);
	assert_int_equal(td_stats_pool(r, "plain")->nr_out, 10);
	assert_int_equal(td_stats_pool(r, "plain.pages")->nr_out, 1);
	td_free(r);
	td_check_clean(x->keeper.fd);

	/* the keeper is unaffected: it allocates from the same pools */
	p = td_client_pool(&x->keeper, "recl");
	assert_int_equal(sp_pool_alloc(x->keeper.seg, p, SP_ALLOC_NOWAIT, 0, &off), 0);
	assert_int_equal(sp_pool_free(x->keeper.seg, p, off), 0);

	/* an explicit Reclaim frees the orphans and the slot */
	r = td_reclaim(x->keeper.fd, slot);
	TD_EXPECT(r, 0);
	assert_int_equal(r->reclaim->pool_elems, 11);
	assert_int_equal(r->reclaim->objects, 13);
	assert_int_equal(r->reclaim->large_blocks, 1);
	td_free(r);
	r = td_simple(x->keeper.fd, SHMPOOL__REQUEST__OP_STATS);
	TD_EXPECT(r, 0);
	assert_null(td_stats_client(r, slot));
	assert_int_equal(td_stats_pool(r, "plain")->nr_out, 0);
	assert_int_equal(td_stats_pool(r, "plain.pages")->nr_out, 0);
	td_free(r);
	td_check_clean(x->keeper.fd);
}

static void killed_client_orphans_attributed(void **state)
{
	struct ctx *x = *state;
	pid_t pid;
	uint32_t slot = kill_a_victim(x, false, &pid);

	check_after_death(x, slot, pid);
	assert_true(td_log_contains(&x->d, "gone without Goodbye"));
}

static void killed_inside_critical_sections(void **state)
{
	struct ctx *x = *state;
	uint32_t before = x->keeper.seg->hdr->registry_lock.recoveries;
	pid_t pid;
	uint32_t slot = kill_a_victim(x, true, &pid);

	check_after_death(x, slot, pid);
	assert_true(x->keeper.seg->hdr->registry_lock.recoveries > before);
	assert_true(td_client_pool(&x->keeper, "recl")->lock.recoveries > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(killed_client_orphans_attributed),
		cmocka_unit_test(killed_inside_critical_sections),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
