/* SPDX-License-Identifier: MIT */
/*
 * ctl-util.c - run shmpoolctl and read its output (see ctl-util.h).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl-util.h"

static const char *ctl_exe(void)
{
	const char *e = getenv("SHMPOOLCTL");

	if (!e || !*e)
		fail_msg("$SHMPOOLCTL is not set (meson sets it)");
	return e;
}

static void append(char **buf, size_t *len, const char *data, size_t n)
{
	char *nb = realloc(*buf, *len + n + 1);

	if (!nb)
		fail_msg("out of memory");
	memcpy(nb + *len, data, n);
	*len += n;
	nb[*len] = '\0';
	*buf = nb;
}

void ct_runv(struct ct_out *o, const char *const *argv)
{
	const char *args[64];
	int po[2], pe[2];
	size_t lo = 0, le = 0, n = 0;
	struct timespec start, now;
	bool open_o = true, open_e = true;
	pid_t pid;

	memset(o, 0, sizeof(*o));
	args[n++] = ctl_exe();
	for (unsigned i = 0; argv[i] && n < 63; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	if (pipe(po) < 0 || pipe(pe) < 0)
		fail_msg("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		close(po[0]);
		close(pe[0]);
		close(po[1]);
		close(pe[1]);
		execv(args[0], (char *const *)args);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	append(&o->out, &lo, "", 0);
	append(&o->err, &le, "", 0);
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (open_o || open_e) {
		struct pollfd p[2] = { { .fd = open_o ? po[0] : -1, .events = POLLIN },
				       { .fd = open_e ? pe[0] : -1, .events = POLLIN } };
		char buf[4096];
		long ms;

		clock_gettime(CLOCK_MONOTONIC, &now);
		ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (ms > CT_RUN_TIMEOUT_MS) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			fail_msg("shmpoolctl %s %s did not finish", argv[0] ? argv[0] : "",
				 argv[0] && argv[1] ? argv[1] : "");
		}
		if (poll(p, 2, 200) < 0 && errno != EINTR)
			fail_msg("poll: %s", strerror(errno));
		for (int i = 0; i < 2; i++) {
			ssize_t r;

			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			r = read(p[i].fd, buf, sizeof(buf));
			if (r > 0) {
				if (i == 0)
					append(&o->out, &lo, buf, (size_t)r);
				else
					append(&o->err, &le, buf, (size_t)r);
			} else if (r == 0 || errno != EINTR) {
				if (i == 0)
					open_o = false;
				else
					open_e = false;
			}
		}
	}
	close(po[0]);
	close(pe[0]);
	o->status = td_waitpid(pid, CT_RUN_TIMEOUT_MS);
}

void ct_run(struct ct_out *o, ...)
{
	const char *argv[64];
	unsigned n = 0;
	va_list ap;

	va_start(ap, o);
	while (n < 63 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	ct_runv(o, argv);
}

void ct_free(struct ct_out *o)
{
	free(o->out);
	free(o->err);
	o->out = o->err = NULL;
}

void ct_expect_(const struct ct_out *o, int status, const char *file, int line)
{
	if (o->status != status)
		fail_msg("%s:%d: shmpoolctl exited %d, expected %d\n--- stdout:\n%s\n--- stderr:\n%s",
			 file, line, o->status, status, o->out, o->err);
}

json_object *ct_json(const struct ct_out *o)
{
	enum json_tokener_error e;
	json_object *j = json_tokener_parse_verbose(o->out, &e);

	if (!j || !json_object_is_type(j, json_type_object))
		fail_msg("shmpoolctl --json printed no JSON object (%s):\n%s\n--- stderr:\n%s",
			 j ? "not an object" : json_tokener_error_desc(e), o->out, o->err);
	return j;
}

json_object *ct_get(json_object *o, const char *path)
{
	char buf[256], *save = NULL, *k;
	json_object *root = o;

	snprintf(buf, sizeof(buf), "%s", path);
	for (k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save)) {
		if (json_object_is_type(o, json_type_array)) {
			char *end;
			long i = strtol(k, &end, 10);

			o = *end ? NULL : json_object_array_get_idx(o, (size_t)i);
		} else if (!json_object_object_get_ex(o, k, &o)) {
			o = NULL;
		}
	}
	if (!o)
		fail_msg("no %s in %s", path, json_object_to_json_string(root));
	return o;
}

int64_t ct_int(json_object *o, const char *path)
{
	json_object *v = ct_get(o, path);

	if (!json_object_is_type(v, json_type_int))
		fail_msg("%s is not an integer: %s", path, json_object_to_json_string(v));
	return json_object_get_int64(v);
}

const char *ct_str(json_object *o, const char *path)
{
	json_object *v = ct_get(o, path);

	if (!json_object_is_type(v, json_type_string))
		fail_msg("%s is not a string: %s", path, json_object_to_json_string(v));
	return json_object_get_string(v);
}

json_object *ct_find(json_object *o, const char *path, const char *key, const char *val)
{
	json_object *a = ct_get(o, path), *m;

	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *e = json_object_array_get_idx(a, i);

		if (json_object_object_get_ex(e, key, &m) &&
		    json_object_is_type(m, json_type_string) &&
		    strcmp(json_object_get_string(m), val) == 0)
			return e;
	}
	return NULL;
}

json_object *ct_find_int(json_object *o, const char *path, const char *key, int64_t val)
{
	json_object *a = ct_get(o, path), *m;

	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *e = json_object_array_get_idx(a, i);

		if (json_object_object_get_ex(e, key, &m) &&
		    json_object_is_type(m, json_type_int) && json_object_get_int64(m) == val)
			return e;
	}
	return NULL;
}

/* ---- the world ----------------------------------------------------------- */

static void alloc_n(struct td_client *c, const char *pool, int n)
{
	struct sp_pool *p = td_client_pool(c, pool);
	sp_off_t off;

	for (int i = 0; i < n; i++)
		TD_CHECK(sp_pool_alloc(c->seg, p, SP_ALLOC_NOWAIT, 0, &off) == 0);
}

static void kmalloc_n(struct td_client *c, uint64_t size, int n)
{
	sp_off_t off;

	for (int i = 0; i < n; i++)
		TD_CHECK(sp_kmalloc(c->seg, size, &off) == 0);
}

static void victim(const struct td_daemon *d, int pipe_w)
{
	struct td_client c;

	td_client_open(&c, d, "victim");
	alloc_n(&c, "alpha", 4);
	alloc_n(&c, "beta", 6);
	kmalloc_n(&c, 200, 2);
	TD_CHECK(write(pipe_w, &c.slot, sizeof(c.slot)) == sizeof(c.slot));
	for (;;)
		pause();
}

void ct_world_start(struct ct_world *w)
{
	Shmpool__PoolCreate pc = SHMPOOL__POOL_CREATE__INIT;
	int p[2];
	pid_t pid;

	memset(w, 0, sizeof(*w));
	td_init(&w->d);
	td_start(&w->d, NULL);
	td_client_open(&w->app, &w->d, "app");
	pc.name = "alpha";
	pc.elem_size = 256;
	pc.min_nr = 8;
	pc.max_nr = 64;
	pc.flags = SP_POOL_RECLAIM_ON_EXIT;
	TD_EXPECT_FREE(td_pool_create_ex(w->app.fd, &pc), 0);
	TD_EXPECT_FREE(td_pool_create(w->app.fd, "beta", 1000, 4, 0), 0);
	TD_EXPECT_FREE(td_cache_create(w->app.fd, "things", 48, NULL, 0), 0);
	alloc_n(&w->app, "alpha", 5);
	alloc_n(&w->app, "beta", 3);
	kmalloc_n(&w->app, 100, 2);

	assert_int_equal(pipe(p), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		victim(&w->d, p[1]);
	}
	close(p[1]);
	if (read(p[0], &w->victim_slot, sizeof(w->victim_slot)) != sizeof(w->victim_slot)) {
		td_waitpid(pid, 20000);
		fail_msg("the victim died before reporting its slot");
	}
	close(p[0]);
	kill(pid, SIGKILL);
	assert_int_equal(td_waitpid(pid, 20000), 128 + SIGKILL);
	w->victim_pid = pid;
	/* the daemon notices the closed connection: wait until the slot is dead */
	for (int i = 0;; i++) {
		Shmpool__Response *r = td_simple(w->app.fd, SHMPOOL__REQUEST__OP_STATS);
		Shmpool__ClientInfo *ci;
		bool dead;

		TD_EXPECT(r, 0);
		ci = td_stats_client(r, w->victim_slot);
		dead = ci && strcmp(ci->state, "dead") == 0;
		td_free(r);
		if (dead)
			break;
		if (i > 4000)
			fail_msg("the victim's slot %u is not marked dead", w->victim_slot);
		td_nap();
	}
}

void ct_world_stop(struct ct_world *w)
{
	if (w->app.fd >= 0) {
		td_client_close(&w->app, true);
		w->app.fd = -1;
	}
	if (w->d.pid)
		assert_int_equal(td_stop(&w->d), 0);
}

void ct_world_cleanup(struct ct_world *w)
{
	ct_world_stop(w);
	td_cleanup(&w->d);
}
