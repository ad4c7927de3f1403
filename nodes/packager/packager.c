/* packager.c — node `packager`: collect messages by kind into packages
 * (schemas/package.fbs, docs/api.md) and put them in the store's outbox
 * (engine/outbox.h), where the uploader finds them.
 *
 * Each input port feeds a kind (`metrics`, `drift_event`,
 * `operational_logs`, `prediction_images`, configurable); each kind has
 * at most one open package, closed by count, by bytes or by age (tick),
 * and at end of stream. Closing builds the package — UUIDv7 id fixed when
 * the package opened, device id, schema versions, the items `[u32 LE
 * length][FlatBuffer]` compressed with zstd, PNG attachments — and puts
 * it in the outbox, which applies retention (max_bytes, max_age) in the
 * same batch: evicted packages come back to us and leave as a counted
 * Dropped event on `dropped` and a log line — as does a package the
 * outbox refuses because only more important ones could make room for
 * it (TLCM_ENOSPC: it is the least important one then). Each queued
 * package is announced on `queued` (the uploader syncs at once for a
 * drift).
 * Metrics are sanitised (sensitive keys → "REDACTED") and made
 * incremental on the way in (pkg_metrics.h), so nothing sensitive ever
 * reaches the disk.
 *
 * Nothing acknowledged is lost. An item is acknowledged when process()
 * returns; by then it is on disk, in the node's records or in the outbox:
 *   - an item that does not close its package is written to the records
 *     ("k/<kind>/i/<seq>", its attachments "k/<kind>/a/<seq>", with the
 *     package's id in "k/<kind>/m" next to the first item) in one atomic
 *     batch before process() returns;
 *   - an item that closes its package goes straight into the package,
 *     which is put in the outbox (one atomic batch), and then the records
 *     of the package are deleted (a second batch).
 * Crash windows: before a records write or a put, the message being
 * processed was not acknowledged (it dies with the ring, like any
 * in-flight message); the package's earlier items are in the records.
 * Between the put and the delete the items are in both places: at start
 * the records are always closed into a package under the id they
 * recorded, and putting an id that is queued is a no-op — or, when the
 * uploader had already delivered it in that window, the copy goes up
 * again and the core answers `duplicate`. Either way every item reaches
 * the core once. A recovered package is closed at once (never reopened),
 * since its id may already be known to the core. Retention runs inside
 * the outbox's batch, and the outbox keeps its eviction count there, so
 * the count of dropped packages survives any crash (an event may be
 * repeated after one, the total is exact).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/graph.h"
#include "engine/log.h"
#include "engine/outbox.h"
#include "fb/drift_fb.h"
#include "fb/frame_fb.h"
#include "fb/log_fb.h"
#include "fb/metrics_fb.h"
#include "fb/package_event_fb.h"
#include "fb/package_fb.h"
#include "fb/quarantine_fb.h"
#include "nodes/packager/packager.h"
#include "nodes/packager/pkg_metrics.h"
#include "nodes/packager/pkg_util.h"

#define MAX_KINDS 16
#define MAX_EVICTED 256
#define META_MAGIC "PKM1"
#define COUNTERS_MAGIC "PKC1"

enum { IN_METRICS, IN_DRIFT, IN_QUARANTINE, IN_LOGS, IN_IMAGES, IN_FRAMES,
       NIN };
enum { OUT_QUEUED, OUT_DROPPED, OUT_PACKAGES };

typedef struct {
	uint64_t seq;    /* record key */
	char type[4];
	uint8_t *data;   /* 8-byte aligned copy */
	size_t len;
} item_t;

typedef struct {
	uint64_t seq;
	uint32_t item;   /* index of its item in the package */
	char *name, *media;
	uint8_t *data;
	size_t len;
} att_t;

typedef struct {
	char name[TLCM_PKG_KIND_MAX + 1];
	uint8_t priority;
	uint64_t max_count, max_bytes, max_age_ns;
	/* the open package */
	bool open, meta_written;
	bool configured; /* named by the parameters (else: from records) */
	bool sealed;     /* recovered: must be queued before anything else
			    joins it (its id may be known to the core) */
	char id[TLCM_PKG_ID_LEN + 1];
	uint64_t opened_ns; /* wall clock */
	item_t *items;
	size_t n, cap, raw;  /* raw: payload bytes, length words included */
	att_t *atts;
	size_t na, acap, att_bytes;
	uint64_t closed;     /* packages closed this run */
} kind_t;

typedef struct {
	int port;
	void *data;
	size_t len;
} event_t;

typedef struct {
	uint64_t id;
	unsigned w, h;
	int ch;
	uint8_t *px;
} cframe_t;

/* On-disk layouts (little-endian hosts only, like every TinyLCM
 * target): the meta record of an open package, and the counters. */
typedef struct {
	char magic[4];
	uint8_t priority;
	uint8_t pad[3];
	uint64_t opened_ns;
	char id[40];
} meta_rec_t;

typedef struct {
	char magic[4];
	uint32_t pad;
	uint64_t too_big;
	uint64_t reported; /* dropped packages already reported */
	uint64_t no_room;  /* refused by a full outbox (absent in records
			      written before it: 24 bytes) */
} counters_rec_t;

#define COUNTERS_V1_SIZE 24
_Static_assert(offsetof(counters_rec_t, no_room) == COUNTERS_V1_SIZE,
	       "the counters record only grows at its end");

typedef struct {
	/* parameters */
	char device[65];
	int port_kind[NIN]; /* index into kinds, -1: not packaged */
	kind_t kinds[MAX_KINDS];
	size_t nkinds;
	bool zstd;
	int level;
	tlcm_outbox_limits_t lim;
	uint64_t expire_every;
	tlcm_mopts_t mo;
	bool attach, flush_eos;
	size_t frame_cap;
	/* running */
	tlcm_outbox_t *ob;
	tlcm_uuid7_t uuid;
	tlcm_mstate_t *ms;
	tlcm_fbb_t mb; /* metrics rewrite */
	cframe_t *frames;
	size_t frame_next;
	uint64_t seq;
	event_t *ev;
	size_t nev, evcap;
	char (*stale)[TLCM_PKG_KIND_MAX + 24]; /* record keys to delete */
	size_t nstale, stalecap;
	uint64_t next_expire;
	/* counters */
	uint64_t items, queued, bad, too_big, no_room, reported,
		write_failures, put_failures, recovered;
} pk_t;

static const tlcm_port_desc_t inputs[] = {
	{"metrics", "TMET", "Metrics (node `metrics`): kind `metrics`",
	 TLCM_PORT_OPTIONAL},
	{"drift", "DRFT", "drift events: kind `drift_event`",
	 TLCM_PORT_OPTIONAL},
	{"quarantine", "QBAT", "quarantine batches — the samples, their "
	 "features and thumbnails, for labelling at the core: kind "
	 "`drift_event`", TLCM_PORT_OPTIONAL},
	{"logs", "TLOG", "log lines (node `logs`): kind `operational_logs`",
	 TLCM_PORT_OPTIONAL},
	{"images", "FRAM", "frames kept as PNG images: kind "
	 "`prediction_images`", TLCM_PORT_OPTIONAL},
	{"frames", "FRAM", "recent frames, so that a drift event carries its "
	 "frame as a PNG (not packaged themselves)", TLCM_PORT_OPTIONAL},
	{0},
};

static const char *const port_names[NIN] = {
	"metrics", "drift", "quarantine", "logs", "images", "frames"};

static const tlcm_port_desc_t outputs[] = {
	{"queued", "TPKE", "a Queued PackageEvent per package put in the "
	 "outbox (for the uploader)", 0},
	{"dropped", "TPKE", "a Dropped PackageEvent whenever packages are "
	 "evicted by retention or refused, with the running total", 0},
	{"packages", "TPKG", "the bytes of each queued package (optional "
	 "local consumers)", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"device_id", TLCM_P_STRING, "", "the device's id in packages "
	 "([A-Za-z0-9._-]{1,64}; empty: the host name)", 0, 0, NULL, 0},
	{"kinds", TLCM_P_LIST, "metrics=metrics,drift=drift_event,"
	 "quarantine=drift_event,logs=operational_logs,"
	 "images=prediction_images", "input port = package kind ([a-z_]"
	 "{1,32})", 0, 0, NULL, 0},
	{"priorities", TLCM_P_LIST, "metrics=1,drift_event=2,"
	 "operational_logs=3,prediction_images=4", "kind = priority (1 most "
	 "important; kinds not listed: 4)", 0, 0, NULL, 0},
	{"batch_count", TLCM_P_INT, "100", "items per package at most", 1,
	 1000000, NULL, TLCM_PARAM_BATCH},
	{"batch_bytes", TLCM_P_SIZE, "256KiB", "a package closes when its "
	 "items and attachments reach this many bytes (before compression)",
	 256, 64 << 20, NULL, 0},
	{"batch_age", TLCM_P_DURATION, "1m", "a package closes this long "
	 "after its first item (0: no age limit)", 0, 0, NULL, 0},
	{"batch", TLCM_P_LIST, "drift_event age=5s", "per-kind overrides: "
	 "\"KIND [count=N] [bytes=SIZE] [age=DURATION]\"", 0, 0, NULL, 0},
	{"compression", TLCM_P_ENUM, "zstd", "payload compression", 0, 0,
	 "zstd|none", 0},
	{"zstd_level", TLCM_P_INT, "3", "zstd level", 1, 19, NULL, 0},
	{"max_bytes", TLCM_P_SIZE, "64MiB", "retention: outbox bytes at "
	 "most; the lowest-priority oldest packages go first (0: no limit)",
	 0, 0, NULL, 0},
	{"max_age", TLCM_P_DURATION, "720h", "retention: the offline "
	 "tolerance; older packages go (0: no limit)", 0, 0, NULL, 0},
	{"expire_every", TLCM_P_DURATION, "1m", "how often max_age is "
	 "enforced when nothing is put", 1000000, 86400e9, NULL, 0},
	{"sensitive_keys", TLCM_P_LIST, "mac_address,wifi_password,password,"
	 "token,api_key,secret", "metrics keys whose values become "
	 "\"REDACTED\" (whole components of the dotted path, any depth, "
	 "case-insensitive)", 0, 0, NULL, 0},
	{"metrics_incremental", TLCM_P_BOOL, "true", "metrics items carry "
	 "only the keys that changed", 0, 0, NULL, 0},
	{"metrics_full_every", TLCM_P_INT, "10", "a full metrics snapshot "
	 "in every Nth metrics package (0: only after a start or a loss)",
	 0, 1000000, NULL, 0},
	{"attachments", TLCM_P_BOOL, "true", "PNG attachments: images, the "
	 "frame of a drift event, quarantine thumbnails", 0, 0, NULL, 0},
	{"frame_cache", TLCM_P_INT, "8", "recent frames kept from `frames` "
	 "for drift events", 0, 1024, NULL, 0},
	{"flush_on_eos", TLCM_P_BOOL, "true", "close open packages when the "
	 "inputs end (else they wait in the records for the next run)", 0, 0,
	 NULL, 0},
	{0},
};

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- schemas ----------------------------------------------------------- */

static const struct {
	const char ident[5], *name;
	unsigned version;
} schemas[] = {
	{"TMET", "tlcm.Metrics", 1},
	{"DRFT", "tlcm.DriftEvent", 1},
	{"QBAT", "tlcm.QuarantineBatch", 1},
	{"TLOG", "tlcm.LogLine", 1},
	{"FRAM", "tlcm.Frame", 1},
};

/* ---- small helpers ----------------------------------------------------- */

static void item_free(item_t *it)
{
	free(it->data);
}

static void att_free(att_t *a)
{
	free(a->name);
	free(a->media);
	free(a->data);
}

static void kind_reset(kind_t *k)
{
	for (size_t i = 0; i < k->n; i++)
		item_free(&k->items[i]);
	for (size_t i = 0; i < k->na; i++)
		att_free(&k->atts[i]);
	k->n = k->na = k->raw = k->att_bytes = 0;
	k->open = k->meta_written = k->sealed = false;
	k->id[0] = 0;
	k->opened_ns = 0;
}

static bool valid_kind(const char *s, size_t n)
{
	if (!n || n > TLCM_PKG_KIND_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
			return false;
	return true;
}

static bool valid_device(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '.' ||
		      s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static kind_t *kind_find(pk_t *p, const char *name, size_t n)
{
	for (size_t i = 0; i < p->nkinds; i++)
		if (strlen(p->kinds[i].name) == n &&
		    !memcmp(p->kinds[i].name, name, n))
			return &p->kinds[i];
	return NULL;
}

/* The kind called name, added with the defaults when new (NULL when
 * there are MAX_KINDS already). */
static kind_t *kind_add(tlcm_ctx_t *ctx, pk_t *p, const char *name, size_t n)
{
	kind_t *k = kind_find(p, name, n);
	if (k || p->nkinds == MAX_KINDS)
		return k;
	k = &p->kinds[p->nkinds++];
	memset(k, 0, sizeof *k);
	memcpy(k->name, name, n);
	k->name[n] = 0;
	k->priority = 4;
	k->max_count = (uint64_t)tlcm_param_int(ctx, "batch_count");
	k->max_bytes = tlcm_param_size(ctx, "batch_bytes");
	k->max_age_ns = tlcm_param_duration_ns(ctx, "batch_age");
	return k;
}

static void key_meta(char *key, size_t *kl, const kind_t *k)
{
	*kl = (size_t)sprintf(key, "k/%s/m", k->name);
}

static void key_seq(char *key, size_t *kl, const kind_t *k, char what,
		    uint64_t seq)
{
	*kl = (size_t)sprintf(key, "k/%s/%c/%016" PRIx64, k->name, what, seq);
}

/* ---- events ------------------------------------------------------------ */

/* Queue an event for the end of the current callback (init cannot emit;
 * the others emit what is queued before they return). */
static void event_queue(pk_t *p, int port, const void *data, size_t len)
{
	if (p->nev == p->evcap) {
		size_t nc = p->evcap ? 2 * p->evcap : 8;
		event_t *ne = realloc(p->ev, nc * sizeof *ne);
		if (!ne)
			return;
		p->ev = ne;
		p->evcap = nc;
	}
	void *d = malloc(len);
	if (!d)
		return;
	memcpy(d, data, len);
	p->ev[p->nev++] = (event_t){port, d, len};
}

static void events_flush(tlcm_ctx_t *ctx, pk_t *p)
{
	for (size_t i = 0; i < p->nev; i++) {
		event_t *e = &p->ev[i];
		int rc = tlcm_emit(ctx, e->port, e->port == OUT_PACKAGES
				   ? tlcm_Package_IDENTIFIER
				   : tlcm_PackageEvent_IDENTIFIER, e->data,
				   e->len);
		if (rc && rc != TLCM_EAGAIN)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "cannot emit on `%s`"
				      " (%zu bytes): %s",
				      outputs[e->port].name, e->len,
				      tlcm_strerror(rc));
		free(e->data);
	}
	p->nev = 0;
}

static uint64_t dropped_total(pk_t *p)
{
	tlcm_outbox_stats_t st = {0};
	tlcm_outbox_stats(p->ob, &st);
	return st.evicted + p->too_big + p->no_room;
}

/* A PackageEvent about n entries (count may be more than n when the list
 * was cut short). */
static void event_build(tlcm_ctx_t *ctx, pk_t *p, int kind,
			const tlcm_outbox_entry_t *e, size_t n, uint64_t count,
			const char *reason)
{
	tlcm_fbb_t b;
	if (tlcm_fbb_init(&b, 256 + n * 128))
		return;
	tlcm_fbb_ref_t *refs = calloc(n ? n : 1, sizeof *refs);
	if (!refs) {
		tlcm_fbb_fini(&b);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		tlcm_fbb_ref_t id = tlcm_fbb_cstring(&b, e[i].id);
		tlcm_fbb_ref_t kd = tlcm_fbb_cstring(&b, e[i].kind);
		tlcm_PackageRef_start(&b);
		tlcm_PackageRef_add_id(&b, id);
		tlcm_PackageRef_add_kind(&b, kd);
		tlcm_PackageRef_add_priority(&b, e[i].priority);
		tlcm_PackageRef_add_created_ns(&b, e[i].created_ns);
		tlcm_PackageRef_add_size(&b, e[i].size);
		refs[i] = tlcm_PackageRef_end(&b);
	}
	tlcm_fbb_ref_t v = tlcm_PackageEvent_packages_create(&b, refs, n);
	free(refs);
	tlcm_fbb_ref_t r = reason ? tlcm_fbb_cstring(&b, reason) : 0;
	tlcm_outbox_stats_t st = {0};
	tlcm_outbox_stats(p->ob, &st);
	uint64_t total = st.evicted + p->too_big + p->no_room;
	tlcm_PackageEvent_start(&b);
	tlcm_PackageEvent_add_event(&b, (int8_t)kind);
	tlcm_PackageEvent_add_time_ns(&b, wall_ns());
	tlcm_PackageEvent_add_packages(&b, v);
	if (r)
		tlcm_PackageEvent_add_reason(&b, r);
	tlcm_PackageEvent_add_count(&b, count);
	tlcm_PackageEvent_add_dropped_total(&b, total);
	tlcm_PackageEvent_add_queued_total(&b, p->queued);
	tlcm_PackageEvent_add_outbox_packages(&b, st.packages);
	tlcm_PackageEvent_add_outbox_bytes(&b, st.bytes);
	size_t len;
	const void *d = tlcm_PackageEvent_finish(&b, tlcm_PackageEvent_end(&b),
						 &len);
	if (d)
		event_queue(p, kind == tlcm_PackageEventKind_Dropped
			    ? OUT_DROPPED : OUT_QUEUED, d, len);
	else
		tlcm_node_log(ctx, TLCM_LOG_WARN, "cannot build a package "
			      "event: %s", tlcm_strerror(tlcm_fbb_error(&b)));
	tlcm_fbb_fini(&b);
}

/* Packages retention took out (or one that could not be kept): a
 * Dropped event, a log line, and full metrics again when metrics were
 * lost (the next deltas would build on values the core never got). */
static void report_dropped(tlcm_ctx_t *ctx, pk_t *p,
			   const tlcm_outbox_entry_t *e, size_t n,
			   uint64_t count, const char *reason)
{
	if (!count)
		return;
	int mk = p->port_kind[IN_METRICS];
	bool metrics = n < count; /* some unnamed: maybe metrics */
	for (size_t i = 0; i < n; i++)
		metrics |= mk >= 0 && !strcmp(e[i].kind, p->kinds[mk].name);
	if (metrics)
		tlcm_mstate_reset(p->ms);
	event_build(ctx, p, tlcm_PackageEventKind_Dropped, e, n, count,
		    reason);
	uint64_t total = dropped_total(p);
	p->reported += count;
	if (p->reported > total)
		p->reported = total;
	tlcm_node_log(ctx, TLCM_LOG_WARN, "dropped %" PRIu64 " package%s "
		      "(%s%s%s%s): %" PRIu64 " dropped so far", count,
		      count == 1 ? "" : "s", reason, n ? ", first " : "",
		      n ? e[0].id : "", n ? (n > 1 ? " ..." : "") : "",
		      total);
}

/* Evicted entries: by age when they were past max_age, else by bytes. */
static void report_evicted(tlcm_ctx_t *ctx, pk_t *p,
			   const tlcm_outbox_entry_t *e, size_t n,
			   uint64_t count, uint64_t now)
{
	size_t a = 0;
	tlcm_outbox_entry_t *byage = malloc((n ? n : 1) * sizeof *byage);
	tlcm_outbox_entry_t *bybytes = malloc((n ? n : 1) * sizeof *bybytes);
	if (!byage || !bybytes) {
		report_dropped(ctx, p, e, n, count, "retention");
		free(byage);
		free(bybytes);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (p->lim.max_age_ns &&
		    e[i].created_ns + p->lim.max_age_ns < now)
			byage[a++] = e[i];
		else
			bybytes[i - a] = e[i];
	/* the uncounted rest (a list cut short) is put with the bytes */
	report_dropped(ctx, p, byage, a, a, "max_age");
	report_dropped(ctx, p, bybytes, n - a, count - a, "max_bytes");
	free(byage);
	free(bybytes);
}

/* ---- records ----------------------------------------------------------- */

static void stale_add(pk_t *p, const char *key, size_t kl)
{
	if (kl >= sizeof p->stale[0])
		return;
	if (p->nstale == p->stalecap) {
		size_t nc = p->stalecap ? 2 * p->stalecap : 16;
		char(*ns)[TLCM_PKG_KIND_MAX + 24] = realloc(p->stale,
							     nc * sizeof *ns);
		if (!ns)
			return; /* deleted at the next start instead */
		p->stale = ns;
		p->stalecap = nc;
	}
	memcpy(p->stale[p->nstale], key, kl);
	p->stale[p->nstale++][kl] = 0;
}

/* Write ops plus the deletes left over from a failed write, in one
 * batch. A failure keeps the leftovers for the next write. */
static int rec_write(tlcm_ctx_t *ctx, pk_t *p, tlcm_record_op_t *ops,
		     size_t n)
{
	size_t total = n + p->nstale;
	tlcm_record_op_t *all = malloc((total ? total : 1) * sizeof *all);
	if (!all)
		return TLCM_ENOMEM;
	memcpy(all, ops, n * sizeof *ops);
	for (size_t i = 0; i < p->nstale; i++)
		all[n + i] = (tlcm_record_op_t){p->stale[i],
						strlen(p->stale[i]), NULL, 0};
	int rc = tlcm_records_write(ctx, all, total);
	free(all);
	if (!rc)
		p->nstale = 0;
	else if (p->write_failures++ % 100 == 0)
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot write the "
			      "packager's records (%" PRIu64 " failures so "
			      "far): %s", p->write_failures,
			      tlcm_strerror(rc));
	return rc;
}

static void counters_value(const pk_t *p, counters_rec_t *c)
{
	memset(c, 0, sizeof *c);
	memcpy(c->magic, COUNTERS_MAGIC, 4);
	c->too_big = p->too_big;
	c->reported = p->reported;
	c->no_room = p->no_room;
}

/* Delete the records of k's open package (with the counters): after it
 * went into the outbox, or could not go anywhere. */
static void rec_forget(tlcm_ctx_t *ctx, pk_t *p, kind_t *k)
{
	size_t n = k->n + k->na + 2, j = 0;
	tlcm_record_op_t *ops = malloc(n * sizeof *ops);
	char(*keys)[TLCM_PKG_KIND_MAX + 24] = malloc(n * sizeof *keys);
	counters_rec_t c;
	counters_value(p, &c);
	if (!ops || !keys) {
		free(ops);
		free(keys);
		return; /* the records stay: closed again at the next start */
	}
	size_t kl;
	if (k->meta_written) {
		key_meta(keys[j], &kl, k);
		ops[j] = (tlcm_record_op_t){keys[j], kl, NULL, 0};
		j++;
	}
	for (size_t i = 0; i < k->n; i++) {
		if (!k->items[i].seq)
			continue; /* never written */
		key_seq(keys[j], &kl, k, 'i', k->items[i].seq);
		ops[j] = (tlcm_record_op_t){keys[j], kl, NULL, 0};
		j++;
	}
	for (size_t i = 0; i < k->na; i++) {
		if (!k->atts[i].seq)
			continue;
		key_seq(keys[j], &kl, k, 'a', k->atts[i].seq);
		ops[j] = (tlcm_record_op_t){keys[j], kl, NULL, 0};
		j++;
	}
	ops[j++] = (tlcm_record_op_t){"c", 1, &c, sizeof c};
	if (rec_write(ctx, p, ops, j))
		for (size_t i = 0; i + 1 < j; i++)
			stale_add(p, ops[i].key, ops[i].klen);
	free(ops);
	free(keys);
}

/* Write item i of k (with its attachments, and the package's meta when
 * it is the first) in one batch. */
static int rec_item(tlcm_ctx_t *ctx, pk_t *p, kind_t *k, size_t i,
		    size_t att_from)
{
	size_t n = 2 + (k->na - att_from), j = 0;
	tlcm_record_op_t *ops = malloc(n * sizeof *ops);
	char(*keys)[TLCM_PKG_KIND_MAX + 24] = malloc(n * sizeof *keys);
	void **vals = calloc(n, sizeof *vals);
	int rc = ops && keys && vals ? 0 : TLCM_ENOMEM;
	meta_rec_t meta;
	size_t kl;
	if (!rc && !k->meta_written) {
		memset(&meta, 0, sizeof meta);
		memcpy(meta.magic, META_MAGIC, 4);
		meta.priority = k->priority;
		meta.opened_ns = k->opened_ns;
		memcpy(meta.id, k->id, TLCM_PKG_ID_LEN);
		key_meta(keys[j], &kl, k);
		ops[j] = (tlcm_record_op_t){keys[j], kl, &meta, sizeof meta};
		j++;
	}
	item_t *it = &k->items[i];
	if (!rc) {
		/* [type 4][0 4][the message]: the message stays 8-aligned */
		uint8_t *v = vals[j] = malloc(8 + it->len);
		if (!v) {
			rc = TLCM_ENOMEM;
		} else {
			memcpy(v, it->type, 4);
			memset(v + 4, 0, 4);
			memcpy(v + 8, it->data, it->len);
			it->seq = ++p->seq;
			key_seq(keys[j], &kl, k, 'i', it->seq);
			ops[j] = (tlcm_record_op_t){keys[j], kl, v,
						    8 + it->len};
			j++;
		}
	}
	for (size_t a = att_from; !rc && a < k->na; a++) {
		att_t *at = &k->atts[a];
		size_t nl = strlen(at->name), ml = strlen(at->media);
		/* [item u32][name u16][media u16][name][media][data] */
		uint8_t *v = vals[j] = malloc(8 + nl + ml + at->len);
		if (!v) {
			rc = TLCM_ENOMEM;
			break;
		}
		uint16_t l16 = (uint16_t)nl, m16 = (uint16_t)ml;
		memcpy(v, &at->item, 4);
		memcpy(v + 4, &l16, 2);
		memcpy(v + 6, &m16, 2);
		memcpy(v + 8, at->name, nl);
		memcpy(v + 8 + nl, at->media, ml);
		memcpy(v + 8 + nl + ml, at->data, at->len);
		at->seq = ++p->seq;
		key_seq(keys[j], &kl, k, 'a', at->seq);
		ops[j] = (tlcm_record_op_t){keys[j], kl, v,
					    8 + nl + ml + at->len};
		j++;
	}
	if (!rc)
		rc = rec_write(ctx, p, ops, j);
	if (!rc)
		k->meta_written = true;
	for (size_t a = 0; vals && a < n; a++)
		free(vals[a]);
	free(vals);
	free(ops);
	free(keys);
	return rc;
}

/* ---- building and closing packages ------------------------------------- */

static int build_package(tlcm_ctx_t *ctx, pk_t *p, const kind_t *k,
			 uint64_t created_ns, tlcm_fbb_t *b, const void **out,
			 size_t *outlen)
{
	uint8_t *raw = malloc(k->raw ? k->raw : 1);
	if (!raw)
		return TLCM_ENOMEM;
	size_t at = 0;
	bool used[sizeof schemas / sizeof schemas[0]] = {0};
	for (size_t i = 0; i < k->n; i++) {
		uint32_t l = (uint32_t)k->items[i].len;
		memcpy(raw + at, &l, 4);
		memcpy(raw + at + 4, k->items[i].data, l);
		at += 4 + (size_t)l;
		for (size_t s = 0; s < sizeof schemas / sizeof schemas[0]; s++)
			if (!memcmp(schemas[s].ident, k->items[i].type, 4))
				used[s] = true;
	}
	void *comp = NULL;
	size_t clen = at;
	if (p->zstd) {
		int rc = tlcm_zstd_compress(raw, at, p->level, &comp, &clen);
		if (rc) {
			free(raw);
			return rc;
		}
	}
	tlcm_fbb_ref_t srefs[sizeof schemas / sizeof schemas[0]];
	size_t ns = 0;
	for (size_t s = 0; s < sizeof schemas / sizeof schemas[0]; s++) {
		if (!used[s])
			continue;
		tlcm_fbb_ref_t nm = tlcm_fbb_cstring(b, schemas[s].name);
		tlcm_fbb_ref_t id = tlcm_fbb_cstring(b, schemas[s].ident);
		tlcm_SchemaRef_start(b);
		tlcm_SchemaRef_add_name(b, nm);
		tlcm_SchemaRef_add_identifier(b, id);
		tlcm_SchemaRef_add_version(b, schemas[s].version);
		srefs[ns++] = tlcm_SchemaRef_end(b);
	}
	tlcm_fbb_ref_t sv = tlcm_Package_schemas_create(b, srefs, ns);
	tlcm_fbb_ref_t pl = tlcm_Package_payload_create(b, comp ? comp : raw,
							clen);
	free(comp);
	free(raw);
	tlcm_fbb_ref_t *arefs = malloc((k->na ? k->na : 1) * sizeof *arefs);
	if (!arefs)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < k->na; i++) {
		const att_t *a = &k->atts[i];
		tlcm_fbb_ref_t nm = tlcm_fbb_cstring(b, a->name);
		tlcm_fbb_ref_t mt = tlcm_fbb_cstring(b, a->media);
		tlcm_fbb_ref_t d = tlcm_Attachment_data_create(b, a->data,
							       a->len);
		tlcm_Attachment_start(b);
		tlcm_Attachment_add_name(b, nm);
		tlcm_Attachment_add_media_type(b, mt);
		tlcm_Attachment_add_data(b, d);
		tlcm_Attachment_add_item(b, a->item);
		arefs[i] = tlcm_Attachment_end(b);
	}
	tlcm_fbb_ref_t av = k->na ? tlcm_Package_attachments_create(b, arefs,
								    k->na) : 0;
	free(arefs);
	tlcm_fbb_ref_t id = tlcm_fbb_cstring(b, k->id);
	tlcm_fbb_ref_t dev = tlcm_fbb_cstring(b, p->device);
	tlcm_fbb_ref_t kd = tlcm_fbb_cstring(b, k->name);
	tlcm_fbb_ref_t who = tlcm_fbb_cstring(b, tlcm_node_id(ctx));
	tlcm_Package_start(b);
	tlcm_Package_add_id(b, id);
	tlcm_Package_add_device_id(b, dev);
	tlcm_Package_add_kind(b, kd);
	tlcm_Package_add_priority(b, k->priority);
	tlcm_Package_add_created_ns(b, created_ns);
	tlcm_Package_add_opened_ns(b, k->opened_ns);
	tlcm_Package_add_schemas(b, sv);
	tlcm_Package_add_compression(b, p->zstd ? tlcm_Compression_Zstd
						: tlcm_Compression_None);
	tlcm_Package_add_raw_size(b, at);
	tlcm_Package_add_count(b, (uint32_t)k->n);
	tlcm_Package_add_payload(b, pl);
	if (av)
		tlcm_Package_add_attachments(b, av);
	tlcm_Package_add_packager(b, who);
	tlcm_Package_add_seq(b, p->queued + 1);
	*out = tlcm_Package_finish(b, tlcm_Package_end(b), outlen);
	return *out ? 0 : (tlcm_fbb_error(b) ? tlcm_fbb_error(b)
					     : TLCM_ENOMEM);
}

/* Close k's open package: into the outbox, then forget its records.
 * Non-zero when it could not be queued: the package stays open, as it
 * was (its records too), and a later close tries again. */
static int close_kind(tlcm_ctx_t *ctx, pk_t *p, kind_t *k, const char *why)
{
	if (!k->open || !k->n) {
		if (k->open)
			rec_forget(ctx, p, k); /* a meta or attachments */
		kind_reset(k);
		return 0;
	}
	tlcm_fbb_t b;
	int rc = tlcm_fbb_init(&b, k->raw / 2 + k->att_bytes + 1024);
	if (rc)
		return rc;
	uint64_t now = wall_ns();
	const void *pkg = NULL;
	size_t len = 0;
	rc = build_package(ctx, p, k, now, &b, &pkg, &len);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot build the %s "
			      "package %s: %s", k->name, k->id,
			      tlcm_strerror(rc));
		tlcm_fbb_fini(&b);
		return rc;
	}
	tlcm_outbox_entry_t e = {.priority = k->priority, .created_ns = now,
				 .size = len};
	memcpy(e.id, k->id, sizeof e.id);
	snprintf(e.kind, sizeof e.kind, "%s", k->name);
	tlcm_outbox_entry_t *ev = malloc(MAX_EVICTED * sizeof *ev);
	size_t nev = 0;
	if (!ev) {
		tlcm_fbb_fini(&b);
		return TLCM_ENOMEM;
	}
	rc = tlcm_outbox_put(p->ob, &e, pkg, len, ev, MAX_EVICTED, &nev);
	if (rc == TLCM_ETOOBIG) {
		/* bigger than the whole outbox may be: it can never be
		 * kept, and holding it open would block the kind forever */
		p->too_big++;
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "package %s (%s, %zu items,"
			      " %zu bytes) is larger than max_bytes: dropped "
			      "(lower batch_bytes or raise max_bytes)", k->id,
			      k->name, k->n, len);
		report_dropped(ctx, p, &e, 1, 1, "too_big");
		rc = 0;
	} else if (rc == TLCM_ENOSPC) {
		/* the outbox is at max_bytes with packages more important
		 * than this one, and retention keeps the important ones: this
		 * is the least important package, the one to drop. Retrying
		 * would only hold the kind open until something is delivered
		 * (or forever, offline), growing with every item. */
		p->no_room++;
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "package %s (%s, priority "
			      "%u, %zu items, %zu bytes) does not fit: the "
			      "outbox is at max_bytes with more important "
			      "packages: dropped", k->id, k->name, k->priority,
			      k->n, len);
		report_dropped(ctx, p, &e, 1, 1, "outbox_full");
		rc = 0;
	} else if (rc) {
		if (p->put_failures++ % 100 == 0)
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot put package "
				      "%s (%s) in the outbox (%" PRIu64 " "
				      "failures so far; kept, retrying): %s",
				      k->id, k->name, p->put_failures,
				      tlcm_strerror(rc));
		free(ev);
		tlcm_fbb_fini(&b);
		return rc;
	} else {
		p->queued++;
		p->items += k->n;
		tlcm_debug(tlcm_node_id(ctx), "queued package %s (%s, "
			   "priority %u, %zu items, %zu bytes, by %s)", k->id,
			   k->name, k->priority, k->n, len, why);
		event_build(ctx, p, tlcm_PackageEventKind_Queued, &e, 1, 1,
			    NULL);
		event_queue(p, OUT_PACKAGES, pkg, len);
		uint64_t total = dropped_total(p);
		uint64_t fresh = total > p->reported ? total - p->reported : 0;
		if (nev || fresh)
			report_evicted(ctx, p, ev, nev < MAX_EVICTED
				       ? nev : MAX_EVICTED,
				       fresh > nev ? fresh : nev, now);
	}
	free(ev);
	tlcm_fbb_fini(&b);
	rec_forget(ctx, p, k);
	kind_reset(k);
	k->closed++;
	return 0;
}

/* ---- items ------------------------------------------------------------- */

static int att_push(kind_t *k, att_t *a)
{
	if (k->na == k->acap) {
		size_t nc = k->acap ? 2 * k->acap : 8;
		att_t *na = realloc(k->atts, nc * sizeof *na);
		if (!na)
			return TLCM_ENOMEM;
		k->atts = na;
		k->acap = nc;
	}
	k->atts[k->na++] = *a;
	k->att_bytes += a->len + strlen(a->name) + strlen(a->media);
	return 0;
}

static bool att_named(const kind_t *k, const char *name)
{
	for (size_t i = 0; i < k->na; i++)
		if (!strcmp(k->atts[i].name, name))
			return true;
	return false;
}

/* A PNG attachment of px (w × h, ch channels) named name, for the item
 * about to be added to k; nothing when it cannot be made (logged). */
static void png_attach(tlcm_ctx_t *ctx, kind_t *k, att_t *out, size_t *nout,
		       const char *name, const uint8_t *px, unsigned w,
		       unsigned h, int ch)
{
	if (att_named(k, name))
		return;
	for (size_t i = 0; i < *nout; i++)
		if (!strcmp(out[i].name, name))
			return;
	att_t a = {.item = (uint32_t)k->n};
	int rc = tlcm_png_encode(px, w, h, ch, &a.data, &a.len);
	a.name = strdup(name);
	a.media = strdup("image/png");
	if (rc || !a.name || !a.media) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "no attachment %s: %s", name,
			      tlcm_strerror(rc ? rc : TLCM_ENOMEM));
		att_free(&a);
		return;
	}
	out[(*nout)++] = a;
}

/* Add one item (and its attachments, owned from now on) to kind k. */
static int add_item(tlcm_ctx_t *ctx, pk_t *p, kind_t *k, const char type[4],
		    const void *data, size_t len, att_t *atts, size_t natts)
{
	size_t abytes = 0;
	for (size_t i = 0; i < natts; i++)
		abytes += atts[i].len + strlen(atts[i].name) +
			  strlen(atts[i].media);
	int rc = 0;
	if (k->sealed && (rc = close_kind(ctx, p, k, "restart"))) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "the recovered %s package "
			      "%s is not queued yet: a new item cannot join "
			      "it", k->name, k->id);
		goto fail;
	}
	if (k->open && k->n &&
	    k->raw + k->att_bytes + 4 + len + abytes > k->max_bytes)
		close_kind(ctx, p, k, "bytes"); /* failing: it grows on */
	if (!k->open) {
		kind_reset(k);
		rc = tlcm_uuid7_next(&p->uuid, wall_ns(), k->id);
		if (rc) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "no random bytes "
				      "for a package id: %s",
				      tlcm_strerror(rc));
			goto fail;
		}
		k->open = true;
		k->opened_ns = wall_ns();
	}
	if (k->n == k->cap) {
		size_t nc = k->cap ? 2 * k->cap : 16;
		item_t *ni = realloc(k->items, nc * sizeof *ni);
		if (!ni) {
			rc = TLCM_ENOMEM;
			goto fail;
		}
		k->items = ni;
		k->cap = nc;
	}
	item_t it = {.len = len};
	memcpy(it.type, type, 4);
	it.data = aligned_alloc(8, (len + 7) & ~(size_t)7);
	if (!it.data) {
		rc = TLCM_ENOMEM;
		goto fail;
	}
	memcpy(it.data, data, len);
	size_t att_from = k->na;
	for (size_t i = 0; i < natts; i++) {
		atts[i].item = (uint32_t)k->n;
		if (att_push(k, &atts[i])) {
			att_free(&atts[i]); /* an attachment less */
			atts[i] = (att_t){0};
		}
	}
	natts = 0;
	k->items[k->n++] = it;
	k->raw += 4 + len;
	if (k->n >= k->max_count || k->raw + k->att_bytes >= k->max_bytes) {
		if (!close_kind(ctx, p, k, k->n >= k->max_count ? "count"
							      : "bytes"))
			return 0;
		/* not queued: keep the item in the records instead */
	}
	rc = rec_item(ctx, p, k, k->n - 1, att_from);
	if (!rc)
		return 0;
	/* not on disk: not acknowledged */
	item_free(&k->items[--k->n]);
	k->raw -= 4 + len;
	while (k->na > att_from) {
		att_t *a = &k->atts[--k->na];
		k->att_bytes -= a->len + strlen(a->name) + strlen(a->media);
		att_free(a);
	}
	if (!k->n && !k->meta_written)
		kind_reset(k);
fail:
	for (size_t i = 0; i < natts; i++)
		att_free(&atts[i]);
	if (!memcmp(type, "TMET", 4))
		tlcm_mstate_reset(p->ms); /* its delta is lost */
	tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot keep a %.4s message: %s",
		      type, tlcm_strerror(rc));
	return rc;
}

/* ---- inputs ------------------------------------------------------------ */

static int on_frame(tlcm_ctx_t *ctx, pk_t *p, const tlcm_msg_t *m,
		    const char *port, tlcm_Frame_table_t *out, int *ch)
{
	int rc = tlcm_expect_msg(ctx, m, &p->bad, port, "Frame",
				 tlcm_Frame_IDENTIFIER,
				 tlcm_Frame_verify_as_root);
	if (rc)
		return rc;
	tlcm_Frame_table_t f = tlcm_Frame_as_root(tlcm_msg_data(m));
	size_t w = tlcm_Frame_width(f), h = tlcm_Frame_height(f);
	int c = tlcm_Frame_format(f) == tlcm_PixelFormat_Rgb8 ? 3
		: tlcm_Frame_format(f) == tlcm_PixelFormat_Gray8 ? 1 : 0;
	if (!c || !w || !h || w > 65535 || h > 65535 ||
	    tlcm_Frame_pixels_len(f) != w * h * (size_t)c)
		return tlcm_bad_input(ctx, &p->bad, "%s: frame %" PRIu64 ": "
				      "%zu pixel bytes for %zux%zu (format "
				      "%d)", port, tlcm_Frame_id(f),
				      tlcm_Frame_pixels_len(f), w, h,
				      tlcm_Frame_format(f));
	*out = f;
	*ch = c;
	return 0;
}

static int on_frames(tlcm_ctx_t *ctx, pk_t *p, const tlcm_msg_t *m)
{
	tlcm_Frame_table_t f;
	int ch, rc = on_frame(ctx, p, m, "frames", &f, &ch);
	if (rc || !p->frame_cap || !p->attach)
		return rc;
	cframe_t *c = &p->frames[p->frame_next];
	size_t n = tlcm_Frame_pixels_len(f);
	uint8_t *px = malloc(n);
	if (!px)
		return TLCM_ENOMEM;
	memcpy(px, tlcm_Frame_pixels(f), n);
	free(c->px);
	*c = (cframe_t){tlcm_Frame_id(f), tlcm_Frame_width(f),
			tlcm_Frame_height(f), ch, px};
	p->frame_next = (p->frame_next + 1) % p->frame_cap;
	return 0;
}

static int on_images(tlcm_ctx_t *ctx, pk_t *p, kind_t *k, const tlcm_msg_t *m)
{
	tlcm_Frame_table_t f;
	int ch, rc = on_frame(ctx, p, m, "images", &f, &ch);
	if (rc)
		return rc;
	/* the item is the frame without its pixels; they travel as PNG */
	tlcm_fbb_t b;
	if ((rc = tlcm_fbb_init(&b, 256 + tlcm_Frame_source_len(f))))
		return rc;
	tlcm_fbb_ref_t src = tlcm_Frame_source(f)
		? tlcm_fbb_string(&b, tlcm_Frame_source(f),
				  tlcm_Frame_source_len(f)) : 0;
	tlcm_Frame_start(&b);
	tlcm_Frame_add_id(&b, tlcm_Frame_id(f));
	tlcm_Frame_add_time_ns(&b, tlcm_Frame_time_ns(f));
	tlcm_Frame_add_width(&b, tlcm_Frame_width(f));
	tlcm_Frame_add_height(&b, tlcm_Frame_height(f));
	tlcm_Frame_add_format(&b, tlcm_Frame_format(f));
	tlcm_Frame_add_label(&b, tlcm_Frame_label(f));
	if (src)
		tlcm_Frame_add_source(&b, src);
	tlcm_Frame_add_index(&b, tlcm_Frame_index(f));
	size_t len;
	const void *d = tlcm_Frame_finish(&b, tlcm_Frame_end(&b), &len);
	if (!d) {
		rc = tlcm_fbb_error(&b);
		tlcm_fbb_fini(&b);
		return rc;
	}
	att_t a[1];
	size_t na = 0;
	char name[48];
	snprintf(name, sizeof name, "frame-%" PRIu64 ".png", tlcm_Frame_id(f));
	if (p->attach)
		png_attach(ctx, k, a, &na, name, tlcm_Frame_pixels(f),
			   tlcm_Frame_width(f), tlcm_Frame_height(f), ch);
	rc = add_item(ctx, p, k, "FRAM", d, len, a, na);
	tlcm_fbb_fini(&b);
	return rc;
}

static int on_drift(tlcm_ctx_t *ctx, pk_t *p, kind_t *k, const tlcm_msg_t *m)
{
	int rc = tlcm_expect_msg(ctx, m, &p->bad, "drift", "DriftEvent",
				 tlcm_DriftEvent_IDENTIFIER,
				 tlcm_DriftEvent_verify_as_root);
	if (rc)
		return rc;
	tlcm_DriftEvent_table_t e = tlcm_DriftEvent_as_root(tlcm_msg_data(m));
	uint64_t fid = tlcm_DriftEvent_frame_id(e);
	att_t a[1];
	size_t na = 0;
	for (size_t i = 0; p->attach && fid && i < p->frame_cap; i++) {
		const cframe_t *c = &p->frames[i];
		if (c->px && c->id == fid) {
			char name[48];
			snprintf(name, sizeof name, "frame-%" PRIu64 ".png",
				 fid);
			png_attach(ctx, k, a, &na, name, c->px, c->w, c->h,
				   c->ch);
			break;
		}
	}
	return add_item(ctx, p, k, "DRFT", tlcm_msg_data(m), m->size, a, na);
}

static int on_quarantine(tlcm_ctx_t *ctx, pk_t *p, kind_t *k,
			 const tlcm_msg_t *m)
{
	int rc = tlcm_expect_msg(ctx, m, &p->bad, "quarantine",
				 "QuarantineBatch",
				 tlcm_QuarantineBatch_IDENTIFIER,
				 tlcm_QuarantineBatch_verify_as_root);
	if (rc)
		return rc;
	tlcm_QuarantineBatch_table_t qb =
		tlcm_QuarantineBatch_as_root(tlcm_msg_data(m));
	size_t n = tlcm_QuarantineBatch_samples_len(qb);
	for (size_t i = 0; i < n; i++) {
		tlcm_QuarantinedSample_table_t s =
			tlcm_QuarantineBatch_samples_at(qb, i);
		size_t tl = tlcm_QuarantinedSample_thumbnail_len(s);
		unsigned tw = tlcm_QuarantinedSample_thumb_width(s);
		unsigned th = tlcm_QuarantinedSample_thumb_height(s);
		if (tl && tl != (size_t)tw * th)
			return tlcm_bad_input(
				ctx, &p->bad, "quarantine: batch %" PRIu64
				", sample %zu (frame %" PRIu64 "): thumbnail "
				"of %zu bytes is not %ux%u",
				tlcm_QuarantineBatch_seq(qb), i,
				tlcm_QuarantinedSample_frame_id(s), tl, tw, th);
	}
	att_t *a = calloc(n ? n : 1, sizeof *a);
	if (!a)
		return TLCM_ENOMEM;
	size_t na = 0;
	for (size_t i = 0; p->attach && i < n; i++) {
		tlcm_QuarantinedSample_table_t s =
			tlcm_QuarantineBatch_samples_at(qb, i);
		if (!tlcm_QuarantinedSample_thumbnail_len(s))
			continue;
		char name[48];
		snprintf(name, sizeof name, "thumb-%" PRIu64 ".png",
			 tlcm_QuarantinedSample_frame_id(s));
		png_attach(ctx, k, a, &na, name,
			   tlcm_QuarantinedSample_thumbnail(s),
			   tlcm_QuarantinedSample_thumb_width(s),
			   tlcm_QuarantinedSample_thumb_height(s), 1);
	}
	rc = add_item(ctx, p, k, "QBAT", tlcm_msg_data(m), m->size, a, na);
	free(a);
	return rc;
}

static int on_metrics(tlcm_ctx_t *ctx, pk_t *p, kind_t *k,
		      const tlcm_msg_t *m)
{
	int rc = tlcm_expect_msg(ctx, m, &p->bad, "metrics", "Metrics",
				 tlcm_Metrics_IDENTIFIER,
				 tlcm_Metrics_verify_as_root);
	if (rc)
		return rc;
	/* the item joins the package after a close by bytes, if any */
	uint64_t pkg = k->closed;
	if (k->open && k->n &&
	    k->raw + k->att_bytes + 4 + m->size > k->max_bytes)
		pkg++;
	const void *out;
	size_t len;
	bool full;
	char why[256];
	rc = tlcm_metrics_rewrite(p->ms, &p->mo, tlcm_msg_data(m), pkg, &p->mb,
				  &out, &len, &full, why, sizeof why);
	if (rc == TLCM_EBADMSG)
		return tlcm_bad_input(ctx, &p->bad, "metrics: %s", why);
	if (rc)
		return rc;
	return add_item(ctx, p, k, "TMET", out, len, NULL, 0);
}

static int on_logs(tlcm_ctx_t *ctx, pk_t *p, kind_t *k, const tlcm_msg_t *m)
{
	int rc = tlcm_expect_msg(ctx, m, &p->bad, "logs", "LogLine",
				 tlcm_LogLine_IDENTIFIER,
				 tlcm_LogLine_verify_as_root);
	if (rc)
		return rc;
	return add_item(ctx, p, k, "TLOG", tlcm_msg_data(m), m->size, NULL, 0);
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	pk_t *p = st;
	int rc;
	if (port == IN_FRAMES) {
		rc = on_frames(ctx, p, m);
	} else if (port < 0 || port >= NIN || p->port_kind[port] < 0) {
		rc = 0; /* a port mapped to no kind: not packaged */
	} else {
		kind_t *k = &p->kinds[p->port_kind[port]];
		switch (port) {
		case IN_METRICS:
			rc = on_metrics(ctx, p, k, m);
			break;
		case IN_DRIFT:
			rc = on_drift(ctx, p, k, m);
			break;
		case IN_QUARANTINE:
			rc = on_quarantine(ctx, p, k, m);
			break;
		case IN_LOGS:
			rc = on_logs(ctx, p, k, m);
			break;
		default:
			rc = on_images(ctx, p, k, m);
			break;
		}
	}
	events_flush(ctx, p);
	return rc;
}

/* ---- tick, eos --------------------------------------------------------- */

static void expire(tlcm_ctx_t *ctx, pk_t *p, uint64_t now)
{
	tlcm_outbox_entry_t *ev = malloc(MAX_EVICTED * sizeof *ev);
	size_t nev = 0;
	if (!ev)
		return;
	int rc = tlcm_outbox_expire(p->ob, now, ev, MAX_EVICTED, &nev);
	if (rc)
		tlcm_node_log(ctx, TLCM_LOG_WARN, "cannot expire the outbox: "
			      "%s", tlcm_strerror(rc));
	else if (nev)
		report_dropped(ctx, p, ev, nev < MAX_EVICTED ? nev
							      : MAX_EVICTED,
			       nev, "max_age");
	free(ev);
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t mono)
{
	pk_t *p = st;
	(void)mono;
	uint64_t now = wall_ns();
	for (size_t i = 0; i < p->nkinds; i++) {
		kind_t *k = &p->kinds[i];
		if (k->sealed || (k->open && k->n && k->max_age_ns &&
				  now - k->opened_ns >= k->max_age_ns))
			close_kind(ctx, p, k, k->sealed ? "restart" : "age");
	}
	if (p->lim.max_age_ns && now >= p->next_expire) {
		expire(ctx, p, now);
		p->next_expire = now + p->expire_every;
	}
	/* evictions another producer's puts caused are ours to report
	 * too: nobody else counts them */
	uint64_t total = dropped_total(p);
	if (total > p->reported)
		report_dropped(ctx, p, NULL, 0, total - p->reported,
			       "retention");
	events_flush(ctx, p);
	return 0;
}

static int eos(tlcm_ctx_t *ctx, void *st)
{
	pk_t *p = st;
	int rc = 0;
	for (size_t i = 0; p->flush_eos && i < p->nkinds; i++)
		if (p->kinds[i].open) {
			int r = close_kind(ctx, p, &p->kinds[i], "end");
			rc = rc ? rc : r;
		}
	events_flush(ctx, p);
	return rc;
}

/* ---- describe ---------------------------------------------------------- */

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	pk_t *p = st;
	(void)ctx;
	tlcm_outbox_stats_t ob = {0};
	tlcm_outbox_stats(p->ob, &ob);
	size_t at = (size_t)snprintf(buf, len, "{\"device_id\":");
	if (at >= len || !tlcm_json_str(buf, &at, len, p->device))
		return TLCM_ENOSPC;
	int n = snprintf(buf + at, len - at, ",\"queued\":%" PRIu64
			 ",\"items\":%" PRIu64 ",\"dropped\":%" PRIu64
			 ",\"too_big\":%" PRIu64 ",\"outbox_full\":%" PRIu64
			 ",\"bad\":%" PRIu64
			 ",\"recovered\":%" PRIu64 ",\"outbox\":{\"packages\":%"
			 PRIu64 ",\"bytes\":%" PRIu64 ",\"dead\":%" PRIu64
			 "},\"open\":{", p->queued, p->items,
			 ob.evicted + p->too_big + p->no_room, p->too_big,
			 p->no_room, p->bad,
			 p->recovered, ob.packages, ob.bytes, ob.dead);
	if (n < 0 || (size_t)n >= len - at)
		return TLCM_ENOSPC;
	at += (size_t)n;
	for (size_t i = 0; i < p->nkinds; i++) {
		const kind_t *k = &p->kinds[i];
		n = snprintf(buf + at, len - at, "%s\"%s\":{\"priority\":%u,"
			     "\"items\":%zu,\"bytes\":%zu,\"closed\":%" PRIu64
			     "}", i ? "," : "", k->name, k->priority, k->n,
			     k->raw + k->att_bytes, k->closed);
		if (n < 0 || (size_t)n >= len - at)
			return TLCM_ENOSPC;
		at += (size_t)n;
	}
	if (len - at < 3)
		return TLCM_ENOSPC;
	memcpy(buf + at, "}}", 3);
	return 0;
}

/* ---- recovery ---------------------------------------------------------- */

struct recov {
	tlcm_ctx_t *ctx;
	pk_t *p;
	bool counters;
	int rc;
};

static int load_counters(void *arg, const void *key, size_t klen,
			 const void *val, size_t vlen)
{
	struct recov *r = arg;
	(void)key;
	counters_rec_t c;
	if (klen != 1)
		return 0;
	if ((vlen != sizeof c && vlen != COUNTERS_V1_SIZE) ||
	    memcmp(val, COUNTERS_MAGIC, 4)) {
		tlcm_node_log(r->ctx, TLCM_LOG_WARN, "record c (counters): "
			      "%zu bytes, not a counters record; counting "
			      "from zero", vlen);
		return 0;
	}
	memset(&c, 0, sizeof c);
	memcpy(&c, val, vlen);
	r->p->too_big = c.too_big;
	r->p->reported = c.reported;
	r->p->no_room = c.no_room;
	r->counters = true;
	return 0;
}

/* One record "k/<kind>/m", "k/<kind>/i/<seq>" or "k/<kind>/a/<seq>". A
 * record that makes no sense is reported and deleted (stale). */
static int load_rec(void *arg, const void *key, size_t klen, const void *val,
		    size_t vlen)
{
	struct recov *r = arg;
	pk_t *p = r->p;
	const char *k = key, *slash = klen > 2 ? memchr(k + 2, '/', klen - 2)
					       : NULL;
	const char *why = NULL;
	if (!slash || !valid_kind(k + 2, (size_t)(slash - k - 2))) {
		why = "not a packager record";
		goto bad;
	}
	kind_t *kd = kind_add(r->ctx, p, k + 2, (size_t)(slash - k - 2));
	if (!kd) {
		why = "too many kinds";
		goto bad;
	}
	size_t rest = klen - (size_t)(slash + 1 - k);
	const char *t = slash + 1;
	if (rest == 1 && t[0] == 'm') {
		meta_rec_t m;
		if (vlen != sizeof m || memcmp(val, META_MAGIC, 4)) {
			why = "bad meta record";
			goto bad;
		}
		memcpy(&m, val, sizeof m);
		m.id[TLCM_PKG_ID_LEN] = 0;
		if (!tlcm_uuid7_parse(m.id, NULL)) {
			why = "meta record without a UUIDv7";
			goto bad;
		}
		memcpy(kd->id, m.id, sizeof kd->id);
		kd->opened_ns = m.opened_ns;
		if (!kd->configured && m.priority)
			kd->priority = m.priority;
		kd->meta_written = true;
		kd->open = true;
		return 0;
	}
	if (rest != 18 || (t[0] != 'i' && t[0] != 'a') || t[1] != '/') {
		why = "unexpected key";
		goto bad;
	}
	char hex[17];
	memcpy(hex, t + 2, 16); /* keys are not NUL-terminated */
	hex[16] = 0;
	uint64_t seq = strtoull(hex, NULL, 16);
	if (seq > p->seq)
		p->seq = seq;
	const uint8_t *v = val;
	if (t[0] == 'i') {
		if (vlen < 16) {
			why = "item record too short";
			goto bad;
		}
		item_t it = {.seq = seq, .len = vlen - 8};
		memcpy(it.type, v, 4);
		if (kd->n == kd->cap) {
			size_t nc = kd->cap ? 2 * kd->cap : 16;
			item_t *ni = realloc(kd->items, nc * sizeof *ni);
			if (!ni)
				return r->rc = TLCM_ENOMEM;
			kd->items = ni;
			kd->cap = nc;
		}
		if (!(it.data = aligned_alloc(8, (it.len + 7) & ~(size_t)7)))
			return r->rc = TLCM_ENOMEM;
		memcpy(it.data, v + 8, it.len);
		kd->items[kd->n++] = it;
		kd->raw += 4 + it.len;
		kd->open = true;
		return 0;
	}
	uint16_t nl, ml;
	if (vlen < 8 || (memcpy(&nl, v + 4, 2), memcpy(&ml, v + 6, 2),
			 vlen < 8u + nl + ml) || !nl || !ml) {
		why = "attachment record too short";
		goto bad;
	}
	att_t a = {.seq = seq, .len = vlen - 8 - nl - ml};
	memcpy(&a.item, v, 4);
	a.name = strndup((const char *)v + 8, nl);
	a.media = strndup((const char *)v + 8 + nl, ml);
	a.data = malloc(a.len ? a.len : 1);
	if (!a.name || !a.media || !a.data || att_push(kd, &a)) {
		att_free(&a);
		return r->rc = TLCM_ENOMEM;
	}
	memcpy(a.data, v + 8 + nl + ml, a.len);
	kd->open = true;
	return 0;
bad:
	tlcm_node_log(r->ctx, TLCM_LOG_WARN, "record %.*s: %s; deleted",
		      (int)klen, k, why);
	stale_add(p, key, klen);
	return 0;
}

/* Close every package the records hold (see the top: never reopened). */
static int recover(tlcm_ctx_t *ctx, pk_t *p)
{
	struct recov r = {.ctx = ctx, .p = p};
	int rc = tlcm_records_scan(ctx, "c", load_counters, &r);
	if (!rc)
		rc = tlcm_records_scan(ctx, "k/", load_rec, &r);
	if (!rc)
		rc = r.rc;
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot read the packager's "
			      "records: %s", tlcm_strerror(rc));
		return rc;
	}
	for (size_t i = 0; i < p->nkinds; i++) {
		kind_t *k = &p->kinds[i];
		if (!k->open)
			continue;
		/* attachments must point at items that are there */
		for (size_t a = 0; a < k->na; a++)
			if (k->atts[a].item >= k->n)
				k->atts[a].item = UINT32_MAX;
		if (k->n && !k->id[0]) {
			/* items without their meta: never put under any
			 * id, so a new one is safe */
			if ((rc = tlcm_uuid7_next(&p->uuid, wall_ns(), k->id)))
				return rc;
			k->opened_ns = wall_ns();
		}
		size_t n = k->n;
		char id[TLCM_PKG_ID_LEN + 1];
		memcpy(id, k->id, sizeof id);
		k->sealed = true;
		if ((rc = close_kind(ctx, p, k, "restart"))) {
			/* kept sealed: retried at every tick, and before
			 * any new item of its kind (refused until then) */
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot queue the "
				      "%zu recovered %s items (package %s; "
				      "retrying): %s", n, k->name, id,
				      tlcm_strerror(rc));
			continue;
		}
		if (n) {
			p->recovered += n;
			tlcm_node_log(ctx, TLCM_LOG_INFO, "recovered %zu %s "
				      "item%s into package %s", n, k->name,
				      n == 1 ? "" : "s", id);
		}
	}
	if (p->nstale)
		rec_write(ctx, p, NULL, 0);
	/* drops nobody reported (a crash before the event) */
	uint64_t total = dropped_total(p);
	if (total > p->reported)
		report_dropped(ctx, p, NULL, 0, total - p->reported,
			       "retention");
	return 0;
}

/* ---- parameters -------------------------------------------------------- */

static int bad_param(tlcm_ctx_t *ctx, const char *name, const char *item,
		     const char *expected)
{
	tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s: '%s': expected %s", name, item,
		      expected);
	return TLCM_EINVAL;
}

static int parse_kinds(tlcm_ctx_t *ctx, pk_t *p)
{
	const char *const *it;
	size_t n = tlcm_param_list(ctx, "kinds", &it);
	for (int i = 0; i < NIN; i++)
		p->port_kind[i] = -1;
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(it[i], '=');
		int port = -1;
		for (int j = 0; eq && j < IN_FRAMES; j++)
			if (strlen(port_names[j]) == (size_t)(eq - it[i]) &&
			    !memcmp(port_names[j], it[i], (size_t)(eq - it[i])))
				port = j;
		if (port < 0)
			return bad_param(ctx, "kinds", it[i], "PORT=KIND with "
					 "PORT one of metrics, drift, "
					 "quarantine, logs, images");
		if (!valid_kind(eq + 1, strlen(eq + 1)))
			return bad_param(ctx, "kinds", it[i], "a kind of "
					 "[a-z_]{1,32}");
		kind_t *k = kind_add(ctx, p, eq + 1, strlen(eq + 1));
		if (!k)
			return bad_param(ctx, "kinds", it[i],
					 "at most 16 kinds");
		k->configured = true;
		p->port_kind[port] = (int)(k - p->kinds);
	}
	n = tlcm_param_list(ctx, "priorities", &it);
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(it[i], '=');
		char *end;
		long pr = eq ? strtol(eq + 1, &end, 10) : 0;
		if (!eq || !valid_kind(it[i], (size_t)(eq - it[i])) ||
		    end == eq + 1 || *end || pr < 1 || pr > 255)
			return bad_param(ctx, "priorities", it[i],
					 "KIND=N with N from 1 to 255");
		kind_t *k = kind_add(ctx, p, it[i], (size_t)(eq - it[i]));
		if (!k)
			return bad_param(ctx, "priorities", it[i],
					 "at most 16 kinds");
		k->priority = (uint8_t)pr;
		k->configured = true;
	}
	n = tlcm_param_list(ctx, "batch", &it);
	for (size_t i = 0; i < n; i++) {
		char buf[256];
		snprintf(buf, sizeof buf, "%s", it[i]);
		char *save, *w = strtok_r(buf, " \t", &save);
		if (!w || !valid_kind(w, strlen(w)))
			return bad_param(ctx, "batch", it[i], "KIND [count=N] "
					 "[bytes=SIZE] [age=DURATION]");
		kind_t *k = kind_add(ctx, p, w, strlen(w));
		if (!k)
			return bad_param(ctx, "batch", it[i],
					 "at most 16 kinds");
		while ((w = strtok_r(NULL, " \t", &save))) {
			uint64_t v;
			char *end;
			if (!strncmp(w, "count=", 6)) {
				v = strtoull(w + 6, &end, 10);
				if (end == w + 6 || *end || !v || v > 1000000)
					return bad_param(ctx, "batch", it[i],
							 "count from 1 to "
							 "1000000");
				k->max_count = v;
			} else if (!strncmp(w, "bytes=", 6)) {
				if (tlcm_parse_size(w + 6, &v) || v < 256 ||
				    v > (64u << 20))
					return bad_param(ctx, "batch", it[i],
							 "bytes from 256 to "
							 "64MiB");
				k->max_bytes = v;
			} else if (!strncmp(w, "age=", 4)) {
				if (tlcm_parse_duration(w + 4, &v))
					return bad_param(ctx, "batch", it[i],
							 "age as a duration");
				k->max_age_ns = v;
			} else {
				return bad_param(ctx, "batch", it[i],
						 "count=, bytes= or age=");
			}
		}
	}
	return 0;
}

static void free_all(pk_t *p)
{
	for (size_t i = 0; i < p->nkinds; i++) {
		kind_reset(&p->kinds[i]);
		free(p->kinds[i].items);
		free(p->kinds[i].atts);
		p->kinds[i].items = NULL;
		p->kinds[i].atts = NULL;
	}
	for (size_t i = 0; p->frames && i < p->frame_cap; i++)
		free(p->frames[i].px);
	free(p->frames);
	p->frames = NULL;
	for (size_t i = 0; i < p->nev; i++)
		free(p->ev[i].data);
	free(p->ev);
	p->ev = NULL;
	p->nev = p->evcap = 0;
	free(p->stale);
	p->stale = NULL;
	p->nstale = p->stalecap = 0;
	tlcm_mstate_free(p->ms);
	p->ms = NULL;
	tlcm_fbb_fini(&p->mb);
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	pk_t *p = st;
	const char *dev = tlcm_param_str(ctx, "device_id");
	if (!dev || !dev[0]) {
		if (gethostname(p->device, sizeof p->device - 1))
			p->device[0] = 0;
		p->device[sizeof p->device - 1] = 0;
	} else {
		snprintf(p->device, sizeof p->device, "%s", dev);
	}
	if (!valid_device(p->device)) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "device_id: '%s' is not "
			      "[A-Za-z0-9._-]{1,64}%s", p->device,
			      dev && dev[0] ? "" : " (the host name; set "
			      "device_id)");
		return TLCM_EINVAL;
	}
	int rc = parse_kinds(ctx, p);
	if (rc)
		return rc;
	p->zstd = !strcmp(tlcm_param_str(ctx, "compression"), "zstd");
	p->level = (int)tlcm_param_int(ctx, "zstd_level");
	p->lim.max_bytes = tlcm_param_size(ctx, "max_bytes");
	p->lim.max_age_ns = tlcm_param_duration_ns(ctx, "max_age");
	p->expire_every = tlcm_param_duration_ns(ctx, "expire_every");
	p->mo.nsensitive = tlcm_param_list(ctx, "sensitive_keys",
					   &p->mo.sensitive);
	p->mo.incremental = tlcm_param_bool(ctx, "metrics_incremental");
	p->mo.full_every = (unsigned)tlcm_param_int(ctx, "metrics_full_every");
	p->attach = tlcm_param_bool(ctx, "attachments");
	p->flush_eos = tlcm_param_bool(ctx, "flush_on_eos");
	p->frame_cap = (size_t)tlcm_param_int(ctx, "frame_cache");
	struct tlcm_store *store = tlcm_graph_store(ctx);
	if (!store) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "the packager needs the "
			      "graph's store for its outbox: set "
			      "settings.store (and do not isolate it)");
		return TLCM_ENOTSUP;
	}
	if (!(p->ob = tlcm_store_outbox(store))) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot open the outbox");
		return TLCM_EIO;
	}
	tlcm_outbox_set_limits(p->ob, &p->lim);
	p->ms = tlcm_mstate_new();
	p->frames = p->frame_cap ? calloc(p->frame_cap, sizeof *p->frames)
				 : NULL;
	if (!p->ms || (p->frame_cap && !p->frames) ||
	    tlcm_fbb_init(&p->mb, 4096)) {
		free_all(p);
		return TLCM_ENOMEM;
	}
	uint64_t tickp = 1000000000u;
	for (size_t i = 0; i < p->nkinds; i++) {
		uint64_t a = p->kinds[i].max_age_ns / 4;
		if (a && a < tickp)
			tickp = a;
	}
	if (tickp < 10000000u)
		tickp = 10000000u;
	tlcm_set_tick(ctx, tickp);
	p->next_expire = 0;
	if ((rc = recover(ctx, p))) {
		free_all(p);
		return rc;
	}
	return 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	(void)ctx;
	free_all(st);
}

const tlcm_node_type_t tlcm_node_packager = {
	.name = "packager",
	.doc = "collect messages by kind into compressed, prioritised "
	       "packages in the durable outbox (docs/api.md)",
	.inputs = inputs,
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(pk_t),
	.init = init,
	.process = process,
	.tick = tick,
	.eos = eos,
	.describe = describe,
	.fini = fini,
};
