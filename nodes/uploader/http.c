/* http.c — the HTTP client of the core's clients: one libcurl easy handle,
 * reused for every request (its connection cache keeps the connection
 * open), run through a multi handle so that up_http_poll() can wait on the
 * socket for a bounded time and return. A header callback keeps the head
 * of the response as it comes; the write callback puts the body in memory
 * or, for a request with a sink, hands a 200 or 206 body to the sink. See
 * http.h.
 */
#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <time.h>

#include <curl/curl.h>

#include "engine/error.h"
#include "engine/node.h"
#include "nodes/uploader/http.h"
#include "tinylcm_version.h"

#define SLOW_NS 50000000u /* a request pending this long is polled */

/* curl_easy_setopt on the easy handle `e` while `rc` is still CURLE_OK:
 * rc keeps the first failure */
#define SET(opt, val)                                                       \
	do {                                                                \
		if (!rc)                                                    \
			rc = curl_easy_setopt(e, opt, val);                 \
	} while (0)

struct up_http {
	CURL *easy;
	CURLM *multi;
	struct curl_slist *hdrs;
	char *base;
	uint64_t timeout_ns;
	bool running;
	uint64_t started;  /* tlcm_now_ns() of the start */
	up_http_head_t head;
	up_http_sink_fn sink;
	void *sink_arg;
	char *body;        /* the response in memory */
	size_t len, cap, max;
	bool truncated;
	char err[CURL_ERROR_SIZE];
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

/* curl_global_init once per process (thread-safe since 7.84, but an
 * older libcurl may still be linked) */
static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Into memory, up to max (the rest is dropped). -1: out of memory. */
static int keep(up_http_t *h, const char *p, size_t len)
{
	if (h->len + len > h->max) {
		len = h->max - h->len;
		h->truncated = true;
	}
	if (h->len + len + 1 > h->cap) {
		size_t c = h->cap ? h->cap : 1024;
		while (c < h->len + len + 1)
			c *= 2;
		char *b = realloc(h->body, c);
		if (!b)
			return -1;
		h->body = b;
		h->cap = c;
	}
	memcpy(h->body + h->len, p, len);
	h->len += len;
	h->body[h->len] = 0;
	return 0;
}

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
	up_http_t *h = arg;
	size_t len = sz * n;
	long s = h->head.status;
	if (h->sink && (s == 200 || s == 206))
		return h->sink(h->sink_arg, &h->head, p, len) ? len : 0;
	/* 0: curl stops with a write error */
	return keep(h, p, len) ? 0 : len;
}

/* Response headers: the status line (starts the head again, for every
 * response, 1xx included), Content-Range and ETag. */
static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	up_http_t *h = arg;
	up_http_head_t *hd = &h->head;
	size_t len = sz * n;
	char line[512];
	size_t l = len < sizeof line - 1 ? len : sizeof line - 1;
	memcpy(line, p, l);
	line[l] = 0;
	line[strcspn(line, "\r\n")] = 0;
	if (!strncmp(line, "HTTP/", 5)) {
		const char *sp = strchr(line, ' ');
		*hd = (up_http_head_t){
			.status = sp ? strtol(sp + 1, NULL, 10) : 0};
	} else if (!strncasecmp(line, "Content-Range:", 14)) {
		unsigned long long a;
		if (sscanf(line + 14, " bytes %llu-", &a) == 1) {
			hd->has_range = true;
			hd->range_first = a;
		}
	} else if (!strncasecmp(line, "ETag:", 5)) {
		const char *v = line + 5;
		while (*v == ' ' || *v == '\t')
			v++;
		snprintf(hd->etag, sizeof hd->etag, "%.*s",
			 (int)sizeof hd->etag - 1, v);
	}
	return len;
}

static long ms(uint64_t ns)
{
	uint64_t m = (ns + 999999) / 1000000;
	return m > 0x7fffffff ? 0x7fffffff : (long)m;
}

/* The connection options every client of the core uses. */
int up_http_link_opts(void *easy, const char *user_agent,
		      uint64_t connect_timeout_ns, const char *ca_file,
		      const char *ca_path, uint64_t low_speed_time_ns,
		      long low_speed_bytes)
{
	CURL *e = easy;
	CURLcode rc = CURLE_OK;
	SET(CURLOPT_USERAGENT, user_agent);
	/* HTTP/2 over TLS when the server offers it (ALPN), else 1.1 */
	SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_TCP_NODELAY, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, ms(connect_timeout_ns));
	/* peer and host verification stay on (curl's default); only where
	 * the trusted CAs come from can be chosen */
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (ca_file && *ca_file)
		SET(CURLOPT_CAINFO, ca_file);
	if (ca_path && *ca_path)
		SET(CURLOPT_CAPATH, ca_path);
	if (low_speed_time_ns && low_speed_bytes > 0) {
		long s = (long)((low_speed_time_ns + 999999999) / 1000000000u);
		SET(CURLOPT_LOW_SPEED_LIMIT, low_speed_bytes);
		SET(CURLOPT_LOW_SPEED_TIME, s);
	}
	return (int)rc;
}

int up_http_new(up_http_t **out, const up_http_opts_t *o, char *why,
		size_t cap)
{
	*out = NULL;
	pthread_once(&global_once, global_init);
	if (global_rc)
		return tlcm_fail(why, cap, TLCM_EIO, "curl_global_init: %s",
				 curl_easy_strerror(global_rc));
	up_http_t *h = calloc(1, sizeof *h);
	if (!h)
		return TLCM_ENOMEM;
	h->base = strdup(o->base ? o->base : "");
	h->easy = curl_easy_init();
	h->multi = curl_multi_init();
	h->max = o->max_response ? o->max_response : 1 << 20;
	h->timeout_ns = o->timeout_ns;
	if (!h->base || !h->easy || !h->multi) {
		up_http_free(h);
		return TLCM_ENOMEM;
	}
	CURL *e = h->easy;
	CURLcode rc = CURLE_OK;
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_ERRORBUFFER, h->err);
	SET(CURLOPT_WRITEFUNCTION, on_data);
	SET(CURLOPT_WRITEDATA, h);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, h);
	if (!rc)
		rc = (CURLcode)up_http_link_opts(
			e, o->user_agent, o->connect_timeout_ns, o->ca_file,
			o->ca_path, o->low_speed_time_ns, o->low_speed_bytes);
	if (rc) {
		int r = tlcm_fail(why, cap, TLCM_EINVAL, "curl: %s",
				  curl_easy_strerror(rc));
		up_http_free(h);
		return r;
	}
	/* one connection to the core, kept open between requests */
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, 2L);
	*out = h;
	return 0;
}

void up_http_free(up_http_t *h)
{
	if (!h)
		return;
	if (h->running)
		curl_multi_remove_handle(h->multi, h->easy);
	if (h->easy)
		curl_easy_cleanup(h->easy);
	if (h->multi)
		curl_multi_cleanup(h->multi);
	curl_slist_free_all(h->hdrs);
	free(h->base);
	free(h->body);
	free(h);
}

bool up_http_busy(const up_http_t *h)
{
	return h->running;
}

/* "Expect:" (no 100-continue round trip before a body) and hdrs. */
static int set_headers(up_http_t *h, const char *const *hdrs)
{
	curl_slist_free_all(h->hdrs);
	h->hdrs = NULL;
	struct curl_slist *l = curl_slist_append(NULL, "Expect:");
	for (size_t i = 0; l && hdrs && hdrs[i]; i++) {
		struct curl_slist *n = curl_slist_append(l, hdrs[i]);
		if (!n)
			curl_slist_free_all(l);
		l = n;
	}
	if (!l)
		return TLCM_ENOMEM;
	h->hdrs = l;
	return 0;
}

int up_http_send(up_http_t *h, const up_http_req_t *rq)
{
	if (h->running)
		return TLCM_EBUSY;
	int r = set_headers(h, rq->hdrs);
	if (r)
		return r;
	size_t ul = strlen(h->base) + strlen(rq->path) + 1;
	char *url = malloc(ul);
	if (!url)
		return TLCM_ENOMEM;
	snprintf(url, ul, "%s%s", h->base, rq->path);
	char range[32];
	snprintf(range, sizeof range, "%" PRIu64 "-", rq->range_from);
	uint64_t tmo = rq->timeout_ns ? rq->timeout_ns : h->timeout_ns;
	CURL *e = h->easy;
	CURLcode rc = curl_easy_setopt(e, CURLOPT_URL, url);
	free(url); /* curl keeps its own copy */
	SET(CURLOPT_HTTPHEADER, h->hdrs);
	SET(CURLOPT_TIMEOUT_MS, ms(tmo));
	SET(CURLOPT_RANGE, rq->range_from ? range : NULL);
	/* decoded by curl: bodies come back as sent; a Range counts bytes of
	 * the encoded entity, so ranged downloads ask for none */
	SET(CURLOPT_ACCEPT_ENCODING, rq->identity ? "identity"
						  : "gzip, deflate");
	if (rq->method && !strcmp(rq->method, "POST")) {
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->len);
		SET(CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
	} else {
		SET(CURLOPT_HTTPGET, 1L);
	}
	if (rc)
		return TLCM_EINVAL;
	h->len = 0;
	h->truncated = false;
	h->err[0] = 0;
	if (h->body)
		h->body[0] = 0;
	h->head = (up_http_head_t){0};
	h->sink = rq->sink;
	h->sink_arg = rq->sink_arg;
	if (curl_multi_add_handle(h->multi, e))
		return TLCM_EINTERNAL;
	h->running = true;
	h->started = tlcm_now_ns();
	return 0;
}

int up_http_start(up_http_t *h, const char *method, const char *path,
		  const char *const *hdrs, const void *body, size_t len,
		  uint64_t timeout_ns)
{
	return up_http_send(h, &(up_http_req_t){
				       .method = method,
				       .path = path,
				       .hdrs = hdrs,
				       .body = body,
				       .len = len,
				       .timeout_ns = timeout_ns,
			       });
}

static void fill(up_http_t *h, CURLcode res, up_resp_t *r)
{
	CURL *e = h->easy;
	memset(r, 0, sizeof *r);
	r->curl = (int)res;
	r->status = h->head.status;
	r->retry_after_s = -1;
	snprintf(r->etag, sizeof r->etag, "%s", h->head.etag);
	if (res) {
		snprintf(r->error, sizeof r->error, "%s",
			 h->err[0] ? h->err : curl_easy_strerror(res));
	} else {
		curl_off_t ra = -1;
		if (!curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &ra) && ra >= 0
		    && (r->status == 429 || r->status == 503))
			r->retry_after_s = (long)ra;
		long v = 0;
		curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &v);
		r->http_version = v == CURL_HTTP_VERSION_2_0 ? 2 : 1;
	}
	long nc = 0;
	curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &nc);
	r->reused = nc == 0 && !res;
	curl_off_t t = 0;
	curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &t);
	r->time_ns = (uint64_t)t * 1000u;
	if (!h->body) {
		h->body = malloc(1);
		if (h->body)
			h->body[0] = 0, h->cap = 1;
	}
	r->body = h->body;
	r->len = h->len;
	r->truncated = h->truncated;
}

/* The finished transfer, if any: 1 with *r filled. */
static int harvest(up_http_t *h, up_resp_t *r)
{
	int left;
	CURLMsg *m;
	while ((m = curl_multi_info_read(h->multi, &left))) {
		if (m->msg != CURLMSG_DONE || m->easy_handle != h->easy)
			continue;
		fill(h, m->data.result, r);
		curl_multi_remove_handle(h->multi, h->easy);
		h->running = false;
		return 1;
	}
	return 0;
}

int up_http_poll(up_http_t *h, int wait_ms, up_resp_t *r)
{
	if (!h->running)
		return TLCM_EINVAL;
	for (;;) {
		int still = 0;
		curl_multi_perform(h->multi, &still);
		if (harvest(h, r))
			return 1;
		if (wait_ms <= 0)
			return 0;
		/* wait for the socket (or curl's own timeout) at most
		 * wait_ms; curl_multi_poll returns early when ready */
		int n = 0;
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		curl_multi_poll(h->multi, NULL, 0, wait_ms, &n);
		clock_gettime(CLOCK_MONOTONIC, &b);
		long spent = (b.tv_sec - a.tv_sec) * 1000 +
			     (b.tv_nsec - a.tv_nsec) / 1000000;
		wait_ms -= spent > 0 ? (int)spent : 0;
		if (wait_ms < 0)
			wait_ms = 0;
		if (!n && !wait_ms) {
			/* one last look without waiting */
			curl_multi_perform(h->multi, &still);
			return harvest(h, r);
		}
	}
}

void up_http_cancel(up_http_t *h)
{
	if (!h->running)
		return;
	curl_multi_remove_handle(h->multi, h->easy);
	h->running = false;
}

int up_http_wait_ms(const up_http_t *h, uint64_t now, uint64_t deadline)
{
	int64_t left = (int64_t)(deadline - now);
	return now - h->started > SLOW_NS || left <= 0
		       ? 0 : (int)(left / 1000000);
}

uint64_t up_http_period_ns(const up_http_t *h, uint64_t now)
{
	return now - h->started > SLOW_NS ? 10000000u : 1000000u;
}

const char *up_http_version(void)
{
	return curl_version();
}

void up_http_user_agent(char *ua, size_t cap)
{
	struct utsname un;
	if (uname(&un))
		memset(&un, 0, sizeof un);
	for (char *p = un.sysname; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	snprintf(ua, cap, "tinylcm/%s (%s; %s)", TINYLCM_VERSION, un.sysname,
		 un.machine);
}

bool up_http_loopback(const char *url)
{
	const char *h = strstr(url, "://");
	h = h ? h + 3 : url;
	return !strncmp(h, "127.", 4) || !strncmp(h, "localhost", 9) ||
	       !strncmp(h, "[::1]", 5);
}

bool up_http_valid_id(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}
