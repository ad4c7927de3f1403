/* knn_distance.c — node `drift.knn_distance`: the prototype's
 * KNNDistanceMonitor. Unknown things sit far from every stored sample, so
 * the mean neighbour distance (PRED.mean_distance) rises when the world
 * shows the KNN something new.
 *
 * Reference mean and standard deviation come from the warm-up (or from a
 * JSON file in the prototype's format). Each sample then feeds a
 * Page-Hinkley test against that reference, in the prototype's form
 * s = max(0, s + z - delta), z = (x - mean) / std (units: std) or
 * z = x - mean (units: absolute): Start when s > threshold. In drift the
 * reference is frozen and s capped at the threshold; End after
 * exit_samples samples with s <= exit_factor * threshold, then s = 0.
 * While stable, samples in control (the statistic, and its mirror image
 * for falling distances, at or below the exit level) move the reference
 * slowly (common.h).
 *
 * transform: log tests log(distance) instead (distances are skewed to
 * the right). reference_by: label keeps, besides the global reference,
 * one per predicted label learned in the warm-up (at most max_labels):
 * a sample is scored against its label's reference when that one saw at
 * least min_label_samples warm-up samples, else against the global one,
 * so a label's shift is measured in its own spread, not in the spread
 * between labels.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/log.h"
#include "nodes/drift/common.h"
#include "nodes/drift/drift_nodes.h"

/* A label's reference (reference_by: label). The label is a copy: the
 * sample's is not NUL-terminated and lives only during process(). */
typedef struct {
	char *label; /* NUL-terminated; len counts any inner NULs */
	size_t len;
	tlcm_drift_ref_t ref;
} knn_label_t;

enum { KNN_T_NONE, KNN_T_LOG }; /* as DriftState.transform */

typedef struct {
	tlcm_drift_t d;
	tlcm_drift_ref_t ref; /* global */
	tlcm_cusum_t ph;
	double threshold, exit_factor;
	bool absolute, by_label;
	int transform;
	uint64_t min_label_samples;
	size_t max_labels, nlabels;
	knn_label_t *labels; /* max_labels entries when by_label */
} knn_node_t;

static const tlcm_param_desc_t params[] = {
	{"delta", TLCM_P_FLOAT, "0.3", "tolerated excess of a sample over the "
	 "reference (in units)", 0, 1e12, NULL, 0},
	{"threshold", TLCM_P_FLOAT, "25", "Page-Hinkley threshold (lambda, in "
	 "units)", 0, 1e15, NULL, 0},
	{"exit_factor", TLCM_P_FLOAT, "0.7", "End once the statistic stays at "
	 "or below exit_factor * threshold", 0, 1, NULL, 0},
	{"units", TLCM_P_ENUM, "std", "delta and threshold in reference "
	 "standard deviations, or in distance units", 0, 0, "std|absolute", 0},
	{"reference", TLCM_P_PATH, "", "JSON file with reference_mean and "
	 "reference_std (instead of learning them in the warm-up)", 0, 0, NULL,
	 0},
	{"reference_by", TLCM_P_ENUM, "global", "one reference for all "
	 "samples, or also one per predicted label (learned in the warm-up)",
	 0, 0, "global|label", 0},
	{"min_label_samples", TLCM_P_INT, "20", "warm-up samples a label "
	 "needs before its own reference scores it (reference_by: label)", 2,
	 1e12, NULL, 0},
	{"max_labels", TLCM_P_INT, "64", "label references kept (later "
	 "labels use the global reference)", 1, 65536, NULL, 0},
	{"transform", TLCM_P_ENUM, "none", "test the distance itself or its "
	 "logarithm (reference and a reference file then in log units)", 0,
	 0, "none|log", 0},
	TLCM_DRIFT_REF_PARAMS("0"),
	TLCM_DRIFT_COMMON_PARAMS("500", "100", "20"),
	{0},
};

/* Forget every label reference (a give-up, a restored state). */
static void labels_clear(knn_node_t *n)
{
	for (size_t i = 0; i < n->nlabels; i++)
		free(n->labels[i].label);
	n->nlabels = 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	knn_node_t *n = st;
	(void)ctx;
	if (n->labels)
		labels_clear(n);
	free(n->labels);
	n->labels = NULL;
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	knn_node_t *n = st;
	tlcm_drift_init(ctx, &n->d, tlcm_node_drift_knn_distance.name);
	tlcm_drift_ref_init(ctx, &n->ref);
	n->ph.k = tlcm_param_float(ctx, "delta");
	n->ph.mode = TLCM_DRIFT_UP;
	n->threshold = tlcm_param_float(ctx, "threshold");
	n->exit_factor = tlcm_param_float(ctx, "exit_factor");
	n->absolute = !strcmp(tlcm_param_str(ctx, "units"), "absolute");
	n->by_label = !strcmp(tlcm_param_str(ctx, "reference_by"), "label");
	n->transform = !strcmp(tlcm_param_str(ctx, "transform"), "log")
			       ? KNN_T_LOG : KNN_T_NONE;
	n->min_label_samples =
		(uint64_t)tlcm_param_int(ctx, "min_label_samples");
	n->max_labels = (size_t)tlcm_param_int(ctx, "max_labels");
	const char *path = tlcm_param_str(ctx, "reference");
	int rc = path && *path ? tlcm_drift_ref_load(ctx, &n->ref, path) : 0;
	if (rc || !n->by_label)
		return rc;
	n->labels = calloc(n->max_labels, sizeof *n->labels);
	if (!n->labels) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "init: no memory for %zu "
			      "label references", n->max_labels);
		return TLCM_ENOMEM;
	}
	return 0;
}

static knn_label_t *label_find(knn_node_t *n, const char *s, size_t len)
{
	for (size_t i = 0; i < n->nlabels; i++)
		if (n->labels[i].len == len &&
		    !memcmp(n->labels[i].label, s, len))
			return &n->labels[i];
	return NULL;
}

/* Append a label with an empty reference of the global one's settings;
 * NULL when max_labels are taken (*rc 0) or on no memory (*rc set). */
static knn_label_t *label_add(knn_node_t *n, const char *s, size_t len,
			      int *rc)
{
	*rc = 0;
	if (n->nlabels >= n->max_labels)
		return NULL;
	char *copy = malloc(len + 1);
	if (!copy) {
		*rc = TLCM_ENOMEM;
		return NULL;
	}
	memcpy(copy, s, len);
	copy[len] = 0;
	knn_label_t *l = &n->labels[n->nlabels++];
	memset(l, 0, sizeof *l);
	l->label = copy;
	l->len = len;
	l->ref.interval = n->ref.interval;
	l->ref.factor = n->ref.factor;
	l->ref.min_std = n->ref.min_std;
	return l;
}

/* The reference that scores sample s: its label's, when that one is
 * ready and learned from enough warm-up samples (ref.n counts those:
 * updates keep it), else the global one. */
static tlcm_drift_ref_t *scoring_ref(knn_node_t *n,
				     const tlcm_drift_sample_t *s)
{
	knn_label_t *l = n->by_label ? label_find(n, s->label, s->label_len)
				     : NULL;
	if (l && l->ref.ready && l->ref.ref.n >= n->min_label_samples)
		return &l->ref;
	return &n->ref;
}

/* Warm-up: teach the sample's label (a new one takes a free slot; once
 * max_labels are taken later labels teach only the global reference). */
static int learn_label(tlcm_ctx_t *ctx, knn_node_t *n,
		       const tlcm_drift_sample_t *s, double x)
{
	int rc = 0;
	knn_label_t *l = label_find(n, s->label, s->label_len);
	if (!l)
		l = label_add(n, s->label, s->label_len, &rc);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "process: no memory for "
			      "the reference of label %zu (frame %llu)",
			      n->nlabels, (unsigned long long)s->frame_id);
		return rc;
	}
	if (l && !l->ref.ready)
		tlcm_drift_ref_learn(&l->ref, x);
	return 0;
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	knn_node_t *n = st;
	tlcm_drift_sample_t s;
	(void)port;
	int rc = tlcm_drift_read(ctx, &n->d, m, &s);
	if (rc)
		return rc < 0 ? rc : 0;
	double x = s.mean_distance;
	tlcm_drift_verdict_t v = {.metric = "mean_distance"};
	if (n->transform == KNN_T_LOG) {
		/* distances are >= 0; the floor keeps an exact match finite */
		x = log(x > 1e-12 ? x : 1e-12);
		v.metric = "log_mean_distance";
	}
	if (tlcm_drift_warming(&n->d) || !n->ref.ready) {
		if (n->by_label && (rc = learn_label(ctx, n, &s, x)) != 0)
			return rc; /* before anything changed */
		if (!n->ref.ready)
			tlcm_drift_ref_learn(&n->ref, x);
		if (n->d.index + 1 >= n->d.warm_until) {
			tlcm_drift_ref_finish(&n->ref);
			for (size_t i = 0; i < n->nlabels; i++)
				tlcm_drift_ref_finish(&n->labels[i].ref);
		}
	} else {
		tlcm_drift_ref_t *r = scoring_ref(n, &s);
		double sd = n->absolute ? 1.0 : tlcm_drift_ref_std(r);
		double stat = tlcm_cusum_update(&n->ph, x,
						tlcm_drift_ref_mean(r), sd);
		v.fire = stat > n->threshold;
		v.value = v.exit_value = stat;
		v.threshold = n->threshold;
		v.exit_threshold = n->exit_factor * n->threshold;
		v.calm = stat <= v.exit_threshold;
		if (!n->d.in_drift) { /* in control both ways */
			bool in = v.calm && n->ph.down <= v.exit_threshold;
			tlcm_drift_ref_track(&n->ref, x, in);
			if (r != &n->ref)
				tlcm_drift_ref_track(r, x, in);
		}
	}
	rc = tlcm_drift_decide(ctx, &n->d, &s, &v);
	if (rc == TLCM_DRIFT_STARTED) {
		tlcm_drift_ref_pause(&n->ref);
		for (size_t i = 0; i < n->nlabels; i++)
			tlcm_drift_ref_pause(&n->labels[i].ref);
	}
	if (rc == TLCM_DRIFT_ENDED || rc == TLCM_DRIFT_GAVE_UP)
		n->ph.up = n->ph.down = 0;
	if (rc == TLCM_DRIFT_GAVE_UP) {
		tlcm_drift_ref_forget(&n->ref);
		labels_clear(n); /* the new warm-up learns them again */
	}
	/* capped: a drift (or an alarm held back by the cooldown) can end, or
	 * start once the cooldown is over, without a long way back */
	tlcm_cusum_cap(&n->ph, n->threshold);
	return rc < 0 ? rc : 0;
}

static int snapshot(tlcm_ctx_t *ctx, void *st, tlcm_fbb_t *b)
{
	knn_node_t *n = st;
	(void)ctx;
	tlcm_fbb_ref_t lrefs = 0;
	if (n->nlabels) {
		tlcm_fbb_ref_t *v = malloc(n->nlabels * sizeof *v);
		if (!v)
			return TLCM_ENOMEM;
		for (size_t i = 0; i < n->nlabels; i++) {
			const knn_label_t *l = &n->labels[i];
			tlcm_fbb_ref_t name = tlcm_fbb_string(b, l->label,
							      l->len);
			tlcm_fbb_ref_t r = tlcm_drift_ref_build(b, &l->ref);
			tlcm_LabelRef_start(b);
			tlcm_LabelRef_add_label(b, name);
			tlcm_LabelRef_add_ref(b, r);
			v[i] = tlcm_LabelRef_end(b);
		}
		lrefs = tlcm_DriftState_label_refs_create(b, v, n->nlabels);
		free(v);
	}
	tlcm_fbb_ref_t det = tlcm_fbb_cstring(b, n->d.type);
	tlcm_fbb_ref_t com = tlcm_drift_common_build(b, &n->d);
	tlcm_fbb_ref_t ref = tlcm_drift_ref_build(b, &n->ref);
	tlcm_CusumState_start(b);
	tlcm_CusumState_add_up(b, n->ph.up);
	tlcm_CusumState_add_down(b, n->ph.down);
	tlcm_fbb_ref_t cs = tlcm_CusumState_end(b);
	tlcm_DriftState_start(b);
	tlcm_DriftState_add_detector(b, det);
	tlcm_DriftState_add_common(b, com);
	tlcm_DriftState_add_ref(b, ref);
	tlcm_DriftState_add_cusum(b, cs);
	if (n->nlabels) /* a global node's state stays as it always was */
		tlcm_DriftState_add_label_refs(b, lrefs);
	tlcm_DriftState_add_transform(b, (uint8_t)n->transform);
	return tlcm_DriftState_finish(b, tlcm_DriftState_end(b), NULL)
		       ? 0 : tlcm_fbb_error(b);
}

/* Read the label references of state t into a new array (*out, *count);
 * nothing of the node changes. A global node ignores them. */
static int restore_labels(tlcm_ctx_t *ctx, knn_node_t *n,
			  tlcm_DriftState_table_t t, knn_label_t **out,
			  size_t *count)
{
	size_t nl = n->by_label ? tlcm_DriftState_label_refs_len(t) : 0;
	*out = NULL;
	*count = 0;
	if (nl > n->max_labels) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: %zu label "
			      "references, max_labels is %zu", nl,
			      n->max_labels);
		return TLCM_EBADMSG;
	}
	if (!nl)
		return 0;
	/* the scratch node shares nothing with n until it is complete */
	knn_node_t tmp = {.ref = n->ref, .max_labels = nl};
	tmp.labels = calloc(nl, sizeof *tmp.labels);
	if (!tmp.labels)
		return TLCM_ENOMEM;
	int rc = 0;
	for (size_t i = 0; !rc && i < nl; i++) {
		tlcm_LabelRef_table_t e = tlcm_DriftState_label_refs_at(t, i);
		const char *s = tlcm_LabelRef_label(e);
		size_t len = tlcm_LabelRef_label_len(e);
		tlcm_RefStats_table_t r = tlcm_LabelRef_ref(e);
		knn_label_t *l;
		if (!s || !len || !r || label_find(&tmp, s, len)) {
			tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: "
				      "label reference %zu has no label, no "
				      "statistics or a repeated label", i);
			rc = TLCM_EBADMSG;
		} else if (!(l = label_add(&tmp, s, len, &rc))) {
			rc = rc ? rc : TLCM_ENOMEM;
		} else if (!tlcm_drift_ref_restore(&l->ref, r)) {
			tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: "
				      "non-finite statistics (label "
				      "reference %zu)", i);
			rc = TLCM_EBADMSG;
		}
	}
	if (rc) {
		labels_clear(&tmp);
		free(tmp.labels);
		return rc;
	}
	*out = tmp.labels;
	*count = nl;
	return 0;
}

static int restore(tlcm_ctx_t *ctx, void *st, const void *data, size_t len)
{
	knn_node_t *n = st;
	tlcm_DriftState_table_t t =
		tlcm_drift_state_open(ctx, n->d.type, data, len);
	tlcm_RefStats_table_t r = tlcm_DriftState_ref(t);
	tlcm_CusumState_table_t c = tlcm_DriftState_cusum(t);
	if (!t || !r || !c)
		return TLCM_EBADMSG;
	if (tlcm_DriftState_transform(t) != n->transform) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: written "
			      "with transform %s, this node has %s",
			      tlcm_DriftState_transform(t) == KNN_T_LOG
				      ? "log" : "none",
			      n->transform == KNN_T_LOG ? "log" : "none");
		return TLCM_EBADMSG;
	}
	tlcm_drift_ref_t global = n->ref;
	if (!isfinite(tlcm_CusumState_up(c)) ||
	    !isfinite(tlcm_CusumState_down(c)) ||
	    !tlcm_drift_ref_restore(&global, r)) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: "
			      "non-finite statistics");
		return TLCM_EBADMSG;
	}
	knn_label_t *labels;
	size_t nl;
	int rc = restore_labels(ctx, n, t, &labels, &nl);
	if (rc)
		return rc;
	/* a state without label references (one of a global node) leaves
	 * every label on the global reference: they come only from a
	 * warm-up or a state */
	if (n->labels) {
		labels_clear(n);
		if (nl)
			memcpy(n->labels, labels, nl * sizeof *labels);
		n->nlabels = nl;
	}
	free(labels);
	n->ref = global;
	tlcm_drift_common_load(&n->d, tlcm_DriftState_common(t));
	n->ph.up = tlcm_CusumState_up(c);
	n->ph.down = tlcm_CusumState_down(c);
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	knn_node_t *n = st;
	(void)ctx;
	size_t k = tlcm_drift_describe(&n->d, buf, len);
	snprintf(buf + k, len - k, ",\"reference_ready\":%s,"
		 "\"reference_mean\":%.9g,\"reference_std\":%.9g,"
		 "\"statistic\":%.9g,\"reference_by\":\"%s\","
		 "\"transform\":\"%s\",\"labels\":%zu}",
		 n->ref.ready ? "true" : "false",
		 tlcm_drift_ref_mean(&n->ref), tlcm_drift_ref_std(&n->ref),
		 n->ph.up, n->by_label ? "label" : "global",
		 n->transform == KNN_T_LOG ? "log" : "none", n->nlabels);
	return 0;
}

const tlcm_node_type_t tlcm_node_drift_knn_distance = {
	.name = "drift.knn_distance",
	.doc = "Page-Hinkley on the mean neighbour distance against a "
	       "warm-up reference, with hysteresis exit",
	.inputs = tlcm_drift_inputs,
	.outputs = tlcm_drift_outputs,
	.params = params,
	.state_size = sizeof(knn_node_t),
	.init = init,
	.process = process,
	.snapshot = snapshot,
	.restore = restore,
	.describe = describe,
	.fini = fini,
};
