/* introspect.c — HTTP routing for the introspection endpoint (see
 * introspect.h). One tree handler on "/" takes every request, so unknown
 * paths and wrong methods get JSON errors from us rather than NNG's HTML
 * pages; bodies come from the provider callbacks.
 */
#include <nng/nng.h>
#include <stdatomic.h>
#include <unistd.h>
#include <nng/supplemental/http/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/introspect.h"
#include "engine/log.h"

struct tlcm_introspect {
	nng_http_server *srv;
	nng_http_handler *h;
	tlcm_introspect_ops_t ops;
	/* stop() must not return while a handler still reads the graph */
	atomic_bool closing;
	atomic_int busy;
};

static char *error_body(int status, const char *msg, const char *detail)
{
	char *b = malloc(512);
	if (b)
		snprintf(b, 512, "{\"error\":{\"status\":%d,\"message\":\"%s\""
			 "%s%.200s%s}}\n", status, msg,
			 detail ? ",\"detail\":\"" : "", detail ? detail : "",
			 detail ? "\"" : "");
	return b;
}

/* Keep only characters that need no JSON escaping (for echoing input). */
static void safe(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\' ||
		    (unsigned char)*s >= 0x7f)
			*s = '?';
}

static void reply(nng_aio *aio, int status, const char *type, char *body)
{
	nng_http_res *res;
	if (!body)
		status = 500;
	if (nng_http_res_alloc(&res) != 0) {
		free(body);
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	nng_http_res_set_status(res, (uint16_t)status);
	nng_http_res_set_header(res, "Content-Type", type);
	nng_http_res_set_header(res, "Cache-Control", "no-store");
	if (body)
		nng_http_res_copy_data(res, body, strlen(body));
	free(body);
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static void handle_request(tlcm_introspect_t *in, nng_aio *aio,
			   nng_http_req *req);

static void handle(nng_aio *aio)
{
	nng_http_req *req = nng_aio_get_input(aio, 0);
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	tlcm_introspect_t *in = nng_http_handler_get_data(h);
	atomic_fetch_add(&in->busy, 1);
	if (atomic_load(&in->closing)) {
		reply(aio, 503, "application/json",
		      error_body(503, "the graph is shutting down", NULL));
		atomic_fetch_sub(&in->busy, 1);
		return;
	}
	handle_request(in, aio, req);
	atomic_fetch_sub(&in->busy, 1);
}

static void handle_request(tlcm_introspect_t *in, nng_aio *aio,
			   nng_http_req *req)
{
	const char *method = nng_http_req_get_method(req);
	char uri[512];
	snprintf(uri, sizeof uri, "%s", nng_http_req_get_uri(req));
	char *q = strchr(uri, '?');
	if (q)
		*q = 0;
	safe(uri);
	const char *json = "application/json";
	int status = 200;
	bool known = !strcmp(uri, "/api/v1/graph") ||
		     !strcmp(uri, "/api/v1/stats") ||
		     !strcmp(uri, "/api/v1/health") ||
		     !strcmp(uri, "/metrics") ||
		     !strncmp(uri, "/api/v1/nodes/", 14);
	if (known && strcmp(method, "GET") && strcmp(method, "HEAD")) {
		reply(aio, 405, json, error_body(405, "method not allowed; "
						 "use GET", method));
		return;
	}
	if (!strcmp(uri, "/api/v1/graph")) {
		reply(aio, 200, json, in->ops.graph(in->ops.arg));
	} else if (!strcmp(uri, "/api/v1/stats")) {
		reply(aio, 200, json, in->ops.stats(in->ops.arg));
	} else if (!strcmp(uri, "/api/v1/health")) {
		char *b = in->ops.health(in->ops.arg, &status);
		reply(aio, status, json, b);
	} else if (!strcmp(uri, "/metrics")) {
		reply(aio, 200, "text/plain; version=0.0.4; charset=utf-8",
		      in->ops.metrics(in->ops.arg));
	} else if (!strncmp(uri, "/api/v1/nodes/", 14)) {
		char id[128];
		const char *rest = uri + 14;
		const char *slash = strchr(rest, '/');
		if (!slash || strcmp(slash, "/state") ||
		    (size_t)(slash - rest) >= sizeof id || slash == rest) {
			reply(aio, 404, json, error_body(404, "no such "
							 "resource; try "
							 "/api/v1/nodes/ID/state",
							 uri));
			return;
		}
		memcpy(id, rest, (size_t)(slash - rest));
		id[slash - rest] = 0;
		char *b = in->ops.node_state(in->ops.arg, id, &status);
		reply(aio, status, json, b);
	} else {
		reply(aio, 404, json, error_body(404, "no such resource; see "
						 "/api/v1/graph, /api/v1/stats, "
						 "/api/v1/health, /metrics",
						 uri));
	}
}

int tlcm_introspect_start(tlcm_introspect_t **out, const char *url,
			  const tlcm_introspect_ops_t *ops, char *why,
			  size_t whylen)
{
	*out = NULL;
	tlcm_introspect_t *in = calloc(1, sizeof *in);
	if (!in)
		return TLCM_ENOMEM;
	in->ops = *ops;
	nng_url *u = NULL;
	int rv = nng_url_parse(&u, url);
	if (rv) {
		snprintf(why, whylen, "introspection address '%s': %s", url,
			 nng_strerror(rv));
		free(in);
		return TLCM_EINVAL;
	}
	rv = nng_http_server_hold(&in->srv, u);
	if (!rv)
		rv = nng_http_handler_alloc(&in->h, "/", handle);
	if (!rv)
		rv = nng_http_handler_set_method(in->h, NULL); /* any: we
								 answer 405 */
	if (!rv)
		rv = nng_http_handler_set_tree(in->h);
	if (!rv)
		rv = nng_http_handler_set_data(in->h, in, NULL);
	if (!rv)
		rv = nng_http_server_add_handler(in->srv, in->h);
	/* the server owns the handler only once it was added: also when
	 * adding fails (a server for this address, still held by a graph
	 * that is shutting down, has its own "/") it is ours to free */
	if (rv && in->h)
		nng_http_handler_free(in->h);
	if (!rv)
		rv = nng_http_server_start(in->srv);
	nng_url_free(u);
	if (rv) {
		snprintf(why, whylen, "cannot serve introspection at %s: %s",
			 url, nng_strerror(rv));
		if (in->srv)
			nng_http_server_release(in->srv);
		free(in);
		return rv == NNG_EADDRINUSE ? TLCM_EBUSY : TLCM_EIO;
	}
	*out = in;
	return 0;
}

void tlcm_introspect_stop(tlcm_introspect_t *in)
{
	if (!in)
		return;
	atomic_store(&in->closing, true);
	while (atomic_load(&in->busy)) /* a request in progress finishes */
		usleep(1000);
	nng_http_server_stop(in->srv);
	nng_http_server_release(in->srv);
	free(in);
}
