/* test_capture_idx.c — node capture.idx on the real Fashion-MNIST t10k
 * split (every frame checked against an independent zlib reading of the
 * files: pixels, labels, index, ids, trace ids, time) and on tiny IDX files
 * the test writes: start/count, class filters, shuffle determinism, loop,
 * rate, raw and RGB IDX; io_uring did the reading; and a corpus of bad
 * files (wrong magic, truncated/corrupt gzip, truncated raw data, dims and
 * label-count mismatches, empty, missing, ...) that must each fail the
 * start with a message naming the file and the problem.
 */
#define _GNU_SOURCE
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "engine/io.h"
#include "engine/log.h"
#include "tests/tlcm_test.h"
#include "tests/unit/capture_helpers.h"

#define FMNIST "/usr/share/datasets/fashion-mnist/"
#define T10K_IMAGES FMNIST "t10k-images-idx3-ubyte.gz"
#define T10K_LABELS FMNIST "t10k-labels-idx1-ubyte.gz"

static char dir[64];

/* ---- reference data and file builders ------------------------------- */

/* The whole decompressed file, read with gzread (independent of the node's
 * reader). */
static uint8_t *gz_slurp(const char *path, size_t *len)
{
	gzFile f = gzopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 20, n = 0;
	uint8_t *b = malloc(cap);
	int k;
	while (b && (k = gzread(f, b + n, (unsigned)(cap - n))) > 0) {
		n += (size_t)k;
		if (n == cap)
			b = realloc(b, cap *= 2);
	}
	gzclose(f);
	*len = n;
	return b;
}

static uint8_t *gzip_bytes(const void *in, size_t n, size_t *out_len)
{
	z_stream z = {0};
	deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
	size_t cap = deflateBound(&z, (uLong)n) + 64;
	uint8_t *out = malloc(cap);
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	CHECK_INT(deflate(&z, Z_FINISH), Z_STREAM_END);
	*out_len = cap - z.avail_out;
	deflateEnd(&z);
	return out;
}

/* An IDX file: header (type, dims) + data. */
static uint8_t *idx_bytes(uint8_t type, unsigned nd, const uint32_t *dims,
			  const uint8_t *data, size_t n, size_t *len)
{
	*len = 4 + 4 * nd + n;
	uint8_t *b = malloc(*len);
	b[0] = b[1] = 0;
	b[2] = type;
	b[3] = (uint8_t)nd;
	for (unsigned i = 0; i < nd; i++) {
		b[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
		b[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
		b[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
		b[7 + 4 * i] = (uint8_t)dims[i];
	}
	if (n)
		memcpy(b + 4 + 4 * nd, data, n);
	return b;
}

static void path_of(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", dir, name);
}

/* Write an IDX file (gzip when name ends in .gz). */
static void write_idx(const char *name, uint8_t type, unsigned nd,
		      const uint32_t *dims, const uint8_t *data, size_t n)
{
	char p[256];
	size_t len, glen;
	path_of(p, sizeof p, name);
	uint8_t *b = idx_bytes(type, nd, dims, data, n, &len);
	if (strstr(name, ".gz")) {
		uint8_t *g = gzip_bytes(b, len, &glen);
		cap_write_file(p, g, glen);
		free(g);
	} else {
		cap_write_file(p, b, len);
	}
	free(b);
}

/* tiny.gz: 10 images of 3x2 whose pixels are (i*16 + k), labels i % 4 */
static void write_tiny(void)
{
	uint8_t px[10 * 6], lab[10];
	for (int i = 0; i < 10; i++) {
		for (int k = 0; k < 6; k++)
			px[i * 6 + k] = (uint8_t)(i * 16 + k);
		lab[i] = (uint8_t)(i % 4);
	}
	write_idx("tiny-images.gz", 0x08, 3, (uint32_t[]){10, 3, 2}, px,
		  sizeof px);
	write_idx("tiny-labels.gz", 0x08, 1, (uint32_t[]){10}, lab,
		  sizeof lab);
	write_idx("tiny-images.raw", 0x08, 3, (uint32_t[]){10, 3, 2}, px,
		  sizeof px);
}

static int run_idx(const char *params, double duration,
		   tlcm_run_result_t *res)
{
	char yaml[2048];
	snprintf(yaml, sizeof yaml,
		 "graph: capidx\n"
		 "settings: { introspect: 'off', workers: 2 }\n"
		 "nodes:\n"
		 "  c: { type: spy.idx, params: { %s } }\n"
		 "  s: { type: capsink }\n"
		 "edges: [ { from: c.out, to: s.in } ]\n", params);
	return cap_run(yaml, duration, res);
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the real dataset ------------------------------------------------- */

static uint8_t *ref_images, *ref_labels;

static void fmnist_full(void)
{
	size_t ilen, llen;
	ref_images = gz_slurp(T10K_IMAGES, &ilen);
	ref_labels = gz_slurp(T10K_LABELS, &llen);
	if (!ref_images || !ref_labels)
		tlcm_test_skip("Fashion-MNIST not installed (Debian package "
			       "dataset-fashion-mnist)");
	CHECK_UINT(ilen, 16 + 10000 * 784);
	CHECK_UINT(llen, 8 + 10000);

	tlcm_io_stats_t a, b;
	tlcm_io_stats(&a);
	tlcm_run_result_t res;
	uint64_t t0 = realtime_ns();
	CHECK_INT(run_idx("images: " T10K_IMAGES ", labels: " T10K_LABELS, 0,
			  &res), 0);
	uint64_t t1 = realtime_ns();
	tlcm_io_stats(&b);
	CHECK_UINT(atomic_load(&cap_rec.count), 10000);
	CHECK_UINT(cap_rec.n, 10000);
	CHECK_INT(cap_rec.bad, 0);
	if (cap_rec.bad)
		fprintf(stderr, "bad frame: %s\n", cap_rec.bad_why);
	size_t wrong_label = 0, wrong_pixels = 0, wrong_index = 0,
	       not_increasing = 0, bad_time = 0, bad_shape = 0;
	for (size_t i = 0; i < cap_rec.n; i++) {
		const cap_frame_t *f = &cap_rec.frames[i];
		wrong_index += f->index != i;
		wrong_label += !f->label_present ||
			       f->label != ref_labels[8 + i];
		wrong_pixels += f->checksum !=
				cap_fnv1a(ref_images + 16 + i * 784, 784);
		not_increasing += i && f->id <= cap_rec.frames[i - 1].id;
		bad_time += f->time_ns < t0 || f->time_ns > t1;
		bad_shape += f->width != 28 || f->height != 28 ||
			     f->format != 0 ||
			     strcmp(f->source, "t10k-images-idx3-ubyte.gz");
	}
	CHECK_UINT(wrong_index, 0);
	CHECK_UINT(wrong_label, 0);
	CHECK_UINT(wrong_pixels, 0);
	CHECK_UINT(not_increasing, 0);
	CHECK_UINT(bad_time, 0);
	CHECK_UINT(bad_shape, 0);
	CHECK_CONTAINS(cap_rec.describe, "\"emitted\":10000");
	/* the files were read through the io_uring reactor */
	if (b.uring)
		CHECK(b.submissions > a.submissions);
	else
		tlcm_test_skip("io_uring unavailable on this kernel");
	fprintf(stderr, "fmnist t10k: 10000 frames checked, io_uring "
		"submissions %llu\n",
		(unsigned long long)(b.submissions - a.submissions));
	tlcm_run_result_fini(&res);
}

/* start/count slice + include/exclude on the real labels */
static void fmnist_filters(void)
{
	tlcm_run_result_t res;
	size_t want[600], nw = 0;
	for (size_t i = 100; i < 600; i++)
		if (ref_labels[8 + i] == 8 || ref_labels[8 + i] == 9)
			want[nw++] = i;
	CHECK(nw > 50);
	const char *variants[] = {
		"include: [8, 9]",
		"exclude: [0, 1, 2, 3, 4, 5, 6, 7]",
		"include: \"8,9,3\", exclude: [3]",
	};
	for (int v = 0; v < 3; v++) {
		char params[512];
		snprintf(params, sizeof params, "images: " T10K_IMAGES
			 ", labels: " T10K_LABELS ", start: 100, count: 500, "
			 "%s", variants[v]);
		CHECK_INT(run_idx(params, 0, &res), 0);
		CHECK_UINT(cap_rec.n, nw);
		size_t mism = 0;
		for (size_t i = 0; i < cap_rec.n && i < nw; i++)
			mism += cap_rec.frames[i].index != want[i] ||
				cap_rec.frames[i].label !=
					ref_labels[8 + want[i]] ||
				cap_rec.frames[i].checksum !=
					cap_fnv1a(ref_images + 16 +
						  want[i] * 784, 784);
		CHECK_UINT(mism, 0);
		tlcm_run_result_fini(&res);
	}
	/* start/count alone: indices 9990..9999 then the end of stream */
	CHECK_INT(run_idx("images: " T10K_IMAGES ", start: 9990", 0, &res), 0);
	CHECK_UINT(cap_rec.n, 10);
	for (size_t i = 0; i < cap_rec.n; i++) {
		CHECK_UINT(cap_rec.frames[i].index, 9990 + i);
		CHECK(!cap_rec.frames[i].label_present); /* no labels */
		CHECK_INT(cap_rec.frames[i].label, -1);
	}
	tlcm_run_result_fini(&res);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void shuffled(const char *seed, uint64_t *order, size_t n)
{
	char params[512];
	tlcm_run_result_t res;
	snprintf(params, sizeof params, "images: " T10K_IMAGES ", labels: "
		 T10K_LABELS ", count: 1000, shuffle: true, seed: %s", seed);
	CHECK_INT(run_idx(params, 0, &res), 0);
	CHECK_UINT(cap_rec.n, n);
	size_t mism = 0;
	for (size_t i = 0; i < n && i < cap_rec.n; i++) {
		order[i] = cap_rec.frames[i].index;
		mism += cap_rec.frames[i].label !=
			ref_labels[8 + cap_rec.frames[i].index];
	}
	CHECK_UINT(mism, 0); /* labels travel with their image */
	tlcm_run_result_fini(&res);
}

static void fmnist_shuffle(void)
{
	static uint64_t a[1000], b[1000], c[1000], s[1000];
	shuffled("42", a, 1000);
	shuffled("42", b, 1000);
	shuffled("43", c, 1000);
	CHECK(memcmp(a, b, sizeof a) == 0); /* same seed, same order */
	CHECK(memcmp(a, c, sizeof a) != 0); /* another seed, another */
	size_t in_place = 0;
	for (size_t i = 0; i < 1000; i++)
		in_place += a[i] == i;
	CHECK(in_place < 50); /* shuffled, not the identity */
	memcpy(s, a, sizeof s);
	qsort(s, 1000, sizeof s[0], cmp_u64);
	size_t not_perm = 0;
	for (size_t i = 0; i < 1000; i++)
		not_perm += s[i] != i;
	CHECK_UINT(not_perm, 0); /* each image exactly once */
}

/* ---- tiny files ------------------------------------------------------- */

static void tiny(void)
{
	char params[1024], im[256], lb[256], raw[256];
	tlcm_run_result_t res;
	path_of(im, sizeof im, "tiny-images.gz");
	path_of(lb, sizeof lb, "tiny-labels.gz");
	path_of(raw, sizeof raw, "tiny-images.raw");

	/* raw (uncompressed) IDX with labels from a gzip one */
	snprintf(params, sizeof params, "images: %s, labels: %s", raw, lb);
	CHECK_INT(run_idx(params, 0, &res), 0);
	CHECK_UINT(cap_rec.n, 10);
	for (size_t i = 0; i < cap_rec.n; i++) {
		uint8_t px[6];
		for (int k = 0; k < 6; k++)
			px[k] = (uint8_t)(i * 16 + (size_t)k);
		CHECK_UINT(cap_rec.frames[i].checksum, cap_fnv1a(px, 6));
		CHECK_UINT(cap_rec.frames[i].width, 2);
		CHECK_UINT(cap_rec.frames[i].height, 3);
		CHECK_INT(cap_rec.frames[i].label, (int)(i % 4));
		CHECK_STR(cap_rec.frames[i].source, "tiny-images.raw");
	}
	tlcm_run_result_fini(&res);

	/* loop: indices cycle until the run is stopped */
	snprintf(params, sizeof params, "images: %s, loop: true, start: 2, "
		 "count: 3", im);
	CHECK_INT(run_idx(params, 0.3, &res), 0);
	CHECK(cap_rec.n > 6);
	size_t off = 0;
	for (size_t i = 0; i < cap_rec.n; i++)
		off += cap_rec.frames[i].index != 2 + i % 3;
	CHECK_UINT(off, 0);
	tlcm_run_result_fini(&res);

	/* loop + shuffle: every pass is a permutation, passes differ */
	snprintf(params, sizeof params, "images: %s, loop: true, shuffle: "
		 "true, seed: 5", im);
	CHECK_INT(run_idx(params, 0.3, &res), 0);
	CHECK(cap_rec.n >= 30);
	size_t not_perm = 0, differ = 0;
	for (size_t p = 0; p + 1 < cap_rec.n / 10; p++) {
		uint64_t seen = 0;
		for (size_t i = 0; i < 10; i++)
			seen |= 1ull << cap_rec.frames[p * 10 + i].index;
		not_perm += seen != 0x3FF;
		for (size_t i = 0; i < 10; i++)
			if (cap_rec.frames[p * 10 + i].index !=
			    cap_rec.frames[(p + 1) * 10 + i].index) {
				differ++;
				break;
			}
	}
	CHECK_UINT(not_perm, 0);
	CHECK(differ > 0);
	tlcm_run_result_fini(&res);

	/* rate: 10 frames at 200 Hz cannot take less than 9 periods (a
	 * lower bound only: a slow machine is never a failure) */
	snprintf(params, sizeof params, "images: %s, rate_hz: 200", im);
	CHECK_INT(run_idx(params, 0, &res), 0);
	CHECK_UINT(cap_rec.n, 10);
	if (cap_rec.n == 10) {
		uint64_t span = cap_rec.frames[9].time_ns -
				cap_rec.frames[0].time_ns;
		fprintf(stderr, "rate 200 Hz: 10 frames over %.1f ms\n",
			(double)span / 1e6);
		CHECK(span >= 9 * 5000000ull * 9 / 10);
	}
	tlcm_run_result_fini(&res);

	/* RGB items (count x rows x cols x 3) */
	uint8_t rgb[2 * 2 * 2 * 3];
	for (size_t i = 0; i < sizeof rgb; i++)
		rgb[i] = (uint8_t)(i * 5);
	write_idx("rgb.gz", 0x08, 4, (uint32_t[]){2, 2, 2, 3}, rgb,
		  sizeof rgb);
	path_of(im, sizeof im, "rgb.gz");
	snprintf(params, sizeof params, "images: %s", im);
	CHECK_INT(run_idx(params, 0, &res), 0);
	CHECK_UINT(cap_rec.n, 2);
	CHECK_INT(cap_rec.frames[0].format, 1);
	CHECK_UINT(cap_rec.frames[1].checksum, cap_fnv1a(rgb + 12, 12));
	tlcm_run_result_fini(&res);
}

/* ---- bad inputs ------------------------------------------------------- */

typedef struct {
	const char *what;   /* test case */
	const char *params; /* @ = the directory */
	const char *expect; /* in the log */
	const char *file;   /* named in the log ("" = none) */
} bad_case_t;

/* tmpl with every '@' replaced by the test directory */
static void subst(char *out, size_t cap, const char *tmpl)
{
	size_t n = 0;
	for (; *tmpl && n + sizeof dir < cap; tmpl++) {
		if (*tmpl == '@')
			n += (size_t)snprintf(out + n, cap - n, "%s", dir);
		else
			out[n++] = *tmpl;
	}
	out[n] = 0;
}

static void write_bad_corpus(void)
{
	uint8_t px[5 * 4], lab[5] = {0, 1, 2, 3, 4};
	for (size_t i = 0; i < sizeof px; i++)
		px[i] = (uint8_t)i;
	size_t len, glen;
	char p[256];

	/* wrong magic, raw and gzip */
	uint8_t wrong[16] = {1, 2, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1};
	path_of(p, sizeof p, "magic.raw");
	cap_write_file(p, wrong, sizeof wrong);
	uint8_t *g = gzip_bytes(wrong, sizeof wrong, &glen);
	path_of(p, sizeof p, "magic.gz");
	cap_write_file(p, g, glen);
	free(g);

	/* truncated gzip: half of a real labels file */
	size_t rl;
	uint8_t *real = tlcm_test_read_file(T10K_LABELS, &rl);
	path_of(p, sizeof p, "half.gz");
	cap_write_file(p, real, rl / 2);
	/* the gzip trailer cut off: the data is all there */
	path_of(p, sizeof p, "notrailer.gz");
	cap_write_file(p, real, rl - 6);
	/* corrupt deflate data */
	for (size_t i = rl / 3; i < rl / 3 + 64; i++)
		real[i] ^= 0x5A;
	path_of(p, sizeof p, "corrupt.gz");
	cap_write_file(p, real, rl);
	free(real);

	/* raw data shorter / longer than the header says */
	uint8_t *b = idx_bytes(0x08, 3, (uint32_t[]){5, 2, 2}, px, 12, &len);
	path_of(p, sizeof p, "short.raw");
	cap_write_file(p, b, len);
	free(b);
	write_idx("long.raw", 0x08, 3, (uint32_t[]){4, 2, 2}, px, 20);
	b = idx_bytes(0x08, 3, (uint32_t[]){5, 2, 2}, px, 20, &len);
	path_of(p, sizeof p, "headercut.raw");
	cap_write_file(p, b, 9); /* inside the dims */
	free(b);

	write_idx("good.gz", 0x08, 3, (uint32_t[]){5, 2, 2}, px, 20);
	write_idx("labels5.gz", 0x08, 1, (uint32_t[]){5}, lab, 5);
	write_idx("labels4.gz", 0x08, 1, (uint32_t[]){4}, lab, 4);
	write_idx("labels2d.gz", 0x08, 2, (uint32_t[]){5, 1}, lab, 5);
	write_idx("twodims.gz", 0x08, 2, (uint32_t[]){5, 4}, px, 20);
	write_idx("float.gz", 0x0D, 3, (uint32_t[]){1, 2, 2}, px, 16);
	write_idx("type7.gz", 0x07, 3, (uint32_t[]){1, 2, 2}, px, 4);
	write_idx("zerodim.gz", 0x08, 3, (uint32_t[]){5, 0, 2}, px, 0);
	write_idx("noimages.gz", 0x08, 3, (uint32_t[]){0, 2, 2}, px, 0);
	write_idx("fivedims.gz", 0x08, 5, (uint32_t[]){1, 1, 1, 1, 1}, px, 1);
	/* a header declaring terabytes, with 4 bytes of data */
	write_idx("huge.gz", 0x08, 3,
		  (uint32_t[]){0xFFFFFFFFu, 0xFFFFu, 0xFFFFu}, px, 4);
	path_of(p, sizeof p, "empty.gz");
	cap_write_file(p, "", 0);
	path_of(p, sizeof p, "adir.gz");
	mkdir(p, 0755);
}

static void bad_inputs(void)
{
	write_bad_corpus();
	static const bad_case_t cases[] = {
		{"wrong magic (raw)", "images: @/magic.raw",
		 "not an IDX file: it starts with bytes 01 02 08 03",
		 "magic.raw"},
		{"wrong magic (gzip)", "images: @/magic.gz",
		 "not an IDX file", "magic.gz"},
		{"truncated gzip", "images: @/good.gz, labels: "
		 "@/half.gz", "truncated: the header declares 10000 items",
		 "half.gz"},
		{"gzip trailer missing", "images: @/notrailer.gz",
		 "the gzip end (checksum, size) is missing", "notrailer.gz"},
		{"corrupt gzip", "images: @/corrupt.gz", "corrupt gzip data",
		 "corrupt.gz"},
		{"truncated raw data", "images: @/short.raw",
		 "truncated: the header declares 5 items of 2x2 (36 bytes with "
		 "the header) but the file has 28 bytes", "short.raw"},
		{"data beyond the header's dims", "images: @/long.raw",
		 "more data than the header declares", "long.raw"},
		{"file ends inside the header", "images: @/headercut.raw",
		 "inside the IDX header", "headercut.raw"},
		{"labels count mismatch", "images: @/good.gz, labels: "
		 "@/labels4.gz", "has 4 labels but", "labels4.gz"},
		{"labels with 2 dims", "images: @/good.gz, labels: "
		 "@/labels2d.gz", "labels must be one unsigned byte",
		 "labels2d.gz"},
		{"images with 2 dims", "images: @/twodims.gz",
		 "items of 4; images must be rows x cols", "twodims.gz"},
		{"labels file as images", "images: @/labels5.gz",
		 "images must be rows x cols", "labels5.gz"},
		{"float images", "images: @/float.gz",
		 "element type 0x0d; images must be unsigned bytes",
		 "float.gz"},
		{"unknown type", "images: @/type7.gz",
		 "unknown IDX element type 0x07", "type7.gz"},
		{"zero dimension", "images: @/zerodim.gz", "dimension 1 is 0",
		 "zerodim.gz"},
		{"no images", "images: @/noimages.gz", "holds no images",
		 "noimages.gz"},
		{"five dims", "images: @/fivedims.gz",
		 "IDX header has 5 dimensions, expected 1 to 4",
		 "fivedims.gz"},
		{"huge header", "images: @/huge.gz",
		 "the header declares more than", "huge.gz"},
		{"zero-byte file", "images: @/empty.gz", "empty file (0 bytes)",
		 "empty.gz"},
		{"missing file", "images: @/nonexistent.gz",
		 "no such file or directory", "nonexistent.gz"},
		{"a directory", "images: @/adir.gz", "not a regular file",
		 "adir.gz"},
		{"start past the end", "images: @/good.gz, start: 5",
		 "start 5 is past the last image", "good.gz"},
		{"count past the end", "images: @/good.gz, start: 1, "
		 "count: 5", "start 1 + count 5 runs past the end", "good.gz"},
		{"filter without labels", "images: @/good.gz, include: [1]",
		 "needs a labels file", ""},
		{"bad class number", "images: @/good.gz, labels: "
		 "@/labels5.gz, exclude: [1, x]",
		 "exclude: 'x' is not a class number", ""},
		{"nothing selected", "images: @/good.gz, labels: "
		 "@/labels5.gz, include: [7]",
		 "has a class that include/exclude let through", "good.gz"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const bad_case_t *c = &cases[i];
		char params[1024];
		tlcm_run_result_t res;
		subst(params, sizeof params, c->params);
		int rc = run_idx(params, 0, &res);
		if (rc == 0 || !strstr(res.why, "failed to start") ||
		    !strstr(cap_rec.log, c->expect) ||
		    !strstr(cap_rec.log, c->file))
			fprintf(stderr, "case '%s': rc %d, why '%s', "
				"log:\n%s\n", c->what, rc, res.why,
				cap_rec.log);
		CHECK(rc != 0);
		CHECK_CONTAINS(res.why, "node 'c' (type spy.idx) failed to "
			       "start");
		CHECK_CONTAINS(cap_rec.log, c->expect);
		CHECK_CONTAINS(cap_rec.log, c->file);
		CHECK_UINT(cap_rec.n, 0);
		tlcm_run_result_fini(&res);
	}
	/* the good file of the corpus does run */
	char params[512];
	tlcm_run_result_t res;
	snprintf(params, sizeof params, "images: %s/good.gz, labels: "
		 "%s/labels5.gz, exclude: [0]", dir, dir);
	CHECK_INT(run_idx(params, 0, &res), 0);
	CHECK_UINT(cap_rec.n, 4);
	tlcm_run_result_fini(&res);
}

int main(void)
{
	tlcm_log_level = TLCM_LOG_INFO;
	snprintf(dir, sizeof dir, "/tmp/tlcm-capidx-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	fmnist_full();
	fmnist_filters();
	fmnist_shuffle();
	write_tiny();
	tiny();
	bad_inputs();
	free(ref_images);
	free(ref_labels);
	cap_reset();
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	CHECK_INT(system(cmd), 0);
	return tlcm_test_done();
}
