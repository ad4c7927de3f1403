/* http.c — the core's HTTP plumbing: NNG's server takes the connection
 * and the request head, we read the body ourselves (so an oversized one
 * gets 413 before a byte of it is read, not NNG's 400), a pool of worker
 * threads runs the route, and every answer is JSON with the status the
 * contract names (docs/api.md).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#include <sodium.h>

#include "engine/log.h"
#include "nodes/core/core.h"

/* ---- small helpers -------------------------------------------------------- */

uint64_t core_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t core_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void core_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

uint64_t core_get_be64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

size_t core_devkey(unsigned char *out, const char *dev, const uint64_t *v,
		   size_t n)
{
	size_t l = strlen(dev);
	memcpy(out, dev, l);
	out[l++] = 0;
	for (size_t i = 0; i < n; i++, l += 8)
		core_be64(out + l, v[i]);
	return l;
}

bool core_parse_u64(const char *s, uint64_t *out)
{
	if (!s || !isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

bool core_etag_listed(const char *list, const char *etag)
{
	for (const char *p = list; *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		while (n && p[n - 1] == ' ')
			n--;
		if (n >= 2 && !strncmp(p, "W/", 2))
			p += 2, n -= 2;
		if (n >= 2 && p[0] == '"' && p[n - 1] == '"')
			p++, n -= 2;
		if ((n == 1 && *p == '*') ||
		    (n == strlen(etag) && !strncmp(p, etag, n)))
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

bool core_valid_device(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!isalnum((unsigned char)s[n]) && !strchr("._-", s[n]))
			return false;
	return n >= 1 && n <= CORE_ID_MAX && strcmp(s, ".") &&
	       strcmp(s, "..");
}

bool core_valid_uuid(const char *s)
{
	for (size_t i = 0; i < CORE_UUID_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' :
			   !(isdigit((unsigned char)s[i]) ||
			     (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return s[CORE_UUID_LEN] == 0;
}

void core_sha256(const void *p, size_t n, unsigned char out[32])
{
	crypto_hash_sha256(out, p, n);
}

void core_hex(const unsigned char *p, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * n] = 0;
}

static int unhex(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Percent-decode s[0..n) into out; false on a bad escape, a NUL or an
 * overflow. */
static bool pct_decode(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int ch = (unsigned char)s[i];
		if (ch == '%') {
			int a = i + 2 < n ? unhex(s[i + 1]) : -1;
			int b = i + 2 < n ? unhex(s[i + 2]) : -1;
			if (a < 0 || b < 0)
				return false;
			ch = a << 4 | b;
			i += 2;
		} else if (ch == '+') {
			ch = ' ';
		}
		if (!ch || o + 1 >= cap)
			return false;
		out[o++] = (char)ch;
	}
	out[o] = 0;
	return true;
}

/* ---- answers -------------------------------------------------------------- */

#define MAX_XHDR 4
static _Thread_local struct {
	const core_req_t *r;
	size_t n;
	char name[MAX_XHDR][32];
	char value[MAX_XHDR][160];
} xhdr;

void core_add_header(core_req_t *r, const char *name, const char *value)
{
	if (xhdr.r != r)
		xhdr.r = r, xhdr.n = 0;
	if (xhdr.n == MAX_XHDR)
		return;
	snprintf(xhdr.name[xhdr.n], sizeof xhdr.name[0], "%s", name);
	snprintf(xhdr.value[xhdr.n], sizeof xhdr.value[0], "%s", value);
	xhdr.n++;
}

void core_reply(core_req_t *r, int status, const char *type,
		const void *body, size_t len)
{
	if (r->replied)
		return;
	r->replied = true;
	core_t *c = r->c;
	atomic_fetch_add(&c->st.requests, 1);
	if (status >= 500)
		atomic_fetch_add(&c->st.errors5, 1);
	else if (status >= 400)
		atomic_fetch_add(&c->st.errors4, 1);
	nng_http_res *res;
	if (nng_http_res_alloc(&res)) {
		nng_aio_finish(r->aio, NNG_ENOMEM);
		goto done;
	}
	nng_http_res_set_status(res, (uint16_t)status);
	if (type)
		nng_http_res_set_header(res, "Content-Type", type);
	nng_http_res_set_header(res, "Cache-Control", "no-store");
	if (xhdr.r == r)
		for (size_t i = 0; i < xhdr.n; i++)
			nng_http_res_set_header(res, xhdr.name[i],
						xhdr.value[i]);
	xhdr.r = NULL;
	if (len && strcmp(r->method, "HEAD"))
		nng_http_res_copy_data(res, body, len);
	nng_aio_set_output(r->aio, 0, res);
	nng_aio_finish(r->aio, 0);
done:
	atomic_fetch_sub(&c->inflight, 1);
}

void core_reply_json(core_req_t *r, int status, const char *json)
{
	core_reply(r, status, "application/json", json, strlen(json));
}

void core_error(core_req_t *r, int status, const char *code,
		const char *fmt, ...)
{
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	/* details quote what was sent (a package's id, a header): keep the
	 * answer valid UTF-8 JSON whatever those bytes are */
	char clean[sizeof detail];
	core_clean_text(detail, clean, sizeof clean);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "error", code);
	cJSON_AddStringToObject(o, "detail", clean);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (s) {
		core_reply_json(r, status, s);
		cJSON_free(s);
	} else {
		core_reply(r, status, NULL, NULL, 0);
	}
	if (status >= 500)
		tlcm_log(TLCM_LOG_WARN, tlcm_node_id(r->c->ctx), "%s %s: %d %s",
			 r->method, r->path, status, detail);
}

const char *core_header(const core_req_t *r, const char *name)
{
	return nng_http_req_get_header(r->req, name);
}

bool core_query(const core_req_t *r, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	for (const char *p = r->query; *p;) {
		const char *amp = strchr(p, '&');
		size_t n = amp ? (size_t)(amp - p) : strlen(p);
		/* present but not decodable (a bad escape, a NUL, too long)
		 * reads as "", which every caller refuses or matches with
		 * nothing: never as absent (?device=a%00b is no filter-less
		 * list) */
		if (n > nl && p[nl] == '=' && !strncmp(p, name, nl)) {
			if (!pct_decode(p + nl + 1, n - nl - 1, out, cap))
				out[0] = 0;
			return true;
		}
		if (n == nl && !strncmp(p, name, nl))
			return pct_decode("", 0, out, cap);
		p += n + (amp ? 1 : 0);
	}
	return false;
}

bool core_query_limit(core_req_t *r, size_t *out, size_t def, size_t max)
{
	char num[32];
	*out = def;
	if (!core_query(r, "limit", num, sizeof num))
		return true;
	uint64_t v;
	if (!core_parse_u64(num, &v) || !v || v > max) {
		core_error(r, 400, "bad_request", "limit: want 1 to %zu", max);
		return false;
	}
	*out = v;
	return true;
}

bool core_query_since(core_req_t *r, uint64_t *out)
{
	char num[32];
	*out = 0;
	if (core_query(r, "since", num, sizeof num) &&
	    !core_parse_u64(num, out)) {
		core_error(r, 400, "bad_request", "since: want nanoseconds "
			   "since the epoch");
		return false;
	}
	return true;
}

/* ---- routes --------------------------------------------------------------- */

static void prometheus(core_req_t *r);

typedef struct {
	const char *method;
	const char *pattern; /* "{}" matches one non-empty segment */
	void (*fn)(core_req_t *r);
} route_t;

static const route_t routes[] = {
	{"GET", "/api/v1/ping", core_ping},
	{"POST", "/api/v1/devices/register", core_register},
	{"GET", "/api/v1/devices", core_devices_list},
	{"GET", "/api/v1/satellites", core_satellites_list},
	{"GET", "/api/v1/devices/{}", core_device_get},
	{"GET", "/api/v1/devices/{}/feedback", core_feedback_get},
	{"POST", "/api/v1/devices/{}/feedback/ack", core_feedback_ack},
	{"GET", "/api/v1/devices/{}/metrics", core_device_metrics},
	{"GET", "/api/v1/devices/{}/logs", core_device_logs},
	{"PUT", "/api/v1/devices/{}/graph", core_device_graph_put},
	{"GET", "/api/v1/devices/{}/graph", core_device_graph_get},
	{"DELETE", "/api/v1/devices/{}/graph", core_device_graph_delete},
	{"POST", "/api/v1/devices/{}/graph/status", core_device_graph_status},
	{"PUT", "/api/v1/groups/{}/graph", core_group_graph_put},
	{"GET", "/api/v1/groups/{}/graph", core_group_graph_get},
	{"DELETE", "/api/v1/groups/{}/graph", core_group_graph_delete},
	{"POST", "/api/v1/packages", core_packages_post},
	{"GET", "/api/v1/packages", core_packages_list},
	{"GET", "/api/v1/drift/events", core_drift_list},
	{"GET", "/api/v1/drift/events/{}", core_drift_get},
	{"GET", "/api/v1/drift/events/{}/image", core_drift_image},
	{"POST", "/api/v1/drift/events/{}/validate", core_drift_validate},
	{"GET", "/api/v1/samples", core_samples_list},
	{"POST", "/api/v1/samples/{}/label", core_sample_label},
	{"GET", "/api/v1/samples/{}/thumbnail", core_sample_thumb},
	{"POST", "/api/v1/models", core_models_post},
	{"POST", "/api/v1/models/available", core_models_available},
	{"GET", "/api/v1/models/{}/{}", core_model_get},
	{"POST", "/api/v1/telemetry/submit", core_telemetry_submit},
	{"GET", "/api/v1/community/averages", core_community_averages},
	{"GET", "/api/v1/community/rank", core_community_rank},
	{"GET", "/api/v1/pool/status", core_pool_status},
	{"GET", "/metrics", prometheus},
	{"GET", "/", core_page},
};
#define NROUTES (sizeof routes / sizeof routes[0])

/* Does path match pattern? Fills r->param with pointers into `segs`. */
static bool match(const char *pattern, char *const *seg, size_t nseg,
		  char **param)
{
	size_t i = 0, np = 0;
	const char *p = pattern;
	if (!strcmp(p, "/"))
		return nseg == 0;
	while (*p == '/') {
		p++;
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (i >= nseg)
			return false;
		if (n == 2 && !strncmp(p, "{}", 2)) {
			if (np < 3)
				param[np++] = seg[i];
		} else if (strlen(seg[i]) != n || strncmp(seg[i], p, n)) {
			return false;
		}
		i++;
		p += n;
	}
	return i == nseg;
}

static void dispatch(core_req_t *r)
{
	char raw[sizeof r->path];
	const char *uri = nng_http_req_get_uri(r->req);
	const char *q = strchr(uri, '?');
	size_t plen = q ? (size_t)(q - uri) : strlen(uri);
	if (plen >= sizeof raw || (q && strlen(q + 1) >= sizeof r->query)) {
		snprintf(r->path, sizeof r->path, "(too long)");
		core_error(r, 414, "uri_too_long", "the request target has "
			   "more than %zu characters", sizeof raw - 1);
		return;
	}
	memcpy(raw, uri, plen);
	raw[plen] = 0;
	snprintf(r->query, sizeof r->query, "%s", q ? q + 1 : "");
	snprintf(r->path, sizeof r->path, "%s", raw);
	/* split into segments, each percent-decoded on its own (so an
	 * encoded "/" stays inside its segment and is refused by the id
	 * checks; ".." never reaches anything that touches files) */
	char *seg[16];
	char segbuf[sizeof raw];
	size_t nseg = 0, o = 0;
	for (char *p = raw; *p == '/';) {
		p++;
		char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (!n && !e)
			break; /* a trailing slash */
		if (nseg == 16 || !pct_decode(p, n, segbuf + o,
					      sizeof segbuf - o)) {
			core_error(r, 400, "bad_request", "bad path: a "
				   "segment is empty, has a bad %%-escape "
				   "or there are too many");
			return;
		}
		seg[nseg++] = segbuf + o;
		o += strlen(segbuf + o) + 1;
		p += n;
	}
	bool path_known = false;
	char allow[64] = "";
	for (size_t i = 0; i < NROUTES; i++) {
		char *param[3] = {0};
		if (!match(routes[i].pattern, seg, nseg, param))
			continue;
		bool head = !strcmp(r->method, "HEAD") &&
			    !strcmp(routes[i].method, "GET");
		if (strcmp(routes[i].method, r->method) && !head) {
			path_known = true;
			size_t al = strlen(allow);
			snprintf(allow + al, sizeof allow - al, "%s%s",
				 al ? ", " : "", routes[i].method);
			continue;
		}
		for (int k = 0; k < 3; k++)
			r->param[k] = param[k];
		r->route = (int)i;
		routes[i].fn(r);
		return;
	}
	if (path_known) {
		core_add_header(r, "Allow", allow);
		core_error(r, 405, "method_not_allowed", "%s is not allowed "
			   "here; use %s", r->method, allow);
	} else {
		core_error(r, 404, "not_found", "no such resource: %.200s",
			   r->path);
	}
}

/* ---- the worker pool ------------------------------------------------------ */

/* Free r. Inside r->rx's own callback (on_body, and enqueue called from
 * it) the aio can only be reaped, freed later by NNG's reaper thread; a
 * worker frees it at once (nng_aio_free waits for that callback to have
 * returned), which spares a wake-up of the reaper for every request with
 * a body. */
static void req_free(core_req_t *r, bool in_rx_cb)
{
	if (r->rx && in_rx_cb)
		nng_aio_reap(r->rx);
	else if (r->rx)
		nng_aio_free(r->rx);
	free(r->body);
	free(r);
}

static void *worker(void *arg)
{
	core_t *c = arg;
	pthread_mutex_lock(&c->qmu);
	for (;;) {
		while (!c->head && !c->quit)
			pthread_cond_wait(&c->qcv, &c->qmu);
		core_req_t *r = c->head;
		if (!r)
			break; /* stopped: every request was answered */
		c->head = r->next;
		if (!c->head)
			c->tail = NULL;
		c->queued--;
		pthread_mutex_unlock(&c->qmu);
		dispatch(r);
		if (!r->replied)
			core_error(r, 500, "internal", "the handler did not "
				   "answer");
		req_free(r, false);
		pthread_mutex_lock(&c->qmu);
	}
	pthread_mutex_unlock(&c->qmu);
	return NULL;
}

#define MAX_QUEUE 4096
#define BODY_TIMEOUT_MS 30000 /* a client that stops sending mid-body */

static void enqueue(core_req_t *r)
{
	core_t *c = r->c;
	pthread_mutex_lock(&c->qmu);
	if (c->queued >= MAX_QUEUE) {
		pthread_mutex_unlock(&c->qmu);
		r->method = nng_http_req_get_method(r->req);
		core_add_header(r, "Retry-After", "1");
		core_error(r, 503, "busy", "%d requests are waiting; try again",
			   MAX_QUEUE);
		req_free(r, true);
		return;
	}
	r->next = NULL;
	if (c->tail)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	c->queued++;
	pthread_cond_signal(&c->qcv);
	pthread_mutex_unlock(&c->qmu);
}

static void on_body(void *arg)
{
	core_req_t *r = arg;
	int rv = nng_aio_result(r->rx);
	if (rv) { /* the client went away mid-body: nothing to answer */
		r->replied = true;
		nng_aio_finish(r->aio, rv);
		atomic_fetch_sub(&r->c->inflight, 1);
		req_free(r, true);
		return;
	}
	r->body[r->len] = 0;
	enqueue(r);
}

/* NNG's thread: check the head, start reading the body, queue. */
static void on_request(nng_aio *aio)
{
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	core_t *c = nng_http_handler_get_data(h);
	core_req_t *r = calloc(1, sizeof *r);
	if (!r) {
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	r->c = c;
	r->aio = aio;
	r->req = nng_aio_get_input(aio, 0);
	r->conn = nng_aio_get_input(aio, 2);
	r->method = nng_http_req_get_method(r->req);
	r->route = -1;
	r->t0 = core_mono_ns();
	snprintf(r->path, sizeof r->path, "%.200s",
		 nng_http_req_get_uri(r->req));
	atomic_fetch_add(&c->inflight, 1);
	if (atomic_load(&c->stopping)) {
		core_add_header(r, "Retry-After", "5");
		core_error(r, 503, "unavailable", "the core is shutting down");
		free(r);
		return;
	}
	const char *te = core_header(r, "Transfer-Encoding");
	const char *cl = core_header(r, "Content-Length");
	uint64_t len = 0;
	if (te) {
		core_add_header(r, "Connection", "close");
		core_error(r, 411, "length_required", "send the body with "
			   "Content-Length (Transfer-Encoding %.40s is not "
			   "accepted)", te);
		free(r);
		return;
	}
	if (cl && !core_parse_u64(cl, &len)) {
		core_add_header(r, "Connection", "close");
		core_error(r, 400, "bad_request", "Content-Length '%.40s' is "
			   "not a number", cl);
		free(r);
		return;
	}
	if (len > c->max_body) {
		core_add_header(r, "Connection", "close");
		core_error(r, 413, "too_large", "the body has %" PRIu64
			   " bytes; this core accepts up to %zu", len,
			   c->max_body);
		free(r);
		return;
	}
	r->len = (size_t)len;
	r->body = malloc(r->len + 1);
	if (!r->body) {
		core_error(r, 503, "unavailable", "out of memory");
		free(r);
		return;
	}
	r->body[r->len] = 0;
	if (!r->len) {
		enqueue(r);
		return;
	}
	if (nng_aio_alloc(&r->rx, on_body, r)) {
		core_error(r, 503, "unavailable", "out of memory");
		free(r->body);
		free(r);
		return;
	}
	nng_aio_set_timeout(r->rx, BODY_TIMEOUT_MS);
	nng_iov iov = {r->body, r->len};
	nng_aio_set_iov(r->rx, 1, &iov);
	nng_http_conn_read_all(r->conn, r->rx);
}

/* ---- stripe locks ------------------------------------------------------- */

pthread_mutex_t *core_lock_of(core_t *c, const char *key)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 1099511628211ull;
	return &c->locks[h % CORE_LOCKS];
}

/* ---- Prometheus ------------------------------------------------------------ */

static void prometheus(core_req_t *r)
{
	core_t *c = r->c;
	char b[8192];
	size_t n = 0;
	pthread_mutex_lock(&c->mu);
	size_t ndev = c->ndev;
	pthread_mutex_unlock(&c->mu);
#define C(name, help, v)                                                       \
	n += (size_t)snprintf(b + n, sizeof b - n,                             \
			      "# HELP tinylcm_core_" name " " help "\n"       \
			      "# TYPE tinylcm_core_" name " counter\n"        \
			      "tinylcm_core_" name " %" PRIu64 "\n",          \
			      (uint64_t)atomic_load(&c->st.v))
	C("requests_total", "HTTP requests answered", requests);
	C("client_errors_total", "answers with a 4xx status", errors4);
	C("server_errors_total", "answers with a 5xx status", errors5);
	C("packages_stored_total", "packages stored the first time", stored);
	C("packages_duplicate_total", "packages received again (retries)",
	  duplicates);
	C("packages_rejected_total", "packages refused (400/403/413)",
	  rejected);
	C("packages_rate_limited_total", "uploads answered 429",
	  rate_limited);
	C("package_bytes_total", "bytes of packages stored", bytes);
	C("drift_events_total", "drift events decoded from packages",
	  drift_events);
	C("samples_total", "quarantined samples decoded", samples);
	C("metrics_records_total", "metrics records decoded", metrics);
	C("log_lines_total", "log lines decoded", logs);
	C("feedback_queued_total", "ground-truth labels queued for devices",
	  feedback_queued);
	C("feedback_acked_total", "labels acknowledged by devices",
	  feedback_acked);
	C("registrations_total", "successful registrations", registrations);
#undef C
	n += (size_t)snprintf(b + n, sizeof b - n,
			      "# HELP tinylcm_core_ingest_seconds_total time "
			      "spent ingesting packages\n"
			      "# TYPE tinylcm_core_ingest_seconds_total "
			      "counter\n"
			      "tinylcm_core_ingest_seconds_total %.9f\n",
			      (double)atomic_load(&c->st.ingest_ns) / 1e9);
	n += core_retention_prometheus(c, b + n, sizeof b - n);
	n += (size_t)snprintf(b + n, sizeof b - n,
			      "# HELP tinylcm_core_devices registered devices\n"
			      "# TYPE tinylcm_core_devices gauge\n"
			      "tinylcm_core_devices %zu\n", ndev);
	core_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", b,
		   n < sizeof b ? n : sizeof b - 1);
}

/* ---- start and stop ------------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *b = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = cap ? 2 * cap : 8192;
			char *nb = realloc(b, cap);
			if (!nb) {
				free(b);
				fclose(f);
				return NULL;
			}
			b = nb;
		}
		size_t k = fread(b + n, 1, 4096, f);
		n += k;
		if (k < 4096)
			break;
	}
	fclose(f);
	b[n] = 0;
	*len = n;
	return b;
}

#if MBEDTLS_VERSION_MAJOR >= 3
static int tls_rng(void *p, unsigned char *out, size_t n)
{
	(void)p;
	randombytes_buf(out, n);
	return 0;
}
#endif

/* Read tls_cert and tls_key and check them the way NNG's TLS engine
 * (mbed TLS) will read them: PEM, a certificate, an unencrypted key, and
 * the key the certificate's public key belongs to (NNG would accept a
 * mismatched pair and fail every handshake instead). 0 with *cp, *kp
 * owned by the caller (the key to be wiped), or TLCM_E* with why naming
 * the parameter and the file. */
static int tls_load(const char *cert, const char *key, char **cp, size_t *cl,
		    char **kp, size_t *kl, char *why, size_t cap)
{
	*cp = *kp = NULL;
	if (!key || !*key) {
		snprintf(why, cap, "tls_key: empty; https needs tls_cert and "
			 "tls_key (PEM files)");
		return TLCM_EINVAL;
	}
	if (!(*cp = slurp(cert, cl))) {
		snprintf(why, cap, "tls_cert %s: cannot read: %s", cert,
			 strerror(errno));
		return TLCM_EIO;
	}
	if (!(*kp = slurp(key, kl))) {
		snprintf(why, cap, "tls_key %s: cannot read: %s", key,
			 strerror(errno));
		return TLCM_EIO;
	}
	mbedtls_x509_crt crt;
	mbedtls_pk_context pk;
	mbedtls_x509_crt_init(&crt);
	mbedtls_pk_init(&pk);
	char err[128];
	int rc = TLCM_EINVAL, e = 0;
	/* NNG hands mbed TLS the text up to its first NUL: PEM only */
	if (!strstr(*cp, "-----BEGIN CERTIFICATE-----")) {
		snprintf(why, cap, "tls_cert %s: no PEM certificate in it (want "
			 "-----BEGIN CERTIFICATE-----)", cert);
	} else if ((e = mbedtls_x509_crt_parse(&crt,
					       (const unsigned char *)*cp,
					       strlen(*cp) + 1))) {
		if (e > 0)
			snprintf(err, sizeof err, "%d certificates of the "
				 "chain do not parse", e);
		else
			mbedtls_strerror(e, err, sizeof err);
		snprintf(why, cap, "tls_cert %s: not a valid PEM certificate: "
			 "%s", cert, err);
	} else if (!strstr(*kp, "-----BEGIN") ||
		   (e = mbedtls_pk_parse_key(&pk, (const unsigned char *)*kp,
					     strlen(*kp) + 1, NULL, 0
#if MBEDTLS_VERSION_MAJOR >= 3
					     , tls_rng, NULL
#endif
					     ))) {
		if (strstr(*kp, "-----BEGIN"))
			mbedtls_strerror(e, err, sizeof err);
		else
			snprintf(err, sizeof err, "no PEM block in it");
		snprintf(why, cap, "tls_key %s: not a valid unencrypted PEM "
			 "private key: %s", key, err);
	} else if (mbedtls_pk_check_pair(&crt.pk, &pk
#if MBEDTLS_VERSION_MAJOR >= 3
					 , tls_rng, NULL
#endif
					 )) {
		snprintf(why, cap, "tls_key %s: not the private key of the "
			 "certificate in tls_cert %s", key, cert);
	} else {
		rc = 0;
	}
	mbedtls_pk_free(&pk);
	mbedtls_x509_crt_free(&crt);
	return rc;
}

int core_http_start(core_t *c, const char *url, const char *cert,
		    const char *key, char *why, size_t cap)
{
	nng_url *u = NULL;
	int rv = nng_url_parse(&u, url);
	if (rv) {
		snprintf(why, cap, "listen: '%s': %s", url, nng_strerror(rv));
		return TLCM_EINVAL;
	}
	bool tls = !strcmp(u->u_scheme, "https");
	if (!tls && strcmp(u->u_scheme, "http")) {
		snprintf(why, cap, "listen: '%s': want http:// or https://",
			 url);
		nng_url_free(u);
		return TLCM_EINVAL;
	}
	if (tls != (cert && *cert)) {
		snprintf(why, cap, "listen: %s needs %s", url,
			 tls ? "tls_cert and tls_key" :
			       "https:// when tls_cert is set");
		nng_url_free(u);
		return TLCM_EINVAL;
	}
	pthread_mutex_init(&c->qmu, NULL);
	pthread_cond_init(&c->qcv, NULL);
	rv = nng_http_server_hold(&c->srv, u);
	if (!rv && tls) {
		size_t cl = 0, kl = 0;
		char *cp, *kp;
		nng_tls_config *tc = NULL;
		if (tls_load(cert, key, &cp, &cl, &kp, &kl, why, cap)) {
			rv = NNG_EINVAL;
		} else if ((rv = nng_tls_config_alloc(&tc,
						      NNG_TLS_MODE_SERVER)) ||
			   (rv = nng_tls_config_own_cert(tc, cp, kp, NULL)) ||
			   (rv = nng_http_server_set_tls(c->srv, tc))) {
			snprintf(why, cap, "TLS with tls_cert %s and tls_key "
				 "%s: %s", cert, key, nng_strerror(rv));
		}
		if (tc)
			nng_tls_config_free(tc);
		if (kp)
			sodium_memzero(kp, kl);
		free(cp);
		free(kp);
	}
	if (!rv)
		rv = nng_http_handler_alloc(&c->h, "/", on_request);
	if (!rv)
		rv = nng_http_handler_set_method(c->h, NULL);
	if (!rv)
		rv = nng_http_handler_set_tree(c->h);
	if (!rv)
		rv = nng_http_handler_collect_body(c->h, false, 0);
	if (!rv)
		rv = nng_http_handler_set_data(c->h, c, NULL);
	if (!rv) {
		rv = nng_http_server_add_handler(c->srv, c->h);
		if (rv) /* the server owns it only once added */
			nng_http_handler_free(c->h);
	} else if (c->h) {
		nng_http_handler_free(c->h);
	}
	c->threads = calloc(c->nthreads, sizeof *c->threads);
	if (!rv && !c->threads)
		rv = NNG_ENOMEM;
	for (unsigned i = 0; !rv && i < c->nthreads; i++)
		if (pthread_create(&c->threads[i], NULL, worker, c)) {
			rv = NNG_ENOMEM;
			pthread_mutex_lock(&c->qmu);
			c->quit = true;
			pthread_mutex_unlock(&c->qmu);
			pthread_cond_broadcast(&c->qcv);
			for (unsigned k = 0; k < i; k++)
				pthread_join(c->threads[k], NULL);
		}
	if (!rv)
		rv = nng_http_server_start(c->srv);
	if (!rv) {
		nng_sockaddr sa;
		if (!nng_http_server_get_addr(c->srv, &sa) &&
		    sa.s_family == NNG_AF_INET)
			c->port = ntohs(sa.s_in.sa_port);
		else if (!nng_http_server_get_addr(c->srv, &sa) &&
			 sa.s_family == NNG_AF_INET6)
			c->port = ntohs(sa.s_in6.sa_port);
	}
	nng_url_free(u);
	if (rv) {
		if (!why[0])
			snprintf(why, cap, "cannot serve at %s: %s", url,
				 nng_strerror(rv));
		if (c->srv)
			nng_http_server_release(c->srv);
		c->srv = NULL;
		free(c->threads);
		c->threads = NULL;
		return rv == NNG_EADDRINUSE ? TLCM_EBUSY :
		       rv == NNG_EINVAL ? TLCM_EINVAL : TLCM_EIO;
	}
	return 0;
}

void core_http_stop(core_t *c)
{
	if (!c->srv)
		return;
	/* new requests get 503; the queued ones are answered; then the
	 * server stops (NNG frees its connections and their aios) */
	atomic_store(&c->stopping, true);
	while (atomic_load(&c->inflight) > 0)
		usleep(1000); /* bodies time out after BODY_TIMEOUT_MS */
	pthread_mutex_lock(&c->qmu);
	c->quit = true;
	pthread_cond_broadcast(&c->qcv);
	pthread_mutex_unlock(&c->qmu);
	for (unsigned i = 0; i < c->nthreads; i++)
		pthread_join(c->threads[i], NULL);
	free(c->threads);
	c->threads = NULL;
	nng_http_server_stop(c->srv);
	nng_http_server_release(c->srv);
	c->srv = NULL;
	pthread_cond_destroy(&c->qcv);
	pthread_mutex_destroy(&c->qmu);
}

/* ---- JSON helpers ------------------------------------------------------------ */

/* Length of the UTF-8 sequence at s (0: not valid UTF-8). */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 :
		   c >= 0xc2 && c <= 0xdf ? 2 : 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if (n == 3 && ((c == 0xe0 && s[1] < 0xa0) ||
		       (c == 0xed && s[1] >= 0xa0)))
		return 0; /* overlong, surrogates */
	if (n == 4 && ((c == 0xf0 && s[1] < 0x90) ||
		       (c == 0xf4 && s[1] >= 0x90)))
		return 0;
	return n;
}

void core_clean_text(const char *s, char *out, size_t cap)
{
	size_t o = 0;
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	while (*p && o + 1 < cap) {
		if (*p < 0x80) {
			out[o++] = *p < 0x20 || *p == 0x7f ? '?' : (char)*p;
			p++;
			continue;
		}
		size_t n = utf8_len(p);
		if (!n || o + n >= cap) {
			out[o++] = '?';
			p++;
			continue;
		}
		memcpy(out + o, p, n);
		o += n;
		p += n;
	}
	out[o] = 0;
}

void core_json_text(cJSON *o, const char *key, const char *s)
{
	if (!s) {
		cJSON_AddNullToObject(o, key);
		return;
	}
	size_t cap = strlen(s) + 1;
	char small[256], *b = cap <= sizeof small ? small : malloc(cap);
	if (!b)
		return;
	core_clean_text(s, b, cap);
	cJSON_AddStringToObject(o, key, b);
	if (b != small)
		free(b);
}

void core_json_num(cJSON *o, const char *key, double v)
{
	if (isfinite(v))
		cJSON_AddNumberToObject(o, key, v);
	else
		cJSON_AddNullToObject(o, key);
}

void core_reply_cjson(core_req_t *r, int rc, cJSON *o)
{
	char *s = rc < 0 || !o ? NULL : cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (s)
		core_reply_json(r, 200, s);
	else if (rc < 0)
		core_error(r, 503, "unavailable", "store: %s",
			   tlcm_strerror(rc));
	else
		core_error(r, 503, "unavailable", "out of memory");
	cJSON_free(s);
}

/* 64-bit integers (nanosecond times, frame ids) do not survive cJSON's
 * doubles above 2^53. They are written as raw number text, and parsing
 * wraps every integer literal of 16 or more digits into a string marked
 * with \x01 that fix_big() turns back into raw text: printed again, it is
 * the same number, digit for digit. */
static void fix_big(cJSON *j)
{
	for (cJSON *it = j ? j->child : NULL; it; it = it->next) {
		if (cJSON_IsString(it) && it->valuestring[0] == '\x01') {
			size_t n = strlen(it->valuestring);
			memmove(it->valuestring, it->valuestring + 1, n);
			it->type = cJSON_Raw;
		} else {
			fix_big(it);
		}
	}
}

cJSON *core_json_parse(const char *s, size_t n)
{
	/* each literal grows by 2 quotes + the mark: at most 3 per 16 */
	size_t cap = n + n / 5 + 4;
	char *b = malloc(cap);
	if (!b)
		return NULL;
	size_t o = 0;
	bool in_str = false;
	for (size_t i = 0; i < n;) {
		char ch = s[i];
		/* a NUL, raw or as \u0000, would cut the C string cJSON makes:
		 * {"device_id": "ab\u0000cd"} must not be read as "ab" */
		if (!ch || (in_str && ch == '\\' && n - i >= 6 &&
			    !memcmp(s + i + 1, "u0000", 5))) {
			free(b);
			return NULL;
		}
		if (in_str) {
			b[o++] = ch;
			i++;
			if (ch == '\\' && i < n)
				b[o++] = s[i++];
			else if (ch == '"')
				in_str = false;
			continue;
		}
		if (ch == '"') {
			in_str = true;
			b[o++] = s[i++];
			continue;
		}
		/* only a number's first digits: not those of a fraction or an
		 * exponent (0.30000000000000004), nor of a negative number */
		if (isdigit((unsigned char)ch) &&
		    (i == 0 || (!isalnum((unsigned char)s[i - 1]) &&
				!strchr(".+-", s[i - 1])))) {
			size_t k = i;
			while (k < n && isdigit((unsigned char)s[k]))
				k++;
			bool plain = k == n || !strchr(".eE", s[k]);
			if (plain && k - i >= 16) {
				b[o++] = '"';
				b[o++] = '\x01';
				memcpy(b + o, s + i, k - i);
				o += k - i;
				b[o++] = '"';
				i = k;
				continue;
			}
			memcpy(b + o, s + i, k - i);
			o += k - i;
			i = k;
			continue;
		}
		b[o++] = s[i++];
	}
	/* one JSON value and nothing after it ({"a":1}garbage is refused):
	 * cJSON wants the NUL inside the length for that */
	b[o++] = 0;
	cJSON *j = cJSON_ParseWithLengthOpts(b, o, NULL, true);
	free(b);
	fix_big(j);
	return j;
}

cJSON *core_json_u64_item(uint64_t v)
{
	char t[24];
	snprintf(t, sizeof t, "%" PRIu64, v);
	return cJSON_CreateRaw(t);
}

void core_json_add_u64(cJSON *o, const char *key, uint64_t v)
{
	cJSON_AddItemToObject(o, key, core_json_u64_item(v));
}

bool core_json_get_u64(const cJSON *it, uint64_t *out)
{
	if (cJSON_IsNumber(it)) {
		double v = it->valuedouble;
		if (!(v >= 0 && v < 9007199254740992.0) || v != (double)(uint64_t)v)
			return false;
		*out = (uint64_t)v;
		return true;
	}
	if (cJSON_IsRaw(it) || cJSON_IsString(it))
		return core_parse_u64(it->valuestring, out);
	return false;
}
