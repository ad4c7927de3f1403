/* drift_nodes.h — the drift detector node types (nodes/drift/): each reads
 * Prediction messages and emits DriftEvent Start/End messages. */
#ifndef TLCM_DRIFT_NODES_H
#define TLCM_DRIFT_NODES_H

#include "engine/node.h"

extern const tlcm_node_type_t tlcm_node_drift_knn_distance;
extern const tlcm_node_type_t tlcm_node_drift_confidence;
extern const tlcm_node_type_t tlcm_node_drift_page_hinkley;
extern const tlcm_node_type_t tlcm_node_drift_adwin;
extern const tlcm_node_type_t tlcm_node_drift_kswin;
extern const tlcm_node_type_t tlcm_node_drift_prediction_distribution;

#endif
