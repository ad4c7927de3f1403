/* core.h — the fleet server (nodes/core/): node `core`, which serves the
 * core's HTTP API (docs/api.md) through NNG's HTTP server and keeps
 * everything in the graph store. Internal to nodes/core/.
 *
 * Threads. NNG's own threads only parse requests and read bodies; a pool
 * of `threads` workers does the work (store writes may wait for an fsync:
 * concurrent commits share it, RocksDB's group commit). Shared state is the
 * device table (under `mu`) and the store, which is thread-safe.
 *
 * Families (the graph store; keys are bytes, "\0" separates a device id
 * from what follows, times are big-endian so keys sort by time):
 *   core/devices   ID -> device JSON (hashes of token and secret)
 *   core/packages  PKGID -> package JSON (device, kind, sizes, times):
 *                  the de-duplication index
 *   core/blobs     PKGID -> the package bytes as received
 *   core/bydev     ID\0 be64(received_ns) PKGID -> "" (per device, in time)
 *   core/drift     "e/" EVID -> event JSON; "t/" be64(received_ns) EVID,
 *                  "d/" ID\0 be64(received_ns) EVID -> "" (indexes)
 *   core/samples   be64(frame) ID -> sample JSON; core/thumbs, same key ->
 *                  u16 w, u16 h, w*h Gray8
 *   core/images    PKGID "/" name -> attachment bytes
 *   core/metrics   ID\0 be64(time_ns) be64(seq) -> metrics JSON
 *   core/logs      ID\0 be64(time_ns) be64(seq) -> log line JSON
 *   core/feedback  ID\0 be64(seq) -> label JSON (pending, until acked)
 *   core/models    NAME\0 be64(version) -> model metadata JSON;
 *                  core/model_blobs, same key -> the model file (models.c)
 *   core/telemetry METRIC\0 MODEL\0 ID\0 be64(day) -> sum, min, max,
 *                  count; core/telemetry_days ID\0 be64(day) -> points;
 *                  core/telemetry_ids ID\0 KEY -> be64(stored_ns)
 *                  (telemetry.c)
 *   core/graphs    "d/" ID or "g/" GROUP -> be64(updated_ns), sha256,
 *                  the desired graph file; core/graph_status ID -> the
 *                  device's last deployment report JSON (deploy.c)
 *   core/ttl       "s/" be64(received_ns) be64(frame) ID, "i/"
 *                  be64(received_ns) PKGID -> "": samples and images in
 *                  arrival order, for retention (retention.c)
 *   core/gone      "i/" PKGID -> be64(received_ns) ID; "t/"
 *                  be64(received_ns) PKGID -> "": ids of packages swept
 *                  by retention, still answered `duplicate`
 */
#ifndef TLCM_NODES_CORE_H
#define TLCM_NODES_CORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>

#include <cjson/cJSON.h>

#include "engine/node.h"
#include "engine/store.h"

extern const tlcm_node_type_t tlcm_node_core;

#define CORE_ID_MAX 64   /* device ids: [A-Za-z0-9._-]{1,64} */
#define CORE_UUID_LEN 36
#define CORE_GRAPH_MAX (256 * 1024) /* a deployed graph file's bytes */

/* ---- requests ------------------------------------------------------------ */

typedef struct core core_t;

typedef struct core_req {
	core_t *c;
	nng_aio *aio;          /* the handler's: finished by the reply */
	nng_http_req *req;
	nng_http_conn *conn;
	nng_aio *rx;           /* reading the body */
	char *body;            /* len bytes + a NUL (for JSON parsers) */
	size_t len;
	const char *method;
	char path[384];        /* without the query, percent-decoded */
	char query[512];
	char *param[3];        /* {…} parts of the matched route, in path */
	int route;             /* index into the route table, -1 none */
	uint64_t t0;
	bool replied;
	struct core_req *next;
} core_req_t;

/* Answer r (once; later calls are ignored). body is copied. */
void core_reply(core_req_t *r, int status, const char *type,
		const void *body, size_t len);
void core_reply_json(core_req_t *r, int status, const char *json);
/* {"error": code, "detail": …} */
void core_error(core_req_t *r, int status, const char *code,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A header of the request, or NULL. */
const char *core_header(const core_req_t *r, const char *name);
/* Query parameter `name` into out (percent-decoded); false when absent. */
bool core_query(const core_req_t *r, const char *name, char *out,
		size_t cap);
/* ?limit= (1..max, default def) and ?since= (ns, default 0); false: a
 * bad value was answered 400. */
bool core_query_limit(core_req_t *r, size_t *out, size_t def, size_t max);
bool core_query_since(core_req_t *r, uint64_t *out);
/* Extra response header for the next reply of this thread's request. */
void core_add_header(core_req_t *r, const char *name, const char *value);

/* JSON helpers: text is made safe (control characters and bytes that are
 * not UTF-8 become '?'; NULL becomes null), numbers that are not finite
 * become null. core_reply_cjson answers o (and frees it), or 503 when
 * rc < 0 or printing fails. */
void core_clean_text(const char *s, char *out, size_t cap);
void core_json_text(cJSON *o, const char *key, const char *s);
void core_json_num(cJSON *o, const char *key, double v);
void core_reply_cjson(core_req_t *r, int rc, cJSON *o);
/* Parse JSON keeping 64-bit integers exact (as raw number items); add,
 * make and read them (a number below 2^53, raw or quoted digits). */
cJSON *core_json_parse(const char *s, size_t n);
/* The stripe lock (of CORE_LOCKS) for a record key: what reads, decides
 * and writes one package id, drift event or device's reports holds it.
 * Never take two; c->mu may be taken inside. */
pthread_mutex_t *core_lock_of(core_t *c, const char *key);
cJSON *core_json_u64_item(uint64_t v);
void core_json_add_u64(cJSON *o, const char *key, uint64_t v);
bool core_json_get_u64(const cJSON *it, uint64_t *out);

/* ---- shared state -------------------------------------------------------- */

typedef struct core_device core_device_t;
typedef struct core_models core_models_t;       /* models.c */
typedef struct core_telemetry core_telemetry_t; /* telemetry.c */
typedef struct core_retention core_retention_t; /* retention.c */

typedef struct core_stats {
	_Atomic uint64_t requests, errors4, errors5;
	_Atomic uint64_t stored, duplicates, rejected, rate_limited;
	_Atomic uint64_t bytes, drift_events, samples, metrics, logs;
	_Atomic uint64_t feedback_queued, feedback_acked, registrations;
	_Atomic uint64_t ingest_ns; /* time spent in ingest, for the mean */
} core_stats_t;

#define CORE_LOCKS 64

struct core {
	tlcm_ctx_t *ctx;
	tlcm_store_t *store;
	nng_http_server *srv;
	nng_http_handler *h;
	char url[256];
	int port;              /* the bound port (for port 0) */

	/* configuration */
	unsigned char admin_hash[32];   /* SHA-256 of the admin token */
	bool have_admin;
	unsigned char key_hash[32];     /* the fleet's shared API key */
	bool have_key;
	size_t max_body, max_raw;
	double rate, burst;    /* per device, packages/s */
	unsigned nthreads;

	/* devices: open addressing on the id, under mu */
	pthread_mutex_t mu;
	core_device_t **dev;
	size_t ndev, capdev;
	bool dirty_stats;      /* last-seen/stats to persist at the next tick */

	/* de-duplication: one lock per stripe of package ids */
	pthread_mutex_t locks[CORE_LOCKS];
	_Atomic uint64_t feedback_seq;

	/* the worker pool */
	pthread_mutex_t qmu;
	pthread_cond_t qcv;
	core_req_t *head, *tail;
	size_t queued;
	pthread_t *threads;
	atomic_bool stopping;  /* new requests get 503 */
	bool quit;             /* workers end (under qmu) */
	atomic_int inflight;   /* requests taken by NNG, not yet answered */

	core_stats_t st;

	/* the model registry's key and the telemetry's settings and locks */
	core_models_t *models;
	core_telemetry_t *tel;
	core_retention_t *ret;  /* retention.c */
};

/* Route handlers (devices.c, ingest.c, hub.c). */
void core_ping(core_req_t *r);
void core_register(core_req_t *r);
void core_devices_list(core_req_t *r);
void core_satellites_list(core_req_t *r); /* satellites.c (nodes/link) */
void core_device_get(core_req_t *r);
void core_packages_post(core_req_t *r);
void core_packages_list(core_req_t *r);
void core_drift_list(core_req_t *r);
void core_drift_get(core_req_t *r);
void core_drift_image(core_req_t *r);
void core_drift_validate(core_req_t *r);
void core_sample_label(core_req_t *r);
void core_samples_list(core_req_t *r);
void core_sample_thumb(core_req_t *r);
void core_feedback_get(core_req_t *r);
void core_feedback_ack(core_req_t *r);
void core_device_metrics(core_req_t *r);
void core_device_logs(core_req_t *r);
void core_page(core_req_t *r);
/* Models (models.c) and community telemetry (telemetry.c). */
void core_models_post(core_req_t *r);
void core_models_available(core_req_t *r);
void core_model_get(core_req_t *r);
void core_telemetry_submit(core_req_t *r);
void core_community_averages(core_req_t *r);
void core_community_rank(core_req_t *r);
void core_pool_status(core_req_t *r);
/* Graph deployment (deploy.c). */
void core_device_graph_put(core_req_t *r);
void core_device_graph_get(core_req_t *r);
void core_device_graph_delete(core_req_t *r);
void core_device_graph_status(core_req_t *r);
void core_group_graph_put(core_req_t *r);
void core_group_graph_get(core_req_t *r);
void core_group_graph_delete(core_req_t *r);
/* A device's deployment state for GET /devices/{id} (a new object). */
cJSON *core_device_graph_info(core_t *c, const char *dev);

/* Models (models.c): read the signing key and settings (params
 * signing_key, key_id, model_ttl); 0 or TLCM_E* with why. free: any
 * time, also after a failed init. */
int core_models_init(core_t *c, char *why, size_t cap);
void core_models_free(core_t *c);
/* Does the core sign offers? Its key id into key_id ("" none). */
bool core_models_signing(const core_t *c, char *key_id, size_t cap);
/* A model name of the core: [a-z0-9._-]{1,64}, not "." or "..". */
bool core_valid_model(const char *s);
/* The device id of the path ({id}, r->param[0]) when it is valid and
 * the caller may act for it: the admin (when admin_too) or that device
 * itself; NULL when an error was answered (400, 401, 403). */
const char *core_path_device(core_req_t *r, bool admin_too);
/* The media type of an image attachment: by its bytes (PNG, JPEG, GIF,
 * WebP magic), else by its name's extension, else
 * application/octet-stream. */
const char *core_media_type(const char *name, const void *data,
			    size_t len);
/* Admin (dev "") or any registered device (its id in dev): 0, or an
 * error was answered (401/403) and -1. */
int core_auth_reader(core_req_t *r, char *dev);

/* Telemetry (telemetry.c): settings (community_min_days,
 * community_min_devices, telemetry_max_age) and locks. */
int core_telemetry_init(core_t *c, char *why, size_t cap);
void core_telemetry_free(core_t *c);
uint64_t core_community_min_days(const core_t *c);
uint64_t core_telemetry_max_age_s(const core_t *c);
/* May dev have community models (telemetry on community_min_days
 * distinct days)? *days: the days counted (up to the threshold; may be
 * NULL). 0, or a store error. */
int core_community_eligible(core_t *c, const char *dev, bool *ok,
			    uint64_t *days);

/* Retention (retention.c; params retain_*, retention_interval): init
 * (0 or TLCM_E* with why), the sweep when one is due (from tick; returns
 * early when the graph stops), its figures as JSON members for describe
 * ("retention":{…}) and as Prometheus text; free any time. */
int core_retention_init(core_t *c, char *why, size_t cap);
void core_retention_free(core_t *c);
void core_retention_tick(core_t *c);
size_t core_retention_describe(core_t *c, char *buf, size_t len);
size_t core_retention_prometheus(core_t *c, char *buf, size_t len);
/* Ingest's part: index a sample (key: its core/samples key) or a
 * package's images by arrival (kind 's' or 'i'), and ask whether a
 * package id was swept (then it is still a duplicate). */
int core_ttl_put(core_t *c, tlcm_batch_t *b, char kind, uint64_t recv,
		 const void *key, size_t klen);
int core_package_gone(core_t *c, const char *id, bool *gone);

/* Drift events (hub.c): write event o (freed) with its indexes into b. */
int core_event_put(core_t *c, tlcm_batch_t *b, const char *evid,
		   const char *dev, uint64_t recv, cJSON *o);
/* Feedback (hub.c): load the sequence; queue a label for a device. */
int core_feedback_load(core_t *c);

/* Serve at url (http.c); stop answers what is queued, then stops. */
int core_http_start(core_t *c, const char *url, const char *cert,
		    const char *key, char *why, size_t cap);
void core_http_stop(core_t *c);

/* ---- devices (devices.c) ------------------------------------------------- */

int core_devices_load(core_t *c, char *why, size_t cap);
void core_devices_free(core_t *c);
/* Persist changed last-seen times and counters (from tick). */
void core_devices_flush(core_t *c);
/* The authenticated device of r into dev (0), or an error was answered
 * (401/403) and -1 is returned. `must_be` (NULL: any) is the device the
 * request is about: another one gets 403. */
int core_auth_device(core_req_t *r, const char *must_be, char *dev);
/* 0 when r carries the admin token, else answered 401 and -1. */
int core_auth_admin(core_req_t *r);
/* Admin, or the device `id` itself. */
int core_auth_admin_or(core_req_t *r, const char *id);
/* Count a package for a device: rate limit (false: answered 429) and
 * stats. */
bool core_device_take(core_t *c, core_req_t *r, const char *dev);
void core_device_count(core_t *c, const char *dev, size_t bytes,
		       bool duplicate, unsigned drift);
void core_device_feedback(core_t *c, const char *dev, int delta);
bool core_device_known(core_t *c, const char *dev);
/* The group a device registered with into group ("" none; at least
 * CORE_ID_MAX + 1 bytes); false when the device is unknown. */
bool core_device_group(core_t *c, const char *dev, char *group);

/* ---- helpers (util in http.c) -------------------------------------------- */

bool core_valid_device(const char *s);
bool core_valid_uuid(const char *s);
void core_sha256(const void *p, size_t n, unsigned char out[32]);
void core_hex(const unsigned char *p, size_t n, char *out);
uint64_t core_wall_ns(void);
uint64_t core_mono_ns(void);
void core_be64(unsigned char *p, uint64_t v);
uint64_t core_get_be64(const unsigned char *p);
/* A key: dev, then a NUL, then the be64 values (n of them); returns its
 * length. */
size_t core_devkey(unsigned char *out, const char *dev, const uint64_t *v,
		   size_t n);
/* Parse a decimal u64 (whole string). */
bool core_parse_u64(const char *s, uint64_t *out);
/* Does an If-None-Match / If-Range list name this ETag (quoted or not,
 * weak or strong) or "*"? */
bool core_etag_listed(const char *list, const char *etag);

#endif
