/* SPDX-License-Identifier: MIT */
/*
 * core.h - the allocator core's internal API, shared by the daemon, the
 * client library and the tests.  Not installed.
 *
 * Conventions: every function returns 0 (or a count) on success and a
 * negative errno on failure; a failing function also leaves a readable
 * message in sp_errmsg() (thread-local, like dlerror()).  Functions whose
 * name ends in _locked need the named lock held by the caller and assert it.
 * "May sleep" means the function can block on a lock held by another
 * process or on a futex.
 */
#ifndef SHMPOOL_CORE_H
#define SHMPOOL_CORE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "config.h"
#include "layout.h"

/* ---- assertions --------------------------------------------------------- */

void sp_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#if SP_DEBUG_LEVEL >= 1
#define sp_assert(e) ((e) ? (void)0 : sp_assert_fail(#e, __FILE__, __LINE__))
#else
#define sp_assert(e) ((void)0)
#endif
#if SP_DEBUG_LEVEL >= 2
#define sp_assert_expensive(e) sp_assert(e)
#else
#define sp_assert_expensive(e) ((void)0)
#endif

#define sp_likely(x)   __builtin_expect(!!(x), 1)
#define sp_unlikely(x) __builtin_expect(!!(x), 0)
/* The data path's few small helpers: always inlined, whatever gcc's size
 * heuristics say (a call costs more than some of them do). */
#define sp_fast_inline static inline __attribute__((always_inline))

/* ---- errors (errors.c) -------------------------------------------------- */

int sp_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *sp_errmsg(void);
const char *sp_strerror(int code);
const char *sp_err_name(int code);

/* ---- the process-private segment handle (segment.c) ------------------- */

/*
 * struct sp_seg - one process's view of a segment.  Process-private.
 *
 * geo is this process's copy of the header's geometry (magic ..
 * geometry_sum), taken and validated once at create or attach.  Table
 * sizes and region offsets are read from it, never from hdr: the header
 * page is writable by every client, and a value rewritten after the
 * validation would index outside the mapping.  hdr is for the mutable
 * part only (locks, buddy zone, counters).
 */
struct sp_seg {
	uint8_t *base;		/* where this process mapped the segment */
	uint64_t size;
	int fd;			/* kept open: fallocate and SCM_RIGHTS need it */
	dev_t dev;		/* the file's identity (fstat at attach) */
	ino_t ino;
	bool readonly;		/* offline inspection: never lock, never write */
	struct sp_header *hdr;	/* shared: mutable part only */
	struct sp_header geo;	/* private: validated geometry; mutable part unused */
	struct sp_page *pages;
	uint8_t *data;		/* page 0 of the buddy area */
	uint16_t owner;		/* this process's owner tag: slot + 1 */
	uint32_t slot;		/* client slot, or UINT32_MAX before registration */
	int64_t *held;		/* &sp_clients(s)[slot].held, NULL without a slot */
	/* the slot filter bits (sp_slot_note()) this handle found set for
	 * owner, cleared whenever owner changes (sp_seg_set_owner()) */
	uint64_t noted[SP_SLOT_FILTER_BITS / 64];
	int lock_timeout_ms;	/* > 0: give up on a lock after this long */
	uint64_t nr_walk_caches; /* caches and page tables this process walked for */
	uint64_t nr_walk_blocks; /* one slot (client.c; tests read them) */
	uint64_t nr_walk_relocks; /* cache locks dropped between chunks of a walk */
	uint64_t nr_walk_skips;	/* caches a slot's held bound let its walk skip */
	uint64_t nr_settles;	/* sp_pool_kmalloc_settle() calls (tests read it) */
	char name[256];
};

struct sp_seg_params {
	uint64_t size;		/* bytes; rounded down to whole pages */
	uint32_t max_order;	/* buddy orders 0..max_order (default 10) */
	uint32_t max_clients;	/* client table slots (default 256) */
	uint32_t max_caches;	/* named + pool caches, kmalloc excluded */
	uint32_t max_pools;
	uint32_t kmalloc_prefill; /* free objects kept per kmalloc class (20) */
};

#define SP_ATTACH_RDONLY 0x1

void sp_seg_params_default(struct sp_seg_params *p);
int sp_seg_create(const char *shm_name, int fd, const struct sp_seg_params *p,
		  struct sp_seg **out);
int sp_seg_attach(const char *shm_name, int fd, int flags, struct sp_seg **out);
void sp_seg_detach(struct sp_seg *s);
int sp_seg_unlink(const char *shm_name);
int sp_seg_validate_header(const struct sp_header *h, uint64_t file_size);
uint64_t sp_geometry_sum(const struct sp_header *h);

/* ---- offsets ------------------------------------------------------------ */

/* Unchecked: only for offsets this process produced or already validated. */
static inline void *sp_ptr(const struct sp_seg *s, sp_off_t off)
{
	return off ? s->base + off : NULL;
}

static inline sp_off_t sp_off(const struct sp_seg *s, const void *p)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)s->base;

	return (p && a > b && a - b < s->size) ? (sp_off_t)(a - b) : 0;
}

/* Checked: NULL unless [off, off + len) lies inside the segment and off is
 * aligned.  Use for every offset read from the (untrusted) segment. */
static inline void *sp_ptr_checked(const struct sp_seg *s, sp_off_t off, uint64_t len,
				   uint64_t align)
{
	if (!off || off >= s->size || len > s->size - off || (off & (align - 1)))
		return NULL;
	return s->base + off;
}
#define SP_PTR(seg, off, type) \
	((type *)sp_ptr_checked((seg), (off), sizeof(type), _Alignof(type)))

static inline sp_off_t sp_pfn_off(const struct sp_seg *s, uint32_t pfn)
{
	return s->geo.data.off + ((sp_off_t)pfn << SP_PAGE_SHIFT);
}

/* pfn of the data page holding off; false when off is outside the data area */
static inline bool sp_off_pfn(const struct sp_seg *s, sp_off_t off, uint32_t *pfn)
{
	sp_off_t d = s->geo.data.off;

	if (off < d || off - d >= s->geo.data.size)
		return false;
	*pfn = (uint32_t)((off - d) >> SP_PAGE_SHIFT);
	return true;
}

static inline struct sp_client *sp_clients(const struct sp_seg *s)
{
	return (struct sp_client *)(s->base + s->geo.clients.off);
}
static inline struct sp_cache *sp_caches(const struct sp_seg *s)
{
	return (struct sp_cache *)(s->base + s->geo.caches.off);
}
static inline struct sp_pool *sp_pools(const struct sp_seg *s)
{
	return (struct sp_pool *)(s->base + s->geo.pools.off);
}
/* cache table: kmalloc classes, then named caches, then one per pool */
static inline uint32_t sp_nr_cache_slots(const struct sp_seg *s)
{
	return s->geo.nr_kmalloc + s->geo.max_caches + s->geo.max_pools;
}
static inline uint32_t sp_pool_cache_id(const struct sp_seg *s, uint32_t pool_id)
{
	return s->geo.nr_kmalloc + s->geo.max_caches + pool_id;
}
/* The table index of @c, from where it is (not its shared, untrusted id). */
static inline uint32_t sp_cache_index(const struct sp_seg *s, const struct sp_cache *c)
{
	return (uint32_t)(c - sp_caches(s));
}

/* ---- locks (lock.c) ----------------------------------------------------- */

#define SP_LOCK_RECOVER 1 /* sp_lock(): the owner died; repair, then consistent */

int sp_lock_init(struct sp_lock *l, enum sp_lock_level level);
void sp_lock_consistent(struct sp_lock *l);
void sp_lock_allow_same_level(bool on);

/* The locks this thread holds, in the order taken (lock.c): only the first
 * SP_MAX_HELD are recorded. */
#define SP_MAX_HELD 8
#define SP_HIDDEN __attribute__((visibility("hidden")))
extern _Thread_local const struct sp_lock *sp__held[SP_MAX_HELD]
	__attribute__((tls_model("initial-exec"))) SP_HIDDEN;
extern _Thread_local unsigned sp__nr_held __attribute__((tls_model("initial-exec"))) SP_HIDDEN;
bool sp_lock_held_slow(const struct sp_lock *l);
int sp_lock_slow(struct sp_seg *s, struct sp_lock *l, int rc) SP_HIDDEN;
void sp_unlock_slow(struct sp_lock *l) SP_HIDDEN;
void sp_lock_order_check(const struct sp_lock *l) SP_HIDDEN;

/* Record @l as held by this thread, checking the lock order first when
 * another lock is held (SP_DEBUG_LEVEL >= 1). */
static inline __attribute__((always_inline)) void sp_lock_record(const struct sp_lock *l)
{
	unsigned n = sp__nr_held;

#if SP_DEBUG_LEVEL >= 1
	if (n)
		sp_lock_order_check(l);
#endif
	if (sp_likely(n < SP_MAX_HELD))
		sp__held[n] = l;
	sp__nr_held = n + 1;
}

/**
 * sp_lock() - take a shared lock, detecting a dead owner.
 * @s: the segment (for its lock timeout).
 * @l: the lock.
 *
 * Inline, the uncontended case only: one trylock, the held-lock record
 * (lock.c's sp_lock_slow() spins, sleeps and reports).  May sleep.  With
 * s->lock_timeout_ms > 0 (the daemon, which must not hang on a lock wedged
 * by a corrupted segment) it gives up after that long.
 * Return: 0; SP_LOCK_RECOVER when the previous owner died holding it (the
 * caller now holds it and must repair, then call sp_lock_consistent());
 * -ETIMEDOUT, -ENOTRECOVERABLE, -EINVAL (a corrupted mutex) or -EROFS (a
 * read-only segment) on failure.
 */
static inline int sp_lock(struct sp_seg *s, struct sp_lock *l)
{
	int rc = EROFS; /* read-only: never a trylock */

	if (sp_likely(!s->readonly)) {
		rc = pthread_mutex_trylock(&l->mutex);
		if (sp_likely(rc == 0)) {
			sp_lock_record(l);
			return 0;
		}
	}
	return sp_lock_slow(s, l, rc);
}

/**
 * sp_unlock() - release a lock taken with sp_lock().
 * @l: the lock.
 *
 * Inline for the usual case, the lock taken last (on top of the record).
 * Does not sleep.
 */
static inline void sp_unlock(struct sp_lock *l)
{
	unsigned n = sp__nr_held;

	if (sp_likely(n - 1 < SP_MAX_HELD && sp__held[n - 1] == l)) {
		sp__nr_held = n - 1;
		pthread_mutex_unlock(&l->mutex);
		return;
	}
	sp_unlock_slow(l);
}

/**
 * sp_lock_held() - does this thread hold @l?
 * @l: the lock.
 *
 * For assertions in _locked functions: inline, since the lock asserted is
 * nearly always the one taken last (the top of the stack); the rest of the
 * stack and stop-the-world mode are looked at out of line.  Does not sleep.
 * Return: true when held by the calling thread.
 */
static inline bool sp_lock_held(const struct sp_lock *l)
{
	unsigned n = sp__nr_held;

	if (sp_likely(n - 1 < SP_MAX_HELD && sp__held[n - 1] == l))
		return true;
	return sp_lock_held_slow(l);
}

/* ---- primitives (prim-linux.c) ----------------------------------------- */

int sp_prim_reserve(int fd, uint64_t off, uint64_t len);
int sp_futex_wait(uint32_t *word, uint32_t expected, int timeout_ms);
void sp_futex_wake(uint32_t *word, int n);
uint64_t sp_proc_start_time(int pid);
int sp_proc_start_time_ex(int pid, uint64_t *start);
uint64_t sp_now_ms(void);
uint64_t sp_realtime_s(void);
int sp_prim_random(void *buf, size_t len);

/* ---- fault injection (fault.c) ----------------------------------------- */

#if SP_FAULT_INJECTION
void sp_crash_point(const char *name);
#define SP_CRASH_POINT(name) sp_crash_point(name)
#else
/*
 * No crash point, but still a compiler barrier: the stores on either side
 * are ordered for a process killed between them (the crash tests check
 * each order in the fault build, where the call is the barrier), and a
 * compiler may otherwise swap plain stores to unrelated places.  The CPU
 * needs no fence: a killed process's executed stores all reach memory, so
 * only which ones were executed - program order - matters.
 */
#define SP_CRASH_POINT(name) __asm__ __volatile__("" ::: "memory")
#endif
extern const char *const sp_crash_points[];
extern const unsigned sp_nr_crash_points;

/* ---- buddy pages (buddy.c) ---------------------------------------------- */

void sp_buddy_init(struct sp_seg *s);
/*
 * Doubly linked lists of heads through sp_page.next/prev (pfn + 1): the
 * buddy free lists, a cache's slab lists, a slot's magazine sets.  Inline:
 * a locked alloc+free pair of a lone object moves its slab twice.
 */

/**
 * sp_plist_add() - push a head onto a list of heads.
 * @s: segment.  @head: the list head (pfn + 1).  @pfn: the page, checked
 *     by the caller; the links read from the segment are bounded here.
 *
 * Shared by lists under different locks, so it cannot assert one: the
 * caller holds the lock protecting the list - the buddy lock for the free
 * lists, a cache's lock for its slab lists, the registry lock for a slot's
 * magazine sets.  Does not sleep.
 */
static inline void sp_plist_add(struct sp_seg *s, uint32_t *head, uint32_t pfn)
{
	struct sp_page *pg = &s->pages[pfn];
	uint32_t first = *head;

	pg->prev = 0;
	pg->next = first;
	if (first && first - 1 < s->geo.nr_pages)
		s->pages[first - 1].prev = pfn + 1;
	*head = pfn + 1;
}

/**
 * sp_plist_del() - unlink a head from a list of heads.
 * @s: segment.  @head: the list head.  @pfn: the page, on that list.
 *
 * The caller holds the lock protecting the list, as for sp_plist_add().
 * Does not sleep.
 */
static inline void sp_plist_del(struct sp_seg *s, uint32_t *head, uint32_t pfn)
{
	struct sp_page *pg = &s->pages[pfn];
	uint32_t prev = pg->prev, next = pg->next; /* shared: each read once */

	if (prev && prev - 1 < s->geo.nr_pages)
		s->pages[prev - 1].next = next;
	else
		*head = next;
	if (next && next - 1 < s->geo.nr_pages)
		s->pages[next - 1].prev = prev;
	pg->next = pg->prev = 0;
}
int sp_buddy_lock(struct sp_seg *s);
void sp_buddy_unlock(struct sp_seg *s);
int sp_buddy_alloc_locked(struct sp_seg *s, unsigned order, unsigned kind, uint32_t owner,
			  uint16_t slot, uint32_t *pfn);
void sp_buddy_free_locked(struct sp_seg *s, uint32_t pfn);
void sp_buddy_recover_locked(struct sp_seg *s);
int sp_buddy_alloc(struct sp_seg *s, unsigned order, sp_off_t *off);
int sp_buddy_free(struct sp_seg *s, sp_off_t off);
int sp_block_head(const struct sp_seg *s, uint32_t pfn, uint32_t *head);

/* ---- slab caches (slab.c) ----------------------------------------------- */

int sp_cache_setup(struct sp_seg *s, struct sp_cache *c, const char *name, uint64_t obj_size,
		   uint64_t align, uint32_t flags);
int sp_cache_create(struct sp_seg *s, const char *name, uint64_t obj_size, uint64_t align,
		    uint32_t flags, const void *tmpl, uint32_t *id);
int sp_cache_lookup(struct sp_seg *s, const char *name, uint32_t *id);
struct sp_cache *sp_cache_get(struct sp_seg *s, uint32_t id);
int sp_cache_lock_recover(struct sp_seg *s, struct sp_cache *c);

/**
 * sp_cache_lock() - lock a cache, recovering it if the owner died.
 * @s: segment.  @c: cache.
 *
 * Inline: every locked alloc and free takes it (the recovery is out of
 * line, sp_cache_lock_recover()).  May sleep.
 * Return: 0 or a negative errno.
 */
static inline int sp_cache_lock(struct sp_seg *s, struct sp_cache *c)
{
	int rc = sp_lock(s, &c->lock);

	return sp_unlikely(rc == SP_LOCK_RECOVER) ? sp_cache_lock_recover(s, c) : rc;
}

/* Unlock a cache locked with sp_cache_lock().  Does not sleep. */
static inline void sp_cache_unlock(struct sp_cache *c)
{
	sp_unlock(&c->lock);
}
int sp_cache_alloc(struct sp_seg *s, struct sp_cache *c, uint16_t owner, sp_off_t *off);
int sp_cache_alloc_geo(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *mine,
		       uint16_t owner, sp_off_t *off);
int sp_cache_alloc_geo_locked(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *mine,
			      uint16_t owner, sp_off_t *off);
int sp_cache_free_geo(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *mine,
		      sp_off_t off);
int sp_cache_free_geo_locked(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *mine,
			     sp_off_t off);
int sp_cache_alloc_locked(struct sp_seg *s, struct sp_cache *c, uint16_t owner, sp_off_t *off);
int sp_cache_free(struct sp_seg *s, struct sp_cache *c, sp_off_t off);
int sp_cache_free_locked(struct sp_seg *s, struct sp_cache *c, sp_off_t off);
int sp_cache_alloc_bulk_locked(struct sp_seg *s, struct sp_cache *c, uint16_t owner, sp_off_t *v,
			       unsigned n);
void sp_cache_free_obj_locked(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *g,
			      struct sp_slab *slab, uint32_t idx);
int sp_cache_shrink(struct sp_seg *s, struct sp_cache *c);
int sp_cache_stock_locked(struct sp_seg *s, struct sp_cache *c);
int sp_cache_destroy(struct sp_seg *s, uint32_t id);
int sp_cache_teardown_locked(struct sp_seg *s, struct sp_cache *c);
int sp_cache_recover_locked(struct sp_seg *s, struct sp_cache *c);
bool sp_cache_geometry_ok(const struct sp_seg *s, const struct sp_cache *c);
int sp_cache_snapshot(const struct sp_seg *s, const struct sp_cache *c, struct sp_cache *g);
int sp_cache_obj_locate(const struct sp_seg *s, const struct sp_cache *c, sp_off_t off,
			struct sp_slab **slab, uint32_t *idx);
int sp_cache_snap_locate(const struct sp_seg *s, const struct sp_cache *c, struct sp_cache *g,
			 sp_off_t off, struct sp_slab **slab, uint32_t *idx);
int sp_cache_geo_locked(const struct sp_seg *s, const struct sp_cache *c,
			const struct sp_cache *mine, struct sp_cache *buf, const struct sp_cache **g);
int sp_cache_geo_locate(const struct sp_seg *s, const struct sp_cache *c,
			const struct sp_cache *mine, struct sp_cache *buf, const struct sp_cache **g,
			sp_off_t off, struct sp_slab **slab, uint32_t *idx);
/* The owner tags of @slab in geometry @c (a checked snapshot when others
 * may write the descriptor).  Does not sleep. */
static inline uint16_t *sp_slab_owners(const struct sp_cache *c, struct sp_slab *slab)
{
	return (uint16_t *)(slab->bitmap + c->bitmap_words);
}
uint8_t *sp_slab_obj(const struct sp_cache *c, struct sp_slab *slab, uint32_t idx);
/* The slab header at page @pfn (checked by the caller).  Does not sleep. */
static inline struct sp_slab *sp_slab_at(const struct sp_seg *s, const struct sp_cache *c,
					 uint32_t pfn)
{
	(void)c;
	return (struct sp_slab *)(s->base + sp_pfn_off(s, pfn));
}
bool sp_slab_valid(const struct sp_seg *s, const struct sp_cache *c, uint32_t pfn);

/* ---- kmalloc (kmalloc.c) ------------------------------------------------ */

#define SP_KMALLOC_MAX 8192u
extern const uint32_t sp_kmalloc_sizes[];
extern const unsigned sp_nr_kmalloc_classes;
int sp_kmalloc_init(struct sp_seg *s);
int sp_kmalloc_class(uint64_t size);

#define SP_NR_KMALLOC 23u	/* entries of sp_kmalloc_sizes[] */

/* The class of 1 .. SP_KMALLOC_MAX bytes, without a loop: multiples of 8
 * up to 128, then 192, then powers of two. */
static inline unsigned sp_kmalloc_index(uint64_t size)
{
	if (size <= 128)
		return (unsigned)((size + 7) >> 3) - 1;
	if (size <= 192)
		return 16;
	return 17 + (unsigned)(64 - __builtin_clzll(size - 1)) - 8;
}
int sp_kmalloc_owner(struct sp_seg *s, uint64_t size, uint16_t owner, sp_off_t *off);
int sp_kmalloc(struct sp_seg *s, uint64_t size, sp_off_t *off);
int sp_kmalloc_geo(struct sp_seg *s, uint64_t size, const struct sp_cache *snaps, sp_off_t *off);
int sp_kfree(struct sp_seg *s, sp_off_t off);
int sp_ksize(struct sp_seg *s, sp_off_t off, uint64_t *size);

/* ---- named mempools (mempool.c) ---------------------------------------- */

struct sp_pool_params {
	uint64_t elem_size;
	uint32_t min_nr;
	uint32_t max_nr;	/* 0: no cap */
	uint32_t backing;	/* enum sp_backing */
	uint32_t cache_flags;	/* SP_CACHE_USER_FLAGS, SLAB backing only */
	uint32_t flags;		/* SP_POOL_* */
	uint32_t align;		/* 0: default (8) */
	uint32_t uid;
	uint32_t mode;
};

#define SP_ALLOC_NOWAIT 0x1

int sp_pool_create(struct sp_seg *s, const char *name, const struct sp_pool_params *pp,
		   uint32_t *id);
int sp_pool_lookup(struct sp_seg *s, const char *name, uint32_t *id);
struct sp_pool *sp_pool_get(struct sp_seg *s, uint32_t id);
int sp_pool_lock(struct sp_seg *s, struct sp_pool *p);
void sp_pool_unlock(struct sp_pool *p);
int sp_pool_alloc(struct sp_seg *s, struct sp_pool *p, int flags, int timeout_ms, sp_off_t *off);
int sp_pool_free(struct sp_seg *s, struct sp_pool *p, sp_off_t off);
int sp_pool_alloc_geo(struct sp_seg *s, struct sp_pool *p, const struct sp_cache *mine, int flags,
		      int timeout_ms, sp_off_t *off);
int sp_pool_free_geo(struct sp_seg *s, struct sp_pool *p, const struct sp_cache *mine,
		     sp_off_t off);
int sp_pool_backing_snapshot(struct sp_seg *s, struct sp_pool *p, struct sp_cache *g);
int sp_pool_free_owned(struct sp_seg *s, struct sp_pool *p, sp_off_t off, uint16_t expect);
int sp_pool_resize(struct sp_seg *s, struct sp_pool *p, uint32_t new_min_nr);
int sp_pool_destroy(struct sp_seg *s, uint32_t id);
int sp_pool_teardown_locked(struct sp_seg *s, struct sp_pool *p);
void sp_pool_recover_locked(struct sp_seg *s, struct sp_pool *p);
uint64_t sp_pool_nr_out(struct sp_seg *s, struct sp_pool *p);
int sp_pool_elem_owner(struct sp_seg *s, struct sp_pool *p, sp_off_t off, uint16_t *owner);
void sp_pool_kmalloc_settle(struct sp_seg *s, bool clamp);
void sp_pools_wake_waiters(struct sp_seg *s);
const char *sp_backing_name(uint32_t backing);

/* ---- magazines (magazine.c, fast paths in magazine.h) -------------------- */

int sp_magset_create(struct sp_seg *s, uint32_t tid, struct sp_magset **out);
void sp_magset_destroy(struct sp_seg *s, struct sp_magset *set);
int sp_mag_flush_all(struct sp_seg *s, struct sp_magset *set);
int sp_mag_bind(struct sp_seg *s, struct sp_magset *set, struct sp_cache *c, struct sp_mag **out);
int sp_mag_refill(struct sp_seg *s, struct sp_cache *c, struct sp_mag *m);
int sp_mag_flush(struct sp_seg *s, struct sp_cache *c, struct sp_mag *m, unsigned keep);
struct sp_mag_sums {
	uint64_t cached;	/* free objects in magazines */
	uint64_t nr_alloc;	/* operations not yet folded into the counters */
	uint64_t nr_free;
};
void sp_mag_sum(struct sp_seg *s, uint32_t cache_id, struct sp_mag_sums *out);
void sp_mag_snapshot_begin(struct sp_seg *s);
void sp_mag_snapshot_end(void);
uint64_t sp_mag_cached(struct sp_seg *s, uint32_t cache_id);
uint64_t sp_cache_in_use(struct sp_seg *s, const struct sp_cache *c);
void sp_cache_counters(struct sp_seg *s, const struct sp_cache *c, uint64_t *nr_alloc,
		       uint64_t *nr_free);
void sp_pool_counters(struct sp_seg *s, const struct sp_pool *p, uint64_t *nr_alloc,
		      uint64_t *nr_free);
int sp_mag_release_slot(struct sp_seg *s, uint32_t slot);
int sp_slot_held_sum(const struct sp_seg *s, uint32_t slot, int64_t *sum, uint64_t *listed);
void sp_mag_relink_locked(struct sp_seg *s);
bool sp_magset_valid(const struct sp_seg *s, uint32_t pfn);

/* ---- registry (registry.c) ---------------------------------------------- */

int sp_name_check(const char *name);
uint32_t sp_name_hash(const char *name);
int sp_registry_lookup(struct sp_seg *s, bool pools, const char *name, uint32_t *id);
int sp_registry_lock(struct sp_seg *s);
void sp_registry_unlock(struct sp_seg *s);
int sp_hash_insert_locked(struct sp_seg *s, bool pools, const char *name, uint32_t id);
int sp_hash_lookup_locked(struct sp_seg *s, bool pools, const char *name, uint32_t *id);
int sp_hash_find(struct sp_seg *s, bool pools, const char *name, uint32_t *id);
void sp_hash_remove_locked(struct sp_seg *s, bool pools, const char *name);
void sp_registry_recover_locked(struct sp_seg *s);
sp_off_t *sp_internal_refs(struct sp_seg *s, uint32_t *n);
bool sp_internal_referenced(const sp_off_t *ref, uint32_t n, sp_off_t off);

/* ---- clients and ownership (client.c) ---------------------------------- */

struct sp_holdings {
	uint64_t cached;	/* free objects in the slot's magazines */
	uint64_t magsets;	/* the slot's magazine sets (blocks) */
	uint64_t objects;	/* cache objects (kmalloc included) */
	uint64_t bytes;
	uint64_t pool_elems;	/* of which pool elements */
	uint64_t large_blocks;
	uint64_t pages;		/* pages of large / raw / page-pool blocks */
	uint64_t skipped_caches; /* not walked: geometry corrupted; what the
				  * slot holds there is not counted (or freed) */
};

int sp_client_register(struct sp_seg *s, const char *name, int pid, uint32_t uid, uint32_t gid,
		       uint32_t *slot);
int sp_client_register_ex(struct sp_seg *s, const char *name, int pid, uint32_t uid, uint32_t gid,
			  uint64_t start_time, uint32_t *slot);
int sp_client_set_start_time(struct sp_seg *s, uint32_t slot, int pid, uint64_t start_time);
int sp_client_use_slot(struct sp_seg *s, uint32_t slot);
void sp_seg_set_owner(struct sp_seg *s, uint32_t slot);
int sp_client_mark_dead(struct sp_seg *s, uint32_t slot);
int sp_client_unregister(struct sp_seg *s, uint32_t slot);
int sp_client_reap(struct sp_seg *s);
int sp_slot_holdings(struct sp_seg *s, uint32_t slot, struct sp_holdings *h);
/**
 * sp_holdings_all() - sp_slot_holdings() of every slot < @n in one pass.
 * @s: segment.  @v: @n counts, indexed by slot.  @n: s->geo.max_clients.
 *
 * May sleep (takes each cache lock once, then the buddy lock).
 * Return: 0 or a negative errno.
 */
int sp_holdings_all(struct sp_seg *s, struct sp_holdings *v, uint32_t n);
int sp_slot_release(struct sp_seg *s, uint32_t slot, bool only_reclaim, struct sp_holdings *released);

#define SP_NOTE_BLOCKS UINT32_MAX /* sp_slot_note(): blocks, not a cache */

/**
 * sp_slot_note() - record where the slot a tag names may hold something.
 * @s: segment.  @owner: the tag about to be written: only a user tag
 *     (slot + 1) or a magazine tag names a slot; any other is ignored.
 * @id: the cache whose object (or element) gets the tag, or SP_NOTE_BLOCKS
 *      for a large, raw or page-pool block (a magazine set is found through
 *      its slot's list: SP_SLOT_LOOSE_SETS in layout.h).
 *
 * Called BEFORE the tag is written, so a walk that trusts the slot's filter
 * (client.c) finds every tag naming it; a crash in between leaves a bit
 * with nothing behind it, which costs a walk of one cache.  A plain load
 * first: once the bit is set this is a load and a test, no write to the
 * shared line.  A cache's bit for the handle's own tag (s->owner) is also
 * remembered in the handle (s->noted), and then not looked at again: it
 * stays set until the slot is FREE, and a slot is freed only after its
 * holder stopped using it (sp_client_unregister(), the release of a dead
 * slot) - and a new holder's handle starts with no memo.  Only a
 * scribbled filter goes unrepaired: the filter is untrusted anyway, and
 * hiding a slot's holdings from its own walks is the scribbler's loss
 * (ARCHITECTURE.md, "Where a slot may hold something").  Does not sleep.
 */
sp_fast_inline void sp_slot_note(struct sp_seg *s, uint16_t owner, uint32_t id)
{
	uint32_t slot, bit_nr = id % SP_SLOT_FILTER_BITS;
	struct sp_client *cl;
	uint64_t *w, bit = 1ull << (bit_nr % 64);

	/* the memo: this handle found the bit set for its own tag before, and
	 * it stays set until the slot is FREE (then owner changes first) */
	if (sp_likely(owner == s->owner && id != SP_NOTE_BLOCKS &&
		      (__atomic_load_n(&s->noted[bit_nr / 64], __ATOMIC_RELAXED) & bit)))
		return;
	slot = sp_owner_slot(owner);
	if (sp_unlikely(slot >= s->geo.max_clients)) /* also any tag naming no slot */
		return;
	cl = &sp_clients(s)[slot];
	if (id == SP_NOTE_BLOCKS) {
		if (sp_likely(__atomic_load_n(&cl->flags, __ATOMIC_RELAXED) & SP_SLOT_MAY_BLOCKS))
			return;
		__atomic_fetch_or(&cl->flags, SP_SLOT_MAY_BLOCKS, __ATOMIC_SEQ_CST);
	} else {
		w = &cl->used[bit_nr / 64];
		if (!(__atomic_load_n(w, __ATOMIC_RELAXED) & bit)) {
			__atomic_fetch_or(w, bit, __ATOMIC_SEQ_CST);
			SP_CRASH_POINT("slot.note"); /* the bit without the tag: harmless */
		}
		if (owner == s->owner) /* threads may race here: a lost bit is noted again */
			__atomic_store_n(&s->noted[bit_nr / 64],
					 __atomic_load_n(&s->noted[bit_nr / 64], __ATOMIC_RELAXED) | bit,
					 __ATOMIC_RELAXED);
		return;
	}
	SP_CRASH_POINT("slot.note"); /* the bit without the tag: harmless */
}

/**
 * sp_slot_held_add() - add @n to the held bound of the slot @owner names.
 * @s: segment.  @owner: a tag: only a user tag (slot + 1) is counted.
 * @n: +1 before that tag is written on an object of a cache, -1 after the
 *     caller's own tag was taken off one (layout.h, "The held bound").
 *
 * An atomic add (a slot's threads share the counter), sequentially
 * consistent: also a compiler barrier, so it is stored before the tag
 * store that follows it and after the untag that precedes it, which is
 * what a process killed in between needs.  Does not sleep.
 */
sp_fast_inline void sp_slot_held_add(struct sp_seg *s, uint16_t owner, int64_t n)
{
	uint32_t slot = (uint32_t)owner - 1u;

	if (owner == s->owner && s->held) /* the common case: its own, one add */
		__atomic_fetch_add(s->held, n, __ATOMIC_SEQ_CST);
	else if (sp_owner_is_user(owner) && slot < s->geo.max_clients)
		__atomic_fetch_add(&sp_clients(s)[slot].held, n, __ATOMIC_SEQ_CST);
	else
		__asm__ __volatile__("" ::: "memory"); /* ordered all the same */
}

/* May @slot hold something in cache @id (SP_NOTE_BLOCKS: blocks)?  Reads
 * the untrusted filter.  Does not sleep. */
static inline bool sp_slot_may_hold(const struct sp_seg *s, uint32_t slot, uint32_t id)
{
	const struct sp_client *cl = &sp_clients(s)[slot];

	if (id == SP_NOTE_BLOCKS) /* blocks, or a magazine set off its list */
		return __atomic_load_n(&cl->flags, __ATOMIC_ACQUIRE) &
		       (SP_SLOT_MAY_BLOCKS | SP_SLOT_LOOSE_SETS);
	id %= SP_SLOT_FILTER_BITS;
	return __atomic_load_n(&cl->used[id / 64], __ATOMIC_ACQUIRE) >> (id % 64) & 1;
}

/* ---- views (dump.c) ----------------------------------------------------- */

void sp_dump_buddyinfo(struct sp_seg *s, FILE *f);
void sp_dump_slabinfo(struct sp_seg *s, FILE *f, bool all);
void sp_dump_pools(struct sp_seg *s, FILE *f);
void sp_dump_clients(struct sp_seg *s, FILE *f);

/* ---- checker (check.c) -------------------------------------------------- */

struct sp_violation {
	char what[200];
};

struct sp_report {
	unsigned nr;		/* violations found (may exceed cap) */
	unsigned cap;
	struct sp_violation *v;	/* first min(nr, cap) of them */
};

#define SP_CHECK_NOLOCK 0x1 /* do not take locks (read-only or quiescent) */
#define SP_CHECK_QUIESCENT 0x2 /* no magazine fast path runs: check live slots' held bounds */

int sp_check(struct sp_seg *s, int flags, struct sp_report *r);
void sp_report_free(struct sp_report *r);
void sp_report_add(struct sp_report *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif /* SHMPOOL_CORE_H */
