/* SPDX-License-Identifier: MIT */
/*
 * test-daemon-cli.c - shmpoold's command line and start-up: --help,
 * --version, bad values (exit 2), the default paths of a non-root user,
 * $SHMPOOL_SOCKET, a live daemon on the socket or the segment (exit 1), a
 * stale socket (removed), a non-socket in the way (exit 1), and SIGINT
 * (exit 0, socket gone, segment kept).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon-util.h"

static void help_and_version(void **state)
{
	static const char *const help[] = { "--help", NULL };
	static const char *const version[] = { "--version", NULL };
	char out[8192];

	(void)state;
	assert_int_equal(td_run(help, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "Usage: shmpoold"));
	assert_non_null(strstr(out, "--frame-timeout-ms"));
	assert_non_null(strstr(out, "--reset"));
	assert_non_null(strstr(out, "--allow-uid"));
	assert_non_null(strstr(out, "Exit status"));
	assert_int_equal(td_run(version, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "shmpoold " SHMPOOL_VERSION));
	assert_non_null(strstr(out, "protocol 1"));
}

static void bad_values_exit_2(void **state)
{
	static const char *const cases[][4] = {
		{ "--bogus", NULL },
		{ "--size", "12X", NULL },
		{ "--size", "512K", NULL },
		{ "--size", "-1M", NULL },
		{ "--size", "", NULL },
		{ "--log-level", "loud", NULL },
		{ "--max-clients", "0", NULL },
		{ "--max-clients", "70000", NULL },
		{ "--frame-timeout-ms", "-5", NULL },
		{ "--frame-timeout-ms", "10ms", NULL },
		{ "--shm-name", "noslash", NULL },
		{ "--shm-name", "/a/b", NULL },
		{ "--socket", "", NULL },
		{ "--allow-uid", "no-such-user-here", NULL },
		{ "--allow-gid", "12abc", NULL },
		{ "--socket", NULL },
		{ "stray-argument", NULL },
	};
	char out[4096];

	(void)state;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st = td_run(cases[i], out, sizeof(out));

		if (st != 2 || !strstr(out, "shmpoold: "))
			fail_msg("shmpoold %s %s: exit %d, output: %s", cases[i][0],
				 cases[i][1] ? cases[i][1] : "", st, out);
	}
	/* a long socket path is refused, not truncated */
	{
		char path[200];
		const char *args[] = { "--socket", path, NULL };

		memset(path, 'x', sizeof(path) - 1);
		path[0] = '/';
		path[sizeof(path) - 1] = '\0';
		assert_int_equal(td_run(args, out, sizeof(out)), 2);
		assert_non_null(strstr(out, "107 bytes"));
	}
}

static void live_daemon_refused(void **state)
{
	struct td_daemon a, b;
	char other_sock[128];
	const char *same_shm_args[] = { "--socket", other_sock, NULL };

	(void)state;
	td_init(&a);
	td_start(&a, NULL);
	/* the same socket path */
	td_init(&b);
	snprintf(b.sock, sizeof(b.sock), "%s", a.sock);
	td_spawn(&b, NULL);
	assert_int_equal(td_wait_exit(&b), 1);
	assert_true(td_log_contains(&b, "already listening"));
	assert_int_equal(shm_open(b.shm, O_RDONLY, 0), -1); /* it stopped before its segment */
	/* the same segment through another socket */
	snprintf(b.shm, sizeof(b.shm), "%s", a.shm);
	snprintf(other_sock, sizeof(other_sock), "%s/other.sock", b.dir);
	td_spawn(&b, same_shm_args);
	assert_int_equal(td_wait_exit(&b), 1);
	assert_true(td_log_contains(&b, "in use by another shmpoold"));
	assert_int_equal(access(other_sock, F_OK), -1);
	/* the first daemon did not notice */
	{
		struct td_client c;

		td_client_open(&c, &a, "still-there");
		td_check_clean(c.fd);
		td_client_close(&c, true);
	}
	snprintf(b.shm, sizeof(b.shm), "/shmpool-dtest-none"); /* a's is not b's to unlink */
	td_cleanup(&b);
	assert_int_equal(td_stop(&a), 0);
	td_cleanup(&a);
}

static void stale_socket_and_obstacles(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct td_daemon d;
	int fd;

	(void)state;
	td_init(&d);
	/* a socket file nobody listens on: what a killed daemon leaves */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d.sock);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	td_start(&d, NULL);
	assert_true(td_log_contains(&d, "removed stale socket"));
	{
		struct stat st;

		assert_int_equal(stat(d.sock, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0660);
	}
	assert_int_equal(td_stop(&d), 0);
	/* a regular file in the way is left alone */
	fd = open(d.sock, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	td_spawn(&d, NULL);
	assert_int_equal(td_wait_exit(&d), 1);
	assert_true(td_log_contains(&d, "is not a socket"));
	assert_int_equal(access(d.sock, F_OK), 0);
	td_cleanup(&d);
}

static void sigint_is_clean(void **state)
{
	struct td_daemon d;
	int fd;

	(void)state;
	td_init(&d);
	td_start(&d, NULL);
	kill(d.pid, SIGINT);
	assert_int_equal(td_wait_exit(&d), 0);
	assert_true(td_log_contains(&d, "SIGINT: shutting down"));
	assert_int_equal(access(d.sock, F_OK), -1);
	fd = shm_open(d.shm, O_RDONLY, 0);
	assert_true(fd >= 0);
	close(fd);
	td_cleanup(&d);
}

static void socket_from_environment(void **state)
{
	struct td_daemon d;

	(void)state;
	td_init(&d);
	d.socket_from_env = true;
	snprintf(d.sock, sizeof(d.sock), "%s/from-env.sock", d.dir);
	setenv("SHMPOOL_SOCKET", d.sock, 1);
	td_start(&d, NULL);
	unsetenv("SHMPOOL_SOCKET");
	assert_true(td_log_wait(&d, "from-env.sock")); /* the "ready" line */
	assert_int_equal(td_stop(&d), 0);
	td_cleanup(&d);
}

/* a uid no one uses, unique per test run: the defaults depend on it */
static uid_t user_uid;
#define USER_UID user_uid

/* Run shmpoold as USER_UID with only defaults; check where it listens. */
static void defaults_of_a_user(const char *xdg, const char *expect_sock)
{
	char shm[64];
	pid_t pid;
	int st = -1;

	snprintf(shm, sizeof(shm), "/shmpool-%u", (unsigned)USER_UID);
	shm_unlink(shm);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		const char *argv[] = { td_exe(), "--size", "4M", NULL };

		if (setgroups(0, NULL) || setgid(USER_UID) || setuid(USER_UID))
			_exit(98);
		unsetenv("SHMPOOL_SOCKET");
		if (xdg)
			setenv("XDG_RUNTIME_DIR", xdg, 1);
		else
			unsetenv("XDG_RUNTIME_DIR");
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 4000; i++) { /* bounded: wait until it accepts */
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool up;

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", expect_sock);
		up = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(fd);
		if (up)
			break;
		if (waitpid(pid, &st, WNOHANG) == pid)
			fail_msg("shmpoold as uid %u exited (%d) without listening on %s",
				 (unsigned)USER_UID, st, expect_sock);
		td_nap();
	}
	{
		struct stat dir;
		char d[128];

		snprintf(d, sizeof(d), "%s", expect_sock);
		*strrchr(d, '/') = '\0';
		assert_int_equal(stat(d, &dir), 0);
		assert_int_equal(dir.st_mode & 0777, 0700);
		assert_int_equal(dir.st_uid, USER_UID);
	}
	{
		int fd = shm_open(shm, O_RDONLY, 0);

		if (fd < 0)
			fail_msg("no default segment %s", shm);
		close(fd);
	}
	kill(pid, SIGTERM);
	assert_int_equal(td_waitpid(pid, 20000), 0);
	shm_unlink(shm);
}

static void default_paths_of_a_user(void **state)
{
	char xdg[64], sock[128], dir[64];

	(void)state;
	if (geteuid() != 0)
		skip(); /* needs setuid to play a user */
	user_uid = (uid_t)(40000 + getpid() % 20000);
	snprintf(xdg, sizeof(xdg), "/tmp/shmpool-dtest-xdg-XXXXXX");
	assert_non_null(mkdtemp(xdg));
	assert_int_equal(chown(xdg, USER_UID, USER_UID), 0);
	snprintf(sock, sizeof(sock), "%s/shmpool/shmpool.sock", xdg);
	defaults_of_a_user(xdg, sock);
	unlink(sock);
	snprintf(sock, sizeof(sock), "%s/shmpool", xdg);
	rmdir(sock);
	rmdir(xdg);

	/* no $XDG_RUNTIME_DIR: /tmp/shmpool-$UID */
	snprintf(dir, sizeof(dir), "/tmp/shmpool-%u", (unsigned)USER_UID);
	snprintf(sock, sizeof(sock), "%s/shmpool.sock", dir);
	unlink(sock);
	rmdir(dir);
	defaults_of_a_user(NULL, sock);
	unlink(sock);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(help_and_version),
		cmocka_unit_test(bad_values_exit_2),
		cmocka_unit_test(live_daemon_refused),
		cmocka_unit_test(stale_socket_and_obstacles),
		cmocka_unit_test(sigint_is_clean),
		cmocka_unit_test(socket_from_environment),
		cmocka_unit_test(default_paths_of_a_user),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
