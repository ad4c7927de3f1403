/* page_hinkley.c — node `drift.page_hinkley`: river's Page-Hinkley test on
 * one numeric field of the predictions.
 *
 * The warm-up teaches the running mean (the reference); then every sample
 * moves the fading sums and, while stable, the mean. A detection starts a
 * drift; in drift the mean is frozen and the statistic capped at the
 * threshold, so it falls below exit_factor * threshold within a bounded
 * number of samples once the data are back at the reference: End after
 * exit_samples such samples, then the sums restart. An alarm held back by
 * the cooldown stays capped, so it starts a drift when the cooldown ends.
 */
#include <math.h>
#include <stdio.h>

#include "engine/log.h"
#include "nodes/drift/common.h"
#include "nodes/drift/drift_nodes.h"

typedef struct {
	tlcm_drift_t d;
	tlcm_ph_t ph;
	int field;
	double exit_factor;
} ph_node_t;

static const tlcm_param_desc_t params[] = {
	{"field", TLCM_P_ENUM, "confidence", "the watched value", 0, 0,
	 TLCM_DRIFT_FIELDS, 0},
	{"delta", TLCM_P_FLOAT, "0.005", "tolerated change per sample", 0, 1e12,
	 NULL, 0},
	{"threshold", TLCM_P_FLOAT, "50", "detection threshold (lambda)", 0,
	 1e15, NULL, 0},
	{"alpha", TLCM_P_FLOAT, "0.9999", "fading factor of the sums", 0, 1,
	 NULL, 0},
	{"mode", TLCM_P_ENUM, "both", "watch increases, decreases or both", 0,
	 0, "up|down|both", 0},
	{"exit_factor", TLCM_P_FLOAT, "0.7", "End once the statistic stays at "
	 "or below exit_factor * threshold", 0, 1, NULL, 0},
	TLCM_DRIFT_COMMON_PARAMS("30", "100", "30"),
	{0},
};

static int init(tlcm_ctx_t *ctx, void *st)
{
	ph_node_t *n = st;
	tlcm_drift_init(ctx, &n->d, tlcm_node_drift_page_hinkley.name);
	n->field = tlcm_drift_field_parse(tlcm_param_str(ctx, "field"));
	n->exit_factor = tlcm_param_float(ctx, "exit_factor");
	tlcm_ph_init(&n->ph, tlcm_param_float(ctx, "delta"),
		     tlcm_param_float(ctx, "threshold"),
		     tlcm_param_float(ctx, "alpha"), 0,
		     tlcm_drift_mode_parse(tlcm_param_str(ctx, "mode")));
	return 0;
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	ph_node_t *n = st;
	tlcm_drift_sample_t s;
	double x;
	(void)port;
	int rc = tlcm_drift_read_value(ctx, &n->d, m, n->field, &s, &x);
	if (rc)
		return rc < 0 ? rc : 0;
	tlcm_drift_verdict_t v = {.metric = tlcm_drift_field_name(n->field)};
	if (tlcm_drift_warming(&n->d)) {
		tlcm_ph_step(&n->ph, x, true);
		if (n->d.index + 1 >= n->d.warm_until)
			tlcm_ph_reset_sums(&n->ph);
	} else {
		v.fire = tlcm_ph_step(&n->ph, x, !n->d.in_drift);
		v.value = v.exit_value = tlcm_ph_stat(&n->ph);
		v.threshold = n->ph.threshold;
		v.exit_threshold = n->exit_factor * n->ph.threshold;
		v.calm = v.value <= v.exit_threshold;
	}
	rc = tlcm_drift_decide(ctx, &n->d, &s, &v);
	if (rc == TLCM_DRIFT_GAVE_UP)
		tlcm_ph_reset(&n->ph);
	else if (rc == TLCM_DRIFT_ENDED)
		tlcm_ph_reset_sums(&n->ph);
	/* capped: a drift (or an alarm held back by the cooldown) can end, or
	 * start once the cooldown is over, without a long way back */
	tlcm_ph_cap(&n->ph, n->ph.threshold);
	return rc < 0 ? rc : 0;
}

static int snapshot(tlcm_ctx_t *ctx, void *st, tlcm_fbb_t *b)
{
	ph_node_t *n = st;
	(void)ctx;
	tlcm_fbb_ref_t det = tlcm_fbb_cstring(b, n->d.type);
	tlcm_fbb_ref_t com = tlcm_drift_common_build(b, &n->d);
	tlcm_PageHinkleyState_start(b);
	tlcm_PageHinkleyState_add_n(b, n->ph.n);
	tlcm_PageHinkleyState_add_mean(b, n->ph.mean);
	tlcm_PageHinkleyState_add_sum_up(b, n->ph.sum_up);
	tlcm_PageHinkleyState_add_sum_down(b, n->ph.sum_down);
	tlcm_PageHinkleyState_add_min_up(b, n->ph.min_up);
	tlcm_PageHinkleyState_add_max_down(b, n->ph.max_down);
	tlcm_fbb_ref_t ph = tlcm_PageHinkleyState_end(b);
	tlcm_DriftState_start(b);
	tlcm_DriftState_add_detector(b, det);
	tlcm_DriftState_add_common(b, com);
	tlcm_DriftState_add_ph(b, ph);
	return tlcm_DriftState_finish(b, tlcm_DriftState_end(b), NULL)
		       ? 0 : tlcm_fbb_error(b);
}

static int restore(tlcm_ctx_t *ctx, void *st, const void *data, size_t len)
{
	ph_node_t *n = st;
	tlcm_DriftState_table_t t =
		tlcm_drift_state_open(ctx, n->d.type, data, len);
	tlcm_PageHinkleyState_table_t p = tlcm_DriftState_ph(t);
	if (!t || !p)
		return TLCM_EBADMSG;
	if (!isfinite(tlcm_PageHinkleyState_mean(p)) ||
	    !isfinite(tlcm_PageHinkleyState_sum_up(p)) ||
	    !isfinite(tlcm_PageHinkleyState_sum_down(p)) ||
	    isnan(tlcm_PageHinkleyState_min_up(p)) ||
	    isnan(tlcm_PageHinkleyState_max_down(p))) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: "
			      "non-finite statistics");
		return TLCM_EBADMSG;
	}
	tlcm_drift_common_load(&n->d, tlcm_DriftState_common(t));
	n->ph.n = tlcm_PageHinkleyState_n(p);
	n->ph.mean = tlcm_PageHinkleyState_mean(p);
	n->ph.sum_up = tlcm_PageHinkleyState_sum_up(p);
	n->ph.sum_down = tlcm_PageHinkleyState_sum_down(p);
	n->ph.min_up = tlcm_PageHinkleyState_min_up(p);
	n->ph.max_down = tlcm_PageHinkleyState_max_down(p);
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	ph_node_t *n = st;
	(void)ctx;
	size_t k = tlcm_drift_describe(&n->d, buf, len);
	snprintf(buf + k, len - k, ",\"field\":\"%s\",\"mean\":%.9g,"
		 "\"statistic\":%.9g}", tlcm_drift_field_name(n->field),
		 n->ph.mean, tlcm_ph_stat(&n->ph));
	return 0;
}

const tlcm_node_type_t tlcm_node_drift_page_hinkley = {
	.name = "drift.page_hinkley",
	.doc = "Page-Hinkley test (river's) on a numeric Prediction field",
	.inputs = tlcm_drift_inputs,
	.outputs = tlcm_drift_outputs,
	.params = params,
	.state_size = sizeof(ph_node_t),
	.init = init,
	.process = process,
	.snapshot = snapshot,
	.restore = restore,
	.describe = describe,
};
