/* SPDX-License-Identifier: MIT */
/*
 * commands.c - shmpoolctl's read commands: status, pools, pool, caches
 * (slabinfo), buddyinfo, clients, check.  metrics and top have their own
 * files, and so has administration (admin.c).
 *
 * Each renders one Stats response (check: a Check response) as an aligned
 * table (text) or one JSON object (--json), built from the same numbers.
 * The JSON is the stable interface: field names are the protocol's, sizes
 * are bytes, counters are integers.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

#define B(x) ctl_bytes(b_##x, sizeof(b_##x), (x))

/**
 * ctl_usage_error() - print a usage error and the hint.
 * @fmt: printf format.
 *
 * Return: CTL_EXIT_USAGE.
 */
int ctl_usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "shmpoolctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'shmpoolctl --help'.\n");
	return CTL_EXIT_USAGE;
}

static int no_args(const char *cmd, int argc)
{
	if (argc)
		return ctl_usage_error("%s takes no arguments", cmd);
	return 0;
}

/* A Stats response, or the exit code after reporting why not. */
static int stats(struct ctl_src *src, Shmpool__Response **r)
{
	int rc = ctl_stats(src, r);

	if (rc)
		return ctl_report(src, rc, *r, "Stats");
	return 0;
}

/* ---- shared renderers ------------------------------------------------------ */

/**
 * ctl_cache_kind() - "kmalloc", "pool" or "named".
 * @c: the cache.
 *
 * Return: a static string.
 */
const char *ctl_cache_kind(const Shmpool__CacheInfo *c)
{
	return c->kmalloc ? "kmalloc" : c->pool_id ? "pool" : "named";
}

/**
 * ctl_cache_bytes() - memory of a cache's slabs (num_slabs * pagesperslab pages).
 * @c: the cache.
 *
 * Return: bytes.
 */
uint64_t ctl_cache_bytes(const Shmpool__CacheInfo *c)
{
	return (uint64_t)c->num_slabs * c->pagesperslab * SP_PAGE_SIZE;
}

/**
 * ctl_backing_name() - "slab", "pages" or "kmalloc".
 * @b: enum sp_backing.
 *
 * Return: a static string.
 */
const char *ctl_backing_name(uint32_t b)
{
	return sp_backing_name(b);
}

static json_object *mode_json(uint32_t mode)
{
	char m[16];

	snprintf(m, sizeof(m), "%04o", mode & 07777);
	return json_object_new_string(m);
}

/* Pool flags and its cache's debug flags, as words. */
static void flag_words(uint32_t pool_flags, uint32_t cache_flags, const char *w[5], unsigned *n)
{
	*n = 0;
	if (pool_flags & SP_POOL_RECLAIM_ON_EXIT)
		w[(*n)++] = "reclaim_on_exit";
	if (cache_flags & SP_CACHE_HWCACHE_ALIGN)
		w[(*n)++] = "hwcache_align";
	if (cache_flags & SP_CACHE_POISON)
		w[(*n)++] = "poison";
	if (cache_flags & SP_CACHE_REDZONE)
		w[(*n)++] = "redzone";
}

static const Shmpool__CacheInfo *pool_cache(const Shmpool__StatsReply *st,
					    const Shmpool__PoolInfo *p)
{
	for (size_t i = 0; i < st->n_caches; i++)
		if (p->backing == SP_BACK_KMALLOC ? st->caches[i]->id == p->cache_id
						  : st->caches[i]->pool_id == p->id + 1)
			return st->caches[i];
	return NULL;
}

/**
 * ctl_json_pool() - a pool as a JSON object.
 * @p: the pool.  @c: its backing cache, or NULL (its debug flags are then
 *     not known).
 *
 * Return: a new json_object.
 */
json_object *ctl_json_pool(const Shmpool__PoolInfo *p, const Shmpool__CacheInfo *c)
{
	json_object *o = json_object_new_object(), *fl = json_object_new_array();
	const char *w[5];
	unsigned n;

	flag_words(p->flags, c ? c->flags : 0, w, &n);
	for (unsigned i = 0; i < n; i++)
		json_object_array_add(fl, json_object_new_string(w[i]));
	json_object_object_add(o, "name", json_object_new_string(ctl_str(p->name)));
	json_object_object_add(o, "id", json_object_new_int64(p->id));
	json_object_object_add(o, "elem_size", ctl_json_u64(p->elem_size));
	json_object_object_add(o, "min_nr", json_object_new_int64(p->min_nr));
	json_object_object_add(o, "curr_nr", json_object_new_int64(p->curr_nr));
	json_object_object_add(o, "max_nr", json_object_new_int64(p->max_nr));
	json_object_object_add(o, "out", ctl_json_u64(p->nr_out));
	json_object_object_add(o, "total", ctl_json_u64(p->nr_out + p->curr_nr));
	json_object_object_add(o, "bytes", ctl_json_u64((p->nr_out + p->curr_nr) * p->elem_size));
	json_object_object_add(o, "backing", json_object_new_string(ctl_backing_name(p->backing)));
	json_object_object_add(o, "flags", fl);
	json_object_object_add(o, "creator_uid", json_object_new_int64(p->creator_uid));
	json_object_object_add(o, "mode", mode_json(p->mode));
	json_object_object_add(o, "allocs", ctl_json_u64(p->nr_alloc));
	json_object_object_add(o, "frees", ctl_json_u64(p->nr_free));
	json_object_object_add(o, "reserve_allocs", ctl_json_u64(p->nr_reserve_alloc));
	json_object_object_add(o, "failures", ctl_json_u64(p->nr_fail));
	json_object_object_add(o, "waits", ctl_json_u64(p->nr_wait));
	json_object_object_add(o, "waiters", json_object_new_int64(p->nr_waiters));
	if (c)
		json_object_object_add(o, "cache", ctl_json_cache(c));
	return o;
}

/**
 * ctl_json_cache() - a cache as a JSON object (the /proc/slabinfo columns
 * and the counters).
 * @c: the cache.
 *
 * Return: a new json_object.
 */
json_object *ctl_json_cache(const Shmpool__CacheInfo *c)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "name", json_object_new_string(ctl_str(c->name)));
	json_object_object_add(o, "id", json_object_new_int64(c->id));
	json_object_object_add(o, "kind", json_object_new_string(ctl_cache_kind(c)));
	json_object_object_add(o, "active_objs", ctl_json_u64(c->active_objs));
	json_object_object_add(o, "num_objs", ctl_json_u64(c->num_objs));
	json_object_object_add(o, "objsize", json_object_new_int64(c->obj_size));
	json_object_object_add(o, "align", json_object_new_int64(c->align));
	json_object_object_add(o, "objperslab", json_object_new_int64(c->objperslab));
	json_object_object_add(o, "pagesperslab", json_object_new_int64(c->pagesperslab));
	json_object_object_add(o, "active_slabs", json_object_new_int64(c->active_slabs));
	json_object_object_add(o, "num_slabs", json_object_new_int64(c->num_slabs));
	json_object_object_add(o, "bytes", ctl_json_u64(ctl_cache_bytes(c)));
	json_object_object_add(o, "allocs", ctl_json_u64(c->nr_alloc));
	json_object_object_add(o, "frees", ctl_json_u64(c->nr_free));
	json_object_object_add(o, "failures", ctl_json_u64(c->nr_fail));
	json_object_object_add(o, "bad_frees", ctl_json_u64(c->nr_bad_free));
	json_object_object_add(o, "poison_errors", ctl_json_u64(c->nr_poison_err));
	json_object_object_add(o, "redzone_errors", ctl_json_u64(c->nr_redzone_err));
	if (!c->kmalloc && !c->pool_id) {
		json_object_object_add(o, "creator_uid", json_object_new_int64(c->creator_uid));
		json_object_object_add(o, "mode", mode_json(c->mode));
	}
	if (c->pool_id)
		json_object_object_add(o, "pool_id", json_object_new_int64(c->pool_id - 1));
	return o;
}

/* ---- status --------------------------------------------------------------- */

struct totals {
	uint32_t alive, dead, connected;
	struct sp_holdings orphans;	/* held by dead slots */
	uint64_t pool_out, objects;
	uint32_t named, kmalloc, poolc;
};

static void totals(const Shmpool__StatsReply *st, struct totals *t)
{
	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < st->n_clients; i++) {
		const Shmpool__ClientInfo *c = st->clients[i];

		if (strcmp(ctl_str(c->state), "dead") == 0) {
			t->dead++;
			t->orphans.objects += c->objects;
			t->orphans.pool_elems += c->pool_elems;
			t->orphans.large_blocks += c->large_blocks;
			t->orphans.bytes += c->bytes;
		} else {
			t->alive++;
		}
		t->connected += c->connected;
	}
	for (size_t i = 0; i < st->n_pools; i++)
		t->pool_out += st->pools[i]->nr_out;
	for (size_t i = 0; i < st->n_caches; i++) {
		const Shmpool__CacheInfo *c = st->caches[i];

		t->objects += c->active_objs;
		if (c->kmalloc)
			t->kmalloc++;
		else if (c->pool_id)
			t->poolc++;
		else
			t->named++;
	}
}

static json_object *holdings_json(const struct sp_holdings *h)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "objects", ctl_json_u64(h->objects));
	json_object_object_add(o, "pool_elems", ctl_json_u64(h->pool_elems));
	json_object_object_add(o, "large_blocks", ctl_json_u64(h->large_blocks));
	json_object_object_add(o, "bytes", ctl_json_u64(h->bytes));
	return o;
}

static void status_json(const struct ctl_src *src, const Shmpool__StatsReply *st,
			const struct totals *t)
{
	const Shmpool__SegmentInfo *sg = st->segment;
	json_object *o = json_object_new_object(), *d, *s, *pg, *cl;
	uint64_t used = sg->nr_pages >= sg->free_pages ? sg->nr_pages - sg->free_pages : 0;

	if (src->offline) {
		d = NULL;
	} else {
		d = json_object_new_object();
		json_object_object_add(d, "version", json_object_new_string(
							     ctl_str(sg->daemon_version)));
		json_object_object_add(d, "uptime_s", ctl_json_u64(sg->daemon_uptime_s));
		json_object_object_add(d, "walked_caches", ctl_json_u64(sg->nr_walk_caches));
		json_object_object_add(d, "skipped_caches", ctl_json_u64(sg->nr_walk_skips));
		json_object_object_add(d, "walked_pages", ctl_json_u64(sg->nr_walk_blocks));
		json_object_object_add(d, "pid", json_object_new_int64(sg->daemon_pid));
		json_object_object_add(d, "socket", json_object_new_string(
							    sg->socket_path && *sg->socket_path
							    ? sg->socket_path : src->socket_path));
		json_object_object_add(d, "protocol_version",
				       json_object_new_int64(sg->protocol_version));
	}
	json_object_object_add(o, "offline", json_object_new_boolean(src->offline));
	json_object_object_add(o, "daemon", d);
	s = json_object_new_object();
	json_object_object_add(s, "name", json_object_new_string(ctl_str(sg->name)));
	json_object_object_add(s, "size", ctl_json_u64(sg->size));
	json_object_object_add(s, "layout_version", json_object_new_int64(sg->layout_version));
	json_object_object_add(s, "created_time", ctl_json_u64(sg->created_time));
	json_object_object_add(s, "max_order", json_object_new_int64(sg->max_order));
	json_object_object_add(s, "max_clients", json_object_new_int64(sg->max_clients));
	json_object_object_add(s, "max_pools", json_object_new_int64(sg->max_pools));
	json_object_object_add(s, "max_caches", json_object_new_int64(sg->max_caches));
	json_object_object_add(s, "kmalloc_prefill", json_object_new_int64(sg->kmalloc_prefill));
	json_object_object_add(o, "segment", s);
	pg = json_object_new_object();
	json_object_object_add(pg, "page_size", json_object_new_int64(SP_PAGE_SIZE));
	json_object_object_add(pg, "total", ctl_json_u64(sg->nr_pages));
	json_object_object_add(pg, "free", ctl_json_u64(sg->free_pages));
	json_object_object_add(pg, "used", ctl_json_u64(used));
	json_object_object_add(pg, "used_bytes", ctl_json_u64(used * SP_PAGE_SIZE));
	json_object_object_add(o, "pages", pg);
	cl = json_object_new_object();
	json_object_object_add(cl, "alive", json_object_new_int64(t->alive));
	json_object_object_add(cl, "dead", json_object_new_int64(t->dead));
	json_object_object_add(cl, "connected", json_object_new_int64(t->connected));
	json_object_object_add(cl, "orphans", holdings_json(&t->orphans));
	json_object_object_add(o, "clients", cl);
	json_object_object_add(o, "pools", json_object_new_int64((int64_t)st->n_pools));
	json_object_object_add(o, "pool_elems_out", ctl_json_u64(t->pool_out));
	json_object_object_add(o, "named_caches", json_object_new_int64(t->named));
	json_object_object_add(o, "kmalloc_caches", json_object_new_int64(t->kmalloc));
	json_object_object_add(o, "objects", ctl_json_u64(t->objects));
	ctl_json_print(o);
}

/**
 * ctl_cmd_status() - daemon, segment, pages, clients at a glance.
 * @src: the source.  @o: options.  @argc: @argv: the command's operands.
 *
 * Return: the exit code.
 */
int ctl_cmd_status(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv)
{
	Shmpool__Response *r;
	const Shmpool__StatsReply *st;
	const Shmpool__SegmentInfo *sg;
	char b_size[32], b_used[32], b_free_b[32], b_orph[32], pct[16], up[32], when[32];
	uint64_t used, size, free_b;
	struct totals t;
	int rc;

	(void)argv;
	if ((rc = no_args("status", argc)) || (rc = stats(src, &r)))
		return rc;
	st = r->stats;
	sg = st->segment;
	totals(st, &t);
	if (o->json) {
		status_json(src, st, &t);
		shmpool__response__free_unpacked(r, NULL);
		return 0;
	}
	used = (sg->nr_pages >= sg->free_pages ? sg->nr_pages - sg->free_pages : 0) *
	       SP_PAGE_SIZE;
	size = sg->size;
	free_b = sg->free_pages * SP_PAGE_SIZE;
	if (src->offline)
		printf("daemon    (offline: segment read without a daemon)\n");
	else
		printf("daemon    shmpoold %s, pid %d, up %s\n", ctl_str(sg->daemon_version),
		       sg->daemon_pid, ctl_duration(up, sizeof(up), sg->daemon_uptime_s));
	if (!src->offline)
		printf("socket    %s\n", sg->socket_path && *sg->socket_path ? sg->socket_path
									: src->socket_path);
	printf("segment   %s, %s, layout %u, created %s\n", ctl_str(sg->name), B(size),
	       sg->layout_version, ctl_time(when, sizeof(when), sg->created_time));
	printf("memory    %s used (%s), %s free, %u pages of 4 KiB, blocks up to order %u\n",
	       B(used), ctl_pct(pct, sizeof(pct), used, (uint64_t)sg->nr_pages * SP_PAGE_SIZE),
	       B(free_b), sg->nr_pages, sg->max_order);
	printf("clients   %u alive (%u connected), %u dead, of %u slots\n", t.alive, t.connected,
	       t.dead, sg->max_clients);
	{
		uint64_t orph = t.orphans.bytes;

		printf("orphans   %llu objects, %llu pool elements, %llu large blocks (%s) held "
		       "by dead clients\n", (unsigned long long)t.orphans.objects,
		       (unsigned long long)t.orphans.pool_elems,
		       (unsigned long long)t.orphans.large_blocks, B(orph));
	}
	printf("pools     %zu of %u (%llu elements out)\n", st->n_pools, sg->max_pools,
	       (unsigned long long)t.pool_out);
	printf("caches    %u named of %u, %u kmalloc classes, %u pool caches; %llu objects\n",
	       t.named, sg->max_caches, t.kmalloc, t.poolc, (unsigned long long)t.objects);
	shmpool__response__free_unpacked(r, NULL);
	return 0;
}

/* ---- pools ------------------------------------------------------------------- */

/**
 * ctl_cmd_pools() - every pool: reserve, elements out, counters.
 * @src: the source.  @o: options.  @argc: @argv: the command's operands.
 *
 * Return: the exit code.
 */
int ctl_cmd_pools(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv)
{
	static const char *const heads[] = { "NAME", "ELEM", "RESERVE", "OUT", "MAX", "MEMORY",
					     "ALLOCS", "FROM RESERVE", "FAILS", "WAITS",
					     "BACKING", "FLAGS", NULL };
	Shmpool__Response *r;
	const Shmpool__StatsReply *st;
	struct ctl_table t;
	int rc;

	(void)argv;
	if ((rc = no_args("pools", argc)) || (rc = stats(src, &r)))
		return rc;
	st = r->stats;
	if (o->json) {
		json_object *obj = json_object_new_object(), *a = json_object_new_array();

		for (size_t i = 0; i < st->n_pools; i++)
			json_object_array_add(a, ctl_json_pool(st->pools[i],
							   pool_cache(st, st->pools[i])));
		json_object_object_add(obj, "pools", a);
		ctl_json_print(obj);
		shmpool__response__free_unpacked(r, NULL);
		return 0;
	}
	ctl_table_init(&t, heads, "lrrrrrrrrrll");
	for (size_t i = 0; i < st->n_pools; i++) {
		const Shmpool__PoolInfo *p = st->pools[i];
		const Shmpool__CacheInfo *c = pool_cache(st, p);
		char b_elem[32], b_mem[32], flags[96] = "";
		uint64_t elem = p->elem_size, mem = (p->nr_out + p->curr_nr) * p->elem_size;
		const char *w[5];
		unsigned n;

		flag_words(p->flags, c ? c->flags : 0, w, &n);
		for (unsigned k = 0; k < n; k++)
			snprintf(flags + strlen(flags), sizeof(flags) - strlen(flags), "%s%s",
				 k ? "," : "", w[k]);
		ctl_table_row(&t);
		ctl_table_cell(&t, "%s", ctl_str(p->name));
		ctl_table_cell(&t, "%s", B(elem));
		ctl_table_cell(&t, "%u/%u", p->curr_nr, p->min_nr);
		ctl_table_cell(&t, "%llu", (unsigned long long)p->nr_out);
		if (p->max_nr)
			ctl_table_cell(&t, "%u", p->max_nr);
		else
			ctl_table_cell(&t, "-");
		ctl_table_cell(&t, "%s", B(mem));
		ctl_table_cell(&t, "%llu", (unsigned long long)p->nr_alloc);
		ctl_table_cell(&t, "%llu", (unsigned long long)p->nr_reserve_alloc);
		ctl_table_cell(&t, "%llu", (unsigned long long)p->nr_fail);
		ctl_table_cell(&t, "%llu", (unsigned long long)p->nr_wait);
		ctl_table_cell(&t, "%s", ctl_backing_name(p->backing));
		ctl_table_cell(&t, "%s", n ? flags : "-");
	}
	if (st->n_pools)
		ctl_table_print(&t, stdout, 0, -1);
	else
		printf("no pools\n");
	ctl_table_free(&t);
	shmpool__response__free_unpacked(r, NULL);
	return 0;
}

/**
 * ctl_cmd_pool() - one pool in detail, with its backing cache.
 * @src: the source.  @o: options.  @argc: @argv: the pool's name.
 *
 * Return: the exit code (1 when there is no such pool).
 */
int ctl_cmd_pool(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv)
{
	Shmpool__Response *r;
	const Shmpool__StatsReply *st;
	const Shmpool__PoolInfo *p = NULL;
	const Shmpool__CacheInfo *c;
	char b_elem[32], b_mem[32], pct[16];
	uint64_t elem, mem;
	const char *w[5];
	unsigned n;
	int rc;

	if (argc != 1)
		return ctl_usage_error("usage: pool NAME");
	if ((rc = stats(src, &r)))
		return rc;
	st = r->stats;
	for (size_t i = 0; i < st->n_pools && !p; i++)
		if (strcmp(ctl_str(st->pools[i]->name), argv[0]) == 0)
			p = st->pools[i];
	if (!p) {
		fprintf(stderr, "shmpoolctl: no pool named '%s' (shmpoolctl pools lists them)\n",
			argv[0]);
		shmpool__response__free_unpacked(r, NULL);
		return CTL_EXIT_FAIL;
	}
	c = pool_cache(st, p);
	if (o->json) {
		ctl_json_print(ctl_json_pool(p, c));
		shmpool__response__free_unpacked(r, NULL);
		return 0;
	}
	elem = p->elem_size;
	mem = (p->nr_out + p->curr_nr) * p->elem_size;
	flag_words(p->flags, c ? c->flags : 0, w, &n);
	printf("pool          %s (id %u)\n", ctl_str(p->name), p->id);
	printf("elements      %s each, %s backing\n", B(elem), ctl_backing_name(p->backing));
	printf("reserve       %u of min_nr %u (%s full)\n", p->curr_nr, p->min_nr,
	       ctl_pct(pct, sizeof(pct), p->curr_nr, p->min_nr));
	printf("out           %llu elements", (unsigned long long)p->nr_out);
	if (p->max_nr)
		printf(" (max_nr %u: %s of the cap in use)\n", p->max_nr,
		       ctl_pct(pct, sizeof(pct), p->nr_out + p->curr_nr, p->max_nr));
	else
		printf(" (no cap)\n");
	printf("memory        %s in reserve and out\n", B(mem));
	printf("flags        ");
	for (unsigned k = 0; k < n; k++)
		printf(" %s", w[k]);
	printf("%s\n", n ? "" : " -");
	printf("owner         uid %u, mode %04o\n", p->creator_uid, p->mode);
	printf("allocations   %llu (%llu from the reserve), %llu frees, %llu failed, %llu "
	       "waited; %u waiting now\n", (unsigned long long)p->nr_alloc,
	       (unsigned long long)p->nr_reserve_alloc, (unsigned long long)p->nr_free,
	       (unsigned long long)p->nr_fail, (unsigned long long)p->nr_wait, p->nr_waiters);
	if (c) {
		uint64_t cb = ctl_cache_bytes(c);
		char b_cb[32];

		printf("cache         %s%s: %llu/%llu objects active (%s), %u per slab of %u "
		       "pages, %u slabs, %s\n", ctl_str(c->name),
		       p->backing == SP_BACK_KMALLOC ? " (shared with kmalloc and its other pools)"
						     : "",
		       (unsigned long long)c->active_objs, (unsigned long long)c->num_objs,
		       ctl_pct(pct, sizeof(pct), c->active_objs, c->num_objs), c->objperslab,
		       c->pagesperslab, c->num_slabs, ctl_bytes(b_cb, sizeof(b_cb), cb));
	}
	shmpool__response__free_unpacked(r, NULL);
	return 0;
}

/* ---- caches -------------------------------------------------------------------- */

/**
 * ctl_cmd_caches() - every cache, with the /proc/slabinfo columns.
 * @src: the source.  @o: options (--all: empty kmalloc classes too).
 * @argc: @argv: the command's operands.
 *
 * Return: the exit code.
 */
int ctl_cmd_caches(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv)
{
	static const char *const heads[] = { "NAME", "KIND", "ACTIVE_OBJS", "NUM_OBJS", "USE",
					     "OBJSIZE", "OBJPERSLAB", "PAGESPERSLAB",
					     "ACTIVE_SLABS", "NUM_SLABS", "CACHE_SIZE", "ALLOCS",
					     "FAILS", NULL };
	Shmpool__Response *r;
	const Shmpool__StatsReply *st;
	struct ctl_table t;
	unsigned shown = 0, hidden = 0;
	int rc;

	(void)argv;
	if ((rc = no_args("caches", argc)) || (rc = stats(src, &r)))
		return rc;
	st = r->stats;
	if (o->json) {
		json_object *obj = json_object_new_object(), *a = json_object_new_array();

		for (size_t i = 0; i < st->n_caches; i++)
			json_object_array_add(a, ctl_json_cache(st->caches[i]));
		json_object_object_add(obj, "caches", a);
		ctl_json_print(obj);
		shmpool__response__free_unpacked(r, NULL);
		return 0;
	}
	ctl_table_init(&t, heads, "llrrrrrrrrrrr");
	for (size_t i = 0; i < st->n_caches; i++) {
		const Shmpool__CacheInfo *c = st->caches[i];
		char b_sz[32], pct[16];
		uint64_t sz = ctl_cache_bytes(c);

		if (!o->all && c->kmalloc && !c->active_objs) {
			hidden++;
			continue;
		}
		shown++;
		ctl_table_row(&t);
		ctl_table_cell(&t, "%s", ctl_str(c->name));
		ctl_table_cell(&t, "%s", ctl_cache_kind(c));
		ctl_table_cell(&t, "%llu", (unsigned long long)c->active_objs);
		ctl_table_cell(&t, "%llu", (unsigned long long)c->num_objs);
		ctl_table_cell(&t, "%s", ctl_pct(pct, sizeof(pct), c->active_objs, c->num_objs));
		ctl_table_cell(&t, "%u", c->obj_size);
		ctl_table_cell(&t, "%u", c->objperslab);
		ctl_table_cell(&t, "%u", c->pagesperslab);
		ctl_table_cell(&t, "%u", c->active_slabs);
		ctl_table_cell(&t, "%u", c->num_slabs);
		ctl_table_cell(&t, "%s", B(sz));
		ctl_table_cell(&t, "%llu", (unsigned long long)c->nr_alloc);
		ctl_table_cell(&t, "%llu", (unsigned long long)c->nr_fail);
	}
	if (shown)
		ctl_table_print(&t, stdout, 0, -1);
	else
		printf("no caches\n");
	if (hidden)
		printf("(%u kmalloc classes without objects in use not shown: --all shows them)\n", hidden);
	ctl_table_free(&t);
	shmpool__response__free_unpacked(r, NULL);
	return 0;
}

/* ---- buddyinfo ---------------------------------------------------------------------- */

/**
 * ctl_cmd_buddyinfo() - free blocks per order, like /proc/buddyinfo.
 * @src: the source.  @o: options.  @argc: @argv: the command's operands.
 *
 * Return: the exit code.
 */
int ctl_cmd_buddyinfo(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv)
{
	static const char *const heads[] = { "ORDER", "BLOCK", "FREE_BLOCKS", "FREE_PAGES",
					     "FREE", NULL };
	Shmpool__Response *r;
	const Shmpool__SegmentInfo *sg;
	const Shmpool__BuddyInfo *bi;
	struct ctl_table t;
	char pct[16], b_fm[32];
	uint64_t fm;
	int rc;

	(void)argv;
	if ((rc = no_args("buddyinfo", argc)) || (rc = stats(src, &r)))
		return rc;
	sg = r->stats->segment;
	bi = r->stats->buddy;
	if (o->json) {
		json_object *obj = json_object_new_object(), *a = json_object_new_array();

		for (size_t i = 0; i < bi->n_nr_free; i++)
			json_object_array_add(a, json_object_new_int64(bi->nr_free[i]));
		json_object_object_add(obj, "segment", json_object_new_string(ctl_str(sg->name)));
		json_object_object_add(obj, "page_size", json_object_new_int64(SP_PAGE_SIZE));
		json_object_object_add(obj, "max_order", json_object_new_int64(sg->max_order));
		json_object_object_add(obj, "nr_pages", ctl_json_u64(sg->nr_pages));
		json_object_object_add(obj, "free_pages", ctl_json_u64(sg->free_pages));
		json_object_object_add(obj, "free_blocks", a);
		json_object_object_add(obj, "allocs", ctl_json_u64(bi->nr_alloc));
		json_object_object_add(obj, "frees", ctl_json_u64(bi->nr_free_calls));
		json_object_object_add(obj, "failures", ctl_json_u64(bi->nr_fail));
		json_object_object_add(obj, "backing_failures", ctl_json_u64(bi->nr_backing_fail));
		ctl_json_print(obj);
		shmpool__response__free_unpacked(r, NULL);
		return 0;
	}
	/* the kernel's one-line format first, then the same per order */
	printf("segment %s ", ctl_str(sg->name));
	for (size_t i = 0; i < bi->n_nr_free; i++)
		printf(" %6u", bi->nr_free[i]);
	printf("\n\n");
	ctl_table_init(&t, heads, "rrrrr");
	for (size_t i = 0; i < bi->n_nr_free && i < 32; i++) {
		char b_blk[32], b_free_b[32];
		uint64_t blk = (uint64_t)SP_PAGE_SIZE << i, free_b = blk * bi->nr_free[i];

		ctl_table_row(&t);
		ctl_table_cell(&t, "%zu", i);
		ctl_table_cell(&t, "%s", B(blk));
		ctl_table_cell(&t, "%u", bi->nr_free[i]);
		ctl_table_cell(&t, "%llu", (unsigned long long)bi->nr_free[i] << i);
		ctl_table_cell(&t, "%s", B(free_b));
	}
	ctl_table_print(&t, stdout, 0, -1);
	ctl_table_free(&t);
	fm = sg->free_pages * SP_PAGE_SIZE;
	printf("\nfree: %llu of %u pages (%s), %s; %llu allocations, %llu frees, %llu failed "
	       "(%llu: /dev/shm full)\n", (unsigned long long)sg->free_pages, sg->nr_pages,
	       ctl_pct(pct, sizeof(pct), sg->free_pages, sg->nr_pages), B(fm),
	       (unsigned long long)bi->nr_alloc, (unsigned long long)bi->nr_free_calls,
	       (unsigned long long)bi->nr_fail, (unsigned long long)bi->nr_backing_fail);
	shmpool__response__free_unpacked(r, NULL);
	return 0;
}

/* ---- clients -------------------------------------------------------------------------- */

/**
 * ctl_cmd_clients() - every client slot: who, alive or dead, what it holds.
 * @src: the source.  @o: options.  @argc: @argv: the command's operands.
 *
 * What dead slots hold are orphans: allocated, attributed to the slot,
 * until `reclaim SLOT`.
 * Return: the exit code.
 */
int ctl_cmd_clients(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv)
{
	static const char *const heads[] = { "SLOT", "PID", "UID", "NAME", "STATE",
					     "CONNECTED", "OBJECTS", "POOL_ELEMS", "LARGE",
					     "HELD", "SINCE", NULL };
	Shmpool__Response *r;
	const Shmpool__StatsReply *st;
	struct ctl_table t;
	struct totals tt;
	char b_orph[32];
	uint64_t orph;
	int rc;

	(void)argv;
	if ((rc = no_args("clients", argc)) || (rc = stats(src, &r)))
		return rc;
	st = r->stats;
	totals(st, &tt);
	if (o->json) {
		json_object *obj = json_object_new_object(), *a = json_object_new_array();

		for (size_t i = 0; i < st->n_clients; i++) {
			const Shmpool__ClientInfo *c = st->clients[i];
			json_object *x = json_object_new_object();

			json_object_object_add(x, "slot", json_object_new_int64(c->slot));
			json_object_object_add(x, "pid", json_object_new_int64(c->pid));
			json_object_object_add(x, "uid", json_object_new_int64(c->uid));
			json_object_object_add(x, "gid", json_object_new_int64(c->gid));
			json_object_object_add(x, "name", json_object_new_string(ctl_str(c->name)));
			json_object_object_add(x, "state",
					       json_object_new_string(ctl_str(c->state)));
			json_object_object_add(x, "connected",
					       json_object_new_boolean(c->connected));
			json_object_object_add(x, "self",
					       json_object_new_boolean(c->slot == src->slot));
			json_object_object_add(x, "objects", ctl_json_u64(c->objects));
			json_object_object_add(x, "pool_elems", ctl_json_u64(c->pool_elems));
			json_object_object_add(x, "large_blocks", ctl_json_u64(c->large_blocks));
			json_object_object_add(x, "bytes", ctl_json_u64(c->bytes));
			json_object_object_add(x, "attach_time", ctl_json_u64(c->attach_time));
			json_object_object_add(x, "death_time", ctl_json_u64(c->death_time));
			json_object_array_add(a, x);
		}
		json_object_object_add(obj, "clients", a);
		json_object_object_add(obj, "alive", json_object_new_int64(tt.alive));
		json_object_object_add(obj, "dead", json_object_new_int64(tt.dead));
		json_object_object_add(obj, "orphans", holdings_json(&tt.orphans));
		ctl_json_print(obj);
		shmpool__response__free_unpacked(r, NULL);
		return 0;
	}
	ctl_table_init(&t, heads, "rrrllrrrrrrl");
	for (size_t i = 0; i < st->n_clients; i++) {
		const Shmpool__ClientInfo *c = st->clients[i];
		char b_held[32], when[32];
		uint64_t held = c->bytes;
		bool dead = strcmp(ctl_str(c->state), "dead") == 0;

		ctl_table_row(&t);
		ctl_table_cell(&t, "%u%s", c->slot, c->slot == src->slot ? "*" : "");
		ctl_table_cell(&t, "%d", c->pid);
		ctl_table_cell(&t, "%u", c->uid);
		ctl_table_cell(&t, "%s", ctl_str(c->name));
		ctl_table_cell(&t, "%s", ctl_str(c->state));
		ctl_table_cell(&t, "%s", src->offline ? "?" : c->connected ? "yes" : "no");
		ctl_table_cell(&t, "%llu", (unsigned long long)c->objects);
		ctl_table_cell(&t, "%llu", (unsigned long long)c->pool_elems);
		ctl_table_cell(&t, "%llu", (unsigned long long)c->large_blocks);
		ctl_table_cell(&t, "%s", B(held));
		ctl_table_cell(&t, "%s%s", dead ? "died " : "",
			       ctl_time(when, sizeof(when), dead ? c->death_time : c->attach_time));
	}
	if (st->n_clients)
		ctl_table_print(&t, stdout, 0, -1);
	else
		printf("no clients\n");
	ctl_table_free(&t);
	orph = tt.orphans.bytes;
	printf("\n%u alive, %u dead; orphans (held by dead clients until `shmpoolctl reclaim "
	       "SLOT`): %llu objects, %llu pool elements, %llu large blocks, %s\n", tt.alive,
	       tt.dead, (unsigned long long)tt.orphans.objects,
	       (unsigned long long)tt.orphans.pool_elems,
	       (unsigned long long)tt.orphans.large_blocks, B(orph));
	if (src->slot != UINT32_MAX)
		printf("* this shmpoolctl\n");
	shmpool__response__free_unpacked(r, NULL);
	return 0;
}

/* ---- check ----------------------------------------------------------------------------- */

/**
 * ctl_cmd_check() - run the whole-segment checker.
 * @src: the source (the daemon stops the world; offline reads without locks).
 * @o: options.  @argc: @argv: the command's operands.
 *
 * Return: 0 when consistent, 1 with the violations listed, or the exit
 * code of a failure.
 */
int ctl_cmd_check(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__Check ck = SHMPOOL__CHECK__INIT;
	Shmpool__Response *r;
	const Shmpool__CheckReply *c;
	int rc;

	(void)argv;
	if ((rc = no_args("check", argc)))
		return rc;
	q.op_case = SHMPOOL__REQUEST__OP_CHECK;
	q.check = &ck;
	rc = ctl_call(src, &q, &r);
	if (rc == 0 && r->payload_case != SHMPOOL__RESPONSE__PAYLOAD_CHECK)
		rc = sp_err(-EPROTO, "the daemon answered Check without a CheckReply");
	if (rc) {
		rc = ctl_report(src, rc, r, "check");
		if (r)
			shmpool__response__free_unpacked(r, NULL);
		return rc;
	}
	c = r->check;
	if (o->json) {
		json_object *obj = json_object_new_object(), *a = json_object_new_array();

		for (size_t i = 0; i < c->n_violations; i++)
			json_object_array_add(a, json_object_new_string(ctl_str(c->violations[i])));
		json_object_object_add(obj, "ok", json_object_new_boolean(c->nr_violations == 0));
		json_object_object_add(obj, "nr_violations",
				       json_object_new_int64(c->nr_violations));
		json_object_object_add(obj, "violations", a);
		ctl_json_print(obj);
	} else if (!c->nr_violations) {
		printf("segment is consistent: no violations\n");
	} else {
		printf("%u violation%s%s:\n", c->nr_violations, c->nr_violations == 1 ? "" : "s",
		       c->n_violations < c->nr_violations ? " (the first ones)" : "");
		for (size_t i = 0; i < c->n_violations; i++)
			printf("  %s\n", ctl_str(c->violations[i]));
	}
	rc = c->nr_violations ? CTL_EXIT_FAIL : CTL_EXIT_OK;
	shmpool__response__free_unpacked(r, NULL);
	return rc;
}
