/* images_node.c — node `capture.images`: a directory of PNG/JPEG files as
 * Frame messages, in name order, optionally watching for new files.
 *
 * init checks the directory, lists the image-named entries (by extension;
 * hidden names are ignored) sorted bytewise, and with watch: true sets an
 * inotify watch first (IN_CLOSE_WRITE, IN_MOVED_TO: files appear once
 * written and closed, or renamed in). tick takes the next name, reads the
 * file through engine/io.h, decodes it (decode.c), converts and resizes it
 * (image.c) and emits it. A file that cannot be read or decoded is skipped:
 * counted, logged with its name and the reason (when looping, on the first
 * pass only), and the next one is tried, so the graph keeps running; a
 * whole pass without a readable file ends the stream. At the end of the
 * list the stream
 * ends, or the directory is listed again (loop), or the node waits for new
 * files (watch), polling inotify every `poll` while idle.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/io.h"
#include "engine/log.h"
#include "engine/node.h"
#include "nodes/capture/capture_nodes.h"
#include "nodes/capture/decode.h"
#include "nodes/capture/frame.h"
#include "nodes/capture/image.h"

#define TRIES_PER_TICK 32 /* bad files skipped in one tick, at most */
#define RATE_BURST 16

typedef struct {
	char *dir;       /* owned copy of the param */
	bool watch, loop;
	tlcm_image_shape_t shape;
	size_t max_file;
	char **names; /* queue: names still to read (owned) */
	size_t n, cap, pos;
	uint64_t index;  /* directory position of the next listed name */
	uint64_t pass, emitted, errors, pass_emitted;
	int ifd;         /* inotify, -1 when not watching */
	bool dir_gone, idle;
	double rate;
	uint64_t start_ns, scheduled, poll_ns;
	tlcm_image_t raw, out, tmp;
	char last_error[640];
} images_t;

static const tlcm_port_desc_t outputs[] = {
	{"out", "FRAM", "one frame per image file", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"dir", TLCM_P_PATH, NULL, "directory of .png/.jpg/.jpeg files", 0, 0,
	 NULL, 0},
	{"watch", TLCM_P_BOOL, "false", "after the files present at start, "
	 "emit files written (closed) or moved into the directory; never "
	 "ends", 0, 0, NULL, 0},
	{"existing", TLCM_P_BOOL, "true", "emit the files present at start "
	 "(false with watch: only new ones)", 0, 0, NULL, 0},
	{"loop", TLCM_P_BOOL, "false", "list the directory again after the "
	 "last file (not with watch)", 0, 0, NULL, 0},
	{"width", TLCM_P_INT, "0", "output width; 0 = the image's (or from "
	 "height, keeping the aspect ratio)", 0, 16384, NULL, 0},
	{"height", TLCM_P_INT, "0", "output height; 0 = the image's (or from "
	 "width, keeping the aspect ratio)", 0, 16384, NULL, 0},
	{"resize", TLCM_P_ENUM, "stretch", "stretch: to width x height; "
	 "crop: cover, then centre crop; fit: inside, padded with black", 0,
	 0, TLCM_RESIZE_CHOICES, 0},
	{"format", TLCM_P_ENUM, "rgb", "output pixels: gray (BT.601 luma) or "
	 "rgb", 0, 0, "gray|rgb", 0},
	{"rate_hz", TLCM_P_FLOAT, "0", "frames per second; 0 = as fast as "
	 "the outputs take them", 0, 1e6, NULL, 0},
	{"max_file_size", TLCM_P_SIZE, "64MiB", "larger files are skipped "
	 "(counted error)", 1, 4294967296.0, NULL, 0},
	{"poll", TLCM_P_DURATION, "50ms", "watch: how often to look for new "
	 "files while idle", 1e6, 6e10, NULL, 0},
	{0},
};

static bool image_name(const char *name)
{
	static const char *const ext[] = {"png", "jpg", "jpeg", "jpe", "jfif",
					  "bmp", "gif", "tif", "tiff", "webp",
					  "pgm", "ppm", "pnm"};
	const char *dot = strrchr(name, '.');
	if (name[0] == '.' || !dot)
		return false;
	for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
		if (!strcasecmp(dot + 1, ext[i]))
			return true;
	return false;
}

static int push(images_t *s, const char *name)
{
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 64;
		char **p = realloc(s->names, nc * sizeof *p);
		if (!p)
			return TLCM_ENOMEM;
		s->names = p;
		s->cap = nc;
	}
	if (!(s->names[s->n] = strdup(name)))
		return TLCM_ENOMEM;
	s->n++;
	return 0;
}

static void clear_queue(images_t *s)
{
	for (size_t i = s->pos; i < s->n; i++)
		free(s->names[i]);
	s->n = s->pos = 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* List the directory into the (empty) queue, sorted. */
static int scan(tlcm_ctx_t *ctx, images_t *s)
{
	DIR *d = opendir(s->dir);
	if (!d) {
		int e = errno;
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot open directory %s: "
			      "%s", s->dir, strerror(e));
		return tlcm_io_errno(-e);
	}
	clear_queue(s);
	struct dirent *e;
	int rc = 0;
	while (!rc && (e = readdir(d)))
		if (image_name(e->d_name))
			rc = push(s, e->d_name);
	closedir(d);
	if (!rc && s->n)
		qsort(s->names, s->n, sizeof *s->names, cmp_names);
	s->index = 0;
	return rc;
}

static void skip(tlcm_ctx_t *ctx, images_t *s, const char *name,
		 const char *why)
{
	s->errors++;
	snprintf(s->last_error, sizeof s->last_error, "%s: %s", name, why);
	/* looping: each bad file is logged on the first pass only */
	if (!s->pass || tlcm_log_level >= TLCM_LOG_DEBUG)
		tlcm_node_log(ctx, s->pass ? TLCM_LOG_DEBUG : TLCM_LOG_ERROR,
			      "skipping %s/%s: %s", s->dir, name, why);
}

/* Read, decode, shape and emit one file. 0 emitted, 1 skipped (counted),
 * < 0 fatal. */
static int one_file(tlcm_ctx_t *ctx, images_t *s, const char *name,
		    uint64_t index)
{
	char path[PATH_MAX], why[300];
	if (snprintf(path, sizeof path, "%s/%s", s->dir, name) >=
	    (int)sizeof path) {
		skip(ctx, s, name, "path too long");
		return 1;
	}
	void *data;
	size_t len;
	uint64_t t = tlcm_capture_realtime_ns();
	int rc = tlcm_io_read_file(path, s->max_file, &data, &len);
	if (rc) {
		struct stat st;
		if (rc == TLCM_ENOENT)
			skip(ctx, s, name, "no such file (removed, or a "
			     "dangling link)");
		else if (rc == TLCM_ETOOBIG) {
			snprintf(why, sizeof why, "larger than max_file_size "
				 "(%zu bytes)", s->max_file);
			skip(ctx, s, name, why);
		} else if (rc == TLCM_EINVAL && !stat(path, &st) &&
			 S_ISDIR(st.st_mode))
			skip(ctx, s, name, "a directory, not an image file");
		else if (rc == TLCM_EINVAL)
			skip(ctx, s, name, "not a regular file");
		else
			skip(ctx, s, name, tlcm_strerror(rc));
		return 1;
	}
	rc = tlcm_image_decode(data, len, &s->raw, why, sizeof why);
	free(data);
	if (rc == TLCM_ENOMEM)
		return rc;
	if (rc) {
		skip(ctx, s, name, why);
		return 1;
	}
	if ((rc = tlcm_image_reshape(&s->raw, &s->shape, &s->out, &s->tmp))) {
		if (rc == TLCM_ENOMEM)
			return rc;
		snprintf(why, sizeof why, "cannot resize %ux%u to the output: "
			 "%s", (unsigned)s->raw.width, (unsigned)s->raw.height,
			 tlcm_strerror(rc));
		skip(ctx, s, name, why);
		return 1;
	}
	tlcm_capture_frame_t f = {
		.width = s->out.width, .height = s->out.height,
		.channels = s->out.channels, .pixels = s->out.data,
		.label = -1, .source = name, .index = index, .time_ns = t,
	};
	if ((rc = tlcm_capture_emit(ctx, 0, &f, NULL)))
		return rc;
	s->emitted++;
	s->pass_emitted++;
	return 0;
}

/* Queue the files inotify reports; 0 or < 0. */
static int read_events(tlcm_ctx_t *ctx, images_t *s)
{
	char buf[8192]
		__attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t k = read(s->ifd, buf, sizeof buf);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN)
			return 0;
		if (k <= 0) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "inotify on %s: %s",
				      s->dir, k ? strerror(errno) : "EOF");
			return TLCM_EIO;
		}
		for (char *p = buf; p < buf + k;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			p += sizeof *ev + ev->len;
			if (ev->mask & IN_Q_OVERFLOW)
				tlcm_node_log(ctx, TLCM_LOG_WARN, "inotify "
					      "queue overflowed: new files in "
					      "%s were missed", s->dir);
			if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF |
					IN_IGNORED)) {
				if (!s->dir_gone)
					tlcm_node_log(ctx, TLCM_LOG_ERROR,
						      "watched directory %s "
						      "was removed or moved; "
						      "ending the stream",
						      s->dir);
				s->dir_gone = true;
			}
			if ((ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) &&
			    !(ev->mask & IN_ISDIR) && ev->len &&
			    image_name(ev->name)) {
				if (s->pos == s->n)
					clear_queue(s);
				int rc = push(s, ev->name);
				if (rc)
					return rc;
			}
		}
	}
}

static void set_idle(tlcm_ctx_t *ctx, images_t *s, bool idle)
{
	if (s->rate > 0 || idle == s->idle)
		return; /* the rate's period serves as the poll too */
	s->idle = idle;
	tlcm_set_tick(ctx, idle ? s->poll_ns : 0);
}

static void release(images_t *s)
{
	clear_queue(s);
	free(s->names);
	s->names = NULL;
	s->cap = 0;
	if (s->ifd >= 0)
		close(s->ifd);
	s->ifd = -1;
	tlcm_image_free(&s->raw);
	tlcm_image_free(&s->out);
	tlcm_image_free(&s->tmp);
	free(s->dir);
	s->dir = NULL;
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	images_t *s = st;
	s->ifd = -1;
	const char *dir = tlcm_param_str(ctx, "dir");
	s->watch = tlcm_param_bool(ctx, "watch");
	s->loop = tlcm_param_bool(ctx, "loop");
	s->shape.width = (uint32_t)tlcm_param_int(ctx, "width");
	s->shape.height = (uint32_t)tlcm_param_int(ctx, "height");
	s->shape.mode = tlcm_resize_parse(tlcm_param_str(ctx, "resize"));
	s->shape.channels = !strcmp(tlcm_param_str(ctx, "format"), "gray")
				    ? 1 : 3;
	s->max_file = (size_t)tlcm_param_size(ctx, "max_file_size");
	s->poll_ns = tlcm_param_duration_ns(ctx, "poll");
	s->rate = tlcm_param_float(ctx, "rate_hz");
	if (s->watch && s->loop) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "watch and loop cannot be "
			      "combined (a watched directory never ends)");
		return TLCM_EINVAL;
	}
	struct stat sb;
	if (stat(dir, &sb) != 0) {
		int e = errno;
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot open directory %s: "
			      "%s", dir, strerror(e));
		return tlcm_io_errno(-e);
	}
	if (!S_ISDIR(sb.st_mode)) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s is not a directory",
			      dir);
		return TLCM_EINVAL;
	}
	if (!(s->dir = strdup(dir)))
		return TLCM_ENOMEM;
	if (s->watch) { /* before listing, so no file falls in between */
		s->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (s->ifd < 0 ||
		    inotify_add_watch(s->ifd, s->dir, IN_CLOSE_WRITE |
				      IN_MOVED_TO | IN_DELETE_SELF |
				      IN_MOVE_SELF | IN_ONLYDIR) < 0) {
			int e = errno;
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot watch %s "
				      "(inotify): %s", s->dir, strerror(e));
			release(s);
			return tlcm_io_errno(-e);
		}
	}
	int rc = 0;
	bool existing = tlcm_param_bool(ctx, "existing");
	if (existing && (rc = scan(ctx, s))) {
		release(s);
		return rc;
	}
	if (!s->n && !s->watch && existing)
		tlcm_node_log(ctx, TLCM_LOG_WARN, "%s holds no .png/.jpg/.jpeg "
			      "files", s->dir);
	s->start_ns = tlcm_now_ns();
	if (s->rate > 0) {
		double period = 1e9 / s->rate;
		tlcm_set_tick(ctx, (uint64_t)(period < 1e6 ? 1e6 : period));
	} else {
		tlcm_set_tick(ctx, 0);
	}
	return 0;
}

/* Emit the next good file. 0 emitted, 1 nothing to emit now, 2 the
 * stream is over, < 0 fatal. */
static int next(tlcm_ctx_t *ctx, images_t *s)
{
	for (int tries = 0; tries < TRIES_PER_TICK;) {
		if (s->pos < s->n) {
			char *name = s->names[s->pos++];
			int rc = one_file(ctx, s, name, s->index++);
			free(name);
			if (rc <= 0)
				return rc;
			tries++;
			continue;
		}
		if (s->watch) {
			int rc = read_events(ctx, s);
			if (rc)
				return rc;
			if (s->pos < s->n)
				continue;
			return s->dir_gone ? 2 : 1;
		}
		if (!s->loop)
			return 2;
		if (!s->pass_emitted) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "a whole pass over "
				      "%s emitted no frame; ending the stream",
				      s->dir);
			return 2;
		}
		s->pass++;
		s->pass_emitted = 0;
		int rc = scan(ctx, s);
		if (rc)
			return rc;
	}
	return 1; /* many bad files in a row: go on next tick */
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	images_t *s = st;
	uint64_t n = 1;
	if (s->rate > 0) {
		if (!s->scheduled) /* the schedule starts with the first */
			s->start_ns = now;
		double due = (double)(now - s->start_ns) / 1e9 * s->rate + 1;
		n = due > (double)s->scheduled ? (uint64_t)due - s->scheduled
					       : 0;
		if (n > RATE_BURST)
			n = RATE_BURST;
	}
	for (uint64_t k = 0; k < n; k++) {
		int rc = next(ctx, s);
		if (rc < 0)
			return rc;
		if (rc == 2)
			return TLCM_ECLOSED;
		if (rc == 1) {
			set_idle(ctx, s, s->watch && s->pos == s->n);
			if (s->rate > 0 && s->pos == s->n)
				s->scheduled = (uint64_t)((double)(now -
					s->start_ns) / 1e9 * s->rate + 1);
			return 0;
		}
		s->scheduled++;
	}
	set_idle(ctx, s, false);
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	images_t *s = st;
	char dir[256], last[700];
	(void)ctx;
	tlcm_capture_json_escape(dir, sizeof dir, s->dir);
	tlcm_capture_json_escape(last, sizeof last, s->last_error);
	snprintf(buf, len, "{\"dir\":\"%s\",\"emitted\":%" PRIu64
		 ",\"errors\":%" PRIu64 ",\"pass\":%" PRIu64
		 ",\"queued\":%zu,\"watching\":%s,\"last_error\":\"%s\"}",
		 dir, s->emitted, s->errors, s->pass, s->n - s->pos,
		 s->ifd >= 0 ? "true" : "false", last);
	return 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	images_t *s = st;
	tlcm_node_log(ctx, s->errors ? TLCM_LOG_WARN : TLCM_LOG_INFO,
		      "%s: emitted %" PRIu64 " frames, skipped %" PRIu64
		      " files with errors", s->dir, s->emitted, s->errors);
	release(s);
}

const tlcm_node_type_t tlcm_node_capture_images = {
	.name = "capture.images",
	.doc = "emit the PNG/JPEG files of a directory as frames (sorted, or "
	       "watched with inotify), resized and converted",
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(images_t),
	.init = init,
	.tick = tick,
	.describe = describe,
	.fini = fini,
};
