/* SPDX-License-Identifier: MIT */
/*
 * cache.c - named slab caches: created and opened through the daemon,
 * allocated from and freed to directly in the mapping (shared/slab.c).
 *
 * As for pools (pool.c), a handle keeps the cache's table id and
 * generation from the daemon's CacheInfo, and every data call checks that
 * the descriptor is still LIVE with that generation.  A cache has no
 * reserve and never sleeps for memory: an exhausted segment is ENOMEM at
 * once, whatever the flags.  The init template travels inside the
 * CacheCreate frame, so it is limited to somewhat less than the 64 KiB
 * frame size (-EMSGSIZE beyond).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/*
 * struct shmp_cache - a handle to a named cache.  Process-private;
 * immutable after open.
 */
struct shmp_cache {
	shmp_client *c;		/* holds a reference */
	uint32_t id;		/* index in the cache table */
	uint32_t gen;
	uint32_t obj_size;
	bool magazines;		/* a session with magazines, a cache without debug
				 * flags: the thread's magazine may serve */
	struct sp_cache *desc;	/* in the table (check gen before use) */
	bool fast;		/* magazines and geo valid: the fast paths may run */
	struct sp_mag_geo geo;	/* the cache's, for the fast paths */
	bool snap_ok;		/* snap is valid */
	struct sp_cache snap;	/* its checked snapshot, for the locked path
				 * (sp_cache_alloc_geo()) */
	char name[SP_NAME_MAX + 1];
};

/* The snapshot the locked path may use instead of taking one per call. */
static const struct sp_cache *cache_snap(const shmp_cache *k)
{
	return k->snap_ok ? &k->snap : NULL;
}

sp_fast_inline int cache_desc(shmp_cache *k, struct sp_cache **out)
{
	struct sp_cache *d;
	int rc;

	if (sp_unlikely(!k))
		return sp_err(-EINVAL, "NULL cache handle");
	rc = shmp__usable(k->c);
	if (sp_unlikely(rc))
		return rc;
	/* sp_cache_get()'s checks at the handle's own pointer, as in pool.c's
	 * pool_desc(): desc and id are private, id bounded at open */
	d = k->desc;
	if (sp_unlikely(__atomic_load_n(&d->state, __ATOMIC_ACQUIRE) != SP_DESC_LIVE ||
			d->magic != (SP_CACHE_MAGIC ^ k->id) || d->id != k->id ||
			__atomic_load_n(&d->gen, __ATOMIC_RELAXED) != k->gen))
		return sp_err(-ENOENT, "cache %s was destroyed", k->name);
	*out = d;
	return 0;
}

static int handle_from_info(shmp_client *c, const Shmpool__Response *resp, void *outp)
{
	shmp_cache **out = outp;
	const Shmpool__CacheInfo *info = resp->cache;
	struct sp_cache *d;
	shmp_cache *k;

	if (resp->payload_case != SHMPOOL__RESPONSE__PAYLOAD_CACHE || !info)
		return sp_err(-EPROTO, "daemon answered without a CacheInfo");
	d = sp_cache_get(c->seg, info->id);
	if (!d || d->gen != info->gen || strncmp(d->name, info->name, sizeof(d->name)))
		return sp_err(-ENOENT, "cache %s (id %u, gen %u) is not in the segment: destroyed "
				       "meanwhile?",
			      info->name, info->id, info->gen);
	if (d->flags & (SP_CACHE_KMALLOC | SP_CACHE_ANON))
		return sp_err(-EPROTO, "cache %s is internal, not a named cache", d->name);
	k = calloc(1, sizeof(*k));
	if (!k)
		return sp_err(-ENOMEM, "out of process memory");
	k->c = c;
	k->id = info->id;
	k->gen = info->gen;
	k->obj_size = d->obj_size;
	k->magazines = c->magazines && !(d->flags & (SP_CACHE_POISON | SP_CACHE_REDZONE));
	k->desc = d;
	k->fast = k->magazines && sp_mag_geo_init(c->seg, d, &k->geo);
	k->snap_ok = sp_cache_snapshot(c->seg, d, &k->snap) == 0;
	memcpy(k->name, d->name, sizeof(k->name));
	k->name[SP_NAME_MAX] = '\0';
	shmp__client_get(c);
	*out = k;
	return 0;
}

int shmp_cache_create(shmp_client *c, const char *name, size_t obj_size, size_t align,
		      const void *init_template, shmp_cache **out)
{
	return shmp_cache_create_ex(c, name, obj_size, align, init_template, NULL, out);
}

int shmp_cache_create_ex(shmp_client *c, const char *name, size_t obj_size, size_t align,
			 const void *init_template, const struct shmp_cache_opts *opts,
			 shmp_cache **out)
{
	Shmpool__Request req = SHMPOOL__REQUEST__INIT;
	Shmpool__CacheCreate cc = SHMPOOL__CACHE_CREATE__INIT;
	int rc;

	if (!out)
		return sp_err(-EINVAL, "NULL out pointer");
	*out = NULL;
	rc = shmp__name_args(c, name, "cache");
	if (rc)
		return rc;
	if (!obj_size || obj_size > UINT32_MAX)
		return sp_err(-EINVAL, "object size %zu is not allowed", obj_size);
	if (align > UINT32_MAX || (align & (align - 1)))
		return sp_err(-EINVAL, "alignment %zu is not a power of two", align);
	cc.name = (char *)name;
	cc.obj_size = obj_size;
	cc.align = (uint32_t)align;
	cc.flags = opts ? opts->debug : 0;
	cc.mode = opts ? opts->mode : 0;
	if (init_template) {
		cc.init_template.data = (uint8_t *)init_template;
		cc.init_template.len = obj_size;
	}
	req.op_case = SHMPOOL__REQUEST__OP_CACHE_CREATE;
	req.cache_create = &cc;
	return shmp__rpc_handle(c, &req, handle_from_info, out);
}

int shmp_cache_open(shmp_client *c, const char *name, shmp_cache **out)
{
	if (!out)
		return sp_err(-EINVAL, "NULL out pointer");
	*out = NULL;
	return shmp__name_request(c, name, "cache", SHMPOOL__REQUEST__OP_CACHE_OPEN,
				  handle_from_info, out);
}

int shmp_cache_destroy(shmp_client *c, const char *name)
{
	shmp_flush(c); /* what this thread cached would keep it busy */
	return shmp__name_request(c, name, "cache", SHMPOOL__REQUEST__OP_CACHE_DESTROY, NULL,
				  NULL);
}

void shmp_cache_close(shmp_cache *k)
{
	if (!k)
		return;
	if (k->magazines && !shmp__usable(k->c)) {
		struct sp_cache *d = sp_cache_get(k->c->seg, k->id);

		if (d && d->gen == k->gen)
			shmp__mag_drop(k->c, d);
	}
	shmp__client_put(k->c);
	free(k);
}

/* ---- the data path ---------------------------------------------------------- */

/* The descriptor when the thread's magazine may serve: see pool.c. */
static struct sp_cache *mag_desc(shmp_cache *k)
{
	struct sp_cache *d;

	if (!k || !k->magazines || !k->c->seg)
		return NULL;
	d = k->desc;
	if (__atomic_load_n(&d->gen, __ATOMIC_RELAXED) != k->gen)
		return NULL;
	return d;
}

/* What the inlined fast path could not do: bind, refill, or lock. */
static __attribute__((noinline)) void *cache_alloc_slow(shmp_cache *k, int flags)
{
	struct sp_cache *d = mag_desc(k);
	sp_off_t off;
	int rc;

	if (d && !(flags & ~SHMP_NOWAIT) && shmp__mag_alloc(k->c, d, &off) == 0)
		return k->c->seg->base + off;
	if (flags & ~SHMP_NOWAIT)
		return shmp__fail_ptr(sp_err(-EINVAL, "unknown alloc flags %#x", (unsigned)flags));
	rc = cache_desc(k, &d);
	if (rc)
		return shmp__fail_ptr(rc);
	rc = sp_cache_alloc_geo(k->c->seg, d, cache_snap(k), k->c->seg->owner, &off);
	if (rc)
		return shmp__fail_ptr(rc);
	return sp_ptr(k->c->seg, off);
}

/* See pool.c: no generation check on alloc (a destroyed cache's magazines
 * are empty), one on free. */
void *shmp_cache_alloc(shmp_cache *k, int flags)
{
	struct sp_seg *s;
	struct sp_mag *m;
	sp_off_t off;

	if (sp_likely(k && k->fast && !(flags & ~SHMP_NOWAIT)) &&
	    (m = shmp__fast_mag(k->c, &k->geo, &s)) &&
	    sp_likely(sp_mag_take(s, &k->geo, m, &off) == SP_MAG_TAKEN))
		return k->geo.base + off;
	return cache_alloc_slow(k, flags);
}

static __attribute__((noinline)) int cache_free_slow(shmp_cache *k, void *obj)
{
	struct sp_cache *d = mag_desc(k);
	sp_off_t off;
	int rc;

	/* a pointer outside the segment wraps to an offset the magazine refuses */
	if (d && shmp__mag_free(k->c, d, (uintptr_t)obj - (uintptr_t)k->c->seg->base) == 0)
		return 0;
	rc = cache_desc(k, &d);
	if (sp_unlikely(rc))
		return rc;
	rc = shmp__obj_off(k->c->seg, obj, "object", "cache", k->name, &off);
	if (sp_unlikely(rc))
		return rc;
	return sp_cache_free_geo(k->c->seg, d, cache_snap(k), off);
}

int shmp_cache_free(shmp_cache *k, void *obj)
{
	struct sp_seg *s;
	struct sp_mag *m;

	if (sp_likely(k && k->fast) && (m = shmp__fast_mag(k->c, &k->geo, &s)) &&
	    sp_likely(__atomic_load_n(&k->desc->gen, __ATOMIC_RELAXED) == k->gen &&
		      sp_mag_put(s, &k->geo, m, (uintptr_t)obj - (uintptr_t)k->geo.base) ==
			      SP_MAG_PUSHED))
		return 0;
	return cache_free_slow(k, obj);
}

static void *bulk_alloc(void *h, int flags)
{
	return shmp_cache_alloc(h, flags);
}

static int bulk_free(void *h, void *obj)
{
	return shmp_cache_free(h, obj);
}

static unsigned take_run(void *h, int flags, void **v, unsigned n)
{
	shmp_cache *k = h;

	if (!k || !k->fast || (flags & ~SHMP_NOWAIT))
		return 0;
	return shmp__take_run(k->c, &k->geo, v, n);
}

static unsigned put_run(void *h, void *const *v, unsigned n)
{
	shmp_cache *k = h;

	if (!k || !k->fast)
		return 0;
	return shmp__put_run(k->c, &k->geo, &k->desc->gen, k->gen, NULL, v, n);
}

static const struct shmp__bulk_ops bulk_ops = {
	.noun = "object",
	.alloc = bulk_alloc,
	.free_one = bulk_free,
	.take_run = take_run,
	.put_run = put_run,
};

int shmp_cache_alloc_bulk(shmp_cache *k, int flags, void **v, unsigned n)
{
	return shmp__alloc_bulk(k, &bulk_ops, flags, v, n);
}

int shmp_cache_free_bulk(shmp_cache *k, void *const *v, unsigned n)
{
	return shmp__free_bulk(k, &bulk_ops, v, n);
}

int shmp_cache_stats(shmp_cache *k, struct shmp_cache_stats *st)
{
	struct sp_cache *d = NULL; /* set when cache_desc() returns 0 */
	uint64_t na, nf;
	int rc = cache_desc(k, &d);

	if (rc)
		return rc;
	if (!st)
		return sp_err(-EINVAL, "NULL stats pointer");
#define LOAD(f) __atomic_load_n(&d->f, __ATOMIC_RELAXED)
	st->obj_size = d->obj_size;
	st->active_objs = sp_cache_in_use(k->c->seg, d);
	st->total_objs = LOAD(total_objs);
	st->nr_slabs = LOAD(nr_slabs);
	sp_cache_counters(k->c->seg, d, &na, &nf);
	st->nr_alloc = na;
	st->nr_free = nf;
	st->nr_fail = LOAD(nr_fail);
	st->nr_bad_free = LOAD(nr_bad_free);
#undef LOAD
	return 0;
}
