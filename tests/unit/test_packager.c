/* test_packager.c — node `packager` (and the `metrics` and `logs` sources)
 * through small graphs with a store.
 *
 * A scripted source (`feed`) plays messages on o0..o5 (wired to the
 * packager's metrics, drift, quarantine, logs, images and frames inputs),
 * with waits until the graph is idle (order across edges) and pauses;
 * `coll` keeps what comes out on queued, dropped and packages. After a
 * run the test opens the store and reads the outbox back, decoding every
 * package as the core would (tlcm_pkg_decode).
 *
 *   test_packager              round trip, batching by count/bytes/age,
 *                              priorities, sanitising, incremental
 *                              metrics, retention and dropped events, bad
 *                              input
 *   test_packager --telemetry  the metrics and logs nodes feeding it, the
 *                              log file's rotation
 *   test_packager --crash      fork, SIGKILL while packaging, reopen:
 *                              every acknowledged item is in the outbox or
 *                              the open package's records, and after the
 *                              restart in the outbox exactly once
 *                              (TLCM_LONG_ROUNDS=N rounds, default 6)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/graph.h"
#include "engine/log.h"
#include "engine/outbox.h"
#include "engine/sched.h"
#include "engine/store.h"
#include "fb/drift_fb.h"
#include "fb/frame_fb.h"
#include "fb/log_fb.h"
#include "fb/metrics_fb.h"
#include "fb/package_event_fb.h"
#include "fb/package_fb.h"
#include "fb/quarantine_fb.h"
#include "nodes/capture/decode.h"
#include "nodes/nodes.h"
#include "nodes/packager/packager.h"
#include "nodes/packager/pkg_util.h"
#include "tests/tlcm_test.h"

static tlcm_registry_t reg;
static char dir[] = "/tmp/tlcm-pkg-XXXXXX";

/* ---- feed: the scripted source ------------------------------------------ */

enum { S_METRICS, S_DRIFT, S_QBAT, S_LOG, S_FRAME, S_JUNK, S_IDLE, S_SLEEP,
       S_LOGS };
enum { O_METRICS, O_DRIFT, O_QUAR, O_LOGS, O_IMAGES, O_FRAMES };

typedef struct {
	int kind, port;
	const char *s;   /* metrics source, log text, junk type */
	const char *kv;  /* metrics "k=v,k=v" (numbers parse as numbers) */
	uint64_t id;     /* frame id, drift frame, log seq, qbat first frame */
	unsigned w, h, ch; /* frame; QBAT: w samples, h thumbnail side (0:
			      none), ch 1: a bad thumbnail */
	unsigned ms;     /* S_SLEEP */
	size_t size;     /* S_LOG: pad the text to this many bytes;
			    S_LOGS: how many logs */
} step_t;

static const step_t *script;
static size_t nscript;

typedef struct {
	size_t at;
	uint64_t until;
	uint64_t logs_sent;
} feed_t;

static int feed_init(tlcm_ctx_t *ctx, void *st)
{
	(void)st;
	tlcm_set_tick(ctx, 1000000);
	return 0;
}

static int emit_metrics(tlcm_ctx_t *ctx, const step_t *s)
{
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, 1024);
	tlcm_fbb_ref_t refs[64];
	size_t n = 0;
	char buf[1024];
	snprintf(buf, sizeof buf, "%s", s->kv ? s->kv : "");
	char *save, *kv = strtok_r(buf, ",", &save);
	for (; kv && n < 64; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		*eq = 0;
		char *end;
		double v = strtod(eq + 1, &end);
		tlcm_fbb_ref_t k = tlcm_fbb_cstring(&b, kv);
		tlcm_fbb_ref_t str = (end == eq + 1 || *end)
			? tlcm_fbb_cstring(&b, eq + 1) : 0;
		tlcm_MetricEntry_start(&b);
		tlcm_MetricEntry_add_key(&b, k);
		if (str)
			tlcm_MetricEntry_add_str(&b, str);
		else
			tlcm_MetricEntry_add_num(&b, v);
		refs[n++] = tlcm_MetricEntry_end(&b);
	}
	tlcm_fbb_ref_t v = tlcm_Metrics_entries_create(&b, refs, n);
	tlcm_fbb_ref_t src = tlcm_fbb_cstring(&b, s->s ? s->s : "m");
	tlcm_Metrics_start(&b);
	tlcm_Metrics_add_time_ns(&b, 1000 + s->id);
	tlcm_Metrics_add_source(&b, src);
	tlcm_Metrics_add_seq(&b, s->id);
	tlcm_Metrics_add_entries(&b, v);
	size_t len;
	const void *d = tlcm_Metrics_finish(&b, tlcm_Metrics_end(&b), &len);
	int rc = tlcm_emit(ctx, s->port, "TMET", d, len);
	tlcm_fbb_fini(&b);
	return rc;
}

static int emit_log(tlcm_ctx_t *ctx, int port, const char *text, size_t pad,
		    uint64_t seq)
{
	char t[8192];
	size_t n = (size_t)snprintf(t, sizeof t, "%s", text ? text : "line");
	while (n < pad && n + 1 < sizeof t)
		t[n++] = 'x';
	t[n] = 0;
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, 256 + n);
	tlcm_fbb_ref_t src = tlcm_fbb_cstring(&b, "feed");
	tlcm_fbb_ref_t tx = tlcm_fbb_cstring(&b, t);
	tlcm_LogLine_start(&b);
	tlcm_LogLine_add_time_ns(&b, 5000 + seq);
	tlcm_LogLine_add_level(&b, tlcm_LogLevel_Info);
	tlcm_LogLine_add_source(&b, src);
	tlcm_LogLine_add_text(&b, tx);
	tlcm_LogLine_add_seq(&b, seq);
	size_t len;
	const void *d = tlcm_LogLine_finish(&b, tlcm_LogLine_end(&b), &len);
	int rc = tlcm_emit(ctx, port, "TLOG", d, len);
	tlcm_fbb_fini(&b);
	return rc;
}

static uint8_t pixel(uint64_t id, unsigned x, unsigned y, unsigned c)
{
	return (uint8_t)(x * 7 + y * 13 + c * 50 + id);
}

static int emit_frame(tlcm_ctx_t *ctx, const step_t *s)
{
	tlcm_fbb_t b;
	size_t n = (size_t)s->w * s->h * s->ch;
	tlcm_fbb_init(&b, 256 + n);
	uint8_t *px;
	tlcm_fbb_ref_t pv = tlcm_fbb_vec_alloc(&b, n, 1, 1, (void **)&px);
	for (unsigned y = 0; y < s->h; y++)
		for (unsigned x = 0; x < s->w; x++)
			for (unsigned c = 0; c < s->ch; c++)
				px[(y * s->w + x) * s->ch + c] =
					pixel(s->id, x, y, c);
	tlcm_fbb_ref_t src = tlcm_fbb_cstring(&b, "test");
	tlcm_Frame_start(&b);
	tlcm_Frame_add_id(&b, s->id);
	tlcm_Frame_add_time_ns(&b, 77);
	tlcm_Frame_add_width(&b, s->w);
	tlcm_Frame_add_height(&b, s->h);
	tlcm_Frame_add_format(&b, s->ch == 3 ? tlcm_PixelFormat_Rgb8
					     : tlcm_PixelFormat_Gray8);
	tlcm_Frame_add_pixels(&b, pv);
	tlcm_Frame_add_label(&b, 3);
	tlcm_Frame_add_source(&b, src);
	size_t len;
	const void *d = tlcm_Frame_finish(&b, tlcm_Frame_end(&b), &len);
	int rc = tlcm_emit(ctx, s->port, "FRAM", d, len);
	tlcm_fbb_fini(&b);
	return rc;
}

static int emit_drift(tlcm_ctx_t *ctx, const step_t *s)
{
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, 256);
	tlcm_fbb_ref_t det = tlcm_fbb_cstring(&b, "drift.knn_distance");
	tlcm_fbb_ref_t node = tlcm_fbb_cstring(&b, "d1");
	tlcm_DriftEvent_start(&b);
	tlcm_DriftEvent_add_kind(&b, tlcm_DriftKind_Start);
	tlcm_DriftEvent_add_detector(&b, det);
	tlcm_DriftEvent_add_node(&b, node);
	tlcm_DriftEvent_add_value(&b, 2.5);
	tlcm_DriftEvent_add_frame_id(&b, s->id);
	size_t len;
	const void *d = tlcm_DriftEvent_finish(&b, tlcm_DriftEvent_end(&b),
					       &len);
	int rc = tlcm_emit(ctx, s->port, "DRFT", d, len);
	tlcm_fbb_fini(&b);
	return rc;
}

static int emit_qbat(tlcm_ctx_t *ctx, const step_t *s)
{
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, 4096);
	tlcm_fbb_ref_t refs[16];
	for (unsigned i = 0; i < s->w && i < 16; i++) {
		float x[2] = {(float)i, 0.5f};
		uint8_t th[64];
		unsigned side = s->h, tl = side * side - (s->ch ? 1 : 0);
		for (unsigned j = 0; j < side * side && j < 64; j++)
			th[j] = (uint8_t)(j * 3 + i);
		tlcm_fbb_ref_t lab = tlcm_fbb_cstring(&b, "A");
		tlcm_fbb_ref_t xv = tlcm_QuarantinedSample_features_create(&b, x,
									   2);
		tlcm_fbb_ref_t tv = side
			? tlcm_QuarantinedSample_thumbnail_create(&b, th, tl)
			: 0;
		tlcm_QuarantinedSample_start(&b);
		tlcm_QuarantinedSample_add_frame_id(&b, s->id + i);
		tlcm_QuarantinedSample_add_label(&b, lab);
		tlcm_QuarantinedSample_add_confidence(&b, 0.25f);
		tlcm_QuarantinedSample_add_features(&b, xv);
		if (tv) {
			tlcm_QuarantinedSample_add_thumb_width(&b,
							       (uint16_t)side);
			tlcm_QuarantinedSample_add_thumb_height(&b,
								(uint16_t)side);
			tlcm_QuarantinedSample_add_thumbnail(&b, tv);
		}
		refs[i] = tlcm_QuarantinedSample_end(&b);
	}
	tlcm_fbb_ref_t sv = tlcm_QuarantineBatch_samples_create(&b, refs, s->w);
	tlcm_fbb_ref_t tr = tlcm_fbb_cstring(&b, "admissions");
	tlcm_QuarantineBatch_start(&b);
	tlcm_QuarantineBatch_add_seq(&b, 1);
	tlcm_QuarantineBatch_add_size(&b, s->w);
	tlcm_QuarantineBatch_add_in_drift(&b, true);
	tlcm_QuarantineBatch_add_trigger(&b, tr);
	tlcm_QuarantineBatch_add_samples(&b, sv);
	size_t len;
	const void *d = tlcm_QuarantineBatch_finish(
		&b, tlcm_QuarantineBatch_end(&b), &len);
	int rc = tlcm_emit(ctx, s->port, "QBAT", d, len);
	tlcm_fbb_fini(&b);
	return rc;
}

static int feed_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	feed_t *f = st;
	for (int budget = 0; budget < 64 && f->at < nscript; budget++) {
		const step_t *s = &script[f->at];
		int rc = 0;
		switch (s->kind) {
		case S_IDLE:
			if (!tlcm_graph_idle(ctx))
				return 0;
			break;
		case S_SLEEP:
			if (!f->until)
				f->until = now + (uint64_t)s->ms * 1000000u;
			if (now < f->until)
				return 0;
			f->until = 0;
			break;
		case S_METRICS:
			rc = emit_metrics(ctx, s);
			break;
		case S_DRIFT:
			rc = emit_drift(ctx, s);
			break;
		case S_QBAT:
			rc = emit_qbat(ctx, s);
			break;
		case S_LOG:
			rc = emit_log(ctx, s->port, s->s, s->size, s->id);
			break;
		case S_LOGS: /* s->size logs, seq id.., a few per tick */
			for (int i = 0; i < 4 && f->logs_sent < s->size; i++)
				rc = emit_log(ctx, s->port, "crash", 64,
					      s->id + f->logs_sent++);
			if (f->logs_sent < s->size)
				return 0;
			f->logs_sent = 0;
			break;
		case S_FRAME:
			rc = emit_frame(ctx, s);
			break;
		case S_JUNK: {
			uint64_t junk[8] = {0x0123456789abcdefull, 42, 7};
			rc = tlcm_emit(ctx, s->port, s->s, junk, sizeof junk);
			break;
		}
		}
		if (rc && rc != TLCM_EAGAIN)
			return rc;
		f->at++;
	}
	return f->at < nscript ? 0 : TLCM_ECLOSED;
}

static const tlcm_port_desc_t feed_out[] = {
	{"o0", "*", "", 0}, {"o1", "*", "", 0}, {"o2", "*", "", 0},
	{"o3", "*", "", 0}, {"o4", "*", "", 0}, {"o5", "*", "", 0}, {0}};

static const tlcm_node_type_t feed_type = {
	.name = "feed", .doc = "plays the test's script",
	.outputs = feed_out, .state_size = sizeof(feed_t),
	.init = feed_init, .tick = feed_tick};

/* ---- coll: what the packager says ------------------------------------------ */

typedef struct {
	char type[5];
	void *data;
	size_t len;
} msg_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static msg_t *got[3];
static size_t ngot[3];

static int coll_process(tlcm_ctx_t *ctx, void *st, int port,
			const tlcm_msg_t *m)
{
	(void)ctx;
	(void)st;
	if (port < 0 || port > 2)
		return 0;
	void *d = aligned_alloc(8, (m->size + 7) & ~(size_t)7);
	memcpy(d, tlcm_msg_data(m), m->size);
	pthread_mutex_lock(&mu);
	got[port] = realloc(got[port], (ngot[port] + 1) * sizeof *got[port]);
	msg_t *g = &got[port][ngot[port]++];
	memcpy(g->type, m->type, 4);
	g->type[4] = 0;
	g->data = d;
	g->len = m->size;
	pthread_mutex_unlock(&mu);
	return 0;
}

static const tlcm_port_desc_t coll_in[] = {
	{"queued", "*", "", TLCM_PORT_OPTIONAL},
	{"dropped", "*", "", TLCM_PORT_OPTIONAL},
	{"packages", "*", "", TLCM_PORT_OPTIONAL}, {0}};

static const tlcm_node_type_t coll_type = {
	.name = "coll", .doc = "keeps the packager's output",
	.inputs = coll_in, .process = coll_process};

static void coll_reset(void)
{
	for (int p = 0; p < 3; p++) {
		for (size_t i = 0; i < ngot[p]; i++)
			free(got[p][i].data);
		free(got[p]);
		got[p] = NULL;
		ngot[p] = 0;
	}
}

/* ---- the log, for checking messages -------------------------------------- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char logbuf[1 << 16];
static size_t loglen;

static void on_log(void *arg, int level, const char *who, const char *msg,
		   unsigned long long t)
{
	(void)arg;
	(void)level;
	(void)t;
	pthread_mutex_lock(&log_mu);
	int n = snprintf(logbuf + loglen, sizeof logbuf - loglen, "[%s] %s\n",
			 who, msg);
	if (n > 0 && (size_t)n < sizeof logbuf - loglen)
		loglen += (size_t)n;
	pthread_mutex_unlock(&log_mu);
}

/* ---- the ack wrapper (crash test) ------------------------------------------ */

static int ack_fd = -1;
static tlcm_node_type_t wrapped;

static int ack_process(tlcm_ctx_t *ctx, void *st, int port,
		       const tlcm_msg_t *m)
{
	int rc = tlcm_node_packager.process(ctx, st, port, m);
	if (!rc && port == 3 && ack_fd >= 0) {
		uint64_t seq = tlcm_LogLine_seq(tlcm_LogLine_as_root(
			tlcm_msg_data(m)));
		if (write(ack_fd, &seq, 8) != 8)
			abort();
	}
	return rc;
}

/* ---- fault injection: the test links with --wrap=tlcm_outbox_put ------------- */

static atomic_int fail_puts; /* this many puts fail with TLCM_EIO */

int __real_tlcm_outbox_put(tlcm_outbox_t *o, const tlcm_outbox_entry_t *e,
			   const void *pkg, size_t len,
			   tlcm_outbox_entry_t *evicted, size_t max_evicted,
			   size_t *nevicted);
int __wrap_tlcm_outbox_put(tlcm_outbox_t *o, const tlcm_outbox_entry_t *e,
			   const void *pkg, size_t len,
			   tlcm_outbox_entry_t *evicted, size_t max_evicted,
			   size_t *nevicted);
int __wrap_tlcm_outbox_put(tlcm_outbox_t *o, const tlcm_outbox_entry_t *e,
			   const void *pkg, size_t len,
			   tlcm_outbox_entry_t *evicted, size_t max_evicted,
			   size_t *nevicted)
{
	if (atomic_load(&fail_puts) > 0) {
		atomic_fetch_sub(&fail_puts, 1);
		if (nevicted)
			*nevicted = 0;
		return TLCM_EIO;
	}
	return __real_tlcm_outbox_put(o, e, pkg, len, evicted, max_evicted,
				      nevicted);
}

/* ---- running ----------------------------------------------------------------- */

static char store_path[128];
static int nstore;

static void new_store(void)
{
	snprintf(store_path, sizeof store_path, "%s/s%d", dir, nstore++);
}

/* Run the script through a packager with params (YAML flow mapping
 * contents); type "packager" or "w.packager". */
static int run_graph(const step_t *s, size_t n, const char *type,
		     const char *params, const char *extra_nodes,
		     const char *extra_edges, tlcm_run_result_t *res)
{
	char path[160], yaml[4096];
	snprintf(path, sizeof path, "%s/g.yaml", dir);
	snprintf(yaml, sizeof yaml,
		 "graph: pkgtest\n"
		 "settings: { workers: 2, introspect: 'off', store: '%s' }\n"
		 "nodes:\n"
		 "  feed: { type: feed }\n"
		 "  pk: { type: %s, params: { %s%s } }\n"
		 "  coll: { type: coll }\n"
		 "%s"
		 "edges:\n"
		 "  - { from: feed.o0, to: pk.metrics, capacity: 1MiB }\n"
		 "  - { from: feed.o1, to: pk.drift }\n"
		 "  - { from: feed.o2, to: pk.quarantine }\n"
		 "  - { from: feed.o3, to: pk.logs, capacity: 1MiB }\n"
		 "  - { from: feed.o4, to: pk.images }\n"
		 "  - { from: feed.o5, to: pk.frames }\n"
		 "  - { from: pk.queued, to: coll.queued }\n"
		 "  - { from: pk.dropped, to: coll.dropped }\n"
		 "  - { from: pk.packages, to: coll.packages, capacity: 4MiB }\n"
		 "%s",
		 store_path, type,
		 strstr(params, "device_id") ? "" : "device_id: dev-1, ", params,
		 extra_nodes ? extra_nodes : "",
		 extra_edges ? extra_edges : "");
	FILE *f = fopen(path, "w");
	fputs(yaml, f);
	fclose(f);
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	int rc = tlcm_graph_load(&g, path, &reg, NULL, 0, &d);
	if (rc) {
		tlcm_diag_print(&d, stderr);
		tlcm_diag_fini(&d);
		memset(res, 0, sizeof *res);
		return rc;
	}
	tlcm_diag_fini(&d);
	script = s;
	nscript = n;
	coll_reset();
	pthread_mutex_lock(&log_mu);
	loglen = 0;
	logbuf[0] = 0;
	pthread_mutex_unlock(&log_mu);
	tlcm_run_opts_t o = {.quiet = true, .headless = true};
	rc = tlcm_graph_run(g, &o, res);
	tlcm_graph_free(g);
	return rc;
}

static void run_ok(const step_t *s, size_t n, const char *params)
{
	tlcm_run_result_t res;
	CHECK_INT(run_graph(s, n, "packager", params, NULL, NULL, &res), 0);
	CHECK_STR(res.why, "");
	tlcm_run_result_fini(&res);
}

#define RUN(s, params) run_ok(s, sizeof s / sizeof s[0], params)

/* ---- reading the outbox ----------------------------------------------------- */

typedef struct {
	tlcm_outbox_entry_t e;
	void *data; /* 8-aligned */
	size_t len;
} pkg_t;

static pkg_t pk[512];
static size_t npk;
static tlcm_outbox_stats_t obst;

static void pkgs_free(void)
{
	for (size_t i = 0; i < npk; i++)
		free(pk[i].data);
	npk = 0;
}

/* Every queued package, in the outbox's order. */
static void outbox_read(void)
{
	pkgs_free();
	tlcm_store_t *s = NULL;
	char why[256];
	tlcm_store_opts_t o = {.sync = TLCM_SYNC_NEVER};
	if (tlcm_store_open(&s, store_path, &o, why, sizeof why)) {
		CHECK(!"store opens");
		fprintf(stderr, "%s\n", why);
		return;
	}
	tlcm_outbox_t *ob = tlcm_store_outbox(s);
	static char skip[512][TLCM_PKG_ID_LEN + 1];
	for (npk = 0; npk < 512; npk++) {
		void *b;
		size_t len;
		if (tlcm_outbox_peek(ob, 255, (const char(*)[37])skip, npk,
				     &pk[npk].e, &b, &len))
			break;
		pk[npk].data = aligned_alloc(8, (len + 7) & ~(size_t)7);
		memcpy(pk[npk].data, b, len);
		free(b);
		pk[npk].len = len;
		memcpy(skip[npk], pk[npk].e.id, sizeof skip[0]);
	}
	tlcm_outbox_stats(ob, &obst);
	tlcm_store_close(s);
}

static tlcm_Package_table_t pkg_at(size_t i)
{
	return tlcm_Package_as_root(pk[i].data);
}

/* The decoded items of package i (free with tlcm_pkg_items_free). */
static tlcm_pkg_item_t *items_of(size_t i, size_t *n)
{
	tlcm_pkg_item_t *it = NULL;
	char why[256] = "";
	*n = 0;
	int rc = tlcm_pkg_decode(pk[i].data, pk[i].len, &it, n, why,
				 sizeof why);
	if (rc)
		fprintf(stderr, "decode: %s\n", why);
	CHECK_INT(rc, 0);
	return it;
}

/* The package of kind k (the first in order), or -1. */
static int find_kind(const char *k)
{
	for (size_t i = 0; i < npk; i++)
		if (!strcmp(pk[i].e.kind, k))
			return (int)i;
	return -1;
}

static size_t count_kind(const char *k)
{
	size_t n = 0;
	for (size_t i = 0; i < npk; i++)
		n += !strcmp(pk[i].e.kind, k);
	return n;
}

static tlcm_Attachment_table_t attachment(tlcm_Package_table_t p,
						const char *name)
{
	for (size_t i = 0; i < tlcm_Package_attachments_len(p); i++) {
		tlcm_Attachment_table_t a = tlcm_Package_attachments_at(p, i);
		if (!strcmp(tlcm_Attachment_name(a), name))
			return a;
	}
	return NULL;
}

static bool has_schema(tlcm_Package_table_t p, const char *name)
{
	for (size_t i = 0; i < tlcm_Package_schemas_len(p); i++)
		if (!strcmp(tlcm_SchemaRef_name(tlcm_Package_schemas_at(p, i)),
			    name))
			return tlcm_SchemaRef_version(
				       tlcm_Package_schemas_at(p, i)) == 1;
	return false;
}

/* The value of key in decoded Metrics m: "REDACTED", "=1.5" for numbers,
 * "-" removed, NULL absent. */
static const char *mval(const void *m, const char *key)
{
	static char buf[8][64];
	static int k;
	tlcm_Metrics_table_t t = tlcm_Metrics_as_root(m);
	for (size_t i = 0; i < tlcm_Metrics_entries_len(t); i++) {
		tlcm_MetricEntry_table_t e = tlcm_Metrics_entries_at(t, i);
		if (strcmp(tlcm_MetricEntry_key(e), key))
			continue;
		if (tlcm_MetricEntry_removed(e))
			return "-";
		if (tlcm_MetricEntry_str(e))
			return tlcm_MetricEntry_str(e);
		k = (k + 1) % 8;
		snprintf(buf[k], sizeof buf[k], "=%g",
			 tlcm_MetricEntry_num(e));
		return buf[k];
	}
	return NULL;
}

static size_t mcount(const void *m)
{
	return tlcm_Metrics_entries_len(tlcm_Metrics_as_root(m));
}

static bool log_has(const char *s)
{
	pthread_mutex_lock(&log_mu);
	bool r = strstr(logbuf, s) != NULL;
	pthread_mutex_unlock(&log_mu);
	if (!r)
		fprintf(stderr, "log lacks \"%s\"; it has:\n%s", s, logbuf);
	return r;
}

/* ---- tests -------------------------------------------------------------------- */

#define M(src_, kv_, id_) {.kind = S_METRICS, .port = O_METRICS, .s = src_, \
			   .kv = kv_, .id = id_}
#define L(seq_) {.kind = S_LOG, .port = O_LOGS, .s = "line", .id = seq_}
#define LP(seq_, pad_) {.kind = S_LOG, .port = O_LOGS, .s = "line", \
			.id = seq_, .size = pad_}
#define IDLE {.kind = S_IDLE}
#define SLEEP(n) {.kind = S_SLEEP, .ms = n}

static void round_trip(const char *compression)
{
	static const step_t s[] = {
		{.kind = S_FRAME, .port = O_FRAMES, .id = 7, .w = 8, .h = 6,
		 .ch = 1},
		IDLE,
		{.kind = S_DRIFT, .port = O_DRIFT, .id = 7},
		IDLE,
		{.kind = S_QBAT, .port = O_QUAR, .id = 100, .w = 2, .h = 4},
		M("m", "a=1,b=two", 1),
		M("m", "a=2,b=two", 2),
		L(1), L(2),
		{.kind = S_FRAME, .port = O_IMAGES, .id = 9, .w = 5, .h = 4,
		 .ch = 3},
		{.kind = S_FRAME, .port = O_IMAGES, .id = 10, .w = 3, .h = 3,
		 .ch = 1},
	};
	char params[256];
	new_store();
	snprintf(params, sizeof params, "compression: %s, metrics_full_every: "
		 "1", compression);
	RUN(s, params);
	outbox_read();
	CHECK_UINT(npk, 4);
	/* order: priority, then age */
	static const char *const kinds[] = {"metrics", "drift_event",
					    "operational_logs",
					    "prediction_images"};
	for (size_t i = 0; i < 4 && i < npk; i++) {
		CHECK_STR(pk[i].e.kind, kinds[i]);
		CHECK_UINT(pk[i].e.priority, i + 1);
		tlcm_Package_table_t p = pkg_at(i);
		CHECK_STR(tlcm_Package_id(p), pk[i].e.id);
		CHECK(tlcm_uuid7_parse(tlcm_Package_id(p), NULL));
		CHECK_STR(tlcm_Package_device_id(p), "dev-1");
		CHECK_STR(tlcm_Package_kind(p), kinds[i]);
		CHECK_UINT(tlcm_Package_priority(p), i + 1);
		CHECK_STR(tlcm_Package_packager(p), "pk");
		CHECK(tlcm_Package_created_ns(p) >= tlcm_Package_opened_ns(p));
		CHECK_INT(tlcm_Package_compression(p),
			  !strcmp(compression, "zstd") ? tlcm_Compression_Zstd
						       : tlcm_Compression_None);
		CHECK_UINT(tlcm_Package_count(p), 2);
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(pk[i].e.id, pk[j].e.id) != 0);
	}
	if (npk != 4)
		return;
	size_t n = 0;
	tlcm_pkg_item_t *it = items_of(0, &n);
	const char *why;
	CHECK_UINT(n, 2);
	CHECK(has_schema(pkg_at(0), "tlcm.Metrics"));
	for (size_t i = 0; i < n; i++) {
		CHECK_STR(it[i].type, "TMET");
		CHECK_INT(tlcm_Metrics_verify_as_root(it[i].data, it[i].len,
						      &why), 0);
	}
	if (n == 2) {
		CHECK_STR(mval(it[0].data, "a"), "=1");
		CHECK_STR(mval(it[0].data, "b"), "two");
		CHECK_STR(mval(it[1].data, "a"), "=2");
		CHECK(!mval(it[1].data, "b")); /* unchanged: left out */
		CHECK(tlcm_Metrics_full(tlcm_Metrics_as_root(it[0].data)));
		CHECK(!tlcm_Metrics_full(tlcm_Metrics_as_root(it[1].data)));
	}
	tlcm_pkg_items_free(it, n);

	/* drift: the event with its frame, the batch with thumbnails */
	tlcm_Package_table_t p = pkg_at(1);
	it = items_of(1, &n);
	CHECK_UINT(n, 2);
	CHECK(has_schema(p, "tlcm.DriftEvent"));
	CHECK(has_schema(p, "tlcm.QuarantineBatch"));
	if (n == 2) {
		CHECK_STR(it[0].type, "DRFT");
		CHECK_INT(tlcm_DriftEvent_verify_as_root(it[0].data, it[0].len,
							 &why), 0);
		CHECK_UINT(tlcm_DriftEvent_frame_id(
				   tlcm_DriftEvent_as_root(it[0].data)), 7);
		CHECK_STR(it[1].type, "QBAT");
		CHECK_INT(tlcm_QuarantineBatch_verify_as_root(it[1].data,
							      it[1].len, &why),
			  0);
		tlcm_QuarantineBatch_table_t qb =
			tlcm_QuarantineBatch_as_root(it[1].data);
		CHECK_UINT(tlcm_QuarantineBatch_samples_len(qb), 2);
		CHECK_UINT(tlcm_QuarantinedSample_features_len(
				   tlcm_QuarantineBatch_samples_at(qb, 1)), 2);
	}
	tlcm_pkg_items_free(it, n);
	CHECK_UINT(tlcm_Package_attachments_len(p), 3);
	tlcm_Attachment_table_t a = attachment(p, "frame-7.png");
	CHECK(a != NULL);
	CHECK_STR(tlcm_Attachment_media_type(a), "image/png");
	CHECK_UINT(tlcm_Attachment_item(a), 0);
	tlcm_image_t img = {0};
	char w[128];
	CHECK_INT(tlcm_png_decode(tlcm_Attachment_data(a),
				  tlcm_Attachment_data_len(a), &img, w,
				  sizeof w), 0);
	CHECK_UINT(img.width, 8);
	CHECK_UINT(img.height, 6);
	CHECK_UINT(img.channels, 1);
	size_t bad = 0;
	for (unsigned y = 0; img.data && y < 6; y++)
		for (unsigned x = 0; x < 8; x++)
			bad += img.data[y * 8 + x] != pixel(7, x, y, 0);
	CHECK_UINT(bad, 0);
	free(img.data);
	a = attachment(p, "thumb-101.png");
	CHECK(a != NULL);
	CHECK_UINT(tlcm_Attachment_item(a), 1);
	memset(&img, 0, sizeof img);
	CHECK_INT(tlcm_png_decode(tlcm_Attachment_data(a),
				  tlcm_Attachment_data_len(a), &img, w,
				  sizeof w), 0);
	CHECK_UINT(img.width, 4);
	CHECK(img.data && img.data[5] == (uint8_t)(5 * 3 + 1));
	free(img.data);
	CHECK(attachment(p, "thumb-100.png") != NULL);

	it = items_of(2, &n);
	CHECK_UINT(n, 2);
	for (size_t i = 0; i < n; i++) {
		CHECK_INT(tlcm_LogLine_verify_as_root(it[i].data, it[i].len,
						      &why), 0);
		CHECK_UINT(tlcm_LogLine_seq(tlcm_LogLine_as_root(it[i].data)),
			   i + 1);
	}
	tlcm_pkg_items_free(it, n);

	/* images: the frames without pixels, the pixels as PNG */
	p = pkg_at(3);
	it = items_of(3, &n);
	CHECK_UINT(n, 2);
	if (n == 2) {
		tlcm_Frame_table_t f = tlcm_Frame_as_root(it[0].data);
		CHECK_INT(tlcm_Frame_verify_as_root(it[0].data, it[0].len,
						    &why), 0);
		CHECK_UINT(tlcm_Frame_id(f), 9);
		CHECK_UINT(tlcm_Frame_pixels_len(f), 0);
		CHECK_UINT(tlcm_Frame_width(f), 5);
		CHECK_INT(tlcm_Frame_label(f), 3);
	}
	tlcm_pkg_items_free(it, n);
	a = attachment(p, "frame-9.png");
	memset(&img, 0, sizeof img);
	CHECK(a && !tlcm_png_decode(tlcm_Attachment_data(a),
				    tlcm_Attachment_data_len(a), &img, w,
				    sizeof w));
	CHECK_UINT(img.channels, 3);
	CHECK(img.data && img.data[3 * (2 * 5 + 4) + 2] == pixel(9, 4, 2, 2));
	free(img.data);

	/* queued events, one per package, and the bytes on `packages` */
	CHECK_UINT(ngot[0], 4);
	CHECK_UINT(ngot[2], 4);
	CHECK_UINT(ngot[1], 0);
	for (size_t i = 0; i < ngot[0]; i++) {
		CHECK_INT(tlcm_PackageEvent_verify_as_root(got[0][i].data,
							   got[0][i].len,
							   &why), 0);
		tlcm_PackageEvent_table_t e =
			tlcm_PackageEvent_as_root(got[0][i].data);
		CHECK_INT(tlcm_PackageEvent_event(e),
			  tlcm_PackageEventKind_Queued);
		CHECK_UINT(tlcm_PackageEvent_packages_len(e), 1);
		tlcm_PackageRef_table_t r = tlcm_PackageEvent_packages_at(e, 0);
		int k = find_kind(tlcm_PackageRef_kind(r));
		CHECK(k >= 0);
		if (k < 0)
			continue;
		CHECK_STR(tlcm_PackageRef_id(r), pk[k].e.id);
		CHECK_UINT(tlcm_PackageRef_priority(r), pk[k].e.priority);
		CHECK_UINT(tlcm_PackageRef_size(r), pk[k].len);
		/* the same bytes went out on `packages` */
		bool same = false;
		for (size_t j = 0; j < ngot[2]; j++)
			same |= got[2][j].len == pk[k].len &&
				!memcmp(got[2][j].data, pk[k].data, pk[k].len);
		CHECK(same);
	}
	pkgs_free();
}

static void batching(void)
{
	/* by count: 3, 3 and the rest at the end */
	static const step_t c[] = {L(1), L(2), L(3), L(4), L(5), L(6), L(7)};
	new_store();
	RUN(c, "batch_count: 3");
	outbox_read();
	CHECK_UINT(npk, 3);
	static const size_t counts[] = {3, 3, 1};
	uint64_t seq = 1;
	for (size_t i = 0; i < npk && i < 3; i++) {
		size_t n;
		tlcm_pkg_item_t *it = items_of(i, &n);
		CHECK_UINT(n, counts[i]);
		for (size_t j = 0; j < n; j++)
			CHECK_UINT(tlcm_LogLine_seq(tlcm_LogLine_as_root(
					   it[j].data)), seq++);
		tlcm_pkg_items_free(it, n);
		if (i)
			CHECK(strcmp(pk[i - 1].e.id, pk[i].e.id) < 0);
	}

	/* by bytes: items of ~1 KiB, at most 2500 bytes a package */
	static const step_t b[] = {LP(1, 1000), LP(2, 1000), LP(3, 1000),
				   LP(4, 1000), LP(5, 1000), LP(6, 1000)};
	new_store();
	RUN(b, "batch_bytes: 2500, compression: none");
	outbox_read();
	CHECK_UINT(npk, 3);
	for (size_t i = 0; i < npk; i++) {
		CHECK_UINT(tlcm_Package_count(pkg_at(i)), 2);
		CHECK(tlcm_Package_raw_size(pkg_at(i)) <= 2500);
	}

	/* by age: two items close by age; the third stays open in the
	 * records (no flush at the end) and the next start queues it */
	static const step_t a[] = {L(1), L(2), SLEEP(600), L(3)};
	new_store();
	RUN(a, "batch_age: 100ms, flush_on_eos: false");
	outbox_read();
	CHECK_UINT(npk, 1);
	if (npk)
		CHECK_UINT(tlcm_Package_count(pkg_at(0)), 2);
	static const step_t none[] = {IDLE};
	tlcm_log_level = TLCM_LOG_INFO;
	RUN(none, "batch_age: 100ms, flush_on_eos: false");
	tlcm_log_level = TLCM_LOG_WARN;
	CHECK(log_has("recovered 1 operational_logs item into package"));
	outbox_read();
	CHECK_UINT(npk, 2);
	if (npk == 2) {
		size_t n;
		tlcm_pkg_item_t *it = items_of(1, &n);
		CHECK_UINT(n, 1);
		if (n)
			CHECK_UINT(tlcm_LogLine_seq(tlcm_LogLine_as_root(
					   it[0].data)), 3);
		tlcm_pkg_items_free(it, n);
		CHECK(strcmp(pk[0].e.id, pk[1].e.id) != 0);
	}
	/* and nothing is left to recover */
	RUN(none, "flush_on_eos: false");
	outbox_read();
	CHECK_UINT(npk, 2);
	pkgs_free();
}

static void priorities(void)
{
	static const step_t s[] = {
		M("m", "x=1", 1), L(1),
		{.kind = S_DRIFT, .port = O_DRIFT, .id = 3},
		{.kind = S_FRAME, .port = O_IMAGES, .id = 4, .w = 2, .h = 2,
		 .ch = 1},
	};
	new_store();
	RUN(s, "priorities: [metrics=3, drift_event=1, operational_logs=2, "
	       "prediction_images=9], kinds: [metrics=metrics, drift=alarm, "
	       "logs=operational_logs, images=prediction_images], "
	       "batch: [alarm count=1]");
	outbox_read();
	CHECK_UINT(npk, 4);
	static const char *const order[] = {"operational_logs", "metrics",
					    "alarm", "prediction_images"};
	static const unsigned prio[] = {2, 3, 4, 9};
	for (size_t i = 0; i < npk && i < 4; i++) {
		CHECK_STR(pk[i].e.kind, order[i]);
		CHECK_UINT(tlcm_Package_priority(pkg_at(i)), prio[i]);
	}
	pkgs_free();
}

static void sanitising(void)
{
	static const step_t s[] = {
		M("m", "wifi.wifi_password=hunter2,mac_address=aa:bb,"
		       "net.eth0.MAC_ADDRESS=cc,wifi_password.backup=x,"
		       "my_wifi_password=kept,cpu=1.5,device.serial=S1,"
		       "token=3", 1),
	};
	new_store();
	RUN(s, "batch_count: 1");
	outbox_read();
	CHECK_UINT(npk, 1);
	size_t n = 0;
	tlcm_pkg_item_t *it = npk ? items_of(0, &n) : NULL;
	if (it && n == 1) {
		const void *m = it[0].data;
		CHECK_STR(mval(m, "wifi.wifi_password"), "REDACTED");
		CHECK_STR(mval(m, "mac_address"), "REDACTED");
		CHECK_STR(mval(m, "net.eth0.MAC_ADDRESS"), "REDACTED");
		CHECK_STR(mval(m, "wifi_password.backup"), "REDACTED");
		CHECK_STR(mval(m, "token"), "REDACTED");
		CHECK_STR(mval(m, "my_wifi_password"), "kept");
		CHECK_STR(mval(m, "cpu"), "=1.5");
		CHECK_STR(mval(m, "device.serial"), "S1");
		/* nothing secret anywhere in the package */
		CHECK(!memmem(pk[0].data, pk[0].len, "hunter2", 7));
	}
	tlcm_pkg_items_free(it, n);
	/* the store never saw it either (items in the records are already
	 * sanitised): run with an open package and look at the files */
	new_store();
	RUN(s, "batch_count: 10, flush_on_eos: false, compression: none");
	char cmd[300];
	snprintf(cmd, sizeof cmd, "grep -rqa hunter2 '%s'", store_path);
	CHECK(system(cmd) != 0);
	snprintf(cmd, sizeof cmd, "grep -rqa my_wifi_password '%s'",
		 store_path);
	CHECK(system(cmd) == 0); /* ... while the rest is there */

	/* configured keys */
	new_store();
	RUN(s, "batch_count: 1, sensitive_keys: [serial, eth0]");
	outbox_read();
	it = npk ? items_of(0, &n) : NULL;
	if (it && n == 1) {
		CHECK_STR(mval(it[0].data, "device.serial"), "REDACTED");
		CHECK_STR(mval(it[0].data, "net.eth0.MAC_ADDRESS"),
			  "REDACTED");
		CHECK_STR(mval(it[0].data, "wifi.wifi_password"), "hunter2");
	}
	tlcm_pkg_items_free(it, n);
	pkgs_free();
}

static void incremental(void)
{
	static const step_t s[] = {
		M("m", "a=1,b=2,c=3", 1), M("m", "a=1,b=5,c=3", 2),
		M("m", "a=1,b=5", 3), M("m", "a=2,b=5", 4),
		M("m", "a=2,b=5", 5), M("m", "a=3,b=5,d=1", 6),
		M("other", "a=1", 7), /* another source: its own values */
	};
	new_store();
	RUN(s, "batch_count: 2, metrics_full_every: 2");
	outbox_read();
	CHECK_UINT(npk, 4);
	tlcm_pkg_item_t *all[4] = {0};
	size_t n[4] = {0};
	for (size_t i = 0; i < npk && i < 4; i++)
		all[i] = items_of(i, &n[i]);
	if (npk == 4 && n[0] == 2 && n[1] == 2 && n[2] == 2 && n[3] == 1) {
		const void *m1 = all[0][0].data, *m2 = all[0][1].data,
			   *m3 = all[1][0].data, *m4 = all[1][1].data,
			   *m5 = all[2][0].data, *m6 = all[2][1].data,
			   *m7 = all[3][0].data;
		/* package 0: full, then only b */
		CHECK(tlcm_Metrics_full(tlcm_Metrics_as_root(m1)));
		CHECK_UINT(mcount(m1), 3);
		CHECK(!tlcm_Metrics_full(tlcm_Metrics_as_root(m2)));
		CHECK_UINT(mcount(m2), 1);
		CHECK_STR(mval(m2, "b"), "=5");
		/* package 1: c went away; then a changed */
		CHECK_UINT(mcount(m3), 1);
		CHECK_STR(mval(m3, "c"), "-");
		CHECK_UINT(mcount(m4), 1);
		CHECK_STR(mval(m4, "a"), "=2");
		/* package 2 (every 2nd): a full snapshot first */
		CHECK(tlcm_Metrics_full(tlcm_Metrics_as_root(m5)));
		CHECK_UINT(mcount(m5), 2);
		CHECK_STR(mval(m5, "a"), "=2");
		CHECK_STR(mval(m5, "b"), "=5");
		CHECK(!mval(m5, "c"));
		CHECK(!tlcm_Metrics_full(tlcm_Metrics_as_root(m6)));
		CHECK_UINT(mcount(m6), 2);
		CHECK_STR(mval(m6, "a"), "=3");
		CHECK_STR(mval(m6, "d"), "=1");
		CHECK_UINT(tlcm_Metrics_seq(tlcm_Metrics_as_root(m6)), 6);
		/* a new source starts with everything */
		CHECK(tlcm_Metrics_full(tlcm_Metrics_as_root(m7)));
		CHECK_STR(tlcm_Metrics_source(tlcm_Metrics_as_root(m7)),
			  "other");
		CHECK_STR(mval(m7, "a"), "=1");
	}
	for (size_t i = 0; i < 4; i++)
		tlcm_pkg_items_free(all[i], n[i]);

	/* off: every item complete */
	new_store();
	RUN(s, "batch_count: 10, metrics_incremental: false");
	outbox_read();
	size_t k = 0;
	tlcm_pkg_item_t *it = npk ? items_of(0, &k) : NULL;
	CHECK_UINT(k, 7);
	for (size_t i = 0; it && i < k; i++)
		CHECK(tlcm_Metrics_full(tlcm_Metrics_as_root(it[i].data)));
	if (it && k == 7)
		CHECK_UINT(mcount(it[4].data), 2);
	tlcm_pkg_items_free(it, k);
	pkgs_free();
}

/* Dropped events: their counts add up to the outbox's evictions, and each
 * names its packages. */
static uint64_t dropped_events(const char *reason, uint64_t *last_total,
			       char (*ids)[37], size_t *nids)
{
	uint64_t sum = 0;
	const char *why;
	for (size_t i = 0; i < ngot[1]; i++) {
		CHECK_INT(tlcm_PackageEvent_verify_as_root(got[1][i].data,
							   got[1][i].len,
							   &why), 0);
		tlcm_PackageEvent_table_t e =
			tlcm_PackageEvent_as_root(got[1][i].data);
		CHECK_INT(tlcm_PackageEvent_event(e),
			  tlcm_PackageEventKind_Dropped);
		if (reason)
			CHECK_STR(tlcm_PackageEvent_reason(e), reason);
		CHECK(tlcm_PackageEvent_count(e) >=
		      tlcm_PackageEvent_packages_len(e));
		sum += tlcm_PackageEvent_count(e);
		*last_total = tlcm_PackageEvent_dropped_total(e);
		for (size_t j = 0; ids && j < tlcm_PackageEvent_packages_len(e);
		     j++)
			snprintf(ids[(*nids)++], 37, "%s",
				 tlcm_PackageRef_id(
					 tlcm_PackageEvent_packages_at(e, j)));
	}
	return sum;
}

static void retention(void)
{
	/* max_bytes: the metrics package (priority 1) stays, the oldest
	 * logs go */
	static const step_t s[] = {
		M("m", "x=1", 1), IDLE,
		LP(1, 300), LP(2, 300), LP(3, 300), LP(4, 300), LP(5, 300),
		LP(6, 300), LP(7, 300), LP(8, 300), LP(9, 300), LP(10, 300),
	};
	new_store();
	RUN(s, "batch_count: 1, compression: none, max_bytes: 2KiB");
	outbox_read();
	CHECK(obst.bytes <= 2048);
	CHECK(obst.evicted > 0);
	uint64_t total = 0;
	static char ids[64][37];
	size_t nids = 0;
	uint64_t sum = dropped_events("max_bytes", &total, ids, &nids);
	CHECK_UINT(sum, obst.evicted);
	CHECK_UINT(total, obst.evicted);
	CHECK_UINT(nids, obst.evicted);
	CHECK_UINT(npk + obst.evicted, 11);
	CHECK_UINT(ngot[0], 11); /* every package was queued, and said so */
	CHECK(find_kind("metrics") == 0);
	/* the survivors are the newest logs */
	uint64_t lowest = UINT64_MAX;
	for (size_t i = 0; i < npk; i++) {
		if (strcmp(pk[i].e.kind, "operational_logs"))
			continue;
		size_t n;
		tlcm_pkg_item_t *it = items_of(i, &n);
		if (n && tlcm_LogLine_seq(tlcm_LogLine_as_root(it[0].data)) <
				 lowest)
			lowest = tlcm_LogLine_seq(
				tlcm_LogLine_as_root(it[0].data));
		tlcm_pkg_items_free(it, n);
	}
	CHECK_UINT(lowest, 11 - count_kind("operational_logs"));
	for (size_t i = 0; i < nids; i++)
		for (size_t j = 0; j < npk; j++)
			CHECK(strcmp(ids[i], pk[j].e.id) != 0);
	CHECK(log_has("dropped 1 package (max_bytes, first "));

	/* a package larger than max_bytes alone: dropped, counted, said */
	static const step_t big[] = {L(1), IDLE, LP(2, 3000), IDLE, L(3)};
	new_store();
	RUN(big, "batch_count: 1, compression: none, max_bytes: 2KiB");
	outbox_read();
	CHECK_UINT(npk, 2);
	CHECK_UINT(dropped_events("too_big", &total, NULL, NULL), 1);
	CHECK_UINT(total, 1);
	CHECK(log_has("is larger than max_bytes: dropped"));
	/* the count survives a restart: nothing new to report then */
	static const step_t none[] = {IDLE};
	RUN(none, "batch_count: 1, compression: none, max_bytes: 2KiB");
	CHECK_UINT(ngot[1], 0);

	/* max_age: packages older than the offline tolerance go */
	static const step_t old[] = {L(1), L(2), SLEEP(1200)};
	new_store();
	RUN(old, "batch_count: 1, max_age: 300ms, expire_every: 50ms, "
		 "batch_age: 100ms");
	outbox_read();
	CHECK_UINT(npk, 0);
	CHECK_UINT(dropped_events("max_age", &total, NULL, NULL), 2);
	CHECK_UINT(total, 2);
	CHECK_UINT(obst.evicted, 2);
	pkgs_free();
}

static void bad_input(void)
{
	static const step_t s[] = {
		{.kind = S_JUNK, .port = O_DRIFT, .s = "BLOB"},
		{.kind = S_JUNK, .port = O_DRIFT, .s = "DRFT"},
		M("m", "=1", 1),
		M("m", "a=1,a=2", 2),
		{.kind = S_QBAT, .port = O_QUAR, .id = 100, .w = 1, .h = 4,
		 .ch = 1},
		{.kind = S_JUNK, .port = O_LOGS, .s = "TLOG"},
		{.kind = S_FRAME, .port = O_IMAGES, .id = 5, .w = 0, .h = 4,
		 .ch = 1},
		L(1),
	};
	new_store();
	tlcm_run_result_t res;
	CHECK_INT(run_graph(s, sizeof s / sizeof s[0], "packager", "",
			    NULL, NULL, &res), 0);
	CHECK_STR(res.why, "");
	CHECK_UINT(res.nodes ? res.nodes[1].errors : 0, 7);
	tlcm_run_result_fini(&res);
	CHECK(log_has("[pk] drift: expected a DriftEvent (DRFT), got a "
		      "'BLOB' message"));
	CHECK(log_has("[pk] drift: invalid DriftEvent"));
	CHECK(log_has("metrics: Metrics from 'm': entry 0: key of 0 bytes"));
	CHECK(log_has("metrics: Metrics from 'm': key 'a' twice"));
	CHECK(log_has("quarantine: batch 1, sample 0 (frame 100): thumbnail "
		      "of 15 bytes is not 4x4"));
	outbox_read();
	CHECK_UINT(npk, 1); /* the good line, packaged */
	if (npk)
		CHECK_STR(pk[0].e.kind, "operational_logs");
	/* the first five bad messages are logged, then one in 1000: the
	 * others in a run of their own */
	static const step_t s2[] = {
		{.kind = S_JUNK, .port = O_LOGS, .s = "TLOG"},
		{.kind = S_FRAME, .port = O_IMAGES, .id = 5, .w = 0, .h = 4,
		 .ch = 1},
		L(1),
	};
	RUN(s2, "");
	CHECK(log_has("[pk] logs: invalid LogLine"));
	CHECK(log_has("[pk] images: frame 5: 0 pixel bytes for 0x4"));
	outbox_read();
	CHECK_UINT(npk, 2);

	/* a graph without a store: init says what is missing */
	char path[160];
	snprintf(path, sizeof path, "%s/nostore.yaml", dir);
	FILE *f = fopen(path, "w");
	fputs("graph: nostore\nsettings: { introspect: 'off' }\nnodes:\n"
	      "  feed: { type: feed }\n  pk: { type: packager, params: "
	      "{ device_id: d } }\nedges:\n"
	      "  - { from: feed.o3, to: pk.logs }\n", f);
	fclose(f);
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	CHECK_INT(tlcm_graph_load(&g, path, &reg, NULL, 0, &d), 0);
	tlcm_diag_fini(&d);
	pthread_mutex_lock(&log_mu);
	loglen = 0;
	pthread_mutex_unlock(&log_mu);
	script = s;
	nscript = 0;
	tlcm_run_opts_t o = {.quiet = true, .headless = true};
	CHECK(g && tlcm_graph_run(g, &o, &res) != 0);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
	CHECK(log_has("needs the graph's store for its outbox"));

	/* bad parameters */
	static const char *const bad[] = {
		"kinds: [nope=metrics]", "kinds: [logs=Bad-Kind]",
		"priorities: [metrics=0]", "batch: [metrics count=x]",
		"device_id: 'a b'",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		new_store();
		CHECK(run_graph(s, 0, "packager", bad[i], NULL, NULL, &res)
		      != 0);
		tlcm_run_result_fini(&res);
	}
	pkgs_free();
}

/* The outbox refuses a put (full disk): the package stays open, its items
 * in the records, and the next close queues it whole; a package recovered
 * at start that cannot be queued takes no new item before it is. */
static void put_failures(void)
{
	static const step_t s[] = {L(1), L(2), IDLE, L(3)};
	new_store();
	atomic_store(&fail_puts, 1);
	RUN(s, "batch_count: 2");
	CHECK(log_has("in the outbox (1 failures so far; kept, retrying): "));
	outbox_read();
	CHECK_UINT(npk, 1);
	if (npk)
		CHECK_UINT(tlcm_Package_count(pkg_at(0)), 3);

	static const step_t one[] = {L(1)};
	static const step_t two[] = {IDLE, L(2)};
	new_store();
	RUN(one, "flush_on_eos: false");
	atomic_store(&fail_puts, 1);
	RUN(two, "flush_on_eos: true");
	CHECK(log_has("cannot queue the 1 recovered operational_logs items"));
	outbox_read();
	CHECK_UINT(npk, 2);
	for (size_t i = 0; i < npk && i < 2; i++) {
		size_t n = 0;
		tlcm_pkg_item_t *it = items_of(i, &n);
		CHECK_UINT(n, 1);
		if (n)
			CHECK_UINT(tlcm_LogLine_seq(tlcm_LogLine_as_root(
					   it[0].data)), i + 1);
		tlcm_pkg_items_free(it, n);
	}
	CHECK_INT(atomic_load(&fail_puts), 0);
	pkgs_free();
}

static void unit(void)
{
	/* UUIDv7: valid, increasing within a millisecond and when the
	 * clock steps back */
	tlcm_uuid7_t g = {0};
	char a[37], b[37];
	uint64_t ms;
	CHECK_INT(tlcm_uuid7_next(&g, 1700000000123456789ull, a), 0);
	CHECK(tlcm_uuid7_parse(a, &ms));
	CHECK_UINT(ms, 1700000000123ull);
	CHECK(a[14] == '7');
	for (int i = 0; i < 5000; i++) {
		CHECK_INT(tlcm_uuid7_next(&g, i == 2000 ? 1600000000000000000ull
						       : 1700000000123456789ull,
					  b), 0);
		if (strcmp(a, b) >= 0) {
			CHECK(strcmp(a, b) < 0);
			break;
		}
		memcpy(a, b, sizeof a);
	}
	CHECK(!tlcm_uuid7_parse("0192f4c1-7a2b-4c3d-8e4f-5a6b7c8d9e0f", NULL));
	CHECK(!tlcm_uuid7_parse("0192F4C1-7A2B-7C3D-8E4F-5A6B7C8D9E0F", NULL));
	CHECK(tlcm_uuid7_parse("0192f4c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f", NULL));
	/* sensitive paths */
	CHECK(tlcm_key_sensitive("a.wifi.password.b", 17, "wifi.password"));
	CHECK(!tlcm_key_sensitive("a.wifi.passwords", 16, "wifi.password"));
	CHECK(!tlcm_key_sensitive("xmac_address", 12, "mac_address"));
	/* a corrupt package is refused with a reason */
	char why[128] = "";
	tlcm_pkg_item_t *it;
	size_t n = 0;
	uint64_t junk[4] = {1, 2, 3, 4};
	CHECK_INT(tlcm_pkg_decode(junk, sizeof junk, &it, &n, why, sizeof why),
		  TLCM_EBADMSG);
	CHECK(why[0] != 0);
}

/* ---- telemetry ---------------------------------------------------------------- */

typedef struct {
	int n;
} chat_t;

static int chat_init(tlcm_ctx_t *ctx, void *st)
{
	(void)st;
	tlcm_set_tick(ctx, 2000000);
	return 0;
}

static int chat_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	chat_t *c = st;
	(void)now;
	if (c->n == 40)
		return TLCM_ECLOSED;
	tlcm_node_log(ctx, TLCM_LOG_WARN, "chatter line %d %0100d", c->n, 0);
	c->n++;
	return 0;
}

static const tlcm_node_type_t chat_type = {
	.name = "chatter", .doc = "logs 40 lines", .state_size = sizeof(chat_t),
	.init = chat_init, .tick = chat_tick};

static bool file_exists(const char *p, off_t *size)
{
	struct stat st;
	if (stat(p, &st))
		return false;
	if (size)
		*size = st.st_size;
	return true;
}

static void telemetry(void)
{
	char nodes[1024], edges[256], logf[160];
	snprintf(logf, sizeof logf, "%s/dev.log", dir);
	snprintf(nodes, sizeof nodes,
		 "  chat: { type: chatter }\n"
		 "  mx: { type: metrics, params: { interval: 20ms, "
		 "extra: [wifi_password=hunter2, site=lab, rooms=3] } }\n"
		 "  lg: { type: logs, params: { level: warn, file: '%s', "
		 "max_file_size: 1KiB, keep_files: 2 } }\n", logf);
	snprintf(edges, sizeof edges,
		 "  - { from: mx.out, to: pk.metrics, capacity: 1MiB }\n"
		 "  - { from: lg.out, to: pk.logs, capacity: 1MiB }\n");
	static const step_t none[] = {IDLE};
	new_store();
	tlcm_run_result_t res;
	CHECK_INT(run_graph(none, 0, "packager", "batch_count: 1000",
			    nodes, edges, &res), 0);
	CHECK_STR(res.why, "");
	tlcm_run_result_fini(&res);
	outbox_read();
	int m = find_kind("metrics"), l = find_kind("operational_logs");
	CHECK(m >= 0);
	CHECK(l >= 0);
	size_t n = 0;
	tlcm_pkg_item_t *it = m >= 0 ? items_of((size_t)m, &n) : NULL;
	CHECK(it && n >= 1);
	if (it && n) {
		const void *x = it[0].data;
		CHECK(tlcm_Metrics_full(tlcm_Metrics_as_root(x)));
		CHECK_STR(tlcm_Metrics_source(tlcm_Metrics_as_root(x)), "mx");
		CHECK_STR(mval(x, "graph.name"), "pkgtest");
		CHECK_STR(mval(x, "wifi_password"), "REDACTED");
		CHECK_STR(mval(x, "site"), "lab");
		CHECK_STR(mval(x, "rooms"), "=3");
		CHECK(mval(x, "node.chat.state") != NULL);
		CHECK_STR(mval(x, "node.pk.type"), "packager");
		CHECK(mval(x, "node.pk.in") != NULL);
		CHECK(mval(x, "edge.mx:out->pk:metrics.messages") != NULL);
		CHECK(mval(x, "outbox.packages") != NULL);
		const char *rss = mval(x, "process.rss_bytes");
		CHECK(rss && atof(rss + 1) > 1e6);
		CHECK(mval(x, "process.cpu_seconds") != NULL);
		/* later ones are deltas: the counters changed, the name not */
		if (n > 1) {
			CHECK(!tlcm_Metrics_full(tlcm_Metrics_as_root(
				it[n - 1].data)));
			CHECK(!mval(it[n - 1].data, "graph.name"));
		}
	}
	tlcm_pkg_items_free(it, n);
	/* every chatter line arrived, in order, as WARN from "chat" */
	int next = 0;
	uint64_t last_seq = 0;
	for (size_t i = 0; i < npk; i++) {
		if (strcmp(pk[i].e.kind, "operational_logs"))
			continue;
		it = items_of(i, &n);
		for (size_t j = 0; j < n; j++) {
			tlcm_LogLine_table_t t = tlcm_LogLine_as_root(
				it[j].data);
			CHECK(tlcm_LogLine_seq(t) > last_seq);
			last_seq = tlcm_LogLine_seq(t);
			char want[32];
			snprintf(want, sizeof want, "chatter line %d ", next);
			if (!strcmp(tlcm_LogLine_source(t), "chat") &&
			    !strncmp(tlcm_LogLine_text(t), want,
				     strlen(want))) {
				CHECK_INT(tlcm_LogLine_level(t),
					  tlcm_LogLevel_Warn);
				next++;
			}
		}
		tlcm_pkg_items_free(it, n);
	}
	CHECK_INT(next, 40);
	/* the file rotated: dev.log, .1 and .2 kept, no .3 */
	char p[200];
	off_t sz = 0;
	CHECK(file_exists(logf, &sz));
	CHECK(sz <= 1024);
	snprintf(p, sizeof p, "%s.1", logf);
	CHECK(file_exists(p, &sz));
	CHECK(sz > 512 && sz <= 1024);
	snprintf(p, sizeof p, "%s.2", logf);
	CHECK(file_exists(p, NULL));
	snprintf(p, sizeof p, "%s.3", logf);
	CHECK(!file_exists(p, NULL));
	char cmd[300];
	snprintf(cmd, sizeof cmd, "grep -q 'WARN  \\[chat\\] chatter line 39 ' "
		 "'%s'", logf);
	CHECK_INT(system(cmd), 0);
	pkgs_free();
}

/* ---- crash ---------------------------------------------------------------------- */

typedef struct {
	uint64_t *v;
	size_t n;
} seqs_t;

static void seq_add(seqs_t *s, uint64_t v)
{
	s->v = realloc(s->v, (s->n + 1) * sizeof *s->v);
	s->v[s->n++] = v;
}

static int rec_item(void *arg, const void *key, size_t klen, const void *val,
		    size_t vlen)
{
	seqs_t *s = arg;
	const char *k = key;
	/* "rec/k/<kind>/i/<seq>" */
	if (klen < 4 || !memmem(k, klen, "/i/", 3) || vlen < 16)
		return 0;
	const uint8_t *v = val;
	void *copy = aligned_alloc(8, (vlen + 7) & ~(size_t)7);
	memcpy(copy, v, vlen);
	const char *why;
	if (!memcmp(copy, "TLOG", 4) &&
	    !tlcm_LogLine_verify_as_root((uint8_t *)copy + 8, vlen - 8, &why))
		seq_add(s, tlcm_LogLine_seq(tlcm_LogLine_as_root(
				   (uint8_t *)copy + 8)));
	free(copy);
	return 0;
}

static void outbox_seqs(seqs_t *s)
{
	for (size_t i = 0; i < npk; i++) {
		size_t n;
		tlcm_pkg_item_t *it = items_of(i, &n);
		for (size_t j = 0; j < n; j++)
			seq_add(s, tlcm_LogLine_seq(tlcm_LogLine_as_root(
					   it[j].data)));
		tlcm_pkg_items_free(it, n);
	}
}

static size_t times(const seqs_t *s, uint64_t v)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		n += s->v[i] == v;
	return n;
}

#define CRASH_LOGS 400

/* Fault injection (the test links with --wrap=tlcm_records_write): with
 * kill_on_forget set, the process dies just before the records of a
 * package that went into the outbox are deleted — the crash window
 * between the two batches, hit every time. */
static bool kill_on_forget;
int __real_tlcm_records_write(tlcm_ctx_t *ctx, const tlcm_record_op_t *ops,
			      size_t n);
int __wrap_tlcm_records_write(tlcm_ctx_t *ctx, const tlcm_record_op_t *ops,
			      size_t n);
int __wrap_tlcm_records_write(tlcm_ctx_t *ctx, const tlcm_record_op_t *ops,
			      size_t n)
{
	for (size_t i = 0; kill_on_forget && i < n; i++)
		if (!ops[i].val && memmem(ops[i].key, ops[i].klen, "/i/", 3))
			raise(SIGKILL);
	return __real_tlcm_records_write(ctx, ops, n);
}

/* Killed between the put and the delete: the package is in the outbox
 * and its items (but the one that closed it) in the records. The restart
 * queues them under the same id: a no-op while it is queued; when the
 * uploader had delivered it in between, a copy under the same id, which
 * the core answers `duplicate`. */
static void crash_window(bool delivered)
{
	static const step_t s[] = {L(1), L(2), L(3), L(4), L(5)};
	static const step_t none[] = {IDLE};
	new_store();
	pid_t pid = fork();
	if (pid == 0) {
		kill_on_forget = true;
		tlcm_run_result_t res;
		run_graph(s, 5, "packager", "batch_count: 3, flush_on_eos: "
			  "false", NULL, NULL, &res);
		_exit(0);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	outbox_read();
	CHECK_UINT(npk, 1);
	char id[37] = "";
	if (npk) {
		snprintf(id, sizeof id, "%s", pk[0].e.id);
		CHECK_UINT(tlcm_Package_count(pkg_at(0)), 3);
	}
	if (delivered) {
		tlcm_store_t *st = NULL;
		char why[256];
		tlcm_store_opts_t o = {0};
		CHECK_INT(tlcm_store_open(&st, store_path, &o, why, sizeof why),
			  0);
		if (st) {
			CHECK_INT(tlcm_outbox_done(tlcm_store_outbox(st), id), 0);
			tlcm_store_close(st);
		}
	}
	tlcm_run_result_t res;
	CHECK_INT(run_graph(none, 1, "packager", "batch_count: 3", NULL, NULL,
			    &res), 0);
	tlcm_run_result_fini(&res);
	outbox_read();
	CHECK_UINT(npk, 1);
	if (!npk)
		return;
	CHECK_STR(pk[0].e.id, id);
	size_t n = 0;
	tlcm_pkg_item_t *it = items_of(0, &n);
	/* queued: the first copy, all three; delivered: the same id again
	 * with the two that were acknowledged */
	CHECK_UINT(n, delivered ? 2 : 3);
	for (size_t i = 0; i < n; i++)
		CHECK_UINT(tlcm_LogLine_seq(tlcm_LogLine_as_root(it[i].data)),
			   i + 1);
	tlcm_pkg_items_free(it, n);
	pkgs_free();
}

static void crash_round(int round, unsigned *seed)
{
	static const step_t s[] = {
		{.kind = S_LOGS, .port = O_LOGS, .id = 1, .size = CRASH_LOGS}};
	static const step_t none[] = {IDLE};
	const char *params = "batch_count: 7, flush_on_eos: false";
	new_store();
	char ackp[200];
	snprintf(ackp, sizeof ackp, "%s/acks%d", dir, round);
	int fd = open(ackp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	CHECK(fd >= 0);
	pid_t pid = fork();
	if (pid == 0) {
		ack_fd = fd;
		tlcm_run_result_t res;
		int rc = run_graph(s, 1, "w.packager", params, NULL, NULL,
				   &res);
		_exit(rc ? 3 : 0);
	}
	close(fd);
	/* kill while packaging: after the first acknowledgement (a kill
	 * while the store is being created is the store's business) */
	struct stat ast;
	for (int i = 0; i < 20000 && (stat(ackp, &ast) || !ast.st_size) &&
			!waitpid(pid, NULL, WNOHANG); i++)
		usleep(1000);
	unsigned ms = rand_r(seed) % 700;
	usleep(ms * 1000);
	kill(pid, SIGKILL);
	int status = 0;
	waitpid(pid, &status, 0);
	bool killed = WIFSIGNALED(status);
	if (!killed)
		CHECK_INT(WEXITSTATUS(status), 0);

	size_t alen = 0;
	unsigned char *ab = tlcm_test_read_file(ackp, &alen);
	seqs_t acked = {0};
	for (size_t i = 0; i + 8 <= alen; i += 8) {
		uint64_t v;
		memcpy(&v, ab + i, 8);
		seq_add(&acked, v);
	}
	free(ab);

	/* reopened: each acknowledged item in the outbox or the records */
	outbox_read();
	seqs_t there = {0};
	outbox_seqs(&there);
	size_t in_outbox = there.n;
	tlcm_store_t *st = NULL;
	char why[256];
	tlcm_store_opts_t o = {.sync = TLCM_SYNC_NEVER};
	CHECK_INT(tlcm_store_open(&st, store_path, &o, why, sizeof why), 0);
	if (st) {
		tlcm_store_scan(st, "node/pk", "rec/k/", 6, rec_item, &there);
		tlcm_store_close(st);
	}
	size_t missing = 0;
	for (size_t i = 0; i < acked.n; i++)
		missing += !times(&there, acked.v[i]);
	CHECK_UINT(missing, 0);

	/* restarted: every one in the outbox, exactly once */
	tlcm_run_result_t res;
	CHECK_INT(run_graph(none, 1, "packager", "flush_on_eos: true", NULL,
			    NULL, &res), 0);
	tlcm_run_result_fini(&res);
	outbox_read();
	seqs_t after = {0};
	outbox_seqs(&after);
	missing = 0;
	size_t twice = 0, bogus = 0;
	for (size_t i = 0; i < acked.n; i++)
		missing += times(&after, acked.v[i]) != 1;
	for (size_t i = 0; i < after.n; i++) {
		twice += times(&after, after.v[i]) > 1;
		bogus += after.v[i] < 1 || after.v[i] > CRASH_LOGS;
	}
	CHECK_UINT(missing, 0);
	CHECK_UINT(twice, 0);
	CHECK_UINT(bogus, 0);
	CHECK(after.n >= acked.n);
	fprintf(stderr, "crash round %d: %s after %u ms, %zu acknowledged, "
		"%zu in the outbox then %zu after the restart (%zu "
		"packages)\n", round, killed ? "killed" : "finished", ms,
		acked.n, in_outbox, after.n, npk);
	free(acked.v);
	free(there.v);
	free(after.v);
	pkgs_free();
}

static void crash(void)
{
	int rounds = getenv("TLCM_LONG_ROUNDS")
		? atoi(getenv("TLCM_LONG_ROUNDS")) : 6;
	unsigned seed = (unsigned)time(NULL);
	fprintf(stderr, "crash: seed %u\n", seed);
	wrapped = tlcm_node_packager;
	wrapped.name = "w.packager";
	wrapped.process = ack_process;
	tlcm_registry_add(&reg, &wrapped);
	crash_window(false);
	crash_window(true);
	for (int r = 0; r < rounds; r++)
		crash_round(r, &seed);
}

int main(int argc, char **argv)
{
	tlcm_log_level = TLCM_LOG_WARN;
	CHECK(mkdtemp(dir) != NULL);
	tlcm_builtin_nodes(&reg);
	tlcm_registry_add(&reg, &feed_type);
	tlcm_registry_add(&reg, &coll_type);
	tlcm_registry_add(&reg, &chat_type);
	tlcm_log_subscribe(on_log, NULL);
	const char *mode = argc > 1 ? argv[1] : "";
	if (!strcmp(mode, "--crash")) {
		tlcm_log_level = TLCM_LOG_ERROR;
		crash();
	} else if (!strcmp(mode, "--telemetry")) {
		telemetry();
	} else {
		unit();
		round_trip("zstd");
		round_trip("none");
		batching();
		priorities();
		sanitising();
		incremental();
		retention();
		bad_input();
		put_failures();
	}
	tlcm_log_unsubscribe(on_log, NULL);
	coll_reset();
	tlcm_registry_fini(&reg);
	char cmd[96];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	CHECK_INT(system(cmd), 0);
	return tlcm_test_done();
}
