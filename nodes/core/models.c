/* models.c — the core's model registry (docs/api.md): an operator uploads
 * a model file (POST /models, admin token), the core keeps its bytes and
 * metadata in the store; devices ask what is newer than what they run
 * (POST /models/available) and download it (GET /models/{name}/{version},
 * ETag = the SHA-256, If-None-Match, one Range).
 *
 * Offers are signed by the core's Ed25519 key (`signing_key`, a file of
 * `tinylcm model keygen`) in exactly the format the device's updater
 * checks (nodes/updater/verify.h: upd_sign, upd_meta_to_json). They are
 * signed when served, with the key the core holds now: after a key
 * rotation (docs/models.md) every current offer carries the new key at
 * the next start. Community models go only to devices that contributed
 * telemetry on community_min_days days (telemetry.c).
 *
 * Families: core/models NAME\0be64(version) -> metadata JSON;
 * core/model_blobs, same key -> the file's bytes (one value: a model is
 * at most max_body bytes).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "engine/log.h"
#include "nodes/core/core.h"
#include "nodes/updater/verify.h"

#define MODELS "core/models"
#define BLOBS "core/model_blobs"
#define NAME_MAX_ 64           /* core model names: [a-z0-9._-]{1,64} */
#define VERSION_MAX 9007199254740991ull /* 2^53 - 1: exact in JSON */
#define MAX_ASKED 64           /* models in one /models/available */
#define MAX_OFFERS 16          /* newer versions offered per model */

struct core_models {
	pthread_mutex_t mu;    /* uploads: the 409 check and the write */
	uint8_t sk[UPD_SK_BYTES];
	char key_id[UPD_KEY_ID_MAX + 1];
	bool have_key;
	uint64_t ttl_s;        /* offer lifetime when the upload names none */
};

int core_models_init(core_t *c, char *why, size_t cap)
{
	core_models_t *m = calloc(1, sizeof *m);
	if (!m)
		return tlcm_fail(why, cap, TLCM_ENOMEM, "out of memory");
	pthread_mutex_init(&m->mu, NULL);
	c->models = m;
	m->ttl_s = tlcm_param_duration_ns(c->ctx, "model_ttl") / 1000000000ull;
	const char *path = tlcm_param_str(c->ctx, "signing_key");
	const char *want = tlcm_param_str(c->ctx, "key_id");
	if (!path || !*path) {
		if (want && *want)
			return tlcm_fail(why, cap, TLCM_EINVAL, "key_id '%s' "
					 "needs signing_key (the secret key "
					 "file of `tinylcm model keygen`)",
					 want);
		return 0;
	}
	int rc = upd_secret_load(path, m->key_id, m->sk, why, cap);
	if (rc) {
		size_t l = strlen(why);
		snprintf(why + l, cap - l, " (signing_key)");
		return rc;
	}
	if (want && *want && strcmp(want, m->key_id)) {
		sodium_memzero(m->sk, sizeof m->sk);
		return tlcm_fail(why, cap, TLCM_EINVAL, "key_id '%s', but "
				 "signing_key %s holds key '%s': a key id "
				 "names one key (docs/models.md)", want, path,
				 m->key_id);
	}
	m->have_key = true;
	return 0;
}

void core_models_free(core_t *c)
{
	core_models_t *m = c->models;
	if (!m)
		return;
	sodium_memzero(m->sk, sizeof m->sk);
	pthread_mutex_destroy(&m->mu);
	free(m);
	c->models = NULL;
}

bool core_models_signing(const core_t *c, char *key_id, size_t cap)
{
	const core_models_t *m = c->models;
	if (key_id && cap)
		snprintf(key_id, cap, "%s", m && m->have_key ? m->key_id : "");
	return m && m->have_key;
}

/* ---- helpers --------------------------------------------------------------- */

bool core_valid_model(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!islower((unsigned char)s[n]) &&
		    !isdigit((unsigned char)s[n]) && !strchr("._-", s[n]))
			return false;
	return n >= 1 && n <= NAME_MAX_ && strcmp(s, ".") && strcmp(s, "..");
}

int core_auth_reader(core_req_t *r, char *dev)
{
	dev[0] = 0;
	const char *a = core_header(r, "Authorization");
	if (r->c->have_admin && a && !strncasecmp(a, "Bearer ", 7)) {
		for (a += 7; *a == ' '; a++)
			;
		unsigned char h[32];
		core_sha256(a, strlen(a), h);
		if (!sodium_memcmp(h, r->c->admin_hash, 32))
			return 0;
	}
	if (core_header(r, "X-Device-ID"))
		return core_auth_device(r, NULL, dev);
	return core_auth_admin(r);
}

static size_t model_key(unsigned char *key, const char *name, uint64_t v)
{
	return core_devkey(key, name, &v, 1);
}

/* A metadata field from the query, else from a header. */
static bool meta_arg(const core_req_t *r, const char *q, const char *hdr,
		     char *out, size_t cap)
{
	if (core_query(r, q, out, cap))
		return true;
	const char *h = core_header(r, hdr);
	if (!h || strlen(h) >= cap)
		return false;
	snprintf(out, cap, "%s", h);
	return true;
}

static uint64_t num(const cJSON *o, const char *k)
{
	uint64_t v = 0;
	core_json_get_u64(cJSON_GetObjectItemCaseSensitive(o, k), &v);
	return v;
}

static bool meta_community(const cJSON *o)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "community"));
}

/* The stored metadata of name@v (parsed), NULL with *rc = TLCM_ENOENT when
 * there is none, or another error. */
static cJSON *meta_get(core_t *c, const char *name, uint64_t v, int *rc)
{
	unsigned char key[NAME_MAX_ + 9];
	size_t kl = model_key(key, name, v);
	void *val = NULL;
	size_t vl;
	*rc = tlcm_store_get(c->store, MODELS, key, kl, &val, &vl);
	if (*rc)
		return NULL;
	cJSON *o = core_json_parse(val, vl);
	free(val);
	if (!o)
		*rc = TLCM_ECORRUPT;
	return o;
}

/* The offer for stored metadata o, signed with the core's key now (no
 * key: unsigned, and the device refuses it as such). */
static cJSON *offer_of(const core_models_t *m, const cJSON *o)
{
	upd_meta_t u = {0};
	const char *name = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(o, "name"));
	const char *sha = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(o, "sha256"));
	if (!name || !sha || strlen(sha) != 64)
		return NULL;
	snprintf(u.name, sizeof u.name, "%s", name);
	memcpy(u.sha256, sha, 65);
	u.version = num(o, "version");
	u.size = num(o, "size");
	u.created_s = (int64_t)num(o, "created_s");
	u.expires_s = (int64_t)num(o, "expires_s");
	snprintf(u.url, sizeof u.url, "/api/v1/models/%s/%" PRIu64, name,
		 u.version);
	if (m->have_key && upd_sign(&u, m->key_id, m->sk))
		return NULL;
	char *s = upd_meta_to_json(&u);
	cJSON *j = s ? cJSON_Parse(s) : NULL;
	free(s);
	if (j)
		cJSON_AddBoolToObject(j, "community", meta_community(o));
	return j;
}

/* ---- POST /models ------------------------------------------------------------ */

void core_models_post(core_req_t *r)
{
	if (core_auth_admin(r))
		return;
	core_t *c = r->c;
	core_models_t *m = c->models;
	if (!m->have_key) {
		core_error(r, 403, "forbidden", "model upload is off: the core "
			   "has no signing_key to sign offers with");
		return;
	}
	char name[NAME_MAX_ + 2], ver[32], exp[32], com[16];
	uint64_t version, expires = 0;
	if (!meta_arg(r, "name", "X-Model-Name", name, sizeof name) ||
	    !core_valid_model(name)) {
		core_error(r, 400, "bad_request", "name (query or X-Model-Name)"
			   ": want [a-z0-9._-]{1,64}");
		return;
	}
	if (!meta_arg(r, "version", "X-Model-Version", ver, sizeof ver) ||
	    !core_parse_u64(ver, &version) || !version ||
	    version > VERSION_MAX) {
		core_error(r, 400, "bad_request", "version (query or "
			   "X-Model-Version): want a whole number from 1 to "
			   "%llu", VERSION_MAX);
		return;
	}
	uint64_t now = core_wall_ns() / 1000000000ull;
	if (meta_arg(r, "expires_s", "X-Model-Expires-S", exp, sizeof exp) &&
	    (!core_parse_u64(exp, &expires) || expires <= now ||
	     expires > VERSION_MAX)) {
		core_error(r, 400, "bad_request", "expires_s: want seconds "
			   "since the epoch after now (%" PRIu64 "), got "
			   "'%.30s'", now, exp);
		return;
	}
	bool community = false;
	if (meta_arg(r, "community", "X-Model-Community", com, sizeof com)) {
		if (!strcmp(com, "true"))
			community = true;
		else if (strcmp(com, "false")) {
			core_error(r, 400, "bad_request", "community: want "
				   "true or false, got '%.15s'", com);
			return;
		}
	}
	if (!r->len) {
		core_error(r, 400, "bad_request", "the body is empty: send the "
			   "model file's bytes");
		return;
	}
	unsigned char h[32];
	char sha[65];
	core_sha256(r->body, r->len, h);
	core_hex(h, 32, sha);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "name", name);
	core_json_add_u64(o, "version", version);
	cJSON_AddStringToObject(o, "sha256", sha);
	core_json_add_u64(o, "size", r->len);
	core_json_add_u64(o, "created_s", now);
	core_json_add_u64(o, "expires_s", expires ? expires : now + m->ttl_s);
	cJSON_AddBoolToObject(o, "community", community);
	core_json_add_u64(o, "uploaded_ns", core_wall_ns());
	cJSON *offer = offer_of(m, o);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s || !offer) {
		cJSON_free(s);
		cJSON_Delete(offer);
		core_error(r, 503, "unavailable", "cannot make the offer "
			   "(out of memory)");
		return;
	}
	unsigned char key[NAME_MAX_ + 9];
	size_t kl = model_key(key, name, version);
	pthread_mutex_lock(&m->mu);
	void *old = NULL;
	size_t ol;
	int rc = tlcm_store_get(c->store, MODELS, key, kl, &old, &ol);
	free(old);
	if (!rc) {
		pthread_mutex_unlock(&m->mu);
		core_error(r, 409, "model_exists", "%s version %" PRIu64 " is "
			   "stored already; a version is never replaced: "
			   "upload version %" PRIu64 " or above", name,
			   version, version + 1);
		goto out;
	}
	tlcm_batch_t *b = rc == TLCM_ENOENT ? tlcm_batch_new() : NULL;
	if (b) {
		rc = tlcm_batch_put(c->store, b, BLOBS, key, kl, r->body,
				    r->len);
		if (!rc)
			rc = tlcm_batch_put(c->store, b, MODELS, key, kl, s,
					    strlen(s));
		if (!rc)
			rc = tlcm_store_write(c->store, b);
		tlcm_batch_free(b);
	} else if (rc == TLCM_ENOENT) {
		rc = TLCM_ENOMEM;
	}
	pthread_mutex_unlock(&m->mu);
	if (rc) {
		core_error(r, 503, "unavailable", "cannot store %s@%" PRIu64
			   ": %s", name, version, tlcm_strerror(rc));
		goto out;
	}
	tlcm_log(TLCM_LOG_INFO, tlcm_node_id(c->ctx), "model %s@%" PRIu64
		 " stored (%zu bytes, sha256 %.12s…, %s, key %s)", name,
		 version, r->len, sha, community ? "community" : "for all",
		 m->key_id);
	char *t = cJSON_PrintUnformatted(offer);
	if (t)
		core_reply_json(r, 201, t);
	else
		core_error(r, 503, "unavailable", "out of memory");
	cJSON_free(t);
out:
	cJSON_free(s);
	cJSON_Delete(offer);
}

/* ---- POST /models/available ------------------------------------------------ */

typedef struct {
	core_req_t *r;
	const core_models_t *m;
	uint64_t running, now;
	int eligible;          /* -1: not asked yet */
	const char *dev;
	cJSON *out;
	size_t n;
	int rc;
} avail_t;

static int avail_one(void *arg, const void *key, size_t klen,
		     const void *val, size_t vlen)
{
	avail_t *a = arg;
	if (klen < 8)
		return 0;
	uint64_t v = core_get_be64((const unsigned char *)key + klen - 8);
	if (v <= a->running)
		return 1; /* newest first: the rest are older */
	cJSON *o = core_json_parse(val, vlen);
	if (!o)
		return 0;
	bool take = num(o, "expires_s") > a->now;
	if (take && meta_community(o)) {
		if (a->eligible < 0) {
			bool ok = false;
			a->rc = core_community_eligible(a->r->c, a->dev, &ok,
							NULL);
			a->eligible = ok;
		}
		take = a->eligible > 0;
	}
	cJSON *offer = take ? offer_of(a->m, o) : NULL;
	cJSON_Delete(o);
	if (offer) {
		cJSON_AddItemToArray(a->out, offer);
		a->n++;
	}
	return a->rc ? a->rc : a->n >= MAX_OFFERS ? 1 : 0;
}

void core_models_available(core_req_t *r)
{
	char dev[CORE_ID_MAX + 1];
	if (core_auth_device(r, NULL, dev))
		return;
	core_t *c = r->c;
	cJSON *j = cJSON_ParseWithLength(r->body, r->len);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "device_id");
	const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "models");
	cJSON *o = NULL;
	if (!cJSON_IsObject(j)) {
		core_error(r, 400, "bad_request", "the body is not a JSON "
			   "object ({\"device_id\": …, \"models\": [{\"name\": "
			   "…, \"version\": N}]})");
		goto out;
	}
	if (id && (!cJSON_IsString(id) || strcmp(id->valuestring, dev))) {
		core_error(r, 403, "forbidden", "device %s may not ask for "
			   "device %.64s", dev, cJSON_IsString(id) ?
			   id->valuestring : "(not text)");
		goto out;
	}
	if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) > MAX_ASKED) {
		core_error(r, 400, "bad_request", "models: want an array of up "
			   "to %d {\"name\", \"version\"}", MAX_ASKED);
		goto out;
	}
	o = cJSON_CreateObject();
	cJSON *ups = cJSON_AddArrayToObject(o, "updates");
	avail_t a = {.r = r, .m = c->models, .eligible = -1, .dev = dev,
		     .out = ups, .now = core_wall_ns() / 1000000000ull};
	int i = 0, rc = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, ms)
	{
		const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, "version");
		double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
		if (!cJSON_IsString(nm) || !upd_valid_name(nm->valuestring) ||
		    !(d >= 0 && d <= (double)VERSION_MAX) ||
		    d != (double)(uint64_t)d) {
			core_error(r, 400, "bad_request", "models[%d]: want "
				   "{\"name\": [A-Za-z0-9._-]{1,128}, "
				   "\"version\": a whole number >= 0}", i);
			goto out;
		}
		i++;
		/* device names may be wider than the core's: none stored */
		if (!core_valid_model(nm->valuestring))
			continue;
		unsigned char key[NAME_MAX_ + 1];
		size_t kl = strlen(nm->valuestring) + 1;
		memcpy(key, nm->valuestring, kl);
		a.running = (uint64_t)d;
		a.n = 0;
		rc = tlcm_store_scan_range(c->store, MODELS, key, kl, NULL, 0,
					   true, avail_one, &a);
		if (rc < 0 || a.rc)
			break;
	}
	rc = rc < 0 ? rc : a.rc;
	core_reply_cjson(r, rc, o);
	o = NULL;
out:
	cJSON_Delete(o);
	cJSON_Delete(j);
}

/* ---- GET /models/{name}/{version} ------------------------------------------ */

/* One range of "bytes=a-b", "bytes=a-" or "bytes=-n" over size bytes into
 * [*from, *to]. 0 ok, 1 unsatisfiable, -1 malformed (why says how). */
static int parse_range(const char *h, uint64_t size, uint64_t *from,
		       uint64_t *to, const char **why)
{
	while (*h == ' ')
		h++;
	if (strncasecmp(h, "bytes=", 6)) {
		*why = "want the unit bytes (bytes=FIRST-LAST, FIRST- or -N)";
		return -1;
	}
	h += 6;
	char a[24] = "", b[24] = "";
	const char *dash = strchr(h, '-');
	size_t al = dash ? (size_t)(dash - h) : 0;
	size_t bl = dash ? strlen(dash + 1) : 0;
	while (bl && dash[bl] == ' ')
		bl--;
	if (!dash || al >= sizeof a || bl >= sizeof b || strchr(h, ',')) {
		*why = strchr(h, ',') ? "one range only" :
		       "want bytes=FIRST-LAST, FIRST- or -N";
		return -1;
	}
	memcpy(a, h, al);
	memcpy(b, dash + 1, bl);
	uint64_t x, y;
	bool ha = al > 0, hb = bl > 0;
	if ((ha && !core_parse_u64(a, &x)) || (hb && !core_parse_u64(b, &y)) ||
	    (!ha && !hb) || (ha && hb && y < x)) {
		*why = "want bytes=FIRST-LAST (FIRST <= LAST), FIRST- or -N";
		return -1;
	}
	if (!ha) { /* the last y bytes */
		if (!y || !size) {
			*why = "an empty suffix";
			return 1;
		}
		*from = y >= size ? 0 : size - y;
		*to = size - 1;
		return 0;
	}
	if (x >= size) {
		*why = "the first byte is past the end";
		return 1;
	}
	*from = x;
	*to = hb && y < size ? y : size - 1;
	return 0;
}

void core_model_get(core_req_t *r)
{
	const char *name = r->param[0];
	uint64_t v;
	if (!core_valid_model(name) || !core_parse_u64(r->param[1], &v) ||
	    !v) {
		core_error(r, 400, "bad_request", "want /models/NAME/VERSION: "
			   "NAME [a-z0-9._-]{1,64}, VERSION a whole number >= "
			   "1");
		return;
	}
	char dev[CORE_ID_MAX + 1];
	if (core_auth_reader(r, dev))
		return;
	core_t *c = r->c;
	int rc;
	cJSON *o = meta_get(c, name, v, &rc);
	if (rc == TLCM_ENOENT) {
		core_error(r, 404, "not_found", "no model %s version %" PRIu64,
			   name, v);
		return;
	}
	if (rc) {
		core_error(r, 503, "unavailable", "model %s@%" PRIu64 ": %s",
			   name, v, tlcm_strerror(rc));
		return;
	}
	char sha[65], etag[70];
	const char *hs = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(o, "sha256"));
	snprintf(sha, sizeof sha, "%s", hs ? hs : "");
	bool community = meta_community(o);
	cJSON_Delete(o);
	if (community && dev[0]) {
		bool ok = false;
		uint64_t days = 0, need = core_community_min_days(c);
		rc = core_community_eligible(c, dev, &ok, &days);
		if (rc) {
			core_error(r, 503, "unavailable", "telemetry days of %s: "
				   "%s", dev, tlcm_strerror(rc));
			return;
		}
		if (!ok) {
			core_error(r, 403, "not_eligible", "%s@%" PRIu64 " is a "
				   "community model: device %s contributed "
				   "telemetry on %" PRIu64 " day%s, it needs %"
				   PRIu64, name, v, dev, days,
				   days == 1 ? "" : "s", need);
			return;
		}
	}
	snprintf(etag, sizeof etag, "\"%s\"", sha);
	core_add_header(r, "ETag", etag);
	core_add_header(r, "Accept-Ranges", "bytes");
	const char *inm = core_header(r, "If-None-Match");
	if (inm && core_etag_listed(inm, sha)) {
		core_reply(r, 304, NULL, NULL, 0);
		return;
	}
	unsigned char key[NAME_MAX_ + 9];
	size_t kl = model_key(key, name, v);
	void *b = NULL;
	size_t n = 0;
	rc = tlcm_store_get(c->store, BLOBS, key, kl, &b, &n);
	if (rc) {
		core_error(r, 503, "unavailable", "model %s@%" PRIu64 " bytes: "
			   "%s", name, v, tlcm_strerror(rc));
		return;
	}
	const char *range = core_header(r, "Range");
	const char *ifr = core_header(r, "If-Range");
	if (range && ifr && !core_etag_listed(ifr, sha))
		range = NULL; /* another entity: the whole of this one */
	if (!range) {
		core_reply(r, 200, "application/octet-stream", b, n);
		free(b);
		return;
	}
	uint64_t from, to;
	const char *why = "";
	int pr = parse_range(range, n, &from, &to, &why);
	char cr[96];
	if (pr) {
		snprintf(cr, sizeof cr, "bytes */%zu", n);
		core_add_header(r, "Content-Range", cr);
		core_error(r, 416, "range_not_satisfiable", "Range '%.60s' of "
			   "%s@%" PRIu64 " (%zu bytes): %s", range, name, v, n,
			   why);
	} else {
		snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%zu",
			 from, to, n);
		core_add_header(r, "Content-Range", cr);
		core_reply(r, 206, "application/octet-stream",
			   (const char *)b + from, (size_t)(to - from + 1));
	}
	free(b);
}
