/* sink.c — node `sink`: counts and checks what arrives (test sink).
 *
 * For Blob messages it verifies the FlatBuffer, the checksum and that seq
 * only grows (counting gaps, i.e. dropped messages, and reorderings); for
 * any message it records the latency from commit (ts_ns) to arrival in a
 * log-linear histogram, and counts the messages tlcm_msg_verified()
 * calls verified by their producer. At end of stream it logs a summary,
 * optionally writes it as JSON to `report`, and fails when `expect` is
 * set and the count or the checks disagree.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "engine/log.h"
#include "engine/node.h"
#include "fb/blob_fb.h"
#include "fb/test_state_fb.h"
#include "nodes/test/test_nodes.h"

#define SUB 16 /* sub-buckets per power of two */

typedef struct {
	uint64_t count, bytes, bad, gaps, missing, reordered, last_seq;
	uint64_t hist[64 * SUB];
	uint64_t first_ns, last_ns;
	uint64_t verified; /* marked verified by a producer we trust */
} sink_t;

static const tlcm_port_desc_t inputs[] = {
	{"in", "*", "messages to count (Blob messages are checked)", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"expect", TLCM_P_INT, "0", "messages that must arrive, intact and in "
	 "order; 0 = no expectation", 0, 1e15, NULL, 0},
	{"verify", TLCM_P_BOOL, "true", "verify Blob FlatBuffers and checksums",
	 0, 0, NULL, 0},
	{"report", TLCM_P_PATH, "", "write the summary as JSON to this file "
	 "(\"-\": stdout)", 0, 0, NULL, 0},
	{0},
};

static unsigned bucket(uint64_t ns)
{
	if (ns < SUB)
		return (unsigned)ns;
	unsigned lg = 63 - (unsigned)__builtin_clzll(ns);
	unsigned sub = (unsigned)((ns >> (lg - 4)) & (SUB - 1));
	return (lg - 3) * SUB + sub;
}

static uint64_t bucket_value(unsigned b)
{
	if (b < SUB)
		return b;
	unsigned lg = b / SUB + 3, sub = b % SUB;
	return ((uint64_t)(SUB + sub) << (lg - 4)) +
	       ((uint64_t)1 << (lg - 4)) / 2;
}

static uint64_t percentile(const sink_t *s, double p)
{
	uint64_t total = 0, seen = 0;
	for (unsigned b = 0; b < 64 * SUB; b++)
		total += s->hist[b]; /* this run's messages, not restored ones */
	uint64_t want = (uint64_t)((double)total * p);
	for (unsigned b = 0; b < 64 * SUB; b++) {
		seen += s->hist[b];
		if (seen > want)
			return bucket_value(b);
	}
	return 0;
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	sink_t *s = st;
	uint64_t now = tlcm_now_ns();
	(void)port;
	if (!s->count)
		s->first_ns = now;
	s->last_ns = now;
	s->count++;
	s->bytes += m->size;
	s->hist[bucket(now > m->ts_ns ? now - m->ts_ns : 0)]++;
	s->verified += tlcm_msg_verified(ctx, m);
	if (memcmp(m->type, tlcm_Blob_IDENTIFIER, 4) != 0 ||
	    !tlcm_param_bool(ctx, "verify"))
		return 0;
	const char *why;
	const void *buf = tlcm_msg_data(m);
	if (tlcm_Blob_verify_as_root(buf, m->size, &why)) {
		if (s->bad++ < 5)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "bad Blob: %s", why);
		return 0;
	}
	tlcm_Blob_table_t b = tlcm_Blob_as_root(buf);
	uint64_t seq = tlcm_Blob_seq(b);
	if (tlcm_fnv1a(tlcm_Blob_data(b), tlcm_Blob_data_len(b)) !=
	    tlcm_Blob_checksum(b)) {
		if (s->bad++ < 5)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "Blob %" PRIu64
				      ": checksum mismatch", seq);
	}
	if (seq <= s->last_seq) {
		s->reordered++;
	} else {
		if (seq > s->last_seq + 1) {
			s->gaps++;
			s->missing += seq - s->last_seq - 1;
		}
		s->last_seq = seq;
	}
	return 0;
}

static int eos(tlcm_ctx_t *ctx, void *st)
{
	sink_t *s = st;
	double secs = (double)(s->last_ns - s->first_ns) / 1e9;
	uint64_t p50 = percentile(s, 0.5), p99 = percentile(s, 0.99);
	tlcm_node_log(ctx, TLCM_LOG_INFO, "received %" PRIu64 " messages (%"
		      PRIu64 " bytes), bad %" PRIu64 ", missing %" PRIu64
		      " in %" PRIu64 " gaps, reordered %" PRIu64
		      ", latency p50 %" PRIu64 " ns p99 %" PRIu64 " ns",
		      s->count, s->bytes, s->bad, s->missing, s->gaps,
		      s->reordered, p50, p99);
	const char *path = tlcm_param_str(ctx, "report");
	if (path && *path) {
		bool out = !strcmp(path, "-"); /* stdout, never truncated */
		FILE *f = out ? stdout : fopen(path, "w");
		if (!f) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot write report "
				      "%s", path);
			return TLCM_EIO;
		}
		fprintf(f, "{\"count\":%" PRIu64 ",\"bytes\":%" PRIu64
			",\"bad\":%" PRIu64 ",\"missing\":%" PRIu64
			",\"gaps\":%" PRIu64 ",\"reordered\":%" PRIu64
			",\"last_seq\":%" PRIu64 ",\"p50_ns\":%" PRIu64
			",\"p99_ns\":%" PRIu64 ",\"seconds\":%.6f"
			",\"per_s\":%.1f,\"verified\":%" PRIu64 "}\n",
			s->count, s->bytes, s->bad, s->missing, s->gaps,
			s->reordered, s->last_seq, p50, p99, secs,
			secs > 0 ? (double)s->count / secs : 0.0,
			s->verified);
		if (out ? fflush(f) : fclose(f))
			return TLCM_EIO;
	}
	int64_t expect = tlcm_param_int(ctx, "expect");
	if (expect && ((uint64_t)expect != s->count || s->bad || s->missing ||
		       s->reordered)) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "expected %" PRId64
			      " intact messages in order, got %" PRIu64,
			      expect, s->count);
		return TLCM_EPROTO;
	}
	return 0;
}

static int snapshot(tlcm_ctx_t *ctx, void *st, tlcm_fbb_t *b)
{
	sink_t *s = st;
	(void)ctx;
	tlcm_TestState_start(b);
	tlcm_TestState_add_seq(b, s->last_seq);
	tlcm_TestState_add_count(b, s->count);
	tlcm_TestState_add_bytes(b, s->bytes);
	return tlcm_TestState_finish(b, tlcm_TestState_end(b), NULL)
		       ? 0 : tlcm_fbb_error(b);
}

static int restore(tlcm_ctx_t *ctx, void *st, const void *data, size_t len)
{
	sink_t *s = st;
	const char *why;
	if (tlcm_TestState_verify_as_root(data, len, &why)) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: %s", why);
		return TLCM_EBADMSG;
	}
	tlcm_TestState_table_t t = tlcm_TestState_as_root(data);
	s->last_seq = tlcm_TestState_seq(t);
	s->count = tlcm_TestState_count(t);
	s->bytes = tlcm_TestState_bytes(t);
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	sink_t *s = st;
	(void)ctx;
	snprintf(buf, len, "{\"count\":%" PRIu64 ",\"bytes\":%" PRIu64
		 ",\"bad\":%" PRIu64 ",\"missing\":%" PRIu64
		 ",\"reordered\":%" PRIu64 ",\"last_seq\":%" PRIu64 "}",
		 s->count, s->bytes, s->bad, s->missing, s->reordered,
		 s->last_seq);
	return 0;
}

const tlcm_node_type_t tlcm_node_sink = {
	.name = "sink",
	.doc = "count, check and time arriving messages (test sink)",
	.inputs = inputs,
	.params = params,
	.state_size = sizeof(sink_t),
	.process = process,
	.snapshot = snapshot,
	.restore = restore,
	.eos = eos,
	.describe = describe,
};
