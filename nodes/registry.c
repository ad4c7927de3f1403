/* registry.c — the list of built-in node types (one line per type; each
 * node folder exports one descriptor). */
#include "nodes/nodes.h"
#include "nodes/adapt/adapt.h"
#include "nodes/capture/capture_nodes.h"
#include "nodes/drift/drift_nodes.h"
#include "nodes/eval/eval.h"
#include "nodes/features/features.h"
#include "nodes/knn/knn.h"
#include "nodes/packager/packager.h"
#include "nodes/quarantine/quarantine.h"
#include "nodes/telemetry/telemetry.h"
#include "nodes/test/test_nodes.h"
#include "nodes/transform/scaler_pca.h"
#include "nodes/core/core.h"
#include "nodes/uploader/uploader.h"
#include "nodes/updater/updater.h"

static const tlcm_node_type_t *const builtin[] = {
	&tlcm_node_gen,
	&tlcm_node_sink,
	&tlcm_node_tee,
	&tlcm_node_rate,
	&tlcm_node_file,
	&tlcm_node_scaler_pca,
	&tlcm_node_capture_idx,
	&tlcm_node_capture_images,
	&tlcm_node_capture_v4l2,
	&tlcm_node_features_xnnpack,
	&tlcm_node_drift_knn_distance,
	&tlcm_node_drift_confidence,
	&tlcm_node_drift_page_hinkley,
	&tlcm_node_drift_adwin,
	&tlcm_node_drift_kswin,
	&tlcm_node_drift_prediction_distribution,
	&tlcm_node_knn,
	&tlcm_node_quarantine,
	&tlcm_node_adapt_heuristic,
	&tlcm_node_eval_scenario,
	&tlcm_node_packager,
	&tlcm_node_metrics,
	&tlcm_node_logs,
	&tlcm_node_uploader,
	&tlcm_node_updater,
	&tlcm_node_core,
};

int tlcm_builtin_nodes(tlcm_registry_t *r)
{
	for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++) {
		int rc = tlcm_registry_add(r, builtin[i]);
		if (rc)
			return rc;
	}
	return 0;
}
