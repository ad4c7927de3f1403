/* test_model_bad.c — bad model files give clear errors, never a crash.
 *
 * Damaged bytes: every truncation of a small valid model, every single
 * bit flip (a flip the verifier and the checks accept must still
 * build and run on XNNPACK), a wrong file identifier, junk posing as
 * .tflite, a missing file. Inconsistent models, built with the C builders:
 * each must be refused with a message naming the tensor or op (index,
 * type, name) and what was expected. Meant to run under ASan/UBSan too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodes/features/model.h"
#include "nodes/features/xnn.h"
#include "tests/tlcm_test.h"
#include "tests/unit/model_build.h"

#define SHAPE(...)                                                      \
	(int32_t[]){__VA_ARGS__},                                       \
		(int)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

static float zeros[4096];

/* ---- a small valid model: conv -> relu -> GAP (embedding) -> FC ---------- */

typedef struct {
	tlcm_mb_t *b;
	int x, f, fb, c, r, e, w, wb, l;
} net_t;

/* The valid net's tensors and ops, before any damage. */
static net_t net_tensors(void)
{
	net_t n;
	n.b = tlcm_mb_new("net");
	n.x = tlcm_mb_tensor(n.b, "x", SHAPE(1, 8, 8, 3), NULL);
	n.f = tlcm_mb_tensor(n.b, "conv.w", SHAPE(4, 3, 3, 3), zeros);
	n.fb = tlcm_mb_tensor(n.b, "conv.b", SHAPE(4), zeros);
	n.c = tlcm_mb_tensor(n.b, "conv", SHAPE(1, 6, 6, 4), NULL);
	n.r = tlcm_mb_tensor(n.b, "relu", SHAPE(1, 6, 6, 4), NULL);
	n.e = tlcm_mb_tensor(n.b, "embedding", SHAPE(1, 4), NULL);
	n.w = tlcm_mb_tensor(n.b, "fc.w", SHAPE(2, 4), zeros);
	n.wb = tlcm_mb_tensor(n.b, "fc.b", SHAPE(2), zeros);
	n.l = tlcm_mb_tensor(n.b, "logits", SHAPE(1, 2), NULL);
	return n;
}

/* The net's ops, op k replaced by *alt when alt_k == k. */
static void net_ops(net_t *n, int alt_k, const tlcm_op_t *alt)
{
	tlcm_op_t ops[4] = {
		tlcm_mb_op(tlcm_OpType_Conv2D, n->x, n->f, n->fb, n->c),
		tlcm_mb_op(tlcm_OpType_Relu, n->c, -1, -1, n->r),
		tlcm_mb_op(tlcm_OpType_GlobalAveragePool, n->r, -1, -1, n->e),
		tlcm_mb_op(tlcm_OpType_FullyConnected, n->e, n->w, n->wb, n->l),
	};
	for (int k = 0; k < 4; k++)
		tlcm_mb_add_op(n->b, k == alt_k ? alt : &ops[k]);
}

static void *net_finish(net_t *n, size_t *len)
{
	int outs[2] = {n->e, n->l};
	tlcm_mb_io(n->b, n->x, outs, 2);
	return tlcm_mb_finish(n->b, len);
}

static void *valid_net(size_t *len)
{
	net_t n = net_tensors();
	net_ops(&n, -1, NULL);
	return net_finish(&n, len);
}

/* Load buf; when it loads, build and run it on XNNPACK too. Returns the
 * load status, why filled. */
static int load_and_run(const void *buf, size_t len, char *why, size_t cap)
{
	tlcm_model_t *m = NULL;
	int rc = tlcm_model_from_buffer(&m, buf, len, "bad.tlm", why, cap);
	if (rc) {
		CHECK(m == NULL);
		return rc;
	}
	tlcm_xnn_t *x = NULL;
	tlcm_xnn_batch_t *b;
	char w2[512];
	if (!tlcm_xnn_new(&x, m, 1, w2, sizeof w2) &&
	    !tlcm_xnn_batch(x, 2, &b, w2, sizeof w2))
		tlcm_xnn_run(x, b, w2, sizeof w2);
	tlcm_xnn_free(x);
	tlcm_model_free(m);
	return 0;
}

/* ---- damaged bytes ------------------------------------------------------- */

static void test_valid_net_loads(void)
{
	size_t len;
	void *buf = valid_net(&len);
	char why[512] = "";
	CHECK_INT(load_and_run(buf, len, why, sizeof why), 0);
	free(buf);
}

static void test_truncated(void)
{
	size_t len;
	uint8_t *buf = valid_net(&len);
	int refused = 0;
	for (size_t n = 0; n < len; n++) {
		char why[512] = "";
		uint8_t *cut = malloc(n ? n : 1); /* exact size for ASan */
		memcpy(cut, buf, n);
		int rc = load_and_run(cut, n, why, sizeof why);
		free(cut);
		if (rc) {
			refused++;
			CHECK_CONTAINS(why, "bad.tlm: ");
			continue;
		}
		/* only trailing padding may go without losing data */
		for (size_t i = n; i < len; i++)
			CHECK_UINT(buf[i], 0);
	}
	CHECK(refused > (int)len - 8);
	char why[512];
	CHECK_INT(load_and_run(buf, 0, why, sizeof why), TLCM_EBADMSG);
	fprintf(stderr, "truncations: %zu of %zu refused; e.g. %s\n",
		(size_t)refused, len, why);
	free(buf);
}

static void test_bit_flips(void)
{
	size_t len;
	uint8_t *buf = valid_net(&len);
	uint8_t *copy = malloc(len);
	int refused = 0, accepted = 0;
	for (size_t i = 0; i < len; i++)
		for (int bit = 0; bit < 8; bit++) {
			char why[512] = "";
			memcpy(copy, buf, len);
			copy[i] ^= (uint8_t)(1u << bit);
			int rc = load_and_run(copy, len, why, sizeof why);
			if (rc) {
				refused++;
				CHECK(why[0] != 0);
			} else {
				accepted++;
			}
		}
	fprintf(stderr, "bit flips: %d refused, %d accepted (weights, names, "
		"unused fields) and run\n", refused, accepted);
	CHECK(refused > 0 && accepted > 0);
	free(copy);
	free(buf);
}

static void test_identifier_and_files(void)
{
	size_t len;
	uint8_t *buf = valid_net(&len);
	char why[512];
	memcpy(buf + 4, "TLMX", 4);
	CHECK_INT(load_and_run(buf, len, why, sizeof why), TLCM_EBADMSG);
	CHECK_CONTAINS(why, "not a valid TinyLCM model");
	CHECK_CONTAINS(why, "identifier");
	memcpy(buf + 4, "TFL3", 4); /* posing as .tflite: the importer judges */
	CHECK(load_and_run(buf, len, why, sizeof why) != 0);
	CHECK_CONTAINS(why, "bad.tlm: .tflite import failed");
	tlcm_model_t *m = (tlcm_model_t *)1;
	CHECK_INT(tlcm_model_load(&m, "/nonexistent/model.tlm", why, sizeof why),
		  TLCM_ENOENT);
	CHECK(m == NULL);
	CHECK_CONTAINS(why, "/nonexistent/model.tlm: cannot open");
	free(buf);
}

/* ---- inconsistent models --------------------------------------------------- */

/* The net with op k replaced by alt must be refused, naming `expect`. */
static void bad_op(const char *what, int k, tlcm_op_t alt,
		   const char *expect)
{
	net_t n = net_tensors();
	net_ops(&n, k, &alt);
	size_t len;
	void *buf = net_finish(&n, &len);
	char why[512] = "";
	int rc = load_and_run(buf, len, why, sizeof why);
	tlcm_test_checks++;
	if (rc == 0)
		TLCM__FAIL("%s: accepted", what);
	CHECK_CONTAINS(why, expect);
	fprintf(stderr, "%-28s %s\n", what, why);
	free(buf);
}

static void test_bad_ops(void)
{
	net_t n = net_tensors(); /* indices only */
	free(tlcm_mb_finish(n.b, &(size_t){0}));
	tlcm_op_t o;

	o = tlcm_mb_op(tlcm_OpType_Conv2D, n.x, n.f, n.fb, n.c);
	o.stride_h = 2;
	bad_op("conv output shape", 0, o, "op 0 (Conv2D -> 'conv'): output "
	       "tensor 3 'conv' has shape [1,6,6,4], expected [1,3,6,4]");
	o = tlcm_mb_op(tlcm_OpType_Conv2D, n.c, n.f, n.fb, n.c);
	bad_op("conv reads its own output", 0, o,
	       "reads tensor 3 'conv' before any op writes it");
	o = tlcm_mb_op(tlcm_OpType_Conv2D, n.x, n.w, n.fb, n.c);
	bad_op("conv filter rank", 0, o, "filter tensor 6 'fc.w' has shape "
	       "[2,4], expected rank 4");
	o = tlcm_mb_op(tlcm_OpType_Conv2D, n.x, n.f, n.wb, n.c);
	bad_op("conv bias shape", 0, o,
	       "bias tensor 7 'fc.b' has shape [2], expected [4]");
	o = tlcm_mb_op(tlcm_OpType_Conv2D, n.x, n.f, 99, n.c);
	bad_op("bias index", 0, o, "bias tensor index 99 out of range, "
	       "expected 0..8 or -1 (no bias)");
	o = tlcm_mb_op(tlcm_OpType_Conv2D, n.x, n.x, n.fb, n.c);
	bad_op("filter not constant", 0, o, "filter tensor 0 'x' has no data, "
	       "expected constant weights");
	o = tlcm_mb_op(tlcm_OpType_Conv2D, n.f, n.f, n.fb, n.c);
	bad_op("input constant", 0, o,
	       "input tensor 1 'conv.w' is a constant");
	o = tlcm_mb_op(tlcm_OpType_Conv2D, n.x, n.f, n.fb, n.c);
	o.pad_left = -1;
	bad_op("negative padding", 0, o, "padding top 0 bottom 0 left -1 right"
	       " 0, expected >= 0");
	o = tlcm_mb_op(tlcm_OpType_Conv2D, n.x, n.f, n.fb, n.c);
	o.dilation_w = 0;
	bad_op("dilation 0", 0, o, "dilation 1x0, expected >= 1");
	o = tlcm_mb_op(tlcm_OpType_Conv2D, n.x, n.f, n.fb, n.c);
	o.dilation_h = o.dilation_w = 5;
	bad_op("kernel larger than input", 0, o, "padded input height 8 is "
	       "smaller than the (dilated) kernel 11");
	o = tlcm_mb_op(tlcm_OpType_Conv2D, n.x, n.f, n.fb, n.c);
	o.activation = 7;
	bad_op("unknown activation", 0, o, "unknown fused activation 7");
	o = tlcm_mb_op(tlcm_OpType_DepthwiseConv2D, n.x, n.f, n.fb, n.c);
	bad_op("depthwise filter layout", 0, o, "op 0 (DepthwiseConv2D -> "
	       "'conv'): filter tensor 1 'conv.w' has shape [4,3,3,3], "
	       "expected [1,kh,kw,3]");
	o = tlcm_mb_op(42, n.x, -1, -1, n.c);
	bad_op("unknown op type", 0, o, "op 0 has unknown type 42");

	o = tlcm_mb_op(tlcm_OpType_Relu, n.c, -1, -1, n.r);
	o.activation = tlcm_Activation_Relu6;
	bad_op("activation on relu", 1, o, "op 1 (Relu -> 'relu'): a fused "
	       "activation (Relu6) on an op that has none");
	o = tlcm_mb_op(tlcm_OpType_Relu, n.c, -1, -1, n.c);
	bad_op("written twice", 1, o, "writes tensor 3 'conv', already "
	       "written by op 0");
	o = tlcm_mb_op(tlcm_OpType_Relu, n.c, -1, -1, n.f);
	bad_op("writes a constant", 1, o, "writes constant tensor 1 'conv.w'");
	o = tlcm_mb_op(tlcm_OpType_Relu, n.c, -1, -1, n.x);
	bad_op("writes the input", 1, o, "writes the model input tensor 0 'x'");
	o = tlcm_mb_op(tlcm_OpType_Relu, n.c, -1, -1, n.r);
	o.nin = 0;
	bad_op("no inputs", 1, o, "op 1 (Relu -> 'relu') has 0 inputs, "
	       "expected 1");
	o = tlcm_mb_op(tlcm_OpType_Clamp, n.c, -1, -1, n.r);
	o.clamp_min = 1;
	o.clamp_max = -1;
	bad_op("clamp min > max", 1, o, "clamp_min 1 > clamp_max -1");
	o = tlcm_mb_op(tlcm_OpType_Add, n.c, n.wb, -1, n.r);
	bad_op("add broadcast", 1, o, "second input tensor 7 'fc.b' has shape "
	       "[2], expected the first's [1,6,6,4] or [4] (per channel)");
	o = tlcm_mb_op(tlcm_OpType_Reshape, n.c, -1, -1, n.e);
	bad_op("reshape size", 1, o, "output tensor 5 'embedding' has shape "
	       "[1,4] (4 elements), expected 144 elements");
	o = tlcm_mb_op(tlcm_OpType_Pad, n.c, -1, -1, n.r);
	o.pad_top = 1;
	bad_op("pad output shape", 1, o, "op 1 (Pad -> 'relu'): output tensor 4"
	       " 'relu' has shape [1,6,6,4], expected [1,7,6,4]");
	o = tlcm_mb_op(tlcm_OpType_AveragePool2D, n.c, -1, -1, n.r);
	o.kernel_h = o.kernel_w = 1;
	o.dilation_h = 2;
	bad_op("avgpool dilation", 1, o, "dilation 2x1, expected 1x1");
	o = tlcm_mb_op(tlcm_OpType_MaxPool2D, n.c, -1, -1, n.r);
	bad_op("pool kernel 0", 1, o, "kernel 0x0, expected >= 1");
	o = tlcm_mb_op(tlcm_OpType_MaxPool2D, n.c, -1, -1, n.r);
	o.kernel_h = o.kernel_w = 2;
	o.pad_bottom = 2;
	bad_op("pool window in padding", 1, o, "padding top 0 bottom 2 left 0"
	       " right 0 with a 2x2 window, expected less than the window");

	o = tlcm_mb_op(tlcm_OpType_GlobalAveragePool, n.c, -1, -1, n.l);
	bad_op("gap channels", 2, o, "output tensor 8 'logits' has shape "
	       "[1,2], expected [1,4]");
	o = tlcm_mb_op(tlcm_OpType_FullyConnected, n.r, n.w, n.wb, n.l);
	bad_op("fc input size", 3, o, "input tensor 4 'relu' of shape "
	       "[1,6,6,4] has 144 elements per frame, the weights tensor 6 "
	       "'fc.w' of shape [2,4] expects 4");
}

/* A model of one Relu over tensors with the given shapes / data. */
static void bad_tensor(const char *what, const int32_t *xs, int xr,
		       const float *xdata, const char *expect)
{
	tlcm_mb_t *b = tlcm_mb_new("t");
	int x = tlcm_mb_tensor(b, "x", xs, xr, xdata);
	int y = tlcm_mb_tensor(b, "y", xs, xr, NULL);
	tlcm_op_t o = tlcm_mb_op(tlcm_OpType_Relu, x, -1, -1, y);
	tlcm_mb_add_op(b, &o);
	tlcm_mb_io(b, x, &y, 1);
	size_t len;
	void *buf = tlcm_mb_finish(b, &len);
	char why[512] = "";
	tlcm_test_checks++;
	if (load_and_run(buf, len, why, sizeof why) == 0)
		TLCM__FAIL("%s: accepted", what);
	CHECK_CONTAINS(why, expect);
	fprintf(stderr, "%-28s %s\n", what, why);
	free(buf);
}

static void test_bad_tensors(void)
{
	bad_tensor("rank 5", SHAPE(1, 2, 2, 2, 2), NULL,
		   "tensor 0 'x' has rank 5, expected 1 to 4");
	bad_tensor("zero dimension", SHAPE(1, 0, 3), NULL,
		   "tensor 0 'x' has dimension 1 = 0, expected >= 1");
	bad_tensor("batch 2", SHAPE(2, 3), NULL, "input tensor 0 'x' has shape"
		   " [2,3], expected [1,...] (batch dimension first");
	bad_tensor("rank 1 activation", SHAPE(5), NULL,
		   "input tensor 0 'x' has shape [5], expected [1,...]");
	bad_tensor("input holds data", SHAPE(1, 3), zeros,
		   "input tensor 0 'x' holds data");
	bad_tensor("huge", SHAPE(1, 65536, 65536), NULL,
		   "tensor 0 'x' has more than");

	/* data of the wrong length, duplicate names */
	tlcm_mb_t *b = tlcm_mb_new("short");
	int x = tlcm_mb_tensor(b, "x", SHAPE(1, 4), NULL);
	int w = tlcm_mb_tensor_n(b, "w", SHAPE(3, 4), zeros, 5);
	int y = tlcm_mb_tensor(b, "y", SHAPE(1, 3), NULL);
	tlcm_op_t o = tlcm_mb_op(tlcm_OpType_FullyConnected, x, w, -1, y);
	tlcm_mb_add_op(b, &o);
	tlcm_mb_io(b, x, &y, 1);
	size_t len;
	void *buf = tlcm_mb_finish(b, &len);
	char why[512] = "";
	CHECK(load_and_run(buf, len, why, sizeof why) != 0);
	CHECK_CONTAINS(why, "tensor 1 'w' holds 5 floats, expected 12 for "
		       "shape [3,4]");
	free(buf);

	b = tlcm_mb_new("dup");
	x = tlcm_mb_tensor(b, "x", SHAPE(1, 4), NULL);
	y = tlcm_mb_tensor(b, "x", SHAPE(1, 4), NULL);
	o = tlcm_mb_op(tlcm_OpType_Relu, x, -1, -1, y);
	tlcm_mb_add_op(b, &o);
	tlcm_mb_io(b, x, &y, 1);
	buf = tlcm_mb_finish(b, &len);
	CHECK(load_and_run(buf, len, why, sizeof why) != 0);
	CHECK_CONTAINS(why, "tensors 0 and 1 are both named 'x', expected "
		       "unique names");
	free(buf);
}

/* The net with its input/output lists or preprocessing changed. */
static void bad_io(const char *what, int input, const int *outs,
		   size_t nout, const float *std, size_t nstd,
		   const char *expect)
{
	net_t n = net_tensors();
	net_ops(&n, -1, NULL);
	tlcm_mb_io(n.b, input, outs, nout);
	if (std)
		tlcm_mb_prep(n.b, 1, NULL, 0, std, nstd);
	size_t len;
	void *buf = tlcm_mb_finish(n.b, &len);
	char why[512] = "";
	tlcm_test_checks++;
	if (load_and_run(buf, len, why, sizeof why) == 0)
		TLCM__FAIL("%s: accepted", what);
	CHECK_CONTAINS(why, expect);
	fprintf(stderr, "%-28s %s\n", what, why);
	free(buf);
}

static void test_bad_io(void)
{
	int x = 0, conv = 3, emb = 5, f = 1, big = 50;
	bad_io("no outputs", x, &emb, 0, NULL, 0, "the model has no "
	       "outputs, expected at least one");
	bad_io("output out of range", x, &big, 1, NULL, 0,
	       "output 0: tensor index 50 out of range, expected 0..8");
	bad_io("output is a constant", x, &f, 1, NULL, 0,
	       "output 0: tensor 1 'conv.w' is not written by any op");
	int twice[2] = {emb, emb};
	bad_io("output twice", x, twice, 2, NULL, 0,
	       "outputs 0 and 1 are both tensor 5 'embedding'");
	bad_io("input is not the input", conv, &emb, 1, NULL, 0,
	       "op 0 (Conv2D -> 'conv') reads tensor 0 'x' before any op "
	       "writes it");
	float s0[3] = {1, 0, 1}, s2[2] = {1, 1};
	bad_io("std 0", x, &emb, 1, s0, 3,
	       "input_std[1] = 0, expected finite and non-zero");
	bad_io("std length", x, &emb, 1, s2, 2,
	       "input_std has 2 values, expected 1 or 3 (input channels)");
}

int main(void)
{
	test_valid_net_loads();
	test_truncated();
	test_bit_flips();
	test_identifier_and_files();
	test_bad_ops();
	test_bad_tensors();
	test_bad_io();
	return tlcm_test_done();
}
