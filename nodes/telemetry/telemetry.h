/* telemetry.h — source nodes that report on the device itself, for the
 * packager (docs/nodes.md#telemetry): `metrics` (engine, node, edge,
 * outbox and process figures as Metrics) and `logs` (the engine's log
 * lines as LogLines, and a rotated local log file). */
#ifndef TLCM_NODES_TELEMETRY_H
#define TLCM_NODES_TELEMETRY_H

#include <stdbool.h>

#include "engine/node.h"

extern const tlcm_node_type_t tlcm_node_metrics;
extern const tlcm_node_type_t tlcm_node_logs;

/* `finish: with_graph`: true once every node that is neither downstream
 * of the caller nor another telemetry source has finished (so a graph
 * whose work is done ends, telemetry included). False while there is no
 * such node, and in an isolated node's process. */
bool tlcm_telemetry_graph_done(tlcm_ctx_t *ctx);

#endif
