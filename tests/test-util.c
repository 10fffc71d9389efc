/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-util.h"

static unsigned seg_counter;

void tu_sweep_stale_segments(void)
{
	static const char *const prefixes[] = { "shmpool-test-", "shmpool-dtest-",
						"shmpool-cltest-" };
	static bool swept;
	struct dirent *e;
	DIR *d;

	if (swept)
		return;
	swept = true;
	d = opendir("/dev/shm");
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		for (unsigned i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
			size_t n = strlen(prefixes[i]);
			char *end, path[300];
			long pid;

			if (strncmp(e->d_name, prefixes[i], n))
				continue;
			errno = 0;
			pid = strtol(e->d_name + n, &end, 10);
			/* only NAME-PID-N of a process that is gone (a reused pid keeps it) */
			if (errno || end == e->d_name + n || *end != '-' || pid <= 0 ||
			    kill((pid_t)pid, 0) == 0 || errno != ESRCH)
				break;
			snprintf(path, sizeof(path), "/%s", e->d_name);
			shm_unlink(path);
			break;
		}
	}
	closedir(d);
}

struct sp_seg *tu_seg_new_params(const struct sp_seg_params *p)
{
	char name[128];
	struct sp_seg *s = NULL;
	int rc;

	tu_sweep_stale_segments();
	snprintf(name, sizeof(name), "/shmpool-test-%d-%u", (int)getpid(), seg_counter++);
	shm_unlink(name);
	rc = sp_seg_create(name, -1, p, &s);
	if (rc)
		fail_msg("sp_seg_create(%s): %s: %s", name, sp_strerror(rc), sp_errmsg());
	tu_register(s, "test");
	return s;
}

struct sp_seg *tu_seg_new(uint64_t size)
{
	struct sp_seg_params p;

	sp_seg_params_default(&p);
	p.size = size ? size : 16u << 20;
	return tu_seg_new_params(&p);
}

void tu_register(struct sp_seg *s, const char *name)
{
	uint32_t slot;

	TU_ASSERT_OK(sp_client_register(s, name, getpid(), getuid(), getgid(), &slot));
	TU_ASSERT_OK(sp_client_use_slot(s, slot));
}

struct sp_seg *tu_seg_reattach(struct sp_seg *s, const char *client_name)
{
	struct sp_seg *n = NULL;

	TU_ASSERT_OK(sp_seg_attach(s->name, -1, 0, &n));
	if (client_name)
		tu_register(n, client_name);
	return n;
}

struct sp_seg *tu_child_attach(const char *shm_name, const char *client_name)
{
	struct sp_seg *s = NULL;
	uint32_t slot;

	if (sp_seg_attach(shm_name, -1, 0, &s))
		return NULL;
	if (sp_client_register(s, client_name, getpid(), getuid(), getgid(), &slot) ||
	    sp_client_use_slot(s, slot)) {
		sp_seg_detach(s);
		return NULL;
	}
	return s;
}

void tu_child_signals_default(void)
{
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGABRT };

	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], SIG_DFL);
}

void tu_seg_free(struct sp_seg *s)
{
	char name[256];

	snprintf(name, sizeof(name), "%s", s->name);
	sp_seg_detach(s);
	shm_unlink(name);
}

int tu_check_count(struct sp_seg *s, int flags)
{
	struct sp_report r = { .cap = 64 };
	int n;

	r.v = calloc(r.cap, sizeof(*r.v));
	n = sp_check(s, flags, &r);
	for (unsigned i = 0; i < r.nr && i < r.cap && i < 5; i++)
		fprintf(stderr, "  violation: %s\n", r.v[i].what);
	sp_report_free(&r);
	return n;
}

void tu_check_clean(struct sp_seg *s)
{
	int n = tu_check_count(s, 0);

	if (n != 0)
		fail_msg("checker found %d violation(s)", n);
}

pid_t tu_fork(int (*fn)(void *arg), void *arg)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0)
		_exit(fn(arg));
	return pid;
}

int tu_wait(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

uint64_t tu_rand(uint64_t *state)
{
	uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ULL;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

long tu_env_long(const char *name, long def)
{
	const char *v = getenv(name);

	return v && *v ? strtol(v, NULL, 0) : def;
}

bool tu_file_contains(const char *path, const char *needle)
{
	static char buf[1 << 20];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

/* Is @pid stopped (state T or t in /proc/PID/stat)? */
bool tu_process_stopped(pid_t pid)
{
	char path[64], buf[512] = "", *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	p = strrchr(buf, ')');
	return p && (p[2] == 'T' || p[2] == 't');
}
