/* test_adapt_cluster.c — the adapter's clustering step and rules, without
 * a graph (nodes/adapt/cluster.c, rules.c).
 *
 * Clustering: two well-separated blobs that a KNN would label alike split
 * into two clusters of the right members; two near blobs next to a far
 * one split in two steps; one blob stays one cluster;
 * scattered points far from a blob are noise; scattered points alone give
 * no coherent cluster (dispersion far above the blob's); same seed, same
 * result; members and representatives (nearest the centroid first);
 * bad options.
 * Rules: each rule fires alone with its reason; a ratio of 0 switches it
 * off. Re-vote: merges, newest-first ties, both weightings, against the
 * knn index itself on random data.
 */
#include <math.h>
#include <stdlib.h>

#include "engine/error.h"
#include "nodes/adapt/cluster.h"
#include "nodes/adapt/rules.h"
#include "nodes/knn/index.h"
#include "tests/tlcm_test.h"

static uint64_t rng = 42;

static double unif(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(rng >> 11) / 9007199254740992.0;
}

static double gauss(void)
{
	double u = unif(), v = unif();
	return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

/* n points around centre c (all coordinates c_j) with std s. */
static void blob(float *x, size_t n, size_t dim, const float *c, double s)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < dim; j++)
			x[i * dim + j] = (float)(c[j] + s * gauss());
}

static const tlcm_cluster_opts_t opts = {
	.k_max = 6, .min_silhouette = 0.35, .min_points = 4,
	.outlier_factor = 2.5, .restarts = 4, .seed = 1};

#define DIM 16

static void two_blobs(void)
{
	/* both blobs sit far from the "known" classes in the same
	 * direction, so a KNN predicts one label for all of them: the
	 * clustering must still separate them */
	float x[60 * DIM], c1[DIM] = {0}, c2[DIM] = {0};
	c1[0] = 20;
	c2[0] = 20;
	c2[1] = 8;
	blob(x, 30, DIM, c1, 0.5);
	blob(x + 30 * DIM, 30, DIM, c2, 0.5);
	tlcm_clustering_t cl;
	CHECK_INT(tlcm_cluster(x, 60, DIM, &opts, &cl), 0);
	CHECK_UINT(cl.k, 2);
	CHECK_UINT(cl.noise, 0);
	CHECK(cl.silhouette > 0.5);
	int a = cl.assign[0], b = cl.assign[30];
	CHECK(a != b && a >= 0 && b >= 0);
	for (size_t i = 0; i < 60; i++)
		CHECK_INT(cl.assign[i], i < 30 ? a : b);
	CHECK_UINT(cl.sizes[a], 30);
	CHECK_UINT(cl.sizes[b], 30);
	/* RMS distance to the centroid ~ 0.5 * sqrt(16) = 2 */
	CHECK(cl.dispersion[a] > 1.5 && cl.dispersion[a] < 2.5);
	CHECK(cl.dispersion[b] > 1.5 && cl.dispersion[b] < 2.5);
	CHECK(fabsf(cl.centroids[a * DIM + 1]) < 0.5f);
	CHECK(fabsf(cl.centroids[b * DIM + 1] - 8) < 0.5f);
	/* members, and the representatives: nearest the centroid first */
	size_t mem[60], near[64];
	double disp = 0;
	CHECK_UINT(tlcm_cluster_members(&cl, (size_t)b, mem), 30);
	CHECK_UINT(mem[0], 30);
	CHECK_UINT(mem[29], 59);
	CHECK_UINT(tlcm_cluster_central(x, DIM, mem, 30, 5, near, &disp), 5);
	CHECK(fabs(disp - cl.dispersion[b]) < 1e-4);
	double prev = 0;
	for (size_t i = 0; i < 5; i++) {
		CHECK(near[i] >= 30);
		double d = tlcm_cluster_dist(x + near[i] * DIM,
					     cl.centroids + b * DIM, DIM);
		CHECK(d >= prev - 1e-5);
		prev = d;
	}
	/* no member is nearer than the last representative but left out */
	for (size_t i = 30; i < 60; i++) {
		bool in = false;
		for (size_t j = 0; j < 5; j++)
			in |= near[j] == i;
		if (!in)
			CHECK(tlcm_cluster_dist(x + i * DIM,
						cl.centroids + b * DIM,
						DIM) >= prev - 1e-5);
	}
	CHECK_UINT(tlcm_cluster_central(x, DIM, mem, 30, 100, near, &disp),
		   30);
	CHECK_UINT(tlcm_cluster_central(x, DIM, mem, 0, 5, near, &disp), 0);
	/* the same seed gives the same clustering */
	tlcm_clustering_t again;
	CHECK_INT(tlcm_cluster(x, 60, DIM, &opts, &again), 0);
	CHECK_UINT(again.k, cl.k);
	for (size_t i = 0; i < 60; i++)
		CHECK_INT(again.assign[i], cl.assign[i]);
	tlcm_clustering_free(&again);
	tlcm_clustering_free(&cl);
}

/* Two blobs near each other and one far away: the silhouette prefers
 * k = 2, one cluster holding both near blobs (the far one makes every
 * other distance look small); clustering that cluster's members again
 * splits it. The adapter does this for a cluster too dispersed to
 * accept. */
static void near_pair_far_one(void)
{
	static const float at[3] = {0, 6, 40};
	float x[150 * DIM], c[DIM] = {0};
	for (int b = 0; b < 3; b++) {
		c[0] = at[b];
		for (size_t i = 0; i < 50; i++)
			for (size_t j = 0; j < DIM; j++)
				x[(b * 50 + i) * DIM + j] =
					(float)(c[j] + unif() - 0.5);
	}
	tlcm_clustering_t cl;
	CHECK_INT(tlcm_cluster(x, 150, DIM, &opts, &cl), 0);
	CHECK_UINT(cl.k, 2);
	size_t big = cl.sizes[0] > cl.sizes[1] ? 0 : 1;
	CHECK_UINT(cl.sizes[big], 100);
	size_t mem[150];
	size_t n = tlcm_cluster_members(&cl, big, mem);
	float sub[100 * DIM];
	for (size_t i = 0; i < n && i < 100; i++)
		memcpy(sub + i * DIM, x + mem[i] * DIM, sizeof(float) * DIM);
	tlcm_clustering_t again;
	CHECK_INT(tlcm_cluster(sub, n, DIM, &opts, &again), 0);
	CHECK_UINT(again.k, 2);
	CHECK_UINT(again.sizes[0], 50);
	CHECK(again.dispersion[0] < cl.dispersion[big] * 0.8);
	tlcm_clustering_free(&again);
	tlcm_clustering_free(&cl);
}

static void one_blob_and_noise(void)
{
	float x[45 * DIM], c[DIM] = {0};
	blob(x, 40, DIM, c, 0.5);
	/* five points scattered far away */
	for (size_t i = 40; i < 45; i++)
		for (size_t j = 0; j < DIM; j++)
			x[i * DIM + j] = (float)(30 * (unif() - 0.5));
	tlcm_clustering_t cl;
	CHECK_INT(tlcm_cluster(x, 45, DIM, &opts, &cl), 0);
	CHECK_UINT(cl.k, 1);
	CHECK_UINT(cl.noise, 5);
	for (size_t i = 0; i < 45; i++)
		CHECK_INT(cl.assign[i], i < 40 ? 0 : -1);
	CHECK_UINT(cl.sizes[0], 40);
	CHECK(cl.dispersion[0] < 2.5);
	CHECK_DBL(cl.silhouette, 0);
	tlcm_clustering_free(&cl);
	/* without the noise test every point belongs to a cluster */
	tlcm_cluster_opts_t o = opts;
	o.outlier_factor = 0;
	CHECK_INT(tlcm_cluster(x, 45, DIM, &o, &cl), 0);
	CHECK_UINT(cl.noise, 0);
	size_t total = 0;
	for (size_t c2 = 0; c2 < cl.k; c2++)
		total += cl.sizes[c2];
	CHECK_UINT(total, 45);
	tlcm_clustering_free(&cl);
}

static void scattered_only(void)
{
	/* no structure: whatever clusters come out are either too small or
	 * far more dispersed than a real class (blob dispersion ~2 here) */
	float x[30 * DIM];
	for (size_t i = 0; i < 30 * DIM; i++)
		x[i] = (float)(30 * (unif() - 0.5));
	tlcm_clustering_t cl;
	CHECK_INT(tlcm_cluster(x, 30, DIM, &opts, &cl), 0);
	size_t coherent = 0;
	for (size_t c = 0; c < cl.k; c++)
		coherent += cl.sizes[c] >= 5 && cl.dispersion[c] <= 3;
	CHECK_UINT(coherent, 0);
	tlcm_clustering_free(&cl);
}

static void edge_cases(void)
{
	tlcm_clustering_t cl;
	float x[3 * 2] = {0, 0, 1, 1, 2, 2};
	CHECK_INT(tlcm_cluster(x, 0, 2, &opts, &cl), 0);
	CHECK_UINT(cl.k, 0);
	tlcm_clustering_free(&cl);
	CHECK_INT(tlcm_cluster(x, 3, 2, &opts, &cl), 0);
	CHECK_UINT(cl.k, 1); /* too few points to split */
	CHECK_UINT(cl.sizes[0], 3);
	tlcm_clustering_free(&cl);
	tlcm_cluster_opts_t o = opts;
	o.k_max = 0;
	CHECK_INT(tlcm_cluster(x, 3, 2, &o, &cl), TLCM_EINVAL);
	o = opts;
	o.k_max = TLCM_CLUSTER_MAX_K + 1;
	CHECK_INT(tlcm_cluster(x, 3, 2, &o, &cl), TLCM_EINVAL);
	o = opts;
	o.restarts = 0;
	CHECK_INT(tlcm_cluster(x, 3, 2, &o, &cl), TLCM_EINVAL);
	CHECK_INT(tlcm_cluster(x, TLCM_CLUSTER_MAX_POINTS + 1, 2, &opts, &cl),
		  TLCM_EINVAL);
	CHECK_INT(tlcm_cluster(NULL, 3, 2, &opts, &cl), TLCM_EINVAL);
	tlcm_clustering_free(&cl);
}

static void rules(void)
{
	tlcm_adapt_rules_t r = {0.9, 0.5, 1.5};
	char why[128];
	CHECK_INT(tlcm_adapt_rules_check(&r, 0.8, 0.75, "A", 0.4, 0.3, 100,
					 140, why, sizeof why), 0);
	CHECK_STR(why, "");
	CHECK_INT(tlcm_adapt_rules_check(&r, 0.74, 0.61, "A", 0.4, 0.4, 100,
					 100, why, sizeof why), 1);
	CHECK_STR(why, "confidence 0.61 < 0.9 x 0.74");
	CHECK_INT(tlcm_adapt_rules_check(&r, 0.74, 0.74, "Bag", 0.4, 0.1, 100,
					 100, why, sizeof why), 2);
	CHECK_STR(why, "share of 'Bag' 0.10 < 0.5 x 0.40");
	CHECK_INT(tlcm_adapt_rules_check(&r, 0.74, 0.74, "A", 0.4, 0.4, 100,
					 160, why, sizeof why), 3);
	CHECK_STR(why, "quarantine 160 > 1.5 x 100");
	/* exactly at the limits: no rule fires */
	CHECK_INT(tlcm_adapt_rules_check(&r, 1, 0.9, "A", 0.5, 0.25, 100, 150,
					 why, sizeof why), 0);
	/* no data before: the rules pass */
	CHECK_INT(tlcm_adapt_rules_check(&r, 0, 0, NULL, 0, 0, 0, 50, why,
					 sizeof why), 0);
	/* switched off */
	tlcm_adapt_rules_t off = {0, 0, 0};
	CHECK_INT(tlcm_adapt_rules_check(&off, 1, 0, "A", 1, 0, 1, 100, why,
					 sizeof why), 0);
}

static void revote(void)
{
	int lab[3] = {0, 0, 1};
	float dist[3] = {1, 2, 3}, add[2] = {0.5f, 2.5f}, c;
	/* C at 0.5 enters first, A A stay, B leaves */
	CHECK_INT(tlcm_adapt_revote(3, lab, dist, 2, add, 2, false, &c), 0);
	CHECK(fabsf(c - 2.0f / 3) < 1e-6f);
	/* equal distances: the new sample goes first */
	float tie[2] = {1, 1};
	CHECK_INT(tlcm_adapt_revote(3, lab, dist, 2, tie, 2, false, &c), 2);
	CHECK(fabsf(c - 2.0f / 3) < 1e-6f);
	/* 2, 0, 0, 1: label 0 keeps two of four */
	int l4[4] = {0, 0, 1, 1};
	float d4[4] = {1, 2, 3, 4}, a4[2] = {0.1f, 5};
	CHECK_INT(tlcm_adapt_revote(4, l4, d4, 2, a4, 2, false, &c), 0);
	CHECK(fabsf(c - 0.5f) < 1e-6f);
	/* 2, 2, 0, 0: a 2-2 tie goes to the nearest neighbour's label */
	float b4[2] = {0.1f, 0.2f};
	CHECK_INT(tlcm_adapt_revote(4, l4, d4, 2, b4, 2, false, &c), 2);
	CHECK(fabsf(c - 0.5f) < 1e-6f);
	/* nothing added: the same vote */
	CHECK_INT(tlcm_adapt_revote(3, lab, dist, 2, NULL, 0, false, &c), 0);
	CHECK(fabsf(c - 2.0f / 3) < 1e-6f);
	/* inverse weights: one very near new sample outweighs two */
	float near[1] = {0.01f};
	CHECK_INT(tlcm_adapt_revote(3, lab, dist, 2, near, 1, true, &c), 2);
	CHECK(c > 0.9f);
	/* distances */
	float p[3] = {1, 0, 0}, q[3] = {0, 1, 0}, z[3] = {0, 0, 0};
	CHECK(fabsf(tlcm_adapt_distance(TLCM_ADAPT_EUCLIDEAN, p, q, 3) -
		    sqrtf(2)) < 1e-6f);
	CHECK(fabsf(tlcm_adapt_distance(TLCM_ADAPT_MANHATTAN, p, q, 3) - 2) <
	      1e-6f);
	CHECK(fabsf(tlcm_adapt_distance(TLCM_ADAPT_COSINE, p, q, 3) - 1) <
	      1e-6f);
	CHECK(fabsf(tlcm_adapt_distance(TLCM_ADAPT_COSINE, p, p, 3)) < 1e-6f);
	CHECK(fabsf(tlcm_adapt_distance(TLCM_ADAPT_COSINE, p, z, 3) - 1) <
	      1e-6f);
}

/* The re-vote predicts what the index answers after the samples are
 * really added (random data, both weightings, three metrics). */
static void revote_matches_index(void)
{
	static const char *const names[] = {"A", "B", "C", "NEW"};
	for (int metric = 0; metric < 3; metric++)
		for (int inv = 0; inv < 2; inv++) {
			tlcm_knn_opts_t o = {.k = 5, .metric = metric,
					     .weighting = inv ? TLCM_KNN_INVERSE
							      : TLCM_KNN_UNIFORM,
					     .max_samples = 1000, .dim = 4};
			tlcm_knn_t *ix;
			CHECK_INT(tlcm_knn_new(&ix, &o), 0);
			float x[4], reps[8][4];
			for (int i = 0; i < 60; i++) {
				for (int j = 0; j < 4; j++)
					x[j] = (float)(unif() * 4 + (i % 3));
				tlcm_knn_add(ix, x, 4, names[i % 3], 0);
			}
			for (int r = 0; r < 8; r++)
				for (int j = 0; j < 4; j++)
					reps[r][j] = (float)(unif() * 4 + 1);
			float q[40][4];
			int before_l[40][5];
			float before_d[40][5];
			size_t k[40];
			for (int i = 0; i < 40; i++) {
				for (int j = 0; j < 4; j++)
					q[i][j] = (float)(unif() * 5);
				tlcm_knn_result_t res;
				CHECK_INT(tlcm_knn_query(ix, q[i], 4, &res), 0);
				k[i] = res.n;
				for (size_t j = 0; j < res.n; j++) {
					const char *l = tlcm_knn_label_name(
						ix, res.label[j]);
					before_l[i][j] = l[0] - 'A';
					before_d[i][j] = res.dist[j];
				}
			}
			for (int r = 0; r < 8; r++)
				tlcm_knn_add(ix, reps[r], 4, "NEW", 0);
			int agree = 0;
			for (int i = 0; i < 40; i++) {
				float ad[8], c;
				for (int r = 0; r < 8; r++)
					ad[r] = tlcm_adapt_distance(metric, q[i],
								    reps[r], 4);
				int w = tlcm_adapt_revote(k[i], before_l[i],
							  before_d[i], 13, ad,
							  8, inv, &c);
				tlcm_knn_result_t res;
				tlcm_knn_query(ix, q[i], 4, &res);
				const char *l = tlcm_knn_label_name(
					ix, res.winner);
				agree += (w == 13 ? !strcmp(l, "NEW")
						  : l[0] - 'A' == w) &&
					 fabsf(c - res.confidence) < 1e-4f;
			}
			/* float rounding may flip a near-tie, rarely */
			CHECK(agree >= 39);
			tlcm_knn_free(ix);
		}
}

int main(void)
{
	two_blobs();
	near_pair_far_one();
	one_blob_and_noise();
	scattered_only();
	edge_cases();
	rules();
	revote();
	revote_matches_index();
	return tlcm_test_done();
}
