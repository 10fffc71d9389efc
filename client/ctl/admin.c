/* SPDX-License-Identifier: MIT */
/*
 * admin.c - pool administration: create, destroy, resize, reclaim.
 *
 * Each sends one request; the daemon decides (permissions: the creator or
 * root; destroy refuses while elements are out; reclaim takes only a dead
 * slot) and answers with the new state, printed as a line or, with
 * --json, as the object the read commands print.  Refusals exit 1 with
 * the daemon's message and error name; a malformed command line exits 2
 * before anything is sent.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "shmpoold.h" /* spd_parse_u64, spd_parse_size */

#define B(x) ctl_bytes(b_##x, sizeof(b_##x), (x))

/* Send an admin request; print the failure; return the exit code. */
static int admin(struct ctl_src *src, Shmpool__Request *q, Shmpool__Response **r,
		 const char *what)
{
	int rc = ctl_call(src, q, r);

	if (rc) {
		rc = ctl_report(src, rc, *r, what);
		if (*r)
			shmpool__response__free_unpacked(*r, NULL);
		*r = NULL;
		return rc;
	}
	return 0;
}

static void print_pool_line(const char *verb, const Shmpool__PoolInfo *p)
{
	char b_elem[32];
	uint64_t elem = p->elem_size;

	printf("%s pool %s: %s elements, reserve %u/%u, %llu out, max_nr %u, %s backing\n",
	       verb, ctl_str(p->name), B(elem), p->curr_nr, p->min_nr,
	       (unsigned long long)p->nr_out, p->max_nr, ctl_backing_name(p->backing));
}

/* A count (at most @max), or with @size a size with an optional K/M/G. */
static int parse_num(const char *s, uint64_t max, uint64_t *out, bool size)
{
	uint64_t v;

	if ((size ? spd_parse_size(s, &v) : spd_parse_u64(s, &v)) || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/**
 * ctl_cmd_create() - create a pool: NAME ELEM_SIZE [MIN_NR].
 * @src: the daemon.  @o: options (--max, --pages or --kmalloc, flags, --align,
 * --mode).
 * @argc: @argv: the operands.
 *
 * Return: the exit code (1 when the daemon refuses: the name exists, ...).
 */
int ctl_cmd_create(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__PoolCreate pc = SHMPOOL__POOL_CREATE__INIT;
	Shmpool__Response *r;
	uint64_t size, min_nr = 0;
	int rc;

	if (argc < 2 || argc > 3)
		return ctl_usage_error("usage: create NAME ELEM_SIZE [MIN_NR] [--max N] "
				       "[--pages | --kmalloc] "
				       "[--reclaim-on-exit] [--poison] [--redzone] "
				       "[--hwcache-align] [--align N] [--mode MODE]");
	if (parse_num(argv[1], 1ull << 30, &size, true) || !size)
		return ctl_usage_error("ELEM_SIZE '%s': expected N, NK or NM (1 byte to 1G)",
				       argv[1]);
	if (argc == 3 && parse_num(argv[2], UINT32_MAX, &min_nr, false))
		return ctl_usage_error("MIN_NR '%s': expected a number", argv[2]);
	pc.name = argv[0];
	pc.elem_size = size;
	pc.min_nr = (uint32_t)min_nr;
	pc.max_nr = o->max_nr;
	if (o->pages && o->kmalloc)
		return ctl_usage_error("--pages and --kmalloc: a pool has one backing");
	pc.backing = o->pages ? SP_BACK_PAGES : o->kmalloc ? SP_BACK_KMALLOC : SP_BACK_SLAB;
	pc.flags = o->pool_flags;
	pc.cache_flags = o->cache_flags;
	pc.align = o->align;
	pc.mode = o->mode;
	q.op_case = SHMPOOL__REQUEST__OP_POOL_CREATE;
	q.pool_create = &pc;
	if ((rc = admin(src, &q, &r, "create")))
		return rc;
	if (r->payload_case == SHMPOOL__RESPONSE__PAYLOAD_POOL) {
		if (o->json)
			ctl_json_print(ctl_json_pool(r->pool, NULL));
		else
			print_pool_line("created", r->pool);
	}
	shmpool__response__free_unpacked(r, NULL);
	return 0;
}

/**
 * ctl_cmd_destroy() - destroy a pool (refused while elements are out).
 * @src: the daemon.  @o: options.  @argc: @argv: the pool's name.
 *
 * Return: the exit code.
 */
int ctl_cmd_destroy(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__NameRef n = SHMPOOL__NAME_REF__INIT;
	Shmpool__Response *r;
	int rc;

	if (argc != 1)
		return ctl_usage_error("usage: destroy NAME");
	n.name = argv[0];
	q.op_case = SHMPOOL__REQUEST__OP_POOL_DESTROY;
	q.pool_destroy = &n;
	if ((rc = admin(src, &q, &r, "destroy")))
		return rc;
	if (o->json) {
		json_object *obj = json_object_new_object();

		json_object_object_add(obj, "destroyed", json_object_new_string(argv[0]));
		ctl_json_print(obj);
	} else {
		printf("destroyed pool %s\n", argv[0]);
	}
	shmpool__response__free_unpacked(r, NULL);
	return 0;
}

/**
 * ctl_cmd_resize() - change a pool's reserve: NAME MIN_NR.
 * @src: the daemon.  @o: options.  @argc: @argv: the operands.
 *
 * Return: the exit code.
 */
int ctl_cmd_resize(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__PoolResize pr = SHMPOOL__POOL_RESIZE__INIT;
	Shmpool__Response *r;
	uint64_t min_nr;
	int rc;

	if (argc != 2)
		return ctl_usage_error("usage: resize NAME MIN_NR");
	if (parse_num(argv[1], UINT32_MAX, &min_nr, false))
		return ctl_usage_error("MIN_NR '%s': expected a number", argv[1]);
	pr.name = argv[0];
	pr.min_nr = (uint32_t)min_nr;
	q.op_case = SHMPOOL__REQUEST__OP_POOL_RESIZE;
	q.pool_resize = &pr;
	if ((rc = admin(src, &q, &r, "resize")))
		return rc;
	if (r->payload_case == SHMPOOL__RESPONSE__PAYLOAD_POOL) {
		if (o->json)
			ctl_json_print(ctl_json_pool(r->pool, NULL));
		else
			print_pool_line("resized", r->pool);
	}
	shmpool__response__free_unpacked(r, NULL);
	return 0;
}

/**
 * ctl_cmd_reclaim() - free what a dead client slot still holds: SLOT.
 * @src: the daemon.  @o: options.  @argc: @argv: the slot.
 *
 * Return: the exit code (1 for a free or live slot).
 */
int ctl_cmd_reclaim(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__Reclaim rq = SHMPOOL__RECLAIM__INIT;
	Shmpool__Response *r;
	const Shmpool__ReclaimReply *v;
	uint64_t slot;
	int rc;

	if (argc != 1)
		return ctl_usage_error("usage: reclaim SLOT");
	if (parse_num(argv[0], UINT32_MAX, &slot, false))
		return ctl_usage_error("SLOT '%s': expected a slot number (shmpoolctl clients)",
				       argv[0]);
	rq.slot = (uint32_t)slot;
	q.op_case = SHMPOOL__REQUEST__OP_RECLAIM;
	q.reclaim = &rq;
	if ((rc = admin(src, &q, &r, "reclaim")))
		return rc;
	v = r->payload_case == SHMPOOL__RESPONSE__PAYLOAD_RECLAIM ? r->reclaim : NULL;
	if (o->json) {
		json_object *obj = json_object_new_object();

		json_object_object_add(obj, "slot", json_object_new_int64((int64_t)slot));
		json_object_object_add(obj, "objects", ctl_json_u64(v ? v->objects : 0));
		json_object_object_add(obj, "pool_elems", ctl_json_u64(v ? v->pool_elems : 0));
		json_object_object_add(obj, "large_blocks",
				       ctl_json_u64(v ? v->large_blocks : 0));
		json_object_object_add(obj, "bytes", ctl_json_u64(v ? v->bytes : 0));
		ctl_json_print(obj);
	} else {
		char b_by[32];
		uint64_t by = v ? v->bytes : 0;

		printf("reclaimed slot %llu: %llu objects (%llu pool elements), %llu large blocks, "
		       "%s\n", (unsigned long long)slot,
		       (unsigned long long)(v ? v->objects : 0),
		       (unsigned long long)(v ? v->pool_elems : 0),
		       (unsigned long long)(v ? v->large_blocks : 0), B(by));
	}
	shmpool__response__free_unpacked(r, NULL);
	return 0;
}
