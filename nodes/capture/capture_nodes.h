/* capture_nodes.h — the capture node types (nodes/capture/), each emitting
 * Frame messages (schemas/frame.fbs): capture.idx (IDX datasets such as
 * Fashion-MNIST), capture.images (a directory of PNG/JPEG files, watched
 * or not) and capture.v4l2 (a V4L2 camera). docs/nodes.md documents their
 * parameters and errors.
 */
#ifndef TLCM_CAPTURE_NODES_H
#define TLCM_CAPTURE_NODES_H

#include "engine/node.h"

extern const tlcm_node_type_t tlcm_node_capture_idx;
extern const tlcm_node_type_t tlcm_node_capture_images;
extern const tlcm_node_type_t tlcm_node_capture_v4l2;

#endif
