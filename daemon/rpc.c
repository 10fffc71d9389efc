/* SPDX-License-Identifier: MIT */
/*
 * rpc.c - one Request in, one Response out.
 *
 * Order of the checks, each answered with an error Response:
 *   1. the frame is not a Request message   -EPROTO, then close (the peer
 *      does not speak the protocol; nothing after it can be trusted)
 *   2. the peer is not on the allow-list     -EACCES, then close
 *   3. no operation this daemon knows        -EOPNOTSUPP "unknown operation"
 *   4. any operation before Hello            -EPROTO "send Hello first"
 *   5. the operation's own checks (names, sizes, permissions), most of them
 *      the core's: its error code and message go back unchanged.
 *
 * Identity is the peer's SO_PEERCRED, never what a Request claims: Hello
 * registers a slot for the peer's pid/uid/gid, and pools and caches record
 * the peer's uid as their creator.  Destroy, resize and reclaim need the
 * creator (for reclaim: the dead slot's uid) or root (-EPERM).  Opening
 * another user's pool or cache needs one of the "other" mode bits (0006);
 * group bits are not checked (the creator's gid is not recorded).
 *
 * Nothing here allocates in the segment: every operation is a core call.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "shmpoold.h"

/* struct rpc - the request being handled.  Process-private. */
struct rpc {
	struct spd_session *ss;
	struct spd_daemon *d;
	struct sp_seg *s;
	Shmpool__Response *resp;
	struct spd_arena *a;
	int pass_fd;		/* Hello: the segment fd, as SCM_RIGHTS */
	bool then_close;
	bool record_start;	/* Hello registered start_slot without a start time */
	uint32_t start_slot;
	char name[SP_NAME_MAX + 2]; /* the request's name, sanitized for the log */
	char msg[600];
};

static const char *const op_names[] = {
	[SHMPOOL__REQUEST__OP_HELLO] = "Hello",
	[SHMPOOL__REQUEST__OP_POOL_CREATE] = "PoolCreate",
	[SHMPOOL__REQUEST__OP_POOL_OPEN] = "PoolOpen",
	[SHMPOOL__REQUEST__OP_POOL_DESTROY] = "PoolDestroy",
	[SHMPOOL__REQUEST__OP_POOL_RESIZE] = "PoolResize",
	[SHMPOOL__REQUEST__OP_CACHE_CREATE] = "CacheCreate",
	[SHMPOOL__REQUEST__OP_CACHE_OPEN] = "CacheOpen",
	[SHMPOOL__REQUEST__OP_CACHE_DESTROY] = "CacheDestroy",
	[SHMPOOL__REQUEST__OP_LIST] = "List",
	[SHMPOOL__REQUEST__OP_STATS] = "Stats",
	[SHMPOOL__REQUEST__OP_CHECK] = "Check",
	[SHMPOOL__REQUEST__OP_RECLAIM] = "Reclaim",
	[SHMPOOL__REQUEST__OP_GOODBYE] = "Goodbye",
};

static const char *op_name(int op)
{
	if (op >= 0 && (size_t)op < sizeof(op_names) / sizeof(op_names[0]) && op_names[op])
		return op_names[op];
	return "unknown";
}

static int fail(struct rpc *x, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct rpc *x, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
	va_end(ap);
	return rc;
}

/* A core call failed: pass its code and message on. */
static int core_fail(struct rpc *x, int rc)
{
	const char *m = sp_errmsg();

	return fail(x, rc, "%s", *m ? m : sp_strerror(rc));
}

static bool is_owner(const struct rpc *x, uint32_t creator_uid)
{
	return x->ss->uid == 0 || x->ss->uid == creator_uid;
}

static bool may_open(const struct rpc *x, uint32_t creator_uid, uint32_t mode)
{
	return is_owner(x, creator_uid) || (mode & 0006);
}

static void set_name(struct rpc *x, const char *name)
{
	spd_sanitize(x->name, sizeof(x->name), name, SP_NAME_MAX + 1);
}

/* ---- what pools and caches share (@kind: "pool" or "cache") ----------------- */

/* Take the request's @name and its id by @lookup (sp_pool_lookup, sp_cache_lookup). */
static int find_named(struct rpc *x, const char *name,
		      int (*lookup)(struct sp_seg *s, const char *name, uint32_t *id),
		      uint32_t *id)
{
	int rc;

	set_name(x, name);
	rc = lookup(x->s, name, id);
	if (rc)
		return core_fail(x, rc);
	return 0;
}

static int check_open(struct rpc *x, const char *kind, uint32_t creator_uid, uint32_t mode)
{
	if (!may_open(x, creator_uid, mode))
		return fail(x, -EPERM, "%s %s belongs to uid %u and its mode %04o lets no "
			    "other user open it", kind, x->name, creator_uid, mode);
	return 0;
}

static int check_owner(struct rpc *x, const char *kind, uint32_t creator_uid, const char *verb)
{
	if (!is_owner(x, creator_uid))
		return fail(x, -EPERM, "%s %s belongs to uid %u: only that user or root may "
			    "%s it", kind, x->name, creator_uid, verb);
	return 0;
}

/* Destroy pool or cache @id by @destroy (sp_pool_destroy, sp_cache_destroy). */
static int destroy_named(struct rpc *x, const char *kind, uint32_t creator_uid, uint32_t id,
			 int (*destroy)(struct sp_seg *s, uint32_t id))
{
	int rc = check_owner(x, kind, creator_uid, "destroy");

	if (rc)
		return rc;
	rc = destroy(x->s, id);
	if (rc)
		return core_fail(x, rc);
	spd_info("slot %u (uid %u): destroyed %s %s", x->ss->slot, x->ss->uid, kind, x->name);
	return 0;
}

/* ---- Hello and Goodbye ------------------------------------------------------ */

/*
 * May @ss take over @slot?  Same process (pid + start time), token matches.
 * A slot whose start time was never recorded (its daemon died between the
 * Hello and recording it, and no reap ran since) gets the connecting
 * process's: it has the pid and the token.
 */
static int check_resume(struct rpc *x, const Shmpool__Hello *h)
{
	struct sp_seg *s = x->s;
	uint32_t slot = h->resume_slot;
	uint64_t start = 0;
	struct sp_client cl;
	int rc = sp_proc_start_time_ex(x->ss->pid, &start);

	/* not -EPERM: a refused resume is final, and the client can try again */
	if (rc && rc != -ESRCH)
		return fail(x, rc, "cannot resume slot %u now: reading /proc/%d/stat failed: %s",
			    slot, x->ss->pid, strerror(-rc));
	if (slot >= s->geo.max_clients || slot >= x->d->nr_by_slot)
		return fail(x, -EPERM, "cannot resume slot %u: the table has %u slots", slot,
			    x->d->nr_by_slot);
	rc = sp_registry_lock(s);
	if (rc)
		return core_fail(x, rc);
	cl = sp_clients(s)[slot];
	sp_registry_unlock(s);
	if (cl.state != SP_CLIENT_ALIVE)
		return fail(x, -EPERM, "cannot resume slot %u: it is %s", slot,
			    cl.state == SP_CLIENT_DEAD ? "dead (its holdings are orphaned)"
						       : "free");
	if (cl.token != h->session_token)
		return fail(x, -EPERM, "cannot resume slot %u: wrong session token", slot);
	if ((int)cl.pid != x->ss->pid || !start || (cl.start_time && cl.start_time != start))
		return fail(x, -EPERM, "cannot resume slot %u: it belongs to pid %u, not to the "
				       "connecting process %d", slot, cl.pid, x->ss->pid);
	if (spd_slot_session(x->d, slot))
		return fail(x, -EBUSY, "cannot resume slot %u: connection %llu holds it", slot,
			    (unsigned long long)spd_slot_session(x->d, slot)->conn_id);
	if (!cl.start_time)
		sp_client_set_start_time(s, slot, x->ss->pid, start);
	return 0;
}

static int op_hello(struct rpc *x, const Shmpool__Hello *h)
{
	struct spd_session *ss = x->ss;
	struct sp_seg *s = x->s;
	Shmpool__HelloReply *r;
	uint32_t slot;
	int rc;

	if (ss->has_slot)
		return fail(x, -EPROTO, "Hello was already done on this connection (slot %u)",
			    ss->slot);
	if (h->protocol_version != SPD_PROTOCOL_VERSION)
		return fail(x, -EPROTONOSUPPORT, "protocol version %u is not supported: this "
			    "daemon (shmpoold %s) speaks version %u", h->protocol_version,
			    SHMPOOL_VERSION, SPD_PROTOCOL_VERSION);
	spd_sanitize(ss->name, sizeof(ss->name), h->client_name, SP_CLIENT_NAME_MAX);
	if (h->resume) {
		rc = check_resume(x, h);
		if (rc)
			return rc;
		slot = h->resume_slot;
	} else {
		/* the start time is read once the reply is out (record_start_time()) */
		rc = sp_client_register_ex(s, ss->name, ss->pid, ss->uid, ss->gid, 0, &slot);
		if (rc == -ENFILE)
			return fail(x, rc, "client table full: all %u slots are taken (a dead "
				    "client's slot stays taken until its holdings are reclaimed)",
				    s->geo.max_clients);
		if (rc)
			return core_fail(x, rc);
		/* the core walked the shared header's max_clients: never trusted */
		if (slot >= x->d->nr_by_slot) {
			sp_client_mark_dead(s, slot);
			return fail(x, -EBADMSG, "the segment's client table no longer has the %u "
				    "slots it had when the daemon attached it: its header was "
				    "overwritten", x->d->nr_by_slot);
		}
		x->record_start = true;
		x->start_slot = slot;
	}
	spd_session_bind(ss, slot);
	r = spd_arena_alloc(x->a, sizeof(*r));
	if (!r)
		return -ENOMEM;
	shmpool__hello_reply__init(r);
	r->protocol_version = SPD_PROTOCOL_VERSION;
	r->daemon_version = SHMPOOL_VERSION;
	r->segment_name = x->d->cfg.shm_name;
	r->segment_size = s->size;
	r->layout_version = s->geo.layout_version;
	r->client_slot = slot;
	r->session_token = sp_clients(s)[slot].token;
	r->resumed = h->resume;
	x->resp->payload_case = SHMPOOL__RESPONSE__PAYLOAD_HELLO;
	x->resp->hello = r;
	x->pass_fd = s->fd;
	spd_info("connection %llu: client \"%s\" pid %d uid %u %s slot %u",
		 (unsigned long long)ss->conn_id, ss->name, ss->pid, ss->uid,
		 h->resume ? "resumed" : "registered as", slot);
	return 0;
}

static int op_goodbye(struct rpc *x)
{
	struct spd_session *ss = x->ss;
	struct sp_seg *s = x->s;
	uint32_t slot = ss->slot;
	struct sp_holdings h = { 0 };
	int rc = sp_client_unregister(s, slot);

	if (rc)
		return core_fail(x, rc);
	/* still DEAD: it held something; reclaim-on-exit pools get theirs back */
	if (sp_clients(s)[slot].state == SP_CLIENT_DEAD &&
	    sp_slot_release(s, slot, true, NULL) == 0)
		sp_slot_holdings(s, slot, &h);
	spd_session_unbind(ss);
	x->then_close = true;
	if (h.objects || h.pages)
		spd_info("slot %u (pid %d \"%s\") said goodbye still holding %" PRIu64 " objects, "
			 "%" PRIu64 " large blocks: orphaned, attributed to the slot", slot, ss->pid,
			 ss->name, h.objects, h.large_blocks);
	else
		spd_info("slot %u (pid %d \"%s\") said goodbye", slot, ss->pid, ss->name);
	return 0;
}

/* ---- pools ------------------------------------------------------------------ */

/* Sets the request's name too. */
static int find_pool(struct rpc *x, const char *name, struct sp_pool **p)
{
	uint32_t id;
	int rc = find_named(x, name, sp_pool_lookup, &id);

	if (rc)
		return rc;
	*p = sp_pool_get(x->s, id);
	if (!*p)
		return fail(x, -ENOENT, "pool %s was destroyed", x->name);
	return 0;
}

static int reply_pool(struct rpc *x, const struct sp_pool *p)
{
	x->resp->pool = spd_view_pool(x->a, x->s, p);
	x->resp->payload_case = SHMPOOL__RESPONSE__PAYLOAD_POOL;
	return x->resp->pool ? 0 : -ENOMEM;
}

static int op_pool_create(struct rpc *x, const Shmpool__PoolCreate *pc)
{
	struct sp_pool_params pp = {
		.elem_size = pc->elem_size,
		.min_nr = pc->min_nr,
		.max_nr = pc->max_nr,
		.backing = pc->backing,
		.cache_flags = pc->cache_flags,
		.flags = pc->flags,
		.align = pc->align,
		.uid = x->ss->uid,
		.mode = pc->mode,
	};
	uint32_t id;
	int rc;

	set_name(x, pc->name);
	if (pc->mode & ~0777u)
		return fail(x, -EINVAL, "mode %#o has bits outside 0777", pc->mode);
	if (pc->cache_flags & ~SP_CACHE_USER_FLAGS)
		return fail(x, -EINVAL, "unknown cache flags %#x (known: 1 HWCACHE_ALIGN, "
			    "2 POISON, 4 REDZONE)", pc->cache_flags);
	rc = sp_pool_create(x->s, pc->name, &pp, &id);
	if (rc)
		return core_fail(x, rc);
	spd_info("slot %u (uid %u): created pool %s: %" PRIu64 "-byte elements, min_nr %u, "
		 "max_nr %u, %s backing, flags %#x", x->ss->slot, x->ss->uid, x->name,
		 pc->elem_size, pc->min_nr, pc->max_nr, sp_backing_name(pc->backing), pc->flags);
	return reply_pool(x, sp_pool_get(x->s, id));
}

static int op_pool_open(struct rpc *x, const Shmpool__NameRef *n)
{
	struct sp_pool *p;
	int rc;

	rc = find_pool(x, n->name, &p);
	if (rc)
		return rc;
	rc = check_open(x, "pool", p->creator_uid, p->mode);
	if (rc)
		return rc;
	return reply_pool(x, p);
}

static int op_pool_destroy(struct rpc *x, const Shmpool__NameRef *n)
{
	struct sp_pool *p;
	int rc;

	rc = find_pool(x, n->name, &p);
	if (rc)
		return rc;
	return destroy_named(x, "pool", p->creator_uid, p->id, sp_pool_destroy);
}

static int op_pool_resize(struct rpc *x, const Shmpool__PoolResize *r)
{
	struct sp_pool *p;
	int rc;

	rc = find_pool(x, r->name, &p);
	if (rc)
		return rc;
	rc = check_owner(x, "pool", p->creator_uid, "resize");
	if (rc)
		return rc;
	rc = sp_pool_resize(x->s, p, r->min_nr);
	if (rc)
		return core_fail(x, rc);
	spd_info("slot %u (uid %u): resized pool %s to min_nr %u", x->ss->slot, x->ss->uid,
		 x->name, r->min_nr);
	return reply_pool(x, p);
}

/* ---- caches ----------------------------------------------------------------- */

/* Sets the request's name too. */
static int find_cache(struct rpc *x, const char *name, struct sp_cache **c)
{
	uint32_t id;
	int rc = find_named(x, name, sp_cache_lookup, &id);

	if (rc)
		return rc;
	*c = sp_cache_get(x->s, id);
	if (!*c)
		return fail(x, -ENOENT, "cache %s was destroyed", x->name);
	return 0;
}

static int reply_cache(struct rpc *x, const struct sp_cache *c)
{
	x->resp->cache = spd_view_cache(x->a, x->s, c);
	x->resp->payload_case = SHMPOOL__RESPONSE__PAYLOAD_CACHE;
	return x->resp->cache ? 0 : -ENOMEM;
}

/*
 * sp_cache_create() records no creator: write the peer's uid and the mode
 * into the new descriptor under the registry lock, before any other request
 * (this loop is the only place that reads them for permission checks).
 */
static void set_cache_owner(struct sp_seg *s, uint32_t id, uint32_t uid, uint32_t mode)
{
	struct sp_cache *c;

	if (sp_registry_lock(s))
		return;
	c = sp_cache_get(s, id);
	if (c) {
		c->creator_uid = uid;
		c->mode = mode ? mode : 0600;
	}
	sp_registry_unlock(s);
}

static int op_cache_create(struct rpc *x, const Shmpool__CacheCreate *cc)
{
	size_t tlen = cc->init_template.len;
	uint32_t id;
	int rc;

	set_name(x, cc->name);
	if (cc->mode & ~0777u)
		return fail(x, -EINVAL, "mode %#o has bits outside 0777", cc->mode);
	if (tlen && tlen != cc->obj_size)
		return fail(x, -EINVAL, "init_template has %zu bytes: it must be empty or exactly "
			    "obj_size (%" PRIu64 ") bytes", tlen, cc->obj_size);
	rc = sp_cache_create(x->s, cc->name, cc->obj_size, cc->align, cc->flags,
			     tlen ? cc->init_template.data : NULL, &id);
	if (rc)
		return core_fail(x, rc);
	set_cache_owner(x->s, id, x->ss->uid, cc->mode);
	spd_info("slot %u (uid %u): created cache %s: %" PRIu64 "-byte objects, align %u, "
		 "flags %#x%s", x->ss->slot, x->ss->uid, x->name, cc->obj_size, cc->align,
		 cc->flags, tlen ? ", with a template" : "");
	return reply_cache(x, sp_cache_get(x->s, id));
}

static int op_cache_open(struct rpc *x, const Shmpool__NameRef *n)
{
	struct sp_cache *c;
	int rc;

	rc = find_cache(x, n->name, &c);
	if (rc)
		return rc;
	rc = check_open(x, "cache", c->creator_uid, c->mode);
	if (rc)
		return rc;
	return reply_cache(x, c);
}

static int op_cache_destroy(struct rpc *x, const Shmpool__NameRef *n)
{
	struct sp_cache *c;
	int rc;

	rc = find_cache(x, n->name, &c);
	if (rc)
		return rc;
	return destroy_named(x, "cache", c->creator_uid, c->id, sp_cache_destroy);
}

/* ---- views and reclaim ------------------------------------------------------ */

static int op_list(struct rpc *x)
{
	x->resp->list = spd_view_list(x->a, x->s);
	x->resp->payload_case = SHMPOOL__RESPONSE__PAYLOAD_LIST;
	return x->resp->list ? 0 : -ENOMEM;
}

static int op_stats(struct rpc *x)
{
	x->resp->stats = spd_view_stats(x->a, x->d);
	x->resp->payload_case = SHMPOOL__RESPONSE__PAYLOAD_STATS;
	return x->resp->stats ? 0 : -ENOMEM;
}

static int op_check(struct rpc *x)
{
	int rc = spd_view_check(x->a, x->s, &x->resp->check);

	if (rc)
		return rc == -ENOMEM ? rc : core_fail(x, rc);
	x->resp->payload_case = SHMPOOL__RESPONSE__PAYLOAD_CHECK;
	if (x->resp->check->nr_violations)
		spd_warn("Check from slot %u: %u violations; first: %s", x->ss->slot,
			 x->resp->check->nr_violations,
			 x->resp->check->n_violations ? x->resp->check->violations[0] : "?");
	return 0;
}

static int op_reclaim(struct rpc *x, const Shmpool__Reclaim *r)
{
	struct sp_seg *s = x->s;
	Shmpool__ReclaimReply *v;
	struct sp_holdings h;
	struct sp_client *cl;
	int rc;

	if (r->slot >= s->geo.max_clients)
		return fail(x, -ESRCH, "no client slot %u: the table has %u slots", r->slot,
			    s->geo.max_clients);
	cl = &sp_clients(s)[r->slot];
	if (cl->state == SP_CLIENT_FREE)
		return fail(x, -ESRCH, "client slot %u is free: nothing to reclaim", r->slot);
	if (cl->state == SP_CLIENT_ALIVE)
		return fail(x, -EBUSY, "client slot %u (pid %u) is alive: only a dead client's "
			    "holdings can be reclaimed", r->slot, cl->pid);
	if (!is_owner(x, cl->uid))
		return fail(x, -EPERM, "client slot %u belonged to uid %u: only that user or root "
			    "may reclaim it", r->slot, cl->uid);
	rc = sp_slot_release(s, r->slot, false, &h);
	if (rc)
		return core_fail(x, rc);
	v = spd_arena_alloc(x->a, sizeof(*v));
	if (!v)
		return -ENOMEM;
	shmpool__reclaim_reply__init(v);
	v->objects = h.objects;
	v->pool_elems = h.pool_elems;
	v->large_blocks = h.large_blocks;
	v->bytes = h.bytes;
	x->resp->reclaim = v;
	x->resp->payload_case = SHMPOOL__RESPONSE__PAYLOAD_RECLAIM;
	spd_info("slot %u (uid %u): reclaimed dead slot %u: %" PRIu64 " objects, %" PRIu64
		 " pool elements, %" PRIu64 " large blocks, %" PRIu64 " bytes", x->ss->slot,
		 x->ss->uid, r->slot, h.objects, h.pool_elems, h.large_blocks, h.bytes);
	return 0;
}

/* ---- dispatch --------------------------------------------------------------- */

static int dispatch(struct rpc *x, const Shmpool__Request *q)
{
	struct spd_session *ss = x->ss;

	if (!ss->allowed) {
		x->then_close = true;
		return fail(x, -EACCES, "uid %u (gid %u) may not use this daemon: it accepts its "
			    "own user, root and those given with --allow-uid/--allow-gid",
			    ss->uid, ss->gid);
	}
	if (q->op_case == SHMPOOL__REQUEST__OP__NOT_SET)
		return fail(x, -EOPNOTSUPP, "unknown operation: the request sets none of the "
			    "operations of protocol version %u", SPD_PROTOCOL_VERSION);
	if (!ss->has_slot && q->op_case != SHMPOOL__REQUEST__OP_HELLO)
		return fail(x, -EPROTO, "send Hello first: %s needs a registered client",
			    op_name(q->op_case));
	switch (q->op_case) {
	case SHMPOOL__REQUEST__OP_HELLO: return op_hello(x, q->hello);
	case SHMPOOL__REQUEST__OP_POOL_CREATE: return op_pool_create(x, q->pool_create);
	case SHMPOOL__REQUEST__OP_POOL_OPEN: return op_pool_open(x, q->pool_open);
	case SHMPOOL__REQUEST__OP_POOL_DESTROY: return op_pool_destroy(x, q->pool_destroy);
	case SHMPOOL__REQUEST__OP_POOL_RESIZE: return op_pool_resize(x, q->pool_resize);
	case SHMPOOL__REQUEST__OP_CACHE_CREATE: return op_cache_create(x, q->cache_create);
	case SHMPOOL__REQUEST__OP_CACHE_OPEN: return op_cache_open(x, q->cache_open);
	case SHMPOOL__REQUEST__OP_CACHE_DESTROY: return op_cache_destroy(x, q->cache_destroy);
	case SHMPOOL__REQUEST__OP_LIST: return op_list(x);
	case SHMPOOL__REQUEST__OP_STATS: return op_stats(x);
	case SHMPOOL__REQUEST__OP_CHECK: return op_check(x);
	case SHMPOOL__REQUEST__OP_RECLAIM: return op_reclaim(x, q->reclaim);
	case SHMPOOL__REQUEST__OP_GOODBYE: return op_goodbye(x);
	default:
		return fail(x, -EOPNOTSUPP, "unknown operation %d", (int)q->op_case);
	}
}

/**
 * spd_rpc_reply_error() - answer with an error Response.
 * @ss: the session.  @id: the request's id (0 when unknown).
 * @status: a negative errno.  @then_close: close the connection after it.
 * @fmt: printf format of the message.
 *
 * Does not sleep.
 */
void spd_rpc_reply_error(struct spd_session *ss, uint64_t id, int status, bool then_close,
			 const char *fmt, ...)
{
	Shmpool__Response r = SHMPOOL__RESPONSE__INIT;
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r.id = id;
	r.status = status;
	r.message = msg;
	spd_session_send(ss, &r, -1, then_close);
}

/*
 * Record the start time of the process a Hello just registered, after its
 * reply went out: reading /proc is three system calls and the kernel's
 * formatting of the whole stat line, which the client need not wait for.
 * Nothing reads the start time of a slot whose connection is open (see
 * shared/client.c for the daemon dying before this).  A process already
 * gone is left to its connection's close; one that cannot be looked up
 * now (no file descriptor left) is recorded by the reaper.
 */
static void record_start_time(struct rpc *x, int pid)
{
	uint64_t start;
	int rc = sp_proc_start_time_ex(pid, &start);

	if (rc == -ESRCH)
		return;
	if (rc) {
		spd_warn("slot %u (pid %d): cannot read /proc/%d/stat now (%s): its start time "
			 "is recorded later", x->start_slot, pid, pid, strerror(-rc));
		return;
	}
	sp_client_set_start_time(x->s, x->start_slot, pid, start); /* -ESRCH: died meanwhile */
}

/**
 * spd_rpc_handle() - handle one frame's payload and send its Response.
 * @ss: the session.  @data: @len: the protobuf bytes (untrusted).
 *
 * May sleep (core calls take shared locks, bounded by the lock timeout).
 */
void spd_rpc_handle(struct spd_session *ss, const uint8_t *data, size_t len)
{
	Shmpool__Request *q = shmpool__request__unpack(NULL, len, data);
	Shmpool__Response resp = SHMPOOL__RESPONSE__INIT;
	struct spd_arena a = { 0 };
	struct rpc x = { .ss = ss, .d = ss->d, .s = ss->d->seg, .resp = &resp, .a = &a,
			 .pass_fd = -1 };
	char note[160];
	int rc;

	if (!q) {
		spd_warn("connection %llu (pid %d): malformed request (%zu bytes): closing",
			 (unsigned long long)ss->conn_id, ss->pid, len);
		spd_rpc_reply_error(ss, 0, -EPROTO, true, "malformed request: %zu bytes that "
				    "are not a protobuf Request message", len);
		return;
	}
	sp_err(0, "%s", ""); /* a core error message must be this request's */
	resp.id = q->id;
	rc = dispatch(&x, q);
	if (!rc && a.failed)
		rc = -ENOMEM;
	if (rc == -ENOMEM && !x.msg[0])
		fail(&x, rc, "the daemon ran out of process memory");
	if (rc) {
		resp.status = rc;
		resp.message = x.msg;
		resp.payload_case = SHMPOOL__RESPONSE__PAYLOAD__NOT_SET;
		x.pass_fd = -1;
	} else {
		spd_view_fit(&resp, note, sizeof(note)); /* sets the message if it trims */
	}
	if (spd_log_enabled(rc ? SPD_LOG_INFO : SPD_LOG_DEBUG)) {
		char who[48] = "";

		if (ss->has_slot)
			snprintf(who, sizeof(who), " slot %u", ss->slot);
		spd_log(rc ? SPD_LOG_INFO : SPD_LOG_DEBUG, "connection %llu%s: %s %s%s-> %s%s%s",
			(unsigned long long)ss->conn_id, who, op_name(q->op_case), x.name,
			x.name[0] ? " " : "", sp_err_name(rc), rc ? ": " : "", rc ? x.msg : "");
	}
	spd_session_send(ss, &resp, x.pass_fd, x.then_close);
	if (x.record_start) /* whatever the reply: the slot is registered */
		record_start_time(&x, ss->pid);
	spd_arena_free(&a);
	shmpool__request__free_unpacked(q, NULL);
}
