/* dist.c — distance kernels of the KNN index (see dist.h).
 *
 * The portable kernels are simple loops; this file is compiled with -O3
 * -fopenmp-simd, so `omp simd reduction` vectorises them for whatever the
 * target has (SSE2 on any x86-64, NEON on aarch64). On x86-64 the AVX2+FMA
 * kernels are compiled with a target attribute and chosen at run time with
 * __builtin_cpu_supports, so one binary runs everywhere. They keep four
 * 8-float sums per row (32 values per step) to hide the FMA latency and
 * fold them once per row.
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

static const tlcm_knn_kernels_t portable = {
	"portable", l2_portable, dot_portable, l1_portable, dot_i8_portable,
	l1_i8_portable,
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

/* One kernel body: STEP(acc, j) adds the terms of values j..j+7 to acc,
 * TAIL(j) gives the scalar term of value j, FIRST sets up per-row state. */
#define ROWS(FIRST, STEP, TAIL)                                               \
	for (size_t i = 0; i < n; i++) {                                      \
		FIRST;                                                        \
		__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;   \
		size_t j = 0;                                                 \
		for (; j + 32 <= d; j += 32) {                                \
			STEP(a0, j);                                          \
			STEP(a1, j + 8);                                      \
			STEP(a2, j + 16);                                     \
			STEP(a3, j + 24);                                     \
		}                                                             \
		for (; j + 8 <= d; j += 8)                                    \
			STEP(a0, j);                                          \
		float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1),           \
					     _mm256_add_ps(a2, a3)));         \
		for (; j < d; j++)                                            \
			s += TAIL(j);                                         \
		out[i] = s;                                                   \
	}

AVX2 static void l2_avx2(const float *restrict q, const float *restrict x,
			 size_t n, size_t d, float *restrict out)
{
#define L2_FIRST const float *r = x + i * d
#define L2_STEP(a, j)                                                         \
	do {                                                                  \
		__m256 t = _mm256_sub_ps(_mm256_loadu_ps(q + (j)),            \
					 _mm256_loadu_ps(r + (j)));           \
		a = _mm256_fmadd_ps(t, t, a);                                 \
	} while (0)
#define L2_TAIL(j) ((q[j] - r[j]) * (q[j] - r[j]))
	ROWS(L2_FIRST, L2_STEP, L2_TAIL)
}

AVX2 static void dot_avx2(const float *restrict q, const float *restrict x,
			  size_t n, size_t d, float *restrict out)
{
#define DOT_STEP(a, j)                                                        \
	a = _mm256_fmadd_ps(_mm256_loadu_ps(q + (j)),                         \
			    _mm256_loadu_ps(r + (j)), a)
#define DOT_TAIL(j) (q[j] * r[j])
	ROWS(L2_FIRST, DOT_STEP, DOT_TAIL)
}

AVX2 static void l1_avx2(const float *restrict q, const float *restrict x,
			 size_t n, size_t d, float *restrict out)
{
#define L1_STEP(a, j)                                                         \
	a = _mm256_add_ps(a, vabs(_mm256_sub_ps(_mm256_loadu_ps(q + (j)),     \
						_mm256_loadu_ps(r + (j)))))
#define L1_TAIL(j) fabsf(q[j] - r[j])
	ROWS(L2_FIRST, L1_STEP, L1_TAIL)
}

AVX2 static void dot_i8_avx2(const float *restrict q, const int8_t *restrict c,
			     size_t n, size_t d, float *restrict out)
{
#define I8_FIRST const int8_t *r = c + i * d
#define DOT8_STEP(a, j)                                                       \
	a = _mm256_fmadd_ps(_mm256_loadu_ps(q + (j)), load_i8(r + (j)), a)
#define DOT8_TAIL(j) (q[j] * (float)r[j])
	ROWS(I8_FIRST, DOT8_STEP, DOT8_TAIL)
}

AVX2 static void l1_i8_avx2(const float *restrict q, const int8_t *restrict c,
			    const float *restrict scale, size_t n, size_t d,
			    float *restrict out)
{
#define L18_FIRST                                                             \
	const int8_t *r = c + i * d;                                          \
	float sc = scale[i];                                                  \
	__m256 vs = _mm256_set1_ps(sc)
#define L18_STEP(a, j)                                                        \
	a = _mm256_add_ps(a, vabs(_mm256_fnmadd_ps(vs, load_i8(r + (j)),      \
						   _mm256_loadu_ps(q + (j)))))
#define L18_TAIL(j) fabsf(q[j] - sc * (float)r[j])
	ROWS(L18_FIRST, L18_STEP, L18_TAIL)
}

static const tlcm_knn_kernels_t avx2 = {
	"avx2", l2_avx2, dot_avx2, l1_avx2, dot_i8_avx2, l1_i8_avx2,
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
