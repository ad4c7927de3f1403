/* bench_link.c — `tinylcm-bench link`: 10 satellites → 1 core on loopback
 * in one process, through the real link pieces (nodes/link: durable
 * queue, sender, receiver storing before acknowledging), per store sync
 * policy; and in the same run raw NNG push/pull over tcp:// with the same
 * batching and no persistence, no acks, as the baseline.
 *
 * Each satellite thread builds batches of BATCH 16-byte events (a
 * LinkBatch, as link.tx does), stores each in its queue (its own store)
 * and the sender ships it; the core's consumer takes stored batches,
 * reads every event and marks them delivered. events/s is over the whole
 * transfer (first put to last event taken); latency is per event, from
 * its wall-clock stamp at batching to the consumer reading it, at full
 * load: each satellite's queue holds at most 8 batches (policy block),
 * the push sockets NNG's default buffers.
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
	tlcm_fbb_ref_t v = tlcm_LinkBatch_messages_create(b, refs, BATCH);
	tlcm_LinkBatch_start(b);
	tlcm_LinkBatch_add_seq(b, seq);
	tlcm_LinkBatch_add_messages(b, v);
	tlcm_fbb_ref_t bt = tlcm_LinkBatch_end(b);
	tlcm_LinkFrame_start(b);
	tlcm_LinkFrame_add_batch(b, bt);
	return tlcm_LinkFrame_finish_size_prefixed(b, tlcm_LinkFrame_end(b),
						   len);
}

/* latency histogram: 10 µs buckets up to 1 s */
#define LBUCKETS 100000
typedef struct {
	uint64_t *h, n;
} lat_t;

static void lat_add(lat_t *l, uint64_t ns)
{
	uint64_t us = ns / 10000;
	l->h[us < LBUCKETS ? us : LBUCKETS - 1]++;
	l->n++;
}

static double lat_pct(const lat_t *l, double p)
{
	uint64_t want = (uint64_t)((double)l->n * p), seen = 0;
	for (size_t i = 0; i < LBUCKETS; i++) {
		seen += l->h[i];
		if (seen > want)
			return (double)i * 10;
	}
	return (double)LBUCKETS * 10;
}

typedef struct {
	link_txq_t *q;
	uint64_t batches;
	int idx;
} sat_arg_t;

static void *sat_main(void *p)
{
	sat_arg_t *a = p;
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, 1 << 16);
	for (uint64_t s = 1; s <= a->batches; s++) {
		size_t len;
		const void *fr = build(&b, s, &len);
		uint64_t nd;
		while (link_txq_put(a->q, link_txq_next_seq(a->q), fr, len, 0,
				    &nd) == TLCM_EAGAIN)
			link_txq_wait_room(a->q, len, 100000000u);
	}
	tlcm_fbb_fini(&b);
	return NULL;
}

static int run_link(const char *dir, tlcm_sync_t sync, uint64_t per_sat,
		    double *eps, double *p50, double *p99)
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
	uint64_t batches = per_sat / BATCH;
	uint64_t t0 = bench_now_ns();
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
		args[i] = (sat_arg_t){q[i], batches, i};
		pthread_create(&th[i], NULL, sat_main, &args[i]);
	}
	lat_t lat = {calloc(LBUCKETS, sizeof(uint64_t)), 0};
	uint64_t want = batches * BATCH * NSAT, got = 0;
	while (got < want) {
		const link_rx_batch_t *x = link_receiver_take(r, 1000000000u);
		if (!x) {
			link_receiver_commit(r);
			continue;
		}
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
} push_arg_t;

static void *push_main(void *p)
{
	push_arg_t *a = p;
	nng_socket s;
	if (nng_push0_open(&s) || nng_dial(s, a->url, NULL, 0))
		return NULL;
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, 1 << 16);
	for (uint64_t i = 1; i <= a->batches; i++) {
		size_t len;
		const void *fr = build(&b, i, &len);
		nng_send(s, (void *)fr, len, 0);
	}
	tlcm_fbb_fini(&b);
	nng_msleep(200);
	nng_close(s);
	return NULL;
}

static int run_nng(uint64_t per_sat, double *eps, double *p50, double *p99)
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
	push_arg_t a = {url, batches};
	uint64_t t0 = bench_now_ns();
	for (int i = 0; i < NSAT; i++)
		pthread_create(&th[i], NULL, push_main, &a);
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

int bench_suite_link(const bench_opts_t *o)
{
	uint64_t per_sat = (uint64_t)(200000 * (o->scale > 0 ? o->scale : 1));
	if (per_sat < BATCH)
		per_sat = BATCH;
	per_sat -= per_sat % BATCH;
	char dir[] = "/tmp/tlcm-bench-link-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	tlcm_log_level = TLCM_LOG_WARN;
	double ne, n50, n99;
	fprintf(stderr, "link: raw NNG push/pull, %d x %" PRIu64 " events\n",
		NSAT, per_sat);
	if (run_nng(per_sat, &ne, &n50, &n99)) {
		fprintf(stderr, "link: raw NNG baseline failed\n");
		return 1;
	}
	const tlcm_sync_t pol[] = {TLCM_SYNC_BATCH, TLCM_SYNC_ALWAYS};
	for (size_t p = 0; p < 2; p++) {
		if (o->sync && strcmp(o->sync, tlcm_sync_name(pol[p])))
			continue;
		double e, p50, p99;
		fprintf(stderr, "link: %d satellites -> 1 core, sync %s\n",
			NSAT, tlcm_sync_name(pol[p]));
		if (run_link(dir, pol[p], per_sat, &e, &p50, &p99))
			return 1;
		char kase[96];
		bench_base_t bn = {"raw_nng_push_pull", ne};
		snprintf(kase, sizeof kase, "sat10_16B_b%d_acked_sync_%s", BATCH,
			 tlcm_sync_name(pol[p]));
		bench_report("link", kase, "events_per_s", e,
			     (size_t)(per_sat * NSAT), 1, &bn, 1);
		snprintf(kase, sizeof kase, "sat10_16B_b%d_sync_%s_ratio_vs_nng",
			 BATCH, tlcm_sync_name(pol[p]));
		bench_report("link", kase, "ratio", e / ne,
			     (size_t)(per_sat * NSAT), 1, NULL, 0);
		bench_base_t b50 = {"raw_nng_push_pull", n50};
		bench_base_t b99 = {"raw_nng_push_pull", n99};
		snprintf(kase, sizeof kase, "sat10_16B_b%d_sync_%s_latency_p50",
			 BATCH, tlcm_sync_name(pol[p]));
		bench_report("link", kase, "us", p50, (size_t)(per_sat * NSAT),
			     1, &b50, 1);
		snprintf(kase, sizeof kase, "sat10_16B_b%d_sync_%s_latency_p99",
			 BATCH, tlcm_sync_name(pol[p]));
		bench_report("link", kase, "us", p99, (size_t)(per_sat * NSAT),
			     1, &b99, 1);
	}
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd) ? 1 : 0;
}
