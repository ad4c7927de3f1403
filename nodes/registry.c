/* registry.c — the list of built-in node types (one line per type; each
 * node folder exports one descriptor).
 *
 * Built with TLCM_NODES_ON_DEMAND (the tinylcm binary), the node groups
 * that need heavy libraries (XNNPACK, libpng/libjpeg, libcurl, libsodium,
 * mbed TLS, libmodbus) are not linked in: each is a shared object beside
 * the binary (tinylcm-GROUP.so, built from nodes/module.c) that is
 * dlopen()ed the first time a registry is asked for one of its types, so
 * a graph that names none of them maps none of those libraries
 * (docs/profiles.md, Headless). Tests and benchmarks link every type.
 */
#include "nodes/nodes.h"
#include "nodes/adapt/adapt.h"
#include "nodes/capture/capture_nodes.h"
#include "nodes/drift/drift_nodes.h"
#include "nodes/eval/eval.h"
#include "nodes/features/features.h"
#include "nodes/knn/knn.h"
#include "nodes/link/link.h"
#include "nodes/packager/packager.h"
#include "nodes/quarantine/quarantine.h"
#include "nodes/sensor/sensor.h"
#include "nodes/telemetry/telemetry.h"
#include "nodes/test/test_nodes.h"
#include "nodes/transform/scaler_pca.h"
#include "nodes/core/core.h"
#include "nodes/discovery/discovery.h"
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
#ifndef TLCM_NODES_ON_DEMAND /* on demand: see below */
	&tlcm_node_capture_images,
#endif
#ifndef TLCM_NODES_ON_DEMAND /* on demand: see below */
	&tlcm_node_capture_v4l2,
#endif
#ifndef TLCM_NODES_ON_DEMAND /* on demand: see below */
	&tlcm_node_features_xnnpack,
#endif
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
#ifndef TLCM_NODES_ON_DEMAND /* on demand: see below */
	&tlcm_node_packager,
#endif
	&tlcm_node_metrics,
	&tlcm_node_logs,
	&tlcm_node_sensor_sysfs,
#ifndef TLCM_NODES_ON_DEMAND
	&tlcm_node_sensor_modbus,
#endif
#ifndef TLCM_NODES_ON_DEMAND /* on demand: see below */
	&tlcm_node_uploader,
#endif
#ifndef TLCM_NODES_ON_DEMAND /* on demand: see below */
	&tlcm_node_updater,
#endif
#ifndef TLCM_NODES_ON_DEMAND /* on demand: see below */
	&tlcm_node_core,
#endif
	&tlcm_node_link_tx,
	&tlcm_node_link_rx,
	&tlcm_node_link_ledger,
	&tlcm_node_discovery_announce,
};

#ifdef TLCM_NODES_ON_DEMAND
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/log.h"

/* Which group holds which type (nodes/CMakeLists.txt builds the groups). */
static const struct {
	const char *type, *group;
} on_demand[] = {
	{"capture.images", "capture"},
	{"capture.v4l2", "capture"},
	{"features.xnnpack", "features"},
	{"packager", "net"},
	{"uploader", "net"},
	{"updater", "net"},
	{"core", "net"},
	{"sensor.modbus", "modbus"},
};
#define NDEMAND (sizeof on_demand / sizeof on_demand[0])

/* dlopen handles by group: loaded once per process, never unloaded
 * (descriptors of running graphs point into them). A singleton of the
 * CLI, written only while graphs load on the main thread. */
static struct {
	const char *group;
	void *handle;
} loaded[8];

void *tlcm_nodes_module(const char *group)
{
	size_t i = 0;
	for (; i < 8 && loaded[i].group; i++)
		if (!strcmp(loaded[i].group, group))
			return loaded[i].handle;
	if (i == 8)
		return NULL;
	char dir[PATH_MAX] = "", path[PATH_MAX + 64];
	const char *env = getenv("TINYLCM_MODULE_DIR");
	if (env && *env) {
		snprintf(dir, sizeof dir, "%s", env);
	} else {
		ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
		dir[n > 0 ? n : 0] = 0;
		char *slash = strrchr(dir, '/');
		if (slash)
			*slash = 0;
	}
	snprintf(path, sizeof path, "%s/tinylcm-%s.so", dir, group);
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		tlcm_error("nodes", "cannot load node group '%s': %s (set "
			   "TINYLCM_MODULE_DIR to the directory of "
			   "tinylcm-%s.so)", group, dlerror(), group);
		return NULL;
	}
	loaded[i].group = group;
	loaded[i].handle = h;
	return h;
}

static int add_group(tlcm_registry_t *r, const char *group)
{
	void *h = tlcm_nodes_module(group);
	int (*reg)(tlcm_registry_t *) = NULL;
	if (h)
		*(void **)&reg = dlsym(h, "tlcm_module_nodes");
	if (!reg)
		return TLCM_ENOENT;
	return reg(r);
}

static int resolve(tlcm_registry_t *r, const char *name)
{
	for (size_t i = 0; i < NDEMAND; i++)
		if (!strcmp(on_demand[i].type, name))
			return add_group(r, on_demand[i].group);
	return TLCM_ENOENT;
}

int tlcm_nodes_load_all(tlcm_registry_t *r)
{
	int first = 0;
	for (size_t i = 0; i < NDEMAND; i++)
		if (!tlcm_registry_find(r, on_demand[i].type) && !first)
			first = TLCM_ENOENT;
	return first;
}
#else
void *tlcm_nodes_module(const char *group)
{
	(void)group;
	return NULL;
}

int tlcm_nodes_load_all(tlcm_registry_t *r)
{
	(void)r;
	return 0;
}
#endif

int tlcm_builtin_nodes(tlcm_registry_t *r)
{
#ifdef TLCM_NODES_ON_DEMAND
	r->resolve = resolve;
#endif
	for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++) {
		int rc = tlcm_registry_add(r, builtin[i]);
		if (rc)
			return rc;
	}
	return 0;
}
