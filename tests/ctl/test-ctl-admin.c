/* SPDX-License-Identifier: MIT */
/*
 * test-ctl-admin.c - shmpoolctl's pool administration (create, resize,
 * destroy, reclaim) and its exit codes: 0 ok, 1 refused or not found,
 * 2 usage, 3 daemon unreachable (naming the socket), plus --help,
 * --version and $SHMPOOL_SOCKET.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl-util.h"

static int setup(void **state)
{
	static struct td_daemon d;

	td_init(&d);
	td_start(&d, NULL);
	*state = &d;
	return 0;
}

static int teardown(void **state)
{
	struct td_daemon *d = *state;

	if (d->pid)
		assert_int_equal(td_stop(d), 0);
	td_cleanup(d);
	return 0;
}

static void create_resize_destroy(void **state)
{
	struct td_daemon *d = *state;
	struct td_client app;
	struct sp_pool *p;
	struct ct_out o;
	json_object *j;
	sp_off_t off;

	ct_run(&o, "--socket", d->sock, "--json", "create", "gamma", "4K", "3", "--max", "10",
	       "--poison", "--redzone", "--mode", "0604", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_string_equal(ct_str(j, "name"), "gamma");
	assert_int_equal(ct_int(j, "elem_size"), 4096);
	assert_int_equal(ct_int(j, "min_nr"), 3);
	assert_int_equal(ct_int(j, "curr_nr"), 3);
	assert_int_equal(ct_int(j, "max_nr"), 10);
	assert_string_equal(ct_str(j, "mode"), "0604");
	json_object_put(j);
	ct_free(&o);

	ct_run(&o, "--socket", d->sock, "--json", "pool", "gamma", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_string_equal(ct_str(j, "flags.0"), "poison");
	assert_string_equal(ct_str(j, "flags.1"), "redzone");
	assert_string_equal(ct_str(j, "backing"), "slab");
	json_object_put(j);
	ct_free(&o);

	ct_run(&o, "--socket", d->sock, "create", "big", "16K", "2", "--pages",
	       "--reclaim-on-exit", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "created pool big: 16.0 KiB elements, reserve 2/2"));
	assert_non_null(strstr(o.out, "pages backing"));
	ct_free(&o);

	/* on the kmalloc class of its size, shared: no reclaim-on-exit there */
	ct_run(&o, "--socket", d->sock, "create", "kpool", "200", "3", "--kmalloc", "--max", "8",
	       NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "created pool kpool: 200 B elements, reserve 3/3"));
	assert_non_null(strstr(o.out, "kmalloc backing"));
	ct_free(&o);
	ct_run(&o, "--socket", d->sock, "pool", "kpool", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "kmalloc backing"));
	assert_non_null(strstr(o.out, "kmalloc-256 (shared"));
	ct_free(&o);
	ct_run(&o, "--socket", d->sock, "--json", "pools", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_string_equal(ct_str(ct_find(j, "pools", "name", "kpool"), "backing"), "kmalloc");
	json_object_put(j);
	ct_free(&o);
	ct_run(&o, "--socket", d->sock, "create", "krec", "64", "--kmalloc", "--reclaim-on-exit",
	       NULL);
	CT_EXPECT(&o, 1);
	assert_non_null(strstr(o.err, "EINVAL"));
	assert_non_null(strstr(o.err, "reclaim-on-exit"));
	ct_free(&o);
	ct_run(&o, "--socket", d->sock, "create", "kbig", "9000", "--kmalloc", NULL);
	CT_EXPECT(&o, 1);
	assert_non_null(strstr(o.err, "largest kmalloc class"));
	ct_free(&o);
	ct_run(&o, "--socket", d->sock, "check", NULL);
	CT_EXPECT(&o, 0);
	ct_free(&o);
	ct_run(&o, "--socket", d->sock, "destroy", "kpool", NULL);
	CT_EXPECT(&o, 0);
	ct_free(&o);

	/* the name is taken */
	ct_run(&o, "--socket", d->sock, "create", "gamma", "64", NULL);
	CT_EXPECT(&o, 1);
	assert_non_null(strstr(o.err, "EEXIST"));
	ct_free(&o);

	ct_run(&o, "--socket", d->sock, "--json", "resize", "gamma", "5", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_int_equal(ct_int(j, "min_nr"), 5);
	assert_int_equal(ct_int(j, "curr_nr"), 5);
	json_object_put(j);
	ct_free(&o);
	ct_run(&o, "--socket", d->sock, "resize", "gamma", "1", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "resized pool gamma"));
	assert_non_null(strstr(o.out, "reserve 1/1"));
	ct_free(&o);
	ct_run(&o, "--socket", d->sock, "resize", "missing", "1", NULL);
	CT_EXPECT(&o, 1);
	assert_non_null(strstr(o.err, "ENOENT"));
	ct_free(&o);

	/* destroy is refused while an element is out */
	td_client_open(&app, d, "app");
	p = td_client_pool(&app, "gamma");
	assert_int_equal(sp_pool_alloc(app.seg, p, SP_ALLOC_NOWAIT, 0, &off), 0);
	ct_run(&o, "--socket", d->sock, "destroy", "gamma", NULL);
	CT_EXPECT(&o, 1);
	assert_non_null(strstr(o.err, "EBUSY"));
	ct_free(&o);
	assert_int_equal(sp_pool_free(app.seg, p, off), 0);
	td_client_close(&app, true);
	ct_run(&o, "--socket", d->sock, "destroy", "gamma", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "destroyed pool gamma"));
	ct_free(&o);
	ct_run(&o, "--socket", d->sock, "--json", "destroy", "big", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_string_equal(ct_str(j, "destroyed"), "big");
	json_object_put(j);
	ct_free(&o);
	ct_run(&o, "--socket", d->sock, "destroy", "gamma", NULL);
	CT_EXPECT(&o, 1);
	assert_non_null(strstr(o.err, "ENOENT"));
	ct_free(&o);

	ct_run(&o, "--socket", d->sock, "--json", "pools", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_int_equal(json_object_array_length(ct_get(j, "pools")), 0);
	json_object_put(j);
	ct_free(&o);
	ct_run(&o, "--socket", d->sock, "check", NULL);
	CT_EXPECT(&o, 0);
	ct_free(&o);
}

static void reclaim_refusals(void **state)
{
	struct td_daemon *d = *state;
	struct td_client app;
	struct ct_out o;
	char slot[16];

	ct_run(&o, "--socket", d->sock, "reclaim", "77", NULL);
	CT_EXPECT(&o, 1);
	assert_non_null(strstr(o.err, "ESRCH"));
	ct_free(&o);
	td_client_open(&app, d, "app");
	snprintf(slot, sizeof(slot), "%u", app.slot);
	ct_run(&o, "--socket", d->sock, "reclaim", slot, NULL);
	CT_EXPECT(&o, 1);
	assert_non_null(strstr(o.err, "alive"));
	ct_free(&o);
	td_client_close(&app, true);
	ct_run(&o, "--socket", d->sock, "reclaim", "seven", NULL);
	CT_EXPECT(&o, 2);
	ct_free(&o);
}

static void usage_errors(void **state)
{
	struct td_daemon *d = *state;
	static const char *const cases[][8] = {
		{ NULL },
		{ "bogus", NULL },
		{ "--bogus", "status", NULL },
		{ "pools", "extra", NULL },
		{ "pool", NULL },
		{ "create", "x", NULL },
		{ "create", "x", "0", NULL },
		{ "create", "x", "12Q", NULL },
		{ "create", "x", "64", "--pages", "--kmalloc", NULL },
		{ "resize", "x", "-1", NULL },
		{ "caches", "--max", "3", NULL },
		{ "status", "--all", NULL },
		{ "top", "--json", NULL },
		{ "top", "--sort", "nonsense", NULL },
		{ "top", "-d", "0", NULL },
		{ "metrics", "--json", NULL },
		{ "--segment", "/x", "--socket", "/y", "status", NULL },
		{ "--segment", "/x", "destroy", "p", NULL },
		{ "status", "--socket", NULL },
	};
	struct ct_out o;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[12] = { "--socket", d->sock };
		unsigned n = 2;

		for (unsigned k = 0; cases[i][k]; k++)
			argv[n++] = cases[i][k];
		argv[n] = NULL;
		ct_runv(&o, argv);
		if (o.status != 2 || !strstr(o.err, "shmpoolctl: "))
			fail_msg("case %zu (%s %s): exit %d, stderr: %s", i,
				 cases[i][0] ? cases[i][0] : "", cases[i][0] && cases[i][1] ?
				 cases[i][1] : "", o.status, o.err);
		ct_free(&o);
	}
}

static void help_version_env(void **state)
{
	struct td_daemon *d = *state;
	struct ct_out o;

	ct_run(&o, "--help", NULL);
	CT_EXPECT(&o, 0);
	for (const char *const *c = (const char *const[]){ "status", "pools", "pool NAME",
			"caches", "slabinfo", "buddyinfo", "clients", "check", "top", "metrics",
			"create", "destroy", "resize", "reclaim", "--segment", "--json", "Exit status",
			NULL }; *c; c++)
		if (!strstr(o.out, *c))
			fail_msg("--help does not mention %s", *c);
	ct_free(&o);
	ct_run(&o, "--version", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "shmpoolctl " SHMPOOL_VERSION));
	ct_free(&o);

	/* $SHMPOOL_SOCKET when there is no --socket */
	setenv("SHMPOOL_SOCKET", d->sock, 1);
	ct_run(&o, "status", NULL);
	unsetenv("SHMPOOL_SOCKET");
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, d->sock));
	ct_free(&o);
}

static void unreachable(void **state)
{
	struct td_daemon *d = *state;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[100];
	struct ct_out o;
	int fd;

	/* no such socket */
	snprintf(path, sizeof(path), "%s/none.sock", d->dir);
	ct_run(&o, "--socket", path, "status", NULL);
	CT_EXPECT(&o, 3);
	assert_non_null(strstr(o.err, path));
	assert_non_null(strstr(o.err, "is shmpoold running"));
	ct_free(&o);
	ct_run(&o, "--socket", path, "--json", "pools", NULL);
	CT_EXPECT(&o, 3);
	ct_free(&o);
	/* metrics still says shmpool_up 0 for a textfile collector */
	ct_run(&o, "--socket", path, "metrics", NULL);
	CT_EXPECT(&o, 3);
	assert_non_null(strstr(o.out, "shmpool_up 0"));
	ct_free(&o);

	/* a socket nobody listens on (bound, never listening) */
	snprintf(path, sizeof(path), "%s/deaf.sock", d->dir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ct_run(&o, "--socket", path, "check", NULL);
	CT_EXPECT(&o, 3);
	assert_non_null(strstr(o.err, path));
	assert_non_null(strstr(o.err, "refused"));
	ct_free(&o);
	close(fd);
	unlink(path);

	/* the daemon's own socket once it stopped */
	assert_int_equal(td_stop(d), 0);
	ct_run(&o, "--socket", d->sock, "create", "x", "64", NULL);
	CT_EXPECT(&o, 3);
	assert_non_null(strstr(o.err, d->sock));
	ct_free(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(create_resize_destroy, setup, teardown),
		cmocka_unit_test_setup_teardown(reclaim_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(usage_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(help_version_env, setup, teardown),
		cmocka_unit_test_setup_teardown(unreachable, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
