/* SPDX-License-Identifier: MIT */
/*
 * fuzz-rpc.c - libFuzzer target: the daemon's frame decoder and request
 * dispatcher, driven from a buffer against a real segment.
 *
 * The daemon's own code runs (session.c framing, rpc.c dispatch, views.c
 * replies, owner.c client death), compiled into this target without
 * main.c; sessions have no socket: spd_session_input() hands them bytes as
 * if read, and their response frames come back through ss->sink.
 *
 * Input: byte 0 says who the two peers are (bit 0: peer A is uid 1000,
 * not root; bit 1: peer A is off the allow-list; peer B is always root).
 * The rest is a sequence of chunks, each a 2-byte big-endian header (bit 15:
 * peer B, else A; the low 15 bits: the chunk's length, cut at the end of
 * the input) and its bytes.  So frames split and merge anywhere, and two
 * clients interleave.  At the end both connections close without Goodbye
 * (the daemon's client-death path).
 *
 * Oracles besides ASan/UBSan/LeakSanitizer:
 *   - every response is one well-formed Response frame of at most
 *     SPD_FRAME_MAX bytes, with a status <= 0 and a message for an error,
 *     and only a Hello reply passes a file descriptor;
 *   - after each input the checker (with every lock) finds the segment
 *     consistent: nothing a peer says over the socket corrupts it, and no
 *     lock stays held.
 *
 * The segment (a 2 MiB memfd with tables of 4 so they fill up) is reset
 * from a pristine copy before each input: inputs are independent and a
 * crash reproduces from its input alone.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shmpoold.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct spd_daemon d;
static uint8_t *pristine;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "fuzz-rpc: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	abort();
}

/* Every response must be one well-formed frame. */
static void sink(struct spd_session *ss, const uint8_t *frame, size_t len, int pass_fd)
{
	Shmpool__Response *r;
	uint32_t n;

	(void)ss;
	if (len < 4)
		die("response frame of %zu bytes", len);
	n = (uint32_t)frame[0] << 24 | (uint32_t)frame[1] << 16 | (uint32_t)frame[2] << 8 | frame[3];
	if (n != len - 4 || n > SPD_FRAME_MAX)
		die("response frame length %u, %zu bytes sent", n, len);
	r = shmpool__response__unpack(NULL, n, frame + 4);
	if (!r)
		die("the daemon sent a response that does not unpack");
	if (r->status > 0 || (r->status && (!r->message || !*r->message)))
		die("response status %d with message \"%s\"", r->status,
		    r->message ? r->message : "(null)");
	if (pass_fd >= 0 && (r->status || r->payload_case != SHMPOOL__RESPONSE__PAYLOAD_HELLO))
		die("a file descriptor passed with a response other than a Hello reply");
	shmpool__response__free_unpacked(r, NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sp_seg_params p;
	int fd, rc;

	(void)argc;
	(void)argv;
	/* every log line is formatted (run with -close_fd_mask=2 to hide them) */
	spd_log_set_level(SPD_LOG_DEBUG);
	sp_seg_params_default(&p);
	p.size = 2u << 20;
	p.max_clients = 4;
	p.max_caches = 4;
	p.max_pools = 4;
	fd = memfd_create("fuzz-rpc", MFD_CLOEXEC);
	if (fd < 0)
		die("memfd_create failed");
	rc = sp_seg_create(NULL, fd, &p, &d.seg);
	if (rc)
		die("sp_seg_create: %s", sp_errmsg());
	d.seg->lock_timeout_ms = SPD_LOCK_TIMEOUT_MS;
	pristine = malloc(d.seg->size);
	d.nr_by_slot = d.seg->hdr->max_clients;
	d.by_slot = calloc(d.nr_by_slot, sizeof(*d.by_slot));
	d.release_due = calloc(d.nr_by_slot, 1);
	d.loop = malloc(sizeof(*d.loop));
	if (!pristine || !d.by_slot || !d.release_due || !d.loop || uv_loop_init(d.loop))
		die("out of memory");
	memcpy(pristine, d.seg->base, d.seg->size);
	snprintf(d.cfg.shm_name, sizeof(d.cfg.shm_name), "/fuzz-rpc");
	snprintf(d.cfg.socket_path, sizeof(d.cfg.socket_path), "/nonexistent/fuzz.sock");
	d.cfg.max_connections = 16;
	d.cfg.frame_timeout_ms = 1000;
	return 0;
}

static struct spd_session *peer(uint32_t uid, bool allowed)
{
	struct spd_session *ss = spd_session_create(&d);

	if (!ss)
		die("out of memory");
	ss->sink = sink;
	ss->pid = (int)getpid();
	ss->uid = uid;
	ss->gid = uid;
	ss->allowed = allowed;
	return ss;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sp_violation v[5];
	struct sp_report r = { .cap = 5, .v = v };
	struct spd_session *ss[2];
	size_t at = 1;
	int n;

	if (size < 1)
		return 0;
	memcpy(d.seg->base, pristine, d.seg->size);
	memset(d.by_slot, 0, d.nr_by_slot * sizeof(*d.by_slot));
	memset(d.release_due, 0, d.nr_by_slot);
	d.start_ms = sp_now_ms();
	ss[0] = peer(data[0] & 1 ? 1000 : 0, !(data[0] & 2));
	ss[1] = peer(0, true);
	while (size - at >= 2) {
		unsigned b = data[at] >> 7;
		size_t len = ((size_t)(data[at] & 0x7f) << 8 | data[at + 1]);

		at += 2;
		if (len > size - at)
			len = size - at;
		if (!ss[b]->closing)
			spd_session_input(ss[b], data + at, len);
		at += len;
	}
	for (unsigned i = 0; i < 2; i++)
		if (!ss[i]->closing)
			spd_session_close(ss[i], "end of the fuzz input");
	uv_run(d.loop, UV_RUN_NOWAIT); /* the close callbacks free the sessions */
	if (d.sessions || d.nr_sessions)
		die("%u sessions left after closing them all", d.nr_sessions);
	n = sp_check(d.seg, 0, &r);
	if (n) {
		for (unsigned i = 0; i < r.nr && i < r.cap; i++)
			fprintf(stderr, "violation: %s\n", v[i].what);
		die("the checker found %d violations after the input (%s)", n,
		    n < 0 ? sp_errmsg() : "see above");
	}
	return 0;
}
