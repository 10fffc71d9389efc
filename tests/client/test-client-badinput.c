/* SPDX-License-Identifier: MIT */
/*
 * test-client-badinput.c - every kind of wrong input to the public API
 * gets a clear error code and message and changes nothing: NULL handles
 * and pointers, size 0 and huge sizes, bad names and options, double
 * frees, foreign pointers, pointers into the middle of an element, frees
 * to the wrong pool, segment metadata passed to shmp_free, and handles
 * used after shmp_disconnect.  At the end the daemon's checker and the
 * offline checker must find the segment consistent.
 */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "client-util.h"

static void test_null_and_args(void **state)
{
	struct cl_daemon *d = *state;
	struct shmp_pool_stats ps;
	struct shmp_cache_stats cs;
	struct shmp_segment_stats ss;
	shmp_client *c = NULL;
	shmp_pool *p = NULL;
	shmp_cache *k = NULL;
	char longpath[200];

	/* connect */
	CL_ERR(shmp_connect(d->sock, "x", NULL), -EINVAL);
	CL_ERR(shmp_connect("", "x", &c), -EINVAL);
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	CL_ERR(shmp_connect(longpath, "x", &c), -ENAMETOOLONG);
	CL_ERR(shmp_connect("/nonexistent/shmpool.sock", "x", &c), -ECONNREFUSED);
	assert_non_null(strstr(shmp_errmsg(), "/nonexistent/shmpool.sock"));
	assert_null(c);

	/* NULL session */
	CL_ERR(shmp_pool_create(NULL, "a", 8, 1, &p), -EINVAL);
	CL_ERR(shmp_pool_open(NULL, "a", &p), -EINVAL);
	CL_ERR(shmp_pool_destroy(NULL, "a"), -EINVAL);
	CL_ERR(shmp_cache_create(NULL, "a", 8, 0, NULL, &k), -EINVAL);
	CL_ERR(shmp_cache_open(NULL, "a", &k), -EINVAL);
	CL_ERR(shmp_cache_destroy(NULL, "a"), -EINVAL);
	CL_NULL(shmp_malloc(NULL, 8), EINVAL);
	CL_NULL(shmp_calloc(NULL, 1, 8), EINVAL);
	CL_ERR(shmp_free_checked(NULL, longpath), -EINVAL);
	shmp_free(NULL, NULL);
	assert_int_equal(shmp_off(NULL, longpath), 0);
	CL_NULL(shmp_ptr(NULL, 4096), EINVAL);
	CL_ERR(shmp_segment_stats(NULL, &ss), -EINVAL);
	CL_ERR(shmp_check(NULL, NULL), -EINVAL);
	shmp_disconnect(NULL);

	/* NULL pool / cache handles */
	CL_NULL(shmp_pool_alloc(NULL, 0), EINVAL);
	CL_NULL(shmp_pool_alloc_timeout(NULL, 10), EINVAL);
	CL_ERR(shmp_pool_free(NULL, longpath), -EINVAL);
	CL_ERR(shmp_pool_resize(NULL, 1), -EINVAL);
	CL_ERR(shmp_pool_stats(NULL, &ps), -EINVAL);
	CL_ERR(shmp_pool_alloc_bulk(NULL, 0, (void **)&p, 1), -EINVAL);
	shmp_pool_close(NULL);
	CL_NULL(shmp_cache_alloc(NULL, 0), EINVAL);
	CL_ERR(shmp_cache_free(NULL, longpath), -EINVAL);
	CL_ERR(shmp_cache_stats(NULL, &cs), -EINVAL);
	shmp_cache_close(NULL);

	c = cl_connect(d, "bad-args");
	/* NULL out pointers, stats pointers, names */
	CL_ERR(shmp_pool_create(c, "a", 8, 1, NULL), -EINVAL);
	CL_ERR(shmp_pool_open(c, "a", NULL), -EINVAL);
	CL_ERR(shmp_cache_create(c, "a", 8, 0, NULL, NULL), -EINVAL);
	CL_ERR(shmp_cache_open(c, "a", NULL), -EINVAL);
	CL_ERR(shmp_segment_stats(c, NULL), -EINVAL);
	CL_ERR(shmp_pool_create(c, NULL, 8, 1, &p), -EINVAL);
	CL_ERR(shmp_pool_open(c, NULL, &p), -EINVAL);
	CL_ERR(shmp_pool_destroy(c, NULL), -EINVAL);
	CL_ERR(shmp_cache_create(c, NULL, 8, 0, NULL, &k), -EINVAL);

	/* bad names */
	CL_ERR(shmp_pool_create(c, "", 8, 1, &p), -EINVAL);
	CL_ERR(shmp_pool_create(c, "has space", 8, 1, &p), -EINVAL);
	CL_ERR(shmp_pool_create(c, "a/b", 8, 1, &p), -EINVAL);
	CL_ERR(shmp_pool_create(c, "tab\t", 8, 1, &p), -EINVAL);
	CL_ERR(shmp_pool_create(c, "\xc3\xa9t\xc3\xa9", 8, 1, &p), -EINVAL);
	CL_ERR(shmp_pool_create(c, "0123456789012345678901234567890123456789012345678901234567890123",
				8, 1, &p),
	       -ENAMETOOLONG);
	CL_ERR(shmp_pool_open(c, "no/such", &p), -EINVAL);
	CL_ERR(shmp_cache_create(c, "bad name", 8, 0, NULL, &k), -EINVAL);
	CL_ERR(shmp_cache_open(c, "", &k), -EINVAL);
	CL_ERR(shmp_pool_open(c, "no.such.pool", &p), -ENOENT);
	CL_ERR(shmp_cache_open(c, "no.such.cache", &k), -ENOENT);
	CL_ERR(shmp_pool_destroy(c, "no.such.pool"), -ENOENT);
	CL_ERR(shmp_cache_destroy(c, "no.such.cache"), -ENOENT);
	assert_null(p);
	assert_null(k);
	/* a name of exactly 63 characters is fine */
	CL_OK(shmp_pool_create(c, "012345678901234567890123456789012345678901234567890123456789012",
			       8, 1, &p));
	shmp_pool_close(p);
	CL_OK(shmp_pool_destroy(c, "012345678901234567890123456789012345678901234567890123456789012"));
	cl_check(c);
	shmp_disconnect(c);
}

static void test_sizes_and_options(void **state)
{
	struct cl_daemon *d = *state;
	shmp_client *c = cl_connect(d, "bad-sizes");
	struct shmp_pool_opts o;
	unsigned char big[70000];
	shmp_pool *p = NULL;
	shmp_cache *k = NULL;
	void *e;

	/* size 0 */
	CL_ERR(shmp_pool_create(c, "z", 0, 1, &p), -EINVAL);
	CL_ERR(shmp_cache_create(c, "z", 0, 0, NULL, &k), -EINVAL);
	CL_NULL(shmp_malloc(c, 0), EINVAL);
	CL_NULL(shmp_calloc(c, 0, 8), EINVAL);
	CL_NULL(shmp_calloc(c, 8, 0), EINVAL);
	/* huge sizes */
	CL_ERR(shmp_pool_create(c, "z", SIZE_MAX, 1, &p), -EINVAL);
	CL_ERR(shmp_pool_create(c, "z", (size_t)1 << 40, 1, &p), -EINVAL);
	CL_ERR(shmp_pool_create(c, "z", 1u << 20, 1, &p), -EINVAL); /* too big for a slab */
	CL_ERR(shmp_pool_create(c, "z", 64, 1u << 30, &p), -ENOMEM);
	CL_ERR(shmp_pool_create(c, "z", 4096, 100000, &p), -ENOMEM);
	o = (struct shmp_pool_opts){ .backing = SHMP_BACKING_PAGES };
	CL_ERR(shmp_pool_create_ex(c, "z", 8u << 20, 1, &o, &p), -EINVAL); /* above a block */
	CL_ERR(shmp_pool_create_ex(c, "z", 1u << 20, 100, &o, &p), -ENOMEM);
	CL_ERR(shmp_cache_create(c, "z", SIZE_MAX, 0, NULL, &k), -EINVAL);
	CL_ERR(shmp_cache_create(c, "z", 1u << 30, 0, NULL, &k), -EINVAL);
	memset(big, 1, sizeof(big));
	CL_ERR(shmp_cache_create(c, "z", sizeof(big), 0, big, &k), -EMSGSIZE);
	CL_NULL(shmp_malloc(c, SIZE_MAX), ENOMEM);
	CL_NULL(shmp_malloc(c, 100u << 20), ENOMEM);
	CL_NULL(shmp_calloc(c, SIZE_MAX / 2, 3), ENOMEM);
	CL_NULL(shmp_calloc(c, 1u << 20, 1u << 20), ENOMEM);
	assert_null(p);
	assert_null(k);
	/* a failed create leaves nothing behind: the name is free */
	CL_ERR(shmp_pool_open(c, "z", &p), -ENOENT);

	/* bad options and flags */
	o = (struct shmp_pool_opts){ .backing = 7 };
	CL_ERR(shmp_pool_create_ex(c, "z", 8, 1, &o, &p), -EINVAL);
	o = (struct shmp_pool_opts){ .flags = 0x80 };
	CL_ERR(shmp_pool_create_ex(c, "z", 8, 1, &o, &p), -EINVAL);
	o = (struct shmp_pool_opts){ .debug = 0x80 };
	CL_ERR(shmp_pool_create_ex(c, "z", 8, 1, &o, &p), -EINVAL);
	o = (struct shmp_pool_opts){ .max_nr = 2 };
	CL_ERR(shmp_pool_create_ex(c, "z", 8, 3, &o, &p), -EINVAL);
	o = (struct shmp_pool_opts){ .align = 3 };
	CL_ERR(shmp_pool_create_ex(c, "z", 8, 1, &o, &p), -EINVAL);
	o = (struct shmp_pool_opts){ .mode = 01000 };
	CL_ERR(shmp_pool_create_ex(c, "z", 8, 1, &o, &p), -EINVAL);
	CL_ERR(shmp_cache_create(c, "z", 8, 12, NULL, &k), -EINVAL);
	CL_ERR(shmp_cache_create(c, "z", 8, 8192, NULL, &k), -EINVAL);
	{
		struct shmp_cache_opts co = { .debug = 0x40 };

		CL_ERR(shmp_cache_create_ex(c, "z", 8, 0, NULL, &co, &k), -EINVAL);
	}

	/* bad flags and sizes on a good pool */
	o = (struct shmp_pool_opts){ .max_nr = 4 };
	CL_OK(shmp_pool_create_ex(c, "z", 16, 2, &o, &p));
	CL_NULL(shmp_pool_alloc(p, 0x100), EINVAL);
	CL_NULL(shmp_pool_alloc(p, -1), EINVAL);
	CL_ERR(shmp_pool_resize(p, 5), -EINVAL); /* above max_nr */
	CL_ERR(shmp_pool_alloc_bulk(p, 0, NULL, 3), -EINVAL);
	CL_ERR(shmp_pool_free_bulk(p, NULL, 3), -EINVAL);
	CL_ERR(shmp_pool_stats(p, NULL), -EINVAL);
	assert_non_null(e = shmp_pool_alloc(p, 0));
	CL_OK(shmp_pool_free(p, e));
	shmp_pool_close(p);
	CL_OK(shmp_pool_destroy(c, "z"));
	CL_OK(shmp_cache_create(c, "zc", 16, 0, NULL, &k));
	CL_NULL(shmp_cache_alloc(k, 0x2), EINVAL);
	CL_ERR(shmp_cache_stats(k, NULL), -EINVAL);
	shmp_cache_close(k);
	CL_OK(shmp_cache_destroy(c, "zc"));
	cl_check(c);
	shmp_disconnect(c);
}

static uint64_t bad_frees(shmp_pool *p)
{
	struct shmp_pool_stats st;

	return shmp_pool_stats(p, &st) ? UINT64_MAX : st.nr_bad_free;
}

/* The offset of a named cache's template, found through a read-only mapping. */
static shmp_off_t template_off(const char *shm, const char *name)
{
	struct sp_seg *s = NULL;
	shmp_off_t off = 0;

	TU_ASSERT_OK(sp_seg_attach(shm, -1, SP_ATTACH_RDONLY, &s));
	for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++)
		if (sp_caches(s)[i].state == SP_DESC_LIVE && !strcmp(sp_caches(s)[i].name, name))
			off = sp_caches(s)[i].tmpl_off;
	sp_seg_detach(s);
	return off;
}

static void test_bad_frees(void **state)
{
	struct cl_daemon *d = *state;
	struct shmp_pool_opts pages = { .backing = SHMP_BACKING_PAGES };
	shmp_client *c = cl_connect(d, "bad-frees");
	struct shmp_pool_stats sa, sb;
	struct shmp_cache_stats ks;
	shmp_pool *a, *b, *pg;
	shmp_cache *k, *k2;
	unsigned char tmpl[40] = { 1, 2, 3 };
	char *ea, *eb, *ea2, *epg, *o, *o2, *m, *big;
	int local;

	CL_OK(shmp_pool_create(c, "bad.a", 64, 2, &a));
	CL_OK(shmp_pool_create(c, "bad.b", 64, 2, &b));
	CL_OK(shmp_pool_create_ex(c, "bad.pages", 5000, 1, &pages, &pg));
	CL_OK(shmp_cache_create(c, "bad.cache", sizeof(tmpl), 0, tmpl, &k));
	CL_OK(shmp_cache_create(c, "bad.cache2", 40, 0, NULL, &k2));
	assert_non_null(ea = shmp_pool_alloc(a, 0));
	assert_non_null(ea2 = shmp_pool_alloc(a, 0));
	assert_non_null(eb = shmp_pool_alloc(b, 0));
	assert_non_null(epg = shmp_pool_alloc(pg, 0));
	assert_non_null(o = shmp_cache_alloc(k, 0));
	assert_non_null(o2 = shmp_cache_alloc(k2, 0));
	assert_non_null(m = shmp_malloc(c, 100));
	assert_non_null(big = shmp_malloc(c, 50000));
	memset(ea, 0xaa, 64);
	memset(eb, 0xbb, 64);

	/* pools: foreign, mid-element, wrong pool, other allocators' memory */
	CL_ERR(shmp_pool_free(a, &local), -EINVAL);
	assert_non_null(strstr(shmp_errmsg(), "not inside the segment"));
	CL_ERR(shmp_pool_free(a, ea + 1), -EINVAL);
	CL_ERR(shmp_pool_free(a, ea + 32), -EINVAL);
	CL_ERR(shmp_pool_free(a, eb), -EINVAL);	/* b's element to a */
	CL_ERR(shmp_pool_free(b, ea), -EINVAL);	/* and the reverse */
	CL_ERR(shmp_pool_free(a, o), -EINVAL);	/* a cache object */
	CL_ERR(shmp_pool_free(a, m), -EINVAL);	/* kmalloc memory */
	CL_ERR(shmp_pool_free(a, epg), -EINVAL);	/* a page pool's element */
	CL_ERR(shmp_pool_free(pg, epg + 4096), -EINVAL);
	CL_ERR(shmp_pool_free(pg, ea), -EINVAL);
	assert_true(bad_frees(a) >= 6);
	/* nothing changed: the elements are still allocated and intact */
	CL_OK(shmp_pool_stats(a, &sa));
	CL_OK(shmp_pool_stats(b, &sb));
	assert_int_equal(sa.nr_out, 2);
	assert_int_equal(sb.nr_out, 1);
	for (int i = 0; i < 64; i++)
		assert_true((unsigned char)ea[i] == 0xaa && (unsigned char)eb[i] == 0xbb);

	/* double frees: once into the reserve, once to the backing */
	CL_OK(shmp_pool_free(a, ea));	/* reserve refill (curr_nr < min_nr) */
	CL_ERR(shmp_pool_free(a, ea), -EINVAL);
	CL_OK(shmp_pool_free(b, eb));
	CL_ERR(shmp_pool_free(b, eb), -EINVAL);
	assert_non_null(ea = shmp_pool_alloc(a, 0));
	assert_non_null(eb = shmp_pool_alloc(a, 0));
	CL_OK(shmp_pool_free(a, ea));
	CL_OK(shmp_pool_free(a, eb));
	CL_OK(shmp_pool_free(a, ea2));	/* reserve full: to the backing */
	CL_ERR(shmp_pool_free(a, ea2), -EINVAL);
	CL_OK(shmp_pool_free(pg, epg));
	CL_ERR(shmp_pool_free(pg, epg), -EINVAL);
	CL_OK(shmp_pool_stats(a, &sa));
	assert_int_equal(sa.nr_out, 0);
	assert_int_equal(sa.curr_nr, 2);

	/* caches */
	CL_ERR(shmp_cache_free(k, &local), -EINVAL);
	CL_ERR(shmp_cache_free(k, o + 1), -EINVAL);
	CL_ERR(shmp_cache_free(k, o2), -EINVAL);	/* another cache's object */
	CL_ERR(shmp_cache_free(k2, o), -EINVAL);
	CL_ERR(shmp_cache_free(k, m), -EINVAL);
	CL_ERR(shmp_cache_free(k, NULL), -EINVAL);
	CL_OK(shmp_cache_stats(k, &ks));
	assert_int_equal(ks.active_objs, 1);
	assert_true(ks.nr_bad_free >= 3);
	CL_OK(shmp_cache_free(k, o));
	CL_ERR(shmp_cache_free(k, o), -EINVAL);
	CL_OK(shmp_cache_free(k2, o2));

	/* kmalloc */
	CL_ERR(shmp_free_checked(c, &local), -EINVAL);
	CL_ERR(shmp_free_checked(c, m + 8), -EINVAL);
	CL_ERR(shmp_free_checked(c, big + 4096), -EINVAL);
	CL_ERR(shmp_free_checked(c, big + 1), -EINVAL);
	CL_ERR(shmp_free_checked(c, shmp_pool_alloc(b, 0)), -EINVAL); /* a pool element */
	errno = 0;
	shmp_free(c, m + 1);
	assert_int_equal(errno, EINVAL);
	assert_true(shmp_malloc_usable_size(c, m) >= 100);
	assert_int_equal(shmp_malloc_usable_size(c, m + 8), 0);
	CL_OK(shmp_free_checked(c, m));
	CL_ERR(shmp_free_checked(c, m), -EINVAL);
	assert_int_equal(shmp_malloc_usable_size(c, m), 0);
	CL_OK(shmp_free_checked(c, big));
	CL_ERR(shmp_free_checked(c, big), -EINVAL);
	/* the segment's own metadata: a cache's template */
	{
		shmp_off_t t = template_off(d->shm, "bad.cache");

		assert_true(t != 0);
		CL_ERR(shmp_free_checked(c, shmp_ptr(c, t)), -EINVAL);
		assert_non_null(strstr(shmp_errmsg(), "metadata"));
		assert_int_equal(shmp_malloc_usable_size(c, shmp_ptr(c, t)), 0);
	}
	/* the header page and the page table are nobody's allocation */
	CL_ERR(shmp_free_checked(c, shmp_ptr(c, 8)), -EINVAL);
	CL_ERR(shmp_free_checked(c, shmp_ptr(c, 4096)), -EINVAL);
	CL_ERR(shmp_pool_free(a, shmp_ptr(c, 8)), -EINVAL);
	CL_ERR(shmp_cache_free(k, shmp_ptr(c, 4096)), -EINVAL);

	/* the template still works: new objects come out initialised */
	assert_non_null(o = shmp_cache_alloc(k, 0));
	assert_int_equal(memcmp(o, tmpl, sizeof(tmpl)), 0);
	CL_OK(shmp_cache_free(k, o));

	shmp_pool_close(a);
	shmp_pool_close(b);
	shmp_pool_close(pg);
	shmp_cache_close(k);
	shmp_cache_close(k2);
	cl_check(c);
	shmp_disconnect(c);
}

static void test_use_after_disconnect(void **state)
{
	struct cl_daemon *d = *state;
	shmp_client *c = cl_connect(d, "uad"), *c2;
	struct shmp_pool_stats ps;
	struct shmp_cache_stats cs;
	shmp_pool *p, *p2;
	shmp_cache *k;
	void *e, *o;

	CL_OK(shmp_pool_create(c, "uad.pool", 32, 2, &p));
	CL_OK(shmp_cache_create(c, "uad.cache", 32, 0, NULL, &k));
	assert_non_null(e = shmp_pool_alloc(p, 0));
	assert_non_null(o = shmp_cache_alloc(k, 0));
	shmp_disconnect(c); /* handles outlive the session */

	CL_NULL(shmp_pool_alloc(p, 0), ENOTCONN);
	assert_non_null(strstr(shmp_errmsg(), "shmp_disconnect"));
	CL_NULL(shmp_pool_alloc_timeout(p, 10), ENOTCONN);
	CL_ERR(shmp_pool_free(p, e), -ENOTCONN);
	CL_ERR(shmp_pool_resize(p, 3), -ENOTCONN);
	CL_ERR(shmp_pool_stats(p, &ps), -ENOTCONN);
	CL_NULL(shmp_cache_alloc(k, 0), ENOTCONN);
	CL_ERR(shmp_cache_free(k, o), -ENOTCONN);
	CL_ERR(shmp_cache_stats(k, &cs), -ENOTCONN);
	shmp_pool_close(p);
	shmp_cache_close(k); /* the last reference: the session's memory goes */

	/* the session said goodbye holding an element: an orphan attributed
	 * to its slot, still out */
	c2 = cl_connect(d, "uad-2");
	CL_OK(shmp_pool_open(c2, "uad.pool", &p2));
	CL_OK(shmp_pool_stats(p2, &ps));
	assert_int_equal(ps.nr_out, 1);
	shmp_pool_close(p2);
	cl_check(c2);
	shmp_disconnect(c2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_null_and_args, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_sizes_and_options, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_bad_frees, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_use_after_disconnect, cl_setup, cl_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
