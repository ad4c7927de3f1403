/* model_build.h — writing .tlm models from C in tests (and benchmarks).
 *
 * Collect tensors and ops, then tlcm_mb_finish() writes the FlatBuffer
 * with the generated builders (schemas/model.fbs). Nothing is checked
 * here: tests build bad models on purpose and let the loader judge them.
 *
 *   tlcm_mb_t *b = tlcm_mb_new("tiny");
 *   int x = tlcm_mb_tensor(b, "x", (int32_t[]){1, 8, 8, 3}, 4, NULL);
 *   int y = tlcm_mb_tensor(b, "embedding", (int32_t[]){1, 3}, 2, NULL);
 *   tlcm_op_t op = tlcm_mb_op(tlcm_OpType_GlobalAveragePool, x, -1, -1, y);
 *   tlcm_mb_add_op(b, &op);
 *   tlcm_mb_io(b, x, &y, 1);
 *   size_t len; void *tlm = tlcm_mb_finish(b, &len);   (free() it)
 */
#ifndef TLCM_TEST_MODEL_BUILD_H
#define TLCM_TEST_MODEL_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "nodes/features/model.h"

typedef struct tlcm_mb tlcm_mb_t;

tlcm_mb_t *tlcm_mb_new(const char *name);
/* A tensor; data (copied) NULL for activations. Returns its index. */
int tlcm_mb_tensor(tlcm_mb_t *b, const char *name, const int32_t *shape,
		   int rank, const float *data);
/* The same with ndata floats of data, whatever the shape says (bad files);
 * rank up to 8. */
int tlcm_mb_tensor_n(tlcm_mb_t *b, const char *name, const int32_t *shape,
		     int rank, const float *data, size_t ndata);
/* An op with the schema's defaults (stride/dilation/depth multiplier 1),
 * inputs a, w, bias (-1: none; trailing -1s are left out except the bias
 * of weighted ops) and output y. */
tlcm_op_t tlcm_mb_op(tlcm_OpType_enum_t type, int a, int w, int bias, int y);
void tlcm_mb_add_op(tlcm_mb_t *b, const tlcm_op_t *op);
void tlcm_mb_io(tlcm_mb_t *b, int input, const int *outputs, size_t n);
void tlcm_mb_prep(tlcm_mb_t *b, float scale, const float *mean, size_t nmean,
		  const float *std, size_t nstd);
/* The .tlm bytes (malloc'd) and frees b; NULL on a builder error. */
void *tlcm_mb_finish(tlcm_mb_t *b, size_t *len);

#endif
