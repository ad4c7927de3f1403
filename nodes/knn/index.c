/* index.c — the KNN index (see index.h): contiguous storage, kernel-driven
 * distances, bounded-insertion top-k, eviction policies, interned labels.
 *
 * Per stored sample (slot) the index keeps its row (x or codes + scale),
 * label id, frame id, seq (insertion order) and `used` stamp, and `aux`,
 * a per-metric constant: 1/|x| for cosine, s^2 |c|^2 for quantised
 * Euclidean. A query runs one kernel over all rows into `dist`, turns the
 * kernel's sums into comparable distances when the metric needs it, and
 * keeps the k best in a sorted buffer that a candidate enters only when it
 * beats the current k-th (or, before there are k, a bound the kernels
 * find). A label's typical distance (tlcm_knn_typical) tabulates its
 * members' pairwise distances, each pair once, eight at a time.
 */
#include "nodes/knn/index.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "nodes/knn/dist.h"

#define INV_EPS 1e-6f /* inverse-distance weighting: 1 / (d + eps) */

struct tlcm_knn {
	tlcm_knn_opts_t o;
	const tlcm_knn_kernels_t *kern;
	size_t n, cap;
	float *x;       /* cap * dim, float storage */
	int8_t *codes;  /* cap * dim, quantised storage */
	float *scale;   /* quantised: per-sample scale */
	float *aux;     /* per-metric constant (see above) */
	uint32_t *label;
	uint64_t *frame, *seq, *used;
	float *dist;    /* query scratch */
	float *qa;      /* the query, copied 64-byte aligned (dim values) */
	float *mins;    /* query scratch: kth_bound's group minima */
	char **names;   /* label table */
	size_t *counts; /* samples per label id */
	float *typ;     /* per label id: typical distance (tlcm_knn_typical) */
	bool *typ_ok;   /* ...still valid (no sample of it came or went) */
	size_t nlabels, labcap;
	tlcm_knn_stats_t st;
};

int tlcm_knn_new(tlcm_knn_t **out, const tlcm_knn_opts_t *o)
{
	*out = NULL;
	if (o->k < 1 || o->k > TLCM_KNN_MAX_K || o->max_samples < 1 ||
	    o->max_samples > TLCM_KNN_MAX_SAMPLES ||
	    o->dim > TLCM_KNN_MAX_DIM || o->metric > TLCM_KNN_MANHATTAN ||
	    o->weighting > TLCM_KNN_INVERSE || o->eviction > TLCM_KNN_LRU)
		return TLCM_EINVAL;
	tlcm_knn_t *ix = calloc(1, sizeof *ix);
	if (!ix)
		return TLCM_ENOMEM;
	ix->o = *o;
	ix->kern = tlcm_knn_kernels(o->portable);
	ix->st.next_seq = 1;
	*out = ix;
	return 0;
}

void tlcm_knn_free(tlcm_knn_t *ix)
{
	if (!ix)
		return;
	free(ix->x);
	free(ix->codes);
	free(ix->scale);
	free(ix->aux);
	free(ix->label);
	free(ix->frame);
	free(ix->seq);
	free(ix->used);
	free(ix->dist);
	free(ix->qa);
	free(ix->mins);
	for (size_t i = 0; i < ix->nlabels; i++)
		free(ix->names[i]);
	free(ix->names);
	free(ix->counts);
	free(ix->typ);
	free(ix->typ_ok);
	free(ix);
}

const tlcm_knn_opts_t *tlcm_knn_opts(const tlcm_knn_t *ix)
{
	return &ix->o;
}

int tlcm_knn_set_k(tlcm_knn_t *ix, unsigned k)
{
	if (k < 1 || k > TLCM_KNN_MAX_K)
		return TLCM_EINVAL;
	if (k != ix->o.k) /* the typical distances are means over k */
		for (size_t i = 0; i < ix->nlabels; i++)
			ix->typ_ok[i] = false;
	ix->o.k = k;
	return 0;
}

void tlcm_knn_set_weighting(tlcm_knn_t *ix, tlcm_knn_weighting_t w)
{
	ix->o.weighting = w;
}

size_t tlcm_knn_size(const tlcm_knn_t *ix)
{
	return ix->n;
}

const char *tlcm_knn_kernel_name(const tlcm_knn_t *ix)
{
	return ix->kern->name;
}

size_t tlcm_knn_bad_value(const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!(fabsf(x[i]) <= TLCM_KNN_MAX_VALUE)) /* NaN fails too */
			return i;
	return n;
}

/* ---- storage --------------------------------------------------------------- */

#define GROW(p, n)                                                            \
	do {                                                                  \
		void *np_ = realloc((p), (n) * sizeof *(p));                  \
		if (!np_)                                                     \
			return TLCM_ENOMEM;                                   \
		(p) = np_;                                                    \
	} while (0)

/* The rows start on a cache line: with d a multiple of 16 (floats) or
 * 64 (codes) no kernel load then straddles two lines, which for long
 * rows (d = 1280: a fifth faster) the kernels feel. *p holds `used`
 * bytes; grows it to `size`. */
static int grow_aligned(void **p, size_t used, size_t size)
{
	void *np = aligned_alloc(64, (size + 63) & ~(size_t)63);
	if (!np)
		return TLCM_ENOMEM;
	if (used)
		memcpy(np, *p, used);
	free(*p);
	*p = np;
	return 0;
}

/* Room for one more sample (n < max_samples). */
static int grow(tlcm_knn_t *ix)
{
	if (ix->n < ix->cap)
		return 0;
	size_t cap = ix->cap ? ix->cap * 2 : 64;
	if (cap > ix->o.max_samples)
		cap = ix->o.max_samples;
	size_t d = ix->o.dim;
	int rc;
	if (!ix->qa && (rc = grow_aligned((void **)&ix->qa, 0,
					  d * sizeof *ix->qa)))
		return rc;
	if (ix->o.quantize) {
		if ((rc = grow_aligned((void **)&ix->codes, ix->n * d,
				       cap * d)))
			return rc;
		GROW(ix->scale, cap);
	} else {
		if ((rc = grow_aligned((void **)&ix->x,
				       ix->n * d * sizeof *ix->x,
				       cap * d * sizeof *ix->x)))
			return rc;
	}
	GROW(ix->aux, cap);
	GROW(ix->label, cap);
	GROW(ix->frame, cap);
	GROW(ix->seq, cap);
	GROW(ix->used, cap);
	GROW(ix->dist, cap);
	GROW(ix->mins, cap / 4 + 8);
	ix->cap = cap;
	return 0;
}

/* Take dim from the first vector, or check it. */
static int fix_dim(tlcm_knn_t *ix, size_t dim)
{
	if (ix->o.dim)
		return dim == ix->o.dim ? 0 : TLCM_EINVAL;
	if (dim < 1 || dim > TLCM_KNN_MAX_DIM)
		return TLCM_EINVAL;
	ix->o.dim = dim;
	return 0;
}

static bool label_ok(const char *label)
{
	size_t len = label ? strlen(label) : 0;
	return len >= 1 && len <= TLCM_KNN_MAX_LABEL;
}

/* The id of label, adding it (or recycling an unused id) if new. */
static int64_t intern(tlcm_knn_t *ix, const char *label)
{
	size_t free_id = SIZE_MAX;
	for (size_t i = 0; i < ix->nlabels; i++) {
		if (!strcmp(ix->names[i], label))
			return (int64_t)i;
		if (!ix->counts[i] && free_id == SIZE_MAX)
			free_id = i;
	}
	char *copy = strdup(label);
	if (!copy)
		return TLCM_ENOMEM;
	if (free_id != SIZE_MAX) {
		free(ix->names[free_id]);
		ix->names[free_id] = copy;
		ix->typ_ok[free_id] = false;
		return (int64_t)free_id;
	}
	if (ix->nlabels == TLCM_KNN_MAX_LABELS) {
		free(copy);
		return TLCM_ETOOBIG;
	}
	if (ix->nlabels == ix->labcap) {
		size_t cap = ix->labcap ? ix->labcap * 2 : 16;
		char **nn = realloc(ix->names, cap * sizeof *nn);
		if (nn)
			ix->names = nn;
		size_t *nc = nn ? realloc(ix->counts, cap * sizeof *nc) : NULL;
		if (nc)
			ix->counts = nc;
		float *nt = nc ? realloc(ix->typ, cap * sizeof *nt) : NULL;
		if (nt)
			ix->typ = nt;
		bool *nk = nt ? realloc(ix->typ_ok, cap * sizeof *nk) : NULL;
		if (!nk) {
			free(copy);
			return TLCM_ENOMEM;
		}
		ix->typ_ok = nk;
		ix->labcap = cap;
	}
	ix->names[ix->nlabels] = copy;
	ix->counts[ix->nlabels] = 0;
	ix->typ_ok[ix->nlabels] = false;
	return (int64_t)ix->nlabels++;
}

/* Sum of squares as double (norms, code energy). */
static double sumsq_f(const float *x, size_t d)
{
	double s = 0;
	for (size_t j = 0; j < d; j++)
		s += (double)x[j] * x[j];
	return s;
}

static double sumsq_c(const int8_t *c, size_t d)
{
	int64_t s = 0;
	for (size_t j = 0; j < d; j++)
		s += (int64_t)c[j] * c[j];
	return (double)s;
}

/* aux for slot from its stored row. */
static void set_aux(tlcm_knn_t *ix, size_t slot)
{
	size_t d = ix->o.dim;
	double e = ix->o.quantize ? sumsq_c(ix->codes + slot * d, d)
				  : sumsq_f(ix->x + slot * d, d);
	float a = 0;
	if (ix->o.metric == TLCM_KNN_COSINE)
		a = e > 0 ? (float)(1.0 / sqrt(e)) : 0.0f;
	else if (ix->o.quantize && ix->o.metric == TLCM_KNN_EUCLIDEAN)
		a = (float)((double)ix->scale[slot] * ix->scale[slot] * e);
	ix->aux[slot] = a;
}

/* Store x in slot (quantising when the index is quantised). */
static void set_row(tlcm_knn_t *ix, size_t slot, const float *x)
{
	size_t d = ix->o.dim;
	if (!ix->o.quantize) {
		memcpy(ix->x + slot * d, x, d * sizeof *x);
	} else {
		float m = 0;
		for (size_t j = 0; j < d; j++)
			m = fabsf(x[j]) > m ? fabsf(x[j]) : m;
		float inv = m > 0 ? 127.0f / m : 0.0f;
		int8_t *c = ix->codes + slot * d;
		for (size_t j = 0; j < d; j++) {
			float v = rintf(x[j] * inv);
			c[j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
		}
		ix->scale[slot] = m / 127.0f;
	}
	set_aux(ix, slot);
}

/* Store codes (scale) in slot, converting for a float index. */
static void set_codes(tlcm_knn_t *ix, size_t slot, const int8_t *c,
		      float scale)
{
	size_t d = ix->o.dim;
	if (ix->o.quantize) {
		memcpy(ix->codes + slot * d, c, d);
		ix->scale[slot] = scale;
	} else {
		for (size_t j = 0; j < d; j++)
			ix->x[slot * d + j] = scale * (float)c[j];
	}
	set_aux(ix, slot);
}

/* The slot the eviction policy frees (the index is full). */
static size_t victim(const tlcm_knn_t *ix)
{
	size_t v = 0;
	switch (ix->o.eviction) {
	case TLCM_KNN_CLASS_BALANCED: {
		size_t big = 0;
		for (size_t i = 0; i < ix->nlabels; i++)
			big = ix->counts[i] > big ? ix->counts[i] : big;
		v = SIZE_MAX;
		for (size_t i = 0; i < ix->n; i++)
			if (ix->counts[ix->label[i]] == big &&
			    (v == SIZE_MAX || ix->seq[i] < ix->seq[v]))
				v = i;
		break;
	}
	case TLCM_KNN_LRU:
		for (size_t i = 1; i < ix->n; i++)
			if (ix->used[i] < ix->used[v] ||
			    (ix->used[i] == ix->used[v] &&
			     ix->seq[i] < ix->seq[v]))
				v = i;
		break;
	default:
		for (size_t i = 1; i < ix->n; i++)
			if (ix->seq[i] < ix->seq[v])
				v = i;
		break;
	}
	return v;
}

/* A slot for a new sample with label id: a fresh one, or the victim's. */
static int64_t take_slot(tlcm_knn_t *ix)
{
	if (ix->n < ix->o.max_samples) {
		int rc = grow(ix);
		if (rc)
			return rc;
		return (int64_t)ix->n++;
	}
	size_t v = victim(ix);
	ix->counts[ix->label[v]]--;
	ix->typ_ok[ix->label[v]] = false;
	ix->st.evictions++;
	return (int64_t)v;
}

static void place(tlcm_knn_t *ix, size_t slot, uint32_t id, uint64_t frame,
		  uint64_t seq, uint64_t used)
{
	ix->label[slot] = id;
	ix->counts[id]++;
	ix->typ_ok[id] = false;
	ix->frame[slot] = frame;
	ix->seq[slot] = seq;
	ix->used[slot] = used;
	if (seq >= ix->st.next_seq)
		ix->st.next_seq = seq + 1;
}

int tlcm_knn_relabel(tlcm_knn_t *ix, uint64_t frame_id, const char *label)
{
	if (!frame_id || !label_ok(label))
		return TLCM_EINVAL;
	size_t i;
	for (i = 0; i < ix->n && ix->frame[i] != frame_id; i++)
		;
	if (i == ix->n)
		return 0;
	int64_t id = intern(ix, label);
	if (id < 0)
		return (int)id;
	int count = 0;
	for (; i < ix->n; i++) {
		if (ix->frame[i] != frame_id)
			continue;
		ix->counts[ix->label[i]]--;
		ix->typ_ok[ix->label[i]] = false;
		ix->label[i] = (uint32_t)id;
		ix->counts[id]++;
		ix->typ_ok[id] = false;
		ix->st.relabels++;
		count++;
	}
	return count;
}

int tlcm_knn_add(tlcm_knn_t *ix, const float *x, size_t dim,
		 const char *label, uint64_t frame_id)
{
	if (!label_ok(label) || tlcm_knn_bad_value(x, dim) != dim)
		return TLCM_EINVAL;
	int rc = fix_dim(ix, dim);
	if (rc)
		return rc;
	if (frame_id) {
		rc = tlcm_knn_relabel(ix, frame_id, label);
		if (rc)
			return rc < 0 ? rc : 1;
	}
	int64_t id = intern(ix, label);
	if (id < 0)
		return (int)id;
	int64_t slot = take_slot(ix);
	if (slot < 0)
		return (int)slot;
	place(ix, (size_t)slot, (uint32_t)id, frame_id, ix->st.next_seq,
	      ix->st.queries);
	set_row(ix, (size_t)slot, x);
	ix->st.added++;
	return 0;
}

int tlcm_knn_put(tlcm_knn_t *ix, const char *label, uint64_t frame_id,
		 uint64_t seq, uint64_t used, const float *x,
		 const int8_t *codes, float scale, size_t dim)
{
	if (!label_ok(label) || (!x && !codes) || !seq ||
	    (x && tlcm_knn_bad_value(x, dim) != dim) ||
	    (codes && !(scale >= 0 && scale <= TLCM_KNN_MAX_VALUE / 127)))
		return TLCM_EINVAL;
	int rc = fix_dim(ix, dim);
	if (rc)
		return rc;
	int64_t id = intern(ix, label);
	if (id < 0)
		return (int)id;
	int64_t slot = take_slot(ix);
	if (slot < 0)
		return (int)slot;
	place(ix, (size_t)slot, (uint32_t)id, frame_id, seq, used);
	if (x)
		set_row(ix, (size_t)slot, x);
	else
		set_codes(ix, (size_t)slot, codes, scale);
	return 0;
}

/* ---- queries ---------------------------------------------------------------- */

/* dist[0..n) for q: squared Euclidean, cosine distance or Manhattan. */
static void distances(tlcm_knn_t *ix, const float *q)
{
	const tlcm_knn_kernels_t *k = ix->kern;
	size_t n = ix->n, d = ix->o.dim;
	float *dist = ix->dist;
	bool quant = ix->o.quantize;
	/* The kernels load the query once per row (d = 32: once): aligned
	 * like the rows, no load straddles two cache lines. */
	if (d != 32 && ((uintptr_t)q & 31)) {
		memcpy(ix->qa, q, d * sizeof *q);
		q = ix->qa;
	}
	if (ix->o.metric == TLCM_KNN_MANHATTAN) {
		if (quant)
			k->l1_i8(q, ix->codes, ix->scale, n, d, dist);
		else
			k->l1(q, ix->x, n, d, dist);
		return;
	}
	if (ix->o.metric == TLCM_KNN_EUCLIDEAN && !quant) {
		k->l2(q, ix->x, n, d, dist);
		return;
	}
	if (quant)
		k->dot_i8(q, ix->codes, n, d, dist);
	else
		k->dot(q, ix->x, n, d, dist);
	double qq = sumsq_f(q, d);
	if (ix->o.metric == TLCM_KNN_EUCLIDEAN) { /* quantised */
		float fq = (float)qq;
		for (size_t i = 0; i < n; i++) {
			float v = fq - 2.0f * ix->scale[i] * dist[i] +
				  ix->aux[i];
			dist[i] = v > 0 ? v : 0;
		}
		return;
	}
	float iq = qq > 0 ? (float)(1.0 / sqrt(qq)) : 0.0f;
	for (size_t i = 0; i < n; i++) {
		float v = 1.0f - dist[i] * iq * ix->aux[i];
		dist[i] = v < 0 ? 0 : v > 2 ? 2 : v;
	}
}

/* The k best of dist (ascending; equal: larger seq first) into r: a
 * sorted buffer that a distance enters when it is not above the k-th
 * (`worst`). `worst` may start at any bound T with k distances not above
 * it: a distance above T would only sit behind the others in the buffer
 * until k of them had come and pushed it out, so leaving it out changes
 * nothing. kth_bound gives a T close to the k-th distance, which leaves
 * few candidates (each costs a mispredicted branch or two), and
 * not_above skips the others many at a time. */
static void select_k(const tlcm_knn_t *ix, size_t k, tlcm_knn_result_t *r)
{
	const tlcm_knn_kernels_t *kern = ix->kern;
	const float *dist = ix->dist;
	const uint64_t *seq = ix->seq;
	float *bd = r->dist;
	uint32_t *bs = r->slot;
	size_t m = 0, n = ix->n;
	float worst = n > k ? kern->kth_bound(dist, n, k, ix->mins)
			    : INFINITY;
	for (size_t i = 0; (i = kern->not_above(dist, i, n, worst)) < n;
	     i++) {
		float v = dist[i];
		if (m == k) {
			if (v == worst && seq[i] < seq[bs[k - 1]])
				continue;
			m--; /* drop the k-th */
		}
		size_t p = m++;
		while (p > 0 && (v < bd[p - 1] ||
				 (v == bd[p - 1] && seq[i] > seq[bs[p - 1]]))) {
			bd[p] = bd[p - 1];
			bs[p] = bs[p - 1];
			p--;
		}
		bd[p] = v;
		bs[p] = (uint32_t)i;
		if (m == k)
			worst = bd[k - 1];
	}
	r->n = m;
}

/* Labels, reported distances and the vote. */
static void vote(const tlcm_knn_t *ix, tlcm_knn_result_t *r)
{
	float w[TLCM_KNN_MAX_K], total = 0, sum = 0;
	for (size_t i = 0; i < r->n; i++) {
		if (ix->o.metric == TLCM_KNN_EUCLIDEAN)
			r->dist[i] = sqrtf(r->dist[i]);
		r->label[i] = ix->label[r->slot[i]];
		w[i] = ix->o.weighting == TLCM_KNN_INVERSE
			       ? 1.0f / (r->dist[i] + INV_EPS) : 1.0f;
		total += w[i];
		sum += r->dist[i];
	}
	float best = -1;
	for (size_t i = 0; i < r->n; i++) {
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = r->label[j] == r->label[i];
		if (seen)
			continue;
		float t = 0;
		for (size_t j = i; j < r->n; j++)
			if (r->label[j] == r->label[i])
				t += w[j];
		if (t > best) {
			best = t;
			r->winner = r->label[i];
		}
	}
	r->confidence = r->n ? best / total : 0;
	r->mean_distance = r->n ? sum / (float)r->n : 0;
}

int tlcm_knn_query(tlcm_knn_t *ix, const float *q, size_t dim,
		   tlcm_knn_result_t *r)
{
	r->n = 0;
	r->winner = 0;
	r->confidence = r->mean_distance = 0;
	if ((ix->o.dim && dim != ix->o.dim) || tlcm_knn_bad_value(q, dim) != dim)
		return TLCM_EINVAL;
	ix->st.queries++;
	if (!ix->n)
		return 0;
	distances(ix, q);
	select_k(ix, ix->o.k < ix->n ? ix->o.k : ix->n, r);
	vote(ix, r);
	for (size_t i = 0; i < r->n; i++)
		ix->used[r->slot[i]] = ix->st.queries;
	return 0;
}

/* ---- inspection ---------------------------------------------------------------- */

/* ---- typical distance per label ---------------------------------------- */

#define TYP_MAX_MEMBERS 256 /* members a label's typical distance uses */

/* Row i as floats (dequantised into buf when the storage is int8). */
static const float *row_of(const tlcm_knn_t *ix, size_t i, float *buf)
{
	size_t d = ix->o.dim;
	if (!ix->o.quantize)
		return ix->x + i * d;
	for (size_t j = 0; j < d; j++)
		buf[j] = ix->scale[i] * (float)ix->codes[i * d + j];
	return buf;
}

/* Sum of squares of a row in double, value by value (cosine norms). */
static double sumsq_d(const float *a, size_t d)
{
	double s = 0;
	for (size_t j = 0; j < d; j++)
		s += (double)a[j] * a[j];
	return s;
}

/* The sums behind a pair's distance (dist.h's col_sums ops). */
static int sum_op(tlcm_knn_metric_t m)
{
	return m == TLCM_KNN_MANHATTAN ? TLCM_KNN_SUM_ABS
	       : m == TLCM_KNN_COSINE  ? TLCM_KNN_SUM_DOT
				       : TLCM_KNN_SUM_SQ;
}

/* A pair's distance in the metric's reported form from its sum s (na,
 * nb: the rows' sums of squares, for cosine). */
static float pair_distance(tlcm_knn_metric_t m, double s, double na,
			   double nb)
{
	switch (m) {
	case TLCM_KNN_MANHATTAN:
		return (float)s;
	case TLCM_KNN_COSINE:
		return na > 0 && nb > 0 ? (float)(1 - s / sqrt(na * nb)) : 1.0f;
	default:
		return (float)sqrt(s);
	}
}

/* The sums of row a against rows b[0..4), as col_sums sums them (in
 * double, value by value), four side by side: for members too many to
 * lay out as a table. */
static void pair_sums4(int op, const float *a, const float *const b[4],
		       size_t d, double s[4])
{
	const float *b0 = b[0], *b1 = b[1], *b2 = b[2], *b3 = b[3];
	double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	for (size_t j = 0; j < d; j++) {
		double x = a[j], e0 = x - b0[j], e1 = x - b1[j],
		       e2 = x - b2[j], e3 = x - b3[j];
		if (op == TLCM_KNN_SUM_SQ) {
			s0 += e0 * e0;
			s1 += e1 * e1;
			s2 += e2 * e2;
			s3 += e3 * e3;
		} else if (op == TLCM_KNN_SUM_DOT) {
			s0 += x * b0[j];
			s1 += x * b1[j];
			s2 += x * b2[j];
			s3 += x * b3[j];
		} else {
			s0 += fabs(e0);
			s1 += fabs(e1);
			s2 += fabs(e2);
			s3 += fabs(e3);
		}
	}
	s[0] = s0;
	s[1] = s1;
	s[2] = s2;
	s[3] = s3;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

#define TYP_MAX_TABLE (1u << 20) /* members x dim values laid out */

/* The distance of every pair of the m members mem[] into tab (m x m),
 * each pair once: a distance is the same whichever of two rows is a
 * (a - b = -(b - a) and products commute, even rounded). Up to
 * TYP_MAX_TABLE values the members go into a value-major table whose
 * columns col_sums takes eight at a time; else four rows at a time. */
static int pair_table(const tlcm_knn_t *ix, const uint32_t *mem, size_t m,
		      const double *nrm, float *tab)
{
	size_t d = ix->o.dim, mp = m + 8; /* columns, room for a last 8 */
	int op = sum_op(ix->o.metric);
	float *ba = malloc(5 * d * sizeof *ba); /* dequantised rows */
	float *t = m * d <= TYP_MAX_TABLE ? malloc(mp * d * sizeof *t) : NULL;
	if (!ba) {
		free(t);
		return TLCM_ENOMEM;
	}
	if (t) {
		for (size_t c = 0; c < mp; c++) {
			const float *r = c < m ? row_of(ix, mem[c], ba) : NULL;
			for (size_t j = 0; j < d; j++)
				t[j * mp + c] = r ? r[j] : 0;
		}
	}
	for (size_t i = 0; i + 1 < m; i++) {
		const float *a = row_of(ix, mem[i], ba);
		for (size_t j = i + 1; j < m; j += t ? 8 : 4) {
			double s[8];
			size_t w;
			if (t) {
				ix->kern->col_sums(op, a, t + j, mp, d, s);
				w = m - j < 8 ? m - j : 8;
			} else {
				const float *b[4];
				w = m - j < 4 ? m - j : 4;
				for (size_t l = 0; l < 4; l++) { /* pad: j */
					size_t c = j + (l < w ? l : 0);
					b[l] = row_of(ix, mem[c],
						      ba + (l + 1) * d);
				}
				pair_sums4(op, a, b, d, s);
			}
			for (size_t l = 0; l < w; l++)
				tab[i * m + j + l] = tab[(j + l) * m + i] =
					pair_distance(ix->o.metric, s[l],
						      nrm[i], nrm[j + l]);
		}
	}
	free(t);
	free(ba);
	return 0;
}

/* The median over (up to TYP_MAX_MEMBERS, evenly spread) samples of the
 * label of their mean distance to their k nearest other samples of the
 * label; 0 with fewer than 2 samples. */
static float compute_typical(const tlcm_knn_t *ix, uint32_t id)
{
	size_t cnt = ix->counts[id], d = ix->o.dim;
	size_t stride = (cnt + TYP_MAX_MEMBERS - 1) / TYP_MAX_MEMBERS, m = 0;
	if (cnt < 2)
		return 0;
	uint32_t *mem = malloc(TYP_MAX_MEMBERS * sizeof *mem);
	float *loo = malloc(TYP_MAX_MEMBERS * sizeof *loo);
	float *dd = malloc(TYP_MAX_MEMBERS * sizeof *dd);
	double *nrm = malloc(TYP_MAX_MEMBERS * sizeof *nrm);
	float *ba = malloc(d * sizeof *ba), *tab = NULL;
	float typ = 0;
	if (!mem || !loo || !dd || !nrm || !ba)
		goto out;
	for (size_t i = 0, seen = 0; i < ix->n && m < TYP_MAX_MEMBERS; i++)
		if (ix->label[i] == id && seen++ % stride == 0)
			mem[m++] = (uint32_t)i;
	if (!(tab = malloc(m * m * sizeof *tab)))
		goto out;
	for (size_t i = 0; i < m; i++)
		nrm[i] = ix->o.metric == TLCM_KNN_COSINE
				 ? sumsq_d(row_of(ix, mem[i], ba), d) : 0;
	if (pair_table(ix, mem, m, nrm, tab))
		goto out;
	size_t k = ix->o.k < m - 1 ? ix->o.k : m - 1;
	for (size_t i = 0; i < m; i++) {
		const float *row = tab + i * m;
		size_t nd = 0; /* dd[0..nd): the k smallest so far, sorted */
		for (size_t j = 0; j < m; j++) {
			if (j == i)
				continue;
			float v = row[j];
			if (nd == k && v >= dd[k - 1])
				continue;
			size_t at = nd < k ? nd++ : k - 1;
			for (; at > 0 && dd[at - 1] > v; at--)
				dd[at] = dd[at - 1];
			dd[at] = v;
		}
		double sum = 0;
		for (size_t j = 0; j < k; j++)
			sum += dd[j];
		loo[i] = (float)(sum / (double)k);
	}
	qsort(loo, m, sizeof *loo, cmp_float);
	typ = m % 2 ? loo[m / 2] : (loo[m / 2 - 1] + loo[m / 2]) / 2;
out:
	free(mem);
	free(loo);
	free(dd);
	free(nrm);
	free(tab);
	free(ba);
	return typ;
}

float tlcm_knn_typical(tlcm_knn_t *ix, uint32_t id)
{
	if (id >= ix->nlabels)
		return 0;
	if (!ix->typ_ok[id]) {
		ix->typ[id] = compute_typical(ix, id);
		ix->typ_ok[id] = true;
	}
	return ix->typ[id];
}

size_t tlcm_knn_nlabels(const tlcm_knn_t *ix)
{
	return ix->nlabels;
}

const char *tlcm_knn_label_name(const tlcm_knn_t *ix, uint32_t id)
{
	return id < ix->nlabels ? ix->names[id] : NULL;
}

size_t tlcm_knn_label_count(const tlcm_knn_t *ix, uint32_t id)
{
	return id < ix->nlabels ? ix->counts[id] : 0;
}

void tlcm_knn_sample(const tlcm_knn_t *ix, size_t i, tlcm_knn_sample_t *s)
{
	size_t d = ix->o.dim;
	s->frame_id = ix->frame[i];
	s->seq = ix->seq[i];
	s->used = ix->used[i];
	s->label = ix->label[i];
	s->x = ix->o.quantize ? NULL : ix->x + i * d;
	s->codes = ix->o.quantize ? ix->codes + i * d : NULL;
	s->scale = ix->o.quantize ? ix->scale[i] : 1.0f;
}

void tlcm_knn_get_stats(const tlcm_knn_t *ix, tlcm_knn_stats_t *st)
{
	*st = ix->st;
}

void tlcm_knn_set_stats(tlcm_knn_t *ix, const tlcm_knn_stats_t *st)
{
	uint64_t next = ix->st.next_seq;
	ix->st = *st;
	if (ix->st.next_seq < next)
		ix->st.next_seq = next;
}
