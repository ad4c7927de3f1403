/* knn.c — node `knn`: classify Features with a k-nearest-neighbour index
 * (index.h) and learn from labelled samples.
 *
 * `in` takes Features (FEAT) and emits one Prediction (PRED) each: label,
 * confidence, the k neighbours' labels and distances, their mean, the
 * frame's ground truth as `truth`, frame id and time (and the embedding
 * with carry_features). Below min_samples stored samples the label is ""
 * and the confidence 0. `samples` takes Features with label >= 0 (class id,
 * named through class_names) or LabeledSample (SMPL, any string label; an
 * empty embedding only relabels): a sample whose frame id is already
 * stored relabels it, others are added (evicting when full). Messages the
 * node cannot use are counted, logged with the frame id (the first five,
 * then one in a thousand) and answered with TLCM_EBADMSG, so the node's
 * on_error policy decides (`skip` runs on). With learn_first N, the first
 * N labelled Features on `in` are learned instead of classified: a
 * warm-up set sent down the same edge as the frames after it is in the
 * index before the first query. The state (every sample, the label
 * table, the counters, how many of the N were learned) is snapshotted to
 * the engine store.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/log.h"
#include "fb/features_fb.h"
#include "fb/knn_state_fb.h"
#include "fb/labeled_sample_fb.h"
#include "fb/prediction_fb.h"
#include "nodes/knn/index.h"
#include "nodes/knn/knn.h"

typedef struct {
	tlcm_knn_t *ix;
	tlcm_knn_opts_t o;
	const char *const *class_names; /* the param's list (stable) */
	size_t nclass, min_samples;
	bool carry;
	uint64_t bad, predictions;
	uint64_t learn_first, learned_in; /* param; of it learned so far */
} knn_node_t;

static const tlcm_port_desc_t inputs[] = {
	{"in", "FEAT", "features to classify (schemas/features.fbs)", 0},
	{"samples", "FEAT|SMPL", "labelled samples to learn: Features with "
	 "label >= 0, or LabeledSample (schemas/labeled_sample.fbs)",
	 TLCM_PORT_OPTIONAL},
	{0},
};

static const tlcm_port_desc_t outputs[] = {
	{"out", "PRED", "one prediction per input (schemas/prediction.fbs)",
	 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"k", TLCM_P_INT, "5", "neighbours that vote", 1, TLCM_KNN_MAX_K, NULL,
	 TLCM_PARAM_RUNTIME},
	{"metric", TLCM_P_ENUM, "euclidean", "distance", 0, 0,
	 "euclidean|cosine|manhattan", 0},
	{"weighting", TLCM_P_ENUM, "uniform", "vote weight: 1, or "
	 "1 / (distance + 1e-6)", 0, 0, "uniform|distance", TLCM_PARAM_RUNTIME},
	{"max_samples", TLCM_P_INT, "1000", "samples kept; then each new one "
	 "evicts one", 1, TLCM_KNN_MAX_SAMPLES, NULL, 0},
	{"eviction", TLCM_P_ENUM, "fifo", "which sample a new one replaces "
	 "when full", 0, 0, "fifo|class_balanced|least_recently_useful", 0},
	{"quantize", TLCM_P_BOOL, "false", "store samples as int8 codes with a "
	 "per-sample scale (4x smaller)", 0, 0, NULL, 0},
	{"dim", TLCM_P_INT, "0", "embedding length; 0: from the first sample",
	 0, TLCM_KNN_MAX_DIM, NULL, 0},
	{"min_samples", TLCM_P_INT, "1", "below this many samples, predict "
	 "label \"\" with confidence 0", 0, TLCM_KNN_MAX_SAMPLES, NULL,
	 TLCM_PARAM_RUNTIME},
	{"carry_features", TLCM_P_BOOL, "false", "copy the embedding into "
	 "Prediction.features", 0, 0, NULL, TLCM_PARAM_RUNTIME},
	{"class_names", TLCM_P_LIST, "", "names of class ids 0, 1, ... (e.g. "
	 "Fashion-MNIST's); empty or beyond the list: the id as a number",
	 0, 0, NULL, 0},
	{"learn_first", TLCM_P_INT, "0", "learn the first N labelled Features "
	 "on `in` as samples (nothing emitted for them) before classifying; "
	 "an unlabelled one among them is an error", 0, 1e12, NULL, 0},
	{0},
};

static const char *const metrics[] = {"euclidean", "cosine", "manhattan"};

static int pick(const char *s, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (s && !strcmp(s, names[i]))
			return i;
	return 0;
}

static void read_runtime(tlcm_ctx_t *ctx, knn_node_t *n)
{
	n->o.k = (unsigned)tlcm_param_int(ctx, "k");
	n->o.weighting = strcmp(tlcm_param_str(ctx, "weighting"), "distance")
				 ? TLCM_KNN_UNIFORM : TLCM_KNN_INVERSE;
	n->min_samples = (size_t)tlcm_param_int(ctx, "min_samples");
	n->carry = tlcm_param_bool(ctx, "carry_features");
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	static const char *const evictions[] = {
		"fifo", "class_balanced", "least_recently_useful"};
	knn_node_t *n = st;
	read_runtime(ctx, n);
	n->o.metric = (tlcm_knn_metric_t)pick(tlcm_param_str(ctx, "metric"),
					       metrics, 3);
	n->o.eviction = (tlcm_knn_eviction_t)pick(
		tlcm_param_str(ctx, "eviction"), evictions, 3);
	n->o.max_samples = (size_t)tlcm_param_int(ctx, "max_samples");
	n->o.quantize = tlcm_param_bool(ctx, "quantize");
	n->o.dim = (size_t)tlcm_param_int(ctx, "dim");
	n->learn_first = (uint64_t)tlcm_param_int(ctx, "learn_first");
	const char *const *names = NULL;
	n->nclass = tlcm_param_list(ctx, "class_names", &names);
	n->class_names = names;
	for (size_t i = 0; i < n->nclass; i++)
		if (!names[i][0] || strlen(names[i]) > TLCM_KNN_MAX_LABEL) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "class_names[%zu]: "
				      "expected 1..%d bytes", i,
				      TLCM_KNN_MAX_LABEL);
			return TLCM_EINVAL;
		}
	int rc = tlcm_knn_new(&n->ix, &n->o);
	if (rc)
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot create the index: %s",
			      tlcm_strerror(rc));
	return rc;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	knn_node_t *n = st;
	(void)ctx;
	tlcm_knn_free(n->ix);
	n->ix = NULL;
}

static int param_changed(tlcm_ctx_t *ctx, void *st, const char *name)
{
	knn_node_t *n = st;
	(void)name;
	read_runtime(ctx, n);
	tlcm_knn_set_weighting(n->ix, n->o.weighting);
	return tlcm_knn_set_k(n->ix, n->o.k);
}

/* The label of class id c: its name, or the number (in buf). */
static const char *class_label(const knn_node_t *n, int32_t c, char *buf,
			       size_t len)
{
	if (c >= 0 && (size_t)c < n->nclass)
		return n->class_names[c];
	snprintf(buf, len, "%" PRId32, c);
	return buf;
}

/* Check an embedding against the index: NULL when fine, else why. */
static const char *check_embedding(const knn_node_t *n, const float *e,
				   size_t len, char *why, size_t cap)
{
	size_t dim = tlcm_knn_opts(n->ix)->dim;
	if (!len) {
		snprintf(why, cap, "no embedding");
	} else if (dim && len != dim) {
		snprintf(why, cap, "embedding has %zu values, the index holds "
			 "%zu-value samples", len, dim);
	} else if (len > TLCM_KNN_MAX_DIM) {
		snprintf(why, cap, "embedding has %zu values, more than %d",
			 len, TLCM_KNN_MAX_DIM);
	} else {
		size_t i = tlcm_knn_bad_value(e, len);
		if (i == len)
			return NULL;
		snprintf(why, cap, "embedding[%zu] = %g (expected finite, "
			 "|x| <= 1e15)", i, (double)e[i]);
	}
	return why;
}

/* ---- classify ------------------------------------------------------------- */

static int emit_prediction(tlcm_ctx_t *ctx, knn_node_t *n,
			   tlcm_Features_table_t f, const float *e,
			   size_t len, const tlcm_knn_result_t *r)
{
	tlcm_knn_t *ix = n->ix;
	char tbuf[16];
	int32_t t = tlcm_Features_label(f);
	const char *truth = t >= 0 ? class_label(n, t, tbuf, sizeof tbuf)
				   : NULL;
	const char *label = r->n ? tlcm_knn_label_name(ix, r->winner) : "";
	size_t max = 256 + strlen(label) + (truth ? strlen(truth) : 0) +
		     r->n * 16 + (n->carry ? len * 4 : 0);
	for (size_t i = 0; i < r->n; i++)
		max += strlen(tlcm_knn_label_name(ix, r->label[i]));
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, 0, &b, max);
	if (rc)
		return rc;
	/* one string per distinct label; top_labels may share them */
	tlcm_fbb_ref_t refs[TLCM_KNN_MAX_K], lab = 0, tr = 0, td = 0, tl = 0,
		       fe = 0;
	for (size_t i = 0; i < r->n; i++) {
		size_t j = 0;
		while (j < i && r->label[j] != r->label[i])
			j++;
		refs[i] = j < i ? refs[j] : tlcm_fbb_cstring(
			&b, tlcm_knn_label_name(ix, r->label[i]));
		if (r->label[i] == r->winner && !lab)
			lab = refs[i];
	}
	if (!lab)
		lab = tlcm_fbb_cstring(&b, label);
	if (truth)
		tr = tlcm_fbb_cstring(&b, truth);
	if (r->n) {
		tl = tlcm_Prediction_top_labels_create(&b, refs, r->n);
		td = tlcm_Prediction_top_distances_create(&b, r->dist, r->n);
	}
	if (n->carry)
		fe = tlcm_Prediction_features_create(&b, e, len);
	tlcm_Prediction_start(&b);
	tlcm_Prediction_add_frame_id(&b, tlcm_Features_frame_id(f));
	tlcm_Prediction_add_time_ns(&b, tlcm_Features_time_ns(f));
	tlcm_Prediction_add_label(&b, lab);
	tlcm_Prediction_add_confidence(&b, r->confidence);
	if (r->n) {
		tlcm_Prediction_add_top_labels(&b, tl);
		tlcm_Prediction_add_top_distances(&b, td);
		tlcm_Prediction_add_mean_distance(&b, r->mean_distance);
	}
	if (truth)
		tlcm_Prediction_add_truth(&b, tr);
	if (n->carry)
		tlcm_Prediction_add_features(&b, fe);
	float typ = r->n ? tlcm_knn_typical(n->ix, r->winner) : 0;
	if (typ > 0)
		tlcm_Prediction_add_novelty(&b, r->mean_distance / typ);
	/* verified once here for all the port's consumers (often many:
	 * detectors, quarantine, adapter), who then skip it */
	rc = tlcm_emit_end_checked(ctx, 0, &b, tlcm_Prediction_end(&b),
				   tlcm_Prediction_IDENTIFIER,
				   tlcm_Prediction_verify_as_root);
	if (!rc)
		n->predictions++;
	return rc == TLCM_EAGAIN ? 0 : rc; /* a drop is counted by the edge */
}

static int learn_one(tlcm_ctx_t *ctx, knn_node_t *n, const char *port,
		     uint64_t frame, const char *label, const float *e,
		     size_t len, const char *source);

/* One of the first learn_first Features on `in`: learned, not classified.
 * Every labelled one counts toward learn_first, also one the index
 * refuses, so the phase ends where the warm-up set does. */
static int learn_in(tlcm_ctx_t *ctx, knn_node_t *n, tlcm_Features_table_t f)
{
	uint64_t frame = tlcm_Features_frame_id(f);
	int32_t c = tlcm_Features_label(f);
	char lbuf[16];
	if (c < 0)
		return tlcm_bad_input(ctx, &n->bad, "in: frame %" PRIu64 ": "
				      "Features without a label (label %"
				      PRId32 ") while learning the first %"
				      PRIu64 " (learn_first; %" PRIu64
				      " learned)", frame, c, n->learn_first,
				      n->learned_in);
	if (++n->learned_in == n->learn_first)
		tlcm_node_log(ctx, TLCM_LOG_INFO, "learned the first %" PRIu64
			      " Features on in (learn_first); classifying "
			      "from frame %" PRIu64 " on", n->learn_first,
			      frame);
	return learn_one(ctx, n, "in", frame,
			 class_label(n, c, lbuf, sizeof lbuf),
			 tlcm_Features_embedding(f),
			 tlcm_Features_embedding_len(f), NULL);
}

static int classify(tlcm_ctx_t *ctx, knn_node_t *n, const tlcm_msg_t *m)
{
	const void *buf = tlcm_msg_data(m);
	const char *vwhy;
	char t[5], why[160];
	if (memcmp(m->type, tlcm_Features_IDENTIFIER, 4)) {
		tlcm_msg_type_str(m, t);
		return tlcm_bad_input(ctx, &n->bad, "in: expected Features (FEAT), got a '%s' "
			   "message", t);
	}
	if (tlcm_Features_verify_as_root(buf, m->size, &vwhy))
		return tlcm_bad_input(ctx, &n->bad, "in: invalid Features: %s", vwhy);
	tlcm_Features_table_t f = tlcm_Features_as_root(buf);
	if (n->learned_in < n->learn_first)
		return learn_in(ctx, n, f);
	const float *e = tlcm_Features_embedding(f);
	size_t len = tlcm_Features_embedding_len(f);
	if (check_embedding(n, e, len, why, sizeof why))
		return tlcm_bad_input(ctx, &n->bad, "in: frame %" PRIu64 ": %s",
			   tlcm_Features_frame_id(f), why);
	tlcm_knn_result_t r = {0};
	if (tlcm_knn_size(n->ix) >= n->min_samples &&
	    tlcm_knn_size(n->ix) > 0) {
		int rc = tlcm_knn_query(n->ix, e, len, &r);
		if (rc)
			return tlcm_bad_input(ctx, &n->bad, "in: frame %" PRIu64 ": query "
				   "failed: %s", tlcm_Features_frame_id(f),
				   tlcm_strerror(rc));
	}
	return emit_prediction(ctx, n, f, e, len, &r);
}

/* ---- learn ------------------------------------------------------------------ */

/* Learn one sample that arrived on `port` (named in messages). */
static int learn_one(tlcm_ctx_t *ctx, knn_node_t *n, const char *port,
		     uint64_t frame, const char *label, const float *e,
		     size_t len, const char *source)
{
	char why[160];
	if (!label || !label[0] || strlen(label) > TLCM_KNN_MAX_LABEL)
		return tlcm_bad_input(ctx, &n->bad, "%s: frame %" PRIu64
				      ": label must be 1..%d bytes", port,
				      frame, TLCM_KNN_MAX_LABEL);
	int rc;
	if (!len && frame) { /* relabel only */
		rc = tlcm_knn_relabel(n->ix, frame, label);
		if (rc == 0)
			return tlcm_bad_input(ctx, &n->bad, "%s: frame %"
					      PRIu64 ": no embedding, and no "
					      "stored sample of that frame to "
					      "relabel", port, frame);
	} else {
		if (check_embedding(n, e, len, why, sizeof why))
			return tlcm_bad_input(ctx, &n->bad, "%s: frame %"
					      PRIu64 ": %s", port, frame, why);
		rc = tlcm_knn_add(n->ix, e, len, label, frame);
	}
	if (rc == TLCM_ETOOBIG)
		return tlcm_bad_input(ctx, &n->bad, "%s: frame %" PRIu64
				      ": more than %d distinct labels", port,
				      frame, TLCM_KNN_MAX_LABELS);
	if (rc < 0)
		return tlcm_bad_input(ctx, &n->bad, "%s: frame %" PRIu64
				      ": %s", port, frame, tlcm_strerror(rc));
	if (rc > 0)
		tlcm_node_log(ctx, TLCM_LOG_DEBUG, "frame %" PRIu64 " relabelled"
			      " '%s'%s%s", frame, label, source ? " by " : "",
			      source ? source : "");
	return 0;
}

static int learn(tlcm_ctx_t *ctx, knn_node_t *n, const tlcm_msg_t *m)
{
	const void *buf = tlcm_msg_data(m);
	const char *vwhy;
	char t[5], lbuf[16];
	if (!memcmp(m->type, tlcm_Features_IDENTIFIER, 4)) {
		if (tlcm_Features_verify_as_root(buf, m->size, &vwhy))
			return tlcm_bad_input(ctx, &n->bad, "samples: invalid Features: %s",
				   vwhy);
		tlcm_Features_table_t f = tlcm_Features_as_root(buf);
		uint64_t frame = tlcm_Features_frame_id(f);
		int32_t c = tlcm_Features_label(f);
		if (c < 0)
			return tlcm_bad_input(ctx, &n->bad, "samples: frame %" PRIu64 ": "
				   "Features without a label (label %" PRId32
				   ")", frame, c);
		return learn_one(ctx, n, "samples", frame,
				 class_label(n, c, lbuf, sizeof lbuf),
				 tlcm_Features_embedding(f),
				 tlcm_Features_embedding_len(f), NULL);
	}
	if (!memcmp(m->type, tlcm_LabeledSample_IDENTIFIER, 4)) {
		if (tlcm_LabeledSample_verify_as_root(buf, m->size, &vwhy))
			return tlcm_bad_input(ctx, &n->bad, "samples: invalid LabeledSample: "
				   "%s", vwhy);
		tlcm_LabeledSample_table_t s = tlcm_LabeledSample_as_root(buf);
		const char *label = tlcm_LabeledSample_label(s);
		if (strlen(label) != tlcm_LabeledSample_label_len(s))
			label = NULL; /* a NUL inside */
		return learn_one(ctx, n, "samples",
				 tlcm_LabeledSample_frame_id(s), label,
				 tlcm_LabeledSample_embedding(s),
				 tlcm_LabeledSample_embedding_len(s),
				 tlcm_LabeledSample_source(s));
	}
	tlcm_msg_type_str(m, t);
	return tlcm_bad_input(ctx, &n->bad, "samples: expected Features (FEAT) or "
		   "LabeledSample (SMPL), got a '%s' message", t);
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	knn_node_t *n = st;
	return port == 0 ? classify(ctx, n, m) : learn(ctx, n, m);
}

/* ---- state ------------------------------------------------------------------ */

enum { F_LABEL, F_FRAME, F_SEQ, F_USED, F_SCALE, F_ROWS };

/* One per-sample vector of the state (F_ROWS: the floats or the codes). */
static tlcm_fbb_ref_t sample_vec(tlcm_fbb_t *b, const tlcm_knn_t *ix,
				 int what)
{
	const tlcm_knn_opts_t *o = tlcm_knn_opts(ix);
	size_t cnt = tlcm_knn_size(ix), dim = o->dim;
	static const size_t size[] = {4, 8, 8, 8, 4, 0};
	size_t es = what != F_ROWS ? size[what] : o->quantize ? 1 : 4;
	size_t per = what == F_ROWS ? dim : 1;
	uint8_t *p;
	tlcm_fbb_ref_t ref = tlcm_fbb_vec_alloc(b, cnt * per, es, es,
						(void **)&p);
	for (size_t i = 0; ref && i < cnt; i++) {
		tlcm_knn_sample_t s;
		tlcm_knn_sample(ix, i, &s);
		uint8_t *at = p + i * per * es;
		switch (what) {
		case F_LABEL: memcpy(at, &s.label, 4); break;
		case F_FRAME: memcpy(at, &s.frame_id, 8); break;
		case F_SEQ: memcpy(at, &s.seq, 8); break;
		case F_USED: memcpy(at, &s.used, 8); break;
		case F_SCALE: memcpy(at, &s.scale, 4); break;
		default:
			memcpy(at, s.x ? (const void *)s.x
				       : (const void *)s.codes, dim * es);
		}
	}
	return ref;
}

static int snapshot(tlcm_ctx_t *ctx, void *st, tlcm_fbb_t *b)
{
	knn_node_t *n = st;
	const tlcm_knn_t *ix = n->ix;
	const tlcm_knn_opts_t *o = tlcm_knn_opts(ix);
	size_t nl = tlcm_knn_nlabels(ix);
	tlcm_knn_stats_t s;
	(void)ctx;
	tlcm_knn_get_stats(ix, &s);
	tlcm_fbb_ref_t *lr = malloc((nl ? nl : 1) * sizeof *lr);
	if (!lr)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < nl; i++)
		lr[i] = tlcm_fbb_cstring(b, tlcm_knn_label_name(ix,
							       (uint32_t)i));
	tlcm_fbb_ref_t labels = tlcm_fbb_vec_refs(b, lr, nl);
	free(lr);
	tlcm_fbb_ref_t sl = sample_vec(b, ix, F_LABEL);
	tlcm_fbb_ref_t fr = sample_vec(b, ix, F_FRAME);
	tlcm_fbb_ref_t sq = sample_vec(b, ix, F_SEQ);
	tlcm_fbb_ref_t us = sample_vec(b, ix, F_USED);
	tlcm_fbb_ref_t rows = sample_vec(b, ix, F_ROWS);
	tlcm_fbb_ref_t scales = o->quantize ? sample_vec(b, ix, F_SCALE) : 0;
	tlcm_fbb_ref_t metric = tlcm_fbb_cstring(b, metrics[o->metric]);
	tlcm_KnnState_start(b);
	tlcm_KnnState_add_dim(b, (uint32_t)o->dim);
	tlcm_KnnState_add_metric(b, metric);
	tlcm_KnnState_add_quantized(b, o->quantize);
	tlcm_KnnState_add_labels(b, labels);
	tlcm_KnnState_add_sample_labels(b, sl);
	tlcm_KnnState_add_frame_ids(b, fr);
	tlcm_KnnState_add_seqs(b, sq);
	tlcm_KnnState_add_used(b, us);
	if (o->quantize) {
		tlcm_KnnState_add_codes(b, rows);
		tlcm_KnnState_add_scales(b, scales);
	} else {
		tlcm_KnnState_add_vectors(b, rows);
	}
	tlcm_KnnState_add_added(b, s.added);
	tlcm_KnnState_add_evictions(b, s.evictions);
	tlcm_KnnState_add_relabels(b, s.relabels);
	tlcm_KnnState_add_queries(b, s.queries);
	tlcm_KnnState_add_next_seq(b, s.next_seq);
	tlcm_KnnState_add_bad(b, n->bad);
	tlcm_KnnState_add_predictions(b, n->predictions);
	tlcm_KnnState_add_learned_in(b, n->learned_in);
	return tlcm_KnnState_finish(b, tlcm_KnnState_end(b), NULL)
		       ? 0 : tlcm_fbb_error(b);
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

typedef struct {
	uint64_t seq;
	uint32_t i;
} by_seq_t;

static int by_seq(const void *a, const void *b)
{
	const by_seq_t *x = a, *y = b;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Fill ix from t (verified and consistent) in seq order. */
static int restore_samples(tlcm_knn_t *ix, tlcm_KnnState_table_t t,
			   size_t cnt, size_t dim)
{
	by_seq_t *order = malloc((cnt ? cnt : 1) * sizeof *order);
	if (!order)
		return TLCM_ENOMEM;
	const uint64_t *seqs = tlcm_KnnState_seqs(t);
	for (size_t i = 0; i < cnt; i++)
		order[i] = (by_seq_t){seqs[i], (uint32_t)i};
	qsort(order, cnt, sizeof *order, by_seq);
	const float *v = tlcm_KnnState_vectors(t);
	const int8_t *c = tlcm_KnnState_codes(t);
	const float *sc = tlcm_KnnState_scales(t);
	int rc = 0;
	for (size_t k = 0; k < cnt && !rc; k++) {
		size_t i = order[k].i;
		const char *label = tlcm_KnnState_labels_at(
			t, tlcm_KnnState_sample_labels(t)[i]);
		rc = tlcm_knn_put(ix, label, tlcm_KnnState_frame_ids(t)[i],
				  seqs[i], tlcm_KnnState_used(t)[i],
				  v ? v + i * dim : NULL,
				  v ? NULL : c + i * dim, sc ? sc[i] : 0, dim);
	}
	free(order);
	return rc;
}

static int restore(tlcm_ctx_t *ctx, void *st, const void *data, size_t len)
{
	knn_node_t *n = st;
	const char *why;
	if (tlcm_KnnState_verify_as_root(data, len, &why))
		return refuse(ctx, "%s", why);
	tlcm_KnnState_table_t t = tlcm_KnnState_as_root(data);
	size_t cnt = tlcm_KnnState_seqs_len(t), dim = tlcm_KnnState_dim(t);
	size_t nl = tlcm_KnnState_labels_len(t);
	bool quant = tlcm_KnnState_codes_is_present(t) &&
		     !tlcm_KnnState_vectors_is_present(t);
	if (cnt && (dim < 1 || dim > TLCM_KNN_MAX_DIM))
		return refuse(ctx, "dim %zu", dim);
	if (n->o.dim && cnt && dim != n->o.dim)
		return refuse(ctx, "%zu-value samples, the node's dim is %zu",
			      dim, n->o.dim);
	if (tlcm_KnnState_sample_labels_len(t) != cnt ||
	    tlcm_KnnState_frame_ids_len(t) != cnt ||
	    tlcm_KnnState_used_len(t) != cnt ||
	    (quant ? tlcm_KnnState_codes_len(t) != cnt * dim ||
			     tlcm_KnnState_scales_len(t) != cnt
		   : tlcm_KnnState_vectors_len(t) != cnt * dim))
		return refuse(ctx, "%zu samples but per-sample arrays of "
			      "other lengths", cnt);
	for (size_t i = 0; i < cnt; i++)
		if (tlcm_KnnState_sample_labels(t)[i] >= nl)
			return refuse(ctx, "sample %zu: label index %" PRIu32
				      " of %zu labels", i,
				      tlcm_KnnState_sample_labels(t)[i], nl);
	const char *metric = tlcm_KnnState_metric(t);
	if (metric && strcmp(metric, metrics[n->o.metric]))
		tlcm_node_log(ctx, TLCM_LOG_INFO, "state written with metric "
			      "%s, now %s", metric, metrics[n->o.metric]);
	tlcm_knn_opts_t o = n->o;
	o.dim = cnt ? dim : n->o.dim;
	tlcm_knn_t *ix;
	int rc = tlcm_knn_new(&ix, &o);
	if (rc)
		return rc;
	tlcm_knn_stats_t s = {
		.added = tlcm_KnnState_added(t),
		.evictions = tlcm_KnnState_evictions(t),
		.relabels = tlcm_KnnState_relabels(t),
		.queries = tlcm_KnnState_queries(t),
		.next_seq = tlcm_KnnState_next_seq(t),
	};
	tlcm_knn_set_stats(ix, &s);
	rc = restore_samples(ix, t, cnt, dim);
	if (rc) {
		tlcm_knn_free(ix);
		return rc == TLCM_ENOMEM ? rc
		       : refuse(ctx, "a sample the index refuses (%s)",
				tlcm_strerror(rc));
	}
	tlcm_knn_free(n->ix);
	n->ix = ix;
	n->bad = tlcm_KnnState_bad(t);
	n->predictions = tlcm_KnnState_predictions(t);
	n->learned_in = tlcm_KnnState_learned_in(t);
	tlcm_node_log(ctx, TLCM_LOG_INFO, "restored %zu samples of %zu "
		      "classes", tlcm_knn_size(ix), nl);
	return 0;
}

/* ---- describe ----------------------------------------------------------------- */

/* Append a JSON string (escaped) at buf[*at]; false when it did not fit
 * before `end`. */
static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	knn_node_t *n = st;
	(void)ctx;
	if (len < 200)
		return TLCM_ENOSPC;
	const tlcm_knn_t *ix = n->ix;
	const tlcm_knn_opts_t *o = tlcm_knn_opts(ix);
	tlcm_knn_stats_t s;
	tlcm_knn_get_stats(ix, &s);
	int w = snprintf(buf, len, "{\"samples\":%zu,\"max_samples\":%zu,"
			 "\"dim\":%zu,\"k\":%u,\"metric\":\"%s\","
			 "\"quantized\":%s,\"kernel\":\"%s\",\"added\":%"
			 PRIu64 ",\"evictions\":%" PRIu64 ",\"relabels\":%"
			 PRIu64 ",\"queries\":%" PRIu64 ",\"predictions\":%"
			 PRIu64 ",\"bad\":%" PRIu64 ",\"learn_first\":%"
			 PRIu64 ",\"learned_in\":%" PRIu64 ",\"classes\":{",
			 tlcm_knn_size(ix), o->max_samples, o->dim, o->k,
			 metrics[o->metric], o->quantize ? "true" : "false",
			 tlcm_knn_kernel_name(ix), s.added, s.evictions,
			 s.relabels, s.queries, n->predictions, n->bad,
			 n->learn_first, n->learned_in);
	if (w < 0 || (size_t)w + 40 > len) {
		snprintf(buf, len, "{\"samples\":%zu}", tlcm_knn_size(ix));
		return 0;
	}
	size_t at = (size_t)w, end = len - 40; /* room for the tail */
	bool cut = false;
	size_t listed = 0;
	for (uint32_t i = 0; i < tlcm_knn_nlabels(ix); i++) {
		size_t c = tlcm_knn_label_count(ix, i);
		if (!c)
			continue;
		if (!tlcm_json_count(buf, &at, end, !listed,
				     tlcm_knn_label_name(ix, i), c)) {
			cut = true;
			break;
		}
		listed++;
	}
	snprintf(buf + at, len - at, "}%s}",
		 cut ? ",\"classes_truncated\":true" : "");
	return 0;
}

const tlcm_node_type_t tlcm_node_knn = {
	.name = "knn",
	.doc = "k-nearest-neighbour classifier: Features to Predictions, "
	       "learning from labelled samples",
	.inputs = inputs,
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(knn_node_t),
	.init = init,
	.process = process,
	.param_changed = param_changed,
	.snapshot = snapshot,
	.restore = restore,
	.describe = describe,
	.fini = fini,
};
