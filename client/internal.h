/* SPDX-License-Identifier: MIT */
/*
 * internal.h - libshmpool's private types and cross-file functions.
 * Not installed.  Everything here is process-private.
 *
 * Files:
 *   client.c   sessions: connect, Hello, the segment fd, reconnect and
 *              resume, Goodbye, fork detection, errors
 *   wire.c     framing on the control socket
 *   rpc.c      one control request and its response, under the session lock
 *   pool.c     named pools: control via the daemon, data path in process
 *   cache.c    named caches: likewise
 *   handle.c   what pool and cache handles share: argument checks, bulk calls
 *   malloc.c   kmalloc, offsets and pointers, segment statistics
 *   tcache.c   per-thread magazines: which set a thread uses per session,
 *              flush at thread exit, shmp_flush()
 *
 * Lifetime: a session is referenced by the application (until
 * shmp_disconnect) and by every open pool or cache handle; the memory goes
 * when the last reference does.  shmp_disconnect unmaps the segment at
 * once (seg = NULL), so the handles that outlive it fail with -ENOTCONN.
 *
 * Locking: shmp_client.lock serialises the control socket, reconnects and
 * the session fields marked "under lock".  The data path never takes it:
 * it reads the immutable fields, kgeo[] once kfast is set, and seg, and
 * relies on the segment's own process-shared locks.
 */
#ifndef SHMPOOL_CLIENT_INTERNAL_H
#define SHMPOOL_CLIENT_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core.h"
#include "magazine.h"
#include "shmpool.h"
#include "shmpool.pb-c.h"

#define SHMP_PROTOCOL_VERSION	1u
#define SHMP_FRAME_MAX		65536u	/* protobuf bytes per frame */
#define SHMP_DEFAULT_TIMEOUT_MS	30000
#define SHMP_RBUF_SIZE		1024u	/* holds every usual reply whole */

/*
 * struct shmp__rbuf - bytes read from a control socket and not used yet
 * (wire.c).  Process-private, one per connection; emptied whenever the
 * connection is made or dropped.  Invariant: start <= end <= SHMP_RBUF_SIZE.
 */
struct shmp__rbuf {
	uint32_t start;		/* first unread byte */
	uint32_t end;		/* one past the last */
	uint8_t data[SHMP_RBUF_SIZE];
};

static inline void shmp__rbuf_reset(struct shmp__rbuf *rb)
{
	rb->start = rb->end = 0;
}

/*
 * struct shmp_client - one session.  Process-private.
 */
struct shmp_client {
	/* immutable after connect */
	unsigned fork_gen;	/* shmp__fork_gen at connect: differs in a child */
	pid_t pid;		/* our pid at connect: ours while the session is usable */
	char *socket_path;
	char name[SP_CLIENT_NAME_MAX + 1];
	int timeout_ms;		/* per reply; < 0: none */
	uint64_t sid;		/* unique in this process: thread caches key on it;
				 * SHMP_SID_GONE once disconnected */
	bool magazines;		/* per-thread magazines on */
	/* the kmalloc classes, taken at the first shmp_malloc or shmp_free,
	 * not at connect (shmp__kgeo_take()); immutable once published */
	bool kgeo_taken;	/* atomic: shmp__kgeo_take() ran or runs */
	bool ksnap_ok;		/* atomic, release after ksnap[]: the locked path's */
	bool kfast;		/* atomic, release after kgeo[]: the fast path's */
	struct sp_cache ksnap[SP_NR_KMALLOC]; /* checked snapshots */
	struct sp_mag_geo kgeo[SP_NR_KMALLOC]; /* and the fast path's copies of them */
	shmp_client *live_next;	/* on the list of live sessions (tcache.c) */
	/* under lock */
	pthread_mutex_t lock;
	int sock;		/* -1: broken; the next control call reconnects */
	unsigned pending;	/* responses still due to requests that timed out */
	struct shmp__rbuf rbuf;	/* what sock delivered beyond the frames read */
	bool stale;		/* the daemon did not resume the session (another
				 * segment, or our slot no longer ours) */
	uint64_t next_id;	/* Request.id */
	uint32_t slot;		/* client slot (also in seg->slot) */
	uint64_t token;		/* session token for resume */
	char seg_name[256];
	uint64_t seg_size;
	dev_t seg_dev;		/* identity of the mapped segment file */
	ino_t seg_ino;
	/* data path: NULL once disconnected */
	struct sp_seg *seg;
	unsigned refs;		/* atomic: 1 for the app + 1 per open handle */
};

void shmp__kgeo_take(shmp_client *c);

/* May shmp_malloc and shmp_free take their fast path (kgeo[] valid)?  */
static inline bool shmp__kfast(const shmp_client *c)
{
	return __atomic_load_n(&c->kfast, __ATOMIC_ACQUIRE); /* paired: shmp__kgeo_take() */
}

/* Bumped in every child by a pthread_atfork() handler (client.c). */
extern unsigned shmp__fork_gen __attribute__((visibility("hidden")));

/*
 * shmp__usable() - may this process use @c right now?  Does not sleep.
 * Return: 0, -EINVAL (NULL), -ECHILD (inherited across fork), -ENOTCONN
 * (disconnected), -ESTALE (the daemon did not resume it); the message is
 * recorded.
 */
int shmp__usable_slow(const shmp_client *c);

static inline int shmp__usable(const shmp_client *c)
{
	if (sp_likely(c && c->fork_gen == __atomic_load_n(&shmp__fork_gen, __ATOMIC_RELAXED) &&
		      c->seg && !c->stale))
		return 0;
	return shmp__usable_slow(c);
}

/* Set errno from a negative code and return NULL (pointer-returning calls). */
static inline void *shmp__fail_ptr(int rc)
{
	errno = -rc;
	return NULL;
}

void shmp__client_get(shmp_client *c);
void shmp__client_put(shmp_client *c);

/* wire.c */
int shmp__wire_send(int sock, const Shmpool__Request *req, int timeout_ms);
int shmp__wire_recv(int sock, struct shmp__rbuf *rb, Shmpool__Response **resp, int *fd);

/* rpc.c */
int shmp__rpc(shmp_client *c, Shmpool__Request *req, Shmpool__Response **resp);
int shmp__rpc_locked(shmp_client *c, Shmpool__Request *req, Shmpool__Response **resp);

/* handle.c: shared by pool.c and cache.c; kind is "pool" or "cache", noun
 * "element" or "object" (for the messages). */
/* Common checks of the control calls taking a name. */
int shmp__name_args(shmp_client *c, const char *name, const char *kind);
/* Makes the handle (*(shmp_pool **) or *(shmp_cache **)@out) a reply describes. */
typedef int (*shmp__from_info_fn)(shmp_client *c, const Shmpool__Response *resp, void *out);
/* Send @req; on success, from_info() makes the handle from the reply. */
int shmp__rpc_handle(shmp_client *c, Shmpool__Request *req, shmp__from_info_fn from_info,
		     void *out);
/* A request carrying only a name (open, destroy); from_info NULL: no handle. */
int shmp__name_request(shmp_client *c, const char *name, const char *kind,
		       Shmpool__Request__OpCase op, shmp__from_info_fn from_info, void *out);
/* The offset of @obj, to be freed to the handle @name, or -EINVAL. */
int shmp__obj_off(struct sp_seg *seg, void *obj, const char *noun, const char *kind,
		  const char *name, sp_off_t *off);
/*
 * The bulk calls of a handle kind (pool.c, cache.c): runs of lock-free
 * magazine pops and pushes, one full single call wherever a run stops
 * (bind, refill, flush, the locked path, or the error it explains).
 */
struct shmp__bulk_ops {
	const char *noun;	/* "element", "object": for messages */
	void *(*alloc)(void *h, int flags);
	int (*free_one)(void *h, void *obj);
	/* as many as the thread's bound magazine serves now, from v[0]: 0..n */
	unsigned (*take_run)(void *h, int flags, void **v, unsigned n);
	unsigned (*put_run)(void *h, void *const *v, unsigned n);
};
/* n allocations, all or none (the rest freed again): n or < 0. */
int shmp__alloc_bulk(void *h, const struct shmp__bulk_ops *ops, int flags, void **v, unsigned n);
/* n frees, every one tried: 0 or the first error. */
int shmp__free_bulk(void *h, const struct shmp__bulk_ops *ops, void *const *v, unsigned n);

/* tcache.c: the calling thread's magazine set for a session */
struct shmp__tc_ent {
	shmp_client *c;
	uint64_t sid;
	struct sp_magset *set;
};
extern __thread struct shmp__tc_ent shmp__tc_hot
	__attribute__((tls_model("initial-exec"), visibility("hidden")));
void shmp__tc_forget(shmp_client *c);
void shmp__mag_drop(shmp_client *c, struct sp_cache *cache);
void shmp__tc_fork_child(void);
void shmp__live_add(shmp_client *c);
void shmp__live_del(shmp_client *c);

/* A disconnected session's sid: no thread cache entry ever carries it. */
#define SHMP_SID_GONE UINT64_MAX

/*
 * shmp__fast_mag() - the calling thread's magazine for the cache @g
 * describes, when it is already bound to it: the only lookup of the fast
 * paths.  *@sp: the segment.  Does not sleep.
 *
 * The sid alone names the session: sids are never reused in a process
 * (and a handle holds @c, so it is the session the entry was made for),
 * an entry is made only for a connected session, and shmp_disconnect()
 * retires the sid before it unmaps.  So a match means @c is mapped and
 * the entry's set is its own.
 * Return: the magazine, or NULL (no set yet, another session last, not
 * bound, @c disconnected): take the slow path, which says or mends.
 */
sp_fast_inline struct sp_mag *shmp__fast_mag(const shmp_client *c, const struct sp_mag_geo *g,
					     struct sp_seg **sp)
{
	struct sp_mag *m;

	if (sp_unlikely(shmp__tc_hot.sid != c->sid))
		return NULL;
	sp_assert_expensive(shmp__tc_hot.c == c && c->seg);
	m = &shmp__tc_hot.set->mag[g->mag_index];
	if (sp_unlikely(!sp_mag_geo_bound(m, g)))
		return NULL;
	*sp = c->seg;
	return m;
}

/* May a free of @d's skip the pool lock?  Not with a short reserve or a
 * waiter: the locked path refills or wakes. */
sp_fast_inline bool shmp__pool_content(const struct sp_pool *d)
{
	return __atomic_load_n(&d->curr_nr, __ATOMIC_RELAXED) >= d->min_nr &&
	       !__atomic_load_n(&d->nr_waiters, __ATOMIC_RELAXED);
}

/*
 * shmp__take_run() - the fast alloc path over many: pops from the thread's
 * bound magazine of @geo into @v[0..@n), each checked as a single pop is,
 * one commit for all (sp_mag_take_run()).
 * Does not sleep.  Return: how many (0: take the single call's path).
 */
sp_fast_inline unsigned shmp__take_run(const shmp_client *c, const struct sp_mag_geo *geo,
				       void **v, unsigned n)
{
	struct sp_seg *s;
	struct sp_mag *m;

	if (!(m = shmp__fast_mag(c, geo, &s)))
		return 0;
	return sp_mag_take_run(s, geo, m, v, n);
}

/* Pushes of one run into a pool's magazine: its reserve and waiters are
 * looked at again before the next run. */
#define SHMP_POOL_RUN 64

/*
 * shmp__put_run() - the fast free path over many: pushes @v[0..@n) into the
 * thread's bound magazine of @geo while the handle's descriptor still has
 * generation @gen at @gen_word and, for a pool, @pool may skip its lock
 * (looked at once per SHMP_POOL_RUN pushes; a single free looks each
 * time).  Does not sleep.
 * Return: how many (0: the next one takes the single call's path).
 */
sp_fast_inline unsigned shmp__put_run(const shmp_client *c, const struct sp_mag_geo *geo,
				      const uint32_t *gen_word, uint32_t gen,
				      const struct sp_pool *pool, void *const *v, unsigned n)
{
	struct sp_seg *s;
	struct sp_mag *m;

	if (!(m = shmp__fast_mag(c, geo, &s)) || __atomic_load_n(gen_word, __ATOMIC_RELAXED) != gen)
		return 0;
	if (pool) {
		if (!shmp__pool_content(pool))
			return 0;
		if (n > SHMP_POOL_RUN)
			n = SHMP_POOL_RUN;
	}
	return sp_mag_put_run(s, geo, m, v, n);
}

/* The slow paths behind them (tcache.c): bind, refill, flush.  0, or < 0:
 * take the locked path (which also explains a refused pointer). */
int shmp__mag_alloc(shmp_client *c, struct sp_cache *cache, sp_off_t *off);
int shmp__mag_free(shmp_client *c, struct sp_cache *cache, sp_off_t off);

/* client.c */
int shmp__session_open_locked(shmp_client *c, bool resume);
void shmp__session_break_locked(shmp_client *c);

#endif /* SHMPOOL_CLIENT_INTERNAL_H */
