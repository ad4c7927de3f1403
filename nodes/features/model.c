/* model.c — load a .tlm (or .tflite) model, verify it and check it whole.
 *
 * Loading copies the bytes into a buffer the model owns, verifies them
 * with the generated FlatBuffers verifier, then decodes tensors and ops
 * into plain arrays (tlcm_model_t) while checking everything a runtime
 * relies on; see model.h for the list. Op checks infer each op's output
 * shape from its inputs and parameters and compare it with the shape the
 * file declares, so a writer's mistake is reported where it happened.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "nodes/features/model.h"
#include "nodes/features/tflite.h"

/* Largest tensor accepted, in elements (1 GiB of floats). */
#define MAX_ELEMS ((size_t)1 << 28)

/* ---- messages ------------------------------------------------------------ */

const char *tlcm_shape_str(const int32_t *shape, int rank, char *buf,
			   size_t cap)
{
	size_t n = 0;
	if (!cap)
		return buf;
	n += (size_t)snprintf(buf + n, cap - n, "[");
	for (int i = 0; i < rank && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%d", i ? "," : "",
				      (int)shape[i]);
	if (n < cap)
		snprintf(buf + n, cap - n, "]");
	return buf;
}

static const char *op_type_name(tlcm_OpType_enum_t t)
{
	const char *s = tlcm_OpType_name(t);
	return s ? s : "unknown";
}

const char *tlcm_model_op_label(const tlcm_model_t *m, size_t op, char *buf,
				size_t cap)
{
	const tlcm_op_t *o = &m->ops[op];
	if (o->out >= 0 && (size_t)o->out < m->ntensors)
		snprintf(buf, cap, "op %zu (%s -> '%s')", op,
			 op_type_name(o->type), m->tensors[o->out].name);
	else
		snprintf(buf, cap, "op %zu (%s)", op, op_type_name(o->type));
	return buf;
}

/* ---- decoding ------------------------------------------------------------ */

/* Tensors: names, shapes, data lengths. */
static int decode_tensors(tlcm_model_t *m, tlcm_Model_table_t root,
			  char *why, size_t cap)
{
	const char *org = m->origin;
	m->ntensors = tlcm_Model_tensors_len(root);
	m->tensors = calloc(m->ntensors ? m->ntensors : 1, sizeof *m->tensors);
	if (!m->tensors)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < m->ntensors; i++) {
		tlcm_Tensor_table_t t = tlcm_Model_tensors_at(root, i);
		tlcm_tensor_t *x = &m->tensors[i];
		x->name = tlcm_Tensor_name(t);
		x->producer = -1;
		if (!x->name || !*x->name)
			return tlcm_fail(why, cap, TLCM_EINVAL, "%s: tensor %zu has an"
				    " empty name, expected a unique name", org,
				    i);
		size_t rank = tlcm_Tensor_shape_len(t);
		if (rank < 1 || rank > TLCM_MODEL_MAX_RANK)
			return tlcm_fail(why, cap, TLCM_EINVAL, "%s: tensor %zu '%s' "
				    "has rank %zu, expected 1 to %d", org, i,
				    x->name, rank, TLCM_MODEL_MAX_RANK);
		x->rank = (int)rank;
		x->size = 1;
		for (size_t d = 0; d < rank; d++) {
			int32_t v = tlcm_Tensor_shape_at(t, d);
			x->shape[d] = v;
			if (v < 1)
				return tlcm_fail(why, cap, TLCM_EINVAL, "%s: tensor %zu"
					    " '%s' has dimension %zu = %d, "
					    "expected >= 1", org, i, x->name,
					    d, (int)v);
			if ((size_t)v > MAX_ELEMS / x->size)
				return tlcm_fail(why, cap, TLCM_ETOOBIG, "%s: tensor "
					    "%zu '%s' has more than %zu "
					    "elements", org, i, x->name,
					    MAX_ELEMS);
			x->size *= (size_t)v;
		}
		if (tlcm_Tensor_data_is_present(t)) {
			size_t n = tlcm_Tensor_data_len(t);
			char s[64];
			if (n != x->size)
				return tlcm_fail(why, cap, TLCM_EINVAL, "%s: tensor %zu"
					    " '%s' holds %zu floats, expected "
					    "%zu for shape %s", org, i, x->name,
					    n, x->size,
					    tlcm_shape_str(x->shape, x->rank,
							   s, sizeof s));
			x->data = tlcm_Tensor_data(t);
		}
	}
	for (size_t i = 0; i < m->ntensors; i++)
		for (size_t j = 0; j < i; j++)
			if (!strcmp(m->tensors[i].name, m->tensors[j].name))
				return tlcm_fail(why, cap, TLCM_EINVAL, "%s: tensors "
					    "%zu and %zu are both named '%s', "
					    "expected unique names", org, j, i,
					    m->tensors[i].name);
	return 0;
}

static int decode_ops(tlcm_model_t *m, tlcm_Model_table_t root, char *why,
		      size_t cap)
{
	m->nops = tlcm_Model_ops_len(root);
	m->ops = calloc(m->nops ? m->nops : 1, sizeof *m->ops);
	if (!m->ops)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < m->nops; i++) {
		tlcm_Op_table_t t = tlcm_Model_ops_at(root, i);
		tlcm_op_t *o = &m->ops[i];
		o->type = tlcm_Op_type(t);
		o->out = -1;
		if (!tlcm_OpType_is_known(o->type))
			return tlcm_fail(why, cap, TLCM_EINVAL, "%s: op %zu has "
				    "unknown type %u, expected 0..%u", m->origin,
				    i, (unsigned)o->type,
				    (unsigned)tlcm_OpType_Pad);
		size_t nin = tlcm_Op_inputs_len(t), nout = tlcm_Op_outputs_len(t);
		if (nout == 1)
			o->out = tlcm_Op_outputs_at(t, 0);
		char lab[160];
		tlcm_model_op_label(m, i, lab, sizeof lab);
		if (nout != 1)
			return tlcm_fail(why, cap, TLCM_EINVAL, "%s: %s has %zu "
				    "outputs, expected 1", m->origin, lab, nout);
		if (nin > TLCM_MODEL_MAX_IN)
			return tlcm_fail(why, cap, TLCM_EINVAL, "%s: %s has %zu "
				    "inputs, expected at most %d", m->origin, lab,
				    nin, TLCM_MODEL_MAX_IN);
		o->nin = (int)nin;
		for (int k = 0; k < TLCM_MODEL_MAX_IN; k++)
			o->in[k] = (size_t)k < nin ? tlcm_Op_inputs_at(t, (size_t)k)
						   : -1;
		o->kernel_h = tlcm_Op_kernel_h(t);
		o->kernel_w = tlcm_Op_kernel_w(t);
		o->stride_h = tlcm_Op_stride_h(t);
		o->stride_w = tlcm_Op_stride_w(t);
		o->dilation_h = tlcm_Op_dilation_h(t);
		o->dilation_w = tlcm_Op_dilation_w(t);
		o->pad_top = tlcm_Op_pad_top(t);
		o->pad_bottom = tlcm_Op_pad_bottom(t);
		o->pad_left = tlcm_Op_pad_left(t);
		o->pad_right = tlcm_Op_pad_right(t);
		o->depth_multiplier = tlcm_Op_depth_multiplier(t);
		o->activation = tlcm_Op_activation(t);
		o->clamp_min = tlcm_Op_clamp_min(t);
		o->clamp_max = tlcm_Op_clamp_max(t);
		o->pad_value = tlcm_Op_pad_value(t);
	}
	return 0;
}

/* ---- op checks ----------------------------------------------------------- */

/* What checking one op needs: the model, the op and its label. */
typedef struct {
	const tlcm_model_t *m;
	const tlcm_op_t *o;
	char lab[160];
	char *why;
	size_t cap;
} opck_t;

static const tlcm_tensor_t *tin(const opck_t *c, int k)
{
	return c->o->in[k] >= 0 ? &c->m->tensors[c->o->in[k]] : NULL;
}

/* Input k must have the given rank. */
static int want_rank(const opck_t *c, int k, const char *role, int rank)
{
	const tlcm_tensor_t *t = tin(c, k);
	char s[64];
	if (t->rank == rank)
		return 0;
	return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: %s tensor %d '%s' "
		    "has shape %s, expected rank %d", c->m->origin, c->lab,
		    role, c->o->in[k], t->name,
		    tlcm_shape_str(t->shape, t->rank, s, sizeof s), rank);
}

/* The bias (input 2), when present, must be [n]. */
static int want_bias(const opck_t *c, int n)
{
	const tlcm_tensor_t *t = c->o->nin > 2 ? tin(c, 2) : NULL;
	char s[64];
	if (!t || (t->rank == 1 && t->shape[0] == n))
		return 0;
	return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: bias tensor %d '%s' "
		    "has shape %s, expected [%d]", c->m->origin, c->lab,
		    c->o->in[2], t->name,
		    tlcm_shape_str(t->shape, t->rank, s, sizeof s), n);
}

/* One spatial output size: (in + pads - dilated kernel) / stride + 1. */
static int out_size(const opck_t *c, const char *axis, int in, int pad0,
		    int pad1, int k, int stride, int dil, int32_t *out)
{
	long eff = (long)dil * (k - 1) + 1, padded = (long)in + pad0 + pad1;
	if (padded < eff)
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: padded input %s"
			    " %ld is smaller than the (dilated) kernel %ld",
			    c->m->origin, c->lab, axis, padded, eff);
	*out = (int32_t)((padded - eff) / stride + 1);
	return 0;
}

/* Spatial output [1, oh, ow, ch] of a window op over input 0 (NHWC). */
static int window_out(const opck_t *c, int kh, int kw, int ch, int32_t *exp)
{
	const tlcm_op_t *o = c->o;
	const tlcm_tensor_t *x = tin(c, 0);
	exp[0] = 1;
	exp[3] = ch;
	int rc = out_size(c, "height", x->shape[1], o->pad_top, o->pad_bottom,
			  kh, o->stride_h, o->dilation_h, &exp[1]);
	if (!rc)
		rc = out_size(c, "width", x->shape[2], o->pad_left,
			      o->pad_right, kw, o->stride_w, o->dilation_w,
			      &exp[2]);
	return rc;
}

static bool has_activation(tlcm_OpType_enum_t t)
{
	return t <= tlcm_OpType_Multiply; /* conv .. multiply */
}

static int check_params(const opck_t *c)
{
	const tlcm_op_t *o = c->o;
	const char *org = c->m->origin;
	if (o->stride_h < 1 || o->stride_w < 1 || o->dilation_h < 1 ||
	    o->dilation_w < 1)
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: stride %dx%d, "
			    "dilation %dx%d, expected >= 1", org, c->lab,
			    o->stride_h, o->stride_w, o->dilation_h,
			    o->dilation_w);
	if (o->pad_top < 0 || o->pad_bottom < 0 || o->pad_left < 0 ||
	    o->pad_right < 0)
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: padding top %d"
			    " bottom %d left %d right %d, expected >= 0", org,
			    c->lab, o->pad_top, o->pad_bottom, o->pad_left,
			    o->pad_right);
	if (!tlcm_Activation_is_known(o->activation))
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: unknown fused "
			    "activation %u, expected None, Relu or Relu6", org,
			    c->lab, (unsigned)o->activation);
	if (o->activation != tlcm_Activation_None && !has_activation(o->type))
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: a fused "
			    "activation (%s) on an op that has none, expected "
			    "None", org, c->lab,
			    tlcm_Activation_name(o->activation));
	if (o->type == tlcm_OpType_Clamp &&
	    !(o->clamp_min <= o->clamp_max))
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: clamp_min %g > "
			    "clamp_max %g", org, c->lab, (double)o->clamp_min,
			    (double)o->clamp_max);
	if ((o->type == tlcm_OpType_AveragePool2D ||
	     o->type == tlcm_OpType_MaxPool2D) &&
	    (o->kernel_h < 1 || o->kernel_w < 1))
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: kernel %dx%d, "
			    "expected >= 1", org, c->lab, o->kernel_h,
			    o->kernel_w);
	if ((o->type == tlcm_OpType_AveragePool2D ||
	     o->type == tlcm_OpType_MaxPool2D) &&
	    (o->pad_top >= o->kernel_h || o->pad_bottom >= o->kernel_h ||
	     o->pad_left >= o->kernel_w || o->pad_right >= o->kernel_w))
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: padding top %d"
			    " bottom %d left %d right %d with a %dx%d window, "
			    "expected less than the window (a window in the "
			    "padding alone has no input)", org, c->lab,
			    o->pad_top, o->pad_bottom, o->pad_left,
			    o->pad_right, o->kernel_h, o->kernel_w);
	if (o->type == tlcm_OpType_AveragePool2D &&
	    (o->dilation_h != 1 || o->dilation_w != 1))
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: dilation %dx%d,"
			    " expected 1x1 for average pooling", org, c->lab,
			    o->dilation_h, o->dilation_w);
	if (o->type == tlcm_OpType_DepthwiseConv2D && o->depth_multiplier < 1)
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: depth "
			    "multiplier %d, expected >= 1", org, c->lab,
			    o->depth_multiplier);
	return 0;
}

/* b broadcasts onto a: same shape, or [C] / [1,..,1,C] with C a's last
 * dimension. */
static bool broadcasts(const tlcm_tensor_t *a, const tlcm_tensor_t *b)
{
	if (b->rank == a->rank &&
	    !memcmp(a->shape, b->shape, (size_t)a->rank * sizeof a->shape[0]))
		return true;
	if (b->rank > a->rank || b->shape[b->rank - 1] != a->shape[a->rank - 1])
		return false;
	for (int d = 0; d < b->rank - 1; d++)
		if (b->shape[d] != 1)
			return false;
	return true;
}

/* Infer the output shape of c->o into exp/erank. */
static int infer(const opck_t *c, int32_t *exp, int *erank)
{
	const tlcm_op_t *o = c->o;
	const tlcm_tensor_t *x = tin(c, 0), *w = tin(c, 1);
	const char *org = c->m->origin;
	char s[64], s2[64];
	int rc;
	*erank = x->rank;
	memcpy(exp, x->shape, sizeof x->shape);
	switch (o->type) {
	case tlcm_OpType_Conv2D:
		if ((rc = want_rank(c, 0, "input", 4)) ||
		    (rc = want_rank(c, 1, "filter", 4)))
			return rc;
		if (w->shape[3] != x->shape[3])
			return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: filter"
				    " tensor %d '%s' has shape %s, expected "
				    "[out,kh,kw,%d] (OHWI, input channels %d)",
				    org, c->lab, o->in[1], w->name,
				    tlcm_shape_str(w->shape, 4, s, sizeof s),
				    (int)x->shape[3], (int)x->shape[3]);
		if ((rc = want_bias(c, w->shape[0])))
			return rc;
		return window_out(c, w->shape[1], w->shape[2], w->shape[0],
				  exp);
	case tlcm_OpType_DepthwiseConv2D: {
		if ((rc = want_rank(c, 0, "input", 4)) ||
		    (rc = want_rank(c, 1, "filter", 4)))
			return rc;
		long ch = (long)x->shape[3] * o->depth_multiplier;
		if (w->shape[0] != 1 || w->shape[3] != ch)
			return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: filter"
				    " tensor %d '%s' has shape %s, expected "
				    "[1,kh,kw,%ld] (input channels %d x depth "
				    "multiplier %d)", org, c->lab, o->in[1],
				    w->name,
				    tlcm_shape_str(w->shape, 4, s, sizeof s), ch,
				    (int)x->shape[3], o->depth_multiplier);
		if ((rc = want_bias(c, (int)ch)))
			return rc;
		return window_out(c, w->shape[1], w->shape[2], (int)ch, exp);
	}
	case tlcm_OpType_FullyConnected:
		if ((rc = want_rank(c, 1, "weights", 2)))
			return rc;
		if (x->size != (size_t)w->shape[1])
			return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: input "
				    "tensor %d '%s' of shape %s has %zu elements"
				    " per frame, the weights tensor %d '%s' of "
				    "shape %s expects %d", org, c->lab, o->in[0],
				    x->name,
				    tlcm_shape_str(x->shape, x->rank, s,
						   sizeof s),
				    x->size, o->in[1], w->name,
				    tlcm_shape_str(w->shape, 2, s2, sizeof s2),
				    (int)w->shape[1]);
		if ((rc = want_bias(c, w->shape[0])))
			return rc;
		*erank = 2;
		exp[0] = 1;
		exp[1] = w->shape[0];
		return 0;
	case tlcm_OpType_AveragePool2D:
	case tlcm_OpType_MaxPool2D:
		if ((rc = want_rank(c, 0, "input", 4)))
			return rc;
		return window_out(c, o->kernel_h, o->kernel_w, x->shape[3], exp);
	case tlcm_OpType_GlobalAveragePool: {
		if ((rc = want_rank(c, 0, "input", 4)))
			return rc;
		const tlcm_tensor_t *y = &c->m->tensors[o->out];
		exp[0] = 1;
		if (y->rank == 2) { /* [1,C] */
			*erank = 2;
			exp[1] = x->shape[3];
		} else {            /* [1,1,1,C] */
			exp[1] = exp[2] = 1;
		}
		return 0;
	}
	case tlcm_OpType_Add:
	case tlcm_OpType_Multiply:
		if (!broadcasts(x, w))
			return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: second "
				    "input tensor %d '%s' has shape %s, expected "
				    "the first's %s or [%d] (per channel)", org,
				    c->lab, o->in[1], w->name,
				    tlcm_shape_str(w->shape, w->rank, s,
						   sizeof s),
				    tlcm_shape_str(x->shape, x->rank, s2,
						   sizeof s2),
				    (int)x->shape[x->rank - 1]);
		return 0;
	case tlcm_OpType_Reshape: {
		const tlcm_tensor_t *y = &c->m->tensors[o->out];
		if (y->size != x->size)
			return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: output "
				    "tensor %d '%s' has shape %s (%zu elements),"
				    " expected %zu elements like input %s", org,
				    c->lab, o->out, y->name,
				    tlcm_shape_str(y->shape, y->rank, s,
						   sizeof s),
				    y->size, x->size,
				    tlcm_shape_str(x->shape, x->rank, s2,
						   sizeof s2));
		*erank = y->rank;
		memcpy(exp, y->shape, sizeof y->shape);
		return 0;
	}
	case tlcm_OpType_Pad:
		if ((rc = want_rank(c, 0, "input", 4)))
			return rc;
		exp[1] += o->pad_top + o->pad_bottom;
		exp[2] += o->pad_left + o->pad_right;
		return 0;
	default: /* element-wise: the input's shape */
		return 0;
	}
}

/* How many inputs each op type takes: [min, max]. */
static void arity(tlcm_OpType_enum_t t, int *lo, int *hi)
{
	switch (t) {
	case tlcm_OpType_Conv2D:
	case tlcm_OpType_DepthwiseConv2D:
	case tlcm_OpType_FullyConnected:
		*lo = 2;
		*hi = 3;
		break;
	case tlcm_OpType_Add:
	case tlcm_OpType_Multiply:
		*lo = *hi = 2;
		break;
	default:
		*lo = *hi = 1;
	}
}

/* Ops whose inputs 1 and 2 are constant weights and bias. */
static bool weighted(tlcm_OpType_enum_t t)
{
	return t == tlcm_OpType_Conv2D || t == tlcm_OpType_DepthwiseConv2D ||
	       t == tlcm_OpType_FullyConnected;
}

/* Role of input k of op type t, for messages. */
static const char *role(tlcm_OpType_enum_t t, int k)
{
	if (k == 0)
		return "input";
	if (!weighted(t))
		return "second input";
	if (k == 2)
		return "bias";
	return t == tlcm_OpType_FullyConnected ? "weights" : "filter";
}

/* Inputs: count, indices, constants where weights go, activations
 * already produced; the output: in range, not constant, written once. */
static int check_wiring(const opck_t *c)
{
	const tlcm_model_t *m = c->m;
	const tlcm_op_t *o = c->o;
	const char *org = m->origin;
	int lo, hi;
	arity(o->type, &lo, &hi);
	if (o->nin < lo || o->nin > hi)
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s has %d inputs, "
			    "expected %d%s%s", org, c->lab, o->nin, lo,
			    hi > lo ? " or " : "",
			    hi > lo ? "3 (input, weights, bias or -1)" : "");
	if (o->out < 0 || (size_t)o->out >= m->ntensors)
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: output tensor "
			    "index %d out of range, expected 0..%zu", org,
			    c->lab, o->out, m->ntensors - 1);
	for (int k = 0; k < o->nin; k++) {
		int t = o->in[k];
		if (t == -1 && k == 2)
			continue;
		if (t < 0 || (size_t)t >= m->ntensors)
			return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: %s "
				    "tensor index %d out of range, expected "
				    "0..%zu%s", org, c->lab, role(o->type, k), t,
				    m->ntensors - 1,
				    k == 2 ? " or -1 (no bias)" : "");
		const tlcm_tensor_t *x = &m->tensors[t];
		if (k > 0 && weighted(o->type) && !x->data)
			return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: %s "
				    "tensor %d '%s' has no data, expected "
				    "constant weights", org, c->lab,
				    role(o->type, k), t, x->name);
		if (k == 0 && x->data)
			return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s: input "
				    "tensor %d '%s' is a constant, expected an "
				    "activation", org, c->lab, t, x->name);
		if (!x->data && t != m->input && x->producer < 0)
			return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s reads "
				    "tensor %d '%s' before any op writes it "
				    "(ops must be in execution order)", org,
				    c->lab, t, x->name);
	}
	const tlcm_tensor_t *y = &m->tensors[o->out];
	if (y->data)
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s writes constant "
			    "tensor %d '%s', expected an activation", org,
			    c->lab, o->out, y->name);
	if (o->out == m->input)
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s writes the "
			    "model input tensor %d '%s'", org, c->lab, o->out,
			    y->name);
	if (y->producer >= 0)
		return tlcm_fail(c->why, c->cap, TLCM_EINVAL, "%s: %s writes tensor "
			    "%d '%s', already written by op %d", org, c->lab,
			    o->out, y->name, y->producer);
	return 0;
}

/* An activation must be [1, ...]: the batch dimension first, 1 in the
 * file (runtimes replace it with their batch size). */
static int want_batch1(const tlcm_model_t *m, int t, const char *what,
		       char *why, size_t cap)
{
	const tlcm_tensor_t *x = &m->tensors[t];
	char s[64];
	if (x->rank >= 2 && x->shape[0] == 1)
		return 0;
	return tlcm_fail(why, cap, TLCM_EINVAL, "%s: %s tensor %d '%s' has shape %s,"
		    " expected [1,...] (batch dimension first, 1 in the file)",
		    m->origin, what, t, x->name,
		    tlcm_shape_str(x->shape, x->rank, s, sizeof s));
}

static int check_ops(tlcm_model_t *m, char *why, size_t cap)
{
	for (size_t i = 0; i < m->nops; i++) {
		opck_t c = {.m = m, .o = &m->ops[i], .why = why, .cap = cap};
		tlcm_model_op_label(m, i, c.lab, sizeof c.lab);
		int rc = check_wiring(&c);
		if (!rc)
			rc = check_params(&c);
		int32_t exp[TLCM_MODEL_MAX_RANK];
		int erank;
		if (!rc)
			rc = infer(&c, exp, &erank);
		if (rc)
			return rc;
		tlcm_tensor_t *y = &m->tensors[m->ops[i].out];
		if (y->rank != erank ||
		    memcmp(y->shape, exp, (size_t)erank * sizeof exp[0])) {
			char s[64], s2[64];
			return tlcm_fail(why, cap, TLCM_EINVAL, "%s: %s: output tensor"
				    " %d '%s' has shape %s, expected %s",
				    m->origin, c.lab, m->ops[i].out, y->name,
				    tlcm_shape_str(y->shape, y->rank, s,
						   sizeof s),
				    tlcm_shape_str(exp, erank, s2, sizeof s2));
		}
		if ((rc = want_batch1(m, m->ops[i].out, "output", why, cap)))
			return rc;
		y->producer = (int)i;
	}
	return 0;
}

/* Inputs, outputs and preprocessing. */
static int check_io(tlcm_model_t *m, tlcm_Model_table_t root, char *why,
		    size_t cap)
{
	const char *org = m->origin;
	size_t nin = tlcm_Model_inputs_len(root);
	if (nin != 1)
		return tlcm_fail(why, cap, TLCM_EINVAL, "%s: the model has %zu inputs,"
			    " expected exactly 1", org, nin);
	m->input = tlcm_Model_inputs_at(root, 0);
	if (m->input < 0 || (size_t)m->input >= m->ntensors)
		return tlcm_fail(why, cap, TLCM_EINVAL, "%s: input tensor index %d out "
			    "of range, expected 0..%zu", org, m->input,
			    m->ntensors ? m->ntensors - 1 : 0);
	const tlcm_tensor_t *x = &m->tensors[m->input];
	if (x->data)
		return tlcm_fail(why, cap, TLCM_EINVAL, "%s: input tensor %d '%s' "
			    "holds data, expected an activation", org,
			    m->input, x->name);
	int rc = want_batch1(m, m->input, "input", why, cap);
	if (rc)
		return rc;
	m->noutputs = tlcm_Model_outputs_len(root);
	if (!m->noutputs)
		return tlcm_fail(why, cap, TLCM_EINVAL, "%s: the model has no outputs,"
			    " expected at least one (e.g. 'embedding')", org);
	m->outputs = calloc(m->noutputs, sizeof *m->outputs);
	if (!m->outputs)
		return TLCM_ENOMEM;
	size_t channels = (size_t)x->shape[x->rank - 1];
	m->input_scale = tlcm_Model_input_scale(root);
	if (!isfinite(m->input_scale) || m->input_scale == 0)
		return tlcm_fail(why, cap, TLCM_EINVAL, "%s: input_scale %g, expected "
			    "a finite non-zero number", org,
			    (double)m->input_scale);
	m->nmean = tlcm_Model_input_mean_len(root);
	m->input_mean = m->nmean ? tlcm_Model_input_mean(root) : NULL;
	m->nstd = tlcm_Model_input_std_len(root);
	m->input_std = m->nstd ? tlcm_Model_input_std(root) : NULL;
	if (m->nmean > 1 && m->nmean != channels)
		return tlcm_fail(why, cap, TLCM_EINVAL, "%s: input_mean has %zu "
			    "values, expected 1 or %zu (input channels)", org,
			    m->nmean, channels);
	if (m->nstd > 1 && m->nstd != channels)
		return tlcm_fail(why, cap, TLCM_EINVAL, "%s: input_std has %zu values,"
			    " expected 1 or %zu (input channels)", org,
			    m->nstd, channels);
	for (size_t i = 0; i < m->nmean; i++)
		if (!isfinite(m->input_mean[i]))
			return tlcm_fail(why, cap, TLCM_EINVAL, "%s: input_mean[%zu] "
				    "is not finite", org, i);
	for (size_t i = 0; i < m->nstd; i++)
		if (!isfinite(m->input_std[i]) || m->input_std[i] == 0)
			return tlcm_fail(why, cap, TLCM_EINVAL, "%s: input_std[%zu] = "
				    "%g, expected finite and non-zero", org, i,
				    (double)m->input_std[i]);
	return 0;
}

static int check_outputs(tlcm_model_t *m, tlcm_Model_table_t root,
			 char *why, size_t cap)
{
	for (size_t i = 0; i < m->noutputs; i++) {
		int t = tlcm_Model_outputs_at(root, i);
		m->outputs[i] = t;
		if (t < 0 || (size_t)t >= m->ntensors)
			return tlcm_fail(why, cap, TLCM_EINVAL, "%s: output %zu: tensor"
				    " index %d out of range, expected 0..%zu",
				    m->origin, i, t, m->ntensors - 1);
		const tlcm_tensor_t *y = &m->tensors[t];
		if (y->producer < 0)
			return tlcm_fail(why, cap, TLCM_EINVAL, "%s: output %zu: tensor"
				    " %d '%s' is not written by any op, expected"
				    " an op's output", m->origin, i, t, y->name);
		for (size_t j = 0; j < i; j++)
			if (m->outputs[j] == t)
				return tlcm_fail(why, cap, TLCM_EINVAL, "%s: outputs "
					    "%zu and %zu are both tensor %d "
					    "'%s'", m->origin, j, i, t, y->name);
	}
	return 0;
}

/* ---- loading ------------------------------------------------------------- */

static int parse(tlcm_model_t *m, char *why, size_t cap)
{
	const char *vwhy = NULL;
	if (tlcm_Model_verify_as_root(m->buf, m->len, &vwhy))
		return tlcm_fail(why, cap, TLCM_EBADMSG, "%s: not a valid TinyLCM model"
			    " (.tlm, identifier TLMD): %s", m->origin,
			    vwhy ? vwhy : "verification failed");
	tlcm_Model_table_t root = tlcm_Model_as_root(m->buf);
	m->name = tlcm_Model_name_is_present(root) ? tlcm_Model_name(root) : "";
	m->description = tlcm_Model_description_is_present(root)
				 ? tlcm_Model_description(root) : "";
	int rc = decode_tensors(m, root, why, cap);
	if (!rc)
		rc = decode_ops(m, root, why, cap);
	if (!rc)
		rc = check_io(m, root, why, cap);
	if (!rc)
		rc = check_ops(m, why, cap);
	if (!rc)
		rc = check_outputs(m, root, why, cap);
	return rc;
}

static bool is_tflite(const void *buf, size_t len)
{
	return len >= 8 && !memcmp((const char *)buf + 4, "TFL3", 4);
}

int tlcm_model_from_buffer(tlcm_model_t **out, const void *buf, size_t len,
			   const char *origin, char *why, size_t cap)
{
	*out = NULL;
	if (!origin)
		origin = "model";
	tlcm_model_t *m = calloc(1, sizeof *m);
	if (!m || !(m->origin = strdup(origin))) {
		free(m);
		return tlcm_fail(why, cap, TLCM_ENOMEM, "%s: out of memory", origin);
	}
	int rc = 0;
	if (is_tflite(buf, len)) {
		char sub[400] = "";
		rc = tlcm_tflite_to_tlm(buf, len, &m->buf, &m->len, sub,
					sizeof sub);
		if (rc)
			tlcm_fail(why, cap, rc, "%s: .tflite import failed: %s",
			     origin, sub[0] ? sub : tlcm_strerror(rc));
	} else {
		m->len = len;
		m->buf = malloc(len ? len : 1); /* malloc alignment for the
						   float vectors */
		if (!m->buf)
			rc = tlcm_fail(why, cap, TLCM_ENOMEM, "%s: out of memory",
				  origin);
		else if (len)
			memcpy(m->buf, buf, len);
	}
	if (!rc)
		rc = parse(m, why, cap);
	if (rc) {
		tlcm_model_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int tlcm_model_load(tlcm_model_t **out, const char *path, char *why,
		    size_t cap)
{
	*out = NULL;
	FILE *f = fopen(path, "rb");
	if (!f)
		return tlcm_fail(why, cap, errno == ENOENT ? TLCM_ENOENT : TLCM_EIO,
			    "%s: cannot open: %s", path, strerror(errno));
	size_t n = 0, capb = 1 << 16;
	char *buf = malloc(capb);
	int rc = buf ? 0 : TLCM_ENOMEM;
	while (!rc) {
		if (n == capb) {
			char *nb = capb > TLCM_FB_MAX_BUFFER / 2
					   ? NULL : realloc(buf, capb * 2);
			if (!nb) {
				rc = tlcm_fail(why, cap, TLCM_ETOOBIG, "%s: larger "
					  "than %zu bytes", path,
					  (size_t)TLCM_FB_MAX_BUFFER);
				break;
			}
			buf = nb;
			capb *= 2;
		}
		size_t k = fread(buf + n, 1, capb - n, f);
		n += k;
		if (k == 0) {
			if (ferror(f))
				rc = tlcm_fail(why, cap, TLCM_EIO, "%s: read error",
					  path);
			break;
		}
	}
	fclose(f);
	if (rc == TLCM_ENOMEM)
		tlcm_fail(why, cap, rc, "%s: out of memory", path);
	if (!rc)
		rc = tlcm_model_from_buffer(out, buf, n, path, why, cap);
	free(buf);
	return rc;
}

void tlcm_model_free(tlcm_model_t *m)
{
	if (!m)
		return;
	free(m->origin);
	free(m->tensors);
	free(m->ops);
	free(m->outputs);
	free(m->buf);
	free(m);
}

/* ---- accessors ----------------------------------------------------------- */

int tlcm_model_find(const tlcm_model_t *m, const char *name)
{
	for (size_t i = 0; i < m->ntensors; i++)
		if (!strcmp(m->tensors[i].name, name))
			return (int)i;
	return -1;
}

int tlcm_model_output_index(const tlcm_model_t *m, const char *name)
{
	for (size_t i = 0; i < m->noutputs; i++)
		if (!strcmp(m->tensors[m->outputs[i]].name, name))
			return (int)i;
	return -1;
}

size_t tlcm_model_param_count(const tlcm_model_t *m)
{
	size_t n = 0;
	for (size_t t = 0; t < m->ntensors; t++) {
		bool used = false;
		for (size_t i = 0; i < m->nops && !used; i++)
			for (int k = 0; k < m->ops[i].nin; k++)
				used |= m->ops[i].in[k] == (int)t;
		if (used && m->tensors[t].data)
			n += m->tensors[t].size;
	}
	return n;
}

/* ---- preprocessing ------------------------------------------------------- */

static int set_per_channel(float *dst, unsigned channels, const float *v,
			   size_t n, bool nonzero, const char *what,
			   char *why, size_t cap)
{
	if (n != 1 && n != channels)
		return tlcm_fail(why, cap, TLCM_EINVAL, "%s has %zu values, expected 1"
			    " (all channels) or %u (one per input channel)",
			    what, n, channels);
	for (unsigned c = 0; c < channels; c++) {
		float x = v[n == 1 ? 0 : c];
		if (!isfinite(x) || (nonzero && x == 0))
			return tlcm_fail(why, cap, TLCM_EINVAL, "%s[%u] = %g, expected"
				    " a finite%s number", what, c, (double)x,
				    nonzero ? " non-zero" : "");
		dst[c] = x;
	}
	return 0;
}

int tlcm_prep_init(tlcm_prep_t *p, const tlcm_model_t *m, char *why,
		   size_t cap)
{
	const tlcm_tensor_t *x = &m->tensors[m->input];
	char s[64];
	memset(p, 0, sizeof *p);
	if (x->rank != 4 || (x->shape[3] != 1 && x->shape[3] != 3))
		return tlcm_fail(why, cap, TLCM_EINVAL, "%s: input tensor %d '%s' has "
			    "shape %s, expected an image [1,H,W,1] or [1,H,W,3]",
			    m->origin, m->input, x->name,
			    tlcm_shape_str(x->shape, x->rank, s, sizeof s));
	p->height = (unsigned)x->shape[1];
	p->width = (unsigned)x->shape[2];
	p->channels = (unsigned)x->shape[3];
	p->scale = m->input_scale;
	for (unsigned c = 0; c < p->channels; c++) {
		p->mean[c] = m->nmean ? m->input_mean[m->nmean == 1 ? 0 : c] : 0;
		p->std[c] = m->nstd ? m->input_std[m->nstd == 1 ? 0 : c] : 1;
	}
	return 0;
}

int tlcm_prep_set_mean(tlcm_prep_t *p, const float *v, size_t n, char *why,
		       size_t cap)
{
	return set_per_channel(p->mean, p->channels, v, n, false, "mean", why,
			       cap);
}

int tlcm_prep_set_std(tlcm_prep_t *p, const float *v, size_t n, char *why,
		      size_t cap)
{
	return set_per_channel(p->std, p->channels, v, n, true, "std", why,
			       cap);
}

void tlcm_prep_pixels(const tlcm_prep_t *p, const uint8_t *px,
		      unsigned src_channels, float *out)
{
	/* the formula as written, so that it matches the trainer's
	 * float32 arithmetic exactly */
#define NORM(v, c) (((v) * p->scale - p->mean[c]) / p->std[c])
	size_t n = (size_t)p->width * p->height;
	if (src_channels == p->channels) {
		for (size_t i = 0; i < n * p->channels; i++)
			out[i] = NORM((float)px[i], i % p->channels);
	} else if (src_channels == 1) { /* gray -> RGB */
		for (size_t i = 0; i < n; i++)
			for (unsigned c = 0; c < 3; c++)
				out[i * 3 + c] = NORM((float)px[i], c);
	} else { /* RGB -> gray (BT.601 luma) */
		for (size_t i = 0; i < n; i++) {
			const uint8_t *q = px + i * 3;
			float y = 0.299f * q[0] + 0.587f * q[1] + 0.114f * q[2];
			out[i] = NORM(y, 0);
		}
	}
#undef NORM
}
