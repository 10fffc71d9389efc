/* SPDX-License-Identifier: MIT */
/*
 * wire.c - frames on the control socket (proto/shmpool.proto).
 *
 * A frame is a 4-byte big-endian length followed by that many bytes of one
 * protobuf message, at most SHMP_FRAME_MAX.  The client writes one Request
 * frame and reads one Response frame; both calls block, bounded by the
 * session's timeout (reads by the socket's SO_RCVTIMEO, see client.c; a
 * send that would block waits in poll() for as long), so a hung daemon
 * turns into -ETIMEDOUT.  The daemon
 * passes the segment's fd as SCM_RIGHTS ancillary data on the Response to
 * Hello; the kernel attaches it to the first byte of the frame, so every
 * read goes through recvmsg() with room for descriptors.
 *
 * Reads go into the connection's receive buffer (struct shmp__rbuf) and
 * ask for as much as it holds: a reply that is all there, the usual case,
 * takes one recvmsg() (length and body together), and bytes that belong
 * to the next frame (a late reply followed by the next one) stay in the
 * buffer for the next call.  A frame larger than the buffer is read into
 * its own allocation, exactly to its end.
 *
 * Transport errors come back as negative errnos that rpc.c understands:
 * -EPIPE/-ECONNRESET (the daemon went away: EOF is reported as
 * -ECONNRESET), -EMSGSIZE and -EPROTO (a malformed frame, or a timeout in
 * the middle of one): after any of them the connection is out of step and
 * must be dropped.  -ETIMEDOUT from shmp__wire_recv() means no byte of the
 * frame arrived: the stream is still in step and the frame can be read
 * later.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

static int io_error(int err, const char *what)
{
	if (err == EAGAIN || err == EWOULDBLOCK)
		return sp_err(-ETIMEDOUT, "no reply from the daemon in time (%s)", what);
	if (err == EPIPE || err == ECONNRESET)
		return sp_err(-err, "the daemon closed the connection (%s)", what);
	return sp_err(-err, "%s on the daemon socket: %s", what, strerror(err));
}

/**
 * shmp__wire_send() - write one Request frame.
 * @sock: connected control socket.  @req: the request.
 * @timeout_ms: how long a send may wait for room in the socket (<= 0: no
 *              limit).
 *
 * Sends without blocking: a request nearly always fits in the socket at
 * once, and this costs no SO_SNDTIMEO on each new socket.  Only when the
 * socket is full does it wait in poll(), as long as SO_SNDTIMEO would
 * have (per wait, not for the whole frame).  May sleep.  SIGPIPE is never
 * raised.
 * Return: 0; -EMSGSIZE; -ENOMEM; -EPIPE/-ECONNRESET/-ETIMEDOUT or another
 * transport error.
 */
int shmp__wire_send(int sock, const Shmpool__Request *req, int timeout_ms)
{
	size_t len = shmpool__request__get_packed_size(req), done = 0;
	uint8_t *buf;
	int rc = 0;

	if (len > SHMP_FRAME_MAX)
		return sp_err(-EMSGSIZE, "request of %zu bytes is above the %u-byte frame limit",
			      len, SHMP_FRAME_MAX);
	buf = malloc(4 + len);
	if (!buf)
		return sp_err(-ENOMEM, "out of process memory");
	buf[0] = (uint8_t)(len >> 24);
	buf[1] = (uint8_t)(len >> 16);
	buf[2] = (uint8_t)(len >> 8);
	buf[3] = (uint8_t)len;
	shmpool__request__pack(req, buf + 4);
	while (done < 4 + len) {
		ssize_t n = send(sock, buf + done, 4 + len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
		struct pollfd pfd = { .fd = sock, .events = POLLOUT };

		if (n >= 0) {
			done += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			rc = io_error(errno, "send");
			break;
		}
		n = poll(&pfd, 1, timeout_ms > 0 ? timeout_ms : -1);
		if (n < 0 && errno != EINTR) {
			rc = io_error(errno, "poll");
			break;
		}
		if (n == 0) {
			rc = sp_err(-ETIMEDOUT, "the daemon took no request bytes within %d ms",
				    timeout_ms);
			break;
		}
	}
	free(buf);
	return rc;
}

/*
 * One recvmsg() of at most @len bytes into @buf.  A descriptor passed along
 * goes to *@fd if that is still -1 and is closed otherwise (we expect at
 * most one per frame).
 * Return: the number of bytes (> 0), or a negative errno as io_error();
 * EOF is -ECONNRESET.
 */
static ssize_t recv_some(int sock, uint8_t *buf, size_t len, int *fd)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr mh;
	ssize_t n;

	do {
		mh = (struct msghdr){
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = ctl.buf,
			.msg_controllen = sizeof(ctl.buf),
		};
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return io_error(errno, "recv");
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t nfd;
		int v[4];

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (nfd > 4)
			nfd = 4;
		memcpy(v, CMSG_DATA(cm), nfd * sizeof(int));
		for (size_t i = 0; i < nfd; i++) {
			if (*fd < 0)
				*fd = v[i];
			else
				close(v[i]);
		}
	}
	if (mh.msg_flags & MSG_CTRUNC)
		return sp_err(-EPROTO, "the daemon passed more descriptors than expected");
	if (n == 0)
		return sp_err(-ECONNRESET, "the daemon closed the connection");
	return n;
}

/* Read into @rb until it holds @want unread bytes (@want <= its size). */
static int fill(int sock, struct shmp__rbuf *rb, uint32_t want, int *fd)
{
	if (rb->start + want > sizeof(rb->data)) { /* make room at the end */
		memmove(rb->data, rb->data + rb->start, rb->end - rb->start);
		rb->end -= rb->start;
		rb->start = 0;
	}
	while (rb->end - rb->start < want) {
		ssize_t n = recv_some(sock, rb->data + rb->end, sizeof(rb->data) - rb->end, fd);

		if (n < 0)
			return (int)n;
		rb->end += (uint32_t)n;
	}
	return 0;
}

/**
 * shmp__wire_recv() - read one Response frame.
 * @sock: connected control socket.
 * @rb: the connection's receive buffer: bytes read before and not used yet
 *      come first, bytes read past this frame stay for the next call.
 * @resp: the unpacked response; free with shmpool__response__free_unpacked().
 * @fd: receives a descriptor passed with the frame, or -1 (may be NULL:
 *      descriptors are then closed).
 *
 * A read asks for as much as the buffer holds, so a frame that is all there
 * (the common case) costs one recvmsg().  A descriptor that comes with any
 * read made for this frame is this frame's.  The daemon passes one only
 * with the reply to Hello, the first frame of a connection, and the kernel
 * ends a read after the bytes that carry descriptors, so it cannot arrive
 * with another frame's bytes.  A frame larger than the buffer is read
 * exactly, never past its end.
 *
 * May sleep (blocking read, bounded by SO_RCVTIMEO).
 * Return: 0; -ECONNRESET (EOF); -ETIMEDOUT when no byte of the frame came
 * in time (the stream is still in step: the frame may be read later);
 * -EPROTO (also a timeout in the middle of a frame); -EMSGSIZE; -ENOMEM.
 * After any other failure than -ETIMEDOUT the connection is out of step.
 * On failure *@fd is -1 (any descriptor received is closed).
 */
int shmp__wire_recv(int sock, struct shmp__rbuf *rb, Shmpool__Response **resp, int *fd)
{
	uint8_t *big = NULL, *body;
	uint32_t len, have;
	int got = -1, rc;

	if (fd)
		*fd = -1;
	rc = fill(sock, rb, 4, &got);
	if (rc)
		goto fail;
	body = rb->data + rb->start;
	len = (uint32_t)body[0] << 24 | (uint32_t)body[1] << 16 | (uint32_t)body[2] << 8 | body[3];
	if (len > SHMP_FRAME_MAX) {
		rc = sp_err(-EMSGSIZE, "the daemon sent a %u-byte frame (limit %u)", len,
			    SHMP_FRAME_MAX);
		goto fail;
	}
	if (len <= sizeof(rb->data) - 4) {
		rc = fill(sock, rb, 4 + len, &got);
		if (rc)
			goto fail;
		body = rb->data + rb->start + 4;
		rb->start += 4 + len;
	} else {
		big = malloc(len);
		if (!big) {
			rc = sp_err(-ENOMEM, "out of process memory");
			goto fail;
		}
		have = rb->end - rb->start - 4; /* < len: the rest is not read yet */
		memcpy(big, rb->data + rb->start + 4, have);
		rb->start = rb->end;
		while (have < len) {
			ssize_t n = recv_some(sock, big + have, len - have, &got);

			if (n < 0) {
				rc = (int)n;
				goto fail;
			}
			have += (uint32_t)n;
		}
		body = big;
	}
	if (rb->start == rb->end)
		rb->start = rb->end = 0;
	*resp = shmpool__response__unpack(NULL, len, body);
	free(big);
	big = NULL;
	if (!*resp) {
		rc = sp_err(-EPROTO, "malformed response from the daemon (%u bytes)", len);
		goto fail;
	}
	if (fd)
		*fd = got;
	else if (got >= 0)
		close(got);
	return 0;
fail:
	/* a frame begun is lost with the connection: it is out of step */
	if (rc == -ETIMEDOUT && (big || rb->end != rb->start))
		rc = sp_err(-EPROTO, "timed out in the middle of a response frame");
	free(big);
	if (got >= 0)
		close(got);
	return rc;
}
