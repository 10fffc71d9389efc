/* SPDX-License-Identifier: MIT */
/*
 * test-segment.c - creating, attaching and validating segments: a wrong
 * magic, version, size or checksum is a clear error, never a silent
 * re-initialisation; offsets, not pointers, cross between mappings.  The
 * segment's locks: robust, PI and process-shared, taken in the documented
 * order only.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test-util.h"

static void create_attach_roundtrip(void **state)
{
	struct sp_seg *s = tu_seg_new(8u << 20), *t;
	sp_off_t off;

	assert_int_equal(s->hdr->magic, SP_MAGIC);
	assert_int_equal(s->hdr->layout_version, SP_LAYOUT_VERSION);
	assert_true(s->hdr->data.off % SP_PAGE_SIZE == 0);
	assert_true(s->hdr->data.off + s->hdr->data.size <= s->size);
	TU_ASSERT_OK(sp_kmalloc(s, 100, &off));
	strcpy(sp_ptr(s, off), "written through the first mapping");
	t = tu_seg_reattach(s, "second");
	assert_ptr_not_equal(t->base, s->base); /* another address, same offsets */
	assert_string_equal(sp_ptr(t, off), "written through the first mapping");
	assert_int_equal(sp_off(t, sp_ptr(t, off)), off);
	assert_int_equal(sp_off(t, NULL), 0);
	assert_int_equal(sp_off(t, &off), 0); /* a pointer outside the segment */
	assert_null(sp_ptr_checked(t, t->size - 4, 8, 1));
	assert_null(sp_ptr_checked(t, 0, 8, 1));
	TU_ASSERT_OK(sp_kfree(t, off));
	tu_check_clean(t);
	sp_seg_detach(t);
	tu_seg_free(s);
}

/* The handle knows its file (the client's resume check needs no fstat). */
static void handle_records_file_identity(void **state)
{
	struct sp_seg *s = tu_seg_new(4u << 20), *t;
	struct stat st;

	assert_int_equal(fstat(s->fd, &st), 0);
	assert_true(s->dev == st.st_dev && s->ino == st.st_ino);
	t = tu_seg_reattach(s, "second");
	assert_true(t->dev == st.st_dev && t->ino == st.st_ino);
	sp_seg_detach(t);
	tu_seg_free(s);
}

static void create_refuses_existing(void **state)
{
	struct sp_seg *s = tu_seg_new(4u << 20), *t = NULL;

	assert_int_equal(sp_seg_create(s->name, -1, NULL, &t), -EEXIST);
	assert_non_null(strstr(sp_errmsg(), s->name));
	tu_seg_free(s);
}

static void bad_params(void **state)
{
	struct sp_seg_params p;
	struct sp_seg *s = NULL;

	sp_seg_params_default(&p);
	p.size = 1000;
	assert_int_equal(sp_seg_create("/shmpool-test-badparams", -1, &p, &s), -EINVAL);
	assert_non_null(strstr(sp_errmsg(), "below the minimum"));
	sp_seg_params_default(&p);
	p.max_order = 40;
	assert_int_equal(sp_seg_create("/shmpool-test-badparams", -1, &p, &s), -EINVAL);
	sp_seg_params_default(&p);
	p.max_clients = 0;
	assert_int_equal(sp_seg_create("/shmpool-test-badparams", -1, &p, &s), -EINVAL);
	assert_int_equal(sp_seg_attach("/shmpool-test-does-not-exist", -1, 0, &s), -ENOENT);
}

/* Corrupt one header field through a raw mapping; attach must refuse. */
static void expect_attach_error(struct sp_seg *s, size_t field_off, uint64_t value, size_t len,
				int want, const char *msg)
{
	struct sp_seg *t = NULL;
	uint8_t saved[8];

	memcpy(saved, (uint8_t *)s->hdr + field_off, len);
	memcpy((uint8_t *)s->hdr + field_off, &value, len);
	assert_int_equal(sp_seg_attach(s->name, -1, 0, &t), want);
	if (!strstr(sp_errmsg(), msg))
		fail_msg("message '%s' lacks '%s'", sp_errmsg(), msg);
	memcpy((uint8_t *)s->hdr + field_off, saved, len);
}

static void attach_validates_header(void **state)
{
	struct sp_seg *s = tu_seg_new(4u << 20), *t = NULL;

	expect_attach_error(s, offsetof(struct sp_header, magic), 0x1234, 8, -EBADMSG,
			    "not a shmpool segment");
	expect_attach_error(s, offsetof(struct sp_header, layout_version), 99, 4,
			    -EPROTONOSUPPORT, "layout version 99");
	expect_attach_error(s, offsetof(struct sp_header, nr_pages), 12345, 4, -EBADMSG,
			    "checksum");
	expect_attach_error(s, offsetof(struct sp_header, sizeof_cache), 1, 4, -EPROTONOSUPPORT,
			    "incompatible build");
	/* intact again: attach works and nothing was re-initialised */
	TU_ASSERT_OK(sp_seg_attach(s->name, -1, 0, &t));
	sp_seg_detach(t);
	/* a file whose size differs from the header */
	{
		int fd = shm_open(s->name, O_RDWR, 0);

		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, (off_t)s->size + SP_PAGE_SIZE), 0);
		assert_int_equal(sp_seg_attach(s->name, -1, 0, &t), -EBADMSG);
		assert_non_null(strstr(sp_errmsg(), "the file has"));
		assert_int_equal(ftruncate(fd, 4096), 0);
		assert_int_equal(sp_seg_attach(s->name, -1, 0, &t), -EBADMSG);
		close(fd);
	}
	tu_seg_free(s);
}

static void readonly_attach_never_writes(void **state)
{
	struct sp_seg *s = tu_seg_new(4u << 20), *ro = NULL;

	TU_ASSERT_OK(sp_seg_attach(s->name, -1, SP_ATTACH_RDONLY, &ro));
	assert_true(ro->readonly);
	/* locking would write to the mutex: refused with a clear error */
	assert_int_equal(sp_buddy_lock(ro), -EROFS);
	/* the checker runs without locks on a read-only mapping */
	assert_int_equal(tu_check_count(ro, 0), 0);
	sp_seg_detach(ro);
	tu_seg_free(s);
}

static void memfd_segment(void **state)
{
	int fd = memfd_create("shmpool-test", MFD_CLOEXEC);
	struct sp_seg *s = NULL, *t = NULL;
	struct sp_seg_params p;
	sp_off_t off;

	sp_seg_params_default(&p);
	p.size = 4u << 20;
	assert_true(fd >= 0);
	TU_ASSERT_OK(sp_seg_create(NULL, fd, &p, &s));
	tu_register(s, "memfd");
	TU_ASSERT_OK(sp_kmalloc(s, 64, &off));
	TU_ASSERT_OK(sp_seg_attach(NULL, dup(s->fd), 0, &t));
	assert_int_equal(sp_ksize(t, off, &(uint64_t){0}), 0);
	tu_check_clean(t);
	sp_seg_detach(t);
	sp_seg_detach(s);
}

/*
 * glibc's mutex kind bits (nptl/pthreadP.h; the field is public in struct
 * __pthread_mutex_s): robust, priority-inheritance, process-shared.  PI is
 * what keeps a killed waiter from taking a wake-up with it (lock.c).
 */
#define GLIBC_MUTEX_ROBUST 16
#define GLIBC_MUTEX_PI 32
#define GLIBC_MUTEX_PSHARED 128

static void assert_lock_kind(const struct sp_lock *l, const char *what)
{
	int kind = l->mutex.__data.__kind;

	if ((kind & (GLIBC_MUTEX_ROBUST | GLIBC_MUTEX_PI | GLIBC_MUTEX_PSHARED)) !=
	    (GLIBC_MUTEX_ROBUST | GLIBC_MUTEX_PI | GLIBC_MUTEX_PSHARED))
		fail_msg("the %s lock has mutex kind %#x: not robust, PI and process-shared", what,
			 (unsigned)kind);
}

/* Every lock of the segment: the registry's, the buddy's, a cache's, a pool's. */
static void locks_are_robust_pi(void **state)
{
	struct sp_seg *s = tu_seg_new(8u << 20);
	struct sp_pool_params pp = { .elem_size = 64, .min_nr = 2 };
	uint32_t cid, pid;

	(void)state;
	TU_ASSERT_OK(sp_cache_create(s, "kinds.cache", 48, 0, 0, NULL, &cid));
	TU_ASSERT_OK(sp_pool_create(s, "kinds.pool", &pp, &pid));
	assert_lock_kind(&s->hdr->registry_lock, "registry");
	assert_lock_kind(&s->hdr->buddy.lock, "buddy");
	assert_lock_kind(&sp_cache_get(s, cid)->lock, "cache");
	assert_lock_kind(&sp_pool_get(s, pid)->lock, "pool");
	TU_ASSERT_OK(sp_pool_destroy(s, pid));
	tu_seg_free(s);
}

enum order_case {
	ORDER_RIGHT,		/* registry, pool, cache, buddy: the documented order */
	ORDER_REVERSED,		/* buddy (4), then registry (1) */
	ORDER_POOL_IN_CACHE,	/* cache (3), then pool (2) */
	ORDER_SAME_LEVEL,	/* two caches (3, 3) */
};

struct order_arg {
	char name[256];		/* the segment */
	uint32_t pool, cache[2];
	enum order_case how;
	int err_fd;		/* the child's stderr: a pipe's write end */
};

/* Take two or four segment locks as @a says, then release them. */
static int order_child(void *arg)
{
	const struct order_arg *a = arg;
	struct rlimit no_core = { 0, 0 };
	struct sp_seg *s;
	struct sp_pool *p;
	struct sp_cache *c0, *c1;

	tu_child_signals_default();
	setrlimit(RLIMIT_CORE, &no_core); /* an abort is expected: no core file */
	if (dup2(a->err_fd, STDERR_FILENO) < 0)
		return 10;
	s = tu_child_attach(a->name, "order");
	if (!s)
		return 11;
	p = sp_pool_get(s, a->pool);
	c0 = sp_cache_get(s, a->cache[0]);
	c1 = sp_cache_get(s, a->cache[1]);
	if (!p || !c0 || !c1)
		return 12;
	switch (a->how) {
	case ORDER_RIGHT:
		if (sp_registry_lock(s) || sp_pool_lock(s, p) || sp_cache_lock(s, c0) ||
		    sp_buddy_lock(s))
			return 13;
		sp_buddy_unlock(s);
		sp_cache_unlock(c0);
		sp_pool_unlock(p);
		sp_registry_unlock(s);
		break;
	case ORDER_REVERSED:
		if (sp_buddy_lock(s) || sp_registry_lock(s))
			return 13;
		sp_registry_unlock(s);
		sp_buddy_unlock(s);
		break;
	case ORDER_POOL_IN_CACHE:
		if (sp_cache_lock(s, c0) || sp_pool_lock(s, p))
			return 13;
		sp_pool_unlock(p);
		sp_cache_unlock(c0);
		break;
	case ORDER_SAME_LEVEL:
		if (sp_cache_lock(s, c0) || sp_cache_lock(s, c1))
			return 13;
		sp_cache_unlock(c1);
		sp_cache_unlock(c0);
		break;
	}
	sp_client_unregister(s, s->slot);
	sp_seg_detach(s);
	return 0;
}

/* Run order_child(@a) with its stderr in @err; return its tu_wait() status. */
static int run_order_child(struct order_arg *a, char *err, size_t len)
{
	int fds[2];
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	a->err_fd = fds[1];
	pid = tu_fork(order_child, a);
	close(fds[1]);
	while (got + 1 < len && (n = read(fds[0], err + got, len - 1 - got)) != 0)
		if (n > 0)
			got += (size_t)n;
		else if (errno != EINTR)
			break;
	err[got] = '\0';
	close(fds[0]);
	return tu_wait(pid);
}

/*
 * The lock order of layout.h, as lock.c asserts it (SP_DEBUG_LEVEL >= 1,
 * the default debug_checks=1): taking a lock whose level is not above every
 * lock the thread holds aborts the process with a message.  A forked child
 * with its own mapping and slot takes the locks; the documented order
 * works.  The locks an aborted child held are recovered by the next locker:
 * the checker then finds nothing wrong.
 */
static void lock_order_asserted(void **state)
{
	static const struct {
		enum order_case how;
		const char *what;
	} wrong[] = {
		{ ORDER_REVERSED, "the buddy lock, then the registry lock" },
		{ ORDER_POOL_IN_CACHE, "a cache lock, then a pool lock" },
		{ ORDER_SAME_LEVEL, "two cache locks" },
	};
	struct sp_seg *s = tu_seg_new(8u << 20);
	struct sp_pool_params pp = { .elem_size = 64, .min_nr = 2 };
	struct order_arg a = { .how = ORDER_RIGHT };
	char err[1024];
	int st;

	(void)state;
	snprintf(a.name, sizeof(a.name), "%s", s->name);
	TU_ASSERT_OK(sp_pool_create(s, "order.pool", &pp, &a.pool));
	TU_ASSERT_OK(sp_cache_create(s, "order.a", 48, 0, 0, NULL, &a.cache[0]));
	TU_ASSERT_OK(sp_cache_create(s, "order.b", 48, 0, 0, NULL, &a.cache[1]));

	st = run_order_child(&a, err, sizeof(err));
	if (st != 0 || err[0])
		fail_msg("the documented lock order: the child ended with status %d, stderr '%s'",
			 st, err);
#if SP_DEBUG_LEVEL >= 1
	for (unsigned i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		a.how = wrong[i].how;
		st = run_order_child(&a, err, sizeof(err));
		if (st != 128 + SIGABRT)
			fail_msg("taking %s: the child ended with status %d instead of dying by "
				 "SIGABRT (stderr '%s')", wrong[i].what, st, err);
		if (!strstr(err, "lock order"))
			fail_msg("taking %s: the child's stderr does not name the lock order: '%s'",
				 wrong[i].what, err);
		printf("  taking %s: SIGABRT, %s", wrong[i].what, err);
	}
#else
	printf("  lock order deaths not expected: debug_checks=%d compiles lock.c's "
	       "order assertion out (it needs 1 or more)\n", SP_DEBUG_LEVEL);
	(void)wrong;
#endif
	assert_true(sp_client_reap(s) >= 0);
	tu_check_clean(s); /* recovers the locks the aborted children held */
	TU_ASSERT_OK(sp_pool_destroy(s, a.pool));
	tu_seg_free(s);
}

static void error_table(void **state)
{
	assert_string_equal(sp_err_name(-ENOMEM), "ENOMEM");
	assert_string_equal(sp_strerror(-EBUSY), "still in use");
	assert_string_equal(sp_strerror(0), "success");
	assert_string_equal(sp_err_name(-9999), "EUNKNOWN");
}

/* A message may wrap the one before it: sp_err("... (%s)", sp_errmsg()). */
static void error_message_wraps_previous(void **state)
{
	char inner[300];

	(void)state;
	memset(inner, 'x', sizeof(inner) - 1);
	inner[sizeof(inner) - 1] = '\0';
	assert_int_equal(sp_err(-EINVAL, "inner %s", inner), -EINVAL);
	assert_int_equal(sp_err(-EIO, "outer (%s)", sp_errmsg()), -EIO);
	assert_int_equal(strncmp(sp_errmsg(), "outer (inner xxx", 16), 0);
	assert_int_equal(strlen(sp_errmsg()), strlen("outer (inner ") + 299 + 1);
	assert_int_equal(sp_errmsg()[strlen(sp_errmsg()) - 1], ')');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(create_attach_roundtrip),
		cmocka_unit_test(handle_records_file_identity),
		cmocka_unit_test(create_refuses_existing),
		cmocka_unit_test(bad_params),
		cmocka_unit_test(attach_validates_header),
		cmocka_unit_test(readonly_attach_never_writes),
		cmocka_unit_test(memfd_segment),
		cmocka_unit_test(error_table),
		cmocka_unit_test(error_message_wraps_previous),
		cmocka_unit_test(locks_are_robust_pi),
		cmocka_unit_test(lock_order_asserted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
