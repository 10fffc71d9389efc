/* SPDX-License-Identifier: MIT */
/*
 * views.c - the segment's structures as protobuf messages.
 *
 * PoolInfo, CacheInfo, List, Stats and Check replies are built from
 * unlocked snapshots of the shared descriptors (like dump.c): counters may
 * be a moment old, never unsafe.  Everything read from the segment is
 * untrusted: names are copied bounded and sanitized (printable ASCII), and
 * tables are walked by the bounds in the validated header.  Holdings come
 * from sp_holdings_all(), the check from sp_check(); nothing is computed
 * here that the core already knows.
 *
 * Every message of one Response lives in a struct spd_arena and is freed at
 * once after the Response is packed.  A reply must fit one frame
 * (SPD_FRAME_MAX): spd_view_fit() drops trailing list entries until it does
 * and says so in the Response's message.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmpoold.h"

struct spd_arena_chunk {
	struct spd_arena_chunk *next;
	max_align_t data[];
};

/**
 * spd_arena_alloc() - zeroed memory that lives until spd_arena_free().
 * @a: the arena.  @size: bytes.
 *
 * Does not sleep.
 * Return: the memory, or NULL (and a->failed set) when out of memory.
 */
void *spd_arena_alloc(struct spd_arena *a, size_t size)
{
	struct spd_arena_chunk *c = calloc(1, sizeof(*c) + size);

	if (!c) {
		a->failed = true;
		return NULL;
	}
	c->next = a->head;
	a->head = c;
	return c->data;
}

/**
 * spd_arena_str() - a sanitized copy of at most @max bytes of @src.
 * @a: the arena.  @src: the text (may be untrusted).  @max: bytes to read.
 *
 * Does not sleep.
 * Return: the copy, or NULL when out of memory.
 */
char *spd_arena_str(struct spd_arena *a, const char *src, size_t max)
{
	char *s = spd_arena_alloc(a, max + 1);

	if (s)
		spd_sanitize(s, max + 1, src, max);
	return s;
}

/**
 * spd_arena_free() - free everything allocated from @a.
 * @a: the arena.
 *
 * Does not sleep.
 */
void spd_arena_free(struct spd_arena *a)
{
	while (a->head) {
		struct spd_arena_chunk *c = a->head;

		a->head = c->next;
		free(c);
	}
}

/**
 * spd_view_pool() - a pool as a PoolInfo.
 * @a: the arena.  @s: segment.  @p: a LIVE pool.
 *
 * Does not sleep.
 * Return: the message, or NULL when out of memory.
 */
Shmpool__PoolInfo *spd_view_pool(struct spd_arena *a, struct sp_seg *s, const struct sp_pool *p)
{
	Shmpool__PoolInfo *v = spd_arena_alloc(a, sizeof(*v));

	if (!v)
		return NULL;
	shmpool__pool_info__init(v);
	v->name = spd_arena_str(a, p->name, SP_NAME_MAX);
	if (!v->name)
		return NULL;
	v->id = p->id;
	v->gen = p->gen;
	v->elem_size = p->elem_size;
	v->min_nr = p->min_nr;
	v->curr_nr = p->curr_nr;
	v->max_nr = p->max_nr;
	v->nr_out = sp_pool_nr_out(s, (struct sp_pool *)p);
	v->backing = p->backing;
	v->flags = p->flags;
	v->creator_uid = p->creator_uid;
	v->mode = p->mode;
	sp_pool_counters(s, p, &v->nr_alloc, &v->nr_free);
	v->nr_reserve_alloc = p->nr_reserve_alloc;
	v->nr_fail = p->nr_fail;
	v->nr_wait = p->nr_wait;
	v->nr_waiters = p->nr_waiters;
	v->cache_id = p->cache_id;
	return v;
}

/**
 * spd_view_cache() - a cache as a CacheInfo.
 * @a: the arena.  @s: its segment.  @c: a LIVE cache.
 *
 * Does not sleep.
 * Return: the message, or NULL when out of memory.
 */
Shmpool__CacheInfo *spd_view_cache(struct spd_arena *a, struct sp_seg *s,
				   const struct sp_cache *c)
{
	Shmpool__CacheInfo *v = spd_arena_alloc(a, sizeof(*v));

	if (!v)
		return NULL;
	shmpool__cache_info__init(v);
	v->name = spd_arena_str(a, c->name, SP_NAME_MAX);
	if (!v->name)
		return NULL;
	v->id = c->id;
	v->gen = c->gen;
	v->obj_size = c->obj_size;
	v->align = c->align;
	v->flags = c->flags;
	v->active_objs = sp_cache_in_use(s, c); /* magazine objects are free */
	v->num_objs = c->total_objs;
	v->objperslab = c->objperslab;
	v->pagesperslab = c->order < 32 ? 1u << c->order : 0;
	v->active_slabs = c->nr_list[SP_LIST_PARTIAL] + c->nr_list[SP_LIST_FULL];
	v->num_slabs = c->nr_slabs;
	sp_cache_counters(s, c, &v->nr_alloc, &v->nr_free);
	v->nr_fail = c->nr_fail;
	v->nr_bad_free = c->nr_bad_free;
	v->creator_uid = c->creator_uid;
	v->mode = c->mode;
	v->kmalloc = (c->flags & SP_CACHE_KMALLOC) != 0;
	v->pool_id = c->pool_id;
	v->nr_poison_err = c->nr_poison_err;
	v->nr_redzone_err = c->nr_redzone_err;
	return v;
}

/* Every LIVE pool; NULL when out of memory. */
static Shmpool__PoolInfo **all_pools(struct spd_arena *a, struct sp_seg *s, size_t *n)
{
	Shmpool__PoolInfo **v = spd_arena_alloc(a, (s->geo.max_pools + 1) * sizeof(*v));

	*n = 0;
	for (uint32_t i = 0; v && i < s->geo.max_pools; i++) {
		struct sp_pool *p = sp_pool_get(s, i);

		if (p && !(v[(*n)++] = spd_view_pool(a, s, p)))
			return NULL;
	}
	return v;
}

/* LIVE caches with ids in [first, end); NULL when out of memory. */
static Shmpool__CacheInfo **caches(struct spd_arena *a, struct sp_seg *s, uint32_t first,
				   uint32_t end, size_t *n)
{
	Shmpool__CacheInfo **v = spd_arena_alloc(a, (end - first + 1) * sizeof(*v));

	*n = 0;
	for (uint32_t i = first; v && i < end; i++) {
		struct sp_cache *c = sp_cache_get(s, i);

		if (c && !(v[(*n)++] = spd_view_cache(a, s, c)))
			return NULL;
	}
	return v;
}

/**
 * spd_view_list() - the names in the segment: pools and named caches.
 * @a: the arena.  @s: segment.
 *
 * Does not sleep.
 * Return: the message, or NULL when out of memory.
 */
Shmpool__ListReply *spd_view_list(struct spd_arena *a, struct sp_seg *s)
{
	Shmpool__ListReply *v = spd_arena_alloc(a, sizeof(*v));
	uint32_t first = s->geo.nr_kmalloc;

	if (!v)
		return NULL;
	shmpool__list_reply__init(v);
	sp_mag_snapshot_begin(s); /* one walk of the magazines for the reply */
	v->pools = all_pools(a, s, &v->n_pools);
	v->caches = caches(a, s, first, first + s->geo.max_caches, &v->n_caches);
	sp_mag_snapshot_end();
	return v->pools && v->caches ? v : NULL;
}

/**
 * spd_view_segment_header() - fill in what a SegmentInfo takes from the
 * segment's size and (validated) header.
 * @v: the message.  @s: segment.
 *
 * Does not sleep.
 */
void spd_view_segment_header(Shmpool__SegmentInfo *v, struct sp_seg *s)
{
	const struct sp_header *g = &s->geo; /* validated at attach */
	struct sp_header *h = s->hdr;

	v->size = s->size;
	v->layout_version = g->layout_version;
	v->nr_pages = g->nr_pages;
	v->free_pages = h->buddy.free_pages;
	v->max_order = g->max_order;
	v->max_clients = g->max_clients;
	v->max_caches = g->max_caches;
	v->max_pools = g->max_pools;
	v->created_time = g->created_time;
	v->kmalloc_prefill = g->kmalloc_prefill;
}

static Shmpool__SegmentInfo *segment_info(struct spd_arena *a, struct spd_daemon *d)
{
	Shmpool__SegmentInfo *v = spd_arena_alloc(a, sizeof(*v));

	if (!v)
		return NULL;
	shmpool__segment_info__init(v);
	v->name = spd_arena_str(a, d->cfg.shm_name, strlen(d->cfg.shm_name));
	v->daemon_version = spd_arena_str(a, SHMPOOL_VERSION, strlen(SHMPOOL_VERSION));
	spd_view_segment_header(v, d->seg);
	v->daemon_uptime_s = (sp_now_ms() - d->start_ms) / 1000;
	v->daemon_pid = (int32_t)getpid();
	v->socket_path = spd_arena_str(a, d->cfg.socket_path, strlen(d->cfg.socket_path));
	v->protocol_version = SPD_PROTOCOL_VERSION;
	v->nr_walk_caches = d->seg->nr_walk_caches;
	v->nr_walk_skips = d->seg->nr_walk_skips;
	v->nr_walk_blocks = d->seg->nr_walk_blocks;
	return v->name && v->daemon_version && v->socket_path ? v : NULL;
}

/**
 * spd_view_buddy() - the buddy allocator's counters as a BuddyInfo.
 * @a: the arena.  @s: segment (a validated header).
 *
 * Does not sleep.
 * Return: the message, or NULL when out of memory.
 */
Shmpool__BuddyInfo *spd_view_buddy(struct spd_arena *a, struct sp_seg *s)
{
	Shmpool__BuddyInfo *v = spd_arena_alloc(a, sizeof(*v));
	struct sp_buddy *z = &s->hdr->buddy;
	unsigned orders = s->geo.max_order + 1; /* validated <= SP_MAX_ORDER_LIMIT */

	if (!v)
		return NULL;
	shmpool__buddy_info__init(v);
	v->nr_free = spd_arena_alloc(a, orders * sizeof(*v->nr_free));
	if (!v->nr_free)
		return NULL;
	v->n_nr_free = orders;
	for (unsigned o = 0; o < orders; o++)
		v->nr_free[o] = z->nr_free[o];
	v->nr_alloc = z->nr_alloc;
	v->nr_free_calls = z->nr_free_calls;
	v->nr_fail = z->nr_fail;
	v->nr_backing_fail = z->nr_backing_fail;
	return v;
}

/*
 * Every used slot with what it holds now: one sp_holdings_all() walk for
 * all of them (it may sleep), not one per slot.
 */
static Shmpool__ClientInfo **clients(struct spd_arena *a, struct spd_daemon *d, size_t *n)
{
	struct sp_seg *s = d->seg;
	Shmpool__ClientInfo **v = spd_arena_alloc(a, (s->geo.max_clients + 1) * sizeof(*v));
	struct sp_holdings *held = spd_arena_alloc(a, s->geo.max_clients * sizeof(*held));
	bool have_held;

	*n = 0;
	if (!v || !held)
		return NULL;
	have_held = sp_holdings_all(s, held, s->geo.max_clients) == 0;
	for (uint32_t i = 0; i < s->geo.max_clients; i++) {
		struct sp_client *cl = &sp_clients(s)[i];
		uint32_t state = cl->state;
		struct sp_holdings *h = &held[i];
		Shmpool__ClientInfo *c;

		if (state != SP_CLIENT_ALIVE && state != SP_CLIENT_DEAD)
			continue;
		c = spd_arena_alloc(a, sizeof(*c));
		if (!c)
			return NULL;
		shmpool__client_info__init(c);
		c->slot = i;
		c->pid = (int32_t)cl->pid;
		c->uid = cl->uid;
		c->name = spd_arena_str(a, cl->name, SP_CLIENT_NAME_MAX);
		c->state = state == SP_CLIENT_ALIVE ? "alive" : "dead";
		c->gid = cl->gid;
		c->attach_time = cl->attach_time;
		c->death_time = state == SP_CLIENT_DEAD ? cl->death_time : 0;
		if (!c->name)
			return NULL;
		if (have_held) {
			c->objects = h->objects;
			c->pool_elems = h->pool_elems;
			c->large_blocks = h->large_blocks;
			c->bytes = h->bytes;
		}
		c->connected = spd_slot_session(d, i) != NULL;
		v[(*n)++] = c;
	}
	return v;
}

/**
 * spd_view_stats() - segment, buddy, every cache and pool, every client.
 * @a: the arena.  @d: the daemon.
 *
 * May sleep (holdings walk each cache under its lock).
 * Return: the message, or NULL when out of memory.
 */
Shmpool__StatsReply *spd_view_stats(struct spd_arena *a, struct spd_daemon *d)
{
	Shmpool__StatsReply *v = spd_arena_alloc(a, sizeof(*v));
	struct sp_seg *s = d->seg;

	if (!v)
		return NULL;
	shmpool__stats_reply__init(v);
	v->segment = segment_info(a, d);
	v->buddy = spd_view_buddy(a, s);
	sp_mag_snapshot_begin(s); /* one walk of the magazines for the reply */
	v->caches = caches(a, s, 0, sp_nr_cache_slots(s), &v->n_caches);
	v->pools = all_pools(a, s, &v->n_pools);
	sp_mag_snapshot_end();
	v->clients = clients(a, d, &v->n_clients);
	if (!v->segment || !v->buddy || !v->caches || !v->pools || !v->clients)
		return NULL;
	return v;
}

/**
 * spd_view_check() - run the checker, listing the first 100 violations.
 * @a: the arena.  @s: segment.  @out: the reply.
 *
 * May sleep (the checker stops the world: every lock, each bounded by the
 * daemon's lock timeout).
 * Return: 0, -ENOMEM, or the checker's negative errno.
 */
int spd_view_check(struct spd_arena *a, struct sp_seg *s, Shmpool__CheckReply **out)
{
	struct sp_report r = { .cap = 100 };
	Shmpool__CheckReply *v = spd_arena_alloc(a, sizeof(*v));
	int n;

	r.v = spd_arena_alloc(a, r.cap * sizeof(*r.v));
	if (!v || !r.v)
		return -ENOMEM;
	shmpool__check_reply__init(v);
	n = sp_check(s, 0, &r);
	if (n < 0)
		return n;
	v->nr_violations = r.nr;
	v->violations = spd_arena_alloc(a, (r.cap + 1) * sizeof(*v->violations));
	if (!v->violations)
		return -ENOMEM;
	for (unsigned i = 0; i < r.nr && i < r.cap; i++) {
		v->violations[i] = spd_arena_str(a, r.v[i].what, sizeof(r.v[i].what) - 1);
		if (!v->violations[i])
			return -ENOMEM;
		v->n_violations++;
	}
	*out = v;
	return 0;
}

struct trim {
	size_t *n;
	ProtobufCMessage **v;
	const char *what;
	size_t dropped;
};

/* Bytes one entry of a repeated message field takes: tag, length, body. */
static size_t entry_size(const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m), len = 1;

	for (size_t x = n; x >= 0x80; x >>= 7)
		len++;
	return 1 + len + n;
}

/**
 * spd_view_fit() - make a List or Stats reply fit one frame.
 * @r: the response.  @note: where to write what was left out.  @size: its size.
 *
 * Drops entries from the end of the longest list until the packed size,
 * with @note set as the message saying what was left out, is at most
 * SPD_FRAME_MAX.  Does not sleep.
 * Return: @note when something was dropped, else NULL.
 */
const char *spd_view_fit(Shmpool__Response *r, char *note, size_t size)
{
	struct trim t[3];
	unsigned nt = 0;
	int n;
	size_t total = shmpool__response__get_packed_size(r);
	size_t limit = SPD_FRAME_MAX - size - 8; /* room for the note: tag, length, text */

	if (total <= SPD_FRAME_MAX)
		return NULL;
	if (r->payload_case == SHMPOOL__RESPONSE__PAYLOAD_LIST) {
		t[nt++] = (struct trim){ &r->list->n_pools, (ProtobufCMessage **)r->list->pools,
					 "pools", 0 };
		t[nt++] = (struct trim){ &r->list->n_caches, (ProtobufCMessage **)r->list->caches,
					 "caches", 0 };
	} else if (r->payload_case == SHMPOOL__RESPONSE__PAYLOAD_STATS) {
		t[nt++] = (struct trim){ &r->stats->n_pools, (ProtobufCMessage **)r->stats->pools,
					 "pools", 0 };
		t[nt++] = (struct trim){ &r->stats->n_caches,
					 (ProtobufCMessage **)r->stats->caches, "caches", 0 };
		t[nt++] = (struct trim){ &r->stats->n_clients,
					 (ProtobufCMessage **)r->stats->clients, "clients", 0 };
	}
	while (total > limit) {
		struct trim *l = NULL;
		size_t excess = total - limit, freed = 0;

		for (unsigned i = 0; i < nt; i++)
			if (*t[i].n && (!l || *t[i].n > *l->n))
				l = &t[i];
		if (!l)
			break;
		while (*l->n && freed < excess) {
			(*l->n)--;
			freed += entry_size(l->v[*l->n]);
			l->dropped++;
		}
		total = shmpool__response__get_packed_size(r);
	}
	n = snprintf(note, size, "reply truncated to fit one %u-byte frame; left out:",
		     SPD_FRAME_MAX);
	for (unsigned i = 0; i < nt && n > 0 && (size_t)n < size; i++)
		if (t[i].dropped)
			n += snprintf(note + n, size - (size_t)n, " %zu %s", t[i].dropped,
				      t[i].what);
	r->message = note;
	return note;
}
