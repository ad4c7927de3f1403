/* metrics.c — node `metrics`: the device's figures as Metrics messages
 * (schemas/metrics.fbs) every `interval`, for the packager.
 *
 * Keys are dotted paths: graph.* (name, uptime, nodes, edges), process.*
 * (RSS, CPU seconds and share since the last report, threads, from
 * /proc/self and getrusage), node.<id>.* and edge.<from>:<port>-><to>:
 * <port>.* (the engine's live counters, tlcm_graph_nodes/edges: what
 * introspection shows), outbox.* (the store's outbox: packages, bytes,
 * per priority, dead letters, evictions), plus fixed `extra` entries.
 * Every message is complete (full: true); the packager makes them
 * incremental. With `finish: with_graph` the node sends a last report
 * and ends when the graph's work is done (telemetry.h), so a graph that
 * ends still ends.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "engine/log.h"
#include "engine/outbox.h"
#include "fb/metrics_fb.h"
#include "nodes/telemetry/telemetry.h"

typedef struct {
	uint64_t interval_ns, count, sent, seq;
	uint64_t next_ns, t0_ns;
	bool with_graph;
	unsigned include; /* I_* */
	double last_cpu;
	uint64_t last_cpu_ns;
} metrics_t;

enum { I_GRAPH = 1, I_PROCESS = 2, I_NODES = 4, I_EDGES = 8, I_OUTBOX = 16 };

static const tlcm_port_desc_t outputs[] = {
	{"out", "TMET", "a complete Metrics every interval", 0},
	{0},
};

static const tlcm_param_desc_t params[] = {
	{"interval", TLCM_P_DURATION, "10s", "time between reports", 1000000,
	 86400e9, NULL, TLCM_PARAM_PERIOD},
	{"include", TLCM_P_LIST, "graph,process,nodes,edges,outbox", "what "
	 "to report: graph, process, nodes, edges, outbox", 0, 0, NULL, 0},
	{"extra", TLCM_P_LIST, "", "fixed entries \"key=value\" (a number "
	 "when it parses as one, else text), e.g. site=kitchen", 0, 0, NULL,
	 0},
	{"finish", TLCM_P_ENUM, "with_graph", "with_graph: a last report and "
	 "end when every node that is not downstream (nor telemetry) has "
	 "finished; never: until the graph stops", 0, 0,
	 "with_graph|never", 0},
	{"count", TLCM_P_INT, "0", "end after this many reports (0: no "
	 "limit)", 0, 0, NULL, 0},
	{0},
};

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int init(tlcm_ctx_t *ctx, void *st)
{
	metrics_t *m = st;
	m->interval_ns = tlcm_param_duration_ns(ctx, "interval");
	m->count = (uint64_t)tlcm_param_int(ctx, "count");
	m->with_graph = !strcmp(tlcm_param_str(ctx, "finish"), "with_graph");
	const char *const *it;
	size_t n = tlcm_param_list(ctx, "include", &it);
	static const char *const names[] = {"graph", "process", "nodes",
					    "edges", "outbox"};
	for (size_t i = 0; i < n; i++) {
		size_t j = 0;
		while (j < 5 && strcmp(it[i], names[j]))
			j++;
		if (j == 5) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "include: unknown "
				      "'%s' (expected graph, process, nodes, "
				      "edges, outbox)", it[i]);
			return TLCM_EINVAL;
		}
		m->include |= 1u << j;
	}
	n = tlcm_param_list(ctx, "extra", &it);
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(it[i], '=');
		if (!eq || eq == it[i] || eq - it[i] > 200) {
			tlcm_node_log(ctx, TLCM_LOG_ERROR, "extra: '%s': "
				      "expected key=value (a key of 1 to 200 "
				      "bytes)", it[i]);
			return TLCM_EINVAL;
		}
	}
	m->t0_ns = tlcm_now_ns();
	m->next_ns = m->t0_ns + m->interval_ns;
	/* short ticks so that `finish: with_graph` ends promptly */
	uint64_t tick = m->interval_ns < 200000000u ? m->interval_ns
						    : 200000000u;
	tlcm_set_tick(ctx, tick);
	return 0;
}

/* ---- building -------------------------------------------------------- */

typedef struct {
	tlcm_fbb_t *b;
	tlcm_fbb_ref_t *refs;
	size_t n, cap;
	bool oom;
} ents_t;

static void put(ents_t *e, const char *key, const char *str, double num)
{
	if (e->oom)
		return;
	if (e->n == e->cap) {
		size_t nc = e->cap ? 2 * e->cap : 128;
		tlcm_fbb_ref_t *r = realloc(e->refs, nc * sizeof *r);
		if (!r) {
			e->oom = true;
			return;
		}
		e->refs = r;
		e->cap = nc;
	}
	tlcm_fbb_ref_t k = tlcm_fbb_cstring(e->b, key);
	tlcm_fbb_ref_t s = str ? tlcm_fbb_cstring(e->b, str) : 0;
	tlcm_MetricEntry_start(e->b);
	tlcm_MetricEntry_add_key(e->b, k);
	if (s)
		tlcm_MetricEntry_add_str(e->b, s);
	else
		tlcm_MetricEntry_add_num(e->b, num);
	e->refs[e->n++] = tlcm_MetricEntry_end(e->b);
}

static void putf(ents_t *e, double num, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void putf(ents_t *e, double num, const char *fmt, ...)
{
	char key[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(key, sizeof key, fmt, ap);
	va_end(ap);
	put(e, key, NULL, num);
}

static void process_figures(metrics_t *m, ents_t *e, uint64_t now)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		     (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	put(e, "process.cpu_seconds", NULL, cpu);
	if (m->last_cpu_ns && now > m->last_cpu_ns)
		put(e, "process.cpu_percent", NULL,
		    100.0 * (cpu - m->last_cpu) /
			    ((double)(now - m->last_cpu_ns) / 1e9));
	m->last_cpu = cpu;
	m->last_cpu_ns = now;
	put(e, "process.max_rss_bytes", NULL, (double)ru.ru_maxrss * 1024.0);
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long pages, res;
	if (f && fscanf(f, "%lu %lu", &pages, &res) == 2)
		put(e, "process.rss_bytes", NULL,
		    (double)res * (double)sysconf(_SC_PAGESIZE));
	if (f)
		fclose(f);
	f = fopen("/proc/self/status", "r");
	char line[256];
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "Threads:", 8)) {
			put(e, "process.threads", NULL, atof(line + 8));
			break;
		}
	if (f)
		fclose(f);
	put(e, "process.pid", NULL, (double)getpid());
}

static void node_figures(tlcm_ctx_t *ctx, ents_t *e)
{
	size_t n = tlcm_graph_nodes(ctx, NULL, 0);
	tlcm_node_figures_t *f = malloc((n ? n : 1) * sizeof *f);
	if (!f) {
		e->oom = true;
		return;
	}
	n = tlcm_graph_nodes(ctx, f, n);
	for (size_t i = 0; i < n; i++) {
		const char *id = f[i].id;
		char key[256];
		snprintf(key, sizeof key, "node.%s.state", id);
		put(e, key, f[i].state, 0);
		snprintf(key, sizeof key, "node.%s.type", id);
		put(e, key, f[i].type, 0);
		putf(e, (double)f[i].in, "node.%s.in", id);
		putf(e, (double)f[i].out, "node.%s.out", id);
		putf(e, (double)f[i].dropped, "node.%s.dropped", id);
		putf(e, (double)f[i].errors, "node.%s.errors", id);
		putf(e, (double)f[i].restarts, "node.%s.restarts", id);
		putf(e, (double)f[i].batches, "node.%s.batches", id);
		putf(e, (double)f[i].busy_ns, "node.%s.busy_ns", id);
	}
	free(f);
}

static void edge_figures(tlcm_ctx_t *ctx, ents_t *e)
{
	size_t n = tlcm_graph_edges(ctx, NULL, 0);
	tlcm_edge_figures_t *f = malloc((n ? n : 1) * sizeof *f);
	if (!f) {
		e->oom = true;
		return;
	}
	n = tlcm_graph_edges(ctx, f, n);
	for (size_t i = 0; i < n; i++) {
		char id[200];
		snprintf(id, sizeof id, "edge.%s:%s->%s:%s", f[i].from,
			 f[i].from_port, f[i].to, f[i].to_port);
		putf(e, (double)f[i].used, "%s.used_bytes", id);
		putf(e, (double)f[i].capacity, "%s.capacity", id);
		putf(e, (double)f[i].messages, "%s.messages", id);
		putf(e, (double)f[i].bytes, "%s.bytes", id);
		putf(e, (double)f[i].dropped, "%s.dropped", id);
		putf(e, (double)f[i].full, "%s.full", id);
	}
	free(f);
}

static void outbox_figures(tlcm_ctx_t *ctx, ents_t *e)
{
	struct tlcm_store *s = tlcm_graph_store(ctx);
	tlcm_outbox_t *o = s ? tlcm_store_outbox(s) : NULL;
	tlcm_outbox_stats_t st;
	if (!o || tlcm_outbox_stats(o, &st))
		return;
	put(e, "outbox.packages", NULL, (double)st.packages);
	put(e, "outbox.bytes", NULL, (double)st.bytes);
	put(e, "outbox.dead", NULL, (double)st.dead);
	put(e, "outbox.evicted", NULL, (double)st.evicted);
	put(e, "outbox.oldest_ns", NULL, (double)st.oldest_ns);
	for (int p = 1; p < 8; p++)
		putf(e, (double)st.by_priority[p], "outbox.priority.%d", p);
	put(e, "outbox.priority.above_7", NULL, (double)st.by_priority[0]);
}

static void extra(tlcm_ctx_t *ctx, ents_t *e)
{
	const char *const *it;
	size_t n = tlcm_param_list(ctx, "extra", &it);
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(it[i], '=');
		char key[256];
		snprintf(key, sizeof key, "%.*s", (int)(eq - it[i]), it[i]);
		char *end;
		double v = strtod(eq + 1, &end);
		if (end != eq + 1 && !*end)
			put(e, key, NULL, v);
		else
			put(e, key, eq + 1, 0);
	}
}

static int report(tlcm_ctx_t *ctx, metrics_t *m, uint64_t mono)
{
	tlcm_fbb_t b;
	int rc = tlcm_fbb_init(&b, 16384);
	if (rc)
		return rc;
	ents_t e = {.b = &b};
	if (m->include & I_GRAPH) {
		put(&e, "graph.name", tlcm_graph_name(ctx), 0);
		put(&e, "graph.uptime_s", NULL,
		    (double)(mono - m->t0_ns) / 1e9);
		put(&e, "graph.nodes", NULL,
		    (double)tlcm_graph_nodes(ctx, NULL, 0));
		put(&e, "graph.edges", NULL,
		    (double)tlcm_graph_edges(ctx, NULL, 0));
	}
	if (m->include & I_PROCESS)
		process_figures(m, &e, mono);
	if (m->include & I_NODES)
		node_figures(ctx, &e);
	if (m->include & I_EDGES)
		edge_figures(ctx, &e);
	if (m->include & I_OUTBOX)
		outbox_figures(ctx, &e);
	extra(ctx, &e);
	if (e.oom) {
		free(e.refs);
		tlcm_fbb_fini(&b);
		return TLCM_ENOMEM;
	}
	tlcm_fbb_ref_t v = tlcm_Metrics_entries_create(&b, e.refs, e.n);
	free(e.refs);
	tlcm_fbb_ref_t src = tlcm_fbb_cstring(&b, tlcm_node_id(ctx));
	tlcm_Metrics_start(&b);
	tlcm_Metrics_add_time_ns(&b, wall_ns());
	tlcm_Metrics_add_source(&b, src);
	tlcm_Metrics_add_seq(&b, ++m->seq);
	tlcm_Metrics_add_entries(&b, v);
	size_t len;
	const void *d = tlcm_Metrics_finish(&b, tlcm_Metrics_end(&b), &len);
	rc = d ? tlcm_emit(ctx, 0, tlcm_Metrics_IDENTIFIER, d, len)
	       : tlcm_fbb_error(&b);
	tlcm_fbb_fini(&b);
	if (rc == TLCM_EAGAIN)
		rc = 0; /* the edge dropped it: counted there */
	if (!rc)
		m->sent++;
	else
		tlcm_node_log(ctx, TLCM_LOG_WARN, "cannot send metrics (%zu "
			      "entries): %s", e.n, tlcm_strerror(rc));
	return rc;
}

static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	metrics_t *m = st;
	bool last = tlcm_stopping(ctx) ||
		    (m->with_graph && tlcm_telemetry_graph_done(ctx));
	if (now >= m->next_ns || last) {
		m->next_ns = now + m->interval_ns;
		report(ctx, m, now);
		if (m->count && m->sent >= m->count)
			return TLCM_ECLOSED;
	}
	return last ? TLCM_ECLOSED : 0;
}

const tlcm_node_type_t tlcm_node_metrics = {
	.name = "metrics",
	.doc = "engine, node, edge, outbox and process figures as Metrics "
	       "every interval",
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(metrics_t),
	.init = init,
	.tick = tick,
};
