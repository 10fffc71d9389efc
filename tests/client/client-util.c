/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client-util.h"

struct cl_daemon *cl_current;
static unsigned cl_counter;

void cl_msleep(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

pid_t cl_fork(int (*fn)(void *arg), void *arg)
{
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			signal(sigs[i], SIG_DFL);
		/* a helper stuck in a failed test must not outlive it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(fn(arg));
	}
	return pid;
}

long cl_blocked_syscall(pid_t tid)
{
	char path[64], buf[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)tid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	if (buf[0] < '0' || buf[0] > '9')
		return -1; /* "running" */
	return strtol(buf, NULL, 10);
}

void cl_dump_log(void)
{
	char line[512];
	FILE *f;

	if (!cl_current || !cl_current->log[0] || !(f = fopen(cl_current->log, "r")))
		return;
	fprintf(stderr, "---- shmpoold log (%s) ----\n", cl_current->log);
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fprintf(stderr, "---- end of log ----\n");
	fclose(f);
}

static bool socket_answers(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ok = s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (s >= 0)
		close(s);
	return ok;
}

void cl_daemon_start(struct cl_daemon *d, const char *extra_arg)
{
	const char *bin = getenv("SHMPOOLD");
	int st;

	if (!bin || !*bin)
		fail_msg("SHMPOOLD is not set: run the tests through meson");
	if (!d->dir[0]) {
		snprintf(d->dir, sizeof(d->dir), "/tmp/shmpool-cltest-XXXXXX");
		if (!mkdtemp(d->dir))
			fail_msg("mkdtemp: %s", strerror(errno));
		snprintf(d->sock, sizeof(d->sock), "%s/shmpool.sock", d->dir);
		snprintf(d->log, sizeof(d->log), "%s/shmpoold.log", d->dir);
		tu_sweep_stale_segments();
		snprintf(d->shm, sizeof(d->shm), "/shmpool-cltest-%d-%u", (int)getpid(),
			 cl_counter++);
		if (!d->size[0])
			snprintf(d->size, sizeof(d->size), "16M");
		shm_unlink(d->shm);
	}
	cl_current = d;
	fflush(NULL);
	d->pid = fork();
	if (d->pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (d->pid == 0) {
		int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
			close(fd);
		}
		execl(bin, bin, "--socket", d->sock, "--shm-name", d->shm, "--size", d->size,
		      "--log-level", "debug", extra_arg, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	/* ready when the socket accepts a connection; bounded */
	for (int i = 0; i < 10000; i++) {
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			d->pid = 0;
			CL_FAIL("shmpoold exited at start (status %#x)", st);
		}
		if (socket_answers(d->sock))
			return;
		cl_msleep(1);
	}
	CL_FAIL("shmpoold did not start listening on %s", d->sock);
}

void cl_daemon_kill(struct cl_daemon *d, int sig)
{
	int st;

	if (d->pid <= 0)
		return;
	kill(d->pid, sig);
	while (waitpid(d->pid, &st, 0) < 0 && errno == EINTR)
		;
	d->pid = 0;
	if (sig == SIGTERM && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
		CL_FAIL("shmpoold did not stop cleanly on SIGTERM (status %#x)", st);
}

shmp_client *cl_connect(struct cl_daemon *d, const char *name)
{
	shmp_client *c = NULL;

	CL_OK(shmp_connect(d->sock, name, &c));
	return c;
}

void cl_check(shmp_client *c)
{
	unsigned n = 1;

	CL_OK(shmp_check(c, &n));
	if (n)
		CL_FAIL("the daemon's checker found %u violation(s): %s", n, shmp_errmsg());
}

void cl_check_offline(const char *shm)
{
	struct sp_seg *s = NULL;
	int rc = sp_seg_attach(shm, -1, SP_ATTACH_RDONLY, &s), n;

	if (rc)
		CL_FAIL("read-only attach of %s: %s: %s", shm, sp_strerror(rc), sp_errmsg());
	n = tu_check_count(s, SP_CHECK_NOLOCK);
	sp_seg_detach(s);
	if (n)
		CL_FAIL("checker found %d violation(s) in %s", n, shm);
}

int cl_setup(void **state)
{
	struct cl_daemon *d = calloc(1, sizeof(*d));

	if (!d)
		return -1;
	cl_daemon_start(d, NULL);
	*state = d;
	return 0;
}

int cl_teardown(void **state)
{
	struct cl_daemon *d = *state;
	char path[192];

	if (!d)
		return 0;
	cl_daemon_kill(d, SIGTERM);
	if (d->shm[0]) {
		cl_check_offline(d->shm);
		shm_unlink(d->shm);
	}
	unlink(d->sock);
	if (getenv("SHMPOOL_TEST_KEEP_LOG"))
		cl_dump_log();
	unlink(d->log);
	snprintf(path, sizeof(path), "%s", d->dir);
	rmdir(path);
	cl_current = NULL;
	free(d);
	*state = NULL;
	return 0;
}
