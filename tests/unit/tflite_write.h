/* tflite_write.h — a small .tflite writer for tests (schemas/tflite.fbs).
 *
 * Tests describe a model tensor by tensor and operator by operator, then
 * tfw_finish() lays it out the way TensorFlow Lite's converter does:
 * schema version 3, buffer 0 the empty sentinel, one buffer per constant,
 * operator codes de-duplicated with the code in both the byte and the int
 * field, builtin options built from a tfw_opts_t. Knobs in tfw_t and
 * tfw_opts_t write deliberately broken files for bad-input tests.
 *
 *   tfw_t *w = tfw_new();
 *   int x = tfw_tensor(w, "input", TFW_F32, (int32_t[]){1, 8, 8, 3}, 4,
 *                      NULL, 0);
 *   ...
 *   tfw_op(w, tflite_BuiltinOperator_CONV_2D, (int[]){x, f, b}, 3, y, &opt);
 *   tfw_io(w, x, (int[]){y}, 1);
 *   void *buf; size_t len;
 *   int rc = tfw_finish(w, &buf, &len);   // malloc'd; tfw_free(w) after
 */
#ifndef TLCM_TEST_TFLITE_WRITE_H
#define TLCM_TEST_TFLITE_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb/tflite_fb.h"

#define TFW_F32 tflite_TensorType_FLOAT32
#define TFW_MAX_IN 4

/* Builtin options; zero-initialised fields give the schema's defaults
 * except where noted. */
typedef struct tfw_opts {
	tflite_Padding_enum_t padding;
	int stride_w, stride_h;         /* conv, depthwise, pools */
	int filter_w, filter_h;         /* pools */
	int dilation_w, dilation_h;     /* 0 writes nothing (default 1) */
	int depth_multiplier;           /* depthwise */
	tflite_ActivationFunctionType_enum_t activation;
	float beta;                     /* softmax; 0 writes 1.0 */
	bool keep_dims;                 /* mean; also FC keep_num_dims */
	const int32_t *ints;            /* reshape new_shape, squeeze dims */
	int nints;
	/* bad-input knobs */
	bool no_options;                /* write no builtin options */
	tflite_BuiltinOptions_union_type_t options_type; /* force a type */
} tfw_opts_t;

typedef struct tfw tfw_t;

tfw_t *tfw_new(void);
void tfw_free(tfw_t *w);

/* A tensor; returns its index (or -1 when out of memory). data (bytes
 * long) makes it a constant; NULL an activation. rank 0 is a scalar. */
int tfw_tensor(tfw_t *w, const char *name, tflite_TensorType_enum_t type,
	       const int32_t *shape, int rank, const void *data, size_t bytes);
/* Shorthands: float32 activation / constant (count = product of shape). */
int tfw_act(tfw_t *w, const char *name, const int32_t *shape, int rank);
int tfw_const(tfw_t *w, const char *name, const int32_t *shape, int rank,
	      const float *data);
/* An INT32 constant (shapes, paddings, axes). */
int tfw_const_i32(tfw_t *w, const char *name, const int32_t *shape,
		  int rank, const int32_t *data);
/* Mark tensor t quantized (scale 0.5, zero point 0). */
void tfw_quantize(tfw_t *w, int t);

/* An operator with inputs in[0..nin) (-1: absent) and one output. opts
 * may be NULL (defaults). custom_code names a CUSTOM operator. */
int tfw_op(tfw_t *w, int32_t builtin, const int *in, int nin, int out,
	   const tfw_opts_t *opts);
int tfw_custom_op(tfw_t *w, const char *custom_code, const int *in, int nin,
		  int out);

/* The subgraph's input and outputs. */
void tfw_io(tfw_t *w, int input, const int *outputs, int noutputs);

/* Bad-input knobs for the whole file. */
void tfw_set_version(tfw_t *w, uint32_t version);  /* default 3 */
void tfw_set_subgraphs(tfw_t *w, int n);           /* copies of the one */
void tfw_set_extra_inputs(tfw_t *w, int t);        /* a second input */
/* Give every activation a buffer of its own holding an empty data vector
 * (a layout converters write) instead of the sentinel buffer 0. */
void tfw_set_empty_buffers(tfw_t *w, bool on);

/* The .tflite bytes (malloc'd, the caller frees). 0 or a TLCM_E* code. */
int tfw_finish(tfw_t *w, void **buf, size_t *len);

/* Write len bytes of buf to path: 0 or -1. */
int tfw_save(const char *path, const void *buf, size_t len);

#endif
