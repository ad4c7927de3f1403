/* idx_node.c — node `capture.idx`: replays an IDX image dataset (MNIST,
 * Fashion-MNIST; raw or gzip) as Frame messages, labels attached.
 *
 * init loads and validates both files (idx.c: read through io_uring,
 * inflated in memory) and builds the order of dataset indices to play:
 * the slice [start, start + count), filtered by class (include/exclude),
 * shuffled with a seeded generator when asked (reshuffled each pass when
 * looping; the same seed gives the same sequence). tick emits frames —
 * flat out (rate_hz 0, a few per call while the outputs have room) or on a
 * schedule at rate_hz, catching up in small bursts — and ends the stream
 * after the last one unless loop is set. Every inconsistency in the files
 * fails the start with a message naming the file.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/log.h"
#include "engine/node.h"
#include "nodes/capture/capture_nodes.h"
#include "nodes/capture/frame.h"
#include "nodes/capture/idx.h"

#define FLAT_OUT_BATCH 8 /* frames per tick at rate_hz 0 */
#define RATE_BURST 64    /* most frames per tick when catching up */

typedef struct {
	tlcm_idx_file_t img, lab;
	bool has_labels, loop, shuffle;
	uint32_t width, height, channels;
	uint32_t *order; /* dataset indices to play, in order */
	size_t n, pos;
	uint64_t pass, emitted, rng;
	double rate;
	uint64_t start_ns, scheduled; /* rate schedule */
	char source[128];
} idx_node_t;

static const tlcm_port_desc_t outputs[] = {
	{"out", "FRAM", "one frame per dataset image", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"images", TLCM_P_PATH, NULL, "IDX images file (raw or .gz): "
	 "count x rows x cols, or count x rows x cols x 1|3", 0, 0, NULL, 0},
	{"labels", TLCM_P_PATH, "", "IDX labels file (raw or .gz), one "
	 "unsigned byte per image; \"\" = no labels (frames carry -1)", 0, 0,
	 NULL, 0},
	{"rate_hz", TLCM_P_FLOAT, "0", "frames per second; 0 = as fast as "
	 "the outputs take them", 0, 1e9, NULL, TLCM_PARAM_RUNTIME},
	{"loop", TLCM_P_BOOL, "false", "start over after the last frame "
	 "instead of ending the stream", 0, 0, NULL, 0},
	{"start", TLCM_P_INT, "0", "first dataset index", 0, 4294967295.0,
	 NULL, 0},
	{"count", TLCM_P_INT, "0", "dataset indices from start; 0 = to the "
	 "end", 0, 4294967295.0, NULL, 0},
	{"include", TLCM_P_LIST, "", "classes to play (label values); empty "
	 "= all; needs labels", 0, 0, NULL, 0},
	{"exclude", TLCM_P_LIST, "", "classes to skip; needs labels", 0, 0,
	 NULL, 0},
	{"shuffle", TLCM_P_BOOL, "false", "play in a random order (seeded, "
	 "new order each pass)", 0, 0, NULL, 0},
	{"seed", TLCM_P_INT, "1", "shuffle seed", 0, 0, NULL, 0},
	{0},
};

static void shuffle(idx_node_t *x)
{
	tlcm_capture_shuffle(x->order, x->n, &x->rng);
}

static void release(idx_node_t *x)
{
	tlcm_idx_file_free(&x->img);
	tlcm_idx_file_free(&x->lab);
	free(x->order);
	x->order = NULL;
}

static int fail(tlcm_ctx_t *ctx, idx_node_t *x, int rc, const char *why)
{
	tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", why);
	release(x);
	return rc;
}

static void set_rate(tlcm_ctx_t *ctx, idx_node_t *x)
{
	x->rate = tlcm_param_float(ctx, "rate_hz");
	x->start_ns = tlcm_now_ns();
	x->scheduled = 0;
	double period = x->rate > 0 ? 1e9 / x->rate : 0;
	if (x->rate > 0 && period < 1e6)
		period = 1e6;
	tlcm_set_tick(ctx, (uint64_t)period);
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	idx_node_t *x = st;
	char why[512];
	const char *ipath = tlcm_param_str(ctx, "images");
	const char *lpath = tlcm_param_str(ctx, "labels");
	x->loop = tlcm_param_bool(ctx, "loop");
	x->shuffle = tlcm_param_bool(ctx, "shuffle");
	x->rng = (uint64_t)tlcm_param_int(ctx, "seed");
	snprintf(x->source, sizeof x->source, "%s",
		 tlcm_capture_basename(ipath));

	int rc = tlcm_idx_file_load(&x->img, ipath, why, sizeof why);
	if (rc)
		return fail(ctx, x, rc, why);
	const tlcm_idx_file_t *im = &x->img;
	if (im->type != 0x08) {
		snprintf(why, sizeof why, "%s: element type 0x%02x; images "
			 "must be unsigned bytes (0x08)", ipath, im->type);
		return fail(ctx, x, TLCM_EBADMSG, why);
	}
	if (!(im->ndims == 3 ||
	      (im->ndims == 4 && (im->dims[3] == 1 || im->dims[3] == 3)))) {
		char dims[64];
		tlcm_idx_file_dims(im, dims, sizeof dims);
		snprintf(why, sizeof why, "%s: items of %s; images must be "
			 "rows x cols (3 dimensions) or rows x cols x 1|3 (4 "
			 "dimensions)", ipath, dims);
		return fail(ctx, x, TLCM_EBADMSG, why);
	}
	x->height = im->dims[1];
	x->width = im->dims[2];
	x->channels = im->ndims == 4 ? im->dims[3] : 1;
	if (!im->count) {
		snprintf(why, sizeof why, "%s: holds no images", ipath);
		return fail(ctx, x, TLCM_EBADMSG, why);
	}

	x->has_labels = lpath && *lpath;
	if (x->has_labels) {
		if ((rc = tlcm_idx_file_load(&x->lab, lpath, why, sizeof why)))
			return fail(ctx, x, rc, why);
		if (x->lab.type != 0x08 || x->lab.ndims != 1) {
			char dims[64];
			tlcm_idx_file_dims(&x->lab, dims, sizeof dims);
			snprintf(why, sizeof why, "%s: %u dimensions of type "
				 "0x%02x; labels must be one unsigned byte "
				 "(0x08) per image, 1 dimension",
				 lpath, x->lab.ndims, x->lab.type);
			return fail(ctx, x, TLCM_EBADMSG, why);
		}
		if (x->lab.count != im->count) {
			snprintf(why, sizeof why, "%s has %zu labels but %s "
				 "has %zu images", lpath, x->lab.count, ipath,
				 im->count);
			return fail(ctx, x, TLCM_EBADMSG, why);
		}
	}

	bool inc[256] = {0}, exc[256] = {0};
	size_t ninc, nexc;
	if ((rc = tlcm_capture_class_list(ctx, "include", inc, &ninc)) ||
	    (rc = tlcm_capture_class_list(ctx, "exclude", exc, &nexc))) {
		release(x);
		return rc;
	}
	if ((ninc || nexc) && !x->has_labels)
		return fail(ctx, x, TLCM_EINVAL, "include/exclude filter by "
			    "class, which needs a labels file (param labels)");

	uint64_t start = (uint64_t)tlcm_param_int(ctx, "start");
	uint64_t count = (uint64_t)tlcm_param_int(ctx, "count");
	if (start >= im->count) {
		snprintf(why, sizeof why, "start %" PRIu64 " is past the last "
			 "image of %s (it has %zu)", start, ipath, im->count);
		return fail(ctx, x, TLCM_EINVAL, why);
	}
	if (!count)
		count = im->count - start;
	if (start + count > im->count) {
		snprintf(why, sizeof why, "start %" PRIu64 " + count %" PRIu64
			 " runs past the end of %s (it has %zu images)", start,
			 count, ipath, im->count);
		return fail(ctx, x, TLCM_EINVAL, why);
	}
	x->order = malloc((size_t)count * sizeof *x->order);
	if (!x->order)
		return fail(ctx, x, TLCM_ENOMEM, "out of memory");
	for (uint64_t i = start; i < start + count; i++) {
		if (x->has_labels) {
			uint8_t l = x->lab.items[i];
			if ((ninc && !inc[l]) || exc[l])
				continue;
		}
		x->order[x->n++] = (uint32_t)i;
	}
	if (!x->n) {
		snprintf(why, sizeof why, "no image of %s in [%" PRIu64 ", %"
			 PRIu64 ") has a class that include/exclude let "
			 "through", ipath, start, start + count);
		return fail(ctx, x, TLCM_EINVAL, why);
	}
	if (x->shuffle)
		shuffle(x);
	tlcm_node_log(ctx, TLCM_LOG_INFO, "%s: %zu images %ux%u%s%s, "
		      "playing %zu", ipath, im->count, (unsigned)x->height,
		      (unsigned)x->width, x->channels == 3 ? " RGB" : " gray",
		      x->has_labels ? ", with labels" : "", x->n);
	set_rate(ctx, x);
	return 0;
}

static int emit_one(tlcm_ctx_t *ctx, idx_node_t *x)
{
	uint32_t i = x->order[x->pos++];
	tlcm_capture_frame_t f = {
		.width = x->width, .height = x->height,
		.channels = x->channels,
		.pixels = x->img.items + (size_t)i * x->img.item_size,
		.label = x->has_labels ? x->lab.items[i] : -1,
		.source = x->source, .index = i,
	};
	int rc = tlcm_capture_emit(ctx, 0, &f, NULL);
	if (!rc)
		x->emitted++;
	return rc;
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	idx_node_t *x = st;
	uint64_t n = FLAT_OUT_BATCH;
	if (x->rate > 0) {
		if (!x->scheduled) /* the schedule starts with the first */
			x->start_ns = now;
		double due = (double)(now - x->start_ns) / 1e9 * x->rate + 1;
		n = due > (double)x->scheduled ? (uint64_t)due - x->scheduled
					       : 0;
		if (n > RATE_BURST)
			n = RATE_BURST;
		x->scheduled += n;
	}
	for (uint64_t k = 0; k < n; k++) {
		if (x->pos == x->n) {
			if (!x->loop)
				return TLCM_ECLOSED;
			x->pos = 0;
			x->pass++;
			if (x->shuffle)
				shuffle(x);
		}
		int rc = emit_one(ctx, x);
		if (rc)
			return rc;
	}
	return !x->loop && x->pos == x->n ? TLCM_ECLOSED : 0;
}

static int param_changed(tlcm_ctx_t *ctx, void *st, const char *name)
{
	(void)name; /* only rate_hz can change */
	set_rate(ctx, st);
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	idx_node_t *x = st;
	char src[256];
	(void)ctx;
	tlcm_capture_json_escape(src, sizeof src, x->source);
	snprintf(buf, len, "{\"source\":\"%s\",\"images\":%zu,"
		 "\"playing\":%zu,\"position\":%zu,\"pass\":%" PRIu64
		 ",\"emitted\":%" PRIu64 "}", src, x->img.count, x->n, x->pos,
		 x->pass, x->emitted);
	return 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	(void)ctx;
	release(st);
}

const tlcm_node_type_t tlcm_node_capture_idx = {
	.name = "capture.idx",
	.doc = "replay an IDX image dataset (e.g. Fashion-MNIST, gzip) as "
	       "frames with labels",
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(idx_node_t),
	.init = init,
	.tick = tick,
	.param_changed = param_changed,
	.describe = describe,
	.fini = fini,
};
