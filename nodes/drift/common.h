/* common.h — what every drift node shares.
 *
 * A drift node reads Prediction messages (PRED), runs its test from
 * detectors.h on one value per sample and emits DriftEvent messages
 * (DRFT): Start when it enters drift, End when it leaves. The state
 * machine here is the same for all of them:
 *
 *   warm-up   the first warm_up samples (again after a give-up) only
 *             teach the reference; no Start.
 *   stable    the node's verdict `fire` starts a drift, unless fewer than
 *             `cooldown` samples lie between the last event and this one
 *             (counted as suppressed; the nodes keep such an alarm capped
 *             at the threshold, so it starts the drift once the cooldown
 *             is over). The reference may be updated (never in drift).
 *   drift     End after `exit_samples` consecutive `calm` samples (the
 *             statistic at or below its exit level: hysteresis), or after
 *             `max_drift` samples in drift (give up: the node relearns its
 *             reference from a new warm-up; 0 = never).
 *
 * Every event carries detector (node type), node id, metric, value,
 * threshold, the sample's index (0-based, counting every PRED the node
 * accepted), its time_ns and frame_id. A message that is not a valid PRED
 * (or carries NaN/inf) is counted, logged naming the node, and answered
 * with TLCM_EBADMSG so the engine counts it under the node's on_error
 * policy (`skip` keeps the graph running).
 */
#ifndef TLCM_DRIFT_COMMON_H
#define TLCM_DRIFT_COMMON_H

#include "engine/node.h"
#include "fb/drift_state_fb.h"
#include "nodes/drift/detectors.h"

/* The parameters every drift node has (defaults per node type). */
#define TLCM_DRIFT_COMMON_PARAMS(warm, cool, exits)                          \
	{"warm_up", TLCM_P_INT, warm, "samples before detecting (they teach " \
	 "the reference)", 0, 1e12, NULL, 0},                                \
	{"cooldown", TLCM_P_INT, cool, "samples after an event before a new " \
	 "Start", 0, 1e12, NULL, 0},                                         \
	{"exit_samples", TLCM_P_INT, exits, "consecutive samples at or below " \
	 "the exit level before End", 1, 1e12, NULL, 0},                     \
	{"max_drift", TLCM_P_INT, "0", "samples in drift after which the "   \
	 "node accepts the new data: End, then a new warm-up (0 = never)",   \
	 0, 1e12, NULL, 0}

extern const tlcm_port_desc_t tlcm_drift_inputs[];
extern const tlcm_port_desc_t tlcm_drift_outputs[];

/* One accepted PRED. */
typedef struct tlcm_drift_sample {
	uint64_t frame_id, time_ns;
	const char *label; /* not NUL-safe beyond label_len */
	size_t label_len;
	double confidence, mean_distance, top1_distance;
	bool has_top1;
} tlcm_drift_sample_t;

/* The numeric fields a generic detector can watch (param `field`). */
enum { TLCM_DRIFT_F_CONFIDENCE, TLCM_DRIFT_F_MEAN_DISTANCE,
       TLCM_DRIFT_F_TOP1_DISTANCE };
#define TLCM_DRIFT_FIELDS "confidence|mean_distance|top1_distance"
int tlcm_drift_field_parse(const char *s);
const char *tlcm_drift_field_name(int f);
/* The value of field f, false when the sample lacks it. */
bool tlcm_drift_field(const tlcm_drift_sample_t *s, int f, double *x);

typedef struct tlcm_drift {
	const char *type; /* node type name (the events' detector) */
	uint64_t warm_up, cooldown, exit_samples, max_drift;
	/* state */
	uint64_t index, warm_until, since_event, quiet, drift_samples;
	bool in_drift, has_event;
	int trigger; /* node-defined: which test started the drift */
	uint64_t starts, ends, suppressed, skipped, bad;
	double value, threshold; /* the last statistic and its threshold */
} tlcm_drift_t;

/* Read the common parameters (call from init). */
void tlcm_drift_init(tlcm_ctx_t *ctx, tlcm_drift_t *d, const char *type);

/* Verify and read a PRED. Returns 0 and fills s; 1 when the sample has no
 * prediction (empty label: the KNN was empty) and was counted as skipped;
 * TLCM_EBADMSG for anything else (counted, logged). */
int tlcm_drift_read(tlcm_ctx_t *ctx, tlcm_drift_t *d, const tlcm_msg_t *m,
		    tlcm_drift_sample_t *s);
/* tlcm_drift_read, then the value of field f (*x): 0 with a value, 1
 * when there is none (no prediction, or a sample without the field: both
 * counted as skipped), TLCM_EBADMSG as above. */
int tlcm_drift_read_value(tlcm_ctx_t *ctx, tlcm_drift_t *d,
			  const tlcm_msg_t *m, int f, tlcm_drift_sample_t *s,
			  double *x);

static inline bool tlcm_drift_warming(const tlcm_drift_t *d)
{
	return d->index < d->warm_until;
}

/* What the node's test says about the current sample. */
typedef struct tlcm_drift_verdict {
	bool fire;           /* drift (Start, when stable) */
	bool calm;           /* at or below the exit level */
	int trigger;         /* which test fired */
	const char *metric;  /* for a Start */
	double value, threshold;          /* statistic and its threshold */
	const char *exit_metric;          /* for an End (NULL: metric) */
	double exit_value, exit_threshold;
} tlcm_drift_verdict_t;

enum { TLCM_DRIFT_NONE, TLCM_DRIFT_STARTED, TLCM_DRIFT_ENDED,
       TLCM_DRIFT_GAVE_UP };

/* Advance the state machine by one sample (every accepted sample, warm-up
 * included) and emit what it decides. Returns TLCM_DRIFT_* or a negative
 * error from emitting. On GAVE_UP the node must forget its reference (a
 * new warm-up has begun). */
int tlcm_drift_decide(tlcm_ctx_t *ctx, tlcm_drift_t *d,
		      const tlcm_drift_sample_t *s,
		      const tlcm_drift_verdict_t *v);

/* Snapshot and restore of the common state. */
tlcm_fbb_ref_t tlcm_drift_common_build(tlcm_fbb_t *b, const tlcm_drift_t *d);
void tlcm_drift_common_load(tlcm_drift_t *d, tlcm_DriftCommon_table_t t);
/* Verify a DriftState written by node type `type`; NULL (and a log line
 * naming the node) when it is unusable. */
tlcm_DriftState_table_t tlcm_drift_state_open(tlcm_ctx_t *ctx,
					      const char *type,
					      const void *data, size_t len);
/* Begin a describe() JSON object with the common fields; returns the
 * length written (the caller appends and closes with '}'). */
size_t tlcm_drift_describe(const tlcm_drift_t *d, char *buf, size_t len);

/* ---- reference statistics (knn_distance, confidence) --------------------
 * Learned during warm-up (or loaded), then, while stable and calm, moved
 * every `interval` samples towards the interval's mean/variance by
 * `factor`: mean = (1 - f) mean + f mean_interval (likewise variance). */
typedef struct tlcm_drift_ref {
	uint64_t interval;
	double factor, min_std;
	bool ready;
	tlcm_welford_t ref, acc;
} tlcm_drift_ref_t;

#define TLCM_DRIFT_REF_PARAMS(min_std)                                       \
	{"update_interval", TLCM_P_INT, "50", "samples between reference "    \
	 "updates while stable (0 = never update)", 0, 1e12, NULL, 0},        \
	{"update_factor", TLCM_P_FLOAT, "0.05", "weight of the newest "      \
	 "interval in a reference update", 0, 1, NULL, 0},                   \
	{"min_std", TLCM_P_FLOAT, min_std, "floor for the reference "         \
	 "standard deviation", 0, 1e12, NULL, 0}

void tlcm_drift_ref_init(tlcm_ctx_t *ctx, tlcm_drift_ref_t *r);
void tlcm_drift_ref_forget(tlcm_drift_ref_t *r);
/* During warm-up: add x. At the end of warm-up call _finish, which makes
 * the reference ready once it has at least two samples. */
void tlcm_drift_ref_learn(tlcm_drift_ref_t *r, double x);
void tlcm_drift_ref_finish(tlcm_drift_ref_t *r);
/* While stable: accumulate x when calm; blend at each full interval. */
void tlcm_drift_ref_track(tlcm_drift_ref_t *r, double x, bool calm);
/* Drop the current interval (entering drift). */
void tlcm_drift_ref_pause(tlcm_drift_ref_t *r);
double tlcm_drift_ref_mean(const tlcm_drift_ref_t *r);
double tlcm_drift_ref_std(const tlcm_drift_ref_t *r);
/* Set from known statistics (a reference file). */
void tlcm_drift_ref_set(tlcm_drift_ref_t *r, double mean, double std);
/* Load {"reference_mean": m, "reference_std": s} (the prototype's file
 * format); errors are logged naming the node and the file. */
int tlcm_drift_ref_load(tlcm_ctx_t *ctx, tlcm_drift_ref_t *r,
			const char *path);
tlcm_fbb_ref_t tlcm_drift_ref_build(tlcm_fbb_t *b, const tlcm_drift_ref_t *r);
/* False (nothing changed) when the values are not finite. */
bool tlcm_drift_ref_restore(tlcm_drift_ref_t *r, tlcm_RefStats_table_t t);

#endif
