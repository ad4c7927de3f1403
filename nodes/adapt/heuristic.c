/* heuristic.c — node `adapt.heuristic`: teach the KNN what the quarantine
 * holds, without ground truth, and undo it when it makes things worse.
 *
 * Each QuarantineBatch (QBAT on `batch`) is clustered (cluster.h: noise
 * test, k-means++ with k by silhouette); a cluster with at least
 * min_cluster_size members and a dispersion within max_dispersion is a
 * candidate, the largest goes first. It keeps an existing label when it
 * sits inside that class (most members predicted as it, at neighbour
 * distances typical for it), else gets the next pseudo-label new_1,
 * new_2, ... Its `representatives` members nearest the centroid are the
 * samples taught.
 *
 * Safety. `heldout` carries the KNN's predictions; the last heldout_size
 * not used for the adaptation form the held-out buffer. A pre-check
 * re-votes them with the representatives added (rules.h) and rejects the
 * candidate if rules 1/2 fail. Then a group snapshot of this node and the
 * KNN ("before adapt new_1"), the representatives go to knn.samples, a
 * Taken notice to the quarantine, and the trial watches validate_window
 * held-out predictions: mean confidence, the before-dominant label's share,
 * the quarantine's size. Rules broken → tlcm_rollback_group (the KNN is
 * restored, engine/node.h), Released notice, own snapshot "rollback: ...";
 * else Resolved notice and group snapshot "adapt new_1 (N samples)".
 *
 * Ground truth (`labels`, SMPL) is buffered during a trial, then: a
 * member of an adaptation is relabelled in the KNN (or added, if it was
 * not a representative) and votes for its pseudo-label; rename_votes
 * agreeing votes rename every sample of that pseudo-label. Other frames
 * are added with their embedding (from the message or the last batch) and
 * resolved in the quarantine.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/log.h"
#include "fb/adapt_event_fb.h"
#include "fb/adapt_state_fb.h"
#include "fb/labeled_sample_fb.h"
#include "fb/prediction_fb.h"
#include "fb/quarantine_fb.h"
#include "fb/quarantine_notice_fb.h"
#include "nodes/adapt/adapt.h"
#include "nodes/adapt/cluster.h"
#include "nodes/adapt/rules.h"

#define MAX_K 64
#define MAX_LABELS 1024
#define MAX_LABEL_LEN 255
#define HISTORY 32
#define MAX_GT 4096
#define MAX_DIM 65536

enum { IN_BATCH, IN_HELDOUT, IN_LABELS };
enum { OUT_SAMPLES, OUT_NOTICES, OUT_EVENTS };
enum { T_NONE, T_START, T_RUNNING, T_ROLLBACK };

typedef struct {
	uint64_t frame;
	char *label, *pseudo, *truth;
	bool in_knn;
	float *x;
} rep_t;

typedef struct {
	uint64_t frame;
	int label;
	float conf, mdist;
	float *x; /* dim values, or NULL */
	size_t k;
	int top[MAX_K];
	float td[MAX_K];
} held_t;

typedef struct {
	uint64_t frame;
	int label, truth; /* label ids; truth -1: none carried */
	float conf, mdist;
} qs_t;

struct ckey {          /* a sample of the distance cache */
	uint64_t frame, fp; /* fp: its features' fingerprint */
};

typedef struct {
	uint64_t frame;
	char *label;
	float *x;
	size_t xlen;
} gt_t;

typedef struct {
	int phase;
	uint64_t before_v, before_kv;
	char *label, *dominant;
	bool new_label;
	rep_t *m; /* members; the representatives have in_knn */
	size_t nm;
	float disp;
	double conf_before, share_before, conf_sum;
	uint32_t q_before, q_now, seen, dom_seen;
	char why[128];
	char truth[160]; /* evaluation: the members' carried truth */
	float purity;
} trial_t;

typedef struct {
	const char *knn, *prefix;
	size_t min_cluster, nreps, held_cap, min_held, window, cool, votes,
		max_taught;
	double max_disp, disp_factor, inside_share, inside_factor;
	double inside_centroid, min_effect;
	tlcm_cluster_opts_t copts;
	tlcm_adapt_rules_t rules;
	bool precheck, inverse;
	int metric;
	char *labels[MAX_LABELS];
	size_t label_len[MAX_LABELS];
	size_t nlabels;
	held_t *held;
	size_t nheld, held_next, dim;
	qs_t *qs;
	float *qx;           /* the last batch's features */
	size_t qx_cap;
	float *px;           /* prepared features (cosine) */
	size_t px_cap;
	size_t nqs, qdim;
	uint32_t q_size;
	uint64_t q_admitted;   /* the quarantine's admissions so far */
	uint64_t fruitless;    /* q_admitted when clustering last found no
				  coherent cluster (+1; 0: it did) */
	/* the squared distances of the last batch clustered (prepared
	 * features), kept by frame and features' fingerprint: the next
	 * batch mostly holds the same samples, so only the new ones' rows
	 * are computed. Two sets of buffers, swapped per batch. */
	float *cd2, *d2_next;
	struct ckey *ckey, *ckey_next;
	size_t ncx, cdim, cd2_cap, d2_next_cap, ckey_cap, ckey_next_cap;
	rep_t *taught;
	size_t ntaught;
	trial_t tr;
	gt_t *gt;
	size_t ngt;
	char *hist[HISTORY];
	size_t nhist;
	char commit_reason[64]; /* a commit snapshot still to take */
	char commit_label[64];
	uint32_t commit_n, commit_reps, commit_qb, commit_qa;
	float commit_disp, commit_purity;
	char commit_truth[160];
	double commit_cb, commit_ca;
	uint32_t next_label;
	uint64_t cooldown;
	uint64_t batches, trials, commits, rollbacks, rejects, relabels,
		renames, gt_added, gt_unknown, bad;
	bool warned, warned_auto;
} adapt_t;

static const tlcm_port_desc_t inputs[] = {
	{"batch", "QBAT", "waiting samples (quarantine.batch)", 0},
	{"heldout", "PRED", "the KNN's predictions, with features for the "
	 "pre-check (knn.out)", 0},
	{"labels", "SMPL", "ground truth: frame id and true label, embedding "
	 "optional", TLCM_PORT_OPTIONAL},
	{0},
};

static const tlcm_port_desc_t outputs[] = {
	{"samples", "SMPL", "labelled samples for knn.samples (a feedback "
	 "edge)", 0},
	{"notices", "QNOT", "Taken / Resolved / Released for "
	 "quarantine.notices (a feedback edge)", 0},
	{"events", "ADPT", "one AdaptEvent per trial, commit, rollback, "
	 "rejection and rename", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"knn", TLCM_P_STRING, "knn", "id of the knn node taught (group "
	 "snapshots and rollbacks)", 0, 0, NULL, 0},
	{"min_cluster_size", TLCM_P_INT, "5", "smallest cluster learned", 2,
	 100000, NULL, TLCM_PARAM_RUNTIME},
	{"max_dispersion", TLCM_P_FLOAT, "0", "largest RMS distance of a "
	 "cluster's members to its centroid; 0: dispersion_factor x the "
	 "median spread of the labels in the held-out buffer", 0, 0, NULL,
	 TLCM_PARAM_RUNTIME},
	{"dispersion_factor", TLCM_P_FLOAT, "1.0", "see max_dispersion", 0,
	 100, NULL, TLCM_PARAM_RUNTIME},
	{"representatives", TLCM_P_INT, "10", "members sent to the KNN (the "
	 "nearest to the centroid)", 1, 10000, NULL, TLCM_PARAM_RUNTIME},
	{"k_max", TLCM_P_INT, "6", "most clusters tried in a batch", 1,
	 TLCM_CLUSTER_MAX_K, NULL, 0},
	{"min_silhouette", TLCM_P_FLOAT, "0.2", "mean silhouette a first "
	 "split into k >= 2 clusters needs", -1, 1, NULL, 0},
	{"outlier_factor", TLCM_P_FLOAT, "2.5", "noise: a sample whose "
	 "(min_cluster_size-1)-th neighbour is farther than this x the "
	 "median (0: no noise test)", 0, 100, NULL, 0},
	{"seed", TLCM_P_INT, "1", "k-means++ seeding", 0, 0, NULL, 0},
	{"inside_share", TLCM_P_FLOAT, "0.8", "existing label: at least "
	 "this share of the cluster is predicted as it...", 0, 1, NULL, 0},
	{"inside_factor", TLCM_P_FLOAT, "1.0", "...and the members' median "
	 "mean_distance is at most this x that label's in the held-out "
	 "buffer", 0, 100, NULL, 0},
	{"min_effect", TLCM_P_FLOAT, "0", "pre-check: a new label must take "
	 "over at least this share of the held-out answers (0: no test). A "
	 "class that appears in the stream takes a noticeable share; a "
	 "cluster of a known class's rare outliers takes almost none and "
	 "would only steal its typical frames", 0, 1, NULL,
	 TLCM_PARAM_RUNTIME},
	{"inside_centroid", TLCM_P_FLOAT, "0", "when > 0, the second test "
	 "is instead: the cluster's centroid lies within this x the label's "
	 "spread of the label's held-out centroid", 0, 100, NULL, 0},
	{"label_prefix", TLCM_P_STRING, "new_", "pseudo-labels: prefix and "
	 "a number", 0, 0, NULL, 0},
	{"heldout_size", TLCM_P_INT, "200", "held-out predictions kept", 1,
	 100000, NULL, 0},
	{"min_heldout", TLCM_P_INT, "20", "held-out predictions needed "
	 "before adapting", 1, 100000, NULL, 0},
	{"validate_window", TLCM_P_INT, "50", "held-out predictions after an "
	 "adaptation before its verdict", 1, 1000000, NULL, 0},
	{"confidence_ratio", TLCM_P_FLOAT, "0.9", "roll back when the mean "
	 "confidence falls below this x before (0: off)", 0, 10, NULL, 0},
	{"share_ratio", TLCM_P_FLOAT, "0.5", "roll back when the dominant "
	 "label's share falls below this x before (0: off)", 0, 10, NULL, 0},
	{"growth_ratio", TLCM_P_FLOAT, "1.5", "roll back when the quarantine "
	 "grows above this x before (0: off)", 0, 100, NULL, 0},
	{"precheck", TLCM_P_BOOL, "true", "re-vote the held-out buffer with "
	 "the representatives first; reject without sending when rules 1/2 "
	 "fail", 0, 0, NULL, TLCM_PARAM_RUNTIME},
	{"metric", TLCM_P_ENUM, "euclidean", "the knn's metric (pre-check; "
	 "cosine also clusters normalised features)", 0, 0,
	 "euclidean|cosine|manhattan", 0},
	{"weighting", TLCM_P_ENUM, "uniform", "the knn's vote weighting "
	 "(pre-check)", 0, 0, "uniform|distance", 0},
	{"cooldown", TLCM_P_INT, "100", "held-out predictions to wait after "
	 "a rollback or rejection", 0, 1000000000, NULL, 0},
	{"rename_votes", TLCM_P_INT, "3", "agreeing ground-truth labels that "
	 "rename all samples of a pseudo-label (0: never)", 0, 1000000, NULL,
	 0},
	{"max_taught", TLCM_P_INT, "2000", "samples of adaptations remembered "
	 "for ground truth (oldest forgotten)", 0, 10000000, NULL, 0},
	{0},
};

/* ---- small helpers ---------------------------------------------------- */

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static char *dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

static float *dupf(const float *x, size_t n)
{
	float *d = malloc((n ? n : 1) * sizeof *d);
	if (d && n)
		memcpy(d, x, n * sizeof *d);
	return d;
}

static void rep_free(rep_t *r)
{
	free(r->label);
	free(r->pseudo);
	free(r->truth);
	free(r->x);
	memset(r, 0, sizeof *r);
}

static void trial_free(trial_t *t)
{
	for (size_t i = 0; i < t->nm; i++)
		rep_free(&t->m[i]);
	free(t->m);
	free(t->label);
	free(t->dominant);
	memset(t, 0, sizeof *t);
}

/* Id of label s (len bytes) in the label table, added when new; -1 when
 * the table is full. */
static int intern(adapt_t *a, const char *s, size_t len)
{
	for (size_t i = 0; i < a->nlabels; i++)
		if (a->label_len[i] == len &&
		    (!len || a->labels[i][0] == s[0]) &&
		    !memcmp(a->labels[i], s, len))
			return (int)i;
	if (a->nlabels == MAX_LABELS)
		return -1;
	char *d = dupn(s, len);
	if (!d)
		return -1;
	a->labels[a->nlabels] = d;
	a->label_len[a->nlabels] = strlen(d);
	return (int)a->nlabels++;
}

/* intern() of the C string s, without measuring s first (a held-out
 * prediction names k labels, nearly always known ones). */
static int intern_str(adapt_t *a, const char *s)
{
	for (size_t i = 0; i < a->nlabels; i++)
		if (a->labels[i][0] == s[0] &&
		    !strncmp(a->labels[i], s, a->label_len[i] + 1))
			return (int)i;
	return intern(a, s, strlen(s));
}

static const char *label_name(const adapt_t *a, int id)
{
	return id >= 0 && (size_t)id < a->nlabels ? a->labels[id] : "";
}

static void history(adapt_t *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void history(adapt_t *a, const char *fmt, ...)
{
	char buf[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	char *d = strdup(buf);
	if (!d)
		return;
	if (a->nhist == HISTORY) {
		free(a->hist[0]);
		memmove(a->hist, a->hist + 1, (HISTORY - 1) * sizeof *a->hist);
		a->nhist--;
	}
	a->hist[a->nhist++] = d;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return (a > b) - (a < b);
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

/* Median of v (n > 0; sorts v). */
static double median(double *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* x prepared for clustering: a copy, L2-normalised for cosine. */
static void prep(const adapt_t *a, const float *x, size_t dim, float *out)
{
	memcpy(out, x, dim * sizeof *out);
	if (a->metric != TLCM_ADAPT_COSINE)
		return;
	double s = 0;
	for (size_t j = 0; j < dim; j++)
		s += (double)x[j] * x[j];
	if (s > 0)
		for (size_t j = 0; j < dim; j++)
			out[j] = (float)(x[j] / sqrt(s));
}

/* x prepared (a->dim values): x itself, or normalised into buf for
 * cosine. */
static const float *prepped(const adapt_t *a, const float *x, float *buf)
{
	if (a->metric != TLCM_ADAPT_COSINE)
		return x;
	prep(a, x, a->dim, buf);
	return buf;
}

/* ---- messages out ----------------------------------------------------- */

static int send_sample(tlcm_ctx_t *ctx, uint64_t frame, const char *label,
		       const float *x, size_t dim, const char *source)
{
	tlcm_fbb_t b;
	size_t max = 160 + strlen(label) + strlen(source) + 4 * dim;
	int rc = tlcm_emit_begin(ctx, OUT_SAMPLES, &b, max);
	if (rc)
		return rc == TLCM_EAGAIN ? 0 : rc;
	tlcm_fbb_ref_t l = tlcm_fbb_cstring(&b, label);
	tlcm_fbb_ref_t e = dim ? tlcm_LabeledSample_embedding_create(&b, x, dim)
			       : 0;
	tlcm_fbb_ref_t s = tlcm_fbb_cstring(&b, source);
	tlcm_LabeledSample_start(&b);
	tlcm_LabeledSample_add_frame_id(&b, frame);
	tlcm_LabeledSample_add_label(&b, l);
	if (e)
		tlcm_LabeledSample_add_embedding(&b, e);
	tlcm_LabeledSample_add_source(&b, s);
	rc = tlcm_emit_end(ctx, OUT_SAMPLES, &b, tlcm_LabeledSample_end(&b),
			   tlcm_LabeledSample_IDENTIFIER);
	return rc == TLCM_EAGAIN ? 0 : rc; /* a drop is counted by the edge */
}

static int notice(tlcm_ctx_t *ctx, int kind, const uint64_t *frames,
		  size_t n, const char *label, const char *reason)
{
	tlcm_fbb_t b;
	size_t max = 128 + 8 * n + strlen(label) + strlen(reason);
	int rc = tlcm_emit_begin(ctx, OUT_NOTICES, &b, max);
	if (rc)
		return rc == TLCM_EAGAIN ? 0 : rc;
	tlcm_fbb_ref_t f = tlcm_QuarantineNotice_frame_ids_create(&b, frames,
								  n);
	tlcm_fbb_ref_t l = tlcm_fbb_cstring(&b, label);
	tlcm_fbb_ref_t r = tlcm_fbb_cstring(&b, reason);
	tlcm_QuarantineNotice_start(&b);
	tlcm_QuarantineNotice_add_kind(&b, (tlcm_NoticeKind_enum_t)kind);
	tlcm_QuarantineNotice_add_frame_ids(&b, f);
	tlcm_QuarantineNotice_add_label(&b, l);
	tlcm_QuarantineNotice_add_reason(&b, r);
	rc = tlcm_emit_end(ctx, OUT_NOTICES, &b,
			   tlcm_QuarantineNotice_end(&b),
			   tlcm_QuarantineNotice_IDENTIFIER);
	return rc == TLCM_EAGAIN ? 0 : rc;
}

/* A notice for every member of the trial. */
static int notice_members(tlcm_ctx_t *ctx, const trial_t *t, int kind,
			  const char *reason)
{
	uint64_t *f = malloc((t->nm ? t->nm : 1) * sizeof *f);
	if (!f)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < t->nm; i++)
		f[i] = t->m[i].frame;
	int rc = notice(ctx, kind, f, t->nm, t->label, reason);
	free(f);
	return rc;
}

typedef struct {
	int kind;
	const char *label, *reason;
	uint32_t samples, reps, qb, qa;
	float disp;
	uint64_t v, kv;
	double cb, ca;
	const char *truth; /* "" or NULL: none */
	float purity;
} ev_t;

static int event(tlcm_ctx_t *ctx, const ev_t *e)
{
	tlcm_fbb_t b;
	size_t max = 256 + strlen(e->label) + strlen(e->reason) +
		     (e->truth ? strlen(e->truth) : 0);
	int rc = tlcm_emit_begin(ctx, OUT_EVENTS, &b, max);
	if (rc)
		return rc == TLCM_EAGAIN ? 0 : rc;
	bool truth = e->truth && e->truth[0];
	tlcm_fbb_ref_t l = tlcm_fbb_cstring(&b, e->label);
	tlcm_fbb_ref_t r = tlcm_fbb_cstring(&b, e->reason);
	tlcm_fbb_ref_t t = truth ? tlcm_fbb_cstring(&b, e->truth) : 0;
	tlcm_AdaptEvent_start(&b);
	tlcm_AdaptEvent_add_kind(&b, (tlcm_AdaptKind_enum_t)e->kind);
	tlcm_AdaptEvent_add_label(&b, l);
	tlcm_AdaptEvent_add_samples(&b, e->samples);
	tlcm_AdaptEvent_add_representatives(&b, e->reps);
	tlcm_AdaptEvent_add_dispersion(&b, e->disp);
	tlcm_AdaptEvent_add_version(&b, e->v);
	tlcm_AdaptEvent_add_knn_version(&b, e->kv);
	tlcm_AdaptEvent_add_confidence_before(&b, (float)e->cb);
	tlcm_AdaptEvent_add_confidence_after(&b, (float)e->ca);
	tlcm_AdaptEvent_add_quarantine_before(&b, e->qb);
	tlcm_AdaptEvent_add_quarantine_after(&b, e->qa);
	tlcm_AdaptEvent_add_reason(&b, r);
	tlcm_AdaptEvent_add_time_ns(&b, wall_ns());
	if (truth) {
		tlcm_AdaptEvent_add_truth(&b, t);
		tlcm_AdaptEvent_add_purity(&b, e->purity);
	}
	rc = tlcm_emit_end(ctx, OUT_EVENTS, &b, tlcm_AdaptEvent_end(&b),
			   tlcm_AdaptEvent_IDENTIFIER);
	tlcm_node_log(ctx, TLCM_LOG_INFO, "%s%s%s%s", e->reason,
		      truth ? " [truth " : "", truth ? e->truth : "",
		      truth ? "]" : "");
	return rc == TLCM_EAGAIN ? 0 : rc;
}

static int reps_of(const trial_t *t)
{
	int n = 0;
	for (size_t i = 0; i < t->nm; i++)
		n += t->m[i].in_knn;
	return n;
}

/* ---- the held-out buffer ---------------------------------------------- */

typedef struct {
	size_t n;          /* predictions counted */
	double conf;       /* their mean confidence */
	int dominant;      /* most frequent label (-1: none) */
	double share;      /* its share */
} base_t;

static bool excluded(const uint64_t *ex, size_t nex, uint64_t frame)
{
	return nex && bsearch(&frame, ex, nex, sizeof *ex, cmp_u64);
}

/* Figures of the held-out buffer without the frames ex (sorted); only
 * entries with features and neighbours when need_x. */
static void baseline(const adapt_t *a, const uint64_t *ex, size_t nex,
		     bool need_x, base_t *b)
{
	size_t cnt[MAX_LABELS] = {0};
	double sum = 0;
	memset(b, 0, sizeof *b);
	b->dominant = -1;
	for (size_t i = 0; i < a->nheld; i++) {
		const held_t *h = &a->held[i];
		if (excluded(ex, nex, h->frame) || (need_x && (!h->x || !h->k)))
			continue;
		b->n++;
		sum += h->conf;
		if (h->label >= 0)
			cnt[h->label]++;
	}
	if (!b->n)
		return;
	b->conf = sum / (double)b->n;
	size_t best = 0;
	for (size_t i = 0; i < a->nlabels; i++)
		if (cnt[i] > best) {
			best = cnt[i];
			b->dominant = (int)i;
		}
	b->share = (double)best / (double)b->n;
}

/* The held-out buffer re-voted with the trial's representatives added:
 * mean confidence and the share of `dominant`, over the entries with
 * features (as in baseline(..., true)). */
static void revote(const adapt_t *a, const uint64_t *ex, size_t nex,
		   const trial_t *t, int add, int dominant, double *conf,
		   double *share, double *taken)
{
	size_t moved = 0;
	float *d = malloc((t->nm ? t->nm : 1) * sizeof *d);
	size_t nr = 0, n = 0, dom = 0;
	double sum = 0;
	for (size_t i = 0; d && i < a->nheld; i++) {
		const held_t *h = &a->held[i];
		if (excluded(ex, nex, h->frame) || !h->x || !h->k)
			continue;
		nr = 0;
		for (size_t j = 0; j < t->nm; j++)
			if (t->m[j].in_knn)
				d[nr++] = tlcm_adapt_distance(a->metric, h->x,
							      t->m[j].x,
							      a->dim);
		float c;
		int w = tlcm_adapt_revote(h->k, h->top, h->td, add, d, nr,
					  a->inverse, &c);
		sum += c;
		dom += w == dominant;
		moved += w == add && h->label != add;
		n++;
	}
	free(d);
	*conf = n ? sum / (double)n : 0;
	*share = n ? (double)dom / (double)n : 0;
	*taken = n ? (double)moved / (double)n : 0;
}

/* Centroid c (dim values) and spread (RMS distance to it) of the held-out
 * predictions of `label` with features; the count (0: none). */
static size_t label_stats(const adapt_t *a, int label, double *c, float *p,
			  double *spread)
{
	size_t n = 0;
	memset(c, 0, a->dim * sizeof *c);
	for (size_t i = 0; i < a->nheld; i++)
		if (a->held[i].label == label && a->held[i].x) {
			prep(a, a->held[i].x, a->dim, p);
			for (size_t j = 0; j < a->dim; j++)
				c[j] += p[j];
			n++;
		}
	if (!n)
		return 0;
	double ss = 0;
	for (size_t j = 0; j < a->dim; j++)
		c[j] /= (double)n;
	for (size_t i = 0; i < a->nheld; i++)
		if (a->held[i].label == label && a->held[i].x) {
			prep(a, a->held[i].x, a->dim, p);
			for (size_t j = 0; j < a->dim; j++)
				ss += (p[j] - c[j]) * (p[j] - c[j]);
		}
	*spread = sqrt(ss / (double)n);
	return n;
}

/* Median spread of the held-out labels with at least 5 predictions with
 * features; 0 when none. Every label at once: one pass for the centroids,
 * one for the spreads (each label's sums in the order label_stats takes
 * them). */
static double label_spread(const adapt_t *a)
{
	size_t *slot = calloc(a->nlabels + 1, sizeof *slot), ns = 0;
	for (size_t i = 0; slot && i < a->nheld; i++)
		if (a->held[i].label >= 0 && a->held[i].x)
			slot[a->held[i].label]++;
	for (size_t l = 0; slot && l < a->nlabels; l++)
		slot[l] = slot[l] >= 5 ? ++ns : 0; /* 1-based; 0: none */
	double *c = calloc(ns * a->dim + 1, sizeof *c);
	double *ss = calloc(ns + 1, sizeof *ss);
	size_t *cnt = calloc(ns + 1, sizeof *cnt);
	float *p = malloc(a->dim * sizeof *p + 1);
	double m = 0;
	if (!ns || !c || !ss || !cnt || !p)
		goto out;
	for (size_t i = 0; i < a->nheld; i++) {
		const held_t *h = &a->held[i];
		size_t sl = h->label >= 0 && h->x ? slot[h->label] : 0;
		if (!sl--)
			continue;
		const float *v = prepped(a, h->x, p);
		double *cc = c + sl * a->dim;
		for (size_t j = 0; j < a->dim; j++)
			cc[j] += v[j];
		cnt[sl]++;
	}
	for (size_t l = 0; l < ns; l++)
		for (size_t j = 0; j < a->dim; j++)
			c[l * a->dim + j] /= (double)cnt[l];
	for (size_t i = 0; i < a->nheld; i++) {
		const held_t *h = &a->held[i];
		size_t sl = h->label >= 0 && h->x ? slot[h->label] : 0;
		if (!sl--)
			continue;
		const float *v = prepped(a, h->x, p);
		const double *cc = c + sl * a->dim;
		for (size_t j = 0; j < a->dim; j++)
			ss[sl] += (v[j] - cc[j]) * (v[j] - cc[j]);
	}
	for (size_t l = 0; l < ns; l++)
		ss[l] = sqrt(ss[l] / (double)cnt[l]);
	m = median(ss, ns);
out:
	free(slot);
	free(c);
	free(ss);
	free(cnt);
	free(p);
	return m;
}

/* Whether the cluster with centroid cc sits inside `label` by position:
 * its centroid within inside_centroid x the label's spread of the label's
 * held-out centroid. (Quarantined samples are far from the KNN's samples
 * by selection, so their neighbour distances overstate how foreign a
 * cluster of a known class's harder frames is; where the cluster sits
 * does not.) */
static bool inside_by_centroid(const adapt_t *a, int label, const double *cc)
{
	double *c = malloc(a->dim * sizeof *c + 1);
	float *p = malloc(a->dim * sizeof *p + 1);
	double sp = 0, d2 = 0;
	bool in = false;
	if (c && p && label_stats(a, label, c, p, &sp) >= 5) {
		for (size_t j = 0; j < a->dim; j++)
			d2 += (cc[j] - c[j]) * (cc[j] - c[j]);
		in = sqrt(d2) <= a->inside_centroid * sp;
	}
	free(c);
	free(p);
	return in;
}

/* Median mean_distance of held-out predictions of `label` (all labels
 * when fewer than 3 of it); 0 when the buffer is empty. */
static double label_distance(const adapt_t *a, int label)
{
	double *v = malloc(a->nheld * sizeof *v + 1);
	size_t n = 0;
	for (size_t i = 0; v && i < a->nheld; i++)
		if (a->held[i].label == label)
			v[n++] = a->held[i].mdist;
	if (v && n < 3)
		for (size_t i = n = 0; i < a->nheld; i++)
			v[n++] = a->held[i].mdist;
	double m = v && n ? median(v, n) : 0;
	free(v);
	return m;
}

/* ---- adaptation ------------------------------------------------------- */

static void apply_ground_truth(tlcm_ctx_t *ctx, adapt_t *a);

/* The trial's "before" group snapshot, then the representatives go out. */
static int start_trial(tlcm_ctx_t *ctx, adapt_t *a)
{
	trial_t *t = &a->tr;
	char reason[64];
	snprintf(reason, sizeof reason, "before adapt %.40s", t->label);
	int rc = tlcm_snapshot_group(ctx, a->knn, reason, &t->before_v,
				     &t->before_kv);
	if (rc == TLCM_EAGAIN)
		return 0; /* the KNN is busy: again with the next message */
	if (rc) {
		if (!a->warned)
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot adapt: the "
				      "group snapshot with node '%s' failed (%s)"
				      "; adaptation needs settings.store and "
				      "`knn` naming the knn node", a->knn,
				      tlcm_strerror(rc));
		a->warned = true;
		trial_free(t);
		a->cooldown = a->cool;
		return 0;
	}
	for (size_t i = 0; i < t->nm && !rc; i++)
		if (t->m[i].in_knn)
			rc = send_sample(ctx, t->m[i].frame, t->label, t->m[i].x,
					 a->dim, "adapt");
	if (!rc)
		rc = notice_members(ctx, t, tlcm_NoticeKind_Taken, reason + 7);
	t->phase = T_RUNNING;
	a->trials++;
	if (t->new_label)
		a->next_label++;
	char why[96];
	snprintf(why, sizeof why, "trial %.40s (%zu samples, %d sent)",
		 t->label, t->nm, reps_of(t));
	ev_t e = {tlcm_AdaptKind_Trial, t->label, why, (uint32_t)t->nm,
		  (uint32_t)reps_of(t), t->q_before, t->q_before, t->disp,
		  t->before_v, t->before_kv, t->conf_before, 0, t->truth,
		  t->purity};
	int er = event(ctx, &e);
	return rc ? rc : er;
}

/* Evaluation: "8:40,9:2" from the members' carried truth counts, and
 * the share of the most frequent. */
static void truth_summary(const adapt_t *a, size_t *cnt, trial_t *t)
{
	size_t at = 0, total = 0, top = 0;
	t->truth[0] = 0;
	for (size_t l = 0; l < a->nlabels; l++)
		total += cnt[l];
	for (;;) {
		size_t best = SIZE_MAX;
		for (size_t l = 0; l < a->nlabels; l++)
			if (cnt[l] && (best == SIZE_MAX || cnt[l] > cnt[best]))
				best = l;
		if (best == SIZE_MAX || at + 24 >= sizeof t->truth)
			break;
		if (!top)
			top = cnt[best];
		at += (size_t)snprintf(t->truth + at, sizeof t->truth - at,
				       "%s%.16s:%zu", at ? "," : "",
				       a->labels[best], cnt[best]);
		cnt[best] = 0;
	}
	t->purity = total ? (float)top / (float)total : 0;
}

#define SPLIT_DEPTH 2

/* The largest coherent cluster among the points idx[0..n) of x (prepared
 * features; d2: the squared distances of x's rows, ld per row): its
 * members (indices into x) into out, its dispersion into *disp; 0 when
 * there is none. Top-down: the points are clustered (k by silhouette, a
 * split only when it reaches min_silhouette); a cluster too dispersed but
 * at least twice min_cluster_size is split again on its own (now into the
 * best k >= 2 whatever its silhouette: it is known not to be one group),
 * down to SPLIT_DEPTH levels. In high dimensions the silhouette of real
 * classes is low (0.15-0.2 on the Fashion-MNIST embeddings), so the
 * dispersion test decides, not the silhouette. */
static size_t find_cluster(tlcm_ctx_t *ctx, adapt_t *a, const float *x,
			   size_t dim, const float *d2, size_t ld,
			   const size_t *idx, size_t n, double maxd, int depth,
			   size_t *out, double *disp, int *err)
{
	size_t *mem = malloc(n * sizeof *mem + 1);
	size_t *sub_out = malloc(n * sizeof *sub_out + 1);
	tlcm_clustering_t cl = {0};
	size_t best = 0;
	*disp = 0;
	*err = mem && sub_out ? 0 : TLCM_ENOMEM;
	tlcm_cluster_opts_t o = a->copts;
	if (depth)
		o.min_silhouette = -1;
	if (!*err)
		*err = tlcm_cluster_d2(x, dim, d2, ld, idx, n, &o, &cl);
	for (size_t c = 0; !*err && c < cl.k; c++) {
		size_t nm = tlcm_cluster_members(&cl, c, mem);
		for (size_t i = 0; i < nm; i++)
			mem[i] = idx[mem[i]];
		double d = cl.dispersion[c];
		bool ok = nm >= a->min_cluster && d <= maxd;
		tlcm_node_log(ctx, TLCM_LOG_DEBUG, "%*scluster %zu: %zu "
			      "samples, dispersion %.3f (max %.3f)%s",
			      2 * depth, "", c, nm, d, maxd,
			      ok ? "" : ": rejected");
		if (!ok && depth < SPLIT_DEPTH && nm >= 2 * a->min_cluster) {
			nm = find_cluster(ctx, a, x, dim, d2, ld, mem, nm, maxd,
					  depth + 1, sub_out, &d, err);
			ok = nm > 0;
			if (ok)
				memcpy(mem, sub_out, nm * sizeof *mem);
		}
		if (ok && (nm > best || (nm == best && d < *disp))) {
			best = nm;
			*disp = d;
			memcpy(out, mem, nm * sizeof *out);
		}
	}
	free(mem);
	free(sub_out);
	tlcm_clustering_free(&cl);
	return *err ? 0 : best;
}

#define CACHE_MAX 1024 /* points whose distances are kept (2 x 4 MiB) */

/* Room for n values of `size` bytes in *p (capacity *cap, contents not
 * kept); 0 or TLCM_ENOMEM. Buffers used per batch are kept: fresh
 * memory costs a page fault per 4 KiB, more than the copy into it. */
static int reserve(void *p, size_t *cap, size_t n, size_t size)
{
	void **b = p;
	if (n <= *cap && *b)
		return 0;
	size_t want = n < 2 * *cap ? 2 * *cap : n; /* batches grow */
	free(*b);
	*cap = 0;
	if ((*b = malloc(want * size + 1)))
		*cap = want;
	else if ((*b = malloc(n * size + 1)))
		*cap = n;
	else
		return TLCM_ENOMEM;
	return 0;
}

#define SWAP(x, y)                                                            \
	do {                                                                  \
		__typeof__(x) t_ = (x);                                       \
		(x) = (y);                                                    \
		(y) = t_;                                                     \
	} while (0)

static void drop_cache(adapt_t *a)
{
	free(a->cd2);
	free(a->d2_next);
	free(a->ckey);
	free(a->ckey_next);
	a->cd2 = a->d2_next = NULL;
	a->ckey = a->ckey_next = NULL;
	a->ncx = a->cd2_cap = a->d2_next_cap = 0;
	a->ckey_cap = a->ckey_next_cap = 0;
}

/* A 64-bit fingerprint of dim values (four multiply-xor lanes over
 * 8-byte words): telling a re-used frame id with other features from the
 * same sample, not a defence against crafted input. */
static uint64_t fingerprint(const float *x, size_t dim)
{
	const unsigned char *p = (const unsigned char *)x;
	size_t len = dim * sizeof *x, i = 0;
	uint64_t h[4] = {0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full,
			 0x165667b19e3779f9ull, 0x27d4eb2f165667c5ull};
	for (; i + 32 <= len; i += 32)
		for (int l = 0; l < 4; l++) {
			uint64_t w;
			memcpy(&w, p + i + 8 * l, 8);
			h[l] = (h[l] ^ w) * 0x100000001b3ull;
			h[l] ^= h[l] >> 29;
		}
	for (; i + 4 <= len; i += 4) {
		uint32_t w;
		memcpy(&w, p + i, 4);
		h[0] = (h[0] ^ w) * 0x100000001b3ull;
		h[0] ^= h[0] >> 29;
	}
	uint64_t r = len;
	for (int l = 0; l < 4; l++)
		r = (r ^ h[l]) * 0x9e3779b97f4a7c15ull, r ^= r >> 32;
	return r;
}

typedef struct {
	uint64_t frame;
	size_t i;
} fidx_t;

static int by_frame(const void *x, const void *y)
{
	const fidx_t *p = x, *q = y;
	return (p->frame > q->frame) - (p->frame < q->frame);
}

/* The n x n squared distances of the batch's prepared features x into
 * *out: a->cd2, kept for the next batch (or, beyond CACHE_MAX points, a
 * matrix the caller frees). Pairs of samples the last batch held too
 * (same frame, same fingerprint) come from there; the kernel gives (i, j)
 * and (j, i) the same bits, so the matrix equals one computed afresh. */
static int batch_distances(adapt_t *a, const float *x, size_t n, size_t dim,
			   float **out)
{
	bool keep = n <= CACHE_MAX;
	float *d2 = NULL;
	size_t *old = malloc(n * sizeof *old + 1);
	fidx_t *f = malloc(a->ncx * sizeof *f + 1);
	int rc = old && f ? 0 : TLCM_ENOMEM;
	if (!rc && keep)
		rc = reserve(&a->d2_next, &a->d2_next_cap, n * n, sizeof *d2);
	if (!rc && keep)
		rc = reserve(&a->ckey_next, &a->ckey_next_cap, n,
			     sizeof *a->ckey_next);
	if (!rc)
		d2 = keep ? a->d2_next : malloc(n * n * sizeof *d2 + 1);
	if (rc || !d2) {
		free(old);
		free(f);
		drop_cache(a); /* nothing half-updated stays */
		return TLCM_ENOMEM;
	}
	bool cached = keep && a->ncx && a->cdim == dim;
	for (size_t i = 0; cached && i < a->ncx; i++)
		f[i] = (fidx_t){a->ckey[i].frame, i};
	if (cached)
		qsort(f, a->ncx, sizeof *f, by_frame);
	for (size_t i = 0; i < n; i++) {
		uint64_t fp = fingerprint(x + i * dim, dim);
		fidx_t key = {a->qs[i].frame, 0}, *hit = NULL;
		if (cached)
			hit = bsearch(&key, f, a->ncx, sizeof *f, by_frame);
		old[i] = hit && a->ckey[hit->i].fp == fp ? hit->i : SIZE_MAX;
		if (keep)
			a->ckey_next[i] = (struct ckey){key.frame, fp};
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; old[i] != SIZE_MAX && j < n; j++)
			if (old[j] != SIZE_MAX)
				d2[i * n + j] =
					a->cd2[old[i] * a->ncx + old[j]];
	for (size_t i = 0; i < n; i++) {
		if (old[i] != SIZE_MAX)
			continue;
		float *row = d2 + i * n;
		tlcm_cluster_sqdist(x + i * dim, x, n, dim, row, false);
		for (size_t j = 0; j < n; j++)
			d2[j * n + i] = row[j];
	}
	free(old);
	free(f);
	if (!keep) {
		drop_cache(a);
		*out = d2;
		return 0;
	}
	SWAP(a->cd2, a->d2_next);
	SWAP(a->cd2_cap, a->d2_next_cap);
	SWAP(a->ckey, a->ckey_next);
	SWAP(a->ckey_cap, a->ckey_next_cap);
	a->ncx = n;
	a->cdim = dim;
	*out = d2;
	return 0;
}

/* Pick a candidate from the last batch and start a trial with it. */
static int attempt(tlcm_ctx_t *ctx, adapt_t *a)
{
	size_t n = a->nqs, dim = a->qdim;
	if (n < a->min_cluster || a->nheld < a->min_held)
		return 0;
	if (n > TLCM_CLUSTER_MAX_POINTS)
		n = TLCM_CLUSTER_MAX_POINTS; /* the oldest ones */
	if (a->dim && dim != a->dim) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "batch: %zu features, the "
			      "held-out predictions have %zu: not adapting",
			      dim, a->dim);
		return 0;
	}
	double maxd = a->max_disp;
	if (maxd <= 0) {
		double s = label_spread(a);
		if (s <= 0) { /* no held-out label with features yet */
			if (a->nheld == a->held_cap && !a->warned_auto) {
				tlcm_node_log(ctx, TLCM_LOG_WARN, "max_"
					      "dispersion 0 (automatic) needs "
					      "held-out predictions with "
					      "features (knn carry_features: "
					      "true): not adapting");
				a->warned_auto = true;
			}
			return 0;
		}
		maxd = a->disp_factor * s;
	}
	/* the features as clustered: the batch's own, normalised for
	 * cosine */
	const float *x = a->qx;
	int rc = 0;
	if (a->metric == TLCM_ADAPT_COSINE &&
	    !(rc = reserve(&a->px, &a->px_cap, n * dim, sizeof *a->px))) {
		for (size_t i = 0; i < n; i++)
			prep(a, a->qx + i * dim, dim, a->px + i * dim);
		x = a->px;
	}
	size_t *idx = malloc(n * sizeof *idx), *mem = malloc(n * sizeof *mem);
	size_t *near = malloc(n * sizeof *near);
	double *md = malloc(n * sizeof *md);
	trial_t *t = &a->tr;
	memset(t, 0, sizeof *t);
	if (!rc && (!idx || !mem || !near || !md))
		rc = TLCM_ENOMEM;
	size_t nm = 0, nn = 0;
	double disp = 0;
	for (size_t i = 0; !rc && i < n; i++)
		idx[i] = i;
	float *d2 = NULL;
	if (!rc)
		rc = batch_distances(a, x, n, dim, &d2);
	if (!rc)
		nm = find_cluster(ctx, a, x, dim, d2, n, idx, n, maxd, 0, mem,
				  &disp, &rc);
	if (d2 != a->cd2)
		free(d2); /* beyond CACHE_MAX */
	if (nm)
		nn = tlcm_cluster_central(x, dim, mem, nm, a->nreps, near,
					  &disp);
	if (nm && !(t->m = calloc(nm, sizeof *t->m)))
		rc = TLCM_ENOMEM;
	size_t cnt[MAX_LABELS] = {0}, tcnt[MAX_LABELS] = {0};
	for (size_t k = 0; k < nm && !rc; k++) {
		size_t i = mem[k];
		if (a->qs[i].truth >= 0)
			tcnt[a->qs[i].truth]++;
		rep_t *r = &t->m[t->nm];
		r->frame = a->qs[i].frame;
		r->x = dupf(a->qx + i * dim, dim);
		if (!r->x)
			rc = TLCM_ENOMEM;
		for (size_t j = 0; j < nn; j++)
			r->in_knn |= near[j] == i;
		if (a->qs[i].label >= 0)
			cnt[a->qs[i].label]++;
		md[t->nm++] = a->qs[i].mdist;
	}
	t->disp = (float)disp;
	truth_summary(a, tcnt, t);
	double *cc = nm ? calloc(dim, sizeof *cc) : NULL;
	for (size_t k = 0; cc && k < nm; k++)
		for (size_t j = 0; j < dim; j++)
			cc[j] += x[mem[k] * dim + j] / (double)nm;
	if (nm && !cc)
		rc = TLCM_ENOMEM;
	free(idx);
	free(mem);
	free(near);
	a->fruitless = !rc && !nm ? a->q_admitted + 1 : 0;
	if (rc || !nm) {
		free(md);
		free(cc);
		trial_free(t);
		return rc;
	}
	/* an existing label when the cluster sits inside it */
	int maj = -1;
	for (size_t l = 0; l < a->nlabels; l++)
		if (cnt[l] && (maj < 0 || cnt[l] > cnt[maj]))
			maj = (int)l;
	bool inside = !rc && maj >= 0 &&
		      (double)cnt[maj] >= a->inside_share * (double)t->nm &&
		      (a->inside_centroid > 0
			       ? inside_by_centroid(a, maj, cc)
			       : median(md, t->nm) <=
					 a->inside_factor *
						 label_distance(a, maj));
	free(md);
	free(cc);
	char name[MAX_LABEL_LEN + 1];
	if (inside)
		snprintf(name, sizeof name, "%s", label_name(a, maj));
	else
		snprintf(name, sizeof name, "%.200s%" PRIu32, a->prefix,
			 a->next_label);
	t->new_label = !inside;
	t->label = strdup(name);
	if (!rc && !t->label)
		rc = TLCM_ENOMEM;
	for (size_t i = 0; i < t->nm && !rc; i++)
		if (!(t->m[i].pseudo = strdup(name)) ||
		    !(t->m[i].label = strdup(name)))
			rc = TLCM_ENOMEM;
	/* the held-out figures before, without the cluster's frames */
	uint64_t *ex = malloc((t->nm ? t->nm : 1) * sizeof *ex);
	if (!rc && !ex)
		rc = TLCM_ENOMEM;
	if (rc) {
		free(ex);
		trial_free(t);
		return rc;
	}
	for (size_t i = 0; i < t->nm; i++)
		ex[i] = t->m[i].frame;
	qsort(ex, t->nm, sizeof *ex, cmp_u64);
	base_t b;
	baseline(a, ex, t->nm, false, &b);
	t->conf_before = b.conf;
	t->share_before = b.share;
	t->dominant = strdup(label_name(a, b.dominant));
	if (!t->dominant) {
		free(ex);
		trial_free(t);
		return TLCM_ENOMEM;
	}
	t->q_before = t->q_now = a->q_size;
	if (a->precheck) {
		base_t bx;
		double ca, sa, ta;
		char why[128];
		baseline(a, ex, t->nm, true, &bx);
		int add = intern(a, name, strlen(name));
		revote(a, ex, t->nm, t, add, bx.dominant, &ca, &sa, &ta);
		bool weak = bx.n && t->new_label && ta < a->min_effect;
		if (weak)
			snprintf(why, sizeof why, "changes %.1f %% of the "
				 "held-out answers < %.1f %%", 100 * ta,
				 100 * a->min_effect);
		if (weak || (bx.n && tlcm_adapt_rules_check(
					     &a->rules, bx.conf, ca,
					     label_name(a, bx.dominant),
					     bx.share, sa, 0, 0, why,
					     sizeof why))) {
			char reason[200];
			snprintf(reason, sizeof reason, "reject %.40s (%zu "
				 "samples): %s", name, t->nm, why);
			a->rejects++;
			a->cooldown = a->cool;
			history(a, "%s", reason);
			ev_t e = {tlcm_AdaptKind_Reject, name, reason,
				  (uint32_t)t->nm, (uint32_t)reps_of(t),
				  t->q_before, t->q_before, t->disp, 0, 0,
				  bx.conf, ca, t->truth, t->purity};
			free(ex);
			rc = event(ctx, &e);
			trial_free(t);
			return rc;
		}
	}
	free(ex);
	t->phase = T_START;
	return start_trial(ctx, a);
}

/* Take the commit's group snapshot (retried while the KNN is busy). */
static int commit_snapshot(tlcm_ctx_t *ctx, adapt_t *a)
{
	uint64_t v = 0, kv = 0;
	int rc = tlcm_snapshot_group(ctx, a->knn, a->commit_reason, &v, &kv);
	if (rc == TLCM_EAGAIN)
		return 0;
	if (rc)
		tlcm_node_log(ctx, TLCM_LOG_WARN, "commit snapshot failed: %s",
			      tlcm_strerror(rc));
	ev_t e = {tlcm_AdaptKind_Commit, a->commit_label, a->commit_reason,
		  a->commit_n, a->commit_reps, a->commit_qb, a->commit_qa,
		  a->commit_disp, v, kv, a->commit_cb, a->commit_ca,
		  a->commit_truth, a->commit_purity};
	rc = event(ctx, &e);
	a->commit_reason[0] = 0;
	return rc;
}

/* Keep the trial's members (oldest forgotten beyond max_taught). */
static int keep_members(adapt_t *a, trial_t *t)
{
	rep_t *nt = realloc(a->taught, (a->ntaught + t->nm + 1) * sizeof *nt);
	if (!nt)
		return TLCM_ENOMEM;
	a->taught = nt;
	memcpy(a->taught + a->ntaught, t->m, t->nm * sizeof *t->m);
	a->ntaught += t->nm;
	free(t->m);
	t->m = NULL;
	t->nm = 0;
	if (a->ntaught > a->max_taught) {
		size_t drop = a->ntaught - a->max_taught;
		for (size_t i = 0; i < drop; i++)
			rep_free(&a->taught[i]);
		memmove(a->taught, a->taught + drop,
			a->max_taught * sizeof *a->taught);
		a->ntaught = a->max_taught;
	}
	return 0;
}

static int rollback(tlcm_ctx_t *ctx, adapt_t *a)
{
	trial_t *t = &a->tr;
	int rc = tlcm_rollback_group(ctx, t->before_v);
	if (rc == TLCM_EAGAIN)
		return 0; /* the KNN is busy or has not taken everything */
	char reason[200];
	if (rc)
		snprintf(reason, sizeof reason, "rollback of %.40s failed "
			 "(%s): %s", t->label, tlcm_strerror(rc), t->why);
	else
		snprintf(reason, sizeof reason, "rollback: %s", t->why);
	history(a, "%s (%.40s, %zu samples)", reason, t->label, t->nm);
	a->rollbacks += !rc;
	if (!rc && t->new_label && a->next_label > 1)
		a->next_label--; /* the pseudo-label is free again */
	a->cooldown = a->cool;
	int nr = notice_members(ctx, t, tlcm_NoticeKind_Released, reason);
	ev_t e = {tlcm_AdaptKind_Rollback, t->label, reason, (uint32_t)t->nm,
		  (uint32_t)reps_of(t), t->q_before, t->q_now, t->disp,
		  t->before_v, t->before_kv, t->conf_before,
		  t->seen ? t->conf_sum / t->seen : 0, t->truth, t->purity};
	int er = event(ctx, &e);
	trial_free(t);
	int sr = tlcm_snapshot_now(ctx, reason);
	if (sr && sr != TLCM_ENOTSUP)
		tlcm_node_log(ctx, TLCM_LOG_WARN, "snapshot after the rollback "
			      "failed: %s", tlcm_strerror(sr));
	apply_ground_truth(ctx, a);
	return nr ? nr : er;
}

/* The trial's verdict: roll back, or commit. */
static int verdict(tlcm_ctx_t *ctx, adapt_t *a, bool early)
{
	trial_t *t = &a->tr;
	double ca = t->seen ? t->conf_sum / t->seen : t->conf_before;
	double sa = t->seen ? (double)t->dom_seen / t->seen : t->share_before;
	int broken = early
		? tlcm_adapt_rules_check(&(tlcm_adapt_rules_t){0, 0,
				a->rules.growth_ratio}, 0, 0, NULL, 0, 0,
				t->q_before, t->q_now, t->why, sizeof t->why)
		: tlcm_adapt_rules_check(&a->rules, t->conf_before, ca,
					 t->dominant, t->share_before, sa,
					 t->q_before, t->q_now, t->why,
					 sizeof t->why);
	if (broken) {
		t->phase = T_ROLLBACK;
		return rollback(ctx, a);
	}
	if (early)
		return 0;
	snprintf(a->commit_reason, sizeof a->commit_reason,
		 "adapt %.40s (%zu samples)", t->label, t->nm);
	snprintf(a->commit_label, sizeof a->commit_label, "%s", t->label);
	a->commit_n = (uint32_t)t->nm;
	a->commit_reps = (uint32_t)reps_of(t);
	a->commit_qb = t->q_before;
	a->commit_qa = t->q_now;
	a->commit_disp = t->disp;
	a->commit_purity = t->purity;
	snprintf(a->commit_truth, sizeof a->commit_truth, "%s", t->truth);
	a->commit_cb = t->conf_before;
	a->commit_ca = ca;
	a->commits++;
	history(a, "%s: confidence %.2f -> %.2f", a->commit_reason,
		t->conf_before, ca);
	int rc = notice_members(ctx, t, tlcm_NoticeKind_Resolved,
				a->commit_reason);
	int kr = keep_members(a, t);
	trial_free(t);
	int cr = commit_snapshot(ctx, a);
	apply_ground_truth(ctx, a);
	return rc ? rc : kr ? kr : cr;
}

/* Move whatever waits on the KNN being free, or on enough data. */
static int progress(tlcm_ctx_t *ctx, adapt_t *a)
{
	int rc = 0;
	if (a->commit_reason[0])
		rc = commit_snapshot(ctx, a);
	switch (a->tr.phase) {
	case T_START:
		return rc ? rc : start_trial(ctx, a);
	case T_RUNNING:
		if (a->tr.seen >= a->window)
			return rc ? rc : verdict(ctx, a, false);
		return rc;
	case T_ROLLBACK:
		return rc ? rc : rollback(ctx, a);
	default:
		return rc;
	}
}

/* ---- ground truth ----------------------------------------------------- */

/* Rename every sample of pseudo-label p once enough ground truth agrees. */
static int maybe_rename(tlcm_ctx_t *ctx, adapt_t *a, const char *p)
{
	if (!a->votes || strncmp(p, a->prefix, strlen(a->prefix)))
		return 0;
	/* the votes per truth, in the order each truth first votes: the
	 * first with the most wins */
	const char **truth = malloc(a->ntaught * sizeof *truth + 1);
	size_t *votes = malloc(a->ntaught * sizeof *votes + 1);
	const char *best = NULL;
	size_t bn = 0, total = 0, nt = 0;
	for (size_t i = 0; truth && votes && i < a->ntaught; i++) {
		const rep_t *r = &a->taught[i];
		if (!r->truth || strcmp(r->pseudo, p))
			continue;
		total++;
		size_t t = 0;
		while (t < nt && strcmp(truth[t], r->truth))
			t++;
		if (t == nt) {
			truth[nt] = r->truth;
			votes[nt++] = 0;
		}
		votes[t]++;
	}
	for (size_t t = 0; t < nt; t++)
		if (votes[t] > bn) {
			bn = votes[t];
			best = truth[t];
		}
	free(truth);
	free(votes);
	if (!best || bn < a->votes || 3 * bn < 2 * total)
		return 0;
	char to[MAX_LABEL_LEN + 1];
	snprintf(to, sizeof to, "%s", best);
	size_t moved = 0;
	int rc = 0;
	for (size_t i = 0; i < a->ntaught && !rc; i++) {
		rep_t *r = &a->taught[i];
		if (r->truth || strcmp(r->pseudo, p) || !strcmp(r->label, to))
			continue;
		char *l = strdup(to);
		if (!l)
			return TLCM_ENOMEM;
		free(r->label);
		r->label = l;
		if (r->in_knn) {
			rc = send_sample(ctx, r->frame, to, r->x, a->dim,
					 "ground_truth");
			moved++;
		}
	}
	if (!moved)
		return rc;
	a->renames++;
	char reason[200];
	snprintf(reason, sizeof reason, "rename %.40s -> %.40s (%zu of %zu "
		 "votes, %zu samples)", p, to, bn, total, moved);
	history(a, "%s", reason);
	ev_t e = {tlcm_AdaptKind_Rename, to, reason, (uint32_t)moved,
		  (uint32_t)moved, 0, 0, 0, 0, 0, 0, 0, NULL, 0};
	int er = event(ctx, &e);
	return rc ? rc : er;
}

static int one_truth(tlcm_ctx_t *ctx, adapt_t *a, const gt_t *g)
{
	for (size_t i = a->ntaught; i-- > 0;) {
		rep_t *r = &a->taught[i];
		if (r->frame != g->frame)
			continue;
		char *t = strdup(g->label), *l = strdup(g->label);
		if (!t || !l) {
			free(t);
			free(l);
			return TLCM_ENOMEM;
		}
		free(r->truth);
		r->truth = t;
		int rc = 0;
		if (!r->in_knn || strcmp(r->label, g->label)) {
			rc = send_sample(ctx, r->frame, g->label, r->x, a->dim,
					 "ground_truth");
			if (r->in_knn)
				a->relabels++;
			else
				a->gt_added++;
			r->in_knn = true;
		}
		free(r->label);
		r->label = l;
		return rc ? rc : maybe_rename(ctx, a, r->pseudo);
	}
	const float *x = g->x;
	size_t xlen = g->xlen;
	for (size_t i = 0; !xlen && i < a->nqs; i++)
		if (a->qs[i].frame == g->frame) {
			x = a->qx + i * a->qdim;
			xlen = a->qdim;
		}
	if (!xlen) {
		if (a->gt_unknown++ < 5)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "labels: frame %"
				      PRIu64 " is neither a sample of an "
				      "adaptation nor waiting in the "
				      "quarantine, and the message has no "
				      "embedding: ignored", g->frame);
		return 0;
	}
	a->gt_added++;
	int rc = send_sample(ctx, g->frame, g->label, x, xlen,
			     "ground_truth");
	int nr = notice(ctx, tlcm_NoticeKind_Resolved, &g->frame, 1, g->label,
			"ground_truth");
	return rc ? rc : nr;
}

/* Apply the buffered ground truth (outside trials). */
static void apply_ground_truth(tlcm_ctx_t *ctx, adapt_t *a)
{
	if (a->tr.phase != T_NONE)
		return;
	for (size_t i = 0; i < a->ngt; i++) {
		int rc = one_truth(ctx, a, &a->gt[i]);
		if (rc)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "ground truth for "
				      "frame %" PRIu64 ": %s", a->gt[i].frame,
				      tlcm_strerror(rc));
		free(a->gt[i].label);
		free(a->gt[i].x);
	}
	a->ngt = 0;
}

static int on_labels(tlcm_ctx_t *ctx, adapt_t *a, const tlcm_msg_t *m)
{
	const void *buf = tlcm_msg_data(m);
	int brc = tlcm_expect_msg(ctx, m, &a->bad, "labels", "LabeledSample",
				   tlcm_LabeledSample_IDENTIFIER,
				   tlcm_LabeledSample_verify_as_root);
	if (brc)
		return brc;
	tlcm_LabeledSample_table_t s = tlcm_LabeledSample_as_root(buf);
	const char *label = tlcm_LabeledSample_label(s);
	size_t ll = tlcm_LabeledSample_label_len(s);
	uint64_t frame = tlcm_LabeledSample_frame_id(s);
	size_t xl = tlcm_LabeledSample_embedding_len(s);
	const float *x = tlcm_LabeledSample_embedding(s);
	if (!ll || ll > MAX_LABEL_LEN || strlen(label) != ll)
		return tlcm_bad_input(ctx, &a->bad, "labels: frame %" PRIu64 ": label must be "
			   "1..%d bytes without NUL", frame, MAX_LABEL_LEN);
	if (!frame && !xl)
		return tlcm_bad_input(ctx, &a->bad, "labels: no frame id and no embedding");
	if (xl && a->dim && xl != a->dim)
		return tlcm_bad_input(ctx, &a->bad, "labels: frame %" PRIu64 ": embedding has "
			   "%zu values, expected %zu", frame, xl, a->dim);
	for (size_t j = 0; j < xl; j++)
		if (!isfinite(x[j]))
			return tlcm_bad_input(ctx, &a->bad, "labels: frame %" PRIu64 ": "
				   "embedding[%zu] is not finite", frame, j);
	if (a->ngt == MAX_GT) { /* a long trial: forget the oldest */
		free(a->gt[0].label);
		free(a->gt[0].x);
		memmove(a->gt, a->gt + 1, (MAX_GT - 1) * sizeof *a->gt);
		a->ngt--;
		tlcm_node_log(ctx, TLCM_LOG_WARN, "labels: more than %d waiting"
			      " for the trial's end, the oldest dropped",
			      MAX_GT);
	}
	gt_t g = {frame, dupn(label, ll), xl ? dupf(x, xl) : NULL, xl};
	if (!g.label || (xl && !g.x)) {
		free(g.label);
		free(g.x);
		return TLCM_ENOMEM;
	}
	a->gt[a->ngt++] = g;
	apply_ground_truth(ctx, a);
	return 0;
}

/* ---- batches and held-out predictions --------------------------------- */

static int on_batch(tlcm_ctx_t *ctx, adapt_t *a, const tlcm_msg_t *m)
{
	const void *buf = tlcm_msg_data(m);
	int brc = tlcm_expect_msg(ctx, m, &a->bad, "batch", "QuarantineBatch",
				   tlcm_QuarantineBatch_IDENTIFIER,
				   tlcm_QuarantineBatch_verify_as_root);
	if (brc)
		return brc;
	tlcm_QuarantineBatch_table_t qb = tlcm_QuarantineBatch_as_root(buf);
	size_t n = tlcm_QuarantineBatch_samples_len(qb), dim = 0;
	for (size_t i = 0; i < n; i++) {
		tlcm_QuarantinedSample_table_t s =
			tlcm_QuarantineBatch_samples_at(qb, i);
		size_t d = tlcm_QuarantinedSample_features_len(s);
		const float *x = tlcm_QuarantinedSample_features(s);
		if (!i)
			dim = d;
		if (!d || d != dim || d > MAX_DIM)
			return tlcm_bad_input(ctx, &a->bad, "batch: sample %zu (frame %" PRIu64
				   ") has %zu features, expected %zu", i,
				   tlcm_QuarantinedSample_frame_id(s), d,
				   dim ? dim : 1);
		for (size_t j = 0; j < d; j++)
			if (!isfinite(x[j]))
				return tlcm_bad_input(ctx, &a->bad, "batch: frame %" PRIu64
					   ": features[%zu] is not finite",
					   tlcm_QuarantinedSample_frame_id(s),
					   j);
	}
	/* the features into the kept buffer (its pages are mapped
	 * already: fresh ones cost a fault per 4 KiB, more than the copy) */
	qs_t *qs = malloc((n ? n : 1) * sizeof *qs);
	if (!qs || reserve(&a->qx, &a->qx_cap, n * dim, sizeof *a->qx)) {
		free(qs);
		if (!a->qx)
			a->nqs = 0;
		return TLCM_ENOMEM;
	}
	float *qx = a->qx;
	for (size_t i = 0; i < n; i++) {
		tlcm_QuarantinedSample_table_t s =
			tlcm_QuarantineBatch_samples_at(qb, i);
		const char *l = tlcm_QuarantinedSample_label(s);
		const char *tr = tlcm_QuarantinedSample_truth(s);
		memcpy(qx + i * dim, tlcm_QuarantinedSample_features(s),
		       dim * sizeof *qx);
		qs[i] = (qs_t){tlcm_QuarantinedSample_frame_id(s),
			       l ? intern(a, l,
					  tlcm_QuarantinedSample_label_len(s))
				 : -1,
			       tr ? intern(a, tr,
					   tlcm_QuarantinedSample_truth_len(s))
				  : -1,
			       tlcm_QuarantinedSample_confidence(s),
			       tlcm_QuarantinedSample_mean_distance(s)};
	}
	free(a->qs);
	a->qs = qs;
	a->nqs = n;
	a->qdim = dim;
	a->q_size = tlcm_QuarantineBatch_size(qb);
	a->q_admitted = tlcm_QuarantineBatch_admitted(qb);
	a->batches++;
	if (a->tr.phase == T_RUNNING) {
		a->tr.q_now = a->q_size;
		int rc = verdict(ctx, a, true); /* rule 3 may fire early */
		if (rc)
			return rc;
	}
	int rc = progress(ctx, a);
	/* the same samples found nothing last time: wait for enough new
	 * ones to make a cluster */
	bool stale = a->fruitless &&
		     a->q_admitted + 1 < a->fruitless + a->min_cluster;
	if (!rc && a->tr.phase == T_NONE && !a->cooldown && !stale &&
	    !a->commit_reason[0])
		rc = attempt(ctx, a);
	return rc;
}

static int on_heldout(tlcm_ctx_t *ctx, adapt_t *a, const tlcm_msg_t *m)
{
	const void *buf = tlcm_msg_data(m);
	int brc = tlcm_expect_msg(ctx, m, &a->bad, "heldout", "Prediction",
				   tlcm_Prediction_IDENTIFIER,
				   tlcm_Prediction_verify_as_root);
	if (brc)
		return brc;
	tlcm_Prediction_table_t p = tlcm_Prediction_as_root(buf);
	uint64_t frame = tlcm_Prediction_frame_id(p);
	float conf = tlcm_Prediction_confidence(p);
	float md = tlcm_Prediction_mean_distance(p);
	size_t ll = tlcm_Prediction_label_len(p);
	size_t k = tlcm_Prediction_top_labels_len(p);
	size_t dim = tlcm_Prediction_features_len(p);
	const float *x = tlcm_Prediction_features(p);
	if (!isfinite(conf) || !isfinite(md))
		return tlcm_bad_input(ctx, &a->bad, "heldout: frame %" PRIu64 ": non-finite %s",
			   frame, isfinite(conf) ? "mean_distance"
						 : "confidence");
	if (!ll)
		return progress(ctx, a); /* the KNN had nothing to say */
	if (k > MAX_K || k != tlcm_Prediction_top_distances_len(p))
		return tlcm_bad_input(ctx, &a->bad, "heldout: frame %" PRIu64 ": %zu top labels"
			   " and %zu distances (at most %d)", frame, k,
			   tlcm_Prediction_top_distances_len(p), MAX_K);
	if (dim && a->dim && dim != a->dim)
		return tlcm_bad_input(ctx, &a->bad, "heldout: frame %" PRIu64 ": %zu features, "
			   "earlier predictions had %zu", frame, dim, a->dim);
	if (dim > MAX_DIM)
		return tlcm_bad_input(ctx, &a->bad, "heldout: frame %" PRIu64 ": %zu features",
			   frame, dim);
	for (size_t j = 0; j < dim; j++)
		if (!isfinite(x[j]))
			return tlcm_bad_input(ctx, &a->bad, "heldout: frame %" PRIu64 ": "
				   "features[%zu] is not finite", frame, j);
	if (dim)
		a->dim = dim;
	held_t *h = &a->held[a->held_next];
	a->held_next = (a->held_next + 1) % a->held_cap;
	if (a->nheld < a->held_cap)
		a->nheld++;
	float *keep = h->x;
	if (dim && !keep && !(keep = malloc(dim * sizeof *keep)))
		return TLCM_ENOMEM;
	if (!dim) {
		free(keep);
		keep = NULL;
	}
	memset(h, 0, sizeof *h);
	h->frame = frame;
	h->label = intern(a, tlcm_Prediction_label(p), ll);
	h->conf = conf;
	h->mdist = md;
	h->x = keep;
	if (dim)
		memcpy(h->x, x, dim * sizeof *x);
	h->k = k;
	for (size_t i = 0; i < k; i++) {
		const char *tl = tlcm_Prediction_top_labels_at(p, i);
		h->top[i] = tl ? intern_str(a, tl) : -1;
		h->td[i] = tlcm_Prediction_top_distances_at(p, i);
	}
	trial_t *tr = &a->tr;
	if (tr->phase == T_RUNNING) {
		tr->seen++;
		tr->conf_sum += conf;
		tr->dom_seen += !strcmp(label_name(a, h->label), tr->dominant);
	}
	if (a->cooldown)
		a->cooldown--;
	return progress(ctx, a);
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	adapt_t *a = st;
	switch (port) {
	case IN_BATCH: return on_batch(ctx, a, m);
	case IN_HELDOUT: return on_heldout(ctx, a, m);
	default: return on_labels(ctx, a, m);
	}
}

/* ---- lifecycle -------------------------------------------------------- */

static void read_runtime(tlcm_ctx_t *ctx, adapt_t *a)
{
	a->min_cluster = (size_t)tlcm_param_int(ctx, "min_cluster_size");
	a->max_disp = tlcm_param_float(ctx, "max_dispersion");
	a->disp_factor = tlcm_param_float(ctx, "dispersion_factor");
	a->nreps = (size_t)tlcm_param_int(ctx, "representatives");
	a->precheck = tlcm_param_bool(ctx, "precheck");
	a->min_effect = tlcm_param_float(ctx, "min_effect");
	a->copts.min_points = a->min_cluster - 1;
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	adapt_t *a = st;
	a->knn = tlcm_param_str(ctx, "knn");
	a->prefix = tlcm_param_str(ctx, "label_prefix");
	a->held_cap = (size_t)tlcm_param_int(ctx, "heldout_size");
	a->min_held = (size_t)tlcm_param_int(ctx, "min_heldout");
	a->window = (size_t)tlcm_param_int(ctx, "validate_window");
	a->cool = (size_t)tlcm_param_int(ctx, "cooldown");
	a->votes = (size_t)tlcm_param_int(ctx, "rename_votes");
	a->max_taught = (size_t)tlcm_param_int(ctx, "max_taught");
	a->inside_share = tlcm_param_float(ctx, "inside_share");
	a->inside_factor = tlcm_param_float(ctx, "inside_factor");
	a->inside_centroid = tlcm_param_float(ctx, "inside_centroid");
	a->rules.confidence_ratio = tlcm_param_float(ctx, "confidence_ratio");
	a->rules.share_ratio = tlcm_param_float(ctx, "share_ratio");
	a->rules.growth_ratio = tlcm_param_float(ctx, "growth_ratio");
	const char *mt = tlcm_param_str(ctx, "metric");
	a->metric = !strcmp(mt, "cosine") ? TLCM_ADAPT_COSINE
		    : !strcmp(mt, "manhattan") ? TLCM_ADAPT_MANHATTAN
					      : TLCM_ADAPT_EUCLIDEAN;
	a->inverse = !strcmp(tlcm_param_str(ctx, "weighting"), "distance");
	a->copts.k_max = (size_t)tlcm_param_int(ctx, "k_max");
	a->copts.min_silhouette = tlcm_param_float(ctx, "min_silhouette");
	a->copts.outlier_factor = tlcm_param_float(ctx, "outlier_factor");
	a->copts.restarts = 4;
	a->copts.seed = (uint64_t)tlcm_param_int(ctx, "seed");
	read_runtime(ctx, a);
	a->next_label = 1;
	if (strlen(a->prefix) > 200) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "label_prefix: at most 200 "
			      "bytes");
		return TLCM_EINVAL;
	}
	a->held = calloc(a->held_cap, sizeof *a->held);
	a->gt = calloc(MAX_GT, sizeof *a->gt);
	if (!a->held || !a->gt) {
		free(a->held);
		free(a->gt);
		return TLCM_ENOMEM;
	}
	return 0;
}

static void free_taught(adapt_t *a)
{
	for (size_t i = 0; i < a->ntaught; i++)
		rep_free(&a->taught[i]);
	free(a->taught);
	a->taught = NULL;
	a->ntaught = 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	adapt_t *a = st;
	(void)ctx;
	for (size_t i = 0; i < a->held_cap; i++)
		free(a->held[i].x);
	free(a->held);
	for (size_t i = 0; i < a->ngt; i++) {
		free(a->gt[i].label);
		free(a->gt[i].x);
	}
	free(a->gt);
	free(a->qs);
	free(a->qx);
	free(a->px);
	drop_cache(a);
	free_taught(a);
	trial_free(&a->tr);
	for (size_t i = 0; i < a->nlabels; i++)
		free(a->labels[i]);
	for (size_t i = 0; i < a->nhist; i++)
		free(a->hist[i]);
}

static int param_changed(tlcm_ctx_t *ctx, void *st, const char *name)
{
	(void)name;
	read_runtime(ctx, st);
	return 0;
}

static int eos(tlcm_ctx_t *ctx, void *st)
{
	adapt_t *a = st;
	return a->commit_reason[0] ? commit_snapshot(ctx, a) : 0;
}

/* ---- state ------------------------------------------------------------ */

static tlcm_fbb_ref_t build_rep(tlcm_fbb_t *b, const rep_t *r, size_t dim)
{
	tlcm_fbb_ref_t l = tlcm_fbb_cstring(b, r->label ? r->label : "");
	tlcm_fbb_ref_t p = tlcm_fbb_cstring(b, r->pseudo ? r->pseudo : "");
	tlcm_fbb_ref_t t = r->truth ? tlcm_fbb_cstring(b, r->truth) : 0;
	tlcm_fbb_ref_t x = tlcm_AdaptRep_features_create(b, r->x, dim);
	tlcm_AdaptRep_start(b);
	tlcm_AdaptRep_add_frame_id(b, r->frame);
	tlcm_AdaptRep_add_label(b, l);
	tlcm_AdaptRep_add_pseudo(b, p);
	if (t)
		tlcm_AdaptRep_add_truth(b, t);
	tlcm_AdaptRep_add_in_knn(b, r->in_knn);
	tlcm_AdaptRep_add_features(b, x);
	return tlcm_AdaptRep_end(b);
}

static tlcm_fbb_ref_t build_trial(tlcm_fbb_t *b, const adapt_t *a)
{
	const trial_t *t = &a->tr;
	tlcm_fbb_ref_t *r = malloc((t->nm ? t->nm : 1) * sizeof *r);
	if (!r)
		return 0;
	for (size_t i = 0; i < t->nm; i++)
		r[i] = build_rep(b, &t->m[i], a->dim);
	tlcm_fbb_ref_t mv = tlcm_AdaptTrial_members_create(b, r, t->nm);
	free(r);
	tlcm_fbb_ref_t l = tlcm_fbb_cstring(b, t->label);
	tlcm_fbb_ref_t d = tlcm_fbb_cstring(b, t->dominant ? t->dominant : "");
	tlcm_AdaptTrial_start(b);
	tlcm_AdaptTrial_add_before_version(b, t->before_v);
	tlcm_AdaptTrial_add_knn_version(b, t->before_kv);
	tlcm_AdaptTrial_add_label(b, l);
	tlcm_AdaptTrial_add_new_label(b, t->new_label);
	tlcm_AdaptTrial_add_members(b, mv);
	tlcm_AdaptTrial_add_dispersion(b, t->disp);
	tlcm_AdaptTrial_add_conf_before(b, t->conf_before);
	tlcm_AdaptTrial_add_dominant(b, d);
	tlcm_AdaptTrial_add_dominant_share(b, t->share_before);
	tlcm_AdaptTrial_add_quarantine_before(b, t->q_before);
	tlcm_AdaptTrial_add_quarantine_now(b, t->q_now);
	/* a pending rollback is re-decided after a restart */
	tlcm_AdaptTrial_add_seen(b, t->phase == T_ROLLBACK
					    ? (uint32_t)a->window : t->seen);
	tlcm_AdaptTrial_add_conf_sum(b, t->conf_sum);
	tlcm_AdaptTrial_add_dominant_seen(b, t->dom_seen);
	return tlcm_AdaptTrial_end(b);
}

static int snapshot(tlcm_ctx_t *ctx, void *st, tlcm_fbb_t *b)
{
	adapt_t *a = st;
	(void)ctx;
	size_t nr = a->ntaught > HISTORY ? a->ntaught : HISTORY;
	tlcm_fbb_ref_t *r = malloc(nr * sizeof *r);
	if (!r)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < a->ntaught; i++)
		r[i] = build_rep(b, &a->taught[i], a->dim);
	tlcm_fbb_ref_t taught = tlcm_AdaptState_taught_create(b, r,
							      a->ntaught);
	for (size_t i = 0; i < a->nhist; i++)
		r[i] = tlcm_fbb_cstring(b, a->hist[i]);
	tlcm_fbb_ref_t hist = tlcm_AdaptState_history_create(b, r, a->nhist);
	free(r);
	bool with_trial = a->tr.phase == T_RUNNING ||
			  a->tr.phase == T_ROLLBACK;
	tlcm_fbb_ref_t trial = with_trial ? build_trial(b, a) : 0;
	if (with_trial && !trial)
		return tlcm_fbb_error(b) ? tlcm_fbb_error(b) : TLCM_ENOMEM;
	tlcm_AdaptState_start(b);
	tlcm_AdaptState_add_next_label(b, a->next_label);
	tlcm_AdaptState_add_taught(b, taught);
	tlcm_AdaptState_add_history(b, hist);
	tlcm_AdaptState_add_batches(b, a->batches);
	tlcm_AdaptState_add_trials(b, a->trials);
	tlcm_AdaptState_add_commits(b, a->commits);
	tlcm_AdaptState_add_rollbacks(b, a->rollbacks);
	tlcm_AdaptState_add_rejects(b, a->rejects);
	tlcm_AdaptState_add_relabels(b, a->relabels);
	tlcm_AdaptState_add_renames(b, a->renames);
	tlcm_AdaptState_add_gt_added(b, a->gt_added);
	tlcm_AdaptState_add_gt_unknown(b, a->gt_unknown);
	tlcm_AdaptState_add_bad(b, a->bad);
	tlcm_AdaptState_add_cooldown(b, a->cooldown);
	if (trial)
		tlcm_AdaptState_add_trial(b, trial);
	return tlcm_AdaptState_finish(b, tlcm_AdaptState_end(b), NULL)
		       ? 0 : tlcm_fbb_error(b);
}

static char *opt_dup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* Reps of the state into out (n entries, every one dim features). */
static int load_reps(const tlcm_AdaptRep_table_t *v, size_t n, size_t dim,
		     rep_t *out)
{
	for (size_t i = 0; i < n; i++) {
		tlcm_AdaptRep_table_t t = v[i];
		rep_t *r = &out[i];
		r->frame = tlcm_AdaptRep_frame_id(t);
		r->label = opt_dup(tlcm_AdaptRep_label(t));
		r->pseudo = opt_dup(tlcm_AdaptRep_pseudo(t));
		r->truth = opt_dup(tlcm_AdaptRep_truth(t));
		r->in_knn = tlcm_AdaptRep_in_knn(t);
		r->x = dupf(tlcm_AdaptRep_features(t), dim);
		if (!r->label || !r->pseudo || !r->x ||
		    (tlcm_AdaptRep_truth(t) && !r->truth))
			return TLCM_ENOMEM;
	}
	return 0;
}

static int refuse(tlcm_ctx_t *ctx, const char *what)
{
	tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: %s", what);
	return TLCM_EBADMSG;
}

/* Every rep of v has dim features (dim taken from the first when 0). */
static bool same_dim(const tlcm_AdaptRep_table_t *v, size_t n, size_t *dim)
{
	for (size_t i = 0; i < n; i++) {
		size_t d = tlcm_AdaptRep_features_len(v[i]);
		if (!*dim)
			*dim = d;
		if (!d || d != *dim || d > MAX_DIM)
			return false;
	}
	return true;
}

static int restore(tlcm_ctx_t *ctx, void *st, const void *data, size_t len)
{
	adapt_t *a = st;
	const char *why;
	if (tlcm_AdaptState_verify_as_root(data, len, &why))
		return refuse(ctx, why);
	tlcm_AdaptState_table_t s = tlcm_AdaptState_as_root(data);
	tlcm_AdaptTrial_table_t tt = tlcm_AdaptState_trial(s);
	size_t dim = a->dim, nt = tlcm_AdaptState_taught_len(s);
	size_t nm = tlcm_AdaptTrial_members_len(tt);
	tlcm_AdaptRep_table_t *tv = malloc((nt + nm + 1) * sizeof *tv);
	if (!tv)
		return TLCM_ENOMEM;
	tlcm_AdaptRep_table_t *mv = tv + nt;
	for (size_t i = 0; i < nt; i++)
		tv[i] = tlcm_AdaptState_taught_at(s, i);
	for (size_t i = 0; i < nm; i++)
		mv[i] = tlcm_AdaptTrial_members_at(tt, i);
	if (!same_dim(tv, nt, &dim) || !same_dim(mv, nm, &dim)) {
		free(tv);
		return refuse(ctx, "samples of different dimensions");
	}
	if (tt && !tlcm_AdaptTrial_label(tt)) {
		free(tv);
		return refuse(ctx, "a trial without a label");
	}
	rep_t *taught = calloc(nt + 1, sizeof *taught);
	trial_t t = {0};
	t.m = calloc(nm + 1, sizeof *t.m);
	int rc = taught && t.m ? 0 : TLCM_ENOMEM;
	if (!rc)
		rc = load_reps(tv, nt, dim, taught);
	if (!rc && tt) {
		t.nm = nm;
		rc = load_reps(mv, nm, dim, t.m);
		t.phase = T_RUNNING;
		t.before_v = tlcm_AdaptTrial_before_version(tt);
		t.before_kv = tlcm_AdaptTrial_knn_version(tt);
		t.label = strdup(tlcm_AdaptTrial_label(tt));
		t.dominant = opt_dup(tlcm_AdaptTrial_dominant(tt));
		t.new_label = tlcm_AdaptTrial_new_label(tt);
		t.disp = tlcm_AdaptTrial_dispersion(tt);
		t.conf_before = tlcm_AdaptTrial_conf_before(tt);
		t.share_before = tlcm_AdaptTrial_dominant_share(tt);
		t.q_before = tlcm_AdaptTrial_quarantine_before(tt);
		t.q_now = tlcm_AdaptTrial_quarantine_now(tt);
		t.seen = tlcm_AdaptTrial_seen(tt);
		t.conf_sum = tlcm_AdaptTrial_conf_sum(tt);
		t.dom_seen = tlcm_AdaptTrial_dominant_seen(tt);
		if (!rc && (!t.label || !t.dominant))
			rc = TLCM_ENOMEM;
	}
	free(tv);
	if (rc) {
		for (size_t i = 0; taught && i < nt; i++)
			rep_free(&taught[i]);
		free(taught);
		if (!tt)
			t.nm = 0;
		trial_free(&t);
		return rc;
	}
	free_taught(a);
	trial_free(&a->tr);
	a->taught = taught;
	a->ntaught = nt;
	if (tt)
		a->tr = t;
	else
		trial_free(&t);
	a->dim = dim;
	for (size_t i = 0; i < a->nhist; i++)
		free(a->hist[i]);
	a->nhist = 0;
	size_t nh = tlcm_AdaptState_history_len(s);
	for (size_t i = nh > HISTORY ? nh - HISTORY : 0; i < nh; i++)
		history(a, "%s", tlcm_AdaptState_history_at(s, i));
	a->next_label = tlcm_AdaptState_next_label(s);
	if (!a->next_label)
		a->next_label = 1;
	a->batches = tlcm_AdaptState_batches(s);
	a->trials = tlcm_AdaptState_trials(s);
	a->commits = tlcm_AdaptState_commits(s);
	a->rollbacks = tlcm_AdaptState_rollbacks(s);
	a->rejects = tlcm_AdaptState_rejects(s);
	a->relabels = tlcm_AdaptState_relabels(s);
	a->renames = tlcm_AdaptState_renames(s);
	a->gt_added = tlcm_AdaptState_gt_added(s);
	a->gt_unknown = tlcm_AdaptState_gt_unknown(s);
	a->bad = tlcm_AdaptState_bad(s);
	a->cooldown = tlcm_AdaptState_cooldown(s);
	tlcm_node_log(ctx, TLCM_LOG_INFO, "restored %zu taught samples%s",
		      nt, tt ? " and a running trial" : "");
	return 0;
}

/* ---- describe --------------------------------------------------------- */

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	adapt_t *a = st;
	(void)ctx;
	if (len < 600)
		return TLCM_ENOSPC;
	static const char *const phases[] = {"none", "waiting_for_knn",
					     "validating", "rolling_back"};
	const trial_t *t = &a->tr;
	int w = snprintf(buf, len, "{\"batches\":%" PRIu64 ",\"trials\":%"
			 PRIu64 ",\"commits\":%" PRIu64 ",\"rollbacks\":%"
			 PRIu64 ",\"rejects\":%" PRIu64 ",\"relabels\":%"
			 PRIu64 ",\"renames\":%" PRIu64 ",\"gt_added\":%"
			 PRIu64 ",\"gt_unknown\":%" PRIu64 ",\"bad\":%" PRIu64
			 ",\"taught\":%zu,\"heldout\":%zu,\"cooldown\":%"
			 PRIu64 ",\"next_label\":%" PRIu32 ",\"trial\":{"
			 "\"phase\":\"%s\",\"seen\":%" PRIu32 ",\"window\":"
			 "%zu,\"samples\":%zu}",
			 a->batches, a->trials, a->commits, a->rollbacks,
			 a->rejects, a->relabels, a->renames, a->gt_added,
			 a->gt_unknown, a->bad, a->ntaught, a->nheld,
			 a->cooldown, a->next_label, phases[t->phase], t->seen,
			 a->window, t->nm);
	size_t at = w > 0 && (size_t)w < len ? (size_t)w : len - 1;
	/* the last history entry, as a plain string without quotes */
	if (a->nhist && at + 40 < len) {
		char last[160];
		snprintf(last, sizeof last, "%s", a->hist[a->nhist - 1]);
		for (char *c = last; *c; c++)
			if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
				*c = '\'';
		at += (size_t)snprintf(buf + at, len - at, ",\"last\":\"%s\"",
				       last);
	}
	if (at + 2 < len)
		snprintf(buf + at, len - at, "}");
	return 0;
}

const tlcm_node_type_t tlcm_node_adapt_heuristic = {
	.name = "adapt.heuristic",
	.doc = "learn new classes from the quarantine without ground truth: "
	       "cluster, pseudo-label, validate, roll back",
	.inputs = inputs,
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(adapt_t),
	.init = init,
	.process = process,
	.param_changed = param_changed,
	.snapshot = snapshot,
	.restore = restore,
	.eos = eos,
	.describe = describe,
	.fini = fini,
};
