/* tflite.c — float32 .tflite to .tlm converter; see tflite.h.
 *
 * One pass over the subgraph's operators in execution order: each TFLite
 * builtin is checked (tensor types, shapes, constant weights, options) and
 * turned into zero or more .tlm ops (schemas/model.fbs) collected in memory;
 * SAME/VALID padding becomes explicit pads, a fused RELU_N1_TO_1 becomes a
 * separate Clamp op, DEQUANTIZE of float16 weights becomes float32
 * constants. Only tensors the ops use are written, graph input first. The
 * .tlm is then built with the generated builders (fb/model_fb.h). Tensor
 * names come from the .tflite file (made unique), so outputs keep theirs.
 */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "engine/fb/fb.h"
#include "fb/model_fb.h"
#include "fb/tflite_fb.h"
#include "nodes/features/tflite.h"

#define TFL_MAX_RANK 4
#define TFL_MAX_ELEMENTS ((size_t)1 << 30) /* per tensor */
#define TFL_MAX_BROADCAST (1 << 20)        /* a scalar made per channel */
#define TFL_SCHEMA_VERSION 3u
#define TFL_SUPPORTED_OPS                                           \
	"CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D, "     \
	"MAX_POOL_2D, MEAN over H and W, ADD, MUL, RELU, RELU6, "            \
	"RELU_N1_TO_1, HARD_SWISH, LOGISTIC, SOFTMAX, RESHAPE, SQUEEZE, "    \
	"PAD, PADV2, DEQUANTIZE of float16 weights"

/* A tensor of the converted model: one per .tflite tensor, then the ones
 * the conversion adds (e.g. before a separate Clamp). */
typedef struct {
	const char *name;       /* from the file (not terminated), or NULL */
	size_t name_len;
	char *stem;             /* name of a tensor the conversion added */
	char *unique;           /* the name written to .tlm (owned) */
	int rank;
	int32_t shape[TFL_MAX_RANK];
	size_t count;           /* elements */
	const uint8_t *bytes;   /* constant data in the file (little-endian) */
	size_t nbytes;
	float *owned;           /* converted or expanded constant data */
	bool constant;          /* has data (bytes or owned) */
	bool ready;             /* the graph input, a constant, or computed */
	int tlm;                /* index in the .tlm, -1 while unused */
} tensor_t;

typedef struct {
	tlcm_OpType_enum_t type;
	int nin;
	int in[3];              /* indices into conv_t.tensors; -1: absent */
	int out;
	int kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
	int pad_top, pad_bottom, pad_left, pad_right;
	int depth_multiplier;
	tlcm_Activation_enum_t activation;
	float clamp_min, clamp_max, pad_value;
} op_t;

typedef struct {
	const uint8_t *file;
	size_t file_len;
	tflite_Model_table_t model;
	tflite_SubGraph_table_t sg;
	size_t nfile_tensors;   /* tensors[0..nfile_tensors) mirror the file */
	tensor_t *tensors;
	size_t ntensors, tensors_cap;
	op_t *ops;
	size_t nops, ops_cap;
	int input;
	/* the operator being converted, for messages */
	size_t op_index;
	const char *op_name;
	char op_name_buf[80];
	char *why;
	size_t cap;
} conv_t;

/* ---- messages ------------------------------------------------------------ */

static int fail(conv_t *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(conv_t *c, int code, const char *fmt, ...)
{
	if (c->why && c->cap) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->why, c->cap, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Errors about the operator being converted: "operator 3 (CONV_2D): ...". */
static int op_fail(conv_t *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int op_fail(conv_t *c, int code, const char *fmt, ...)
{
	if (c->why && c->cap) {
		int n = snprintf(c->why, c->cap, "operator %zu (%s): ",
				 c->op_index, c->op_name);
		if (n >= 0 && (size_t)n < c->cap) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(c->why + n, c->cap - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return code;
}

/* "tensor 5 'conv/w'" into buf. */
static const char *tensor_label(const conv_t *c, int i, char *buf,
				size_t cap)
{
	const tensor_t *t = &c->tensors[i];
	if (t->unique)
		snprintf(buf, cap, "tensor '%s'", t->unique);
	else if (t->stem)
		snprintf(buf, cap, "tensor '%s'", t->stem);
	else if (t->name && t->name_len)
		snprintf(buf, cap, "tensor %d '%.*s'", i,
			 (int)(t->name_len > 200 ? 200 : t->name_len),
			 t->name);
	else
		snprintf(buf, cap, "tensor %d", i);
	return buf;
}

#define TL(c, i) tensor_label((c), (i), (char[256]){0}, 256)

static const char *shape_str(const tensor_t *t, char *buf, size_t cap)
{
	size_t n = (size_t)snprintf(buf, cap, "[");
	for (int d = 0; d < t->rank && n < cap; d++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%d", d ? "," : "",
				      (int)t->shape[d]);
	if (n < cap)
		snprintf(buf + n, cap - n, "]");
	return buf;
}

#define SHAPE(t) shape_str((t), (char[64]){0}, 64)

/* ---- growable arrays ----------------------------------------------------- */

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap * 2 : 16;
	while (n < need)
		n *= 2;
	void *p = realloc(*arr, n * elem);
	if (!p)
		return TLCM_ENOMEM;
	*arr = p;
	*cap = n;
	return 0;
}

/* A new tensor shaped like `like`, called "<like's name><suffix>". */
static int add_tensor_like(conv_t *c, int like, const char *suffix,
			   int *out)
{
	if (grow((void **)&c->tensors, &c->tensors_cap, c->ntensors + 1,
		 sizeof *c->tensors))
		return fail(c, TLCM_ENOMEM, "out of memory");
	tensor_t *t = &c->tensors[c->ntensors];
	const tensor_t *l = &c->tensors[like];
	*t = (tensor_t){.rank = l->rank, .count = l->count, .tlm = -1};
	memcpy(t->shape, l->shape, sizeof t->shape);
	const char *base = l->stem ? l->stem : l->name ? l->name : "";
	int base_len = l->stem ? (int)strlen(l->stem)
			       : (int)(l->name_len < 200 ? l->name_len : 200);
	size_t n = (size_t)base_len + strlen(suffix) + 1;
	if (!(t->stem = malloc(n)))
		return fail(c, TLCM_ENOMEM, "out of memory");
	snprintf(t->stem, n, "%.*s%s", base_len, base, suffix);
	*out = (int)c->ntensors++;
	return 0;
}

/* An op with inputs a, b, c (-1: none; nin counts up to the last one
 * given) and the schema's defaults (stride, dilation, multiplier 1). */
static op_t make_op(tlcm_OpType_enum_t type, int a, int b, int c)
{
	return (op_t){.type = type,
		      .nin = c >= 0 ? 3 : b >= 0 ? 2 : 1,
		      .in = {a, b, c},
		      .out = -1,
		      .stride_h = 1,
		      .stride_w = 1,
		      .dilation_h = 1,
		      .dilation_w = 1,
		      .depth_multiplier = 1};
}

/* Append op o writing tensor out. */
static int push_op(conv_t *c, op_t o, int out)
{
	if (grow((void **)&c->ops, &c->ops_cap, c->nops + 1, sizeof *c->ops))
		return fail(c, TLCM_ENOMEM, "out of memory");
	o.out = out;
	c->ops[c->nops++] = o;
	return 0;
}

/* ---- reading the file's tensors ------------------------------------------ */

static int read_tensors(conv_t *c)
{
	size_t n = tflite_SubGraph_tensors_len(c->sg);
	size_t nbuf = tflite_Model_buffers_len(c->model);
	c->tensors = calloc(n ? n : 1, sizeof *c->tensors);
	if (!c->tensors)
		return fail(c, TLCM_ENOMEM, "out of memory");
	c->ntensors = c->nfile_tensors = n;
	c->tensors_cap = n ? n : 1;
	for (size_t i = 0; i < n; i++) {
		tflite_Tensor_table_t ft = tflite_SubGraph_tensors_at(c->sg, i);
		tensor_t *t = &c->tensors[i];
		t->tlm = -1;
		t->name = tflite_Tensor_name(ft);
		t->name_len = tflite_Tensor_name_len(ft);
		size_t rank = tflite_Tensor_shape_len(ft);
		if (rank > TFL_MAX_RANK)
			return fail(c, TLCM_ENOTSUP,
				    "%s: rank %zu (at most %d supported)",
				    TL(c, (int)i), rank, TFL_MAX_RANK);
		t->rank = (int)rank;
		t->count = 1;
		for (size_t d = 0; d < rank; d++) {
			int32_t v = tflite_Tensor_shape_at(ft, d);
			if (v < 1)
				return fail(c, TLCM_EINVAL,
					    "%s: dimension %zu is %d "
					    "(expected >= 1; dynamic shapes "
					    "are not supported)",
					    TL(c, (int)i), d, (int)v);
			t->shape[d] = v;
			if (t->count > TFL_MAX_ELEMENTS / (size_t)v)
				return fail(c, TLCM_ETOOBIG,
					    "%s: more than %zu elements",
					    TL(c, (int)i), TFL_MAX_ELEMENTS);
			t->count *= (size_t)v;
		}
		uint32_t b = tflite_Tensor_buffer(ft);
		if (b >= nbuf && !(b == 0 && nbuf == 0))
			return fail(c, TLCM_EINVAL,
				    "%s: buffer %u out of range (the model "
				    "has %zu buffers)",
				    TL(c, (int)i), (unsigned)b, nbuf);
		tflite_Buffer_table_t fb = tflite_Model_buffers_at(c->model, b);
		uint64_t off = tflite_Buffer_offset(fb);
		if (off > 1) { /* data stored after the FlatBuffer */
			uint64_t size = tflite_Buffer_size(fb);
			if (off > c->file_len || size > c->file_len - off)
				return fail(c, TLCM_EINVAL,
					    "%s: buffer %u lies at %llu+%llu, "
					    "past the %zu-byte file",
					    TL(c, (int)i), (unsigned)b,
					    (unsigned long long)off,
					    (unsigned long long)size,
					    c->file_len);
			t->bytes = c->file + off;
			t->nbytes = (size_t)size;
		} else {
			t->bytes = tflite_Buffer_data(fb);
			t->nbytes = tflite_Buffer_data_len(fb);
		}
		t->constant = t->nbytes > 0;
		if (!t->constant)
			t->bytes = NULL;
		t->ready = t->constant;
	}
	return 0;
}

static tflite_Tensor_table_t file_tensor(const conv_t *c, int i)
{
	return i < (int)c->nfile_tensors
		       ? tflite_SubGraph_tensors_at(c->sg, (size_t)i)
		       : NULL;
}

static const char *type_name(tflite_TensorType_enum_t type)
{
	const char *s = tflite_TensorType_name(type);
	return s ? s : "unknown";
}

/* Refuse quantized, sparse and variable tensors and any type but want. */
static int check_type(conv_t *c, int i, tflite_TensorType_enum_t want)
{
	tflite_Tensor_table_t ft = file_tensor(c, i);
	if (!ft)
		return 0; /* added by the conversion: float32 */
	tflite_TensorType_enum_t type = tflite_Tensor_type(ft);
	tflite_QuantizationParameters_table_t q = tflite_Tensor_quantization(ft);
	if (tflite_QuantizationParameters_scale_len(q) ||
	    tflite_QuantizationParameters_details_type(q))
		return op_fail(c, TLCM_ENOTSUP,
			       "%s (%s) is quantized; only float32 models "
			       "are supported",
			       TL(c, i), type_name(type));
	if (type != want)
		return op_fail(c, TLCM_ENOTSUP,
			       "%s has type %s, expected %s%s", TL(c, i),
			       type_name(type), type_name(want),
			       type == tflite_TensorType_INT8 ||
					       type == tflite_TensorType_UINT8
				       ? " (quantized models are not supported)"
				       : "");
	if (tflite_Tensor_sparsity_is_present(ft))
		return op_fail(c, TLCM_ENOTSUP,
			       "%s is sparse; sparse tensors are not supported",
			       TL(c, i));
	if (tflite_Tensor_is_variable(ft))
		return op_fail(c, TLCM_ENOTSUP,
			       "%s is a variable; stateful models are not "
			       "supported",
			       TL(c, i));
	return 0;
}

/* Operator input k as a tensor index: present and in range. */
static int op_input(conv_t *c, tflite_Operator_table_t op, size_t k,
		    bool optional, int *out)
{
	size_t n = tflite_Operator_inputs_len(op);
	int32_t i = k < n ? tflite_Operator_inputs_at(op, k) : -1;
	if (i == -1 && optional) {
		*out = -1;
		return 0;
	}
	if (k >= n)
		return op_fail(c, TLCM_EINVAL, "has %zu inputs, expected at "
			       "least %zu", n, k + 1);
	if (i < 0 || (size_t)i >= c->nfile_tensors)
		return op_fail(c, TLCM_EINVAL,
			       "input %zu is tensor %d, out of range (%zu "
			       "tensors)",
			       k, (int)i, c->nfile_tensors);
	*out = i;
	return 0;
}

/* A constant's data: float32 and as long as its shape says (converted
 * constants were made so). */
static int check_float_data(conv_t *c, int i)
{
	const tensor_t *t = &c->tensors[i];
	int rc;
	if (t->owned)
		return 0;
	if ((rc = check_type(c, i, tflite_TensorType_FLOAT32)))
		return rc;
	if (t->nbytes != t->count * 4)
		return op_fail(c, TLCM_EINVAL,
			       "%s: its buffer holds %zu bytes, expected %zu "
			       "(shape %s of float32)",
			       TL(c, i), t->nbytes, t->count * 4, SHAPE(t));
	return 0;
}

/* A float32 activation computed before this operator, the input, or a
 * constant. */
static int activation_input(conv_t *c, tflite_Operator_table_t op, size_t k,
			    int *out)
{
	int rc = op_input(c, op, k, false, out);
	if (rc)
		return rc;
	tensor_t *t = &c->tensors[*out];
	if ((rc = t->constant ? check_float_data(c, *out)
			      : check_type(c, *out, tflite_TensorType_FLOAT32)))
		return rc;
	if (!t->ready)
		return op_fail(c, TLCM_EINVAL,
			       "reads %s before any operator computes it",
			       TL(c, *out));
	if (t->rank < 1)
		return op_fail(c, TLCM_EINVAL, "%s is a scalar; expected a "
			       "tensor of rank 1..4", TL(c, *out));
	return 0;
}

/* A constant float32 tensor (weights, bias) of the given shape; a dim of 0
 * in want matches anything. Optional inputs may be absent (-1). */
static int const_input(conv_t *c, tflite_Operator_table_t op, size_t k,
		       bool optional, int rank, const int32_t *want, int *out)
{
	int rc = op_input(c, op, k, optional, out);
	if (rc || *out < 0)
		return rc;
	tensor_t *t = &c->tensors[*out];
	if (!t->constant)
		return op_fail(c, TLCM_ENOTSUP,
			       "%s must be a constant (weights computed at "
			       "run time are not supported)",
			       TL(c, *out));
	if ((rc = check_float_data(c, *out)))
		return rc;
	bool ok = t->rank == rank;
	for (int d = 0; ok && d < rank; d++)
		ok = !want[d] || want[d] == t->shape[d];
	if (!ok) {
		char exp[64];
		size_t n = (size_t)snprintf(exp, sizeof exp, "[");
		for (int d = 0; d < rank && n < sizeof exp; d++)
			n += (size_t)snprintf(exp + n, sizeof exp - n,
					      want[d] ? "%s%d" : "%s*",
					      d ? "," : "", (int)want[d]);
		if (n < sizeof exp)
			snprintf(exp + n, sizeof exp - n, "]");
		return op_fail(c, TLCM_EINVAL, "%s has shape %s, expected %s",
			       TL(c, *out), SHAPE(t), exp);
	}
	return 0;
}

/* Constant integer parameters (shapes, paddings, axes): INT32 or INT64. */
static int int_const_input(conv_t *c, tflite_Operator_table_t op, size_t k,
			   int64_t *vals, size_t max, size_t *n, int *out)
{
	int rc = op_input(c, op, k, false, out);
	if (rc)
		return rc;
	tensor_t *t = &c->tensors[*out];
	tflite_TensorType_enum_t type = tflite_Tensor_type(file_tensor(c, *out));
	size_t size = type == tflite_TensorType_INT32	? 4
		      : type == tflite_TensorType_INT64 ? 8
							: 0;
	if (!t->constant || !size)
		return op_fail(c, TLCM_ENOTSUP,
			       "%s must be a constant INT32 or INT64 tensor "
			       "(it is %s%s)",
			       TL(c, *out), t->constant ? "" : "computed, ",
			       type_name(type));
	if (t->count > max || t->nbytes != t->count * size)
		return op_fail(c, TLCM_EINVAL,
			       "%s: %zu values in %zu bytes (expected at "
			       "most %zu values of %zu bytes)",
			       TL(c, *out), t->count, t->nbytes, max,
			       size);
	for (size_t j = 0; j < t->count; j++)
		vals[j] = size == 4 ? tlcm_fb_load_i32(t->bytes + 4 * j)
				    : tlcm_fb_load_i64(t->bytes + 8 * j);
	*n = t->count;
	return 0;
}

/* A constant float32 holding one value (shape [] or [1]). */
static int scalar_input(conv_t *c, tflite_Operator_table_t op, size_t k,
			float *v)
{
	int i;
	int rc = op_input(c, op, k, false, &i);
	if (rc)
		return rc;
	int32_t one[1] = {1};
	if ((rc = const_input(c, op, k, false, c->tensors[i].rank ? 1 : 0, one,
			      &i)))
		return rc;
	const tensor_t *t = &c->tensors[i];
	*v = t->owned ? t->owned[0] : tlcm_fb_load_f32(t->bytes);
	return 0;
}

/* The operator's one output: a float32 tensor no one wrote before. */
static int op_output(conv_t *c, tflite_Operator_table_t op, int *out)
{
	size_t n = tflite_Operator_outputs_len(op);
	if (n != 1)
		return op_fail(c, TLCM_EINVAL, "has %zu outputs, expected 1",
			       n);
	int32_t i = tflite_Operator_outputs_at(op, 0);
	if (i < 0 || (size_t)i >= c->nfile_tensors)
		return op_fail(c, TLCM_EINVAL,
			       "output is tensor %d, out of range (%zu "
			       "tensors)",
			       (int)i, c->nfile_tensors);
	int rc = check_type(c, i, tflite_TensorType_FLOAT32);
	if (rc)
		return rc;
	tensor_t *t = &c->tensors[i];
	if (t->ready)
		return op_fail(c, TLCM_EINVAL,
			       "writes %s, which is %s", TL(c, i),
			       t->constant ? "a constant"
					   : "already computed (or the input)");
	if (t->rank < 1)
		return op_fail(c, TLCM_EINVAL, "%s is a scalar; expected a "
			       "tensor of rank 1..4", TL(c, i));
	*out = i;
	return 0;
}

/* The output's shape must be what the op computes. */
static int expect_shape(conv_t *c, int i, int rank, const int32_t *shape)
{
	tensor_t *t = &c->tensors[i];
	bool ok = t->rank == rank;
	for (int d = 0; ok && d < rank; d++)
		ok = t->shape[d] == shape[d];
	if (ok)
		return 0;
	tensor_t want = {.rank = rank};
	memcpy(want.shape, shape, (size_t)rank * sizeof *shape);
	return op_fail(c, TLCM_EINVAL, "%s has shape %s, expected %s",
		       TL(c, i), SHAPE(t), SHAPE(&want));
}

static int expect_nhwc(conv_t *c, int i)
{
	tensor_t *t = &c->tensors[i];
	if (t->rank != 4 || t->shape[0] != 1)
		return op_fail(c, TLCM_EINVAL,
			       "%s has shape %s, expected [1,H,W,C] (NHWC, "
			       "batch 1)",
			       TL(c, i), SHAPE(t));
	return 0;
}

/* ---- options ------------------------------------------------------------- */

/* The operator's options table if it is of type `want`; NULL when absent
 * (defaults), NULL and *rc set when of another type. */
static const void *options(conv_t *c, tflite_Operator_table_t op,
			   tflite_BuiltinOptions_union_type_t want, int *rc)
{
	tflite_BuiltinOptions_union_type_t type =
		tflite_Operator_builtin_options_type(op);
	*rc = 0;
	if (type == tflite_BuiltinOptions_NONE)
		return NULL; /* every field at its default */
	if (type != want) {
		const char *name = tflite_BuiltinOptions_name(type);
		*rc = op_fail(c, TLCM_EINVAL, "carries %s options, expected %s",
			      name ? name : "unknown",
			      tflite_BuiltinOptions_name(want));
		return NULL;
	}
	return tflite_Operator_builtin_options(op);
}

static int fused_activation(conv_t *c, tflite_ActivationFunctionType_enum_t f,
			    tlcm_Activation_enum_t *act, bool *clamp)
{
	*clamp = false;
	switch (f) {
	case tflite_ActivationFunctionType_NONE:
		*act = tlcm_Activation_None;
		return 0;
	case tflite_ActivationFunctionType_RELU:
		*act = tlcm_Activation_Relu;
		return 0;
	case tflite_ActivationFunctionType_RELU6:
		*act = tlcm_Activation_Relu6;
		return 0;
	case tflite_ActivationFunctionType_RELU_N1_TO_1:
		*act = tlcm_Activation_None;
		*clamp = true;
		return 0;
	default: {
		const char *name = tflite_ActivationFunctionType_name(f);
		return op_fail(c, TLCM_ENOTSUP,
			       "fused activation %s is not supported (NONE, "
			       "RELU, RELU6, RELU_N1_TO_1 are)",
			       name ? name : "(unknown)");
	}
	}
}

/* Output size and explicit pads of one spatial dimension. */
static int resolve_padding(conv_t *c, tflite_Padding_enum_t padding, int in,
			   int k, int stride, int dilation, const char *dim,
			   int *out, int *before, int *after)
{
	if (k < 1 || stride < 1 || dilation < 1)
		return op_fail(c, TLCM_EINVAL,
			       "%s: kernel %d, stride %d, dilation %d (each "
			       "must be >= 1)",
			       dim, k, stride, dilation);
	long eff = (long)(k - 1) * dilation + 1;
	if (padding == tflite_Padding_SAME) {
		long o = ((long)in + stride - 1) / stride;
		long total = (o - 1) * stride + eff - in;
		if (total < 0)
			total = 0;
		*out = (int)o;
		*before = (int)(total / 2);
		*after = (int)(total - total / 2);
	} else if (padding == tflite_Padding_VALID) {
		if (eff > in)
			return op_fail(c, TLCM_EINVAL,
				       "%s: VALID padding with a kernel "
				       "extent of %ld on an input of %d",
				       dim, eff, in);
		*out = (int)((in - eff) / stride + 1);
		*before = *after = 0;
	} else {
		return op_fail(c, TLCM_EINVAL, "unknown padding %d",
			       (int)padding);
	}
	return 0;
}

/* Add op `o` (already filled) with output `out`; a RELU_N1_TO_1 fused
 * activation becomes a Clamp op after it. */
static int finish_op(conv_t *c, op_t o, int out, bool clamp)
{
	int rc;
	if (clamp) {
		int mid;
		if ((rc = add_tensor_like(c, out, "/before_clamp", &mid)) ||
		    (rc = push_op(c, o, mid)))
			return rc;
		o = make_op(tlcm_OpType_Clamp, mid, -1, -1);
		o.clamp_min = -1.0f;
		o.clamp_max = 1.0f;
	}
	if ((rc = push_op(c, o, out)))
		return rc;
	c->tensors[out].ready = true;
	return 0;
}

/* ---- the operators -------------------------------------------------------- */

static int conv_2d(conv_t *c, tflite_Operator_table_t op, bool depthwise)
{
	int x, w, bias, y, rc;
	if ((rc = activation_input(c, op, 0, &x)) || (rc = expect_nhwc(c, x)))
		return rc;
	const tensor_t *in = &c->tensors[x];
	int cin = in->shape[3];
	int32_t any4[4] = {0, 0, 0, depthwise ? 0 : cin};
	if (depthwise)
		any4[0] = 1;
	if ((rc = const_input(c, op, 1, false, 4, any4, &w)))
		return rc;
	const tensor_t *ft = &c->tensors[w];
	int cout = depthwise ? ft->shape[3] : ft->shape[0];
	int32_t bshape[1] = {cout};
	if ((rc = const_input(c, op, 2, true, 1, bshape, &bias)) ||
	    (rc = op_output(c, op, &y)))
		return rc;

	op_t o = make_op(depthwise ? tlcm_OpType_DepthwiseConv2D
				   : tlcm_OpType_Conv2D,
			 x, w, bias);
	tflite_Padding_enum_t padding;
	tflite_ActivationFunctionType_enum_t act;
	if (depthwise) {
		tflite_DepthwiseConv2DOptions_table_t opt = options(
			c, op, tflite_BuiltinOptions_DepthwiseConv2DOptions, &rc);
		if (rc)
			return rc;
		padding = tflite_DepthwiseConv2DOptions_padding(opt);
		o.stride_w = tflite_DepthwiseConv2DOptions_stride_w(opt);
		o.stride_h = tflite_DepthwiseConv2DOptions_stride_h(opt);
		o.dilation_w =
			tflite_DepthwiseConv2DOptions_dilation_w_factor(opt);
		o.dilation_h =
			tflite_DepthwiseConv2DOptions_dilation_h_factor(opt);
		act = tflite_DepthwiseConv2DOptions_fused_activation_function(
			opt);
		if (cout % cin)
			return op_fail(c, TLCM_EINVAL,
				       "%s has %d channels, not a multiple "
				       "of the input's %d",
				       TL(c, w), cout, cin);
		o.depth_multiplier = cout / cin;
		int dm = tflite_DepthwiseConv2DOptions_depth_multiplier(opt);
		if (dm > 0 && dm != o.depth_multiplier)
			return op_fail(c, TLCM_EINVAL,
				       "depth_multiplier %d, but the filter "
				       "gives %d (%d / %d channels)",
				       dm, o.depth_multiplier, cout, cin);
	} else {
		tflite_Conv2DOptions_table_t opt =
			options(c, op, tflite_BuiltinOptions_Conv2DOptions, &rc);
		if (rc)
			return rc;
		padding = tflite_Conv2DOptions_padding(opt);
		o.stride_w = tflite_Conv2DOptions_stride_w(opt);
		o.stride_h = tflite_Conv2DOptions_stride_h(opt);
		o.dilation_w = tflite_Conv2DOptions_dilation_w_factor(opt);
		o.dilation_h = tflite_Conv2DOptions_dilation_h_factor(opt);
		act = tflite_Conv2DOptions_fused_activation_function(opt);
	}
	bool clamp;
	int32_t oshape[4] = {1, 0, 0, cout};
	if ((rc = fused_activation(c, act, &o.activation, &clamp)) ||
	    (rc = resolve_padding(c, padding, in->shape[1], ft->shape[1],
				  o.stride_h, o.dilation_h, "height",
				  &oshape[1], &o.pad_top, &o.pad_bottom)) ||
	    (rc = resolve_padding(c, padding, in->shape[2], ft->shape[2],
				  o.stride_w, o.dilation_w, "width",
				  &oshape[2], &o.pad_left, &o.pad_right)) ||
	    (rc = expect_shape(c, y, 4, oshape)))
		return rc;
	return finish_op(c, o, y, clamp);
}

static int fully_connected(conv_t *c, tflite_Operator_table_t op)
{
	int x, w, bias, y, rc;
	int32_t wshape[2] = {0, 0};
	if ((rc = activation_input(c, op, 0, &x)) ||
	    (rc = const_input(c, op, 1, false, 2, wshape, &w)))
		return rc;
	int nout = c->tensors[w].shape[0], nin = c->tensors[w].shape[1];
	int32_t bshape[1] = {nout};
	if ((rc = const_input(c, op, 2, true, 1, bshape, &bias)) ||
	    (rc = op_output(c, op, &y)))
		return rc;
	tflite_FullyConnectedOptions_table_t opt =
		options(c, op, tflite_BuiltinOptions_FullyConnectedOptions, &rc);
	if (rc)
		return rc;
	if (tflite_FullyConnectedOptions_weights_format(opt) !=
	    tflite_FullyConnectedOptionsWeightsFormat_DEFAULT)
		return op_fail(c, TLCM_ENOTSUP, "shuffled weights are not "
			       "supported");
	const tensor_t *in = &c->tensors[x];
	if (in->count != (size_t)nin || (in->rank > 1 && in->shape[0] != 1))
		return op_fail(c, TLCM_EINVAL,
			       "input %s has shape %s; expected batch 1 and "
			       "%d values (the weights' inputs)",
			       TL(c, x), SHAPE(in), nin);
	if (tflite_FullyConnectedOptions_keep_num_dims(opt) && in->rank > 2)
		return op_fail(c, TLCM_ENOTSUP,
			       "keep_num_dims on a rank-%d input (a per-"
			       "position dense layer) is not supported",
			       in->rank);
	int32_t oshape[2] = {1, nout};
	if ((rc = expect_shape(c, y, 2, oshape)))
		return rc;
	op_t o = make_op(tlcm_OpType_FullyConnected, x, w, bias);
	bool clamp;
	if ((rc = fused_activation(
		     c, tflite_FullyConnectedOptions_fused_activation_function(opt),
		     &o.activation, &clamp)))
		return rc;
	return finish_op(c, o, y, clamp);
}

static int pool_2d(conv_t *c, tflite_Operator_table_t op,
		   tlcm_OpType_enum_t type)
{
	int x, y, rc;
	if ((rc = activation_input(c, op, 0, &x)) ||
	    (rc = expect_nhwc(c, x)) || (rc = op_output(c, op, &y)))
		return rc;
	tflite_Pool2DOptions_table_t opt = options(
		c, op, tflite_BuiltinOptions_Pool2DOptions, &rc);
	if (rc)
		return rc;
	if (!opt)
		return op_fail(c, TLCM_EINVAL, "has no Pool2DOptions (the "
			       "filter size is required)");
	const tensor_t *in = &c->tensors[x];
	op_t o = make_op(type, x, -1, -1);
	o.kernel_h = tflite_Pool2DOptions_filter_height(opt);
	o.kernel_w = tflite_Pool2DOptions_filter_width(opt);
	o.stride_h = tflite_Pool2DOptions_stride_h(opt);
	o.stride_w = tflite_Pool2DOptions_stride_w(opt);
	tflite_Padding_enum_t padding = tflite_Pool2DOptions_padding(opt);
	int32_t oshape[4] = {1, 0, 0, in->shape[3]};
	bool clamp;
	if ((rc = fused_activation(
		     c, tflite_Pool2DOptions_fused_activation_function(opt),
		     &o.activation, &clamp)) ||
	    (rc = resolve_padding(c, padding, in->shape[1], o.kernel_h,
				  o.stride_h, 1, "height", &oshape[1],
				  &o.pad_top, &o.pad_bottom)) ||
	    (rc = resolve_padding(c, padding, in->shape[2], o.kernel_w,
				  o.stride_w, 1, "width", &oshape[2],
				  &o.pad_left, &o.pad_right)) ||
	    (rc = expect_shape(c, y, 4, oshape)))
		return rc;
	return finish_op(c, o, y, clamp);
}

/* MEAN over H and W of an NHWC tensor: a global average pool. */
static int mean(conv_t *c, tflite_Operator_table_t op)
{
	int x, axes, y, rc;
	int64_t ax[4];
	size_t nax;
	if ((rc = activation_input(c, op, 0, &x)) ||
	    (rc = int_const_input(c, op, 1, ax, 4, &nax, &axes)) ||
	    (rc = op_output(c, op, &y)))
		return rc;
	const tensor_t *in = &c->tensors[x];
	bool h = false, w = false, other = false;
	for (size_t j = 0; j < nax; j++) {
		int64_t a = ax[j] < 0 ? ax[j] + in->rank : ax[j];
		h |= a == 1;
		w |= a == 2;
		other |= a != 1 && a != 2;
	}
	if (in->rank != 4 || !h || !w || other)
		return op_fail(c, TLCM_ENOTSUP,
			       "only a mean over H and W (axes 1,2) of an "
			       "NHWC tensor is supported (a global average "
			       "pool); input %s is %s",
			       TL(c, x), SHAPE(in));
	if ((rc = expect_nhwc(c, x)))
		return rc;
	tflite_ReducerOptions_table_t opt = options(
		c, op, tflite_BuiltinOptions_ReducerOptions, &rc);
	if (rc)
		return rc;
	int32_t keep[4] = {1, 1, 1, in->shape[3]}, flat[2] = {1, in->shape[3]};
	rc = tflite_ReducerOptions_keep_dims(opt) ? expect_shape(c, y, 4, keep)
						  : expect_shape(c, y, 2, flat);
	if (rc)
		return rc;
	return finish_op(c, make_op(tlcm_OpType_GlobalAveragePool, x, -1, -1),
			 y, false);
}

/* Replace constant tensor `i` of one value by `n` copies of it (a scalar
 * broadcast becomes a per-channel one). */
static int expand_scalar(conv_t *c, int *i, int n)
{
	int t;
	int rc = add_tensor_like(c, *i, "/broadcast", &t);
	if (rc)
		return rc;
	tensor_t *s = &c->tensors[*i], *d = &c->tensors[t];
	float v = s->owned ? s->owned[0] : tlcm_fb_load_f32(s->bytes);
	d->owned = malloc((size_t)n * sizeof *d->owned);
	if (!d->owned)
		return fail(c, TLCM_ENOMEM, "out of memory");
	for (int j = 0; j < n; j++)
		d->owned[j] = v;
	d->rank = 1;
	d->shape[0] = n;
	d->count = (size_t)n;
	d->constant = d->ready = true;
	*i = t;
	return 0;
}

/* ADD and MUL: the same shape, or b per channel (shape [C], [1,C],
 * [1,1,1,C]); a scalar constant b is expanded to [C]. */
static int binary(conv_t *c, tflite_Operator_table_t op,
		  tlcm_OpType_enum_t type)
{
	int in[2], y, rc;
	for (size_t k = 0; k < 2; k++) {
		if ((rc = op_input(c, op, k, false, &in[k])))
			return rc;
		if (c->tensors[in[k]].constant) {
			int32_t any[TFL_MAX_RANK] = {0};
			rc = const_input(c, op, k, false,
					 c->tensors[in[k]].rank, any, &in[k]);
		} else {
			rc = activation_input(c, op, k, &in[k]);
		}
		if (rc)
			return rc;
	}
	if ((rc = op_output(c, op, &y)))
		return rc;
	if (c->tensors[in[0]].constant && c->tensors[in[1]].constant)
		return op_fail(c, TLCM_ENOTSUP,
			       "both inputs are constants (fold them when "
			       "exporting)");
	/* the full-size activation first; the operation is commutative */
	if (c->tensors[in[0]].constant ||
	    c->tensors[in[0]].count < c->tensors[in[1]].count) {
		int t = in[0];
		in[0] = in[1];
		in[1] = t;
	}
	const tensor_t *a = &c->tensors[in[0]], *b = &c->tensors[in[1]];
	int ch = a->shape[a->rank - 1];
	bool same = a->rank == b->rank &&
		    !memcmp(a->shape, b->shape, (size_t)a->rank * 4);
	bool per_channel = !same && b->rank >= 1 && b->rank <= a->rank &&
			   (int)b->count == ch && b->shape[b->rank - 1] == ch;
	if (!same && !per_channel && b->count == 1 && b->constant &&
	    ch <= TFL_MAX_BROADCAST) {
		if ((rc = expand_scalar(c, &in[1], ch)))
			return rc;
		a = &c->tensors[in[0]];
		b = &c->tensors[in[1]];
		per_channel = true;
	}
	if (!same && !per_channel)
		return op_fail(c, TLCM_ENOTSUP,
			       "inputs %s and %s broadcast in a way that is "
			       "not supported (same shape, or one value per "
			       "channel)",
			       SHAPE(a), SHAPE(b));
	tflite_ActivationFunctionType_enum_t f;
	if (type == tlcm_OpType_Add) {
		tflite_AddOptions_table_t opt = options(
			c, op, tflite_BuiltinOptions_AddOptions, &rc);
		f = tflite_AddOptions_fused_activation_function(opt);
	} else {
		tflite_MulOptions_table_t opt = options(
			c, op, tflite_BuiltinOptions_MulOptions, &rc);
		f = tflite_MulOptions_fused_activation_function(opt);
	}
	if (rc || (rc = expect_shape(c, y, a->rank, a->shape)))
		return rc;
	op_t o = make_op(type, in[0], in[1], -1);
	bool clamp;
	if ((rc = fused_activation(c, f, &o.activation, &clamp)))
		return rc;
	return finish_op(c, o, y, clamp);
}

/* Element-wise activations, Softmax, and the shape-only ops. */
static int unary(conv_t *c, tflite_Operator_table_t op,
		 tlcm_OpType_enum_t type)
{
	int x, y, rc;
	if ((rc = activation_input(c, op, 0, &x)) || (rc = op_output(c, op, &y)))
		return rc;
	const tensor_t *in = &c->tensors[x];
	op_t o = make_op(type, x, -1, -1);
	if (type == tlcm_OpType_Reshape) {
		if (c->tensors[y].count != in->count)
			return op_fail(c, TLCM_EINVAL,
				       "%s has shape %s (%zu values), but the "
				       "input %s has %zu",
				       TL(c, y), SHAPE(&c->tensors[y]),
				       c->tensors[y].count, SHAPE(in),
				       in->count);
	} else if ((rc = expect_shape(c, y, in->rank, in->shape))) {
		return rc;
	}
	if (type == tlcm_OpType_Softmax) {
		tflite_SoftmaxOptions_table_t opt =
			options(c, op, tflite_BuiltinOptions_SoftmaxOptions, &rc);
		if (rc)
			return rc;
		float beta = tflite_SoftmaxOptions_beta(opt);
		if (!(fabsf(beta - 1.0f) <= 1e-6f))
			return op_fail(c, TLCM_ENOTSUP,
				       "beta %g (only 1 is supported)",
				       (double)beta);
	}
	if (type == tlcm_OpType_Clamp) { /* RELU_N1_TO_1 */
		o.clamp_min = -1.0f;
		o.clamp_max = 1.0f;
	}
	return finish_op(c, o, y, false);
}

/* PAD and PADV2 on H and W of an NHWC tensor. */
static int pad(conv_t *c, tflite_Operator_table_t op, bool v2)
{
	int x, p, y, rc;
	int64_t pads[8];
	size_t n;
	if ((rc = activation_input(c, op, 0, &x)) ||
	    (rc = expect_nhwc(c, x)) ||
	    (rc = int_const_input(c, op, 1, pads, 8, &n, &p)))
		return rc;
	const tensor_t *pt = &c->tensors[p];
	if (n != 8 || pt->rank != 2 || pt->shape[1] != 2)
		return op_fail(c, TLCM_EINVAL,
			       "paddings %s has shape %s, expected [4,2]",
			       TL(c, p), SHAPE(pt));
	for (int j = 0; j < 8; j++)
		if (pads[j] < 0 || pads[j] > 65536 ||
		    ((j < 2 || j >= 6) && pads[j]))
			return op_fail(c, TLCM_ENOTSUP,
				       "paddings %s: only non-negative "
				       "padding of H and W is supported",
				       TL(c, p));
	op_t o = make_op(tlcm_OpType_Pad, x, -1, -1);
	o.pad_top = (int)pads[2];
	o.pad_bottom = (int)pads[3];
	o.pad_left = (int)pads[4];
	o.pad_right = (int)pads[5];
	if (v2 && tflite_Operator_inputs_len(op) > 2 &&
	    (rc = scalar_input(c, op, 2, &o.pad_value)))
		return rc;
	if ((rc = op_output(c, op, &y)))
		return rc;
	const tensor_t *in = &c->tensors[x];
	int32_t oshape[4] = {1, in->shape[1] + o.pad_top + o.pad_bottom,
			     in->shape[2] + o.pad_left + o.pad_right,
			     in->shape[3]};
	if ((rc = expect_shape(c, y, 4, oshape)))
		return rc;
	return finish_op(c, o, y, false);
}

/* IEEE half to float. */
static float half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f,
		 man = h & 0x3ff, bits;
	if (exp == 0x1f) {
		bits = sign | 0x7f800000u | (man << 13);
	} else if (exp) {
		bits = sign | ((exp + 112) << 23) | (man << 13);
	} else if (man) { /* subnormal: normalise */
		exp = 113;
		while (!(man & 0x400)) {
			man <<= 1;
			exp--;
		}
		bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
	} else {
		bits = sign;
	}
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

/* DEQUANTIZE of float16 weights (the converter's float16 mode): the output
 * becomes a float32 constant; no op is written. */
static int dequantize(conv_t *c, tflite_Operator_table_t op)
{
	int x = 0, y, rc; /* set when op_input returns 0 */
	if ((rc = op_input(c, op, 0, false, &x)))
		return rc;
	tensor_t *in = &c->tensors[x];
	tflite_TensorType_enum_t type = tflite_Tensor_type(file_tensor(c, x));
	if (!in->constant || type != tflite_TensorType_FLOAT16)
		return op_fail(c, TLCM_ENOTSUP,
			       "only float16 constants can be dequantized; "
			       "%s is %s%s (quantized models are not "
			       "supported)",
			       TL(c, x), in->constant ? "a constant " : "",
			       type_name(type));
	if (in->nbytes != in->count * 2)
		return op_fail(c, TLCM_EINVAL,
			       "%s: its buffer holds %zu bytes, expected %zu "
			       "(shape %s of float16)",
			       TL(c, x), in->nbytes, in->count * 2,
			       SHAPE(in));
	if ((rc = op_output(c, op, &y)) ||
	    (rc = expect_shape(c, y, in->rank, in->shape)))
		return rc;
	tensor_t *out = &c->tensors[y];
	out->owned = malloc(in->count * sizeof *out->owned);
	if (!out->owned)
		return fail(c, TLCM_ENOMEM, "out of memory");
	for (size_t j = 0; j < in->count; j++)
		out->owned[j] = half_to_float(tlcm_fb_load_u16(in->bytes + 2 * j));
	out->constant = out->ready = true;
	return 0;
}

static int convert_op(conv_t *c, tflite_Operator_table_t op, int32_t code)
{
	switch (code) {
	case tflite_BuiltinOperator_CONV_2D:
		return conv_2d(c, op, false);
	case tflite_BuiltinOperator_DEPTHWISE_CONV_2D:
		return conv_2d(c, op, true);
	case tflite_BuiltinOperator_FULLY_CONNECTED:
		return fully_connected(c, op);
	case tflite_BuiltinOperator_AVERAGE_POOL_2D:
		return pool_2d(c, op, tlcm_OpType_AveragePool2D);
	case tflite_BuiltinOperator_MAX_POOL_2D:
		return pool_2d(c, op, tlcm_OpType_MaxPool2D);
	case tflite_BuiltinOperator_MEAN:
		return mean(c, op);
	case tflite_BuiltinOperator_ADD:
		return binary(c, op, tlcm_OpType_Add);
	case tflite_BuiltinOperator_MUL:
		return binary(c, op, tlcm_OpType_Multiply);
	case tflite_BuiltinOperator_RELU:
		return unary(c, op, tlcm_OpType_Relu);
	case tflite_BuiltinOperator_RELU6:
		return unary(c, op, tlcm_OpType_Relu6);
	case tflite_BuiltinOperator_RELU_N1_TO_1:
		return unary(c, op, tlcm_OpType_Clamp);
	case tflite_BuiltinOperator_HARD_SWISH:
		return unary(c, op, tlcm_OpType_HardSwish);
	case tflite_BuiltinOperator_LOGISTIC:
		return unary(c, op, tlcm_OpType_Sigmoid);
	case tflite_BuiltinOperator_SOFTMAX:
		return unary(c, op, tlcm_OpType_Softmax);
	case tflite_BuiltinOperator_RESHAPE:
	case tflite_BuiltinOperator_SQUEEZE:
		return unary(c, op, tlcm_OpType_Reshape);
	case tflite_BuiltinOperator_PAD:
		return pad(c, op, false);
	case tflite_BuiltinOperator_PADV2:
		return pad(c, op, true);
	case tflite_BuiltinOperator_DEQUANTIZE:
		return dequantize(c, op);
	default:
		return op_fail(c, TLCM_ENOTSUP,
			       "unsupported operator (supported: "
			       TFL_SUPPORTED_OPS ")");
	}
}

static int convert_ops(conv_t *c)
{
	size_t ncodes = tflite_Model_operator_codes_len(c->model);
	size_t nops = tflite_SubGraph_operators_len(c->sg);
	for (size_t i = 0; i < nops; i++) {
		tflite_Operator_table_t op =
			tflite_SubGraph_operators_at(c->sg, i);
		uint32_t ci = tflite_Operator_opcode_index(op);
		c->op_index = i;
		c->op_name = "?";
		if (ci >= ncodes)
			return op_fail(c, TLCM_EINVAL,
				       "opcode_index %u out of range (%zu "
				       "operator codes)",
				       (unsigned)ci, ncodes);
		tflite_OperatorCode_table_t oc =
			tflite_Model_operator_codes_at(c->model, ci);
		/* as TFLite: the larger of the byte and the int field */
		int32_t code = tflite_OperatorCode_deprecated_builtin_code(oc);
		if (tflite_OperatorCode_builtin_code(oc) > code)
			code = tflite_OperatorCode_builtin_code(oc);
		const char *name = tflite_BuiltinOperator_name(code);
		if (code == tflite_BuiltinOperator_CUSTOM) {
			const char *cc = tflite_OperatorCode_custom_code(oc);
			snprintf(c->op_name_buf, sizeof c->op_name_buf,
				 "CUSTOM '%.60s'", cc ? cc : "");
			c->op_name = c->op_name_buf;
			return op_fail(c, TLCM_ENOTSUP,
				       "custom operators are not supported");
		}
		if (!name) {
			snprintf(c->op_name_buf, sizeof c->op_name_buf,
				 "builtin %d", (int)code);
			name = c->op_name_buf;
		}
		c->op_name = name;
		int rc = convert_op(c, op, code);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- graph input and outputs --------------------------------------------- */

static int check_io(conv_t *c)
{
	size_t nin = tflite_SubGraph_inputs_len(c->sg);
	if (nin != 1)
		return fail(c, TLCM_ENOTSUP,
			    "the model has %zu inputs; exactly one is "
			    "supported",
			    nin);
	int32_t x = tflite_SubGraph_inputs_at(c->sg, 0);
	if (x < 0 || (size_t)x >= c->nfile_tensors)
		return fail(c, TLCM_EINVAL,
			    "the input is tensor %d, out of range (%zu tensors)",
			    (int)x, c->nfile_tensors);
	tensor_t *t = &c->tensors[x];
	tflite_TensorType_enum_t type = tflite_Tensor_type(file_tensor(c, x));
	if (type != tflite_TensorType_FLOAT32)
		return fail(c, TLCM_ENOTSUP,
			    "input %s has type %s, expected FLOAT32%s",
			    TL(c, x), type_name(type),
			    type == tflite_TensorType_INT8 ||
					    type == tflite_TensorType_UINT8
				    ? " (quantized models are not supported)"
				    : "");
	if (t->constant || t->rank < 1)
		return fail(c, TLCM_EINVAL,
			    "input %s is %s", TL(c, x),
			    t->constant ? "a constant" : "a scalar");
	if (t->shape[0] != 1)
		return fail(c, TLCM_ENOTSUP,
			    "input %s has shape %s: batch %d (only batch 1 "
			    "models are supported; export with batch 1)",
			    TL(c, x), SHAPE(t), (int)t->shape[0]);
	t->ready = true;
	c->input = x;
	return 0;
}

static int check_outputs(conv_t *c)
{
	size_t n = tflite_SubGraph_outputs_len(c->sg);
	if (!n)
		return fail(c, TLCM_EINVAL, "the model has no outputs");
	for (size_t i = 0; i < n; i++) {
		int32_t y = tflite_SubGraph_outputs_at(c->sg, i);
		if (y < 0 || (size_t)y >= c->nfile_tensors)
			return fail(c, TLCM_EINVAL,
				    "output %zu is tensor %d, out of range "
				    "(%zu tensors)",
				    i, (int)y, c->nfile_tensors);
		const tensor_t *t = &c->tensors[y];
		if (t->constant || !t->ready || y == c->input)
			return fail(c, TLCM_EINVAL,
				    "output %s is %s", TL(c, y),
				    t->constant   ? "a constant"
				    : y == c->input ? "the input"
						    : "never computed");
	}
	return 0;
}

/* ---- writing the .tlm ----------------------------------------------------- */

static bool name_taken(conv_t *c, const char *name, int upto)
{
	for (size_t i = 0; i < c->ntensors; i++)
		if (c->tensors[i].tlm >= 0 && c->tensors[i].tlm < upto &&
		    c->tensors[i].unique && !strcmp(c->tensors[i].unique, name))
			return true;
	return false;
}

/* Give tensor i the next .tlm index and a unique, terminated name. */
static int use_tensor(conv_t *c, int i, int *next)
{
	if (i < 0 || c->tensors[i].tlm >= 0)
		return 0;
	tensor_t *t = &c->tensors[i];
	char stem[256];
	if (i < (int)c->nfile_tensors && t->name && t->name_len &&
	    !memchr(t->name, 0, t->name_len))
		snprintf(stem, sizeof stem, "%.*s",
			 (int)(t->name_len < 200 ? t->name_len : 200), t->name);
	else if (t->stem)
		snprintf(stem, sizeof stem, "%.230s", t->stem);
	else
		snprintf(stem, sizeof stem, "tensor_%d", i);
	char name[272];
	snprintf(name, sizeof name, "%s", stem);
	for (int k = 1; name_taken(c, name, *next); k++)
		snprintf(name, sizeof name, "%s_%d", stem, k);
	t->unique = strdup(name);
	if (!t->unique)
		return fail(c, TLCM_ENOMEM, "out of memory");
	t->tlm = (*next)++;
	return 0;
}

static tlcm_fbb_ref_t write_tensor(tlcm_fbb_t *b, const tensor_t *t)
{
	tlcm_fbb_ref_t name = tlcm_fbb_cstring(b, t->unique);
	tlcm_fbb_ref_t shape = tlcm_Tensor_shape_create(b, t->shape,
							(size_t)t->rank);
	tlcm_fbb_ref_t data = 0;
	if (t->owned) {
		data = tlcm_Tensor_data_create(b, t->owned, t->count);
	} else if (t->constant) {
		void *p = NULL;
		data = tlcm_fbb_vec_alloc(b, t->count, 4, 4, &p);
		if (p)
			memcpy(p, t->bytes, t->count * 4);
	}
	tlcm_Tensor_start(b);
	tlcm_Tensor_add_name(b, name);
	tlcm_Tensor_add_shape(b, shape);
	if (data)
		tlcm_Tensor_add_data(b, data);
	return tlcm_Tensor_end(b);
}

static tlcm_fbb_ref_t write_op(tlcm_fbb_t *b, const conv_t *c, const op_t *o)
{
	int32_t in[3];
	for (int k = 0; k < o->nin; k++)
		in[k] = o->in[k] < 0 ? -1 : c->tensors[o->in[k]].tlm;
	int32_t out = c->tensors[o->out].tlm;
	tlcm_fbb_ref_t ins = tlcm_Op_inputs_create(b, in, (size_t)o->nin);
	tlcm_fbb_ref_t outs = tlcm_Op_outputs_create(b, &out, 1);
	tlcm_Op_start(b);
	tlcm_Op_add_type(b, o->type);
	tlcm_Op_add_inputs(b, ins);
	tlcm_Op_add_outputs(b, outs);
	tlcm_Op_add_kernel_h(b, o->kernel_h);
	tlcm_Op_add_kernel_w(b, o->kernel_w);
	tlcm_Op_add_stride_h(b, o->stride_h);
	tlcm_Op_add_stride_w(b, o->stride_w);
	tlcm_Op_add_dilation_h(b, o->dilation_h);
	tlcm_Op_add_dilation_w(b, o->dilation_w);
	tlcm_Op_add_pad_top(b, o->pad_top);
	tlcm_Op_add_pad_bottom(b, o->pad_bottom);
	tlcm_Op_add_pad_left(b, o->pad_left);
	tlcm_Op_add_pad_right(b, o->pad_right);
	tlcm_Op_add_depth_multiplier(b, o->depth_multiplier);
	tlcm_Op_add_activation(b, o->activation);
	tlcm_Op_add_clamp_min(b, o->clamp_min);
	tlcm_Op_add_clamp_max(b, o->clamp_max);
	tlcm_Op_add_pad_value(b, o->pad_value);
	return tlcm_Op_end(b);
}

static int write_tlm(conv_t *c, void **tlm, size_t *tlm_len)
{
	/* number the tensors in first-use order, the input first */
	int next = 0, rc = use_tensor(c, c->input, &next);
	for (size_t i = 0; !rc && i < c->nops; i++) {
		for (int k = 0; !rc && k < c->ops[i].nin; k++)
			rc = use_tensor(c, c->ops[i].in[k], &next);
		if (!rc)
			rc = use_tensor(c, c->ops[i].out, &next);
	}
	if (rc)
		return rc;
	size_t nout = tflite_SubGraph_outputs_len(c->sg);
	int *order = malloc((size_t)next * sizeof *order);
	tlcm_fbb_ref_t *refs = malloc(((size_t)next + c->nops + 1) *
				      sizeof *refs);
	int32_t *outs = malloc((nout + 1) * sizeof *outs);
	/* size the builder once: growing by doubling would touch (page in)
	 * about twice the weights again */
	size_t estimate = 4096 + 128 * c->nops;
	for (size_t i = 0; i < c->ntensors; i++)
		if (c->tensors[i].tlm >= 0)
			estimate += 96 + strlen(c->tensors[i].unique) +
				    (c->tensors[i].constant
					     ? 4 * c->tensors[i].count
					     : 0);
	tlcm_fbb_t b;
	if (!order || !refs || !outs || tlcm_fbb_init(&b, estimate)) {
		free(order);
		free(refs);
		free(outs);
		return fail(c, TLCM_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < c->ntensors; i++)
		if (c->tensors[i].tlm >= 0)
			order[c->tensors[i].tlm] = (int)i;
	for (int i = 0; i < next; i++)
		refs[i] = write_tensor(&b, &c->tensors[order[i]]);
	tlcm_fbb_ref_t tensors = tlcm_Model_tensors_create(&b, refs,
							   (size_t)next);
	for (size_t i = 0; i < c->nops; i++)
		refs[i] = write_op(&b, c, &c->ops[i]);
	tlcm_fbb_ref_t ops = tlcm_Model_ops_create(&b, refs, c->nops);
	int32_t in = c->tensors[c->input].tlm;
	tlcm_fbb_ref_t inputs = tlcm_Model_inputs_create(&b, &in, 1);
	for (size_t i = 0; i < nout; i++)
		outs[i] = c->tensors[tflite_SubGraph_outputs_at(c->sg, i)].tlm;
	tlcm_fbb_ref_t outputs = tlcm_Model_outputs_create(&b, outs, nout);
	const char *desc = tflite_Model_description(c->model);
	char text[200];
	snprintf(text, sizeof text, "imported from .tflite%s%.150s",
		 desc && *desc ? ": " : "", desc ? desc : "");
	tlcm_fbb_ref_t description = tlcm_fbb_cstring(&b, text);
	const char *sg_name = tflite_SubGraph_name(c->sg);
	tlcm_fbb_ref_t name = sg_name ? tlcm_fbb_cstring(&b, sg_name) : 0;
	tlcm_Model_start(&b);
	if (name)
		tlcm_Model_add_name(&b, name);
	tlcm_Model_add_description(&b, description);
	tlcm_Model_add_tensors(&b, tensors);
	tlcm_Model_add_ops(&b, ops);
	tlcm_Model_add_inputs(&b, inputs);
	tlcm_Model_add_outputs(&b, outputs);
	size_t size = 0;
	const void *msg = tlcm_Model_finish(&b, tlcm_Model_end(&b), &size);
	rc = msg ? 0 : tlcm_fbb_error(&b);
	if (rc)
		fail(c, rc, "writing the .tlm failed: %s", tlcm_strerror(rc));
	else if (!(*tlm = malloc(size)))
		rc = fail(c, TLCM_ENOMEM, "out of memory");
	else {
		memcpy(*tlm, msg, size);
		*tlm_len = size;
	}
	tlcm_fbb_fini(&b);
	free(order);
	free(refs);
	free(outs);
	return rc;
}

/* ---- entry point ----------------------------------------------------------- */

static int convert(conv_t *c, void **tlm, size_t *tlm_len)
{
	const char *vwhy = NULL;
	if (tflite_Model_verify_as_root(c->file, c->file_len, &vwhy))
		return fail(c, TLCM_EBADMSG, "not a valid .tflite file: %s",
			    vwhy ? vwhy : "verification failed");
	c->model = tflite_Model_as_root(c->file);
	uint32_t version = tflite_Model_version(c->model);
	if (version != TFL_SCHEMA_VERSION)
		return fail(c, TLCM_ENOTSUP,
			    "schema version %u (expected %u)", (unsigned)version,
			    TFL_SCHEMA_VERSION);
	size_t nsg = tflite_Model_subgraphs_len(c->model);
	if (nsg != 1)
		return fail(c, TLCM_ENOTSUP,
			    "the model has %zu subgraphs; only models with "
			    "one (no control flow) are supported",
			    nsg);
	c->sg = tflite_Model_subgraphs_at(c->model, 0);
	int rc;
	if ((rc = read_tensors(c)) || (rc = check_io(c)) ||
	    (rc = convert_ops(c)) || (rc = check_outputs(c)))
		return rc;
	if (!c->nops)
		return fail(c, TLCM_EINVAL, "the model has no operators");
	return write_tlm(c, tlm, tlm_len);
}

int tlcm_tflite_to_tlm(const void *tfl, size_t len, void **tlm,
		       size_t *tlm_len, char *why, size_t cap)
{
	if (why && cap)
		why[0] = '\0';
	if (!tlm || !tlm_len || (!tfl && len))
		return TLCM_EINVAL;
	*tlm = NULL;
	*tlm_len = 0;
	conv_t c = {.file = tfl, .file_len = len, .why = why, .cap = cap,
		    .input = -1};
	/* the verifier checks alignment on real addresses: give it 16 */
	void *copy = NULL;
	if (((uintptr_t)tfl & 15) != 0) {
		copy = malloc(len ? len : 1);
		if (!copy)
			return fail(&c, TLCM_ENOMEM, "out of memory");
		memcpy(copy, tfl, len);
		c.file = copy;
	}
	int rc = convert(&c, tlm, tlm_len);
	for (size_t i = 0; i < c.ntensors; i++) {
		free(c.tensors[i].stem);
		free(c.tensors[i].unique);
		free(c.tensors[i].owned);
	}
	free(c.tensors);
	free(c.ops);
	free(copy);
	return rc;
}
