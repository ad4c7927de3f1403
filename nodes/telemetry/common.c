/* common.c — what the telemetry sources share: knowing when the rest of
 * the graph is done (telemetry.h). Reachability over the edges from the
 * caller, from the engine's live figures (tlcm_graph_nodes/edges).
 * Feedback edges are back edges and are not followed: once an uploader
 * hands the core's labels to the adapter (metrics -> pack -> up -> adapt,
 * then adapt => knn, scenario back), following them would put the whole
 * learning loop downstream, and the node would wait for nothing but
 * itself while the loop waited for it. */
#include <stdlib.h>
#include <string.h>

#include "nodes/telemetry/telemetry.h"

static size_t index_of(const tlcm_node_figures_t *n, size_t nn, const char *id)
{
	for (size_t i = 0; i < nn; i++)
		if (!strcmp(n[i].id, id))
			return i;
	return nn;
}

static bool is_telemetry(const char *type)
{
	return !strcmp(type, tlcm_node_metrics.name) ||
	       !strcmp(type, tlcm_node_logs.name);
}

bool tlcm_telemetry_graph_done(tlcm_ctx_t *ctx)
{
	size_t nn = tlcm_graph_nodes(ctx, NULL, 0);
	size_t ne = tlcm_graph_edges(ctx, NULL, 0);
	if (!nn)
		return false;
	tlcm_node_figures_t *n = malloc(nn * sizeof *n);
	tlcm_edge_figures_t *e = malloc((ne ? ne : 1) * sizeof *e);
	bool *down = calloc(nn, 1);
	bool done = false;
	if (!n || !e || !down)
		goto out;
	nn = tlcm_graph_nodes(ctx, n, nn);
	ne = tlcm_graph_edges(ctx, e, ne);
	size_t self = index_of(n, nn, tlcm_node_id(ctx));
	if (self == nn)
		goto out;
	down[self] = true;
	for (bool more = true; more;) { /* fixpoint: graphs are small */
		more = false;
		for (size_t i = 0; i < ne; i++) {
			size_t f = index_of(n, nn, e[i].from);
			size_t t = index_of(n, nn, e[i].to);
			if (!e[i].feedback && f < nn && t < nn && down[f] &&
			    !down[t])
				down[t] = more = true;
		}
	}
	size_t others = 0, finished = 0;
	for (size_t i = 0; i < nn; i++) {
		if (down[i] || is_telemetry(n[i].type))
			continue;
		others++;
		finished += strcmp(n[i].state, "running") != 0;
	}
	done = others && finished == others;
out:
	free(n);
	free(e);
	free(down);
	return done;
}
