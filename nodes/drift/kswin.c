/* kswin.c — node `drift.kswin`: KSWIN (river's rule, our KS test) on one
 * numeric field of the predictions.
 *
 * The window's older part is the reference. While stable it slides with
 * the data; a detection (p <= alpha and D > 0.1) starts a drift and
 * freezes it, so the recent samples keep being tested against the
 * pre-drift data: End after exit_samples tests with p > alpha. Event
 * value: the p-value; threshold: alpha.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/log.h"
#include "nodes/drift/common.h"
#include "nodes/drift/drift_nodes.h"

typedef struct {
	tlcm_drift_t d;
	tlcm_kswin_t k;
	int field;
} kswin_node_t;

static const tlcm_param_desc_t params[] = {
	{"field", TLCM_P_ENUM, "confidence", "the watched value", 0, 0,
	 TLCM_DRIFT_FIELDS, 0},
	{"alpha", TLCM_P_FLOAT, "0.005", "significance of the KS test", 1e-300,
	 0.5, NULL, 0},
	{"window_size", TLCM_P_INT, "100", "samples kept (reference + recent)",
	 2, 100000, NULL, 0},
	{"stat_size", TLCM_P_INT, "30", "recent samples tested (at most half "
	 "the window)", 1, 50000, NULL, 0},
	{"seed", TLCM_P_INT, "1", "seed of the reference draws", 0, 0, NULL, 0},
	TLCM_DRIFT_COMMON_PARAMS("0", "100", "30"),
	{0},
};

static int init(tlcm_ctx_t *ctx, void *st)
{
	kswin_node_t *n = st;
	tlcm_drift_init(ctx, &n->d, tlcm_node_drift_kswin.name);
	n->field = tlcm_drift_field_parse(tlcm_param_str(ctx, "field"));
	int64_t ws = tlcm_param_int(ctx, "window_size");
	int64_t ss = tlcm_param_int(ctx, "stat_size");
	int rc = tlcm_kswin_init(&n->k, tlcm_param_float(ctx, "alpha"),
				 (uint32_t)ws, (uint32_t)ss,
				 (uint64_t)tlcm_param_int(ctx, "seed"));
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot set up KSWIN "
			      "(window_size %lld, stat_size %lld; stat_size must "
			      "be at most half the window): %s", (long long)ws,
			      (long long)ss, tlcm_strerror(rc));
		return rc;
	}
	n->k.keep_ref = true;
	return 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	kswin_node_t *n = st;
	(void)ctx;
	tlcm_kswin_fini(&n->k);
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	kswin_node_t *n = st;
	tlcm_drift_sample_t s;
	double x;
	(void)port;
	int rc = tlcm_drift_read_value(ctx, &n->d, m, n->field, &s, &x);
	if (rc)
		return rc < 0 ? rc : 0;
	n->k.freeze = n->d.in_drift;
	bool fire = tlcm_kswin_update(&n->k, x);
	tlcm_drift_verdict_t v = {
		.fire = fire,
		.calm = !fire && n->k.p_value > n->k.alpha,
		.metric = tlcm_drift_field_name(n->field),
		.value = n->k.p_value,
		.threshold = n->k.alpha,
		.exit_value = n->k.p_value,
		.exit_threshold = n->k.alpha,
	};
	rc = tlcm_drift_decide(ctx, &n->d, &s, &v);
	if (rc == TLCM_DRIFT_GAVE_UP)
		tlcm_kswin_reset(&n->k);
	return rc < 0 ? rc : 0;
}

static int snapshot(tlcm_ctx_t *ctx, void *st, tlcm_fbb_t *b)
{
	kswin_node_t *n = st;
	const tlcm_kswin_t *k = &n->k;
	(void)ctx;
	double *w = malloc(((size_t)k->nref + k->nrecent + 1) * sizeof *w);
	if (!w)
		return TLCM_ENOMEM;
	for (uint32_t i = 0; i < k->nref; i++)
		w[i] = tlcm_kswin_ref_at(k, i);
	for (uint32_t i = 0; i < k->nrecent; i++)
		w[k->nref + i] = tlcm_kswin_recent_at(k, i);
	tlcm_fbb_ref_t det = tlcm_fbb_cstring(b, n->d.type);
	tlcm_fbb_ref_t com = tlcm_drift_common_build(b, &n->d);
	tlcm_fbb_ref_t ref = tlcm_KswinState_reference_create(b, w, k->nref);
	tlcm_fbb_ref_t rec = tlcm_KswinState_recent_create(b, w + k->nref,
							   k->nrecent);
	free(w);
	tlcm_KswinState_start(b);
	tlcm_KswinState_add_rng(b, k->rng);
	tlcm_KswinState_add_reference(b, ref);
	tlcm_KswinState_add_recent(b, rec);
	tlcm_fbb_ref_t ks = tlcm_KswinState_end(b);
	tlcm_DriftState_start(b);
	tlcm_DriftState_add_detector(b, det);
	tlcm_DriftState_add_common(b, com);
	tlcm_DriftState_add_kswin(b, ks);
	return tlcm_DriftState_finish(b, tlcm_DriftState_end(b), NULL)
		       ? 0 : tlcm_fbb_error(b);
}

static int restore(tlcm_ctx_t *ctx, void *st, const void *data, size_t len)
{
	kswin_node_t *n = st;
	tlcm_kswin_t *k = &n->k;
	tlcm_DriftState_table_t t =
		tlcm_drift_state_open(ctx, n->d.type, data, len);
	tlcm_KswinState_table_t ks = tlcm_DriftState_kswin(t);
	if (!t || !ks)
		return TLCM_EBADMSG;
	size_t nref = tlcm_KswinState_reference_len(ks);
	size_t nrec = tlcm_KswinState_recent_len(ks);
	bool finite = true;
	for (size_t i = 0; finite && i < nref; i++)
		finite = isfinite(tlcm_KswinState_reference_at(ks, i));
	for (size_t i = 0; finite && i < nrec; i++)
		finite = isfinite(tlcm_KswinState_recent_at(ks, i));
	if (!finite) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: non-finite "
			      "window samples");
		return TLCM_EBADMSG;
	}
	if (nref > k->window_size - k->stat_size || nrec > k->stat_size) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: its windows "
			      "(%zu + %zu samples) do not fit window_size %u, "
			      "stat_size %u", nref, nrec, k->window_size,
			      k->stat_size);
		return TLCM_EBADMSG;
	}
	tlcm_kswin_reset(k);
	k->freeze = false;
	for (size_t i = 0; i < nref; i++)
		tlcm_kswin_push_ref(k, tlcm_KswinState_reference_at(ks, i));
	for (size_t i = 0; i < nrec; i++)
		tlcm_kswin_push_recent(k, tlcm_KswinState_recent_at(ks, i));
	k->rng = tlcm_KswinState_rng(ks);
	tlcm_drift_common_load(&n->d, tlcm_DriftState_common(t));
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	kswin_node_t *n = st;
	(void)ctx;
	size_t k = tlcm_drift_describe(&n->d, buf, len);
	snprintf(buf + k, len - k, ",\"field\":\"%s\",\"reference\":%u,"
		 "\"recent\":%u,\"p_value\":%.9g,\"ks_d\":%.9g}",
		 tlcm_drift_field_name(n->field), n->k.nref, n->k.nrecent,
		 n->k.p_value, n->k.stat);
	return 0;
}

const tlcm_node_type_t tlcm_node_drift_kswin = {
	.name = "drift.kswin",
	.doc = "KSWIN (Kolmogorov-Smirnov windows) on a numeric Prediction "
	       "field",
	.inputs = tlcm_drift_inputs,
	.outputs = tlcm_drift_outputs,
	.params = params,
	.state_size = sizeof(kswin_node_t),
	.init = init,
	.process = process,
	.snapshot = snapshot,
	.restore = restore,
	.describe = describe,
	.fini = fini,
};
