/* quarantine.c — node `quarantine`: hold the predictions the classifier
 * was unsure about, with their features, until the adapter learns from
 * them, ground truth answers them, or they age out.
 *
 * `in` takes Predictions (PRED, with features: knn carry_features). A
 * prediction is admitted when the policy says so — drift active (DRFT
 * Start/End on `drift`, per detector node), confidence below a threshold,
 * mean neighbour distance above one; any or all of the chosen conditions
 * — and otherwise forwarded unchanged on `passed`. Held samples are
 * bounded by max_size (the oldest goes, counted `evicted`) and max_age
 * (wall clock, so it holds across reboots; counted `expired`). With a
 * `frames` input each sample gets a small gray thumbnail of its frame,
 * matched by frame id in whichever order frame and prediction arrive.
 * Every batch_every admissions (and when the last drift ends, or every
 * batch_interval) the samples not yet taken go out as one QuarantineBatch
 * (QBAT) on `batch`; notices (QNOT) from the adapter mark samples taken,
 * resolved (they leave) or released (they wait again).
 *
 * Persistence. With a graph store every change is written as it happens,
 * as records (engine/node.h, tlcm_records_write): a sample once when it
 * is admitted and deleted when it leaves, a marker while it is taken, and
 * the counters — O(one sample) per change, so a reboot, even kill -9,
 * keeps every admitted sample. Without a store, or in an isolated node's
 * process, the whole state (schemas/quarantine_state.fbs) is the node's
 * snapshot, written after every persist_every changes. The snapshot is
 * also written at shutdown (inspection, rollback); at start the records,
 * when there are any, are newer than any snapshot and win.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/log.h"
#include "fb/drift_fb.h"
#include "fb/frame_fb.h"
#include "fb/prediction_fb.h"
#include "fb/quarantine_fb.h"
#include "fb/quarantine_notice_fb.h"
#include "fb/quarantine_state_fb.h"
#include "nodes/quarantine/quarantine.h"

#define MAX_DRIFTING 32
#define MAX_DIM 65536
#define MAX_LABEL 255

enum { R_DRIFT = 1, R_LOW = 2, R_FAR = 4, R_NOVEL = 8 };
enum { IN_PRED, IN_DRIFT, IN_FRAMES, IN_NOTICES };
enum { OUT_BATCH, OUT_PASSED };

typedef struct {
	uint64_t seq; /* admission number: its record's key */
	uint64_t frame, time_ns, admitted_ns;
	char *label, *truth;
	float conf, mdist;
	uint8_t reasons;
	bool taken;
	float *x;
	uint8_t *thumb;
	uint16_t tw, th;
} qsample_t;

typedef struct {
	uint64_t frame;
	uint8_t *px;
	uint16_t w, h;
} thumb_t;

/* A record write waiting for the end of the callback (records.c style
 * journal: applied in one batch with the counters). */
typedef struct {
	char key[20];
	size_t klen;
	void *val; /* owned; NULL: delete */
	size_t vlen;
} qop_t;

typedef struct {
	/* parameters */
	size_t max_size, batch_min, batch_every, persist_every, cache_cap;
	uint64_t max_age_ns, interval_ns;
	unsigned policy; /* R_* conditions in use */
	bool all, on_drift_end;
	double conf_below, dist_above, nov_above;
	unsigned thumb_size;
	/* samples, oldest first */
	qsample_t *s;
	size_t n, cap, dim;
	char *drifting[MAX_DRIFTING];
	size_t ndrifting;
	thumb_t *cache; /* ring of recent frames' thumbnails */
	size_t cache_next;
	/* counters */
	uint64_t seen, admitted, evicted, expired, resolved, released, taken,
		skipped, bad, batches, since_batch, changes;
	uint64_t next_interval;
	/* records (with a store): pending writes; resync rewrites them all
	 * (after a failed write, or a restored snapshot) */
	bool records, from_records, resync;
	qop_t *ops;
	size_t nops, ops_cap;
	uint64_t write_failures;
} quarantine_t;

static const tlcm_port_desc_t inputs[] = {
	{"in", "PRED", "predictions with features (knn carry_features: true)",
	 0},
	{"drift", "DRFT", "drift events (drift detectors' `events`)",
	 TLCM_PORT_OPTIONAL},
	{"frames", "FRAM", "the frames, for thumbnails (matched by frame id)",
	 TLCM_PORT_OPTIONAL},
	{"notices", "QNOT", "Taken / Resolved / Released from the adapter "
	 "(a feedback edge)", TLCM_PORT_OPTIONAL},
	{0},
};

static const tlcm_port_desc_t outputs[] = {
	{"batch", "QBAT", "the waiting samples, for the adapter", 0},
	{"passed", "PRED", "predictions not admitted, unchanged", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"max_size", TLCM_P_INT, "100", "samples held; then each new one "
	 "evicts the oldest", 1, 100000, NULL, 0},
	{"max_age", TLCM_P_DURATION, "1h", "samples older than this leave "
	 "(wall clock; 0: no limit)", 0, 0, NULL, 0},
	{"admit", TLCM_P_LIST, "drift", "conditions: drift (a detector is in "
	 "drift), low_confidence, far (mean_distance), novel (novelty: "
	 "mean_distance over the label's typical)", 0, 0, NULL, 0},
	{"combine", TLCM_P_ENUM, "any", "admit when any / all of the "
	 "conditions hold", 0, 0, "any|all", 0},
	{"confidence_below", TLCM_P_FLOAT, "0.5", "low_confidence: "
	 "confidence below this", 0, 1, NULL, TLCM_PARAM_RUNTIME},
	{"distance_above", TLCM_P_FLOAT, "0", "far: mean_distance above "
	 "this (> 0 when `far` is used)", 0, 0, NULL, TLCM_PARAM_RUNTIME},
	{"novelty_above", TLCM_P_FLOAT, "1.6", "novel: Prediction.novelty "
	 "above this (a prediction without novelty is not novel)", 0, 0, NULL,
	 TLCM_PARAM_RUNTIME},
	{"batch_min", TLCM_P_INT, "10", "no batch with fewer waiting "
	 "samples", 1, 100000, NULL, TLCM_PARAM_RUNTIME},
	{"batch_every", TLCM_P_INT, "10", "admissions between batches", 1,
	 100000, NULL, TLCM_PARAM_RUNTIME},
	{"batch_on_drift_end", TLCM_P_BOOL, "true", "also send a batch when "
	 "the last drift ends", 0, 0, NULL, TLCM_PARAM_RUNTIME},
	{"batch_interval", TLCM_P_DURATION, "0", "also send a batch this "
	 "often (0: never)", 0, 0, NULL, 0},
	{"persist_every", TLCM_P_INT, "10", "without a graph store (or when "
	 "isolated): snapshot after this many changes (0: only at shutdown); "
	 "with one, every change is written at once", 0, 1000000, NULL, 0},
	{"thumb_size", TLCM_P_INT, "16", "thumbnails fit in this many pixels "
	 "square (0: none)", 0, 256, NULL, 0},
	{"frame_cache", TLCM_P_INT, "64", "recent frames remembered for "
	 "thumbnails", 1, 100000, NULL, 0},
	{0},
};

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A copy of a FlatBuffers string (NULL stays NULL); *ok false on OOM. */
static char *dup_str(const char *s, size_t len, bool *ok)
{
	if (!s)
		return NULL;
	char *d = malloc(len + 1);
	if (!d) {
		*ok = false;
		return NULL;
	}
	memcpy(d, s, len);
	d[len] = 0;
	return d;
}

static void sample_free(qsample_t *s)
{
	free(s->label);
	free(s->truth);
	free(s->x);
	free(s->thumb);
	memset(s, 0, sizeof *s);
}

static void rec_forget(quarantine_t *q, const qsample_t *s);

/* Remove sample i (order kept). */
static void remove_at(quarantine_t *q, size_t i)
{
	rec_forget(q, &q->s[i]);
	sample_free(&q->s[i]);
	memmove(q->s + i, q->s + i + 1, (q->n - i - 1) * sizeof *q->s);
	q->n--;
	if (!q->n)
		q->dim = 0;
	q->changes++;
}

static size_t pending(const quarantine_t *q)
{
	size_t p = 0;
	for (size_t i = 0; i < q->n; i++)
		p += !q->s[i].taken;
	return p;
}

static void expire(quarantine_t *q, uint64_t now)
{
	if (!q->max_age_ns)
		return;
	while (q->n && q->s[0].admitted_ns + q->max_age_ns < now) {
		remove_at(q, 0);
		q->expired++;
	}
}

/* ---- parameters ------------------------------------------------------- */

static void read_runtime(tlcm_ctx_t *ctx, quarantine_t *q)
{
	q->conf_below = tlcm_param_float(ctx, "confidence_below");
	q->dist_above = tlcm_param_float(ctx, "distance_above");
	q->nov_above = tlcm_param_float(ctx, "novelty_above");
	q->batch_min = (size_t)tlcm_param_int(ctx, "batch_min");
	q->batch_every = (size_t)tlcm_param_int(ctx, "batch_every");
	q->on_drift_end = tlcm_param_bool(ctx, "batch_on_drift_end");
}

static void free_all(quarantine_t *q)
{
	for (size_t i = 0; i < q->n; i++)
		sample_free(&q->s[i]);
	free(q->s);
	q->s = NULL;
	q->n = q->cap = q->dim = 0;
	for (size_t i = 0; i < q->ndrifting; i++)
		free(q->drifting[i]);
	q->ndrifting = 0;
	for (size_t i = 0; q->cache && i < q->cache_cap; i++)
		free(q->cache[i].px);
	free(q->cache);
	q->cache = NULL;
	for (size_t i = 0; i < q->nops; i++)
		free(q->ops[i].val);
	free(q->ops);
	q->ops = NULL;
	q->nops = q->ops_cap = 0;
}

static int load_records(tlcm_ctx_t *ctx, quarantine_t *q);

static int init(tlcm_ctx_t *ctx, void *st)
{
	quarantine_t *q = st;
	q->max_size = (size_t)tlcm_param_int(ctx, "max_size");
	q->max_age_ns = tlcm_param_duration_ns(ctx, "max_age");
	q->interval_ns = tlcm_param_duration_ns(ctx, "batch_interval");
	q->persist_every = (size_t)tlcm_param_int(ctx, "persist_every");
	q->thumb_size = (unsigned)tlcm_param_int(ctx, "thumb_size");
	q->cache_cap = (size_t)tlcm_param_int(ctx, "frame_cache");
	q->all = !strcmp(tlcm_param_str(ctx, "combine"), "all");
	read_runtime(ctx, q);
	const char *const *items;
	size_t n = tlcm_param_list(ctx, "admit", &items);
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(items[i], "drift"))
			q->policy |= R_DRIFT;
		else if (!strcmp(items[i], "low_confidence"))
			q->policy |= R_LOW;
		else if (!strcmp(items[i], "far"))
			q->policy |= R_FAR;
		else if (!strcmp(items[i], "novel"))
			q->policy |= R_NOVEL;
		else {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "admit: unknown "
				      "condition '%s' (expected drift, "
				      "low_confidence, far, novel)", items[i]);
			return TLCM_EINVAL;
		}
	}
	if (!q->policy) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "admit: expected at least "
			      "one of drift, low_confidence, far, novel");
		return TLCM_EINVAL;
	}
	if ((q->policy & R_FAR) && q->dist_above <= 0) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "admit: far needs "
			      "distance_above > 0");
		return TLCM_EINVAL;
	}
	q->cache = calloc(q->cache_cap, sizeof *q->cache);
	if (!q->cache)
		return TLCM_ENOMEM;
	uint64_t tick = q->interval_ns;
	if (q->max_age_ns) {
		uint64_t a = q->max_age_ns / 4 > 1000000000u ? 1000000000u
							     : q->max_age_ns / 4;
		if (!tick || a < tick)
			tick = a ? a : 1000000;
	}
	if (tick)
		tlcm_set_tick(ctx, tick);
	q->next_interval = q->interval_ns ? tlcm_now_ns() + q->interval_ns
					  : UINT64_MAX;
	return load_records(ctx, q);
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	(void)ctx;
	free_all(st);
}

static int param_changed(tlcm_ctx_t *ctx, void *st, const char *name)
{
	(void)name;
	read_runtime(ctx, st);
	return 0;
}

/* ---- persistence ------------------------------------------------------ */

static tlcm_fbb_ref_t build_sample(tlcm_fbb_t *b, const qsample_t *s,
				   size_t dim, bool with_taken)
{
	tlcm_fbb_ref_t l = s->label ? tlcm_fbb_cstring(b, s->label) : 0;
	tlcm_fbb_ref_t t = s->truth ? tlcm_fbb_cstring(b, s->truth) : 0;
	tlcm_fbb_ref_t x = tlcm_QuarantinedSample_features_create(b, s->x,
								  dim);
	tlcm_fbb_ref_t th = s->thumb ? tlcm_QuarantinedSample_thumbnail_create(
					       b, s->thumb,
					       (size_t)s->tw * s->th) : 0;
	tlcm_QuarantinedSample_start(b);
	tlcm_QuarantinedSample_add_frame_id(b, s->frame);
	tlcm_QuarantinedSample_add_time_ns(b, s->time_ns);
	tlcm_QuarantinedSample_add_admitted_ns(b, s->admitted_ns);
	if (l)
		tlcm_QuarantinedSample_add_label(b, l);
	tlcm_QuarantinedSample_add_confidence(b, s->conf);
	tlcm_QuarantinedSample_add_mean_distance(b, s->mdist);
	tlcm_QuarantinedSample_add_reasons(b, s->reasons);
	if (t)
		tlcm_QuarantinedSample_add_truth(b, t);
	tlcm_QuarantinedSample_add_features(b, x);
	if (th) {
		tlcm_QuarantinedSample_add_thumb_width(b, s->tw);
		tlcm_QuarantinedSample_add_thumb_height(b, s->th);
		tlcm_QuarantinedSample_add_thumbnail(b, th);
	}
	if (with_taken && s->taken)
		tlcm_QuarantinedSample_add_taken(b, true);
	return tlcm_QuarantinedSample_end(b);
}

/* The state as a QuarantineState: with every sample (the snapshot) or
 * none (the counters record). */
static int build_state(tlcm_fbb_t *b, const quarantine_t *q, bool samples_too)
{
	size_t ns = samples_too ? q->n : 0;
	size_t nr = ns > q->ndrifting ? ns : q->ndrifting;
	tlcm_fbb_ref_t *refs = calloc(nr ? nr : 1, sizeof *refs);
	if (!refs)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < ns; i++)
		refs[i] = build_sample(b, &q->s[i], q->dim, true);
	tlcm_fbb_ref_t samples = ns ? tlcm_QuarantineState_samples_create(
					      b, refs, ns) : 0;
	for (size_t i = 0; i < q->ndrifting; i++)
		refs[i] = tlcm_fbb_cstring(b, q->drifting[i]);
	tlcm_fbb_ref_t drifting = tlcm_QuarantineState_drifting_create(
		b, refs, q->ndrifting);
	free(refs);
	tlcm_QuarantineState_start(b);
	if (samples)
		tlcm_QuarantineState_add_samples(b, samples);
	tlcm_QuarantineState_add_seen(b, q->seen);
	tlcm_QuarantineState_add_admitted(b, q->admitted);
	tlcm_QuarantineState_add_evicted(b, q->evicted);
	tlcm_QuarantineState_add_expired(b, q->expired);
	tlcm_QuarantineState_add_resolved(b, q->resolved);
	tlcm_QuarantineState_add_released(b, q->released);
	tlcm_QuarantineState_add_taken(b, q->taken);
	tlcm_QuarantineState_add_skipped(b, q->skipped);
	tlcm_QuarantineState_add_bad(b, q->bad);
	tlcm_QuarantineState_add_batches(b, q->batches);
	tlcm_QuarantineState_add_since_batch(b, q->since_batch);
	tlcm_QuarantineState_add_drifting(b, drifting);
	return tlcm_QuarantineState_finish(b, tlcm_QuarantineState_end(b),
					   NULL) ? 0 : tlcm_fbb_error(b);
}

static int snapshot(tlcm_ctx_t *ctx, void *st, tlcm_fbb_t *b)
{
	(void)ctx;
	return build_state(b, st, true);
}

/* ---- records ----------------------------------------------------------
 * "s/<seq>"  one sample: a QuarantineState holding just it, written once
 *            at admission (seq: q->admitted then, 16 hex digits, so key
 *            order is admission order);
 * "t/<seq>"  present while that sample is taken (empty);
 * "m"        the counters and drifting detectors (a QuarantineState
 *            without samples).
 * Each callback's changes go out in one atomic batch, the counters with
 * them. A failed write (full disk) is logged and retried as a full
 * rewrite at the next change or tick; the process keeps going. */

static void rec_key(char key[20], char kind, uint64_t seq)
{
	snprintf(key, 20, "%c/%016" PRIx64, kind, seq);
}

/* A new pending op with key "<kind>/<seq>" ("m" for kind 'm'), val copied
 * (NULL: a delete). Out of memory: nothing queued, and the next flush
 * rewrites everything instead. */
static void rec_queue(quarantine_t *q, char kind, uint64_t seq,
		      const void *val, size_t vlen)
{
	if (!q->records || q->resync)
		return;
	if (q->nops == q->ops_cap) {
		size_t nc = q->ops_cap ? 2 * q->ops_cap : 16;
		qop_t *no = realloc(q->ops, nc * sizeof *no);
		if (!no) {
			q->resync = true;
			return;
		}
		q->ops = no;
		q->ops_cap = nc;
	}
	qop_t *o = &q->ops[q->nops];
	*o = (qop_t){.vlen = vlen};
	if (kind == 'm')
		o->klen = (size_t)snprintf(o->key, sizeof o->key, "m");
	else
		o->klen = (rec_key(o->key, kind, seq), 18);
	if (val) {
		if (!(o->val = malloc(vlen ? vlen : 1))) {
			q->resync = true;
			return;
		}
		memcpy(o->val, val, vlen);
	}
	q->nops++;
}

static void rec_forget(quarantine_t *q, const qsample_t *s)
{
	rec_queue(q, 's', s->seq, NULL, 0);
	if (s->taken)
		rec_queue(q, 't', s->seq, NULL, 0);
}

static void rec_taken(quarantine_t *q, const qsample_t *s)
{
	rec_queue(q, 't', s->seq, s->taken ? "" : NULL, 0);
}

/* Queue sample s's record (built here, in a buffer of its own). */
static void rec_sample(quarantine_t *q, const qsample_t *s)
{
	if (!q->records || q->resync)
		return;
	tlcm_fbb_t b;
	if (tlcm_fbb_init(&b, 256 + 4 * q->dim + (size_t)s->tw * s->th)) {
		q->resync = true;
		return;
	}
	tlcm_fbb_ref_t r = build_sample(&b, s, q->dim, false);
	tlcm_fbb_ref_t v = tlcm_QuarantineState_samples_create(&b, &r, 1);
	tlcm_QuarantineState_start(&b);
	tlcm_QuarantineState_add_samples(&b, v);
	size_t len = 0;
	const void *data = tlcm_QuarantineState_finish(
		&b, tlcm_QuarantineState_end(&b), &len);
	if (!data)
		q->resync = true;
	else
		rec_queue(q, 's', s->seq, data, len);
	tlcm_fbb_fini(&b);
}

struct rec_keys {
	char (*k)[20];
	size_t n, cap;
	bool oom;
};

static int collect_key(void *arg, const void *key, size_t klen,
		       const void *val, size_t vlen)
{
	struct rec_keys *r = arg;
	(void)val;
	(void)vlen;
	if (klen >= 20)
		return 0;
	if (r->n == r->cap) {
		size_t nc = r->cap ? 2 * r->cap : 64;
		char(*nk)[20] = realloc(r->k, nc * sizeof *nk);
		if (!nk) {
			r->oom = true;
			return 1;
		}
		r->k = nk;
		r->cap = nc;
	}
	memcpy(r->k[r->n], key, klen);
	r->k[r->n++][klen] = 0;
	return 0;
}

/* Replace the pending ops by a rewrite of everything: delete every
 * record there is, put every sample and marker. */
static int rec_rewrite(tlcm_ctx_t *ctx, quarantine_t *q)
{
	for (size_t i = 0; i < q->nops; i++)
		free(q->ops[i].val);
	q->nops = 0;
	struct rec_keys old = {0};
	int rc = tlcm_records_scan(ctx, "s/", collect_key, &old);
	if (!rc)
		rc = tlcm_records_scan(ctx, "t/", collect_key, &old);
	if (old.oom)
		rc = TLCM_ENOMEM;
	q->resync = false;
	for (size_t i = 0; !rc && i < old.n; i++) {
		/* keys as found: "s/<16 hex>" or "t/<16 hex>" */
		uint64_t seq = strtoull(old.k[i] + 2, NULL, 16);
		rec_queue(q, old.k[i][0], seq, NULL, 0);
	}
	free(old.k);
	for (size_t i = 0; !rc && i < q->n; i++) {
		rec_sample(q, &q->s[i]);
		if (q->s[i].taken)
			rec_taken(q, &q->s[i]);
	}
	if (!rc && q->resync)
		rc = TLCM_ENOMEM;
	if (rc)
		q->resync = true;
	return rc;
}

/* Write the pending changes with the counters, in one batch. */
static int rec_flush(tlcm_ctx_t *ctx, quarantine_t *q)
{
	if (!q->changes && !q->nops && !q->resync)
		return 0;
	int rc = q->resync ? rec_rewrite(ctx, q) : 0;
	tlcm_fbb_t b;
	if (!rc && !(rc = tlcm_fbb_init(&b, 512))) {
		if (!(rc = build_state(&b, q, false))) {
			size_t len = b.used;
			rec_queue(q, 'm', 0, b.buf + b.cap - b.used, len);
		}
		tlcm_fbb_fini(&b);
	}
	if (!rc && q->resync)
		rc = TLCM_ENOMEM;
	tlcm_record_op_t *ops = NULL;
	if (!rc && !(ops = malloc((q->nops ? q->nops : 1) * sizeof *ops)))
		rc = TLCM_ENOMEM;
	if (!rc) {
		for (size_t i = 0; i < q->nops; i++)
			ops[i] = (tlcm_record_op_t){q->ops[i].key,
						    q->ops[i].klen,
						    q->ops[i].val,
						    q->ops[i].vlen};
		rc = tlcm_records_write(ctx, ops, q->nops);
	}
	free(ops);
	for (size_t i = 0; i < q->nops; i++)
		free(q->ops[i].val);
	q->nops = 0;
	if (rc) {
		/* what is on disk is now unknown: rewrite it all next time */
		q->resync = true;
		if (q->write_failures++ % 100 == 0)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "cannot write the "
				      "quarantine's records (%" PRIu64
				      " failures so far; retrying): %s",
				      q->write_failures, tlcm_strerror(rc));
		return rc;
	}
	q->changes = 0;
	return 0;
}

static void persist(tlcm_ctx_t *ctx, quarantine_t *q, bool force)
{
	if (q->records) {
		rec_flush(ctx, q);
		return;
	}
	if (!q->changes || (!force && (!q->persist_every ||
				       q->changes < q->persist_every)))
		return;
	q->changes = 0;
	int rc = tlcm_snapshot_now(ctx, "quarantine");
	if (rc && rc != TLCM_ENOTSUP)
		tlcm_node_log(ctx, TLCM_LOG_WARN, "cannot persist the "
			      "quarantine: %s", tlcm_strerror(rc));
}

static int refuse(tlcm_ctx_t *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int refuse(tlcm_ctx_t *ctx, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: %s", msg);
	return TLCM_EBADMSG;
}

/* Sample i of the state into s (checked: dim values, thumbnail size). */
static int load_sample(tlcm_QuarantinedSample_table_t t, size_t dim,
		       qsample_t *s)
{
	bool ok = true;
	memset(s, 0, sizeof *s);
	s->frame = tlcm_QuarantinedSample_frame_id(t);
	s->time_ns = tlcm_QuarantinedSample_time_ns(t);
	s->admitted_ns = tlcm_QuarantinedSample_admitted_ns(t);
	s->label = dup_str(tlcm_QuarantinedSample_label(t),
			   tlcm_QuarantinedSample_label_len(t), &ok);
	s->truth = dup_str(tlcm_QuarantinedSample_truth(t),
			   tlcm_QuarantinedSample_truth_len(t), &ok);
	s->conf = tlcm_QuarantinedSample_confidence(t);
	s->mdist = tlcm_QuarantinedSample_mean_distance(t);
	s->reasons = tlcm_QuarantinedSample_reasons(t);
	s->taken = tlcm_QuarantinedSample_taken(t);
	s->x = malloc(dim * sizeof *s->x);
	if (s->x)
		memcpy(s->x, tlcm_QuarantinedSample_features(t),
		       dim * sizeof *s->x);
	size_t tl = tlcm_QuarantinedSample_thumbnail_len(t);
	if (tl) {
		s->tw = tlcm_QuarantinedSample_thumb_width(t);
		s->th = tlcm_QuarantinedSample_thumb_height(t);
		s->thumb = malloc(tl);
		if (s->thumb)
			memcpy(s->thumb, tlcm_QuarantinedSample_thumbnail(t),
			       tl);
		ok = ok && s->thumb;
	}
	if (!ok || !s->x) {
		sample_free(s);
		return TLCM_ENOMEM;
	}
	return 0;
}

/* Check the samples of state t: the same number of features (> 0), a
 * thumbnail matching its size. Returns NULL, or what is wrong (in why). */
static const char *check_samples(tlcm_QuarantineState_table_t t, size_t *dim,
				 char *why, size_t wlen)
{
	size_t n = tlcm_QuarantineState_samples_len(t);
	for (size_t i = 0; i < n; i++) {
		tlcm_QuarantinedSample_table_t s =
			tlcm_QuarantineState_samples_at(t, i);
		size_t d = tlcm_QuarantinedSample_features_len(s);
		size_t tl = tlcm_QuarantinedSample_thumbnail_len(s);
		if (!*dim)
			*dim = d;
		if (!d || d != *dim || d > MAX_DIM) {
			snprintf(why, wlen, "sample %zu has %zu features, "
				 "expected %zu", i, d, *dim);
			return why;
		}
		if (tl && tl != (size_t)tlcm_QuarantinedSample_thumb_width(s) *
				      tlcm_QuarantinedSample_thumb_height(s)) {
			snprintf(why, wlen, "sample %zu: thumbnail of %zu bytes "
				 "is not %ux%u", i, tl,
				 tlcm_QuarantinedSample_thumb_width(s),
				 tlcm_QuarantinedSample_thumb_height(s));
			return why;
		}
	}
	if (tlcm_QuarantineState_drifting_len(t) > MAX_DRIFTING) {
		snprintf(why, wlen, "%zu drifting detectors, at most %d",
			 tlcm_QuarantineState_drifting_len(t), MAX_DRIFTING);
		return why;
	}
	return NULL;
}

/* Counters and drifting detectors from state t. */
static void set_counters(quarantine_t *q, tlcm_QuarantineState_table_t t)
{
	for (size_t i = 0; i < q->ndrifting; i++)
		free(q->drifting[i]);
	q->ndrifting = 0;
	for (size_t i = 0; i < tlcm_QuarantineState_drifting_len(t); i++) {
		const char *d = tlcm_QuarantineState_drifting_at(t, i);
		char *c = d ? strdup(d) : NULL;
		if (c)
			q->drifting[q->ndrifting++] = c;
	}
	q->seen = tlcm_QuarantineState_seen(t);
	q->admitted = tlcm_QuarantineState_admitted(t);
	q->evicted = tlcm_QuarantineState_evicted(t);
	q->expired = tlcm_QuarantineState_expired(t);
	q->resolved = tlcm_QuarantineState_resolved(t);
	q->released = tlcm_QuarantineState_released(t);
	q->taken = tlcm_QuarantineState_taken(t);
	q->skipped = tlcm_QuarantineState_skipped(t);
	q->bad = tlcm_QuarantineState_bad(t);
	q->batches = tlcm_QuarantineState_batches(t);
	q->since_batch = tlcm_QuarantineState_since_batch(t);
}

static void trim_to_max(quarantine_t *q)
{
	while (q->n > q->max_size) { /* max_size lowered */
		remove_at(q, 0);
		q->evicted++;
	}
}

static int restore(tlcm_ctx_t *ctx, void *st, const void *data, size_t len)
{
	quarantine_t *q = st;
	const char *why;
	char buf[160];
	if (tlcm_QuarantineState_verify_as_root(data, len, &why))
		return refuse(ctx, "%s", why);
	tlcm_QuarantineState_table_t t = tlcm_QuarantineState_as_root(data);
	size_t n = tlcm_QuarantineState_samples_len(t), dim = 0;
	if ((why = check_samples(t, &dim, buf, sizeof buf)))
		return refuse(ctx, "%s", why);
	if (q->from_records) {
		/* written as it changed, the records are newer than any
		 * snapshot: keep them */
		q->from_records = false;
		return 0;
	}
	qsample_t *s = calloc(n ? n : 1, sizeof *s);
	if (!s)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (load_sample(tlcm_QuarantineState_samples_at(t, i), dim,
				&s[i])) {
			while (i-- > 0)
				sample_free(&s[i]);
			free(s);
			return TLCM_ENOMEM;
		}
		s[i].seq = i;
	}
	for (size_t i = 0; i < q->n; i++)
		sample_free(&q->s[i]);
	free(q->s);
	q->s = s;
	q->n = q->cap = n;
	q->dim = dim;
	set_counters(q, t);
	if (q->admitted < n)
		q->admitted = n; /* the next sample's seq */
	q->resync = q->records; /* the records become this state */
	trim_to_max(q);
	q->changes = 0;
	if (q->records)
		rec_flush(ctx, q);
	tlcm_node_log(ctx, TLCM_LOG_INFO, "restored %zu quarantined samples",
		      q->n);
	return 0;
}

/* ---- loading the records (init) --------------------------------------- */

struct rec_load {
	tlcm_ctx_t *ctx;
	quarantine_t *q;
	bool meta;
	uint64_t max_seq;
	int rc;
};

static int load_meta(void *arg, const void *key, size_t klen, const void *val,
		     size_t vlen)
{
	struct rec_load *l = arg;
	(void)key;
	const char *why;
	char buf[160];
	if (klen != 1)
		return 0;
	if (tlcm_QuarantineState_verify_as_root(val, vlen, &why) ||
	    (why = check_samples(tlcm_QuarantineState_as_root(val),
				 &(size_t){0}, buf, sizeof buf))) {
		tlcm_node_log(l->ctx, TLCM_LOG_WARN, "record m (counters): "
			      "%s; counting from zero", why);
		l->q->resync = true;
		return 0;
	}
	set_counters(l->q, tlcm_QuarantineState_as_root(val));
	l->meta = true;
	return 0;
}

/* A sample record "s/<seq>"; a bad one is reported and dropped. */
static int load_rec_sample(void *arg, const void *key, size_t klen,
			   const void *val, size_t vlen)
{
	struct rec_load *l = arg;
	quarantine_t *q = l->q;
	const char *why = NULL;
	char buf[160];
	size_t dim = q->dim;
	if (klen != 18)
		why = "unexpected key";
	else if (tlcm_QuarantineState_verify_as_root(val, vlen, &why))
		; /* why says it */
	else if (tlcm_QuarantineState_samples_len(
			 tlcm_QuarantineState_as_root(val)) != 1)
		why = "not exactly one sample";
	else
		why = check_samples(tlcm_QuarantineState_as_root(val), &dim,
				    buf, sizeof buf);
	if (why) {
		tlcm_node_log(l->ctx, TLCM_LOG_WARN, "record %.*s: %s; "
			      "dropped", (int)klen, (const char *)key, why);
		q->resync = true;
		return 0;
	}
	if (q->n == q->cap) {
		size_t nc = q->cap ? 2 * q->cap : 16;
		qsample_t *ns = realloc(q->s, nc * sizeof *ns);
		if (!ns)
			return l->rc = TLCM_ENOMEM;
		q->s = ns;
		q->cap = nc;
	}
	qsample_t *s = &q->s[q->n];
	if (load_sample(tlcm_QuarantineState_samples_at(
				tlcm_QuarantineState_as_root(val), 0),
			dim, s))
		return l->rc = TLCM_ENOMEM;
	s->seq = strtoull((const char *)key + 2, NULL, 16);
	s->taken = false;
	if (s->seq > l->max_seq)
		l->max_seq = s->seq;
	q->dim = dim;
	q->n++;
	return 0;
}

/* A marker "t/<seq>": that sample is taken (samples are in seq order). */
static int load_taken(void *arg, const void *key, size_t klen,
		      const void *val, size_t vlen)
{
	quarantine_t *q = ((struct rec_load *)arg)->q;
	(void)val;
	(void)vlen;
	uint64_t seq = klen == 18 ? strtoull((const char *)key + 2, NULL, 16)
				  : UINT64_MAX;
	size_t lo = 0, hi = q->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (q->s[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < q->n && q->s[lo].seq == seq)
		q->s[lo].taken = true;
	else
		q->resync = true; /* a marker without its sample: drop it */
	return 0;
}

/* Read the records at start: 0 with q->records false when there is no
 * store for them. */
static int load_records(tlcm_ctx_t *ctx, quarantine_t *q)
{
	struct rec_load l = {.ctx = ctx, .q = q};
	int rc = tlcm_records_scan(ctx, "m", load_meta, &l);
	if (rc == TLCM_ENOTSUP)
		return 0;
	q->records = true;
	if (!rc)
		rc = tlcm_records_scan(ctx, "s/", load_rec_sample, &l);
	if (!rc)
		rc = tlcm_records_scan(ctx, "t/", load_taken, &l);
	if (!rc)
		rc = l.rc;
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot read the "
			      "quarantine's records: %s", tlcm_strerror(rc));
		return rc;
	}
	if (!l.meta && !q->n && !q->resync)
		return 0; /* nothing recorded yet */
	q->from_records = true;
	if (q->n && q->admitted <= l.max_seq)
		q->admitted = l.max_seq + 1; /* counters lost: no reused seq */
	trim_to_max(q);
	tlcm_node_log(ctx, TLCM_LOG_INFO, "restored %zu quarantined samples "
		      "(records)", q->n);
	if (q->resync || q->changes)
		rec_flush(ctx, q);
	return 0;
}

/* ---- batches ---------------------------------------------------------- */

static int emit_batch(tlcm_ctx_t *ctx, quarantine_t *q, const char *trigger)
{
	size_t p = pending(q);
	if (!p || p < q->batch_min)
		return 0;
	size_t max = 512 + strlen(trigger);
	for (size_t i = 0; i < q->n; i++)
		if (!q->s[i].taken)
			max += 160 + 4 * q->dim + (size_t)q->s[i].tw * q->s[i].th +
			       (q->s[i].label ? strlen(q->s[i].label) : 0) +
			       (q->s[i].truth ? strlen(q->s[i].truth) : 0);
	tlcm_fbb_ref_t *refs = malloc(p * sizeof *refs);
	if (!refs)
		return TLCM_ENOMEM;
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, OUT_BATCH, &b, max);
	if (rc) {
		free(refs);
		if (rc == TLCM_ETOOBIG)
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "a batch of %zu "
				      "samples (up to %zu bytes) does not fit "
				      "the `batch` edge: raise its capacity or "
				      "lower max_size", p, max);
		return rc;
	}
	size_t k = 0;
	for (size_t i = 0; i < q->n; i++)
		if (!q->s[i].taken)
			refs[k++] = build_sample(&b, &q->s[i], q->dim, false);
	tlcm_fbb_ref_t samples = tlcm_QuarantineBatch_samples_create(&b, refs,
								     k);
	free(refs);
	tlcm_fbb_ref_t tr = tlcm_fbb_cstring(&b, trigger);
	tlcm_QuarantineBatch_start(&b);
	tlcm_QuarantineBatch_add_seq(&b, q->batches + 1);
	tlcm_QuarantineBatch_add_size(&b, (uint32_t)q->n);
	tlcm_QuarantineBatch_add_admitted(&b, q->admitted);
	tlcm_QuarantineBatch_add_evicted(&b, q->evicted);
	tlcm_QuarantineBatch_add_expired(&b, q->expired);
	tlcm_QuarantineBatch_add_resolved(&b, q->resolved);
	tlcm_QuarantineBatch_add_in_drift(&b, q->ndrifting > 0);
	tlcm_QuarantineBatch_add_trigger(&b, tr);
	tlcm_QuarantineBatch_add_samples(&b, samples);
	rc = tlcm_emit_end(ctx, OUT_BATCH, &b, tlcm_QuarantineBatch_end(&b),
			   tlcm_QuarantineBatch_IDENTIFIER);
	if (rc && rc != TLCM_EAGAIN)
		return rc;
	q->batches++;
	q->since_batch = 0;
	tlcm_node_log(ctx, TLCM_LOG_DEBUG, "batch %" PRIu64 ": %zu samples "
		      "(%s)", q->batches, k, trigger);
	return 0;
}

/* ---- thumbnails ------------------------------------------------------- */

/* Gray mean (0.299 r + 0.587 g + 0.114 b) of the block [x0, x1) × [y0, y1)
 * of a w-wide image with ch channels. */
static uint8_t block_mean(const uint8_t *px, size_t w, int ch, size_t x0,
			  size_t x1, size_t y0, size_t y1)
{
	uint64_t sum = 0, cnt = 0;
	for (size_t y = y0; y < y1; y++)
		for (size_t x = x0; x < x1; x++, cnt++) {
			const uint8_t *p = px + (y * w + x) * (size_t)ch;
			sum += ch == 1 ? p[0] * 1000u
				       : 299u * p[0] + 587u * p[1] + 114u * p[2];
		}
	return (uint8_t)((sum / cnt + 500) / 1000);
}

/* A gray thumbnail fitting in size × size: the mean of f × f blocks,
 * f = ceil(max(w, h) / size). */
static uint8_t *make_thumb(const uint8_t *px, size_t w, size_t h, int ch,
			   unsigned size, uint16_t *tw, uint16_t *th)
{
	size_t big = w > h ? w : h, f = (big + size - 1) / size;
	size_t ow = (w + f - 1) / f, oh = (h + f - 1) / f;
	uint8_t *out = malloc(ow * oh);
	if (!out)
		return NULL;
	for (size_t y = 0; y < oh; y++)
		for (size_t x = 0; x < ow; x++)
			out[y * ow + x] = block_mean(
				px, w, ch, x * f, (x + 1) * f < w ? (x + 1) * f : w,
				y * f, (y + 1) * f < h ? (y + 1) * f : h);
	*tw = (uint16_t)ow;
	*th = (uint16_t)oh;
	return out;
}

static int on_frame(tlcm_ctx_t *ctx, quarantine_t *q, const tlcm_msg_t *m)
{
	const void *buf = tlcm_msg_data(m);
	int brc = tlcm_expect_msg(ctx, m, &q->bad, "frames", "Frame",
				   tlcm_Frame_IDENTIFIER,
				   tlcm_Frame_verify_as_root);
	if (brc)
		return brc;
	if (!q->thumb_size)
		return 0;
	tlcm_Frame_table_t f = tlcm_Frame_as_root(buf);
	size_t w = tlcm_Frame_width(f), h = tlcm_Frame_height(f);
	int ch = tlcm_Frame_format(f) == tlcm_PixelFormat_Rgb8 ? 3 : 1;
	if (!w || !h || w > 65535 || h > 65535 ||
	    tlcm_Frame_pixels_len(f) != w * h * (size_t)ch)
		return tlcm_bad_input(ctx, &q->bad, "frames: frame %" PRIu64 ": %zu pixel "
			   "bytes for %zux%zu (%s)", tlcm_Frame_id(f),
			   tlcm_Frame_pixels_len(f), w, h,
			   ch == 3 ? "Rgb8" : "Gray8");
	uint16_t tw, th;
	uint8_t *px = make_thumb(tlcm_Frame_pixels(f), w, h, ch,
				 q->thumb_size, &tw, &th);
	if (!px)
		return TLCM_ENOMEM;
	uint64_t id = tlcm_Frame_id(f);
	for (size_t i = q->n; i-- > 0;) /* the prediction came first */
		if (q->s[i].frame == id && !q->s[i].thumb) {
			q->s[i].thumb = px;
			q->s[i].tw = tw;
			q->s[i].th = th;
			q->changes++;
			return 0;
		}
	thumb_t *c = &q->cache[q->cache_next];
	q->cache_next = (q->cache_next + 1) % q->cache_cap;
	free(c->px);
	*c = (thumb_t){id, px, tw, th};
	return 0;
}

/* ---- predictions ------------------------------------------------------ */

static unsigned conditions(const quarantine_t *q, float conf, float mdist,
			   float novelty)
{
	unsigned r = 0;
	if (q->ndrifting)
		r |= R_DRIFT;
	if (conf < q->conf_below)
		r |= R_LOW;
	if (q->dist_above > 0 && mdist > q->dist_above)
		r |= R_FAR;
	if (novelty > 0 && novelty > q->nov_above)
		r |= R_NOVEL;
	return r & q->policy;
}

static int admit(tlcm_ctx_t *ctx, quarantine_t *q, tlcm_Prediction_table_t p,
		 unsigned reasons)
{
	uint64_t frame = tlcm_Prediction_frame_id(p);
	const float *x = tlcm_Prediction_features(p);
	size_t dim = tlcm_Prediction_features_len(p);
	if (!dim)
		return tlcm_bad_input(ctx, &q->bad, "in: frame %" PRIu64 ": Prediction without "
			   "features (set carry_features: true on the knn)",
			   frame);
	if (q->n && dim != q->dim)
		return tlcm_bad_input(ctx, &q->bad, "in: frame %" PRIu64 ": %zu features, the "
			   "quarantined samples have %zu", frame, dim, q->dim);
	if (dim > MAX_DIM)
		return tlcm_bad_input(ctx, &q->bad, "in: frame %" PRIu64 ": %zu features, at "
			   "most %d", frame, dim, MAX_DIM);
	for (size_t j = 0; j < dim; j++)
		if (!isfinite(x[j]))
			return tlcm_bad_input(ctx, &q->bad, "in: frame %" PRIu64 ": features[%zu]"
				   " = %g (expected finite)", frame, j,
				   (double)x[j]);
	if (tlcm_Prediction_label_len(p) > MAX_LABEL)
		return tlcm_bad_input(ctx, &q->bad, "in: frame %" PRIu64 ": label longer than "
			   "%d bytes", frame, MAX_LABEL);
	if (q->n == q->max_size) {
		remove_at(q, 0);
		q->evicted++;
	}
	if (q->n == q->cap) {
		size_t nc = q->cap ? 2 * q->cap : 16;
		if (nc > q->max_size)
			nc = q->max_size;
		qsample_t *ns = realloc(q->s, nc * sizeof *ns);
		if (!ns)
			return TLCM_ENOMEM;
		q->s = ns;
		q->cap = nc;
	}
	qsample_t s = {
		.frame = frame,
		.time_ns = tlcm_Prediction_time_ns(p),
		.admitted_ns = wall_ns(),
		.conf = tlcm_Prediction_confidence(p),
		.mdist = tlcm_Prediction_mean_distance(p),
		.reasons = (uint8_t)reasons,
	};
	bool ok = true;
	s.label = dup_str(tlcm_Prediction_label(p),
			  tlcm_Prediction_label_len(p), &ok);
	s.truth = dup_str(tlcm_Prediction_truth(p),
			  tlcm_Prediction_truth_len(p), &ok);
	s.x = malloc(dim * sizeof *s.x);
	if (!ok || !s.x) {
		sample_free(&s);
		return TLCM_ENOMEM;
	}
	memcpy(s.x, x, dim * sizeof *s.x);
	for (size_t i = 0; i < q->cache_cap; i++)
		if (q->cache[i].px && q->cache[i].frame == frame) {
			s.thumb = q->cache[i].px;
			s.tw = q->cache[i].w;
			s.th = q->cache[i].h;
			q->cache[i].px = NULL;
			break;
		}
	s.seq = q->admitted;
	q->s[q->n++] = s;
	q->dim = dim;
	rec_sample(q, &q->s[q->n - 1]);
	q->admitted++;
	q->since_batch++;
	q->changes++;
	return 0;
}

static int on_prediction(tlcm_ctx_t *ctx, quarantine_t *q,
			 const tlcm_msg_t *m)
{
	const void *buf = tlcm_msg_data(m);
	int brc = tlcm_expect_msg(ctx, m, &q->bad, "in", "Prediction",
				   tlcm_Prediction_IDENTIFIER,
				   tlcm_Prediction_verify_as_root);
	if (brc)
		return brc;
	tlcm_Prediction_table_t p = tlcm_Prediction_as_root(buf);
	float conf = tlcm_Prediction_confidence(p);
	float md = tlcm_Prediction_mean_distance(p);
	float nov = tlcm_Prediction_novelty(p);
	if (!isfinite(conf) || !isfinite(md))
		return tlcm_bad_input(ctx, &q->bad, "in: frame %" PRIu64 ": non-finite %s",
			   tlcm_Prediction_frame_id(p),
			   isfinite(conf) ? "mean_distance" : "confidence");
	q->seen++;
	expire(q, wall_ns());
	unsigned r = 0;
	if (!tlcm_Prediction_label_len(p))
		q->skipped++; /* the KNN had nothing to say */
	else
		r = conditions(q, conf, md, isfinite(nov) ? nov : 0);
	bool in = q->all ? r && r == q->policy : r != 0;
	int rc = 0;
	if (!in) {
		rc = tlcm_emit_msg(ctx, OUT_PASSED, m);
		rc = rc == TLCM_EAGAIN ? 0 : rc;
	} else {
		rc = admit(ctx, q, p, r);
		if (!rc && q->since_batch >= q->batch_every)
			rc = emit_batch(ctx, q, "admissions");
	}
	persist(ctx, q, false);
	return rc;
}

/* ---- drift and notices ------------------------------------------------ */

static int on_drift(tlcm_ctx_t *ctx, quarantine_t *q, const tlcm_msg_t *m)
{
	const void *buf = tlcm_msg_data(m);
	int brc = tlcm_expect_msg(ctx, m, &q->bad, "drift", "DriftEvent",
				   tlcm_DriftEvent_IDENTIFIER,
				   tlcm_DriftEvent_verify_as_root);
	if (brc)
		return brc;
	tlcm_DriftEvent_table_t e = tlcm_DriftEvent_as_root(buf);
	const char *node = tlcm_DriftEvent_node(e);
	if (!node || !node[0])
		node = "?";
	size_t i = 0;
	while (i < q->ndrifting && strcmp(q->drifting[i], node))
		i++;
	bool start = tlcm_DriftEvent_kind(e) == tlcm_DriftKind_Start;
	if (start && i == q->ndrifting) {
		if (q->ndrifting == MAX_DRIFTING)
			return tlcm_bad_input(ctx, &q->bad, "drift: more than %d detectors in "
				   "drift", MAX_DRIFTING);
		char *c = strdup(node);
		if (!c)
			return TLCM_ENOMEM;
		q->drifting[q->ndrifting++] = c;
		q->changes++;
	} else if (!start && i < q->ndrifting) {
		free(q->drifting[i]);
		q->drifting[i] = q->drifting[--q->ndrifting];
		q->changes++;
		if (!q->ndrifting && q->on_drift_end) {
			int rc = emit_batch(ctx, q, "drift_end");
			if (rc)
				return rc;
		}
	}
	persist(ctx, q, false);
	return 0;
}

static int on_notice(tlcm_ctx_t *ctx, quarantine_t *q, const tlcm_msg_t *m)
{
	const void *buf = tlcm_msg_data(m);
	int brc = tlcm_expect_msg(ctx, m, &q->bad, "notices", "QuarantineNotice",
				   tlcm_QuarantineNotice_IDENTIFIER,
				   tlcm_QuarantineNotice_verify_as_root);
	if (brc)
		return brc;
	tlcm_QuarantineNotice_table_t n = tlcm_QuarantineNotice_as_root(buf);
	int kind = tlcm_QuarantineNotice_kind(n);
	if (!tlcm_NoticeKind_is_known((tlcm_NoticeKind_enum_t)kind))
		return tlcm_bad_input(ctx, &q->bad, "notices: unknown kind %d", kind);
	size_t cnt = tlcm_QuarantineNotice_frame_ids_len(n);
	for (size_t k = 0; k < cnt; k++) {
		uint64_t id = tlcm_QuarantineNotice_frame_ids_at(n, k);
		for (size_t i = 0; i < q->n; i++) {
			if (q->s[i].frame != id)
				continue;
			if (kind == tlcm_NoticeKind_Resolved) {
				remove_at(q, i);
				q->resolved++;
			} else if (kind == tlcm_NoticeKind_Taken) {
				q->taken += !q->s[i].taken;
				q->s[i].taken = true;
				rec_taken(q, &q->s[i]);
				q->changes++;
			} else if (q->s[i].taken) {
				q->s[i].taken = false;
				rec_taken(q, &q->s[i]);
				q->released++;
				q->changes++;
			}
			break;
		}
	}
	persist(ctx, q, kind != tlcm_NoticeKind_Taken);
	return 0;
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	quarantine_t *q = st;
	q->from_records = false; /* a later restore is a rollback */
	switch (port) {
	case IN_PRED: return on_prediction(ctx, q, m);
	case IN_DRIFT: return on_drift(ctx, q, m);
	case IN_FRAMES: return on_frame(ctx, q, m);
	default: return on_notice(ctx, q, m);
	}
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	quarantine_t *q = st;
	q->from_records = false;
	expire(q, wall_ns());
	int rc = 0;
	if (now >= q->next_interval) {
		q->next_interval = now + q->interval_ns;
		rc = emit_batch(ctx, q, "interval");
	}
	persist(ctx, q, false);
	return rc;
}

/* ---- describe --------------------------------------------------------- */

/* Append a JSON string (escaped) at buf[*at]; false when it did not fit
 * before `end`. */
static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	quarantine_t *q = st;
	(void)ctx;
	if (len < 400)
		return TLCM_ENOSPC;
	size_t p = pending(q);
	int w = snprintf(buf, len, "{\"size\":%zu,\"waiting\":%zu,\"taken\":"
			 "%zu,\"max_size\":%zu,\"dim\":%zu,\"seen\":%" PRIu64
			 ",\"admitted\":%" PRIu64 ",\"evicted\":%" PRIu64
			 ",\"expired\":%" PRIu64 ",\"resolved\":%" PRIu64
			 ",\"released\":%" PRIu64 ",\"skipped\":%" PRIu64
			 ",\"bad\":%" PRIu64 ",\"batches\":%" PRIu64
			 ",\"in_drift\":%s,\"labels\":{",
			 q->n, p, q->n - p, q->max_size, q->dim, q->seen,
			 q->admitted, q->evicted, q->expired, q->resolved,
			 q->released, q->skipped, q->bad, q->batches,
			 q->ndrifting ? "true" : "false");
	size_t at = (size_t)w, end = len - 40;
	bool cut = false;
	size_t listed = 0;
	/* per predicted label: count each label at its first occurrence */
	for (size_t i = 0; i < q->n && !cut; i++) {
		const char *l = q->s[i].label ? q->s[i].label : "";
		size_t j = 0, c = 0;
		while (j < i && strcmp(q->s[j].label ? q->s[j].label : "", l))
			j++;
		if (j < i)
			continue;
		for (j = i; j < q->n; j++)
			c += !strcmp(q->s[j].label ? q->s[j].label : "", l);
		if (!tlcm_json_count(buf, &at, end, !listed, l, c)) {
			cut = true;
			break;
		}
		listed++;
	}
	snprintf(buf + at, len - at, "}%s}",
		 cut ? ",\"labels_truncated\":true" : "");
	return 0;
}

const tlcm_node_type_t tlcm_node_quarantine = {
	.name = "quarantine",
	.doc = "hold uncertain predictions (features, thumbnail) for the "
	       "adapter; bounded, persisted",
	.inputs = inputs,
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(quarantine_t),
	.init = init,
	.process = process,
	.tick = tick,
	.param_changed = param_changed,
	.snapshot = snapshot,
	.restore = restore,
	.describe = describe,
	.fini = fini,
};
