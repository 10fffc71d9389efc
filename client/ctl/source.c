/* SPDX-License-Identifier: MIT */
/*
 * source.c - where shmpoolctl's views come from.
 *
 * The daemon: connect to its socket, say Hello (the segment fd the daemon
 * passes with the reply is closed at once: shmpoolctl reads everything
 * through requests), send requests one at a time with libshmpool's framing
 * (client/wire.c), and say Goodbye at the end.  Every reply must come
 * within CTL_TIMEOUT_MS (SO_RCVTIMEO), so a wedged daemon is an error, not
 * a hang.
 *
 * The socket: --socket, else $SHMPOOL_SOCKET, else the library's default
 * (/run/shmpool/shmpool.sock as root, else $XDG_RUNTIME_DIR/shmpool/
 * shmpool.sock, else /tmp/shmpool-$UID/shmpool.sock); a non-root user with
 * no daemon of their own at that default falls back to the system daemon's
 * /run/shmpool/shmpool.sock.  Whatever fails to connect is named in the
 * message, with exit code 3.
 *
 * Offline (--segment): offline.c answers Stats and Check from a read-only
 * mapping; requests that change the segment are refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"
#include "internal.h" /* libshmpool's framing: shmp__wire_send/recv */

#define SYSTEM_SOCKET "/run/shmpool/shmpool.sock"

static void default_socket(char *buf, size_t size)
{
	const char *env = getenv("SHMPOOL_SOCKET"), *xdg = getenv("XDG_RUNTIME_DIR");
	struct stat st;

	if (env && *env) {
		snprintf(buf, size, "%s", env);
		return;
	}
	if (geteuid() == 0) {
		snprintf(buf, size, "%s", SYSTEM_SOCKET);
		return;
	}
	if (xdg && *xdg == '/')
		snprintf(buf, size, "%s/shmpool/shmpool.sock", xdg);
	else
		snprintf(buf, size, "/tmp/shmpool-%u/shmpool.sock", (unsigned)geteuid());
	if (stat(buf, &st) < 0 && stat(SYSTEM_SOCKET, &st) == 0)
		snprintf(buf, size, "%s", SYSTEM_SOCKET); /* the system daemon */
}

static int connect_to(struct ctl_src *src)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = CTL_TIMEOUT_MS / 1000 };
	int fd;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return sp_err(-errno, "socket(): %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)); /* sends: ctl_call() */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", src->socket_path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno;

		close(fd);
		return sp_err(-err, "%s%s", strerror(err),
			      err == ENOENT ? " (is shmpoold running? --socket or $SHMPOOL_SOCKET "
					      "name another socket)"
			      : err == ECONNREFUSED ? " (nothing listens there: shmpoold is not "
						      "running)"
			      : err == EACCES ? " (no permission: the socket's group may "
						"connect)" : "");
	}
	src->sock = fd;
	return 0;
}

static int hello(struct ctl_src *src)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__Hello h = SHMPOOL__HELLO__INIT;
	Shmpool__Response *r = NULL;
	int rc;

	h.protocol_version = CTL_PROTOCOL_VERSION;
	h.client_name = "shmpoolctl";
	h.pid = (int32_t)getpid();
	q.op_case = SHMPOOL__REQUEST__OP_HELLO;
	q.hello = &h;
	rc = ctl_call(src, &q, &r);
	if (rc == 0 && r->payload_case != SHMPOOL__RESPONSE__PAYLOAD_HELLO)
		rc = sp_err(-EPROTO, "the daemon answered Hello without a HelloReply");
	else if (rc && r)
		rc = sp_err(rc, "%s", r->message && *r->message ? r->message : sp_strerror(rc));
	if (rc == 0)
		src->slot = r->hello->client_slot;
	if (r)
		shmpool__response__free_unpacked(r, NULL);
	return rc;
}

/**
 * ctl_src_open() - connect to the daemon (Hello), or map --segment read-only.
 * @src: the source to fill.  @o: the command line.
 *
 * May sleep (connects, waits for the Hello reply).
 * Return: 0, or a negative errno with sp_errmsg() saying why; report it
 * with ctl_report() (exit 3 for the daemon, 1 for a segment).
 */
int ctl_src_open(struct ctl_src *src, const struct ctl_opts *o)
{
	int rc;

	memset(src, 0, sizeof(*src));
	src->sock = -1;
	src->slot = UINT32_MAX;
	if (o->segment) {
		src->offline = true;
		snprintf(src->seg_name, sizeof(src->seg_name), "%s", o->segment);
		return ctl_offline_open(o->segment, &src->seg);
	}
	if (o->socket) {
		if (!*o->socket || strlen(o->socket) >= sizeof(src->socket_path))
			return sp_err(-ENAMETOOLONG, "not a usable Unix socket path");
		snprintf(src->socket_path, sizeof(src->socket_path), "%s", o->socket);
	} else {
		default_socket(src->socket_path, sizeof(src->socket_path));
	}
	src->rbuf = calloc(1, sizeof(*src->rbuf));
	if (!src->rbuf)
		return sp_err(-ENOMEM, "out of memory");
	rc = connect_to(src);
	if (rc == 0)
		rc = hello(src);
	if (rc && src->sock >= 0) {
		close(src->sock);
		src->sock = -1;
	}
	return rc;
}

/**
 * ctl_src_close() - Goodbye and close, or unmap the segment.
 * @src: the source (opened or not).
 *
 * May sleep (waits for the Goodbye reply, bounded by the timeout).
 */
void ctl_src_close(struct ctl_src *src)
{
	if (src->sock >= 0) {
		Shmpool__Request q = SHMPOOL__REQUEST__INIT;
		Shmpool__Goodbye g = SHMPOOL__GOODBYE__INIT;
		Shmpool__Response *r = NULL;

		q.op_case = SHMPOOL__REQUEST__OP_GOODBYE;
		q.goodbye = &g;
		if (ctl_call(src, &q, &r) == 0 || r)
			shmpool__response__free_unpacked(r, NULL);
		close(src->sock);
		src->sock = -1;
	}
	free(src->rbuf);
	src->rbuf = NULL;
	if (src->seg) {
		sp_seg_detach(src->seg);
		src->seg = NULL;
	}
}

/**
 * ctl_call() - one request, one response.
 * @src: the source.  @q: the request (its id is set here).
 * @out: the response, or NULL when none arrived; free it with
 *       shmpool__response__free_unpacked().
 *
 * May sleep (bounded by CTL_TIMEOUT_MS).
 * Return: 0; the response's negative status (*@out set, its message says
 * why); or a negative errno of the transport (*@out NULL, sp_errmsg()).
 */
int ctl_call(struct ctl_src *src, Shmpool__Request *q, Shmpool__Response **out)
{
	Shmpool__Response *r = NULL;
	int rc;

	*out = NULL;
	if (src->offline) {
		rc = ctl_offline_call(src->seg, q, &r);
	} else {
		q->id = ++src->next_id;
		rc = shmp__wire_send(src->sock, q, CTL_TIMEOUT_MS);
		if (rc == 0)
			rc = shmp__wire_recv(src->sock, src->rbuf, &r, NULL);
		if (rc == 0 && r->id != q->id) {
			unsigned long long got = r->id;

			shmpool__response__free_unpacked(r, NULL);
			r = NULL;
			rc = sp_err(-EPROTO, "the reply to request %llu came for request %llu",
				    (unsigned long long)q->id, got);
		}
	}
	if (rc)
		return rc;
	*out = r;
	return r->status;
}

/**
 * ctl_stats() - a Stats response (segment, buddy, caches, pools, clients).
 * @src: the source.  @out: the response.
 *
 * May sleep.
 * Return: as ctl_call().
 */
int ctl_stats(struct ctl_src *src, Shmpool__Response **out)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__Stats st = SHMPOOL__STATS__INIT;
	int rc;

	q.op_case = SHMPOOL__REQUEST__OP_STATS;
	q.stats = &st;
	rc = ctl_call(src, &q, out);
	if (rc == 0 && (*out)->payload_case != SHMPOOL__RESPONSE__PAYLOAD_STATS) {
		shmpool__response__free_unpacked(*out, NULL);
		*out = NULL;
		return sp_err(-EPROTO, "the daemon answered Stats without a StatsReply");
	}
	if (rc == 0 && (!(*out)->stats->segment || !(*out)->stats->buddy)) {
		shmpool__response__free_unpacked(*out, NULL);
		*out = NULL;
		return sp_err(-EPROTO, "the Stats reply lacks the segment or buddy part");
	}
	return rc;
}

/**
 * ctl_exit_code() - the exit code of a failure.
 * @src: the source.  @r: the daemon's response when it answered with an
 *       error, else NULL (the transport failed).
 *
 * Does not sleep.
 * Return: CTL_EXIT_FAIL for an answer or an offline segment, else
 * CTL_EXIT_UNREACHABLE (the daemon cannot be reached or went away).
 */
int ctl_exit_code(const struct ctl_src *src, const Shmpool__Response *r)
{
	return r || src->offline ? CTL_EXIT_FAIL : CTL_EXIT_UNREACHABLE;
}

/**
 * ctl_report() - print why something failed, on stderr.
 * @src: the source.  @err: the negative errno.
 * @r: the daemon's response when it answered with an error, else NULL.
 * @what: what was being done ("pool frames", "Hello").
 *
 * Does not sleep.
 * Return: the exit code (ctl_exit_code()).
 */
int ctl_report(const struct ctl_src *src, int err, const Shmpool__Response *r,
	       const char *what)
{
	if (r) {
		fprintf(stderr, "shmpoolctl: %s: %s (%s)\n", what,
			r->message && *r->message ? r->message : sp_strerror(err),
			sp_err_name(err));
	} else if (src->offline) {
		fprintf(stderr, "shmpoolctl: segment %s: %s\n", src->seg_name, sp_errmsg());
	} else {
		fprintf(stderr, "shmpoolctl: cannot talk to shmpoold on %s: %s\n",
			src->socket_path[0] ? src->socket_path : "(no socket)", sp_errmsg());
	}
	return ctl_exit_code(src, r);
}
