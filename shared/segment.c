/* SPDX-License-Identifier: MIT */
/*
 * segment.c - create, validate and attach the shared-memory segment.
 *
 * A segment is a POSIX shm object (shm_open, mode 0600) or any fd handed in
 * (a memfd, or the fd the daemon passes with SCM_RIGHTS).  Creation computes
 * the layout drawn in layout.h, reserves backing store for all metadata
 * (so a too-small /dev/shm fails here with -ENOMEM, not later with SIGBUS),
 * initialises every structure and writes the magic last.  Attach maps the
 * file and validates every geometry field against the file size before any
 * other code looks at the segment: a wrong magic, version or size is an
 * error with a message, never a silent re-initialisation.
 *
 * The geometry is validated in a process-private copy (struct sp_seg.geo)
 * and only that copy is used afterwards: every client can write the header
 * page, so a size or offset read from it again could have been rewritten
 * since the validation.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

#define SP_MIN_SEG_SIZE (1u << 20)

_Static_assert(sizeof(struct sp_header) <= SP_PAGE_SIZE, "header fits page 0");
_Static_assert(sizeof(struct sp_page) == 24, "struct sp_page is 24 bytes");

void sp_seg_params_default(struct sp_seg_params *p)
{
	memset(p, 0, sizeof(*p));
	p->size = 64u << 20;
	p->max_order = SP_DEFAULT_MAX_ORDER;
	p->max_clients = 1024;
	p->max_caches = 256;
	p->max_pools = 1024;
	p->kmalloc_prefill = 20;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

static uint32_t pow2_at_least(uint64_t n)
{
	uint32_t p = 16;

	while (p < n)
		p <<= 1;
	return p;
}

/**
 * sp_geometry_sum() - FNV-1a over the immutable part of the header.
 * @h: the header.
 *
 * Does not sleep.
 * Return: the checksum stored in h->geometry_sum at creation.
 */
uint64_t sp_geometry_sum(const struct sp_header *h)
{
	const uint8_t *p = (const uint8_t *)h;
	size_t n = offsetof(struct sp_header, geometry_sum);
	uint64_t x = 0xcbf29ce484222325ULL;

	while (n--) {
		x ^= *p++;
		x *= 0x100000001b3ULL;
	}
	return x;
}

static int layout(struct sp_header *h, const struct sp_seg_params *p)
{
	uint64_t off = SP_PAGE_SIZE, size = p->size & ~(uint64_t)(SP_PAGE_SIZE - 1);
	uint64_t ncaches, per_page, nr_pages;

	if (size < SP_MIN_SEG_SIZE)
		return sp_err(-EINVAL, "segment size %llu is below the minimum of 1 MiB",
			      (unsigned long long)p->size);
	if (p->max_order > SP_MAX_ORDER_LIMIT)
		return sp_err(-EINVAL, "max_order %u is above the limit %u", p->max_order,
			      SP_MAX_ORDER_LIMIT);
	if (!p->max_clients || p->max_clients > SP_MAX_CLIENTS_LIMIT)
		return sp_err(-EINVAL, "max_clients must be 1..%u", SP_MAX_CLIENTS_LIMIT);
	if (p->max_caches > (1u << 20) || p->max_pools > (1u << 20))
		return sp_err(-EINVAL, "max_caches and max_pools must be at most %u", 1u << 20);

	memset(h, 0, sizeof(*h));
	h->layout_version = SP_LAYOUT_VERSION;
	h->page_size = SP_PAGE_SIZE;
	h->seg_size = size;
	h->header_size = sizeof(struct sp_header);
	h->sizeof_page = sizeof(struct sp_page);
	h->sizeof_cache = sizeof(struct sp_cache);
	h->sizeof_pool = sizeof(struct sp_pool);
	h->sizeof_client = sizeof(struct sp_client);
	h->sizeof_mutex = sizeof(pthread_mutex_t);
	h->max_order = p->max_order;
	h->max_clients = p->max_clients;
	h->max_caches = p->max_caches;
	h->max_pools = p->max_pools;
	h->nr_kmalloc = sp_nr_kmalloc_classes;
	h->kmalloc_prefill = p->kmalloc_prefill;
	ncaches = (uint64_t)h->nr_kmalloc + p->max_caches + p->max_pools;
	h->chash_size = pow2_at_least(2 * (uint64_t)p->max_caches);
	h->phash_size = pow2_at_least(2 * (uint64_t)p->max_pools);

#define REGION(r, bytes)                  \
	do {                              \
		h->r.off = off;           \
		h->r.size = (bytes);      \
		off = align_up(off + h->r.size, 64); \
	} while (0)
	REGION(clients, (uint64_t)p->max_clients * sizeof(struct sp_client));
	REGION(caches, ncaches * sizeof(struct sp_cache));
	REGION(pools, (uint64_t)p->max_pools * sizeof(struct sp_pool));
	REGION(chash, (uint64_t)h->chash_size * sizeof(uint32_t));
	REGION(phash, (uint64_t)h->phash_size * sizeof(uint32_t));
#undef REGION
	if (off >= size)
		return sp_err(-EINVAL, "segment of %llu bytes is too small for its tables",
			      (unsigned long long)size);
	per_page = SP_PAGE_SIZE + sizeof(struct sp_page);
	nr_pages = (size - off) / per_page;
	while (nr_pages && align_up(off + nr_pages * sizeof(struct sp_page), SP_PAGE_SIZE) +
					   nr_pages * SP_PAGE_SIZE > size)
		nr_pages--;
	if (nr_pages < 16 || nr_pages > UINT32_MAX / 2)
		return sp_err(-EINVAL, "segment of %llu bytes leaves %llu data pages",
			      (unsigned long long)size, (unsigned long long)nr_pages);
	h->nr_pages = (uint32_t)nr_pages;
	h->pages.off = off;
	h->pages.size = nr_pages * sizeof(struct sp_page);
	h->data.off = align_up(off + h->pages.size, SP_PAGE_SIZE);
	h->data.size = nr_pages * SP_PAGE_SIZE;
	h->created_time = sp_realtime_s();
	return 0;
}

static int region_ok(const struct sp_region *r, uint64_t lo, uint64_t size, uint64_t want)
{
	return r->off >= lo && r->off <= size && r->size <= size - r->off && r->size == want &&
	       (r->off & 7) == 0;
}

/**
 * sp_seg_validate_header() - check a header before trusting any of it.
 * @h: the header (page 0 of a mapping at least one page long).
 * @file_size: the size of the file behind the mapping.
 *
 * Does not sleep.
 * Return: 0 when every geometry field is consistent; -EBADMSG (not a
 * shmpool segment, or corrupted), -EPROTONOSUPPORT (other layout version or
 * build) with a message naming the first bad field.
 */
int sp_seg_validate_header(const struct sp_header *h, uint64_t file_size)
{
	uint64_t ncaches;

	if (h->magic != SP_MAGIC)
		return sp_err(-EBADMSG, "not a shmpool segment (bad magic %#llx)",
			      (unsigned long long)h->magic);
	if (h->layout_version != SP_LAYOUT_VERSION)
		return sp_err(-EPROTONOSUPPORT, "segment layout version %u, this build reads %u",
			      h->layout_version, SP_LAYOUT_VERSION);
	if (h->page_size != SP_PAGE_SIZE || h->header_size != sizeof(struct sp_header) ||
	    h->sizeof_page != sizeof(struct sp_page) || h->sizeof_cache != sizeof(struct sp_cache) ||
	    h->sizeof_pool != sizeof(struct sp_pool) ||
	    h->sizeof_client != sizeof(struct sp_client) ||
	    h->sizeof_mutex != sizeof(pthread_mutex_t))
		return sp_err(-EPROTONOSUPPORT,
			      "segment was made by an incompatible build (structure sizes differ)");
	if (h->geometry_sum != sp_geometry_sum(h))
		return sp_err(-EBADMSG, "segment header checksum mismatch (header corrupted)");
	if (h->seg_size != file_size)
		return sp_err(-EBADMSG, "segment header says %llu bytes, the file has %llu",
			      (unsigned long long)h->seg_size, (unsigned long long)file_size);
	if (h->max_order > SP_MAX_ORDER_LIMIT || !h->max_clients ||
	    h->max_clients > SP_MAX_CLIENTS_LIMIT || h->nr_kmalloc != sp_nr_kmalloc_classes ||
	    h->max_caches > (1u << 20) || h->max_pools > (1u << 20) || h->nr_pages < 16 ||
	    (h->chash_size & (h->chash_size - 1)) || h->chash_size < 2 * h->max_caches ||
	    (h->phash_size & (h->phash_size - 1)) || h->phash_size < 2 * h->max_pools)
		return sp_err(-EBADMSG, "segment header holds impossible table sizes");
	ncaches = (uint64_t)h->nr_kmalloc + h->max_caches + h->max_pools;
	if (!region_ok(&h->clients, SP_PAGE_SIZE, file_size,
		       (uint64_t)h->max_clients * sizeof(struct sp_client)) ||
	    !region_ok(&h->caches, h->clients.off + h->clients.size, file_size,
		       ncaches * sizeof(struct sp_cache)) ||
	    !region_ok(&h->pools, h->caches.off + h->caches.size, file_size,
		       (uint64_t)h->max_pools * sizeof(struct sp_pool)) ||
	    !region_ok(&h->chash, h->pools.off + h->pools.size, file_size,
		       (uint64_t)h->chash_size * 4) ||
	    !region_ok(&h->phash, h->chash.off + h->chash.size, file_size,
		       (uint64_t)h->phash_size * 4) ||
	    !region_ok(&h->pages, h->phash.off + h->phash.size, file_size,
		       (uint64_t)h->nr_pages * sizeof(struct sp_page)) ||
	    !region_ok(&h->data, h->pages.off + h->pages.size, file_size,
		       (uint64_t)h->nr_pages * SP_PAGE_SIZE) ||
	    (h->data.off & (SP_PAGE_SIZE - 1)))
		return sp_err(-EBADMSG, "segment header regions overlap or exceed the file");
	return 0;
}

/* @geo: the validated geometry, copied: nothing reads it from the header again. */
static void seg_fill(struct sp_seg *s, void *base, uint64_t size, int fd, bool ro,
		     const struct sp_header *geo, const char *name)
{
	s->base = base;
	s->size = size;
	s->fd = fd;
	s->readonly = ro;
	s->hdr = base;
	memset(&s->geo, 0, sizeof(s->geo));
	memcpy(&s->geo, geo, offsetof(struct sp_header, geometry_sum) + sizeof(geo->geometry_sum));
	s->pages = (struct sp_page *)(s->base + s->geo.pages.off);
	s->data = s->base + s->geo.data.off;
	sp_seg_set_owner(s, UINT32_MAX);
	snprintf(s->name, sizeof(s->name), "%s", name ? name : "(fd)");
}

static int init_structures(struct sp_seg *s)
{
	uint32_t i, ncaches = sp_nr_cache_slots(s);
	int rc;

	rc = sp_lock_init(&s->hdr->registry_lock, SP_LOCK_REGISTRY);
	for (i = 0; !rc && i < ncaches; i++) {
		sp_caches(s)[i].id = i;
		rc = sp_lock_init(&sp_caches(s)[i].lock, SP_LOCK_CACHE);
	}
	for (i = 0; !rc && i < s->geo.max_pools; i++) {
		sp_pools(s)[i].id = i;
		rc = sp_lock_init(&sp_pools(s)[i].lock, SP_LOCK_POOL);
	}
	if (rc)
		return rc;
	sp_buddy_init(s);
	return 0;
}

/**
 * sp_seg_create() - create and initialise a new segment.
 * @shm_name: POSIX shm name ("/name"), created O_EXCL with mode 0600; or NULL
 *            to use @fd.
 * @fd: an open read-write fd (memfd, tmpfs file) when @shm_name is NULL;
 *      the segment takes ownership of it.
 * @p: geometry; NULL for the defaults.
 * @out: the new handle.
 *
 * May sleep.  The caller registers a client slot before allocating.
 * Return: 0; -EEXIST when @shm_name exists; -ENOMEM when /dev/shm cannot
 * back the metadata; -EINVAL for impossible parameters.
 */
int sp_seg_create(const char *shm_name, int fd, const struct sp_seg_params *p,
		  struct sp_seg **out)
{
	struct sp_seg_params def;
	struct sp_header geo;
	struct sp_seg *s;
	struct stat st;
	void *base;
	int rc;

	if (!p) {
		sp_seg_params_default(&def);
		p = &def;
	}
	rc = layout(&geo, p);
	if (rc)
		return rc;
	if (shm_name) {
		fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return sp_err(-errno, "shm_open(%s): %s", shm_name, strerror(errno));
	} else if (fd < 0) {
		return sp_err(-EBADF, "neither a shm name nor an fd given");
	}
	if (ftruncate(fd, (off_t)geo.seg_size) < 0) {
		rc = sp_err(-errno, "ftruncate to %llu bytes: %s",
			    (unsigned long long)geo.seg_size, strerror(errno));
		goto fail_fd;
	}
	if (fstat(fd, &st) < 0) {
		rc = sp_err(-errno, "fstat: %s", strerror(errno));
		goto fail_fd;
	}
	rc = sp_prim_reserve(fd, 0, geo.data.off);
	if (rc)
		goto fail_fd;
	base = mmap(NULL, geo.seg_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		rc = sp_err(-errno, "mmap: %s", strerror(errno));
		goto fail_fd;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		rc = sp_err(-ENOMEM, "out of process memory");
		goto fail_map;
	}
	memset(base, 0, geo.data.off); /* an fd handed in may hold anything */
	geo.geometry_sum = 0;
	memcpy(base, &geo, offsetof(struct sp_header, geometry_sum));
	/* the sum covers the magic: compute it as it will read, magic last */
	geo.magic = SP_MAGIC;
	geo.geometry_sum = sp_geometry_sum(&geo);
	seg_fill(s, base, geo.seg_size, fd, false, &geo, shm_name);
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	rc = init_structures(s);
	if (!rc)
		rc = sp_kmalloc_init(s);
	if (rc)
		goto fail_seg;
	s->hdr->geometry_sum = geo.geometry_sum;
	__atomic_store_n(&s->hdr->magic, SP_MAGIC, __ATOMIC_RELEASE);
	*out = s;
	return 0;

fail_seg:
	free(s);
fail_map:
	munmap(base, geo.seg_size);
fail_fd:
	close(fd);
	if (shm_name)
		shm_unlink(shm_name);
	return rc;
}

/**
 * sp_seg_attach() - map and validate an existing segment.
 * @shm_name: its POSIX shm name, or NULL to use @fd.
 * @fd: an open fd when @shm_name is NULL; the handle takes ownership.
 * @flags: SP_ATTACH_RDONLY for offline inspection (nothing is written).
 * @out: the handle.
 *
 * May sleep.
 * Return: 0; -ENOENT; -EBADMSG or -EPROTONOSUPPORT from
 * sp_seg_validate_header() with a message saying what is wrong.
 */
int sp_seg_attach(const char *shm_name, int fd, int flags, struct sp_seg **out)
{
	bool ro = flags & SP_ATTACH_RDONLY;
	struct sp_header geo;
	struct sp_seg *s;
	struct stat st;
	void *base;
	int rc;

	if (shm_name) {
		fd = shm_open(shm_name, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
		if (fd < 0)
			return sp_err(-errno, "shm_open(%s): %s", shm_name, strerror(errno));
	} else if (fd < 0) {
		return sp_err(-EBADF, "neither a shm name nor an fd given");
	}
	if (fstat(fd, &st) < 0) {
		rc = sp_err(-errno, "fstat: %s", strerror(errno));
		goto fail_fd;
	}
	if ((uint64_t)st.st_size < SP_MIN_SEG_SIZE) {
		rc = sp_err(-EBADMSG, "%s is %lld bytes: not a shmpool segment",
			    shm_name ? shm_name : "fd", (long long)st.st_size);
		goto fail_fd;
	}
	base = mmap(NULL, (size_t)st.st_size, PROT_READ | (ro ? 0 : PROT_WRITE), MAP_SHARED, fd,
		    0);
	if (base == MAP_FAILED) {
		rc = sp_err(-errno, "mmap: %s", strerror(errno));
		goto fail_fd;
	}
	/* validate a private copy: another process may rewrite the header at
	 * any time, and what was validated must be what is used */
	memcpy(&geo, base, offsetof(struct sp_header, geometry_sum) + sizeof(geo.geometry_sum));
	rc = sp_seg_validate_header(&geo, (uint64_t)st.st_size);
	if (rc)
		goto fail_map;
	s = calloc(1, sizeof(*s));
	if (!s) {
		rc = sp_err(-ENOMEM, "out of process memory");
		goto fail_map;
	}
	seg_fill(s, base, (uint64_t)st.st_size, fd, ro, &geo, shm_name);
	s->dev = st.st_dev; /* the client's resume check compares them */
	s->ino = st.st_ino;
	if (!ro)
		__atomic_fetch_add(&s->hdr->attach_count, 1, __ATOMIC_RELAXED);
	*out = s;
	return 0;

fail_map:
	munmap(base, (size_t)st.st_size);
fail_fd:
	close(fd);
	return rc;
}

/**
 * sp_seg_detach() - unmap a segment and free the handle.
 * @s: the handle, or NULL.
 *
 * The segment itself stays.  Does not sleep.
 */
void sp_seg_detach(struct sp_seg *s)
{
	if (!s)
		return;
	munmap(s->base, s->size);
	close(s->fd);
	free(s);
}

/**
 * sp_seg_unlink() - remove a segment's name (shm_unlink).
 * @shm_name: the name.
 *
 * Mappings stay valid until detached.  May sleep.
 * Return: 0 or a negative errno.
 */
int sp_seg_unlink(const char *shm_name)
{
	if (shm_unlink(shm_name) < 0)
		return sp_err(-errno, "shm_unlink(%s): %s", shm_name, strerror(errno));
	return 0;
}
