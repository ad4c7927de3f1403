/* export.c — `tinylcm core export` (export.h): every record of a core's
 * store as JSON lines, {"kind": K, "record": {…}}, each record with the
 * field names the HTTP API answers (docs/api.md) plus what the API has in
 * its path (device_id of metrics, logs and feedback) and, unless no_blobs,
 * the bytes as base64 (data_base64, thumbnail_png_base64). The filters
 * use the keys where they can: a device's records and a time are a seek
 * in the per-device, time-ordered families (core.h), not a full scan.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "nodes/core/core.h"
#include "nodes/core/export.h"
#include "nodes/packager/pkg_util.h"

#define DAY_NS ((uint64_t)86400000000000ull)

enum { X_DEVICES, X_PACKAGES, X_DRIFT, X_SAMPLES, X_IMAGES, X_METRICS,
       X_LOGS, X_FEEDBACK, X_MODELS, X_TELEMETRY };

static const char *const KINDS[TLCM_CORE_NKINDS] = {
	"devices", "packages", "drift",    "samples", "images",
	"metrics", "logs",     "feedback", "models",  "telemetry"};

/* The families of a core's store: one of them must be there. */
static const char *const FAMILIES[] = {
	"core/devices", "core/packages", "core/drift", "core/samples",
	"core/metrics", "core/logs", "core/feedback", "core/models",
	"core/telemetry", NULL};

const char *tlcm_core_kind_name(unsigned i)
{
	return i < TLCM_CORE_NKINDS ? KINDS[i] : NULL;
}

int tlcm_core_kinds_parse(const char *list, unsigned *kinds, char *why,
			  size_t cap)
{
	*kinds = 0;
	const char *p = list ? list : "";
	do {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		unsigned i = 0;
		while (i < TLCM_CORE_NKINDS &&
		       (strlen(KINDS[i]) != n || strncmp(KINDS[i], p, n)))
			i++;
		if (i == TLCM_CORE_NKINDS) {
			snprintf(why, cap, "unknown kind '%.*s' (kinds: "
				 "devices, packages, drift, samples, images, "
				 "metrics, logs, feedback, models, telemetry)",
				 (int)(n > 40 ? 40 : n), p);
			return TLCM_EINVAL;
		}
		*kinds |= 1u << i;
		p = e ? e + 1 : NULL;
	} while (p);
	return 0;
}

/* ---- writing ------------------------------------------------------------- */

typedef struct {
	tlcm_store_t *s;
	const tlcm_core_export_opts_t *o;
	FILE *out;
	uint64_t n[TLCM_CORE_NKINDS];
	int rc;
	char *why;
	size_t cap;
	/* images: the package of the last one */
	char pkg[CORE_UUID_LEN + 1];
	char pdev[CORE_ID_MAX + 1];
	uint64_t precv;
	bool pknown;
} ex_t;

/* One line {"kind": K, "record": rec}; rec is freed. */
static int emit(ex_t *x, int kind, cJSON *rec)
{
	cJSON *o = cJSON_CreateObject();
	if (!o || !rec) {
		cJSON_Delete(o);
		cJSON_Delete(rec);
		return x->rc = TLCM_ENOMEM;
	}
	cJSON_AddStringToObject(o, "kind", KINDS[kind]);
	cJSON_AddItemToObject(o, "record", rec);
	char *t = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!t)
		return x->rc = TLCM_ENOMEM;
	bool bad = fputs(t, x->out) < 0 || putc('\n', x->out) == EOF;
	cJSON_free(t);
	if (bad) {
		snprintf(x->why, x->cap, "cannot write the %s records: %s",
			 KINDS[kind], strerror(errno));
		return x->rc = TLCM_EIO;
	}
	x->n[kind]++;
	return 0;
}

static void add_base64(cJSON *o, const char *key, const void *p, size_t n)
{
	size_t cap = sodium_base64_ENCODED_LEN(n,
					       sodium_base64_VARIANT_ORIGINAL);
	char *b = malloc(cap);
	if (!b)
		return;
	sodium_bin2base64(b, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
	cJSON_AddStringToObject(o, key, b);
	free(b);
}

/* The bytes of key in fam as base64 into o[name] (unless no_blobs). */
static void add_blob(ex_t *x, cJSON *o, const char *name, const char *fam,
		     const void *key, size_t klen)
{
	if (x->o->no_blobs)
		return;
	void *v = NULL;
	size_t vl;
	if (!tlcm_store_get(x->s, fam, key, klen, &v, &vl))
		add_base64(o, name, v, vl);
	free(v);
}

static uint64_t u64_of(const cJSON *o, const char *key)
{
	uint64_t v = 0;
	core_json_get_u64(cJSON_GetObjectItemCaseSensitive(o, key), &v);
	return v;
}

static bool of_device(const ex_t *x, const cJSON *o, const char *key)
{
	const char *d = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(o, key));
	return !x->o->device || (d && !strcmp(d, x->o->device));
}

/* A scan's rc: a callback's error is in x->rc. */
static int done(ex_t *x, int rc)
{
	return x->rc ? x->rc : rc < 0 ? rc : 0;
}

/* ---- devices, models ------------------------------------------------------- */

static int one_device(void *arg, const void *key, size_t klen,
		      const void *val, size_t vlen)
{
	ex_t *x = arg;
	(void)key, (void)klen;
	cJSON *o = core_json_parse(val, vlen);
	if (!o || !of_device(x, o, "device_id") ||
	    u64_of(o, "last_seen_ns") < x->o->since_ns) {
		cJSON_Delete(o);
		return 0;
	}
	/* the API never shows the hashes of the token and the secret */
	cJSON_DeleteItemFromObjectCaseSensitive(o, "token_sha256");
	cJSON_DeleteItemFromObjectCaseSensitive(o, "secret_sha256");
	return emit(x, X_DEVICES, o);
}

static int one_model(void *arg, const void *key, size_t klen,
		     const void *val, size_t vlen)
{
	ex_t *x = arg;
	cJSON *o = core_json_parse(val, vlen);
	if (!o || u64_of(o, "uploaded_ns") < x->o->since_ns) {
		cJSON_Delete(o);
		return 0;
	}
	add_blob(x, o, "data_base64", "core/model_blobs", key, klen);
	return emit(x, X_MODELS, o);
}

/* ---- packages ---------------------------------------------------------------- */

static int package(ex_t *x, const void *id)
{
	void *v = NULL;
	size_t vl;
	if (tlcm_store_get(x->s, "core/packages", id, CORE_UUID_LEN, &v, &vl))
		return 0;
	cJSON *o = core_json_parse(v, vl);
	free(v);
	if (!o || !of_device(x, o, "device_id") ||
	    u64_of(o, "received_ns") < x->o->since_ns) {
		cJSON_Delete(o);
		return 0;
	}
	add_blob(x, o, "data_base64", "core/blobs", id, CORE_UUID_LEN);
	return emit(x, X_PACKAGES, o);
}

static int one_package(void *arg, const void *key, size_t klen,
		       const void *val, size_t vlen)
{
	(void)val, (void)vlen;
	return klen == CORE_UUID_LEN ? package(arg, key) : 0;
}

static int one_bydev(void *arg, const void *key, size_t klen,
		     const void *val, size_t vlen)
{
	(void)val, (void)vlen;
	return klen > CORE_UUID_LEN ?
		package(arg, (const char *)key + klen - CORE_UUID_LEN) : 0;
}

/* ---- drift events, samples, images ---------------------------------------------- */

typedef struct {
	ex_t *x;
	size_t skip; /* index key bytes before the event id */
} evx_t;

static int one_event(void *arg, const void *key, size_t klen,
		     const void *val, size_t vlen)
{
	evx_t *e = arg;
	(void)val, (void)vlen;
	if (klen <= e->skip || klen - e->skip > CORE_UUID_LEN + 12)
		return 0;
	char ek[2 + CORE_UUID_LEN + 12];
	memcpy(ek, "e/", 2);
	memcpy(ek + 2, (const char *)key + e->skip, klen - e->skip);
	void *v = NULL;
	size_t n;
	if (tlcm_store_get(e->x->s, "core/drift", ek, 2 + klen - e->skip, &v,
			   &n))
		return 0;
	cJSON *o = core_json_parse(v, n);
	free(v);
	if (!o || !of_device(e->x, o, "device_id")) {
		cJSON_Delete(o);
		return 0;
	}
	return emit(e->x, X_DRIFT, o);
}

static int one_sample(void *arg, const void *key, size_t klen,
		      const void *val, size_t vlen)
{
	ex_t *x = arg;
	cJSON *o = core_json_parse(val, vlen);
	if (!o || !of_device(x, o, "device_id") ||
	    u64_of(o, "received_ns") < x->o->since_ns) {
		cJSON_Delete(o);
		return 0;
	}
	void *t = NULL;
	size_t tl;
	if (!x->o->no_blobs && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
		    o, "thumbnail")) &&
	    !tlcm_store_get(x->s, "core/thumbs", key, klen, &t, &tl) &&
	    tl >= 4) {
		/* as GET /samples/{frame}/thumbnail serves it */
		const unsigned char *b = t;
		unsigned w = (unsigned)b[0] << 8 | b[1];
		unsigned h = (unsigned)b[2] << 8 | b[3];
		uint8_t *png = NULL;
		size_t pl = 0;
		if (tl == 4 + (size_t)w * h &&
		    !tlcm_png_encode(b + 4, w, h, 1, &png, &pl))
			add_base64(o, "thumbnail_png_base64", png, pl);
		free(png);
	}
	free(t);
	return emit(x, X_SAMPLES, o);
}

/* Device and arrival of package id: its record, or what retention kept
 * of it (core/gone). */
static void package_of(ex_t *x, const char *id)
{
	if (!strncmp(x->pkg, id, CORE_UUID_LEN))
		return;
	memcpy(x->pkg, id, CORE_UUID_LEN);
	x->pkg[CORE_UUID_LEN] = 0;
	x->pknown = false;
	void *v = NULL;
	size_t vl;
	if (!tlcm_store_get(x->s, "core/packages", id, CORE_UUID_LEN, &v,
			    &vl)) {
		cJSON *o = core_json_parse(v, vl);
		const char *d = cJSON_GetStringValue(
			cJSON_GetObjectItemCaseSensitive(o, "device_id"));
		if (d && strlen(d) <= CORE_ID_MAX) {
			strcpy(x->pdev, d);
			x->precv = u64_of(o, "received_ns");
			x->pknown = true;
		}
		cJSON_Delete(o);
	} else {
		char k[2 + CORE_UUID_LEN];
		memcpy(k, "i/", 2);
		memcpy(k + 2, id, CORE_UUID_LEN);
		free(v);
		v = NULL;
		if (!tlcm_store_get(x->s, "core/gone", k, sizeof k, &v, &vl) &&
		    vl > 8 && vl - 8 <= CORE_ID_MAX) {
			x->precv = core_get_be64(v);
			memcpy(x->pdev, (char *)v + 8, vl - 8);
			x->pdev[vl - 8] = 0;
			x->pknown = true;
		}
	}
	free(v);
}

static int one_image(void *arg, const void *key, size_t klen,
		     const void *val, size_t vlen)
{
	ex_t *x = arg;
	const char *k = key;
	if (klen <= CORE_UUID_LEN + 1 || k[CORE_UUID_LEN] != '/' ||
	    klen - CORE_UUID_LEN - 1 > 128)
		return 0;
	package_of(x, k);
	if ((x->o->device && (!x->pknown || strcmp(x->pdev, x->o->device))) ||
	    (x->pknown ? x->precv : 0) < x->o->since_ns)
		return 0;
	char name[130];
	memcpy(name, k + CORE_UUID_LEN + 1, klen - CORE_UUID_LEN - 1);
	name[klen - CORE_UUID_LEN - 1] = 0;
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return x->rc = TLCM_ENOMEM;
	cJSON_AddStringToObject(o, "package_id", x->pkg);
	cJSON_AddStringToObject(o, "name", name);
	cJSON_AddStringToObject(o, "media_type",
				core_media_type(name, val, vlen));
	core_json_add_u64(o, "size", vlen);
	if (x->pknown) {
		cJSON_AddStringToObject(o, "device_id", x->pdev);
		core_json_add_u64(o, "received_ns", x->precv);
	}
	if (!x->o->no_blobs)
		add_base64(o, "data_base64", val, vlen);
	return emit(x, X_IMAGES, o);
}

/* ---- per-device series: metrics, logs, feedback ---------------------------------- */

typedef struct {
	ex_t *x;
	int kind;
	const char *tkey; /* the record's time field */
} ser_t;

static int one_series(void *arg, const void *key, size_t klen,
		      const void *val, size_t vlen)
{
	ser_t *s = arg;
	const char *z = memchr(key, 0, klen);
	size_t dl = z ? (size_t)(z - (const char *)key) : 0;
	if (!dl || dl > CORE_ID_MAX)
		return 0;
	char dev[CORE_ID_MAX + 1];
	memcpy(dev, key, dl);
	dev[dl] = 0;
	if (s->x->o->device && strcmp(dev, s->x->o->device))
		return 0;
	cJSON *o = core_json_parse(val, vlen);
	if (!o || u64_of(o, s->tkey) < s->x->o->since_ns) {
		cJSON_Delete(o);
		return 0;
	}
	/* the API has the device in the path: here it is a field */
	cJSON_DeleteItemFromObjectCaseSensitive(o, "device_id");
	cJSON_AddStringToObject(o, "device_id", dev);
	return emit(s->x, s->kind, o);
}

static int series(ex_t *x, int kind, const char *fam, const char *tkey,
		  bool timed_key)
{
	ser_t s = {x, kind, tkey};
	unsigned char p[CORE_ID_MAX + 1], from[CORE_ID_MAX + 1 + 8];
	if (!x->o->device)
		return done(x, tlcm_store_scan(x->s, fam, "", 0, one_series,
					       &s));
	size_t pl = core_devkey(p, x->o->device, NULL, 0);
	size_t fl = timed_key ? core_devkey(from, x->o->device,
					    &x->o->since_ns, 1) : 0;
	return done(x, tlcm_store_scan_range(x->s, fam, p, pl,
					     fl ? from : NULL, fl, false,
					     one_series, &s));
}

/* ---- telemetry ------------------------------------------------------------------- */

static double bitsd(const unsigned char *p)
{
	uint64_t u = core_get_be64(p);
	double d;
	memcpy(&d, &u, 8);
	return d;
}

static int one_telemetry(void *arg, const void *key, size_t klen,
			 const void *val, size_t vlen)
{
	ex_t *x = arg;
	const char *k = key, *end = k + klen - 8;
	const char *m = k, *mz = klen > 8 ? memchr(k, 0, klen - 8) : NULL;
	const char *mo = mz ? mz + 1 : NULL;
	const char *moz = mo ? memchr(mo, 0, (size_t)(end - mo)) : NULL;
	const char *d = moz ? moz + 1 : NULL;
	if (!d || d >= end || end[-1] || vlen != 32)
		return 0; /* not an aggregate */
	uint64_t day = core_get_be64((const unsigned char *)end);
	if ((x->o->device && strcmp(d, x->o->device)) ||
	    day < x->o->since_ns / DAY_NS)
		return 0;
	const unsigned char *v = val;
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return x->rc = TLCM_ENOMEM;
	core_json_text(o, "metric", m);
	core_json_text(o, "model", mo);
	core_json_text(o, "device_id", d);
	core_json_add_u64(o, "day", day);
	core_json_num(o, "sum", bitsd(v));
	core_json_num(o, "min", bitsd(v + 8));
	core_json_num(o, "max", bitsd(v + 16));
	core_json_add_u64(o, "count", core_get_be64(v + 24));
	return emit(x, X_TELEMETRY, o);
}

/* ---- all of it -------------------------------------------------------------------- */

static int kind(ex_t *x, int k)
{
	const tlcm_core_export_opts_t *o = x->o;
	unsigned char p[2 + CORE_ID_MAX + 1 + 8], f[2 + CORE_ID_MAX + 1 + 8];
	size_t pl, fl;
	switch (k) {
	case X_DEVICES:
		if (o->device)
			return done(x, tlcm_store_scan_range(
				x->s, "core/devices", o->device,
				strlen(o->device), NULL, 0, false, one_device,
				x));
		return done(x, tlcm_store_scan(x->s, "core/devices", "", 0,
					       one_device, x));
	case X_PACKAGES:
		if (!o->device)
			return done(x, tlcm_store_scan(x->s, "core/packages",
						       "", 0, one_package, x));
		pl = core_devkey(p, o->device, NULL, 0);
		fl = core_devkey(f, o->device, &o->since_ns, 1);
		return done(x, tlcm_store_scan_range(x->s, "core/bydev", p, pl,
						     f, fl, false, one_bydev,
						     x));
	case X_DRIFT: {
		memcpy(p, o->device ? "d/" : "t/", 2);
		memcpy(f, p, 2);
		pl = 2 + (o->device ? core_devkey(p + 2, o->device, NULL, 0)
				    : 0);
		memcpy(f + 2, p + 2, pl - 2);
		core_be64(f + pl, o->since_ns);
		evx_t e = {x, pl + 8};
		return done(x, tlcm_store_scan_range(x->s, "core/drift", p, pl,
						     f, pl + 8, false,
						     one_event, &e));
	}
	case X_SAMPLES:
		return done(x, tlcm_store_scan(x->s, "core/samples", "", 0,
					       one_sample, x));
	case X_IMAGES:
		return done(x, tlcm_store_scan(x->s, "core/images", "", 0,
					       one_image, x));
	case X_METRICS:
		return series(x, X_METRICS, "core/metrics", "time_ns", true);
	case X_LOGS:
		return series(x, X_LOGS, "core/logs", "time_ns", true);
	case X_FEEDBACK:
		return series(x, X_FEEDBACK, "core/feedback", "created_ns",
			      false);
	case X_MODELS:
		if (o->device)
			return 0; /* of no device */
		return done(x, tlcm_store_scan(x->s, "core/models", "", 0,
					       one_model, x));
	case X_TELEMETRY:
		return done(x, tlcm_store_scan(x->s, "core/telemetry", "", 0,
					       one_telemetry, x));
	}
	return 0;
}

int tlcm_core_export(tlcm_store_t *s, const tlcm_core_export_opts_t *o,
		     FILE *out, uint64_t counts[TLCM_CORE_NKINDS], char *why,
		     size_t cap)
{
	if (o->device && !core_valid_device(o->device)) {
		snprintf(why, cap, "device '%.80s' is not a device id "
			 "([A-Za-z0-9._-]{1,64})", o->device);
		return TLCM_EINVAL;
	}
	bool core = false;
	for (size_t i = 0; FAMILIES[i] && !core; i++)
		core = tlcm_store_has_family(s, FAMILIES[i]);
	if (!core) {
		snprintf(why, cap, "store %s holds no records of a core (no "
			 "core/* families): it is the store of another graph "
			 "(the core's is settings.store of graphs/core.yaml), "
			 "or of a core that has stored nothing yet",
			 tlcm_store_path(s));
		return TLCM_ENOENT;
	}
	if (sodium_init() < 0) {
		snprintf(why, cap, "libsodium cannot start");
		return TLCM_EINTERNAL;
	}
	ex_t x = {.s = s, .o = o, .out = out, .why = why, .cap = cap};
	int rc = 0;
	for (int k = 0; !rc && k < TLCM_CORE_NKINDS; k++)
		if (!o->kinds || (o->kinds & (1u << k))) {
			rc = kind(&x, k);
			if (rc && !why[0])
				snprintf(why, cap, "store %s: reading the %s "
					 "records: %s", tlcm_store_path(s),
					 KINDS[k], tlcm_strerror(rc));
		}
	if (!rc && fflush(out)) {
		snprintf(why, cap, "cannot write the records: %s",
			 strerror(errno));
		rc = TLCM_EIO;
	}
	if (counts)
		memcpy(counts, x.n, sizeof x.n);
	return rc;
}
