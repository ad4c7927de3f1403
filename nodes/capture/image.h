/* image.h — 8-bit images for the capture nodes: owned pixel buffers, pixel
 * format conversions (RGB/gray, YUYV from cameras) and resizing.
 *
 * One module for every capture node, so a frame from a PNG, a camera or a
 * dataset is shaped the same way. An image is rows top to bottom of
 * width*channels bytes (channels 1 = gray, 3 = R G B), no padding.
 *
 * Resizing (tlcm_image_reshape) maps a source rectangle onto a destination
 * rectangle with a separable filter: area averaging (box filter, exact
 * coverage weights) when shrinking an axis, bilinear interpolation (pixel
 * centres aligned) when enlarging it, an exact copy when the sizes match.
 * Modes: stretch (whole image to the whole output, aspect ignored), crop
 * (scale to cover the output, centre crop the excess), fit (scale to fit
 * inside, centre, pad with black).
 *
 * Colour: RGB→gray is BT.601 luma, (77 R + 150 G + 29 B + 128) >> 8;
 * gray→RGB replicates. YUYV (V4L2_PIX_FMT_YUYV, 4:2:2) is BT.601 limited
 * range in the usual 8-bit fixed point, with C = Y-16, D = U-128, E = V-128:
 * R = (298 C + 409 E + 128) >> 8, G = (298 C - 100 D - 208 E + 128) >> 8,
 * B = (298 C + 516 D + 128) >> 8, each clamped to 0..255; YUYV→gray is
 * (298 C + 128) >> 8, the luma expanded to full range.
 */
#ifndef TLCM_CAPTURE_IMAGE_H
#define TLCM_CAPTURE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* Largest image the capture nodes allocate (pixels), against decompression
 * bombs and absurd headers: 64 Mpixel. */
#define TLCM_IMAGE_MAX_PIXELS ((uint64_t)64 << 20)

typedef struct tlcm_image {
	uint32_t width, height;
	uint32_t channels; /* 1 gray, 3 RGB */
	uint8_t *data;     /* owned: height * width * channels bytes */
	size_t cap;        /* bytes allocated at data (reused across frames) */
} tlcm_image_t;

/* Make im width x height x channels, reusing its buffer when large enough
 * (contents undefined). TLCM_ETOOBIG above TLCM_IMAGE_MAX_PIXELS,
 * TLCM_EINVAL for a zero size or channels other than 1/3. */
int tlcm_image_reserve(tlcm_image_t *im, uint32_t width, uint32_t height,
		       uint32_t channels);
void tlcm_image_free(tlcm_image_t *im);
static inline size_t tlcm_image_size(const tlcm_image_t *im)
{
	return (size_t)im->width * im->height * im->channels;
}

typedef enum {
	TLCM_RESIZE_STRETCH,
	TLCM_RESIZE_CROP,
	TLCM_RESIZE_FIT,
} tlcm_resize_t;

#define TLCM_RESIZE_CHOICES "stretch|crop|fit"
/* "stretch", "crop" or "fit"; anything else is stretch. */
tlcm_resize_t tlcm_resize_parse(const char *s);

/* What a capture node emits: size (0 = keep the source's; one of them 0 =
 * keep the aspect ratio), channels and the resize mode. */
typedef struct tlcm_image_shape {
	uint32_t width, height;
	uint32_t channels;
	tlcm_resize_t mode;
} tlcm_image_shape_t;

/* dst = src converted to shape->channels and resized to the shape. tmp is
 * a scratch image the caller keeps between calls (free both at the end).
 * dst and tmp must not be src. */
int tlcm_image_reshape(const tlcm_image_t *src, const tlcm_image_shape_t *shape,
		       tlcm_image_t *dst, tlcm_image_t *tmp);

/* Resize only (same channel count): src's rectangle (sx, sy, sw, sh), in
 * source pixels (fractions allowed), onto dst's rectangle (dx, dy, dw, dh);
 * dst pixels outside it are left as they are. */
int tlcm_image_resize_rect(const tlcm_image_t *src, double sx, double sy,
			   double sw, double sh, tlcm_image_t *dst,
			   uint32_t dx, uint32_t dy, uint32_t dw, uint32_t dh);

/* Pixel conversions over n pixels. */
void tlcm_rgb_to_gray(const uint8_t *rgb, uint8_t *gray, size_t n);
void tlcm_gray_to_rgb(const uint8_t *gray, uint8_t *rgb, size_t n);

/* YUYV (Y0 U Y1 V per pixel pair; width even) rows of `stride` bytes to
 * packed RGB / gray of width x height. */
void tlcm_yuyv_to_rgb(const uint8_t *yuyv, size_t stride, uint32_t width,
		      uint32_t height, uint8_t *rgb);
void tlcm_yuyv_to_gray(const uint8_t *yuyv, size_t stride, uint32_t width,
		       uint32_t height, uint8_t *gray);

#endif
