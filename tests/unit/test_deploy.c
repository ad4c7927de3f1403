/* test_deploy.c — the engine and file pieces of graph deployment:
 * tlcm_graph_load_text (a graph from memory, with or without the
 * environment), the run watch (engine/sched.h: health, stop requests, a
 * stop asked by the watch, node failures and restarts, no call when the
 * graph cannot start) and the deployment directory's files
 * (nodes/uploader/deploy.h: atomic writes, bounded reads, ETags, outcome
 * records and their order). The whole loop runs in tests/cli/deploy_test.py.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "engine/graph.h"
#include "engine/log.h"
#include "engine/sched.h"
#include "nodes/nodes.h"
#include "nodes/uploader/deploy.h"
#include "tests/tlcm_test.h"

/* boom: a source whose first tick fails (TLCM_EIO) */
static int boom_init(tlcm_ctx_t *ctx, void *st)
{
	(void)st;
	tlcm_set_tick(ctx, 1000000);
	return 0;
}

static int boom_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	(void)ctx, (void)st, (void)now;
	return TLCM_EIO;
}

static const tlcm_node_type_t boom_type = {
	.name = "boom", .doc = "fail at the first tick", .init = boom_init,
	.tick = boom_tick};

static tlcm_registry_t reg;

static tlcm_graph_t *text(const char *yaml, bool env, tlcm_diag_t *d)
{
	tlcm_graph_t *g = NULL;
	tlcm_graph_load_text(&g, "mem.yaml", yaml, strlen(yaml), &reg, env, d);
	return g;
}

static const tlcm_pval_t *param(const tlcm_graph_t *g, const char *node,
				const char *name)
{
	for (size_t i = 0; i < g->nnodes; i++)
		for (size_t p = 0; !strcmp(g->nodes[i].id, node) &&
				   p < g->nodes[i].nparams; p++)
			if (!strcmp(g->nodes[i].params[p].d->name, name))
				return &g->nodes[i].params[p];
	return NULL;
}

static void load_text(void)
{
	static const char *const y =
		"graph: mem\n"
		"nodes:\n"
		"  src: { type: gen, params: { rate_hz: \"${TLCM_T_RATE:-5}\" } }\n"
		"  sink: { type: sink }\n"
		"edges:\n"
		"  - { from: src.out, to: sink.in }\n";
	setenv("TLCM_T_RATE", "7", 1);
	tlcm_diag_t d = {0};
	tlcm_graph_t *g = text(y, false, &d);
	CHECK(g != NULL);
	CHECK_INT(d.n, 0);
	if (g) {
		CHECK_STR(g->file, "mem.yaml");
		CHECK_STR(g->name, "mem");
		CHECK_DBL(param(g, "src", "rate_hz")->f, 5);
	}
	tlcm_graph_free(g);
	g = text(y, true, &d); /* as `tinylcm check` would */
	CHECK(g != NULL);
	if (g)
		CHECK_DBL(param(g, "src", "rate_hz")->f, 7);
	tlcm_graph_free(g);
	tlcm_diag_fini(&d);

	/* no default, away from the environment: a problem with its place */
	static const char *const nodef =
		"graph: mem\n"
		"nodes:\n"
		"  src: { type: gen, params: { rate_hz: \"${TLCM_T_RATE}\" } }\n";
	tlcm_diag_t d2 = {0};
	g = text(nodef, false, &d2);
	CHECK(g == NULL);
	CHECK_INT(d2.n, 1);
	if (d2.n)
		CHECK_CONTAINS(d2.msgs[0], "mem.yaml:3:41: variable TLCM_T_RATE "
			       "has no default");
	tlcm_diag_fini(&d2);
	tlcm_diag_t d3 = {0};
	g = text(nodef, true, &d3); /* the environment has it */
	CHECK(g != NULL);
	CHECK_INT(d3.n, 0);
	tlcm_graph_free(g);
	tlcm_diag_fini(&d3);

	/* the YAML parser's and the checker's words, with the name */
	tlcm_diag_t d4 = {0};
	CHECK(text("nodes: [a, {b\n", false, &d4) == NULL);
	CHECK(d4.n >= 1);
	if (d4.n)
		CHECK(!strncmp(d4.msgs[0], "mem.yaml:", 9));
	tlcm_diag_fini(&d4);
	tlcm_diag_t d5 = {0};
	CHECK(text("nodes:\n  x: { type: nosuch }\n", false, &d5) == NULL);
	CHECK_INT(d5.n, 1);
	if (d5.n)
		CHECK_CONTAINS(d5.msgs[0], "mem.yaml:2:14: unknown node type "
			       "'nosuch'");
	tlcm_diag_fini(&d5);
	unsetenv("TLCM_T_RATE");
}

/* ---- the run watch ---- */

typedef struct {
	int calls, stop_at;
	bool request_stop;  /* call tlcm_request_stop() at the first call */
	tlcm_run_health_t last;
	char why[512];
	unsigned max_requests;
	uint64_t max_restarts;
	size_t max_failed;
	bool stop_on_restart;
} w_t;

static bool watch(void *arg, const tlcm_run_health_t *h)
{
	w_t *w = arg;
	w->calls++;
	w->last = *h;
	snprintf(w->why, sizeof w->why, "%s", h->why);
	w->last.why = w->why;
	if (h->stop_requests > w->max_requests)
		w->max_requests = h->stop_requests;
	if (h->restarts > w->max_restarts)
		w->max_restarts = h->restarts;
	if (h->failed > w->max_failed)
		w->max_failed = h->failed;
	if (w->request_stop && w->calls == 1)
		tlcm_request_stop();
	if (w->stop_on_restart && h->restarts)
		return true;
	return w->stop_at && w->calls >= w->stop_at;
}

static int run_watched(const char *yaml, w_t *w, tlcm_run_result_t *res)
{
	tlcm_diag_t d = {0};
	tlcm_graph_t *g = text(yaml, true, &d);
	if (!g) {
		tlcm_diag_print(&d, stderr);
		tlcm_diag_fini(&d);
		CHECK(!"graph loads");
		return -1;
	}
	tlcm_diag_fini(&d);
	tlcm_run_opts_t o = {.quiet = true, .headless = true, .watch = watch,
			     .watch_arg = w};
	int rc = tlcm_graph_run(g, &o, res);
	tlcm_graph_free(g);
	return rc;
}

static const char *const endless =
	"graph: endless\n"
	"nodes:\n"
	"  src: { type: gen, params: { rate_hz: 1000 } }\n"
	"  sink: { type: sink }\n"
	"edges:\n"
	"  - { from: src.out, to: sink.in }\n";

static void watch_stops(void)
{
	/* an endless graph ends because the watch asks, at its 3rd call */
	w_t w = {.stop_at = 3};
	tlcm_run_result_t res;
	CHECK_INT(run_watched(endless, &w, &res), 0);
	CHECK(w.calls >= 4); /* 3, and the last look as it ends */
	CHECK(w.last.stopping);
	CHECK_INT(w.last.status, 0);
	CHECK_INT(w.last.failed, 0);
	CHECK_UINT(w.last.restarts, 0);
	CHECK_UINT(w.last.stop_requests, 0); /* not counted as a signal */
	CHECK_STR(w.last.why, "");
	CHECK(w.last.seconds > 0);
	CHECK(res.nnodes == 2 && res.nodes && res.nodes[0].out > 0 &&
	      res.nodes[1].in == res.nodes[0].out);
	tlcm_run_result_fini(&res);

	/* a stop request is counted for the watch, and ends the run */
	w_t w2 = {.request_stop = true};
	CHECK_INT(run_watched(endless, &w2, &res), 0);
	CHECK_UINT(w2.max_requests, 1);
	CHECK_UINT(w2.last.stop_requests, 1);
	CHECK(w2.last.stopping);
	tlcm_run_result_fini(&res);
}

static void watch_failures(void)
{
	/* a node stopped by its error: the graph fails, the watch says
	 * which node */
	static const char *const fails =
		"graph: fails\n"
		"nodes:\n"
		"  b: { type: boom }\n"
		"  src: { type: gen, params: { rate_hz: 1000 } }\n"
		"  sink: { type: sink }\n"
		"edges:\n"
		"  - { from: src.out, to: sink.in }\n";
	w_t w = {0};
	tlcm_run_result_t res;
	CHECK(run_watched(fails, &w, &res) != 0);
	CHECK(w.calls >= 1);
	CHECK(w.last.status != 0);
	CHECK_CONTAINS(w.last.why, "'b'");
	CHECK_CONTAINS(res.why, "'b'");
	tlcm_run_result_fini(&res);

	/* on_error: restart: the restarts show; the watch stops the graph */
	static const char *const restarts =
		"graph: restarts\n"
		"nodes:\n"
		"  b: { type: boom, on_error: restart }\n"
		"  src: { type: gen, params: { rate_hz: 1000 } }\n"
		"  sink: { type: sink }\n"
		"edges:\n"
		"  - { from: src.out, to: sink.in }\n";
	w_t w2 = {.stop_on_restart = true};
	run_watched(restarts, &w2, &res);
	CHECK(w2.max_restarts >= 1);
	CHECK(w2.last.stopping);
	tlcm_run_result_fini(&res);

	/* a graph that cannot start: no watch call at all */
	static const char *const nostart =
		"graph: nostart\n"
		"nodes:\n"
		"  f: { type: file, params: { path: /nonexistent/test-deploy } }\n"
		"  sink: { type: sink }\n"
		"edges:\n"
		"  - { from: f.out, to: sink.in }\n";
	w_t w3 = {0};
	CHECK(run_watched(nostart, &w3, &res) != 0);
	CHECK_INT(w3.calls, 0);
	CHECK_CONTAINS(res.why, "node 'f' (type file) failed to start");
	tlcm_run_result_fini(&res);
}

/* ---- the deployment directory ---- */

static size_t count_files(const char *dir)
{
	DIR *d = opendir(dir);
	size_t n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	if (d)
		closedir(d);
	return n;
}

static void deploy_dir(void)
{
	char base[] = "/tmp/tlcm-test-deploy-XXXXXX";
	CHECK(mkdtemp(base) != NULL);
	char dir[128], why[400], path[300], name[64];
	snprintf(dir, sizeof dir, "%s/d", base);
	CHECK_INT(up_deploy_dirs(dir, why, sizeof why), 0);
	CHECK_INT(up_deploy_dirs(dir, why, sizeof why), 0); /* again: fine */
	snprintf(path, sizeof path, "%s/%s", dir, UP_DEPLOY_OUTCOMES);
	struct stat st;
	CHECK(!stat(path, &st) && S_ISDIR(st.st_mode));
	/* a file where the directory should be */
	snprintf(path, sizeof path, "%s/file", base);
	FILE *f = fopen(path, "w");
	fclose(f);
	CHECK_INT(up_deploy_dirs(path, why, sizeof why), TLCM_EIO);
	CHECK_CONTAINS(why, "file");

	/* atomic write, read back, nothing left over */
	CHECK_INT(up_deploy_write(dir, "a.yaml", "abc", 3, why, sizeof why), 0);
	CHECK_INT(up_deploy_write(dir, "a.yaml", "abcd", 4, why, sizeof why),
		  0);
	char *b;
	size_t n;
	snprintf(path, sizeof path, "%s/a.yaml", dir);
	CHECK_INT(up_deploy_read(path, 100, &b, &n, why, sizeof why), 0);
	CHECK_INT(n, 4);
	CHECK_STR(b, "abcd");
	free(b);
	CHECK_INT(count_files(dir), 2); /* a.yaml, outcomes */
	CHECK_INT(up_deploy_read(path, 3, &b, &n, why, sizeof why),
		  TLCM_ENOSPC);
	CHECK(b == NULL);
	snprintf(path, sizeof path, "%s/none", dir);
	CHECK_INT(up_deploy_read(path, 3, &b, &n, why, sizeof why),
		  TLCM_ENOENT);
	snprintf(path, sizeof path, "%s/nodir/x", base);
	CHECK_INT(up_deploy_write(path, "a", "x", 1, why, sizeof why),
		  TLCM_EIO);
	CHECK_CONTAINS(why, "nodir");

	char etag[65];
	up_deploy_etag("abc", 3, etag);
	CHECK_STR(etag, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb4"
			"10ff61f20015ad");

	/* outcomes: the oldest first, other names ignored, the detail cut
	 * at a character boundary */
	CHECK_INT(up_deploy_next_outcome(dir, name, sizeof name), TLCM_ENOENT);
	CHECK_INT(up_deploy_outcome(dir, etag, "applied", "fine", why,
				    sizeof why), 0);
	char detail[1 + 2 * 600 + 1]; /* x, then 600 é: the cut at 1024
					 bytes falls inside an é */
	detail[0] = 'x';
	for (size_t i = 0; i < 600; i++)
		memcpy(detail + 1 + 2 * i, "\xc3\xa9", 2);
	detail[sizeof detail - 1] = 0;
	CHECK_INT(up_deploy_outcome(dir, etag, "rolled_back", detail, why,
				    sizeof why), 0);
	snprintf(path, sizeof path, "%s/%s/.hidden.json", dir,
		 UP_DEPLOY_OUTCOMES);
	f = fopen(path, "w");
	fclose(f);
	CHECK_INT(up_deploy_next_outcome(dir, name, sizeof name), 0);
	CHECK_INT(strlen(name), 25);
	snprintf(path, sizeof path, "%s/%s/%s", dir, UP_DEPLOY_OUTCOMES, name);
	CHECK_INT(up_deploy_read(path, 4096, &b, &n, why, sizeof why), 0);
	cJSON *j = cJSON_Parse(b);
	free(b);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "outcome")),
		  "applied");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "etag")), etag);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "detail")),
		  "fine");
	CHECK(cJSON_IsNumber(cJSON_GetObjectItem(j, "time_ns")));
	cJSON_Delete(j);
	unlink(path);
	CHECK_INT(up_deploy_next_outcome(dir, name, sizeof name), 0);
	snprintf(path, sizeof path, "%s/%s/%s", dir, UP_DEPLOY_OUTCOMES, name);
	CHECK_INT(up_deploy_read(path, 4096, &b, &n, why, sizeof why), 0);
	j = cJSON_Parse(b);
	free(b);
	const char *dt = cJSON_GetStringValue(cJSON_GetObjectItem(j, "detail"));
	CHECK(dt != NULL);
	if (dt) {
		/* x + 511 é (1023 bytes): the half é at byte 1024 dropped */
		CHECK_INT(strlen(dt), UP_DEPLOY_DETAIL - 1);
		CHECK(!strncmp(dt, "x\xc3\xa9", 3));
		CHECK(!strcmp(dt + strlen(dt) - 2, "\xc3\xa9"));
	}
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "outcome")),
		  "rolled_back");
	cJSON_Delete(j);
	unlink(path);
	CHECK_INT(up_deploy_next_outcome(dir, name, sizeof name), TLCM_ENOENT);
	char cmd[200];
	snprintf(cmd, sizeof cmd, "rm -rf %s", base);
	CHECK_INT(system(cmd), 0);
}

int main(void)
{
	tlcm_log_level = TLCM_LOG_ERROR;
	CHECK_INT(tlcm_builtin_nodes(&reg), 0);
	CHECK_INT(tlcm_registry_add(&reg, &boom_type), 0);
	load_text();
	watch_stops();
	watch_failures();
	deploy_dir();
	tlcm_registry_fini(&reg);
	return tlcm_test_done();
}
