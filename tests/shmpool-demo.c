/* SPDX-License-Identifier: MIT */
/*
 * shmpool-demo - `make run`: a self-check of the allocator core.
 *
 * Creates a segment, then a parent and a forked child (two processes, two
 * mappings at different addresses, two client slots) use every allocator:
 * buddy pages, a named slab cache with an init template, kmalloc classes
 * and large blocks, and a named mempool whose reserve is drawn on after the
 * child exhausts the segment.  The child hands offsets to the parent, which
 * verifies and frees them.  Prints what happened, the segment's
 * buddyinfo/slabinfo/pool/client views and the checker's verdict.
 * Exit status 0 only if every step worked and the checker is clean.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core.h"

#define NR_HANDOFF 64

/* What the child hands to the parent: offsets into the segment. */
struct handoff {
	uint32_t nr_pool, nr_cache, nr_kmalloc;
	sp_off_t pool[NR_HANDOFF], cache[NR_HANDOFF], kmalloc[NR_HANDOFF];
	sp_off_t large;
	uint32_t reserve_used;
};

static int die(const char *what, int rc)
{
	fflush(stdout);
	fprintf(stderr, "shmpool-demo: %s: %s (%s)\n", what, sp_strerror(rc), sp_errmsg());
	return 1;
}

static int child(const char *name, uint32_t pool_id, uint32_t cache_id, sp_off_t hand_off)
{
	struct sp_seg *s;
	struct handoff *h;
	struct sp_pool *p;
	sp_off_t off, hog[4096];
	uint32_t slot, nhog = 0;
	int rc;

	rc = sp_seg_attach(name, -1, 0, &s);
	if (rc)
		return die("child attach", rc);
	rc = sp_client_register(s, "demo-child", getpid(), getuid(), getgid(), &slot);
	if (rc || (rc = sp_client_use_slot(s, slot)))
		return die("child register", rc);
	printf("[child  %d] attached at %p, slot %u\n", (int)getpid(), (void *)s->base, slot);
	h = sp_ptr(s, hand_off);
	p = sp_pool_get(s, pool_id);
	for (int i = 0; i < 16; i++) {
		if ((rc = sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &off)))
			return die("pool alloc", rc);
		snprintf(sp_ptr(s, off), 64, "pool element %d from pid %d", i, (int)getpid());
		h->pool[h->nr_pool++] = off;
	}
	for (int i = 0; i < 16; i++) {
		if ((rc = sp_cache_alloc(s, sp_cache_get(s, cache_id), s->owner, &off)))
			return die("cache alloc", rc);
		h->cache[h->nr_cache++] = off;
	}
	for (uint64_t size = 8; size <= 8192; size *= 2) {
		if ((rc = sp_kmalloc(s, size, &off)))
			return die("kmalloc", rc);
		memset(sp_ptr(s, off), (int)(size & 0xff), size);
		h->kmalloc[h->nr_kmalloc++] = off;
	}
	if ((rc = sp_kmalloc(s, 1u << 20, &h->large)))
		return die("kmalloc 1 MiB", rc);
	memset(sp_ptr(s, h->large), 0x5a, 1u << 20);
	printf("[child  %d] allocated 16 pool elements, 16 cache objects, 11 kmalloc sizes, 1 MiB\n",
	       (int)getpid());

	/* exhaust the whole segment with page blocks, then draw on the reserve */
	while (nhog < 4096 && sp_buddy_alloc(s, 0, &hog[nhog]) == 0)
		nhog++;
	printf("[child  %d] took all %u remaining free pages: the segment is full\n",
	       (int)getpid(), nhog);
	while (sp_pool_alloc(s, p, SP_ALLOC_NOWAIT, 0, &off) == 0 && h->nr_pool < NR_HANDOFF) {
		h->pool[h->nr_pool++] = off;
		h->reserve_used++;
	}
	printf("[child  %d] the pool still gave %u elements (the last %llu from its min_nr reserve); "
	       "then NOWAIT failed: %s\n", (int)getpid(), h->reserve_used,
	       (unsigned long long)p->nr_reserve_alloc, sp_errmsg());
	while (nhog)
		sp_buddy_free(s, hog[--nhog]);
	sp_seg_detach(s);
	fflush(stdout); /* the child leaves with _exit() */
	return 0;
}

int main(int argc, char **argv)
{
	char name[64];
	struct sp_seg *s;
	struct sp_seg_params sp;
	struct sp_pool_params pp = { .elem_size = 256, .min_nr = 8, .mode = 0600 };
	struct handoff *h;
	sp_off_t hand_off;
	uint32_t slot, pool_id, cache_id;
	struct sp_report rep = { .cap = 32 };
	char tmpl[96];
	pid_t pid;
	int rc, st, bad = 0;

	(void)argc;
	(void)argv;
	snprintf(name, sizeof(name), "/shmpool-demo-%d", (int)getpid());
	sp_seg_params_default(&sp);
	sp.size = 16u << 20;
	rc = sp_seg_create(name, -1, &sp, &s);
	if (rc)
		return die("create segment", rc);
	printf("shmpool %s self-check demo\n", SHMPOOL_VERSION);
	printf("[parent %d] created segment %s: %llu bytes, %u data pages, max order %u\n",
	       (int)getpid(), name, (unsigned long long)s->size, s->hdr->nr_pages,
	       s->hdr->max_order);
	if ((rc = sp_client_register(s, "demo-parent", getpid(), getuid(), getgid(), &slot)) ||
	    (rc = sp_client_use_slot(s, slot)))
		return die("register", rc);
	memset(tmpl, 0, sizeof(tmpl));
	strcpy(tmpl, "constructed by the init template");
	if ((rc = sp_cache_create(s, "demo.objects", sizeof(tmpl), 0, SP_CACHE_HWCACHE_ALIGN, tmpl,
				  &cache_id)))
		return die("cache create", rc);
	if ((rc = sp_pool_create(s, "demo.pool", &pp, &pool_id)))
		return die("pool create", rc);
	if ((rc = sp_kmalloc(s, sizeof(*h), &hand_off)))
		return die("kmalloc handoff", rc);
	h = sp_ptr(s, hand_off);
	memset(h, 0, sizeof(*h));
	printf("[parent %d] created cache demo.objects (96 B, 64-byte aligned, template) and pool "
	       "demo.pool (256 B, min_nr 8)\n", (int)getpid());

	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(child(name, pool_id, cache_id, hand_off));
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "shmpool-demo: the child process failed\n");
		return 1;
	}

	for (uint32_t i = 0; i < h->nr_pool; i++) {
		if (i < 16 && strncmp(sp_ptr(s, h->pool[i]), "pool element", 12))
			bad++;
		if ((rc = sp_pool_free(s, sp_pool_get(s, pool_id), h->pool[i])))
			return die("pool free", rc);
	}
	for (uint32_t i = 0; i < h->nr_cache; i++) {
		if (memcmp(sp_ptr(s, h->cache[i]), tmpl, sizeof(tmpl)))
			bad++;
		if ((rc = sp_cache_free(s, sp_cache_get(s, cache_id), h->cache[i])))
			return die("cache free", rc);
	}
	for (uint32_t i = 0; i < h->nr_kmalloc; i++) {
		uint8_t *p = sp_ptr(s, h->kmalloc[i]);
		uint64_t size = 8ull << i;

		for (uint64_t b = 0; b < size; b++)
			bad += p[b] != (uint8_t)(size & 0xff);
		if ((rc = sp_kfree(s, h->kmalloc[i])))
			return die("kfree", rc);
	}
	bad += ((uint8_t *)sp_ptr(s, h->large))[12345] != 0x5a;
	if ((rc = sp_kfree(s, h->large)))
		return die("kfree large", rc);
	printf("[parent %d] mapped at %p; verified and freed everything the child handed over "
	       "(%u pool, %u cache, %u kmalloc, 1 large): %d bad bytes\n", (int)getpid(),
	       (void *)s->base, h->nr_pool, h->nr_cache, h->nr_kmalloc, bad);
	printf("[parent %d] pool reserve back to curr_nr %u of min_nr %u\n\n", (int)getpid(),
	       sp_pool_get(s, pool_id)->curr_nr, sp_pool_get(s, pool_id)->min_nr);
	sp_kfree(s, hand_off);
	sp_client_reap(s);

	printf("== buddyinfo ==\n");
	sp_dump_buddyinfo(s, stdout);
	printf("\n== slabinfo (caches in use) ==\n");
	sp_dump_slabinfo(s, stdout, false);
	printf("\n== pools ==\n");
	sp_dump_pools(s, stdout);
	printf("\n== clients ==\n");
	sp_dump_clients(s, stdout);

	rep.v = calloc(rep.cap, sizeof(*rep.v));
	rc = sp_check(s, 0, &rep);
	printf("\n== checker: %d violation(s) ==\n", rc);
	for (unsigned i = 0; i < rep.nr && i < rep.cap; i++)
		printf("  %s\n", rep.v[i].what);
	sp_report_free(&rep);
	sp_seg_detach(s);
	sp_seg_unlink(name);
	if (rc || bad) {
		printf("FAILED\n");
		return 1;
	}
	printf("OK: two processes shared buddy pages, a slab cache, kmalloc and a mempool "
	       "through one segment\n");
	return 0;
}
