/* SPDX-License-Identifier: MIT */
/*
 * log.c - one line per event on stderr.
 *
 * Format: "2024-05-01T12:00:00.123 shmpoold[42]: info: <what happened>".
 * Under systemd (JOURNAL_STREAM set) the journal stamps every line itself,
 * so the timestamp is left out.  Each line goes out in one write(2), so
 * lines never interleave, and control bytes in it (a client's name, say)
 * are replaced: one event can never look like two.
 *
 * Levels, most to least severe: error (the daemon cannot do its job),
 * warn (a client misbehaved or died; something needs a look), info (start,
 * stop, connections, pools created and destroyed), debug (every request).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "shmpoold.h"

static enum spd_log_level log_level = SPD_LOG_INFO;

static const char *const level_names[] = {
	[SPD_LOG_ERROR] = "error",
	[SPD_LOG_WARN] = "warn",
	[SPD_LOG_INFO] = "info",
	[SPD_LOG_DEBUG] = "debug",
};

/**
 * spd_log_parse_level() - a level from its name.
 * @s: "error", "warn", "info" or "debug".
 * @out: the level.
 *
 * Does not sleep.
 * Return: 0 or -EINVAL.
 */
int spd_log_parse_level(const char *s, enum spd_log_level *out)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum spd_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

/**
 * spd_log_set_level() - drop events less severe than @level.
 * @level: the least severe level still printed.
 *
 * Does not sleep.
 */
void spd_log_set_level(enum spd_log_level level)
{
	log_level = level;
}

/**
 * spd_log_enabled() - would an event of @level be printed?
 * @level: the level.
 *
 * For callers that would work to build a message.  Does not sleep.
 * Return: true when printed.
 */
bool spd_log_enabled(enum spd_log_level level)
{
	return level <= log_level;
}

/**
 * spd_sanitize() - copy untrusted text so it prints as one clean line.
 * @dst: destination, NUL-terminated.  @size: its size.
 * @src: the text (a client's name, a name read from the segment).
 * @max: read at most this many bytes of @src.
 *
 * Bytes outside printable ASCII become '?': the result is valid UTF-8 for
 * protobuf strings and can never split a log line.  Does not sleep.
 */
void spd_sanitize(char *dst, size_t size, const char *src, size_t max)
{
	size_t i;

	if (!size)
		return;
	for (i = 0; src && i < max && i + 1 < size && src[i]; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = '\0';
}

/**
 * spd_log() - print one event.
 * @level: its severity.  @fmt: printf format.
 *
 * Does not sleep (one write(2) to stderr).
 */
void spd_log(enum spd_log_level level, const char *fmt, ...)
{
	char line[1536], stamp[40] = "";
	va_list ap;
	int n, head;

	if (level > log_level)
		return;
	if (!getenv("JOURNAL_STREAM")) {
		struct timeval tv;
		struct tm tm;

		gettimeofday(&tv, NULL);
		localtime_r(&tv.tv_sec, &tm);
		n = (int)strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(stamp + n, sizeof(stamp) - (size_t)n, ".%03ld ", (long)tv.tv_usec / 1000);
	}
	head = snprintf(line, sizeof(line), "%sshmpoold[%d]: %s: ", stamp, (int)getpid(),
			level_names[level]);
	va_start(ap, fmt);
	n = vsnprintf(line + head, sizeof(line) - (size_t)head - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	n += head;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	for (int i = head; i < n; i++)
		if ((unsigned char)line[i] < 0x20)
			line[i] = ' ';
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return; /* nowhere left to report it */
}
