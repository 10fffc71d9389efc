/* SPDX-License-Identifier: MIT */
/*
 * bench-control.c - the control plane (part 5) and the slab geometry.
 *
 *   connect   shmp_connect(): socket connect + Hello + the segment's fd over
 *             SCM_RIGHTS + mmap + header validation, median of many; against,
 *             in the same run, a bare Unix-socket connect + one 64-byte round
 *             trip to an echo server (a forked process doing nothing else),
 *             and a bare round trip on an open connection
 *   stats     Stats requests per second with 1, 16 and 256 concurrent
 *             clients: that many connections (each said Hello), one request
 *             in flight on each, driven from this one process with poll()
 *   release   shmp_disconnect() (Goodbye: the daemon releases the slot) of
 *             a client that allocated and freed one object of a cache in
 *             which another client holds many (1 M; quick: 100 k), and of
 *             one that used nothing: what a release costs the daemon's
 *             only thread when it may have to look through a big cache
 *   geometry  slab space efficiency, object bytes / slab bytes, from the
 *             geometry the daemon reports (CacheInfo objperslab and
 *             pagesperslab) for a 64 B named cache, a 64 B pool's cache and
 *             the kmalloc-64, -256 and -4096 classes
 *
 * Stats and geometry speak the wire protocol directly (proto/shmpool.proto:
 * a 4-byte big-endian length, then the protobuf message), since
 * libshmpool has no Stats call; connect uses libshmpool itself.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-util.h"
#include "shmpool.h"
#include "shmpool.pb-c.h"

#define ECHO_BYTES 64

static struct bench_opts opts;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		bench_die("socket: %s", strerror(errno));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		bench_die("connect %s: %s", path, strerror(errno));
	return s;
}

static void io_full(int s, void *buf, size_t len, bool rd)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = rd ? read(s, (char *)buf + done, len - done)
			       : write(s, (const char *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			bench_die("%s: %s", rd ? "read" : "write", n ? strerror(errno) : "EOF");
		done += (size_t)n;
	}
}

/* ---- the bare baseline: an echo server ------------------------------------ */

static char echo_path[108];
static int echo_pid;

static void echo_serve(int ls)
{
	for (;;) {
		char buf[ECHO_BYTES];
		int s = accept(ls, NULL, NULL);

		if (s < 0)
			continue;
		for (;;) {
			size_t done = 0;
			ssize_t n = 0;

			while (done < sizeof(buf) &&
			       (n = read(s, buf + done, sizeof(buf) - done)) > 0)
				done += (size_t)n;
			if (done < sizeof(buf) ||
			    write(s, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
				break;
		}
		close(s);
	}
}

static void echo_start(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(echo_path, sizeof(echo_path), "/tmp/shmpool-bench-echo-%d.sock", (int)getpid());
	unlink(echo_path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", echo_path);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 128) < 0)
		bench_die("echo server on %s: %s", echo_path, strerror(errno));
	fflush(NULL);
	echo_pid = fork();
	if (echo_pid < 0)
		bench_die("fork: %s", strerror(errno));
	if (echo_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		echo_serve(ls);
		_exit(0);
	}
	close(ls);
}

static void echo_stop(void)
{
	kill(echo_pid, SIGKILL);
	bench_wait(echo_pid);
	unlink(echo_path);
}

/* ---- the wire protocol ---------------------------------------------------- */

static void wire_send(int s, Shmpool__Request *req)
{
	size_t len = shmpool__request__get_packed_size(req);
	uint8_t *buf = malloc(4 + len);

	if (!buf)
		bench_die("out of memory");
	buf[0] = (uint8_t)(len >> 24);
	buf[1] = (uint8_t)(len >> 16);
	buf[2] = (uint8_t)(len >> 8);
	buf[3] = (uint8_t)len;
	shmpool__request__pack(req, buf + 4);
	io_full(s, buf, 4 + len, false);
	free(buf);
}

/* One Response frame; a descriptor passed along (Hello) is closed. */
static Shmpool__Response *wire_recv(int s)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} ctl;
	uint8_t hdr[4], *buf;
	struct iovec iov = { .iov_base = hdr, .iov_len = 4 };
	struct msghdr mh = { .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl.buf) };
	Shmpool__Response *resp;
	ssize_t n;
	uint32_t len;

	do
		n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
	while (n < 0 && errno == EINTR);
	if (n != 4)
		bench_die("recv from the daemon: %s", n < 0 ? strerror(errno) : "short frame");
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < nfd && i < 4; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				close(fd);
			}
		}
	}
	len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	buf = malloc(len ? len : 1);
	if (!buf)
		bench_die("out of memory");
	io_full(s, buf, len, true);
	resp = shmpool__response__unpack(NULL, len, buf);
	free(buf);
	if (!resp)
		bench_die("malformed response (%u bytes)", len);
	if (resp->status)
		bench_die("the daemon refused a request: %d %s", resp->status,
			  resp->message ? resp->message : "");
	return resp;
}

static void send_simple(int s, Shmpool__Request__OpCase op, uint64_t id)
{
	Shmpool__Request req = SHMPOOL__REQUEST__INIT;
	Shmpool__Hello hello = SHMPOOL__HELLO__INIT;
	Shmpool__Stats stats = SHMPOOL__STATS__INIT;
	Shmpool__Goodbye bye = SHMPOOL__GOODBYE__INIT;

	req.id = id;
	req.op_case = op;
	switch (op) {
	case SHMPOOL__REQUEST__OP_HELLO:
		hello.protocol_version = 1;
		hello.client_name = (char *)"bench-stats";
		hello.pid = (int32_t)getpid();
		req.hello = &hello;
		break;
	case SHMPOOL__REQUEST__OP_STATS:
		req.stats = &stats;
		break;
	case SHMPOOL__REQUEST__OP_GOODBYE:
		req.goodbye = &bye;
		break;
	default:
		bench_die("unexpected request %d", (int)op);
	}
	wire_send(s, &req);
}

static int raw_session(void)
{
	int s = unix_connect(opts.socket);

	send_simple(s, SHMPOOL__REQUEST__OP_HELLO, 1);
	shmpool__response__free_unpacked(wire_recv(s), NULL);
	return s;
}

static void raw_goodbye(int s)
{
	send_simple(s, SHMPOOL__REQUEST__OP_GOODBYE, 2);
	shmpool__response__free_unpacked(wire_recv(s), NULL);
	close(s);
}

/* ---- connect ------------------------------------------------------------------ */

static void part_connect(void)
{
	unsigned n = opts.quick ? 30 : 400;
	double *v = calloc(n, sizeof(*v));
	char buf[ECHO_BYTES] = { 0 };
	int s;

	if (!v)
		bench_die("out of memory");
	echo_start();
	/* bare: connect + one round trip (+ close, outside the timing) */
	for (unsigned i = 0; i < n + n / 8; i++) {
		uint64_t t0 = bench_now_ns();

		s = unix_connect(echo_path);
		io_full(s, buf, sizeof(buf), false);
		io_full(s, buf, sizeof(buf), true);
		if (i >= n / 8)
			v[i - n / 8] = (double)(bench_now_ns() - t0);
		close(s);
	}
	bench_result("connect", "bare-socket",
		     ", \"case\": \"connect + round trip\", \"value\": %.2f, \"unit\": \"us\"",
		     median(v, n) / 1e3);
	/* bare: a round trip on an open connection */
	s = unix_connect(echo_path);
	for (unsigned i = 0; i < n + n / 8; i++) {
		uint64_t t0 = bench_now_ns();

		io_full(s, buf, sizeof(buf), false);
		io_full(s, buf, sizeof(buf), true);
		if (i >= n / 8)
			v[i - n / 8] = (double)(bench_now_ns() - t0);
	}
	close(s);
	bench_result("connect", "bare-socket",
		     ", \"case\": \"round trip\", \"value\": %.2f, \"unit\": \"us\"",
		     median(v, n) / 1e3);
	echo_stop();
	/* shmpool: shmp_connect (disconnect outside the timing) */
	for (unsigned i = 0; i < n + n / 8; i++) {
		shmp_client *c;
		uint64_t t0 = bench_now_ns();
		int rc = shmp_connect(opts.socket, "bench-connect", &c);

		if (rc)
			bench_die("shmp_connect: %s: %s", shmp_strerror(rc), shmp_errmsg());
		if (i >= n / 8)
			v[i - n / 8] = (double)(bench_now_ns() - t0);
		shmp_disconnect(c);
	}
	bench_result("connect", "shmpool",
		     ", \"case\": \"shmp_connect\", \"value\": %.2f, \"unit\": \"us\"",
		     median(v, n) / 1e3);
	free(v);
}

/* ---- Stats requests per second --------------------------------------------------- */

static void part_stats(void)
{
	static const unsigned levels[] = { 1, 16, 256 };
	uint64_t dur = opts.quick ? 100000000ull : 1000000000ull;

	for (unsigned l = 0; l < 3; l++) {
		unsigned nc = levels[l];
		int *s = calloc(nc, sizeof(*s));
		struct pollfd *pf = calloc(nc, sizeof(*pf));
		uint64_t done = 0, t0, t1, id = 10;

		if (!s || !pf)
			bench_die("out of memory");
		for (unsigned i = 0; i < nc; i++) {
			s[i] = raw_session();
			pf[i].fd = s[i];
			pf[i].events = POLLIN;
		}
		for (unsigned i = 0; i < nc; i++)
			send_simple(s[i], SHMPOOL__REQUEST__OP_STATS, id++);
		t0 = bench_now_ns();
		t1 = t0;
		while (t1 - t0 < dur) {
			int r = poll(pf, nc, 5000);

			if (r <= 0)
				bench_die("poll: %s",
					  r ? strerror(errno) : "no Stats reply in 5 s");
			for (unsigned i = 0; i < nc; i++) {
				if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				shmpool__response__free_unpacked(wire_recv(s[i]), NULL);
				done++;
				send_simple(s[i], SHMPOOL__REQUEST__OP_STATS, id++);
			}
			t1 = bench_now_ns();
		}
		/* drain the requests still in flight, then say goodbye */
		for (unsigned i = 0; i < nc; i++) {
			shmpool__response__free_unpacked(wire_recv(s[i]), NULL);
			raw_goodbye(s[i]);
		}
		bench_result("stats", "shmpool",
			     ", \"clients\": %u, \"value\": %.1f, \"unit\": \"requests/s\"", nc,
			     (double)done / ((double)(t1 - t0) / 1e9));
		free(s);
		free(pf);
	}
}

/* ---- release: the disconnect of a client that used a big cache ------------------- */

/* One short session's disconnect, in µs; @cname: use that cache first. */
static double timed_disconnect(const char *cname)
{
	shmp_client *c;
	shmp_cache *k;
	uint64_t t0;
	void *o;
	int rc = shmp_connect(opts.socket, "bench-release", &c);

	if (!rc && cname) {
		rc = shmp_cache_open(c, cname, &k);
		if (!rc) {
			o = shmp_cache_alloc(k, 0);
			rc = o ? shmp_cache_free(k, o) : -errno;
			shmp_cache_close(k);
		}
	}
	if (rc)
		bench_die("release: %s: %s", shmp_strerror(rc), shmp_errmsg());
	t0 = bench_now_ns();
	shmp_disconnect(c);
	return (double)(bench_now_ns() - t0) / 1e3;
}

static void part_release(void)
{
	unsigned reps = opts.quick ? 5 : 21;
	size_t held = opts.quick ? 100000 : 1000000;
	double *used = calloc(reps, sizeof(*used)), *idle = calloc(reps, sizeof(*idle));
	void **v = calloc(held, sizeof(*v));
	shmp_client *h;
	shmp_cache *k;
	char cname[64];
	int rc;

	if (!used || !idle || !v)
		bench_die("out of memory");
	snprintf(cname, sizeof(cname), "bench.release.%d", (int)getpid());
	rc = shmp_connect(opts.socket, "bench-release-holder", &h);
	if (!rc)
		rc = shmp_cache_create(h, cname, 64, 0, NULL, &k);
	for (size_t i = 0; !rc && i < held; i++)
		rc = (v[i] = shmp_cache_alloc(k, 0)) ? 0 : -errno;
	if (rc)
		bench_die("release: the holder: %s: %s", shmp_strerror(rc), shmp_errmsg());
	for (unsigned r = 0; r < reps; r++) { /* interleaved */
		used[r] = timed_disconnect(cname);
		idle[r] = timed_disconnect(NULL);
	}
	bench_result("release", "shmpool",
		     ", \"case\": \"used the cache\", \"held\": %zu, \"value\": %.2f, "
		     "\"unit\": \"us\"", held, median(used, reps));
	bench_result("release", "shmpool",
		     ", \"case\": \"used nothing\", \"held\": %zu, \"value\": %.2f, "
		     "\"unit\": \"us\"", held, median(idle, reps));
	for (size_t i = 0; i < held; i++)
		if (shmp_cache_free(k, v[i]))
			bench_die("release: free: %s", shmp_errmsg());
	shmp_cache_close(k);
	if (shmp_cache_destroy(h, cname))
		bench_die("release: destroy: %s", shmp_errmsg());
	shmp_disconnect(h);
	free(v);
	free(used);
	free(idle);
}

/* ---- slab geometry ------------------------------------------------------------------ */

static void part_geometry(void)
{
	shmp_client *c;
	shmp_cache *k;
	shmp_pool *p;
	char cname[64], pname[64];
	Shmpool__Response *resp;
	int64_t pool_cache = -1;
	int s, rc;

	snprintf(cname, sizeof(cname), "bench.geo.%d", (int)getpid());
	snprintf(pname, sizeof(pname), "bench.geopool.%d", (int)getpid());
	rc = shmp_connect(opts.socket, "bench-geometry", &c);
	if (!rc)
		rc = shmp_cache_create(c, cname, 64, 0, NULL, &k);
	if (!rc)
		rc = shmp_pool_create(c, pname, 64, 16, &p);
	if (rc)
		bench_die("geometry: %s: %s", shmp_strerror(rc), shmp_errmsg());
	s = raw_session();
	send_simple(s, SHMPOOL__REQUEST__OP_STATS, 3);
	resp = wire_recv(s);
	if (resp->payload_case != SHMPOOL__RESPONSE__PAYLOAD_STATS || !resp->stats)
		bench_die("Stats reply without StatsReply");
	for (size_t i = 0; i < resp->stats->n_pools; i++)
		if (!strcmp(resp->stats->pools[i]->name, pname))
			pool_cache = (int64_t)resp->stats->pools[i]->cache_id;
	for (size_t i = 0; i < resp->stats->n_caches; i++) {
		const Shmpool__CacheInfo *ci = resp->stats->caches[i];
		const char *what = NULL;

		if (!strcmp(ci->name, cname))
			what = "named cache";
		else if ((int64_t)ci->id == pool_cache)
			what = "pool cache";
		else if (!strcmp(ci->name, "kmalloc-64") || !strcmp(ci->name, "kmalloc-256") ||
			 !strcmp(ci->name, "kmalloc-4096"))
			what = ci->name;
		if (!what || !ci->pagesperslab)
			continue;
		bench_result("geometry", "shmpool",
			     ", \"case\": \"%s\", \"size\": %u, \"objperslab\": %u, "
			     "\"pagesperslab\": %u, \"value\": %.2f, \"unit\": \"%%\"",
			     what, ci->obj_size, ci->objperslab, ci->pagesperslab,
			     100.0 * ci->objperslab * ci->obj_size / (ci->pagesperslab * 4096.0));
	}
	shmpool__response__free_unpacked(resp, NULL);
	raw_goodbye(s);
	shmp_cache_close(k);
	shmp_pool_close(p);
	shmp_disconnect(c);
}

int main(int argc, char **argv)
{
	bench_parse(argc, argv, &opts);
	if (!opts.socket)
		bench_die("bench-control needs --socket (bench.py starts a daemon and passes it)");
	bench_idle_thread();
	signal(SIGPIPE, SIG_IGN);
	if (bench_part(&opts, "geometry"))
		part_geometry();
	if (bench_part(&opts, "connect"))
		part_connect();
	if (bench_part(&opts, "stats"))
		part_stats();
	if (bench_part(&opts, "release"))
		part_release();
	return 0;
}
