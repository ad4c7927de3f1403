/* v4l2_node.c — node `capture.v4l2`: frames from a Linux camera through
 * V4L2 memory-mapped streaming.
 *
 * init opens the device (non-blocking), checks it can capture and stream,
 * picks YUYV or MJPEG (param input; auto prefers YUYV, which needs no
 * decoding), sets size and frame rate (the driver may adjust both: the
 * values it chose are logged and used), maps `buffers` kernel buffers,
 * queues them and starts streaming. tick runs at twice the frame rate and
 * dequeues every filled buffer: converts it (decode.c: YUYV → RGB/gray,
 * MJPEG → libjpeg), shapes it (image.c) and emits it, then gives the buffer
 * back. A frame that fails to decode is skipped and counted; a missing
 * device or one that cannot stream fails the start, naming the device and
 * the errno text. The capture time is the driver's timestamp (monotonic)
 * moved to CLOCK_REALTIME.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/videodev2.h>

#include "engine/io.h"
#include "engine/log.h"
#include "engine/node.h"
#include "nodes/capture/capture_nodes.h"
#include "nodes/capture/decode.h"
#include "nodes/capture/frame.h"
#include "nodes/capture/image.h"

#define MAX_BUFFERS 16

typedef struct {
	int fd;
	char *device;
	uint32_t fourcc, width, height, stride;
	struct {
		void *p;
		size_t len;
	} buf[MAX_BUFFERS];
	unsigned nbuf;
	bool streaming;
	tlcm_image_shape_t shape;
	tlcm_image_t raw, out, tmp, scratch;
	uint64_t sequence, emitted, errors;
	char last_error[640];
} v4l2_t;

static const tlcm_port_desc_t outputs[] = {
	{"out", "FRAM", "camera frames", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"device", TLCM_P_PATH, "/dev/video0", "V4L2 capture device", 0, 0,
	 NULL, 0},
	{"width", TLCM_P_INT, "640", "capture width asked of the driver", 16,
	 16384, NULL, 0},
	{"height", TLCM_P_INT, "480", "capture height asked of the driver", 16,
	 16384, NULL, 0},
	{"fps", TLCM_P_INT, "30", "frames per second asked of the driver", 1,
	 1000, NULL, 0},
	{"input", TLCM_P_ENUM, "auto", "camera pixel format: yuyv, mjpeg, or "
	 "auto (YUYV if offered, else MJPEG)", 0, 0, "auto|yuyv|mjpeg", 0},
	{"format", TLCM_P_ENUM, "rgb", "output pixels: gray or rgb", 0, 0,
	 "gray|rgb", 0},
	{"out_width", TLCM_P_INT, "0", "output width; 0 = the capture's (or "
	 "from out_height, keeping the aspect ratio)", 0, 16384, NULL, 0},
	{"out_height", TLCM_P_INT, "0", "output height; 0 = the capture's (or "
	 "from out_width, keeping the aspect ratio)", 0, 16384, NULL, 0},
	{"resize", TLCM_P_ENUM, "stretch", "stretch, crop (cover, centre "
	 "crop) or fit (inside, black padding)", 0, 0, TLCM_RESIZE_CHOICES,
	 0},
	{"buffers", TLCM_P_INT, "4", "kernel buffers mapped", 2, MAX_BUFFERS,
	 NULL, 0},
	{0},
};

static int xioctl(int fd, unsigned long req, void *arg)
{
	int r;
	do
		r = ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	return r;
}

static const char *fourcc_str(uint32_t f, char out[5])
{
	for (int i = 0; i < 4; i++) {
		char c = (char)(f >> (8 * i));
		out[i] = c >= 32 && c < 127 ? c : '?';
	}
	out[4] = 0;
	return out;
}

static void release(v4l2_t *v)
{
	if (v->streaming) {
		enum v4l2_buf_type t = V4L2_BUF_TYPE_VIDEO_CAPTURE;
		xioctl(v->fd, VIDIOC_STREAMOFF, &t);
		v->streaming = false;
	}
	for (unsigned i = 0; i < v->nbuf; i++)
		if (v->buf[i].p && v->buf[i].p != MAP_FAILED)
			munmap(v->buf[i].p, v->buf[i].len);
	v->nbuf = 0;
	if (v->fd >= 0)
		close(v->fd);
	v->fd = -1;
	free(v->device);
	v->device = NULL;
	tlcm_image_free(&v->raw);
	tlcm_image_free(&v->out);
	tlcm_image_free(&v->tmp);
	tlcm_image_free(&v->scratch);
}

/* Log "what on DEVICE: errno text", release, return the TLCM code. */
static int sys_fail(tlcm_ctx_t *ctx, v4l2_t *v, const char *what)
{
	int e = errno;
	tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s %s: %s", what, v->device,
		      strerror(e));
	release(v);
	return tlcm_io_errno(-e);
}

static bool offers(int fd, uint32_t fourcc)
{
	struct v4l2_fmtdesc d;
	for (uint32_t i = 0;; i++) {
		memset(&d, 0, sizeof d);
		d.index = i;
		d.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
		if (xioctl(fd, VIDIOC_ENUM_FMT, &d) < 0)
			return false;
		if (d.pixelformat == fourcc)
			return true;
	}
}

static int setup_buffers(tlcm_ctx_t *ctx, v4l2_t *v, unsigned want)
{
	struct v4l2_requestbuffers rb = {.count = want,
					 .type = V4L2_BUF_TYPE_VIDEO_CAPTURE,
					 .memory = V4L2_MEMORY_MMAP};
	if (xioctl(v->fd, VIDIOC_REQBUFS, &rb) < 0)
		return sys_fail(ctx, v, "cannot get streaming buffers from");
	if (rb.count < 2) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s granted %u buffers, "
			      "streaming needs 2", v->device, rb.count);
		release(v);
		return TLCM_ENOSPC;
	}
	v->nbuf = rb.count < MAX_BUFFERS ? rb.count : MAX_BUFFERS;
	for (unsigned i = 0; i < v->nbuf; i++) {
		struct v4l2_buffer b = {.index = i,
					.type = V4L2_BUF_TYPE_VIDEO_CAPTURE,
					.memory = V4L2_MEMORY_MMAP};
		if (xioctl(v->fd, VIDIOC_QUERYBUF, &b) < 0)
			return sys_fail(ctx, v, "cannot query a buffer of");
		v->buf[i].len = b.length;
		v->buf[i].p = mmap(NULL, b.length, PROT_READ | PROT_WRITE,
				   MAP_SHARED, v->fd, b.m.offset);
		if (v->buf[i].p == MAP_FAILED)
			return sys_fail(ctx, v, "cannot map a buffer of");
		if (xioctl(v->fd, VIDIOC_QBUF, &b) < 0)
			return sys_fail(ctx, v, "cannot queue a buffer on");
	}
	enum v4l2_buf_type t = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	if (xioctl(v->fd, VIDIOC_STREAMON, &t) < 0)
		return sys_fail(ctx, v, "cannot start streaming on");
	v->streaming = true;
	return 0;
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	v4l2_t *v = st;
	char a[5], b[5];
	v->fd = -1;
	if (!(v->device = strdup(tlcm_param_str(ctx, "device"))))
		return TLCM_ENOMEM;
	v->shape.width = (uint32_t)tlcm_param_int(ctx, "out_width");
	v->shape.height = (uint32_t)tlcm_param_int(ctx, "out_height");
	v->shape.mode = tlcm_resize_parse(tlcm_param_str(ctx, "resize"));
	v->shape.channels = !strcmp(tlcm_param_str(ctx, "format"), "gray")
				    ? 1 : 3;
	v->fd = open(v->device, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (v->fd < 0)
		return sys_fail(ctx, v, "cannot open camera");

	struct v4l2_capability cap;
	memset(&cap, 0, sizeof cap);
	if (xioctl(v->fd, VIDIOC_QUERYCAP, &cap) < 0) {
		int e = errno;
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s is not a V4L2 device "
			      "(VIDIOC_QUERYCAP: %s)", v->device, strerror(e));
		release(v);
		return e == ENOTTY ? TLCM_ENOTSUP : tlcm_io_errno(-e);
	}
	uint32_t caps = cap.capabilities & V4L2_CAP_DEVICE_CAPS
				? cap.device_caps : cap.capabilities;
	if (!(caps & V4L2_CAP_VIDEO_CAPTURE) || !(caps & V4L2_CAP_STREAMING)) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s (%s) cannot %s",
			      v->device, (const char *)cap.card,
			      !(caps & V4L2_CAP_VIDEO_CAPTURE)
				      ? "capture video"
				      : "stream (no V4L2_CAP_STREAMING)");
		release(v);
		return TLCM_ENOTSUP;
	}

	const char *input = tlcm_param_str(ctx, "input");
	bool yuyv = offers(v->fd, V4L2_PIX_FMT_YUYV),
	     mjpeg = offers(v->fd, V4L2_PIX_FMT_MJPEG);
	if (!strcmp(input, "yuyv") ? !yuyv
	    : !strcmp(input, "mjpeg") ? !mjpeg : !yuyv && !mjpeg) {
		if (!yuyv && !mjpeg)
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s (%s) offers "
				      "neither YUYV nor MJPEG, the formats "
				      "this node reads", v->device,
				      (const char *)cap.card);
		else
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s (%s) does not "
				      "offer %s (param input); it offers %s",
				      v->device, (const char *)cap.card,
				      !strcmp(input, "yuyv") ? "YUYV" : "MJPEG",
				      yuyv ? "YUYV" : "MJPEG");
		release(v);
		return TLCM_ENOTSUP;
	}
	uint32_t want = !strcmp(input, "mjpeg") || (!strcmp(input, "auto") &&
						    !yuyv)
				? V4L2_PIX_FMT_MJPEG : V4L2_PIX_FMT_YUYV;
	struct v4l2_format f;
	memset(&f, 0, sizeof f);
	f.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	f.fmt.pix.width = (uint32_t)tlcm_param_int(ctx, "width");
	f.fmt.pix.height = (uint32_t)tlcm_param_int(ctx, "height");
	f.fmt.pix.pixelformat = want;
	f.fmt.pix.field = V4L2_FIELD_NONE;
	if (xioctl(v->fd, VIDIOC_S_FMT, &f) < 0)
		return sys_fail(ctx, v, "cannot set the capture format of");
	if (f.fmt.pix.pixelformat != want) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s gave pixel format %s "
			      "when asked for %s", v->device,
			      fourcc_str(f.fmt.pix.pixelformat, a),
			      fourcc_str(want, b));
		release(v);
		return TLCM_ENOTSUP;
	}
	v->fourcc = want;
	v->width = f.fmt.pix.width;
	v->height = f.fmt.pix.height;
	v->stride = f.fmt.pix.bytesperline;

	struct v4l2_streamparm sp;
	memset(&sp, 0, sizeof sp);
	sp.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	int64_t fps = tlcm_param_int(ctx, "fps");
	sp.parm.capture.timeperframe.numerator = 1;
	sp.parm.capture.timeperframe.denominator = (uint32_t)fps;
	if (xioctl(v->fd, VIDIOC_S_PARM, &sp) == 0 &&
	    sp.parm.capture.timeperframe.numerator &&
	    sp.parm.capture.timeperframe.denominator)
		fps = sp.parm.capture.timeperframe.denominator /
		      sp.parm.capture.timeperframe.numerator;
	if (fps < 1)
		fps = 1;
	int rc = setup_buffers(ctx, v,
			       (unsigned)tlcm_param_int(ctx, "buffers"));
	if (rc)
		return rc;
	tlcm_node_log(ctx, TLCM_LOG_INFO, "%s (%s): %ux%u %s at %" PRId64
		      " fps, %u buffers", v->device, (const char *)cap.card,
		      (unsigned)v->width, (unsigned)v->height,
		      fourcc_str(v->fourcc, a), fps, v->nbuf);
	tlcm_set_tick(ctx, (uint64_t)(1e9 / (double)fps / 2));
	return 0;
}

/* Driver timestamp (CLOCK_MONOTONIC) to CLOCK_REALTIME. */
static uint64_t capture_time(const struct v4l2_buffer *b)
{
	uint64_t real = tlcm_capture_realtime_ns();
	if (!(b->flags & V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC))
		return real;
	uint64_t ts = (uint64_t)b->timestamp.tv_sec * 1000000000u +
		      (uint64_t)b->timestamp.tv_usec * 1000u;
	uint64_t mono = tlcm_now_ns();
	return ts <= mono && mono - ts < real ? real - (mono - ts) : real;
}

static int one_buffer(tlcm_ctx_t *ctx, v4l2_t *v, const struct v4l2_buffer *b)
{
	char why[300];
	v->sequence++;
	if (b->flags & V4L2_BUF_FLAG_ERROR) {
		v->errors++;
		snprintf(v->last_error, sizeof v->last_error, "frame %u: the "
			 "driver flagged it as corrupt", b->sequence);
		tlcm_node_log(ctx, TLCM_LOG_WARN, "%s: skipping %s", v->device,
			      v->last_error);
		return 0;
	}
	size_t used = b->bytesused ? b->bytesused : v->buf[b->index].len;
	if (used > v->buf[b->index].len)
		used = v->buf[b->index].len;
	int rc = tlcm_camera_decode(v->fourcc, v->buf[b->index].p, used,
				    v->width, v->height, v->stride,
				    v->shape.channels, &v->raw, &v->scratch,
				    why, sizeof why);
	if (!rc)
		rc = tlcm_image_reshape(&v->raw, &v->shape, &v->out, &v->tmp);
	if (rc == TLCM_ENOMEM)
		return rc;
	if (rc) {
		v->errors++;
		snprintf(v->last_error, sizeof v->last_error, "frame %u: %s",
			 b->sequence, why);
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s: skipping %s",
			      v->device, v->last_error);
		return 0;
	}
	tlcm_capture_frame_t f = {
		.width = v->out.width, .height = v->out.height,
		.channels = v->out.channels, .pixels = v->out.data,
		.label = -1, .source = v->device, .index = b->sequence,
		.time_ns = capture_time(b),
	};
	if ((rc = tlcm_capture_emit(ctx, 0, &f, NULL)))
		return rc;
	v->emitted++;
	return 0;
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	v4l2_t *v = st;
	(void)now;
	for (unsigned k = 0; k < v->nbuf; k++) {
		struct v4l2_buffer b = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE,
					.memory = V4L2_MEMORY_MMAP};
		if (xioctl(v->fd, VIDIOC_DQBUF, &b) < 0) {
			if (errno == EAGAIN)
				return 0;
			int e = errno;
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot dequeue a "
				      "frame from %s: %s", v->device,
				      strerror(e));
			return tlcm_io_errno(-e);
		}
		int rc = b.index < v->nbuf ? one_buffer(ctx, v, &b) : 0;
		if (xioctl(v->fd, VIDIOC_QBUF, &b) < 0) {
			int e = errno;
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot requeue a "
				      "buffer on %s: %s", v->device,
				      strerror(e));
			return tlcm_io_errno(-e);
		}
		if (rc)
			return rc;
	}
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	v4l2_t *v = st;
	char dev[256], last[700], fc[5];
	(void)ctx;
	tlcm_capture_json_escape(dev, sizeof dev, v->device);
	tlcm_capture_json_escape(last, sizeof last, v->last_error);
	snprintf(buf, len, "{\"device\":\"%s\",\"width\":%u,\"height\":%u,"
		 "\"input\":\"%s\",\"emitted\":%" PRIu64 ",\"errors\":%" PRIu64
		 ",\"last_error\":\"%s\"}", dev, (unsigned)v->width,
		 (unsigned)v->height, fourcc_str(v->fourcc, fc), v->emitted,
		 v->errors, last);
	return 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	v4l2_t *v = st;
	tlcm_node_log(ctx, v->errors ? TLCM_LOG_WARN : TLCM_LOG_INFO,
		      "%s: emitted %" PRIu64 " frames, skipped %" PRIu64,
		      v->device, v->emitted, v->errors);
	release(v);
}

const tlcm_node_type_t tlcm_node_capture_v4l2 = {
	.name = "capture.v4l2",
	.doc = "frames from a V4L2 camera (MMAP streaming, YUYV or MJPEG)",
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(v4l2_t),
	.init = init,
	.tick = tick,
	.describe = describe,
	.fini = fini,
};
