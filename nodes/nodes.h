/* nodes.h — every built-in node type, for the programs that run graphs. */
#ifndef TLCM_NODES_H
#define TLCM_NODES_H

#include "engine/graph.h"

/* Register all built-in node types. */
int tlcm_builtin_nodes(tlcm_registry_t *r);

#endif
