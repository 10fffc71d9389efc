/* SPDX-License-Identifier: MIT */
/*
 * layout.h - every structure that lives in the shared-memory segment.
 *
 * Glossary
 *   segment   one POSIX shm object mapped MAP_SHARED by every process; each
 *             process maps it at its own address, so the segment stores
 *             offsets (sp_off_t, 0 = NULL), never pointers.
 *   page      4 KiB unit of the data area, described by one struct sp_page
 *             (the kernel's struct page).  Page numbers are indices into the
 *             data area; "pfn + 1" is stored where 0 must mean "none".
 *   block     2^order contiguous pages handed out by the buddy allocator.
 *   head      first page of a block; its sp_page.info is the block's truth.
 *   tail      any other page of a block; info = SP_PG_TAIL, owner = head pfn.
 *   slab      a block owned by a cache, holding objperslab objects plus a
 *             header (struct sp_slab) with the allocation bitmap.
 *   cache     struct sp_cache: a kmem_cache of fixed-size objects.
 *   kmalloc   the caches of the general size classes (8..8192 bytes).
 *   pool      struct sp_pool: a named mempool_t with min_nr reserved
 *             elements in an elements array, on top of a backing allocator.
 *   slot      an entry of the client table; owner of what it allocates.
 *   owner     uint16 tag on every allocated object/element/block: slot + 1,
 *             or SP_OWNER_RESERVE / SP_OWNER_INTERNAL; 0 = free;
 *             SP_OWNER_MAG(slot + 1) = free, cached in that slot's magazine.
 *   magazine  struct sp_mag: a thread's stack of free objects of one cache,
 *             in a per-thread struct sp_magset block (see magazine.c).
 *
 * Picture (offsets grow downwards):
 *
 *   0             struct sp_header (geometry, buddy zone, registry lock)
 *   clients_off   struct sp_client[max_clients]
 *   caches_off    struct sp_cache[nr_kmalloc + max_caches + max_pools]
 *                 (kmalloc classes, named caches, then pool i's cache)
 *   pools_off     struct sp_pool[max_pools]
 *   chash_off     uint32_t[chash_size]          name -> cache id + 1
 *   phash_off     uint32_t[phash_size]          name -> pool id + 1
 *   pages_off     struct sp_page[nr_pages]
 *   data_off      nr_pages * 4 KiB of buddy-managed pages
 *
 * Lock order (take in this order, never the reverse; asserted when
 * SP_DEBUG_LEVEL >= 1 by lock.c):
 *   1. hdr->registry_lock  registry hashes, descriptor state changes,
 *                          client table, INTERNAL objects, each slot's
 *                          list of magazine sets
 *   2. pool->lock          a pool's reserve (elements[], curr_nr)
 *   3. cache->lock         a cache's slabs: lists, bitmaps, owners, counters
 *   4. hdr->buddy.lock     free lists and sp_page.info of every page
 * Never two locks of the same level at once.  A magazine takes no lock:
 * only its own thread writes it (magazine.c).
 *
 * Every lock is a process-shared robust priority-inheritance mutex (robust:
 * a dead owner is detected; PI: a killed waiter loses no wake-up, lock.c).
 * When its owner dies the next locker rebuilds the protected structure from
 * its truth before going on:
 *   buddy  <- sp_page.info of each head, walked from pfn 0 by block order
 *   cache  <- the slab headers' bitmaps of the pages it owns
 *   pool   <- elements[0, curr_nr) plus the owner tags in its backing
 *             (a shared kmalloc class: elements[0, curr_nr) and put_off)
 *   registry <- descriptor states (CREATING/DESTROYING are rolled back)
 *
 * All structures here are shared and untrusted: a code path the daemon runs
 * bounds-checks every offset and index it reads before using it.
 */
#ifndef SHMPOOL_LAYOUT_H
#define SHMPOOL_LAYOUT_H

#include <pthread.h>
#include <stdint.h>

#define SP_MAGIC		0x314c4f4f504d4853ULL /* "SHMPOOL1" little-endian */
#define SP_LAYOUT_VERSION	5u	/* 5: sp_client.held, sp_mag.held */
#define SP_PAGE_SHIFT		12
#define SP_PAGE_SIZE		(1u << SP_PAGE_SHIFT)
#define SP_MAX_ORDER_LIMIT	20	/* 4 GiB blocks at most */
#define SP_DEFAULT_MAX_ORDER	10	/* 4 MiB blocks */
#define SP_NAME_MAX		63	/* name length, without the NUL */
#define SP_CLIENT_NAME_MAX	31

typedef uint64_t sp_off_t; /* offset from the segment base; 0 = NULL */

/*
 * struct sp_lock - a process-shared robust mutex with its lock-order level.
 * Lives in shared memory.
 */
struct sp_lock {
	pthread_mutex_t mutex;
	uint32_t level;		/* SP_LOCK_* rank, checked against the lock order */
	uint32_t recoveries;	/* times a locker found the owner dead */
};

enum sp_lock_level {
	SP_LOCK_REGISTRY = 1,
	SP_LOCK_POOL = 2,
	SP_LOCK_CACHE = 3,
	SP_LOCK_BUDDY = 4,
};

/* Owner tags stored per object / element / large block. */
#define SP_OWNER_NONE		0u	/* free */
#define SP_OWNER_RESERVE	0xffffu	/* in a pool's reserve */
#define SP_OWNER_INTERNAL	0xfffeu	/* segment metadata (templates, arrays) */
#define SP_OWNER_MAG_BIT	0x8000u	/* | slot + 1: free, in that slot's magazine */
#define SP_MAX_CLIENTS_LIMIT	0x7ff0u	/* slot + 1 | MAG bit stays below the specials */
#define SP_OWNER_MAG(tag)	((uint16_t)((tag) | SP_OWNER_MAG_BIT))

/* An object held by a client (slot + 1), not free/cached/reserve/internal. */
static inline int sp_owner_is_user(uint16_t tag)
{
	return tag != 0 && tag <= SP_MAX_CLIENTS_LIMIT;
}

/* A free object cached in a magazine of slot (tag & 0x7fff) - 1. */
static inline int sp_owner_is_mag(uint16_t tag)
{
	return (tag & SP_OWNER_MAG_BIT) && (tag & 0x7fffu) != 0 &&
	       (tag & 0x7fffu) <= SP_MAX_CLIENTS_LIMIT;
}

/* The slot a user or magazine tag names; UINT32_MAX for any other tag. */
static inline uint32_t sp_owner_slot(uint16_t tag)
{
	return sp_owner_is_user(tag) || sp_owner_is_mag(tag) ? (uint32_t)(tag & 0x7fffu) - 1u
							     : UINT32_MAX;
}

/* ---- pages ------------------------------------------------------------ */

/* sp_page.info: state | order << 8 | kind << 16.  One 32-bit store commits. */
enum sp_page_state { SP_PG_TAIL = 0, SP_PG_FREE = 1, SP_PG_ALLOC = 2 };
enum sp_page_kind {
	SP_KIND_NONE = 0,
	SP_KIND_SLAB = 1,	/* owner = cache id */
	SP_KIND_LARGE = 2,	/* kmalloc > 8 KiB; slot = owner tag */
	SP_KIND_POOL = 3,	/* page-backed pool element; owner = pool id */
	SP_KIND_RAW = 4,	/* sp_buddy_alloc() by a user of the core */
	SP_KIND_MAG = 5,	/* a thread's magazine set; slot = owner tag */
};
#define SP_PG_INFO(state, order, kind) \
	((uint32_t)(state) | (uint32_t)(order) << 8 | (uint32_t)(kind) << 16)
#define SP_PG_STATE(info) ((info) & 0xffu)
#define SP_PG_ORDER(info) (((info) >> 8) & 0xffu)
#define SP_PG_KIND(info)  (((info) >> 16) & 0xffu)

#define SP_PGF_BACKED	0x1u	/* backing store reserved with fallocate */

/*
 * struct sp_page - metadata of one data page (24 bytes).  Lives in shared
 * memory.  info/owner/slot of a head describe its whole block.
 * next/prev link FREE heads into buddy free lists (under the buddy lock) and
 * SLAB heads into their cache's slab lists (under that cache's lock).
 */
struct sp_page {
	uint32_t info;		/* SP_PG_INFO(); written last: the commit */
	uint32_t owner;		/* SLAB: cache id; POOL: pool id; TAIL: head pfn */
	uint16_t slot;		/* LARGE/POOL/RAW: owner tag */
	uint16_t flags;		/* SP_PGF_* */
	uint32_t next;		/* pfn + 1 of next on the list, 0 = end */
	uint32_t prev;		/* pfn + 1 of previous, 0 = first */
	uint32_t pad;
};

/*
 * struct sp_buddy - the buddy zone.  Lives in shared memory (in the header).
 * Invariants (checked by check.c):
 *   nr_free[o] == length of list o == number of FREE heads of order o
 *   free_pages == sum over o of nr_free[o] << o
 *   no FREE head of order o < max_order has a FREE buddy of order o
 */
struct sp_buddy {
	struct sp_lock lock;
	uint32_t max_order;
	uint32_t nr_pages;
	uint32_t free_head[SP_MAX_ORDER_LIMIT + 1]; /* pfn + 1 */
	uint32_t nr_free[SP_MAX_ORDER_LIMIT + 1];
	uint64_t free_pages;
	uint64_t nr_alloc;	/* statistics, not invariants */
	uint64_t nr_free_calls;
	uint64_t nr_fail;
	uint64_t nr_backing_fail; /* fallocate refused: /dev/shm full */
};

/* ---- slabs and caches ------------------------------------------------- */

#define SP_SLAB_MAGIC	0x51ab51abu
enum sp_slab_list { SP_LIST_NONE = 0, SP_LIST_PARTIAL, SP_LIST_FULL, SP_LIST_EMPTY };

/*
 * struct sp_slab - header at the start of every slab block.  Lives in shared
 * memory; protected by its cache's lock.  Followed by
 *   uint64_t bitmap[bitmap_words]   bit i set <=> object i allocated
 *   uint16_t owner[objperslab]      owner tag of object i (0 iff free)
 * and, at obj_start + colour, the objects themselves.
 * Invariant: inuse == popcount(bitmap); list matches inuse
 *   (0 -> EMPTY, objperslab -> FULL, else PARTIAL).
 */
struct sp_slab {
	uint32_t magic;		/* SP_SLAB_MAGIC ^ cache id ^ pfn; written last */
	uint32_t cache_id;
	uint32_t inuse;
	uint32_t colour;	/* byte offset added to cache->obj_start */
	uint32_t hint;		/* bitmap word to start the next search at */
	uint32_t list;		/* enum sp_slab_list */
	uint64_t bitmap[];
};

#define SP_CACHE_MAGIC	0xcac4e000u
enum sp_desc_state { SP_DESC_FREE = 0, SP_DESC_CREATING, SP_DESC_LIVE, SP_DESC_DESTROYING };

/* Cache flags (public ones are mirrored in shmpool.h later). */
#define SP_CACHE_HWCACHE_ALIGN	0x0001u	/* align objects to 64 bytes */
#define SP_CACHE_POISON		0x0002u	/* fill free objects, verify on reuse */
#define SP_CACHE_REDZONE	0x0004u	/* guard bytes after every object */
#define SP_CACHE_KMALLOC	0x0100u	/* a kmalloc size class */
#define SP_CACHE_ANON		0x0200u	/* backing of a pool; not in the registry */
#define SP_CACHE_USER_FLAGS	(SP_CACHE_HWCACHE_ALIGN | SP_CACHE_POISON | SP_CACHE_REDZONE)

#define SP_POISON_FREE	0x6bu
#define SP_REDZONE_BYTE	0xbbu
#define SP_REDZONE_SIZE	8u

/*
 * struct sp_cache - a kmem_cache.  Lives in shared memory in the cache table.
 * Geometry fields are written at creation and never change while LIVE; their
 * invariants are sp_cache_geometry_ok()'s (slab.c).  Anybody may rewrite
 * them, so walks check and use a private copy (sp_cache_snapshot()).
 * Invariants: active_objs == sum of slab inuse; total_objs ==
 *   nr_slabs * objperslab; nr_partial + nr_full + nr_empty == nr_slabs.
 */
struct sp_cache {
	uint32_t magic;		/* SP_CACHE_MAGIC ^ id while not FREE */
	uint32_t state;		/* enum sp_desc_state; changed under registry lock */
	uint32_t id;
	uint32_t gen;		/* bumped at every create: stale handles fail */
	struct sp_lock lock;
	char name[SP_NAME_MAX + 1];
	/* geometry, fixed while LIVE */
	uint32_t flags;
	uint32_t obj_size;	/* what the user asked for */
	uint32_t stride;	/* obj_size + red zone, aligned */
	uint32_t align;
	uint32_t order;		/* pages per slab = 1 << order */
	uint32_t objperslab;
	uint32_t bitmap_words;
	uint32_t obj_start;	/* offset of object 0 in the slab, colour 0 */
	uint32_t colour_off;	/* colour step in bytes */
	uint32_t colour_num;	/* number of colours */
	uint32_t min_free;	/* kmalloc prefill: free objects kept in stock */
	uint32_t max_objs;	/* 0 = no cap (pools use max_nr) */
	uint32_t pool_id;	/* pool + 1 when ANON backing of a pool */
	uint32_t creator_uid;
	uint32_t mode;
	uint32_t owners_off;	/* byte offset of owner[] in a slab */
	uint64_t recip;		/* UINT64_MAX / stride + 1: index without a divide */
	sp_off_t tmpl_off;	/* init template: obj_size bytes, INTERNAL kmalloc */
	/* state under the cache lock */
	uint32_t colour_next;
	uint32_t list_head[4];	/* by enum sp_slab_list: head pfn + 1 */
	uint32_t nr_list[4];	/* slabs on each list */
	uint32_t nr_slabs;
	uint64_t active_objs;
	uint64_t total_objs;
	uint64_t nr_alloc;	/* statistics */
	uint64_t nr_free;
	uint64_t nr_fail;
	uint64_t nr_bad_free;	/* double, foreign and mid-object frees refused */
	uint64_t nr_poison_err;	/* free objects found written to */
	uint64_t nr_redzone_err;
	uint64_t nr_grow;
	uint64_t nr_shrink;
	uint64_t nr_mag_refill;	/* magazine refills and flushes (magazine.c) */
	uint64_t nr_mag_flush;
};

/* ---- pools ------------------------------------------------------------ */

#define SP_POOL_MAGIC	0x90019000u
enum sp_backing {
	SP_BACK_SLAB = 0,	/* the pool's own ANON slab cache of elem_size */
	SP_BACK_PAGES = 1,	/* buddy blocks of page_order, kind POOL */
	SP_BACK_KMALLOC = 2,	/* a kmalloc size class, shared (mempool.c) */
};
#define SP_POOL_RECLAIM_ON_EXIT	0x1u	/* a dead slot's elements come back */

/*
 * struct sp_pool - a named mempool_t.  Lives in shared memory in the pool
 * table.  Invariants: curr_nr <= min_nr <= elements_cap; elements[0, curr_nr)
 * are distinct allocated elements of the backing, each tagged
 * SP_OWNER_RESERVE, and no other element of the backing carries that tag.
 * A kmalloc class is shared by the KMALLOC-backed pools on it, so there:
 *   RESERVE-tagged objects of the class == sum over its KMALLOC pools of
 *   curr_nr (+ 1 for a put_off caught between its tag and its commit)
 *   curr_nr <= nr_objs <= max_nr (when max_nr is set)
 */
struct sp_pool {
	uint32_t magic;		/* SP_POOL_MAGIC ^ id while not FREE */
	uint32_t state;		/* enum sp_desc_state */
	uint32_t id;
	uint32_t gen;
	struct sp_lock lock;
	char name[SP_NAME_MAX + 1];
	uint32_t flags;		/* SP_POOL_* */
	uint32_t backing;	/* enum sp_backing */
	uint32_t cache_id;	/* SLAB: its own (ANON) cache; KMALLOC: its class */
	uint32_t page_order;	/* PAGES: order of each element */
	uint64_t elem_size;
	uint32_t max_nr;	/* 0 = no cap; else elements out + reserve <= max_nr */
	uint32_t creator_uid;
	uint32_t mode;
	uint32_t pad0;
	/* reserve, under the pool lock */
	uint32_t min_nr;
	uint32_t curr_nr;	/* read without the lock as a hint only */
	uint32_t elements_cap;
	uint32_t nr_pages_out;	/* PAGES backing: blocks allocated, incl. reserve */
	sp_off_t elements_off;	/* sp_off_t[elements_cap], INTERNAL kmalloc */
	sp_off_t put_off;	/* KMALLOC: element on its way into (or out of)
				 * the reserve, 0 = none; see mempool.c */
	uint64_t nr_objs;	/* KMALLOC: class objects it holds, reserve
				 * included; under the class's cache lock; may
				 * over-count after a crash, never under-count */
	/* wait queue: futex word bumped on every free that may help a waiter */
	uint32_t wait_seq;
	uint32_t nr_waiters;	/* advisory: a killed waiter leaves it high */
	uint64_t nr_alloc;	/* statistics */
	uint64_t nr_free;
	uint64_t nr_reserve_alloc; /* served from the reserve */
	uint64_t nr_fail;
	uint64_t nr_wait;
	uint64_t nr_bad_free;
};

/* ---- clients ---------------------------------------------------------- */

enum sp_client_state { SP_CLIENT_FREE = 0, SP_CLIENT_ALIVE, SP_CLIENT_DEAD };

#define SP_SLOT_FILTER_BITS	512u	/* sp_client.used: one bit per cache id mod this */
#define SP_SLOT_MAY_BLOCKS	1u	/* sp_client.flags: may hold large, raw or page-pool blocks */
/*
 * sp_client.flags: a magazine set block of the slot may be off its list
 * (mag_head).  Sets are made, unlinked and freed only under the registry
 * lock, so one that is off the list was left by a holder of that lock who
 * died; the registry's recovery (sp_mag_relink_locked()) sets this flag on
 * the slot such a block names, and the slot's release then walks the pages
 * to free it.  Otherwise a set is found through the list, and a release
 * needs no page walk for sets.
 */
#define SP_SLOT_LOOSE_SETS	2u

/*
 * The held bound.  For every slot s, with T(s) its user tag (slot + 1):
 *
 *   sp_client.held + sum over the magazines m of s's committed magazine
 *   sets (those on its list) of m.held
 *     >= #allocated objects of any cache tagged T(s), or tagged
 *        SP_OWNER_MAG(T(s)) while no committed entry (objs[0, nr)) of one
 *        of those magazines lists them
 *
 * i.e. an upper bound of what a walk of the slot's caches could find
 * beyond what its magazines list.  A single term may be negative (one
 * thread pops an object, another pushes it back); the sum never is,
 * because every increment is stored (in program order) BEFORE the tag
 * store it announces and every decrement AFTER the store that makes the
 * object stop counting (the untag, or a magazine's nr commit).  A slot
 * that is not ALIVE and whose bound is <= 0 is released without walking
 * its caches (client.c).  Another slot freeing its object (producer/
 * consumer) takes it off this slot's sp_client.held with an atomic add
 * after the untag or retag (a magazine push owes it first: sp_mag.owed),
 * so a producer whose objects were all freed by others is at 0 too.  Block kinds (large, raw,
 * page-pool, magazine sets) are not counted: they are found by the page
 * walk, which this bound does not skip.
 */

/*
 * struct sp_client - one slot of the client table.  Lives in shared memory,
 * changed under the registry lock.  A DEAD slot stays until what it holds
 * has been released (sp_slot_release()), so orphans keep their attribution.
 */
struct sp_client {
	uint32_t state;		/* enum sp_client_state */
	uint32_t pid;
	uint64_t start_time;	/* /proc/pid/stat field 22: pid reuse guard;
				 * 0 while ALIVE: not recorded yet (client.c) */
	uint32_t uid;
	uint32_t gid;
	uint64_t token;		/* session token for reconnects */
	uint64_t attach_time;	/* CLOCK_REALTIME seconds */
	uint64_t death_time;
	uint32_t gen;
	uint32_t mag_head;	/* first magazine set: head pfn + 1, 0 = none */
	char name[SP_CLIENT_NAME_MAX + 1];
	/*
	 * Where the slot may hold something (client.c): bit id % SP_SLOT_FILTER_BITS
	 * of used[] for each cache in which an object or element may carry its
	 * tag or magazine tag; SP_SLOT_MAY_BLOCKS in flags when a large, raw or
	 * page-pool block or a magazine set may carry it.  Set (atomic OR)
	 * before the first such tag is written, cleared only while the slot is
	 * FREE.  Untrusted like the rest: a walk that trusts it may miss what a
	 * scribbled filter hides (see client.c).
	 */
	uint32_t flags;
	uint32_t pad0;
	uint64_t used[SP_SLOT_FILTER_BITS / 64];
	/*
	 * The slot's part of the held bound (see "The held bound" above):
	 * atomic adds by its locked paths (slab.c, mempool.c) and by the
	 * fold of a magazine set's counts when the set goes (magazine.c).
	 * Reset to 0 only where the filter is cleared.  Untrusted.
	 */
	int64_t held;
};

/* ---- magazines (magazine.c) ---------------------------------------------- */

#define SP_MAG_OBJS	507	/* room for objects per magazine (4088-byte magazines) */
#define SP_MAGSET_MAGS	32	/* magazines per set, direct-mapped by sp_mag_index() */
#define SP_MAGSET_ORDER	5	/* 128 KiB per thread and session */
#define SP_MAG_BYTES	(128u << 10) /* a magazine caches about this much ... */
#define SP_MAG_MIN	64u	/* ... but at least this many objects */

/*
 * How many objects a magazine of a cache with this stride holds: 507 of up
 * to 256 bytes (so a burst of 256 allocations and frees stays in the
 * magazine), fewer of larger ones (what a thread keeps cached, bounded in
 * bytes), at least 64.  Refills fill to half of it, flushes keep half.
 */
static inline uint32_t sp_mag_cap_of(uint32_t stride)
{
	uint32_t n = stride ? SP_MAG_BYTES / stride : SP_MAG_OBJS;

	return n > SP_MAG_OBJS ? SP_MAG_OBJS : n < SP_MAG_MIN ? SP_MAG_MIN : n;
}
#define SP_MAGSET_MAGIC	0x3a65e700u

/*
 * The magazine of a set that cache @id uses.  A multiplicative hash, not
 * id % 32: pool i's cache and named cache i lie max_caches apart, a
 * multiple of 32 by default, and would always evict each other.  This
 * multiplier keeps the 23 kmalloc classes apart and separates cache i from
 * cache i + 64 .. 1024 for every power of two (checked when it was chosen).
 */
static inline uint32_t sp_mag_index(uint32_t id)
{
	return (uint32_t)(id * 0x1d77a51bu) >> 27;
}

/*
 * struct sp_mag - one thread's stack of free objects of one cache (4 KiB).
 * Lives in shared memory; written only by its thread (no lock), read by
 * stats and the checker.  The objects' owner tags, not this array, are
 * the truth: each of objs[0, nr) is tagged SP_OWNER_MAG(slot + 1).
 */
struct sp_mag {
	uint32_t cache_id;	/* cache + 1; 0 = unbound */
	uint32_t cache_gen;	/* the cache's gen when bound */
	uint32_t nr;		/* objects in objs[]: the commit of push/pop */
	uint32_t owed;		/* another slot's objects this magazine took in,
				 * not yet counted down in that slot's held:
				 * its user tag << 16 | how many (magazine.c,
				 * sp_mag_settle()); lost in a crash, which
				 * only over-counts */
	uint32_t nr_alloc;	/* operations not yet folded into the counters */
	uint32_t nr_free;
	int64_t held;		/* its part of the slot's held bound (above):
				 * plain stores by its thread, ordered around
				 * the tag and nr stores (magazine.h) */
	sp_off_t objs[SP_MAG_OBJS];
};

/*
 * struct sp_magset - the magazines of one thread of one client: a buddy
 * block of kind SP_KIND_MAG tagged with the slot, on the slot's list
 * (sp_client.mag_head, linked through sp_page.next/prev under the registry
 * lock).  Lives in shared memory.
 */
struct sp_magset {
	uint32_t magic;		/* SP_MAGSET_MAGIC ^ pfn; written last */
	uint32_t slot;
	uint32_t tid;
	uint32_t pad;
	uint8_t pad2[256 - 16];
	struct sp_mag mag[SP_MAGSET_MAGS];
};
_Static_assert(sizeof(struct sp_magset) == (4096u << SP_MAGSET_ORDER),
	       "a magazine set fills its block");

/* ---- header ----------------------------------------------------------- */

struct sp_region {
	uint64_t off;
	uint64_t size;
};

/*
 * struct sp_header - page 0 of the segment.  Lives in shared memory.  The
 * geometry (magic .. geometry_sum) is written once at creation and covered
 * by geometry_sum; magic is written last, so a half-created segment is
 * never mistaken for a valid one.
 */
struct sp_header {
	uint64_t magic;
	uint32_t layout_version;
	uint32_t page_size;
	uint64_t seg_size;
	uint32_t header_size;	/* sizeof(struct sp_header) */
	uint32_t sizeof_page;	/* struct sizes guard against ABI drift */
	uint32_t sizeof_cache;
	uint32_t sizeof_pool;
	uint32_t sizeof_client;
	uint32_t sizeof_mutex;
	uint32_t max_order;
	uint32_t max_clients;
	uint32_t max_caches;
	uint32_t max_pools;
	uint32_t nr_kmalloc;	/* kmalloc classes: cache ids 0 .. nr_kmalloc-1 */
	uint32_t kmalloc_prefill;
	uint32_t nr_pages;
	uint32_t chash_size;	/* power of two */
	uint32_t phash_size;	/* power of two */
	uint32_t pad0;
	struct sp_region clients, caches, pools, chash, phash, pages, data;
	uint64_t created_time;
	uint64_t geometry_sum;	/* FNV-1a over the fields above */
	/* mutable part */
	struct sp_lock registry_lock;
	struct sp_buddy buddy;
	uint64_t attach_count;
	uint32_t nr_live_caches;
	uint32_t nr_live_pools;
};

#endif /* SHMPOOL_LAYOUT_H */
