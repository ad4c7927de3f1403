/* ref_ops.h — a plain-C reference implementation of every model op, for
 * tests only (the product runs models on XNNPACK, nodes/features/xnn.h).
 *
 * Straightforward loops in double precision accumulation over NHWC
 * tensors, one frame at a time, written from the op definitions in
 * schemas/model.fbs and docs/models.md: zero padding for convolutions,
 * average pooling that divides by the number of in-bounds elements
 * (padding excluded, as TFLite and XNNPACK do), max pooling over
 * in-bounds elements, per-channel broadcasting of Add/Multiply's second
 * input, softmax over the last dimension, fused activations applied last.
 */
#ifndef TLCM_TEST_REF_OPS_H
#define TLCM_TEST_REF_OPS_H

#include <stddef.h>

#include "nodes/features/model.h"

/* Run the (validated) model on n frames: in holds n input tensors back to
 * back; outs[k] receives n tensors of model output k. 0 or TLCM_ENOMEM. */
int tlcm_ref_run(const tlcm_model_t *m, size_t n, const float *in,
		 float **outs);

/* Run one op of m on one frame: in[k] are the op's input tensors' values
 * (NULL for an absent bias), out the output tensor's. */
void tlcm_ref_op(const tlcm_model_t *m, const tlcm_op_t *o,
		 const float *const *in, float *out);

#endif
