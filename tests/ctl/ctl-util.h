/* SPDX-License-Identifier: MIT */
/*
 * ctl-util.h - helpers for the shmpoolctl tests: run shmpoolctl (the
 * executable named by $SHMPOOLCTL) to completion, capture its stdout and
 * stderr and exit status, and read its --json output with json-c.
 *
 * Daemons are started with tests/daemon/daemon-util (td_start & co.).
 * Every run is bounded (CT_RUN_TIMEOUT_MS): a hung shmpoolctl is killed
 * and fails the test; nothing else is timed.
 */
#ifndef SHMPOOL_CTL_UTIL_H
#define SHMPOOL_CTL_UTIL_H

#include <json-c/json.h>
#include <stdint.h>

#include "daemon-util.h"

#define CT_RUN_TIMEOUT_MS 30000

struct ct_out {
	int status;	/* exit code, or 128 + signal */
	char *out;	/* stdout, NUL-terminated */
	char *err;	/* stderr */
};

/* Run shmpoolctl with @argv (NULL-terminated, without argv[0]). */
void ct_runv(struct ct_out *o, const char *const *argv);
/* The same with the arguments listed: ct_run(&o, "--socket", s, "status", NULL). */
void ct_run(struct ct_out *o, ...);
void ct_free(struct ct_out *o);
/* Fail the test unless the run exited with @status (prints both streams). */
#define CT_EXPECT(o, st) ct_expect_((o), (st), __FILE__, __LINE__)
void ct_expect_(const struct ct_out *o, int status, const char *file, int line);

/* stdout parsed as one JSON object (fails the test otherwise); json_object_put() it. */
json_object *ct_json(const struct ct_out *o);
/* A member by a dotted path of keys and array indexes: "pools.0.name". */
json_object *ct_get(json_object *o, const char *path);
int64_t ct_int(json_object *o, const char *path);
const char *ct_str(json_object *o, const char *path);
/* The element of array @path whose member @key equals string @val (or NULL). */
json_object *ct_find(json_object *o, const char *path, const char *key, const char *val);
/* ... or whose integer member @key equals @val. */
json_object *ct_find_int(json_object *o, const char *path, const char *key, int64_t val);

/*
 * The world most tests look at: a daemon; client "app" (kept open) with
 * pools "alpha" (256 B, min_nr 8, max_nr 64, reclaim-on-exit) and "beta"
 * (1000 B, min_nr 4, slab backing, no flags), a cache "things" (48 B);
 * app holds 5 alpha, 3 beta and 2 kmalloc(100) objects.  A client
 * "victim" took 4 alpha, 6 beta and 2 kmalloc(200), then was SIGKILLed:
 * its alpha elements came back (reclaim-on-exit), 6 beta elements + 2
 * kmalloc objects are its orphans.
 */
struct ct_world {
	struct td_daemon d;
	struct td_client app;
	uint32_t victim_slot;
	int victim_pid;
};

#define CT_APP_OBJECTS		(5 + 3 + 2)
#define CT_APP_POOL_ELEMS	(5 + 3)
#define CT_VICTIM_OBJECTS	(6 + 2)
#define CT_VICTIM_POOL_ELEMS	6

void ct_world_start(struct ct_world *w);
/* Goodbye for app, stop the daemon (SIGTERM), keep the segment. */
void ct_world_stop(struct ct_world *w);
/* ct_world_stop if running, then td_cleanup. */
void ct_world_cleanup(struct ct_world *w);

#endif
