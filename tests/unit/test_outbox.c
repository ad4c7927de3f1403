/* test_outbox.c — the durable prioritised outbox (engine/outbox.c): order,
 * idempotent puts, done and dead letters, retention by bytes and by age
 * (lowest-priority-oldest first, reported), refusals, state across a
 * reopen and read-only, corruption found by check and by peek, two
 * producers and a consumer at once (each package delivered exactly once),
 * and kill -9 of a synced writer at random moments (TLCM_LONG_ROUNDS=N
 * for more than the default 20 rounds).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/log.h"
#include "engine/outbox.h"
#include "engine/store.h"
#include "tests/tlcm_test.h"

static char root[256];

static tlcm_store_t *open_store(const char *name, tlcm_sync_t sync,
				bool read_only)
{
	char p[512], why[600];
	snprintf(p, sizeof p, "%s/%s", root, name);
	tlcm_store_opts_t o = {.sync = sync, .read_only = read_only};
	tlcm_store_t *s = NULL;
	int rc = tlcm_store_open(&s, p, &o, why, sizeof why);
	if (rc)
		fprintf(stderr, "open %s: %s\n", p, why);
	CHECK_INT(rc, 0);
	return s;
}

static void mkid(char *id, uint64_t seq)
{
	snprintf(id, TLCM_PKG_ID_LEN + 1, "01900000-0000-7000-8000-%012llx",
		 (unsigned long long)seq);
}

static uint64_t seq_of(const char *id)
{
	return strtoull(id + 24, NULL, 16);
}

/* Package bytes that say which package they are. */
static void fill(unsigned char *p, size_t len, uint64_t seq)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(seq * 131 + i * 7);
	if (len >= 8)
		memcpy(p, &seq, 8);
}

static bool intact(const unsigned char *p, size_t len, uint64_t seq)
{
	unsigned char *want = malloc(len ? len : 1);
	fill(want, len, seq);
	bool ok = !memcmp(want, p, len);
	free(want);
	return ok;
}

static int put(tlcm_outbox_t *o, const char *id, uint8_t prio,
	       uint64_t created, size_t len, uint64_t seq,
	       tlcm_outbox_entry_t *ev, size_t max, size_t *nev)
{
	tlcm_outbox_entry_t e = {.priority = prio, .created_ns = created};
	snprintf(e.id, sizeof e.id, "%s", id);
	snprintf(e.kind, sizeof e.kind, "kind%u", prio);
	unsigned char *b = malloc(len ? len : 1);
	fill(b, len, seq);
	int rc = tlcm_outbox_put(o, &e, b, len, ev, max, nev);
	free(b);
	return rc;
}

/* Peek the next (all priorities), check its bytes, mark it done. */
static int take(tlcm_outbox_t *o, char *id, uint8_t *prio)
{
	tlcm_outbox_entry_t e;
	void *pkg;
	size_t len;
	int rc = tlcm_outbox_peek(o, 255, NULL, 0, &e, &pkg, &len);
	if (rc)
		return rc;
	CHECK_UINT(len, e.size);
	snprintf(id, TLCM_PKG_ID_LEN + 1, "%s", e.id);
	if (prio)
		*prio = e.priority;
	free(pkg);
	CHECK_INT(tlcm_outbox_done(o, e.id), 0);
	return 0;
}

typedef struct {
	char (*got)[TLCM_PKG_ID_LEN + 1];
	int n;
	tlcm_outbox_t *o;
} lst_t;

/* A list callback that calls the outbox (list runs it without the lock). */
static int list_calls_back(void *arg, const tlcm_outbox_entry_t *x,
			   const char *r)
{
	lst_t *l = arg;
	tlcm_outbox_stats_t t;
	CHECK(r == NULL);
	CHECK_INT(tlcm_outbox_stats(l->o, &t), 0);
	if (l->n < 6)
		snprintf(l->got[l->n], sizeof l->got[0], "%s", x->id);
	l->n++;
	return 0;
}

static void order(void)
{
	tlcm_store_t *s = open_store("order", TLCM_SYNC_NEVER, false);
	tlcm_outbox_t *o = s ? tlcm_store_outbox(s) : NULL;
	CHECK(o != NULL);
	if (!o)
		return;
	CHECK(tlcm_store_outbox(s) == o);
	CHECK_INT(put(o, "id-a", 2, 300, 10, 1, NULL, 0, NULL), 0);
	CHECK_INT(put(o, "id-b", 1, 500, 20, 2, NULL, 0, NULL), 0);
	CHECK_INT(put(o, "id-c", 1, 100, 30, 3, NULL, 0, NULL), 0);
	CHECK_INT(put(o, "id-d", 3, 50, 40, 4, NULL, 0, NULL), 0);
	CHECK_INT(put(o, "id-0", 2, 300, 50, 5, NULL, 0, NULL), 0);
	CHECK_INT(put(o, "id-z", 200, 1, 60, 6, NULL, 0, NULL), 0);

	tlcm_outbox_stats_t st;
	CHECK_INT(tlcm_outbox_stats(o, &st), 0);
	CHECK_UINT(st.packages, 6);
	CHECK_UINT(st.bytes, 210);
	CHECK_UINT(st.by_priority[1], 2);
	CHECK_UINT(st.by_priority[2], 2);
	CHECK_UINT(st.by_priority[3], 1);
	CHECK_UINT(st.by_priority[0], 1);
	CHECK_UINT(st.oldest_ns, 1);

	/* max_priority and skip */
	tlcm_outbox_entry_t e;
	void *pkg;
	size_t len;
	const char skip[2][TLCM_PKG_ID_LEN + 1] = {"id-c", "id-b"};
	CHECK_INT(tlcm_outbox_peek(o, 1, skip, 2, &e, &pkg, &len),
		  TLCM_ENOENT);
	CHECK(pkg == NULL);
	CHECK_INT(tlcm_outbox_peek(o, 2, skip, 2, &e, &pkg, &len), 0);
	CHECK_STR(e.id, "id-0");
	CHECK_STR(e.kind, "kind2");
	CHECK_UINT(e.created_ns, 300);
	CHECK_UINT(len, 50);
	CHECK(pkg && intact(pkg, len, 5));
	free(pkg);
	CHECK_INT(tlcm_outbox_peek(o, 0, NULL, 0, &e, &pkg, &len),
		  TLCM_ENOENT);

	/* list is in order, without the lock (the callback may peek) */
	const char *want[] = {"id-c", "id-b", "id-0", "id-a", "id-d", "id-z"};
	char got[6][TLCM_PKG_ID_LEN + 1];
	lst_t l = {got, 0, o};
	int lrc = tlcm_outbox_list(o, false, list_calls_back, &l);
	CHECK_INT(lrc, 0);
	CHECK_INT(l.n, 6);
	for (int i = 0; i < 6 && i < l.n; i++)
		CHECK_STR(got[i], want[i]);

	/* drained in order: priority, age, id */
	char id[TLCM_PKG_ID_LEN + 1];
	for (int i = 0; i < 6; i++) {
		CHECK_INT(take(o, id, NULL), 0);
		CHECK_STR(id, want[i]);
	}
	CHECK_INT(take(o, id, NULL), TLCM_ENOENT);
	CHECK_INT(tlcm_outbox_stats(o, &st), 0);
	CHECK_UINT(st.packages, 0);
	CHECK_UINT(st.bytes, 0);
	CHECK_UINT(st.oldest_ns, 0);

	/* what is refused */
	CHECK_INT(put(o, "", 1, 0, 1, 0, NULL, 0, NULL), TLCM_EINVAL);
	CHECK_INT(put(o, "a/b", 1, 0, 1, 0, NULL, 0, NULL), TLCM_EINVAL);
	tlcm_outbox_entry_t longid = {.priority = 1};
	memset(longid.id, 'a', sizeof longid.id); /* 37, no NUL */
	CHECK_INT(tlcm_outbox_put(o, &longid, "x", 1, NULL, 0, NULL),
		  TLCM_EINVAL);
	tlcm_outbox_entry_t longkind = {.id = "k", .priority = 1};
	memset(longkind.kind, 'k', sizeof longkind.kind);
	CHECK_INT(tlcm_outbox_put(o, &longkind, "x", 1, NULL, 0, NULL),
		  TLCM_EINVAL);
	CHECK_INT(put(o, "0123456789012345678901234567890123456", 1, 0, 1, 0,
		      NULL, 0, NULL), 0); /* cut to 36 by the helper: fine */
	CHECK_INT(tlcm_outbox_done(o, "012345678901234567890123456789012345"),
		  0);
	CHECK_INT(put(o, "ok", 0, 0, 1, 0, NULL, 0, NULL), TLCM_EINVAL);
	CHECK_INT(tlcm_outbox_put(o, &(tlcm_outbox_entry_t){.id = "x",
			.priority = 1}, NULL, 5, NULL, 0, NULL), TLCM_EINVAL);
	/* an empty package and created_ns 0 (= now) are fine */
	uint64_t t0 = (uint64_t)time(NULL) * 1000000000u;
	CHECK_INT(tlcm_outbox_put(o, &(tlcm_outbox_entry_t){.id = "empty",
			.priority = 1}, NULL, 0, NULL, 0, NULL), 0);
	CHECK_INT(tlcm_outbox_peek(o, 1, NULL, 0, &e, &pkg, &len), 0);
	CHECK_UINT(len, 0);
	CHECK(e.created_ns >= t0);
	free(pkg);
	CHECK_INT(tlcm_outbox_done(o, "empty"), 0);
	tlcm_store_close(s);
}

typedef struct {
	int n;
	char id[2][40];
	char reason[2][64];
	size_t rlen[2];
	size_t size[2];
} dl_t;

static int list_dead(void *arg, const tlcm_outbox_entry_t *x, const char *r)
{
	dl_t *d = arg;
	if (d->n < 2) {
		snprintf(d->id[d->n], 40, "%s", x->id);
		snprintf(d->reason[d->n], 64, "%s", r);
		d->rlen[d->n] = strlen(r);
		d->size[d->n] = x->size;
	}
	d->n++;
	return 0;
}

static void idempotent_done_dead(void)
{
	tlcm_store_t *s = open_store("idem", TLCM_SYNC_ALWAYS, false);
	tlcm_outbox_t *o = s ? tlcm_store_outbox(s) : NULL;
	if (!o)
		return;
	CHECK_INT(put(o, "p1", 1, 10, 100, 1, NULL, 0, NULL), 0);
	/* a re-sent put, even with other bytes or header: a no-op */
	CHECK_INT(put(o, "p1", 1, 10, 100, 1, NULL, 0, NULL), 0);
	CHECK_INT(put(o, "p1", 3, 99, 7, 9, NULL, 0, NULL), 0);
	tlcm_outbox_stats_t st;
	CHECK_INT(tlcm_outbox_stats(o, &st), 0);
	CHECK_UINT(st.packages, 1);
	CHECK_UINT(st.bytes, 100);
	tlcm_outbox_entry_t e;
	void *pkg;
	size_t len;
	CHECK_INT(tlcm_outbox_peek(o, 9, NULL, 0, &e, &pkg, &len), 0);
	CHECK_UINT(e.priority, 1);
	CHECK(intact(pkg, len, 1));
	free(pkg);

	CHECK_INT(put(o, "p2", 2, 20, 200, 2, NULL, 0, NULL), 0);
	CHECK_INT(put(o, "p3", 2, 30, 300, 3, NULL, 0, NULL), 0);
	CHECK_INT(tlcm_outbox_done(o, "p1"), 0);
	CHECK_INT(tlcm_outbox_done(o, "p1"), TLCM_ENOENT);
	CHECK_INT(tlcm_outbox_done(o, "nope"), TLCM_ENOENT);
	CHECK_INT(tlcm_outbox_dead(o, "nope", "x"), TLCM_ENOENT);
	CHECK_INT(tlcm_outbox_dead(o, "p2", "400 Bad Request: {\"error\": "
				   "\"verifier\", \"detail\": \"no id\"}"), 0);
	CHECK_INT(tlcm_outbox_dead(o, "p2", "again"), TLCM_ENOENT);
	CHECK_INT(tlcm_outbox_done(o, "p2"), TLCM_ENOENT);
	CHECK_INT(tlcm_outbox_stats(o, &st), 0);
	CHECK_UINT(st.packages, 1);
	CHECK_UINT(st.bytes, 300);
	CHECK_UINT(st.dead, 1);
	CHECK_INT(tlcm_outbox_peek(o, 9, NULL, 0, &e, &pkg, &len), 0);
	CHECK_STR(e.id, "p3");
	free(pkg);
	/* put again after it died, and dead again: one dead letter */
	CHECK_INT(put(o, "p2", 2, 20, 200, 2, NULL, 0, NULL), 0);
	CHECK_INT(tlcm_outbox_dead(o, "p2", "413 Payload Too Large"), 0);
	CHECK_INT(tlcm_outbox_stats(o, &st), 0);
	CHECK_UINT(st.dead, 1);
	/* a long reason is kept up to 4 KiB */
	char *lr = malloc(10000);
	memset(lr, 'r', 9999);
	lr[9999] = 0;
	CHECK_INT(tlcm_outbox_dead(o, "p3", lr), 0);
	free(lr);
	dl_t d = {0};
	int rc = tlcm_outbox_list(o, true, list_dead, &d);
	CHECK_INT(rc, 0);
	CHECK_INT(d.n, 2);
	CHECK_STR(d.id[0], "p2");
	CHECK_STR(d.reason[0], "413 Payload Too Large");
	CHECK_UINT(d.size[0], 200);
	CHECK_STR(d.id[1], "p3");
	CHECK_UINT(d.rlen[1], 4096);
	CHECK_UINT(d.size[1], 300);
	/* the dead letter keeps the bytes */
	void *v;
	size_t vl;
	CHECK_INT(tlcm_store_get(s, "deadletter", "p/p2", 4, &v, &vl), 0);
	CHECK(vl == 200 && intact(v, vl, 2));
	free(v);
	CHECK_INT(tlcm_outbox_peek(o, 255, NULL, 0, &e, &pkg, &len),
		  TLCM_ENOENT);
	char rep[2048] = "";
	CHECK_INT(tlcm_store_check(s, rep, sizeof rep), 0);
	tlcm_store_close(s);
}

static bool same_ids(const tlcm_outbox_entry_t *ev, size_t n,
		     const char *const *want)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(ev[i].id, want[i])) {
			fprintf(stderr, "evicted[%zu] = %s, wanted %s\n", i,
				ev[i].id, want[i]);
			return false;
		}
	return true;
}

static int count_keys(void *arg, const void *k, size_t kl, const void *v,
		      size_t vl)
{
	(void)k;
	(void)kl;
	(void)v;
	(void)vl;
	(*(int *)arg)++;
	return 0;
}

static void retention_bytes(void)
{
	tlcm_store_t *s = open_store("bytes", TLCM_SYNC_BATCH, false);
	tlcm_outbox_t *o = s ? tlcm_store_outbox(s) : NULL;
	if (!o)
		return;
	tlcm_outbox_set_limits(o, &(tlcm_outbox_limits_t){.max_bytes = 10000});
	tlcm_outbox_entry_t ev[8];
	size_t nev = 99;
	/* p4 t1..3, p3 t4..6, p1 t7..10: exactly full */
	static const uint8_t prio[] = {4, 4, 4, 3, 3, 3, 1, 1, 1, 1};
	for (int t = 1; t <= 10; t++) {
		char id[8];
		snprintf(id, sizeof id, "t%02d", t);
		CHECK_INT(put(o, id, prio[t - 1], (uint64_t)t, 1000,
			      (uint64_t)t, ev, 8, &nev), 0);
		CHECK_UINT(nev, 0);
	}
	/* a p2 evicts the oldest p4 */
	CHECK_INT(put(o, "t11", 2, 11, 1000, 11, ev, 8, &nev), 0);
	CHECK_UINT(nev, 1);
	CHECK(same_ids(ev, 1, (const char *[]){"t01"}));
	CHECK_UINT(ev[0].priority, 4);
	CHECK_UINT(ev[0].size, 1000);
	CHECK_STR(ev[0].kind, "kind4");
	/* 2500 bytes: the other p4s, then the oldest p3 */
	CHECK_INT(put(o, "t12", 2, 12, 2500, 12, ev, 8, &nev), 0);
	CHECK_UINT(nev, 3);
	CHECK(same_ids(ev, 3, (const char *[]){"t02", "t03", "t04"}));
	/* room for one report only: the count still says 3 */
	memset(ev, 0, sizeof ev);
	CHECK_INT(put(o, "t13", 1, 13, 3000, 13, ev, 1, &nev), 0);
	CHECK_UINT(nev, 3);
	CHECK_STR(ev[0].id, "t05");
	CHECK_STR(ev[1].id, ""); /* not written past max_evicted */
	tlcm_outbox_stats_t st;
	CHECK_INT(tlcm_outbox_stats(o, &st), 0);
	CHECK_UINT(st.evicted, 7);
	CHECK_UINT(st.bytes, 9500);
	CHECK_UINT(st.packages, 6);
	/* nothing less important left to evict: refused, nothing changed */
	CHECK_INT(put(o, "t14", 3, 14, 1000, 14, ev, 8, &nev), TLCM_ENOSPC);
	CHECK_UINT(nev, 0);
	/* same priority, but older than what would go: refused too */
	CHECK_INT(put(o, "t00", 2, 5, 1000, 0, ev, 8, &nev), TLCM_ENOSPC);
	/* same priority and newer: the older one of it goes */
	CHECK_INT(put(o, "t15", 2, 15, 1000, 15, ev, 8, &nev), 0);
	CHECK_UINT(nev, 1);
	CHECK_STR(ev[0].id, "t12");
	/* bigger than the whole outbox */
	CHECK_INT(put(o, "big", 1, 16, 10001, 16, ev, 8, &nev), TLCM_ETOOBIG);
	CHECK_INT(put(o, "fits", 1, 16, 10000, 16, NULL, 0, NULL), 0);
	CHECK_INT(tlcm_outbox_stats(o, &st), 0);
	CHECK_UINT(st.packages, 1);
	CHECK_UINT(st.bytes, 10000);
	CHECK_UINT(st.evicted, 7 + 1 + 6);
	/* evicted packages are gone from the store as well */
	char rep[2048] = "";
	CHECK_INT(tlcm_store_check(s, rep, sizeof rep), 0);
	int n = 0;
	CHECK_INT(tlcm_store_scan(s, "outbox", "q/", 2, count_keys, &n), 0);
	CHECK_INT(n, 1);
	/* without limits again: anything fits */
	tlcm_outbox_set_limits(o, NULL);
	CHECK_INT(put(o, "more", 4, 17, 20000, 17, ev, 8, &nev), 0);
	CHECK_UINT(nev, 0);
	tlcm_store_close(s);
}

static void retention_age(void)
{
	tlcm_store_t *s = open_store("age", TLCM_SYNC_ALWAYS, false);
	tlcm_outbox_t *o = s ? tlcm_store_outbox(s) : NULL;
	if (!o)
		return;
	const uint64_t H = 3600ull * 1000000000u;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	CHECK_INT(put(o, "A", 3, now - 2 * H, 10, 1, NULL, 0, NULL), 0);
	CHECK_INT(put(o, "B", 1, now - 2 * H, 10, 2, NULL, 0, NULL), 0);
	CHECK_INT(put(o, "C", 3, now - H / 2, 10, 3, NULL, 0, NULL), 0);
	CHECK_INT(put(o, "D", 2, now - 3 * H / 2, 10, 4, NULL, 0, NULL), 0);
	CHECK_INT(put(o, "E", 3, now - 3 * H, 10, 5, NULL, 0, NULL), 0);
	tlcm_outbox_set_limits(o, &(tlcm_outbox_limits_t){.max_age_ns = H});
	tlcm_outbox_entry_t ev[8];
	size_t nev = 0;
	CHECK_INT(tlcm_outbox_expire(o, 0, ev, 8, &nev), 0);
	CHECK_UINT(nev, 4);
	CHECK(same_ids(ev, 4, (const char *[]){"E", "A", "D", "B"}));
	CHECK_INT(tlcm_outbox_expire(o, 0, ev, 8, &nev), 0);
	CHECK_UINT(nev, 0);
	/* a put ages the others out in its batch (not itself) */
	CHECK_INT(put(o, "F", 1, now - 5 * H, 10, 6, ev, 8, &nev), 0);
	CHECK_UINT(nev, 0);
	CHECK_INT(put(o, "G", 4, 0, 10, 7, ev, 8, &nev), 0);
	CHECK_UINT(nev, 1);
	CHECK_STR(ev[0].id, "F");
	/* a later now: C goes */
	CHECK_INT(tlcm_outbox_expire(o, now + H, ev, 8, &nev), 0);
	CHECK_UINT(nev, 1);
	CHECK_STR(ev[0].id, "C");
	tlcm_outbox_stats_t st;
	CHECK_INT(tlcm_outbox_stats(o, &st), 0);
	CHECK_UINT(st.packages, 1);
	CHECK_UINT(st.evicted, 6);
	tlcm_store_close(s);
}

typedef struct {
	int n;
	char ids[64][TLCM_PKG_ID_LEN + 1];
} ids_t;

static int collect(void *arg, const tlcm_outbox_entry_t *e, const char *r)
{
	ids_t *l = arg;
	(void)r;
	if (l->n < 64)
		snprintf(l->ids[l->n], sizeof l->ids[0], "%s", e->id);
	l->n++;
	return 0;
}

/* Everything survives a close: queue, order, dead letters, the evicted
 * count; a read-only store reads it all and changes nothing. */
static void reopen(void)
{
	tlcm_store_t *s = open_store("reopen", TLCM_SYNC_BATCH, false);
	tlcm_outbox_t *o = s ? tlcm_store_outbox(s) : NULL;
	if (!o)
		return;
	tlcm_outbox_set_limits(o, &(tlcm_outbox_limits_t){.max_bytes = 5000});
	char id[TLCM_PKG_ID_LEN + 1];
	for (uint64_t i = 0; i < 40; i++) {
		mkid(id, i);
		/* created out of order, ids from several priorities */
		CHECK_INT(put(o, id, (uint8_t)(1 + i % 5), 1000 - i * 7 % 13,
			      100, i, NULL, 0, NULL), 0);
	}
	mkid(id, 3);
	CHECK_INT(tlcm_outbox_dead(o, id, "400 no"), 0);
	mkid(id, 5);
	CHECK_INT(tlcm_outbox_done(o, id), 0);
	tlcm_outbox_stats_t before, after;
	CHECK_INT(tlcm_outbox_stats(o, &before), 0);
	CHECK_UINT(before.evicted, 0);
	ids_t l1 = {0}, l2 = {0}, l3 = {0};
	CHECK_INT(tlcm_outbox_list(o, false, collect, &l1), 0);
	tlcm_outbox_set_limits(o, &(tlcm_outbox_limits_t){.max_bytes = 3000});
	mkid(id, 100);
	size_t nev;
	CHECK_INT(put(o, id, 1, 2000, 100, 100, NULL, 0, &nev), 0);
	CHECK_UINT(nev, 9); /* 38 queued, 29 stay beside it */
	CHECK_INT(tlcm_outbox_stats(o, &before), 0);
	l1.n = 0;
	CHECK_INT(tlcm_outbox_list(o, false, collect, &l1), 0);
	tlcm_store_close(s);

	/* read-only: all there, no change possible */
	s = open_store("reopen", TLCM_SYNC_ALWAYS, true);
	o = s ? tlcm_store_outbox(s) : NULL;
	if (!o)
		return;
	CHECK_INT(tlcm_outbox_stats(o, &after), 0);
	CHECK(!memcmp(&before, &after, sizeof before));
	CHECK_INT(put(o, "x", 1, 1, 1, 1, NULL, 0, NULL), TLCM_EPERM);
	CHECK_INT(tlcm_outbox_done(o, l1.ids[0]), TLCM_EPERM);
	CHECK_INT(tlcm_outbox_dead(o, l1.ids[0], "no"), TLCM_EPERM);
	tlcm_outbox_set_limits(o, &(tlcm_outbox_limits_t){.max_age_ns = 1});
	size_t nex = 99;
	CHECK_INT(tlcm_outbox_expire(o, 0, NULL, 0, &nex), TLCM_EPERM);
	CHECK_UINT(nex, 0);
	CHECK_INT(tlcm_outbox_stats(o, &after), 0);
	CHECK(!memcmp(&before, &after, sizeof before));
	char rep[2048] = "";
	CHECK_INT(tlcm_store_check(s, rep, sizeof rep), 0);
	tlcm_store_close(s);

	s = open_store("reopen", TLCM_SYNC_ALWAYS, false);
	o = s ? tlcm_store_outbox(s) : NULL;
	if (!o)
		return;
	CHECK_INT(tlcm_outbox_stats(o, &after), 0);
	CHECK(!memcmp(&before, &after, sizeof before));
	CHECK_UINT(after.packages, 30);
	CHECK_UINT(after.bytes, 3000);
	CHECK_UINT(after.dead, 1);
	CHECK_UINT(after.evicted, 9);
	CHECK_INT(tlcm_outbox_list(o, false, collect, &l2), 0);
	CHECK_INT(l2.n, l1.n);
	for (int i = 0; i < l1.n && i < l2.n && i < 64; i++)
		CHECK_STR(l2.ids[i], l1.ids[i]);
	CHECK_INT(tlcm_outbox_list(o, true, collect, &l3), 0);
	CHECK_INT(l3.n, 1);
	mkid(id, 3);
	CHECK_STR(l3.ids[0], id);
	/* the index is live: idempotent put, drain in the listed order */
	CHECK_INT(put(o, l1.ids[4], 1, 1, 100, 1, NULL, 0, &nev), 0);
	CHECK_INT(tlcm_outbox_stats(o, &after), 0);
	CHECK_UINT(after.packages, 30);
	for (int i = 0; i < l1.n && i < 64; i++) {
		CHECK_INT(take(o, id, NULL), 0);
		CHECK_STR(id, l1.ids[i]);
	}
	CHECK_INT(take(o, id, NULL), TLCM_ENOENT);
	tlcm_store_close(s);
}

/* Damage a package's bytes behind the outbox's back: check reports it,
 * peek moves it to the dead letters and returns the next one. */
static void corrupt(void)
{
	tlcm_store_t *s = open_store("corrupt", TLCM_SYNC_NEVER, false);
	tlcm_outbox_t *o = s ? tlcm_store_outbox(s) : NULL;
	if (!o)
		return;
	CHECK_INT(put(o, "bad", 1, 0x0102030405060708ull, 64, 1, NULL, 0,
		      NULL), 0);
	CHECK_INT(put(o, "good", 1, 0x0102030405060709ull, 64, 2, NULL, 0,
		      NULL), 0);
	/* white box: the layout outbox.h documents */
	const char key[] = "q/\x01\x01\x02\x03\x04\x05\x06\x07\x08" "bad";
	void *v;
	size_t vl;
	CHECK_INT(tlcm_store_get(s, "outbox", key, sizeof key - 1, &v, &vl),
		  0);
	if (v)
		((unsigned char *)v)[10] ^= 1;
	CHECK_INT(tlcm_store_put(s, "outbox", key, sizeof key - 1, v, vl), 0);
	free(v);
	char rep[2048] = "";
	CHECK_INT(tlcm_store_check(s, rep, sizeof rep), 1);
	CHECK_CONTAINS(rep, "outbox package bad: bytes corrupt");
	/* an orphan: bytes without a header */
	const char orphan[] = "q/\x02\x00\x00\x00\x00\x00\x00\x00\x01" "orph";
	CHECK_INT(tlcm_store_put(s, "outbox", orphan, sizeof orphan - 1, "x",
				 1), 0);
	rep[0] = 0;
	CHECK_INT(tlcm_store_check(s, rep, sizeof rep), 2);
	CHECK_CONTAINS(rep, "orph: bytes without a header");
	CHECK_INT(tlcm_store_delete(s, "outbox", orphan, sizeof orphan - 1), 0);

	tlcm_log_level = -1; /* the expected error line */
	tlcm_outbox_entry_t e;
	void *pkg;
	size_t len;
	CHECK_INT(tlcm_outbox_peek(o, 9, NULL, 0, &e, &pkg, &len), 0);
	tlcm_log_level = TLCM_LOG_ERROR;
	CHECK_STR(e.id, "good");
	free(pkg);
	ids_t d = {0};
	CHECK_INT(tlcm_outbox_list(o, true, collect, &d), 0);
	CHECK_INT(d.n, 1);
	CHECK_STR(d.ids[0], "bad");
	tlcm_outbox_stats_t st;
	CHECK_INT(tlcm_outbox_stats(o, &st), 0);
	CHECK_UINT(st.packages, 1);
	CHECK_UINT(st.dead, 1);
	rep[0] = 0;
	CHECK_INT(tlcm_store_check(s, rep, sizeof rep), 0);
	if (rep[0])
		fprintf(stderr, "%s", rep);
	tlcm_store_close(s);
}

/* ---- two producers, one consumer, one reader ---------------------------- */

#define CONC_N 1500

typedef struct {
	tlcm_outbox_t *o;
	uint64_t first;
	atomic_int failures;
	atomic_bool stop;
	unsigned char seen[2 * CONC_N];
	int dup, bad;
} conc_t;

static conc_t conc;

static void *producer(void *arg)
{
	uint64_t first = (uint64_t)(uintptr_t)arg;
	for (uint64_t i = first; i < first + CONC_N; i++) {
		char id[TLCM_PKG_ID_LEN + 1];
		mkid(id, i);
		if (put(conc.o, id, (uint8_t)(1 + i % 4), 0, 256 + i % 512, i,
			NULL, 0, NULL))
			atomic_fetch_add(&conc.failures, 1);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	(void)arg;
	int got = 0, idle = 0;
	while (got < 2 * CONC_N && idle < 2000000) {
		tlcm_outbox_entry_t e;
		void *pkg;
		size_t len;
		int rc = tlcm_outbox_peek(conc.o, 255, NULL, 0, &e, &pkg, &len);
		if (rc == TLCM_ENOENT) {
			idle++;
			sched_yield();
			continue;
		}
		if (rc) {
			atomic_fetch_add(&conc.failures, 1);
			break;
		}
		idle = 0;
		uint64_t q = seq_of(e.id);
		if (q >= 2 * CONC_N || len != 256 + q % 512 ||
		    !intact(pkg, len, q))
			conc.bad++;
		else if (conc.seen[q]++)
			conc.dup++;
		free(pkg);
		if (tlcm_outbox_done(conc.o, e.id))
			atomic_fetch_add(&conc.failures, 1);
		got++;
	}
	return NULL;
}

static void *reader(void *arg)
{
	(void)arg;
	while (!atomic_load(&conc.stop)) {
		tlcm_outbox_stats_t st;
		ids_t l = {0};
		if (tlcm_outbox_stats(conc.o, &st) ||
		    tlcm_outbox_list(conc.o, false, collect, &l))
			atomic_fetch_add(&conc.failures, 1);
		if (st.packages > 2 * CONC_N)
			atomic_fetch_add(&conc.failures, 1);
		usleep(1000);
	}
	return NULL;
}

static void concurrency(void)
{
	tlcm_store_t *s = open_store("conc", TLCM_SYNC_BATCH, false);
	conc.o = s ? tlcm_store_outbox(s) : NULL;
	if (!conc.o)
		return;
	pthread_t p1, p2, c, r;
	pthread_create(&r, NULL, reader, NULL);
	pthread_create(&c, NULL, consumer, NULL);
	pthread_create(&p1, NULL, producer, (void *)(uintptr_t)0);
	pthread_create(&p2, NULL, producer, (void *)(uintptr_t)CONC_N);
	pthread_join(p1, NULL);
	pthread_join(p2, NULL);
	pthread_join(c, NULL);
	atomic_store(&conc.stop, true);
	pthread_join(r, NULL);
	CHECK_INT(atomic_load(&conc.failures), 0);
	CHECK_INT(conc.dup, 0);
	CHECK_INT(conc.bad, 0);
	int missing = 0;
	for (int i = 0; i < 2 * CONC_N; i++)
		missing += !conc.seen[i];
	CHECK_INT(missing, 0);
	tlcm_outbox_stats_t st;
	CHECK_INT(tlcm_outbox_stats(conc.o, &st), 0);
	CHECK_UINT(st.packages, 0);
	CHECK_UINT(st.bytes, 0);
	tlcm_store_close(s);
}

/* ---- kill -9 ------------------------------------------------------------ */

/* What the writer says on its pipe: P seq (put acknowledged), d seq (about
 * to mark done), D seq (done acknowledged). */
typedef struct {
	char op;
	char pad[7];
	uint64_t seq;
} ack_t;

enum { ABSENT, PUT_ACKED, DONE_PENDING, DONE_ACKED };

#define CRASH_SIZE 4096

static int crash_child(const char *path, uint64_t first)
{
	char why[600];
	tlcm_store_t *s;
	tlcm_store_opts_t so = {.sync = TLCM_SYNC_ALWAYS};
	if (tlcm_store_open(&s, path, &so, why, sizeof why)) {
		fprintf(stderr, "crash child: %s\n", why);
		return 3;
	}
	tlcm_outbox_t *o = tlcm_store_outbox(s);
	for (uint64_t i = first;; i++) {
		char id[TLCM_PKG_ID_LEN + 1];
		mkid(id, i);
		if (put(o, id, (uint8_t)(1 + i % 4), 0, CRASH_SIZE, i, NULL, 0,
			NULL))
			return 4;
		ack_t a = {.op = 'P', .seq = i};
		if (write(STDOUT_FILENO, &a, sizeof a) != sizeof a)
			return 5;
		if (i % 3)
			continue;
		tlcm_outbox_entry_t e;
		void *pkg;
		size_t len;
		if (tlcm_outbox_peek(o, 255, NULL, 0, &e, &pkg, &len))
			return 6;
		free(pkg);
		a = (ack_t){.op = 'd', .seq = seq_of(e.id)};
		if (write(STDOUT_FILENO, &a, sizeof a) != sizeof a)
			return 5;
		if (tlcm_outbox_done(o, e.id))
			return 7;
		a.op = 'D';
		if (write(STDOUT_FILENO, &a, sizeof a) != sizeof a)
			return 5;
	}
}

typedef struct {
	unsigned char *st;
	size_t cap;
	int dup, unexpected;
	uint64_t present;
} kstate_t;

static void kgrow(kstate_t *k, uint64_t seq)
{
	if (seq < k->cap)
		return;
	size_t cap = k->cap ? k->cap : 1024;
	while (cap <= seq)
		cap *= 2;
	k->st = realloc(k->st, cap);
	memset(k->st + k->cap, ABSENT, cap - k->cap);
	k->cap = cap;
}

static int kcheck(void *arg, const tlcm_outbox_entry_t *e, const char *r)
{
	kstate_t *k = arg;
	(void)r;
	uint64_t q = seq_of(e->id);
	kgrow(k, q);
	/* present: bit 7 marks "seen in this listing" */
	if (k->st[q] & 0x80)
		k->dup++;
	k->st[q] |= 0x80;
	k->present++;
	return 0;
}

static void kill9(void)
{
	char p[512], why[600];
	snprintf(p, sizeof p, "%s/crash", root);
	int rounds = 20;
	const char *lr = getenv("TLCM_LONG_ROUNDS");
	if (lr && atoi(lr) > 0)
		rounds = atoi(lr);
	kstate_t k = {0};
	uint64_t next = 0, acked_total = 0, done_total = 0;
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	int lost = 0, zombies = 0, resurrected = 0, bad_bytes = 0;
	for (int r = 0; r < rounds; r++) {
		int fds[2];
		CHECK_INT(pipe(fds), 0);
		char first[32];
		snprintf(first, sizeof first, "%llu", (unsigned long long)next);
		pid_t pid = fork();
		if (pid == 0) {
			/* a fresh process (exec): no threads inherited */
			close(fds[0]);
			dup2(fds[1], STDOUT_FILENO);
			execl("/proc/self/exe", "test_outbox", "--crash-child",
			      p, first, (char *)NULL);
			_exit(6);
		}
		close(fds[1]);
		/* acks before the kill; at least one in the first round, so
		 * the store exists (creating one is not what is tested) */
		int target = rand() % 120 + !r;
		/* a put that may have landed without its acknowledgement */
		uint64_t in_flight = next;
		ack_t a;
		int n = 0;
		while (n < target && read(fds[0], &a, sizeof a) == sizeof a) {
			kgrow(&k, a.seq);
			if (a.op == 'P') {
				k.st[a.seq] = PUT_ACKED;
				in_flight = a.seq + 1;
				acked_total++;
			} else if (a.op == 'd') {
				k.st[a.seq] = DONE_PENDING;
			} else if (a.op == 'D') {
				k.st[a.seq] = DONE_ACKED;
				done_total++;
			}
			n++;
		}
		usleep((useconds_t)(rand() % 3000));
		kill(pid, SIGKILL);
		int wst;
		waitpid(pid, &wst, 0);
		while (read(fds[0], &a, sizeof a) == sizeof a) { /* in flight */
			kgrow(&k, a.seq);
			if (a.op == 'P') {
				k.st[a.seq] = PUT_ACKED;
				in_flight = a.seq + 1;
				acked_total++;
			} else if (a.op == 'd') {
				k.st[a.seq] = DONE_PENDING;
			} else if (a.op == 'D') {
				k.st[a.seq] = DONE_ACKED;
				done_total++;
			}
		}
		close(fds[0]);
		if (!WIFSIGNALED(wst)) {
			fprintf(stderr, "crash child exited with %d\n",
				WEXITSTATUS(wst));
			CHECK(WIFSIGNALED(wst));
			break;
		}
		next = in_flight + 1;

		tlcm_store_t *s;
		tlcm_store_opts_t so = {.sync = TLCM_SYNC_ALWAYS,
					.must_exist = r > 0};
		int orc = tlcm_store_open(&s, p, &so, why, sizeof why);
		if (orc == TLCM_ENOENT && !r) { /* killed before it made one */
			continue;
		}
		CHECK_INT(orc, 0);
		if (orc) {
			fprintf(stderr, "reopen: %s\n", why);
			break;
		}
		char rep[4096] = "";
		int problems = tlcm_store_check(s, rep, sizeof rep);
		CHECK_INT(problems, 0);
		if (problems)
			fprintf(stderr, "%s", rep);
		k.present = 0;
		CHECK_INT(tlcm_outbox_list(tlcm_store_outbox(s), false, kcheck,
					   &k), 0);
		kgrow(&k, in_flight);
		for (size_t q = 0; q < k.cap; q++) {
			bool here = k.st[q] & 0x80;
			int st = k.st[q] & 0x7f;
			k.st[q] = (unsigned char)st;
			if (st == PUT_ACKED && !here)
				lost++;
			else if (st == DONE_ACKED && here)
				resurrected++;
			else if (st == ABSENT && here) {
				if (q == in_flight)
					k.st[q] = PUT_ACKED; /* it made it */
				else
					zombies++;
			} else if (st == DONE_PENDING)
				/* the done did or did not land: now known */
				k.st[q] = here ? PUT_ACKED : DONE_ACKED;
		}
		tlcm_store_close(s);
	}
	CHECK_INT(lost, 0);
	CHECK_INT(resurrected, 0);
	CHECK_INT(zombies, 0);
	CHECK_INT(k.dup, 0);

	/* drain: every package once, its bytes intact */
	tlcm_store_t *s;
	tlcm_store_opts_t so = {.sync = TLCM_SYNC_NEVER};
	if (tlcm_store_open(&s, p, &so, why, sizeof why) == 0) {
		tlcm_outbox_t *o = tlcm_store_outbox(s);
		uint64_t drained = 0;
		tlcm_outbox_entry_t e;
		void *pkg;
		size_t len;
		while (tlcm_outbox_peek(o, 255, NULL, 0, &e, &pkg, &len) == 0) {
			uint64_t q = seq_of(e.id);
			if (q >= k.cap || k.st[q] != PUT_ACKED ||
			    len != CRASH_SIZE || !intact(pkg, len, q))
				bad_bytes++;
			else
				k.st[q] = DONE_ACKED;
			free(pkg);
			CHECK_INT(tlcm_outbox_done(o, e.id), 0);
			drained++;
		}
		int left = 0;
		for (size_t q = 0; q < k.cap; q++)
			left += k.st[q] == PUT_ACKED;
		CHECK_INT(left, 0);
		CHECK_INT(bad_bytes, 0);
		tlcm_outbox_stats_t st;
		CHECK_INT(tlcm_outbox_stats(o, &st), 0);
		CHECK_UINT(st.dead, 0);
		fprintf(stderr, "kill -9: %d rounds, %llu puts and %llu dones "
			"acknowledged, %llu left and drained intact\n", rounds,
			(unsigned long long)acked_total,
			(unsigned long long)done_total,
			(unsigned long long)drained);
		tlcm_store_close(s);
	} else {
		CHECK(!"reopen for the drain");
	}
	free(k.st);
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--crash-child"))
		return crash_child(argv[2], strtoull(argv[3], NULL, 10));
	tlcm_log_level = TLCM_LOG_ERROR;
	snprintf(root, sizeof root, "/tmp/tlcm-outbox-test-XXXXXX");
	if (!mkdtemp(root)) {
		TLCM__FAIL("mkdtemp");
		return 1;
	}
	order();
	idempotent_done_dead();
	retention_bytes();
	retention_age();
	reopen();
	corrupt();
	concurrency();
	kill9();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	CHECK_INT(system(cmd), 0);
	return tlcm_test_done();
}
