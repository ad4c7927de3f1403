/* bench_link.c — `tinylcm-bench link`: 10 satellites → 1 core on loopback
 * in one process, through the real link pieces (nodes/link: durable
 * queue, sender, receiver storing before acknowledging), per store sync
 * policy; and in the same run raw NNG push/pull over tcp:// with the same
 * batching and no persistence, no acks, as the baseline.
 *
 * Each satellite thread builds batches of BATCH 16-byte events (a
 * LinkBatch, as link.tx does), stores each in its queue (its own store)
 * and the sender ships it; the core's consumer takes stored batches,
 * reads every event and marks them delivered. Stores are opened and the
 * satellites connected before the clock starts; events/s is over the
 * transfer (first put to last event taken). Latency is per event, from
 * its wall-clock stamp at batching to the consumer reading it: at full
 * load (each satellite's queue holds at most 8 batches, policy block; the
 * push sockets NNG's default buffers) it is the queues' fill time, so a
 * paced case offers a fixed load well below capacity (PACED_EPS) to both
 * the link and raw NNG and reports the pipeline's own p50/p99.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/supplemental/util/platform.h>

#include "bench/bench.h"
#include "engine/log.h"
#include "engine/store.h"
#include "nodes/link/receiver.h"
#include "nodes/link/sender.h"
#include "nodes/link/txq.h"

int bench_suite_link(const bench_opts_t *o);

#define NSAT 10
#define BATCH 1000
#define EVBYTES 16

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const void *build(tlcm_fbb_t *b, uint64_t seq, size_t *len)
{
	tlcm_fbb_reset(b);
	static _Thread_local tlcm_fbb_ref_t refs[BATCH];
	tlcm_fbb_ref_t tag = tlcm_fbb_cstring(b, "bench");
	uint8_t d[EVBYTES];
	for (int i = 0; i < BATCH; i++) {
		memset(d, i, sizeof d);
		tlcm_fbb_ref_t dv = tlcm_LinkMsg_data_create(b, d, sizeof d);
		tlcm_LinkMsg_start(b);
		tlcm_LinkMsg_add_type(b, 0x424f4c42);
		tlcm_LinkMsg_add_tag(b, tag);
		tlcm_LinkMsg_add_ts_ns(b, wall_ns());
		tlcm_LinkMsg_add_trace(b, seq * BATCH + (uint64_t)i);
		tlcm_LinkMsg_add_data(b, dv);
		refs[i] = tlcm_LinkMsg_end(b);
	}
	const void *fr;
	return link_build_batch(b, seq, 0, refs, BATCH, &fr, len) ? NULL : fr;
}

/* latency histogram: 1 µs buckets to 100 ms, then 1 ms buckets to 10 s */
#define LFINE 100000
#define LBUCKETS (LFINE + 9900)
typedef struct {
	uint64_t *h, n;
} lat_t;

static void lat_add(lat_t *l, uint64_t ns)
{
	uint64_t us = ns / 1000;
	uint64_t i = us < LFINE ? us : LFINE + (us - LFINE) / 1000;
	l->h[i < LBUCKETS ? i : LBUCKETS - 1]++;
	l->n++;
}

/* the p-th percentile in µs */
static double lat_pct(const lat_t *l, double p)
{
	uint64_t want = (uint64_t)((double)l->n * p), seen = 0;
	for (size_t i = 0; i < LBUCKETS; i++) {
		seen += l->h[i];
		if (seen > want)
			return i < LFINE ? (double)i
					 : (double)LFINE + (double)(i - LFINE) * 1000;
	}
	return (double)LFINE + (LBUCKETS - LFINE) * 1000.0;
}

/* Pacing: with rate (batches/s per satellite) > 0, batch s is built at
 * start + (s - 1) / rate, a fixed offered load; 0: as fast as possible. */
static void pace(uint64_t start_mono, double rate, uint64_t s)
{
	if (rate <= 0)
		return;
	uint64_t at = start_mono + (uint64_t)((double)(s - 1) / rate * 1e9);
	struct timespec ts = {(time_t)(at / 1000000000u),
			      (long)(at % 1000000000u)};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL))
		;
}

typedef struct {
	link_txq_t *q;
	uint64_t batches;
	double rate;
	atomic_uint_fast64_t *go;    /* 0 until the clock starts */
} sat_arg_t;

static uint64_t wait_go(atomic_uint_fast64_t *go)
{
	uint64_t t;
	while (!(t = atomic_load(go)))
		nng_msleep(1);
	return t;
}

static void *sat_main(void *p)
{
	sat_arg_t *a = p;
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, 1 << 16);
	uint64_t t0 = wait_go(a->go);
	for (uint64_t s = 1; s <= a->batches; s++) {
		size_t len;
		pace(t0, a->rate, s);
		const void *fr = build(&b, s, &len);
		uint64_t nd;
		while (link_txq_put(a->q, link_txq_next_seq(a->q), fr, len, 0,
				    &nd) == TLCM_EAGAIN)
			link_txq_wait_room(a->q, len, 100000000u);
	}
	tlcm_fbb_fini(&b);
	return NULL;
}

/* Everything is opened and every satellite connected before the clock
 * starts: events/s is over the transfer, first put to last event taken. */
static int run_link(const char *dir, tlcm_sync_t sync, uint64_t per_sat,
		    double rate, double *eps, double *p50, double *p99)
{
	char path[512], why[600], url[64];
	tlcm_store_opts_t so = {.sync = sync, .fresh = true};
	tlcm_store_t *cs, *ss[NSAT];
	snprintf(path, sizeof path, "%s/core", dir);
	if (tlcm_store_open(&cs, path, &so, why, sizeof why)) {
		fprintf(stderr, "link: %s\n", why);
		return 1;
	}
	link_receiver_cfg_t rc = {
		.log_id = "core", .url = "tcp://127.0.0.1:0",
		.max_frame = 16 << 20, .hello_ns = 10000000000u,
		.idle_ns = 60000000000u, .max_pending = 64 << 20, .store = cs,
		.family = "link.rx/bench"};
	link_receiver_t *r;
	if (link_receiver_new(&r, &rc, why, sizeof why)) {
		fprintf(stderr, "link: %s\n", why);
		return 1;
	}
	snprintf(url, sizeof url, "tcp://127.0.0.1:%d", link_receiver_port(r));
	const char *urls[] = {url};
	link_txq_t *q[NSAT];
	link_sender_t *snd[NSAT];
	sat_arg_t args[NSAT];
	pthread_t th[NSAT];
	atomic_uint_fast64_t go = 0;
	uint64_t batches = per_sat / BATCH;
	for (int i = 0; i < NSAT; i++) {
		snprintf(path, sizeof path, "%s/sat%d", dir, i);
		if (tlcm_store_open(&ss[i], path, &so, why, sizeof why))
			return 1;
		/* a short queue (block), so latency is the pipeline's, not
		 * a backlog's */
		link_txq_limits_t lim = {.max_batches = 8, .block = true};
		if (link_txq_open(&q[i], ss[i], "link.tx/bench", &lim, why,
				  sizeof why))
			return 1;
		char id[16];
		snprintf(id, sizeof id, "sat-%d", i);
		link_sender_cfg_t sc = {
			.log_id = "sat", .hello = {.satellite = id},
			.urls = urls, .nurls = 1, .backoff_min_ns = 1000000,
			.backoff_max_ns = 100000000,
			.timeout_ns = 10000000000u, .q = q[i]};
		if (link_sender_new(&snd[i], &sc, why, sizeof why))
			return 1;
		args[i] = (sat_arg_t){q[i], batches, rate, &go};
		pthread_create(&th[i], NULL, sat_main, &args[i]);
	}
	for (int i = 0, tries = 0; i < NSAT && tries < 10000; tries++) {
		link_sender_stats_t st;
		link_sender_stats(snd[i], &st);
		if (st.connected)
			i++;
		else
			nng_msleep(1);
	}
	lat_t lat = {calloc(LBUCKETS, sizeof(uint64_t)), 0};
	uint64_t want = batches * BATCH * NSAT, got = 0;
	uint64_t t0 = bench_now_ns(), idle = 0;
	atomic_store(&go, t0);
	while (got < want) {
		const link_rx_batch_t *x = link_receiver_take(r, 1000000000u);
		if (!x) {
			link_receiver_commit(r);
			if (++idle < 60)
				continue;
			/* a stuck run is a finding, not a hang: say where it
			 * stood and give up (the threads are left behind) */
			link_receiver_stats_t rs;
			link_receiver_stats(r, &rs);
			fprintf(stderr, "link: no batch for 60 s with %" PRIu64
				" of %" PRIu64 " events taken; core: %" PRIu64
				" connections, %" PRIu64 " rejected, %" PRIu64
				" duplicates\n", got, want, rs.connections,
				rs.rejected, rs.duplicates);
			for (int i = 0; i < NSAT; i++) {
				link_sender_stats_t st;
				link_sender_stats(snd[i], &st);
				fprintf(stderr, "  sat-%d: connected %d, %" PRIu64
					" connects, %" PRIu64 " sent, %" PRIu64
					" acks, last error: %s\n", i,
					(int)st.connected, st.connects, st.sent,
					st.acks, st.last_error);
			}
			free(lat.h);
			return 1;
		}
		idle = 0;
		tlcm_LinkBatch_table_t bt = tlcm_LinkFrame_batch(
			tlcm_LinkFrame_as_root((const uint8_t *)x->frame +
					       LINK_BODY));
		size_t n = tlcm_LinkBatch_messages_len(bt);
		uint64_t now = wall_ns();
		for (size_t i = 0; i < n; i++) {
			tlcm_LinkMsg_table_t m = tlcm_LinkBatch_messages_at(bt,
									    i);
			bench_sink += tlcm_LinkMsg_data_len(m);
			uint64_t ts = tlcm_LinkMsg_ts_ns(m);
			lat_add(&lat, now > ts ? now - ts : 0);
		}
		got += n;
		if (link_receiver_uncommitted(r) >= 16)
			link_receiver_commit(r);
	}
	link_receiver_commit(r);
	uint64_t t1 = bench_now_ns();
	*eps = (double)got / ((double)(t1 - t0) / 1e9);
	*p50 = lat_pct(&lat, 0.5);
	*p99 = lat_pct(&lat, 0.99);
	for (int i = 0; i < NSAT; i++) {
		pthread_join(th[i], NULL);
		link_txq_wait_room(q[i], 0, 10000000000u);
		link_sender_free(snd[i]);
		link_txq_free(q[i]);
		tlcm_store_close(ss[i]);
	}
	link_receiver_free(r);
	tlcm_store_close(cs);
	free(lat.h);
	return 0;
}

/* ---- raw NNG push/pull, same batches, no persistence, no acks ---- */

typedef struct {
	const char *url;
	uint64_t batches;
	double rate;
	atomic_uint_fast64_t *go;
	atomic_int *ready;
} push_arg_t;

static void *push_main(void *p)
{
	push_arg_t *a = p;
	nng_socket s;
	int bad = nng_push0_open(&s) || nng_dial(s, a->url, NULL, 0);
	atomic_fetch_add(a->ready, 1);
	if (bad)
		return NULL;
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, 1 << 16);
	uint64_t t0 = wait_go(a->go);
	for (uint64_t i = 1; i <= a->batches; i++) {
		size_t len;
		pace(t0, a->rate, i);
		const void *fr = build(&b, i, &len);
		nng_send(s, (void *)fr, len, 0);
	}
	tlcm_fbb_fini(&b);
	nng_msleep(200);
	nng_close(s);
	return NULL;
}

static int run_nng(uint64_t per_sat, double rate, double *eps, double *p50,
		   double *p99)
{
	char url[64];
	nng_socket pull;
	nng_listener l;
	if (nng_pull0_open(&pull) ||
	    nng_listen(pull, "tcp://127.0.0.1:0", &l, 0))
		return 1;
	int port = 0;
	nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port);
	snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
	uint64_t batches = per_sat / BATCH;
	pthread_t th[NSAT];
	atomic_uint_fast64_t go = 0;
	atomic_int ready = 0;
	push_arg_t a = {url, batches, rate, &go, &ready};
	for (int i = 0; i < NSAT; i++)
		pthread_create(&th[i], NULL, push_main, &a);
	while (atomic_load(&ready) < NSAT)
		nng_msleep(1);
	uint64_t t0 = bench_now_ns();
	atomic_store(&go, t0);
	lat_t lat = {calloc(LBUCKETS, sizeof(uint64_t)), 0};
	uint64_t want = batches * BATCH * NSAT, got = 0;
	nng_setopt_ms(pull, NNG_OPT_RECVTIMEO, 10000);
	while (got < want) {
		void *buf;
		size_t len;
		if (nng_recv(pull, &buf, &len, NNG_FLAG_ALLOC))
			break;
		/* the same reading as the link's consumer, after verifying */
		uint8_t *al = malloc(len + 8);
		memcpy(al + 4, (uint8_t *)buf + 4, len - 4);
		nng_free(buf, len);
		if (tlcm_LinkFrame_verify_as_root(al + 4, len - 4, NULL)) {
			free(al);
			continue;
		}
		tlcm_LinkBatch_table_t bt = tlcm_LinkFrame_batch(
			tlcm_LinkFrame_as_root(al + 4));
		size_t n = tlcm_LinkBatch_messages_len(bt);
		uint64_t now = wall_ns();
		for (size_t i = 0; i < n; i++) {
			tlcm_LinkMsg_table_t m = tlcm_LinkBatch_messages_at(bt,
									    i);
			bench_sink += tlcm_LinkMsg_data_len(m);
			uint64_t ts = tlcm_LinkMsg_ts_ns(m);
			lat_add(&lat, now > ts ? now - ts : 0);
		}
		free(al);
		got += n;
	}
	uint64_t t1 = bench_now_ns();
	*eps = (double)got / ((double)(t1 - t0) / 1e9);
	*p50 = lat_pct(&lat, 0.5);
	*p99 = lat_pct(&lat, 0.99);
	for (int i = 0; i < NSAT; i++)
		pthread_join(th[i], NULL);
	nng_close(pull);
	free(lat.h);
	return got == want ? 0 : 1;
}

/* The paced case: a fixed offered load well below capacity, so latency is
 * the pipeline's (sealed batch → the core's consumer reads the event),
 * not a backlog's. */
#define PACED_EPS 100000.0  /* events/s offered, all satellites together */
#define PACED_SECONDS 3.0

static void report_pair(const char *kase, const char *sync, double v50,
			double v99, double n50, double n99, size_t n, int runs)
{
	char k[128];
	bench_base_t b50 = {"raw_nng_push_pull", n50};
	bench_base_t b99 = {"raw_nng_push_pull", n99};
	snprintf(k, sizeof k, "%s_sync_%s_latency_p50", kase, sync);
	bench_report("link", k, "us", v50, n, runs, &b50, 1);
	snprintf(k, sizeof k, "%s_sync_%s_latency_p99", kase, sync);
	bench_report("link", k, "us", v99, n, runs, &b99, 1);
}

#define MAX_ROUNDS 64
/* One figure per round; medians reported. */
enum { F_EPS, F_S50, F_S99, F_P50, F_P99, F_RATIO, NF };

/* A round: raw NNG (full and paced), then the link per sync policy
 * (full and paced), side by side, so each ratio is of one round. */
static int round_once(const char *dir, const bench_opts_t *o,
		      uint64_t per_sat, uint64_t paced, double rate,
		      double nng[NF], double lk[2][NF])
{
	double pe;
	if (run_nng(per_sat, 0, &nng[F_EPS], &nng[F_S50], &nng[F_S99]) ||
	    run_nng(paced, rate, &pe, &nng[F_P50], &nng[F_P99])) {
		fprintf(stderr, "link: raw NNG baseline failed\n");
		return 1;
	}
	const tlcm_sync_t pol[] = {TLCM_SYNC_BATCH, TLCM_SYNC_ALWAYS};
	for (size_t p = 0; p < 2; p++) {
		if (o->sync && strcmp(o->sync, tlcm_sync_name(pol[p])))
			continue;
		double *f = lk[p];
		if (run_link(dir, pol[p], per_sat, 0, &f[F_EPS], &f[F_S50],
			     &f[F_S99]) ||
		    run_link(dir, pol[p], paced, rate, &pe, &f[F_P50],
			     &f[F_P99]))
			return 1;
		f[F_RATIO] = f[F_EPS] / nng[F_EPS];
	}
	return 0;
}

int bench_suite_link(const bench_opts_t *o)
{
	double scale = o->scale > 0 ? o->scale : 1;
	uint64_t per_sat = (uint64_t)(200000 * scale);
	if (per_sat < BATCH)
		per_sat = BATCH;
	per_sat -= per_sat % BATCH;
	double rate = PACED_EPS / NSAT / BATCH; /* batches/s per satellite */
	uint64_t paced = (uint64_t)(rate * PACED_SECONDS * scale);
	if (paced < 5)
		paced = 5;
	paced *= BATCH;
	int runs = o->runs < 1 ? 1 : o->runs > MAX_ROUNDS ? MAX_ROUNDS : o->runs;
	char dir[] = "/tmp/tlcm-bench-link-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	tlcm_log_level = TLCM_LOG_WARN;
	fprintf(stderr, "link: %d rounds (after a warm-up) of raw NNG "
		"push/pull and the link under each sync policy, %d x %" PRIu64
		" events, then paced at %.0f events/s\n", runs, NSAT, per_sat,
		PACED_EPS);
	static double nng[MAX_ROUNDS][NF], lk[MAX_ROUNDS][2][NF];
	double wn[NF], wl[2][NF];
	uint64_t wu = per_sat / 10 - per_sat / 10 % BATCH;
	int rc = round_once(dir, o, wu > BATCH ? wu : BATCH, 5 * BATCH, rate,
			    wn, wl);
	for (int r = 0; !rc && r < runs; r++) {
		fprintf(stderr, "link: round %d of %d\n", r + 1, runs);
		rc = round_once(dir, o, per_sat, paced, rate, nng[r], lk[r]);
	}
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "link: cannot remove %s\n", dir);
	if (rc)
		return 1;
	double v[MAX_ROUNDS], m[NF], mn[NF];
	for (int f = 0; f < NF; f++) {
		for (int r = 0; r < runs; r++)
			v[r] = nng[r][f];
		mn[f] = bench_median(v, runs);
	}
	char pk[64];
	snprintf(pk, sizeof pk, "sat10_16B_b%d_paced%.0fk", BATCH,
		 PACED_EPS / 1000);
	const tlcm_sync_t pol[] = {TLCM_SYNC_BATCH, TLCM_SYNC_ALWAYS};
	for (size_t p = 0; p < 2; p++) {
		const char *sn = tlcm_sync_name(pol[p]);
		if (o->sync && strcmp(o->sync, sn))
			continue;
		for (int f = 0; f < NF; f++) {
			for (int r = 0; r < runs; r++)
				v[r] = lk[r][p][f];
			m[f] = bench_median(v, runs);
		}
		char kase[96];
		size_t n = (size_t)(per_sat * NSAT);
		bench_base_t bn = {"raw_nng_push_pull", mn[F_EPS]};
		snprintf(kase, sizeof kase, "sat10_16B_b%d_acked_sync_%s",
			 BATCH, sn);
		bench_report("link", kase, "events_per_s", m[F_EPS], n, runs,
			     &bn, 1);
		/* the median of each round's own ratio */
		snprintf(kase, sizeof kase, "sat10_16B_b%d_sync_%s_ratio_vs_nng",
			 BATCH, sn);
		bench_report("link", kase, "ratio", m[F_RATIO], n, runs, NULL,
			     0);
		/* at full load the latency is the queues' fill time */
		snprintf(kase, sizeof kase, "sat10_16B_b%d_saturated", BATCH);
		report_pair(kase, sn, m[F_S50], m[F_S99], mn[F_S50],
			    mn[F_S99], n, runs);
		report_pair(pk, sn, m[F_P50], m[F_P99], mn[F_P50], mn[F_P99],
			    (size_t)(paced * NSAT), runs);
	}
	return 0;
}
