/* nodes.h — every built-in node type, for the programs that run graphs. */
#ifndef TLCM_NODES_H
#define TLCM_NODES_H

#include "engine/graph.h"

/* Register all built-in node types. In the tinylcm binary the heavy
 * groups are registered on demand (registry.c): a lookup of one of their
 * types loads the group's shared object. */
int tlcm_builtin_nodes(tlcm_registry_t *r);
/* Load every on-demand group into r (`tinylcm nodes`): 0, or TLCM_ENOENT
 * when one could not be loaded (logged). A no-op where all are linked. */
int tlcm_nodes_load_all(tlcm_registry_t *r);
/* The dlopen handle of group's shared object, loading it (NULL, logged,
 * when it cannot be; always NULL where every type is linked in). */
void *tlcm_nodes_module(const char *group);

#endif
