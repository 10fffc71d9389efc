/* SPDX-License-Identifier: MIT */
/*
 * dump.c - human-readable views of a segment, in the kernel's formats:
 * /proc/buddyinfo, /proc/slabinfo, plus pools and the client table.
 *
 * Read without locks (a snapshot, possibly torn while others allocate) and
 * bounds-checked like the checker, so they are safe on a read-only or
 * corrupted segment.
 */
#include <stdio.h>

#include "core.h"

static const char *client_state(uint32_t st)
{
	return st == SP_CLIENT_ALIVE ? "alive" : st == SP_CLIENT_DEAD ? "dead" : "free";
}

/**
 * sp_dump_buddyinfo() - free blocks per order, like /proc/buddyinfo.
 * @s: segment.  @f: output.
 *
 * Does not sleep.
 */
void sp_dump_buddyinfo(struct sp_seg *s, FILE *f)
{
	struct sp_buddy *z = &s->hdr->buddy;
	unsigned max = s->geo.max_order <= SP_MAX_ORDER_LIMIT ? s->geo.max_order : 0;

	fprintf(f, "order      ");
	for (unsigned o = 0; o <= max; o++)
		fprintf(f, "%7u", o);
	fprintf(f, "\nfree blocks");
	for (unsigned o = 0; o <= max; o++)
		fprintf(f, "%7u", z->nr_free[o]);
	fprintf(f, "\nfree pages %llu of %u (%.1f%%)\n", (unsigned long long)z->free_pages,
		s->geo.nr_pages, s->geo.nr_pages ? 100.0 * z->free_pages / s->geo.nr_pages : 0);
}

/**
 * sp_dump_slabinfo() - every cache, like /proc/slabinfo.
 * @s: segment.  @f: output.  @all: include empty kmalloc classes.
 *
 * Does not sleep.
 */
void sp_dump_slabinfo(struct sp_seg *s, FILE *f, bool all)
{
	fprintf(f, "%-24s %10s %10s %8s %10s %12s %12s %9s %9s %9s %6s\n", "name", "active_objs",
		"num_objs", "objsize", "objperslab", "pagesperslab", "active_slabs", "num_slabs",
		"allocs", "frees", "fails");
	for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++) {
		struct sp_cache *c = &sp_caches(s)[i];
		uint64_t na, nf;

		if (c->state != SP_DESC_LIVE || (!all && !c->active_objs && (c->flags & SP_CACHE_KMALLOC)))
			continue;
		sp_cache_counters(s, c, &na, &nf); /* with what magazines did since */
		fprintf(f, "%-24.63s %10llu %10llu %8u %10u %12u %12u %9u %9llu %9llu %6llu\n",
			c->name, (unsigned long long)sp_cache_in_use(s, c),
			(unsigned long long)c->total_objs, c->obj_size, c->objperslab,
			c->order <= 31 ? 1u << c->order : 0,
			c->nr_list[SP_LIST_PARTIAL & 3] + c->nr_list[SP_LIST_FULL & 3], c->nr_slabs,
			(unsigned long long)na, (unsigned long long)nf,
			(unsigned long long)c->nr_fail);
	}
}

/**
 * sp_dump_pools() - every pool with its reserve and counters.
 * @s: segment.  @f: output.
 *
 * Does not sleep.
 */
void sp_dump_pools(struct sp_seg *s, FILE *f)
{
	fprintf(f, "%-24s %9s %7s %7s %7s %7s %9s %9s %8s\n", "pool", "elem_size", "min_nr",
		"curr_nr", "max_nr", "out", "allocs", "reserve", "waits");
	for (uint32_t i = 0; i < s->geo.max_pools; i++) {
		struct sp_pool *p = &sp_pools(s)[i];

		if (p->state != SP_DESC_LIVE)
			continue;
		fprintf(f, "%-24.63s %9llu %7u %7u %7u %7llu %9llu %9llu %8llu\n", p->name,
			(unsigned long long)p->elem_size, p->min_nr, p->curr_nr, p->max_nr,
			(unsigned long long)sp_pool_nr_out(s, p), (unsigned long long)p->nr_alloc,
			(unsigned long long)p->nr_reserve_alloc, (unsigned long long)p->nr_wait);
	}
}

/**
 * sp_dump_clients() - every used slot of the client table.
 * @s: segment.  @f: output.
 *
 * Does not sleep.
 */
void sp_dump_clients(struct sp_seg *s, FILE *f)
{
	fprintf(f, "%-5s %-8s %-6s %s\n", "slot", "pid", "state", "name");
	for (uint32_t i = 0; i < s->geo.max_clients; i++) {
		struct sp_client *cl = &sp_clients(s)[i];

		if (cl->state == SP_CLIENT_FREE)
			continue;
		fprintf(f, "%-5u %-8u %-6s %.31s\n", i, cl->pid, client_state(cl->state), cl->name);
	}
}
