/* test_adapt.c — node `adapt.heuristic` with a real knn, through graphs.
 *
 * The script warms the knn up (class A around (0.5, 0.5), B around
 * (10.5, 0.5)), sends queries whose predictions are the adapter's
 * held-out stream, and hands the adapter quarantine batches (scripted, or
 * in the last test from a real quarantine node). Events (slot 0), notices
 * (slot 1) and predictions (slot 2) are collected; knn and adapter run
 * wrapped so the script can wait until they have taken what it sent
 * (separate edges are not ordered) and so their describe() is saved.
 *
 * Checks: a new cluster is committed (Trial then Commit, group snapshots
 * "before adapt new_1" and "adapt new_1 (6 samples)" of adapter and knn,
 * the knn predicts new_1 there, Taken then Resolved); each rollback rule
 * fires on inputs built for it alone — confidence, the dominant label's
 * share, the quarantine's growth — and the knn's samples are exactly those
 * of before (describe, predictions, store history); the pre-check rejects
 * without sending anything; ground truth relabels, renames a pseudo-label
 * by majority, adds corrected samples, waits for a running trial; bad
 * input is counted as errors naming the node while the graph runs on; a
 * cluster inside a known class keeps its label (by neighbour distance, or
 * with inside_centroid by position); a new label that would change too
 * few held-out answers is rejected (min_effect); a too dispersed cluster
 * is split again; after a restart the adapter still relabels what it taught
 * (and a refused newest state falls back to the previous one); the whole
 * loop knn → quarantine → adapter → knn commits on its own, and its
 * events carry the members' true classes for evaluation. The knn's
 * predictions carry novelty = mean_distance / the label's typical
 * neighbour distance (computed here from the warm-up).
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <math.h>
#include <unistd.h>

#include "engine/log.h"
#include "engine/store.h"
#include "fb/adapt_event_fb.h"
#include "fb/prediction_fb.h"
#include "fb/quarantine_notice_fb.h"
#include "tests/tlcm_test.h"
#include "tests/unit/test_adapt_script.h"

static tlcm_registry_t reg;
static char dir[] = "/tmp/tlcm-adapt-XXXXXX";
static int nstore;

enum { O_WARM, O_QUERY, O_BATCH, O_LABELS, O_DRIFT, O_JUNK };
enum { EVENTS, NOTICES, PREDS };

/* knn input ports, adapter input ports */
enum { KNN_IN, KNN_SAMPLES };
enum { A_BATCH, A_HELDOUT, A_LABELS };

#define WARM(f, c, x0, x1) {.kind = TS_FEAT, .port = O_WARM, .frame = f, \
			    .i = c, .dim = 2, .x = {x0, x1}}
#define Q(f, x0, x1) {.kind = TS_FEAT, .port = O_QUERY, .frame = f, \
		      .i = -1, .dim = 2, .x = {x0, x1}}
#define QA(f) Q(f, 0.5f, 0.5f)
#define QB(f) Q(f, 10.5f, 0.5f)
#define BATCH(b, sz) {.kind = TS_BATCH, .port = O_BATCH, .bs = b, \
		      .n = sizeof b / sizeof b[0], .dim = 2, .size = sz}
#define TRUTH(f, l) {.kind = TS_SMPL, .port = O_LABELS, .frame = f, .s = l}
#define WAIT(fn) {.kind = TS_WAIT, .until = fn}

/* A: 5 samples around (0.5, 0.5), B: 5 around (10.5, 0.5) */
#define WARM_UP                                                            \
	WARM(901, 0, 0, 0), WARM(902, 0, 0, 1), WARM(903, 0, 1, 0),        \
	WARM(904, 0, 1, 1), WARM(905, 0, 0.5f, 0.5f),                      \
	WARM(911, 1, 10, 0), WARM(912, 1, 10, 1), WARM(913, 1, 11, 0),     \
	WARM(914, 1, 11, 1), WARM(915, 1, 10.5f, 0.5f)

/* ten held-out predictions: A, B, A, B, ... */
#define TEN(base)                                                          \
	QA(base), QB(base + 1), QA(base + 2), QB(base + 3), QA(base + 4),  \
	QB(base + 5), QA(base + 6), QB(base + 7), QA(base + 8),            \
	QB(base + 9)

#define UNTIL(name, id, port, n) \
	static __attribute__((unused)) bool name(void) \
	{ return tlcm_ts_processed(id, port) >= n; }
UNTIL(warm10, "knn", KNN_SAMPLES, 10)
UNTIL(warm13, "knn", KNN_SAMPLES, 13)
UNTIL(warm14, "knn", KNN_SAMPLES, 14)
UNTIL(held10, "adapt", A_HELDOUT, 10)
UNTIL(held20, "adapt", A_HELDOUT, 20)
UNTIL(held30, "adapt", A_HELDOUT, 30)
UNTIL(held1, "adapt", A_HELDOUT, 1)
UNTIL(held21, "adapt", A_HELDOUT, 21)
UNTIL(held31, "adapt", A_HELDOUT, 31)
UNTIL(held37, "adapt", A_HELDOUT, 37)
UNTIL(labels3, "adapt", A_LABELS, 3)
UNTIL(qdrift, "q", 1, 1)
#define EVENTS_AT_LEAST(name, n) \
	static __attribute__((unused)) bool name(void) \
	{ return tlcm_ts_count(EVENTS) >= n; }
EVENTS_AT_LEAST(ev1, 1)
EVENTS_AT_LEAST(ev2, 2)
EVENTS_AT_LEAST(ev3, 3)

/* the adapter's parameters for the scripted tests */
#define ADAPT_P "min_cluster_size: 3, max_dispersion: 1, min_silhouette: " \
		"0.6, min_heldout: 10, validate_window: 10, cooldown: 0"

/* ---- running ----------------------------------------------------------- */

static char store[300];

static const char *new_store(void)
{
	snprintf(store, sizeof store, "%s/s%d", dir, ++nstore);
	return store;
}

static void graph(char *yaml, size_t len, const char *adapt_params,
		  bool with_quarantine, const char *q_params)
{
	snprintf(yaml, len,
		 "graph: adapt\n"
		 "settings: { workers: 2, introspect: 'off', store: %s }\n"
		 "nodes:\n"
		 "  src: { type: script }\n"
		 "  knn: { type: w.knn, on_error: skip, params: { k: 4, "
		 "carry_features: true, class_names: [A, B] } }\n"
		 "  adapt: { type: w.adapt.heuristic, on_error: skip, params: "
		 "{ %s } }\n"
		 "  events: { type: collect, params: { slot: 0 } }\n"
		 "  notices: { type: collect, params: { slot: 1 } }\n"
		 "  preds: { type: collect, params: { slot: 2 } }\n"
		 "%s%s%s"
		 "edges:\n"
		 "  - { from: src.o0, to: knn.samples }\n"
		 "  - { from: src.o1, to: knn.in }\n"
		 "  - { from: src.o3, to: adapt.labels }\n"
		 "  - { from: src.o5, to: adapt.batch }\n"
		 "  - { from: knn.out, to: adapt.heldout }\n"
		 "  - { from: knn.out, to: preds.in }\n"
		 "  - { from: adapt.samples, to: knn.samples, feedback: true }\n"
		 "  - { from: adapt.events, to: events.in }\n"
		 "%s",
		 store, adapt_params,
		 with_quarantine ? "  q: { type: w.quarantine, on_error: skip, "
				   "params: { " : "",
		 with_quarantine ? q_params : "",
		 with_quarantine ? " } }\n" : "",
		 with_quarantine
		 ? "  - { from: src.o4, to: q.drift }\n"
		   "  - { from: knn.out, to: q.in }\n"
		   "  - { from: q.batch, to: adapt.batch, capacity: 1MiB }\n"
		   "  - { from: adapt.notices, to: q.notices, feedback: true }\n"
		   "  - { from: adapt.notices, to: notices.in }\n"
		   "  - { from: src.o2, to: adapt.batch }\n"
		 : "  - { from: src.o2, to: adapt.batch }\n"
		   "  - { from: adapt.notices, to: notices.in }\n");
}

static void run_ok(const ts_step_t *s, size_t n, const char *adapt_params)
{
	char yaml[4096];
	new_store();
	graph(yaml, sizeof yaml, adapt_params, false, NULL);
	tlcm_run_result_t res;
	CHECK_INT(tlcm_ts_run(&reg, yaml, s, n, &res), 0);
	CHECK_STR(res.why, "");
	for (size_t i = 0; res.nodes && i < res.nnodes; i++)
		CHECK_UINT(res.nodes[i].errors, 0);
	tlcm_run_result_fini(&res);
}

#define RUN_OK(s, p) run_ok(s, sizeof s / sizeof s[0], p)

/* ---- what came out ------------------------------------------------------- */

static tlcm_AdaptEvent_table_t event(size_t i)
{
	const ts_msg_t *m = tlcm_ts_msg(EVENTS, i);
	const char *why;
	if (!m || tlcm_AdaptEvent_verify_as_root(m->data, m->size, &why))
		return NULL;
	return tlcm_AdaptEvent_as_root(m->data);
}

static int kind_of(size_t i)
{
	tlcm_AdaptEvent_table_t e = event(i);
	return e ? tlcm_AdaptEvent_kind(e) : -1;
}

static const char *reason_of(size_t i)
{
	const char *r = tlcm_AdaptEvent_reason(event(i));
	return r ? r : "(none)";
}

static tlcm_QuarantineNotice_table_t notice(size_t i)
{
	const ts_msg_t *m = tlcm_ts_msg(NOTICES, i);
	return m ? tlcm_QuarantineNotice_as_root(m->data) : NULL;
}

static const char *notice_frames(size_t i)
{
	static char buf[256];
	tlcm_QuarantineNotice_table_t n = notice(i);
	size_t at = 0;
	buf[0] = 0;
	for (size_t k = 0; n && k < tlcm_QuarantineNotice_frame_ids_len(n);
	     k++)
		at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%llu",
				       k ? "," : "",
				       (unsigned long long)
					       tlcm_QuarantineNotice_frame_ids_at(
						       n, k));
	return buf;
}

/* The label the knn predicted for frame (its last prediction). */
static const char *predicted(uint64_t frame, float *conf)
{
	static char buf[64];
	snprintf(buf, sizeof buf, "(none)");
	for (size_t i = 0; i < tlcm_ts_count(PREDS); i++) {
		tlcm_Prediction_table_t p = tlcm_Prediction_as_root(
			tlcm_ts_msg(PREDS, i)->data);
		if (tlcm_Prediction_frame_id(p) != frame)
			continue;
		const char *l = tlcm_Prediction_label(p);
		snprintf(buf, sizeof buf, "%s", l ? l : "(null)");
		if (conf)
			*conf = tlcm_Prediction_confidence(p);
	}
	return buf;
}

/* describe() of node id: a number, or -1 */
static int64_t num(const char *id, const char *key)
{
	cJSON *j = cJSON_Parse(tlcm_ts_described(id));
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	int64_t r = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
	cJSON_Delete(j);
	return r;
}

/* the knn's samples per class: "A:5,B:5,new_1:3" (describe order) */
static const char *knn_classes(void)
{
	static char buf[256];
	cJSON *j = cJSON_Parse(tlcm_ts_described("knn"));
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "classes"), *e;
	size_t at = 0;
	buf[0] = 0;
	cJSON_ArrayForEach(e, c)
		at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%s:%d",
				       at ? "," : "", e->string, e->valueint);
	cJSON_Delete(j);
	return buf;
}

/* Snapshot history of node id in the last store: "reason|reason|..."
 * (newest `keep` kept) and the group of the version with `reason`. */
static const char *history(const char *id, const char *reason,
			   uint64_t *group)
{
	static char buf[1024];
	tlcm_store_t *st;
	char why[256];
	tlcm_store_opts_t so = {.read_only = true, .must_exist = true};
	buf[0] = 0;
	if (tlcm_store_open(&st, store, &so, why, sizeof why))
		return "(no store)";
	tlcm_snap_info_t *l = NULL;
	size_t n = 0, at = 0;
	tlcm_store_list(st, id, &l, &n);
	for (size_t i = 0; i < n; i++) {
		at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%s",
				       i ? "|" : "", l[i].reason);
		if (group && reason && !strcmp(l[i].reason, reason))
			*group = l[i].group;
	}
	free(l);
	tlcm_store_close(st);
	return buf;
}

/* ---- tests --------------------------------------------------------------- */

/* a tight new cluster far from A and B, predicted A with far neighbours */
static const ts_bsample_t far_cluster[] = {
	{1, "A", 0.5f, 9, {5, 10}},        {2, "A", 0.5f, 9, {5.1f, 10}},
	{3, "A", 0.5f, 9, {4.9f, 10}},     {4, "B", 0.5f, 9, {5, 10.1f}},
	{5, "A", 0.5f, 9, {5, 9.9f}},      {6, "A", 0.5f, 9, {5.05f, 10}},
};

/* The typical neighbour distance of a label written from its definition
 * (nodes/knn/index.h), for the warm-up's 5 points of a class and k = 4:
 * the median over the points of their mean Euclidean distance to their k
 * nearest other points. */
static double typical_of(const float (*p)[2], size_t n, size_t k)
{
	double loo[16], d[16];
	for (size_t i = 0; i < n; i++) {
		size_t nd = 0;
		for (size_t j = 0; j < n; j++)
			if (j != i)
				d[nd++] = hypot(p[i][0] - p[j][0],
						p[i][1] - p[j][1]);
		for (size_t a = 0; a < nd; a++) /* sort: a handful */
			for (size_t b = a + 1; b < nd; b++)
				if (d[b] < d[a]) {
					double t = d[a];
					d[a] = d[b];
					d[b] = t;
				}
		double sum = 0;
		for (size_t j = 0; j < k && j < nd; j++)
			sum += d[j];
		loo[i] = sum / (double)(k < nd ? k : nd);
	}
	for (size_t a = 0; a < n; a++)
		for (size_t b = a + 1; b < n; b++)
			if (loo[b] < loo[a]) {
				double t = loo[a];
				loo[a] = loo[b];
				loo[b] = t;
			}
	return n % 2 ? loo[n / 2] : (loo[n / 2 - 1] + loo[n / 2]) / 2;
}

/* Every prediction of frames [lo, hi] carries novelty = mean_distance /
 * the typical distance of its label (A and B: the warm-up's shapes). */
static void check_novelty(uint64_t lo, uint64_t hi)
{
	static const float a[5][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1},
				      {0.5f, 0.5f}};
	static const float b[5][2] = {{10, 0}, {10, 1}, {11, 0}, {11, 1},
				      {10.5f, 0.5f}};
	double ta = typical_of(a, 5, 4), tb = typical_of(b, 5, 4);
	size_t seen = 0;
	for (size_t i = 0; i < tlcm_ts_count(PREDS); i++) {
		tlcm_Prediction_table_t p = tlcm_Prediction_as_root(
			tlcm_ts_msg(PREDS, i)->data);
		uint64_t f = tlcm_Prediction_frame_id(p);
		if (f < lo || f > hi)
			continue;
		const char *l = tlcm_Prediction_label(p);
		double t = !strcmp(l, "A") ? ta : !strcmp(l, "B") ? tb : 0;
		double want = tlcm_Prediction_mean_distance(p) / t;
		CHECK(tlcm_Prediction_novelty_is_present(p));
		CHECK(fabs(tlcm_Prediction_novelty(p) - want) < 1e-5 * want);
		seen++;
	}
	CHECK_UINT(seen, hi - lo + 1);
	/* (0.5, 0.5): neighbours at 0 and 3 x sqrt(0.5); typical
	 * (1 + 1 + sqrt(2) + sqrt(0.5)) / 4 */
	CHECK(fabs(ta - (2 + sqrt(2) + sqrt(0.5)) / 4) < 1e-12);
}

static void commit(void)
{
	static const ts_step_t s[] = {
		WARM_UP, WAIT(warm10),
		TEN(100), TEN(110), WAIT(held20), /* the held-out buffer */
		BATCH(far_cluster, 6), WAIT(ev1), /* the trial */
		WAIT(warm13),                     /* 3 representatives in */
		TEN(120), WAIT(ev2),              /* validation: commit */
		Q(300, 5, 10), Q(301, 0.5f, 0.5f), WAIT(held31),
	};
	RUN_OK(s, ADAPT_P ", representatives: 3");
	CHECK_INT(kind_of(0), tlcm_AdaptKind_Trial);
	CHECK_STR(reason_of(0), "trial new_1 (6 samples, 3 sent)");
	CHECK_INT(kind_of(1), tlcm_AdaptKind_Commit);
	CHECK_STR(reason_of(1), "adapt new_1 (6 samples)");
	tlcm_AdaptEvent_table_t e = event(1);
	CHECK_STR(tlcm_AdaptEvent_label(e), "new_1");
	CHECK_UINT(tlcm_AdaptEvent_samples(e), 6);
	CHECK_UINT(tlcm_AdaptEvent_representatives(e), 3);
	CHECK(tlcm_AdaptEvent_version(e) > 0);
	CHECK(tlcm_AdaptEvent_knn_version(e) > 0);
	CHECK_DBL(tlcm_AdaptEvent_confidence_before(e), 1);
	CHECK_DBL(tlcm_AdaptEvent_confidence_after(e), 1);
	CHECK(tlcm_AdaptEvent_dispersion(e) > 0 &&
	      tlcm_AdaptEvent_dispersion(e) < 0.2f);
	/* the knn learned it */
	float c = 0;
	CHECK_STR(predicted(300, &c), "new_1");
	CHECK_DBL(c, 0.75f); /* 3 representatives of k = 4 */
	CHECK_STR(predicted(301, &c), "A");
	CHECK_STR(knn_classes(), "A:5,B:5,new_1:3");
	/* the knn's novelty on the held-out predictions */
	check_novelty(100, 119);
	/* the quarantine was told: taken, then resolved */
	CHECK_UINT(tlcm_ts_count(NOTICES), 2);
	CHECK_INT(tlcm_QuarantineNotice_kind(notice(0)),
		  tlcm_NoticeKind_Taken);
	CHECK_STR(notice_frames(0), "1,2,3,4,5,6");
	CHECK_INT(tlcm_QuarantineNotice_kind(notice(1)),
		  tlcm_NoticeKind_Resolved);
	CHECK_STR(notice_frames(1), "1,2,3,4,5,6");
	/* versioned group snapshots with their reasons */
	uint64_t g1 = 0, g2 = 0, g3 = 0, g4 = 0;
	const char *h = history("adapt", "before adapt new_1", &g1);
	CHECK_CONTAINS(h, "before adapt new_1|adapt new_1 (6 samples)");
	history("adapt", "adapt new_1 (6 samples)", &g3);
	h = history("knn", "before adapt new_1", &g2);
	CHECK_CONTAINS(h, "before adapt new_1|adapt new_1 (6 samples)");
	history("knn", "adapt new_1 (6 samples)", &g4);
	CHECK(g1 && g1 == g2);
	CHECK(g3 && g3 == g4 && g3 != g1);
	CHECK_INT(num("adapt", "commits"), 1);
	CHECK_INT(num("adapt", "taught"), 6);
}

/* After a rollback: the knn holds exactly its warm-up again. */
static void check_rolled_back(const char *reason)
{
	CHECK_INT(kind_of(0), tlcm_AdaptKind_Trial);
	CHECK_INT(kind_of(1), tlcm_AdaptKind_Rollback);
	CHECK_STR(reason_of(1), reason);
	CHECK_STR(knn_classes(), "A:5,B:5");
	CHECK_INT(num("knn", "samples"), 10);
	CHECK_INT(num("adapt", "rollbacks"), 1);
	CHECK_INT(num("adapt", "commits"), 0);
	CHECK_INT(num("adapt", "next_label"), 1); /* new_1 is free again */
	CHECK_INT(tlcm_QuarantineNotice_kind(notice(0)),
		  tlcm_NoticeKind_Taken);
	CHECK_INT(tlcm_QuarantineNotice_kind(notice(1)),
		  tlcm_NoticeKind_Released);
	CHECK_STR(notice_frames(1), notice_frames(0));
	/* store: both nodes rolled back as a group, then the adapter's
	 * own snapshot with the reason */
	char own[64];
	snprintf(own, sizeof own, "%.63s", reason);
	const char *h = history("adapt", NULL, NULL);
	CHECK_CONTAINS(h, "before adapt new_1|rollback to v");
	CHECK_CONTAINS(h, own);
	h = history("knn", NULL, NULL);
	CHECK_CONTAINS(h, "before adapt new_1|rollback to v");
}

/* rule 1: two representatives among A's neighbours: A still wins its
 * queries, but with half the votes (mean confidence 1 → 0.75) */
static const ts_bsample_t near_a[] = {
	{1, "B", 0.5f, 9, {0.85f, 0.5f}},  {2, "B", 0.5f, 9, {0.85f, 0.45f}},
	{3, "B", 0.5f, 9, {0.85f, 0.55f}}, {4, "B", 0.5f, 9, {0.8f, 0.5f}},
	{5, "B", 0.5f, 9, {0.9f, 0.5f}},
};
UNTIL(warm12, "knn", KNN_SAMPLES, 12)
UNTIL(held32, "adapt", A_HELDOUT, 32)

static void rollback_confidence(void)
{
	static const ts_step_t s[] = {
		WARM_UP, WAIT(warm10),
		TEN(100), TEN(110), WAIT(held20),
		BATCH(near_a, 5), WAIT(ev1), WAIT(warm12),
		TEN(120), WAIT(ev2),
		QA(300), QB(301), WAIT(held32),
	};
	RUN_OK(s, ADAPT_P ", representatives: 2, precheck: false");
	check_rolled_back("rollback: confidence 0.75 < 0.9 x 1.00");
	tlcm_AdaptEvent_table_t e = event(1);
	CHECK_DBL(tlcm_AdaptEvent_confidence_before(e), 1);
	CHECK_DBL(tlcm_AdaptEvent_confidence_after(e), 0.75f);
	float c = 0;
	CHECK_STR(predicted(300, &c), "A");
	CHECK_DBL(c, 1);
}

/* rule 2: four representatives right below A take over A's queries
 * there, confidently (confidence stays 1, A's share 0.6 → 0) */
#define QA2(f) Q(f, 0.5f, -1)
#define TEN2(base)                                                         \
	QA2(base), QB(base + 1), QA2(base + 2), QB(base + 3),              \
	QA2(base + 4), QB(base + 5), QA2(base + 6), QB(base + 7),          \
	QA2(base + 8), QA2(base + 9)
static const ts_bsample_t below_a[] = {
	{1, "B", 0.5f, 9, {0.5f, -1.1f}},  {2, "B", 0.5f, 9, {0.45f, -1.1f}},
	{3, "B", 0.5f, 9, {0.55f, -1.1f}}, {4, "B", 0.5f, 9, {0.5f, -1.05f}},
	{5, "B", 0.5f, 9, {0.5f, -1.15f}},
};

static void rollback_share(void)
{
	static const ts_step_t s[] = {
		WARM_UP, WAIT(warm10),
		TEN2(100), TEN2(110), WAIT(held20),
		BATCH(below_a, 5), WAIT(ev1), WAIT(warm14),
		TEN2(120), WAIT(ev2),
		QA2(300), QB(301), WAIT(held32),
	};
	RUN_OK(s, ADAPT_P ", representatives: 4, precheck: false");
	check_rolled_back("rollback: share of 'A' 0.00 < 0.5 x 0.60");
	CHECK_DBL(tlcm_AdaptEvent_confidence_after(event(1)), 1);
	float c = 0;
	CHECK_STR(predicted(300, &c), "A");
	CHECK_DBL(c, 1);
}

/* rule 3: a harmless cluster, but the quarantine keeps growing: a batch
 * during the trial reports 10 samples where there were 6 */
static const ts_bsample_t two_more[] = {
	{7, "A", 0.5f, 9, {20, 20}}, {8, "A", 0.5f, 9, {20, 20.1f}},
};
UNTIL(batches2, "adapt", A_BATCH, 2)
UNTIL(held22, "adapt", A_HELDOUT, 22)

static void rollback_growth(void)
{
	static const ts_step_t s[] = {
		WARM_UP, WAIT(warm10),
		TEN(100), TEN(110), WAIT(held20),
		BATCH(far_cluster, 6), WAIT(ev1), WAIT(warm13),
		BATCH(two_more, 10), WAIT(ev2),
		Q(300, 5, 10), QA(301), WAIT(held22),
	};
	RUN_OK(s, ADAPT_P ", representatives: 3");
	check_rolled_back("rollback: quarantine 10 > 1.5 x 6");
	tlcm_AdaptEvent_table_t e = event(1);
	CHECK_UINT(tlcm_AdaptEvent_quarantine_before(e), 6);
	CHECK_UINT(tlcm_AdaptEvent_quarantine_after(e), 10);
	CHECK_STR(predicted(300, NULL), "A");
	CHECK_UINT(tlcm_ts_count(EVENTS), 2); /* 2 samples: no new trial */
}

/* the pre-check sees rule 2 coming: nothing is sent */
static void precheck_rejects(void)
{
	static const ts_step_t s[] = {
		WARM_UP, WAIT(warm10),
		TEN2(100), TEN2(110), WAIT(held20),
		BATCH(below_a, 5), WAIT(ev1),
		QA2(300), WAIT(held21),
	};
	RUN_OK(s, ADAPT_P ", representatives: 4");
	CHECK_UINT(tlcm_ts_count(EVENTS), 1);
	CHECK_INT(kind_of(0), tlcm_AdaptKind_Reject);
	CHECK_STR(reason_of(0), "reject new_1 (5 samples): share of 'A' 0.00 "
		  "< 0.5 x 0.60");
	CHECK_DBL(tlcm_AdaptEvent_confidence_after(event(0)), 1);
	CHECK_UINT(tlcm_ts_count(NOTICES), 0);
	CHECK_UINT(tlcm_ts_processed("knn", KNN_SAMPLES), 10);
	CHECK_STR(knn_classes(), "A:5,B:5");
	CHECK_INT(num("adapt", "rejects"), 1);
	CHECK_INT(num("adapt", "trials"), 0);
	CHECK_STR(predicted(300, NULL), "A");
	/* no snapshot was taken for it */
	CHECK(!strstr(history("adapt", NULL, NULL), "before adapt"));
}

static int class_count(const char *label)
{
	cJSON *j = cJSON_Parse(tlcm_ts_described("knn"));
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "classes");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, label);
	int r = cJSON_IsNumber(v) ? v->valueint : 0;
	cJSON_Delete(j);
	return r;
}

/* far_cluster and a stray sample that stays in the quarantine */
static const ts_bsample_t far_and_stray[] = {
	{1, "A", 0.5f, 9, {5, 10}},        {2, "A", 0.5f, 9, {5.1f, 10}},
	{3, "A", 0.5f, 9, {4.9f, 10}},     {4, "B", 0.5f, 9, {5, 10.1f}},
	{5, "A", 0.5f, 9, {5, 9.9f}},      {6, "A", 0.5f, 9, {5.05f, 10}},
	{7, "B", 0.4f, 20, {30, 30}},
};
UNTIL(labels1, "adapt", A_LABELS, 1)
UNTIL(labels6, "adapt", A_LABELS, 6)
UNTIL(warm19, "knn", KNN_SAMPLES, 19)

static void ground_truth(void)
{
	static const ts_step_t s[] = {
		WARM_UP, WAIT(warm10),
		TEN(100), TEN(110), WAIT(held20),
		BATCH(far_and_stray, 7), WAIT(ev1), WAIT(warm13),
		/* during the trial: kept until the verdict */
		TRUTH(1, "C"), WAIT(labels1),
		TEN(120), WAIT(ev2),
		TRUTH(6, "C"),  /* second vote: new_1 is C */
		TRUTH(3, "C"),  /* a member that was not sent: added */
		{.kind = TS_SMPL, .port = O_LABELS, .frame = 50, .s = "D",
		 .dim = 2, .x = {20, 20}},
		TRUTH(7, "F"),  /* waiting in the quarantine: added */
		TRUTH(51, "E"), /* unknown, no embedding: ignored */
		WAIT(labels6), WAIT(warm19),
		Q(300, 5, 10), WAIT(held31),
	};
	RUN_OK(s, ADAPT_P ", representatives: 3, rename_votes: 2");
	CHECK_INT(kind_of(1), tlcm_AdaptKind_Commit);
	CHECK_INT(kind_of(2), tlcm_AdaptKind_Rename);
	CHECK_STR(reason_of(2), "rename new_1 -> C (2 of 2 votes, 1 samples)");
	CHECK_UINT(tlcm_ts_count(EVENTS), 3);
	/* 1 and 6 relabelled, 2 renamed, 3 added; D and F added */
	CHECK_INT(class_count("C"), 4);
	CHECK_INT(class_count("new_1"), 0);
	CHECK_INT(class_count("D"), 1);
	CHECK_INT(class_count("F"), 1);
	CHECK_INT(class_count("E"), 0);
	CHECK_INT(num("knn", "samples"), 16);
	CHECK_INT(num("adapt", "relabels"), 2);
	CHECK_INT(num("adapt", "renames"), 1);
	CHECK_INT(num("adapt", "gt_added"), 3);
	CHECK_INT(num("adapt", "gt_unknown"), 1);
	CHECK_STR(predicted(300, NULL), "C");
	/* notices: taken, resolved (commit), resolved 50 and 7 */
	CHECK_UINT(tlcm_ts_count(NOTICES), 4);
	CHECK_STR(notice_frames(2), "50");
	CHECK_STR(notice_frames(3), "7");
	CHECK_INT(tlcm_QuarantineNotice_kind(notice(3)),
		  tlcm_NoticeKind_Resolved);
}

UNTIL(bad3, "adapt", A_LABELS, 3)

static void bad_input(void)
{
	char logpath[300], yaml[4096];
	snprintf(logpath, sizeof logpath, "%s/log.txt", dir);
	static const ts_step_t s[] = {
		WARM_UP, WAIT(warm10),
		{.kind = TS_JUNK, .port = O_JUNK, .s = "BLOB"},
		{.kind = TS_JUNK, .port = O_LABELS, .s = "SMPL"},
		{.kind = TS_SMPL, .port = O_LABELS, .frame = 5, .s = ""},
		{.kind = TS_JUNK, .port = O_LABELS, .s = "PRED"},
		WAIT(bad3),
		QA(100), WAIT(held1),
	};
	new_store();
	graph(yaml, sizeof yaml, ADAPT_P, false, NULL);
	tlcm_run_result_t res;
	int rc = tlcm_ts_run_logged(&reg, yaml, s, sizeof s / sizeof s[0],
				    &res, logpath, TLCM_LOG_WARN);
	CHECK_INT(rc, 0); /* on_error: skip: the graph ran on */
	CHECK_UINT(res.nodes ? res.nodes[2].errors : 0, 4);
	tlcm_run_result_fini(&res);
	CHECK_INT(num("adapt", "bad"), 4);
	CHECK_STR(predicted(100, NULL), "A");
	size_t len;
	unsigned char *log = tlcm_test_read_file(logpath, &len);
	char *text = realloc(log, len + 1);
	text[len] = 0;
	CHECK_CONTAINS(text, "[adapt] batch: expected a QuarantineBatch "
		       "(QBAT), got a 'BLOB' message");
	CHECK_CONTAINS(text, "[adapt] labels: invalid LabeledSample");
	CHECK_CONTAINS(text, "[adapt] labels: frame 5: label must be 1..255 "
		       "bytes");
	CHECK_CONTAINS(text, "[adapt] labels: expected a LabeledSample "
		       "(SMPL), got a 'PRED' message");
	CHECK_CONTAINS(text, "[adapt] process: bad message skipped");
	free(text);
}

/* a cluster inside A (mostly predicted A, at A's usual neighbour
 * distances) keeps the label A */
static const ts_bsample_t inside_a[] = {
	{1, "A", 1, 0.4f, {0.5f, 0.2f}},  {2, "A", 1, 0.4f, {0.45f, 0.2f}},
	{3, "A", 1, 0.4f, {0.55f, 0.2f}}, {4, "A", 1, 0.4f, {0.5f, 0.15f}},
	{5, "B", 1, 0.4f, {0.5f, 0.25f}},
};

static void existing_label(void)
{
	static const ts_step_t s[] = {
		WARM_UP, WAIT(warm10),
		TEN(100), TEN(110), WAIT(held20),
		BATCH(inside_a, 5), WAIT(ev1), WAIT(warm13),
		TEN(120), WAIT(ev2),
	};
	RUN_OK(s, ADAPT_P ", representatives: 3");
	CHECK_STR(reason_of(0), "trial A (5 samples, 3 sent)");
	CHECK_INT(kind_of(1), tlcm_AdaptKind_Commit);
	CHECK_STR(reason_of(1), "adapt A (5 samples)");
	CHECK_STR(knn_classes(), "A:8,B:5");
	CHECK_INT(num("adapt", "next_label"), 1); /* no pseudo-label used */
}

/* Two near groups and a far one: clustered first as {P + Q, R}, P + Q
 * too dispersed (1.1 > 0.8) but large, so it is clustered again: P (8
 * samples) is the largest coherent cluster. */
#define RING(f, cx, cy, i, n) \
	{f, "A", 0.5f, 9, {(cx) + 0.5f * cosf(6.2832f * (i) / (n)), \
			   (cy) + 0.5f * sinf(6.2832f * (i) / (n))}}
static ts_bsample_t groups[23];

static void split_again(void)
{
	for (int i = 0; i < 8; i++)
		groups[i] = (ts_bsample_t)RING(1 + i, 5, 10, i, 8);
	for (int i = 0; i < 7; i++)
		groups[8 + i] = (ts_bsample_t)RING(11 + i, 7, 10, i + 0.3f, 7);
	for (int i = 0; i < 4; i++)
		groups[15 + i] = (ts_bsample_t)RING(21 + i, 40, 40, i, 4);
	static const ts_step_t s[] = {
		WARM_UP, WAIT(warm10),
		TEN(100), TEN(110), WAIT(held20),
		{.kind = TS_BATCH, .port = O_BATCH, .bs = groups, .n = 19,
		 .dim = 2},
		WAIT(ev1), WAIT(warm13),
		TEN(120), WAIT(ev2),
	};
	RUN_OK(s, "min_cluster_size: 3, max_dispersion: 0.8, min_silhouette: "
	       "0.6, min_heldout: 10, validate_window: 10, representatives: 3");
	CHECK_STR(reason_of(0), "trial new_1 (8 samples, 3 sent)");
	CHECK_STR(notice_frames(0), "1,2,3,4,5,6,7,8");
	CHECK_STR(reason_of(1), "adapt new_1 (8 samples)");
	CHECK(tlcm_AdaptEvent_dispersion(event(1)) < 0.51f);
}

/* ---- min_effect --------------------------------------------------------- */

/* A few outliers of A, off to one side, far from A's samples: the
 * neighbour-distance test calls them new, but as new_1 they would change
 * no held-out answer */
static const ts_bsample_t a_outliers[] = {
	{1, "A", 0.9f, 2.5f, {0.5f, 3}},  {2, "A", 0.9f, 2.5f, {0.45f, 3}},
	{3, "A", 0.9f, 2.5f, {0.55f, 3}}, {4, "A", 0.9f, 2.5f, {0.5f, 3.05f}},
	{5, "A", 0.9f, 2.5f, {0.5f, 2.95f}},
};
/* four held-out frames where far_cluster lies (predicted A, far) */
#define FOUR_FAR(base)                                                     \
	Q(base, 5, 10), Q(base + 1, 5.1f, 10), Q(base + 2, 4.9f, 10),      \
	Q(base + 3, 5, 10.1f)
UNTIL(held24, "adapt", A_HELDOUT, 24)
UNTIL(held25, "adapt", A_HELDOUT, 25)
/* the trial's samples are in the knn (13), or there is no trial: a
 * wrong verdict fails the checks instead of hanging the script */
static bool no_trial(void)
{
	return tlcm_ts_count(EVENTS) >= 1 && kind_of(0) != tlcm_AdaptKind_Trial;
}
static bool sent13(void)
{
	return no_trial() || tlcm_ts_processed("knn", KNN_SAMPLES) >= 13;
}
static bool ev2_or_none(void)
{
	return no_trial() || tlcm_ts_count(EVENTS) >= 2;
}

/* Run s with the parameters m added: the first event is kind, reason. */
static void effect_case(const ts_step_t *s, size_t n, const char *m,
			int kind, const char *reason)
{
	char p[256];
	snprintf(p, sizeof p, ADAPT_P ", representatives: 3%s", m);
	run_ok(s, n, p);
	CHECK_INT(kind_of(0), kind);
	CHECK_STR(reason_of(0), reason);
}

static void min_effect(void)
{
	/* rejected: 0 of the 20 held-out answers would change */
	static const ts_step_t r[] = {
		WARM_UP, WAIT(warm10),
		TEN(100), TEN(110), WAIT(held20),
		BATCH(a_outliers, 5), WAIT(ev1),
		QA(300), WAIT(held21),
	};
	size_t nr = sizeof r / sizeof r[0];
	effect_case(r, nr, ", min_effect: 0.05", tlcm_AdaptKind_Reject,
		    "reject new_1 (5 samples): changes 0.0 % of the held-out "
		    "answers < 5.0 %");
	CHECK_UINT(tlcm_ts_count(EVENTS), 1);
	CHECK_UINT(tlcm_ts_count(NOTICES), 0);
	CHECK_INT(num("adapt", "rejects"), 1);
	CHECK_INT(num("adapt", "trials"), 0);
	CHECK_STR(knn_classes(), "A:5,B:5");
	/* the same without min_effect: tried */
	static const ts_step_t t[] = {
		WARM_UP, WAIT(warm10),
		TEN(100), TEN(110), WAIT(held20),
		BATCH(a_outliers, 5), WAIT(ev1), WAIT(sent13),
		TEN(120), WAIT(ev2_or_none),
	};
	effect_case(t, sizeof t / sizeof t[0], "", tlcm_AdaptKind_Trial,
		    "trial new_1 (5 samples, 3 sent)");

	/* a new class that takes over 4 of the 24 held-out answers (the
	 * frames near it): 16.7 %, rejected below 20 %, tried at 15 % */
	static const ts_step_t c[] = {
		WARM_UP, WAIT(warm10),
		TEN(100), TEN(110), FOUR_FAR(200), WAIT(held24),
		BATCH(far_cluster, 6), WAIT(ev1),
		QA(300), WAIT(held25),
	};
	effect_case(c, sizeof c / sizeof c[0], ", min_effect: 0.2",
		    tlcm_AdaptKind_Reject,
		    "reject new_1 (6 samples): changes 16.7 % of the held-out "
		    "answers < 20.0 %");
	static const ts_step_t c2[] = {
		WARM_UP, WAIT(warm10),
		TEN(100), TEN(110), FOUR_FAR(200), WAIT(held24),
		BATCH(far_cluster, 6), WAIT(ev1), WAIT(sent13),
		TEN(120), WAIT(ev2_or_none),
	};
	effect_case(c2, sizeof c2 / sizeof c2[0], ", min_effect: 0.15",
		    tlcm_AdaptKind_Trial, "trial new_1 (6 samples, 3 sent)");
	CHECK_INT(kind_of(1), tlcm_AdaptKind_Commit);
}

/* ---- inside_centroid ---------------------------------------------------- */

/* held-out A frames at (0, 0.5) and (1, 0.5), five each: A's held-out
 * centroid (0.5, 0.5), spread (RMS distance to it) 0.5 */
#define QC(f) Q(f, (float)(((f) / 2) % 2), 0.5f)
#define TENC(base)                                                         \
	QC(base), QB(base + 1), QC(base + 2), QB(base + 3), QC(base + 4),  \
	QB(base + 5), QC(base + 6), QB(base + 7), QC(base + 8),            \
	QB(base + 9)
/* a cluster predicted A (4 of 5), centred at (0.5, y), its neighbours
 * far as quarantined samples' are (mean_distance 2) */
#define AT(y)                                                              \
	{{1, "A", 0.9f, 2, {0.5f, y}},  {2, "A", 0.9f, 2, {0.45f, y}},     \
	 {3, "A", 0.9f, 2, {0.55f, y}}, {4, "A", 0.9f, 2, {0.5f, y + 0.05f}}, \
	 {5, "B", 0.9f, 2, {0.5f, y - 0.05f}}}
static const ts_bsample_t near_centre[] = AT(0.7f); /* 0.2 from it */
static const ts_bsample_t off_centre[] = AT(1.8f);  /* 1.3 from it */

static void centroid_case(const ts_bsample_t *b, const char *params,
			  const char *reason)
{
	ts_step_t s[] = {
		WARM_UP, WAIT(warm10),
		TENC(100), TENC(110), WAIT(held20),
		{.kind = TS_BATCH, .port = O_BATCH, .bs = b, .n = 5, .dim = 2},
		WAIT(ev1), WAIT(sent13),
		TENC(120), WAIT(ev2_or_none),
	};
	char p[256];
	snprintf(p, sizeof p, ADAPT_P ", representatives: 3, %s", params);
	run_ok(s, sizeof s / sizeof s[0], p);
	CHECK_INT(kind_of(0), tlcm_AdaptKind_Trial);
	CHECK_STR(reason_of(0), reason);
}

static void inside_centroid(void)
{
	/* (the label decisions alone: precheck off, new_1's representatives
	 * near A's held-out frames would lower their confidence) */
	/* by neighbour distance (2 against A's 0.65): new */
	centroid_case(near_centre, "precheck: false",
		      "trial new_1 (5 samples, 3 sent)");
	/* by position: at A's centroid, A; min_effect is for new labels
	 * only */
	centroid_case(near_centre, "inside_centroid: 1, min_effect: 0.5",
		      "trial A (5 samples, 3 sent)");
	CHECK_INT(num("adapt", "next_label"), 1);
	/* 1.3 from it: beyond 2 x 0.5, within 3 x 0.5 */
	centroid_case(off_centre, "inside_centroid: 2, precheck: false",
		      "trial new_1 (5 samples, 3 sent)");
	centroid_case(off_centre, "inside_centroid: 3, precheck: false",
		      "trial A (5 samples, 3 sent)");
}

UNTIL(warm1, "knn", KNN_SAMPLES, 1)

/* After a restart the adapter still knows what it taught: ground truth
 * that arrives later relabels a representative in the restored knn. */
static void kept_across_runs(void)
{
	static const ts_step_t s1[] = {
		WARM_UP, WAIT(warm10),
		TEN(100), TEN(110), WAIT(held20),
		BATCH(far_cluster, 6), WAIT(ev1), WAIT(warm13),
		TEN(120), WAIT(ev2),
	};
	RUN_OK(s1, ADAPT_P ", representatives: 3");
	CHECK_STR(reason_of(1), "adapt new_1 (6 samples)");
	static const ts_step_t s2[] = {
		TRUTH(1, "C"), WAIT(labels1), WAIT(warm1),
		Q(300, 5, 10), WAIT(held1),
	};
	char yaml[4096];
	graph(yaml, sizeof yaml, ADAPT_P ", representatives: 3", false,
	      NULL); /* the same store */
	tlcm_run_result_t res;
	CHECK_INT(tlcm_ts_run(&reg, yaml, s2, sizeof s2 / sizeof s2[0], &res),
		  0);
	for (size_t i = 0; res.nodes && i < res.nnodes; i++)
		CHECK_UINT(res.nodes[i].errors, 0);
	tlcm_run_result_fini(&res);
	CHECK_INT(class_count("C"), 1);
	CHECK_INT(class_count("new_1"), 2);
	CHECK_INT(num("adapt", "taught"), 6);
	CHECK_INT(num("adapt", "commits"), 1);
	CHECK_INT(num("adapt", "relabels"), 1);
	CHECK_INT(num("adapt", "next_label"), 2);
	float c = 0;
	CHECK_STR(predicted(300, &c), "new_1");
	CHECK_DBL(c, 0.5f);
	CHECK_CONTAINS(history("knn", NULL, NULL), "adapt new_1 (6 samples)");

	/* a newest state the adapter refuses: the engine falls back to the
	 * previous one, the adapter still knows its 6 samples */
	tlcm_store_t *st;
	char why[256], logpath[300];
	tlcm_store_opts_t so = {.must_exist = true};
	CHECK_INT(tlcm_store_open(&st, store, &so, why, sizeof why), 0);
	uint64_t ver;
	CHECK_INT(tlcm_store_snapshot(st, "adapt", "garbage!", 8, "not fb",
				      &ver), 0);
	tlcm_store_close(st);
	snprintf(logpath, sizeof logpath, "%s/log2.txt", dir);
	static const ts_step_t s3[] = {Q(301, 5, 10), WAIT(held1)};
	CHECK_INT(tlcm_ts_run_logged(&reg, yaml, s3, 2, &res, logpath,
				     TLCM_LOG_WARN), 0);
	tlcm_run_result_fini(&res);
	CHECK_INT(num("adapt", "taught"), 6);
	size_t n;
	unsigned char *log = tlcm_test_read_file(logpath, &n);
	char *text = realloc(log, n + 1);
	text[n] = 0;
	CHECK_CONTAINS(text, "[adapt] state rejected: tlcm.AdaptState");
	free(text);
}

/* The whole loop: knn → quarantine (drift) → adapter → knn. */
UNTIL(q20, "q", 0, 20)
UNTIL(qdrift2, "q", 1, 2)
/* far queries whose frames carry ground truth (class 1: "B") */
#define QF(f, c, x0, x1) {.kind = TS_FEAT, .port = O_QUERY, .frame = f, \
			  .i = c, .dim = 2, .x = {x0, x1}}

static void whole_loop(void)
{
	static const ts_step_t s[] = {
		WARM_UP, WAIT(warm10),
		TEN(100), TEN(110), WAIT(held20), WAIT(q20),
		{.kind = TS_DRIFT, .port = O_DRIFT, .s = "d", .i = 0},
		WAIT(qdrift),
		QF(1, 1, 5, 10), QF(2, 1, 5.1f, 10), QF(3, 0, 4.9f, 10),
		QF(4, 1, 5, 10.1f), QF(5, 1, 5, 9.9f), QF(6, 1, 5.05f, 10),
		WAIT(ev1), WAIT(warm13),
		{.kind = TS_DRIFT, .port = O_DRIFT, .s = "d", .i = 1},
		WAIT(qdrift2),
		TEN(120), WAIT(ev2),
		Q(300, 5, 10), WAIT(held37),
	};
	char yaml[4096];
	new_store();
	graph(yaml, sizeof yaml, ADAPT_P ", representatives: 3", true,
	      "batch_min: 6, batch_every: 6");
	tlcm_run_result_t res;
	CHECK_INT(tlcm_ts_run(&reg, yaml, s, sizeof s / sizeof s[0], &res),
		  0);
	for (size_t i = 0; res.nodes && i < res.nnodes; i++)
		CHECK_UINT(res.nodes[i].errors, 0);
	tlcm_run_result_fini(&res);
	CHECK_INT(kind_of(0), tlcm_AdaptKind_Trial);
	CHECK_INT(kind_of(1), tlcm_AdaptKind_Commit);
	CHECK_STR(reason_of(1), "adapt new_1 (6 samples)");
	/* evaluation: what the members' frames really were */
	CHECK_STR(tlcm_AdaptEvent_truth(event(1)), "B:5,A:1");
	CHECK(fabsf(tlcm_AdaptEvent_purity(event(1)) - 5.0f / 6) < 1e-6f);
	CHECK_STR(predicted(300, NULL), "new_1");
	cJSON *j = cJSON_Parse(tlcm_ts_described("q"));
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "admitted");
	CHECK(cJSON_IsNumber(v) && v->valueint == 6);
	v = cJSON_GetObjectItemCaseSensitive(j, "resolved");
	CHECK(cJSON_IsNumber(v) && v->valueint == 6);
	v = cJSON_GetObjectItemCaseSensitive(j, "size");
	CHECK(cJSON_IsNumber(v) && v->valueint == 0);
	cJSON_Delete(j);
}

int main(int argc, char **argv)
{
	tlcm_log_level = argc > 1 ? atoi(argv[1]) : TLCM_LOG_ERROR;
	tlcm_ts_setup(&reg);
	tlcm_ts_wrap(&reg, "knn");
	tlcm_ts_wrap(&reg, "adapt.heuristic");
	tlcm_ts_wrap(&reg, "quarantine");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	commit();
	rollback_confidence();
	rollback_share();
	rollback_growth();
	precheck_rejects();
	ground_truth();
	bad_input();
	existing_label();
	split_again();
	min_effect();
	inside_centroid();
	kept_across_runs();
	whole_loop();
	char cmd[96];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", dir);
	tlcm_ts_reset();
	tlcm_registry_fini(&reg);
	return tlcm_test_done();
}
