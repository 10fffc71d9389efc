/* SPDX-License-Identifier: MIT */
/*
 * shmpoold.h - the daemon's internal interfaces.  Not installed.
 *
 * Files (one subsystem each):
 *   main.c     options, defaults, --help/--version, exit codes, signals
 *   config.c   the configuration file (--config), value parsers
 *   systemd.c  socket activation and readiness (sd_listen_fds, sd_notify)
 *   log.c      one line per event on stderr, filtered by --log-level
 *   owner.c    the segment the daemon owns: create, re-attach, --reset,
 *              what it found, reaping dead clients
 *   server.c   the listening socket, accept, SO_PEERCRED, the allow-list
 *   session.c  one connection: framing, flow control, idle timeout, close
 *   rpc.c      one Request: dispatch to the core, permissions, Response
 *   views.c    core structures -> protobuf messages (PoolInfo, Stats, ...)
 *
 * Everything here is process-private and single-threaded: the libuv loop
 * runs every callback on the main thread, so no daemon structure needs a
 * lock.  The shared segment is only touched through the core (shared/),
 * whose calls may sleep on a shared lock for at most SPD_LOCK_TIMEOUT_MS.
 *
 * Exit codes: 0 clean shutdown (SIGTERM/SIGINT), 1 failure at start or run
 * time (bad segment, socket in use, ...), 2 bad command line or
 * configuration file.
 */
#ifndef SHMPOOLD_H
#define SHMPOOLD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>
#include <uv.h>

#include "core.h"
#include "shmpool.pb-c.h"

#define SPD_PROTOCOL_VERSION	1u
#define SPD_FRAME_MAX		65536u	/* largest frame payload, both directions */
#define SPD_LOCK_TIMEOUT_MS	2000	/* never hang on a lock wedged by corruption */
#define SPD_REAP_INTERVAL_MS	2000	/* look for unconnected slots whose process died */
#define SPD_MAX_ALLOW		64	/* --allow-uid / --allow-gid entries */

enum { SPD_EXIT_OK = 0, SPD_EXIT_FAILURE = 1, SPD_EXIT_USAGE = 2 };

/* ---- log.c ---------------------------------------------------------------- */

enum spd_log_level { SPD_LOG_ERROR = 0, SPD_LOG_WARN, SPD_LOG_INFO, SPD_LOG_DEBUG };

int spd_log_parse_level(const char *s, enum spd_log_level *out);
void spd_log_set_level(enum spd_log_level level);
bool spd_log_enabled(enum spd_log_level level);
void spd_log(enum spd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void spd_sanitize(char *dst, size_t size, const char *src, size_t max);

#define spd_error(...) spd_log(SPD_LOG_ERROR, __VA_ARGS__)
#define spd_warn(...)  spd_log(SPD_LOG_WARN, __VA_ARGS__)
#define spd_info(...)  spd_log(SPD_LOG_INFO, __VA_ARGS__)
#define spd_debug(...) spd_log(SPD_LOG_DEBUG, __VA_ARGS__)

/* ---- the daemon ----------------------------------------------------------- */

/*
 * struct spd_pool_decl - a [pool NAME] of the configuration file: created
 * at start when missing.  Process-private.
 */
struct spd_pool_decl {
	char name[SP_NAME_MAX + 1];
	uint64_t elem_size;
	uint32_t min_nr, max_nr;
	uint32_t backing;	/* enum sp_backing */
	uint32_t flags;		/* SP_POOL_* */
	uint32_t cache_flags;	/* SP_CACHE_USER_FLAGS */
	uint32_t align;
	uint32_t mode;
	unsigned line;		/* of its section header, for messages */
};

/*
 * struct spd_config - built-in defaults, then the configuration file, then
 * the command line.  Process-private.
 */
struct spd_config {
	char config_path[4096];	/* the file read, "" for none */
	char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	bool socket_set;	/* by the file or a flag */
	bool socket_default;	/* a default path: create its directory */
	uint32_t socket_mode;	/* permission bits of the socket (0660) */
	uint32_t socket_gid;	/* group of the socket, if socket_gid_set */
	bool socket_gid_set;
	int listen_fd;		/* socket activation: the inherited socket, else -1 */
	char shm_name[256];
	bool shm_name_set;
	uint64_t size;		/* bytes of a new segment */
	bool size_set;
	bool reset;		/* unlink an existing segment and create anew */
	enum spd_log_level log_level;
	unsigned frame_timeout_ms; /* a partial frame idle this long closes */
	uint32_t max_clients;	/* slot table of a new segment */
	bool max_clients_set;
	uint32_t max_pools, max_caches, max_order, kmalloc_prefill; /* of a new segment */
	bool geometry_set;	/* one of the four above came from the file */
	unsigned max_connections;
	uint32_t allow_uid[SPD_MAX_ALLOW + 2]; /* + the daemon's uid and root */
	unsigned nr_allow_uid;
	uint32_t allow_gid[SPD_MAX_ALLOW];
	unsigned nr_allow_gid;
	struct spd_pool_decl *pools; /* predeclared pools (config file) */
	unsigned nr_pools;
};

/* ---- config.c ------------------------------------------------------------- */

int spd_parse_u64(const char *s, uint64_t *out);
int spd_parse_size(const char *s, uint64_t *out);
int spd_parse_id(const char *s, bool user, uint32_t *out);
int spd_parse_mode(const char *s, uint32_t *out);
int spd_check_shm_name(const char *s);
int spd_config_load(const char *path, struct spd_config *c);
void spd_config_free(struct spd_config *c);

struct spd_session;

/* struct spd_daemon - the one daemon instance.  Process-private. */
struct spd_daemon {
	struct spd_config cfg;
	uv_loop_t *loop;
	struct sp_seg *seg;		/* mapped for the daemon's whole life */
	int seg_lock_fd;		/* flock()ed: one daemon per segment */
	uv_pipe_t listener;
	bool listening;
	uv_signal_t sigterm, sigint;
	uv_timer_t reaper;
	uv_timer_t sd_status;		/* systemd.c: STATUS= updates */
	bool sd_notify;			/* started by systemd with NOTIFY_SOCKET */
	struct spd_session *sessions;	/* every open connection */
	unsigned nr_sessions;
	struct spd_session **by_slot;	/* [nr_by_slot]: connection of each slot */
	uint32_t nr_by_slot;		/* max_clients when attached (see spd_slot_session) */
	uint8_t *release_due;		/* [nr_by_slot]: a dead slot's release failed; retried */
	uint64_t next_conn_id;
	uint64_t start_ms;
	bool stopping;			/* shutting down: slots stay ALIVE to resume */
};

/* ---- owner.c -------------------------------------------------------------- */

int spd_owner_open(struct spd_daemon *d);
int spd_owner_predeclare(struct spd_daemon *d);
void spd_owner_close(struct spd_daemon *d);
int spd_owner_start_reaper(struct spd_daemon *d);
void spd_owner_client_died(struct spd_daemon *d, uint32_t slot, const char *why);

/* ---- systemd.c ------------------------------------------------------------ */

int spd_systemd_listen_fd(void);
void spd_systemd_ready(struct spd_daemon *d);
void spd_systemd_stopping(struct spd_daemon *d);

/* ---- server.c ------------------------------------------------------------- */

int spd_server_check_path(struct spd_daemon *d);
int spd_server_start(struct spd_daemon *d);
void spd_server_stop(struct spd_daemon *d);
bool spd_server_allowed(const struct spd_daemon *d, uint32_t uid, uint32_t gid);

/* ---- session.c ------------------------------------------------------------ */

/*
 * struct spd_session - one client connection.  Process-private; freed in
 * the close callback of its last handle (libuv's lifecycle).
 */
struct spd_session {
	uv_pipe_t pipe;
	uv_timer_t idle;		/* closes a connection stuck in a partial frame */
	struct spd_daemon *d;
	struct spd_session *next, *prev;
	uint64_t conn_id;		/* for the log */
	/* SO_PEERCRED, taken at accept */
	int pid;
	uint32_t uid, gid;
	bool allowed;			/* by the allow-list */
	/* after Hello */
	bool has_slot;
	uint32_t slot;
	char name[SP_CLIENT_NAME_MAX + 1];
	/* framing */
	uint8_t *buf;			/* received bytes not yet handled */
	size_t len, cap;
	unsigned writes_pending;	/* responses libuv still writes */
	bool reading;
	bool close_after_write;		/* close once the last response is out */
	bool closing;
	unsigned handles_open;
	/* no socket (the fuzz target): every response frame goes here instead,
	 * and requests come in through spd_session_input() */
	void (*sink)(struct spd_session *ss, const uint8_t *frame, size_t len, int pass_fd);
};

struct spd_session *spd_session_create(struct spd_daemon *d);
int spd_session_start(struct spd_session *ss);
void spd_session_read_now(struct spd_session *ss);
int spd_session_send(struct spd_session *ss, const Shmpool__Response *resp, int pass_fd,
		     bool then_close);
void spd_session_close(struct spd_session *ss, const char *why);
void spd_session_bind(struct spd_session *ss, uint32_t slot);
void spd_session_unbind(struct spd_session *ss);
void spd_session_input(struct spd_session *ss, const uint8_t *data, size_t len);

/*
 * spd_slot_session() - the connection holding @slot, or NULL.
 *
 * Bounded by the table size the daemon validated at attach: any client can
 * rewrite the shared header's max_clients later, and a slot number read or
 * derived from the segment must never index this process's memory beyond
 * what it allocated.  Does not sleep.
 */
static inline struct spd_session *spd_slot_session(const struct spd_daemon *d, uint32_t slot)
{
	return slot < d->nr_by_slot ? d->by_slot[slot] : NULL;
}

/* ---- rpc.c ---------------------------------------------------------------- */

void spd_rpc_handle(struct spd_session *ss, const uint8_t *data, size_t len);
void spd_rpc_reply_error(struct spd_session *ss, uint64_t id, int status, bool then_close,
			 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* ---- views.c -------------------------------------------------------------- */

/* struct spd_arena - every allocation of one Response, freed at once. */
struct spd_arena {
	struct spd_arena_chunk *head;
	bool failed;			/* an allocation failed: answer -ENOMEM */
};

void *spd_arena_alloc(struct spd_arena *a, size_t size);
char *spd_arena_str(struct spd_arena *a, const char *src, size_t max);
void spd_arena_free(struct spd_arena *a);

Shmpool__PoolInfo *spd_view_pool(struct spd_arena *a, struct sp_seg *s, const struct sp_pool *p);
Shmpool__CacheInfo *spd_view_cache(struct spd_arena *a, struct sp_seg *s,
				   const struct sp_cache *c);
void spd_view_segment_header(Shmpool__SegmentInfo *v, struct sp_seg *s);
Shmpool__BuddyInfo *spd_view_buddy(struct spd_arena *a, struct sp_seg *s);
Shmpool__ListReply *spd_view_list(struct spd_arena *a, struct sp_seg *s);
Shmpool__StatsReply *spd_view_stats(struct spd_arena *a, struct spd_daemon *d);
int spd_view_check(struct spd_arena *a, struct sp_seg *s, Shmpool__CheckReply **out);
const char *spd_view_fit(Shmpool__Response *r, char *note, size_t size);

#endif /* SHMPOOLD_H */
