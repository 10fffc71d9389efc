/* SPDX-License-Identifier: MIT */
/*
 * owner.c - the segment the daemon owns.
 *
 * At start the daemon creates its segment, or re-attaches the one a
 * previous daemon left (after a crash or a clean stop) with everything in
 * it: pools, caches, the elements clients hold, the client table.  It never
 * re-initialises a segment that exists: only --reset unlinks it and creates
 * a new one.  A segment that fails validation (bad magic, other layout
 * version, corrupted header, wrong size) stops the daemon with the reason
 * and a hint to use --reset.  The core validates; this file decides.
 *
 * One daemon per segment: the daemon holds flock(LOCK_EX) on a private
 * descriptor of the shm object (not the one passed to clients, whose copies
 * would keep the lock after the daemon died).
 *
 * Client slots after a restart: a slot whose process died while the daemon
 * was down is marked dead (sp_client_reap()); one whose process still runs
 * stays ALIVE, waiting for the process to reconnect and resume it (rpc.c
 * checks pid, start time and token).  Such unconnected slots are reaped
 * every SPD_REAP_INTERVAL_MS until they resume or die; so are slots whose
 * start time could not be recorded after their Hello (rpc.c), which the
 * reap records.
 *
 * A dead client: its slot is marked DEAD, the elements of pools created
 * with the reclaim-on-exit flag go back to their pools, and whatever else it
 * held stays allocated as orphans attributed to the slot (visible in Stats)
 * until a Reclaim.  Locks it held are recovered by the core (robust mutexes).
 * A release that fails (a lock not obtained within the lock timeout) is
 * retried by the reaper timer until it succeeds: a dead client's
 * reclaim-on-exit elements are never left behind by a transient failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "shmpoold.h"

static int lock_segment(struct spd_daemon *d)
{
	const char *name = d->cfg.shm_name;
	int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);

	if (fd < 0) {
		spd_error("segment %s: %s", name, strerror(errno));
		return -errno;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno;

		close(fd);
		if (err == EWOULDBLOCK) {
			spd_error("segment %s is in use by another shmpoold; stop it first or pass "
				  "another --shm-name", name);
			return -EBUSY;
		}
		spd_error("segment %s: flock: %s", name, strerror(err));
		return -err;
	}
	d->seg_lock_fd = fd;
	return 0;
}

static void unlock_segment(struct spd_daemon *d)
{
	if (d->seg_lock_fd >= 0)
		close(d->seg_lock_fd);
	d->seg_lock_fd = -1;
}

static int create_segment(struct spd_daemon *d)
{
	struct sp_seg_params p;
	int rc;

	sp_seg_params_default(&p);
	p.size = d->cfg.size;
	p.max_clients = d->cfg.max_clients;
	p.max_pools = d->cfg.max_pools;
	p.max_caches = d->cfg.max_caches;
	p.max_order = d->cfg.max_order;
	p.kmalloc_prefill = d->cfg.kmalloc_prefill;
	rc = sp_seg_create(d->cfg.shm_name, -1, &p, &d->seg);
	if (rc) {
		spd_error("cannot create segment %s of %" PRIu64 " bytes: %s", d->cfg.shm_name,
			  d->cfg.size, sp_errmsg());
		return rc;
	}
	rc = lock_segment(d);
	if (rc)
		return rc;
	spd_info("created segment %s: %" PRIu64 " MiB, %u pages of %u bytes, %u client slots, "
		 "%u pools, %u caches", d->cfg.shm_name, d->seg->size >> 20, d->seg->geo.nr_pages,
		 SP_PAGE_SIZE, d->seg->geo.max_clients, d->seg->geo.max_pools,
		 d->seg->geo.max_caches);
	return 0;
}

/* Log what a re-attached segment holds.  An unlocked snapshot. */
static void report_found(struct spd_daemon *d)
{
	struct sp_seg *s = d->seg;
	const struct sp_header *g = &s->geo;
	struct sp_header *h = s->hdr;
	uint64_t objects = 0, pool_out = 0;
	unsigned alive = 0, dead = 0;
	time_t created = (time_t)g->created_time;
	char when[64] = "?";
	struct tm tm;

	for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++) {
		struct sp_cache *c = sp_cache_get(s, i);

		if (c)
			objects += sp_cache_in_use(s, c);
	}
	for (uint32_t i = 0; i < g->max_pools; i++) {
		struct sp_pool *p = sp_pool_get(s, i);

		if (p)
			pool_out += sp_pool_nr_out(s, p);
	}
	for (uint32_t i = 0; i < g->max_clients; i++) {
		alive += sp_clients(s)[i].state == SP_CLIENT_ALIVE;
		dead += sp_clients(s)[i].state == SP_CLIENT_DEAD;
	}
	if (localtime_r(&created, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	spd_info("re-attached segment %s: %" PRIu64 " MiB, layout %u, created %s; %u pools "
		 "(%" PRIu64 " elements out), %u caches, %" PRIu64 " live objects, %" PRIu64
		 " of %u pages in use; client slots: %u alive, %u dead",
		 d->cfg.shm_name, s->size >> 20, g->layout_version, when, h->nr_live_pools, pool_out,
		 h->nr_live_caches, objects, (uint64_t)g->nr_pages - h->buddy.free_pages,
		 g->nr_pages, alive, dead);
	if (d->cfg.size_set && d->cfg.size != s->size)
		spd_warn("--size %" PRIu64 " ignored: the existing segment has %" PRIu64
			 " bytes (--reset recreates it)", d->cfg.size, s->size);
	if (d->cfg.max_clients_set && d->cfg.max_clients != g->max_clients)
		spd_warn("--max-clients %u ignored: the existing segment has %u slots (--reset "
			 "recreates it)", d->cfg.max_clients, g->max_clients);
	if (d->cfg.geometry_set &&
	    (d->cfg.max_pools != g->max_pools || d->cfg.max_caches != g->max_caches ||
	     d->cfg.max_order != g->max_order || d->cfg.kmalloc_prefill != g->kmalloc_prefill))
		spd_warn("max_pools %u, max_caches %u, max_order %u, kmalloc_prefill %u of %s "
			 "ignored: the existing segment has %u, %u, %u, %u (--reset recreates it)",
			 d->cfg.max_pools, d->cfg.max_caches, d->cfg.max_order,
			 d->cfg.kmalloc_prefill, d->cfg.config_path, g->max_pools, g->max_caches,
			 g->max_order, g->kmalloc_prefill);
}

/**
 * spd_owner_client_died() - a client is gone without Goodbye.
 * @d: the daemon.  @slot: its slot (ALIVE, or already marked DEAD).
 * @why: for the log.
 *
 * Marks the slot DEAD, gives the elements of reclaim-on-exit pools back,
 * logs what stays orphaned.  The slot is freed when nothing is left.
 * May sleep (shared locks, bounded by the lock timeout).
 */
void spd_owner_client_died(struct spd_daemon *d, uint32_t slot, const char *why)
{
	struct sp_seg *s = d->seg;
	struct sp_client *cl = &sp_clients(s)[slot];
	struct sp_holdings before, after;
	char name[SP_CLIENT_NAME_MAX + 1];
	int pid = (int)cl->pid, rc;

	spd_sanitize(name, sizeof(name), cl->name, SP_CLIENT_NAME_MAX);
	rc = sp_client_mark_dead(s, slot);
	if (rc && rc != -ESRCH) {
		spd_error("client slot %u (pid %d): cannot mark it dead: %s", slot, pid,
			  sp_errmsg());
		return;
	}
	rc = sp_slot_release(s, slot, true, &before);
	if (!rc)
		rc = sp_slot_holdings(s, slot, &after);
	if (rc) {
		spd_error("client slot %u (pid %d): cannot release its holdings: %s; retrying "
			  "every %d ms", slot, pid, sp_errmsg(), SPD_REAP_INTERVAL_MS);
		if (d->release_due && slot < d->nr_by_slot)
			d->release_due[slot] = 1;
		return;
	}
	if (d->release_due && slot < d->nr_by_slot && d->release_due[slot]) {
		d->release_due[slot] = 0;
		spd_info("client slot %u (pid %d): released on a retry", slot, pid);
	}
	if (after.skipped_caches)
		spd_warn("client slot %u (pid %d): %" PRIu64 " caches with a corrupted geometry "
			 "could not be searched for its objects: the slot stays dead (run a check)",
			 slot, pid, after.skipped_caches);
	if (!after.objects && !after.pages && !after.skipped_caches) {
		spd_info("client slot %u (pid %d \"%s\") gone without Goodbye (%s): %" PRIu64
			 " pool elements reclaimed, nothing orphaned; slot freed", slot, pid, name,
			 why, before.pool_elems);
		return;
	}
	spd_warn("client slot %u (pid %d \"%s\") gone without Goodbye (%s): %" PRIu64
		 " pool elements "
		 "reclaimed; orphaned, attributed to the slot: %" PRIu64 " objects, %" PRIu64
		 " pool elements, %" PRIu64 " large blocks, %" PRIu64 " bytes", slot, pid, name,
		 why, before.pool_elems - after.pool_elems, after.objects, after.pool_elems,
		 after.large_blocks, after.bytes);
}

/* Mark slots of processes that are gone; handle each one newly dead. */
static void reap(struct spd_daemon *d, const char *why)
{
	struct sp_seg *s = d->seg;
	uint32_t n = s->geo.max_clients;
	uint8_t *was_alive = calloc(n, 1);
	int rc;

	if (!was_alive)
		return;
	for (uint32_t i = 0; i < n; i++)
		was_alive[i] = sp_clients(s)[i].state == SP_CLIENT_ALIVE;
	rc = sp_client_reap(s);
	if (rc < 0)
		spd_error("reaping dead clients: %s", sp_errmsg());
	for (uint32_t i = 0; rc > 0 && i < n; i++) {
		if (!was_alive[i] || sp_clients(s)[i].state != SP_CLIENT_DEAD)
			continue;
		/* a connection inherited by another process outlived the slot's
		 * process: it no longer speaks for the slot (which may be reused) */
		if (spd_slot_session(d, i))
			spd_session_unbind(spd_slot_session(d, i));
		spd_owner_client_died(d, i, why);
	}
	free(was_alive);
}

/* After a restart: reap, finish any interrupted reclaim, list who may resume. */
static void recover_clients(struct spd_daemon *d)
{
	struct sp_seg *s = d->seg;

	reap(d, "exited while the daemon was down");
	for (uint32_t i = 0; i < s->geo.max_clients; i++) {
		struct sp_client *cl = &sp_clients(s)[i];
		char name[SP_CLIENT_NAME_MAX + 1];

		spd_sanitize(name, sizeof(name), cl->name, SP_CLIENT_NAME_MAX);
		if (cl->state == SP_CLIENT_DEAD) /* a daemon killed mid-reclaim */
			sp_slot_release(s, i, true, NULL);
		else if (cl->state == SP_CLIENT_ALIVE)
			spd_info("client slot %u (pid %u \"%s\") is alive: it may resume its "
				 "session", i, cl->pid, name);
	}
}

static void check_at_start(struct spd_daemon *d)
{
	struct sp_report r = { .cap = 5 };
	struct sp_violation v[5];
	int n;

	r.v = v;
	n = sp_check(d->seg, 0, &r);
	if (n < 0) {
		spd_warn("the checker could not run: %s", sp_errmsg());
	} else if (n > 0) {
		spd_warn("the checker found %d violations in the re-attached segment", n);
		for (unsigned i = 0; i < r.nr && i < r.cap; i++)
			spd_warn("  violation: %s", v[i].what);
	} else {
		spd_info("the checker found the segment consistent");
	}
}

/**
 * spd_owner_open() - create, re-attach or (--reset) re-create the segment.
 * @d: the daemon, options parsed.
 *
 * May sleep.
 * Return: 0, or a negative errno after logging why (with a hint to use
 * --reset when the existing segment is invalid).
 */
int spd_owner_open(struct spd_daemon *d)
{
	const char *name = d->cfg.shm_name;
	bool reattached = false;
	int fd, rc;

	fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0 && errno != ENOENT) {
		spd_error("segment %s: %s", name, strerror(errno));
		return -errno;
	}
	if (fd < 0) {
		rc = create_segment(d);
	} else {
		close(fd);
		rc = lock_segment(d);
		if (rc)
			return rc;
		if (d->cfg.reset) {
			spd_warn("--reset: discarding segment %s and everything in it", name);
			rc = sp_seg_unlink(name);
			unlock_segment(d);
			if (rc) {
				spd_error("%s", sp_errmsg());
				return rc;
			}
			rc = create_segment(d);
		} else {
			rc = sp_seg_attach(name, -1, 0, &d->seg);
			if (rc) {
				spd_error("segment %s cannot be used: %s (%s); start with --reset to "
					  "discard it and create a new one", name, sp_errmsg(),
					  sp_err_name(rc));
				return rc;
			}
			d->seg->lock_timeout_ms = SPD_LOCK_TIMEOUT_MS;
			reattached = true;
			report_found(d);
		}
	}
	if (rc)
		return rc;
	d->seg->lock_timeout_ms = SPD_LOCK_TIMEOUT_MS;
	d->nr_by_slot = d->seg->geo.max_clients;
	d->by_slot = calloc(d->nr_by_slot, sizeof(*d->by_slot));
	d->release_due = calloc(d->nr_by_slot, 1);
	if (!d->by_slot || !d->release_due) {
		spd_error("out of memory");
		return -ENOMEM;
	}
	if (reattached) { /* clients may be waiting to resume */
		recover_clients(d);
		check_at_start(d);
	}
	return 0;
}

/* A predeclared pool that exists: say where it differs from the file. */
static void compare_pool(struct spd_daemon *d, const struct spd_pool_decl *pd,
			 const struct sp_pool *p)
{
	if (p->elem_size != pd->elem_size || p->min_nr != pd->min_nr || p->max_nr != pd->max_nr ||
	    p->backing != pd->backing || p->flags != pd->flags)
		spd_warn("pool %s (%s line %u) exists with elem_size %" PRIu64 ", min_nr %u, "
			 "max_nr %u, %s backing, flags %#x; the file says %" PRIu64 ", %u, %u, %s, "
			 "%#x: kept as it is (destroy it to have it recreated)", pd->name,
			 d->cfg.config_path, pd->line, p->elem_size, p->min_nr, p->max_nr,
			 sp_backing_name(p->backing), p->flags, pd->elem_size, pd->min_nr,
			 pd->max_nr, sp_backing_name(pd->backing), pd->flags);
	else
		spd_info("pool %s (%s line %u) exists", pd->name, d->cfg.config_path, pd->line);
}

/**
 * spd_owner_predeclare() - create the configuration file's pools that are missing.
 * @d: the daemon, segment open.
 *
 * A pool that exists is kept as it is (with a warning where it differs
 * from the file); a missing one is created with the daemon's uid as its
 * creator.  May sleep.
 * Return: 0, or the negative errno of a pool that cannot be created
 * (logged with the file and line): the start fails.
 */
int spd_owner_predeclare(struct spd_daemon *d)
{
	for (unsigned i = 0; i < d->cfg.nr_pools; i++) {
		const struct spd_pool_decl *pd = &d->cfg.pools[i];
		struct sp_pool_params pp = {
			.elem_size = pd->elem_size,
			.min_nr = pd->min_nr,
			.max_nr = pd->max_nr,
			.backing = pd->backing,
			.cache_flags = pd->cache_flags,
			.flags = pd->flags,
			.align = pd->align,
			.uid = (uint32_t)geteuid(),
			.mode = pd->mode,
		};
		uint32_t id;
		int rc = sp_pool_lookup(d->seg, pd->name, &id);

		if (rc == 0 && sp_pool_get(d->seg, id)) {
			compare_pool(d, pd, sp_pool_get(d->seg, id));
			continue;
		}
		rc = sp_pool_create(d->seg, pd->name, &pp, &id);
		if (rc) {
			spd_error("%s:%u: cannot create pool %s: %s (%s)", d->cfg.config_path,
				  pd->line, pd->name, sp_errmsg(), sp_err_name(rc));
			return rc;
		}
		spd_info("created predeclared pool %s: %" PRIu64 "-byte elements, min_nr %u, "
			 "max_nr %u, %s backing, flags %#x, mode %04o", pd->name, pd->elem_size,
			 pd->min_nr, pd->max_nr, sp_backing_name(pd->backing), pd->flags, pd->mode);
	}
	return 0;
}

/**
 * spd_owner_close() - unmap the segment; it stays for the next start.
 * @d: the daemon.
 *
 * Does not sleep.
 */
void spd_owner_close(struct spd_daemon *d)
{
	sp_seg_detach(d->seg);
	d->seg = NULL;
	free(d->by_slot);
	d->by_slot = NULL;
	free(d->release_due);
	d->release_due = NULL;
	unlock_segment(d);
}

/* Is a slot ALIVE without a connection, or without a recorded start time? */
static bool unconnected_alive(struct spd_daemon *d)
{
	for (uint32_t i = 0; i < d->nr_by_slot; i++)
		if (sp_clients(d->seg)[i].state == SP_CLIENT_ALIVE &&
		    (!spd_slot_session(d, i) || !sp_clients(d->seg)[i].start_time))
			return true;
	return false;
}

/* Retry the releases that failed (spd_owner_client_died()). */
static void retry_releases(struct spd_daemon *d)
{
	for (uint32_t i = 0; d->release_due && i < d->nr_by_slot; i++) {
		if (!d->release_due[i])
			continue;
		if (sp_clients(d->seg)[i].state != SP_CLIENT_DEAD) /* reclaimed meanwhile */
			d->release_due[i] = 0;
		else
			spd_owner_client_died(d, i, "retry");
	}
}

static void on_reap(uv_timer_t *t)
{
	struct spd_daemon *d = t->data;

	if (d->stopping)
		return;
	if (unconnected_alive(d))
		reap(d, "exited while not connected");
	retry_releases(d);
}

/**
 * spd_owner_start_reaper() - watch unconnected slots for their process' death.
 * @d: the daemon.
 *
 * Does not sleep.
 * Return: 0 or a negative errno.
 */
int spd_owner_start_reaper(struct spd_daemon *d)
{
	int rc = uv_timer_init(d->loop, &d->reaper);

	if (rc)
		return rc;
	d->reaper.data = d;
	uv_unref((uv_handle_t *)&d->reaper);
	return uv_timer_start(&d->reaper, on_reap, SPD_REAP_INTERVAL_MS, SPD_REAP_INTERVAL_MS);
}
