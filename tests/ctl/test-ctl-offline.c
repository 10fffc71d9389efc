/* SPDX-License-Identifier: MIT */
/*
 * test-ctl-offline.c - shmpoolctl --segment: the read commands on a
 * segment mapped read-only with no daemon running (post-mortem), the same
 * numbers as the daemon gave; `check` exiting 1 on a deliberately
 * corrupted segment and listing the violations; every read command
 * surviving a scribbled segment (bounds checks: no crash, valid JSON).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl-util.h"

static int setup(void **state)
{
	static struct ct_world w;

	ct_world_start(&w);
	ct_world_stop(&w); /* the segment stays: read it without a daemon */
	*state = &w;
	return 0;
}

static int teardown(void **state)
{
	ct_world_cleanup(*state);
	return 0;
}

static void post_mortem(void **state)
{
	struct ct_world *w = *state;
	const char *seg = w->d.shm;
	struct ct_out o;
	json_object *j, *c;

	ct_run(&o, "--segment", seg, "--json", "status", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_true(json_object_get_boolean(ct_get(j, "offline")));
	{
		json_object *dm = (json_object *)1;

		assert_true(json_object_object_get_ex(j, "daemon", &dm));
		assert_null(dm); /* no daemon: JSON null */
	}
	assert_string_equal(ct_str(j, "segment.name"), seg);
	assert_int_equal(ct_int(j, "segment.size"), 16 << 20);
	assert_int_equal(ct_int(j, "pools"), 2);
	/* the victim died; app said Goodbye holding beta elements and kmalloc objects */
	assert_int_equal(ct_int(j, "clients.alive"), 0);
	assert_int_equal(ct_int(j, "clients.dead"), 2);
	assert_int_equal(ct_int(j, "clients.orphans.objects"), CT_VICTIM_OBJECTS + 3 + 2);
	json_object_put(j);
	ct_free(&o);

	ct_run(&o, "--segment", seg, "status", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "offline"));
	ct_free(&o);

	ct_run(&o, "--segment", seg, "--json", "pools", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_int_equal(ct_int(ct_find(j, "pools", "name", "alpha"), "out"), 0);
	assert_int_equal(ct_int(ct_find(j, "pools", "name", "beta"), "out"), 9);
	assert_int_equal(ct_int(ct_find(j, "pools", "name", "alpha"), "curr_nr"), 8);
	json_object_put(j);
	ct_free(&o);

	ct_run(&o, "--segment", seg, "--json", "clients", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	c = ct_find(j, "clients", "name", "victim");
	assert_non_null(c);
	assert_int_equal(ct_int(c, "slot"), w->victim_slot);
	assert_int_equal(ct_int(c, "objects"), CT_VICTIM_OBJECTS);
	assert_int_equal(ct_int(c, "pool_elems"), CT_VICTIM_POOL_ELEMS);
	c = ct_find(j, "clients", "name", "app");
	assert_non_null(c);
	assert_string_equal(ct_str(c, "state"), "dead");
	assert_int_equal(ct_int(c, "objects"), 3 + 2);
	assert_int_equal(ct_int(c, "pool_elems"), 3);
	json_object_put(j);
	ct_free(&o);

	/* every other read command; the name works without its '/' too */
	{
		static const char *const cmds[][3] = {
			{ "pools" }, { "pool", "beta" }, { "caches" }, { "slabinfo", "--all" },
			{ "buddyinfo" }, { "clients" }, { "check" }, { "metrics" },
			{ "top", "-n", "1" },
		};

		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
			const char *argv[8] = { "--segment", seg + 1, cmds[i][0], cmds[i][1],
						cmds[i][2], NULL };

			ct_runv(&o, argv);
			if (o.status)
				fail_msg("--segment %s: exit %d: %s", cmds[i][0], o.status, o.err);
			ct_free(&o);
		}
	}
	ct_run(&o, "--segment", seg, "metrics", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "offline=\"true\""));
	assert_non_null(strstr(o.out, "shmpool_pool_out_elements{pool=\"beta\"} 9"));
	ct_free(&o);
	ct_run(&o, "--segment", seg, "--json", "check", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_true(json_object_get_boolean(ct_get(j, "ok")));
	json_object_put(j);
	ct_free(&o);

	/* administration needs the daemon */
	ct_run(&o, "--segment", seg, "reclaim", "0", NULL);
	CT_EXPECT(&o, 2);
	ct_free(&o);
	/* a segment that is not there */
	ct_run(&o, "--segment", "/no-such-segment-here", "status", NULL);
	CT_EXPECT(&o, 1);
	assert_non_null(strstr(o.err, "no-such-segment-here"));
	ct_free(&o);
}

/* A copy of the segment in a file, as one would keep after a crash. */
static void file_copy(void **state)
{
	struct ct_world *w = *state;
	char src[128], dst[128], buf[65536];
	struct ct_out o;
	json_object *j;
	int in, out;
	ssize_t n;

	snprintf(src, sizeof(src), "/dev/shm%s", w->d.shm);
	snprintf(dst, sizeof(dst), "%s/crash.seg", w->d.dir);
	in = open(src, O_RDONLY);
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(in >= 0 && out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
	ct_run(&o, "--segment", dst, "--json", "pool", "beta", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_int_equal(ct_int(j, "out"), 9);
	json_object_put(j);
	ct_free(&o);
	ct_run(&o, "--segment", dst, "check", NULL);
	CT_EXPECT(&o, 0);
	ct_free(&o);
	unlink(dst);
}

static struct sp_seg *attach_rw(const struct ct_world *w)
{
	struct sp_seg *s;

	assert_int_equal(sp_seg_attach(w->d.shm, -1, 0, &s), 0);
	return s;
}

static void corrupted_check_fails(void **state)
{
	struct ct_world *w = *state;
	struct sp_seg *s = attach_rw(w);
	struct ct_out o;
	json_object *j;

	/* a free-list count that no longer matches the free blocks */
	s->hdr->buddy.nr_free[0] += 3;
	s->hdr->buddy.free_pages += 3;
	sp_seg_detach(s);

	ct_run(&o, "--segment", w->d.shm, "check", NULL);
	CT_EXPECT(&o, 1);
	assert_non_null(strstr(o.out, "violation"));
	assert_non_null(strstr(o.out, "order 0"));
	ct_free(&o);
	ct_run(&o, "--segment", w->d.shm, "--json", "check", NULL);
	CT_EXPECT(&o, 1);
	j = ct_json(&o);
	assert_false(json_object_get_boolean(ct_get(j, "ok")));
	assert_true(ct_int(j, "nr_violations") >= 1);
	assert_int_equal(json_object_array_length(ct_get(j, "violations")),
			 ct_int(j, "nr_violations") < 100 ? ct_int(j, "nr_violations") : 100);
	json_object_put(j);
	ct_free(&o);
}

static void scribbled_segment_is_survived(void **state)
{
	struct ct_world *w = *state;
	struct sp_seg *s = attach_rw(w);
	struct sp_pool *p;
	struct sp_cache *c;
	struct sp_client *cl;
	uint32_t id;
	struct ct_out o;
	static const char *const cmds[][2] = {
		{ "status" }, { "pools" }, { "pool", "beta" }, { "caches" }, { "buddyinfo" },
		{ "clients" }, { "metrics" },
	};

	/* the pool's cache: absurd geometry behind a valid magic */
	assert_int_equal(sp_pool_lookup(s, "beta", &id), 0);
	p = sp_pool_get(s, id);
	assert_non_null(p);
	c = sp_cache_get(s, p->cache_id);
	assert_non_null(c);
	c->objperslab = 0xffffffffu;
	c->bitmap_words = 0xffffffffu;
	c->stride = 0x7fffffffu;
	c->order = 31;
	/* a client name with control bytes and no terminating NUL */
	cl = &sp_clients(s)[w->victim_slot];
	memset(cl->name, '\033', sizeof(cl->name));
	/* page metadata: a head of an impossible order, an owner far away */
	s->pages[1].info = SP_PG_INFO(SP_PG_ALLOC, 200, SP_KIND_SLAB);
	s->pages[1].owner = 0x7fffffffu;
	s->pages[2].info = SP_PG_INFO(SP_PG_ALLOC, 0, SP_KIND_LARGE);
	s->pages[2].slot = 0xfff0;
	sp_seg_detach(s);

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		for (int json = 0; json < 2; json++) {
			const char *argv[8] = { "--segment", w->d.shm };
			unsigned n = 2;

			if (json && strcmp(cmds[i][0], "metrics") != 0)
				argv[n++] = "--json";
			argv[n++] = cmds[i][0];
			argv[n++] = cmds[i][1];
			argv[n] = NULL;
			ct_runv(&o, argv);
			if (o.status != 0 && o.status != 1)
				fail_msg("--segment %s on a scribbled segment: exit %d\n%s", cmds[i][0],
					 o.status, o.err);
			if (json && o.status == 0 && strcmp(cmds[i][0], "metrics") != 0)
				json_object_put(ct_json(&o));
			assert_null(strchr(o.out, '\033')); /* names come out sanitized */
			ct_free(&o);
		}
	}
	ct_run(&o, "--segment", w->d.shm, "check", NULL);
	CT_EXPECT(&o, 1);
	ct_free(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(post_mortem, setup, teardown),
		cmocka_unit_test_setup_teardown(file_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(corrupted_check_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(scribbled_segment_is_survived, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
