/* SPDX-License-Identifier: MIT */
/*
 * shmpool.h - libshmpool, the client library of shmpool.  The only public
 * header: link with `pkg-config --cflags --libs shmpool`.
 *
 * shmpool keeps Linux-kernel-style memory pools in one POSIX shared-memory
 * segment owned by the daemon shmpoold.  shmp_connect() asks the daemon for
 * the segment (its fd travels over the daemon's Unix socket) and maps it;
 * from then on every allocation and free runs inside the calling process,
 * directly on the mapped segment, without a round trip to the daemon:
 *
 *   control path (daemon round trip)       data path (no daemon)
 *   shmp_connect, shmp_disconnect          shmp_pool_alloc, _free, _bulk
 *   shmp_pool_create, _open, _destroy      shmp_cache_alloc, _free, _bulk
 *   shmp_pool_resize                       shmp_malloc, _calloc, _free
 *   shmp_cache_create, _open, _destroy     shmp_off, shmp_ptr
 *   shmp_check                             shmp_*_stats
 *
 * Objects:
 *   shmp_client  one session with the daemon and one mapping of the
 *                segment.  Everything this process allocates is tagged
 *                with the session's slot, so the daemon can attribute (and,
 *                for reclaim-on-exit pools, take back) what a dead process
 *                held.
 *   shmp_pool    a named mempool: fixed-size elements with min_nr of them
 *                reserved, so that they stay obtainable even when the rest
 *                of the segment is exhausted; alloc sleeps until a free
 *                when both the backing allocator and the reserve are empty.
 *   shmp_cache   a named slab cache of fixed-size objects (kmem_cache):
 *                no reserve, never sleeps for memory.
 *   shmp_malloc  general allocations from the kmalloc size classes.
 *
 * Pointers are only meaningful in the process that got them, because every
 * process maps the segment at its own address.  Hand a shmp_off_t to other
 * processes instead: shmp_off() turns a pointer into an offset and
 * shmp_ptr() turns an offset back into a local pointer.
 *
 * Errors: functions returning int return 0 (or a count) on success and a
 * negative errno-style code on failure; functions returning a pointer
 * return NULL and set errno to the positive code.  shmp_strerror() names a
 * code; shmp_errmsg() gives this thread's detailed message for the last
 * failure (which pool, which size, which limit).
 *
 * Threads: every function is thread-safe.  The control socket is
 * serialised by a mutex per client; the data path relies on the segment's
 * process-shared locks.
 *
 * fork(): a child process must not use its parent's handles (they carry
 * the parent's slot).  Any call with an inherited handle fails with -ECHILD
 * (or NULL + errno ECHILD); shmp_disconnect() on it only releases the
 * child's local memory.  Call shmp_connect() in the child for a session of
 * its own.
 *
 * Daemon restarts: the data path keeps working while the daemon is down.
 * Control calls then fail with -ECONNREFUSED (or -ENOTCONN when the
 * connection broke in the middle of a call); the next control call after
 * the daemon is back reconnects and resumes the session, keeping the slot
 * and the mapping.  If the daemon came back with another segment (or will
 * not resume this session's slot), that control call fails with -ESTALE,
 * and from then on every call on the session, allocations and frees too:
 * disconnect and connect again.  A daemon that
 * does not answer within the session's timeout (struct shmp_connect_opts)
 * fails the call with -ETIMEDOUT; the session stays connected.
 *
 * Sleeping: "may sleep" means the call can block on a lock held by another
 * thread or process, on the daemon's reply, or (pool allocation) until an
 * element is freed.  Nothing here may be called from a signal handler.
 */
#ifndef SHMPOOL_H
#define SHMPOOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHMP_VERSION_MAJOR 0
#define SHMP_VERSION_MINOR 1
#define SHMP_VERSION_PATCH 0
#define SHMP_VERSION_STRING "0.1.0"

typedef struct shmp_client shmp_client;
typedef struct shmp_pool shmp_pool;
typedef struct shmp_cache shmp_cache;
typedef uint64_t shmp_off_t; /* offset into the segment; 0 is NULL */

#define SHMP_NOWAIT 0x1 /* pool/cache alloc: never sleep */

#define SHMP_NAME_MAX 63 /* pool and cache names: 1..63 of [A-Za-z0-9._-] */

/* shmp_pool_opts.backing: where a pool's elements come from */
#define SHMP_BACKING_SLAB    0 /* a slab cache of elem_size objects (default) */
#define SHMP_BACKING_PAGES   1 /* whole buddy blocks of pages (large elements) */
#define SHMP_BACKING_KMALLOC 2 /* the kmalloc size class of elem_size (<= 8 KiB),
				* shared with shmp_malloc() and other such pools */

/* shmp_pool_opts.flags */
#define SHMP_POOL_RECLAIM_ON_EXIT 0x1 /* a dead process's elements come back */

/* shmp_pool_opts.debug and shmp_cache_opts.debug (slab memory only) */
#define SHMP_HWCACHE_ALIGN 0x1 /* align objects to 64-byte cache lines */
#define SHMP_DEBUG_POISON  0x2 /* fill free objects, verify them on reuse */
#define SHMP_DEBUG_REDZONE 0x4 /* guard bytes after each object, checked on free */

/* ---- errors ------------------------------------------------------------- */

/**
 * shmp_strerror() - describe an error code.
 * @err: a negative errno-style code as returned by this library (a
 *       positive errno is accepted too).
 *
 * Does not sleep.
 * Return: a static string, never NULL.
 */
const char *shmp_strerror(int err);

/**
 * shmp_err_name() - the symbolic name of an error code ("ENOMEM").
 * @err: a negative errno-style code.
 *
 * Does not sleep.
 * Return: a static string, "EUNKNOWN" for a code shmpool does not use.
 */
const char *shmp_err_name(int err);

/**
 * shmp_errmsg() - the detailed message of this thread's last failure.
 *
 * Like dlerror(), but not cleared by a successful call: read it right
 * after the call that failed.  Does not sleep.
 * Return: a thread-local string; empty when nothing failed yet.
 */
const char *shmp_errmsg(void);

/* ---- sessions ------------------------------------------------------------ */

/**
 * struct shmp_connect_opts - options of shmp_connect_ex().
 * @timeout_ms: longest wait for one daemon reply; 0: 30000; < 0: no limit.
 * @flags: SHMP_CONNECT_NO_MAGAZINES.
 *
 * Zero-initialise and set what you need.
 */
struct shmp_connect_opts {
	int timeout_ms;
	unsigned flags;
};

/*
 * Per-thread magazines: by default each thread keeps a small cache of free
 * objects per pool, cache and size class, in the segment under the
 * session's slot, so that most allocations and frees take no lock (see
 * shmp_flush()).  This flag (or SHMPOOL_MAGAZINES=0 in the environment)
 * turns them off for the session: every call then takes the locks.
 */
#define SHMP_CONNECT_NO_MAGAZINES 0x1u

/**
 * shmp_connect() - open a session with the daemon and map its segment.
 * @socket_path: the daemon's socket, or NULL for the default:
 *               $SHMPOOL_SOCKET, else /run/shmpool/shmpool.sock as root,
 *               else $XDG_RUNTIME_DIR/shmpool/shmpool.sock, else
 *               /tmp/shmpool-$UID/shmpool.sock.
 * @client_name: shown in the daemon's client list (31 bytes kept); NULL ok.
 * @out: the new session.
 *
 * May sleep (waits for the daemon's reply).  The caller must eventually
 * call shmp_disconnect(), from this process.
 * Return: 0; -ECONNREFUSED when no daemon listens at the socket; -EACCES
 * when the daemon refuses this user; -EPROTONOSUPPORT on a protocol or
 * layout version mismatch; -ENFILE when the daemon's client table is full;
 * -ENOMEM; -EINVAL (NULL @out, empty path); -ENAMETOOLONG.
 */
int shmp_connect(const char *socket_path, const char *client_name, shmp_client **out);

/**
 * shmp_connect_ex() - shmp_connect() with options.
 * @socket_path: as for shmp_connect().  @client_name: as for shmp_connect().
 * @opts: options, or NULL for the defaults.  @out: the new session.
 *
 * May sleep.
 * Return: as shmp_connect().
 */
int shmp_connect_ex(const char *socket_path, const char *client_name,
		    const struct shmp_connect_opts *opts, shmp_client **out);

/**
 * shmp_disconnect() - end a session and unmap the segment.
 * @c: the session, or NULL.
 *
 * Says Goodbye to the daemon (when reachable): the session's slot is freed
 * if it holds nothing; otherwise what it still holds stays allocated,
 * attributed to it as orphans.  Pool and cache handles still open keep a
 * small local record alive until they are closed; every call on them
 * fails with -ENOTCONN.  In a child process that inherited @c, only the
 * child's local memory is released (no Goodbye on the parent's behalf).
 * May sleep.  The caller must guarantee that no other thread is using @c
 * or its handles, and that no pointer into the segment is used afterwards:
 * the mapping is gone.
 */
void shmp_disconnect(shmp_client *c);

/**
 * shmp_flush() - give back the free objects this thread keeps cached.
 * @c: the session.
 *
 * Each thread's magazines hold up to 60 free objects per pool, cache and
 * size class it uses.  They count as free in every statistic, but other
 * processes cannot allocate them until they go back: at thread exit, at
 * shmp_disconnect(), when a pool or cache handle is closed, when its
 * process dies (the daemon frees them) - or now.  Call it before
 * destroying a pool or cache another thread of this process used, since a
 * destroy fails with -EBUSY while objects are cached.
 * May sleep.
 * Return: 0; -ECHILD; -ENOTCONN; or the first error of a lock.
 */
int shmp_flush(shmp_client *c);

/* ---- named pools (mempool_t) --------------------------------------------- */

/**
 * struct shmp_pool_opts - options of shmp_pool_create_ex().
 * @max_nr: cap on elements out + reserved; 0: no cap.
 * @backing: SHMP_BACKING_SLAB (default), SHMP_BACKING_PAGES or
 *           SHMP_BACKING_KMALLOC.
 * @flags: SHMP_POOL_RECLAIM_ON_EXIT (not with SHMP_BACKING_KMALLOC).
 * @debug: SHMP_HWCACHE_ALIGN | SHMP_DEBUG_POISON | SHMP_DEBUG_REDZONE
 *         (slab backing only).
 * @align: element alignment, a power of two; 0: 8 (at most 8 with
 *         SHMP_BACKING_KMALLOC).
 * @mode: permission bits for other users (0: 0600, owner only).
 *
 * Zero-initialise and set what you need.
 *
 * SHMP_BACKING_KMALLOC draws elements from the kmalloc size class that
 * serves elem_size, which shmp_malloc() and every other pool of that class
 * share; the pool keeps its own reserve of min_nr of them.  Sharing has a
 * price: shmp_pool_free() refuses an object of any other class or cache,
 * but cannot tell an element of this pool from one of another pool of the
 * same class, or from a shmp_malloc() allocation of that size, while the
 * pool has elements out - freeing one of those into the pool corrupts
 * its counts (shmp_pool_stats() nr_out, max_nr, destroy's -EBUSY).  Since
 * a dead process's elements cannot be told from its other objects of the
 * class, reclaim-on-exit is refused, and when its slot is released they go
 * back to the class; nr_out may then over-count until the pool's next
 * destroy or release recounts it.  Elements take the locked path (no
 * per-thread magazines).
 */
struct shmp_pool_opts {
	unsigned max_nr;
	unsigned backing;
	unsigned flags;
	unsigned debug;
	size_t align;
	unsigned mode;
};

/**
 * shmp_pool_create() - create a named pool and fill its reserve.
 * @c: session.  @name: 1..63 of [A-Za-z0-9._-].
 * @elem_size: bytes per element.  @min_nr: elements kept in reserve.
 * @out: a handle to the new pool; close it with shmp_pool_close().
 *
 * May sleep (daemon round trip).
 * Return: 0; -EEXIST when the name is taken; -EINVAL (name, size 0 or
 * larger than the segment, NULL argument); -ENOMEM when min_nr elements do
 * not fit; -ENFILE when the pool table is full; -ECHILD, -ENOTCONN,
 * -ECONNREFUSED, -ESTALE (see the top of this file).
 */
int shmp_pool_create(shmp_client *c, const char *name, size_t elem_size, unsigned min_nr,
		     shmp_pool **out);

/**
 * shmp_pool_create_ex() - shmp_pool_create() with options.
 * @c: session.  @name: pool name.  @elem_size: bytes per element.
 * @min_nr: reserved elements.  @opts: options, or NULL for the defaults.
 * @out: the handle.
 *
 * May sleep.
 * Return: as shmp_pool_create(); -EINVAL also for max_nr < min_nr or an
 * unknown backing or flag.
 */
int shmp_pool_create_ex(shmp_client *c, const char *name, size_t elem_size, unsigned min_nr,
			const struct shmp_pool_opts *opts, shmp_pool **out);

/**
 * shmp_pool_open() - open an existing pool by name.
 * @c: session.  @name: the pool's name.  @out: the handle.
 *
 * May sleep (daemon round trip).
 * Return: 0; -ENOENT when there is no such pool; -EPERM when it belongs to
 * another user and its mode does not let others open it; -EINVAL; the
 * session errors.
 */
int shmp_pool_open(shmp_client *c, const char *name, shmp_pool **out);

/**
 * shmp_pool_destroy() - destroy a pool that has no elements out.
 * @c: session.  @name: the pool's name.
 *
 * Handles other processes still hold become stale: their calls fail with
 * -ENOENT.  May sleep.  Only the pool's creator or root may destroy it.
 * Return: 0; -EBUSY while elements are out or processes wait on it;
 * -ENOENT; -EPERM; the session errors.
 */
int shmp_pool_destroy(shmp_client *c, const char *name);

/**
 * shmp_pool_resize() - change the number of reserved elements.
 * @p: pool handle.  @new_min_nr: the new reserve size.
 *
 * Growing takes elements from the backing allocator; shrinking gives
 * reserve elements back.  May sleep (daemon round trip).
 * Return: 0; -ENOMEM when the larger reserve does not fit (the reserve is
 * unchanged); -EINVAL above max_nr; -ENOENT when the pool was destroyed;
 * -EPERM; the session errors.
 */
int shmp_pool_resize(shmp_pool *p, unsigned new_min_nr);

/**
 * shmp_pool_close() - release a pool handle.
 * @p: the handle, or NULL.
 *
 * The pool itself and its elements stay.  Does not sleep.  The caller must
 * guarantee no other thread still uses @p.
 */
void shmp_pool_close(shmp_pool *p);

/**
 * shmp_pool_alloc() - allocate one element (mempool_alloc()).
 * @p: pool handle.  @flags: 0 or SHMP_NOWAIT.
 *
 * Tries the backing allocator, then the reserve; when both are empty it
 * sleeps until some process frees an element, unless SHMP_NOWAIT.  The
 * element's contents are undefined.
 * May sleep unless SHMP_NOWAIT (even then it may wait briefly for a lock).
 * Return: the element, or NULL with errno ENOMEM (SHMP_NOWAIT and nothing
 * free), EINTR (a signal interrupted the sleep), ENOENT (the pool was
 * destroyed), EINVAL (NULL @p, unknown flags), ECHILD, ENOTCONN.
 */
void *shmp_pool_alloc(shmp_pool *p, int flags);

/**
 * shmp_pool_alloc_timeout() - allocate one element, sleeping at most a while.
 * @p: pool handle.  @timeout_ms: longest sleep; < 0 sleeps for ever; 0
 *                  never sleeps.
 *
 * May sleep (up to @timeout_ms, plus lock waits).
 * Return: the element, or NULL with errno ETIMEDOUT when nothing was freed
 * in time, or as shmp_pool_alloc().
 */
void *shmp_pool_alloc_timeout(shmp_pool *p, int timeout_ms);

/**
 * shmp_pool_free() - free an element (mempool_free()).
 * @p: the pool it came from.  @elem: the element, from any process.
 *
 * Refills the reserve first, else gives the element back to the backing,
 * and wakes one sleeping allocator.  Does not sleep except on locks.
 * Return: 0; -EINVAL when @elem is not an allocated element of @p (already
 * free, another pool's, into the middle of an element, outside the
 * segment, NULL); -ENOENT when the pool was destroyed; -ECHILD; -ENOTCONN.
 * A refused free changes nothing.
 */
int shmp_pool_free(shmp_pool *p, void *elem);

/**
 * shmp_pool_alloc_bulk() - allocate @n elements, all or none.
 * @p: pool handle.  @flags: 0 or SHMP_NOWAIT.  @v: receives @n elements.
 * @n: how many.
 *
 * With magazines, the elements the calling thread has cached come out in
 * one run (the handle checked once), cheaper than @n single calls.
 * May sleep unless SHMP_NOWAIT.
 * Return: @n; or a negative code as for shmp_pool_alloc() with nothing
 * allocated.
 */
int shmp_pool_alloc_bulk(shmp_pool *p, int flags, void **v, unsigned n);

/**
 * shmp_pool_free_bulk() - free @n elements.
 * @p: pool handle.  @v: the elements.  @n: how many.
 *
 * Every element is tried even after a failure.  Does not sleep except on
 * locks.
 * Return: 0, or the code of the first failure (as shmp_pool_free()).
 */
int shmp_pool_free_bulk(shmp_pool *p, void *const *v, unsigned n);

/**
 * struct shmp_pool_stats - a pool's state, read from the segment.
 * @elem_size: bytes per element.
 * @min_nr: reserve size.  @curr_nr: elements in the reserve now.
 * @max_nr: cap (0: none).  @nr_out: elements handed out now.
 * @nr_waiters: processes sleeping in alloc (advisory).
 * @nr_alloc: @nr_free: @nr_reserve_alloc: @nr_fail: @nr_wait: @nr_bad_free:
 *            counters since creation.
 */
struct shmp_pool_stats {
	size_t elem_size;
	unsigned min_nr;
	unsigned curr_nr;
	unsigned max_nr;
	unsigned nr_waiters;
	uint64_t nr_out;
	uint64_t nr_alloc;
	uint64_t nr_free;
	uint64_t nr_reserve_alloc;
	uint64_t nr_fail;
	uint64_t nr_wait;
	uint64_t nr_bad_free;
};

/**
 * shmp_pool_stats() - snapshot of a pool's counters (no daemon round trip).
 * @p: pool handle.  @st: filled in.
 *
 * Read without locks: the fields need not be mutually consistent while
 * other processes allocate.  Does not sleep.
 * Return: 0; -ENOENT when the pool was destroyed; -EINVAL; -ECHILD;
 * -ENOTCONN.
 */
int shmp_pool_stats(shmp_pool *p, struct shmp_pool_stats *st);

/* ---- named slab caches (kmem_cache) --------------------------------------- */

/**
 * struct shmp_cache_opts - options of shmp_cache_create_ex().
 * @debug: SHMP_HWCACHE_ALIGN | SHMP_DEBUG_POISON | SHMP_DEBUG_REDZONE.
 * @mode: permission bits for other users (0: 0600).
 *
 * Zero-initialise and set what you need.
 */
struct shmp_cache_opts {
	unsigned debug;
	unsigned mode;
};

/**
 * shmp_cache_create() - create a named slab cache.
 * @c: session.  @name: 1..63 of [A-Za-z0-9._-].
 * @obj_size: bytes per object.  @align: a power of two, 0 for 8.
 * @init_template: @obj_size bytes every object is initialised with when
 *                 its slab is made (like a kmem_cache constructor: free
 *                 objects in the constructed state), or NULL.
 * @out: a handle to the new cache; close it with shmp_cache_close().
 *
 * May sleep (daemon round trip).
 * Return: 0; -EEXIST; -EINVAL (name, size, align, NULL argument); -ENFILE;
 * -ENOMEM; the session errors.
 */
int shmp_cache_create(shmp_client *c, const char *name, size_t obj_size, size_t align,
		      const void *init_template, shmp_cache **out);

/**
 * shmp_cache_create_ex() - shmp_cache_create() with options.
 * @c: session.  @name: cache name.  @obj_size: bytes per object.
 * @align: alignment.  @init_template: template or NULL.
 * @opts: options, or NULL for the defaults.  @out: the handle.
 *
 * May sleep.
 * Return: as shmp_cache_create().
 */
int shmp_cache_create_ex(shmp_client *c, const char *name, size_t obj_size, size_t align,
			 const void *init_template, const struct shmp_cache_opts *opts,
			 shmp_cache **out);

/**
 * shmp_cache_open() - open an existing cache by name.
 * @c: session.  @name: its name.  @out: the handle.
 *
 * May sleep (daemon round trip).
 * Return: 0; -ENOENT; -EPERM (another user's cache, mode without 0006);
 * -EINVAL; the session errors.
 */
int shmp_cache_open(shmp_client *c, const char *name, shmp_cache **out);

/**
 * shmp_cache_destroy() - destroy a cache with no live objects.
 * @c: session.  @name: its name.
 *
 * May sleep.
 * Return: 0; -EBUSY while objects are live; -ENOENT; -EPERM; the session
 * errors.
 */
int shmp_cache_destroy(shmp_client *c, const char *name);

/**
 * shmp_cache_close() - release a cache handle.
 * @k: the handle, or NULL.
 *
 * The cache and its objects stay.  Does not sleep.
 */
void shmp_cache_close(shmp_cache *k);

/**
 * shmp_cache_alloc() - allocate one object.
 * @k: cache handle.  @flags: 0 or SHMP_NOWAIT (caches have no reserve and
 *     never sleep for memory: both behave alike).
 *
 * Does not sleep except on locks.
 * Return: the object (template contents, or whatever its last user left),
 * or NULL with errno ENOMEM (segment exhausted), ENOENT (cache destroyed),
 * EINVAL, ECHILD, ENOTCONN.
 */
void *shmp_cache_alloc(shmp_cache *k, int flags);

/**
 * shmp_cache_free() - free one object.
 * @k: the cache it came from.  @obj: the object.
 *
 * Does not sleep except on locks.
 * Return: 0; -EINVAL (double free, foreign or mid-object pointer, NULL);
 * -ENOENT; -ECHILD; -ENOTCONN.  A refused free changes nothing.
 */
int shmp_cache_free(shmp_cache *k, void *obj);

/**
 * shmp_cache_alloc_bulk() - allocate @n objects, all or none.
 * @k: cache handle.  @flags: 0 or SHMP_NOWAIT.  @v: receives @n objects.
 * @n: how many.
 *
 * As shmp_pool_alloc_bulk(): cached objects come out in one run.
 * Does not sleep except on locks.
 * Return: @n; or a negative code as for shmp_cache_alloc() with nothing
 * allocated.
 */
int shmp_cache_alloc_bulk(shmp_cache *k, int flags, void **v, unsigned n);

/**
 * shmp_cache_free_bulk() - free @n objects.
 * @k: cache handle.  @v: the objects.  @n: how many.
 *
 * Every object is tried even after a failure.  Does not sleep except on
 * locks.
 * Return: 0, or the code of the first failure (as shmp_cache_free()).
 */
int shmp_cache_free_bulk(shmp_cache *k, void *const *v, unsigned n);

/**
 * struct shmp_cache_stats - a cache's state, read from the segment.
 * @obj_size: bytes per object.  @active_objs: allocated now.
 * @total_objs: capacity of its slabs.  @nr_slabs: slabs.
 * @nr_alloc: @nr_free: @nr_fail: @nr_bad_free: counters since creation.
 */
struct shmp_cache_stats {
	size_t obj_size;
	uint64_t active_objs;
	uint64_t total_objs;
	uint64_t nr_slabs;
	uint64_t nr_alloc;
	uint64_t nr_free;
	uint64_t nr_fail;
	uint64_t nr_bad_free;
};

/**
 * shmp_cache_stats() - snapshot of a cache's counters (no daemon round trip).
 * @k: cache handle.  @st: filled in.
 *
 * Read without locks.  Does not sleep.
 * Return: 0; -ENOENT; -EINVAL; -ECHILD; -ENOTCONN.
 */
int shmp_cache_stats(shmp_cache *k, struct shmp_cache_stats *st);

/* ---- general allocations (kmalloc) ---------------------------------------- */

/**
 * shmp_malloc() - allocate @size bytes in the segment.
 * @c: session.  @size: 1 .. the largest buddy block (4 MiB by default).
 *
 * Up to 8 KiB from the kmalloc size classes, 8-byte aligned; above that,
 * whole page blocks, 4096-byte aligned.  Does not sleep except on locks.
 * Return: the memory, or NULL with errno ENOMEM (no room, or @size too
 * large), EINVAL (@size 0, NULL @c), ECHILD, ENOTCONN.
 */
void *shmp_malloc(shmp_client *c, size_t size);

/**
 * shmp_calloc() - allocate @n * @size zeroed bytes in the segment.
 * @c: session.  @n: count.  @size: bytes each.
 *
 * Does not sleep except on locks.
 * Return: as shmp_malloc(); ENOMEM also when @n * @size overflows.
 */
void *shmp_calloc(shmp_client *c, size_t n, size_t size);

/**
 * shmp_free() - free what shmp_malloc() or shmp_calloc() returned.
 * @c: session.  @p: the memory, or NULL (nothing happens).
 *
 * A bad pointer (double free, foreign or mid-allocation pointer) is
 * refused without changing anything: errno is set to EINVAL and
 * shmp_errmsg() says why.  Use shmp_free_checked() to get the code.
 * Does not sleep except on locks.
 */
void shmp_free(shmp_client *c, void *p);

/**
 * shmp_free_checked() - shmp_free() returning what happened.
 * @c: session.  @p: the memory, or NULL.
 *
 * Does not sleep except on locks.
 * Return: 0; -EINVAL (not an allocation of shmp_malloc()); -ECHILD;
 * -ENOTCONN.
 */
int shmp_free_checked(shmp_client *c, void *p);

/**
 * shmp_malloc_usable_size() - bytes usable in a shmp_malloc() allocation.
 * @c: session.  @p: the memory.
 *
 * Does not sleep.
 * Return: the size, or 0 (errno set) when @p is not a live allocation.
 */
size_t shmp_malloc_usable_size(shmp_client *c, const void *p);

/* ---- offsets ---------------------------------------------------------------- */

/**
 * shmp_off() - the segment offset of a pointer, to hand to other processes.
 * @c: session.  @p: a pointer into the segment (any byte of it).
 *
 * Does not sleep.
 * Return: the offset; 0 for NULL or a pointer outside the segment (errno
 * EINVAL), or an inherited or disconnected @c (errno ECHILD, ENOTCONN).
 */
shmp_off_t shmp_off(shmp_client *c, const void *p);

/**
 * shmp_ptr() - this process's pointer for a segment offset.
 * @c: session.  @off: an offset from shmp_off(), possibly of another process.
 *
 * Does not sleep.  The pointer is only valid while @c is connected.
 * Return: the pointer; NULL for 0 or an offset outside the segment (errno
 * EINVAL), or an inherited or disconnected @c.
 */
void *shmp_ptr(shmp_client *c, shmp_off_t off);

/* ---- the segment and the daemon ----------------------------------------------- */

/**
 * struct shmp_segment_stats - the segment as this session sees it.
 * @size: bytes mapped.  @page_size: 4096.
 * @nr_pages: @free_pages: data pages, and how many the buddy allocator has free.
 * @max_alloc: largest single shmp_malloc() or page-backed element.
 * @slot: this session's client slot.  @connected: 1 while the control
 *        connection is up (0 after it broke, until the next control call).
 * @name: the segment's shm name.
 */
struct shmp_segment_stats {
	uint64_t size;
	uint32_t page_size;
	uint32_t slot;
	uint64_t nr_pages;
	uint64_t free_pages;
	uint64_t max_alloc;
	int connected;
	char name[256];
};

/**
 * shmp_segment_stats() - snapshot of the segment (no daemon round trip).
 * @c: session.  @st: filled in.
 *
 * Does not sleep.
 * Return: 0; -EINVAL; -ECHILD; -ENOTCONN.
 */
int shmp_segment_stats(shmp_client *c, struct shmp_segment_stats *st);

/**
 * shmp_check() - have the daemon run its whole-segment consistency checker.
 * @c: session.  @nr_violations: receives the count (may be NULL).
 *
 * When violations are found, shmp_errmsg() holds the first one.
 * May sleep (the check takes every lock in turn).
 * Return: 0 (the check ran: see @nr_violations), or a session error.
 */
int shmp_check(shmp_client *c, unsigned *nr_violations);

#ifdef __cplusplus
}
#endif

#endif /* SHMPOOL_H */
