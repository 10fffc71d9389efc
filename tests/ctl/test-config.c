/* SPDX-License-Identifier: MIT */
/*
 * test-config.c - shmpoold --config FILE: every kind of error stops the
 * start with exit 2 and "FILE:LINE: what"; the file's settings apply
 * (geometry, socket mode, log level) and command-line flags override them;
 * predeclared [pool NAME] sections are created at start when missing and
 * kept as they are when present (after a restart, even if the file
 * changed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl-util.h"

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void errors_name_file_and_line(void **state)
{
	static const struct {
		const char *text;
		unsigned line;
		const char *what;
	} cases[] = {
		{ "[segment]\nsize = 8M\nbogus = 1\n", 3, "unknown key 'bogus' in [segment]" },
		{ "# comment\n[socket]\nmode = 0999\n", 3, "mode: invalid value '0999'" },
		{ "[segment]\nsize = 12X\n", 2, "size: invalid value '12X'" },
		{ "[segment]\nsize = 512K\n", 2, "size: invalid value '512K'" },
		{ "[segment]\nmax_order = 40\n", 2, "max_order: invalid value '40'" },
		{ "[log]\nlevel = loud\n", 2, "level: invalid value 'loud'" },
		{ "[segment]\nname = noslash\n", 2, "name: invalid value 'noslash'" },
		{ "\n\n[weird]\nx = 1\n", 3, "unknown section [weird]" },
		{ "size = 8M\n", 1, "outside a section" },
		{ "[segment]\nsize 8M\n", 2, "syntax error" },
		{ "[access]\nallow_users = root no-such-user-xyz\n", 2,
		  "'no-such-user-xyz' is neither a uid nor a known user" },
		{ "[pool a]\nelem_size = 64\n\n[pool b]\nmin_nr = 3\n", 4, "[pool b] needs elem_size" },
		{ "[pool a]\nelem_size = 64\n[pool a]\nelem_size = 64\n", 3, "appears twice" },
		{ "[pool bad/name]\nelem_size = 64\n", 1, "invalid pool name" },
		{ "[pool a]\nelem_size = 64\nflags = reclaim_on_exit, turbo\n", 3,
		  "unknown flag 'turbo'" },
		{ "[pool a]\nelem_size = 64\nmin_nr = 10\nmax_nr = 5\n", 1,
		  "max_nr 5 is below min_nr 10" },
		{ "[pool a]\nelem_size = 64\nbacking = heap\n", 3, "backing: invalid value 'heap'" },
		{ "[pool a]\nelem_size = 9K\nbacking = kmalloc\n", 1,
		  "above the largest kmalloc class" },
		{ "[pool a]\nelem_size = 64\nbacking = kmalloc\nflags = reclaim_on_exit\n", 1,
		  "reclaim_on_exit needs slab or pages backing" },
		{ "[pool a]\nelem_size = 64\nbacking = kmalloc\nflags = poison\n", 1,
		  "need slab backing" },
		{ "[pool a]\nelem_size = 64\ncolour = blue\n", 3, "unknown key 'colour' in [pool a]" },
	};
	struct td_daemon d;
	char path[128], out[4096], want[256];

	(void)state;
	td_init(&d);
	snprintf(path, sizeof(path), "%s/bad.conf", d.dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[] = { "--config", path, NULL };
		int st;

		write_file(path, cases[i].text);
		st = td_run(argv, out, sizeof(out));
		snprintf(want, sizeof(want), "shmpoold: %s:%u: ", path, cases[i].line);
		if (st != 2 || !strstr(out, want) || !strstr(out, cases[i].what))
			fail_msg("case %zu: exit %d, expected 2 and '%s...%s'; output: %s", i, st, want,
				 cases[i].what, out);
	}
	{
		const char *argv[] = { "--config", "/no/such/shmpoold.conf", NULL };

		assert_int_equal(td_run(argv, out, sizeof(out)), 2);
		assert_non_null(strstr(out, "/no/such/shmpoold.conf"));
	}
	unlink(path);
	td_cleanup(&d);
}

static void settings_and_predeclared_pools(void **state)
{
	struct td_daemon d;
	char path[128], text[2048];
	const char *extra[] = { "--config", path, NULL };
	struct ct_out o;
	struct stat st;
	json_object *j, *p;

	(void)state;
	td_init(&d);
	snprintf(path, sizeof(path), "%s/shmpoold.conf", d.dir);
	/* name, size, socket and log level are overridden by td's flags */
	snprintf(text, sizeof(text),
		 "# a test configuration\n"
		 "[segment]\nname = /not-this-one\nsize = 8M\nmax_pools = 64\nmax_caches = 32\n"
		 "max_order = 9\nkmalloc_prefill = 4\n\n"
		 "[socket]\npath = %s/not-this.sock\nmode = 0600\nframe_timeout_ms = 5000\n\n"
		 "[access]\nallow_users = root, 0\nallow_groups = 0\n\n"
		 "[log]\nlevel = error\n\n"
		 "[pool frames]\nelem_size = 2K\nmin_nr = 16\nmax_nr = 128\n"
		 "flags = reclaim_on_exit, poison\nmode = 0666\n\n"
		 "[pool pages.big]\nelem_size = 16K\nmin_nr = 2\nbacking = pages\n\n"
		 "[pool k.small]\nelem_size = 200\nmin_nr = 3\nmax_nr = 9\nbacking = kmalloc\n\n"
		 "[pool empty]   ; no reserve\nelem_size = 100\n", d.dir);
	write_file(path, text);
	td_start(&d, extra);

	ct_run(&o, "--socket", d.sock, "--json", "status", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_string_equal(ct_str(j, "segment.name"), d.shm); /* --shm-name wins */
	assert_int_equal(ct_int(j, "segment.size"), 16 << 20); /* --size 16M wins */
	assert_int_equal(ct_int(j, "segment.max_pools"), 64);
	assert_int_equal(ct_int(j, "segment.max_caches"), 32);
	assert_int_equal(ct_int(j, "segment.max_order"), 9);
	assert_int_equal(ct_int(j, "segment.kmalloc_prefill"), 4);
	json_object_put(j);
	ct_free(&o);
	assert_int_equal(stat(d.sock, &st), 0); /* --socket wins, with the file's mode */
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_true(td_log_contains(&d, "debug:")); /* --log-level debug wins */
	assert_true(td_log_contains(&d, "4 predeclared pools"));

	ct_run(&o, "--socket", d.sock, "--json", "pools", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_int_equal(json_object_array_length(ct_get(j, "pools")), 4);
	p = ct_find(j, "pools", "name", "frames");
	assert_non_null(p);
	assert_int_equal(ct_int(p, "elem_size"), 2048);
	assert_int_equal(ct_int(p, "min_nr"), 16);
	assert_int_equal(ct_int(p, "curr_nr"), 16);
	assert_int_equal(ct_int(p, "max_nr"), 128);
	assert_string_equal(ct_str(p, "mode"), "0666");
	assert_string_equal(ct_str(p, "flags.0"), "reclaim_on_exit");
	assert_string_equal(ct_str(p, "flags.1"), "poison");
	assert_int_equal(ct_int(p, "creator_uid"), geteuid());
	p = ct_find(j, "pools", "name", "pages.big");
	assert_non_null(p);
	assert_string_equal(ct_str(p, "backing"), "pages");
	assert_int_equal(ct_int(p, "curr_nr"), 2);
	p = ct_find(j, "pools", "name", "empty");
	assert_non_null(p);
	assert_int_equal(ct_int(p, "min_nr"), 0);
	p = ct_find(j, "pools", "name", "k.small");
	assert_non_null(p);
	assert_string_equal(ct_str(p, "backing"), "kmalloc");
	assert_int_equal(ct_int(p, "elem_size"), 200);
	assert_int_equal(ct_int(p, "curr_nr"), 3);
	assert_int_equal(ct_int(p, "max_nr"), 9);
	json_object_put(j);
	ct_free(&o);
	ct_run(&o, "--socket", d.sock, "pool", "k.small", NULL);
	CT_EXPECT(&o, 0);
	assert_non_null(strstr(o.out, "kmalloc backing"));
	ct_free(&o);
	assert_true(td_log_contains(&d, "kmalloc backing"));

	/* restart with a changed file: existing pools are kept as they are */
	assert_int_equal(td_stop(&d), 0);
	{
		char *at = strstr(text, "min_nr = 16");

		assert_non_null(at);
		memcpy(at, "min_nr = 32", 11);
	}
	write_file(path, text);
	td_start(&d, extra);
	assert_true(td_log_contains(&d, "pool frames"));
	assert_true(td_log_contains(&d, "kept as it is"));
	ct_run(&o, "--socket", d.sock, "--json", "pool", "frames", NULL);
	CT_EXPECT(&o, 0);
	j = ct_json(&o);
	assert_int_equal(ct_int(j, "min_nr"), 16);
	json_object_put(j);
	ct_free(&o);

	/* destroyed, it is created again at the next start */
	ct_run(&o, "--socket", d.sock, "destroy", "empty", NULL);
	CT_EXPECT(&o, 0);
	ct_free(&o);
	assert_int_equal(td_stop(&d), 0);
	td_start(&d, extra);
	ct_run(&o, "--socket", d.sock, "pool", "empty", NULL);
	CT_EXPECT(&o, 0);
	ct_free(&o);
	ct_run(&o, "--socket", d.sock, "check", NULL);
	CT_EXPECT(&o, 0);
	ct_free(&o);
	assert_int_equal(td_stop(&d), 0);
	unlink(path);
	td_cleanup(&d);
}

/* A predeclared pool the segment cannot hold stops the start (exit 1). */
static void impossible_pool_fails_start(void **state)
{
	struct td_daemon d;
	char path[128];
	const char *extra[] = { "--config", path, NULL };

	(void)state;
	td_init(&d);
	snprintf(path, sizeof(path), "%s/shmpoold.conf", d.dir);
	write_file(path, "[pool huge]\nelem_size = 1M\nmin_nr = 1000\nbacking = pages\n");
	td_spawn(&d, extra);
	assert_int_equal(td_wait_exit(&d), 1);
	assert_true(td_log_contains(&d, "cannot create pool huge"));
	assert_true(td_log_contains(&d, ":1: "));
	unlink(path);
	td_cleanup(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(errors_name_file_and_line),
		cmocka_unit_test(settings_and_predeclared_pools),
		cmocka_unit_test(impossible_pool_fails_start),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
