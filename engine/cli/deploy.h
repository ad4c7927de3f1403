/* deploy.h — `tinylcm run --deploy-dir`: the graph runner that swaps in
 * deployed graphs with a grace period and rollback (deploy.c). */
#ifndef TLCM_CLI_DEPLOY_H
#define TLCM_CLI_DEPLOY_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/graph.h"

typedef struct tlcm_cli_deploy_opts {
	const char *file;           /* the graph of the command line */
	const char *dir;            /* --deploy-dir */
	double grace;               /* --grace, seconds */
	const char *const *sets;    /* --set, for every graph run */
	size_t nsets;
	double duration;            /* --duration over all graphs (0: none) */
	bool quiet, headless;
	const tlcm_registry_t *reg; /* the node types */
} tlcm_cli_deploy_opts_t;

/* Run until the graph ends, a signal or --duration; the exit status. */
int tlcm_cli_deploy_run(const tlcm_cli_deploy_opts_t *o);

#endif
