/* test_tflite.c — the .tflite importer (nodes/features/tflite.c).
 *
 * Good cases: models written by our own writer (tflite_write.h) covering
 * every supported operator, imported, loaded (tlcm_model_from_buffer),
 * checked op by op against the expected .tlm ops (padding resolved, fused
 * activations, broadcasts), then run on XNNPACK and compared with the
 * plain-C reference (ref_ops.h) within 1e-4 relative. Bad cases: a corpus
 * of broken files, each refused with a message containing the expected
 * words; plus truncations and bit flips that must fail cleanly or import.
 *
 *   test_tflite                    run the tests
 *   test_tflite --write-cases DIR  write DIR/NAME.tflite and DIR/NAME.f32
 *                                  (two random inputs) for every good case
 *                                  and print "NAME<TAB>ArmNN's refusal"
 *                                  (tests/model/test_tflite_armnn.py)
 *   test_tflite --write-mobilenet FILE SIZE ALPHA
 *                                  a MobileNetV2-shaped model (random
 *                                  weights, 1000 classes) to measure with
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "nodes/features/model.h"
#include "nodes/features/tflite.h"
#include "nodes/features/xnn.h"
#include "tests/tlcm_test.h"
#include "tests/unit/ref_ops.h"
#include "tests/unit/tflite_write.h"

#define BO(x) tflite_BuiltinOperator_##x
#define SAME tflite_Padding_SAME
#define VALID tflite_Padding_VALID
#define RELU tflite_ActivationFunctionType_RELU
#define RELU6 tflite_ActivationFunctionType_RELU6
#define REL_TOL 1e-4
#define ABS_TOL 1e-5

/* ---- random data -------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float frand(void) /* uniform in [-1, 1) */
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (float)((rng_state >> 40) / (double)(1 << 23)) - 1.0f;
}

static int shape_count(const int32_t *shape, int rank)
{
	int n = 1;
	for (int d = 0; d < rank; d++)
		n *= shape[d];
	return n;
}

/* A constant of random values scaled by `scale`. */
static int rconst(tfw_t *w, const char *name, const int32_t *shape, int rank,
		  float scale)
{
	int n = shape_count(shape, rank);
	float *v = malloc((size_t)n * sizeof *v);
	if (!v)
		return -1;
	for (int i = 0; i < n; i++)
		v[i] = frand() * scale;
	int t = tfw_const(w, name, shape, rank, v);
	free(v);
	return t;
}

#define SH(...) ((int32_t[]){__VA_ARGS__}), \
	(int)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t))
#define IN(...) ((int[]){__VA_ARGS__}), \
	(int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int))

/* ---- good cases: every supported operator ---------------------------------
 * Each builds a model and states the .tlm ops it must import to (see
 * describe()); output shapes are written out by hand, not computed. */

typedef struct {
	const char *name;
	void (*build)(tfw_t *w);
	const char *expect; /* describe() of the imported model (or NULL) */
	float input_scale;  /* random inputs in [-scale, scale) */
	/* NULL: ArmNN 20.08 must run it and agree; else the words of the
	 * error ArmNN gives (it lacks the feature), checked by the oracle */
	const char *armnn_refuses;
} good_case_t;

static void conv_same_odd(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 7, 7, 3));
	int f = rconst(w, "filter", SH(4, 3, 3, 3), 0.5f);
	int b = rconst(w, "bias", SH(4), 0.1f);
	int y = tfw_act(w, "output", SH(1, 4, 4, 4));
	tfw_op(w, BO(CONV_2D), IN(x, f, b), y,
	       &(tfw_opts_t){.padding = SAME, .stride_w = 2, .stride_h = 2,
			     .activation = RELU});
	tfw_io(w, x, IN(y));
}

static void conv_same_even(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 8, 8, 3));
	int f = rconst(w, "filter", SH(5, 3, 3, 3), 0.5f);
	int y = tfw_act(w, "output", SH(1, 4, 4, 5));
	tfw_op(w, BO(CONV_2D), IN(x, f), y,
	       &(tfw_opts_t){.padding = SAME, .stride_w = 2, .stride_h = 2,
			     .activation = RELU6});
	tfw_io(w, x, IN(y));
}

static void conv_valid_dilated(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 9, 9, 2));
	int f = rconst(w, "filter", SH(3, 3, 3, 2), 0.5f);
	int b = rconst(w, "bias", SH(3), 0.1f);
	int y = tfw_act(w, "output", SH(1, 5, 5, 3));
	tfw_op(w, BO(CONV_2D), IN(x, f, b), y,
	       &(tfw_opts_t){.padding = VALID, .stride_w = 1, .stride_h = 1,
			     .dilation_w = 2, .dilation_h = 2});
	tfw_io(w, x, IN(y));
}

static void conv_rect(tfw_t *w) /* non-square kernel, strides, input */
{
	int x = tfw_act(w, "input", SH(1, 10, 7, 2));
	int f = rconst(w, "filter", SH(3, 3, 2, 2), 0.5f);
	int b = rconst(w, "bias", SH(3), 0.1f);
	int y = tfw_act(w, "output", SH(1, 4, 7, 3));
	tfw_op(w, BO(CONV_2D), IN(x, f, b), y,
	       &(tfw_opts_t){.padding = SAME, .stride_w = 1, .stride_h = 3});
	tfw_io(w, x, IN(y));
}

static void depthwise_m2(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 6, 6, 4));
	int f = rconst(w, "filter", SH(1, 3, 3, 8), 0.5f);
	int b = rconst(w, "bias", SH(8), 0.1f);
	int y = tfw_act(w, "output", SH(1, 6, 6, 8));
	tfw_op(w, BO(DEPTHWISE_CONV_2D), IN(x, f, b), y,
	       &(tfw_opts_t){.padding = SAME, .stride_w = 1, .stride_h = 1,
			     .depth_multiplier = 2, .activation = RELU6});
	tfw_io(w, x, IN(y));
}

static void depthwise_s2(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 9, 9, 3));
	int f = rconst(w, "filter", SH(1, 5, 5, 3), 0.5f);
	int b = rconst(w, "bias", SH(3), 0.1f);
	int y = tfw_act(w, "output", SH(1, 5, 5, 3));
	tfw_op(w, BO(DEPTHWISE_CONV_2D), IN(x, f, b), y,
	       &(tfw_opts_t){.padding = SAME, .stride_w = 2, .stride_h = 2,
			     .depth_multiplier = 1});
	tfw_io(w, x, IN(y));
}

static void fc_softmax(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 2, 2, 3));
	int s = tfw_const_i32(w, "shape", SH(2), (int32_t[]){1, 12});
	int r = tfw_act(w, "flat", SH(1, 12));
	int w1 = rconst(w, "fc1/weights", SH(5, 12), 0.5f);
	int b1 = rconst(w, "fc1/bias", SH(5), 0.1f);
	int h = tfw_act(w, "embedding", SH(1, 5));
	int w2 = rconst(w, "fc2/weights", SH(4, 5), 0.5f);
	int l = tfw_act(w, "logits", SH(1, 4));
	int p = tfw_act(w, "probs", SH(1, 4));
	tfw_op(w, BO(RESHAPE), IN(x, s), r,
	       &(tfw_opts_t){.ints = (int32_t[]){1, 12}, .nints = 2});
	tfw_op(w, BO(FULLY_CONNECTED), IN(r, w1, b1), h,
	       &(tfw_opts_t){.activation = RELU});
	tfw_op(w, BO(FULLY_CONNECTED), IN(h, w2), l, NULL);
	tfw_op(w, BO(SOFTMAX), IN(l), p, &(tfw_opts_t){.beta = 1.0f});
	tfw_io(w, x, IN(h, p));
}

static void fc_4d_input(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 2, 2, 3));
	int wt = rconst(w, "weights", SH(6, 12), 0.5f);
	int b = rconst(w, "bias", SH(6), 0.1f);
	int y = tfw_act(w, "output", SH(1, 6));
	tfw_op(w, BO(FULLY_CONNECTED), IN(x, wt, b), y, NULL);
	tfw_io(w, x, IN(y));
}

static void avgpool_same(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 7, 7, 3));
	int y = tfw_act(w, "output", SH(1, 4, 4, 3));
	tfw_op(w, BO(AVERAGE_POOL_2D), IN(x), y,
	       &(tfw_opts_t){.padding = SAME, .stride_w = 2, .stride_h = 2,
			     .filter_w = 3, .filter_h = 3});
	tfw_io(w, x, IN(y));
}

static void avgpool_valid(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 6, 6, 2));
	int y = tfw_act(w, "output", SH(1, 3, 3, 2));
	tfw_op(w, BO(AVERAGE_POOL_2D), IN(x), y,
	       &(tfw_opts_t){.padding = VALID, .stride_w = 2, .stride_h = 2,
			     .filter_w = 2, .filter_h = 2});
	tfw_io(w, x, IN(y));
}

static void maxpool_same(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 6, 6, 3));
	int y = tfw_act(w, "output", SH(1, 3, 3, 3));
	tfw_op(w, BO(MAX_POOL_2D), IN(x), y,
	       &(tfw_opts_t){.padding = SAME, .stride_w = 2, .stride_h = 2,
			     .filter_w = 3, .filter_h = 3, .activation = RELU});
	tfw_io(w, x, IN(y));
}

static void mean_hw(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 5, 5, 4));
	int a1 = tfw_const_i32(w, "axes", SH(2), (int32_t[]){1, 2});
	int a2 = tfw_const_i32(w, "axes_rev", SH(2), (int32_t[]){2, 1});
	int g = tfw_act(w, "pooled", SH(1, 4));
	int gk = tfw_act(w, "pooled_keep", SH(1, 1, 1, 4));
	tfw_op(w, BO(MEAN), IN(x, a1), g, NULL);
	tfw_op(w, BO(MEAN), IN(x, a2), gk, &(tfw_opts_t){.keep_dims = true});
	tfw_io(w, x, IN(g, gk));
}

static void add_mul(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 4, 4, 3));
	int f = rconst(w, "filter", SH(3, 1, 1, 3), 0.5f);
	int a = tfw_act(w, "conv", SH(1, 4, 4, 3));
	int s = tfw_act(w, "sum", SH(1, 4, 4, 3));
	int k = rconst(w, "scale", SH(3), 1.0f);
	int m = tfw_act(w, "scaled", SH(1, 4, 4, 3));
	int c = tfw_const(w, "offset", SH(1), (float[]){0.25f});
	int y = tfw_act(w, "output", SH(1, 4, 4, 3));
	tfw_op(w, BO(CONV_2D), IN(x, f), a,
	       &(tfw_opts_t){.padding = VALID, .stride_w = 1, .stride_h = 1});
	tfw_op(w, BO(ADD), IN(x, a), s, &(tfw_opts_t){.activation = RELU});
	tfw_op(w, BO(MUL), IN(s, k), m, NULL);
	tfw_op(w, BO(ADD), IN(c, m), y, NULL); /* constant first, one value */
	tfw_io(w, x, IN(y));
}

static void squeeze_excite(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 4, 4, 6));
	int ax = tfw_const_i32(w, "axes", SH(2), (int32_t[]){1, 2});
	int g = tfw_act(w, "pooled", SH(1, 1, 1, 6));
	int s = tfw_act(w, "gate", SH(1, 1, 1, 6));
	int y = tfw_act(w, "output", SH(1, 4, 4, 6));
	tfw_op(w, BO(MEAN), IN(x, ax), g, &(tfw_opts_t){.keep_dims = true});
	tfw_op(w, BO(LOGISTIC), IN(g), s, NULL);
	tfw_op(w, BO(MUL), IN(x, s), y, NULL);
	tfw_io(w, x, IN(y));
}

static void activations(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 3, 3, 5));
	int r = tfw_act(w, "relu", SH(1, 3, 3, 5));
	int r6 = tfw_act(w, "relu6", SH(1, 3, 3, 5));
	int s = tfw_act(w, "logistic", SH(1, 3, 3, 5));
	int h = tfw_act(w, "hard_swish", SH(1, 3, 3, 5));
	tfw_op(w, BO(RELU), IN(x), r, NULL);
	tfw_op(w, BO(RELU6), IN(x), r6, NULL);
	tfw_op(w, BO(LOGISTIC), IN(x), s, NULL);
	tfw_op(w, BO(HARD_SWISH), IN(x), h, NULL);
	tfw_io(w, x, IN(r, r6, s, h));
}

static void relu_n1_to_1(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 2, 2, 8));
	int y = tfw_act(w, "output", SH(1, 2, 2, 8));
	tfw_op(w, BO(RELU_N1_TO_1), IN(x), y, NULL);
	tfw_io(w, x, IN(y));
}

/* Absent optional inputs as -1 (what TFLite writes for a bias-less dense
 * layer) rather than a shorter input list. */
static void optional_bias(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 3, 3, 2));
	int f = rconst(w, "filter", SH(4, 1, 1, 2), 0.5f);
	int a = tfw_act(w, "conv", SH(1, 3, 3, 4));
	int wt = rconst(w, "weights", SH(3, 36), 0.5f);
	int y = tfw_act(w, "output", SH(1, 3));
	tfw_op(w, BO(CONV_2D), IN(x, f, -1), a,
	       &(tfw_opts_t){.padding = VALID, .stride_w = 1, .stride_h = 1});
	tfw_op(w, BO(FULLY_CONNECTED), IN(a, wt, -1), y, NULL);
	tfw_io(w, x, IN(y));
}

static void mean_negative_axes(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 3, 4, 5));
	int ax = tfw_const_i32(w, "axes", SH(2), (int32_t[]){-3, -2});
	int y = tfw_act(w, "output", SH(1, 1, 1, 5));
	tfw_op(w, BO(MEAN), IN(x, ax), y, &(tfw_opts_t){.keep_dims = true});
	tfw_io(w, x, IN(y));
}

static void reshape_squeeze(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 1, 1, 6));
	int q = tfw_act(w, "squeezed", SH(1, 6));
	int s = tfw_const_i32(w, "shape", SH(3), (int32_t[]){1, 2, 3});
	int r = tfw_act(w, "reshaped", SH(1, 2, 3));
	int p = tfw_act(w, "probs", SH(1, 2, 3));
	tfw_op(w, BO(SQUEEZE), IN(x), q,
	       &(tfw_opts_t){.ints = (int32_t[]){1, 2}, .nints = 2});
	tfw_op(w, BO(RESHAPE), IN(q, s), r,
	       &(tfw_opts_t){.ints = (int32_t[]){1, 2, 3}, .nints = 3});
	tfw_op(w, BO(SOFTMAX), IN(r), p, &(tfw_opts_t){.beta = 1.0f});
	tfw_io(w, x, IN(p));
}

static void pad_conv(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 4, 5, 2));
	int pd = tfw_const_i32(w, "paddings", SH(4, 2),
			       (int32_t[]){0, 0, 1, 2, 2, 1, 0, 0});
	int p = tfw_act(w, "padded", SH(1, 7, 8, 2));
	int f = rconst(w, "filter", SH(3, 3, 3, 2), 0.5f);
	int b = rconst(w, "bias", SH(3), 0.1f);
	int y = tfw_act(w, "output", SH(1, 5, 6, 3));
	tfw_op(w, BO(PAD), IN(x, pd), p, NULL);
	tfw_op(w, BO(CONV_2D), IN(p, f, b), y,
	       &(tfw_opts_t){.padding = VALID, .stride_w = 1, .stride_h = 1});
	tfw_io(w, x, IN(y));
}

static void padv2(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 3, 3, 2));
	int pd = tfw_const_i32(w, "paddings", SH(4, 2),
			       (int32_t[]){0, 0, 1, 0, 0, 2, 0, 0});
	int v = tfw_const(w, "value", SH(1), (float[]){0.5f});
	int y = tfw_act(w, "output", SH(1, 4, 5, 2));
	tfw_op(w, BO(PADV2), IN(x, pd, v), y, NULL);
	tfw_io(w, x, IN(y));
}

/* IEEE float to half (round to nearest even; test values are normal). */
static uint16_t to_half(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	uint32_t sign = (u >> 16) & 0x8000, exp = (u >> 23) & 0xff;
	uint32_t man = u & 0x7fffff;
	if (exp < 113)
		return (uint16_t)sign; /* tiny: zero */
	uint32_t h = ((exp - 112) << 10) | (man >> 13);
	uint32_t rest = man & 0x1fff;
	if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
		h++;
	return (uint16_t)(sign | h);
}

static void dequantize_f16(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 5, 5, 2));
	uint16_t half[3 * 3 * 3 * 2];
	for (size_t i = 0; i < sizeof half / sizeof *half; i++)
		half[i] = to_half(frand() * 0.5f);
	int f16 = tfw_tensor(w, "filter_f16", tflite_TensorType_FLOAT16,
			     SH(3, 3, 3, 2), half, sizeof half);
	int f = tfw_act(w, "filter", SH(3, 3, 3, 2));
	int y = tfw_act(w, "output", SH(1, 5, 5, 3));
	tfw_op(w, BO(DEQUANTIZE), IN(f16), f, NULL);
	tfw_op(w, BO(CONV_2D), IN(x, f), y,
	       &(tfw_opts_t){.padding = SAME, .stride_w = 1, .stride_h = 1});
	tfw_io(w, x, IN(y));
}

static void fused_relu_n1(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 4, 4, 2));
	int f = rconst(w, "filter", SH(2, 1, 1, 2), 1.0f);
	int y = tfw_act(w, "output", SH(1, 4, 4, 2));
	tfw_op(w, BO(CONV_2D), IN(x, f), y,
	       &(tfw_opts_t){.padding = SAME, .stride_w = 1, .stride_h = 1,
			     .activation =
				     tflite_ActivationFunctionType_RELU_N1_TO_1});
	tfw_io(w, x, IN(y));
}

/* A MobileNetV2-style stem and inverted residual block with a head. */
static void mini_mobilenet(tfw_t *w)
{
	int x = tfw_act(w, "input", SH(1, 16, 16, 3));
	int f0 = rconst(w, "stem/filter", SH(8, 3, 3, 3), 0.4f);
	int b0 = rconst(w, "stem/bias", SH(8), 0.1f);
	int a0 = tfw_act(w, "stem", SH(1, 8, 8, 8));
	int f1 = rconst(w, "expand/filter", SH(16, 1, 1, 8), 0.4f);
	int a1 = tfw_act(w, "expand", SH(1, 8, 8, 16));
	int f2 = rconst(w, "dw/filter", SH(1, 3, 3, 16), 0.4f);
	int b2 = rconst(w, "dw/bias", SH(16), 0.1f);
	int a2 = tfw_act(w, "dw", SH(1, 8, 8, 16));
	int f3 = rconst(w, "project/filter", SH(8, 1, 1, 16), 0.4f);
	int b3 = rconst(w, "project/bias", SH(8), 0.1f);
	int a3 = tfw_act(w, "project", SH(1, 8, 8, 8));
	int a4 = tfw_act(w, "residual", SH(1, 8, 8, 8));
	int ax = tfw_const_i32(w, "axes", SH(2), (int32_t[]){1, 2});
	int e = tfw_act(w, "embedding", SH(1, 8));
	int wf = rconst(w, "head/weights", SH(4, 8), 0.5f);
	int bf = rconst(w, "head/bias", SH(4), 0.1f);
	int l = tfw_act(w, "logits", SH(1, 4));
	int p = tfw_act(w, "probs", SH(1, 4));
	tfw_op(w, BO(CONV_2D), IN(x, f0, b0), a0,
	       &(tfw_opts_t){.padding = SAME, .stride_w = 2, .stride_h = 2,
			     .activation = RELU6});
	tfw_op(w, BO(CONV_2D), IN(a0, f1), a1,
	       &(tfw_opts_t){.padding = SAME, .stride_w = 1, .stride_h = 1,
			     .activation = RELU6});
	tfw_op(w, BO(DEPTHWISE_CONV_2D), IN(a1, f2, b2), a2,
	       &(tfw_opts_t){.padding = SAME, .stride_w = 1, .stride_h = 1,
			     .depth_multiplier = 1, .activation = RELU6});
	tfw_op(w, BO(CONV_2D), IN(a2, f3, b3), a3,
	       &(tfw_opts_t){.padding = SAME, .stride_w = 1, .stride_h = 1});
	tfw_op(w, BO(ADD), IN(a0, a3), a4, NULL);
	tfw_op(w, BO(MEAN), IN(a4, ax), e, NULL);
	tfw_op(w, BO(FULLY_CONNECTED), IN(e, wf, bf), l, NULL);
	tfw_op(w, BO(SOFTMAX), IN(l), p, &(tfw_opts_t){.beta = 1.0f});
	tfw_io(w, x, IN(e, p));
}

/* ---- MobileNetV2 (Keras's topology, random weights) ----------------------
 * Stride-2 layers are PAD (Keras's correct_pad) + VALID, as Keras models
 * convert; inverted residual blocks; MEAN head; outputs "embedding"
 * (the pooled features) and "probs". */

typedef struct {
	tfw_t *w;
	int x;         /* current activation */
	int h, wd, c;  /* its shape */
	int n;         /* layer counter, for names */
} mnv2_t;

static int mnv2_divisible(double v)
{
	int r = (int)(v + 4) / 8 * 8;
	if (r < 8)
		r = 8;
	if (r < 0.9 * v)
		r += 8;
	return r;
}

/* Zero padding before a stride-2 3x3 layer (Keras correct_pad). */
static void mnv2_pad(mnv2_t *m)
{
	int top = m->h % 2, left = m->wd % 2; /* bottom and right: 1 */
	char name[64];
	snprintf(name, sizeof name, "pad%d/paddings", m->n);
	int pd = tfw_const_i32(m->w, name, SH(4, 2),
			       (int32_t[]){0, 0, top, 1, left, 1, 0, 0});
	snprintf(name, sizeof name, "pad%d", m->n++);
	m->h += top + 1;
	m->wd += left + 1;
	int y = tfw_act(m->w, name, SH(1, m->h, m->wd, m->c));
	tfw_op(m->w, BO(PAD), IN(m->x, pd), y, NULL);
	m->x = y;
}

/* Conv (k x k, or depthwise when cout == 0) + bias, optional ReLU6. */
static void mnv2_conv(mnv2_t *m, int k, int stride, int cout, bool relu6)
{
	bool dw = cout == 0;
	char name[64];
	if (stride == 2)
		mnv2_pad(m);
	int oc = dw ? m->c : cout;
	/* He-scaled uniform weights keep the signal alive through depth */
	float scale = sqrtf(6.0f / (float)(k * k * (dw ? 1 : m->c)));
	snprintf(name, sizeof name, "%s%d/filter", dw ? "dw" : "conv", m->n);
	int f = dw ? rconst(m->w, name, SH(1, k, k, oc), scale)
		   : rconst(m->w, name, SH(oc, k, k, m->c), scale);
	snprintf(name, sizeof name, "%s%d/bias", dw ? "dw" : "conv", m->n);
	int b = rconst(m->w, name, SH(oc), 0.01f);
	int pad = stride == 2 ? VALID : SAME;
	if (stride == 2) {
		m->h = (m->h - k) / 2 + 1;
		m->wd = (m->wd - k) / 2 + 1;
	}
	snprintf(name, sizeof name, "%s%d", dw ? "dw" : "conv", m->n++);
	int y = tfw_act(m->w, name, SH(1, m->h, m->wd, oc));
	tfw_opts_t o = {.padding = (tflite_Padding_enum_t)pad,
			.stride_w = stride,
			.stride_h = stride,
			.depth_multiplier = 1,
			.activation = relu6 ? RELU6
					    : tflite_ActivationFunctionType_NONE};
	tfw_op(m->w, dw ? BO(DEPTHWISE_CONV_2D) : BO(CONV_2D), IN(m->x, f, b), y,
	       &o);
	m->x = y;
	m->c = oc;
}

static void mobilenet_v2_shaped(tfw_t *w, int size, double alpha, int classes)
{
	static const int blocks[][4] = {/* expansion, channels, repeats, stride */
		{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
		{6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
	mnv2_t m = {.w = w, .h = size, .wd = size, .c = 3};
	m.x = tfw_act(w, "input", SH(1, size, size, 3));
	int input = m.x;
	mnv2_conv(&m, 3, 2, mnv2_divisible(32 * alpha), true);
	for (size_t i = 0; i < sizeof blocks / sizeof *blocks; i++) {
		int out = mnv2_divisible(blocks[i][1] * alpha);
		for (int r = 0; r < blocks[i][2]; r++) {
			int stride = r ? 1 : blocks[i][3], in = m.x, cin = m.c;
			if (blocks[i][0] != 1)
				mnv2_conv(&m, 1, 1, cin * blocks[i][0], true);
			mnv2_conv(&m, 3, stride, 0, true);
			mnv2_conv(&m, 1, 1, out, false);
			if (stride == 1 && cin == out) {
				char name[32];
				snprintf(name, sizeof name, "add%d", m.n++);
				int y = tfw_act(w, name,
						SH(1, m.h, m.wd, m.c));
				tfw_op(w, BO(ADD), IN(in, m.x), y, NULL);
				m.x = y;
			}
		}
	}
	mnv2_conv(&m, 1, 1, alpha > 1.0 ? mnv2_divisible(1280 * alpha) : 1280,
		  true);
	int ax = tfw_const_i32(w, "axes", SH(2), (int32_t[]){1, 2});
	int e = tfw_act(w, "embedding", SH(1, m.c));
	int wf = rconst(w, "head/weights", SH(classes, m.c), 0.05f);
	int bf = rconst(w, "head/bias", SH(classes), 0.1f);
	int l = tfw_act(w, "logits", SH(1, classes));
	int p = tfw_act(w, "probs", SH(1, classes));
	tfw_op(w, BO(MEAN), IN(m.x, ax), e, NULL);
	tfw_op(w, BO(FULLY_CONNECTED), IN(e, wf, bf), l, NULL);
	tfw_op(w, BO(SOFTMAX), IN(l), p, &(tfw_opts_t){.beta = 1.0f});
	tfw_io(w, input, IN(e, p));
}

static void mobilenet_v2_small(tfw_t *w)
{
	mobilenet_v2_shaped(w, 96, 0.35, 10);
}

static const good_case_t good_cases[] = {
	{"conv_same_odd", conv_same_odd, "Conv2D s2x2 p1,1,1,1 +Relu", 1, NULL},
	{"conv_same_even", conv_same_even,
	 "Conv2D(nobias) s2x2 p0,1,0,1 +Relu6", 1, NULL},
	{"conv_valid_dilated", conv_valid_dilated, "Conv2D d2x2", 1, NULL},
	{"conv_rect", conv_rect, "Conv2D s3x1 p1,1,0,1", 1, NULL},
	{"depthwise_m2", depthwise_m2, "DepthwiseConv2D p1,1,1,1 m2 +Relu6", 1, NULL},
	{"depthwise_s2", depthwise_s2, "DepthwiseConv2D s2x2 p2,2,2,2", 1, NULL},
	{"fc_softmax", fc_softmax,
	 "Reshape; FullyConnected +Relu; FullyConnected(nobias); Softmax", 1, NULL},
	{"fc_4d_input", fc_4d_input, "FullyConnected", 1, NULL},
	{"avgpool_same", avgpool_same, "AveragePool2D k3x3 s2x2 p1,1,1,1", 1, NULL},
	{"avgpool_valid", avgpool_valid, "AveragePool2D k2x2 s2x2", 1, NULL},
	{"maxpool_same", maxpool_same, "MaxPool2D k3x3 s2x2 p0,1,0,1 +Relu", 1, NULL},
	{"mean_hw", mean_hw, "GlobalAveragePool; GlobalAveragePool", 1, NULL},
	{"add_mul", add_mul, "Conv2D(nobias); Add +Relu; Multiply; Add", 1, NULL},
	{"squeeze_excite", squeeze_excite,
	 "GlobalAveragePool; Sigmoid; Multiply", 1, NULL},
	{"activations", activations, "Relu; Relu6; Sigmoid; HardSwish", 4, NULL},
	{"reshape_squeeze", reshape_squeeze, "Reshape; Reshape; Softmax", 2, NULL},
	{"pad_conv", pad_conv, "Pad p1,2,2,1; Conv2D", 1, NULL},
	/* forms ArmNN 20.08 does not parse; the oracle checks it says so */
	{"dequantize_f16", dequantize_f16, "Conv2D(nobias) p1,1,1,1", 1,
	 "Buffer #0 has 0 bytes"}, /* wants the filter itself constant */
	{"relu_n1_to_1", relu_n1_to_1, "Clamp -1,1", 2, "RELU_N1_TO_1"},
	{"fused_relu_n1", fused_relu_n1, "Conv2D(nobias); Clamp -1,1", 2,
	 "RELU_N1_TO_1"},
	{"padv2", padv2, "Pad p1,0,0,2 v0.5", 1, "PADV2"},
	{"optional_bias", optional_bias,
	 "Conv2D(nobias); FullyConnected(nobias)", 1,
	 "must be non-negative, received: -1"},
	{"mean_negative_axes", mean_negative_axes, "GlobalAveragePool", 1,
	 "does not match the inferred shape"},
	/* its ops are checked by the oracle, not spelled out here */
	{"mobilenet_v2_035_96", mobilenet_v2_small, NULL, 1, NULL},
	/* last: test_names() and the corruption tests use it */
	{"mini_mobilenet", mini_mobilenet,
	 "Conv2D s2x2 p0,1,0,1 +Relu6; Conv2D(nobias) +Relu6; "
	 "DepthwiseConv2D p1,1,1,1 +Relu6; Conv2D; Add; GlobalAveragePool; "
	 "FullyConnected; Softmax",
	 1, NULL},
};

#define NGOOD (sizeof good_cases / sizeof *good_cases)

/* The imported ops, non-default parameters only:
 * "Conv2D s2x2 p0,1,0,1 +Relu6; Softmax". */
static void describe(const tlcm_model_t *m, char *buf, size_t cap)
{
	size_t n = 0;
	buf[0] = '\0';
#define PUT(...) \
	(n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__))
	for (size_t i = 0; i < m->nops; i++) {
		const tlcm_op_t *o = &m->ops[i];
		bool weighted = o->type <= tlcm_OpType_FullyConnected;
		PUT("%s%s%s", i ? "; " : "", tlcm_OpType_name(o->type),
		    weighted && (o->nin < 3 || o->in[2] < 0) ? "(nobias)" : "");
		if (o->type == tlcm_OpType_AveragePool2D ||
		    o->type == tlcm_OpType_MaxPool2D)
			PUT(" k%dx%d", o->kernel_h, o->kernel_w);
		if (o->stride_h != 1 || o->stride_w != 1)
			PUT(" s%dx%d", o->stride_h, o->stride_w);
		if (o->dilation_h != 1 || o->dilation_w != 1)
			PUT(" d%dx%d", o->dilation_h, o->dilation_w);
		if (o->pad_top || o->pad_bottom || o->pad_left || o->pad_right)
			PUT(" p%d,%d,%d,%d", o->pad_top, o->pad_bottom,
			    o->pad_left, o->pad_right);
		if (o->depth_multiplier != 1)
			PUT(" m%d", o->depth_multiplier);
		if (o->activation != tlcm_Activation_None)
			PUT(" +%s", tlcm_Activation_name(o->activation));
		if (o->type == tlcm_OpType_Clamp)
			PUT(" %g,%g", (double)o->clamp_min, (double)o->clamp_max);
		if (o->pad_value != 0.0f)
			PUT(" v%g", (double)o->pad_value);
	}
#undef PUT
}

/* ---- running ---------------------------------------------------------------- */

static int write_tflite(const good_case_t *gc, void **buf, size_t *len)
{
	tfw_t *w = tfw_new();
	if (!w)
		return TLCM_ENOMEM;
	rng_state = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)gc->name[0];
	gc->build(w);
	int rc = tfw_finish(w, buf, len);
	tfw_free(w);
	return rc;
}

static void fill_inputs(float *v, size_t n, float scale)
{
	for (size_t i = 0; i < n; i++)
		v[i] = frand() * scale;
}

/* XNNPACK against the reference on `frames` random inputs. */
static void run_and_compare(const good_case_t *gc, const tlcm_model_t *m)
{
	const size_t frames = 2;
	char why[512] = "";
	tlcm_xnn_t *x = NULL;
	tlcm_xnn_batch_t *b = NULL;
	int rc = tlcm_xnn_new(&x, m, 1, why, sizeof why);
	if (rc == TLCM_ENOTSUP) {
		fprintf(stderr, "%s: XNNPACK unavailable (%s): not run\n",
			gc->name, why);
		return;
	}
	CHECK_INT(rc, 0);
	if (!rc)
		rc = tlcm_xnn_batch(x, frames, &b, why, sizeof why);
	CHECK_INT(rc, 0);
	if (rc) {
		fprintf(stderr, "%s: %s\n", gc->name, why);
		tlcm_xnn_free(x);
		return;
	}
	size_t isize = m->tensors[m->input].size;
	fill_inputs(b->input, frames * isize, gc->input_scale);
	float **ref = calloc(m->noutputs, sizeof *ref);
	CHECK(ref != NULL);
	for (size_t k = 0; ref && k < m->noutputs; k++) {
		ref[k] = malloc(frames * m->tensors[m->outputs[k]].size *
				sizeof **ref);
		CHECK(ref[k] != NULL);
	}
	CHECK_INT(tlcm_ref_run(m, frames, b->input, ref), 0);
	rc = tlcm_xnn_run(x, b, why, sizeof why);
	CHECK_INT(rc, 0);
	for (size_t k = 0; !rc && k < m->noutputs; k++) {
		const tlcm_tensor_t *t = &m->tensors[m->outputs[k]];
		size_t bad = 0;
		double worst = 0;
		for (size_t i = 0; i < frames * t->size; i++) {
			double r = ref[k][i], v = b->outputs[k][i];
			double err = fabs(v - r);
			if (!(err <= ABS_TOL + REL_TOL * fabs(r)))
				bad++;
			if (err > worst)
				worst = err;
		}
		tlcm_test_checks++;
		if (bad)
			TLCM__FAIL("%s: output '%s': %zu of %zu values differ "
				   "from the reference (worst %g)",
				   gc->name, t->name, bad, frames * t->size,
				   worst);
	}
	for (size_t k = 0; ref && k < m->noutputs; k++)
		free(ref[k]);
	free(ref);
	tlcm_xnn_free(x);
}

static void test_good(void)
{
	for (size_t i = 0; i < NGOOD; i++) {
		const good_case_t *gc = &good_cases[i];
		void *tfl = NULL, *tlm = NULL;
		size_t tfl_len = 0, tlm_len = 0;
		char why[512] = "", got[512];
		CHECK_INT(write_tflite(gc, &tfl, &tfl_len), 0);
		int rc = tlcm_tflite_to_tlm(tfl, tfl_len, &tlm, &tlm_len, why,
					    sizeof why);
		tlcm_test_checks++;
		if (rc) {
			TLCM__FAIL("%s: import failed: %s", gc->name, why);
			free(tfl);
			continue;
		}
		const char *vwhy = NULL;
		CHECK_INT(tlcm_Model_verify_as_root(tlm, tlm_len, &vwhy), 0);
		tlcm_model_t *m = NULL;
		rc = tlcm_model_from_buffer(&m, tlm, tlm_len, gc->name, why,
					    sizeof why);
		tlcm_test_checks++;
		if (rc) {
			TLCM__FAIL("%s: the imported model does not load: %s",
				   gc->name, why);
		} else {
			describe(m, got, sizeof got);
			tlcm_test_checks++;
			if (gc->expect && strcmp(got, gc->expect))
				TLCM__FAIL("%s: imported ops \"%s\", expected "
					   "\"%s\"",
					   gc->name, got, gc->expect);
			run_and_compare(gc, m);
			tlcm_model_free(m);
		}
		/* the loader converts .tflite itself */
		rc = tlcm_model_from_buffer(&m, tfl, tfl_len, gc->name, why,
					    sizeof why);
		CHECK_INT(rc, 0);
		if (!rc)
			tlcm_model_free(m);
		free(tfl);
		free(tlm);
	}
}

/* Names of the model's outputs survive: the user picks them by name. */
static void test_names(void)
{
	void *tfl = NULL, *tlm = NULL;
	size_t tfl_len = 0, tlm_len = 0;
	char why[512];
	const good_case_t *gc = &good_cases[NGOOD - 1]; /* mini_mobilenet */
	CHECK_STR(gc->name, "mini_mobilenet");
	CHECK_INT(write_tflite(gc, &tfl, &tfl_len), 0);
	CHECK_INT(tlcm_tflite_to_tlm(tfl, tfl_len, &tlm, &tlm_len, why,
				     sizeof why),
		  0);
	tlcm_model_t *m = NULL;
	CHECK_INT(tlcm_model_from_buffer(&m, tlm, tlm_len, "names", why,
					 sizeof why),
		  0);
	if (m) {
		CHECK_UINT(m->noutputs, 2);
		CHECK_INT(tlcm_model_output_index(m, "embedding"), 0);
		CHECK_INT(tlcm_model_output_index(m, "probs"), 1);
		CHECK_STR(m->tensors[m->input].name, "input");
		CHECK(tlcm_model_find(m, "stem/filter") >= 0);
		/* only what the ops use: the int32 axes are not written */
		CHECK_INT(tlcm_model_find(m, "axes"), -1);
		tlcm_model_free(m);
	}
	free(tfl);
	free(tlm);
}

/* ---- bad files ------------------------------------------------------------ */

typedef struct {
	const char *name;
	int mutation;
	int rc;
	const char *expect[3]; /* substrings of the message */
} bad_case_t;

enum {
	M_TANH = 1, M_CONCAT, M_CUSTOM, M_INT8_INPUT, M_QUANT_WEIGHTS,
	M_SHORT_WEIGHTS, M_BUFFER_RANGE, M_OPCODE_RANGE, M_TENSOR_RANGE,
	M_TWO_SUBGRAPHS, M_VERSION, M_TWO_INPUTS, M_OPTIONS_TYPE,
	M_OUT_SHAPE, M_UNCOMPUTED, M_FUSED_TANH, M_MEAN_AXIS, M_BATCH2,
	M_BETA, M_DYNAMIC, M_RUNTIME_WEIGHTS, M_NO_OUTPUT_OP, M_CUMSUM,
	M_UNKNOWN_CODE, M_NO_OPS, M_WRITE_INPUT, M_BROADCAST, M_INT8_WEIGHTS,
	M_NO_POOL_OPTIONS, M_PAD_CHANNELS, M_STRIDE0, M_DEPTH_MULT,
	M_FC_IN, M_NO_INPUTS,
};

/* A small conv → relu model, broken as `mutation` says. */
static void bad_model(tfw_t *w, int mutation)
{
	int32_t xs[4] = {mutation == M_BATCH2 ? 2 : 1, 4, 4, 2};
	if (mutation == M_DYNAMIC)
		xs[1] = -1;
	int x = tfw_tensor(w, "input",
			   mutation == M_INT8_INPUT ? tflite_TensorType_INT8
						    : TFW_F32,
			   xs, 4, NULL, 0);
	float fdata[3 * 3 * 3 * 2];
	for (size_t i = 0; i < sizeof fdata / sizeof *fdata; i++)
		fdata[i] = frand();
	int f;
	if (mutation == M_RUNTIME_WEIGHTS)
		f = tfw_act(w, "filter", SH(3, 3, 3, 2));
	else if (mutation == M_INT8_WEIGHTS)
		f = tfw_tensor(w, "filter", tflite_TensorType_INT8,
			       SH(3, 3, 3, 2), fdata, 54);
	else
		f = tfw_tensor(w, "filter", TFW_F32, SH(3, 3, 3, 2), fdata,
			       mutation == M_SHORT_WEIGHTS ? 100 : sizeof fdata);
	if (mutation == M_QUANT_WEIGHTS)
		tfw_quantize(w, f);
	int y = tfw_act(w, "conv", SH(1, mutation == M_OUT_SHAPE ? 3 : 4, 4, 3));
	int z = tfw_act(w, "output", SH(1, 4, 4, 3));
	int ghost = tfw_act(w, "ghost", SH(1, 4, 4, 3));
	tfw_opts_t conv = {.padding = SAME, .stride_w = 1, .stride_h = 1,
			   .activation = mutation == M_FUSED_TANH
						 ? tflite_ActivationFunctionType_TANH
						 : tflite_ActivationFunctionType_NONE};
	if (mutation == M_OPTIONS_TYPE)
		conv.options_type = tflite_BuiltinOptions_Pool2DOptions;
	if (mutation == M_STRIDE0)
		conv.stride_h = 0;
	if (mutation == M_CUSTOM) {
		tfw_custom_op(w, "MyOp", IN(x), y);
	} else if (mutation != M_NO_OPS) {
		int in = mutation == M_UNCOMPUTED ? ghost : x;
		if (mutation == M_TENSOR_RANGE)
			tfw_op(w, BO(CONV_2D), IN(in, 99, -1), y, &conv);
		else if (mutation == M_DEPTH_MULT)
			tfw_op(w, BO(DEPTHWISE_CONV_2D), IN(in, f, -1), y,
			       &(tfw_opts_t){.padding = SAME, .stride_w = 1,
					     .stride_h = 1,
					     .depth_multiplier = 2});
		else
			tfw_op(w, BO(CONV_2D), IN(in, f, -1), y, &conv);
	}
	int32_t second = mutation == M_TANH	? BO(TANH)
			 : mutation == M_CONCAT ? BO(CONCATENATION)
			 : mutation == M_CUMSUM ? BO(CUMSUM)
			 : mutation == M_UNKNOWN_CODE ? 999
						      : BO(RELU);
	if (mutation == M_MEAN_AXIS) {
		int ax = tfw_const_i32(w, "axes", SH(1), (int32_t[]){3});
		z = tfw_act(w, "mean", SH(1, 4, 4, 1));
		tfw_op(w, BO(MEAN), IN(y, ax), z,
		       &(tfw_opts_t){.keep_dims = true});
	} else if (mutation == M_BETA) {
		tfw_op(w, BO(SOFTMAX), IN(y), z, &(tfw_opts_t){.beta = 2.0f});
	} else if (mutation == M_WRITE_INPUT) {
		tfw_op(w, BO(RELU), IN(y), x, NULL);
	} else if (mutation == M_BROADCAST) {
		int c = rconst(w, "row", SH(4, 1), 1.0f);
		tfw_op(w, BO(ADD), IN(y, c), z, NULL);
	} else if (mutation == M_NO_POOL_OPTIONS) {
		z = tfw_act(w, "pool", SH(1, 4, 4, 3));
		tfw_op(w, BO(MAX_POOL_2D), IN(y), z,
		       &(tfw_opts_t){.no_options = true});
	} else if (mutation == M_PAD_CHANNELS) {
		int pd = tfw_const_i32(w, "paddings", SH(4, 2),
				       (int32_t[]){0, 0, 0, 0, 0, 0, 1, 1});
		z = tfw_act(w, "padded", SH(1, 4, 4, 5));
		tfw_op(w, BO(PAD), IN(y, pd), z, NULL);
	} else if (mutation == M_FC_IN) {
		int wt = rconst(w, "fc", SH(5, 7), 1.0f);
		z = tfw_act(w, "fc_out", SH(1, 5));
		tfw_op(w, BO(FULLY_CONNECTED), IN(y, wt, -1), z, NULL);
	} else if (mutation != M_NO_OPS && mutation != M_NO_OUTPUT_OP) {
		tfw_op(w, second, IN(y), z, NULL);
	}
	if (mutation == M_TWO_INPUTS)
		tfw_set_extra_inputs(w, ghost);
	if (mutation == M_TWO_SUBGRAPHS)
		tfw_set_subgraphs(w, 2);
	if (mutation == M_VERSION)
		tfw_set_version(w, 2);
	tfw_io(w, mutation == M_NO_INPUTS ? -1 : x, IN(z));
}

static const bad_case_t bad_cases[] = {
	{"tanh", M_TANH, TLCM_ENOTSUP,
	 {"operator 1 (TANH)", "unsupported operator"}},
	{"concat", M_CONCAT, TLCM_ENOTSUP,
	 {"operator 1 (CONCATENATION)", "unsupported"}},
	{"custom", M_CUSTOM, TLCM_ENOTSUP,
	 {"operator 0 (CUSTOM 'MyOp')", "custom operators"}},
	{"cumsum_int_field", M_CUMSUM, TLCM_ENOTSUP,
	 {"operator 1 (CUMSUM)"}},
	{"unknown_code", M_UNKNOWN_CODE, TLCM_ENOTSUP,
	 {"operator 1 (builtin 999)"}},
	{"int8_input", M_INT8_INPUT, TLCM_ENOTSUP,
	 {"tensor 0 'input'", "INT8", "quantized models are not supported"}},
	{"int8_weights", M_INT8_WEIGHTS, TLCM_ENOTSUP,
	 {"operator 0 (CONV_2D)", "'filter' has type INT8",
	  "quantized"}},
	{"quantized_weights", M_QUANT_WEIGHTS, TLCM_ENOTSUP,
	 {"'filter'", "is quantized"}},
	{"short_weights", M_SHORT_WEIGHTS, TLCM_EINVAL,
	 {"'filter'", "holds 100 bytes, expected 216"}},
	{"opcode_range", M_OPCODE_RANGE, TLCM_EINVAL,
	 {"operator 1", "opcode_index 42 out of range (2 operator codes)"}},
	{"buffer_range", M_BUFFER_RANGE, TLCM_EINVAL,
	 {"'filter'", "buffer 77 out of range"}},
	{"tensor_range", M_TENSOR_RANGE, TLCM_EINVAL,
	 {"operator 0 (CONV_2D)", "input 1 is tensor 99, out of range"}},
	{"two_subgraphs", M_TWO_SUBGRAPHS, TLCM_ENOTSUP, {"2 subgraphs"}},
	{"version", M_VERSION, TLCM_ENOTSUP, {"schema version 2"}},
	{"two_inputs", M_TWO_INPUTS, TLCM_ENOTSUP, {"2 inputs"}},
	{"no_inputs", M_NO_INPUTS, TLCM_ENOTSUP, {"0 inputs"}},
	{"options_type", M_OPTIONS_TYPE, TLCM_EINVAL,
	 {"operator 0 (CONV_2D)", "Pool2DOptions", "expected Conv2DOptions"}},
	{"output_shape", M_OUT_SHAPE, TLCM_EINVAL,
	 {"operator 0 (CONV_2D)", "'conv' has shape [1,3,4,3]",
	  "expected [1,4,4,3]"}},
	{"uncomputed", M_UNCOMPUTED, TLCM_EINVAL,
	 {"operator 0 (CONV_2D)", "'ghost' before any operator computes it"}},
	{"write_input", M_WRITE_INPUT, TLCM_EINVAL,
	 {"operator 1 (RELU)", "writes tensor 0 'input'"}},
	{"fused_tanh", M_FUSED_TANH, TLCM_ENOTSUP,
	 {"operator 0 (CONV_2D)", "fused activation TANH"}},
	{"mean_axis", M_MEAN_AXIS, TLCM_ENOTSUP,
	 {"operator 1 (MEAN)", "H and W"}},
	{"batch2", M_BATCH2, TLCM_ENOTSUP, {"'input'", "batch 2"}},
	{"softmax_beta", M_BETA, TLCM_ENOTSUP,
	 {"operator 1 (SOFTMAX)", "beta 2"}},
	{"dynamic_dim", M_DYNAMIC, TLCM_EINVAL,
	 {"'input'", "dimension 1 is -1"}},
	{"runtime_weights", M_RUNTIME_WEIGHTS, TLCM_ENOTSUP,
	 {"operator 0 (CONV_2D)", "'filter' must be a constant"}},
	{"output_not_computed", M_NO_OUTPUT_OP, TLCM_EINVAL,
	 {"output tensor 3 'output' is never computed"}},
	{"no_ops", M_NO_OPS, TLCM_EINVAL, {"never computed"}},
	{"broadcast", M_BROADCAST, TLCM_ENOTSUP,
	 {"operator 1 (ADD)", "[1,4,4,3] and [4,1]", "per channel"}},
	{"pool_no_options", M_NO_POOL_OPTIONS, TLCM_EINVAL,
	 {"operator 1 (MAX_POOL_2D)", "Pool2DOptions"}},
	{"pad_channels", M_PAD_CHANNELS, TLCM_ENOTSUP,
	 {"operator 1 (PAD)", "padding of H and W"}},
	{"stride_zero", M_STRIDE0, TLCM_EINVAL,
	 {"operator 0 (CONV_2D)", "height: kernel 3, stride 0"}},
	{"depth_multiplier", M_DEPTH_MULT, TLCM_EINVAL,
	 {"operator 0 (DEPTHWISE_CONV_2D)", "'filter' has shape [3,3,3,2]",
	  "expected [1,*,*,*]"}},
	{"fc_inputs", M_FC_IN, TLCM_EINVAL,
	 {"operator 1 (FULLY_CONNECTED)", "[1,4,4,3]", "7 values"}},
};

#define NBAD (sizeof bad_cases / sizeof *bad_cases)

/* Patch a finished file: opcode/buffer indices out of range (fields at
 * their default are not stored, so patch ones that are not 0). */
static void corrupt(void *buf, int mutation)
{
	tflite_Model_table_t m = tflite_Model_as_root(buf);
	tflite_SubGraph_table_t sg = tflite_Model_subgraphs_at(m, 0);
	if (mutation == M_OPCODE_RANGE) {
		tflite_Operator_table_t op = tflite_SubGraph_operators_at(sg, 1);
		uint8_t *p = (uint8_t *)tlcm_fb_field(op, 4); /* opcode_index */
		if (p)
			memcpy(p, &(uint32_t){42}, 4);
		else
			fprintf(stderr, "opcode_range: field absent\n");
	} else if (mutation == M_BUFFER_RANGE) {
		tflite_Tensor_table_t t = tflite_SubGraph_tensors_at(sg, 1);
		uint8_t *p = (uint8_t *)tlcm_fb_field(t, 8); /* buffer */
		if (p)
			memcpy(p, &(uint32_t){77}, 4);
		else
			fprintf(stderr, "buffer_range: field absent\n");
	}
}

static void test_bad(void)
{
	for (size_t i = 0; i < NBAD; i++) {
		const bad_case_t *bc = &bad_cases[i];
		tfw_t *w = tfw_new();
		void *tfl = NULL, *tlm = NULL;
		size_t len = 0, tlm_len = 0;
		char why[512] = "";
		CHECK(w != NULL);
		if (!w)
			return;
		bad_model(w, bc->mutation);
		CHECK_INT(tfw_finish(w, &tfl, &len), 0);
		tfw_free(w);
		if (!tfl)
			continue;
		corrupt(tfl, bc->mutation);
		int rc = tlcm_tflite_to_tlm(tfl, len, &tlm, &tlm_len, why,
					    sizeof why);
		tlcm_test_checks++;
		if (rc != bc->rc)
			TLCM__FAIL("%s: rc %d (%s), expected %d; message: %s",
				   bc->name, rc, tlcm_strerror(rc), bc->rc,
				   why);
		for (int k = 0; k < 3 && bc->expect[k]; k++)
			CHECK_CONTAINS(why, bc->expect[k]);
		CHECK(tlm == NULL && tlm_len == 0);
		free(tlm);
		free(tfl);
	}
}

/* Not a .tflite at all, truncated, bit flips: an error or (for harmless
 * flips) a model that loads; never a crash (ASan/UBSan builds). */
static void test_corrupt_bytes(void)
{
	void *tfl = NULL, *tlm = NULL;
	size_t len = 0, tlm_len = 0;
	char why[512];
	CHECK_INT(tlcm_tflite_to_tlm(NULL, 0, &tlm, &tlm_len, why, sizeof why),
		  TLCM_EBADMSG);
	CHECK_CONTAINS(why, "not a valid .tflite file");
	CHECK_INT(tlcm_tflite_to_tlm("hello", 5, &tlm, &tlm_len, why,
				     sizeof why),
		  TLCM_EBADMSG);

	const good_case_t *gc = &good_cases[NGOOD - 1];
	CHECK_INT(write_tflite(gc, &tfl, &len), 0);
	if (!tfl)
		return;
	/* a .tlm is not a .tflite: the identifier differs */
	CHECK_INT(tlcm_tflite_to_tlm(tfl, len, &tlm, &tlm_len, why, sizeof why),
		  0);
	void *tlm2 = NULL;
	size_t tlm2_len = 0;
	CHECK_INT(tlcm_tflite_to_tlm(tlm, tlm_len, &tlm2, &tlm2_len, why,
				     sizeof why),
		  TLCM_EBADMSG);
	CHECK_CONTAINS(why, "identifier");
	free(tlm);
	tlm = NULL;

	/* every truncation point in steps */
	size_t bad = 0, tried = 0;
	for (size_t cut = 0; cut < len; cut += 1 + cut / 16) {
		tried++;
		int rc = tlcm_tflite_to_tlm(tfl, cut, &tlm, &tlm_len, why,
					    sizeof why);
		if (rc == 0) {
			bad++;
			free(tlm);
		} else if (!why[0]) {
			bad++;
		}
	}
	tlcm_test_checks++;
	if (bad)
		TLCM__FAIL("%zu of %zu truncations were accepted or failed "
			   "without a message", bad, tried);

	/* random bit flips, 1..4 at a time */
	uint8_t *copy = malloc(len);
	CHECK(copy != NULL);
	size_t ok = 0, refused = 0, silent = 0;
	for (int round = 0; copy && round < 3000; round++) {
		memcpy(copy, tfl, len);
		int flips = 1 + round % 4;
		for (int k = 0; k < flips; k++) {
			size_t at = (size_t)((frand() + 1.0f) * 0.5f *
					     (float)len) % len;
			copy[at] ^= (uint8_t)(1u << (round % 8));
		}
		why[0] = '\0';
		int rc = tlcm_tflite_to_tlm(copy, len, &tlm, &tlm_len, why,
					    sizeof why);
		if (rc == 0) {
			/* what imports must also load or be refused cleanly */
			tlcm_model_t *m = NULL;
			char lwhy[512] = "";
			int lrc = tlcm_model_from_buffer(&m, tlm, tlm_len,
							 "flip", lwhy,
							 sizeof lwhy);
			if (!lrc)
				tlcm_model_free(m);
			else if (!lwhy[0])
				silent++;
			free(tlm);
			tlm = NULL;
			ok++;
		} else {
			refused++;
			if (!why[0])
				silent++;
		}
	}
	CHECK_UINT(silent, 0);
	fprintf(stderr, "bit flips: %zu imported, %zu refused\n", ok, refused);
	free(copy);
	free(tfl);
}

/* Activations pointing at buffers with an empty data vector (rather than
 * the sentinel 0) are activations all the same: the same .tlm. */
static void test_empty_buffers(void)
{
	const good_case_t *gc = &good_cases[NGOOD - 1];
	void *tlm[2] = {NULL, NULL};
	size_t len[2] = {0, 0};
	char why[512] = "";
	for (int k = 0; k < 2; k++) {
		tfw_t *w = tfw_new();
		void *tfl = NULL;
		size_t tfl_len = 0;
		CHECK(w != NULL);
		if (!w)
			return;
		rng_state = 0x1234;
		gc->build(w);
		tfw_set_empty_buffers(w, k == 1);
		CHECK_INT(tfw_finish(w, &tfl, &tfl_len), 0);
		tfw_free(w);
		CHECK_INT(tlcm_tflite_to_tlm(tfl, tfl_len, &tlm[k], &len[k], why,
					     sizeof why),
			  0);
		free(tfl);
	}
	CHECK_UINT(len[0], len[1]);
	CHECK(tlm[0] && tlm[1] && len[0] == len[1] &&
	      !memcmp(tlm[0], tlm[1], len[0]));
	free(tlm[0]);
	free(tlm[1]);
}

/* An unaligned buffer is copied, not rejected by the verifier. */
static void test_unaligned(void)
{
	void *tfl = NULL, *tlm = NULL;
	size_t len = 0, tlm_len = 0;
	char why[512];
	CHECK_INT(write_tflite(&good_cases[0], &tfl, &len), 0);
	uint8_t *shifted = malloc(len + 3);
	CHECK(shifted != NULL);
	if (shifted && tfl) {
		memcpy(shifted + 3, tfl, len);
		CHECK_INT(tlcm_tflite_to_tlm(shifted + 3, len, &tlm, &tlm_len,
					     why, sizeof why),
			  0);
	}
	free(tlm);
	free(shifted);
	free(tfl);
}

/* ---- writing the cases for the ArmNN oracle ------------------------------ */

static int write_cases(const char *dir)
{
	for (size_t i = 0; i < NGOOD; i++) {
		const good_case_t *gc = &good_cases[i];
		void *tfl = NULL;
		size_t len = 0;
		char path[4096], why[512];
		if (write_tflite(gc, &tfl, &len))
			return 1;
		snprintf(path, sizeof path, "%s/%s.tflite", dir, gc->name);
		if (tfw_save(path, tfl, len)) {
			fprintf(stderr, "%s: %s\n", path, strerror(errno));
			free(tfl);
			return 1;
		}
		/* input size from the imported model */
		tlcm_model_t *m = NULL;
		int rc = tlcm_model_from_buffer(&m, tfl, len, path, why,
						sizeof why);
		free(tfl);
		if (rc) {
			fprintf(stderr, "%s\n", why);
			return 1;
		}
		size_t n = 2 * m->tensors[m->input].size;
		tlcm_model_free(m);
		float *in = malloc(n * sizeof *in);
		if (!in)
			return 1;
		fill_inputs(in, n, gc->input_scale);
		snprintf(path, sizeof path, "%s/%s.f32", dir, gc->name);
		rc = tfw_save(path, in, n * sizeof *in);
		free(in);
		if (rc) {
			fprintf(stderr, "%s: %s\n", path, strerror(errno));
			return 1;
		}
		printf("%s\t%s\n", gc->name,
		       gc->armnn_refuses ? gc->armnn_refuses : "");
	}
	return 0;
}

/* A MobileNetV2-shaped .tflite of any size, for measurements by hand. */
static int write_mobilenet(const char *path, int size, double alpha)
{
	tfw_t *w = tfw_new();
	void *tfl = NULL;
	size_t len = 0;
	if (!w)
		return 1;
	mobilenet_v2_shaped(w, size, alpha, 1000);
	int rc = tfw_finish(w, &tfl, &len);
	tfw_free(w);
	if (!rc && tfw_save(path, tfl, len)) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		rc = 1;
	}
	free(tfl);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--write-cases"))
		return write_cases(argv[2]);
	if (argc == 5 && !strcmp(argv[1], "--write-mobilenet"))
		return write_mobilenet(argv[2], atoi(argv[3]), atof(argv[4]));
	if (argc != 1) {
		fprintf(stderr, "usage: test_tflite [--write-cases DIR | "
				"--write-mobilenet FILE SIZE ALPHA]\n");
		return 2;
	}
	/* our union numbering is TFLite's */
	CHECK_INT(tflite_BuiltinOptions_Conv2DOptions, 1);
	CHECK_INT(tflite_BuiltinOptions_Pool2DOptions, 5);
	CHECK_INT(tflite_BuiltinOptions_FullyConnectedOptions, 8);
	CHECK_INT(tflite_BuiltinOptions_ReshapeOptions, 17);
	CHECK_INT(tflite_BuiltinOptions_ReducerOptions, 27);
	CHECK_INT(tflite_BuiltinOptions_HardSwishOptions, 91);
	CHECK_INT(tflite_BuiltinOptions_RightShiftOptions, 126);
	CHECK_INT(tflite_BuiltinOperator_HARD_SWISH, 117);
	CHECK_INT(tflite_BuiltinOperator_CUMSUM, 128);
	test_good();
	test_names();
	test_bad();
	test_corrupt_bytes();
	test_empty_buffers();
	test_unaligned();
	return tlcm_test_done();
}
