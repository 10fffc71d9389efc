/* SPDX-License-Identifier: MIT */
/*
 * main.c - shmpoolctl: the command line, dispatch, exit codes.
 *
 *   shmpoolctl [--socket PATH | --segment NAME] [--json] COMMAND [ARGS]
 *
 * Options may come before or after the command (GNU getopt permutes);
 * an option that the command does not take is a usage error.  Exit codes
 * (ctl.h): 0 ok, 1 check failed / not found / refused, 2 usage, 3 daemon
 * unreachable.  Read commands work on the daemon or, with --segment, on a
 * segment mapped read-only (offline.c); admin commands need the daemon.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

/* Options a command may take, beyond the global ones. */
enum {
	O_ALL = 1 << 0,
	O_CREATE = 1 << 1,	/* --max, --pages, --kmalloc, flags, --align, --mode */
	O_TOP = 1 << 2,		/* --delay, --sort, --iterations */
	O_READ = 1 << 3,	/* works offline (--segment) */
};

struct command {
	const char *name;
	ctl_cmd_fn fn;
	unsigned opts;
	const char *args;
	const char *help;
};

static const struct command commands[] = {
	{ "status", ctl_cmd_status, O_READ, "", "daemon, segment, memory, clients at a glance" },
	{ "pools", ctl_cmd_pools, O_READ, "", "every pool: reserve, elements out, counters" },
	{ "pool", ctl_cmd_pool, O_READ, "NAME", "one pool in detail" },
	{ "caches", ctl_cmd_caches, O_READ | O_ALL, "[--all]",
	  "slab caches with the /proc/slabinfo columns" },
	{ "slabinfo", ctl_cmd_caches, O_READ | O_ALL, "[--all]", "the same as caches" },
	{ "buddyinfo", ctl_cmd_buddyinfo, O_READ, "", "free page blocks per order" },
	{ "clients", ctl_cmd_clients, O_READ, "",
	  "client slots: pid, uid, alive/dead, what they hold (orphans)" },
	{ "check", ctl_cmd_check, O_READ, "", "run the consistency checker (exit 1 on violations)" },
	{ "top", ctl_cmd_top, O_READ | O_TOP, "[-d SECONDS] [-s KEY] [-n N]",
	  "live view of the caches; keys a o u s b c r n sort, q quits" },
	{ "metrics", ctl_cmd_metrics, O_READ, "", "Prometheus text exposition format" },
	{ "create", ctl_cmd_create, O_CREATE, "NAME ELEM_SIZE [MIN_NR] [...]", "create a pool" },
	{ "destroy", ctl_cmd_destroy, 0, "NAME", "destroy a pool (no element may be out)" },
	{ "resize", ctl_cmd_resize, 0, "NAME MIN_NR", "change a pool's reserve" },
	{ "reclaim", ctl_cmd_reclaim, 0, "SLOT", "free what a dead client slot holds" },
};
#define NR_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "Usage: shmpoolctl [OPTION]... COMMAND [ARG]...\n"
		   "Look inside a shmpool segment and administer its pools.\n\nCommands:\n");
	for (size_t i = 0; i < NR_COMMANDS; i++) {
		char left[64];

		snprintf(left, sizeof(left), "%s %s", commands[i].name, commands[i].args);
		fprintf(f, "  %-36s %s\n", left, commands[i].help);
	}
	fprintf(f,
		"\nOptions:\n"
		"  --socket PATH      the daemon's socket (default: $SHMPOOL_SOCKET, else\n"
		"                     /run/shmpool/shmpool.sock as root, else\n"
		"                     $XDG_RUNTIME_DIR/shmpool/shmpool.sock or\n"
		"                     /tmp/shmpool-$UID/shmpool.sock, else the system daemon's)\n"
		"  --segment NAME     read the segment NAME (or a file holding one) read-only,\n"
		"                     without a daemon: post-mortem inspection\n"
		"  --json             machine-readable output (read and admin commands)\n"
		"  --all              caches: also the empty kmalloc classes\n"
		"  -d, --delay SECS   top: refresh interval (default 2)\n"
		"  -s, --sort KEY     top: active_objs, num_objs, use, objsize, slabs,\n"
		"                     cache_size, allocs_per_s or name (or its key letter)\n"
		"  -n, --iterations N top: draw N frames and exit (batch mode)\n"
		"  create options: --max N (cap on reserve + out), --pages (page backing),\n"
		"                  --kmalloc (backing: the kmalloc class of ELEM_SIZE, shared),\n"
		"                  --reclaim-on-exit, --poison, --redzone, --hwcache-align,\n"
		"                  --align N, --mode MODE (octal, e.g. 0604)\n"
		"  --help             print this help and exit\n"
		"  --version          print the version and exit\n"
		"\nSizes accept K, M and G suffixes (powers of 1024).\n"
		"Exit status: 0 ok, 1 check failed or not found (or refused), 2 usage,\n"
		"3 daemon unreachable.\n");
}

enum {
	OPT_SOCKET = 256, OPT_SEGMENT, OPT_JSON, OPT_ALL, OPT_MAX, OPT_PAGES, OPT_KMALLOC, OPT_RECLAIM,
	OPT_POISON, OPT_REDZONE, OPT_HWALIGN, OPT_ALIGN, OPT_MODE, OPT_HELP, OPT_VERSION,
};

static const struct option long_options[] = {
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "segment", required_argument, NULL, OPT_SEGMENT },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "all", no_argument, NULL, OPT_ALL },
	{ "delay", required_argument, NULL, 'd' },
	{ "sort", required_argument, NULL, 's' },
	{ "iterations", required_argument, NULL, 'n' },
	{ "max", required_argument, NULL, OPT_MAX },
	{ "pages", no_argument, NULL, OPT_PAGES },
	{ "kmalloc", no_argument, NULL, OPT_KMALLOC },
	{ "reclaim-on-exit", no_argument, NULL, OPT_RECLAIM },
	{ "poison", no_argument, NULL, OPT_POISON },
	{ "redzone", no_argument, NULL, OPT_REDZONE },
	{ "hwcache-align", no_argument, NULL, OPT_HWALIGN },
	{ "align", required_argument, NULL, OPT_ALIGN },
	{ "mode", required_argument, NULL, OPT_MODE },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

static int parse_u32(const char *s, uint32_t *out, int base)
{
	char *end;
	unsigned long long v;

	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, base);
	if (errno || *end || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* Return: 0 to go on, 1 to exit 0 (--help/--version), or CTL_EXIT_USAGE. */
static int parse(int argc, char **argv, struct ctl_opts *o, unsigned *given)
{
	int opt;
	char *end;

	memset(o, 0, sizeof(*o));
	o->delay_s = 2.0;
	*given = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "d:s:n:h", long_options, NULL)) != -1) {
		const char *a = optarg;

		switch (opt) {
		case OPT_SOCKET: o->socket = a; break;
		case OPT_SEGMENT: o->segment = a; break;
		case OPT_JSON: o->json = true; break;
		case OPT_ALL: o->all = true; *given |= O_ALL; break;
		case 'd':
			errno = 0;
			o->delay_s = strtod(a, &end);
			if (errno || *end || end == a || !(o->delay_s >= 0.05 && o->delay_s <= 3600))
				return ctl_usage_error("--delay %s: expected seconds from 0.05 to "
						       "3600", a);
			*given |= O_TOP;
			break;
		case 's': o->sort = a; *given |= O_TOP; break;
		case 'n':
			errno = 0;
			o->iterations = strtol(a, &end, 10);
			if (errno || *end || end == a || o->iterations < 1)
				return ctl_usage_error("--iterations %s: expected a number >= 1", a);
			*given |= O_TOP;
			break;
		case OPT_MAX:
			if (parse_u32(a, &o->max_nr, 10))
				return ctl_usage_error("--max %s: expected a number", a);
			*given |= O_CREATE;
			break;
		case OPT_PAGES: o->pages = true; *given |= O_CREATE; break;
		case OPT_KMALLOC: o->kmalloc = true; *given |= O_CREATE; break;
		case OPT_RECLAIM: o->pool_flags |= SP_POOL_RECLAIM_ON_EXIT; *given |= O_CREATE; break;
		case OPT_POISON: o->cache_flags |= SP_CACHE_POISON; *given |= O_CREATE; break;
		case OPT_REDZONE: o->cache_flags |= SP_CACHE_REDZONE; *given |= O_CREATE; break;
		case OPT_HWALIGN: o->cache_flags |= SP_CACHE_HWCACHE_ALIGN; *given |= O_CREATE; break;
		case OPT_ALIGN:
			if (parse_u32(a, &o->align, 10))
				return ctl_usage_error("--align %s: expected a number", a);
			*given |= O_CREATE;
			break;
		case OPT_MODE:
			if (parse_u32(a, &o->mode, 8) || o->mode > 0777)
				return ctl_usage_error("--mode %s: expected octal permission bits "
						       "(e.g. 0604)", a);
			*given |= O_CREATE;
			break;
		case 'h':
		case OPT_HELP:
			usage(stdout);
			return 1;
		case OPT_VERSION:
			printf("shmpoolctl %s (protocol %u, segment layout %u)\n", SHMPOOL_VERSION,
			       CTL_PROTOCOL_VERSION, SP_LAYOUT_VERSION);
			return 1;
		case ':':
			return ctl_usage_error("option %s needs a value", argv[optind - 1]);
		default:
			return ctl_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (o->socket && o->segment)
		return ctl_usage_error("--socket and --segment exclude each other");
	return 0;
}

int main(int argc, char **argv)
{
	const struct command *cmd = NULL;
	struct ctl_opts o;
	struct ctl_src src;
	unsigned given;
	int rc;

	rc = parse(argc, argv, &o, &given);
	if (rc)
		return rc == 1 ? CTL_EXIT_OK : rc;
	if (optind >= argc)
		return ctl_usage_error("no command given");
	for (size_t i = 0; i < NR_COMMANDS && !cmd; i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			cmd = &commands[i];
	if (!cmd)
		return ctl_usage_error("unknown command '%s'", argv[optind]);
	if (given & ~cmd->opts & (O_ALL | O_CREATE | O_TOP))
		return ctl_usage_error("%s does not take that option", cmd->name);
	if (o.segment && !(cmd->opts & O_READ))
		return ctl_usage_error("%s needs the daemon: --segment reads a segment read-only",
				       cmd->name);
	rc = ctl_src_open(&src, &o);
	if (rc) {
		if (cmd->fn == ctl_cmd_metrics) /* a textfile collector sees the outage */
			printf("# HELP shmpool_up 1 when the segment could be read.\n"
			       "# TYPE shmpool_up gauge\nshmpool_up 0\n");
		rc = ctl_report(&src, rc, NULL, o.segment ? "open" : "connect");
		ctl_src_close(&src);
		return rc;
	}
	rc = cmd->fn(&src, &o, argc - optind - 1, argv + optind + 1);
	fflush(stdout);
	ctl_src_close(&src);
	return rc;
}
