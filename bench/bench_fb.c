/* bench_fb.c — suite "fb": the cost of our FlatBuffers against JSON.
 *
 * One 10-field message (a string and a 32-float vector among them) is
 * built, verified and read with the generated C code; the baseline is the
 * same message as JSON text through cJSON (the JSON library the project
 * uses), encoded into a preallocated buffer and parsed back, in the same
 * run on the same data.
 */
#include <cjson/cJSON.h>
#include <stdalign.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "fb/sample_fb.h"

#define NFEAT 32

typedef struct {
	uint64_t id;
	const char *device;
	int64_t ts_ns;
	int32_t label;
	float confidence;
	float features[NFEAT];
	uint32_t seq;
	uint16_t flags;
	double drift;
	bool ok;
} sample_t;

typedef struct {
	sample_t s;
	alignas(16) unsigned char mem[1024];
	const void *fb;
	size_t fb_len;
	char json[4096];
	size_t json_len;
} ctx_t;

static const void *fb_build(ctx_t *c, size_t *len)
{
	tlcm_fbb_t b;
	tlcm_fbb_init_fixed(&b, c->mem, sizeof c->mem);
	tlcm_fbb_ref_t dev = tlcm_fbb_cstring(&b, c->s.device);
	tlcm_fbb_ref_t feat =
		tlcm_bench_Sample_features_create(&b, c->s.features, NFEAT);
	tlcm_bench_Sample_start(&b);
	tlcm_bench_Sample_add_id(&b, c->s.id);
	tlcm_bench_Sample_add_ts_ns(&b, c->s.ts_ns);
	tlcm_bench_Sample_add_drift(&b, c->s.drift);
	tlcm_bench_Sample_add_device(&b, dev);
	tlcm_bench_Sample_add_label(&b, c->s.label);
	tlcm_bench_Sample_add_confidence(&b, c->s.confidence);
	tlcm_bench_Sample_add_features(&b, feat);
	tlcm_bench_Sample_add_seq(&b, c->s.seq);
	tlcm_bench_Sample_add_flags(&b, c->s.flags);
	tlcm_bench_Sample_add_ok(&b, c->s.ok);
	return tlcm_bench_Sample_finish(&b, tlcm_bench_Sample_end(&b), len);
}

static uint64_t fb_read(const void *buf)
{
	tlcm_bench_Sample_table_t t = tlcm_bench_Sample_as_root(buf);
	uint64_t h = tlcm_bench_Sample_id(t) + (uint64_t)tlcm_bench_Sample_ts_ns(t);
	h += tlcm_bench_Sample_device_len(t) +
	     (unsigned char)tlcm_bench_Sample_device(t)[0];
	h += (uint64_t)tlcm_bench_Sample_label(t) + tlcm_bench_Sample_seq(t) +
	     tlcm_bench_Sample_flags(t) + tlcm_bench_Sample_ok(t);
	float sum = tlcm_bench_Sample_confidence(t);
	const float *f = tlcm_bench_Sample_features(t);
	size_t n = tlcm_bench_Sample_features_len(t);
	for (size_t i = 0; i < n; i++)
		sum += f[i];
	return h + (uint64_t)(sum * 1000.0f) +
	       (uint64_t)(tlcm_bench_Sample_drift(t) * 1000.0);
}

static cJSON *json_tree(const sample_t *s)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "id", (double)s->id);
	cJSON_AddStringToObject(o, "device", s->device);
	cJSON_AddNumberToObject(o, "ts_ns", (double)s->ts_ns);
	cJSON_AddNumberToObject(o, "label", s->label);
	cJSON_AddNumberToObject(o, "confidence", s->confidence);
	cJSON *a = cJSON_AddArrayToObject(o, "features");
	for (int i = 0; i < NFEAT; i++)
		cJSON_AddItemToArray(a, cJSON_CreateNumber(s->features[i]));
	cJSON_AddNumberToObject(o, "seq", s->seq);
	cJSON_AddNumberToObject(o, "flags", s->flags);
	cJSON_AddNumberToObject(o, "drift", s->drift);
	cJSON_AddBoolToObject(o, "ok", s->ok);
	return o;
}

static double num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static uint64_t json_read(const cJSON *o)
{
	uint64_t h = (uint64_t)num(o, "id") + (uint64_t)num(o, "ts_ns");
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "device");
	if (cJSON_IsString(d))
		h += strlen(d->valuestring) + (unsigned char)d->valuestring[0];
	h += (uint64_t)num(o, "label") + (uint64_t)num(o, "seq") +
	     (uint64_t)num(o, "flags") +
	     cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ok"));
	float sum = (float)num(o, "confidence");
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "features"), *e;
	cJSON_ArrayForEach(e, f) sum += (float)e->valuedouble;
	return h + (uint64_t)(sum * 1000.0f) + (uint64_t)(num(o, "drift") * 1000.0);
}

static void b_fb_build(void *p, size_t n)
{
	ctx_t *c = p;
	size_t len;
	for (size_t i = 0; i < n; i++) {
		c->s.seq = (uint32_t)i;
		bench_sink += (uintptr_t)fb_build(c, &len) + len;
	}
}

static void b_fb_verify(void *p, size_t n)
{
	ctx_t *c = p;
	const char *why;
	for (size_t i = 0; i < n; i++)
		bench_sink += (uint64_t)tlcm_bench_Sample_verify_as_root(
			c->fb, c->fb_len, &why);
}

static void b_fb_read(void *p, size_t n)
{
	ctx_t *c = p;
	for (size_t i = 0; i < n; i++)
		bench_sink += fb_read(c->fb);
}

static void b_fb_decode(void *p, size_t n)
{
	ctx_t *c = p;
	const char *why;
	for (size_t i = 0; i < n; i++)
		if (tlcm_bench_Sample_verify_as_root(c->fb, c->fb_len, &why) == 0)
			bench_sink += fb_read(c->fb);
}

static void b_json_encode(void *p, size_t n)
{
	ctx_t *c = p;
	for (size_t i = 0; i < n; i++) {
		c->s.seq = (uint32_t)i;
		cJSON *o = json_tree(&c->s);
		bench_sink += (uint64_t)cJSON_PrintPreallocated(
			o, c->json, (int)sizeof c->json, 0);
		cJSON_Delete(o);
	}
}

static void b_json_parse(void *p, size_t n)
{
	ctx_t *c = p;
	for (size_t i = 0; i < n; i++) {
		cJSON *o = cJSON_ParseWithLength(c->json, c->json_len);
		bench_sink += (uintptr_t)o;
		cJSON_Delete(o);
	}
}

static cJSON *parsed; /* for b_json_read */

static void b_json_read(void *p, size_t n)
{
	(void)p;
	for (size_t i = 0; i < n; i++)
		bench_sink += json_read(parsed);
}

static void b_json_decode(void *p, size_t n)
{
	ctx_t *c = p;
	for (size_t i = 0; i < n; i++) {
		cJSON *o = cJSON_ParseWithLength(c->json, c->json_len);
		if (o)
			bench_sink += json_read(o);
		cJSON_Delete(o);
	}
}

int bench_suite_fb(const bench_opts_t *o)
{
	static ctx_t c;
	c.s = (sample_t){.id = 1234567890123ull, .device = "pi-zero-2w-0042",
			 .ts_ns = 1795000000000000000ll, .label = 7,
			 .confidence = 0.875f, .seq = 1, .flags = 0x11,
			 .drift = 0.03125, .ok = true};
	for (int i = 0; i < NFEAT; i++)
		c.s.features[i] = (float)i * 0.37f - 3.1f;

	c.fb = fb_build(&c, &c.fb_len);
	const char *why;
	if (!c.fb || tlcm_bench_Sample_verify_as_root(c.fb, c.fb_len, &why)) {
		fprintf(stderr, "fb: building the sample failed\n");
		return -1;
	}
	cJSON *tree = json_tree(&c.s);
	if (!cJSON_PrintPreallocated(tree, c.json, (int)sizeof c.json, 0)) {
		fprintf(stderr, "fb: JSON encoding failed\n");
		return -1;
	}
	cJSON_Delete(tree);
	c.json_len = strlen(c.json);
	parsed = cJSON_ParseWithLength(c.json, c.json_len);
	if (!parsed || fb_read(c.fb) != json_read(parsed)) {
		fprintf(stderr, "fb: FlatBuffer and JSON disagree on the "
			"message; refusing to compare their speed\n");
		return -1;
	}

	size_t n = (size_t)(200000 * o->scale);
	if (n < 100)
		n = 100;
	fprintf(stderr, "fb: %zu ops x %d runs per case\n", n, o->runs);
	double build = bench_measure(o, n, b_fb_build, &c);
	double enc = bench_measure(o, n, b_json_encode, &c);
	double verify = bench_measure(o, n, b_fb_verify, &c);
	double parse = bench_measure(o, n, b_json_parse, &c);
	double rd = bench_measure(o, n, b_fb_read, &c);
	double jrd = bench_measure(o, n, b_json_read, &c);
	double dec = bench_measure(o, n, b_fb_decode, &c);
	double jdec = bench_measure(o, n, b_json_decode, &c);
	cJSON_Delete(parsed);

	bench_base_t b1[] = {{"cjson_encode", enc}};
	bench_report("fb", "build_10f", "ns_per_msg", build, n, o->runs, b1, 1);
	bench_base_t b2[] = {{"cjson_parse", parse}};
	bench_report("fb", "verify_10f", "ns_per_msg", verify, n, o->runs, b2,
		     1);
	bench_base_t b3[] = {{"cjson_read_parsed", jrd}};
	bench_report("fb", "read_10f", "ns_per_msg", rd, n, o->runs, b3, 1);
	bench_base_t b4[] = {{"cjson_parse_read", jdec}};
	bench_report("fb", "verify_read_10f", "ns_per_msg", dec, n, o->runs,
		     b4, 1);
	bench_base_t b5[] = {{"json_text", (double)c.json_len}};
	bench_report("fb", "size_10f", "bytes", (double)c.fb_len, 1, 1, b5, 1);
	return 0;
}
