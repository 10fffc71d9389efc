/* SPDX-License-Identifier: MIT */
/*
 * server.c - the listening socket: one Unix stream socket, mode 0660 (or
 * the configuration's mode and group), or the one systemd passed (socket
 * activation, systemd.c: used as it is and never unlinked).
 *
 * Before the segment is touched, spd_server_check_path() makes sure no
 * other daemon serves the path: a socket file that accepts a connection
 * belongs to a live daemon (exit with an error); one that refuses it was
 * left by a daemon that died, and is removed.  A default path's directory
 * is created (0755 under /run, else 0700, and must then belong to us).
 *
 * Each accepted connection becomes a session (session.c).  Its peer's
 * credentials come from SO_PEERCRED at accept: the pid, uid and gid the
 * kernel vouches for, whatever the client claims later.  The allow-list
 * (the daemon's uid, root, --allow-uid, --allow-gid) decides whether the
 * peer may use the daemon; one that may not gets -EACCES for its first
 * request and is disconnected (session.c, rpc.c).  Beyond --max-connections
 * a new connection is closed at once.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "shmpoold.h"

/* Is one of @uid's supplementary groups (user database) on the allow-list? */
static bool supplementary_allowed(const struct spd_daemon *d, uint32_t uid)
{
	struct passwd pw, *res = NULL;
	gid_t groups[256];
	int ng = 256;
	char buf[4096];

	if (getpwuid_r((uid_t)uid, &pw, buf, sizeof(buf), &res) || !res)
		return false;
	if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &ng) < 0)
		ng = 256; /* more than fit: look at those that did */
	for (int k = 0; k < ng && k < 256; k++)
		for (unsigned i = 0; i < d->cfg.nr_allow_gid; i++)
			if (d->cfg.allow_gid[i] == (uint32_t)groups[k])
				return true;
	return false;
}

/**
 * spd_server_allowed() - may this peer use the daemon?
 * @d: the daemon.  @uid: @gid: the peer's credentials (SO_PEERCRED).
 *
 * A group on the allow-list admits its members: the peer's primary gid,
 * or a supplementary group of the peer's user in the user database.
 * May sleep (a user database lookup, only when groups are allowed and the
 * primary gid did not match).
 * Return: true when @uid or one of its groups is on the allow-list.
 */
bool spd_server_allowed(const struct spd_daemon *d, uint32_t uid, uint32_t gid)
{
	for (unsigned i = 0; i < d->cfg.nr_allow_uid; i++)
		if (d->cfg.allow_uid[i] == uid)
			return true;
	for (unsigned i = 0; i < d->cfg.nr_allow_gid; i++)
		if (d->cfg.allow_gid[i] == gid)
			return true;
	return d->cfg.nr_allow_gid && supplementary_allowed(d, uid);
}

/* Create the last directory of a default socket path, or check the one there. */
static int make_socket_dir(const char *sock)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	bool run = strncmp(sock, "/run/", 5) == 0;
	mode_t mode = run ? 0755 : 0700;
	struct stat st;
	char *slash;

	snprintf(dir, sizeof(dir), "%s", sock);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, mode) == 0) {
		spd_info("created socket directory %s (mode %04o)", dir, (unsigned)mode);
		return 0;
	}
	if (errno != EEXIST) {
		spd_error("cannot create socket directory %s: %s", dir, strerror(errno));
		return -errno;
	}
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		spd_error("socket directory %s is not a directory", dir);
		return -ENOTDIR;
	}
	/* a directory under /tmp someone else made could hand our socket to them */
	if (!run && (st.st_uid != geteuid() || (st.st_mode & 022))) {
		spd_error("socket directory %s belongs to uid %u or is writable by others; "
			  "remove it or pass --socket", dir, (unsigned)st.st_uid);
		return -EPERM;
	}
	return 0;
}

/**
 * spd_server_check_path() - make sure the socket path is ours to take.
 * @d: the daemon, options parsed.
 *
 * Creates a default path's directory; removes a stale socket left by a
 * daemon that died.  May sleep (connects to the path).
 * Return: 0, or a negative errno after logging why: another daemon is
 * listening (-EADDRINUSE), the path is not a socket (-EEXIST), ...
 */
int spd_server_check_path(struct spd_daemon *d)
{
	const char *path = d->cfg.socket_path;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, rc;

	if (d->cfg.socket_default) {
		rc = make_socket_dir(path);
		if (rc)
			return rc;
	}
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		spd_error("socket %s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISSOCK(st.st_mode)) {
		spd_error("%s exists and is not a socket; remove it or pass another --socket",
			  path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		spd_error("socket(): %s", strerror(errno));
		return -errno;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (rc == 0) {
		close(fd);
		spd_error("another shmpoold is already listening on %s", path);
		return -EADDRINUSE;
	}
	rc = errno;
	close(fd);
	if (rc != ECONNREFUSED) {
		spd_error("cannot probe socket %s: %s", path, strerror(rc));
		return -rc;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		spd_error("cannot remove stale socket %s: %s", path, strerror(errno));
		return -errno;
	}
	spd_info("removed stale socket %s (nothing listened on it)", path);
	return 0;
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct spd_daemon *d = listener->data;
	struct spd_session *ss;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	if (status < 0) {
		spd_warn("accept: %s", uv_strerror(status));
		return;
	}
	ss = spd_session_create(d);
	if (!ss) {
		spd_warn("accept: out of memory");
		return;
	}
	if (uv_accept(listener, (uv_stream_t *)&ss->pipe) < 0) {
		spd_session_close(ss, "accept failed");
		return;
	}
	if (uv_fileno((uv_handle_t *)&ss->pipe, &fd) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		spd_warn("connection %llu: no peer credentials: %s",
			 (unsigned long long)ss->conn_id, strerror(errno));
		spd_session_close(ss, "no peer credentials");
		return;
	}
	ss->pid = cred.pid;
	ss->uid = cred.uid;
	ss->gid = cred.gid;
	ss->allowed = spd_server_allowed(d, cred.uid, cred.gid);
	if (d->nr_sessions > d->cfg.max_connections) {
		spd_warn("connection %llu (pid %d uid %u): refused, already %u connections "
			 "(--max-connections)", (unsigned long long)ss->conn_id, ss->pid, ss->uid,
			 d->cfg.max_connections);
		spd_session_close(ss, "too many connections");
		return;
	}
	if (!ss->allowed)
		spd_warn("connection %llu: pid %d uid %u gid %u is not on the allow-list",
			 (unsigned long long)ss->conn_id, ss->pid, ss->uid, ss->gid);
	else
		spd_debug("connection %llu: pid %d uid %u gid %u", (unsigned long long)ss->conn_id,
			  ss->pid, ss->uid, ss->gid);
	if (spd_session_start(ss))
		spd_session_close(ss, "cannot read");
	else
		spd_session_read_now(ss); /* the Hello is most often there already */
}

/* Serve on the socket systemd bound; learn its path for the log and Stats. */
static int adopt_socket(struct spd_daemon *d)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	int rc = uv_pipe_open(&d->listener, d->cfg.listen_fd);

	if (rc) {
		spd_error("cannot use the socket systemd passed: %s", uv_strerror(rc));
		return rc;
	}
	memset(&sa, 0, sizeof(sa));
	if (getsockname(d->cfg.listen_fd, (struct sockaddr *)&sa, &len) == 0 &&
	    len > offsetof(struct sockaddr_un, sun_path) && sa.sun_path[0]) {
		if (d->cfg.socket_set && strcmp(d->cfg.socket_path, sa.sun_path) != 0)
			spd_warn("the configured socket %s is ignored: systemd passed %s",
				 d->cfg.socket_path, sa.sun_path);
		snprintf(d->cfg.socket_path, sizeof(d->cfg.socket_path), "%.*s",
			 (int)(sizeof(sa.sun_path) - 1), sa.sun_path);
	}
	return 0;
}

/**
 * spd_server_start() - bind the socket (its mode and group) and listen, or
 * adopt the socket systemd passed.
 * @d: the daemon; spd_server_check_path() succeeded (not needed for an
 *     inherited socket).
 *
 * Does not sleep.
 * Return: 0 or a negative errno, logged.
 */
int spd_server_start(struct spd_daemon *d)
{
	const char *path = d->cfg.socket_path;
	int rc;

	rc = uv_pipe_init(d->loop, &d->listener, 0);
	if (rc) {
		spd_error("uv_pipe_init: %s", uv_strerror(rc));
		return rc;
	}
	d->listener.data = d;
	if (d->cfg.listen_fd >= 0) {
		rc = adopt_socket(d);
		if (rc)
			return rc;
		d->listening = true;
		goto listen;
	}
	d->listening = true;
	rc = uv_pipe_bind(&d->listener, path);
	if (rc) {
		spd_error("cannot bind %s: %s", path, uv_strerror(rc));
		d->listening = false; /* never unlink a path we did not create */
		return rc;
	}
	/* nobody can connect before listen(), so mode and group are set in time */
	if (d->cfg.socket_gid_set && chown(path, (uid_t)-1, d->cfg.socket_gid) < 0) {
		rc = -errno;
		spd_error("chown :%u %s: %s", d->cfg.socket_gid, path, strerror(errno));
		return rc;
	}
	if (chmod(path, d->cfg.socket_mode) < 0) {
		rc = -errno;
		spd_error("chmod %04o %s: %s", d->cfg.socket_mode, path, strerror(errno));
		return rc;
	}
listen:
	rc = uv_listen((uv_stream_t *)&d->listener, 128, on_connection);
	if (rc) {
		spd_error("listen on %s: %s", path, uv_strerror(rc));
		return rc;
	}
	return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
	(void)h;
}

/**
 * spd_server_stop() - stop listening, close every session, unlink the socket.
 * @d: the daemon.
 *
 * Sessions closed here keep their slots ALIVE (d->stopping): their clients
 * resume them when the daemon is back.  Does not sleep.
 */
void spd_server_stop(struct spd_daemon *d)
{
	if (d->listening) {
		d->listening = false;
		uv_close((uv_handle_t *)&d->listener, on_listener_closed);
		if (d->cfg.listen_fd < 0 && unlink(d->cfg.socket_path) < 0 && errno != ENOENT)
			spd_warn("cannot remove socket %s: %s", d->cfg.socket_path,
				 strerror(errno));
	}
	while (d->sessions)
		spd_session_close(d->sessions, "daemon shutting down");
}
