/* tx.c — node `link.tx`: send any messages to a core's link.rx.
 *
 * Messages are appended to an open batch (a LinkBatch being built); the
 * batch is sealed when it holds `batch_count` messages or `batch_bytes`
 * bytes, or is `batch_interval` old, and sealing stores it in the durable
 * queue (txq.h) under the next link sequence number before anything is
 * sent. The sender (sender.h) sends queued batches in order and removes
 * them when the core acknowledges. With `resume_trace`, messages whose
 * trace id is not above the highest one already queued are skipped: a
 * source that numbers its messages by trace and replays from an older
 * position after a crash (gen) then gets each of them through once.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/log.h"
#include "engine/node.h"
#include "engine/store.h"
#include "nodes/discovery/discover.h"
#include "nodes/link/link.h"
#include "nodes/link/sender.h"
#include "nodes/link/txq.h"
#include "nodes/link/wire.h"

typedef struct {
	link_txq_t *q;
	link_sender_t *snd;
	tlcm_fbb_t b;
	bool b_ok;
	tlcm_fbb_ref_t *refs, tagref;
	size_t nrefs, caprefs, bytes;
	uint64_t first_ns, seen_trace;
	uint64_t max_count, max_bytes, interval_ns, linger_ns;
	bool resume, block;
	char sat[LINK_ID_MAX + 1], family[96], profile[64];
	const char *tag;
	uint64_t in, skipped, sealed, dropped, refused;
} tx_t;

static const tlcm_port_desc_t inputs[] = {
	{"in", "*", "messages to carry to the core (any type)", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"cores", TLCM_P_LIST, "", "core URLs in order of preference: "
	 "tcp://host:port, tls+tcp://host:port, ipc:///path; on a failed "
	 "connect the next is tried (required unless discover)", 0, 0, NULL,
	 0},
	{"discover", TLCM_P_BOOL, "false", "at start, browse for cores via "
	 "mDNS (_tinylcm._tcp, docs/discovery.md): the ones found, best "
	 "first, go before `cores`", 0, 0, NULL, 0},
	{"discover_timeout", TLCM_P_DURATION, "2s", "how long to browse at "
	 "most", 1e7, 6e10, NULL, 0},
	{"satellite", TLCM_P_STRING, "", "this satellite's id, 1..64 of "
	 "[A-Za-z0-9._-] (default: the host name)", 0, 0, NULL, 0},
	{"tag", TLCM_P_STRING, "", "tag of the carried messages (the core "
	 "sees remote/{satellite}/{tag}); default: this node's id", 0, 0,
	 NULL, 0},
	{"profile", TLCM_P_STRING, "", "hardware profile reported in hello "
	 "(default: $TINYLCM_PROFILE, else unknown)", 0, 0, NULL, 0},
	{"batch_count", TLCM_P_INT, "1000", "messages per batch at most", 1,
	 1e6, NULL, 0},
	{"batch_bytes", TLCM_P_SIZE, "256KiB", "payload bytes per batch at "
	 "most", 1, 64 << 20, NULL, 0},
	{"batch_interval", TLCM_P_DURATION, "10ms", "a batch is sent at the "
	 "latest this long after its first message", 1e5, 3.6e12, NULL, 0},
	{"queue_bytes", TLCM_P_SIZE, "64MiB", "unacknowledged bytes kept "
	 "at most (0: no limit)", 0, 1e12, NULL, 0},
	{"queue_batches", TLCM_P_INT, "100000", "unacknowledged batches "
	 "kept at most (0: no limit)", 0, 1e12, NULL, 0},
	{"queue_policy", TLCM_P_ENUM, "drop_oldest", "when the queue is "
	 "full: drop_oldest (counted) or block (hold the graph back)", 0, 0,
	 "drop_oldest|block", 0},
	{"resume_trace", TLCM_P_BOOL, "false", "skip messages whose trace "
	 "id is not above the highest already queued (sources that replay "
	 "after a crash)", 0, 0, NULL, 0},
	{"backoff_min", TLCM_P_DURATION, "100ms", "first reconnect delay",
	 1e6, 3.6e12, NULL, 0},
	{"backoff_max", TLCM_P_DURATION, "30s", "longest reconnect delay",
	 1e6, 3.6e12, NULL, 0},
	{"health_interval", TLCM_P_DURATION, "5s", "health frame period",
	 1e7, 3.6e12, NULL, 0},
	{"timeout", TLCM_P_DURATION, "10s", "connect, hello and write "
	 "timeout", 1e7, 3.6e12, NULL, 0},
	{"linger", TLCM_P_DURATION, "0s", "at end of stream, wait this "
	 "long for the core to acknowledge everything", 0, 3.6e12, NULL, 0},
	{"secret", TLCM_P_SECRET, "", "shared secret the core asks for "
	 "(send it over tls+tcp:// only)", 0, 0, NULL, 0},
	{"tls_ca", TLCM_P_PATH, "", "CA to verify the core's certificate "
	 "(tls+tcp://)", 0, 0, NULL, 0},
	{"tls_cert", TLCM_P_PATH, "", "client certificate for mutual TLS",
	 0, 0, NULL, 0},
	{"tls_key", TLCM_P_PATH, "", "its private key", 0, 0, NULL, 0},
	{"tls_server_name", TLCM_P_STRING, "", "name the core's "
	 "certificate must carry (default: none checked)", 0, 0, NULL, 0},
	{0},
};

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int seal(tlcm_ctx_t *ctx, tx_t *t)
{
	if (!t->nrefs)
		return 0;
	link_txq_stats_t qs;
	link_txq_stats(t->q, &qs);
	uint64_t seq = link_txq_next_seq(t->q);
	size_t len;
	const void *fr;
	int brc = link_build_batch(&t->b, seq, qs.dropped, t->refs, t->nrefs,
				   &fr, &len);
	if (brc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot build batch %"
			      PRIu64 ": %s", seq, tlcm_strerror(brc));
		return brc;
	}
	int rc;
	uint64_t nd = 0;
	for (;;) {
		rc = link_txq_put(t->q, seq, fr, len, t->seen_trace, &nd);
		if (rc != TLCM_EAGAIN)
			break;
		if (t->refused++ % 100 == 0)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "queue full "
				      "(policy block): holding the graph back"
				      " until the core acknowledges");
		link_txq_wait_room(t->q, len, 100000000u);
	}
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cannot queue batch %"
			      PRIu64 " (%zu messages, %zu bytes): %s%s", seq,
			      t->nrefs, len, tlcm_strerror(rc),
			      rc == TLCM_ETOOBIG ? " (larger than queue_bytes)"
						 : "");
		return rc;
	}
	if (nd) {
		t->dropped += nd;
		tlcm_node_log(ctx, TLCM_LOG_WARN, "queue full: dropped the %"
			      PRIu64 " oldest unacknowledged batches (%"
			      PRIu64 " dropped in all)", nd, t->dropped);
	}
	t->sealed++;
	tlcm_fbb_reset(&t->b);
	t->nrefs = 0;
	t->bytes = 0;
	t->tagref = 0;
	return 0;
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	tx_t *t = st;
	(void)port;
	t->in++;
	if (t->resume && m->trace && m->trace <= t->seen_trace) {
		t->skipped++;
		return 0;
	}
	if (t->nrefs == t->caprefs) {
		size_t nc = t->caprefs ? t->caprefs * 2 : 256;
		tlcm_fbb_ref_t *nr = realloc(t->refs, nc * sizeof *nr);
		if (!nr)
			return TLCM_ENOMEM;
		t->refs = nr;
		t->caprefs = nc;
	}
	if (!t->nrefs)
		t->first_ns = tlcm_now_ns();
	if (!t->tagref)
		t->tagref = tlcm_fbb_cstring(&t->b, t->tag);
	uint32_t type;
	memcpy(&type, m->type, 4);
	tlcm_fbb_ref_t d = tlcm_LinkMsg_data_create(&t->b,
						    tlcm_msg_data(m), m->size);
	tlcm_LinkMsg_start(&t->b);
	tlcm_LinkMsg_add_type(&t->b, type);
	tlcm_LinkMsg_add_tag(&t->b, t->tagref);
	tlcm_LinkMsg_add_ts_ns(&t->b, wall_ns());
	tlcm_LinkMsg_add_trace(&t->b, m->trace);
	tlcm_LinkMsg_add_data(&t->b, d);
	t->refs[t->nrefs++] = tlcm_LinkMsg_end(&t->b);
	if (tlcm_fbb_error(&t->b))
		return tlcm_fbb_error(&t->b);
	t->bytes += m->size;
	if (m->trace > t->seen_trace)
		t->seen_trace = m->trace;
	if (t->nrefs >= t->max_count || t->bytes >= t->max_bytes)
		return seal(ctx, t);
	return 0;
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	tx_t *t = st;
	if (t->nrefs && now - t->first_ns >= t->interval_ns)
		return seal(ctx, t);
	return 0;
}

static int eos(tlcm_ctx_t *ctx, void *st)
{
	tx_t *t = st;
	int rc = seal(ctx, t);
	if (rc)
		return rc;
	if (t->linger_ns && !link_txq_wait_room(t->q, 0, t->linger_ns)) {
		link_txq_stats_t qs;
		link_txq_stats(t->q, &qs);
		tlcm_node_log(ctx, TLCM_LOG_WARN, "%" PRIu64 " batches still "
			      "unacknowledged after linger: they stay queued "
			      "for the next run", qs.depth);
	}
	return 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	tx_t *t = st;
	(void)ctx;
	link_sender_free(t->snd);
	link_txq_free(t->q);
	if (t->b_ok)
		tlcm_fbb_fini(&t->b);
	free(t->refs);
	memset(t, 0, sizeof *t);
}

#define TX_DISC_MAX 8

/* discover: the cores found via mDNS (best first), then the static ones
 * not among them; without mDNS results, the static ones. The URLs point
 * into found[] and the params. */
static int discover_cores(tlcm_ctx_t *ctx, const char *const *urls,
			  size_t nurls, tlcm_disc_core_t *found,
			  const char **out, size_t *nout)
{
	char why[256];
	size_t n = 0;
	tlcm_disc_opts_t o = {
		.timeout_ns = tlcm_param_duration_ns(ctx, "discover_timeout"),
		.fallback = urls, .nfallback = nurls,
	};
	int rc = tlcm_discover(&o, found, TX_DISC_MAX, &n, why, sizeof why);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "discover: %s%s", why,
			      rc == TLCM_ENOENT ? " (and `cores` is empty)"
						: "");
		return rc == TLCM_ENOENT ? TLCM_EINVAL : rc;
	}
	*nout = 0;
	for (size_t i = 0; i < n; i++)
		out[(*nout)++] = found[i].url;
	for (size_t i = 0; n && found[0].source == TLCM_DISC_MDNS &&
	     i < nurls; i++) {
		bool dup = false;
		for (size_t j = 0; j < n; j++)
			dup |= !strcmp(found[j].url, urls[i]);
		if (!dup)
			out[(*nout)++] = urls[i];
	}
	tlcm_node_log(ctx, TLCM_LOG_INFO, "discover: %s; first core %s (%zu "
		      "in all)", why, out[0], *nout);
	return 0;
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	tx_t *t = st;
	char why[300];
	tlcm_store_t *s = tlcm_graph_store(ctx);
	if (!s) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "link.tx keeps its queue in "
			      "the graph store: set settings.store (and not "
			      "isolate: process)");
		return TLCM_EINVAL;
	}
	const char *sat = tlcm_param_str(ctx, "satellite");
	if (!*sat) {
		if (gethostname(t->sat, sizeof t->sat - 1))
			snprintf(t->sat, sizeof t->sat, "satellite");
	} else {
		snprintf(t->sat, sizeof t->sat, "%s", sat);
	}
	if (!link_id_valid(t->sat, strlen(t->sat)) ||
	    strlen(sat) > LINK_ID_MAX) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "satellite: '%s' is not 1..64"
			      " of [A-Za-z0-9._-]", *sat ? sat : t->sat);
		return TLCM_EINVAL;
	}
	const char *tag = tlcm_param_str(ctx, "tag");
	t->tag = *tag ? tag : tlcm_node_id(ctx);
	const char *prof = tlcm_param_str(ctx, "profile");
	if (!*prof)
		prof = getenv("TINYLCM_PROFILE");
	snprintf(t->profile, sizeof t->profile, "%s",
		 prof && *prof ? prof : "unknown");
	t->max_count = (uint64_t)tlcm_param_int(ctx, "batch_count");
	t->max_bytes = tlcm_param_size(ctx, "batch_bytes");
	t->interval_ns = tlcm_param_duration_ns(ctx, "batch_interval");
	t->linger_ns = tlcm_param_duration_ns(ctx, "linger");
	t->resume = tlcm_param_bool(ctx, "resume_trace");
	t->block = !strcmp(tlcm_param_str(ctx, "queue_policy"), "block");
	link_txq_limits_t lim = {
		.max_bytes = tlcm_param_size(ctx, "queue_bytes"),
		.max_batches = (uint64_t)tlcm_param_int(ctx, "queue_batches"),
		.block = t->block,
	};
	snprintf(t->family, sizeof t->family, "link.tx/%s",
		 tlcm_node_id(ctx));
	int rc = link_txq_open(&t->q, s, t->family, &lim, why, sizeof why);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", why);
		return rc;
	}
	link_txq_stats_t qs;
	link_txq_stats(t->q, &qs);
	t->seen_trace = qs.trace;
	if (tlcm_fbb_init(&t->b, 1 << 16)) {
		fini(ctx, t);
		return TLCM_ENOMEM;
	}
	t->b_ok = true;
	const char *const *urls;
	size_t nurls = tlcm_param_list(ctx, "cores", &urls);
	tlcm_disc_core_t *found = NULL;
	const char **durls = NULL;
	if (tlcm_param_bool(ctx, "discover")) {
		found = calloc(TX_DISC_MAX, sizeof *found);
		durls = calloc(TX_DISC_MAX + nurls, sizeof *durls);
		rc = found && durls ? discover_cores(ctx, urls, nurls, found,
						     durls, &nurls)
				    : TLCM_ENOMEM;
		if (rc) {
			free(found);
			free(durls);
			fini(ctx, t);
			return rc;
		}
		urls = durls;
	} else if (!nurls) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "cores: give at least one "
			      "core URL, or discover: true");
		fini(ctx, t);
		return TLCM_EINVAL;
	}
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	link_sender_cfg_t sc = {
		.log_id = tlcm_node_id(ctx),
		.hello = {.satellite = t->sat, .version = "tinylcm",
			  .profile = t->profile,
			  .secret = tlcm_param_str(ctx, "secret"),
			  .cpus = ncpu > 0 ? (uint32_t)ncpu : 0,
			  .memory = pages > 0 && psz > 0
					    ? (uint64_t)pages * (uint64_t)psz
					    : 0},
		.urls = urls,
		.nurls = nurls,
		.tls = {.cert = tlcm_param_str(ctx, "tls_cert"),
			.key = tlcm_param_str(ctx, "tls_key"),
			.ca = tlcm_param_str(ctx, "tls_ca"),
			.server_name = tlcm_param_str(ctx, "tls_server_name")},
		.backoff_min_ns = tlcm_param_duration_ns(ctx, "backoff_min"),
		.backoff_max_ns = tlcm_param_duration_ns(ctx, "backoff_max"),
		.health_ns = tlcm_param_duration_ns(ctx, "health_interval"),
		.timeout_ns = tlcm_param_duration_ns(ctx, "timeout"),
		.q = t->q,
	};
	rc = link_sender_new(&t->snd, &sc, why, sizeof why);
	free(found); /* the sender keeps copies of the URLs */
	free(durls);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", why);
		fini(ctx, t);
		return rc;
	}
	tlcm_node_log(ctx, TLCM_LOG_INFO, "satellite %s: %" PRIu64 " batches"
		      " (%" PRIu64 " bytes) queued from before, next sequence "
		      "number %" PRIu64, t->sat, qs.depth, qs.bytes,
		      qs.last_seq + 1);
	uint64_t half = t->interval_ns / 2;
	tlcm_set_tick(ctx, half < 1000000 ? 1000000 : half);
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	tx_t *t = st;
	(void)ctx;
	link_txq_stats_t qs;
	link_sender_stats_t ss;
	link_txq_stats(t->q, &qs);
	link_sender_stats(t->snd, &ss);
	size_t at = (size_t)snprintf(buf, len, "{\"satellite\":\"%s\","
		"\"connected\":%s,\"core\":%zu,\"connects\":%" PRIu64
		",\"connect_failures\":%" PRIu64 ",\"sent\":%" PRIu64
		",\"acks\":%" PRIu64 ",\"queue_depth\":%" PRIu64
		",\"queue_bytes\":%" PRIu64 ",\"last_seq\":%" PRIu64
		",\"acked_seq\":%" PRIu64 ",\"dropped_batches\":%" PRIu64
		",\"in\":%" PRIu64 ",\"skipped\":%" PRIu64 ",\"last_error\":",
		t->sat, ss.connected ? "true" : "false", ss.url, ss.connects,
		ss.failures, ss.sent, ss.acks, qs.depth, qs.bytes,
		qs.last_seq, qs.acked, qs.dropped, t->in, t->skipped);
	if (at < len && tlcm_json_str(buf, &at, len, ss.last_error) &&
	    at + 2 <= len) {
		buf[at++] = '}';
		buf[at] = 0;
	}
	return 0;
}

const tlcm_node_type_t tlcm_node_link_tx = {
	.name = "link.tx",
	.doc = "send any messages to a core's link.rx (durable queue, acks, "
	       "resend after reconnect)",
	.inputs = inputs,
	.params = params,
	.state_size = sizeof(tx_t),
	.init = init,
	.process = process,
	.tick = tick,
	.eos = eos,
	.describe = describe,
	.fini = fini,
};
