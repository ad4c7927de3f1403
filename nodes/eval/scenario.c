/* scenario.c — eval.scenario: play the learning-loop evaluation of issue 6
 * through a graph and score it.
 *
 * The node is the graph's frame source and its referee. It reads a
 * labelled IDX dataset (Fashion-MNIST: a train and a test split) and plays,
 * on `frames`, one ordered stream:
 *
 *   warm-up  `warm_up` train images per known class (for the knn's
 *            `learn_first`: the same path as the frames, one edge, so they
 *            are learned before the first query);
 *   phase A  `phase_a` test images of the known classes (stationary);
 *   phase B  `phase_b` test images, `new_share` of them of the new classes;
 *   phase C  after a barrier (tlcm_graph_idle: every B frame has gone
 *            through the graph), ground truth on `labels` for every
 *            frame the quarantine ever reported, another barrier, then
 *            `phase_c` test images of all classes, balanced.
 *
 * The test images are split once (seeded) into disjoint pools: phase C's
 * frames are never shown before it, so nothing learned from a quarantined
 * frame (pseudo-label or ground truth) is scored on that same frame.
 * Phase A and B draw from the rest and start over, reshuffled, when a pool
 * runs out (stationary frames may repeat; the knn stores no test frame).
 *
 * It remembers which phase every frame id belongs to and scores what comes
 * back over feedback edges: predictions (accuracy, known/new, pseudo-label
 * purity), drift events (false alarms in A, delay in B, per detector),
 * adaptation events (commits, rollbacks, cluster purity) and quarantine
 * batches (what a person at the core would be asked to label). At the end
 * it prints a table and JSON lines (docs/benchmarks.md's format) and, with
 * `fail_on_goal`, fails the graph when a goal of the issue is missed.
 */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "engine/log.h"
#include "fb/adapt_event_fb.h"
#include "fb/drift_fb.h"
#include "fb/labeled_sample_fb.h"
#include "fb/prediction_fb.h"
#include "fb/quarantine_fb.h"
#include "nodes/capture/frame.h"
#include "nodes/capture/idx.h"
#include "nodes/capture/image.h"
#include "nodes/eval/eval.h"

enum { IN_PRED, IN_DRIFT, IN_ADAPT, IN_QUAR, IN_FEEDBACK };
enum { OUT_FRAMES, OUT_LABELS };
enum { PH_WARM, PH_A, PH_B, PH_C, NPH };
static const char *const phase_name[NPH] = {"warm-up", "A", "B", "C"};

/* what tick() is doing */
enum { S_PLAY, S_WAIT_B, S_LABELS, S_WAIT_EXT, S_WAIT_LABELS, S_PLAY_C,
       S_WAIT_END,
       S_DONE };

#define FRAMES_PER_TICK 8
#define LABELS_PER_TICK 32
#define WAIT_TICK_NS 1000000u /* barrier polling period */
#define THROTTLE_TICK_NS 10000000u /* waiting for answers that do not come */
#define MAX_LABELS 256        /* distinct predicted labels tracked */
#define MAX_DETECTORS 16

static const tlcm_port_desc_t inputs[] = {
	{"predictions", "PRED", "the knn's predictions (feedback edge)",
	 TLCM_PORT_OPTIONAL},
	{"drift", "DRFT", "drift detector events (feedback edges)",
	 TLCM_PORT_OPTIONAL},
	{"adapt", "ADPT", "the adapter's events (feedback edge)",
	 TLCM_PORT_OPTIONAL},
	{"quarantine", "QBAT", "the quarantine's batches: the frames ground "
	 "truth is given for (feedback edge)", TLCM_PORT_OPTIONAL},
	{"feedback", "SMPL", "labels given elsewhere (the core's drift hub, "
	 "through the uploader): counted and checked, see wait_labels "
	 "(feedback edge)", TLCM_PORT_OPTIONAL},
	{0},
};

static const tlcm_port_desc_t outputs[] = {
	{"frames", "FRAM", "warm-up, phase A, B and C frames, in order", 0},
	{"labels", "SMPL", "ground truth for the quarantined frames, before "
	 "phase C (to adapt.labels)", 0},
	{0},
};

#define DS "/usr/share/datasets/fashion-mnist/"
static const tlcm_param_desc_t params[] = {
	{"train_images", TLCM_P_PATH, DS "train-images-idx3-ubyte.gz",
	 "IDX images the warm-up set is drawn from", 0, 0, NULL, 0},
	{"train_labels", TLCM_P_PATH, DS "train-labels-idx1-ubyte.gz",
	 "their labels", 0, 0, NULL, 0},
	{"test_images", TLCM_P_PATH, DS "t10k-images-idx3-ubyte.gz",
	 "IDX images phases A, B and C are drawn from", 0, 0, NULL, 0},
	{"test_labels", TLCM_P_PATH, DS "t10k-labels-idx1-ubyte.gz",
	 "their labels", 0, 0, NULL, 0},
	{"known", TLCM_P_LIST, "0,1,2,3,4,5,6,7", "classes the device knows "
	 "(the extractor's and the warm-up's)", 0, 0, NULL, 0},
	{"new", TLCM_P_LIST, "8,9", "classes that appear in phase B", 0, 0,
	 NULL, 0},
	{"warm_up", TLCM_P_INT, "50", "train images per known class, played "
	 "first (set the knn's learn_first to this x the known classes)",
	 0, 100000, NULL, 0},
	{"phase_a", TLCM_P_INT, "4000", "stationary frames (known classes)",
	 1, 10000000, NULL, 0},
	{"phase_b", TLCM_P_INT, "6000", "frames with new classes", 1,
	 10000000, NULL, 0},
	{"new_share", TLCM_P_FLOAT, "0.2", "share of phase B frames of the "
	 "new classes", 0.01, 1, NULL, 0},
	{"phase_c", TLCM_P_INT, "2000", "frames of all classes after ground "
	 "truth (taken from the test set first, balanced, never shown "
	 "before)", 1, 10000000, NULL, 0},
	{"b_tail", TLCM_P_FLOAT, "0.33", "the last share of phase B that "
	 "scores the state after autonomous adaptation", 0.05, 1, NULL, 0},
	{"ground_truth", TLCM_P_BOOL, "true", "label the quarantined frames "
	 "before phase C", 0, 0, NULL, 0},
	{"wait_labels", TLCM_P_FLOAT, "0", "with ground_truth false: before "
	 "phase C wait until labels for this share of the quarantined "
	 "frames came in on `feedback` (a person at the core), at most "
	 "wait_labels_for", 0, 1, NULL, 0},
	{"wait_labels_for", TLCM_P_DURATION, "120s", "longest wait for those "
	 "labels; then phase C starts with what came", 0, 0, NULL, 0},
	{"seed", TLCM_P_INT, "1", "draws and order", 0, 0, NULL, 0},
	{"width", TLCM_P_INT, "0", "frame width (0: the dataset's); frames "
	 "are stretched to width x height, e.g. for a 224x224 model", 0,
	 4096, NULL, 0},
	{"height", TLCM_P_INT, "0", "frame height (0: the dataset's)", 0, 4096,
	 NULL, 0},
	{"rgb", TLCM_P_BOOL, "false", "emit Rgb8 frames (gray replicated)", 0,
	 0, NULL, 0},
	{"table", TLCM_P_STRING, "-", "summary table: \"-\" stdout, a path, "
	 "or \"\" none", 0, 0, NULL, 0},
	{"report", TLCM_P_STRING, "", "JSON lines: \"-\" stdout, a path, or "
	 "\"\" none", 0, 0, NULL, 0},
	{"goal_false_alarms", TLCM_P_FLOAT, "1", "most drift starts per "
	 "10 000 phase-A frames, per detector", 0, 0, NULL, 0},
	{"goal_delay", TLCM_P_INT, "200", "most frames from the start of B "
	 "to a detector's first start", 0, 0, NULL, 0},
	{"goal_retained", TLCM_P_FLOAT, "0.02", "most known-class accuracy "
	 "lost from phase A to the end of phase B", 0, 1, NULL, 0},
	{"goal_accuracy", TLCM_P_FLOAT, "0.85", "least accuracy on all "
	 "classes in phase C", 0, 1, NULL, 0},
	{"detectors", TLCM_P_LIST, "", "ids of the drift nodes connected to "
	 "`drift`, so one that never fires is reported instead of going "
	 "unseen", 0, 0, NULL, 0},
	{"gating", TLCM_P_LIST, "", "the detectors whose drift the device "
	 "acts on (those feeding the quarantine): the false-alarm and delay "
	 "goals apply to them together (alarms summed, the first start "
	 "counts); the others are measured for comparison. Empty: every "
	 "detector is held to the goals on its own", 0, 0, NULL, 0},
	{"max_in_flight", TLCM_P_INT, "256", "most frames played ahead of "
	 "the predictions that came back (0: no limit; for a graph without "
	 "the predictions edge)", 0, 1000000, NULL, 0},
	{"fail_on_goal", TLCM_P_BOOL, "false", "fail the graph when a goal is "
	 "missed (tests)", 0, 0, NULL, 0},
	{0},
};

typedef struct play {  /* one frame to play */
	uint32_t index;    /* in its split */
	uint8_t phase;     /* warm-up: train split; else test split */
} play_t;

typedef struct rec {   /* one played frame, scored when its answers come */
	uint64_t id;
	uint32_t pos;      /* position within its phase */
	uint8_t phase, cls;
	int16_t pred;      /* interned predicted label, -1: none (yet) */
	bool answered;     /* a prediction came */
} rec_t;

typedef struct detector {
	char node[64], type[48], metric[48];
	bool gating;
	uint64_t starts[NPH], ends;
	int64_t first_b;   /* B position of the first start in B, -1 none */
} detector_t;

typedef struct gt {    /* a frame the quarantine reported */
	uint64_t id;
	float *x;
	uint32_t dim;
} gt_t;

typedef struct scen {
	tlcm_idx_file_t img[2], lab[2]; /* [0] train, [1] test */
	uint32_t w, h;                  /* the dataset's */
	tlcm_image_shape_t shape;       /* what is emitted */
	bool reshape;
	tlcm_image_t out, tmp;
	bool known[256], isnew[256];
	play_t *play;
	size_t nplay, pos, c_start;     /* c_start: first C frame in play */
	int state;
	uint64_t phase_len[NPH];
	double b_tail;

	rec_t *rec;                     /* one per played frame */
	size_t nrec;
	uint32_t *map;                  /* id -> rec index + 1, open */
	size_t map_cap;

	char *labels[MAX_LABELS];       /* interned predicted labels */
	size_t nlabels;
	char *cname[256];               /* class -> its truth string */

	detector_t det[MAX_DETECTORS];
	size_t ndet;
	bool gated;                     /* goals on the gating set only */

	uint64_t trials, commits, rollbacks, rejects, renames;
	double purity_w, purity_n;      /* commits of new labels, by size */
	uint64_t commits_new;

	gt_t *gt;
	size_t ngt, gt_cap, gt_sent;
	size_t fb_in, fb_right;         /* labels on `feedback`, correct */
	uint64_t fb_wait_until;         /* S_WAIT_EXT's deadline */
	uint32_t *gt_map;               /* id -> gt index + 1 */
	size_t gt_map_cap;

	uint64_t bad, unmatched, t_start, t_c;
	uint64_t asked, answered, max_flight; /* frames A-C played/answered */
	bool throttled;
	double t_ab, t_c_s;             /* wall seconds of A+B and of C */
} scen_t;

/* ---- small helpers ------------------------------------------------------ */

static size_t hash_slot(uint64_t id, size_t cap)
{
	return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

/* index + 1 of id in an open-addressed table, 0 when absent */
static uint32_t map_get(const uint32_t *map, size_t cap, uint64_t id,
			uint64_t (*key)(const void *, uint32_t),
			const void *arr)
{
	for (size_t s = hash_slot(id, cap);; s = (s + 1) & (cap - 1)) {
		if (!map[s])
			return 0;
		if (key(arr, map[s] - 1) == id)
			return map[s];
	}
}

static void map_put(uint32_t *map, size_t cap, uint64_t id, uint32_t v)
{
	size_t s = hash_slot(id, cap);
	while (map[s])
		s = (s + 1) & (cap - 1);
	map[s] = v;
}

static uint64_t rec_key(const void *a, uint32_t i)
{
	return ((const rec_t *)a)[i].id;
}

static uint64_t gt_key(const void *a, uint32_t i)
{
	return ((const gt_t *)a)[i].id;
}

static rec_t *find_rec(scen_t *s, uint64_t id)
{
	uint32_t v = map_get(s->map, s->map_cap, id, rec_key, s->rec);
	return v ? &s->rec[v - 1] : NULL;
}

static int16_t intern(scen_t *s, const char *l)
{
	for (size_t i = 0; i < s->nlabels; i++)
		if (!strcmp(s->labels[i], l))
			return (int16_t)i;
	if (s->nlabels == MAX_LABELS)
		return -1;
	s->labels[s->nlabels] = strdup(l);
	return s->labels[s->nlabels] ? (int16_t)s->nlabels++ : -1;
}

/* A class list that must not be empty. */
static int class_list(tlcm_ctx_t *ctx, const char *name, bool mask[256],
		      size_t *n)
{
	int rc = tlcm_capture_class_list(ctx, name, mask, n);
	if (!rc && !*n) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s: no classes", name);
		rc = TLCM_EINVAL;
	}
	return rc;
}

static detector_t *detector(scen_t *s, const char *node);

/* ---- set-up ------------------------------------------------------------- */

static int load_split(tlcm_ctx_t *ctx, scen_t *s, int k, const char *ip,
		      const char *lp)
{
	char why[512];
	int rc = tlcm_idx_file_load(&s->img[k], tlcm_param_str(ctx, ip), why,
				    sizeof why);
	if (!rc)
		rc = tlcm_idx_file_load(&s->lab[k], tlcm_param_str(ctx, lp),
					why, sizeof why);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", why);
		return rc;
	}
	const tlcm_idx_file_t *im = &s->img[k], *lb = &s->lab[k];
	if (im->type != 0x08 || im->ndims != 3 || !im->count) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s: expected gray images "
			      "(unsigned bytes, count x rows x cols)",
			      tlcm_param_str(ctx, ip));
		return TLCM_EBADMSG;
	}
	if (lb->type != 0x08 || lb->ndims != 1 || lb->count != im->count) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s: expected one unsigned "
			      "byte label per image of %s (%zu)",
			      tlcm_param_str(ctx, lp), tlcm_param_str(ctx, ip),
			      im->count);
		return TLCM_EBADMSG;
	}
	if (k && (im->dims[1] != s->h || im->dims[2] != s->w)) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s: images of %ux%u, the "
			      "train images are %ux%u", tlcm_param_str(ctx, ip),
			      im->dims[1], im->dims[2], s->h, s->w);
		return TLCM_EBADMSG;
	}
	s->h = im->dims[1];
	s->w = im->dims[2];
	return 0;
}

/* The test-split indices of each wanted class, shuffled. */
typedef struct pool {
	uint32_t *ix;
	size_t n, at;
} pool_t;

/* Next index of pool p; starts over reshuffled when it runs out. */
static uint32_t draw(pool_t *p, uint64_t *rng)
{
	if (p->at == p->n) {
		tlcm_capture_shuffle(p->ix, p->n, rng);
		p->at = 0;
	}
	return p->ix[p->at++];
}

static int build_play(tlcm_ctx_t *ctx, scen_t *s)
{
	uint64_t rng = (uint64_t)tlcm_param_int(ctx, "seed") * 2 + 1;
	size_t warm = (size_t)tlcm_param_int(ctx, "warm_up");
	size_t na = (size_t)tlcm_param_int(ctx, "phase_a");
	size_t nb = (size_t)tlcm_param_int(ctx, "phase_b");
	size_t nc = (size_t)tlcm_param_int(ctx, "phase_c");
	size_t bnew = (size_t)lround((double)nb *
				     tlcm_param_float(ctx, "new_share"));
	size_t nknown = 0, nnew = 0;
	for (int c = 0; c < 256; c++)
		nknown += s->known[c], nnew += s->isnew[c];
	size_t total = warm * nknown + na + nb + nc;
	s->play = calloc(total, sizeof *s->play);
	uint32_t *tmp = calloc(s->img[0].count + s->img[1].count,
			       sizeof *tmp);
	pool_t byc[256] = {{0}};
	int rc = 0;
	if (!s->play || !tmp) {
		rc = TLCM_ENOMEM;
		goto out;
	}

	/* warm-up: the first `warm` of each known class in a seeded order
	 * of the train split, interleaved class by class */
	size_t ntr = s->img[0].count;
	for (size_t i = 0; i < ntr; i++)
		tmp[i] = (uint32_t)i;
	tlcm_capture_shuffle(tmp, ntr, &rng);
	size_t got[256] = {0};
	size_t nwarm = 0;
	for (size_t i = 0; i < ntr && nwarm < warm * nknown; i++) {
		uint8_t c = s->lab[0].items[tmp[i]];
		if (s->known[c] && got[c] < warm) {
			got[c]++;
			s->play[nwarm++] = (play_t){tmp[i], PH_WARM};
		}
	}
	if (nwarm < warm * nknown) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "warm_up %zu per class: the "
			      "train split has fewer images of some known "
			      "class", warm);
		rc = TLCM_EINVAL;
		goto out;
	}

	/* test split by class, shuffled */
	size_t nte = s->img[1].count;
	for (size_t i = 0; i < nte; i++)
		tmp[i] = (uint32_t)i;
	tlcm_capture_shuffle(tmp, nte, &rng);
	for (size_t i = 0; i < nte; i++) {
		uint8_t c = s->lab[1].items[tmp[i]];
		if (!s->known[c] && !s->isnew[c])
			continue;
		if (!byc[c].ix && !(byc[c].ix = calloc(nte, sizeof(uint32_t)))) {
			rc = TLCM_ENOMEM;
			goto out;
		}
		byc[c].ix[byc[c].n++] = tmp[i];
	}
	/* phase C first: nc / classes of each, taken out of the pools */
	size_t ncls = nknown + nnew, per = nc / ncls, cpos = 0;
	play_t *cplay = s->play + nwarm + na + nb;
	for (int c = 0; c < 256; c++) {
		if (!s->known[c] && !s->isnew[c])
			continue;
		if (byc[c].n < per + 50) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "phase_c %zu needs %zu "
				      "test images of class %d and 50 more for "
				      "phases A/B; the test split has %zu", nc,
				      per, c, byc[c].n);
			rc = TLCM_EINVAL;
			goto out;
		}
		for (size_t k = 0; k < per; k++)
			cplay[cpos++] = (play_t){byc[c].ix[--byc[c].n], PH_C};
	}
	for (int c = 0; cpos < nc && c < 256; c++) /* the remainder */
		if (s->known[c] || s->isnew[c])
			cplay[cpos++] = (play_t){byc[c].ix[--byc[c].n], PH_C};
	/* classes mixed, as in A and B (every entry is a C frame: shuffle
	 * the indices) */
	uint32_t *ci = malloc((nc ? nc : 1) * sizeof *ci);
	if (!ci) {
		rc = TLCM_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nc; i++)
		ci[i] = cplay[i].index;
	tlcm_capture_shuffle(ci, nc, &rng);
	for (size_t i = 0; i < nc; i++)
		cplay[i].index = ci[i];
	free(ci);
	/* one pool of the remaining known, one of the new images */
	pool_t kp = {tmp, 0, 0}, np = {NULL, 0, 0}; /* tmp is free again */
	uint32_t *newix = calloc(nte, sizeof *newix);
	if (!newix) {
		rc = TLCM_ENOMEM;
		goto out;
	}
	np.ix = newix;
	for (int c = 0; c < 256; c++)
		for (size_t k = 0; k < byc[c].n; k++) {
			if (s->known[c])
				kp.ix[kp.n++] = byc[c].ix[k];
			else if (s->isnew[c])
				np.ix[np.n++] = byc[c].ix[k];
		}
	tlcm_capture_shuffle(kp.ix, kp.n, &rng);
	tlcm_capture_shuffle(np.ix, np.n, &rng);
	play_t *p = s->play + nwarm;
	for (size_t i = 0; i < na; i++)
		*p++ = (play_t){draw(&kp, &rng), PH_A};
	/* B: exactly bnew new frames at seeded positions */
	uint32_t *isnew = calloc(nb, sizeof *isnew);
	if (!isnew) {
		free(newix);
		rc = TLCM_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < bnew && i < nb; i++)
		isnew[i] = 1;
	tlcm_capture_shuffle(isnew, nb, &rng);
	for (size_t i = 0; i < nb; i++)
		*p++ = (play_t){isnew[i] ? draw(&np, &rng) : draw(&kp, &rng),
				PH_B};
	if (bnew > np.n)
		tlcm_node_log(ctx, TLCM_LOG_WARN, "phase B shows %zu new-class "
			      "frames from %zu distinct images: some repeat",
			      bnew, np.n);
	free(isnew);
	free(newix);
	s->nplay = total;
	s->c_start = nwarm + na + nb;
	s->phase_len[PH_WARM] = nwarm;
	s->phase_len[PH_A] = na;
	s->phase_len[PH_B] = nb;
	s->phase_len[PH_C] = nc;
	/* tables sized for every frame: ids never collide, load <= 0.5 */
	s->rec = calloc(total, sizeof *s->rec);
	for (s->map_cap = 16; s->map_cap < 2 * total; s->map_cap *= 2)
		;
	s->map = calloc(s->map_cap, sizeof *s->map);
	if (!s->rec || !s->map)
		rc = TLCM_ENOMEM;
out:
	for (int c = 0; c < 256; c++)
		free(byc[c].ix);
	free(tmp);
	return rc;
}

static void release(scen_t *s)
{
	for (int k = 0; k < 2; k++) {
		tlcm_idx_file_free(&s->img[k]);
		tlcm_idx_file_free(&s->lab[k]);
	}
	tlcm_image_free(&s->out);
	tlcm_image_free(&s->tmp);
	free(s->play);
	free(s->rec);
	free(s->map);
	free(s->gt_map);
	for (size_t i = 0; i < s->ngt; i++)
		free(s->gt[i].x);
	free(s->gt);
	for (size_t i = 0; i < s->nlabels; i++)
		free(s->labels[i]);
	for (int c = 0; c < 256; c++)
		free(s->cname[c]);
	memset(s, 0, sizeof *s);
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	scen_t *s = st;
	size_t nk, nn;
	int rc = class_list(ctx, "known", s->known, &nk);
	if (!rc)
		rc = class_list(ctx, "new", s->isnew, &nn);
	for (int c = 0; !rc && c < 256; c++)
		if (s->known[c] && s->isnew[c]) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "class %d is both "
				      "known and new", c);
			rc = TLCM_EINVAL;
		}
	if (!rc)
		rc = load_split(ctx, s, 0, "train_images", "train_labels");
	if (!rc)
		rc = load_split(ctx, s, 1, "test_images", "test_labels");
	if (!rc)
		rc = build_play(ctx, s);
	if (rc) {
		release(s);
		return rc;
	}
	s->b_tail = tlcm_param_float(ctx, "b_tail");
	s->max_flight = (uint64_t)tlcm_param_int(ctx, "max_in_flight");
	const char *const *det;
	size_t ndet = tlcm_param_list(ctx, "detectors", &det);
	for (size_t i = 0; i < ndet; i++)
		if (!detector(s, det[i])) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "detectors: more "
				      "than %d", MAX_DETECTORS);
			release(s);
			return TLCM_EINVAL;
		}
	ndet = tlcm_param_list(ctx, "gating", &det);
	s->gated = ndet > 0;
	for (size_t i = 0; i < ndet; i++) {
		detector_t *d = detector(s, det[i]);
		if (!d) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "gating: more "
				      "than %d detectors", MAX_DETECTORS);
			release(s);
			return TLCM_EINVAL;
		}
		d->gating = true;
	}
	uint32_t w = (uint32_t)tlcm_param_int(ctx, "width");
	uint32_t h = (uint32_t)tlcm_param_int(ctx, "height");
	s->shape = (tlcm_image_shape_t){w ? w : s->w, h ? h : s->h,
					tlcm_param_bool(ctx, "rgb") ? 3 : 1,
					TLCM_RESIZE_STRETCH};
	s->reshape = s->shape.width != s->w || s->shape.height != s->h ||
		     s->shape.channels != 1;
	tlcm_node_log(ctx, TLCM_LOG_INFO, "playing %" PRIu64 " warm-up, %"
		      PRIu64 " A, %" PRIu64 " B and %" PRIu64 " C frames",
		      s->phase_len[PH_WARM], s->phase_len[PH_A],
		      s->phase_len[PH_B], s->phase_len[PH_C]);
	tlcm_set_tick(ctx, 0);
	return 0;
}

/* ---- playing ------------------------------------------------------------ */

static int play_one(tlcm_ctx_t *ctx, scen_t *s)
{
	const play_t *p = &s->play[s->pos];
	int k = p->phase != PH_WARM;
	uint8_t cls = s->lab[k].items[p->index];
	tlcm_capture_frame_t f = {
		.width = s->w, .height = s->h, .channels = 1,
		.pixels = s->img[k].items + (size_t)p->index *
						    s->img[k].item_size,
		.label = cls, .source = k ? "test" : "train",
		.index = p->index,
	};
	int rc;
	if (s->reshape) {
		tlcm_image_t src = {s->w, s->h, 1, (uint8_t *)f.pixels, 0};
		if ((rc = tlcm_image_reshape(&src, &s->shape, &s->out,
					     &s->tmp)))
			return rc;
		f.width = s->out.width;
		f.height = s->out.height;
		f.channels = s->out.channels;
		f.pixels = s->out.data;
	}
	uint64_t id;
	rc = tlcm_capture_emit(ctx, OUT_FRAMES, &f, &id);
	if (rc)
		return rc;
	uint32_t first = 0; /* position within the phase */
	for (int ph = 0; ph < p->phase; ph++)
		first += (uint32_t)s->phase_len[ph];
	rec_t *r = &s->rec[s->nrec];
	*r = (rec_t){id, (uint32_t)(s->pos - first), p->phase, cls, -1, false};
	s->asked += p->phase != PH_WARM;
	map_put(s->map, s->map_cap, id, (uint32_t)++s->nrec);
	s->pos++;
	return 0;
}

static int send_label(tlcm_ctx_t *ctx, scen_t *s, const gt_t *g)
{
	rec_t *r = find_rec(s, g->id);
	const char *name = r ? s->cname[r->cls] : NULL;
	if (!name)
		return 0; /* never saw its truth string: cannot say it */
	tlcm_fbb_t b;
	size_t max = 192 + strlen(name) + 4 * (size_t)g->dim;
	int rc = tlcm_emit_begin(ctx, OUT_LABELS, &b, max);
	if (rc)
		return rc == TLCM_EAGAIN ? 0 : rc;
	tlcm_fbb_ref_t l = tlcm_fbb_cstring(&b, name);
	tlcm_fbb_ref_t e = g->dim ? tlcm_LabeledSample_embedding_create(
					    &b, g->x, g->dim)
				  : 0;
	tlcm_fbb_ref_t src = tlcm_fbb_cstring(&b, "ground_truth");
	tlcm_LabeledSample_start(&b);
	tlcm_LabeledSample_add_frame_id(&b, g->id);
	tlcm_LabeledSample_add_label(&b, l);
	if (e)
		tlcm_LabeledSample_add_embedding(&b, e);
	tlcm_LabeledSample_add_source(&b, src);
	tlcm_set_trace(ctx, g->id);
	rc = tlcm_emit_end(ctx, OUT_LABELS, &b, tlcm_LabeledSample_end(&b),
			   tlcm_LabeledSample_IDENTIFIER);
	return rc == TLCM_EAGAIN ? 0 : rc;
}

static int report(tlcm_ctx_t *ctx, scen_t *s);

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	scen_t *s = st;
	int rc = 0;
	if (!s->t_start)
		s->t_start = now;
	if (tlcm_stopping(ctx) && s->state < S_WAIT_END) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "stopped at frame %zu of "
			      "%zu: scoring what was played", s->pos, s->nplay);
		s->state = S_WAIT_END;
		tlcm_set_tick(ctx, WAIT_TICK_NS);
	}
	switch (s->state) {
	case S_PLAY:
	case S_PLAY_C: {
		size_t end = s->state == S_PLAY ? s->c_start : s->nplay;
		/* no further ahead of the answers than max_in_flight: the
		 * answers come back over drop_oldest feedback edges, which a
		 * source running flat out on a busy machine would overflow */
		bool ahead = s->max_flight &&
			     s->asked - s->answered >= s->max_flight;
		if (ahead && !s->throttled) {
			/* on_pred() resumes as soon as half came back; the
			 * slow tick only covers answers that never come */
			s->throttled = true;
			tlcm_set_tick(ctx, THROTTLE_TICK_NS);
		}
		for (int i = 0; i < FRAMES_PER_TICK && s->pos < end && !rc &&
				!ahead;
		     i++)
			rc = play_one(ctx, s);
		if (!rc && s->pos == end) {
			s->state = s->state == S_PLAY ? S_WAIT_B : S_WAIT_END;
			s->throttled = false; /* the barrier paces from here */
			tlcm_set_tick(ctx, WAIT_TICK_NS);
		}
		return rc;
	}
	case S_WAIT_B:
		if (!tlcm_graph_idle(ctx) || !tlcm_inputs_empty(ctx))
			return 0;
		s->t_ab = (double)(now - s->t_start) / 1e9;
		s->state = tlcm_param_bool(ctx, "ground_truth") ? S_LABELS
			   : tlcm_param_float(ctx, "wait_labels") > 0 ?
								S_WAIT_EXT
								: S_WAIT_LABELS;
		if (s->state == S_WAIT_EXT) {
			s->fb_wait_until =
				now + tlcm_param_duration_ns(ctx,
							     "wait_labels_for");
			tlcm_node_log(ctx, TLCM_LOG_INFO, "phase C: waiting for "
				      "labels of %.0f %% of %zu quarantined "
				      "frames on `feedback`",
				      100 * tlcm_param_float(ctx,
							     "wait_labels"),
				      s->ngt);
			tlcm_set_tick(ctx, THROTTLE_TICK_NS);
			return 0;
		}
		if (s->state == S_LABELS)
			tlcm_node_log(ctx, TLCM_LOG_INFO, "phase C: ground truth "
				      "for %zu quarantined frames", s->ngt);
		tlcm_set_tick(ctx, 0);
		return 0;
	case S_LABELS:
		for (int i = 0; i < LABELS_PER_TICK && s->gt_sent < s->ngt &&
				!rc;
		     i++)
			rc = send_label(ctx, s, &s->gt[s->gt_sent++]);
		if (!rc && s->gt_sent == s->ngt) {
			s->state = S_WAIT_LABELS;
			tlcm_set_tick(ctx, WAIT_TICK_NS);
		}
		return rc;
	case S_WAIT_EXT: {
		double want = tlcm_param_float(ctx, "wait_labels") *
			      (double)s->ngt;
		bool late = now >= s->fb_wait_until;
		if ((double)s->fb_in < want && !late && !tlcm_stopping(ctx))
			return 0;
		tlcm_node_log(ctx, late ? TLCM_LOG_WARN : TLCM_LOG_INFO,
			      "phase C: %zu labels came in (%zu right) for %zu "
			      "quarantined frames%s", s->fb_in, s->fb_right,
			      s->ngt, late ? "; stopped waiting" : "");
		s->state = S_WAIT_LABELS;
		tlcm_set_tick(ctx, WAIT_TICK_NS);
		return 0;
	}
	case S_WAIT_LABELS:
		if (!tlcm_graph_idle(ctx) || !tlcm_inputs_empty(ctx))
			return 0;
		s->state = S_PLAY_C;
		s->t_c = now;
		tlcm_set_tick(ctx, 0);
		return 0;
	case S_WAIT_END:
		if (!tlcm_graph_idle(ctx) || !tlcm_inputs_empty(ctx))
			return 0;
		if (s->t_c)
			s->t_c_s = (double)(now - s->t_c) / 1e9;
		s->state = S_DONE;
		rc = report(ctx, s);
		return rc ? rc : TLCM_ECLOSED;
	default:
		return TLCM_ECLOSED;
	}
}

/* ---- scoring what comes back -------------------------------------------- */

static int on_pred(tlcm_ctx_t *ctx, scen_t *s, const tlcm_msg_t *m)
{
	int rc = tlcm_expect_msg(ctx, m, &s->bad, "predictions",
				 "Prediction", tlcm_Prediction_IDENTIFIER,
				 tlcm_Prediction_verify_as_root);
	if (rc)
		return rc;
	const void *buf = tlcm_msg_data(m);
	tlcm_Prediction_table_t p = tlcm_Prediction_as_root(buf);
	rec_t *r = find_rec(s, tlcm_Prediction_frame_id(p));
	if (!r || r->phase == PH_WARM) {
		s->unmatched++; /* not ours, or a warm-up frame classified */
		return 0;
	}
	const char *truth = tlcm_Prediction_truth(p);
	if (truth && *truth && !s->cname[r->cls])
		s->cname[r->cls] = strdup(truth);
	const char *label = tlcm_Prediction_label(p);
	if (!r->answered) {
		r->answered = true;
		s->answered++;
	}
	if (s->throttled && s->asked - s->answered <= s->max_flight / 2) {
		s->throttled = false;
		tlcm_set_tick(ctx, 0);
	}
	r->pred = label && *label ? intern(s, label) : -1;
	return 0;
}

static detector_t *detector(scen_t *s, const char *node)
{
	for (size_t i = 0; i < s->ndet; i++)
		if (!strcmp(s->det[i].node, node))
			return &s->det[i];
	if (s->ndet == MAX_DETECTORS)
		return NULL;
	detector_t *d = &s->det[s->ndet++];
	memset(d, 0, sizeof *d);
	snprintf(d->node, sizeof d->node, "%s", node);
	d->first_b = -1;
	return d;
}

static int on_drift(tlcm_ctx_t *ctx, scen_t *s, const tlcm_msg_t *m)
{
	int rc = tlcm_expect_msg(ctx, m, &s->bad, "drift",
				 "DriftEvent", tlcm_DriftEvent_IDENTIFIER,
				 tlcm_DriftEvent_verify_as_root);
	if (rc)
		return rc;
	const void *buf = tlcm_msg_data(m);
	tlcm_DriftEvent_table_t e = tlcm_DriftEvent_as_root(buf);
	const char *node = tlcm_DriftEvent_node(e);
	detector_t *d = detector(s, node && *node ? node : "?");
	if (!d)
		return 0;
	const char *ty = tlcm_DriftEvent_detector(e);
	const char *me = tlcm_DriftEvent_metric(e);
	if (!d->type[0] && ty)
		snprintf(d->type, sizeof d->type, "%s", ty);
	if (tlcm_DriftEvent_kind(e) != tlcm_DriftKind_Start) {
		d->ends++;
		return 0;
	}
	if (!d->metric[0] && me)
		snprintf(d->metric, sizeof d->metric, "%s", me);
	rec_t *r = find_rec(s, tlcm_DriftEvent_frame_id(e));
	if (!r) {
		s->unmatched++;
		return 0;
	}
	d->starts[r->phase]++;
	if (r->phase == PH_B && d->first_b < 0)
		d->first_b = r->pos;
	return 0;
}

static int on_adapt(tlcm_ctx_t *ctx, scen_t *s, const tlcm_msg_t *m)
{
	int rc = tlcm_expect_msg(ctx, m, &s->bad, "adapt",
				 "AdaptEvent", tlcm_AdaptEvent_IDENTIFIER,
				 tlcm_AdaptEvent_verify_as_root);
	if (rc)
		return rc;
	const void *buf = tlcm_msg_data(m);
	tlcm_AdaptEvent_table_t e = tlcm_AdaptEvent_as_root(buf);
	const char *label = tlcm_AdaptEvent_label(e);
	switch (tlcm_AdaptEvent_kind(e)) {
	case tlcm_AdaptKind_Trial: s->trials++; break;
	case tlcm_AdaptKind_Rollback: s->rollbacks++; break;
	case tlcm_AdaptKind_Reject: s->rejects++; break;
	case tlcm_AdaptKind_Rename: s->renames++; break;
	case tlcm_AdaptKind_Commit:
		s->commits++;
		/* a pseudo-label is one that is not a class's truth string */
		bool known = false;
		for (int c = 0; label && c < 256 && !known; c++)
			known = s->cname[c] && !strcmp(s->cname[c], label);
		if (label && !known) {
			double n = tlcm_AdaptEvent_samples(e);
			s->commits_new++;
			s->purity_w += n * tlcm_AdaptEvent_purity(e);
			s->purity_n += n;
		}
		break;
	default: break;
	}
	return 0;
}

static int on_batch(tlcm_ctx_t *ctx, scen_t *s, const tlcm_msg_t *m)
{
	int rc = tlcm_expect_msg(ctx, m, &s->bad, "quarantine",
				 "QuarantineBatch", tlcm_QuarantineBatch_IDENTIFIER,
				 tlcm_QuarantineBatch_verify_as_root);
	if (rc)
		return rc;
	const void *buf = tlcm_msg_data(m);
	tlcm_QuarantineBatch_table_t bt = tlcm_QuarantineBatch_as_root(buf);
	size_t n = tlcm_QuarantineBatch_samples_len(bt);
	for (size_t i = 0; i < n; i++) {
		tlcm_QuarantinedSample_table_t q =
			tlcm_QuarantineBatch_samples_at(bt, i);
		uint64_t id = tlcm_QuarantinedSample_frame_id(q);
		if (!find_rec(s, id) ||
		    (s->gt_map && map_get(s->gt_map, s->gt_map_cap, id, gt_key,
					  s->gt)))
			continue;
		if (2 * (s->ngt + 1) > s->gt_map_cap) { /* grow and rehash */
			size_t cap = s->gt_map_cap ? 2 * s->gt_map_cap : 1024;
			uint32_t *nm = calloc(cap, sizeof *nm);
			gt_t *ng = realloc(s->gt, cap / 2 * sizeof *ng);
			if (!nm || !ng) {
				free(nm);
				if (ng)
					s->gt = ng;
				return TLCM_ENOMEM;
			}
			s->gt = ng;
			for (size_t k = 0; k < s->ngt; k++)
				map_put(nm, cap, s->gt[k].id, (uint32_t)k + 1);
			free(s->gt_map);
			s->gt_map = nm;
			s->gt_map_cap = cap;
		}
		size_t dim = tlcm_QuarantinedSample_features_len(q);
		gt_t g = {id, dim ? malloc(dim * sizeof(float)) : NULL,
			  (uint32_t)dim};
		if (dim && !g.x)
			return TLCM_ENOMEM;
		for (size_t k = 0; k < dim; k++)
			g.x[k] = tlcm_QuarantinedSample_features_at(q, k);
		s->gt[s->ngt++] = g;
		map_put(s->gt_map, s->gt_map_cap, id, (uint32_t)s->ngt);
	}
	return 0;
}

/* A label from elsewhere: count it, and whether it names the frame's
 * true class (scored frames only; others cannot be checked). */
static int on_feedback(tlcm_ctx_t *ctx, scen_t *s, const tlcm_msg_t *m)
{
	const void *buf = tlcm_msg_data(m);
	const char *why;
	if (memcmp(m->type, "SMPL", 4) ||
	    tlcm_LabeledSample_verify_as_root(buf, m->size, &why)) {
		s->bad++;
		tlcm_node_log(ctx, TLCM_LOG_WARN, "feedback: not a "
			      "LabeledSample");
		return TLCM_EBADMSG;
	}
	tlcm_LabeledSample_table_t l = tlcm_LabeledSample_as_root(buf);
	rec_t *r = find_rec(s, tlcm_LabeledSample_frame_id(l));
	const char *name = r ? s->cname[r->cls] : NULL;
	s->fb_in++;
	s->fb_right += name && !strcmp(name, tlcm_LabeledSample_label(l));
	return 0;
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	scen_t *s = st;
	switch (port) {
	case IN_PRED: return on_pred(ctx, s, m);
	case IN_DRIFT: return on_drift(ctx, s, m);
	case IN_ADAPT: return on_adapt(ctx, s, m);
	case IN_QUAR: return on_batch(ctx, s, m);
	case IN_FEEDBACK: return on_feedback(ctx, s, m);
	}
	return TLCM_EINVAL;
}

/* ---- the report --------------------------------------------------------- */

typedef struct score {
	uint64_t a_n, a_ok;                 /* A: known frames, correct */
	uint64_t t_known, t_ok, t_new, t_new_out; /* B tail */
	uint64_t b_new_pred_n;              /* B tail: frames predicted new_* */
	double label_purity;                /* of new labels in the B tail */
	uint64_t c_n, c_ok, c_cls_n[256], c_cls_ok[256];
	uint64_t missing;                   /* played, never predicted */
} score_t;

static bool is_known_label(const scen_t *s, int16_t l)
{
	for (int c = 0; l >= 0 && c < 256; c++)
		if (s->known[c] && s->cname[c] &&
		    !strcmp(s->cname[c], s->labels[l]))
			return true;
	return false;
}

static bool is_class_label(const scen_t *s, int16_t l)
{
	for (int c = 0; l >= 0 && c < 256; c++)
		if (s->cname[c] && !strcmp(s->cname[c], s->labels[l]))
			return true;
	return false;
}

static bool correct(const scen_t *s, const rec_t *r)
{
	return r->pred >= 0 && s->cname[r->cls] &&
	       !strcmp(s->labels[r->pred], s->cname[r->cls]);
}

static int score(const scen_t *s, score_t *o)
{
	memset(o, 0, sizeof *o);
	uint64_t tail0 = s->phase_len[PH_B] -
			 (uint64_t)lround(s->b_tail *
					  (double)s->phase_len[PH_B]);
	/* purity of pseudo-labels: per label, the truth classes of the
	 * tail's frames predicted with it */
	uint32_t (*hist)[256] = calloc(MAX_LABELS, sizeof *hist);
	if (!hist)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < s->nrec; i++) {
		const rec_t *r = &s->rec[i];
		if (r->phase == PH_WARM)
			continue;
		if (r->pred < 0) {
			o->missing++;
			continue;
		}
		bool ok = correct(s, r);
		if (r->phase == PH_A) {
			o->a_n++;
			o->a_ok += ok;
		} else if (r->phase == PH_B && r->pos >= tail0) {
			if (s->known[r->cls]) {
				o->t_known++;
				o->t_ok += ok;
			} else {
				o->t_new++;
				o->t_new_out += !is_known_label(s, r->pred);
			}
			if (!is_class_label(s, r->pred))
				hist[r->pred][r->cls]++;
		} else if (r->phase == PH_C) {
			o->c_n++;
			o->c_ok += ok;
			o->c_cls_n[r->cls]++;
			o->c_cls_ok[r->cls] += ok;
		}
	}
	uint64_t maj = 0, tot = 0;
	for (size_t l = 0; l < s->nlabels; l++) {
		uint32_t best = 0, sum = 0;
		for (int c = 0; c < 256; c++) {
			sum += hist[l][c];
			best = hist[l][c] > best ? hist[l][c] : best;
		}
		maj += best;
		tot += sum;
	}
	free(hist);
	o->b_new_pred_n = tot;
	o->label_purity = tot ? (double)maj / (double)tot : NAN;
	return 0;
}

static double ratio(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : NAN;
}

static void rss_kib(uint64_t *now, uint64_t *peak)
{
	*now = *peak = 0;
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	while (f && fgets(line, sizeof line, f)) {
		unsigned long long v;
		if (sscanf(line, "VmRSS: %llu", &v) == 1)
			*now = v;
		else if (sscanf(line, "VmHWM: %llu", &v) == 1)
			*peak = v;
	}
	if (f)
		fclose(f);
}

static FILE *open_out(tlcm_ctx_t *ctx, const char *param, bool *close_it)
{
	const char *p = tlcm_param_str(ctx, param);
	*close_it = false;
	if (!p || !*p)
		return NULL;
	if (!strcmp(p, "-"))
		return stdout;
	FILE *f = fopen(p, "w");
	if (!f)
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s: cannot write %s: %m",
			      param, p);
	*close_it = f != NULL;
	return f;
}

/* one JSON line; NaN (not measured) is written as null */
static void jline(FILE *f, const char *kase, const char *unit, double v,
		  uint64_t n, const char *extra)
{
	if (!f)
		return;
	fprintf(f, "{\"suite\":\"drift-fmnist\",\"case\":\"%s\",\"unit\":\"%s\","
		   "\"value\":", kase, unit);
	if (isfinite(v))
		fprintf(f, "%.6g", v);
	else
		fputs("null", f);
	fprintf(f, ",\"n\":%" PRIu64 "%s%s}\n", n, extra && *extra ? "," : "",
		extra ? extra : "");
}

static const char *yes(bool ok)
{
	return ok ? "yes" : "NO";
}

static int report(tlcm_ctx_t *ctx, scen_t *s)
{
	score_t o;
	int rc = score(s, &o);
	if (rc)
		return rc;
	double goal_fa = tlcm_param_float(ctx, "goal_false_alarms");
	int64_t goal_delay = tlcm_param_int(ctx, "goal_delay");
	double goal_ret = tlcm_param_float(ctx, "goal_retained");
	double goal_acc = tlcm_param_float(ctx, "goal_accuracy");
	double a_acc = ratio(o.a_ok, o.a_n), t_acc = ratio(o.t_ok, o.t_known);
	double new_out = ratio(o.t_new_out, o.t_new);
	double c_acc = ratio(o.c_ok, o.c_n);
	double purity = s->purity_n > 0 ? s->purity_w / s->purity_n : NAN;
	double per10k = 1e4 / (double)(o.a_n ? o.a_n : 1);
	uint64_t rss, peak;
	rss_kib(&rss, &peak);

	/* the device's drift signal: the gating detectors together */
	uint64_t g_starts = 0;
	int64_t g_first = -1;
	bool ok_fa = true, ok_delay = s->ndet > 0;
	for (size_t i = 0; i < s->ndet; i++) {
		const detector_t *d = &s->det[i];
		if (s->gated && d->gating) {
			g_starts += d->starts[PH_A];
			if (d->first_b >= 0 && (g_first < 0 ||
						d->first_b < g_first))
				g_first = d->first_b;
		} else if (!s->gated) {
			ok_fa &= (double)d->starts[PH_A] * per10k <= goal_fa;
			ok_delay &= d->first_b >= 0 &&
				    d->first_b <= goal_delay;
		}
	}
	if (s->gated) {
		ok_fa = (double)g_starts * per10k <= goal_fa;
		ok_delay = g_first >= 0 && g_first <= goal_delay;
	}
	bool ok_ret = a_acc - t_acc <= goal_ret;
	bool ok_acc = c_acc >= goal_acc;
	bool played = s->pos == s->nplay && !o.missing;
	bool all = ok_fa && ok_delay && ok_ret && ok_acc && played;

	bool cl;
	FILE *f = open_out(ctx, "table", &cl);
	if (f) {
		fprintf(f, "\nlearning-loop evaluation (%" PRIu64 " warm-up, "
			   "%" PRIu64 " A, %" PRIu64 " B, %" PRIu64 " C frames)"
			   "\n\n", s->phase_len[PH_WARM], s->phase_len[PH_A],
			s->phase_len[PH_B], s->phase_len[PH_C]);
		fprintf(f, "%-44s %10s %10s %5s\n", "measure", "value", "goal",
			"met");
		fprintf(f, "%-44s %10.4f %10s %5s\n",
			"A: known-class accuracy", a_acc, "", "");
		char g[32], gd[32];
		snprintf(g, sizeof g, "<= %g", goal_fa);
		snprintf(gd, sizeof gd, "<= %" PRId64, goal_delay);
		if (s->gated) {
			char v[32];
			fprintf(f, "%-44s %10.2f %10s %5s\n",
				"A: false alarms/10k, device (gating)",
				(double)g_starts * per10k, g, yes(ok_fa));
			if (g_first >= 0)
				snprintf(v, sizeof v, "%" PRId64, g_first);
			else
				snprintf(v, sizeof v, "none");
			fprintf(f, "%-44s %10s %10s %5s\n",
				"B: detection delay, device (gating)", v, gd,
				yes(ok_delay));
		}
		for (size_t i = 0; i < s->ndet; i++) {
			const detector_t *d = &s->det[i];
			char name[128], v[32];
			bool judged = !s->gated;
			double fa = (double)d->starts[PH_A] * per10k;
			snprintf(name, sizeof name, "A: false alarms/10k, %s%s",
				 d->node, d->gating ? " *" : "");
			fprintf(f, "%-44s %10.2f %10s %5s\n", name, fa,
				judged ? g : "", judged ? yes(fa <= goal_fa)
							: "");
			snprintf(name, sizeof name, "B: detection delay, %s%s",
				 d->node, d->gating ? " *" : "");
			if (d->first_b >= 0)
				snprintf(v, sizeof v, "%" PRId64, d->first_b);
			else
				snprintf(v, sizeof v, "none");
			fprintf(f, "%-44s %10s %10s %5s\n", name, v,
				judged ? gd : "",
				judged ? yes(d->first_b >= 0 &&
					     d->first_b <= goal_delay)
				       : "");
		}
		if (!s->ndet)
			fprintf(f, "%-44s %10s %10s %5s\n",
				"A/B: drift detectors", "none", "", "NO");
		fprintf(f, "%-44s %10.4f %10s %5s\n",
			"B end: new-class frames not called known", new_out,
			"", "");
		fprintf(f, "%-44s %10.4f %10s %5s\n",
			"B end: purity of frames called new_*", o.label_purity,
			"", "");
		fprintf(f, "%-44s %10.4f %10s %5s\n",
			"B: cluster purity of new_* commits", purity, "", "");
		snprintf(g, sizeof g, ">= %.4f", a_acc - goal_ret);
		fprintf(f, "%-44s %10.4f %10s %5s\n",
			"B end: known-class accuracy", t_acc, g, yes(ok_ret));
		snprintf(g, sizeof g, ">= %g", goal_acc);
		fprintf(f, "%-44s %10.4f %10s %5s\n",
			"C: accuracy, all classes", c_acc, g, yes(ok_acc));
		fprintf(f, "%-44s %10zu\n", "C: ground-truth labels sent",
			s->gt_sent);
		if (s->fb_in)
			fprintf(f, "%-44s %10zu\n", "C: labels received "
				"(feedback), right", s->fb_right);
		if (s->fb_in)
			fprintf(f, "%-44s %10zu\n", "C: labels received "
				"(feedback), all", s->fb_in);
		fprintf(f, "%-44s %10s\n", "adaptations: commits/rollbacks/"
			   "rejects", "");
		fprintf(f, "%-44s %4" PRIu64 " / %" PRIu64 " / %" PRIu64 "\n",
			"", s->commits, s->rollbacks, s->rejects);
		fprintf(f, "%-44s %10.2f\n", "A+B wall time, s", s->t_ab);
		fprintf(f, "%-44s %10.1f\n", "peak RSS, MiB", peak / 1024.0);
		if (!played)
			fprintf(f, "%-44s %10" PRIu64 "\n",
				"frames without a prediction", o.missing +
				(s->nplay - s->pos));
		if (s->gated)
			fprintf(f, "\n* gating: the device's drift signal (feeds "
				   "the quarantine); goals apply to them "
				   "together");
		fprintf(f, "\nall goals met: %s\n\n", yes(all));
		fflush(f);
		if (cl)
			fclose(f);
	}

	f = open_out(ctx, "report", &cl);
	if (f) {
		char x[256];
		jline(f, "phase_a_known_accuracy", "ratio", a_acc, o.a_n, NULL);
		for (size_t i = 0; i < s->ndet; i++) {
			const detector_t *d = &s->det[i];
			char k[160];
			snprintf(x, sizeof x, "\"detector\":\"%s\",\"type\":"
				 "\"%s\",\"starts\":%" PRIu64 ",\"gating\":%s",
				 d->node, d->type, d->starts[PH_A],
				 d->gating ? "true" : "false");
			snprintf(k, sizeof k, "false_alarms_per_10k_%s",
				 d->node);
			jline(f, k, "ratio", (double)d->starts[PH_A] * per10k,
			      o.a_n, x);
			snprintf(x, sizeof x, "\"detector\":\"%s\",\"type\":"
				 "\"%s\",\"starts_b\":%" PRIu64 ",\"gating\":%s",
				 d->node, d->type, d->starts[PH_B],
				 d->gating ? "true" : "false");
			snprintf(k, sizeof k, "detection_delay_%s", d->node);
			jline(f, k, "frames",
			      d->first_b >= 0 ? (double)d->first_b : NAN,
			      s->phase_len[PH_B], x);
		}
		if (s->gated) {
			snprintf(x, sizeof x, "\"goal\":%g,\"starts\":%" PRIu64,
				 goal_fa, g_starts);
			jline(f, "false_alarms_per_10k_device", "ratio",
			      (double)g_starts * per10k, o.a_n, x);
			snprintf(x, sizeof x, "\"goal\":%" PRId64, goal_delay);
			jline(f, "detection_delay_device", "frames",
			      g_first >= 0 ? (double)g_first : NAN,
			      s->phase_len[PH_B], x);
		}
		jline(f, "b_tail_new_not_known", "ratio", new_out, o.t_new,
		      NULL);
		jline(f, "b_tail_new_label_purity", "ratio", o.label_purity,
		      o.b_new_pred_n, NULL);
		snprintf(x, sizeof x, "\"commits\":%" PRIu64, s->commits_new);
		jline(f, "cluster_purity_new", "ratio", purity,
		      (uint64_t)s->purity_n, x);
		snprintf(x, sizeof x, "\"baseline\":{\"phase_a\":%.6g},"
			 "\"goal_max_loss\":%g", a_acc, goal_ret);
		jline(f, "b_tail_known_accuracy", "ratio", t_acc, o.t_known, x);
		snprintf(x, sizeof x, "\"goal\":%g,\"labels_sent\":%zu,"
			 "\"labels_received\":%zu,\"labels_received_right\":"
			 "%zu", goal_acc, s->gt_sent, s->fb_in, s->fb_right);
		jline(f, "phase_c_accuracy_all", "ratio", c_acc, o.c_n, x);
		for (int c = 0; c < 256; c++) {
			if (!o.c_cls_n[c])
				continue;
			char k[48];
			snprintf(k, sizeof k, "phase_c_recall_class_%d", c);
			jline(f, k, "ratio", ratio(o.c_cls_ok[c], o.c_cls_n[c]),
			      o.c_cls_n[c], NULL);
		}
		snprintf(x, sizeof x, "\"trials\":%" PRIu64 ",\"rollbacks\":%"
			 PRIu64 ",\"rejects\":%" PRIu64 ",\"renames\":%" PRIu64,
			 s->trials, s->rollbacks, s->rejects, s->renames);
		jline(f, "adaptations_committed", "count", (double)s->commits,
		      s->commits, x);
		jline(f, "rss_peak", "kib", (double)peak, 1, NULL);
		snprintf(x, sizeof x, "\"missing\":%" PRIu64 ",\"played\":%zu",
			 o.missing, s->pos);
		jline(f, "goals_met", "bool", all ? 1 : 0, s->nplay, x);
		fflush(f);
		if (cl)
			fclose(f);
	}
	if (s->bad || s->unmatched)
		tlcm_node_log(ctx, TLCM_LOG_WARN, "%" PRIu64 " bad and %" PRIu64
			      " unmatched messages (an unmatched prediction "
			      "of a warm-up frame means the knn's learn_first "
			      "is lower than the warm-up set, %" PRIu64 ")",
			      s->bad, s->unmatched, s->phase_len[PH_WARM]);
	if (!all && tlcm_param_bool(ctx, "fail_on_goal")) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "a goal was missed (see the "
			      "table)");
		return TLCM_EINVAL;
	}
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	scen_t *s = st;
	static const char *const states[] = {
		"play", "wait_b", "labels", "wait_ext", "wait_labels",
		"play_c",
		"wait_end", "done"};
	(void)ctx;
	const char *ph = s->pos < s->nplay ? phase_name[s->play[s->pos].phase]
					   : "end";
	snprintf(buf, len, "{\"state\":\"%s\",\"phase\":\"%s\",\"played\":%zu,"
		 "\"frames\":%zu,\"quarantined_seen\":%zu,\"labels_sent\":%zu,"
		 "\"detectors\":%zu,\"commits\":%" PRIu64 ",\"rollbacks\":%"
		 PRIu64 ",\"bad\":%" PRIu64 "}", states[s->state], ph, s->pos,
		 s->nplay, s->ngt, s->gt_sent, s->ndet, s->commits,
		 s->rollbacks, s->bad);
	return 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	(void)ctx;
	release(st);
}

const tlcm_node_type_t tlcm_node_eval_scenario = {
	.name = "eval.scenario",
	.doc = "play the learning-loop evaluation (warm-up, stationary, new "
	       "classes, ground truth) from a labelled IDX dataset and score "
	       "the graph's answers",
	.inputs = inputs,
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(scen_t),
	.init = init,
	.tick = tick,
	.process = process,
	.describe = describe,
	.fini = fini,
};
