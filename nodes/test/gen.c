/* gen.c — node `gen`: emits Blob messages (schemas/blob.fbs) for tests and
 * benchmarks.
 *
 * At rate_hz > 0 it ticks and emits what is due since start (catching up
 * in bursts of at most `burst`); at rate_hz = 0 it runs flat out whenever
 * its outputs have room. Each Blob carries seq (1, 2, ...; also the trace
 * id), `payload` bytes of `pattern` and their FNV-1a checksum.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/log.h"
#include "engine/node.h"
#include "fb/blob_fb.h"
#include "fb/test_state_fb.h"
#include "nodes/test/test_nodes.h"

typedef struct {
	uint64_t seq, count, start_ns;
	double rate;
	size_t payload, burst;
	int pattern; /* 0 fixed, 1 seq, 2 random */
	bool checked; /* tlcm_emit_end_checked */
	uint8_t *fixed;
	uint32_t fixed_sum;
	uint64_t rng;
} gen_t;

static const tlcm_port_desc_t outputs[] = {
	{"out", "BLOB", "generated messages", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"rate_hz", TLCM_P_FLOAT, "0", "messages per second; 0 = as fast as "
	 "the outputs take them", 0, 1e9, NULL, TLCM_PARAM_RUNTIME},
	{"count", TLCM_P_INT, "0", "last sequence number to send, then end "
	 "the stream (counting from a restored state); 0 = until stopped", 0,
	 1e15, NULL, 0},
	{"payload", TLCM_P_SIZE, "64", "data bytes per message", 0, 1 << 20,
	 NULL, 0},
	{"pattern", TLCM_P_ENUM, "seq", "data bytes: fixed (same every "
	 "message), seq (derived from seq), random", 0, 0,
	 "fixed|seq|random", 0},
	{"burst", TLCM_P_INT, "1000", "most messages per tick when catching "
	 "up", 1, 1e6, NULL, 0},
	{"seed", TLCM_P_INT, "1", "random pattern seed", 0, 0, NULL, 0},
	{"checked", TLCM_P_BOOL, "false", "verify each message once when "
	 "emitting it (tlcm_emit_end_checked)", 0, 0, NULL, 0},
	{0},
};

uint32_t tlcm_fnv1a(const void *data, size_t n)
{
	const uint8_t *p = data;
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static void fill(gen_t *g, uint8_t *d)
{
	if (g->pattern == 0) {
		memcpy(d, g->fixed, g->payload);
	} else if (g->pattern == 1) {
		for (size_t i = 0; i < g->payload; i++)
			d[i] = (uint8_t)(g->seq * 7 + i);
	} else {
		for (size_t i = 0; i < g->payload; i++) {
			g->rng ^= g->rng << 13;
			g->rng ^= g->rng >> 7;
			g->rng ^= g->rng << 17;
			d[i] = (uint8_t)g->rng;
		}
	}
}

static int emit_one(tlcm_ctx_t *ctx, gen_t *g)
{
	tlcm_fbb_t b;
	g->seq++;
	tlcm_set_trace(ctx, g->seq);
	int rc = tlcm_emit_begin(ctx, 0, &b, g->payload + 64);
	if (rc)
		return rc;
	uint8_t *d;
	tlcm_fbb_ref_t data = tlcm_fbb_vec_alloc(&b, g->payload, 1, 1,
						 (void **)&d);
	if (d)
		fill(g, d);
	uint32_t sum = g->pattern == 0 ? g->fixed_sum
				       : tlcm_fnv1a(d, d ? g->payload : 0);
	tlcm_Blob_start(&b);
	tlcm_Blob_add_seq(&b, g->seq);
	tlcm_Blob_add_data(&b, data);
	tlcm_Blob_add_checksum(&b, sum);
	rc = g->checked ? tlcm_emit_end_checked(ctx, 0, &b, tlcm_Blob_end(&b),
						tlcm_Blob_IDENTIFIER,
						tlcm_Blob_verify_as_root)
			: tlcm_emit_end(ctx, 0, &b, tlcm_Blob_end(&b),
					tlcm_Blob_IDENTIFIER);
	return rc == TLCM_EAGAIN ? 0 : rc; /* a dropped message still counts */
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	gen_t *g = st;
	g->rate = tlcm_param_float(ctx, "rate_hz");
	g->count = (uint64_t)tlcm_param_int(ctx, "count");
	g->payload = (size_t)tlcm_param_size(ctx, "payload");
	g->burst = (size_t)tlcm_param_int(ctx, "burst");
	g->checked = tlcm_param_bool(ctx, "checked");
	const char *p = tlcm_param_str(ctx, "pattern");
	g->pattern = !strcmp(p, "fixed") ? 0 : !strcmp(p, "seq") ? 1 : 2;
	g->rng = (uint64_t)tlcm_param_int(ctx, "seed") | 1;
	g->fixed = calloc(1, g->payload ? g->payload : 1);
	if (!g->fixed)
		return TLCM_ENOMEM;
	for (size_t i = 0; i < g->payload; i++)
		g->fixed[i] = (uint8_t)(i * 13 + 1);
	g->fixed_sum = tlcm_fnv1a(g->fixed, g->payload);
	g->start_ns = tlcm_now_ns();
	/* tick often enough that a burst covers a period */
	if (g->rate > 0) {
		double period = 1e9 / g->rate;
		if (period < 1e6)
			period = 1e6;
		tlcm_set_tick(ctx, (uint64_t)period);
	} else {
		tlcm_set_tick(ctx, 0);
	}
	return 0;
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	gen_t *g = st;
	if (g->count && g->seq >= g->count)
		return TLCM_ECLOSED;
	uint64_t n = 1;
	if (g->rate > 0) {
		double due = (double)(now - g->start_ns) / 1e9 * g->rate;
		n = due > (double)g->seq ? (uint64_t)due - g->seq : 0;
		if (n > g->burst)
			n = g->burst;
	}
	for (uint64_t i = 0; i < n; i++) {
		if (g->count && g->seq >= g->count)
			return TLCM_ECLOSED;
		int rc = emit_one(ctx, g);
		if (rc)
			return rc;
	}
	return g->count && g->seq >= g->count ? TLCM_ECLOSED : 0;
}

static int param_changed(tlcm_ctx_t *ctx, void *st, const char *name)
{
	gen_t *g = st;
	(void)name;
	/* restart the schedule from here at the new rate */
	g->rate = tlcm_param_float(ctx, "rate_hz");
	g->start_ns = tlcm_now_ns() - (uint64_t)(g->rate > 0
					       ? (double)g->seq / g->rate * 1e9
					       : 0);
	tlcm_set_tick(ctx, g->rate > 0 ? (uint64_t)(1e9 / g->rate < 1e6
							    ? 1e6
							    : 1e9 / g->rate)
				       : 0);
	return 0;
}

/* The sequence survives restarts, so frame ids stay unique per device. */
static int snapshot(tlcm_ctx_t *ctx, void *st, tlcm_fbb_t *b)
{
	gen_t *g = st;
	(void)ctx;
	tlcm_TestState_start(b);
	tlcm_TestState_add_seq(b, g->seq);
	tlcm_TestState_add_count(b, g->seq);
	return tlcm_TestState_finish(b, tlcm_TestState_end(b), NULL)
		       ? 0 : tlcm_fbb_error(b);
}

static int restore(tlcm_ctx_t *ctx, void *st, const void *data, size_t len)
{
	gen_t *g = st;
	const char *why;
	if (tlcm_TestState_verify_as_root(data, len, &why)) {
		tlcm_node_log(ctx, TLCM_LOG_WARN, "state rejected: %s", why);
		return TLCM_EBADMSG;
	}
	g->seq = tlcm_TestState_seq(tlcm_TestState_as_root(data));
	if (g->rate > 0) /* continue the schedule from here */
		g->start_ns = tlcm_now_ns() -
			      (uint64_t)((double)g->seq / g->rate * 1e9);
	return 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	gen_t *g = st;
	(void)ctx;
	free(g->fixed);
	g->fixed = NULL;
}

const tlcm_node_type_t tlcm_node_gen = {
	.name = "gen",
	.doc = "emit numbered Blob messages at a rate (test source)",
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(gen_t),
	.init = init,
	.tick = tick,
	.param_changed = param_changed,
	.snapshot = snapshot,
	.restore = restore,
	.fini = fini,
};
