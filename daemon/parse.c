/* SPDX-License-Identifier: MIT */
/*
 * parse.c - numbers and sizes as people type them, for the daemon's command
 * line and configuration file and for shmpoolctl's operands (which links
 * this file too: see daemon/meson.build).
 *
 * Strict on purpose: no sign, no leading space, no trailing text, no
 * overflow; sizes take one suffix K, M or G (powers of 1024, optionally
 * followed by "B" or "iB").
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shmpoold.h"

/* A decimal number at the start of @s; *end points after it.  0 or -EINVAL. */
static int leading_u64(const char *s, char **end, unsigned long long *v)
{
	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, end, 10);
	return errno || *end == s ? -EINVAL : 0;
}

/**
 * spd_parse_u64() - a decimal number, nothing else.
 * @s: text.  @out: the value.
 *
 * Does not sleep.
 * Return: 0 or -EINVAL.
 */
int spd_parse_u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (leading_u64(s, &end, &v) || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

/**
 * spd_parse_size() - N, NK, NM or NG (powers of 1024; "KiB"/"KB" work too).
 * @s: text.  @out: bytes.
 *
 * Does not sleep.
 * Return: 0 or -EINVAL.
 */
int spd_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (leading_u64(s, &end, &v))
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
		end += strlen(end);
	if (*end || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}
