/* rx.c — node `link.rx`: receive satellites' messages (receiver.h) and
 * emit them into the core graph.
 *
 * Connection threads store and acknowledge batches; tick() hands the
 * stored batches out in order: every carried message goes unchanged
 * (type, bytes, trace) to `out`, and as a RemoteMsg envelope (satellite,
 * tag remote/{satellite}/{tag}, link sequence, index) to `remote`. The
 * batches emitted are marked delivered in the store only once every edge
 * leaving this node is empty again, i.e. the consumers have processed
 * them; after a crash the undelivered ones are emitted again (consumers
 * de-duplicate by the envelope's (satellite, link_seq, index):
 * link.ledger does). On shutdown the listener closes, what is stored is
 * emitted and, once drained, marked delivered.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/log.h"
#include "engine/node.h"
#include "fb/remote_msg_fb.h"
#include "nodes/link/link.h"
#include "nodes/link/receiver.h"

typedef struct {
	link_receiver_t *r;
	tlcm_edge_figures_t *edges;
	size_t maxedges;
	bool closing;
	uint64_t emitted, batches;
	char family[96];
	tlcm_fbb_t b;
} rx_t;

static const tlcm_port_desc_t outputs[] = {
	{"out", "*", "the carried messages, unchanged", 0},
	{"remote", "RMSG", "the carried messages in RemoteMsg envelopes "
	 "(satellite, remote/{satellite}/{tag}, link sequence, index)", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"listen", TLCM_P_STRING, NULL, "URL to listen on: tcp://host:port,"
	 " tls+tcp://host:port, ipc:///path", 0, 0, NULL, 0},
	{"tls_cert", TLCM_P_PATH, "", "server certificate (tls+tcp://)", 0,
	 0, NULL, 0},
	{"tls_key", TLCM_P_PATH, "", "its private key", 0, 0, NULL, 0},
	{"tls_ca", TLCM_P_PATH, "", "CA of the satellites' client "
	 "certificates (mutual TLS)", 0, 0, NULL, 0},
	{"tls_require_client", TLCM_P_BOOL, "false", "mutual TLS: refuse "
	 "satellites without a certificate from tls_ca", 0, 0, NULL, 0},
	{"secret", TLCM_P_SECRET, "", "shared secret every hello must carry",
	 0, 0, NULL, 0},
	{"max_frame", TLCM_P_SIZE, "16MiB", "largest frame accepted; a "
	 "larger one disconnects the peer", 64, 1 << 30, NULL, 0},
	{"hello_timeout", TLCM_P_DURATION, "10s", "time a new connection "
	 "has to say hello", 1e6, 3.6e12, NULL, 0},
	{"idle_timeout", TLCM_P_DURATION, "60s", "disconnect a satellite "
	 "silent this long", 1e6, 3.6e12, NULL, 0},
	{"max_pending", TLCM_P_SIZE, "64MiB", "bytes stored but not yet "
	 "emitted above which satellites are read no further", 1 << 16,
	 1e12, NULL, 0},
	{"poll", TLCM_P_DURATION, "1ms", "how often stored batches are "
	 "looked for", 1e5, 1e9, NULL, 0},
	{0},
};

/* Have the consumers taken everything emitted so far? */
static bool drained(tlcm_ctx_t *ctx, rx_t *x)
{
	size_t n = tlcm_graph_edges(ctx, x->edges, x->maxedges);
	if (n > x->maxedges) {
		tlcm_edge_figures_t *ne = realloc(x->edges, n * sizeof *ne);
		if (!ne)
			return false;
		x->edges = ne;
		x->maxedges = n;
		n = tlcm_graph_edges(ctx, x->edges, x->maxedges);
	}
	const char *me = tlcm_node_id(ctx);
	for (size_t i = 0; i < n && i < x->maxedges; i++)
		if (!strcmp(x->edges[i].from, me) && x->edges[i].used)
			return false;
	return true;
}

static int emit_envelope(tlcm_ctx_t *ctx, rx_t *x, const link_rx_batch_t *bt,
			 uint32_t idx, tlcm_LinkMsg_table_t m)
{
	char tag[LINK_ID_MAX + 300];
	const char *t = tlcm_LinkMsg_tag(m);
	snprintf(tag, sizeof tag, "remote/%s/%.256s", bt->sat, t ? t : "");
	size_t dl = tlcm_LinkMsg_data_len(m);
	tlcm_fbb_t *b = &x->b;
	int rc = tlcm_emit_begin(ctx, 1, b, dl + strlen(tag) + 160);
	if (rc)
		return rc;
	tlcm_fbb_ref_t s = tlcm_fbb_cstring(b, bt->sat);
	tlcm_fbb_ref_t tg = tlcm_fbb_cstring(b, tag);
	tlcm_fbb_ref_t d = tlcm_RemoteMsg_data_create(b, tlcm_LinkMsg_data(m),
						      dl);
	tlcm_RemoteMsg_start(b);
	tlcm_RemoteMsg_add_satellite(b, s);
	tlcm_RemoteMsg_add_tag(b, tg);
	tlcm_RemoteMsg_add_link_seq(b, bt->seq);
	tlcm_RemoteMsg_add_index(b, idx);
	tlcm_RemoteMsg_add_type(b, tlcm_LinkMsg_type(m));
	tlcm_RemoteMsg_add_ts_ns(b, tlcm_LinkMsg_ts_ns(m));
	tlcm_RemoteMsg_add_trace(b, tlcm_LinkMsg_trace(m));
	tlcm_RemoteMsg_add_data(b, d);
	rc = tlcm_emit_end(ctx, 1, b, tlcm_RemoteMsg_end(b),
			   tlcm_RemoteMsg_IDENTIFIER);
	return rc == TLCM_EAGAIN ? 0 : rc;
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	rx_t *x = st;
	(void)now;
	if (link_receiver_uncommitted(x->r) && drained(ctx, x)) {
		int rc = link_receiver_commit(x->r);
		if (rc)
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot mark batches "
				      "delivered: %s (they are emitted again "
				      "after a restart)", tlcm_strerror(rc));
	}
	if (tlcm_stopping(ctx) && !x->closing) {
		x->closing = true;
		link_receiver_close_net(x->r);
		tlcm_node_log(ctx, TLCM_LOG_INFO, "stopping: no more "
			      "connections; emitting what is stored");
	}
	for (int n = 0; n < 64; n++) {
		const link_rx_batch_t *bt = link_receiver_take(x->r, 0);
		if (!bt)
			break;
		tlcm_LinkBatch_table_t lb = tlcm_LinkFrame_batch(
			tlcm_LinkFrame_as_root((const uint8_t *)bt->frame +
					       LINK_BODY));
		size_t nm = tlcm_LinkBatch_messages_len(lb);
		for (size_t i = 0; i < nm; i++) {
			tlcm_LinkMsg_table_t m = tlcm_LinkBatch_messages_at(lb,
									    i);
			uint32_t type = tlcm_LinkMsg_type(m);
			char ty[4];
			memcpy(ty, &type, 4);
			tlcm_set_trace(ctx, tlcm_LinkMsg_trace(m));
			int rc = tlcm_emit(ctx, 0, ty, tlcm_LinkMsg_data(m),
					   tlcm_LinkMsg_data_len(m));
			if (rc && rc != TLCM_EAGAIN)
				return rc;
			rc = emit_envelope(ctx, x, bt, (uint32_t)i, m);
			if (rc)
				return rc;
			x->emitted++;
		}
		x->batches++;
	}
	if (x->closing) {
		link_receiver_stats_t rs;
		link_receiver_stats(x->r, &rs);
		if (!rs.pending && !link_receiver_uncommitted(x->r))
			return TLCM_ECLOSED;
	}
	return 0;
}

/* The graph stops (rx is a source: the engine finishes it at once): take
 * no more connections and emit every batch already stored, so what was
 * acknowledged reaches this run's consumers. Batches emitted here are
 * marked delivered only once the consumers took them (tick); if the stop
 * comes first they are emitted again at the next start, with the same
 * ids (link.ledger skips them). Bounded by DRAIN_NS. */
#define DRAIN_NS (30 * 1000000000ull)
static int eos(tlcm_ctx_t *ctx, void *st)
{
	rx_t *x = st;
	if (!x->closing) {
		x->closing = true;
		link_receiver_close_net(x->r);
	}
	uint64_t t0 = tlcm_now_ns();
	for (;;) {
		int rc = tick(ctx, x, tlcm_now_ns());
		if (rc == TLCM_ECLOSED)
			return 0;
		if (rc && rc != TLCM_EAGAIN)
			return rc;
		link_receiver_stats_t rs;
		link_receiver_stats(x->r, &rs);
		if (!rs.pending)
			return 0;
		if (tlcm_now_ns() - t0 > DRAIN_NS) {
			tlcm_node_log(ctx, TLCM_LOG_WARN, "stopping: %" PRIu64
				      " stored batches not emitted in time; "
				      "they are emitted at the next start",
				      rs.pending);
			return 0;
		}
		if (rc == TLCM_EAGAIN)
			usleep(1000);
	}
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	rx_t *x = st;
	(void)ctx;
	link_receiver_free(x->r);
	free(x->edges);
	memset(x, 0, sizeof *x);
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	rx_t *x = st;
	char why[300];
	tlcm_store_t *s = tlcm_graph_store(ctx);
	if (!s) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "link.rx stores what it "
			      "acknowledges in the graph store: set "
			      "settings.store (and not isolate: process)");
		return TLCM_EINVAL;
	}
	snprintf(x->family, sizeof x->family, "link.rx/%s", tlcm_node_id(ctx));
	link_receiver_cfg_t c = {
		.log_id = tlcm_node_id(ctx),
		.url = tlcm_param_str(ctx, "listen"),
		.tls = {.cert = tlcm_param_str(ctx, "tls_cert"),
			.key = tlcm_param_str(ctx, "tls_key"),
			.ca = tlcm_param_str(ctx, "tls_ca"),
			.require_peer = tlcm_param_bool(ctx,
							"tls_require_client")},
		.secret = tlcm_param_str(ctx, "secret"),
		.max_frame = tlcm_param_size(ctx, "max_frame"),
		.hello_ns = tlcm_param_duration_ns(ctx, "hello_timeout"),
		.idle_ns = tlcm_param_duration_ns(ctx, "idle_timeout"),
		.max_pending = tlcm_param_size(ctx, "max_pending"),
		.store = s,
		.family = x->family,
	};
	int rc = link_receiver_new(&x->r, &c, why, sizeof why);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", why);
		return rc;
	}
	link_receiver_stats_t rs;
	link_receiver_stats(x->r, &rs);
	tlcm_node_log(ctx, TLCM_LOG_INFO, "listening on %s (port %d); %zu "
		      "satellites known, %" PRIu64 " stored batches to emit",
		      c.url, link_receiver_port(x->r), rs.satellites,
		      rs.pending);
	tlcm_set_tick(ctx, tlcm_param_duration_ns(ctx, "poll"));
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	rx_t *x = st;
	(void)ctx;
	link_receiver_stats_t rs;
	link_receiver_stats(x->r, &rs);
	int n = snprintf(buf, len, "{\"connections\":%" PRIu64 ",\"rejected\":"
		"%" PRIu64 ",\"batches\":%" PRIu64 ",\"messages\":%" PRIu64
		",\"duplicates\":%" PRIu64 ",\"gaps\":%" PRIu64 ",\"pending\":"
		"%" PRIu64 ",\"emitted\":%" PRIu64 ",\"delivered_batches\":%"
		PRIu64 ",\"connected\":%zu,\"satellites\":",
		rs.connections, rs.rejected, rs.batches, rs.messages,
		rs.duplicates, rs.gaps, rs.pending, x->emitted, rs.delivered,
		rs.connected);
	if (n < 0 || (size_t)n + 3 >= len)
		return TLCM_ENOSPC;
	link_receiver_satellites_json(x->r, buf + n, len - (size_t)n - 1);
	size_t at = strlen(buf);
	buf[at++] = '}';
	buf[at] = 0;
	return 0;
}

const tlcm_node_type_t tlcm_node_link_rx = {
	.name = "link.rx",
	.doc = "receive satellites' messages from link.tx (persist, then "
	       "acknowledge; de-duplicated)",
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(rx_t),
	.init = init,
	.tick = tick,
	.eos = eos,
	.describe = describe,
	.fini = fini,
};
