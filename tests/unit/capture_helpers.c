/* capture_helpers.c — the recording sink, the spy node types and the graph
 * runner, and the PNG/JPEG encoders shared by the capture tests (see
 * capture_helpers.h).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

#include "engine/graph.h"
#include "engine/log.h"
#include "fb/frame_fb.h"
#include "nodes/capture/capture_nodes.h"
#include "nodes/nodes.h"
#include "tests/unit/capture_helpers.h"

cap_record_t cap_rec;

uint32_t cap_fnv1a(const void *data, size_t n)
{
	const uint8_t *p = data;
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

void cap_write_file(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) {
		fprintf(stderr, "FAIL: cannot write %s\n", path);
		exit(1);
	}
}

static void bad(const char *why)
{
	if (!cap_rec.bad++)
		snprintf(cap_rec.bad_why, sizeof cap_rec.bad_why, "%s", why);
}

static int sink_process(tlcm_ctx_t *ctx, void *st, int port,
			const tlcm_msg_t *m)
{
	(void)ctx;
	(void)st;
	(void)port;
	const void *buf = tlcm_msg_data(m);
	const char *why;
	if (memcmp(m->type, tlcm_Frame_IDENTIFIER, 4) != 0) {
		bad("message type is not FRAM");
		return 0;
	}
	if (tlcm_Frame_verify_as_root(buf, m->size, &why)) {
		bad(why);
		return 0;
	}
	tlcm_Frame_table_t t = tlcm_Frame_as_root(buf);
	cap_frame_t f = {
		.id = tlcm_Frame_id(t), .trace = m->trace,
		.time_ns = tlcm_Frame_time_ns(t), .index = tlcm_Frame_index(t),
		.width = tlcm_Frame_width(t), .height = tlcm_Frame_height(t),
		.format = tlcm_Frame_format(t), .label = tlcm_Frame_label(t),
		.label_present = tlcm_Frame_label_is_present(t),
	};
	size_t ch = f.format == tlcm_PixelFormat_Rgb8 ? 3 : 1;
	size_t len = tlcm_Frame_pixels_len(t);
	if (len != (size_t)f.width * f.height * ch)
		bad("pixels length is not width * height * channels");
	if (!f.id || f.id != f.trace)
		bad("frame id is 0 or differs from the message trace id");
	const char *src = tlcm_Frame_source(t);
	snprintf(f.source, sizeof f.source, "%s", src ? src : "");
	const uint8_t *px = tlcm_Frame_pixels(t);
	f.checksum = cap_fnv1a(px, px ? len : 0);
	if (cap_rec.n < cap_rec.max) {
		if (cap_rec.keep_pixels && px) {
			f.pixels = malloc(len ? len : 1);
			if (f.pixels)
				memcpy(f.pixels, px, len);
		}
		cap_rec.frames[cap_rec.n++] = f;
	}
	atomic_fetch_add(&cap_rec.count, 1);
	return 0;
}

static const tlcm_port_desc_t sink_in[] = {
	{"in", "FRAM", "frames to record", 0}, {0}};

static const tlcm_node_type_t sink_type = {
	.name = "capsink", .doc = "records frames (capture tests)",
	.inputs = sink_in, .process = sink_process};

/* spies: the capture node types, saving describe() before fini */
static const tlcm_node_type_t *spied[3];

static void spy_fini(const tlcm_node_type_t *t, tlcm_ctx_t *ctx, void *st)
{
	t->describe(ctx, st, cap_rec.describe, sizeof cap_rec.describe);
	t->fini(ctx, st);
}

static void spy0_fini(tlcm_ctx_t *c, void *s) { spy_fini(spied[0], c, s); }
static void spy1_fini(tlcm_ctx_t *c, void *s) { spy_fini(spied[1], c, s); }
static void spy2_fini(tlcm_ctx_t *c, void *s) { spy_fini(spied[2], c, s); }

static tlcm_node_type_t spies[3];

static void make_spies(void)
{
	static const char *const names[] = {"spy.idx", "spy.images",
					    "spy.v4l2"};
	void (*const finis[])(tlcm_ctx_t *, void *) = {spy0_fini, spy1_fini,
						      spy2_fini};
	spied[0] = &tlcm_node_capture_idx;
	spied[1] = &tlcm_node_capture_images;
	spied[2] = &tlcm_node_capture_v4l2;
	for (int i = 0; i < 3; i++) {
		spies[i] = *spied[i];
		spies[i].name = names[i];
		spies[i].fini = finis[i];
	}
}

void cap_reset(void)
{
	for (size_t i = 0; i < cap_rec.n; i++)
		free(cap_rec.frames[i].pixels);
	free(cap_rec.frames);
	/* field by field: another thread may be polling count (watch) */
	cap_rec.frames = NULL;
	cap_rec.n = 0;
	atomic_store(&cap_rec.count, 0);
	cap_rec.bad = 0;
	cap_rec.bad_why[0] = 0;
	cap_rec.describe[0] = 0;
	cap_rec.log[0] = 0;
}

int cap_run(const char *yaml, double duration_s, tlcm_run_result_t *res)
{
	char path[] = "/tmp/tlcm-capture-XXXXXX.yaml";
	char logp[] = "/tmp/tlcm-capture-log-XXXXXX";
	cap_reset();
	if (!cap_rec.max)
		cap_rec.max = 20000;
	cap_rec.frames = calloc(cap_rec.max, sizeof *cap_rec.frames);
	int fd = mkstemps(path, 5);
	if (fd < 0 || write(fd, yaml, strlen(yaml)) != (ssize_t)strlen(yaml)) {
		fprintf(stderr, "FAIL: cannot write %s\n", path);
		exit(1);
	}
	close(fd);
	if (!spies[0].name)
		make_spies();
	tlcm_registry_t reg = {0};
	tlcm_builtin_nodes(&reg);
	tlcm_registry_add(&reg, &sink_type);
	for (int i = 0; i < 3; i++)
		tlcm_registry_add(&reg, &spies[i]);

	/* the engine logs to fd 2: capture it for the run */
	int lfd = mkstemp(logp);
	fflush(stderr);
	int saved = dup(2);
	dup2(lfd, 2);
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	int rc = tlcm_graph_load(&g, path, &reg, NULL, 0, &d);
	memset(res, 0, sizeof *res);
	if (rc) {
		tlcm_diag_print(&d, stderr);
		rc = -1000;
	} else {
		tlcm_run_opts_t o = {.quiet = true, .headless = true,
				     .duration_s = duration_s};
		rc = tlcm_graph_run(g, &o, res);
		tlcm_graph_free(g);
	}
	tlcm_diag_fini(&d);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	ssize_t k = pread(lfd, cap_rec.log, sizeof cap_rec.log - 1, 0);
	cap_rec.log[k > 0 ? k : 0] = 0;
	close(lfd);
	unlink(logp);
	unlink(path);
	tlcm_registry_fini(&reg);
	if (getenv("CAP_VERBOSE"))
		fputs(cap_rec.log, stderr);
	return rc;
}

/* ---- encoders (libpng, libjpeg) ---------------------------------------- */

uint8_t *cap_png_encode(const uint8_t *px, uint32_t w, uint32_t h,
			   uint32_t format, size_t *len)
{
	png_image img;
	memset(&img, 0, sizeof img);
	img.version = PNG_IMAGE_VERSION;
	img.width = w;
	img.height = h;
	img.format = format;
	size_t cap = (size_t)w * h * 8 + 1024;
	uint8_t *out = malloc(cap);
	*len = cap;
	if (!png_image_write_to_memory(&img, out, len, 0, px, 0, NULL)) {
		fprintf(stderr, "FAIL: png encode: %s\n", img.message);
		exit(1);
	}
	return out;
}

uint8_t *cap_jpeg_encode(const uint8_t *px, uint32_t w, uint32_t h,
			    int channels, size_t *len)
{
	struct jpeg_compress_struct c;
	struct jpeg_error_mgr e;
	c.err = jpeg_std_error(&e);
	jpeg_create_compress(&c);
	unsigned char *out = NULL;
	unsigned long n = 0;
	jpeg_mem_dest(&c, &out, &n);
	c.image_width = w;
	c.image_height = h;
	c.input_components = channels;
	c.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_set_defaults(&c);
	jpeg_set_quality(&c, 95, TRUE);
	jpeg_start_compress(&c, TRUE);
	while (c.next_scanline < h) {
		JSAMPROW r = (JSAMPROW)(px + (size_t)c.next_scanline * w *
					     (size_t)channels);
		jpeg_write_scanlines(&c, &r, 1);
	}
	jpeg_finish_compress(&c);
	jpeg_destroy_compress(&c);
	*len = n;
	return out;
}

/* A smooth test picture (JPEG-friendly): w x h x ch. */
uint8_t *cap_picture(uint32_t w, uint32_t h, int ch, int seed)
{
	uint8_t *p = malloc((size_t)w * h * (size_t)ch);
	for (uint32_t y = 0; y < h; y++)
		for (uint32_t x = 0; x < w; x++)
			for (int c = 0; c < ch; c++)
				p[((size_t)y * w + x) * (size_t)ch +
				  (size_t)c] = (uint8_t)(seed * 20 + x * 3 +
							 y * 2 + c * 40);
	return p;
}

double cap_mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += abs((int)a[i] - (int)b[i]);
	return n ? s / (double)n : 0;
}
