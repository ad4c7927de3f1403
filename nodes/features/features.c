/* features.c — node `features.xnnpack`: frames (FRAM) in, features (FEAT)
 * out, through a model run on XNNPACK.
 *
 * init loads and validates the model (nodes/features/model.h), resolves
 * the embedding and logits outputs and builds the runtime
 * (nodes/features/xnn.h). process() checks a frame against the model
 * input, preprocesses its pixels straight into the next free slot of the
 * batch input buffer and, once `batch` frames are waiting (1 by default:
 * every frame at once), runs them together and emits one Features message
 * per frame, its trace id the frame id. A partial batch runs when no frame
 * came for `batch_wait` (a tick armed by the first waiting frame) and at
 * end of stream; it runs as power-of-two sized pieces so that at most
 * log2(batch) + 1 runtimes exist. Frames that do not fit the model are
 * counted and logged (naming the frame id) and skipped.
 *
 * Hot reload: `model` is a run-time parameter. Setting it (a SetParam
 * control message, e.g. from the `updater` after it swapped the file)
 * runs the waiting frames on the old model, then builds the new one
 * beside it; only when that worked does the node switch. Either way it
 * says so on `events` (ModelEvent Loaded / LoadFailed with the loader's
 * reason): a model that fails to load never stops the node, which keeps
 * running the one it had.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/log.h"
#include "engine/node.h"
#include "fb/features_fb.h"
#include "fb/frame_fb.h"
#include "fb/model_event_fb.h"
#include "nodes/features/features.h"
#include "nodes/features/model.h"
#include "nodes/features/xnn.h"

#define WHY 512
#define LOGGED_BAD 5 /* bad frames logged one by one, then 1 in 1000 */

typedef struct {
	uint64_t id, time_ns;
	int32_t label;
} frame_meta_t;

typedef struct {
	tlcm_model_t *m;
	tlcm_xnn_t *x;
	tlcm_prep_t prep;
	int emb, logits;       /* indices into m->outputs; logits -1: none */
	size_t insz;           /* floats per input tensor */
	size_t batch;          /* frames per run when queued */
	uint64_t wait_ns;      /* how long a partial batch waits */
	tlcm_xnn_batch_t *full; /* the `batch`-sized buffers, filled in place */
	frame_meta_t *meta;    /* per waiting frame */
	size_t pending;
	char *path;            /* the file the running model came from */
	/* counters */
	uint64_t frames, bad, dropped, runs, infer_ns, reloads, reload_failures;
} feat_t;

static const tlcm_port_desc_t inputs[] = {
	{"in", "FRAM", "frames (Gray8 or Rgb8) of the model's input size", 0},
	{0},
};

static const tlcm_port_desc_t outputs[] = {
	{"out", "FEAT", "one Features per frame: embedding, optional logits, "
	 "inference time; trace id = frame id", 0},
	{"events", "MEVT", "after a reload (`model` set while running): "
	 "ModelEvent Loaded, or LoadFailed with the reason (the old model "
	 "keeps running)", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"model", TLCM_P_PATH, NULL, "model file: .tlm, or a float32 .tflite "
	 "(converted at start); setting it while running reloads", 0, 0, NULL,
	 TLCM_PARAM_RUNTIME},
	{"output", TLCM_P_STRING, "embedding", "model output emitted as the "
	 "embedding", 0, 0, NULL, 0},
	{"logits", TLCM_P_STRING, "", "model output emitted as logits; empty: "
	 "none", 0, 0, NULL, 0},
	{"threads", TLCM_P_INT, "1", "XNNPACK threads (pthreadpool)", 1, 64,
	 NULL, 0},
	{"batch", TLCM_P_INT, "1", "most frames run together when frames are "
	 "queued", 1, 256, NULL, 0},
	{"batch_wait", TLCM_P_DURATION, "2ms", "longest a partial batch waits "
	 "for more frames", 0, 1e9, NULL, 0},
	{"scale", TLCM_P_FLOAT, "0", "pixel scale, x = (pixel*scale - mean) / "
	 "std; 0: the model's", 0, 0, NULL, 0},
	{"mean", TLCM_P_LIST, "", "per-channel mean (1 or C values); empty: "
	 "the model's", 0, 0, NULL, 0},
	{"std", TLCM_P_LIST, "", "per-channel std (1 or C values); empty: the "
	 "model's", 0, 0, NULL, 0},
	{0},
};

/* ---- init ---------------------------------------------------------------- */

/* A list parameter of numbers into v (at most cap values). */
static int param_floats(tlcm_ctx_t *ctx, const char *name, float *v,
			size_t cap, size_t *n, char *why, size_t wcap)
{
	const char *const *items;
	*n = tlcm_param_list(ctx, name, &items);
	if (*n > cap)
		return tlcm_fail(why, wcap, TLCM_EINVAL, "%s: %zu values, "
				 "expected 1 or one per channel (at most %zu)",
				 name, *n, cap);
	for (size_t i = 0; i < *n; i++) {
		char *end;
		v[i] = strtof(items[i], &end);
		if (end == items[i] || *end)
			return tlcm_fail(why, wcap, TLCM_EINVAL, "%s[%zu]: "
					 "'%s' is not a number", name, i,
					 items[i]);
	}
	return 0;
}

/* The params' overrides of the model's preprocessing. */
static int setup_prep(tlcm_ctx_t *ctx, feat_t *f, char *why, size_t cap)
{
	float v[TLCM_PREP_MAX_CHANNELS];
	size_t n;
	int rc = tlcm_prep_init(&f->prep, f->m, why, cap);
	double scale = tlcm_param_float(ctx, "scale");
	if (!rc && scale != 0)
		f->prep.scale = (float)scale;
	if (!rc)
		rc = param_floats(ctx, "mean", v, TLCM_PREP_MAX_CHANNELS, &n,
				  why, cap);
	if (!rc && n)
		rc = tlcm_prep_set_mean(&f->prep, v, n, why, cap);
	if (!rc)
		rc = param_floats(ctx, "std", v, TLCM_PREP_MAX_CHANNELS, &n,
				  why, cap);
	if (!rc && n)
		rc = tlcm_prep_set_std(&f->prep, v, n, why, cap);
	return rc;
}

/* Index into m->outputs of the output `name` names; -1 with why set. */
static int find_output(const tlcm_model_t *m, const char *param,
		       const char *name, char *why, size_t cap)
{
	int k = tlcm_model_output_index(m, name);
	if (k >= 0)
		return k;
	char list[256] = "";
	size_t used = 0;
	for (size_t i = 0; i < m->noutputs && used < sizeof list; i++)
		used += (size_t)snprintf(list + used, sizeof list - used,
					 "%s'%s'", i ? ", " : "",
					 m->tensors[m->outputs[i]].name);
	tlcm_fail(why, cap, TLCM_EINVAL, "%s: the model %s has no output '%s'"
		  " (its outputs: %s)", param, m->origin, name, list);
	return -1;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	feat_t *f = st;
	(void)ctx;
	tlcm_xnn_free(f->x);
	tlcm_model_free(f->m);
	free(f->meta);
	free(f->path);
	memset(f, 0, sizeof *f);
}

/* Load the model at path and build everything that runs it into f
 * (zeroed); on failure f holds nothing and why says what went wrong. */
static int build(tlcm_ctx_t *ctx, feat_t *f, const char *path, char *why,
		 size_t cap)
{
	int rc = tlcm_model_load(&f->m, path, why, cap);
	if (rc)
		return rc;
	f->batch = (size_t)tlcm_param_int(ctx, "batch");
	f->wait_ns = tlcm_param_duration_ns(ctx, "batch_wait");
	f->insz = f->m->tensors[f->m->input].size;
	const char *lg = tlcm_param_str(ctx, "logits");
	f->emb = find_output(f->m, "output", tlcm_param_str(ctx, "output"),
			     why, cap);
	f->logits = f->emb >= 0 && lg && *lg
			    ? find_output(f->m, "logits", lg, why, cap) : -1;
	rc = f->emb < 0 || (lg && *lg && f->logits < 0) ? TLCM_EINVAL : 0;
	if (!rc)
		rc = setup_prep(ctx, f, why, cap);
	if (!rc)
		rc = tlcm_xnn_new(&f->x, f->m,
				  (int)tlcm_param_int(ctx, "threads"), why,
				  cap);
	if (!rc)
		rc = tlcm_xnn_batch(f->x, f->batch, &f->full, why, cap);
	if (!rc && (!(f->meta = calloc(f->batch, sizeof *f->meta)) ||
		    !(f->path = strdup(path))))
		rc = tlcm_fail(why, cap, TLCM_ENOMEM, "%s: out of memory",
			       path);
	if (rc)
		fini(ctx, f);
	return rc;
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	feat_t *f = st;
	char why[WHY];
	const char *path = tlcm_param_str(ctx, "model");
	int rc = build(ctx, f, path, why, sizeof why);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", why);
		return rc;
	}
	tlcm_node_log(ctx, TLCM_LOG_INFO, "model %s ('%s'): input %ux%ux%u, "
		      "embedding '%s' (%zu), %zu params, %d threads, batch %zu",
		      path, f->m->name, f->prep.width, f->prep.height,
		      f->prep.channels, f->m->tensors[f->m->outputs[f->emb]].name,
		      f->m->tensors[f->m->outputs[f->emb]].size,
		      tlcm_model_param_count(f->m),
		      (int)tlcm_param_int(ctx, "threads"), f->batch);
	return 0;
}

/* ---- running ------------------------------------------------------------- */

/* One Features message per frame of a run. */
static int emit_one(tlcm_ctx_t *ctx, feat_t *f, const frame_meta_t *fm,
		    const tlcm_xnn_batch_t *b, size_t j, uint64_t ns)
{
	const tlcm_model_t *m = f->m;
	size_t ne = m->tensors[m->outputs[f->emb]].size;
	size_t nl = f->logits >= 0 ? m->tensors[m->outputs[f->logits]].size : 0;
	tlcm_fbb_t fb;
	tlcm_set_trace(ctx, fm->id);
	int rc = tlcm_emit_begin(ctx, 0, &fb, (ne + nl) * sizeof(float) + 128);
	if (rc)
		return rc;
	tlcm_fbb_ref_t emb = tlcm_Features_embedding_create(
		&fb, b->outputs[f->emb] + j * ne, ne);
	tlcm_fbb_ref_t lgt = nl ? tlcm_Features_logits_create(
					  &fb, b->outputs[f->logits] + j * nl, nl)
				: 0;
	tlcm_Features_start(&fb);
	tlcm_Features_add_frame_id(&fb, fm->id);
	tlcm_Features_add_time_ns(&fb, fm->time_ns);
	tlcm_Features_add_embedding(&fb, emb);
	if (lgt)
		tlcm_Features_add_logits(&fb, lgt);
	tlcm_Features_add_label(&fb, fm->label);
	tlcm_Features_add_infer_ns(&fb, ns);
	return tlcm_emit_end(ctx, 0, &fb, tlcm_Features_end(&fb),
			     tlcm_Features_IDENTIFIER);
}

/* Run frames [first, first + k) of the full buffer on the k-frame
 * runtime and emit them. */
static int run_piece(tlcm_ctx_t *ctx, feat_t *f, size_t first, size_t k)
{
	char why[WHY];
	tlcm_xnn_batch_t *b = f->full;
	int rc = 0;
	if (k != f->batch) {
		rc = tlcm_xnn_batch(f->x, k, &b, why, sizeof why);
		if (!rc)
			memcpy(b->input, f->full->input + first * f->insz,
			       k * f->insz * sizeof(float));
	}
	uint64_t t0 = tlcm_now_ns();
	if (!rc)
		rc = tlcm_xnn_run(f->x, b, why, sizeof why);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", why);
		return rc;
	}
	uint64_t ns = tlcm_now_ns() - t0;
	f->runs++;
	f->infer_ns += ns;
	for (size_t j = 0; j < k; j++) {
		rc = emit_one(ctx, f, &f->meta[first + j], b, j, ns / k);
		if (rc == TLCM_EAGAIN) {
			f->dropped++;
		} else if (rc) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "frame %" PRIu64
				      ": cannot emit: %s", f->meta[first + j].id,
				      tlcm_strerror(rc));
			return rc;
		}
	}
	return 0;
}

/* Run every waiting frame: the full batch at once, a partial one in
 * power-of-two pieces. */
static int flush(tlcm_ctx_t *ctx, feat_t *f)
{
	size_t done = 0;
	int rc = 0;
	while (!rc && done < f->pending) {
		size_t left = f->pending - done, k = f->batch;
		if (left < k)
			for (k = 1; k * 2 <= left; k *= 2)
				;
		rc = run_piece(ctx, f, done, k);
		done += k;
	}
	f->pending = 0;
	if (f->batch > 1)
		tlcm_set_tick(ctx, TLCM_TICK_OFF);
	return rc;
}

/* ---- frames -------------------------------------------------------------- */

static void bad_frame(tlcm_ctx_t *ctx, feat_t *f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void bad_frame(tlcm_ctx_t *ctx, feat_t *f, const char *fmt, ...)
{
	f->bad++;
	if (f->bad > LOGGED_BAD && f->bad % 1000)
		return;
	char msg[WHY];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s; skipped (bad frames so far: %"
		      PRIu64 "%s)", msg, f->bad, f->bad == LOGGED_BAD
						     ? "; logging 1 in 1000 "
						       "from now" : "");
}

/* Check a verified frame against the model input; its channels or 0. */
static unsigned frame_fits(tlcm_ctx_t *ctx, feat_t *f, tlcm_Frame_table_t fr)
{
	uint64_t id = tlcm_Frame_id(fr);
	uint32_t w = tlcm_Frame_width(fr), h = tlcm_Frame_height(fr);
	tlcm_PixelFormat_enum_t fmt = tlcm_Frame_format(fr);
	unsigned ch = fmt == tlcm_PixelFormat_Gray8  ? 1
		      : fmt == tlcm_PixelFormat_Rgb8 ? 3 : 0;
	if (!ch) {
		bad_frame(ctx, f, "frame %" PRIu64 ": unknown pixel format %d, "
			  "expected Gray8 or Rgb8", id, (int)fmt);
		return 0;
	}
	if (w != f->prep.width || h != f->prep.height) {
		bad_frame(ctx, f, "frame %" PRIu64 ": %" PRIu32 "x%" PRIu32
			  " %s, the model wants %ux%u", id, w, h,
			  tlcm_PixelFormat_name(fmt), f->prep.width,
			  f->prep.height);
		return 0;
	}
	size_t want = (size_t)w * h * ch;
	if (tlcm_Frame_pixels_len(fr) != want) {
		bad_frame(ctx, f, "frame %" PRIu64 ": %zu pixel bytes, expected "
			  "%zu for %" PRIu32 "x%" PRIu32 " %s", id,
			  tlcm_Frame_pixels_len(fr), want, w, h,
			  tlcm_PixelFormat_name(fmt));
		return 0;
	}
	return ch;
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	feat_t *f = st;
	const void *buf = tlcm_msg_data(m);
	const char *why = NULL;
	(void)port;
	if (tlcm_Frame_verify_as_root(buf, m->size, &why)) {
		bad_frame(ctx, f, "message with trace %" PRIu64 ": not a valid "
			  "Frame: %s", m->trace, why);
		return 0;
	}
	tlcm_Frame_table_t fr = tlcm_Frame_as_root(buf);
	unsigned ch = frame_fits(ctx, f, fr);
	if (!ch)
		return 0;
	f->frames++;
	tlcm_prep_pixels(&f->prep, tlcm_Frame_pixels(fr), ch,
			 f->full->input + f->pending * f->insz);
	f->meta[f->pending++] = (frame_meta_t){tlcm_Frame_id(fr),
					       tlcm_Frame_time_ns(fr),
					       tlcm_Frame_label(fr)};
	if (f->pending == f->batch)
		return flush(ctx, f);
	if (f->pending == 1) /* first of a batch: bound its wait */
		tlcm_set_tick(ctx, f->wait_ns ? f->wait_ns : 1);
	return 0;
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	(void)now;
	return flush(ctx, st);
}

static int eos(tlcm_ctx_t *ctx, void *st)
{
	return flush(ctx, st);
}

/* ---- hot reload ---------------------------------------------------------- */

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ModelEvent on `events`: Loaded or LoadFailed (nobody listening is
 * fine: an unconnected port discards it). */
static void model_event(tlcm_ctx_t *ctx, tlcm_ModelEventKind_enum_t kind,
			const char *path, const char *name, const char *reason)
{
	tlcm_fbb_t b;
	if (tlcm_emit_begin(ctx, 1, &b, 512 + strlen(path) + strlen(name) +
					    strlen(reason)))
		return;
	tlcm_fbb_ref_t p = tlcm_fbb_cstring(&b, path);
	tlcm_fbb_ref_t n = tlcm_fbb_cstring(&b, name);
	tlcm_fbb_ref_t r = tlcm_fbb_cstring(&b, reason);
	bool ok = kind == tlcm_ModelEventKind_Loaded;
	tlcm_fbb_ref_t c = tlcm_fbb_cstring(&b, ok ? "" : "load_failed");
	tlcm_ModelEvent_start(&b);
	tlcm_ModelEvent_add_kind(&b, kind);
	tlcm_ModelEvent_add_model(&b, n);
	tlcm_ModelEvent_add_path(&b, p);
	tlcm_ModelEvent_add_code(&b, c);
	tlcm_ModelEvent_add_reason(&b, r);
	tlcm_ModelEvent_add_time_ns(&b, wall_ns());
	tlcm_emit_end(ctx, 1, &b, tlcm_ModelEvent_end(&b),
		      tlcm_ModelEvent_IDENTIFIER);
}

/* `model` was set: build the new model beside the running one and switch
 * only when it works. Returns 0 when the load fails (the node runs on
 * with the old model and says so), so a bad file never stops a graph. */
static int param_changed(tlcm_ctx_t *ctx, void *st, const char *name)
{
	feat_t *f = st;
	if (strcmp(name, "model"))
		return 0;
	const char *path = tlcm_param_str(ctx, "model");
	/* the frames waiting were prepared for the old model's input */
	int rc = flush(ctx, f);
	if (rc)
		return rc;
	char why[WHY];
	feat_t nf = {0};
	rc = build(ctx, &nf, path, why, sizeof why);
	if (rc) {
		f->reload_failures++;
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "reload: %s; still running "
			      "%s ('%s')", why, f->path, f->m->name);
		model_event(ctx, tlcm_ModelEventKind_LoadFailed, path, "", why);
		return 0;
	}
	nf.frames = f->frames, nf.bad = f->bad, nf.dropped = f->dropped;
	nf.runs = f->runs, nf.infer_ns = f->infer_ns;
	nf.reloads = f->reloads + 1;
	nf.reload_failures = f->reload_failures;
	fini(ctx, f);
	*f = nf;
	tlcm_node_log(ctx, TLCM_LOG_INFO, "reloaded model %s ('%s'): input "
		      "%ux%ux%u, embedding %zu values", path, f->m->name,
		      f->prep.width, f->prep.height, f->prep.channels,
		      f->m->tensors[f->m->outputs[f->emb]].size);
	model_event(ctx, tlcm_ModelEventKind_Loaded, path,
		    f->m->name ? f->m->name : "", "");
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	feat_t *f = st;
	(void)ctx;
	uint64_t ran = f->frames - f->pending;
	char path[600];
	size_t at = 0;
	if (!tlcm_json_str(path, &at, sizeof path - 1, f->path ? f->path : ""))
		at = 0, path[at++] = '"', path[at++] = '"';
	path[at] = 0;
	int w = snprintf(buf, len, "{\"frames\":%" PRIu64 ",\"bad\":%" PRIu64
		 ",\"dropped\":%" PRIu64 ",\"runs\":%" PRIu64 ",\"pending\":%zu"
		 ",\"infer_ns_per_frame\":%" PRIu64 ",\"model\":%s,"
		 "\"reloads\":%" PRIu64 ",\"reload_failures\":%" PRIu64 "}",
		 f->frames, f->bad, f->dropped, f->runs, f->pending,
		 ran ? f->infer_ns / ran : 0, path, f->reloads,
		 f->reload_failures);
	return w < 0 || (size_t)w >= len ? TLCM_ENOSPC : 0;
}

const tlcm_node_type_t tlcm_node_features_xnnpack = {
	.name = "features.xnnpack",
	.doc = "frames to feature vectors with a model run on XNNPACK",
	.inputs = inputs,
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(feat_t),
	.init = init,
	.process = process,
	.tick = tick,
	.eos = eos,
	.param_changed = param_changed,
	.describe = describe,
	.fini = fini,
};
