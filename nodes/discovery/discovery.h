/* discovery.h — the discovery family (nodes/discovery/): node
 * `discovery.announce`, which publishes this core as a DNS-SD service over
 * mDNS; browsing is a library call (discover.h) and `tinylcm discover`. */
#ifndef TLCM_NODES_DISCOVERY_H
#define TLCM_NODES_DISCOVERY_H

#include "engine/node.h"

/* discovery.announce: no ports; announces while the graph runs. */
extern const tlcm_node_type_t tlcm_node_discovery_announce;

#endif
