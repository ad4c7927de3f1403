/* xnn.c — a model as an XNNPACK subgraph runtime, one per batch size.
 *
 * Building a batch: every tensor an op touches becomes an XNNPACK value
 * (activations with the batch dimension replaced by n; constants as they
 * are, read in place from the model), every op one or two XNNPACK nodes
 * (fused activations as the node's output range; Relu/Relu6/Clamp as
 * clamp nodes; a [1,C] GlobalAveragePool output through a reshape of the
 * [n,1,1,C] pooling result; FullyConnected flattening each frame with
 * XNN_FLAG_TENSORFLOW_RESHAPE_2D). The input is external value 0, model
 * output k external value k+1, bound once to buffers owned here.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthreadpool.h>
#include <xnnpack.h>

#include "engine/error.h"
#include "nodes/features/xnn.h"

#define MAX_BATCHES 16 /* distinct batch sizes kept */

struct tlcm_xnn {
	const tlcm_model_t *m;
	pthreadpool_t pool;
	tlcm_xnn_batch_t *batches[MAX_BATCHES];
	size_t nbatches;
	void **owned;      /* padded copies and zero biases the runtimes read */
	size_t nowned, capowned;
};

static const char *status_str(enum xnn_status s)
{
	switch (s) {
	case xnn_status_success: return "success";
	case xnn_status_uninitialized: return "XNNPACK not initialized";
	case xnn_status_invalid_parameter: return "invalid parameter";
	case xnn_status_invalid_state: return "invalid state";
	case xnn_status_unsupported_parameter: return "unsupported parameter";
	case xnn_status_unsupported_hardware: return "unsupported hardware";
	case xnn_status_out_of_memory: return "out of memory";
	}
	return "unknown XNNPACK status";
}

/* ---- process-wide initialisation ----------------------------------------- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static enum xnn_status init_status;

static void init_xnnpack(void)
{
	init_status = xnn_initialize(NULL);
}

/* ---- memory the runtimes read -------------------------------------------- */

/* n floats plus XNN_EXTRA_BYTES (XNNPACK may read past the end), zeroed,
 * owned by x (freed with it). */
static float *owned_floats(tlcm_xnn_t *x, size_t n)
{
	if (x->nowned == x->capowned) {
		size_t nc = x->capowned ? x->capowned * 2 : 16;
		void **no = realloc(x->owned, nc * sizeof *no);
		if (!no)
			return NULL;
		x->owned = no;
		x->capowned = nc;
	}
	float *p = calloc(1, n * sizeof(float) + XNN_EXTRA_BYTES);
	if (p)
		x->owned[x->nowned++] = p;
	return p;
}

static float *padded_buffer(size_t n)
{
	return aligned_alloc(64, ((n * sizeof(float) + XNN_EXTRA_BYTES + 63) /
				  64) * 64);
}

/* ---- subgraph construction ----------------------------------------------- */

typedef struct {
	tlcm_xnn_t *x;
	const tlcm_model_t *m;
	size_t n;
	xnn_subgraph_t sg;
	uint32_t *ids;   /* per model tensor; XNN_INVALID_VALUE_ID: not yet */
	char *why;
	size_t cap;
} build_t;

static int external_id(const tlcm_model_t *m, int t, uint32_t *flags)
{
	if (t == m->input) {
		*flags = XNN_VALUE_FLAG_EXTERNAL_INPUT;
		return 0;
	}
	for (size_t k = 0; k < m->noutputs; k++)
		if (m->outputs[k] == t) {
			*flags = XNN_VALUE_FLAG_EXTERNAL_OUTPUT;
			return (int)k + 1;
		}
	*flags = 0;
	return -1;
}

/* A value of `rank` dims (batch first, replaced by b->n unless constant). */
static enum xnn_status define_value(build_t *b, const int32_t *shape,
				    int rank, const float *data,
				    uint32_t ext, uint32_t flags,
				    uint32_t *id)
{
	size_t dims[TLCM_MODEL_MAX_RANK];
	for (int d = 0; d < rank; d++)
		dims[d] = (size_t)shape[d];
	if (!data)
		dims[0] = b->n;
	return xnn_define_tensor_value(b->sg, xnn_datatype_fp32, (size_t)rank,
				       dims, data, ext, flags, id);
}

/* The XNNPACK value of model tensor t (defined on first use). `padded`:
 * a constant an element-wise kernel reads, copied with XNN_EXTRA_BYTES. */
static int value(build_t *b, int t, bool padded, uint32_t *id)
{
	if (b->ids[t] != XNN_INVALID_VALUE_ID) {
		*id = b->ids[t];
		return 0;
	}
	const tlcm_tensor_t *x = &b->m->tensors[t];
	const float *data = x->data;
	if (data && padded) {
		float *copy = owned_floats(b->x, x->size);
		if (!copy)
			return TLCM_ENOMEM;
		memcpy(copy, data, x->size * sizeof *copy);
		data = copy;
	}
	uint32_t flags;
	int ext = data ? -1 : external_id(b->m, t, &flags);
	enum xnn_status s = define_value(b, x->shape, x->rank, data,
					 ext < 0 ? XNN_INVALID_VALUE_ID
						 : (uint32_t)ext,
					 ext < 0 ? 0 : flags, &b->ids[t]);
	if (s != xnn_status_success)
		return tlcm_fail(b->why, b->cap, TLCM_EINVAL, "%s: XNNPACK refused "
			    "tensor %d '%s': %s", b->m->origin, t, x->name,
			    status_str(s));
	*id = b->ids[t];
	return 0;
}

/* Bias of a weighted op: the model's, or zeros of length n. */
static int bias_value(build_t *b, const tlcm_op_t *o, int32_t n,
		      uint32_t *id)
{
	if (o->nin > 2 && o->in[2] >= 0)
		return value(b, o->in[2], false, id);
	float *zeros = owned_floats(b->x, (size_t)n);
	if (!zeros)
		return TLCM_ENOMEM;
	int32_t shape[1] = {n};
	enum xnn_status s = define_value(b, shape, 1, zeros,
					 XNN_INVALID_VALUE_ID, 0, id);
	return s == xnn_status_success ? 0 : TLCM_EINVAL;
}

static void act_range(tlcm_Activation_enum_t a, float *lo, float *hi)
{
	*lo = -INFINITY;
	*hi = INFINITY;
	if (a == tlcm_Activation_Relu || a == tlcm_Activation_Relu6)
		*lo = 0;
	if (a == tlcm_Activation_Relu6)
		*hi = 6;
}

/* A 1x1 pooling window (which XNNPACK refuses) is one element: the same
 * as a 1x1 depthwise convolution with weights 1 and bias 0. */
static enum xnn_status define_pool1x1(build_t *b, const tlcm_op_t *o,
				      int32_t ch, float lo, float hi,
				      uint32_t in, uint32_t out, int *rc)
{
	float *ones = owned_floats(b->x, (size_t)ch);
	float *zeros = owned_floats(b->x, (size_t)ch);
	if (!ones || !zeros) {
		*rc = TLCM_ENOMEM;
		return xnn_status_out_of_memory;
	}
	for (int32_t c = 0; c < ch; c++)
		ones[c] = 1;
	int32_t fshape[4] = {1, 1, 1, ch}, bshape[1] = {ch};
	uint32_t f, z;
	enum xnn_status s = define_value(b, fshape, 4, ones,
					 XNN_INVALID_VALUE_ID, 0, &f);
	if (s == xnn_status_success)
		s = define_value(b, bshape, 1, zeros, XNN_INVALID_VALUE_ID, 0,
				 &z);
	if (s == xnn_status_success)
		s = xnn_define_depthwise_convolution_2d(
			b->sg, (uint32_t)o->pad_top, (uint32_t)o->pad_right,
			(uint32_t)o->pad_bottom, (uint32_t)o->pad_left, 1, 1,
			(uint32_t)o->stride_h, (uint32_t)o->stride_w, 1, 1, 1,
			(size_t)ch, lo, hi, in, f, z, out, 0);
	return s;
}

/* Define the XNNPACK node(s) of op i. */
static enum xnn_status define_op(build_t *b, size_t i, int *rc)
{
	const tlcm_model_t *m = b->m;
	const tlcm_op_t *o = &m->ops[i];
	const tlcm_tensor_t *xin = &m->tensors[o->in[0]];
	const tlcm_tensor_t *w = o->nin > 1 ? &m->tensors[o->in[1]] : NULL;
	const tlcm_tensor_t *y = &m->tensors[o->out];
	bool binary = o->type == tlcm_OpType_Add ||
		      o->type == tlcm_OpType_Multiply;
	uint32_t in, in2 = XNN_INVALID_VALUE_ID, bias = XNN_INVALID_VALUE_ID;
	uint32_t out;
	float lo, hi;
	act_range(o->activation, &lo, &hi);
	*rc = value(b, o->in[0], false, &in);
	if (!*rc && w)
		*rc = value(b, o->in[1], binary, &in2);
	if (!*rc && w && !binary)
		*rc = bias_value(b, o, o->type == tlcm_OpType_DepthwiseConv2D
					       ? w->shape[3] : w->shape[0],
				 &bias);
	if (!*rc && o->type != tlcm_OpType_GlobalAveragePool)
		*rc = value(b, o->out, false, &out);
	if (*rc)
		return xnn_status_success;
	switch (o->type) {
	case tlcm_OpType_Conv2D:
		return xnn_define_convolution_2d(
			b->sg, (uint32_t)o->pad_top, (uint32_t)o->pad_right,
			(uint32_t)o->pad_bottom, (uint32_t)o->pad_left,
			(uint32_t)w->shape[1], (uint32_t)w->shape[2],
			(uint32_t)o->stride_h, (uint32_t)o->stride_w,
			(uint32_t)o->dilation_h, (uint32_t)o->dilation_w, 1,
			(size_t)w->shape[3], (size_t)w->shape[0], lo, hi, in,
			in2, bias, out, 0);
	case tlcm_OpType_DepthwiseConv2D:
		return xnn_define_depthwise_convolution_2d(
			b->sg, (uint32_t)o->pad_top, (uint32_t)o->pad_right,
			(uint32_t)o->pad_bottom, (uint32_t)o->pad_left,
			(uint32_t)w->shape[1], (uint32_t)w->shape[2],
			(uint32_t)o->stride_h, (uint32_t)o->stride_w,
			(uint32_t)o->dilation_h, (uint32_t)o->dilation_w,
			(uint32_t)o->depth_multiplier, (size_t)xin->shape[3],
			lo, hi, in, in2, bias, out, 0);
	case tlcm_OpType_FullyConnected:
		return xnn_define_fully_connected(
			b->sg, lo, hi, in, in2, bias, out,
			XNN_FLAG_TENSORFLOW_RESHAPE_2D);
	case tlcm_OpType_AveragePool2D:
	case tlcm_OpType_MaxPool2D:
		if (o->kernel_h == 1 && o->kernel_w == 1)
			return define_pool1x1(b, o, xin->shape[3], lo, hi, in,
					      out, rc);
		if (o->type == tlcm_OpType_MaxPool2D)
			return xnn_define_max_pooling_2d(
				b->sg, (uint32_t)o->pad_top,
				(uint32_t)o->pad_right,
				(uint32_t)o->pad_bottom, (uint32_t)o->pad_left,
				(uint32_t)o->kernel_h, (uint32_t)o->kernel_w,
				(uint32_t)o->stride_h, (uint32_t)o->stride_w,
				(uint32_t)o->dilation_h,
				(uint32_t)o->dilation_w, lo, hi, in, out, 0);
		return xnn_define_average_pooling_2d(
			b->sg, (uint32_t)o->pad_top, (uint32_t)o->pad_right,
			(uint32_t)o->pad_bottom, (uint32_t)o->pad_left,
			(uint32_t)o->kernel_h, (uint32_t)o->kernel_w,
			(uint32_t)o->stride_h, (uint32_t)o->stride_w, lo, hi,
			in, out, 0);
	case tlcm_OpType_GlobalAveragePool: {
		if (y->rank == 4) {
			if ((*rc = value(b, o->out, false, &out)))
				return xnn_status_success;
			return xnn_define_global_average_pooling_2d(
				b->sg, lo, hi, in, out, 0);
		}
		/* [n,C]: pool into [n,1,1,C], then reshape */
		int32_t shape4[4] = {1, 1, 1, y->shape[1]};
		uint32_t mid;
		enum xnn_status s = define_value(b, shape4, 4, NULL,
						 XNN_INVALID_VALUE_ID, 0, &mid);
		if (s == xnn_status_success)
			s = xnn_define_global_average_pooling_2d(b->sg, lo, hi,
								 in, mid, 0);
		if (s == xnn_status_success &&
		    !(*rc = value(b, o->out, false, &out))) {
			size_t dims[2] = {b->n, (size_t)y->shape[1]};
			s = xnn_define_static_reshape(b->sg, 2, dims, mid, out,
						      0);
		}
		return s;
	}
	case tlcm_OpType_Add:
		return xnn_define_add2(b->sg, lo, hi, in, in2, out, 0);
	case tlcm_OpType_Multiply:
		return xnn_define_multiply2(b->sg, lo, hi, in, in2, out, 0);
	case tlcm_OpType_Relu:
		return xnn_define_clamp(b->sg, 0, INFINITY, in, out, 0);
	case tlcm_OpType_Relu6:
		return xnn_define_clamp(b->sg, 0, 6, in, out, 0);
	case tlcm_OpType_Clamp:
		return xnn_define_clamp(b->sg, o->clamp_min, o->clamp_max, in,
					out, 0);
	case tlcm_OpType_HardSwish:
		return xnn_define_hardswish(b->sg, in, out, 0);
	case tlcm_OpType_Sigmoid:
		return xnn_define_sigmoid(b->sg, in, out, 0);
	case tlcm_OpType_Softmax:
		return xnn_define_softmax(b->sg, in, out, 0);
	case tlcm_OpType_Reshape: {
		size_t dims[TLCM_MODEL_MAX_RANK];
		for (int d = 0; d < y->rank; d++)
			dims[d] = (size_t)y->shape[d];
		dims[0] = b->n;
		return xnn_define_static_reshape(b->sg, (size_t)y->rank, dims,
						 in, out, 0);
	}
	case tlcm_OpType_Pad: {
		size_t pre[4] = {0, (size_t)o->pad_top, (size_t)o->pad_left, 0};
		size_t post[4] = {0, (size_t)o->pad_bottom,
				  (size_t)o->pad_right, 0};
		return xnn_define_static_constant_pad(b->sg, pre, post,
						      o->pad_value, in, out, 0);
	}
	}
	return xnn_status_unsupported_parameter;
}

static void batch_free(tlcm_xnn_batch_t *b, size_t noutputs)
{
	if (!b)
		return;
	if (b->rt)
		xnn_delete_runtime(b->rt);
	free(b->input);
	for (size_t k = 0; b->outputs && k < noutputs; k++)
		free(b->outputs[k]);
	free(b->outputs);
	free(b);
}

/* Buffers for b and the runtime bound to them. */
static int bind(tlcm_xnn_t *x, tlcm_xnn_batch_t *b, char *why, size_t cap)
{
	const tlcm_model_t *m = x->m;
	size_t next = m->noutputs + 1;
	struct xnn_external_value *ev = calloc(next, sizeof *ev);
	b->input = padded_buffer(b->n * m->tensors[m->input].size);
	b->outputs = calloc(m->noutputs, sizeof *b->outputs);
	if (!ev || !b->input || !b->outputs) {
		free(ev);
		return TLCM_ENOMEM;
	}
	memset(b->input, 0, b->n * m->tensors[m->input].size * sizeof(float));
	ev[0] = (struct xnn_external_value){0, b->input};
	for (size_t k = 0; k < m->noutputs; k++) {
		b->outputs[k] = padded_buffer(b->n *
					      m->tensors[m->outputs[k]].size);
		if (!b->outputs[k]) {
			free(ev);
			return TLCM_ENOMEM;
		}
		ev[k + 1] = (struct xnn_external_value){(uint32_t)k + 1,
							b->outputs[k]};
	}
	enum xnn_status s = xnn_setup_runtime(b->rt, next, ev);
	free(ev);
	if (s != xnn_status_success)
		return tlcm_fail(why, cap, TLCM_EINVAL, "%s: XNNPACK setup for batch "
			    "%zu failed: %s", m->origin, b->n, status_str(s));
	return 0;
}

static int build(tlcm_xnn_t *x, size_t n, tlcm_xnn_batch_t **out, char *why,
		 size_t cap)
{
	const tlcm_model_t *m = x->m;
	build_t b = {.x = x, .m = m, .n = n, .why = why, .cap = cap};
	tlcm_xnn_batch_t *bt = calloc(1, sizeof *bt);
	b.ids = malloc((m->ntensors ? m->ntensors : 1) * sizeof *b.ids);
	int rc = bt && b.ids ? 0 : TLCM_ENOMEM;
	enum xnn_status s = xnn_status_success;
	if (!rc) {
		bt->n = n;
		for (size_t t = 0; t < m->ntensors; t++)
			b.ids[t] = XNN_INVALID_VALUE_ID;
		s = xnn_create_subgraph((uint32_t)m->noutputs + 1, 0, &b.sg);
		if (s != xnn_status_success)
			rc = tlcm_fail(why, cap, TLCM_ENOMEM, "%s: XNNPACK subgraph: "
				  "%s", m->origin, status_str(s));
	}
	for (size_t i = 0; !rc && i < m->nops; i++) {
		s = define_op(&b, i, &rc);
		if (!rc && s != xnn_status_success) {
			char lab[160];
			rc = tlcm_fail(why, cap, TLCM_ENOTSUP, "%s: XNNPACK refused %s"
				  ": %s", m->origin,
				  tlcm_model_op_label(m, i, lab, sizeof lab),
				  status_str(s));
		}
	}
	if (!rc) {
		s = xnn_create_runtime_v2(b.sg, x->pool, 0, &bt->rt);
		if (s != xnn_status_success)
			rc = tlcm_fail(why, cap, TLCM_EINVAL, "%s: XNNPACK runtime for"
				  " batch %zu: %s", m->origin, n,
				  status_str(s));
	}
	if (b.sg)
		xnn_delete_subgraph(b.sg);
	free(b.ids);
	if (!rc)
		rc = bind(x, bt, why, cap);
	if (rc == TLCM_ENOMEM)
		tlcm_fail(why, cap, rc, "%s: out of memory building the XNNPACK "
		     "runtime", m->origin);
	if (rc) {
		batch_free(bt, m->noutputs);
		return rc;
	}
	*out = bt;
	return 0;
}

/* ---- public -------------------------------------------------------------- */

int tlcm_xnn_new(tlcm_xnn_t **out, const tlcm_model_t *m, int threads,
		 char *why, size_t cap)
{
	*out = NULL;
	pthread_once(&init_once, init_xnnpack);
	if (init_status != xnn_status_success)
		return tlcm_fail(why, cap, TLCM_ENOTSUP, "XNNPACK cannot run here: %s",
			    status_str(init_status));
	if (threads < 1)
		return tlcm_fail(why, cap, TLCM_EINVAL, "threads %d, expected >= 1",
			    threads);
	tlcm_xnn_t *x = calloc(1, sizeof *x);
	if (!x)
		return tlcm_fail(why, cap, TLCM_ENOMEM, "out of memory");
	x->m = m;
	if (threads > 1 && !(x->pool = pthreadpool_create((size_t)threads))) {
		free(x);
		return tlcm_fail(why, cap, TLCM_ENOMEM, "cannot create a pool of %d "
			    "threads", threads);
	}
	*out = x;
	return 0;
}

void tlcm_xnn_free(tlcm_xnn_t *x)
{
	if (!x)
		return;
	for (size_t i = 0; i < x->nbatches; i++)
		batch_free(x->batches[i], x->m->noutputs);
	for (size_t i = 0; i < x->nowned; i++)
		free(x->owned[i]);
	free(x->owned);
	if (x->pool)
		pthreadpool_destroy(x->pool);
	free(x);
}

int tlcm_xnn_batch(tlcm_xnn_t *x, size_t n, tlcm_xnn_batch_t **b, char *why,
		   size_t cap)
{
	*b = NULL;
	for (size_t i = 0; i < x->nbatches; i++)
		if (x->batches[i]->n == n) {
			*b = x->batches[i];
			return 0;
		}
	if (n < 1)
		return tlcm_fail(why, cap, TLCM_EINVAL, "batch %zu, expected >= 1", n);
	if (x->nbatches == MAX_BATCHES)
		return tlcm_fail(why, cap, TLCM_ETOOBIG, "%s: more than %d batch "
			    "sizes", x->m->origin, MAX_BATCHES);
	int rc = build(x, n, b, why, cap);
	if (!rc)
		x->batches[x->nbatches++] = *b;
	return rc;
}

int tlcm_xnn_run(tlcm_xnn_t *x, tlcm_xnn_batch_t *b, char *why, size_t cap)
{
	enum xnn_status s = xnn_invoke_runtime(b->rt);
	if (s != xnn_status_success)
		return tlcm_fail(why, cap, TLCM_EINTERNAL, "%s: XNNPACK run of a batch"
			    " of %zu failed: %s", x->m->origin, b->n,
			    status_str(s));
	return 0;
}
