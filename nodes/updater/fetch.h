/* fetch.h — the updater's download (nodes/updater/): a GET of a model
 * whose body goes straight into a file at an offset, through the core
 * clients' HTTP client (nodes/uploader/http.h) with a body sink. It asks
 * for `Range: bytes=OFFSET-` when OFFSET > 0, with `If-Range` when the
 * entity's ETag is known, so a cut download resumes where the file ends.
 *
 * While it writes, every `sync_every` bytes the file is fdatasync'd and
 * on_durable(arg, offset) is called: the caller records that offset
 * (nodes/updater/updater.c keeps it in its records), so a crash loses at
 * most what came after.
 */
#ifndef TLCM_UPDATER_FETCH_H
#define TLCM_UPDATER_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nodes/uploader/http.h"

/* A GET into a file: set by the caller, then what the download did. It
 * must stay in place until the request is done. */
typedef struct upd_sink {
	int fd;              /* the partial file, open for writing */
	uint64_t offset;     /* bytes already there: the Range start; then
				where the file ends now (a 200 to a Range
				restarts at 0) */
	uint64_t limit;      /* the whole entity must not be larger */
	uint64_t sync_every; /* fdatasync + on_durable every so many bytes
				(0: only at the end, by the caller) */
	void (*on_durable)(void *arg, uint64_t offset);
	void *arg;
	/* what the download did (zeroed by upd_fetch_get) */
	uint64_t received;   /* body bytes written by this request */
	bool restarted;      /* the server sent the whole entity (200) */
	bool too_large;      /* the entity exceeds limit: stopped */
	bool bad_range;      /* a 206 that does not start at offset */
	int write_errno;     /* the file could not be written: stopped */
	/* the download's own */
	bool decided;
	uint64_t since_sync;
} upd_sink_t;

/* Begin GET url (absolute) into sink. hdrs: "Name: value" lines (NULL
 * terminated, at most 6; copied). if_range: the ETag of the bytes already
 * there, or NULL. No total timeout: the low-speed limit ends a stalled
 * download. An error answer's body stays in the client's memory. 0, or
 * TLCM_E* as up_http_send(). */
int upd_fetch_get(up_http_t *h, const char *url, const char *const *hdrs,
		  const char *if_range, upd_sink_t *sink);

#endif
