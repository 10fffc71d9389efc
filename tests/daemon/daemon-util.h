/* SPDX-License-Identifier: MIT */
/*
 * daemon-util.h - helpers for the daemon tests: start and stop a private
 * shmpoold, and talk to it byte by byte.
 *
 * Each test starts its own daemon (the executable named by $SHMPOOLD, set
 * by meson) on a socket in a fresh temporary directory and a unique
 * segment name, waits until it accepts connections, and cleans up: the
 * daemon is stopped (killed if need be), the segment unlinked, the
 * directory removed, and the daemon's log copied to the test's stderr.
 * Whatever a failed test left behind is removed at exit (TD_KEEP_LOGS=1 in
 * the environment keeps the daemons' logs of such tests for a look).
 *
 * The raw client frames requests itself (4-byte big-endian length +
 * protobuf), can send arbitrary bytes, and receives responses with
 * recvmsg() so the segment fd passed with the Hello response is caught.
 * Every socket has a 10 s receive timeout: a daemon that fails to answer
 * fails the test instead of hanging it.  Waiting for an event (a daemon
 * ready, a slot marked dead) polls in bounded loops: no timed assertions.
 */
#ifndef SHMPOOL_DAEMON_UTIL_H
#define SHMPOOL_DAEMON_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/types.h>

#include "core.h"
#include "shmpool.pb-c.h"

#define TD_PROTOCOL_VERSION 1u

/* ---- the daemon ------------------------------------------------------------ */

struct td_daemon {
	char dir[64];		/* temporary directory: socket and log */
	char sock[108];
	char shm[64];
	char log[128];		/* the daemon's stderr */
	bool socket_from_env;	/* leave out --socket ($SHMPOOL_SOCKET is d->sock) */
	pid_t pid;		/* 0 when not running */
	int status;		/* exit code (or 128 + signal) of the last run */
};

/* Fresh names; nothing started.  Daemons run with --size 16M --log-level debug. */
void td_init(struct td_daemon *d);
/* Start shmpoold with the test's socket and segment plus @extra (NULL-ended). */
pid_t td_spawn(struct td_daemon *d, const char *const *extra);
/* Wait until the socket accepts; 0, or -1 when the daemon exited (d->status). */
int td_wait_ready(struct td_daemon *d);
/* td_spawn + td_wait_ready, failing the test if the daemon does not come up. */
void td_start(struct td_daemon *d, const char *const *extra);
/* SIGTERM and wait; returns the exit status. */
int td_stop(struct td_daemon *d);
/* SIGKILL and reap. */
void td_kill9(struct td_daemon *d);
/* Wait for a daemon that exits by itself (bad flags); returns its status. */
int td_wait_exit(struct td_daemon *d);
/* Stop if running, unlink segment and socket, dump and remove the log. */
void td_cleanup(struct td_daemon *d);
/* Does the daemon's log hold @needle? */
bool td_log_contains(const struct td_daemon *d, const char *needle);
/* The same, waiting (bounded) for a line the daemon writes after it began
 * to listen, such as "ready" (td_start() returns once it listens). */
bool td_log_wait(const struct td_daemon *d, const char *needle);
/* Run shmpoold with exactly @argv (after argv[0]) to completion; its output
 * (stdout + stderr) goes to @out (size @size).  Returns the exit status. */
int td_run(const char *const *argv, char *out, size_t size);
/* Path of the shmpoold executable. */
const char *td_exe(void);

/* Wait for a child process (bounded); exit code, 128 + signal, or -1. */
int td_waitpid(pid_t pid, int timeout_ms);

/* ---- the raw protocol -------------------------------------------------------- */

int td_connect(const char *sock);
void td_send_raw(int fd, const void *buf, size_t len);
void td_send_frame(int fd, const void *payload, uint32_t len);
void td_send_request(int fd, const Shmpool__Request *q);
/* A response; NULL on EOF.  *passed_fd (if not NULL) gets an SCM_RIGHTS fd or -1. */
Shmpool__Response *td_recv(int fd, int *passed_fd);
Shmpool__Response *td_call(int fd, Shmpool__Request *q, int *passed_fd);
/* Read until EOF (bounded by the receive timeout): true when the daemon closed. */
bool td_closed_by_peer(int fd);
void td_free(Shmpool__Response *r);

/* One request of each kind (id = a counter). */
Shmpool__Response *td_hello(int fd, const char *name, int *segfd);
Shmpool__Response *td_hello_resume(int fd, uint32_t slot, uint64_t token, int *segfd);
Shmpool__Response *td_pool_create(int fd, const char *name, uint64_t elem_size, uint32_t min_nr,
				  uint32_t flags);
Shmpool__Response *td_pool_create_ex(int fd, Shmpool__PoolCreate *pc);
Shmpool__Response *td_name_op(int fd, Shmpool__Request__OpCase op, const char *name);
Shmpool__Response *td_pool_resize(int fd, const char *name, uint32_t min_nr);
Shmpool__Response *td_cache_create(int fd, const char *name, uint64_t obj_size,
				   const void *tmpl, size_t tlen);
Shmpool__Response *td_simple(int fd, Shmpool__Request__OpCase op);
Shmpool__Response *td_reclaim(int fd, uint32_t slot);

/* Fail the test unless @r has @status (prints the daemon's message). */
#define TD_EXPECT(r, st) td_expect_((r), (st), #r, __FILE__, __LINE__)
void td_expect_(Shmpool__Response *r, int status, const char *expr, const char *file, int line);
/* TD_EXPECT and free in one go. */
#define TD_EXPECT_FREE(r, st)                                         \
	do {                                                          \
		Shmpool__Response *td_r_ = (r);                      \
		td_expect_(td_r_, (st), #r, __FILE__, __LINE__);      \
		td_free(td_r_);                                       \
	} while (0)

/* ---- a well-behaved client ---------------------------------------------------- */

struct td_client {
	int fd;
	uint32_t slot;
	uint64_t token;
	struct sp_seg *seg;	/* mapped from the fd the daemon passed */
};

/* Connect, Hello, map the passed fd and allocate as the slot. */
void td_client_open(struct td_client *c, const struct td_daemon *d, const char *name);
/* Goodbye (if @goodbye), close, unmap. */
void td_client_close(struct td_client *c, bool goodbye);
/* The pool named @name as this client's mapping sees it (via PoolOpen). */
struct sp_pool *td_client_pool(struct td_client *c, const char *name);
/* Check over the protocol: fail the test with the violations unless clean. */
void td_check_clean(int fd);
/* Stats helpers (the caller frees the response). */
Shmpool__ClientInfo *td_stats_client(Shmpool__Response *stats, uint32_t slot);
Shmpool__PoolInfo *td_stats_pool(Shmpool__Response *stats, const char *name);

/*
 * Fail: in the test process through cmocka; in a forked helper (which must
 * not return into the test runner) by printing and _exit(99).
 */
void td_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#define TD_CHECK(cond)                                                              \
	do {                                                                        \
		if (!(cond))                                                        \
			td_fail("%s:%d: check failed: %s", __FILE__, __LINE__, #cond); \
	} while (0)

/* Sleep a little (polling loops). */
void td_nap(void);

#endif
