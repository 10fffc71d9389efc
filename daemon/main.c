/* SPDX-License-Identifier: MIT */
/*
 * main.c - shmpoold: options, defaults, signals, the event loop.
 *
 * Defaults need no configuration:
 *   socket   --socket, else $SHMPOOL_SOCKET, else /run/shmpool/shmpool.sock
 *            as root, else $XDG_RUNTIME_DIR/shmpool/shmpool.sock, else
 *            /tmp/shmpool-$UID/shmpool.sock (the last directory is created,
 *            0755 under /run, else 0700; the socket is mode 0660)
 *   segment  "/shmpool" as root, else "/shmpool-$UID"; 64 MiB when created
 *   allowed  the daemon's own uid and root (--allow-uid/--allow-gid add more)
 *
 * --config FILE (config.c) is read before the other flags, which override
 * it.  Under systemd the listening socket may be inherited (socket
 * activation, systemd.c); the daemon then neither creates nor removes it.
 *
 * Start: parse the command line and the file (a bad value: message, exit
 * 2); check the socket path (a live daemon there: exit 1; a stale socket is
 * removed); open the segment (owner.c: create, re-attach or --reset; an
 * invalid one: exit 1); create the predeclared pools; listen; tell systemd
 * READY=1; run the loop.  SIGTERM/SIGINT stop the loop cleanly: the
 * socket is unlinked, the segment stays for the next start, and connected
 * clients keep their slots so they can resume.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmpoold.h"

#define DEFAULT_SIZE		(64ull << 20)
#define DEFAULT_FRAME_TIMEOUT	10000u
#define DEFAULT_MAX_CONNECTIONS	1024u

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: shmpoold [OPTION]...\n"
		"Own a shmpool shared-memory segment and serve its clients on a Unix socket.\n"
		"\n"
		"  --config FILE          read settings and predeclared pools from FILE (INI,\n"
		"                         see shmpoold(8)); the flags below override it\n"
		"  --socket PATH          listening socket (default: $SHMPOOL_SOCKET, else\n"
		"                         /run/shmpool/shmpool.sock as root, else\n"
		"                         $XDG_RUNTIME_DIR/shmpool/shmpool.sock, else\n"
		"                         /tmp/shmpool-$UID/shmpool.sock)\n"
		"  --shm-name NAME        POSIX shm name of the segment (default: /shmpool as\n"
		"                         root, else /shmpool-$UID)\n"
		"  --size N[K|M|G]        size of a newly created segment (default: 64M)\n"
		"  --reset                discard an existing segment and create a new one\n"
		"  --max-clients N        client slots of a newly created segment (default: 1024)\n"
		"  --max-connections N    open connections at most (default: 1024)\n"
		"  --allow-uid UID        also accept clients of this user (repeatable)\n"
		"  --allow-gid GID        also accept clients of this group (repeatable)\n"
		"  --frame-timeout-ms N   close a connection idle in a partial frame after N ms\n"
		"                         (default: 10000)\n"
		"  --log-level LEVEL      error, warn, info (default) or debug\n"
		"  --help                 print this help and exit\n"
		"  --version              print the version and exit\n"
		"\n"
		"An existing valid segment is re-attached with everything in it; it is never\n"
		"re-initialised without --reset.  SIGTERM or SIGINT shut down cleanly and leave\n"
		"the segment for the next start.  Started by systemd, it accepts an inherited\n"
		"listening socket (socket activation) and reports readiness (Type=notify).\n"
		"Exit status: 0 clean shutdown, 1 failure, 2 bad command line or configuration.\n");
}

static int bad_value(const char *opt, const char *val, const char *why)
{
	fprintf(stderr, "shmpoold: invalid value '%s' for %s: %s\n", val, opt, why);
	fprintf(stderr, "Try 'shmpoold --help'.\n");
	return -EINVAL;
}

static int set_path(char *dst, size_t size, const char *src)
{
	if (strlen(src) >= size)
		return -ENAMETOOLONG;
	snprintf(dst, size, "%s", src);
	return 0;
}

/* The socket path nobody asked for: see the design notes above. */
static int default_socket(struct spd_config *c)
{
	const char *env = getenv("SHMPOOL_SOCKET"), *xdg = getenv("XDG_RUNTIME_DIR");
	char path[PATH_MAX];

	if (env && *env) {
		if (set_path(c->socket_path, sizeof(c->socket_path), env))
			return bad_value("$SHMPOOL_SOCKET", env, "path too long for a Unix socket");
		return 0;
	}
	c->socket_default = true;
	if (geteuid() == 0)
		snprintf(path, sizeof(path), "/run/shmpool/shmpool.sock");
	else if (xdg && *xdg == '/')
		snprintf(path, sizeof(path), "%s/shmpool/shmpool.sock", xdg);
	else
		snprintf(path, sizeof(path), "/tmp/shmpool-%u/shmpool.sock", (unsigned)geteuid());
	if (set_path(c->socket_path, sizeof(c->socket_path), path))
		return bad_value("the default socket", path, "path too long for a Unix socket");
	return 0;
}

enum {
	OPT_SOCKET = 256, OPT_SHM_NAME, OPT_SIZE, OPT_RESET, OPT_LOG_LEVEL, OPT_FRAME_TIMEOUT,
	OPT_MAX_CLIENTS, OPT_MAX_CONNECTIONS, OPT_ALLOW_UID, OPT_ALLOW_GID, OPT_CONFIG,
};

static const struct option long_options[] = {
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "shm-name", required_argument, NULL, OPT_SHM_NAME },
	{ "size", required_argument, NULL, OPT_SIZE },
	{ "reset", no_argument, NULL, OPT_RESET },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "frame-timeout-ms", required_argument, NULL, OPT_FRAME_TIMEOUT },
	{ "max-clients", required_argument, NULL, OPT_MAX_CLIENTS },
	{ "max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS },
	{ "allow-uid", required_argument, NULL, OPT_ALLOW_UID },
	{ "allow-gid", required_argument, NULL, OPT_ALLOW_GID },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/*
 * First pass over the command line: --help, --version and --config only
 * (the file is loaded before the flags, which override it).
 * Return: 0 to go on, 1 to exit successfully, or -EINVAL (usage or a bad
 * configuration file).
 */
static int first_pass(int argc, char **argv, struct spd_config *c)
{
	const char *config = NULL;
	int opt;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "hV", long_options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			usage(stdout);
			return 1;
		case 'V':
			printf("shmpoold %s (protocol %u, segment layout %u)\n", SHMPOOL_VERSION,
			       SPD_PROTOCOL_VERSION, SP_LAYOUT_VERSION);
			return 1;
		case OPT_CONFIG:
			config = optarg;
			break;
		default:
			break; /* reported by the second pass */
		}
	}
	optind = 0; /* GNU: start over for the second pass */
	if (config && spd_config_load(config, c))
		return -EINVAL;
	return 0;
}

/* Return: 0 to run, 1 to exit successfully (--help), or -EINVAL (usage). */
static int parse_options(int argc, char **argv, struct spd_config *c)
{
	bool cmd_uid = false, cmd_gid = false;
	uint64_t v;
	int opt, rc;

	memset(c, 0, sizeof(*c));
	c->size = DEFAULT_SIZE;
	c->log_level = SPD_LOG_INFO;
	c->frame_timeout_ms = DEFAULT_FRAME_TIMEOUT;
	c->max_connections = DEFAULT_MAX_CONNECTIONS;
	c->socket_mode = 0660;
	c->listen_fd = -1;
	{
		struct sp_seg_params def;

		sp_seg_params_default(&def);
		c->max_clients = def.max_clients;
		c->max_pools = def.max_pools;
		c->max_caches = def.max_caches;
		c->max_order = def.max_order;
		c->kmalloc_prefill = def.kmalloc_prefill;
	}
	rc = first_pass(argc, argv, c);
	if (rc)
		return rc;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "hV", long_options, NULL)) != -1) {
		const char *a = optarg;

		switch (opt) {
		case 'h':
		case 'V':
		case OPT_CONFIG:
			break; /* the first pass did these */
		case OPT_SOCKET:
			if (!*a || set_path(c->socket_path, sizeof(c->socket_path), a))
				return bad_value("--socket", a, *a ? "longer than a Unix socket path "
							       "may be (107 bytes)" : "empty");
			c->socket_set = true;
			break;
		case OPT_SHM_NAME:
			if (spd_check_shm_name(a))
				return bad_value("--shm-name", a, "must be '/' followed by 1..254 "
								  "characters other than '/'");
			snprintf(c->shm_name, sizeof(c->shm_name), "%s", a);
			c->shm_name_set = true;
			break;
		case OPT_SIZE:
			if (spd_parse_size(a, &v) || v < (1u << 20) || v > (1ull << 40))
				return bad_value("--size", a, "expected N, NK, NM or NG between 1M "
							      "and 1024G");
			c->size = v;
			c->size_set = true;
			break;
		case OPT_RESET:
			c->reset = true;
			break;
		case OPT_LOG_LEVEL:
			if (spd_log_parse_level(a, &c->log_level))
				return bad_value("--log-level", a, "expected error, warn, info or "
								   "debug");
			break;
		case OPT_FRAME_TIMEOUT:
			if (spd_parse_u64(a, &v) || v < 1 || v > 3600000)
				return bad_value("--frame-timeout-ms", a, "expected 1..3600000");
			c->frame_timeout_ms = (unsigned)v;
			break;
		case OPT_MAX_CLIENTS:
			if (spd_parse_u64(a, &v) || v < 1 || v > SP_MAX_CLIENTS_LIMIT)
				return bad_value("--max-clients", a, "expected 1..65520");
			c->max_clients = (uint32_t)v;
			c->max_clients_set = true;
			break;
		case OPT_MAX_CONNECTIONS:
			if (spd_parse_u64(a, &v) || v < 1 || v > 1000000)
				return bad_value("--max-connections", a, "expected 1..1000000");
			c->max_connections = (unsigned)v;
			break;
		case OPT_ALLOW_UID:
			if (!cmd_uid) /* the command line's list replaces the file's */
				c->nr_allow_uid = 0;
			cmd_uid = true;
			if (c->nr_allow_uid == SPD_MAX_ALLOW ||
			    spd_parse_id(a, true, &c->allow_uid[c->nr_allow_uid]))
				return bad_value("--allow-uid", a, "expected a uid or user name (at "
								   "most 64 of them)");
			c->nr_allow_uid++;
			break;
		case OPT_ALLOW_GID:
			if (!cmd_gid)
				c->nr_allow_gid = 0;
			cmd_gid = true;
			if (c->nr_allow_gid == SPD_MAX_ALLOW ||
			    spd_parse_id(a, false, &c->allow_gid[c->nr_allow_gid]))
				return bad_value("--allow-gid", a, "expected a gid or group name (at "
								   "most 64 of them)");
			c->nr_allow_gid++;
			break;
		case ':':
			fprintf(stderr, "shmpoold: option %s needs a value\n", argv[optind - 1]);
			fprintf(stderr, "Try 'shmpoold --help'.\n");
			return -EINVAL;
		default:
			fprintf(stderr, "shmpoold: unknown option '%s'\n", argv[optind - 1]);
			fprintf(stderr, "Try 'shmpoold --help'.\n");
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "shmpoold: unexpected argument '%s'\nTry 'shmpoold --help'.\n",
			argv[optind]);
		return -EINVAL;
	}
	if (!c->socket_set && default_socket(c))
		return -EINVAL;
	if (!c->shm_name_set) {
		if (geteuid() == 0)
			snprintf(c->shm_name, sizeof(c->shm_name), "/shmpool");
		else
			snprintf(c->shm_name, sizeof(c->shm_name), "/shmpool-%u",
				 (unsigned)geteuid());
	}
	/* the daemon's own user and root are always allowed (2 spare entries) */
	c->allow_uid[c->nr_allow_uid++] = (uint32_t)geteuid();
	if (geteuid() != 0)
		c->allow_uid[c->nr_allow_uid++] = 0;
	return 0;
}

static void on_close_handle(uv_handle_t *h)
{
	(void)h;
}

static void shutdown_daemon(struct spd_daemon *d, const char *why)
{
	if (d->stopping)
		return;
	d->stopping = true;
	spd_info("%s: shutting down (segment %s stays for the next start)", why,
		 d->cfg.shm_name);
	spd_systemd_stopping(d);
	spd_server_stop(d);
	if (!uv_is_closing((uv_handle_t *)&d->reaper))
		uv_close((uv_handle_t *)&d->reaper, on_close_handle);
	uv_close((uv_handle_t *)&d->sigterm, on_close_handle);
	uv_close((uv_handle_t *)&d->sigint, on_close_handle);
}

static void on_signal(uv_signal_t *h, int signum)
{
	shutdown_daemon(h->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void close_leftover(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, on_close_handle);
}

int main(int argc, char **argv)
{
	struct spd_daemon d;
	int rc, exit_code = SPD_EXIT_FAILURE;

	memset(&d, 0, sizeof(d));
	d.seg_lock_fd = -1;
	rc = parse_options(argc, argv, &d.cfg);
	if (rc) {
		spd_config_free(&d.cfg);
		return rc > 0 ? SPD_EXIT_OK : SPD_EXIT_USAGE;
	}
	spd_log_set_level(d.cfg.log_level);
	if (d.cfg.config_path[0])
		spd_info("configuration read from %s (%u predeclared pools)", d.cfg.config_path,
			 d.cfg.nr_pools);
	signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an error code, not a death */
	d.loop = uv_default_loop();
	d.start_ms = sp_now_ms();

	/* caught from the start: a SIGTERM during start-up is handled by the loop */
	uv_signal_init(d.loop, &d.sigterm);
	uv_signal_init(d.loop, &d.sigint);
	d.sigterm.data = d.sigint.data = &d;
	if (uv_signal_start(&d.sigterm, on_signal, SIGTERM) ||
	    uv_signal_start(&d.sigint, on_signal, SIGINT)) {
		spd_error("cannot catch SIGTERM/SIGINT");
		goto out;
	}
	d.cfg.listen_fd = spd_systemd_listen_fd();
	if (d.cfg.listen_fd < -1)
		goto out;
	if ((d.cfg.listen_fd < 0 && spd_server_check_path(&d)) || spd_owner_open(&d) ||
	    spd_owner_predeclare(&d))
		goto out;
	if (spd_server_start(&d) || spd_owner_start_reaper(&d))
		goto out;
	spd_info("shmpoold %s ready: socket %s%s, segment %s (%" PRIu64 " MiB, %u client "
		 "slots)", SHMPOOL_VERSION, d.cfg.socket_path,
		 d.cfg.listen_fd >= 0 ? " (from systemd)" : "", d.cfg.shm_name,
		 d.seg->size >> 20, d.seg->geo.max_clients);
	spd_systemd_ready(&d);
	uv_run(d.loop, UV_RUN_DEFAULT);
	exit_code = SPD_EXIT_OK;
out:
	if (!d.stopping) {
		d.stopping = true;
		spd_server_stop(&d);
	}
	uv_walk(d.loop, close_leftover, NULL);
	uv_run(d.loop, UV_RUN_DEFAULT);
	uv_loop_close(d.loop);
	spd_owner_close(&d);
	spd_config_free(&d.cfg);
	if (exit_code == SPD_EXIT_OK)
		spd_info("stopped");
	return exit_code;
}
