/* SPDX-License-Identifier: MIT */
/*
 * client-util.h - helpers for the client library's integration tests.
 *
 * Every test runs its own shmpoold (the SHMPOOLD environment variable names
 * the binary) on a socket in a fresh temporary directory and a uniquely
 * named segment, so tests run in parallel and leave nothing behind.  The
 * daemon's stderr goes to a log file that is printed when a check fails.
 *
 * Waiting is always a bounded poll (CL_POLL), never a sleep followed by an
 * assertion about timing.  Forked helper processes must not use cmocka's
 * assertions (they would unwind into the parent's runner): they return a
 * non-zero line number from the helper function instead (CHILD_CHECK).
 */
#ifndef SHMPOOL_CLIENT_UTIL_H
#define SHMPOOL_CLIENT_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "shmpool.h"
#include "test-util.h"

struct cl_daemon {
	pid_t pid;		/* 0 when not running */
	char dir[64];		/* temporary directory: socket and log */
	char sock[108];		/* fits sockaddr_un.sun_path */
	char log[128];
	char shm[64];		/* segment name */
	char size[16];		/* --size argument */
};

/* The daemon of the running test (for cl_dump_log on failures). */
extern struct cl_daemon *cl_current;

/* cmocka setup/teardown: a 16 MiB daemon in *state; teardown stops it,
 * runs the checker on the quiescent segment and removes everything. */
int cl_setup(void **state);
int cl_teardown(void **state);

/* tu_fork() with the fatal signals reset to their defaults, so that a
 * crashing helper dies instead of unwinding into cmocka's runner. */
pid_t cl_fork(int (*fn)(void *arg), void *arg);

/* Start the daemon with the names in @d (made up on first use). */
void cl_daemon_start(struct cl_daemon *d, const char *extra_arg);
/* Kill it with @sig and reap it. */
void cl_daemon_kill(struct cl_daemon *d, int sig);
/* Print the last lines of the daemon's log to stderr. */
void cl_dump_log(void);

/* Connect to the test's daemon, failing the test on error. */
shmp_client *cl_connect(struct cl_daemon *d, const char *name);
/* Ask the daemon to run the checker; fail the test on any violation. */
void cl_check(shmp_client *c);
/* Run the checker on a read-only mapping without locks (daemon stopped). */
void cl_check_offline(const char *shm);

#define CL_FAIL(...)                      \
	do {                              \
		cl_dump_log();            \
		fail_msg(__VA_ARGS__);    \
	} while (0)

/* An int-returning shmp_ call that must succeed. */
#define CL_OK(expr)                                                                        \
	do {                                                                               \
		int cl_rc_ = (expr);                                                       \
		if (cl_rc_ != 0)                                                           \
			CL_FAIL("%s returned %d (%s): %s", #expr, cl_rc_,                  \
				shmp_strerror(cl_rc_), shmp_errmsg());                     \
	} while (0)

/* An int-returning shmp_ call that must fail with @code. */
#define CL_ERR(expr, code)                                                                 \
	do {                                                                               \
		int cl_rc_ = (expr);                                                       \
		if (cl_rc_ != (code))                                                      \
			CL_FAIL("%s returned %d (%s), expected %d (%s): %s", #expr, cl_rc_, \
				shmp_err_name(cl_rc_), (code), shmp_err_name(code),        \
				shmp_errmsg());                                            \
	} while (0)

/* A pointer-returning shmp_ call that must fail with errno @code. */
#define CL_NULL(expr, code)                                                                \
	do {                                                                               \
		errno = 0;                                                                 \
		void *cl_p_ = (expr);                                                      \
		int cl_e_ = errno;                                                         \
		if (cl_p_ || cl_e_ != (code))                                              \
			CL_FAIL("%s returned %p errno %d (%s), expected NULL errno %s: %s", \
				#expr, cl_p_, cl_e_, shmp_err_name(cl_e_),                 \
				shmp_err_name(code), shmp_errmsg());                       \
	} while (0)

/* Poll @cond every millisecond for at most @ms milliseconds; true if it held. */
#define CL_POLL(cond, ms)                                        \
	({                                                       \
		bool cl_ok_ = false;                             \
		for (long cl_i_ = 0; cl_i_ < (ms); cl_i_++) {    \
			if (cond) {                              \
				cl_ok_ = true;                   \
				break;                           \
			}                                        \
			cl_msleep(1);                            \
		}                                                \
		cl_ok_ || (cond);                                \
	})

void cl_msleep(unsigned ms);

/* The system call thread @tid (a pid for a single-threaded process) is
 * blocked in, from /proc/<tid>/syscall; -1 when running or unknown. */
long cl_blocked_syscall(pid_t tid);

/* In forked helpers: return the line number on a failed condition. */
#define CHILD_CHECK(cond)                                                            \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "child %d: %s:%d: %s failed (%s: %s)\n",     \
				(int)getpid(), __FILE__, __LINE__, #cond,            \
				shmp_err_name(errno), shmp_errmsg());                \
			return 1;                                                    \
		}                                                                    \
	} while (0)

#endif
