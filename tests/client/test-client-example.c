/* SPDX-License-Identifier: MIT */
/*
 * test-client-example.c - the producer/consumer example of client/examples
 * runs against a daemon as the README shows: the producer prints the ring's
 * offset, the consumer takes it on its command line, verifies and frees
 * every element.  Both must exit 0 and the segment must be consistent.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-util.h"

static pid_t spawn(const char *bin, char *const argv[], int out_fd)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		if (out_fd >= 0)
			dup2(out_fd, 1);
		execv(bin, argv);
		_exit(127);
	}
	return pid;
}

static void test_example(void **state)
{
	struct cl_daemon *d = *state;
	const char *prod = getenv("SHMP_PRODUCER"), *cons = getenv("SHMP_CONSUMER");
	char line[256] = "", off[64] = "", result[256] = "";
	int out[2], cout[2];
	pid_t pp, cp;
	FILE *f, *g;
	char *hint;
	shmp_client *c;

	if (!prod || !cons)
		fail_msg("SHMP_PRODUCER / SHMP_CONSUMER are not set: run through meson");
	assert_int_equal(pipe(out), 0);
	assert_int_equal(pipe(cout), 0);
	{
		char *const argv[] = { (char *)prod, "-n", "20000", "-s", d->sock, NULL };

		pp = spawn(prod, argv, out[1]);
	}
	close(out[1]);
	f = fdopen(out[0], "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	hint = strstr(line, "shmp-consumer ");
	if (!hint || sscanf(hint, "shmp-consumer %63s", off) != 1)
		CL_FAIL("unexpected first line from the producer: %s", line);
	{
		char *const argv[] = { (char *)cons, off, "-s", d->sock, NULL };

		cp = spawn(cons, argv, cout[1]);
	}
	close(cout[1]);
	g = fdopen(cout[0], "r");
	assert_non_null(g);
	assert_non_null(fgets(result, sizeof(result), g));
	assert_int_equal(tu_wait(cp), 0);
	assert_int_equal(tu_wait(pp), 0);
	assert_string_equal(result, "consumer: 20000 items, 0 bad\n");
	fclose(f);
	fclose(g);

	c = cl_connect(d, "example-check");
	cl_check(c);
	{
		shmp_pool *p = NULL;

		CL_ERR(shmp_pool_open(c, "example.items", &p), -ENOENT); /* destroyed */
	}
	shmp_disconnect(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_example, cl_setup, cl_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
