/* knn.h — the KNN family (nodes/knn/): node `knn`, a k-nearest-neighbour
 * classifier over Features messages (index.h is the graph-free index). */
#ifndef TLCM_NODES_KNN_H
#define TLCM_NODES_KNN_H

#include "engine/node.h"

/* knn: Features (FEAT) to Predictions (PRED); learns from `samples`. */
extern const tlcm_node_type_t tlcm_node_knn;

#endif
