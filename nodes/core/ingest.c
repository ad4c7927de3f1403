/* ingest.c — POST /packages (docs/api.md): authenticate, rate-limit,
 * verify, de-duplicate by package id, and store the package with
 * everything decoded from it in one atomic batch, so a package is either
 * wholly there (and then answered `stored`, and `duplicate` ever after)
 * or not at all. GET /packages lists what arrived.
 *
 * De-duplication is exact under concurrency: the check and the write of
 * one id happen under the lock of its stripe (CORE_LOCKS), and the write
 * is synced per the graph's policy before the answer.
 *
 * Decoding: every item is verified first (a bad one refuses the whole
 * package with the verifier's reason); then drift events (DRFT), the
 * quarantined samples (QBAT, with thumbnails), metrics (TMET) and log
 * lines (TLOG) become records; the drift events of a package point at its
 * samples and its first image attachment, the samples at the package's
 * first drift start (what a person validates together).
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/log.h"
#include "fb/drift_fb.h"
#include "fb/log_fb.h"
#include "fb/metrics_fb.h"
#include "fb/package_fb.h"
#include "fb/quarantine_fb.h"
#include "nodes/core/core.h"
#include "nodes/packager/pkg_util.h"

static const char *const LEVELS[] = {"error", "warn", "info", "debug"};

typedef struct {
	core_t *c;
	tlcm_batch_t *b;
	const char *dev, *id;
	uint64_t recv;
	tlcm_pkg_item_t *items;
	size_t n;
	char first_start[CORE_UUID_LEN + 16]; /* "" when none */
	cJSON *frames;      /* frame ids of the package's samples */
	cJSON *events;      /* ids of its drift events */
	char image[140];    /* its first image attachment, "" none */
	unsigned nevents, nsamples, nmetrics, nlogs, nother;
	char why[256];
} ingest_t;

static int put_json(ingest_t *g, const char *fam, const void *key,
		    size_t klen, cJSON *o)
{
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s)
		return TLCM_ENOMEM;
	int rc = tlcm_batch_put(g->c->store, g->b, fam, key, klen, s,
				strlen(s));
	cJSON_free(s);
	return rc;
}

/* Pass 1: verify every item, learn the package's first drift start. */
static int check_items(ingest_t *g)
{
	for (size_t i = 0; i < g->n; i++) {
		const tlcm_pkg_item_t *it = &g->items[i];
		const char *vw = NULL;
		int bad = 0;
		if (!strcmp(it->type, "DRFT")) {
			bad = tlcm_DriftEvent_verify_as_root(it->data, it->len,
							     &vw);
			if (!bad && !g->first_start[0] &&
			    tlcm_DriftEvent_kind(tlcm_DriftEvent_as_root(
				    it->data)) == tlcm_DriftKind_Start)
				snprintf(g->first_start, sizeof g->first_start,
					 "%s.%zu", g->id, i);
		} else if (!strcmp(it->type, "QBAT")) {
			bad = tlcm_QuarantineBatch_verify_as_root(it->data,
								  it->len, &vw);
		} else if (!strcmp(it->type, "TMET")) {
			bad = tlcm_Metrics_verify_as_root(it->data, it->len,
							  &vw);
		} else if (!strcmp(it->type, "TLOG")) {
			bad = tlcm_LogLine_verify_as_root(it->data, it->len,
							  &vw);
		}
		if (bad) {
			snprintf(g->why, sizeof g->why, "item %zu (%s): %s", i,
				 it->type, vw ? vw : "not valid");
			return TLCM_EBADMSG;
		}
	}
	return 0;
}

static int on_samples(ingest_t *g, const void *data)
{
	tlcm_QuarantineBatch_table_t q = tlcm_QuarantineBatch_as_root(data);
	size_t n = tlcm_QuarantineBatch_samples_len(q);
	for (size_t i = 0; i < n; i++) {
		tlcm_QuarantinedSample_table_t s =
			tlcm_QuarantineBatch_samples_at(q, i);
		uint64_t frame = tlcm_QuarantinedSample_frame_id(s);
		unsigned char key[8 + CORE_ID_MAX];
		core_be64(key, frame);
		size_t dl = strlen(g->dev);
		memcpy(key + 8, g->dev, dl);
		cJSON *o = cJSON_CreateObject();
		core_json_add_u64(o, "frame_id", frame);
		cJSON_AddStringToObject(o, "device_id", g->dev);
		cJSON_AddStringToObject(o, "package_id", g->id);
		if (g->first_start[0])
			cJSON_AddStringToObject(o, "event", g->first_start);
		core_json_text(o, "predicted",
			       tlcm_QuarantinedSample_label(s));
		core_json_num(o, "confidence",
			      tlcm_QuarantinedSample_confidence(s));
		core_json_num(o, "mean_distance",
			      tlcm_QuarantinedSample_mean_distance(s));
		/* the device's own truth, carried only by evaluation runs
		 * (eval.scenario): shown as such, never used as a label */
		if (tlcm_QuarantinedSample_truth_len(s))
			core_json_text(o, "device_truth",
				       tlcm_QuarantinedSample_truth(s));
		cJSON_AddNumberToObject(o, "reasons",
					tlcm_QuarantinedSample_reasons(s));
		core_json_add_u64(o, "time_ns", tlcm_QuarantinedSample_time_ns(s));
		core_json_add_u64(o, "admitted_ns", tlcm_QuarantinedSample_admitted_ns(s));
		core_json_add_u64(o, "received_ns", g->recv);
		unsigned w = tlcm_QuarantinedSample_thumb_width(s);
		unsigned h = tlcm_QuarantinedSample_thumb_height(s);
		size_t tl = tlcm_QuarantinedSample_thumbnail_len(s);
		bool thumb = w && h && tl == (size_t)w * h;
		cJSON_AddBoolToObject(o, "thumbnail", thumb);
		int rc = put_json(g, "core/samples", key, 8 + dl, o);
		if (!rc) /* in arrival order, for retention */
			rc = core_ttl_put(g->c, g->b, 's', g->recv, key, 8 + dl);
		if (!rc && thumb) {
			unsigned char *t = malloc(4 + tl);
			if (!t)
				return TLCM_ENOMEM;
			t[0] = (unsigned char)(w >> 8), t[1] = (unsigned char)w;
			t[2] = (unsigned char)(h >> 8), t[3] = (unsigned char)h;
			memcpy(t + 4, tlcm_QuarantinedSample_thumbnail(s), tl);
			rc = tlcm_batch_put(g->c->store, g->b, "core/thumbs",
					    key, 8 + dl, t, 4 + tl);
			free(t);
		}
		if (rc)
			return rc;
		cJSON_AddItemToArray(g->frames,
				     core_json_u64_item(frame));
		g->nsamples++;
	}
	return 0;
}

static int on_drift(ingest_t *g, size_t item, const void *data)
{
	tlcm_DriftEvent_table_t e = tlcm_DriftEvent_as_root(data);
	char evid[CORE_UUID_LEN + 16];
	snprintf(evid, sizeof evid, "%s.%zu", g->id, item);
	bool start = tlcm_DriftEvent_kind(e) == tlcm_DriftKind_Start;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", evid);
	cJSON_AddStringToObject(o, "device_id", g->dev);
	cJSON_AddStringToObject(o, "package_id", g->id);
	cJSON_AddStringToObject(o, "kind", start ? "start" : "end");
	core_json_text(o, "detector", tlcm_DriftEvent_detector(e));
	core_json_text(o, "node", tlcm_DriftEvent_node(e));
	core_json_text(o, "metric", tlcm_DriftEvent_metric(e));
	core_json_num(o, "value", tlcm_DriftEvent_value(e));
	core_json_num(o, "threshold", tlcm_DriftEvent_threshold(e));
	core_json_add_u64(o, "index", tlcm_DriftEvent_index(e));
	core_json_add_u64(o, "time_ns", tlcm_DriftEvent_time_ns(e));
	core_json_add_u64(o, "frame_id", tlcm_DriftEvent_frame_id(e));
	core_json_add_u64(o, "received_ns", g->recv);
	/* a start asks a person to look; an end is for the record */
	cJSON_AddStringToObject(o, "status", start ? "pending" : "info");
	if (start && !strcmp(evid, g->first_start)) {
		cJSON_AddItemToObject(o, "samples",
				      cJSON_Duplicate(g->frames, 1));
		if (g->image[0])
			cJSON_AddStringToObject(o, "image", g->image);
	}
	int rc = core_event_put(g->c, g->b, evid, g->dev, g->recv, o);
	if (!rc) {
		cJSON_AddItemToArray(g->events, cJSON_CreateString(evid));
		g->nevents++;
	}
	return rc;
}

static int on_metrics(ingest_t *g, const void *data)
{
	tlcm_Metrics_table_t m = tlcm_Metrics_as_root(data);
	uint64_t v[2] = {tlcm_Metrics_time_ns(m), tlcm_Metrics_seq(m)};
	unsigned char key[CORE_ID_MAX + 1 + 16];
	size_t kl = core_devkey(key, g->dev, v, 2);
	cJSON *o = cJSON_CreateObject();
	core_json_add_u64(o, "time_ns", v[0]);
	core_json_text(o, "source", tlcm_Metrics_source(m));
	core_json_add_u64(o, "seq", v[1]);
	cJSON_AddBoolToObject(o, "full", tlcm_Metrics_full(m));
	cJSON *ent = cJSON_AddObjectToObject(o, "entries");
	size_t n = tlcm_Metrics_entries_len(m);
	for (size_t i = 0; i < n; i++) {
		tlcm_MetricEntry_table_t e = tlcm_Metrics_entries_at(m, i);
		char k[256];
		core_clean_text(tlcm_MetricEntry_key(e), k, sizeof k);
		if (tlcm_MetricEntry_removed(e))
			cJSON_AddNullToObject(ent, k);
		else if (tlcm_MetricEntry_str(e))
			core_json_text(ent, k, tlcm_MetricEntry_str(e));
		else
			core_json_num(ent, k, tlcm_MetricEntry_num(e));
	}
	g->nmetrics++;
	return put_json(g, "core/metrics", key, kl, o);
}

static int on_log(ingest_t *g, const void *data)
{
	tlcm_LogLine_table_t l = tlcm_LogLine_as_root(data);
	uint64_t v[2] = {tlcm_LogLine_time_ns(l), tlcm_LogLine_seq(l)};
	unsigned char key[CORE_ID_MAX + 1 + 16];
	size_t kl = core_devkey(key, g->dev, v, 2);
	cJSON *o = cJSON_CreateObject();
	core_json_add_u64(o, "time_ns", v[0]);
	unsigned lv = (unsigned)tlcm_LogLine_level(l);
	cJSON_AddStringToObject(o, "level", lv < 4 ? LEVELS[lv] : "other");
	core_json_text(o, "source", tlcm_LogLine_source(l));
	core_json_text(o, "text", tlcm_LogLine_text(l));
	core_json_add_u64(o, "seq", v[1]);
	g->nlogs++;
	return put_json(g, "core/logs", key, kl, o);
}

static bool valid_name(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= 'a' && s[n] <= 'z') ||
		      (s[n] >= 'A' && s[n] <= 'Z') ||
		      (s[n] >= '0' && s[n] <= '9') || strchr("._-", s[n])))
			return false;
	return n && n <= 128 && s[0] != '.';
}

/* Attachments first (the events name the first image). */
static int on_attachments(ingest_t *g, tlcm_Package_table_t p)
{
	size_t n = tlcm_Package_attachments_len(p);
	for (size_t i = 0; i < n; i++) {
		tlcm_Attachment_table_t a = tlcm_Package_attachments_at(p, i);
		const char *name = tlcm_Attachment_name(a);
		const char *mt = tlcm_Attachment_media_type(a);
		if (!valid_name(name) ||
		    strlen(name) != tlcm_Attachment_name_len(a)) {
			snprintf(g->why, sizeof g->why, "attachment %zu: name "
				 "not [A-Za-z0-9._-]{1,128} (or starts with "
				 "'.')", i);
			return TLCM_EBADMSG;
		}
		char key[CORE_UUID_LEN + 1 + 130];
		int kl = snprintf(key, sizeof key, "%s/%s", g->id, name);
		int rc = tlcm_batch_put(g->c->store, g->b, "core/images", key,
					(size_t)kl, tlcm_Attachment_data(a),
					tlcm_Attachment_data_len(a));
		if (rc)
			return rc;
		if (!g->image[0] && !strncmp(mt, "image/", 6))
			snprintf(g->image, sizeof g->image, "%s", name);
	}
	/* in arrival order, for retention */
	return n ? core_ttl_put(g->c, g->b, 'i', g->recv, g->id, CORE_UUID_LEN)
		 : 0;
}

/* ---- POST /packages -------------------------------------------------------- */

static void answer(core_req_t *r, const char *id, const char *status)
{
	char b[96];
	snprintf(b, sizeof b, "{\"id\":\"%s\",\"status\":\"%s\"}", id,
		 status);
	core_reply_json(r, 200, b);
}

static void reject(core_req_t *r, int status, const char *why)
{
	atomic_fetch_add(&r->c->st.rejected, 1);
	core_error(r, status, status == 403 ? "forbidden" :
		   status == 413 ? "too_large" : "bad_request", "%s", why);
}

/* Store it all; under the id's stripe lock. Returns the status to answer
 * (0: stored), with g->why for a 400. */
static int store_package(core_t *c, core_req_t *r, ingest_t *g,
			 tlcm_Package_table_t p)
{
	int rc = check_items(g);
	if (!rc)
		rc = on_attachments(g, p);
	for (size_t i = 0; !rc && i < g->n; i++)
		if (!strcmp(g->items[i].type, "QBAT"))
			rc = on_samples(g, g->items[i].data);
	for (size_t i = 0; !rc && i < g->n; i++) {
		const tlcm_pkg_item_t *it = &g->items[i];
		if (!strcmp(it->type, "DRFT"))
			rc = on_drift(g, i, it->data);
		else if (!strcmp(it->type, "TMET"))
			rc = on_metrics(g, it->data);
		else if (!strcmp(it->type, "TLOG"))
			rc = on_log(g, it->data);
		else if (strcmp(it->type, "QBAT"))
			g->nother++;
	}
	if (rc)
		return rc;
	/* the package's own record: the de-duplication index */
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", g->id);
	cJSON_AddStringToObject(o, "device_id", g->dev);
	core_json_text(o, "kind", tlcm_Package_kind(p));
	cJSON_AddNumberToObject(o, "priority", tlcm_Package_priority(p));
	core_json_add_u64(o, "created_ns", tlcm_Package_created_ns(p));
	core_json_add_u64(o, "received_ns", g->recv);
	core_json_add_u64(o, "size", r->len);
	core_json_add_u64(o, "raw_size", tlcm_Package_raw_size(p));
	cJSON_AddNumberToObject(o, "count", tlcm_Package_count(p));
	core_json_add_u64(o, "seq", tlcm_Package_seq(p));
	if (tlcm_Package_packager(p))
		core_json_text(o, "packager", tlcm_Package_packager(p));
	cJSON *d = cJSON_AddObjectToObject(o, "decoded");
	cJSON_AddNumberToObject(d, "drift_events", g->nevents);
	cJSON_AddNumberToObject(d, "samples", g->nsamples);
	cJSON_AddNumberToObject(d, "metrics", g->nmetrics);
	cJSON_AddNumberToObject(d, "logs", g->nlogs);
	cJSON_AddNumberToObject(d, "other", g->nother);
	core_json_add_u64(d, "attachments", tlcm_Package_attachments_len(p));
	cJSON_AddItemToObject(o, "drift_events", g->events);
	g->events = NULL;
	rc = put_json(g, "core/packages", g->id, CORE_UUID_LEN, o);
	if (!rc)
		rc = tlcm_batch_put(c->store, g->b, "core/blobs", g->id,
				    CORE_UUID_LEN, r->body, r->len);
	unsigned char key[CORE_ID_MAX + 1 + 8 + CORE_UUID_LEN];
	size_t kl = core_devkey(key, g->dev, &g->recv, 1);
	memcpy(key + kl, g->id, CORE_UUID_LEN);
	if (!rc)
		rc = tlcm_batch_put(c->store, g->b, "core/bydev", key,
				    kl + CORE_UUID_LEN, "", 0);
	if (!rc)
		rc = tlcm_store_write(c->store, g->b);
	return rc;
}

void core_packages_post(core_req_t *r)
{
	core_t *c = r->c;
	char dev[CORE_ID_MAX + 1];
	if (core_auth_device(r, NULL, dev))
		return;
	const char *key = core_header(r, "Idempotency-Key");
	const char *ct = core_header(r, "Content-Type");
	char why[320];
	if (!key || !core_valid_uuid(key)) {
		snprintf(why, sizeof why, "Idempotency-Key must be the package "
			 "id (a UUID, 36 lower-case characters), got '%.40s'",
			 key ? key : "");
		reject(r, 400, why);
		return;
	}
	if (!ct || strcmp(ct, "application/x-tinylcm-package")) {
		snprintf(why, sizeof why, "Content-Type must be application/"
			 "x-tinylcm-package, got '%.60s'", ct ? ct : "");
		reject(r, 400, why);
		return;
	}
	if (!core_device_take(c, r, dev))
		return;
	uint64_t t0 = core_mono_ns();
	const char *vw;
	if (tlcm_Package_verify_as_root(r->body, r->len, &vw)) {
		snprintf(why, sizeof why, "not a package: %s", vw);
		reject(r, 400, why);
		return;
	}
	tlcm_Package_table_t p = tlcm_Package_as_root(r->body);
	const char *id = tlcm_Package_id(p);
	const char *pd = tlcm_Package_device_id(p);
	/* C string compares stop at a NUL: "dev\0x" must not pass as dev */
	if (strlen(id) != tlcm_Package_id_len(p) ||
	    strlen(pd) != tlcm_Package_device_id_len(p) ||
	    strlen(tlcm_Package_kind(p)) != tlcm_Package_kind_len(p)) {
		reject(r, 400, "a NUL inside the package's id, device_id or "
		       "kind");
		return;
	}
	if (strcmp(id, key)) {
		snprintf(why, sizeof why, "package id '%.40s' but "
			 "Idempotency-Key %s", id, key);
		reject(r, 400, why);
		return;
	}
	if (strcmp(pd, dev)) {
		snprintf(why, sizeof why, "package of device '%.64s' sent by "
			 "%s", pd, dev);
		reject(r, 403, why);
		return;
	}
	const char *kind = tlcm_Package_kind(p);
	if (!kind[0] || strlen(kind) > 32 || strspn(kind,
	    "abcdefghijklmnopqrstuvwxyz_") != strlen(kind)) {
		snprintf(why, sizeof why, "kind '%.40s' is not [a-z_]{1,32}",
			 kind);
		reject(r, 400, why);
		return;
	}
	/* what decoding would allocate, before it does */
	uint64_t raw = tlcm_Package_raw_size(p);
	if (raw > c->max_raw) {
		snprintf(why, sizeof why, "raw_size %" PRIu64 " above this "
			 "core's limit of %zu bytes", raw, c->max_raw);
		reject(r, 413, why);
		return;
	}
	if (tlcm_Package_count(p) > raw / 4) {
		snprintf(why, sizeof why, "count %u items cannot fit in "
			 "raw_size %" PRIu64 " bytes", tlcm_Package_count(p),
			 raw);
		reject(r, 400, why);
		return;
	}
	pthread_mutex_t *mu = core_lock_of(c, id);
	pthread_mutex_lock(mu);
	void *v = NULL;
	size_t vl;
	int rc = tlcm_store_get(c->store, "core/packages", id, CORE_UUID_LEN,
				&v, &vl);
	free(v);
	bool gone = false;
	/* swept by retention: still delivered once (retention.c) */
	if (rc == TLCM_ENOENT && !(rc = core_package_gone(c, id, &gone)) &&
	    !gone)
		rc = TLCM_ENOENT;
	if (!rc) {
		pthread_mutex_unlock(mu);
		atomic_fetch_add(&c->st.duplicates, 1);
		core_device_count(c, dev, r->len, true, 0);
		answer(r, id, "duplicate");
		return;
	}
	if (rc != TLCM_ENOENT) {
		pthread_mutex_unlock(mu);
		core_error(r, 503, "unavailable", "store: %s",
			   tlcm_strerror(rc));
		return;
	}
	ingest_t g = {.c = c, .dev = dev, .id = id, .recv = core_wall_ns()};
	rc = tlcm_pkg_decode(r->body, r->len, &g.items, &g.n, g.why,
			     sizeof g.why);
	if (!rc) {
		g.b = tlcm_batch_new();
		g.frames = cJSON_CreateArray();
		g.events = cJSON_CreateArray();
		rc = !g.b || !g.frames || !g.events ? TLCM_ENOMEM :
			store_package(c, r, &g, p);
	}
	pthread_mutex_unlock(mu);
	tlcm_batch_free(g.b);
	tlcm_pkg_items_free(g.items, g.n);
	cJSON_Delete(g.frames);
	cJSON_Delete(g.events);
	if (rc == TLCM_EBADMSG) {
		snprintf(why, sizeof why, "package %s: %s", id, g.why);
		reject(r, 400, why);
		return;
	}
	if (rc) {
		core_error(r, 503, "unavailable", "cannot store package %s: "
			   "%s", id, tlcm_strerror(rc));
		return;
	}
	atomic_fetch_add(&c->st.stored, 1);
	atomic_fetch_add(&c->st.bytes, r->len);
	atomic_fetch_add(&c->st.drift_events, g.nevents);
	atomic_fetch_add(&c->st.samples, g.nsamples);
	atomic_fetch_add(&c->st.metrics, g.nmetrics);
	atomic_fetch_add(&c->st.logs, g.nlogs);
	atomic_fetch_add(&c->st.ingest_ns, core_mono_ns() - t0);
	core_device_count(c, dev, r->len, false, g.nevents);
	answer(r, id, "stored");
}

/* ---- GET /packages ----------------------------------------------------------- */

typedef struct {
	core_t *c;
	cJSON *out;
	size_t left;
	const char *kind;
	uint64_t since;
	bool by_device;
} list_t;

static int list_one(list_t *l, const char *id)
{
	void *v = NULL;
	size_t vl;
	if (tlcm_store_get(l->c->store, "core/packages", id, CORE_UUID_LEN, &v,
			   &vl))
		return 0;
	cJSON *o = core_json_parse(v, vl);
	free(v);
	if (!o)
		return 0;
	const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "kind");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "received_ns");
	uint64_t tv;
	if (l->since && core_json_get_u64(t, &tv) && tv < l->since) {
		cJSON_Delete(o);
		/* per device, newest first: everything after is older */
		return l->by_device ? 1 : 0;
	}
	if (l->kind && (!cJSON_IsString(k) || strcmp(k->valuestring, l->kind))) {
		cJSON_Delete(o);
		return 0;
	}
	cJSON_AddItemToArray(l->out, o);
	return --l->left ? 0 : 1;
}

static int list_dev(void *arg, const void *key, size_t klen, const void *val,
		    size_t vlen)
{
	(void)val, (void)vlen;
	char id[CORE_UUID_LEN + 1];
	if (klen < CORE_UUID_LEN)
		return 0;
	memcpy(id, (const char *)key + klen - CORE_UUID_LEN, CORE_UUID_LEN);
	id[CORE_UUID_LEN] = 0;
	return list_one(arg, id);
}

static int list_all(void *arg, const void *key, size_t klen, const void *val,
		    size_t vlen)
{
	list_t *l = arg;
	(void)vlen;
	char id[CORE_UUID_LEN + 1];
	if (klen != CORE_UUID_LEN)
		return 0;
	memcpy(id, key, CORE_UUID_LEN);
	id[CORE_UUID_LEN] = 0;
	(void)val;
	return list_one(l, id);
}

void core_packages_list(core_req_t *r)
{
	char dev[CORE_ID_MAX + 1] = "", kind[40] = "";
	bool by_dev = core_query(r, "device", dev, sizeof dev);
	if (by_dev && !core_valid_device(dev)) {
		core_error(r, 400, "bad_request", "device: not "
			   "[A-Za-z0-9._-]{1,64}");
		return;
	}
	if (by_dev ? core_auth_admin_or(r, dev) : core_auth_admin(r))
		return;
	list_t l = {.c = r->c, .by_device = by_dev};
	if (!core_query_limit(r, &l.left, 100, 1000) ||
	    !core_query_since(r, &l.since))
		return;
	if (core_query(r, "kind", kind, sizeof kind))
		l.kind = kind;
	cJSON *o = cJSON_CreateObject();
	l.out = cJSON_AddArrayToObject(o, "packages");
	int rc;
	if (by_dev) {
		unsigned char p[CORE_ID_MAX + 1];
		size_t pl = core_devkey(p, dev, NULL, 0);
		rc = tlcm_store_scan_range(r->c->store, "core/bydev", p, pl,
					   NULL, 0, true, list_dev, &l);
	} else {
		rc = tlcm_store_scan_range(r->c->store, "core/packages", "", 0,
					   NULL, 0, true, list_all, &l);
	}
	core_reply_cjson(r, rc < 0 ? rc : 0, o);
}
