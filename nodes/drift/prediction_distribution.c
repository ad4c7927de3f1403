/* prediction_distribution.c — node `drift.prediction_distribution`: the
 * Jensen-Shannon divergence (base 2, 0..1) between the label histogram of
 * the warm-up (the reference) and that of the last `window` predictions.
 *
 * A new class the KNN does not know shows up as a shift in what it
 * predicts, even when distances and confidences look normal. Start when
 * JSD > threshold, End after exit_samples samples with JSD <=
 * exit_factor * threshold. While stable, calm samples move the reference
 * towards recent predictions every update_interval samples (weight
 * update_factor); in drift it is frozen. Labels are kept as strings, up
 * to max_labels - 1 distinct ones; later ones share an "(other)" bucket.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/log.h"
#include "nodes/drift/common.h"
#include "nodes/drift/drift_nodes.h"

typedef struct {
	tlcm_drift_t d;
	double threshold, exit_factor, factor;
	uint64_t interval;
	uint32_t window, max_labels, nlabels;
	char **labels;
	double *ref, *wcount, *acc; /* per label */
	double acc_n;
	uint16_t *ring;             /* window label ids, oldest at head */
	uint32_t head, wlen;
	bool ready;
	double js;
} pd_node_t;

static const tlcm_param_desc_t params[] = {
	{"window", TLCM_P_INT, "300", "predictions in the sliding window", 1,
	 1e6, NULL, 0},
	{"threshold", TLCM_P_FLOAT, "0.03", "Jensen-Shannon divergence (0..1) "
	 "that starts a drift", 0, 1, NULL, 0},
	{"exit_factor", TLCM_P_FLOAT, "0.7", "End once the divergence stays at "
	 "or below exit_factor * threshold", 0, 1, NULL, 0},
	{"max_labels", TLCM_P_INT, "64", "distinct labels tracked (the last "
	 "bucket collects the rest)", 2, 4096, NULL, 0},
	{"update_interval", TLCM_P_INT, "200", "samples between reference "
	 "updates while stable (0 = never update)", 0, 1e12, NULL, 0},
	{"update_factor", TLCM_P_FLOAT, "0.05", "weight of the newest interval "
	 "in a reference update", 0, 1, NULL, 0},
	TLCM_DRIFT_COMMON_PARAMS("1000", "100", "50"),
	{0},
};

static void fini(tlcm_ctx_t *ctx, void *st)
{
	pd_node_t *n = st;
	(void)ctx;
	for (uint32_t i = 0; n->labels && i < n->nlabels; i++)
		free(n->labels[i]);
	free(n->labels);
	free(n->ref);
	free(n->wcount);
	free(n->acc);
	free(n->ring);
	n->labels = NULL;
	n->ref = n->wcount = n->acc = NULL;
	n->ring = NULL;
	n->nlabels = 0;
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	pd_node_t *n = st;
	tlcm_drift_init(ctx, &n->d, tlcm_node_drift_prediction_distribution.name);
	n->threshold = tlcm_param_float(ctx, "threshold");
	n->exit_factor = tlcm_param_float(ctx, "exit_factor");
	n->factor = tlcm_param_float(ctx, "update_factor");
	n->interval = (uint64_t)tlcm_param_int(ctx, "update_interval");
	n->window = (uint32_t)tlcm_param_int(ctx, "window");
	n->max_labels = (uint32_t)tlcm_param_int(ctx, "max_labels");
	n->labels = calloc(n->max_labels, sizeof *n->labels);
	n->ref = calloc(n->max_labels, sizeof *n->ref);
	n->wcount = calloc(n->max_labels, sizeof *n->wcount);
	n->acc = calloc(n->max_labels, sizeof *n->acc);
	n->ring = calloc(n->window, sizeof *n->ring);
	if (!n->labels || !n->ref || !n->wcount || !n->acc || !n->ring) {
		fini(ctx, st);
		return TLCM_ENOMEM;
	}
	return 0;
}

static int add_label(pd_node_t *n, const char *s, size_t len)
{
	char *c = malloc(len + 1);
	if (!c)
		return TLCM_ENOMEM;
	memcpy(c, s, len);
	c[len] = 0;
	n->labels[n->nlabels++] = c;
	return 0;
}

/* The bucket of label s (len bytes): found, added, or "(other)". */
static int label_id(pd_node_t *n, const char *s, size_t len)
{
	for (uint32_t i = 0; i < n->nlabels; i++)
		if (strlen(n->labels[i]) == len && !memcmp(n->labels[i], s, len))
			return (int)i;
	if (n->nlabels == n->max_labels)
		return (int)n->max_labels - 1;
	if (n->nlabels == n->max_labels - 1)
		s = "(other)", len = 7;
	int rc = add_label(n, s, len);
	return rc ? rc : (int)n->nlabels - 1;
}

static void window_push(pd_node_t *n, uint16_t id)
{
	if (n->wlen == n->window) {
		n->wcount[n->ring[n->head]] -= 1;
		n->ring[n->head] = id;
		n->head = (n->head + 1) % n->window;
	} else {
		n->ring[(n->head + n->wlen++) % n->window] = id;
	}
	n->wcount[id] += 1;
}

/* Move the reference towards the accumulated interval. */
static void blend(pd_node_t *n)
{
	double sr = 0;
	for (uint32_t i = 0; i < n->nlabels; i++)
		sr += n->ref[i];
	for (uint32_t i = 0; i < n->nlabels; i++)
		n->ref[i] = (1 - n->factor) * (sr > 0 ? n->ref[i] / sr : 0) +
			    n->factor * n->acc[i] / n->acc_n;
	memset(n->acc, 0, n->max_labels * sizeof *n->acc);
	n->acc_n = 0;
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	pd_node_t *n = st;
	tlcm_drift_sample_t s;
	(void)port;
	int rc = tlcm_drift_read(ctx, &n->d, m, &s);
	if (rc)
		return rc < 0 ? rc : 0;
	int id = label_id(n, s.label, s.label_len);
	if (id < 0)
		return id;
	window_push(n, (uint16_t)id);
	tlcm_drift_verdict_t v = {.metric = "label_jsd"};
	if (tlcm_drift_warming(&n->d) || !n->ready) {
		if (!n->ready)
			n->ref[id] += 1;
		if (n->d.index + 1 >= n->d.warm_until)
			n->ready = true;
	} else if (n->wlen == n->window) {
		n->js = tlcm_jsd(n->ref, n->wcount, n->nlabels);
		v.fire = n->js > n->threshold;
		v.value = v.exit_value = n->js;
		v.threshold = n->threshold;
		v.exit_threshold = n->exit_factor * n->threshold;
		v.calm = n->js <= v.exit_threshold;
		if (!n->d.in_drift && v.calm && n->interval) {
			n->acc[id] += 1;
			if (++n->acc_n >= (double)n->interval)
				blend(n);
		}
	}
	rc = tlcm_drift_decide(ctx, &n->d, &s, &v);
	if (rc == TLCM_DRIFT_STARTED || rc == TLCM_DRIFT_GAVE_UP) {
		memset(n->acc, 0, n->max_labels * sizeof *n->acc);
		n->acc_n = 0;
	}
	if (rc == TLCM_DRIFT_GAVE_UP) {
		memset(n->ref, 0, n->max_labels * sizeof *n->ref);
		n->ready = false;
	}
	return rc < 0 ? rc : 0;
}

static int snapshot(tlcm_ctx_t *ctx, void *st, tlcm_fbb_t *b)
{
	pd_node_t *n = st;
	(void)ctx;
	tlcm_fbb_ref_t *names = malloc((n->nlabels + 1) * sizeof *names);
	uint16_t *win = malloc(((size_t)n->wlen + 1) * sizeof *win);
	if (!names || !win) {
		free(names);
		free(win);
		return TLCM_ENOMEM;
	}
	for (uint32_t i = 0; i < n->nlabels; i++)
		names[i] = tlcm_fbb_cstring(b, n->labels[i]);
	for (uint32_t i = 0; i < n->wlen; i++)
		win[i] = n->ring[(n->head + i) % n->window];
	tlcm_fbb_ref_t det = tlcm_fbb_cstring(b, n->d.type);
	tlcm_fbb_ref_t com = tlcm_drift_common_build(b, &n->d);
	tlcm_fbb_ref_t lab = tlcm_HistState_labels_create(b, names, n->nlabels);
	tlcm_fbb_ref_t ref = tlcm_HistState_reference_create(b, n->ref,
							     n->nlabels);
	tlcm_fbb_ref_t wv = tlcm_HistState_window_create(b, win, n->wlen);
	tlcm_fbb_ref_t acc = tlcm_HistState_interval_create(b, n->acc,
							    n->nlabels);
	free(names);
	free(win);
	tlcm_HistState_start(b);
	tlcm_HistState_add_labels(b, lab);
	tlcm_HistState_add_reference(b, ref);
	tlcm_HistState_add_window(b, wv);
	tlcm_HistState_add_interval(b, acc);
	tlcm_HistState_add_interval_n(b, n->acc_n);
	tlcm_fbb_ref_t h = tlcm_HistState_end(b);
	tlcm_DriftState_start(b);
	tlcm_DriftState_add_detector(b, det);
	tlcm_DriftState_add_common(b, com);
	tlcm_DriftState_add_hist(b, h);
	return tlcm_DriftState_finish(b, tlcm_DriftState_end(b), NULL)
		       ? 0 : tlcm_fbb_error(b);
}

static int restore(tlcm_ctx_t *ctx, void *st, const void *data, size_t len)
{
	pd_node_t *n = st;
	tlcm_DriftState_table_t t =
		tlcm_drift_state_open(ctx, n->d.type, data, len);
	tlcm_HistState_table_t h = tlcm_DriftState_hist(t);
	if (!t || !h)
		return TLCM_EBADMSG;
	size_t nl = tlcm_HistState_labels_len(h);
	size_t nw = tlcm_HistState_window_len(h);
	size_t na = tlcm_HistState_interval_len(h);
	bool ok = nl <= n->max_labels && nw <= n->window &&
		  tlcm_HistState_reference_len(h) == nl && (na == nl || !na);
	for (size_t i = 0; ok && i < nl; i++) {
		double r = tlcm_HistState_reference_at(h, i);
		double a = tlcm_HistState_interval_at(h, i);
		ok = tlcm_HistState_labels_at(h, i) != NULL && isfinite(r) &&
		     r >= 0 && isfinite(a) && a >= 0;
	}
	for (size_t i = 0; ok && i < nw; i++)
		ok = tlcm_HistState_window_at(h, i) < nl;
	if (!ok) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: %zu labels, "
			      "%zu window entries (or their counts) do not fit "
			      "max_labels %u, window %u", nl, nw, n->max_labels,
			      n->window);
		return TLCM_EBADMSG;
	}
	for (uint32_t i = 0; i < n->nlabels; i++)
		free(n->labels[i]);
	n->nlabels = 0;
	memset(n->ref, 0, n->max_labels * sizeof *n->ref);
	memset(n->wcount, 0, n->max_labels * sizeof *n->wcount);
	memset(n->acc, 0, n->max_labels * sizeof *n->acc);
	n->acc_n = 0;
	n->head = n->wlen = 0;
	double sr = 0;
	for (size_t i = 0; i < nl; i++) {
		const char *l = tlcm_HistState_labels_at(h, i);
		int rc = add_label(n, l, strlen(l));
		if (rc)
			return rc;
		n->ref[i] = tlcm_HistState_reference_at(h, i);
		n->acc[i] = tlcm_HistState_interval_at(h, i); /* 0 if none */
		sr += n->ref[i];
	}
	n->acc_n = tlcm_HistState_interval_n(h);
	for (size_t i = 0; i < nw; i++)
		window_push(n, tlcm_HistState_window_at(h, i));
	tlcm_drift_common_load(&n->d, tlcm_DriftState_common(t));
	n->ready = sr > 0 && !tlcm_drift_warming(&n->d);
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	pd_node_t *n = st;
	(void)ctx;
	size_t k = tlcm_drift_describe(&n->d, buf, len);
	snprintf(buf + k, len - k, ",\"labels\":%u,\"window\":%u,"
		 "\"reference_ready\":%s,\"jsd\":%.9g}", n->nlabels, n->wlen,
		 n->ready ? "true" : "false", n->js);
	return 0;
}

const tlcm_node_type_t tlcm_node_drift_prediction_distribution = {
	.name = "drift.prediction_distribution",
	.doc = "Jensen-Shannon divergence between the warm-up label histogram "
	       "and a sliding window's",
	.inputs = tlcm_drift_inputs,
	.outputs = tlcm_drift_outputs,
	.params = params,
	.state_size = sizeof(pd_node_t),
	.init = init,
	.process = process,
	.snapshot = snapshot,
	.restore = restore,
	.describe = describe,
	.fini = fini,
};
