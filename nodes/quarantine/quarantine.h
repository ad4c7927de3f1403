/* quarantine.h — node type `quarantine`: keeps the samples the classifier
 * was unsure about for the adapter (see quarantine.c, docs/nodes.md). */
#ifndef TLCM_NODES_QUARANTINE_H
#define TLCM_NODES_QUARANTINE_H

#include "engine/node.h"

extern const tlcm_node_type_t tlcm_node_quarantine;

#endif
