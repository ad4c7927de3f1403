/* retention.c — how long the core keeps each kind of record (params
 * retain_*; 0 keeps it forever) and the sweep that removes what is older,
 * run from the node's tick every retention_interval (the first right after
 * start). Each kind is swept by the time its keys are ordered by, so a
 * sweep reads only what it removes plus one key per device (telemetry's
 * aggregates and Idempotency-Keys, not keyed by time, are read whole):
 *
 *   packages  arrival at the core (core/bydev): record, bytes, index
 *   drift     arrival (the "t/" index); pending events are kept until a
 *             person validates or rejects them
 *   samples   arrival (core/ttl "s/"): record and thumbnail; kept while
 *             their drift event is pending
 *   images    arrival (core/ttl "i/"): a package's attachments; kept
 *             while a drift event of that package is pending
 *   metrics, logs  their own time_ns (the device's clock): what their
 *             keys and ?since= use
 *   telemetry the day of the points (aggregates and contribution days)
 *
 * The feedback queue is never swept: a label leaves when its device
 * acknowledges it. Deletes go in batches of whole records (a record and
 * its indexes, a sample and its thumbnail, a package and its bytes are
 * removed together), then the swept key range of each family is compacted
 * so the space comes back.
 *
 * De-duplication outlives the package: a swept package's id goes to
 * core/gone and is still answered `duplicate`, for as long as anything
 * decoded from it may be kept (the longest of the package-derived
 * retentions; forever if one of them is) and while one of its drift
 * events remains — a device re-sending an old package must not reset a
 * validated event or a labelled sample. Telemetry's Idempotency-Keys are
 * forgotten once a retry would be refused as too old anyway
 * (telemetry_max_age plus the day points may run ahead).
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/log.h"
#include "nodes/core/core.h"

#define DRIFT "core/drift"
#define TTL "core/ttl"
#define GONE "core/gone"
#define DAY_NS ((uint64_t)86400000000000ull)
#define BATCH_OPS 512   /* deletes per write */
#define KEYMAX 256
#define STOP 2          /* a scan callback's "the graph stops" */

enum { K_PACKAGES, K_DRIFT, K_SAMPLES, K_IMAGES, K_METRICS, K_LOGS,
       K_TELEMETRY, NK };

static const char *const KIND[NK] = {"packages", "drift", "samples",
				     "images", "metrics", "logs",
				     "telemetry"};

struct core_retention {
	uint64_t keep[NK];      /* ns; 0: forever */
	uint64_t ids_keep;      /* swept package ids; 0: forever */
	uint64_t interval;      /* ns between sweeps */
	uint64_t due;           /* mono ns of the next sweep, 0: now */
	_Atomic uint64_t swept[NK], ids_forgotten, sweeps, last_ns, held;
	_Atomic uint64_t failed;
};

/* ---- ingest's part --------------------------------------------------------- */

int core_ttl_put(core_t *c, tlcm_batch_t *b, char kind, uint64_t recv,
		 const void *key, size_t klen)
{
	unsigned char k[10 + KEYMAX];
	if (klen > KEYMAX)
		return TLCM_EINVAL;
	k[0] = (unsigned char)kind;
	k[1] = '/';
	core_be64(k + 2, recv);
	memcpy(k + 10, key, klen);
	return tlcm_batch_put(c->store, b, TTL, k, 10 + klen, "", 0);
}

int core_package_gone(core_t *c, const char *id, bool *gone)
{
	unsigned char k[2 + CORE_UUID_LEN];
	memcpy(k, "i/", 2);
	memcpy(k + 2, id, CORE_UUID_LEN);
	void *v = NULL;
	size_t vl;
	int rc = tlcm_store_get(c->store, GONE, k, sizeof k, &v, &vl);
	free(v);
	*gone = rc == 0;
	return rc == TLCM_ENOENT ? 0 : rc;
}

/* ---- a sweep's batch ------------------------------------------------------- */

typedef struct {
	const char *fam;
	unsigned char lo[KEYMAX], hi[KEYMAX];
	size_t ll, hl;
	uint64_t n;
} span_t;

#define NSPANS 16

typedef struct {
	core_t *c;
	core_retention_t *r;
	tlcm_batch_t *b;
	size_t ops;
	uint64_t now;
	uint64_t pend[NK], forgot; /* in b, counted once it is written */
	uint64_t held;
	span_t span[NSPANS];
	int rc;
} sweep_t;

static int key_cmp(const void *a, size_t al, const void *b, size_t bl)
{
	int d = memcmp(a, b, al < bl ? al : bl);
	return d ? d : al < bl ? -1 : al > bl;
}

static void note_span(sweep_t *sw, const char *fam, const void *key,
		      size_t klen)
{
	if (klen > KEYMAX)
		klen = KEYMAX; /* a prefix still bounds the range below */
	span_t *s = NULL;
	for (size_t i = 0; i < NSPANS && !s; i++)
		if (!sw->span[i].fam || !strcmp(sw->span[i].fam, fam))
			s = &sw->span[i];
	if (!s)
		return; /* not compacted: RocksDB gets there on its own */
	s->fam = fam;
	if (!s->n++ || key_cmp(key, klen, s->lo, s->ll) < 0) {
		memcpy(s->lo, key, klen);
		s->ll = klen;
	}
	if (s->n == 1 || key_cmp(key, klen, s->hi, s->hl) > 0) {
		/* a longer key sorts after its prefix: pad the cut one */
		memcpy(s->hi, key, klen);
		s->hl = klen;
		if (klen == KEYMAX)
			memset(s->hi + KEYMAX - 8, 0xff, 8);
	}
}

static void del(sweep_t *sw, const char *fam, const void *key, size_t klen)
{
	if (!sw->rc)
		sw->rc = tlcm_batch_delete(sw->c->store, sw->b, fam, key, klen);
	note_span(sw, fam, key, klen);
	sw->ops++;
}

static void put(sweep_t *sw, const char *fam, const void *key, size_t klen,
		const void *val, size_t vlen)
{
	if (!sw->rc)
		sw->rc = tlcm_batch_put(sw->c->store, sw->b, fam, key, klen,
					val, vlen);
	sw->ops++;
}

/* Write what is batched (whole records only: call between records). */
static int flush(sweep_t *sw)
{
	if (!sw->rc && sw->ops)
		sw->rc = tlcm_store_write(sw->c->store, sw->b);
	if (!sw->rc) {
		for (int k = 0; k < NK; k++)
			atomic_fetch_add(&sw->r->swept[k], sw->pend[k]);
		atomic_fetch_add(&sw->r->ids_forgotten, sw->forgot);
	}
	memset(sw->pend, 0, sizeof sw->pend);
	sw->forgot = 0;
	sw->ops = 0;
	tlcm_batch_free(sw->b);
	sw->b = tlcm_batch_new();
	if (!sw->b && !sw->rc)
		sw->rc = TLCM_ENOMEM;
	return sw->rc;
}

/* After a record: write when the batch is full; STOP when the graph
 * stops (what is batched is written first). */
static int next(sweep_t *sw)
{
	if (sw->ops >= BATCH_OPS && flush(sw))
		return sw->rc;
	if (sw->rc)
		return sw->rc;
	if (tlcm_stopping(sw->c->ctx)) {
		flush(sw);
		return sw->rc ? sw->rc : STOP;
	}
	return 0;
}

static uint64_t cutoff(const sweep_t *sw, int kind)
{
	uint64_t k = sw->r->keep[kind];
	return sw->now > k ? sw->now - k : 0;
}

/* ---- per device, in time ----------------------------------------------------- */

/* A record of a per-device family: its key ID\0 be64(t) …, and the
 * device's length. */
typedef int (*rec_fn)(sweep_t *sw, const unsigned char *k, size_t kl,
		      size_t dl);

typedef struct {
	sweep_t *sw;
	const char *fam;
	uint64_t cut;
	rec_fn fn;
	unsigned char next[CORE_ID_MAX + 1];
	size_t nl;
	bool more;
} devscan_t;

static int devscan_one(void *arg, const void *key, size_t klen,
		       const void *val, size_t vlen)
{
	devscan_t *d = arg;
	const unsigned char *k = key;
	(void)val, (void)vlen;
	const unsigned char *z = memchr(k, 0, klen < CORE_ID_MAX + 1 ? klen :
					CORE_ID_MAX + 1);
	if (!z || z == k || klen < (size_t)(z - k) + 9)
		return 0; /* not a record of ours: leave it */
	size_t dl = (size_t)(z - k);
	if (core_get_be64(z + 1) < d->cut)
		return d->fn(d->sw, k, klen, dl);
	/* this device is done: on with the next one (ids have no bytes
	 * below '-', so ID "\1" sorts after all of ID's keys and before
	 * the next device's) */
	memcpy(d->next, k, dl);
	d->next[dl] = 1;
	d->nl = dl + 1;
	d->more = true;
	return 1;
}

/* Every record of fam whose time is below cut, device by device. */
static int by_device(sweep_t *sw, const char *fam, uint64_t cut, rec_fn fn)
{
	devscan_t d = {.sw = sw, .fam = fam, .cut = cut, .fn = fn};
	int rc;
	do {
		bool from = d.more;
		d.more = false;
		rc = tlcm_store_scan_range(sw->c->store, fam, "", 0,
					   from ? d.next : NULL,
					   from ? d.nl : 0, false, devscan_one,
					   &d);
	} while (rc == 1 && d.more);
	return rc == 1 ? 0 : rc;
}

static int sweep_metric(sweep_t *sw, const unsigned char *k, size_t kl,
			size_t dl)
{
	(void)dl;
	del(sw, "core/metrics", k, kl);
	sw->pend[K_METRICS]++;
	return next(sw);
}

static int sweep_log(sweep_t *sw, const unsigned char *k, size_t kl,
		     size_t dl)
{
	(void)dl;
	del(sw, "core/logs", k, kl);
	sw->pend[K_LOGS]++;
	return next(sw);
}

static int sweep_day(sweep_t *sw, const unsigned char *k, size_t kl,
		     size_t dl)
{
	(void)dl;
	del(sw, "core/telemetry_days", k, kl);
	return next(sw);
}

/* A package: its record, bytes and index go; its id to core/gone. */
static int sweep_package(sweep_t *sw, const unsigned char *k, size_t kl,
			 size_t dl)
{
	del(sw, "core/bydev", k, kl);
	if (kl == dl + 9 + CORE_UUID_LEN) {
		const unsigned char *id = k + dl + 9;
		del(sw, "core/packages", id, CORE_UUID_LEN);
		del(sw, "core/blobs", id, CORE_UUID_LEN);
		unsigned char g[2 + CORE_UUID_LEN + 8];
		unsigned char v[8 + CORE_ID_MAX];
		memcpy(g, "i/", 2);
		memcpy(g + 2, id, CORE_UUID_LEN);
		memcpy(v, k + dl + 1, 8);
		memcpy(v + 8, k, dl);
		put(sw, GONE, g, 2 + CORE_UUID_LEN, v, 8 + dl);
		memcpy(g, "t/", 2);
		memcpy(g + 2, k + dl + 1, 8);
		memcpy(g + 10, id, CORE_UUID_LEN);
		put(sw, GONE, g, 10 + CORE_UUID_LEN, "", 0);
		sw->pend[K_PACKAGES]++;
	}
	return next(sw);
}

/* ---- drift events and what a person still needs ------------------------------ */

static cJSON *get_json(core_t *c, const char *fam, const void *key,
		       size_t klen, int *rc)
{
	void *v = NULL;
	size_t vl;
	*rc = tlcm_store_get(c->store, fam, key, klen, &v, &vl);
	cJSON *o = *rc ? NULL : core_json_parse(v, vl);
	free(v);
	return o;
}

static bool is_pending(const cJSON *e)
{
	const char *s = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(e, "status"));
	return s && !strcmp(s, "pending");
}

/* Is drift event evid (n bytes) there and pending? */
static bool event_pending(core_t *c, const char *evid, size_t n)
{
	unsigned char k[2 + CORE_UUID_LEN + 16];
	if (n > sizeof k - 2)
		return false;
	memcpy(k, "e/", 2);
	memcpy(k + 2, evid, n);
	int rc;
	cJSON *e = get_json(c, DRIFT, k, 2 + n, &rc);
	bool p = e ? is_pending(e) : rc != 0 && rc != TLCM_ENOENT;
	cJSON_Delete(e); /* unreadable: kept, to be safe */
	return p;
}

typedef struct {
	bool any, pending;
} evs_t;

static int package_event(void *arg, const void *key, size_t klen,
			 const void *val, size_t vlen)
{
	evs_t *e = arg;
	(void)key, (void)klen;
	e->any = true;
	cJSON *o = core_json_parse(val, vlen);
	e->pending = !o || is_pending(o);
	cJSON_Delete(o);
	return e->pending ? 1 : 0;
}

/* Drift events of package id: any at all, any pending. */
static int package_events(core_t *c, const unsigned char *id, evs_t *e)
{
	unsigned char p[2 + CORE_UUID_LEN + 1];
	memcpy(p, "e/", 2);
	memcpy(p + 2, id, CORE_UUID_LEN);
	p[2 + CORE_UUID_LEN] = '.';
	*e = (evs_t){0};
	int rc = tlcm_store_scan(c->store, DRIFT, p, sizeof p, package_event,
				 e);
	return rc < 0 ? rc : 0;
}

typedef struct {
	sweep_t *sw;
	uint64_t cut;
	size_t skip;  /* bytes of the index key before the record's key */
	int (*fn)(sweep_t *sw, const unsigned char *k, size_t kl);
} timed_t;

/* "X/" be64(t) REST keys below cut, oldest first. */
static int timed_one(void *arg, const void *key, size_t klen,
		     const void *val, size_t vlen)
{
	timed_t *t = arg;
	(void)val, (void)vlen;
	if (klen <= t->skip)
		return 0;
	if (core_get_be64((const unsigned char *)key + 2) >= t->cut)
		return 1;
	return t->fn(t->sw, key, klen);
}

static int timed(sweep_t *sw, const char *fam, const char *prefix,
		 uint64_t cut, int (*fn)(sweep_t *, const unsigned char *,
					 size_t))
{
	timed_t t = {sw, cut, 10, fn};
	int rc = tlcm_store_scan(sw->c->store, fam, prefix, 2, timed_one, &t);
	return rc == 1 ? 0 : rc;
}

static int sweep_event(sweep_t *sw, const unsigned char *k, size_t kl)
{
	size_t el = kl - 10;
	if (el > CORE_UUID_LEN + 12) {
		del(sw, DRIFT, k, kl); /* not an event id: a stray key */
		return next(sw);
	}
	unsigned char ek[2 + CORE_UUID_LEN + 12];
	memcpy(ek, "e/", 2);
	memcpy(ek + 2, k + 10, el);
	int rc;
	cJSON *e = get_json(sw->c, DRIFT, ek, 2 + el, &rc);
	if (rc && rc != TLCM_ENOENT)
		return rc;
	if (e && is_pending(e)) { /* a person has yet to look */
		cJSON_Delete(e);
		sw->held++;
		return 0;
	}
	del(sw, DRIFT, k, kl);
	if (e) {
		const char *dev = cJSON_GetStringValue(
			cJSON_GetObjectItemCaseSensitive(e, "device_id"));
		if (dev && core_valid_device(dev)) {
			unsigned char dk[2 + CORE_ID_MAX + 1 + 8 +
					 CORE_UUID_LEN + 12];
			uint64_t recv = core_get_be64(k + 2);
			memcpy(dk, "d/", 2);
			size_t dl = 2 + core_devkey(dk + 2, dev, &recv, 1);
			memcpy(dk + dl, k + 10, el);
			del(sw, DRIFT, dk, dl + el);
		}
		del(sw, DRIFT, ek, 2 + el);
		sw->pend[K_DRIFT]++;
		cJSON_Delete(e);
	}
	return next(sw);
}

static int sweep_sample(sweep_t *sw, const unsigned char *k, size_t kl)
{
	const unsigned char *sk = k + 10;
	size_t sl = kl - 10;
	int rc;
	cJSON *s = get_json(sw->c, "core/samples", sk, sl, &rc);
	if (rc && rc != TLCM_ENOENT)
		return rc;
	const char *ev = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(s, "event"));
	if (ev && event_pending(sw->c, ev, strlen(ev))) {
		cJSON_Delete(s);
		sw->held++;
		return 0;
	}
	del(sw, TTL, k, kl);
	if (s) {
		del(sw, "core/samples", sk, sl);
		del(sw, "core/thumbs", sk, sl);
		sw->pend[K_SAMPLES]++;
		cJSON_Delete(s);
	}
	return next(sw);
}

typedef struct {
	sweep_t *sw;
	uint64_t n;
} imgs_t;

static int image_one(void *arg, const void *key, size_t klen,
		     const void *val, size_t vlen)
{
	imgs_t *m = arg;
	(void)val, (void)vlen;
	del(m->sw, "core/images", key, klen);
	m->n++;
	return 0;
}

static int sweep_images(sweep_t *sw, const unsigned char *k, size_t kl)
{
	if (kl != 10 + CORE_UUID_LEN) {
		del(sw, TTL, k, kl);
		return next(sw);
	}
	evs_t e;
	int rc = package_events(sw->c, k + 10, &e);
	if (rc)
		return rc;
	if (e.pending) {
		sw->held++;
		return 0;
	}
	unsigned char p[CORE_UUID_LEN + 1];
	memcpy(p, k + 10, CORE_UUID_LEN);
	p[CORE_UUID_LEN] = '/';
	imgs_t m = {sw, 0};
	rc = tlcm_store_scan(sw->c->store, "core/images", p, sizeof p,
			     image_one, &m);
	if (rc < 0)
		return rc;
	del(sw, TTL, k, kl);
	sw->pend[K_IMAGES] += m.n;
	return next(sw);
}

/* A swept package's id: forgotten when no drift event of it is left. */
static int forget_id(sweep_t *sw, const unsigned char *k, size_t kl)
{
	if (kl == 10 + CORE_UUID_LEN) {
		evs_t e;
		int rc = package_events(sw->c, k + 10, &e);
		if (rc)
			return rc;
		if (e.any)
			return 0;
		unsigned char ik[2 + CORE_UUID_LEN];
		memcpy(ik, "i/", 2);
		memcpy(ik + 2, k + 10, CORE_UUID_LEN);
		del(sw, GONE, ik, sizeof ik);
		sw->forgot++;
	}
	del(sw, GONE, k, kl);
	return next(sw);
}

/* ---- telemetry ------------------------------------------------------------------ */

typedef struct {
	sweep_t *sw;
	uint64_t cut;     /* a day, or a time in ns */
} tel_t;

static int tel_one(void *arg, const void *key, size_t klen, const void *val,
		   size_t vlen)
{
	tel_t *t = arg;
	(void)val, (void)vlen;
	if (klen < 8 ||
	    core_get_be64((const unsigned char *)key + klen - 8) >= t->cut)
		return 0;
	del(t->sw, "core/telemetry", key, klen);
	t->sw->pend[K_TELEMETRY]++;
	return next(t->sw);
}

static int telid_one(void *arg, const void *key, size_t klen,
		     const void *val, size_t vlen)
{
	tel_t *t = arg;
	/* written before they carried a time: as old as can be */
	uint64_t when = vlen == 8 ? core_get_be64(val) : 0;
	if (when >= t->cut)
		return 0;
	del(t->sw, "core/telemetry_ids", key, klen);
	return next(t->sw);
}

static int sweep_telemetry(sweep_t *sw)
{
	int rc = 0;
	if (sw->r->keep[K_TELEMETRY]) {
		uint64_t day = cutoff(sw, K_TELEMETRY) / DAY_NS;
		rc = by_device(sw, "core/telemetry_days", day, sweep_day);
		tel_t t = {sw, day};
		if (!rc)
			rc = tlcm_store_scan(sw->c->store, "core/telemetry", "",
					     0, tel_one, &t);
	}
	uint64_t age = core_telemetry_max_age_s(sw->c) * 1000000000ull +
		       DAY_NS;
	tel_t t = {sw, sw->now > age ? sw->now - age : 0};
	if (!rc)
		rc = tlcm_store_scan(sw->c->store, "core/telemetry_ids", "", 0,
				     telid_one, &t);
	return rc;
}

/* ---- the sweep ------------------------------------------------------------------ */

static int sweep(core_t *c, sweep_t *sw)
{
	core_retention_t *r = c->ret;
	int rc = 0;
	if (r->keep[K_PACKAGES])
		rc = by_device(sw, "core/bydev", cutoff(sw, K_PACKAGES),
			       sweep_package);
	if (!rc && r->keep[K_DRIFT])
		rc = timed(sw, DRIFT, "t/", cutoff(sw, K_DRIFT), sweep_event);
	if (!rc && r->keep[K_SAMPLES])
		rc = timed(sw, TTL, "s/", cutoff(sw, K_SAMPLES), sweep_sample);
	if (!rc && r->keep[K_IMAGES])
		rc = timed(sw, TTL, "i/", cutoff(sw, K_IMAGES), sweep_images);
	if (!rc && r->keep[K_METRICS])
		rc = by_device(sw, "core/metrics", cutoff(sw, K_METRICS),
			       sweep_metric);
	if (!rc && r->keep[K_LOGS])
		rc = by_device(sw, "core/logs", cutoff(sw, K_LOGS), sweep_log);
	if (!rc)
		rc = sweep_telemetry(sw);
	if (!rc && r->ids_keep) {
		/* after the events: an id is kept while one is left */
		rc = flush(sw);
		if (!rc)
			rc = timed(sw, GONE, "t/", sw->now > r->ids_keep ?
				   sw->now - r->ids_keep : 0, forget_id);
	}
	if (!rc || rc == STOP)
		rc = flush(sw) ? sw->rc : rc;
	return rc;
}

void core_retention_tick(core_t *c)
{
	core_retention_t *r = c->ret;
	uint64_t mono = core_mono_ns();
	if (!r || (r->due && mono < r->due))
		return;
	sweep_t sw = {.c = c, .r = r, .b = tlcm_batch_new(),
		      .now = core_wall_ns()};
	int rc = sw.b ? sweep(c, &sw) : TLCM_ENOMEM;
	tlcm_batch_free(sw.b);
	const char *who = tlcm_node_id(c->ctx);
	uint64_t n = 0;
	for (size_t i = 0; i < NSPANS && sw.span[i].fam; i++) {
		span_t *s = &sw.span[i];
		n += s->n;
		if (!rc)
			tlcm_store_compact(c->store, s->fam, s->lo, s->ll,
					   s->hi, s->hl);
	}
	atomic_store(&r->held, sw.held);
	if (rc && rc != STOP) {
		atomic_fetch_add(&r->failed, 1);
		tlcm_log(TLCM_LOG_WARN, who, "retention sweep failed: %s "
			 "(again in %" PRIu64 " s)", tlcm_strerror(rc),
			 (uint64_t)(r->interval / 1000000000ull));
	} else if (n) {
		tlcm_log(TLCM_LOG_DEBUG, who, "retention: %" PRIu64 " keys "
			 "removed%s", n, rc ? " (stopped early)" : "");
	}
	atomic_store(&r->last_ns, core_wall_ns());
	atomic_fetch_add(&r->sweeps, 1);
	r->due = core_mono_ns() + r->interval;
}

/* ---- the index of stores made before retention ----------------------------------- */

typedef struct {
	core_t *c;
	tlcm_batch_t *b;
	char last[CORE_UUID_LEN]; /* the package whose images were indexed */
	bool any;
	uint64_t now;
	int rc;
} fill_t;

static int index_sample(void *arg, const void *key, size_t klen,
			const void *val, size_t vlen)
{
	fill_t *f = arg;
	cJSON *o = core_json_parse(val, vlen);
	uint64_t recv = 0;
	core_json_get_u64(cJSON_GetObjectItemCaseSensitive(o, "received_ns"),
			  &recv);
	cJSON_Delete(o);
	return f->rc = core_ttl_put(f->c, f->b, 's', recv, key, klen);
}

static int index_image(void *arg, const void *key, size_t klen,
		       const void *val, size_t vlen)
{
	fill_t *f = arg;
	(void)val, (void)vlen;
	if (klen <= CORE_UUID_LEN ||
	    (f->any && !memcmp(f->last, key, CORE_UUID_LEN)))
		return 0; /* the package's other images */
	memcpy(f->last, key, CORE_UUID_LEN);
	f->any = true;
	int rc;
	cJSON *p = get_json(f->c, "core/packages", key, CORE_UUID_LEN, &rc);
	uint64_t recv = f->now; /* its record is gone: from now on */
	core_json_get_u64(cJSON_GetObjectItemCaseSensitive(p, "received_ns"),
			  &recv);
	cJSON_Delete(p);
	return f->rc = core_ttl_put(f->c, f->b, 'i', recv, key,
				    CORE_UUID_LEN);
}

/* A store whose samples or images came before core/ttl: index them once
 * (in one batch, so a crash leaves no half index). */
static int backfill(core_t *c)
{
	if (tlcm_store_has_family(c->store, TTL) ||
	    (!tlcm_store_has_family(c->store, "core/samples") &&
	     !tlcm_store_has_family(c->store, "core/images")))
		return 0;
	fill_t f = {.c = c, .b = tlcm_batch_new(), .now = core_wall_ns()};
	int rc = f.b ? 0 : TLCM_ENOMEM;
	if (!rc)
		rc = tlcm_store_scan(c->store, "core/samples", "", 0,
				     index_sample, &f);
	if (!rc)
		rc = tlcm_store_scan(c->store, "core/images", "", 0,
				     index_image, &f);
	if (!rc)
		rc = tlcm_store_write(c->store, f.b);
	tlcm_batch_free(f.b);
	return rc;
}

/* ---- settings and figures --------------------------------------------------------- */

int core_retention_init(core_t *c, char *why, size_t cap)
{
	core_retention_t *r = calloc(1, sizeof *r);
	if (!r)
		return tlcm_fail(why, cap, TLCM_ENOMEM, "out of memory");
	c->ret = r;
	bool forever = false;
	for (int k = 0; k < NK; k++) {
		char name[32];
		snprintf(name, sizeof name, "retain_%s", KIND[k]);
		r->keep[k] = tlcm_param_duration_ns(c->ctx, name);
		if (k == K_TELEMETRY)
			continue;
		forever |= !r->keep[k];
		if (r->keep[k] > r->ids_keep)
			r->ids_keep = r->keep[k];
	}
	if (forever)
		r->ids_keep = 0;
	r->interval = tlcm_param_duration_ns(c->ctx, "retention_interval");
	uint64_t min_days = core_community_min_days(c);
	if (r->keep[K_TELEMETRY] && r->keep[K_TELEMETRY] < min_days * DAY_NS)
		return tlcm_fail(why, cap, TLCM_EINVAL, "retain_telemetry "
				 "keeps %" PRIu64 " days of telemetry, fewer "
				 "than community_min_days (%" PRIu64 "): no "
				 "device could become eligible for community "
				 "models", (uint64_t)(r->keep[K_TELEMETRY] / DAY_NS),
				 min_days);
	int rc = backfill(c);
	if (rc)
		return tlcm_fail(why, cap, rc, "retention: cannot index the "
				 "samples and images stored before it: %s",
				 tlcm_strerror(rc));
	return 0;
}

void core_retention_free(core_t *c)
{
	free(c->ret);
	c->ret = NULL;
}

size_t core_retention_describe(core_t *c, char *buf, size_t len)
{
	core_retention_t *r = c->ret;
	if (!r || !len)
		return 0;
	size_t n = (size_t)snprintf(buf, len, "\"retention\":{\"sweeps\":%"
				    PRIu64 ",\"last_sweep_ns\":%" PRIu64
				    ",\"failed\":%" PRIu64 ",\"held\":%" PRIu64
				    ",\"ids_forgotten\":%" PRIu64
				    ",\"swept\":{", (uint64_t)r->sweeps,
				    (uint64_t)r->last_ns, (uint64_t)r->failed,
				    (uint64_t)r->held,
				    (uint64_t)r->ids_forgotten);
	for (int k = 0; k < NK && n < len; k++)
		n += (size_t)snprintf(buf + n, len - n, "%s\"%s\":%" PRIu64,
				      k ? "," : "", KIND[k],
				      (uint64_t)r->swept[k]);
	if (n < len)
		n += (size_t)snprintf(buf + n, len - n, "}}");
	return n < len ? n : len - 1;
}

size_t core_retention_prometheus(core_t *c, char *buf, size_t len)
{
	core_retention_t *r = c->ret;
	if (!r || !len)
		return 0;
	size_t n = (size_t)snprintf(buf, len,
		"# HELP tinylcm_core_retention_swept_total records removed by "
		"retention, per kind\n"
		"# TYPE tinylcm_core_retention_swept_total counter\n");
	for (int k = 0; k < NK && n < len; k++)
		n += (size_t)snprintf(buf + n, len - n,
			"tinylcm_core_retention_swept_total{kind=\"%s\"} %"
			PRIu64 "\n", KIND[k], (uint64_t)r->swept[k]);
	if (n < len)
		n += (size_t)snprintf(buf + n, len - n,
			"# HELP tinylcm_core_retention_sweeps_total retention "
			"sweeps run\n"
			"# TYPE tinylcm_core_retention_sweeps_total counter\n"
			"tinylcm_core_retention_sweeps_total %" PRIu64 "\n"
			"# HELP tinylcm_core_retention_failed_total retention "
			"sweeps that failed (store errors)\n"
			"# TYPE tinylcm_core_retention_failed_total counter\n"
			"tinylcm_core_retention_failed_total %" PRIu64 "\n"
			"# HELP tinylcm_core_retention_ids_forgotten_total ids "
			"of swept packages forgotten (a package sent again "
			"after that is stored anew)\n"
			"# TYPE tinylcm_core_retention_ids_forgotten_total "
			"counter\n"
			"tinylcm_core_retention_ids_forgotten_total %" PRIu64
			"\n"
			"# HELP tinylcm_core_retention_held records past "
			"their retention kept at the last sweep (pending "
			"drift events, their samples and images)\n"
			"# TYPE tinylcm_core_retention_held gauge\n"
			"tinylcm_core_retention_held %" PRIu64 "\n"
			"# HELP tinylcm_core_retention_last_sweep_timestamp_"
			"seconds when the last sweep ended (0: none yet)\n"
			"# TYPE tinylcm_core_retention_last_sweep_timestamp_"
			"seconds gauge\n"
			"tinylcm_core_retention_last_sweep_timestamp_seconds %"
			PRIu64 "\n", (uint64_t)r->sweeps, (uint64_t)r->failed,
			(uint64_t)r->ids_forgotten, (uint64_t)r->held,
			(uint64_t)(r->last_ns / 1000000000ull));
	return n < len ? n : len - 1;
}
