/* SPDX-License-Identifier: MIT */
/*
 * test-client-wire.c - libshmpool's reading of Response frames (client/wire.c)
 * on a real socket, the bytes split every way the kernel may deliver them.
 *
 * The test plays the daemon on one end of a Unix stream socketpair; the
 * library reads the other end with shmp__wire_recv() and its receive
 * buffer.  A writer thread sends the pieces of a script; a piece marked
 * "after" goes out only once the reading thread sleeps in recvmsg(), so
 * that the frame really is split across reads (the reader has taken all
 * that was there before).  The segment's fd of a HelloReply is played by a
 * memfd, passed as SCM_RIGHTS with the first bytes.
 *
 * What must hold: a frame that is all there is read by one recvmsg() (the
 * socket is empty after it, bytes of the next frame included); a frame in
 * pieces, a frame larger than the buffer, bytes of the next frame, a
 * descriptor with the first byte all come out right; every length and
 * descriptor check holds; a timeout before the first byte keeps the stream
 * in step, one in the middle of a frame does not.  No timing is asserted:
 * the timeouts only bound waits that must fail.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"

#define MAX_PIECES 64

struct piece {
	const uint8_t *p;
	size_t len;
	int fd;		/* passed as SCM_RIGHTS with the piece, or -1 */
	bool after;	/* wait until the reader sleeps in recvmsg() first */
};

struct script {
	int sock;
	pid_t reader;	/* the reading thread's tid */
	unsigned first, n; /* this run sends pieces [first, n) */
	struct piece piece[MAX_PIECES];
	bool shut;	/* shut down the writing side after the last piece */
	bool stop;	/* atomic: the test is over, stop waiting */
};

static long blocked_syscall(pid_t tid)
{
	char path[64], buf[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	if (buf[0] < '0' || buf[0] > '9')
		return -1; /* "running" */
	return strtol(buf, NULL, 10);
}

static void send_piece(int sock, const struct piece *pc)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)pc->p, .iov_len = pc->len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (pc->fd >= 0) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &pc->fd, sizeof(int));
	}
	n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	if (n != (ssize_t)pc->len) {
		fprintf(stderr, "writer: sendmsg of %zu bytes: %zd (%s)\n", pc->len, n,
			strerror(errno));
		abort();
	}
}

static void *writer_main(void *arg)
{
	struct script *sc = arg;

	for (unsigned i = sc->first; i < sc->n; i++) {
		if (sc->piece[i].after) {
			/* bounded: a reader that never sleeps fails its own checks */
			for (int k = 0; k < 20000 && blocked_syscall(sc->reader) != SYS_recvmsg &&
					!__atomic_load_n(&sc->stop, __ATOMIC_RELAXED);
			     k++)
				usleep(500);
		}
		send_piece(sc->sock, &sc->piece[i]);
	}
	if (sc->shut)
		shutdown(sc->sock, SHUT_WR);
	return NULL;
}

/* ---- frames ------------------------------------------------------------------ */

struct frame {
	uint8_t *p;
	size_t len;	/* 4 + body */
};

/* A Response frame: id, and a message of @msg_len bytes (any size). */
static struct frame make_frame(uint64_t id, size_t msg_len, bool hello)
{
	Shmpool__Response r = SHMPOOL__RESPONSE__INIT;
	Shmpool__HelloReply hr = SHMPOOL__HELLO_REPLY__INIT;
	char *msg = malloc(msg_len + 1);
	struct frame f;
	size_t n;

	assert_non_null(msg);
	memset(msg, 'm', msg_len);
	msg[msg_len] = '\0';
	r.id = id;
	r.message = msg;
	if (hello) {
		hr.protocol_version = 1;
		hr.segment_name = (char *)"/wire-test";
		hr.segment_size = 1u << 24;
		hr.client_slot = 3;
		hr.session_token = 0x1234567890abcdefull;
		r.payload_case = SHMPOOL__RESPONSE__PAYLOAD_HELLO;
		r.hello = &hr;
	}
	n = shmpool__response__get_packed_size(&r);
	f.len = 4 + n;
	f.p = malloc(f.len);
	assert_non_null(f.p);
	f.p[0] = (uint8_t)(n >> 24);
	f.p[1] = (uint8_t)(n >> 16);
	f.p[2] = (uint8_t)(n >> 8);
	f.p[3] = (uint8_t)n;
	shmpool__response__pack(&r, f.p + 4);
	free(msg);
	return f;
}

/* The frames laid end to end, as the daemon's writes put them in the stream. */
static uint8_t *concat(const struct frame *v, unsigned n, size_t *len)
{
	uint8_t *p;
	size_t off = 0;

	*len = 0;
	for (unsigned i = 0; i < n; i++)
		*len += v[i].len;
	p = malloc(*len);
	assert_non_null(p);
	for (unsigned i = 0; i < n; i++) {
		memcpy(p + off, v[i].p, v[i].len);
		off += v[i].len;
	}
	return p;
}

/* ---- fixture ----------------------------------------------------------------- */

struct fix {
	int rd, wr;		/* library end, daemon end */
	int memfd;		/* plays the segment's fd */
	ino_t memfd_ino;
	struct shmp__rbuf rb;
	struct script sc;
	pthread_t writer;
	bool writing;
	unsigned ran;		/* pieces handed to writers so far */
};

static void set_rcvtimeo(int sock, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	assert_int_equal(setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	struct stat st;
	int sv[2];

	assert_non_null(f);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->rd = sv[0];
	f->wr = sv[1];
	/* a failing read must fail, not hang the test */
	set_rcvtimeo(f->rd, 10000);
	f->memfd = memfd_create("wire-test", MFD_CLOEXEC);
	assert_true(f->memfd >= 0);
	assert_int_equal(fstat(f->memfd, &st), 0);
	f->memfd_ino = st.st_ino;
	shmp__rbuf_reset(&f->rb);
	f->sc.sock = f->wr;
	f->sc.reader = (pid_t)syscall(SYS_gettid);
	*state = f;
	return 0;
}

static void join_writer(struct fix *f)
{
	if (f->writing)
		pthread_join(f->writer, NULL);
	f->writing = false;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	__atomic_store_n(&f->sc.stop, true, __ATOMIC_RELAXED);
	close(f->rd); /* unblocks a writer stuck on a full socket */
	join_writer(f);
	close(f->wr);
	close(f->memfd);
	free(f);
	return 0;
}

static void add(struct fix *f, const uint8_t *p, size_t len, int fd, bool after)
{
	assert_true(f->sc.n < MAX_PIECES);
	f->sc.piece[f->sc.n++] = (struct piece){ p, len, fd, after };
}

/* Start a writer for the pieces added since the last run. */
static void run(struct fix *f)
{
	join_writer(f);
	f->sc.first = f->ran;
	f->ran = f->sc.n;
	assert_int_equal(pthread_create(&f->writer, NULL, writer_main, &f->sc), 0);
	f->writing = true;
}

/* Bytes waiting in the library's end of the socket. */
static int queued(const struct fix *f)
{
	int n = -1;

	assert_int_equal(ioctl(f->rd, FIONREAD, &n), 0);
	return n;
}

static bool is_memfd(const struct fix *f, int fd)
{
	struct stat st;

	return fd >= 0 && fstat(fd, &st) == 0 && st.st_ino == f->memfd_ino;
}

/* Read one frame that must be Response @id; *fd the descriptor it brought. */
static void expect_frame(struct fix *f, uint64_t id, size_t msg_len, int *fd)
{
	Shmpool__Response *r = NULL;
	int rc = shmp__wire_recv(f->rd, &f->rb, &r, fd);

	if (rc)
		fail_msg("shmp__wire_recv: %d (%s): %s", rc, strerror(-rc), sp_errmsg());
	assert_non_null(r);
	assert_int_equal(r->id, id);
	assert_int_equal(strlen(r->message), msg_len);
	shmpool__response__free_unpacked(r, NULL);
}

static void expect_error(struct fix *f, int code, bool want_fd)
{
	Shmpool__Response *r = NULL;
	int fd = 12345;
	int rc = shmp__wire_recv(f->rd, &f->rb, &r, want_fd ? &fd : NULL);

	if (rc != code)
		fail_msg("shmp__wire_recv: %d (%s), expected %d (%s): %s", rc, strerror(-rc), code,
			 strerror(-code), sp_errmsg());
	if (want_fd)
		assert_int_equal(fd, -1);
}

#define CL_SEND_OK(expr)                                                              \
	do {                                                                          \
		int rc_ = (expr);                                                     \
		if (rc_)                                                              \
			fail_msg("%s: %d (%s): %s", #expr, rc_, strerror(-rc_),       \
				 sp_errmsg());                                        \
	} while (0)

/* ---- tests ------------------------------------------------------------------- */

/*
 * A HelloReply with the fd, and the next frame's first bytes, in one write:
 * one read takes it all (nothing stays queued in the socket), the fd goes
 * with the HelloReply, the next frame completes from the buffer and the
 * rest of the stream.
 */
static void test_whole_frame_one_read(void **state)
{
	struct fix *f = *state;
	struct frame fr[2] = { make_frame(1, 0, true), make_frame(2, 10, false) };
	size_t len;
	uint8_t *all = concat(fr, 2, &len);
	int fd = -1;

	add(f, all, fr[0].len + 3, f->memfd, false);
	run(f);
	join_writer(f);
	expect_frame(f, 1, 0, &fd);
	assert_true(is_memfd(f, fd));
	close(fd);
	assert_int_equal(queued(f), 0); /* one recvmsg() took the frame and what followed */
	assert_int_equal(f->rb.end - f->rb.start, 3);
	add(f, all + fr[0].len + 3, len - fr[0].len - 3, -1, true);
	run(f);
	expect_frame(f, 2, 10, &fd);
	assert_int_equal(fd, -1);
	assert_int_equal(f->rb.start, f->rb.end);
	join_writer(f); /* before its pieces go */
	free(all);
	free(fr[0].p);
	free(fr[1].p);
}

/*
 * Every byte its own read: the fd comes with the first byte alone, the
 * length in pieces, the second frame's first byte with the first frame's
 * last.
 */
static void test_split_everywhere(void **state)
{
	struct fix *f = *state;
	struct frame fr[2] = { make_frame(7, 5, true), make_frame(8, 0, false) };
	size_t len;
	uint8_t *all = concat(fr, 2, &len);
	int fd = -1;

	add(f, all, 1, f->memfd, false);
	for (size_t i = 1; i < fr[0].len - 1; i++)
		add(f, all + i, 1, -1, true);
	add(f, all + fr[0].len - 1, 2, -1, true); /* last byte + next frame's first */
	for (size_t i = fr[0].len + 1; i < len; i++)
		add(f, all + i, 1, -1, true);
	run(f);
	expect_frame(f, 7, 5, &fd);
	assert_true(is_memfd(f, fd));
	close(fd);
	expect_frame(f, 8, 0, NULL);
	assert_int_equal(queued(f), 0);
	assert_int_equal(f->rb.start, f->rb.end);
	join_writer(f); /* before its pieces go */
	free(all);
	free(fr[0].p);
	free(fr[1].p);
}

/*
 * Frames larger than the buffer, one begun in the buffer after a small
 * frame, and a small frame after them in the same write: a large frame is
 * read to its end and no further.
 */
static void test_large_frames(void **state)
{
	struct fix *f = *state;
	struct frame fr[4] = { make_frame(1, 20, false), make_frame(2, 3 * SHMP_RBUF_SIZE, false),
			       make_frame(3, SHMP_RBUF_SIZE - 4, false), make_frame(4, 1, false) };
	size_t len, at = fr[0].len + fr[1].len;
	uint8_t *all = concat(fr, 4, &len);

	assert_true(fr[1].len > SHMP_RBUF_SIZE && fr[2].len > SHMP_RBUF_SIZE);
	add(f, all, fr[0].len + 10, -1, false);
	add(f, all + fr[0].len + 10, SHMP_RBUF_SIZE, -1, true);
	add(f, all + fr[0].len + 10 + SHMP_RBUF_SIZE, len - fr[0].len - 10 - SHMP_RBUF_SIZE, -1,
	    true);
	run(f);
	expect_frame(f, 1, 20, NULL);
	expect_frame(f, 2, 3 * SHMP_RBUF_SIZE, NULL);
	join_writer(f);
	/* the large frame was read exactly: the rest is still in the socket */
	assert_int_equal(queued(f) + (int)(f->rb.end - f->rb.start), (int)(len - at));
	expect_frame(f, 3, SHMP_RBUF_SIZE - 4, NULL);
	expect_frame(f, 4, 1, NULL);
	assert_int_equal(queued(f), 0);
	assert_int_equal(f->rb.start, f->rb.end);
	join_writer(f); /* before its pieces go */
	free(all);
	for (int i = 0; i < 4; i++)
		free(fr[i].p);
}

/* Many small frames in one write come out one by one, in order. */
static void test_many_frames_one_write(void **state)
{
	struct fix *f = *state;
	enum { N = 40 };
	struct frame fr[N];
	size_t len;
	uint8_t *all;

	for (unsigned i = 0; i < N; i++)
		fr[i] = make_frame(100 + i, i * 7, false);
	all = concat(fr, N, &len);
	assert_true(len > SHMP_RBUF_SIZE); /* the buffer wraps around */
	add(f, all, len, -1, false);
	run(f);
	for (unsigned i = 0; i < N; i++)
		expect_frame(f, 100 + i, i * 7, NULL);
	assert_int_equal(queued(f), 0);
	join_writer(f); /* before its pieces go */
	free(all);
	for (unsigned i = 0; i < N; i++)
		free(fr[i].p);
}

/* A length above the limit: -EMSGSIZE, and the fd it came with is closed. */
static void test_frame_too_long(void **state)
{
	struct fix *f = *state;
	static const uint8_t bad[8] = { 0x00, 0x01, 0x00, 0x01, 1, 2, 3, 4 }; /* 65537 */
	int before;

	add(f, bad, sizeof(bad), f->memfd, false);
	run(f);
	join_writer(f);
	before = fcntl(0, F_DUPFD, 0); /* the lowest free descriptor */
	close(before);
	expect_error(f, -EMSGSIZE, true);
	/* the copy of the memfd that came along was closed */
	assert_int_equal(fcntl(0, F_DUPFD, 0), before);
	close(before);
}

/* A body that is no Response: -EPROTO. */
static void test_malformed_body(void **state)
{
	struct fix *f = *state;
	static const uint8_t bad[7] = { 0, 0, 0, 3, 0xff, 0xff, 0xff };

	add(f, bad, sizeof(bad), -1, false);
	run(f);
	expect_error(f, -EPROTO, false);
}

/*
 * A timeout before any byte of the frame: -ETIMEDOUT, and the frame read
 * later is whole.  A timeout with part of the length, or of the body, in:
 * -EPROTO (the stream is out of step).
 */
static void test_timeouts(void **state)
{
	struct fix *f = *state;
	struct frame fr = make_frame(5, 30, false);

	set_rcvtimeo(f->rd, 50);
	expect_error(f, -ETIMEDOUT, true);
	add(f, fr.p, fr.len, -1, false);
	run(f);
	join_writer(f);
	expect_frame(f, 5, 30, NULL);
	add(f, fr.p, 2, -1, false); /* half the length */
	run(f);
	join_writer(f);
	expect_error(f, -EPROTO, false);
	shmp__rbuf_reset(&f->rb); /* as a dropped connection does */
	add(f, fr.p, 2, -1, false);
	add(f, fr.p + 2, 10, -1, false); /* the length and part of the body */
	run(f);
	join_writer(f);
	expect_error(f, -EPROTO, false);
	join_writer(f);
	free(fr.p);
}

/* EOF before a frame, and in the middle of one: -ECONNRESET. */
static void test_eof(void **state)
{
	struct fix *f = *state;
	struct frame fr = make_frame(9, 0, false);

	add(f, fr.p, fr.len, -1, false);
	add(f, fr.p, fr.len - 1, -1, false);
	f->sc.shut = true;
	run(f);
	expect_frame(f, 9, 0, NULL);
	expect_error(f, -ECONNRESET, false);
	shmp__rbuf_reset(&f->rb);
	expect_error(f, -ECONNRESET, false);
	join_writer(f);
	free(fr.p);
}

/* ---- sending ------------------------------------------------------------------ */

struct drain {
	int sock;
	pid_t sender;	/* tid of the thread whose send must be waiting */
	size_t got;
};

/* Once the sender waits in poll(), read everything until EOF. */
static void *drain_main(void *arg)
{
	struct drain *dr = arg;
	char buf[65536];
	ssize_t n;

	for (int k = 0; k < 20000; k++) {
		long sc = blocked_syscall(dr->sender);

		if (sc == SYS_poll || sc == SYS_ppoll)
			break;
		usleep(500);
	}
	while ((n = read(dr->sock, buf, sizeof(buf))) > 0)
		dr->got += (size_t)n;
	return NULL;
}

/* A Request of about @bytes bytes. */
static void big_request(Shmpool__Request *req, Shmpool__Hello *h, char *name, size_t bytes)
{
	memset(name, 'n', bytes);
	name[bytes] = '\0';
	h->client_name = name;
	req->op_case = SHMPOOL__REQUEST__OP_HELLO;
	req->hello = h;
}

/*
 * A socket nobody reads fills up: the send that finds no room waits for
 * the timeout it is given and fails with -ETIMEDOUT (the socket has no
 * SO_SNDTIMEO: without the wait in poll() it would block for good).  When
 * the peer reads, a send that waits goes on to the end of its frame.
 */
static void test_send_full_socket(void **state)
{
	struct fix *f = *state;
	Shmpool__Request req = SHMPOOL__REQUEST__INIT;
	Shmpool__Hello h = SHMPOOL__HELLO__INIT;
	struct drain dr = { .sock = f->wr, .sender = f->sc.reader };
	size_t sent = 0, one;
	char *name = malloc(60001);
	pthread_t th;
	int rc = 0, i;

	assert_non_null(name);
	big_request(&req, &h, name, 60000);
	one = 4 + shmpool__request__get_packed_size(&req);
	for (i = 0; i < 1000 && rc == 0; i++) {
		rc = shmp__wire_send(f->rd, &req, 50);
		if (rc == 0)
			sent += one;
	}
	if (rc != -ETIMEDOUT)
		fail_msg("send to a full socket: %d (%s): %s", rc, strerror(-rc), sp_errmsg());
	assert_true(i > 1);
	/* that frame went out in part: read all, and a send that must wait
	 * for the reader finishes */
	assert_int_equal(pthread_create(&th, NULL, drain_main, &dr), 0);
	for (i = 0; i < 8; i++)
		CL_SEND_OK(shmp__wire_send(f->rd, &req, 0));
	shutdown(f->rd, SHUT_WR);
	pthread_join(th, NULL);
	assert_true(dr.got >= sent + 8 * one);
	free(name);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_whole_frame_one_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_split_everywhere, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_frames_one_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_frame_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eof, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_full_socket, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
