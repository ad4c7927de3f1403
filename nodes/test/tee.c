/* tee.c — node `tee`: forwards every message unchanged. Its output port,
 * like any port, fans out to every edge connected to it, so one tee with
 * several edges copies each message to all of them. */
#include "engine/node.h"
#include "nodes/test/test_nodes.h"

static const tlcm_port_desc_t inputs[] = {{"in", "*", "any messages", 0},
					  {0}};
static const tlcm_port_desc_t outputs[] = {
	{"out", "*", "the same messages, to every connected edge", 0}, {0}};

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	(void)st;
	(void)port;
	int rc = tlcm_emit_msg(ctx, 0, m);
	return rc == TLCM_EAGAIN ? 0 : rc;
}

const tlcm_node_type_t tlcm_node_tee = {
	.name = "tee",
	.doc = "forward messages unchanged to every connected edge",
	.inputs = inputs,
	.outputs = outputs,
	.process = process,
};
