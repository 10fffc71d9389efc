/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-util.h"
#include "test-util.h"

#define TD_WAIT_MS	20000	/* upper bound of every polling loop */
#define TD_NAP_US	5000

static unsigned counter;
static uint64_t next_id = 1;
static pid_t test_pid; /* the cmocka runner; anything else is a forked helper */

/* What td_init() made, removed at exit even when a failed test skipped
 * its td_cleanup() (daemons die with the test process: PR_SET_PDEATHSIG). */
#define TD_MAX_LEFTOVERS 64
static struct td_daemon made[TD_MAX_LEFTOVERS]; /* copies of the names */
static unsigned nr_made;

static void remove_leftovers(void)
{
	if (getpid() != test_pid)
		return;
	for (unsigned i = 0; i < nr_made; i++) {
		struct td_daemon *d = &made[i];

		if (getenv("TD_KEEP_LOGS") && access(d->log, F_OK) == 0) {
			fprintf(stderr, "kept the log of %s: %s\n", d->shm, d->log);
			continue;
		}
		shm_unlink(d->shm);
		unlink(d->sock);
		unlink(d->log);
		rmdir(d->dir);
	}
}

void td_fail(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (test_pid && getpid() != test_pid) {
		fprintf(stderr, "helper process %d: %s\n", (int)getpid(), msg);
		_exit(99);
	}
	fail_msg("%s", msg);
	abort(); /* not reached */
}

void td_nap(void)
{
	usleep(TD_NAP_US);
}

const char *td_exe(void)
{
	const char *exe = getenv("SHMPOOLD");

	if (!exe || !*exe)
		td_fail("$SHMPOOLD is not set (meson sets it to the shmpoold executable)");
	return exe;
}

void td_init(struct td_daemon *d)
{
	if (!test_pid) {
		test_pid = getpid();
		atexit(remove_leftovers);
		tu_sweep_stale_segments();
	}
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/shmpool-dtest-XXXXXX");
	if (!mkdtemp(d->dir))
		td_fail("mkdtemp: %s", strerror(errno));
	snprintf(d->sock, sizeof(d->sock), "%s/shmpoold.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/shmpoold.log", d->dir);
	snprintf(d->shm, sizeof(d->shm), "/shmpool-dtest-%d-%u", (int)getpid(), counter++);
	shm_unlink(d->shm);
	if (nr_made < TD_MAX_LEFTOVERS)
		made[nr_made++] = *d;
}

pid_t td_spawn(struct td_daemon *d, const char *const *extra)
{
	const char *argv[64];
	unsigned n = 0;
	pid_t pid;

	argv[n++] = td_exe();
	if (!d->socket_from_env) {
		argv[n++] = "--socket";
		argv[n++] = d->sock;
	}
	argv[n++] = "--shm-name";
	argv[n++] = d->shm;
	argv[n++] = "--size";
	argv[n++] = "16M";
	argv[n++] = "--log-level";
	argv[n++] = "debug";
	for (unsigned i = 0; extra && extra[i] && n < 63; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		td_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
		if (fd >= 0) {
			dup2(fd, STDERR_FILENO);
			dup2(fd, STDOUT_FILENO);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	d->pid = pid;
	return pid;
}

int td_waitpid(pid_t pid, int timeout_ms)
{
	int st;

	for (int waited = 0; waited <= timeout_ms; waited += TD_NAP_US / 1000) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (r < 0)
			return -1;
		td_nap();
	}
	return -1;
}

int td_wait_ready(struct td_daemon *d)
{
	for (int waited = 0; waited <= TD_WAIT_MS; waited += TD_NAP_US / 1000) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int fd, st;

		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			d->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			d->pid = 0;
			return -1;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->sock);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(fd);
			return 0;
		}
		if (fd >= 0)
			close(fd);
		td_nap();
	}
	td_fail("shmpoold did not listen on %s within %d ms", d->sock, TD_WAIT_MS);
	return -1;
}

void td_start(struct td_daemon *d, const char *const *extra)
{
	td_spawn(d, extra);
	if (td_wait_ready(d) < 0) {
		td_cleanup(d);
		td_fail("shmpoold exited with status %d before listening", d->status);
	}
}

int td_wait_exit(struct td_daemon *d)
{
	d->status = td_waitpid(d->pid, TD_WAIT_MS);
	if (d->status < 0) {
		kill(d->pid, SIGKILL);
		td_waitpid(d->pid, TD_WAIT_MS);
	}
	d->pid = 0;
	return d->status;
}

int td_stop(struct td_daemon *d)
{
	if (!d->pid)
		return d->status;
	kill(d->pid, SIGTERM);
	return td_wait_exit(d);
}

void td_kill9(struct td_daemon *d)
{
	if (!d->pid)
		return;
	kill(d->pid, SIGKILL);
	d->status = td_waitpid(d->pid, TD_WAIT_MS);
	d->pid = 0;
}

static void dump_log(const struct td_daemon *d)
{
	char buf[4096];
	ssize_t n;
	int fd = open(d->log, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	fprintf(stderr, "---- shmpoold log (%s) ----\n", d->shm);
	fflush(stderr);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(STDERR_FILENO, buf, (size_t)n) < 0)
			break;
	fprintf(stderr, "---- end of shmpoold log ----\n");
	close(fd);
}

void td_cleanup(struct td_daemon *d)
{
	if (d->pid) {
		kill(d->pid, SIGKILL);
		td_waitpid(d->pid, TD_WAIT_MS);
		d->pid = 0;
	}
	dump_log(d);
	shm_unlink(d->shm);
	unlink(d->sock);
	unlink(d->log);
	rmdir(d->dir);
}

bool td_log_contains(const struct td_daemon *d, const char *needle)
{
	return tu_file_contains(d->log, needle);
}

bool td_log_wait(const struct td_daemon *d, const char *needle)
{
	for (int waited = 0; waited <= TD_WAIT_MS; waited += TD_NAP_US / 1000) {
		if (tu_file_contains(d->log, needle))
			return true;
		td_nap();
	}
	return false;
}

int td_run(const char *const *args, char *out, size_t size)
{
	const char *argv[64];
	int pipefd[2], status;
	size_t got = 0;
	unsigned n = 0;
	pid_t pid;

	argv[n++] = td_exe();
	for (unsigned i = 0; args && args[i] && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		td_fail("pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(pipefd[1], STDOUT_FILENO);
		dup2(pipefd[1], STDERR_FILENO);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	for (;;) {
		ssize_t r = read(pipefd[0], out + got, size - 1 - got);

		if (r <= 0 || (got += (size_t)r) >= size - 1)
			break;
	}
	out[got] = '\0';
	close(pipefd[0]);
	status = td_waitpid(pid, TD_WAIT_MS);
	if (status < 0) {
		kill(pid, SIGKILL);
		td_waitpid(pid, TD_WAIT_MS);
	}
	return status;
}

/* ---- the raw protocol -------------------------------------------------------- */

int td_connect(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 10 };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		td_fail("socket: %s", strerror(errno));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		td_fail("connect %s: %s", sock, strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

void td_send_raw(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			td_fail("send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

void td_send_frame(int fd, const void *payload, uint32_t len)
{
	uint8_t *f = malloc(4 + (size_t)len);

	f[0] = (uint8_t)(len >> 24);
	f[1] = (uint8_t)(len >> 16);
	f[2] = (uint8_t)(len >> 8);
	f[3] = (uint8_t)len;
	if (len)
		memcpy(f + 4, payload, len);
	td_send_raw(fd, f, 4 + (size_t)len);
	free(f);
}

void td_send_request(int fd, const Shmpool__Request *q)
{
	size_t n = shmpool__request__get_packed_size(q);
	uint8_t *b = malloc(n ? n : 1);

	shmpool__request__pack(q, b);
	td_send_frame(fd, b, (uint32_t)n);
	free(b);
}

/* Read exactly @len bytes; the first recvmsg may carry an fd.  false on EOF. */
static bool recv_all(int fd, uint8_t *buf, size_t len, int *passed_fd)
{
	while (len) {
		union {
			char b[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct iovec iov = { .iov_base = buf, .iov_len = len };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
				      .msg_controllen = sizeof(u.b) };
		ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			td_fail("no response from shmpoold within the receive timeout");
		if (n <= 0)
			return false;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				int got;

				memcpy(&got, CMSG_DATA(cm), sizeof(int));
				if (passed_fd && *passed_fd < 0)
					*passed_fd = got;
				else
					close(got);
			}
		}
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

Shmpool__Response *td_recv(int fd, int *passed_fd)
{
	uint8_t hdr[4], *b;
	uint32_t len;
	Shmpool__Response *r;

	if (passed_fd)
		*passed_fd = -1;
	if (!recv_all(fd, hdr, 4, passed_fd))
		return NULL;
	len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (len > 65536)
		td_fail("shmpoold sent a frame of %u bytes", len);
	b = malloc(len ? len : 1);
	if (!recv_all(fd, b, len, passed_fd))
		td_fail("shmpoold closed in the middle of a response frame");
	r = shmpool__response__unpack(NULL, len, b);
	free(b);
	if (!r)
		td_fail("shmpoold sent a frame that is not a Response");
	return r;
}

Shmpool__Response *td_call(int fd, Shmpool__Request *q, int *passed_fd)
{
	Shmpool__Response *r;

	q->id = next_id++;
	td_send_request(fd, q);
	r = td_recv(fd, passed_fd);
	if (!r)
		td_fail("shmpoold closed the connection instead of answering");
	if (r->id != q->id)
		td_fail("response id %llu for request %llu", (unsigned long long)r->id,
			 (unsigned long long)q->id);
	return r;
}

bool td_closed_by_peer(int fd)
{
	char buf[4096];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n == 0)
			return true;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == ECONNRESET;
	}
}

void td_free(Shmpool__Response *r)
{
	if (r)
		shmpool__response__free_unpacked(r, NULL);
}

void td_expect_(Shmpool__Response *r, int status, const char *expr, const char *file, int line)
{
	if (!r)
		td_fail("%s:%d: %s: no response", file, line, expr);
	if (r->status != status)
		td_fail("%s:%d: %s: status %d (%s), expected %d (%s); message: %s", file, line,
			 expr, r->status, sp_err_name(r->status), status, sp_err_name(status),
			 r->message);
}

Shmpool__Response *td_hello(int fd, const char *name, int *segfd)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__Hello h = SHMPOOL__HELLO__INIT;

	h.protocol_version = TD_PROTOCOL_VERSION;
	h.client_name = (char *)(name ? name : "");
	h.pid = getpid();
	q.op_case = SHMPOOL__REQUEST__OP_HELLO;
	q.hello = &h;
	return td_call(fd, &q, segfd);
}

Shmpool__Response *td_hello_resume(int fd, uint32_t slot, uint64_t token, int *segfd)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__Hello h = SHMPOOL__HELLO__INIT;

	h.protocol_version = TD_PROTOCOL_VERSION;
	h.client_name = "resumer";
	h.pid = getpid();
	h.resume = 1;
	h.resume_slot = slot;
	h.session_token = token;
	q.op_case = SHMPOOL__REQUEST__OP_HELLO;
	q.hello = &h;
	return td_call(fd, &q, segfd);
}

Shmpool__Response *td_pool_create_ex(int fd, Shmpool__PoolCreate *pc)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;

	q.op_case = SHMPOOL__REQUEST__OP_POOL_CREATE;
	q.pool_create = pc;
	return td_call(fd, &q, NULL);
}

Shmpool__Response *td_pool_create(int fd, const char *name, uint64_t elem_size, uint32_t min_nr,
				  uint32_t flags)
{
	Shmpool__PoolCreate pc = SHMPOOL__POOL_CREATE__INIT;

	pc.name = (char *)name;
	pc.elem_size = elem_size;
	pc.min_nr = min_nr;
	pc.flags = flags;
	return td_pool_create_ex(fd, &pc);
}

Shmpool__Response *td_name_op(int fd, Shmpool__Request__OpCase op, const char *name)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__NameRef n = SHMPOOL__NAME_REF__INIT;

	n.name = (char *)name;
	q.op_case = op;
	q.pool_open = &n; /* every NameRef member of the union */
	return td_call(fd, &q, NULL);
}

Shmpool__Response *td_pool_resize(int fd, const char *name, uint32_t min_nr)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__PoolResize r = SHMPOOL__POOL_RESIZE__INIT;

	r.name = (char *)name;
	r.min_nr = min_nr;
	q.op_case = SHMPOOL__REQUEST__OP_POOL_RESIZE;
	q.pool_resize = &r;
	return td_call(fd, &q, NULL);
}

Shmpool__Response *td_cache_create(int fd, const char *name, uint64_t obj_size, const void *tmpl,
				   size_t tlen)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__CacheCreate c = SHMPOOL__CACHE_CREATE__INIT;

	c.name = (char *)name;
	c.obj_size = obj_size;
	c.init_template.data = (uint8_t *)tmpl;
	c.init_template.len = tlen;
	q.op_case = SHMPOOL__REQUEST__OP_CACHE_CREATE;
	q.cache_create = &c;
	return td_call(fd, &q, NULL);
}

Shmpool__Response *td_simple(int fd, Shmpool__Request__OpCase op)
{
	static Shmpool__List list = SHMPOOL__LIST__INIT;
	static Shmpool__Stats stats = SHMPOOL__STATS__INIT;
	static Shmpool__Check check = SHMPOOL__CHECK__INIT;
	static Shmpool__Goodbye bye = SHMPOOL__GOODBYE__INIT;
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;

	q.op_case = op;
	switch (op) {
	case SHMPOOL__REQUEST__OP_LIST: q.list = &list; break;
	case SHMPOOL__REQUEST__OP_STATS: q.stats = &stats; break;
	case SHMPOOL__REQUEST__OP_CHECK: q.check = &check; break;
	case SHMPOOL__REQUEST__OP_GOODBYE: q.goodbye = &bye; break;
	default: td_fail("td_simple: op %d has fields", (int)op);
	}
	return td_call(fd, &q, NULL);
}

Shmpool__Response *td_reclaim(int fd, uint32_t slot)
{
	Shmpool__Request q = SHMPOOL__REQUEST__INIT;
	Shmpool__Reclaim r = SHMPOOL__RECLAIM__INIT;

	r.slot = slot;
	q.op_case = SHMPOOL__REQUEST__OP_RECLAIM;
	q.reclaim = &r;
	return td_call(fd, &q, NULL);
}

/* ---- a well-behaved client ---------------------------------------------------- */

void td_client_open(struct td_client *c, const struct td_daemon *d, const char *name)
{
	Shmpool__Response *r;
	int segfd = -1, rc;

	memset(c, 0, sizeof(*c));
	c->fd = td_connect(d->sock);
	r = td_hello(c->fd, name, &segfd);
	TD_EXPECT(r, 0);
	TD_CHECK(r->payload_case == SHMPOOL__RESPONSE__PAYLOAD_HELLO);
	if (segfd < 0)
		td_fail("the Hello response carried no fd");
	c->slot = r->hello->client_slot;
	c->token = r->hello->session_token;
	td_free(r);
	rc = sp_seg_attach(NULL, segfd, 0, &c->seg);
	if (rc)
		td_fail("sp_seg_attach(passed fd): %s", sp_errmsg());
	rc = sp_client_use_slot(c->seg, c->slot);
	if (rc)
		td_fail("sp_client_use_slot(%u): %s", c->slot, sp_errmsg());
}

void td_client_close(struct td_client *c, bool goodbye)
{
	if (goodbye && c->fd >= 0) {
		TD_EXPECT_FREE(td_simple(c->fd, SHMPOOL__REQUEST__OP_GOODBYE), 0);
		TD_CHECK(td_closed_by_peer(c->fd));
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	sp_seg_detach(c->seg);
	c->seg = NULL;
}

struct sp_pool *td_client_pool(struct td_client *c, const char *name)
{
	Shmpool__Response *r = td_name_op(c->fd, SHMPOOL__REQUEST__OP_POOL_OPEN, name);
	struct sp_pool *p;

	TD_EXPECT(r, 0);
	p = sp_pool_get(c->seg, r->pool->id);
	if (!p || p->gen != r->pool->gen)
		td_fail("pool %s (id %u gen %u) not found in the mapping", name, r->pool->id,
			 r->pool->gen);
	td_free(r);
	return p;
}

void td_check_clean(int fd)
{
	Shmpool__Response *r = td_simple(fd, SHMPOOL__REQUEST__OP_CHECK);

	TD_EXPECT(r, 0);
	TD_CHECK(r->payload_case == SHMPOOL__RESPONSE__PAYLOAD_CHECK);
	if (r->check->nr_violations) {
		for (size_t i = 0; i < r->check->n_violations && i < 10; i++)
			fprintf(stderr, "  violation: %s\n", r->check->violations[i]);
		td_fail("Check found %u violations", r->check->nr_violations);
	}
	td_free(r);
}

Shmpool__ClientInfo *td_stats_client(Shmpool__Response *stats, uint32_t slot)
{
	for (size_t i = 0; i < stats->stats->n_clients; i++)
		if (stats->stats->clients[i]->slot == slot)
			return stats->stats->clients[i];
	return NULL;
}

Shmpool__PoolInfo *td_stats_pool(Shmpool__Response *stats, const char *name)
{
	for (size_t i = 0; i < stats->stats->n_pools; i++)
		if (strcmp(stats->stats->pools[i]->name, name) == 0)
			return stats->stats->pools[i];
	return NULL;
}
