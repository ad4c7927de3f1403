/* error.c — human messages for TLCM_E* codes (see error.h). */
#include <stdarg.h>
#include <stdio.h>

#include "engine/error.h"

int tlcm_fail(char *why, size_t cap, int code, const char *fmt, ...)
{
	if (why && cap) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, cap, fmt, ap);
		va_end(ap);
	}
	return code;
}

const char *tlcm_strerror(int code)
{
	switch (code) {
	case TLCM_OK: return "success";
	case TLCM_EINVAL: return "invalid argument";
	case TLCM_ENOMEM: return "out of memory";
	case TLCM_ENOSPC: return "no space left";
	case TLCM_EBADMSG: return "malformed message";
	case TLCM_EIO: return "input/output error";
	case TLCM_ENOENT: return "not found";
	case TLCM_EEXIST: return "already exists";
	case TLCM_EAGAIN: return "resource temporarily unavailable";
	case TLCM_ETIMEDOUT: return "timed out";
	case TLCM_ECLOSED: return "closed";
	case TLCM_EPARSE: return "parse error";
	case TLCM_ECORRUPT: return "data corrupt";
	case TLCM_EBUSY: return "busy";
	case TLCM_ETOOBIG: return "too large";
	case TLCM_ENOTSUP: return "not supported";
	case TLCM_EPERM: return "not permitted";
	case TLCM_EPROTO: return "protocol error";
	case TLCM_EINTERNAL: return "internal error";
	default: return "unknown error";
	}
}
