/* SPDX-License-Identifier: MIT */
/*
 * test-ctl-top.c - `shmpoolctl top` driven in a pseudo-terminal (forkpty):
 * frames keep coming at the refresh interval, sort keys re-sort and say
 * so, q quits with exit 0 and the terminal restored (alternate screen
 * left, cursor shown).  Also its batch mode (-n N, no terminal) and
 * SIGTERM.  Waiting for output polls with a generous bound: nothing here
 * asserts how long anything takes.
 */
#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl-util.h"

struct term {
	int fd;
	pid_t pid;
	char *buf;
	size_t len;
};

static int setup(void **state)
{
	static struct td_daemon d;
	struct ct_out o;

	td_init(&d);
	td_start(&d, NULL);
	ct_run(&o, "--socket", d.sock, "create", "frames", "512", "16", NULL);
	CT_EXPECT(&o, 0);
	ct_free(&o);
	*state = &d;
	return 0;
}

static int teardown(void **state)
{
	struct td_daemon *d = *state;

	assert_int_equal(td_stop(d), 0);
	td_cleanup(d);
	return 0;
}

static void start_top(struct term *t, const struct td_daemon *d)
{
	struct winsize ws = { .ws_row = 40, .ws_col = 132 };
	const char *exe = getenv("SHMPOOLCTL");

	memset(t, 0, sizeof(*t));
	assert_non_null(exe);
	t->pid = forkpty(&t->fd, NULL, NULL, &ws);
	assert_true(t->pid >= 0);
	if (t->pid == 0) {
		execl(exe, "shmpoolctl", "--socket", d->sock, "top", "-d", "0.2", (char *)NULL);
		_exit(127);
	}
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* Read the terminal until @needle appears @times times in all output (bounded). */
static void wait_for(struct term *t, const char *needle, size_t times)
{
	for (int i = 0; i < 3000; i++) { /* 3000 polls of at most 10 ms */
		struct pollfd p = { .fd = t->fd, .events = POLLIN };
		char b[8192];
		ssize_t n;

		if (t->buf && count(t->buf, needle) >= times)
			return;
		if (poll(&p, 1, 10) <= 0)
			continue;
		n = read(t->fd, b, sizeof(b));
		if (n <= 0)
			break; /* EIO: the other side closed */
		t->buf = realloc(t->buf, t->len + (size_t)n + 1);
		assert_non_null(t->buf);
		memcpy(t->buf + t->len, b, (size_t)n);
		t->len += (size_t)n;
		t->buf[t->len] = '\0';
	}
	fail_msg("top never printed '%s' %zu times; output:\n%s", needle, times,
		 t->buf ? t->buf : "(nothing)");
}

static int finish(struct term *t)
{
	int st;

	/* drain what is left so top never blocks on a full terminal */
	for (int i = 0; i < 3000; i++) {
		struct pollfd p = { .fd = t->fd, .events = POLLIN };
		char b[8192];
		ssize_t n;

		if (poll(&p, 1, 10) > 0) {
			n = read(t->fd, b, sizeof(b));
			if (n <= 0)
				break;
			t->buf = realloc(t->buf, t->len + (size_t)n + 1);
			memcpy(t->buf + t->len, b, (size_t)n);
			t->len += (size_t)n;
			t->buf[t->len] = '\0';
		} else if (waitpid(t->pid, &st, WNOHANG) == t->pid) {
			t->pid = 0;
			break;
		}
	}
	st = t->pid ? td_waitpid(t->pid, 20000) : (WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	close(t->fd);
	return st;
}

static void refresh_sort_quit(void **state)
{
	struct td_daemon *d = *state;
	struct term t;

	start_top(&t, d);
	wait_for(&t, "shmpoolctl top - ", 2); /* one refresh after the first frame */
	assert_non_null(strstr(t.buf, "\033[?1049h")); /* the alternate screen */
	assert_non_null(strstr(t.buf, "sorted by active_objs"));
	assert_non_null(strstr(t.buf, "pool.frames"));
	assert_non_null(strstr(t.buf, "ACTIVE_OBJS"));
	assert_non_null(strstr(t.buf, "Active / Total Objects"));
	assert_int_equal(write(t.fd, "n", 1), 1);
	wait_for(&t, "sorted by name", 1);
	assert_int_equal(write(t.fd, "c", 1), 1);
	wait_for(&t, "sorted by cache_size", 1);
	assert_int_equal(write(t.fd, "q", 1), 1);
	assert_int_equal(finish(&t), 0);
	assert_non_null(strstr(t.buf, "\033[?1049l")); /* left the alternate screen */
	assert_non_null(strstr(t.buf, "\033[?25h"));   /* the cursor is back */
	free(t.buf);
}

static void sigterm_restores(void **state)
{
	struct td_daemon *d = *state;
	struct term t;

	start_top(&t, d);
	wait_for(&t, "shmpoolctl top - ", 1);
	kill(t.pid, SIGTERM);
	assert_int_equal(finish(&t), 0);
	assert_non_null(strstr(t.buf, "\033[?1049l"));
	free(t.buf);
}

static void batch(void **state)
{
	struct td_daemon *d = *state;
	struct ct_out o;

	ct_run(&o, "--socket", d->sock, "top", "-n", "2", "-d", "0.1", "-s", "name", NULL);
	CT_EXPECT(&o, 0);
	assert_int_equal(count(o.out, "shmpoolctl top - "), 2);
	assert_non_null(strstr(o.out, "sorted by name"));
	assert_null(strchr(o.out, '\033')); /* no escapes without a terminal */
	ct_free(&o);
	ct_run(&o, "--socket", d->sock, "top", NULL); /* no terminal: one frame */
	CT_EXPECT(&o, 0);
	assert_int_equal(count(o.out, "shmpoolctl top - "), 1);
	ct_free(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(refresh_sort_quit, setup, teardown),
		cmocka_unit_test_setup_teardown(sigterm_restores, setup, teardown),
		cmocka_unit_test_setup_teardown(batch, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
