/* uploader.h — the uploader family (nodes/uploader/): node `uploader`,
 * which drains the graph store's outbox to the core over HTTP(S)
 * (docs/api.md), pulls ground-truth labels back and manages the link. */
#ifndef TLCM_NODES_UPLOADER_H
#define TLCM_NODES_UPLOADER_H

#include "engine/node.h"

/* uploader: outbox → POST /packages; feedback → LabeledSample (SMPL) on
 * `labels`; link transitions (LINK) on `link`. */
extern const tlcm_node_type_t tlcm_node_uploader;

#endif
