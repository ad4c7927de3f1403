/* fetch.c — the updater's HTTP client: one libcurl easy handle reused for
 * every request (its connection cache keeps the connection open), run
 * through a multi handle so that upd_fetch_poll() waits on the socket for
 * a bounded time and returns. A GET with a sink writes the body into the
 * partial file with pwrite() as it arrives. See fetch.h.
 *
 * Downloads ask for `Accept-Encoding: identity`: a Range counts bytes of
 * the encoded entity, so a transparently decompressed body could not be
 * resumed by its decoded length.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "nodes/uploader/http.h"

#include "engine/error.h"
#include "nodes/updater/fetch.h"

#define MAX_BODY (1u << 20)

struct upd_fetch {
	CURL *easy;
	CURLM *multi;
	struct curl_slist *hdrs;
	bool running;
	/* the answer in memory */
	char *body;
	size_t len, cap;
	/* the response head */
	long status;
	bool have_range;
	uint64_t range_start;
	char etag[128];
	/* the file, for a GET with a sink */
	bool to_file, decided;
	upd_sink_t sink;
	uint64_t offset, received, since_sync;
	bool restarted, too_large, bad_range;
	int write_errno;
	char err[CURL_ERROR_SIZE];
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static long ms(uint64_t ns)
{
	uint64_t m = (ns + 999999) / 1000000;
	return m > 0x7fffffff ? 0x7fffffff : (long)m;
}

static int keep(upd_fetch_t *h, const char *p, size_t len)
{
	if (h->len + len > MAX_BODY)
		len = MAX_BODY - h->len; /* the rest is dropped */
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

/* Response headers: the status line (reset for every response, 1xx
 * included), Content-Range and ETag. */
static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	upd_fetch_t *h = arg;
	size_t len = sz * n;
	char line[512];
	size_t l = len < sizeof line - 1 ? len : sizeof line - 1;
	memcpy(line, p, l);
	line[l] = 0;
	line[strcspn(line, "\r\n")] = 0;
	if (!strncmp(line, "HTTP/", 5)) {
		const char *sp = strchr(line, ' ');
		h->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		h->have_range = false;
		h->etag[0] = 0;
	} else if (!strncasecmp(line, "Content-Range:", 14)) {
		unsigned long long a;
		if (sscanf(line + 14, " bytes %llu-", &a) == 1) {
			h->have_range = true;
			h->range_start = a;
		}
	} else if (!strncasecmp(line, "ETag:", 5)) {
		const char *v = line + 5;
		while (*v == ' ' || *v == '\t')
			v++;
		snprintf(h->etag, sizeof h->etag, "%.*s",
			 (int)sizeof h->etag - 1, v);
	}
	return len;
}

/* The first body bytes of a GET with a sink: into the file (206 from our
 * offset, or a 200 that restarts it) or, for an error status, memory. */
static bool decide(upd_fetch_t *h)
{
	h->decided = true;
	h->to_file = false;
	if (h->status == 206) {
		if (!h->have_range || h->range_start != h->offset) {
			h->bad_range = true;
			return false;
		}
		h->to_file = true;
	} else if (h->status == 200) {
		if (h->offset) {
			/* the server ignored Range (or If-Range did not
			 * match): the whole entity comes again */
			if (ftruncate(h->sink.fd, 0)) {
				h->write_errno = errno;
				return false;
			}
			h->offset = 0;
			h->restarted = true;
		}
		h->to_file = true;
	}
	return true;
}

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
	upd_fetch_t *h = arg;
	size_t len = sz * n;
	if (h->sink.fd < 0 || h->status < 200 || h->status > 299)
		return keep(h, p, len) ? 0 : len;
	if (!h->decided && !decide(h))
		return 0; /* curl stops: CURLE_WRITE_ERROR */
	if (!h->to_file)
		return keep(h, p, len) ? 0 : len;
	if (h->offset + len > h->sink.limit) {
		h->too_large = true;
		return 0;
	}
	size_t done = 0;
	while (done < len) {
		ssize_t w = pwrite(h->sink.fd, p + done, len - done,
				   (off_t)(h->offset + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			h->write_errno = w < 0 ? errno : EIO;
			return 0;
		}
		done += (size_t)w;
	}
	h->offset += len;
	h->received += len;
	h->since_sync += len;
	if (h->sink.sync_every && h->since_sync >= h->sink.sync_every) {
		h->since_sync = 0;
		if (fdatasync(h->sink.fd)) {
			h->write_errno = errno;
			return 0;
		}
		if (h->sink.on_durable)
			h->sink.on_durable(h->sink.arg, h->offset);
	}
	return len;
}

int upd_fetch_new(upd_fetch_t **out, const upd_fetch_opts_t *o, char *why,
		  size_t cap)
{
	*out = NULL;
	pthread_once(&global_once, global_init);
	if (global_rc)
		return tlcm_fail(why, cap, TLCM_EIO, "curl_global_init: %s",
				 curl_easy_strerror(global_rc));
	upd_fetch_t *h = calloc(1, sizeof *h);
	if (!h)
		return TLCM_ENOMEM;
	h->sink.fd = -1;
	h->easy = curl_easy_init();
	h->multi = curl_multi_init();
	if (!h->easy || !h->multi) {
		upd_fetch_free(h);
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
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, h);
#undef SET
	if (!rc)
		rc = (CURLcode)up_http_link_opts(
			e, o->user_agent, o->connect_timeout_ns, o->ca_file,
			o->ca_path, o->low_speed_time_ns, o->low_speed_bytes);
	if (rc) {
		int r = tlcm_fail(why, cap, TLCM_EINVAL, "curl: %s",
				  curl_easy_strerror(rc));
		upd_fetch_free(h);
		return r;
	}
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, 2L);
	*out = h;
	return 0;
}

void upd_fetch_free(upd_fetch_t *h)
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
	free(h->body);
	free(h);
}

bool upd_fetch_busy(const upd_fetch_t *h)
{
	return h->running;
}

static int set_headers(upd_fetch_t *h, const char *const *hdrs,
		       const char *more)
{
	curl_slist_free_all(h->hdrs);
	h->hdrs = NULL;
	/* no Expect: 100-continue round trip before a body */
	struct curl_slist *l = curl_slist_append(NULL, "Expect:");
	for (size_t i = 0; l && hdrs && hdrs[i]; i++) {
		struct curl_slist *n = curl_slist_append(l, hdrs[i]);
		if (!n)
			curl_slist_free_all(l);
		l = n;
	}
	if (l && more) {
		struct curl_slist *n = curl_slist_append(l, more);
		if (!n)
			curl_slist_free_all(l);
		l = n;
	}
	if (!l)
		return TLCM_ENOMEM;
	h->hdrs = l;
	return 0;
}

static void reset_result(upd_fetch_t *h)
{
	h->len = 0;
	if (h->body)
		h->body[0] = 0;
	h->err[0] = 0;
	h->status = 0;
	h->have_range = false;
	h->etag[0] = 0;
	h->decided = h->to_file = false;
	h->received = h->since_sync = 0;
	h->restarted = h->too_large = h->bad_range = false;
	h->write_errno = 0;
}

static int start(upd_fetch_t *h)
{
	if (curl_multi_add_handle(h->multi, h->easy))
		return TLCM_EINTERNAL;
	h->running = true;
	return 0;
}

int upd_fetch_post(upd_fetch_t *h, const char *url, const char *const *hdrs,
		   const char *body, size_t len, uint64_t timeout_ns)
{
	if (h->running)
		return TLCM_EBUSY;
	int r = set_headers(h, hdrs, NULL);
	if (r)
		return r;
	reset_result(h);
	h->sink.fd = -1;
	CURL *e = h->easy;
	CURLcode rc = curl_easy_setopt(e, CURLOPT_URL, url);
	if (!rc)
		rc = curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->hdrs);
	if (!rc)
		rc = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
				      timeout_ns ? ms(timeout_ns) : 0L);
	if (!rc)
		rc = curl_easy_setopt(e, CURLOPT_RANGE, NULL);
	if (!rc)
		rc = curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING,
				      "gzip, deflate");
	if (!rc)
		rc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
				      (curl_off_t)len);
	if (!rc)
		rc = curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
	if (rc)
		return TLCM_EINVAL;
	return start(h);
}

int upd_fetch_get(upd_fetch_t *h, const char *url, const char *const *hdrs,
		  const upd_sink_t *sink, uint64_t timeout_ns)
{
	if (h->running)
		return TLCM_EBUSY;
	char ifr[200] = "";
	if (sink && sink->offset && sink->if_range && *sink->if_range)
		snprintf(ifr, sizeof ifr, "If-Range: %s", sink->if_range);
	int r = set_headers(h, hdrs, ifr[0] ? ifr : NULL);
	if (r)
		return r;
	reset_result(h);
	if (sink)
		h->sink = *sink;
	else
		h->sink = (upd_sink_t){.fd = -1};
	h->offset = sink ? sink->offset : 0;
	char range[48];
	snprintf(range, sizeof range, "%" PRIu64 "-", h->offset);
	CURL *e = h->easy;
	CURLcode rc = curl_easy_setopt(e, CURLOPT_URL, url);
	if (!rc)
		rc = curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->hdrs);
	if (!rc)
		rc = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
				      timeout_ns ? ms(timeout_ns) : 0L);
	if (!rc)
		rc = curl_easy_setopt(e, CURLOPT_RANGE,
				      h->offset ? range : NULL);
	if (!rc)
		rc = curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "identity");
	if (!rc)
		rc = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	if (rc)
		return TLCM_EINVAL;
	return start(h);
}

static void fill(upd_fetch_t *h, CURLcode res, upd_result_t *r)
{
	memset(r, 0, sizeof *r);
	r->curl = (int)res;
	r->status = h->status;
	if (res)
		snprintf(r->error, sizeof r->error, "%s",
			 h->err[0] ? h->err : curl_easy_strerror(res));
	if (!h->body) {
		h->body = malloc(1);
		if (h->body)
			h->body[0] = 0, h->cap = 1;
	}
	r->body = h->body;
	r->len = h->len;
	r->offset = h->offset;
	r->received = h->received;
	r->restarted = h->restarted;
	r->too_large = h->too_large;
	r->bad_range = h->bad_range;
	r->write_errno = h->write_errno;
	snprintf(r->etag, sizeof r->etag, "%s", h->etag);
}

/* The finished transfer, if any: 1 with *r filled. */
static int harvest(upd_fetch_t *h, upd_result_t *r)
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

int upd_fetch_poll(upd_fetch_t *h, int wait_ms, upd_result_t *r)
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
			curl_multi_perform(h->multi, &still);
			return harvest(h, r);
		}
	}
}

void upd_fetch_cancel(upd_fetch_t *h)
{
	if (!h->running)
		return;
	curl_multi_remove_handle(h->multi, h->easy);
	h->running = false;
}
