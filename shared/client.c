/* SPDX-License-Identifier: MIT */
/*
 * client.c - the client table and the ownership model.
 *
 * Every process that allocates holds a slot in the client table; the slot's
 * owner tag (slot + 1) is written into every object, pool element and large
 * block it allocates (slab.c, mempool.c, kmalloc.c).  A slot is ALIVE while
 * its process runs.  When the process dies (the daemon sees its socket
 * close, or sp_client_reap() finds the pid gone or reused) the slot becomes
 * DEAD and keeps its identity (pid, name, start time), so everything it
 * still holds is an orphan attributed to it.  sp_slot_release() frees what
 * a slot holds (for pools, through the reserve-first free path) and, for a
 * DEAD slot holding nothing, frees the slot.  A cache is walked by a
 * private snapshot of its geometry (sp_cache_snapshot()), never by the
 * shared descriptor; one whose snapshot is corrupted is never walked: it
 * is counted in skipped_caches, and a DEAD slot stays while any is, since
 * it may still hold objects there.  Objects cached free in a dead slot's
 * magazines (tag SP_OWNER_MAG(slot + 1)) and its magazine sets are always
 * freed: they are nobody's (magazine.c).
 *
 * The start time.  With the pid it names the process (a recycled pid has
 * another start time): sp_client_reap() and a resume check it.  Reading it
 * from /proc costs three system calls, so the daemon registers a slot with
 * start time 0, "not recorded yet" (sp_client_register_ex()), answers the
 * Hello, and then records it (sp_client_set_start_time()).  While it is 0
 * the slot's connection is open, so nothing needs it; if the daemon died
 * in between, sp_client_reap() fills it in from the live pid (or marks the
 * slot DEAD when the pid is gone), and a resume fills it in from the
 * connecting process, which proved itself with the pid and the token.
 * The one case this gets wrong: the client dies while the daemon is down
 * in that window and its pid is taken by another process before the
 * daemon is back; the slot then stays ALIVE until that process exits,
 * its holdings unreclaimed that long (never freed twice: no tag changes).
 *
 * The slot filter.  Walking every cache and every page for each slot made
 * a disconnect cost time in proportion to the segment (10 M objects: about
 * 100 ms of the daemon's only thread, for a client that allocated
 * nothing).  So each slot records where it may hold something: in
 * sp_client.used, bit id % SP_SLOT_FILTER_BITS for every cache in which a
 * tag naming it (user or magazine tag) may have been written, and
 * SP_SLOT_MAY_BLOCKS in sp_client.flags for large, raw and page-pool blocks
 * (magazine sets go by the slot's list; one a death left off it is marked
 * SP_SLOT_LOOSE_SETS by the registry's recovery, layout.h).  sp_slot_note()
 * sets them BEFORE the tag is written,
 * on the slow paths only: a locked (bulk) alloc from a cache (slab.c, which
 * covers kmalloc classes, pool caches and magazine refills), a magazine
 * bind (magazine.c: the lock-free push of any object of the bound cache
 * tags it cached by the slot), a reserve element retagged to its taker
 * (mempool.c retag()), and every buddy block allocated with a slot's tag
 * (buddy.c).  Pops and pushes retag within the bound cache.  walk_slot()
 * visits only the caches whose bit is set and the pages only with the
 * blocks flag.  A bit with nothing behind it (a crash between note and tag,
 * a failed alloc, two caches 512 ids apart) costs a walk; bits are cleared
 * only under the registry lock while the slot is FREE (when it is freed,
 * and when it is taken again).
 *
 * The filter is in the segment, so untrusted.  Any value is safe to read:
 * the worst a scribbled filter does is hide a slot's holdings from its own
 * walks (sp_slot_holdings(), sp_slot_release()), which then neither count
 * nor free them, and the slot may be freed with objects still carrying its
 * tag (attributed to the slot's next holder).  Nothing is freed twice or
 * handed out: walks only ever free what carries the slot's tag.  That is
 * a leak, the kind of damage a client can do by scribbling tags directly,
 * and it stays visible: the checker reports every object or block whose tag
 * names a slot in use whose filter lacks its cache or the blocks flag, and
 * sp_holdings_all() (Stats, orphans) ignores the filters and walks all.
 *
 * The held bound.  The filter cannot forget: a client that took and gave
 * back one object of a cache another client fills with 10 M objects still
 * cost its disconnect a walk of them all (115 ms).  So each slot also
 * keeps an upper bound of what a walk could find (layout.h, "The held
 * bound"): sp_client.held, counted by the locked paths, plus sp_mag.held
 * of each magazine of its listed sets, counted by the fast paths
 * (magazine.h), >= the objects tagged with its user tag, or with its
 * magazine tag while no magazine lists them.  walk_slot() reads it under
 * the registry lock, before the sets are released, for a slot that is not
 * ALIVE (a live slot's counters move under its threads, and are not one
 * instant's); when it is <= 0 the caches are skipped, except those the
 * slot's magazines still list objects of (their cached objects are freed
 * by tag as before).  The page walk and the release of sets are
 * unchanged.  Another slot freeing its object (producer/consumer) counts
 * it down in the holder's sp_client.held (atomic, after the untag; owed
 * by a magazine push until its next refill or flush), so a producer whose
 * objects consumers freed is skipped too.  Like the
 * filter, the counters are
 * untrusted: a low one hides the slot's own objects from its release (a
 * leak, reported by the checker for slots that are not ALIVE), never a
 * double free: a skip frees nothing.  The counts that views report stay
 * exact: a bound of 0 means there is nothing to count.  A slot's held is
 * reset with its filter (clear_filter()).
 *
 * Locking: the client table is changed under the registry lock, except the
 * filter, set by atomic OR under whatever lock the tag it announces is
 * written under (none for a bind).  Walking a cache's objects takes that
 * cache's lock, dropped and retaken every SP_WALK_CHUNK slabs (see
 * walk_cache() for why a chunked walk still finds a dead slot's objects);
 * walking blocks takes the buddy lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

/* Forget where a slot held things and its held bound; registry locked, the
 * slot FREE (it holds nothing) or being taken from FREE. */
static void clear_filter(struct sp_client *cl)
{
	for (unsigned i = 0; i < SP_SLOT_FILTER_BITS / 64; i++)
		__atomic_store_n(&cl->used[i], 0, __ATOMIC_RELAXED);
	__atomic_store_n(&cl->flags, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&cl->held, 0, __ATOMIC_RELAXED); /* and nothing it holds */
}

/* A session token: 64 bits nobody can guess (a batch of getrandom() bytes). */
static uint64_t random_token(void)
{
	uint64_t t = 0;

	if (sp_prim_random(&t, sizeof(t)))
		t = sp_now_ms() ^ ((uint64_t)getpid() << 32);
	return t ? t : 1;
}

/**
 * sp_client_register() - take a free slot for a process.
 * @s: segment.  @name: client name (truncated to 31 bytes; NULL ok).
 * @pid: the process.  @uid: @gid: its credentials.
 * @slot: the slot taken.
 *
 * Reads the process's start time from /proc first.  Does not make @s use
 * the slot: see sp_client_use_slot().
 * May sleep.
 * Return: 0, or -ENFILE when the table is full (DEAD slots count until
 * released), -ESRCH when @pid does not exist.
 */
int sp_client_register(struct sp_seg *s, const char *name, int pid, uint32_t uid, uint32_t gid,
		       uint32_t *slot)
{
	uint64_t start;
	int rc = sp_proc_start_time_ex(pid, &start);

	if (rc == -ESRCH)
		return sp_err(rc, "process %d does not exist", pid);
	if (rc) /* e.g. -EMFILE: the caller is out of file descriptors */
		return sp_err(rc, "cannot read /proc/%d/stat to identify the process: %s", pid,
			      strerror(-rc));
	return sp_client_register_ex(s, name, pid, uid, gid, start, slot);
}

/**
 * sp_client_register_ex() - take a free slot, the start time given.
 * @s: segment.  @name: client name (truncated to 31 bytes; NULL ok).
 * @pid: the process.  @uid: @gid: its credentials.
 * @start_time: the process's start time (sp_proc_start_time_ex()), or 0
 *              when not read yet: the caller records it with
 *              sp_client_set_start_time() (see the top of this file).
 * @slot: the slot taken.
 *
 * May sleep (the registry lock).
 * Return: 0, or -ENFILE when the table is full.
 */
int sp_client_register_ex(struct sp_seg *s, const char *name, int pid, uint32_t uid, uint32_t gid,
			  uint64_t start_time, uint32_t *slot)
{
	int rc = sp_registry_lock(s);

	if (rc)
		return rc;
	rc = -ENFILE;
	for (uint32_t i = 0; i < s->geo.max_clients; i++) {
		struct sp_client *cl = &sp_clients(s)[i];

		if (cl->state != SP_CLIENT_FREE)
			continue;
		cl->pid = (uint32_t)pid;
		cl->start_time = start_time;
		cl->uid = uid;
		cl->gid = gid;
		cl->token = random_token();
		cl->attach_time = sp_realtime_s();
		cl->death_time = 0;
		cl->gen++;
		cl->mag_head = 0;
		clear_filter(cl); /* FREE: it holds nothing */
		memset(cl->name, 0, sizeof(cl->name));
		snprintf(cl->name, sizeof(cl->name), "%s", name ? name : "");
		SP_CRASH_POINT("client.register"); /* still FREE: the next one takes it */
		__atomic_store_n(&cl->state, SP_CLIENT_ALIVE, __ATOMIC_RELEASE);
		*slot = i;
		rc = 0;
		break;
	}
	sp_registry_unlock(s);
	if (rc)
		sp_err(rc, "client table full (%u slots, dead ones count until released)",
		       s->geo.max_clients);
	return rc;
}

/**
 * sp_client_set_start_time() - record the start time of an ALIVE slot's
 * process, registered with none.
 * @s: segment.  @slot: the slot.  @pid: its process (as registered).
 * @start_time: from sp_proc_start_time_ex(), never 0.
 *
 * Only a slot still ALIVE for @pid with no start time is changed: one that
 * died, was freed and taken again meanwhile, or already has one, is left.
 * May sleep (the registry lock).
 * Return: 0, -ESRCH (not such a slot now), or a negative errno.
 */
int sp_client_set_start_time(struct sp_seg *s, uint32_t slot, int pid, uint64_t start_time)
{
	struct sp_client *cl;
	int rc;

	if (slot >= s->geo.max_clients || !start_time)
		return sp_err(-EINVAL, "no client slot %u, or no start time", slot);
	rc = sp_registry_lock(s);
	if (rc)
		return rc;
	cl = &sp_clients(s)[slot];
	if (cl->state == SP_CLIENT_ALIVE && cl->pid == (uint32_t)pid && !cl->start_time)
		cl->start_time = start_time;
	else
		rc = sp_err(-ESRCH, "client slot %u is not pid %d's without a start time", slot,
			    pid);
	sp_registry_unlock(s);
	return rc;
}

/**
 * sp_client_use_slot() - make this handle allocate as @slot.
 * @s: segment.  @slot: an ALIVE slot.
 *
 * Does not sleep.
 * Return: 0 or -ESRCH.
 */
int sp_client_use_slot(struct sp_seg *s, uint32_t slot)
{
	if (slot >= s->geo.max_clients || sp_clients(s)[slot].state != SP_CLIENT_ALIVE)
		return sp_err(-ESRCH, "client slot %u is not alive", slot);
	sp_seg_set_owner(s, slot);
	return 0;
}

/**
 * sp_seg_set_owner() - the slot this handle allocates as, UINT32_MAX for none.
 * @s: segment handle, not in use by another thread meanwhile.  @slot: the slot.
 *
 * Forgets what sp_slot_note() remembered for the previous slot.  Does not sleep.
 */
void sp_seg_set_owner(struct sp_seg *s, uint32_t slot)
{
	memset(s->noted, 0, sizeof(s->noted));
	s->slot = slot;
	s->owner = slot == UINT32_MAX ? SP_OWNER_NONE : (uint16_t)(slot + 1);
	s->held = slot == UINT32_MAX ? NULL : &sp_clients(s)[slot].held;
}

/**
 * sp_client_mark_dead() - record that a slot's process is gone.
 * @s: segment.  @slot: the slot.
 *
 * Its holdings become orphans attributed to it.  The pools' waiters are
 * woken to look again: the process may have died with a wake-up meant for
 * one of them.  That happens under the registry lock, so that a caller
 * killed before it leaves the wake-up to the registry's recovery.
 * May sleep.
 * Return: 0 or -ESRCH.
 */
int sp_client_mark_dead(struct sp_seg *s, uint32_t slot)
{
	int rc;

	if (slot >= s->geo.max_clients)
		return sp_err(-ESRCH, "no client slot %u", slot);
	rc = sp_registry_lock(s);
	if (rc)
		return rc;
	if (sp_clients(s)[slot].state == SP_CLIENT_ALIVE) {
		sp_clients(s)[slot].death_time = sp_realtime_s();
		sp_clients(s)[slot].state = SP_CLIENT_DEAD;
		SP_CRASH_POINT("client.mark_dead");
		sp_pools_wake_waiters(s);
	} else {
		rc = sp_err(-ESRCH, "client slot %u is not alive", slot);
	}
	sp_registry_unlock(s);
	return rc;
}

/**
 * sp_client_reap() - mark DEAD every ALIVE slot whose process is gone.
 * @s: segment.
 *
 * A slot is gone when its pid no longer exists or now has another start
 * time (reused); one whose process cannot be looked up (/proc unreadable,
 * e.g. no file descriptor left) is left alone.  A slot whose start time
 * was not recorded (0: its daemon died between the Hello and recording
 * it) gets the live pid's (see the top of this file).  May sleep.
 * Return: the number of slots marked, or a negative errno.
 */
int sp_client_reap(struct sp_seg *s)
{
	int n = 0;

	for (uint32_t i = 0; i < s->geo.max_clients; i++) {
		struct sp_client *cl = &sp_clients(s)[i];
		uint64_t start = 0, known = cl->start_time;
		int rc;

		if (cl->state != SP_CLIENT_ALIVE)
			continue;
		rc = sp_proc_start_time_ex((int)cl->pid, &start);
		if (rc == 0 && !known) {
			sp_client_set_start_time(s, i, (int)cl->pid, start);
			continue;
		}
		if ((rc == -ESRCH || (rc == 0 && start != known)) && sp_client_mark_dead(s, i) == 0)
			n++;
	}
	return n;
}

/* Collect the heads of a cache's slabs (so they can be changed while
 * walked); cache locked, @g its snapshot. */
static uint32_t *cache_slabs_locked(struct sp_seg *s, struct sp_cache *c,
				    const struct sp_cache *g, uint32_t *nr)
{
	uint32_t *v, n = 0;

	sp_assert(sp_lock_held(&c->lock));
	v = malloc(((size_t)c->nr_slabs + 1) * sizeof(*v));
	if (!v)
		return NULL;
	for (unsigned l = SP_LIST_PARTIAL; l <= SP_LIST_FULL; l++) {
		uint32_t pfn = c->list_head[l], steps = 0;

		while (pfn && n < c->nr_slabs && steps++ < s->geo.nr_pages) {
			if (!sp_slab_valid(s, g, pfn - 1))
				break;
			v[n++] = pfn - 1;
			pfn = s->pages[pfn - 1].next;
		}
	}
	*nr = n;
	return v;
}

struct pending {
	sp_off_t off;
	uint16_t tag;
};

/* Slabs a walk looks at per hold of the cache lock (see walk_cache()). */
#define SP_WALK_CHUNK 64

/* Free the pool elements a walk of @p's cache collected; the cache lock is
 * not held (the pool lock ranks above it). */
static void free_pending(struct sp_seg *s, struct sp_pool *p, struct pending *v, uint32_t *n)
{
	for (uint32_t k = 0; k < *n; k++) {
		sp_pool_free_owned(s, p, v[k].off, v[k].tag);
		SP_CRASH_POINT("client.release");
	}
	*n = 0;
}

/*
 * Let the cache's other users in between two chunks of a walk: drop the
 * lock, free what was collected for the pool's free path, take the lock
 * again.  Return: 0, 1 when the cache is no longer the one @g describes
 * (destroyed, created again, or its descriptor scribbled: stop walking it),
 * or a negative errno (not locked then).
 */
static int walk_relock(struct sp_seg *s, struct sp_cache *c, const struct sp_cache *g,
		       struct sp_pool *p, struct pending *pending, uint32_t *npend)
{
	struct sp_cache now;
	int rc;

	sp_cache_unlock(c);
	s->nr_walk_relocks++;
	free_pending(s, p, pending, npend);
	rc = sp_cache_lock(s, c);
	if (rc)
		return rc;
	if (__atomic_load_n(&c->state, __ATOMIC_ACQUIRE) != SP_DESC_LIVE ||
	    sp_cache_snapshot(s, c, &now) || now.gen != g->gen || now.id != g->id)
		return 1;
	return 0;
}

/* Count one allocated object of @c (a snapshot): cached free in a
 * magazine, or held. */
static void count_obj(const struct sp_cache *c, bool cached, struct sp_holdings *h)
{
	if (cached) {
		h->cached++;
		return;
	}
	h->objects++;
	h->bytes += c->obj_size;
	if (c->pool_id)
		h->pool_elems++;
}

/*
 * Count one allocated block of @kind and order @o held by a slot.
 * Return: true when it was counted (a magazine set, large, raw or
 * page-pool block), false for any other kind.
 */
static bool count_block(uint32_t kind, uint32_t o, struct sp_holdings *h)
{
	if (kind == SP_KIND_MAG) {
		h->magsets++;
		return true;
	}
	if (kind != SP_KIND_LARGE && kind != SP_KIND_RAW && kind != SP_KIND_POOL)
		return false;
	h->pages += 1u << o;
	if (kind == SP_KIND_POOL)
		h->pool_elems++;
	else
		h->large_blocks++;
	h->bytes += (uint64_t)SP_PAGE_SIZE << o;
	return true;
}

/*
 * The counts an owner tag @t goes to.  With a slot's @tag, @v is that
 * slot's: @t counts when it is @tag (held) or SP_OWNER_MAG(@tag) (cached).
 * With @tag 0, @v is indexed by slot: any slot < @n's tag counts there.
 * Return: the counts, or NULL when @t is not counted.
 */
static struct sp_holdings *tag_holdings(struct sp_holdings *v, uint32_t n, uint16_t tag,
					uint16_t t, bool *cached)
{
	uint32_t slot;

	if (tag) {
		*cached = t == SP_OWNER_MAG(tag);
		return t == tag || *cached ? v : NULL;
	}
	*cached = sp_owner_is_mag(t);
	slot = sp_owner_slot(t);
	return slot < n ? &v[slot] : NULL;
}

/*
 * Walk a cache's objects tagged @tag (held) or with its magazine tag
 * (cached free): count them into @v and, with @release and
 * @release_cached respectively, free them (pool elements through the
 * pool's free path, so reserves refill first).  With @tag 0, count every
 * slot's into @v[slot] for slot < @n and free nothing.  A cache with a
 * corrupted geometry is only counted in skipped_caches of @v[0, @n).
 *
 * The cache lock is dropped and taken again every SP_WALK_CHUNK slabs, so
 * that a walk of a big cache does not stall its allocators for its whole
 * length.  The slabs are listed once, under the lock, and each is checked
 * again (sp_slab_valid() with the walk's snapshot) before it is read.  That
 * still finds every object of a DEAD slot: nobody writes its tags any more
 * (its process is gone or said goodbye; a magazine tag is written only by
 * the slot's own threads; a pool reserve take retags to the taker, never
 * to another slot), objects do not move, and a slab that is new since the
 * listing holds only objects allocated since, never tagged with it.  A slab
 * that left the cache in a gap held nothing allocated; one that left and
 * came back is listed and valid again.  So the gaps can only make its tags
 * fewer (frees by others, which go by the expected tag: sp_pool_free_owned()
 * refuses an element whose tag changed).  For a live slot, or with @tag 0,
 * the counts are not one snapshot anyway (see sp_holdings_all()).  If the
 * cache is no longer the same when taken again (destroyed, created anew,
 * scribbled), the walk of it stops and counts as skipped_caches.
 */
static int walk_cache(struct sp_seg *s, struct sp_cache *c, uint16_t tag, bool release,
		      bool release_cached, struct sp_holdings *v, uint32_t n)
{
	struct sp_pool *p = c->pool_id ? sp_pool_get(s, c->pool_id - 1) : NULL;
	struct pending *pending = NULL;
	uint32_t *slabs, nr, npend = 0, cap = 0;
	struct sp_cache g;
	int rc = sp_cache_lock(s, c);

	if (rc)
		return rc;
	if (sp_cache_snapshot(s, c, &g)) { /* the checker reports it */
		sp_cache_unlock(c);
		for (uint32_t i = 0; i < n; i++)
			v[i].skipped_caches++;
		return 0;
	}
	slabs = cache_slabs_locked(s, c, &g, &nr);
	for (uint32_t k = 0; slabs && k < nr; k++) {
		struct sp_slab *slab;
		uint16_t *own;
		bool cached;

		if (k && k % SP_WALK_CHUNK == 0) {
			rc = walk_relock(s, c, &g, p, pending, &npend);
			if (rc < 0) {
				free(slabs);
				free(pending);
				return rc;
			}
			if (rc) { /* not the cache it was: what is left is not walked */
				for (uint32_t i = 0; i < n; i++)
					v[i].skipped_caches++;
				break;
			}
		}
		if (!sp_slab_valid(s, &g, slabs[k]))
			continue;
		slab = sp_slab_at(s, &g, slabs[k]);
		own = sp_slab_owners(&g, slab);
		for (uint32_t i = 0; i < g.objperslab; i++) {
			uint16_t t = own[i];
			struct sp_holdings *h = tag_holdings(v, n, tag, t, &cached);
			sp_off_t off;

			if (!h || !(slab->bitmap[i / 64] >> (i % 64) & 1))
				continue;
			count_obj(&g, cached, h);
			if (!tag || !(cached ? release_cached : release))
				continue;
			off = (sp_off_t)(sp_slab_obj(&g, slab, i) - s->base);
			if (p) { /* pool lock ranks above the cache lock: free later */
				if (npend == cap) {
					struct pending *nv = realloc(pending, (cap ? 2 * cap : 64) *
										      sizeof(*nv));
					if (!nv)
						continue;
					pending = nv;
					cap = cap ? 2 * cap : 64;
				}
				pending[npend++] = (struct pending){ off, t };
				continue;
			}
			sp_cache_free_obj_locked(s, c, &g, slab, i);
			c->nr_free += !cached;
			SP_CRASH_POINT("client.release");
			if (!sp_slab_valid(s, &g, slabs[k]))
				break; /* the slab went back to buddy */
		}
	}
	free(slabs);
	sp_cache_unlock(c);
	free_pending(s, p, pending, &npend);
	free(pending);
	return 0;
}

/*
 * Count (and with @release free) a slot's large, raw and page-pool blocks,
 * and its magazine sets (freed with @release_cached), into @v.  With @tag
 * 0, count every slot's into @v[slot] for slot < @n and free nothing.
 */
static int walk_blocks(struct sp_seg *s, uint16_t tag, bool release, bool only_reclaim,
		       bool release_cached, struct sp_holdings *v, uint32_t n)
{
	uint32_t pfn;
	sp_off_t *pool_elems = NULL;
	uint32_t *pool_ids = NULL, npend = 0, cap = 0;
	int rc = sp_buddy_lock(s);

	if (rc)
		return rc;
	for (pfn = 0; pfn < s->geo.nr_pages;) {
		uint32_t info = s->pages[pfn].info, o = SP_PG_ORDER(info), kind = SP_PG_KIND(info);
		uint16_t t = s->pages[pfn].slot;
		struct sp_holdings *h = NULL;
		bool cached;

		if (o > s->geo.max_order)
			o = 0;
		if (SP_PG_STATE(info) == SP_PG_ALLOC && !sp_owner_is_mag(t))
			h = tag_holdings(v, n, tag, t, &cached);
		if (!h || !count_block(kind, o, h) || !tag)
			goto next; /* not counted, a kind no slot holds, or only counting */
		if (kind == SP_KIND_MAG) {
			if (release_cached) {
				/* the set's objects were freed by tag before this */
				sp_buddy_free_locked(s, pfn); /* merged: the walk steps over tails */
				SP_CRASH_POINT("client.release");
			}
		} else {
			struct sp_pool *p = kind == SP_KIND_POOL
						    ? sp_pool_get(s, s->pages[pfn].owner) : NULL;
			bool reclaim = p && (p->flags & SP_POOL_RECLAIM_ON_EXIT);

			if (release && (!only_reclaim || reclaim)) {
				if (p) {
					if (npend == cap) {
						uint32_t ncap = cap ? 2 * cap : 64;
						sp_off_t *a = realloc(pool_elems, ncap * sizeof(*a));
						uint32_t *b = a ? realloc(pool_ids, ncap * sizeof(*b))
								: NULL;

						if (a)
							pool_elems = a;
						if (!b)
							goto next;
						pool_ids = b;
						cap = ncap;
					}
					pool_elems[npend] = sp_pfn_off(s, pfn);
					pool_ids[npend++] = p->id;
				} else if (kind != SP_KIND_POOL) {
					/* if it merges upwards, the walk steps over tails */
					sp_buddy_free_locked(s, pfn);
					SP_CRASH_POINT("client.release");
				}
			}
		}
next:
		pfn += 1u << o;
	}
	sp_buddy_unlock(s);
	for (uint32_t k = 0; k < npend; k++) {
		struct sp_pool *p = sp_pool_get(s, pool_ids[k]);

		if (p)
			sp_pool_free_owned(s, p, pool_elems[k], tag);
	}
	free(pool_elems);
	free(pool_ids);
	return 0;
}

/*
 * Count the committed magazine sets on @slot's list into @h (what a page
 * walk would count, when no set of it can be off the list).  A list that
 * cannot be walked sends the sets to a page walk at the slot's release
 * (SP_SLOT_LOOSE_SETS) and counts one set, so the slot is not freed
 * before.  Return: 0 or a negative errno.
 */
static int listed_sets(struct sp_seg *s, uint32_t slot, struct sp_holdings *h)
{
	uint32_t pfn, steps = (s->geo.nr_pages >> SP_MAGSET_ORDER) + 1;
	int rc = sp_registry_lock(s);

	if (rc)
		return rc;
	for (pfn = sp_clients(s)[slot].mag_head; pfn; pfn = s->pages[pfn - 1].next) {
		if (!steps-- || !sp_magset_valid(s, pfn - 1) ||
		    ((struct sp_magset *)(s->base + sp_pfn_off(s, pfn - 1)))->slot != slot) {
			__atomic_fetch_or(&sp_clients(s)[slot].flags, SP_SLOT_LOOSE_SETS,
					  __ATOMIC_SEQ_CST);
			h->magsets++;
			break;
		}
		h->magsets++;
	}
	sp_registry_unlock(s);
	return 0;
}

/*
 * May the walks of a slot that is not ALIVE skip every cache its magazines
 * list nothing of?  Yes when its held bound (layout.h) is <= 0: no object
 * there carries its user tag, nor its magazine tag unlisted.  @lists: the
 * caches its magazines list objects of (sp_slot_held_sum()).  Read under
 * the registry lock, before the sets are released, so the list of sets is
 * the one the bound is about.  Return: true to skip.
 */
static bool held_none(struct sp_seg *s, uint32_t slot, uint64_t *lists)
{
	int64_t sum = 1;
	bool none;

	if (sp_registry_lock(s))
		return false;
	none = sp_clients(s)[slot].state != SP_CLIENT_ALIVE &&
	       sp_slot_held_sum(s, slot, &sum, lists) == 0 && sum <= 0;
	sp_registry_unlock(s);
	return none;
}

/*
 * Count what @slot holds into @h; with @release free its objects (only
 * reclaim-on-exit pools' with @only_reclaim), with @release_cached what its
 * magazines cache and their sets.
 */
static int walk_slot(struct sp_seg *s, uint32_t slot, bool release, bool only_reclaim,
		     bool release_cached, struct sp_holdings *h)
{
	uint16_t tag = (uint16_t)(slot + 1);
	uint64_t lists[SP_SLOT_FILTER_BITS / 64];
	bool none;
	int rc;

	memset(h, 0, sizeof(*h));
	if (slot >= s->geo.max_clients)
		return sp_err(-ESRCH, "no client slot %u", slot);
	/* a live slot's counters move under its threads: never trusted */
	none = sp_clients(s)[slot].state != SP_CLIENT_ALIVE && held_none(s, slot, lists);
	/* a live slot's magazines are in use by its threads: never touched */
	release_cached = release_cached && sp_clients(s)[slot].state != SP_CLIENT_ALIVE;
	if (release_cached) {
		rc = sp_mag_release_slot(s, slot);
		if (rc < 0)
			return rc;
		h->magsets += (uint64_t)rc; /* released: counted as a page walk would */
	}
	for (uint32_t id = 0; id < sp_nr_cache_slots(s); id++) {
		struct sp_cache *c;
		bool reclaim;

		if (!sp_slot_may_hold(s, slot, id)) /* no tag naming it was ever written */
			continue;
		if (none && !(lists[id % SP_SLOT_FILTER_BITS / 64] >> (id % 64) & 1)) {
			s->nr_walk_skips++; /* the held bound: nothing of it there */
			continue;
		}
		c = sp_cache_get(s, id);
		if (!c)
			continue;
		s->nr_walk_caches++;
		reclaim = c->pool_id && sp_pool_get(s, c->pool_id - 1) &&
			  (sp_pool_get(s, c->pool_id - 1)->flags & SP_POOL_RECLAIM_ON_EXIT);
		rc = walk_cache(s, c, tag, release && (!only_reclaim || reclaim), release_cached,
				h, 1);
		if (rc)
			return rc;
	}
	if (!sp_slot_may_hold(s, slot, SP_NOTE_BLOCKS)) {
		/* no block but its sets, all on its list (SP_SLOT_LOOSE_SETS) */
		return listed_sets(s, slot, h);
	}
	s->nr_walk_blocks++;
	return walk_blocks(s, tag, release, only_reclaim, release_cached, h, 1);
}

/**
 * sp_slot_holdings() - what a slot holds now.
 * @s: segment.  @slot: the slot.  @h: the counts.
 *
 * May sleep (takes each cache lock in turn, then the buddy lock).
 * Return: 0 or a negative errno.
 */
int sp_slot_holdings(struct sp_seg *s, uint32_t slot, struct sp_holdings *h)
{
	return walk_slot(s, slot, false, false, false, h);
}

/**
 * sp_holdings_all() - what every slot holds now, in one pass.
 * @s: segment.  @v: the counts, indexed by slot.  @n: the entries of @v
 *     (at most s->geo.max_clients are filled; the rest are zeroed).
 *
 * Counts exactly what sp_slot_holdings() counts for each slot, but walks
 * each cache once under its lock and the pages once under the buddy lock,
 * instead of once per slot.  The counts of different slots are not one
 * snapshot: allocations may run between the walks, as with
 * sp_slot_holdings() called slot by slot.
 * May sleep (takes each cache lock in turn, then the buddy lock).
 * Return: 0 or a negative errno (@v is then partial).
 */
int sp_holdings_all(struct sp_seg *s, struct sp_holdings *v, uint32_t n)
{
	int rc;

	memset(v, 0, (size_t)n * sizeof(*v));
	if (n > s->geo.max_clients)
		n = s->geo.max_clients;
	for (uint32_t id = 0; id < sp_nr_cache_slots(s); id++) {
		struct sp_cache *c = sp_cache_get(s, id);

		if (!c)
			continue;
		rc = walk_cache(s, c, 0, false, false, v, n);
		if (rc)
			return rc;
	}
	return walk_blocks(s, 0, false, false, false, v, n);
}

/**
 * sp_slot_release() - free what a slot holds; free the slot if it is DEAD.
 * @s: segment.  @slot: the slot.
 * @only_reclaim: release only elements of pools created with
 *                SP_POOL_RECLAIM_ON_EXIT (automatic reclaim on death).
 * @released: what was held before the call (may be NULL).
 *
 * Pool elements go through the pool's free path, so reserves refill first;
 * but those of a KMALLOC-backed pool are objects of a shared kmalloc class
 * that cannot be told from the slot's other ones, and go back to the class
 * as they are (its pools are recovered first, their counts clamped after:
 * mempool.c).  A DEAD slot is not freed while a cache it may hold objects
 * in has a corrupted geometry (skipped_caches).
 * May sleep.
 * Return: 0 or a negative errno.
 */
int sp_slot_release(struct sp_seg *s, uint32_t slot, bool only_reclaim,
		    struct sp_holdings *released)
{
	struct sp_holdings h, left;
	int rc;

	if (!only_reclaim) /* kmalloc objects are released too */
		sp_pool_kmalloc_settle(s, false);
	rc = walk_slot(s, slot, true, only_reclaim, true, &h);
	if (rc)
		return rc;
	if (!only_reclaim && h.objects)
		sp_pool_kmalloc_settle(s, true);
	if (released)
		*released = h;
	rc = walk_slot(s, slot, false, false, false, &left);
	if (rc)
		return rc;
	if (!left.objects && !left.pages && !left.cached && !left.magsets && !left.skipped_caches &&
	    sp_clients(s)[slot].state == SP_CLIENT_DEAD) {
		rc = sp_registry_lock(s);
		if (rc)
			return rc;
		if (sp_clients(s)[slot].state == SP_CLIENT_DEAD) {
			sp_clients(s)[slot].state = SP_CLIENT_FREE;
			clear_filter(&sp_clients(s)[slot]);
		}
		sp_registry_unlock(s);
	}
	return 0;
}

/* Was any tag naming @slot ever announced (its filter, or a magazine set)? */
static bool slot_noted(const struct sp_seg *s, uint32_t slot)
{
	const struct sp_client *cl = &sp_clients(s)[slot];

	if (__atomic_load_n(&cl->flags, __ATOMIC_ACQUIRE) ||
	    __atomic_load_n(&cl->mag_head, __ATOMIC_ACQUIRE))
		return true;
	for (unsigned i = 0; i < SP_SLOT_FILTER_BITS / 64; i++)
		if (__atomic_load_n(&cl->used[i], __ATOMIC_ACQUIRE))
			return true;
	return false;
}

/*
 * Free a DEAD @slot at once if no tag naming it was ever announced.
 * Return: 1 when freed, 0 when it may hold something (walk it), or a
 * negative errno.
 */
static int free_unnoted(struct sp_seg *s, uint32_t slot)
{
	struct sp_client *cl = &sp_clients(s)[slot];
	int rc = sp_registry_lock(s);

	if (rc)
		return rc;
	rc = cl->state == SP_CLIENT_DEAD && !slot_noted(s, slot);
	if (rc) {
		cl->state = SP_CLIENT_FREE;
		clear_filter(cl);
	}
	sp_registry_unlock(s);
	return rc;
}

/**
 * sp_client_unregister() - a clean goodbye.
 * @s: segment.  @slot: the caller's slot.
 *
 * The slot is freed when it holds nothing; otherwise it becomes DEAD and
 * what it holds stays attributed to it.  What its magazines cached is
 * freed either way: it is nobody's.  A slot whose filter is empty (the
 * usual client that connects, asks and leaves) is freed without a walk:
 * every walk would visit nothing and free nothing, so neither is the
 * kmalloc settle that guards those frees needed.  May sleep.
 * Return: 0 or a negative errno.
 */
int sp_client_unregister(struct sp_seg *s, uint32_t slot)
{
	struct sp_holdings h;
	int rc = sp_client_mark_dead(s, slot);

	if (rc)
		return rc;
	rc = free_unnoted(s, slot);
	if (rc < 0)
		return rc;
	if (rc == 0) { /* it may hold something: walk it */
		rc = sp_slot_holdings(s, slot, &h);
		if (rc)
			return rc;
		if (!h.objects && !h.pages) /* also frees what its magazines cached */
			rc = sp_slot_release(s, slot, false, NULL);
		else if (h.cached || h.magsets)
			rc = walk_slot(s, slot, false, false, true, &h);
	} else {
		rc = 0;
	}
	if (s->slot == slot)
		sp_seg_set_owner(s, UINT32_MAX);
	return rc;
}
