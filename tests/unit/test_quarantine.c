/* test_quarantine.c — node `quarantine` through small graphs.
 *
 * A script (test_adapt_script.h) feeds predictions, drift events, frames
 * and notices; `collect` keeps the batches (slot 0) and the passed
 * predictions (slot 1); the node runs wrapped ("w.quarantine") so the
 * script can wait until it has processed a drift event or a notice (the
 * inputs are separate edges). Checks: each admission condition (novel:
 * by Prediction.novelty, absent or non-finite never) and their
 * combinations, the fields of admitted samples, batches on admissions and
 * at the end of the last drift, max_size and max_age, thumbnails from
 * gray and RGB frames in either order, Taken/Released/Resolved notices,
 * the quarantine kept across two runs with settings.store (samples, taken
 * flags, drift state), refused states (the engine falls back to the last
 * good one), bad input counted as errors naming the node while the graph
 * runs on, describe() per label.
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <math.h>
#include <unistd.h>

#include "engine/log.h"
#include "engine/store.h"
#include "fb/prediction_fb.h"
#include "fb/quarantine_fb.h"
#include "fb/quarantine_state_fb.h"
#include "tests/tlcm_test.h"
#include "tests/unit/test_adapt_script.h"

static tlcm_registry_t reg;

enum { O_PRED, O_DRIFT, O_FRAMES, O_NOTICES, O_JUNK };

#define P(f, l, c, d, x0) \
	{.kind = TS_PRED, .port = O_PRED, .frame = f, .s = l, .conf = c, \
	 .md = d, .dim = 2, .x = {x0, (float)(f)}, .truth = "T"}
#define DS(node) {.kind = TS_DRIFT, .port = O_DRIFT, .s = node, .i = 0}
#define DE(node) {.kind = TS_DRIFT, .port = O_DRIFT, .s = node, .i = 1}
#define WAIT(fn) {.kind = TS_WAIT, .until = fn}
#define SLEEP(n) {.kind = TS_SLEEP, .ms = n}
#define NOTE(k, fr) {.kind = TS_NOTICE, .port = O_NOTICES, .i = k, \
		     .frames = fr, .n = sizeof fr / sizeof fr[0]}
#define FRAME(f, w_, h_, rgb) {.kind = TS_FRAME, .port = O_FRAMES, \
			       .frame = f, .w = w_, .h = h_, .i = rgb}

/* waits: the quarantine has processed n messages on an input port */
#define UNTIL(name, port, n) \
	static bool name(void) { return tlcm_ts_processed("q", port) >= n; }
UNTIL(preds1, 0, 1)
UNTIL(preds2, 0, 2)
UNTIL(preds3, 0, 3)
UNTIL(preds4, 0, 4)
UNTIL(preds5, 0, 5)
UNTIL(preds6, 0, 6)
UNTIL(drift1, 1, 1)
UNTIL(drift3, 1, 3)
UNTIL(drift4, 1, 4)
UNTIL(notes1, 3, 1)
UNTIL(notes2, 3, 2)
UNTIL(notes3, 3, 3)
UNTIL(frames1, 2, 1)
UNTIL(frames3, 2, 3)
UNTIL(errors_seen, 0, 7)

static int run(const ts_step_t *s, size_t n, const char *params,
	       const char *store, tlcm_run_result_t *res)
{
	char yaml[2048];
	snprintf(yaml, sizeof yaml,
		 "graph: q\n"
		 "settings: { workers: 2, introspect: 'off'%s%s }\n"
		 "nodes:\n"
		 "  src: { type: script }\n"
		 "  q: { type: w.quarantine, on_error: skip, params: { %s } }\n"
		 "  batches: { type: collect, params: { slot: 0 } }\n"
		 "  passed: { type: collect, params: { slot: 1 } }\n"
		 "edges:\n"
		 "  - { from: src.o0, to: q.in }\n"
		 "  - { from: src.o1, to: q.drift }\n"
		 "  - { from: src.o2, to: q.frames }\n"
		 "  - { from: src.o3, to: q.notices }\n"
		 "  - { from: src.o4, to: q.in }\n"
		 "  - { from: q.batch, to: batches.in, capacity: 1MiB }\n"
		 "  - { from: q.passed, to: passed.in }\n",
		 store ? ", store: " : "", store ? store : "", params);
	return tlcm_ts_run(&reg, yaml, s, n, res);
}

static void run_ok(const ts_step_t *s, size_t n, const char *params,
		   const char *store)
{
	tlcm_run_result_t res;
	CHECK_INT(run(s, n, params, store, &res), 0);
	CHECK_STR(res.why, "");
	CHECK_UINT(res.nodes ? res.nodes[1].errors : 1, 0);
	tlcm_run_result_fini(&res);
}

#define RUN_OK(s, params, store) \
	run_ok(s, sizeof s / sizeof s[0], params, store)

/* ---- reading what came out ------------------------------------------------ */

static size_t nbatches(void)
{
	return tlcm_ts_count(0);
}

static tlcm_QuarantineBatch_table_t batch(size_t i)
{
	const ts_msg_t *m = tlcm_ts_msg(0, i);
	const char *why;
	if (!m || tlcm_QuarantineBatch_verify_as_root(m->data, m->size, &why))
		return NULL;
	return tlcm_QuarantineBatch_as_root(m->data);
}

static tlcm_QuarantineBatch_table_t last_batch(void)
{
	return nbatches() ? batch(nbatches() - 1) : NULL;
}

/* "1,2,3": the frames of a batch */
static const char *frames_of(tlcm_QuarantineBatch_table_t b)
{
	static char buf[512];
	size_t at = 0;
	buf[0] = 0;
	for (size_t i = 0; b && i < tlcm_QuarantineBatch_samples_len(b); i++)
		at += (size_t)snprintf(
			buf + at, sizeof buf - at, "%s%llu", i ? "," : "",
			(unsigned long long)tlcm_QuarantinedSample_frame_id(
				tlcm_QuarantineBatch_samples_at(b, i)));
	return buf;
}

static const char *passed_frames(void)
{
	static char buf[512];
	size_t at = 0;
	buf[0] = 0;
	for (size_t i = 0; i < tlcm_ts_count(1); i++) {
		const ts_msg_t *m = tlcm_ts_msg(1, i);
		tlcm_Prediction_table_t p = tlcm_Prediction_as_root(m->data);
		at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%llu",
				       i ? "," : "",
				       (unsigned long long)
					       tlcm_Prediction_frame_id(p));
	}
	return buf;
}

static int reasons_of(tlcm_QuarantineBatch_table_t b, uint64_t frame)
{
	for (size_t i = 0; b && i < tlcm_QuarantineBatch_samples_len(b); i++) {
		tlcm_QuarantinedSample_table_t s =
			tlcm_QuarantineBatch_samples_at(b, i);
		if (tlcm_QuarantinedSample_frame_id(s) == frame)
			return tlcm_QuarantinedSample_reasons(s);
	}
	return -1;
}

static int64_t described(const char *key)
{
	cJSON *j = cJSON_Parse(tlcm_ts_described("q"));
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	int64_t r = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
	cJSON_Delete(j);
	return r;
}

/* ---- tests ----------------------------------------------------------------- */

static void admit_on_drift(void)
{
	static const ts_step_t s[] = {
		P(1, "A", 0.9f, 1, 0), P(2, "A", 0.2f, 9, 0), /* no drift */
		WAIT(preds2),
		DS("d1"), WAIT(drift1),
		P(4, "A", 0.9f, 1, 4), P(5, "B", 0.8f, 2, 5),
		DS("d2"), DE("d1"), WAIT(drift3),
		P(6, "A", 0.7f, 3, 6), WAIT(preds5),
		DE("d2"), WAIT(drift4), /* the last one: a batch */
		P(7, "A", 0.9f, 1, 0), /* after the drift */
	};
	RUN_OK(s, "batch_min: 2, batch_every: 100", NULL);
	CHECK_UINT(nbatches(), 1);
	tlcm_QuarantineBatch_table_t b = last_batch();
	CHECK_STR(tlcm_QuarantineBatch_trigger(b), "drift_end");
	CHECK_STR(frames_of(b), "4,5,6");
	CHECK_UINT(tlcm_QuarantineBatch_size(b), 3);
	CHECK_UINT(tlcm_QuarantineBatch_admitted(b), 3);
	CHECK(!tlcm_QuarantineBatch_in_drift(b));
	tlcm_QuarantinedSample_table_t q = tlcm_QuarantineBatch_samples_at(b,
									   1);
	CHECK_UINT(tlcm_QuarantinedSample_frame_id(q), 5);
	CHECK_UINT(tlcm_QuarantinedSample_time_ns(q), 1005);
	CHECK_STR(tlcm_QuarantinedSample_label(q), "B");
	CHECK_STR(tlcm_QuarantinedSample_truth(q), "T");
	CHECK_DBL(tlcm_QuarantinedSample_confidence(q), 0.8f);
	CHECK_DBL(tlcm_QuarantinedSample_mean_distance(q), 2);
	CHECK_UINT(tlcm_QuarantinedSample_reasons(q), 1);
	CHECK_UINT(tlcm_QuarantinedSample_features_len(q), 2);
	CHECK_DBL(tlcm_QuarantinedSample_features_at(q, 0), 5);
	CHECK_DBL(tlcm_QuarantinedSample_features_at(q, 1), 5);
	CHECK(tlcm_QuarantinedSample_admitted_ns(q) > 0);
	CHECK(!tlcm_QuarantinedSample_thumbnail_is_present(q));
	CHECK_STR(passed_frames(), "1,2,7");
	CHECK_INT(described("admitted"), 3);
	CHECK_INT(described("size"), 3);
	CHECK_INT(described("seen"), 6);
}

static void admit_on_confidence_and_distance(void)
{
	static const ts_step_t s[] = {
		P(1, "A", 0.9f, 1, 0), P(2, "A", 0.3f, 1, 0),
		P(3, "A", 0.9f, 3, 0), P(4, "A", 0.3f, 3, 0),
		P(5, "A", 0.5f, 2, 0), /* at both thresholds: neither */
	};
	RUN_OK(s, "admit: [low_confidence, far], confidence_below: 0.5, "
		  "distance_above: 2, batch_min: 1, batch_every: 1", NULL);
	tlcm_QuarantineBatch_table_t b = last_batch();
	CHECK_STR(frames_of(b), "2,3,4");
	CHECK_STR(tlcm_QuarantineBatch_trigger(b), "admissions");
	CHECK_INT(reasons_of(b, 2), 2);
	CHECK_INT(reasons_of(b, 3), 4);
	CHECK_INT(reasons_of(b, 4), 6);
	CHECK_UINT(nbatches(), 3);
	CHECK_STR(passed_frames(), "1,5");

	RUN_OK(s, "admit: [low_confidence, far], combine: all, "
		  "confidence_below: 0.5, distance_above: 2, batch_min: 1, "
		  "batch_every: 1", NULL);
	CHECK_STR(frames_of(last_batch()), "4");
	CHECK_STR(passed_frames(), "1,2,3,5");

	/* drift and low confidence, both needed */
	static const ts_step_t d[] = {
		P(1, "A", 0.3f, 1, 0), WAIT(preds1), DS("d"), WAIT(drift1),
		P(2, "A", 0.9f, 1, 0), P(3, "A", 0.3f, 1, 0),
	};
	RUN_OK(d, "admit: [drift, low_confidence], combine: all, "
		  "batch_min: 1, batch_every: 1", NULL);
	CHECK_STR(frames_of(last_batch()), "3");
	CHECK_INT(reasons_of(last_batch(), 3), 3);
	CHECK_STR(passed_frames(), "1,2");
}

/* novel: Prediction.novelty above novelty_above (default 1.6); none sent
 * (0), or not finite, is never novel; reason bit 8 */
#define PN(f, c, nv) \
	{.kind = TS_PRED, .port = O_PRED, .frame = f, .s = "A", .conf = c, \
	 .md = 1, .nov = nv, .dim = 2, .x = {0, (float)(f)}, .truth = "T"}

static void admit_on_novelty(void)
{
	static const ts_step_t s[] = {
		PN(1, 0.9f, 1.0f),  /* a typical frame of its label */
		PN(2, 0.9f, 2.5f),  /* novel */
		PN(3, 0.9f, 1.5f),  /* below the default */
		PN(4, 0.9f, 0),     /* no novelty */
		PN(5, 0.9f, NAN),   /* not finite: not novel either */
		PN(6, 0.3f, 1.7f),  /* novel and not confident */
		PN(7, 0.3f, 1.59f),
	};
	RUN_OK(s, "admit: [novel], batch_min: 1, batch_every: 1", NULL);
	CHECK_STR(frames_of(last_batch()), "2,6");
	CHECK_INT(reasons_of(last_batch(), 2), 8);
	CHECK_INT(reasons_of(last_batch(), 6), 8);
	CHECK_STR(passed_frames(), "1,3,4,5,7");
	CHECK_INT(described("admitted"), 2);

	/* with low_confidence: bits 2 and 8; a lower threshold (1.5 is
	 * exact in float: at it is not above) */
	RUN_OK(s, "admit: [novel, low_confidence], novelty_above: 1.5, "
		  "batch_min: 1, batch_every: 1", NULL);
	CHECK_STR(frames_of(last_batch()), "2,6,7");
	CHECK_INT(reasons_of(last_batch(), 2), 8);
	CHECK_INT(reasons_of(last_batch(), 6), 10);
	CHECK_INT(reasons_of(last_batch(), 7), 10);
	CHECK_STR(passed_frames(), "1,3,4,5");
	RUN_OK(s, "admit: [novel, low_confidence], combine: all, "
		  "novelty_above: 1.5, batch_min: 1, batch_every: 1", NULL);
	CHECK_STR(frames_of(last_batch()), "6,7");
	CHECK_STR(passed_frames(), "1,2,3,4,5");

	/* novelty_above 0 or below: everything with a novelty is novel,
	 * a prediction without one still is not */
	RUN_OK(s, "admit: [novel], novelty_above: 0, batch_min: 1, "
		  "batch_every: 1", NULL);
	CHECK_STR(frames_of(last_batch()), "1,2,3,6,7");
	CHECK_STR(passed_frames(), "4,5");
	RUN_OK(s, "admit: [novel], novelty_above: -1, batch_min: 1, "
		  "batch_every: 1", NULL);
	CHECK_STR(frames_of(last_batch()), "1,2,3,6,7");
	CHECK_STR(passed_frames(), "4,5");

	/* with drift: any, and all (novel while a detector is in drift) */
	static const ts_step_t d[] = {
		PN(1, 0.9f, 2), PN(2, 0.9f, 1), WAIT(preds2),
		DS("d"), WAIT(drift1),
		PN(3, 0.9f, 1), PN(4, 0.9f, 2), PN(5, 0.9f, 0),
	};
	RUN_OK(d, "admit: [drift, novel], batch_min: 1, batch_every: 1",
	       NULL);
	tlcm_QuarantineBatch_table_t b = last_batch();
	CHECK_STR(frames_of(b), "1,3,4,5");
	CHECK_INT(reasons_of(b, 1), 8);
	CHECK_INT(reasons_of(b, 3), 1);
	CHECK_INT(reasons_of(b, 4), 9);
	CHECK_INT(reasons_of(b, 5), 1);
	CHECK_STR(passed_frames(), "2");
	RUN_OK(d, "admit: [drift, novel], combine: all, batch_min: 1, "
		  "batch_every: 1", NULL);
	CHECK_STR(frames_of(last_batch()), "4");
	CHECK_INT(reasons_of(last_batch(), 4), 9);
	CHECK_STR(passed_frames(), "1,2,3,5");
}

static void bounds(void)
{
	static const ts_step_t s[] = {
		P(1, "A", 0.1f, 1, 0), P(2, "A", 0.1f, 1, 0),
		P(3, "B", 0.1f, 1, 0), P(4, "B", 0.1f, 1, 0),
		P(5, "C", 0.1f, 1, 0),
	};
	RUN_OK(s, "admit: [low_confidence], max_size: 3, batch_min: 1, "
		  "batch_every: 1", NULL);
	CHECK_STR(frames_of(last_batch()), "3,4,5");
	CHECK_UINT(tlcm_QuarantineBatch_evicted(last_batch()), 2);
	CHECK_INT(described("evicted"), 2);
	CHECK_INT(described("size"), 3);
	/* per predicted label */
	cJSON *j = cJSON_Parse(tlcm_ts_described("q"));
	const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "labels");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(l, "B");
	CHECK(cJSON_IsNumber(v) && v->valueint == 2);
	v = cJSON_GetObjectItemCaseSensitive(l, "C");
	CHECK(cJSON_IsNumber(v) && v->valueint == 1);
	CHECK(!cJSON_GetObjectItemCaseSensitive(l, "A"));
	cJSON_Delete(j);

	/* max_age: the first two are older than 100 ms when the third
	 * arrives (wall clock; the sleep is far longer than the age; the
	 * wait publishes what the script emitted before it sleeps) */
	static const ts_step_t a[] = {
		P(1, "A", 0.1f, 1, 0), P(2, "A", 0.1f, 1, 0), WAIT(preds2),
		SLEEP(400),
		P(3, "A", 0.1f, 1, 0),
	};
	RUN_OK(a, "admit: [low_confidence], max_age: 100ms, batch_min: 1, "
		  "batch_every: 1", NULL);
	CHECK_STR(frames_of(last_batch()), "3");
	CHECK_UINT(tlcm_QuarantineBatch_expired(last_batch()), 2);
	/* and without new admissions, the tick expires them */
	static const ts_step_t t[] = {
		P(1, "A", 0.1f, 1, 0), WAIT(preds1), SLEEP(600),
	};
	RUN_OK(t, "admit: [low_confidence], max_age: 100ms, batch_min: 1, "
		  "batch_every: 1", NULL);
	CHECK_INT(described("size"), 0);
	CHECK_INT(described("expired"), 1);
}

static void thumbnails(void)
{
	static const ts_step_t s[] = {
		/* frame first, then its prediction */
		FRAME(10, 28, 28, 0), WAIT(frames1),
		P(10, "A", 0.1f, 1, 0),
		/* prediction first, then its (RGB) frame */
		P(11, "A", 0.1f, 1, 0), WAIT(preds2),
		FRAME(11, 40, 20, 1),
		FRAME(12, 5, 3, 0), /* never admitted */
		WAIT(frames3),
		P(13, "A", 0.1f, 1, 0),
	};
	RUN_OK(s, "admit: [low_confidence], batch_min: 1, batch_every: 1, "
		  "thumb_size: 16", NULL);
	tlcm_QuarantineBatch_table_t b = last_batch();
	CHECK_STR(frames_of(b), "10,11,13");
	tlcm_QuarantinedSample_table_t q = tlcm_QuarantineBatch_samples_at(b,
									   0);
	/* 28 x 28 → blocks of 2 → 14 x 14, mean of the block */
	CHECK_UINT(tlcm_QuarantinedSample_thumb_width(q), 14);
	CHECK_UINT(tlcm_QuarantinedSample_thumb_height(q), 14);
	CHECK_UINT(tlcm_QuarantinedSample_thumbnail_len(q), 196);
	/* block (0,0): pixels (x + y + 10): 10, 11, 11, 12 → 11 */
	CHECK_UINT(tlcm_QuarantinedSample_thumbnail_at(q, 0), 11);
	/* block (13,13): 62, 63, 63, 64 → 63 */
	CHECK_UINT(tlcm_QuarantinedSample_thumbnail_at(q, 195), 63);
	q = tlcm_QuarantineBatch_samples_at(b, 1);
	/* 40 x 20 → blocks of 3 → 14 x 7; red only: 0.299 r */
	CHECK_UINT(tlcm_QuarantinedSample_thumb_width(q), 14);
	CHECK_UINT(tlcm_QuarantinedSample_thumb_height(q), 7);
	/* block (0,0): r = x + y + 11 over 3x3: mean 13 → 0.299*13 = 3.9 */
	CHECK_UINT(tlcm_QuarantinedSample_thumbnail_at(q, 0), 4);
	q = tlcm_QuarantineBatch_samples_at(b, 2);
	CHECK(!tlcm_QuarantinedSample_thumbnail_is_present(q));
}

static void notices(void)
{
	static const uint64_t f12[] = {1, 2}, f2[] = {2}, f3[] = {3, 99};
	static const ts_step_t s[] = {
		P(1, "A", 0.1f, 1, 0), P(2, "A", 0.1f, 1, 0),
		P(3, "A", 0.1f, 1, 0), P(4, "A", 0.1f, 1, 0), WAIT(preds4),
		NOTE(0, f12), WAIT(notes1), /* Taken */
		P(5, "A", 0.1f, 1, 0), WAIT(preds5),
		NOTE(2, f2), WAIT(notes2), /* Released */
		P(6, "A", 0.1f, 1, 0), WAIT(preds6),
		NOTE(1, f3), WAIT(notes3), /* Resolved (99: unknown) */
		P(7, "A", 0.1f, 1, 0),
	};
	RUN_OK(s, "admit: [low_confidence], batch_min: 1, batch_every: 1",
	       NULL);
	CHECK_UINT(nbatches(), 7);
	CHECK_STR(frames_of(batch(4)), "3,4,5");
	CHECK_UINT(tlcm_QuarantineBatch_size(batch(4)), 5);
	CHECK_STR(frames_of(batch(5)), "2,3,4,5,6");
	CHECK_STR(frames_of(batch(6)), "2,4,5,6,7");
	CHECK_UINT(tlcm_QuarantineBatch_size(batch(6)), 6);
	CHECK_UINT(tlcm_QuarantineBatch_resolved(batch(6)), 1);
	CHECK_INT(described("taken"), 1);
	CHECK_INT(described("waiting"), 5);
	CHECK_INT(described("released"), 1);
	CHECK_INT(described("resolved"), 1);
}

static int count_rec(void *arg, const void *key, size_t klen,
		     const void *val, size_t vlen)
{
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	++*(size_t *)arg;
	return 0;
}

static void kept_across_runs(const char *dir)
{
	char store[300];
	snprintf(store, sizeof store, "%s/store", dir);
	static const uint64_t f1[] = {1};
	static const ts_step_t s1[] = {
		DS("d1"), WAIT(drift1),
		P(1, "A", 0.9f, 1, 1), P(2, "B", 0.9f, 1, 2),
		P(3, "B", 0.9f, 1, 3), WAIT(preds3),
		NOTE(0, f1), WAIT(notes1),
	};
	RUN_OK(s1, "batch_min: 1, batch_every: 100, persist_every: 1",
	       store);
	CHECK_UINT(nbatches(), 0);
	/* with a store every change is written as records at once: drop the
	 * shutdown snapshots (as if killed before any), the records alone
	 * must bring the state back */
	tlcm_store_t *st;
	char why[256];
	tlcm_store_opts_t so = {.must_exist = true};
	CHECK_INT(tlcm_store_open(&st, store, &so, why, sizeof why), 0);
	tlcm_snap_info_t *l = NULL;
	size_t n = 0;
	CHECK_INT(tlcm_store_list(st, "q", &l, &n), 0);
	CHECK(n >= 1);
	for (size_t i = 0; i < n; i++) {
		char key[32];
		snprintf(key, sizeof key, "snap/%016llx",
			 (unsigned long long)l[i].version);
		CHECK_INT(tlcm_store_delete(st, "node/q", key, strlen(key)), 0);
	}
	free(l);
	CHECK_INT(tlcm_store_list(st, "q", &l, &n), 0);
	CHECK_UINT(n, 0);
	free(l);
	size_t recs = 0;
	CHECK_INT(tlcm_store_scan(st, "node/q", "rec/s/", 6, count_rec, &recs),
		  0);
	CHECK_UINT(recs, 3);
	tlcm_store_close(st);

	/* run 2: still in drift (d1 never ended), the three samples are
	 * back with features, frame 1 still taken */
	static const ts_step_t s2[] = {
		P(4, "C", 0.9f, 1, 4), WAIT(preds1),
		DE("d1"),
	};
	RUN_OK(s2, "batch_min: 1, batch_every: 100, persist_every: 1", store);
	CHECK_UINT(nbatches(), 1);
	tlcm_QuarantineBatch_table_t b = last_batch();
	CHECK_STR(tlcm_QuarantineBatch_trigger(b), "drift_end");
	CHECK_STR(frames_of(b), "2,3,4");
	CHECK_UINT(tlcm_QuarantineBatch_size(b), 4);
	CHECK_UINT(tlcm_QuarantineBatch_admitted(b), 4);
	tlcm_QuarantinedSample_table_t q = tlcm_QuarantineBatch_samples_at(b,
									   1);
	CHECK_STR(tlcm_QuarantinedSample_label(q), "B");
	CHECK_DBL(tlcm_QuarantinedSample_features_at(q, 0), 3);
	CHECK_INT(described("taken"), 1);
}

/* A state the node refuses (samples of two sizes, then not a FlatBuffer
 * at all): the engine falls back to the newest version it accepts. */
static void refused_state(const char *dir)
{
	char store[300], logpath[300];
	snprintf(store, sizeof store, "%s/store", dir); /* kept_across_runs' */
	snprintf(logpath, sizeof logpath, "%s/log3.txt", dir);
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, 0);
	float x[3] = {1, 2, 3};
	tlcm_fbb_ref_t r[2];
	for (int i = 0; i < 2; i++) {
		tlcm_fbb_ref_t f = tlcm_QuarantinedSample_features_create(
			&b, x, 2 + (size_t)i);
		tlcm_QuarantinedSample_start(&b);
		tlcm_QuarantinedSample_add_frame_id(&b, 70 + (uint64_t)i);
		tlcm_QuarantinedSample_add_features(&b, f);
		r[i] = tlcm_QuarantinedSample_end(&b);
	}
	tlcm_fbb_ref_t v = tlcm_QuarantineState_samples_create(&b, r, 2);
	tlcm_QuarantineState_start(&b);
	tlcm_QuarantineState_add_samples(&b, v);
	size_t len;
	const void *data = tlcm_QuarantineState_finish(&b,
		tlcm_QuarantineState_end(&b), &len);
	tlcm_store_t *st;
	char why[256];
	tlcm_store_opts_t so = {.must_exist = true};
	CHECK_INT(tlcm_store_open(&st, store, &so, why, sizeof why), 0);
	uint64_t ver;
	CHECK_INT(tlcm_store_snapshot(st, "q", data, len, "bad sizes", &ver),
		  0);
	CHECK_INT(tlcm_store_snapshot(st, "q", "garbage!", 8, "not fb", &ver),
		  0);
	/* a sample record that is not one, a taken marker without sample */
	CHECK_INT(tlcm_store_put(st, "node/q", "rec/s/00000000000000ff", 22,
				 "garbage!", 8), 0);
	CHECK_INT(tlcm_store_put(st, "node/q", "rec/t/0000000000000abc", 22,
				 "", 0), 0);
	tlcm_store_close(st);
	tlcm_fbb_fini(&b);
	static const ts_step_t s[] = {P(5, "C", 0.9f, 1, 5), WAIT(preds1)};
	tlcm_run_result_t res;
	char yaml[1024];
	snprintf(yaml, sizeof yaml,
		 "graph: q\n"
		 "settings: { workers: 2, introspect: 'off', store: %s }\n"
		 "nodes:\n"
		 "  src: { type: script }\n"
		 "  q: { type: w.quarantine, on_error: skip }\n"
		 "edges:\n"
		 "  - { from: src.o0, to: q.in }\n", store);
	CHECK_INT(tlcm_ts_run_logged(&reg, yaml, s, 2, &res, logpath,
				     TLCM_LOG_WARN), 0);
	tlcm_run_result_fini(&res);
	/* the good state of kept_across_runs: 4 samples, then frame 5
	 * (no drift any more: passed, not admitted) */
	CHECK_INT(described("size"), 4);
	CHECK_INT(described("admitted"), 4);
	size_t n;
	unsigned char *log = tlcm_test_read_file(logpath, &n);
	char *text = realloc(log, n + 1);
	text[n] = 0;
	CHECK_CONTAINS(text, "[q] state rejected: tlcm.QuarantineState");
	CHECK_CONTAINS(text, "[q] state rejected: sample 1 has 3 features, "
		       "expected 2");
	CHECK_CONTAINS(text, "[q] record s/00000000000000ff: ");
	free(text);
	/* both dropped from the store: the records are the state again */
	size_t recs = 0, marks = 0;
	CHECK_INT(tlcm_store_open(&st, store, &so, why, sizeof why), 0);
	CHECK_INT(tlcm_store_scan(st, "node/q", "rec/s/", 6, count_rec, &recs),
		  0);
	CHECK_INT(tlcm_store_scan(st, "node/q", "rec/t/", 6, count_rec,
				  &marks), 0);
	tlcm_store_close(st);
	CHECK_UINT(recs, 4);
	CHECK_UINT(marks, 1);
}

static void bad_input(const char *dir)
{
	char logpath[300];
	snprintf(logpath, sizeof logpath, "%s/log.txt", dir);
	static const uint64_t f1[] = {1};
	static const ts_step_t s[] = {
		P(1, "A", 0.1f, 1, 0), WAIT(preds1),
		{.kind = TS_JUNK, .port = O_JUNK, .s = "BLOB"},
		{.kind = TS_JUNK, .port = O_JUNK, .s = "PRED"},
		/* admitted without features */
		{.kind = TS_PRED, .port = O_JUNK, .frame = 20, .s = "A",
		 .conf = 0.1f},
		/* three features, the others have two */
		{.kind = TS_PRED, .port = O_JUNK, .frame = 21, .s = "A",
		 .conf = 0.1f, .dim = 3},
		{.kind = TS_PRED, .port = O_JUNK, .frame = 22, .s = "A",
		 .conf = NAN},
		{.kind = TS_PRED, .port = O_JUNK, .frame = 23, .s = "A",
		 .conf = 0.1f, .dim = 2, .x = {INFINITY, 0}},
		WAIT(errors_seen),
		{.kind = TS_JUNK, .port = O_DRIFT, .s = "DRFT"},
		{.kind = TS_JUNK, .port = O_FRAMES, .s = "PRED"},
		{.kind = TS_FRAME, .port = O_FRAMES, .frame = 5, .w = 0,
		 .h = 0},
		{.kind = TS_NOTICE, .port = O_NOTICES, .i = 7, .frames = f1,
		 .n = 1},
		P(2, "A", 0.1f, 1, 0),
	};
	tlcm_run_result_t res;
	int rc = tlcm_ts_run_logged(
		&reg,
		"graph: q\n"
		"settings: { workers: 2, introspect: 'off' }\n"
		"nodes:\n"
		"  src: { type: script }\n"
		"  q: { type: w.quarantine, on_error: skip, params: { admit: "
		"[low_confidence], batch_min: 1, batch_every: 1 } }\n"
		"  batches: { type: collect, params: { slot: 0 } }\n"
		"edges:\n"
		"  - { from: src.o0, to: q.in }\n"
		"  - { from: src.o1, to: q.drift }\n"
		"  - { from: src.o2, to: q.frames }\n"
		"  - { from: src.o3, to: q.notices }\n"
		"  - { from: src.o4, to: q.in }\n"
		"  - { from: q.batch, to: batches.in, capacity: 1MiB }\n",
		s, sizeof s / sizeof s[0], &res, logpath, TLCM_LOG_WARN);
	CHECK_INT(rc, 0); /* on_error: skip: the graph ran on */
	CHECK_UINT(res.nodes ? res.nodes[1].errors : 0, 10);
	tlcm_run_result_fini(&res);
	CHECK_STR(frames_of(last_batch()), "1,2");
	CHECK_INT(described("bad"), 10);
	size_t len;
	unsigned char *log = tlcm_test_read_file(logpath, &len);
	char *text = realloc(log, len + 1);
	text[len] = 0;
	CHECK_CONTAINS(text, "[q] in: expected a Prediction (PRED), got a "
		       "'BLOB' message");
	CHECK_CONTAINS(text, "[q] in: invalid Prediction");
	CHECK_CONTAINS(text, "[q] in: frame 20: Prediction without features "
		       "(set carry_features: true on the knn)");
	CHECK_CONTAINS(text, "[q] in: frame 21: 3 features, the quarantined "
		       "samples have 2");
	CHECK_CONTAINS(text, "[q] in: frame 22: non-finite confidence");
	CHECK_CONTAINS(text, "[q] process: bad message skipped");
	free(text);
}

int main(void)
{
	tlcm_log_level = TLCM_LOG_ERROR;
	tlcm_ts_setup(&reg);
	tlcm_ts_wrap(&reg, "quarantine");
	char dir[] = "/tmp/tlcm-quarantine-XXXXXX", cmd[96];
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	admit_on_drift();
	admit_on_confidence_and_distance();
	admit_on_novelty();
	bounds();
	thumbnails();
	notices();
	kept_across_runs(dir);
	refused_state(dir);
	bad_input(dir);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", dir);
	tlcm_ts_reset();
	tlcm_registry_fini(&reg);
	return tlcm_test_done();
}
