/* test_model_features.c — the features.xnnpack node in a running graph.
 *
 * A test source emits Frame messages (some of them bad: wrong size,
 * wrong byte count, not a Frame at all) into features.xnnpack; a test
 * checker receives the Features and compares each with the plain-C
 * reference run on the same pixels, preprocessed independently here
 * (double precision, gray<->RGB conversion written out): embedding and
 * logits within 1e-4 relative, frame id = trace id, label and capture
 * time carried, every good frame exactly once and in order, bad frames
 * skipped while the graph runs on. Runs with batch 1 and with batches of
 * 4 on 2 threads (37 frames, so partial batches happen), with the
 * model's preprocessing and with the node's overrides, gray frames into
 * an RGB model and RGB frames into a gray one; then start-up errors.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/graph.h"
#include "engine/log.h"
#include "engine/sched.h"
#include "fb/features_fb.h"
#include "fb/frame_fb.h"
#include "nodes/nodes.h"
#include "tests/tlcm_test.h"
#include "tests/unit/model_build.h"
#include "tests/unit/ref_ops.h"

#define SIDE 12
#define FIRST_ID 1000

#define SHAPE(...)                                                      \
	(int32_t[]){__VA_ARGS__},                                       \
		(int)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

/* What the checker expects in the current run. */
static struct {
	tlcm_model_t *m;
	unsigned frame_channels;
	float scale, mean[3], std[3];
	bool logits;
	uint64_t received, last_id, mismatches, bad_meta;
} want;

static uint8_t pixel(uint64_t i, size_t p)
{
	return (uint8_t)((i * 7 + p * 13 + p * p) % 256);
}

/* ---- test.frames: a source of good and bad frames ------------------------ */

typedef struct {
	uint64_t i, count, bad_every;
	unsigned ch;
} frames_t;

static const tlcm_port_desc_t frames_out[] = {
	{"out", "FRAM", "frames", 0}, {0}};
static const tlcm_param_desc_t frames_params[] = {
	{"count", TLCM_P_INT, "10", "frames", 0, 1e9, NULL, 0},
	{"bad_every", TLCM_P_INT, "0", "every n-th message is bad", 0, 1e9,
	 NULL, 0},
	{"format", TLCM_P_ENUM, "gray", "pixel format", 0, 0, "gray|rgb", 0},
	{0},
};

static int frames_init(tlcm_ctx_t *ctx, void *st)
{
	frames_t *f = st;
	f->count = (uint64_t)tlcm_param_int(ctx, "count");
	f->bad_every = (uint64_t)tlcm_param_int(ctx, "bad_every");
	f->ch = strcmp(tlcm_param_str(ctx, "format"), "rgb") ? 1 : 3;
	tlcm_set_tick(ctx, 0);
	return 0;
}

/* Frame i of the test (good), or one of three kinds of bad message. */
static int emit_frame(tlcm_ctx_t *ctx, frames_t *f, uint64_t id, int bad)
{
	uint8_t px[(SIDE + 1) * SIDE * 3];
	unsigned w = bad == 1 ? SIDE + 1 : SIDE;
	size_t n = (size_t)w * SIDE * f->ch - (bad == 2 ? 5 : 0);
	for (size_t p = 0; p < n; p++)
		px[p] = pixel(id, p);
	if (bad == 3) /* not a Frame */
		return tlcm_emit(ctx, 0, "FRAM", px, 20);
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, 0, &b, n + 256);
	if (rc)
		return rc;
	tlcm_fbb_ref_t pv = tlcm_Frame_pixels_create(&b, px, n);
	tlcm_Frame_start(&b);
	tlcm_Frame_add_id(&b, id);
	tlcm_Frame_add_time_ns(&b, id * 3);
	tlcm_Frame_add_width(&b, w);
	tlcm_Frame_add_height(&b, SIDE);
	tlcm_Frame_add_format(&b, f->ch == 3 ? tlcm_PixelFormat_Rgb8
					     : tlcm_PixelFormat_Gray8);
	tlcm_Frame_add_pixels(&b, pv);
	tlcm_Frame_add_label(&b, (int32_t)(id % 10));
	return tlcm_emit_end(ctx, 0, &b, tlcm_Frame_end(&b),
			     tlcm_Frame_IDENTIFIER);
}

static int frames_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	frames_t *f = st;
	(void)now;
	if (f->i == f->count)
		return TLCM_ECLOSED;
	uint64_t id = FIRST_ID + f->i++;
	int bad = f->bad_every && f->i % f->bad_every == 0
			  ? (int)(f->i / f->bad_every % 3) + 1 : 0;
	tlcm_set_trace(ctx, id);
	return emit_frame(ctx, f, id, bad);
}

static const tlcm_node_type_t frames_type = {
	.name = "test.frames", .doc = "test frames", .outputs = frames_out,
	.params = frames_params, .state_size = sizeof(frames_t),
	.init = frames_init, .tick = frames_tick};

/* ---- test.check: Features against the reference -------------------------- */

static const tlcm_port_desc_t check_in[] = {{"in", "FEAT", "features", 0},
					    {0}};

/* The model input for frame id, computed independently of model.c. */
static void expected_input(uint64_t id, float *x)
{
	unsigned mc = (unsigned)want.m->tensors[want.m->input].shape[3];
	for (size_t p = 0; p < SIDE * SIDE; p++)
		for (unsigned c = 0; c < mc; c++) {
			double v;
			if (want.frame_channels == mc)
				v = pixel(id, p * mc + c);
			else if (want.frame_channels == 1)
				v = pixel(id, p);
			else
				v = 0.299 * pixel(id, p * 3) +
				    0.587 * pixel(id, p * 3 + 1) +
				    0.114 * pixel(id, p * 3 + 2);
			x[p * mc + c] = (float)((v * want.scale - want.mean[c]) /
						want.std[c]);
		}
}

static void compare(const char *what, const float *got, size_t n,
		    const float *ref)
{
	for (size_t i = 0; i < n; i++)
		if (!(fabs(got[i] - ref[i]) <= 1e-4 * fmax(1, fabs(ref[i])))) {
			if (want.mismatches++ < 5)
				fprintf(stderr, "%s[%zu]: %.9g, reference %.9g\n",
					what, i, got[i], ref[i]);
		}
}

static int check_process(tlcm_ctx_t *ctx, void *st, int port,
			 const tlcm_msg_t *m)
{
	const char *why;
	(void)st, (void)port;
	const void *buf = tlcm_msg_data(m);
	if (tlcm_Features_verify_as_root(buf, m->size, &why)) {
		want.bad_meta++;
		return 0;
	}
	tlcm_Features_table_t f = tlcm_Features_as_root(buf);
	uint64_t id = tlcm_Features_frame_id(f);
	want.received++;
	if (id <= want.last_id || tlcm_trace(ctx) != id ||
	    tlcm_Features_label(f) != (int32_t)(id % 10) ||
	    tlcm_Features_time_ns(f) != id * 3 ||
	    tlcm_Features_logits_is_present(f) != want.logits) {
		if (want.bad_meta++ < 5)
			fprintf(stderr, "frame %" PRIu64 ": trace %" PRIu64
				", label %d, time %" PRIu64 ", logits %d\n", id,
				tlcm_trace(ctx), (int)tlcm_Features_label(f),
				tlcm_Features_time_ns(f),
				tlcm_Features_logits_is_present(f));
	}
	want.last_id = id;
	const tlcm_model_t *md = want.m;
	float x[SIDE * SIDE * 3], emb[64], lg[64];
	float *outs[2] = {emb, lg};
	expected_input(id, x);
	tlcm_ref_run(md, 1, x, outs);
	size_t ne = md->tensors[md->outputs[0]].size;
	size_t nl = md->tensors[md->outputs[1]].size;
	if (tlcm_Features_embedding_len(f) != ne ||
	    (want.logits && tlcm_Features_logits_len(f) != nl)) {
		want.mismatches++;
		return 0;
	}
	compare("embedding", tlcm_Features_embedding(f), ne, emb);
	if (want.logits)
		compare("logits", tlcm_Features_logits(f), nl, lg);
	return 0;
}

static const tlcm_node_type_t check_type = {
	.name = "test.check", .doc = "check features", .inputs = check_in,
	.process = check_process};

/* ---- the model ------------------------------------------------------------ */

/* [1,12,12,C] -> conv 3x3/2 relu -> [1,5,5,8] -> GAP "embedding" [1,8]
 * -> FC "logits" [1,4]; preprocessing scale 1/255, mean 0.5, std 0.25. */
static char *write_model(unsigned channels)
{
	static char path[64];
	tlcm_mb_t *b = tlcm_mb_new("feat-test");
	float w[8 * 3 * 3 * 3], bias[8], fw[4 * 8], fb[4];
	for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
		w[i] = (float)((int)(i * 37 % 17) - 8) / 20;
	for (size_t i = 0; i < 8; i++)
		bias[i] = (float)i / 10 - 0.3f;
	for (size_t i = 0; i < 32; i++)
		fw[i] = (float)((int)(i * 11 % 13) - 6) / 7;
	for (size_t i = 0; i < 4; i++)
		fb[i] = (float)i;
	int c = (int)channels;
	int x = tlcm_mb_tensor(b, "image", SHAPE(1, SIDE, SIDE, c), NULL);
	int k = tlcm_mb_tensor(b, "conv.w", SHAPE(8, 3, 3, c), w);
	int kb = tlcm_mb_tensor(b, "conv.b", SHAPE(8), bias);
	int y = tlcm_mb_tensor(b, "conv", SHAPE(1, 5, 5, 8), NULL);
	int e = tlcm_mb_tensor(b, "embedding", SHAPE(1, 8), NULL);
	int f = tlcm_mb_tensor(b, "fc.w", SHAPE(4, 8), fw);
	int fbi = tlcm_mb_tensor(b, "fc.b", SHAPE(4), fb);
	int l = tlcm_mb_tensor(b, "logits", SHAPE(1, 4), NULL);
	tlcm_op_t o = tlcm_mb_op(tlcm_OpType_Conv2D, x, k, kb, y);
	o.stride_h = o.stride_w = 2;
	o.activation = tlcm_Activation_Relu;
	tlcm_mb_add_op(b, &o);
	o = tlcm_mb_op(tlcm_OpType_GlobalAveragePool, y, -1, -1, e);
	tlcm_mb_add_op(b, &o);
	o = tlcm_mb_op(tlcm_OpType_FullyConnected, e, f, fbi, l);
	tlcm_mb_add_op(b, &o);
	int outs[2] = {e, l};
	tlcm_mb_io(b, x, outs, 2);
	float mean = 0.5f, std = 0.25f;
	tlcm_mb_prep(b, 1.0f / 255, &mean, 1, &std, 1);
	size_t len;
	void *buf = tlcm_mb_finish(b, &len);
	snprintf(path, sizeof path, "/tmp/tlcm-feat-%d-%u.tlm", (int)getpid(),
		 channels);
	FILE *fp = fopen(path, "wb");
	CHECK(fp && fwrite(buf, 1, len, fp) == len);
	if (fp)
		fclose(fp);
	free(buf);
	return path;
}

/* ---- running graphs ------------------------------------------------------- */

static tlcm_registry_t reg;

static int run_graph(const char *params, const char *src_params,
		     tlcm_run_result_t *res)
{
	char yaml[2048], path[] = "/tmp/tlcm-feat-XXXXXX.yaml";
	snprintf(yaml, sizeof yaml,
		 "graph: feat\n"
		 "nodes:\n"
		 "  src: { type: test.frames, params: { %s } }\n"
		 "  feat: { type: features.xnnpack, params: { %s } }\n"
		 "  chk: { type: test.check }\n"
		 "edges:\n"
		 "  - { from: src.out, to: feat.in }\n"
		 "  - { from: feat.out, to: chk.in }\n",
		 src_params, params);
	int fd = mkstemps(path, 5);
	CHECK(fd >= 0 && write(fd, yaml, strlen(yaml)) == (ssize_t)strlen(yaml));
	close(fd);
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	int rc = tlcm_graph_load(&g, path, &reg, NULL, 0, &d);
	unlink(path);
	if (rc) {
		tlcm_diag_print(&d, stderr);
		tlcm_diag_fini(&d);
		return rc;
	}
	tlcm_run_opts_t o = {.quiet = true, .headless = true};
	rc = tlcm_graph_run(g, &o, res);
	tlcm_graph_free(g);
	return rc;
}

/* One run: `count` frames (every 5th bad when bad) through the node. */
static void run_case(const char *what, const char *model_path,
		     unsigned frame_ch, const char *extra,
		     bool logits, bool bad)
{
	char why[512], params[512], src[128];
	uint64_t count = 37, nbad = bad ? count / 5 : 0;
	memset(&want, 0, sizeof want);
	CHECK_INT(tlcm_model_load(&want.m, model_path, why, sizeof why), 0);
	want.frame_channels = frame_ch;
	want.logits = logits;
	want.scale = 1.0f / 255;
	for (int c = 0; c < 3; c++) {
		want.mean[c] = 0.5f;
		want.std[c] = 0.25f;
	}
	if (strstr(extra, "scale")) { /* the override case */
		want.scale = 0.01f;
		want.mean[0] = 0.1f, want.mean[1] = 0.2f, want.mean[2] = 0.3f;
		want.std[0] = want.std[1] = want.std[2] = 2;
	}
	snprintf(params, sizeof params, "model: %s, %s%s", model_path,
		 logits ? "logits: logits, " : "", extra);
	snprintf(src, sizeof src, "count: %" PRIu64 ", bad_every: %d, "
		 "format: %s", count, bad ? 5 : 0, frame_ch == 3 ? "rgb"
								 : "gray");
	tlcm_run_result_t res;
	int rc = run_graph(params, src, &res);
	tlcm_test_checks++;
	if (rc)
		TLCM__FAIL("%s: graph failed: %s", what, res.why);
	CHECK_UINT(want.received, count - nbad);
	CHECK_UINT(want.mismatches, 0);
	CHECK_UINT(want.bad_meta, 0);
	CHECK_UINT(want.last_id, FIRST_ID + count - 1 - (bad && count % 5 == 0));
	if (!rc)
		CHECK_UINT(res.nodes[1].in, count);
	fprintf(stderr, "%-40s %" PRIu64 " features, %" PRIu64 " bad frames "
		"skipped\n", what, want.received, nbad);
	tlcm_run_result_fini(&res);
	tlcm_model_free(want.m);
	want.m = NULL;
}

static void start_errors(const char *gray)
{
	char params[256];
	tlcm_run_result_t res;
	const char *cases[][2] = { /* model param, then the rest */
		{"/nonexistent/x.tlm", "missing model"},
		{gray, "output: nope"},
		{gray, "logits: nope"},
		{gray, "std: \"1,0\""},
		{gray, "mean: \"a\""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(params, sizeof params, "model: %s, %s", cases[i][0],
			 i ? cases[i][1] : "batch: 1");
		int rc = run_graph(params, "count: 3", &res);
		tlcm_test_checks++;
		if (rc == 0)
			TLCM__FAIL("%s: the graph ran", params);
		else
			fprintf(stderr, "%-40s refused: %s\n", params,
				res.why);
		CHECK_CONTAINS(res.why, "feat");
		tlcm_run_result_fini(&res);
	}
}

int main(void)
{
	tlcm_log_level = TLCM_LOG_ERROR; /* bad frames are logged: expected */
	tlcm_builtin_nodes(&reg);
	tlcm_registry_add(&reg, &frames_type);
	tlcm_registry_add(&reg, &check_type);
	char gray[64], rgb[64];
	snprintf(gray, sizeof gray, "%s", write_model(1));
	snprintf(rgb, sizeof rgb, "%s", write_model(3));
	run_case("gray, batch 1", gray, 1, "batch: 1", true, true);
	run_case("gray, batch 4, 2 threads", gray, 1,
		 "batch: 4, threads: 2", true, true);
	run_case("gray, no logits, batch 3", gray, 1, "batch: 3", false,
		 false);
	run_case("gray, param overrides", gray, 1,
		 "scale: 0.01, mean: \"0.1\", std: \"2\"", true, false);
	run_case("gray frames into an RGB model", rgb, 1, "batch: 2", true,
		 true);
	run_case("RGB frames into a gray model", gray, 3, "batch: 1", true,
		 false);
	run_case("RGB model, per-channel overrides", rgb, 3,
		 "scale: 0.01, mean: \"0.1,0.2,0.3\", std: \"2,2,2\"", true,
		 false);
	start_errors(gray);
	unlink(gray);
	unlink(rgb);
	tlcm_registry_fini(&reg);
	return tlcm_test_done();
}
