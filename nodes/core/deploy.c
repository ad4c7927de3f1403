/* deploy.c — graph deployment at the core (docs/api.md, "Graph
 * deployment"): an operator puts the desired graph file of a device or of
 * a group; a device pulls its own (else its group's) at each sync with
 * If-None-Match, runs it through `tinylcm run --deploy-dir` and reports
 * how that went (applied, rolled_back, invalid).
 *
 * A graph is checked before it is kept, by the loader `tinylcm check`
 * uses (tlcm_graph_load_text), with variables at their defaults: the
 * device's environment is not the core's. Its ETag is the SHA-256 of the
 * bytes. Families:
 *   core/graphs        "d/" ID or "g/" GROUP -> be64(updated_ns),
 *                      sha256 (32 bytes), the graph file's bytes
 *   core/graph_status  ID -> JSON: the device's last report and the last
 *                      graph it applied
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/graph.h"
#include "engine/log.h"
#include "nodes/core/core.h"
#include "nodes/nodes.h"

#define GRAPHS "core/graphs"
#define STATUS "core/graph_status"
#define HEAD 40 /* be64 time + sha256 */
#define MAX_PROBLEMS 20
#define DETAIL_MAX 1024

/* ---- records -------------------------------------------------------------- */

static size_t graph_key(char *out, bool group, const char *name)
{
	return (size_t)sprintf(out, "%c/%s", group ? 'g' : 'd', name);
}

typedef struct {
	void *val;  /* the record: HEAD bytes, then the file */
	size_t len;
	char etag[65];
	uint64_t updated_ns;
} graph_rec_t;

/* The graph kept for a device or group: 0, TLCM_ENOENT, or a store
 * error. */
static int graph_read(core_t *c, bool group, const char *name,
		      graph_rec_t *g)
{
	char key[3 + CORE_ID_MAX];
	size_t kl = graph_key(key, group, name);
	memset(g, 0, sizeof *g);
	int rc = tlcm_store_get(c->store, GRAPHS, key, kl, &g->val, &g->len);
	if (rc)
		return rc;
	if (g->len < HEAD) { /* not written by us: as if absent */
		tlcm_log(TLCM_LOG_WARN, tlcm_node_id(c->ctx), "store: graph "
			 "record %s is %zu bytes; ignored", key, g->len);
		free(g->val);
		g->val = NULL;
		return TLCM_ENOENT;
	}
	g->updated_ns = core_get_be64(g->val);
	core_hex((const unsigned char *)g->val + 8, 32, g->etag);
	return 0;
}

/* Which graph a device gets: its own, else its group's. *source "device"
 * or "group"; group: the device's group ("" none). */
static int graph_resolve(core_t *c, const char *dev, graph_rec_t *g,
			 const char **source, char *group)
{
	group[0] = 0;
	core_device_group(c, dev, group);
	int rc = graph_read(c, false, dev, g);
	*source = "device";
	if (rc == TLCM_ENOENT && group[0]) {
		rc = graph_read(c, true, group, g);
		*source = "group";
	}
	return rc;
}

/* Is s UTF-8 text without NUL or other control bytes than tab, CR and
 * LF? *at: the offset of the first bad byte. */
static bool graph_text(const unsigned char *s, size_t n, size_t *at)
{
	for (size_t i = 0; i < n;) {
		unsigned char ch = s[i];
		*at = i;
		if (ch < 0x80) {
			if ((ch < 0x20 && ch != '\t' && ch != '\n' &&
			     ch != '\r') || ch == 0x7f)
				return false;
			i++;
			continue;
		}
		size_t k = ch >= 0xc2 && ch <= 0xdf ? 2 :
			   ch >= 0xe0 && ch <= 0xef ? 3 :
			   ch >= 0xf0 && ch <= 0xf4 ? 4 : 0;
		if (!k || i + k > n)
			return false;
		for (size_t j = 1; j < k; j++)
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
		if ((ch == 0xe0 && s[i + 1] < 0xa0) ||
		    (ch == 0xed && s[i + 1] >= 0xa0) ||
		    (ch == 0xf0 && s[i + 1] < 0x90) ||
		    (ch == 0xf4 && s[i + 1] >= 0x90))
			return false; /* overlong, surrogate, above U+10FFFF */
		i += k;
	}
	return true;
}

static void set_etag(core_req_t *r, const char *etag)
{
	char q[70];
	snprintf(q, sizeof q, "\"%s\"", etag);
	core_add_header(r, "ETag", q);
}

/* ---- PUT, GET, DELETE of a device's or a group's graph -------------------- */

/* The path's id: a device id or group name, else answered 400. */
static bool target(core_req_t *r, bool group)
{
	if (core_valid_device(r->param[0]))
		return true;
	core_error(r, 400, "bad_request", "%s not [A-Za-z0-9._-]{1,64} (and "
		   "not . or ..)", group ? "group name" : "device id");
	return false;
}

/* Check the body as a graph file; false: answered 400 naming every
 * problem (file:line:col as `tinylcm check` prints them). */
static bool check_graph(core_req_t *r, tlcm_graph_t **out)
{
	tlcm_registry_t reg = {0};
	tlcm_diag_t d = {0};
	int rc = tlcm_builtin_nodes(&reg);
	if (rc) {
		tlcm_registry_fini(&reg);
		core_error(r, 503, "unavailable", "cannot list the node types: "
			   "%s", tlcm_strerror(rc));
		return false;
	}
	rc = tlcm_graph_load_text(out, "graph.yaml", r->body, r->len, &reg,
				  false, &d);
	tlcm_registry_fini(&reg);
	if (!rc) {
		tlcm_diag_fini(&d);
		return true;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "error", "invalid_graph");
	char detail[DETAIL_MAX];
	snprintf(detail, sizeof detail, "%s%s", d.n ? d.msgs[0] :
		 "graph.yaml: not a graph file", d.n > 1 ? " (and more: see "
		 "problems)" : "");
	core_json_text(o, "detail", detail);
	cJSON *a = cJSON_AddArrayToObject(o, "problems");
	for (size_t i = 0; i < d.n && i < MAX_PROBLEMS; i++) {
		char m[DETAIL_MAX];
		core_clean_text(d.msgs[i], m, sizeof m);
		cJSON_AddItemToArray(a, cJSON_CreateString(m));
	}
	tlcm_diag_fini(&d);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (s)
		core_reply_json(r, 400, s);
	else
		core_error(r, 400, "invalid_graph", "%s", detail);
	cJSON_free(s);
	return false;
}

static void graph_put(core_req_t *r, bool group)
{
	if (!target(r, group) || core_auth_admin(r))
		return;
	core_t *c = r->c;
	const char *name = r->param[0];
	size_t at;
	if (!r->len) {
		core_error(r, 400, "bad_request", "the body is empty: send the "
			   "graph file (YAML)");
		return;
	}
	if (r->len > CORE_GRAPH_MAX) {
		core_error(r, 413, "too_large", "the graph file has %zu bytes; "
			   "this core keeps graph files of up to %d", r->len,
			   CORE_GRAPH_MAX);
		return;
	}
	if (!graph_text((const unsigned char *)r->body, r->len, &at)) {
		core_error(r, 400, "bad_request", "the body is not UTF-8 text "
			   "(a NUL, control or invalid byte at offset %zu)", at);
		return;
	}
	tlcm_graph_t *g = NULL;
	if (!check_graph(r, &g))
		return;
	unsigned char *v = malloc(HEAD + r->len);
	if (!v) {
		tlcm_graph_free(g);
		core_error(r, 503, "unavailable", "out of memory");
		return;
	}
	uint64_t now = core_wall_ns();
	core_be64(v, now);
	core_sha256(r->body, r->len, v + 8);
	memcpy(v + HEAD, r->body, r->len);
	char etag[65];
	core_hex(v + 8, 32, etag);
	graph_rec_t old;
	int orc = graph_read(c, group, name, &old);
	bool same = !orc && !strcmp(old.etag, etag);
	free(old.val);
	int rc = 0;
	if (!same) {
		char key[3 + CORE_ID_MAX];
		size_t kl = graph_key(key, group, name);
		rc = tlcm_store_put(c->store, GRAPHS, key, kl, v, HEAD + r->len);
	}
	free(v);
	if (rc) {
		tlcm_graph_free(g);
		core_error(r, 503, "unavailable", "cannot store the graph: %s",
			   tlcm_strerror(rc));
		return;
	}
	if (!same)
		tlcm_log(TLCM_LOG_INFO, tlcm_node_id(c->ctx), "graph '%s' (%zu "
			 "nodes, etag %.12s…) is now the desired graph of %s "
			 "%s", g->name, g->nnodes, etag, group ? "group" :
			 "device", name);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, group ? "group" : "device_id", name);
	cJSON_AddStringToObject(o, "etag", etag);
	cJSON_AddStringToObject(o, "status", same ? "unchanged" :
				orc == TLCM_ENOENT ? "created" : "replaced");
	core_json_text(o, "graph", g->name);
	cJSON_AddNumberToObject(o, "nodes", (double)g->nnodes);
	cJSON_AddNumberToObject(o, "edges", (double)g->nedges);
	cJSON_AddNumberToObject(o, "size", (double)r->len);
	tlcm_graph_free(g);
	set_etag(r, etag);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (s)
		core_reply_json(r, !same && orc == TLCM_ENOENT ? 201 : 200, s);
	else
		core_error(r, 503, "unavailable", "out of memory");
	cJSON_free(s);
}

/* Answer the graph g (freed), or 304 when If-None-Match names it. */
static void graph_send(core_req_t *r, graph_rec_t *g, const char *source)
{
	set_etag(r, g->etag);
	if (source) /* "device", or "group:NAME" */
		core_add_header(r, "X-Graph-Source", source);
	const char *inm = core_header(r, "If-None-Match");
	if (inm && core_etag_listed(inm, g->etag))
		core_reply(r, 304, NULL, NULL, 0);
	else
		core_reply(r, 200, "application/yaml", (char *)g->val + HEAD,
			   g->len - HEAD);
	free(g->val);
	g->val = NULL;
}

void core_device_graph_get(core_req_t *r)
{
	const char *id = core_path_device(r, true);
	if (!id)
		return;
	graph_rec_t g;
	const char *source;
	char group[CORE_ID_MAX + 1];
	int rc = graph_resolve(r->c, id, &g, &source, group);
	if (rc == TLCM_ENOENT)
		core_error(r, 404, "not_found", "no graph for device %s (none "
			   "of its own, %s%s)", id, group[0] ? "nor for its "
			   "group " : "and it is in no group", group);
	else if (rc)
		core_error(r, 503, "unavailable", "store: %s",
			   tlcm_strerror(rc));
	else {
		char src[8 + CORE_ID_MAX];
		snprintf(src, sizeof src, "%s%s%s", source,
			 strcmp(source, "group") ? "" : ":",
			 strcmp(source, "group") ? "" : group);
		graph_send(r, &g, src);
	}
}

void core_group_graph_get(core_req_t *r)
{
	if (!target(r, true) || core_auth_admin(r))
		return;
	graph_rec_t g;
	int rc = graph_read(r->c, true, r->param[0], &g);
	if (rc == TLCM_ENOENT)
		core_error(r, 404, "not_found", "no graph for group %s",
			   r->param[0]);
	else if (rc)
		core_error(r, 503, "unavailable", "store: %s",
			   tlcm_strerror(rc));
	else
		graph_send(r, &g, NULL);
}

static void graph_delete(core_req_t *r, bool group)
{
	if (!target(r, group) || core_auth_admin(r))
		return;
	graph_rec_t g;
	int rc = graph_read(r->c, group, r->param[0], &g);
	free(g.val);
	if (!rc) {
		char key[3 + CORE_ID_MAX];
		size_t kl = graph_key(key, group, r->param[0]);
		rc = tlcm_store_delete(r->c->store, GRAPHS, key, kl);
	}
	if (rc == TLCM_ENOENT)
		core_error(r, 404, "not_found", "no graph for %s %s", group ?
			   "group" : "device", r->param[0]);
	else if (rc)
		core_error(r, 503, "unavailable", "store: %s",
			   tlcm_strerror(rc));
	else
		core_reply(r, 204, NULL, NULL, 0);
}

void core_device_graph_put(core_req_t *r)
{
	graph_put(r, false);
}

void core_group_graph_put(core_req_t *r)
{
	graph_put(r, true);
}

void core_device_graph_delete(core_req_t *r)
{
	graph_delete(r, false);
}

void core_group_graph_delete(core_req_t *r)
{
	graph_delete(r, true);
}

/* ---- POST /devices/{id}/graph/status --------------------------------------- */

static bool hex64(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!strchr("0123456789abcdef", s[n]))
			return false;
	return n == 64;
}

void core_device_graph_status(core_req_t *r)
{
	const char *id = core_path_device(r, false);
	if (!id)
		return;
	core_t *c = r->c;
	cJSON *j = core_json_parse(r->body, r->len);
	const cJSON *et = cJSON_GetObjectItemCaseSensitive(j, "etag");
	const cJSON *oc = cJSON_GetObjectItemCaseSensitive(j, "outcome");
	const cJSON *de = cJSON_GetObjectItemCaseSensitive(j, "detail");
	const cJSON *tm = cJSON_GetObjectItemCaseSensitive(j, "time_ns");
	const char *outcome = cJSON_GetStringValue(oc);
	uint64_t t = 0;
	if (!cJSON_IsObject(j)) {
		core_error(r, 400, "bad_request", "the body is not a JSON "
			   "object");
	} else if (!cJSON_IsString(et) || !hex64(et->valuestring)) {
		core_error(r, 400, "bad_request", "etag: want the graph's "
			   "SHA-256 as 64 lower-case hex characters");
	} else if (!outcome || (strcmp(outcome, "applied") &&
				strcmp(outcome, "rolled_back") &&
				strcmp(outcome, "invalid"))) {
		core_error(r, 400, "bad_request", "outcome: want applied, "
			   "rolled_back or invalid");
	} else if (de && !cJSON_IsNull(de) &&
		   (!cJSON_IsString(de) ||
		    strlen(de->valuestring) > DETAIL_MAX)) {
		core_error(r, 400, "bad_request", "detail: want text of up to "
			   "%d bytes", DETAIL_MAX);
	} else if (tm && !core_json_get_u64(tm, &t)) {
		core_error(r, 400, "bad_request", "time_ns: want nanoseconds "
			   "since the epoch");
	}
	if (r->replied) {
		cJSON_Delete(j);
		return;
	}
	/* one device's reports in turn (a stripe lock: they are short) */
	pthread_mutex_t *mu = core_lock_of(c, id);
	pthread_mutex_lock(mu);
	void *val = NULL;
	size_t vl = 0;
	int rc = tlcm_store_get(c->store, STATUS, id, strlen(id), &val, &vl);
	cJSON *st = rc ? NULL : core_json_parse(val, vl);
	free(val);
	if (!cJSON_IsObject(st)) {
		cJSON_Delete(st);
		st = cJSON_CreateObject();
	}
	uint64_t now = core_wall_ns();
	cJSON_DeleteItemFromObjectCaseSensitive(st, "last_etag");
	cJSON_DeleteItemFromObjectCaseSensitive(st, "last_outcome");
	cJSON_DeleteItemFromObjectCaseSensitive(st, "last_detail");
	cJSON_DeleteItemFromObjectCaseSensitive(st, "last_ns");
	cJSON_DeleteItemFromObjectCaseSensitive(st, "reported_ns");
	cJSON_AddStringToObject(st, "last_etag", et->valuestring);
	cJSON_AddStringToObject(st, "last_outcome", outcome);
	core_json_text(st, "last_detail", cJSON_IsString(de) ?
		       de->valuestring : "");
	core_json_add_u64(st, "last_ns", t ? t : now);
	core_json_add_u64(st, "reported_ns", now);
	if (!strcmp(outcome, "applied")) {
		cJSON_DeleteItemFromObjectCaseSensitive(st, "deployed_etag");
		cJSON_DeleteItemFromObjectCaseSensitive(st, "deployed_ns");
		cJSON_AddStringToObject(st, "deployed_etag", et->valuestring);
		core_json_add_u64(st, "deployed_ns", t ? t : now);
	}
	char *s = cJSON_PrintUnformatted(st);
	cJSON_Delete(st);
	rc = s ? tlcm_store_put(c->store, STATUS, id, strlen(id), s,
				strlen(s)) : TLCM_ENOMEM;
	pthread_mutex_unlock(mu);
	cJSON_free(s);
	if (rc) {
		cJSON_Delete(j);
		core_error(r, 503, "unavailable", "cannot store the report: %s",
			   tlcm_strerror(rc));
		return;
	}
	char clean[DETAIL_MAX + 1];
	core_clean_text(cJSON_GetStringValue(de), clean, sizeof clean);
	tlcm_log(strcmp(outcome, "applied") ? TLCM_LOG_WARN : TLCM_LOG_INFO,
		 tlcm_node_id(c->ctx), "device %s: graph %.12s… %s%s%s", id,
		 et->valuestring, outcome, clean[0] ? ": " : "", clean);
	cJSON_Delete(j);
	core_reply_json(r, 200, "{\"status\":\"recorded\"}");
}

/* ---- in GET /devices/{id} -------------------------------------------------- */

cJSON *core_device_graph_info(core_t *c, const char *dev)
{
	cJSON *o = cJSON_CreateObject();
	graph_rec_t g;
	const char *source;
	char group[CORE_ID_MAX + 1];
	if (!graph_resolve(c, dev, &g, &source, group)) {
		cJSON_AddStringToObject(o, "desired_etag", g.etag);
		cJSON_AddStringToObject(o, "desired_source", source);
		core_json_add_u64(o, "desired_ns", g.updated_ns);
		free(g.val);
	} else {
		cJSON_AddNullToObject(o, "desired_etag");
		cJSON_AddNullToObject(o, "desired_source");
	}
	if (group[0])
		cJSON_AddStringToObject(o, "group", group);
	else
		cJSON_AddNullToObject(o, "group");
	void *val = NULL;
	size_t vl = 0;
	cJSON *st = NULL;
	if (!tlcm_store_get(c->store, STATUS, dev, strlen(dev), &val, &vl))
		st = core_json_parse(val, vl);
	free(val);
	static const char *const keys[] = {"deployed_etag", "deployed_ns",
		"last_etag", "last_outcome", "last_detail", "last_ns",
		"reported_ns", NULL};
	for (int i = 0; keys[i]; i++) {
		cJSON *v = cJSON_GetObjectItemCaseSensitive(st, keys[i]);
		cJSON_AddItemToObject(o, keys[i], v ? cJSON_Duplicate(v, 1) :
				      cJSON_CreateNull());
	}
	cJSON_Delete(st);
	return o;
}
