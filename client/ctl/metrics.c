/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - `shmpoolctl metrics`: one Stats reply in the Prometheus text
 * exposition format (version 0.0.4), for node_exporter's textfile
 * collector (`shmpoolctl metrics > dir/shmpool.prom.$$ && mv ...`) or a
 * scraper that runs a command.
 *
 * Every family is written as "# HELP", "# TYPE", then all its samples
 * together (the format requires a family's samples to be contiguous).
 * Counters end in _total, sizes in _bytes, times in _seconds.  Label values
 * (pool, cache and client names) are escaped: backslash, double quote and
 * newline.  Names come from the segment and are already printable ASCII.
 *
 * When the daemon cannot be reached main.c prints only "shmpool_up 0"
 * (and exits 3), so a textfile collector still sees the outage.
 */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

/* @v with ", \ and newline escaped into @buf. */
static const char *esc(char *buf, size_t size, const char *v)
{
	size_t n = 0;

	for (; v && *v && n + 3 < size; v++) {
		if (*v == '\\' || *v == '"') {
			buf[n++] = '\\';
			buf[n++] = *v;
		} else if (*v == '\n') {
			buf[n++] = '\\';
			buf[n++] = 'n';
		} else {
			buf[n++] = *v;
		}
	}
	buf[n] = '\0';
	return buf;
}

static void family(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One family with one sample per pool. */
static void pools_u64(const Shmpool__StatsReply *st, const char *name, const char *type,
		      const char *help, uint64_t (*get)(const Shmpool__PoolInfo *))
{
	char e[160];

	if (!st->n_pools)
		return;
	family(name, type, help);
	for (size_t i = 0; i < st->n_pools; i++)
		printf("%s{pool=\"%s\"} %llu\n", name, esc(e, sizeof(e), st->pools[i]->name),
		       (unsigned long long)get(st->pools[i]));
}

/* One family with one sample per cache. */
static void caches_u64(const Shmpool__StatsReply *st, const char *name, const char *type,
		       const char *help, uint64_t (*get)(const Shmpool__CacheInfo *))
{
	char e[160];

	if (!st->n_caches)
		return;
	family(name, type, help);
	for (size_t i = 0; i < st->n_caches; i++)
		printf("%s{cache=\"%s\",kind=\"%s\"} %llu\n", name,
		       esc(e, sizeof(e), st->caches[i]->name), ctl_cache_kind(st->caches[i]),
		       (unsigned long long)get(st->caches[i]));
}

/* One family with one sample per client slot. */
static void clients_u64(const Shmpool__StatsReply *st, const char *name, const char *help,
			uint64_t (*get)(const Shmpool__ClientInfo *))
{
	char e[80];

	if (!st->n_clients)
		return;
	family(name, "gauge", help);
	for (size_t i = 0; i < st->n_clients; i++) {
		const Shmpool__ClientInfo *c = st->clients[i];

		printf("%s{slot=\"%u\",pid=\"%d\",name=\"%s\",state=\"%s\"} %llu\n", name, c->slot,
		       c->pid, esc(e, sizeof(e), c->name), ctl_str(c->state),
		       (unsigned long long)get(c));
	}
}

#define GETTER(type, fn, expr) \
	static uint64_t fn(const type *x) { return (uint64_t)(expr); }

GETTER(Shmpool__PoolInfo, p_elem, x->elem_size)
GETTER(Shmpool__PoolInfo, p_min, x->min_nr)
GETTER(Shmpool__PoolInfo, p_max, x->max_nr)
GETTER(Shmpool__PoolInfo, p_curr, x->curr_nr)
GETTER(Shmpool__PoolInfo, p_out, x->nr_out)
GETTER(Shmpool__PoolInfo, p_waiters, x->nr_waiters)
GETTER(Shmpool__PoolInfo, p_alloc, x->nr_alloc)
GETTER(Shmpool__PoolInfo, p_free, x->nr_free)
GETTER(Shmpool__PoolInfo, p_res, x->nr_reserve_alloc)
GETTER(Shmpool__PoolInfo, p_fail, x->nr_fail)
GETTER(Shmpool__PoolInfo, p_wait, x->nr_wait)
GETTER(Shmpool__CacheInfo, c_active, x->active_objs)
GETTER(Shmpool__CacheInfo, c_objs, x->num_objs)
GETTER(Shmpool__CacheInfo, c_size, x->obj_size)
GETTER(Shmpool__CacheInfo, c_slabs, x->num_slabs)
GETTER(Shmpool__CacheInfo, c_aslabs, x->active_slabs)
GETTER(Shmpool__CacheInfo, c_bytes, ctl_cache_bytes(x))
GETTER(Shmpool__CacheInfo, c_alloc, x->nr_alloc)
GETTER(Shmpool__CacheInfo, c_free, x->nr_free)
GETTER(Shmpool__CacheInfo, c_fail, x->nr_fail)
GETTER(Shmpool__CacheInfo, c_bad, x->nr_bad_free)
GETTER(Shmpool__ClientInfo, k_objs, x->objects)
GETTER(Shmpool__ClientInfo, k_elems, x->pool_elems)
GETTER(Shmpool__ClientInfo, k_large, x->large_blocks)
GETTER(Shmpool__ClientInfo, k_bytes, x->bytes)

static void segment_metrics(const struct ctl_src *src, const Shmpool__StatsReply *st)
{
	const Shmpool__SegmentInfo *sg = st->segment;
	const Shmpool__BuddyInfo *bi = st->buddy;
	uint64_t used = sg->nr_pages >= sg->free_pages ? sg->nr_pages - sg->free_pages : 0;
	uint32_t alive = 0, dead = 0, conn = 0;
	uint64_t orph_objs = 0, orph_bytes = 0;
	char e[300];

	family("shmpool_up", "gauge", "1 when the segment could be read.");
	printf("shmpool_up 1\n");
	family("shmpool_info", "gauge", "Segment and daemon identity (always 1).");
	printf("shmpool_info{segment=\"%s\",layout=\"%u\",daemon_version=\"%s\",offline=\"%s\"} 1\n",
	       esc(e, sizeof(e), sg->name), sg->layout_version, ctl_str(sg->daemon_version),
	       src->offline ? "true" : "false");
	if (!src->offline) {
		family("shmpool_daemon_uptime_seconds", "gauge", "Seconds since shmpoold started.");
		printf("shmpool_daemon_uptime_seconds %llu\n",
		       (unsigned long long)sg->daemon_uptime_s);
		family("shmpool_daemon_slot_walks_total", "counter",
		       "Walks for released or counted slots: caches walked, caches skipped by the "
		       "slot's held bound, page tables walked.");
		printf("shmpool_daemon_slot_walks_total{what=\"cache\"} %llu\n",
		       (unsigned long long)sg->nr_walk_caches);
		printf("shmpool_daemon_slot_walks_total{what=\"cache_skipped\"} %llu\n",
		       (unsigned long long)sg->nr_walk_skips);
		printf("shmpool_daemon_slot_walks_total{what=\"pages\"} %llu\n",
		       (unsigned long long)sg->nr_walk_blocks);
	}
	family("shmpool_segment_size_bytes", "gauge", "Size of the shared-memory segment.");
	printf("shmpool_segment_size_bytes %llu\n", (unsigned long long)sg->size);
	family("shmpool_pages", "gauge", "Data pages of 4 KiB by state.");
	printf("shmpool_pages{state=\"free\"} %llu\n", (unsigned long long)sg->free_pages);
	printf("shmpool_pages{state=\"used\"} %llu\n", (unsigned long long)used);
	family("shmpool_buddy_free_blocks", "gauge", "Free buddy blocks per order (/proc/buddyinfo).");
	for (size_t o = 0; o < bi->n_nr_free; o++)
		printf("shmpool_buddy_free_blocks{order=\"%zu\"} %u\n", o, bi->nr_free[o]);
	family("shmpool_buddy_allocations_total", "counter", "Buddy block allocations.");
	printf("shmpool_buddy_allocations_total %llu\n", (unsigned long long)bi->nr_alloc);
	family("shmpool_buddy_frees_total", "counter", "Buddy block frees.");
	printf("shmpool_buddy_frees_total %llu\n", (unsigned long long)bi->nr_free_calls);
	family("shmpool_buddy_failures_total", "counter", "Buddy allocations that failed.");
	printf("shmpool_buddy_failures_total %llu\n", (unsigned long long)bi->nr_fail);
	family("shmpool_buddy_backing_failures_total", "counter",
	       "Allocations refused because /dev/shm could not back them.");
	printf("shmpool_buddy_backing_failures_total %llu\n",
	       (unsigned long long)bi->nr_backing_fail);

	for (size_t i = 0; i < st->n_clients; i++) {
		const Shmpool__ClientInfo *c = st->clients[i];

		if (strcmp(ctl_str(c->state), "dead") == 0) {
			dead++;
			orph_objs += c->objects;
			orph_bytes += c->bytes;
		} else {
			alive++;
		}
		conn += c->connected;
	}
	family("shmpool_client_slots", "gauge", "Size of the client table.");
	printf("shmpool_client_slots %u\n", sg->max_clients);
	family("shmpool_clients", "gauge", "Used client slots by state.");
	printf("shmpool_clients{state=\"alive\"} %u\n", alive);
	printf("shmpool_clients{state=\"dead\"} %u\n", dead);
	if (!src->offline) {
		family("shmpool_clients_connected", "gauge", "Client slots with a live connection.");
		printf("shmpool_clients_connected %u\n", conn);
	}
	family("shmpool_orphaned_objects", "gauge",
	       "Objects and blocks held by dead clients, until reclaimed.");
	printf("shmpool_orphaned_objects %llu\n", (unsigned long long)orph_objs);
	family("shmpool_orphaned_bytes", "gauge", "Bytes held by dead clients, until reclaimed.");
	printf("shmpool_orphaned_bytes %llu\n", (unsigned long long)orph_bytes);
	family("shmpool_pools", "gauge", "Live pools.");
	printf("shmpool_pools %zu\n", st->n_pools);
}

/**
 * ctl_cmd_metrics() - print the Prometheus text exposition format.
 * @src: the source.  @o: options.  @argc: @argv: the command's operands.
 *
 * Return: the exit code.
 */
int ctl_cmd_metrics(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv)
{
	Shmpool__Response *r;
	const Shmpool__StatsReply *st;
	int rc;

	(void)argv;
	if (argc)
		return ctl_usage_error("metrics takes no arguments");
	if (o->json)
		return ctl_usage_error("metrics prints the Prometheus text format; --json does "
				       "not apply (status --json and the others give JSON)");
	rc = ctl_stats(src, &r);
	if (rc) {
		rc = ctl_report(src, rc, r, "Stats");
		if (r)
			shmpool__response__free_unpacked(r, NULL);
		printf("# HELP shmpool_up 1 when the segment could be read.\n"
		       "# TYPE shmpool_up gauge\nshmpool_up 0\n");
		return rc;
	}
	st = r->stats;
	segment_metrics(src, st);
	pools_u64(st, "shmpool_pool_elem_size_bytes", "gauge", "Element size of the pool.", p_elem);
	pools_u64(st, "shmpool_pool_min_nr", "gauge", "Elements the pool keeps in reserve.", p_min);
	pools_u64(st, "shmpool_pool_max_nr", "gauge", "Cap on reserve + out (0: none).", p_max);
	pools_u64(st, "shmpool_pool_reserve_elements", "gauge", "Elements in reserve now.",
		  p_curr);
	pools_u64(st, "shmpool_pool_out_elements", "gauge", "Elements allocated now.", p_out);
	pools_u64(st, "shmpool_pool_waiters", "gauge", "Processes sleeping for an element.",
		  p_waiters);
	pools_u64(st, "shmpool_pool_allocations_total", "counter", "Element allocations.",
		  p_alloc);
	pools_u64(st, "shmpool_pool_frees_total", "counter", "Element frees.", p_free);
	pools_u64(st, "shmpool_pool_reserve_allocations_total", "counter",
		  "Allocations served from the reserve.", p_res);
	pools_u64(st, "shmpool_pool_failures_total", "counter", "Allocations that failed.",
		  p_fail);
	pools_u64(st, "shmpool_pool_waits_total", "counter", "Allocations that had to sleep.",
		  p_wait);
	caches_u64(st, "shmpool_cache_active_objects", "gauge", "Objects in use (active_objs).",
		   c_active);
	caches_u64(st, "shmpool_cache_objects", "gauge", "Object capacity of the slabs (num_objs).",
		   c_objs);
	caches_u64(st, "shmpool_cache_object_size_bytes", "gauge", "Object size (objsize).",
		   c_size);
	caches_u64(st, "shmpool_cache_slabs", "gauge", "Slabs (num_slabs).", c_slabs);
	caches_u64(st, "shmpool_cache_active_slabs", "gauge", "Slabs in use (active_slabs).",
		   c_aslabs);
	caches_u64(st, "shmpool_cache_size_bytes", "gauge", "Memory of the cache's slabs.",
		   c_bytes);
	caches_u64(st, "shmpool_cache_allocations_total", "counter", "Object allocations.",
		   c_alloc);
	caches_u64(st, "shmpool_cache_frees_total", "counter", "Object frees.", c_free);
	caches_u64(st, "shmpool_cache_failures_total", "counter", "Allocations that failed.",
		   c_fail);
	caches_u64(st, "shmpool_cache_bad_frees_total", "counter",
		   "Double, foreign or mid-object frees refused.", c_bad);
	clients_u64(st, "shmpool_client_objects", "Objects a client slot holds (orphans when dead).",
		    k_objs);
	clients_u64(st, "shmpool_client_pool_elements", "Pool elements a client slot holds.",
		    k_elems);
	clients_u64(st, "shmpool_client_large_blocks", "Large blocks a client slot holds.",
		    k_large);
	clients_u64(st, "shmpool_client_bytes", "Bytes a client slot holds.", k_bytes);
	shmpool__response__free_unpacked(r, NULL);
	return 0;
}
