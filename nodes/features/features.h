/* features.h — the node types of the features family (nodes/features/). */
#ifndef TLCM_NODES_FEATURES_H
#define TLCM_NODES_FEATURES_H

#include "engine/node.h"

/* features.xnnpack: frames (FRAM) to features (FEAT) on XNNPACK. */
extern const tlcm_node_type_t tlcm_node_features_xnnpack;

#endif
