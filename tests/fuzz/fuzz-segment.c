/* SPDX-License-Identifier: MIT */
/*
 * fuzz-segment.c - libFuzzer target: the checker and every inspection path
 * over a segment image with random corruption.
 *
 * Any process that maps the segment read-write can write anything into
 * it, so whatever reads the segment to report on it must treat it as
 * untrusted input: a scribbled segment may yield violations and odd
 * numbers, never a crash, a hang or a write.
 *
 * At start-up a populated segment is built with the core's API: three
 * client slots (one of them dead, holding orphans), named caches with
 * poison, red zones and a template, slab- and page-backed pools with
 * reserves, kmalloc objects of many sizes, large and raw buddy blocks, and
 * some of it freed again.  Its bytes are the image.  Each input is a list
 * of patches applied to a fresh copy of the image in a memfd:
 *
 *   byte 0           bit 0: recompute the header checksum after patching,
 *                    as a malicious writer could, so that corrupt geometry
 *                    reaches the check of every field, not just the sum
 *   then patches     [region:1][offset:4 LE][len:1][len bytes]
 *
 * region (mod 9) picks the header page, clients, caches, pools, chash,
 * phash, pages, the data area or the whole segment; the offset is taken
 * modulo that region's size and the bytes are cut at the segment's end.
 * The copy is then attached read-only (a store would fault), and each of
 * these runs on it:
 *   sp_seg_validate_header(), sp_seg_attach(SP_ATTACH_RDONLY);
 *   sp_check(SP_CHECK_NOLOCK), with a report array and counting only;
 *   sp_dump_buddyinfo(), sp_dump_slabinfo(), sp_dump_pools(),
 *   sp_dump_clients();
 *   the daemon's views: List, Stats (every client's holdings), Check, a
 *   PoolInfo and CacheInfo of every descriptor, each packed as a Response
 *   after spd_view_fit() trimmed it to one frame (checked).
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

#define IMAGE_SIZE (2u << 20)

static uint8_t *image;	/* the populated segment */
static uint8_t *work;	/* the memfd, mapped read-write here */
static int work_fd;
static FILE *devnull;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "fuzz-segment: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (%s)\n", sp_errmsg());
	va_end(ap);
	abort();
}

#define OK(expr)                                      \
	do {                                          \
		if ((expr) != 0)                      \
			die("%s failed", #expr);      \
	} while (0)

static void use_slot(struct sp_seg *s, const char *name, uint32_t *slot)
{
	OK(sp_client_register(s, name, (int)getpid(), 1000, 1000, slot));
	OK(sp_client_use_slot(s, *slot));
}

/* A segment with a bit of everything in it; its bytes become the image. */
static void populate(struct sp_seg *s)
{
	static const uint64_t sizes[] = { 8, 24, 100, 256, 1000, 4096, 8192, 9000, 40000 };
	struct sp_pool_params pp = { .elem_size = 200, .min_nr = 6, .max_nr = 40, .mode = 0600 };
	uint8_t tmpl[48];
	uint32_t slot, dead, id, pid1, pid2, cid1, cid2;
	sp_off_t off, keep[8];

	use_slot(s, "alive", &slot);
	memset(tmpl, 0x5c, sizeof(tmpl));
	OK(sp_cache_create(s, "cache.plain", 64, 0, 0, NULL, &cid1));
	OK(sp_cache_create(s, "cache.debug", 48, 16, SP_CACHE_POISON | SP_CACHE_REDZONE, tmpl,
			   &cid2));
	OK(sp_pool_create(s, "pool.slab", &pp, &pid1));
	pp.elem_size = 5000;
	pp.backing = SP_BACK_PAGES;
	pp.min_nr = 3;
	pp.flags = SP_POOL_RECLAIM_ON_EXIT;
	OK(sp_pool_create(s, "pool.pages", &pp, &pid2));
	pp = (struct sp_pool_params){ .elem_size = 32, .min_nr = 2,
				      .cache_flags = SP_CACHE_POISON | SP_CACHE_HWCACHE_ALIGN };
	OK(sp_pool_create(s, "pool.poison", &pp, &id));
	for (unsigned i = 0; i < 8; i++) {
		OK(sp_cache_alloc(s, sp_cache_get(s, cid1), s->owner, &keep[i]));
		OK(sp_cache_alloc(s, sp_cache_get(s, cid2), s->owner, &off));
		OK(sp_pool_alloc(s, sp_pool_get(s, pid1), SP_ALLOC_NOWAIT, 0, &off));
	}
	for (unsigned i = 0; i < 8; i += 2)
		OK(sp_cache_free(s, sp_cache_get(s, cid1), keep[i]));
	for (unsigned i = 0; i < 4; i++)
		OK(sp_pool_alloc(s, sp_pool_get(s, pid2), SP_ALLOC_NOWAIT, 0, &off));
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		OK(sp_kmalloc(s, sizes[i], &off));
		OK(sp_kmalloc(s, sizes[i], &keep[0]));
		OK(sp_kfree(s, keep[0]));
	}
	OK(sp_buddy_alloc(s, 2, &off));

	/* a second client that dies holding things: orphans attributed to it */
	use_slot(s, "dies", &dead);
	for (unsigned i = 0; i < 3; i++) {
		OK(sp_kmalloc(s, 64 << i, &off));
		OK(sp_pool_alloc(s, sp_pool_get(s, pid1), SP_ALLOC_NOWAIT, 0, &off));
	}
	OK(sp_pool_alloc(s, sp_pool_get(s, pid2), SP_ALLOC_NOWAIT, 0, &off));
	OK(sp_kmalloc(s, 20000, &off));
	OK(sp_client_mark_dead(s, dead));

	/* a third, alive, with a little */
	use_slot(s, "third", &slot);
	OK(sp_kmalloc(s, 512, &off));
	OK(sp_pool_alloc(s, sp_pool_get(s, id), SP_ALLOC_NOWAIT, 0, &off));
	/* a cache created and destroyed: a FREE descriptor with history */
	OK(sp_cache_create(s, "cache.gone", 128, 0, 0, NULL, &id));
	OK(sp_cache_destroy(s, id));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sp_seg_params p;
	struct sp_report r = { 0 };
	struct sp_seg *s;
	int fd;

	(void)argc;
	(void)argv;
	sp_seg_params_default(&p);
	p.size = IMAGE_SIZE;
	p.max_clients = 8;
	p.max_caches = 8;
	p.max_pools = 8;
	p.max_order = 8;
	fd = memfd_create("fuzz-segment-image", MFD_CLOEXEC);
	if (fd < 0)
		die("memfd_create failed");
	OK(sp_seg_create(NULL, fd, &p, &s));
	populate(s);
	if (sp_check(s, 0, &r) != 0)
		die("the populated image is not clean");
	image = malloc(s->size);
	if (!image)
		die("out of memory");
	memcpy(image, s->base, s->size);
	sp_seg_detach(s);

	work_fd = memfd_create("fuzz-segment", MFD_CLOEXEC);
	if (work_fd < 0 || ftruncate(work_fd, IMAGE_SIZE) < 0)
		die("memfd_create failed");
	work = mmap(NULL, IMAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, work_fd, 0);
	devnull = fopen("/dev/null", "w");
	if (work == MAP_FAILED || !devnull)
		die("mmap or /dev/null failed");
	return 0;
}

/* Apply the input's patches to the copy in the memfd. */
static void patch(const uint8_t *data, size_t size)
{
	const struct sp_header *h = (const struct sp_header *)image;
	const struct sp_region *regions[] = { &h->clients, &h->caches, &h->pools, &h->chash,
					      &h->phash, &h->pages, &h->data };
	size_t at = 1;

	while (size - at >= 6) {
		unsigned region = data[at] % 9;
		uint64_t base = 0, len = IMAGE_SIZE, off;
		size_t n = data[at + 5];

		off = (uint64_t)data[at + 1] | (uint64_t)data[at + 2] << 8 |
		      (uint64_t)data[at + 3] << 16 | (uint64_t)data[at + 4] << 24;
		at += 6;
		if (region == 0) {
			len = SP_PAGE_SIZE;
		} else if (region <= 7) {
			base = regions[region - 1]->off;
			len = regions[region - 1]->size;
		}
		off = base + off % (len ? len : 1);
		if (n > size - at)
			n = size - at;
		if (n > IMAGE_SIZE - off)
			n = (size_t)(IMAGE_SIZE - off);
		memcpy(work + off, data + at, n);
		at += n;
	}
	if (data[0] & 1)
		((struct sp_header *)work)->geometry_sum = sp_geometry_sum((struct sp_header *)work);
}

/* Pack a Response the way the daemon sends it, trimmed to one frame. */
static void pack(Shmpool__Response *resp)
{
	char note[160];
	size_t n;
	uint8_t *buf;

	spd_view_fit(resp, note, sizeof(note));
	n = shmpool__response__get_packed_size(resp);
	if (n > SPD_FRAME_MAX)
		die("a reply of %zu bytes after spd_view_fit()", n);
	buf = malloc(n + 1);
	if (!buf)
		die("out of memory");
	if (shmpool__response__pack(resp, buf) != n)
		die("packed size differs");
	free(buf);
}

static void views(struct sp_seg *s)
{
	struct spd_daemon d = { .seg = s, .start_ms = sp_now_ms() };
	Shmpool__Response resp = SHMPOOL__RESPONSE__INIT;
	struct spd_arena a = { 0 };

	snprintf(d.cfg.shm_name, sizeof(d.cfg.shm_name), "/fuzz-segment");
	d.nr_by_slot = s->hdr->max_clients;
	d.by_slot = calloc(d.nr_by_slot, sizeof(*d.by_slot));
	d.release_due = calloc(d.nr_by_slot, 1);
	if (!d.by_slot || !d.release_due)
		die("out of memory");

	resp.list = spd_view_list(&a, s);
	resp.payload_case = SHMPOOL__RESPONSE__PAYLOAD_LIST;
	if (resp.list)
		pack(&resp);
	spd_arena_free(&a);

	resp.stats = spd_view_stats(&a, &d);
	resp.payload_case = SHMPOOL__RESPONSE__PAYLOAD_STATS;
	if (resp.stats)
		pack(&resp);
	spd_arena_free(&a);

	if (spd_view_check(&a, s, &resp.check) == 0) {
		resp.payload_case = SHMPOOL__RESPONSE__PAYLOAD_CHECK;
		pack(&resp);
	}
	spd_arena_free(&a);

	for (uint32_t i = 0; i < s->hdr->max_pools; i++) {
		struct sp_pool *p = sp_pool_get(s, i);

		if (!p)
			continue;
		resp.pool = spd_view_pool(&a, s, p);
		resp.payload_case = SHMPOOL__RESPONSE__PAYLOAD_POOL;
		if (resp.pool)
			pack(&resp);
	}
	for (uint32_t i = 0; i < sp_nr_cache_slots(s); i++) {
		struct sp_cache *c = sp_cache_get(s, i);

		if (!c)
			continue;
		resp.cache = spd_view_cache(&a, s, c);
		resp.payload_case = SHMPOOL__RESPONSE__PAYLOAD_CACHE;
		if (resp.cache)
			pack(&resp);
	}
	spd_arena_free(&a);
	free(d.by_slot);
	free(d.release_due);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sp_violation v[8];
	struct sp_report r = { .cap = 8, .v = v }, count = { 0 };
	struct sp_seg *s = NULL;
	int fd, n;

	if (size < 1)
		return 0;
	memcpy(work, image, IMAGE_SIZE);
	patch(data, size);
	sp_seg_validate_header((const struct sp_header *)work, IMAGE_SIZE);
	fd = dup(work_fd);
	if (fd < 0)
		die("dup failed");
	if (sp_seg_attach(NULL, fd, SP_ATTACH_RDONLY, &s))
		return 0; /* refused: nothing else reads a segment attach refuses */
	n = sp_check(s, SP_CHECK_NOLOCK, &r);
	if (n < 0 || sp_check(s, SP_CHECK_NOLOCK, &count) != n)
		die("sp_check returned %d, then %u", n, count.nr);
	sp_dump_buddyinfo(s, devnull);
	sp_dump_slabinfo(s, devnull, true);
	sp_dump_pools(s, devnull);
	sp_dump_clients(s, devnull);
	views(s);
	sp_seg_detach(s);
	return 0;
}
