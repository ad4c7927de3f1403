/* txq.c — the satellite's durable batch queue (see txq.h): an in-memory
 * deque of the frames mirrored one-to-one by q/<seq> keys in the store.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/error.h"
#include "nodes/link/be64.h"
#include "nodes/link/deadline.h"
#include "nodes/link/txq.h"

typedef struct {
	uint64_t seq;
	size_t len;
	void *frame;
} entry_t;

struct link_txq {
	tlcm_store_t *s;
	char family[96];
	link_txq_limits_t lim;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	entry_t *e;        /* ring of entries */
	size_t cap, head, n;
	uint64_t bytes, last, acked, dropped, trace, puts, refused;
	bool woken;
};

static entry_t *at(link_txq_t *q, size_t i)
{
	return &q->e[(q->head + i) % q->cap];
}

static int push(link_txq_t *q, uint64_t seq, void *frame, size_t len)
{
	if (q->n == q->cap) {
		size_t nc = q->cap ? q->cap * 2 : 64;
		entry_t *ne = malloc(nc * sizeof *ne);
		if (!ne)
			return TLCM_ENOMEM;
		for (size_t i = 0; i < q->n; i++)
			ne[i] = *at(q, i);
		free(q->e);
		q->e = ne;
		q->cap = nc;
		q->head = 0;
	}
	entry_t *x = &q->e[(q->head + q->n) % q->cap];
	x->seq = seq;
	x->len = len;
	x->frame = frame;
	q->n++;
	q->bytes += len;
	return 0;
}

static void pop(link_txq_t *q)
{
	entry_t *x = at(q, 0);
	q->bytes -= x->len;
	free(x->frame);
	q->head = (q->head + 1) % q->cap;
	q->n--;
}

static int load_meta(link_txq_t *q, const char *k, uint64_t *v)
{
	void *val;
	size_t vl;
	int rc = tlcm_store_get(q->s, q->family, k, strlen(k), &val, &vl);
	if (rc == TLCM_ENOENT) {
		*v = 0;
		return 0;
	}
	if (rc)
		return rc;
	*v = vl == 8 ? get_be64(val) : 0;
	free(val);
	return vl == 8 ? 0 : TLCM_ECORRUPT;
}

static int load_one(void *arg, const void *key, size_t klen, const void *val,
		    size_t vlen)
{
	link_txq_t *q = arg;
	if (klen != 10)
		return TLCM_ECORRUPT;
	void *f = malloc(vlen ? vlen : 1);
	if (!f)
		return TLCM_ENOMEM;
	memcpy(f, val, vlen);
	int rc = push(q, get_be64((const uint8_t *)key + 2), f, vlen);
	if (rc)
		free(f);
	return rc;
}

int link_txq_open(link_txq_t **out, tlcm_store_t *s, const char *family,
		  const link_txq_limits_t *l, char *why, size_t whylen)
{
	link_txq_t *q = calloc(1, sizeof *q);
	if (!q)
		return TLCM_ENOMEM;
	q->s = s;
	snprintf(q->family, sizeof q->family, "%s", family);
	q->lim = *l;
	pthread_mutex_init(&q->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cv, &ca);
	pthread_condattr_destroy(&ca);
	int rc = load_meta(q, "m/last", &q->last);
	if (!rc)
		rc = load_meta(q, "m/acked", &q->acked);
	if (!rc)
		rc = load_meta(q, "m/trace", &q->trace);
	if (!rc)
		rc = load_meta(q, "m/dropped", &q->dropped);
	if (!rc)
		rc = tlcm_store_scan(s, family, "q/", 2, load_one, q);
	if (rc) {
		snprintf(why, whylen, "link queue in family %s: %s", family,
			 tlcm_strerror(rc));
		link_txq_free(q);
		return rc;
	}
	if (q->n && at(q, q->n - 1)->seq > q->last)
		q->last = at(q, q->n - 1)->seq;
	if (q->acked > q->last)
		q->last = q->acked;
	*out = q;
	return 0;
}

void link_txq_free(link_txq_t *q)
{
	if (!q)
		return;
	while (q->n)
		pop(q);
	free(q->e);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	free(q);
}

uint64_t link_txq_next_seq(link_txq_t *q)
{
	pthread_mutex_lock(&q->mu);
	uint64_t v = q->last + 1;
	pthread_mutex_unlock(&q->mu);
	return v;
}

static bool over(const link_txq_t *q, uint64_t n, uint64_t bytes)
{
	return (q->lim.max_batches && n > q->lim.max_batches) ||
	       (q->lim.max_bytes && bytes > q->lim.max_bytes);
}

static int put_meta(link_txq_t *q, tlcm_batch_t *b, const char *k,
		    uint64_t v)
{
	uint8_t x[8];
	be64(x, v);
	return tlcm_batch_put(q->s, b, q->family, k, strlen(k), x, 8);
}

int link_txq_put(link_txq_t *q, uint64_t seq, const void *frame, size_t len,
		 uint64_t trace, uint64_t *ndropped)
{
	*ndropped = 0;
	if (q->lim.max_bytes && len > q->lim.max_bytes)
		return TLCM_ETOOBIG;
	void *copy = malloc(len ? len : 1);
	tlcm_batch_t *b = tlcm_batch_new();
	if (!copy || !b) {
		free(copy);
		tlcm_batch_free(b);
		return TLCM_ENOMEM;
	}
	memcpy(copy, frame, len);
	pthread_mutex_lock(&q->mu);
	int rc = 0;
	size_t drop = 0;
	if (seq != q->last + 1) {
		rc = TLCM_EINVAL;
		goto out;
	}
	uint64_t n = q->n + 1, bytes = q->bytes + len;
	while (over(q, n, bytes) && drop < q->n) {
		if (q->lim.block) {
			q->refused++;
			rc = TLCM_EAGAIN;
			goto out;
		}
		bytes -= at(q, drop)->len;
		n--;
		drop++;
	}
	uint8_t key[10] = {'q', '/'};
	for (size_t i = 0; i < drop && !rc; i++) {
		be64(key + 2, at(q, i)->seq);
		rc = tlcm_batch_delete(q->s, b, q->family, key, 10);
	}
	be64(key + 2, seq);
	if (!rc)
		rc = tlcm_batch_put(q->s, b, q->family, key, 10, frame, len);
	if (!rc)
		rc = put_meta(q, b, "m/last", seq);
	if (!rc && trace > q->trace)
		rc = put_meta(q, b, "m/trace", trace);
	if (!rc && drop)
		rc = put_meta(q, b, "m/dropped", q->dropped + drop);
	if (!rc)
		rc = tlcm_store_write(q->s, b);
	if (rc)
		goto out;
	for (size_t i = 0; i < drop; i++)
		pop(q);
	q->dropped += drop;
	*ndropped = drop;
	q->last = seq;
	if (trace > q->trace)
		q->trace = trace;
	q->puts++;
	rc = push(q, seq, copy, len);
	copy = rc ? copy : NULL;
	pthread_cond_broadcast(&q->cv);
out:
	pthread_mutex_unlock(&q->mu);
	free(copy);
	tlcm_batch_free(b);
	return rc;
}

int link_txq_ack(link_txq_t *q, uint64_t seq)
{
	pthread_mutex_lock(&q->mu);
	if (seq > q->last)
		seq = q->last; /* a core that claims more: not ours to drop */
	if (seq <= q->acked) {
		pthread_mutex_unlock(&q->mu);
		return 0;
	}
	tlcm_batch_t *b = tlcm_batch_new();
	int rc = b ? 0 : TLCM_ENOMEM;
	size_t k = 0;
	uint8_t key[10] = {'q', '/'};
	for (; !rc && k < q->n && at(q, k)->seq <= seq; k++) {
		be64(key + 2, at(q, k)->seq);
		rc = tlcm_batch_delete(q->s, b, q->family, key, 10);
	}
	if (!rc)
		rc = put_meta(q, b, "m/acked", seq);
	if (!rc)
		rc = tlcm_store_write(q->s, b);
	if (!rc) {
		while (k--)
			pop(q);
		q->acked = seq;
		pthread_cond_broadcast(&q->cv);
	}
	pthread_mutex_unlock(&q->mu);
	tlcm_batch_free(b);
	return rc;
}

int link_txq_next(link_txq_t *q, uint64_t after, uint64_t wait_ns,
		  uint64_t *seq, void **frame, size_t *len)
{
	struct timespec ts;
	link_deadline(CLOCK_MONOTONIC, wait_ns, &ts);
	pthread_mutex_lock(&q->mu);
	for (;;) {
		/* entries are in seq order: find the first > after */
		size_t lo = 0, hi = q->n;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (at(q, mid)->seq <= after)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < q->n) {
			entry_t *x = at(q, lo);
			void *f = malloc(x->len ? x->len : 1);
			int rc = f ? 0 : TLCM_ENOMEM;
			if (f) {
				memcpy(f, x->frame, x->len);
				*seq = x->seq;
				*frame = f;
				*len = x->len;
			}
			pthread_mutex_unlock(&q->mu);
			return rc;
		}
		if (!wait_ns || q->woken ||
		    pthread_cond_timedwait(&q->cv, &q->mu, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&q->mu);
	return TLCM_ENOENT;
}

bool link_txq_wait_room(link_txq_t *q, size_t len, uint64_t wait_ns)
{
	struct timespec ts;
	link_deadline(CLOCK_MONOTONIC, wait_ns, &ts);
	pthread_mutex_lock(&q->mu);
	bool ok;
	for (;;) {
		ok = len ? !over(q, q->n + 1, q->bytes + len) : q->n == 0;
		if (ok || q->woken ||
		    pthread_cond_timedwait(&q->cv, &q->mu, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&q->mu);
	return ok;
}

void link_txq_wake(link_txq_t *q)
{
	pthread_mutex_lock(&q->mu);
	q->woken = true;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

void link_txq_stats(link_txq_t *q, link_txq_stats_t *st)
{
	pthread_mutex_lock(&q->mu);
	st->depth = q->n;
	st->bytes = q->bytes;
	st->last_seq = q->last;
	st->acked = q->acked;
	st->dropped = q->dropped;
	st->trace = q->trace;
	st->puts = q->puts;
	st->refused = q->refused;
	pthread_mutex_unlock(&q->mu);
}
