/* test_adapt_cluster.c — the adapter's clustering step and rules, without
 * a graph (nodes/adapt/cluster.c, rules.c).
 *
 * Clustering: two well-separated blobs that a KNN would label alike split
 * into two clusters of the right members; two near blobs next to a far
 * one split in two steps; one blob stays one cluster;
 * scattered points far from a blob are noise; scattered points alone give
 * no coherent cluster (dispersion far above the blob's); same seed, same
 * result; members and representatives (nearest the centroid first);
 * bad options. The distance kernels (AVX2 where the CPU has it, and the
 * portable ones) against double sums, (i, j) and (j, i) bit for bit
 * equal; clustering from a given distance matrix and a subset equals
 * clustering a copy; both kernel sets give the same clusterings; and the
 * k-means on squared distances gives the partitions of a plain k-means on
 * the coordinates (the reference below, the algorithm as first written).
 * Rules: each rule fires alone with its reason; a ratio of 0 switches it
 * off. Re-vote: merges, newest-first ties, both weightings, against the
 * knn index itself on random data.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- the reference: noise test and k-means++ on coordinates ----------- */

static uint64_t ref_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double ref_uniform(uint64_t *s)
{
	return (double)(ref_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static double ref_sq(const float *a, const float *b, size_t dim)
{
	double s = 0;
	for (size_t j = 0; j < dim; j++)
		s += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
	return s;
}

static int ref_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Lloyd on coordinates, the centroids as means (same seeding, same
 * empty-cluster rule). */
static double ref_kmeans(const float *x, size_t dim, const size_t *pt,
			 size_t m, size_t k, uint64_t *seed, int *as,
			 double *cent, double *d2)
{
	float *cf = malloc(k * dim * sizeof *cf);
	size_t first = (size_t)(ref_uniform(seed) * (double)m);
	for (size_t j = 0; j < dim; j++)
		cf[j] = x[pt[first] * dim + j];
	for (size_t i = 0; i < m; i++)
		d2[i] = ref_sq(x + pt[i] * dim, cf, dim);
	for (size_t c = 1; c < k; c++) {
		double total = 0;
		for (size_t i = 0; i < m; i++)
			total += d2[i];
		size_t pick = 0;
		if (total > 0) {
			double r = ref_uniform(seed) * total;
			for (pick = 0; pick + 1 < m; pick++) {
				r -= d2[pick];
				if (r < 0)
					break;
			}
		}
		for (size_t j = 0; j < dim; j++)
			cf[c * dim + j] = x[pt[pick] * dim + j];
		for (size_t i = 0; i < m; i++) {
			double d = ref_sq(x + pt[i] * dim, cf + c * dim, dim);
			if (d < d2[i])
				d2[i] = d;
		}
	}
	for (size_t i = 0; i < k * dim; i++)
		cent[i] = cf[i];
	free(cf);
	for (size_t i = 0; i < m; i++)
		as[i] = -1;
	double inertia = 0;
	for (int it = 0; it < 50; it++) {
		bool changed = false;
		inertia = 0;
		for (size_t i = 0; i < m; i++) {
			int best = 0;
			double bd = INFINITY;
			for (size_t c = 0; c < k; c++) {
				double d = 0;
				for (size_t j = 0; j < dim; j++) {
					double t = x[pt[i] * dim + j] -
						   cent[c * dim + j];
					d += t * t;
				}
				if (d < bd) {
					bd = d;
					best = (int)c;
				}
			}
			changed |= as[i] != best;
			as[i] = best;
			d2[i] = bd;
			inertia += bd;
		}
		if (!changed)
			break;
		for (size_t c = 0; c < k; c++) {
			size_t cnt = 0;
			double *cc = cent + c * dim;
			memset(cc, 0, dim * sizeof *cc);
			for (size_t i = 0; i < m; i++)
				if (as[i] == (int)c) {
					for (size_t j = 0; j < dim; j++)
						cc[j] += x[pt[i] * dim + j];
					cnt++;
				}
			if (cnt) {
				for (size_t j = 0; j < dim; j++)
					cc[j] /= (double)cnt;
				continue;
			}
			size_t far = 0;
			for (size_t i = 1; i < m; i++)
				if (d2[i] > d2[far])
					far = i;
			for (size_t j = 0; j < dim; j++)
				cc[j] = x[pt[far] * dim + j];
			d2[far] = 0;
		}
	}
	return inertia;
}

/* k and the assignment (-1: noise) by the reference. */
static size_t ref_cluster(const float *x, size_t n, size_t dim,
			  const tlcm_cluster_opts_t *o, int *assign)
{
	double *dm = malloc(n * n * sizeof *dm), *kth = malloc(n * sizeof *kth);
	double *row = malloc(n * sizeof *row), *d2 = malloc(n * sizeof *d2);
	double *cent = malloc(TLCM_CLUSTER_MAX_K * dim * sizeof *cent);
	size_t *pt = malloc(n * sizeof *pt), m = 0;
	int *a = malloc(n * sizeof *a), *best = malloc(n * sizeof *best);
	bool *noise = calloc(n, sizeof *noise);
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			dm[i * n + j] =
				sqrt(ref_sq(x + i * dim, x + j * dim, dim));
	if (o->outlier_factor > 0 && n > o->min_points + 1) {
		for (size_t i = 0; i < n; i++) {
			size_t c = 0;
			for (size_t j = 0; j < n; j++)
				if (j != i)
					row[c++] = dm[i * n + j];
			qsort(row, c, sizeof *row, ref_cmp);
			kth[i] = row[o->min_points - 1];
		}
		memcpy(row, kth, n * sizeof *row);
		qsort(row, n, sizeof *row, ref_cmp);
		double med = n % 2 ? row[n / 2]
				   : 0.5 * (row[n / 2 - 1] + row[n / 2]);
		for (size_t i = 0; i < n; i++)
			noise[i] = kth[i] > o->outlier_factor * med;
	}
	for (size_t i = 0; i < n; i++)
		if (!noise[i])
			pt[m++] = i;
	uint64_t seed = o->seed;
	size_t k = m ? 1 : 0, kmax = o->k_max < m / 2 ? o->k_max : m / 2;
	double best_s = -2;
	for (size_t i = 0; i < n; i++)
		assign[i] = noise[i] ? -1 : 0;
	for (size_t kk = 2; kk <= kmax; kk++) {
		double inert = INFINITY;
		for (unsigned r = 0; r < o->restarts; r++) {
			double in = ref_kmeans(x, dim, pt, m, kk, &seed, a,
					       cent, d2);
			if (in < inert) {
				inert = in;
				memcpy(best, a, m * sizeof *a);
			}
		}
		/* silhouette */
		size_t cnt[TLCM_CLUSTER_MAX_K] = {0};
		for (size_t i = 0; i < m; i++)
			cnt[best[i]]++;
		double total = 0;
		for (size_t i = 0; i < m; i++) {
			double sum[TLCM_CLUSTER_MAX_K] = {0};
			for (size_t j = 0; j < m; j++)
				sum[best[j]] += dm[pt[i] * n + pt[j]];
			size_t own = (size_t)best[i];
			if (cnt[own] < 2)
				continue;
			double aa = sum[own] / (double)(cnt[own] - 1);
			double b = INFINITY;
			for (size_t c = 0; c < kk; c++)
				if (c != own && cnt[c] &&
				    sum[c] / (double)cnt[c] < b)
					b = sum[c] / (double)cnt[c];
			double mx = aa > b ? aa : b;
			if (mx > 0 && isfinite(b))
				total += (b - aa) / mx;
		}
		double sil = m ? total / (double)m : 0;
		if (sil > best_s && sil >= o->min_silhouette) {
			best_s = sil;
			k = kk;
			for (size_t i = 0; i < m; i++)
				assign[pt[i]] = best[i];
		}
	}
	free(dm);
	free(kth);
	free(row);
	free(d2);
	free(cent);
	free(pt);
	free(a);
	free(best);
	free(noise);
	return k;
}

/* a and b name the same groups (and the same noise), up to renaming */
static bool same_partition(const int *a, const int *b, size_t n)
{
	int map[TLCM_CLUSTER_MAX_K + 1];
	for (size_t c = 0; c <= TLCM_CLUSTER_MAX_K; c++)
		map[c] = -2;
	for (size_t i = 0; i < n; i++) {
		if ((a[i] < 0) != (b[i] < 0))
			return false;
		if (a[i] < 0)
			continue;
		if (map[a[i]] == -2)
			map[a[i]] = b[i];
		else if (map[a[i]] != b[i])
			return false;
	}
	return true;
}

/* 2-5 blobs of random sizes, spreads and places, 4 scattered points:
 * at most 184 points. */
static size_t random_set(float *x, size_t dim)
{
	size_t n = 0, nb = 2 + (size_t)(unif() * 4);
	float c[300];
	for (size_t b = 0; b < nb; b++) {
		size_t m = 5 + (size_t)(unif() * 31);
		for (size_t j = 0; j < dim; j++)
			c[j] = (float)(10 * unif());
		blob(x + n * dim, m, dim, c, 0.3 + unif());
		n += m;
	}
	for (size_t i = 0; i < 4; i++, n++)
		for (size_t j = 0; j < dim; j++)
			x[n * dim + j] = (float)(40 * (unif() - 0.5));
	return n;
}

static void kernels(void)
{
	static const size_t dims[] = {1, 3, 7, 8, 9, 31, 32, 33, 40, 63, 64,
				      65, 100, 1280};
	float *x = malloc(6 * 1280 * sizeof *x);
	for (size_t t = 0; t < sizeof dims / sizeof *dims; t++) {
		size_t d = dims[t];
		for (size_t i = 0; i < 6 * d; i++)
			x[i] = (float)(5 * gauss() + 3);
		for (int portable = 0; portable < 2; portable++) {
			float out[6], back;
			tlcm_cluster_sqdist(x, x, 6, d, out, portable);
			CHECK_DBL(out[0], 0);
			for (size_t i = 1; i < 6; i++) {
				double r = ref_sq(x, x + i * d, d);
				CHECK(fabs(out[i] - r) <= 1e-5 * r);
				/* (i, 0) has the bits of (0, i) */
				tlcm_cluster_sqdist(x + i * d, x, 1, d, &back,
						    portable);
				CHECK(!memcmp(&back, &out[i], sizeof back));
			}
		}
		float m[36];
		tlcm_cluster_sqdist_matrix(x, 6, d, m);
		for (size_t i = 0; i < 6; i++)
			for (size_t j = 0; j < 6; j++) {
				CHECK(!memcmp(&m[i * 6 + j], &m[j * 6 + i],
					      sizeof *m));
				double r = ref_sq(x + i * d, x + j * d, d);
				CHECK(fabs(m[i * 6 + j] - r) <= 1e-5 * r);
			}
	}
	free(x);
}

/* tlcm_cluster_d2 on a subset of a bigger matrix = tlcm_cluster on a
 * copy of those points; the portable kernels cluster alike. */
static void from_matrix(void)
{
	enum { N = 184, D = 24 };
	static float x[N * D], sub[N * D], d2[N * N];
	size_t idx[N], n = 0;
	for (int rep = 0; rep < 5; rep++) {
		size_t got = random_set(x, D);
		CHECK(got <= N);
		tlcm_cluster_sqdist_matrix(x, got, D, d2);
		n = 0;
		for (size_t i = 0; i < got; i++)
			if (i % 3 != 1 || rep == 0)
				idx[n++] = i;
		for (size_t i = 0; i < n; i++)
			memcpy(sub + i * D, x + idx[i] * D, sizeof(float) * D);
		tlcm_clustering_t a, b, c;
		tlcm_cluster_opts_t o = opts;
		o.seed = (uint64_t)rep;
		CHECK_INT(tlcm_cluster(sub, n, D, &o, &a), 0);
		CHECK_INT(tlcm_cluster_d2(x, D, d2, got, idx, n, &o, &b), 0);
		o.portable = true;
		CHECK_INT(tlcm_cluster(sub, n, D, &o, &c), 0);
		CHECK_UINT(b.k, a.k);
		CHECK_UINT(b.noise, a.noise);
		CHECK(!memcmp(&b.silhouette, &a.silhouette,
			      sizeof a.silhouette));
		for (size_t i = 0; i < n; i++)
			CHECK_INT(b.assign[i], a.assign[i]);
		for (size_t k = 0; k < a.k; k++) {
			CHECK_UINT(b.sizes[k], a.sizes[k]);
			CHECK_DBL(b.dispersion[k], a.dispersion[k]);
		}
		CHECK_UINT(c.k, a.k);
		CHECK(same_partition(c.assign, a.assign, n));
		/* float sums in another order: the last bits differ */
		CHECK(fabs(c.silhouette - a.silhouette) < 1e-6);
		tlcm_clustering_free(&a);
		tlcm_clustering_free(&b);
		tlcm_clustering_free(&c);
	}
	tlcm_clustering_t cl;
	CHECK_INT(tlcm_cluster_d2(x, D, NULL, N, NULL, 3, &opts, &cl),
		  TLCM_EINVAL);
	CHECK_INT(tlcm_cluster_d2(x, D, d2, 2, NULL, 3, &opts, &cl),
		  TLCM_EINVAL);
	tlcm_clustering_free(&cl);
}

/* The k-means on squared distances (centroids never formed) finds the
 * partitions of k-means on coordinates: random blobs, several sizes,
 * dimensions, noise settings and seeds. */
static void matches_reference(void)
{
	static const size_t dims[] = {2, 16, 32, 300};
	static float x[200 * 300];
	static int ref[200];
	int same = 0, total = 0;
	for (size_t t = 0; t < 4; t++)
		for (int rep = 0; rep < 10; rep++) {
			size_t d = dims[t], n = random_set(x, d);
			tlcm_cluster_opts_t o = opts;
			o.seed = (uint64_t)(rep * 7 + 1);
			o.min_silhouette = rep % 3 ? 0.2 : -1;
			o.outlier_factor = rep % 4 ? 2.5 : 0;
			o.min_points = 3 + (size_t)rep % 5;
			tlcm_clustering_t cl;
			CHECK_INT(tlcm_cluster(x, n, d, &o, &cl), 0);
			size_t k = ref_cluster(x, n, d, &o, ref);
			total++;
			same += k == cl.k && same_partition(ref, cl.assign, n);
			tlcm_clustering_free(&cl);
		}
	CHECK_INT(same, total);
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
	kernels();
	from_matrix();
	matches_reference();
	rules();
	revote();
	revote_matches_index();
	return tlcm_test_done();
}
