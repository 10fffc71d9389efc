/* SPDX-License-Identifier: MIT */
/*
 * test-daemon-hello.c - Hello: the segment fd arrives with SCM_RIGHTS and
 * maps the daemon's segment; the slot carries the peer's credentials; a
 * version mismatch, a second Hello and bad resumes are clear errors.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon-util.h"
#include "test-util.h"

static void hello_passes_usable_fd(void **state)
{
	struct td_daemon d;
	struct sp_seg *by_fd = NULL, *by_name = NULL;
	Shmpool__Response *r;
	int fd, segfd = -1;
	sp_off_t off;

	(void)state;
	td_init(&d);
	td_start(&d, NULL);
	fd = td_connect(d.sock);
	r = td_hello(fd, "hello-test", &segfd);
	TD_EXPECT(r, 0);
	assert_int_equal(r->payload_case, SHMPOOL__RESPONSE__PAYLOAD_HELLO);
	assert_int_equal(r->hello->protocol_version, TD_PROTOCOL_VERSION);
	assert_string_equal(r->hello->segment_name, d.shm);
	assert_int_equal(r->hello->segment_size, 16u << 20);
	assert_int_equal(r->hello->layout_version, SP_LAYOUT_VERSION);
	assert_false(r->hello->resumed);
	assert_true(r->hello->session_token != 0);
	assert_true(segfd >= 0);

	/* the fd maps the same segment the name does */
	assert_int_equal(sp_seg_attach(NULL, segfd, 0, &by_fd), 0);
	assert_int_equal(sp_seg_attach(d.shm, -1, 0, &by_name), 0);
	assert_int_equal(by_fd->size, by_name->size);
	assert_int_equal(by_fd->hdr->created_time, by_name->hdr->created_time);
	assert_int_equal(sp_client_use_slot(by_fd, r->hello->client_slot), 0);
	assert_int_equal(sp_kmalloc(by_fd, 64, &off), 0);
	strcpy(sp_ptr(by_fd, off), "written through the passed fd");
	assert_string_equal(sp_ptr(by_name, off), "written through the passed fd");
	assert_int_equal(sp_kfree(by_fd, off), 0);

	/* the slot records the peer's credentials, not what Hello claimed */
	assert_int_equal(sp_clients(by_name)[r->hello->client_slot].pid, (uint32_t)getpid());
	assert_int_equal(sp_clients(by_name)[r->hello->client_slot].uid, getuid());
	assert_string_equal(sp_clients(by_name)[r->hello->client_slot].name, "hello-test");
	td_free(r);

	/* a Hello claiming another pid still gets the peer's real one */
	{
		Shmpool__Request q = SHMPOOL__REQUEST__INIT;
		Shmpool__Hello h = SHMPOOL__HELLO__INIT;
		int fd2 = td_connect(d.sock), fd2seg;
		uint32_t slot2;

		h.protocol_version = TD_PROTOCOL_VERSION;
		h.client_name = "liar";
		h.pid = 1;
		q.op_case = SHMPOOL__REQUEST__OP_HELLO;
		q.hello = &h;
		r = td_call(fd2, &q, &fd2seg);
		TD_EXPECT(r, 0);
		slot2 = r->hello->client_slot;
		close(fd2seg);
		td_free(r);
		assert_int_equal(sp_clients(by_name)[slot2].pid, (uint32_t)getpid());
		TD_EXPECT_FREE(td_simple(fd2, SHMPOOL__REQUEST__OP_GOODBYE), 0);
		close(fd2);
	}
	td_check_clean(fd);
	TD_EXPECT_FREE(td_simple(fd, SHMPOOL__REQUEST__OP_GOODBYE), 0);
	assert_true(td_closed_by_peer(fd));
	close(fd);
	sp_seg_detach(by_fd);
	sp_seg_detach(by_name);
	assert_int_equal(td_stop(&d), 0);
	td_cleanup(&d);
}

static void hello_errors(void **state)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__Hello h = SHMPOOL__HELLO__INIT;
	struct td_daemon d;
	Shmpool__Response *r;
	uint32_t slot;
	uint64_t token;
	int fd, segfd;

	(void)state;
	td_init(&d);
	td_start(&d, NULL);
	fd = td_connect(d.sock);

	/* another protocol version: a clear error, the connection stays usable */
	h.protocol_version = 2;
	h.client_name = "future";
	q.op_case = SHMPOOL__REQUEST__OP_HELLO;
	q.hello = &h;
	r = td_call(fd, &q, &segfd);
	TD_EXPECT(r, -EPROTONOSUPPORT);
	assert_non_null(strstr(r->message, "protocol version 2"));
	assert_int_equal(segfd, -1);
	td_free(r);

	/* a resume of a slot nobody holds */
	r = td_hello_resume(fd, 3, 1234, &segfd);
	TD_EXPECT(r, -EPERM);
	assert_int_equal(segfd, -1);
	td_free(r);
	r = td_hello_resume(fd, 999999, 1234, NULL);
	TD_EXPECT(r, -EPERM);
	td_free(r);

	r = td_hello(fd, "first", &segfd);
	TD_EXPECT(r, 0);
	slot = r->hello->client_slot;
	token = r->hello->session_token;
	close(segfd);
	td_free(r);

	/* a second Hello on the same connection */
	r = td_hello(fd, "again", &segfd);
	TD_EXPECT(r, -EPROTO);
	assert_non_null(strstr(r->message, "already"));
	td_free(r);

	/* resume from another connection while the slot's connection is open */
	{
		int fd2 = td_connect(d.sock);

		r = td_hello_resume(fd2, slot, token ^ 1, NULL);
		TD_EXPECT(r, -EPERM); /* wrong token */
		assert_non_null(strstr(r->message, "token"));
		td_free(r);
		r = td_hello_resume(fd2, slot, token, NULL);
		TD_EXPECT(r, -EBUSY); /* right token, but connection 1 holds it */
		td_free(r);
		close(fd2);
	}
	td_check_clean(fd);
	close(fd);
	assert_int_equal(td_stop(&d), 0);
	td_cleanup(&d);
}

/* A client name with control bytes is kept sanitized, in Stats and the log. */
static void hello_sanitizes_name(void **state)
{
	struct td_daemon d;
	Shmpool__Response *r, *st;
	int fd, segfd;
	uint32_t slot;

	(void)state;
	td_init(&d);
	td_start(&d, NULL);
	fd = td_connect(d.sock);
	r = td_hello(fd, "evil\nname\x1b[31m", &segfd);
	TD_EXPECT(r, 0);
	slot = r->hello->client_slot;
	close(segfd);
	td_free(r);
	st = td_simple(fd, SHMPOOL__REQUEST__OP_STATS);
	TD_EXPECT(st, 0);
	assert_non_null(td_stats_client(st, slot));
	assert_string_equal(td_stats_client(st, slot)->name, "evil?name?[31m");
	td_free(st);
	close(fd);
	assert_int_equal(td_stop(&d), 0);
	assert_false(td_log_contains(&d, "evil\nname"));
	td_cleanup(&d);
}

/*
 * Requests that are in the socket before the daemon accepts the
 * connection (it reads them right after accept, in the same turn of its
 * loop): a Hello and a Goodbye sent together are answered in order; a
 * connection closed before it is accepted, or in the middle of a frame,
 * or after a frame that is not a Request, is closed without harm.  The
 * daemon is stopped while the clients write, so every byte is there
 * before the accept.
 */
static void requests_before_accept(void **state)
{
	static const uint8_t partial[6] = { 0, 0, 0, 20, 1, 2 };
	static const uint8_t junk[7] = { 0, 0, 0, 3, 0xff, 0xff, 0xff };
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__Hello h = SHMPOOL__HELLO__INIT;
	Shmpool__Goodbye g = SHMPOOL__GOODBYE__INIT;
	Shmpool__Response *r;
	struct td_daemon d;
	int fd, gone, half, bad, segfd = -1;

	(void)state;
	td_init(&d);
	td_start(&d, NULL);
	kill(d.pid, SIGSTOP);
	for (int i = 0; i < 20000 && !tu_process_stopped(d.pid); i++)
		td_nap();
	assert_true(tu_process_stopped(d.pid));
	fd = td_connect(d.sock);
	h.protocol_version = TD_PROTOCOL_VERSION;
	h.client_name = "early";
	q.id = 1;
	q.op_case = SHMPOOL__REQUEST__OP_HELLO;
	q.hello = &h;
	td_send_request(fd, &q);
	q.id = 2;
	q.op_case = SHMPOOL__REQUEST__OP_GOODBYE;
	q.goodbye = &g;
	td_send_request(fd, &q);
	gone = td_connect(d.sock);
	close(gone);
	half = td_connect(d.sock);
	td_send_raw(half, partial, sizeof(partial));
	shutdown(half, SHUT_WR);
	bad = td_connect(d.sock);
	td_send_raw(bad, junk, sizeof(junk));
	kill(d.pid, SIGCONT);

	r = td_recv(fd, &segfd);
	TD_EXPECT(r, 0);
	assert_int_equal(r->id, 1);
	assert_int_equal(r->payload_case, SHMPOOL__RESPONSE__PAYLOAD_HELLO);
	assert_true(segfd >= 0);
	close(segfd);
	td_free(r);
	r = td_recv(fd, NULL);
	TD_EXPECT(r, 0);
	assert_int_equal(r->id, 2);
	td_free(r);
	assert_true(td_closed_by_peer(fd));
	assert_true(td_closed_by_peer(half));
	r = td_recv(bad, NULL);
	TD_EXPECT(r, -EPROTO);
	td_free(r);
	assert_true(td_closed_by_peer(bad));
	close(fd);
	close(half);
	close(bad);
	/* the daemon is fine: a new client gets in, and the slot was freed */
	fd = td_connect(d.sock);
	TD_EXPECT_FREE(td_hello(fd, "after", &segfd), 0);
	close(segfd);
	td_check_clean(fd);
	TD_EXPECT_FREE(td_simple(fd, SHMPOOL__REQUEST__OP_GOODBYE), 0);
	close(fd);
	assert_true(td_log_contains(&d, "closed in the middle of a frame"));
	td_cleanup(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hello_passes_usable_fd),
		cmocka_unit_test(hello_errors),
		cmocka_unit_test(hello_sanitizes_name),
		cmocka_unit_test(requests_before_accept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
