/* fetch.h — the updater's own HTTP client (nodes/updater/): one reused
 * libcurl easy handle driven through a multi handle, like the uploader's
 * (nodes/uploader/http.h), so a request moves on a little at a time from
 * the node's ticks. Two kinds of request: a POST whose answer is kept in
 * memory (the offer), and a GET whose body goes straight into a file at
 * an offset (the model; `Range: bytes=OFFSET-` when OFFSET > 0, with
 * `If-Range` when the entity's ETag is known), so a cut download resumes
 * where the file ends.
 *
 * While a GET writes, every `sync_every` bytes the file is fdatasync'd
 * and on_durable(arg, offset) is called: the caller records that offset
 * (nodes/updater/updater.c keeps it in its records), so a crash loses at
 * most what came after. TLS peers are always verified; nothing of a
 * request (headers with secrets) is logged.
 */
#ifndef TLCM_UPDATER_FETCH_H
#define TLCM_UPDATER_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct upd_fetch upd_fetch_t;

typedef struct upd_fetch_opts {
	const char *ca_file, *ca_path; /* NULL or "": the system's */
	const char *user_agent;
	uint64_t connect_timeout_ns;
	uint64_t low_speed_time_ns;    /* abort below low_speed_bytes/s
					  for this long (0: off) */
	long low_speed_bytes;
} upd_fetch_opts_t;

/* A GET into a file. */
typedef struct upd_sink {
	int fd;              /* the partial file, open for writing */
	uint64_t offset;     /* bytes already there: the Range start */
	uint64_t limit;      /* the whole entity must not be larger */
	const char *if_range; /* ETag of the bytes already there, or NULL */
	uint64_t sync_every; /* fdatasync + on_durable every so many bytes
				(0: only at the end, by the caller) */
	void (*on_durable)(void *arg, uint64_t offset);
	void *arg;
} upd_sink_t;

typedef struct upd_result {
	int curl;            /* CURLcode: 0 when the transfer completed */
	long status;         /* HTTP status; 0 without a response */
	char *body;          /* POST answers and error bodies (NUL-terminated,
				owned by the client until the next start) */
	size_t len;
	/* GET into a file */
	uint64_t offset;     /* where the file ends now (bytes of the entity
				written; a 200 to a Range restarts at 0) */
	uint64_t received;   /* body bytes written by this request */
	bool restarted;      /* the server sent the whole entity (200) */
	bool too_large;      /* the entity exceeds limit: stopped */
	bool bad_range;      /* a 206 that does not start at offset */
	int write_errno;     /* the file could not be written: stopped */
	char etag[128];      /* the response's ETag ("" none) */
	char error[256];     /* curl's words when curl != 0 */
} upd_result_t;

/* 0, or TLCM_E* with why filled. */
int upd_fetch_new(upd_fetch_t **out, const upd_fetch_opts_t *o, char *why,
		  size_t cap);
void upd_fetch_free(upd_fetch_t *h);

/* Begin a request to url (absolute). hdrs: "Name: value" lines (NULL
 * terminated; copied). POST: body (borrowed until done), answer in
 * memory. GET: sink (NULL: answer in memory). timeout_ns 0: none (a
 * download is bounded by the low-speed limit instead). */
int upd_fetch_post(upd_fetch_t *h, const char *url, const char *const *hdrs,
		   const char *body, size_t len, uint64_t timeout_ns);
int upd_fetch_get(upd_fetch_t *h, const char *url, const char *const *hdrs,
		  const upd_sink_t *sink, uint64_t timeout_ns);
/* Move the request on for up to wait_ms (0: only what is ready now).
 * 1: done, *r filled (valid until the next start); 0: still running;
 * TLCM_EINVAL when no request is running. */
int upd_fetch_poll(upd_fetch_t *h, int wait_ms, upd_result_t *r);
bool upd_fetch_busy(const upd_fetch_t *h);
/* Abandon the running request (its connection is closed). */
void upd_fetch_cancel(upd_fetch_t *h);

#endif
