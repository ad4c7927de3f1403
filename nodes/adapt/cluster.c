/* cluster.c — noise test, k-means++ with the number of clusters chosen by
 * the silhouette, per-cluster dispersion (see cluster.h).
 *
 * Everything up to the final centroids works on one n × n matrix of
 * squared distances. k-means keeps no coordinates: the squared distance
 * of point i to the mean of a set C is
 *     (1/|C|) Σ_{j∈C} d²(i,j) − (1/(2|C|²)) Σ_{j,l∈C} d²(j,l),
 * so with S(c,i) = Σ_{j∈C} d²(i,j), moved by one matrix row for each point
 * that changes cluster, a Lloyd iteration costs O(k n + moves × n) instead
 * of O(k n dim), with the same assignments up to rounding. The silhouette
 * sums distances per cluster the same way. Built with -O3 -fopenmp-simd
 * (the row sums vectorise); the distance kernel also has an AVX2+FMA
 * version chosen at run time. A splitmix64 generator makes the seeding
 * reproducible.
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

/* ---- kernels ----------------------------------------------------------- *
 * Portable loops (vectorised by the compiler where it can) and, on x86-64,
 * AVX2+FMA versions chosen at run time when the CPU has them (one binary
 * runs everywhere). Both give the same clusterings; the sums may differ in
 * the last bits.
 *   sqd       squared distances of q to n rows. q - r and r - q square to
 *             the same value and the order of the sums depends on the index
 *             alone, so (i, j) and (j, i) agree bit for bit;
 *   add, sub  s[0..m) +=, -= row[0..m): the per-cluster sums, in double
 *             (sums of up to 4096 floats do not depend on the order of the
 *             moves beyond the last bits);
 *   add_sqrt  s[0..m) += sqrt(row[0..m)): distances for the silhouette;
 *   nearest   Lloyd's assignment for one cluster c: its squared distance to
 *             every point, a row of the matrix (the centroid is a point) or
 *             S(c, i) * iv - h (a mean), at least 0; a point nearer than
 *             bd so far (every point for c == 0) takes c;
 *   kth       the k-th smallest (0-based) of row[0..n); buf has room for
 *             k + 1 values (n when k >= 32).
 */
typedef struct {
	void (*sqd)(const float *q, const float *x, size_t n, size_t d,
		    float *out);
	void (*add)(double *s, const float *row, size_t m);
	void (*sub)(double *s, const float *row, size_t m);
	void (*add_sqrt)(double *s, const float *row, size_t m);
	void (*nearest)(const float *row, const double *sc, double iv, double h,
			int c, double *bd, int *na, size_t m);
	float (*kth)(const float *row, size_t n, size_t k, float *buf);
} kern_t;

static void sqd_portable(const float *restrict q, const float *restrict x,
			 size_t n, size_t d, float *restrict out)
{
	for (size_t i = 0; i < n; i++) {
		const float *restrict r = x + i * d;
		float s = 0;
#pragma omp simd reduction(+ : s)
		for (size_t j = 0; j < d; j++) {
			float t = q[j] - r[j];
			s += t * t;
		}
		out[i] = s;
	}
}

static void add_portable(double *restrict s, const float *restrict row,
			 size_t m)
{
#pragma omp simd
	for (size_t i = 0; i < m; i++)
		s[i] += row[i];
}

static void sub_portable(double *restrict s, const float *restrict row,
			 size_t m)
{
#pragma omp simd
	for (size_t i = 0; i < m; i++)
		s[i] -= row[i];
}

static void add_sqrt_portable(double *restrict s, const float *restrict row,
			      size_t m)
{
	for (size_t i = 0; i < m; i++)
		s[i] += sqrtf(row[i]);
}

static void nearest_portable(const float *row, const double *sc, double iv,
			     double h, int c, double *bd, int *na, size_t m)
{
	for (size_t i = 0; i < m; i++) {
		double d = row ? (double)row[i] : sc[i] * iv - h;
		if (d < 0)
			d = 0; /* rounding */
		if (!c || d < bd[i]) {
			bd[i] = d;
			na[i] = c;
		}
	}
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

/* v into the sorted buf[0..*have), which keeps the k + 1 smallest. */
static inline void keep_smallest(float *buf, size_t *have, size_t k, float v)
{
	if (*have == k + 1 && !(v < buf[k]))
		return;
	size_t p = *have < k + 1 ? (*have)++ : k;
	while (p > 0 && buf[p - 1] > v) {
		buf[p] = buf[p - 1];
		p--;
	}
	buf[p] = v;
}

/* Small k: the k + 1 smallest kept sorted, one comparison per value once
 * the list is full; else selection. */
static float kth_portable(const float *row, size_t n, size_t k, float *buf)
{
	if (k >= 32) {
		memcpy(buf, row, n * sizeof *buf);
		return select_kth(buf, n, k);
	}
	size_t have = 0;
	for (size_t j = 0; j < n; j++)
		keep_smallest(buf, &have, k, row[j]);
	return buf[k];
}

static const kern_t portable = {
	sqd_portable, add_portable, sub_portable, add_sqrt_portable,
	nearest_portable, kth_portable,
};

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_KERNELS 1
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline float hsum(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v),
			      _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
	return _mm_cvtss_f32(s);
}

#define SQD_STEP(a, j)                                                        \
	do {                                                                  \
		__m256 t = _mm256_sub_ps(_mm256_loadu_ps(q + (j)),            \
					 _mm256_loadu_ps(r + (j)));           \
		a = _mm256_fmadd_ps(t, t, a);                                 \
	} while (0)

/* Four 8-float sums per row (32 values a step) hide the FMA latency. */
AVX2 static void sqd_avx2(const float *restrict q, const float *restrict x,
			  size_t n, size_t d, float *restrict out)
{
	for (size_t i = 0; i < n; i++) {
		const float *restrict r = x + i * d;
		__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
		size_t j = 0;
		for (; j + 32 <= d; j += 32) {
			SQD_STEP(a0, j);
			SQD_STEP(a1, j + 8);
			SQD_STEP(a2, j + 16);
			SQD_STEP(a3, j + 24);
		}
		for (; j + 8 <= d; j += 8)
			SQD_STEP(a0, j);
		float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1),
					     _mm256_add_ps(a2, a3)));
		for (; j < d; j++)
			s += (q[j] - r[j]) * (q[j] - r[j]);
		out[i] = s;
	}
}

AVX2 static void add_avx2(double *restrict s, const float *restrict row,
			  size_t m)
{
	size_t i = 0;
	for (; i + 4 <= m; i += 4)
		_mm256_storeu_pd(s + i, _mm256_add_pd(_mm256_loadu_pd(s + i),
				 _mm256_cvtps_pd(_mm_loadu_ps(row + i))));
	for (; i < m; i++)
		s[i] += row[i];
}

AVX2 static void sub_avx2(double *restrict s, const float *restrict row,
			  size_t m)
{
	size_t i = 0;
	for (; i + 4 <= m; i += 4)
		_mm256_storeu_pd(s + i, _mm256_sub_pd(_mm256_loadu_pd(s + i),
				 _mm256_cvtps_pd(_mm_loadu_ps(row + i))));
	for (; i < m; i++)
		s[i] -= row[i];
}

AVX2 static void add_sqrt_avx2(double *restrict s, const float *restrict row,
			       size_t m)
{
	size_t i = 0;
	for (; i + 4 <= m; i += 4)
		_mm256_storeu_pd(s + i, _mm256_add_pd(_mm256_loadu_pd(s + i),
				 _mm256_cvtps_pd(_mm_sqrt_ps(
					 _mm_loadu_ps(row + i)))));
	for (; i < m; i++)
		s[i] += sqrtf(row[i]);
}

AVX2 static void nearest_avx2(const float *row, const double *sc, double iv,
			      double h, int c, double *bd, int *na, size_t m)
{
	const __m256d vi = _mm256_set1_pd(iv), vh = _mm256_set1_pd(h),
		      zero = _mm256_setzero_pd();
	const __m128i vc = _mm_set1_epi32(c);
	/* the four 64-bit lanes of a compare, as four 32-bit lanes */
	const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
	size_t i = 0;
	for (; i + 4 <= m; i += 4) {
		__m256d d;
		if (row)
			d = _mm256_cvtps_pd(_mm_loadu_ps(row + i));
		else
			d = _mm256_max_pd(_mm256_sub_pd(_mm256_mul_pd(
				_mm256_loadu_pd(sc + i), vi), vh), zero);
		__m256d b = _mm256_loadu_pd(bd + i);
		__m256d lt = c ? _mm256_cmp_pd(d, b, _CMP_LT_OQ)
			       : _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
		_mm256_storeu_pd(bd + i, _mm256_blendv_pd(b, d, lt));
		__m128i l32 = _mm256_castsi256_si128(
			_mm256_permutevar8x32_epi32(_mm256_castpd_si256(lt),
						    pick));
		__m128i old = _mm_loadu_si128((const __m128i *)(na + i));
		_mm_storeu_si128((__m128i *)(na + i),
				 _mm_blendv_epi8(old, vc, l32));
	}
	if (i < m)
		nearest_portable(row ? row + i : NULL, row ? NULL : sc + i, iv,
				 h, c, bd + i, na + i, m - i);
}

/* As kth_portable; blocks of 8 values none of which is below the k-th
 * smallest so far are skipped with one comparison. */
AVX2 static float kth_avx2(const float *row, size_t n, size_t k, float *buf)
{
	if (k >= 32)
		return kth_portable(row, n, k, buf);
	size_t have = 0, j = 0;
	for (; j < n && have < k + 1; j++)
		keep_smallest(buf, &have, k, row[j]);
	for (; j + 8 <= n; j += 8) {
		__m256 v = _mm256_loadu_ps(row + j);
		int lt = _mm256_movemask_ps(_mm256_cmp_ps(
			v, _mm256_set1_ps(buf[k]), _CMP_LT_OQ));
		while (lt) {
			int b = __builtin_ctz((unsigned)lt);
			keep_smallest(buf, &have, k, row[j + (size_t)b]);
			lt &= lt - 1;
		}
	}
	for (; j < n; j++)
		keep_smallest(buf, &have, k, row[j]);
	return buf[k];
}

static const kern_t avx2 = {
	sqd_avx2, add_avx2, sub_avx2, add_sqrt_avx2, nearest_avx2, kth_avx2,
};
#endif

static const kern_t *kernels(bool portable_only)
{
#ifdef HAVE_AVX2_KERNELS
	if (!portable_only && __builtin_cpu_supports("avx2") &&
	    __builtin_cpu_supports("fma"))
		return &avx2;
#endif
	(void)portable_only;
	return &portable;
}

void tlcm_cluster_sqdist(const float *q, const float *x, size_t n,
			 size_t dim, float *out, bool portable_only)
{
	kernels(portable_only)->sqd(q, x, n, dim, out);
}

static void sqdist_matrix(const kern_t *kr, const float *x, size_t n,
			  size_t dim, float *d2)
{
	for (size_t i = 0; i < n; i++) {
		float *row = d2 + i * n;
		row[i] = 0;
		if (i + 1 < n)
			kr->sqd(x + i * dim, x + (i + 1) * dim, n - i - 1, dim,
				row + i + 1);
		for (size_t j = i + 1; j < n; j++)
			d2[j * n + i] = row[j];
	}
}

void tlcm_cluster_sqdist_matrix(const float *x, size_t n, size_t dim,
				float *d2)
{
	sqdist_matrix(kernels(false), x, n, dim, d2);
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* ---- k-means++ on the squared distances -------------------------------- */

typedef struct {
	const float *sq; /* m × m squared distances */
	size_t m;
	double *s;       /* TLCM_CLUSTER_MAX_K × m: S(c, i) at s[c * m + i] */
	double *d2;      /* m: squared distance to the own centroid */
	int *na;         /* m: the assignment being computed */
	double *bd;      /* m: scratch */
	const kern_t *kr;
} km_t;

/* One seeding + Lloyd run; assign[m]. Returns the inertia. A centroid is
 * either one point (seeded, or taken by an empty cluster) or the mean of
 * its members. */
static double kmeans_once(const km_t *w, size_t k, uint64_t *rng,
			  int *assign)
{
	size_t m = w->m, pt[TLCM_CLUSTER_MAX_K], cnt[TLCM_CLUSTER_MAX_K];
	bool single[TLCM_CLUSTER_MAX_K];
	double inv[TLCM_CLUSTER_MAX_K] = {0}, half[TLCM_CLUSTER_MAX_K] = {0};
	const float *sq = w->sq;
	double *d2 = w->d2, *s = w->s, *bd = w->bd;
	int *na = w->na;
	/* k-means++: first centre uniform, then ∝ squared distance */
	size_t first = (size_t)(uniform(rng) * (double)m);
	pt[0] = first;
	for (size_t i = 0; i < m; i++)
		d2[i] = sq[first * m + i];
	for (size_t c = 1; c < k; c++) {
		double total = 0;
		for (size_t i = 0; i < m; i++)
			total += d2[i];
		size_t pick = 0;
		if (total > 0) {
			double r = uniform(rng) * total;
			for (pick = 0; pick + 1 < m; pick++) {
				r -= d2[pick];
				if (r < 0)
					break;
			}
		}
		pt[c] = pick;
		const float *row = sq + pick * m;
#pragma omp simd
		for (size_t i = 0; i < m; i++)
			d2[i] = row[i] < d2[i] ? (double)row[i] : d2[i];
	}
	for (size_t c = 0; c < k; c++)
		single[c] = true;
	for (size_t i = 0; i < m; i++)
		assign[i] = -1;
	memset(s, 0, k * m * sizeof *s);
	double inertia = 0;
	for (int it = 0; it < MAX_ITER; it++) {
		/* nearest centroid, the first among equals */
		for (size_t c = 0; c < k; c++)
			w->kr->nearest(single[c] ? sq + pt[c] * m : NULL,
				       s + c * m, inv[c], half[c], (int)c, bd,
				       na, m);
		bool changed = false;
		inertia = 0;
		for (size_t i = 0; i < m; i++) {
			changed |= assign[i] != na[i];
			d2[i] = bd[i];
			inertia += bd[i];
		}
		if (!changed)
			break;
		/* the per-cluster sums follow the moves */
		for (size_t i = 0; i < m; i++) {
			if (na[i] == assign[i])
				continue;
			if (assign[i] >= 0)
				w->kr->sub(s + (size_t)assign[i] * m,
					  sq + i * m, m);
			w->kr->add(s + (size_t)na[i] * m, sq + i * m, m);
			assign[i] = na[i];
		}
		/* new centroids; an empty cluster takes the farthest point */
		memset(cnt, 0, k * sizeof *cnt);
		double t[TLCM_CLUSTER_MAX_K] = {0};
		for (size_t i = 0; i < m; i++) {
			cnt[assign[i]]++;
			t[assign[i]] += s[(size_t)assign[i] * m + i];
		}
		for (size_t c = 0; c < k; c++) {
			if (cnt[c]) {
				single[c] = false;
				inv[c] = 1.0 / (double)cnt[c];
				half[c] = t[c] * inv[c] * inv[c] * 0.5;
				continue;
			}
			size_t far = 0;
			for (size_t i = 1; i < m; i++)
				if (d2[i] > d2[far])
					far = i;
			single[c] = true;
			pt[c] = far;
			d2[far] = 0;
		}
	}
	return inertia;
}

/* Mean silhouette of assign (k clusters) over the m points; sum is
 * k × m scratch. */
static double silhouette(const km_t *w, const int *assign, size_t k,
			 double *sum)
{
	size_t m = w->m, cnt[TLCM_CLUSTER_MAX_K] = {0};
	memset(sum, 0, k * m * sizeof *sum);
	for (size_t j = 0; j < m; j++) {
		cnt[assign[j]]++;
		w->kr->add_sqrt(sum + (size_t)assign[j] * m, w->sq + j * m, m);
	}
	double total = 0;
	for (size_t i = 0; i < m; i++) {
		size_t own = (size_t)assign[i];
		if (cnt[own] < 2)
			continue; /* s(i) = 0 */
		double a = sum[own * m + i] / (double)(cnt[own] - 1),
		       b = INFINITY;
		for (size_t c = 0; c < k; c++)
			if (c != own && cnt[c] &&
			    sum[c * m + i] / (double)cnt[c] < b)
				b = sum[c * m + i] / (double)cnt[c];
		double mx = a > b ? a : b;
		if (mx > 0 && isfinite(b))
			total += (b - a) / mx;
	}
	return m ? total / (double)m : 0;
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

/* Noise test on the n × n squared distances: noise[i] = true for
 * noise. */
static int find_noise(const kern_t *kr, const float *sq, size_t n,
		      const tlcm_cluster_opts_t *o, bool *noise)
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
	/* the diagonal's 0 is a smallest value of its row: the
	 * min_points-th nearest other point is the row's (min_points + 1)-th
	 * smallest */
	for (size_t i = 0; i < n; i++)
		kth[i] = sqrtf(kr->kth(sq + i * n, n, o->min_points, row));
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

static bool bad_opts(const tlcm_cluster_opts_t *o, size_t n)
{
	return !o || o->k_max < 1 || o->k_max > TLCM_CLUSTER_MAX_K ||
	       o->min_points < 1 || o->restarts < 1 ||
	       n > TLCM_CLUSTER_MAX_POINTS;
}

#define ROW(i) (idx ? idx[i] : (i))

/* The clustering of the points idx[0..n) of x whose n × n squared
 * distances are in sq (the caller's, changed here). */
static int cluster(const float *x, size_t dim, const size_t *idx, size_t n,
		   float *sq, const tlcm_cluster_opts_t *o,
		   tlcm_clustering_t *out)
{
	int rc = TLCM_ENOMEM;
	bool *noise = malloc(n * sizeof *noise);
	size_t *pt = malloc(n * sizeof *pt);
	int *best_a = malloc(n * sizeof *best_a), *a = malloc(n * sizeof *a);
	km_t w = {sq, 0, malloc(TLCM_CLUSTER_MAX_K * n * sizeof *w.s),
		  malloc(n * sizeof *w.d2), malloc(n * sizeof *w.na),
		  malloc(n * sizeof *w.bd), kernels(o->portable)};
	out->assign = malloc(n * sizeof *out->assign);
	if (!noise || !pt || !best_a || !a || !w.s || !w.d2 || !w.na ||
	    !w.bd || !out->assign)
		goto done;
	if ((rc = find_noise(w.kr, sq, n, o, noise)))
		goto done;
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (!noise[i])
			pt[m++] = i;
	/* the non-noise points' matrix, compacted in place (every value
	 * moves to an index no larger than its own, read in order) */
	if (m < n)
		for (size_t i = 0; i < m; i++)
			for (size_t j = 0; j < m; j++)
				sq[i * m + j] = sq[pt[i] * n + pt[j]];
	w.m = m;
	uint64_t rng = o->seed;
	size_t k = m ? 1 : 0;
	double best_s = -2;
	size_t kmax = o->k_max < m / 2 ? o->k_max : m / 2;
	for (size_t kk = 2; kk <= kmax; kk++) {
		double inert = INFINITY;
		for (unsigned r = 0; r < o->restarts; r++) {
			double in = kmeans_once(&w, kk, &rng, a);
			if (in < inert) {
				inert = in;
				memcpy(best_a, a, m * sizeof *a);
			}
		}
		double sil = silhouette(&w, best_a, kk, w.s);
		if (sil > best_s && sil >= o->min_silhouette) {
			best_s = sil;
			k = kk;
			for (size_t i = 0; i < m; i++)
				out->assign[pt[i]] = best_a[i];
		}
	}
	if (k <= 1) {
		best_s = 0;
		for (size_t i = 0; i < m; i++)
			out->assign[pt[i]] = 0;
	}
	for (size_t i = 0; i < n; i++)
		if (noise[i])
			out->assign[i] = -1;
	out->k = k;
	out->silhouette = best_s;
	out->noise = n - m;
	rc = TLCM_ENOMEM;
	out->centroids = calloc((k ? k : 1) * dim, sizeof *out->centroids);
	out->sizes = calloc(k ? k : 1, sizeof *out->sizes);
	out->dispersion = calloc(k ? k : 1, sizeof *out->dispersion);
	double *acc = calloc(dim, sizeof *acc);
	if (!out->centroids || !out->sizes || !out->dispersion || !acc) {
		free(acc);
		goto done;
	}
	/* centroids, sizes and dispersion from the final assignment and the
	 * coordinates (in double, then stored as float) */
	for (size_t c = 0; c < k; c++) {
		memset(acc, 0, dim * sizeof *acc);
		size_t cnt = 0;
		for (size_t i = 0; i < n; i++)
			if (out->assign[i] == (int)c) {
				const float *p = x + ROW(i) * dim;
				for (size_t j = 0; j < dim; j++)
					acc[j] += p[j];
				cnt++;
			}
		float *cc = out->centroids + c * dim;
		for (size_t j = 0; j < dim; j++)
			cc[j] = cnt ? (float)(acc[j] / (double)cnt) : 0;
		double ss = 0;
		for (size_t i = 0; i < n; i++)
			if (out->assign[i] == (int)c) {
				float d;
				w.kr->sqd(x + ROW(i) * dim, cc, 1, dim, &d);
				ss += d;
			}
		out->sizes[c] = cnt;
		out->dispersion[c] = cnt ? sqrt(ss / (double)cnt) : 0;
	}
	free(acc);
	rc = 0;
done:
	free(noise);
	free(pt);
	free(best_a);
	free(a);
	free(w.s);
	free(w.d2);
	free(w.na);
	free(w.bd);
	if (rc)
		tlcm_clustering_free(out);
	return rc;
}

int tlcm_cluster(const float *x, size_t n, size_t dim,
		 const tlcm_cluster_opts_t *o, tlcm_clustering_t *out)
{
	memset(out, 0, sizeof *out);
	if (bad_opts(o, n) || (n && (!x || !dim)))
		return TLCM_EINVAL;
	out->n = n;
	out->dim = dim;
	if (!n)
		return 0;
	float *sq = malloc(n * n * sizeof *sq);
	if (!sq)
		return TLCM_ENOMEM;
	sqdist_matrix(kernels(o->portable), x, n, dim, sq);
	int rc = cluster(x, dim, NULL, n, sq, o, out);
	free(sq);
	return rc;
}

int tlcm_cluster_d2(const float *x, size_t dim, const float *d2, size_t ld,
		    const size_t *idx, size_t n, const tlcm_cluster_opts_t *o,
		    tlcm_clustering_t *out)
{
	memset(out, 0, sizeof *out);
	if (bad_opts(o, n) || (n && (!x || !dim || !d2 || ld < n)))
		return TLCM_EINVAL;
	out->n = n;
	out->dim = dim;
	if (!n)
		return 0;
	float *sq = malloc(n * n * sizeof *sq);
	if (!sq)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const float *row = d2 + ROW(i) * ld;
		for (size_t j = 0; j < n; j++)
			sq[i * n + j] = row[ROW(j)];
	}
	int rc = cluster(x, dim, idx, n, sq, o, out);
	free(sq);
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
