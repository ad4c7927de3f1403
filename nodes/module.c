/* module.c — the entry point of an on-demand node group's shared object
 * (nodes/registry.c dlopen()s tinylcm-GROUP.so and calls
 * tlcm_module_nodes). Built once per group with TLCM_MODULE_GROUP set to
 * 1 capture, 2 features, 3 net, 4 modbus (nodes/CMakeLists.txt). */
#include "nodes/nodes.h"
#include "nodes/capture/capture_nodes.h"
#include "nodes/core/core.h"
#include "nodes/features/features.h"
#include "nodes/packager/packager.h"
#include "nodes/sensor/sensor.h"
#include "nodes/updater/updater.h"
#include "nodes/uploader/uploader.h"

static const tlcm_node_type_t *const types[] = {
#if TLCM_MODULE_GROUP == 1
	&tlcm_node_capture_images,
	&tlcm_node_capture_v4l2,
#elif TLCM_MODULE_GROUP == 2
	&tlcm_node_features_xnnpack,
#elif TLCM_MODULE_GROUP == 3
	&tlcm_node_packager,
	&tlcm_node_uploader,
	&tlcm_node_updater,
	&tlcm_node_core,
#elif TLCM_MODULE_GROUP == 4
	&tlcm_node_sensor_modbus,
#else
#error "TLCM_MODULE_GROUP must be 1..4"
#endif
};

int tlcm_module_nodes(tlcm_registry_t *r);

int tlcm_module_nodes(tlcm_registry_t *r)
{
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		int rc = tlcm_registry_add(r, types[i]);
		if (rc)
			return rc;
	}
	return 0;
}
