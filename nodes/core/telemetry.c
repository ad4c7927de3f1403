/* telemetry.c — community telemetry (docs/api.md): devices submit metric
 * points (POST /telemetry/submit); the core keeps one aggregate (sum,
 * count, min, max) per metric, model, device and day, and which days each
 * device contributed. From these it answers the community's averages and
 * a device's rank without naming any device (GET /community/averages,
 * /community/rank), the pool's figures (GET /pool/status), and whether a
 * device may have community models (models.c): telemetry on
 * community_min_days distinct days — only contributors get community
 * models, and not after one hit-and-run submission (points older than
 * telemetry_max_age are refused, so the days cannot all be back-dated).
 *
 * Families: core/telemetry  metric\0model\0device\0be64(day) -> be64 x 4:
 *             sum, min, max (IEEE-754 bits) and the count of points
 *           core/telemetry_days  device\0be64(day) -> be64(points that day)
 *           core/telemetry_ids   device\0KEY -> be64(stored_ns)
 *             (Idempotency-Key of the submissions stored: a retry is not
 *             counted twice; retention.c forgets them once a retry's
 *             points would be refused as too old anyway)
 * A device's records are read, added to and written under its stripe
 * lock, so concurrent submissions of one device add up.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/log.h"
#include "nodes/core/core.h"

#define TEL "core/telemetry"
#define DAYS "core/telemetry_days"
#define IDS "core/telemetry_ids"
#define METRIC_MAX 64
#define MODEL_MAX 64
#define MAX_POINTS 1000
#define MAX_METRICS 16   /* in one averages query */
#define DAY_S 86400ull
#define STRIPES 16

struct core_telemetry {
	pthread_mutex_t locks[STRIPES];
	uint64_t min_days, min_devices, max_age_s;
};

int core_telemetry_init(core_t *c, char *why, size_t cap)
{
	core_telemetry_t *t = calloc(1, sizeof *t);
	if (!t)
		return tlcm_fail(why, cap, TLCM_ENOMEM, "out of memory");
	for (int i = 0; i < STRIPES; i++)
		pthread_mutex_init(&t->locks[i], NULL);
	t->min_days = (uint64_t)tlcm_param_int(c->ctx, "community_min_days");
	t->min_devices = (uint64_t)tlcm_param_int(c->ctx,
						  "community_min_devices");
	t->max_age_s = tlcm_param_duration_ns(c->ctx, "telemetry_max_age") /
		       1000000000ull;
	c->tel = t;
	return 0;
}

void core_telemetry_free(core_t *c)
{
	if (!c->tel)
		return;
	for (int i = 0; i < STRIPES; i++)
		pthread_mutex_destroy(&c->tel->locks[i]);
	free(c->tel);
	c->tel = NULL;
}

uint64_t core_community_min_days(const core_t *c)
{
	return c->tel->min_days;
}

uint64_t core_telemetry_max_age_s(const core_t *c)
{
	return c->tel->max_age_s;
}

/* ---- metrics and aggregates ------------------------------------------------ */

static bool valid_metric(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!islower((unsigned char)s[n]) &&
		    !isdigit((unsigned char)s[n]) && s[n] != '_' && s[n] != '.')
			return false;
	return n >= 1 && n <= METRIC_MAX;
}

static bool ends_with(const char *s, const char *suf)
{
	size_t n = strlen(s), k = strlen(suf);
	return n > k && !strcmp(s + n - k, suf);
}

/* The values a metric may take, by the end of its name (docs/api.md). */
static const struct {
	const char *suffix;
	double lo, hi;
} RANGES[] = {
	{"_pct", 0, 100},     {"_percent", 0, 100}, {"_ratio", 0, 1},
	{"_ms", 0, 8.64e7},   {"_us", 0, 8.64e10},  {"_bytes", 0, 1e12},
	{"_count", 0, 1e12},  {"_total", 0, 1e12},  {"_c", -273.15, 1000},
};
#define GENERIC 1e12

static void metric_range(const char *m, double *lo, double *hi,
			 const char **why)
{
	for (size_t i = 0; i < sizeof RANGES / sizeof RANGES[0]; i++)
		if (ends_with(m, RANGES[i].suffix)) {
			*lo = RANGES[i].lo;
			*hi = RANGES[i].hi;
			*why = RANGES[i].suffix;
			return;
		}
	*lo = -GENERIC;
	*hi = GENERIC;
	*why = NULL;
}

/* Latencies: less is better; everything else: more is better. */
static bool default_higher(const char *m)
{
	return !ends_with(m, "_ms") && !ends_with(m, "_us");
}

typedef struct {
	double sum, min, max;
	uint64_t n;
} agg_t;

static uint64_t dbits(double d)
{
	uint64_t u;
	memcpy(&u, &d, 8);
	return u;
}

static double bitsd(uint64_t u)
{
	double d;
	memcpy(&d, &u, 8);
	return d;
}

static void agg_enc(const agg_t *a, unsigned char out[32])
{
	core_be64(out, dbits(a->sum));
	core_be64(out + 8, dbits(a->min));
	core_be64(out + 16, dbits(a->max));
	core_be64(out + 24, a->n);
}

static bool agg_dec(const void *p, size_t n, agg_t *a)
{
	const unsigned char *b = p;
	if (n != 32)
		return false;
	a->sum = bitsd(core_get_be64(b));
	a->min = bitsd(core_get_be64(b + 8));
	a->max = bitsd(core_get_be64(b + 16));
	a->n = core_get_be64(b + 24);
	return true;
}

static void agg_add(agg_t *a, const agg_t *b)
{
	if (!a->n) {
		*a = *b;
		return;
	}
	a->sum += b->sum;
	a->n += b->n;
	if (b->min < a->min)
		a->min = b->min;
	if (b->max > a->max)
		a->max = b->max;
}

static pthread_mutex_t *stripe(core_t *c, const char *dev)
{
	uint64_t h = 1469598103934665603ull;
	for (; *dev; dev++)
		h = (h ^ (unsigned char)*dev) * 1099511628211ull;
	return &c->tel->locks[h % STRIPES];
}

/* ---- days and eligibility -------------------------------------------------- */

typedef struct {
	uint64_t n, stop;
} count_t;

static int count_one(void *arg, const void *key, size_t klen,
		     const void *val, size_t vlen)
{
	(void)key, (void)klen, (void)val, (void)vlen;
	count_t *k = arg;
	return ++k->n >= k->stop ? 1 : 0;
}

/* Distinct days dev contributed (counting stops at stop). */
static int count_days(core_t *c, const char *dev, uint64_t stop,
		      uint64_t *days)
{
	unsigned char p[CORE_ID_MAX + 1];
	size_t pl = core_devkey(p, dev, NULL, 0);
	count_t k = {0, stop ? stop : UINT64_MAX};
	int rc = tlcm_store_scan(c->store, DAYS, p, pl, count_one, &k);
	*days = k.n;
	return rc < 0 ? rc : 0;
}

int core_community_eligible(core_t *c, const char *dev, bool *ok,
			    uint64_t *days)
{
	uint64_t d = 0;
	int rc = count_days(c, dev, c->tel->min_days, &d);
	*ok = !rc && d >= c->tel->min_days;
	if (days)
		*days = d;
	return rc;
}

/* ---- POST /telemetry/submit ------------------------------------------------ */

typedef struct {
	const char *metric;
	uint64_t day;
	double v;
} point_t;

static int by_metric_day(const void *a, const void *b)
{
	const point_t *x = a, *y = b;
	int d = strcmp(x->metric, y->metric);
	return d ? d : x->day < y->day ? -1 : x->day > y->day;
}

static int by_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Check every point into pts; false with why naming the bad one. */
static bool take_points(const core_t *c, const cJSON *arr, point_t *pts,
			char *why, size_t cap)
{
	uint64_t now = core_wall_ns() / 1000000000ull;
	uint64_t oldest = now > c->tel->max_age_s ? now - c->tel->max_age_s
						  : 0;
	int i = 0;
	const cJSON *p;
	cJSON_ArrayForEach(p, arr)
	{
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(p, "metric");
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "value");
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "time_s");
		if (!cJSON_IsObject(p)) {
			snprintf(why, cap, "points[%d]: want {\"metric\", "
				 "\"value\", \"time_s\"}", i);
			return false;
		}
		if (!cJSON_IsString(m) || !valid_metric(m->valuestring)) {
			snprintf(why, cap, "points[%d].metric: want "
				 "[a-z0-9_.]{1,%d}", i, METRIC_MAX);
			return false;
		}
		const char *mn = m->valuestring;
		if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
			snprintf(why, cap, "points[%d].value (%s): want a "
				 "finite number", i, mn);
			return false;
		}
		double lo, hi;
		const char *suf;
		metric_range(mn, &lo, &hi, &suf);
		if (v->valuedouble < lo || v->valuedouble > hi) {
			snprintf(why, cap, "points[%d].value: %.17g is outside "
				 "[%g, %g] for %s%s", i, v->valuedouble, lo, hi,
				 suf ? "metrics ending in " : "metric ",
				 suf ? suf : mn);
			return false;
		}
		double ts = cJSON_IsNumber(t) ? t->valuedouble : -1;
		if (!(ts >= 0 && ts < 1e15) || ts != floor(ts)) {
			snprintf(why, cap, "points[%d].time_s (%s): want whole "
				 "seconds since the epoch", i, mn);
			return false;
		}
		uint64_t s = (uint64_t)ts;
		if (s < oldest || s > now + DAY_S) {
			snprintf(why, cap, "points[%d].time_s (%s): %" PRIu64
				 " is %s (now %" PRIu64 "; telemetry_max_age %"
				 PRIu64 " s)", i, mn, s, s < oldest ?
				 "too old" : "more than a day ahead", now,
				 c->tel->max_age_s);
			return false;
		}
		pts[i] = (point_t){mn, s / DAY_S, v->valuedouble};
		i++;
	}
	return true;
}

/* Add the sorted points (one model) of dev to its records in b; under
 * the device's stripe lock. */
static int add_points(core_t *c, tlcm_batch_t *b, const char *dev,
		      const char *model, point_t *pts, size_t n)
{
	unsigned char key[METRIC_MAX + MODEL_MAX + CORE_ID_MAX + 3 + 8];
	unsigned char val[32];
	uint64_t *days = malloc(n * sizeof *days);
	if (!days)
		return TLCM_ENOMEM;
	int rc = 0;
	for (size_t i = 0; !rc && i < n;) {
		agg_t a = {0}, old = {0};
		size_t j = i;
		for (; j < n && !by_metric_day(&pts[i], &pts[j]); j++)
			agg_add(&a, &(agg_t){pts[j].v, pts[j].v, pts[j].v, 1});
		size_t ml = strlen(pts[i].metric), dl = strlen(model);
		memcpy(key, pts[i].metric, ml + 1);
		memcpy(key + ml + 1, model, dl + 1);
		size_t kl = ml + 1 + dl + 1 +
			    core_devkey(key + ml + dl + 2, dev, &pts[i].day, 1);
		void *v = NULL;
		size_t vl = 0;
		rc = tlcm_store_get(c->store, TEL, key, kl, &v, &vl);
		if (!rc && agg_dec(v, vl, &old))
			agg_add(&old, &a);
		else
			old = a; /* new (or unreadable: started again) */
		free(v);
		if (rc == TLCM_ENOENT)
			rc = 0;
		agg_enc(&old, val);
		if (!rc)
			rc = tlcm_batch_put(c->store, b, TEL, key, kl, val, 32);
		i = j;
	}
	/* the days, with their point counts */
	for (size_t i = 0; i < n; i++)
		days[i] = pts[i].day;
	qsort(days, n, sizeof *days, by_u64);
	for (size_t i = 0; !rc && i < n;) {
		size_t j = i;
		while (j < n && days[j] == days[i])
			j++;
		size_t kl = core_devkey(key, dev, &days[i], 1);
		void *v = NULL;
		size_t vl = 0;
		uint64_t had = 0;
		rc = tlcm_store_get(c->store, DAYS, key, kl, &v, &vl);
		if (!rc && vl == 8)
			had = core_get_be64(v);
		free(v);
		if (rc == TLCM_ENOENT)
			rc = 0;
		core_be64(val, had + (j - i));
		if (!rc)
			rc = tlcm_batch_put(c->store, b, DAYS, key, kl, val, 8);
		i = j;
	}
	free(days);
	return rc;
}

void core_telemetry_submit(core_req_t *r)
{
	char dev[CORE_ID_MAX + 1];
	if (core_auth_device(r, NULL, dev))
		return;
	core_t *c = r->c;
	const char *idem = core_header(r, "Idempotency-Key");
	if (idem && !core_valid_device(idem)) {
		core_error(r, 400, "bad_request", "Idempotency-Key: want "
			   "[A-Za-z0-9._-]{1,64}");
		return;
	}
	cJSON *j = cJSON_ParseWithLength(r->body, r->len);
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "points");
	point_t *pts = NULL;
	char why[300];
	int n = cJSON_GetArraySize(arr);
	if (!cJSON_IsObject(j)) {
		core_error(r, 400, "bad_request", "the body is not a JSON "
			   "object ({\"model\": NAME, \"points\": [...]})");
		goto out;
	}
	if (!cJSON_IsString(model) || !core_valid_model(model->valuestring)) {
		core_error(r, 400, "bad_request", "model: want "
			   "[a-z0-9._-]{1,%d}", MODEL_MAX);
		goto out;
	}
	if (!cJSON_IsArray(arr) || n < 1 || n > MAX_POINTS) {
		core_error(r, 400, "bad_request", "points: want an array of 1 "
			   "to %d points, got %s%d", MAX_POINTS,
			   cJSON_IsArray(arr) ? "" : "no array, ",
			   cJSON_IsArray(arr) ? n : 0);
		goto out;
	}
	pts = malloc((size_t)n * sizeof *pts);
	if (!pts) {
		core_error(r, 503, "unavailable", "out of memory");
		goto out;
	}
	if (!take_points(c, arr, pts, why, sizeof why)) {
		core_error(r, 400, "bad_request", "%s", why);
		goto out;
	}
	qsort(pts, (size_t)n, sizeof *pts, by_metric_day);
	unsigned char ik[2 * CORE_ID_MAX + 2];
	size_t il = 0;
	if (idem) {
		il = core_devkey(ik, dev, NULL, 0);
		memcpy(ik + il, idem, strlen(idem));
		il += strlen(idem);
	}
	pthread_mutex_t *mu = stripe(c, dev);
	pthread_mutex_lock(mu);
	void *seen = NULL;
	size_t sl;
	int rc = idem ? tlcm_store_get(c->store, IDS, ik, il, &seen, &sl)
		      : TLCM_ENOENT;
	free(seen);
	bool dup = !rc;
	if (rc == TLCM_ENOENT) {
		tlcm_batch_t *b = tlcm_batch_new();
		rc = b ? add_points(c, b, dev, model->valuestring, pts,
				    (size_t)n) : TLCM_ENOMEM;
		unsigned char when[8];
		core_be64(when, core_wall_ns());
		if (!rc && idem)
			rc = tlcm_batch_put(c->store, b, IDS, ik, il, when, 8);
		if (!rc)
			rc = tlcm_store_write(c->store, b);
		tlcm_batch_free(b);
	}
	pthread_mutex_unlock(mu);
	uint64_t days = 0;
	if (!rc)
		rc = count_days(c, dev, 0, &days);
	if (rc) {
		core_error(r, 503, "unavailable", "cannot store the telemetry "
			   "of %s: %s", dev, tlcm_strerror(rc));
		goto out;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "status", dup ? "duplicate" : "stored");
	core_json_add_u64(o, "points", (uint64_t)n);
	core_json_add_u64(o, "days", days);
	cJSON_AddBoolToObject(o, "eligible", days >= c->tel->min_days);
	core_json_add_u64(o, "community_min_days", c->tel->min_days);
	core_reply_cjson(r, 0, o);
out:
	free(pts);
	cJSON_Delete(j);
}

/* ---- the community: per-device figures over a window ---------------------- */

typedef struct {
	char dev[CORE_ID_MAX + 1];
	agg_t a;
} dstat_t;

typedef struct {
	dstat_t *v;
	size_t n, cap;
	size_t plen;        /* the prefix: metric\0 [model\0] */
	bool any_model;
	uint64_t from_day;
	int rc;
} coll_t;

static int coll_one(void *arg, const void *key, size_t klen, const void *val,
		    size_t vlen)
{
	coll_t *k = arg;
	const char *p = (const char *)key + k->plen;
	size_t left = klen - k->plen;
	if (k->any_model) { /* skip the model */
		const char *z = memchr(p, 0, left);
		if (!z)
			return 0;
		left -= (size_t)(z + 1 - p);
		p = z + 1;
	}
	agg_t a;
	if (left < 10 || left - 9 > CORE_ID_MAX || p[left - 9] ||
	    !agg_dec(val, vlen, &a))
		return 0; /* not ours */
	if (core_get_be64((const unsigned char *)p + left - 8) < k->from_day)
		return 0;
	size_t dl = left - 9;
	dstat_t *last = k->n ? &k->v[k->n - 1] : NULL;
	if (last && strlen(last->dev) == dl && !memcmp(last->dev, p, dl)) {
		agg_add(&last->a, &a);
		return 0;
	}
	if (k->n == k->cap) {
		size_t cap = k->cap ? 2 * k->cap : 64;
		dstat_t *v = realloc(k->v, cap * sizeof *v);
		if (!v)
			return k->rc = TLCM_ENOMEM;
		k->v = v;
		k->cap = cap;
	}
	dstat_t *d = &k->v[k->n++];
	memcpy(d->dev, p, dl);
	d->dev[dl] = 0;
	d->a = a;
	return 0;
}

static int by_dev(const void *a, const void *b)
{
	return strcmp(((const dstat_t *)a)->dev, ((const dstat_t *)b)->dev);
}

/* Every device's aggregate of metric (for model, or all models when
 * model is NULL) over the days from from_day; one entry per device. */
static int collect(core_t *c, const char *metric, const char *model,
		   uint64_t from_day, dstat_t **out, size_t *n)
{
	unsigned char p[METRIC_MAX + MODEL_MAX + 2];
	size_t ml = strlen(metric) + 1, pl = ml;
	memcpy(p, metric, ml);
	if (model) {
		memcpy(p + ml, model, strlen(model) + 1);
		pl += strlen(model) + 1;
	}
	coll_t k = {.plen = pl, .any_model = !model, .from_day = from_day};
	int rc = tlcm_store_scan(c->store, TEL, p, pl, coll_one, &k);
	if (rc >= 0)
		rc = k.rc;
	if (rc < 0) {
		free(k.v);
		return rc;
	}
	if (!model && k.n > 1) { /* one device, several models: merge */
		qsort(k.v, k.n, sizeof *k.v, by_dev);
		size_t w = 0;
		for (size_t i = 0; i < k.n; i++) {
			if (w && !strcmp(k.v[w - 1].dev, k.v[i].dev))
				agg_add(&k.v[w - 1].a, &k.v[i].a);
			else
				k.v[w++] = k.v[i];
		}
		k.n = w;
	}
	*out = k.v;
	*n = k.n;
	return 0;
}

/* model (optional) and window_days (1..3650, default 30) of a community
 * query; false when answered 400. */
static bool window_args(core_req_t *r, char *model, uint64_t *window,
			uint64_t *from_day)
{
	char w[24];
	*window = 30;
	model[0] = 0;
	if (core_query(r, "window_days", w, sizeof w) &&
	    (!core_parse_u64(w, window) || *window < 1 || *window > 3650)) {
		core_error(r, 400, "bad_request", "window_days: want 1 to "
			   "3650, got '%.20s'", w);
		return false;
	}
	if (core_query(r, "model", model, MODEL_MAX + 2) && *model &&
	    !core_valid_model(model)) {
		core_error(r, 400, "bad_request", "model: want "
			   "[a-z0-9._-]{1,%d}", MODEL_MAX);
		return false;
	}
	uint64_t today = core_wall_ns() / 1000000000ull / DAY_S;
	*from_day = today + 1 > *window ? today + 1 - *window : 0;
	return true;
}

static void add_window(cJSON *o, const char *model, uint64_t window,
		       uint64_t from_day)
{
	if (model[0])
		cJSON_AddStringToObject(o, "model", model);
	else
		cJSON_AddNullToObject(o, "model");
	core_json_add_u64(o, "window_days", window);
	core_json_add_u64(o, "from_day", from_day);
}

void core_community_averages(core_req_t *r)
{
	char dev[CORE_ID_MAX + 1];
	if (core_auth_reader(r, dev))
		return;
	core_t *c = r->c;
	char list[400], model[MODEL_MAX + 2];
	uint64_t window, from;
	if (!core_query(r, "metrics", list, sizeof list) || !*list) {
		core_error(r, 400, "bad_request", "metrics: want a list "
			   "metrics=a,b (up to %d names)", MAX_METRICS);
		return;
	}
	if (!window_args(r, model, &window, &from))
		return;
	char *names[MAX_METRICS + 1];
	size_t nn = 0;
	for (char *s = list, *save = NULL, *t; (t = strtok_r(s, ",", &save));
	     s = NULL) {
		if (!valid_metric(t) || nn == MAX_METRICS) {
			core_error(r, 400, "bad_request", "metrics: %s", nn ==
				   MAX_METRICS ? "more than 16 names" :
				   "each name [a-z0-9_.]{1,64}");
			return;
		}
		names[nn++] = t;
	}
	cJSON *o = cJSON_CreateObject();
	add_window(o, model, window, from);
	core_json_add_u64(o, "community_min_devices", c->tel->min_devices);
	cJSON *ms = cJSON_AddObjectToObject(o, "metrics");
	int rc = 0;
	for (size_t i = 0; !rc && i < nn; i++) {
		if (cJSON_GetObjectItemCaseSensitive(ms, names[i]))
			continue; /* named twice */
		dstat_t *v = NULL;
		size_t n = 0;
		rc = collect(c, names[i], model[0] ? model : NULL, from, &v,
			     &n);
		if (rc)
			break;
		/* each device counts once: the mean of the device means */
		double mean = 0, lo = INFINITY, hi = -INFINITY;
		uint64_t pts = 0;
		for (size_t k = 0; k < n; k++) {
			mean += v[k].a.sum / (double)v[k].a.n;
			lo = fmin(lo, v[k].a.min);
			hi = fmax(hi, v[k].a.max);
			pts += v[k].a.n;
		}
		free(v);
		bool shown = n && n >= c->tel->min_devices;
		cJSON *m = cJSON_AddObjectToObject(ms, names[i]);
		core_json_num(m, "avg", shown ? mean / (double)n : NAN);
		core_json_num(m, "min", shown ? lo : NAN);
		core_json_num(m, "max", shown ? hi : NAN);
		core_json_add_u64(m, "devices", n);
		core_json_add_u64(m, "points", shown ? pts : 0);
		cJSON_AddBoolToObject(m, "suppressed", n && !shown);
	}
	core_reply_cjson(r, rc, o);
}

void core_community_rank(core_req_t *r)
{
	char dev[CORE_ID_MAX + 1];
	if (core_auth_reader(r, dev))
		return;
	core_t *c = r->c;
	char metric[METRIC_MAX + 2], who[CORE_ID_MAX + 2], hb[8];
	char model[MODEL_MAX + 2];
	uint64_t window, from;
	if (!core_query(r, "metric", metric, sizeof metric) ||
	    !valid_metric(metric)) {
		core_error(r, 400, "bad_request", "metric: want one name "
			   "[a-z0-9_.]{1,64}");
		return;
	}
	if (!core_query(r, "device", who, sizeof who) || !*who) {
		if (!dev[0]) {
			core_error(r, 400, "bad_request", "device: which "
				   "device's rank?");
			return;
		}
		snprintf(who, sizeof who, "%s", dev);
	}
	if (!core_valid_device(who)) {
		core_error(r, 400, "bad_request", "device: want "
			   "[A-Za-z0-9._-]{1,64}");
		return;
	}
	if (dev[0] && strcmp(dev, who)) {
		core_error(r, 403, "forbidden", "device %s may only ask for "
			   "its own rank, not %s's", dev, who);
		return;
	}
	bool higher = default_higher(metric);
	if (core_query(r, "higher_is_better", hb, sizeof hb)) {
		if (strcmp(hb, "true") && strcmp(hb, "false")) {
			core_error(r, 400, "bad_request", "higher_is_better: "
				   "want true or false");
			return;
		}
		higher = !strcmp(hb, "true");
	}
	if (!window_args(r, model, &window, &from))
		return;
	dstat_t *v = NULL;
	size_t n = 0;
	int rc = collect(c, metric, model[0] ? model : NULL, from, &v, &n);
	if (rc) {
		core_reply_cjson(r, rc, NULL);
		return;
	}
	const dstat_t *me = NULL;
	for (size_t i = 0; i < n && !me; i++)
		if (!strcmp(v[i].dev, who))
			me = &v[i];
	if (!me) {
		free(v);
		core_error(r, 404, "not_found", "device %s has no %s points "
			   "%s%s in the last %" PRIu64 " days", who, metric,
			   model[0] ? "for model " : "", model, window);
		return;
	}
	double mine = me->a.sum / (double)me->a.n;
	uint64_t worse = 0;
	for (size_t i = 0; i < n; i++) {
		double x = v[i].a.sum / (double)v[i].a.n;
		if (higher ? x < mine : x > mine)
			worse++;
	}
	free(v);
	bool shown = n >= 2 && n >= c->tel->min_devices;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "metric", metric);
	cJSON_AddStringToObject(o, "device", who);
	add_window(o, model, window, from);
	cJSON_AddBoolToObject(o, "higher_is_better", higher);
	core_json_num(o, "value", mine);
	core_json_add_u64(o, "devices", n);
	if (shown) {
		core_json_add_u64(o, "better_than", worse);
		core_json_num(o, "better_than_pct",
			      100.0 * (double)worse / (double)(n - 1));
	} else {
		cJSON_AddNullToObject(o, "better_than");
		cJSON_AddNullToObject(o, "better_than_pct");
	}
	cJSON_AddBoolToObject(o, "suppressed", !shown);
	core_reply_cjson(r, 0, o);
}

/* ---- GET /pool/status ------------------------------------------------------ */

typedef struct {
	uint64_t devices, eligible, device_days, points, min_days;
	uint64_t run;           /* days of the device being counted */
	char last[CORE_ID_MAX + 1];
	uint64_t *days;
	size_t nd, cap;
	int rc;
} pool_t;

static int pool_one(void *arg, const void *key, size_t klen, const void *val,
		    size_t vlen)
{
	pool_t *p = arg;
	if (klen < 10 || klen - 9 > CORE_ID_MAX ||
	    ((const char *)key)[klen - 9])
		return 0;
	size_t dl = klen - 9;
	if (strlen(p->last) != dl || memcmp(p->last, key, dl)) {
		if (p->devices && p->run >= p->min_days)
			p->eligible++;
		p->devices++;
		p->run = 0;
		memcpy(p->last, key, dl);
		p->last[dl] = 0;
	}
	p->run++;
	p->device_days++;
	if (vlen == 8)
		p->points += core_get_be64(val);
	if (p->nd == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 256;
		uint64_t *d = realloc(p->days, cap * sizeof *d);
		if (!d)
			return p->rc = TLCM_ENOMEM;
		p->days = d;
		p->cap = cap;
	}
	p->days[p->nd++] = core_get_be64((const unsigned char *)key + dl + 1);
	return 0;
}

void core_pool_status(core_req_t *r)
{
	char dev[CORE_ID_MAX + 1];
	if (core_auth_reader(r, dev))
		return;
	core_t *c = r->c;
	pool_t p = {.min_days = c->tel->min_days};
	int rc = tlcm_store_scan(c->store, DAYS, "", 0, pool_one, &p);
	if (rc >= 0)
		rc = p.rc;
	if (p.devices && p.run >= p.min_days)
		p.eligible++;
	uint64_t distinct = 0;
	if (p.nd) {
		qsort(p.days, p.nd, sizeof *p.days, by_u64);
		distinct = 1;
		for (size_t i = 1; i < p.nd; i++)
			distinct += p.days[i] != p.days[i - 1];
	}
	uint64_t first = p.nd ? p.days[0] : 0, last = p.nd ? p.days[p.nd - 1]
							  : 0;
	free(p.days);
	uint64_t mine = 0;
	if (!rc && dev[0])
		rc = count_days(c, dev, 0, &mine);
	cJSON *o = cJSON_CreateObject();
	core_json_add_u64(o, "devices", p.devices);
	core_json_add_u64(o, "eligible_devices", p.eligible);
	core_json_add_u64(o, "points", p.points);
	core_json_add_u64(o, "device_days", p.device_days);
	core_json_add_u64(o, "days", distinct);
	if (p.nd) {
		core_json_add_u64(o, "first_day", first);
		core_json_add_u64(o, "last_day", last);
	}
	core_json_add_u64(o, "community_min_days", c->tel->min_days);
	core_json_add_u64(o, "community_min_devices", c->tel->min_devices);
	if (dev[0]) {
		cJSON *d = cJSON_AddObjectToObject(o, "device");
		cJSON_AddStringToObject(d, "device_id", dev);
		core_json_add_u64(d, "days", mine);
		cJSON_AddBoolToObject(d, "eligible", mine >= p.min_days);
		core_json_add_u64(d, "days_missing", mine >= p.min_days ? 0 :
				  p.min_days - mine);
	}
	core_reply_cjson(r, rc, o);
}
