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
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/log.h"
#include "nodes/drift/common.h"
#include "nodes/drift/drift_nodes.h"

typedef struct {
	tlcm_drift_t d;
	tlcm_drift_ref_t ref;
	tlcm_cusum_t ph;
	double threshold, exit_factor;
	bool absolute;
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
	TLCM_DRIFT_REF_PARAMS("0"),
	TLCM_DRIFT_COMMON_PARAMS("500", "100", "20"),
	{0},
};

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
	const char *path = tlcm_param_str(ctx, "reference");
	return path && *path ? tlcm_drift_ref_load(ctx, &n->ref, path) : 0;
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
	if (tlcm_drift_warming(&n->d) || !n->ref.ready) {
		if (!n->ref.ready)
			tlcm_drift_ref_learn(&n->ref, x);
		if (n->d.index + 1 >= n->d.warm_until)
			tlcm_drift_ref_finish(&n->ref);
	} else {
		double sd = n->absolute ? 1.0 : tlcm_drift_ref_std(&n->ref);
		double stat = tlcm_cusum_update(&n->ph, x,
						tlcm_drift_ref_mean(&n->ref), sd);
		v.fire = stat > n->threshold;
		v.value = v.exit_value = stat;
		v.threshold = n->threshold;
		v.exit_threshold = n->exit_factor * n->threshold;
		v.calm = stat <= v.exit_threshold;
		if (!n->d.in_drift) /* in control both ways */
			tlcm_drift_ref_track(&n->ref, x, v.calm &&
					     n->ph.down <= v.exit_threshold);
	}
	rc = tlcm_drift_decide(ctx, &n->d, &s, &v);
	if (rc == TLCM_DRIFT_STARTED)
		tlcm_drift_ref_pause(&n->ref);
	if (rc == TLCM_DRIFT_ENDED || rc == TLCM_DRIFT_GAVE_UP)
		n->ph.up = n->ph.down = 0;
	if (rc == TLCM_DRIFT_GAVE_UP)
		tlcm_drift_ref_forget(&n->ref);
	/* capped: a drift (or an alarm held back by the cooldown) can end, or
	 * start once the cooldown is over, without a long way back */
	tlcm_cusum_cap(&n->ph, n->threshold);
	return rc < 0 ? rc : 0;
}

static int snapshot(tlcm_ctx_t *ctx, void *st, tlcm_fbb_t *b)
{
	knn_node_t *n = st;
	(void)ctx;
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
	return tlcm_DriftState_finish(b, tlcm_DriftState_end(b), NULL)
		       ? 0 : tlcm_fbb_error(b);
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
	if (!isfinite(tlcm_CusumState_up(c)) ||
	    !isfinite(tlcm_CusumState_down(c)) ||
	    !tlcm_drift_ref_restore(&n->ref, r)) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: "
			      "non-finite statistics");
		return TLCM_EBADMSG;
	}
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
		 "\"statistic\":%.9g}", n->ref.ready ? "true" : "false",
		 tlcm_drift_ref_mean(&n->ref), tlcm_drift_ref_std(&n->ref),
		 n->ph.up);
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
};
