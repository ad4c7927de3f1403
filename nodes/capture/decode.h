/* decode.h — bytes to images for the capture nodes: PNG (libpng), JPEG
 * (libjpeg-turbo) and camera buffers (YUYV, MJPEG).
 *
 * Decoders work on a buffer in memory and write into an image the caller
 * owns (tlcm_image_t, reused across calls). They never print and never
 * longjmp through the caller: libpng's simplified API keeps its setjmp
 * inside libpng, and the JPEG decoder catches libjpeg's error_exit with a
 * setjmp around a heap-allocated decoder state, so nothing the caller sees
 * is left half-updated. Warnings count as errors: a truncated JPEG, which
 * libjpeg would pad with gray, is rejected.
 *
 * Errors: TLCM_EBADMSG (corrupt or truncated data), TLCM_ENOTSUP (a format
 * or variant we do not read), TLCM_ETOOBIG (more than
 * TLCM_IMAGE_MAX_PIXELS), TLCM_ENOMEM; why (may be NULL) says what was
 * wrong, without the file name — callers add it.
 */
#ifndef TLCM_CAPTURE_DECODE_H
#define TLCM_CAPTURE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "nodes/capture/image.h"

/* What the first bytes look like: "PNG", "JPEG", "GIF", "BMP", "TIFF",
 * "WebP", "PNM", or NULL when unknown. */
const char *tlcm_image_sniff(const void *buf, size_t len);

/* Decode a PNG or JPEG (recognised by content, not name) into out: gray
 * when the file is gray, RGB otherwise (PNG alpha is composited onto
 * black; palette and 16-bit samples are reduced to 8-bit). */
int tlcm_image_decode(const void *buf, size_t len, tlcm_image_t *out,
		      char *why, size_t cap);
int tlcm_png_decode(const void *buf, size_t len, tlcm_image_t *out, char *why,
		    size_t cap);
int tlcm_jpeg_decode(const void *buf, size_t len, tlcm_image_t *out,
		     char *why, size_t cap);

/* A camera buffer: V4L2 fourcc (V4L2_PIX_FMT_YUYV or V4L2_PIX_FMT_MJPEG),
 * len bytes used, width x height with rows of stride bytes (YUYV only;
 * 0 = 2 * width). out gets `channels` (1 or 3) at the frame's size. MJPEG
 * frames whose decoded size differs from width x height are rejected. */
int tlcm_camera_decode(uint32_t fourcc, const void *buf, size_t len,
		       uint32_t width, uint32_t height, size_t stride,
		       uint32_t channels, tlcm_image_t *out, tlcm_image_t *tmp,
		       char *why, size_t cap);

#endif
