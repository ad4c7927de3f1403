/* test_nodes.h — the engine's test node types: gen, sink, tee, rate, file. */
#ifndef TLCM_TEST_NODES_H
#define TLCM_TEST_NODES_H

#include "engine/node.h"

extern const tlcm_node_type_t tlcm_node_gen;
extern const tlcm_node_type_t tlcm_node_sink;
extern const tlcm_node_type_t tlcm_node_tee;
extern const tlcm_node_type_t tlcm_node_rate;
extern const tlcm_node_type_t tlcm_node_file;

/* FNV-1a 32-bit, the Blob checksum. */
uint32_t tlcm_fnv1a(const void *data, size_t n);

#endif
