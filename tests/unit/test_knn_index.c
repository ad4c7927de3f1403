/* test_knn_index.c — the KNN index (nodes/knn/index.c) against a brute-force
 * reference written here.
 *
 * Small-integer vectors make every float distance exact, so neighbours,
 * their order (ties: newest first) and distances must equal the
 * reference's exactly, for both kernels (AVX2 when present, portable),
 * Euclidean and Manhattan, many dimensions (tails included) and sizes
 * (the selection's bound, rows four at a time); cosine is checked within
 * float tolerance. Also: the vote under both weightings,
 * each eviction policy's exact victims, relabelling by frame id, label id
 * recycling, refused input, and int8 storage: every distance within the
 * proven bound (sqrt(dim) * scale / 2 for Euclidean, dim * scale / 2 for
 * Manhattan) and labels agreeing with the float index on clustered data.
 * The typical neighbour distance per label (tlcm_knn_typical) against a
 * reference written here: each metric, int8 storage (and within the
 * quantisation bound of the float value), fewer than 2 samples, members
 * too many for one table, the evenly spread subset beyond 256 samples;
 * its cache follows add, put,
 * eviction, relabel and k, and leaves the other labels' values alone.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "nodes/knn/index.h"
#include "tests/tlcm_test.h"

static uint64_t rng = 88172645463325252ull;

static uint64_t next_u64(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int rand_int(int lo, int hi) /* inclusive */
{
	return lo + (int)(next_u64() % (uint64_t)(hi - lo + 1));
}

static float rand_unit(void) /* [0, 1) */
{
	return (float)(next_u64() >> 40) / (float)(1 << 24);
}

static float rand_gauss(void)
{
	float u = rand_unit() + 1e-7f, v = rand_unit();
	return sqrtf(-2 * logf(u)) * cosf(6.2831853f * v);
}

static const char *const names[] = {"a", "b", "c", "d", "e"};

static tlcm_knn_t *make(size_t dim, unsigned k, tlcm_knn_metric_t m,
			tlcm_knn_weighting_t w, size_t max,
			tlcm_knn_eviction_t ev, bool quant, bool portable)
{
	tlcm_knn_opts_t o = {dim, k, m, w, max, ev, quant, portable};
	tlcm_knn_t *ix = NULL;
	CHECK_INT(tlcm_knn_new(&ix, &o), 0);
	return ix;
}

/* ---- reference ------------------------------------------------------------ */

typedef struct {
	double d;
	size_t slot;
	uint64_t seq;
} ref_t;

static int ref_cmp(const void *a, const void *b)
{
	const ref_t *x = a, *y = b;
	if (x->d != y->d)
		return x->d < y->d ? -1 : 1;
	return (x->seq < y->seq) - (x->seq > y->seq); /* newest first */
}

static double ref_dist(tlcm_knn_metric_t m, const float *q, const float *x,
		       size_t d)
{
	double s = 0, qq = 0, xx = 0;
	for (size_t j = 0; j < d; j++) {
		double t = (double)q[j] - x[j];
		if (m == TLCM_KNN_EUCLIDEAN)
			s += t * t;
		else if (m == TLCM_KNN_MANHATTAN)
			s += fabs(t);
		else {
			s += (double)q[j] * x[j];
			qq += (double)q[j] * q[j];
			xx += (double)x[j] * x[j];
		}
	}
	if (m == TLCM_KNN_EUCLIDEAN)
		return sqrt(s);
	if (m == TLCM_KNN_COSINE) {
		double c = qq > 0 && xx > 0 ? s / sqrt(qq * xx) : 0;
		double v = 1 - c;
		return v < 0 ? 0 : v > 2 ? 2 : v;
	}
	return s;
}

/* All stored samples of ix ordered by the reference. */
static ref_t *ref_order(const tlcm_knn_t *ix, tlcm_knn_metric_t m,
			const float *q)
{
	size_t n = tlcm_knn_size(ix), d = tlcm_knn_opts(ix)->dim;
	ref_t *r = calloc(n, sizeof *r);
	for (size_t i = 0; i < n; i++) {
		tlcm_knn_sample_t s;
		tlcm_knn_sample(ix, i, &s);
		r[i] = (ref_t){ref_dist(m, q, s.x, d), i, s.seq};
	}
	qsort(r, n, sizeof *r, ref_cmp);
	return r;
}

/* The reference vote over the first n of ref. */
static void ref_vote(const tlcm_knn_t *ix, const ref_t *ref, size_t n,
		     bool inverse, uint32_t *winner, double *conf)
{
	double w[TLCM_KNN_MAX_K], total = 0, best = -1;
	uint32_t lab[TLCM_KNN_MAX_K];
	for (size_t i = 0; i < n; i++) {
		tlcm_knn_sample_t s;
		tlcm_knn_sample(ix, ref[i].slot, &s);
		lab[i] = s.label;
		w[i] = inverse ? 1.0 / ((double)(float)ref[i].d + 1e-6) : 1.0;
		total += w[i];
	}
	for (size_t i = 0; i < n; i++) {
		double t = 0;
		bool seen = false;
		for (size_t j = 0; j < i; j++)
			seen |= lab[j] == lab[i];
		for (size_t j = 0; j < n && !seen; j++)
			t += lab[j] == lab[i] ? w[j] : 0;
		if (!seen && t > best) {
			best = t;
			*winner = lab[i];
		}
	}
	*conf = best / total;
}

/* ---- exact neighbours ------------------------------------------------------- */

static void exact_nk(tlcm_knn_metric_t m, size_t d, size_t n, unsigned k,
		     bool portable, bool inverse)
{
	tlcm_knn_t *ix = make(d, k, m, inverse ? TLCM_KNN_INVERSE
					       : TLCM_KNN_UNIFORM, n,
			      TLCM_KNN_FIFO, false, portable);
	float *x = malloc(d * sizeof *x), *q = malloc(d * sizeof *q);
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < d; j++)
			x[j] = (float)rand_int(-2, 2);
		CHECK_INT(tlcm_knn_add(ix, x, d, names[i % 5], 0), 0);
	}
	int wrong = 0;
	for (int t = 0; t < 40; t++) {
		for (size_t j = 0; j < d; j++)
			q[j] = (float)rand_int(-2, 2);
		tlcm_knn_result_t r;
		ref_t *ref = ref_order(ix, m, q);
		CHECK_INT(tlcm_knn_query(ix, q, d, &r), 0);
		CHECK_UINT(r.n, k);
		double sum = 0;
		for (size_t i = 0; i < r.n; i++) {
			tlcm_knn_sample_t s;
			tlcm_knn_sample(ix, ref[i].slot, &s);
			if (r.slot[i] != ref[i].slot ||
			    r.dist[i] != (float)ref[i].d ||
			    r.label[i] != s.label)
				wrong++;
			sum += r.dist[i];
		}
		uint32_t win = 0;
		double conf = 0;
		ref_vote(ix, ref, k, inverse, &win, &conf);
		CHECK_UINT(r.winner, win);
		CHECK(fabs(r.confidence - conf) < 1e-5);
		CHECK(fabs(r.mean_distance - sum / k) < 1e-4);
		free(ref);
	}
	if (wrong)
		fprintf(stderr, "  metric %d dim %zu n %zu k %u %s: %d "
			"neighbours differ\n", (int)m, d, n, k,
			tlcm_knn_kernel_name(ix), wrong);
	CHECK_INT(wrong, 0);
	free(x);
	free(q);
	tlcm_knn_free(ix);
}

static void exact_case(tlcm_knn_metric_t m, size_t d, bool portable,
		       bool inverse)
{
	exact_nk(m, d, 300, 7, portable, inverse);
}

static void exact_neighbours(void)
{
	static const size_t dims[] = {1, 3, 8, 13, 32, 33, 64, 100, 256};
	for (int portable = 0; portable < 2; portable++)
		for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
			exact_case(TLCM_KNN_EUCLIDEAN, dims[i], portable, false);
			exact_case(TLCM_KNN_MANHATTAN, dims[i], portable, true);
			exact_case(TLCM_KNN_EUCLIDEAN, dims[i], portable, true);
		}
}

/* The selection's shortcuts and the 32-value kernels, on data full of
 * ties: the bound from group minima (groups of 16 from n = 64 k, of 4
 * from n = 16 k, none beyond k = 16 or below), rows four at a time and
 * the n % 4 left over, k = 1 and k = n. */
static void exact_sizes(void)
{
	static const struct {
		size_t n;
		unsigned k;
	} nk[] = {{1003, 5}, {1003, 16}, {1003, 17}, {130, 5}, {333, 1},
		  {64, 64}, {65, 4}, {2050, 9}};
	static const size_t dims[] = {32, 8, 33};
	for (int portable = 0; portable < 2; portable++)
		for (size_t i = 0; i < sizeof nk / sizeof nk[0]; i++)
			for (size_t j = 0; j < sizeof dims / sizeof dims[0];
			     j++) {
				exact_nk(TLCM_KNN_EUCLIDEAN, dims[j], nk[i].n,
					 nk[i].k, portable, false);
				exact_nk(TLCM_KNN_MANHATTAN, dims[j], nk[i].n,
					 nk[i].k, portable, true);
			}
}

/* Cosine on random floats: each neighbour within float error of the
 * reference's, in the reference's order up to that error. */
static void cosine_neighbours(void)
{
	for (int portable = 0; portable < 2; portable++) {
		const size_t d = 37, n = 400;
		tlcm_knn_t *ix = make(d, 5, TLCM_KNN_COSINE, TLCM_KNN_UNIFORM,
				      n, TLCM_KNN_FIFO, false, portable);
		float x[37], q[37];
		for (size_t i = 0; i < n; i++) {
			for (size_t j = 0; j < d; j++)
				x[j] = i == 7 ? 0.0f : rand_gauss();
			CHECK_INT(tlcm_knn_add(ix, x, d, names[i % 3], 0), 0);
		}
		int far = 0;
		for (int t = 0; t < 50; t++) {
			for (size_t j = 0; j < d; j++)
				q[j] = rand_gauss();
			tlcm_knn_result_t r;
			ref_t *ref = ref_order(ix, TLCM_KNN_COSINE, q);
			CHECK_INT(tlcm_knn_query(ix, q, d, &r), 0);
			for (size_t i = 0; i < r.n; i++) {
				tlcm_knn_sample_t s;
				tlcm_knn_sample(ix, r.slot[i], &s);
				double mine = ref_dist(TLCM_KNN_COSINE, q, s.x,
						       d);
				if (fabs(r.dist[i] - mine) > 1e-5 ||
				    fabs(mine - ref[i].d) > 1e-5)
					far++;
			}
			free(ref);
		}
		CHECK_INT(far, 0);
		/* the zero vector is at distance 1 from everything */
		tlcm_knn_sample_t z;
		tlcm_knn_sample(ix, 7, &z);
		tlcm_knn_result_t r;
		CHECK_INT(tlcm_knn_query(ix, z.x, d, &r), 0);
		CHECK(r.n == 5 && r.dist[0] == 1.0f);
		tlcm_knn_free(ix);
	}
}

/* ---- ties, vote ----------------------------------------------------------- */

static void ties_newest_first(void)
{
	for (int portable = 0; portable < 2; portable++) {
		tlcm_knn_t *ix = make(2, 3, TLCM_KNN_EUCLIDEAN,
				      TLCM_KNN_UNIFORM, 10, TLCM_KNN_FIFO,
				      false, portable);
		const float same[2] = {1, 1}, far[2] = {5, 5};
		CHECK_INT(tlcm_knn_add(ix, same, 2, "old", 0), 0);
		CHECK_INT(tlcm_knn_add(ix, far, 2, "far", 0), 0);
		CHECK_INT(tlcm_knn_add(ix, same, 2, "mid", 0), 0);
		CHECK_INT(tlcm_knn_add(ix, same, 2, "new", 0), 0);
		tlcm_knn_result_t r;
		CHECK_INT(tlcm_knn_query(ix, same, 2, &r), 0);
		CHECK_UINT(r.n, 3);
		CHECK_STR(tlcm_knn_label_name(ix, r.label[0]), "new");
		CHECK_STR(tlcm_knn_label_name(ix, r.label[1]), "mid");
		CHECK_STR(tlcm_knn_label_name(ix, r.label[2]), "old");
		/* a three-way tie in the vote: the nearest (newest) wins */
		CHECK_STR(tlcm_knn_label_name(ix, r.winner), "new");
		CHECK(fabsf(r.confidence - 1.0f / 3) < 1e-6);
		CHECK_DBL(r.dist[0], 0);
		/* k = 1 and equal distances at (3, 1) and (1, 3) from (1, 1)
		 * ... the newer one */
		CHECK_INT(tlcm_knn_set_k(ix, 1), 0);
		const float p[2] = {3, 1}, p2[2] = {1, 3}, mid[2] = {2, 2};
		CHECK_INT(tlcm_knn_add(ix, p, 2, "p", 0), 0);
		CHECK_INT(tlcm_knn_add(ix, p2, 2, "p2", 0), 0);
		CHECK_INT(tlcm_knn_query(ix, mid, 2, &r), 0);
		/* (1,1), (3,1), (1,3) are all sqrt(2) from (2,2): p2 newest */
		CHECK_STR(tlcm_knn_label_name(ix, r.winner), "p2");
		CHECK_DBL(r.dist[0], sqrtf(2));
		CHECK_INT(tlcm_knn_set_k(ix, 0), TLCM_EINVAL);
		CHECK_INT(tlcm_knn_set_k(ix, TLCM_KNN_MAX_K + 1), TLCM_EINVAL);
		tlcm_knn_free(ix);
	}
}

static void vote_weighting(void)
{
	/* 1-D: query 0; "a" at 1, "b" at 2 and 3 (two votes, farther) */
	tlcm_knn_t *ix = make(1, 3, TLCM_KNN_EUCLIDEAN, TLCM_KNN_UNIFORM, 10,
			      TLCM_KNN_FIFO, false, false);
	const float one = 1, two = 2, three = 3, zero = 0;
	CHECK_INT(tlcm_knn_add(ix, &one, 1, "a", 0), 0);
	CHECK_INT(tlcm_knn_add(ix, &two, 1, "b", 0), 0);
	CHECK_INT(tlcm_knn_add(ix, &three, 1, "b", 0), 0);
	tlcm_knn_result_t r;
	CHECK_INT(tlcm_knn_query(ix, &zero, 1, &r), 0);
	CHECK_STR(tlcm_knn_label_name(ix, r.winner), "b");
	CHECK(fabsf(r.confidence - 2.0f / 3) < 1e-6);
	CHECK(fabsf(r.mean_distance - 2.0f) < 1e-6);
	/* inverse: a 1/1 against b 1/2 + 1/3 */
	tlcm_knn_set_weighting(ix, TLCM_KNN_INVERSE);
	CHECK_INT(tlcm_knn_query(ix, &zero, 1, &r), 0);
	CHECK_STR(tlcm_knn_label_name(ix, r.winner), "a");
	CHECK(fabsf(r.confidence - 1 / (1 + 0.5f + 1 / 3.0f)) < 1e-5);
	/* two single votes of equal weight: the nearer label wins */
	const float four = 4, ten = 10;
	tlcm_knn_set_weighting(ix, TLCM_KNN_UNIFORM);
	CHECK_INT(tlcm_knn_set_k(ix, 2), 0);
	CHECK_INT(tlcm_knn_add(ix, &four, 1, "c", 0), 0);
	CHECK_INT(tlcm_knn_query(ix, &ten, 1, &r), 0); /* c at 6, b at 7 */
	CHECK_STR(tlcm_knn_label_name(ix, r.winner), "c");
	CHECK(fabsf(r.confidence - 0.5f) < 1e-6);
	CHECK_INT(tlcm_knn_set_k(ix, 3), 0);
	tlcm_knn_set_weighting(ix, TLCM_KNN_INVERSE);
	const float half = 0.5f;
	CHECK_INT(tlcm_knn_query(ix, &half, 1, &r), 0); /* a 2, b 2/3 + 0.4 */
	CHECK_STR(tlcm_knn_label_name(ix, r.winner), "a");
	CHECK(fabsf(r.confidence - 2 / (2 + 2.0f / 3 + 0.4f)) < 1e-5);
	/* fewer samples than k */
	CHECK_INT(tlcm_knn_set_k(ix, 10), 0);
	CHECK_INT(tlcm_knn_query(ix, &zero, 1, &r), 0);
	CHECK_UINT(r.n, 4);
	tlcm_knn_free(ix);
}

/* ---- eviction ------------------------------------------------------------- */

/* Frame ids stored, as a sorted string "1,2,5". */
static void stored(const tlcm_knn_t *ix, char *out, size_t len)
{
	int seen[64] = {0};
	for (size_t i = 0; i < tlcm_knn_size(ix); i++) {
		tlcm_knn_sample_t s;
		tlcm_knn_sample(ix, i, &s);
		if (s.frame_id < 64)
			seen[s.frame_id] = 1;
	}
	size_t at = 0;
	out[0] = 0;
	for (int f = 0; f < 64; f++)
		if (seen[f])
			at += (size_t)snprintf(out + at, len - at, "%s%d",
					       at ? "," : "", f);
}

static void add_at(tlcm_knn_t *ix, float v, const char *label,
		   uint64_t frame)
{
	CHECK_INT(tlcm_knn_add(ix, &v, 1, label, frame), 0);
}

static void eviction_fifo(void)
{
	char s[128];
	tlcm_knn_t *ix = make(1, 1, TLCM_KNN_EUCLIDEAN, TLCM_KNN_UNIFORM, 3,
			      TLCM_KNN_FIFO, false, false);
	add_at(ix, 1, "a", 1);
	add_at(ix, 2, "a", 2);
	add_at(ix, 3, "b", 3);
	add_at(ix, 4, "b", 4);
	stored(ix, s, sizeof s);
	CHECK_STR(s, "2,3,4");
	add_at(ix, 5, "c", 5);
	stored(ix, s, sizeof s);
	CHECK_STR(s, "3,4,5");
	/* a relabel does not refresh the age */
	CHECK_INT(tlcm_knn_relabel(ix, 3, "z"), 1);
	add_at(ix, 6, "c", 6);
	stored(ix, s, sizeof s);
	CHECK_STR(s, "4,5,6");
	tlcm_knn_stats_t st;
	tlcm_knn_get_stats(ix, &st);
	CHECK_UINT(st.evictions, 3);
	CHECK_UINT(st.added, 6);
	CHECK_UINT(tlcm_knn_size(ix), 3);
	tlcm_knn_free(ix);
}

static void eviction_class_balanced(void)
{
	char s[128];
	tlcm_knn_t *ix = make(1, 1, TLCM_KNN_EUCLIDEAN, TLCM_KNN_UNIFORM, 4,
			      TLCM_KNN_CLASS_BALANCED, false, false);
	add_at(ix, 1, "a", 1);
	add_at(ix, 2, "a", 2);
	add_at(ix, 3, "a", 3);
	add_at(ix, 4, "b", 4);
	add_at(ix, 5, "b", 5); /* a is largest (3): its oldest, 1 */
	stored(ix, s, sizeof s);
	CHECK_STR(s, "2,3,4,5");
	add_at(ix, 6, "c", 6); /* a 2, b 2: oldest of both, 2 */
	stored(ix, s, sizeof s);
	CHECK_STR(s, "3,4,5,6");
	add_at(ix, 7, "c", 7); /* a 1, b 2, c 1: b's oldest, 4 */
	stored(ix, s, sizeof s);
	CHECK_STR(s, "3,5,6,7");
	add_at(ix, 8, "a", 8); /* a 1, b 1, c 2: c's oldest, 6 */
	stored(ix, s, sizeof s);
	CHECK_STR(s, "3,5,7,8");
	add_at(ix, 9, "d", 9); /* a 2: 3 */
	stored(ix, s, sizeof s);
	CHECK_STR(s, "5,7,8,9");
	CHECK_UINT(tlcm_knn_label_count(ix, 0), 1); /* a */
	tlcm_knn_free(ix);
}

static void eviction_lru(void)
{
	char s[128];
	tlcm_knn_t *ix = make(1, 1, TLCM_KNN_EUCLIDEAN, TLCM_KNN_UNIFORM, 3,
			      TLCM_KNN_LRU, false, false);
	tlcm_knn_result_t r;
	const float q1 = 1.1f, q3 = 3.1f, q5 = 5.1f;
	add_at(ix, 1, "a", 1);
	add_at(ix, 2, "a", 2);
	add_at(ix, 3, "a", 3); /* all stamped 0 */
	CHECK_INT(tlcm_knn_query(ix, &q1, 1, &r), 0); /* 1 useful at 1 */
	CHECK_INT(tlcm_knn_query(ix, &q3, 1, &r), 0); /* 3 useful at 2 */
	add_at(ix, 4, "a", 4); /* 2 (stamp 0) goes; 4 stamped 2 */
	stored(ix, s, sizeof s);
	CHECK_STR(s, "1,3,4");
	add_at(ix, 5, "a", 5); /* stamps 1:1 3:2 4:2: 1 goes */
	stored(ix, s, sizeof s);
	CHECK_STR(s, "3,4,5");
	add_at(ix, 6, "a", 6); /* 3, 4, 5 all 2: the oldest, 3 */
	stored(ix, s, sizeof s);
	CHECK_STR(s, "4,5,6");
	CHECK_INT(tlcm_knn_query(ix, &q5, 1, &r), 0); /* 5 useful at 3 */
	add_at(ix, 7, "a", 7); /* 4:2 5:3 6:2: oldest of 4 and 6, 4 */
	add_at(ix, 8, "a", 8); /* 5:3 6:2 7:3: 6 */
	stored(ix, s, sizeof s);
	CHECK_STR(s, "5,7,8");
	tlcm_knn_free(ix);
}

/* ---- relabel, labels, bad input ------------------------------------------- */

static void relabel_and_labels(void)
{
	tlcm_knn_t *ix = make(2, 1, TLCM_KNN_EUCLIDEAN, TLCM_KNN_UNIFORM, 10,
			      TLCM_KNN_FIFO, false, false);
	const float x[2] = {1, 2}, y[2] = {7, 7};
	CHECK_INT(tlcm_knn_add(ix, x, 2, "new_1", 42), 0);
	CHECK_INT(tlcm_knn_add(ix, y, 2, "new_1", 43), 0);
	/* the same frame again: relabelled, not added */
	CHECK_INT(tlcm_knn_add(ix, y, 2, "Bag", 42), 1);
	CHECK_UINT(tlcm_knn_size(ix), 2);
	tlcm_knn_result_t r;
	CHECK_INT(tlcm_knn_query(ix, x, 2, &r), 0);
	CHECK_STR(tlcm_knn_label_name(ix, r.winner), "Bag");
	CHECK_DBL(r.dist[0], 0); /* the stored embedding was kept */
	CHECK_INT(tlcm_knn_relabel(ix, 43, "Bag"), 1);
	CHECK_INT(tlcm_knn_relabel(ix, 99, "Bag"), 0);
	CHECK_INT(tlcm_knn_relabel(ix, 0, "Bag"), TLCM_EINVAL);
	tlcm_knn_stats_t st;
	tlcm_knn_get_stats(ix, &st);
	CHECK_UINT(st.relabels, 2);
	CHECK_UINT(st.added, 2);
	/* "new_1" has no sample left: its id is recycled for a new label */
	uint32_t old = 0;
	for (uint32_t i = 0; i < tlcm_knn_nlabels(ix); i++)
		if (!strcmp(tlcm_knn_label_name(ix, i), "new_1"))
			old = i;
	CHECK_UINT(tlcm_knn_label_count(ix, old), 0);
	CHECK_INT(tlcm_knn_add(ix, x, 2, "new_2", 0), 0);
	CHECK_STR(tlcm_knn_label_name(ix, old), "new_2");
	CHECK_UINT(tlcm_knn_nlabels(ix), 2);
	tlcm_knn_free(ix);
}

static void refused(void)
{
	tlcm_knn_opts_t o = {0, 5, TLCM_KNN_EUCLIDEAN, TLCM_KNN_UNIFORM, 10,
			     TLCM_KNN_FIFO, false, false};
	tlcm_knn_t *ix = NULL;
	o.k = 0;
	CHECK_INT(tlcm_knn_new(&ix, &o), TLCM_EINVAL);
	o.k = 5;
	o.max_samples = 0;
	CHECK_INT(tlcm_knn_new(&ix, &o), TLCM_EINVAL);
	o.max_samples = 10;
	o.metric = (tlcm_knn_metric_t)7;
	CHECK_INT(tlcm_knn_new(&ix, &o), TLCM_EINVAL);
	o.metric = TLCM_KNN_EUCLIDEAN;
	CHECK_INT(tlcm_knn_new(&ix, &o), 0);
	float x[4] = {1, 2, 3, 4};
	tlcm_knn_result_t r;
	/* empty: any query gives no neighbours */
	CHECK_INT(tlcm_knn_query(ix, x, 4, &r), 0);
	CHECK_UINT(r.n, 0);
	CHECK_INT(tlcm_knn_add(ix, x, 0, "a", 0), TLCM_EINVAL);
	CHECK_INT(tlcm_knn_add(ix, x, 4, "a", 0), 0); /* dim is now 4 */
	CHECK_UINT(tlcm_knn_opts(ix)->dim, 4);
	CHECK_INT(tlcm_knn_add(ix, x, 3, "a", 0), TLCM_EINVAL);
	CHECK_INT(tlcm_knn_query(ix, x, 3, &r), TLCM_EINVAL);
	CHECK_INT(tlcm_knn_add(ix, x, 4, "", 0), TLCM_EINVAL);
	CHECK_INT(tlcm_knn_add(ix, x, 4, NULL, 0), TLCM_EINVAL);
	char longl[300];
	memset(longl, 'x', sizeof longl - 1);
	longl[299] = 0;
	CHECK_INT(tlcm_knn_add(ix, x, 4, longl, 0), TLCM_EINVAL);
	longl[TLCM_KNN_MAX_LABEL] = 0;
	CHECK_INT(tlcm_knn_add(ix, x, 4, longl, 0), 0);
	x[2] = NAN;
	CHECK_INT(tlcm_knn_add(ix, x, 4, "a", 0), TLCM_EINVAL);
	CHECK_INT(tlcm_knn_query(ix, x, 4, &r), TLCM_EINVAL);
	CHECK_UINT(tlcm_knn_bad_value(x, 4), 2);
	x[2] = INFINITY;
	CHECK_UINT(tlcm_knn_bad_value(x, 4), 2);
	x[2] = 2e15f;
	CHECK_INT(tlcm_knn_add(ix, x, 4, "a", 0), TLCM_EINVAL);
	x[2] = -1e15f;
	CHECK_UINT(tlcm_knn_bad_value(x, 4), 4);
	CHECK_UINT(tlcm_knn_size(ix), 2);
	tlcm_knn_free(ix);
}

/* ---- int8 storage -------------------------------------------------------------- */

static void quantized_bound(tlcm_knn_metric_t m)
{
	const size_t d = 64, n = 500;
	tlcm_knn_t *fx = make(d, 5, m, TLCM_KNN_UNIFORM, n, TLCM_KNN_FIFO,
			      false, false);
	tlcm_knn_t *qx = make(d, 5, m, TLCM_KNN_UNIFORM, n, TLCM_KNN_FIFO,
			      true, false);
	float x[64], q[64];
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < d; j++)
			x[j] = rand_gauss() * (1.0f + (float)j / 8);
		CHECK_INT(tlcm_knn_add(fx, x, d, names[i % 5], 0), 0);
		CHECK_INT(tlcm_knn_add(qx, x, d, names[i % 5], 0), 0);
	}
	int over = 0;
	double worst = 0;
	for (int t = 0; t < 100; t++) {
		for (size_t j = 0; j < d; j++)
			q[j] = rand_gauss() * (1.0f + (float)j / 8);
		tlcm_knn_result_t r;
		CHECK_INT(tlcm_knn_query(qx, q, d, &r), 0);
		for (size_t i = 0; i < r.n; i++) {
			tlcm_knn_sample_t sq, sf;
			tlcm_knn_sample(qx, r.slot[i], &sq);
			tlcm_knn_sample(fx, r.slot[i], &sf);
			double exact = ref_dist(m, q, sf.x, d);
			double bound = m == TLCM_KNN_EUCLIDEAN
					       ? sqrt((double)d) * sq.scale / 2
					       : (double)d * sq.scale / 2;
			/* float rounding on top: relative 1e-5 */
			double err = fabs(r.dist[i] - exact);
			if (err > bound * 1.001 + 1e-5 * exact)
				over++;
			worst = err / bound > worst ? err / bound : worst;
		}
	}
	fprintf(stderr, "int8 %s: largest error %.3f of the bound\n",
		m == TLCM_KNN_EUCLIDEAN ? "euclidean" : "manhattan", worst);
	CHECK_INT(over, 0);
	tlcm_knn_free(fx);
	tlcm_knn_free(qx);
}

/* Clustered data (10 classes): int8 labels agree with float32 labels. */
static void quantized_agreement(tlcm_knn_metric_t m, bool portable)
{
	const size_t d = 64, per = 60, nc = 10;
	float centre[10][64], x[64];
	tlcm_knn_t *fx = make(d, 5, m, TLCM_KNN_UNIFORM, 1000, TLCM_KNN_FIFO,
			      false, portable);
	tlcm_knn_t *qx = make(d, 5, m, TLCM_KNN_UNIFORM, 1000, TLCM_KNN_FIFO,
			      true, portable);
	for (size_t c = 0; c < nc; c++)
		for (size_t j = 0; j < d; j++)
			centre[c][j] = rand_gauss();
	for (size_t i = 0; i < per * nc; i++) {
		for (size_t j = 0; j < d; j++)
			x[j] = centre[i % nc][j] + 2.2f * rand_gauss();
		char l[8];
		snprintf(l, sizeof l, "%zu", i % nc);
		CHECK_INT(tlcm_knn_add(fx, x, d, l, 0), 0);
		CHECK_INT(tlcm_knn_add(qx, x, d, l, 0), 0);
	}
	int agree = 0, correct_f = 0, correct_q = 0, total = 1000;
	for (int t = 0; t < total; t++) {
		size_t c = (size_t)t % nc;
		for (size_t j = 0; j < d; j++)
			x[j] = centre[c][j] + 2.2f * rand_gauss();
		tlcm_knn_result_t rf, rq;
		CHECK_INT(tlcm_knn_query(fx, x, d, &rf), 0);
		CHECK_INT(tlcm_knn_query(qx, x, d, &rq), 0);
		const char *lf = tlcm_knn_label_name(fx, rf.winner);
		const char *lq = tlcm_knn_label_name(qx, rq.winner);
		agree += !strcmp(lf, lq);
		correct_f += (size_t)atoi(lf) == c;
		correct_q += (size_t)atoi(lq) == c;
	}
	fprintf(stderr, "int8 metric %d (%s): labels agree %d/%d, accuracy "
		"float %d, int8 %d\n", (int)m, tlcm_knn_kernel_name(qx), agree,
		total, correct_f, correct_q);
	/* the stated bound: at least 99 % agreement, accuracy within 1 pt */
	CHECK(agree >= total * 99 / 100);
	CHECK(abs(correct_f - correct_q) <= total / 100);
	tlcm_knn_free(fx);
	tlcm_knn_free(qx);
}

static void quantized_put(void)
{
	/* codes into a float index and floats into an int8 index */
	tlcm_knn_t *fx = make(0, 1, TLCM_KNN_EUCLIDEAN, TLCM_KNN_UNIFORM, 4,
			      TLCM_KNN_FIFO, false, false);
	tlcm_knn_t *qx = make(0, 1, TLCM_KNN_EUCLIDEAN, TLCM_KNN_UNIFORM, 4,
			      TLCM_KNN_FIFO, true, false);
	const int8_t c[3] = {127, -64, 0};
	const float v[3] = {2.0f, -1.0f, 0.0f};
	CHECK_INT(tlcm_knn_put(fx, "a", 9, 5, 2, NULL, c, 0.5f, 3), 0);
	CHECK_INT(tlcm_knn_put(qx, "a", 9, 5, 2, v, NULL, 0, 3), 0);
	tlcm_knn_sample_t s;
	tlcm_knn_sample(fx, 0, &s);
	CHECK(s.x && s.x[0] == 63.5f && s.x[1] == -32.0f && s.x[2] == 0);
	CHECK_UINT(s.seq, 5);
	CHECK_UINT(s.used, 2);
	CHECK_UINT(s.frame_id, 9);
	tlcm_knn_sample(qx, 0, &s);
	CHECK(s.codes && s.codes[0] == 127 && s.codes[1] == -64 &&
	      s.codes[2] == 0);
	CHECK(fabsf(s.scale - 2.0f / 127) < 1e-9f);
	tlcm_knn_stats_t st;
	tlcm_knn_get_stats(fx, &st);
	CHECK_UINT(st.next_seq, 6);
	CHECK_INT(tlcm_knn_put(fx, "a", 9, 0, 2, v, NULL, 0, 3), TLCM_EINVAL);
	CHECK_INT(tlcm_knn_put(fx, "a", 9, 7, 2, NULL, c, NAN, 3),
		  TLCM_EINVAL);
	tlcm_knn_free(fx);
	tlcm_knn_free(qx);
}


/* ---- typical distance per label ------------------------------------------ */

/* Sample i's row as floats (dequantised for int8 storage) into buf. */
static const float *ref_row(const tlcm_knn_t *ix, size_t i, float *buf)
{
	tlcm_knn_sample_t s;
	size_t d = tlcm_knn_opts(ix)->dim;
	tlcm_knn_sample(ix, i, &s);
	if (s.x)
		return s.x;
	for (size_t j = 0; j < d; j++)
		buf[j] = s.scale * (float)s.codes[j];
	return buf;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The typical distance of label id written from its definition (index.h):
 * the label's samples in storage order, every ceil(n / cap)-th of them
 * (spread; else the first cap); for each, the mean of its k nearest
 * distances to the other members (k capped at members - 1); their
 * median. Rows come from `orig` (dim floats per slot) when given, else
 * from the index. 0 with fewer than 2 samples. */
static double ref_typical_cap(const tlcm_knn_t *ix, uint32_t id, unsigned k,
			      const float *orig, size_t cap, bool spread)
{
	size_t n = tlcm_knn_size(ix), d = tlcm_knn_opts(ix)->dim, cnt = 0;
	tlcm_knn_metric_t m = tlcm_knn_opts(ix)->metric;
	for (size_t i = 0; i < n; i++) {
		tlcm_knn_sample_t s;
		tlcm_knn_sample(ix, i, &s);
		cnt += s.label == id;
	}
	if (cnt < 2)
		return 0;
	size_t stride = spread ? (cnt + cap - 1) / cap : 1, nm = 0, seen = 0;
	size_t *mem = malloc(cnt * sizeof *mem);
	for (size_t i = 0; i < n && nm < cap; i++) {
		tlcm_knn_sample_t s;
		tlcm_knn_sample(ix, i, &s);
		if (s.label == id && seen++ % stride == 0)
			mem[nm++] = i;
	}
	size_t kk = k < nm - 1 ? k : nm - 1;
	double *loo = malloc(nm * sizeof *loo), *dd = malloc(nm * sizeof *dd);
	float *ba = malloc(d * sizeof *ba), *bb = malloc(d * sizeof *bb);
	for (size_t i = 0; i < nm; i++) {
		const float *a = orig ? orig + mem[i] * d
				      : ref_row(ix, mem[i], ba);
		size_t nd = 0;
		for (size_t j = 0; j < nm; j++) {
			if (j == i)
				continue;
			const float *b = orig ? orig + mem[j] * d
					      : ref_row(ix, mem[j], bb);
			dd[nd++] = ref_dist(m, a, b, d);
		}
		qsort(dd, nd, sizeof *dd, cmp_dbl);
		double sum = 0;
		for (size_t j = 0; j < kk; j++)
			sum += dd[j];
		loo[i] = sum / (double)kk;
	}
	qsort(loo, nm, sizeof *loo, cmp_dbl);
	double t = nm % 2 ? loo[nm / 2] : (loo[nm / 2 - 1] + loo[nm / 2]) / 2;
	free(mem);
	free(loo);
	free(dd);
	free(ba);
	free(bb);
	return t;
}

static double ref_typical(const tlcm_knn_t *ix, uint32_t id, unsigned k,
			  const float *orig)
{
	return ref_typical_cap(ix, id, k, orig, 256, true);
}

static uint32_t id_of(const tlcm_knn_t *ix, const char *label)
{
	for (uint32_t i = 0; i < tlcm_knn_nlabels(ix); i++)
		if (!strcmp(tlcm_knn_label_name(ix, i), label))
			return i;
	return UINT32_MAX;
}

/* typical within float rounding of the reference */
#define CHECK_TYP(ix, id, k)                                                 \
	do {                                                                 \
		double r_ = ref_typical(ix, id, k, NULL);                    \
		float t_ = tlcm_knn_typical(ix, id);                         \
		if (!(fabs(t_ - r_) <= 1e-5 * r_ + 1e-6)) {                  \
			fprintf(stderr, "  typical of %u: %.7g, reference " \
				"%.7g\n", (unsigned)(id), t_, r_);           \
		}                                                            \
		CHECK(fabs(t_ - r_) <= 1e-5 * r_ + 1e-6);                    \
	} while (0)

/* Each metric, float and int8 storage: labels of different spread and
 * of 2, 4 and 62 samples (k capped at members - 1), a duplicate
 * (distance 0). */
static void typical_reference(tlcm_knn_metric_t m, bool quant)
{
	const size_t d = 24, n = 130;
	const unsigned k = 5;
	tlcm_knn_t *ix = make(d, k, m, TLCM_KNN_UNIFORM, 1000, TLCM_KNN_FIFO,
			      quant, false);
	float *orig = malloc(n * d * sizeof *orig);
	static const char *const lab[] = {"tight", "loose", "pair", "few"};
	static const float spread[] = {0.3f, 2.0f, 1.0f, 1.0f};
	size_t per[4] = {0};
	for (size_t i = 0; i < n; i++) {
		/* 2 pair, 4 few, the rest tight and loose */
		int l = i < 2 ? 2 : i < 6 ? 3 : (int)(i % 2);
		float *x = orig + i * d;
		for (size_t j = 0; j < d; j++)
			x[j] = 3.0f * (float)l + (float)j / 8 +
			       spread[l] * rand_gauss();
		if (i == 20) /* a duplicate of sample 18 (tight) */
			memcpy(x, orig + 18 * d, d * sizeof *x);
		CHECK_INT(tlcm_knn_add(ix, x, d, lab[l], 0), 0);
		per[l]++;
	}
	CHECK_UINT(per[2], 2);
	double worst = 0;
	for (int l = 0; l < 4; l++) {
		uint32_t id = id_of(ix, lab[l]);
		CHECK_TYP(ix, id, k);
		float t = tlcm_knn_typical(ix, id);
		CHECK(t > 0);
		/* asked again: the same (cached) value */
		CHECK(tlcm_knn_typical(ix, id) == t);
		if (!quant || m == TLCM_KNN_COSINE)
			continue;
		/* int8: within the quantisation bound of the value from the
		 * original floats: every pair distance is off by at most
		 * sqrt(d) (s_a + s_b) / 2 (Euclidean; d (s_a + s_b) / 2
		 * Manhattan), and a mean of the k smallest, and a median, of
		 * values each off by at most B are off by at most B */
		float smax = 0;
		for (size_t i = 0; i < n; i++) {
			tlcm_knn_sample_t s;
			tlcm_knn_sample(ix, i, &s);
			if (s.label == id && s.scale > smax)
				smax = s.scale;
		}
		double bound = (m == TLCM_KNN_EUCLIDEAN ? sqrt((double)d)
							: (double)d) * smax;
		double exact = ref_typical(ix, id, k, orig);
		double err = fabs(t - exact);
		CHECK(err <= bound * 1.001 + 1e-5 * exact);
		worst = err / bound > worst ? err / bound : worst;
	}
	/* the tight label is tighter than the loose one */
	CHECK(tlcm_knn_typical(ix, id_of(ix, "tight")) <
	      tlcm_knn_typical(ix, id_of(ix, "loose")));
	if (quant && m != TLCM_KNN_COSINE)
		fprintf(stderr, "typical int8 %s: largest error %.3f of the "
			"bound\n", m == TLCM_KNN_EUCLIDEAN ? "euclidean"
							   : "manhattan",
			worst);
	free(orig);
	tlcm_knn_free(ix);
}

/* Members too many to lay out as one table (256 of 4097 values: the
 * pairs go four rows at a time), each metric, within float rounding of
 * the reference. */
static void typical_wide(void)
{
	const size_t d = 4097, n = 256;
	static const tlcm_knn_metric_t ms[] = {
		TLCM_KNN_EUCLIDEAN, TLCM_KNN_COSINE, TLCM_KNN_MANHATTAN};
	float *x = malloc(d * sizeof *x);
	for (size_t t = 0; t < 3; t++) {
		tlcm_knn_t *ix = make(d, 5, ms[t], TLCM_KNN_UNIFORM, n,
				      TLCM_KNN_FIFO, false, false);
		for (size_t i = 0; i < n; i++) {
			for (size_t j = 0; j < d; j++)
				x[j] = (float)(j % 7) + rand_gauss();
			CHECK_INT(tlcm_knn_add(ix, x, d, "w", 0), 0);
		}
		CHECK_TYP(ix, 0, 5);
		tlcm_knn_free(ix);
	}
	free(x);
}

/* Two samples: the distance between them; one, none, an unknown id: 0. */
static void typical_small(void)
{
	tlcm_knn_t *ix = make(2, 5, TLCM_KNN_EUCLIDEAN, TLCM_KNN_UNIFORM, 10,
			      TLCM_KNN_FIFO, false, false);
	CHECK_DBL(tlcm_knn_typical(ix, 0), 0); /* no label at all */
	const float a[2] = {0, 0}, b[2] = {3, 4}, c[2] = {9, 9};
	CHECK_INT(tlcm_knn_add(ix, a, 2, "one", 1), 0);
	CHECK_DBL(tlcm_knn_typical(ix, 0), 0);
	CHECK_INT(tlcm_knn_add(ix, b, 2, "one", 2), 0);
	CHECK_DBL(tlcm_knn_typical(ix, 0), 5);
	CHECK_INT(tlcm_knn_add(ix, c, 2, "solo", 3), 0);
	CHECK_DBL(tlcm_knn_typical(ix, 1), 0);
	CHECK_DBL(tlcm_knn_typical(ix, 2), 0);
	CHECK_DBL(tlcm_knn_typical(ix, UINT32_MAX), 0);
	/* "one" loses a sample: below 2 again */
	CHECK_INT(tlcm_knn_relabel(ix, 2, "solo"), 1);
	CHECK_DBL(tlcm_knn_typical(ix, 0), 0);
	/* solo is now (9,9) and (3,4): sqrt(36 + 25) */
	CHECK(fabsf(tlcm_knn_typical(ix, 1) - sqrtf(61)) < 1e-5f);
	/* "one" loses its last: its id is recycled for "new", whose two
	 * samples are 1 apart; nothing of "one" stays cached */
	CHECK_INT(tlcm_knn_relabel(ix, 1, "solo"), 1);
	CHECK_DBL(tlcm_knn_typical(ix, 0), 0);
	const float p[2] = {1, 1}, q[2] = {1, 2};
	CHECK_INT(tlcm_knn_add(ix, p, 2, "new", 4), 0);
	CHECK_INT(tlcm_knn_add(ix, q, 2, "new", 5), 0);
	CHECK_STR(tlcm_knn_label_name(ix, 0), "new");
	CHECK_DBL(tlcm_knn_typical(ix, 0), 1);
	/* two equal samples: 0 too (the knn node then sends no novelty
	 * rather than dividing by it) */
	CHECK_INT(tlcm_knn_add(ix, c, 2, "twin", 6), 0);
	CHECK_INT(tlcm_knn_add(ix, c, 2, "twin", 7), 0);
	CHECK_DBL(tlcm_knn_typical(ix, id_of(ix, "twin")), 0);
	tlcm_knn_free(ix);
}

/* The cache follows every change of a label's samples: add, put,
 * eviction, relabel (both labels), and k; the other labels keep their
 * value. */
static void typical_cache(void)
{
	const size_t d = 8, cap = 60;
	tlcm_knn_t *ix = make(d, 3, TLCM_KNN_EUCLIDEAN, TLCM_KNN_UNIFORM, cap,
			      TLCM_KNN_FIFO, false, false);
	float x[8];
	/* 20 a (spread 1), 20 b (spread 3), frame ids 1..40 */
	for (size_t i = 0; i < 40; i++) {
		for (size_t j = 0; j < d; j++)
			x[j] = (i % 2 ? 3.0f : 1.0f) * rand_gauss();
		CHECK_INT(tlcm_knn_add(ix, x, d, i % 2 ? "b" : "a", i + 1), 0);
	}
	uint32_t a = id_of(ix, "a"), b = id_of(ix, "b");
	float ta = tlcm_knn_typical(ix, a), tb = tlcm_knn_typical(ix, b);
	CHECK_TYP(ix, a, 3);
	CHECK_TYP(ix, b, 3);

	/* add: four samples of a right on top of each other */
	for (int r = 0; r < 4; r++) {
		for (size_t j = 0; j < d; j++)
			x[j] = 0.01f * (float)r;
		CHECK_INT(tlcm_knn_add(ix, x, d, "a", 100 + (uint64_t)r), 0);
	}
	float ta2 = tlcm_knn_typical(ix, a);
	CHECK(ta2 != ta);
	CHECK_TYP(ix, a, 3);
	CHECK(tlcm_knn_typical(ix, b) == tb);

	/* put (a restore): into b */
	for (size_t j = 0; j < d; j++)
		x[j] = 0.5f;
	CHECK_INT(tlcm_knn_put(ix, "b", 200, 1000, 0, x, NULL, 0, d), 0);
	CHECK_INT(tlcm_knn_put(ix, "b", 201, 1001, 0, x, NULL, 0, d), 0);
	CHECK_INT(tlcm_knn_put(ix, "b", 202, 1002, 0, x, NULL, 0, d), 0);
	float tb2 = tlcm_knn_typical(ix, b);
	CHECK(tb2 != tb);
	CHECK_TYP(ix, b, 3);
	CHECK(tlcm_knn_typical(ix, a) == ta2);

	/* relabel: frame 2 (b) to a: both change */
	CHECK_INT(tlcm_knn_relabel(ix, 2, "a"), 1);
	float ta3 = tlcm_knn_typical(ix, a), tb3 = tlcm_knn_typical(ix, b);
	CHECK(ta3 != ta2 && tb3 != tb2);
	CHECK_TYP(ix, a, 3);
	CHECK_TYP(ix, b, 3);
	/* a relabel to another label through add() (known frame id) */
	CHECK_INT(tlcm_knn_add(ix, x, d, "b", 100), 1);
	CHECK_TYP(ix, a, 3);
	CHECK_TYP(ix, b, 3);
	ta3 = tlcm_knn_typical(ix, a);
	tb3 = tlcm_knn_typical(ix, b);

	/* eviction: fill up with label c; the oldest samples (frames 1,
	 * 2, ... of a and b) go, and c has a value of its own */
	CHECK_UINT(tlcm_knn_size(ix), 47);
	for (size_t i = 0; i < 13; i++) { /* up to the capacity: no eviction */
		for (size_t j = 0; j < d; j++)
			x[j] = 20 + rand_gauss();
		CHECK_INT(tlcm_knn_add(ix, x, d, "c", 300 + i), 0);
	}
	CHECK(tlcm_knn_typical(ix, a) == ta3);
	CHECK(tlcm_knn_typical(ix, b) == tb3);
	uint32_t c = id_of(ix, "c");
	CHECK_TYP(ix, c, 3);
	float tc = tlcm_knn_typical(ix, c);
	tlcm_knn_stats_t st;
	/* the oldest sample is frame 1, of a: only a changes */
	CHECK_INT(tlcm_knn_add(ix, x, d, "c", 400), 0);
	tlcm_knn_get_stats(ix, &st);
	CHECK_UINT(st.evictions, 1);
	CHECK(tlcm_knn_typical(ix, a) != ta3);
	CHECK_TYP(ix, a, 3);
	CHECK(tlcm_knn_typical(ix, b) == tb3);
	CHECK_TYP(ix, c, 3); /* c gained one */
	CHECK(tlcm_knn_typical(ix, c) != tc);
	/* next oldest: frame 2 (relabelled a), frame 3 (a), then frame
	 * 4 (b) */
	CHECK_INT(tlcm_knn_add(ix, x, d, "c", 401), 0);
	CHECK_INT(tlcm_knn_add(ix, x, d, "c", 402), 0);
	CHECK_TYP(ix, a, 3);
	CHECK(tlcm_knn_typical(ix, b) == tb3);
	CHECK_INT(tlcm_knn_add(ix, x, d, "c", 403), 0);
	CHECK(tlcm_knn_typical(ix, b) != tb3);
	CHECK_TYP(ix, b, 3);

	/* k changes what "typical" means: the cache must follow it */
	float before = tlcm_knn_typical(ix, b);
	CHECK_INT(tlcm_knn_set_k(ix, 1), 0);
	CHECK_TYP(ix, a, 1);
	CHECK_TYP(ix, b, 1);
	CHECK_TYP(ix, c, 1);
	CHECK(tlcm_knn_typical(ix, b) < before);
	CHECK_INT(tlcm_knn_set_k(ix, 7), 0);
	CHECK_TYP(ix, b, 7);
	tlcm_knn_free(ix);
}

/* More than 256 samples of a label: the typical distance uses every
 * ceil(n / 256)-th of them in storage order, not all, not the first
 * 256. Labels interleaved so the members are not a prefix. */
static void typical_subset(void)
{
	const size_t d = 6;
	for (int q = 0; q < 2; q++) {
		tlcm_knn_t *ix = make(d, 4, TLCM_KNN_EUCLIDEAN,
				      TLCM_KNN_UNIFORM, 2000, TLCM_KNN_FIFO,
				      q, false);
		float x[6];
		/* 700 a (stride 3: 234 members), 300 b (stride 2: 150),
		 * 256 c (all of them) */
		for (size_t i = 0; i < 1256; i++) {
			const char *l = i < 1000 ? (i % 10 < 7 ? "a" : "b")
						 : "c";
			for (size_t j = 0; j < d; j++)
				x[j] = rand_gauss() + (i > 600 ? 0.5f : 0);
			CHECK_INT(tlcm_knn_add(ix, x, d, l, 0), 0);
		}
		for (int l = 0; l < 3; l++) {
			uint32_t id = id_of(ix, (const char *[]){"a", "b",
								 "c"}[l]);
			CHECK_TYP(ix, id, 4);
		}
		/* the subset matters: every sample of a, or its first 256,
		 * give other values (more members: nearer neighbours; the
		 * first ones: without the shifted later samples) */
		uint32_t a = id_of(ix, "a");
		double t = tlcm_knn_typical(ix, a);
		double all = ref_typical_cap(ix, a, 4, NULL, SIZE_MAX, false);
		double first = ref_typical_cap(ix, a, 4, NULL, 256, false);
		CHECK(fabs(t - all) > 1e-3 * t);
		CHECK(fabs(t - first) > 1e-3 * t);
		tlcm_knn_free(ix);
	}
}

int main(void)
{
	exact_neighbours();
	cosine_neighbours();
	ties_newest_first();
	vote_weighting();
	eviction_fifo();
	eviction_class_balanced();
	eviction_lru();
	relabel_and_labels();
	refused();
	quantized_bound(TLCM_KNN_EUCLIDEAN);
	quantized_bound(TLCM_KNN_MANHATTAN);
	for (int p = 0; p < 2; p++) {
		quantized_agreement(TLCM_KNN_EUCLIDEAN, p);
		quantized_agreement(TLCM_KNN_COSINE, p);
		quantized_agreement(TLCM_KNN_MANHATTAN, p);
	}
	quantized_put();
	for (int q = 0; q < 2; q++) {
		typical_reference(TLCM_KNN_EUCLIDEAN, q);
		typical_reference(TLCM_KNN_COSINE, q);
		typical_reference(TLCM_KNN_MANHATTAN, q);
	}
	typical_small();
	typical_cache();
	typical_subset();
	/* last: the random data of the cases above stays as it was */
	exact_sizes();
	typical_wide();
	return tlcm_test_done();
}
