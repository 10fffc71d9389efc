/* SPDX-License-Identifier: MIT */
/*
 * pool.c - named pools: the control path through the daemon, the data path
 * straight into the core's mempool (shared/mempool.c) on the mapping.
 *
 * Creating, opening, resizing and destroying a pool are daemon requests:
 * the daemon owns the registry and checks permissions.  Its PoolInfo names
 * the pool's table id and generation; the handle keeps both.  Every data
 * call first checks, without a lock, that the descriptor at that id is
 * still LIVE with that generation, so a handle to a destroyed pool fails
 * with -ENOENT instead of touching a pool recreated in the same slot.  (A
 * destroy racing with an alloc in flight is caught by the core, which sees
 * the descriptor leave LIVE.)  Allocation and free then run entirely in
 * this process under the pool's and backing's process-shared locks,
 * tagging elements with this session's slot.
 *
 * Magazines: a pool backed by its own slab cache, with no max_nr cap and
 * no debug flags, allocates and frees through the calling thread's
 * magazine (tcache.c, shared/magazine.c) - no lock - and falls back to the
 * core's mempool path when the magazine cannot help: the backing is
 * exhausted (then the reserve and the wait queue work as without
 * magazines), the reserve is short (a free refills it first) or someone
 * waits (a free wakes them).  Never a pool backed by a kmalloc class: the
 * class is shared, so the pool's count of its objects (nr_objs) is kept by
 * the core's path alone, which a magazine would bypass.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

_Static_assert(SHMP_BACKING_SLAB == SP_BACK_SLAB && SHMP_BACKING_PAGES == SP_BACK_PAGES &&
		       SHMP_BACKING_KMALLOC == SP_BACK_KMALLOC,
	       "public backing values mirror the core's");
_Static_assert(SHMP_POOL_RECLAIM_ON_EXIT == SP_POOL_RECLAIM_ON_EXIT,
	       "public pool flags mirror the core's");
_Static_assert(SHMP_HWCACHE_ALIGN == SP_CACHE_HWCACHE_ALIGN &&
		       SHMP_DEBUG_POISON == SP_CACHE_POISON && SHMP_DEBUG_REDZONE == SP_CACHE_REDZONE,
	       "public debug flags mirror the core's");

/*
 * struct shmp_pool - a handle to a named pool.  Process-private; immutable
 * after open.
 */
struct shmp_pool {
	shmp_client *c;		/* holds a reference */
	uint32_t id;		/* index in the pool table */
	uint32_t gen;		/* the descriptor's generation at open */
	uint64_t elem_size;
	struct sp_cache *cache;	/* the backing cache when magazines may be used
				 * (NULL in a session without magazines: the
				 * locked path, without asking the thread cache) */
	struct sp_pool *desc;	/* its descriptor in the table (check gen before use) */
	bool fast;		/* cache set and geo valid: the fast paths may run */
	struct sp_mag_geo geo;	/* the backing cache's, for the fast paths */
	bool snap_ok;		/* snap is valid */
	struct sp_cache snap;	/* the backing cache's checked snapshot, for the
				 * locked path (sp_pool_alloc_geo()) */
	char name[SP_NAME_MAX + 1];
};

/* The snapshot the locked path may use instead of taking one per call. */
static const struct sp_cache *pool_snap(const shmp_pool *p)
{
	return p->snap_ok ? &p->snap : NULL;
}

/* The LIVE descriptor this handle names, or why not.  Does not sleep. */
sp_fast_inline int pool_desc(shmp_pool *p, struct sp_pool **out)
{
	struct sp_pool *d;
	int rc;

	if (sp_unlikely(!p))
		return sp_err(-EINVAL, "NULL pool handle");
	rc = shmp__usable(p->c);
	if (sp_unlikely(rc))
		return rc;
	/*
	 * sp_pool_get()'s checks, made at the handle's own pointer: desc is
	 * &sp_pools(seg)[id] with id bounded by sp_pool_get() at open, both
	 * private and fixed while the session has seg (it never maps another
	 * segment), so only the shared descriptor is read again here.
	 */
	d = p->desc;
	if (sp_unlikely(__atomic_load_n(&d->state, __ATOMIC_ACQUIRE) != SP_DESC_LIVE ||
			d->magic != (SP_POOL_MAGIC ^ p->id) || d->id != p->id ||
			__atomic_load_n(&d->gen, __ATOMIC_RELAXED) != p->gen))
		return sp_err(-ENOENT, "pool %s was destroyed", p->name);
	*out = d;
	return 0;
}

/* A handle for the pool the daemon described, checked against the segment. */
static int handle_from_info(shmp_client *c, const Shmpool__Response *resp, void *outp)
{
	shmp_pool **out = outp;
	const Shmpool__PoolInfo *info = resp->pool;
	struct sp_pool *d;
	shmp_pool *p;

	if (resp->payload_case != SHMPOOL__RESPONSE__PAYLOAD_POOL || !info)
		return sp_err(-EPROTO, "daemon answered without a PoolInfo");
	d = sp_pool_get(c->seg, info->id);
	if (!d || d->gen != info->gen || strncmp(d->name, info->name, sizeof(d->name)))
		return sp_err(-ENOENT, "pool %s (id %u, gen %u) is not in the segment: destroyed "
				       "meanwhile?",
			      info->name, info->id, info->gen);
	p = calloc(1, sizeof(*p));
	if (!p)
		return sp_err(-ENOMEM, "out of process memory");
	p->c = c;
	p->id = info->id;
	p->gen = info->gen;
	p->elem_size = d->elem_size;
	p->desc = d;
	/* SLAB only: a kmalloc class (pool_id 0) would fail the pool_id test too */
	if (c->magazines && d->backing == SP_BACK_SLAB && !d->max_nr &&
	    d->cache_id < sp_nr_cache_slots(c->seg)) {
		struct sp_cache *k = &sp_caches(c->seg)[d->cache_id];

		if (k->pool_id == d->id + 1 && !(k->flags & (SP_CACHE_POISON | SP_CACHE_REDZONE)))
			p->cache = k;
	}
	p->fast = p->cache && sp_mag_geo_init(c->seg, p->cache, &p->geo);
	p->snap_ok = sp_pool_backing_snapshot(c->seg, d, &p->snap) == 0;
	memcpy(p->name, d->name, sizeof(p->name));
	p->name[SP_NAME_MAX] = '\0';
	shmp__client_get(c);
	*out = p;
	return 0;
}

int shmp_pool_create(shmp_client *c, const char *name, size_t elem_size, unsigned min_nr,
		     shmp_pool **out)
{
	return shmp_pool_create_ex(c, name, elem_size, min_nr, NULL, out);
}

int shmp_pool_create_ex(shmp_client *c, const char *name, size_t elem_size, unsigned min_nr,
			const struct shmp_pool_opts *opts, shmp_pool **out)
{
	Shmpool__Request req = SHMPOOL__REQUEST__INIT;
	Shmpool__PoolCreate pc = SHMPOOL__POOL_CREATE__INIT;
	struct shmp_pool_opts none = { 0 };
	int rc;

	if (!out)
		return sp_err(-EINVAL, "NULL out pointer");
	*out = NULL;
	rc = shmp__name_args(c, name, "pool");
	if (rc)
		return rc;
	if (!opts)
		opts = &none;
	if (!elem_size || elem_size > c->seg->size)
		return sp_err(-EINVAL, "element size %zu is outside 1..%llu (the segment size)",
			      elem_size, (unsigned long long)c->seg->size);
	if (opts->align > UINT32_MAX || (opts->align & (opts->align - 1)))
		return sp_err(-EINVAL, "alignment %zu is not a power of two", opts->align);
	pc.name = (char *)name;
	pc.elem_size = elem_size;
	pc.min_nr = min_nr;
	pc.max_nr = opts->max_nr;
	pc.backing = opts->backing;
	pc.flags = opts->flags;
	pc.cache_flags = opts->debug;
	pc.align = (uint32_t)opts->align;
	pc.mode = opts->mode;
	req.op_case = SHMPOOL__REQUEST__OP_POOL_CREATE;
	req.pool_create = &pc;
	return shmp__rpc_handle(c, &req, handle_from_info, out);
}

int shmp_pool_open(shmp_client *c, const char *name, shmp_pool **out)
{
	if (!out)
		return sp_err(-EINVAL, "NULL out pointer");
	*out = NULL;
	return shmp__name_request(c, name, "pool", SHMPOOL__REQUEST__OP_POOL_OPEN, handle_from_info,
				  out);
}

int shmp_pool_destroy(shmp_client *c, const char *name)
{
	shmp_flush(c); /* what this thread cached would keep it busy */
	return shmp__name_request(c, name, "pool", SHMPOOL__REQUEST__OP_POOL_DESTROY, NULL,
				  NULL);
}

int shmp_pool_resize(shmp_pool *p, unsigned new_min_nr)
{
	Shmpool__Request req = SHMPOOL__REQUEST__INIT;
	Shmpool__PoolResize pr = SHMPOOL__POOL_RESIZE__INIT;
	Shmpool__Response *resp;
	struct sp_pool *d = NULL; /* set when pool_desc() returns 0 */
	int rc = pool_desc(p, &d);

	if (rc)
		return rc;
	pr.name = p->name;
	pr.min_nr = new_min_nr;
	req.op_case = SHMPOOL__REQUEST__OP_POOL_RESIZE;
	req.pool_resize = &pr;
	rc = shmp__rpc(p->c, &req, &resp);
	if (!rc)
		shmpool__response__free_unpacked(resp, NULL);
	return rc;
}

void shmp_pool_close(shmp_pool *p)
{
	if (!p)
		return;
	if (p->cache)
		shmp__mag_drop(p->c, p->cache);
	shmp__client_put(p->c);
	free(p);
}

/* ---- the data path ---------------------------------------------------------- */

static void *pool_alloc(shmp_pool *p, int flags, int timeout_ms)
{
	struct sp_pool *d = NULL; /* set when pool_desc() returns 0 */
	sp_off_t off;
	int rc = pool_desc(p, &d);

	if (sp_unlikely(rc))
		return shmp__fail_ptr(rc);
	rc = sp_pool_alloc_geo(p->c->seg, d, pool_snap(p), flags, timeout_ms, &off);
	if (sp_unlikely(rc))
		return shmp__fail_ptr(rc);
	return sp_ptr(p->c->seg, off);
}

/*
 * The pool's descriptor when the calling thread's magazine may serve it
 * (bound or not yet): a usable session, a magazine-capable pool, still
 * LIVE with the handle's generation.  NULL: take the checked path, which
 * also says what is wrong.
 */
static struct sp_pool *mag_desc(shmp_pool *p)
{
	struct sp_pool *d;

	/*
	 * Neither the fork check nor the state: a forked child's thread cache
	 * is empty, so the magazine's slow path checks; a destroyed pool's
	 * cache refuses every refill and every push.  The generation tells a
	 * handle to a pool recreated at the same id.
	 */
	if (!p || !p->cache || !p->c->seg)
		return NULL;
	d = p->desc;
	if (__atomic_load_n(&d->gen, __ATOMIC_RELAXED) != p->gen)
		return NULL;
	return d;
}

/* What the inlined fast path could not do: bind, refill, or lock. */
static __attribute__((noinline)) void *pool_alloc_slow(shmp_pool *p, int flags, int timeout_ms)
{
	sp_off_t off;

	if (!(flags & ~SHMP_NOWAIT) && mag_desc(p) && shmp__mag_alloc(p->c, p->cache, &off) == 0)
		return p->c->seg->base + off;
	if (flags & ~SHMP_NOWAIT)
		return shmp__fail_ptr(sp_err(-EINVAL, "unknown alloc flags %#x", (unsigned)flags));
	return pool_alloc(p, flags & SHMP_NOWAIT ? SP_ALLOC_NOWAIT : 0, timeout_ms);
}

/*
 * The fast path: the thread's bound magazine, read through the handle's
 * private geometry.  No generation check here: a pool destroyed since the
 * handle was opened had its cache's magazines emptied everywhere (destroy
 * is -EBUSY while any holds an object), so a stale handle finds its
 * magazine empty and the slow path says -ENOENT.
 */
sp_fast_inline void *pool_alloc_fast(shmp_pool *p, int flags, int timeout_ms)
{
	struct sp_seg *s;
	struct sp_mag *m;
	sp_off_t off;

	if (sp_likely(p && p->fast && !(flags & ~SHMP_NOWAIT)) &&
	    (m = shmp__fast_mag(p->c, &p->geo, &s)) &&
	    sp_likely(sp_mag_take(s, &p->geo, m, &off) == SP_MAG_TAKEN))
		return p->geo.base + off;
	return pool_alloc_slow(p, flags, timeout_ms);
}

void *shmp_pool_alloc(shmp_pool *p, int flags)
{
	return pool_alloc_fast(p, flags, -1);
}

void *shmp_pool_alloc_timeout(shmp_pool *p, int timeout_ms)
{
	return pool_alloc_fast(p, 0, timeout_ms < 0 ? -1 : timeout_ms);
}

static __attribute__((noinline)) int pool_free_slow(shmp_pool *p, void *elem)
{
	struct sp_pool *d = mag_desc(p);
	sp_off_t off;
	int rc;

	/* a pointer outside the segment wraps to an offset the magazine refuses */
	if (d && shmp__pool_content(d) &&
	    shmp__mag_free(p->c, p->cache, (uintptr_t)elem - (uintptr_t)p->c->seg->base) == 0)
		return 0;
	rc = pool_desc(p, &d);
	if (sp_unlikely(rc))
		return rc;
	rc = shmp__obj_off(p->c->seg, elem, "element", "pool", p->name, &off);
	if (sp_unlikely(rc))
		return rc;
	return sp_pool_free_geo(p->c->seg, d, pool_snap(p), off);
}

int shmp_pool_free(shmp_pool *p, void *elem)
{
	struct sp_seg *s;
	struct sp_mag *m;

	/* the generation after the mapping is known to be there: the handle
	 * of a destroyed pool must not push into a recreated one */
	if (sp_likely(p && p->fast) && (m = shmp__fast_mag(p->c, &p->geo, &s)) &&
	    sp_likely(__atomic_load_n(&p->desc->gen, __ATOMIC_RELAXED) == p->gen &&
		      shmp__pool_content(p->desc) &&
		      sp_mag_put(s, &p->geo, m, (uintptr_t)elem - (uintptr_t)p->geo.base) ==
			      SP_MAG_PUSHED))
		return 0;
	return pool_free_slow(p, elem);
}

static void *bulk_alloc(void *h, int flags)
{
	return shmp_pool_alloc(h, flags);
}

static int bulk_free(void *h, void *elem)
{
	return shmp_pool_free(h, elem);
}

static unsigned take_run(void *h, int flags, void **v, unsigned n)
{
	shmp_pool *p = h;

	if (!p || !p->fast || (flags & ~SHMP_NOWAIT))
		return 0;
	return shmp__take_run(p->c, &p->geo, v, n);
}

static unsigned put_run(void *h, void *const *v, unsigned n)
{
	shmp_pool *p = h;

	if (!p || !p->fast)
		return 0;
	return shmp__put_run(p->c, &p->geo, &p->desc->gen, p->gen, p->desc, v, n);
}

static const struct shmp__bulk_ops bulk_ops = {
	.noun = "element",
	.alloc = bulk_alloc,
	.free_one = bulk_free,
	.take_run = take_run,
	.put_run = put_run,
};

int shmp_pool_alloc_bulk(shmp_pool *p, int flags, void **v, unsigned n)
{
	return shmp__alloc_bulk(p, &bulk_ops, flags, v, n);
}

int shmp_pool_free_bulk(shmp_pool *p, void *const *v, unsigned n)
{
	return shmp__free_bulk(p, &bulk_ops, v, n);
}

int shmp_pool_stats(shmp_pool *p, struct shmp_pool_stats *st)
{
	struct sp_pool *d = NULL; /* set when pool_desc() returns 0 */
	uint64_t na, nf;
	int rc = pool_desc(p, &d);

	if (rc)
		return rc;
	if (!st)
		return sp_err(-EINVAL, "NULL stats pointer");
#define LOAD(f) __atomic_load_n(&d->f, __ATOMIC_RELAXED)
	st->elem_size = (size_t)d->elem_size;
	st->min_nr = LOAD(min_nr);
	st->curr_nr = LOAD(curr_nr);
	st->max_nr = d->max_nr;
	st->nr_waiters = LOAD(nr_waiters);
	st->nr_out = sp_pool_nr_out(p->c->seg, d);
	sp_pool_counters(p->c->seg, d, &na, &nf);
	st->nr_alloc = na;
	st->nr_free = nf;
	st->nr_reserve_alloc = LOAD(nr_reserve_alloc);
	st->nr_fail = LOAD(nr_fail);
	st->nr_wait = LOAD(nr_wait);
	st->nr_bad_free = LOAD(nr_bad_free);
#undef LOAD
	return 0;
}
