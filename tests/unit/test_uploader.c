/* test_uploader.c — node `uploader` against tlcm-test-server (a separate
 * process, tests/server/): the contract of docs/api.md under every fault
 * the server can inject.
 *
 * First the pure parts (nodes/uploader/link.h: link state machine,
 * quality, backoff bounds, energy schedule). Then graphs run in this
 * process with the uploader (wrapped to keep its describe() JSON) and an
 * event sink: a clean run (one keep-alive connection, user agent,
 * registration kept across runs, priority order); a long offline period
 * then recovery (everything arrives, in priority order); a weak link (only
 * critical data, images every Nth sync); every transient fault (5xx, 429
 * with Retry-After, stall/timeout, slow body, reset, stored-but-response-
 * lost, truncated answer, garbage JSON, wrong id): all delivered exactly
 * once, those stored without a valid answer sent again and answered
 * `duplicate`; bad answers never count as delivered; permanent refusals
 * (400 — also a real id mismatch — 404, 413 — also a real one over the
 * server's limit) become dead letters with the reason; 401 → registering
 * again; 403 → kept, forbidden; feedback pulled, persisted, emitted once
 * and acknowledged even when an ack is lost; the battery and the
 * urgent-kind sync; with the real packager (its packages verified by
 * the server, each stored once or still queued); a registration whose
 * answer was lost, repeated with its secret; the drain when the
 * packager's stream ends (bounded by drain_timeout); the packager
 * dropping — counted — a package that does not fit an outbox full of
 * more important ones; TLS verification (a self-signed core refused
 * without its CA, accepted with ca_file). Last, kill -9: a device process
 * (this binary with --device) queues and uploads against a server
 * injecting random faults and is killed at random moments,
 * TLCM_LONG_ROUNDS times (default 10);
 * then every package must be on the server exactly once, intact, and the
 * outbox empty. No assertion depends on timing.
 *
 * usage: test_uploader SERVER_BINARY
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "engine/graph.h"
#include "engine/log.h"
#include "engine/outbox.h"
#include "engine/sched.h"
#include "engine/store.h"
#include "fb/labeled_sample_fb.h"
#include "fb/link_fb.h"
#include "fb/package_event_fb.h"
#include "fb/package_fb.h"
#include "fb/power_fb.h"
#include "nodes/nodes.h"
#include "nodes/uploader/link.h"
#include "nodes/uploader/uploader.h"
#include "tests/tlcm_test.h"

#define DEV "pi-test-01"

static const char *server_bin;
static char root[256];
static tlcm_registry_t reg;

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void msleep(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
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

/* ---- the server (another process) ---------------------------------------- */

typedef struct {
	pid_t pid;
	int data, ctl;
	char dir[512], state[600], url[128];
} srv_t;

/* Start tlcm-test-server with its state in root/NAME; extra: more argv,
 * NULL-terminated. Restarting one keeps its ports and its log. */
static int srv_start(srv_t *s, const char *name, const char *const *extra)
{
	if (!s->dir[0]) {
		snprintf(s->dir, sizeof s->dir, "%s/%s", root, name);
		mkdir(s->dir, 0755);
		snprintf(s->state, sizeof s->state, "%s/log", s->dir);
	}
	char pf[700], port[16], cport[16];
	snprintf(pf, sizeof pf, "%s/ports", s->dir);
	unlink(pf);
	snprintf(port, sizeof port, "%d", s->data);
	snprintf(cport, sizeof cport, "%d", s->ctl);
	const char *argv[32] = {server_bin, "--port-file", pf, "--state",
				s->state, "--port", port, "--control-port",
				cport};
	size_t n = 9;
	for (size_t i = 0; extra && extra[i] && n < 30; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0 && !getenv("TLCM_TEST_VERBOSE"))
			dup2(fd, 2);
		execv(server_bin, (char *const *)argv);
		_exit(127);
	}
	s->pid = pid;
	for (int i = 0; i < 1000; i++) {
		FILE *f = fopen(pf, "r");
		if (f) {
			int ok = fscanf(f, "%d %d", &s->data, &s->ctl) == 2;
			fclose(f);
			if (ok) {
				snprintf(s->url, sizeof s->url,
					 "http://127.0.0.1:%d/api/v1", s->data);
				return 0;
			}
		}
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			TLCM__FAIL("%s exited at start",
				server_bin);
			return -1;
		}
		msleep(10);
	}
	TLCM__FAIL("%s did not start", server_bin);
	return -1;
}

static void srv_stop(srv_t *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	char **b = arg;
	size_t old = *b ? strlen(*b) : 0, len = sz * n;
	char *nb = realloc(*b, old + len + 1);
	if (!nb)
		return 0;
	memcpy(nb + old, p, len);
	nb[old + len] = 0;
	*b = nb;
	return len;
}

/* A request to the control port; the answer (malloc'd), NULL on failure. */
static char *srv_ctl(srv_t *s, const char *method, const char *path,
		     const char *body)
{
	CURL *c = curl_easy_init();
	char url[256], *out = NULL;
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->ctl, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
	long status = 0;
	CURLcode rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	if (rc || status != 200) {
		TLCM__FAIL("control %s %s: %s, HTTP %ld: %s",
			method, path, curl_easy_strerror(rc), status,
			out ? out : "");
		tlcm_test_failures++;
		free(out);
		return NULL;
	}
	if (!out)
		out = strdup("");
	return out;
}

static void srv_do(srv_t *s, const char *path, const char *body)
{
	free(srv_ctl(s, "POST", path, body));
}

/* A number from /_test/stats ("by_route.feedback" for nested). */
static double srv_stat(srv_t *s, const char *key)
{
	char *b = srv_ctl(s, "GET", "/_test/stats", NULL);
	cJSON *j = cJSON_Parse(b ? b : "");
	free(b);
	double v = -1;
	const char *dot = strchr(key, '.');
	const cJSON *o = j;
	if (dot) {
		char k[64];
		snprintf(k, sizeof k, "%.*s", (int)(dot - key), key);
		o = cJSON_GetObjectItemCaseSensitive(j, k);
		key = dot + 1;
	}
	const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, key);
	if (cJSON_IsNumber(i))
		v = i->valuedouble;
	cJSON_Delete(j);
	return v;
}

static char *srv_stat_str(srv_t *s, const char *key)
{
	char *b = srv_ctl(s, "GET", "/_test/stats", NULL);
	cJSON *j = cJSON_Parse(b ? b : "");
	free(b);
	const cJSON *i = cJSON_GetObjectItemCaseSensitive(j, key);
	char *v = strdup(cJSON_IsString(i) ? i->valuestring : "");
	cJSON_Delete(j);
	return v;
}

/* The server's event log, one string per line. */
typedef struct {
	char **l;
	size_t n;
} slog_t;

static void slog_read(srv_t *s, slog_t *g)
{
	memset(g, 0, sizeof *g);
	FILE *f = fopen(s->state, "r");
	if (!f)
		return;
	char line[1400];
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		g->l = realloc(g->l, (g->n + 1) * sizeof *g->l);
		g->l[g->n++] = strdup(line);
	}
	fclose(f);
}

static void slog_free(slog_t *g)
{
	for (size_t i = 0; i < g->n; i++)
		free(g->l[i]);
	free(g->l);
	memset(g, 0, sizeof *g);
}

/* Lines "WHAT ID..." (id NULL: any). */
static size_t slog_count(const slog_t *g, const char *what, const char *id)
{
	size_t n = 0, wl = strlen(what);
	for (size_t i = 0; i < g->n; i++) {
		const char *l = g->l[i];
		if (strncmp(l, what, wl) || l[wl] != ' ')
			continue;
		if (!id || !strncmp(l + wl + 1, id, strlen(id)))
			n++;
	}
	return n;
}

/* The ids of the "stored" lines, in order (*n of them). */
static char **slog_stored(const slog_t *g, size_t *n)
{
	char **v = calloc(g->n + 1, sizeof *v);
	*n = 0;
	for (size_t i = 0; i < g->n; i++)
		if (!strncmp(g->l[i], "stored ", 7))
			v[(*n)++] = strndup(g->l[i] + 7, TLCM_PKG_ID_LEN);
	return v;
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ---- packages ------------------------------------------------------------ */

static const char *const kinds[] = {"", "metrics", "drift_event",
				    "operational_logs", "prediction_images"};

static void mkid(char *id, unsigned set, uint64_t seq)
{
	snprintf(id, TLCM_PKG_ID_LEN + 1, "01900000-%04x-7000-8000-%012llx",
		 set & 0xffff, (unsigned long long)seq);
}

/* A Package FlatBuffer (schemas/package.fbs) with `payload` bytes that
 * depend on id; body_id: the id written inside (NULL: id). */
static void *mkpkg(const char *id, const char *body_id, const char *dev,
		   uint8_t prio, uint64_t created, size_t payload, size_t *len)
{
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, payload + 512);
	uint8_t *pl = malloc(payload ? payload : 1);
	uint64_t x = fnv64(id, strlen(id)) | 1;
	for (size_t i = 0; i < payload; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		pl[i] = (uint8_t)x;
	}
	tlcm_fbb_ref_t rid = tlcm_fbb_cstring(&b, body_id ? body_id : id);
	tlcm_fbb_ref_t rdev = tlcm_fbb_cstring(&b, dev);
	tlcm_fbb_ref_t rkind = tlcm_fbb_cstring(&b, kinds[prio <= 4 ? prio
								    : 4]);
	tlcm_fbb_ref_t rpl = tlcm_Package_payload_create(&b, pl, payload);
	free(pl);
	tlcm_Package_start(&b);
	tlcm_Package_add_id(&b, rid);
	tlcm_Package_add_device_id(&b, rdev);
	tlcm_Package_add_kind(&b, rkind);
	tlcm_Package_add_priority(&b, prio);
	tlcm_Package_add_created_ns(&b, created);
	tlcm_Package_add_raw_size(&b, payload);
	tlcm_Package_add_count(&b, 1);
	tlcm_Package_add_payload(&b, rpl);
	size_t n;
	const void *p = tlcm_fbb_finish(&b, tlcm_Package_end(&b),
					tlcm_Package_IDENTIFIER, &n);
	void *out = NULL;
	if (p) {
		out = malloc(n);
		memcpy(out, p, n);
		*len = n;
	}
	tlcm_fbb_fini(&b);
	return out;
}

typedef struct {
	char id[TLCM_PKG_ID_LEN + 1];
	uint8_t prio;
	uint64_t created;
	size_t payload;
	const char *body_id; /* the id inside, when it differs */
	const char *dev;     /* the device inside, when it differs */
} pk_t;

static tlcm_store_t *open_store(const char *path)
{
	char why[600];
	tlcm_store_opts_t o = {.sync = TLCM_SYNC_BATCH};
	tlcm_store_t *s = NULL;
	int rc = tlcm_store_open(&s, path, &o, why, sizeof why);
	if (rc)
		TLCM__FAIL("open %s: %s", path, why);
	CHECK_INT(rc, 0);
	return s;
}

/* Queue packages in the outbox of the store at path (the graph is not
 * running: the store is ours for a moment). */
static void put_pkgs(const char *store, const pk_t *p, size_t n)
{
	tlcm_store_t *s = open_store(store);
	if (!s)
		return;
	tlcm_outbox_t *o = tlcm_store_outbox(s);
	for (size_t i = 0; i < n; i++) {
		size_t len = 0;
		void *b = mkpkg(p[i].id, p[i].body_id, p[i].dev ? p[i].dev
							       : DEV,
				p[i].prio, p[i].created, p[i].payload, &len);
		tlcm_outbox_entry_t e = {.priority = p[i].prio,
					 .created_ns = p[i].created};
		snprintf(e.id, sizeof e.id, "%s", p[i].id);
		snprintf(e.kind, sizeof e.kind, "%s",
			 kinds[p[i].prio <= 4 ? p[i].prio : 4]);
		CHECK_INT(tlcm_outbox_put(o, &e, b, len, NULL, 0, NULL), 0);
		free(b);
	}
	tlcm_store_close(s);
}

typedef struct {
	uint64_t packages, dead;
	char reasons[8][512];
	char dead_ids[8][TLCM_PKG_ID_LEN + 1];
	size_t nreasons;
	char queued[64][TLCM_PKG_ID_LEN + 1];
	size_t nqueued;
} obx_t;

static int on_dead(void *arg, const tlcm_outbox_entry_t *e,
		   const char *reason)
{
	obx_t *x = arg;
	if (x->nreasons < 8) {
		snprintf(x->reasons[x->nreasons], 512, "%s", reason);
		snprintf(x->dead_ids[x->nreasons++], TLCM_PKG_ID_LEN + 1, "%s",
			 e->id);
	}
	return 0;
}

static int on_queued(void *arg, const tlcm_outbox_entry_t *e,
		     const char *reason)
{
	obx_t *x = arg;
	(void)reason;
	if (x->nqueued < 64)
		snprintf(x->queued[x->nqueued++], TLCM_PKG_ID_LEN + 1, "%s",
			 e->id);
	return 0;
}

static void outbox_look(const char *store, obx_t *x)
{
	memset(x, 0, sizeof *x);
	tlcm_store_t *s = open_store(store);
	if (!s)
		return;
	tlcm_outbox_t *o = tlcm_store_outbox(s);
	tlcm_outbox_stats_t st;
	CHECK_INT(tlcm_outbox_stats(o, &st), 0);
	x->packages = st.packages;
	x->dead = st.dead;
	tlcm_outbox_list(o, true, on_dead, x);
	tlcm_outbox_list(o, false, on_queued, x);
	tlcm_store_close(s);
}

static bool queued(const obx_t *x, const char *id)
{
	for (size_t i = 0; i < x->nqueued; i++)
		if (!strcmp(x->queued[i], id))
			return true;
	return false;
}

/* ---- test nodes ---------------------------------------------------------- */

/* evsink: keeps LinkEvents (port link), LabeledSamples (port labels),
 * the ids of packages (port packages) and PackageEvents (port events). */
typedef struct {
	char type; /* 'L' link, 'S' sample, 'P' package, 'D'/'Q' dropped/
		      queued event */
	int from, to, quality;
	uint64_t frame, count, total;
	char label[64], source[32], reason[160];
} ev_t;

static ev_t evs[8192];
static size_t nevs;
static pthread_mutex_t evmu = PTHREAD_MUTEX_INITIALIZER;

static const tlcm_port_desc_t ev_in[] = {
	{"link", "LINK", "link events", TLCM_PORT_OPTIONAL},
	{"labels", "SMPL", "labels", TLCM_PORT_OPTIONAL},
	{"packages", "TPKG", "packages (their ids)", TLCM_PORT_OPTIONAL},
	{"events", "TPKE", "package events", TLCM_PORT_OPTIONAL},
	{0},
};

static int ev_process(tlcm_ctx_t *ctx, void *st, int port,
		      const tlcm_msg_t *m)
{
	(void)ctx;
	(void)st;
	const char *why;
	ev_t e = {0};
	if (port == 3) {
		CHECK(!tlcm_PackageEvent_verify_as_root(tlcm_msg_data(m),
							 m->size, &why));
		tlcm_PackageEvent_table_t t =
			tlcm_PackageEvent_as_root(tlcm_msg_data(m));
		e.type = tlcm_PackageEvent_event(t) ==
			 tlcm_PackageEventKind_Dropped ? 'D' : 'Q';
		const char *r = tlcm_PackageEvent_reason(t);
		snprintf(e.reason, sizeof e.reason, "%s", r ? r : "");
		e.count = tlcm_PackageEvent_count(t);
		e.total = tlcm_PackageEvent_dropped_total(t);
		if (tlcm_PackageEvent_packages_len(t)) {
			const char *id = tlcm_PackageRef_id(
				tlcm_PackageEvent_packages_at(t, 0));
			snprintf(e.label, sizeof e.label, "%s", id ? id : "");
		}
	} else if (port == 2) {
		/* a package the packager queued: keep its id */
		void *copy = malloc(m->size);
		memcpy(copy, tlcm_msg_data(m), m->size);
		CHECK(!tlcm_Package_verify_as_root(copy, m->size, &why));
		tlcm_Package_table_t t = tlcm_Package_as_root(copy);
		e.type = 'P';
		const char *id = tlcm_Package_id(t), *k = tlcm_Package_kind(t);
		snprintf(e.label, sizeof e.label, "%s", id ? id : "");
		snprintf(e.source, sizeof e.source, "%s", k ? k : "");
		free(copy);
	} else if (port == 0) {
		CHECK(!tlcm_LinkEvent_verify_as_root(tlcm_msg_data(m), m->size,
						      &why));
		tlcm_LinkEvent_table_t t =
			tlcm_LinkEvent_as_root(tlcm_msg_data(m));
		e.type = 'L';
		e.from = tlcm_LinkEvent_from(t);
		e.to = tlcm_LinkEvent_to(t);
		e.quality = tlcm_LinkEvent_quality(t);
		const char *r = tlcm_LinkEvent_reason(t);
		snprintf(e.reason, sizeof e.reason, "%s", r ? r : "");
	} else {
		CHECK(!tlcm_LabeledSample_verify_as_root(tlcm_msg_data(m),
							 m->size, &why));
		tlcm_LabeledSample_table_t t =
			tlcm_LabeledSample_as_root(tlcm_msg_data(m));
		e.type = 'S';
		e.frame = tlcm_LabeledSample_frame_id(t);
		const char *l = tlcm_LabeledSample_label(t);
		snprintf(e.label, sizeof e.label, "%s", l ? l : "");
		const char *s = tlcm_LabeledSample_source(t);
		snprintf(e.source, sizeof e.source, "%s", s ? s : "");
	}
	pthread_mutex_lock(&evmu);
	if (nevs < sizeof evs / sizeof evs[0])
		evs[nevs++] = e;
	pthread_mutex_unlock(&evmu);
	return 0;
}

static const tlcm_node_type_t evsink_type = {
	.name = "evsink", .doc = "keep link events and labels (test)",
	.inputs = ev_in, .process = ev_process};

static void ev_reset(void)
{
	pthread_mutex_lock(&evmu);
	nevs = 0;
	pthread_mutex_unlock(&evmu);
}

static size_t ev_count_link(int from, int to)
{
	size_t n = 0;
	pthread_mutex_lock(&evmu);
	for (size_t i = 0; i < nevs; i++)
		if (evs[i].type == 'L' && (from < 0 || evs[i].from == from) &&
		    (to < 0 || evs[i].to == to))
			n++;
	pthread_mutex_unlock(&evmu);
	return n;
}

/* upwrap: the uploader, its describe() kept at fini; up_done once it
 * finished (exit_after). */
static char described[4096];
static atomic_int up_done;

static int upwrap_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	int rc = tlcm_node_uploader.tick(ctx, st, now);
	if (rc == TLCM_ECLOSED)
		atomic_store(&up_done, 1);
	return rc;
}

static void upwrap_fini(tlcm_ctx_t *ctx, void *st)
{
	if (tlcm_node_uploader.describe(ctx, st, described, sizeof described))
		described[0] = 0;
	tlcm_node_uploader.fini(ctx, st);
}

static tlcm_node_type_t upwrap_type;

static double desc_num(const char *key)
{
	cJSON *j = cJSON_Parse(described);
	const cJSON *i = cJSON_GetObjectItemCaseSensitive(j, key);
	double v = cJSON_IsNumber(i) ? i->valuedouble : -1;
	if (!j)
		fprintf(stderr, "describe() is not JSON: %s\n", described);
	cJSON_Delete(j);
	return v;
}

static char *desc_str(const char *key)
{
	cJSON *j = cJSON_Parse(described);
	const cJSON *i = cJSON_GetObjectItemCaseSensitive(j, key);
	char *v = strdup(cJSON_IsString(i) ? i->valuestring
		       : cJSON_IsTrue(i) ? "true"
		       : cJSON_IsFalse(i) ? "false" : "");
	cJSON_Delete(j);
	return v;
}

/* pkgsrc: queues packages into the outbox while the graph runs, `total`
 * of them over the runs of a store, at most per_run in this one (its
 * progress is a record); with `urgent` it waits for go_urgent, then queues
 * a metrics package, announces it (TPKE Queued) and, after go_drift, a
 * drift_event one. */
static atomic_int go_urgent, go_drift, src_done;

typedef struct {
	uint64_t next, total, per_run, put, payload;
	unsigned set;
	bool urgent;
	int stage;
	tlcm_outbox_t *ob;
} src_t;

static const tlcm_port_desc_t src_out[] = {
	{"events", "TPKE", "package events", 0}, {0}};
static const tlcm_param_desc_t src_params[] = {
	{"total", TLCM_P_INT, "0", "", 0, 0, NULL, 0},
	{"per_run", TLCM_P_INT, "0", "", 0, 0, NULL, 0},
	{"payload", TLCM_P_INT, "1000", "", 0, 0, NULL, 0},
	{"set", TLCM_P_INT, "1", "", 0, 0, NULL, 0},
	{"urgent", TLCM_P_BOOL, "false", "", 0, 0, NULL, 0},
	{0},
};

static int src_next(void *arg, const void *k, size_t kl, const void *v,
		    size_t vl)
{
	(void)k;
	(void)kl;
	if (vl == 8)
		memcpy(&((src_t *)arg)->next, v, 8);
	return 0;
}

static int src_init(tlcm_ctx_t *ctx, void *st)
{
	src_t *s = st;
	s->total = (uint64_t)tlcm_param_int(ctx, "total");
	s->per_run = (uint64_t)tlcm_param_int(ctx, "per_run");
	s->payload = (uint64_t)tlcm_param_int(ctx, "payload");
	s->set = (unsigned)tlcm_param_int(ctx, "set");
	s->urgent = tlcm_param_bool(ctx, "urgent");
	s->ob = tlcm_store_outbox(tlcm_graph_store(ctx));
	tlcm_records_scan(ctx, "next", src_next, s);
	tlcm_set_tick(ctx, 1000000);
	return 0;
}

static int src_put(tlcm_ctx_t *ctx, src_t *s, uint64_t seq, uint8_t prio,
		   bool announce)
{
	pk_t p = {.prio = prio, .created = 1000000 + seq,
		  .payload = s->payload};
	mkid(p.id, s->set, seq);
	size_t len;
	void *b = mkpkg(p.id, NULL, DEV, prio, p.created, p.payload, &len);
	tlcm_outbox_entry_t e = {.priority = prio, .created_ns = p.created};
	snprintf(e.id, sizeof e.id, "%s", p.id);
	snprintf(e.kind, sizeof e.kind, "%s", kinds[prio]);
	int rc = tlcm_outbox_put(s->ob, &e, b, len, NULL, 0, NULL);
	free(b);
	if (rc || !announce)
		return rc;
	tlcm_fbb_t fb;
	rc = tlcm_emit_begin(ctx, 0, &fb, 512);
	if (rc)
		return rc;
	tlcm_fbb_ref_t id = tlcm_fbb_cstring(&fb, e.id);
	tlcm_fbb_ref_t kind = tlcm_fbb_cstring(&fb, e.kind);
	tlcm_PackageRef_start(&fb);
	tlcm_PackageRef_add_id(&fb, id);
	tlcm_PackageRef_add_kind(&fb, kind);
	tlcm_PackageRef_add_priority(&fb, prio);
	tlcm_fbb_ref_t ref = tlcm_PackageRef_end(&fb);
	tlcm_fbb_ref_t v = tlcm_fbb_vec_refs(&fb, &ref, 1);
	tlcm_PackageEvent_start(&fb);
	tlcm_PackageEvent_add_event(&fb, tlcm_PackageEventKind_Queued);
	tlcm_PackageEvent_add_packages(&fb, v);
	tlcm_PackageEvent_add_count(&fb, 1);
	return tlcm_emit_end(ctx, 0, &fb, tlcm_PackageEvent_end(&fb),
			     tlcm_PackageEvent_IDENTIFIER);
}

static int src_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	src_t *s = st;
	(void)now;
	if (s->urgent) {
		if (s->stage == 0 && atomic_load(&go_urgent)) {
			CHECK_INT(src_put(ctx, s, 1, 1, true), 0);
			s->stage = 1;
		} else if (s->stage == 1 && atomic_load(&go_drift)) {
			CHECK_INT(src_put(ctx, s, 2, 2, true), 0);
			s->stage = 2;
		}
		return tlcm_stopping(ctx) ? TLCM_ECLOSED : 0;
	}
	for (int i = 0; i < 4; i++) {
		if (s->next >= s->total || s->put >= s->per_run) {
			atomic_store(&src_done, 1);
			return TLCM_ECLOSED;
		}
		uint64_t seq = s->next;
		int rc = src_put(ctx, s, seq, (uint8_t)(1 + seq % 4), false);
		if (rc)
			return rc;
		s->next++;
		s->put++;
		tlcm_record_op_t op = {"next", 4, &s->next, 8};
		rc = tlcm_records_write(ctx, &op, 1);
		if (rc)
			return rc;
	}
	return 0;
}

static const tlcm_node_type_t pkgsrc_type = {
	.name = "pkgsrc", .doc = "queue test packages in the outbox",
	.outputs = src_out, .params = src_params,
	.state_size = sizeof(src_t), .init = src_init, .tick = src_tick};

/* powersrc: one PowerState message, then waits for the uploader to
 * finish (its end would end the uploader's inputs, and so the uploader). */
static const tlcm_port_desc_t pw_out[] = {{"out", "POWR", "", 0}, {0}};
static const tlcm_param_desc_t pw_params[] = {
	{"percent", TLCM_P_FLOAT, "50", "", 0, 0, NULL, 0}, {0}};

static int pw_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	int *done = st;
	(void)now;
	if (*done)
		return tlcm_stopping(ctx) || atomic_load(&up_done)
		       ? TLCM_ECLOSED : 0;
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, 0, &b, 64);
	if (rc)
		return rc;
	tlcm_PowerState_start(&b);
	tlcm_PowerState_add_battery_percent(&b, (float)tlcm_param_float(
							 ctx, "percent"));
	*done = 1;
	return tlcm_emit_end(ctx, 0, &b, tlcm_PowerState_end(&b),
			     tlcm_PowerState_IDENTIFIER);
}

static int pw_init(tlcm_ctx_t *ctx, void *st)
{
	(void)st;
	tlcm_set_tick(ctx, 1000000);
	return 0;
}

static const tlcm_node_type_t powersrc_type = {
	.name = "powersrc", .doc = "one PowerState", .outputs = pw_out,
	.params = pw_params, .state_size = sizeof(int), .init = pw_init,
	.tick = pw_tick};

/* ---- running graphs ------------------------------------------------------ */

/* The uploader's parameters in tests unless `extra` names them: fast
 * retries, short timeouts, no battery. */
static const char *const up_fast[] = {
	"interval: 50ms", "backoff_base: 5ms", "backoff_cap: 100ms",
	"timeout: 2s", "ping_timeout: 2s", "connect_timeout: 2s",
	"battery: 'off'", NULL};

static void up_params(char *out, size_t cap, const char *extra)
{
	size_t at = (size_t)snprintf(out, cap, "%s", extra ? extra : "");
	for (size_t i = 0; up_fast[i] && at < cap; i++) {
		char key[40];
		size_t kl = strcspn(up_fast[i], ":");
		snprintf(key, sizeof key, "%.*s:", (int)kl, up_fast[i]);
		const char *f = extra ? strstr(extra, key) : NULL;
		if (f && (f == extra || f[-1] == ' '))
			continue;
		at += (size_t)snprintf(out + at, cap - at, "%s%s",
				       at ? ", " : "", up_fast[i]);
	}
}

static int run_yaml(const char *yaml, tlcm_run_result_t *res)
{
	char path[512];
	snprintf(path, sizeof path, "%s/graph-XXXXXX.yaml", root);
	int fd = mkstemps(path, 5);
	if (fd < 0 || write(fd, yaml, strlen(yaml)) != (ssize_t)strlen(yaml)) {
		TLCM__FAIL("cannot write %s", path);
		exit(1);
	}
	close(fd);
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	int rc = tlcm_graph_load(&g, path, &reg, NULL, 0, &d);
	unlink(path);
	if (rc) {
		tlcm_diag_print(&d, stderr);
		tlcm_diag_fini(&d);
		memset(res, 0, sizeof *res);
		return rc;
	}
	tlcm_diag_fini(&d);
	/* no handle_signals: a tlcm_request_stop() that ended an earlier
	 * run (test_urgent, test_packager) must not stop this one */
	tlcm_run_opts_t o = {.quiet = true, .headless = true};
	rc = tlcm_graph_run(g, &o, res);
	tlcm_graph_free(g);
	return rc ? rc : res->status;
}

/* One graph: uploader `up` (params: UP_FAST + extra) with its outputs
 * into an evsink; more: extra node and edge lines. */
static int run_up(const char *store, srv_t *s, const char *extra,
		  const char *more_nodes, const char *more_edges)
{
	char yaml[8192], params[2048];
	up_params(params, sizeof params, extra);
	snprintf(yaml, sizeof yaml,
		 "graph: up\n"
		 "settings: { workers: 2, introspect: 'off', store: '%s', "
		 "sync: batch }\n"
		 "nodes:\n"
		 "  up: { type: upwrap, params: { url: '%s', device_id: %s, "
		 "%s } }\n"
		 "  ev: { type: evsink }\n%s"
		 "edges:\n"
		 "  - { from: up.link, to: ev.link }\n"
		 "  - { from: up.labels, to: ev.labels }\n%s",
		 store, s->url, DEV, params, more_nodes ? more_nodes : "",
		 more_edges ? more_edges : "");
	described[0] = 0;
	atomic_store(&up_done, 0);
	tlcm_run_result_t res;
	int rc = run_yaml(yaml, &res);
	if (rc)
		fprintf(stderr, "run: %s (%s)\n", tlcm_strerror(rc), res.why);
	tlcm_run_result_fini(&res);
	return rc;
}

typedef struct {
	pthread_t t;
	const char *store, *extra, *nodes, *edges;
	srv_t *s;
	int rc;
} bg_t;

static void *bg_main(void *arg)
{
	bg_t *b = arg;
	b->rc = run_up(b->store, b->s, b->extra, b->nodes, b->edges);
	return NULL;
}

static void bg_start(bg_t *b)
{
	pthread_create(&b->t, NULL, bg_main, b);
}

static int bg_join(bg_t *b)
{
	pthread_join(b->t, NULL);
	return b->rc;
}

static void store_path(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", root, name);
}

/* ---- the pure parts ------------------------------------------------------ */

static void test_link_logic(void)
{
	up_link_t l;
	up_state_t prev;
	up_link_init(&l, 3, 2);
	CHECK_INT(l.state, UP_OFFLINE);
	CHECK(up_link_attempt(&l, &prev));
	CHECK_INT(l.state, UP_RECONNECTING);
	CHECK(up_link_failure(&l, &prev));
	CHECK_INT(l.state, UP_OFFLINE);
	CHECK(!up_link_failure(&l, &prev)); /* stays offline */
	up_link_attempt(&l, &prev);
	CHECK(up_link_success(&l, &prev));
	CHECK_INT(prev, UP_RECONNECTING);
	CHECK_INT(l.state, UP_ONLINE);
	CHECK(up_link_failure(&l, NULL));
	CHECK_INT(l.state, UP_UNSTABLE);
	CHECK(!up_link_success(&l, NULL)); /* 1 of stable_after 2 */
	CHECK_INT(l.state, UP_UNSTABLE);
	CHECK(up_link_success(&l, NULL));
	CHECK_INT(l.state, UP_ONLINE);
	up_link_failure(&l, NULL);
	up_link_failure(&l, NULL);
	CHECK_INT(l.state, UP_UNSTABLE);
	CHECK(up_link_failure(&l, NULL)); /* the third in a row */
	CHECK_INT(l.state, UP_OFFLINE);
	CHECK(!up_link_attempt(&l, NULL) || l.state == UP_RECONNECTING);

	CHECK_INT(up_quality_of(0), UP_Q_HIGH);
	CHECK_INT(up_quality_of(99999999), UP_Q_HIGH);
	CHECK_INT(up_quality_of(100000000), UP_Q_MEDIUM);
	CHECK_INT(up_quality_of(499999999), UP_Q_MEDIUM);
	CHECK_INT(up_quality_of(500000000), UP_Q_LOW);
	CHECK(up_link_probe(&l, 600000000));
	CHECK_INT(l.quality, UP_Q_LOW);
	CHECK(!up_link_probe(&l, 700000000));

	/* full jitter: within [0, min(cap, base 2^a)], spread over it */
	uint64_t x = 88172645463325252ull, base = 1000, cap = 300000;
	for (unsigned a = 0; a < 40; a++) {
		uint64_t hi = base << (a < 20 ? a : 20);
		if (hi > cap)
			hi = cap;
		uint64_t mx = 0, mn = UINT64_MAX;
		for (int i = 0; i < 2000; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			uint64_t d = up_backoff_ns(base, cap, a, x);
			CHECK(d <= hi);
			mx = d > mx ? d : mx;
			mn = d < mn ? d : mn;
		}
		CHECK(mx > hi / 2 && mn < hi / 2);
	}
	CHECK_UINT(up_backoff_ns(1000, 5000, 1000, UINT64_MAX) <= 5000, 1);

	up_schedule_t s = {.base_ns = 4000, .battery_low = 20,
			   .battery_high = 80, .backlog_high = 100};
	const char *why;
	up_energy_t e = {.battery = -1, .backlog = 0};
	CHECK_UINT(up_sync_interval(&s, &e, &why), 4000);
	CHECK_STR(why, "base");
	e.battery = 15;
	CHECK_UINT(up_sync_interval(&s, &e, &why), 8000);
	CHECK_STR(why, "battery_low");
	e.charging = true;
	CHECK_UINT(up_sync_interval(&s, &e, &why), 4000);
	e.backlog = 100; /* charging counts as plenty */
	CHECK_UINT(up_sync_interval(&s, &e, &why), 1000);
	CHECK_STR(why, "backlog");
	e.charging = false;
	e.battery = 50; /* backlog, but not battery_high */
	CHECK_UINT(up_sync_interval(&s, &e, &why), 4000);
	e.battery = 85;
	CHECK_UINT(up_sync_interval(&s, &e, &why), 1000);
	e.battery = -1; /* mains */
	CHECK_UINT(up_sync_interval(&s, &e, &why), 1000);
	e.battery = 10; /* a low battery wins over the backlog */
	CHECK_UINT(up_sync_interval(&s, &e, &why), 8000);
}

/* ---- scenarios ----------------------------------------------------------- */

static int cmp_pk(const void *a, const void *b)
{
	const pk_t *x = a, *y = b;
	if (x->prio != y->prio)
		return x->prio - y->prio;
	if (x->created != y->created)
		return x->created < y->created ? -1 : 1;
	return strcmp(x->id, y->id);
}

/* n packages of set `set`, priorities mixed, ages not in priority order */
static pk_t *mk_set(unsigned set, size_t n, size_t payload)
{
	pk_t *p = calloc(n, sizeof *p);
	for (size_t i = 0; i < n; i++) {
		mkid(p[i].id, set, i);
		p[i].prio = (uint8_t)(1 + (i * 7 + set) % 4);
		p[i].created = 1000000000ull * set + (n - i) * 1000;
		p[i].payload = payload;
	}
	return p;
}

/* Every package of p stored exactly once, with the bytes queued; in
 * order when `ordered`. */
static void check_stored(srv_t *s, const pk_t *p, size_t n, bool ordered,
			 const char *what)
{
	slog_t g;
	slog_read(s, &g);
	size_t ns;
	char **st = slog_stored(&g, &ns);
	pk_t *want = malloc(n * sizeof *want);
	memcpy(want, p, n * sizeof *want);
	qsort(want, n, sizeof *want, cmp_pk);
	size_t found = 0, once = 0, order = 0, intact = 0;
	for (size_t i = 0; i < n; i++) {
		size_t c = slog_count(&g, "stored", want[i].id);
		found += c >= 1;
		once += c == 1;
		size_t at = SIZE_MAX;
		for (size_t k = 0; k < ns; k++)
			if (!strcmp(st[k], want[i].id))
				at = k;
		if (ordered && i > 0 && at != SIZE_MAX) {
			size_t prev = SIZE_MAX;
			for (size_t k = 0; k < ns; k++)
				if (!strcmp(st[k], want[i - 1].id))
					prev = k;
			order += prev != SIZE_MAX && prev < at;
		}
		/* the bytes: size and hash in the stored line */
		size_t len;
		void *b = mkpkg(want[i].id, want[i].body_id,
				want[i].dev ? want[i].dev : DEV, want[i].prio,
				want[i].created, want[i].payload, &len);
		char line[200];
		snprintf(line, sizeof line, "stored %s %s %zu %016llx",
			 want[i].id, DEV, len,
			 (unsigned long long)fnv64(b, len));
		free(b);
		for (size_t k = 0; k < g.n; k++)
			if (!strcmp(g.l[k], line))
				intact++;
	}
	if (found != n || once != n || intact != n)
		fprintf(stderr, "  %s: %zu of %zu stored, %zu once, %zu "
			"intact\n", what, found, n, once, intact);
	CHECK_UINT(found, n);
	CHECK_UINT(once, n);
	CHECK_UINT(intact, n);
	if (ordered) {
		if (order != n - 1)
			fprintf(stderr, "  %s: %zu of %zu in priority order\n",
				what, order, n - 1);
		CHECK_UINT(order, n - 1);
	}
	free(want);
	strv_free(st, ns);
	slog_free(&g);
}

/* A clean run: one keep-alive connection, the user agent and encodings,
 * registration once (the token is kept in the store), priority order,
 * the link going online, describe(). */
static void test_clean(void)
{
	fprintf(stderr, "clean run\n");
	srv_t s = {0};
	if (srv_start(&s, "clean", NULL))
		return;
	char store[512];
	store_path(store, sizeof store, "clean-store");
	pk_t *p = mk_set(1, 20, 4096);
	put_pkgs(store, p, 20);
	ev_reset();
	CHECK_INT(run_up(store, &s, "exit_after: drained", NULL, NULL), 0);
	check_stored(&s, p, 20, true, "clean");
	CHECK_INT(srv_stat(&s, "connections"), 1);
	char *ua = srv_stat_str(&s, "user_agent");
	CHECK(!strncmp(ua, "tinylcm/", 8) && strstr(ua, "("));
	free(ua);
	char *ae = srv_stat_str(&s, "accept_encoding");
	CHECK_CONTAINS(ae, "gzip");
	free(ae);
	CHECK_INT(ev_count_link(UP_OFFLINE, UP_RECONNECTING), 1);
	CHECK_INT(ev_count_link(UP_RECONNECTING, UP_ONLINE), 1);
	CHECK_INT(desc_num("uploaded"), 20);
	CHECK_INT(desc_num("duplicates"), 0);
	CHECK_INT(desc_num("backlog"), 0);
	char *v = desc_str("state");
	CHECK_STR(v, "online");
	free(v);
	v = desc_str("quality");
	CHECK_STR(v, "high");
	free(v);
	v = desc_str("auth");
	CHECK_STR(v, "token");
	free(v);
	CHECK(!strstr(described, "tlcd_")); /* the token never shows */
	obx_t x;
	outbox_look(store, &x);
	CHECK_UINT(x.packages, 0);
	CHECK_UINT(x.dead, 0);

	/* again: the token from the store, no second registration */
	pk_t *q = mk_set(2, 5, 100);
	put_pkgs(store, q, 5);
	CHECK_INT(run_up(store, &s, "exit_after: drained", NULL, NULL), 0);
	check_stored(&s, q, 5, true, "clean, second run");
	slog_t g;
	slog_read(&s, &g);
	CHECK_UINT(slog_count(&g, "register", DEV), 1);
	slog_free(&g);
	CHECK_INT(srv_stat(&s, "connections"), 2);
	free(p);
	free(q);
	srv_stop(&s);
}

/* Offline (connection refused) for many retries, then back: everything
 * arrives, in priority order; the link goes offline, reconnecting,
 * online. */
static void test_recovery(void)
{
	fprintf(stderr, "offline, then recovery\n");
	srv_t s = {0};
	if (srv_start(&s, "recovery", NULL))
		return;
	srv_do(&s, "/_test/config", "offline=1");
	char store[512];
	store_path(store, sizeof store, "recovery-store");
	pk_t *p = mk_set(3, 40, 2000);
	put_pkgs(store, p, 40);
	ev_reset();
	bg_t b = {.store = store, .s = &s, .extra = "exit_after: drained, "
		  "offline_after: 2"};
	bg_start(&b);
	/* a long offline period: many failed reconnects */
	uint64_t t0 = mono_ns();
	while (ev_count_link(UP_RECONNECTING, UP_OFFLINE) < 20 &&
	       mono_ns() - t0 < 60000000000ull)
		msleep(5);
	CHECK(ev_count_link(UP_RECONNECTING, UP_OFFLINE) >= 20);
	CHECK_INT(srv_stat(&s, "stored"), 0);
	srv_do(&s, "/_test/config", "offline=0");
	CHECK_INT(bg_join(&b), 0);
	check_stored(&s, p, 40, true, "recovery");
	CHECK_INT(ev_count_link(UP_RECONNECTING, UP_ONLINE), 1);
	CHECK(desc_num("sync_failures") >= 20);
	CHECK(desc_num("net_errors") >= 20);
	obx_t x;
	outbox_look(store, &x);
	CHECK_UINT(x.packages, 0);
	free(p);
	srv_stop(&s);
}

/* A weak link (/ping answered after 600 ms: quality low): one sync sends
 * only priorities <= 2, no images (images_every 0); with images_every 1
 * the images go too, the logs still wait; a good link takes the rest. */
static void test_weak_link(void)
{
	fprintf(stderr, "weak link\n");
	srv_t s = {0};
	const char *args[] = {"--ping-delay", "600", NULL};
	if (srv_start(&s, "weak", args))
		return;
	char store[512];
	store_path(store, sizeof store, "weak-store");
	pk_t *p = mk_set(4, 24, 500);
	put_pkgs(store, p, 24);
	ev_reset();
	CHECK_INT(run_up(store, &s, "exit_after: sync, images_every: 0",
			 NULL, NULL), 0);
	slog_t g;
	slog_read(&s, &g);
	size_t crit = 0, other = 0;
	for (size_t i = 0; i < 24; i++) {
		size_t c = slog_count(&g, "stored", p[i].id);
		if (p[i].prio <= 2)
			crit += c == 1;
		else
			other += c;
	}
	slog_free(&g);
	CHECK_UINT(crit, 12);
	CHECK_UINT(other, 0);
	char *q = desc_str("quality");
	CHECK_STR(q, "low");
	free(q);
	CHECK_INT(desc_num("backlog"), 12);
	size_t lowev = 0;
	pthread_mutex_lock(&evmu);
	for (size_t i = 0; i < nevs; i++)
		lowev += evs[i].type == 'L' && evs[i].quality == UP_Q_LOW;
	pthread_mutex_unlock(&evmu);
	CHECK(lowev >= 1);

	CHECK_INT(run_up(store, &s, "exit_after: sync, images_every: 1",
			 NULL, NULL), 0);
	slog_read(&s, &g);
	size_t img = 0, logs = 0;
	for (size_t i = 0; i < 24; i++) {
		size_t c = slog_count(&g, "stored", p[i].id);
		img += p[i].prio == 4 && c == 1;
		logs += p[i].prio == 3 ? c : 0;
	}
	slog_free(&g);
	CHECK_UINT(img, 6);
	CHECK_UINT(logs, 0);

	srv_do(&s, "/_test/config", "ping_delay_ms=0");
	CHECK_INT(run_up(store, &s, "exit_after: drained", NULL, NULL), 0);
	check_stored(&s, p, 24, false, "weak link, then good");
	free(p);
	srv_stop(&s);
}

/* Every transient fault once, on packages and on the other routes: all
 * delivered exactly once; a package stored without a valid answer was
 * sent again and answered duplicate. */
static void test_faults(void)
{
	fprintf(stderr, "transient faults\n");
	srv_t s = {0};
	if (srv_start(&s, "faults", NULL))
		return;
	srv_do(&s, "/_test/faults",
	       "ping reset\n"
	       "register 503\n"
	       "packages 503\n"
	       "packages 500 x2\n"
	       "packages 502\n"
	       "packages 504\n"
	       "packages 408\n"
	       "packages 425\n"
	       "packages 429 retry-after=0\n"
	       "packages 429\n"
	       "packages stall=5000\n"
	       "packages slow=300\n"
	       "packages reset\n"
	       "packages lost\n"
	       "packages partial\n"
	       "packages garbage\n"
	       "packages wrongid\n"
	       "packages 202\n"
	       "packages 302\n"
	       "feedback 500\n"
	       "feedback garbage\n");
	char store[512];
	store_path(store, sizeof store, "faults-store");
	pk_t *p = mk_set(5, 30, 3000);
	put_pkgs(store, p, 30);
	ev_reset();
	/* a short timeout: the stall and the slow answer time out */
	CHECK_INT(run_up(store, &s, "exit_after: drained, timeout: 1s", NULL,
			 NULL), 0);
	check_stored(&s, p, 30, false, "faults");
	CHECK_INT(srv_stat(&s, "faults_queued"), 0);
	CHECK_INT(srv_stat(&s, "faults"), 22);
	/* stored without a valid answer: sent again, answered duplicate */
	slog_t g;
	slog_read(&s, &g);
	static const char *const after[] = {"stall", "slow", "lost",
					    "partial", "garbage", "wrongid"};
	size_t redone = 0;
	for (size_t k = 0; k < 6; k++) {
		char pre[64];
		snprintf(pre, sizeof pre, "fault packages %s ", after[k]);
		for (size_t i = 0; i < g.n; i++) {
			if (strncmp(g.l[i], pre, strlen(pre)))
				continue;
			const char *id = g.l[i] + strlen(pre);
			bool ok = slog_count(&g, "attempt", id) >= 2 &&
				  slog_count(&g, "duplicate", id) >= 1 &&
				  slog_count(&g, "stored", id) == 1;
			if (!ok)
				fprintf(stderr, "  %s on %s: not resent as a "
					"duplicate\n", after[k], id);
			redone += ok;
		}
	}
	CHECK_UINT(redone, 6);
	/* garbage, wrongid and a 202 are no acknowledgement */
	CHECK(desc_num("bad_acks") >= 3);
	CHECK(desc_num("retries") >= 17);
	CHECK_INT(desc_num("dead"), 0);
	/* the link survived: online at the end */
	char *st = desc_str("state");
	CHECK_STR(st, "online");
	free(st);
	slog_free(&g);
	obx_t x;
	outbox_look(store, &x);
	CHECK_UINT(x.packages, 0);
	CHECK_UINT(x.dead, 0);
	free(p);
	srv_stop(&s);
}

/* Bad answers are never taken as delivered: with every answer garbage,
 * one sync leaves the whole outbox in place though the server stored
 * the first package; the next run delivers it as a duplicate. */
static void test_bad_answers(void)
{
	fprintf(stderr, "bad answers\n");
	srv_t s = {0};
	if (srv_start(&s, "badans", NULL))
		return;
	char store[512];
	store_path(store, sizeof store, "badans-store");
	pk_t *p = mk_set(6, 5, 100);
	put_pkgs(store, p, 5);
	srv_do(&s, "/_test/faults", "packages garbage x*");
	CHECK_INT(run_up(store, &s, "exit_after: sync", NULL, NULL), 0);
	CHECK_INT(srv_stat(&s, "stored"), 1);
	obx_t x;
	outbox_look(store, &x);
	CHECK_UINT(x.packages, 5);
	CHECK_INT(desc_num("bad_acks"), 1);
	CHECK_INT(desc_num("uploaded"), 0);
	free(srv_ctl(&s, "DELETE", "/_test/faults", NULL));
	srv_do(&s, "/_test/faults", "packages wrongid");
	CHECK_INT(run_up(store, &s, "exit_after: sync", NULL, NULL), 0);
	outbox_look(store, &x);
	CHECK_UINT(x.packages, 5);
	CHECK_INT(run_up(store, &s, "exit_after: drained", NULL, NULL), 0);
	check_stored(&s, p, 5, false, "bad answers");
	CHECK_INT(srv_stat(&s, "duplicates"), 2);
	outbox_look(store, &x);
	CHECK_UINT(x.packages, 0);
	free(p);
	srv_stop(&s);
}

static bool dead_with(const obx_t *x, const char *id, const char *a,
		      const char *b)
{
	for (size_t i = 0; i < x->nreasons; i++)
		if (!strcmp(x->dead_ids[i], id))
			return strstr(x->reasons[i], a) &&
			       (!b || strstr(x->reasons[i], b));
	return false;
}

/* Permanent refusals become dead letters with the status and the
 * server's words, and the rest goes on: injected 400/404/413/409, a real
 * 413 (over the server's limit) and a real 400 (the id inside differs
 * from the Idempotency-Key). A 403 (a package of another device) keeps
 * it, reports forbidden. */
static void test_permanent(void)
{
	fprintf(stderr, "permanent refusals\n");
	srv_t s = {0};
	const char *args[] = {"--max-body", "65536", NULL};
	if (srv_start(&s, "perm", args))
		return;
	char store[512];
	store_path(store, sizeof store, "perm-store");
	/* priority 1, ages 1..: sent in this order */
	pk_t p[9] = {0};
	for (size_t i = 0; i < 9; i++) {
		mkid(p[i].id, 7, i);
		p[i].prio = 1;
		p[i].created = 100 + i;
		p[i].payload = 100;
	}
	p[4].payload = 100000;                       /* real 413 */
	p[5].body_id = "01900000-0007-7000-8000-0000000000ff"; /* 400 */
	put_pkgs(store, p, 9);
	srv_do(&s, "/_test/faults", "packages 400\npackages 404\n"
	       "packages 413\npackages 409\n");
	CHECK_INT(run_up(store, &s, "exit_after: drained", NULL, NULL), 0);
	obx_t x;
	outbox_look(store, &x);
	CHECK_UINT(x.packages, 0);
	CHECK_UINT(x.dead, 6);
	CHECK(dead_with(&x, p[0].id, "HTTP 400", "injected status 400"));
	CHECK(dead_with(&x, p[1].id, "HTTP 404", NULL));
	CHECK(dead_with(&x, p[2].id, "HTTP 413", NULL));
	CHECK(dead_with(&x, p[3].id, "HTTP 409", NULL));
	CHECK(dead_with(&x, p[4].id, "HTTP 413", "over the limit"));
	CHECK(dead_with(&x, p[5].id, "HTTP 400", "Idempotency-Key"));
	CHECK_INT(desc_num("dead"), 6);
	check_stored(&s, p + 6, 3, true, "after the refusals");

	/* 403: another device's package — kept, forbidden, not dead */
	pk_t f = {.prio = 1, .created = 1, .payload = 10,
		  .dev = "someone-else"};
	mkid(f.id, 8, 1);
	put_pkgs(store, &f, 1);
	CHECK_INT(run_up(store, &s, "exit_after: sync", NULL, NULL), 0);
	outbox_look(store, &x);
	CHECK_UINT(x.packages, 1);
	CHECK(queued(&x, f.id));
	CHECK_UINT(x.dead, 6);
	char *v = desc_str("forbidden");
	CHECK_STR(v, "true");
	free(v);
	srv_stop(&s);
}

/* 401: the core forgot the device — register again, deliver everything;
 * with the fleet's API key the device is accepted without a token. */
static void test_auth(void)
{
	fprintf(stderr, "auth\n");
	srv_t s = {0};
	const char *args[] = {"--api-key", "FLEETKEY", NULL};
	if (srv_start(&s, "auth", args))
		return;
	char store[512];
	store_path(store, sizeof store, "auth-store");
	pk_t *p = mk_set(9, 6, 100);
	put_pkgs(store, p, 3);
	CHECK_INT(run_up(store, &s, "exit_after: drained", NULL, NULL), 0);
	srv_do(&s, "/_test/revoke", DEV);
	put_pkgs(store, p + 3, 3);
	CHECK_INT(run_up(store, &s, "exit_after: drained", NULL, NULL), 0);
	check_stored(&s, p, 6, false, "401 then registering again");
	slog_t g;
	slog_read(&s, &g);
	CHECK_UINT(slog_count(&g, "register", DEV), 2);
	slog_free(&g);
	free(p);

	/* another device with the API key and no registration */
	char store2[512];
	store_path(store2, sizeof store2, "auth-store2");
	pk_t q = {.prio = 2, .created = 5, .payload = 10};
	mkid(q.id, 10, 1);
	put_pkgs(store2, &q, 1);
	CHECK_INT(run_up(store2, &s, "exit_after: drained, register: false, "
			 "api_key: FLEETKEY", NULL, NULL), 0);
	check_stored(&s, &q, 1, false, "API key");
	char *v = desc_str("auth");
	CHECK_STR(v, "api_key");
	free(v);
	srv_stop(&s);
}

/* The answer to a registration lost (the core registered the device,
 * then the connection broke in the middle of its 201: the token never
 * arrived — `partial`, since curl itself re-sends a request whose
 * reused connection closed before any answer, `lost`): the next sync
 * registers again with the same secret — persisted before the first try
 * — and gets a token (200), where it used to get 409 for good. A device
 * with the same id but another secret (another store) still gets 409. */
static void test_register_lost(void)
{
	fprintf(stderr, "registration answer lost\n");
	srv_t s = {0};
	if (srv_start(&s, "reglost", NULL))
		return;
	char store[512];
	store_path(store, sizeof store, "reglost-store");
	pk_t *p = mk_set(14, 3, 100);
	put_pkgs(store, p, 3);
	srv_do(&s, "/_test/faults", "register partial");
	CHECK_INT(run_up(store, &s, "exit_after: sync", NULL, NULL), 0);
	slog_t g;
	slog_read(&s, &g);
	CHECK_UINT(slog_count(&g, "register", DEV), 1); /* the core has it */
	CHECK_UINT(slog_count(&g, "fault", "register partial"), 1);
	slog_free(&g);
	CHECK_INT(srv_stat(&s, "stored"), 0);
	char *v = desc_str("registered");
	CHECK_STR(v, "false");
	free(v);
	/* a new run (the secret comes from the store): registered, then
	 * everything delivered in the same sync */
	CHECK_INT(run_up(store, &s, "exit_after: sync", NULL, NULL), 0);
	check_stored(&s, p, 3, true, "after the lost registration");
	v = desc_str("auth");
	CHECK_STR(v, "token");
	free(v);
	slog_read(&s, &g);
	CHECK_UINT(slog_count(&g, "register", DEV), 2);
	/* both registrations name the same secret hash, never the secret */
	const char *h1 = NULL, *h2 = NULL;
	for (size_t i = 0; i < g.n; i++) {
		if (strncmp(g.l[i], "register " DEV " ", strlen(DEV) + 10))
			continue;
		const char *sp = strrchr(g.l[i], ' ');
		if (!h1)
			h1 = sp + 1;
		else
			h2 = sp + 1;
	}
	CHECK(h1 && h2 && strlen(h1) == 64 && !strcmp(h1, h2));
	slog_free(&g);
	CHECK(!strstr(described, "secret"));

	/* the same device id from another store: another secret, 409 */
	char other[512];
	store_path(other, sizeof other, "reglost-other");
	pk_t q = {.prio = 1, .created = 7, .payload = 10};
	mkid(q.id, 14, 99);
	put_pkgs(other, &q, 1);
	CHECK_INT(run_up(other, &s, "exit_after: sync", NULL, NULL), 0);
	char *e = desc_str("last_error");
	CHECK_CONTAINS(e, "registration secret");
	free(e);
	CHECK_INT(srv_stat(&s, "stored"), 3);
	slog_read(&s, &g);
	CHECK_UINT(slog_count(&g, "register", DEV), 2);
	slog_free(&g);
	/* and the first store still has its token: no registration */
	CHECK_INT(run_up(store, &s, "exit_after: sync", NULL, NULL), 0);
	slog_read(&s, &g);
	CHECK_UINT(slog_count(&g, "register", DEV), 2);
	slog_free(&g);
	free(p);
	srv_stop(&s);
}

/* Feedback: labels pulled, emitted as LabeledSample (source
 * ground_truth), acknowledged; an ack that fails leaves them offered
 * again, and the device does not emit them twice; a 64-bit frame id
 * survives the JSON. */
static void test_feedback(void)
{
	fprintf(stderr, "feedback\n");
	srv_t s = {0};
	if (srv_start(&s, "fb", NULL))
		return;
	char store[512];
	store_path(store, sizeof store, "fb-store");
	srv_do(&s, "/_test/feedback",
	       DEV " fb-1 123456789 Bag drift_validation\n"
	       DEV " fb-2 18446744073709551000 Coat drift_validation\n"
	       DEV " fb-3 7 Shirt\n"
	       "other-dev fb-9 1 Nope\n");
	srv_do(&s, "/_test/faults", "ack 503");
	ev_reset();
	CHECK_INT(run_up(store, &s, "exit_after: sync", NULL, NULL), 0);
	size_t ns = 0, ok = 0;
	pthread_mutex_lock(&evmu);
	for (size_t i = 0; i < nevs; i++) {
		if (evs[i].type != 'S')
			continue;
		ns++;
		ok += !strcmp(evs[i].source, "ground_truth") &&
		      ((evs[i].frame == 123456789 &&
			!strcmp(evs[i].label, "Bag")) ||
		       (evs[i].frame == 18446744073709551000ull &&
			!strcmp(evs[i].label, "Coat")) ||
		       (evs[i].frame == 7 && !strcmp(evs[i].label, "Shirt")));
	}
	pthread_mutex_unlock(&evmu);
	CHECK_UINT(ns, 3);
	CHECK_UINT(ok, 3);
	slog_t g;
	slog_read(&s, &g);
	CHECK_UINT(slog_count(&g, "ack", NULL), 0);
	slog_free(&g);
	/* offered again: acknowledged now, not emitted twice */
	ev_reset();
	CHECK_INT(run_up(store, &s, "exit_after: sync", NULL, NULL), 0);
	pthread_mutex_lock(&evmu);
	ns = 0;
	for (size_t i = 0; i < nevs; i++)
		ns += evs[i].type == 'S';
	pthread_mutex_unlock(&evmu);
	CHECK_UINT(ns, 0);
	slog_read(&s, &g);
	CHECK_UINT(slog_count(&g, "ack", DEV), 3);
	CHECK_UINT(slog_count(&g, "ack", "other-dev"), 0);
	slog_free(&g);
	CHECK_INT(desc_num("acked"), 3);
	/* the ack itself lost: the core has it, the device moves on */
	srv_do(&s, "/_test/feedback", DEV " fb-4 44 Bag\n");
	srv_do(&s, "/_test/faults", "ack lost");
	ev_reset();
	CHECK_INT(run_up(store, &s, "exit_after: sync", NULL, NULL), 0);
	CHECK_INT(run_up(store, &s, "exit_after: sync", NULL, NULL), 0);
	pthread_mutex_lock(&evmu);
	ns = 0;
	for (size_t i = 0; i < nevs; i++)
		ns += evs[i].type == 'S' && evs[i].frame == 44;
	pthread_mutex_unlock(&evmu);
	CHECK_UINT(ns, 1);
	slog_read(&s, &g);
	CHECK_UINT(slog_count(&g, "ack", DEV), 4);
	slog_free(&g);
	srv_stop(&s);
}

/* Energy: a battery file at 15 % doubles the interval; PowerState on the
 * `battery` input (90 %) with a large backlog quarters it. */
static void test_energy(void)
{
	fprintf(stderr, "energy\n");
	srv_t s = {0};
	if (srv_start(&s, "energy", NULL))
		return;
	char store[512], bat[600], extra[900];
	store_path(store, sizeof store, "energy-store");
	snprintf(bat, sizeof bat, "%s/capacity", root);
	FILE *f = fopen(bat, "w");
	fprintf(f, "15\n");
	fclose(f);
	snprintf(extra, sizeof extra, "exit_after: sync, interval: 1h, "
		 "battery: '%s'", bat);
	CHECK_INT(run_up(store, &s, extra, NULL, NULL), 0);
	CHECK_INT(desc_num("interval_ms"), 7200000);
	char *v = desc_str("interval_rule");
	CHECK_STR(v, "battery_low");
	free(v);
	CHECK_INT(desc_num("battery"), 15);

	/* a weak link holds most of the backlog back (priority 1 only), so
	 * it is still large when the next interval is chosen */
	pk_t *p = mk_set(11, 12, 10);
	put_pkgs(store, p, 12);
	srv_do(&s, "/_test/config", "ping_delay_ms=550");
	CHECK_INT(run_up(store, &s, "exit_after: sync, interval: 1h, "
			 "backlog_high: 5, low_max_priority: 1, "
			 "images_every: 0",
			 "  pw: { type: powersrc, params: { percent: 90 } }\n",
			 "  - { from: pw.out, to: up.battery }\n"), 0);
	CHECK_INT(desc_num("backlog"), 9);
	v = desc_str("interval_rule");
	CHECK_STR(v, "backlog");
	free(v);
	CHECK_INT(desc_num("interval_ms"), 900000);
	CHECK_INT(desc_num("battery"), 90);
	free(p);
	srv_stop(&s);
}

/* A drift_event package announced on `queued` starts a sync at once (the
 * interval is an hour); a metrics one does not. */
static void test_urgent(void)
{
	fprintf(stderr, "urgent sync\n");
	srv_t s = {0};
	if (srv_start(&s, "urgent", NULL))
		return;
	char store[512];
	store_path(store, sizeof store, "urgent-store");
	atomic_store(&go_urgent, 0);
	atomic_store(&go_drift, 0);
	bg_t b = {.store = store, .s = &s, .extra = "interval: 1h",
		  .nodes = "  src: { type: pkgsrc, params: { urgent: true, "
			   "set: 12, payload: 64 } }\n",
		  .edges = "  - { from: src.events, to: up.queued }\n"};
	bg_start(&b);
	uint64_t t0 = mono_ns();
	while (srv_stat(&s, "by_route.feedback") < 1 &&
	       mono_ns() - t0 < 30000000000ull)
		msleep(10);
	CHECK(srv_stat(&s, "by_route.feedback") >= 1); /* first sync done */
	atomic_store(&go_urgent, 1); /* metrics: no sync for it */
	msleep(300);
	CHECK_INT(srv_stat(&s, "stored"), 0);
	atomic_store(&go_drift, 1);
	t0 = mono_ns();
	while (srv_stat(&s, "stored") < 2 && mono_ns() - t0 < 30000000000ull)
		msleep(10);
	CHECK_INT(srv_stat(&s, "stored"), 2);
	tlcm_request_stop();
	CHECK_INT(bg_join(&b), 0);
	srv_stop(&s);
}

/* devup: the uploader of the device process, which finishes once pkgsrc
 * has queued its share and the outbox is empty (exit_after: drained could
 * finish before pkgsrc is done). */
static int devup_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	int rc = tlcm_node_uploader.tick(ctx, st, now);
	if (rc || !atomic_load(&src_done))
		return rc;
	tlcm_outbox_stats_t os;
	tlcm_outbox_t *o = tlcm_store_outbox(tlcm_graph_store(ctx));
	if (!tlcm_outbox_stats(o, &os) && !os.packages)
		return TLCM_ECLOSED;
	return 0;
}

static tlcm_node_type_t devup_type;

/* With the real packager: metrics packages (zstd, UUIDv7 ids) made while
 * the uploader runs, announced on `queued`; every package the packager
 * queued is on the server exactly once (verified there as a Package whose
 * id is the Idempotency-Key and whose device is X-Device-ID) or still in
 * the outbox after the stop. */
static void test_packager(void)
{
	fprintf(stderr, "with the packager\n");
	srv_t s = {0};
	if (srv_start(&s, "e2e", NULL))
		return;
	char store[512];
	store_path(store, sizeof store, "e2e-store");
	ev_reset();
	bg_t b = {.store = store, .s = &s,
		  .nodes = "  m: { type: metrics, params: { interval: 20ms, "
			   "finish: never } }\n"
			   "  pack: { type: packager, params: { device_id: "
			   DEV ", batch_count: 5 } }\n",
		  .edges = "  - { from: m.out, to: pack.metrics }\n"
			   "  - { from: pack.queued, to: up.queued }\n"
			   "  - { from: pack.packages, to: ev.packages }\n"};
	bg_start(&b);
	uint64_t t0 = mono_ns();
	while (srv_stat(&s, "stored") < 6 && mono_ns() - t0 < 60000000000ull)
		msleep(20);
	tlcm_request_stop();
	CHECK_INT(bg_join(&b), 0);
	CHECK(srv_stat(&s, "stored") >= 6);
	CHECK_INT(srv_stat(&s, "rejects"), 0);
	obx_t x;
	outbox_look(store, &x);
	slog_t g;
	slog_read(&s, &g);
	size_t n = 0, ok = 0;
	pthread_mutex_lock(&evmu);
	for (size_t i = 0; i < nevs; i++) {
		if (evs[i].type != 'P')
			continue;
		n++;
		size_t c = slog_count(&g, "stored", evs[i].label);
		bool q = queued(&x, evs[i].label);
		ok += (c == 1 && !q) || (c == 0 && q);
		if (!((c == 1 && !q) || (c == 0 && q)))
			fprintf(stderr, "  package %s: stored %zu times, %s\n",
				evs[i].label, c, q ? "queued" : "not queued");
	}
	pthread_mutex_unlock(&evmu);
	CHECK(n >= 6);
	CHECK_UINT(ok, n);
	CHECK_UINT(x.dead, 0);
	slog_free(&g);
	srv_stop(&s);
}

/* The packager's stream ends, and with it the uploader's `queued` input:
 * the engine finishes the uploader then, but it first drains the outbox
 * (drain_on_end), so the metrics packages made after its first sync —
 * not urgent, the interval an hour — reach the server in this run. With
 * the core offline the drain gives up after drain_timeout and the
 * packages stay queued. */
static void test_drain(void)
{
	fprintf(stderr, "drain at the end of the inputs\n");
	srv_t s = {0};
	if (srv_start(&s, "drain", NULL))
		return;
	static const char *const nodes =
		"  m: { type: metrics, params: { interval: 50ms, count: 4, "
		"finish: never } }\n"
		"  pack: { type: packager, params: { device_id: " DEV ", "
		"batch_count: 1 } }\n";
	static const char *const edges =
		"  - { from: m.out, to: pack.metrics }\n"
		"  - { from: pack.queued, to: up.queued }\n"
		"  - { from: pack.packages, to: ev.packages }\n";
	char store[512];
	store_path(store, sizeof store, "drain-store");
	ev_reset();
	CHECK_INT(run_up(store, &s, "interval: 1h", nodes, edges), 0);
	obx_t x;
	outbox_look(store, &x);
	CHECK_UINT(x.packages, 0);
	CHECK_UINT(x.dead, 0);
	slog_t g;
	slog_read(&s, &g);
	size_t n = 0, once = 0;
	pthread_mutex_lock(&evmu);
	for (size_t i = 0; i < nevs; i++) {
		if (evs[i].type != 'P')
			continue;
		n++;
		once += slog_count(&g, "stored", evs[i].label) == 1;
	}
	pthread_mutex_unlock(&evmu);
	slog_free(&g);
	CHECK_UINT(n, 4);
	CHECK_UINT(once, n);
	CHECK_INT(desc_num("uploaded"), 4);
	CHECK_INT(srv_stat(&s, "stored"), 4);

	/* offline: bounded by drain_timeout, nothing lost */
	srv_do(&s, "/_test/config", "offline=1");
	char store2[512];
	store_path(store2, sizeof store2, "drain-store2");
	ev_reset();
	CHECK_INT(run_up(store2, &s, "interval: 1h, drain_timeout: 300ms",
			 nodes, edges), 0);
	outbox_look(store2, &x);
	CHECK_UINT(x.packages, 4);
	CHECK_INT(srv_stat(&s, "stored"), 4);
	srv_stop(&s);
}

/* A package that fits only by evicting more important ones: the outbox
 * refuses it (TLCM_ENOSPC) and the packager drops it — counted in a
 * Dropped event (reason outbox_full) and logged, the graph running on —
 * instead of holding it open and failing every later item. Metrics at
 * priority 3 here, the outbox full of priority-1 packages. */
static void test_outbox_full(void)
{
	fprintf(stderr, "outbox full of more important packages\n");
	char store[512];
	store_path(store, sizeof store, "full-store");
	pk_t p[3] = {0};
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now); /* young: not for max_age */
	for (size_t i = 0; i < 3; i++) {
		mkid(p[i].id, 15, i);
		p[i].prio = 1;
		p[i].created = (uint64_t)now.tv_sec * 1000000000u + i;
		p[i].payload = 1000;
	}
	put_pkgs(store, p, 3);
	tlcm_store_t *st = open_store(store);
	tlcm_outbox_stats_t os0 = {0};
	if (st) {
		tlcm_outbox_stats(tlcm_store_outbox(st), &os0);
		tlcm_store_close(st);
	}
	char yaml[2048];
	snprintf(yaml, sizeof yaml,
		 "graph: full\n"
		 "settings: { workers: 2, introspect: 'off', store: '%s', "
		 "sync: batch }\n"
		 "nodes:\n"
		 "  m: { type: metrics, params: { interval: 20ms, count: 3, "
		 "finish: never } }\n"
		 "  pack: { type: packager, params: { device_id: " DEV ", "
		 "batch_count: 1, priorities: 'metrics=3', "
		 "max_bytes: %llu } }\n"
		 "  ev: { type: evsink }\n"
		 "edges:\n"
		 "  - { from: m.out, to: pack.metrics }\n"
		 "  - { from: pack.dropped, to: ev.events }\n"
		 "  - { from: pack.queued, to: ev.events }\n",
		 store, (unsigned long long)os0.bytes + 64);
	ev_reset();
	tlcm_run_result_t res;
	int rc = run_yaml(yaml, &res);
	if (rc)
		fprintf(stderr, "  run: %s (%s)\n", tlcm_strerror(rc), res.why);
	tlcm_run_result_fini(&res);
	CHECK_INT(rc, 0);
	size_t dropped = 0, queued_ev = 0;
	uint64_t total = 0;
	pthread_mutex_lock(&evmu);
	for (size_t i = 0; i < nevs; i++) {
		if (evs[i].type == 'Q')
			queued_ev++;
		if (evs[i].type != 'D')
			continue;
		CHECK_STR(evs[i].reason, "outbox_full");
		CHECK_UINT(evs[i].count, 1);
		CHECK(evs[i].label[0] != 0); /* names the package */
		dropped += evs[i].count;
		total = evs[i].total;
	}
	pthread_mutex_unlock(&evmu);
	CHECK_UINT(dropped, 3);
	CHECK_UINT(total, 3);
	CHECK_UINT(queued_ev, 0);
	/* the important packages are all still there, nothing evicted */
	obx_t x;
	outbox_look(store, &x);
	CHECK_UINT(x.packages, 3);
	for (size_t i = 0; i < 3; i++)
		CHECK(queued(&x, p[i].id));
	st = open_store(store);
	if (st) {
		tlcm_outbox_stats_t os;
		tlcm_outbox_stats(tlcm_store_outbox(st), &os);
		CHECK_UINT(os.evicted, 0);
		CHECK_UINT(os.bytes, os0.bytes);
		tlcm_store_close(st);
	}
}

/* TLS: the core's certificate is verified. A self-signed core (openssl
 * s_server) is refused without its CA and answers /ping with ca_file
 * naming it. s_server -www does not answer a POST, so the sync then
 * stops at registration: only the ping's rating is looked at. */
static void test_tls(void)
{
	fprintf(stderr, "tls\n");
	const char *ossl = "/usr/bin/openssl";
	if (access(ossl, X_OK)) {
		fprintf(stderr, "  no %s (Debian package openssl): %s\n", ossl,
			getenv("CI") ? "FAIL" : "skipped");
		if (getenv("CI"))
			tlcm_test_failures++;
		return;
	}
	char dir[400], cmd[1600], key[500], cert[500];
	snprintf(dir, sizeof dir, "%s/tls", root);
	mkdir(dir, 0755);
	snprintf(key, sizeof key, "%s/key.pem", dir);
	snprintf(cert, sizeof cert, "%s/cert.pem", dir);
	snprintf(cmd, sizeof cmd, "%s req -x509 -newkey rsa:2048 -nodes "
		 "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 "
		 "-days 2 -keyout %s -out %s 2>/dev/null", ossl, key, cert);
	CHECK_INT(system(cmd), 0);
	/* a free port: bound, read, closed */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	bind(fd, (struct sockaddr *)&a, sizeof a);
	getsockname(fd, (struct sockaddr *)&a, &al);
	int port = ntohs(a.sin_port);
	close(fd);
	char acc[64];
	snprintf(acc, sizeof acc, "127.0.0.1:%d", port);
	pid_t pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);
		dup2(nul, 1);
		dup2(nul, 2);
		execl(ossl, ossl, "s_server", "-accept", acc, "-cert", cert,
		      "-key", key, "-www", "-quiet", (char *)NULL);
		_exit(127);
	}
	bool up = false;
	for (int i = 0; i < 500 && !up; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0);
		up = !connect(c, (struct sockaddr *)&a, sizeof a);
		close(c);
		if (!up)
			msleep(10);
	}
	CHECK(up);
	srv_t s = {0};
	snprintf(s.url, sizeof s.url, "https://127.0.0.1:%d/api/v1", port);
	char store[512], extra[800];
	store_path(store, sizeof store, "tls-store");
	CHECK_INT(run_up(store, &s, "exit_after: sync", NULL, NULL), 0);
	char *q = desc_str("quality"), *e = desc_str("last_error");
	CHECK_STR(q, "unknown");
	CHECK_CONTAINS(e, "certificate");
	free(q);
	free(e);
	snprintf(extra, sizeof extra, "exit_after: sync, ca_file: '%s'", cert);
	CHECK_INT(run_up(store, &s, extra, NULL, NULL), 0);
	q = desc_str("quality");
	e = desc_str("last_error");
	CHECK(strcmp(q, "unknown") != 0); /* the ping got its answer */
	CHECK(!strstr(e, "certificate"));
	free(q);
	free(e);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

/* ---- kill -9 ------------------------------------------------------------- */

/* The device process: pkgsrc queues up to per_run more packages (of
 * total) while the uploader uploads; exits when both are done. */
static int device_main(int argc, char **argv)
{
	if (argc < 6)
		return 2;
	const char *store = argv[2], *url = argv[3];
	char yaml[4096];
	snprintf(yaml, sizeof yaml,
		 "graph: device\n"
		 "settings: { workers: 2, introspect: 'off', store: '%s', "
		 "sync: batch }\n"
		 "nodes:\n"
		 "  src: { type: pkgsrc, params: { total: %s, per_run: %s, "
		 "payload: 2048, set: 13 } }\n"
		 "  up: { type: devup, params: { url: '%s', device_id: %s, "
		 "interval: 20ms, backoff_base: 2ms, backoff_cap: 50ms, "
		 "timeout: 1s, ping_timeout: 1s, battery: 'off' } }\n",
		 store, argv[4], argv[5], url, DEV);
	tlcm_log_level = TLCM_LOG_ERROR;
	tlcm_run_result_t res;
	int rc = run_yaml(yaml, &res);
	if (rc)
		fprintf(stderr, "device: %s (%s)\n", tlcm_strerror(rc),
			res.why);
	tlcm_run_result_fini(&res);
	return rc ? 1 : 0;
}

static pid_t device_spawn(const char *store, srv_t *s, uint64_t total,
			  uint64_t per_run)
{
	char t[32], p[32];
	snprintf(t, sizeof t, "%llu", (unsigned long long)total);
	snprintf(p, sizeof p, "%llu", (unsigned long long)per_run);
	pid_t pid = fork();
	if (pid == 0) {
		const char *argv[] = {"test_uploader", "--device", store,
				      s->url, t, p, NULL};
		execv("/proc/self/exe", (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static void test_kill9(void)
{
	const char *env = getenv("TLCM_LONG_ROUNDS");
	int rounds = env ? atoi(env) : 10;
	if (rounds < 1)
		rounds = 1;
	const uint64_t per = 40, total = per * (uint64_t)rounds;
	fprintf(stderr, "kill -9: %d rounds, %llu packages, sync: batch\n",
		rounds, (unsigned long long)total);
	srv_t s = {0};
	const char *args[] = {"--chaos", "0.15", "--seed", "7", NULL};
	if (srv_start(&s, "kill", args))
		return;
	char store[512];
	store_path(store, sizeof store, "kill-store");
	/* made here, not by the first device: a kill -9 while RocksDB
	 * creates it leaves a directory engine/store.c refuses for good
	 * (reported; not what this test is about) */
	tlcm_store_t *st0 = open_store(store);
	if (st0)
		tlcm_store_close(st0);
	uint64_t x = 0x853c49e6748fea9bull;
	int killed = 0, exited = 0;
	for (int r = 0; r < rounds; r++) {
		/* odd rounds: at a random moment from the start (queueing,
		 * opening, registering too); even ones: after a random number
		 * of upload attempts in this round, plus 0-2 ms */
		double a0 = srv_stat(&s, "attempts");
		pid_t pid = device_spawn(store, &s, total, per);
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		unsigned ms = 10 + (unsigned)(x % 300);
		unsigned k = 1 + (unsigned)(x >> 32) % (unsigned)per;
		uint64_t t0 = mono_ns();
		int st;
		bool gone = false;
		for (;;) {
			if (waitpid(pid, &st, WNOHANG) == pid) {
				gone = true;
				break;
			}
			if (r % 2 ? mono_ns() - t0 >= (uint64_t)ms * 1000000u
				  : srv_stat(&s, "attempts") - a0 >= k ||
				    mono_ns() - t0 > 20000000000ull) {
				msleep((unsigned)(x >> 40) % 3);
				break;
			}
			if (r % 2)
				msleep(1);
		}
		if (!gone) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			killed++;
		} else {
			exited++;
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		}
	}
	/* the last run: queues what the killed ones did not, drains */
	free(srv_ctl(&s, "POST", "/_test/config", "chaos=0"));
	pid_t pid = device_spawn(store, &s, total, total);
	int st;
	uint64_t t0 = mono_ns();
	bool done = false;
	while (mono_ns() - t0 < 300000000000ull) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			done = true;
			break;
		}
		msleep(20);
	}
	if (!done) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	CHECK(done && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	fprintf(stderr, "  %d killed, %d finished before the kill, server: "
		"%.0f stored, %.0f duplicates, %.0f faults\n", killed, exited,
		srv_stat(&s, "stored"), srv_stat(&s, "duplicates"),
		srv_stat(&s, "faults"));
	/* how many the device queued: its progress record */
	pk_t *p = calloc(total, sizeof *p);
	for (uint64_t i = 0; i < total; i++) {
		mkid(p[i].id, 13, i);
		p[i].prio = (uint8_t)(1 + i % 4);
		p[i].created = 1000000 + i;
		p[i].payload = 2048;
	}
	check_stored(&s, p, total, false, "kill -9");
	CHECK_INT(srv_stat(&s, "stored"), (double)total);
	obx_t o;
	outbox_look(store, &o);
	CHECK_UINT(o.packages, 0);
	CHECK_UINT(o.dead, 0);
	free(p);
	srv_stop(&s);
}

/* ---- main ---------------------------------------------------------------- */

static int rm_one(const char *p, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

int main(int argc, char **argv)
{
	tlcm_builtin_nodes(&reg);
	upwrap_type = tlcm_node_uploader;
	upwrap_type.name = "upwrap";
	upwrap_type.fini = upwrap_fini;
	upwrap_type.tick = upwrap_tick;
	tlcm_registry_add(&reg, &upwrap_type);
	tlcm_registry_add(&reg, &evsink_type);
	tlcm_registry_add(&reg, &pkgsrc_type);
	tlcm_registry_add(&reg, &powersrc_type);
	devup_type = tlcm_node_uploader;
	devup_type.name = "devup";
	devup_type.tick = devup_tick;
	tlcm_registry_add(&reg, &devup_type);
	if (argc > 1 && !strcmp(argv[1], "--device"))
		return device_main(argc, argv);
	if (argc < 2) {
		fprintf(stderr, "usage: test_uploader SERVER_BINARY\n");
		return 2;
	}
	server_bin = argv[1];
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(root, sizeof root, "/tmp/tlcm-upl-XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	if (!getenv("TLCM_TEST_VERBOSE"))
		tlcm_log_level = TLCM_LOG_ERROR;
	const char *only = getenv("TLCM_TEST_ONLY");
#define RUN(name) \
	if (!only || strstr(only, #name)) \
		test_##name()
	RUN(link_logic);
	RUN(clean);
	RUN(recovery);
	RUN(weak_link);
	RUN(faults);
	RUN(bad_answers);
	RUN(permanent);
	RUN(auth);
	RUN(register_lost);
	RUN(feedback);
	RUN(energy);
	RUN(urgent);
	RUN(packager);
	RUN(drain);
	RUN(outbox_full);
	RUN(tls);
	RUN(kill9);
	if (!tlcm_test_failures)
		nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	else
		fprintf(stderr, "kept %s\n", root);
	tlcm_registry_fini(&reg);
	return tlcm_test_done();
}
