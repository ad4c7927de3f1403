/* outbox.c — the device's durable, prioritised outbox (see outbox.h).
 *
 * Keys in the store's `outbox` family:
 *   q/<priority:1><created_ns:8, big-endian><id>  the package bytes
 *   i/<id>                                       its header (meta_t)
 *   n/evicted                                    packages evicted, ever
 * so the queue sorts by priority, age, id, and the headers can be read
 * without the bytes. In `deadletter`: h/<id> (header, time, reason) and
 * p/<id> (the bytes). In memory, under one mutex: per priority an array of
 * entries sorted by age (a deque: most puts append, most removals take the
 * front), and a hash of ids; built on first use by scanning i/. Every
 * change is one store batch, written before the index changes, with the
 * memory it needs reserved first so the two cannot part.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "engine/log.h"
#include "engine/outbox.h"

#define FAMILY "outbox"
#define DEAD_FAMILY "deadletter"
#define META_MAGIC 0x58424f54u /* "TOBX" */
#define DEAD_MAGIC 0x44424f54u /* "TOBD" */
#define NPRIO 256
#define QKEY_MAX (2 + 1 + 8 + TLCM_PKG_ID_LEN)
#define IKEY_MAX (2 + TLCM_PKG_ID_LEN)
#define REASON_MAX 4096
#define EVICTED_KEY "n/evicted"

/* The header of a queued package (i/<id>), and the head of a dead letter's
 * (h/<id>, followed by the reason's bytes). Native byte order, like the
 * snapshot header: a store does not move between architectures. */
typedef struct {
	uint32_t magic;
	uint8_t format, priority, _pad[2];
	uint32_t crc; /* CRC-32 of the package bytes */
	uint32_t _pad2;
	uint64_t created_ns;
	uint64_t size;
	char kind[TLCM_PKG_KIND_MAX + 1]; /* NUL-terminated */
	char _pad3[7];
} meta_t;

typedef struct {
	meta_t m;
	uint64_t dead_ns;
	uint32_t reason_len;
	uint32_t _pad;
} dead_t;

typedef struct {
	tlcm_outbox_entry_t e;
	uint32_t crc;
} item_t;

/* One priority's packages, v[head .. head + n) sorted by (created_ns, id). */
typedef struct {
	item_t *v;
	size_t head, n, cap;
	uint64_t bytes;
} pq_t;

typedef struct {
	char id[TLCM_PKG_ID_LEN + 1]; /* "" = free */
	uint8_t prio;
	uint32_t hash;
	uint64_t created_ns;
} slot_t;

struct tlcm_outbox {
	tlcm_store_t *s;
	pthread_mutex_t mu;
	bool loaded;
	tlcm_outbox_limits_t lim;
	pq_t q[NPRIO];
	uint64_t packages, bytes, dead, evicted;
	slot_t *tab; /* open addressing, linear probing, <= half full */
	size_t tabcap, tabn;
};

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* id is an entry's char[TLCM_PKG_ID_LEN + 1]: never read past it. */
static bool valid_id(const char *id)
{
	size_t n = 0;
	for (; n <= TLCM_PKG_ID_LEN && id[n]; n++) {
		char c = id[n];
		if (n >= TLCM_PKG_ID_LEN ||
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return n > 0;
}

static size_t qkey(char *k, uint8_t prio, uint64_t created, const char *id)
{
	size_t n = strlen(id);
	k[0] = 'q';
	k[1] = '/';
	k[2] = (char)prio;
	for (int i = 0; i < 8; i++)
		k[3 + i] = (char)(created >> (56 - 8 * i));
	memcpy(k + 11, id, n);
	return 11 + n;
}

static size_t idkey(char *k, char tag, const char *id)
{
	size_t n = strlen(id);
	k[0] = tag;
	k[1] = '/';
	memcpy(k + 2, id, n);
	return 2 + n;
}

static void make_meta(meta_t *m, const tlcm_outbox_entry_t *e, uint32_t crc)
{
	memset(m, 0, sizeof *m);
	m->magic = META_MAGIC;
	m->format = 1;
	m->priority = e->priority;
	m->crc = crc;
	m->created_ns = e->created_ns;
	m->size = e->size;
	memcpy(m->kind, e->kind, sizeof m->kind);
	m->kind[TLCM_PKG_KIND_MAX] = 0;
}

/* e from a header and the id in its key; false when it is not one. */
static bool parse_meta(const void *val, size_t vlen, const char *id,
		       size_t idlen, item_t *it)
{
	meta_t m;
	if (vlen < sizeof m || idlen == 0 || idlen > TLCM_PKG_ID_LEN)
		return false;
	memcpy(&m, val, sizeof m);
	if (m.magic != META_MAGIC || m.format != 1 || m.priority == 0 ||
	    memchr(m.kind, 0, sizeof m.kind) == NULL)
		return false;
	memset(it, 0, sizeof *it);
	memcpy(it->e.id, id, idlen);
	memcpy(it->e.kind, m.kind, sizeof it->e.kind);
	it->e.priority = m.priority;
	it->e.created_ns = m.created_ns;
	it->e.size = (size_t)m.size;
	it->crc = m.crc;
	return true;
}

static uint32_t crc_of(const void *p, size_t len)
{
	uLong c = crc32(0, Z_NULL, 0);
	const Bytef *b = p;
	while (len) { /* crc32 takes a uInt */
		uInt part = len > (1u << 30) ? (1u << 30) : (uInt)len;
		c = crc32(c, b, part);
		b += part;
		len -= part;
	}
	return (uint32_t)c;
}

/* ---- the id hash -------------------------------------------------------- */

static uint32_t hash_id(const char *id)
{
	uint32_t h = 2166136261u;
	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h;
}

static slot_t *h_find(tlcm_outbox_t *o, const char *id)
{
	if (!o->tabcap)
		return NULL;
	size_t mask = o->tabcap - 1;
	uint32_t h = hash_id(id);
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		slot_t *sl = &o->tab[i];
		if (!sl->id[0])
			return NULL;
		if (sl->hash == h && !strcmp(sl->id, id))
			return sl;
	}
}

static void h_place(slot_t *tab, size_t cap, const slot_t *src)
{
	size_t mask = cap - 1;
	size_t i = src->hash & mask;
	while (tab[i].id[0])
		i = (i + 1) & mask;
	tab[i] = *src;
}

/* Room for `more` ids without growing later. */
static int h_reserve(tlcm_outbox_t *o, size_t more)
{
	size_t need = o->tabn + more, cap = o->tabcap ? o->tabcap : 64;
	while (need * 2 > cap)
		cap *= 2;
	if (cap == o->tabcap)
		return 0;
	slot_t *t = calloc(cap, sizeof *t);
	if (!t)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < o->tabcap; i++)
		if (o->tab[i].id[0])
			h_place(t, cap, &o->tab[i]);
	free(o->tab);
	o->tab = t;
	o->tabcap = cap;
	return 0;
}

/* Needs h_reserve(o, 1) first. */
static void h_insert(tlcm_outbox_t *o, const tlcm_outbox_entry_t *e)
{
	slot_t sl;
	memset(&sl, 0, sizeof sl);
	memcpy(sl.id, e->id, sizeof sl.id);
	sl.prio = e->priority;
	sl.created_ns = e->created_ns;
	sl.hash = hash_id(e->id);
	h_place(o->tab, o->tabcap, &sl);
	o->tabn++;
}

/* Backward-shift deletion: no tombstones, probes stay short. */
static void h_remove(tlcm_outbox_t *o, slot_t *sl)
{
	size_t mask = o->tabcap - 1, i = (size_t)(sl - o->tab), j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (!o->tab[j].id[0])
			break;
		size_t k = o->tab[j].hash & mask; /* its home */
		bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			o->tab[i] = o->tab[j];
			i = j;
		}
	}
	o->tab[i].id[0] = 0;
	o->tabn--;
}

/* ---- per-priority queues ------------------------------------------------ */

static item_t *pq_at(pq_t *q, size_t i)
{
	return &q->v[q->head + i];
}

static int cmp_key(const tlcm_outbox_entry_t *a, uint64_t created,
		   const char *id)
{
	if (a->created_ns != created)
		return a->created_ns < created ? -1 : 1;
	return strcmp(a->id, id);
}

/* Index of the first entry not before (created, id). */
static size_t pq_lower(pq_t *q, uint64_t created, const char *id)
{
	size_t lo = 0, hi = q->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cmp_key(&pq_at(q, mid)->e, created, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Room for one more at the end of v. */
static int pq_reserve(pq_t *q)
{
	if (q->head + q->n < q->cap)
		return 0;
	if (q->head > q->cap / 4) { /* slide down rather than grow */
		memmove(q->v, q->v + q->head, q->n * sizeof *q->v);
		q->head = 0;
		return 0;
	}
	size_t cap = q->cap ? 2 * q->cap : 16;
	item_t *v = realloc(q->v, cap * sizeof *v);
	if (!v)
		return TLCM_ENOMEM;
	q->v = v;
	q->cap = cap;
	return 0;
}

/* Needs pq_reserve(q) first. */
static void pq_insert(pq_t *q, const item_t *it)
{
	size_t at = q->n && cmp_key(&pq_at(q, q->n - 1)->e, it->e.created_ns,
				    it->e.id) < 0
			    ? q->n
			    : pq_lower(q, it->e.created_ns, it->e.id);
	item_t *p = pq_at(q, at);
	memmove(p + 1, p, (q->n - at) * sizeof *p);
	*p = *it;
	q->n++;
	q->bytes += it->e.size;
}

static void pq_remove(pq_t *q, size_t at)
{
	item_t *p = pq_at(q, at);
	q->bytes -= p->e.size;
	if (at < q->n - at - 1) { /* the front side is shorter */
		memmove(q->v + q->head + 1, q->v + q->head, at * sizeof *p);
		q->head++;
	} else {
		memmove(p, p + 1, (q->n - at - 1) * sizeof *p);
	}
	if (--q->n == 0)
		q->head = 0;
	if (q->cap > 1024 && q->n < q->cap / 8) { /* give memory back */
		memmove(q->v, q->v + q->head, q->n * sizeof *p);
		q->head = 0;
		item_t *v = realloc(q->v, q->cap / 2 * sizeof *v);
		if (v) {
			q->v = v;
			q->cap /= 2;
		}
	}
}

static int cmp_item(const void *a, const void *b)
{
	const item_t *x = a, *y = b;
	return cmp_key(&x->e, y->e.created_ns, y->e.id);
}

/* The queue position of a queued id, or false. */
static bool locate(tlcm_outbox_t *o, const char *id, pq_t **q, size_t *at)
{
	slot_t *sl = h_find(o, id);
	if (!sl)
		return false;
	*q = &o->q[sl->prio];
	*at = pq_lower(*q, sl->created_ns, id);
	return *at < (*q)->n && !strcmp(pq_at(*q, *at)->e.id, id);
}

/* Take a queued entry out of the index (after its batch is written). */
static void forget(tlcm_outbox_t *o, pq_t *q, size_t at)
{
	item_t *it = pq_at(q, at);
	slot_t *sl = h_find(o, it->e.id);
	if (sl)
		h_remove(o, sl);
	o->packages--;
	o->bytes -= it->e.size;
	pq_remove(q, at);
}

/* ---- building the index ------------------------------------------------- */

static void reset(tlcm_outbox_t *o)
{
	for (int p = 0; p < NPRIO; p++) {
		free(o->q[p].v);
		memset(&o->q[p], 0, sizeof o->q[p]);
	}
	free(o->tab);
	o->tab = NULL;
	o->tabcap = o->tabn = 0;
	o->packages = o->bytes = o->dead = o->evicted = 0;
	o->loaded = false;
}

static int load_one(void *arg, const void *key, size_t klen, const void *val,
		    size_t vlen)
{
	tlcm_outbox_t *o = arg;
	item_t it;
	if (!parse_meta(val, vlen, (const char *)key + 2, klen - 2, &it)) {
		/* tlcm_outbox_check() reports it; its bytes stay where they
		 * are, for a person to look at */
		tlcm_error("outbox", "%s: unreadable package header %.*s "
			   "(skipped; see tinylcm state check)",
			   tlcm_store_path(o->s), (int)klen, (const char *)key);
		return 0;
	}
	pq_t *q = &o->q[it.e.priority];
	int rc = pq_reserve(q);
	if (!rc)
		rc = h_reserve(o, 1);
	if (rc)
		return rc;
	q->v[q->head + q->n++] = it; /* sorted once, at the end */
	q->bytes += it.e.size;
	h_insert(o, &it.e);
	o->packages++;
	o->bytes += it.e.size;
	return 0;
}

static int count_dead(void *arg, const void *key, size_t klen,
		      const void *val, size_t vlen)
{
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	((tlcm_outbox_t *)arg)->dead++;
	return 0;
}

static int load(tlcm_outbox_t *o)
{
	if (o->loaded)
		return 0;
	int rc = tlcm_store_scan(o->s, FAMILY, "i/", 2, load_one, o);
	if (!rc)
		rc = tlcm_store_scan(o->s, DEAD_FAMILY, "h/", 2, count_dead, o);
	void *v = NULL;
	size_t vl = 0;
	if (!rc) {
		int g = tlcm_store_get(o->s, FAMILY, EVICTED_KEY,
				       strlen(EVICTED_KEY), &v, &vl);
		if (g == 0 && vl == 8)
			memcpy(&o->evicted, v, 8);
		else if (g && g != TLCM_ENOENT)
			rc = g;
		free(v);
	}
	if (rc) {
		tlcm_error("outbox", "%s: cannot read the outbox: %s",
			   tlcm_store_path(o->s), tlcm_strerror(rc));
		reset(o);
		return rc;
	}
	for (int p = 0; p < NPRIO; p++)
		if (o->q[p].n)
			qsort(pq_at(&o->q[p], 0), o->q[p].n, sizeof(item_t),
			      cmp_item);
	o->loaded = true;
	return 0;
}

/* ---- life --------------------------------------------------------------- */

tlcm_outbox_t *tlcm_outbox_new_(tlcm_store_t *s)
{
	tlcm_outbox_t *o = calloc(1, sizeof *o);
	if (!o)
		return NULL;
	o->s = s;
	pthread_mutex_init(&o->mu, NULL);
	return o;
}

void tlcm_outbox_free_(tlcm_outbox_t *o)
{
	if (!o)
		return;
	reset(o);
	pthread_mutex_destroy(&o->mu);
	free(o);
}

void tlcm_outbox_set_limits(tlcm_outbox_t *o, const tlcm_outbox_limits_t *l)
{
	if (!o)
		return;
	pthread_mutex_lock(&o->mu);
	o->lim = l ? *l : (tlcm_outbox_limits_t){0};
	pthread_mutex_unlock(&o->mu);
}

/* ---- eviction ----------------------------------------------------------- */

/* Victims are, per priority, a prefix of its queue (the oldest): take[p]
 * entries. Choose those older than max_age at now; with a put of
 * `incoming` bytes at priority prio (prio 0: no put), also enough of the
 * least important to fit max_bytes — only of priority >= prio, and at prio
 * only those older than the new package. TLCM_ENOSPC when that is not
 * enough. */
static int choose(tlcm_outbox_t *o, uint64_t now, const item_t *in,
		  size_t take[NPRIO], size_t *nvict)
{
	uint64_t freed = 0;
	*nvict = 0;
	memset(take, 0, NPRIO * sizeof take[0]);
	if (o->lim.max_age_ns && now > o->lim.max_age_ns) {
		uint64_t cutoff = now - o->lim.max_age_ns;
		for (int p = NPRIO - 1; p > 0; p--) {
			pq_t *q = &o->q[p];
			while (take[p] < q->n &&
			       pq_at(q, take[p])->e.created_ns < cutoff) {
				freed += pq_at(q, take[p])->e.size;
				take[p]++;
				(*nvict)++;
			}
		}
	}
	if (!in || !o->lim.max_bytes)
		return 0;
	for (int p = NPRIO - 1; p >= in->e.priority &&
	     o->bytes - freed + in->e.size > o->lim.max_bytes; p--) {
		pq_t *q = &o->q[p];
		while (take[p] < q->n &&
		       o->bytes - freed + in->e.size > o->lim.max_bytes) {
			item_t *it = pq_at(q, take[p]);
			if (p == in->e.priority &&
			    cmp_key(&it->e, in->e.created_ns, in->e.id) > 0)
				break;
			freed += it->e.size;
			take[p]++;
			(*nvict)++;
		}
	}
	return o->bytes - freed + in->e.size > o->lim.max_bytes ? TLCM_ENOSPC
								 : 0;
}

static int batch_del_entry(tlcm_outbox_t *o, tlcm_batch_t *b,
			   const tlcm_outbox_entry_t *e)
{
	char k[QKEY_MAX];
	int rc = tlcm_batch_delete(o->s, b, FAMILY, k,
				   qkey(k, e->priority, e->created_ns, e->id));
	if (!rc)
		rc = tlcm_batch_delete(o->s, b, FAMILY, k,
				       idkey(k, 'i', e->id));
	return rc;
}

/* Deletes of the victims and the new evicted counter, into b. */
static int batch_victims(tlcm_outbox_t *o, tlcm_batch_t *b,
			 const size_t take[NPRIO], size_t nvict)
{
	int rc = 0;
	if (!nvict)
		return 0;
	for (int p = NPRIO - 1; p > 0 && !rc; p--)
		for (size_t i = 0; i < take[p] && !rc; i++)
			rc = batch_del_entry(o, b, &pq_at(&o->q[p], i)->e);
	uint64_t ev = o->evicted + nvict;
	if (!rc)
		rc = tlcm_batch_put(o->s, b, FAMILY, EVICTED_KEY,
				    strlen(EVICTED_KEY), &ev, sizeof ev);
	return rc;
}

/* After the batch: report the victims and drop them from the index. */
static void drop_victims(tlcm_outbox_t *o, const size_t take[NPRIO],
			 size_t nvict, tlcm_outbox_entry_t *out, size_t max)
{
	size_t k = 0;
	if (!nvict) /* the usual put: no walk over every priority */
		return;
	for (int p = NPRIO - 1; p > 0; p--)
		for (size_t i = 0; i < take[p]; i++) {
			item_t *it = pq_at(&o->q[p], 0);
			if (out && k < max)
				out[k] = it->e;
			k++;
			forget(o, &o->q[p], 0);
		}
	o->evicted += nvict;
	/* the caller reports them (a counted `dropped` event); a full
	 * outbox evicts at every put, too often for the log */
	if (nvict)
		tlcm_debug("outbox", "%s: evicted %zu package%s (retention: "
			  "max_bytes %llu, max_age %llu s)",
			  tlcm_store_path(o->s), nvict, nvict == 1 ? "" : "s",
			  (unsigned long long)o->lim.max_bytes,
			  (unsigned long long)(o->lim.max_age_ns /
					       1000000000u));
}

/* ---- the calls ---------------------------------------------------------- */

int tlcm_outbox_put(tlcm_outbox_t *o, const tlcm_outbox_entry_t *e,
		    const void *pkg, size_t len, tlcm_outbox_entry_t *evicted,
		    size_t max_evicted, size_t *nevicted)
{
	if (nevicted)
		*nevicted = 0;
	if (!o || !e || (!pkg && len) || !valid_id(e->id) || !e->priority ||
	    !memchr(e->kind, 0, sizeof e->kind))
		return TLCM_EINVAL;
	item_t in;
	memset(&in, 0, sizeof in);
	memcpy(in.e.id, e->id, strlen(e->id));
	memcpy(in.e.kind, e->kind, strlen(e->kind));
	in.e.priority = e->priority;
	in.e.size = len;
	uint64_t now = realtime_ns();
	in.e.created_ns = e->created_ns ? e->created_ns : now;

	pthread_mutex_lock(&o->mu);
	int rc = load(o);
	size_t take[NPRIO], nvict = 0;
	tlcm_batch_t *b = NULL;
	if (rc || h_find(o, in.e.id))
		goto out; /* already queued: a re-sent put */
	if (o->lim.max_bytes && len > o->lim.max_bytes) {
		rc = TLCM_ETOOBIG;
		goto out;
	}
	if ((rc = choose(o, now, &in, take, &nvict)))
		goto out;
	if ((rc = pq_reserve(&o->q[in.e.priority])) || (rc = h_reserve(o, 1)))
		goto out;
	if (!(b = tlcm_batch_new())) {
		rc = TLCM_ENOMEM;
		goto out;
	}
	in.crc = crc_of(pkg, len);
	meta_t m;
	make_meta(&m, &in.e, in.crc);
	char k[QKEY_MAX];
	rc = tlcm_batch_put(o->s, b, FAMILY, k,
			    qkey(k, in.e.priority, in.e.created_ns, in.e.id),
			    pkg, len);
	if (!rc)
		rc = tlcm_batch_put(o->s, b, FAMILY, k, idkey(k, 'i', in.e.id),
				    &m, sizeof m);
	if (!rc)
		rc = batch_victims(o, b, take, nvict);
	if (!rc)
		rc = tlcm_store_write(o->s, b);
	if (rc)
		goto out;
	drop_victims(o, take, nvict, evicted, max_evicted);
	if (nevicted)
		*nevicted = nvict;
	/* removing victims keeps the room reserved above (pq_remove only
	 * lowers head + n, or shrinks to far more than n + 1), so this cannot
	 * fail; were it to, the index would miss a stored package */
	if (pq_reserve(&o->q[in.e.priority]) == 0) {
		pq_insert(&o->q[in.e.priority], &in);
		h_insert(o, &in.e);
		o->packages++;
		o->bytes += len;
	} else {
		tlcm_error("outbox", "%s: package %s stored but not indexed "
			   "(out of memory): it is sent after a restart",
			   tlcm_store_path(o->s), in.e.id);
	}
out:
	pthread_mutex_unlock(&o->mu);
	tlcm_batch_free(b);
	return rc;
}

int tlcm_outbox_expire(tlcm_outbox_t *o, uint64_t now_ns,
		       tlcm_outbox_entry_t *evicted, size_t max_evicted,
		       size_t *nevicted)
{
	if (nevicted)
		*nevicted = 0;
	if (!o)
		return TLCM_EINVAL;
	if (!now_ns)
		now_ns = realtime_ns();
	size_t take[NPRIO], nvict = 0;
	tlcm_batch_t *b = NULL;
	pthread_mutex_lock(&o->mu);
	int rc = load(o);
	if (!rc)
		rc = choose(o, now_ns, NULL, take, &nvict);
	if (rc || !nvict)
		goto out;
	if (!(b = tlcm_batch_new())) {
		rc = TLCM_ENOMEM;
		goto out;
	}
	rc = batch_victims(o, b, take, nvict);
	if (!rc)
		rc = tlcm_store_write(o->s, b);
	if (rc)
		goto out;
	drop_victims(o, take, nvict, evicted, max_evicted);
	if (nevicted)
		*nevicted = nvict;
out:
	pthread_mutex_unlock(&o->mu);
	tlcm_batch_free(b);
	return rc;
}

/* Move the queued entry q[at] to the dead letters with reason and bytes
 * (under o->mu). */
static int kill_entry(tlcm_outbox_t *o, pq_t *q, size_t at,
		      const char *reason, const void *pkg, size_t len)
{
	item_t *it = pq_at(q, at);
	size_t rlen = strlen(reason);
	if (rlen > REASON_MAX)
		rlen = REASON_MAX;
	dead_t d;
	memset(&d, 0, sizeof d);
	make_meta(&d.m, &it->e, crc_of(pkg, len));
	d.m.magic = DEAD_MAGIC;
	d.m.size = len;
	d.dead_ns = realtime_ns();
	d.reason_len = (uint32_t)rlen;
	char *hv = malloc(sizeof d + rlen);
	tlcm_batch_t *b = tlcm_batch_new();
	int rc = hv && b ? 0 : TLCM_ENOMEM;
	char k[QKEY_MAX];
	void *old = NULL;
	size_t oldlen;
	bool again = false; /* this id died before (it was put again) */
	if (!rc) {
		memcpy(hv, &d, sizeof d);
		memcpy(hv + sizeof d, reason, rlen);
		int g = tlcm_store_get(o->s, DEAD_FAMILY, k,
				       idkey(k, 'h', it->e.id), &old, &oldlen);
		free(old);
		again = g == 0;
		rc = g == TLCM_ENOENT ? 0 : g;
	}
	if (!rc)
		rc = batch_del_entry(o, b, &it->e);
	if (!rc)
		rc = tlcm_batch_put(o->s, b, DEAD_FAMILY, k,
				    idkey(k, 'h', it->e.id), hv,
				    sizeof d + rlen);
	if (!rc)
		rc = tlcm_batch_put(o->s, b, DEAD_FAMILY, k,
				    idkey(k, 'p', it->e.id), pkg ? pkg : "",
				    len);
	if (!rc)
		rc = tlcm_store_write(o->s, b);
	if (!rc) {
		forget(o, q, at);
		o->dead += !again;
	}
	free(hv);
	tlcm_batch_free(b);
	return rc;
}

static bool skipped(const char *id, const char (*skip)[TLCM_PKG_ID_LEN + 1],
		    size_t nskip)
{
	for (size_t i = 0; i < nskip; i++)
		if (!strcmp(skip[i], id))
			return true;
	return false;
}

int tlcm_outbox_peek(tlcm_outbox_t *o, uint8_t max_priority,
		     const char (*skip)[TLCM_PKG_ID_LEN + 1], size_t nskip,
		     tlcm_outbox_entry_t *e, void **pkg, size_t *len)
{
	*pkg = NULL;
	*len = 0;
	if (!o || !e || (nskip && !skip))
		return TLCM_EINVAL;
	pthread_mutex_lock(&o->mu);
	int rc = load(o);
	for (int p = 1; !rc && p <= max_priority; p++) {
		pq_t *q = &o->q[p];
		for (size_t i = 0; i < q->n;) {
			item_t *it = pq_at(q, i);
			if (skipped(it->e.id, skip, nskip)) {
				i++;
				continue;
			}
			char k[QKEY_MAX];
			void *v;
			size_t vl;
			int g = tlcm_store_get(o->s, FAMILY, k,
					       qkey(k, it->e.priority,
						    it->e.created_ns, it->e.id),
					       &v, &vl);
			if (g && g != TLCM_ENOENT) {
				rc = g;
				break;
			}
			const char *why = NULL;
			if (g)
				why = "corrupt: its bytes are missing from the "
				      "outbox";
			else if (vl != it->e.size)
				why = "corrupt: its size differs from its "
				      "header";
			else if (crc_of(v, vl) != it->crc)
				why = "corrupt: its checksum does not match";
			if (!why) {
				*e = it->e;
				*pkg = v;
				*len = vl;
				pthread_mutex_unlock(&o->mu);
				return 0;
			}
			tlcm_error("outbox", "%s: package %s: %s; moved to the "
				   "dead letters", tlcm_store_path(o->s),
				   it->e.id, why);
			rc = kill_entry(o, q, i, why, g ? NULL : v,
					g ? 0 : vl);
			free(v);
			if (rc)
				break;
			/* the entry at i is the next one now */
		}
	}
	pthread_mutex_unlock(&o->mu);
	return rc ? rc : TLCM_ENOENT;
}

int tlcm_outbox_done(tlcm_outbox_t *o, const char *id)
{
	if (!o || !id)
		return TLCM_EINVAL;
	pthread_mutex_lock(&o->mu);
	int rc = load(o);
	pq_t *q;
	size_t at;
	if (!rc && !locate(o, id, &q, &at))
		rc = TLCM_ENOENT;
	if (!rc) {
		tlcm_batch_t *b = tlcm_batch_new();
		rc = b ? batch_del_entry(o, b, &pq_at(q, at)->e) : TLCM_ENOMEM;
		if (!rc)
			rc = tlcm_store_write(o->s, b);
		if (!rc)
			forget(o, q, at);
		tlcm_batch_free(b);
	}
	pthread_mutex_unlock(&o->mu);
	return rc;
}

int tlcm_outbox_dead(tlcm_outbox_t *o, const char *id, const char *reason)
{
	if (!o || !id)
		return TLCM_EINVAL;
	pthread_mutex_lock(&o->mu);
	int rc = load(o);
	pq_t *q;
	size_t at;
	if (!rc && !locate(o, id, &q, &at))
		rc = TLCM_ENOENT;
	void *v = NULL;
	size_t vl = 0;
	if (!rc) {
		item_t *it = pq_at(q, at);
		char k[QKEY_MAX];
		rc = tlcm_store_get(o->s, FAMILY, k,
				    qkey(k, it->e.priority, it->e.created_ns,
					 it->e.id),
				    &v, &vl);
		if (rc == TLCM_ENOENT) /* keep what is known about it */
			rc = 0;
	}
	if (!rc)
		rc = kill_entry(o, q, at, reason ? reason : "", v, vl);
	free(v);
	pthread_mutex_unlock(&o->mu);
	return rc;
}

int tlcm_outbox_stats(tlcm_outbox_t *o, tlcm_outbox_stats_t *st)
{
	memset(st, 0, sizeof *st);
	if (!o)
		return TLCM_EINVAL;
	pthread_mutex_lock(&o->mu);
	int rc = load(o);
	if (!rc) {
		st->packages = o->packages;
		st->bytes = o->bytes;
		st->dead = o->dead;
		st->evicted = o->evicted;
		for (int p = 1; p < NPRIO; p++) {
			pq_t *q = &o->q[p];
			if (!q->n)
				continue;
			st->by_priority[p < 8 ? p : 0] += q->n;
			uint64_t t = pq_at(q, 0)->e.created_ns;
			if (!st->oldest_ns || t < st->oldest_ns)
				st->oldest_ns = t;
		}
	}
	pthread_mutex_unlock(&o->mu);
	return rc;
}

typedef struct {
	tlcm_outbox_t *o;
	tlcm_outbox_fn fn;
	void *arg;
} list_t;

static int list_dead(void *arg, const void *key, size_t klen, const void *val,
		     size_t vlen)
{
	list_t *l = arg;
	dead_t d;
	item_t it;
	char reason[REASON_MAX + 1];
	if (vlen < sizeof d)
		goto bad;
	memcpy(&d, val, sizeof d);
	if (d.m.magic != DEAD_MAGIC || d.reason_len > REASON_MAX ||
	    d.reason_len > vlen - sizeof d)
		goto bad;
	d.m.magic = META_MAGIC;
	if (!parse_meta(&d, sizeof d.m, (const char *)key + 2, klen - 2, &it))
		goto bad;
	memcpy(reason, (const char *)val + sizeof d, d.reason_len);
	reason[d.reason_len] = 0;
	return l->fn(l->arg, &it.e, reason);
bad:
	tlcm_error("outbox", "%s: unreadable dead letter %.*s (see tinylcm "
		   "state check)", tlcm_store_path(l->o->s), (int)klen,
		   (const char *)key);
	return 0;
}

int tlcm_outbox_list(tlcm_outbox_t *o, bool dead, tlcm_outbox_fn fn,
		     void *arg)
{
	if (!o || !fn)
		return TLCM_EINVAL;
	if (dead) {
		list_t l = {o, fn, arg};
		return tlcm_store_scan(o->s, DEAD_FAMILY, "h/", 2, list_dead,
				       &l);
	}
	/* a copy, so fn runs without the lock (it may call the outbox) */
	pthread_mutex_lock(&o->mu);
	int rc = load(o);
	size_t n = (size_t)o->packages, k = 0;
	tlcm_outbox_entry_t *all = NULL;
	if (!rc && n && !(all = malloc(n * sizeof *all)))
		rc = TLCM_ENOMEM;
	for (int p = 1; !rc && p < NPRIO; p++)
		for (size_t i = 0; i < o->q[p].n && k < n; i++)
			all[k++] = pq_at(&o->q[p], i)->e;
	pthread_mutex_unlock(&o->mu);
	for (size_t i = 0; !rc && i < k; i++)
		rc = fn(arg, &all[i], NULL);
	free(all);
	return rc;
}

/* ---- check -------------------------------------------------------------- */

typedef struct {
	tlcm_outbox_t *o;
	char *report;
	size_t len, used;
	int problems;
} check_t;

__attribute__((format(printf, 2, 3))) static void problem(check_t *c,
							   const char *fmt,
							   ...)
{
	c->problems++;
	if (c->used + 1 >= c->len)
		return;
	va_list ap;
	va_start(ap, fmt);
	int w = vsnprintf(c->report + c->used, c->len - c->used, fmt, ap);
	va_end(ap);
	if (w > 0)
		c->used += (size_t)w < c->len - c->used ? (size_t)w
							: c->len - c->used - 1;
}

/* A header (i/<id>): readable, and its bytes there, the right size and
 * checksum. */
static int check_meta(void *arg, const void *key, size_t klen,
		      const void *val, size_t vlen)
{
	check_t *c = arg;
	const char *path = tlcm_store_path(c->o->s);
	int idl = (int)(klen - 2);
	const char *id = (const char *)key + 2;
	item_t it;
	if (!parse_meta(val, vlen, id, klen - 2, &it)) {
		problem(c, "%s: outbox package %.*s: unreadable header\n",
			path, idl, id);
		return 0;
	}
	char k[QKEY_MAX];
	void *v;
	size_t vl;
	int g = tlcm_store_get(c->o->s, FAMILY, k,
			       qkey(k, it.e.priority, it.e.created_ns, it.e.id),
			       &v, &vl);
	if (g == TLCM_ENOENT)
		problem(c, "%s: outbox package %s: bytes missing\n", path,
			it.e.id);
	else if (g)
		return g;
	else if (vl != it.e.size || crc_of(v, vl) != it.crc)
		problem(c, "%s: outbox package %s: bytes corrupt (size or "
			"checksum mismatch)\n", path, it.e.id);
	free(v);
	return 0;
}

/* Bytes (q/...): a header that names them. */
static int check_bytes(void *arg, const void *key, size_t klen,
		       const void *val, size_t vlen)
{
	check_t *c = arg;
	const char *path = tlcm_store_path(c->o->s);
	const unsigned char *k = key;
	(void)val;
	(void)vlen;
	if (klen < 12 || klen > QKEY_MAX) {
		problem(c, "%s: outbox: malformed queue key (%zu bytes)\n",
			path, klen);
		return 0;
	}
	char id[TLCM_PKG_ID_LEN + 1], ik[IKEY_MAX];
	memcpy(id, k + 11, klen - 11);
	id[klen - 11] = 0;
	uint64_t created = 0;
	for (int i = 0; i < 8; i++)
		created = created << 8 | k[3 + i];
	void *m;
	size_t ml;
	int g = tlcm_store_get(c->o->s, FAMILY, ik, idkey(ik, 'i', id), &m,
			       &ml);
	item_t it;
	if (g == TLCM_ENOENT)
		problem(c, "%s: outbox package %s: bytes without a header\n",
			path, id);
	else if (g)
		return g;
	else if (parse_meta(m, ml, id, strlen(id), &it) &&
		 (it.e.priority != k[2] || it.e.created_ns != created))
		problem(c, "%s: outbox package %s: header and queue key "
			"disagree\n", path, id);
	free(m);
	return 0;
}

static int check_dead(void *arg, const void *key, size_t klen,
		      const void *val, size_t vlen)
{
	check_t *c = arg;
	const char *path = tlcm_store_path(c->o->s);
	int idl = (int)(klen - 2);
	const char *id = (const char *)key + 2;
	dead_t d;
	if (vlen >= sizeof d)
		memcpy(&d, val, sizeof d);
	if (vlen < sizeof d || d.m.magic != DEAD_MAGIC ||
	    d.reason_len > vlen - sizeof d || klen - 2 > TLCM_PKG_ID_LEN) {
		problem(c, "%s: dead letter %.*s: unreadable header\n", path,
			idl, id);
		return 0;
	}
	char k[IKEY_MAX];
	void *v;
	size_t vl;
	memcpy(k, "p/", 2);
	memcpy(k + 2, id, klen - 2);
	int g = tlcm_store_get(c->o->s, DEAD_FAMILY, k, klen, &v, &vl);
	if (g == TLCM_ENOENT)
		problem(c, "%s: dead letter %.*s: bytes missing\n", path, idl,
			id);
	else if (g)
		return g;
	else if (vl != d.m.size || crc_of(v, vl) != d.m.crc)
		problem(c, "%s: dead letter %.*s: bytes corrupt (size or "
			"checksum mismatch)\n", path, idl, id);
	free(v);
	return 0;
}

int tlcm_outbox_check(tlcm_outbox_t *o, char *report, size_t len)
{
	if (!o || !report || !len)
		return TLCM_EINVAL;
	size_t used = strnlen(report, len);
	check_t c = {o, report, len, used == len ? len - 1 : used, 0};
	/* under the lock: no change of ours lands between two reads */
	pthread_mutex_lock(&o->mu);
	int rc = tlcm_store_scan(o->s, FAMILY, "i/", 2, check_meta, &c);
	if (!rc)
		rc = tlcm_store_scan(o->s, FAMILY, "q/", 2, check_bytes, &c);
	if (!rc)
		rc = tlcm_store_scan(o->s, DEAD_FAMILY, "h/", 2, check_dead,
				     &c);
	pthread_mutex_unlock(&o->mu);
	return rc ? rc : c.problems;
}
