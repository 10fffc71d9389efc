/* SPDX-License-Identifier: MIT */
/*
 * rel-util.h - helpers of the reliability tests (tests/reliability): what a
 * process uses (RSS, open fds), file descriptor limits, the long (soak)
 * versions' parameters, and the daemon's own view over the raw protocol.
 *
 * The tests start their daemons with daemon-util.h (td_*) and drive them
 * with libshmpool clients in forked processes (client-util.h).  Every
 * wait is a bounded polling loop: no timed assertions.
 */
#ifndef SHMPOOL_REL_UTIL_H
#define SHMPOOL_REL_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon-util.h"

/* /proc/PID/status and /proc/PID/fd of a process, in kB and fds. */
struct rel_sample {
	uint64_t vm_rss_kb;	/* VmRSS: private + shared pages mapped */
	uint64_t rss_anon_kb;	/* RssAnon: private memory (where a leak shows) */
	uint64_t rss_shmem_kb;	/* RssShmem: pages of the segment it touched */
	unsigned fds;		/* entries of /proc/PID/fd */
};

/* Sample @pid; false when it is gone. */
bool rel_sample(pid_t pid, struct rel_sample *s);

/* Set this process's RLIMIT_NOFILE soft limit (children inherit it), at
 * most the hard limit; returns the soft limit now in force. */
unsigned long rel_set_nofile(unsigned long want);

/* $SHMPOOL_SOAK set (`make soak`): pick the long version's parameter.
 * $@env overrides both. */
long rel_param(const char *env, long short_version, long soak_version);

/* A raw protocol connection to @d after Hello (for Stats, Check, Reclaim). */
int rel_admin(const struct td_daemon *d);
/* Stats over @fd; the caller td_free()s it. */
Shmpool__Response *rel_stats(int fd);
/* The cache named @name in a Stats reply, or NULL. */
Shmpool__CacheInfo *rel_stats_cache(Shmpool__Response *stats, const char *name);

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t rel_now_ms(void);

#endif
