/* SPDX-License-Identifier: MIT */
/*
 * ctl.h - shmpoolctl's internal interfaces.  Not installed.
 *
 * shmpoolctl looks inside a shmpool segment the way slabtop, /proc/slabinfo
 * and /proc/buddyinfo look inside the kernel's allocator, and administers
 * pools.  It is a client of shmpoold: it speaks the protocol
 * (proto/shmpool.proto) over the daemon's socket with libshmpool's framing
 * (client/wire.c, linked from the static library), says Hello like any
 * client (so it holds a client slot while it runs: `clients` marks it) and
 * Goodbye when done.
 *
 * Files (one subsystem each):
 *   main.c      command line, dispatch, exit codes, --help/--version
 *   source.c    where the views come from: the daemon (connect, Hello,
 *               requests, Goodbye) or, with --segment, offline.c
 *   offline.c   a segment mapped read-only without a daemon: the same
 *               Stats/Check replies built from the segment, bounds-checked
 *   output.c    aligned tables, units (KiB, MiB), percentages, JSON (json-c)
 *   commands.c  status, pools, pool, caches, buddyinfo, clients, check
 *   admin.c     create, destroy, resize, reclaim
 *   metrics.c   the Prometheus text exposition format
 *   top.c       the live slabtop-like view (ANSI + termios)
 *
 * One model for both sources: every read command asks for a Stats (or
 * Check) Response and renders it; offline.c builds exactly the Response
 * the daemon would send (packed and unpacked again, so ownership is the
 * same: shmpool__response__free_unpacked()).  Rendering never trusts the
 * counts: names are printed sanitized and every ratio guards its divisor.
 *
 * Exit codes: 0 ok; 1 check failed, not found, or refused by the daemon;
 * 2 usage; 3 daemon unreachable (the message names the socket tried).
 */
#ifndef SHMPOOL_CTL_H
#define SHMPOOL_CTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <json-c/json.h>

#include "core.h"
#include "shmpool.pb-c.h"

enum {
	CTL_EXIT_OK = 0,
	CTL_EXIT_FAIL = 1,	/* check failed, not found, refused */
	CTL_EXIT_USAGE = 2,
	CTL_EXIT_UNREACHABLE = 3,
};

#define CTL_PROTOCOL_VERSION	1u
#define CTL_TIMEOUT_MS		10000	/* per reply from the daemon */

/* struct ctl_opts - the command line.  Process-private. */
struct ctl_opts {
	const char *socket;	/* --socket, or NULL for the default */
	const char *segment;	/* --segment: offline, read-only */
	bool json;
	bool all;		/* caches --all: empty kmalloc classes too */
	/* create */
	uint32_t max_nr;
	bool pages;		/* page backing */
	bool kmalloc;		/* kmalloc-class backing */
	uint32_t pool_flags;	/* SP_POOL_* */
	uint32_t cache_flags;	/* SP_CACHE_USER_FLAGS */
	uint32_t align;
	uint32_t mode;
	/* top */
	double delay_s;		/* refresh interval */
	const char *sort;	/* sort key */
	long iterations;	/* 0: until q */
};

/* ---- source.c ------------------------------------------------------------- */

/* struct ctl_src - the daemon connection or the offline segment.  Private. */
struct ctl_src {
	bool offline;
	char socket_path[108];	/* the socket tried (daemon) */
	int sock;
	struct shmp__rbuf *rbuf; /* what sock delivered beyond the frames read */
	uint32_t slot;		/* our client slot (daemon), else UINT32_MAX */
	uint64_t next_id;
	struct sp_seg *seg;	/* offline */
	char seg_name[256];
};

int ctl_src_open(struct ctl_src *src, const struct ctl_opts *o);
void ctl_src_close(struct ctl_src *src);
int ctl_call(struct ctl_src *src, Shmpool__Request *q, Shmpool__Response **out);
int ctl_stats(struct ctl_src *src, Shmpool__Response **out);
int ctl_exit_code(const struct ctl_src *src, const Shmpool__Response *r);
int ctl_report(const struct ctl_src *src, int err, const Shmpool__Response *r,
	       const char *what);

/* ---- offline.c ------------------------------------------------------------ */

int ctl_offline_open(const char *name, struct sp_seg **out);
int ctl_offline_call(struct sp_seg *s, const Shmpool__Request *q, Shmpool__Response **out);

/* ---- output.c ------------------------------------------------------------- */

/* struct ctl_table - rows of cells, printed with aligned columns.  Private. */
struct ctl_table {
	unsigned ncols;
	const char *const *heads;
	const char *align;	/* per column: 'l' or 'r' */
	char **cells;		/* nrows * ncols */
	unsigned nrows, cap;
	unsigned cur;		/* next cell of the last row */
};

void ctl_table_init(struct ctl_table *t, const char *const *heads, const char *align);
void ctl_table_row(struct ctl_table *t);
void ctl_table_cell(struct ctl_table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ctl_table_print(const struct ctl_table *t, FILE *f, int width, int bold_col);
void ctl_table_free(struct ctl_table *t);

const char *ctl_bytes(char *buf, size_t size, uint64_t n);
const char *ctl_pct(char *buf, size_t size, uint64_t part, uint64_t whole);
const char *ctl_duration(char *buf, size_t size, uint64_t s);
const char *ctl_time(char *buf, size_t size, uint64_t unix_s);
void ctl_json_print(json_object *o);
json_object *ctl_json_u64(uint64_t v);
const char *ctl_str(const char *s);

/* ---- commands.c, admin.c ----------------------------------------------------------- */

typedef int (*ctl_cmd_fn)(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv);

int ctl_cmd_status(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_pools(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_pool(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_caches(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_buddyinfo(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_clients(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_check(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_create(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_destroy(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_resize(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_reclaim(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_metrics(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_top(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv);

/* Shared by commands.c, admin.c, metrics.c and top.c. */
const char *ctl_cache_kind(const Shmpool__CacheInfo *c);
const char *ctl_backing_name(uint32_t b);
json_object *ctl_json_pool(const Shmpool__PoolInfo *p, const Shmpool__CacheInfo *c);
uint64_t ctl_cache_bytes(const Shmpool__CacheInfo *c);
json_object *ctl_json_cache(const Shmpool__CacheInfo *c);
int ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* SHMPOOL_CTL_H */
