/* registry.c — the list of built-in node types (one line per type; each
 * node folder exports one descriptor). */
#include "nodes/nodes.h"
#include "nodes/test/test_nodes.h"

static const tlcm_node_type_t *const builtin[] = {
	&tlcm_node_gen,
	&tlcm_node_sink,
	&tlcm_node_tee,
	&tlcm_node_rate,
	&tlcm_node_file,
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
