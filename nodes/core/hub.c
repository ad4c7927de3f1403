/* hub.c — the drift hub: drift events from packages, a person's verdict on
 * them (validate with a label, or reject), labels for single quarantined
 * samples, and the feedback queue each device pulls at sync (docs/api.md:
 * GET /devices/{id}/feedback, POST …/feedback/ack). Also the per-device
 * metrics and log series decoded at ingest.
 *
 * A label is queued as one feedback record per sample (device, frame id,
 * label); the device persists it, feeds it to its graph and acknowledges
 * it; unacknowledged labels are offered again at the next pull.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "engine/log.h"
#include "nodes/core/core.h"
#include "nodes/packager/pkg_util.h"

#define DRIFT "core/drift"
#define FEEDBACK "core/feedback"

/* ---- events ------------------------------------------------------------------ */

int core_event_put(core_t *c, tlcm_batch_t *b, const char *evid,
		   const char *dev, uint64_t recv, cJSON *o)
{
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s)
		return TLCM_ENOMEM;
	size_t el = strlen(evid);
	unsigned char key[2 + CORE_ID_MAX + 1 + 8 + CORE_UUID_LEN + 16];
	memcpy(key, "e/", 2);
	memcpy(key + 2, evid, el);
	int rc = tlcm_batch_put(c->store, b, DRIFT, key, 2 + el, s, strlen(s));
	cJSON_free(s);
	/* indexes: all events in arrival order, and per device */
	memcpy(key, "t/", 2);
	core_be64(key + 2, recv);
	memcpy(key + 10, evid, el);
	if (!rc)
		rc = tlcm_batch_put(c->store, b, DRIFT, key, 10 + el, "", 0);
	memcpy(key, "d/", 2);
	size_t kl = 2 + core_devkey(key + 2, dev, &recv, 1);
	memcpy(key + kl, evid, el);
	if (!rc)
		rc = tlcm_batch_put(c->store, b, DRIFT, key, kl + el, "", 0);
	return rc;
}

static bool valid_evid(const char *s)
{
	size_t n = strlen(s);
	if (n < CORE_UUID_LEN + 2 || n > CORE_UUID_LEN + 11 ||
	    s[CORE_UUID_LEN] != '.')
		return false;
	char u[CORE_UUID_LEN + 1];
	memcpy(u, s, CORE_UUID_LEN);
	u[CORE_UUID_LEN] = 0;
	uint64_t item;
	return core_valid_uuid(u) && core_parse_u64(s + CORE_UUID_LEN + 1,
						    &item);
}

/* The event's JSON (parsed), or NULL (answered 400/404/503). */
static cJSON *event_get(core_req_t *r, const char *evid)
{
	if (!valid_evid(evid)) {
		core_error(r, 400, "bad_request", "event id: want PACKAGE_ID."
			   "ITEM");
		return NULL;
	}
	char key[2 + CORE_UUID_LEN + 16];
	int kl = snprintf(key, sizeof key, "e/%s", evid);
	void *v = NULL;
	size_t vl;
	int rc = tlcm_store_get(r->c->store, DRIFT, key, (size_t)kl, &v, &vl);
	if (rc == TLCM_ENOENT) {
		core_error(r, 404, "not_found", "no drift event %s", evid);
		return NULL;
	}
	cJSON *o = rc ? NULL : core_json_parse(v, vl);
	free(v);
	if (!o)
		core_error(r, 503, "unavailable", "drift event %s: %s", evid,
			   rc ? tlcm_strerror(rc) : "unreadable record");
	return o;
}

static void sample_key(unsigned char *key, size_t *kl, uint64_t frame,
		       const char *dev)
{
	core_be64(key, frame);
	size_t dl = strlen(dev);
	memcpy(key + 8, dev, dl);
	*kl = 8 + dl;
}

static cJSON *sample_get(core_t *c, uint64_t frame, const char *dev)
{
	unsigned char key[8 + CORE_ID_MAX];
	size_t kl;
	sample_key(key, &kl, frame, dev);
	void *v = NULL;
	size_t vl;
	if (tlcm_store_get(c->store, "core/samples", key, kl, &v, &vl))
		return NULL;
	cJSON *o = core_json_parse(v, vl);
	free(v);
	return o;
}

typedef struct {
	core_t *c;
	cJSON *out;
	size_t left;
	uint64_t since;
	const char *status, *device;
	size_t skip; /* key bytes before the event id */
} elist_t;

static int list_event(void *arg, const void *key, size_t klen,
		      const void *val, size_t vlen)
{
	elist_t *l = arg;
	(void)val, (void)vlen;
	if (klen <= l->skip || klen - l->skip > CORE_UUID_LEN + 12)
		return 0;
	const unsigned char *k = key;
	if (core_get_be64(k + l->skip - 8) < l->since)
		return 1; /* newest first: the rest is older */
	char ek[2 + CORE_UUID_LEN + 16];
	memcpy(ek, "e/", 2);
	memcpy(ek + 2, k + l->skip, klen - l->skip);
	void *v = NULL;
	size_t vl;
	if (tlcm_store_get(l->c->store, DRIFT, ek, 2 + klen - l->skip, &v,
			   &vl))
		return 0;
	cJSON *o = core_json_parse(v, vl);
	free(v);
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "status");
	if (!o || (l->status && (!cJSON_IsString(st) ||
				 strcmp(st->valuestring, l->status)))) {
		cJSON_Delete(o);
		return 0;
	}
	cJSON_AddItemToArray(l->out, o);
	return --l->left ? 0 : 1;
}

void core_drift_list(core_req_t *r)
{
	char dev[CORE_ID_MAX + 1] = "", status[16] = "";
	bool by_dev = core_query(r, "device", dev, sizeof dev);
	if (by_dev && !core_valid_device(dev)) {
		core_error(r, 400, "bad_request", "device: not "
			   "[A-Za-z0-9._-]{1,64}");
		return;
	}
	if (core_auth_admin(r))
		return;
	elist_t l = {.c = r->c};
	if (core_query(r, "status", status, sizeof status)) {
		static const char *const ok[] = {"pending", "validated",
						 "rejected", "info", NULL};
		size_t i = 0;
		while (ok[i] && strcmp(ok[i], status))
			i++;
		if (!ok[i]) {
			core_error(r, 400, "bad_request", "status: want pending, "
				   "validated, rejected or info");
			return;
		}
		l.status = status;
	}
	if (!core_query_limit(r, &l.left, 100, 1000) || !core_query_since(r, &l.since))
		return;
	cJSON *o = cJSON_CreateObject();
	l.out = cJSON_AddArrayToObject(o, "events");
	unsigned char p[2 + CORE_ID_MAX + 1];
	size_t pl;
	if (by_dev) {
		memcpy(p, "d/", 2);
		pl = 2 + core_devkey(p + 2, dev, NULL, 0);
	} else {
		memcpy(p, "t/", 2);
		pl = 2;
	}
	l.skip = pl + 8;
	int rc = tlcm_store_scan_range(r->c->store, DRIFT, p, pl, NULL, 0, true,
				       list_event, &l);
	core_reply_cjson(r, rc < 0 ? rc : 0, o);
}

void core_drift_get(core_req_t *r)
{
	if (core_auth_admin(r))
		return;
	cJSON *e = event_get(r, r->param[0]);
	if (!e)
		return;
	const char *dev = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(e, "device_id"));
	cJSON *frames = cJSON_GetObjectItemCaseSensitive(e, "samples");
	cJSON *det = cJSON_CreateArray();
	cJSON *f;
	cJSON_ArrayForEach(f, frames)
	{
		uint64_t fr;
		if (!core_json_get_u64(f, &fr) || !dev)
			continue;
		cJSON *s = sample_get(r->c, fr, dev);
		if (s)
			cJSON_AddItemToArray(det, s);
	}
	cJSON_AddItemToObject(e, "sample_details", det);
	core_reply_cjson(r, 0, e);
}

void core_drift_image(core_req_t *r)
{
	if (core_auth_admin(r))
		return;
	cJSON *e = event_get(r, r->param[0]);
	if (!e)
		return;
	const char *img = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(e, "image"));
	char key[CORE_UUID_LEN + 1 + 140];
	int kl = img ? snprintf(key, sizeof key, "%.36s/%s", r->param[0], img)
		     : 0;
	void *v = NULL;
	size_t vl;
	if (!img || tlcm_store_get(r->c->store, "core/images", key,
				   (size_t)kl, &v, &vl)) {
		cJSON_Delete(e);
		core_error(r, 404, "not_found", "drift event %s has no image",
			   r->param[0]);
		return;
	}
	core_reply(r, 200, core_media_type(img, v, vl), v, vl);
	cJSON_Delete(e); /* img points into it */
	free(v);
}

const char *core_media_type(const char *name, const void *data, size_t len)
{
	static const struct {
		const char *magic;
		size_t n;
		const char *type;
	} MAGIC[] = {
		{"\x89PNG\r\n\x1a\n", 8, "image/png"},
		{"\xff\xd8\xff", 3, "image/jpeg"},
		{"GIF87a", 6, "image/gif"},
		{"GIF89a", 6, "image/gif"},
	};
	static const struct {
		const char *ext, *type;
	} EXT[] = {
		{".png", "image/png"},   {".jpg", "image/jpeg"},
		{".jpeg", "image/jpeg"}, {".gif", "image/gif"},
		{".webp", "image/webp"}, {".bmp", "image/bmp"},
	};
	const unsigned char *p = data;
	for (size_t i = 0; p && i < sizeof MAGIC / sizeof MAGIC[0]; i++)
		if (len >= MAGIC[i].n && !memcmp(p, MAGIC[i].magic, MAGIC[i].n))
			return MAGIC[i].type;
	if (p && len >= 12 && !memcmp(p, "RIFF", 4) &&
	    !memcmp(p + 8, "WEBP", 4))
		return "image/webp";
	const char *ext = name ? strrchr(name, '.') : NULL;
	for (size_t i = 0; ext && i < sizeof EXT / sizeof EXT[0]; i++)
		if (!strcasecmp(ext, EXT[i].ext))
			return EXT[i].type;
	return "application/octet-stream";
}

/* ---- labels ------------------------------------------------------------------ */

/* A label from a person: 1..255 bytes of text without control
 * characters. */
static const char *take_label(core_req_t *r, const cJSON *j)
{
	const char *l = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(j, "label"));
	size_t n = l ? strlen(l) : 0;
	char clean[256];
	if (n && n < 256)
		core_clean_text(l, clean, sizeof clean);
	if (!n || n > 255 || strcmp(clean, l)) {
		core_error(r, 400, "bad_request", "label: want text of 1 to "
			   "255 bytes, UTF-8, no control characters");
		return NULL;
	}
	return l;
}

/* Queue (device, frame, label) for the device and mark the sample. */
static int queue_label(core_t *c, tlcm_batch_t *b, const char *dev,
		       uint64_t frame, const char *label, const char *source,
		       cJSON *sample)
{
	uint64_t seq = atomic_fetch_add(&c->feedback_seq, 1) + 1;
	unsigned char key[CORE_ID_MAX + 1 + 8];
	size_t kl = core_devkey(key, dev, &seq, 1);
	char id[24];
	snprintf(id, sizeof id, "fb-%016" PRIx64, seq);
	uint64_t now = core_wall_ns();
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", id);
	core_json_add_u64(o, "frame_id", frame);
	cJSON_AddStringToObject(o, "label", label);
	cJSON_AddStringToObject(o, "source", source);
	core_json_add_u64(o, "created_ns", now);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s)
		return TLCM_ENOMEM;
	int rc = tlcm_batch_put(c->store, b, FEEDBACK, key, kl, s, strlen(s));
	cJSON_free(s);
	if (!rc && sample) {
		cJSON_DeleteItemFromObjectCaseSensitive(sample, "truth");
		cJSON_AddStringToObject(sample, "truth", label);
		cJSON_DeleteItemFromObjectCaseSensitive(sample, "labelled_ns");
		core_json_add_u64(sample, "labelled_ns", now);
		unsigned char sk[8 + CORE_ID_MAX];
		size_t skl;
		sample_key(sk, &skl, frame, dev);
		char *t = cJSON_PrintUnformatted(sample);
		rc = t ? tlcm_batch_put(c->store, b, "core/samples", sk, skl, t,
					strlen(t)) : TLCM_ENOMEM;
		cJSON_free(t);
	}
	return rc;
}

void core_drift_validate(core_req_t *r)
{
	if (core_auth_admin(r))
		return;
	core_t *c = r->c;
	cJSON *j = core_json_parse(r->body, r->len);
	cJSON *e = NULL;
	tlcm_batch_t *b = NULL;
	pthread_mutex_t *mu = NULL;
	if (!cJSON_IsObject(j)) {
		core_error(r, 400, "bad_request", "the body is not a JSON "
			   "object: {\"label\": …} or {\"reject\": true}");
		goto out;
	}
	bool rej = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "reject"));
	const char *label = rej ? NULL : take_label(r, j);
	if (!rej && !label)
		goto out;
	const cJSON *only = cJSON_GetObjectItemCaseSensitive(j, "frames");
	if (only && !cJSON_IsArray(only)) {
		core_error(r, 400, "bad_request", "frames: want an array of "
			   "frame ids of this event's samples");
		goto out;
	}
	/* one verdict per event: read, decide and write under its lock */
	mu = core_lock_of(c, r->param[0]);
	pthread_mutex_lock(mu);
	if (!(e = event_get(r, r->param[0])))
		goto out;
	const char *was = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(e, "status"));
	if (!was || strcmp(was, "pending")) {
		const char *had = cJSON_GetStringValue(
			cJSON_GetObjectItemCaseSensitive(e, "label"));
		if (was && !strcmp(was, "info"))
			core_error(r, 409, "conflict", "drift event %s is not "
				   "a drift start: only pending events take a "
				   "verdict", r->param[0]);
		else
			core_error(r, 409, "conflict", "drift event %s is "
				   "already %s%s%s%s; relabel single samples "
				   "with POST /samples/{frame_id}/label",
				   r->param[0], was ? was : "decided",
				   had ? " as '" : "", had ? had : "",
				   had ? "'" : "");
		goto out;
	}
	const char *dev = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(e, "device_id"));
	cJSON *frames = cJSON_GetObjectItemCaseSensitive(e, "samples");
	b = tlcm_batch_new();
	if (!dev || !b) {
		core_error(r, 503, "unavailable", "unreadable event or out of "
			   "memory");
		goto out;
	}
	/* the frames asked for must be the event's */
	const cJSON *f;
	cJSON_ArrayForEach(f, only)
	{
		bool found = false;
		uint64_t want, have;
		const cJSON *g;
		bool ok = core_json_get_u64(f, &want);
		cJSON_ArrayForEach(g, frames)
		found = found || (ok && core_json_get_u64(g, &have) &&
				  want == have);
		if (!found) {
			char *t = cJSON_PrintUnformatted(f);
			core_error(r, 400, "bad_request", "frames: %.30s is not "
				   "a sample of event %s", t ? t : "?",
				   r->param[0]);
			cJSON_free(t);
			goto out;
		}
	}
	int rc = 0;
	unsigned queued = 0;
	const cJSON *todo = rej ? NULL : only ? only : frames;
	for (f = todo ? todo->child : NULL; f && !rc; f = f->next) {
		uint64_t fr;
		if (!core_json_get_u64(f, &fr))
			continue;
		cJSON *s = sample_get(c, fr, dev);
		rc = queue_label(c, b, dev, fr, label, "drift_validation", s);
		cJSON_Delete(s);
		queued += !rc;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(e, "status");
	cJSON_AddStringToObject(e, "status", rej ? "rejected" : "validated");
	cJSON_DeleteItemFromObjectCaseSensitive(e, "label");
	if (label)
		cJSON_AddStringToObject(e, "label", label);
	cJSON_DeleteItemFromObjectCaseSensitive(e, "validated_ns");
	core_json_add_u64(e, "validated_ns", core_wall_ns());
	char *s = cJSON_PrintUnformatted(e);
	char key[2 + CORE_UUID_LEN + 16];
	int kl = snprintf(key, sizeof key, "e/%s", r->param[0]);
	if (!rc)
		rc = s ? tlcm_batch_put(c->store, b, DRIFT, key, (size_t)kl, s,
					strlen(s)) : TLCM_ENOMEM;
	cJSON_free(s);
	if (!rc)
		rc = tlcm_store_write(c->store, b);
	if (rc) {
		core_error(r, 503, "unavailable", "cannot store the verdict: "
			   "%s", tlcm_strerror(rc));
		goto out;
	}
	atomic_fetch_add(&c->st.feedback_queued, queued);
	core_device_feedback(c, dev, (int)queued);
	tlcm_log(TLCM_LOG_INFO, tlcm_node_id(c->ctx), "drift event %s %s%s%s: "
		 "%u labels for %s", r->param[0], rej ? "rejected" :
		 "validated as '", rej ? "" : label, rej ? "" : "'", queued,
		 dev);
	char body[256];
	snprintf(body, sizeof body, "{\"id\":\"%s\",\"status\":\"%s\","
		 "\"feedback\":%u}", r->param[0],
		 rej ? "rejected" : "validated", queued);
	core_reply_json(r, 200, body);
out:
	if (mu)
		pthread_mutex_unlock(mu);
	tlcm_batch_free(b);
	cJSON_Delete(e);
	cJSON_Delete(j);
}

typedef struct {
	cJSON *found;
	char dev[CORE_ID_MAX + 1];
	size_t n;
} who_t;

static int who_has(void *arg, const void *key, size_t klen, const void *val,
		   size_t vlen)
{
	who_t *w = arg;
	(void)val, (void)vlen;
	if (klen > 8 && klen - 8 <= CORE_ID_MAX && !w->n++)
		snprintf(w->dev, sizeof w->dev, "%.*s", (int)(klen - 8),
			 (const char *)key + 8);
	return 0;
}

/* The frame of the path and its device (from ?device= or the body's
 * device_id, or the only device that has it). false: answered. */
static bool sample_of(core_req_t *r, const cJSON *j, uint64_t *frame,
		      char *dev)
{
	if (!core_parse_u64(r->param[0], frame)) {
		core_error(r, 400, "bad_request", "frame id: want a decimal "
			   "number");
		return false;
	}
	const char *d = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(j, "device_id"));
	char q[CORE_ID_MAX + 1];
	if (!d && core_query(r, "device", q, sizeof q))
		d = q;
	if (d) {
		if (!core_valid_device(d)) {
			core_error(r, 400, "bad_request", "device_id: not "
				   "[A-Za-z0-9._-]{1,64}");
			return false;
		}
		snprintf(dev, CORE_ID_MAX + 1, "%s", d);
		return true;
	}
	unsigned char p[8];
	core_be64(p, *frame);
	who_t w = {0};
	tlcm_store_scan(r->c->store, "core/samples", p, 8, who_has, &w);
	if (w.n > 1) {
		core_error(r, 409, "ambiguous", "frame %s is a sample of %zu "
			   "devices: say which with device_id", r->param[0],
			   w.n);
		return false;
	}
	if (!w.n) {
		core_error(r, 404, "not_found", "no quarantined sample with "
			   "frame %s", r->param[0]);
		return false;
	}
	snprintf(dev, CORE_ID_MAX + 1, "%s", w.dev);
	return true;
}

void core_sample_label(core_req_t *r)
{
	if (core_auth_admin(r))
		return;
	core_t *c = r->c;
	cJSON *j = core_json_parse(r->body, r->len);
	tlcm_batch_t *b = NULL;
	cJSON *s = NULL;
	uint64_t frame;
	char dev[CORE_ID_MAX + 1];
	const char *label;
	if (!cJSON_IsObject(j)) {
		core_error(r, 400, "bad_request", "the body is not a JSON "
			   "object: {\"label\": …}");
		goto out;
	}
	if (!(label = take_label(r, j)) || !sample_of(r, j, &frame, dev))
		goto out;
	if (!(s = sample_get(c, frame, dev))) {
		core_error(r, 404, "not_found", "device %s has no quarantined "
			   "sample with frame %" PRIu64, dev, frame);
		goto out;
	}
	b = tlcm_batch_new();
	int rc = b ? queue_label(c, b, dev, frame, label, "sample_label", s) :
		     TLCM_ENOMEM;
	if (!rc)
		rc = tlcm_store_write(c->store, b);
	if (rc) {
		core_error(r, 503, "unavailable", "cannot store the label: %s",
			   tlcm_strerror(rc));
		goto out;
	}
	atomic_fetch_add(&c->st.feedback_queued, 1);
	core_device_feedback(c, dev, 1);
	char body[200];
	snprintf(body, sizeof body, "{\"frame_id\":%" PRIu64 ",\"device_id\":"
		 "\"%s\",\"feedback\":1}", frame, dev);
	core_reply_json(r, 200, body);
out:
	tlcm_batch_free(b);
	cJSON_Delete(s);
	cJSON_Delete(j);
}

void core_sample_thumb(core_req_t *r)
{
	if (core_auth_admin(r))
		return;
	uint64_t frame;
	char dev[CORE_ID_MAX + 1];
	if (!sample_of(r, NULL, &frame, dev))
		return;
	unsigned char key[8 + CORE_ID_MAX];
	size_t kl;
	sample_key(key, &kl, frame, dev);
	void *v = NULL;
	size_t vl;
	uint8_t *png = NULL;
	size_t pl = 0;
	int rc = tlcm_store_get(r->c->store, "core/thumbs", key, kl, &v, &vl);
	const unsigned char *t = v;
	if (!rc) {
		unsigned w = (unsigned)t[0] << 8 | t[1];
		unsigned h = (unsigned)t[2] << 8 | t[3];
		rc = vl == 4 + (size_t)w * h ?
			tlcm_png_encode(t + 4, w, h, 1, &png, &pl) :
			TLCM_ECORRUPT;
	}
	free(v);
	if (rc == TLCM_ENOENT)
		core_error(r, 404, "not_found", "no thumbnail for frame %"
			   PRIu64 " of %s", frame, dev);
	else if (rc)
		core_error(r, 503, "unavailable", "thumbnail: %s",
			   tlcm_strerror(rc));
	else
		core_reply(r, 200, "image/png", png, pl);
	free(png);
}

typedef struct {
	cJSON *out;
	size_t left;
	const char *device;
	int labelled; /* -1 any, 0 without truth, 1 with */
} slist_t;

static int list_sample(void *arg, const void *key, size_t klen,
		       const void *val, size_t vlen)
{
	slist_t *l = arg;
	if (l->device && (klen - 8 != strlen(l->device) ||
			  memcmp((const char *)key + 8, l->device, klen - 8)))
		return 0;
	cJSON *o = core_json_parse(val, vlen);
	if (!o)
		return 0;
	bool has = cJSON_GetObjectItemCaseSensitive(o, "truth") != NULL;
	if (l->labelled >= 0 && has != (l->labelled == 1)) {
		cJSON_Delete(o);
		return 0;
	}
	cJSON_AddItemToArray(l->out, o);
	return --l->left ? 0 : 1;
}

/* GET /samples?device=&labelled=true|false&limit=: quarantined samples,
 * in frame order. */
void core_samples_list(core_req_t *r)
{
	if (core_auth_admin(r))
		return;
	char dev[CORE_ID_MAX + 1], lab[8];
	slist_t l = {.labelled = -1};
	if (core_query(r, "device", dev, sizeof dev)) {
		if (!core_valid_device(dev)) {
			core_error(r, 400, "bad_request", "device: not "
				   "[A-Za-z0-9._-]{1,64}");
			return;
		}
		l.device = dev;
	}
	if (core_query(r, "labelled", lab, sizeof lab)) {
		if (strcmp(lab, "true") && strcmp(lab, "false")) {
			core_error(r, 400, "bad_request", "labelled: want true "
				   "or false");
			return;
		}
		l.labelled = !strcmp(lab, "true");
	}
	if (!core_query_limit(r, &l.left, 100, 10000))
		return;
	cJSON *o = cJSON_CreateObject();
	l.out = cJSON_AddArrayToObject(o, "samples");
	int rc = tlcm_store_scan(r->c->store, "core/samples", "", 0,
				 list_sample, &l);
	core_reply_cjson(r, rc < 0 ? rc : 0, o);
}

/* ---- feedback queue ------------------------------------------------------ */

static int max_seq(void *arg, const void *key, size_t klen, const void *val,
		   size_t vlen)
{
	core_t *c = arg;
	(void)val, (void)vlen;
	if (klen >= 9) {
		uint64_t s = core_get_be64((const unsigned char *)key + klen -
					   8);
		if (s > atomic_load(&c->feedback_seq))
			atomic_store(&c->feedback_seq, s);
	}
	return 0;
}

int core_feedback_load(core_t *c)
{
	return tlcm_store_scan(c->store, FEEDBACK, "", 0, max_seq, c);
}

typedef struct {
	cJSON *out;
	size_t left;
	bool more;
} fb_t;

static int fb_one(void *arg, const void *key, size_t klen, const void *val,
		  size_t vlen)
{
	fb_t *f = arg;
	(void)key, (void)klen;
	if (!f->left) {
		f->more = true;
		return 1;
	}
	cJSON *o = core_json_parse(val, vlen);
	if (o) {
		cJSON_AddItemToArray(f->out, o);
		f->left--;
	}
	return 0;
}

void core_feedback_get(core_req_t *r)
{
	const char *dev = core_path_device(r, true);
	if (!dev)
		return;
	fb_t f = {0};
	if (!core_query_limit(r, &f.left, 256, 1000))
		return;
	cJSON *o = cJSON_CreateObject();
	f.out = cJSON_AddArrayToObject(o, "labels");
	unsigned char p[CORE_ID_MAX + 1];
	size_t pl = core_devkey(p, dev, NULL, 0);
	int rc = tlcm_store_scan(r->c->store, FEEDBACK, p, pl, fb_one, &f);
	cJSON_AddBoolToObject(o, "more", f.more);
	core_reply_cjson(r, rc < 0 ? rc : 0, o);
}

void core_feedback_ack(core_req_t *r)
{
	const char *dev = core_path_device(r, false);
	if (!dev)
		return;
	core_t *c = r->c;
	cJSON *j = core_json_parse(r->body, r->len);
	const cJSON *ids = cJSON_GetObjectItemCaseSensitive(j, "ids");
	tlcm_batch_t *b = tlcm_batch_new();
	int rc = 0, acked = 0;
	if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) > 1000) {
		core_error(r, 400, "bad_request", "want {\"ids\": [up to 1000 "
			   "feedback ids]}");
		goto out;
	}
	const cJSON *id;
	cJSON_ArrayForEach(id, ids)
	{
		const char *s = cJSON_GetStringValue(id);
		uint64_t seq = 0;
		char *end = NULL;
		/* 16 hex digits: strtoull alone would take "fb- -00…01" */
		if (s && strlen(s) == 19 && !strncmp(s, "fb-", 3) &&
		    strspn(s + 3, "0123456789abcdefABCDEF") == 16)
			seq = strtoull(s + 3, &end, 16);
		if (!seq || !end || *end) {
			core_error(r, 400, "bad_request", "ids: '%.40s' is not "
				   "a feedback id (fb-<16 hex digits>)",
				   s ? s : "(not text)");
			goto out;
		}
		unsigned char key[CORE_ID_MAX + 1 + 8];
		size_t kl = core_devkey(key, dev, &seq, 1);
		void *v = NULL;
		size_t vl;
		/* acknowledging twice, or an id of another device, is no
		 * error: only what is queued for this device is removed */
		if (!tlcm_store_get(c->store, FEEDBACK, key, kl, &v, &vl)) {
			rc = tlcm_batch_delete(c->store, b, FEEDBACK, key, kl);
			acked++;
		}
		free(v);
		if (rc)
			break;
	}
	if (!rc && acked)
		rc = tlcm_store_write(c->store, b);
	if (rc) {
		core_error(r, 503, "unavailable", "cannot store the "
			   "acknowledgement: %s", tlcm_strerror(rc));
		goto out;
	}
	atomic_fetch_add(&c->st.feedback_acked, (uint64_t)acked);
	core_device_feedback(c, dev, -acked);
	char body[40];
	snprintf(body, sizeof body, "{\"acked\":%d}", acked);
	core_reply_json(r, 200, body);
out:
	tlcm_batch_free(b);
	cJSON_Delete(j);
}

/* ---- per-device series ---------------------------------------------------- */

typedef struct {
	cJSON *out;
	size_t left;
	uint64_t since;
	size_t plen;
} series_t;

static int series_one(void *arg, const void *key, size_t klen,
		      const void *val, size_t vlen)
{
	series_t *s = arg;
	if (klen != s->plen + 16)
		return 0;
	if (core_get_be64((const unsigned char *)key + s->plen) < s->since)
		return 1;
	cJSON *o = core_json_parse(val, vlen);
	if (o)
		cJSON_AddItemToArray(s->out, o);
	return --s->left ? 0 : 1;
}

static void series(core_req_t *r, const char *fam, const char *name)
{
	const char *dev = core_path_device(r, true);
	if (!dev)
		return;
	series_t s = {0};
	if (!core_query_limit(r, &s.left, 100, 10000) || !core_query_since(r, &s.since))
		return;
	cJSON *o = cJSON_CreateObject();
	s.out = cJSON_AddArrayToObject(o, name);
	unsigned char p[CORE_ID_MAX + 1];
	s.plen = core_devkey(p, dev, NULL, 0);
	int rc = tlcm_store_scan_range(r->c->store, fam, p, s.plen, NULL, 0,
				       true, series_one, &s);
	core_reply_cjson(r, rc < 0 ? rc : 0, o);
}

void core_device_metrics(core_req_t *r)
{
	series(r, "core/metrics", "metrics");
}

void core_device_logs(core_req_t *r)
{
	series(r, "core/logs", "logs");
}
