/* SPDX-License-Identifier: MIT */
/*
 * wire.c - frames on the control socket (proto/shmpool.proto).
 *
 * A frame is a 4-byte big-endian length followed by that many bytes of one
 * protobuf message, at most SHMP_FRAME_MAX.  The client writes one Request
 * frame and reads one Response frame; both calls block (the socket carries
 * SO_SNDTIMEO/SO_RCVTIMEO, see client.c, so a hung daemon turns into
 * -ETIMEDOUT).  The daemon passes the segment's fd as SCM_RIGHTS ancillary
 * data on the Response to Hello; the kernel attaches it to the first byte
 * of the frame, so every read of a frame goes through recvmsg() with room
 * for one descriptor.
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
 *
 * May sleep (blocking write, bounded by SO_SNDTIMEO).  SIGPIPE is never
 * raised.
 * Return: 0; -EMSGSIZE; -ENOMEM; -EPIPE/-ECONNRESET/-ETIMEDOUT or another
 * transport error.
 */
int shmp__wire_send(int sock, const Shmpool__Request *req)
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
		ssize_t n = send(sock, buf + done, 4 + len - done, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = io_error(errno, "send");
			break;
		}
		done += (size_t)n;
	}
	free(buf);
	return rc;
}

/*
 * Read exactly @len bytes.  A descriptor passed along is stored in *@fd if
 * that is still -1 and closed otherwise (we expect at most one per frame).
 */
static int read_full(int sock, uint8_t *buf, size_t len, int *fd)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} ctl;
	size_t done = 0;

	while (done < len) {
		struct iovec iov = { .iov_base = buf + done, .iov_len = len - done };
		struct msghdr mh = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = ctl.buf,
			.msg_controllen = sizeof(ctl.buf),
		};
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);

		if (n < 0 && errno == EINTR)
			continue;
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
				if (fd && *fd < 0)
					*fd = v[i];
				else
					close(v[i]);
			}
		}
		if (mh.msg_flags & MSG_CTRUNC)
			return sp_err(-EPROTO, "the daemon passed more descriptors than expected");
		if (n == 0)
			return sp_err(-ECONNRESET, "the daemon closed the connection");
		done += (size_t)n;
	}
	return 0;
}

/**
 * shmp__wire_recv() - read one Response frame.
 * @sock: connected control socket.
 * @resp: the unpacked response; free with shmpool__response__free_unpacked().
 * @fd: receives a descriptor passed with the frame, or -1 (may be NULL:
 *      descriptors are then closed).
 *
 * May sleep (blocking read, bounded by SO_RCVTIMEO).
 * Return: 0; -ECONNRESET (EOF); -ETIMEDOUT when no byte of the frame came
 * in time (the stream is still in step: the frame may be read later);
 * -EPROTO (also a timeout in the middle of a frame); -EMSGSIZE; -ENOMEM.
 * On failure *@fd is -1 (any descriptor received is closed).
 */
int shmp__wire_recv(int sock, Shmpool__Response **resp, int *fd)
{
	uint8_t hdr[4], *buf;
	bool partial = false;
	uint32_t len;
	int rc;

	if (fd)
		*fd = -1;
	rc = read_full(sock, hdr, sizeof(hdr), fd);
	if (rc)
		goto fail;
	partial = true;
	len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (len > SHMP_FRAME_MAX) {
		rc = sp_err(-EMSGSIZE, "the daemon sent a %u-byte frame (limit %u)", len,
			    SHMP_FRAME_MAX);
		goto fail;
	}
	buf = malloc(len ? len : 1);
	if (!buf) {
		rc = sp_err(-ENOMEM, "out of process memory");
		goto fail;
	}
	rc = read_full(sock, buf, len, fd);
	if (!rc) {
		*resp = shmpool__response__unpack(NULL, len, buf);
		if (!*resp)
			rc = sp_err(-EPROTO, "malformed response from the daemon (%u bytes)", len);
	}
	free(buf);
	if (!rc)
		return 0;
fail:
	if (rc == -ETIMEDOUT && partial)
		rc = sp_err(-EPROTO, "timed out in the middle of a response frame");
	if (fd && *fd >= 0) {
		close(*fd);
		*fd = -1;
	}
	return rc;
}
