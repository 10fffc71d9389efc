/* SPDX-License-Identifier: MIT */
/*
 * registry.c - names of caches and pools: two open-addressing hash tables
 * in the segment mapping a name to a descriptor id, and the recovery of
 * half-done creations and destructions.
 *
 * Entries are uint32_t: 0 empty, SP_HASH_TOMB deleted, else id + 1; the name
 * itself lives in the descriptor, so a lookup compares against it.  Each
 * table has at least twice as many entries as descriptors, so a probe ends
 * quickly; every probe is bounded by the table size.
 *
 * Locking: hdr->registry_lock (level 1, outermost) protects both tables,
 * every descriptor's state, the client table and the INTERNAL objects
 * (templates, reserve arrays).  Truth for recovery: the descriptors' states.
 * CREATING is rolled back, DESTROYING is finished, and the tables are then
 * rebuilt from the LIVE descriptors.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define SP_HASH_TOMB 0xffffffffu

/**
 * sp_name_check() - validate a pool or cache name.
 * @name: 1..63 characters of [A-Za-z0-9._-].
 *
 * Does not sleep.
 * Return: 0, -EINVAL or -ENAMETOOLONG with a message.
 */
int sp_name_check(const char *name)
{
	size_t n;

	if (!name || !*name)
		return sp_err(-EINVAL, "empty name");
	for (n = 0; name[n]; n++) {
		char ch = name[n];

		if (n >= SP_NAME_MAX)
			return sp_err(-ENAMETOOLONG, "name longer than %d characters",
				      SP_NAME_MAX);
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return sp_err(-EINVAL, "name holds %s character 0x%02x; allowed: "
					       "A-Z a-z 0-9 . _ -",
				      (unsigned char)ch < 0x20 ? "a control" : "the",
				      (unsigned char)ch);
	}
	return 0;
}

uint32_t sp_name_hash(const char *name)
{
	uint32_t h = 2166136261u;

	while (*name) {
		h ^= (uint8_t)*name++;
		h *= 16777619u;
	}
	return h;
}

static uint32_t *table(struct sp_seg *s, bool pools, uint32_t *size)
{
	if (pools) {
		*size = s->geo.phash_size;
		return (uint32_t *)(s->base + s->geo.phash.off);
	}
	*size = s->geo.chash_size;
	return (uint32_t *)(s->base + s->geo.chash.off);
}

static const char *desc_name(struct sp_seg *s, bool pools, uint32_t id, bool *ok)
{
	if (pools) {
		*ok = id < s->geo.max_pools;
		return *ok ? sp_pools(s)[id].name : "";
	}
	*ok = id >= s->geo.nr_kmalloc && id < s->geo.nr_kmalloc + s->geo.max_caches;
	return *ok ? sp_caches(s)[id].name : "";
}

/**
 * sp_hash_lookup_locked() - find a name's descriptor id.
 * @s: segment; registry lock held.  @pools: pool table, else cache table.
 * @name: a checked name.  @id: result.
 *
 * Does not sleep.
 * Return: 0 or -ENOENT.
 */
int sp_hash_lookup_locked(struct sp_seg *s, bool pools, const char *name, uint32_t *id)
{
	sp_assert(sp_lock_held(&s->hdr->registry_lock));
	return sp_hash_find(s, pools, name, id);
}

/**
 * sp_hash_find() - sp_hash_lookup_locked() for a quiescent or read-only
 * segment (the checker).
 * @s: segment.  @pools: which table.  @name: the name.  @id: result.
 *
 * Does not sleep.
 * Return: 0 or -ENOENT.
 */
int sp_hash_find(struct sp_seg *s, bool pools, const char *name, uint32_t *id)
{
	uint32_t size, *t = table(s, pools, &size), i = sp_name_hash(name) & (size - 1);

	for (uint32_t probes = 0; probes < size; probes++, i = (i + 1) & (size - 1)) {
		uint32_t e = t[i];
		bool ok;

		if (!e)
			break;
		if (e == SP_HASH_TOMB)
			continue;
		if (strncmp(desc_name(s, pools, e - 1, &ok), name, SP_NAME_MAX + 1) == 0 && ok) {
			*id = e - 1;
			return 0;
		}
	}
	return -ENOENT;
}

/**
 * sp_hash_insert_locked() - map a new name to a descriptor id.
 * @s: segment; registry lock held.  @pools: which table.
 * @name: not present yet.  @id: the descriptor.
 *
 * Does not sleep.
 * Return: 0, or -ENFILE when the table is full (only after corruption).
 */
int sp_hash_insert_locked(struct sp_seg *s, bool pools, const char *name, uint32_t id)
{
	uint32_t size, *t = table(s, pools, &size), i = sp_name_hash(name) & (size - 1);

	sp_assert(sp_lock_held(&s->hdr->registry_lock));
	for (uint32_t probes = 0; probes < size; probes++, i = (i + 1) & (size - 1)) {
		if (!t[i] || t[i] == SP_HASH_TOMB) {
			t[i] = id + 1;
			return 0;
		}
	}
	return sp_err(-ENFILE, "name table full");
}

/**
 * sp_hash_remove_locked() - forget a name.
 * @s: segment; registry lock held.  @pools: which table.  @name: the name.
 *
 * Does not sleep.
 */
void sp_hash_remove_locked(struct sp_seg *s, bool pools, const char *name)
{
	uint32_t size, *t = table(s, pools, &size), i = sp_name_hash(name) & (size - 1);

	sp_assert(sp_lock_held(&s->hdr->registry_lock));
	for (uint32_t probes = 0; probes < size; probes++, i = (i + 1) & (size - 1)) {
		uint32_t e = t[i];
		bool ok;

		if (!e)
			return;
		if (e != SP_HASH_TOMB &&
		    strncmp(desc_name(s, pools, e - 1, &ok), name, SP_NAME_MAX + 1) == 0) {
			t[i] = SP_HASH_TOMB;
			/* a tombstone before an empty entry ends no probe: clear the run */
			while (t[i] == SP_HASH_TOMB && !t[(i + 1) & (size - 1)]) {
				t[i] = 0;
				i = (i - 1) & (size - 1);
			}
			return;
		}
	}
}

/* Both name tables and the live counts, from the LIVE descriptors. */
static void rebuild_tables_locked(struct sp_seg *s)
{
	uint32_t size, *t, i;

	sp_assert(sp_lock_held(&s->hdr->registry_lock));
	t = table(s, false, &size);
	memset(t, 0, (size_t)size * sizeof(*t));
	s->hdr->nr_live_caches = 0;
	for (i = s->geo.nr_kmalloc; i < s->geo.nr_kmalloc + s->geo.max_caches; i++) {
		struct sp_cache *c = &sp_caches(s)[i];

		c->name[SP_NAME_MAX] = '\0';
		if (c->state == SP_DESC_LIVE && sp_name_check(c->name) == 0 &&
		    sp_hash_lookup_locked(s, false, c->name, &(uint32_t){0}) != 0 &&
		    sp_hash_insert_locked(s, false, c->name, i) == 0)
			s->hdr->nr_live_caches++;
	}
	t = table(s, true, &size);
	memset(t, 0, (size_t)size * sizeof(*t));
	s->hdr->nr_live_pools = 0;
	for (i = 0; i < s->geo.max_pools; i++) {
		struct sp_pool *p = &sp_pools(s)[i];

		p->name[SP_NAME_MAX] = '\0';
		if (p->state == SP_DESC_LIVE && sp_name_check(p->name) == 0 &&
		    sp_hash_lookup_locked(s, true, p->name, &(uint32_t){0}) != 0 &&
		    sp_hash_insert_locked(s, true, p->name, i) == 0)
			s->hdr->nr_live_pools++;
	}
}

static int cmp_off(const void *a, const void *b)
{
	sp_off_t x = *(const sp_off_t *)a, y = *(const sp_off_t *)b;

	return x < y ? -1 : x > y;
}

/**
 * sp_internal_refs() - every offset a descriptor holds to INTERNAL memory.
 * @s: segment; registry lock held, or a quiescent or read-only segment.
 * @n: receives the count.
 *
 * INTERNAL memory (owner tag SP_OWNER_INTERNAL) is referenced by a pool's
 * elements_off (its reserve array) and put_off (a KMALLOC-backed pool's
 * element between its class and its reserve, INTERNAL while that move is
 * in flight: mempool.c) and a cache's tmpl_off (its template), in any
 * descriptor state; one nothing references is leaked.  The sweep
 * below and the checker share this one definition.  Every INTERNAL
 * allocation is made, referenced and freed under the registry lock, so with
 * it held none is in flight.  Does not sleep.
 * Return: the offsets, sorted (for sp_internal_referenced()), in memory the
 * caller frees; NULL when out of process memory.
 */
sp_off_t *sp_internal_refs(struct sp_seg *s, uint32_t *n)
{
	sp_off_t *ref = malloc(((size_t)2 * s->geo.max_pools + sp_nr_cache_slots(s) + 1) *
			       sizeof(*ref));
	uint32_t nref = 0;

	*n = 0;
	if (!ref)
		return NULL;
	for (uint32_t i = 0; i < s->geo.max_pools; i++) {
		if (sp_pools(s)[i].elements_off)
			ref[nref++] = sp_pools(s)[i].elements_off;
		if (sp_pools(s)[i].put_off)
			ref[nref++] = sp_pools(s)[i].put_off;
	}
	for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++)
		if (sp_caches(s)[i].tmpl_off)
			ref[nref++] = sp_caches(s)[i].tmpl_off;
	qsort(ref, nref, sizeof(*ref), cmp_off);
	*n = nref;
	return ref;
}

/**
 * sp_internal_referenced() - is @off among the references sp_internal_refs() found?
 * @ref: @n: its result.  @off: an INTERNAL object or block.
 *
 * Does not sleep.
 * Return: true when a descriptor references @off.
 */
bool sp_internal_referenced(const sp_off_t *ref, uint32_t n, sp_off_t off)
{
	return n && bsearch(&off, ref, n, sizeof(*ref), cmp_off);
}

/*
 * Free the INTERNAL allocations no descriptor references: a reserve array or
 * a template whose maker died before storing its offset, or before freeing
 * the one it replaced; an element a KMALLOC-backed pool was moving between
 * its class and its reserve.  With the registry lock held none is in
 * flight, so sp_internal_refs() is the truth - once the KMALLOC-backed
 * pools are recovered: a reserve entry of theirs may be INTERNAL-tagged by
 * a drain cut short, and only their recovery (which re-tags it RESERVE)
 * knows it is not garbage.
 */
static void sweep_internal_locked(struct sp_seg *s)
{
	uint32_t n = s->geo.nr_pages, nref, ndead = 0, dcap = 0, pfn;
	sp_off_t *ref, *dead = NULL;

	sp_assert(sp_lock_held(&s->hdr->registry_lock));
	sp_pool_kmalloc_settle(s, false);
	ref = sp_internal_refs(s, &nref);
	if (!ref)
		return;
	for (uint32_t id = 0; id < s->geo.nr_kmalloc; id++) {
		struct sp_cache *c = &sp_caches(s)[id], g;

		if (sp_cache_lock(s, c))
			continue;
		/* a corrupted geometry: its objects cannot be found (the checker says so) */
		if (sp_cache_snapshot(s, c, &g) == 0 && sp_buddy_lock(s) == 0) {
			for (pfn = 0; pfn < n;) {
				uint32_t o = SP_PG_ORDER(s->pages[pfn].info);

				if (sp_slab_valid(s, &g, pfn)) {
					struct sp_slab *slab = sp_slab_at(s, &g, pfn);
					uint16_t *own = sp_slab_owners(&g, slab);

					for (uint32_t i = 0; i < g.objperslab; i++) {
						sp_off_t off = (sp_off_t)(sp_slab_obj(&g, slab, i) - s->base);

						if (!(slab->bitmap[i / 64] >> (i % 64) & 1) ||
						    own[i] != SP_OWNER_INTERNAL ||
						    sp_internal_referenced(ref, nref, off))
							continue;
						if (ndead == dcap) {
							sp_off_t *nd = realloc(dead, (dcap ? 2 * dcap : 16) *
										    sizeof(*nd));
							if (!nd)
								continue;
							dead = nd;
							dcap = dcap ? 2 * dcap : 16;
						}
						dead[ndead++] = off;
					}
				}
				pfn += 1u << (o > s->geo.max_order ? 0 : o);
			}
			sp_buddy_unlock(s);
		}
		while (ndead)
			sp_cache_free_locked(s, c, dead[--ndead]);
		sp_cache_unlock(c);
	}
	if (sp_buddy_lock(s) == 0) {
		for (pfn = 0; pfn < n;) {
			uint32_t info = s->pages[pfn].info, o = SP_PG_ORDER(info);
			sp_off_t off = sp_pfn_off(s, pfn);

			if (o > s->geo.max_order)
				o = 0;
			if (SP_PG_STATE(info) == SP_PG_ALLOC && SP_PG_KIND(info) == SP_KIND_LARGE &&
			    s->pages[pfn].slot == SP_OWNER_INTERNAL &&
			    !sp_internal_referenced(ref, nref, off))
				sp_buddy_free_locked(s, pfn); /* merged: the walk steps over tails */
			pfn += 1u << o;
		}
		sp_buddy_unlock(s);
	}
	free(dead);
	free(ref);
}

/**
 * sp_registry_recover_locked() - finish or undo what a dead process was
 * doing under the registry lock, free INTERNAL memory no descriptor
 * references, rebuild the name tables, and wake every pool's waiters.
 * @s: segment; registry lock held.
 *
 * May sleep (takes pool, cache and buddy locks).
 */
void sp_registry_recover_locked(struct sp_seg *s)
{
	uint32_t i;

	sp_assert(sp_lock_held(&s->hdr->registry_lock));
	for (i = 0; i < s->geo.max_pools; i++) {
		struct sp_pool *p = &sp_pools(s)[i];

		if (p->state != SP_DESC_CREATING && p->state != SP_DESC_DESTROYING)
			continue;
		if (sp_pool_lock(s, p) == 0) {
			sp_pool_teardown_locked(s, p);
			sp_pool_unlock(p);
		}
	}
	for (i = s->geo.nr_kmalloc; i < s->geo.nr_kmalloc + s->geo.max_caches; i++) {
		struct sp_cache *c = &sp_caches(s)[i];

		if (c->state != SP_DESC_CREATING && c->state != SP_DESC_DESTROYING)
			continue;
		if (sp_cache_lock(s, c) == 0) {
			int rc = sp_cache_teardown_locked(s, c);

			sp_cache_unlock(c);
			if (rc) { /* objects were handed out: it was live after all */
				c->state = SP_DESC_LIVE;
				continue;
			}
		}
		if (c->tmpl_off) { /* forget it first: dying here leaks, never frees twice */
			sp_off_t old_tmpl = c->tmpl_off;

			c->tmpl_off = 0;
			sp_kfree(s, old_tmpl);
		}
		c->magic = 0;
		c->state = SP_DESC_FREE;
	}
	sweep_internal_locked(s);
	sp_mag_relink_locked(s); /* the dead owner may have been linking a set */
	rebuild_tables_locked(s);
	/* it may have died owing them a wake-up: a destroy's (its pool's
	 * sleepers return -ENOENT), a client death's (client.c) */
	sp_pools_wake_waiters(s);
}

/**
 * sp_registry_lookup() - find a pool's or a named cache's id by name.
 * @s: segment.  @pools: pool table, else cache table.
 * @name: the name.  @id: its id.
 *
 * May sleep.
 * Return: 0, -EINVAL / -ENAMETOOLONG (bad name) or -ENOENT.
 */
int sp_registry_lookup(struct sp_seg *s, bool pools, const char *name, uint32_t *id)
{
	int rc = sp_name_check(name);

	if (rc)
		return rc;
	rc = sp_registry_lock(s);
	if (rc)
		return rc;
	rc = sp_hash_lookup_locked(s, pools, name, id);
	sp_registry_unlock(s);
	return rc ? sp_err(-ENOENT, "no %s named %s", pools ? "pool" : "cache", name) : 0;
}

/**
 * sp_registry_lock() - take the registry lock, recovering it if needed.
 * @s: segment.
 *
 * May sleep.
 * Return: 0 or a negative errno.
 */
int sp_registry_lock(struct sp_seg *s)
{
	int rc = sp_lock(s, &s->hdr->registry_lock);

	if (sp_unlikely(rc == SP_LOCK_RECOVER)) {
		sp_registry_recover_locked(s);
		sp_lock_consistent(&s->hdr->registry_lock);
		rc = 0;
	}
	return rc;
}

void sp_registry_unlock(struct sp_seg *s)
{
	sp_unlock(&s->hdr->registry_lock);
}
