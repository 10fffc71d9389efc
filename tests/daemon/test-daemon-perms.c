/* SPDX-License-Identifier: MIT */
/*
 * test-daemon-perms.c - who may do what.  The allow-list (the daemon's
 * uid, root, --allow-uid, --allow-gid) decides who may connect; pools and
 * caches record their creator's uid (from SO_PEERCRED) and a mode; destroy,
 * resize and reclaim need the owner or root.  Other users are played by
 * forked children that setuid() (the tests are skipped unless run as root).
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon-util.h"

#define OTHER_UID 4242
#define STRANGER_UID 4343
#define GROUP_GID 4444

/* Let other users reach the socket (the tests' directory is 0700). */
static void open_up(const struct td_daemon *d)
{
	assert_int_equal(chmod(d->dir, 0755), 0);
	assert_int_equal(chmod(d->sock, 0666), 0);
}

/* Fork a child running as @uid:@gid; returns its exit status. */
static int as_user(uid_t uid, gid_t gid, void (*fn)(const void *), const void *arg)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		TD_CHECK(setgroups(0, NULL) == 0);
		TD_CHECK(setgid(gid) == 0);
		TD_CHECK(setuid(uid) == 0);
		fn(arg);
		_exit(0);
	}
	return td_waitpid(pid, 20000);
}

struct other_args {
	const struct td_daemon *d;
	uint32_t dead_root_slot;
};

static void expect(Shmpool__Response *r, int status, const char *needle)
{
	TD_CHECK(r != NULL);
	if (r->status != status || (needle && !strstr(r->message, needle)))
		td_fail("status %d \"%s\", expected %d with \"%s\"", r->status, r->message, status,
			needle ? needle : "");
	td_free(r);
}

/* Runs as OTHER_UID. */
static void other_user(const void *arg)
{
	const struct other_args *a = arg;
	int fd = td_connect(a->d->sock), segfd;
	Shmpool__Response *r;
	uint32_t slot;

	r = td_hello(fd, "other", &segfd);
	TD_CHECK(r->status == 0 && segfd >= 0);
	slot = r->hello->client_slot;
	td_free(r);
	close(segfd);
	r = td_simple(fd, SHMPOOL__REQUEST__OP_STATS);
	TD_CHECK(r->status == 0 && td_stats_client(r, slot));
	TD_CHECK(td_stats_client(r, slot)->uid == OTHER_UID); /* SO_PEERCRED */
	td_free(r);

	expect(td_name_op(fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, "root.pool"), -EPERM,
	       "only that user or root");
	expect(td_pool_resize(fd, "root.pool", 9), -EPERM, "only that user or root");
	expect(td_name_op(fd, SHMPOOL__REQUEST__OP_POOL_OPEN, "root.pool"), -EPERM, "mode 0600");
	expect(td_name_op(fd, SHMPOOL__REQUEST__OP_POOL_OPEN, "shared.pool"), 0, NULL);
	expect(td_name_op(fd, SHMPOOL__REQUEST__OP_CACHE_DESTROY, "root.cache"), -EPERM, NULL);
	expect(td_name_op(fd, SHMPOOL__REQUEST__OP_CACHE_OPEN, "root.cache"), -EPERM, NULL);
	expect(td_reclaim(fd, a->dead_root_slot), -EPERM, "only that user or root");

	/* its own pools and caches are its own */
	r = td_pool_create(fd, "user.pool", 32, 2, 0);
	TD_CHECK(r->status == 0 && r->pool->creator_uid == OTHER_UID);
	td_free(r);
	expect(td_pool_resize(fd, "user.pool", 3), 0, NULL);
	expect(td_name_op(fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, "user.pool"), 0, NULL);
	expect(td_pool_create(fd, "user.keep", 32, 2, 0), 0, NULL);
	r = td_cache_create(fd, "user.cache", 16, NULL, 0);
	TD_CHECK(r->status == 0 && r->cache->creator_uid == OTHER_UID);
	td_free(r);
	expect(td_simple(fd, SHMPOOL__REQUEST__OP_GOODBYE), 0, NULL);
	close(fd);
}

static void non_owner_refused(void **state)
{
	static const char *const args[] = { "--allow-uid", "4242", NULL };
	Shmpool__PoolCreate pc = SHMPOOL__POOL_CREATE__INIT;
	struct other_args oa;
	struct td_daemon d;
	struct td_client root, leaver;
	struct sp_pool *p;
	sp_off_t el;

	(void)state;
	if (geteuid() != 0)
		skip();
	td_init(&d);
	td_start(&d, args);
	open_up(&d);
	td_client_open(&root, &d, "root");
	TD_EXPECT_FREE(td_pool_create(root.fd, "root.pool", 32, 2, 0), 0);
	pc.name = "shared.pool";
	pc.elem_size = 32;
	pc.mode = 0604;
	TD_EXPECT_FREE(td_pool_create_ex(root.fd, &pc), 0);
	TD_EXPECT_FREE(td_cache_create(root.fd, "root.cache", 16, NULL, 0), 0);
	/* a dead slot of root's, holding an element */
	td_client_open(&leaver, &d, "leaver");
	p = td_client_pool(&leaver, "root.pool");
	assert_int_equal(sp_pool_alloc(leaver.seg, p, SP_ALLOC_NOWAIT, 0, &el), 0);
	oa.d = &d;
	oa.dead_root_slot = leaver.slot;
	td_client_close(&leaver, true);

	assert_int_equal(as_user(OTHER_UID, OTHER_UID, other_user, &oa), 0);

	/* root may do all of it, to anyone's */
	TD_EXPECT_FREE(td_name_op(root.fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, "user.keep"), 0);
	TD_EXPECT_FREE(td_name_op(root.fd, SHMPOOL__REQUEST__OP_CACHE_DESTROY, "user.cache"), 0);
	TD_EXPECT_FREE(td_reclaim(root.fd, oa.dead_root_slot), 0);
	TD_EXPECT_FREE(td_name_op(root.fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, "root.pool"), 0);
	TD_EXPECT_FREE(td_name_op(root.fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, "shared.pool"), 0);
	TD_EXPECT_FREE(td_name_op(root.fd, SHMPOOL__REQUEST__OP_CACHE_DESTROY, "root.cache"), 0);
	td_check_clean(root.fd);
	td_client_close(&root, true);
	assert_int_equal(td_stop(&d), 0);
	td_cleanup(&d);
}

/* Runs as a user not on the allow-list. */
static void stranger(const void *arg)
{
	const struct td_daemon *d = arg;
	int fd = td_connect(d->sock), segfd;
	Shmpool__Response *r = td_hello(fd, "stranger", &segfd);

	TD_CHECK(r->status == -EACCES && segfd == -1);
	TD_CHECK(strstr(r->message, "may not use this daemon") != NULL);
	td_free(r);
	TD_CHECK(td_closed_by_peer(fd));
	close(fd);
	/* whatever it sends first, it gets the same answer */
	fd = td_connect(d->sock);
	r = td_simple(fd, SHMPOOL__REQUEST__OP_STATS);
	TD_CHECK(r->status == -EACCES);
	td_free(r);
	TD_CHECK(td_closed_by_peer(fd));
	close(fd);
	/* and if it says nothing, it is closed after --frame-timeout-ms */
	fd = td_connect(d->sock);
	TD_CHECK(td_closed_by_peer(fd));
	close(fd);
}

/* Runs as an otherwise unknown user of an allowed group. */
static void allowed_group_member(const void *arg)
{
	const struct td_daemon *d = arg;
	int fd = td_connect(d->sock), segfd;

	expect(td_hello(fd, "member", &segfd), 0, NULL);
	close(segfd);
	expect(td_simple(fd, SHMPOOL__REQUEST__OP_GOODBYE), 0, NULL);
	close(fd);
}

static void allow_list(void **state)
{
	static const char *const args[] = { "--allow-gid", "4444", "--frame-timeout-ms", "300",
					    NULL };
	struct td_daemon d;
	struct td_client root;

	(void)state;
	if (geteuid() != 0)
		skip();
	td_init(&d);
	td_start(&d, args);
	open_up(&d);
	assert_int_equal(as_user(STRANGER_UID, STRANGER_UID, stranger, &d), 0);
	assert_int_equal(as_user(STRANGER_UID, GROUP_GID, allowed_group_member, &d), 0);
	assert_true(td_log_contains(&d, "uid 4343 gid 4343 is not on the allow-list"));
	/* the daemon's own user is still served */
	td_client_open(&root, &d, "root");
	td_check_clean(root.fd);
	td_client_close(&root, true);
	assert_int_equal(td_stop(&d), 0);
	td_cleanup(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(non_owner_refused),
		cmocka_unit_test(allow_list),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
