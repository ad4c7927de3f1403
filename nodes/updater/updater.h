/* updater.h — the updater family (nodes/updater/): node `updater`, which
 * keeps one model file current from the core's signed offers
 * (docs/api.md, POST /models/available; docs/models.md, "Signed
 * updates") and hot-reloads the node that runs it. */
#ifndef TLCM_NODES_UPDATER_H
#define TLCM_NODES_UPDATER_H

#include "engine/node.h"

/* updater: control (CTRL) out to the model's consumer, ModelEvents
 * (MEVT) out on `events`; the consumer's ModelEvents in on `status`, any
 * message on `check` checks now. */
extern const tlcm_node_type_t tlcm_node_updater;

#endif
