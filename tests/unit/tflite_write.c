/* tflite_write.c — the test .tflite writer; see tflite_write.h.
 *
 * Everything is recorded in plain arrays first; tfw_finish() then builds
 * the FlatBuffer bottom-up with the generated builders (fb/tflite_fb.h):
 * buffers, operator codes, tensors, operators (options before each), the
 * subgraph, the model.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "tests/unit/tflite_write.h"

#define TFW_MAX_RANK 8

typedef struct {
	char *name;
	tflite_TensorType_enum_t type;
	int32_t shape[TFW_MAX_RANK];
	int rank;
	void *data; /* constant bytes, or NULL */
	size_t bytes;
	bool quantized;
} tfw_tensor_t;

typedef struct {
	int32_t code;
	char *custom_code;
	int in[TFW_MAX_IN];
	int nin;
	int out;
	tfw_opts_t opts;
	int32_t ints[TFW_MAX_RANK];
} tfw_op_t;

struct tfw {
	tfw_tensor_t *tensors;
	size_t ntensors, tensors_cap;
	tfw_op_t *ops;
	size_t nops, ops_cap;
	int input, extra_input;
	int outputs[8];
	int noutputs;
	uint32_t version;
	int subgraphs;
	bool empty_buffers;
	bool oom;
};

tfw_t *tfw_new(void)
{
	tfw_t *w = calloc(1, sizeof *w);
	if (w) {
		w->version = 3;
		w->subgraphs = 1;
		w->input = w->extra_input = -1;
	}
	return w;
}

void tfw_free(tfw_t *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->ntensors; i++) {
		free(w->tensors[i].name);
		free(w->tensors[i].data);
	}
	for (size_t i = 0; i < w->nops; i++)
		free(w->ops[i].custom_code);
	free(w->tensors);
	free(w->ops);
	free(w);
}

static bool reserve(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return true;
	size_t n = *cap ? *cap * 2 : 16;
	void *p = realloc(*arr, n * elem);
	if (!p)
		return false;
	*arr = p;
	*cap = n;
	return true;
}

int tfw_tensor(tfw_t *w, const char *name, tflite_TensorType_enum_t type,
	       const int32_t *shape, int rank, const void *data, size_t bytes)
{
	if (rank < 0 || rank > TFW_MAX_RANK ||
	    !reserve((void **)&w->tensors, &w->tensors_cap, w->ntensors + 1,
		     sizeof *w->tensors)) {
		w->oom = true;
		return -1;
	}
	tfw_tensor_t *t = &w->tensors[w->ntensors];
	*t = (tfw_tensor_t){.type = type, .rank = rank, .bytes = bytes};
	if (rank)
		memcpy(t->shape, shape, (size_t)rank * sizeof *shape);
	t->name = name ? strdup(name) : NULL;
	if (data) {
		t->data = malloc(bytes ? bytes : 1);
		if (t->data)
			memcpy(t->data, data, bytes);
	}
	if ((name && !t->name) || (data && !t->data)) {
		free(t->name);
		free(t->data);
		w->oom = true;
		return -1;
	}
	return (int)w->ntensors++;
}

static size_t count(const int32_t *shape, int rank)
{
	size_t n = 1;
	for (int d = 0; d < rank; d++)
		n *= (size_t)shape[d];
	return n;
}

int tfw_act(tfw_t *w, const char *name, const int32_t *shape, int rank)
{
	return tfw_tensor(w, name, TFW_F32, shape, rank, NULL, 0);
}

int tfw_const(tfw_t *w, const char *name, const int32_t *shape, int rank,
	      const float *data)
{
	return tfw_tensor(w, name, TFW_F32, shape, rank, data,
			  count(shape, rank) * sizeof *data);
}

int tfw_const_i32(tfw_t *w, const char *name, const int32_t *shape,
		  int rank, const int32_t *data)
{
	return tfw_tensor(w, name, tflite_TensorType_INT32, shape, rank, data,
			  count(shape, rank) * sizeof *data);
}

void tfw_quantize(tfw_t *w, int t)
{
	if (t >= 0 && (size_t)t < w->ntensors)
		w->tensors[t].quantized = true;
}

static int add_op(tfw_t *w, int32_t code, const char *custom, const int *in,
		  int nin, int out, const tfw_opts_t *opts)
{
	if (nin < 0 || nin > TFW_MAX_IN ||
	    !reserve((void **)&w->ops, &w->ops_cap, w->nops + 1,
		     sizeof *w->ops)) {
		w->oom = true;
		return -1;
	}
	tfw_op_t *o = &w->ops[w->nops];
	*o = (tfw_op_t){.code = code, .nin = nin, .out = out};
	memcpy(o->in, in, (size_t)nin * sizeof *in);
	if (opts) {
		o->opts = *opts;
		if (opts->ints && opts->nints > 0 &&
		    opts->nints <= TFW_MAX_RANK) {
			memcpy(o->ints, opts->ints,
			       (size_t)opts->nints * sizeof(int32_t));
			o->opts.ints = o->ints;
		} else {
			o->opts.ints = NULL;
			o->opts.nints = 0;
		}
	}
	if (custom && !(o->custom_code = strdup(custom))) {
		w->oom = true;
		return -1;
	}
	w->nops++;
	return 0;
}

int tfw_op(tfw_t *w, int32_t builtin, const int *in, int nin, int out,
	   const tfw_opts_t *opts)
{
	return add_op(w, builtin, NULL, in, nin, out, opts);
}

int tfw_custom_op(tfw_t *w, const char *custom_code, const int *in, int nin,
		  int out)
{
	return add_op(w, tflite_BuiltinOperator_CUSTOM, custom_code, in, nin,
		      out, NULL);
}

void tfw_io(tfw_t *w, int input, const int *outputs, int noutputs)
{
	w->input = input;
	w->noutputs = noutputs < 8 ? noutputs : 8;
	memcpy(w->outputs, outputs, (size_t)w->noutputs * sizeof *outputs);
}

void tfw_set_version(tfw_t *w, uint32_t version)
{
	w->version = version;
}

void tfw_set_subgraphs(tfw_t *w, int n)
{
	w->subgraphs = n;
}

void tfw_set_extra_inputs(tfw_t *w, int t)
{
	w->extra_input = t;
}

void tfw_set_empty_buffers(tfw_t *w, bool on)
{
	w->empty_buffers = on;
}

/* ---- building ------------------------------------------------------------ */

/* The options table for op o (0: none) and its union type. */
static tlcm_fbb_ref_t build_options(tlcm_fbb_t *b, const tfw_op_t *o,
				    tflite_BuiltinOptions_union_type_t *type)
{
	const tfw_opts_t *p = &o->opts;
	*type = tflite_BuiltinOptions_NONE;
	if (p->no_options)
		return 0;
	if (p->options_type) { /* any type: an empty table */
		*type = p->options_type;
		tlcm_fbb_table_start(b, 0);
		return tlcm_fbb_table_end(b);
	}
	int dw = p->dilation_w ? p->dilation_w : 1;
	int dh = p->dilation_h ? p->dilation_h : 1;
	switch (o->code) {
	case tflite_BuiltinOperator_CONV_2D:
		*type = tflite_BuiltinOptions_Conv2DOptions;
		tflite_Conv2DOptions_start(b);
		tflite_Conv2DOptions_add_padding(b, p->padding);
		tflite_Conv2DOptions_add_stride_w(b, p->stride_w);
		tflite_Conv2DOptions_add_stride_h(b, p->stride_h);
		tflite_Conv2DOptions_add_fused_activation_function(b,
								   p->activation);
		tflite_Conv2DOptions_add_dilation_w_factor(b, dw);
		tflite_Conv2DOptions_add_dilation_h_factor(b, dh);
		return tflite_Conv2DOptions_end(b);
	case tflite_BuiltinOperator_DEPTHWISE_CONV_2D:
		*type = tflite_BuiltinOptions_DepthwiseConv2DOptions;
		tflite_DepthwiseConv2DOptions_start(b);
		tflite_DepthwiseConv2DOptions_add_padding(b, p->padding);
		tflite_DepthwiseConv2DOptions_add_stride_w(b, p->stride_w);
		tflite_DepthwiseConv2DOptions_add_stride_h(b, p->stride_h);
		tflite_DepthwiseConv2DOptions_add_depth_multiplier(
			b, p->depth_multiplier);
		tflite_DepthwiseConv2DOptions_add_fused_activation_function(
			b, p->activation);
		tflite_DepthwiseConv2DOptions_add_dilation_w_factor(b, dw);
		tflite_DepthwiseConv2DOptions_add_dilation_h_factor(b, dh);
		return tflite_DepthwiseConv2DOptions_end(b);
	case tflite_BuiltinOperator_FULLY_CONNECTED:
		*type = tflite_BuiltinOptions_FullyConnectedOptions;
		tflite_FullyConnectedOptions_start(b);
		tflite_FullyConnectedOptions_add_fused_activation_function(
			b, p->activation);
		tflite_FullyConnectedOptions_add_keep_num_dims(b, p->keep_dims);
		return tflite_FullyConnectedOptions_end(b);
	case tflite_BuiltinOperator_AVERAGE_POOL_2D:
	case tflite_BuiltinOperator_MAX_POOL_2D:
		*type = tflite_BuiltinOptions_Pool2DOptions;
		tflite_Pool2DOptions_start(b);
		tflite_Pool2DOptions_add_padding(b, p->padding);
		tflite_Pool2DOptions_add_stride_w(b, p->stride_w);
		tflite_Pool2DOptions_add_stride_h(b, p->stride_h);
		tflite_Pool2DOptions_add_filter_width(b, p->filter_w);
		tflite_Pool2DOptions_add_filter_height(b, p->filter_h);
		tflite_Pool2DOptions_add_fused_activation_function(b,
								   p->activation);
		return tflite_Pool2DOptions_end(b);
	case tflite_BuiltinOperator_ADD:
		*type = tflite_BuiltinOptions_AddOptions;
		tflite_AddOptions_start(b);
		tflite_AddOptions_add_fused_activation_function(b, p->activation);
		return tflite_AddOptions_end(b);
	case tflite_BuiltinOperator_MUL:
		*type = tflite_BuiltinOptions_MulOptions;
		tflite_MulOptions_start(b);
		tflite_MulOptions_add_fused_activation_function(b, p->activation);
		return tflite_MulOptions_end(b);
	case tflite_BuiltinOperator_SOFTMAX:
		*type = tflite_BuiltinOptions_SoftmaxOptions;
		tflite_SoftmaxOptions_start(b);
		tflite_SoftmaxOptions_add_beta(b, p->beta != 0.0f ? p->beta
								  : 1.0f);
		return tflite_SoftmaxOptions_end(b);
	case tflite_BuiltinOperator_RESHAPE: {
		tlcm_fbb_ref_t ns = 0;
		if (p->ints)
			ns = tflite_ReshapeOptions_new_shape_create(
				b, p->ints, (size_t)p->nints);
		*type = tflite_BuiltinOptions_ReshapeOptions;
		tflite_ReshapeOptions_start(b);
		if (ns)
			tflite_ReshapeOptions_add_new_shape(b, ns);
		return tflite_ReshapeOptions_end(b);
	}
	case tflite_BuiltinOperator_MEAN:
		*type = tflite_BuiltinOptions_ReducerOptions;
		tflite_ReducerOptions_start(b);
		tflite_ReducerOptions_add_keep_dims(b, p->keep_dims);
		return tflite_ReducerOptions_end(b);
	case tflite_BuiltinOperator_PAD:
		*type = tflite_BuiltinOptions_PadOptions;
		tflite_PadOptions_start(b);
		return tflite_PadOptions_end(b);
	case tflite_BuiltinOperator_PADV2:
		*type = tflite_BuiltinOptions_PadV2Options;
		tflite_PadV2Options_start(b);
		return tflite_PadV2Options_end(b);
	case tflite_BuiltinOperator_SQUEEZE: {
		tlcm_fbb_ref_t dims = 0;
		if (p->ints)
			dims = tflite_SqueezeOptions_squeeze_dims_create(
				b, p->ints, (size_t)p->nints);
		*type = tflite_BuiltinOptions_SqueezeOptions;
		tflite_SqueezeOptions_start(b);
		if (dims)
			tflite_SqueezeOptions_add_squeeze_dims(b, dims);
		return tflite_SqueezeOptions_end(b);
	}
	default: /* activations and the rest: no options, as TFLite writes */
		return 0;
	}
}

/* Index in codes[] of (code, custom), appended when new. */
static size_t opcode_index(const tfw_op_t **codes, size_t *ncodes,
			   const tfw_op_t *o)
{
	for (size_t i = 0; i < *ncodes; i++)
		if (codes[i]->code == o->code &&
		    !strcmp(codes[i]->custom_code ? codes[i]->custom_code : "",
			    o->custom_code ? o->custom_code : ""))
			return i;
	codes[*ncodes] = o;
	return (*ncodes)++;
}

static tlcm_fbb_ref_t build_tensor(tlcm_fbb_t *b, const tfw_tensor_t *t,
				   uint32_t buffer)
{
	tlcm_fbb_ref_t name = t->name ? tlcm_fbb_cstring(b, t->name) : 0;
	tlcm_fbb_ref_t shape =
		tflite_Tensor_shape_create(b, t->shape, (size_t)t->rank);
	tlcm_fbb_ref_t quant = 0;
	if (t->quantized) {
		float scale = 0.5f;
		int64_t zero = 0;
		tlcm_fbb_ref_t s =
			tflite_QuantizationParameters_scale_create(b, &scale, 1);
		tlcm_fbb_ref_t z =
			tflite_QuantizationParameters_zero_point_create(b, &zero,
									1);
		tflite_QuantizationParameters_start(b);
		tflite_QuantizationParameters_add_scale(b, s);
		tflite_QuantizationParameters_add_zero_point(b, z);
		quant = tflite_QuantizationParameters_end(b);
	}
	tflite_Tensor_start(b);
	tflite_Tensor_add_shape(b, shape);
	tflite_Tensor_add_type(b, t->type);
	tflite_Tensor_add_buffer(b, buffer);
	if (name)
		tflite_Tensor_add_name(b, name);
	if (quant)
		tflite_Tensor_add_quantization(b, quant);
	return tflite_Tensor_end(b);
}

static tlcm_fbb_ref_t build_operator(tlcm_fbb_t *b, const tfw_op_t *o,
				     uint32_t opcode)
{
	tflite_BuiltinOptions_union_type_t type;
	tlcm_fbb_ref_t in = tflite_Operator_inputs_create(b, o->in,
							  (size_t)o->nin);
	tlcm_fbb_ref_t out = tflite_Operator_outputs_create(b, &o->out, 1);
	tlcm_fbb_ref_t opts = build_options(b, o, &type);
	tflite_Operator_start(b);
	tflite_Operator_add_opcode_index(b, opcode);
	tflite_Operator_add_inputs(b, in);
	tflite_Operator_add_outputs(b, out);
	tflite_Operator_add_builtin_options(b, type, opts);
	return tflite_Operator_end(b);
}

int tfw_finish(tfw_t *w, void **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	if (w->oom)
		return TLCM_ENOMEM;
	size_t nt = w->ntensors, no = w->nops;
	size_t nref = 2 * nt + no + 2;
	tlcm_fbb_ref_t *refs = malloc(nref * sizeof *refs);
	uint32_t *bufidx = malloc((nt + 1) * sizeof *bufidx);
	const tfw_op_t **codes = malloc((no + 1) * sizeof *codes);
	uint32_t *opcode = malloc((no + 1) * sizeof *opcode);
	tlcm_fbb_t b;
	if (!refs || !bufidx || !codes || !opcode || tlcm_fbb_init(&b, 0)) {
		free(refs);
		free(bufidx);
		free(codes);
		free(opcode);
		return TLCM_ENOMEM;
	}

	/* buffers: 0 is the empty sentinel, then one per constant (and
	 * per activation with empty_buffers) */
	size_t nbuf = 0;
	tflite_Buffer_start(&b);
	refs[nbuf++] = tflite_Buffer_end(&b);
	for (size_t i = 0; i < nt; i++) {
		const tfw_tensor_t *t = &w->tensors[i];
		bufidx[i] = 0;
		if (!t->data && !w->empty_buffers)
			continue;
		tlcm_fbb_ref_t data =
			t->data ? tlcm_fbb_vec(&b, t->data, t->bytes, 1, 16)
				: tlcm_fbb_vec(&b, "", 0, 1, 16);
		tflite_Buffer_start(&b);
		tflite_Buffer_add_data(&b, data);
		bufidx[i] = (uint32_t)nbuf;
		refs[nbuf++] = tflite_Buffer_end(&b);
	}
	tlcm_fbb_ref_t buffers = tflite_Model_buffers_create(&b, refs, nbuf);

	/* operator codes */
	size_t ncodes = 0;
	for (size_t i = 0; i < no; i++)
		opcode[i] = (uint32_t)opcode_index(codes, &ncodes, &w->ops[i]);
	for (size_t i = 0; i < ncodes; i++) {
		tlcm_fbb_ref_t cc =
			codes[i]->custom_code
				? tlcm_fbb_cstring(&b, codes[i]->custom_code)
				: 0;
		int32_t code = codes[i]->code;
		tflite_OperatorCode_start(&b);
		tflite_OperatorCode_add_deprecated_builtin_code(
			&b, (int8_t)(code < 127 ? code : 127));
		if (cc)
			tflite_OperatorCode_add_custom_code(&b, cc);
		tflite_OperatorCode_add_version(&b, 1);
		tflite_OperatorCode_add_builtin_code(&b, code);
		refs[i] = tflite_OperatorCode_end(&b);
	}
	tlcm_fbb_ref_t opcodes =
		tflite_Model_operator_codes_create(&b, refs, ncodes);

	/* the subgraph */
	for (size_t i = 0; i < nt; i++)
		refs[i] = build_tensor(&b, &w->tensors[i], bufidx[i]);
	tlcm_fbb_ref_t tensors = tflite_SubGraph_tensors_create(&b, refs, nt);
	for (size_t i = 0; i < no; i++)
		refs[i] = build_operator(&b, &w->ops[i], opcode[i]);
	tlcm_fbb_ref_t operators = tflite_SubGraph_operators_create(&b, refs, no);
	int32_t ins[2] = {w->input, w->extra_input};
	tlcm_fbb_ref_t inputs = tflite_SubGraph_inputs_create(
		&b, ins, w->extra_input >= 0 ? 2 : w->input >= 0 ? 1 : 0);
	tlcm_fbb_ref_t outputs = tflite_SubGraph_outputs_create(
		&b, w->outputs, (size_t)w->noutputs);
	tlcm_fbb_ref_t sgname = tlcm_fbb_cstring(&b, "main");
	tflite_SubGraph_start(&b);
	tflite_SubGraph_add_tensors(&b, tensors);
	tflite_SubGraph_add_inputs(&b, inputs);
	tflite_SubGraph_add_outputs(&b, outputs);
	tflite_SubGraph_add_operators(&b, operators);
	tflite_SubGraph_add_name(&b, sgname);
	tlcm_fbb_ref_t sg = tflite_SubGraph_end(&b);
	size_t nsg = w->subgraphs > 0 ? (size_t)w->subgraphs : 0;
	if (nsg > nref)
		nsg = nref;
	for (size_t i = 0; i < nsg; i++)
		refs[i] = sg; /* shared: FlatBuffers allows it */
	tlcm_fbb_ref_t subgraphs = tflite_Model_subgraphs_create(&b, refs, nsg);

	tlcm_fbb_ref_t desc = tlcm_fbb_cstring(&b, "TinyLCM test writer");
	tflite_Model_start(&b);
	tflite_Model_add_version(&b, w->version);
	tflite_Model_add_operator_codes(&b, opcodes);
	tflite_Model_add_subgraphs(&b, subgraphs);
	tflite_Model_add_description(&b, desc);
	tflite_Model_add_buffers(&b, buffers);
	size_t size = 0;
	const void *msg = tflite_Model_finish(&b, tflite_Model_end(&b), &size);
	int rc = msg ? 0 : tlcm_fbb_error(&b);
	if (!rc) {
		*buf = malloc(size);
		if (*buf) {
			memcpy(*buf, msg, size);
			*len = size;
		} else {
			rc = TLCM_ENOMEM;
		}
	}
	tlcm_fbb_fini(&b);
	free(refs);
	free(bufidx);
	free(codes);
	free(opcode);
	return rc;
}

int tfw_save(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t n = fwrite(buf, 1, len, f);
	return fclose(f) == 0 && n == len ? 0 : -1;
}
