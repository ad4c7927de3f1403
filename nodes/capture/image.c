/* image.c — pixel buffers, colour conversions and the separable resizer
 * shared by the capture nodes (see image.h for the formulas).
 *
 * The resizer precomputes, per output column and per output row, the
 * source pixels it reads and their weights (box filter coverage when
 * shrinking, bilinear when enlarging), then runs a horizontal pass into a
 * float buffer holding only the source rows the vertical pass needs.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "nodes/capture/image.h"

int tlcm_image_reserve(tlcm_image_t *im, uint32_t width, uint32_t height,
		       uint32_t channels)
{
	if (!width || !height || (channels != 1 && channels != 3))
		return TLCM_EINVAL;
	if ((uint64_t)width * height > TLCM_IMAGE_MAX_PIXELS)
		return TLCM_ETOOBIG;
	size_t need = (size_t)width * height * channels;
	if (need > im->cap) {
		uint8_t *p = realloc(im->data, need);
		if (!p)
			return TLCM_ENOMEM;
		im->data = p;
		im->cap = need;
	}
	im->width = width;
	im->height = height;
	im->channels = channels;
	return 0;
}

void tlcm_image_free(tlcm_image_t *im)
{
	free(im->data);
	memset(im, 0, sizeof *im);
}

tlcm_resize_t tlcm_resize_parse(const char *s)
{
	if (s && !strcmp(s, "crop"))
		return TLCM_RESIZE_CROP;
	if (s && !strcmp(s, "fit"))
		return TLCM_RESIZE_FIT;
	return TLCM_RESIZE_STRETCH;
}

/* ---- colour ------------------------------------------------------------ */

void tlcm_rgb_to_gray(const uint8_t *rgb, uint8_t *gray, size_t n)
{
	for (size_t i = 0; i < n; i++, rgb += 3)
		gray[i] = (uint8_t)((77u * rgb[0] + 150u * rgb[1] +
				     29u * rgb[2] + 128u) >> 8);
}

void tlcm_gray_to_rgb(const uint8_t *gray, uint8_t *rgb, size_t n)
{
	for (size_t i = 0; i < n; i++, rgb += 3)
		rgb[0] = rgb[1] = rgb[2] = gray[i];
}

static inline uint8_t clamp8(int v)
{
	return v <= 0 ? 0 : v >= 255 << 8 ? 255 : (uint8_t)(v >> 8);
}

void tlcm_yuyv_to_rgb(const uint8_t *yuyv, size_t stride, uint32_t width,
		      uint32_t height, uint8_t *rgb)
{
	for (uint32_t y = 0; y < height; y++) {
		const uint8_t *p = yuyv + (size_t)y * stride;
		for (uint32_t x = 0; x < width; x += 2, p += 4) {
			int d = p[1] - 128, e = p[3] - 128;
			int cr = 409 * e + 128, cg = -100 * d - 208 * e + 128,
			    cb = 516 * d + 128;
			for (int k = 0; k < 2 && x + (uint32_t)k < width; k++) {
				int c = 298 * (p[k * 2] - 16);
				*rgb++ = clamp8(c + cr);
				*rgb++ = clamp8(c + cg);
				*rgb++ = clamp8(c + cb);
			}
		}
	}
}

void tlcm_yuyv_to_gray(const uint8_t *yuyv, size_t stride, uint32_t width,
		       uint32_t height, uint8_t *gray)
{
	for (uint32_t y = 0; y < height; y++) {
		const uint8_t *p = yuyv + (size_t)y * stride;
		for (uint32_t x = 0; x < width; x++)
			*gray++ = clamp8(298 * (p[x * 2] - 16) + 128);
	}
}

/* ---- resizing ---------------------------------------------------------- */

typedef struct {
	uint32_t *first; /* per output pixel: first source index */
	uint32_t *n;     /* per output pixel: taps used */
	float *w;        /* per output pixel: maxk weights */
	uint32_t maxk;
} taps_t;

static void taps_free(taps_t *t)
{
	free(t->first);
	free(t->n);
	free(t->w);
}

/* Output pixels 0..dn-1 cover source [s0, s0 + len) of an axis of src_n
 * pixels. */
static int taps_make(taps_t *t, uint32_t src_n, double s0, double len,
		     uint32_t dn)
{
	double step = len / dn;
	t->maxk = step >= 1 ? (uint32_t)ceil(step) + 1 : 2;
	t->first = calloc(dn, sizeof *t->first);
	t->n = calloc(dn, sizeof *t->n);
	t->w = calloc((size_t)dn * t->maxk, sizeof *t->w);
	if (!t->first || !t->n || !t->w) {
		taps_free(t);
		return TLCM_ENOMEM;
	}
	double last = (double)src_n - 1;
	for (uint32_t i = 0; i < dn; i++) {
		float *w = t->w + (size_t)i * t->maxk;
		if (step >= 1) { /* box filter: coverage of [a, b) */
			double a = s0 + i * step, b = a + step;
			double j0 = fmax(floor(a), 0), j1 = fmin(ceil(b) - 1,
								 last);
			double sum = 0;
			uint32_t k = 0;
			t->first[i] = (uint32_t)j0;
			for (double j = j0; j <= j1 && k < t->maxk; j++) {
				double cov = fmin(b, j + 1) - fmax(a, j);
				w[k++] = cov > 0 ? (float)cov : 0;
				sum += cov > 0 ? cov : 0;
			}
			if (k == 0) { /* rounding at the edge: nearest pixel */
				t->first[i] = (uint32_t)fmin(fmax(floor(a), 0),
							     last);
				w[k++] = 1;
				sum = 1;
			}
			for (uint32_t q = 0; q < k; q++)
				w[q] = (float)(w[q] / sum);
			t->n[i] = k;
		} else { /* bilinear, pixel centres aligned */
			double c = s0 + (i + 0.5) * step - 0.5;
			double j = floor(c), f = c - j;
			if (j < 0) {
				j = 0;
				f = 0;
			}
			if (j >= last) {
				j = last;
				f = 0;
			}
			t->first[i] = (uint32_t)j;
			w[0] = (float)(1 - f);
			w[1] = (float)f;
			t->n[i] = f > 0 ? 2 : 1;
		}
	}
	return 0;
}

int tlcm_image_resize_rect(const tlcm_image_t *src, double sx, double sy,
			   double sw, double sh, tlcm_image_t *dst,
			   uint32_t dx, uint32_t dy, uint32_t dw, uint32_t dh)
{
	uint32_t ch = src->channels;
	if (ch != dst->channels || !dw || !dh ||
	    dx + (uint64_t)dw > dst->width ||
	    dy + (uint64_t)dh > dst->height || !(sw > 0) || !(sh > 0) ||
	    sx < 0 || sy < 0 || sx + sw > src->width + 1e-9 ||
	    sy + sh > src->height + 1e-9)
		return TLCM_EINVAL;
	size_t srow = (size_t)src->width * ch, drow = (size_t)dst->width * ch;
	if (sx == 0 && sy == 0 && sw == dw && sh == dh && sw == src->width &&
	    sh == src->height) { /* same size: copy */
		for (uint32_t y = 0; y < dh; y++)
			memcpy(dst->data + (dy + y) * drow + (size_t)dx * ch,
			       src->data + y * srow, (size_t)dw * ch);
		return 0;
	}
	taps_t h = {0}, v = {0};
	int rc = taps_make(&h, src->width, sx, sw, dw);
	if (rc)
		return rc;
	if ((rc = taps_make(&v, src->height, sy, sh, dh))) {
		taps_free(&h);
		return rc;
	}
	/* source rows the vertical pass reads */
	uint32_t y0 = v.first[0], y1 = v.first[dh - 1] + v.n[dh - 1] - 1;
	size_t trow = (size_t)dw * ch;
	float *tmp = malloc(((size_t)(y1 - y0) + 1) * trow * sizeof *tmp);
	if (!tmp) {
		taps_free(&h);
		taps_free(&v);
		return TLCM_ENOMEM;
	}
	for (uint32_t y = y0; y <= y1; y++) {
		const uint8_t *s = src->data + y * srow;
		float *o = tmp + (size_t)(y - y0) * trow;
		for (uint32_t x = 0; x < dw; x++) {
			const float *w = h.w + (size_t)x * h.maxk;
			const uint8_t *p = s + (size_t)h.first[x] * ch;
			for (uint32_t c = 0; c < ch; c++) {
				float acc = 0;
				for (uint32_t k = 0; k < h.n[x]; k++)
					acc += w[k] * p[k * ch + c];
				o[x * ch + c] = acc;
			}
		}
	}
	for (uint32_t y = 0; y < dh; y++) {
		const float *w = v.w + (size_t)y * v.maxk;
		const float *t = tmp + (size_t)(v.first[y] - y0) * trow;
		uint8_t *o = dst->data + (dy + y) * drow + (size_t)dx * ch;
		for (size_t i = 0; i < trow; i++) {
			float acc = 0;
			for (uint32_t k = 0; k < v.n[y]; k++)
				acc += w[k] * t[k * trow + i];
			acc += 0.5f;
			o[i] = acc <= 0 ? 0 : acc >= 255 ? 255 : (uint8_t)acc;
		}
	}
	free(tmp);
	taps_free(&h);
	taps_free(&v);
	return 0;
}

static uint32_t scaled(uint32_t a, uint32_t num, uint32_t den)
{
	uint64_t v = ((uint64_t)a * num + den / 2) / den;
	return v ? (uint32_t)(v > UINT32_MAX ? UINT32_MAX : v) : 1;
}

/* Resize src (already in the output's channels) into dst per shape. */
static int resize_into(const tlcm_image_t *src, const tlcm_image_shape_t *sh,
		       uint32_t W, uint32_t H, tlcm_image_t *dst)
{
	int rc = tlcm_image_reserve(dst, W, H, src->channels);
	if (rc)
		return rc;
	double sw = src->width, shh = src->height;
	switch (sh->mode) {
	case TLCM_RESIZE_CROP: {
		double s = fmax(W / sw, H / shh);
		double cw = fmin(W / s, sw), chh = fmin(H / s, shh);
		return tlcm_image_resize_rect(src, (sw - cw) / 2,
					      (shh - chh) / 2, cw, chh, dst, 0,
					      0, W, H);
	}
	case TLCM_RESIZE_FIT: {
		double s = fmin(W / sw, H / shh);
		uint32_t dw = (uint32_t)fmin(fmax(round(sw * s), 1), W);
		uint32_t dh = (uint32_t)fmin(fmax(round(shh * s), 1), H);
		memset(dst->data, 0, tlcm_image_size(dst));
		return tlcm_image_resize_rect(src, 0, 0, sw, shh, dst,
					      (W - dw) / 2, (H - dh) / 2, dw,
					      dh);
	}
	default:
		return tlcm_image_resize_rect(src, 0, 0, sw, shh, dst, 0, 0, W,
					      H);
	}
}

int tlcm_image_reshape(const tlcm_image_t *src, const tlcm_image_shape_t *sh,
		       tlcm_image_t *dst, tlcm_image_t *tmp)
{
	if (!src->width || !src->height ||
	    (src->channels != 1 && src->channels != 3) ||
	    (sh->channels != 1 && sh->channels != 3))
		return TLCM_EINVAL;
	uint32_t W = sh->width, H = sh->height;
	if (!W && !H) {
		W = src->width;
		H = src->height;
	} else if (!W) {
		W = scaled(src->width, H, src->height);
	} else if (!H) {
		H = scaled(src->height, W, src->width);
	}
	int rc;
	size_t npix;
	if (sh->channels == src->channels)
		return resize_into(src, sh, W, H, dst);
	if (sh->channels == 1) { /* fewer bytes to resize: convert first */
		if ((rc = tlcm_image_reserve(tmp, src->width, src->height, 1)))
			return rc;
		tlcm_rgb_to_gray(src->data, tmp->data,
				 (size_t)src->width * src->height);
		return resize_into(tmp, sh, W, H, dst);
	}
	if ((rc = resize_into(src, sh, W, H, tmp)))
		return rc;
	if ((rc = tlcm_image_reserve(dst, W, H, 3)))
		return rc;
	npix = (size_t)W * H;
	tlcm_gray_to_rgb(tmp->data, dst->data, npix);
	return 0;
}
