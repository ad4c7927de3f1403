/* bench_outbox.c — suite "outbox": the durable outbox (engine/outbox.c)
 * against the raw store writing the same bytes.
 *
 * Enqueue: 4 KiB packages, distinct UUIDv7-shaped ids, priorities 1..4
 * mixed, under each sync policy; baseline: tlcm_store_put of the same key
 * and bytes under the same policy (what the outbox adds: its header key,
 * the batch, the CRC, the index). Drain: peek + done of everything queued
 * vs get + delete of the same keys. Also: enqueue into a full outbox (each
 * put evicts one) and the index rebuild when a store is reopened.
 * Every run starts from an empty store; outbox and baseline runs
 * alternate, so both see the same machine. Enqueue is also reported as
 * process CPU time per package (RocksDB's flush and compaction threads
 * included), which a busy machine disturbs less than the rate.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "bench/bench.h"
#include "engine/outbox.h"
#include "engine/store.h"

#define PKG 4096
#define SYNC_INTERVAL_NS (100 * 1000000ull)
#define MAXRUNS 65

static int nskipped;

static size_t count(const bench_opts_t *o, size_t n)
{
	size_t v = (size_t)((double)n * o->scale);
	return v < 2 ? 2 : v;
}

/* ---- temporary stores --------------------------------------------------- */

static int rm_one(const char *p, const struct stat *st, int flag,
		  struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	if (remove(p))
		fprintf(stderr, "outbox: cannot remove %s: %s\n", p,
			strerror(errno));
	return 0;
}

static void rmtree(const char *dir)
{
	if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS))
		fprintf(stderr, "outbox: cannot walk %s: %s\n", dir,
			strerror(errno));
}

typedef struct {
	char root[64];
	char path[PATH_MAX];
	tlcm_store_t *st;
} tmp_t;

static int tmp_open(tmp_t *t, tlcm_sync_t sync)
{
	char why[512];
	snprintf(t->root, sizeof t->root, "/tmp/tlcm-bench-outbox-XXXXXX");
	if (!mkdtemp(t->root)) {
		fprintf(stderr, "outbox: mkdtemp: %s\n", strerror(errno));
		return -1;
	}
	snprintf(t->path, sizeof t->path, "%s/db", t->root);
	tlcm_store_opts_t so = {.sync = sync,
				.sync_interval = SYNC_INTERVAL_NS};
	int rc = tlcm_store_open(&t->st, t->path, &so, why, sizeof why);
	if (rc) {
		fprintf(stderr, "outbox: open %s: %s\n", t->path,
			why[0] ? why : tlcm_strerror(rc));
		rmtree(t->root);
		return -1;
	}
	return 0;
}

static void tmp_close(tmp_t *t)
{
	tlcm_store_close(t->st);
	t->st = NULL;
	rmtree(t->root);
}

/* ---- packages ----------------------------------------------------------- */

typedef struct {
	tlcm_outbox_entry_t e;
	char key[2 + 1 + 8 + TLCM_PKG_ID_LEN]; /* the outbox's queue key */
	size_t klen;
} pkg_t;

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* n entries with UUIDv7-shaped ids (time-ordered), priorities 1..4 in a
 * random mix, and the key outbox.h documents for each, for the baseline. */
static pkg_t *make_pkgs(size_t n, uint64_t t0)
{
	pkg_t *p = calloc(n, sizeof *p);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; p && i < n; i++) {
		tlcm_outbox_entry_t *e = &p[i].e;
		uint64_t ms = t0 / 1000000u + i / 8;
		snprintf(e->id, sizeof e->id,
			 "%08llx-%04llx-7%03llx-8%03llx-%012llx",
			 (unsigned long long)((ms >> 16) & 0xffffffffu),
			 (unsigned long long)(ms & 0xffff),
			 (unsigned long long)(rnd(&x) & 0xfff),
			 (unsigned long long)(rnd(&x) & 0xfff),
			 (unsigned long long)(rnd(&x) & 0xffffffffffffull));
		e->priority = (uint8_t)(1 + rnd(&x) % 4);
		static const char *const kinds[] = {
			"metrics", "drift_event", "operational_logs",
			"prediction_images"};
		snprintf(e->kind, sizeof e->kind, "%s", kinds[e->priority - 1]);
		e->created_ns = t0 + i * 1000;
		e->size = PKG;
		char *k = p[i].key;
		k[0] = 'q';
		k[1] = '/';
		k[2] = (char)e->priority;
		for (int b = 0; b < 8; b++)
			k[3 + b] = (char)(e->created_ns >> (56 - 8 * b));
		memcpy(k + 11, e->id, TLCM_PKG_ID_LEN);
		p[i].klen = 11 + TLCM_PKG_ID_LEN;
	}
	return p;
}

/* ---- timed bodies ------------------------------------------------------- */

static int enqueue(tlcm_outbox_t *o, const pkg_t *p, size_t n,
		   const unsigned char *data, uint64_t *evicted)
{
	for (size_t i = 0; i < n; i++) {
		size_t nev = 0;
		int rc = tlcm_outbox_put(o, &p[i].e, data + i % 64,
					 PKG, NULL, 0, &nev);
		if (rc) {
			fprintf(stderr, "outbox: put %zu: %s\n", i,
				tlcm_strerror(rc));
			return -1;
		}
		*evicted += nev;
	}
	return 0;
}

static int drain(tlcm_outbox_t *o, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		tlcm_outbox_entry_t e;
		void *pkg;
		size_t len;
		int rc = tlcm_outbox_peek(o, 255, NULL, 0, &e, &pkg, &len);
		if (!rc)
			bench_sink += ((unsigned char *)pkg)[len - 1];
		free(pkg);
		if (!rc)
			rc = tlcm_outbox_done(o, e.id);
		if (rc) {
			fprintf(stderr, "outbox: drain %zu: %s\n", i,
				tlcm_strerror(rc));
			return -1;
		}
	}
	return 0;
}

static int raw_put(tlcm_store_t *s, const pkg_t *p, size_t n,
		   const unsigned char *data)
{
	for (size_t i = 0; i < n; i++) {
		int rc = tlcm_store_put(s, "outbox", p[i].key, p[i].klen,
					data + i % 64, PKG);
		if (rc) {
			fprintf(stderr, "outbox: raw put %zu: %s\n", i,
				tlcm_strerror(rc));
			return -1;
		}
	}
	return 0;
}

/* get + delete in queue order (keys sort by priority, age) */
static int cmp_key(const void *a, const void *b)
{
	const pkg_t *x = a, *y = b;
	return memcmp(x->key, y->key, x->klen);
}

static int raw_drain(tlcm_store_t *s, const pkg_t *sorted, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		void *v;
		size_t vl;
		int rc = tlcm_store_get(s, "outbox", sorted[i].key,
					sorted[i].klen, &v, &vl);
		if (!rc)
			bench_sink += ((unsigned char *)v)[vl - 1];
		free(v);
		if (!rc)
			rc = tlcm_store_delete(s, "outbox", sorted[i].key,
					       sorted[i].klen);
		if (rc) {
			fprintf(stderr, "outbox: raw drain %zu: %s\n", i,
				tlcm_strerror(rc));
			return -1;
		}
	}
	return 0;
}

static double per_s(size_t n, uint64_t ns)
{
	return ns ? (double)n * 1e9 / (double)ns : 0;
}

/* CPU time of the whole process (all threads), ns. */
static uint64_t cpu_ns(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) *
		       1000000000u +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) *
		       1000u;
}

/* ---- cases -------------------------------------------------------------- */

static void policy_case(const bench_opts_t *o, tlcm_sync_t sync, size_t n,
			const unsigned char *data)
{
	const char *pol = tlcm_sync_name(sync);
	int runs = o->runs < 1 ? 1 : o->runs > 64 ? 64 : o->runs;
	double enq[MAXRUNS], drn[MAXRUNS], put[MAXRUNS], get[MAXRUNS];
	double enqcpu[MAXRUNS], putcpu[MAXRUNS]; /* µs per package */
	pkg_t *p = make_pkgs(n, 1790000000000000000ull);
	pkg_t *sorted = p ? malloc(n * sizeof *sorted) : NULL;
	if (!sorted) {
		fprintf(stderr, "outbox: %s: out of memory\n", pol);
		free(p);
		nskipped += 2;
		return;
	}
	memcpy(sorted, p, n * sizeof *sorted);
	qsort(sorted, n, sizeof *sorted, cmp_key);
	fprintf(stderr, "outbox: sync=%s: %zu packages of %d bytes x %d runs "
		"(+1 warm-up), outbox and store_put alternating\n", pol, n,
		PKG, runs);
	int bad = 0, rawbad = 0;
	for (int r = 0; r <= runs && !bad; r++) {
		tmp_t t;
		uint64_t ev = 0;
		if (tmp_open(&t, sync)) {
			bad = 1;
			break;
		}
		tlcm_outbox_t *ob = tlcm_store_outbox(t.st);
		uint64_t c0 = cpu_ns(), t0 = bench_now_ns();
		bad |= !ob || enqueue(ob, p, n, data, &ev);
		uint64_t t1 = bench_now_ns(), c1 = cpu_ns();
		bad |= ev != 0 || drain(ob, n);
		uint64_t t2 = bench_now_ns();
		tmp_close(&t);
		if (r) {
			enq[r - 1] = per_s(n, t1 - t0);
			drn[r - 1] = per_s(n, t2 - t1);
			enqcpu[r - 1] = (double)(c1 - c0) / 1e3 / (double)n;
		}
		if (rawbad || tmp_open(&t, sync)) {
			rawbad = 1;
			continue;
		}
		c0 = cpu_ns();
		t0 = bench_now_ns();
		rawbad |= raw_put(t.st, p, n, data);
		t1 = bench_now_ns();
		c1 = cpu_ns();
		rawbad |= raw_drain(t.st, sorted, n);
		t2 = bench_now_ns();
		tmp_close(&t);
		if (r) {
			put[r - 1] = per_s(n, t1 - t0);
			get[r - 1] = per_s(n, t2 - t1);
			putcpu[r - 1] = (double)(c1 - c0) / 1e3 / (double)n;
		}
	}
	free(p);
	free(sorted);
	char kase[64];
	if (bad) {
		fprintf(stderr, "outbox: sync=%s: failed; not reported\n", pol);
		nskipped += 2;
		return;
	}
	if (rawbad) {
		fprintf(stderr, "outbox: sync=%s: the baseline failed; "
			"reported without it\n", pol);
		nskipped++;
	}
	double e = bench_median(enq, runs), d = bench_median(drn, runs);
	double pu = rawbad ? 0 : bench_median(put, runs);
	double gd = rawbad ? 0 : bench_median(get, runs);
	bench_base_t be[] = {{"store_put", pu}}, bd[] = {{"store_get_delete",
							    gd}};
	double pc = rawbad ? 0 : bench_median(putcpu, runs);
	bench_base_t bc[] = {{"store_put", pc}};
	snprintf(kase, sizeof kase, "enqueue_4KiB_sync_%s", pol);
	bench_report("outbox", kase, "packages_per_s", e, n, runs, be,
		     rawbad ? 0 : 1);
	snprintf(kase, sizeof kase, "enqueue_4KiB_sync_%s_cpu", pol);
	bench_report("outbox", kase, "us_cpu_per_package",
		     bench_median(enqcpu, runs), n, runs, bc, rawbad ? 0 : 1);
	snprintf(kase, sizeof kase, "drain_4KiB_sync_%s", pol);
	bench_report("outbox", kase, "packages_per_s", d, n, runs, bd,
		     rawbad ? 0 : 1);
	if (!rawbad)
		fprintf(stderr, "outbox: sync=%s: enqueue at %.2f of the raw "
			"store_put rate, drain at %.2f of get+delete\n", pol,
			e / pu, d / gd);
}

/* A full outbox (max_bytes = what half the packages take): every put of
 * the second half evicts the oldest, least important one in its batch. */
static void full_case(const bench_opts_t *o, size_t n,
		      const unsigned char *data)
{
	int runs = o->runs < 1 ? 1 : o->runs > 64 ? 64 : o->runs;
	double v[MAXRUNS];
	size_t half = n / 2;
	pkg_t *p = make_pkgs(n, 1790000000000000000ull);
	if (!p) {
		nskipped++;
		return;
	}
	for (size_t i = 0; i < n; i++) /* one priority: each put evicts */
		p[i].e.priority = 2;
	fprintf(stderr, "outbox: full, sync=batch: %zu puts into an outbox "
		"full at %zu packages x %d runs; no baseline (the raw store "
		"has no retention to compare with)\n", n - half, half, runs);
	int bad = 0;
	uint64_t ev = 0;
	for (int r = 0; r <= runs && !bad; r++) {
		tmp_t t;
		if (tmp_open(&t, TLCM_SYNC_BATCH)) {
			bad = 1;
			break;
		}
		tlcm_outbox_t *ob = tlcm_store_outbox(t.st);
		tlcm_outbox_set_limits(ob, &(tlcm_outbox_limits_t){
					       .max_bytes = half * PKG});
		ev = 0;
		bad |= enqueue(ob, p, half, data, &ev);
		uint64_t t0 = bench_now_ns();
		bad |= enqueue(ob, p + half, n - half, data, &ev);
		uint64_t t1 = bench_now_ns();
		bad |= ev != n - half;
		tmp_close(&t);
		if (r)
			v[r - 1] = per_s(n - half, t1 - t0);
	}
	free(p);
	if (bad) {
		fprintf(stderr, "outbox: full: failed (evicted %llu, wanted "
			"%zu); not reported\n", (unsigned long long)ev,
			n - half);
		nskipped++;
		return;
	}
	bench_report("outbox", "enqueue_4KiB_full_evicting_sync_batch",
		     "packages_per_s", bench_median(v, runs), n - half, runs,
		     NULL, 0);
}

/* Reopen a store holding n packages: the first call builds the index by
 * scanning the headers. */
static void rebuild_case(const bench_opts_t *o, size_t n,
			 const unsigned char *data)
{
	int runs = o->runs < 1 ? 1 : o->runs > 64 ? 64 : o->runs;
	double v[MAXRUNS];
	char why[512];
	pkg_t *p = make_pkgs(n, 1790000000000000000ull);
	tmp_t t;
	if (!p || tmp_open(&t, TLCM_SYNC_NEVER)) {
		free(p);
		nskipped++;
		return;
	}
	uint64_t ev = 0;
	int bad = enqueue(tlcm_store_outbox(t.st), p, n, data, &ev);
	free(p);
	fprintf(stderr, "outbox: index rebuild of %zu packages x %d runs\n",
		n, runs);
	for (int r = 0; r <= runs && !bad; r++) {
		tlcm_store_close(t.st);
		tlcm_store_opts_t so = {.sync = TLCM_SYNC_NEVER};
		if (tlcm_store_open(&t.st, t.path, &so, why, sizeof why)) {
			fprintf(stderr, "outbox: reopen: %s\n", why);
			t.st = NULL;
			bad = 1;
			break;
		}
		tlcm_outbox_stats_t st;
		uint64_t t0 = bench_now_ns();
		bad |= tlcm_outbox_stats(tlcm_store_outbox(t.st), &st) != 0;
		uint64_t t1 = bench_now_ns();
		bad |= st.packages != n;
		if (r)
			v[r - 1] = (double)(t1 - t0) / 1e6;
	}
	tmp_close(&t);
	if (bad) {
		fprintf(stderr, "outbox: rebuild: failed; not reported\n");
		nskipped++;
		return;
	}
	char kase[64];
	snprintf(kase, sizeof kase, "index_rebuild_n%zu", n);
	bench_report("outbox", kase, "ms", bench_median(v, runs), n, runs, NULL,
		     0);
}

int bench_suite_outbox(const bench_opts_t *o)
{
	/* 64 + PKG bytes of noise: package i starts at i % 64 */
	unsigned char *data = malloc(PKG + 64);
	if (!data)
		return -1;
	uint64_t x = 0x5eed;
	for (size_t i = 0; i < PKG + 64; i++)
		data[i] = (unsigned char)rnd(&x);
	policy_case(o, TLCM_SYNC_ALWAYS, count(o, 300), data);
	policy_case(o, TLCM_SYNC_BATCH, count(o, 20000), data);
	policy_case(o, TLCM_SYNC_NEVER, count(o, 20000), data);
	full_case(o, count(o, 20000), data);
	rebuild_case(o, count(o, 50000), data);
	free(data);
	if (nskipped)
		fprintf(stderr, "outbox: %d case(s) or baseline(s) not "
			"reported, see above\n", nskipped);
	return nskipped ? -1 : 0;
}
