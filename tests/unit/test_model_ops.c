/* test_model_ops.c — every model op on XNNPACK equals the plain-C
 * reference (tests/unit/ref_ops.c) on random inputs and weights.
 *
 * Each case builds a small .tlm with the C builders, loads it (so the
 * validator accepts it), runs it through nodes/features/xnn.c with a batch
 * of n frames and t threads, runs the reference frame by frame, and
 * requires |xnn - ref| <= 1e-4 * max(1, |ref|) for every element. Cases
 * cover fused activations, strides, dilation, asymmetric padding, depth
 * multipliers, per-channel broadcasting, batches and threads, and a small
 * MobileNet-style chain.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "nodes/features/model.h"
#include "nodes/features/xnn.h"
#include "tests/tlcm_test.h"
#include "tests/unit/model_build.h"
#include "tests/unit/ref_ops.h"

#define TOL 1e-4 /* relative, floor 1 */

#define SHAPE(...)                                                      \
	(int32_t[]){__VA_ARGS__},                                       \
		(int)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

static uint64_t rng = 0x9e3779b97f4a7c15u;

static float frand(void) /* uniform in [-1, 1) */
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((double)(rng >> 11) / (double)(1ull << 53) * 2 - 1);
}

static int act(tlcm_mb_t *b, const char *name, const int32_t *s, int rank)
{
	return tlcm_mb_tensor(b, name, s, rank, NULL);
}

/* A constant of random values times scale. */
static int konst(tlcm_mb_t *b, const char *name, const int32_t *s, int rank,
		 float scale)
{
	size_t n = 1;
	for (int d = 0; d < rank; d++)
		n *= (size_t)s[d];
	float *v = malloc(n * sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = frand() * scale;
	int t = tlcm_mb_tensor(b, name, s, rank, v);
	free(v);
	return t;
}

/* Finish b (input x, outputs ys) and compare XNNPACK with the reference
 * on n frames with `threads` threads; inputs uniform in ±in_scale. */
static void run_case(const char *what, tlcm_mb_t *b, int x, const int *ys,
		     size_t ny, size_t n, int threads, float in_scale)
{
	tlcm_mb_io(b, x, ys, ny);
	size_t len;
	void *tlm = tlcm_mb_finish(b, &len);
	char why[1024] = "";
	tlcm_model_t *m = NULL;
	tlcm_xnn_t *xr = NULL;
	tlcm_xnn_batch_t *bt = NULL;
	CHECK(tlm != NULL);
	int rc = tlm ? tlcm_model_from_buffer(&m, tlm, len, what, why,
					      sizeof why) : -1;
	if (rc) {
		TLCM__FAIL("%s: model rejected: %s", what, why);
		free(tlm);
		return;
	}
	rc = tlcm_xnn_new(&xr, m, threads, why, sizeof why);
	if (!rc)
		rc = tlcm_xnn_batch(xr, n, &bt, why, sizeof why);
	if (rc) {
		TLCM__FAIL("%s: runtime: %s", what, why);
		goto out;
	}
	size_t insz = m->tensors[m->input].size;
	for (size_t i = 0; i < n * insz; i++)
		bt->input[i] = frand() * in_scale;
	float **ref = calloc(m->noutputs, sizeof *ref);
	for (size_t k = 0; k < m->noutputs; k++)
		ref[k] = malloc(n * m->tensors[m->outputs[k]].size *
				sizeof(float));
	CHECK_INT(tlcm_ref_run(m, n, bt->input, ref), 0);
	rc = tlcm_xnn_run(xr, bt, why, sizeof why);
	if (rc)
		TLCM__FAIL("%s: run: %s", what, why);
	double worst = 0;
	size_t bad = 0, total = 0;
	for (size_t k = 0; !rc && k < m->noutputs; k++) {
		size_t sz = n * m->tensors[m->outputs[k]].size;
		for (size_t i = 0; i < sz; i++, total++) {
			double a = bt->outputs[k][i], r = ref[k][i];
			double err = fabs(a - r) / fmax(1, fabs(r));
			if (!(err <= TOL) && bad++ < 5)
				fprintf(stderr, "%s: output %zu element %zu: "
					"xnnpack %.9g, reference %.9g\n", what, k,
					i, a, r);
			if (err > worst || isnan(err))
				worst = isnan(err) ? INFINITY : err;
		}
	}
	tlcm_test_checks++;
	if (bad)
		TLCM__FAIL("%s: %zu of %zu elements differ by more than %g", what,
			   bad, total, TOL);
	fprintf(stderr, "%-44s n=%zu t=%d  %6zu values  max rel err %.2g\n",
		what, n, threads, total, worst);
	for (size_t k = 0; k < m->noutputs; k++)
		free(ref[k]);
	free(ref);
out:
	tlcm_xnn_free(xr);
	tlcm_model_free(m);
	free(tlm);
}

static int out_dim(int in, int p0, int p1, int k, int s, int d)
{
	return (in + p0 + p1 - (d * (k - 1) + 1)) / s + 1;
}

/* ---- convolutions ------------------------------------------------------ */

typedef struct {
	int h, w, ci, co;   /* co: conv out channels; dw: depth multiplier */
	int kh, kw, sh, sw, dh, dw;
	int pt, pb, pl, pr;
	tlcm_Activation_enum_t act;
	bool no_bias;
} conv_t;

static void conv_case(const char *what, bool depthwise, conv_t c, size_t n,
		      int threads)
{
	tlcm_mb_t *b = tlcm_mb_new(what);
	int oc = depthwise ? c.ci * c.co : c.co;
	int oh = out_dim(c.h, c.pt, c.pb, c.kh, c.sh, c.dh);
	int ow = out_dim(c.w, c.pl, c.pr, c.kw, c.sw, c.dw);
	float ws = 1 / sqrtf((float)(c.kh * c.kw * (depthwise ? 1 : c.ci)));
	int x = act(b, "x", SHAPE(1, c.h, c.w, c.ci));
	int f = depthwise ? konst(b, "f", SHAPE(1, c.kh, c.kw, oc), ws)
			  : konst(b, "f", SHAPE(oc, c.kh, c.kw, c.ci), ws);
	int bias = c.no_bias ? -1 : konst(b, "bias", SHAPE(oc), 0.5f);
	int y = act(b, "y", SHAPE(1, oh, ow, oc));
	tlcm_op_t o = tlcm_mb_op(depthwise ? tlcm_OpType_DepthwiseConv2D
					   : tlcm_OpType_Conv2D,
				 x, f, bias, y);
	o.stride_h = c.sh;
	o.stride_w = c.sw;
	o.dilation_h = c.dh;
	o.dilation_w = c.dw;
	o.pad_top = c.pt;
	o.pad_bottom = c.pb;
	o.pad_left = c.pl;
	o.pad_right = c.pr;
	o.activation = c.act;
	if (depthwise)
		o.depth_multiplier = c.co;
	tlcm_mb_add_op(b, &o);
	run_case(what, b, x, &y, 1, n, threads, 1);
}

static void test_conv(void)
{
	conv_case("conv 3x3 s1 same relu", false,
		  (conv_t){8, 8, 3, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1,
			   tlcm_Activation_Relu, false}, 1, 1);
	conv_case("conv 3x3 s2 valid", false,
		  (conv_t){9, 9, 4, 8, 3, 3, 2, 2, 1, 1, 0, 0, 0, 0,
			   tlcm_Activation_None, false}, 2, 1);
	conv_case("conv 5x3 s(2,1) asym pad relu6", false,
		  (conv_t){10, 7, 5, 6, 5, 3, 2, 1, 1, 1, 2, 1, 0, 2,
			   tlcm_Activation_Relu6, false}, 1, 2);
	conv_case("conv 3x3 dilation 2", false,
		  (conv_t){12, 12, 3, 4, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2,
			   tlcm_Activation_None, false}, 1, 1);
	conv_case("conv 1x1 no bias", false,
		  (conv_t){6, 6, 16, 24, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0,
			   tlcm_Activation_None, true}, 3, 2);
	conv_case("conv 3x3 s2 1 output channel", false,
		  (conv_t){28, 28, 1, 1, 3, 3, 2, 2, 1, 1, 0, 1, 0, 1,
			   tlcm_Activation_Relu, false}, 1, 1);
	conv_case("dwconv 3x3 s1 same relu6", true,
		  (conv_t){8, 8, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1,
			   tlcm_Activation_Relu6, false}, 1, 1);
	conv_case("dwconv 3x3 s2 asym pad", true,
		  (conv_t){9, 10, 8, 1, 3, 3, 2, 2, 1, 1, 0, 1, 1, 0,
			   tlcm_Activation_None, false}, 2, 2);
	conv_case("dwconv multiplier 2 relu", true,
		  (conv_t){7, 7, 3, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1,
			   tlcm_Activation_Relu, false}, 1, 1);
	conv_case("dwconv 5x5 dilation 2 no bias", true,
		  (conv_t){14, 14, 4, 1, 5, 5, 1, 1, 2, 2, 4, 4, 4, 4,
			   tlcm_Activation_None, true}, 1, 1);
}

/* ---- fully connected ----------------------------------------------------- */

static void fc_case(const char *what, const int32_t *xs, int xr, int nout,
		    tlcm_Activation_enum_t a, bool no_bias, size_t n)
{
	tlcm_mb_t *b = tlcm_mb_new(what);
	int nin = 1;
	for (int d = 0; d < xr; d++)
		nin *= xs[d];
	int x = act(b, "x", xs, xr);
	int w = konst(b, "w", SHAPE(nout, nin), 1 / sqrtf((float)nin));
	int bias = no_bias ? -1 : konst(b, "b", SHAPE(nout), 0.5f);
	int y = act(b, "y", SHAPE(1, nout));
	tlcm_op_t o = tlcm_mb_op(tlcm_OpType_FullyConnected, x, w, bias, y);
	o.activation = a;
	tlcm_mb_add_op(b, &o);
	run_case(what, b, x, &y, 1, n, 1, 1);
}

static void test_fc(void)
{
	fc_case("fc 32->16", SHAPE(1, 32), 16, tlcm_Activation_None, false, 1);
	fc_case("fc [1,4,4,8] flattened ->10 relu", SHAPE(1, 4, 4, 8), 10,
		tlcm_Activation_Relu, false, 3);
	fc_case("fc 100->7 no bias relu6", SHAPE(1, 100), 7,
		tlcm_Activation_Relu6, true, 2);
}

/* ---- pooling ------------------------------------------------------------- */

static void pool_case(const char *what, tlcm_OpType_enum_t type, conv_t c,
		      size_t n)
{
	tlcm_mb_t *b = tlcm_mb_new(what);
	int oh = out_dim(c.h, c.pt, c.pb, c.kh, c.sh, c.dh);
	int ow = out_dim(c.w, c.pl, c.pr, c.kw, c.sw, c.dw);
	int x = act(b, "x", SHAPE(1, c.h, c.w, c.ci));
	int y = act(b, "y", SHAPE(1, oh, ow, c.ci));
	tlcm_op_t o = tlcm_mb_op(type, x, -1, -1, y);
	o.kernel_h = c.kh;
	o.kernel_w = c.kw;
	o.stride_h = c.sh;
	o.stride_w = c.sw;
	o.dilation_h = c.dh;
	o.dilation_w = c.dw;
	o.pad_top = c.pt;
	o.pad_bottom = c.pb;
	o.pad_left = c.pl;
	o.pad_right = c.pr;
	o.activation = c.act;
	tlcm_mb_add_op(b, &o);
	run_case(what, b, x, &y, 1, n, 1, 1);
}

static void test_pool(void)
{
	tlcm_OpType_enum_t avg = tlcm_OpType_AveragePool2D,
			   max = tlcm_OpType_MaxPool2D;
	pool_case("avgpool 2x2 s2", avg,
		  (conv_t){8, 8, 5, 0, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0,
			   tlcm_Activation_None, false}, 2);
	pool_case("avgpool 3x3 s1 pad 1 (padding excluded) relu", avg,
		  (conv_t){7, 6, 3, 0, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1,
			   tlcm_Activation_Relu, false}, 1);
	pool_case("avgpool 3x2 s(2,1) asym pad", avg,
		  (conv_t){9, 8, 4, 0, 3, 2, 2, 1, 1, 1, 0, 1, 1, 0,
			   tlcm_Activation_None, false}, 1);
	pool_case("maxpool 2x2 s2", max,
		  (conv_t){8, 8, 5, 0, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0,
			   tlcm_Activation_None, false}, 3);
	pool_case("maxpool 3x3 s2 pad 1 relu6", max,
		  (conv_t){9, 9, 6, 0, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1,
			   tlcm_Activation_Relu6, false}, 1);
	pool_case("maxpool 1x1 s2 (as a 1x1 depthwise conv)", max,
		  (conv_t){9, 8, 4, 0, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0,
			   tlcm_Activation_Relu, false}, 2);
	pool_case("avgpool 1x1 s1 relu6", avg,
		  (conv_t){5, 5, 3, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0,
			   tlcm_Activation_Relu6, false}, 1);
	pool_case("maxpool 2x2 dilation 2", max,
		  (conv_t){10, 10, 3, 0, 2, 2, 1, 1, 2, 2, 0, 0, 0, 0,
			   tlcm_Activation_None, false}, 1);
}

static void gap_case(const char *what, bool four_d,
		     tlcm_Activation_enum_t a, size_t n)
{
	tlcm_mb_t *b = tlcm_mb_new(what);
	int x = act(b, "x", SHAPE(1, 6, 5, 12));
	int y = four_d ? act(b, "y", SHAPE(1, 1, 1, 12))
		       : act(b, "y", SHAPE(1, 12));
	tlcm_op_t o = tlcm_mb_op(tlcm_OpType_GlobalAveragePool, x, -1, -1, y);
	o.activation = a;
	tlcm_mb_add_op(b, &o);
	run_case(what, b, x, &y, 1, n, 1, 1);
}

/* ---- element-wise ---------------------------------------------------------- */

/* a (op) b: b a constant of shape bs, or (bs NULL) relu(x) of x's shape. */
static void binary_case(const char *what, tlcm_OpType_enum_t type,
			const int32_t *bs, int br, tlcm_Activation_enum_t a,
			size_t n, int threads)
{
	tlcm_mb_t *b = tlcm_mb_new(what);
	int x = act(b, "x", SHAPE(1, 5, 4, 6));
	int y = act(b, "y", SHAPE(1, 5, 4, 6));
	int k;
	if (bs) {
		k = konst(b, "k", bs, br, 1);
	} else {
		k = act(b, "r", SHAPE(1, 5, 4, 6));
		tlcm_op_t r = tlcm_mb_op(tlcm_OpType_Relu, x, -1, -1, k);
		tlcm_mb_add_op(b, &r);
	}
	tlcm_op_t o = tlcm_mb_op(type, x, k, -1, y);
	o.activation = a;
	tlcm_mb_add_op(b, &o);
	run_case(what, b, x, &y, 1, n, threads, 2);
}

static void unary_case(const char *what, tlcm_OpType_enum_t type,
		       const int32_t *s, int rank, float lo, float hi,
		       float in_scale, size_t n)
{
	tlcm_mb_t *b = tlcm_mb_new(what);
	int x = act(b, "x", s, rank), y = act(b, "y", s, rank);
	tlcm_op_t o = tlcm_mb_op(type, x, -1, -1, y);
	o.clamp_min = lo;
	o.clamp_max = hi;
	tlcm_mb_add_op(b, &o);
	run_case(what, b, x, &y, 1, n, 1, in_scale);
}

static void test_elementwise(void)
{
	tlcm_OpType_enum_t add = tlcm_OpType_Add, mul = tlcm_OpType_Multiply;
	binary_case("add same shape (two activations)", add, NULL, 0,
		    tlcm_Activation_None, 2, 1);
	binary_case("add per-channel [C] relu", add, SHAPE(6),
		    tlcm_Activation_Relu, 1, 1);
	binary_case("add per-channel [1,1,1,C]", add, SHAPE(1, 1, 1, 6),
		    tlcm_Activation_None, 3, 2);
	binary_case("add constant of the same shape relu6", add,
		    SHAPE(1, 5, 4, 6), tlcm_Activation_Relu6, 2, 1);
	binary_case("multiply same shape (two activations)", mul, NULL, 0,
		    tlcm_Activation_None, 1, 1);
	binary_case("multiply per-channel [C] relu", mul, SHAPE(6),
		    tlcm_Activation_Relu, 2, 2);
	unary_case("relu", tlcm_OpType_Relu, SHAPE(1, 4, 4, 3), 0, 0, 3, 2);
	unary_case("relu6", tlcm_OpType_Relu6, SHAPE(1, 4, 4, 3), 0, 0, 9, 1);
	unary_case("clamp [-0.5, 0.25]", tlcm_OpType_Clamp, SHAPE(1, 37), -0.5f,
		   0.25f, 1, 2);
	unary_case("hardswish", tlcm_OpType_HardSwish, SHAPE(1, 4, 4, 8), 0, 0,
		   5, 2);
	unary_case("sigmoid", tlcm_OpType_Sigmoid, SHAPE(1, 4, 4, 8), 0, 0, 8,
		   1);
	unary_case("softmax [1,10]", tlcm_OpType_Softmax, SHAPE(1, 10), 0, 0, 5,
		   3);
	unary_case("softmax [1,2,3,7] last dim", tlcm_OpType_Softmax,
		   SHAPE(1, 2, 3, 7), 0, 0, 5, 1);
}

/* ---- shapes ---------------------------------------------------------------- */

static void test_shapes(void)
{
	tlcm_mb_t *b = tlcm_mb_new("reshape");
	int x = act(b, "x", SHAPE(1, 4, 4, 2));
	int y = act(b, "y", SHAPE(1, 32));
	tlcm_op_t o = tlcm_mb_op(tlcm_OpType_Reshape, x, -1, -1, y);
	tlcm_mb_add_op(b, &o);
	run_case("reshape [1,4,4,2] -> [1,32]", b, x, &y, 1, 3, 1, 1);

	b = tlcm_mb_new("reshape4");
	x = act(b, "x", SHAPE(1, 24));
	y = act(b, "y", SHAPE(1, 2, 3, 4));
	o = tlcm_mb_op(tlcm_OpType_Reshape, x, -1, -1, y);
	tlcm_mb_add_op(b, &o);
	run_case("reshape [1,24] -> [1,2,3,4]", b, x, &y, 1, 2, 1, 1);

	b = tlcm_mb_new("pad");
	x = act(b, "x", SHAPE(1, 5, 4, 3));
	y = act(b, "y", SHAPE(1, 8, 7, 3));
	o = tlcm_mb_op(tlcm_OpType_Pad, x, -1, -1, y);
	o.pad_top = 1;
	o.pad_bottom = 2;
	o.pad_left = 0;
	o.pad_right = 3;
	o.pad_value = 0.5f;
	tlcm_mb_add_op(b, &o);
	run_case("pad t1 b2 l0 r3 value 0.5", b, x, &y, 1, 2, 1, 1);

	gap_case("global avgpool -> [1,C]", false, tlcm_Activation_None, 2);
	gap_case("global avgpool -> [1,1,1,C] relu", true,
		 tlcm_Activation_Relu, 1);
}

/* ---- a MobileNet-style chain ------------------------------------------------ */

/* conv s2 -> dw -> 1x1 expand, + residual, hardswish, GAP, FC, softmax;
 * two outputs (embedding and logits), one of them consumed downstream. */
static void chain_case(size_t n, int threads)
{
	tlcm_mb_t *b = tlcm_mb_new("chain");
	int x = act(b, "x", SHAPE(1, 16, 16, 3));
	int c1 = act(b, "c1", SHAPE(1, 8, 8, 8));
	int d1 = act(b, "d1", SHAPE(1, 8, 8, 8));
	int p1 = act(b, "p1", SHAPE(1, 8, 8, 8));
	int s1 = act(b, "s1", SHAPE(1, 8, 8, 8));
	int h1 = act(b, "h1", SHAPE(1, 8, 8, 8));
	int emb = act(b, "embedding", SHAPE(1, 8));
	int lg = act(b, "logits", SHAPE(1, 5));
	int pr = act(b, "probs", SHAPE(1, 5));
	int k1 = konst(b, "c1.w", SHAPE(8, 3, 3, 3), 0.3f);
	int kb1 = konst(b, "c1.b", SHAPE(8), 0.1f);
	int k2 = konst(b, "d1.w", SHAPE(1, 3, 3, 8), 0.3f);
	int k3 = konst(b, "p1.w", SHAPE(8, 1, 1, 8), 0.3f);
	int kb3 = konst(b, "p1.b", SHAPE(8), 0.1f);
	int k4 = konst(b, "fc.w", SHAPE(5, 8), 0.3f);
	int kb4 = konst(b, "fc.b", SHAPE(5), 0.1f);
	tlcm_op_t o = tlcm_mb_op(tlcm_OpType_Conv2D, x, k1, kb1, c1);
	o.stride_h = o.stride_w = 2;
	o.pad_bottom = o.pad_right = 1;
	o.activation = tlcm_Activation_Relu6;
	tlcm_mb_add_op(b, &o);
	o = tlcm_mb_op(tlcm_OpType_DepthwiseConv2D, c1, k2, -1, d1);
	o.pad_top = o.pad_bottom = o.pad_left = o.pad_right = 1;
	o.activation = tlcm_Activation_Relu;
	tlcm_mb_add_op(b, &o);
	o = tlcm_mb_op(tlcm_OpType_Conv2D, d1, k3, kb3, p1);
	tlcm_mb_add_op(b, &o);
	o = tlcm_mb_op(tlcm_OpType_Add, p1, c1, -1, s1);
	tlcm_mb_add_op(b, &o);
	o = tlcm_mb_op(tlcm_OpType_HardSwish, s1, -1, -1, h1);
	tlcm_mb_add_op(b, &o);
	o = tlcm_mb_op(tlcm_OpType_GlobalAveragePool, h1, -1, -1, emb);
	tlcm_mb_add_op(b, &o);
	o = tlcm_mb_op(tlcm_OpType_FullyConnected, emb, k4, kb4, lg);
	tlcm_mb_add_op(b, &o);
	o = tlcm_mb_op(tlcm_OpType_Softmax, lg, -1, -1, pr);
	tlcm_mb_add_op(b, &o);
	int outs[3] = {emb, lg, pr};
	char what[64];
	snprintf(what, sizeof what, "chain conv/dw/add/hswish/gap/fc/softmax");
	run_case(what, b, x, outs, 3, n, threads, 1);
}

/* Runtimes for several batch sizes live side by side in one object. */
static void test_batches_share_object(void)
{
	tlcm_mb_t *b = tlcm_mb_new("relu");
	int x = act(b, "x", SHAPE(1, 3, 3, 2)), y = act(b, "y", SHAPE(1, 18));
	int r = act(b, "r", SHAPE(1, 3, 3, 2));
	tlcm_op_t o = tlcm_mb_op(tlcm_OpType_Relu, x, -1, -1, r);
	tlcm_mb_add_op(b, &o);
	o = tlcm_mb_op(tlcm_OpType_Reshape, r, -1, -1, y);
	tlcm_mb_add_op(b, &o);
	tlcm_mb_io(b, x, &y, 1);
	size_t len;
	void *tlm = tlcm_mb_finish(b, &len);
	char why[512];
	tlcm_model_t *m;
	tlcm_xnn_t *xr;
	tlcm_xnn_batch_t *b1, *b4, *again;
	CHECK_INT(tlcm_model_from_buffer(&m, tlm, len, "relu", why, sizeof why),
		  0);
	CHECK_INT(tlcm_xnn_new(&xr, m, 1, why, sizeof why), 0);
	CHECK_INT(tlcm_xnn_batch(xr, 1, &b1, why, sizeof why), 0);
	CHECK_INT(tlcm_xnn_batch(xr, 4, &b4, why, sizeof why), 0);
	CHECK_INT(tlcm_xnn_batch(xr, 1, &again, why, sizeof why), 0);
	CHECK(b1 == again && b1 != b4);
	CHECK_INT(tlcm_xnn_batch(xr, 0, &again, why, sizeof why), TLCM_EINVAL);
	for (int i = 0; i < 18; i++)
		b1->input[i] = (float)(i - 9);
	for (int i = 0; i < 72; i++)
		b4->input[i] = (float)(i % 18 - 9) * (float)(i / 18 + 1);
	CHECK_INT(tlcm_xnn_run(xr, b1, why, sizeof why), 0);
	CHECK_INT(tlcm_xnn_run(xr, b4, why, sizeof why), 0);
	for (int i = 0; i < 18; i++)
		CHECK_DBL(b1->outputs[0][i], i < 9 ? 0 : i - 9);
	for (int i = 0; i < 72; i++)
		CHECK_DBL(b4->outputs[0][i],
			  i % 18 < 9 ? 0 : (i % 18 - 9) * (i / 18 + 1));
	tlcm_xnn_free(xr);
	tlcm_model_free(m);
	free(tlm);
}

int main(void)
{
	test_conv();
	test_fc();
	test_pool();
	test_elementwise();
	test_shapes();
	chain_case(1, 1);
	chain_case(4, 2);
	test_batches_share_object();
	return tlcm_test_done();
}
