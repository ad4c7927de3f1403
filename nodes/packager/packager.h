/* packager.h — node `packager`: messages → packages in the outbox
 * (docs/nodes.md#packager, docs/api.md). */
#ifndef TLCM_NODES_PACKAGER_H
#define TLCM_NODES_PACKAGER_H

#include "engine/node.h"

extern const tlcm_node_type_t tlcm_node_packager;

#endif
