/* ref_ops.c — reference ops: the obvious loops (see ref_ops.h). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "tests/unit/ref_ops.h"

typedef struct { /* an NHWC frame's geometry */
	int h, w, c;
} hwc_t;

static hwc_t hwc(const tlcm_tensor_t *t)
{
	return (hwc_t){t->shape[1], t->shape[2], t->shape[3]};
}

static float activate(tlcm_Activation_enum_t a, double v)
{
	if (a == tlcm_Activation_Relu || a == tlcm_Activation_Relu6)
		v = v < 0 ? 0 : v;
	if (a == tlcm_Activation_Relu6)
		v = v > 6 ? 6 : v;
	return (float)v;
}

/* Conv2D (filter OHWI: every input channel) and DepthwiseConv2D (filter
 * 1HW(C*M): output channel oc reads input channel oc / M). */
static void conv(const tlcm_op_t *o, hwc_t x, hwc_t y, int kh, int kw,
		 bool depthwise, const float *in, const float *f,
		 const float *bias, float *out)
{
	for (int oy = 0; oy < y.h; oy++)
		for (int ox = 0; ox < y.w; ox++)
			for (int oc = 0; oc < y.c; oc++) {
				double acc = bias ? bias[oc] : 0;
				for (int ky = 0; ky < kh; ky++) {
					int iy = oy * o->stride_h - o->pad_top +
						 ky * o->dilation_h;
					if (iy < 0 || iy >= x.h)
						continue;
					for (int kx = 0; kx < kw; kx++) {
						int ix = ox * o->stride_w -
							 o->pad_left +
							 kx * o->dilation_w;
						if (ix < 0 || ix >= x.w)
							continue;
						const float *p =
							in + ((size_t)iy * x.w +
							      ix) * x.c;
						if (depthwise) {
							int ic = oc / o->depth_multiplier;
							acc += (double)p[ic] *
							       f[((size_t)ky * kw +
								  kx) * y.c + oc];
							continue;
						}
						const float *q =
							f + (((size_t)oc * kh +
							      ky) * kw + kx) * x.c;
						for (int ic = 0; ic < x.c; ic++)
							acc += (double)p[ic] * q[ic];
					}
				}
				out[((size_t)oy * y.w + ox) * y.c + oc] =
					activate(o->activation, acc);
			}
}

static void pool(const tlcm_op_t *o, hwc_t x, hwc_t y, bool max,
		 const float *in, float *out)
{
	for (int oy = 0; oy < y.h; oy++)
		for (int ox = 0; ox < y.w; ox++)
			for (int c = 0; c < y.c; c++) {
				double acc = max ? -INFINITY : 0;
				int n = 0;
				for (int ky = 0; ky < o->kernel_h; ky++) {
					int iy = oy * o->stride_h - o->pad_top +
						 ky * o->dilation_h;
					for (int kx = 0; kx < o->kernel_w; kx++) {
						int ix = ox * o->stride_w -
							 o->pad_left +
							 kx * o->dilation_w;
						if (iy < 0 || iy >= x.h || ix < 0 ||
						    ix >= x.w)
							continue;
						double v = in[((size_t)iy * x.w +
							       ix) * x.c + c];
						acc = max ? fmax(acc, v) : acc + v;
						n++;
					}
				}
				if (!max)
					acc = n ? acc / n : 0;
				out[((size_t)oy * y.w + ox) * y.c + c] =
					activate(o->activation, acc);
			}
}

static void fully_connected(const tlcm_op_t *o, size_t nin, size_t nout,
			    const float *in, const float *w,
			    const float *bias, float *out)
{
	for (size_t j = 0; j < nout; j++) {
		double acc = bias ? bias[j] : 0;
		for (size_t i = 0; i < nin; i++)
			acc += (double)in[i] * w[j * nin + i];
		out[j] = activate(o->activation, acc);
	}
}

static void softmax(size_t n, size_t last, const float *in, float *out)
{
	for (size_t r = 0; r < n / last; r++) {
		const float *p = in + r * last;
		double mx = -INFINITY, sum = 0;
		for (size_t i = 0; i < last; i++)
			mx = fmax(mx, p[i]);
		for (size_t i = 0; i < last; i++)
			sum += exp(p[i] - mx);
		for (size_t i = 0; i < last; i++)
			out[r * last + i] = (float)(exp(p[i] - mx) / sum);
	}
}

static double unary(const tlcm_op_t *o, double v)
{
	switch (o->type) {
	case tlcm_OpType_Relu:
		return v < 0 ? 0 : v;
	case tlcm_OpType_Relu6:
		return v < 0 ? 0 : v > 6 ? 6 : v;
	case tlcm_OpType_Clamp:
		return v < o->clamp_min ? o->clamp_min
		       : v > o->clamp_max ? o->clamp_max : v;
	case tlcm_OpType_HardSwish:
		return v * fmin(fmax(v + 3, 0), 6) / 6;
	case tlcm_OpType_Sigmoid:
		return 1 / (1 + exp(-v));
	default:
		return v;
	}
}

void tlcm_ref_op(const tlcm_model_t *m, const tlcm_op_t *o,
		 const float *const *in, float *out)
{
	const tlcm_tensor_t *x = &m->tensors[o->in[0]];
	const tlcm_tensor_t *w = o->nin > 1 ? &m->tensors[o->in[1]] : NULL;
	const tlcm_tensor_t *y = &m->tensors[o->out];
	const float *bias = o->nin > 2 ? in[2] : NULL;
	switch (o->type) {
	case tlcm_OpType_Conv2D:
	case tlcm_OpType_DepthwiseConv2D:
		conv(o, hwc(x), hwc(y), w->shape[1], w->shape[2],
		     o->type == tlcm_OpType_DepthwiseConv2D, in[0], in[1], bias,
		     out);
		return;
	case tlcm_OpType_FullyConnected:
		fully_connected(o, x->size, y->size, in[0], in[1], bias, out);
		return;
	case tlcm_OpType_AveragePool2D:
	case tlcm_OpType_MaxPool2D:
		pool(o, hwc(x), hwc(y), o->type == tlcm_OpType_MaxPool2D, in[0],
		     out);
		return;
	case tlcm_OpType_GlobalAveragePool: {
		hwc_t g = hwc(x);
		for (int c = 0; c < g.c; c++) {
			double acc = 0;
			for (size_t i = 0; i < (size_t)g.h * g.w; i++)
				acc += in[0][i * g.c + c];
			out[c] = activate(o->activation, acc / (g.h * g.w));
		}
		return;
	}
	case tlcm_OpType_Add:
	case tlcm_OpType_Multiply:
		for (size_t i = 0; i < y->size; i++) {
			double a = in[0][i], b = in[1][i % w->size];
			out[i] = activate(o->activation,
					  o->type == tlcm_OpType_Add ? a + b
								     : a * b);
		}
		return;
	case tlcm_OpType_Softmax:
		softmax(x->size, (size_t)x->shape[x->rank - 1], in[0], out);
		return;
	case tlcm_OpType_Reshape:
		memcpy(out, in[0], x->size * sizeof *out);
		return;
	case tlcm_OpType_Pad: {
		hwc_t a = hwc(x), b = hwc(y);
		for (size_t i = 0; i < y->size; i++)
			out[i] = o->pad_value;
		for (int r = 0; r < a.h; r++)
			memcpy(out + ((size_t)(r + o->pad_top) * b.w +
				      o->pad_left) * b.c,
			       in[0] + (size_t)r * a.w * a.c,
			       (size_t)a.w * a.c * sizeof *out);
		return;
	}
	default:
		for (size_t i = 0; i < x->size; i++)
			out[i] = (float)unary(o, in[0][i]);
	}
}

int tlcm_ref_run(const tlcm_model_t *m, size_t n, const float *in,
		 float **outs)
{
	float **val = calloc(m->ntensors, sizeof *val);
	if (!val)
		return TLCM_ENOMEM;
	int rc = 0;
	for (size_t t = 0; t < m->ntensors && !rc; t++)
		if (!m->tensors[t].data &&
		    !(val[t] = malloc(m->tensors[t].size * sizeof(float))))
			rc = TLCM_ENOMEM;
	for (size_t f = 0; f < n && !rc; f++) {
		const tlcm_tensor_t *x = &m->tensors[m->input];
		memcpy(val[m->input], in + f * x->size, x->size * sizeof(float));
		for (size_t i = 0; i < m->nops; i++) {
			const tlcm_op_t *o = &m->ops[i];
			const float *args[TLCM_MODEL_MAX_IN] = {0};
			for (int k = 0; k < o->nin; k++)
				if (o->in[k] >= 0)
					args[k] = m->tensors[o->in[k]].data
							  ? m->tensors[o->in[k]].data
							  : val[o->in[k]];
			tlcm_ref_op(m, o, args, val[o->out]);
		}
		for (size_t k = 0; k < m->noutputs; k++) {
			size_t sz = m->tensors[m->outputs[k]].size;
			memcpy(outs[k] + f * sz, val[m->outputs[k]],
			       sz * sizeof(float));
		}
	}
	for (size_t t = 0; t < m->ntensors; t++)
		free(val[t]);
	free(val);
	return rc;
}
