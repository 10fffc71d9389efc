/* SPDX-License-Identifier: MIT */
/*
 * test-ctl-read.c - every read command of shmpoolctl against a live daemon,
 * in text and with --json: status, pools, pool NAME, caches (and slabinfo),
 * buddyinfo, clients (with the orphans of a killed client), check.  The
 * JSON is parsed and its values are asserted against the world the test
 * built (ctl-util.h); the text output is checked for its tables and units.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-util.h"

static int setup(void **state)
{
	static struct ct_world w;

	ct_world_start(&w);
	*state = &w;
	return 0;
}

static int teardown(void **state)
{
	ct_world_cleanup(*state);
	return 0;
}

static void status(void **state)
{
	struct ct_world *w = *state;
	struct ct_out o;
	json_object *j;

	ct_run(&o, "--socket", w->d.sock, "status", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "shmpoold " SHMPOOL_VERSION));
	assert_non_null(strstr(o.out, w->d.sock));
	assert_non_null(strstr(o.out, w->d.shm));
	assert_non_null(strstr(o.out, "16.0 MiB")); /* td daemons: --size 16M */
	assert_non_null(strstr(o.out, "1 dead"));
	assert_non_null(strstr(o.out, "%"));
	ct_free(&o);

	ct_run(&o, "--socket", w->d.sock, "--json", "status", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_false(json_object_get_boolean(ct_get(j, "offline")));
	assert_string_equal(ct_str(j, "daemon.version"), SHMPOOL_VERSION);
	assert_string_equal(ct_str(j, "daemon.socket"), w->d.sock);
	assert_int_equal(ct_int(j, "daemon.pid"), w->d.pid);
	assert_true(ct_int(j, "daemon.uptime_s") >= 0);
	assert_string_equal(ct_str(j, "segment.name"), w->d.shm);
	assert_int_equal(ct_int(j, "segment.size"), 16 << 20);
	assert_int_equal(ct_int(j, "pages.used") + ct_int(j, "pages.free"),
			 ct_int(j, "pages.total"));
	assert_int_equal(ct_int(j, "pools"), 2);
	assert_int_equal(ct_int(j, "named_caches"), 1);
	assert_int_equal(ct_int(j, "clients.alive"), 2); /* app and this shmpoolctl */
	assert_int_equal(ct_int(j, "clients.dead"), 1);
	assert_int_equal(ct_int(j, "clients.orphans.objects"), CT_VICTIM_OBJECTS);
	assert_int_equal(ct_int(j, "clients.orphans.pool_elems"), CT_VICTIM_POOL_ELEMS);
	assert_int_equal(ct_int(j, "pool_elems_out"), 5 + 3 + 6);
	json_object_put(j);
	ct_free(&o);
}

static void pools(void **state)
{
	struct ct_world *w = *state;
	struct ct_out o;
	json_object *j, *a, *b;

	ct_run(&o, "--socket", w->d.sock, "pools", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "NAME"));
	assert_non_null(strstr(o.out, "RESERVE"));
	assert_non_null(strstr(o.out, "alpha"));
	assert_non_null(strstr(o.out, "beta"));
	assert_non_null(strstr(o.out, "256 B"));
	assert_non_null(strstr(o.out, "1000 B"));
	assert_non_null(strstr(o.out, "reclaim_on_exit"));
	ct_free(&o);

	ct_run(&o, "pools", "--json", "--socket", w->d.sock, NULL); /* options after the command */
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_int_equal(json_object_array_length(ct_get(j, "pools")), 2);
	a = ct_find(j, "pools", "name", "alpha");
	b = ct_find(j, "pools", "name", "beta");
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(ct_int(a, "elem_size"), 256);
	assert_int_equal(ct_int(a, "min_nr"), 8);
	assert_int_equal(ct_int(a, "curr_nr"), 8); /* the backing served every allocation */
	assert_int_equal(ct_int(a, "max_nr"), 64);
	assert_int_equal(ct_int(a, "out"), 5); /* the victim's 4 came back */
	assert_int_equal(ct_int(a, "bytes"), (8 + 5) * 256);
	assert_string_equal(ct_str(a, "flags.0"), "reclaim_on_exit");
	assert_string_equal(ct_str(a, "backing"), "slab");
	assert_int_equal(ct_int(a, "allocs"), 5 + 4);
	assert_int_equal(ct_int(b, "elem_size"), 1000);
	assert_int_equal(ct_int(b, "min_nr"), 4);
	assert_int_equal(ct_int(b, "max_nr"), 0);
	assert_int_equal(ct_int(b, "out"), 3 + 6); /* the victim's 6 are orphans */
	assert_int_equal(json_object_array_length(ct_get(b, "flags")), 0);
	assert_string_equal(ct_str(b, "cache.name"), "pool.beta");
	json_object_put(j);
	ct_free(&o);
}

static void pool_by_name(void **state)
{
	struct ct_world *w = *state;
	struct ct_out o;
	json_object *j;

	ct_run(&o, "--socket", w->d.sock, "pool", "alpha", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "pool          alpha"));
	assert_non_null(strstr(o.out, "reserve       8 of min_nr 8 (100.0% full)"));
	assert_non_null(strstr(o.out, "out           5 elements (max_nr 64"));
	assert_non_null(strstr(o.out, "pool.alpha"));
	ct_free(&o);

	ct_run(&o, "--socket", w->d.sock, "--json", "pool", "beta", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_string_equal(ct_str(j, "name"), "beta");
	assert_int_equal(ct_int(j, "out"), 9);
	assert_int_equal(ct_int(j, "cache.active_objs"), 4 + 9); /* reserve + out */
	assert_int_equal(ct_int(j, "cache.objsize"), 1000);
	json_object_put(j);
	ct_free(&o);

	ct_run(&o, "--socket", w->d.sock, "pool", "no-such-pool", NULL);
	CT_EXPECT(&o, 1);
	assert_non_null(strstr(o.err, "no pool named 'no-such-pool'"));
	ct_free(&o);
	ct_run(&o, "--socket", w->d.sock, "--json", "pool", "no-such-pool", NULL);
	CT_EXPECT(&o, 1);
	ct_free(&o);
}

static void caches(void **state)
{
	struct ct_world *w = *state;
	struct ct_out o;
	json_object *j, *c;
	const char *cmds[] = { "caches", "slabinfo" };

	for (int i = 0; i < 2; i++) {
		ct_run(&o, "--socket", w->d.sock, cmds[i], NULL);
		CT_EXPECT(&o, 0);
		/* the /proc/slabinfo columns */
		assert_non_null(strstr(o.out, "ACTIVE_OBJS"));
		assert_non_null(strstr(o.out, "OBJPERSLAB"));
		assert_non_null(strstr(o.out, "PAGESPERSLAB"));
		assert_non_null(strstr(o.out, "NUM_SLABS"));
		assert_non_null(strstr(o.out, "things"));
		assert_non_null(strstr(o.out, "pool.alpha"));
		assert_non_null(strstr(o.out, "kmalloc-104")); /* app's kmalloc(100) */
		assert_null(strstr(o.out, "kmalloc-8192 ")); /* idle: only with --all */
		assert_non_null(strstr(o.out, "KiB"));
		ct_free(&o);
	}
	ct_run(&o, "--socket", w->d.sock, "caches", "--all", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "kmalloc-8192"));
	ct_free(&o);

	ct_run(&o, "--socket", w->d.sock, "--json", "slabinfo", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	c = ct_find(j, "caches", "name", "things");
	assert_non_null(c);
	assert_string_equal(ct_str(c, "kind"), "named");
	assert_int_equal(ct_int(c, "objsize"), 48);
	assert_int_equal(ct_int(c, "active_objs"), 0);
	c = ct_find(j, "caches", "name", "pool.alpha");
	assert_non_null(c);
	assert_string_equal(ct_str(c, "kind"), "pool");
	assert_int_equal(ct_int(c, "active_objs"), 8 + 5);
	assert_int_equal(ct_int(c, "num_objs"), ct_int(c, "objperslab") * ct_int(c, "num_slabs"));
	assert_int_equal(ct_int(c, "bytes"),
			 ct_int(c, "num_slabs") * ct_int(c, "pagesperslab") * 4096);
	c = ct_find(j, "caches", "name", "kmalloc-104");
	assert_non_null(c);
	assert_string_equal(ct_str(c, "kind"), "kmalloc");
	assert_int_equal(ct_int(c, "active_objs"), 2);
	c = ct_find(j, "caches", "name", "kmalloc-256"); /* the victim's kmalloc(200) */
	assert_non_null(c);
	assert_true(ct_int(c, "active_objs") >= 2);
	json_object_put(j);
	ct_free(&o);
}

static void buddyinfo(void **state)
{
	struct ct_world *w = *state;
	struct ct_out o;
	json_object *j, *a;
	int64_t pages = 0;

	ct_run(&o, "--socket", w->d.sock, "buddyinfo", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "ORDER"));
	assert_non_null(strstr(o.out, "FREE_BLOCKS"));
	assert_non_null(strstr(o.out, "4.00 MiB")); /* the order-10 block size */
	ct_free(&o);

	ct_run(&o, "--socket", w->d.sock, "--json", "buddyinfo", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	a = ct_get(j, "free_blocks");
	assert_int_equal(json_object_array_length(a), ct_int(j, "max_order") + 1);
	for (size_t i = 0; i < json_object_array_length(a); i++)
		pages += json_object_get_int64(json_object_array_get_idx(a, i)) << i;
	assert_int_equal(pages, ct_int(j, "free_pages"));
	assert_true(ct_int(j, "free_pages") < ct_int(j, "nr_pages"));
	assert_true(ct_int(j, "allocs") > 0);
	json_object_put(j);
	ct_free(&o);
}

static void clients(void **state)
{
	struct ct_world *w = *state;
	struct ct_out o;
	json_object *j, *c;
	char slot[16];

	ct_run(&o, "--socket", w->d.sock, "clients", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "victim"));
	assert_non_null(strstr(o.out, "dead"));
	assert_non_null(strstr(o.out, "shmpoolctl"));
	assert_non_null(strstr(o.out, "* this shmpoolctl"));
	assert_non_null(strstr(o.out, "orphans"));
	ct_free(&o);

	ct_run(&o, "--socket", w->d.sock, "--json", "clients", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	c = ct_find(j, "clients", "name", "victim");
	assert_non_null(c);
	assert_int_equal(ct_int(c, "slot"), w->victim_slot);
	assert_int_equal(ct_int(c, "pid"), w->victim_pid);
	assert_string_equal(ct_str(c, "state"), "dead");
	assert_false(json_object_get_boolean(ct_get(c, "connected")));
	assert_int_equal(ct_int(c, "objects"), CT_VICTIM_OBJECTS);
	assert_int_equal(ct_int(c, "pool_elems"), CT_VICTIM_POOL_ELEMS);
	assert_int_equal(ct_int(c, "bytes"), 6 * 1000 + 2 * 256); /* kmalloc-256 */
	assert_true(ct_int(c, "death_time") > 0);
	c = ct_find(j, "clients", "name", "app");
	assert_non_null(c);
	assert_int_equal(ct_int(c, "slot"), w->app.slot);
	assert_string_equal(ct_str(c, "state"), "alive");
	assert_true(json_object_get_boolean(ct_get(c, "connected")));
	assert_int_equal(ct_int(c, "objects"), CT_APP_OBJECTS);
	assert_int_equal(ct_int(c, "pool_elems"), CT_APP_POOL_ELEMS);
	c = ct_find(j, "clients", "name", "shmpoolctl");
	assert_non_null(c);
	assert_true(json_object_get_boolean(ct_get(c, "self")));
	assert_int_equal(ct_int(j, "dead"), 1);
	assert_int_equal(ct_int(j, "orphans.objects"), CT_VICTIM_OBJECTS);
	assert_int_equal(ct_int(j, "orphans.pool_elems"), CT_VICTIM_POOL_ELEMS);
	json_object_put(j);
	ct_free(&o);

	/* reclaim the orphans: the dead slot goes away */
	snprintf(slot, sizeof(slot), "%u", w->victim_slot);
	ct_run(&o, "--socket", w->d.sock, "--json", "reclaim", slot, NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_int_equal(ct_int(j, "objects"), CT_VICTIM_OBJECTS);
	assert_int_equal(ct_int(j, "pool_elems"), CT_VICTIM_POOL_ELEMS);
	json_object_put(j);
	ct_free(&o);
	ct_run(&o, "--socket", w->d.sock, "--json", "clients", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_null(ct_find(j, "clients", "name", "victim")); /* its slot may be ours now */
	assert_int_equal(ct_int(j, "orphans.objects"), 0);
	json_object_put(j);
	ct_free(&o);
	ct_run(&o, "--socket", w->d.sock, "--json", "pool", "beta", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_int_equal(ct_int(j, "out"), 3);
	json_object_put(j);
	ct_free(&o);
}

static void check(void **state)
{
	struct ct_world *w = *state;
	struct ct_out o;
	json_object *j;

	ct_run(&o, "--socket", w->d.sock, "check", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "consistent"));
	ct_free(&o);
	ct_run(&o, "--socket", w->d.sock, "--json", "check", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_true(json_object_get_boolean(ct_get(j, "ok")));
	assert_int_equal(ct_int(j, "nr_violations"), 0);
	assert_int_equal(json_object_array_length(ct_get(j, "violations")), 0);
	json_object_put(j);
	ct_free(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(status, setup, teardown),
		cmocka_unit_test_setup_teardown(pools, setup, teardown),
		cmocka_unit_test_setup_teardown(pool_by_name, setup, teardown),
		cmocka_unit_test_setup_teardown(caches, setup, teardown),
		cmocka_unit_test_setup_teardown(buddyinfo, setup, teardown),
		cmocka_unit_test_setup_teardown(clients, setup, teardown),
		cmocka_unit_test_setup_teardown(check, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
