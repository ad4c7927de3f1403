/* adapt.h — node type `adapt.heuristic`: learn new classes from the
 * quarantine without ground truth, validated, with rollback (see
 * heuristic.c, docs/nodes.md "Heuristic adaptation"). */
#ifndef TLCM_NODES_ADAPT_H
#define TLCM_NODES_ADAPT_H

#include "engine/node.h"

extern const tlcm_node_type_t tlcm_node_adapt_heuristic;

#endif
