/* sched.h — running a graph: rings for edges, contexts for nodes, worker
 * threads, timers, end of stream and shutdown.
 *
 * tlcm_graph_run() creates one ring per edge and one context per node,
 * calls every node's init, and runs the graph on a pool of workers (plus a
 * thread for each `thread: own` node) until every node has finished — all
 * sources done and everything drained — or a stop is requested (signal,
 * duration), which stops the sources and drains the rest. Scheduling: a
 * node is queued when an input has data, its tick is due, or (for a
 * free-running source) its outputs have room; a queued node runs one batch
 * at a time on one thread; among queued nodes the most downstream runs
 * first, so queues stay short. A node whose `block` output is nearly full
 * is not run until the consumer frees space (back-pressure).
 */
#ifndef TLCM_SCHED_H
#define TLCM_SCHED_H

#include "engine/graph.h"

/* How a running graph is doing, for a watch (below). */
typedef struct tlcm_run_health {
	double seconds;          /* since the nodes started */
	int status;              /* the error that stops the graph, 0 none */
	const char *why;         /* status's reason, else the first failed
				    node's ("" when healthy); valid during
				    the call */
	size_t failed;           /* nodes stopped by an error (on_error:
				    stop) */
	uint64_t restarts;       /* node restarts (on_error: restart) */
	unsigned stop_requests;  /* signals and tlcm_request_stop() calls
				    this run has seen */
	bool stopping;           /* the graph is stopping (draining) */
} tlcm_run_health_t;

/* A watch is called on the thread of tlcm_graph_run(), about four times
 * a second while the graph runs (and once more as it ends), never at the
 * same time as itself. Returning true asks the graph to stop and drain,
 * as a first signal does (without counting as one). The deployment
 * runner (tinylcm run --deploy-dir) swaps graphs and judges a new one's
 * health with it. */
typedef bool (*tlcm_run_watch_fn)(void *arg, const tlcm_run_health_t *h);

typedef struct tlcm_run_opts {
	double duration_s;   /* > 0: stop (and drain) after this long */
	bool handle_signals; /* SIGINT/SIGTERM drain; a second one aborts */
	bool quiet;          /* no end-of-run summary */
	bool headless;       /* no introspection endpoint */
	bool standby;        /* the store is in use (another process holds
				its lock): wait until it is free, then run
				(a standby core taking over a primary's
				store, docs/link.md) */
	tlcm_run_watch_fn watch; /* NULL: none */
	void *watch_arg;
} tlcm_run_opts_t;

typedef struct tlcm_node_stats {
	uint64_t in, out, dropped, errors, restarts;
	/* wall time in process() and tick() (not in the consumers a node
	 * ran to make room on a full edge); 0 for `isolate: process` nodes,
	 * whose counters live in their child process */
	uint64_t busy_ns;
} tlcm_node_stats_t;

typedef struct tlcm_run_result {
	int status;           /* 0, or the error that stopped the graph */
	char why[512];        /* what failed, naming the node */
	/* From the nodes' start to their end (not the store's opening, the
	 * nodes' init and restore, the shutdown snapshots): wall seconds,
	 * and the process's CPU seconds (every thread, RocksDB's too). */
	double seconds, cpu_seconds;
	size_t nnodes;
	tlcm_node_stats_t *nodes; /* per graph node */
	size_t nedges;
	tlcm_ring_stats_t *edges; /* per graph edge, at the end of the run */
} tlcm_run_result_t;

int tlcm_graph_run(const tlcm_graph_t *g, const tlcm_run_opts_t *o,
		   tlcm_run_result_t *res);
void tlcm_run_result_fini(tlcm_run_result_t *res);

/* Ask the running graph to stop and drain (async-signal-safe). */
void tlcm_request_stop(void);

#endif
