/* model.h — loading and validating TinyLCM model files (.tlm).
 *
 * A .tlm file (schemas/model.fbs, identifier "TLMD") is a small graph of
 * float32 operators over named tensors. tlcm_model_load() reads a file (or
 * converts a .tflite one through nodes/features/tflite.h), runs the
 * FlatBuffers verifier, then checks the model as a whole before anything
 * runs it: tensor indices in range, names unique, shapes positive and of
 * rank 1..4, constant data as long as its shape, exactly one input,
 * outputs that exist, no tensor read before an op produces it, and for
 * every op the number and kind of inputs and the output shape inferred
 * from its type, inputs and parameters. Every error names the tensor or
 * op (index, type, name) and what was expected, prefixed by the origin
 * (the file name).
 *
 * The result is a plain, read-only description (tlcm_model_t) that points
 * into the model's own copy of the file: constant data stays valid until
 * tlcm_model_free(), so runtimes built from the model (nodes/features/
 * xnn.h) must be freed first.
 *
 * Preprocessing (tlcm_prep_t) turns 8-bit pixels into the model's input:
 * x = (pixel * scale - mean[c]) / std[c], converting gray to RGB
 * (replicate) or RGB to gray (ITU-R BT.601 luma) when the model wants the
 * other.
 */
#ifndef TLCM_FEATURES_MODEL_H
#define TLCM_FEATURES_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "fb/model_fb.h"

#define TLCM_MODEL_MAX_RANK 4
#define TLCM_MODEL_MAX_IN 3 /* op inputs: input, filter, bias */

typedef struct tlcm_tensor {
	const char *name;   /* unique in the model */
	int rank;           /* 1..TLCM_MODEL_MAX_RANK */
	int32_t shape[TLCM_MODEL_MAX_RANK];
	size_t size;        /* elements (product of the shape) */
	const float *data;  /* constant values, or NULL for activations */
	int producer;       /* index of the op writing it; -1: the model's
			       input, a constant, or unused */
} tlcm_tensor_t;

typedef struct tlcm_op {
	tlcm_OpType_enum_t type;
	int nin;                       /* inputs present in the file */
	int in[TLCM_MODEL_MAX_IN];     /* tensor indices; -1: absent bias */
	int out;                       /* the one output tensor */
	int kernel_h, kernel_w;        /* pools */
	int stride_h, stride_w;
	int dilation_h, dilation_w;
	int pad_top, pad_bottom, pad_left, pad_right;
	int depth_multiplier;
	tlcm_Activation_enum_t activation;
	float clamp_min, clamp_max;    /* Clamp */
	float pad_value;               /* Pad */
} tlcm_op_t;

typedef struct tlcm_model {
	char *origin;          /* file name (or the caller's label) */
	const char *name;      /* from the file; "" when absent */
	const char *description;
	tlcm_tensor_t *tensors;
	size_t ntensors;
	tlcm_op_t *ops;        /* in execution order */
	size_t nops;
	int input;             /* tensor index of the one input */
	int *outputs;          /* tensor indices of the named outputs */
	size_t noutputs;
	float input_scale;
	const float *input_mean; /* NULL or nmean (1 or channels) values */
	size_t nmean;
	const float *input_std;
	size_t nstd;
	void *buf;             /* the verified .tlm bytes (owned) */
	size_t len;
} tlcm_model_t;

/* Load a .tlm file, or a .tflite one (identifier "TFL3" at offset 4)
 * converted with tlcm_tflite_to_tlm(). 0, or a negative TLCM_E* with why
 * naming the file and the problem: TLCM_ENOENT/TLCM_EIO (file),
 * TLCM_EBADMSG (not a valid model FlatBuffer), TLCM_EINVAL (inconsistent
 * model), TLCM_ENOTSUP (from the .tflite importer), TLCM_ENOMEM. */
int tlcm_model_load(tlcm_model_t **out, const char *path, char *why,
		    size_t cap);
/* The same from bytes in memory (copied; buf may be freed afterwards);
 * origin names the buffer in messages. */
int tlcm_model_from_buffer(tlcm_model_t **out, const void *buf, size_t len,
			   const char *origin, char *why, size_t cap);
void tlcm_model_free(tlcm_model_t *m);

/* Index of the tensor called name, or -1. */
int tlcm_model_find(const tlcm_model_t *m, const char *name);
/* Index into m->outputs of the output called name, or -1. */
int tlcm_model_output_index(const tlcm_model_t *m, const char *name);
/* Number of constant floats the ops use (weights and biases). */
size_t tlcm_model_param_count(const tlcm_model_t *m);
/* "op 3 (Conv2D -> 'conv2')": how messages name an op (into buf). */
const char *tlcm_model_op_label(const tlcm_model_t *m, size_t op, char *buf,
				size_t cap);
/* "[1,28,28,1]" (into buf). */
const char *tlcm_shape_str(const int32_t *shape, int rank, char *buf,
			   size_t cap);

/* ---- preprocessing ------------------------------------------------------ */

#define TLCM_PREP_MAX_CHANNELS 3

typedef struct tlcm_prep {
	unsigned width, height;    /* the model input's W and H */
	unsigned channels;         /* the model input's C: 1 or 3 */
	float scale;
	float mean[TLCM_PREP_MAX_CHANNELS];
	float std[TLCM_PREP_MAX_CHANNELS];
} tlcm_prep_t;

/* Preprocessing for m's input with the model's scale/mean/std. The input
 * must be NHWC [1,H,W,C] with C 1 or 3: TLCM_EINVAL (and why) otherwise. */
int tlcm_prep_init(tlcm_prep_t *p, const tlcm_model_t *m, char *why,
		   size_t cap);
/* Override mean or std with n values (1, or one per channel; std values
 * non-zero): TLCM_EINVAL otherwise. */
int tlcm_prep_set_mean(tlcm_prep_t *p, const float *v, size_t n, char *why,
		       size_t cap);
int tlcm_prep_set_std(tlcm_prep_t *p, const float *v, size_t n, char *why,
		      size_t cap);
/* Convert width*height pixels of src_channels (1 gray, 3 RGB) bytes each
 * into the model input out (width*height*p->channels floats). The caller
 * checked the size. */
void tlcm_prep_pixels(const tlcm_prep_t *p, const uint8_t *px,
		      unsigned src_channels, float *out);

#endif
