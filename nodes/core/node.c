/* node.c — node `core`: the fleet server inside a graph (graphs/core.yaml).
 * It serves the HTTP API of docs/api.md at `listen` and keeps every record
 * in the graph's store; see core.h for the threads and the families.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "engine/log.h"
#include "nodes/core/core.h"

typedef struct {
	core_t *c;
} node_t;

static const tlcm_port_desc_t outputs[] = {{0}};

static const tlcm_param_desc_t params[] = {
	{"listen", TLCM_P_STRING, "http://127.0.0.1:8470", "where to serve: "
	 "http://HOST:PORT, or https://… with tls_cert and tls_key (port 0: "
	 "any free port, see port_file)", 0, 0, NULL, 0},
	{"tls_cert", TLCM_P_PATH, "", "PEM certificate (chain) for https", 0,
	 0, NULL, 0},
	{"tls_key", TLCM_P_PATH, "", "PEM private key for https", 0, 0, NULL,
	 0},
	{"admin_token", TLCM_P_SECRET, "", "bearer token of the fleet's "
	 "operators (device list, drift hub, labels); empty: the admin API "
	 "answers 403", 0, 0, NULL, 0},
	{"api_key", TLCM_P_SECRET, "", "the fleet's shared key (X-API-Key): "
	 "when set, a new device needs it to register; empty: open "
	 "registration", 0, 0, NULL, 0},
	{"max_body", TLCM_P_SIZE, "16MiB", "largest request body (413 above)",
	 1024, 1 << 30, NULL, 0},
	{"max_raw", TLCM_P_SIZE, "64MiB", "largest decompressed package "
	 "payload (413 above)", 1024, 1 << 30, NULL, 0},
	{"device_rate", TLCM_P_FLOAT, "200", "packages per second per device "
	 "(token bucket; 0: no limit); over it: 429 with Retry-After", 0, 1e6,
	 NULL, 0},
	{"device_burst", TLCM_P_FLOAT, "1000", "packages a device may send at "
	 "once after a quiet spell", 1, 1e7, NULL, 0},
	{"threads", TLCM_P_INT, "16", "worker threads (store commits of "
	 "concurrent requests share one fsync)", 1, 64, NULL, 0},
	{"port_file", TLCM_P_PATH, "", "write the bound port here once "
	 "serving (for port 0)", 0, 0, NULL, 0},
	{"signing_key", TLCM_P_PATH, "", "Ed25519 secret key file of "
	 "`tinylcm model keygen` (PREFIX.key): signs model offers; empty: "
	 "model upload answers 403", 0, 0, NULL, 0},
	{"key_id", TLCM_P_STRING, "", "the key id offers carry; must be the "
	 "one in signing_key's file (empty: that one)", 0, 0, NULL, 0},
	{"model_ttl", TLCM_P_DURATION, "30d", "offers of an upload without "
	 "expires_s expire this long after it", 3.6e12, 3.1536e17, NULL, 0},
	{"community_min_days", TLCM_P_INT, "30", "distinct days of "
	 "telemetry a device needs for community models", 1, 3650, NULL, 0},
	{"community_min_devices", TLCM_P_INT, "3", "community averages and "
	 "ranks over fewer devices are not shown (anonymity)", 1, 1e6, NULL,
	 0},
	{"telemetry_max_age", TLCM_P_DURATION, "7d", "telemetry points older "
	 "than this are refused (contribution days cannot be back-dated)",
	 3.6e12, 3.1536e17, NULL, 0},
	/* retention (retention.c, docs/api.md#retention); 0: forever */
	{"retain_packages", TLCM_P_DURATION, "30d", "keep a package's record "
	 "and bytes this long after it arrived (0: forever); its id stays "
	 "known (`duplicate`) while anything decoded from it is kept", 0,
	 3.2e18, NULL, 0},
	{"retain_drift", TLCM_P_DURATION, "365d", "keep drift events this "
	 "long after they arrived (0: forever); pending events stay until "
	 "a person validates or rejects them", 0, 3.2e18, NULL, 0},
	{"retain_samples", TLCM_P_DURATION, "365d", "keep quarantined "
	 "samples and thumbnails this long after they arrived (0: forever); "
	 "those of a pending drift event stay", 0, 3.2e18, NULL, 0},
	{"retain_images", TLCM_P_DURATION, "90d", "keep image attachments "
	 "this long after they arrived (0: forever); those of a package "
	 "with a pending drift event stay", 0, 3.2e18, NULL, 0},
	{"retain_metrics", TLCM_P_DURATION, "90d", "keep metrics records "
	 "this long after their own time_ns, the device's clock (0: "
	 "forever)", 0, 3.2e18, NULL, 0},
	{"retain_logs", TLCM_P_DURATION, "30d", "keep log lines this long "
	 "after their own time_ns, the device's clock (0: forever)", 0,
	 3.2e18, NULL, 0},
	{"retain_telemetry", TLCM_P_DURATION, "400d", "keep community "
	 "telemetry (daily aggregates, contribution days) this long (0: "
	 "forever); at least community_min_days", 0, 3.2e18, NULL, 0},
	{"retention_interval", TLCM_P_DURATION, "1h", "how often the "
	 "retention sweep runs (the first right after start); it compacts "
	 "what it removed", 1e9, 3.2e18, NULL, 0},
	{0},
};

static void set_hash(const char *s, unsigned char out[32], bool *have)
{
	*have = s && *s;
	if (*have)
		core_sha256(s, strlen(s), out);
}

static int write_port(const char *path, int port, char *why, size_t cap)
{
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) ||
	    rename(tmp, path)) {
		snprintf(why, cap, "port_file %s: %s", path, strerror(errno));
		return TLCM_EIO;
	}
	return 0;
}

static void destroy(core_t *c)
{
	core_http_stop(c);
	if (c->store)
		core_devices_flush(c);
	core_devices_free(c);
	core_models_free(c);
	core_telemetry_free(c);
	core_retention_free(c);
	for (int i = 0; i < CORE_LOCKS; i++)
		pthread_mutex_destroy(&c->locks[i]);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	node_t *n = st;
	const char *who = tlcm_node_id(ctx);
	if (sodium_init() < 0) {
		tlcm_error(who, "libsodium cannot start");
		return TLCM_EINTERNAL;
	}
	core_t *c = calloc(1, sizeof *c);
	if (!c)
		return TLCM_ENOMEM;
	c->ctx = ctx;
	pthread_mutex_init(&c->mu, NULL);
	for (int i = 0; i < CORE_LOCKS; i++)
		pthread_mutex_init(&c->locks[i], NULL);
	c->store = tlcm_graph_store(ctx);
	if (!c->store) {
		tlcm_error(who, "the core keeps its records in the graph's "
			   "store: set settings.store (and not isolate: "
			   "process)");
		destroy(c);
		return TLCM_EINVAL;
	}
	set_hash(tlcm_param_str(ctx, "admin_token"), c->admin_hash,
		 &c->have_admin);
	set_hash(tlcm_param_str(ctx, "api_key"), c->key_hash, &c->have_key);
	c->max_body = tlcm_param_size(ctx, "max_body");
	c->max_raw = tlcm_param_size(ctx, "max_raw");
	c->rate = tlcm_param_float(ctx, "device_rate");
	c->burst = tlcm_param_float(ctx, "device_burst");
	c->nthreads = (unsigned)tlcm_param_int(ctx, "threads");
	char why[512] = "";
	int rc = core_devices_load(c, why, sizeof why);
	if (!rc && (rc = core_feedback_load(c)))
		snprintf(why, sizeof why, "cannot read the feedback queue: %s",
			 tlcm_strerror(rc));
	if (!rc)
		rc = core_models_init(c, why, sizeof why);
	if (!rc)
		rc = core_telemetry_init(c, why, sizeof why);
	if (!rc)
		rc = core_retention_init(c, why, sizeof why);
	const char *cert = tlcm_param_str(ctx, "tls_cert");
	size_t known = c->ndev; /* read before the workers can register */
	if (!rc)
		rc = core_http_start(c, tlcm_param_str(ctx, "listen"), cert,
				     tlcm_param_str(ctx, "tls_key"), why,
				     sizeof why);
	const char *pf = tlcm_param_str(ctx, "port_file");
	if (!rc && pf && *pf)
		rc = write_port(pf, c->port, why, sizeof why);
	if (rc) {
		tlcm_error(who, "%s", why);
		destroy(c);
		return rc;
	}
	tlcm_log(TLCM_LOG_INFO, who, "serving the fleet API at %s (port %d, "
		 "%zu devices known%s%s)", tlcm_param_str(ctx, "listen"),
		 c->port, known, c->have_admin ? "" : "; no admin_token: "
		 "admin API off", c->have_key ? "" : "; open registration");
	n->c = c;
	tlcm_set_tick(ctx, 1000000000ull);
	return 0;
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	node_t *n = st;
	(void)now;
	core_devices_flush(n->c);
	if (!tlcm_stopping(ctx))
		core_retention_tick(n->c);
	return tlcm_stopping(ctx) ? TLCM_ECLOSED : 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	(void)ctx;
	core_t *c = ((node_t *)st)->c;
	pthread_mutex_lock(&c->mu);
	size_t ndev = c->ndev;
	pthread_mutex_unlock(&c->mu);
	int n = snprintf(buf, len, "{\"port\":%d,\"devices\":%zu,"
		 "\"requests\":%" PRIu64
		 ",\"stored\":%" PRIu64 ",\"duplicates\":%" PRIu64
		 ",\"rejected\":%" PRIu64 ",\"rate_limited\":%" PRIu64
		 ",\"drift_events\":%" PRIu64 ",\"feedback_queued\":%" PRIu64
		 ",\"feedback_acked\":%" PRIu64 "}", c->port, ndev,
		 (uint64_t)c->st.requests, (uint64_t)c->st.stored,
		 (uint64_t)c->st.duplicates, (uint64_t)c->st.rejected,
		 (uint64_t)c->st.rate_limited, (uint64_t)c->st.drift_events,
		 (uint64_t)c->st.feedback_queued,
		 (uint64_t)c->st.feedback_acked);
	/* and the retention's figures, when they fit */
	char ret[1024];
	size_t rl = core_retention_describe(c, ret, sizeof ret);
	if (n > 0 && rl && (size_t)n + rl + 1 < len)
		snprintf(buf + n - 1, len - (size_t)n + 1, ",%s}", ret);
	return 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	node_t *n = st;
	if (!n->c)
		return;
	tlcm_log(TLCM_LOG_INFO, tlcm_node_id(ctx), "stored %" PRIu64
		 " packages (%" PRIu64 " duplicates, %" PRIu64 " rejected), %"
		 PRIu64 " drift events, %" PRIu64 " labels queued",
		 (uint64_t)n->c->st.stored, (uint64_t)n->c->st.duplicates,
		 (uint64_t)n->c->st.rejected, (uint64_t)n->c->st.drift_events,
		 (uint64_t)n->c->st.feedback_queued);
	destroy(n->c);
	n->c = NULL;
}

const tlcm_node_type_t tlcm_node_core = {
	.name = "core",
	.doc = "the fleet server: device registry, package ingest with "
	       "de-duplication, drift hub and ground-truth feedback over "
	       "HTTP(S) (docs/api.md)",
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(node_t),
	.init = init,
	.tick = tick,
	.describe = describe,
	.fini = fini,
};
