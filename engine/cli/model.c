/* model.c — `tinylcm model info|run|import|keygen|sign|verify`: look at,
 * run and import models (nodes/features/model.h) outside a graph, and
 * make the keys and signed offers of model updates (nodes/updater/
 * verify.h; docs/models.md, "Signed updates").
 *
 * info prints the model's tensors, ops, input/outputs, parameter count and
 * preprocessing; run feeds inputs (IDX images, preprocessed with the
 * model's scale/mean/std, or raw float32 tensors) through the XNNPACK
 * runtime in batches and prints one JSON line per input; import converts
 * a .tflite file and checks the result loads. keygen makes an Ed25519
 * key pair (PREFIX.key, secret, for the core; PREFIX.pub for devices);
 * sign prints the signed offer of a file as the core serves it; verify
 * runs a device's checks on an offer and a file. Exit status as for the
 * other commands: 0 ok, 1 failure (with a message naming the problem), 2
 * usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "engine/error.h"
#include "nodes/capture/idx.h"
#include "nodes/features/model.h"
#include "nodes/features/tflite.h"
#include "nodes/features/xnn.h"
#include "nodes/updater/verify.h"

int tlcm_cli_model(int argc, char **argv);

#define WHY 1024

/* ---- helpers ------------------------------------------------------------- */

static int usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "tinylcm model: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (see tinylcm help model)\n");
	va_end(ap);
	return 2;
}

/* A whole non-negative number in [lo, hi]. */
static int parse_count(const char *opt, const char *s, long lo, long hi,
		       long *v)
{
	char *end;
	errno = 0;
	*v = s ? strtol(s, &end, 10) : 0;
	if (!s || !*s || *end || errno || *v < lo || *v > hi) {
		fprintf(stderr, "tinylcm model: %s wants a whole number in "
			"%ld..%ld, got '%s'\n", opt, lo, hi, s ? s : "");
		return 2;
	}
	return 0;
}

static int load_model(const char *path, tlcm_model_t **m)
{
	char why[WHY];
	int rc = tlcm_model_load(m, path, why, sizeof why);
	if (rc)
		fprintf(stderr, "tinylcm model: %s\n", why);
	return rc ? 1 : 0;
}

static void print_floats(const float *v, size_t n)
{
	putchar('[');
	for (size_t i = 0; i < n; i++) {
		if (i)
			putchar(',');
		if (isfinite(v[i]))
			printf("%.9g", (double)v[i]);
		else
			fputs("null", stdout); /* JSON has no NaN/inf */
	}
	putchar(']');
}

static const char *shape(const tlcm_tensor_t *t, char *buf, size_t cap)
{
	return tlcm_shape_str(t->shape, t->rank, buf, cap);
}

/* ---- info ---------------------------------------------------------------- */

static void print_op_params(const tlcm_model_t *m, const tlcm_op_t *o)
{
	const tlcm_tensor_t *w = o->nin > 1 ? &m->tensors[o->in[1]] : NULL;
	switch (o->type) {
	case tlcm_OpType_Conv2D:
	case tlcm_OpType_DepthwiseConv2D:
	case tlcm_OpType_AveragePool2D:
	case tlcm_OpType_MaxPool2D:
		if (o->type == tlcm_OpType_Conv2D ||
		    o->type == tlcm_OpType_DepthwiseConv2D)
			printf(" kernel %dx%d", (int)w->shape[1],
			       (int)w->shape[2]);
		else
			printf(" kernel %dx%d", o->kernel_h, o->kernel_w);
		printf(" stride %dx%d", o->stride_h, o->stride_w);
		if (o->dilation_h != 1 || o->dilation_w != 1)
			printf(" dilation %dx%d", o->dilation_h, o->dilation_w);
		if (o->pad_top || o->pad_bottom || o->pad_left || o->pad_right)
			printf(" pad t%d b%d l%d r%d", o->pad_top, o->pad_bottom,
			       o->pad_left, o->pad_right);
		if (o->type == tlcm_OpType_DepthwiseConv2D &&
		    o->depth_multiplier != 1)
			printf(" depth_multiplier %d", o->depth_multiplier);
		break;
	case tlcm_OpType_Clamp:
		printf(" min %g max %g", (double)o->clamp_min,
		       (double)o->clamp_max);
		break;
	case tlcm_OpType_Pad:
		printf(" pad t%d b%d l%d r%d value %g", o->pad_top,
		       o->pad_bottom, o->pad_left, o->pad_right,
		       (double)o->pad_value);
		break;
	default:
		break;
	}
	if (o->activation != tlcm_Activation_None)
		printf(" +%s", tlcm_Activation_name(o->activation));
}

static void print_per_channel(const char *name, const float *v, size_t n,
			      float def)
{
	printf(" %s ", name);
	if (n)
		print_floats(v, n);
	else
		printf("%g", (double)def);
}

static int model_info(int argc, char **argv)
{
	if (argc != 3)
		return usage_error("info takes one FILE");
	tlcm_model_t *m;
	if (load_model(argv[2], &m))
		return 1;
	char s[64];
	const tlcm_tensor_t *in = &m->tensors[m->input];
	size_t params = tlcm_model_param_count(m);
	printf("model        %s\n", m->name[0] ? m->name : "(unnamed)");
	if (m->description[0])
		printf("description  %s\n", m->description);
	printf("file         %s (%zu bytes)\n", m->origin, m->len);
	printf("input        %d '%s' %s\n", m->input, in->name,
	       shape(in, s, sizeof s));
	for (size_t k = 0; k < m->noutputs; k++) {
		const tlcm_tensor_t *y = &m->tensors[m->outputs[k]];
		printf("%-12s %d '%s' %s\n", k ? "" : "outputs", m->outputs[k],
		       y->name, shape(y, s, sizeof s));
	}
	printf("parameters   %zu (%.1f KiB of float32)\n", params,
	       (double)params * 4 / 1024);
	printf("preprocess   x = (pixel * scale - mean) / std: scale %g",
	       (double)m->input_scale);
	print_per_channel("mean", m->input_mean, m->nmean, 0);
	print_per_channel("std", m->input_std, m->nstd, 1);
	printf("\n\ntensors (%zu)\n", m->ntensors);
	for (size_t t = 0; t < m->ntensors; t++) {
		const tlcm_tensor_t *x = &m->tensors[t];
		const char *kind = x->data ? "const"
				   : (int)t == m->input ? "input"
				   : x->producer >= 0 ? "act" : "unused";
		printf("  %4zu %-6s %-18s %s\n", t, kind, shape(x, s, sizeof s),
		       x->name);
	}
	printf("\nops (%zu)\n", m->nops);
	for (size_t i = 0; i < m->nops; i++) {
		const tlcm_op_t *o = &m->ops[i];
		printf("  %4zu %-17s (", i, tlcm_OpType_name(o->type));
		for (int k = 0; k < o->nin; k++)
			printf("%s%d", k ? "," : "", o->in[k]);
		printf(") -> %d %s", o->out,
		       shape(&m->tensors[o->out], s, sizeof s));
		print_op_params(m, o);
		putchar('\n');
	}
	tlcm_model_free(m);
	return 0;
}

/* ---- run ----------------------------------------------------------------- */

typedef struct {
	const char *file;
	const char **outputs; /* names; none: every model output */
	size_t noutputs;
	long threads, batch;
	const char *idx, *input;
	long start, count;
	bool count_given;
} run_opts_t;

static int parse_run(int argc, char **argv, run_opts_t *o)
{
	memset(o, 0, sizeof *o);
	o->threads = o->batch = 1;
	o->outputs = calloc((size_t)argc, sizeof *o->outputs);
	if (!o->outputs)
		return 1;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		static const char *const known[] = {
			"--output", "--threads", "--batch", "--idx", "--input",
			"--start", "--count"};
		bool option = false;
		for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
			option |= !strcmp(a, known[k]);
		if (a[0] == '-' && !option)
			return usage_error("unknown option %s", a);
		if (option && !v)
			return usage_error("%s needs a value", a);
		int rc = 0;
		if (!strcmp(a, "--output"))
			o->outputs[o->noutputs++] = v;
		else if (!strcmp(a, "--threads"))
			rc = parse_count(a, v, 1, 256, &o->threads);
		else if (!strcmp(a, "--batch"))
			rc = parse_count(a, v, 1, 4096, &o->batch);
		else if (!strcmp(a, "--idx"))
			o->idx = v;
		else if (!strcmp(a, "--input"))
			o->input = v;
		else if (!strcmp(a, "--start"))
			rc = parse_count(a, v, 0, 1L << 31, &o->start);
		else if (!strcmp(a, "--count")) {
			rc = parse_count(a, v, 0, 1L << 31, &o->count);
			o->count_given = true;
		} else if (o->file)
			return usage_error("one model FILE at a time, got '%s' "
					   "too", a);
		else {
			o->file = a;
			continue;
		}
		if (rc)
			return rc;
		i++;
	}
	if (!o->file)
		return usage_error("run needs a model FILE");
	if (!o->idx == !o->input)
		return usage_error("run needs one of --idx IMAGES or --input "
				   "RAW.f32");
	if (o->input && (o->start || o->count_given))
		return usage_error("--start and --count go with --idx");
	return 0;
}

/* The inputs to run: n tensors, made one batch at a time by fill(). */
typedef struct source {
	size_t n;
	size_t first_index;        /* index printed for input 0 */
	const float *raw;          /* --input */
	const tlcm_idx_file_t *images; /* --idx */
	tlcm_prep_t prep;
} source_t;

static void fill(const source_t *s, const tlcm_model_t *m, size_t i,
		 size_t k, float *dst)
{
	size_t insz = m->tensors[m->input].size;
	if (s->raw) {
		memcpy(dst, s->raw + i * insz, k * insz * sizeof *dst);
		return;
	}
	size_t px = s->images->item_size;
	for (size_t j = 0; j < k; j++)
		tlcm_prep_pixels(&s->prep,
				 s->images->items + (s->first_index + i + j) * px,
				 1, dst + j * insz);
}

/* Resolve --output names to indices into m->outputs. */
static int pick_outputs(const tlcm_model_t *m, const run_opts_t *o,
			int *sel, size_t *nsel)
{
	if (!o->noutputs) {
		for (size_t k = 0; k < m->noutputs; k++)
			sel[k] = (int)k;
		*nsel = m->noutputs;
		return 0;
	}
	for (size_t i = 0; i < o->noutputs; i++) {
		sel[i] = tlcm_model_output_index(m, o->outputs[i]);
		if (sel[i] < 0) {
			fprintf(stderr, "tinylcm model: %s has no output '%s'; "
				"its outputs are:", m->origin, o->outputs[i]);
			for (size_t k = 0; k < m->noutputs; k++)
				fprintf(stderr, " '%s'",
					m->tensors[m->outputs[k]].name);
			fputc('\n', stderr);
			return 1;
		}
	}
	*nsel = o->noutputs;
	return 0;
}

static int run_all(const tlcm_model_t *m, const run_opts_t *o,
		   const source_t *s)
{
	char why[WHY];
	int *sel = calloc(m->noutputs + o->noutputs + 1, sizeof *sel);
	size_t nsel = 0;
	tlcm_xnn_t *x = NULL;
	int rc = sel ? pick_outputs(m, o, sel, &nsel) : 1;
	if (!rc && tlcm_xnn_new(&x, m, (int)o->threads, why, sizeof why)) {
		fprintf(stderr, "tinylcm model: %s\n", why);
		rc = 1;
	}
	for (size_t i = 0; !rc && i < s->n; i += (size_t)o->batch) {
		size_t k = s->n - i < (size_t)o->batch ? s->n - i
						       : (size_t)o->batch;
		tlcm_xnn_batch_t *b;
		if (tlcm_xnn_batch(x, k, &b, why, sizeof why) ||
		    (fill(s, m, i, k, b->input),
		     tlcm_xnn_run(x, b, why, sizeof why))) {
			fprintf(stderr, "tinylcm model: %s\n", why);
			rc = 1;
			break;
		}
		for (size_t j = 0; j < k; j++) {
			printf("{\"index\":%zu", s->first_index + i + j);
			for (size_t q = 0; q < nsel; q++) {
				const tlcm_tensor_t *y =
					&m->tensors[m->outputs[sel[q]]];
				printf(",\"%s\":", y->name);
				print_floats(b->outputs[sel[q]] + j * y->size,
					     y->size);
			}
			printf("}\n");
		}
	}
	tlcm_xnn_free(x);
	free(sel);
	return rc;
}

/* Whole file into memory. */
static int slurp(const char *path, void **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	*buf = NULL;
	*len = 0;
	if (!f) {
		fprintf(stderr, "tinylcm model: %s: cannot open: %s\n", path,
			strerror(errno));
		return 1;
	}
	size_t cap = 1 << 16;
	char *b = malloc(cap);
	while (b) {
		if (*len == cap) {
			char *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				b = NULL;
				break;
			}
			b = nb;
			cap *= 2;
		}
		size_t k = fread(b + *len, 1, cap - *len, f);
		*len += k;
		if (!k)
			break;
	}
	int bad = ferror(f);
	fclose(f);
	if (!b || bad) {
		fprintf(stderr, "tinylcm model: %s: %s\n", path,
			b ? "read error" : "out of memory");
		free(b);
		return 1;
	}
	*buf = b;
	return 0;
}

static int source_raw(const tlcm_model_t *m, const char *path, void **buf,
		      source_t *s)
{
	size_t len, insz = m->tensors[m->input].size;
	if (slurp(path, buf, &len))
		return 1;
	if (len % (insz * sizeof(float))) {
		char sh[64];
		fprintf(stderr, "tinylcm model: %s: %zu bytes is not a whole "
			"number of inputs: expected a multiple of %zu (float32 "
			"%s)\n", path, len, insz * sizeof(float),
			shape(&m->tensors[m->input], sh, sizeof sh));
		return 1;
	}
	s->raw = *buf;
	s->n = len / (insz * sizeof(float));
	return 0;
}

static int source_idx(const tlcm_model_t *m, const run_opts_t *o,
		      tlcm_idx_file_t *images, source_t *s)
{
	char why[WHY];
	if (tlcm_prep_init(&s->prep, m, why, sizeof why) ||
	    tlcm_idx_file_load(images, o->idx, why, sizeof why)) {
		fprintf(stderr, "tinylcm model: %s\n", why);
		return 1;
	}
	char dims[64];
	tlcm_idx_file_dims(images, dims, sizeof dims);
	if (images->type != 0x08 || images->ndims != 3 ||
	    images->dims[1] != s->prep.height ||
	    images->dims[2] != s->prep.width) {
		fprintf(stderr, "tinylcm model: %s: items are %s (type 0x%02x), "
			"the model %s wants %ux%u unsigned bytes (0x08)\n",
			o->idx, dims, images->type, m->origin, s->prep.height,
			s->prep.width);
		return 1;
	}
	if ((size_t)o->start > images->count) {
		fprintf(stderr, "tinylcm model: --start %ld is past the %zu "
			"images of %s\n", o->start, images->count, o->idx);
		return 1;
	}
	size_t left = images->count - (size_t)o->start;
	s->images = images;
	s->first_index = (size_t)o->start;
	s->n = o->count_given && (size_t)o->count < left ? (size_t)o->count
							  : left;
	return 0;
}

static int model_run(int argc, char **argv)
{
	run_opts_t o;
	int rc = parse_run(argc, argv, &o);
	tlcm_model_t *m = NULL;
	tlcm_idx_file_t images = {0};
	void *raw = NULL;
	source_t s = {0};
	if (!rc)
		rc = load_model(o.file, &m);
	if (!rc)
		rc = o.input ? source_raw(m, o.input, &raw, &s)
			     : source_idx(m, &o, &images, &s);
	if (!rc)
		rc = run_all(m, &o, &s);
	free(raw);
	tlcm_idx_file_free(&images);
	tlcm_model_free(m);
	free(o.outputs);
	return rc;
}

/* ---- import -------------------------------------------------------------- */

static int model_import(int argc, char **argv)
{
	const char *in = NULL, *out = NULL;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
			if (i + 1 >= argc)
				return usage_error("%s needs a file name",
						   argv[i]);
			out = argv[++i];
		} else if (argv[i][0] == '-') {
			return usage_error("unknown option %s", argv[i]);
		} else if (in) {
			return usage_error("one input file at a time, got '%s' "
					   "too", argv[i]);
		} else {
			in = argv[i];
		}
	}
	if (!in || !out)
		return usage_error("import needs IN.tflite -o OUT.tlm");
	void *tfl, *tlm = NULL;
	size_t len, tlm_len = 0;
	char why[WHY];
	if (slurp(in, &tfl, &len))
		return 1;
	int rc = tlcm_tflite_to_tlm(tfl, len, &tlm, &tlm_len, why, sizeof why);
	free(tfl);
	if (rc) {
		fprintf(stderr, "tinylcm model: %s: %s\n", in, why);
		return 1;
	}
	tlcm_model_t *m;
	rc = tlcm_model_from_buffer(&m, tlm, tlm_len, out, why, sizeof why);
	if (rc) {
		fprintf(stderr, "tinylcm model: %s: the converted model does not"
			" load: %s\n", in, why);
		free(tlm);
		return 1;
	}
	FILE *f = fopen(out, "wb");
	bool ok = f && fwrite(tlm, 1, tlm_len, f) == tlm_len;
	if (f && fclose(f))
		ok = false;
	if (!ok)
		fprintf(stderr, "tinylcm model: %s: cannot write: %s\n", out,
			strerror(errno));
	else
		printf("%s: %zu tensors, %zu ops, %zu parameters\n", out,
		       m->ntensors, m->nops, tlcm_model_param_count(m));
	tlcm_model_free(m);
	free(tlm);
	return ok ? 0 : 1;
}

/* ---- keys and signed offers ---------------------------------------------- */

#define SIGN_USAGE                                                          \
	"usage: tinylcm model keygen --key-id ID -o PREFIX\n"              \
	"       tinylcm model sign FILE --name NAME --version N --key "      \
	"PREFIX.key\n"                                                       \
	"                          [--expires-in 30d | --expires-s S]\n"     \
	"                          [--created-s S] [--url URL]\n"            \
	"       tinylcm model verify FILE --offer OFFER.json --keys "        \
	"KEYS.pub\n"                                                         \
	"                          [--running N]\n"

/* "--opt VALUE" at argv[*i]: the value, or NULL (usage error said). */
static const char *opt_value(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc) {
		usage_error("%s needs a value", argv[*i]);
		return NULL;
	}
	return argv[++*i];
}

static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (!*s || *end || errno || *s == '-')
		return false;
	*v = x;
	return true;
}

/* "30d", "12h", "90m", "3600s" or seconds. */
static bool parse_secs(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (end == s || errno || *s == '-')
		return false;
	uint64_t mul = !strcmp(end, "d") ? 86400 : !strcmp(end, "h") ? 3600
		       : !strcmp(end, "m") ? 60
		       : !*end || !strcmp(end, "s") ? 1 : 0;
	if (!mul)
		return false;
	*v = x * mul;
	return true;
}

static int model_keygen(int argc, char **argv)
{
	const char *id = NULL, *prefix = NULL;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--key-id")) {
			if (!(id = opt_value(argc, argv, &i)))
				return 2;
		} else if (!strcmp(argv[i], "-o")) {
			if (!(prefix = opt_value(argc, argv, &i)))
				return 2;
		} else {
			return usage_error("keygen: unknown argument %s",
					   argv[i]);
		}
	}
	if (!id || !prefix)
		return usage_error("keygen needs --key-id ID -o PREFIX");
	if (!upd_valid_key_id(id))
		return usage_error("--key-id: want [A-Za-z0-9._-]{1,%d}",
				   UPD_KEY_ID_MAX);
	if (upd_crypto_init()) {
		fprintf(stderr, "tinylcm model: libsodium does not "
			"initialise\n");
		return 1;
	}
	uint8_t pk[UPD_PK_BYTES], sk[UPD_SK_BYTES];
	crypto_sign_keypair(pk, sk);
	char b64[200], path[4096];
	snprintf(path, sizeof path, "%s.key", prefix);
	/* the secret never replaces a file and is readable by us only */
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "tinylcm model: %s: %s\n", path,
			strerror(errno));
		sodium_memzero(sk, sizeof sk);
		return 1;
	}
	upd_b64_encode(sk, sizeof sk, b64, sizeof b64);
	sodium_memzero(sk, sizeof sk);
	char line[400];
	int n = snprintf(line, sizeof line, "# Ed25519 secret key: signs "
			 "model updates; keep it on the core only\n%s %s\n",
			 id, b64);
	sodium_memzero(b64, sizeof b64);
	bool ok = write(fd, line, (size_t)n) == n && !fsync(fd);
	sodium_memzero(line, sizeof line);
	if (close(fd) || !ok) {
		fprintf(stderr, "tinylcm model: %s: cannot write\n", path);
		return 1;
	}
	snprintf(path, sizeof path, "%s.pub", prefix);
	upd_b64_encode(pk, sizeof pk, b64, sizeof b64);
	FILE *f = fopen(path, "wx");
	if (!f || fprintf(f, "# Ed25519 public key: devices trust model "
			  "updates it signed\n%s %s\n", id, b64) < 0 ||
	    fclose(f)) {
		fprintf(stderr, "tinylcm model: %s: %s\n", path,
			strerror(errno));
		return 1;
	}
	printf("%s.key (secret) and %s.pub: key id %s, public key %s\n",
	       prefix, prefix, id, b64);
	return 0;
}

/* The one key of a secret key file (nodes/updater/verify.c). */
static int read_secret(const char *path, char *id, uint8_t sk[UPD_SK_BYTES])
{
	char why[WHY];
	if (upd_secret_load(path, id, sk, why, sizeof why)) {
		fprintf(stderr, "tinylcm model: %s\n", why);
		return 1;
	}
	return 0;
}

static int model_sign(int argc, char **argv)
{
	const char *file = NULL, *name = NULL, *keyf = NULL, *url = NULL;
	uint64_t version = 0, created = (uint64_t)time(NULL), expires = 0,
		 expires_in = 30 * 86400;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v;
		if (a[0] != '-') {
			if (file)
				return usage_error("sign: one file, got '%s' "
						   "too", a);
			file = a;
			continue;
		}
		if (!(v = opt_value(argc, argv, &i)))
			return 2;
		if (!strcmp(a, "--name"))
			name = v;
		else if (!strcmp(a, "--key"))
			keyf = v;
		else if (!strcmp(a, "--url"))
			url = v;
		else if (!strcmp(a, "--version")) {
			if (!parse_u64(v, &version) || !version)
				return usage_error("--version: want a whole "
						   "number >= 1");
		} else if (!strcmp(a, "--created-s")) {
			if (!parse_u64(v, &created))
				return usage_error("--created-s: want seconds");
		} else if (!strcmp(a, "--expires-s")) {
			if (!parse_u64(v, &expires))
				return usage_error("--expires-s: want seconds");
		} else if (!strcmp(a, "--expires-in")) {
			if (!parse_secs(v, &expires_in))
				return usage_error("--expires-in: want e.g. 30d,"
						   " 12h, 90m or seconds");
		} else {
			return usage_error("sign: unknown option %s", a);
		}
	}
	if (!file || !name || !version || !keyf)
		return usage_error("sign needs FILE --name NAME --version N "
				   "--key PREFIX.key");
	if (!upd_valid_name(name))
		return usage_error("--name: want [A-Za-z0-9._-]{1,%d}",
				   UPD_NAME_MAX);
	upd_meta_t m = {0};
	snprintf(m.name, sizeof m.name, "%s", name);
	m.version = version;
	m.created_s = (int64_t)created;
	m.expires_s = (int64_t)(expires ? expires : created + expires_in);
	if (url)
		snprintf(m.url, sizeof m.url, "%s", url);
	else
		snprintf(m.url, sizeof m.url, "/api/v1/models/%s/%" PRIu64,
			 name, version);
	char why[WHY];
	if (upd_sha256_file(file, UINT64_MAX, m.sha256, why, sizeof why)) {
		fprintf(stderr, "tinylcm model: %s\n", why);
		return 1;
	}
	FILE *f = fopen(file, "rb");
	if (!f || fseek(f, 0, SEEK_END)) {
		fprintf(stderr, "tinylcm model: %s: %s\n", file,
			strerror(errno));
		if (f)
			fclose(f);
		return 1;
	}
	m.size = (uint64_t)ftell(f);
	fclose(f);
	char id[UPD_KEY_ID_MAX + 1];
	uint8_t sk[UPD_SK_BYTES];
	if (read_secret(keyf, id, sk))
		return 1;
	int rc = upd_sign(&m, id, sk);
	sodium_memzero(sk, sizeof sk);
	char *j = rc ? NULL : upd_meta_to_json(&m);
	if (!j) {
		fprintf(stderr, "tinylcm model: cannot sign\n");
		return 1;
	}
	printf("%s\n", j);
	free(j);
	return 0;
}

static int model_verify(int argc, char **argv)
{
	const char *file = NULL, *offer = NULL, *keys = NULL;
	uint64_t running = 0;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v;
		if (a[0] != '-') {
			if (file)
				return usage_error("verify: one file, got '%s' "
						   "too", a);
			file = a;
			continue;
		}
		if (!(v = opt_value(argc, argv, &i)))
			return 2;
		if (!strcmp(a, "--offer"))
			offer = v;
		else if (!strcmp(a, "--keys"))
			keys = v;
		else if (!strcmp(a, "--running")) {
			if (!parse_u64(v, &running))
				return usage_error("--running: want a version");
		} else {
			return usage_error("verify: unknown option %s", a);
		}
	}
	if (!file || !offer || !keys)
		return usage_error("verify needs FILE --offer OFFER.json --keys "
				   "KEYS.pub");
	void *text;
	size_t len;
	if (slurp(offer, &text, &len))
		return 1;
	cJSON *j = cJSON_ParseWithLength(text, len);
	free(text);
	upd_meta_t m;
	const char *code;
	char why[WHY];
	upd_keys_t ks = {0};
	int rc = upd_meta_from_json(j, &m, &code, why, sizeof why);
	cJSON_Delete(j);
	if (!rc && (rc = upd_keys_load(&ks, keys, why, sizeof why)))
		code = "keys";
	if (!rc)
		rc = upd_check(&m, &ks, running, (int64_t)time(NULL), &code,
			       why, sizeof why);
	upd_keys_free(&ks);
	char sha[65];
	if (!rc && (rc = upd_sha256_file(file, UINT64_MAX, sha, why,
					 sizeof why)))
		code = "io";
	if (!rc && strcmp(sha, m.sha256)) {
		code = "sha256_mismatch";
		rc = tlcm_fail(why, sizeof why, TLCM_EPERM, "%s has SHA-256 %s"
			       ", the signed offer says %s", file, sha,
			       m.sha256);
	}
	if (rc) {
		fprintf(stderr, "tinylcm model: refused [%s]: %s\n", code, why);
		return 1;
	}
	printf("ok: %s@%" PRIu64 " signed by %s, SHA-256 %s, expires %" PRId64
	       "\n", m.name, m.version, m.key_id, m.sha256, m.expires_s);
	return 0;
}

int tlcm_cli_model(int argc, char **argv)
{
	if (argc < 2)
		return usage_error("which subcommand? info, run, import, "
				   "keygen, sign or verify");
	if (!strcmp(argv[1], "keygen") || !strcmp(argv[1], "sign") ||
	    !strcmp(argv[1], "verify")) {
		if (argc == 2) {
			fputs(SIGN_USAGE, stderr);
			return 2;
		}
		return !strcmp(argv[1], "keygen") ? model_keygen(argc, argv)
		       : !strcmp(argv[1], "sign") ? model_sign(argc, argv)
						  : model_verify(argc, argv);
	}
	if (!strcmp(argv[1], "info"))
		return model_info(argc, argv);
	if (!strcmp(argv[1], "run"))
		return model_run(argc, argv);
	if (!strcmp(argv[1], "import"))
		return model_import(argc, argv);
	return usage_error("unknown subcommand '%s'", argv[1]);
}
