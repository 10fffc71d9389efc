/* SPDX-License-Identifier: MIT */
/*
 * session.c - one client connection: framing, flow control, timeouts, close.
 *
 * Framing (proto/shmpool.proto): a 4-byte big-endian length, then that many
 * bytes of one protobuf message; the length is at most SPD_FRAME_MAX.  Bytes
 * arrive in any split: they collect in ss->buf until a whole frame is there,
 * which rpc.c then handles.  A larger length is answered with -EMSGSIZE and
 * the connection closed (the stream cannot be resynchronised).  A partial
 * frame with no new byte for --frame-timeout-ms closes the connection, so a
 * stuck or malicious peer cannot pin a session half-way through a frame.
 * A peer off the allow-list gets the same time to send its first request
 * (answered with -EACCES) before it is closed.
 *
 * Flow control: requests are handled one at a time, in order.  A response
 * goes out with uv_try_write(); only if the kernel cannot take it all is the
 * rest queued with uv_write(), and then no further request is handled, and
 * nothing more read, until that write completes.  So a client that never
 * reads its responses costs one queued response, and the Hello response,
 * which carries the segment fd as SCM_RIGHTS and must therefore be sent with
 * sendmsg() on the raw socket (uv_write2() passes only libuv handles),
 * always finds the write queue empty: nothing can overtake or interleave.
 *
 * Lifecycle (libuv's): create -> accept (server.c) -> start (reading) ->
 * close(why).  Closing a session whose Hello registered a slot, other than
 * by Goodbye or at daemon shutdown, means the client died: owner.c marks
 * the slot dead and reclaims what it can.  The memory is freed in the close
 * callback of the session's last handle, so callbacks still queued (a
 * cancelled write) find it intact.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "shmpoold.h"

#define SPD_BUF_INIT	8192u
#define SPD_READ_MIN	4096u
/* a partial frame never exceeds 4 + SPD_FRAME_MAX, so reads always find room */
#define SPD_BUF_MAX	(2u * (4u + SPD_FRAME_MAX) + SPD_READ_MIN)

struct spd_write {
	uv_write_t req;
	struct spd_session *ss;
	uint8_t *frame;
};

static void process(struct spd_session *ss);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void on_handle_closed(uv_handle_t *h)
{
	struct spd_session *ss = h->data;

	if (--ss->handles_open == 0) {
		free(ss->buf);
		free(ss);
	}
}

/**
 * spd_session_create() - a new session for a connection about to be accepted.
 * @d: the daemon.
 *
 * Initialises its pipe and timer handles and links it into d->sessions.
 * Does not sleep.
 * Return: the session, or NULL when out of memory.
 */
struct spd_session *spd_session_create(struct spd_daemon *d)
{
	struct spd_session *ss = calloc(1, sizeof(*ss));

	if (!ss)
		return NULL;
	ss->buf = malloc(SPD_BUF_INIT);
	if (!ss->buf) {
		free(ss);
		return NULL;
	}
	ss->cap = SPD_BUF_INIT;
	ss->d = d;
	ss->conn_id = ++d->next_conn_id;
	ss->pid = -1;
	uv_pipe_init(d->loop, &ss->pipe, 0);
	uv_timer_init(d->loop, &ss->idle);
	ss->pipe.data = ss->idle.data = ss;
	ss->handles_open = 2;
	ss->next = d->sessions;
	if (d->sessions)
		d->sessions->prev = ss;
	d->sessions = ss;
	d->nr_sessions++;
	return ss;
}

/**
 * spd_session_bind() - record that this connection holds @slot.
 * @ss: the session.  @slot: the client slot its Hello registered or resumed.
 *
 * Does not sleep.
 */
void spd_session_bind(struct spd_session *ss, uint32_t slot)
{
	ss->has_slot = true;
	ss->slot = slot;
	if (slot < ss->d->nr_by_slot) /* rpc.c refuses any other */
		ss->d->by_slot[slot] = ss;
}

/**
 * spd_session_unbind() - forget the session's slot (Goodbye, close).
 * @ss: the session.
 *
 * Does not sleep.
 */
void spd_session_unbind(struct spd_session *ss)
{
	if (ss->has_slot && spd_slot_session(ss->d, ss->slot) == ss)
		ss->d->by_slot[ss->slot] = NULL;
	ss->has_slot = false;
}

/**
 * spd_session_close() - close a connection (idempotent).
 * @ss: the session.  @why: for the log.
 *
 * A session holding a slot that did not say Goodbye is a dead client,
 * unless the daemon itself is shutting down.  May sleep (the core's
 * client-death handling takes shared locks).
 */
void spd_session_close(struct spd_session *ss, const char *why)
{
	struct spd_daemon *d = ss->d;

	if (ss->closing)
		return;
	ss->closing = true;
	if (ss->has_slot) {
		uint32_t slot = ss->slot;

		spd_info("connection %llu (slot %u, pid %d \"%s\") closed: %s",
			 (unsigned long long)ss->conn_id, slot, ss->pid, ss->name, why);
		spd_session_unbind(ss);
		if (!d->stopping)
			spd_owner_client_died(d, slot, why);
	} else {
		spd_debug("connection %llu (pid %d) closed: %s", (unsigned long long)ss->conn_id,
			  ss->pid, why);
	}
	if (ss->prev)
		ss->prev->next = ss->next;
	else
		d->sessions = ss->next;
	if (ss->next)
		ss->next->prev = ss->prev;
	d->nr_sessions--;
	uv_close((uv_handle_t *)&ss->pipe, on_handle_closed);
	uv_close((uv_handle_t *)&ss->idle, on_handle_closed);
}

static void on_idle(uv_timer_t *t)
{
	struct spd_session *ss = t->data;

	if (!ss->len) {
		spd_session_close(ss, "not allowed, and silent");
		return;
	}
	spd_warn("connection %llu (pid %d): partial frame (%zu bytes) idle for %u ms: closing",
		 (unsigned long long)ss->conn_id, ss->pid, ss->len, ss->d->cfg.frame_timeout_ms);
	spd_session_close(ss, "idle in a partial frame");
}

/* Read while nothing is queued; run the idle timer while a frame is partial. */
static void update_flow(struct spd_session *ss)
{
	bool want = !ss->writes_pending && !ss->close_after_write;

	if (ss->closing || ss->sink)
		return;
	if (want && !ss->reading) {
		if (uv_read_start((uv_stream_t *)&ss->pipe, on_alloc, on_read) < 0) {
			spd_session_close(ss, "cannot read");
			return;
		}
		ss->reading = true;
	}
	if (!want && ss->reading) {
		uv_read_stop((uv_stream_t *)&ss->pipe);
		ss->reading = false;
	}
	/* a peer off the allow-list gets the same time to send its one request */
	if (!ss->reading || (!ss->len && ss->allowed))
		uv_timer_stop(&ss->idle);
	else if (!uv_is_active((uv_handle_t *)&ss->idle))
		uv_timer_start(&ss->idle, on_idle, ss->d->cfg.frame_timeout_ms, 0);
}

static void on_write(uv_write_t *req, int status)
{
	struct spd_write *w = (struct spd_write *)req;
	struct spd_session *ss = w->ss;

	free(w->frame);
	free(w);
	ss->writes_pending--;
	if (ss->closing)
		return;
	if (status < 0) {
		spd_session_close(ss, uv_strerror(status));
		return;
	}
	if (!ss->writes_pending && ss->close_after_write) {
		spd_session_close(ss, "closed by the daemon after its last response");
		return;
	}
	process(ss);
}

/* sendmsg() the start of a frame with @fd as SCM_RIGHTS; bytes sent or -errno. */
static ssize_t send_with_fd(struct spd_session *ss, const uint8_t *frame, size_t len, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)frame, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.buf,
		.msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cm;
	uv_os_fd_t sock;
	ssize_t n;

	if (uv_fileno((uv_handle_t *)&ss->pipe, &sock) < 0)
		return -EBADF;
	memset(&u, 0, sizeof(u));
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

/**
 * spd_session_send() - send one Response frame.
 * @ss: the session.  @resp: the response (packed here; the caller frees it).
 * @pass_fd: a file descriptor to pass with SCM_RIGHTS, or -1.
 * @then_close: close the connection once the frame is out.
 *
 * Called only while no write is pending (see the flow control above).  A
 * failure closes the session.  Does not sleep.
 * Return: 0, or a negative errno (the session is then closing).
 */
int spd_session_send(struct spd_session *ss, const Shmpool__Response *resp, int pass_fd,
		     bool then_close)
{
	size_t n = shmpool__response__get_packed_size(resp), off = 0;
	struct spd_write *w;
	uint8_t *frame;
	ssize_t rc;

	if (ss->closing)
		return -ENOTCONN;
	if (n > SPD_FRAME_MAX) { /* views.c trims replies; this is a bug */
		spd_error("connection %llu: response of %zu bytes exceeds a frame",
			  (unsigned long long)ss->conn_id, n);
		spd_session_close(ss, "response too large");
		return -EMSGSIZE;
	}
	frame = malloc(4 + n);
	if (!frame) {
		spd_session_close(ss, "out of memory");
		return -ENOMEM;
	}
	frame[0] = (uint8_t)(n >> 24);
	frame[1] = (uint8_t)(n >> 16);
	frame[2] = (uint8_t)(n >> 8);
	frame[3] = (uint8_t)n;
	shmpool__response__pack(resp, frame + 4);
	if (ss->sink) { /* no socket: the frame is handed over whole */
		ss->sink(ss, frame, 4 + n, pass_fd);
		free(frame);
		if (then_close)
			spd_session_close(ss, "closed by the daemon after its last response");
		return 0;
	}
	if (pass_fd >= 0) {
		rc = send_with_fd(ss, frame, 4 + n, pass_fd);
		if (rc == -EAGAIN) /* only a peer that never read its earlier replies */
			spd_warn("connection %llu: cannot pass the segment fd: the client does "
				 "not read its responses", (unsigned long long)ss->conn_id);
	} else {
		uv_buf_t b = uv_buf_init((char *)frame, (unsigned)(4 + n));

		rc = uv_try_write((uv_stream_t *)&ss->pipe, &b, 1);
		if (rc == UV_EAGAIN)
			rc = 0; /* queue it all */
	}
	if (rc < 0) {
		free(frame);
		spd_session_close(ss, uv_strerror((int)rc)); /* libuv codes are -errno */
		return (int)rc;
	}
	off = (size_t)rc;
	if (off == 4 + n) {
		free(frame);
		if (then_close)
			spd_session_close(ss, "closed by the daemon after its last response");
		return 0;
	}
	w = malloc(sizeof(*w));
	if (!w) {
		free(frame);
		spd_session_close(ss, "out of memory");
		return -ENOMEM;
	}
	w->ss = ss;
	w->frame = frame;
	{
		uv_buf_t b = uv_buf_init((char *)frame + off, (unsigned)(4 + n - off));

		rc = uv_write(&w->req, (uv_stream_t *)&ss->pipe, &b, 1, on_write);
	}
	if (rc < 0) {
		free(frame);
		free(w);
		spd_session_close(ss, uv_strerror((int)rc));
		return (int)rc;
	}
	ss->writes_pending++;
	if (then_close)
		ss->close_after_write = true;
	return 0;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Handle every complete frame in the buffer, one at a time (flow control). */
static void process(struct spd_session *ss)
{
	size_t done = 0;

	while (!ss->closing && !ss->close_after_write && !ss->writes_pending &&
	       ss->len - done >= 4) {
		uint32_t n = be32(ss->buf + done);

		if (n > SPD_FRAME_MAX) {
			spd_warn("connection %llu (pid %d): frame length %u exceeds %u: closing",
				 (unsigned long long)ss->conn_id, ss->pid, n, SPD_FRAME_MAX);
			spd_rpc_reply_error(ss, 0, -EMSGSIZE, true,
					    "frame length %u exceeds the limit of %u bytes", n,
					    SPD_FRAME_MAX);
			done = ss->len;
			break;
		}
		if (ss->len - done < 4 + (size_t)n)
			break;
		spd_rpc_handle(ss, ss->buf + done + 4, n);
		done += 4 + (size_t)n;
	}
	if (done) {
		memmove(ss->buf, ss->buf + done, ss->len - done);
		ss->len -= done;
	}
	update_flow(ss);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct spd_session *ss = h->data;

	(void)suggested;
	if (ss->cap - ss->len < SPD_READ_MIN && ss->cap < SPD_BUF_MAX) {
		size_t cap = ss->cap * 2 < SPD_BUF_MAX ? ss->cap * 2 : SPD_BUF_MAX;
		uint8_t *nb = realloc(ss->buf, cap);

		if (nb) {
			ss->buf = nb;
			ss->cap = cap;
		}
	}
	/* a zero-length buffer makes libuv report UV_ENOBUFS, handled below */
	*buf = uv_buf_init((char *)ss->buf + ss->len, (unsigned)(ss->cap - ss->len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct spd_session *ss = st->data;

	(void)buf;
	if (nread == 0 || ss->closing)
		return;
	if (nread < 0) {
		if (nread != UV_EOF)
			spd_session_close(ss, uv_strerror((int)nread));
		else if (ss->len) {
			spd_warn("connection %llu (pid %d): closed in the middle of a frame (%zu "
				 "bytes received)", (unsigned long long)ss->conn_id, ss->pid, ss->len);
			spd_session_close(ss, "closed in the middle of a frame");
		}
		else
			spd_session_close(ss, "connection closed by the client");
		return;
	}
	ss->len += (size_t)nread;
	uv_timer_stop(&ss->idle); /* progress: the idle clock starts again */
	process(ss);
}

/**
 * spd_session_input() - bytes of a session without a socket (ss->sink set).
 * @ss: the session.  @data: @len: the bytes, split anywhere.
 *
 * Handles them exactly as bytes read from a socket: framing, one request at
 * a time, a close when a frame is malformed.  The fuzz target feeds the
 * daemon's request path this way.  May sleep (as spd_rpc_handle()).
 */
void spd_session_input(struct spd_session *ss, const uint8_t *data, size_t len)
{
	while (len && !ss->closing && !ss->close_after_write) {
		uv_buf_t room;
		size_t n;

		on_alloc((uv_handle_t *)&ss->pipe, len, &room);
		if (!room.len) {
			spd_session_close(ss, "out of memory");
			return;
		}
		n = len < room.len ? len : room.len;
		memcpy(room.base, data, n);
		data += n;
		len -= n;
		ss->len += n;
		process(ss);
	}
}

/**
 * spd_session_read_now() - read what the peer sent already, now.
 * @ss: a session just started (spd_session_start()).
 *
 * A client sends its Hello right after connect(), most often before the
 * daemon accepted the connection; libuv would read it only on the next
 * turn of the loop, after an epoll_ctl() and an epoll_wait().  One
 * recv(MSG_DONTWAIT) here handles it in this turn, and the Hello reply
 * goes out before the loop looks at anything else.  Nothing there yet
 * (EAGAIN) costs that one call; libuv's watcher reads it when it comes
 * (epoll is level-triggered: nothing is missed).  The bytes go where
 * on_read() would put them, and on_read() handles them (EOF and errors
 * included).  May sleep (as spd_rpc_handle()).
 */
void spd_session_read_now(struct spd_session *ss)
{
	uv_os_fd_t fd;
	uv_buf_t room;
	ssize_t n;

	if (ss->closing || ss->sink || !ss->reading ||
	    uv_fileno((uv_handle_t *)&ss->pipe, &fd) < 0)
		return;
	on_alloc((uv_handle_t *)&ss->pipe, 0, &room);
	if (!room.len)
		return;
	do
		n = recv(fd, room.base, room.len, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	/* libuv's codes are negative errnos; 0 is EOF */
	on_read((uv_stream_t *)&ss->pipe, n < 0 ? -errno : n ? n : UV_EOF, &room);
}

/**
 * spd_session_start() - start reading requests.
 * @ss: an accepted session.
 *
 * Does not sleep.
 * Return: 0 or a negative errno.
 */
int spd_session_start(struct spd_session *ss)
{
	int rc = uv_read_start((uv_stream_t *)&ss->pipe, on_alloc, on_read);

	if (rc == 0) {
		ss->reading = true;
		update_flow(ss);
	}
	return rc;
}
