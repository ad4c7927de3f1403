/* confidence.c — node `drift.confidence`: the prototype's
 * ConfidenceMonitor, with two tests on PRED.confidence against the
 * warm-up reference (mean mu, standard deviation sigma, floored at
 * min_std because a KNN that agrees with itself gives sigma = 0):
 *
 *   EWMA chart     z = lambda x + (1 - lambda) z, drift when z leaves
 *                  mu -+ L sigma sqrt(lambda/(2-lambda) (1-(1-lambda)^2t))
 *                  (metric "confidence.ewma", value z, threshold the
 *                  crossed limit);
 *   Page-Hinkley   s = max(0, s - (x - mu)/sigma - delta) for falls (mode
 *                  down; up/both watch rises too), drift when s > threshold
 *                  (metric "confidence.page_hinkley").
 *
 * The EWMA reacts to a broad drop within tens of samples, Page-Hinkley
 * accumulates small persistent ones. Either starts a drift; End when both
 * are back within exit_factor of their limits for exit_samples samples.
 * The reference is frozen in drift and moves slowly while stable, only
 * with samples both tests find in control in either direction (so with
 * mode down a fall is never learned as normal).
 */
#include <math.h>
#include <stdio.h>

#include "engine/log.h"
#include "nodes/drift/common.h"
#include "nodes/drift/drift_nodes.h"

enum { BY_EWMA = 1, BY_PH = 2 };

typedef struct {
	tlcm_drift_t d;
	tlcm_drift_ref_t ref;
	tlcm_ewma_t ewma;
	tlcm_cusum_t ph;
	double threshold, exit_factor;
} conf_node_t;

static const tlcm_param_desc_t params[] = {
	{"ewma_lambda", TLCM_P_FLOAT, "0.05", "EWMA weight of the newest "
	 "sample", 1e-6, 1, NULL, 0},
	{"ewma_limit", TLCM_P_FLOAT, "4", "EWMA control limit L, in standard "
	 "errors of the chart", 0, 1e6, NULL, 0},
	{"delta", TLCM_P_FLOAT, "0.5", "Page-Hinkley: tolerated deviation per "
	 "sample, in reference standard deviations", 0, 1e12, NULL, 0},
	{"threshold", TLCM_P_FLOAT, "25", "Page-Hinkley threshold (lambda), in "
	 "reference standard deviations", 0, 1e15, NULL, 0},
	{"mode", TLCM_P_ENUM, "down", "watch falls, rises or both", 0, 0,
	 "up|down|both", 0},
	{"exit_factor", TLCM_P_FLOAT, "0.7", "End once both tests stay within "
	 "exit_factor of their limits", 0, 1, NULL, 0},
	TLCM_DRIFT_REF_PARAMS("0.05"),
	TLCM_DRIFT_COMMON_PARAMS("200", "100", "20"),
	{0},
};

static int init(tlcm_ctx_t *ctx, void *st)
{
	conf_node_t *n = st;
	int mode = tlcm_drift_mode_parse(tlcm_param_str(ctx, "mode"));
	tlcm_drift_init(ctx, &n->d, tlcm_node_drift_confidence.name);
	tlcm_drift_ref_init(ctx, &n->ref);
	tlcm_ewma_init(&n->ewma, tlcm_param_float(ctx, "ewma_lambda"),
		       tlcm_param_float(ctx, "ewma_limit"), 0, 0, mode);
	n->ph.k = tlcm_param_float(ctx, "delta");
	n->ph.mode = mode;
	n->threshold = tlcm_param_float(ctx, "threshold");
	n->exit_factor = tlcm_param_float(ctx, "exit_factor");
	return 0;
}

/* The limit z crossed (or is nearest to), scaled by f. */
static double ewma_edge(const tlcm_ewma_t *e, double f)
{
	return e->z < e->mu0 ? e->mu0 - f * e->limit : e->mu0 + f * e->limit;
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	conf_node_t *n = st;
	tlcm_drift_sample_t s;
	(void)port;
	int rc = tlcm_drift_read(ctx, &n->d, m, &s);
	if (rc)
		return rc < 0 ? rc : 0;
	double x = s.confidence;
	tlcm_drift_verdict_t v = {.metric = "confidence.ewma"};
	if (tlcm_drift_warming(&n->d) || !n->ref.ready) {
		if (!n->ref.ready)
			tlcm_drift_ref_learn(&n->ref, x);
		if (n->d.index + 1 >= n->d.warm_until) {
			tlcm_drift_ref_finish(&n->ref);
			n->ewma.mu0 = tlcm_drift_ref_mean(&n->ref);
			tlcm_ewma_restart(&n->ewma);
		}
	} else {
		double mu = tlcm_drift_ref_mean(&n->ref);
		double sd = tlcm_drift_ref_std(&n->ref);
		n->ewma.mu0 = mu;
		n->ewma.sigma0 = sd;
		bool by_ewma = tlcm_ewma_update(&n->ewma, x) != 0;
		double stat = tlcm_cusum_update(&n->ph, x, mu, sd);
		bool by_ph = stat > n->threshold;
		double f = n->exit_factor;
		v.fire = by_ewma || by_ph;
		v.trigger = by_ewma ? BY_EWMA : BY_PH;
		v.calm = tlcm_ewma_score(&n->ewma) <= f &&
			 stat <= f * n->threshold;
		if (by_ewma || (!by_ph && !n->d.in_drift)) {
			v.value = n->ewma.z;
			v.threshold = ewma_edge(&n->ewma, 1.0);
		} else {
			v.metric = "confidence.page_hinkley";
			v.value = stat;
			v.threshold = n->threshold;
		}
		if (n->d.trigger == BY_PH) {
			v.exit_metric = "confidence.page_hinkley";
			v.exit_value = stat;
			v.exit_threshold = f * n->threshold;
		} else {
			v.exit_metric = "confidence.ewma";
			v.exit_value = n->ewma.z;
			v.exit_threshold = ewma_edge(&n->ewma, f);
		}
		if (!n->d.in_drift) /* in control both ways, whatever mode */
			tlcm_drift_ref_track(&n->ref, x,
					     fabs(n->ewma.z - mu) <=
						     f * n->ewma.limit &&
					     n->ph.up <= f * n->threshold &&
					     n->ph.down <= f * n->threshold);
	}
	rc = tlcm_drift_decide(ctx, &n->d, &s, &v);
	if (rc == TLCM_DRIFT_STARTED)
		tlcm_drift_ref_pause(&n->ref);
	if (rc == TLCM_DRIFT_ENDED || rc == TLCM_DRIFT_GAVE_UP)
		n->ph.up = n->ph.down = 0;
	if (rc == TLCM_DRIFT_GAVE_UP)
		tlcm_drift_ref_forget(&n->ref);
	tlcm_cusum_cap(&n->ph, n->threshold);
	return rc < 0 ? rc : 0;
}

static int snapshot(tlcm_ctx_t *ctx, void *st, tlcm_fbb_t *b)
{
	conf_node_t *n = st;
	(void)ctx;
	tlcm_fbb_ref_t det = tlcm_fbb_cstring(b, n->d.type);
	tlcm_fbb_ref_t com = tlcm_drift_common_build(b, &n->d);
	tlcm_fbb_ref_t ref = tlcm_drift_ref_build(b, &n->ref);
	tlcm_CusumState_start(b);
	tlcm_CusumState_add_up(b, n->ph.up);
	tlcm_CusumState_add_down(b, n->ph.down);
	tlcm_fbb_ref_t cs = tlcm_CusumState_end(b);
	tlcm_EwmaState_start(b);
	tlcm_EwmaState_add_z(b, n->ewma.z);
	tlcm_EwmaState_add_t(b, n->ewma.t);
	tlcm_fbb_ref_t ew = tlcm_EwmaState_end(b);
	tlcm_DriftState_start(b);
	tlcm_DriftState_add_detector(b, det);
	tlcm_DriftState_add_common(b, com);
	tlcm_DriftState_add_ref(b, ref);
	tlcm_DriftState_add_cusum(b, cs);
	tlcm_DriftState_add_ewma(b, ew);
	return tlcm_DriftState_finish(b, tlcm_DriftState_end(b), NULL)
		       ? 0 : tlcm_fbb_error(b);
}

static int restore(tlcm_ctx_t *ctx, void *st, const void *data, size_t len)
{
	conf_node_t *n = st;
	tlcm_DriftState_table_t t =
		tlcm_drift_state_open(ctx, n->d.type, data, len);
	tlcm_RefStats_table_t r = tlcm_DriftState_ref(t);
	tlcm_CusumState_table_t c = tlcm_DriftState_cusum(t);
	tlcm_EwmaState_table_t e = tlcm_DriftState_ewma(t);
	if (!t || !r || !c || !e)
		return TLCM_EBADMSG;
	if (!isfinite(tlcm_EwmaState_z(e)) || !isfinite(tlcm_CusumState_up(c)) ||
	    !isfinite(tlcm_CusumState_down(c)) ||
	    !tlcm_drift_ref_restore(&n->ref, r)) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: "
			      "non-finite statistics");
		return TLCM_EBADMSG;
	}
	tlcm_drift_common_load(&n->d, tlcm_DriftState_common(t));
	n->ph.up = tlcm_CusumState_up(c);
	n->ph.down = tlcm_CusumState_down(c);
	n->ewma.mu0 = tlcm_drift_ref_mean(&n->ref);
	n->ewma.sigma0 = tlcm_drift_ref_std(&n->ref);
	n->ewma.z = tlcm_EwmaState_z(e);
	n->ewma.t = tlcm_EwmaState_t(e);
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	conf_node_t *n = st;
	(void)ctx;
	size_t k = tlcm_drift_describe(&n->d, buf, len);
	snprintf(buf + k, len - k, ",\"reference_ready\":%s,"
		 "\"reference_mean\":%.9g,\"reference_std\":%.9g,"
		 "\"ewma\":%.9g,\"ewma_limit\":%.9g,\"page_hinkley\":%.9g}",
		 n->ref.ready ? "true" : "false", tlcm_drift_ref_mean(&n->ref),
		 tlcm_drift_ref_std(&n->ref), n->ewma.z, n->ewma.limit,
		 tlcm_cusum_stat(&n->ph));
	return 0;
}

const tlcm_node_type_t tlcm_node_drift_confidence = {
	.name = "drift.confidence",
	.doc = "EWMA control limits and Page-Hinkley on the prediction "
	       "confidence against a warm-up reference",
	.inputs = tlcm_drift_inputs,
	.outputs = tlcm_drift_outputs,
	.params = params,
	.state_size = sizeof(conf_node_t),
	.init = init,
	.process = process,
	.snapshot = snapshot,
	.restore = restore,
	.describe = describe,
};
