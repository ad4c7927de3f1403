/* eval.h — evaluation node types: play a labelled dataset as a scenario
 * through a graph and score what the graph did with it. */
#ifndef TLCM_EVAL_H
#define TLCM_EVAL_H

#include "engine/node.h"

extern const tlcm_node_type_t tlcm_node_eval_scenario;

#endif
