/* test_capture_v4l2.c — what capture.v4l2 does without a camera: the YUYV
 * conversions on known BT.601 values (black, white, mid gray, red, blue,
 * out-of-range luma), row strides, short buffers, MJPEG decoding (sizes,
 * gray/RGB, corrupt frames), and start-up errors naming the device (a
 * missing device, a file that is no V4L2 device).
 *
 * With --hw it runs a real camera instead (TLCM_TEST_CAMERA, default
 * /dev/video0) and skips as hardware-exempt when there is none (listed in
 * docs/testing.md).
 */
#define _GNU_SOURCE
#include <unistd.h>

#include <linux/videodev2.h>

#include "engine/log.h"
#include "nodes/capture/decode.h"
#include "nodes/capture/image.h"
#include "tests/tlcm_test.h"
#include "tests/unit/capture_helpers.h"

/* Four pixel pairs per row, two rows, rows padded to 20 bytes. */
#define STRIDE 20
static const uint8_t yuyv[2 * STRIDE] = {
	/* Y0 U Y1 V: black | white, red | red */
	16, 128, 235, 128, 82, 90, 82, 240,
	/* mid gray | mid gray, blue | blue, padding */
	126, 128, 126, 128, 41, 240, 41, 110, 0xAA, 0xAA, 0xAA, 0xAA,
	/* row 2: luma out of range (0, 255) | (16, 235), padding */
	0, 128, 255, 128, 16, 128, 235, 128, 0xAA, 0xAA, 0xAA, 0xAA,
	0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA,
};

static void yuyv_known_values(void)
{
	/* the first row: 8 pixels in its first 16 bytes */
	uint8_t rgb[8 * 3], gray[8];
	tlcm_yuyv_to_rgb(yuyv, STRIDE, 8, 1, rgb);
	tlcm_yuyv_to_gray(yuyv, STRIDE, 8, 1, gray);
	static const uint8_t want_rgb[8 * 3] = {
		0, 0, 0, 255, 255, 255,       /* black, white */
		255, 1, 0, 255, 1, 0,         /* red (BT.601 limited range) */
		128, 128, 128, 128, 128, 128, /* mid gray */
		0, 0, 255, 0, 0, 255,         /* blue */
	};
	CHECK(memcmp(rgb, want_rgb, sizeof want_rgb) == 0);
	for (int i = 0; i < 8 * 3; i++)
		if (rgb[i] != want_rgb[i])
			fprintf(stderr, "yuyv->rgb byte %d: %u, want %u\n", i,
				rgb[i], want_rgb[i]);
	static const uint8_t want_gray[8] = {0, 255, 77, 77, 128, 128, 29,
					     29};
	CHECK(memcmp(gray, want_gray, 8) == 0);

	/* luma below 16 and above 235 clamps */
	tlcm_yuyv_to_rgb(yuyv + STRIDE, STRIDE, 4, 1, rgb);
	tlcm_yuyv_to_gray(yuyv + STRIDE, STRIDE, 4, 1, gray);
	CHECK(rgb[0] == 0 && rgb[1] == 0 && rgb[2] == 0);
	CHECK(rgb[3] == 255 && rgb[4] == 255 && rgb[5] == 255);
	CHECK(gray[0] == 0 && gray[1] == 255 && gray[2] == 0 &&
	      gray[3] == 255);

	/* odd width: the last pixel uses its pair's chroma */
	tlcm_yuyv_to_rgb(yuyv, STRIDE, 3, 1, rgb);
	CHECK(rgb[6] == 255 && rgb[7] == 1 && rgb[8] == 0);
}

static void camera_decode_yuyv(void)
{
	char why[256];
	tlcm_image_t out = {0}, tmp = {0};
	/* 4x2 with the padded stride: row 2 starts at byte 20 */
	CHECK_INT(tlcm_camera_decode(V4L2_PIX_FMT_YUYV, yuyv, sizeof yuyv, 4,
				     2, STRIDE, 1, &out, &tmp, why,
				     sizeof why), 0);
	CHECK(out.width == 4 && out.height == 2 && out.channels == 1);
	static const uint8_t want[8] = {0, 255, 77, 77, 0, 255, 0, 255};
	CHECK(memcmp(out.data, want, 8) == 0);
	CHECK_INT(tlcm_camera_decode(V4L2_PIX_FMT_YUYV, yuyv, sizeof yuyv, 4,
				     2, STRIDE, 3, &out, &tmp, why,
				     sizeof why), 0);
	CHECK(out.channels == 3 && out.data[3] == 255 && out.data[6] == 255 &&
	      out.data[7] == 1);
	/* a short buffer, a stride too small, an unknown format */
	CHECK_INT(tlcm_camera_decode(V4L2_PIX_FMT_YUYV, yuyv, 27, 4, 2,
				     STRIDE, 3, &out, &tmp, why, sizeof why),
		  TLCM_EBADMSG);
	CHECK_CONTAINS(why, "short YUYV buffer: 27 bytes, 4x2 needs 28");
	CHECK_INT(tlcm_camera_decode(V4L2_PIX_FMT_YUYV, yuyv, sizeof yuyv, 8,
				     2, 8, 3, &out, &tmp, why, sizeof why),
		  TLCM_EINVAL);
	CHECK_CONTAINS(why, "row stride 8 is less than the 16 bytes");
	CHECK_INT(tlcm_camera_decode(V4L2_PIX_FMT_NV12, yuyv, sizeof yuyv, 4,
				     2, 0, 3, &out, &tmp, why, sizeof why),
		  TLCM_ENOTSUP);
	CHECK_CONTAINS(why, "pixel format NV12 is not supported");
	tlcm_image_free(&out);
	tlcm_image_free(&tmp);
}

static void camera_decode_mjpeg(void)
{
	char why[256];
	size_t len;
	tlcm_image_t out = {0}, tmp = {0};
	uint8_t *pic = cap_picture(32, 16, 3, 0);
	uint8_t *jpg = cap_jpeg_encode(pic, 32, 16, 3, &len);
	CHECK_INT(tlcm_camera_decode(V4L2_PIX_FMT_MJPEG, jpg, len, 32, 16, 0,
				     3, &out, &tmp, why, sizeof why), 0);
	CHECK(out.width == 32 && out.height == 16 && out.channels == 3);
	CHECK(cap_mean_abs_diff(out.data, pic, 32 * 16 * 3) < 4);
	uint8_t gray[32 * 16];
	tlcm_rgb_to_gray(pic, gray, 32 * 16);
	CHECK_INT(tlcm_camera_decode(V4L2_PIX_FMT_MJPEG, jpg, len, 32, 16, 0,
				     1, &out, &tmp, why, sizeof why), 0);
	CHECK(out.channels == 1 && cap_mean_abs_diff(out.data, gray, 512) < 4);
	/* a frame of another size than the stream's */
	CHECK_INT(tlcm_camera_decode(V4L2_PIX_FMT_MJPEG, jpg, len, 64, 16, 0,
				     3, &out, &tmp, why, sizeof why),
		  TLCM_EBADMSG);
	CHECK_CONTAINS(why, "MJPEG frame is 32x16, the stream was set up for "
		       "64x16");
	/* cut short (cameras do deliver partial frames) */
	CHECK_INT(tlcm_camera_decode(V4L2_PIX_FMT_MJPEG, jpg, len / 2, 32, 16,
				     0, 3, &out, &tmp, why, sizeof why),
		  TLCM_EBADMSG);
	CHECK_CONTAINS(why, "corrupt JPEG");
	/* garbage */
	memset(jpg + 2, 0x11, len - 2);
	CHECK_INT(tlcm_camera_decode(V4L2_PIX_FMT_MJPEG, jpg, len, 32, 16, 0,
				     3, &out, &tmp, why, sizeof why),
		  TLCM_EBADMSG);
	free(jpg);
	free(pic);
	tlcm_image_free(&out);
	tlcm_image_free(&tmp);
}

static int run_v4l2(const char *params, double duration,
		    tlcm_run_result_t *res)
{
	char yaml[1024];
	snprintf(yaml, sizeof yaml,
		 "graph: capv4l2\n"
		 "settings: { introspect: 'off' }\n"
		 "nodes:\n"
		 "  c: { type: spy.v4l2, params: { %s } }\n"
		 "  s: { type: capsink }\n"
		 "edges: [ { from: c.out, to: s.in, capacity: 8MiB } ]\n",
		 params);
	return cap_run(yaml, duration, res);
}

static void startup_errors(void)
{
	tlcm_run_result_t res;
	CHECK(run_v4l2("device: /nonexistent/video9", 0, &res) != 0);
	CHECK_CONTAINS(res.why, "node 'c' (type spy.v4l2) failed to start");
	CHECK_CONTAINS(cap_rec.log, "cannot open camera /nonexistent/video9: "
		       "No such file or directory");
	tlcm_run_result_fini(&res);
	CHECK(run_v4l2("device: /dev/null", 0, &res) != 0);
	CHECK_CONTAINS(res.why, "failed to start");
	CHECK_CONTAINS(cap_rec.log, "/dev/null is not a V4L2 device "
		       "(VIDIOC_QUERYCAP: Inappropriate ioctl for device)");
	tlcm_run_result_fini(&res);
}

/* A real camera: frames arrive, shaped as asked, in sequence. */
static void hardware(void)
{
	const char *dev = getenv("TLCM_TEST_CAMERA");
	if (!dev)
		dev = "/dev/video0";
	if (access(dev, R_OK | W_OK) != 0) {
		char why[256];
		snprintf(why, sizeof why, "no camera at %s (set "
			 "TLCM_TEST_CAMERA)", dev);
		tlcm_test_skip_hw(why);
	}
	char params[512];
	tlcm_run_result_t res;
	snprintf(params, sizeof params, "device: %s, width: 320, height: 240, "
		 "fps: 15, out_width: 28, out_height: 28, resize: crop, "
		 "format: gray", dev);
	CHECK_INT(run_v4l2(params, 3, &res), 0);
	fputs(cap_rec.log, stderr);
	CHECK(cap_rec.n > 0);
	CHECK_INT(cap_rec.bad, 0);
	size_t wrong = 0;
	for (size_t i = 0; i < cap_rec.n; i++)
		wrong += cap_rec.frames[i].width != 28 ||
			 cap_rec.frames[i].height != 28 ||
			 cap_rec.frames[i].format != 0 ||
			 (i && cap_rec.frames[i].index <=
				       cap_rec.frames[i - 1].index);
	CHECK_UINT(wrong, 0);
	tlcm_run_result_fini(&res);
}

int main(int argc, char **argv)
{
	tlcm_log_level = TLCM_LOG_INFO;
	if (argc > 1 && !strcmp(argv[1], "--hw")) {
		hardware();
	} else {
		yuyv_known_values();
		camera_decode_yuyv();
		camera_decode_mjpeg();
		startup_errors();
	}
	cap_reset();
	return tlcm_test_done();
}
