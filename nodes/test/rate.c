/* rate.c — node `rate`: lets at most rate_hz messages per second through
 * (token bucket of `burst` tokens) and drops the rest, counting them. */
#include <inttypes.h>

#include "engine/log.h"
#include "engine/node.h"
#include "nodes/test/test_nodes.h"

typedef struct {
	double tokens, rate, burst;
	uint64_t last_ns, passed, dropped;
} rate_t;

static const tlcm_port_desc_t inputs[] = {{"in", "*", "any messages", 0},
					  {0}};
static const tlcm_port_desc_t outputs[] = {
	{"out", "*", "messages within the rate", 0}, {0}};
static const tlcm_param_desc_t params[] = {
	{"rate_hz", TLCM_P_FLOAT, "100", "messages per second let through",
	 0.001, 1e9, NULL, TLCM_PARAM_RUNTIME},
	{"burst", TLCM_P_INT, "10", "messages that may pass at once", 1, 1e9,
	 NULL, 0},
	{0},
};

static int init(tlcm_ctx_t *ctx, void *st)
{
	rate_t *r = st;
	r->rate = tlcm_param_float(ctx, "rate_hz");
	r->burst = (double)tlcm_param_int(ctx, "burst");
	r->tokens = r->burst;
	r->last_ns = tlcm_now_ns();
	return 0;
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	rate_t *r = st;
	(void)port;
	uint64_t now = tlcm_now_ns();
	r->tokens += (double)(now - r->last_ns) / 1e9 * r->rate;
	if (r->tokens > r->burst)
		r->tokens = r->burst;
	r->last_ns = now;
	if (r->tokens < 1) {
		r->dropped++;
		return 0;
	}
	r->tokens -= 1;
	r->passed++;
	int rc = tlcm_emit_msg(ctx, 0, m);
	return rc == TLCM_EAGAIN ? 0 : rc;
}

static int param_changed(tlcm_ctx_t *ctx, void *st, const char *name)
{
	rate_t *r = st;
	(void)name;
	r->rate = tlcm_param_float(ctx, "rate_hz");
	return 0;
}

static int eos(tlcm_ctx_t *ctx, void *st)
{
	rate_t *r = st;
	tlcm_node_log(ctx, TLCM_LOG_INFO, "passed %" PRIu64 ", dropped %"
		      PRIu64, r->passed, r->dropped);
	return 0;
}

const tlcm_node_type_t tlcm_node_rate = {
	.name = "rate",
	.doc = "let at most rate_hz messages per second through, drop the rest",
	.inputs = inputs,
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(rate_t),
	.init = init,
	.process = process,
	.param_changed = param_changed,
	.eos = eos,
};
