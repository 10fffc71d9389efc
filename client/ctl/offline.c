/* SPDX-License-Identifier: MIT */
/*
 * offline.c - post-mortem: a segment read without a daemon (--segment).
 *
 * The segment is mapped read-only (SP_ATTACH_RDONLY: PROT_READ, no lock is
 * ever taken, nothing written), after sp_seg_attach() validated the
 * header: magic, layout version, struct sizes, checksum, file size and
 * every region.  Past the header nothing is trusted - the daemon may have
 * died in the middle of an update, or the segment may be scribbled on:
 *   - tables are walked by the validated header's bounds, descriptors are
 *     taken only through sp_cache_get()/sp_pool_get() (state, magic, id);
 *   - names are copied bounded and sanitized (printable ASCII);
 *   - the page walk steps by block order capped at max_order, so it ends;
 *   - a slab is read only through a private snapshot of its cache's
 *     geometry that passes sp_cache_geometry_ok() (sp_cache_snapshot():
 *     bitmap, owner array and objects of every colour fit inside a slab)
 *     and if sp_slab_valid() accepts its head.
 * The check runs sp_check() with SP_CHECK_NOLOCK (read-only implies it).
 *
 * What a slot holds is counted here in one pass over the pages (the core's
 * sp_slot_holdings() takes locks, which a read-only mapping cannot): cache
 * objects by their owner tags, large blocks and page-pool elements by the
 * head page's slot.  Counters are a snapshot: on a live segment they may
 * be a moment old, never unsafe.
 *
 * The replies are the daemon's messages (Stats, Check), built in its arena
 * with its builders where they need no daemon (daemon/views.c), packed and
 * unpacked again: the caller cannot tell the sources apart except by the
 * empty daemon fields (version, uptime, socket, pid).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "shmpoold.h"

/* A sanitized copy of at most @max bytes of untrusted text ("" when out of memory). */
static char *str(struct spd_arena *a, const char *src, size_t max)
{
	char *s = spd_arena_str(a, src, max);

	return s ? s : (char *)"";
}

/* ---- opening ---------------------------------------------------------------- */

/**
 * ctl_offline_open() - map a segment read-only.
 * @name: a POSIX shm name ("/shmpool"; the leading '/' may be left out),
 *        or the path of a file holding a segment (a copy of /dev/shm/...).
 * @out: the handle.
 *
 * Does not sleep.
 * Return: 0, or a negative errno with sp_errmsg() saying why (not found,
 * not a shmpool segment, corrupted header, ...).
 */
int ctl_offline_open(const char *name, struct sp_seg **out)
{
	char shm[256];
	int fd;

	if (!*name)
		return sp_err(-EINVAL, "empty segment name");
	/* a path: a file, or /dev/shm/NAME */
	if (strchr(name + 1, '/') || (name[0] != '/' && access(name, F_OK) == 0)) {
		fd = open(name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return sp_err(-errno, "%s: %s", name, strerror(errno));
		return sp_seg_attach(NULL, fd, SP_ATTACH_RDONLY, out);
	}
	if (strlen(name) > 250)
		return sp_err(-ENAMETOOLONG, "segment name too long");
	snprintf(shm, sizeof(shm), "%s%s", name[0] == '/' ? "" : "/", name);
	return sp_seg_attach(shm, -1, SP_ATTACH_RDONLY, out);
}

/* ---- holdings: one pass over the pages ----------------------------------- */

static void count_slab(struct sp_seg *s, const struct sp_cache *c, uint32_t pfn,
		       struct sp_holdings *h, uint32_t nslots)
{
	struct sp_cache g;
	struct sp_slab *sl;
	const uint16_t *own;

	if (sp_cache_snapshot(s, c, &g) || !sp_slab_valid(s, &g, pfn))
		return;
	sl = sp_slab_at(s, &g, pfn);
	own = sp_slab_owners(&g, sl);
	for (uint32_t i = 0; i < g.objperslab; i++) {
		uint16_t tag = own[i];

		if (!tag || tag > nslots || !(sl->bitmap[i / 64] >> (i % 64) & 1))
			continue;
		h[tag - 1].objects++;
		h[tag - 1].bytes += g.obj_size;
		if (g.pool_id)
			h[tag - 1].pool_elems++;
	}
}

/* What every slot holds; @h has nslots entries, zeroed. */
static void holdings(struct sp_seg *s, struct sp_holdings *h, uint32_t nslots)
{
	uint32_t n = s->geo.nr_pages, max = s->geo.max_order;

	for (uint32_t pfn = 0; pfn < n;) {
		const struct sp_page *pg = &s->pages[pfn];
		uint32_t info = pg->info, o = SP_PG_ORDER(info), kind = SP_PG_KIND(info);

		if (o > max)
			o = 0;
		if (SP_PG_STATE(info) == SP_PG_ALLOC) {
			if (kind == SP_KIND_SLAB) {
				struct sp_cache *c = sp_cache_get(s, pg->owner);

				if (c)
					count_slab(s, c, pfn, h, nslots);
			} else if ((kind == SP_KIND_LARGE || kind == SP_KIND_RAW ||
				    kind == SP_KIND_POOL) && pg->slot && pg->slot <= nslots) {
				struct sp_holdings *x = &h[pg->slot - 1];

				x->pages += 1u << o;
				x->bytes += (uint64_t)SP_PAGE_SIZE << o;
				if (kind == SP_KIND_POOL)
					x->pool_elems++;
				else
					x->large_blocks++;
			}
		}
		pfn += 1u << o;
	}
}

/* ---- the Stats reply ------------------------------------------------------ */

static Shmpool__SegmentInfo *segment_info(struct spd_arena *a, struct sp_seg *s)
{
	Shmpool__SegmentInfo *v = spd_arena_alloc(a, sizeof(*v));

	if (!v)
		return NULL;
	shmpool__segment_info__init(v);
	v->name = str(a, s->name, sizeof(s->name) - 1);
	spd_view_segment_header(v, s);
	return v;
}

static int stats(struct spd_arena *a, struct sp_seg *s, Shmpool__StatsReply *v)
{
	uint32_t nslots = s->geo.max_clients, ncache = sp_nr_cache_slots(s);
	struct sp_holdings *h = calloc(nslots, sizeof(*h));

	if (!h)
		return -ENOMEM;
	v->segment = segment_info(a, s);
	v->buddy = spd_view_buddy(a, s);
	v->caches = spd_arena_alloc(a, (ncache + 1) * sizeof(*v->caches));
	v->pools = spd_arena_alloc(a, (s->geo.max_pools + 1) * sizeof(*v->pools));
	v->clients = spd_arena_alloc(a, (nslots + 1) * sizeof(*v->clients));
	if (!v->caches || !v->pools || !v->clients) {
		free(h);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < ncache; i++) {
		struct sp_cache *c = sp_cache_get(s, i);

		if (c)
			v->caches[v->n_caches++] = spd_view_cache(a, s, c);
	}
	for (uint32_t i = 0; i < s->geo.max_pools; i++) {
		struct sp_pool *p = sp_pool_get(s, i);

		if (p)
			v->pools[v->n_pools++] = spd_view_pool(a, s, p);
	}
	holdings(s, h, nslots);
	for (uint32_t i = 0; i < nslots; i++) {
		const struct sp_client *cl = &sp_clients(s)[i];
		Shmpool__ClientInfo *c;

		if (cl->state != SP_CLIENT_ALIVE && cl->state != SP_CLIENT_DEAD)
			continue;
		c = spd_arena_alloc(a, sizeof(*c));
		if (!c)
			break;
		shmpool__client_info__init(c);
		c->slot = i;
		c->pid = (int32_t)cl->pid;
		c->uid = cl->uid;
		c->gid = cl->gid;
		c->name = str(a, cl->name, SP_CLIENT_NAME_MAX);
		c->state = cl->state == SP_CLIENT_ALIVE ? "alive" : "dead";
		c->objects = h[i].objects;
		c->pool_elems = h[i].pool_elems;
		c->large_blocks = h[i].large_blocks;
		c->bytes = h[i].bytes;
		c->attach_time = cl->attach_time;
		c->death_time = cl->state == SP_CLIENT_DEAD ? cl->death_time : 0;
		v->clients[v->n_clients++] = c;
	}
	free(h);
	return a->failed ? -ENOMEM : 0;
}

static int check(struct spd_arena *a, struct sp_seg *s, Shmpool__CheckReply *v)
{
	struct sp_report r = { .cap = 100 };
	int n;

	r.v = spd_arena_alloc(a, r.cap * sizeof(*r.v));
	v->violations = spd_arena_alloc(a, (r.cap + 1) * sizeof(*v->violations));
	if (!r.v || !v->violations)
		return -ENOMEM;
	n = sp_check(s, SP_CHECK_NOLOCK, &r);
	if (n < 0)
		return n;
	v->nr_violations = r.nr;
	for (unsigned i = 0; i < r.nr && i < r.cap; i++)
		v->violations[v->n_violations++] = str(a, r.v[i].what, sizeof(r.v[i].what) - 1);
	return 0;
}

/**
 * ctl_offline_call() - answer a request from a read-only segment.
 * @s: the segment.  @q: Stats or Check.  @out: the response, as the
 *     daemon would send it (free with shmpool__response__free_unpacked()).
 *
 * Does not sleep (no lock is taken).
 * Return: 0; -EROFS for a request that would change the segment (with a
 * message); -ENOMEM; the checker's negative errno.
 */
int ctl_offline_call(struct sp_seg *s, const Shmpool__Request *q, Shmpool__Response **out)
{
	Shmpool__Response r = SHMPOOL__RESPONSE__INIT;
	Shmpool__StatsReply sv = SHMPOOL__STATS_REPLY__INIT;
	Shmpool__CheckReply cv = SHMPOOL__CHECK_REPLY__INIT;
	struct spd_arena a = { 0 };
	uint8_t *buf;
	size_t len;
	int rc;

	r.id = q->id;
	switch (q->op_case) {
	case SHMPOOL__REQUEST__OP_STATS:
		rc = stats(&a, s, &sv);
		r.payload_case = SHMPOOL__RESPONSE__PAYLOAD_STATS;
		r.stats = &sv;
		break;
	case SHMPOOL__REQUEST__OP_CHECK:
		rc = check(&a, s, &cv);
		r.payload_case = SHMPOOL__RESPONSE__PAYLOAD_CHECK;
		r.check = &cv;
		break;
	default:
		return sp_err(-EROFS, "this needs the daemon: --segment maps the segment "
			      "read-only, for inspection only");
	}
	if (rc) {
		spd_arena_free(&a);
		return rc == -ENOMEM ? sp_err(rc, "out of process memory") : rc;
	}
	len = shmpool__response__get_packed_size(&r);
	buf = malloc(len ? len : 1);
	if (!buf) {
		spd_arena_free(&a);
		return sp_err(-ENOMEM, "out of process memory");
	}
	shmpool__response__pack(&r, buf);
	spd_arena_free(&a);
	*out = shmpool__response__unpack(NULL, len, buf);
	free(buf);
	return *out ? 0 : sp_err(-ENOMEM, "out of process memory");
}
