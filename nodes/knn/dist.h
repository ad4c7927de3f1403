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
 *
 * The AVX2 kernels give every row the same sum whatever n and d are (the
 * folding order of a row's partial sums does not depend on its
 * neighbours), so a row's distance does not change when rows are added.
 *
 * The top-k selection's helpers. kth_bound(v, n, k, scratch) is a value
 * T with at least k of v[0..n) not above it, found cheaply and without
 * branches that depend on the data: the k-th smallest of the minima of
 * n / 4 or n / 16 disjoint groups (so few more than k values are <= T),
 * or INFINITY when n < 16 k or k > 16; scratch holds n / 4 floats. v
 * must not hold NaN. not_above(v, from, n, bound) is the first i in
 * [from, n) whose v[i] is not above bound (v[i] <= bound, or NaN), or n;
 * AVX2 compares 32 values per step.
 *
 * col_sums(op, a, t, stride, d, s) serves the typical neighbour distance
 * (index.h): s[l] for the eight columns t[j * stride + l] (l < 8) of a
 * table stored value-major, summed in double value by value (j = 0, 1,
 * ...), each exactly as a plain scalar loop sums it:
 *   TLCM_KNN_SUM_SQ   sum (a[j] - t)^2
 *   TLCM_KNN_SUM_DOT  sum a[j] * t
 *   TLCM_KNN_SUM_ABS  sum |a[j] - t|
 */
#ifndef TLCM_KNN_DIST_H
#define TLCM_KNN_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { TLCM_KNN_SUM_SQ, TLCM_KNN_SUM_DOT, TLCM_KNN_SUM_ABS };

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
	size_t (*not_above)(const float *v, size_t from, size_t n,
			    float bound);
	float (*kth_bound)(const float *v, size_t n, size_t k,
			   float *scratch);
	void (*col_sums)(int op, const float *a, const float *t,
			 size_t stride, size_t d, double *s);
} tlcm_knn_kernels_t;

/* The fastest kernels this CPU runs, or the portable ones. */
const tlcm_knn_kernels_t *tlcm_knn_kernels(bool portable);

#endif
