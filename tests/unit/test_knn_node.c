/* test_knn_node.c — node `knn` through small graphs.
 *
 * `featsrc` (defined here) plays a script: Features or LabeledSample
 * messages on its `samples` output, Features on `queries`, bad messages,
 * and barriers (wait until the sink has the prediction of frame F, so the
 * node has learned everything sent before: the two inputs are separate
 * rings). `predsink` keeps every Prediction. The node runs wrapped as
 * `knnwrap` (the real descriptor plus an eos that saves describe()).
 * Checks: every Prediction field, class_names and truth, min_samples,
 * string labels and relabelling, the samples kept across two runs through
 * settings.store (also with quantize switched on, and refused when dim no
 * longer fits), bad input counted as errors naming the frame while the
 * graph runs on (on_error: skip), describe() JSON, learn_first (a
 * warm-up set on `in` itself, learned before the queries behind it, and
 * how much of it was learned kept across runs).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdatomic.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "engine/graph.h"
#include "engine/log.h"
#include "engine/sched.h"
#include "fb/features_fb.h"
#include "fb/labeled_sample_fb.h"
#include "fb/prediction_fb.h"
#include "nodes/knn/knn.h"
#include "nodes/nodes.h"
#include "tests/tlcm_test.h"

/* ---- the script ------------------------------------------------------------- */

enum { FEAT, SMPL, BLOB, JUNK, BARRIER };
enum { SAMPLES, QUERIES };

typedef struct {
	int kind, port;
	uint64_t frame;
	int label;          /* FEAT */
	const char *slabel; /* SMPL */
	size_t dim;
	float v[4];
} item_t;

static const item_t *items;
static size_t nitems;

#define S(f, l, x, y) {FEAT, SAMPLES, f, l, NULL, 2, {x, y}}
#define Q(f, l, x, y) {FEAT, QUERIES, f, l, NULL, 2, {x, y}}
#define L(f, s, x, y) {SMPL, SAMPLES, f, -1, s, 2, {x, y}}
#define WAIT(f) {BARRIER, 0, f, 0, NULL, 0, {0}}
/* A query whose prediction is not checked, and a wait for it: the node
 * may answer it before the samples sent just before it (another ring),
 * but once its prediction is out, those samples are visible to the node
 * and learned before any later query. */
#define SYNC(f) Q(f, -1, 0, 0), WAIT(f)

/* ---- predsink ---------------------------------------------------------------- */

typedef struct {
	uint64_t frame, time;
	char label[64], truth[64], top[8][64];
	bool has_truth;
	float conf, dist[8], mean, feat[4];
	size_t ntop, ndist, nfeat;
} pred_t;

static pred_t preds[256];
static atomic_size_t npreds;
static int nbad_preds;

static const tlcm_port_desc_t sink_in[] = {{"in", "PRED", "predictions", 0},
					   {0}};

static void copy_str(char *dst, size_t cap, const char *s)
{
	snprintf(dst, cap, "%s", s ? s : "(null)");
}

static int sink_process(tlcm_ctx_t *ctx, void *st, int port,
			const tlcm_msg_t *m)
{
	(void)ctx;
	(void)st;
	(void)port;
	const char *why;
	if (tlcm_Prediction_verify_as_root(tlcm_msg_data(m), m->size, &why)) {
		nbad_preds++;
		return 0;
	}
	tlcm_Prediction_table_t t = tlcm_Prediction_as_root(tlcm_msg_data(m));
	size_t i = atomic_load(&npreds);
	if (i == 256)
		return 0;
	pred_t *p = &preds[i];
	memset(p, 0, sizeof *p);
	p->frame = tlcm_Prediction_frame_id(t);
	p->time = tlcm_Prediction_time_ns(t);
	copy_str(p->label, sizeof p->label, tlcm_Prediction_label(t));
	p->has_truth = tlcm_Prediction_truth_is_present(t);
	copy_str(p->truth, sizeof p->truth, tlcm_Prediction_truth(t));
	p->conf = tlcm_Prediction_confidence(t);
	p->mean = tlcm_Prediction_mean_distance(t);
	p->ntop = tlcm_Prediction_top_labels_len(t);
	for (size_t k = 0; k < p->ntop && k < 8; k++)
		copy_str(p->top[k], sizeof p->top[k],
			 tlcm_Prediction_top_labels_at(t, k));
	p->ndist = tlcm_Prediction_top_distances_len(t);
	for (size_t k = 0; k < p->ndist && k < 8; k++)
		p->dist[k] = tlcm_Prediction_top_distances_at(t, k);
	p->nfeat = tlcm_Prediction_features_len(t);
	for (size_t k = 0; k < p->nfeat && k < 4; k++)
		p->feat[k] = tlcm_Prediction_features_at(t, k);
	atomic_store(&npreds, i + 1);
	return 0;
}

static const tlcm_node_type_t predsink_type = {
	.name = "predsink", .doc = "keep predictions (test sink)",
	.inputs = sink_in, .process = sink_process};

static const pred_t *pred_of(uint64_t frame)
{
	size_t n = atomic_load(&npreds);
	for (size_t i = 0; i < n; i++)
		if (preds[i].frame == frame)
			return &preds[i];
	return NULL;
}

/* ---- featsrc ------------------------------------------------------------------ */

typedef struct {
	size_t i;
} src_t;

static const tlcm_port_desc_t src_out[] = {
	{"samples", "*", "labelled samples", 0},
	{"queries", "*", "features to classify", 0},
	{0},
};

static int emit_feat(tlcm_ctx_t *ctx, const item_t *it)
{
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, it->port, &b, 256);
	if (rc)
		return rc;
	tlcm_fbb_ref_t e = tlcm_Features_embedding_create(&b, it->v, it->dim);
	tlcm_Features_start(&b);
	tlcm_Features_add_frame_id(&b, it->frame);
	tlcm_Features_add_time_ns(&b, 1000 + it->frame);
	tlcm_Features_add_embedding(&b, e);
	tlcm_Features_add_label(&b, it->label);
	return tlcm_emit_end(ctx, it->port, &b, tlcm_Features_end(&b),
			     tlcm_Features_IDENTIFIER);
}

static int emit_smpl(tlcm_ctx_t *ctx, const item_t *it)
{
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, it->port, &b, 256);
	if (rc)
		return rc;
	tlcm_fbb_ref_t l = tlcm_fbb_cstring(&b, it->slabel);
	tlcm_fbb_ref_t e = it->dim ? tlcm_LabeledSample_embedding_create(
					     &b, it->v, it->dim) : 0;
	tlcm_fbb_ref_t s = tlcm_fbb_cstring(&b, "test");
	tlcm_LabeledSample_start(&b);
	tlcm_LabeledSample_add_frame_id(&b, it->frame);
	tlcm_LabeledSample_add_label(&b, l);
	if (e)
		tlcm_LabeledSample_add_embedding(&b, e);
	tlcm_LabeledSample_add_source(&b, s);
	return tlcm_emit_end(ctx, it->port, &b, tlcm_LabeledSample_end(&b),
			     tlcm_LabeledSample_IDENTIFIER);
}

static int src_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	src_t *s = st;
	static const uint8_t junk[16] = {9, 9, 9, 9, 1, 2, 3};
	(void)now;
	if (s->i >= nitems)
		return TLCM_ECLOSED;
	const item_t *it = &items[s->i];
	int rc = 0;
	switch (it->kind) {
	case BARRIER:
		if (!pred_of(it->frame)) {
			usleep(200);
			return 0;
		}
		break;
	case FEAT: rc = emit_feat(ctx, it); break;
	case SMPL: rc = emit_smpl(ctx, it); break;
	case BLOB: rc = tlcm_emit(ctx, it->port, "BLOB", junk, 16); break;
	default: rc = tlcm_emit(ctx, it->port, "FEAT", junk, 16); break;
	}
	s->i++;
	return rc;
}

static int src_init(tlcm_ctx_t *ctx, void *st)
{
	(void)st;
	tlcm_set_tick(ctx, 0);
	return 0;
}

static const tlcm_node_type_t featsrc_type = {
	.name = "featsrc", .doc = "scripted features (test source)",
	.outputs = src_out, .state_size = sizeof(src_t), .init = src_init,
	.tick = src_tick};

/* ---- knnwrap: the real node, describe() saved at end of stream ------------- */

static char described[4096];
static size_t describe_len = sizeof described;
static tlcm_node_type_t knnwrap_type;

static int wrap_eos(tlcm_ctx_t *ctx, void *st)
{
	return tlcm_node_knn.describe(ctx, st, described, describe_len);
}

/* ---- running graphs --------------------------------------------------------------- */

static tlcm_registry_t reg;

static int run(const item_t *script, size_t n, const char *params,
	       const char *store, tlcm_run_result_t *res)
{
	char path[] = "/tmp/tlcm-knn-XXXXXX.yaml", yaml[2048];
	items = script;
	nitems = n;
	atomic_store(&npreds, 0);
	nbad_preds = 0;
	described[0] = 0;
	snprintf(yaml, sizeof yaml,
		 "graph: knn\n"
		 "settings: { workers: 2, introspect: 'off'%s%s }\n"
		 "nodes:\n"
		 "  src: { type: featsrc }\n"
		 "  knn: { type: knnwrap, on_error: skip, params: { %s } }\n"
		 "  out: { type: predsink }\n"
		 "edges:\n"
		 "  - { from: src.samples, to: knn.samples }\n"
		 "  - { from: src.queries, to: knn.in }\n"
		 "  - { from: knn.out, to: out.in }\n",
		 store ? ", store: " : "", store ? store : "", params);
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
	CHECK_INT(nbad_preds, 0);
	return rc;
}

/* A run that must succeed without node errors. */
static void run_ok(const item_t *script, size_t n, const char *params,
		   const char *store)
{
	tlcm_run_result_t res;
	CHECK_INT(run(script, n, params, store, &res), 0);
	CHECK_STR(res.why, "");
	CHECK_UINT(res.nodes ? res.nodes[1].errors : 1, 0);
	tlcm_run_result_fini(&res);
}

#define RUN_OK(script, params, store)                                         \
	run_ok(script, sizeof script / sizeof script[0], params, store)

static void check_pred(uint64_t frame, const char *label, float conf)
{
	const pred_t *p = pred_of(frame);
	CHECK(p != NULL);
	if (!p) {
		fprintf(stderr, "  no prediction for frame %llu\n",
			(unsigned long long)frame);
		return;
	}
	CHECK_STR(p->label, label);
	CHECK(fabsf(p->conf - conf) < 1e-6f);
	CHECK_UINT(p->time, 1000 + frame);
}

/* ---- tests ---------------------------------------------------------------------- */

#define NAMES "class_names: [T-shirt/top, Trouser, Pullover]"

static void predictions(void)
{
	static const item_t script[] = {
		Q(100, 0, 0, 0), /* nothing learned yet */
		WAIT(100),
		S(1, 0, 0, 0), S(2, 0, 1, 0), S(3, 0, 0, 1),
		S(4, 1, 10, 10), S(5, 1, 11, 10),
		S(6, 7, 20, 20), /* beyond class_names: "7" */
		SYNC(900), Q(101, -1, 0, 0),
		Q(102, 0, 0.5f, 0), Q(103, 1, 10, 9), Q(104, 7, 19, 20),
		Q(105, 2, 6, 6),
	};
	RUN_OK(script, "k: 3, carry_features: true, " NAMES, NULL);
	CHECK_UINT(atomic_load(&npreds), 7);
	const pred_t *p = pred_of(100);
	check_pred(100, "", 0);
	if (p) {
		CHECK_UINT(p->ntop, 0);
		CHECK_UINT(p->ndist, 0);
		CHECK_STR(p->truth, "T-shirt/top");
		CHECK_UINT(p->nfeat, 2);
	}
	/* (0,0): "T-shirt/top" at 0, 1, 1 */
	check_pred(101, "T-shirt/top", 1);
	p = pred_of(101);
	if (p) {
		CHECK(!p->has_truth);
		CHECK_UINT(p->ntop, 3);
		CHECK_STR(p->top[0], "T-shirt/top");
		/* equal distances: the newer sample (3) first; same label */
		CHECK_DBL(p->dist[0], 0);
		CHECK_DBL(p->dist[1], 1);
		CHECK_DBL(p->dist[2], 1);
		CHECK(fabsf(p->mean - 2.0f / 3) < 1e-6f);
		CHECK_UINT(p->nfeat, 2);
		CHECK(p->feat[0] == 0 && p->feat[1] == 0);
	}
	check_pred(102, "T-shirt/top", 1);
	/* (10,9): Trouser twice, then a T-shirt: 2/3 */
	check_pred(103, "Trouser", 2.0f / 3);
	p = pred_of(103);
	if (p) {
		CHECK_STR(p->truth, "Trouser");
		CHECK_STR(p->top[0], "Trouser");
		CHECK_STR(p->top[2], "T-shirt/top");
		CHECK_DBL(p->dist[0], 1);
		CHECK_DBL(p->dist[1], sqrtf(2));
		CHECK_DBL(p->feat[1], 9);
	}
	/* (19,20): "7" is nearest, but Trouser has two of three votes */
	check_pred(104, "Trouser", 2.0f / 3);
	p = pred_of(104);
	if (p) {
		CHECK_STR(p->truth, "7");
		CHECK_STR(p->top[0], "7");
		CHECK_STR(p->top[1], "Trouser");
	}
	p = pred_of(105);
	if (p)
		CHECK_STR(p->truth, "Pullover");

	/* describe() at the end: samples per class, counters */
	cJSON *j = cJSON_Parse(described);
	CHECK(j != NULL);
	if (!j)
		fprintf(stderr, "  not JSON: %s\n", described);
	const cJSON *cl = cJSON_GetObjectItemCaseSensitive(j, "classes");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(cl, "T-shirt/top");
	CHECK(cJSON_IsNumber(t) && t->valueint == 3);
	t = cJSON_GetObjectItemCaseSensitive(cl, "7");
	CHECK(cJSON_IsNumber(t) && t->valueint == 1);
	t = cJSON_GetObjectItemCaseSensitive(j, "samples");
	CHECK(cJSON_IsNumber(t) && t->valueint == 6);
	t = cJSON_GetObjectItemCaseSensitive(j, "queries");
	CHECK(cJSON_IsNumber(t) && t->valueint == 6); /* 100 was not one */
	t = cJSON_GetObjectItemCaseSensitive(j, "evictions");
	CHECK(cJSON_IsNumber(t) && t->valueint == 0);
	cJSON_Delete(j);
}

static void min_samples_and_eviction(void)
{
	static const item_t script[] = {
		S(1, 0, 0, 0), S(2, 0, 1, 0),
		Q(100, -1, 0, 0), WAIT(100), /* 2 < min_samples */
		S(3, 1, 5, 5), S(4, 1, 6, 5), /* full at 3: 1 evicted */
		SYNC(900), Q(101, -1, 0, 0),
	};
	RUN_OK(script, "k: 1, min_samples: 3, max_samples: 3", NULL);
	check_pred(100, "", 0);
	/* (0,0): sample 2 at distance 1 */
	check_pred(101, "0", 1);
	const pred_t *p = pred_of(101);
	if (p)
		CHECK_DBL(p->dist[0], 1);
	cJSON *j = cJSON_Parse(described);
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "evictions");
	CHECK(cJSON_IsNumber(t) && t->valueint == 1);
	cJSON_Delete(j);
}

static void string_labels(void)
{
	static const item_t script[] = {
		L(1, "new_1", 0, 0), L(2, "new_1", 1, 0),
		L(3, "new_2", 10, 10),
		SYNC(900), Q(100, -1, 0.2f, 0), Q(101, -1, 10, 10),
		WAIT(101),
		/* ground truth: frame 1 and 2 are "Bag" (2 with no
		 * embedding: a relabel only), frame 3 sent again */
		L(1, "Bag", 0, 0), {SMPL, SAMPLES, 2, -1, "Bag", 0, {0}},
		L(3, "Sandal", 10, 10),
		SYNC(901), Q(102, -1, 0.2f, 0), Q(103, -1, 10, 10),
	};
	RUN_OK(script, "k: 2, weighting: distance", NULL);
	check_pred(100, "new_1", 1);
	check_pred(101, "new_2", 1);
	check_pred(102, "Bag", 1);
	/* k 2: Sandal at 0 outweighs Bag at ~13.5 */
	const pred_t *p = pred_of(103);
	CHECK(p && !strcmp(p->label, "Sandal") && p->conf > 0.99f);
	cJSON *j = cJSON_Parse(described);
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "relabels");
	CHECK(cJSON_IsNumber(t) && t->valueint == 3);
	t = cJSON_GetObjectItemCaseSensitive(j, "samples");
	CHECK(cJSON_IsNumber(t) && t->valueint == 3);
	const cJSON *cl = cJSON_GetObjectItemCaseSensitive(j, "classes");
	CHECK(cJSON_GetArraySize(cl) == 2); /* new_1, new_2 are gone */
	cJSON_Delete(j);
}

/* Samples learned in run 1 are there in run 2 (settings.store). */
static void kept_across_runs(const char *dir)
{
	char store[256];
	snprintf(store, sizeof store, "%s/store", dir);
	static const item_t learn[] = {
		S(1, 0, 0, 0), S(2, 0, 1, 1), L(3, "new_1", 10, 10),
		L(4, "new_1", 11, 10), SYNC(900), Q(100, -1, 10, 10),
	};
	RUN_OK(learn, "k: 2", store);
	check_pred(100, "new_1", 1);
	static const item_t ask[] = {
		Q(101, -1, 0, 0), Q(102, -1, 11, 11), WAIT(102),
	};
	RUN_OK(ask, "k: 2", store);
	check_pred(101, "0", 1);
	check_pred(102, "new_1", 1);
	const pred_t *p = pred_of(102);
	if (p)
		CHECK_DBL(p->dist[0], 1);
	cJSON *j = cJSON_Parse(described);
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "samples");
	CHECK(cJSON_IsNumber(t) && t->valueint == 4);
	t = cJSON_GetObjectItemCaseSensitive(j, "queries");
	CHECK(cJSON_IsNumber(t) && t->valueint == 4); /* counters kept */
	cJSON_Delete(j);

	/* replaying the warm-up (same frame ids) does not duplicate */
	RUN_OK(learn, "k: 2", store);
	j = cJSON_Parse(described);
	t = cJSON_GetObjectItemCaseSensitive(j, "samples");
	CHECK(cJSON_IsNumber(t) && t->valueint == 4);
	cJSON_Delete(j);

	/* quantize switched on: the float samples are converted */
	RUN_OK(ask, "k: 2, quantize: true", store);
	check_pred(101, "0", 1);
	check_pred(102, "new_1", 1);
	j = cJSON_Parse(described);
	t = cJSON_GetObjectItemCaseSensitive(j, "quantized");
	CHECK(cJSON_IsTrue(t));
	cJSON_Delete(j);
	/* ... and back, from int8 codes */
	RUN_OK(ask, "k: 2", store);
	check_pred(101, "0", 1);
	check_pred(102, "new_1", 1);

	/* a dim that no longer fits: the state is refused, a fresh start */
	static const item_t ask3[] = {
		{FEAT, QUERIES, 103, -1, NULL, 3, {0, 0, 0}}, WAIT(103),
	};
	RUN_OK(ask3, "k: 2, dim: 3", store);
	check_pred(103, "", 0);
}

static void bad_input(const char *dir)
{
	char logpath[256];
	snprintf(logpath, sizeof logpath, "%s/log.txt", dir);
	static const item_t script[] = {
		S(1, 0, 0, 0), S(2, 1, 5, 5),
		SYNC(900), Q(100, -1, 0, 0),
		{BLOB, QUERIES, 0, 0, NULL, 0, {0}},
		{JUNK, QUERIES, 0, 0, NULL, 0, {0}},
		{FEAT, QUERIES, 777, -1, NULL, 3, {1, 2, 3}},
		{FEAT, QUERIES, 778, -1, NULL, 2, {NAN, 0}},
		{FEAT, QUERIES, 779, -1, NULL, 0, {0}},
		{FEAT, QUERIES, 790, -1, NULL, 1, {0}},
		{FEAT, QUERIES, 791, -1, NULL, 2, {1e16f, 0}},
		Q(101, -1, 5, 5), WAIT(101),
	};
	fflush(stderr);
	int saved = dup(2), fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC,
				      0600);
	dup2(fd, 2);
	close(fd);
	int lvl = tlcm_log_level;
	tlcm_log_level = TLCM_LOG_WARN;
	tlcm_run_result_t res;
	int rc = run(script, sizeof script / sizeof script[0], "k: 1", NULL,
		     &res);
	tlcm_log_level = lvl;
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	CHECK_INT(rc, 0); /* on_error: skip: the graph ran on */
	CHECK_UINT(res.nodes ? res.nodes[1].errors : 0, 7);
	tlcm_run_result_fini(&res);
	check_pred(100, "0", 1);
	check_pred(101, "1", 1);
	CHECK_UINT(atomic_load(&npreds), 3);
	size_t len;
	unsigned char *log = tlcm_test_read_file(logpath, &len);
	char *text = realloc(log, len + 1);
	text[len] = 0;
	CHECK_CONTAINS(text, "[knn] in: expected Features (FEAT), got a 'BLOB'"
		       " message");
	CHECK_CONTAINS(text, "[knn] in: invalid Features");
	CHECK_CONTAINS(text, "[knn] in: frame 777: embedding has 3 values, "
		       "the index holds 2-value samples");
	CHECK_CONTAINS(text, "[knn] in: frame 778: embedding[0] = nan");
	CHECK_CONTAINS(text, "[knn] in: frame 779: no embedding (5 bad so "
		       "far)");
	/* the first five are logged, then one in a thousand */
	CHECK(!strstr(text, "frame 790"));
	CHECK(!strstr(text, "frame 791"));
	CHECK_CONTAINS(text, "[knn] process: bad message skipped");
	free(text);
	cJSON *j = cJSON_Parse(described);
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "bad");
	CHECK(cJSON_IsNumber(t) && t->valueint == 7);
	cJSON_Delete(j);
}

/* The rest of the bad input, logged: nothing is rate-limited here. */
static void bad_samples_logged(const char *dir)
{
	char logpath[256];
	snprintf(logpath, sizeof logpath, "%s/log2.txt", dir);
	static const item_t script[] = {
		S(1, 0, 0, 0),
		{FEAT, SAMPLES, 780, -1, NULL, 2, {1, 1}},
		{SMPL, SAMPLES, 781, -1, "", 2, {1, 1}},
		{SMPL, SAMPLES, 782, -1, "x", 0, {0}},
		{BLOB, SAMPLES, 0, 0, NULL, 0, {0}},
		{FEAT, SAMPLES, 783, 1, NULL, 4, {1, 1, 1, 1}},
		Q(101, -1, 5, 5), WAIT(101),
	};
	fflush(stderr);
	int saved = dup(2), fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC,
				      0600);
	dup2(fd, 2);
	close(fd);
	int lvl = tlcm_log_level;
	tlcm_log_level = TLCM_LOG_WARN;
	tlcm_run_result_t res;
	int rc = run(script, sizeof script / sizeof script[0], "k: 1", NULL,
		     &res);
	tlcm_log_level = lvl;
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	CHECK_INT(rc, 0);
	CHECK_UINT(res.nodes ? res.nodes[1].errors : 0, 5);
	tlcm_run_result_fini(&res);
	size_t len;
	unsigned char *log = tlcm_test_read_file(logpath, &len);
	char *text = realloc(log, len + 1);
	text[len] = 0;
	CHECK_CONTAINS(text, "samples: frame 780: Features without a label");
	CHECK_CONTAINS(text, "samples: frame 781: label must be 1..255 bytes");
	CHECK_CONTAINS(text, "samples: frame 782: no embedding, and no stored "
		       "sample of that frame to relabel");
	CHECK_CONTAINS(text, "samples: expected Features (FEAT) or "
		       "LabeledSample (SMPL), got a 'BLOB' message");
	CHECK_CONTAINS(text, "samples: frame 783: embedding has 4 values");
	free(text);
}

/* describe()'s figure `name`, or -1. */
static int described_int(const char *name)
{
	cJSON *j = cJSON_Parse(described);
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, name);
	int v = cJSON_IsNumber(t) ? t->valueint : -1;
	cJSON_Delete(j);
	return v;
}

/* learn_first: the warm-up set and the queries on one edge, in order.
 * No barriers: the run drains before it ends, and a regression fails
 * the checks instead of waiting for a prediction that never comes. */
static void learn_first(const char *dir)
{
	static const item_t script[] = {
		Q(1, 0, 0, 0),
		Q(2, -1, 5, 5), /* unlabelled while learning: an error */
		Q(3, 0, 1, 0), Q(4, 1, 10, 10), Q(5, 1, 11, 10),
		/* no barrier: the same edge keeps the order */
		Q(100, -1, 0.2f, 0), Q(101, -1, 10, 10), Q(102, 1, 10, 11),
	};
	tlcm_run_result_t res;
	CHECK_INT(run(script, sizeof script / sizeof script[0],
		      "k: 1, learn_first: 4", NULL, &res), 0);
	CHECK_UINT(res.nodes ? res.nodes[1].errors : 0, 1);
	tlcm_run_result_fini(&res);
	CHECK_UINT(atomic_load(&npreds), 3);
	for (uint64_t f = 1; f <= 5; f++)
		CHECK(pred_of(f) == NULL);
	check_pred(100, "0", 1);
	check_pred(101, "1", 1);
	check_pred(102, "1", 1); /* labelled, but after the warm-up */
	const pred_t *p = pred_of(102);
	if (p)
		CHECK_STR(p->truth, "1");
	CHECK_INT(described_int("samples"), 4);
	CHECK_INT(described_int("learn_first"), 4);
	CHECK_INT(described_int("learned_in"), 4);
	CHECK_INT(described_int("bad"), 1);

	/* through a restart: two of three learned in the first run, the
	 * third in the second, then classifying; a third run learns
	 * nothing again */
	char store[256];
	snprintf(store, sizeof store, "%s/store-lf", dir);
	static const item_t part1[] = {Q(1, 0, 0, 0), Q(2, 1, 10, 10)};
	RUN_OK(part1, "k: 1, learn_first: 3", store);
	CHECK_UINT(atomic_load(&npreds), 0);
	CHECK_INT(described_int("learned_in"), 2);
	static const item_t part2[] = {
		Q(3, 1, 11, 10), Q(100, -1, 0, 1), Q(101, -1, 12, 10),
	};
	RUN_OK(part2, "k: 1, learn_first: 3", store);
	CHECK_UINT(atomic_load(&npreds), 2);
	CHECK(pred_of(3) == NULL);
	check_pred(100, "0", 1);
	check_pred(101, "1", 1);
	CHECK_INT(described_int("samples"), 3);
	CHECK_INT(described_int("learned_in"), 3);
	static const item_t part3[] = {
		Q(4, 0, 10, 10), Q(102, -1, 0, 0),
	};
	RUN_OK(part3, "k: 1, learn_first: 3", store);
	CHECK_UINT(atomic_load(&npreds), 2);
	check_pred(4, "1", 1); /* classified, not learned */
	check_pred(102, "0", 1);
	CHECK_INT(described_int("samples"), 3);
}

/* describe() with little room: still JSON, classes cut short. */
static void describe_small(void)
{
	static const item_t script[] = {
		L(1, "a-rather-long-label-number-one", 0, 0),
		L(2, "a-rather-long-label-number-two", 1, 0),
		L(3, "quote\"and\\backslash", 2, 0),
		SYNC(900),
	};
	describe_len = 280;
	RUN_OK(script, "k: 1", NULL);
	describe_len = sizeof described;
	cJSON *j = cJSON_Parse(described);
	CHECK(j != NULL);
	if (!j)
		fprintf(stderr, "  not JSON: %s\n", described);
	CHECK(strlen(described) < 280);
	CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
		j, "classes_truncated")));
	cJSON_Delete(j);
	RUN_OK(script, "k: 1", NULL);
	j = cJSON_Parse(described);
	const cJSON *cl = cJSON_GetObjectItemCaseSensitive(j, "classes");
	CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(
		cl, "quote\"and\\backslash")));
	cJSON_Delete(j);
}

int main(void)
{
	tlcm_log_level = TLCM_LOG_ERROR;
	tlcm_builtin_nodes(&reg);
	knnwrap_type = tlcm_node_knn;
	knnwrap_type.name = "knnwrap";
	knnwrap_type.eos = wrap_eos;
	tlcm_registry_add(&reg, &knnwrap_type);
	tlcm_registry_add(&reg, &featsrc_type);
	tlcm_registry_add(&reg, &predsink_type);
	char dir[] = "/tmp/tlcm-knn-XXXXXX", cmd[96];
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	predictions();
	min_samples_and_eviction();
	string_labels();
	kept_across_runs(dir);
	bad_input(dir);
	bad_samples_logged(dir);
	describe_small();
	learn_first(dir);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", dir);
	tlcm_registry_fini(&reg);
	return tlcm_test_done();
}
