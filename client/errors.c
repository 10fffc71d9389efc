/* SPDX-License-Identifier: MIT */
/*
 * errors.c - shmp_strerror(), shmp_err_name() and shmp_errmsg().
 *
 * The library shares the core's error table (shared/errors.c) and its
 * thread-local message, so a message recorded deep in the allocator and
 * one recorded here read the same way.  Only the codes that exist because
 * there is a client library (sessions inherited across fork, a daemon that
 * came back with another segment) are added here.
 */
#include <errno.h>

#include "internal.h"

const char *shmp_strerror(int err)
{
	if (err > 0)
		err = -err;
	switch (err) {
	case -ECHILD:
		return "handle inherited across fork";
	case -ESTALE:
		return "the daemon serves another segment now";
	case -ECONNRESET:
		return "connection to the daemon reset";
	case -EPIPE:
		return "connection to the daemon broken";
	default:
		return sp_strerror(err);
	}
}

const char *shmp_err_name(int err)
{
	if (err > 0)
		err = -err;
	switch (err) {
	case -ECHILD:
		return "ECHILD";
	case -ESTALE:
		return "ESTALE";
	case -ECONNRESET:
		return "ECONNRESET";
	case -EPIPE:
		return "EPIPE";
	default:
		return sp_err_name(err);
	}
}

const char *shmp_errmsg(void)
{
	return sp_errmsg();
}
