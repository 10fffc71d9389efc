/* SPDX-License-Identifier: MIT */
/*
 * prim-linux.c - the operating-system primitives the core needs, in one
 * place: backing-store reservation, futexes on shared words, process start
 * times, clocks and random bytes.  Everything returns 0 or a negative errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

/**
 * sp_prim_reserve() - make tmpfs allocate the pages behind a range now.
 * @fd: the segment's file descriptor.
 * @off: first byte.
 * @len: number of bytes.
 *
 * tmpfs backs a MAP_SHARED mapping lazily; a store to a page it cannot back
 * raises SIGBUS.  fallocate turns that into a clean error up front.
 * May sleep (a system call).
 * Return: 0, or -ENOMEM when /dev/shm (or the memory limit) is full.
 */
int sp_prim_reserve(int fd, uint64_t off, uint64_t len)
{
	int rc;

	do
		rc = fallocate(fd, 0, (off_t)off, (off_t)len);
	while (rc < 0 && errno == EINTR);
	if (rc == 0)
		return 0;
	if (errno == ENOSPC || errno == ENOMEM || errno == EFBIG)
		return sp_err(-ENOMEM, "cannot reserve %llu bytes of backing store: %s",
			      (unsigned long long)len, strerror(errno));
	if (errno == EOPNOTSUPP || errno == ENODEV)
		return 0; /* not tmpfs (e.g. a plain file handed in): nothing to reserve */
	return sp_err(-errno, "fallocate: %s", strerror(errno));
}

/**
 * sp_futex_wait() - sleep while *word == expected, shared across processes.
 * @word: a 32-bit word inside the segment.
 * @expected: the value read before deciding to sleep.
 * @timeout_ms: relative timeout, < 0 for none.
 *
 * Uses FUTEX_WAIT without FUTEX_PRIVATE_FLAG: the word is shared.
 * May sleep.
 * Return: 0 when woken or the word changed, -ETIMEDOUT, or -EINTR.
 */
int sp_futex_wait(uint32_t *word, uint32_t expected, int timeout_ms)
{
	struct timespec ts, *tsp = NULL;
	long rc;

	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
		tsp = &ts;
	}
	rc = syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, NULL, 0);
	if (rc == 0 || errno == EAGAIN)
		return 0;
	return -errno;
}

/**
 * sp_futex_wake() - wake up to @n sleepers on @word in any process.
 * @word: the futex word.
 * @n: how many to wake (INT_MAX: all).
 *
 * Does not sleep.
 */
void sp_futex_wake(uint32_t *word, int n)
{
	syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}

/**
 * sp_proc_start_time() - start time of a process, in clock ticks since boot.
 * @pid: the process.
 *
 * With the pid, it names a process uniquely: a recycled pid has another
 * start time.  Reads /proc; may sleep.
 * Return: the start time, or 0 when the process does not exist or /proc
 * cannot be read (see sp_proc_start_time_ex() to tell them apart).
 */
uint64_t sp_proc_start_time(int pid)
{
	uint64_t start;

	return sp_proc_start_time_ex(pid, &start) ? 0 : start;
}

/**
 * sp_proc_start_time_ex() - sp_proc_start_time(), telling "gone" from
 * "cannot tell".
 * @pid: the process.  @start: its start time (never 0).
 *
 * Reading /proc needs a file descriptor: a process at its RLIMIT_NOFILE
 * (a daemon with every connection open) cannot tell whether another
 * process exists, and must not conclude that it died.  May sleep.
 * Return: 0; -ESRCH when the process does not exist or is a zombie;
 * another negative errno (-EMFILE, -ENFILE, -ENOMEM, ...) when /proc could
 * not be read: the process may well be alive.
 */
int sp_proc_start_time_ex(int pid, uint64_t *start)
{
	char path[64], buf[1024], *p;
	unsigned long long v = 0;
	ssize_t n;
	int fd, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ESRCH ? -ESRCH : -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		n = errno == ESRCH ? 0 : -errno; /* exited since the open */
	close(fd);
	if (n < 0)
		return (int)n;
	if (n == 0)
		return -ESRCH;
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command name may hold spaces */
	if (!p)
		return -ESRCH;
	/* after ") " comes field 3 (state); start time is field 22 */
	for (field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", &v) != 1)
		return -ESRCH;
	/* a zombie has exited: it holds no lock and allocates nothing more */
	if (strstr(buf, ") Z ") || strstr(buf, ") X "))
		return -ESRCH;
	*start = v ? v : 1;
	return 0;
}

uint64_t sp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t sp_realtime_s(void)
{
	return (uint64_t)time(NULL);
}

/*
 * Random bytes for session tokens, a batch at a time (sp_prim_random()).
 * Process-private, in a page of its own marked MADV_WIPEONFORK: a child
 * of any kind of fork starts with it all zero (busy clear, nothing left)
 * instead of a copy that would hand out the parent's next bytes again.
 * Invariant: bytes[0, SP_RANDOM_BATCH - left) were handed out and zeroed;
 * bytes[SP_RANDOM_BATCH - left, SP_RANDOM_BATCH) were never read.
 */
#define SP_RANDOM_BATCH 256u /* getrandom() fills up to 256 bytes whole, never interrupted */

struct sp_random_pool {
	uint32_t busy;		/* atomic: a thread is taking bytes */
	uint32_t left;		/* bytes not handed out yet, at the end of bytes[] */
	uint8_t bytes[SP_RANDOM_BATCH];
};

static struct sp_random_pool *random_pool; /* NULL: no page, ask getrandom() each time */
static pthread_once_t random_once = PTHREAD_ONCE_INIT;

static void random_pool_init(void)
{
#ifdef MADV_WIPEONFORK
	void *p = mmap(NULL, sizeof(struct sp_random_pool), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return;
	/* without it (Linux < 4.14) a child would repeat its parent's bytes */
	if (madvise(p, sizeof(struct sp_random_pool), MADV_WIPEONFORK) < 0) {
		munmap(p, sizeof(struct sp_random_pool));
		return;
	}
	random_pool = p;
#endif
}

static int getrandom_all(void *buf, size_t len)
{
	ssize_t n;

	do
		n = getrandom(buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EAGAIN;
}

/**
 * sp_prim_random() - unpredictable bytes (the kernel's CSPRNG).
 * @buf: where they go.  @len: how many, at most 64.
 *
 * Taken from a batch of SP_RANDOM_BATCH bytes that one getrandom() fills,
 * so the daemon makes a system call for one session token in 32, not for
 * each.  Every byte is handed out once and then zeroed; a forked child
 * never sees its parent's batch (MADV_WIPEONFORK).  Thread-safe without
 * blocking: a thread that finds another taking bytes, or a process with no
 * pool page, calls getrandom() itself.  Does not sleep (getrandom() blocks
 * only before the kernel's pool was first initialised at boot).
 * Return: 0, or a negative errno from getrandom() (@buf is then undefined).
 */
int sp_prim_random(void *buf, size_t len)
{
	struct sp_random_pool *rp;
	int rc = 0;

	if (len > 64)
		return -EINVAL;
	pthread_once(&random_once, random_pool_init);
	rp = random_pool;
	if (!rp || __atomic_exchange_n(&rp->busy, 1, __ATOMIC_ACQUIRE))
		return getrandom_all(buf, len);
	if (rp->left < len) {
		rc = getrandom_all(rp->bytes, sizeof(rp->bytes));
		rp->left = rc ? 0 : sizeof(rp->bytes);
	}
	if (!rc) {
		uint8_t *p = rp->bytes + sizeof(rp->bytes) - rp->left;

		memcpy(buf, p, len);
		memset(p, 0, len); /* handed out: never again, and not left lying about */
		rp->left -= (uint32_t)len;
	}
	__atomic_store_n(&rp->busy, 0, __ATOMIC_RELEASE);
	return rc;
}
