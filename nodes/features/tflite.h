/* tflite.h — import of float32 TensorFlow Lite models into the .tlm format.
 *
 * A .tflite file is a FlatBuffer (schemas/tflite.fbs, identifier "TFL3").
 * tlcm_tflite_to_tlm() verifies it, maps each supported builtin operator to
 * a schemas/model.fbs op (SAME/VALID padding resolved to explicit pads,
 * fused activations kept, batch dimension fixed to 1) and writes .tlm
 * bytes. The model loader (nodes/features/model.c) calls it for any buffer
 * whose identifier at offset 4 is "TFL3".
 *
 * Errors: TLCM_EBADMSG (buffer fails verification), TLCM_ENOTSUP
 * (unsupported operator, custom op, quantized or non-float tensors,
 * several subgraphs), TLCM_EINVAL (inconsistent shapes or buffers),
 * TLCM_ENOMEM. `why` then names the operator (builtin name and index) or
 * the tensor and what was expected.
 */
#ifndef TLCM_FEATURES_TFLITE_H
#define TLCM_FEATURES_TFLITE_H

#include <stddef.h>

/* Convert a float32 .tflite buffer to .tlm bytes (malloc'd, *tlm).
 * Errors name the operator (builtin name and index) or tensor. */
int tlcm_tflite_to_tlm(const void *tfl, size_t len, void **tlm,
                       size_t *tlm_len, char *why, size_t cap);

#endif
