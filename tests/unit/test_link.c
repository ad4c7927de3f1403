/* test_link.c — the satellite link's pieces (nodes/link): the durable
 * batch queue (order, acks, bounds with drop_oldest and block, state
 * across a reopen), the frame checks against a corpus of bad frames
 * (truncated, forged, wrong ids, oversize), and a receiver driven by raw
 * clients over tcp:// on loopback: acks only after storing, cumulative,
 * de-duplication by (satellite, sequence) that survives a reopen,
 * delivery again of what was not committed, a bad peer disconnected while
 * a good one goes on, a sender delivering a queue end to end, and
 * back-pressure from a slow consumer slowing the sender without a
 * reconnect, a satellite reconnecting while its old connection is held
 * back, and a reader whose stream was closed under it ending.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/log.h"
#include "engine/store.h"
#include "nodes/link/receiver.h"
#include "nodes/link/sender.h"
#include "nodes/link/txq.h"
#include "nodes/link/wire.h"
#include "tests/tlcm_test.h"

static char root[256];

static tlcm_store_t *open_store(const char *name)
{
	char p[512], why[600];
	snprintf(p, sizeof p, "%s/%s", root, name);
	tlcm_store_opts_t o = {.sync = TLCM_SYNC_NEVER};
	tlcm_store_t *s = NULL;
	int rc = tlcm_store_open(&s, p, &o, why, sizeof why);
	if (rc)
		fprintf(stderr, "open %s: %s\n", p, why);
	CHECK_INT(rc, 0);
	return s;
}

/* A batch frame (size-prefixed) with n Blob-less messages; caller frees
 * with tlcm_fbb_fini. */
static const void *batch_frame(tlcm_fbb_t *b, uint64_t seq, int n,
			       size_t *len)
{
	tlcm_fbb_reset(b);
	tlcm_fbb_ref_t refs[16];
	tlcm_fbb_ref_t tag = tlcm_fbb_cstring(b, "t");
	for (int i = 0; i < n; i++) {
		uint8_t d[3] = {(uint8_t)seq, (uint8_t)i, 7};
		tlcm_fbb_ref_t dv = tlcm_LinkMsg_data_create(b, d, 3);
		tlcm_LinkMsg_start(b);
		tlcm_LinkMsg_add_type(b, 0x424f4c42); /* "BLOB" */
		tlcm_LinkMsg_add_tag(b, tag);
		tlcm_LinkMsg_add_trace(b, seq * 100 + (uint64_t)i);
		tlcm_LinkMsg_add_data(b, dv);
		refs[i] = tlcm_LinkMsg_end(b);
	}
	const void *fr;
	return link_build_batch(b, seq, 0, refs, (size_t)n, &fr, len) ? NULL
								      : fr;
}

/* ---- the queue ---- */

static void test_txq(void)
{
	tlcm_store_t *s = open_store("q");
	char why[300];
	link_txq_t *q;
	link_txq_limits_t lim = {.max_batches = 4};
	CHECK_INT(link_txq_open(&q, s, "link.tx/t", &lim, why, sizeof why), 0);
	CHECK_UINT(link_txq_next_seq(q), 1);
	uint64_t nd;
	char f[8] = "frame-1";
	CHECK_INT(link_txq_put(q, 2, f, 8, 0, &nd), TLCM_EINVAL);
	for (uint64_t i = 1; i <= 3; i++) {
		f[6] = (char)('0' + i);
		CHECK_INT(link_txq_put(q, i, f, 8, i * 10, &nd), 0);
		CHECK_UINT(nd, 0);
	}
	uint64_t seq;
	void *fr;
	size_t len;
	CHECK_INT(link_txq_next(q, 1, 0, &seq, &fr, &len), 0);
	CHECK_UINT(seq, 2);
	CHECK_STR((char *)fr, "frame-2");
	free(fr);
	CHECK_INT(link_txq_next(q, 3, 0, &seq, &fr, &len), TLCM_ENOENT);
	CHECK_INT(link_txq_ack(q, 2), 0);
	CHECK_INT(link_txq_ack(q, 1), 0); /* cumulative: older is a no-op */
	link_txq_stats_t st;
	link_txq_stats(q, &st);
	CHECK_UINT(st.depth, 1);
	CHECK_UINT(st.acked, 2);
	CHECK_UINT(st.trace, 30);
	/* fill past 4 batches: drop_oldest drops and counts */
	for (uint64_t i = 4; i <= 7; i++) {
		f[6] = (char)('0' + i);
		CHECK_INT(link_txq_put(q, i, f, 8, 0, &nd), 0);
		CHECK_UINT(nd, i == 7 ? 1u : 0u);
	}
	link_txq_stats(q, &st);
	CHECK_UINT(st.depth, 4);
	CHECK_UINT(st.dropped, 1);
	CHECK_INT(link_txq_next(q, 0, 0, &seq, &fr, &len), 0);
	CHECK_UINT(seq, 4); /* 3 was dropped */
	free(fr);
	link_txq_free(q);
	/* reopen: everything is still there, and the block policy refuses */
	lim.block = true;
	CHECK_INT(link_txq_open(&q, s, "link.tx/t", &lim, why, sizeof why), 0);
	link_txq_stats(q, &st);
	CHECK_UINT(st.depth, 4);
	CHECK_UINT(st.last_seq, 7);
	CHECK_UINT(st.acked, 2);
	CHECK_UINT(st.dropped, 1);
	CHECK_UINT(st.trace, 30);
	CHECK_INT(link_txq_put(q, 8, f, 8, 0, &nd), TLCM_EAGAIN);
	CHECK_UINT(link_txq_next_seq(q), 8);
	CHECK_INT(link_txq_ack(q, 5), 0);
	CHECK_INT(link_txq_put(q, 8, f, 8, 0, &nd), 0);
	CHECK_INT(link_txq_ack(q, 100), 0); /* more than we sent: up to 8 */
	link_txq_stats(q, &st);
	CHECK_UINT(st.depth, 0);
	CHECK_UINT(st.acked, 8);
	link_txq_limits_t small = {.max_bytes = 4};
	link_txq_free(q);
	CHECK_INT(link_txq_open(&q, s, "link.tx/t", &small, why, sizeof why),
		  0);
	CHECK_INT(link_txq_put(q, 9, f, 8, 0, &nd), TLCM_ETOOBIG);
	link_txq_free(q);
	tlcm_store_close(s);
}

/* ---- frame checks: the rejection corpus ---- */

static int check(const void *buf, size_t len)
{
	link_kind_t k;
	char why[300];
	/* copy into aligned memory at the builder's offset, as reads do */
	uint8_t *m = malloc(len + LINK_BODY + 8);
	memcpy(m + LINK_BODY, buf, len);
	int rc = link_frame_check(m + LINK_BODY, len, &k, why, sizeof why);
	free(m);
	return rc;
}

static void test_frames(void)
{
	tlcm_fbb_t b;
	CHECK_INT(tlcm_fbb_init(&b, 0), 0);
	size_t len;
	const uint8_t *fr = batch_frame(&b, 5, 3, &len);
	CHECK(fr != NULL);
	CHECK_INT(check(fr + 4, len - 4), 0);
	/* every truncation into what the frame refers to is refused (only
	 * the vectors' tail padding, under 8 bytes, may go) */
	int accepted = 0;
	for (size_t n = 0; n + 8 < len - 4; n++)
		accepted += check(fr + 4, n) != TLCM_EBADMSG;
	CHECK_INT(accepted, 0);
	/* a forged identifier */
	uint8_t *x = malloc(len);
	memcpy(x, fr, len);
	x[4 + 4] = 'X';
	CHECK_INT(check(x + 4, len - 4), TLCM_EBADMSG);
	/* offsets pointing out of the buffer: flip each byte, never a crash;
	 * a flip of the root offset must be refused */
	memcpy(x, fr, len);
	x[4] ^= 0x80;
	CHECK_INT(check(x + 4, len - 4), TLCM_EBADMSG);
	for (size_t i = 4; i < len; i++) {
		memcpy(x, fr, len);
		x[i] ^= 0xff;
		(void)check(x + 4, len - 4);
	}
	free(x);
	/* sequence 0 */
	fr = batch_frame(&b, 0, 1, &len);
	CHECK_INT(check(fr + 4, len - 4), TLCM_EBADMSG);
	/* no member, two members */
	tlcm_fbb_reset(&b);
	tlcm_LinkFrame_start(&b);
	fr = tlcm_LinkFrame_finish(&b, tlcm_LinkFrame_end(&b), &len);
	CHECK_INT(check(fr, len), TLCM_EBADMSG);
	tlcm_fbb_reset(&b);
	tlcm_LinkAck_start(&b);
	tlcm_LinkAck_add_seq(&b, 1);
	tlcm_fbb_ref_t a = tlcm_LinkAck_end(&b);
	tlcm_LinkHealth_start(&b);
	tlcm_fbb_ref_t h = tlcm_LinkHealth_end(&b);
	tlcm_LinkFrame_start(&b);
	tlcm_LinkFrame_add_ack(&b, a);
	tlcm_LinkFrame_add_health(&b, h);
	fr = tlcm_LinkFrame_finish(&b, tlcm_LinkFrame_end(&b), &len);
	CHECK_INT(check(fr, len), TLCM_EBADMSG);
	/* satellite ids */
	const char *bad[] = {"", "a/b", "..", ".", "x y", "s\xc3\xa9",
			     "0123456789012345678901234567890123456789012345"
			     "6789012345678901234", NULL};
	for (int i = 0; bad[i]; i++) {
		link_hello_info_t hi = {.satellite = bad[i]};
		CHECK_INT(link_build_hello(&b, &hi, (const void **)&fr, &len),
			  0);
		CHECK_INT(check(fr + 4, len - 4), TLCM_EBADMSG);
	}
	link_hello_info_t ok = {.satellite = "pi_bms-keller.1"};
	CHECK_INT(link_build_hello(&b, &ok, (const void **)&fr, &len), 0);
	CHECK_INT(check(fr + 4, len - 4), 0);
	/* garbage */
	uint8_t g[256];
	unsigned seed = 7;
	for (int round = 0; round < 2000; round++) {
		for (size_t i = 0; i < sizeof g; i++)
			g[i] = (uint8_t)rand_r(&seed);
		size_t n = (size_t)rand_r(&seed) % sizeof g;
		memcpy(g + 4, "LNKF", 4);
		CHECK_INT(check(g, n), TLCM_EBADMSG);
	}
	tlcm_fbb_fini(&b);
}

/* ---- a raw client against the receiver ---- */

typedef struct {
	nng_stream *s;
	nng_aio *aio;
	uint8_t *buf;
	size_t cap, len;
	tlcm_fbb_t b;
} client_t;

static int client_open(client_t *c, int port)
{
	memset(c, 0, sizeof *c);
	char url[64];
	snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
	nng_stream_dialer *d;
	if (nng_stream_dialer_alloc(&d, url) ||
	    nng_aio_alloc(&c->aio, NULL, NULL))
		return -1;
	nng_aio_set_timeout(c->aio, 5000);
	nng_stream_dialer_dial(d, c->aio);
	nng_aio_wait(c->aio);
	int rv = nng_aio_result(c->aio);
	if (!rv)
		c->s = nng_aio_get_output(c->aio, 0);
	nng_stream_dialer_free(d);
	tlcm_fbb_init(&c->b, 0);
	return rv;
}

static void client_close(client_t *c)
{
	if (c->s) {
		nng_stream_close(c->s);
		nng_stream_free(c->s);
	}
	nng_aio_free(c->aio);
	free(c->buf);
	tlcm_fbb_fini(&c->b);
}

/* Read a frame: its kind, *ack for an ack; negative when closed. */
static int client_read(client_t *c, uint64_t *ack)
{
	char why[300];
	int rc = link_read_frame(c->s, c->aio, &c->buf, &c->cap, &c->len,
				 1 << 20, 5000, why, sizeof why);
	if (rc)
		return rc;
	link_kind_t k;
	rc = link_frame_check(c->buf + LINK_BODY, c->len, &k, why, sizeof why);
	if (rc)
		return rc;
	if (k == LINK_F_ACK)
		*ack = tlcm_LinkAck_seq(tlcm_LinkFrame_ack(
			tlcm_LinkFrame_as_root(c->buf + LINK_BODY)));
	return (int)k;
}

static int client_hello(client_t *c, const char *sat, const char *secret)
{
	link_hello_info_t h = {.satellite = sat, .version = "test",
			       .profile = "LOW_POWER", .cpus = 1,
			       .memory = 512u << 20, .secret = secret};
	const void *fr;
	size_t len;
	link_build_hello(&c->b, &h, &fr, &len);
	return link_write(c->s, c->aio, fr, len, 5000);
}

static int client_batch(client_t *c, uint64_t seq, int n)
{
	size_t len;
	const void *fr = batch_frame(&c->b, seq, n, &len);
	return link_write(c->s, c->aio, fr, len, 5000);
}

static link_receiver_t *rx_open(tlcm_store_t *s, const char *secret)
{
	char why[300];
	link_receiver_cfg_t cfg = {
		.log_id = "rx", .url = "tcp://127.0.0.1:0", .secret = secret,
		.max_frame = 4096, .hello_ns = 5000000000u,
		.idle_ns = 10000000000u, .max_pending = 1 << 20, .store = s,
		.family = "link.rx/rx",
	};
	link_receiver_t *r = NULL;
	int rc = link_receiver_new(&r, &cfg, why, sizeof why);
	if (rc)
		fprintf(stderr, "receiver: %s\n", why);
	CHECK_INT(rc, 0);
	return r;
}

static void test_receiver(void)
{
	tlcm_store_t *s = open_store("rx");
	link_receiver_t *r = rx_open(s, "sesame");
	int port = link_receiver_port(r);
	CHECK(port > 0);
	client_t c, bad;
	uint64_t ack = 99;
	CHECK_INT(client_open(&c, port), 0);
	CHECK_INT(client_hello(&c, "sat-1", "sesame"), 0);
	CHECK_INT(client_read(&c, &ack), LINK_F_ACK);
	CHECK_UINT(ack, 0);
	CHECK_INT(client_batch(&c, 1, 2), 0);
	CHECK_INT(client_read(&c, &ack), LINK_F_ACK);
	CHECK_UINT(ack, 1);
	/* a bad peer meanwhile: garbage after a valid length */
	CHECK_INT(client_open(&bad, port), 0);
	uint8_t junk[64] = {60, 0, 0, 0};
	memset(junk + 4, 0xab, 60);
	CHECK_INT(link_write(bad.s, bad.aio, junk, 64, 5000), 0);
	uint64_t dummy;
	CHECK_INT(client_read(&bad, &dummy), LINK_F_GOODBYE);
	CHECK(client_read(&bad, &dummy) < 0); /* then closed */
	client_close(&bad);
	/* a resend is a duplicate, acknowledged again; then 2 and 3 */
	CHECK_INT(client_batch(&c, 1, 2), 0);
	CHECK_INT(client_read(&c, &ack), LINK_F_ACK);
	CHECK_UINT(ack, 1);
	CHECK_INT(client_batch(&c, 2, 1), 0);
	CHECK_INT(client_read(&c, &ack), LINK_F_ACK);
	CHECK_UINT(ack, 2);
	CHECK_INT(client_batch(&c, 3, 4), 0);
	CHECK_INT(client_read(&c, &ack), LINK_F_ACK);
	CHECK_UINT(ack, 3);
	/* wrong secret, oversize frame, a frame before hello */
	client_t w;
	CHECK_INT(client_open(&w, port), 0);
	CHECK_INT(client_hello(&w, "sat-2", "guess"), 0);
	CHECK_INT(client_read(&w, &dummy), LINK_F_GOODBYE);
	client_close(&w);
	CHECK_INT(client_open(&w, port), 0);
	uint8_t big[4] = {0, 0, 1, 0}; /* 64 KiB > max_frame */
	CHECK_INT(link_write(w.s, w.aio, big, 4, 5000), 0);
	CHECK_INT(client_read(&w, &dummy), LINK_F_GOODBYE);
	client_close(&w);
	CHECK_INT(client_open(&w, port), 0);
	CHECK_INT(client_batch(&w, 1, 1), 0);
	CHECK_INT(client_read(&w, &dummy), LINK_F_GOODBYE);
	client_close(&w);
	link_receiver_stats_t st;
	link_receiver_stats(r, &st);
	CHECK_UINT(st.batches, 3);
	CHECK_UINT(st.messages, 7);
	CHECK_UINT(st.duplicates, 1);
	CHECK_UINT(st.rejected, 4);
	/* delivery in order; commit the first only */
	const link_rx_batch_t *x = link_receiver_take(r, 1000000000u);
	CHECK(x && x->seq == 1 && !strcmp(x->sat, "sat-1"));
	CHECK_INT(link_receiver_commit(r), 0);
	x = link_receiver_take(r, 1000000000u);
	CHECK(x && x->seq == 2);
	client_close(&c);
	link_receiver_free(r);
	/* reopen: 2 and 3 come again (2 was taken, not committed); the
	 * high-water mark survived: a resend of 3 is a duplicate */
	r = rx_open(s, "sesame");
	x = link_receiver_take(r, 0);
	CHECK(x && x->seq == 2);
	x = link_receiver_take(r, 0);
	CHECK(x && x->seq == 3);
	CHECK(link_receiver_take(r, 0) == NULL);
	port = link_receiver_port(r);
	CHECK_INT(client_open(&c, port), 0);
	CHECK_INT(client_hello(&c, "sat-1", "sesame"), 0);
	CHECK_INT(client_read(&c, &ack), LINK_F_ACK);
	CHECK_UINT(ack, 3);
	CHECK_INT(client_batch(&c, 3, 1), 0);
	CHECK_INT(client_read(&c, &ack), LINK_F_ACK);
	CHECK_UINT(ack, 3);
	link_receiver_stats(r, &st);
	CHECK_UINT(st.duplicates, 1);
	CHECK_UINT(st.batches, 0);
	client_close(&c);
	CHECK_INT(link_receiver_commit(r), 0);
	link_receiver_free(r);
	r = rx_open(s, "sesame");
	CHECK(link_receiver_take(r, 0) == NULL); /* all delivered */
	link_receiver_free(r);
	/* the satellite's record */
	void *v;
	size_t vl;
	CHECK_INT(tlcm_store_get(s, "satellites", "sat-1", 5, &v, &vl), 0);
	char *js = strndup(v, vl);
	CHECK_CONTAINS(js, "\"profile\":\"LOW_POWER\"");
	CHECK_CONTAINS(js, "\"stored_seq\":3");
	free(js);
	free(v);
	tlcm_store_close(s);
}

/* A sender delivering its whole queue to a receiver. */
static void test_end_to_end(void)
{
	tlcm_store_t *ss = open_store("e2e-sat"), *cs = open_store("e2e-core");
	link_receiver_t *r = rx_open(cs, NULL);
	char url[64], why[300];
	snprintf(url, sizeof url, "tcp://127.0.0.1:%d", link_receiver_port(r));
	link_txq_t *q;
	link_txq_limits_t lim = {0};
	CHECK_INT(link_txq_open(&q, ss, "link.tx/t", &lim, why, sizeof why), 0);
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, 0);
	uint64_t nd;
	for (uint64_t i = 1; i <= 50; i++) {
		size_t len;
		const void *fr = batch_frame(&b, i, 2, &len);
		CHECK_INT(link_txq_put(q, i, fr, len, 0, &nd), 0);
	}
	const char *urls[] = {"tcp://127.0.0.1:1", url}; /* first refuses */
	link_sender_cfg_t sc = {
		.log_id = "tx", .hello = {.satellite = "e2e"}, .urls = urls,
		.nurls = 2, .backoff_min_ns = 1000000,
		.backoff_max_ns = 20000000, .timeout_ns = 5000000000u, .q = q,
	};
	link_sender_t *snd;
	CHECK_INT(link_sender_new(&snd, &sc, why, sizeof why), 0);
	uint64_t expect = 1;
	while (expect <= 50) {
		const link_rx_batch_t *x = link_receiver_take(r, 10000000000u);
		CHECK(x != NULL);
		if (!x)
			break;
		CHECK_UINT(x->seq, expect);
		expect++;
	}
	CHECK(link_txq_wait_room(q, 0, 10000000000u)); /* all acked */
	link_sender_stats_t st;
	link_sender_stats(snd, &st);
	CHECK(st.failures >= 1);
	CHECK_UINT(st.url, 1);
	link_sender_free(snd);
	link_txq_free(q);
	link_receiver_free(r);
	tlcm_fbb_fini(&b);
	tlcm_store_close(ss);
	tlcm_store_close(cs);
}

/* A batch frame with one message of `bytes` bytes (caller's builder). */
static const void *big_frame(tlcm_fbb_t *b, uint64_t seq, size_t bytes,
			     size_t *len)
{
	tlcm_fbb_reset(b);
	uint8_t *d = calloc(1, bytes);
	d[0] = (uint8_t)seq;
	tlcm_fbb_ref_t dv = tlcm_LinkMsg_data_create(b, d, bytes);
	free(d);
	tlcm_LinkMsg_start(b);
	tlcm_LinkMsg_add_type(b, 0x424f4c42);
	tlcm_LinkMsg_add_trace(b, seq);
	tlcm_LinkMsg_add_data(b, dv);
	tlcm_fbb_ref_t m = tlcm_LinkMsg_end(b);
	const void *fr;
	return link_build_batch(b, seq, 0, &m, 1, &fr, len) ? NULL : fr;
}

/* Back-pressure slows the sender, it does not make it reconnect: a core
 * whose consumer takes nothing for many times the sender's write timeout
 * (max_pending far below what is queued, so the core stops reading and
 * the sockets' buffers fill) keeps the one connection; once the consumer
 * takes, every batch arrives once, in order, and is acknowledged. */
static void test_backpressure(void)
{
	tlcm_store_t *ss = open_store("bp-sat"), *cs = open_store("bp-core");
	char url[64], why[300];
	link_receiver_cfg_t rc = {
		.log_id = "rx", .url = "tcp://127.0.0.1:0",
		.max_frame = 1 << 20, .hello_ns = 5000000000u,
		.idle_ns = 10000000000u, .max_pending = 64 << 10, .store = cs,
		.family = "link.rx/bp",
	};
	link_receiver_t *r = NULL;
	CHECK_INT(link_receiver_new(&r, &rc, why, sizeof why), 0);
	snprintf(url, sizeof url, "tcp://127.0.0.1:%d", link_receiver_port(r));
	link_txq_t *q;
	link_txq_limits_t lim = {0};
	CHECK_INT(link_txq_open(&q, ss, "link.tx/bp", &lim, why, sizeof why),
		  0);
	enum { N = 40, BYTES = 512 << 10 };
	tlcm_fbb_t b;
	tlcm_fbb_init(&b, 0);
	uint64_t nd;
	for (uint64_t i = 1; i <= N; i++) {
		size_t len;
		const void *fr = big_frame(&b, i, BYTES, &len);
		CHECK_INT(link_txq_put(q, i, fr, len, 0, &nd), 0);
	}
	const char *urls[] = {url};
	link_sender_cfg_t sc = {
		.log_id = "tx", .hello = {.satellite = "bp"}, .urls = urls,
		.nurls = 1, .backoff_min_ns = 1000000,
		.backoff_max_ns = 20000000, .timeout_ns = 200000000u, .q = q,
	};
	link_sender_t *snd;
	CHECK_INT(link_sender_new(&snd, &sc, why, sizeof why), 0);
	usleep(2000000); /* ten write timeouts with nothing taken */
	link_sender_stats_t st;
	link_sender_stats(snd, &st);
	CHECK(st.connected);
	CHECK_UINT(st.connects, 1);
	uint64_t expect = 1;
	while (expect <= N) {
		const link_rx_batch_t *x = link_receiver_take(r, 10000000000u);
		CHECK(x != NULL);
		if (!x)
			break;
		CHECK_UINT(x->seq, expect);
		expect++;
		link_receiver_commit(r);
	}
	CHECK(link_txq_wait_room(q, 0, 10000000000u)); /* all acked */
	link_sender_stats(snd, &st);
	CHECK_UINT(st.connects, 1);
	CHECK_UINT(st.failures, 0);
	link_receiver_stats_t rs;
	link_receiver_stats(r, &rs);
	CHECK_UINT(rs.connections, 1);
	CHECK_UINT(rs.duplicates, 0);
	CHECK_UINT(rs.batches, N);
	link_sender_free(snd);
	link_txq_free(q);
	link_receiver_free(r);
	tlcm_fbb_fini(&b);
	tlcm_store_close(ss);
	tlcm_store_close(cs);
}

/* A satellite reconnects while the core holds its old connection back
 * (more than max_pending waits for delivery): the old connection is
 * closed at once — not kept, acknowledging every LINK_HOLD_ACK_NS, until
 * there is room — and the new one is greeted and goes on. */
static void test_superseded(void)
{
	tlcm_store_t *s = open_store("sup");
	char why[300];
	link_receiver_cfg_t cfg = {
		.log_id = "rx", .url = "tcp://127.0.0.1:0", .max_frame = 4096,
		.hello_ns = 5000000000u, .idle_ns = 10000000000u,
		.max_pending = 1024, .store = s, .family = "link.rx/sup",
	};
	link_receiver_t *r = NULL;
	CHECK_INT(link_receiver_new(&r, &cfg, why, sizeof why), 0);
	if (!r)
		return;
	int port = link_receiver_port(r);
	client_t a, b;
	uint64_t ack = 99;
	CHECK_INT(client_open(&a, port), 0);
	CHECK_INT(client_hello(&a, "sat-1", NULL), 0);
	CHECK_INT(client_read(&a, &ack), LINK_F_ACK);
	/* two batches of 16 messages pass 1024 bytes pending: held back */
	CHECK_INT(client_batch(&a, 1, 16), 0);
	CHECK_INT(client_read(&a, &ack), LINK_F_ACK);
	CHECK_INT(client_batch(&a, 2, 16), 0);
	CHECK_INT(client_read(&a, &ack), LINK_F_ACK);
	CHECK_UINT(ack, 2);
	CHECK_INT(client_read(&a, &ack), LINK_F_ACK); /* a keep-alive */
	CHECK_UINT(ack, 2);
	CHECK_INT(client_open(&b, port), 0);
	CHECK_INT(client_hello(&b, "sat-1", NULL), 0);
	CHECK_INT(client_read(&b, &ack), LINK_F_ACK);
	CHECK_UINT(ack, 2);
	/* the old one: what was in flight, then closed (held back, it would
	 * go on acknowledging every 250 ms: 40 reads are 10 s of that) */
	int rc = LINK_F_ACK;
	for (int i = 0; i < 40 && rc == LINK_F_ACK; i++)
		rc = client_read(&a, &ack);
	CHECK_INT(rc, TLCM_ECLOSED);
	client_close(&a);
	const link_rx_batch_t *x = link_receiver_take(r, 1000000000u);
	CHECK(x && x->seq == 1);
	x = link_receiver_take(r, 1000000000u);
	CHECK(x && x->seq == 2);
	CHECK_INT(link_receiver_commit(r), 0);
	CHECK_INT(client_batch(&b, 3, 1), 0);
	CHECK_INT(client_read(&b, &ack), LINK_F_ACK);
	CHECK_UINT(ack, 3);
	client_close(&b);
	link_receiver_stats_t st;
	link_receiver_stats(r, &st);
	CHECK_UINT(st.connections, 2);
	CHECK_UINT(st.batches, 3);
	CHECK_UINT(st.duplicates, 0);
	link_receiver_free(r);
	tlcm_store_close(s);
}

/* NNG 1.5 leaves a receive begun on a closed stream waiting (forever
 * without a timeout), which is where a sender's reader can be when its
 * session closes the stream: link_join_io must still end it. */
typedef struct {
	client_t *c;
	int rc;
} closer_t;

static void *close_then_read(void *p)
{
	closer_t *x = p;
	uint8_t b[4];
	nng_stream_close(x->c->s);
	x->rc = link_read(x->c->s, x->c->aio, b, sizeof b, -1);
	return NULL;
}

static void test_join_io(void)
{
	tlcm_store_t *s = open_store("join");
	link_receiver_t *r = rx_open(s, NULL);
	client_t c;
	CHECK_INT(client_open(&c, link_receiver_port(r)), 0);
	closer_t x = {&c, 1};
	pthread_t t;
	CHECK_INT(pthread_create(&t, NULL, close_then_read, &x), 0);
	link_join_io(t, c.aio); /* a plain join hangs here */
	CHECK_INT(x.rc, TLCM_ECLOSED);
	client_close(&c);
	link_receiver_free(r);
	tlcm_store_close(s);
}

int main(void)
{
	snprintf(root, sizeof root, "/tmp/tlcm-test-link-%d", (int)getpid());
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", root, root);
	if (system(cmd))
		return 1;
	tlcm_log_level = TLCM_LOG_ERROR;
	test_txq();
	test_frames();
	test_receiver();
	test_end_to_end();
	test_backpressure();
	test_superseded();
	test_join_io();
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	if (system(cmd))
		return 1;
	return tlcm_test_done();
}
