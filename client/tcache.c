/* SPDX-License-Identifier: MIT */
/*
 * tcache.c - which magazine set each thread uses for each session.
 *
 * The magazines themselves live in the segment (shared/magazine.c); this
 * file keeps the process-private map from (thread, session) to a set:
 *
 *   shmp__tc_hot      initial-exec TLS: the set of the session this thread
 *                     used last - the only thing the fast path reads
 *   struct thread_tc  per thread, heap: up to SHMP_TC_SESSIONS sessions;
 *                     a pthread key's destructor flushes and frees its sets
 *                     when the thread exits
 *
 * A session is recognised by its pointer and its sid (unique in the
 * process), so a stale entry for a disconnected session whose memory was
 * reused never matches.  A thread exiting after its session was
 * disconnected finds the session gone from the live list and leaves the
 * set alone: the daemon freed it with the session's slot.  A thread using
 * more sessions at once than there are entries takes the locked path for
 * the extra ones.
 *
 * Locking: live_lock guards the list of live sessions; a thread's own map
 * is only ever touched by that thread (and by its key destructor).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define SHMP_TC_SESSIONS 4

struct thread_tc {
	struct shmp__tc_ent ent[SHMP_TC_SESSIONS];
};

__thread struct shmp__tc_ent shmp__tc_hot __attribute__((tls_model("initial-exec")));
static __thread struct thread_tc *my_tc __attribute__((tls_model("initial-exec")));
/* the session this thread could not make a set for (segment full): no retry storm */
static __thread shmp_client *failed_c;
static __thread uint64_t failed_sid;

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static shmp_client *live_head;
static pthread_key_t tc_key;
static pthread_once_t tc_once = PTHREAD_ONCE_INIT;

/* The live session with this pointer and sid, referenced; or NULL. */
static shmp_client *live_get(shmp_client *c, uint64_t sid)
{
	shmp_client *x;

	pthread_mutex_lock(&live_lock);
	for (x = live_head; x && !(x == c && x->sid == sid); x = x->live_next)
		;
	if (x && (shmp__usable(x) || !x->magazines))
		x = NULL;
	if (x)
		shmp__client_get(x);
	pthread_mutex_unlock(&live_lock);
	return x;
}

/* Is the entry's session still connected in this process? */
static bool ent_live(const struct shmp__tc_ent *e)
{
	shmp_client *x;

	pthread_mutex_lock(&live_lock);
	for (x = live_head; x && !(x == e->c && x->sid == e->sid); x = x->live_next)
		;
	pthread_mutex_unlock(&live_lock);
	return x != NULL;
}

/* Flush and free one entry's set if its session is still live. */
static void ent_release(struct shmp__tc_ent *e)
{
	shmp_client *c;

	if (!e->set)
		return;
	c = live_get(e->c, e->sid);
	if (c) {
		sp_magset_destroy(c->seg, e->set);
		shmp__client_put(c);
	}
	memset(e, 0, sizeof(*e));
}

/* pthread key destructor: the thread is exiting. */
static void tc_exit(void *arg)
{
	struct thread_tc *t = arg;

	memset(&shmp__tc_hot, 0, sizeof(shmp__tc_hot));
	for (unsigned i = 0; i < SHMP_TC_SESSIONS; i++)
		ent_release(&t->ent[i]);
	if (t == my_tc)
		my_tc = NULL;
	free(t);
}

static void tc_init(void)
{
	pthread_key_create(&tc_key, tc_exit);
}

/**
 * shmp__live_add() - record a connected session (it gets its sid here).
 * @c: the session.
 *
 * Does not sleep.
 */
void shmp__live_add(shmp_client *c)
{
	static uint64_t next_sid;

	pthread_once(&tc_once, tc_init);
	pthread_mutex_lock(&live_lock);
	c->sid = ++next_sid;
	c->live_next = live_head;
	live_head = c;
	pthread_mutex_unlock(&live_lock);
}

/**
 * shmp__live_del() - a session is going away.
 * @c: the session.
 *
 * Does not sleep.
 */
void shmp__live_del(shmp_client *c)
{
	pthread_mutex_lock(&live_lock);
	for (shmp_client **pp = &live_head; *pp; pp = &(*pp)->live_next) {
		if (*pp == c) {
			*pp = c->live_next;
			break;
		}
	}
	pthread_mutex_unlock(&live_lock);
}

/**
 * shmp__tc_forget() - flush and free the calling thread's set for @c.
 * @c: a usable session (at shmp_flush() and disconnect).
 *
 * May sleep.
 */
void shmp__tc_forget(shmp_client *c)
{
	struct thread_tc *t = my_tc;

	if (shmp__tc_hot.c == c)
		memset(&shmp__tc_hot, 0, sizeof(shmp__tc_hot));
	if (shmp__usable(c))
		return;
	for (unsigned i = 0; t && i < SHMP_TC_SESSIONS; i++) {
		if (t->ent[i].c == c && t->ent[i].sid == c->sid && t->ent[i].set) {
			sp_magset_destroy(c->seg, t->ent[i].set);
			memset(&t->ent[i], 0, sizeof(t->ent[i]));
		}
	}
}

/**
 * shmp__tc_fork_child() - a forked child inherits no magazine: the sets
 * belong to the parent's slot.
 *
 * Does not sleep.
 */
void shmp__tc_fork_child(void)
{
	memset(&shmp__tc_hot, 0, sizeof(shmp__tc_hot));
	if (my_tc)
		memset(my_tc, 0, sizeof(*my_tc)); /* the parent still frees its own */
}

/* The calling thread's entry for @c, made (with its set) if needed. */
static struct shmp__tc_ent *tc_entry(shmp_client *c)
{
	struct thread_tc *t = my_tc;
	struct shmp__tc_ent *e, *free_ent = NULL;
	int rc;

	if (!t) {
		t = calloc(1, sizeof(*t));
		if (!t)
			return NULL;
		pthread_once(&tc_once, tc_init);
		if (pthread_setspecific(tc_key, t)) {
			free(t);
			return NULL;
		}
		my_tc = t;
	}
	for (unsigned i = 0; i < SHMP_TC_SESSIONS; i++) {
		e = &t->ent[i];
		if (e->c == c && e->sid == c->sid && e->set)
			return e;
		if (!e->set || !ent_live(e))
			free_ent = free_ent ? free_ent : e;
	}
	if (!free_ent)
		return NULL;
	e = free_ent;
	memset(e, 0, sizeof(*e));
	if (failed_c == c && failed_sid == c->sid)
		return NULL;
	rc = sp_magset_create(c->seg, (uint32_t)syscall(SYS_gettid), &e->set);
	if (rc) {
		failed_c = c;
		failed_sid = c->sid;
		return NULL;
	}
	e->c = c;
	e->sid = c->sid;
	return e;
}

/*
 * mag_slow() - thread_mag() when the hot entry does not answer.
 * @c: a usable session.  @cache: a LIVE cache of its segment.
 *
 * May sleep (creating a set, emptying a magazine another cache used).
 * Return: the bound magazine, or NULL (locked path).
 */
static struct sp_mag *mag_slow(shmp_client *c, struct sp_cache *cache)
{
	struct shmp__tc_ent *e;
	struct sp_mag *m;

	if (shmp__usable(c) || !c->magazines) /* the fast path skipped these */
		return NULL;
	e = tc_entry(c);
	if (!e)
		return NULL;
	shmp__tc_hot = *e;
	if (sp_mag_bind(c->seg, e->set, cache, &m))
		return NULL;
	return m;
}

/* The thread's bound magazine for @cache (the slow lookup), or NULL. */
static struct sp_mag *thread_mag(shmp_client *c, struct sp_cache *cache)
{
	if (shmp__tc_hot.c == c && shmp__tc_hot.sid == c->sid) {
		struct sp_mag *m = &shmp__tc_hot.set->mag[sp_mag_index(cache->id)];

		if (sp_mag_bound(m, cache))
			return m;
	}
	return mag_slow(c, cache);
}

/**
 * shmp__mag_alloc() - alloc from the thread's magazine of @cache, binding
 * and refilling it as needed: what the fast path could not do.
 * @c: a usable session.  @cache: a LIVE cache of its segment.  @off: the
 * object.
 *
 * May sleep.
 * Return: 0, or < 0: take the locked path.
 */
int shmp__mag_alloc(shmp_client *c, struct sp_cache *cache, sp_off_t *off)
{
	struct sp_mag *m = thread_mag(c, cache);

	if (!m)
		return -EAGAIN;
	if (sp_mag_pop(c->seg, cache, m, off))
		return 0;
	if (sp_mag_refill(c->seg, cache, m) > 0 && sp_mag_pop(c->seg, cache, m, off))
		return 0;
	return -EAGAIN;
}

/**
 * shmp__mag_free() - free into the thread's magazine of @cache, binding
 * and flushing it as needed.
 * @c: a usable session.  @cache: a LIVE cache of its segment.  @off: the
 * claimed object.
 *
 * May sleep.
 * Return: 0, or < 0: take the locked path (which explains a refusal).
 */
int shmp__mag_free(shmp_client *c, struct sp_cache *cache, sp_off_t off)
{
	struct sp_mag *m = thread_mag(c, cache);
	enum sp_mag_push_result r;

	if (!m)
		return -EAGAIN;
	r = sp_mag_push(c->seg, cache, m, off);
	if (r == SP_MAG_FULL) {
		if (sp_mag_flush(c->seg, cache, m, sp_mag_cap(cache) / 2))
			return -EAGAIN;
		r = sp_mag_push(c->seg, cache, m, off);
	}
	return r == SP_MAG_PUSHED ? 0 : -EAGAIN;
}

/**
 * shmp__mag_drop() - empty the calling thread's magazine of @cache.
 * @c: session.  @cache: a cache of its segment.
 *
 * At handle close.  May sleep.
 */
void shmp__mag_drop(shmp_client *c, struct sp_cache *cache)
{
	struct sp_mag *m;

	if (shmp__usable(c) || shmp__tc_hot.c != c || shmp__tc_hot.sid != c->sid)
		return;
	m = &shmp__tc_hot.set->mag[sp_mag_index(cache->id)];
	if (sp_mag_bound(m, cache))
		sp_mag_flush(c->seg, cache, m, 0);
}

int shmp_flush(shmp_client *c)
{
	int rc = shmp__usable(c);

	if (rc)
		return rc;
	for (unsigned i = 0; my_tc && i < SHMP_TC_SESSIONS; i++) {
		struct shmp__tc_ent *e = &my_tc->ent[i];

		if (e->c == c && e->sid == c->sid && e->set) {
			rc = sp_mag_flush_all(c->seg, e->set);
			break;
		}
	}
	return rc;
}
