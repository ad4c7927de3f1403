/* scaler_pca.h — StandardScaler + PCA projection (schemas/scaler_pca.fbs).
 *
 * The parameters tools/train-fmnist fits on the training embeddings:
 *     z = ((x - mean) / scale - pca_mean) . components^T
 * x has `dim` values, z has `k`. tlcm_scaler_pca_load() verifies a .tspc
 * buffer (FlatBuffers verifier, then every length, 0 < k <= dim, finite
 * values, scale > 0) and folds the parameters into one affine map in
 * double precision, z = W x - c with W[j][i] = components[j][i] / scale[i]
 * and c[j] = sum_i components[j][i] * (mean[i] / scale[i] + pca_mean[i]),
 * so the buffer may be freed and a frame costs k*dim multiply-adds. W is
 * kept transposed (dim rows of the k outputs' weights, padded to kp, a
 * multiple of 4, with zeros): a frame's x[i] then scales one contiguous
 * row into k independent sums side by side in SIMD registers (AVX when
 * the CPU has it, else SSE2 or NEON), each z[j] still summed in double
 * over i in order, exactly as the plain loop sums it. The node
 * transform.scaler_pca (scaler_pca.c) applies it to FEAT messages.
 */
#ifndef TLCM_SCALER_PCA_H
#define TLCM_SCALER_PCA_H

#include <stddef.h>
#include <stdint.h>

#include "engine/node.h"

/* The node type (registered in nodes/registry.c). */
extern const tlcm_node_type_t tlcm_node_scaler_pca;

typedef struct tlcm_scaler_pca {
	uint32_t dim, k;
	uint32_t kp; /* k rounded up to a multiple of 4 */
	double *w;   /* W^T: dim rows of kp values (32-byte aligned) */
	double *c;   /* kp values (0 past k) */
	void (*kernel)(const struct tlcm_scaler_pca *p, const float *x,
		       float *z); /* AVX or not, picked at load */
} tlcm_scaler_pca_t;

/* Verify buf[0..len) and set up p (owned by the caller; free it with
 * tlcm_scaler_pca_free). On error returns TLCM_EBADMSG (or TLCM_ENOMEM),
 * leaves p empty and writes into why a message starting with origin (e.g.
 * the file name) that names the field at fault and what was expected. */
int tlcm_scaler_pca_load(tlcm_scaler_pca_t *p, const void *buf, size_t len,
			 const char *origin, char *why, size_t cap);
/* Read and load a .tspc file (at most 256 MiB). */
int tlcm_scaler_pca_load_file(tlcm_scaler_pca_t *p, const char *path,
			      char *why, size_t cap);
void tlcm_scaler_pca_free(tlcm_scaler_pca_t *p);

/* z[0..k) from x[0..dim), computed in double, rounded once to float. */
void tlcm_scaler_pca_apply(const tlcm_scaler_pca_t *p, const float *x,
			   float *z);
/* Use the portable kernel (two doubles per vector) even when the CPU has
 * AVX: the same results; for tests. */
void tlcm_scaler_pca_use_portable(tlcm_scaler_pca_t *p);

#endif
