/* SPDX-License-Identifier: MIT */
/*
 * config.c - the configuration file (shmpoold --config FILE) and the value
 * parsers the command line shares with it (numbers and sizes: parse.c).
 *
 * Format: INI, read with inih.  Every key and section is known; anything
 * else stops the start with "FILE:LINE: what is wrong" (exit 2, like a bad
 * command line).  Comments start with '#' or ';' at the start of a line,
 * or ';' after a value.
 *
 *   [segment]  name, size, max_clients, max_pools, max_caches, max_order,
 *              kmalloc_prefill           (geometry of a segment it creates)
 *   [socket]   path, mode, group, max_connections, frame_timeout_ms
 *   [access]   allow_users, allow_groups (lists; a repeated key appends)
 *   [log]      level
 *   [pool NAME] elem_size, min_nr, max_nr, backing, flags, align, mode:
 *              a pool the daemon creates at start when it is missing
 *              (owner.c), like iceoryx's RouDi creates its mempools.
 *
 * Precedence: built-in defaults < the file < command-line flags (main.c
 * loads the file first, then applies the flags over it; a list given on the
 * command line replaces the file's list).
 *
 * Line numbers: inih's handler gets no line number in Debian's build, so
 * the file is fed to ini_parse_stream() through a reader that counts lines
 * (and sees section headers, so an empty [pool NAME] is still a pool).  A
 * line longer than inih's buffer is refused rather than split, which keeps
 * the reader's count and inih's equal.
 */
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmpoold.h"

/* ---- value parsers ------------------------------------------------------ */

/**
 * spd_parse_id() - a numeric uid/gid, or a user/group name.
 * @s: text.  @user: true for a user, false for a group.  @out: the id.
 *
 * May sleep (NSS lookup).
 * Return: 0 or -EINVAL.
 */
int spd_parse_id(const char *s, bool user, uint32_t *out)
{
	uint64_t v;

	if (spd_parse_u64(s, &v) == 0 && v < UINT32_MAX) {
		*out = (uint32_t)v;
		return 0;
	}
	if (user) {
		struct passwd *pw = getpwnam(s);

		if (pw) {
			*out = pw->pw_uid;
			return 0;
		}
	} else {
		struct group *gr = getgrnam(s);

		if (gr) {
			*out = gr->gr_gid;
			return 0;
		}
	}
	return -EINVAL;
}

/**
 * spd_parse_mode() - permission bits in octal ("0660", "660").
 * @s: text.  @out: the mode, at most 0777.
 *
 * Does not sleep.
 * Return: 0 or -EINVAL.
 */
int spd_parse_mode(const char *s, uint32_t *out)
{
	char *end;
	unsigned long v;

	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 8);
	if (errno || *end || v > 0777)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/**
 * spd_check_shm_name() - is @s a POSIX shm name: "/" + 1..254 non-"/" bytes?
 * @s: text.
 *
 * Does not sleep.
 * Return: 0 or -EINVAL.
 */
int spd_check_shm_name(const char *s)
{
	size_t n = strlen(s);

	if (n < 2 || s[0] != '/' || strchr(s + 1, '/') || n > 255)
		return -EINVAL;
	return 0;
}

/* ---- the file ----------------------------------------------------------- */

/* struct parse - one file being read.  Process-private. */
struct parse {
	FILE *f;
	const char *path;
	struct spd_config *c;
	unsigned line;			/* the line inih is handling */
	unsigned err_line;		/* first error: its line, 0 = none */
	char err[300];
	char section[SP_NAME_MAX + 16];	/* the current section as written */
	struct spd_pool_decl *pool;	/* the current [pool NAME], else NULL */
};

static void perr(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void perr(struct parse *p, const char *fmt, ...)
{
	va_list ap;

	if (p->err_line)
		return; /* the first error is the one reported */
	p->err_line = p->line;
	va_start(ap, fmt);
	vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
}

static const char *const known_sections[] = { "segment", "socket", "access", "log" };

/* A section header on the current line: "[name]" (inih strips the blanks). */
static void begin_section(struct parse *p, const char *name)
{
	struct spd_config *c = p->c;
	struct spd_pool_decl *nv;

	snprintf(p->section, sizeof(p->section), "%s", name);
	p->pool = NULL;
	if (strncmp(name, "pool", 4) == 0 && (name[4] == ' ' || name[4] == '\t')) {
		const char *pn = name + 5;

		while (*pn == ' ' || *pn == '\t')
			pn++;
		if (sp_name_check(pn)) {
			perr(p, "[pool %s]: invalid pool name (1..63 of A-Z a-z 0-9 . _ -)", pn);
			return;
		}
		for (unsigned i = 0; i < c->nr_pools; i++) {
			if (strcmp(c->pools[i].name, pn) == 0) {
				perr(p, "[pool %s] appears twice (first on line %u)", pn,
				     c->pools[i].line);
				return;
			}
		}
		nv = realloc(c->pools, (c->nr_pools + 1) * sizeof(*nv));
		if (!nv) {
			perr(p, "out of memory");
			return;
		}
		c->pools = nv;
		p->pool = &c->pools[c->nr_pools++];
		memset(p->pool, 0, sizeof(*p->pool));
		snprintf(p->pool->name, sizeof(p->pool->name), "%.*s", SP_NAME_MAX, pn);
		p->pool->line = p->line;
		p->pool->mode = 0600;
		return;
	}
	for (unsigned i = 0; i < sizeof(known_sections) / sizeof(known_sections[0]); i++)
		if (strcmp(name, known_sections[i]) == 0)
			return;
	perr(p, "unknown section [%s] (known: [segment], [socket], [access], [log], "
		"[pool NAME])", name);
}

/*
 * inih's reader: fgets that counts lines, sees section headers, and refuses
 * a line too long for inih's buffer (which would otherwise be split).
 */
static char *reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	char *s, *end;
	size_t n;

	if (p->err_line)
		return NULL; /* stop at the first error */
	if (!fgets(str, num, p->f))
		return NULL;
	p->line++;
	n = strlen(str);
	if (n && str[n - 1] != '\n' && !feof(p->f)) {
		perr(p, "line longer than %d bytes", num - 2);
		return NULL;
	}
	for (s = str; *s == ' ' || *s == '\t'; s++)
		;
	if (*s == '[' && (end = strchr(s, ']')) != NULL) {
		char name[sizeof(p->section)];
		size_t len;

		for (s++; *s == ' ' || *s == '\t'; s++)
			;
		while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		len = (size_t)(end - s);
		if (len >= sizeof(name)) {
			perr(p, "section name too long");
			return NULL;
		}
		memcpy(name, s, len);
		name[len] = '\0';
		begin_section(p, name);
	}
	return str;
}

/* Split a list on commas and blanks; call @fn on each word. */
static int each_word(struct parse *p, const char *v, int (*fn)(struct parse *, const char *))
{
	char buf[INI_MAX_LINE + 1], *save = NULL, *w;

	snprintf(buf, sizeof(buf), "%s", v);
	for (w = strtok_r(buf, ", \t", &save); w; w = strtok_r(NULL, ", \t", &save))
		if (fn(p, w))
			return -EINVAL;
	return 0;
}

static int add_user(struct parse *p, const char *w)
{
	struct spd_config *c = p->c;

	if (c->nr_allow_uid == SPD_MAX_ALLOW) {
		perr(p, "allow_users: more than %d entries", SPD_MAX_ALLOW);
		return -EINVAL;
	}
	if (spd_parse_id(w, true, &c->allow_uid[c->nr_allow_uid])) {
		perr(p, "allow_users: '%s' is neither a uid nor a known user", w);
		return -EINVAL;
	}
	c->nr_allow_uid++;
	return 0;
}

static int add_group(struct parse *p, const char *w)
{
	struct spd_config *c = p->c;

	if (c->nr_allow_gid == SPD_MAX_ALLOW) {
		perr(p, "allow_groups: more than %d entries", SPD_MAX_ALLOW);
		return -EINVAL;
	}
	if (spd_parse_id(w, false, &c->allow_gid[c->nr_allow_gid])) {
		perr(p, "allow_groups: '%s' is neither a gid nor a known group", w);
		return -EINVAL;
	}
	c->nr_allow_gid++;
	return 0;
}

static int add_pool_flag(struct parse *p, const char *w)
{
	struct spd_pool_decl *d = p->pool;

	if (strcmp(w, "none") == 0)
		return 0;
	if (strcmp(w, "reclaim_on_exit") == 0)
		d->flags |= SP_POOL_RECLAIM_ON_EXIT;
	else if (strcmp(w, "hwcache_align") == 0)
		d->cache_flags |= SP_CACHE_HWCACHE_ALIGN;
	else if (strcmp(w, "poison") == 0)
		d->cache_flags |= SP_CACHE_POISON;
	else if (strcmp(w, "redzone") == 0)
		d->cache_flags |= SP_CACHE_REDZONE;
	else {
		perr(p, "flags: unknown flag '%s' (known: reclaim_on_exit, hwcache_align, "
			"poison, redzone, none)", w);
		return -EINVAL;
	}
	return 0;
}

/* A number in [lo, hi], or an error naming the key and the range. */
static int num(struct parse *p, const char *key, const char *v, uint64_t lo, uint64_t hi,
	       uint64_t *out)
{
	if (spd_parse_u64(v, out) || *out < lo || *out > hi) {
		perr(p, "%s: invalid value '%s' (expected a number from %llu to %llu)", key, v,
		     (unsigned long long)lo, (unsigned long long)hi);
		return -EINVAL;
	}
	return 0;
}

static int u32(struct parse *p, const char *key, const char *v, uint64_t lo, uint64_t hi,
	       uint32_t *out)
{
	uint64_t x;

	if (num(p, key, v, lo, hi, &x))
		return -EINVAL;
	*out = (uint32_t)x;
	return 0;
}

static int mode(struct parse *p, const char *key, const char *v, uint32_t *out)
{
	if (spd_parse_mode(v, out)) {
		perr(p, "%s: invalid value '%s' (expected octal permission bits, e.g. 0660)", key,
		     v);
		return -EINVAL;
	}
	return 0;
}

static int segment_key(struct parse *p, const char *k, const char *v)
{
	struct spd_config *c = p->c;
	uint64_t x;

	if (strcmp(k, "name") == 0) {
		if (spd_check_shm_name(v)) {
			perr(p, "name: invalid value '%s' (expected '/' followed by 1..254 "
				"characters other than '/')", v);
			return -EINVAL;
		}
		snprintf(c->shm_name, sizeof(c->shm_name), "%s", v);
		c->shm_name_set = true;
		return 0;
	}
	if (strcmp(k, "size") == 0) {
		if (spd_parse_size(v, &x) || x < (1u << 20) || x > (1ull << 40)) {
			perr(p, "size: invalid value '%s' (expected N, NK, NM or NG between 1M "
				"and 1024G)", v);
			return -EINVAL;
		}
		c->size = x;
		c->size_set = true;
		return 0;
	}
	if (strcmp(k, "max_clients") == 0) {
		c->max_clients_set = true;
		return u32(p, k, v, 1, SP_MAX_CLIENTS_LIMIT, &c->max_clients);
	}
	if (strcmp(k, "max_pools") == 0) {
		c->geometry_set = true;
		return u32(p, k, v, 1, 65536, &c->max_pools);
	}
	if (strcmp(k, "max_caches") == 0) {
		c->geometry_set = true;
		return u32(p, k, v, 1, 65536, &c->max_caches);
	}
	if (strcmp(k, "max_order") == 0) {
		c->geometry_set = true;
		return u32(p, k, v, 1, SP_MAX_ORDER_LIMIT, &c->max_order);
	}
	if (strcmp(k, "kmalloc_prefill") == 0) {
		c->geometry_set = true;
		return u32(p, k, v, 0, 4096, &c->kmalloc_prefill);
	}
	return 1;
}

static int socket_key(struct parse *p, const char *k, const char *v)
{
	struct spd_config *c = p->c;
	uint64_t x;

	if (strcmp(k, "path") == 0) {
		if (!*v || v[0] != '/' || strlen(v) >= sizeof(c->socket_path)) {
			perr(p, "path: invalid value '%s' (expected an absolute path of at most "
				"%zu bytes)", v, sizeof(c->socket_path) - 1);
			return -EINVAL;
		}
		snprintf(c->socket_path, sizeof(c->socket_path), "%s", v);
		c->socket_set = true;
		return 0;
	}
	if (strcmp(k, "mode") == 0)
		return mode(p, k, v, &c->socket_mode);
	if (strcmp(k, "group") == 0) {
		if (spd_parse_id(v, false, &c->socket_gid)) {
			perr(p, "group: '%s' is neither a gid nor a known group", v);
			return -EINVAL;
		}
		c->socket_gid_set = true;
		return 0;
	}
	if (strcmp(k, "max_connections") == 0) {
		if (num(p, k, v, 1, 1000000, &x))
			return -EINVAL;
		c->max_connections = (unsigned)x;
		return 0;
	}
	if (strcmp(k, "frame_timeout_ms") == 0) {
		if (num(p, k, v, 1, 3600000, &x))
			return -EINVAL;
		c->frame_timeout_ms = (unsigned)x;
		return 0;
	}
	return 1;
}

static int access_key(struct parse *p, const char *k, const char *v)
{
	if (strcmp(k, "allow_users") == 0)
		return each_word(p, v, add_user);
	if (strcmp(k, "allow_groups") == 0)
		return each_word(p, v, add_group);
	return 1;
}

static int log_key(struct parse *p, const char *k, const char *v)
{
	if (strcmp(k, "level") == 0) {
		if (spd_log_parse_level(v, &p->c->log_level)) {
			perr(p, "level: invalid value '%s' (expected error, warn, info or debug)",
			     v);
			return -EINVAL;
		}
		return 0;
	}
	return 1;
}

static int pool_key(struct parse *p, const char *k, const char *v)
{
	struct spd_pool_decl *d = p->pool;
	uint64_t x;

	if (strcmp(k, "elem_size") == 0) {
		if (spd_parse_size(v, &x) || x < 1 || x > (1ull << 30)) {
			perr(p, "elem_size: invalid value '%s' (expected 1 byte to 1G, with an "
				"optional K, M or G)", v);
			return -EINVAL;
		}
		d->elem_size = x;
		return 0;
	}
	if (strcmp(k, "min_nr") == 0)
		return u32(p, k, v, 0, 1u << 24, &d->min_nr);
	if (strcmp(k, "max_nr") == 0)
		return u32(p, k, v, 0, UINT32_MAX, &d->max_nr);
	if (strcmp(k, "align") == 0)
		return u32(p, k, v, 0, 4096, &d->align);
	if (strcmp(k, "mode") == 0)
		return mode(p, k, v, &d->mode);
	if (strcmp(k, "flags") == 0)
		return each_word(p, v, add_pool_flag);
	if (strcmp(k, "backing") == 0) {
		if (strcmp(v, "slab") == 0) {
			d->backing = SP_BACK_SLAB;
		} else if (strcmp(v, "pages") == 0) {
			d->backing = SP_BACK_PAGES;
		} else if (strcmp(v, "kmalloc") == 0) {
			d->backing = SP_BACK_KMALLOC;
		} else {
			perr(p, "backing: invalid value '%s' (expected slab, pages or kmalloc)", v);
			return -EINVAL;
		}
		return 0;
	}
	return 1;
}

static const char *const keys_of[] = {
	"name, size, max_clients, max_pools, max_caches, max_order, kmalloc_prefill",
	"path, mode, group, max_connections, frame_timeout_ms",
	"allow_users, allow_groups",
	"level",
	"elem_size, min_nr, max_nr, backing, flags, align, mode",
};

/* inih's handler: 1 to go on, 0 for an error (recorded with its line). */
static int handler(void *user, const char *ini_section, const char *key, const char *value)
{
	struct parse *p = user;
	const char *section = p->section; /* as begin_section() saw it, blanks stripped */
	int which, rc;

	(void)ini_section;
	if (p->err_line)
		return 0;
	if (!*section) {
		perr(p, "'%s' outside a section: put it under [segment], [socket], [access], "
			"[log] or [pool NAME]", key);
		return 0;
	}
	if (p->pool) {
		which = 4;
		rc = pool_key(p, key, value);
	} else if (strcmp(section, "segment") == 0) {
		which = 0;
		rc = segment_key(p, key, value);
	} else if (strcmp(section, "socket") == 0) {
		which = 1;
		rc = socket_key(p, key, value);
	} else if (strcmp(section, "access") == 0) {
		which = 2;
		rc = access_key(p, key, value);
	} else if (strcmp(section, "log") == 0) {
		which = 3;
		rc = log_key(p, key, value);
	} else {
		return 0; /* an unknown section: begin_section() said so */
	}
	if (rc > 0)
		perr(p, "unknown key '%s' in [%s] (known: %s)", key, section, keys_of[which]);
	return rc == 0;
}

/* Whole-file checks once every line is read; errors name the section's line. */
static int check_pools(struct parse *p)
{
	struct spd_config *c = p->c;

	for (unsigned i = 0; i < c->nr_pools; i++) {
		struct spd_pool_decl *d = &c->pools[i];

		p->line = d->line;
		if (!d->elem_size)
			perr(p, "[pool %s] needs elem_size", d->name);
		else if (d->max_nr && d->max_nr < d->min_nr)
			perr(p, "[pool %s]: max_nr %u is below min_nr %u", d->name, d->max_nr,
			     d->min_nr);
		else if (d->backing != SP_BACK_SLAB && d->cache_flags)
			perr(p, "[pool %s]: hwcache_align, poison and redzone need slab backing",
			     d->name);
		else if (d->backing == SP_BACK_KMALLOC && d->elem_size > SP_KMALLOC_MAX)
			perr(p, "[pool %s]: elem_size %llu is above the largest kmalloc class "
				"(%u bytes): use slab or pages backing",
			     d->name, (unsigned long long)d->elem_size, SP_KMALLOC_MAX);
		else if (d->backing == SP_BACK_KMALLOC && (d->flags & SP_POOL_RECLAIM_ON_EXIT))
			perr(p, "[pool %s]: reclaim_on_exit needs slab or pages backing (a kmalloc "
				"class is shared)", d->name);
		else if (d->backing == SP_BACK_KMALLOC && d->align > 8)
			perr(p, "[pool %s]: align %u needs slab backing (kmalloc classes align "
				"to 8)", d->name, d->align);
		if (p->err_line)
			return -EINVAL;
	}
	return 0;
}

/**
 * spd_config_load() - read a configuration file into @c.
 * @path: the file.  @c: the configuration, holding the defaults.
 *
 * Keys found replace what @c holds; allow lists found replace the
 * defaults.  Prints "shmpoold: FILE:LINE: what" on the first error.
 * May sleep (file and NSS reads).
 * Return: 0, or -EINVAL (bad content), or the negative errno of opening it.
 */
int spd_config_load(const char *path, struct spd_config *c)
{
	struct parse p = { .path = path, .c = c };
	int rc;

	p.f = fopen(path, "re");
	if (!p.f) {
		rc = -errno;
		fprintf(stderr, "shmpoold: cannot read configuration file %s: %s\n", path,
			strerror(errno));
		return rc;
	}
	rc = ini_parse_stream(reader, &p, handler, &p);
	fclose(p.f);
	if (rc > 0 && !p.err_line) {
		p.line = (unsigned)rc;
		perr(&p, "syntax error: expected '[section]', 'key = value' or a comment");
	} else if (rc < 0 && !p.err_line) {
		perr(&p, "cannot parse the file (out of memory)");
	}
	if (!p.err_line)
		check_pools(&p);
	if (p.err_line) {
		fprintf(stderr, "shmpoold: %s:%u: %s\n", path, p.err_line, p.err);
		return -EINVAL;
	}
	snprintf(c->config_path, sizeof(c->config_path), "%s", path);
	return 0;
}

/**
 * spd_config_free() - release what spd_config_load() allocated.
 * @c: the configuration.
 *
 * Does not sleep.
 */
void spd_config_free(struct spd_config *c)
{
	free(c->pools);
	c->pools = NULL;
	c->nr_pools = 0;
}
