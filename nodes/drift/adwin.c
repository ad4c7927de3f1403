/* adwin.c — node `drift.adwin`: river's ADWIN on one numeric field of the
 * predictions.
 *
 * ADWIN has no separate reference: its adaptive window is the reference,
 * and cutting the window's older part at a significant change is the
 * algorithm, so the window is never frozen. A cut (after warm-up) starts
 * a drift, with value |mean0 - mean1| and threshold eps_cut of that cut;
 * the drift ends after exit_samples samples without a cut (the window has
 * settled on the current data).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/log.h"
#include "nodes/drift/common.h"
#include "nodes/drift/drift_nodes.h"

typedef struct {
	tlcm_drift_t d;
	tlcm_adwin_t a;
	int field;
} adwin_node_t;

static const tlcm_param_desc_t params[] = {
	{"field", TLCM_P_ENUM, "confidence", "the watched value", 0, 0,
	 TLCM_DRIFT_FIELDS, 0},
	{"delta", TLCM_P_FLOAT, "0.002", "significance of a cut", 1e-12, 0.5,
	 NULL, 0},
	{"clock", TLCM_P_INT, "32", "test for cuts every this many samples", 1,
	 1e6, NULL, 0},
	{"max_buckets", TLCM_P_INT, "5", "buckets of each size before two are "
	 "merged", 2, 1000, NULL, 0},
	{"min_window_length", TLCM_P_INT, "5", "smallest sub-window tested", 1,
	 1e9, NULL, 0},
	{"grace_period", TLCM_P_INT, "10", "no test before the window holds "
	 "this many samples", 0, 1e9, NULL, 0},
	TLCM_DRIFT_COMMON_PARAMS("0", "100", "100"),
	{0},
};

static int init(tlcm_ctx_t *ctx, void *st)
{
	adwin_node_t *n = st;
	tlcm_drift_init(ctx, &n->d, tlcm_node_drift_adwin.name);
	n->field = tlcm_drift_field_parse(tlcm_param_str(ctx, "field"));
	int rc = tlcm_adwin_init(
		&n->a, tlcm_param_float(ctx, "delta"),
		(uint32_t)tlcm_param_int(ctx, "clock"),
		(uint32_t)tlcm_param_int(ctx, "max_buckets"),
		(uint32_t)tlcm_param_int(ctx, "min_window_length"),
		(uint32_t)tlcm_param_int(ctx, "grace_period"));
	if (rc)
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot set up ADWIN: %s",
			      tlcm_strerror(rc));
	return rc;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	adwin_node_t *n = st;
	(void)ctx;
	tlcm_adwin_fini(&n->a);
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	adwin_node_t *n = st;
	tlcm_drift_sample_t s;
	double x;
	(void)port;
	int rc = tlcm_drift_read_value(ctx, &n->d, m, n->field, &s, &x);
	if (rc)
		return rc < 0 ? rc : 0;
	bool cut = tlcm_adwin_update(&n->a, x);
	tlcm_drift_verdict_t v = {
		.fire = cut,
		.calm = !cut,
		.metric = tlcm_drift_field_name(n->field),
		.value = cut ? n->a.cut_diff : 0,
		.threshold = cut ? n->a.cut_eps : 0,
		.exit_metric = "samples_without_cut",
		.exit_value = (double)(n->d.quiet + !cut),
		.exit_threshold = (double)n->d.exit_samples,
	};
	rc = tlcm_drift_decide(ctx, &n->d, &s, &v);
	if (rc == TLCM_DRIFT_GAVE_UP)
		tlcm_adwin_reset(&n->a);
	return rc < 0 ? rc : 0;
}

static int snapshot(tlcm_ctx_t *ctx, void *st, tlcm_fbb_t *b)
{
	adwin_node_t *n = st;
	const tlcm_adwin_t *a = &n->a;
	(void)ctx;
	size_t total = 0;
	for (uint32_t r = 0; r < a->nrows; r++)
		total += a->count[r];
	double *tv = malloc((2 * total + 1) * sizeof *tv);
	if (!tv)
		return TLCM_ENOMEM;
	size_t k = 0;
	for (uint32_t r = 0; r < a->nrows; r++)
		for (uint32_t i = 0; i < a->count[r]; i++, k++) {
			size_t at = (size_t)r * (a->max_buckets + 1) + i;
			tv[k] = a->tot[at];
			tv[total + k] = a->var[at];
		}
	tlcm_fbb_ref_t det = tlcm_fbb_cstring(b, n->d.type);
	tlcm_fbb_ref_t com = tlcm_drift_common_build(b, &n->d);
	tlcm_fbb_ref_t rows = tlcm_AdwinState_row_counts_create(b, a->count,
								a->nrows);
	tlcm_fbb_ref_t tots = tlcm_AdwinState_totals_create(b, tv, total);
	tlcm_fbb_ref_t vars = tlcm_AdwinState_variances_create(b, tv + total,
							       total);
	free(tv);
	tlcm_AdwinState_start(b);
	tlcm_AdwinState_add_width(b, a->width);
	tlcm_AdwinState_add_total(b, a->total);
	tlcm_AdwinState_add_variance(b, a->variance);
	tlcm_AdwinState_add_tick(b, a->tick);
	tlcm_AdwinState_add_detections(b, a->detections);
	tlcm_AdwinState_add_row_counts(b, rows);
	tlcm_AdwinState_add_totals(b, tots);
	tlcm_AdwinState_add_variances(b, vars);
	tlcm_fbb_ref_t ad = tlcm_AdwinState_end(b);
	tlcm_DriftState_start(b);
	tlcm_DriftState_add_detector(b, det);
	tlcm_DriftState_add_common(b, com);
	tlcm_DriftState_add_adwin(b, ad);
	return tlcm_DriftState_finish(b, tlcm_DriftState_end(b), NULL)
		       ? 0 : tlcm_fbb_error(b);
}

static int restore(tlcm_ctx_t *ctx, void *st, const void *data, size_t len)
{
	adwin_node_t *n = st;
	tlcm_adwin_t *a = &n->a;
	tlcm_DriftState_table_t t =
		tlcm_drift_state_open(ctx, n->d.type, data, len);
	tlcm_AdwinState_table_t as = tlcm_DriftState_adwin(t);
	if (!t || !as)
		return TLCM_EBADMSG;
	size_t nrows = tlcm_AdwinState_row_counts_len(as), total = 0;
	for (size_t r = 0; r < nrows; r++) {
		uint32_t c = tlcm_AdwinState_row_counts_at(as, r);
		if (c > a->max_buckets) {
			nrows = TLCM_ADWIN_MAX_ROWS + 1; /* refuse below */
			break;
		}
		total += c;
	}
	bool finite = isfinite(tlcm_AdwinState_width(as)) &&
		      isfinite(tlcm_AdwinState_total(as)) &&
		      isfinite(tlcm_AdwinState_variance(as));
	for (size_t k = 0; finite && k < tlcm_AdwinState_totals_len(as); k++)
		finite = isfinite(tlcm_AdwinState_totals_at(as, k));
	for (size_t k = 0; finite && k < tlcm_AdwinState_variances_len(as);
	     k++)
		finite = isfinite(tlcm_AdwinState_variances_at(as, k));
	if (nrows > TLCM_ADWIN_MAX_ROWS || !finite ||
	    tlcm_AdwinState_totals_len(as) != total ||
	    tlcm_AdwinState_variances_len(as) != total) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: ADWIN "
			      "buckets do not fit max_buckets %u or are not "
			      "finite", a->max_buckets);
		return TLCM_EBADMSG;
	}
	tlcm_adwin_reset(a);
	a->nrows = nrows ? (uint32_t)nrows : 1;
	size_t k = 0;
	for (uint32_t r = 0; r < nrows; r++) {
		a->count[r] = tlcm_AdwinState_row_counts_at(as, r);
		for (uint32_t i = 0; i < a->count[r]; i++, k++) {
			size_t at = (size_t)r * (a->max_buckets + 1) + i;
			a->tot[at] = tlcm_AdwinState_totals_at(as, k);
			a->var[at] = tlcm_AdwinState_variances_at(as, k);
		}
	}
	a->width = tlcm_AdwinState_width(as);
	a->total = tlcm_AdwinState_total(as);
	a->variance = tlcm_AdwinState_variance(as);
	a->tick = tlcm_AdwinState_tick(as);
	a->detections = tlcm_AdwinState_detections(as);
	tlcm_drift_common_load(&n->d, tlcm_DriftState_common(t));
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	adwin_node_t *n = st;
	(void)ctx;
	size_t k = tlcm_drift_describe(&n->d, buf, len);
	snprintf(buf + k, len - k, ",\"field\":\"%s\",\"width\":%.0f,"
		 "\"mean\":%.9g,\"cuts\":%llu}", tlcm_drift_field_name(n->field),
		 n->a.width, tlcm_adwin_mean(&n->a),
		 (unsigned long long)n->a.detections);
	return 0;
}

const tlcm_node_type_t tlcm_node_drift_adwin = {
	.name = "drift.adwin",
	.doc = "ADWIN (river's) on a numeric Prediction field",
	.inputs = tlcm_drift_inputs,
	.outputs = tlcm_drift_outputs,
	.params = params,
	.state_size = sizeof(adwin_node_t),
	.init = init,
	.process = process,
	.snapshot = snapshot,
	.restore = restore,
	.describe = describe,
	.fini = fini,
};
