/* common.c — the drift nodes' shared parts: PRED reading, the warm-up /
 * drift / cooldown state machine, DRFT events, state snapshots and the
 * reference statistics (see common.h).
 */
#include "nodes/drift/common.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/log.h"
#include "fb/drift_fb.h"
#include "fb/prediction_fb.h"

const tlcm_port_desc_t tlcm_drift_inputs[] = {
	{"in", "PRED", "predictions (schemas/prediction.fbs)", 0},
	{0},
};

const tlcm_port_desc_t tlcm_drift_outputs[] = {
	{"events", "DRFT", "drift Start/End events (schemas/drift.fbs)", 0},
	{0},
};

static const char *const field_names[] = {"confidence", "mean_distance",
					  "top1_distance"};

int tlcm_drift_field_parse(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (s && !strcmp(s, field_names[i]))
			return i;
	return TLCM_DRIFT_F_CONFIDENCE;
}

const char *tlcm_drift_field_name(int f)
{
	return f >= 0 && f < 3 ? field_names[f] : "?";
}

bool tlcm_drift_field(const tlcm_drift_sample_t *s, int f, double *x)
{
	switch (f) {
	case TLCM_DRIFT_F_CONFIDENCE:
		*x = s->confidence;
		return true;
	case TLCM_DRIFT_F_MEAN_DISTANCE:
		*x = s->mean_distance;
		return true;
	default:
		*x = s->top1_distance;
		return s->has_top1;
	}
}

void tlcm_drift_init(tlcm_ctx_t *ctx, tlcm_drift_t *d, const char *type)
{
	memset(d, 0, sizeof *d);
	d->type = type;
	d->warm_up = (uint64_t)tlcm_param_int(ctx, "warm_up");
	d->cooldown = (uint64_t)tlcm_param_int(ctx, "cooldown");
	d->exit_samples = (uint64_t)tlcm_param_int(ctx, "exit_samples");
	d->max_drift = (uint64_t)tlcm_param_int(ctx, "max_drift");
	d->warm_until = d->warm_up;
}

int tlcm_drift_read(tlcm_ctx_t *ctx, tlcm_drift_t *d, const tlcm_msg_t *m,
		    tlcm_drift_sample_t *s)
{
	const void *buf = tlcm_msg_data(m);
	int rc = tlcm_expect_msg(ctx, m, &d->bad, "input", "Prediction",
				 tlcm_Prediction_IDENTIFIER,
				 tlcm_Prediction_verify_as_root);
	if (rc)
		return rc;
	tlcm_Prediction_table_t p = tlcm_Prediction_as_root(buf);
	memset(s, 0, sizeof *s);
	s->frame_id = tlcm_Prediction_frame_id(p);
	s->time_ns = tlcm_Prediction_time_ns(p);
	s->label = tlcm_Prediction_label(p);
	s->label_len = tlcm_Prediction_label_len(p);
	s->confidence = tlcm_Prediction_confidence(p);
	s->mean_distance = tlcm_Prediction_mean_distance(p);
	if (tlcm_Prediction_top_distances_len(p) > 0) {
		s->top1_distance = tlcm_Prediction_top_distances_at(p, 0);
		s->has_top1 = true;
	}
	if (!isfinite(s->confidence) || !isfinite(s->mean_distance) ||
	    !isfinite(s->top1_distance))
		return tlcm_bad_input(ctx, &d->bad, "input: Prediction with a non-finite %s",
			   !isfinite(s->confidence) ? "confidence"
			   : !isfinite(s->mean_distance) ? "mean_distance"
							 : "top_distances[0]");
	if (!s->label || s->label_len == 0) {
		d->skipped++; /* the KNN had nothing to say */
		return 1;
	}
	return 0;
}

int tlcm_drift_read_value(tlcm_ctx_t *ctx, tlcm_drift_t *d,
			  const tlcm_msg_t *m, int f, tlcm_drift_sample_t *s,
			  double *x)
{
	int rc = tlcm_drift_read(ctx, d, m, s);
	if (rc)
		return rc;
	if (!tlcm_drift_field(s, f, x)) {
		d->skipped++;
		return 1;
	}
	return 0;
}

static int emit_event(tlcm_ctx_t *ctx, const tlcm_drift_t *d, int kind,
		      const char *metric, double value, double threshold,
		      uint64_t index, const tlcm_drift_sample_t *s)
{
	const char *node = tlcm_node_id(ctx);
	size_t max = 160 + strlen(d->type) + strlen(node) + strlen(metric);
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, 0, &b, max);
	if (rc)
		return rc;
	tlcm_fbb_ref_t det = tlcm_fbb_cstring(&b, d->type);
	tlcm_fbb_ref_t nd = tlcm_fbb_cstring(&b, node);
	tlcm_fbb_ref_t met = tlcm_fbb_cstring(&b, metric);
	tlcm_DriftEvent_start(&b);
	tlcm_DriftEvent_add_kind(&b, (tlcm_DriftKind_enum_t)kind);
	tlcm_DriftEvent_add_detector(&b, det);
	tlcm_DriftEvent_add_node(&b, nd);
	tlcm_DriftEvent_add_metric(&b, met);
	tlcm_DriftEvent_add_value(&b, value);
	tlcm_DriftEvent_add_threshold(&b, threshold);
	tlcm_DriftEvent_add_index(&b, index);
	tlcm_DriftEvent_add_time_ns(&b, s->time_ns);
	tlcm_DriftEvent_add_frame_id(&b, s->frame_id);
	rc = tlcm_emit_end(ctx, 0, &b, tlcm_DriftEvent_end(&b),
			   tlcm_DriftEvent_IDENTIFIER);
	tlcm_node_log(ctx, TLCM_LOG_INFO, "drift %s at sample %" PRIu64
		      " (frame %" PRIu64 "): %s %.6g vs %.6g",
		      kind == tlcm_DriftKind_Start ? "start" : "end", index,
		      s->frame_id, metric, value, threshold);
	return rc == TLCM_EAGAIN ? 0 : rc; /* a dropped event is counted */
}

int tlcm_drift_decide(tlcm_ctx_t *ctx, tlcm_drift_t *d,
		      const tlcm_drift_sample_t *s,
		      const tlcm_drift_verdict_t *v)
{
	uint64_t idx = d->index++;
	int out = TLCM_DRIFT_NONE, rc = 0;
	if (d->has_event)
		d->since_event++;
	if (idx < d->warm_until)
		return out;
	d->value = v->value;
	d->threshold = v->threshold;
	const char *exit_metric = v->exit_metric ? v->exit_metric : v->metric;
	if (!d->in_drift) {
		if (!v->fire)
			return out;
		if (d->has_event && d->since_event <= d->cooldown) {
			/* fewer than `cooldown` samples lie between */
			d->suppressed++;
			return out;
		}
		d->in_drift = true;
		d->has_event = true;
		d->since_event = d->quiet = d->drift_samples = 0;
		d->trigger = v->trigger;
		d->starts++;
		out = TLCM_DRIFT_STARTED;
		rc = emit_event(ctx, d, tlcm_DriftKind_Start, v->metric,
				v->value, v->threshold, idx, s);
		return rc ? rc : out;
	}
	d->drift_samples++;
	d->quiet = v->calm ? d->quiet + 1 : 0;
	if (d->quiet >= d->exit_samples) {
		out = TLCM_DRIFT_ENDED;
		rc = emit_event(ctx, d, tlcm_DriftKind_End, exit_metric,
				v->exit_value, v->exit_threshold, idx, s);
	} else if (d->max_drift && d->drift_samples >= d->max_drift) {
		out = TLCM_DRIFT_GAVE_UP;
		d->warm_until = d->index + d->warm_up;
		rc = emit_event(ctx, d, tlcm_DriftKind_End, "drift_samples",
				(double)d->drift_samples,
				(double)d->max_drift, idx, s);
	} else {
		return out;
	}
	d->in_drift = false;
	d->since_event = d->quiet = 0;
	d->ends++;
	return rc ? rc : out;
}

tlcm_fbb_ref_t tlcm_drift_common_build(tlcm_fbb_t *b, const tlcm_drift_t *d)
{
	tlcm_DriftCommon_start(b);
	tlcm_DriftCommon_add_index(b, d->index);
	tlcm_DriftCommon_add_warm_until(b, d->warm_until);
	tlcm_DriftCommon_add_in_drift(b, d->in_drift);
	tlcm_DriftCommon_add_has_event(b, d->has_event);
	tlcm_DriftCommon_add_since_event(b, d->since_event);
	tlcm_DriftCommon_add_quiet(b, d->quiet);
	tlcm_DriftCommon_add_drift_samples(b, d->drift_samples);
	tlcm_DriftCommon_add_starts(b, d->starts);
	tlcm_DriftCommon_add_ends(b, d->ends);
	tlcm_DriftCommon_add_suppressed(b, d->suppressed);
	tlcm_DriftCommon_add_skipped(b, d->skipped);
	tlcm_DriftCommon_add_bad(b, d->bad);
	tlcm_DriftCommon_add_trigger(b, (uint8_t)d->trigger);
	return tlcm_DriftCommon_end(b);
}

void tlcm_drift_common_load(tlcm_drift_t *d, tlcm_DriftCommon_table_t t)
{
	d->index = tlcm_DriftCommon_index(t);
	d->warm_until = tlcm_DriftCommon_warm_until(t);
	d->in_drift = tlcm_DriftCommon_in_drift(t);
	d->has_event = tlcm_DriftCommon_has_event(t);
	d->since_event = tlcm_DriftCommon_since_event(t);
	d->quiet = tlcm_DriftCommon_quiet(t);
	d->drift_samples = tlcm_DriftCommon_drift_samples(t);
	d->starts = tlcm_DriftCommon_starts(t);
	d->ends = tlcm_DriftCommon_ends(t);
	d->suppressed = tlcm_DriftCommon_suppressed(t);
	d->skipped = tlcm_DriftCommon_skipped(t);
	d->bad = tlcm_DriftCommon_bad(t);
	d->trigger = tlcm_DriftCommon_trigger(t);
}

tlcm_DriftState_table_t tlcm_drift_state_open(tlcm_ctx_t *ctx,
					      const char *type,
					      const void *data, size_t len)
{
	const char *why = NULL;
	if (tlcm_DriftState_verify_as_root(data, len, &why)) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: %s", why);
		return NULL;
	}
	tlcm_DriftState_table_t t = tlcm_DriftState_as_root(data);
	const char *det = tlcm_DriftState_detector(t);
	if (!det || strcmp(det, type) != 0) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: written by "
			      "a %s node, this is %s", det ? det : "?", type);
		return NULL;
	}
	if (!tlcm_DriftState_common(t)) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: no common "
			      "part");
		return NULL;
	}
	return t;
}

size_t tlcm_drift_describe(const tlcm_drift_t *d, char *buf, size_t len)
{
	uint64_t left = d->index < d->warm_until ? d->warm_until - d->index
						 : 0;
	int n = snprintf(buf, len, "{\"detector\":\"%s\",\"index\":%" PRIu64
			 ",\"warm_up_left\":%" PRIu64 ",\"in_drift\":%s,"
			 "\"since_event\":%" PRIu64 ",\"starts\":%" PRIu64
			 ",\"ends\":%" PRIu64 ",\"suppressed\":%" PRIu64
			 ",\"skipped\":%" PRIu64 ",\"bad\":%" PRIu64
			 ",\"value\":%.9g,\"threshold\":%.9g",
			 d->type, d->index, left,
			 d->in_drift ? "true" : "false", d->since_event,
			 d->starts, d->ends, d->suppressed, d->skipped, d->bad,
			 isfinite(d->value) ? d->value : 0.0,
			 isfinite(d->threshold) ? d->threshold : 0.0);
	return n < 0 ? 0 : (size_t)n >= len ? len - 1 : (size_t)n;
}

/* ---- reference statistics ----------------------------------------------- */

void tlcm_drift_ref_init(tlcm_ctx_t *ctx, tlcm_drift_ref_t *r)
{
	memset(r, 0, sizeof *r);
	r->interval = (uint64_t)tlcm_param_int(ctx, "update_interval");
	r->factor = tlcm_param_float(ctx, "update_factor");
	r->min_std = tlcm_param_float(ctx, "min_std");
}

void tlcm_drift_ref_forget(tlcm_drift_ref_t *r)
{
	r->ready = false;
	memset(&r->ref, 0, sizeof r->ref);
	memset(&r->acc, 0, sizeof r->acc);
}

void tlcm_drift_ref_learn(tlcm_drift_ref_t *r, double x)
{
	tlcm_welford_add(&r->ref, x);
}

void tlcm_drift_ref_finish(tlcm_drift_ref_t *r)
{
	r->ready = r->ref.n >= 2; /* else learning goes on */
}

void tlcm_drift_ref_pause(tlcm_drift_ref_t *r)
{
	memset(&r->acc, 0, sizeof r->acc);
}

void tlcm_drift_ref_track(tlcm_drift_ref_t *r, double x, bool calm)
{
	if (!r->interval || !calm)
		return;
	tlcm_welford_add(&r->acc, x);
	if (r->acc.n < r->interval)
		return;
	double f = r->factor, n = (double)(r->ref.n ? r->ref.n : 1);
	double var = (1 - f) * tlcm_welford_var(&r->ref) +
		     f * tlcm_welford_var(&r->acc);
	r->ref.mean = (1 - f) * r->ref.mean + f * r->acc.mean;
	r->ref.m2 = var * n;
	tlcm_drift_ref_pause(r);
}

double tlcm_drift_ref_mean(const tlcm_drift_ref_t *r)
{
	return r->ref.mean;
}

double tlcm_drift_ref_std(const tlcm_drift_ref_t *r)
{
	double s = sqrt(tlcm_welford_var(&r->ref));
	double floor = 1e-9 * (1.0 + fabs(r->ref.mean));
	if (s < r->min_std)
		s = r->min_std;
	return s > floor ? s : floor;
}

void tlcm_drift_ref_set(tlcm_drift_ref_t *r, double mean, double std)
{
	r->ref.n = 2;
	r->ref.mean = mean;
	r->ref.m2 = std * std * 2.0;
	r->ready = true;
	tlcm_drift_ref_pause(r);
}

int tlcm_drift_ref_load(tlcm_ctx_t *ctx, tlcm_drift_ref_t *r,
			const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "reference %s: cannot open",
			      path);
		return TLCM_ENOENT;
	}
	char text[4096];
	size_t n = fread(text, 1, sizeof text - 1, f);
	bool more = fgetc(f) != EOF;
	fclose(f);
	text[n] = 0;
	cJSON *j = more ? NULL : cJSON_Parse(text);
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "reference_mean");
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "reference_std");
	int rc = 0;
	if (!cJSON_IsNumber(m) || !cJSON_IsNumber(s) ||
	    !isfinite(m->valuedouble) || !isfinite(s->valuedouble) ||
	    s->valuedouble < 0) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "reference %s: expected a "
			      "JSON object (< 4 KiB) with numbers "
			      "\"reference_mean\" and \"reference_std\" >= 0",
			      path);
		rc = TLCM_EPARSE;
	} else {
		tlcm_drift_ref_set(r, m->valuedouble, s->valuedouble);
	}
	cJSON_Delete(j);
	return rc;
}

tlcm_fbb_ref_t tlcm_drift_ref_build(tlcm_fbb_t *b, const tlcm_drift_ref_t *r)
{
	tlcm_RefStats_start(b);
	tlcm_RefStats_add_ready(b, r->ready);
	tlcm_RefStats_add_n(b, r->ref.n);
	tlcm_RefStats_add_mean(b, r->ref.mean);
	tlcm_RefStats_add_m2(b, r->ref.m2);
	tlcm_RefStats_add_acc_n(b, r->acc.n);
	tlcm_RefStats_add_acc_mean(b, r->acc.mean);
	tlcm_RefStats_add_acc_m2(b, r->acc.m2);
	return tlcm_RefStats_end(b);
}

bool tlcm_drift_ref_restore(tlcm_drift_ref_t *r, tlcm_RefStats_table_t t)
{
	double v[4] = {tlcm_RefStats_mean(t), tlcm_RefStats_m2(t),
		       tlcm_RefStats_acc_mean(t), tlcm_RefStats_acc_m2(t)};
	for (int i = 0; i < 4; i++)
		if (!isfinite(v[i]) || (i % 2 && v[i] < 0))
			return false;
	r->ready = tlcm_RefStats_ready(t);
	r->ref.n = tlcm_RefStats_n(t);
	r->ref.mean = tlcm_RefStats_mean(t);
	r->ref.m2 = tlcm_RefStats_m2(t);
	r->acc.n = tlcm_RefStats_acc_n(t);
	r->acc.mean = tlcm_RefStats_acc_mean(t);
	r->acc.m2 = tlcm_RefStats_acc_m2(t);
	return true;
}
