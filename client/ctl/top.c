/* SPDX-License-Identifier: MIT */
/*
 * top.c - `shmpoolctl top`: a live, slabtop-like view of the caches.
 *
 * Every --delay seconds (default 2) one Stats reply is fetched and drawn:
 * a summary (objects, slabs, pages, pools, clients, orphans) and the caches
 * sorted by a column, with the allocation rate since the previous frame.
 * Keys (read raw, without echo): a active objects, o objects, u use,
 * s object size, b slabs, c cache size, r allocation rate, n name;
 * space or Enter redraws now; q (or Ctrl-C) quits.  The sorted column's
 * title is bold.
 *
 * Terminal handling is plain ANSI and termios, no curses: the alternate
 * screen, cursor home + clear per frame, the rows cut to the window
 * (TIOCGWINSZ, redrawn on SIGWINCH).  Whatever happens the terminal is
 * restored: at exit, on SIGINT/SIGTERM (they only set a flag the loop
 * polls), and before an error is printed.
 *
 * Without a terminal on stdout, or with --iterations N, it runs in batch
 * mode like `top -b`: N frames (default 1) of plain text, no escapes.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"

struct sort_key {
	char key;
	const char *name;
	int col;	/* column in the table */
};

static const struct sort_key sort_keys[] = {
	{ 'a', "active_objs", 2 }, { 'o', "num_objs", 3 }, { 'u', "use", 4 },
	{ 's', "objsize", 5 },     { 'b', "slabs", 6 },    { 'c', "cache_size", 8 },
	{ 'r', "allocs_per_s", 9 }, { 'n', "name", 0 },
};
#define NR_SORT_KEYS (sizeof(sort_keys) / sizeof(sort_keys[0]))

/* struct top - the view's state.  Process-private. */
struct top {
	struct ctl_src *src;
	const struct ctl_opts *o;
	const struct sort_key *sort;
	bool tty;			/* interactive: escapes, keys */
	struct termios saved;
	bool raw;
	Shmpool__Response *cur, *prev;	/* this frame's and the last frame's Stats */
	double prev_t, cur_t;		/* when they were fetched (monotonic s) */
	double *rate;			/* allocs/s per cache of cur */
	unsigned frames;
};

static volatile sig_atomic_t stop_flag, winch_flag;

static void on_stop(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void on_winch(int sig)
{
	(void)sig;
	winch_flag = 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void term_restore(struct top *t)
{
	if (!t->raw)
		return;
	tcsetattr(STDIN_FILENO, TCSANOW, &t->saved);
	printf("\033[?25h\033[?1049l"); /* cursor back, leave the alternate screen */
	fflush(stdout);
	t->raw = false;
}

static int term_raw(struct top *t)
{
	struct termios raw;

	if (tcgetattr(STDIN_FILENO, &t->saved) < 0)
		return -errno;
	raw = t->saved;
	raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
	raw.c_cc[VMIN] = 0;
	raw.c_cc[VTIME] = 0;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) < 0)
		return -errno;
	t->raw = true;
	printf("\033[?1049h\033[?25l"); /* alternate screen, hide the cursor */
	return 0;
}

static void window(int *rows, int *cols)
{
	struct winsize ws;

	*rows = 24;
	*cols = 80;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	}
}

/* Allocation rate of each cache of cur against the same cache (id, gen) in prev. */
static void rates(struct top *t)
{
	const Shmpool__StatsReply *c = t->cur->stats, *p = t->prev ? t->prev->stats : NULL;
	double dt = t->cur_t - t->prev_t;

	free(t->rate);
	t->rate = calloc(c->n_caches + 1, sizeof(*t->rate));
	if (!t->rate || !p || dt <= 0)
		return;
	for (size_t i = 0; i < c->n_caches; i++) {
		const Shmpool__CacheInfo *x = c->caches[i];

		for (size_t j = 0; j < p->n_caches; j++) {
			const Shmpool__CacheInfo *y = p->caches[j];

			if (y->id == x->id && y->gen == x->gen && x->nr_alloc >= y->nr_alloc) {
				t->rate[i] = (double)(x->nr_alloc - y->nr_alloc) / dt;
				break;
			}
		}
	}
}

static const struct top *sort_ctx;

static double use_of(const Shmpool__CacheInfo *c)
{
	return c->num_objs ? (double)c->active_objs / (double)c->num_objs : 0;
}

/* Descending by the sort column (ascending for the name); then by name. */
static int cmp(const void *a, const void *b)
{
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	const Shmpool__StatsReply *st = sort_ctx->cur->stats;
	const Shmpool__CacheInfo *x = st->caches[i], *y = st->caches[j];
	double dx = 0, dy = 0;

	switch (sort_ctx->sort->key) {
	case 'a': dx = (double)x->active_objs; dy = (double)y->active_objs; break;
	case 'o': dx = (double)x->num_objs; dy = (double)y->num_objs; break;
	case 'u': dx = use_of(x); dy = use_of(y); break;
	case 's': dx = x->obj_size; dy = y->obj_size; break;
	case 'b': dx = x->num_slabs; dy = y->num_slabs; break;
	case 'c': dx = (double)ctl_cache_bytes(x); dy = (double)ctl_cache_bytes(y); break;
	case 'r': dx = sort_ctx->rate ? sort_ctx->rate[i] : 0;
		  dy = sort_ctx->rate ? sort_ctx->rate[j] : 0; break;
	default: break;
	}
	if (dx != dy)
		return dx < dy ? 1 : -1;
	return strcmp(ctl_str(x->name), ctl_str(y->name));
}

static void draw(struct top *t)
{
	static const char *const heads[] = { "NAME", "KIND", "ACTIVE_OBJS", "NUM_OBJS", "USE",
					     "OBJSIZE", "SLABS", "OBJ/SLAB", "CACHE_SIZE",
					     "ALLOCS/S", NULL };
	const Shmpool__StatsReply *st = t->cur->stats;
	const Shmpool__SegmentInfo *sg = st->segment;
	uint64_t aobj = 0, nobj = 0, aslab = 0, nslab = 0, out = 0, orph = 0;
	uint64_t used = sg->nr_pages >= sg->free_pages ? sg->nr_pages - sg->free_pages : 0;
	unsigned alive = 0, dead = 0, waiters = 0, active_caches = 0;
	char p1[16], p2[16], p3[16], b1[32], b2[32], up[32];
	struct ctl_table tb;
	size_t *order;
	int rows, cols, shown = 0, room;

	window(&rows, &cols);
	if (!t->tty)
		cols = 0, rows = 0;
	for (size_t i = 0; i < st->n_caches; i++) {
		const Shmpool__CacheInfo *c = st->caches[i];

		aobj += c->active_objs;
		nobj += c->num_objs;
		aslab += c->active_slabs;
		nslab += c->num_slabs;
		active_caches += c->active_objs > 0;
	}
	for (size_t i = 0; i < st->n_pools; i++) {
		out += st->pools[i]->nr_out;
		waiters += st->pools[i]->nr_waiters;
	}
	for (size_t i = 0; i < st->n_clients; i++) {
		if (strcmp(ctl_str(st->clients[i]->state), "dead") == 0) {
			dead++;
			orph += st->clients[i]->objects;
		} else {
			alive++;
		}
	}
	if (t->tty)
		printf("\033[H\033[2J");
	if (t->src->offline)
		printf("shmpoolctl top - %s (%s), offline", ctl_str(sg->name),
		       ctl_bytes(b1, sizeof(b1), sg->size));
	else
		printf("shmpoolctl top - %s (%s), shmpoold %s up %s", ctl_str(sg->name),
		       ctl_bytes(b1, sizeof(b1), sg->size), ctl_str(sg->daemon_version),
		       ctl_duration(up, sizeof(up), sg->daemon_uptime_s));
	printf(", every %.1fs, sorted by %s\n", t->o->delay_s, t->sort->name);
	printf(" Active / Total Objects (%% used) : %llu / %llu (%s)\n", (unsigned long long)aobj,
	       (unsigned long long)nobj, ctl_pct(p1, sizeof(p1), aobj, nobj));
	printf(" Active / Total Slabs (%% used)   : %llu / %llu (%s)\n", (unsigned long long)aslab,
	       (unsigned long long)nslab, ctl_pct(p2, sizeof(p2), aslab, nslab));
	printf(" Active / Total Caches           : %u / %zu\n", active_caches, st->n_caches);
	printf(" Used / Total Pages (%% used)     : %llu / %u (%s), %s free\n",
	       (unsigned long long)used, sg->nr_pages, ctl_pct(p3, sizeof(p3), used, sg->nr_pages),
	       ctl_bytes(b2, sizeof(b2), sg->free_pages * SP_PAGE_SIZE));
	printf(" Pools %zu, elements out %llu, waiters %u; clients %u alive, %u dead "
	       "(orphans: %llu objects)\n\n", st->n_pools, (unsigned long long)out, waiters,
	       alive, dead, (unsigned long long)orph);
	room = rows ? rows - 9 : (int)st->n_caches;
	order = calloc(st->n_caches + 1, sizeof(*order));
	if (!order)
		return;
	for (size_t i = 0; i < st->n_caches; i++)
		order[i] = i;
	sort_ctx = t;
	qsort(order, st->n_caches, sizeof(*order), cmp);
	ctl_table_init(&tb, heads, "llrrrrrrrr");
	for (size_t k = 0; k < st->n_caches && shown < room; k++) {
		const Shmpool__CacheInfo *c = st->caches[order[k]];
		char pct[16], bs[32];

		if (c->kmalloc && !c->num_objs)
			continue; /* empty kmalloc classes are noise */
		shown++;
		ctl_table_row(&tb);
		ctl_table_cell(&tb, "%s", ctl_str(c->name));
		ctl_table_cell(&tb, "%s", ctl_cache_kind(c));
		ctl_table_cell(&tb, "%llu", (unsigned long long)c->active_objs);
		ctl_table_cell(&tb, "%llu", (unsigned long long)c->num_objs);
		ctl_table_cell(&tb, "%s", ctl_pct(pct, sizeof(pct), c->active_objs, c->num_objs));
		ctl_table_cell(&tb, "%u", c->obj_size);
		ctl_table_cell(&tb, "%u", c->num_slabs);
		ctl_table_cell(&tb, "%u", c->objperslab);
		ctl_table_cell(&tb, "%s", ctl_bytes(bs, sizeof(bs), ctl_cache_bytes(c)));
		if (t->rate && t->prev)
			ctl_table_cell(&tb, "%.1f", t->rate[order[k]]);
		else
			ctl_table_cell(&tb, "-");
	}
	ctl_table_print(&tb, stdout, cols, t->tty ? t->sort->col : -1);
	ctl_table_free(&tb);
	free(order);
	if (t->tty)
		printf("\nkeys: a o u s b c r n sort, space refresh, q quit");
	else
		printf("\n");
	fflush(stdout);
	t->frames++;
}

static int fetch(struct top *t)
{
	Shmpool__Response *r;
	int rc = ctl_stats(t->src, &r);

	if (rc) {
		term_restore(t);
		rc = ctl_report(t->src, rc, r, "Stats");
		if (r)
			shmpool__response__free_unpacked(r, NULL);
		return rc;
	}
	if (t->prev)
		shmpool__response__free_unpacked(t->prev, NULL);
	t->prev = t->cur;
	t->prev_t = t->cur_t;
	t->cur = r;
	t->cur_t = now_s();
	rates(t);
	return 0;
}

/* A key: 1 to quit, 2 to redraw, 0 for nothing. */
static int key(struct top *t, char k)
{
	if (k == 'q' || k == 'Q' || k == 3 /* Ctrl-C in raw mode without ISIG */)
		return 1;
	if (k == ' ' || k == '\n' || k == '\r')
		return 2;
	for (size_t i = 0; i < NR_SORT_KEYS; i++) {
		if (sort_keys[i].key == k) {
			t->sort = &sort_keys[i];
			return 2;
		}
	}
	return 0;
}

static int loop(struct top *t)
{
	long left = t->o->iterations;
	int rc;

	for (;;) {
		double next;

		if ((rc = fetch(t)))
			return rc;
		draw(t);
		if (t->o->iterations && --left <= 0)
			return 0;
		next = now_s() + t->o->delay_s;
		for (;;) {
			struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
			double wait = next - now_s();
			int n;

			if (stop_flag)
				return 0;
			if (wait <= 0)
				break;
			n = poll(&pfd, t->tty ? 1 : 0, (int)(wait * 1000) + 1);
			if (winch_flag) {
				winch_flag = 0;
				draw(t);
			}
			if (n > 0 && (pfd.revents & POLLIN)) {
				char buf[16];
				ssize_t got = read(STDIN_FILENO, buf, sizeof(buf));

				for (ssize_t i = 0; i < got; i++) {
					int what = key(t, buf[i]);

					if (what == 1)
						return 0;
					if (what == 2)
						draw(t);
				}
				if (got == 0) /* EOF on the terminal */
					return 0;
			} else if (n > 0 && (pfd.revents & (POLLHUP | POLLERR))) {
				return 0;
			}
		}
	}
}

/**
 * ctl_cmd_top() - the live view; q quits.
 * @src: the source.  @o: options (--delay, --sort, --iterations).
 * @argc: @argv: the command's operands.
 *
 * May sleep (between refreshes).
 * Return: the exit code.
 */
int ctl_cmd_top(struct ctl_src *src, const struct ctl_opts *o, int argc, char **argv)
{
	struct top t = { .src = src, .o = o, .sort = &sort_keys[0] };
	struct sigaction sa = { .sa_handler = on_stop };
	struct ctl_opts batch;
	int rc;

	(void)argv;
	if (argc)
		return ctl_usage_error("top takes no arguments");
	if (o->json)
		return ctl_usage_error("top is interactive; --json does not apply (caches --json "
				       "gives the same numbers)");
	if (o->sort) {
		t.sort = NULL;
		for (size_t i = 0; i < NR_SORT_KEYS; i++)
			if (strcmp(o->sort, sort_keys[i].name) == 0 ||
			    (strlen(o->sort) == 1 && o->sort[0] == sort_keys[i].key))
				t.sort = &sort_keys[i];
		if (!t.sort)
			return ctl_usage_error("--sort %s: expected one of active_objs (a), num_objs "
					       "(o), use (u), objsize (s), slabs (b), cache_size "
					       "(c), allocs_per_s (r), name (n)", o->sort);
	}
	t.tty = isatty(STDOUT_FILENO) && isatty(STDIN_FILENO) && !o->iterations;
	if (!t.tty && !o->iterations) {
		batch = *o;
		batch.iterations = 1;
		t.o = &batch;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_winch;
	sigaction(SIGWINCH, &sa, NULL);
	if (t.tty && term_raw(&t))
		t.tty = false;
	rc = loop(&t);
	term_restore(&t);
	if (t.cur)
		shmpool__response__free_unpacked(t.cur, NULL);
	if (t.prev)
		shmpool__response__free_unpacked(t.prev, NULL);
	free(t.rate);
	return rc;
}
