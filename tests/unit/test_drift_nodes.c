/* test_drift_nodes.c — the drift nodes through small graphs.
 *
 * `predsrc` (defined here) emits Prediction messages whose values come
 * from a script of functions of the sample index; `driftsink` keeps every
 * DriftEvent. Each graph is src -> drift node -> sink, loaded from YAML
 * and run by the real scheduler. Checks: Start at the predicted index
 * with every field filled, the cooldown holding back a second Start, End
 * after the hysteresis, a drift carried across a restart through the
 * store (two runs, same events as one run), foreign or unfitting states
 * refused (a fresh start), bad input counted as an error
 * of the node (named in the log) while the graph runs on, and describe()
 * giving valid JSON for every node type. knn_distance's per-label
 * references (a shift of one label the global reference cannot see) and
 * log transform are checked the same way, their states included.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <math.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "engine/graph.h"
#include "engine/log.h"
#include "engine/sched.h"
#include "engine/store.h"
#include "fb/blob_fb.h"
#include "fb/drift_fb.h"
#include "fb/drift_state_fb.h"
#include "fb/prediction_fb.h"
#include "nodes/drift/common.h"
#include "nodes/drift/drift_nodes.h"
#include "nodes/nodes.h"
#include "tests/tlcm_test.h"

/* ---- the script: values per sample index -------------------------------- */

typedef struct {
	double (*conf)(uint64_t i);
	double (*dist)(uint64_t i);
	const char *(*label)(uint64_t i);
} script_t;

static const script_t *script;
static double river[2000];

static double one(uint64_t i) { (void)i; return 1.0; }
static const char *label_a(uint64_t i) { (void)i; return "a"; }

/* knn_distance: 0.9/1.1 (mean 1, std 0.1), drift to 2.0 in [600, 700)
 * and [740, 900), exactly 1.0 elsewhere after the warm-up */
static double knn_dist(uint64_t i)
{
	if (i < 200)
		return i % 2 ? 1.1 : 0.9;
	if ((i >= 600 && i < 700) || (i >= 740 && i < 900))
		return 2.0;
	return 1.0;
}

static const script_t knn_script = {one, knn_dist, label_a};

/* confidence: 0.9/1.0 (mean 0.95, std 0.05); a fall to `low` in
 * [500, 600) */
static double conf_low = 0.6;
static double conf_value(uint64_t i)
{
	if (i >= 500 && i < 600)
		return conf_low;
	return i % 2 ? 1.0 : 0.9;
}

static const script_t conf_script = {conf_value, one, label_a};

/* the river stream in every numeric field */
static double river_at(uint64_t i) { return river[i % 2000]; }
static const script_t river_script = {river_at, river_at, label_a};

/* labels: a b c d in turn; from 1000 to 1400 every other one is "e";
 * every 7th sample from 300 on has no label (an empty KNN) */
static const char *label_mix(uint64_t i)
{
	static const char *abcd[] = {"a", "b", "c", "d"};
	if (i >= 300 && i % 7 == 0)
		return "";
	if (i >= 1000 && i < 1400 && i % 2)
		return "e";
	return abcd[(i / 2) % 4];
}

static const script_t label_script = {one, one, label_mix};

/* knn_distance, reference_by: label — labels a and b in turn: a at
 * 0.9/1.1 (mean 1, std 0.1), b at 9/11 (mean 10, std 1); together mean
 * 5.5, std 4.56. From 400 a's distances are 2.0: 10 std of a's own, but
 * 0.77 global std *below* the global mean, so a global reference cannot
 * see it. From 300 every 10th sample is "new_1" at 5, a label first seen
 * after the warm-up (scored against the global reference). */
static double shift_dist(uint64_t i)
{
	if (i >= 300 && i % 10 == 5)
		return 5.0;
	if (i % 2)
		return (i / 2) % 2 ? 11.0 : 9.0;
	if (i >= 400)
		return 2.0;
	return (i / 2) % 2 ? 1.1 : 0.9;
}

static const char *shift_label(uint64_t i)
{
	if (i >= 300 && i % 10 == 5)
		return "new_1";
	return i % 2 ? "b" : "a";
}

static const script_t shift_script = {one, shift_dist, shift_label};

/* one label, a: 0.9/1.1 in the warm-up, a calm 1.2 (2 std) in [200,
 * 400), then 1.45: 2.5 std above a reference that followed to 1.2, 4.5
 * above the warm-up's */
static double track_dist(uint64_t i)
{
	if (i < 200)
		return i % 2 ? 1.1 : 0.9;
	return i < 400 ? 1.2 : 1.45;
}

static const script_t track_script = {one, track_dist, label_a};

/* ---- predsrc ------------------------------------------------------------ */

typedef struct {
	uint64_t i, end, bad_at;
} src_t;

static const tlcm_port_desc_t src_out[] = {{"out", "*", "predictions", 0},
					   {0}};
static const tlcm_param_desc_t src_params[] = {
	{"start", TLCM_P_INT, "0", "first index", 0, 1e12, NULL, 0},
	{"count", TLCM_P_INT, "100", "samples", 0, 1e12, NULL, 0},
	{"bad_at", TLCM_P_INT, "-1", "index before which bad messages go out",
	 -1, 1e12, NULL, 0},
	{0},
};

static int src_init(tlcm_ctx_t *ctx, void *st)
{
	src_t *s = st;
	s->i = (uint64_t)tlcm_param_int(ctx, "start");
	s->end = s->i + (uint64_t)tlcm_param_int(ctx, "count");
	s->bad_at = (uint64_t)tlcm_param_int(ctx, "bad_at");
	tlcm_set_tick(ctx, 0);
	return 0;
}

static int emit_pred(tlcm_ctx_t *ctx, uint64_t i, double conf)
{
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, 0, &b, 512);
	if (rc)
		return rc;
	float d[2] = {(float)script->dist(i), (float)script->dist(i) + 0.1f};
	tlcm_fbb_ref_t lab = tlcm_fbb_cstring(&b, script->label(i));
	tlcm_fbb_ref_t td = tlcm_Prediction_top_distances_create(&b, d, 2);
	tlcm_Prediction_start(&b);
	tlcm_Prediction_add_frame_id(&b, 1000 + i);
	tlcm_Prediction_add_time_ns(&b, 1000000000ull + i * 1000);
	tlcm_Prediction_add_label(&b, lab);
	tlcm_Prediction_add_confidence(&b, (float)conf);
	tlcm_Prediction_add_top_distances(&b, td);
	tlcm_Prediction_add_mean_distance(&b, d[0]);
	rc = tlcm_emit_end(ctx, 0, &b, tlcm_Prediction_end(&b),
			   tlcm_Prediction_IDENTIFIER);
	return rc == TLCM_EAGAIN ? 0 : rc;
}

/* A Blob, a PRED that is not a FlatBuffer, a PRED with NaN confidence. */
static int emit_bad(tlcm_ctx_t *ctx, uint64_t i)
{
	static const uint8_t junk[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
	int rc = tlcm_emit(ctx, 0, "BLOB", junk, sizeof junk);
	if (!rc)
		rc = tlcm_emit(ctx, 0, "PRED", junk, sizeof junk);
	if (!rc)
		rc = emit_pred(ctx, i, NAN);
	return rc;
}

static int src_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	src_t *s = st;
	(void)now;
	if (s->i >= s->end)
		return TLCM_ECLOSED;
	int rc = s->i == s->bad_at ? emit_bad(ctx, s->i) : 0;
	if (!rc)
		rc = emit_pred(ctx, s->i, script->conf(s->i));
	s->i++;
	return rc;
}

static const tlcm_node_type_t predsrc_type = {
	.name = "predsrc", .doc = "scripted predictions (test source)",
	.outputs = src_out, .params = src_params, .state_size = sizeof(src_t),
	.init = src_init, .tick = src_tick};

/* ---- driftsink ----------------------------------------------------------- */

typedef struct {
	int kind;
	char detector[40], node[16], metric[40];
	double value, threshold;
	uint64_t index, time_ns, frame_id;
} ev_t;

static ev_t evs[64];
static int nev, nbad_events;

static const tlcm_port_desc_t sink_in[] = {{"in", "DRFT", "events", 0}, {0}};

static int sink_process(tlcm_ctx_t *ctx, void *st, int port,
			const tlcm_msg_t *m)
{
	(void)ctx;
	(void)st;
	(void)port;
	const char *why;
	if (tlcm_DriftEvent_verify_as_root(tlcm_msg_data(m), m->size, &why)) {
		nbad_events++;
		return 0;
	}
	tlcm_DriftEvent_table_t t = tlcm_DriftEvent_as_root(tlcm_msg_data(m));
	if (nev == 64)
		return 0;
	ev_t *e = &evs[nev++];
	/* every field must be present, none left at its default */
	e->kind = tlcm_DriftEvent_kind(t);
	snprintf(e->detector, sizeof e->detector, "%s",
		 tlcm_DriftEvent_detector(t) ? tlcm_DriftEvent_detector(t) : "");
	snprintf(e->node, sizeof e->node, "%s",
		 tlcm_DriftEvent_node(t) ? tlcm_DriftEvent_node(t) : "");
	snprintf(e->metric, sizeof e->metric, "%s",
		 tlcm_DriftEvent_metric(t) ? tlcm_DriftEvent_metric(t) : "");
	e->value = tlcm_DriftEvent_value(t);
	e->threshold = tlcm_DriftEvent_threshold(t);
	e->index = tlcm_DriftEvent_index(t);
	e->time_ns = tlcm_DriftEvent_time_ns(t);
	e->frame_id = tlcm_DriftEvent_frame_id(t);
	return 0;
}

static const tlcm_node_type_t driftsink_type = {
	.name = "driftsink", .doc = "keep drift events (test sink)",
	.inputs = sink_in, .process = sink_process};

/* ---- running graphs -------------------------------------------------------- */

static tlcm_registry_t reg;

/* src(start, count) -> det (type, params) -> sink; returns run status. */
static int run(const char *type, const char *params, uint64_t start,
	       uint64_t count, long bad_at, const char *store,
	       tlcm_run_result_t *res)
{
	char path[] = "/tmp/tlcm-drift-XXXXXX.yaml", yaml[1024];
	snprintf(yaml, sizeof yaml,
		 "graph: drift\n"
		 "settings: { workers: 2, introspect: 'off'%s%s }\n"
		 "nodes:\n"
		 "  src: { type: predsrc, params: { start: %llu, count: %llu,"
		 " bad_at: %ld } }\n"
		 "  det: { type: %s, on_error: skip, params: { %s } }\n"
		 "  out: { type: driftsink }\n"
		 "edges:\n"
		 "  - { from: src.out, to: det.in }\n"
		 "  - { from: det.events, to: out.in }\n",
		 store ? ", store: " : "", store ? store : "",
		 (unsigned long long)start, (unsigned long long)count, bad_at,
		 type, params);
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
		CHECK_INT(rc, 0);
		memset(res, 0, sizeof *res);
		return rc;
	}
	tlcm_diag_fini(&d);
	tlcm_run_opts_t o = {.quiet = true, .headless = true};
	rc = tlcm_graph_run(g, &o, res);
	tlcm_graph_free(g);
	return rc;
}

static int run_simple(const char *type, const char *params, uint64_t count)
{
	tlcm_run_result_t res;
	nev = nbad_events = 0;
	int rc = run(type, params, 0, count, -1, NULL, &res);
	CHECK_STR(res.why, "");
	CHECK_UINT(res.nodes ? res.nodes[1].errors : 1, 0);
	tlcm_run_result_fini(&res);
	CHECK_INT(nbad_events, 0);
	return rc;
}

static void check_event(const ev_t *e, int kind, const char *detector,
			const char *metric, uint64_t index)
{
	CHECK_INT(e->kind, kind);
	CHECK_STR(e->detector, detector);
	CHECK_STR(e->node, "det");
	CHECK_STR(e->metric, metric);
	CHECK_UINT(e->index, index);
	CHECK_UINT(e->frame_id, 1000 + index);
	CHECK_UINT(e->time_ns, 1000000000ull + index * 1000);
	CHECK(isfinite(e->value) && isfinite(e->threshold));
}

/* ---- tests ---------------------------------------------------------------- */

#define KNN_PARAMS \
	"warm_up: 200, update_interval: 0, exit_factor: 0.71, delta: 0.5"

static void knn_distance_events(void)
{
	script = &knn_script;
	CHECK_INT(run_simple("drift.knn_distance", KNN_PARAMS, 1000), 0);
	CHECK_INT(nev, 4);
	/* z = 10 per drifted sample: 9.5, 19, 28.5 > 25 at the third */
	check_event(&evs[0], tlcm_DriftKind_Start, "drift.knn_distance",
		    "mean_distance", 602);
	CHECK(fabs(evs[0].value - 28.5) < 1e-4);
	CHECK_DBL(evs[0].threshold, 25);
	/* capped at 25, -0.5 per sample from 700: 17.5 <= 17.75 at 714,
	 * the 20th calm sample is 733 */
	check_event(&evs[1], tlcm_DriftKind_End, "drift.knn_distance",
		    "mean_distance", 733);
	CHECK(fabs(evs[1].value - 8.0) < 1e-4); /* 25 - 0.5 * 34 */
	CHECK(fabs(evs[1].threshold - 17.75) < 1e-9);
	/* the drift from 740 fires at 742 but the cooldown (100 samples
	 * after the End at 733) holds it back to 834 */
	check_event(&evs[2], tlcm_DriftKind_Start, "drift.knn_distance",
		    "mean_distance", 834);
	CHECK(evs[2].value > 25);
	check_event(&evs[3], tlcm_DriftKind_End, "drift.knn_distance",
		    "mean_distance", 933);

	/* absolute units: delta 0.5, threshold 2.4 in distance units:
	 * 0.5 per drifted sample, 2.5 > 2.4 at the fifth (604) */
	CHECK_INT(run_simple("drift.knn_distance", KNN_PARAMS
			     ", units: absolute, threshold: 2.4", 700), 0);
	CHECK(nev >= 1);
	if (nev >= 1)
		check_event(&evs[0], tlcm_DriftKind_Start,
			    "drift.knn_distance", "mean_distance", 604);
}

static void knn_distance_reference_file(const char *dir)
{
	char path[256], params[512];
	snprintf(path, sizeof path, "%s/ref.json", dir);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs("{\"reference_mean\": 1.0, \"reference_std\": 0.1}\n", f);
	fclose(f);
	/* no warm-up: the first drifted samples count from sample 0 */
	snprintf(params, sizeof params, "warm_up: 0, update_interval: 0, "
		 "delta: 0.5, reference: '%s'", path);
	script = &knn_script;
	CHECK_INT(run_simple("drift.knn_distance", params, 650), 0);
	CHECK(nev >= 1);
	if (nev >= 1)
		check_event(&evs[0], tlcm_DriftKind_Start,
			    "drift.knn_distance", "mean_distance", 602);

	/* an unusable file stops the graph at init, naming the file */
	f = fopen(path, "w");
	fputs("{\"reference_mean\": \"one\"}", f);
	fclose(f);
	tlcm_run_result_t res;
	nev = 0;
	CHECK(run("drift.knn_distance", params, 0, 10, -1, NULL, &res) != 0);
	CHECK_CONTAINS(res.why, "det");
	tlcm_run_result_fini(&res);
}

/* reference_by: label sees a shift confined to one label that the global
 * reference, dominated by the spread between labels, does not. */
#define LABEL_PARAMS "warm_up: 200, update_interval: 0"

static void knn_distance_by_label(void)
{
	script = &shift_script;
	/* per label: the stationary +-1 std in pairs leave s = 1.4 at 399;
	 * then a's samples add 10 - 0.3, b's -1 - 0.3 and +1 - 0.3 in
	 * turn: 11.1, 9.8, 19.5, 20.2, 29.9 > 25 at 404 */
	CHECK_INT(run_simple("drift.knn_distance", LABEL_PARAMS
			     ", reference_by: label", 600), 0);
	CHECK(nev >= 1);
	if (nev >= 1) {
		check_event(&evs[0], tlcm_DriftKind_Start,
			    "drift.knn_distance", "mean_distance", 404);
		CHECK(fabs(evs[0].value - 29.9) < 1e-3);
	}
	/* the same stream against the global reference: nothing in the
	 * 200 samples after the shift (the per-label node needed 5) */
	CHECK_INT(run_simple("drift.knn_distance", LABEL_PARAMS, 600), 0);
	CHECK_INT(nev, 0);
	/* a label with fewer warm-up samples than min_label_samples (a has
	 * 100) is scored against the global reference: nothing either */
	CHECK_INT(run_simple("drift.knn_distance", LABEL_PARAMS
			     ", reference_by: label, min_label_samples: 101",
			     600), 0);
	CHECK_INT(nev, 0);
	CHECK_INT(run_simple("drift.knn_distance", LABEL_PARAMS
			     ", reference_by: label, min_label_samples: 100",
			     600), 0);
	CHECK(nev >= 1 && evs[0].index == 404);

	/* a give-up forgets the label references: the new warm-up (555 to
	 * 754) learns a at 2.0, which is quiet from then on */
	CHECK_INT(run_simple("drift.knn_distance", LABEL_PARAMS
			     ", reference_by: label, max_drift: 150", 1000),
		  0);
	CHECK_INT(nev, 2);
	if (nev >= 2) {
		CHECK_UINT(evs[0].index, 404);
		check_event(&evs[1], tlcm_DriftKind_End, "drift.knn_distance",
			    "drift_samples", 554);
	}

	/* while stable, tracking moves the label reference that scored
	 * the samples: after one interval (factor 1) a's reference sits at
	 * 1.2, so 1.45 is 2.5 std (below delta 3); frozen at the warm-up's
	 * 1.0 it is 4.5 std: +1.5 per sample, 25 passed on the 17th */
	script = &track_script;
	const char *track = "warm_up: 200, reference_by: label, delta: 3, "
			    "update_factor: 1, min_std: 0.1";
	char params[256];
	snprintf(params, sizeof params, "%s, update_interval: 50", track);
	CHECK_INT(run_simple("drift.knn_distance", params, 600), 0);
	CHECK_INT(nev, 0);
	snprintf(params, sizeof params, "%s, update_interval: 0", track);
	CHECK_INT(run_simple("drift.knn_distance", params, 600), 0);
	CHECK(nev >= 1 && evs[0].index == 416);
}

/* transform: log: the test runs on log(distance); the events say so.
 * The expected Start and End come from the script, computed here. */
static void knn_distance_log(const char *dir)
{
	double sum = 0, ss = 0, mean, sd, st = 0;
	uint64_t start = 0, end = 0, quiet = 0;
	double start_v = 0, end_v = 0;
	for (uint64_t i = 0; i < 200; i++)
		sum += log((float)knn_dist(i));
	mean = sum / 200;
	for (uint64_t i = 0; i < 200; i++) {
		double d = log((float)knn_dist(i)) - mean;
		ss += d * d;
	}
	sd = sqrt(ss / 200);
	for (uint64_t i = 200; i < 1000 && !end; i++) {
		st += (log((float)knn_dist(i)) - mean) / sd - 0.5;
		st = st > 0 ? st : 0;
		if (!start && st > 25) {
			start = i;
			start_v = st;
		} else if (start && (quiet = st <= 0.71 * 25 ? quiet + 1 : 0)
			   >= 20) {
			end = i;
			end_v = st;
		}
		st = st < 25 ? st : 25;
	}
	/* z = (log 2 - mean) / sd = 6.96: four samples, not three */
	CHECK_UINT(start, 603);
	script = &knn_script;
	CHECK_INT(run_simple("drift.knn_distance", KNN_PARAMS
			     ", transform: log", 1000), 0);
	CHECK_INT(nev, 4);
	if (nev >= 2) {
		check_event(&evs[0], tlcm_DriftKind_Start,
			    "drift.knn_distance", "log_mean_distance", start);
		CHECK(fabs(evs[0].value - start_v) < 1e-6);
		check_event(&evs[1], tlcm_DriftKind_End,
			    "drift.knn_distance", "log_mean_distance", end);
		CHECK(fabs(evs[1].value - end_v) < 1e-6);
	}

	/* a reference file holds log statistics: mean 0, std 0.1 puts the
	 * drifted log 2 at 6.93 std, so the fourth sample starts it */
	char path[256], params[512];
	snprintf(path, sizeof path, "%s/logref.json", dir);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs("{\"reference_mean\": 0.0, \"reference_std\": 0.1}\n", f);
	fclose(f);
	snprintf(params, sizeof params, "warm_up: 0, update_interval: 0, "
		 "delta: 0.5, transform: log, reference: '%s'", path);
	CHECK_INT(run_simple("drift.knn_distance", params, 650), 0);
	CHECK(nev >= 1);
	if (nev >= 1) {
		check_event(&evs[0], tlcm_DriftKind_Start,
			    "drift.knn_distance", "log_mean_distance", 603);
		CHECK(fabs(evs[0].value - 4 * (log(2.0) / 0.1 - 0.5)) < 1e-4);
	}
}

/* Events of a run from `store` starting at sample 0, against those of a
 * run without one: equal when the node refused the stored state. */
static void check_fresh_start(const char *params, const char *store,
			      uint64_t n)
{
	CHECK_INT(run_simple("drift.knn_distance", params, n), 0);
	ev_t fresh[16];
	int nf = nev < 16 ? nev : 16;
	memcpy(fresh, evs, (size_t)nf * sizeof *evs);
	CHECK(nf >= 1);
	tlcm_run_result_t res;
	nev = 0;
	CHECK_INT(run("drift.knn_distance", params, 0, n, -1, store, &res),
		  0);
	CHECK_STR(res.why, "");
	tlcm_run_result_fini(&res);
	CHECK_INT(nev, nf);
	for (int i = 0; i < nf && i < nev; i++) {
		CHECK_UINT(evs[i].index, fresh[i].index);
		CHECK_DBL(evs[i].value, fresh[i].value);
	}
}

/* Label references in the stored state: a global node's state gives a
 * label node none (every label on the global reference); states with
 * more labels than max_labels, another transform or non-finite label
 * statistics are refused. */
static void knn_distance_label_state(const char *dir)
{
	char store[256];
	tlcm_run_result_t res;
	/* a global node's state: the label node goes on with the global
	 * reference, as the global node would (Start at 602, z = 10); had
	 * it refused the state, a new warm-up on the exact 1.0s would fire
	 * at its index 300 */
	script = &knn_script;
	snprintf(store, sizeof store, "%s/store-knn-g2l", dir);
	CHECK_INT(run("drift.knn_distance", KNN_PARAMS, 0, 300, -1, store,
		      &res), 0);
	tlcm_run_result_fini(&res);
	nev = 0;
	CHECK_INT(run("drift.knn_distance", KNN_PARAMS ", reference_by: label",
		      300, 350, -1, store, &res), 0);
	CHECK_STR(res.why, "");
	tlcm_run_result_fini(&res);
	CHECK_INT(nev, 1);
	if (nev >= 1) {
		check_event(&evs[0], tlcm_DriftKind_Start,
			    "drift.knn_distance", "mean_distance", 602);
		CHECK(fabs(evs[0].value - 28.5) < 1e-4);
	}
	script = &shift_script;

	/* two labels learned; a node with max_labels 1 starts fresh */
	snprintf(store, sizeof store, "%s/store-knn-max", dir);
	CHECK_INT(run("drift.knn_distance", LABEL_PARAMS
		      ", reference_by: label", 0, 300, -1, store, &res), 0);
	tlcm_run_result_fini(&res);
	check_fresh_start(LABEL_PARAMS ", reference_by: label, max_labels: 1",
			  store, 600);

	/* distances learned plain; a log node starts fresh */
	snprintf(store, sizeof store, "%s/store-knn-log", dir);
	script = &knn_script;
	CHECK_INT(run("drift.knn_distance", KNN_PARAMS, 0, 300, -1, store,
		      &res), 0);
	tlcm_run_result_fini(&res);
	check_fresh_start(KNN_PARAMS ", transform: log", store, 1000);

	/* a label reference with a NaN mean, written into a store alone */
	snprintf(store, sizeof store, "%s/store-knn-nan", dir);
	tlcm_store_t *st;
	tlcm_store_opts_t so = {0};
	char why[256];
	CHECK_INT(tlcm_store_open(&st, store, &so, why, sizeof why), 0);
	tlcm_fbb_t b;
	CHECK_INT(tlcm_fbb_init(&b, 1024), 0);
	tlcm_fbb_ref_t name = tlcm_fbb_cstring(&b, "a");
	tlcm_RefStats_start(&b);
	tlcm_RefStats_add_ready(&b, true);
	tlcm_RefStats_add_n(&b, 100);
	tlcm_RefStats_add_mean(&b, NAN);
	tlcm_fbb_ref_t lr = tlcm_RefStats_end(&b);
	tlcm_LabelRef_start(&b);
	tlcm_LabelRef_add_label(&b, name);
	tlcm_LabelRef_add_ref(&b, lr);
	tlcm_fbb_ref_t e = tlcm_LabelRef_end(&b);
	tlcm_fbb_ref_t v = tlcm_DriftState_label_refs_create(&b, &e, 1);
	tlcm_fbb_ref_t det = tlcm_fbb_cstring(&b, "drift.knn_distance");
	tlcm_DriftCommon_start(&b);
	tlcm_DriftCommon_add_index(&b, 300);
	tlcm_DriftCommon_add_warm_until(&b, 200);
	tlcm_fbb_ref_t com = tlcm_DriftCommon_end(&b);
	tlcm_RefStats_start(&b);
	tlcm_RefStats_add_ready(&b, true);
	tlcm_RefStats_add_n(&b, 200);
	tlcm_RefStats_add_mean(&b, 5.5);
	tlcm_RefStats_add_m2(&b, 200 * 20.0);
	tlcm_fbb_ref_t gr = tlcm_RefStats_end(&b);
	tlcm_CusumState_start(&b);
	tlcm_fbb_ref_t cs = tlcm_CusumState_end(&b);
	tlcm_DriftState_start(&b);
	tlcm_DriftState_add_detector(&b, det);
	tlcm_DriftState_add_common(&b, com);
	tlcm_DriftState_add_ref(&b, gr);
	tlcm_DriftState_add_cusum(&b, cs);
	tlcm_DriftState_add_label_refs(&b, v);
	size_t len = 0;
	const void *buf = tlcm_DriftState_finish(&b, tlcm_DriftState_end(&b),
						 &len);
	CHECK(buf != NULL);
	if (buf)
		CHECK_INT(tlcm_store_snapshot(st, "det", buf, len, "test",
					      NULL), 0);
	tlcm_fbb_fini(&b);
	tlcm_store_close(st);
	script = &shift_script;
	check_fresh_start(LABEL_PARAMS ", reference_by: label", store, 600);
}

static void knn_distance_restart(const char *dir)
{
	char store[256];
	snprintf(store, sizeof store, "%s/store-knn", dir);
	script = &knn_script;
	tlcm_run_result_t res;
	/* run 1 stops in the middle of the first drift */
	nev = 0;
	CHECK_INT(run("drift.knn_distance", KNN_PARAMS, 0, 650, -1, store,
		      &res), 0);
	tlcm_run_result_fini(&res);
	CHECK_INT(nev, 1);
	check_event(&evs[0], tlcm_DriftKind_Start, "drift.knn_distance",
		    "mean_distance", 602);
	/* run 2 continues: no second warm-up, no second Start; the End
	 * and the cooldown fall exactly where one long run puts them */
	nev = 0;
	CHECK_INT(run("drift.knn_distance", KNN_PARAMS, 650, 350, -1, store,
		      &res), 0);
	tlcm_run_result_fini(&res);
	CHECK_INT(nev, 3);
	check_event(&evs[0], tlcm_DriftKind_End, "drift.knn_distance",
		    "mean_distance", 733);
	check_event(&evs[1], tlcm_DriftKind_Start, "drift.knn_distance",
		    "mean_distance", 834);
	check_event(&evs[2], tlcm_DriftKind_End, "drift.knn_distance",
		    "mean_distance", 933);
}

static void bad_input(const char *dir)
{
	char logpath[256];
	snprintf(logpath, sizeof logpath, "%s/log.txt", dir);
	script = &knn_script;
	/* capture the log to see the node named */
	fflush(stderr);
	int saved = dup(2), fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC,
				      0600);
	dup2(fd, 2);
	close(fd);
	int lvl = tlcm_log_level;
	tlcm_log_level = TLCM_LOG_WARN;
	tlcm_run_result_t res;
	nev = 0;
	int rc = run("drift.knn_distance", KNN_PARAMS, 0, 1000, 300, NULL,
		     &res);
	tlcm_log_level = lvl;
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	CHECK_INT(rc, 0); /* on_error: skip: the graph ran on */
	CHECK_UINT(res.nodes[1].errors, 3);
	CHECK_UINT(res.nodes[1].in, 1003);
	tlcm_run_result_fini(&res);
	/* the bad messages took no index: same events as without them */
	CHECK_INT(nev, 4);
	check_event(&evs[0], tlcm_DriftKind_Start, "drift.knn_distance",
		    "mean_distance", 602);
	check_event(&evs[3], tlcm_DriftKind_End, "drift.knn_distance",
		    "mean_distance", 933);
	size_t len;
	unsigned char *log = tlcm_test_read_file(logpath, &len);
	char *text = realloc(log, len + 1);
	text[len] = 0;
	CHECK_CONTAINS(text, "[det] input: expected a Prediction (PRED), got "
		       "a 'BLOB' message");
	CHECK_CONTAINS(text, "[det] input: invalid Prediction");
	CHECK_CONTAINS(text, "[det] input: Prediction with a non-finite "
		       "confidence");
	CHECK_CONTAINS(text, "[det] process: bad message skipped");
	free(text);
}

static void confidence_events(void)
{
	script = &conf_script;
	conf_low = 0.6;
	CHECK_INT(run_simple("drift.confidence", "warm_up: 200, "
			     "update_interval: 0", 800), 0);
	CHECK_INT(nev, 2);
	/* the EWMA (lambda 0.05, L 4, sigma 0.05: limit 0.032) leaves its
	 * band on the second sample at 0.6; Page-Hinkley would need four */
	check_event(&evs[0], tlcm_DriftKind_Start, "drift.confidence",
		    "confidence.ewma", 501);
	CHECK(evs[0].value < evs[0].threshold);
	CHECK(fabs(evs[0].threshold - (0.95 - 4 * 0.05 * sqrt(0.05 / 1.95)))
	      < 1e-3);
	check_event(&evs[1], tlcm_DriftKind_End, "drift.confidence",
		    "confidence.ewma", evs[1].index);
	CHECK(evs[1].index > 620 && evs[1].index < 700);
	CHECK(evs[1].value >= evs[1].threshold); /* back inside */

	/* with the EWMA out of the way Page-Hinkley fires: 6.5 per sample
	 * below 0.95 - 0.5 sigma, > 25 on the fourth */
	CHECK_INT(run_simple("drift.confidence", "warm_up: 200, "
			     "update_interval: 0, ewma_limit: 1000", 800), 0);
	CHECK(nev >= 1);
	if (nev >= 1) {
		check_event(&evs[0], tlcm_DriftKind_Start, "drift.confidence",
			    "confidence.page_hinkley", 503);
		CHECK(fabs(evs[0].value - 26) < 1e-3);
		CHECK_DBL(evs[0].threshold, 25);
	}
	/* mode up ignores falls */
	CHECK_INT(run_simple("drift.confidence", "warm_up: 200, mode: up",
			     800), 0);
	CHECK_INT(nev, 0);
}

static void generic_detectors(void)
{
	script = &river_script;
	/* ADWIN sees exactly what the pure test sees: the cut at 1023, then
	 * 100 samples without one */
	CHECK_INT(run_simple("drift.adwin", "field: mean_distance", 2000), 0);
	CHECK_INT(nev, 2);
	check_event(&evs[0], tlcm_DriftKind_Start, "drift.adwin",
		    "mean_distance", 1023);
	CHECK(evs[0].value > evs[0].threshold);
	check_event(&evs[1], tlcm_DriftKind_End, "drift.adwin",
		    "samples_without_cut", 1123);
	CHECK_DBL(evs[1].value, 100);
	CHECK_DBL(evs[1].threshold, 100);

	/* KSWIN, seed 1, on top_distances[0]: the pure test's 1012; the
	 * reference stays frozen on the old data, so the drift lasts */
	CHECK_INT(run_simple("drift.kswin", "field: top1_distance", 2000), 0);
	CHECK_INT(nev, 1);
	check_event(&evs[0], tlcm_DriftKind_Start, "drift.kswin",
		    "top1_distance", 1012);
	CHECK(evs[0].value <= 0.005);
	CHECK_DBL(evs[0].threshold, 0.005);

	/* Page-Hinkley with river's defaults (warm-up = min_instances 30);
	 * the shift persists, so max_drift gives up after 300 samples */
	CHECK_INT(run_simple("drift.page_hinkley", "max_drift: 300", 2000), 0);
	CHECK(nev >= 2);
	if (nev >= 2) {
		check_event(&evs[0], tlcm_DriftKind_Start,
			    "drift.page_hinkley", "confidence",
			    evs[0].index);
		CHECK(evs[0].index >= 1000 && evs[0].index <= 1030);
		CHECK(evs[0].value > 50);
		check_event(&evs[1], tlcm_DriftKind_End, "drift.page_hinkley",
			    "drift_samples", evs[0].index + 300);
		CHECK_DBL(evs[1].value, 300);
	}
	/* after the give-up a new warm-up learns the new level: quiet */
	CHECK_INT(nev, 2);
}

/* The divergence the node should see, computed here from the script:
 * the indices of Start and End and the samples they fell on. */
static void expected_jsd_events(uint64_t n, double thr, double exit_f,
				uint64_t exit_n, uint64_t *start, uint64_t *end,
				uint64_t *start_i, uint64_t *end_i)
{
	double ref[8] = {0}, win[8] = {0};
	int ring[200], head = 0, wl = 0, nl = 0;
	const char *names[8];
	uint64_t idx = 0, quiet = 0;
	bool drift = false;
	*start = *end = 0;
	for (uint64_t i = 0; i < n; i++) {
		const char *l = label_mix(i);
		if (!*l)
			continue; /* skipped, takes no index */
		int id = -1;
		for (int k = 0; k < nl; k++)
			if (!strcmp(names[k], l))
				id = k;
		if (id < 0) {
			names[nl] = l;
			id = nl++;
		}
		if (wl == 200) {
			win[ring[head]]--;
			ring[head] = id;
			head = (head + 1) % 200;
		} else {
			ring[wl++] = id;
		}
		win[id]++;
		if (idx < 500) {
			ref[id]++;
		} else if (wl == 200) {
			double js = tlcm_jsd(ref, win, (size_t)nl);
			if (!drift && js > thr && !*start) {
				drift = true;
				*start = idx;
				*start_i = i;
			} else if (drift) {
				quiet = js <= exit_f * thr ? quiet + 1 : 0;
				if (quiet >= exit_n && !*end) {
					*end = idx;
					*end_i = i;
					drift = false;
				}
			}
		}
		idx++;
	}
}

#define PD_PARAMS "window: 200, warm_up: 500, threshold: 0.1"

static void prediction_distribution_events(void)
{
	script = &label_script;
	uint64_t start, end, si = 0, ei = 0;
	expected_jsd_events(1800, 0.1, 0.7, 50, &start, &end, &si, &ei);
	CHECK(si > 1000 && si < 1400 && ei > 1400);
	CHECK_INT(run_simple("drift.prediction_distribution", PD_PARAMS
			     ", update_interval: 0", 1800), 0);
	CHECK_INT(nev, 2);
	/* skipped samples (empty labels) take no index: the events carry
	 * the sample's own frame and time */
	CHECK_INT(evs[0].kind, tlcm_DriftKind_Start);
	CHECK_STR(evs[0].detector, "drift.prediction_distribution");
	CHECK_STR(evs[0].node, "det");
	CHECK_STR(evs[0].metric, "label_jsd");
	CHECK_UINT(evs[0].index, start);
	CHECK_UINT(evs[0].frame_id, 1000 + si);
	CHECK_UINT(evs[0].time_ns, 1000000000ull + si * 1000);
	CHECK(evs[0].value > 0.1 && evs[0].value <= 1);
	CHECK_DBL(evs[0].threshold, 0.1);
	CHECK_INT(evs[1].kind, tlcm_DriftKind_End);
	CHECK_UINT(evs[1].index, end);
	CHECK_UINT(evs[1].frame_id, 1000 + ei);
	CHECK(evs[1].value <= 0.07);
	CHECK(fabs(evs[1].threshold - 0.07) < 1e-12);
	fprintf(stderr, "prediction_distribution: start %llu (sample %llu), "
		"end %llu (sample %llu)\n", (unsigned long long)start,
		(unsigned long long)si, (unsigned long long)end,
		(unsigned long long)ei);
}

#define KNN_LABEL_RESTART "warm_up: 200, reference_by: label, max_drift: 150"

static void restart_every_type(const char *dir)
{
	/* for each node type: one long run vs. the same stream in two runs
	 * through a store must give the same events */
	static const struct {
		const char *type, *params;
		const script_t *s;
		uint64_t n, cut;
	} cases[] = {
		{"drift.confidence", "warm_up: 200", &conf_script, 800, 430},
		{"drift.page_hinkley", "max_drift: 300", &river_script, 2000,
		 1100},
		{"drift.adwin", "field: mean_distance", &river_script, 2000,
		 1050},
		{"drift.kswin", "field: top1_distance", &river_script, 2000,
		 1005},
		{"drift.prediction_distribution", PD_PARAMS, &label_script,
		 1800, 800},
		/* label references with updates (interval 50): cut in the
		 * warm-up, mid-interval, in the drift, and in the warm-up
		 * after the give-up (which forgot them) */
		{"drift.knn_distance", KNN_LABEL_RESTART, &shift_script, 1000,
		 120},
		{"drift.knn_distance", KNN_LABEL_RESTART, &shift_script, 1000,
		 325},
		{"drift.knn_distance", KNN_LABEL_RESTART, &shift_script, 1000,
		 470},
		{"drift.knn_distance", KNN_LABEL_RESTART, &shift_script, 1000,
		 650},
		{"drift.knn_distance", KNN_LABEL_RESTART ", transform: log",
		 &shift_script, 1000, 470},
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		ev_t one_run[16];
		int n1;
		script = cases[c].s;
		conf_low = 0.6;
		CHECK_INT(run_simple(cases[c].type, cases[c].params,
				     cases[c].n), 0);
		n1 = nev < 16 ? nev : 16;
		memcpy(one_run, evs, (size_t)n1 * sizeof *evs);
		CHECK(n1 >= 1);

		char store[256];
		snprintf(store, sizeof store, "%s/store-%zu", dir, c);
		tlcm_run_result_t res;
		nev = 0;
		CHECK_INT(run(cases[c].type, cases[c].params, 0, cases[c].cut,
			      -1, store, &res), 0);
		tlcm_run_result_fini(&res);
		CHECK_INT(run(cases[c].type, cases[c].params, cases[c].cut,
			      cases[c].n - cases[c].cut, -1, store, &res), 0);
		tlcm_run_result_fini(&res);
		CHECK_INT(nev, n1);
		for (int i = 0; i < n1 && i < nev; i++) {
			CHECK_INT(evs[i].kind, one_run[i].kind);
			CHECK_UINT(evs[i].index, one_run[i].index);
			CHECK_STR(evs[i].metric, one_run[i].metric);
			CHECK_DBL(evs[i].value, one_run[i].value);
		}
		if (nev != n1)
			fprintf(stderr, "  (in %s, %s)\n", cases[c].type,
				cases[c].params);
	}
}

/* A state the node cannot use (another node type's, windows that no
 * longer fit) is refused: the node starts fresh, as without a store. */
static void foreign_state(const char *dir)
{
	char store[256];
	snprintf(store, sizeof store, "%s/store-foreign", dir);
	tlcm_run_result_t res;
	script = &knn_script;
	CHECK_INT(run("drift.knn_distance", KNN_PARAMS, 0, 650, -1, store,
		      &res), 0);
	tlcm_run_result_fini(&res);
	script = &conf_script;
	conf_low = 0.6;
	nev = 0;
	CHECK_INT(run("drift.confidence", "warm_up: 200, update_interval: 0",
		      0, 800, -1, store, &res), 0);
	CHECK_STR(res.why, "");
	tlcm_run_result_fini(&res);
	CHECK_INT(nev, 2);
	check_event(&evs[0], tlcm_DriftKind_Start, "drift.confidence",
		    "confidence.ewma", 501);

	snprintf(store, sizeof store, "%s/store-kswin", dir);
	script = &river_script;
	CHECK_INT(run("drift.kswin", "field: top1_distance", 0, 900, -1, store,
		      &res), 0);
	tlcm_run_result_fini(&res);
	const char *small = "field: top1_distance, window_size: 60";
	CHECK_INT(run_simple("drift.kswin", small, 2000), 0);
	int fresh = nev;
	uint64_t fresh_at = nev ? evs[0].index : 0;
	nev = 0;
	CHECK_INT(run("drift.kswin", small, 0, 2000, -1, store, &res), 0);
	tlcm_run_result_fini(&res);
	CHECK_INT(nev, fresh);
	CHECK(fresh >= 1);
	if (fresh >= 1 && nev >= 1)
		CHECK_UINT(evs[0].index, fresh_at);
}

static void describe_every_type(void)
{
	const tlcm_node_type_t *types[] = {
		&tlcm_node_drift_knn_distance, &tlcm_node_drift_confidence,
		&tlcm_node_drift_page_hinkley, &tlcm_node_drift_adwin,
		&tlcm_node_drift_kswin,
		&tlcm_node_drift_prediction_distribution};
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		/* a fresh state (every drift node's state starts with its
		 * tlcm_drift_t); describe() does not touch the context */
		void *st = calloc(1, types[i]->state_size);
		((tlcm_drift_t *)st)->type = types[i]->name;
		char buf[1024];
		CHECK_INT(types[i]->describe(NULL, st, buf, sizeof buf), 0);
		cJSON *j = cJSON_Parse(buf);
		CHECK(j != NULL);
		if (!j)
			fprintf(stderr, "  not JSON: %s\n", buf);
		const cJSON *det = cJSON_GetObjectItemCaseSensitive(j,
								    "detector");
		CHECK(cJSON_IsString(det) &&
		      !strcmp(det->valuestring, types[i]->name));
		CHECK(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(
			j, "in_drift")));
		cJSON_Delete(j);
		free(st);
	}
}

static void bad_params(void)
{
	/* KSWIN's stat_size must fit twice in the window: refused at init */
	tlcm_run_result_t res;
	script = &river_script;
	CHECK(run("drift.kswin", "window_size: 50, stat_size: 30", 0, 10, -1,
		  NULL, &res) != 0);
	CHECK_CONTAINS(res.why, "det");
	tlcm_run_result_fini(&res);
}

int main(int argc, char **argv)
{
	tlcm_log_level = TLCM_LOG_ERROR;
	FILE *f = argc > 1 ? fopen(argv[1], "r") : NULL;
	if (!f) {
		fprintf(stderr, "usage: test_drift_nodes "
			"tests/drift/river_stream.txt\n");
		return 1;
	}
	for (int i = 0; i < 2000; i++)
		if (fscanf(f, "%lf", &river[i]) != 1)
			river[i] = -1;
	fclose(f);
	tlcm_builtin_nodes(&reg);
	tlcm_registry_add(&reg, &predsrc_type);
	tlcm_registry_add(&reg, &driftsink_type);
	char dir[] = "/tmp/tlcm-drift-XXXXXX", cmd[96];
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	knn_distance_events();
	knn_distance_reference_file(dir);
	knn_distance_restart(dir);
	knn_distance_by_label();
	knn_distance_log(dir);
	knn_distance_label_state(dir);
	bad_input(dir);
	confidence_events();
	generic_detectors();
	prediction_distribution_events();
	restart_every_type(dir);
	foreign_state(dir);
	describe_every_type();
	bad_params();
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", dir);
	tlcm_registry_fini(&reg);
	return tlcm_test_done();
}
