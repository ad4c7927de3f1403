/* cluster.c — noise test, k-means++ with the number of clusters chosen by
 * the silhouette, per-cluster dispersion (see cluster.h).
 *
 * One n × n distance matrix serves the noise test and every silhouette;
 * k-means works on the coordinates (float distances, vectorised: built
 * with -O3 -fopenmp-simd like the knn kernels). A splitmix64 generator
 * makes the seeding reproducible.
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "nodes/adapt/cluster.h"

#define MAX_ITER 50

static uint64_t next_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double uniform(uint64_t *s)
{
	return (double)(next_rand(s) >> 11) * (1.0 / 9007199254740992.0);
}

double tlcm_cluster_dist(const float *a, const float *b, size_t dim)
{
	double s = 0;
	for (size_t j = 0; j < dim; j++) {
		double d = (double)a[j] - (double)b[j];
		s += d * d;
	}
	return sqrt(s);
}

/* Squared distance in float (vectorised; the k-means inner loop). */
static double sq_dist(const float *a, const float *b, size_t dim)
{
	float s = 0;
#pragma omp simd reduction(+ : s)
	for (size_t j = 0; j < dim; j++) {
		float d = a[j] - b[j];
		s += d * d;
	}
	return s;
}

/* The k-th smallest of v[0..n) (0-based; v is reordered). */
static float select_kth(float *v, size_t n, size_t k)
{
	size_t lo = 0, hi = n - 1;
	while (lo < hi) {
		float pivot = v[lo + (hi - lo) / 2];
		size_t i = lo, j = hi;
		while (i <= j) {
			while (v[i] < pivot)
				i++;
			while (v[j] > pivot)
				j--;
			if (i <= j) {
				float t = v[i];
				v[i] = v[j];
				v[j] = t;
				i++;
				if (j == 0)
					break;
				j--;
			}
		}
		if (k <= j)
			hi = j;
		else if (k >= i)
			lo = i;
		else
			break;
	}
	return v[k];
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* ---- k-means++ -------------------------------------------------------- */

typedef struct {
	const float *x;   /* all points */
	size_t dim;
	const size_t *pt; /* the m points clustered (indices into x) */
	size_t m;
} set_t;

/* One seeding + Lloyd run; assign[m], cent[k × dim]. Returns inertia. */
static double kmeans_once(const set_t *s, size_t k, uint64_t *rng,
			  int *assign, float *cent, double *d2)
{
	size_t dim = s->dim;
	/* k-means++: first centre uniform, then ∝ squared distance */
	size_t first = (size_t)(uniform(rng) * (double)s->m);
	memcpy(cent, s->x + s->pt[first] * dim, dim * sizeof *cent);
	for (size_t i = 0; i < s->m; i++)
		d2[i] = sq_dist(s->x + s->pt[i] * dim, cent, dim);
	for (size_t c = 1; c < k; c++) {
		double total = 0;
		for (size_t i = 0; i < s->m; i++)
			total += d2[i];
		size_t pick = 0;
		if (total > 0) {
			double r = uniform(rng) * total;
			for (pick = 0; pick + 1 < s->m; pick++) {
				r -= d2[pick];
				if (r < 0)
					break;
			}
		}
		float *cc = cent + c * dim;
		memcpy(cc, s->x + s->pt[pick] * dim, dim * sizeof *cc);
		for (size_t i = 0; i < s->m; i++) {
			double d = sq_dist(s->x + s->pt[i] * dim, cc, dim);
			if (d < d2[i])
				d2[i] = d;
		}
	}
	for (size_t i = 0; i < s->m; i++)
		assign[i] = -1;
	double inertia = 0;
	for (int it = 0; it < MAX_ITER; it++) {
		bool changed = false;
		inertia = 0;
		for (size_t i = 0; i < s->m; i++) {
			const float *p = s->x + s->pt[i] * dim;
			int best = 0;
			double bd = INFINITY;
			for (size_t c = 0; c < k; c++) {
				double d = sq_dist(p, cent + c * dim, dim);
				if (d < bd) {
					bd = d;
					best = (int)c;
				}
			}
			changed |= assign[i] != best;
			assign[i] = best;
			d2[i] = bd;
			inertia += bd;
		}
		if (!changed)
			break;
		/* new centroids; an empty cluster takes the farthest point */
		for (size_t c = 0; c < k; c++) {
			float *cc = cent + c * dim;
			size_t cnt = 0;
			memset(cc, 0, dim * sizeof *cc);
			for (size_t i = 0; i < s->m; i++)
				if (assign[i] == (int)c) {
					const float *p = s->x + s->pt[i] * dim;
					for (size_t j = 0; j < dim; j++)
						cc[j] += p[j];
					cnt++;
				}
			if (cnt) {
				for (size_t j = 0; j < dim; j++)
					cc[j] /= (float)cnt;
				continue;
			}
			size_t far = 0;
			for (size_t i = 1; i < s->m; i++)
				if (d2[i] > d2[far])
					far = i;
			memcpy(cc, s->x + s->pt[far] * dim, dim * sizeof *cc);
			d2[far] = 0;
		}
	}
	return inertia;
}

/* Mean silhouette of assign (k clusters) over the m points; dm is the
 * full n × n distance matrix. */
static double silhouette(const set_t *s, const float *dm, size_t n,
			 const int *assign, size_t k, double *sum)
{
	size_t cnt[TLCM_CLUSTER_MAX_K] = {0};
	for (size_t i = 0; i < s->m; i++)
		cnt[assign[i]]++;
	double total = 0;
	for (size_t i = 0; i < s->m; i++) {
		memset(sum, 0, k * sizeof *sum);
		const float *row = dm + s->pt[i] * n;
		for (size_t j = 0; j < s->m; j++)
			sum[assign[j]] += row[s->pt[j]];
		size_t own = (size_t)assign[i];
		if (cnt[own] < 2)
			continue; /* s(i) = 0 */
		double a = sum[own] / (double)(cnt[own] - 1), b = INFINITY;
		for (size_t c = 0; c < k; c++)
			if (c != own && cnt[c] && sum[c] / (double)cnt[c] < b)
				b = sum[c] / (double)cnt[c];
		double mx = a > b ? a : b;
		if (mx > 0 && isfinite(b))
			total += (b - a) / mx;
	}
	return s->m ? total / (double)s->m : 0;
}

/* ---- the whole step --------------------------------------------------- */

void tlcm_clustering_free(tlcm_clustering_t *c)
{
	free(c->assign);
	free(c->centroids);
	free(c->sizes);
	free(c->dispersion);
	memset(c, 0, sizeof *c);
}

/* Noise test: mark[i] = true for noise. */
static int find_noise(const float *dm, size_t n, const tlcm_cluster_opts_t *o,
		      bool *noise)
{
	memset(noise, 0, n * sizeof *noise);
	if (o->outlier_factor <= 0 || n <= o->min_points + 1)
		return 0;
	float *row = malloc(n * sizeof *row), *kth = malloc(n * sizeof *kth);
	if (!row || !kth) {
		free(row);
		free(kth);
		return TLCM_ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		size_t m = 0;
		for (size_t j = 0; j < n; j++)
			if (j != i)
				row[m++] = dm[i * n + j];
		kth[i] = select_kth(row, m, o->min_points - 1);
	}
	memcpy(row, kth, n * sizeof *row);
	qsort(row, n, sizeof *row, cmp_float);
	double med = n % 2 ? row[n / 2]
			   : 0.5 * ((double)row[n / 2 - 1] + row[n / 2]);
	for (size_t i = 0; i < n; i++)
		noise[i] = (double)kth[i] > o->outlier_factor * med;
	free(row);
	free(kth);
	return 0;
}

int tlcm_cluster(const float *x, size_t n, size_t dim,
		 const tlcm_cluster_opts_t *o, tlcm_clustering_t *out)
{
	memset(out, 0, sizeof *out);
	if (!o || o->k_max < 1 || o->k_max > TLCM_CLUSTER_MAX_K ||
	    o->min_points < 1 || o->restarts < 1 ||
	    n > TLCM_CLUSTER_MAX_POINTS || (n && (!x || !dim)))
		return TLCM_EINVAL;
	out->n = n;
	out->dim = dim;
	if (!n)
		return 0;
	int rc = TLCM_ENOMEM;
	float *dm = malloc(n * n * sizeof *dm);
	bool *noise = malloc(n * sizeof *noise);
	size_t *pt = malloc(n * sizeof *pt);
	int *best_a = malloc(n * sizeof *best_a), *a = malloc(n * sizeof *a);
	double *d2 = malloc(n * sizeof *d2), sum[TLCM_CLUSTER_MAX_K];
	float *cent = malloc(TLCM_CLUSTER_MAX_K * dim * sizeof *cent);
	float *best_c = malloc(TLCM_CLUSTER_MAX_K * dim * sizeof *best_c);
	out->assign = malloc(n * sizeof *out->assign);
	if (!dm || !noise || !pt || !best_a || !a || !d2 || !cent ||
	    !best_c || !out->assign)
		goto done;
	for (size_t i = 0; i < n; i++) {
		dm[i * n + i] = 0;
		for (size_t j = i + 1; j < n; j++)
			dm[i * n + j] = dm[j * n + i] = (float)tlcm_cluster_dist(
				x + i * dim, x + j * dim, dim);
	}
	if ((rc = find_noise(dm, n, o, noise)))
		goto done;
	set_t s = {x, dim, pt, 0};
	for (size_t i = 0; i < n; i++)
		if (!noise[i])
			pt[s.m++] = i;
	uint64_t rng = o->seed;
	size_t k = s.m ? 1 : 0;
	double best_s = -2;
	size_t kmax = o->k_max < s.m / 2 ? o->k_max : s.m / 2;
	for (size_t kk = 2; kk <= kmax; kk++) {
		double inert = INFINITY;
		for (unsigned r = 0; r < o->restarts; r++) {
			double in = kmeans_once(&s, kk, &rng, a, cent, d2);
			if (in < inert) {
				inert = in;
				memcpy(best_c, cent, kk * dim * sizeof *cent);
				memcpy(best_a, a, s.m * sizeof *a);
			}
		}
		double sil = silhouette(&s, dm, n, best_a, kk, sum);
		if (sil > best_s && sil >= o->min_silhouette) {
			best_s = sil;
			k = kk;
			for (size_t i = 0; i < s.m; i++)
				out->assign[pt[i]] = best_a[i];
		}
	}
	if (k <= 1) {
		best_s = 0;
		for (size_t i = 0; i < s.m; i++)
			out->assign[pt[i]] = 0;
	}
	for (size_t i = 0; i < n; i++)
		if (noise[i])
			out->assign[i] = -1;
	out->k = k;
	out->silhouette = best_s;
	out->noise = n - s.m;
	rc = TLCM_ENOMEM;
	out->centroids = calloc((k ? k : 1) * dim, sizeof *out->centroids);
	out->sizes = calloc(k ? k : 1, sizeof *out->sizes);
	out->dispersion = calloc(k ? k : 1, sizeof *out->dispersion);
	if (!out->centroids || !out->sizes || !out->dispersion)
		goto done;
	/* centroids, sizes and dispersion from the final assignment (in
	 * double, then stored as float) */
	double *acc = calloc(dim, sizeof *acc);
	if (!acc)
		goto done;
	for (size_t c = 0; c < k; c++) {
		memset(acc, 0, dim * sizeof *acc);
		size_t cnt = 0;
		for (size_t i = 0; i < n; i++)
			if (out->assign[i] == (int)c) {
				for (size_t j = 0; j < dim; j++)
					acc[j] += x[i * dim + j];
				cnt++;
			}
		float *cc = out->centroids + c * dim;
		for (size_t j = 0; j < dim; j++)
			cc[j] = cnt ? (float)(acc[j] / (double)cnt) : 0;
		double ss = 0;
		for (size_t i = 0; i < n; i++)
			if (out->assign[i] == (int)c)
				ss += sq_dist(x + i * dim, cc, dim);
		out->sizes[c] = cnt;
		out->dispersion[c] = cnt ? sqrt(ss / (double)cnt) : 0;
	}
	free(acc);
	rc = 0;
done:
	free(dm);
	free(noise);
	free(pt);
	free(best_a);
	free(a);
	free(d2);
	free(cent);
	free(best_c);
	if (rc)
		tlcm_clustering_free(out);
	return rc;
}

typedef struct {
	double d;
	size_t i;
} near_t;

static int by_d(const void *a, const void *b)
{
	const near_t *x = a, *y = b;
	if (x->d != y->d)
		return (x->d > y->d) - (x->d < y->d);
	return (x->i > y->i) - (x->i < y->i);
}

size_t tlcm_cluster_central(const float *x, size_t dim,
			    const size_t *members, size_t n, size_t m,
			    size_t *out, double *dispersion)
{
	double *c = calloc(dim + 1, sizeof *c);
	near_t *v = malloc((n + 1) * sizeof *v);
	float *cf = malloc((dim + 1) * sizeof *cf);
	*dispersion = 0;
	if (!c || !v || !cf || !n) {
		free(c);
		free(v);
		free(cf);
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < dim; j++)
			c[j] += x[members[i] * dim + j];
	for (size_t j = 0; j < dim; j++)
		cf[j] = (float)(c[j] / (double)n);
	double ss = 0;
	for (size_t i = 0; i < n; i++) {
		double d = tlcm_cluster_dist(x + members[i] * dim, cf, dim);
		v[i] = (near_t){d, i};
		ss += d * d;
	}
	*dispersion = sqrt(ss / (double)n);
	qsort(v, n, sizeof *v, by_d);
	if (m > n)
		m = n;
	for (size_t i = 0; i < m; i++)
		out[i] = members[v[i].i];
	free(c);
	free(v);
	free(cf);
	return m;
}

size_t tlcm_cluster_members(const tlcm_clustering_t *cl, size_t c,
			    size_t *out)
{
	size_t k = 0;
	for (size_t i = 0; i < cl->n; i++)
		if (cl->assign[i] == (int)c)
			out[k++] = i;
	return k;
}
