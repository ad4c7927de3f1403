/* dist.h — the KNN index's distance kernels: one query against n stored
 * rows (row-major, `d` values per row), one result per row in out[0..n).
 *
 * Two implementations with the same results up to float rounding:
 * "portable", plain C loops the compiler vectorises (dist.c is built with
 * -O3 -fopenmp-simd; `omp simd` lets it reorder the sums), and on x86-64
 * "avx2", intrinsics for AVX2+FMA picked at run time when the CPU has them
 * (8 floats per instruction, four independent sums per row).
 *
 *   l2     sum (q - x)^2              (squared Euclidean)
 *   dot    sum q * x                  (cosine and int8 Euclidean)
 *   l1     sum |q - x|                (Manhattan)
 *   dot_i8 sum q * c                  (int8 codes c)
 *   l1_i8  sum |q - scale[i] * c|     (int8 codes, per-row scale)
 */
#ifndef TLCM_KNN_DIST_H
#define TLCM_KNN_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tlcm_knn_kernels {
	const char *name; /* "avx2" or "portable" */
	void (*l2)(const float *q, const float *x, size_t n, size_t d,
		   float *out);
	void (*dot)(const float *q, const float *x, size_t n, size_t d,
		    float *out);
	void (*l1)(const float *q, const float *x, size_t n, size_t d,
		   float *out);
	void (*dot_i8)(const float *q, const int8_t *c, size_t n, size_t d,
		       float *out);
	void (*l1_i8)(const float *q, const int8_t *c, const float *scale,
		      size_t n, size_t d, float *out);
} tlcm_knn_kernels_t;

/* The fastest kernels this CPU runs, or the portable ones. */
const tlcm_knn_kernels_t *tlcm_knn_kernels(bool portable);

#endif
