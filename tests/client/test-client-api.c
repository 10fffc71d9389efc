/* SPDX-License-Identifier: MIT */
/*
 * test-client-api.c - the happy path of every public function of
 * libshmpool, against a real daemon: sessions, pools (slab and page
 * backed, with options), caches (with a template), kmalloc, offsets,
 * statistics, the daemon's checker, error names, and many threads sharing
 * one session.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client-util.h"

static void test_sessions(void **state)
{
	struct cl_daemon *d = *state;
	struct shmp_connect_opts opts = { .timeout_ms = 5000 };
	struct shmp_segment_stats st;
	shmp_client *c, *c2, *c3;

	c = cl_connect(d, "api");
	CL_OK(shmp_segment_stats(c, &st));
	assert_int_equal(st.size, 16u << 20);
	assert_int_equal(st.page_size, 4096);
	assert_true(st.connected);
	assert_true(st.free_pages > 0 && st.free_pages <= st.nr_pages);
	assert_true(st.max_alloc >= 4096);
	assert_string_equal(st.name, d->shm);

	/* the default path comes from $SHMPOOL_SOCKET */
	setenv("SHMPOOL_SOCKET", d->sock, 1);
	CL_OK(shmp_connect(NULL, NULL, &c2));
	unsetenv("SHMPOOL_SOCKET");
	CL_OK(shmp_connect_ex(d->sock, "api-ex", &opts, &c3));

	/* three sessions, three slots, one segment */
	{
		struct shmp_segment_stats s2, s3;

		CL_OK(shmp_segment_stats(c2, &s2));
		CL_OK(shmp_segment_stats(c3, &s3));
		assert_int_not_equal(st.slot, s2.slot);
		assert_int_not_equal(s2.slot, s3.slot);
		assert_string_equal(s2.name, st.name);
	}
	cl_check(c2);
	shmp_disconnect(c3);
	shmp_disconnect(c2);
	shmp_disconnect(NULL);
	cl_check(c);
	shmp_disconnect(c);
}

static void fill(void *p, size_t n, unsigned seed)
{
	unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(seed + i * 7);
}

static int filled(const void *p, size_t n, unsigned seed)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != (unsigned char)(seed + i * 7))
			return 0;
	return 1;
}

static void test_pool(void **state)
{
	struct cl_daemon *d = *state;
	shmp_client *c = cl_connect(d, "api-pool");
	struct shmp_pool_stats st;
	shmp_pool *p, *p2, *dup = NULL;
	void *e[20], *one;

	CL_OK(shmp_pool_create(c, "api.pool", 100, 8, &p));
	CL_ERR(shmp_pool_create(c, "api.pool", 100, 8, &dup), -EEXIST);
	assert_null(dup);
	CL_OK(shmp_pool_open(c, "api.pool", &p2));
	CL_OK(shmp_pool_stats(p, &st));
	assert_int_equal(st.elem_size, 100);
	assert_int_equal(st.min_nr, 8);
	assert_int_equal(st.curr_nr, 8);
	assert_int_equal(st.max_nr, 0);
	assert_int_equal(st.nr_out, 0);

	for (unsigned i = 0; i < 20; i++) {
		e[i] = shmp_pool_alloc(p, i % 2 ? SHMP_NOWAIT : 0);
		assert_non_null(e[i]);
		fill(e[i], 100, i);
	}
	CL_OK(shmp_pool_stats(p2, &st));
	assert_int_equal(st.nr_out, 20);
	for (unsigned i = 0; i < 20; i++) {
		assert_true(filled(e[i], 100, i));
		CL_OK(shmp_pool_free(i % 2 ? p : p2, e[i])); /* any handle of the pool */
	}
	one = shmp_pool_alloc_timeout(p, 1000);
	assert_non_null(one);
	CL_OK(shmp_pool_free(p, one));

	/* bulk */
	assert_int_equal(shmp_pool_alloc_bulk(p, 0, e, 20), 20);
	CL_OK(shmp_pool_free_bulk(p, e, 20));
	assert_int_equal(shmp_pool_alloc_bulk(p, 0, e, 0), 0);

	/* resize up and down */
	CL_OK(shmp_pool_resize(p, 16));
	CL_OK(shmp_pool_stats(p, &st));
	assert_int_equal(st.min_nr, 16);
	assert_int_equal(st.curr_nr, 16);
	CL_OK(shmp_pool_resize(p2, 2));
	CL_OK(shmp_pool_stats(p, &st));
	assert_int_equal(st.min_nr, 2);
	assert_int_equal(st.curr_nr, 2);
	assert_int_equal(st.nr_out, 0);
	assert_true(st.nr_alloc >= 41);
	assert_int_equal(st.nr_alloc, st.nr_free);

	/* destroy: busy while an element is out; stale handles after */
	one = shmp_pool_alloc(p, 0);
	assert_non_null(one);
	CL_ERR(shmp_pool_destroy(c, "api.pool"), -EBUSY);
	CL_OK(shmp_pool_free(p, one));
	CL_OK(shmp_pool_destroy(c, "api.pool"));
	CL_NULL(shmp_pool_alloc(p, 0), ENOENT);
	CL_ERR(shmp_pool_free(p2, one), -ENOENT);
	CL_ERR(shmp_pool_stats(p, &st), -ENOENT);
	CL_ERR(shmp_pool_resize(p, 4), -ENOENT);
	CL_ERR(shmp_pool_open(c, "api.pool", &dup), -ENOENT);
	CL_ERR(shmp_pool_destroy(c, "api.pool"), -ENOENT);

	/* a stale handle never reaches the pool recreated in its place, whose
	 * elements this thread's magazine now caches (the fast paths) */
	CL_OK(shmp_pool_create(c, "api.pool", 100, 1, &dup));
	for (unsigned i = 0; i < 4; i++)
		e[i] = shmp_pool_alloc(dup, 0);
	for (unsigned i = 0; i < 4; i++)
		CL_OK(shmp_pool_free(dup, e[i]));
	one = shmp_pool_alloc(dup, 0);
	assert_non_null(one);
	CL_NULL(shmp_pool_alloc(p, 0), ENOENT);
	CL_NULL(shmp_pool_alloc(p2, SHMP_NOWAIT), ENOENT);
	CL_ERR(shmp_pool_free(p, one), -ENOENT);
	CL_ERR(shmp_pool_free(p2, one), -ENOENT);
	CL_OK(shmp_pool_stats(dup, &st));
	assert_int_equal(st.nr_out, 1); /* still out: the stale frees changed nothing */
	CL_OK(shmp_pool_free(dup, one));
	CL_ERR(shmp_pool_free(dup, one), -EINVAL); /* and it was freed once */
	shmp_pool_close(dup);
	CL_OK(shmp_pool_destroy(c, "api.pool"));

	shmp_pool_close(p);
	shmp_pool_close(p2);
	shmp_pool_close(NULL);

	/* a new pool of the same name is another pool */
	CL_OK(shmp_pool_create(c, "api.pool", 24, 1, &p));
	one = shmp_pool_alloc(p, 0);
	assert_non_null(one);
	CL_OK(shmp_pool_free(p, one));
	shmp_pool_close(p);
	CL_OK(shmp_pool_destroy(c, "api.pool"));
	cl_check(c);
	shmp_disconnect(c);
}

static void test_pool_options(void **state)
{
	struct cl_daemon *d = *state;
	shmp_client *c = cl_connect(d, "api-opts");
	struct shmp_pool_opts pages = { .backing = SHMP_BACKING_PAGES };
	struct shmp_pool_opts capped = { .max_nr = 4, .flags = SHMP_POOL_RECLAIM_ON_EXIT };
	struct shmp_pool_opts dbg = { .debug = SHMP_DEBUG_POISON | SHMP_DEBUG_REDZONE,
				      .align = 64, .mode = 0644 };
	struct shmp_pool_stats st;
	shmp_pool *p;
	void *e[5];

	/* page-backed: whole blocks */
	CL_OK(shmp_pool_create_ex(c, "api.pages", 10000, 2, &pages, &p));
	for (unsigned i = 0; i < 5; i++) {
		e[i] = shmp_pool_alloc(p, 0);
		assert_non_null(e[i]);
		assert_int_equal(shmp_off(c, e[i]) % 4096, 0);
		fill(e[i], 10000, i);
	}
	for (unsigned i = 0; i < 5; i++) {
		assert_true(filled(e[i], 10000, i));
		CL_OK(shmp_pool_free(p, e[i]));
	}
	shmp_pool_close(p);
	CL_OK(shmp_pool_destroy(c, "api.pages"));

	/* on the kmalloc class of its size, shared with shmp_malloc() */
	{
		struct shmp_pool_opts kopts = { .backing = SHMP_BACKING_KMALLOC, .max_nr = 6 };
		struct shmp_pool_opts bad = { .backing = SHMP_BACKING_KMALLOC };
		shmp_pool *q;
		void *m = shmp_malloc(c, 100), *other = shmp_malloc(c, 64), *six;

		assert_non_null(m);
		assert_non_null(other);
		CL_OK(shmp_pool_create_ex(c, "api.kmalloc", 100, 2, &kopts, &p));
		CL_OK(shmp_pool_open(c, "api.kmalloc", &q));
		for (unsigned i = 0; i < 5; i++) {
			e[i] = shmp_pool_alloc(i % 2 ? q : p, SHMP_NOWAIT);
			assert_non_null(e[i]);
			assert_ptr_not_equal(e[i], m);
			fill(e[i], 100, i);
		}
		CL_OK(shmp_pool_stats(p, &st));
		assert_int_equal(st.nr_out, 5);
		assert_int_equal(st.curr_nr, 1); /* 4 from the class: max_nr 6, then the reserve */
		six = shmp_pool_alloc(q, SHMP_NOWAIT);
		assert_non_null(six);
		CL_NULL(shmp_pool_alloc(p, SHMP_NOWAIT), ENOMEM);
		CL_OK(shmp_pool_free(p, six));
		/* what is not an object of its class is refused */
		CL_ERR(shmp_pool_free(p, other), -EINVAL);
		assert_non_null(strstr(shmp_errmsg(), "not an element of pool api.kmalloc"));
		CL_ERR(shmp_pool_destroy(c, "api.kmalloc"), -EBUSY);
		for (unsigned i = 0; i < 5; i++) {
			assert_true(filled(e[i], 100, i));
			CL_OK(shmp_pool_free(i % 2 ? p : q, e[i]));
		}
		CL_OK(shmp_pool_stats(q, &st));
		assert_int_equal(st.nr_out, 0);
		assert_int_equal(st.curr_nr, 2);
		assert_int_equal(st.nr_bad_free, 1);
		/* nothing out: an object of the class is not one of its elements */
		CL_ERR(shmp_pool_free(p, m), -EINVAL);
		assert_non_null(strstr(shmp_errmsg(), "no elements out"));
		shmp_free(c, m);
		shmp_free(c, other);
		shmp_pool_close(q);
		shmp_pool_close(p);
		CL_OK(shmp_pool_destroy(c, "api.kmalloc"));
		/* refused: larger than a class, reclaim-on-exit, debug flags */
		CL_ERR(shmp_pool_create_ex(c, "api.kbad", 9000, 1, &bad, &p), -EINVAL);
		bad.flags = SHMP_POOL_RECLAIM_ON_EXIT;
		CL_ERR(shmp_pool_create_ex(c, "api.kbad", 64, 1, &bad, &p), -EINVAL);
		assert_non_null(strstr(shmp_errmsg(), "reclaim-on-exit"));
		bad.flags = 0;
		bad.debug = SHMP_DEBUG_POISON;
		CL_ERR(shmp_pool_create_ex(c, "api.kbad", 64, 1, &bad, &p), -EINVAL);
		cl_check(c);
	}

	/* max_nr: out + reserve never above 4 */
	CL_OK(shmp_pool_create_ex(c, "api.capped", 64, 2, &capped, &p));
	for (unsigned i = 0; i < 4; i++)
		assert_non_null(e[i] = shmp_pool_alloc(p, SHMP_NOWAIT));
	CL_NULL(shmp_pool_alloc(p, SHMP_NOWAIT), ENOMEM);
	CL_NULL(shmp_pool_alloc_timeout(p, 0), ETIMEDOUT);
	CL_NULL(shmp_pool_alloc_timeout(p, 20), ETIMEDOUT);
	assert_int_equal(shmp_pool_alloc_bulk(p, SHMP_NOWAIT, e + 4, 1), -ENOMEM);
	CL_OK(shmp_pool_stats(p, &st));
	assert_int_equal(st.max_nr, 4);
	assert_int_equal(st.nr_out, 4);
	assert_int_equal(st.curr_nr, 0);
	assert_true(st.nr_reserve_alloc >= 2);
	assert_true(st.nr_fail >= 3);
	CL_OK(shmp_pool_free_bulk(p, e, 4));
	shmp_pool_close(p);
	CL_OK(shmp_pool_destroy(c, "api.capped"));

	/* debug flags and alignment */
	CL_OK(shmp_pool_create_ex(c, "api.debug", 40, 3, &dbg, &p));
	for (unsigned i = 0; i < 5; i++) {
		e[i] = shmp_pool_alloc(p, 0);
		assert_non_null(e[i]);
		assert_int_equal((uintptr_t)e[i] % 64, 0);
		fill(e[i], 40, i);
	}
	CL_OK(shmp_pool_free_bulk(p, e, 5));
	shmp_pool_close(p);
	CL_OK(shmp_pool_destroy(c, "api.debug"));
	cl_check(c);
	shmp_disconnect(c);
}

static void test_cache(void **state)
{
	struct cl_daemon *d = *state;
	shmp_client *c = cl_connect(d, "api-cache");
	struct shmp_cache_opts dbg = { .debug = SHMP_DEBUG_POISON | SHMP_DEBUG_REDZONE };
	struct shmp_cache_stats st;
	unsigned char tmpl[48];
	shmp_cache *k, *k2, *dup = NULL;
	void *o[100];

	fill(tmpl, sizeof(tmpl), 99);
	CL_OK(shmp_cache_create(c, "api.cache", sizeof(tmpl), 16, tmpl, &k));
	CL_ERR(shmp_cache_create(c, "api.cache", 8, 0, NULL, &dup), -EEXIST);
	assert_null(dup);
	CL_OK(shmp_cache_open(c, "api.cache", &k2));
	for (unsigned i = 0; i < 100; i++) {
		o[i] = shmp_cache_alloc(k, i % 2 ? SHMP_NOWAIT : 0);
		assert_non_null(o[i]);
		assert_int_equal((uintptr_t)o[i] % 16, 0);
		assert_true(filled(o[i], sizeof(tmpl), 99)); /* fresh slabs: the template */
	}
	{
		void *bulk[30];

		assert_int_equal(shmp_cache_alloc_bulk(k2, 0, bulk, 30), 30);
		for (unsigned i = 0; i < 30; i++)
			assert_true(filled(bulk[i], sizeof(tmpl), 99));
		CL_OK(shmp_cache_free_bulk(k, bulk, 30));
	}
	CL_OK(shmp_cache_stats(k2, &st));
	assert_int_equal(st.obj_size, 48);
	assert_int_equal(st.active_objs, 100);
	assert_true(st.total_objs >= 100 && st.nr_slabs >= 1);
	CL_ERR(shmp_cache_destroy(c, "api.cache"), -EBUSY);
	for (unsigned i = 0; i < 100; i++)
		CL_OK(shmp_cache_free(i % 2 ? k : k2, o[i]));
	CL_OK(shmp_cache_stats(k, &st));
	assert_int_equal(st.active_objs, 0);
	assert_int_equal(st.nr_alloc, 130);
	assert_int_equal(st.nr_free, 130);
	CL_OK(shmp_cache_destroy(c, "api.cache"));
	CL_NULL(shmp_cache_alloc(k, 0), ENOENT);
	CL_ERR(shmp_cache_free(k2, o[0]), -ENOENT);
	CL_ERR(shmp_cache_stats(k, &st), -ENOENT);
	CL_ERR(shmp_cache_open(c, "api.cache", &dup), -ENOENT);
	shmp_cache_close(k);
	shmp_cache_close(k2);
	shmp_cache_close(NULL);

	CL_OK(shmp_cache_create_ex(c, "api.cache.dbg", 100, 0, NULL, &dbg, &k));
	for (unsigned i = 0; i < 10; i++) {
		o[i] = shmp_cache_alloc(k, 0);
		assert_non_null(o[i]);
		fill(o[i], 100, i);
	}
	for (unsigned i = 0; i < 10; i++)
		CL_OK(shmp_cache_free(k, o[i]));
	shmp_cache_close(k);
	CL_OK(shmp_cache_destroy(c, "api.cache.dbg"));
	cl_check(c);
	shmp_disconnect(c);
}

static void test_malloc_and_offsets(void **state)
{
	static const size_t sizes[] = { 1, 7, 8, 100, 1000, 8192, 8193, 20000, 100000, 1u << 20 };
	struct cl_daemon *d = *state;
	shmp_client *c = cl_connect(d, "api-malloc");
	struct shmp_segment_stats st;
	void *p[10], *z;
	int local;

	for (unsigned i = 0; i < 10; i++) {
		p[i] = shmp_malloc(c, sizes[i]);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % 8, 0);
		assert_true(shmp_malloc_usable_size(c, p[i]) >= sizes[i]);
		fill(p[i], sizes[i], i);
	}
	for (unsigned i = 0; i < 10; i++) {
		shmp_off_t off = shmp_off(c, p[i]);

		assert_true(off > 0 && off < (16u << 20));
		assert_ptr_equal(shmp_ptr(c, off), p[i]);
		/* any byte of the segment converts */
		assert_int_equal(shmp_off(c, (char *)p[i] + sizes[i] - 1), off + sizes[i] - 1);
		assert_true(filled(p[i], sizes[i], i));
		CL_OK(shmp_free_checked(c, p[i]));
	}

	/* calloc zeroes, even memory a previous user dirtied */
	z = shmp_malloc(c, 512);
	assert_non_null(z);
	memset(z, 0xa5, 512);
	shmp_free(c, z);
	z = shmp_calloc(c, 16, 32);
	assert_non_null(z);
	for (unsigned i = 0; i < 512; i++)
		assert_int_equal(((unsigned char *)z)[i], 0);
	shmp_free(c, z);
	shmp_free(c, NULL);
	CL_OK(shmp_free_checked(c, NULL));

	/* NULL converts to 0 and back; outside the segment is refused */
	assert_int_equal(shmp_off(c, NULL), 0);
	assert_null(shmp_ptr(c, 0));
	errno = 0;
	assert_int_equal(shmp_off(c, &local), 0);
	assert_int_equal(errno, EINVAL);
	CL_OK(shmp_segment_stats(c, &st));
	CL_NULL(shmp_ptr(c, st.size), EINVAL);
	CL_NULL(shmp_ptr(c, UINT64_MAX), EINVAL);
	assert_non_null(shmp_ptr(c, st.size - 1));
	cl_check(c);
	shmp_disconnect(c);
}

static void test_errors(void **state)
{
	(void)state;
	assert_string_equal(shmp_strerror(-ENOMEM), "out of memory in the segment");
	assert_string_equal(shmp_strerror(ENOMEM), "out of memory in the segment");
	assert_string_equal(shmp_strerror(0), "success");
	assert_string_equal(shmp_strerror(-ECHILD), "handle inherited across fork");
	assert_non_null(shmp_strerror(-ESTALE));
	assert_non_null(shmp_strerror(-12345));
	assert_string_equal(shmp_err_name(-EEXIST), "EEXIST");
	assert_string_equal(shmp_err_name(-ECHILD), "ECHILD");
	assert_string_equal(shmp_err_name(-ECONNREFUSED), "ECONNREFUSED");
	assert_string_equal(shmp_err_name(0), "OK");
	assert_string_equal(shmp_err_name(-12345), "EUNKNOWN");
	/* the message names what failed */
	assert_int_equal(shmp_pool_open(NULL, "x", NULL), -EINVAL);
	assert_non_null(strstr(shmp_errmsg(), "NULL"));
}

/* ---- many threads, one session ------------------------------------------------- */

struct thr {
	shmp_client *c;
	shmp_pool *p;
	int id;
	int bad;
};

static void *thread_main(void *arg)
{
	struct thr *t = arg;
	void *held[16] = { 0 };
	char name[32];

	for (int i = 0; i < 3000; i++) {
		unsigned k = (unsigned)(i * 7 + t->id) % 16;

		if (held[k]) {
			if (((uint32_t *)held[k])[0] != (uint32_t)(t->id << 16 | k))
				t->bad++;
			if ((k & 1 ? shmp_pool_free(t->p, held[k])
				   : shmp_free_checked(t->c, held[k])) != 0)
				t->bad++;
			held[k] = NULL;
		} else {
			held[k] = k & 1 ? shmp_pool_alloc(t->p, 0) : shmp_malloc(t->c, 24 + k);
			if (!held[k])
				t->bad++;
			else
				((uint32_t *)held[k])[0] = (uint32_t)(t->id << 16 | k);
		}
		if (i % 500 == 0) { /* control calls interleave with the data path */
			shmp_pool *q;
			unsigned n;

			snprintf(name, sizeof(name), "thr.%d.%d", t->id, i);
			if (shmp_pool_create(t->c, name, 16, 1, &q) != 0)
				t->bad++;
			else
				shmp_pool_close(q);
			if (shmp_pool_destroy(t->c, name) != 0)
				t->bad++;
			if (shmp_check(t->c, &n) != 0 || n)
				t->bad++;
		}
	}
	for (unsigned k = 0; k < 16; k++)
		if (held[k] && (k & 1 ? shmp_pool_free(t->p, held[k])
				      : shmp_free_checked(t->c, held[k])) != 0)
			t->bad++;
	return NULL;
}

static void test_threads(void **state)
{
	struct cl_daemon *d = *state;
	shmp_client *c = cl_connect(d, "api-threads");
	struct shmp_pool_stats st;
	struct thr t[6];
	pthread_t tid[6];
	shmp_pool *p;

	CL_OK(shmp_pool_create(c, "api.threads", 32, 4, &p));
	for (int i = 0; i < 6; i++) {
		t[i] = (struct thr){ .c = c, .p = p, .id = i };
		assert_int_equal(pthread_create(&tid[i], NULL, thread_main, &t[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(tid[i], NULL);
		assert_int_equal(t[i].bad, 0);
	}
	CL_OK(shmp_pool_stats(p, &st));
	assert_int_equal(st.nr_out, 0);
	assert_int_equal(st.nr_alloc, st.nr_free);
	shmp_pool_close(p);
	CL_OK(shmp_pool_destroy(c, "api.threads"));
	cl_check(c);
	shmp_disconnect(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errors),
		cmocka_unit_test_setup_teardown(test_sessions, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_pool, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_pool_options, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_cache, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_malloc_and_offsets, cl_setup, cl_teardown),
		cmocka_unit_test_setup_teardown(test_threads, cl_setup, cl_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
