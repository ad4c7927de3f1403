/* test_model_cli.c — `tinylcm model info|run|import` (engine/cli/model.c).
 *
 * Writes a small model and inputs, runs the tinylcm binary given as argv[1]
 * and checks its output: run --input (raw float32, several inputs, batches
 * and threads, --output selection) and run --idx (a gzip IDX file written
 * here, --start/--count, the model's preprocessing) against the plain-C
 * reference within 1e-4 relative; info's summary; and the errors: exit 1
 * with a message naming the file or output, exit 2 for usage mistakes.
 */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "nodes/features/model.h"
#include "tests/tlcm_test.h"
#include "tests/unit/model_build.h"
#include "tests/unit/ref_ops.h"

#define SHAPE(...)                                                      \
	(int32_t[]){__VA_ARGS__},                                       \
		(int)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t))
#define SIDE 6
#define NIMG 5

static const char *bin;
static char dir[] = "/tmp/tlcm-model-cli-XXXXXX";
static char model_path[128], raw_path[128], idx_path[128];

/* Run `tinylcm ARGS` (stderr into the output); exit status. */
static int tinylcm(const char *args, char *out, size_t cap)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin, args);
	FILE *f = popen(cmd, "r");
	size_t n = f ? fread(out, 1, cap - 1, f) : 0;
	out[n] = 0;
	int st = f ? pclose(f) : -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* [1,6,6,1] -> conv 3x3 relu [1,4,4,3] -> GAP "embedding" [1,3] ->
 * FC "logits" [1,2]; scale 1/255, mean 0.5, std 0.5. */
static void write_model(void)
{
	tlcm_mb_t *b = tlcm_mb_new("cli");
	float w[27], bias[3] = {0.1f, -0.2f, 0.3f}, fw[6], fb[2] = {1, -1};
	for (int i = 0; i < 27; i++)
		w[i] = (float)(i % 7 - 3) / 5;
	for (int i = 0; i < 6; i++)
		fw[i] = (float)(i - 2) / 3;
	int x = tlcm_mb_tensor(b, "image", SHAPE(1, SIDE, SIDE, 1), NULL);
	int k = tlcm_mb_tensor(b, "conv.w", SHAPE(3, 3, 3, 1), w);
	int kb = tlcm_mb_tensor(b, "conv.b", SHAPE(3), bias);
	int c = tlcm_mb_tensor(b, "conv", SHAPE(1, 4, 4, 3), NULL);
	int e = tlcm_mb_tensor(b, "embedding", SHAPE(1, 3), NULL);
	int f = tlcm_mb_tensor(b, "fc.w", SHAPE(2, 3), fw);
	int fbi = tlcm_mb_tensor(b, "fc.b", SHAPE(2), fb);
	int l = tlcm_mb_tensor(b, "logits", SHAPE(1, 2), NULL);
	tlcm_op_t o = tlcm_mb_op(tlcm_OpType_Conv2D, x, k, kb, c);
	o.activation = tlcm_Activation_Relu;
	tlcm_mb_add_op(b, &o);
	o = tlcm_mb_op(tlcm_OpType_GlobalAveragePool, c, -1, -1, e);
	tlcm_mb_add_op(b, &o);
	o = tlcm_mb_op(tlcm_OpType_FullyConnected, e, f, fbi, l);
	tlcm_mb_add_op(b, &o);
	int outs[2] = {e, l};
	tlcm_mb_io(b, x, outs, 2);
	float half = 0.5f;
	tlcm_mb_prep(b, 1.0f / 255, &half, 1, &half, 1);
	size_t len;
	void *buf = tlcm_mb_finish(b, &len);
	FILE *fp = fopen(model_path, "wb");
	CHECK(fp && fwrite(buf, 1, len, fp) == len);
	if (fp)
		fclose(fp);
	free(buf);
}

static uint8_t pixel(int img, int p)
{
	return (uint8_t)((img * 53 + p * 29) % 256);
}

static void write_inputs(float *raw, size_t nraw)
{
	FILE *fp = fopen(raw_path, "wb");
	CHECK(fp && fwrite(raw, sizeof *raw, nraw, fp) == nraw);
	if (fp)
		fclose(fp);
	gzFile gz = gzopen(idx_path, "wb");
	uint8_t head[16] = {0, 0, 8, 3, 0, 0, 0, NIMG, 0, 0, 0, SIDE,
			    0, 0, 0, SIDE};
	gzwrite(gz, head, sizeof head);
	for (int i = 0; i < NIMG; i++)
		for (int p = 0; p < SIDE * SIDE; p++) {
			uint8_t v = pixel(i, p);
			gzwrite(gz, &v, 1);
		}
	gzclose(gz);
}

/* Compare line by line: indices first.., the named outputs with ref. */
static void check_lines(const char *what, const char *out,
			const tlcm_model_t *m, const float *inputs,
			size_t first, size_t n, const char *only)
{
	const char *p = out;
	size_t lines = 0;
	for (size_t i = 0; i < n; i++) {
		const char *nl = strchr(p, '\n');
		cJSON *j = nl ? cJSON_ParseWithLength(p, (size_t)(nl - p)) : NULL;
		p = nl ? nl + 1 : p + strlen(p);
		if (!j) {
			TLCM__FAIL("%s: line %zu is not JSON: %s", what, i, out);
			return;
		}
		lines++;
		const cJSON *idx = cJSON_GetObjectItemCaseSensitive(j, "index");
		CHECK(cJSON_IsNumber(idx) && (size_t)idx->valuedouble == first + i);
		float e[3], l[2];
		float *outs[2] = {e, l};
		tlcm_ref_run(m, 1, inputs + i * SIDE * SIDE, outs);
		for (size_t k = 0; k < m->noutputs; k++) {
			const char *name = m->tensors[m->outputs[k]].name;
			const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, name);
			bool want = !only || !strcmp(only, name);
			CHECK(want == (a != NULL));
			if (!a)
				continue;
			size_t sz = m->tensors[m->outputs[k]].size;
			CHECK_INT(cJSON_GetArraySize(a), sz);
			for (size_t q = 0; q < sz; q++) {
				double v = cJSON_GetArrayItem(a, (int)q)->valuedouble;
				tlcm_test_checks++;
				if (!(fabs(v - outs[k][q]) <=
				      1e-4 * fmax(1, fabs(outs[k][q]))))
					TLCM__FAIL("%s: input %zu %s[%zu]: %g, "
						   "reference %g", what, i, name,
						   q, v, outs[k][q]);
			}
		}
		cJSON_Delete(j);
	}
	CHECK_INT(lines, n);
	CHECK_STR(p, ""); /* nothing more */
}

static void test_run(const tlcm_model_t *m)
{
	enum { K = 3 };
	float raw[K * SIDE * SIDE], pre[NIMG * SIDE * SIDE];
	for (int i = 0; i < K * SIDE * SIDE; i++)
		raw[i] = (float)((i * 37) % 41 - 20) / 10;
	for (int i = 0; i < NIMG; i++)
		for (int p = 0; p < SIDE * SIDE; p++)
			pre[i * SIDE * SIDE + p] =
				((float)pixel(i, p) * (1.0f / 255) - 0.5f) / 0.5f;
	write_inputs(raw, K * SIDE * SIDE);
	static char out[1 << 16], args[512];
	snprintf(args, sizeof args, "model run %s --input %s", model_path,
		 raw_path);
	CHECK_INT(tinylcm(args, out, sizeof out), 0);
	check_lines("run --input", out, m, raw, 0, K, NULL);
	snprintf(args, sizeof args, "model run %s --input %s --batch 2 "
		 "--threads 2 --output logits", model_path, raw_path);
	CHECK_INT(tinylcm(args, out, sizeof out), 0);
	check_lines("run --input --batch 2 --threads 2 --output logits", out, m,
		    raw, 0, K, "logits");
	snprintf(args, sizeof args, "model run %s --idx %s", model_path,
		 idx_path);
	CHECK_INT(tinylcm(args, out, sizeof out), 0);
	check_lines("run --idx", out, m, pre, 0, NIMG, NULL);
	snprintf(args, sizeof args, "model run %s --idx %s --start 1 --count 2"
		 " --output embedding --batch 4", model_path, idx_path);
	CHECK_INT(tinylcm(args, out, sizeof out), 0);
	check_lines("run --idx --start 1 --count 2", out, m,
		    pre + SIDE * SIDE, 1, 2, "embedding");
}

/* `tinylcm ARGS` must exit with status and print msg. */
static void fail_with(int status, const char *msg, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail_with(int status, const char *msg, const char *fmt, ...)
{
	static char out[1 << 14];
	char args[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	int st = tinylcm(args, out, sizeof out);
	tlcm_test_checks++;
	if (st != status)
		TLCM__FAIL("`tinylcm %s`: exit %d, expected %d: %s", args, st,
			   status, out);
	CHECK_CONTAINS(out, msg);
}

static void test_info_and_errors(void)
{
	static char out[1 << 16], args[512];
	snprintf(args, sizeof args, "model info %s", model_path);
	CHECK_INT(tinylcm(args, out, sizeof out), 0);
	CHECK_CONTAINS(out, "input        0 'image' [1,6,6,1]");
	CHECK_CONTAINS(out, "'embedding' [1,3]");
	CHECK_CONTAINS(out, "parameters   38 ");
	CHECK_CONTAINS(out, "scale 0.00392157 mean [0.5] std [0.5]");
	CHECK_CONTAINS(out, "Conv2D");

	const char *M = model_path, *R = raw_path, *I = idx_path;
	fail_with(1, "/nonexistent.f32: cannot open",
		  "model run %s --input /nonexistent.f32", M);
	fail_with(1, "has no output 'nope'; its outputs are: 'embedding' "
		  "'logits'", "model run %s --input %s --output nope", M, R);
	fail_with(1, "/nonexistent.gz", "model run %s --idx /nonexistent.gz",
		  M);
	fail_with(1, "--start 9 is past the 5 images",
		  "model run %s --idx %s --start 9", M, I);
	fail_with(2, "run needs one of --idx IMAGES or --input",
		  "model run %s", M);
	fail_with(2, "--threads wants a whole number in 1..256, got '0'",
		  "model run %s --input %s --threads 0", M, R);
	fail_with(2, "unknown option --bogus",
		  "model run %s --input %s --bogus", M, R);
	fail_with(1, "/nonexistent.tlm: cannot open",
		  "model info /nonexistent.tlm");
	fail_with(1, "not a valid TinyLCM model", "model info %s", R);
	fail_with(1, "tinylcm model: ", "model import %s -o %s/never.tlm", R,
		  dir);
	fail_with(2, "import needs IN.tflite -o OUT.tlm", "model import %s", R);
	fail_with(2, "unknown subcommand 'frobnicate'", "model frobnicate");
	/* a raw file whose size is not a whole number of inputs */
	char odd[160];
	snprintf(odd, sizeof odd, "%s/odd.f32", dir);
	FILE *fp = fopen(odd, "wb");
	fwrite("0123456789", 1, 10, fp);
	fclose(fp);
	fail_with(1, "10 bytes is not a whole number of inputs: expected a "
		  "multiple of 144 (float32 [1,6,6,1])",
		  "model run %s --input %s", M, odd);
	unlink(odd);
	CHECK_INT(tinylcm("help model", out, sizeof out), 0);
	CHECK_CONTAINS(out, "tinylcm model run FILE");
	CHECK_INT(tinylcm("--help", out, sizeof out), 0);
	CHECK_CONTAINS(out, "model ");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_model_cli TINYLCM\n");
		return 2;
	}
	bin = argv[1];
	if (!mkdtemp(dir))
		return 1;
	snprintf(model_path, sizeof model_path, "%s/m.tlm", dir);
	snprintf(raw_path, sizeof raw_path, "%s/in.f32", dir);
	snprintf(idx_path, sizeof idx_path, "%s/img.idx.gz", dir);
	write_model();
	char why[512];
	tlcm_model_t *m = NULL;
	CHECK_INT(tlcm_model_load(&m, model_path, why, sizeof why), 0);
	if (m) {
		test_run(m);
		test_info_and_errors();
	}
	tlcm_model_free(m);
	unlink(model_path);
	unlink(raw_path);
	unlink(idx_path);
	rmdir(dir);
	return tlcm_test_done();
}
