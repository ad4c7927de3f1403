/* devices.c — the core's device registry: registration (idempotent by the
 * device's secret, docs/api.md), per-device tokens kept as SHA-256 and
 * compared in constant time, the admin token, the per-device upload rate
 * (a token bucket) and each device's figures (last seen, packages, …).
 *
 * The table lives in memory under c->mu and in family core/devices as one
 * JSON value per device; a registration is written (synced per the
 * graph's policy) before it is answered, last-seen times and counters at
 * the next tick (and the counters are counted again from the package and
 * feedback records at start, so a crash does not leave them short).
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "engine/log.h"
#include "nodes/core/core.h"

#define FAM "core/devices"

struct core_device {
	char id[CORE_ID_MAX + 1];
	unsigned char token[32];
	unsigned char secret[32];
	bool has_token, has_secret;
	uint64_t registered_ns, last_seen_ns;
	uint64_t packages, duplicates, bytes, drift_events;
	int64_t feedback; /* labels waiting for the device */
	double tokens;    /* the upload bucket */
	uint64_t bucket_ns;
	cJSON *info;      /* platform, arch, versions, profile, location */
	bool dirty;
};

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* The slot of id (empty when absent); under mu. */
static size_t slot(const core_t *c, const char *id)
{
	size_t m = c->capdev - 1, i = (size_t)fnv(id) & m;
	while (c->dev[i] && strcmp(c->dev[i]->id, id))
		i = (i + 1) & m;
	return i;
}

static core_device_t *find(const core_t *c, const char *id)
{
	return c->capdev ? c->dev[slot(c, id)] : NULL;
}

static int insert(core_t *c, core_device_t *d)
{
	if (2 * (c->ndev + 1) > c->capdev) {
		size_t cap = c->capdev ? 2 * c->capdev : 64;
		core_device_t **old = c->dev, **nd = calloc(cap, sizeof *nd);
		if (!nd)
			return TLCM_ENOMEM;
		size_t oc = c->capdev;
		c->dev = nd;
		c->capdev = cap;
		for (size_t i = 0; i < oc; i++)
			if (old[i])
				c->dev[slot(c, old[i]->id)] = old[i];
		free(old);
	}
	c->dev[slot(c, d->id)] = d;
	c->ndev++;
	return 0;
}

/* ---- persistence ---------------------------------------------------------- */

static char *to_json(const core_device_t *d, bool secrets)
{
	cJSON *o = cJSON_CreateObject();
	char hex[65];
	cJSON_AddStringToObject(o, "device_id", d->id);
	if (secrets && d->has_token) {
		core_hex(d->token, 32, hex);
		cJSON_AddStringToObject(o, "token_sha256", hex);
	}
	if (secrets && d->has_secret) {
		core_hex(d->secret, 32, hex);
		cJSON_AddStringToObject(o, "secret_sha256", hex);
	}
	core_json_add_u64(o, "registered_ns", d->registered_ns);
	core_json_add_u64(o, "last_seen_ns", d->last_seen_ns);
	core_json_add_u64(o, "packages", d->packages);
	core_json_add_u64(o, "duplicates", d->duplicates);
	core_json_add_u64(o, "bytes", d->bytes);
	core_json_add_u64(o, "drift_events", d->drift_events);
	core_json_add_u64(o, "feedback_pending", d->feedback);
	if (d->info)
		for (cJSON *it = d->info->child; it; it = it->next)
			cJSON_AddItemToObject(o, it->string,
					      cJSON_Duplicate(it, 1));
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

static bool unhex32(const char *s, unsigned char out[32])
{
	size_t bl;
	return s && strlen(s) == 64 &&
	       !sodium_hex2bin(out, 32, s, 64, NULL, &bl, NULL) && bl == 32;
}

static uint64_t num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	uint64_t x;
	return core_json_get_u64(v, &x) ? x : 0;
}

static const char *const INFO_KEYS[] = {"platform", "arch", "versions",
					"profile", "location", "group",
					NULL};

static int load_one(void *arg, const void *key, size_t klen, const void *val,
		    size_t vlen)
{
	core_t *c = arg;
	cJSON *o = core_json_parse(val, vlen);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "device_id");
	core_device_t *d = calloc(1, sizeof *d);
	if (!o || !d || !cJSON_IsString(id) ||
	    !core_valid_device(id->valuestring) ||
	    strlen(id->valuestring) != klen ||
	    memcmp(id->valuestring, key, klen)) {
		tlcm_log(TLCM_LOG_WARN, tlcm_node_id(c->ctx), "store: device "
			 "record '%.*s' is not readable; skipped", (int)klen,
			 (const char *)key);
		cJSON_Delete(o);
		free(d);
		return 0;
	}
	snprintf(d->id, sizeof d->id, "%s", id->valuestring);
	d->has_token = unhex32(cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(o, "token_sha256")), d->token);
	d->has_secret = unhex32(cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(o, "secret_sha256")),
		d->secret);
	d->registered_ns = num(o, "registered_ns");
	d->last_seen_ns = num(o, "last_seen_ns");
	d->packages = num(o, "packages");
	d->duplicates = num(o, "duplicates");
	d->bytes = num(o, "bytes");
	d->drift_events = num(o, "drift_events");
	d->feedback = (int64_t)num(o, "feedback_pending");
	d->tokens = c->burst;
	d->info = cJSON_CreateObject();
	for (int i = 0; INFO_KEYS[i]; i++) {
		cJSON *v = cJSON_GetObjectItemCaseSensitive(o, INFO_KEYS[i]);
		if (v)
			cJSON_AddItemToObject(d->info, INFO_KEYS[i],
					      cJSON_Duplicate(v, 1));
	}
	cJSON_Delete(o);
	int rc = insert(c, d);
	if (rc) {
		cJSON_Delete(d->info);
		free(d);
	}
	return rc;
}

/* A device's packages, bytes and drift events are persisted at the tick,
 * so a crash loses up to a second of them, for good. The package records
 * (core/packages, written with each package) and the pending labels
 * (core/feedback) are the truth: they are counted again at start. The
 * figures count what ever arrived, and retention (retention.c) removes
 * package records: fewer records than the registry says is a sweep, not
 * a crash, and the registry's figure stays. */
static int count_package(void *arg, const void *key, size_t klen,
			 const void *val, size_t vlen)
{
	core_t *c = arg;
	(void)key, (void)klen;
	cJSON *o = core_json_parse(val, vlen);
	const char *id = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(o, "device_id"));
	core_device_t *d = id ? find(c, id) : NULL;
	if (d) {
		d->packages++;
		d->bytes += num(o, "size");
		d->drift_events += num(cJSON_GetObjectItemCaseSensitive(
			o, "decoded"), "drift_events");
	}
	cJSON_Delete(o);
	return 0;
}

static int count_feedback(void *arg, const void *key, size_t klen,
			  const void *val, size_t vlen)
{
	core_t *c = arg;
	(void)val, (void)vlen;
	size_t dl = strnlen(key, klen);
	char id[CORE_ID_MAX + 1];
	if (dl + 9 == klen && dl <= CORE_ID_MAX) {
		memcpy(id, key, dl);
		id[dl] = 0;
		core_device_t *d = find(c, id);
		if (d)
			d->feedback++;
	}
	return 0;
}

static int recount(core_t *c)
{
	uint64_t *was = calloc(c->capdev + 1, 4 * sizeof *was);
	if (!was)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < c->capdev; i++) {
		core_device_t *d = c->dev[i];
		if (!d)
			continue;
		uint64_t *w = was + 4 * i;
		w[0] = d->packages, w[1] = d->bytes, w[2] = d->drift_events;
		w[3] = (uint64_t)d->feedback;
		d->packages = d->bytes = d->drift_events = 0;
		d->feedback = 0;
	}
	int rc = tlcm_store_scan(c->store, "core/packages", "", 0,
				 count_package, c);
	if (!rc)
		rc = tlcm_store_scan(c->store, "core/feedback", "", 0,
				     count_feedback, c);
	for (size_t i = 0; !rc && i < c->capdev; i++) {
		core_device_t *d = c->dev[i];
		uint64_t *w = was + 4 * i;
		if (d && d->packages < w[0]) { /* swept by retention */
			d->packages = w[0];
			d->bytes = d->bytes > w[1] ? d->bytes : w[1];
			d->drift_events = d->drift_events > w[2] ?
					  d->drift_events : w[2];
		}
		if (d && (w[0] != d->packages || w[1] != d->bytes ||
			  w[2] != d->drift_events ||
			  w[3] != (uint64_t)d->feedback)) {
			tlcm_log(TLCM_LOG_INFO, tlcm_node_id(c->ctx), "device "
				 "%s: %" PRIu64 " packages, %" PRIu64 " labels "
				 "waiting (the registry said %" PRIu64 ", %"
				 PRIu64 ": the core stopped without saving "
				 "them)", d->id, d->packages,
				 (uint64_t)d->feedback, w[0], w[3]);
			d->dirty = true;
			c->dirty_stats = true;
		}
	}
	free(was);
	return rc;
}

int core_devices_load(core_t *c, char *why, size_t cap)
{
	pthread_mutex_lock(&c->mu);
	int rc = tlcm_store_scan(c->store, FAM, "", 0, load_one, c);
	if (!rc)
		rc = recount(c);
	pthread_mutex_unlock(&c->mu);
	if (rc)
		snprintf(why, cap, "cannot read the device registry: %s",
			 tlcm_strerror(rc));
	return rc;
}

void core_devices_free(core_t *c)
{
	for (size_t i = 0; i < c->capdev; i++)
		if (c->dev[i]) {
			cJSON_Delete(c->dev[i]->info);
			free(c->dev[i]);
		}
	free(c->dev);
	c->dev = NULL;
	c->ndev = c->capdev = 0;
}

/* Write d now; under mu. */
static int save(core_t *c, core_device_t *d)
{
	char *s = to_json(d, true);
	if (!s)
		return TLCM_ENOMEM;
	int rc = tlcm_store_put(c->store, FAM, d->id, strlen(d->id), s,
				strlen(s));
	cJSON_free(s);
	if (!rc)
		d->dirty = false;
	return rc;
}

void core_devices_flush(core_t *c)
{
	pthread_mutex_lock(&c->mu);
	if (c->dirty_stats) {
		c->dirty_stats = false;
		tlcm_batch_t *b = tlcm_batch_new();
		for (size_t i = 0; b && i < c->capdev; i++) {
			core_device_t *d = c->dev[i];
			if (!d || !d->dirty)
				continue;
			char *s = to_json(d, true);
			if (s && !tlcm_batch_put(c->store, b, FAM, d->id,
						 strlen(d->id), s, strlen(s)))
				d->dirty = false;
			cJSON_free(s);
		}
		if (b && tlcm_store_write(c->store, b))
			c->dirty_stats = true; /* again at the next tick */
		tlcm_batch_free(b);
	}
	pthread_mutex_unlock(&c->mu);
}

static void touch(core_t *c, core_device_t *d)
{
	d->last_seen_ns = core_wall_ns();
	d->dirty = true;
	c->dirty_stats = true;
}

/* ---- authentication ------------------------------------------------------- */

/* The bearer token of r, or NULL. */
static const char *bearer(const core_req_t *r)
{
	const char *a = core_header(r, "Authorization");
	if (!a || strncasecmp(a, "Bearer ", 7))
		return NULL;
	a += 7;
	while (*a == ' ')
		a++;
	return *a ? a : NULL;
}

static bool same_hash(const unsigned char h[32], const char *secret)
{
	unsigned char x[32];
	core_sha256(secret, strlen(secret), x);
	return !sodium_memcmp(x, h, 32);
}

static bool api_key_ok(const core_req_t *r)
{
	const char *k = core_header(r, "X-API-Key");
	return k && r->c->have_key && same_hash(r->c->key_hash, k);
}

int core_auth_device(core_req_t *r, const char *must_be, char *dev)
{
	core_t *c = r->c;
	const char *id = core_header(r, "X-Device-ID");
	const char *tok = bearer(r);
	if (!id || !core_valid_device(id)) {
		core_error(r, 401, "unauthorized", "X-Device-ID missing or not "
			   "[A-Za-z0-9._-]{1,64}");
		return -1;
	}
	pthread_mutex_lock(&c->mu);
	core_device_t *d = find(c, id);
	bool ok = d && ((tok && d->has_token && same_hash(d->token, tok)) ||
			api_key_ok(r));
	if (ok)
		touch(c, d);
	pthread_mutex_unlock(&c->mu);
	if (!ok) {
		core_error(r, 401, "unauthorized", d ? "wrong or missing token "
			   "for device %s" : "device %s is not registered",
			   id);
		return -1;
	}
	if (must_be && strcmp(must_be, id)) {
		core_error(r, 403, "forbidden", "device %s may not act for "
			   "device %.64s", id, must_be);
		return -1;
	}
	snprintf(dev, CORE_ID_MAX + 1, "%s", id);
	return 0;
}

int core_auth_admin(core_req_t *r)
{
	const char *tok = bearer(r);
	if (!r->c->have_admin) {
		core_error(r, 403, "forbidden", "the admin API is off: the core "
			   "has no admin_token");
		return -1;
	}
	if (!tok || !same_hash(r->c->admin_hash, tok)) {
		core_error(r, 401, "unauthorized", "this needs the admin token "
			   "(Authorization: Bearer …)");
		return -1;
	}
	return 0;
}

int core_auth_admin_or(core_req_t *r, const char *id)
{
	const char *tok = bearer(r);
	if (r->c->have_admin && tok && same_hash(r->c->admin_hash, tok))
		return 0;
	if (core_header(r, "X-Device-ID")) {
		char dev[CORE_ID_MAX + 1];
		return core_auth_device(r, id, dev);
	}
	return core_auth_admin(r);
}

const char *core_path_device(core_req_t *r, bool admin_too)
{
	const char *id = r->param[0];
	char dev[CORE_ID_MAX + 1];
	if (!id || !core_valid_device(id)) {
		core_error(r, 400, "bad_request", "device id not "
			   "[A-Za-z0-9._-]{1,64}");
		return NULL;
	}
	if (admin_too ? core_auth_admin_or(r, id) :
			core_auth_device(r, id, dev))
		return NULL;
	return id;
}

bool core_device_known(core_t *c, const char *dev)
{
	pthread_mutex_lock(&c->mu);
	bool k = find(c, dev) != NULL;
	pthread_mutex_unlock(&c->mu);
	return k;
}

bool core_device_group(core_t *c, const char *dev, char *group)
{
	group[0] = 0;
	pthread_mutex_lock(&c->mu);
	core_device_t *d = find(c, dev);
	const char *g = d ? cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(d->info, "group")) : NULL;
	if (g)
		snprintf(group, CORE_ID_MAX + 1, "%s", g);
	pthread_mutex_unlock(&c->mu);
	return d != NULL;
}

bool core_device_take(core_t *c, core_req_t *r, const char *dev)
{
	if (c->rate <= 0)
		return true;
	uint64_t now = core_mono_ns();
	pthread_mutex_lock(&c->mu);
	core_device_t *d = find(c, dev);
	double wait = 0;
	if (d) {
		if (d->bucket_ns)
			d->tokens += (double)(now - d->bucket_ns) * 1e-9 *
				     c->rate;
		d->bucket_ns = now;
		if (d->tokens > c->burst)
			d->tokens = c->burst;
		if (d->tokens >= 1)
			d->tokens -= 1;
		else
			wait = (1 - d->tokens) / c->rate;
	}
	pthread_mutex_unlock(&c->mu);
	if (wait > 0) {
		char ra[32];
		snprintf(ra, sizeof ra, "%.0f", ceil(wait));
		core_add_header(r, "Retry-After", ra);
		atomic_fetch_add(&c->st.rate_limited, 1);
		core_error(r, 429, "rate_limited", "device %s is over %.3g "
			   "packages/s (burst %.0f); retry after %s s", dev,
			   c->rate, c->burst, ra);
		return false;
	}
	return true;
}

void core_device_count(core_t *c, const char *dev, size_t bytes,
		       bool duplicate, unsigned drift)
{
	pthread_mutex_lock(&c->mu);
	core_device_t *d = find(c, dev);
	if (d) {
		if (duplicate) {
			d->duplicates++;
		} else {
			d->packages++;
			d->bytes += bytes;
			d->drift_events += drift;
		}
		touch(c, d);
	}
	pthread_mutex_unlock(&c->mu);
}

void core_device_feedback(core_t *c, const char *dev, int delta)
{
	pthread_mutex_lock(&c->mu);
	core_device_t *d = find(c, dev);
	if (d) {
		d->feedback += delta;
		if (d->feedback < 0)
			d->feedback = 0;
		d->dirty = true;
		c->dirty_stats = true;
	}
	pthread_mutex_unlock(&c->mu);
}

/* ---- routes --------------------------------------------------------------- */

void core_ping(core_req_t *r)
{
	core_reply(r, 204, NULL, NULL, 0);
}

/* Copy the optional descriptive fields of a registration into a new
 * object, checking each; NULL with why set when one is bad. */
static cJSON *take_info(const cJSON *j, char *why, size_t cap)
{
	cJSON *info = cJSON_CreateObject();
	for (int i = 0; INFO_KEYS[i]; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(j,
								  INFO_KEYS[i]);
		if (!v || cJSON_IsNull(v))
			continue;
		const char *k = INFO_KEYS[i];
		bool ok;
		if (!strcmp(k, "versions")) {
			char *s = cJSON_IsObject(v) ?
					  cJSON_PrintUnformatted(v) : NULL;
			ok = s && strlen(s) <= 2048;
			cJSON_free(s);
		} else if (!strcmp(k, "location")) {
			const cJSON *la = cJSON_GetObjectItemCaseSensitive(
				v, "lat");
			const cJSON *lo = cJSON_GetObjectItemCaseSensitive(
				v, "lon");
			const cJSON *src = cJSON_GetObjectItemCaseSensitive(
				v, "source");
			ok = cJSON_IsObject(v) && cJSON_IsNumber(la) &&
			     cJSON_IsNumber(lo) &&
			     fabs(la->valuedouble) <= 90 &&
			     fabs(lo->valuedouble) <= 180 &&
			     (!src || (cJSON_IsString(src) &&
				       strlen(src->valuestring) <= 32));
		} else if (!strcmp(k, "group")) { /* deploy.c */
			ok = cJSON_IsString(v) &&
			     core_valid_device(v->valuestring);
		} else {
			ok = cJSON_IsString(v) && *v->valuestring &&
			     strlen(v->valuestring) <= 64;
		}
		if (!ok) {
			snprintf(why, cap, "%s: %s", k,
				 !strcmp(k, "group") ?
					 "want [A-Za-z0-9._-]{1,64}" :
				 !strcmp(k, "versions") ?
					 "want an object (up to 2 KiB)" :
				 !strcmp(k, "location") ?
					 "want {\"lat\": -90..90, \"lon\": "
					 "-180..180, \"source\": text}" :
					 "want text of 1 to 64 characters");
			cJSON_Delete(info);
			return NULL;
		}
		cJSON_AddItemToObject(info, k, cJSON_Duplicate(v, 1));
	}
	return info;
}

void core_register(core_req_t *r)
{
	core_t *c = r->c;
	cJSON *j = core_json_parse(r->body, r->len);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "device_id");
	const cJSON *sec = cJSON_GetObjectItemCaseSensitive(j, "secret");
	unsigned char sh[32];
	bool have_sec = false;
	char why[160];
	cJSON *info = NULL;
	if (!cJSON_IsObject(j)) {
		core_error(r, 400, "bad_request", "the body is not a JSON "
			   "object");
		goto out;
	}
	if (!cJSON_IsString(id) || !core_valid_device(id->valuestring)) {
		core_error(r, 400, "bad_request", "device_id missing or not "
			   "[A-Za-z0-9._-]{1,64}");
		goto out;
	}
	if (sec && !cJSON_IsNull(sec)) {
		const char *s = cJSON_GetStringValue(sec);
		size_t n = s ? strlen(s) : 0;
		for (size_t i = 0; s && i < n; i++)
			if (!strchr("0123456789abcdefABCDEF", s[i]))
				n = 0;
		if (n != 64) {
			core_error(r, 400, "bad_request", "secret: want 64 hex "
				   "characters (32 random bytes)");
			goto out;
		}
		core_sha256(s, 64, sh);
		have_sec = true;
	}
	if (!(info = take_info(j, why, sizeof why))) {
		core_error(r, 400, "bad_request", "%s", why);
		goto out;
	}
	const char *dev = id->valuestring;
	const char *tok = bearer(r);
	const char *hid = core_header(r, "X-Device-ID");
	bool by_key = api_key_ok(r);
	pthread_mutex_lock(&c->mu);
	core_device_t *d = find(c, dev);
	bool by_token = d && tok && d->has_token &&
			(!hid || !strcmp(hid, dev)) && same_hash(d->token, tok);
	bool by_secret = d && have_sec && d->has_secret &&
			 !sodium_memcmp(d->secret, sh, 32);
	if (d && !by_token && !by_key && !by_secret) {
		pthread_mutex_unlock(&c->mu);
		core_error(r, 409, "device_exists", "device %s is registered; "
			   "prove it with its token, its registration secret "
			   "or the fleet's API key", dev);
		goto out;
	}
	if (!d && c->have_key && !by_key) {
		pthread_mutex_unlock(&c->mu);
		core_error(r, 401, "unauthorized", "a new device needs the "
			   "fleet's API key (X-API-Key)");
		goto out;
	}
	bool fresh = !d;
	if (fresh) {
		d = calloc(1, sizeof *d);
		if (d) {
			snprintf(d->id, sizeof d->id, "%s", dev);
			d->registered_ns = core_wall_ns();
			d->tokens = c->burst;
		}
		if (!d || insert(c, d)) {
			free(d);
			pthread_mutex_unlock(&c->mu);
			core_error(r, 503, "unavailable", "out of memory");
			goto out;
		}
	}
	unsigned char raw[32];
	char token[5 + 65];
	randombytes_buf(raw, sizeof raw);
	memcpy(token, "tlcd_", 5);
	core_hex(raw, 32, token + 5);
	core_device_t old = *d;
	core_sha256(token, strlen(token), d->token);
	d->has_token = true;
	if (have_sec) {
		memcpy(d->secret, sh, 32);
		d->has_secret = true;
	}
	/* a bare re-registration keeps what the device said before */
	bool replace = !d->info || info->child;
	if (replace)
		d->info = info;
	d->last_seen_ns = core_wall_ns();
	int rc = save(c, d);
	if (rc) {
		if (fresh) { /* as if it never came */
			size_t m = c->capdev - 1, at = slot(c, dev);
			c->dev[at] = NULL;
			c->ndev--;
			/* re-seat the probe cluster after the freed slot */
			for (size_t i = (at + 1) & m; c->dev[i];
			     i = (i + 1) & m) {
				core_device_t *x = c->dev[i];
				c->dev[i] = NULL;
				c->dev[slot(c, x->id)] = x;
			}
			free(d); /* its info is `info`, freed at out */
		} else {
			*d = old; /* info: the new one is freed at out */
		}
		pthread_mutex_unlock(&c->mu);
		core_error(r, 503, "unavailable", "cannot store the "
			   "registration: %s", tlcm_strerror(rc));
		goto out;
	}
	uint64_t reg = d->registered_ns;
	if (replace) { /* d owns the new info now */
		cJSON_Delete(old.info);
		info = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	atomic_fetch_add(&c->st.registrations, 1);
	tlcm_log(TLCM_LOG_INFO, tlcm_node_id(c->ctx), "device %s %s (%s)",
		 dev, fresh ? "registered" : "registered again",
		 by_token ? "token" : by_key ? "API key" :
		 by_secret ? "secret" : "open registration");
	char b[256];
	snprintf(b, sizeof b, "{\"device_id\":\"%s\",\"token\":\"%s\","
		 "\"registered_ns\":%" PRIu64 "}", dev, token, reg);
	sodium_memzero(token, sizeof token);
	core_reply_json(r, fresh ? 201 : 200, b);
	sodium_memzero(b, sizeof b);
out:
	cJSON_Delete(info);
	cJSON_Delete(j);
}

static int by_id(const void *a, const void *b)
{
	const core_device_t *x = *(core_device_t *const *)a,
			    *y = *(core_device_t *const *)b;
	return strcmp(x->id, y->id);
}

void core_devices_list(core_req_t *r)
{
	if (core_auth_admin(r))
		return;
	core_t *c = r->c;
	pthread_mutex_lock(&c->mu);
	core_device_t **v = malloc((c->ndev + 1) * sizeof *v);
	size_t n = 0;
	for (size_t i = 0; v && i < c->capdev; i++)
		if (c->dev[i])
			v[n++] = c->dev[i];
	if (v)
		qsort(v, n, sizeof *v, by_id);
	cJSON *o = cJSON_CreateObject();
	cJSON *a = cJSON_AddArrayToObject(o, "devices");
	for (size_t i = 0; v && i < n; i++) {
		char *s = to_json(v[i], false);
		cJSON_AddItemToArray(a, core_json_parse(s, strlen(s)));
		cJSON_free(s);
	}
	pthread_mutex_unlock(&c->mu);
	free(v);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (s)
		core_reply_json(r, 200, s);
	else
		core_error(r, 503, "unavailable", "out of memory");
	cJSON_free(s);
}

void core_device_get(core_req_t *r)
{
	const char *id = core_path_device(r, true);
	if (!id)
		return;
	core_t *c = r->c;
	pthread_mutex_lock(&c->mu);
	core_device_t *d = find(c, id);
	char *s = d ? to_json(d, false) : NULL;
	pthread_mutex_unlock(&c->mu);
	if (!s) {
		core_error(r, 404, "not_found", "no device %s", id);
		return;
	}
	/* its graph deployment (deploy.c) */
	cJSON *o = core_json_parse(s, strlen(s));
	cJSON_free(s);
	if (o)
		cJSON_AddItemToObject(o, "graph",
				      core_device_graph_info(c, id));
	core_reply_cjson(r, 0, o);
}
