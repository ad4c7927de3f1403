/* cluster.h — the heuristic adapter's clustering step, usable without a
 * graph (tests, tools).
 *
 * tlcm_cluster() groups n points of `dim` values (Euclidean):
 *   1. noise: each point's distance to its min_points-th nearest other
 *      point; a point beyond outlier_factor × the median of those
 *      distances sits in no dense region and is noise (assign -1);
 *   2. k-means++ on the rest for k = 2 .. k_max (`restarts` seedings per
 *      k, Lloyd iterations to convergence, the lowest inertia kept); the
 *      k with the highest mean silhouette wins when it reaches
 *      min_silhouette, else the points form a single cluster. So two
 *      separate groups split even when every point carries the same
 *      predicted label;
 *   3. per cluster: size, centroid and dispersion (root mean squared
 *      distance of the members to the centroid).
 * Deterministic for a given seed. Steps 1 and 2 need only the squared
 * distances of the points: one n × n matrix, O(n² dim) to compute (a
 * vectorised kernel), then O(n²) per k-means run; the coordinates serve
 * step 3 only. tlcm_cluster_d2() takes the matrix from the caller, who may
 * keep it (the adapter reuses it for sub-clusters and, by frame, across
 * batches). n is limited to TLCM_CLUSTER_MAX_POINTS.
 */
#ifndef TLCM_ADAPT_CLUSTER_H
#define TLCM_ADAPT_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLCM_CLUSTER_MAX_POINTS 4096
#define TLCM_CLUSTER_MAX_K 16

typedef struct tlcm_cluster_opts {
	size_t k_max;          /* largest k tried, 1..TLCM_CLUSTER_MAX_K */
	double min_silhouette; /* a split must reach this mean silhouette */
	size_t min_points;     /* neighbour rank of the noise test (>= 1) */
	double outlier_factor; /* noise beyond this × the median; 0: none */
	unsigned restarts;     /* k-means++ seedings per k (>= 1) */
	uint64_t seed;
	bool portable;         /* the portable kernels even where AVX2 runs
				  (tests: both give the same clusterings) */
} tlcm_cluster_opts_t;

typedef struct tlcm_clustering {
	size_t n, dim, k;    /* points, dimension, clusters found */
	int *assign;         /* per point: cluster 0..k-1, or -1 (noise) */
	float *centroids;    /* k × dim */
	size_t *sizes;       /* per cluster */
	double *dispersion;  /* per cluster: RMS distance to the centroid */
	double silhouette;   /* mean silhouette of the chosen split; 0 for
				a single cluster */
	size_t noise;        /* points assigned -1 */
} tlcm_clustering_t;

/* Cluster x (n × dim, row-major). out is filled (free it with
 * tlcm_clustering_free, also after an error). TLCM_EINVAL for bad
 * options or n beyond the limit, TLCM_ENOMEM. n == 0 gives k == 0. */
int tlcm_cluster(const float *x, size_t n, size_t dim,
		 const tlcm_cluster_opts_t *o, tlcm_clustering_t *out);

/* The same for the points idx[0..n) of x (rows of dim values; idx NULL:
 * the first n rows), their squared distances given: d2[p * ld + q] for
 * rows p and q, as tlcm_cluster_sqdist computes them (d2 is only read).
 * out->assign[i] belongs to idx[i]. The result equals tlcm_cluster() on a
 * copy of those rows. */
int tlcm_cluster_d2(const float *x, size_t dim, const float *d2, size_t ld,
		    const size_t *idx, size_t n, const tlcm_cluster_opts_t *o,
		    tlcm_clustering_t *out);
void tlcm_clustering_free(tlcm_clustering_t *c);

/* Squared Euclidean distances of q to the n rows of x (dim values each)
 * into out: float sums, vectorised (AVX2+FMA kernels when the CPU has
 * them, unless `portable`). Bit for bit the same value whichever of two
 * points is q. */
void tlcm_cluster_sqdist(const float *q, const float *x, size_t n,
			 size_t dim, float *out, bool portable);

/* The n × n matrix of squared distances of the rows of x into d2. */
void tlcm_cluster_sqdist_matrix(const float *x, size_t n, size_t dim,
				float *d2);

/* The points members[0..n) of x: their dispersion (RMS distance to their
 * centroid) in *dispersion, and the (at most) m of them nearest the
 * centroid, nearest first (ties: the earlier member), as indices into x
 * in out. Returns how many went to out (0 also when out of memory). */
size_t tlcm_cluster_central(const float *x, size_t dim,
			    const size_t *members, size_t n, size_t m,
			    size_t *out, double *dispersion);

/* The members of cluster c (point indices, ascending) into out (room for
 * sizes[c]); returns how many. */
size_t tlcm_cluster_members(const tlcm_clustering_t *cl, size_t c,
			    size_t *out);

/* Euclidean distance of two dim-vectors (double sums). */
double tlcm_cluster_dist(const float *a, const float *b, size_t dim);

#endif
