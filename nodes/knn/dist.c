/* dist.c — distance kernels of the KNN index (see dist.h).
 *
 * The portable kernels are simple loops; this file is compiled with -O3
 * -fopenmp-simd, so `omp simd reduction` vectorises them for whatever the
 * target has (SSE2 on any x86-64, NEON on aarch64). On x86-64 the AVX2+FMA
 * kernels are compiled with a target attribute and chosen at run time with
 * __builtin_cpu_supports, so one binary runs everywhere. They keep four
 * 8-float sums per row (32 values per step) to hide the FMA latency and
 * fold them once per row; for 32 values, the PCA-reduced embeddings, a
 * variant with the query in registers folds four rows at once (the same
 * sums, bit for bit). Also here: the top-k selection's scans and the
 * double-precision sums of the typical neighbour distance.
 */
#include "nodes/knn/dist.h"

#include <math.h>

/* ---- portable ------------------------------------------------------------ */

static void l2_portable(const float *restrict q, const float *restrict x,
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

static void dot_portable(const float *restrict q, const float *restrict x,
			 size_t n, size_t d, float *restrict out)
{
	for (size_t i = 0; i < n; i++) {
		const float *restrict r = x + i * d;
		float s = 0;
#pragma omp simd reduction(+ : s)
		for (size_t j = 0; j < d; j++)
			s += q[j] * r[j];
		out[i] = s;
	}
}

static void l1_portable(const float *restrict q, const float *restrict x,
			size_t n, size_t d, float *restrict out)
{
	for (size_t i = 0; i < n; i++) {
		const float *restrict r = x + i * d;
		float s = 0;
#pragma omp simd reduction(+ : s)
		for (size_t j = 0; j < d; j++)
			s += fabsf(q[j] - r[j]);
		out[i] = s;
	}
}

static void dot_i8_portable(const float *restrict q, const int8_t *restrict c,
			    size_t n, size_t d, float *restrict out)
{
	for (size_t i = 0; i < n; i++) {
		const int8_t *restrict r = c + i * d;
		float s = 0;
#pragma omp simd reduction(+ : s)
		for (size_t j = 0; j < d; j++)
			s += q[j] * (float)r[j];
		out[i] = s;
	}
}

static void l1_i8_portable(const float *restrict q, const int8_t *restrict c,
			   const float *restrict scale, size_t n, size_t d,
			   float *restrict out)
{
	for (size_t i = 0; i < n; i++) {
		const int8_t *restrict r = c + i * d;
		float s = 0, sc = scale[i];
#pragma omp simd reduction(+ : s)
		for (size_t j = 0; j < d; j++)
			s += fabsf(q[j] - sc * (float)r[j]);
		out[i] = s;
	}
}

/* kth_bound (see dist.h). Lane l of chunk c holds the minimum of the S
 * values v[c * 8S + 8s + l], s < S: M minima of disjoint groups; after
 * k - 1 of the smallest are taken out, the next one is T. k groups have
 * their minimum <= T, so k values are. Minima commute, so the compiler
 * may vectorise the loops freely (`omp simd`). */
static inline __attribute__((always_inline)) float
kth_bound_body(const float *restrict v, size_t n, size_t k,
	       float *restrict m)
{
	size_t S = n >= 64 * k ? 16 : n >= 16 * k ? 4 : 0;
	if (!S || k > 16)
		return INFINITY;
	size_t chunks = n / (8 * S), M = 8 * chunks;
	if (M < k)
		return INFINITY;
	for (size_t c = 0; c < chunks; c++) {
		const float *restrict p = v + c * 8 * S;
		float *restrict out = m + 8 * c;
#pragma omp simd
		for (size_t l = 0; l < 8; l++) {
			float x = p[l];
			for (size_t s = 1; s < S; s++)
				x = p[8 * s + l] < x ? p[8 * s + l] : x;
			out[l] = x;
		}
	}
	for (size_t t = 0;; t++) {
		float best = INFINITY;
#pragma omp simd reduction(min : best)
		for (size_t i = 0; i < M; i++)
			best = m[i] < best ? m[i] : best;
		if (t + 1 == k)
			return best;
		size_t i = 0;
		while (m[i] != best)
			i++;
		m[i] = INFINITY;
	}
}

/* col_sums (see dist.h): eight independent sums side by side, each in
 * double over the values in order (no `omp simd`: a sum's order must
 * not change), so the compiler vectorises across the eight columns. */
static inline __attribute__((always_inline)) void
col_sums_body(int op, const float *restrict a, const float *restrict t,
	      size_t stride, size_t d, double *restrict s)
{
	double acc[8] = {0};
	switch (op) {
	case TLCM_KNN_SUM_SQ:
		for (size_t j = 0; j < d; j++, t += stride) {
			double x = a[j];
			for (int l = 0; l < 8; l++) {
				double e = x - t[l];
				acc[l] += e * e;
			}
		}
		break;
	case TLCM_KNN_SUM_DOT:
		for (size_t j = 0; j < d; j++, t += stride) {
			double x = a[j];
			for (int l = 0; l < 8; l++)
				acc[l] += x * t[l];
		}
		break;
	default:
		for (size_t j = 0; j < d; j++, t += stride) {
			double x = a[j];
			for (int l = 0; l < 8; l++)
				acc[l] += fabs(x - t[l]);
		}
		break;
	}
	for (int l = 0; l < 8; l++)
		s[l] = acc[l];
}

static void col_sums_portable(int op, const float *restrict a,
			      const float *restrict t, size_t stride,
			      size_t d, double *restrict s)
{
	col_sums_body(op, a, t, stride, d, s);
}

static float kth_bound_portable(const float *restrict v, size_t n, size_t k,
				float *restrict scratch)
{
	return kth_bound_body(v, n, k, scratch);
}

static size_t not_above_portable(const float *restrict v, size_t from,
				 size_t n, float bound)
{
	size_t i = from;
	while (i < n && v[i] > bound)
		i++;
	return i;
}

static const tlcm_knn_kernels_t portable = {
	"portable", l2_portable, dot_portable, l1_portable, dot_i8_portable,
	l1_i8_portable, not_above_portable, kth_bound_portable,
	col_sums_portable,
};

/* ---- AVX2 + FMA ------------------------------------------------------------ */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline float hsum(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v),
			      _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
	return _mm_cvtss_f32(s);
}

AVX2 static inline __m256 load_i8(const int8_t *p)
{
	__m128i b = _mm_loadl_epi64((const __m128i *)(const void *)p);
	return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

AVX2 static inline __m256 vabs(__m256 v)
{
	return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

/* One kernel body: STEP(acc, N, j) adds the terms of values j..j+7 of
 * row rN to acc, TAIL(j) gives the scalar term of value j of row r0,
 * FIRST(i) sets up row i as r0. */
#define ROWS(FIRST, STEP, TAIL)                                               \
	for (size_t i = 0; i < n; i++) {                                      \
		FIRST(i);                                                     \
		__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;   \
		size_t j = 0;                                                 \
		for (; j + 32 <= d; j += 32) {                                \
			STEP(a0, 0, j);                                       \
			STEP(a1, 0, j + 8);                                   \
			STEP(a2, 0, j + 16);                                  \
			STEP(a3, 0, j + 24);                                  \
		}                                                             \
		for (; j + 8 <= d; j += 8)                                    \
			STEP(a0, 0, j);                                       \
		float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1),           \
					     _mm256_add_ps(a2, a3)));         \
		for (; j < d; j++)                                            \
			s += TAIL(j);                                         \
		out[i] = s;                                                   \
	}

/* The sums of four rows at once, each exactly as hsum() folds it: lane
 * halves added (u = lo + hi), then (u0 + u2) + (u1 + u3). A few shuffles
 * per four rows instead of a shuffle chain and a scalar store per row. */
AVX2 static inline __m128 hsum4(__m256 v0, __m256 v1, __m256 v2, __m256 v3)
{
	__m256 u01 = _mm256_add_ps(_mm256_permute2f128_ps(v0, v1, 0x20),
				   _mm256_permute2f128_ps(v0, v1, 0x31));
	__m256 u23 = _mm256_add_ps(_mm256_permute2f128_ps(v2, v3, 0x20),
				   _mm256_permute2f128_ps(v2, v3, 0x31));
	/* low half: rows 0 and 2, high half: rows 1 and 3 */
	__m256 w = _mm256_add_ps(_mm256_shuffle_ps(u01, u23, 0x44),
				 _mm256_shuffle_ps(u01, u23, 0xee));
	__m256 e = _mm256_add_ps(_mm256_shuffle_ps(w, w, 0x88),
				 _mm256_shuffle_ps(w, w, 0xdd));
	return _mm_unpacklo_ps(_mm256_castps256_ps128(e),
			       _mm256_extractf128_ps(e, 1));
}

/* d = 32, the PCA-reduced embeddings, where a row is one step of four
 * sums and the per-row work around it (loop control, folding, a store)
 * cost as much as the arithmetic: the query stays in registers, two rows
 * go through the step together and four through hsum4(). Every sum is
 * the one ROWS computes, bit for bit (the same terms added in the same
 * order: a + 0 is a). FIRST(i) sets up rows i and i + 1 as r0 and r1. */
#define ROW32(STEP, N, v)                                                     \
	do {                                                                  \
		__m256 z = _mm256_setzero_ps(), b0 = z, b1 = z, b2 = z,       \
		       b3 = z;                                                \
		STEP(b0, N, 0);                                               \
		STEP(b1, N, 8);                                               \
		STEP(b2, N, 16);                                              \
		STEP(b3, N, 24);                                              \
		v = _mm256_add_ps(_mm256_add_ps(b0, b1),                      \
				  _mm256_add_ps(b2, b3));                     \
	} while (0)

#define ROWS32(FIRST, STEP)                                                   \
	size_t i = 0;                                                         \
	for (; i + 4 <= n; i += 4) {                                          \
		__m256 v0, v1, v2, v3;                                        \
		{                                                             \
			FIRST(i);                                             \
			ROW32(STEP, 0, v0);                                   \
			ROW32(STEP, 1, v1);                                   \
		}                                                             \
		{                                                             \
			FIRST(i + 2);                                         \
			ROW32(STEP, 0, v2);                                   \
			ROW32(STEP, 1, v3);                                   \
		}                                                             \
		_mm_storeu_ps(out + i, hsum4(v0, v1, v2, v3));                \
	}                                                                     \
	for (; i < n; i++) {                                                  \
		__m256 v0;                                                    \
		FIRST(i);                                                     \
		ROW32(STEP, 0, v0);                                           \
		out[i] = hsum(v0);                                            \
	}

/* The query q's values j..j+7, from registers when d = 32. */
#define QV(j) (d32 ? qv[(j) / 8] : _mm256_loadu_ps(q + (j)))

#define Q32                                                                   \
	const bool d32 = d == 32;                                             \
	__m256 qv[4];                                                         \
	if (d32)                                                              \
		for (int b = 0; b < 4; b++)                                   \
			qv[b] = _mm256_loadu_ps(q + 8 * b)

/* l2: sum (q - x)^2 */
#define X_FIRST(i)                                                            \
	const float *r0 = x + (i) * d, *r1 = r0 + d;                          \
	(void)r1
#define L2_STEP(a, N, j)                                                      \
	do {                                                                  \
		__m256 t = _mm256_sub_ps(QV(j), _mm256_loadu_ps(r##N + (j))); \
		a = _mm256_fmadd_ps(t, t, a);                                 \
	} while (0)
#define L2_TAIL(j) ((q[j] - r0[j]) * (q[j] - r0[j]))

AVX2 static void l2_avx2(const float *restrict q, const float *restrict x,
			 size_t n, size_t d, float *restrict out)
{
	Q32;
	if (d32) {
		ROWS32(X_FIRST, L2_STEP)
	} else {
		ROWS(X_FIRST, L2_STEP, L2_TAIL)
	}
}

/* dot: sum q * x */
#define DOT_STEP(a, N, j)                                                     \
	a = _mm256_fmadd_ps(QV(j), _mm256_loadu_ps(r##N + (j)), a)
#define DOT_TAIL(j) (q[j] * r0[j])

AVX2 static void dot_avx2(const float *restrict q, const float *restrict x,
			  size_t n, size_t d, float *restrict out)
{
	Q32;
	if (d32) {
		ROWS32(X_FIRST, DOT_STEP)
	} else {
		ROWS(X_FIRST, DOT_STEP, DOT_TAIL)
	}
}

/* l1: sum |q - x| */
#define L1_STEP(a, N, j)                                                      \
	a = _mm256_add_ps(a, vabs(_mm256_sub_ps(QV(j),                        \
						_mm256_loadu_ps(r##N + (j)))))
#define L1_TAIL(j) fabsf(q[j] - r0[j])

AVX2 static void l1_avx2(const float *restrict q, const float *restrict x,
			 size_t n, size_t d, float *restrict out)
{
	Q32;
	if (d32) {
		ROWS32(X_FIRST, L1_STEP)
	} else {
		ROWS(X_FIRST, L1_STEP, L1_TAIL)
	}
}

/* dot_i8: sum q * c */
#define C_FIRST(i)                                                            \
	const int8_t *r0 = c + (i) * d, *r1 = r0 + d;                         \
	(void)r1
#define DOT8_STEP(a, N, j)                                                    \
	a = _mm256_fmadd_ps(QV(j), load_i8(r##N + (j)), a)
#define DOT8_TAIL(j) (q[j] * (float)r0[j])

AVX2 static void dot_i8_avx2(const float *restrict q, const int8_t *restrict c,
			     size_t n, size_t d, float *restrict out)
{
	Q32;
	if (d32) {
		ROWS32(C_FIRST, DOT8_STEP)
	} else {
		ROWS(C_FIRST, DOT8_STEP, DOT8_TAIL)
	}
}

/* l1_i8: sum |q - scale * c| */
#define L18_FIRST(i)                                                          \
	C_FIRST(i);                                                           \
	float sc = scale[i];                                                  \
	__m256 vs0 = _mm256_set1_ps(sc),                                      \
	       vs1 = _mm256_set1_ps((i) + 1 < n ? scale[(i) + 1] : 0);        \
	(void)vs1
#define L18_STEP(a, N, j)                                                     \
	a = _mm256_add_ps(a, vabs(_mm256_fnmadd_ps(vs##N, load_i8(r##N + (j)), \
						   QV(j))))
#define L18_TAIL(j) fabsf(q[j] - sc * (float)r0[j])

AVX2 static void l1_i8_avx2(const float *restrict q, const int8_t *restrict c,
			    const float *restrict scale, size_t n, size_t d,
			    float *restrict out)
{
	Q32;
	if (d32) {
		ROWS32(L18_FIRST, L18_STEP)
	} else {
		ROWS(L18_FIRST, L18_STEP, L18_TAIL)
	}
}

/* ---- not_above: the first candidate of the top-k selection */

AVX2 static size_t not_above_avx2(const float *restrict v, size_t from,
				  size_t n, float bound)
{
	__m256 b = _mm256_set1_ps(bound);
	size_t i = from;
	for (; i + 32 <= n; i += 32) {
		__m256 m0 = _mm256_cmp_ps(_mm256_loadu_ps(v + i), b,
					  _CMP_NGT_UQ);
		__m256 m1 = _mm256_cmp_ps(_mm256_loadu_ps(v + i + 8), b,
					  _CMP_NGT_UQ);
		__m256 m2 = _mm256_cmp_ps(_mm256_loadu_ps(v + i + 16), b,
					  _CMP_NGT_UQ);
		__m256 m3 = _mm256_cmp_ps(_mm256_loadu_ps(v + i + 24), b,
					  _CMP_NGT_UQ);
		if (_mm256_movemask_ps(_mm256_or_ps(_mm256_or_ps(m0, m1),
						    _mm256_or_ps(m2, m3))))
			break;
	}
	for (; i + 8 <= n; i += 8) {
		int m = _mm256_movemask_ps(_mm256_cmp_ps(
			_mm256_loadu_ps(v + i), b, _CMP_NGT_UQ));
		if (m)
			return i + (size_t)__builtin_ctz((unsigned)m);
	}
	for (; i < n && v[i] > bound; i++)
		;
	return i;
}

AVX2 static float kth_bound_avx2(const float *restrict v, size_t n, size_t k,
				 float *restrict scratch)
{
	return kth_bound_body(v, n, k, scratch);
}

/* AVX without FMA: a fused multiply-add would round e * e + s once where
 * the plain C rounds twice (x86-64's baseline has no FMA). */
__attribute__((target("avx"))) static void
col_sums_avx(int op, const float *restrict a, const float *restrict t,
	     size_t stride, size_t d, double *restrict s)
{
	col_sums_body(op, a, t, stride, d, s);
}

static const tlcm_knn_kernels_t avx2 = {
	"avx2", l2_avx2, dot_avx2, l1_avx2, dot_i8_avx2, l1_i8_avx2,
	not_above_avx2, kth_bound_avx2, col_sums_avx,
};

static bool have_avx2(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

const tlcm_knn_kernels_t *tlcm_knn_kernels(bool want_portable)
{
#ifdef AVX2
	if (!want_portable && have_avx2())
		return &avx2;
#endif
	(void)want_portable;
	return &portable;
}
