/* SPDX-License-Identifier: MIT */
/*
 * rpc.c - one control request and its response.
 *
 * Every control call (create, open, destroy, resize, check) is one Request
 * frame and one Response frame, under the session lock so that threads do
 * not interleave frames.  Before sending, a connection the daemon closed
 * (it died or restarted: the socket reads EOF) is dropped and a new one is
 * opened with Hello{resume}, so the first control call after a daemon
 * restart works.  A connection that breaks during a call (EPIPE,
 * ECONNRESET, EOF, a malformed frame) is dropped too and the call fails
 * with -ENOTCONN; whether the daemon acted on the request is then unknown,
 * so it is not repeated.
 *
 * A reply that does not come within the session's timeout fails the call
 * with -ETIMEDOUT but keeps the connection: closing it would tell the
 * daemon that this process died (it would orphan our slot).  The late
 * response is read and dropped (c->pending) before the next request.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "internal.h"

/*
 * Has the daemon closed this connection (or sent something unasked)?  No
 * response is due: bytes left in the receive buffer were unasked too.
 */
static bool peer_gone(shmp_client *c)
{
	struct pollfd pfd = { .fd = c->sock, .events = POLLIN | POLLRDHUP };

	if (c->rbuf.end != c->rbuf.start)
		return true;
	return poll(&pfd, 1, 0) > 0 && pfd.revents;
}

/* Read and drop the responses of requests that timed out. */
static int drain_pending_locked(shmp_client *c)
{
	Shmpool__Response *resp;
	int rc;

	while (c->pending) {
		rc = shmp__wire_recv(c->sock, &c->rbuf, &resp, NULL);
		if (rc == -ETIMEDOUT)
			return sp_err(rc, "the daemon has not answered an earlier request yet");
		if (rc) {
			shmp__session_break_locked(c);
			return 0; /* nothing of this call was sent: reconnect */
		}
		shmpool__response__free_unpacked(resp, NULL);
		c->pending--;
	}
	return 0;
}

static int transport_error(shmp_client *c, int rc)
{
	if (rc == -ETIMEDOUT) {
		c->pending++;
		return sp_err(rc, "no reply from the daemon within %d ms; the request may still "
				  "take effect",
			      c->timeout_ms);
	}
	shmp__session_break_locked(c);
	return sp_err(-ENOTCONN, "connection to the daemon broke during the request (%s); "
				 "the next control call reconnects",
		      sp_errmsg());
}

/**
 * shmp__rpc_locked() - send @req, read its Response.
 * @c: session, c->lock held.  @req: the request (its id is set here).
 * @resp: the response on success; free it with
 *        shmpool__response__free_unpacked().
 *
 * May sleep (daemon round trip, reconnect).
 * Return: 0 when the daemon answered with status 0; the daemon's negative
 * status (its message recorded); -ENOTCONN (disconnected, or the
 * connection broke); -ECONNREFUSED (daemon down); -ESTALE; -ETIMEDOUT.
 */
int shmp__rpc_locked(shmp_client *c, Shmpool__Request *req, Shmpool__Response **resp)
{
	int rc;

	*resp = NULL;
	if (!c->seg)
		return sp_err(-ENOTCONN, "the session was closed by shmp_disconnect");
	if (c->stale)
		return sp_err(-ESTALE, "the daemon serves another segment now: "
				       "disconnect and connect again");
	if (c->sock >= 0) {
		rc = drain_pending_locked(c);
		if (rc)
			return rc;
	}
	if (c->sock >= 0 && peer_gone(c))
		shmp__session_break_locked(c);
	if (c->sock < 0) {
		rc = shmp__session_open_locked(c, true);
		if (rc)
			return rc;
	}
	req->id = ++c->next_id;
	rc = shmp__wire_send(c->sock, req, c->timeout_ms);
	if (rc == -EMSGSIZE || rc == -ENOMEM)
		return rc; /* nothing was sent: the connection is still in step */
	if (rc) {
		shmp__session_break_locked(c);
		return sp_err(-ENOTCONN, "could not send to the daemon (%s); the next control "
					 "call reconnects",
			      sp_errmsg());
	}
	rc = shmp__wire_recv(c->sock, &c->rbuf, resp, NULL);
	if (rc)
		return transport_error(c, rc);
	if ((*resp)->id != req->id) {
		rc = sp_err(-EPROTO, "response id %llu, expected %llu",
			    (unsigned long long)(*resp)->id, (unsigned long long)req->id);
		shmpool__response__free_unpacked(*resp, NULL);
		*resp = NULL;
		return transport_error(c, rc);
	}
	if ((*resp)->status) {
		rc = (*resp)->status < 0 ? (*resp)->status : -EPROTO;
		rc = sp_err(rc, "%s", *(*resp)->message ? (*resp)->message : sp_strerror(rc));
		shmpool__response__free_unpacked(*resp, NULL);
		*resp = NULL;
	}
	return rc;
}

/**
 * shmp__rpc() - shmp__rpc_locked() taking the session lock.
 * @c: session.  @req: the request.  @resp: the response.
 *
 * May sleep.
 * Return: as shmp__rpc_locked(); -EINVAL, -ECHILD as shmp__usable().
 */
int shmp__rpc(shmp_client *c, Shmpool__Request *req, Shmpool__Response **resp)
{
	int rc = shmp__usable(c);

	*resp = NULL;
	if (rc)
		return rc;
	pthread_mutex_lock(&c->lock);
	rc = shmp__rpc_locked(c, req, resp);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int shmp_check(shmp_client *c, unsigned *nr_violations)
{
	Shmpool__Request req = SHMPOOL__REQUEST__INIT;
	Shmpool__Check chk = SHMPOOL__CHECK__INIT;
	Shmpool__Response *resp;
	int rc;

	req.op_case = SHMPOOL__REQUEST__OP_CHECK;
	req.check = &chk;
	rc = shmp__rpc(c, &req, &resp);
	if (rc)
		return rc;
	if (resp->payload_case != SHMPOOL__RESPONSE__PAYLOAD_CHECK || !resp->check) {
		rc = sp_err(-EPROTO, "daemon answered Check without a CheckReply");
	} else {
		if (nr_violations)
			*nr_violations = resp->check->nr_violations;
		if (resp->check->nr_violations)
			sp_err(0, "%u violation(s), the first: %s", resp->check->nr_violations,
			       resp->check->n_violations ? resp->check->violations[0] : "?");
	}
	shmpool__response__free_unpacked(resp, NULL);
	return rc;
}
