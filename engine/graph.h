/* graph.h — graph files: node type registry, parameters, loading,
 * validation and Graphviz output.
 *
 * A graph file (YAML) names nodes — instances of registered node types with
 * parameters — and edges between their ports:
 *
 *   graph: demo
 *   settings: { workers: 2, store: ./var/demo }
 *   nodes:
 *     src:  { type: gen, params: { rate_hz: 1000, count: 10000 } }
 *     sink: { type: sink }
 *   edges:
 *     - { from: src.out, to: sink.in, capacity: 64KiB, policy: block }
 *
 * tlcm_graph_load() checks everything before anything runs and collects
 * every problem as "file:line:col: what is wrong, what was expected".
 * Values may use ${VAR} and ${VAR:-default}; `--set node.param=value`
 * overrides parameters.
 */
#ifndef TLCM_GRAPH_H
#define TLCM_GRAPH_H

#include <stdio.h>

#include "engine/node.h"

/* ---- registry ---- */

typedef struct tlcm_registry {
	const tlcm_node_type_t **types;
	size_t n, cap;
	/* Optional: called by tlcm_registry_find() for a name not (yet)
	 * registered, to add it on demand (nodes/registry.c loads a node
	 * group's shared object); 0 when it added something. So a lookup
	 * may grow a registry passed as const. */
	int (*resolve)(struct tlcm_registry *r, const char *name);
} tlcm_registry_t;

int tlcm_registry_add(tlcm_registry_t *r, const tlcm_node_type_t *t);
const tlcm_node_type_t *tlcm_registry_find(const tlcm_registry_t *r,
					   const char *name);
void tlcm_registry_fini(tlcm_registry_t *r);
/* The candidate closest to name (edit distance ≤ 2 or a prefix), or NULL. */
const char *tlcm_suggest(const char *name, const char *const *cands,
			 size_t n);

/* ---- parameter values ---- */

typedef struct tlcm_pval {
	const tlcm_param_desc_t *d;
	char *text;     /* as written (or the default) */
	int64_t i;      /* int */
	double f;       /* float */
	bool b;         /* bool */
	uint64_t u;     /* duration (ns), size (bytes) */
	char **list;    /* list */
	size_t nlist;
	bool given;     /* set in the graph file or with --set */
	unsigned char from; /* TLCM_FROM_*: where the value came from */
} tlcm_pval_t;

/* Where a parameter's value came from; later ones win (profile.h). */
enum { TLCM_FROM_DEFAULT, TLCM_FROM_PROFILE, TLCM_FROM_FILE, TLCM_FROM_SET };
const char *tlcm_pval_from_name(unsigned from);

/* Parse text as a value of d; on error returns TLCM_EINVAL and says why. */
int tlcm_param_parse(const tlcm_param_desc_t *d, const char *text,
		     tlcm_pval_t *out, char *why, size_t whylen);
void tlcm_pval_clear(tlcm_pval_t *v);
/* Text for people: the value, or "***" for secrets. */
const char *tlcm_param_display(const tlcm_pval_t *v);
const char *tlcm_param_type_name(tlcm_param_type_t t);
int tlcm_parse_duration(const char *s, uint64_t *ns);
int tlcm_parse_size(const char *s, uint64_t *bytes);

/* ---- graphs ---- */

typedef enum {
	TLCM_ON_ERROR_STOP,
	TLCM_ON_ERROR_SKIP,
	TLCM_ON_ERROR_RESTART,
} tlcm_on_error_t;

typedef struct tlcm_gnode {
	char *id;
	const tlcm_node_type_t *type;
	tlcm_pval_t *params; /* in descriptor order */
	size_t nparams;
	size_t nin, nout;    /* declared ports; input nin is `control` */
	bool own_thread;
	bool isolate;        /* run in a supervised child process */
	int cpu;             /* -1: any */
	tlcm_on_error_t on_error;
	int line, col;
} tlcm_gnode_t;

typedef struct tlcm_gedge {
	size_t from, from_port, to, to_port;
	size_t capacity;
	tlcm_edge_policy_t policy;
	bool feedback;
	bool capacity_given; /* in the file (else the profile's default) */
	int line, col;
} tlcm_gedge_t;

typedef struct tlcm_graph {
	char *name;
	char *file;
	int workers;     /* 0: one per core */
	char *store;     /* NULL: none */
	bool fresh_store; /* destroy the store at start (demos, evaluations) */
	int sync;        /* tlcm_sync_t (engine/store.h) */
	uint64_t sync_interval; /* ns, for sync: batch */
	unsigned keep;   /* snapshot versions kept per node */
	char *introspect; /* URL, "off", or NULL for the default */
	bool profiled;   /* loaded with a profile's defaults (profile.h) */
	int profile;     /* that tlcm_profile_t, when profiled */
	bool workers_given; /* settings.workers in the file */
	tlcm_gnode_t *nodes;
	size_t nnodes;
	tlcm_gedge_t *edges;
	size_t nedges;
} tlcm_graph_t;

/* Collected problems, each "file:line:col: message". */
typedef struct tlcm_diag {
	char **msgs;
	size_t n;
} tlcm_diag_t;

void tlcm_diag_add(tlcm_diag_t *d, const char *file, int line, int col,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void tlcm_diag_print(const tlcm_diag_t *d, FILE *f);
void tlcm_diag_fini(tlcm_diag_t *d);

#define TLCM_CONTROL_PORT "control"
#define TLCM_DEFAULT_EDGE_CAPACITY (64 * 1024)

/* Load and validate. sets are "node.param=value" overrides. On failure
 * returns TLCM_EPARSE (or TLCM_ENOENT for a missing file) with diag
 * filled. */
int tlcm_graph_load(tlcm_graph_t **out, const char *path,
		    const tlcm_registry_t *reg, const char *const *sets,
		    size_t nsets, tlcm_diag_t *diag);
/* The same for a graph file's text in memory (len bytes; name stands for
 * the file in messages and g->file). With env false, ${VAR:-default} is
 * its default and ${VAR} without one is a problem: a graph checked away
 * from the environment it will run in (the core checking a graph it
 * deploys, nodes/core/deploy.c). */
int tlcm_graph_load_text(tlcm_graph_t **out, const char *name,
			 const char *text, size_t len,
			 const tlcm_registry_t *reg, bool env,
			 tlcm_diag_t *diag);
void tlcm_graph_free(tlcm_graph_t *g);
/* Graphviz dot of the graph (secrets masked). */
void tlcm_graph_dot(const tlcm_graph_t *g, FILE *f);
/* Every effective setting, edge capacity and parameter with where it
 * came from (default, profile, file, --set): `tinylcm check --effective`. */
void tlcm_graph_print_effective(const tlcm_graph_t *g, FILE *f);
/* Port name of input i of node n (including the implicit control port). */
const char *tlcm_gnode_input_name(const tlcm_gnode_t *n, size_t i);

#endif
