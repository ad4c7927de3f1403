/* http.h — the one HTTP client of the core's clients (the uploader and the
 * updater, nodes/updater/): one reused libcurl easy handle driven through
 * a multi handle, so a request runs a little at a time from the node's
 * ticks and never holds a worker for longer than the caller's wait.
 *
 * One request at a time: up_http_start() (or up_http_send() for the
 * extras below) begins it, up_http_poll() moves it on for at most wait_ms
 * and reports it done once, with the response. The connection stays open
 * between requests (keep-alive; HTTP/2 when the server offers it over
 * TLS), TLS peers are always verified (ca_file / ca_path, else the
 * system's store), and nothing of a request — headers with their secrets
 * included — is ever logged.
 *
 * A response's body is kept in memory (up to max_response bytes), or, for
 * a request with a sink, a 200 or 206 body goes to the sink as it arrives
 * (the updater writes a model into its file so: nodes/updater/fetch.h).
 * Response heads are read as they come: the status, ETag and the start of
 * a Content-Range.
 */
#ifndef TLCM_UPLOADER_HTTP_H
#define TLCM_UPLOADER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct up_http up_http_t;

typedef struct up_http_opts {
	const char *base;        /* before every path, e.g.
				    "https://core/api/v1"; NULL or "": each
				    path is a whole URL */
	const char *ca_file, *ca_path; /* NULL or "": the system's */
	const char *user_agent;
	uint64_t connect_timeout_ns;
	uint64_t timeout_ns;     /* a request's, when it names none (0:
				    none) */
	uint64_t low_speed_time_ns; /* abort below low_speed_bytes/s for
				       this long (0: off) */
	long low_speed_bytes;
	size_t max_response;     /* response bytes kept in memory (the rest
				    dropped; 0: 1 MiB) */
} up_http_opts_t;

/* The response's head as far as it has come (the last response's: a
 * status line starts it again). */
typedef struct up_http_head {
	long status;         /* 0: no status line yet */
	bool has_range;      /* a Content-Range: bytes FIRST-... came */
	uint64_t range_first;
	char etag[128];      /* the ETag header as sent ("" none; cut at
				127 characters) */
} up_http_head_t;

/* Where the body of a 200 or 206 answer goes instead of memory: each
 * piece as it arrives, with the head. false stops the transfer (the
 * response then says CURLE_WRITE_ERROR). Other answers' bodies (errors)
 * stay in memory. */
typedef bool (*up_http_sink_fn)(void *arg, const up_http_head_t *head,
				const char *p, size_t len);

typedef struct up_http_req {
	const char *method;      /* "POST" (with body), else a GET */
	const char *path;        /* after base (or the whole URL) */
	const char *const *hdrs; /* "Name: value" lines, NULL terminated
				    (copied) */
	const void *body;        /* borrowed until the request is done */
	size_t len;
	uint64_t timeout_ns;     /* 0: the client's */
	uint64_t range_from;     /* > 0: Range: bytes=FROM- */
	bool identity;           /* the body as stored (no gzip/deflate),
				    so that a Range counts its bytes */
	up_http_sink_fn sink;    /* NULL: the body to memory */
	void *sink_arg;
} up_http_req_t;

typedef struct up_resp {
	int curl;            /* CURLcode: 0 when a response came */
	long status;         /* HTTP status; 0 without a response (it stays
				when the body was cut or a sink stopped it) */
	char *body;          /* NUL-terminated, owned by the client until
				the next start */
	size_t len;
	bool truncated;      /* longer than max_response */
	long retry_after_s;  /* Retry-After (seconds or a date), -1: none */
	uint64_t time_ns;    /* the whole request */
	int http_version;    /* 1 or 2 (0: no response) */
	bool reused;         /* went over an already open connection */
	char etag[128];      /* the head's ETag ("" none) */
	char error[256];     /* curl's words when curl != 0 */
} up_resp_t;

/* The connection options every client of the core sets on its curl easy
 * handle (`easy`: a CURL *): user agent, HTTP/2 over TLS when offered, no
 * redirects, TCP keep-alive, connect timeout, TLS peer and host always
 * verified (ca_file / ca_path, NULL or "": the system's store), abort
 * below low_speed_bytes/s for low_speed_time_ns (0: never). Returns a
 * CURLcode (0: all set). */
int up_http_link_opts(void *easy, const char *user_agent,
		      uint64_t connect_timeout_ns, const char *ca_file,
		      const char *ca_path, uint64_t low_speed_time_ns,
		      long low_speed_bytes);

/* 0, or TLCM_E* with why filled. */
int up_http_new(up_http_t **out, const up_http_opts_t *o, char *why,
		size_t cap);
void up_http_free(up_http_t *h);

/* Begin a request. 0, TLCM_EBUSY while one runs, TLCM_ENOMEM,
 * TLCM_EINVAL (curl refused an option). */
int up_http_send(up_http_t *h, const up_http_req_t *rq);
/* The plain case: base + path, body with method POST (NULL for GET),
 * timeout_ns 0: the default. */
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

/* Driving it from ticks (now, deadline: tlcm_now_ns()): how long this
 * tick may wait in up_http_poll() — until deadline, but not at all once
 * the request has run 50 ms: a slow one is only looked at, it does not
 * hold the worker — and the tick period to ask for while one runs (1 ms,
 * 10 ms once slow). */
int up_http_wait_ms(const up_http_t *h, uint64_t now, uint64_t deadline);
uint64_t up_http_period_ns(const up_http_t *h, uint64_t now);

/* "curl 7.88.1, OpenSSL/3.0.19, nghttp2/1.52.0", for describe(). */
const char *up_http_version(void);
/* "tinylcm/VERSION (linux; aarch64)" into ua. */
void up_http_user_agent(char *ua, size_t cap);
/* Does url name this machine (127.*, localhost, [::1])? Plain http goes
 * elsewhere only with a warning. */
bool up_http_loopback(const char *url);
/* A device id (or group) as the core's API takes it in paths and
 * headers: [A-Za-z0-9._-]{1,64}. */
bool up_http_valid_id(const char *s);

#endif
