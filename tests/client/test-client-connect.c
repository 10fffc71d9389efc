/* SPDX-License-Identifier: MIT */
/*
 * test-client-connect.c - what shmp_connect() does, and what it leaves for
 * later (client/client.c).
 *
 * Expected: connecting maps the segment but does not read the kmalloc
 * classes' descriptors: their page is not even mapped in (its PTE is not
 * present, /proc/self/pagemap) until the session's first shmp_malloc or
 * shmp_free takes their geometry, after which the fast path runs.  A page
 * of the pool table, which neither touches, is the control: when it is
 * mapped in after connect, the kernel's fault-around maps more than this
 * test can tell apart and the test is skipped.  The checker runs after
 * every test.
 */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "client-util.h"

/* Is the page holding @p mapped in this process (its PTE present)? */
static bool page_present(const void *p)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &e, sizeof(e), (off_t)((uintptr_t)p / 4096 * sizeof(e))),
			 (ssize_t)sizeof(e));
	close(fd);
	return e >> 63 & 1;
}

static void test_kmalloc_geometry_at_first_use(void **state)
{
	struct cl_daemon *d = *state;
	struct sp_seg *ro = NULL;
	sp_off_t kfirst, klast, pool;
	shmp_client *c;
	void *p;

	TU_ASSERT_OK(sp_seg_attach(d->shm, -1, SP_ATTACH_RDONLY, &ro));
	kfirst = ro->geo.caches.off;
	klast = kfirst + (sp_off_t)ro->geo.nr_kmalloc * sizeof(struct sp_cache) - 1;
	pool = ro->geo.pools.off + ro->geo.pools.size / 2;
	sp_seg_detach(ro);

	c = cl_connect(d, "connect");
	if (page_present(shmp_ptr(c, pool))) {
		shmp_disconnect(c);
		skip(); /* fault-around mapped the whole table area in */
	}
	assert_false(page_present(shmp_ptr(c, kfirst)));
	assert_false(page_present(shmp_ptr(c, klast)));
	p = shmp_malloc(c, 64);
	if (!p)
		CL_FAIL("shmp_malloc: %s", shmp_errmsg());
	assert_true(page_present(shmp_ptr(c, kfirst)));
	assert_true(page_present(shmp_ptr(c, klast)));
	shmp_free(c, p);
	cl_check(c);
	shmp_disconnect(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_kmalloc_geometry_at_first_use, cl_setup,
						cl_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
