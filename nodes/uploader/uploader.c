/* uploader.c — node `uploader`: store-and-forward from the graph store's
 * outbox (engine/outbox.h) to the core, per the contract in docs/api.md.
 * With `deploy_dir`, a sync ends with graph deployment (deploy.h): the
 * runner's outcomes are reported (POST /devices/{id}/graph/status) and
 * the device's graph is pulled with If-None-Match (GET
 * /devices/{id}/graph); a new one goes to DIR/pending.yaml for
 * `tinylcm run --deploy-dir DIR`.
 *
 * A sync is: GET /ping (latency → link quality), POST /devices/register
 * when the device has no token yet (or got a 401) — with a random secret
 * persisted before the first try, so that a registration whose answer
 * was lost can be repeated (docs/api.md) —, POST /packages for
 * every package the policy lets through — priority, then age — and GET
 * /devices/{id}/feedback, whose labels are persisted (records), emitted as
 * LabeledSample on `labels` and only then acknowledged. A package leaves
 * the outbox only on a 2xx whose JSON names its id with status stored or
 * duplicate; a permanent refusal (400, 404, 413, other 4xx) moves it to
 * the dead letters with the status and the server's words; everything
 * else keeps it for a later try (exponential backoff, full jitter, capped;
 * Retry-After honoured). Syncs come every `interval`, doubled on a low
 * battery, a quarter of it when the backlog is large and energy plentiful,
 * at once when the packager queued a package of an urgent kind (its
 * `queued` events). When the inputs end (the packager's stream, at the
 * end of a finite graph) the engine ticks the node no more: eos() drains
 * the outbox first (drain_on_end, bounded by drain_timeout).
 *
 * I/O. All network work happens in tick() through a curl multi handle
 * (nodes/uploader/http.c): a tick waits on the socket for at most
 * tick_budget, then returns and is called again 1 ms later (10 ms while a
 * slow request is pending, without waiting), so a stalled server holds a
 * shared worker for at most tick_budget at a time; with `thread: own`
 * the budget can be raised freely. Node state is touched by callbacks
 * only, so the engine's one-callback-at-a-time rule is all the locking.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "engine/log.h"
#include "engine/outbox.h"
#include "fb/labeled_sample_fb.h"
#include "fb/link_fb.h"
#include "fb/package_event_fb.h"
#include "fb/power_fb.h"
#include "nodes/uploader/deploy.h"
#include "nodes/uploader/http.h"
#include "nodes/uploader/link.h"
#include "nodes/uploader/uploader.h"
#include "tinylcm_version.h"

enum { IN_QUEUED, IN_BATTERY };
enum { OUT_LABELS, OUT_LINK };
enum { PH_IDLE, PH_PING, PH_REGISTER, PH_UPLOAD, PH_FEEDBACK, PH_ACK,
       PH_REPORT, PH_GRAPH };
enum { RQ_NONE, RQ_PING, RQ_REGISTER, RQ_PACKAGE, RQ_FEEDBACK, RQ_ACK,
       RQ_REPORT, RQ_GRAPH };
enum { EXIT_NEVER, EXIT_SYNC, EXIT_DRAINED };

#define MAX_WAIT 64       /* packages with their own backoff */
#define MAX_SKIP 4096     /* ids passed over in one sync */
#define FB_PAGES 16       /* feedback pages per sync */
#define REPORTS 16        /* deployment outcomes reported per sync */
#define POISON_AFTER 3    /* failures before a package waits alone */
#define FB_EMITTED 1u
#define FB_ACKED 2u

static const char *const phase_names[] = {"idle", "ping", "register",
					  "upload", "feedback", "ack",
					  "report", "graph"};

typedef struct {
	char id[TLCM_PKG_ID_LEN + 1];
	unsigned fails;
	uint64_t next_ns;
} pkgwait_t;

/* a label from the core we have (persisted as record "fb/<id>") */
typedef struct {
	char *id;
	uint64_t seq;
	uint8_t flags;
} fbrec_t;

typedef struct {
	/* parameters */
	char *device, *api_key, *base;
	bool do_register, do_feedback;
	uint64_t ping_timeout_ns, backoff_base_ns, backoff_cap_ns, budget_ns;
	up_schedule_t sched;
	unsigned low_max_prio, images_every, feedback_limit;
	size_t feedback_keep;
	const char *const *image_kinds, *const *urgent_kinds;
	size_t nimage_kinds, nurgent_kinds;
	int exit_after;
	bool drain_on_end;
	uint64_t drain_ns;
	char battery_path[512]; /* "" none, else a capacity file */
	bool battery_auto;
	/* connection */
	tlcm_outbox_t *ob;
	up_http_t *http;
	char ua[160];
	char hdr_auth[600], hdr_dev[120], hdr_key[80];
	/* the sync */
	up_link_t link;
	int phase, req;
	uint64_t sync_started, next_sync, retry_at;
	unsigned gattempt;
	bool sync_now, image_sync, finish, reemit;
	uint64_t sync_no;
	char (*skip)[TLCM_PKG_ID_LEN + 1];
	size_t nskip, skip_cap;
	pkgwait_t wait[MAX_WAIT];
	size_t nwait;
	/* the package in flight */
	tlcm_outbox_entry_t cur;
	void *cur_pkg;
	size_t cur_len;
	/* the request body of register/ack */
	char *req_body;
	/* auth */
	char token[512];
	char secret[65]; /* registration secret (hex), record "secret" */
	bool registered, need_register;
	double lat, lon; /* registration: location from the configuration
			    (NAN: none) */
	/* energy */
	double battery;
	bool charging, battery_from_port;
	uint64_t battery_read_ns;
	const char *interval_why;
	uint64_t interval_ns;
	/* graph deployment ("" off) */
	char deploy_dir[512];
	char report[32];  /* the outcome file being reported */
	unsigned reports; /* this sync */
	uint64_t graphs_fetched, graph_reports;
	/* feedback */
	fbrec_t *fb;
	size_t nfb, fb_cap;
	uint64_t fb_seq;
	char **pending_ack;
	size_t npending;
	bool fb_more;
	unsigned fb_pages;
	/* counters */
	uint64_t uploaded, duplicates, dead, bad_acks, retries, net_errors,
		bytes, syncs, sync_failures, labels, acked, registrations,
		link_events, skipped_policy, bad_input, h2, reused;
	bool forbidden;
	char last_error[256];
	uint64_t rng;
} up_t;

static const tlcm_port_desc_t inputs[] = {
	{"queued", "*", "the packager's `queued` events (TPKE): a package of "
	 "an urgent kind starts a sync at once; any other message does too "
	 "(a drift event itself)", TLCM_PORT_OPTIONAL},
	{"battery", "POWR", "battery level and charging (PowerState), "
	 "instead of /sys/class/power_supply", TLCM_PORT_OPTIONAL},
	{0},
};

static const tlcm_port_desc_t outputs[] = {
	{"labels", "SMPL", "ground truth from the core (LabeledSample, "
	 "source ground_truth), for adapt's `labels`", 0},
	{"link", "LINK", "link state transitions and quality changes "
	 "(LinkEvent)", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"url", TLCM_P_STRING, NULL, "the core's API base, e.g. "
	 "https://core.example/api/v1 (http only on loopback/tests)", 0, 0,
	 NULL, 0},
	{"device_id", TLCM_P_STRING, NULL, "this device's id "
	 "([A-Za-z0-9._-]{1,64})", 0, 0, NULL, 0},
	{"api_key", TLCM_P_SECRET, "", "the fleet's API key (X-API-Key), "
	 "when devices use one instead of (or to register for) a token", 0,
	 0, NULL, 0},
	{"token", TLCM_P_SECRET, "", "a device token issued out of band "
	 "(else registration gets one and keeps it in the store)", 0, 0,
	 NULL, 0},
	{"register", TLCM_P_BOOL, "true", "register on first contact and "
	 "after a 401", 0, 0, NULL, 0},
	{"ca_file", TLCM_P_PATH, "", "CA bundle to verify the core with "
	 "(empty: the system's)", 0, 0, NULL, 0},
	{"ca_path", TLCM_P_PATH, "", "directory of CA certificates "
	 "(empty: the system's)", 0, 0, NULL, 0},
	{"connect_timeout", TLCM_P_DURATION, "10s", "to open a connection",
	 1e6, 3.6e12, NULL, 0},
	{"timeout", TLCM_P_DURATION, "60s", "a whole request", 1e6, 8.64e13,
	 NULL, 0},
	{"ping_timeout", TLCM_P_DURATION, "5s", "a /ping probe", 1e6, 3.6e12,
	 NULL, 0},
	{"low_speed_limit", TLCM_P_SIZE, "1KiB", "abort a transfer slower "
	 "than this many bytes/s for low_speed_time", 0, 0, NULL, 0},
	{"low_speed_time", TLCM_P_DURATION, "30s", "see low_speed_limit (0: "
	 "off)", 0, 0, NULL, 0},
	{"interval", TLCM_P_DURATION, "5m", "base sync interval", 1e6,
	 6.048e14, NULL, TLCM_PARAM_RUNTIME},
	{"backoff_base", TLCM_P_DURATION, "1s", "first retry delay (full "
	 "jitter: random(0, min(cap, base * 2^attempt)))", 1e3, 3.6e12, NULL,
	 0},
	{"backoff_cap", TLCM_P_DURATION, "5m", "longest retry delay", 1e3,
	 8.64e13, NULL, 0},
	{"offline_after", TLCM_P_INT, "3", "failed requests in a row that "
	 "make the link offline", 1, 1000, NULL, 0},
	{"stable_after", TLCM_P_INT, "3", "successes in a row that make an "
	 "unstable link online", 1, 1000, NULL, 0},
	{"low_max_priority", TLCM_P_INT, "2", "on a low-quality link only "
	 "packages of this priority or more important go", 1, 255, NULL,
	 TLCM_PARAM_RUNTIME},
	{"urgent_kinds", TLCM_P_LIST, "drift_event", "package kinds whose "
	 "Queued event on `queued` starts a sync at once", 0, 0, NULL, 0},
	{"image_kinds", TLCM_P_LIST, "prediction_images", "package kinds "
	 "that are images", 0, 0, NULL, 0},
	{"images_every", TLCM_P_INT, "5", "on a low-quality link images go "
	 "only every Nth sync (0: not at all)", 0, 1000000, NULL,
	 TLCM_PARAM_RUNTIME},
	{"battery", TLCM_P_STRING, "auto", "auto (/sys/class/power_supply), "
	 "off, or the path of a file holding the percentage", 0, 0, NULL,
	 0},
	{"battery_low", TLCM_P_FLOAT, "20", "below this (percent, not "
	 "charging) the interval doubles", 0, 100, NULL, 0},
	{"battery_high", TLCM_P_FLOAT, "80", "from this (percent), charging "
	 "or on mains, a large backlog quarters the interval", 0, 100, NULL,
	 0},
	{"backlog_high", TLCM_P_INT, "100", "packages queued that make a "
	 "backlog large (0: never shorten)", 0, 1e12, NULL, 0},
	{"feedback", TLCM_P_BOOL, "true", "pull ground-truth labels at each "
	 "sync", 0, 0, NULL, 0},
	{"feedback_limit", TLCM_P_INT, "256", "labels per feedback request "
	 "(the core answers at most 1000)", 1, 1000, NULL, 0},
	{"feedback_keep", TLCM_P_INT, "10000", "acknowledged label ids "
	 "remembered (a re-offered one is not emitted twice)", 16, 1e7, NULL,
	 0},
	{"tick_budget", TLCM_P_DURATION, "20ms", "longest a tick waits on "
	 "the network (raise it with thread: own)", 0, 0, NULL, 0},
	{"profile", TLCM_P_STRING, "", "registration: the device profile", 0,
	 0, NULL, 0},
	{"models", TLCM_P_LIST, "", "registration: ROLE=MODEL@VERSION items",
	 0, 0, NULL, 0},
	{"location", TLCM_P_STRING, "", "registration: LAT,LON from the "
	 "configuration (never an IP lookup)", 0, 0, NULL, 0},
	{"group", TLCM_P_STRING, "", "registration: the device's group "
	 "([A-Za-z0-9._-]{1,64}): it gets the group's graph when it has none "
	 "of its own", 0, 0, NULL, 0},
	{"deploy_dir", TLCM_P_PATH, "", "graph deployment: at each sync "
	 "report the outcomes `tinylcm run --deploy-dir` left here and pull "
	 "this device's graph into DIR/pending.yaml (docs/graphs.md, "
	 "Deployment); empty: off", 0, 0, NULL, 0},
	{"exit_after", TLCM_P_ENUM, "never", "finish the node after the "
	 "first sync (sync: cron style), or after a sync that left nothing "
	 "to send (drained)", 0, 0, "never|sync|drained", 0},
	{"drain_on_end", TLCM_P_BOOL, "true", "when the inputs end (the "
	 "packager's stream, and with it the node), sync on until the "
	 "outbox is empty, a sync sends nothing more, the graph is stopped "
	 "or drain_timeout passes", 0, 0, NULL, 0},
	{"drain_timeout", TLCM_P_DURATION, "30s", "the longest the drain at "
	 "the end of the inputs takes (what is left stays queued)", 0,
	 8.64e13, NULL, 0},
	{0},
};

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd64(up_t *u)
{
	/* splitmix64: the jitter needs spread, not secrecy */
	uint64_t z = (u->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Words for a log line or a dead letter: printable, one line, bounded. */
static void clean_text(char *dst, size_t cap, const char *s, size_t len)
{
	size_t j = 0;
	for (size_t i = 0; i < len && j + 1 < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		dst[j++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
	}
	dst[j] = 0;
}

__attribute__((format(printf, 2, 3))) static void set_error(up_t *u,
							     const char *fmt,
							     ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(u->last_error, sizeof u->last_error, fmt, ap);
	va_end(ap);
}

/* ---- link events --------------------------------------------------------- */

static void emit_link(tlcm_ctx_t *ctx, up_t *u, up_state_t from,
		      const char *reason)
{
	tlcm_fbb_t b;
	size_t rl = strlen(reason);
	if (tlcm_emit_begin(ctx, OUT_LINK, &b, 256 + rl))
		return;
	tlcm_fbb_ref_t r = tlcm_fbb_cstring(&b, reason);
	tlcm_LinkEvent_start(&b);
	tlcm_LinkEvent_add_from(&b, (tlcm_LinkState_enum_t)from);
	tlcm_LinkEvent_add_to(&b, (tlcm_LinkState_enum_t)u->link.state);
	tlcm_LinkEvent_add_quality(&b, (tlcm_LinkQuality_enum_t)
				   u->link.quality);
	tlcm_LinkEvent_add_latency_ns(&b, u->link.latency_ns);
	tlcm_LinkEvent_add_failures(&b, u->link.failures);
	tlcm_LinkEvent_add_reason(&b, r);
	tlcm_LinkEvent_add_time_ns(&b, wall_ns());
	if (!tlcm_emit_end(ctx, OUT_LINK, &b, tlcm_LinkEvent_end(&b),
			   tlcm_LinkEvent_IDENTIFIER))
		u->link_events++;
}

static void link_changed(tlcm_ctx_t *ctx, up_t *u, up_state_t from,
			 const char *reason)
{
	up_state_t to = u->link.state;
	tlcm_node_log(ctx, to == UP_OFFLINE || to == UP_UNSTABLE
		      ? TLCM_LOG_WARN : TLCM_LOG_INFO, "link %s -> %s (%s)",
		      up_state_name(from), up_state_name(to), reason);
	emit_link(ctx, u, from, reason);
}

static void net_success(tlcm_ctx_t *ctx, up_t *u, long status)
{
	up_state_t prev;
	if (up_link_success(&u->link, &prev)) {
		char why[32];
		snprintf(why, sizeof why, "HTTP %ld", status);
		link_changed(ctx, u, prev, why);
	}
}

static void net_failure(tlcm_ctx_t *ctx, up_t *u, const char *what,
			const up_resp_t *r)
{
	char why[400];
	snprintf(why, sizeof why, "%s: %s", what, r->error);
	u->net_errors++;
	set_error(u, "%s", why);
	up_state_t prev;
	if (up_link_failure(&u->link, &prev))
		link_changed(ctx, u, prev, why);
}

/* ---- energy -------------------------------------------------------------- */

static bool read_num(const char *path, double *v)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	bool ok = fscanf(f, "%lf", v) == 1;
	fclose(f);
	return ok;
}

static bool read_word(const char *path, char *w, size_t cap)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	bool ok = fgets(w, (int)cap, f) != NULL;
	fclose(f);
	w[strcspn(w, "\n")] = 0;
	return ok;
}

/* The first battery in /sys/class/power_supply (type Battery), and
 * whether it charges. */
static bool sys_battery(double *pct, bool *charging)
{
	DIR *d = opendir("/sys/class/power_supply");
	if (!d)
		return false;
	struct dirent *e;
	bool found = false;
	while (!found && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[512], w[64];
		snprintf(p, sizeof p, "/sys/class/power_supply/%s/type",
			 e->d_name);
		if (!read_word(p, w, sizeof w) || strcmp(w, "Battery"))
			continue;
		snprintf(p, sizeof p, "/sys/class/power_supply/%s/capacity",
			 e->d_name);
		if (!read_num(p, pct))
			continue;
		snprintf(p, sizeof p, "/sys/class/power_supply/%s/status",
			 e->d_name);
		*charging = read_word(p, w, sizeof w) &&
			    (!strcmp(w, "Charging") || !strcmp(w, "Full"));
		found = true;
	}
	closedir(d);
	return found;
}

static void read_battery(up_t *u, uint64_t now)
{
	if (u->battery_from_port ||
	    (u->battery_read_ns && now - u->battery_read_ns < 10000000000ull))
		return;
	u->battery_read_ns = now;
	double v;
	bool ch = false;
	if (u->battery_path[0]) {
		if (read_num(u->battery_path, &v))
			u->battery = v, u->charging = false;
	} else if (u->battery_auto) {
		if (sys_battery(&v, &ch))
			u->battery = v, u->charging = ch;
	}
}

static uint64_t sync_interval(up_t *u)
{
	tlcm_outbox_stats_t st = {0};
	tlcm_outbox_stats(u->ob, &st);
	up_energy_t e = {.battery = u->battery, .charging = u->charging,
			 .backlog = st.packages};
	u->interval_ns = up_sync_interval(&u->sched, &e, &u->interval_why);
	return u->interval_ns;
}

/* ---- auth and records ---------------------------------------------------- */

/* Record "auth": device id, NUL, token (empty: registered with the API
 * key). Never logged. */
static int save_auth(tlcm_ctx_t *ctx, up_t *u)
{
	size_t dl = strlen(u->device), tl = strlen(u->token);
	char *v = malloc(dl + tl + 2);
	if (!v)
		return TLCM_ENOMEM;
	memcpy(v, u->device, dl + 1);
	memcpy(v + dl + 1, u->token, tl + 1);
	tlcm_record_op_t op = {"auth", 4, v, dl + tl + 2};
	int rc = tlcm_records_write(ctx, &op, 1);
	free(v);
	return rc;
}

static int drop_auth(tlcm_ctx_t *ctx)
{
	tlcm_record_op_t op = {"auth", 4, NULL, 0};
	return tlcm_records_write(ctx, &op, 1);
}

/* The registration secret (docs/api.md): 32 random bytes as hex, made
 * once per device id and written to the record "secret" (device id, NUL,
 * hex) before the first registration goes out — so that when the answer
 * to it is lost, the repeat carries the same secret and the core, which
 * knows its hash, hands out a new token instead of 409. Never logged. */
static int ensure_secret(tlcm_ctx_t *ctx, up_t *u)
{
	if (u->secret[0])
		return 0;
	uint8_t raw[32];
	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		return TLCM_EIO;
	char hex[65];
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(hex + 2 * i, 3, "%02x", raw[i]);
	size_t dl = strlen(u->device);
	char v[64 + 1 + 65];
	memcpy(v, u->device, dl + 1);
	memcpy(v + dl + 1, hex, 65);
	tlcm_record_op_t op = {"secret", 6, v, dl + 1 + 65};
	int rc = tlcm_records_write(ctx, &op, 1);
	if (!rc)
		memcpy(u->secret, hex, sizeof u->secret);
	return rc;
}

static void set_auth_headers(up_t *u)
{
	u->hdr_auth[0] = 0;
	if (u->token[0])
		snprintf(u->hdr_auth, sizeof u->hdr_auth,
			 "Authorization: Bearer %s", u->token);
	else if (u->api_key[0])
		snprintf(u->hdr_auth, sizeof u->hdr_auth, "X-API-Key: %s",
			 u->api_key);
}

static int load_record(void *arg, const void *key, size_t klen,
		       const void *val, size_t vlen)
{
	up_t *u = arg;
	if (klen == 4 && !memcmp(key, "auth", 4)) {
		const char *v = val;
		size_t dl = strnlen(v, vlen);
		if (dl + 1 < vlen && !strcmp(v, u->device)) {
			const char *t = v + dl + 1;
			size_t tl = strnlen(t, vlen - dl - 1);
			if (tl < sizeof u->token && !u->token[0]) {
				memcpy(u->token, t, tl);
				u->token[tl] = 0;
			}
			u->registered = true;
		}
		return 0;
	}
	if (klen == 6 && !memcmp(key, "secret", 6)) {
		/* another device id's secret is not ours: a new one is made
		 * (and replaces it) at our first registration */
		const char *v = val;
		size_t dl = strnlen(v, vlen);
		if (dl + 1 + 65 == vlen && !strcmp(v, u->device) &&
		    strnlen(v + dl + 1, 65) == 64)
			memcpy(u->secret, v + dl + 1, 65);
		return 0;
	}
	if (klen > 3 && !memcmp(key, "fb/", 3) && vlen >= 9) {
		if (u->nfb == u->fb_cap) {
			size_t c = u->fb_cap ? u->fb_cap * 2 : 64;
			fbrec_t *n = realloc(u->fb, c * sizeof *n);
			if (!n)
				return TLCM_ENOMEM;
			u->fb = n;
			u->fb_cap = c;
		}
		fbrec_t *f = &u->fb[u->nfb];
		const uint8_t *v = val;
		memcpy(&f->seq, v, 8);
		f->flags = v[8];
		f->id = strndup((const char *)key + 3, klen - 3);
		if (!f->id)
			return TLCM_ENOMEM;
		u->nfb++;
		if (f->seq >= u->fb_seq)
			u->fb_seq = f->seq + 1;
	}
	return 0;
}

static fbrec_t *fb_find(up_t *u, const char *id)
{
	for (size_t i = 0; i < u->nfb; i++)
		if (!strcmp(u->fb[i].id, id))
			return &u->fb[i];
	return NULL;
}

/* ---- labels -------------------------------------------------------------- */

/* A label's record: [u64 seq][u8 flags][u64 frame][label\0][source\0]. */
static size_t fb_value(uint8_t *out, size_t cap, uint64_t seq, uint8_t flags,
		       uint64_t frame, const char *label, const char *source)
{
	size_t ll = strlen(label) + 1, sl = strlen(source) + 1;
	size_t n = 17 + ll + sl;
	if (n > cap)
		return 0;
	memcpy(out, &seq, 8);
	out[8] = flags;
	memcpy(out + 9, &frame, 8);
	memcpy(out + 17, label, ll);
	memcpy(out + 17 + ll, source, sl);
	return n;
}

static int emit_label(tlcm_ctx_t *ctx, uint64_t frame, const char *label)
{
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, OUT_LABELS, &b, 128 + strlen(label));
	if (rc)
		return rc;
	tlcm_fbb_ref_t l = tlcm_fbb_cstring(&b, label);
	tlcm_fbb_ref_t s = tlcm_fbb_cstring(&b, "ground_truth");
	tlcm_LabeledSample_start(&b);
	tlcm_LabeledSample_add_frame_id(&b, frame);
	tlcm_LabeledSample_add_label(&b, l);
	tlcm_LabeledSample_add_source(&b, s);
	return tlcm_emit_end(ctx, OUT_LABELS, &b, tlcm_LabeledSample_end(&b),
			     tlcm_LabeledSample_IDENTIFIER);
}

/* Labels re-emitted after a restart: persisted, never marked emitted (the
 * process died in between). Their text is in the record. */
typedef struct {
	tlcm_ctx_t *ctx;
	up_t *u;
} reemit_t;

static int reemit_one(void *arg, const void *key, size_t klen,
		      const void *val, size_t vlen)
{
	reemit_t *r = arg;
	const uint8_t *v = val;
	if (vlen < 19 || (v[8] & FB_EMITTED))
		return 0;
	const char *label = (const char *)v + 17;
	size_t ll = strnlen(label, vlen - 17);
	if (17 + ll + 1 >= vlen)
		return 0;
	uint64_t frame;
	memcpy(&frame, v + 9, 8);
	if (emit_label(r->ctx, frame, label))
		return 0;
	r->u->labels++;
	uint8_t *nv = malloc(vlen);
	if (!nv)
		return TLCM_ENOMEM;
	memcpy(nv, v, vlen);
	nv[8] |= FB_EMITTED;
	tlcm_record_op_t op = {key, klen, nv, vlen};
	tlcm_records_write(r->ctx, &op, 1);
	free(nv);
	char id[200];
	clean_text(id, sizeof id, (const char *)key + 3, klen - 3);
	fbrec_t *f = fb_find(r->u, id);
	if (f)
		f->flags |= FB_EMITTED;
	return 0;
}

/* Forget the oldest acknowledged labels beyond feedback_keep. */
static void fb_prune(tlcm_ctx_t *ctx, up_t *u)
{
	while (u->nfb > u->feedback_keep) {
		size_t old = SIZE_MAX;
		for (size_t i = 0; i < u->nfb; i++)
			if ((u->fb[i].flags & FB_ACKED) &&
			    (old == SIZE_MAX || u->fb[i].seq < u->fb[old].seq))
				old = i;
		if (old == SIZE_MAX)
			return;
		char key[200];
		int kl = snprintf(key, sizeof key, "fb/%s", u->fb[old].id);
		tlcm_record_op_t op = {key, (size_t)kl, NULL, 0};
		tlcm_records_write(ctx, &op, 1);
		free(u->fb[old].id);
		u->fb[old] = u->fb[--u->nfb];
	}
}

static void pending_clear(up_t *u)
{
	for (size_t i = 0; i < u->npending; i++)
		free(u->pending_ack[i]);
	free(u->pending_ack);
	u->pending_ack = NULL;
	u->npending = 0;
}

static bool valid_label_id(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._:-", s[i]))
			return false;
	return true;
}

/* A copy of JSON text with every integer of 16 digits or more quoted:
 * cJSON keeps numbers as doubles, exact only to 2^53, and frame ids use
 * all 64 bits. Strings (and their escapes) are copied as they are. */
static char *quote_big_ints(const char *s, size_t len)
{
	char *d = malloc(len + len / 8 + 3), *o = d;
	if (!d)
		return NULL;
	size_t extra = len / 8 + 2; /* two quotes per 16+ digits */
	bool str = false;
	for (size_t i = 0; i < len;) {
		char c = s[i];
		if (str) {
			*o++ = c;
			i++;
			if (c == '\\' && i < len)
				*o++ = s[i++];
			else if (c == '"')
				str = false;
			continue;
		}
		if (c == '"') {
			str = true;
			*o++ = s[i++];
			continue;
		}
		bool neg = c == '-' && i + 1 < len &&
			   isdigit((unsigned char)s[i + 1]);
		if (isdigit((unsigned char)c) || neg) {
			size_t j = i + 1;
			while (j < len && isdigit((unsigned char)s[j]))
				j++;
			bool frac = j < len && strchr(".eE", s[j]);
			if (j - i >= 16 && !frac && extra >= 2) {
				*o++ = '"';
				memcpy(o, s + i, j - i);
				o += j - i;
				*o++ = '"';
				extra -= 2;
			} else {
				memcpy(o, s + i, j - i);
				o += j - i;
			}
			i = j;
			continue;
		}
		*o++ = s[i++];
	}
	*o = 0;
	return d;
}

/* frame_id as a JSON number (exact below 2^53) or a quoted integer. */
static bool frame_of(const cJSON *f, uint64_t *out)
{
	if (cJSON_IsNumber(f)) {
		double v = f->valuedouble;
		if (!(v >= 0 && v < 9007199254740992.0)) /* 2^53 */
			return false;
		*out = (uint64_t)f->valuedouble;
		return true;
	}
	if (!cJSON_IsString(f) || !isdigit((unsigned char)f->valuestring[0]))
		return false;
	char *end;
	errno = 0;
	*out = strtoull(f->valuestring, &end, 10);
	return !*end && !errno;
}

/* The feedback answer: persist the new labels (flag 0), emit them, mark
 * them emitted; every id offered goes to pending_ack. 0, or TLCM_EPROTO
 * for an answer that is not the documented JSON. */
static int take_feedback(tlcm_ctx_t *ctx, up_t *u, const char *body,
			 size_t len)
{
	char *text = quote_big_ints(body, len);
	cJSON *j = text ? cJSON_Parse(text) : NULL;
	free(text);
	const cJSON *ls = cJSON_GetObjectItemCaseSensitive(j, "labels");
	if (!cJSON_IsArray(ls)) {
		cJSON_Delete(j);
		return TLCM_EPROTO;
	}
	u->fb_more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "more"));
	pending_clear(u);
	size_t n = (size_t)cJSON_GetArraySize(ls), nops = 0;
	tlcm_record_op_t *ops = calloc(n + 1, sizeof *ops);
	u->pending_ack = calloc(n + 1, sizeof *u->pending_ack);
	if (!ops || !u->pending_ack) {
		free(ops);
		cJSON_Delete(j);
		return TLCM_ENOMEM;
	}
	/* first pass: the new ones, persisted in one batch */
	const cJSON *e;
	size_t bad = 0;
	cJSON_ArrayForEach(e, ls) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
		const cJSON *fr = cJSON_GetObjectItemCaseSensitive(e,
								   "frame_id");
		const cJSON *lb = cJSON_GetObjectItemCaseSensitive(e, "label");
		const cJSON *src = cJSON_GetObjectItemCaseSensitive(e,
								    "source");
		uint64_t frame;
		if (!cJSON_IsString(id) || !valid_label_id(id->valuestring) ||
		    !frame_of(fr, &frame) ||
		    !cJSON_IsString(lb) || !lb->valuestring[0] ||
		    strlen(lb->valuestring) > 255) {
			bad++;
			continue;
		}
		char *pid = strdup(id->valuestring);
		if (!pid)
			break;
		if (fb_find(u, pid)) {
			/* offered again: ours already, acknowledge it */
			u->pending_ack[u->npending++] = pid;
			continue;
		}
		if (u->nfb == u->fb_cap) {
			size_t c = u->fb_cap ? u->fb_cap * 2 : 64;
			fbrec_t *nf = realloc(u->fb, c * sizeof *nf);
			if (!nf) {
				free(pid);
				break;
			}
			u->fb = nf;
			u->fb_cap = c;
		}
		uint8_t v[600];
		const char *s = cJSON_IsString(src) ? src->valuestring : "";
		size_t vl = fb_value(v, sizeof v, u->fb_seq, 0,
				     frame, lb->valuestring,
				     strlen(s) < 128 ? s : "");
		char key[200];
		int kl = snprintf(key, sizeof key, "fb/%s", pid);
		void *kc = malloc((size_t)kl), *vc = malloc(vl);
		char *fid = strdup(pid);
		if (!kc || !vc || !vl || !fid) {
			free(kc);
			free(vc);
			free(fid);
			free(pid);
			break; /* out of memory: the rest next time */
		}
		memcpy(kc, key, (size_t)kl);
		memcpy(vc, v, vl);
		ops[nops++] = (tlcm_record_op_t){kc, (size_t)kl, vc, vl};
		u->fb[u->nfb++] = (fbrec_t){fid, u->fb_seq++, 0};
		/* acknowledged only after the batch below is written */
		u->pending_ack[u->npending++] = pid;
	}
	if (bad)
		tlcm_node_log(ctx, TLCM_LOG_WARN, "feedback: %zu labels "
			      "without a valid id, frame_id or label skipped",
			      bad);
	int rc = nops ? tlcm_records_write(ctx, ops, nops) : 0;
	if (rc) {
		/* not persisted: neither emitted nor acknowledged; the core
		 * offers them again */
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "feedback: persisting %zu "
			      "labels failed: %s", nops, tlcm_strerror(rc));
		for (size_t i = 0; i < nops; i++)
			u->nfb--, free(u->fb[u->nfb].id);
		pending_clear(u);
	} else {
		/* persisted: emit, then mark emitted (a crash in between
		 * re-emits at the next start) */
		for (size_t i = 0; i < nops; i++) {
			uint8_t *v = (uint8_t *)ops[i].val;
			uint64_t frame;
			memcpy(&frame, v + 9, 8);
			if (!emit_label(ctx, frame, (const char *)v + 17)) {
				u->labels++;
				v[8] |= FB_EMITTED;
			}
		}
		for (size_t i = 0; i < nops; i++) {
			char id[200];
			clean_text(id, sizeof id, (const char *)ops[i].key + 3,
				   ops[i].klen - 3);
			fbrec_t *f = fb_find(u, id);
			if (f)
				f->flags = ((uint8_t *)ops[i].val)[8];
		}
		rc = tlcm_records_write(ctx, ops, nops);
		if (rc)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "feedback: marking "
				      "labels emitted failed: %s (they are "
				      "emitted again at the next start)",
				      tlcm_strerror(rc));
		rc = 0;
	}
	for (size_t i = 0; i < nops; i++) {
		free((void *)ops[i].key);
		free((void *)ops[i].val);
	}
	free(ops);
	cJSON_Delete(j);
	return rc;
}

/* The core took our ack: mark those labels acknowledged. An emitted
 * label's record shrinks to seq and flags (its text is not needed again);
 * one not emitted (its edge dropped it) keeps its text and flags on disk,
 * so the next start emits it. */
static void acked(tlcm_ctx_t *ctx, up_t *u)
{
	for (size_t i = 0; i < u->npending; i++) {
		fbrec_t *f = fb_find(u, u->pending_ack[i]);
		if (!f || (f->flags & FB_ACKED))
			continue;
		f->flags |= FB_ACKED;
		u->acked++;
		if (!(f->flags & FB_EMITTED))
			continue;
		char key[200];
		int kl = snprintf(key, sizeof key, "fb/%s", f->id);
		uint8_t v[9];
		memcpy(v, &f->seq, 8);
		v[8] = f->flags;
		tlcm_record_op_t op = {key, (size_t)kl, v, 9};
		tlcm_records_write(ctx, &op, 1);
	}
	pending_clear(u);
	fb_prune(ctx, u);
}

/* ---- the package policy -------------------------------------------------- */

static bool is_image(const up_t *u, const char *kind)
{
	for (size_t i = 0; i < u->nimage_kinds; i++)
		if (!strcmp(u->image_kinds[i], kind))
			return true;
	return false;
}

static int skip_add(up_t *u, const char *id)
{
	if (u->nskip == MAX_SKIP)
		return TLCM_ENOSPC;
	if (u->nskip == u->skip_cap) {
		size_t c = u->skip_cap ? u->skip_cap * 2 : 32;
		void *n = realloc(u->skip, c * sizeof *u->skip);
		if (!n)
			return TLCM_ENOMEM;
		u->skip = n;
		u->skip_cap = c;
	}
	snprintf(u->skip[u->nskip++], TLCM_PKG_ID_LEN + 1, "%s", id);
	return 0;
}

static pkgwait_t *wait_find(up_t *u, const char *id)
{
	for (size_t i = 0; i < u->nwait; i++)
		if (!strcmp(u->wait[i].id, id))
			return &u->wait[i];
	return NULL;
}

static void wait_forget(up_t *u, const char *id)
{
	pkgwait_t *w = wait_find(u, id);
	if (w)
		*w = u->wait[--u->nwait];
}

/* The core failed on this package (5xx, a bad answer): after a few times
 * in a row it waits on its own backoff, so that it cannot hold up the
 * packages behind it. */
static void wait_fail(up_t *u, const char *id, uint64_t now)
{
	pkgwait_t *w = wait_find(u, id);
	if (!w) {
		if (u->nwait == MAX_WAIT) {
			/* forget the one due first: it is retried soonest */
			size_t k = 0;
			for (size_t i = 1; i < u->nwait; i++)
				if (u->wait[i].next_ns < u->wait[k].next_ns)
					k = i;
			u->wait[k] = u->wait[--u->nwait];
		}
		w = &u->wait[u->nwait++];
		memset(w, 0, sizeof *w);
		snprintf(w->id, sizeof w->id, "%s", id);
	}
	w->fails++;
	w->next_ns = w->fails >= POISON_AFTER
		     ? now + up_backoff_ns(u->backoff_base_ns,
					   u->backoff_cap_ns,
					   w->fails - POISON_AFTER + 1,
					   rnd64(u))
		     : 0;
}

/* The next package this sync may send: 0 (u->cur, u->cur_pkg), or
 * TLCM_ENOENT. */
static int pick(tlcm_ctx_t *ctx, up_t *u)
{
	bool low = u->link.quality == UP_Q_LOW;
	uint8_t maxp = low && !u->image_sync ? (uint8_t)u->low_max_prio : 255;
	for (;;) {
		tlcm_outbox_entry_t e;
		void *pkg = NULL;
		size_t len = 0;
		int rc = tlcm_outbox_peek(u->ob, maxp,
					  (const char(*)[TLCM_PKG_ID_LEN + 1])
					  u->skip, u->nskip, &e, &pkg, &len);
		if (rc)
			return rc;
		bool ok = true;
		if (low && is_image(u, e.kind))
			ok = u->image_sync;
		else if (low)
			ok = e.priority <= u->low_max_prio;
		if (ok) {
			u->cur = e;
			u->cur_pkg = pkg;
			u->cur_len = len;
			return 0;
		}
		free(pkg);
		u->skipped_policy++;
		rc = skip_add(u, e.id);
		if (rc) {
			tlcm_node_log(ctx, TLCM_LOG_DEBUG, "more than %d "
				      "packages held back this sync",
				      MAX_SKIP);
			return TLCM_ENOENT;
		}
	}
}

/* ---- the sync ------------------------------------------------------------ */

static void sync_begin(tlcm_ctx_t *ctx, up_t *u, uint64_t now)
{
	u->phase = PH_PING;
	u->sync_no++;
	u->sync_started = now;
	u->sync_now = false;
	u->fb_pages = 0;
	u->nskip = 0;
	u->image_sync = u->images_every &&
			u->sync_no % u->images_every == 0;
	for (size_t i = 0; i < u->nwait; i++)
		if (u->wait[i].next_ns > now)
			skip_add(u, u->wait[i].id);
	read_battery(u, now);
	up_state_t prev;
	if (up_link_attempt(&u->link, &prev))
		link_changed(ctx, u, prev, "retrying");
}

static bool waiting_packages(const up_t *u)
{
	return u->nwait > 0;
}

static void sync_ok(up_t *u, uint64_t now)
{
	u->phase = PH_IDLE;
	u->gattempt = 0;
	u->syncs++;
	u->retry_at = 0;
	u->next_sync = now + sync_interval(u);
	if (u->exit_after == EXIT_SYNC ||
	    (u->exit_after == EXIT_DRAINED && !waiting_packages(u)))
		u->finish = true;
}

/* The sync stops here; the next one starts after delay_ns. */
static void sync_fail(up_t *u, uint64_t now, uint64_t delay_ns)
{
	u->phase = PH_IDLE;
	u->sync_failures++;
	u->retry_at = now + delay_ns;
	u->next_sync = u->retry_at;
	if (u->exit_after == EXIT_SYNC)
		u->finish = true;
}

static uint64_t backoff(up_t *u)
{
	return up_backoff_ns(u->backoff_base_ns, u->backoff_cap_ns,
			     u->gattempt++, rnd64(u));
}

static int start(up_t *u, int req, const char *method, const char *path,
		 const char *const *hdrs, const void *body, size_t len,
		 uint64_t timeout_ns)
{
	int rc = up_http_start(u->http, method, path, hdrs, body, len,
			       timeout_ns);
	if (rc)
		return rc;
	u->req = req;
	return 0;
}

static int start_register(tlcm_ctx_t *ctx, up_t *u)
{
	/* no registration without its secret on disk: a lost answer would
	 * lock us out (409) for good */
	int rc = ensure_secret(ctx, u);
	if (rc)
		return rc;
	struct utsname un;
	if (uname(&un))
		memset(&un, 0, sizeof un);
	for (char *p = un.sysname; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "device_id", u->device);
	cJSON_AddStringToObject(o, "secret", u->secret);
	cJSON_AddStringToObject(o, "platform", un.sysname);
	cJSON_AddStringToObject(o, "arch", un.machine);
	cJSON *v = cJSON_AddObjectToObject(o, "versions");
	cJSON_AddStringToObject(v, "tinylcm", TINYLCM_VERSION);
	cJSON *m = cJSON_AddObjectToObject(v, "models");
	const char *const *items;
	size_t n = tlcm_param_list(ctx, "models", &items);
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(items[i], '=');
		if (!eq || eq == items[i])
			continue; /* checked at init */
		char role[64];
		snprintf(role, sizeof role, "%.*s", (int)(eq - items[i]),
			 items[i]);
		cJSON_AddStringToObject(m, role, eq + 1);
	}
	const char *prof = tlcm_param_str(ctx, "profile");
	if (prof[0])
		cJSON_AddStringToObject(o, "profile", prof);
	const char *grp = tlcm_param_str(ctx, "group");
	if (grp[0])
		cJSON_AddStringToObject(o, "group", grp);
	if (!isnan(u->lat)) {
		cJSON *l = cJSON_AddObjectToObject(o, "location");
		cJSON_AddNumberToObject(l, "lat", u->lat);
		cJSON_AddNumberToObject(l, "lon", u->lon);
		cJSON_AddStringToObject(l, "source", "config");
	}
	free(u->req_body);
	u->req_body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o); /* (the body holds the secret: freed, never logged) */
	if (!u->req_body)
		return TLCM_ENOMEM;
	const char *h[] = {u->hdr_dev, "Content-Type: application/json",
			   "Accept: application/json",
			   u->hdr_auth[0] ? u->hdr_auth : NULL,
			   u->api_key[0] && u->token[0] ? u->hdr_key : NULL,
			   NULL};
	return start(u, RQ_REGISTER, "POST", "/devices/register", h,
		     u->req_body, strlen(u->req_body), 0);
}

static int start_package(up_t *u)
{
	char idem[64], ctype[] = "Content-Type: application/x-tinylcm-package";
	snprintf(idem, sizeof idem, "Idempotency-Key: %s", u->cur.id);
	const char *h[] = {u->hdr_dev, idem, ctype,
			   "Accept: application/json",
			   u->hdr_auth[0] ? u->hdr_auth : NULL, NULL};
	return start(u, RQ_PACKAGE, "POST", "/packages", h, u->cur_pkg,
		     u->cur_len, 0);
}

static int start_feedback(up_t *u)
{
	char path[160];
	snprintf(path, sizeof path, "/devices/%s/feedback?limit=%u",
		 u->device, u->feedback_limit);
	const char *h[] = {u->hdr_dev, "Accept: application/json",
			   u->hdr_auth[0] ? u->hdr_auth : NULL, NULL};
	return start(u, RQ_FEEDBACK, "GET", path, h, NULL, 0, 0);
}

static int start_ack(up_t *u)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *a = cJSON_AddArrayToObject(o, "ids");
	for (size_t i = 0; i < u->npending; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(u->pending_ack[i]));
	free(u->req_body);
	u->req_body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!u->req_body)
		return TLCM_ENOMEM;
	char path[160];
	snprintf(path, sizeof path, "/devices/%s/feedback/ack", u->device);
	const char *h[] = {u->hdr_dev, "Content-Type: application/json",
			   "Accept: application/json",
			   u->hdr_auth[0] ? u->hdr_auth : NULL, NULL};
	return start(u, RQ_ACK, "POST", path, h, u->req_body,
		     strlen(u->req_body), 0);
}

/* ---- graph deployment (deploy.h) ------------------------------------------ */

static bool permanent(long s);
static void http_trouble(tlcm_ctx_t *ctx, up_t *u, const char *what,
			 const up_resp_t *r, uint64_t now);

/* Report the oldest outcome the runner left: 0 (started), TLCM_ENOENT
 * (none left). An outcome file that is not the runner's JSON is removed
 * (it cannot be reported) with a warning. */
static int start_report(tlcm_ctx_t *ctx, up_t *u)
{
	for (;;) {
		if (u->reports >= REPORTS ||
		    up_deploy_next_outcome(u->deploy_dir, u->report,
					   sizeof u->report))
			return TLCM_ENOENT;
		char path[700], why[300], *text;
		size_t len;
		snprintf(path, sizeof path, "%s/%s/%s", u->deploy_dir,
			 UP_DEPLOY_OUTCOMES, u->report);
		int rc = up_deploy_read(path, 4 * UP_DEPLOY_DETAIL, &text,
					&len, why, sizeof why);
		cJSON *j = rc ? NULL : cJSON_ParseWithLength(text, len);
		const char *et = cJSON_GetStringValue(
			cJSON_GetObjectItemCaseSensitive(j, "etag"));
		const char *oc = cJSON_GetStringValue(
			cJSON_GetObjectItemCaseSensitive(j, "outcome"));
		bool ok = et && oc;
		cJSON_Delete(j);
		if (!ok) {
			tlcm_node_log(ctx, TLCM_LOG_WARN, "deploy: %s is not a "
				      "deployment outcome (%s): removed", path,
				      rc ? why : "no etag or outcome");
			free(text);
			unlink(path);
			continue;
		}
		/* sent as the runner wrote it (etag, outcome, detail,
		 * time_ns: its 64-bit integer exact, not through a double) */
		free(u->req_body);
		u->req_body = text;
		u->reports++;
		char rpath[160];
		snprintf(rpath, sizeof rpath, "/devices/%s/graph/status",
			 u->device);
		const char *h[] = {u->hdr_dev, "Content-Type: application/json",
				   "Accept: application/json",
				   u->hdr_auth[0] ? u->hdr_auth : NULL, NULL};
		return start(u, RQ_REPORT, "POST", rpath, h, u->req_body,
			     strlen(u->req_body), 0);
	}
}

/* GET our graph, If-None-Match the one we have. */
static int start_graph(up_t *u)
{
	char path[700], why[200], *etag = NULL, inm[100] = "";
	size_t len;
	snprintf(path, sizeof path, "%s/%s", u->deploy_dir, UP_DEPLOY_FETCHED);
	if (!up_deploy_read(path, 64, &etag, &len, why, sizeof why) &&
	    len == 64)
		snprintf(inm, sizeof inm, "If-None-Match: \"%s\"", etag);
	free(etag);
	char rpath[160];
	snprintf(rpath, sizeof rpath, "/devices/%s/graph", u->device);
	const char *h[] = {u->hdr_dev, "Accept: application/yaml",
			   u->hdr_auth[0] ? u->hdr_auth : NULL,
			   inm[0] ? inm : NULL, NULL};
	if (!h[2]) /* no auth header: keep If-None-Match in the list */
		h[2] = h[3], h[3] = NULL;
	return start(u, RQ_GRAPH, "GET", rpath, h, NULL, 0, 0);
}

/* The feedback is done: the deployment phases, or the sync ends. */
static void feedback_done(up_t *u, uint64_t now)
{
	if (u->deploy_dir[0]) {
		u->reports = 0;
		u->phase = PH_REPORT;
	} else {
		sync_ok(u, now);
	}
}

static void on_report(tlcm_ctx_t *ctx, up_t *u, const up_resp_t *r,
		      uint64_t now)
{
	char path[700];
	snprintf(path, sizeof path, "%s/%s/%s", u->deploy_dir,
		 UP_DEPLOY_OUTCOMES, u->report);
	long s = r->status;
	if (s >= 200 && s < 300) {
		u->graph_reports++;
		tlcm_node_log(ctx, TLCM_LOG_INFO, "deploy: outcome %s "
			      "reported to the core", u->report);
		unlink(path);
		return; /* the next one */
	}
	if (s == 404) {
		/* a core without graph deployment: keep it, pull nothing */
		tlcm_node_log(ctx, TLCM_LOG_WARN, "deploy: the core has no "
			      "graph deployment (404); outcome %s kept",
			      u->report);
		sync_ok(u, now);
		return;
	}
	if (permanent(s)) {
		char words[200];
		clean_text(words, sizeof words, r->body, r->len);
		tlcm_node_log(ctx, TLCM_LOG_WARN, "deploy: the core refused "
			      "outcome %s for good (HTTP %ld %s): removed",
			      u->report, s, words);
		unlink(path);
		return;
	}
	http_trouble(ctx, u, "graph status", r, now);
}

/* The ETag header's value without W/ and quotes, if it is a SHA-256. */
static bool etag_of(const up_resp_t *r, char out[65])
{
	const char *e = r->etag;
	if (!strncmp(e, "W/", 2))
		e += 2;
	size_t n = strlen(e);
	if (n == 66 && e[0] == '"' && e[65] == '"')
		e++, n -= 2;
	if (n != 64)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!strchr("0123456789abcdef", e[i]))
			return false;
	memcpy(out, e, 64);
	out[64] = 0;
	return true;
}

static void on_graph(tlcm_ctx_t *ctx, up_t *u, const up_resp_t *r,
		     uint64_t now)
{
	long s = r->status;
	if (s == 304 || s == 404) { /* nothing new, or nothing for us */
		sync_ok(u, now);
		return;
	}
	if (s != 200) {
		http_trouble(ctx, u, "graph", r, now);
		return;
	}
	char etag[65], sum[65], why[300];
	up_deploy_etag(r->body, r->len, sum);
	if (r->truncated || !etag_of(r, etag) || strcmp(etag, sum)) {
		set_error(u, "graph: the answer %s", r->truncated ?
			  "is larger than we take" : "does not match its "
			  "ETag (a SHA-256)");
		tlcm_node_log(ctx, TLCM_LOG_WARN, "deploy: %s; not deployed",
			      u->last_error);
		sync_fail(u, now, backoff(u));
		return;
	}
	int rc = up_deploy_write(u->deploy_dir, UP_DEPLOY_PENDING, r->body,
				 r->len, why, sizeof why);
	if (!rc)
		rc = up_deploy_write(u->deploy_dir, UP_DEPLOY_FETCHED, etag, 64,
				     why, sizeof why);
	if (rc) {
		set_error(u, "deploy: %s", why);
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", u->last_error);
		sync_fail(u, now, backoff(u));
		return;
	}
	u->graphs_fetched++;
	tlcm_node_log(ctx, TLCM_LOG_INFO, "deploy: new graph %.12s… (%zu "
		      "bytes) from the core, left in %s/%s for the runner",
		      etag, r->len, u->deploy_dir, UP_DEPLOY_PENDING);
	sync_ok(u, now);
}

/* Start the next request of the sync, or end it. 0, or an error that
 * ends the sync (logged by the caller). */
static int step(tlcm_ctx_t *ctx, up_t *u, uint64_t now)
{
	for (;;) {
		switch (u->phase) {
		case PH_PING:
			return start(u, RQ_PING, "GET", "/ping", NULL, NULL, 0,
				     u->ping_timeout_ns);
		case PH_REGISTER:
			if (u->do_register && (u->need_register ||
					       !u->registered))
				return start_register(ctx, u);
			u->phase = PH_UPLOAD;
			continue;
		case PH_UPLOAD: {
			int rc = pick(ctx, u);
			if (rc == TLCM_ENOENT) {
				u->phase = PH_FEEDBACK;
				continue;
			}
			if (rc)
				return rc;
			return start_package(u);
		}
		case PH_FEEDBACK:
			if (!u->do_feedback || u->fb_pages >= FB_PAGES) {
				feedback_done(u, now);
				if (u->phase == PH_IDLE)
					return 0;
				continue;
			}
			u->fb_pages++;
			return start_feedback(u);
		case PH_ACK:
			return start_ack(u);
		case PH_REPORT: {
			int rc = start_report(ctx, u);
			if (rc == TLCM_ENOENT) {
				u->phase = PH_GRAPH;
				continue;
			}
			return rc;
		}
		case PH_GRAPH:
			return start_graph(u);
		default:
			return 0;
		}
	}
}

static void drop_cur(up_t *u)
{
	free(u->cur_pkg);
	u->cur_pkg = NULL;
	u->cur_len = 0;
}

/* The body acknowledges this package: {"id": ID, "status": stored |
 * duplicate}. *dup when duplicate. */
static bool acknowledges(const up_resp_t *r, const char *id, bool *dup)
{
	cJSON *j = cJSON_ParseWithLength(r->body, r->len);
	const cJSON *i = cJSON_GetObjectItemCaseSensitive(j, "id");
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "status");
	bool ok = cJSON_IsString(i) && !strcmp(i->valuestring, id) &&
		  cJSON_IsString(s) && (!strcmp(s->valuestring, "stored") ||
					!strcmp(s->valuestring, "duplicate"));
	*dup = ok && !strcmp(s->valuestring, "duplicate");
	cJSON_Delete(j);
	return ok;
}

static bool permanent(long s)
{
	return s >= 400 && s < 500 && s != 401 && s != 403 && s != 408 &&
	       s != 425 && s != 429;
}

/* A refusal the device cannot fix by retrying: HTTP 401/403 (auth), or
 * a transient status: back off. */
static void http_trouble(tlcm_ctx_t *ctx, up_t *u, const char *what,
			 const up_resp_t *r, uint64_t now)
{
	char words[160];
	clean_text(words, sizeof words, r->body, r->len);
	set_error(u, "%s: HTTP %ld %s", what, r->status, words);
	if (r->status == 401) {
		/* not the package's fault: register again, after a pause */
		tlcm_node_log(ctx, TLCM_LOG_WARN, "%s: 401, the core does not "
			      "take our credentials%s", what, u->do_register
			      ? ": registering again"
			      : " (register: false: check token / api_key)");
		u->token[0] = 0;
		u->registered = false;
		u->need_register = true;
		drop_auth(ctx);
		set_auth_headers(u);
		sync_fail(u, now, backoff(u));
	} else if (r->status == 403) {
		if (!u->forbidden)
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s: 403 forbidden: "
				      "%s; backing off to %" PRIu64 " s", what,
				      words, u->backoff_cap_ns / 1000000000u);
		u->forbidden = true;
		sync_fail(u, now, u->backoff_cap_ns);
	} else if (r->status == 429 && r->retry_after_s >= 0) {
		uint64_t ra = (uint64_t)r->retry_after_s * 1000000000u,
			 lim = u->backoff_cap_ns > 3600000000000ull
			       ? u->backoff_cap_ns : 3600000000000ull;
		u->retries++;
		sync_fail(u, now, ra < lim ? ra : lim);
	} else {
		u->retries++;
		sync_fail(u, now, backoff(u));
	}
}

static void on_package(tlcm_ctx_t *ctx, up_t *u, const up_resp_t *r,
		       uint64_t now)
{
	const char *id = u->cur.id;
	long s = r->status;
	if (s >= 200 && s < 300) {
		bool dup;
		if (acknowledges(r, id, &dup)) {
			int rc = tlcm_outbox_done(u->ob, id);
			if (rc && rc != TLCM_ENOENT) {
				/* delivered, but still queued: it goes again
				 * and comes back `duplicate` */
				tlcm_node_log(ctx, TLCM_LOG_ERROR, "package %s "
					      "delivered but not removed: %s",
					      id, tlcm_strerror(rc));
				sync_fail(u, now, backoff(u));
				return;
			}
			u->uploaded++;
			u->duplicates += dup;
			u->bytes += u->cur_len;
			u->forbidden = false;
			u->gattempt = 0;
			wait_forget(u, id);
			return; /* next package */
		}
		u->bad_acks++;
		char words[120];
		clean_text(words, sizeof words, r->body, r->len);
		if (u->bad_acks <= 5 || u->bad_acks % 1000 == 0)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "package %s: HTTP "
				      "%ld without an acknowledgement of its "
				      "id (%s): kept, sent again later (%"
				      PRIu64 " so far)", id, s, words,
				      u->bad_acks);
		set_error(u, "package %s: HTTP %ld, not acknowledged", id, s);
		wait_fail(u, id, now);
		u->retries++;
		sync_fail(u, now, backoff(u));
		return;
	}
	if (permanent(s)) {
		char words[400], reason[512];
		clean_text(words, sizeof words, r->body, r->len);
		snprintf(reason, sizeof reason, "HTTP %ld: %s%s", s, words,
			 r->truncated ? "..." : "");
		int rc = tlcm_outbox_dead(u->ob, id, reason);
		if (rc && rc != TLCM_ENOENT) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "package %s refused "
				      "(%s) but not moved to the dead letters: "
				      "%s", id, reason, tlcm_strerror(rc));
			sync_fail(u, now, backoff(u));
			return;
		}
		u->dead++;
		wait_forget(u, id);
		tlcm_node_log(ctx, TLCM_LOG_WARN, "package %s (%s, %zu bytes) "
			      "refused for good, now a dead letter: %s", id,
			      u->cur.kind, u->cur_len, reason);
		return; /* next package */
	}
	if (s >= 500 || s == 408 || s == 425 || s < 200 || (s >= 300 &&
							    s < 400))
		wait_fail(u, id, now);
	http_trouble(ctx, u, "upload", r, now);
}

static void on_register(tlcm_ctx_t *ctx, up_t *u, const up_resp_t *r,
			uint64_t now)
{
	long s = r->status;
	if (s == 200 || s == 201) {
		cJSON *j = cJSON_ParseWithLength(r->body, r->len);
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "token");
		if (cJSON_IsString(t) && t->valuestring[0] &&
		    strlen(t->valuestring) < sizeof u->token) {
			snprintf(u->token, sizeof u->token, "%s",
				 t->valuestring);
		} else if (!u->api_key[0]) {
			cJSON_Delete(j);
			set_error(u, "register: HTTP %ld without a token", s);
			tlcm_node_log(ctx, TLCM_LOG_WARN, "%s", u->last_error);
			sync_fail(u, now, backoff(u));
			return;
		}
		cJSON_Delete(j);
		int rc = save_auth(ctx, u);
		if (rc)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "register: token not "
				      "persisted (%s): registering again after "
				      "a restart", tlcm_strerror(rc));
		u->registered = true;
		u->need_register = false;
		u->registrations++;
		set_auth_headers(u);
		tlcm_node_log(ctx, TLCM_LOG_INFO, "registered as %s (HTTP %ld"
			      ", %s)", u->device, s, u->token[0]
			      ? "token kept in the store" : "API key");
		u->phase = PH_UPLOAD;
		return;
	}
	if (s == 409) {
		set_error(u, "register: the core knows device %s and we "
			  "cannot prove it is us (not our registration "
			  "secret: another device with this id, or a store "
			  "that lost its records; no token, or a wrong API "
			  "key)", u->device);
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", u->last_error);
		sync_fail(u, now, u->backoff_cap_ns);
		return;
	}
	if (permanent(s)) {
		char words[200];
		clean_text(words, sizeof words, r->body, r->len);
		set_error(u, "register: HTTP %ld %s", s, words);
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", u->last_error);
		sync_fail(u, now, u->backoff_cap_ns);
		return;
	}
	http_trouble(ctx, u, "register", r, now);
}

static void on_done(tlcm_ctx_t *ctx, up_t *u, const up_resp_t *r,
		    uint64_t now)
{
	int req = u->req;
	u->req = RQ_NONE;
	static const char *const what[] = {"", "ping", "register", "upload",
					   "feedback", "ack", "graph status",
					   "graph"};
	if (r->curl) {
		char w[80];
		if (req == RQ_PACKAGE)
			snprintf(w, sizeof w, "upload %s", u->cur.id);
		else
			snprintf(w, sizeof w, "%s", what[req]);
		net_failure(ctx, u, w, r);
		drop_cur(u);
		u->retries += req == RQ_PACKAGE;
		sync_fail(u, now, backoff(u));
		return;
	}
	net_success(ctx, u, r->status);
	u->h2 += r->http_version == 2;
	u->reused += r->reused;
	switch (req) {
	case RQ_PING:
		if (up_link_probe(&u->link, r->time_ns)) {
			char why[64];
			snprintf(why, sizeof why, "ping %" PRIu64 " ms: %s",
				 r->time_ns / 1000000u,
				 up_quality_name(u->link.quality));
			tlcm_node_log(ctx, TLCM_LOG_INFO, "link quality %s",
				      why);
			emit_link(ctx, u, u->link.state, why);
		}
		u->phase = PH_REGISTER;
		break;
	case RQ_REGISTER:
		on_register(ctx, u, r, now);
		break;
	case RQ_PACKAGE:
		on_package(ctx, u, r, now);
		drop_cur(u);
		break;
	case RQ_FEEDBACK:
		if (r->status == 200) {
			int rc = take_feedback(ctx, u, r->body, r->len);
			if (rc == TLCM_EPROTO) {
				set_error(u, "feedback: not the documented "
					  "JSON");
				tlcm_node_log(ctx, TLCM_LOG_WARN, "%s",
					      u->last_error);
				sync_fail(u, now, backoff(u));
			} else if (rc) {
				sync_fail(u, now, backoff(u));
			} else if (u->npending) {
				u->phase = PH_ACK;
			} else {
				feedback_done(u, now);
			}
		} else if (r->status == 404) {
			/* a core without feedback: nothing to pull */
			feedback_done(u, now);
		} else {
			http_trouble(ctx, u, "feedback", r, now);
		}
		break;
	case RQ_ACK:
		if (r->status == 200) {
			acked(ctx, u);
			if (u->fb_more)
				u->phase = PH_FEEDBACK;
			else
				feedback_done(u, now);
		} else {
			http_trouble(ctx, u, "feedback ack", r, now);
		}
		break;
	case RQ_REPORT:
		on_report(ctx, u, r, now);
		break;
	case RQ_GRAPH:
		on_graph(ctx, u, r, now);
		break;
	}
}

/* ---- callbacks ----------------------------------------------------------- */

static void release(up_t *u)
{
	up_http_free(u->http);
	u->http = NULL;
	drop_cur(u);
	free(u->req_body);
	u->req_body = NULL;
	free(u->skip);
	u->skip = NULL;
	pending_clear(u);
	for (size_t i = 0; i < u->nfb; i++)
		free(u->fb[i].id);
	free(u->fb);
	u->fb = NULL;
	u->nfb = 0;
	free(u->device);
	free(u->api_key);
	free(u->base);
	u->device = u->api_key = u->base = NULL;
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	up_t *u = st;
	struct tlcm_store *store = tlcm_graph_store(ctx);
	if (!store) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "the uploader drains the "
			      "graph store's outbox: set settings.store (and "
			      "do not isolate it: its process has no store)");
		return TLCM_ENOTSUP;
	}
	u->ob = tlcm_store_outbox(store);
	if (!u->ob)
		return TLCM_ENOMEM;
	const char *url = tlcm_param_str(ctx, "url");
	const char *dev = tlcm_param_str(ctx, "device_id");
	if (strncmp(url, "https://", 8) && strncmp(url, "http://", 7)) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "url: want https://HOST/"
			      "api/v1 (or http:// on loopback), got '%s'",
			      url);
		return TLCM_EINVAL;
	}
	if (!up_http_valid_id(dev)) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "device_id: want "
			      "[A-Za-z0-9._-]{1,64}, got '%s'", dev);
		return TLCM_EINVAL;
	}
	/* a CA bundle that cannot be read would fail every sync with curl's
	 * words; say so once, at the start, naming the parameter */
	const char *ca = tlcm_param_str(ctx, "ca_file");
	if (ca[0] && access(ca, R_OK)) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "ca_file %s: cannot read: %s",
			      ca, strerror(errno));
		return TLCM_EINVAL;
	}
	if (!strncmp(url, "http://", 7) && !up_http_loopback(url))
		tlcm_node_log(ctx, TLCM_LOG_WARN, "url is plain http to "
			      "another host: packages and credentials travel "
			      "unencrypted");
	u->base = strdup(url);
	u->device = strdup(dev);
	u->api_key = strdup(tlcm_param_str(ctx, "api_key"));
	if (!u->base || !u->device || !u->api_key) {
		release(u);
		return TLCM_ENOMEM;
	}
	size_t bl = strlen(u->base);
	while (bl && u->base[bl - 1] == '/')
		u->base[--bl] = 0;
	const char *tok = tlcm_param_str(ctx, "token");
	if (strlen(tok) >= sizeof u->token) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "token: longer than %zu",
			      sizeof u->token - 1);
		release(u);
		return TLCM_EINVAL;
	}
	snprintf(u->token, sizeof u->token, "%s", tok);
	u->do_register = tlcm_param_bool(ctx, "register");
	u->do_feedback = tlcm_param_bool(ctx, "feedback");
	u->ping_timeout_ns = tlcm_param_duration_ns(ctx, "ping_timeout");
	u->backoff_base_ns = tlcm_param_duration_ns(ctx, "backoff_base");
	u->backoff_cap_ns = tlcm_param_duration_ns(ctx, "backoff_cap");
	if (u->backoff_cap_ns < u->backoff_base_ns)
		u->backoff_cap_ns = u->backoff_base_ns;
	u->budget_ns = tlcm_param_duration_ns(ctx, "tick_budget");
	u->sched = (up_schedule_t){
		.base_ns = tlcm_param_duration_ns(ctx, "interval"),
		.battery_low = tlcm_param_float(ctx, "battery_low"),
		.battery_high = tlcm_param_float(ctx, "battery_high"),
		.backlog_high = (uint64_t)tlcm_param_int(ctx, "backlog_high"),
	};
	u->low_max_prio = (unsigned)tlcm_param_int(ctx, "low_max_priority");
	u->images_every = (unsigned)tlcm_param_int(ctx, "images_every");
	u->feedback_limit = (unsigned)tlcm_param_int(ctx, "feedback_limit");
	u->feedback_keep = (size_t)tlcm_param_int(ctx, "feedback_keep");
	u->nimage_kinds = tlcm_param_list(ctx, "image_kinds", &u->image_kinds);
	u->nurgent_kinds = tlcm_param_list(ctx, "urgent_kinds",
					   &u->urgent_kinds);
	const char *ex = tlcm_param_str(ctx, "exit_after");
	u->exit_after = !strcmp(ex, "sync") ? EXIT_SYNC
			: !strcmp(ex, "drained") ? EXIT_DRAINED : EXIT_NEVER;
	u->drain_on_end = tlcm_param_bool(ctx, "drain_on_end");
	u->drain_ns = tlcm_param_duration_ns(ctx, "drain_timeout");
	const char *loc = tlcm_param_str(ctx, "location");
	u->lat = u->lon = NAN;
	if (loc[0]) {
		char *end;
		double la = strtod(loc, &end), lo = NAN;
		if (*end == ',')
			lo = strtod(end + 1, &end);
		if (*end || !(la >= -90 && la <= 90) ||
		    !(lo >= -180 && lo <= 180)) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "location: want "
				      "LAT,LON in degrees, got '%s'", loc);
			release(u);
			return TLCM_EINVAL;
		}
		u->lat = la, u->lon = lo;
	}
	const char *const *models;
	size_t nm = tlcm_param_list(ctx, "models", &models);
	for (size_t i = 0; i < nm; i++) {
		const char *eq = strchr(models[i], '=');
		if (!eq || eq == models[i] || !eq[1] || eq - models[i] >= 64) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "models: want "
				      "ROLE=MODEL@VERSION items, got '%s'",
				      models[i]);
			release(u);
			return TLCM_EINVAL;
		}
	}
	const char *grp = tlcm_param_str(ctx, "group");
	if (grp[0] && (!up_http_valid_id(grp) || !strcmp(grp, ".") ||
		       !strcmp(grp, ".."))) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "group: want "
			      "[A-Za-z0-9._-]{1,64}, got '%s'", grp);
		release(u);
		return TLCM_EINVAL;
	}
	const char *dd = tlcm_param_str(ctx, "deploy_dir");
	if (strlen(dd) >= sizeof u->deploy_dir - 64) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "deploy_dir: longer than "
			      "%zu", sizeof u->deploy_dir - 65);
		release(u);
		return TLCM_EINVAL;
	}
	if (dd[0]) {
		char why[300];
		int drc = up_deploy_dirs(dd, why, sizeof why);
		if (drc) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", why);
			release(u);
			return drc;
		}
		snprintf(u->deploy_dir, sizeof u->deploy_dir, "%s", dd);
	}
	const char *bat = tlcm_param_str(ctx, "battery");
	u->battery = -1;
	u->battery_auto = !strcmp(bat, "auto");
	if (strcmp(bat, "auto") && strcmp(bat, "off"))
		snprintf(u->battery_path, sizeof u->battery_path, "%s", bat);
	up_link_init(&u->link, (unsigned)tlcm_param_int(ctx, "offline_after"),
		     (unsigned)tlcm_param_int(ctx, "stable_after"));
	if (getrandom(&u->rng, sizeof u->rng, 0) != sizeof u->rng)
		u->rng = wall_ns() ^ (uint64_t)(uintptr_t)u;

	/* what the store remembers: the token, the labels we have */
	int rc = tlcm_records_scan(ctx, "", load_record, u);
	if (rc && rc != TLCM_ENOTSUP) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "reading records: %s",
			      tlcm_strerror(rc));
		release(u);
		return rc;
	}
	if (u->token[0] && !u->registered &&
	    tlcm_param_str(ctx, "token")[0])
		u->registered = true; /* a token from the configuration */
	set_auth_headers(u);
	snprintf(u->hdr_dev, sizeof u->hdr_dev, "X-Device-ID: %s", u->device);
	snprintf(u->hdr_key, sizeof u->hdr_key, "X-API-Key: %s", u->api_key);
	up_http_user_agent(u->ua, sizeof u->ua);
	up_http_opts_t ho = {
		.base = u->base,
		.ca_file = tlcm_param_str(ctx, "ca_file"),
		.ca_path = tlcm_param_str(ctx, "ca_path"),
		.user_agent = u->ua,
		.connect_timeout_ns = tlcm_param_duration_ns(ctx,
							     "connect_timeout"),
		.timeout_ns = tlcm_param_duration_ns(ctx, "timeout"),
		.low_speed_time_ns = tlcm_param_duration_ns(ctx,
							    "low_speed_time"),
		.low_speed_bytes = (long)tlcm_param_size(ctx,
							 "low_speed_limit"),
		.max_response = 1 << 20,
	};
	char why[256];
	rc = up_http_new(&u->http, &ho, why, sizeof why);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", why);
		release(u);
		return rc;
	}
	/* labels persisted but not emitted when the last run died: at the
	 * first tick (outputs are the graph's from then on) */
	u->reemit = true;
	u->next_sync = tlcm_now_ns(); /* first contact at once */
	u->interval_why = "base";
	u->interval_ns = u->sched.base_ns;
	tlcm_set_tick(ctx, 1000000);
	/* the URL without user:password@ (never log a secret) */
	const char *sch = strstr(u->base, "://");
	const char *host = sch ? sch + 3 : u->base;
	const char *at = strchr(host, '@');
	if (at && at < host + strcspn(host, "/"))
		host = at + 1;
	tlcm_node_log(ctx, TLCM_LOG_INFO, "to %.*s%s as %s (%s), %zu labels "
		      "known", sch ? (int)(sch - u->base + 3) : 0, u->base,
		      host, u->device, u->token[0] ? "token" : u->api_key[0]
		      ? "API key" : "registering", u->nfb);
	return 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	(void)ctx;
	release(st);
}

/* A message on `queued` that asks for a sync now: a packager event naming
 * a queued package of an urgent kind, or any message that is not a
 * packager event. */
static bool urgent(const up_t *u, const tlcm_msg_t *m)
{
	if (memcmp(m->type, tlcm_PackageEvent_IDENTIFIER, 4))
		return true;
	const char *why;
	if (tlcm_PackageEvent_verify_as_root(tlcm_msg_data(m), m->size, &why))
		return true; /* cannot tell: a sync too many is harmless */
	tlcm_PackageEvent_table_t t =
		tlcm_PackageEvent_as_root(tlcm_msg_data(m));
	if (tlcm_PackageEvent_event(t) != tlcm_PackageEventKind_Queued)
		return false;
	size_t n = tlcm_PackageEvent_packages_len(t);
	for (size_t i = 0; i < n; i++) {
		const char *k = tlcm_PackageRef_kind(
			tlcm_PackageEvent_packages_at(t, i));
		for (size_t j = 0; k && j < u->nurgent_kinds; j++)
			if (!strcmp(k, u->urgent_kinds[j]))
				return true;
	}
	return false;
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	up_t *u = st;
	if (port == IN_QUEUED) {
		if (!urgent(u, m))
			return 0;
		if (!u->sync_now) {
			u->sync_now = true;
			if (u->phase == PH_IDLE)
				tlcm_set_tick(ctx, 1000000);
		}
		return 0;
	}
	int rc = tlcm_expect_msg(ctx, m, &u->bad_input, "battery",
				 "PowerState", tlcm_PowerState_IDENTIFIER,
				 tlcm_PowerState_verify_as_root);
	if (rc)
		return rc;
	tlcm_PowerState_table_t t = tlcm_PowerState_as_root(tlcm_msg_data(m));
	float p = tlcm_PowerState_battery_percent(t);
	u->battery = isfinite(p) ? (p > 100 ? 100 : p) : -1;
	u->charging = tlcm_PowerState_charging(t);
	u->battery_from_port = true;
	return 0;
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	up_t *u = st;
	if (u->finish)
		return TLCM_ECLOSED;
	if (tlcm_stopping(ctx)) {
		/* the graph stops: a request in flight gets one budget to
		 * finish, then it is dropped (its package stays queued) */
		up_resp_t r;
		if (up_http_busy(u->http) &&
		    up_http_poll(u->http, (int)(u->budget_ns / 1000000), &r)
		    == 1)
			on_done(ctx, u, &r, tlcm_now_ns());
		up_http_cancel(u->http);
		drop_cur(u);
		return TLCM_ECLOSED;
	}
	if (u->reemit) {
		reemit_t re = {ctx, u};
		u->reemit = false;
		tlcm_records_scan(ctx, "fb/", reemit_one, &re);
	}
	uint64_t deadline = now + u->budget_ns;
	for (;;) {
		now = tlcm_now_ns();
		if (!up_http_busy(u->http)) {
			if (u->phase == PH_IDLE) {
				bool due = now >= u->next_sync ||
					   (u->sync_now && now >= u->retry_at);
				if (!due || u->finish || tlcm_stopping(ctx))
					break;
				sync_begin(ctx, u, now);
			}
			int rc = step(ctx, u, now);
			if (rc) {
				set_error(u, "%s: %s", phase_names[u->phase],
					  tlcm_strerror(rc));
				tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s",
					      u->last_error);
				drop_cur(u);
				sync_fail(u, now, backoff(u));
				break;
			}
			if (!up_http_busy(u->http))
				continue; /* the sync ended, or moved on */
		}
		/* wait on the network within the budget; a request that
		 * has been slow for a while is only looked at */
		up_resp_t r;
		int rc = up_http_poll(u->http,
				      up_http_wait_ms(u->http, now, deadline),
				      &r);
		if (rc != 1)
			break;
		on_done(ctx, u, &r, tlcm_now_ns());
		if (tlcm_now_ns() >= deadline)
			break;
	}
	if (u->finish && !up_http_busy(u->http))
		return TLCM_ECLOSED;
	/* when to come back */
	uint64_t period;
	now = tlcm_now_ns();
	if (up_http_busy(u->http))
		period = up_http_period_ns(u->http, now);
	else if (u->phase != PH_IDLE)
		period = 1000000u;
	else {
		uint64_t due = u->sync_now && u->retry_at < u->next_sync
			       ? u->retry_at : u->next_sync;
		period = due > now ? due - now : 1000000u;
		if (period > 1000000000u)
			period = 1000000000u; /* see runtime changes soon */
		if (period < 1000000u)
			period = 1000000u;
	}
	tlcm_set_tick(ctx, period);
	return 0;
}

/* The inputs ended (the packager's stream, at the end of a finite graph),
 * and the engine finishes a node whose inputs ended: it is not ticked
 * again, so the packages queued last would wait for the next run. With
 * drain_on_end the node syncs on here, on this thread (the engine's
 * contract: eos may still emit), until a sync leaves the outbox empty or
 * one that began here sends nothing (the rest is held back by the link
 * policy or waits on its own backoff), the node finishes (exit_after),
 * the graph is stopped, or drain_timeout passes. Nothing is lost either
 * way: what is left stays queued. */
static int eos(tlcm_ctx_t *ctx, void *st)
{
	up_t *u = st;
	tlcm_outbox_stats_t os = {0};
	if (!u->drain_on_end || u->finish || tlcm_stopping(ctx) ||
	    tlcm_outbox_stats(u->ob, &os))
		return 0;
	if (!os.packages && u->phase == PH_IDLE && !up_http_busy(u->http))
		return 0;
	uint64_t t0 = tlcm_now_ns(), end = t0 + u->drain_ns;
	uint64_t first = u->sync_no + 1, syncs = u->syncs, up0 = u->uploaded;
	uint64_t left = os.packages;
	const char *why = "drain_timeout";
	tlcm_node_log(ctx, TLCM_LOG_INFO, "inputs ended: draining the outbox "
		      "(%" PRIu64 " packages) for at most %.3g s", os.packages,
		      (double)u->drain_ns / 1e9);
	u->sync_now = true;
	for (;;) {
		uint64_t now = tlcm_now_ns();
		bool idle = u->phase == PH_IDLE && !up_http_busy(u->http);
		if (idle && u->syncs != syncs) { /* a sync ended well */
			syncs = u->syncs;
			tlcm_outbox_stats(u->ob, &os);
			if (!os.packages) {
				why = "drained";
				break;
			}
			if (u->sync_no >= first && os.packages >= left) {
				why = "the rest is held back";
				break;
			}
			left = os.packages;
			u->sync_now = true;
		}
		if (now >= end) {
			up_http_cancel(u->http); /* its package stays queued */
			drop_cur(u);
			u->req = RQ_NONE;
			u->phase = PH_IDLE;
			break;
		}
		if (tick(ctx, u, now) == TLCM_ECLOSED) {
			why = u->finish ? "exit_after" : "the graph stops";
			break;
		}
		/* a tick waits on the network for at most tick_budget; with
		 * nothing in flight, wait for the next sync (a backoff) */
		now = tlcm_now_ns();
		uint64_t nap = 0;
		if (up_http_busy(u->http)) {
			nap = 2000000u;
		} else if (u->phase == PH_IDLE) {
			uint64_t due = u->sync_now ? u->retry_at : u->next_sync;
			nap = due > now ? due - now : 0;
			if (nap > end - now)
				nap = now < end ? end - now : 0;
			if (nap > 50000000u)
				nap = 50000000u;
		}
		if (nap) {
			struct timespec ts = {0, (long)nap};
			nanosleep(&ts, NULL);
		}
	}
	tlcm_outbox_stats(u->ob, &os);
	tlcm_node_log(ctx, os.packages ? TLCM_LOG_WARN : TLCM_LOG_INFO,
		      "end of the inputs: %" PRIu64 " packages uploaded in "
		      "%.1f s, %" PRIu64 " left queued for the next run (%s)",
		      u->uploaded - up0, (double)(tlcm_now_ns() - t0) / 1e9,
		      os.packages, why);
	tlcm_set_tick(ctx, TLCM_TICK_OFF);
	return 0;
}

static int param_changed(tlcm_ctx_t *ctx, void *st, const char *name)
{
	up_t *u = st;
	if (!strcmp(name, "interval")) {
		uint64_t old = u->sched.base_ns;
		u->sched.base_ns = tlcm_param_duration_ns(ctx, "interval");
		if (u->phase == PH_IDLE && !u->retry_at &&
		    u->next_sync > tlcm_now_ns() + u->sched.base_ns)
			u->next_sync = tlcm_now_ns() + u->sched.base_ns;
		(void)old;
	} else if (!strcmp(name, "low_max_priority")) {
		u->low_max_prio = (unsigned)tlcm_param_int(ctx,
							   "low_max_priority");
	} else if (!strcmp(name, "images_every")) {
		u->images_every = (unsigned)tlcm_param_int(ctx, "images_every");
	}
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	up_t *u = st;
	(void)ctx;
	tlcm_outbox_stats_t os = {0};
	if (u->ob)
		tlcm_outbox_stats(u->ob, &os);
	uint64_t now = tlcm_now_ns();
	int64_t next = (int64_t)(u->next_sync - now);
	char err[300];
	size_t at = 0;
	if (!tlcm_json_str(err, &at, sizeof err - 1, u->last_error))
		at = 0;
	err[at] = 0;
	int w = snprintf(buf, len,
		"{\"state\":\"%s\",\"quality\":\"%s\",\"latency_ms\":%.1f,"
		"\"failures\":%u,\"phase\":\"%s\",\"next_sync_ms\":%" PRId64
		",\"interval_ms\":%" PRIu64 ",\"interval_rule\":\"%s\","
		"\"battery\":%.1f,\"charging\":%s,\"backlog\":%" PRIu64
		",\"backlog_bytes\":%" PRIu64 ",\"dead_letters\":%" PRIu64
		",\"uploaded\":%" PRIu64 ",\"duplicates\":%" PRIu64
		",\"dead\":%" PRIu64 ",\"bad_acks\":%" PRIu64 ",\"retries\":%"
		PRIu64 ",\"net_errors\":%" PRIu64 ",\"bytes\":%" PRIu64
		",\"syncs\":%" PRIu64 ",\"sync_failures\":%" PRIu64
		",\"backoff_attempt\":%u,\"held_back\":%" PRIu64
		",\"waiting\":%zu,\"labels\":%" PRIu64 ",\"acked\":%" PRIu64
		",\"registered\":%s,\"auth\":\"%s\",\"forbidden\":%s,"
		"\"link_events\":%" PRIu64 ",\"http2\":%" PRIu64
		",\"reused\":%" PRIu64 ",\"graphs_fetched\":%" PRIu64
		",\"graph_reports\":%" PRIu64 ",\"last_error\":%s}",
		up_state_name(u->link.state), up_quality_name(u->link.quality),
		(double)u->link.latency_ns / 1e6, u->link.failures,
		phase_names[u->phase], next > 0 ? next / 1000000 : 0,
		u->interval_ns / 1000000u, u->interval_why, u->battery,
		u->charging ? "true" : "false", os.packages, os.bytes, os.dead,
		u->uploaded, u->duplicates, u->dead, u->bad_acks, u->retries,
		u->net_errors, u->bytes, u->syncs, u->sync_failures,
		u->gattempt, u->skipped_policy, u->nwait, u->labels, u->acked,
		u->registered ? "true" : "false",
		u->token[0] ? "token" : u->api_key[0] ? "api_key" : "none",
		u->forbidden ? "true" : "false", u->link_events, u->h2,
		u->reused, u->graphs_fetched, u->graph_reports,
		u->last_error[0] && err[0] ? err : "null");
	return w < 0 || (size_t)w >= len ? TLCM_ENOSPC : 0;
}

const tlcm_node_type_t tlcm_node_uploader = {
	.name = "uploader",
	.doc = "store-and-forward: the outbox's packages to the core over "
	       "HTTP(S) (docs/api.md), ground truth back, link state out",
	.inputs = inputs,
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(up_t),
	.init = init,
	.process = process,
	.tick = tick,
	.eos = eos,
	.param_changed = param_changed,
	.describe = describe,
	.fini = fini,
};
