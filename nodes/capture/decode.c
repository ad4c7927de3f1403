/* decode.c — PNG, JPEG and camera buffers to tlcm_image_t (see decode.h).
 *
 * PNG goes through libpng's simplified API (png_image_*), which handles
 * every colour type and bit depth and reports errors in image.message.
 * JPEG uses libjpeg's classic API with our error manager: error_exit
 * formats the message and longjmps back to tlcm_jpeg_decode, whose state
 * lives in one heap block so nothing automatic changes between setjmp and
 * longjmp; emit_message records warnings, which fail the decode.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <linux/videodev2.h>
#include <png.h>

#include "engine/error.h"
#include "nodes/capture/decode.h"

#define WHY(...) (why && cap ? (void)snprintf(why, cap, __VA_ARGS__) : (void)0)

const char *tlcm_image_sniff(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	if (len >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8))
		return "PNG";
	if (len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
		return "JPEG";
	if (len >= 4 && !memcmp(p, "GIF8", 4))
		return "GIF";
	if (len >= 2 && p[0] == 'B' && p[1] == 'M')
		return "BMP";
	if (len >= 4 && (!memcmp(p, "II*\0", 4) || !memcmp(p, "MM\0*", 4)))
		return "TIFF";
	if (len >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4))
		return "WebP";
	if (len >= 2 && p[0] == 'P' && p[1] >= '1' && p[1] <= '6')
		return "PNM";
	return NULL;
}

int tlcm_image_decode(const void *buf, size_t len, tlcm_image_t *out,
		      char *why, size_t cap)
{
	const char *kind = tlcm_image_sniff(buf, len);
	if (!len) {
		WHY("empty file (0 bytes)");
		return TLCM_EBADMSG;
	}
	if (kind && !strcmp(kind, "PNG"))
		return tlcm_png_decode(buf, len, out, why, cap);
	if (kind && !strcmp(kind, "JPEG"))
		return tlcm_jpeg_decode(buf, len, out, why, cap);
	if (kind)
		WHY("unsupported image format %s (PNG and JPEG are read)",
		    kind);
	else
		WHY("not a PNG or JPEG file (unrecognised first bytes)");
	return TLCM_ENOTSUP;
}

/* ---- PNG --------------------------------------------------------------- */

int tlcm_png_decode(const void *buf, size_t len, tlcm_image_t *out, char *why,
		    size_t cap)
{
	png_image img;
	memset(&img, 0, sizeof img);
	img.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_memory(&img, buf, len)) {
		WHY("corrupt PNG: %s%s", img.message,
		    strstr(img.message, "beyond end of data")
			    ? " (the file is truncated)" : "");
		png_image_free(&img);
		return TLCM_EBADMSG;
	}
	if ((uint64_t)img.width * img.height > TLCM_IMAGE_MAX_PIXELS) {
		WHY("PNG of %ux%u pixels is larger than the limit of %llu",
		    (unsigned)img.width, (unsigned)img.height,
		    (unsigned long long)TLCM_IMAGE_MAX_PIXELS);
		png_image_free(&img);
		return TLCM_ETOOBIG;
	}
	bool color = img.format & PNG_FORMAT_FLAG_COLOR;
	img.format = color ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
	int rc = tlcm_image_reserve(out, img.width, img.height, color ? 3 : 1);
	if (rc) {
		WHY("PNG of %ux%u pixels: %s", (unsigned)img.width,
		    (unsigned)img.height, tlcm_strerror(rc));
		png_image_free(&img);
		return rc;
	}
	png_color black = {0, 0, 0};
	if (!png_image_finish_read(&img, &black, out->data, 0, NULL)) {
		WHY("corrupt PNG: %s%s", img.message,
		    strstr(img.message, "beyond end of data")
			    ? " (the file is truncated)" : "");
		png_image_free(&img);
		return TLCM_EBADMSG;
	}
	png_image_free(&img);
	return 0;
}

/* ---- JPEG -------------------------------------------------------------- */

typedef struct {
	struct jpeg_error_mgr pub; /* first: libjpeg hands us &pub */
	jmp_buf jb;
	int warnings;
	char msg[JMSG_LENGTH_MAX];
} jerr_t;

typedef struct {
	jerr_t err;
	struct jpeg_decompress_struct cinfo;
} jdec_t;

static void jerr_exit(j_common_ptr c)
{
	jerr_t *e = (jerr_t *)c->err;
	e->pub.format_message(c, e->msg);
	longjmp(e->jb, 1);
}

static void jerr_emit(j_common_ptr c, int level)
{
	jerr_t *e = (jerr_t *)c->err;
	if (level < 0 && e->warnings++ == 0) /* keep the first warning */
		e->pub.format_message(c, e->msg);
}

static void jerr_output(j_common_ptr c)
{
	(void)c; /* never print */
}

int tlcm_jpeg_decode(const void *buf, size_t len, tlcm_image_t *out,
		     char *why, size_t cap)
{
	jdec_t *d = calloc(1, sizeof *d);
	if (!d)
		return TLCM_ENOMEM;
	d->cinfo.err = jpeg_std_error(&d->err.pub);
	d->err.pub.error_exit = jerr_exit;
	d->err.pub.emit_message = jerr_emit;
	d->err.pub.output_message = jerr_output;
	if (setjmp(d->err.jb)) {
		WHY("corrupt JPEG: %s", d->err.msg);
		jpeg_destroy_decompress(&d->cinfo);
		free(d);
		return TLCM_EBADMSG;
	}
	jpeg_create_decompress(&d->cinfo);
	jpeg_mem_src(&d->cinfo, buf, (unsigned long)len);
	jpeg_read_header(&d->cinfo, TRUE);
	int rc = 0;
	struct jpeg_decompress_struct *ci = &d->cinfo;
	if (ci->num_components == 1) {
		ci->out_color_space = JCS_GRAYSCALE;
	} else if (ci->num_components == 3 &&
		   (ci->jpeg_color_space == JCS_YCbCr ||
		    ci->jpeg_color_space == JCS_RGB)) {
		ci->out_color_space = JCS_RGB;
	} else {
		WHY("JPEG with %d components (colour space %d) is not "
		    "supported; gray and YCbCr/RGB are", ci->num_components,
		    (int)ci->jpeg_color_space);
		rc = TLCM_ENOTSUP;
	}
	if (!rc && (uint64_t)ci->image_width * ci->image_height >
			   TLCM_IMAGE_MAX_PIXELS) {
		WHY("JPEG of %ux%u pixels is larger than the limit of %llu",
		    (unsigned)ci->image_width, (unsigned)ci->image_height,
		    (unsigned long long)TLCM_IMAGE_MAX_PIXELS);
		rc = TLCM_ETOOBIG;
	}
	if (!rc) {
		jpeg_start_decompress(ci);
		rc = tlcm_image_reserve(out, ci->output_width,
					ci->output_height,
					(uint32_t)ci->output_components);
		if (rc)
			WHY("JPEG of %ux%u pixels: %s",
			    (unsigned)ci->output_width,
			    (unsigned)ci->output_height, tlcm_strerror(rc));
	}
	if (!rc) {
		size_t row = (size_t)out->width * out->channels;
		while (ci->output_scanline < ci->output_height) {
			JSAMPROW r = out->data + ci->output_scanline * row;
			if (jpeg_read_scanlines(ci, &r, 1) != 1)
				break; /* suspension cannot happen in memory */
		}
		if (ci->output_scanline < ci->output_height) {
			WHY("corrupt JPEG: decoding stopped at row %u of %u",
			    (unsigned)ci->output_scanline,
			    (unsigned)ci->output_height);
			rc = TLCM_EBADMSG;
		} else {
			jpeg_finish_decompress(ci);
		}
	}
	if (!rc && d->err.warnings) {
		WHY("corrupt JPEG: %s", d->err.msg);
		rc = TLCM_EBADMSG;
	}
	jpeg_destroy_decompress(ci);
	free(d);
	return rc;
}

/* ---- camera buffers ---------------------------------------------------- */

static int to_channels(const tlcm_image_t *src, uint32_t channels,
		       tlcm_image_t *out)
{
	int rc = tlcm_image_reserve(out, src->width, src->height, channels);
	if (rc)
		return rc;
	size_t n = (size_t)src->width * src->height;
	if (src->channels == channels)
		memcpy(out->data, src->data, n * channels);
	else if (channels == 1)
		tlcm_rgb_to_gray(src->data, out->data, n);
	else
		tlcm_gray_to_rgb(src->data, out->data, n);
	return 0;
}

int tlcm_camera_decode(uint32_t fourcc, const void *buf, size_t len,
		       uint32_t width, uint32_t height, size_t stride,
		       uint32_t channels, tlcm_image_t *out, tlcm_image_t *tmp,
		       char *why, size_t cap)
{
	int rc;
	if (!width || !height || (channels != 1 && channels != 3)) {
		WHY("bad frame geometry %ux%u, %u channels", (unsigned)width,
		    (unsigned)height, (unsigned)channels);
		return TLCM_EINVAL;
	}
	if (fourcc == V4L2_PIX_FMT_YUYV) {
		size_t line = ((size_t)width + 1) / 2 * 4;
		if (!stride)
			stride = line;
		if (stride < line) {
			WHY("YUYV row stride %zu is less than the %zu bytes a "
			    "row of %u pixels needs", stride, line,
			    (unsigned)width);
			return TLCM_EINVAL;
		}
		size_t need = stride * (height - 1) + line;
		if (len < need) {
			WHY("short YUYV buffer: %zu bytes, %ux%u needs %zu",
			    len, (unsigned)width, (unsigned)height, need);
			return TLCM_EBADMSG;
		}
		if ((rc = tlcm_image_reserve(out, width, height, channels)))
			return rc;
		if (channels == 3)
			tlcm_yuyv_to_rgb(buf, stride, width, height, out->data);
		else
			tlcm_yuyv_to_gray(buf, stride, width, height,
					  out->data);
		return 0;
	}
	if (fourcc == V4L2_PIX_FMT_MJPEG || fourcc == V4L2_PIX_FMT_JPEG) {
		if ((rc = tlcm_jpeg_decode(buf, len, tmp, why, cap)))
			return rc;
		if (tmp->width != width || tmp->height != height) {
			WHY("MJPEG frame is %ux%u, the stream was set up for "
			    "%ux%u", (unsigned)tmp->width,
			    (unsigned)tmp->height, (unsigned)width,
			    (unsigned)height);
			return TLCM_EBADMSG;
		}
		return to_channels(tmp, channels, out);
	}
	WHY("pixel format %.4s is not supported (YUYV and MJPEG are)",
	    (const char *)&fourcc);
	return TLCM_ENOTSUP;
}
