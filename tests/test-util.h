/* SPDX-License-Identifier: MIT */
/*
 * test-util.h - helpers shared by the core tests: unique segments, forked
 * helper processes, and the whole-segment checker as an assertion.
 *
 * Every test creates its own segment under a unique POSIX shm name and
 * unlinks it at the end, so tests can run in parallel.
 */
#ifndef SHMPOOL_TEST_UTIL_H
#define SHMPOOL_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/types.h>

#include "core.h"

/*
 * Unlink the segments (/dev/shm/shmpool-{test,dtest,cltest}-PID-N) that
 * test processes no longer running left behind: a failed assertion or a
 * crash skips a test's cleanup, and each such segment keeps its memory.
 * Once per process; the segment helpers call it.
 */
void tu_sweep_stale_segments(void);

/* A fresh segment of @size bytes (0: 16 MiB) with a registered slot. */
struct sp_seg *tu_seg_new(uint64_t size);
struct sp_seg *tu_seg_new_params(const struct sp_seg_params *p);
/* Detach and unlink a segment made by tu_seg_new(). */
void tu_seg_free(struct sp_seg *s);
/* Attach the same segment again (e.g. in a forked child) with its own slot. */
struct sp_seg *tu_seg_reattach(struct sp_seg *s, const char *client_name);
/* For a forked child, which must never call cmocka (a failed assertion
 * would longjmp into the child's copy of the test runner): its own mapping
 * of @shm_name with its own slot, or NULL on failure. */
struct sp_seg *tu_child_attach(const char *shm_name, const char *client_name);
/* For a forked child: die of its own faults instead of cmocka's handlers. */
void tu_child_signals_default(void);
/* Register a slot for this process and use it. */
void tu_register(struct sp_seg *s, const char *name);

/* Run the checker; fail the test with every violation printed unless clean. */
void tu_check_clean(struct sp_seg *s);
/* Run the checker; return the number of violations (printing up to 5). */
int tu_check_count(struct sp_seg *s, int flags);

/* Fork a child that runs fn(arg) and exits with its return value. */
pid_t tu_fork(int (*fn)(void *arg), void *arg);
/* Wait for a child; return its exit status, or 128 + signal. */
int tu_wait(pid_t pid);

/* Deterministic PRNG (xorshift64*) for reproducible stress runs. */
uint64_t tu_rand(uint64_t *state);
/* An integer from the environment, or @def. */
long tu_env_long(const char *name, long def);
/* Does the file at @path (its first MiB: a daemon's log) hold @needle? */
bool tu_file_contains(const char *path, const char *needle);
/* Is @pid stopped (SIGSTOP, or traced)?  From /proc/PID/stat. */
bool tu_process_stopped(pid_t pid);

#define TU_ASSERT_OK(expr)                                                           \
	do {                                                                         \
		int tu_rc_ = (expr);                                                 \
		if (tu_rc_ != 0)                                                     \
			fail_msg("%s returned %d (%s): %s", #expr, tu_rc_,           \
				 sp_strerror(tu_rc_), sp_errmsg());                  \
	} while (0)

#endif
