/* SPDX-License-Identifier: MIT */
/*
 * systemd.c - running under systemd: socket activation and readiness.
 *
 * Socket activation (shmpoold.socket): systemd creates and binds the
 * listening socket (with its SocketMode/SocketGroup) and passes it as fd 3
 * (sd_listen_fds).  The daemon then serves on it as it is: no stale-socket
 * probe, no chmod, and no unlink at stop - the socket belongs to systemd
 * and stays open for the next start, so clients connecting while the
 * daemon restarts just wait in the backlog.
 *
 * Readiness (Type=notify): READY=1 once the segment is open and the socket
 * listens; STATUS= lines every SPD_SD_STATUS_MS while running (connections,
 * pools, pages in use: what `systemctl status` shows); STOPPING=1 when a
 * SIGTERM/SIGINT begins the shutdown.
 *
 * libsystemd is optional (meson: dependency('libsystemd', required:
 * false)).  Without it the daemon builds and runs the same, but ignores
 * LISTEN_FDS and NOTIFY_SOCKET: use Type=simple and no .socket unit then.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "shmpoold.h"

#if SPD_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define SPD_SD_STATUS_MS 5000

/**
 * spd_systemd_listen_fd() - the listening socket systemd passed, if any.
 *
 * Accepts exactly one passed descriptor, a listening Unix stream socket.
 * Unsets LISTEN_FDS & co. so children never see them.  Does not sleep.
 * Return: the descriptor; -1 when none was passed (or no libsystemd);
 * a negative errno below -1 after logging why a passed one is unusable.
 */
int spd_systemd_listen_fd(void)
{
#if SPD_HAVE_LIBSYSTEMD
	int n = sd_listen_fds(1), fd = SD_LISTEN_FDS_START;

	if (n == 0)
		return -1;
	if (n < 0) {
		spd_error("socket activation: %s", strerror(-n));
		return n == -1 ? -EINVAL : n;
	}
	if (n > 1) {
		spd_error("socket activation: systemd passed %d sockets; shmpoold serves "
			  "exactly one (one ListenStream= in shmpoold.socket)", n);
		return -EINVAL;
	}
	if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
		spd_error("socket activation: fd %d is not a listening Unix stream socket", fd);
		return -EINVAL;
	}
	return fd;
#else
	if (getenv("LISTEN_FDS"))
		spd_warn("LISTEN_FDS is set, but this shmpoold was built without libsystemd: "
			 "ignoring the passed socket");
	return -1;
#endif
}

#if SPD_HAVE_LIBSYSTEMD
static void on_status(uv_timer_t *t)
{
	struct spd_daemon *d = t->data;
	const struct sp_header *g = &d->seg->geo;
	struct sp_header *h = d->seg->hdr;
	uint64_t used = (uint64_t)g->nr_pages - h->buddy.free_pages;

	sd_notifyf(0, "STATUS=%u connections, %u pools, %u caches, %" PRIu64 " of %u pages in "
		   "use (%.1f%%)", d->nr_sessions, h->nr_live_pools, h->nr_live_caches, used,
		   g->nr_pages, g->nr_pages ? 100.0 * (double)used / g->nr_pages : 0.0);
}
#endif

/**
 * spd_systemd_ready() - tell systemd the daemon serves (READY=1, STATUS=).
 * @d: the daemon, listening.
 *
 * Starts the periodic STATUS= updates.  A no-op without NOTIFY_SOCKET.
 * Does not sleep.
 */
void spd_systemd_ready(struct spd_daemon *d)
{
#if SPD_HAVE_LIBSYSTEMD
	int rc;

	if (!getenv("NOTIFY_SOCKET"))
		return;
	rc = sd_notifyf(0, "READY=1\nMAINPID=%d\nSTATUS=serving %s on %s", (int)getpid(),
			d->cfg.shm_name, d->cfg.socket_path);
	if (rc < 0) {
		spd_warn("sd_notify(READY=1): %s", strerror(-rc));
		return;
	}
	spd_debug("told systemd READY=1");
	d->sd_notify = true;
	if (uv_timer_init(d->loop, &d->sd_status) == 0) {
		d->sd_status.data = d;
		uv_unref((uv_handle_t *)&d->sd_status);
		uv_timer_start(&d->sd_status, on_status, SPD_SD_STATUS_MS, SPD_SD_STATUS_MS);
	}
#else
	(void)d;
#endif
}

#if SPD_HAVE_LIBSYSTEMD
static void on_timer_closed(uv_handle_t *h)
{
	(void)h;
}
#endif

/**
 * spd_systemd_stopping() - tell systemd the daemon is shutting down.
 * @d: the daemon.
 *
 * Sends STOPPING=1 and stops the STATUS= updates.  Does not sleep.
 */
void spd_systemd_stopping(struct spd_daemon *d)
{
#if SPD_HAVE_LIBSYSTEMD
	if (!d->sd_notify)
		return;
	d->sd_notify = false;
	sd_notify(0, "STOPPING=1\nSTATUS=shutting down");
	if (!uv_is_closing((uv_handle_t *)&d->sd_status))
		uv_close((uv_handle_t *)&d->sd_status, on_timer_closed);
#else
	(void)d;
#endif
}
