/* link.h — satellite links (docs/link.md): link.tx on a satellite sends
 * any messages to link.rx on a core over NNG streams, with a durable
 * queue, cumulative acks after persistence and de-duplication by
 * (satellite, sequence); link.ledger is a durable, de-duplicating consumer
 * of what link.rx delivers (tests, audits).
 *
 * Shared pieces: wire.h (frames, streams, TLS), txq.h (the satellite's
 * queue), sender.h and receiver.h (the two ends, usable without a graph:
 * bench/bench_link.c).
 */
#ifndef TLCM_LINK_H
#define TLCM_LINK_H

#include "engine/node.h"

extern const tlcm_node_type_t tlcm_node_link_tx;
extern const tlcm_node_type_t tlcm_node_link_rx;
extern const tlcm_node_type_t tlcm_node_link_ledger;

#endif
