/* SPDX-License-Identifier: MIT */
/*
 * client.c - sessions: connect, Hello, the segment fd, resume, Goodbye,
 * fork detection.
 *
 * Connecting: a Unix stream socket to the daemon; Hello names the protocol
 * version and this process; the daemon registers a client slot for the
 * peer's SO_PEERCRED pid and answers with HelloReply (segment name and size,
 * layout version, slot, session token), passing the segment's fd as
 * SCM_RIGHTS on that frame.  We map the fd (sp_seg_attach validates the
 * whole header), check that the slot really is ours, and make the mapping
 * allocate as that slot.  From here on the data path (pool.c, cache.c,
 * malloc.c) needs the daemon no more.  The kmalloc classes' geometry for
 * shmp_malloc's fast path is taken at the first shmp_malloc or shmp_free
 * (shmp__kgeo_take()), not here: connect touches only the header page and
 * the slot.
 *
 * Resuming: the socket stays open for the whole session; its closing
 * without Goodbye tells the daemon we died.  When instead the daemon dies,
 * the connection is marked broken (sock = -1) as soon as a control call
 * notices; the next control call reconnects with Hello{resume, slot,
 * token}.  The daemon resumes the slot only for the same process (pid and
 * start time).  The mapping is kept, so the fd passed on resume must be the
 * same segment file (same device and inode, name and size); anything else
 * marks the session stale (-ESTALE) for good.
 *
 * fork(): a pthread_atfork() child handler bumps shmp__fork_gen; a session
 * records the value at connect, so a child sees a different one and every
 * call on an inherited handle fails with -ECHILD.  The check is one load.
 * The same handler forgets the process's cached pid (self_pid()), so
 * connect asks the kernel once per process, not once per session.
 * shmp_disconnect() in such a child touches neither the socket's peer nor
 * the session lock (another parent thread may have held it at fork time).
 *
 * Closing a connection without Goodbye tells the daemon that its process
 * died, so a live session's connection is only closed when the daemon broke
 * the protocol (a malformed frame): a reply that times out is awaited later
 * instead (rpc.c), and a resuming Hello waits without a timeout.
 *
 * Locking: c->lock serialises session_open, the socket and disconnect.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

unsigned shmp__fork_gen;

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* getpid() of this process once asked, else 0; forgotten in a child */
static pid_t cached_pid;

static void on_fork_child(void)
{
	__atomic_fetch_add(&shmp__fork_gen, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&cached_pid, 0, __ATOMIC_RELAXED);
	shmp__tc_fork_child();
}

/*
 * This process's pid without a system call from the second time on.  Only
 * after atfork_init() ran: a child made by fork() must ask again.  A child
 * made without the atfork handlers (a raw clone()) inherits the parent's
 * value, as it inherits fork_gen unchanged: libshmpool does not support
 * it.  Does not sleep.
 */
static pid_t self_pid(void)
{
	pid_t pid = __atomic_load_n(&cached_pid, __ATOMIC_RELAXED);

	if (!pid) {
		pid = getpid();
		__atomic_store_n(&cached_pid, pid, __ATOMIC_RELAXED);
	}
	return pid;
}

static void atfork_init(void)
{
	pthread_atfork(NULL, NULL, on_fork_child);
}

/**
 * shmp__usable_slow() - why @c may not be used; see shmp__usable().
 * @c: a session handle or NULL.
 *
 * Does not sleep.
 * Return: 0, -EINVAL, -ECHILD, -ENOTCONN or -ESTALE, with the message
 * recorded.
 */
int shmp__usable_slow(const shmp_client *c)
{
	if (!c)
		return sp_err(-EINVAL, "NULL client handle");
	if (c->fork_gen != __atomic_load_n(&shmp__fork_gen, __ATOMIC_RELAXED))
		return sp_err(-ECHILD,
			      "handle inherited across fork (connected in pid %d, this is pid %d): "
			      "call shmp_connect in the child",
			      (int)c->pid, (int)getpid());
	if (!c->seg)
		return sp_err(-ENOTCONN, "the session was closed by shmp_disconnect");
	if (c->stale)
		return sp_err(-ESTALE, "the daemon did not resume this session (slot %u): "
				       "disconnect and connect again", c->slot);
	return 0;
}

/**
 * shmp__client_get() - take a reference to a session (for a new handle).
 * @c: session.
 *
 * Does not sleep.
 */
void shmp__client_get(shmp_client *c)
{
	__atomic_fetch_add(&c->refs, 1, __ATOMIC_RELAXED);
}

/**
 * shmp__client_put() - drop a reference; the last one frees the session.
 * @c: session, already disconnected (seg unmapped) if this is the last
 *     reference.
 *
 * Does not sleep.
 */
void shmp__client_put(shmp_client *c)
{
	if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL))
		return;
	/* in a child the lock may be a copy held by a parent thread: leave it */
	if (c->fork_gen == __atomic_load_n(&shmp__fork_gen, __ATOMIC_RELAXED))
		pthread_mutex_destroy(&c->lock);
	free(c->socket_path);
	free(c);
}

/* $SHMPOOL_SOCKET, /run/shmpool as root, $XDG_RUNTIME_DIR, /tmp/shmpool-$UID */
static int default_socket_path(char *buf, size_t n)
{
	const char *env = getenv("SHMPOOL_SOCKET"), *xdg = getenv("XDG_RUNTIME_DIR");
	int len;

	if (env && *env)
		len = snprintf(buf, n, "%s", env);
	else if (geteuid() == 0)
		len = snprintf(buf, n, "/run/shmpool/shmpool.sock");
	else if (xdg && *xdg)
		len = snprintf(buf, n, "%s/shmpool/shmpool.sock", xdg);
	else
		len = snprintf(buf, n, "/tmp/shmpool-%u/shmpool.sock", (unsigned)geteuid());
	if (len < 0 || (size_t)len >= n)
		return sp_err(-ENAMETOOLONG, "default socket path is too long");
	return 0;
}

/*
 * Bound every receive on @sock to @ms milliseconds (<= 0: none).  Sends
 * take the bound as an argument (shmp__wire_send() waits in poll() only
 * when the socket is full), which saves an SO_SNDTIMEO per connect.
 */
static void set_timeout(int sock, int ms)
{
	struct timeval tv = { 0 };

	if (ms > 0) {
		tv.tv_sec = ms / 1000;
		tv.tv_usec = (ms % 1000) * 1000;
	}
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static int dial(shmp_client *c, int *out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int sock, err;

	if (strlen(c->socket_path) >= sizeof(sa.sun_path))
		return sp_err(-ENAMETOOLONG, "socket path %s is longer than %zu bytes",
			      c->socket_path, sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, c->socket_path, strlen(c->socket_path) + 1);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return sp_err(-errno, "socket: %s", strerror(errno));
	set_timeout(sock, c->timeout_ms);
	while (connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = errno;
		if (err == EINTR)
			continue;
		close(sock);
		if (err == ENOENT || err == ECONNREFUSED)
			return sp_err(-ECONNREFUSED, "no daemon listening at %s (%s): is shmpoold running?",
				      c->socket_path, strerror(err));
		if (err == EACCES || err == EPERM)
			return sp_err(-EACCES, "no permission to connect to %s", c->socket_path);
		return sp_err(-err, "connect(%s): %s", c->socket_path, strerror(err));
	}
	*out = sock;
	return 0;
}

/* One Hello exchange on a fresh socket; *fd gets the segment fd or -1. */
static int hello(shmp_client *c, int sock, bool resume, Shmpool__Response **resp, int *fd)
{
	Shmpool__Request req = SHMPOOL__REQUEST__INIT;
	Shmpool__Hello h = SHMPOOL__HELLO__INIT;
	int rc;

	h.protocol_version = SHMP_PROTOCOL_VERSION;
	h.client_name = c->name;
	h.pid = (int32_t)c->pid;
	if (resume) {
		h.resume = true;
		h.resume_slot = c->slot;
		h.session_token = c->token;
	}
	req.id = ++c->next_id;
	req.op_case = SHMPOOL__REQUEST__OP_HELLO;
	req.hello = &h;
	rc = shmp__wire_send(sock, &req, resume ? 0 : c->timeout_ms);
	if (!rc)
		rc = shmp__wire_recv(sock, &c->rbuf, resp, fd);
	if (rc == -EPIPE || rc == -ECONNRESET)
		return sp_err(-ENOTCONN, "the daemon closed the connection during Hello (%s)",
			      sp_errmsg());
	if (rc)
		return rc;
	if ((*resp)->status) {
		rc = (*resp)->status < 0 ? (*resp)->status : -EPROTO;
		rc = sp_err(rc, "daemon refused Hello: %s",
			    *(*resp)->message ? (*resp)->message : sp_strerror(rc));
	} else if ((*resp)->payload_case != SHMPOOL__RESPONSE__PAYLOAD_HELLO) {
		rc = sp_err(-EPROTO, "daemon answered Hello without a HelloReply");
	} else if ((*resp)->hello->protocol_version != SHMP_PROTOCOL_VERSION) {
		rc = sp_err(-EPROTONOSUPPORT, "daemon speaks protocol %u, this library %u",
			    (*resp)->hello->protocol_version, SHMP_PROTOCOL_VERSION);
	} else if ((*resp)->hello->layout_version != SP_LAYOUT_VERSION) {
		rc = sp_err(-EPROTONOSUPPORT, "segment layout %u, this library knows %u",
			    (*resp)->hello->layout_version, SP_LAYOUT_VERSION);
	}
	if (rc) {
		shmpool__response__free_unpacked(*resp, NULL);
		*resp = NULL;
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
	}
	return rc;
}

/*
 * Was @slot registered for this process (@pid)?  The daemon records the pid
 * it sees (SO_PEERCRED), which differs from ours across pid namespaces; the
 * process start time (clock ticks since boot) does not.  The daemon records
 * that only after its reply (0 until then): in that short window a slot
 * that carries the reply's @token is taken as ours.
 */
static bool slot_is_mine(struct sp_seg *seg, uint32_t slot, pid_t pid, uint64_t token)
{
	const struct sp_client *cl = &sp_clients(seg)[slot];
	uint64_t start, known;

	if (cl->pid == (uint32_t)pid)
		return true;
	known = __atomic_load_n(&cl->start_time, __ATOMIC_RELAXED);
	if (!known)
		return token && cl->token == token;
	start = sp_proc_start_time((int)pid);
	return start && known == start;
}

/* First Hello: map the segment and take the slot. */
static int attach(shmp_client *c, const Shmpool__HelloReply *hr, int fd)
{
	struct sp_seg *seg;
	int rc;

	if (fd < 0)
		return sp_err(-EPROTO, "daemon did not pass the segment's descriptor");
	rc = sp_seg_attach(NULL, fd, 0, &seg); /* owns fd from here on */
	if (rc)
		return rc;
	if (seg->size != hr->segment_size)
		rc = sp_err(-EPROTO, "daemon says the segment has %llu bytes, it has %llu",
			    (unsigned long long)hr->segment_size, (unsigned long long)seg->size);
	else if (hr->client_slot >= seg->geo.max_clients ||
		 !slot_is_mine(seg, hr->client_slot, c->pid, hr->session_token))
		rc = sp_err(-EPROTO, "daemon gave slot %u, which is not registered to pid %d",
			    hr->client_slot, (int)c->pid);
	else
		rc = sp_client_use_slot(seg, hr->client_slot);
	if (rc) {
		sp_seg_detach(seg);
		return rc;
	}
	c->seg = seg;
	c->slot = hr->client_slot;
	c->token = hr->session_token;
	c->seg_size = seg->size;
	c->seg_dev = seg->dev; /* from sp_seg_attach()'s fstat: one is enough */
	c->seg_ino = seg->ino;
	snprintf(c->seg_name, sizeof(c->seg_name), "%s", hr->segment_name);
	return 0;
}

/**
 * shmp__kgeo_take() - copy the kmalloc classes' geometry, once a session.
 * @c: a usable session.
 *
 * One checked snapshot per class (ksnap[], which the locked path hands
 * the core instead of taking one per call) and, with magazines, the fast
 * path's copy made from it (kgeo[]); all or none.  Left out of connect: 23
 * snapshots of descriptors on a page the connect touches nowhere else (a
 * page fault) cost about as much as the rest of the attach, and a session
 * that only uses pools never needs them.  The first thread here takes
 * them; one that comes while it does goes without meanwhile (the core
 * then snapshots per call).  Does not sleep.
 */
void shmp__kgeo_take(shmp_client *c)
{
	struct sp_seg *seg = c->seg;
	bool ok;

	if (__atomic_exchange_n(&c->kgeo_taken, true, __ATOMIC_ACQ_REL))
		return;
	ok = sp_nr_kmalloc_classes == SP_NR_KMALLOC && seg->geo.nr_kmalloc == SP_NR_KMALLOC;
	for (unsigned i = 0; ok && i < SP_NR_KMALLOC; i++) {
		ok = sp_cache_snapshot(seg, &sp_caches(seg)[i], &c->ksnap[i]) == 0;
		if (ok)
			sp_mag_geo_of(seg, &c->ksnap[i], &c->kgeo[i]);
	}
	/* paired with the acquires in ksnap() (malloc.c) and shmp__kfast() */
	__atomic_store_n(&c->ksnap_ok, ok, __ATOMIC_RELEASE);
	__atomic_store_n(&c->kfast, ok && c->magazines, __ATOMIC_RELEASE);
}

/*
 * The daemon will not resume this session: it serves another segment, or
 * no longer counts our slot as ours (it may have released it, and the
 * magazine sets in it).  Every call fails with -ESTALE from now on, the
 * data path too: the fast paths stop matching (the sid is retired) and
 * the slow ones ask shmp__usable().  Nothing of the slot is touched again
 * (shmp_disconnect() sends no Goodbye and flushes no magazine).
 */
static void mark_stale(shmp_client *c)
{
	c->stale = true;
	__atomic_store_n(&c->sid, SHMP_SID_GONE, __ATOMIC_RELAXED);
}

/* Resumed Hello: the daemon must be serving our segment and our slot. */
static int resume_check(shmp_client *c, const Shmpool__HelloReply *hr, int fd)
{
	struct stat st;
	bool same = true;

	if (fd >= 0) {
		same = fstat(fd, &st) == 0 && st.st_dev == c->seg_dev && st.st_ino == c->seg_ino;
		close(fd);
	}
	if (!same || hr->segment_size != c->seg_size || strcmp(hr->segment_name, c->seg_name)) {
		mark_stale(c);
		return sp_err(-ESTALE, "the daemon came back with another segment (%s, %llu bytes; "
				       "this session maps %s, %llu bytes): disconnect and connect again",
			      hr->segment_name, (unsigned long long)hr->segment_size, c->seg_name,
			      (unsigned long long)c->seg_size);
	}
	if (!hr->resumed || hr->client_slot != c->slot) {
		mark_stale(c);
		return sp_err(-ESTALE, "the daemon did not resume slot %u (offered %u): "
				       "disconnect and connect again",
			      c->slot, hr->client_slot);
	}
	if (hr->session_token)
		c->token = hr->session_token;
	return 0;
}

/**
 * shmp__session_open_locked() - connect and say Hello (or resume).
 * @c: session, c->lock held (or not yet shared).  @resume: reconnect an
 *     existing session instead of starting one.
 *
 * May sleep.
 * Return: 0 with c->sock connected; -ECONNREFUSED when no daemon listens;
 * -ESTALE (resume refused or another segment: c->stale is set); the
 * daemon's status otherwise.
 */
int shmp__session_open_locked(shmp_client *c, bool resume)
{
	Shmpool__Response *resp = NULL;
	int sock = -1, fd = -1, rc;

	rc = dial(c, &sock);
	if (rc)
		return rc;
	shmp__rbuf_reset(&c->rbuf); /* a new stream */
	/*
	 * A resuming Hello must not time out: closing its connection would
	 * tell the daemon, once it gets to it, that this process died, and it
	 * would orphan (or reclaim) what we hold.  Wait for the answer.
	 */
	if (resume)
		set_timeout(sock, 0);
	rc = hello(c, sock, resume, &resp, &fd);
	if (resume)
		set_timeout(sock, c->timeout_ms);
	if (rc == -EPERM && resume) {
		mark_stale(c);
		rc = sp_err(-ESTALE, "the daemon refused to resume slot %u (%s): "
				     "disconnect and connect again",
			    c->slot, sp_errmsg());
	}
	if (!rc)
		rc = resume ? resume_check(c, resp->hello, fd) : attach(c, resp->hello, fd);
	if (resp)
		shmpool__response__free_unpacked(resp, NULL);
	if (rc) {
		close(sock);
		return rc;
	}
	c->sock = sock;
	return 0;
}

/**
 * shmp__session_break_locked() - drop a connection that is out of step.
 * @c: session, c->lock held.
 *
 * The next control call reconnects.  Does not sleep.
 */
void shmp__session_break_locked(shmp_client *c)
{
	if (c->sock >= 0)
		close(c->sock);
	c->sock = -1;
	c->pending = 0;
	shmp__rbuf_reset(&c->rbuf);
}

int shmp_connect(const char *socket_path, const char *client_name, shmp_client **out)
{
	return shmp_connect_ex(socket_path, client_name, NULL, out);
}

int shmp_connect_ex(const char *socket_path, const char *client_name,
		    const struct shmp_connect_opts *opts, shmp_client **out)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	shmp_client *c;
	int rc;

	if (!out)
		return sp_err(-EINVAL, "shmp_connect: NULL out pointer");
	*out = NULL;
	if (socket_path && !*socket_path)
		return sp_err(-EINVAL, "shmp_connect: empty socket path");
	if (!socket_path) {
		rc = default_socket_path(path, sizeof(path));
		if (rc)
			return rc;
		socket_path = path;
	}
	pthread_once(&atfork_once, atfork_init);
	c = calloc(1, sizeof(*c));
	if (!c || !(c->socket_path = strdup(socket_path))) {
		free(c);
		return sp_err(-ENOMEM, "out of process memory");
	}
	c->fork_gen = __atomic_load_n(&shmp__fork_gen, __ATOMIC_RELAXED);
	c->pid = self_pid(); /* atfork_init() ran: a child forgets it */
	snprintf(c->name, sizeof(c->name), "%s",
		 client_name ? client_name : program_invocation_short_name);
	c->timeout_ms = !opts || !opts->timeout_ms ? SHMP_DEFAULT_TIMEOUT_MS : opts->timeout_ms;
	c->magazines = !(opts && (opts->flags & SHMP_CONNECT_NO_MAGAZINES));
	if (getenv("SHMPOOL_MAGAZINES") && !strcmp(getenv("SHMPOOL_MAGAZINES"), "0"))
		c->magazines = false;
	c->sock = -1;
	c->refs = 1;
	pthread_mutex_init(&c->lock, NULL);
	rc = shmp__session_open_locked(c, false);
	if (rc) {
		shmp__client_put(c);
		return rc;
	}
	shmp__live_add(c);
	*out = c;
	return 0;
}

/* Goodbye, best effort: the daemon frees the slot (or keeps its orphans). */
static void goodbye_locked(shmp_client *c)
{
	Shmpool__Request req = SHMPOOL__REQUEST__INIT;
	Shmpool__Goodbye g = SHMPOOL__GOODBYE__INIT;
	Shmpool__Response *resp = NULL;

	req.id = ++c->next_id;
	req.op_case = SHMPOOL__REQUEST__OP_GOODBYE;
	req.goodbye = &g;
	if (shmp__wire_send(c->sock, &req, c->timeout_ms))
		return;
	/* late replies to requests that timed out come first */
	while (shmp__wire_recv(c->sock, &c->rbuf, &resp, NULL) == 0) {
		bool ours = resp->id == req.id;

		shmpool__response__free_unpacked(resp, NULL);
		if (ours)
			break;
	}
}

void shmp_disconnect(shmp_client *c)
{
	if (!c)
		return;
	if (c->fork_gen != __atomic_load_n(&shmp__fork_gen, __ATOMIC_RELAXED)) {
		/* an inherited copy: release this process's memory only */
		if (c->sock >= 0)
			close(c->sock);
		c->sock = -1;
		c->sid = SHMP_SID_GONE; /* no fast path matches it (shmp__fast_mag()) */
		sp_seg_detach(c->seg);
		c->seg = NULL;
		shmp__client_put(c);
		return;
	}
	shmp__tc_forget(c); /* this thread's magazines; the daemon frees the others' */
	shmp__live_del(c);
	c->sid = SHMP_SID_GONE; /* before the unmap: no fast path matches it any more */
	pthread_mutex_lock(&c->lock);
	if (c->seg) {
		/* only over a live connection: no reconnect just to say goodbye */
		if (c->sock >= 0 && !c->stale)
			goodbye_locked(c);
		shmp__session_break_locked(c);
		sp_seg_detach(c->seg);
		c->seg = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	shmp__client_put(c);
}
