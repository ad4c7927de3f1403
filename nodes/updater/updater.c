/* updater.c — node `updater`: keeps one model file current from the
 * core's signed offers (docs/api.md; docs/models.md, "Signed updates").
 *
 * A check is POST /models/available with the running version. Each offer
 * for our model is checked (nodes/updater/verify.h: signed by a trusted
 * key, signature over name, version, sha256 and times, version above the
 * running one, not expired, not too large, not a version that already
 * failed to load) and refused with a code and a sentence — log line and
 * ModelEvent Refused on `events` — or taken. The file comes with GET
 * into FILE.part, resumed with Range after a cut (the offset that is
 * fsync'd is kept in the node's records, so a crash resumes too); its
 * SHA-256 must be the signed one. Then the swap (nodes/updater/swap.h):
 * FILE is kept as FILE.prev, FILE.part renamed over FILE, the directory
 * fsync'd; a SetParam control message on `control` makes the consumer
 * (features.xnnpack: `model`) reload it; its ModelEvent on `status` says
 * whether it loaded. Loaded: the version is the running one (record).
 * LoadFailed (or no answer within load_timeout): FILE.prev is copied back
 * over FILE, the consumer reloads it, ModelEvent RolledBack, and that
 * version is never taken again.
 *
 * Crash safety: every step that changes a file is recorded before it
 * (record "pending", stage download → swap → await). At start, a swap
 * that was never confirmed (the new bytes under FILE, stage swap or
 * await) is undone — FILE.prev copied back — because the process may
 * have died of the new model; list the updater before the consumer in
 * the graph file so this happens before the consumer loads FILE. Such
 * tries are counted; after max_tries the version is refused.
 *
 * I/O happens in tick() through the uploader's HTTP client (nodes/
 * uploader/http.c; the download into FILE.part: nodes/updater/fetch.c),
 * at most tick_budget at a time, as in the uploader.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "engine/log.h"
#include "fb/control_fb.h"
#include "fb/model_event_fb.h"
#include "nodes/updater/fetch.h"
#include "nodes/updater/swap.h"
#include "nodes/updater/updater.h"
#include "nodes/updater/verify.h"

enum { IN_CHECK, IN_STATUS };
enum { OUT_CONTROL, OUT_EVENTS };
enum { PH_IDLE, PH_CHECK, PH_DOWNLOAD, PH_AWAIT, PH_RESTORE };
enum { ST_DOWNLOAD, ST_SWAP, ST_AWAIT };
enum { EXIT_NEVER, EXIT_CHECK };

static const char *const phase_names[] = {"idle", "check", "download",
					  "await_load", "restore"};
static const char *const stage_names[] = {"download", "swap", "await"};


typedef struct {
	bool on;
	upd_meta_t m;
	uint64_t offset;   /* bytes of FILE.part known durable */
	char etag[128];
	int stage;
} pending_t;

typedef struct {
	/* parameters */
	char *base, *origin, *device, *model, *file, *param;
	char *part, *prev, *tmp;
	const char *keys_file;
	const char *const *key_items;
	size_t nkey_items;
	uint64_t timeout_ns, load_timeout_ns, backoff_base_ns, backoff_cap_ns;
	uint64_t budget_ns, interval_ns, max_size, sync_every;
	unsigned max_tries;
	bool confirm;
	int exit_after;
	/* connection */
	up_http_t *http;
	char ua[160], hdr_auth[600], hdr_dev[120];
	char *req_body; /* the check's body, borrowed by curl until done */
	/* what runs */
	uint64_t running;
	char running_sha[65];
	upd_keys_t keys;
	/* the update under way */
	pending_t p;
	int fd; /* FILE.part while a GET runs */
	upd_sink_t sink; /* the GET into it */
	tlcm_ctx_t *ctx; /* during a poll, for on_durable */
	/* the state machine */
	int phase;
	bool check_now, finish, at_start;
	bool start_restore; /* the PH_RESTORE is recover()'s, not a check's */
	uint64_t next_check, deadline;
	unsigned attempt, outstanding;
	uint64_t rb_version; /* the version being rolled back */
	char rb_sha[65];
	uint64_t rng;
	/* counters */
	uint64_t checks, offers, refused, downloads, resumes, bytes, installed,
		rolled_back, failures, bad_input;
	char last_code[32], last_reason[400], last_error[400];
} upd_t;

static const tlcm_port_desc_t inputs[] = {
	{"check", "*", "any message checks for an update now (e.g. a drift "
	 "event)", TLCM_PORT_OPTIONAL},
	{"status", "MEVT", "the consumer's ModelEvents (features.xnnpack "
	 "`events`): Loaded / LoadFailed after a reload; connect it with "
	 "feedback: true", TLCM_PORT_OPTIONAL},
	{0},
};

static const tlcm_port_desc_t outputs[] = {
	{"control", "CTRL", "SetParam PARAM = FILE after a swap: to the "
	 "consumer's `control`", 0},
	{"events", "MEVT", "ModelEvents: Available, Refused (code, reason), "
	 "Downloaded, Installed, RolledBack, Failed", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"url", TLCM_P_STRING, NULL, "the core's API base, e.g. "
	 "https://core.example/api/v1 (http only on loopback/tests)", 0, 0,
	 NULL, 0},
	{"device_id", TLCM_P_STRING, NULL, "this device's id "
	 "([A-Za-z0-9._-]{1,64})", 0, 0, NULL, 0},
	{"api_key", TLCM_P_SECRET, "", "the fleet's API key (X-API-Key)", 0,
	 0, NULL, 0},
	{"token", TLCM_P_SECRET, "", "the device token (Authorization: "
	 "Bearer), preferred over api_key", 0, 0, NULL, 0},
	{"model", TLCM_P_STRING, NULL, "the model's name at the core "
	 "([A-Za-z0-9._-]{1,128})", 0, 0, NULL, 0},
	{"version", TLCM_P_INT, "0", "the version FILE holds when the store "
	 "does not say (as provisioned; 0: none)", 0, 9007199254740991.0,
	 NULL, 0},
	{"file", TLCM_P_PATH, NULL, "the model file the consumer loads; "
	 "FILE.part, FILE.prev and FILE.tmp live beside it", 0, 0, NULL, 0},
	{"keys", TLCM_P_LIST, "", "trusted signing keys, KEY_ID:BASE64 "
	 "(Ed25519 public keys)", 0, 0, NULL, 0},
	{"keys_file", TLCM_P_PATH, "", "more trusted keys, lines \"KEY_ID "
	 "BASE64\"; read again at every check", 0, 0, NULL, 0},
	{"param", TLCM_P_STRING, "model", "the consumer's run-time parameter "
	 "that names its model file", 0, 0, NULL, 0},
	{"confirm", TLCM_P_BOOL, "true", "wait for the consumer's ModelEvent "
	 "on `status` before calling an update installed", 0, 0, NULL, 0},
	{"load_timeout", TLCM_P_DURATION, "60s", "no answer from the "
	 "consumer within this: the new model counts as failed", 1e6,
	 8.64e13, NULL, 0},
	{"interval", TLCM_P_DURATION, "1h", "between checks", 1e6, 3.1536e16,
	 NULL, TLCM_PARAM_RUNTIME},
	{"check", TLCM_P_STRING, "", "setting it (any value) checks now", 0,
	 0, NULL, TLCM_PARAM_RUNTIME},
	{"max_size", TLCM_P_SIZE, "512MiB", "larger offers are refused", 0, 0,
	 NULL, 0},
	{"max_tries", TLCM_P_INT, "3", "swaps of one version that were never "
	 "confirmed (the process stopped) before it is refused", 1, 1000,
	 NULL, 0},
	{"sync_every", TLCM_P_SIZE, "1MiB", "fsync the partial file and "
	 "record its length every so many bytes", 4096, 1073741824.0, NULL,
	 0},
	{"ca_file", TLCM_P_PATH, "", "CA bundle to verify the core with "
	 "(empty: the system's)", 0, 0, NULL, 0},
	{"ca_path", TLCM_P_PATH, "", "directory of CA certificates "
	 "(empty: the system's)", 0, 0, NULL, 0},
	{"connect_timeout", TLCM_P_DURATION, "10s", "to open a connection",
	 1e6, 3.6e12, NULL, 0},
	{"timeout", TLCM_P_DURATION, "60s", "a check request (a download "
	 "has no total timeout: low_speed_* end a stalled one)", 1e6, 8.64e13,
	 NULL, 0},
	{"low_speed_limit", TLCM_P_SIZE, "1KiB", "abort a transfer slower "
	 "than this many bytes/s for low_speed_time", 0, 0, NULL, 0},
	{"low_speed_time", TLCM_P_DURATION, "30s", "see low_speed_limit (0: "
	 "off)", 0, 0, NULL, 0},
	{"backoff_base", TLCM_P_DURATION, "1s", "first retry delay after a "
	 "failed check or download (full jitter)", 1e3, 3.6e12, NULL, 0},
	{"backoff_cap", TLCM_P_DURATION, "5m", "longest retry delay", 1e3,
	 8.64e13, NULL, 0},
	{"tick_budget", TLCM_P_DURATION, "20ms", "longest a tick waits on "
	 "the network (raise it with thread: own)", 0, 0, NULL, 0},
	{"exit_after", TLCM_P_ENUM, "never", "finish the node after the "
	 "first check that came to an end (nothing new, refused, installed, "
	 "rolled back)", 0, 0, "never|check", 0},
	{0},
};

/* ---- small helpers ------------------------------------------------------- */

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd64(upd_t *u)
{
	uint64_t z = (u->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Full jitter: random(0, min(cap, base * 2^attempt)). */
static uint64_t backoff(upd_t *u)
{
	unsigned a = u->attempt++;
	uint64_t d = u->backoff_cap_ns;
	if (a < 40 && u->backoff_base_ns <= u->backoff_cap_ns >> a)
		d = u->backoff_base_ns << a;
	return d ? rnd64(u) % (d + 1) : 0;
}

static char *joined(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 1;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s%s", a, b);
	return s;
}

static void clean_text(char *dst, size_t cap, const char *s, size_t len)
{
	size_t j = 0;
	for (size_t i = 0; i < len && j + 1 < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		dst[j++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
	}
	dst[j] = 0;
}

static bool exists(const char *path)
{
	struct stat st;
	return !stat(path, &st);
}

/* ---- messages ------------------------------------------------------------ */

static void event(tlcm_ctx_t *ctx, upd_t *u, tlcm_ModelEventKind_enum_t kind,
		  uint64_t version, const char *sha, const char *code,
		  const char *reason)
{
	tlcm_fbb_t b;
	size_t need = 512 + strlen(u->model) + strlen(u->file) +
		      strlen(reason);
	if (tlcm_emit_begin(ctx, OUT_EVENTS, &b, need))
		return;
	tlcm_fbb_ref_t m = tlcm_fbb_cstring(&b, u->model);
	tlcm_fbb_ref_t p = tlcm_fbb_cstring(&b, u->file);
	tlcm_fbb_ref_t s = tlcm_fbb_cstring(&b, sha ? sha : "");
	tlcm_fbb_ref_t c = tlcm_fbb_cstring(&b, code ? code : "");
	tlcm_fbb_ref_t r = tlcm_fbb_cstring(&b, reason);
	tlcm_ModelEvent_start(&b);
	tlcm_ModelEvent_add_kind(&b, kind);
	tlcm_ModelEvent_add_model(&b, m);
	tlcm_ModelEvent_add_version(&b, version);
	tlcm_ModelEvent_add_running(&b, u->running);
	tlcm_ModelEvent_add_path(&b, p);
	tlcm_ModelEvent_add_sha256(&b, s);
	tlcm_ModelEvent_add_code(&b, c);
	tlcm_ModelEvent_add_reason(&b, r);
	tlcm_ModelEvent_add_time_ns(&b, wall_ns());
	tlcm_emit_end(ctx, OUT_EVENTS, &b, tlcm_ModelEvent_end(&b),
		      tlcm_ModelEvent_IDENTIFIER);
}

/* SetParam PARAM = FILE to the consumer: it reloads the file. */
static void send_reload(tlcm_ctx_t *ctx, upd_t *u)
{
	tlcm_fbb_t b;
	int rc = tlcm_emit_begin(ctx, OUT_CONTROL, &b, 256 + strlen(u->param) +
							  strlen(u->file));
	if (!rc) {
		tlcm_fbb_ref_t n = tlcm_fbb_cstring(&b, u->param);
		tlcm_fbb_ref_t v = tlcm_fbb_cstring(&b, u->file);
		tlcm_Control_start(&b);
		tlcm_Control_add_op(&b, tlcm_ControlOp_SetParam);
		tlcm_Control_add_name(&b, n);
		tlcm_Control_add_value(&b, v);
		rc = tlcm_emit_end(ctx, OUT_CONTROL, &b, tlcm_Control_end(&b),
				   tlcm_Control_IDENTIFIER);
	}
	if (rc) {
		/* no answer will come: load_timeout decides */
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "reload of %s not sent to "
			      "the consumer: %s", u->file, tlcm_strerror(rc));
		return;
	}
	u->outstanding++;
}

/* ---- records ------------------------------------------------------------- */

/* "running": "VERSION SHA256". */
static int save_running(tlcm_ctx_t *ctx, upd_t *u)
{
	char v[100];
	int n = snprintf(v, sizeof v, "%" PRIu64 " %s", u->running,
			 u->running_sha);
	tlcm_record_op_t op = {"running", 7, v, (size_t)n + 1};
	return tlcm_records_write(ctx, &op, 1);
}

/* "pending": the offer (JSON, signature included) with the stage, the
 * durable offset and the ETag. */
static int save_pending(tlcm_ctx_t *ctx, upd_t *u)
{
	char *mj = upd_meta_to_json(&u->p.m);
	cJSON *o = mj ? cJSON_Parse(mj) : NULL;
	free(mj);
	if (!o)
		return TLCM_ENOMEM;
	cJSON_AddNumberToObject(o, "offset", (double)u->p.offset);
	cJSON_AddStringToObject(o, "etag", u->p.etag);
	cJSON_AddStringToObject(o, "stage", stage_names[u->p.stage]);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s)
		return TLCM_ENOMEM;
	tlcm_record_op_t op = {"pending", 7, s, strlen(s) + 1};
	int rc = tlcm_records_write(ctx, &op, 1);
	free(s);
	if (rc && rc != TLCM_ENOTSUP)
		tlcm_node_log(ctx, TLCM_LOG_WARN, "pending update not "
			      "recorded: %s", tlcm_strerror(rc));
	return rc;
}

/* Forget the update under way and its partial file. */
static void drop_pending(tlcm_ctx_t *ctx, upd_t *u)
{
	tlcm_record_op_t op = {"pending", 7, NULL, 0};
	tlcm_records_write(ctx, &op, 1);
	unlink(u->part);
	memset(&u->p, 0, sizeof u->p);
}

static void key_for(char *k, size_t cap, const char *what, uint64_t v)
{
	snprintf(k, cap, "%s/%" PRIu64, what, v);
}

typedef struct {
	const char *key;
	char *out;
	size_t cap;
	bool found;
} get_t;

static int get_one(void *arg, const void *key, size_t klen, const void *val,
		   size_t vlen)
{
	get_t *g = arg;
	if (klen != strlen(g->key) || memcmp(key, g->key, klen))
		return 0;
	size_t n = vlen < g->cap ? vlen : g->cap - 1;
	memcpy(g->out, val, n);
	g->out[n] = 0;
	g->found = true;
	return 1;
}

static bool get_record(tlcm_ctx_t *ctx, const char *key, char *out,
		       size_t cap)
{
	get_t g = {key, out, cap, false};
	tlcm_records_scan(ctx, key, get_one, &g);
	return g.found;
}

static void put_record(tlcm_ctx_t *ctx, const char *key, const char *val)
{
	tlcm_record_op_t op = {key, strlen(key), val, strlen(val) + 1};
	tlcm_records_write(ctx, &op, 1);
}

static unsigned tries_of(tlcm_ctx_t *ctx, uint64_t v)
{
	char k[48], val[32];
	key_for(k, sizeof k, "tries", v);
	return get_record(ctx, k, val, sizeof val)
		       ? (unsigned)strtoul(val, NULL, 10) : 0;
}

/* ---- outcomes ------------------------------------------------------------ */

__attribute__((format(printf, 2, 3))) static void set_error(upd_t *u,
							     const char *fmt,
							     ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(u->last_error, sizeof u->last_error, fmt, ap);
	va_end(ap);
}

/* The check came to an end (nothing new, refused, installed, rolled
 * back, a permanent answer): the next one after `interval`. */
static void check_done(upd_t *u, uint64_t now)
{
	u->phase = PH_IDLE;
	u->attempt = 0;
	u->next_check = now + u->interval_ns;
	if (u->exit_after == EXIT_CHECK)
		u->finish = true;
}

/* A step failed and may work later: say so, keep what we have (the
 * partial file), try the whole check again after a backoff. */
__attribute__((format(printf, 4, 5))) static void retry_later(
	tlcm_ctx_t *ctx, upd_t *u, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(u->last_error, sizeof u->last_error, fmt, ap);
	va_end(ap);
	u->failures++;
	snprintf(u->last_code, sizeof u->last_code, "%s", code);
	uint64_t d = backoff(u);
	tlcm_node_log(ctx, TLCM_LOG_WARN, "%s; again in %" PRIu64 " ms",
		      u->last_error, d / 1000000u);
	event(ctx, u, tlcm_ModelEventKind_Failed, u->p.on ? u->p.m.version : 0,
	      u->p.on ? u->p.m.sha256 : "", code, u->last_error);
	u->phase = PH_IDLE;
	u->next_check = tlcm_now_ns() + d;
}

static void refuse(tlcm_ctx_t *ctx, upd_t *u, const upd_meta_t *m,
		   const char *code, const char *why)
{
	u->refused++;
	snprintf(u->last_code, sizeof u->last_code, "%s", code);
	snprintf(u->last_reason, sizeof u->last_reason, "%.*s",
		 (int)sizeof u->last_reason - 1, why); /* cut if longer */
	tlcm_node_log(ctx, TLCM_LOG_WARN, "refused: %s [%s]; running v%"
		      PRIu64 " stays", why, code, u->running);
	event(ctx, u, tlcm_ModelEventKind_Refused, m ? m->version : 0,
	      m ? m->sha256 : "", code, why);
}

static void installed(tlcm_ctx_t *ctx, upd_t *u, uint64_t now)
{
	uint64_t old = u->running;
	u->running = u->p.m.version;
	memcpy(u->running_sha, u->p.m.sha256, sizeof u->running_sha);
	int rc = save_running(ctx, u);
	if (rc && rc != TLCM_ENOTSUP)
		tlcm_node_log(ctx, TLCM_LOG_WARN, "running version not "
			      "recorded: %s", tlcm_strerror(rc));
	upd_meta_t m = u->p.m;
	drop_pending(ctx, u);
	u->installed++;
	char why[300];
	snprintf(why, sizeof why, "%s v%" PRIu64 " installed (was v%" PRIu64
		 "; previous file kept as %s)", u->model, m.version, old,
		 u->prev);
	tlcm_node_log(ctx, TLCM_LOG_INFO, "%s", why);
	event(ctx, u, tlcm_ModelEventKind_Installed, m.version, m.sha256, "",
	      why);
	check_done(u, now);
}

/* The new model did not load: FILE.prev back over FILE, the consumer
 * reloads it, and the version is never taken again. */
static void roll_back(tlcm_ctx_t *ctx, upd_t *u, const char *why,
		      uint64_t now)
{
	char k[48], err[400];
	u->rb_version = u->p.m.version;
	memcpy(u->rb_sha, u->p.m.sha256, sizeof u->rb_sha);
	key_for(k, sizeof k, "failed", u->rb_version);
	put_record(ctx, k, why);
	snprintf(u->last_code, sizeof u->last_code, "load_failed");
	snprintf(u->last_reason, sizeof u->last_reason, "v%" PRIu64 " failed "
		 "to load: %s", u->rb_version, why);
	int rc = upd_copy_over(u->prev, u->file, u->tmp, err, sizeof err);
	if (rc) {
		set_error(u, "v%" PRIu64 " failed to load (%s) and the previous"
			  " model cannot be put back: %s", u->rb_version, why,
			  err);
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", u->last_error);
		event(ctx, u, tlcm_ModelEventKind_Failed, u->rb_version,
		      u->rb_sha, "restore_failed", u->last_error);
		drop_pending(ctx, u);
		check_done(u, now);
		return;
	}
	drop_pending(ctx, u);
	u->rolled_back++;
	tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s: back to v%" PRIu64 " (%s)",
		      u->last_reason, u->running, u->prev);
	if (!u->confirm) {
		send_reload(ctx, u);
		event(ctx, u, tlcm_ModelEventKind_RolledBack, u->rb_version,
		      u->rb_sha, "load_failed", u->last_reason);
		check_done(u, now);
		return;
	}
	u->phase = PH_RESTORE;
	u->deadline = now + u->load_timeout_ns;
	send_reload(ctx, u);
}

/* The bytes are all here and match: keep FILE as FILE.prev, rename
 * FILE.part over FILE, make the consumer load it. */
static void install(tlcm_ctx_t *ctx, upd_t *u, uint64_t now)
{
	char err[400], k[48], v[32];
	unsigned tries = tries_of(ctx, u->p.m.version) + 1;
	key_for(k, sizeof k, "tries", u->p.m.version);
	snprintf(v, sizeof v, "%u", tries);
	put_record(ctx, k, v);
	u->p.stage = ST_SWAP;
	save_pending(ctx, u);
	int rc = 0;
	if (exists(u->file))
		rc = upd_copy_over(u->file, u->prev, u->tmp, err, sizeof err);
	if (!rc)
		rc = upd_rename(u->part, u->file, err, sizeof err);
	if (rc) {
		u->p.stage = ST_DOWNLOAD;
		save_pending(ctx, u);
		retry_later(ctx, u, "disk", "swap of v%" PRIu64 " failed: %s",
			    u->p.m.version, err);
		return;
	}
	u->p.stage = ST_AWAIT;
	save_pending(ctx, u);
	tlcm_node_log(ctx, TLCM_LOG_INFO, "v%" PRIu64 " swapped in at %s "
		      "(previous kept as %s)%s", u->p.m.version, u->file,
		      u->prev, u->confirm ? ", waiting for the consumer" : "");
	send_reload(ctx, u);
	if (!u->confirm) {
		installed(ctx, u, now);
		return;
	}
	u->phase = PH_AWAIT;
	u->deadline = now + u->load_timeout_ns;
}

static void verify_and_install(tlcm_ctx_t *ctx, upd_t *u, uint64_t now)
{
	char sha[65], err[400];
	int rc = upd_sha256_file(u->part, UINT64_MAX, sha, err, sizeof err);
	if (rc) {
		retry_later(ctx, u, "disk", "v%" PRIu64 ": %s", u->p.m.version,
			    err);
		return;
	}
	if (strcmp(sha, u->p.m.sha256)) {
		char why[400];
		snprintf(why, sizeof why, "update %s@%" PRIu64 ": the %" PRIu64
			 " bytes downloaded have SHA-256 %s, the signed "
			 "metadata says %s", u->model, u->p.m.version,
			 u->p.offset, sha, u->p.m.sha256);
		upd_meta_t m = u->p.m;
		drop_pending(ctx, u);
		refuse(ctx, u, &m, "sha256_mismatch", why);
		check_done(u, now);
		return;
	}
	u->downloads++;
	char why[200];
	snprintf(why, sizeof why, "v%" PRIu64 ": %" PRIu64 " bytes, SHA-256 "
		 "and signature verified", u->p.m.version, u->p.m.size);
	event(ctx, u, tlcm_ModelEventKind_Downloaded, u->p.m.version, sha, "",
	      why);
	install(ctx, u, now);
}

/* ---- requests ------------------------------------------------------------ */

static void auth_headers(upd_t *u, const char **h, size_t *n, bool same)
{
	if (same && u->hdr_auth[0])
		h[(*n)++] = u->hdr_auth;
	if (same)
		h[(*n)++] = u->hdr_dev;
}

static void reload_keys(tlcm_ctx_t *ctx, upd_t *u)
{
	upd_keys_t ks = {0};
	char why[400];
	int rc = 0;
	for (size_t i = 0; !rc && i < u->nkey_items; i++)
		rc = upd_keys_add_item(&ks, u->key_items[i], why, sizeof why);
	if (!rc && u->keys_file[0])
		rc = upd_keys_load(&ks, u->keys_file, why, sizeof why);
	if (rc) {
		/* a broken key file trusts nothing new rather than guess */
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "trusted keys: %s (keeping "
			      "the %zu keys read before)", why, u->keys.n);
		upd_keys_free(&ks);
		return;
	}
	upd_keys_free(&u->keys);
	u->keys = ks;
}

static void begin_check(tlcm_ctx_t *ctx, upd_t *u)
{
	u->check_now = false;
	u->checks++;
	if (u->keys_file[0])
		reload_keys(ctx, u);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "device_id", u->device);
	cJSON *ms = cJSON_AddArrayToObject(o, "models");
	cJSON *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "name", u->model);
	cJSON_AddNumberToObject(m, "version", (double)u->running);
	cJSON_AddItemToArray(ms, m);
	char *body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	char *url = joined(u->base, "/models/available");
	const char *h[6];
	size_t n = 0;
	auth_headers(u, h, &n, true);
	h[n++] = "Content-Type: application/json";
	h[n] = NULL;
	int rc = body && url ? up_http_start(u->http, "POST", url, h, body,
					     strlen(body), u->timeout_ns)
			     : TLCM_ENOMEM;
	free(url);
	free(u->req_body);
	u->req_body = body;
	if (rc) {
		retry_later(ctx, u, "internal", "check: %s",
			    tlcm_strerror(rc));
		return;
	}
	u->phase = PH_CHECK;
}

/* The URL of the offer's bytes; *same: on the core's origin (send the
 * credentials there only). */
static char *download_url(upd_t *u, const upd_meta_t *m, bool *same)
{
	*same = true;
	if (!m->url[0]) {
		char path[300];
		snprintf(path, sizeof path, "/models/%s/%" PRIu64, m->name,
			 m->version);
		return joined(u->base, path);
	}
	if (m->url[0] == '/')
		return joined(u->origin, m->url);
	if (!strncmp(m->url, "https://", 8) || !strncmp(m->url, "http://", 7)) {
		size_t ol = strlen(u->origin);
		*same = !strncmp(m->url, u->origin, ol) &&
			(m->url[ol] == '/' || !m->url[ol]);
		return strdup(m->url);
	}
	char *b = joined(u->base, "/");
	char *r = b ? joined(b, m->url) : NULL;
	free(b);
	return r;
}

static void on_durable(void *arg, uint64_t offset)
{
	upd_t *u = arg;
	u->p.offset = offset;
	if (u->ctx)
		save_pending(u->ctx, u);
}

static void begin_download(tlcm_ctx_t *ctx, upd_t *u)
{
	u->fd = open(u->part, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (u->fd < 0) {
		retry_later(ctx, u, "disk", "%s: %s", u->part, strerror(errno));
		return;
	}
	/* bytes past the recorded offset were never known durable */
	struct stat st;
	if (!fstat(u->fd, &st) && (uint64_t)st.st_size < u->p.offset)
		u->p.offset = (uint64_t)st.st_size;
	if (ftruncate(u->fd, (off_t)u->p.offset)) {
		int e = errno;
		close(u->fd);
		u->fd = -1;
		retry_later(ctx, u, "disk", "%s: %s", u->part, strerror(e));
		return;
	}
	bool same;
	char *url = download_url(u, &u->p.m, &same);
	const char *h[4];
	size_t n = 0;
	auth_headers(u, h, &n, same);
	h[n] = NULL;
	u->sink = (upd_sink_t){.fd = u->fd, .offset = u->p.offset,
			       .limit = u->p.m.size,
			       .sync_every = u->sync_every,
			       .on_durable = on_durable, .arg = u};
	int rc = url ? upd_fetch_get(u->http, url, h, u->p.etag, &u->sink)
		     : TLCM_ENOMEM;
	if (rc) {
		free(url);
		close(u->fd);
		u->fd = -1;
		retry_later(ctx, u, "internal", "download: %s",
			    tlcm_strerror(rc));
		return;
	}
	if (u->p.offset) {
		u->resumes++;
		tlcm_node_log(ctx, TLCM_LOG_INFO, "v%" PRIu64 ": resuming at %"
			      PRIu64 " of %" PRIu64 " bytes", u->p.m.version,
			      u->p.offset, u->p.m.size);
	}
	free(url);
	u->phase = PH_DOWNLOAD;
}

static int by_version_desc(const void *a, const void *b)
{
	const upd_meta_t *x = a, *y = b;
	return x->version < y->version ? 1 : x->version > y->version ? -1 : 0;
}

/* May m be taken? Beyond upd_check: size and this device's history. */
static bool acceptable(tlcm_ctx_t *ctx, upd_t *u, const upd_meta_t *m)
{
	const char *code;
	char why[600];
	if (upd_check(m, &u->keys, u->running, (int64_t)(wall_ns() /
							  1000000000u),
		      &code, why, sizeof why)) {
		refuse(ctx, u, m, code, why);
		return false;
	}
	char k[48], reason[300];
	key_for(k, sizeof k, "failed", m->version);
	if (get_record(ctx, k, reason, sizeof reason)) {
		snprintf(why, sizeof why, "update %s@%" PRIu64 " failed to "
			 "load here before (%s)", m->name, m->version, reason);
		refuse(ctx, u, m, "load_failed", why);
		return false;
	}
	unsigned t = tries_of(ctx, m->version);
	if (t >= u->max_tries) {
		snprintf(why, sizeof why, "update %s@%" PRIu64 " was swapped "
			 "in %u times and never confirmed loaded", m->name,
			 m->version, t);
		refuse(ctx, u, m, "load_failed", why);
		return false;
	}
	if (m->size > u->max_size) {
		snprintf(why, sizeof why, "update %s@%" PRIu64 " has %" PRIu64
			 " bytes, more than max_size %" PRIu64, m->name,
			 m->version, m->size, u->max_size);
		refuse(ctx, u, m, "too_large", why);
		return false;
	}
	return true;
}

static void take(tlcm_ctx_t *ctx, upd_t *u, const upd_meta_t *m,
		 uint64_t now)
{
	u->offers++;
	char why[200];
	snprintf(why, sizeof why, "v%" PRIu64 " offered (%" PRIu64 " bytes, "
		 "key %s), running v%" PRIu64, m->version, m->size, m->key_id,
		 u->running);
	tlcm_node_log(ctx, TLCM_LOG_INFO, "%s", why);
	event(ctx, u, tlcm_ModelEventKind_Available, m->version, m->sha256, "",
	      why);
	if (!u->p.on || u->p.m.version != m->version ||
	    strcmp(u->p.m.sha256, m->sha256)) {
		if (u->p.on)
			drop_pending(ctx, u);
		u->p.on = true;
		u->p.offset = 0;
		u->p.etag[0] = 0;
	}
	/* the newest signed metadata (expiry, url) with what we have */
	u->p.m = *m;
	u->p.stage = ST_DOWNLOAD;
	save_pending(ctx, u);
	if (u->p.offset == m->size && exists(u->part))
		verify_and_install(ctx, u, now);
	else
		begin_download(ctx, u);
}

static void on_check(tlcm_ctx_t *ctx, upd_t *u, const up_resp_t *r,
		     uint64_t now)
{
	if (r->curl) {
		retry_later(ctx, u, "network", "check: %s", r->error);
		return;
	}
	long s = r->status;
	if (s == 404) {
		tlcm_node_log(ctx, TLCM_LOG_INFO, "check: the core has no model"
			      " updates (HTTP 404)");
		check_done(u, now);
		return;
	}
	if (s != 200) {
		char words[200];
		clean_text(words, sizeof words, r->body, r->len);
		bool again = s >= 500 || s == 429 || s == 408 || s == 425;
		if (again) {
			retry_later(ctx, u, "http", "check: HTTP %ld %s", s,
				    words);
			return;
		}
		/* 401/403 and other refusals do not heal by retrying soon:
		 * the next check comes after `interval` */
		set_error(u, "check: HTTP %ld %s", s, words);
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", u->last_error);
		event(ctx, u, tlcm_ModelEventKind_Failed, 0, "",
		      s == 401 || s == 403 ? "auth" : "http", u->last_error);
		u->failures++;
		check_done(u, now);
		return;
	}
	cJSON *j = cJSON_ParseWithLength(r->body, r->len);
	const cJSON *ups = cJSON_GetObjectItemCaseSensitive(j, "updates");
	if (!cJSON_IsArray(ups)) {
		cJSON_Delete(j);
		retry_later(ctx, u, "protocol", "check: the answer is not the "
			    "documented JSON ({\"updates\": [...]})");
		return;
	}
	size_t n = (size_t)cJSON_GetArraySize(ups), k = 0;
	upd_meta_t *ms = calloc(n ? n : 1, sizeof *ms);
	if (!ms) {
		cJSON_Delete(j);
		retry_later(ctx, u, "internal", "check: out of memory");
		return;
	}
	const cJSON *e;
	cJSON_ArrayForEach(e, ups)
	{
		const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
		if (!cJSON_IsString(nm) || strcmp(nm->valuestring, u->model))
			continue; /* another model's offer */
		const char *code;
		char why[400];
		if (upd_meta_from_json(e, &ms[k], &code, why, sizeof why)) {
			refuse(ctx, u, NULL, code, why);
			continue;
		}
		k++;
	}
	cJSON_Delete(j);
	qsort(ms, k, sizeof *ms, by_version_desc);
	size_t pick = k;
	for (size_t i = 0; i < k && pick == k; i++)
		if (acceptable(ctx, u, &ms[i]))
			pick = i;
	if (pick == k) {
		if (!k)
			tlcm_node_log(ctx, TLCM_LOG_DEBUG, "check: v%" PRIu64
				      " is current", u->running);
		/* what we were fetching is no longer offered (or no longer
		 * acceptable): its bytes go */
		if (u->p.on)
			drop_pending(ctx, u);
		free(ms);
		check_done(u, now);
		return;
	}
	upd_meta_t m = ms[pick];
	free(ms);
	take(ctx, u, &m, now);
}

static void on_download(tlcm_ctx_t *ctx, upd_t *u, const up_resp_t *r,
			uint64_t now)
{
	const upd_sink_t *d = &u->sink;
	if (u->fd >= 0) {
		if (fdatasync(u->fd) && !d->write_errno)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "%s: fdatasync: %s",
				      u->part, strerror(errno));
		close(u->fd);
		u->fd = -1;
	}
	u->bytes += d->received;
	if (d->restarted)
		tlcm_node_log(ctx, TLCM_LOG_INFO, "v%" PRIu64 ": the server "
			      "sent the whole file again (no range)",
			      u->p.m.version);
	u->p.offset = d->offset;
	if ((r->status == 200 || r->status == 206) && r->etag[0])
		snprintf(u->p.etag, sizeof u->p.etag, "%s", r->etag);
	save_pending(ctx, u);
	uint64_t v = u->p.m.version;
	if (d->write_errno) {
		retry_later(ctx, u, "disk", "v%" PRIu64 ": writing %s: %s", v,
			    u->part, strerror(d->write_errno));
		return;
	}
	if (d->too_large) {
		char why[300];
		snprintf(why, sizeof why, "update %s@%" PRIu64 ": the server "
			 "sends more than the %" PRIu64 " bytes the metadata "
			 "announces", u->model, v, u->p.m.size);
		upd_meta_t m = u->p.m;
		drop_pending(ctx, u);
		refuse(ctx, u, &m, "too_large", why);
		check_done(u, now);
		return;
	}
	if (d->bad_range) {
		u->p.offset = 0;
		u->p.etag[0] = 0;
		save_pending(ctx, u);
		retry_later(ctx, u, "protocol", "v%" PRIu64 ": a 206 answer "
			    "that does not start where the file ends: "
			    "starting over", v);
		return;
	}
	if (r->curl) {
		retry_later(ctx, u, "network", "v%" PRIu64 ": download cut at %"
			    PRIu64 " of %" PRIu64 " bytes: %s", v, d->offset,
			    u->p.m.size, r->error);
		return;
	}
	long s = r->status;
	if (s == 200 || s == 206 || (s == 416 && d->offset == u->p.m.size)) {
		/* the server sent the whole entity (a cut is a curl error):
		 * `size` is not signed, the SHA-256 judges the bytes */
		if (d->offset != u->p.m.size)
			tlcm_node_log(ctx, TLCM_LOG_WARN, "v%" PRIu64 ": the "
				      "server's file has %" PRIu64 " bytes, "
				      "the "
				      "offer said %" PRIu64, v, d->offset,
				      u->p.m.size);
		verify_and_install(ctx, u, now);
		return;
	}
	if (s == 416) {
		u->p.offset = 0;
		u->p.etag[0] = 0;
		save_pending(ctx, u);
		retry_later(ctx, u, "http", "v%" PRIu64 ": HTTP 416 for the "
			    "rest of the file: starting over", v);
		return;
	}
	char words[200], why[400];
	clean_text(words, sizeof words, r->body, r->len);
	if (s == 404 || s == 410 || s == 403) {
		snprintf(why, sizeof why, "update %s@%" PRIu64 ": HTTP %ld %s",
			 u->model, v, s, words);
		upd_meta_t m = u->p.m;
		drop_pending(ctx, u);
		refuse(ctx, u, &m, s == 403 ? "forbidden" : "gone", why);
		check_done(u, now);
		return;
	}
	retry_later(ctx, u, "http", "v%" PRIu64 ": download: HTTP %ld %s", v, s,
		    words);
}

/* ---- the consumer's answer ----------------------------------------------- */

static void on_status(tlcm_ctx_t *ctx, upd_t *u, bool loaded,
		      const char *reason, uint64_t now)
{
	if (!u->outstanding)
		return; /* not an answer to us (another reload) */
	if (--u->outstanding)
		return; /* the answer to an earlier reload */
	if (u->phase == PH_AWAIT) {
		if (loaded)
			installed(ctx, u, now);
		else
			roll_back(ctx, u, reason && *reason ? reason
					  : "the consumer could not load it",
				  now);
	} else if (u->phase == PH_RESTORE) {
		if (loaded) {
			tlcm_node_log(ctx, TLCM_LOG_INFO, "rolled back: v%"
				      PRIu64 " runs again", u->running);
			event(ctx, u, tlcm_ModelEventKind_RolledBack,
			      u->rb_version, u->rb_sha, "load_failed",
			      u->last_reason);
		} else {
			set_error(u, "the previous model (v%" PRIu64 ") does "
				  "not load either: %s", u->running,
				  reason ? reason : "");
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", u->last_error);
			event(ctx, u, tlcm_ModelEventKind_Failed, u->rb_version,
			      u->rb_sha, "restore_failed", u->last_error);
		}
		if (u->start_restore) {
			/* that was the start-up's undo: now the check */
			u->start_restore = false;
			u->phase = PH_IDLE;
			u->next_check = now;
		} else {
			check_done(u, now);
		}
	}
}

/* ---- callbacks ----------------------------------------------------------- */

static void release(upd_t *u)
{
	up_http_free(u->http);
	u->http = NULL;
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
	upd_keys_free(&u->keys);
	free(u->req_body);
	u->req_body = NULL;
	free(u->base);
	free(u->origin);
	free(u->device);
	free(u->model);
	free(u->file);
	free(u->param);
	free(u->part);
	free(u->prev);
	free(u->tmp);
	u->base = u->origin = u->device = u->model = u->file = u->param = NULL;
	u->part = u->prev = u->tmp = NULL;
}

static int load_pending(tlcm_ctx_t *ctx, upd_t *u, const char *text)
{
	cJSON *j = cJSON_Parse(text);
	const char *code;
	char why[400];
	if (!j || upd_meta_from_json(j, &u->p.m, &code, why, sizeof why)) {
		cJSON_Delete(j);
		tlcm_node_log(ctx, TLCM_LOG_WARN, "the recorded pending update "
			      "is unreadable: forgotten");
		memset(&u->p, 0, sizeof u->p);
		return 0;
	}
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, "offset");
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "etag");
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "stage");
	u->p.offset = cJSON_IsNumber(o) && o->valuedouble >= 0
			      ? (uint64_t)o->valuedouble : 0;
	snprintf(u->p.etag, sizeof u->p.etag, "%s",
		 cJSON_IsString(e) ? e->valuestring : "");
	u->p.stage = ST_DOWNLOAD;
	for (int i = 0; i < 3; i++)
		if (cJSON_IsString(s) &&
		    !strcmp(s->valuestring, stage_names[i]))
			u->p.stage = i;
	u->p.on = true;
	cJSON_Delete(j);
	return 0;
}

/* After a restart: where did the last run leave the update? */
static void recover(tlcm_ctx_t *ctx, upd_t *u)
{
	char text[4096], why[400], sha[65];
	if (!get_record(ctx, "pending", text, sizeof text))
		return;
	load_pending(ctx, u, text);
	if (!u->p.on)
		return;
	if (u->p.stage == ST_DOWNLOAD) {
		tlcm_node_log(ctx, TLCM_LOG_INFO, "v%" PRIu64 ": %" PRIu64
			      " of %" PRIu64 " bytes kept from the last run",
			      u->p.m.version, u->p.offset, u->p.m.size);
		return;
	}
	bool new_in_place = !upd_sha256_file(u->file, UINT64_MAX, sha, why,
					     sizeof why) &&
			    !strcmp(sha, u->p.m.sha256);
	if (!new_in_place) {
		/* the rename never happened: the verified bytes may wait in
		 * FILE.part */
		struct stat st;
		u->p.stage = ST_DOWNLOAD;
		bool whole = !stat(u->part, &st) &&
			     (uint64_t)st.st_size == u->p.m.size;
		u->p.offset = whole ? u->p.m.size : 0;
		save_pending(ctx, u);
		tlcm_node_log(ctx, TLCM_LOG_INFO, "v%" PRIu64 " was not "
			      "swapped in when the last run ended: %s",
			      u->p.m.version,
			      u->p.offset ? "its bytes are kept" : "again");
		return;
	}
	/* the new model is under FILE and its load was never confirmed:
	 * the process may have died of it */
	u->rb_version = u->p.m.version;
	memcpy(u->rb_sha, u->p.m.sha256, sizeof u->rb_sha);
	snprintf(u->last_code, sizeof u->last_code, "unconfirmed");
	snprintf(u->last_reason, sizeof u->last_reason, "v%" PRIu64 " was "
		 "swapped in but the last run ended before it was confirmed "
		 "loaded", u->rb_version);
	int rc = upd_copy_over(u->prev, u->file, u->tmp, why, sizeof why);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s; the previous model "
			      "cannot be put back (%s): keeping v%" PRIu64,
			      u->last_reason, why, u->rb_version);
		drop_pending(ctx, u);
		return;
	}
	tlcm_node_log(ctx, TLCM_LOG_WARN, "%s: back to the previous file",
		      u->last_reason);
	drop_pending(ctx, u);
	u->rolled_back++;
	u->at_start = true; /* the consumer reloads it at the first tick */
}

/* The running version: the record when FILE still holds what it says,
 * else the parameter (FILE was provisioned or replaced by hand). */
static void find_running(tlcm_ctx_t *ctx, upd_t *u)
{
	char text[128], sha[65], why[400];
	u->running = (uint64_t)tlcm_param_int(ctx, "version");
	u->running_sha[0] = 0;
	bool have = !upd_sha256_file(u->file, UINT64_MAX, sha, why,
				     sizeof why);
	if (!have)
		tlcm_node_log(ctx, TLCM_LOG_WARN, "%s (no model in place yet)",
			      why);
	if (have)
		memcpy(u->running_sha, sha, sizeof sha);
	if (!get_record(ctx, "running", text, sizeof text))
		return;
	unsigned long long v;
	char rsha[65];
	if (sscanf(text, "%llu %64s", &v, rsha) != 2)
		return;
	if (have && !strcmp(rsha, sha))
		u->running = v;
	else
		tlcm_node_log(ctx, TLCM_LOG_WARN, "%s is not the v%llu "
			      "recorded (changed by hand?): taking version %"
			      PRIu64
			      " from the parameters", u->file, v, u->running);
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	upd_t *u = st;
	u->fd = -1;
	if (upd_crypto_init()) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "libsodium does not "
			      "initialise");
		return TLCM_EINTERNAL;
	}
	const char *url = tlcm_param_str(ctx, "url");
	const char *dev = tlcm_param_str(ctx, "device_id");
	const char *model = tlcm_param_str(ctx, "model");
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
	if (!upd_valid_name(model)) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "model: want "
			      "[A-Za-z0-9._-]{1,%d}, got '%s'", UPD_NAME_MAX,
			      model);
		return TLCM_EINVAL;
	}
	if (!strncmp(url, "http://", 7) && !up_http_loopback(url))
		tlcm_node_log(ctx, TLCM_LOG_WARN, "url is plain http to "
			      "another host: credentials travel unencrypted "
			      "(the model itself is verified all the same)");
	u->base = strdup(url);
	u->device = strdup(dev);
	u->model = strdup(model);
	u->file = strdup(tlcm_param_str(ctx, "file"));
	u->param = strdup(tlcm_param_str(ctx, "param"));
	if (u->file) {
		u->part = joined(u->file, ".part");
		u->prev = joined(u->file, ".prev");
		u->tmp = joined(u->file, ".tmp");
	}
	if (!u->base || !u->device || !u->model || !u->file || !u->param ||
	    !u->part || !u->prev || !u->tmp) {
		release(u);
		return TLCM_ENOMEM;
	}
	size_t bl = strlen(u->base);
	while (bl && u->base[bl - 1] == '/')
		u->base[--bl] = 0;
	const char *host = strstr(u->base, "://") + 3;
	u->origin = strndup(u->base, (size_t)(host - u->base) +
					     strcspn(host, "/"));
	if (!u->origin) {
		release(u);
		return TLCM_ENOMEM;
	}
	u->keys_file = tlcm_param_str(ctx, "keys_file");
	u->nkey_items = tlcm_param_list(ctx, "keys", &u->key_items);
	char why[400];
	int rc = 0;
	for (size_t i = 0; !rc && i < u->nkey_items; i++)
		rc = upd_keys_add_item(&u->keys, u->key_items[i], why,
				       sizeof why);
	if (!rc && u->keys_file[0])
		rc = upd_keys_load(&u->keys, u->keys_file, why, sizeof why);
	if (!rc && !u->keys.n)
		rc = tlcm_fail(why, sizeof why, TLCM_EINVAL, "no trusted keys: "
			       "set keys (KEY_ID:BASE64) or keys_file");
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", why);
		release(u);
		return rc;
	}
	u->timeout_ns = tlcm_param_duration_ns(ctx, "timeout");
	u->load_timeout_ns = tlcm_param_duration_ns(ctx, "load_timeout");
	u->backoff_base_ns = tlcm_param_duration_ns(ctx, "backoff_base");
	u->backoff_cap_ns = tlcm_param_duration_ns(ctx, "backoff_cap");
	if (u->backoff_cap_ns < u->backoff_base_ns)
		u->backoff_cap_ns = u->backoff_base_ns;
	u->budget_ns = tlcm_param_duration_ns(ctx, "tick_budget");
	u->interval_ns = tlcm_param_duration_ns(ctx, "interval");
	u->max_size = tlcm_param_size(ctx, "max_size");
	u->sync_every = tlcm_param_size(ctx, "sync_every");
	u->max_tries = (unsigned)tlcm_param_int(ctx, "max_tries");
	u->confirm = tlcm_param_bool(ctx, "confirm");
	u->exit_after = strcmp(tlcm_param_str(ctx, "exit_after"), "check")
				? EXIT_NEVER : EXIT_CHECK;
	const char *tok = tlcm_param_str(ctx, "token");
	const char *key = tlcm_param_str(ctx, "api_key");
	if (strlen(tok) > 500 || strlen(key) > 500) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "token/api_key: longer than "
			      "500 characters");
		release(u);
		return TLCM_EINVAL;
	}
	if (tok[0])
		snprintf(u->hdr_auth, sizeof u->hdr_auth,
			 "Authorization: Bearer %s", tok);
	else if (key[0])
		snprintf(u->hdr_auth, sizeof u->hdr_auth, "X-API-Key: %s", key);
	snprintf(u->hdr_dev, sizeof u->hdr_dev, "X-Device-ID: %s", u->device);
	up_http_user_agent(u->ua, sizeof u->ua);
	/* base "": the check and the download name whole URLs; no total
	 * timeout but the check's: low_speed_* end a stalled download */
	up_http_opts_t fo = {
		.ca_file = tlcm_param_str(ctx, "ca_file"),
		.ca_path = tlcm_param_str(ctx, "ca_path"),
		.user_agent = u->ua,
		.connect_timeout_ns = tlcm_param_duration_ns(ctx,
							     "connect_timeout"),
		.low_speed_time_ns = tlcm_param_duration_ns(ctx,
							    "low_speed_time"),
		.low_speed_bytes = (long)tlcm_param_size(ctx,
							 "low_speed_limit"),
		.max_response = 1 << 20,
	};
	rc = up_http_new(&u->http, &fo, why, sizeof why);
	if (rc) {
		tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s", why);
		release(u);
		return rc;
	}
	if (getrandom(&u->rng, sizeof u->rng, 0) != sizeof u->rng)
		u->rng = wall_ns() ^ (uint64_t)(uintptr_t)u;
	/* what the last run left (records; none without a store) */
	if (!tlcm_graph_store(ctx))
		tlcm_node_log(ctx, TLCM_LOG_WARN, "no graph store (settings."
			      "store): a restart forgets partial downloads and "
			      "unconfirmed swaps");
	recover(ctx, u);
	find_running(ctx, u);
	u->next_check = tlcm_now_ns(); /* at once */
	tlcm_set_tick(ctx, 1000000);
	tlcm_node_log(ctx, TLCM_LOG_INFO, "%s v%" PRIu64 " at %s, %zu trusted "
		      "key%s, checking every %" PRIu64 " s%s", u->model,
		      u->running, u->file, u->keys.n, u->keys.n == 1 ? "" : "s",
		      u->interval_ns / 1000000000u, u->p.on
		      ? " (an update is under way)" : "");
	return 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	(void)ctx;
	release(st);
}

/* The graph stops during a download: what came is made durable and
 * recorded, the rest comes next time. */
static void stop_download(tlcm_ctx_t *ctx, upd_t *u)
{
	up_http_cancel(u->http);
	if (u->fd < 0)
		return;
	struct stat st;
	if (!fdatasync(u->fd) && !fstat(u->fd, &st) &&
	    (uint64_t)st.st_size <= u->p.m.size) {
		u->p.offset = (uint64_t)st.st_size;
		save_pending(ctx, u);
	}
	close(u->fd);
	u->fd = -1;
}

static int process(tlcm_ctx_t *ctx, void *st, int port, const tlcm_msg_t *m)
{
	upd_t *u = st;
	if (port == IN_CHECK) {
		u->check_now = true;
		if (u->phase == PH_IDLE)
			tlcm_set_tick(ctx, 1000000);
		return 0;
	}
	int rc = tlcm_expect_msg(ctx, m, &u->bad_input, "status", "ModelEvent",
				 tlcm_ModelEvent_IDENTIFIER,
				 tlcm_ModelEvent_verify_as_root);
	if (rc)
		return rc;
	tlcm_ModelEvent_table_t t = tlcm_ModelEvent_as_root(tlcm_msg_data(m));
	tlcm_ModelEventKind_enum_t k = tlcm_ModelEvent_kind(t);
	const char *path = tlcm_ModelEvent_path(t);
	if ((k != tlcm_ModelEventKind_Loaded &&
	     k != tlcm_ModelEventKind_LoadFailed) || !path ||
	    strcmp(path, u->file))
		return 0;
	u->ctx = ctx;
	on_status(ctx, u, k == tlcm_ModelEventKind_Loaded,
		  tlcm_ModelEvent_reason(t), tlcm_now_ns());
	if (u->finish || u->phase == PH_IDLE)
		tlcm_set_tick(ctx, 1000000);
	return 0;
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	upd_t *u = st;
	u->ctx = ctx;
	if (u->finish && !up_http_busy(u->http))
		return TLCM_ECLOSED;
	if (tlcm_stopping(ctx)) {
		stop_download(ctx, u);
		return TLCM_ECLOSED;
	}
	if (u->at_start) {
		/* recover() put the previous file back: the consumer may
		 * have loaded the new one before (graph order) */
		u->at_start = false;
		if (u->confirm) {
			u->start_restore = true;
			u->phase = PH_RESTORE;
			u->deadline = now + u->load_timeout_ns;
			send_reload(ctx, u);
		} else {
			send_reload(ctx, u);
			event(ctx, u, tlcm_ModelEventKind_RolledBack,
			      u->rb_version, u->rb_sha, u->last_code,
			      u->last_reason);
		}
	}
	uint64_t until = now + u->budget_ns;
	for (;;) {
		now = tlcm_now_ns();
		if (!up_http_busy(u->http)) {
			if (u->phase == PH_AWAIT && now >= u->deadline) {
				roll_back(ctx, u, "no answer from the consumer "
					  "within load_timeout", now);
				continue;
			}
			if (u->phase == PH_RESTORE && now >= u->deadline) {
				set_error(u, "the consumer did not confirm the "
					  "previous model within load_timeout");
				tlcm_node_log(ctx, TLCM_LOG_ERROR, "%s",
					      u->last_error);
				event(ctx, u, tlcm_ModelEventKind_Failed,
				      u->rb_version, u->rb_sha,
				      "restore_unconfirmed", u->last_error);
				u->outstanding = 0;
				if (u->start_restore) {
					u->start_restore = false;
					u->phase = PH_IDLE;
					u->next_check = now;
				} else {
					check_done(u, now);
				}
				continue;
			}
			if (u->phase != PH_IDLE || u->finish ||
			    !(now >= u->next_check || u->check_now))
				break;
			begin_check(ctx, u);
			continue;
		}
		up_resp_t r;
		if (up_http_poll(u->http, up_http_wait_ms(u->http, now, until),
				 &r) != 1)
			break;
		now = tlcm_now_ns();
		if (u->phase == PH_CHECK)
			on_check(ctx, u, &r, now);
		else if (u->phase == PH_DOWNLOAD)
			on_download(ctx, u, &r, now);
		if (tlcm_now_ns() >= until)
			break;
	}
	if (u->finish && !up_http_busy(u->http))
		return TLCM_ECLOSED;
	uint64_t period;
	now = tlcm_now_ns();
	if (up_http_busy(u->http))
		period = up_http_period_ns(u->http, now);
	else if (u->phase == PH_AWAIT || u->phase == PH_RESTORE)
		period = u->deadline > now ? u->deadline - now : 1000000u;
	else
		period = u->next_check > now ? u->next_check - now : 1000000u;
	if (period > 1000000000u)
		period = 1000000000u;
	if (period < 1000000u)
		period = 1000000u;
	tlcm_set_tick(ctx, period);
	return 0;
}

static int param_changed(tlcm_ctx_t *ctx, void *st, const char *name)
{
	upd_t *u = st;
	if (!strcmp(name, "interval")) {
		u->interval_ns = tlcm_param_duration_ns(ctx, "interval");
		if (u->phase == PH_IDLE && !u->attempt &&
		    u->next_check > tlcm_now_ns() + u->interval_ns)
			u->next_check = tlcm_now_ns() + u->interval_ns;
	} else if (!strcmp(name, "check")) {
		u->check_now = true;
	}
	tlcm_set_tick(ctx, 1000000);
	return 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	upd_t *u = st;
	(void)ctx;
	char f[700], e[500], r[500];
	size_t a = 0, b = 0, c = 0;
	if (!tlcm_json_str(f, &a, sizeof f - 1, u->file ? u->file : ""))
		a = 0, f[a++] = '"', f[a++] = '"';
	f[a] = 0;
	if (!tlcm_json_str(e, &b, sizeof e - 1, u->last_error))
		b = 0, e[b++] = '"', e[b++] = '"';
	e[b] = 0;
	if (!tlcm_json_str(r, &c, sizeof r - 1, u->last_reason))
		c = 0, r[c++] = '"', r[c++] = '"';
	r[c] = 0;
	int64_t next = (int64_t)(u->next_check - tlcm_now_ns());
	int w = snprintf(buf, len,
		"{\"model\":\"%s\",\"running\":%" PRIu64 ",\"running_sha256\":"
		"\"%s\",\"file\":%s,\"phase\":\"%s\",\"pending\":%" PRIu64
		",\"pending_offset\":%" PRIu64 ",\"pending_size\":%" PRIu64
		",\"next_check_ms\":%" PRId64 ",\"checks\":%" PRIu64
		",\"offers\":%" PRIu64 ",\"refused\":%" PRIu64
		",\"downloads\":%" PRIu64 ",\"resumes\":%" PRIu64
		",\"bytes\":%" PRIu64
		",\"installed\":%" PRIu64 ",\"rolled_back\":%" PRIu64
		",\"failures\":%" PRIu64 ",\"trusted_keys\":%zu,"
		"\"last_code\":\"%s\",\"last_reason\":%s,\"last_error\":%s}",
		u->model ? u->model : "", u->running, u->running_sha, f,
		phase_names[u->phase], u->p.on ? u->p.m.version : 0,
		u->p.offset, u->p.on ? u->p.m.size : 0,
		next > 0 ? next / 1000000 : 0, u->checks, u->offers,
		u->refused, u->downloads, u->resumes, u->bytes, u->installed,
		u->rolled_back, u->failures, u->keys.n, u->last_code, r, e);
	return w < 0 || (size_t)w >= len ? TLCM_ENOSPC : 0;
}

const tlcm_node_type_t tlcm_node_updater = {
	.name = "updater",
	.doc = "keeps a model file current from the core's signed offers: "
	       "verify, download with resume, atomic swap, hot reload, "
	       "automatic return to the previous model (docs/models.md)",
	.inputs = inputs,
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(upd_t),
	.init = init,
	.process = process,
	.tick = tick,
	.param_changed = param_changed,
	.describe = describe,
	.fini = fini,
};
