/* error.h — TinyLCM status codes.
 *
 * Every fallible engine function returns an int: 0 on success, a negative
 * TLCM_E* code on failure. tlcm_strerror() turns a code into a short human
 * message; callers add the "what and where" (file:line:col, node id, peer).
 */
#ifndef TLCM_ERROR_H
#define TLCM_ERROR_H

enum {
	TLCM_OK = 0,
	TLCM_EINVAL = -1,    /* invalid argument or API misuse */
	TLCM_ENOMEM = -2,    /* out of memory */
	TLCM_ENOSPC = -3,    /* fixed buffer, ring or disk full */
	TLCM_EBADMSG = -4,   /* message failed verification */
	TLCM_EIO = -5,       /* I/O error */
	TLCM_ENOENT = -6,    /* no such file, node, key or peer */
	TLCM_EEXIST = -7,    /* already exists */
	TLCM_EAGAIN = -8,    /* try again later (would block) */
	TLCM_ETIMEDOUT = -9, /* timed out */
	TLCM_ECLOSED = -10,  /* object closed or end of stream */
	TLCM_EPARSE = -11,   /* bad input text (graph file, schema, config) */
	TLCM_ECORRUPT = -12, /* persisted data is corrupt or foreign */
	TLCM_EBUSY = -13,    /* resource in use */
	TLCM_ETOOBIG = -14,  /* value exceeds a format or configured limit */
	TLCM_ENOTSUP = -15,  /* operation or feature not supported */
	TLCM_EPERM = -16,    /* not permitted */
	TLCM_EPROTO = -17,   /* peer violated the protocol */
	TLCM_EINTERNAL = -18 /* bug: an invariant did not hold */
};

/* A static, never-NULL description of code (unknown codes included). */
const char *tlcm_strerror(int code);

#include <stddef.h>

/* Write the "what and where" into why (when why and cap) and return code:
 *   return tlcm_fail(why, cap, TLCM_EPARSE, "%s: no tensor %d", path, i);
 */
int tlcm_fail(char *why, size_t cap, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
