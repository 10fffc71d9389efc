/* SPDX-License-Identifier: MIT */
/*
 * test-exhaustion.c - a full /dev/shm is a clean -ENOMEM, never SIGBUS.
 *
 * tmpfs backs a shared mapping lazily: a store into a page it cannot back
 * kills the process with SIGBUS.  The core reserves backing store with
 * fallocate when the buddy allocator hands out pages.  Each case runs in a
 * child with a private mount namespace holding a small tmpfs, where the
 * segment (a file on it, handed in by fd) is much larger than the tmpfs: the
 * child must see -ENOMEM, write every byte it was given without a SIGBUS,
 * and leave a segment the checker finds clean.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test-util.h"

#define MAX_BLOCKS 8192

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* A private tmpfs of @size_opt ("size=4m") at a fresh directory; returns an
 * fd of an empty file on it, or -1. Runs in the child only. */
static int small_tmpfs_file(const char *size_opt)
{
	char dir[] = "/tmp/shmpool-exh-XXXXXX", path[64];
	uid_t uid = getuid();
	gid_t gid = getgid();

	if (!mkdtemp(dir))
		return -1;
	if (unshare(CLONE_NEWNS) < 0) {
		/* not root: an unprivileged user namespace gives us mount rights */
		char map[64];

		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
			return -1;
		write_file("/proc/self/setgroups", "deny");
		snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
		write_file("/proc/self/uid_map", map);
		snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
		write_file("/proc/self/gid_map", map);
	}
	mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if (mount("tmpfs", dir, "tmpfs", 0, size_opt) < 0) {
		fprintf(stderr, "mount tmpfs: %s\n", strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/segment", dir);
	return open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
}

static struct sp_seg *segment_on_small_tmpfs(const char *size_opt, uint64_t seg_size, int *rc)
{
	struct sp_seg_params p;
	struct sp_seg *s = NULL;
	int fd = small_tmpfs_file(size_opt);
	uint32_t slot;

	if (fd < 0) {
		*rc = -EIO;
		return NULL;
	}
	sp_seg_params_default(&p);
	p.size = seg_size;
	*rc = sp_seg_create(NULL, fd, &p, &s);
	if (*rc)
		return NULL;
	*rc = sp_client_register(s, "exhaust", getpid(), getuid(), getgid(), &slot);
	if (!*rc)
		*rc = sp_client_use_slot(s, slot);
	return *rc ? NULL : s;
}

/* Child: allocate pages until -ENOMEM, touching every byte. */
static int fill_pages(void *arg)
{
	static sp_off_t blocks[MAX_BLOCKS];
	struct sp_seg *s;
	unsigned n = 0;
	int rc;

	(void)arg;
	s = segment_on_small_tmpfs("size=4m", 64u << 20, &rc);
	if (!s) {
		fprintf(stderr, "setup: %s %s\n", sp_strerror(rc), sp_errmsg());
		return 10;
	}
	while (n < MAX_BLOCKS && (rc = sp_buddy_alloc(s, 0, &blocks[n])) == 0) {
		memset(sp_ptr(s, blocks[n]), 0xa5, SP_PAGE_SIZE); /* SIGBUS here = failure */
		n++;
	}
	if (rc != -ENOMEM || !strstr(sp_errmsg(), "backing store")) {
		fprintf(stderr, "expected -ENOMEM from backing store, got %d (%s)\n", rc,
			sp_errmsg());
		return 11;
	}
	/* the tmpfs, not the segment, ran out: far fewer pages than the segment has */
	if (n == 0 || n >= s->hdr->nr_pages / 2 || !s->hdr->buddy.nr_backing_fail) {
		fprintf(stderr, "got %u of %u pages, backing failures %llu\n", n,
			s->hdr->nr_pages, (unsigned long long)s->hdr->buddy.nr_backing_fail);
		return 12;
	}
	printf("# %u of %u pages allocated and written before the 4 MiB tmpfs was full\n", n,
	       s->hdr->nr_pages);
	fflush(stdout);
	/* kmalloc and pools fail cleanly too */
	{
		sp_off_t off;
		struct sp_pool_params pp = { .elem_size = 4096, .min_nr = 4096 };
		uint32_t id;

		if (sp_kmalloc(s, 1u << 20, &off) != -ENOMEM)
			return 13;
		if (sp_pool_create(s, "too.big", &pp, &id) != -ENOMEM)
			return 14;
	}
	if (tu_check_count(s, 0) != 0)
		return 15;
	while (n)
		if (sp_buddy_free(s, blocks[--n]))
			return 16;
	if (tu_check_count(s, 0) != 0)
		return 17;
	/* the pages that were backed stay usable after the free */
	if (sp_buddy_alloc(s, 0, &blocks[0]) != 0)
		return 18;
	memset(sp_ptr(s, blocks[0]), 1, SP_PAGE_SIZE);
	return 0;
}

/* Child: a tmpfs too small even for the segment's metadata. */
static int metadata_does_not_fit(void *arg)
{
	struct sp_seg_params p;
	struct sp_seg *s = NULL;
	int fd = small_tmpfs_file("size=256k"), rc;

	(void)arg;
	if (fd < 0)
		return 10;
	sp_seg_params_default(&p);
	p.size = 64u << 20;
	rc = sp_seg_create(NULL, fd, &p, &s);
	if (rc != -ENOMEM) {
		fprintf(stderr, "expected -ENOMEM, got %d (%s)\n", rc, sp_errmsg());
		return 11;
	}
	return 0;
}

static void full_shm_is_enomem_not_sigbus(void **state)
{
	assert_int_equal(tu_wait(tu_fork(fill_pages, NULL)), 0);
}

static void segment_metadata_reserved_at_create(void **state)
{
	assert_int_equal(tu_wait(tu_fork(metadata_does_not_fit, NULL)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(full_shm_is_enomem_not_sigbus),
		cmocka_unit_test(segment_metadata_reserved_at_create),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
