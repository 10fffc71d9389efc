/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "rel-util.h"

bool rel_sample(pid_t pid, struct rel_sample *s)
{
	char path[64], line[256];
	struct dirent *e;
	FILE *f;
	DIR *dir;

	memset(s, 0, sizeof(*s));
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;

		if (sscanf(line, "VmRSS: %llu", &v) == 1)
			s->vm_rss_kb = v;
		else if (sscanf(line, "RssAnon: %llu", &v) == 1)
			s->rss_anon_kb = v;
		else if (sscanf(line, "RssShmem: %llu", &v) == 1)
			s->rss_shmem_kb = v;
	}
	fclose(f);
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return false;
	while ((e = readdir(dir)))
		if (e->d_name[0] != '.')
			s->fds++;
	closedir(dir);
	return true;
}

unsigned long rel_set_nofile(unsigned long want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max)
		want = rl.rlim_max;
	rl.rlim_cur = want;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	return rl.rlim_cur;
}

long rel_param(const char *env, long short_version, long soak_version)
{
	const char *v = getenv(env), *soak = getenv("SHMPOOL_SOAK");

	if (v && *v)
		return strtol(v, NULL, 10);
	return soak && *soak && strcmp(soak, "0") ? soak_version : short_version;
}

int rel_admin(const struct td_daemon *d)
{
	int fd = td_connect(d->sock), segfd = -1;

	TD_EXPECT_FREE(td_hello(fd, "rel-admin", &segfd), 0);
	if (segfd >= 0)
		close(segfd);
	return fd;
}

Shmpool__Response *rel_stats(int fd)
{
	Shmpool__Response *r = td_simple(fd, SHMPOOL__REQUEST__OP_STATS);

	TD_EXPECT(r, 0);
	TD_CHECK(r->payload_case == SHMPOOL__RESPONSE__PAYLOAD_STATS);
	return r;
}

Shmpool__CacheInfo *rel_stats_cache(Shmpool__Response *stats, const char *name)
{
	for (size_t i = 0; i < stats->stats->n_caches; i++)
		if (strcmp(stats->stats->caches[i]->name, name) == 0)
			return stats->stats->caches[i];
	return NULL;
}

uint64_t rel_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
