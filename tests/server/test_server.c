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
 * "stored ID ...", "duplicate ID", "attempt ID", "register DEV TOKEN
 * [SECRET_SHA256]",
 * "feedback ...", "ack ...", "fault ...", "reject ..."), replayed at start,
 * so a restarted server still de-duplicates and a test can check that
 * every package was stored exactly once. See tests/server/README.md.
 *
 * Model updates (docs/api.md): POST /models/available answers with the
 * offers a test put in with POST /_test/models — as they are, rollbacks,
 * bad signatures and all, so the device's checks can be tested — and
 * GET /models/NAME/VERSION serves the file the test named, with Range
 * (206, 416), If-Range and ETag/If-None-Match (304). Faults for these
 * routes (`models`, `download`) include `cut=BYTES` (the body stops
 * after BYTES, the connection closes) and `rate=BYTES_PER_S`.
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

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

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
	char *secret; /* SHA-256 hex of its registration secret, or NULL */
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
	const char *keep_dir; /* --keep: bodies of stored packages */
	/* settings */
	const char *api_key;
	size_t max_body;
	unsigned ping_delay_ms;
	double chaos;
	bool offline;
	char user_agent[256], accept_encoding[128]; /* the last request's */
	uint64_t route[7]; /* requests per route (ROUTES) */
	/* model updates: the offers (a cJSON array) and the files served */
	cJSON *offers;
	char **serve_path, **serve_file;
	size_t nserve;
	uint64_t download_sent; /* body bytes of downloads written */
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

/* secret: the SHA-256 hex of the device's registration secret; NULL
 * keeps the one it has */
static void dev_set(const char *device, const char *token,
		    const char *secret)
{
	device_t *d = dev_find(device);
	if (!d) {
		S.dev = xrealloc(S.dev, (S.ndev + 1) * sizeof *S.dev);
		d = &S.dev[S.ndev++];
		d->device = strdup(device);
		d->token = NULL;
		d->secret = NULL;
	}
	free(d->token);
	d->token = strdup(token);
	if (secret) {
		free(d->secret);
		d->secret = strdup(secret);
	}
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
			if (sscanf(line, "register %*s %*s %255s", c) != 1)
				c[0] = 0;
			dev_set(a, b, c[0] ? c : NULL);
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
       F_PARTIAL, F_CUT, F_RATE };
static const char *const fault_names[] = {"status", "stall", "slow", "reset",
					  "lost", "garbage", "wrongid",
					  "partial", "cut", "rate"};

typedef struct {
	char route[16];  /* ping register packages feedback ack any */
	int kind;
	int status;      /* F_STATUS */
	int retry_after; /* -1: no header; else seconds */
	unsigned ms;     /* stall / slow */
	uint64_t bytes;  /* cut: body bytes sent; rate: bytes per second */
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
					     "feedback", "ack", "models",
					     "download", "any"};
	bool ok = false;
	for (size_t i = 0; i < 8; i++)
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
	} else if (!strncmp(act, "cut=", 4)) {
		f->kind = F_CUT;
		f->bytes = strtoull(act + 4, NULL, 10);
	} else if (!strncmp(act, "rate=", 5)) {
		f->kind = F_RATE;
		f->bytes = strtoull(act + 5, NULL, 10);
		if (!f->bytes) {
			snprintf(why, cap, "rate=0");
			return -1;
		}
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
				     "feedback", "ack", "models", "download"};
#define NROUTES (sizeof ROUTES / sizeof ROUTES[0])

/* The fault for a request on route, consumed; NULL: none. chaos picks a
 * random transient one for packages. */
static bool fault_take(const char *route, fault_t *out)
{
	for (size_t i = 0; i < NROUTES; i++)
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
	unsigned drip_ms;    /* slow: drip_bytes of the body per drip_ms */
	size_t drip_bytes;
	bool download;       /* count the body in S.download_sent */
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
	case 206: return "Partial Content";
	case 304: return "Not Modified";
	case 416: return "Range Not Satisfiable";
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

/* ---- registration secrets (docs/api.md): only their SHA-256 is kept ---- */

static uint32_t ror32(uint32_t x, unsigned n)
{
	return x >> n | x << (32 - n);
}

/* FIPS 180-4 SHA-256 of p[0..n) as 64 lower-case hex characters. */
static void sha256_hex(const void *p, size_t n, char out[65])
{
	static const uint32_t k[64] = {
		0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b,
		0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
		0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7,
		0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
		0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152,
		0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
		0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
		0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
		0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
		0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
		0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
		0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
		0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
	uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
			 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	const uint8_t *b = p;
	size_t total = (n + 9 + 63) / 64 * 64;
	for (size_t off = 0; off < total; off += 64) {
		uint8_t blk[64];
		for (size_t i = 0; i < 64; i++) {
			size_t at = off + i;
			blk[i] = at < n ? b[at] : at == n ? 0x80 : 0;
		}
		if (off + 64 == total)
			for (int i = 0; i < 8; i++)
				blk[63 - i] = (uint8_t)((uint64_t)n * 8 >>
							(8 * i));
		uint32_t w[64];
		for (int i = 0; i < 16; i++)
			w[i] = (uint32_t)blk[4 * i] << 24 |
			       (uint32_t)blk[4 * i + 1] << 16 |
			       (uint32_t)blk[4 * i + 2] << 8 | blk[4 * i + 3];
		for (int i = 16; i < 64; i++)
			w[i] = w[i - 16] + w[i - 7] +
			       (ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^
				w[i - 15] >> 3) +
			       (ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^
				w[i - 2] >> 10);
		uint32_t v[8];
		memcpy(v, h, sizeof v);
		for (int i = 0; i < 64; i++) {
			uint32_t t1 = v[7] + (ror32(v[4], 6) ^ ror32(v[4], 11) ^
					      ror32(v[4], 25)) +
				      ((v[4] & v[5]) ^ (~v[4] & v[6])) + k[i] +
				      w[i];
			uint32_t t2 = (ror32(v[0], 2) ^ ror32(v[0], 13) ^
				       ror32(v[0], 22)) +
				      ((v[0] & v[1]) ^ (v[0] & v[2]) ^
				       (v[1] & v[2]));
			memmove(v + 1, v, 7 * sizeof *v);
			v[4] += t1;
			v[0] = t1 + t2;
		}
		for (int i = 0; i < 8; i++)
			h[i] += v[i];
	}
	for (int i = 0; i < 8; i++)
		snprintf(out + 8 * i, 9, "%08x", h[i]);
}

/* 64 hex characters (32 random bytes), as docs/api.md asks */
static bool valid_secret(const char *s)
{
	if (strlen(s) != 64)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!isxdigit((unsigned char)s[i]))
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
		c->drip_bytes = 1;
		break;
	case F_RATE: /* in 10 ms steps */
		c->drip_ms = 10;
		c->drip_bytes = f->bytes / 100 ? (size_t)(f->bytes / 100) : 1;
		break;
	case F_CUT: /* the head and the first bytes of the body, then the
		       connection closes: a transfer cut short */
		if (c->out.len > c->drip_from + f->bytes)
			c->out.len = c->drip_from + (size_t)f->bytes;
		c->close_after = true;
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

/* --keep DIR: the body of a package stored for the first time, as
 * DIR/ID (written to DIR/.ID.tmp, then renamed: a reader sees whole
 * files only), for tools/demo-sync to decode. */
static void keep_body(const char *id, const void *body, size_t len)
{
	if (!S.keep_dir)
		return;
	char tmp[1200], path[1200];
	snprintf(tmp, sizeof tmp, "%s/.%s.tmp", S.keep_dir, id);
	snprintf(path, sizeof path, "%s/%s", S.keep_dir, id);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, body, len) != (ssize_t)len || close(fd) ||
	    rename(tmp, path))
		die("--keep: %s: %s", path, strerror(errno));
}

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
			keep_body(key, r->body, r->body_len);
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
	const cJSON *sec = cJSON_GetObjectItemCaseSensitive(j, "secret");
	char hash[65] = "";
	if (cJSON_IsString(sec) && valid_secret(sec->valuestring))
		sha256_hex(sec->valuestring, strlen(sec->valuestring), hash);
	if (!cJSON_IsString(d) || !valid_device(d->valuestring)) {
		respond_error(c, r, 400, "bad_request", "device_id missing or "
			      "not [A-Za-z0-9._-]{1,64}");
	} else if (sec && !hash[0]) {
		respond_error(c, r, 400, "bad_request", "secret: want 64 hex "
			      "characters (32 random bytes)");
	} else {
		char dev[80];
		const char *who = authed(r, dev, sizeof dev);
		device_t *known = dev_find(d->valuestring);
		/* a device proves itself with its token, the fleet's key, or
		 * the registration secret it registered with: the repeat of
		 * a registration whose answer was lost */
		bool proven = (who && !strcmp(who, d->valuestring)) ||
			      (known && known->secret && hash[0] &&
			       !strcmp(known->secret, hash));
		if (known && !proven) {
			respond_error(c, r, 409, "device_exists",
				      "device registered; prove it with its "
				      "token, its registration secret or the "
				      "fleet's API key");
		} else {
			char tok[64], b[256];
			token_new(tok, sizeof tok);
			dev_set(d->valuestring, tok, hash[0] ? hash : NULL);
			log_line("register %s %s%s%s", d->valuestring, tok,
				 hash[0] ? " " : "", hash);
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

/* ---- model updates ------------------------------------------------------ */

/* POST /models/available: the offers put in by the test whose name the
 * device runs, unfiltered (the device must refuse what it should). */
static void on_models(conn_t *c, const req_t *r)
{
	fault_t f;
	bool faulty = fault_take("models", &f);
	char dev[80];
	if (!authed(r, dev, sizeof dev)) {
		respond_error(c, r, 401, "unauthorized", "no valid token or "
			      "API key for X-Device-ID");
		if (faulty)
			apply_fault(c, r, &f, NULL);
		return;
	}
	cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "device_id");
	const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "models");
	if (!cJSON_IsString(d) || !cJSON_IsArray(ms)) {
		respond_error(c, r, 400, "bad_request", "want {\"device_id\","
			      " \"models\": [{\"name\", \"version\"}]}");
	} else if (strcmp(d->valuestring, dev)) {
		respond_error(c, r, 403, "forbidden", "device_id is not "
			      "X-Device-ID");
	} else {
		cJSON *out = cJSON_CreateObject();
		cJSON *ups = cJSON_AddArrayToObject(out, "updates");
		char line[900];
		size_t at = (size_t)snprintf(line, sizeof line, "available %s",
					     dev);
		const cJSON *m;
		cJSON_ArrayForEach(m, ms)
		{
			const cJSON *n = cJSON_GetObjectItemCaseSensitive(m,
									  "name");
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(
				m, "version");
			if (!cJSON_IsString(n))
				continue;
			if (at < sizeof line)
				at += (size_t)snprintf(line + at,
						       sizeof line - at,
						       " %s@%.0f", n->valuestring,
						       cJSON_IsNumber(v)
						       ? v->valuedouble : -1);
			const cJSON *o;
			cJSON_ArrayForEach(o, S.offers)
			{
				const cJSON *on =
					cJSON_GetObjectItemCaseSensitive(o,
									 "name");
				if (cJSON_IsString(on) &&
				    !strcmp(on->valuestring, n->valuestring))
					cJSON_AddItemToArray(
						ups, cJSON_Duplicate(o, true));
			}
		}
		log_line("%s -> %d", line, cJSON_GetArraySize(ups));
		char *b = cJSON_PrintUnformatted(out);
		respond_json(c, r, 200, b, NULL);
		free(b);
		cJSON_Delete(out);
	}
	cJSON_Delete(j);
	if (faulty)
		apply_fault(c, r, &f, NULL);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	buf_t b = {0};
	char tmp[65536];
	size_t n;
	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
		buf_add(&b, tmp, n);
	fclose(f);
	*len = b.len;
	return b.p ? b.p : xrealloc(NULL, 1);
}

/* GET /models/NAME/VERSION: the file served at this path, whole (200),
 * a range of it (206, "bytes=A-" or "bytes=A-B"), 416 past its end, 304
 * for a matching If-None-Match; If-Range with another ETag: whole. */
static void on_model_get(conn_t *c, const req_t *r)
{
	fault_t f;
	bool faulty = fault_take("download", &f);
	char dev[80], full[1100];
	snprintf(full, sizeof full, "%s", r->path);
	const char *file = NULL;
	for (size_t i = 0; i < S.nserve; i++)
		if (!strcmp(S.serve_path[i], full))
			file = S.serve_file[i];
	size_t len = 0;
	char *data = NULL;
	if (!authed(r, dev, sizeof dev)) {
		respond_error(c, r, 401, "unauthorized", "no valid token or "
			      "API key for X-Device-ID");
		log_line("download %s - 401 0", full);
	} else if (!file || !(data = slurp(file, &len))) {
		respond_error(c, r, 404, "not_found", "no such model version");
		log_line("download %s - 404 0", full);
	} else {
		char etag[40], v[256], extra[200];
		snprintf(etag, sizeof etag, "\"%016" PRIx64 "\"",
			 fnv64(data, len));
		bool ranged = hdr(r, "Range", v, sizeof v);
		unsigned long long a = 0, b = len ? len - 1 : 0;
		char ir[256];
		if (ranged && hdr(r, "If-Range", ir, sizeof ir) &&
		    strcmp(ir, etag))
			ranged = false;
		char inm[128];
		if (hdr(r, "If-None-Match", inm, sizeof inm) &&
		    !strcmp(inm, etag)) {
			snprintf(extra, sizeof extra, "ETag: %s\r\n", etag);
			respond(c, r, 304, NULL, NULL, 0, extra);
			log_line("download %s - 304 0", full);
		} else if (ranged && (sscanf(v, "bytes=%llu-%llu", &a, &b) < 1 ||
				      a >= len)) {
			snprintf(extra, sizeof extra, "Content-Range: bytes */"
				 "%zu\r\n", len);
			respond(c, r, 416, NULL, NULL, 0, extra);
			log_line("download %s %llu 416 0", full, a);
		} else {
			if (b >= len)
				b = len - 1;
			if (!ranged)
				a = 0, b = len ? len - 1 : 0;
			if (ranged)
				snprintf(extra, sizeof extra, "ETag: %s\r\n"
					 "Accept-Ranges: bytes\r\n"
					 "Content-Range: bytes %llu-%llu/%zu\r\n",
					 etag, a, b, len);
			else
				snprintf(extra, sizeof extra, "ETag: %s\r\n"
					 "Accept-Ranges: bytes\r\n", etag);
			size_t n = len ? (size_t)(b - a + 1) : 0;
			respond(c, r, ranged ? 206 : 200,
				"application/octet-stream", data + a, n, extra);
			c->download = true;
			log_line("download %s %llu %d %zu", full, a,
				 ranged ? 206 : 200, n);
		}
	}
	free(data);
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
	} else if (!strcmp(p, "/models/available") && post) {
		on_models(c, r);
	} else if (!strncmp(p, "/models/", 8) && get) {
		on_model_get(c, r);
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
			free(d->secret);
			*d = S.dev[--S.ndev];
			log_line("revoke %s", body);
		}
		respond_json(c, r, 200, d ? "{\"revoked\":1}"
					  : "{\"revoked\":0}", NULL);
	} else if (!strcmp(r->path, "/_test/models") &&
		   !strcmp(r->method, "POST")) {
		/* {"offer": [entries as /models/available answers them],
		 *  "serve": {"/api/v1/models/NAME/VERSION": "FILE", ...}};
		 * offer replaces the offers, serve adds (or replaces) paths */
		cJSON *j = cJSON_Parse(body);
		const cJSON *of = cJSON_GetObjectItemCaseSensitive(j, "offer");
		const cJSON *sv = cJSON_GetObjectItemCaseSensitive(j, "serve");
		if (!cJSON_IsObject(j) || (of && !cJSON_IsArray(of)) ||
		    (sv && !cJSON_IsObject(sv))) {
			respond_error(c, r, 400, "bad_models", "want {\"offer\":"
				      " [...], \"serve\": {PATH: FILE}}");
		} else {
			if (of) {
				cJSON_Delete(S.offers);
				S.offers = cJSON_Duplicate(of, true);
			}
			const cJSON *e;
			cJSON_ArrayForEach(e, sv)
			{
				if (!cJSON_IsString(e))
					continue;
				size_t i;
				for (i = 0; i < S.nserve; i++)
					if (!strcmp(S.serve_path[i], e->string))
						break;
				if (i == S.nserve) {
					S.serve_path = xrealloc(S.serve_path,
						(S.nserve + 1) * sizeof(char *));
					S.serve_file = xrealloc(S.serve_file,
						(S.nserve + 1) * sizeof(char *));
					S.serve_path[i] = strdup(e->string);
					S.serve_file[i] = NULL;
					S.nserve++;
				}
				free(S.serve_file[i]);
				S.serve_file[i] = strdup(e->valuestring);
			}
			char b[80];
			snprintf(b, sizeof b, "{\"offers\":%d,\"served\":%zu}",
				 cJSON_GetArraySize(S.offers), S.nserve);
			respond_json(c, r, 200, b, NULL);
		}
		cJSON_Delete(j);
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
		for (size_t i = 0; i < NROUTES; i++)
			cJSON_AddNumberToObject(br, ROUTES[i],
						(double)S.route[i]);
		cJSON_AddNumberToObject(o, "download_sent",
					(double)S.download_sent);
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
			if (n > c->drip_bytes)
				n = c->drip_bytes;
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
		if (c->download && c->out_off + (size_t)w > c->drip_from)
			S.download_sent += c->out_off >= c->drip_from
				? (size_t)w
				: c->out_off + (size_t)w - c->drip_from;
		c->out_off += (size_t)w;
		if (c->drip_ms && c->out_off >= c->drip_from &&
		    c->out_off < c->out.len)
			return 0;
	}
	c->out.len = c->out_off = 0;
	c->due_ns = 0;
	c->drip_ms = 0;
	c->drip_bytes = 0;
	c->download = false;
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
		"  --ping-delay MS   answer /ping after MS\n"
		"  --keep DIR        write each stored package's body to "
		"DIR/ID\n");
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
		else if (!strcmp(a, "--keep"))
			S.keep_dir = v;
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
