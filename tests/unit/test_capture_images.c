/* test_capture_images.c — the image module (conversions, resize modes with
 * exact expected pixels), the PNG/JPEG decoders (round trips through
 * libpng/libjpeg encoders, every truncation of a file, corrupt data), and
 * node capture.images on directories the test writes: good files among a
 * corpus of bad ones (corrupt/truncated PNG and JPEG, zero bytes, a
 * directory named like an image, a GIF named .png, text named .jpg, a
 * dangling link) — each skipped with a counted, logged error naming the
 * file while the good ones, including the last, arrive; resizing and
 * gray/RGB output; loop; inotify watch; start-up errors.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <png.h>

#include "engine/log.h"
#include "nodes/capture/decode.h"
#include "nodes/capture/image.h"
#include "tests/tlcm_test.h"
#include "tests/unit/capture_helpers.h"

static char dir[64];

/* ---- image.c ------------------------------------------------------------ */

static tlcm_image_t img_of(uint32_t w, uint32_t h, uint32_t ch,
			   const uint8_t *px)
{
	tlcm_image_t im = {0};
	CHECK_INT(tlcm_image_reserve(&im, w, h, ch), 0);
	memcpy(im.data, px, (size_t)w * h * ch);
	return im;
}

static void reshape_case(const char *what, tlcm_image_t *src,
			 tlcm_image_shape_t sh, uint32_t w, uint32_t h,
			 const uint8_t *want)
{
	tlcm_image_t dst = {0}, tmp = {0};
	CHECK_INT(tlcm_image_reshape(src, &sh, &dst, &tmp), 0);
	CHECK_UINT(dst.width, w);
	CHECK_UINT(dst.height, h);
	CHECK_UINT(dst.channels, sh.channels);
	size_t n = (size_t)w * h * sh.channels;
	if (dst.width == w && dst.height == h && memcmp(dst.data, want, n)) {
		tlcm_test_failures++;
		fprintf(stderr, "FAIL: reshape %s:", what);
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, " %u/%u", dst.data[i], want[i]);
		fputc('\n', stderr);
	}
	tlcm_image_free(&dst);
	tlcm_image_free(&tmp);
}

static void image_module(void)
{
	/* colour */
	uint8_t rgb[] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0,
			 0, 0};
	uint8_t gray[5];
	tlcm_rgb_to_gray(rgb, gray, 5);
	CHECK_UINT(gray[0], 77);
	CHECK_UINT(gray[1], 149);
	CHECK_UINT(gray[2], 29);
	CHECK_UINT(gray[3], 255);
	CHECK_UINT(gray[4], 0);
	uint8_t back[15];
	tlcm_gray_to_rgb(gray, back, 5);
	CHECK(back[0] == 77 && back[1] == 77 && back[2] == 77 &&
	      back[14] == 0);

	/* same size: an exact copy */
	uint8_t g44[16];
	for (int i = 0; i < 16; i++)
		g44[i] = (uint8_t)(i * 10);
	tlcm_image_t s44 = img_of(4, 4, 1, g44);
	reshape_case("identity", &s44, (tlcm_image_shape_t){0, 0, 1, 0}, 4,
		     4, g44);
	/* halving: the mean of each 2x2 block (area) */
	uint8_t half[4] = {(0 + 10 + 40 + 50 + 2) / 4,
			   (20 + 30 + 60 + 70 + 2) / 4,
			   (80 + 90 + 120 + 130 + 2) / 4,
			   (100 + 110 + 140 + 150 + 2) / 4};
	reshape_case("area 4->2", &s44,
		     (tlcm_image_shape_t){2, 2, 1, TLCM_RESIZE_STRETCH}, 2, 2,
		     half);
	/* width only: the aspect ratio is kept */
	reshape_case("width only", &s44, (tlcm_image_shape_t){2, 0, 1, 0}, 2,
		     2, half);
	/* to 1x1: the mean of all */
	uint8_t all = (uint8_t)((0 + 150) / 2 + 0.5);
	reshape_case("area 4->1", &s44, (tlcm_image_shape_t){1, 1, 1, 0}, 1,
		     1, &all);
	tlcm_image_free(&s44);

	/* enlarging: bilinear with aligned centres, edges clamped */
	tlcm_image_t s21 = img_of(2, 1, 1, (uint8_t[]){0, 100});
	reshape_case("bilinear 2->4", &s21, (tlcm_image_shape_t){4, 1, 1, 0},
		     4, 1, (uint8_t[]){0, 25, 75, 100});
	tlcm_image_free(&s21);

	/* crop: 4x2 into 2x2 keeps the centre columns */
	uint8_t g42[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	tlcm_image_t s42 = img_of(4, 2, 1, g42);
	reshape_case("crop", &s42,
		     (tlcm_image_shape_t){2, 2, 1, TLCM_RESIZE_CROP}, 2, 2,
		     (uint8_t[]){2, 3, 6, 7});
	/* fit: 4x2 into 4x4 is centred with black rows around */
	reshape_case("fit", &s42,
		     (tlcm_image_shape_t){4, 4, 1, TLCM_RESIZE_FIT}, 4, 4,
		     (uint8_t[]){0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0,
				 0});
	/* stretch: 4x2 into 2x2 averages pairs horizontally */
	reshape_case("stretch", &s42,
		     (tlcm_image_shape_t){2, 2, 1, TLCM_RESIZE_STRETCH}, 2, 2,
		     (uint8_t[]){2, 4, 6, 8}); /* 1.5->2, 3.5->4, ... */
	/* gray to RGB after resizing */
	reshape_case("gray->rgb", &s42, (tlcm_image_shape_t){0, 0, 3, 0}, 4,
		     2, (uint8_t[]){1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5,
				    5, 6, 6, 6, 7, 7, 7, 8, 8, 8});
	tlcm_image_free(&s42);
	/* RGB to gray before resizing */
	tlcm_image_t srgb = img_of(5, 1, 3, rgb);
	reshape_case("rgb->gray", &srgb, (tlcm_image_shape_t){0, 0, 1, 0}, 5,
		     1, gray);
	tlcm_image_free(&srgb);

	/* a big downscale stays within the source's range, no overflow */
	uint8_t *big = cap_picture(640, 480, 3, 1);
	tlcm_image_t sb = img_of(640, 480, 3, big), d = {0}, t = {0};
	tlcm_image_shape_t to28 = {28, 28, 1, TLCM_RESIZE_CROP};
	CHECK_INT(tlcm_image_reshape(&sb, &to28, &d, &t), 0);
	CHECK_UINT(d.width * d.height * d.channels, 784);
	tlcm_image_free(&sb);
	tlcm_image_free(&d);
	tlcm_image_free(&t);
	free(big);

	/* limits */
	tlcm_image_t e = {0};
	CHECK_INT(tlcm_image_reserve(&e, 0, 5, 1), TLCM_EINVAL);
	CHECK_INT(tlcm_image_reserve(&e, 5, 5, 2), TLCM_EINVAL);
	CHECK_INT(tlcm_image_reserve(&e, 65536, 65536, 1), TLCM_ETOOBIG);
	tlcm_image_free(&e);
}

/* ---- decode.c ----------------------------------------------------------- */

static void decoders(void)
{
	char why[256];
	tlcm_image_t out = {0};
	size_t len;

	/* PNG round trips are exact */
	uint8_t *g = cap_picture(13, 7, 1, 2), *c = cap_picture(13, 7, 3, 3);
	uint8_t *pg = cap_png_encode(g, 13, 7, PNG_FORMAT_GRAY, &len);
	CHECK_INT(tlcm_image_decode(pg, len, &out, why, sizeof why), 0);
	CHECK(out.width == 13 && out.height == 7 && out.channels == 1);
	CHECK(memcmp(out.data, g, 13 * 7) == 0);
	/* every truncation fails cleanly (ASan watches the reads) */
	size_t fails = 0, tries = 0;
	for (size_t k = 0; k + 12 < len; k++, tries++) {
		uint8_t *cut = malloc(k ? k : 1);
		memcpy(cut, pg, k);
		fails += tlcm_image_decode(cut, k, &out, why, sizeof why) != 0;
		free(cut);
	}
	CHECK_UINT(fails, tries);
	CHECK_INT(tlcm_png_decode(pg, len / 2, &out, why, sizeof why),
		  TLCM_EBADMSG);
	CHECK_CONTAINS(why, "corrupt PNG");
	free(pg);

	uint8_t *pc = cap_png_encode(c, 13, 7, PNG_FORMAT_RGB, &len);
	CHECK_INT(tlcm_image_decode(pc, len, &out, why, sizeof why), 0);
	CHECK(out.channels == 3 && memcmp(out.data, c, 13 * 7 * 3) == 0);
	free(pc);

	/* RGBA: alpha composited onto black */
	uint8_t rgba[8] = {200, 100, 50, 0, 200, 100, 50, 255};
	uint8_t *pa = cap_png_encode(rgba, 2, 1, PNG_FORMAT_RGBA, &len);
	CHECK_INT(tlcm_image_decode(pa, len, &out, why, sizeof why), 0);
	CHECK(out.channels == 3 && out.width == 2);
	CHECK(out.data[0] == 0 && out.data[1] == 0 && out.data[2] == 0);
	CHECK(out.data[3] == 200 && out.data[4] == 100 && out.data[5] == 50);
	free(pa);

	/* 16-bit linear PNG: read, reduced to 8 bits */
	uint16_t g16[4] = {0, 65535, 0, 65535};
	uint8_t *p16 = cap_png_encode((uint8_t *)g16, 2, 2,
				  PNG_FORMAT_LINEAR_Y, &len);
	CHECK_INT(tlcm_image_decode(p16, len, &out, why, sizeof why), 0);
	CHECK(out.channels == 1 && out.data[0] == 0 && out.data[1] == 255);
	free(p16);

	/* JPEG: lossy, close; truncated anywhere → error */
	uint8_t *jg = cap_jpeg_encode(g, 13, 7, 1, &len);
	CHECK_INT(tlcm_image_decode(jg, len, &out, why, sizeof why), 0);
	CHECK(out.width == 13 && out.height == 7 && out.channels == 1);
	CHECK(cap_mean_abs_diff(out.data, g, 13 * 7) < 3);
	fails = tries = 0;
	for (size_t k = 0; k < len; k++, tries++) {
		uint8_t *cut = malloc(k ? k : 1);
		memcpy(cut, jg, k);
		fails += tlcm_image_decode(cut, k, &out, why, sizeof why) != 0;
		free(cut);
	}
	CHECK_UINT(fails, tries);
	CHECK_INT(tlcm_jpeg_decode(jg, len - 40, &out, why, sizeof why),
		  TLCM_EBADMSG);
	CHECK_CONTAINS(why, "corrupt JPEG");
	free(jg);
	uint8_t *jc = cap_jpeg_encode(c, 13, 7, 3, &len);
	CHECK_INT(tlcm_image_decode(jc, len, &out, why, sizeof why), 0);
	CHECK(out.channels == 3 &&
	      cap_mean_abs_diff(out.data, c, 13 * 7 * 3) < 4);
	free(jc);

	/* not PNG/JPEG */
	CHECK_INT(tlcm_image_decode("GIF89a......", 12, &out, why, sizeof why),
		  TLCM_ENOTSUP);
	CHECK_CONTAINS(why, "unsupported image format GIF");
	CHECK_INT(tlcm_image_decode("hello", 5, &out, why, sizeof why),
		  TLCM_ENOTSUP);
	CHECK_CONTAINS(why, "not a PNG or JPEG");
	CHECK_INT(tlcm_image_decode("", 0, &out, why, sizeof why),
		  TLCM_EBADMSG);
	CHECK_CONTAINS(why, "empty file");
	/* an absurd size in the header is refused before allocating */
	uint8_t *tiny = cap_png_encode(g, 1, 1, PNG_FORMAT_GRAY, &len);
	/* IHDR width at offset 16 (big-endian): make it 2^30 */
	tiny[16] = 0x40;
	CHECK(tlcm_image_decode(tiny, len, &out, why, sizeof why) != 0);
	free(tiny);
	free(g);
	free(c);
	tlcm_image_free(&out);
}

/* ---- the node ------------------------------------------------------------ */

static void file_in(const char *sub, const char *name, const void *data,
		    size_t n)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s/%s", dir, sub, name);
	cap_write_file(p, data, n);
}

static int run_images(const char *params, double duration,
		      tlcm_run_result_t *res)
{
	char yaml[2048];
	snprintf(yaml, sizeof yaml,
		 "graph: capimages\n"
		 "settings: { introspect: 'off', workers: 2 }\n"
		 "nodes:\n"
		 "  c: { type: spy.images, params: { %s } }\n"
		 "  s: { type: capsink }\n"
		 "edges: [ { from: c.out, to: s.in, capacity: 1MiB } ]\n",
		 params);
	return cap_run(yaml, duration, res);
}

typedef struct {
	const char *name;
	const char *expect; /* NULL: a good file */
} entry_t;

static uint8_t *good_gray, *good_rgb;

/* The corpus: good files among bad ones, in name order. */
static const entry_t corpus[] = {
	{"a01-gray.png", NULL},
	{"a02-corrupt.png", "corrupt PNG"},
	{"a03-rgb.png", NULL},
	{"a04-truncated.png", "corrupt PNG"},
	{"a05-zero.png", "empty file (0 bytes)"},
	{"a06-dir.png", "a directory, not an image file"},
	{"a07-gray.jpg", NULL},
	{"a08-truncated.jpg", "corrupt JPEG"},
	{"a09-corrupt.jpg", "corrupt JPEG"},
	{"a10-gif.png", "unsupported image format GIF"},
	{"a11-text.jpg", "not a PNG or JPEG file"},
	{"a12-missing.png", "no such file (removed, or a dangling link)"},
	{"b-rgba.PNG", NULL},
	{"z-last.jpeg", NULL},
};

static void write_corpus(void)
{
	char p[512];
	size_t len;
	snprintf(p, sizeof p, "%s/mixed", dir);
	mkdir(p, 0755);
	good_gray = cap_picture(6, 4, 1, 4);
	good_rgb = cap_picture(6, 4, 3, 5);
	uint8_t *png_g = cap_png_encode(good_gray, 6, 4, PNG_FORMAT_GRAY, &len);
	file_in("mixed", "a01-gray.png", png_g, len);
	uint8_t *bad = malloc(len);
	memcpy(bad, png_g, len);
	for (size_t i = 40; i < len - 20; i++) /* inside IDAT: CRC fails */
		bad[i] ^= 0x33;
	file_in("mixed", "a02-corrupt.png", bad, len);
	file_in("mixed", "a04-truncated.png", png_g, len - 20);
	free(bad);
	free(png_g);
	uint8_t *png_c = cap_png_encode(good_rgb, 6, 4, PNG_FORMAT_RGB, &len);
	file_in("mixed", "a03-rgb.png", png_c, len);
	free(png_c);
	file_in("mixed", "a05-zero.png", "", 0);
	snprintf(p, sizeof p, "%s/mixed/a06-dir.png", dir);
	mkdir(p, 0755);
	uint8_t *jg = cap_jpeg_encode(good_gray, 6, 4, 1, &len);
	file_in("mixed", "a07-gray.jpg", jg, len);
	file_in("mixed", "a08-truncated.jpg", jg, len / 2);
	/* corrupt the tables after the SOI: a bogus DQT/DHT */
	for (size_t i = 4; i < 40 && i < len; i++)
		jg[i] = 0xEE;
	file_in("mixed", "a09-corrupt.jpg", jg, len);
	free(jg);
	file_in("mixed", "a10-gif.png", "GIF89a\x01\x00\x01\x00", 10);
	file_in("mixed", "a11-text.jpg", "just some text\n", 15);
	snprintf(p, sizeof p, "%s/mixed/a12-missing.png", dir);
	CHECK_INT(symlink("/nonexistent/target.png", p), 0);
	uint8_t rgba[6 * 4 * 4];
	for (size_t i = 0; i < sizeof rgba; i++)
		rgba[i] = i % 4 == 3 ? 255 : (uint8_t)i;
	uint8_t *pa = cap_png_encode(rgba, 6, 4, PNG_FORMAT_RGBA, &len);
	file_in("mixed", "b-rgba.PNG", pa, len);
	free(pa);
	uint8_t *jc = cap_jpeg_encode(good_rgb, 6, 4, 3, &len);
	file_in("mixed", "z-last.jpeg", jc, len);
	free(jc);
	/* ignored: not image names, hidden */
	file_in("mixed", "notes.txt", "not an image", 12);
	file_in("mixed", ".hidden.png", "x", 1);
}

static void mixed_directory(void)
{
	write_corpus();
	size_t nbad = 0, ngood = 0;
	for (size_t i = 0; i < sizeof corpus / sizeof corpus[0]; i++)
		corpus[i].expect ? nbad++ : ngood++;
	char params[512], want[64];
	tlcm_run_result_t res;

	/* original size, RGB */
	snprintf(params, sizeof params, "dir: %s/mixed", dir);
	CHECK_INT(run_images(params, 0, &res), 0);
	CHECK_UINT(cap_rec.n, ngood);
	CHECK_INT(cap_rec.bad, 0);
	size_t k = 0;
	for (size_t i = 0; i < sizeof corpus / sizeof corpus[0]; i++) {
		const entry_t *e = &corpus[i];
		if (e->expect) {
			char line[256];
			snprintf(line, sizeof line, "skipping %s/mixed/%s: %s",
				 dir, e->name, e->expect);
			CHECK_CONTAINS(cap_rec.log, line);
			continue;
		}
		if (k >= cap_rec.n)
			break;
		const cap_frame_t *f = &cap_rec.frames[k++];
		CHECK_STR(f->source, e->name);
		CHECK_UINT(f->index, i); /* position in the listing */
		CHECK(f->width == 6 && f->height == 4 && f->format == 1);
		CHECK(k < 2 || f->id > cap_rec.frames[k - 2].id);
	}
	if (cap_rec.n == ngood) {
		/* a01: gray PNG replicated to RGB, exact */
		uint8_t rgb[72];
		tlcm_gray_to_rgb(good_gray, rgb, 24);
		CHECK(memcmp(cap_rec.frames[0].pixels, rgb, 72) == 0);
		/* a03: RGB PNG, exact; z-last: RGB JPEG, close */
		CHECK(memcmp(cap_rec.frames[1].pixels, good_rgb, 72) == 0);
		CHECK(cap_mean_abs_diff(cap_rec.frames[4].pixels, good_rgb,
					72) < 6);
		CHECK_STR(cap_rec.frames[4].source, "z-last.jpeg");
	}
	snprintf(want, sizeof want, "\"errors\":%zu", nbad);
	CHECK_CONTAINS(cap_rec.describe, want);
	snprintf(want, sizeof want, "\"emitted\":%zu", ngood);
	CHECK_CONTAINS(cap_rec.describe, want);
	CHECK_CONTAINS(cap_rec.log, "skipped 9 files with errors");
	tlcm_run_result_fini(&res);

	/* resized to 8x8 gray, fit: every frame has the model's shape */
	snprintf(params, sizeof params, "dir: %s/mixed, width: 8, height: 8, "
		 "resize: fit, format: gray", dir);
	CHECK_INT(run_images(params, 0, &res), 0);
	CHECK_UINT(cap_rec.n, ngood);
	size_t wrong = 0;
	for (size_t i = 0; i < cap_rec.n; i++)
		wrong += cap_rec.frames[i].width != 8 ||
			 cap_rec.frames[i].height != 8 ||
			 cap_rec.frames[i].format != 0;
	CHECK_UINT(wrong, 0);
	/* 6x4 fitted into 8x8 is 8x5 (rounded from 5.33) centred: the top
	 * row is black padding */
	if (cap_rec.n) {
		const uint8_t *p = cap_rec.frames[0].pixels;
		CHECK(p[0] == 0 && p[7] == 0 && p[8 * 7] == 0);
		CHECK(p[8 * 3 + 3] != 0);
	}
	tlcm_run_result_fini(&res);

	/* loop: two passes or more, errors counted each pass */
	snprintf(params, sizeof params, "dir: %s/mixed, loop: true, rate_hz: "
		 "200", dir);
	CHECK_INT(run_images(params, 0.4, &res), 0);
	CHECK(cap_rec.n > ngood);
	size_t off = 0;
	for (size_t i = 0; i < cap_rec.n; i++)
		off += strcmp(cap_rec.frames[i].source,
			      cap_rec.frames[i % ngood].source) != 0;
	CHECK_UINT(off, 0);
	CHECK_CONTAINS(cap_rec.describe, "\"pass\":");
	tlcm_run_result_fini(&res);
}

static void only_bad(void)
{
	char p[512], params[512];
	tlcm_run_result_t res;
	snprintf(p, sizeof p, "%s/bad", dir);
	mkdir(p, 0755);
	file_in("bad", "x.png", "garbage", 7);
	/* looping over nothing readable ends instead of spinning */
	snprintf(params, sizeof params, "dir: %s/bad, loop: true", dir);
	CHECK_INT(run_images(params, 0, &res), 0);
	CHECK_UINT(cap_rec.n, 0);
	CHECK_CONTAINS(cap_rec.log, "a whole pass over");
	CHECK_CONTAINS(cap_rec.describe, "\"errors\":1");
	tlcm_run_result_fini(&res);
	/* an empty directory: end of stream at once */
	snprintf(p, sizeof p, "%s/empty", dir);
	mkdir(p, 0755);
	snprintf(params, sizeof params, "dir: %s/empty", dir);
	CHECK_INT(run_images(params, 0, &res), 0);
	CHECK_UINT(cap_rec.n, 0);
	CHECK_CONTAINS(cap_rec.log, "holds no .png/.jpg/.jpeg files");
	tlcm_run_result_fini(&res);
}

static void startup_errors(void)
{
	char params[512];
	tlcm_run_result_t res;
	snprintf(params, sizeof params, "dir: %s/no-such-dir", dir);
	CHECK(run_images(params, 0, &res) != 0);
	CHECK_CONTAINS(res.why, "failed to start");
	CHECK_CONTAINS(cap_rec.log, "no-such-dir: No such file or directory");
	tlcm_run_result_fini(&res);
	snprintf(params, sizeof params, "dir: %s/mixed/a01-gray.png", dir);
	CHECK(run_images(params, 0, &res) != 0);
	CHECK_CONTAINS(cap_rec.log, "a01-gray.png is not a directory");
	tlcm_run_result_fini(&res);
	snprintf(params, sizeof params, "dir: %s/mixed, watch: true, loop: "
		 "true", dir);
	CHECK(run_images(params, 0, &res) != 0);
	CHECK_CONTAINS(cap_rec.log, "watch and loop cannot be combined");
	tlcm_run_result_fini(&res);

	/* a frame larger than the edge can carry: the message says what
	 * capacity to give it */
	char p[512], yaml[1024];
	size_t len;
	snprintf(p, sizeof p, "%s/big", dir);
	mkdir(p, 0755);
	uint8_t *pic = cap_picture(300, 300, 3, 1);
	uint8_t *png = cap_png_encode(pic, 300, 300, PNG_FORMAT_RGB, &len);
	file_in("big", "big.png", png, len);
	free(pic);
	free(png);
	snprintf(yaml, sizeof yaml,
		 "graph: capbig\n"
		 "settings: { introspect: 'off' }\n"
		 "nodes:\n"
		 "  c: { type: capture.images, params: { dir: %s/big } }\n"
		 "  s: { type: capsink }\n"
		 "edges: [ { from: c.out, to: s.in } ]\n", dir);
	CHECK(cap_run(yaml, 0, &res) != 0);
	CHECK_CONTAINS(cap_rec.log, "does not fit the output edge: give the "
		       "edge a capacity of at least 1024KiB");
	tlcm_run_result_fini(&res);
}

/* ---- watch --------------------------------------------------------------- */

typedef struct {
	const char *params;
	tlcm_run_result_t res;
	int rc;
} watch_run_t;

static void *watch_thread(void *arg)
{
	watch_run_t *w = arg;
	w->rc = run_images(w->params, 0, &w->res);
	return NULL;
}

/* Wait (up to 30 s, not a timing assertion) for n frames. */
static bool wait_frames(size_t n)
{
	for (int i = 0; i < 3000; i++) {
		if (atomic_load(&cap_rec.count) >= n)
			return true;
		usleep(10000);
	}
	return false;
}

static void watch(void)
{
	char p[512], tmp[512], params[512];
	size_t len;
	snprintf(p, sizeof p, "%s/watched", dir);
	mkdir(p, 0755);
	uint8_t *png = cap_png_encode(good_gray, 6, 4, PNG_FORMAT_GRAY, &len);
	file_in("watched", "first.png", png, len);
	snprintf(params, sizeof params, "dir: %s/watched, watch: true, "
		 "poll: 5ms, format: gray", dir);
	watch_run_t w = {.params = params};
	cap_reset(); /* no count of an earlier run may satisfy wait_frames */
	pthread_t t;
	pthread_create(&t, NULL, watch_thread, &w);
	CHECK(wait_frames(1));
	/* renamed in (IN_MOVED_TO), written in place (IN_CLOSE_WRITE), a
	 * bad one, a name that is no image, then one more good one */
	file_in("watched", ".partial", png, len);
	snprintf(tmp, sizeof tmp, "%s/watched/.partial", dir);
	snprintf(p, sizeof p, "%s/watched/second.png", dir);
	CHECK_INT(rename(tmp, p), 0);
	CHECK(wait_frames(2));
	uint8_t *jpg = cap_jpeg_encode(good_gray, 6, 4, 1, &len);
	file_in("watched", "third.jpg", jpg, len);
	file_in("watched", "broken.png", "\x89PNG\r\n\x1a\nbroken", 14);
	file_in("watched", "readme.txt", "hello", 5);
	file_in("watched", "fourth.png", png, 0); /* zero bytes: an error */
	free(png);
	png = cap_png_encode(good_rgb, 6, 4, PNG_FORMAT_RGB, &len);
	file_in("watched", "fifth.png", png, len);
	CHECK(wait_frames(4));
	tlcm_request_stop();
	pthread_join(t, NULL);
	CHECK_INT(w.rc, 0);
	CHECK_UINT(cap_rec.n, 4);
	const char *order[] = {"first.png", "second.png", "third.jpg",
			       "fifth.png"};
	for (size_t i = 0; i < 4 && i < cap_rec.n; i++) {
		CHECK_STR(cap_rec.frames[i].source, order[i]);
		CHECK_INT(cap_rec.frames[i].format, 0);
	}
	CHECK_CONTAINS(cap_rec.log, "broken.png: corrupt PNG");
	CHECK_CONTAINS(cap_rec.log, "fourth.png: empty file");
	CHECK_CONTAINS(cap_rec.describe, "\"errors\":2");
	CHECK_CONTAINS(cap_rec.describe, "\"watching\":true");
	tlcm_run_result_fini(&w.res);
	free(png);
	free(jpg);
}

int main(void)
{
	tlcm_log_level = TLCM_LOG_INFO;
	cap_rec.keep_pixels = true;
	snprintf(dir, sizeof dir, "/tmp/tlcm-capimg-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	image_module();
	decoders();
	mixed_directory();
	only_bad();
	startup_errors();
	watch();
	free(good_gray);
	free(good_rgb);
	cap_reset();
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	CHECK_INT(system(cmd), 0);
	return tlcm_test_done();
}
