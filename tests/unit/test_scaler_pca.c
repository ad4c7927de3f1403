/* test_scaler_pca.c — transform.scaler_pca and its .tspc loader.
 *
 * The projection is checked against values computed by hand (chosen to be
 * exact in float), the loader against a corpus of bad .tspc buffers (each
 * must fail with TLCM_EBADMSG and a message naming the origin and the
 * field), and the node in whole graphs: a test source emits FEAT messages
 * (good ones, one with the wrong embedding length, one corrupt buffer), a
 * test sink records what comes out; bad frames are skipped, the graph runs
 * on; a bad parameter file stops the graph at start naming the node.
 */
#define _GNU_SOURCE
#include <unistd.h>

#include "engine/graph.h"
#include "engine/sched.h"
#include "fb/features_fb.h"
#include "fb/scaler_pca_fb.h"
#include "nodes/nodes.h"
#include "nodes/transform/scaler_pca.h"
#include "tests/tlcm_test.h"

/* ---- .tspc buffers ------------------------------------------------------ */

typedef struct {
	uint32_t dim, k;
	const float *mean, *scale, *pca_mean, *comp, *evr;
	size_t nmean, nscale, npca, ncomp, nevr;
} spec_t;

/* The hand-checked parameters: dim 3, k 2. */
static const float MEAN[] = {1, 2, 3}, SCALE[] = {2, 4, 0.5f},
		   PMEAN[] = {0.5f, 0, -1},
		   COMP[] = {1, 0, 0, /* row 0 */ 0.5f, 0.5f, -1 /* row 1 */},
		   EVR[] = {0.75f, 0.25f};

static spec_t good_spec(void)
{
	return (spec_t){3, 2, MEAN, SCALE, PMEAN, COMP, EVR, 3, 3, 3, 6, 2};
}

/* Builds the buffer into *out (malloc'd, exact size so ASan sees any
 * overread). */
static size_t build(const spec_t *s, void **out)
{
	tlcm_fbb_t b;
	CHECK_INT(tlcm_fbb_init(&b, 0), 0);
	tlcm_fbb_ref_t m = tlcm_ScalerPca_mean_create(&b, s->mean, s->nmean);
	tlcm_fbb_ref_t sc = tlcm_ScalerPca_scale_create(&b, s->scale,
							 s->nscale);
	tlcm_fbb_ref_t pm = tlcm_ScalerPca_pca_mean_create(&b, s->pca_mean,
							    s->npca);
	tlcm_fbb_ref_t c = tlcm_ScalerPca_components_create(&b, s->comp,
							     s->ncomp);
	tlcm_fbb_ref_t e = 0;
	if (s->evr)
		e = tlcm_ScalerPca_explained_variance_ratio_create(&b, s->evr,
								    s->nevr);
	tlcm_ScalerPca_start(&b);
	tlcm_ScalerPca_add_dim(&b, s->dim);
	tlcm_ScalerPca_add_k(&b, s->k);
	tlcm_ScalerPca_add_mean(&b, m);
	tlcm_ScalerPca_add_scale(&b, sc);
	tlcm_ScalerPca_add_pca_mean(&b, pm);
	tlcm_ScalerPca_add_components(&b, c);
	if (e)
		tlcm_ScalerPca_add_explained_variance_ratio(&b, e);
	size_t size = 0;
	const void *buf = tlcm_ScalerPca_finish(&b, tlcm_ScalerPca_end(&b),
						&size);
	CHECK(buf != NULL);
	*out = malloc(size ? size : 1);
	if (buf)
		memcpy(*out, buf, size);
	tlcm_fbb_fini(&b);
	return size;
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f)) {
		TLCM__FAIL("cannot write %s", path);
		exit(1);
	}
}

/* ---- the projection ----------------------------------------------------- */

static void hand_computed(void)
{
	spec_t s = good_spec();
	void *buf;
	size_t len = build(&s, &buf);
	tlcm_scaler_pca_t p;
	char why[256] = "";
	CHECK_INT(tlcm_scaler_pca_load(&p, buf, len, "good.tspc", why,
				       sizeof why), 0);
	CHECK_STR(why, "");
	CHECK_UINT(p.dim, 3);
	CHECK_UINT(p.k, 2);
	/* x = (5, 10, 4): standardized (2, 2, 2), minus pca_mean (1.5, 2, 3);
	 * z0 = 1.5; z1 = 0.75 + 1 - 3 = -1.25 */
	const float x[3] = {5, 10, 4};
	float z[2] = {0};
	tlcm_scaler_pca_apply(&p, x, z);
	CHECK_DBL(z[0], 1.5);
	CHECK_DBL(z[1], -1.25);
	/* x = mean: standardized 0, z = -pca_mean . comps:
	 * z0 = -0.5; z1 = -0.25 + 0 - 1 = -1.25 */
	tlcm_scaler_pca_apply(&p, MEAN, z);
	CHECK_DBL(z[0], -0.5);
	CHECK_DBL(z[1], -1.25);
	tlcm_scaler_pca_free(&p);
	tlcm_scaler_pca_free(&p); /* idempotent */
	free(buf);
}

/* The projection against two references written here, on random
 * parameters of many shapes (k a multiple of 4 and not, k = dim, the
 * fmnist 128 -> 32 and a MobileNet-sized 1280 -> 37):
 * - straight from the definition, z = ((x - mean) / scale - pca_mean) .
 *   components^T in double: within float rounding;
 * - the folded map (scaler_pca.h) as the plain loop over each row of W:
 *   the same sums in the same order, so on x86-64 (no FMA in the
 *   baseline, none in the AVX kernel either) bit for bit, elsewhere
 *   within a float ulp (an FMA may fuse either differently).
 * Both kernels: the CPU's (AVX on most x86-64) and the portable one. */
static uint64_t prng = 0x9e3779b97f4a7c15ull;

static double prand(double lo, double hi)
{
	prng ^= prng << 13;
	prng ^= prng >> 7;
	prng ^= prng << 17;
	return lo + (hi - lo) * (double)(prng >> 11) / 9007199254740992.0;
}

static void reference_case(uint32_t dim, uint32_t k, bool portable)
{
	size_t nc = (size_t)k * dim;
	float *mean = malloc(dim * sizeof *mean),
	      *scale = malloc(dim * sizeof *scale),
	      *pmean = malloc(dim * sizeof *pmean),
	      *comp = malloc(nc * sizeof *comp), *x = malloc(dim * sizeof *x),
	      *z = malloc((k + 1) * sizeof *z);
	double *w = malloc(nc * sizeof *w), *c = malloc(k * sizeof *c);
	for (uint32_t i = 0; i < dim; i++) {
		mean[i] = (float)prand(-2, 2);
		scale[i] = (float)prand(0.05, 3);
		pmean[i] = (float)prand(-0.5, 0.5);
	}
	for (size_t i = 0; i < nc; i++)
		comp[i] = (float)prand(-1, 1);
	spec_t sp = {dim, k, mean, scale, pmean, comp, NULL,
		     dim, dim, dim, nc, 0};
	void *buf;
	size_t len = build(&sp, &buf);
	tlcm_scaler_pca_t p;
	char why[256] = "";
	CHECK_INT(tlcm_scaler_pca_load(&p, buf, len, "random.tspc", why,
				       sizeof why), 0);
	if (portable)
		tlcm_scaler_pca_use_portable(&p);
	/* the fold, as scaler_pca.h defines it */
	for (uint32_t j = 0; j < k; j++) {
		double cj = 0;
		for (uint32_t i = 0; i < dim; i++) {
			double cji = comp[(size_t)j * dim + i];
			w[(size_t)j * dim + i] = cji / scale[i];
			cj += cji * ((double)mean[i] / scale[i] + pmean[i]);
		}
		c[j] = cj;
	}
	int far = 0, differ = 0;
	for (int t = 0; t < 20; t++) {
		for (uint32_t i = 0; i < dim; i++)
			x[i] = (float)(t == 0 ? mean[i] : prand(-4, 4));
		z[k] = 12345.0f; /* must stay: z has k values */
		tlcm_scaler_pca_apply(&p, x, z);
		CHECK(z[k] == 12345.0f);
		for (uint32_t j = 0; j < k; j++) {
			double def = 0, mag = 0, s = 0;
			for (uint32_t i = 0; i < dim; i++) {
				double term = (((double)x[i] - mean[i]) /
						       scale[i] - pmean[i]) *
					      comp[(size_t)j * dim + i];
				def += term;
				mag += fabs(term);
				s += w[(size_t)j * dim + i] * x[i];
			}
			float plain = (float)(s - c[j]);
			if (fabs(z[j] - def) > 1.2e-7 * fabs(def) + 1e-12 * mag)
				far++;
#if defined(__x86_64__)
			if (z[j] != plain)
				differ++;
#else
			if (fabsf(z[j] - plain) > 1.2e-7f * fabsf(plain) +
							  1e-12f * (float)mag)
				differ++;
#endif
		}
	}
	if (far || differ)
		fprintf(stderr, "  dim %u k %u%s: %d values off the "
			"definition, %d off the plain loop\n", dim, k,
			portable ? " (portable)" : "", far, differ);
	CHECK_INT(far, 0);
	CHECK_INT(differ, 0);
	tlcm_scaler_pca_free(&p);
	free(buf);
	free(mean);
	free(scale);
	free(pmean);
	free(comp);
	free(x);
	free(z);
	free(w);
	free(c);
}

static void reference_projection(void)
{
	static const uint32_t shapes[][2] = {
		{128, 32}, {1280, 37}, {3, 2}, {7, 5}, {33, 33}, {100, 1},
		{64, 9}, {50, 16}, {40, 36}, {16, 12},
	};
	for (int portable = 0; portable < 2; portable++)
		for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
			reference_case(shapes[i][0], shapes[i][1], portable);
}

/* ---- bad parameter buffers ---------------------------------------------- */

static void expect_bad(const char *name, const void *buf, size_t len,
		       const char *needle)
{
	void *copy = malloc(len ? len : 1);
	memcpy(copy, buf, len);
	tlcm_scaler_pca_t p;
	char why[512] = "";
	int rc = tlcm_scaler_pca_load(&p, copy, len, name, why, sizeof why);
	if (rc != TLCM_EBADMSG)
		fprintf(stderr, "  case %s: rc %d (%s)\n", name, rc, why);
	CHECK_INT(rc, TLCM_EBADMSG);
	CHECK_CONTAINS(why, name);
	CHECK_CONTAINS(why, needle);
	CHECK(p.w == NULL && p.c == NULL && p.dim == 0 && p.k == 0);
	free(copy);
}

static void expect_bad_spec(const char *name, spec_t s, const char *needle)
{
	void *buf;
	size_t len = build(&s, &buf);
	expect_bad(name, buf, len, needle);
	free(buf);
}

static void bad_files(void)
{
	static const float nan_v[] = {1, NAN, 3}, inf_v[] = {0.5f, 0.5f, -1,
							    1, 0, INFINITY},
			   zero_s[] = {2, 0, 1}, neg_s[] = {2, 4, -1},
			   two[] = {1, 2}, four[] = {1, 2, 3, 4};
	spec_t s;

	expect_bad("empty", "", 0, "not a valid .tspc");
	expect_bad("text", "hello, world, not a flatbuffer", 30,
		   "not a valid .tspc");

	void *good;
	size_t len = build(&(spec_t){3, 2, MEAN, SCALE, PMEAN, COMP, EVR,
				     3, 3, 3, 6, 2}, &good);
	/* every truncation */
	for (size_t cut = 0; cut < len; cut++)
		expect_bad("truncated", good, cut, "not a valid .tspc");
	/* wrong identifier */
	unsigned char *other = malloc(len);
	memcpy(other, good, len);
	memcpy(other + 4, "TLMD", 4);
	expect_bad("identifier", other, len, "TSPC");
	free(other);
	free(good);

	s = good_spec(), s.k = 0;
	expect_bad_spec("k-zero", s, "expected 0 < k <= dim");
	s = good_spec(), s.dim = 0;
	expect_bad_spec("dim-zero", s, "expected 0 < k <= dim");
	s = good_spec(), s.k = 4, s.dim = 3;
	expect_bad_spec("k-above-dim", s, "expected 0 < k <= dim");
	s = good_spec(), s.mean = two, s.nmean = 2;
	expect_bad_spec("short-mean", s, "mean has 2 values, expected 3");
	s = good_spec(), s.scale = four, s.nscale = 4;
	expect_bad_spec("long-scale", s, "scale has 4 values, expected 3");
	s = good_spec(), s.pca_mean = two, s.npca = 2;
	expect_bad_spec("short-pca-mean", s, "pca_mean has 2 values");
	s = good_spec(), s.ncomp = 5;
	expect_bad_spec("short-components", s,
			"components has 5 values, expected 6");
	s = good_spec(), s.dim = 2, s.nmean = s.nscale = s.npca = 2;
	expect_bad_spec("dim-mismatch", s, "components has 6 values, "
			"expected 4");
	s = good_spec(), s.mean = nan_v;
	expect_bad_spec("nan-mean", s, "mean[1] is nan, expected a finite");
	s = good_spec(), s.comp = inf_v;
	expect_bad_spec("inf-component", s, "components[5] is inf");
	s = good_spec(), s.scale = zero_s;
	expect_bad_spec("zero-scale", s, "scale[1] is 0, expected > 0");
	s = good_spec(), s.scale = neg_s;
	expect_bad_spec("negative-scale", s, "scale[2] is -1, expected > 0");
	s = good_spec(), s.nevr = 1;
	expect_bad_spec("short-evr", s, "explained_variance_ratio has 1 "
			"values, expected k = 2");
	s = good_spec(), s.evr = NULL; /* optional: accepted */
	{
		void *buf;
		size_t n = build(&s, &buf);
		tlcm_scaler_pca_t p;
		char why[256];
		CHECK_INT(tlcm_scaler_pca_load(&p, buf, n, "no-evr", why,
					       sizeof why), 0);
		tlcm_scaler_pca_free(&p);
		free(buf);
	}

	tlcm_scaler_pca_t p;
	char why[512] = "";
	CHECK_INT(tlcm_scaler_pca_load_file(&p, "/nonexistent/x.tspc", why,
					    sizeof why), TLCM_ENOENT);
	CHECK_CONTAINS(why, "/nonexistent/x.tspc");
}

/* ---- the node in a graph ------------------------------------------------ */

#define NFRAMES 6

/* featsrc: emits NFRAMES FEAT messages; frame 3 has 4 embedding values,
 * frame 5 is a corrupt buffer labelled FEAT, the rest are good. */
static const tlcm_port_desc_t feat_out[] = {{"out", "FEAT", "", 0}, {0}};
static const tlcm_param_desc_t featsrc_params[] = {
	{"dim", TLCM_P_INT, "3", "embedding length of the good frames", 1, 64,
	 NULL, 0},
	{0}};

static int featsrc_init(tlcm_ctx_t *ctx, void *st)
{
	(void)st;
	tlcm_set_tick(ctx, 0);
	return 0;
}

static int featsrc_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	uint64_t *n = st;
	(void)now;
	if (*n >= NFRAMES)
		return TLCM_ECLOSED;
	uint64_t frame = ++*n;
	tlcm_set_trace(ctx, 1000 + frame);
	if (frame == 5) {
		static const char junk[16] = "FEATjunk";
		int rc = tlcm_emit(ctx, 0, tlcm_Features_IDENTIFIER, junk,
				   sizeof junk);
		return rc == TLCM_EAGAIN ? 0 : rc;
	}
	float emb[64] = {5, 10, 4}, logits[2] = {0.25f, -2};
	for (int i = 3; i < 64; i++)
		emb[i] = (float)i;
	size_t dim = frame == 3 ? 4 : (size_t)tlcm_param_int(ctx, "dim");
	emb[0] += (float)frame; /* distinct per frame */
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, 0, &b, 1024);
	if (rc)
		return rc;
	tlcm_fbb_ref_t e = tlcm_Features_embedding_create(&b, emb, dim);
	tlcm_fbb_ref_t l = tlcm_Features_logits_create(&b, logits, 2);
	tlcm_Features_start(&b);
	tlcm_Features_add_frame_id(&b, 1000 + frame);
	tlcm_Features_add_time_ns(&b, 77 + frame);
	tlcm_Features_add_embedding(&b, e);
	tlcm_Features_add_logits(&b, l);
	tlcm_Features_add_label(&b, (int32_t)frame % 8);
	tlcm_Features_add_infer_ns(&b, 1234);
	rc = tlcm_emit_end(ctx, 0, &b, tlcm_Features_end(&b),
			   tlcm_Features_IDENTIFIER);
	return rc == TLCM_EAGAIN ? 0 : rc;
}

static const tlcm_node_type_t featsrc_type = {
	.name = "featsrc", .doc = "test FEAT source", .outputs = feat_out,
	.params = featsrc_params, .state_size = sizeof(uint64_t),
	.init = featsrc_init, .tick = featsrc_tick};

/* catch: records the FEAT messages it gets (the graph runs it alone). */
typedef struct {
	uint64_t frame_id, time_ns, infer_ns, trace;
	int32_t label;
	size_t nemb, nlogits;
	float emb[8], logits[2];
} caught_t;

static caught_t caught[16];
static size_t ncaught, ncaught_bad;

static const tlcm_port_desc_t feat_in[] = {{"in", "FEAT", "", 0}, {0}};

static int catch_process(tlcm_ctx_t *ctx, void *st, int port,
			 const tlcm_msg_t *m)
{
	const char *why;
	(void)st;
	(void)port;
	const void *buf = tlcm_msg_data(m);
	if (tlcm_Features_verify_as_root(buf, m->size, &why) ||
	    ncaught >= 16) {
		ncaught_bad++;
		return 0;
	}
	tlcm_Features_table_t f = tlcm_Features_as_root(buf);
	caught_t *c = &caught[ncaught++];
	c->frame_id = tlcm_Features_frame_id(f);
	c->time_ns = tlcm_Features_time_ns(f);
	c->infer_ns = tlcm_Features_infer_ns(f);
	c->trace = tlcm_trace(ctx);
	c->label = tlcm_Features_label(f);
	c->nemb = tlcm_Features_embedding_len(f);
	c->nlogits = tlcm_Features_logits_len(f);
	for (size_t i = 0; i < c->nemb && i < 8; i++)
		c->emb[i] = tlcm_Features_embedding_at(f, i);
	for (size_t i = 0; i < c->nlogits && i < 2; i++)
		c->logits[i] = tlcm_Features_logits_at(f, i);
	return 0;
}

static const tlcm_node_type_t catch_type = {
	.name = "catch", .doc = "record FEAT messages", .inputs = feat_in,
	.process = catch_process};

static tlcm_registry_t reg;

static int run_graph(const char *tspc, int dim, tlcm_run_result_t *res)
{
	char yaml[1024], path[] = "/tmp/tlcm-test-spca-XXXXXX.yaml";
	snprintf(yaml, sizeof yaml,
		 "graph: spca\n"
		 "nodes:\n"
		 "  src: { type: featsrc, params: { dim: %d } }\n"
		 "  pca: { type: transform.scaler_pca,\n"
		 "         params: { params: %s } }\n"
		 "  out: { type: catch }\n"
		 "edges:\n"
		 "  - { from: src.out, to: pca.in }\n"
		 "  - { from: pca.out, to: out.in }\n", dim, tspc);
	int fd = mkstemps(path, 5);
	if (fd < 0 || write(fd, yaml, strlen(yaml)) != (ssize_t)strlen(yaml)) {
		TLCM__FAIL("cannot write %s", path);
		exit(1);
	}
	close(fd);
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	int rc = tlcm_graph_load(&g, path, &reg, NULL, 0, &d);
	if (rc)
		tlcm_diag_print(&d, stderr);
	CHECK_INT(rc, 0);
	tlcm_diag_fini(&d);
	unlink(path);
	if (rc)
		return rc;
	ncaught = ncaught_bad = 0;
	memset(caught, 0, sizeof caught);
	tlcm_run_opts_t o = {.quiet = true, .headless = true};
	rc = tlcm_graph_run(g, &o, res);
	tlcm_graph_free(g);
	return rc;
}

static void node_in_graph(const char *dir)
{
	char tspc[512];
	snprintf(tspc, sizeof tspc, "%s/good.tspc", dir);
	spec_t s = good_spec();
	void *buf;
	size_t len = build(&s, &buf);
	write_file(tspc, buf, len);
	free(buf);

	tlcm_run_result_t res;
	CHECK_INT(run_graph(tspc, 3, &res), 0);
	CHECK_STR(res.why, "");
	tlcm_run_result_fini(&res);
	/* frames 1, 2, 4, 6 pass; 3 (4 values) and 5 (corrupt) are skipped */
	CHECK_UINT(ncaught, 4);
	CHECK_UINT(ncaught_bad, 0);
	static const uint64_t want_frames[] = {1, 2, 4, 6};
	for (size_t i = 0; i < ncaught && i < 4; i++) {
		caught_t *c = &caught[i];
		uint64_t fr = want_frames[i];
		CHECK_UINT(c->frame_id, 1000 + fr);
		CHECK_UINT(c->trace, 1000 + fr);
		CHECK_UINT(c->time_ns, 77 + fr);
		CHECK_UINT(c->infer_ns, 1234);
		CHECK_INT(c->label, (int)(fr % 8));
		CHECK_UINT(c->nemb, 2);
		CHECK_UINT(c->nlogits, 2);
		CHECK_DBL(c->logits[0], 0.25);
		CHECK_DBL(c->logits[1], -2);
		/* x0 = 5 + fr: z0 = (x0 - 1)/2 - 0.5 = 1.5 + fr/2,
		 * z1 = 0.5 z0 + 1 - 3 = -1.25 + fr/4 */
		CHECK_DBL(c->emb[0], 1.5 + (double)fr / 2);
		CHECK_DBL(c->emb[1], -1.25 + (double)fr / 4);
	}

	/* every frame has the wrong length: all skipped, the graph runs on */
	CHECK_INT(run_graph(tspc, 5, &res), 0);
	CHECK_STR(res.why, "");
	tlcm_run_result_fini(&res);
	CHECK_UINT(ncaught, 0);

	/* a bad parameter file stops the graph at start, naming the node */
	char bad[512];
	snprintf(bad, sizeof bad, "%s/bad.tspc", dir);
	write_file(bad, "not a tspc file", 15);
	CHECK(run_graph(bad, 3, &res) != 0);
	CHECK_CONTAINS(res.why, "'pca'");
	CHECK_CONTAINS(res.why, "transform.scaler_pca");
	tlcm_run_result_fini(&res);
	CHECK_UINT(ncaught, 0);

	snprintf(bad, sizeof bad, "%s/missing.tspc", dir);
	CHECK(run_graph(bad, 3, &res) != 0);
	CHECK_CONTAINS(res.why, "'pca'");
	tlcm_run_result_fini(&res);

	unlink(tspc);
	snprintf(bad, sizeof bad, "%s/bad.tspc", dir);
	unlink(bad);
}

int main(void)
{
	char dir[] = "/tmp/tlcm-test-spca-XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	CHECK_INT(tlcm_builtin_nodes(&reg), 0);
	CHECK_INT(tlcm_registry_add(&reg, &featsrc_type), 0);
	CHECK_INT(tlcm_registry_add(&reg, &catch_type), 0);

	hand_computed();
	reference_projection();
	bad_files();
	node_in_graph(dir);

	tlcm_registry_fini(&reg);
	rmdir(dir);
	return tlcm_test_done();
}
