/* SPDX-License-Identifier: MIT */
/*
 * test-daemon-ops.c - every operation's happy path at the protocol level:
 * PoolCreate/Open/Resize/Destroy, CacheCreate/Open/Destroy, List, Stats,
 * Check, Reclaim, Goodbye; what the replies say matches what a client sees
 * in its own mapping of the segment.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon-util.h"
#include "magazine.h"

struct ctx {
	struct td_daemon d;
	struct td_client c;
};

static int setup(void **state)
{
	static struct ctx x;

	td_init(&x.d);
	td_start(&x.d, NULL);
	td_client_open(&x.c, &x.d, "ops");
	*state = &x;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *x = *state;

	td_check_clean(x->c.fd);
	td_client_close(&x->c, true);
	assert_int_equal(td_stop(&x->d), 0);
	td_cleanup(&x->d);
	return 0;
}

static void pools(void **state)
{
	struct ctx *x = *state;
	Shmpool__PoolCreate pc = SHMPOOL__POOL_CREATE__INIT;
	Shmpool__Response *r;
	struct sp_pool *p;
	sp_off_t el[5];
	uint32_t id, gen;

	pc.name = "ops.pool";
	pc.elem_size = 128;
	pc.min_nr = 16;
	pc.mode = 0640;
	r = td_pool_create_ex(x->c.fd, &pc);
	TD_EXPECT(r, 0);
	assert_int_equal(r->payload_case, SHMPOOL__RESPONSE__PAYLOAD_POOL);
	assert_string_equal(r->pool->name, "ops.pool");
	assert_int_equal(r->pool->elem_size, 128);
	assert_int_equal(r->pool->min_nr, 16);
	assert_int_equal(r->pool->curr_nr, 16);
	assert_int_equal(r->pool->nr_out, 0);
	assert_int_equal(r->pool->creator_uid, getuid());
	assert_int_equal(r->pool->mode, 0640);
	id = r->pool->id;
	gen = r->pool->gen;
	td_free(r);

	/* the id and gen find the pool in the client's own mapping */
	p = sp_pool_get(x->c.seg, id);
	assert_non_null(p);
	assert_int_equal(p->gen, gen);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(sp_pool_alloc(x->c.seg, p, SP_ALLOC_NOWAIT, 0, &el[i]), 0);
		memset(sp_ptr(x->c.seg, el[i]), 0x40 + i, 128);
	}

	r = td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_POOL_OPEN, "ops.pool");
	TD_EXPECT(r, 0);
	assert_int_equal(r->pool->id, id);
	assert_int_equal(r->pool->gen, gen);
	assert_int_equal(r->pool->nr_out, 5);
	assert_int_equal(r->pool->nr_alloc, 5);
	td_free(r);

	r = td_pool_resize(x->c.fd, "ops.pool", 32);
	TD_EXPECT(r, 0);
	assert_int_equal(r->pool->min_nr, 32);
	assert_int_equal(r->pool->curr_nr, 32);
	td_free(r);
	r = td_pool_resize(x->c.fd, "ops.pool", 4);
	TD_EXPECT(r, 0);
	assert_int_equal(r->pool->min_nr, 4);
	assert_int_equal(r->pool->curr_nr, 4);
	td_free(r);

	/* a name taken, a pool with elements out */
	TD_EXPECT_FREE(td_pool_create(x->c.fd, "ops.pool", 64, 1, 0), -EEXIST);
	TD_EXPECT_FREE(td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, "ops.pool"),
		       -EBUSY);
	for (int i = 0; i < 5; i++) {
		for (int b = 0; b < 128; b++)
			assert_int_equal(((uint8_t *)sp_ptr(x->c.seg, el[i]))[b], 0x40 + i);
		assert_int_equal(sp_pool_free(x->c.seg, p, el[i]), 0);
	}
	TD_EXPECT_FREE(td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, "ops.pool"), 0);
	TD_EXPECT_FREE(td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_POOL_OPEN, "ops.pool"), -ENOENT);
	TD_EXPECT_FREE(td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, "ops.pool"),
		       -ENOENT);
	TD_EXPECT_FREE(td_pool_resize(x->c.fd, "ops.pool", 1), -ENOENT);

	/* a page-backed pool, capped */
	pc = (Shmpool__PoolCreate)SHMPOOL__POOL_CREATE__INIT;
	pc.name = "ops.pages";
	pc.elem_size = 8192;
	pc.min_nr = 2;
	pc.max_nr = 3;
	pc.backing = 1;
	r = td_pool_create_ex(x->c.fd, &pc);
	TD_EXPECT(r, 0);
	assert_int_equal(r->pool->backing, 1);
	assert_int_equal(r->pool->max_nr, 3);
	p = sp_pool_get(x->c.seg, r->pool->id);
	td_free(r);
	assert_non_null(p);
	assert_int_equal(sp_pool_alloc(x->c.seg, p, SP_ALLOC_NOWAIT, 0, &el[0]), 0);
	assert_int_equal(sp_pool_free(x->c.seg, p, el[0]), 0);
	TD_EXPECT_FREE(td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, "ops.pages"), 0);
}

static void caches(void **state)
{
	struct ctx *x = *state;
	Shmpool__Response *r;
	struct sp_cache *c;
	uint8_t tmpl[100];
	sp_off_t obj;
	uint32_t id;

	for (unsigned i = 0; i < sizeof(tmpl); i++)
		tmpl[i] = (uint8_t)(i * 7);
	r = td_cache_create(x->c.fd, "ops.cache", sizeof(tmpl), tmpl, sizeof(tmpl));
	TD_EXPECT(r, 0);
	assert_int_equal(r->payload_case, SHMPOOL__RESPONSE__PAYLOAD_CACHE);
	assert_string_equal(r->cache->name, "ops.cache");
	assert_int_equal(r->cache->obj_size, sizeof(tmpl));
	assert_int_equal(r->cache->creator_uid, getuid());
	assert_int_equal(r->cache->mode, 0600);
	assert_false(r->cache->kmalloc);
	id = r->cache->id;
	td_free(r);
	TD_EXPECT_FREE(td_cache_create(x->c.fd, "ops.cache", 8, NULL, 0), -EEXIST);

	r = td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_CACHE_OPEN, "ops.cache");
	TD_EXPECT(r, 0);
	assert_int_equal(r->cache->id, id);
	c = sp_cache_get(x->c.seg, id);
	assert_non_null(c);
	assert_int_equal(c->gen, r->cache->gen);
	td_free(r);

	/* objects come with the template */
	assert_int_equal(sp_cache_alloc(x->c.seg, c, x->c.seg->owner, &obj), 0);
	assert_memory_equal(sp_ptr(x->c.seg, obj), tmpl, sizeof(tmpl));
	r = td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_CACHE_OPEN, "ops.cache");
	TD_EXPECT(r, 0);
	assert_int_equal(r->cache->active_objs, 1);
	td_free(r);
	TD_EXPECT_FREE(td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_CACHE_DESTROY, "ops.cache"),
		       -EBUSY);
	assert_int_equal(sp_cache_free(x->c.seg, c, obj), 0);
	TD_EXPECT_FREE(td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_CACHE_DESTROY, "ops.cache"), 0);
	TD_EXPECT_FREE(td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_CACHE_OPEN, "ops.cache"), -ENOENT);
	/* a cache without a template */
	TD_EXPECT_FREE(td_cache_create(x->c.fd, "ops.plain", 24, NULL, 0), 0);
	TD_EXPECT_FREE(td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_CACHE_DESTROY, "ops.plain"), 0);
}

static void list_and_stats(void **state)
{
	struct ctx *x = *state;
	Shmpool__Response *r;
	Shmpool__ClientInfo *me;
	bool found_pool = false, found_cache = false, found_kmalloc = false;
	struct sp_pool *p;
	sp_off_t el;

	TD_EXPECT_FREE(td_pool_create(x->c.fd, "ops.listed", 48, 3, 0), 0);
	TD_EXPECT_FREE(td_cache_create(x->c.fd, "ops.listed-cache", 40, NULL, 0), 0);
	p = td_client_pool(&x->c, "ops.listed");
	assert_int_equal(sp_pool_alloc(x->c.seg, p, SP_ALLOC_NOWAIT, 0, &el), 0);

	r = td_simple(x->c.fd, SHMPOOL__REQUEST__OP_LIST);
	TD_EXPECT(r, 0);
	assert_int_equal(r->payload_case, SHMPOOL__RESPONSE__PAYLOAD_LIST);
	for (size_t i = 0; i < r->list->n_pools; i++)
		found_pool |= strcmp(r->list->pools[i]->name, "ops.listed") == 0;
	for (size_t i = 0; i < r->list->n_caches; i++) {
		found_cache |= strcmp(r->list->caches[i]->name, "ops.listed-cache") == 0;
		assert_false(r->list->caches[i]->kmalloc); /* List names named caches only */
	}
	assert_true(found_pool);
	assert_true(found_cache);
	td_free(r);

	r = td_simple(x->c.fd, SHMPOOL__REQUEST__OP_STATS);
	TD_EXPECT(r, 0);
	assert_int_equal(r->payload_case, SHMPOOL__RESPONSE__PAYLOAD_STATS);
	assert_string_equal(r->stats->segment->name, x->d.shm);
	assert_int_equal(r->stats->segment->size, x->c.seg->size);
	assert_int_equal(r->stats->segment->nr_pages, x->c.seg->hdr->nr_pages);
	assert_int_equal(r->stats->segment->max_clients, x->c.seg->hdr->max_clients);
	assert_true(r->stats->segment->free_pages < r->stats->segment->nr_pages);
	assert_int_equal(r->stats->buddy->n_nr_free, x->c.seg->hdr->max_order + 1);
	for (size_t i = 0; i < r->stats->n_caches; i++)
		found_kmalloc |= r->stats->caches[i]->kmalloc;
	assert_true(found_kmalloc);
	assert_non_null(td_stats_pool(r, "ops.listed"));
	assert_int_equal(td_stats_pool(r, "ops.listed")->nr_out, 1);
	me = td_stats_client(r, x->c.slot);
	assert_non_null(me);
	assert_string_equal(me->state, "alive");
	assert_string_equal(me->name, "ops");
	assert_int_equal(me->pid, getpid());
	assert_true(me->connected);
	assert_int_equal(me->pool_elems, 1);
	assert_int_equal(me->objects, 1);
	td_free(r);

	assert_int_equal(sp_pool_free(x->c.seg, p, el), 0);
	TD_EXPECT_FREE(td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, "ops.listed"), 0);
	TD_EXPECT_FREE(td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_CACHE_DESTROY,
				  "ops.listed-cache"), 0);
}

/* Reclaim: a client says Goodbye holding elements; its slot stays dead with them. */
static void reclaim_and_goodbye(void **state)
{
	struct ctx *x = *state;
	struct td_client other;
	Shmpool__Response *r;
	Shmpool__ClientInfo *ci;
	struct sp_pool *p;
	sp_off_t el;
	uint32_t slot;

	TD_EXPECT_FREE(td_pool_create(x->c.fd, "ops.orphans", 64, 2, 0), 0);
	td_client_open(&other, &x->d, "leaver");
	slot = other.slot;
	p = td_client_pool(&other, "ops.orphans");
	for (int i = 0; i < 3; i++)
		assert_int_equal(sp_pool_alloc(other.seg, p, SP_ALLOC_NOWAIT, 0, &el), 0);
	TD_EXPECT_FREE(td_reclaim(x->c.fd, slot), -EBUSY); /* alive */
	td_client_close(&other, true); /* Goodbye while holding 3 */

	r = td_simple(x->c.fd, SHMPOOL__REQUEST__OP_STATS);
	TD_EXPECT(r, 0);
	ci = td_stats_client(r, slot);
	assert_non_null(ci);
	assert_string_equal(ci->state, "dead");
	assert_false(ci->connected);
	assert_int_equal(ci->pool_elems, 3);
	assert_int_equal(ci->bytes, 3 * 64);
	td_free(r);

	r = td_reclaim(x->c.fd, slot);
	TD_EXPECT(r, 0);
	assert_int_equal(r->payload_case, SHMPOOL__RESPONSE__PAYLOAD_RECLAIM);
	assert_int_equal(r->reclaim->pool_elems, 3);
	assert_int_equal(r->reclaim->objects, 3);
	td_free(r);
	r = td_simple(x->c.fd, SHMPOOL__REQUEST__OP_STATS);
	TD_EXPECT(r, 0);
	assert_null(td_stats_client(r, slot)); /* the slot is free again */
	assert_int_equal(td_stats_pool(r, "ops.orphans")->nr_out, 0);
	td_free(r);
	TD_EXPECT_FREE(td_reclaim(x->c.fd, slot), -ESRCH);
	TD_EXPECT_FREE(td_reclaim(x->c.fd, 1u << 30), -ESRCH);
	TD_EXPECT_FREE(td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, "ops.orphans"), 0);
}

/* The daemon's walk counters, from Stats. */
static void walks(int fd, uint64_t *walked, uint64_t *skipped, uint64_t *page_walks)
{
	Shmpool__Response *r = td_simple(fd, SHMPOOL__REQUEST__OP_STATS);

	TD_EXPECT(r, 0);
	*walked = r->stats->segment->nr_walk_caches;
	*skipped = r->stats->segment->nr_walk_skips;
	*page_walks = r->stats->segment->nr_walk_blocks;
	td_free(r);
}

/* The cache @name as client @c's mapping sees it. */
static struct sp_cache *client_cache(struct td_client *c, const char *name)
{
	uint32_t id;

	assert_int_equal(sp_cache_lookup(c->seg, name, &id), 0);
	return sp_cache_get(c->seg, id);
}

/*
 * Goodbye of a client that used a big cache another client fills, but
 * gave back all it took (through its magazine and the locked path): its
 * held bound is 0, so the daemon walks no cache for it, and no page
 * either: its magazine sets (one destroyed by the client, one left for
 * the daemon as an idle thread's would be) are found through its list.
 * One that says Goodbye holding an object is walked (and keeps its slot,
 * the object attributed to it).
 */
static void goodbye_after_use_walks_nothing(void **state)
{
	struct ctx *x = *state;
	struct td_client b;
	struct sp_cache *c = NULL;
	struct sp_magset *set;
	struct sp_mag *m;
	struct sp_magset *idle;
	uint64_t w0, k0, w1, k1, p0, p1;
	sp_off_t *v = malloc(200000 * sizeof(*v)), off;
	uint32_t slot;
	int n = 0, k;

	assert_non_null(v);
	TD_EXPECT_FREE(td_cache_create(x->c.fd, "ops.big", 64, NULL, 0), 0);
	c = client_cache(&x->c, "ops.big");
	assert_int_equal(sp_cache_lock(x->c.seg, c), 0);
	while (n < 200000 &&
	       (k = sp_cache_alloc_bulk_locked(x->c.seg, c, x->c.seg->owner, v + n, 200000 - n)) > 0)
		n += k;
	sp_cache_unlock(c);
	assert_int_equal(n, 200000);

	td_client_open(&b, &x->d, "short");
	slot = b.slot;
	c = client_cache(&b, "ops.big");
	assert_int_equal(sp_magset_create(b.seg, 1, &set), 0);
	assert_int_equal(sp_mag_bind(b.seg, set, c, &m), 0);
	assert_true(sp_mag_refill(b.seg, c, m) > 0);
	assert_true(sp_mag_pop(b.seg, c, m, &off));
	assert_int_equal(sp_mag_push(b.seg, c, m, off), SP_MAG_PUSHED);
	assert_int_equal(sp_cache_alloc(b.seg, c, b.seg->owner, &off), 0);
	assert_int_equal(sp_cache_free(b.seg, c, off), 0);
	assert_int_equal(sp_magset_create(b.seg, 2, &idle), 0); /* another thread's */
	sp_magset_destroy(b.seg, set); /* as the library does at disconnect */
	walks(x->c.fd, &w0, &k0, &p0);
	td_client_close(&b, true);
	walks(x->c.fd, &w1, &k1, &p1);
	assert_int_equal(w1 - w0, 0); /* the 200000 objects were not looked at */
	assert_true(k1 - k0 >= 1);
	assert_int_equal(p1 - p0, 0); /* nor the pages: the idle set went by its list */
	assert_int_equal(sp_clients(x->c.seg)[slot].state, SP_CLIENT_FREE);
	assert_int_equal(sp_clients(x->c.seg)[slot].mag_head, 0);

	td_client_open(&b, &x->d, "keeper");
	slot = b.slot;
	c = client_cache(&b, "ops.big");
	assert_int_equal(sp_cache_alloc(b.seg, c, b.seg->owner, &off), 0);
	td_client_close(&b, true);
	walks(x->c.fd, &w0, &k0, &p0);
	assert_true(w0 - w1 >= 1); /* walked, and the object found: */
	TD_EXPECT_FREE(td_reclaim(x->c.fd, slot), 0);

	c = client_cache(&x->c, "ops.big");
	for (int i = 0; i < n; i++)
		assert_int_equal(sp_cache_free(x->c.seg, c, v[i]), 0);
	free(v);
	TD_EXPECT_FREE(td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_CACHE_DESTROY, "ops.big"), 0);
}

/* More pools than one frame can list: List and Stats say what they left out. */
static void big_replies_fit_a_frame(void **state)
{
	struct ctx *x = *state;
	enum { N = 1000 }; /* of the 1024 pool slots; ~73 bytes each listed */
	Shmpool__Response *r;
	char name[80];

	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "a-rather-long-pool-name-to-fill-the-frame-quickly.%04d", i);
		TD_EXPECT_FREE(td_pool_create(x->c.fd, name, 8, 0, 0), 0);
	}
	r = td_simple(x->c.fd, SHMPOOL__REQUEST__OP_LIST);
	TD_EXPECT(r, 0);
	assert_true(r->list->n_pools > 100 && r->list->n_pools < N);
	assert_non_null(strstr(r->message, "truncated"));
	assert_true(shmpool__response__get_packed_size(r) <= 65536);
	td_free(r);
	r = td_simple(x->c.fd, SHMPOOL__REQUEST__OP_STATS);
	TD_EXPECT(r, 0);
	assert_true(r->stats->n_pools < N);
	assert_non_null(td_stats_client(r, x->c.slot)); /* the short lists survive */
	assert_non_null(strstr(r->message, "pools"));
	td_free(r);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "a-rather-long-pool-name-to-fill-the-frame-quickly.%04d", i);
		TD_EXPECT_FREE(td_name_op(x->c.fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, name), 0);
	}
	r = td_simple(x->c.fd, SHMPOOL__REQUEST__OP_LIST);
	TD_EXPECT(r, 0);
	assert_string_equal(r->message, "");
	td_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pools),
		cmocka_unit_test(caches),
		cmocka_unit_test(list_and_stats),
		cmocka_unit_test(reclaim_and_goodbye),
		cmocka_unit_test(goodbye_after_use_walks_nothing),
		cmocka_unit_test(big_replies_fit_a_frame),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
