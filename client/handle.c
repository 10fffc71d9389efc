/* SPDX-License-Identifier: MIT */
/*
 * handle.c - what the pool and cache handles (pool.c, cache.c) share: the
 * checks of a name argument and of an object handed back, the requests
 * answered with a handle or naming one, and the bulk alloc and free loops
 * over a handle's single-object calls.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>

#include "internal.h"

int shmp__name_args(shmp_client *c, const char *name, const char *kind)
{
	int rc = shmp__usable(c);

	if (rc)
		return rc;
	if (!name)
		return sp_err(-EINVAL, "NULL %s name", kind);
	return sp_name_check(name);
}

int shmp__rpc_handle(shmp_client *c, Shmpool__Request *req, shmp__from_info_fn from_info, void *out)
{
	Shmpool__Response *resp;
	int rc = shmp__rpc(c, req, &resp);

	if (rc)
		return rc;
	rc = from_info(c, resp, out);
	shmpool__response__free_unpacked(resp, NULL);
	return rc;
}

int shmp__name_request(shmp_client *c, const char *name, const char *kind,
		       Shmpool__Request__OpCase op, shmp__from_info_fn from_info, void *out)
{
	Shmpool__Request req = SHMPOOL__REQUEST__INIT;
	Shmpool__NameRef ref = SHMPOOL__NAME_REF__INIT;
	Shmpool__Response *resp;
	int rc = shmp__name_args(c, name, kind);

	if (rc)
		return rc;
	ref.name = (char *)name;
	req.op_case = op;
	switch (op) {
	case SHMPOOL__REQUEST__OP_POOL_OPEN:
		req.pool_open = &ref;
		break;
	case SHMPOOL__REQUEST__OP_POOL_DESTROY:
		req.pool_destroy = &ref;
		break;
	case SHMPOOL__REQUEST__OP_CACHE_OPEN:
		req.cache_open = &ref;
		break;
	default:
		req.cache_destroy = &ref;
		break;
	}
	if (from_info)
		return shmp__rpc_handle(c, &req, from_info, out);
	rc = shmp__rpc(c, &req, &resp);
	if (!rc)
		shmpool__response__free_unpacked(resp, NULL);
	return rc;
}

int shmp__obj_off(struct sp_seg *seg, void *obj, const char *noun, const char *kind,
		  const char *name, sp_off_t *off)
{
	if (sp_unlikely(!obj))
		return sp_err(-EINVAL, "free of a NULL %s to %s %s", noun, kind, name);
	*off = sp_off(seg, obj);
	if (sp_unlikely(!*off))
		return sp_err(-EINVAL, "%p is not inside the segment: not an %s of %s %s", obj,
			      noun, kind, name);
	return 0;
}

int shmp__alloc_bulk(void *h, const struct shmp__bulk_ops *ops, int flags, void **v, unsigned n)
{
	unsigned i = 0;

	if (!v && n)
		return sp_err(-EINVAL, "NULL %s array", ops->noun);
	if (n > INT_MAX)
		return sp_err(-EINVAL, "bulk count %u is too large", n);
	while (i < n) {
		unsigned k = ops->take_run(h, flags, v + i, n - i);

		/* what the magazine holds at once; one full call where it stops */
		i += k;
		if (k)
			continue;
		v[i] = ops->alloc(h, flags);
		if (!v[i]) {
			int rc = -errno;
			char msg[512];

			snprintf(msg, sizeof(msg), "%s", sp_errmsg());
			while (i--)
				ops->free_one(h, v[i]);
			return sp_err(rc, "%s", msg);
		}
		i++;
	}
	return (int)n;
}

int shmp__free_bulk(void *h, const struct shmp__bulk_ops *ops, void *const *v, unsigned n)
{
	unsigned i = 0;
	int first = 0;

	if (!v && n)
		return sp_err(-EINVAL, "NULL %s array", ops->noun);
	while (i < n) {
		unsigned k = ops->put_run(h, v + i, n - i);
		int rc;

		i += k;
		if (k)
			continue;
		rc = ops->free_one(h, v[i++]); /* flushes, refuses, or takes the lock */
		if (rc && !first)
			first = rc;
	}
	return first;
}
