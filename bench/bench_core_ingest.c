/* bench_core_ingest.c — suite "core-ingest": the fleet server's package
 * ingest (node `core`, POST /api/v1/packages) under 10 concurrent
 * uploaders on loopback, against NNG's HTTP server answering the same
 * clients without the ingest path, in the same run and the same process.
 *
 * Per sync policy (default: always, then batch; --sync picks one) a graph
 * with one `core` node (listen 127.0.0.1:0, device_rate 0, its default 4
 * worker threads) runs on a thread of this process over a fresh store; 10
 * devices register; then each run has 10 client threads, each on its own
 * keep-alive connection (a small blocking HTTP/1.1 client on a raw
 * socket, the same code for every phase), do, one phase after another:
 *   static   GET of a 4 KiB body from nng_http_handler_alloc_static
 *   post     POST of the run's packages to a minimal NNG handler that
 *            collects the body and answers {"id","status"} (no pool, no
 *            store): the HTTP server's own cost for a 4 KiB upload
 *   ingest   POST of the same 4 KiB packages (distinct UUIDv7 ids, one
 *            incompressible item) to the core: stored
 *   dup      the same packages again: duplicate (the de-duplication path)
 * Every request's latency is taken at the client; a run's rate is its
 * requests over the wall time from the start barrier to the last answer;
 * reported: medians over --runs runs after one warm-up run, and process
 * CPU time per request (clients included, the same for every phase).
 * The core's /metrics counters must grow by exactly the packages sent.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "bench/bench.h"
#include "engine/graph.h"
#include "engine/log.h"
#include "engine/sched.h"
#include "engine/store.h"
#include "fb/package_fb.h"
#include "fb/sample_fb.h"
#include "nodes/nodes.h"
#include "nodes/packager/pkg_util.h"

#define SUITE "core-ingest"
#define NCLIENT 10
#define PKG_BYTES 4096
#define GOAL 5000.0 /* packages/s, the goal */
#define MAXRUNS 64

/* the suite (listed in main.c) */
int bench_suite_core_ingest(const bench_opts_t *o);

static char dir[PATH_MAX];

/* ---- a small HTTP/1.1 client: one blocking keep-alive socket ----------- */

typedef struct {
	int fd;
	char buf[16384];
	size_t have;
} conn_t;

static int conn_open(conn_t *c, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1;
	c->have = 0;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(c->fd, (struct sockaddr *)&a, sizeof a)) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	return 0;
}

static void conn_close(conn_t *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Send iov (all of it), read one response: its status and body (in c->buf,
 * valid until the next call). -1 with why on a failure or a close. */
static int conn_rt(conn_t *c, struct iovec *iov, int niov, int *status,
		   const char **body, size_t *blen, char *why, size_t cap)
{
	while (niov) {
		ssize_t k = writev(c->fd, iov, niov);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			snprintf(why, cap, "send: %s", strerror(errno));
			return -1;
		}
		while (niov && (size_t)k >= iov->iov_len)
			k -= (ssize_t)iov->iov_len, iov++, niov--;
		if (niov) {
			iov->iov_base = (char *)iov->iov_base + k;
			iov->iov_len -= (size_t)k;
		}
	}
	size_t head = 0, want = 0;
	for (;;) {
		if (!head) {
			char *e = memmem(c->buf, c->have, "\r\n\r\n", 4);
			if (e) {
				head = (size_t)(e - c->buf) + 4;
				c->buf[head - 1] = 0; /* for strcasestr */
				const char *cl = strcasestr(c->buf,
							    "\r\nContent-Length:");
				size_t len = cl ? strtoul(cl + 17, NULL, 10) :
						  0;
				if (sscanf(c->buf, "HTTP/1.%*d %d", status) != 1 ||
				    head + len > sizeof c->buf) {
					snprintf(why, cap, "bad response head "
						 "'%.60s'", c->buf);
					return -1;
				}
				want = head + len;
			}
		}
		if (head && c->have >= want)
			break;
		ssize_t k = read(c->fd, c->buf + c->have,
				 sizeof c->buf - 1 - c->have);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			snprintf(why, cap, "the server %s the connection",
				 k ? strerror(errno) : "closed");
			return -1;
		}
		c->have += (size_t)k;
	}
	*body = c->buf + head;
	*blen = want - head;
	c->buf[want] = 0;
	/* requests and answers alternate: nothing may follow */
	if (c->have != want) {
		snprintf(why, cap, "%zu bytes after the answer", c->have - want);
		return -1;
	}
	c->have = 0;
	return 0;
}

/* One request on a fresh connection (set-up and checks, not timed). */
static int one_shot(int port, const char *head, const char *body, int *status,
		    char **out)
{
	conn_t *c = malloc(sizeof *c);
	char why[160];
	const char *b;
	size_t bl;
	if (!c || conn_open(c, port)) {
		free(c);
		return -1;
	}
	struct iovec iov[2] = {{(void *)head, strlen(head)},
			       {(void *)body, body ? strlen(body) : 0}};
	int rc = conn_rt(c, iov, 2, status, &b, &bl, why, sizeof why);
	if (rc)
		fprintf(stderr, SUITE ": %s\n", why);
	else
		*out = strndup(b, bl);
	conn_close(c);
	free(c);
	return rc || !*out ? -1 : 0;
}

/* ---- packages ------------------------------------------------------------ */

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* The item's shape: nfeat random floats and a device string of nstr
 * characters make the package exactly PKG_BYTES (found once). */
static size_t nfeat = (PKG_BYTES - 400) / 4, nstr;

/* A Package of dev with id: one tlcm.bench.Sample item (BSMP, a real
 * FlatBuffer the core stores as an item of another kind) holding random
 * floats; compression none. NULL when it is not PKG_BYTES long. */
static void *mkpkg(const char *id, const char *dev, uint64_t seed,
		   size_t *len)
{
	tlcm_fbb_t s, b;
	float *f = malloc(nfeat * sizeof *f);
	uint8_t *pl = NULL;
	void *out = NULL;
	char str[8] = "xxxxxxx";
	if (!f || tlcm_fbb_init(&s, PKG_BYTES) ||
	    tlcm_fbb_init(&b, PKG_BYTES + 512)) {
		free(f);
		return NULL;
	}
	uint64_t x = seed | 1;
	for (size_t i = 0; i < nfeat; i++) {
		uint32_t v = (uint32_t)rnd(&x);
		memcpy(&f[i], &v, 4);
	}
	str[nstr] = 0;
	tlcm_fbb_ref_t rf = tlcm_bench_Sample_features_create(&s, f, nfeat);
	tlcm_fbb_ref_t rs = tlcm_fbb_cstring(&s, str);
	tlcm_bench_Sample_start(&s);
	tlcm_bench_Sample_add_id(&s, seed);
	tlcm_bench_Sample_add_device(&s, rs);
	tlcm_bench_Sample_add_features(&s, rf);
	size_t sl;
	const void *sp = tlcm_fbb_finish(&s, tlcm_bench_Sample_end(&s),
					 tlcm_bench_Sample_IDENTIFIER, &sl);
	if (sp && (pl = malloc(4 + sl))) {
		uint32_t l = (uint32_t)sl;
		memcpy(pl, &l, 4); /* little-endian hosts only (x86, arm) */
		memcpy(pl + 4, sp, sl);
		tlcm_fbb_ref_t rid = tlcm_fbb_cstring(&b, id);
		tlcm_fbb_ref_t rdev = tlcm_fbb_cstring(&b, dev);
		tlcm_fbb_ref_t rk = tlcm_fbb_cstring(&b, "metrics");
		tlcm_fbb_ref_t rp = tlcm_Package_payload_create(&b, pl, 4 + sl);
		tlcm_Package_start(&b);
		tlcm_Package_add_id(&b, rid);
		tlcm_Package_add_device_id(&b, rdev);
		tlcm_Package_add_kind(&b, rk);
		tlcm_Package_add_priority(&b, 1);
		tlcm_Package_add_created_ns(&b, 1800000000000000000ull);
		tlcm_Package_add_compression(&b, tlcm_Compression_None);
		tlcm_Package_add_raw_size(&b, 4 + sl);
		tlcm_Package_add_count(&b, 1);
		tlcm_Package_add_payload(&b, rp);
		size_t n;
		const void *p = tlcm_fbb_finish(&b, tlcm_Package_end(&b),
						tlcm_Package_IDENTIFIER, &n);
		*len = p ? n : 0;
		if (p && n == PKG_BYTES && (out = malloc(n)))
			memcpy(out, p, n);
	}
	free(f);
	free(pl);
	tlcm_fbb_fini(&s);
	tlcm_fbb_fini(&b);
	return out;
}

/* Find nfeat and nstr for exactly PKG_BYTES: from the size of a first
 * try, a few feature counts and string lengths around it. */
static int pkg_shape(void)
{
	const char *id = "01910000-0000-7000-8000-000000000000";
	size_t len = 0;
	nstr = 0;
	free(mkpkg(id, "bench-dev-0", 1, &len));
	if (len) {
		size_t est = nfeat + ((ssize_t)PKG_BYTES - (ssize_t)len) / 4;
		for (nfeat = est - 4; nfeat <= est + 4; nfeat++)
			for (nstr = 0; nstr < 8; nstr++) {
				void *p = mkpkg(id, "bench-dev-0", 1, &len);
				free(p);
				if (p)
					return 0;
			}
	}
	fprintf(stderr, SUITE ": cannot make a package of exactly %d bytes\n",
		PKG_BYTES);
	return -1;
}

/* ---- the baseline server: the same NNG HTTP server, no ingest ---------- */

static nng_http_server *bsrv;
static int bport;
static unsigned char static_body[PKG_BYTES];

/* POST /post: the body collected by NNG, a fixed answer naming the id */
static void on_post(nng_aio *aio)
{
	nng_http_req *req = nng_aio_get_input(aio, 0);
	const char *id = nng_http_req_get_header(req, "Idempotency-Key");
	void *data;
	size_t len;
	nng_http_req_get_data(req, &data, &len);
	nng_http_res *res;
	if (nng_http_res_alloc(&res)) {
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	char b[96];
	int n = snprintf(b, sizeof b, "{\"id\":\"%.36s\",\"status\":\"%s\"}",
			 id ? id : "", len == PKG_BYTES ? "stored" : "short");
	nng_http_res_set_header(res, "Content-Type", "application/json");
	nng_http_res_set_header(res, "Cache-Control", "no-store");
	nng_http_res_copy_data(res, b, (size_t)n);
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
	if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) &&
	    !getsockname(fd, (struct sockaddr *)&a, &al))
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* Its own port: nng_http_server_hold() would hand the core's server
 * back for the same host and port 0. */
static int base_start(void)
{
	uint64_t x = 0x5eed;
	for (size_t i = 0; i < sizeof static_body; i++)
		static_body[i] = (unsigned char)rnd(&x);
	int rv = NNG_EADDRINUSE;
	for (int tries = 0; tries < 5 && rv == NNG_EADDRINUSE; tries++) {
		char url[64];
		nng_url *u;
		nng_http_handler *hs = NULL, *hp = NULL;
		bport = free_port();
		snprintf(url, sizeof url, "http://127.0.0.1:%d", bport);
		if (bport < 0 || (rv = nng_url_parse(&u, url)))
			break;
		rv = nng_http_server_hold(&bsrv, u);
		nng_url_free(u);
		if (!rv && !(rv = nng_http_handler_alloc_static(
				     &hs, "/static", static_body,
				     sizeof static_body,
				     "application/octet-stream")) &&
		    (rv = nng_http_server_add_handler(bsrv, hs)))
			nng_http_handler_free(hs);
		if (!rv && !(rv = nng_http_handler_alloc(&hp, "/post",
							 on_post))) {
			nng_http_handler_set_method(hp, "POST");
			nng_http_handler_collect_body(hp, true, 65536);
			if ((rv = nng_http_server_add_handler(bsrv, hp)))
				nng_http_handler_free(hp);
		}
		if (!rv)
			rv = nng_http_server_start(bsrv);
		if (rv && bsrv) {
			nng_http_server_release(bsrv);
			bsrv = NULL;
		}
	}
	if (rv)
		fprintf(stderr, SUITE ": the baseline HTTP server: %s\n",
			nng_strerror(rv));
	return rv ? -1 : 0;
}

static void base_stop(void)
{
	if (bsrv) {
		nng_http_server_stop(bsrv);
		nng_http_server_release(bsrv);
		bsrv = NULL;
	}
}

/* ---- the core, in a graph on a thread of this process ------------------ */

typedef struct {
	tlcm_graph_t *g;
	pthread_t th;
	int rc;
	char why[512];
	_Atomic bool done;
	int port;
} core_run_t;

static void *core_main(void *arg)
{
	core_run_t *cr = arg;
	tlcm_run_opts_t ro = {.quiet = true, .headless = true};
	tlcm_run_result_t res;
	cr->rc = tlcm_graph_run(cr->g, &ro, &res);
	snprintf(cr->why, sizeof cr->why, "%s",
		 res.why[0] ? res.why : tlcm_strerror(cr->rc));
	tlcm_run_result_fini(&res);
	cr->done = true;
	return NULL;
}

static int core_start(core_run_t *cr, const tlcm_registry_t *reg,
		      tlcm_sync_t sync)
{
	char yaml[2 * PATH_MAX + 1024], path[PATH_MAX + 32],
		pf[PATH_MAX + 32], store[PATH_MAX + 32];
	snprintf(store, sizeof store, "%s/store-%s", dir, tlcm_sync_name(sync));
	snprintf(pf, sizeof pf, "%s/port-%s", dir, tlcm_sync_name(sync));
	snprintf(yaml, sizeof yaml,
		 "graph: bench-core-ingest\n"
		 "settings: { workers: 1, introspect: 'off', store: '%s', "
		 "sync: %s }\n"
		 "nodes:\n"
		 "  core: { type: core, params: { listen: "
		 "'http://127.0.0.1:0', port_file: '%s', device_rate: 0 } }\n",
		 store, tlcm_sync_name(sync), pf);
	snprintf(path, sizeof path, "%s/core.yaml", dir);
	FILE *f = fopen(path, "w");
	if (!f || fputs(yaml, f) < 0 || fclose(f)) {
		fprintf(stderr, SUITE ": cannot write %s\n", path);
		return -1;
	}
	tlcm_diag_t d = {0};
	memset(cr, 0, sizeof *cr);
	if (tlcm_graph_load(&cr->g, path, reg, NULL, 0, &d)) {
		tlcm_diag_print(&d, stderr);
		tlcm_diag_fini(&d);
		return -1;
	}
	tlcm_diag_fini(&d);
	if (pthread_create(&cr->th, NULL, core_main, cr)) {
		tlcm_graph_free(cr->g);
		return -1;
	}
	for (int i = 0; i < 2000 && !cr->done; i++) {
		FILE *p = fopen(pf, "r");
		if (p) {
			int ok = fscanf(p, "%d", &cr->port) == 1;
			fclose(p);
			if (ok)
				return 0;
		}
		usleep(5000);
	}
	tlcm_request_stop();
	pthread_join(cr->th, NULL);
	fprintf(stderr, SUITE ": the core did not start: %s\n",
		cr->done ? cr->why : "no port file after 10 s");
	tlcm_graph_free(cr->g);
	return -1;
}

static int core_stop(core_run_t *cr)
{
	tlcm_request_stop();
	pthread_join(cr->th, NULL);
	tlcm_graph_free(cr->g);
	if (cr->rc)
		fprintf(stderr, SUITE ": the core's graph: %s\n", cr->why);
	return cr->rc ? -1 : 0;
}

/* A counter of the core's /metrics (Prometheus text); -1 unreadable. */
static double core_counter(int port, const char *name)
{
	char head[128], *out = NULL;
	int st;
	snprintf(head, sizeof head, "GET /metrics HTTP/1.1\r\nHost: "
		 "127.0.0.1:%d\r\n\r\n", port);
	if (one_shot(port, head, NULL, &st, &out) || st != 200) {
		free(out);
		return -1;
	}
	double v = -1;
	size_t n = strlen(name);
	for (char *l = out; l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
		if (!strncmp(l, name, n) && l[n] == ' ')
			v = strtod(l + n + 1, NULL);
	free(out);
	return v;
}

/* ---- clients --------------------------------------------------------------- */

enum { PH_STATIC, PH_POST, PH_INGEST, PH_DUP, NPHASE };
static const char *const PHASE[] = {"static_get_4KiB", "nng_post_4KiB",
				    "ingest_4KiB", "duplicate_4KiB"};

typedef struct {
	int i, phase, port;
	char dev[32], token[96];
	size_t n;            /* requests per phase */
	void **pkgs;         /* n packages of this run */
	char (*ids)[37];
	uint64_t *lat;       /* n latencies, ns */
	uint64_t t_end;
	pthread_barrier_t *go;
	char why[256];
	int err;
	uint64_t seed;
	tlcm_uuid7_t gen;
} client_t;

static int build_pkgs(client_t *c)
{
	for (size_t k = 0; k < c->n; k++) {
		size_t len;
		free(c->pkgs[k]);
		if (tlcm_uuid7_next(&c->gen, (uint64_t)time(NULL) * 1000000000ull,
				    c->ids[k]))
			return -1;
		c->pkgs[k] = mkpkg(c->ids[k], c->dev, rnd(&c->seed), &len);
		if (!c->pkgs[k])
			return -1;
	}
	return 0;
}

static void *client_main(void *arg)
{
	client_t *c = arg;
	conn_t *cn = malloc(sizeof *cn);
	char head[512];
	int st = 0;
	const char *body;
	size_t bl;
	bool conn_ok = cn && !conn_open(cn, c->port);
	if (!conn_ok)
		snprintf(c->why, sizeof c->why, "connect to port %d: %s",
			 c->port, strerror(errno));
	pthread_barrier_wait(c->go);
	c->err = !conn_ok;
	for (size_t k = 0; k < c->n && !c->err; k++) {
		struct iovec iov[2];
		int niov = 1;
		uint64_t t0 = bench_now_ns();
		if (c->phase == PH_STATIC) {
			iov[0].iov_len = (size_t)snprintf(
				head, sizeof head, "GET /static HTTP/1.1\r\n"
				"Host: 127.0.0.1:%d\r\n\r\n", c->port);
		} else {
			iov[0].iov_len = (size_t)snprintf(
				head, sizeof head,
				"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
				"Authorization: Bearer %s\r\n"
				"X-Device-ID: %s\r\nIdempotency-Key: %s\r\n"
				"Content-Type: application/x-tinylcm-package"
				"\r\nContent-Length: %d\r\n\r\n",
				c->phase == PH_POST ? "/post" :
						      "/api/v1/packages",
				c->port, c->token, c->dev, c->ids[k],
				PKG_BYTES);
			iov[1].iov_base = c->pkgs[k];
			iov[1].iov_len = PKG_BYTES;
			niov = 2;
		}
		iov[0].iov_base = head;
		if (conn_rt(cn, iov, niov, &st, &body, &bl, c->why,
			    sizeof c->why)) {
			c->err = 1;
			break;
		}
		c->lat[k] = bench_now_ns() - t0;
		const char *want = c->phase == PH_DUP ? "\"duplicate\"" :
				   "\"stored\"";
		if (st != 200 ||
		    (c->phase == PH_STATIC ? bl != PKG_BYTES :
		     !strstr(body, want) || !strstr(body, c->ids[k]))) {
			snprintf(c->why, sizeof c->why, "%s %zu: status %d, "
				 "body '%.160s'", PHASE[c->phase], k, st,
				 c->phase == PH_STATIC ? "(4 KiB?)" : body);
			c->err = 1;
		}
	}
	c->t_end = bench_now_ns();
	if (cn)
		conn_close(cn);
	free(cn);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	double t[MAXRUNS];
	memcpy(t, v, (size_t)n * sizeof *v);
	return bench_median(t, n);
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct {
	double rate, p50, p99, cpu; /* per s; µs; µs; µs CPU per request */
	double csw, flt;            /* context switches, page faults per request */
} fig_t;

static long csw(long *flt)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	*flt = ru.ru_minflt + ru.ru_majflt;
	return ru.ru_nvcsw + ru.ru_nivcsw;
}

/* One phase: all clients at once. */
static int phase(client_t *cl, int ph, int port, uint64_t *all, fig_t *out)
{
	pthread_t th[NCLIENT];
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, NCLIENT + 1);
	int nth = 0;
	for (int i = 0; i < NCLIENT; i++) {
		cl[i].phase = ph;
		cl[i].port = port;
		cl[i].go = &go;
		cl[i].err = 0;
		cl[i].why[0] = 0;
		if (pthread_create(&th[i], NULL, client_main, &cl[i]))
			break;
		nth++;
	}
	if (nth < NCLIENT) { /* the barrier would never open */
		fprintf(stderr, SUITE ": cannot start client threads\n");
		exit(1);
	}
	pthread_barrier_wait(&go);
	uint64_t t0 = bench_now_ns(), c0 = cpu_ns(), t1 = t0;
	long f0, f1, s0 = csw(&f0);
	int bad = 0;
	for (int i = 0; i < NCLIENT; i++) {
		pthread_join(th[i], NULL);
		if (cl[i].err) {
			fprintf(stderr, SUITE ": client %d: %s\n", i,
				cl[i].why);
			bad = 1;
		}
		if (cl[i].t_end > t1)
			t1 = cl[i].t_end;
	}
	uint64_t c1 = cpu_ns();
	long s1 = csw(&f1);
	pthread_barrier_destroy(&go);
	if (bad)
		return -1;
	size_t n = cl[0].n, m = 0;
	for (int i = 0; i < NCLIENT; i++)
		for (size_t k = 0; k < n; k++)
			all[m++] = cl[i].lat[k];
	qsort(all, m, sizeof *all, cmp_u64);
	out->rate = (double)m / ((double)(t1 - t0) / 1e9);
	out->p50 = (double)all[m / 2] / 1e3;
	out->p99 = (double)all[(m * 99) / 100] / 1e3;
	out->cpu = (double)(c1 - c0) / (double)m / 1e3;
	out->csw = (double)(s1 - s0) / (double)m;
	out->flt = (double)(f1 - f0) / (double)m;
	return 0;
}

/* Register the clients' devices (open registration) for their tokens. */
static int register_all(client_t *cl, int port)
{
	for (int i = 0; i < NCLIENT; i++) {
		char head[256], body[96], *out = NULL;
		int st;
		snprintf(body, sizeof body, "{\"device_id\":\"%s\"}", cl[i].dev);
		snprintf(head, sizeof head, "POST /api/v1/devices/register "
			 "HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
			 "application/json\r\nContent-Length: %zu\r\n\r\n",
			 port, strlen(body));
		if (one_shot(port, head, body, &st, &out) || st != 201) {
			fprintf(stderr, SUITE ": registering %s: status %d, "
				"%s\n", cl[i].dev, st, out ? out : "no answer");
			free(out);
			return -1;
		}
		cJSON *j = cJSON_Parse(out);
		const char *t = cJSON_GetStringValue(
			cJSON_GetObjectItemCaseSensitive(j, "token"));
		snprintf(cl[i].token, sizeof cl[i].token, "%s", t ? t : "");
		cJSON_Delete(j);
		free(out);
		if (!cl[i].token[0])
			return -1;
	}
	return 0;
}

/* ---- output ---------------------------------------------------------------- */

static double load1(void)
{
	double l = -1;
	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = -1;
		fclose(f);
	}
	return l;
}

/* A bench_report() line plus the sync policy, the ratio to the first
 * baseline and a note on the machine. */
static void report(const char *kase, const char *unit, double v, size_t n,
		   int runs, const bench_base_t *base, size_t nbase,
		   const char *sync, const char *note)
{
	printf("{\"suite\":\"%s\",\"case\":\"%s\",\"unit\":\"%s\","
	       "\"value\":%.6g,\"n\":%zu,\"runs\":%d,\"stat\":\"median\"",
	       SUITE, kase, unit, v, n, runs);
	if (nbase) {
		printf(",\"baseline\":{");
		for (size_t i = 0; i < nbase; i++)
			printf("%s\"%s\":%.6g", i ? "," : "", base[i].name,
			       base[i].value);
		printf("},\"ratio\":%.4g", base[0].value > 0 ?
						   v / base[0].value : 0);
	}
	printf(",\"sync\":\"%s\",\"clients\":%d,\"note\":\"%s\","
	       "\"machine\":{\"cpus\":%ld,\"load1\":%.2f}}\n", sync, NCLIENT,
	       note, sysconf(_SC_NPROCESSORS_ONLN), load1());
	fflush(stdout);
}

typedef struct {
	bool ran;
	double ingest, dup, base;
} summary_t;

static int run_policy(const tlcm_registry_t *reg, tlcm_sync_t sync,
		      size_t n, int runs, summary_t *sum)
{
	const char *sn = tlcm_sync_name(sync);
	core_run_t cr;
	if (core_start(&cr, reg, sync))
		return -1;
	client_t *cl = calloc(NCLIENT, sizeof *cl);
	uint64_t *all = malloc(NCLIENT * n * sizeof *all);
	fig_t f[NPHASE][MAXRUNS];
	int ret = -1, nr = 0;
	for (int i = 0; cl && i < NCLIENT; i++) {
		cl[i].i = i;
		cl[i].n = n;
		cl[i].seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
		snprintf(cl[i].dev, sizeof cl[i].dev, "bench-dev-%d", i);
		cl[i].pkgs = calloc(n, sizeof *cl[i].pkgs);
		cl[i].ids = calloc(n, sizeof *cl[i].ids);
		cl[i].lat = calloc(n, sizeof *cl[i].lat);
		if (!cl[i].pkgs || !cl[i].ids || !cl[i].lat)
			goto out;
	}
	if (!cl || !all || register_all(cl, cr.port))
		goto out;
	for (int r = -1; r < runs; r++) { /* r -1: warm-up */
		fig_t x[NPHASE];
		for (int i = 0; i < NCLIENT; i++)
			if (build_pkgs(&cl[i])) {
				fprintf(stderr, SUITE ": cannot make "
					"packages\n");
				goto out;
			}
		double s0 = core_counter(cr.port,
					 "tinylcm_core_packages_stored_total");
		double d0 = core_counter(cr.port,
					 "tinylcm_core_packages_duplicate_total");
		if (phase(cl, PH_STATIC, bport, all, &x[PH_STATIC]) ||
		    phase(cl, PH_POST, bport, all, &x[PH_POST]) ||
		    phase(cl, PH_INGEST, cr.port, all, &x[PH_INGEST]))
			goto out;
		double s1 = core_counter(cr.port,
					 "tinylcm_core_packages_stored_total");
		if (phase(cl, PH_DUP, cr.port, all, &x[PH_DUP]))
			goto out;
		double d1 = core_counter(cr.port,
					 "tinylcm_core_packages_duplicate_total");
		if (s1 - s0 != (double)(NCLIENT * n) || d1 - d0 !=
		    (double)(NCLIENT * n)) {
			fprintf(stderr, SUITE ": the core counted %.0f stored "
				"and %.0f duplicates of %zu sent each; not "
				"reported\n", s1 - s0, d1 - d0, NCLIENT * n);
			goto out;
		}
		fprintf(stderr, SUITE ": sync %s run %d:", sn, r);
		for (int p = 0; p < NPHASE; p++)
			fprintf(stderr, " %s %.0f/s %.0f us CPU %.1f csw "
				"%.1f flt%s", PHASE[p], x[p].rate, x[p].cpu,
				x[p].csw, x[p].flt,
				p + 1 < NPHASE ? "," : "\n");
		if (r >= 0) {
			for (int p = 0; p < NPHASE; p++)
				f[p][nr] = x[p];
			nr++;
		}
	}
	double v[NPHASE][4];
	for (int p = 0; p < NPHASE; p++) {
		double t[4][MAXRUNS];
		for (int r = 0; r < nr; r++) {
			t[0][r] = f[p][r].rate;
			t[1][r] = f[p][r].p50;
			t[2][r] = f[p][r].p99;
			t[3][r] = f[p][r].cpu;
		}
		for (int k = 0; k < 4; k++)
			v[p][k] = median(t[k], nr);
	}
	static const char *const sfx[] = {"", "_p50", "_p99", "_cpu"};
	static const char *const unit[] = {"packages_per_s", "us", "us", "us"};
	for (int p = PH_INGEST; p <= PH_DUP; p++)
		for (int k = 0; k < 4; k++) {
			char kase[96], b0[48], b1[48];
			snprintf(kase, sizeof kase, "%s_c%d_sync_%s%s",
				 PHASE[p], NCLIENT, sn, sfx[k]);
			snprintf(b0, sizeof b0, "%s%s", PHASE[PH_STATIC],
				 k ? sfx[k] : "_requests_per_s");
			snprintf(b1, sizeof b1, "%s%s", PHASE[PH_POST],
				 k ? sfx[k] : "_requests_per_s");
			bench_base_t base[2] = {{b0, v[PH_STATIC][k]},
						{b1, v[PH_POST][k]}};
			report(kase, unit[k], v[p][k], NCLIENT * n, nr, base,
			       2, sn, k == 3 ? "process CPU time per request, "
			       "clients and RocksDB threads included" :
			       "baselines: the same NNG HTTP server code and "
			       "clients; static_get = GET of a 4 KiB body "
			       "(NNG's static handlers answer GET only), "
			       "nng_post = the same 4 KiB POSTs to a bare NNG "
			       "handler");
		}
	sum->ran = true;
	sum->ingest = v[PH_INGEST][0];
	sum->dup = v[PH_DUP][0];
	sum->base = v[PH_STATIC][0];
	ret = 0;
out:
	if (core_stop(&cr))
		ret = -1;
	for (int i = 0; cl && i < NCLIENT; i++) {
		for (size_t k = 0; cl[i].pkgs && k < n; k++)
			free(cl[i].pkgs[k]);
		free(cl[i].pkgs);
		free(cl[i].ids);
		free(cl[i].lat);
	}
	free(cl);
	free(all);
	return ret;
}

static int rm_one(const char *p, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	if (remove(p))
		fprintf(stderr, SUITE ": cannot remove %s: %s\n", p,
			strerror(errno));
	return 0;
}

int bench_suite_core_ingest(const bench_opts_t *o)
{
	tlcm_sync_t pol[3] = {TLCM_SYNC_ALWAYS, TLCM_SYNC_BATCH};
	size_t npol = 2;
	if (o->sync) {
		if (tlcm_sync_parse(o->sync, &pol[0])) {
			fprintf(stderr, SUITE ": --sync wants always, batch or "
				"never, got '%s'\n", o->sync);
			return 2;
		}
		npol = 1;
	}
	snprintf(dir, sizeof dir, "/tmp/tlcm-bench-core-XXXXXX");
	if (!mkdtemp(dir)) {
		perror(SUITE ": mkdtemp");
		return 1;
	}
	int level = tlcm_log_level;
	tlcm_log_level = TLCM_LOG_WARN; /* no start-up lines */
	tlcm_registry_t reg = {0};
	summary_t sum[3] = {{0}};
	int ret = 1;
	size_t n = (size_t)lround(500 * o->scale);
	if (n < 10)
		n = 10;
	int runs = o->runs < 1 ? 1 : o->runs > MAXRUNS ? MAXRUNS : o->runs;
	double l0 = load1();
	if (pkg_shape() || tlcm_builtin_nodes(&reg) || base_start())
		goto out;
	fprintf(stderr, SUITE ": %d clients x %zu requests per phase, %d "
		"runs + 1 warm-up, load average %.2f\n", NCLIENT, n, runs, l0);
	ret = 0;
	for (size_t p = 0; p < npol && !ret; p++)
		ret = run_policy(&reg, pol[p], n, runs, &sum[p]) ? 1 : 0;
	if (ret)
		goto out;
	bool met = true;
	printf("{\"suite\":\"%s\",\"case\":\"summary\",\"unit\":"
	       "\"packages_per_s\",\"goal\":%.0f,\"per_sync\":{", SUITE, GOAL);
	for (size_t p = 0; p < npol; p++) {
		met = met && sum[p].ingest >= GOAL;
		printf("%s\"%s\":{\"ingest\":%.6g,\"duplicate\":%.6g,"
		       "\"static_get\":%.6g,\"goal_met\":%s}", p ? "," : "",
		       tlcm_sync_name(pol[p]), sum[p].ingest, sum[p].dup,
		       sum[p].base, sum[p].ingest >= GOAL ? "true" : "false");
	}
	printf("},\"goal_met\":%s,\"machine\":{\"cpus\":%ld,\"load1_start\":"
	       "%.2f,\"load1_end\":%.2f}}\n", met ? "true" : "false",
	       sysconf(_SC_NPROCESSORS_ONLN), l0, load1());
	fflush(stdout);
out:
	base_stop();
	tlcm_log_level = level;
	tlcm_registry_fini(&reg);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return ret;
}
