/* model_build.c — collect a model in arrays, write it with the generated
 * FlatBuffers builders (see model_build.h). */
#include <stdlib.h>
#include <string.h>

#include "tests/unit/model_build.h"

#define MAX_RANK 8 /* more than models allow: bad files are built too */

typedef struct {
	char *name;
	int32_t shape[MAX_RANK];
	int rank;
	float *data;
	size_t ndata;
} mb_tensor_t;

struct tlcm_mb {
	char *name;
	mb_tensor_t *t;
	size_t nt;
	tlcm_op_t *ops;
	size_t nops;
	int input;
	int outputs[8];
	size_t noutputs;
	float scale;
	float mean[4], std[4];
	size_t nmean, nstd;
};

tlcm_mb_t *tlcm_mb_new(const char *name)
{
	tlcm_mb_t *b = calloc(1, sizeof *b);
	if (b) {
		b->name = strdup(name);
		b->scale = 1;
	}
	return b;
}

int tlcm_mb_tensor_n(tlcm_mb_t *b, const char *name, const int32_t *shape,
		     int rank, const float *data, size_t ndata)
{
	mb_tensor_t *nt = realloc(b->t, (b->nt + 1) * sizeof *nt);
	if (!nt)
		abort();
	b->t = nt;
	mb_tensor_t *t = &b->t[b->nt];
	memset(t, 0, sizeof *t);
	t->name = strdup(name);
	t->rank = rank < MAX_RANK ? rank : MAX_RANK;
	if (t->rank > 0)
		memcpy(t->shape, shape, (size_t)t->rank * sizeof *shape);
	if (data) {
		t->data = malloc(ndata ? ndata * sizeof(float) : 1);
		if (ndata)
			memcpy(t->data, data, ndata * sizeof(float));
		t->ndata = ndata;
	}
	return (int)b->nt++;
}

int tlcm_mb_tensor(tlcm_mb_t *b, const char *name, const int32_t *shape,
		   int rank, const float *data)
{
	size_t n = 1;
	for (int d = 0; d < rank; d++)
		n *= shape[d] > 0 ? (size_t)shape[d] : 0;
	return tlcm_mb_tensor_n(b, name, shape, rank, data, n);
}

tlcm_op_t tlcm_mb_op(tlcm_OpType_enum_t type, int a, int w, int bias, int y)
{
	tlcm_op_t o = {.type = type, .in = {a, w, bias}, .out = y,
		       .stride_h = 1, .stride_w = 1, .dilation_h = 1,
		       .dilation_w = 1, .depth_multiplier = 1};
	bool weighted = type == tlcm_OpType_Conv2D ||
			type == tlcm_OpType_DepthwiseConv2D ||
			type == tlcm_OpType_FullyConnected;
	o.nin = weighted ? 3 : w >= 0 ? 2 : 1;
	return o;
}

void tlcm_mb_add_op(tlcm_mb_t *b, const tlcm_op_t *op)
{
	tlcm_op_t *no = realloc(b->ops, (b->nops + 1) * sizeof *no);
	if (!no)
		abort();
	b->ops = no;
	b->ops[b->nops++] = *op;
}

void tlcm_mb_io(tlcm_mb_t *b, int input, const int *outputs, size_t n)
{
	b->input = input;
	b->noutputs = n < 8 ? n : 8;
	memcpy(b->outputs, outputs, b->noutputs * sizeof *outputs);
}

void tlcm_mb_prep(tlcm_mb_t *b, float scale, const float *mean, size_t nmean,
		  const float *std, size_t nstd)
{
	b->scale = scale;
	b->nmean = nmean < 4 ? nmean : 4;
	b->nstd = nstd < 4 ? nstd : 4;
	if (b->nmean)
		memcpy(b->mean, mean, b->nmean * sizeof *mean);
	if (b->nstd)
		memcpy(b->std, std, b->nstd * sizeof *std);
}

static tlcm_fbb_ref_t write_op(tlcm_fbb_t *f, const tlcm_op_t *o)
{
	tlcm_fbb_ref_t in = tlcm_Op_inputs_create(f, o->in, (size_t)o->nin);
	tlcm_fbb_ref_t out = tlcm_Op_outputs_create(f, &o->out, 1);
	tlcm_Op_start(f);
	tlcm_Op_add_type(f, o->type);
	tlcm_Op_add_inputs(f, in);
	tlcm_Op_add_outputs(f, out);
	tlcm_Op_add_kernel_h(f, o->kernel_h);
	tlcm_Op_add_kernel_w(f, o->kernel_w);
	tlcm_Op_add_stride_h(f, o->stride_h);
	tlcm_Op_add_stride_w(f, o->stride_w);
	tlcm_Op_add_dilation_h(f, o->dilation_h);
	tlcm_Op_add_dilation_w(f, o->dilation_w);
	tlcm_Op_add_pad_top(f, o->pad_top);
	tlcm_Op_add_pad_bottom(f, o->pad_bottom);
	tlcm_Op_add_pad_left(f, o->pad_left);
	tlcm_Op_add_pad_right(f, o->pad_right);
	tlcm_Op_add_depth_multiplier(f, o->depth_multiplier);
	tlcm_Op_add_activation(f, o->activation);
	tlcm_Op_add_clamp_min(f, o->clamp_min);
	tlcm_Op_add_clamp_max(f, o->clamp_max);
	tlcm_Op_add_pad_value(f, o->pad_value);
	return tlcm_Op_end(f);
}

static void mb_free(tlcm_mb_t *b)
{
	for (size_t i = 0; i < b->nt; i++) {
		free(b->t[i].name);
		free(b->t[i].data);
	}
	free(b->t);
	free(b->ops);
	free(b->name);
	free(b);
}

void *tlcm_mb_finish(tlcm_mb_t *b, size_t *len)
{
	tlcm_fbb_t f;
	void *out = NULL;
	if (tlcm_fbb_init(&f, 0)) {
		mb_free(b);
		return NULL;
	}
	tlcm_fbb_ref_t *refs = calloc(b->nt + b->nops + 1, sizeof *refs);
	for (size_t i = 0; i < b->nt; i++) {
		mb_tensor_t *t = &b->t[i];
		tlcm_fbb_ref_t name = tlcm_fbb_cstring(&f, t->name);
		tlcm_fbb_ref_t shape = tlcm_Tensor_shape_create(
			&f, t->shape, (size_t)t->rank);
		tlcm_fbb_ref_t data = t->data ? tlcm_Tensor_data_create(
							&f, t->data, t->ndata)
					      : 0;
		tlcm_Tensor_start(&f);
		tlcm_Tensor_add_name(&f, name);
		tlcm_Tensor_add_shape(&f, shape);
		if (data)
			tlcm_Tensor_add_data(&f, data);
		refs[i] = tlcm_Tensor_end(&f);
	}
	tlcm_fbb_ref_t tensors = tlcm_Model_tensors_create(&f, refs, b->nt);
	for (size_t i = 0; i < b->nops; i++)
		refs[i] = write_op(&f, &b->ops[i]);
	tlcm_fbb_ref_t ops = tlcm_Model_ops_create(&f, refs, b->nops);
	tlcm_fbb_ref_t name = tlcm_fbb_cstring(&f, b->name);
	tlcm_fbb_ref_t ins = tlcm_Model_inputs_create(&f, &b->input, 1);
	tlcm_fbb_ref_t outs = tlcm_Model_outputs_create(&f, b->outputs,
							b->noutputs);
	tlcm_fbb_ref_t mean = b->nmean ? tlcm_Model_input_mean_create(
						 &f, b->mean, b->nmean) : 0;
	tlcm_fbb_ref_t std = b->nstd ? tlcm_Model_input_std_create(
					       &f, b->std, b->nstd) : 0;
	tlcm_Model_start(&f);
	tlcm_Model_add_name(&f, name);
	tlcm_Model_add_tensors(&f, tensors);
	tlcm_Model_add_ops(&f, ops);
	tlcm_Model_add_inputs(&f, ins);
	tlcm_Model_add_outputs(&f, outs);
	tlcm_Model_add_input_scale(&f, b->scale);
	if (mean)
		tlcm_Model_add_input_mean(&f, mean);
	if (std)
		tlcm_Model_add_input_std(&f, std);
	const void *buf = tlcm_Model_finish(&f, tlcm_Model_end(&f), len);
	if (buf && (out = malloc(*len)))
		memcpy(out, buf, *len);
	free(refs);
	tlcm_fbb_fini(&f);
	mb_free(b);
	return out;
}
