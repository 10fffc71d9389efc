/* SPDX-License-Identifier: MIT */
/*
 * test-daemon-badinput.c - every bad input, sent as raw bytes: each gets
 * its documented error Response (or a close), and after each one the
 * daemon still serves a new, well-behaved client, and the pool a first
 * client filled is intact (elements out, their contents, a clean Check).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon-util.h"

#define NR_KEEP 7
#define KEEP_SIZE 96

struct ctx {
	struct td_daemon d;
	struct td_client keeper;	/* holds NR_KEEP elements of pool "keep" */
	struct sp_pool *keep;
	sp_off_t el[NR_KEEP];
};

static int setup(void **state)
{
	static struct ctx x;
	static const char *const args[] = { "--frame-timeout-ms", "300", NULL };

	td_init(&x.d);
	td_start(&x.d, args);
	td_client_open(&x.keeper, &x.d, "keeper");
	TD_EXPECT_FREE(td_pool_create(x.keeper.fd, "keep", KEEP_SIZE, 4, 0), 0);
	x.keep = td_client_pool(&x.keeper, "keep");
	for (int i = 0; i < NR_KEEP; i++) {
		assert_int_equal(sp_pool_alloc(x.keeper.seg, x.keep, SP_ALLOC_NOWAIT, 0, &x.el[i]),
				 0);
		memset(sp_ptr(x.keeper.seg, x.el[i]), 0xa0 + i, KEEP_SIZE);
	}
	*state = &x;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *x = *state;

	for (int i = 0; i < NR_KEEP; i++)
		assert_int_equal(sp_pool_free(x->keeper.seg, x->keep, x->el[i]), 0);
	TD_EXPECT_FREE(td_name_op(x->keeper.fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, "keep"), 0);
	td_check_clean(x->keeper.fd);
	td_client_close(&x->keeper, true);
	assert_int_equal(td_stop(&x->d), 0);
	td_cleanup(&x->d);
	return 0;
}

/* The daemon serves a new client, and "keep" is as the keeper left it. */
static void still_healthy(struct ctx *x)
{
	struct td_client c;
	Shmpool__Response *r;

	td_client_open(&c, &x->d, "second");
	r = td_name_op(c.fd, SHMPOOL__REQUEST__OP_POOL_OPEN, "keep");
	TD_EXPECT(r, 0);
	assert_int_equal(r->pool->nr_out, NR_KEEP);
	td_free(r);
	for (int i = 0; i < NR_KEEP; i++) {
		const uint8_t *p = sp_ptr(c.seg, x->el[i]);

		for (int b = 0; b < KEEP_SIZE; b++)
			assert_int_equal(p[b], 0xa0 + i);
	}
	td_check_clean(c.fd);
	td_client_close(&c, true);
	/* the keeper's own connection was never disturbed */
	TD_EXPECT_FREE(td_simple(x->keeper.fd, SHMPOOL__REQUEST__OP_LIST), 0);
}

/* Send one raw frame; expect one error Response, then (maybe) a close. */
static void expect_error(int fd, const void *payload, uint32_t len, int status, uint64_t id,
			 const char *needle, bool closes)
{
	Shmpool__Response *r;

	td_send_frame(fd, payload, len);
	r = td_recv(fd, NULL);
	TD_EXPECT(r, status);
	assert_int_equal(r->id, id);
	assert_int_equal(r->payload_case, SHMPOOL__RESPONSE__PAYLOAD__NOT_SET);
	if (needle && !strstr(r->message, needle))
		fail_msg("message \"%s\" lacks \"%s\"", r->message, needle);
	td_free(r);
	if (closes)
		assert_true(td_closed_by_peer(fd));
}

static void malformed_protobuf(void **state)
{
	static const uint8_t bad_wire_type[] = { 0x0f };	   /* field 1, wire type 7 */
	static const uint8_t short_submsg[] = { 0x52, 0x7f, 0x01 }; /* hello: 127 of 1 byte */
	static const uint8_t bad_varint[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
					      0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	const uint8_t *cases[] = { bad_wire_type, short_submsg, bad_varint };
	const uint32_t lens[] = { sizeof(bad_wire_type), sizeof(short_submsg),
				  sizeof(bad_varint) };

	for (unsigned i = 0; i < 3; i++) {
		int fd = td_connect(((struct ctx *)*state)->d.sock);

		/* before and after Hello alike */
		if (i == 1) {
			int segfd;

			TD_EXPECT_FREE(td_hello(fd, "soon-malformed", &segfd), 0);
			close(segfd);
		}
		expect_error(fd, cases[i], lens[i], -EPROTO, 0, "malformed", true);
		close(fd);
	}
	still_healthy(*state);
}

static void unknown_operation(void **state)
{
	static const uint8_t no_op[] = { 0x08, 0x2a };		     /* id 42, no op */
	static const uint8_t unknown_varint[] = { 0x08, 0x07, 0x98, 0x06, 0x01 }; /* field 99 */
	static const uint8_t unknown_bytes[] = { 0x08, 0x09, 0xf2, 0x01, 0x02, 'a', 'b' };
	struct ctx *x = *state;
	int fd = td_connect(x->d.sock), segfd;

	expect_error(fd, no_op, sizeof(no_op), -EOPNOTSUPP, 42, "unknown operation", false);
	expect_error(fd, unknown_varint, sizeof(unknown_varint), -EOPNOTSUPP, 7,
		     "unknown operation", false);
	expect_error(fd, unknown_bytes, sizeof(unknown_bytes), -EOPNOTSUPP, 9,
		     "unknown operation", false);
	expect_error(fd, NULL, 0, -EOPNOTSUPP, 0, "unknown operation", false); /* empty */
	/* the connection is still good */
	TD_EXPECT_FREE(td_hello(fd, "after-unknown", &segfd), 0);
	close(segfd);
	expect_error(fd, unknown_varint, sizeof(unknown_varint), -EOPNOTSUPP, 7,
		     "unknown operation", false);
	TD_EXPECT_FREE(td_simple(fd, SHMPOOL__REQUEST__OP_GOODBYE), 0);
	assert_true(td_closed_by_peer(fd));
	close(fd);
	still_healthy(x);
}

static void truncated_frame_then_close(void **state)
{
	struct ctx *x = *state;
	uint8_t partial[4 + 10] = { 0, 0, 0, 100 };
	int fd;

	/* a header announcing 100 bytes, 10 sent, then the client goes away */
	fd = td_connect(x->d.sock);
	td_send_raw(fd, partial, sizeof(partial));
	shutdown(fd, SHUT_WR);
	assert_true(td_closed_by_peer(fd)); /* closed without a response */
	close(fd);
	/* half a header */
	fd = td_connect(x->d.sock);
	td_send_raw(fd, partial, 2);
	shutdown(fd, SHUT_WR);
	assert_true(td_closed_by_peer(fd));
	close(fd);
	/* a helloed client dying in the middle of a frame is a dead client */
	{
		int segfd;

		fd = td_connect(x->d.sock);
		TD_EXPECT_FREE(td_hello(fd, "truncator", &segfd), 0);
		close(segfd);
		td_send_raw(fd, partial, sizeof(partial));
		close(fd);
	}
	still_healthy(x);
}

static void oversized_length(void **state)
{
	struct ctx *x = *state;
	static const uint8_t just_over[4] = { 0x00, 0x01, 0x00, 0x01 }; /* 65537 */
	static const uint8_t huge[8] = { 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4 };
	const uint8_t *cases[] = { just_over, huge };
	Shmpool__Response *r;

	for (unsigned i = 0; i < 2; i++) {
		int fd = td_connect(x->d.sock);

		td_send_raw(fd, cases[i], i ? sizeof(huge) : sizeof(just_over));
		r = td_recv(fd, NULL);
		TD_EXPECT(r, -EMSGSIZE);
		assert_non_null(strstr(r->message, "65536"));
		td_free(r);
		assert_true(td_closed_by_peer(fd));
		close(fd);
	}
	/* exactly 65536 bytes is allowed: a Request with a long unknown field */
	{
		uint8_t *big = calloc(1, 65536);
		int fd = td_connect(x->d.sock);

		/* field 99, length-delimited (0x9a 0x06), length 65531 (0xfb 0xff 0x03) */
		big[0] = 0x9a;
		big[1] = 0x06;
		big[2] = 0xfb;
		big[3] = 0xff;
		big[4] = 0x03;
		expect_error(fd, big, 65536, -EOPNOTSUPP, 0, "unknown operation", false);
		free(big);
		close(fd);
	}
	still_healthy(x);
}

static void frame_split_over_many_writes(void **state)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__Hello h = SHMPOOL__HELLO__INIT;
	struct ctx *x = *state;
	Shmpool__Response *r;
	uint8_t buf[256], two[512];
	size_t n;
	int fd, segfd;

	h.protocol_version = TD_PROTOCOL_VERSION;
	h.client_name = "dribbler";
	q.id = 77;
	q.op_case = SHMPOOL__REQUEST__OP_HELLO;
	q.hello = &h;
	n = shmpool__request__get_packed_size(&q);
	buf[0] = buf[1] = buf[2] = 0;
	buf[3] = (uint8_t)n;
	shmpool__request__pack(&q, buf + 4);
	fd = td_connect(x->d.sock);
	for (size_t i = 0; i < 4 + n; i++) {
		td_send_raw(fd, buf + i, 1);
		usleep(1000); /* let the daemon see each byte on its own */
	}
	r = td_recv(fd, &segfd);
	TD_EXPECT(r, 0);
	assert_int_equal(r->id, 77);
	assert_true(segfd >= 0); /* the fd still rides on the reassembled frame's reply */
	close(segfd);
	td_free(r);

	/* two requests in one write: two responses, in order */
	{
		Shmpool__Stats st = SHMPOOL__STATS__INIT;
		Shmpool__List li = SHMPOOL__LIST__INIT;
		size_t a, b;

		q = (Shmpool__Request)SHMPOOL__REQUEST__INIT;
		q.id = 1001;
		q.op_case = SHMPOOL__REQUEST__OP_STATS;
		q.stats = &st;
		a = shmpool__request__pack(&q, two + 4);
		two[0] = two[1] = 0;
		two[2] = (uint8_t)(a >> 8);
		two[3] = (uint8_t)a;
		q.id = 1002;
		q.op_case = SHMPOOL__REQUEST__OP_LIST;
		q.list = &li;
		b = shmpool__request__pack(&q, two + 8 + a);
		two[4 + a] = two[5 + a] = 0;
		two[6 + a] = (uint8_t)(b >> 8);
		two[7 + a] = (uint8_t)b;
		td_send_raw(fd, two, 8 + a + b);
		r = td_recv(fd, NULL);
		TD_EXPECT(r, 0);
		assert_int_equal(r->id, 1001);
		assert_int_equal(r->payload_case, SHMPOOL__RESPONSE__PAYLOAD_STATS);
		td_free(r);
		r = td_recv(fd, NULL);
		TD_EXPECT(r, 0);
		assert_int_equal(r->id, 1002);
		assert_int_equal(r->payload_case, SHMPOOL__RESPONSE__PAYLOAD_LIST);
		td_free(r);
	}
	TD_EXPECT_FREE(td_simple(fd, SHMPOOL__REQUEST__OP_GOODBYE), 0);
	close(fd);
	still_healthy(x);
}

static void idle_partial_frame(void **state)
{
	struct ctx *x = *state;
	static const uint8_t partial[] = { 0, 0, 0, 20, 0x08 };
	int fd = td_connect(x->d.sock);

	td_send_raw(fd, partial, sizeof(partial));
	/* --frame-timeout-ms 300: the daemon closes; the receive timeout is 10 s */
	assert_true(td_closed_by_peer(fd));
	close(fd);
	still_healthy(x);
}

static void request_before_hello(void **state)
{
	struct ctx *x = *state;
	Shmpool__Response *r;
	int fd = td_connect(x->d.sock), segfd;

	r = td_name_op(fd, SHMPOOL__REQUEST__OP_POOL_OPEN, "keep");
	TD_EXPECT(r, -EPROTO);
	assert_non_null(strstr(r->message, "Hello first"));
	td_free(r);
	TD_EXPECT_FREE(td_pool_create(fd, "sneaky", 8, 1, 0), -EPROTO);
	TD_EXPECT_FREE(td_simple(fd, SHMPOOL__REQUEST__OP_STATS), -EPROTO);
	TD_EXPECT_FREE(td_simple(fd, SHMPOOL__REQUEST__OP_GOODBYE), -EPROTO);
	TD_EXPECT_FREE(td_reclaim(fd, 0), -EPROTO);
	/* nothing was created, and the connection can still say Hello */
	TD_EXPECT_FREE(td_hello(fd, "late", &segfd), 0);
	close(segfd);
	TD_EXPECT_FREE(td_name_op(fd, SHMPOOL__REQUEST__OP_POOL_OPEN, "sneaky"), -ENOENT);
	TD_EXPECT_FREE(td_simple(fd, SHMPOOL__REQUEST__OP_GOODBYE), 0);
	close(fd);
	still_healthy(x);
}

static void invalid_names(void **state)
{
	struct ctx *x = *state;
	char longname[80], huge[300];
	int fd = x->keeper.fd;

	memset(longname, 'a', 64);
	longname[64] = '\0';
	memset(huge, 'b', 299);
	huge[299] = '\0';
	TD_EXPECT_FREE(td_pool_create(fd, "", 8, 1, 0), -EINVAL);
	TD_EXPECT_FREE(td_pool_create(fd, "a/b", 8, 1, 0), -EINVAL);
	TD_EXPECT_FREE(td_pool_create(fd, "sp ace", 8, 1, 0), -EINVAL);
	TD_EXPECT_FREE(td_pool_create(fd, "\x01x", 8, 1, 0), -EINVAL);
	TD_EXPECT_FREE(td_pool_create(fd, "caf\xc3\xa9", 8, 1, 0), -EINVAL);
	TD_EXPECT_FREE(td_pool_create(fd, longname, 8, 1, 0), -ENAMETOOLONG);
	longname[63] = '\0'; /* 63 is the longest allowed */
	TD_EXPECT_FREE(td_pool_create(fd, longname, 8, 1, 0), 0);
	TD_EXPECT_FREE(td_name_op(fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, longname), 0);
	TD_EXPECT_FREE(td_cache_create(fd, "bad name", 8, NULL, 0), -EINVAL);
	TD_EXPECT_FREE(td_cache_create(fd, huge, 8, NULL, 0), -ENAMETOOLONG);
	TD_EXPECT_FREE(td_name_op(fd, SHMPOOL__REQUEST__OP_POOL_OPEN, "../etc"), -EINVAL);
	TD_EXPECT_FREE(td_name_op(fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, ""), -EINVAL);
	TD_EXPECT_FREE(td_name_op(fd, SHMPOOL__REQUEST__OP_CACHE_OPEN, huge), -ENAMETOOLONG);
	TD_EXPECT_FREE(td_name_op(fd, SHMPOOL__REQUEST__OP_CACHE_DESTROY, "x\ty"), -EINVAL);
	TD_EXPECT_FREE(td_pool_resize(fd, "no/such", 3), -EINVAL);
	still_healthy(x);
}

static void bad_sizes(void **state)
{
	struct ctx *x = *state;
	Shmpool__PoolCreate pc = SHMPOOL__POOL_CREATE__INIT;
	Shmpool__Response *r;
	int fd = x->keeper.fd;
	uint8_t tmpl[16] = { 0 };

	r = td_pool_create(fd, "zero", 0, 1, 0);
	TD_EXPECT(r, -EINVAL);
	assert_non_null(strstr(r->message, "element size 0"));
	td_free(r);
	TD_EXPECT_FREE(td_pool_create(fd, "bigger", 17u << 20, 1, 0), -EINVAL);
	TD_EXPECT_FREE(td_pool_create(fd, "huge", UINT64_MAX, 1, 0), -EINVAL);
	TD_EXPECT_FREE(td_cache_create(fd, "zero", 0, NULL, 0), -EINVAL);
	TD_EXPECT_FREE(td_cache_create(fd, "bigger", 1ull << 40, NULL, 0), -EINVAL);
	TD_EXPECT_FREE(td_cache_create(fd, "tmpl", 32, tmpl, sizeof(tmpl)), -EINVAL);
	/* page-backed elements above the largest buddy block */
	pc.name = "toolarge";
	pc.elem_size = 8u << 20;
	pc.backing = 1;
	TD_EXPECT_FREE(td_pool_create_ex(fd, &pc), -EINVAL);
	pc.elem_size = 64;
	pc.backing = 7;
	TD_EXPECT_FREE(td_pool_create_ex(fd, &pc), -EINVAL); /* no such backing */
	pc.backing = 0;
	pc.flags = 0x80;
	TD_EXPECT_FREE(td_pool_create_ex(fd, &pc), -EINVAL); /* unknown flag */
	pc.flags = 0;
	pc.mode = 01777;
	TD_EXPECT_FREE(td_pool_create_ex(fd, &pc), -EINVAL);
	pc.mode = 0;
	pc.min_nr = 5;
	pc.max_nr = 2;
	TD_EXPECT_FREE(td_pool_create_ex(fd, &pc), -EINVAL); /* max_nr below min_nr */
	pc.min_nr = 0;
	pc.max_nr = 0;
	pc.align = 3;
	TD_EXPECT_FREE(td_pool_create_ex(fd, &pc), -EINVAL);
	still_healthy(x);
}

static void min_nr_cannot_fit(void **state)
{
	struct ctx *x = *state;
	Shmpool__Response *r, *l;
	int fd = x->keeper.fd;

	r = td_pool_create(fd, "greedy", 4096, 3900, 0); /* 16 MiB segment: not quite */
	TD_EXPECT(r, -ENOMEM);
	assert_non_null(strstr(r->message, "3900"));
	td_free(r);
	TD_EXPECT_FREE(td_pool_create(fd, "greedier", 1u << 20, 1000, 0), -ENOMEM);
	TD_EXPECT_FREE(td_pool_create(fd, "greediest", 64, UINT32_MAX, 0), -ENOMEM);
	TD_EXPECT_FREE(td_pool_resize(fd, "keep", 1u << 20), -ENOMEM);
	/* nothing of them was kept */
	l = td_simple(fd, SHMPOOL__REQUEST__OP_LIST);
	TD_EXPECT(l, 0);
	assert_int_equal(l->list->n_pools, 1);
	assert_string_equal(l->list->pools[0]->name, "keep");
	assert_int_equal(l->list->pools[0]->min_nr, 4);
	td_free(l);
	still_healthy(x);
}

/* Valid requests with a few bytes flipped, each on its own connection. */
static void mutated_requests(void **state)
{
	struct ctx *x = *state;
	uint64_t seed = 0x5eedf00dULL;
	uint8_t templ[5][128];
	size_t tlen[5];
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__PoolCreate pc = SHMPOOL__POOL_CREATE__INIT;
	Shmpool__CacheCreate cc = SHMPOOL__CACHE_CREATE__INIT;
	Shmpool__NameRef nr = SHMPOOL__NAME_REF__INIT;
	Shmpool__PoolResize rs = SHMPOOL__POOL_RESIZE__INIT;
	Shmpool__Reclaim rc = SHMPOOL__RECLAIM__INIT;
	uint8_t tbytes[24] = { 1, 2, 3 };

	pc.name = "mut.pool";
	pc.elem_size = 40;
	pc.min_nr = 2;
	pc.flags = 1;
	q.id = 5;
	q.op_case = SHMPOOL__REQUEST__OP_POOL_CREATE;
	q.pool_create = &pc;
	tlen[0] = shmpool__request__pack(&q, templ[0]);
	cc.name = "mut.cache";
	cc.obj_size = sizeof(tbytes);
	cc.init_template.data = tbytes;
	cc.init_template.len = sizeof(tbytes);
	q.op_case = SHMPOOL__REQUEST__OP_CACHE_CREATE;
	q.cache_create = &cc;
	tlen[1] = shmpool__request__pack(&q, templ[1]);
	nr.name = "keep";
	q.op_case = SHMPOOL__REQUEST__OP_POOL_OPEN;
	q.pool_open = &nr;
	tlen[2] = shmpool__request__pack(&q, templ[2]);
	rs.name = "keep";
	rs.min_nr = 4;
	q.op_case = SHMPOOL__REQUEST__OP_POOL_RESIZE;
	q.pool_resize = &rs;
	tlen[3] = shmpool__request__pack(&q, templ[3]);
	rc.slot = x->keeper.slot;
	q.op_case = SHMPOOL__REQUEST__OP_RECLAIM;
	q.reclaim = &rc;
	tlen[4] = shmpool__request__pack(&q, templ[4]);

	for (int iter = 0; iter < 300; iter++) {
		unsigned k = (unsigned)(seed % 5), flips;
		uint8_t m[128];
		Shmpool__Response *r;
		int fd, segfd;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		flips = 1 + (unsigned)((seed >> 33) % 3);
		memcpy(m, templ[k], tlen[k]);
		for (unsigned f = 0; f < flips; f++) {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			m[(seed >> 33) % tlen[k]] ^= (uint8_t)(1u << ((seed >> 20) % 8));
		}
		fd = td_connect(x->d.sock);
		TD_EXPECT_FREE(td_hello(fd, "mutant", &segfd), 0);
		close(segfd);
		td_send_frame(fd, m, (uint32_t)tlen[k]);
		r = td_recv(fd, NULL); /* one response, whatever it says */
		assert_non_null(r);
		assert_true(r->status <= 0);
		td_free(r);
		close(fd);
	}
	/* drop what the mutants may have made, then the usual checks */
	{
		Shmpool__Response *l = td_simple(x->keeper.fd, SHMPOOL__REQUEST__OP_LIST);

		TD_EXPECT(l, 0);
		for (size_t i = 0; i < l->list->n_pools; i++)
			if (strcmp(l->list->pools[i]->name, "keep"))
				td_free(td_name_op(x->keeper.fd, SHMPOOL__REQUEST__OP_POOL_DESTROY,
						   l->list->pools[i]->name));
		for (size_t i = 0; i < l->list->n_caches; i++)
			td_free(td_name_op(x->keeper.fd, SHMPOOL__REQUEST__OP_CACHE_DESTROY,
					   l->list->caches[i]->name));
		td_free(l);
	}
	TD_EXPECT_FREE(td_pool_resize(x->keeper.fd, "keep", 4), 0);
	still_healthy(x);
}

/* --max-clients 2: a third client gets -ENFILE; a freed slot is taken again. */
static void more_clients_than_slots(void **state)
{
	static const char *const args[] = { "--max-clients", "2", NULL };
	struct td_daemon d;
	struct td_client a, b, c;
	Shmpool__Response *r;
	struct sp_pool *p;
	sp_off_t el;
	int fd, segfd = -1;

	(void)state;
	td_init(&d);
	td_start(&d, args);
	td_client_open(&a, &d, "a");
	td_client_open(&b, &d, "b");
	TD_EXPECT_FREE(td_pool_create(a.fd, "full", 32, 2, 0), 0);
	p = td_client_pool(&a, "full");
	assert_int_equal(sp_pool_alloc(a.seg, p, SP_ALLOC_NOWAIT, 0, &el), 0);
	*(uint64_t *)sp_ptr(a.seg, el) = 0x1234567890abcdefULL;

	fd = td_connect(d.sock);
	r = td_hello(fd, "c", &segfd);
	TD_EXPECT(r, -ENFILE);
	assert_non_null(strstr(r->message, "client table full"));
	assert_int_equal(segfd, -1);
	td_free(r);
	TD_EXPECT_FREE(td_simple(fd, SHMPOOL__REQUEST__OP_STATS), -EPROTO); /* no slot */
	close(fd);

	td_client_close(&b, true); /* frees a slot */
	td_client_open(&c, &d, "c");
	assert_int_equal(*(uint64_t *)sp_ptr(c.seg, el), 0x1234567890abcdefULL);
	td_check_clean(c.fd);
	td_client_close(&c, true);
	assert_int_equal(sp_pool_free(a.seg, p, el), 0);
	td_client_close(&a, true);
	assert_int_equal(td_stop(&d), 0);
	td_cleanup(&d);
}

/* Many requests pipelined, no response read until all are sent: the daemon
 * queues, stops reading, resumes, and answers each one, in order. */
static void pipelined_without_reading(void **state)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__List li = SHMPOOL__LIST__INIT;
	struct ctx *x = *state;
	enum { N = 3000 };
	uint8_t *all = malloc((size_t)N * 32), *p = all;
	int fd = td_connect(x->d.sock), segfd;
	char name[32];

	TD_EXPECT_FREE(td_hello(fd, "pipeliner", &segfd), 0);
	close(segfd);
	for (int i = 0; i < 20; i++) { /* make each List reply a few KiB */
		snprintf(name, sizeof(name), "pipe.pool-%02d", i);
		TD_EXPECT_FREE(td_pool_create(fd, name, 16, 0, 0), 0);
	}
	q.op_case = SHMPOOL__REQUEST__OP_LIST;
	q.list = &li;
	for (int i = 0; i < N; i++) {
		size_t n;

		q.id = 100000 + (uint64_t)i;
		n = shmpool__request__pack(&q, p + 4);
		p[0] = p[1] = p[2] = 0;
		p[3] = (uint8_t)n;
		p += 4 + n;
	}
	td_send_raw(fd, all, (size_t)(p - all)); /* ~20 KiB out, ~6 MiB of replies due */
	for (int i = 0; i < N; i++) {
		Shmpool__Response *r = td_recv(fd, NULL);

		TD_EXPECT(r, 0);
		assert_int_equal(r->id, 100000 + (uint64_t)i);
		assert_int_equal(r->list->n_pools, 21);
		td_free(r);
	}
	free(all);
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "pipe.pool-%02d", i);
		TD_EXPECT_FREE(td_name_op(fd, SHMPOOL__REQUEST__OP_POOL_DESTROY, name), 0);
	}
	TD_EXPECT_FREE(td_simple(fd, SHMPOOL__REQUEST__OP_GOODBYE), 0);
	close(fd);
	still_healthy(x);
}

/* --max-connections 2: a third connection is closed at once. */
static void more_connections_than_allowed(void **state)
{
	static const char *const args[] = { "--max-connections", "2", NULL };
	struct td_daemon d;
	int a, b, c, segfd;

	(void)state;
	td_init(&d);
	td_start(&d, args);
	/* one at a time: td_start's probe connection must be gone first */
	a = td_connect(d.sock);
	TD_EXPECT_FREE(td_hello(a, "a", &segfd), 0);
	close(segfd);
	b = td_connect(d.sock);
	TD_EXPECT_FREE(td_hello(b, "b", &segfd), 0);
	close(segfd);
	c = td_connect(d.sock);
	assert_true(td_closed_by_peer(c));
	close(c);
	TD_EXPECT_FREE(td_simple(a, SHMPOOL__REQUEST__OP_GOODBYE), 0);
	close(a);
	/* a freed connection can be taken again (poll: the close is asynchronous) */
	for (int i = 0;; i++) {
		Shmpool__Request q = SHMPOOL__REQUEST__INIT;
		Shmpool__Hello h = SHMPOOL__HELLO__INIT;
		Shmpool__Response *r = NULL;
		uint8_t f[64];
		size_t n;

		c = td_connect(d.sock);
		h.protocol_version = TD_PROTOCOL_VERSION;
		q.op_case = SHMPOOL__REQUEST__OP_HELLO;
		q.hello = &h;
		n = shmpool__request__pack(&q, f + 4);
		f[0] = f[1] = f[2] = 0;
		f[3] = (uint8_t)n;
		/* the daemon may have closed it already: then send() fails */
		if (send(c, f, 4 + n, MSG_NOSIGNAL) == (ssize_t)(4 + n))
			r = td_recv(c, &segfd);
		if (r) {
			TD_EXPECT_FREE(r, 0);
			close(segfd);
			break;
		}
		close(c);
		assert_true(i < 2000);
		td_nap();
	}
	close(c);
	close(b);
	assert_int_equal(td_stop(&d), 0);
	assert_true(td_log_contains(&d, "--max-connections"));
	td_cleanup(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(malformed_protobuf),
		cmocka_unit_test(unknown_operation),
		cmocka_unit_test(truncated_frame_then_close),
		cmocka_unit_test(oversized_length),
		cmocka_unit_test(frame_split_over_many_writes),
		cmocka_unit_test(idle_partial_frame),
		cmocka_unit_test(request_before_hello),
		cmocka_unit_test(invalid_names),
		cmocka_unit_test(bad_sizes),
		cmocka_unit_test(min_nr_cannot_fit),
		cmocka_unit_test(mutated_requests),
		cmocka_unit_test(pipelined_without_reading),
		cmocka_unit_test(more_clients_than_slots),
		cmocka_unit_test(more_connections_than_allowed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
