/* SPDX-License-Identifier: MIT */
/*
 * errors.c - the one error table and the thread-local error message.
 *
 * Every function of the core returns 0 or a negative errno.  The table below
 * names the codes shmpool uses and says what each means to a shmpool user;
 * the protocol's status field carries the same numbers.  sp_err() records a
 * sentence with the details (which name, which size, which limit) so that a
 * caller can print something better than strerror().
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define SP_ERRORS(X)                                                                      \
	X(EPERM, "operation not permitted")                                               \
	X(ENOENT, "no such pool, cache or segment")                                       \
	X(EINTR, "interrupted")                                                           \
	X(EIO, "input/output error")                                                      \
	X(EBADF, "bad file descriptor")                                                   \
	X(EAGAIN, "resource temporarily unavailable")                                     \
	X(ENOMEM, "out of memory in the segment")                                         \
	X(EACCES, "permission denied")                                                    \
	X(EFAULT, "memory corruption detected")                                           \
	X(EBUSY, "still in use")                                                          \
	X(EEXIST, "name already exists")                                                  \
	X(EINVAL, "invalid argument")                                                     \
	X(ENFILE, "table full")                                                           \
	X(EMFILE, "too many open files")                                                  \
	X(ENOSPC, "no space left")                                                        \
	X(ERANGE, "value out of range")                                                   \
	X(EDEADLK, "lock order violated")                                                 \
	X(ENAMETOOLONG, "name too long")                                                  \
	X(ENOTRECOVERABLE, "lock not recoverable")                                        \
	X(EOWNERDEAD, "lock owner died")                                                  \
	X(EPROTO, "protocol error")                                                       \
	X(EBADMSG, "segment header is invalid")                                           \
	X(EPROTONOSUPPORT, "unsupported layout or protocol version")                      \
	X(EMSGSIZE, "message too long")                                                   \
	X(EOPNOTSUPP, "operation not supported by the daemon")                            \
	X(ENOTCONN, "not connected to the daemon")                                        \
	X(ECONNREFUSED, "connection refused by the daemon")                               \
	X(ETIMEDOUT, "timed out")                                                         \
	X(ESRCH, "no such client")                                                        \
	X(EROFS, "segment is mapped read-only")

const char *sp_strerror(int code)
{
	switch (-code) {
	case 0:
		return "success";
#define X(e, s)  \
	case e: \
		return s;
		SP_ERRORS(X)
#undef X
	default:
		return strerror(-code);
	}
}

const char *sp_err_name(int code)
{
	switch (-code) {
	case 0:
		return "OK";
#define X(e, s)  \
	case e: \
		return #e;
		SP_ERRORS(X)
#undef X
	default:
		return "EUNKNOWN";
	}
}

static _Thread_local char errmsg[512];

/**
 * sp_err() - record a detailed message for the error being returned.
 * @code: a negative errno.
 * @fmt: printf format of the details.
 *
 * Does not sleep.
 * Return: @code, so that callers can write "return sp_err(-EINVAL, ...)".
 */
int sp_err(int code, const char *fmt, ...)
{
	char msg[sizeof(errmsg)];
	va_list ap;
	int n;

	/* into a copy first: an argument may be sp_errmsg() itself, and
	 * vsnprintf() must not write the buffer it reads */
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		msg[0] = '\0';
	memcpy(errmsg, msg, strlen(msg) + 1);
	return code;
}

/**
 * sp_errmsg() - the message of this thread's last error.
 *
 * Does not sleep.
 * Return: a thread-local string, empty when nothing was recorded.
 */
const char *sp_errmsg(void)
{
	return errmsg;
}

void sp_assert_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "shmpool: assertion failed: %s (%s:%d)\n", expr, file, line);
	abort();
}
