/* test_server.c — tlcm-test-server: the device-facing half of docs/api.md
 * on plain HTTP/1.1 (keep-alive) on loopback, with fault injection, for the
 * uploader's tests and `tinylcm-bench upload`.
 *
 * One thread, poll(2) over two listeners and their connections: the data
 * port serves /api/v1 (ping, register, packages, feedback, ack); the
 * control port serves /_test (faults, settings, feedback to hand out,
 * stats) so a test can script faults and take the data port offline
 * (connection refused) while it keeps talking to the server. Every event
 * that matters goes to an append-only log (--state FILE, one line each:
 * "stored ID ...", "duplicate ID", "attempt ID", "register DEV TOKEN",
 * "feedback ...", "ack ...", "fault ...", "reject ..."), replayed at start,
 * so a restarted server still de-duplicates and a test can check that
 * every package was stored exactly once. See tests/server/README.md.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#ifdef TLCM_HAVE_PACKAGE_FB
#include "fb/package_fb.h"
#endif

#define MAX_CONNS 256
#define MAX_HEAD (16 * 1024)
#define ID_LEN 36

/* ---- small helpers ------------------------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "tlcm-test-server: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

static char *xstrndup(const char *s, size_t n)
{
	char *d = xrealloc(NULL, n + 1);
	memcpy(d, s, n);
	d[n] = 0;
	return d;
}

static uint64_t fnv64(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* xorshift64*, seeded by --seed: chaos faults are reproducible */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double rnd01(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	uint64_t x = (rng * 0x2545f4914f6cdd1dull) >> 11;
	return (double)x / 9007199254740992.0; /* 2^53 */
}

/* A growable byte buffer. */
typedef struct {
	char *p;
	size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const void *d, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t c = b->cap ? b->cap : 256;
		while (c < b->len + n + 1)
			c *= 2;
		b->p = xrealloc(b->p, c);
		b->cap = c;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
	b->p[b->len] = 0;
}

__attribute__((format(printf, 2, 3))) static void buf_printf(buf_t *b,
							      const char *fmt,
							      ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	char *t = xrealloc(NULL, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(t, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf_add(b, t, (size_t)n);
	free(t);
}

static void buf_drop(buf_t *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
	if (b->p)
		b->p[b->len] = 0;
}

/* ---- the state: packages, devices, feedback, the log --------------------- */

typedef struct {
	char *device, *token;
} device_t;

typedef struct {
	char *device, *id, *label, *source;
	uint64_t frame, created_ns;
	bool acked;
} label_t;

static struct {
	/* ids stored: open addressing, power-of-two capacity */
	char (*ids)[ID_LEN + 1];
	size_t nids, cap;
	device_t *dev;
	size_t ndev;
	label_t *fb;
	size_t nfb;
	int log_fd;
	bool fsync_log;
	/* settings */
	const char *api_key;
	size_t max_body;
	unsigned ping_delay_ms;
	double chaos;
	bool offline;
	char user_agent[256], accept_encoding[128]; /* the last request's */
	uint64_t route[5]; /* requests per route (ROUTES) */
	/* counters */
	uint64_t requests, stored, duplicates, faults, rejects, conns,
		bytes_in, attempts;
} S = {.log_fd = -1, .max_body = 1 << 20};

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1,
								  2)));
static void log_line(const char *fmt, ...)
{
	if (S.log_fd < 0)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof line - 2)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	/* one write per line with O_APPEND: a line is never torn by a kill
	 * of the server, so a test reads whole lines only */
	if (write(S.log_fd, line, (size_t)n) != n)
		die("log write: %s", strerror(errno));
	if (S.fsync_log)
		fdatasync(S.log_fd);
}

static size_t id_slot(const char *id)
{
	size_t m = S.cap - 1, i = (size_t)fnv64(id, ID_LEN) & m;
	while (S.ids[i][0] && memcmp(S.ids[i], id, ID_LEN))
		i = (i + 1) & m;
	return i;
}

static bool id_known(const char *id)
{
	return S.cap && S.ids[id_slot(id)][0];
}

static void id_add(const char *id)
{
	if ((S.nids + 1) * 2 > S.cap) {
		size_t oc = S.cap;
		char (*old)[ID_LEN + 1] = S.ids;
		S.cap = oc ? oc * 2 : 1024;
		S.ids = xrealloc(NULL, S.cap * sizeof *S.ids);
		memset(S.ids, 0, S.cap * sizeof *S.ids);
		for (size_t i = 0; i < oc; i++)
			if (old[i][0])
				memcpy(S.ids[id_slot(old[i])], old[i],
				       ID_LEN + 1);
		free(old);
	}
	size_t i = id_slot(id);
	if (!S.ids[i][0]) {
		memcpy(S.ids[i], id, ID_LEN);
		S.ids[i][ID_LEN] = 0;
		S.nids++;
	}
}

static device_t *dev_find(const char *device)
{
	for (size_t i = 0; i < S.ndev; i++)
		if (!strcmp(S.dev[i].device, device))
			return &S.dev[i];
	return NULL;
}

static void dev_set(const char *device, const char *token)
{
	device_t *d = dev_find(device);
	if (!d) {
		S.dev = xrealloc(S.dev, (S.ndev + 1) * sizeof *S.dev);
		d = &S.dev[S.ndev++];
		d->device = strdup(device);
		d->token = NULL;
	}
	free(d->token);
	d->token = strdup(token);
}

static label_t *fb_find(const char *device, const char *id)
{
	for (size_t i = 0; i < S.nfb; i++)
		if (!strcmp(S.fb[i].device, device) && !strcmp(S.fb[i].id, id))
			return &S.fb[i];
	return NULL;
}

static void fb_add(const char *device, const char *id, uint64_t frame,
		   const char *label, const char *source, uint64_t created)
{
	if (fb_find(device, id))
		return;
	S.fb = xrealloc(S.fb, (S.nfb + 1) * sizeof *S.fb);
	label_t *l = &S.fb[S.nfb++];
	l->device = strdup(device);
	l->id = strdup(id);
	l->label = strdup(label);
	l->source = strdup(source);
	l->frame = frame;
	l->created_ns = created;
	l->acked = false;
}

/* Replay the log: stored ids, device tokens, feedback and its acks. */
static void replay(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char line[1200];
	while (fgets(line, sizeof line, f)) {
		char a[256], b[256], c[256], d[256], e[256];
		uint64_t x, y;
		if (sscanf(line, "stored %255s", a) == 1 &&
		    strlen(a) == ID_LEN) {
			id_add(a);
			S.stored++;
		} else if (sscanf(line, "register %255s %255s", a, b) == 2) {
			dev_set(a, b);
		} else if (sscanf(line, "feedback %255s %255s %" SCNu64
				  " %255s %255s %" SCNu64, a, b, &x, c, d,
				  &y) == 6) {
			fb_add(a, b, x, c, d, y);
		} else if (sscanf(line, "ack %255s %255s", a, e) == 2) {
			label_t *l = fb_find(a, e);
			if (l)
				l->acked = true;
		}
	}
	fclose(f);
}

/* ---- faults -------------------------------------------------------------- */

enum { F_STATUS, F_STALL, F_SLOW, F_RESET, F_LOST, F_GARBAGE, F_WRONGID,
       F_PARTIAL };
static const char *const fault_names[] = {"status", "stall", "slow", "reset",
					  "lost", "garbage", "wrongid",
					  "partial"};

typedef struct {
	char route[16];  /* ping register packages feedback ack any */
	int kind;
	int status;      /* F_STATUS */
	int retry_after; /* -1: no header; else seconds */
	unsigned ms;     /* stall / slow */
	long left;       /* requests it still applies to; -1 forever */
} fault_t;

static fault_t faults[256];
static size_t nfaults;

/* "ROUTE ACTION [retry-after=S] [xN|x*]", ACTION a status code, stall=MS,
 * slow=MS, reset, lost, garbage, wrongid or partial. */
static int fault_parse(const char *line, fault_t *f, char *why, size_t cap)
{
	char route[32] = "", act[64] = "", o1[64] = "", o2[64] = "";
	int n = sscanf(line, "%31s %63s %63s %63s", route, act, o1, o2);
	if (n < 2) {
		snprintf(why, cap, "want ROUTE ACTION [retry-after=S] [xN]");
		return -1;
	}
	memset(f, 0, sizeof *f);
	static const char *const routes[] = {"ping", "register", "packages",
					     "feedback", "ack", "any"};
	bool ok = false;
	for (size_t i = 0; i < 6; i++)
		ok |= !strcmp(route, routes[i]);
	if (!ok) {
		snprintf(why, cap, "unknown route '%s'", route);
		return -1;
	}
	snprintf(f->route, sizeof f->route, "%s", route);
	f->retry_after = -1;
	f->left = 1;
	if (isdigit((unsigned char)act[0])) {
		f->kind = F_STATUS;
		f->status = atoi(act);
		if (f->status < 100 || f->status > 599) {
			snprintf(why, cap, "bad status '%s'", act);
			return -1;
		}
	} else if (!strncmp(act, "stall=", 6)) {
		f->kind = F_STALL;
		f->ms = (unsigned)atoi(act + 6);
	} else if (!strncmp(act, "slow=", 5)) {
		f->kind = F_SLOW;
		f->ms = (unsigned)atoi(act + 5);
	} else {
		f->kind = -1;
		for (int k = F_RESET; k <= F_PARTIAL; k++)
			if (!strcmp(act, fault_names[k]))
				f->kind = k;
		if (f->kind < 0) {
			snprintf(why, cap, "unknown action '%s'", act);
			return -1;
		}
	}
	for (int i = 0; i < n - 2; i++) {
		const char *o = i ? o2 : o1;
		if (!strncmp(o, "retry-after=", 12))
			f->retry_after = atoi(o + 12);
		else if (!strcmp(o, "x*"))
			f->left = -1;
		else if (o[0] == 'x' && isdigit((unsigned char)o[1]))
			f->left = atol(o + 1);
		else {
			snprintf(why, cap, "unknown option '%s'", o);
			return -1;
		}
	}
	return 0;
}

static const char *const ROUTES[] = {"ping", "register", "packages",
				     "feedback", "ack"};

/* The fault for a request on route, consumed; NULL: none. chaos picks a
 * random transient one for packages. */
static bool fault_take(const char *route, fault_t *out)
{
	for (size_t i = 0; i < 5; i++)
		if (!strcmp(route, ROUTES[i]))
			S.route[i]++;
	for (size_t i = 0; i < nfaults; i++) {
		fault_t *f = &faults[i];
		if (strcmp(f->route, route) && strcmp(f->route, "any"))
			continue;
		*out = *f;
		if (f->left > 0 && --f->left == 0) {
			memmove(f, f + 1, (nfaults - i - 1) * sizeof *f);
			nfaults--;
		}
		return true;
	}
	if (S.chaos > 0 && !strcmp(route, "packages") && rnd01() < S.chaos) {
		static const int pick[] = {F_STATUS, F_STATUS, F_RESET, F_LOST,
					   F_GARBAGE, F_WRONGID, F_STALL,
					   F_PARTIAL};
		memset(out, 0, sizeof *out);
		snprintf(out->route, sizeof out->route, "packages");
		out->kind = pick[(size_t)(rnd01() * 8) % 8];
		out->status = rnd01() < 0.5 ? 503 : 429;
		out->retry_after = out->status == 429 ? 0 : -1;
		out->ms = 50;
		return true;
	}
	return false;
}

/* ---- connections --------------------------------------------------------- */

typedef struct {
	int fd;
	bool control;
	buf_t in, out;
	size_t out_off;
	/* request being answered: its response waits in `out` */
	bool busy;
	uint64_t due_ns;     /* stall: nothing is written before this */
	unsigned drip_ms;    /* slow: one byte of the body per drip_ms */
	size_t drip_from;    /* where the body starts in out */
	bool close_after;    /* close once out is written */
	bool rst_now;        /* close with RST, nothing written */
	bool continued;      /* 100 Continue sent for this request */
} conn_t;

static conn_t conns[MAX_CONNS];
static int lfd_data = -1, lfd_ctl = -1;
static int data_port, ctl_port;

static void conn_close(conn_t *c, bool rst)
{
	if (c->fd < 0)
		return;
	if (rst) {
		struct linger l = {1, 0};
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
	}
	close(c->fd);
	c->fd = -1;
	free(c->in.p);
	free(c->out.p);
	memset(c, 0, sizeof *c);
	c->fd = -1;
}

static int listen_on(int port, int *bound)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(fd, (struct sockaddr *)&a, sizeof a) ||
	    listen(fd, 128))
		die("listen on 127.0.0.1:%d: %s", port, strerror(errno));
	socklen_t al = sizeof a;
	getsockname(fd, (struct sockaddr *)&a, &al);
	*bound = ntohs(a.sin_port);
	return fd;
}

/* Offline: the data port refuses connections (the listener is closed, the
 * open connections reset); online again: listen on the same port. */
static void set_offline(bool off)
{
	if (off == S.offline)
		return;
	S.offline = off;
	if (off) {
		close(lfd_data);
		lfd_data = -1;
		for (size_t i = 0; i < MAX_CONNS; i++)
			if (conns[i].fd >= 0 && !conns[i].control)
				conn_close(&conns[i], true);
	} else {
		int p;
		lfd_data = listen_on(data_port, &p);
	}
	log_line("offline %d", off);
}

/* ---- HTTP requests ------------------------------------------------------- */

typedef struct {
	char method[16];
	char path[1024]; /* without the query */
	char query[256];
	const char *head; /* header block, for hdr() */
	size_t head_len;
	const char *body;
	size_t body_len;
	bool keep_alive;
} req_t;

/* The value of header `name` (case-insensitive), copied into out. */
static bool hdr(const req_t *r, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	const char *p = r->head, *end = r->head + r->head_len;
	/* skip the request line */
	const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
	p = eol ? eol + 2 : end;
	while (p < end) {
		eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (!eol)
			eol = end;
		if ((size_t)(eol - p) > nl && p[nl] == ':' &&
		    !strncasecmp(p, name, nl)) {
			const char *v = p + nl + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			const char *ve = eol;
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			size_t n = (size_t)(ve - v);
			if (n >= cap)
				n = cap - 1;
			memcpy(out, v, n);
			out[n] = 0;
			return true;
		}
		p = eol + 2;
	}
	return false;
}

static const char *reason_of(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 425: return "Too Early";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Status";
	}
}

/* Queue a response on c; body may be NULL. */
static void respond(conn_t *c, const req_t *r, int status,
		    const char *ctype, const char *body, size_t blen,
		    const char *extra)
{
	if (!body)
		blen = 0;
	buf_printf(&c->out, "HTTP/1.1 %d %s\r\nServer: tlcm-test-server\r\n"
		   "Content-Length: %zu\r\n", status, reason_of(status),
		   status == 204 ? (size_t)0 : blen);
	if (blen && ctype)
		buf_printf(&c->out, "Content-Type: %s\r\n", ctype);
	if (extra)
		buf_printf(&c->out, "%s", extra);
	if (!r->keep_alive) {
		buf_printf(&c->out, "Connection: close\r\n");
		c->close_after = true;
	}
	buf_printf(&c->out, "\r\n");
	c->drip_from = c->out.len;
	if (blen && status != 204)
		buf_add(&c->out, body, blen);
}

static void respond_json(conn_t *c, const req_t *r, int status,
			 const char *json, const char *extra)
{
	respond(c, r, status, "application/json", json, strlen(json), extra);
}

static void respond_error(conn_t *c, const req_t *r, int status,
			  const char *code, const char *detail)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "error", code);
	cJSON_AddStringToObject(o, "detail", detail);
	char *s = cJSON_PrintUnformatted(o);
	respond_json(c, r, status, s, NULL);
	free(s);
	cJSON_Delete(o);
}

static bool valid_uuid(const char *s)
{
	if (strlen(s) != ID_LEN)
		return false;
	for (int i = 0; i < ID_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-'
			 : !(isdigit((unsigned char)s[i]) ||
			     (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return true;
}

static bool valid_device(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

static void token_new(char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t a = fnv64(&rng, sizeof rng) ^ wall_ns();
	rnd01();
	uint64_t b = rng ^ (uint64_t)getpid();
	snprintf(out, cap, "tlcd_");
	size_t at = 5;
	for (int i = 0; i < 16 && at + 1 < cap; i++)
		out[at++] = hex[(a >> (4 * i)) & 15];
	for (int i = 0; i < 16 && at + 1 < cap; i++)
		out[at++] = hex[(b >> (4 * i)) & 15];
	out[at] = 0;
}

/* The device this request proves to be (Bearer token of X-Device-ID, or
 * the fleet's API key with X-Device-ID); NULL when it proves nothing. */
static const char *authed(const req_t *r, char *dev, size_t cap)
{
	char auth[512], key[256];
	if (!hdr(r, "X-Device-ID", dev, cap) || !valid_device(dev))
		return NULL;
	if (S.api_key && hdr(r, "X-API-Key", key, sizeof key) &&
	    !strcmp(key, S.api_key))
		return dev;
	if (hdr(r, "Authorization", auth, sizeof auth) &&
	    !strncmp(auth, "Bearer ", 7)) {
		device_t *d = dev_find(dev);
		if (d && !strcmp(d->token, auth + 7))
			return dev;
	}
	return NULL;
}

/* Apply the fault f to a request whose normal answer is already queued on
 * c (done is whether it was applied: the package stored, etc.). */
static void apply_fault(conn_t *c, const req_t *r, const fault_t *f,
			const char *id)
{
	S.faults++;
	log_line("fault %s %s %s", f->route, f->kind == F_STATUS
		 ? "status" : fault_names[f->kind], id ? id : "-");
	switch (f->kind) {
	case F_STATUS: {
		c->out.len = 0;
		char extra[64] = "";
		if (f->retry_after >= 0)
			snprintf(extra, sizeof extra, "Retry-After: %d\r\n",
				 f->retry_after);
		char detail[64];
		snprintf(detail, sizeof detail, "injected status %d",
			 f->status);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "error", "injected");
		cJSON_AddStringToObject(o, "detail", detail);
		char *s = cJSON_PrintUnformatted(o);
		respond(c, r, f->status, "application/json", s, strlen(s),
			extra);
		free(s);
		cJSON_Delete(o);
		break;
	}
	case F_STALL:
		c->due_ns = now_ns() + (uint64_t)f->ms * 1000000u;
		break;
	case F_SLOW:
		c->drip_ms = f->ms ? f->ms : 1;
		break;
	case F_RESET: /* before anything was stored: a reset */
		c->out.len = 0;
		c->rst_now = true;
		break;
	case F_LOST: /* stored, then the connection closes unanswered */
		c->out.len = 0;
		c->close_after = true;
		break;
	case F_GARBAGE:
		c->out.len = 0;
		respond(c, r, 200, "application/json", "{\"id\": \"tr", 10,
			NULL);
		break;
	case F_WRONGID: {
		c->out.len = 0;
		char b[128];
		snprintf(b, sizeof b, "{\"id\":\"%s\",\"status\":\"stored\"}",
			 "00000000-0000-7000-8000-000000000000");
		respond_json(c, r, 200, b, NULL);
		break;
	}
	case F_PARTIAL: {
		/* headers promise more than is sent, then the cut */
		c->out.len = 0;
		buf_printf(&c->out, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
			   "Content-Type: application/json\r\n\r\n{\"id\":");
		c->close_after = true;
		break;
	}
	}
}

#ifdef TLCM_HAVE_PACKAGE_FB
/* A body that says it is a package (TPKG) must be one, for the id it
 * claims and the device that sends it. 0, or the status to answer. */
static int check_package(const req_t *r, const char *key, const char *dev,
			 char *why, size_t cap)
{
	if (r->body_len < 8 || memcmp(r->body + 4, "TPKG", 4))
		return 0; /* opaque test bytes */
	/* the verifier wants the buffer aligned as it was built (8) */
	void *b = xrealloc(NULL, r->body_len);
	memcpy(b, r->body, r->body_len);
	const char *vw;
	int st = 0;
	if (tlcm_Package_verify_as_root(b, r->body_len, &vw)) {
		snprintf(why, cap, "not a valid package: %s", vw);
		st = 400;
	} else {
		tlcm_Package_table_t t = tlcm_Package_as_root(b);
		const char *id = tlcm_Package_id(t);
		const char *d = tlcm_Package_device_id(t);
		if (!id || strcmp(id, key)) {
			snprintf(why, cap, "package id %s but Idempotency-Key "
				 "%s", id ? id : "(none)", key);
			st = 400;
		} else if (!d || strcmp(d, dev)) {
			snprintf(why, cap, "package of device %s sent by %s",
				 d ? d : "(none)", dev);
			st = 403;
		}
	}
	free(b);
	return st;
}
#endif

static void on_packages(conn_t *c, const req_t *r)
{
	char key[128] = "", dev[80], ctype[128] = "", why[256];
	fault_t f;
	bool faulty = fault_take("packages", &f);
	hdr(r, "Idempotency-Key", key, sizeof key);
	bool have_key = valid_uuid(key);
	if (have_key) {
		S.attempts++;
		log_line("attempt %s", key);
	}
	if (faulty && f.kind == F_RESET) {
		apply_fault(c, r, &f, have_key ? key : NULL);
		return;
	}
	int status = 0;
	const char *code = "";
	if (!authed(r, dev, sizeof dev)) {
		status = 401, code = "unauthorized";
		snprintf(why, sizeof why, "no valid token or API key for "
			 "X-Device-ID");
	} else if (!have_key) {
		status = 400, code = "bad_request";
		snprintf(why, sizeof why, "Idempotency-Key must be a UUID "
			 "(36 lower-case characters), got '%s'", key);
	} else if (!hdr(r, "Content-Type", ctype, sizeof ctype) ||
		   strcmp(ctype, "application/x-tinylcm-package")) {
		status = 400, code = "bad_request";
		snprintf(why, sizeof why, "Content-Type must be "
			 "application/x-tinylcm-package, got '%s'", ctype);
	} else if (!r->body_len) {
		status = 400, code = "bad_request";
		snprintf(why, sizeof why, "empty body");
	}
#ifdef TLCM_HAVE_PACKAGE_FB
	if (!status && (status = check_package(r, key, dev, why, sizeof why)))
		code = status == 403 ? "forbidden" : "bad_request";
#endif
	if (status) {
		S.rejects++;
		log_line("reject %d %s %s", status, have_key ? key : "-", why);
		respond_error(c, r, status, code, why);
		if (faulty)
			apply_fault(c, r, &f, have_key ? key : NULL);
		return;
	}
	/* an injected error status means the core did not store it */
	bool store = !(faulty && f.kind == F_STATUS);
	const char *st = "stored";
	if (store) {
		if (id_known(key)) {
			st = "duplicate";
			S.duplicates++;
			log_line("duplicate %s", key);
		} else {
			id_add(key);
			S.stored++;
			log_line("stored %s %s %zu %016" PRIx64, key, dev,
				 r->body_len, fnv64(r->body, r->body_len));
		}
	}
	char b[160];
	snprintf(b, sizeof b, "{\"id\":\"%s\",\"status\":\"%s\"}", key, st);
	respond_json(c, r, 200, b, NULL);
	if (faulty)
		apply_fault(c, r, &f, key);
}

static void on_register(conn_t *c, const req_t *r)
{
	fault_t f;
	bool faulty = fault_take("register", &f);
	if (faulty && (f.kind == F_STATUS || f.kind == F_RESET)) {
		/* the core failed before registering anything */
		apply_fault(c, r, &f, NULL);
		return;
	}
	cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "device_id");
	if (!cJSON_IsString(d) || !valid_device(d->valuestring)) {
		respond_error(c, r, 400, "bad_request", "device_id missing or "
			      "not [A-Za-z0-9._-]{1,64}");
	} else {
		char dev[80];
		const char *who = authed(r, dev, sizeof dev);
		bool known = dev_find(d->valuestring) != NULL;
		if (known && !(who && !strcmp(who, d->valuestring))) {
			respond_error(c, r, 409, "device_exists",
				      "device registered; prove it with its "
				      "token or the fleet's API key");
		} else {
			char tok[64], b[256];
			token_new(tok, sizeof tok);
			dev_set(d->valuestring, tok);
			log_line("register %s %s", d->valuestring, tok);
			snprintf(b, sizeof b, "{\"device_id\":\"%s\","
				 "\"token\":\"%s\",\"registered_ns\":%" PRIu64
				 "}", d->valuestring, tok, wall_ns());
			respond_json(c, r, known ? 200 : 201, b, NULL);
		}
	}
	cJSON_Delete(j);
	if (faulty)
		apply_fault(c, r, &f, NULL);
}

static void on_feedback(conn_t *c, const req_t *r, const char *device,
			bool ack)
{
	fault_t f;
	bool faulty = fault_take(ack ? "ack" : "feedback", &f);
	if (faulty && (f.kind == F_STATUS || f.kind == F_RESET)) {
		apply_fault(c, r, &f, NULL);
		return;
	}
	char dev[80];
	if (!authed(r, dev, sizeof dev)) {
		respond_error(c, r, 401, "unauthorized", "no valid token");
	} else if (strcmp(dev, device)) {
		respond_error(c, r, 403, "forbidden", "another device's "
			      "feedback");
	} else if (!ack) {
		long limit = 256;
		const char *q = strstr(r->query, "limit=");
		if (q)
			limit = atol(q + 6);
		if (limit < 1)
			limit = 1;
		cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(
							 o, "labels");
		long n = 0;
		bool more = false;
		for (size_t i = 0; i < S.nfb; i++) {
			label_t *l = &S.fb[i];
			if (l->acked || strcmp(l->device, device))
				continue;
			if (n == limit) {
				more = true;
				break;
			}
			cJSON *e = cJSON_CreateObject();
			cJSON_AddStringToObject(e, "id", l->id);
			char num[32];
			snprintf(num, sizeof num, "%" PRIu64, l->frame);
			cJSON_AddRawToObject(e, "frame_id", num);
			cJSON_AddStringToObject(e, "label", l->label);
			cJSON_AddStringToObject(e, "source", l->source);
			snprintf(num, sizeof num, "%" PRIu64, l->created_ns);
			cJSON_AddRawToObject(e, "created_ns", num);
			cJSON_AddItemToArray(a, e);
			n++;
		}
		cJSON_AddBoolToObject(o, "more", more);
		char *s = cJSON_PrintUnformatted(o);
		respond_json(c, r, 200, s, NULL);
		free(s);
		cJSON_Delete(o);
	} else {
		cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
		const cJSON *ids = cJSON_GetObjectItemCaseSensitive(j, "ids");
		if (!cJSON_IsArray(ids)) {
			respond_error(c, r, 400, "bad_request", "want "
				      "{\"ids\": [...]}");
		} else {
			int n = 0;
			const cJSON *e;
			cJSON_ArrayForEach(e, ids) {
				if (!cJSON_IsString(e))
					continue;
				label_t *l = fb_find(device, e->valuestring);
				if (l && !l->acked) {
					l->acked = true;
					n++;
					log_line("ack %s %s", device, l->id);
				}
			}
			char b[64];
			snprintf(b, sizeof b, "{\"acked\":%d}", n);
			respond_json(c, r, 200, b, NULL);
		}
		cJSON_Delete(j);
	}
	if (faulty)
		apply_fault(c, r, &f, NULL);
}

static void on_api(conn_t *c, const req_t *r)
{
	const char *p = r->path;
	if (strncmp(p, "/api/v1/", 8)) {
		respond_error(c, r, 404, "not_found", "no such path");
		return;
	}
	p += 7;
	bool get = !strcmp(r->method, "GET"), post = !strcmp(r->method,
							     "POST");
	if (!hdr(r, "User-Agent", S.user_agent, sizeof S.user_agent))
		S.user_agent[0] = 0;
	if (!hdr(r, "Accept-Encoding", S.accept_encoding,
		 sizeof S.accept_encoding))
		S.accept_encoding[0] = 0;
	if (!strcmp(p, "/ping") && get) {
		fault_t f;
		bool faulty = fault_take("ping", &f);
		respond(c, r, 204, NULL, NULL, 0, NULL);
		if (S.ping_delay_ms)
			c->due_ns = now_ns() +
				    (uint64_t)S.ping_delay_ms * 1000000u;
		if (faulty)
			apply_fault(c, r, &f, NULL);
	} else if (!strcmp(p, "/packages") && post) {
		on_packages(c, r);
	} else if (!strcmp(p, "/devices/register") && post) {
		on_register(c, r);
	} else if (!strncmp(p, "/devices/", 9)) {
		char dev[80];
		const char *s = p + 9, *sl = strchr(s, '/');
		size_t n = sl ? (size_t)(sl - s) : 0;
		if (!sl || n >= sizeof dev) {
			respond_error(c, r, 404, "not_found", "no such path");
			return;
		}
		memcpy(dev, s, n);
		dev[n] = 0;
		if (!strcmp(sl, "/feedback") && get)
			on_feedback(c, r, dev, false);
		else if (!strcmp(sl, "/feedback/ack") && post)
			on_feedback(c, r, dev, true);
		else
			respond_error(c, r, 404, "not_found", "no such path");
	} else {
		respond_error(c, r, 404, "not_found", "no such path");
	}
}

/* ---- the control port ---------------------------------------------------- */

static void on_control(conn_t *c, const req_t *r)
{
	char *body = xstrndup(r->body, r->body_len);
	char why[256] = "";
	if (!strcmp(r->path, "/_test/faults") &&
	    !strcmp(r->method, "POST")) {
		int added = 0;
		for (char *l = strtok(body, "\n"); l; l = strtok(NULL, "\n")) {
			while (*l == ' ')
				l++;
			if (!*l || *l == '#')
				continue;
			if (nfaults == sizeof faults / sizeof faults[0]) {
				snprintf(why, sizeof why, "too many faults");
				break;
			}
			if (fault_parse(l, &faults[nfaults], why, sizeof why))
				break;
			nfaults++;
			added++;
		}
		if (why[0])
			respond_error(c, r, 400, "bad_fault", why);
		else {
			char b[64];
			snprintf(b, sizeof b, "{\"added\":%d}", added);
			respond_json(c, r, 200, b, NULL);
		}
	} else if (!strcmp(r->path, "/_test/faults") &&
		   !strcmp(r->method, "DELETE")) {
		nfaults = 0;
		respond_json(c, r, 200, "{}", NULL);
	} else if (!strcmp(r->path, "/_test/config") &&
		   !strcmp(r->method, "POST")) {
		/* key=value lines: ping_delay_ms, chaos, offline */
		for (char *l = strtok(body, "\n"); l; l = strtok(NULL, "\n")) {
			char k[64];
			double v;
			if (sscanf(l, "%63[^=]=%lf", k, &v) != 2) {
				snprintf(why, sizeof why, "want key=value: %s",
					 l);
				break;
			}
			if (!strcmp(k, "ping_delay_ms"))
				S.ping_delay_ms = (unsigned)v;
			else if (!strcmp(k, "chaos"))
				S.chaos = v;
			else if (!strcmp(k, "offline"))
				set_offline(v != 0);
			else {
				snprintf(why, sizeof why, "unknown key %s", k);
				break;
			}
		}
		if (why[0])
			respond_error(c, r, 400, "bad_config", why);
		else
			respond_json(c, r, 200, "{}", NULL);
	} else if (!strcmp(r->path, "/_test/feedback") &&
		   !strcmp(r->method, "POST")) {
		/* lines: DEVICE ID FRAME LABEL [SOURCE] */
		int n = 0;
		for (char *l = strtok(body, "\n"); l; l = strtok(NULL, "\n")) {
			char dev[80], id[80], label[128], src[64] = "test";
			uint64_t frame;
			int k = sscanf(l, "%79s %79s %" SCNu64 " %127s %63s",
				       dev, id, &frame, label, src);
			if (k < 4) {
				snprintf(why, sizeof why, "want DEVICE ID "
					 "FRAME LABEL [SOURCE]: %s", l);
				break;
			}
			uint64_t t = wall_ns();
			fb_add(dev, id, frame, label, src, t);
			log_line("feedback %s %s %" PRIu64 " %s %s %" PRIu64,
				 dev, id, frame, label, src, t);
			n++;
		}
		if (why[0])
			respond_error(c, r, 400, "bad_feedback", why);
		else {
			char b[64];
			snprintf(b, sizeof b, "{\"added\":%d}", n);
			respond_json(c, r, 200, b, NULL);
		}
	} else if (!strcmp(r->path, "/_test/revoke") &&
		   !strcmp(r->method, "POST")) {
		/* forget a device: its token gets 401, it may register anew */
		body[strcspn(body, "\r\n")] = 0;
		device_t *d = dev_find(body);
		if (d) {
			free(d->device);
			free(d->token);
			*d = S.dev[--S.ndev];
			log_line("revoke %s", body);
		}
		respond_json(c, r, 200, d ? "{\"revoked\":1}"
					  : "{\"revoked\":0}", NULL);
	} else if (!strcmp(r->path, "/_test/stats")) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "requests", (double)S.requests);
		cJSON_AddNumberToObject(o, "stored", (double)S.stored);
		cJSON_AddNumberToObject(o, "duplicates", (double)S.duplicates);
		cJSON_AddNumberToObject(o, "attempts", (double)S.attempts);
		cJSON_AddNumberToObject(o, "faults", (double)S.faults);
		cJSON_AddNumberToObject(o, "rejects", (double)S.rejects);
		cJSON_AddNumberToObject(o, "connections", (double)S.conns);
		cJSON_AddNumberToObject(o, "bytes_in", (double)S.bytes_in);
		cJSON_AddNumberToObject(o, "faults_queued", (double)nfaults);
		cJSON_AddBoolToObject(o, "offline", S.offline);
		cJSON *br = cJSON_AddObjectToObject(o, "by_route");
		for (size_t i = 0; i < 5; i++)
			cJSON_AddNumberToObject(br, ROUTES[i],
						(double)S.route[i]);
		cJSON_AddStringToObject(o, "user_agent", S.user_agent);
		cJSON_AddStringToObject(o, "accept_encoding",
					S.accept_encoding);
		char *b = cJSON_PrintUnformatted(o);
		respond_json(c, r, 200, b, NULL);
		free(b);
		cJSON_Delete(o);
	} else {
		respond_error(c, r, 404, "not_found", "control: no such path");
	}
	free(body);
}

/* ---- the event loop ------------------------------------------------------ */

/* Parse one request from c->in when complete; 1 handled, 0 need more, -1
 * the connection must close (answered when possible). */
static int try_request(conn_t *c)
{
	char *end = memmem(c->in.p, c->in.len, "\r\n\r\n", 4);
	req_t r = {0};
	if (!end) {
		if (c->in.len > MAX_HEAD) {
			r.keep_alive = false;
			respond_error(c, &r, 431, "header_too_large",
				      "request head over 16 KiB");
			return -1;
		}
		return 0;
	}
	size_t hlen = (size_t)(end - c->in.p) + 4;
	r.head = c->in.p;
	r.head_len = hlen - 2;
	char target[1024], version[16];
	if (sscanf(c->in.p, "%15s %1023s %15s", r.method, target,
		   version) != 3) {
		respond_error(c, &r, 400, "bad_request", "bad request line");
		c->close_after = true;
		return -1;
	}
	char *q = strchr(target, '?');
	if (q) {
		snprintf(r.query, sizeof r.query, "%s", q + 1);
		*q = 0;
	}
	snprintf(r.path, sizeof r.path, "%s", target);
	char v[128];
	r.keep_alive = strcmp(version, "HTTP/1.0") != 0;
	if (hdr(&r, "Connection", v, sizeof v))
		r.keep_alive = strcasecmp(v, "close") != 0 &&
			       (r.keep_alive || !strcasecmp(v, "keep-alive"));
	size_t clen = 0;
	if (hdr(&r, "Transfer-Encoding", v, sizeof v)) {
		r.keep_alive = false;
		respond_error(c, &r, 411, "length_required", "chunked bodies "
			      "are not supported: send Content-Length");
		return -1;
	}
	if (hdr(&r, "Content-Length", v, sizeof v))
		clen = strtoull(v, NULL, 10);
	bool expect = hdr(&r, "Expect", v, sizeof v) &&
		      !strcasecmp(v, "100-continue");
	if (clen > S.max_body) {
		/* with Expect the client waits for this answer; otherwise it
		 * is sending the body: take it (when not absurd) so that the
		 * answer is read rather than cut by a reset */
		if (!expect && clen <= 64 * S.max_body &&
		    c->in.len < hlen + clen)
			return 0;
		char why[128];
		snprintf(why, sizeof why, "body of %zu bytes over the limit "
			 "of %zu", clen, S.max_body);
		S.rejects++;
		char key[128] = "-";
		hdr(&r, "Idempotency-Key", key, sizeof key);
		log_line("reject 413 %s %s", key, why);
		r.keep_alive = !expect && c->in.len >= hlen + clen;
		respond_error(c, &r, 413, "too_large", why);
		if (!r.keep_alive)
			return -1;
		buf_drop(&c->in, hlen + clen);
		c->busy = true;
		return 1;
	}
	if (c->in.len < hlen + clen) {
		if (!c->continued && expect) {
			buf_printf(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
			c->continued = true;
		}
		return 0;
	}
	r.body = c->in.p + hlen;
	r.body_len = clen;
	S.requests++;
	S.bytes_in += hlen + clen;
	c->busy = true;
	if (c->control)
		on_control(c, &r);
	else
		on_api(c, &r);
	buf_drop(&c->in, hlen + clen);
	c->continued = false;
	return 1;
}

/* Write what c may write now. -1: closed. */
static int flush_out(conn_t *c, uint64_t now)
{
	if (c->rst_now) {
		conn_close(c, true);
		return -1;
	}
	if (c->due_ns > now)
		return 0;
	while (c->out_off < c->out.len) {
		size_t n = c->out.len - c->out_off;
		if (c->drip_ms && c->out_off >= c->drip_from) {
			n = 1;
			c->due_ns = now + (uint64_t)c->drip_ms * 1000000u;
		} else if (c->drip_ms) {
			n = c->drip_from - c->out_off; /* the head at once */
		}
		ssize_t w = send(c->fd, c->out.p + c->out_off, n,
				 MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			conn_close(c, false);
			return -1;
		}
		c->out_off += (size_t)w;
		if (c->drip_ms && c->out_off >= c->drip_from &&
		    c->out_off < c->out.len)
			return 0;
	}
	c->out.len = c->out_off = 0;
	c->due_ns = 0;
	c->drip_ms = 0;
	c->busy = false;
	if (c->close_after) {
		conn_close(c, false);
		return -1;
	}
	return 0;
}

static void serve_conn(conn_t *c, short rev, uint64_t now)
{
	if (rev & (POLLIN | POLLHUP | POLLERR)) {
		char tmp[65536];
		for (;;) {
			ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
			if (n > 0) {
				buf_add(&c->in, tmp, (size_t)n);
				if ((size_t)n < sizeof tmp)
					break;
				continue;
			}
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			/* closed by the peer (or an error): a request not
			 * yet complete is dropped with it */
			conn_close(c, false);
			return;
		}
	}
	/* one request at a time: the next waits until this answer is out */
	while (c->fd >= 0 && !c->busy && c->in.len) {
		int rc = try_request(c);
		if (rc == 0)
			break;
		if (rc < 0) {
			c->close_after = true;
			break;
		}
		if (flush_out(c, now) < 0)
			return;
	}
	if (c->fd >= 0)
		flush_out(c, now);
}

static volatile sig_atomic_t stop;
static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void accept_all(int lfd, bool control)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		conn_t *c = NULL;
		for (size_t i = 0; i < MAX_CONNS && !c; i++)
			if (conns[i].fd < 0)
				c = &conns[i];
		if (!c) {
			close(fd);
			continue;
		}
		memset(c, 0, sizeof *c);
		c->fd = fd;
		c->control = control;
		if (!control)
			S.conns++;
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tlcm-test-server [options]\n"
		"  --port N          data port (default 0: any free one)\n"
		"  --control-port N  control port (default 0: any free one)\n"
		"  --port-file F     write \"DATA_PORT CONTROL_PORT\\n\" to F "
		"once listening\n"
		"  --state F         append-only event log, replayed at start\n"
		"  --fsync           fdatasync the log after every line\n"
		"  --api-key KEY     the fleet's API key (X-API-Key)\n"
		"  --max-body BYTES  larger bodies get 413 (default 1 MiB)\n"
		"  --fault RULE      as POST /_test/faults (repeatable)\n"
		"  --chaos P         random transient fault on a package "
		"request with probability P\n"
		"  --seed N          for --chaos\n"
		"  --ping-delay MS   answer /ping after MS\n");
}

int main(int argc, char **argv)
{
	int port = 0, cport = 0;
	const char *port_file = NULL, *state = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--fsync")) {
			S.fsync_log = true;
			continue;
		}
		if (!v) {
			usage(stderr);
			return 2;
		}
		i++;
		if (!strcmp(a, "--port"))
			port = atoi(v);
		else if (!strcmp(a, "--control-port"))
			cport = atoi(v);
		else if (!strcmp(a, "--port-file"))
			port_file = v;
		else if (!strcmp(a, "--state"))
			state = v;
		else if (!strcmp(a, "--api-key"))
			S.api_key = v;
		else if (!strcmp(a, "--max-body"))
			S.max_body = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--chaos"))
			S.chaos = atof(v);
		else if (!strcmp(a, "--seed"))
			rng = strtoull(v, NULL, 10) * 0x9e3779b97f4a7c15ull | 1;
		else if (!strcmp(a, "--ping-delay"))
			S.ping_delay_ms = (unsigned)atoi(v);
		else if (!strcmp(a, "--fault")) {
			char why[256];
			if (nfaults == sizeof faults / sizeof faults[0] ||
			    fault_parse(v, &faults[nfaults], why, sizeof why))
				die("--fault '%s': %s", v, why);
			nfaults++;
		} else {
			usage(stderr);
			return 2;
		}
	}
	for (size_t i = 0; i < MAX_CONNS; i++)
		conns[i].fd = -1;
	if (state) {
		replay(state);
		S.log_fd = open(state, O_WRONLY | O_CREAT | O_APPEND |
				O_CLOEXEC, 0644);
		if (S.log_fd < 0)
			die("%s: %s", state, strerror(errno));
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	lfd_data = listen_on(port, &data_port);
	lfd_ctl = listen_on(cport, &ctl_port);
	if (port_file) {
		char tmp[4096], line[64];
		snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
		int n = snprintf(line, sizeof line, "%d %d\n", data_port,
				 ctl_port);
		FILE *f = fopen(tmp, "w");
		if (!f || fwrite(line, 1, (size_t)n, f) != (size_t)n ||
		    fclose(f) || rename(tmp, port_file))
			die("%s: %s", port_file, strerror(errno));
	}
	fprintf(stderr, "tlcm-test-server: data 127.0.0.1:%d control "
		"127.0.0.1:%d, %zu packages known\n", data_port, ctl_port,
		S.nids);
	static struct pollfd pfd[MAX_CONNS + 2];
	static conn_t *who[MAX_CONNS + 2];
	while (!stop) {
		size_t n = 0;
		uint64_t now = now_ns(), next = UINT64_MAX;
		if (lfd_data >= 0)
			pfd[n] = (struct pollfd){lfd_data, POLLIN, 0},
			who[n++] = NULL;
		pfd[n] = (struct pollfd){lfd_ctl, POLLIN, 0}, who[n++] = NULL;
		for (size_t i = 0; i < MAX_CONNS; i++) {
			conn_t *c = &conns[i];
			if (c->fd < 0)
				continue;
			short ev = POLLIN;
			bool waiting = c->due_ns > now;
			if (waiting && c->due_ns < next)
				next = c->due_ns;
			if (!waiting && (c->out_off < c->out.len || c->rst_now))
				ev |= POLLOUT;
			pfd[n] = (struct pollfd){c->fd, ev, 0};
			who[n++] = c;
		}
		int to = next == UINT64_MAX ? 200
			 : (int)((next - now) / 1000000u) + 1;
		int rc = poll(pfd, n, to);
		if (rc < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		now = now_ns();
		for (size_t i = 0; i < n; i++) {
			if (!who[i]) {
				if (pfd[i].revents & POLLIN)
					accept_all(pfd[i].fd,
						   pfd[i].fd == lfd_ctl);
				continue;
			}
			conn_t *c = who[i];
			if (c->fd < 0 || c->fd != pfd[i].fd)
				continue;
			if (pfd[i].revents || c->due_ns ||
			    (c->busy && c->due_ns <= now))
				serve_conn(c, pfd[i].revents, now);
		}
	}
	for (size_t i = 0; i < MAX_CONNS; i++)
		conn_close(&conns[i], false);
	fprintf(stderr, "tlcm-test-server: %" PRIu64 " requests, %" PRIu64
		" stored, %" PRIu64 " duplicates, %" PRIu64 " faults\n",
		S.requests, S.stored, S.duplicates, S.faults);
	return 0;
}
