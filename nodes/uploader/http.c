/* http.c — the uploader's HTTP client: one libcurl easy handle, reused for
 * every request (its connection cache keeps the connection open), run
 * through a multi handle so that up_http_poll() can wait on the socket for
 * a bounded time and return. See http.h.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "engine/error.h"
#include "nodes/uploader/http.h"

struct up_http {
	CURL *easy;
	CURLM *multi;
	struct curl_slist *hdrs;
	char *base;
	uint64_t timeout_ns;
	bool running;
	char *body;        /* the response */
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

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
	up_http_t *h = arg;
	size_t len = sz * n, keep = len;
	if (h->len + keep > h->max) {
		keep = h->max - h->len;
		h->truncated = true;
	}
	if (h->len + keep + 1 > h->cap) {
		size_t c = h->cap ? h->cap : 1024;
		while (c < h->len + keep + 1)
			c *= 2;
		char *b = realloc(h->body, c);
		if (!b)
			return 0; /* curl reports a write error */
		h->body = b;
		h->cap = c;
	}
	memcpy(h->body + h->len, p, keep);
	h->len += keep;
	h->body[h->len] = 0;
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
#define SET(opt, val)                                                       \
	do {                                                                \
		if (!rc)                                                    \
			rc = curl_easy_setopt(e, opt, val);                 \
	} while (0)
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
#undef SET
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
	h->base = strdup(o->base);
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
#define SET(opt, val)                                                       \
	do {                                                                \
		if (!rc)                                                    \
			rc = curl_easy_setopt(e, opt, val);                 \
	} while (0)
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_ERRORBUFFER, h->err);
	SET(CURLOPT_WRITEFUNCTION, on_data);
	SET(CURLOPT_WRITEDATA, h);
	/* decoded by curl: bodies come back as sent */
	SET(CURLOPT_ACCEPT_ENCODING, "gzip, deflate");
#undef SET
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

int up_http_start(up_http_t *h, const char *method, const char *path,
		  const char *const *hdrs, const void *body, size_t len,
		  uint64_t timeout_ns)
{
	if (h->running)
		return TLCM_EBUSY;
	curl_slist_free_all(h->hdrs);
	h->hdrs = NULL;
	/* no Expect: 100-continue round trip before a body */
	struct curl_slist *l = curl_slist_append(NULL, "Expect:");
	for (size_t i = 0; l && hdrs && hdrs[i]; i++) {
		struct curl_slist *n = curl_slist_append(l, hdrs[i]);
		if (!n) {
			curl_slist_free_all(l);
			l = NULL;
		}
		l = n;
	}
	if (!l)
		return TLCM_ENOMEM;
	h->hdrs = l;
	size_t ul = strlen(h->base) + strlen(path) + 1;
	char *url = malloc(ul);
	if (!url)
		return TLCM_ENOMEM;
	snprintf(url, ul, "%s%s", h->base, path);
	CURL *e = h->easy;
	CURLcode rc = curl_easy_setopt(e, CURLOPT_URL, url);
	free(url); /* curl keeps its own copy */
	if (!rc)
		rc = curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->hdrs);
	if (!rc)
		rc = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
				      ms(timeout_ns ? timeout_ns
						    : h->timeout_ns));
	if (!rc && !strcmp(method, "POST")) {
		rc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
				      (curl_off_t)len);
		if (!rc)
			rc = curl_easy_setopt(e, CURLOPT_POSTFIELDS,
					      body ? body : "");
	} else if (!rc) {
		rc = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	}
	if (rc)
		return TLCM_EINVAL;
	h->len = 0;
	h->truncated = false;
	h->err[0] = 0;
	if (h->body)
		h->body[0] = 0;
	if (curl_multi_add_handle(h->multi, e))
		return TLCM_EINTERNAL;
	h->running = true;
	return 0;
}

static void fill(up_http_t *h, CURLcode res, up_resp_t *r)
{
	CURL *e = h->easy;
	memset(r, 0, sizeof *r);
	r->curl = (int)res;
	r->retry_after_s = -1;
	if (res) {
		snprintf(r->error, sizeof r->error, "%s",
			 h->err[0] ? h->err : curl_easy_strerror(res));
	} else {
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
		curl_off_t ra = -1;
		if (!curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &ra) && ra >= 0
		    && (r->status == 429 || r->status == 503))
			r->retry_after_s = (long)ra;
		long v = 0;
		curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &v);
		r->http_version = v == CURL_HTTP_VERSION_2_0 ? 2 : 1;
		struct curl_header *et;
		if (curl_easy_header(e, "ETag", 0, CURLH_HEADER, -1, &et) ==
		    CURLHE_OK && strlen(et->value) < sizeof r->etag)
			snprintf(r->etag, sizeof r->etag, "%s", et->value);
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

int up_http_poll(up_http_t *h, int wait_ms, up_resp_t *r)
{
	if (!h->running)
		return TLCM_EINVAL;
	for (;;) {
		int still = 0;
		curl_multi_perform(h->multi, &still);
		int left;
		CURLMsg *m;
		while ((m = curl_multi_info_read(h->multi, &left))) {
			if (m->msg != CURLMSG_DONE || m->easy_handle != h->easy)
				continue;
			CURLcode res = m->data.result;
			fill(h, res, r);
			curl_multi_remove_handle(h->multi, h->easy);
			h->running = false;
			return 1;
		}
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
		if (wait_ms <= 0)
			wait_ms = 0;
		if (!n && !wait_ms) {
			/* one last look without waiting */
			curl_multi_perform(h->multi, &still);
			while ((m = curl_multi_info_read(h->multi, &left))) {
				if (m->msg != CURLMSG_DONE ||
				    m->easy_handle != h->easy)
					continue;
				fill(h, m->data.result, r);
				curl_multi_remove_handle(h->multi, h->easy);
				h->running = false;
				return 1;
			}
			return 0;
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

const char *up_http_version(void)
{
	return curl_version();
}
