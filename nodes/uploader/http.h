/* http.h — the uploader's one HTTP client (nodes/uploader/): one reused
 * libcurl easy handle driven through a multi handle, so a request runs a
 * little at a time from the node's ticks and never holds a worker for
 * longer than the caller's wait.
 *
 * One request at a time: up_http_start() begins it, up_http_poll() moves
 * it on for at most wait_ms and reports it done once, with the response.
 * The connection stays open between requests (keep-alive; HTTP/2 when the
 * server offers it over TLS), TLS peers are always verified (ca_file /
 * ca_path, else the system's store), and nothing of a request — headers
 * with their secrets included — is ever logged.
 */
#ifndef TLCM_UPLOADER_HTTP_H
#define TLCM_UPLOADER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct up_http up_http_t;

typedef struct up_http_opts {
	const char *base;        /* e.g. "https://core/api/v1" */
	const char *ca_file, *ca_path; /* NULL or "": the system's */
	const char *user_agent;
	uint64_t connect_timeout_ns, timeout_ns;
	uint64_t low_speed_time_ns; /* abort below low_speed_bytes/s for
				       this long (0: off) */
	long low_speed_bytes;
	size_t max_response;     /* response bytes kept (the rest dropped) */
} up_http_opts_t;

typedef struct up_resp {
	int curl;            /* CURLcode: 0 when a response came */
	long status;         /* HTTP status; 0 without a response */
	char *body;          /* NUL-terminated, owned by the client until
				the next start */
	size_t len;
	bool truncated;      /* longer than max_response */
	long retry_after_s;  /* Retry-After (seconds or a date), -1: none */
	uint64_t time_ns;    /* the whole request */
	int http_version;    /* 1 or 2 (0: no response) */
	bool reused;         /* went over an already open connection */
	char etag[80];       /* the ETag header as sent ("" none, or too
				long) */
	char error[256];     /* curl's words when curl != 0 */
} up_resp_t;

/* The connection options every client of the core sets on its curl easy
 * handle (`easy`: a CURL *): user agent, HTTP/2 over TLS when offered, no
 * redirects, TCP keep-alive, connect timeout, TLS peer and host always
 * verified (ca_file / ca_path, NULL or "": the system's store), abort
 * below low_speed_bytes/s for low_speed_time_ns (0: never). Returns a
 * CURLcode (0: all set). The updater's downloads use it too. */
int up_http_link_opts(void *easy, const char *user_agent,
		      uint64_t connect_timeout_ns, const char *ca_file,
		      const char *ca_path, uint64_t low_speed_time_ns,
		      long low_speed_bytes);

/* 0, or TLCM_E* with why filled. */
int up_http_new(up_http_t **out, const up_http_opts_t *o, char *why,
		size_t cap);
void up_http_free(up_http_t *h);

/* Begin a request to base + path. hdrs: "Name: value" lines (NULL
 * terminated; copied). body (borrowed until the request is done) with
 * method POST; NULL for GET. timeout_ns 0: the default. */
int up_http_start(up_http_t *h, const char *method, const char *path,
		  const char *const *hdrs, const void *body, size_t len,
		  uint64_t timeout_ns);
/* Move the request on for up to wait_ms (0: only what is ready now).
 * 1: done, *r filled (valid until the next start); 0: still running;
 * TLCM_EINVAL when no request is running. */
int up_http_poll(up_http_t *h, int wait_ms, up_resp_t *r);
bool up_http_busy(const up_http_t *h);
/* Abandon the running request (its connection is closed). */
void up_http_cancel(up_http_t *h);

/* "curl 7.88.1, OpenSSL/3.0.19, nghttp2/1.52.0", for describe(). */
const char *up_http_version(void);

#endif
