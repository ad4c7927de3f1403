/* scaler_pca.c — node `transform.scaler_pca`: StandardScaler then PCA.
 *
 * Reads the parameters from a .tspc file at init (verified, folded into
 * one affine map: see scaler_pca.h) and, for every FEAT message, emits a
 * FEAT message whose embedding is the k-value projection; frame id, time,
 * logits, label and infer_ns are carried over unchanged. A message that
 * is not a valid FEAT buffer, or whose embedding length is not the file's
 * `dim`, is skipped: counted, logged with the frame id (first ten, then
 * every thousandth), and the graph runs on.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/io.h"
#include "engine/log.h"
#include "engine/node.h"
#include "fb/features_fb.h"
#include "fb/scaler_pca_fb.h"
#include "nodes/transform/scaler_pca.h"

#define TSPC_MAX_FILE ((size_t)256 << 20)

/* ---- the projection ---------------------------------------------------- */

/* z = W x - c with W^T's rows (p->w, kp values each) scaled by x[i] into
 * kp sums, V (W doubles) at a time: blocks of 8 vectors (32 outputs with
 * AVX, 16 with SSE2 or NEON) stay in registers for the whole pass over
 * x, the rest goes one vector per pass. Sum j is s_j = 0 + w[0][j] x[0]
 * + w[1][j] x[1] + ... in that order, then z[j] = (float)(s_j - c[j]):
 * the plain loop over row j of W, bit for bit (the same operations in
 * the same order; neither x86-64's baseline nor "avx" has an FMA that
 * could fuse them differently). */
#define PCA_KERNEL(NAME, ATTR, V, W)                                          \
	ATTR static void NAME(const tlcm_scaler_pca_t *p, const float *x,      \
			      float *z)                                        \
	{                                                                      \
		size_t kp = p->kp, dim = p->dim, j0 = 0;                       \
		V s[8];                                                        \
		for (; j0 + 8 * (W) <= kp; j0 += 8 * (W)) {                    \
			V s0 = {0}, s1 = s0, s2 = s0, s3 = s0, s4 = s0,        \
			  s5 = s0, s6 = s0, s7 = s0;                           \
			const V *w = (const V *)(p->w + j0);                   \
			for (size_t i = 0; i < dim; i++, w += kp / (W)) {      \
				double xi = x[i];                              \
				s0 += w[0] * xi;                               \
				s1 += w[1] * xi;                               \
				s2 += w[2] * xi;                               \
				s3 += w[3] * xi;                               \
				s4 += w[4] * xi;                               \
				s5 += w[5] * xi;                               \
				s6 += w[6] * xi;                               \
				s7 += w[7] * xi;                               \
			}                                                      \
			s[0] = s0, s[1] = s1, s[2] = s2, s[3] = s3;            \
			s[4] = s4, s[5] = s5, s[6] = s6, s[7] = s7;            \
			for (int b = 0; b < 8; b++)                            \
				for (int l = 0; l < (W); l++) {                \
					size_t j = j0 + (size_t)b * (W) + l;   \
					if (j < p->k)                          \
						z[j] = (float)(s[b][l] -       \
							       p->c[j]);       \
				}                                              \
		}                                                              \
		for (; j0 < kp; j0 += (W)) {                                   \
			V s0 = {0};                                            \
			const V *w = (const V *)(p->w + j0);                   \
			for (size_t i = 0; i < dim; i++, w += kp / (W))        \
				s0 += *w * (double)x[i];                       \
			for (int l = 0; l < (W); l++)                          \
				if (j0 + l < p->k)                             \
					z[j0 + l] = (float)(s0[l] -            \
							    p->c[j0 + l]);     \
		}                                                              \
	}

typedef double v2d __attribute__((vector_size(16)));
PCA_KERNEL(project_v2d, , v2d, 2) /* SSE2 on x86-64, NEON on aarch64 */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
typedef double v4d __attribute__((vector_size(32)));
PCA_KERNEL(project_v4d, __attribute__((target("avx"))), v4d, 4)
#endif

typedef void (*project_fn)(const tlcm_scaler_pca_t *, const float *, float *);

static project_fn pick_kernel(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx"))
		return project_v4d;
#endif
	return project_v2d;
}

/* ---- parameters ------------------------------------------------------- */

static int load_fail(tlcm_scaler_pca_t *p, char *why, size_t cap,
		     const char *origin, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int load_fail(tlcm_scaler_pca_t *p, char *why, size_t cap,
		     const char *origin, const char *fmt, ...)
{
	tlcm_scaler_pca_free(p);
	if (why && cap) {
		int n = snprintf(why, cap, "%s: ", origin);
		if (n >= 0 && (size_t)n < cap) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(why + n, cap - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return TLCM_EBADMSG;
}

/* The index of the first non-finite value of v[0..n), or n. */
static size_t first_non_finite(const float *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(v[i]))
			return i;
	return n;
}

int tlcm_scaler_pca_load(tlcm_scaler_pca_t *p, const void *buf, size_t len,
			 const char *origin, char *why, size_t cap)
{
	const char *vwhy = NULL;
	memset(p, 0, sizeof *p);
	if (!origin)
		origin = "scaler/PCA parameters";
	if (tlcm_ScalerPca_verify_as_root(buf, len, &vwhy))
		return load_fail(p, why, cap, origin, "not a valid .tspc file "
				 "(ScalerPca, identifier TSPC): %s", vwhy);
	tlcm_ScalerPca_table_t t = tlcm_ScalerPca_as_root(buf);
	uint32_t dim = tlcm_ScalerPca_dim(t), k = tlcm_ScalerPca_k(t);
	if (dim == 0 || k == 0 || k > dim)
		return load_fail(p, why, cap, origin, "dim %" PRIu32 " and k %"
				 PRIu32 ": expected 0 < k <= dim", dim, k);
	struct {
		const char *name;
		const float *v;
		size_t len, want;
	} vec[] = {
		{"mean", tlcm_ScalerPca_mean(t), tlcm_ScalerPca_mean_len(t),
		 dim},
		{"scale", tlcm_ScalerPca_scale(t), tlcm_ScalerPca_scale_len(t),
		 dim},
		{"pca_mean", tlcm_ScalerPca_pca_mean(t),
		 tlcm_ScalerPca_pca_mean_len(t), dim},
		{"components", tlcm_ScalerPca_components(t),
		 tlcm_ScalerPca_components_len(t), (size_t)k * dim},
	};
	for (size_t v = 0; v < sizeof vec / sizeof vec[0]; v++) {
		if (vec[v].len != vec[v].want)
			return load_fail(p, why, cap, origin,
					 "%s has %zu values, expected %zu "
					 "(dim %" PRIu32 ", k %" PRIu32 ")",
					 vec[v].name, vec[v].len, vec[v].want,
					 dim, k);
		size_t bad = first_non_finite(vec[v].v, vec[v].len);
		if (bad < vec[v].len)
			return load_fail(p, why, cap, origin,
					 "%s[%zu] is %g, expected a finite "
					 "number", vec[v].name, bad,
					 (double)vec[v].v[bad]);
	}
	const float *mean = vec[0].v, *scale = vec[1].v, *pmean = vec[2].v,
		    *comp = vec[3].v;
	for (uint32_t i = 0; i < dim; i++)
		if (!(scale[i] > 0))
			return load_fail(p, why, cap, origin, "scale[%" PRIu32
					 "] is %g, expected > 0", i,
					 (double)scale[i]);
	size_t evr = tlcm_ScalerPca_explained_variance_ratio_len(t);
	if (tlcm_ScalerPca_explained_variance_ratio_is_present(t) && evr != k)
		return load_fail(p, why, cap, origin,
				 "explained_variance_ratio has %zu values, "
				 "expected k = %" PRIu32, evr, k);

	uint32_t kp = (k + 3) & ~3u;
	p->w = aligned_alloc(32, (size_t)kp * dim * sizeof *p->w);
	p->c = calloc(kp, sizeof *p->c);
	if (!p->w || !p->c) {
		tlcm_scaler_pca_free(p);
		if (why && cap)
			snprintf(why, cap, "%s: out of memory", origin);
		return TLCM_ENOMEM;
	}
	p->dim = dim;
	p->k = k;
	p->kp = kp;
	p->kernel = pick_kernel();
	memset(p->w, 0, (size_t)kp * dim * sizeof *p->w);
	for (uint32_t j = 0; j < k; j++) {
		double c = 0;
		for (uint32_t i = 0; i < dim; i++) {
			double cji = comp[(size_t)j * dim + i];
			p->w[(size_t)i * kp + j] = cji / scale[i];
			c += cji * ((double)mean[i] / scale[i] + pmean[i]);
		}
		p->c[j] = c;
	}
	return 0;
}

int tlcm_scaler_pca_load_file(tlcm_scaler_pca_t *p, const char *path,
			      char *why, size_t cap)
{
	void *data = NULL;
	size_t len = 0;
	memset(p, 0, sizeof *p);
	int rc = tlcm_io_read_file(path, TSPC_MAX_FILE, &data, &len);
	if (rc) {
		if (why && cap)
			snprintf(why, cap, "%s: cannot read: %s%s", path,
				 tlcm_strerror(rc), rc == TLCM_ETOOBIG ?
				 " (more than 256 MiB)" : "");
		return rc;
	}
	rc = tlcm_scaler_pca_load(p, data, len, path, why, cap);
	free(data);
	return rc;
}

void tlcm_scaler_pca_free(tlcm_scaler_pca_t *p)
{
	free(p->w);
	free(p->c);
	memset(p, 0, sizeof *p);
}

void tlcm_scaler_pca_apply(const tlcm_scaler_pca_t *p, const float *x,
			   float *z)
{
	if (p->k) /* loaded */
		p->kernel(p, x, z);
}

void tlcm_scaler_pca_use_portable(tlcm_scaler_pca_t *p)
{
	p->kernel = project_v2d;
}

/* ---- the node --------------------------------------------------------- */

typedef struct {
	tlcm_scaler_pca_t p;
	uint64_t frames, errors;
} spca_t;

static const tlcm_port_desc_t inputs[] = {
	{"in", "FEAT", "features with an embedding of the file's dim values",
	 0},
	{0},
};
static const tlcm_port_desc_t outputs[] = {
	{"out", "FEAT", "the same features, embedding replaced by its k-value "
	 "projection", 0},
	{0},
};
static const tlcm_param_desc_t params[] = {
	{"params", TLCM_P_PATH, NULL, "StandardScaler + PCA parameters (.tspc, "
	 "written by tools/train-fmnist)", 0, 0, NULL, 0},
	{0},
};

static int init(tlcm_ctx_t *ctx, void *st)
{
	spca_t *s = st;
	char why[512];
	int rc = tlcm_scaler_pca_load_file(&s->p, tlcm_param_str(ctx, "params"),
					   why, sizeof why);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", why);
		return rc;
	}
	tlcm_node_log(ctx, TLCM_LOG_DEBUG, "%s: dim %" PRIu32 " -> k %" PRIu32,
		      tlcm_param_str(ctx, "params"), s->p.dim, s->p.k);
	return 0;
}

/* A skipped message: counted; logged for the first ten, then every
 * thousandth, so a stream of bad frames cannot flood the log. */
static void bad_frame(tlcm_ctx_t *ctx, spca_t *s, uint64_t frame,
		      const char *what)
{
	s->errors++;
	if (s->errors <= 10 || s->errors % 1000 == 0)
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "frame %" PRIu64 " skipped "
			      "(%" PRIu64 " so far): %s", frame, s->errors,
			      what);
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	spca_t *s = st;
	const void *buf = tlcm_msg_data(m);
	const char *vwhy;
	char what[256];
	(void)port;
	if (memcmp(m->type, tlcm_Features_IDENTIFIER, 4) != 0 ||
	    tlcm_Features_verify_as_root(buf, m->size, &vwhy)) {
		snprintf(what, sizeof what, "not a valid Features message: %s",
			 memcmp(m->type, tlcm_Features_IDENTIFIER, 4) ?
			 "message type is not FEAT" : vwhy);
		bad_frame(ctx, s, tlcm_trace(ctx), what);
		return 0;
	}
	tlcm_Features_table_t f = tlcm_Features_as_root(buf);
	size_t n = tlcm_Features_embedding_len(f);
	if (n != s->p.dim) {
		snprintf(what, sizeof what, "embedding has %zu values, %s "
			 "expects %" PRIu32, n, tlcm_param_str(ctx, "params"),
			 s->p.dim);
		bad_frame(ctx, s, tlcm_Features_frame_id(f), what);
		return 0;
	}
	size_t nlog = tlcm_Features_logits_len(f);
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, 0, &b, 4 * ((size_t)s->p.k + nlog) + 256);
	if (rc)
		return rc == TLCM_EAGAIN ? 0 : rc;
	float *z = NULL;
	tlcm_fbb_ref_t emb = tlcm_fbb_vec_alloc(&b, s->p.k, sizeof(float),
						sizeof(float), (void **)&z);
	if (z)
		tlcm_scaler_pca_apply(&s->p, tlcm_Features_embedding(f), z);
	tlcm_fbb_ref_t logits = 0;
	if (tlcm_Features_logits_is_present(f))
		logits = tlcm_Features_logits_create(
			&b, tlcm_Features_logits(f), nlog);
	tlcm_Features_start(&b);
	tlcm_Features_add_frame_id(&b, tlcm_Features_frame_id(f));
	tlcm_Features_add_time_ns(&b, tlcm_Features_time_ns(f));
	tlcm_Features_add_embedding(&b, emb);
	if (logits)
		tlcm_Features_add_logits(&b, logits);
	tlcm_Features_add_label(&b, tlcm_Features_label(f));
	tlcm_Features_add_infer_ns(&b, tlcm_Features_infer_ns(f));
	rc = tlcm_emit_end(ctx, 0, &b, tlcm_Features_end(&b),
			   tlcm_Features_IDENTIFIER);
	if (rc == 0 || rc == TLCM_EAGAIN)
		s->frames++;
	return rc == TLCM_EAGAIN ? 0 : rc;
}

static int eos(tlcm_ctx_t *ctx, void *st)
{
	spca_t *s = st;
	tlcm_node_log(ctx, s->errors ? TLCM_LOG_WARN : TLCM_LOG_INFO,
		      "projected %" PRIu64 " frames, skipped %" PRIu64,
		      s->frames, s->errors);
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	spca_t *s = st;
	(void)ctx;
	snprintf(buf, len, "{\"dim\":%" PRIu32 ",\"k\":%" PRIu32 ",\"frames\":%"
		 PRIu64 ",\"errors\":%" PRIu64 "}", s->p.dim, s->p.k, s->frames,
		 s->errors);
	return 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	spca_t *s = st;
	(void)ctx;
	tlcm_scaler_pca_free(&s->p);
}

const tlcm_node_type_t tlcm_node_scaler_pca = {
	.name = "transform.scaler_pca",
	.doc = "StandardScaler then PCA projection of the embedding "
	       "(parameters from a .tspc file)",
	.inputs = inputs,
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(spca_t),
	.init = init,
	.process = process,
	.eos = eos,
	.describe = describe,
	.fini = fini,
};
