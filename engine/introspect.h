/* introspect.h — the live introspection endpoint of a running graph.
 *
 * An HTTP server (NNG's) answers, as JSON unless noted:
 *   GET /api/v1/graph               nodes, params (secrets redacted), edges
 *   GET /api/v1/stats               per node and per edge figures, process
 *   GET /api/v1/nodes/{id}/state    the node's own summary
 *   GET /api/v1/health              200 when healthy, 503 with reasons
 *   GET /metrics                    Prometheus text exposition
 * Anything else is a JSON error with the right status (404, 405, 400);
 * requests never reach node code except through the provider below, which
 * keeps the engine's threading rules. The server runs on NNG's threads.
 */
#ifndef TLCM_INTROSPECT_H
#define TLCM_INTROSPECT_H

#include <stdbool.h>

#include "engine/error.h"

/* What the endpoint serves; each returns a malloc'd body (NULL: out of
 * memory) and may set *status (default 200). */
typedef struct tlcm_introspect_ops {
	void *arg;
	char *(*graph)(void *arg);
	char *(*stats)(void *arg);
	char *(*metrics)(void *arg);
	char *(*health)(void *arg, int *status);
	char *(*node_state)(void *arg, const char *node, int *status);
} tlcm_introspect_ops_t;

typedef struct tlcm_introspect tlcm_introspect_t;

/* Serve ops at url (e.g. "http://127.0.0.1:8710"). */
int tlcm_introspect_start(tlcm_introspect_t **out, const char *url,
			  const tlcm_introspect_ops_t *ops, char *why,
			  size_t whylen);
void tlcm_introspect_stop(tlcm_introspect_t *in);

#define TLCM_INTROSPECT_DEFAULT "http://127.0.0.1:8710"

#endif
