/* test_unique_id.c — tlcm_unique_id: ids are distinct across nodes of one
 * graph running concurrently, and across runs of a graph with a store
 * (the second run's ids all lie above the first run's); without a store
 * they are distinct and non-zero too.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/graph.h"
#include "engine/log.h"
#include "engine/sched.h"
#include "nodes/nodes.h"
#include "tests/tlcm_test.h"

#define PER_NODE 100000 /* more than one reserved block */

static uint64_t ids[2][PER_NODE];
static atomic_int slot;

typedef struct {
	uint64_t *out;
	size_t n;
} idgen_t;

static int idgen_init(tlcm_ctx_t *ctx, void *st)
{
	idgen_t *g = st;
	g->out = ids[atomic_fetch_add(&slot, 1)];
	tlcm_set_tick(ctx, 0);
	return 0;
}

static int idgen_tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	idgen_t *g = st;
	(void)now;
	for (int i = 0; i < 1000 && g->n < PER_NODE; i++)
		g->out[g->n++] = tlcm_unique_id(ctx);
	return g->n == PER_NODE ? TLCM_ECLOSED : 0;
}

static const tlcm_node_type_t idgen_type = {
	.name = "idgen", .doc = "asks for unique ids",
	.state_size = sizeof(idgen_t), .init = idgen_init,
	.tick = idgen_tick};

static tlcm_registry_t reg;

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Run the two-node graph; the sorted ids in all (2 * PER_NODE). */
static void run_once(const char *store, uint64_t *all)
{
	char path[] = "/tmp/tlcm-uid-XXXXXX.yaml", yaml[512];
	snprintf(yaml, sizeof yaml,
		 "graph: ids\n"
		 "settings: { introspect: 'off'%s%s }\n"
		 "nodes:\n"
		 "  a: { type: idgen }\n"
		 "  b: { type: idgen }\n",
		 store ? ", store: " : "", store ? store : "");
	int fd = mkstemps(path, 5);
	CHECK(fd >= 0 && write(fd, yaml, strlen(yaml)) ==
			     (ssize_t)strlen(yaml));
	close(fd);
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	CHECK_INT(tlcm_graph_load(&g, path, &reg, NULL, 0, &d), 0);
	tlcm_diag_print(&d, stderr);
	tlcm_diag_fini(&d);
	unlink(path);
	atomic_store(&slot, 0);
	tlcm_run_opts_t o = {.quiet = true};
	tlcm_run_result_t res;
	CHECK_INT(tlcm_graph_run(g, &o, &res), 0);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
	memcpy(all, ids[0], sizeof ids[0]);
	memcpy(all + PER_NODE, ids[1], sizeof ids[1]);
	qsort(all, 2 * PER_NODE, sizeof *all, cmp);
	size_t dup = 0;
	for (size_t i = 1; i < 2 * PER_NODE; i++)
		dup += all[i] == all[i - 1];
	CHECK_UINT(dup, 0);
	CHECK(all[0] != 0);
}

int main(void)
{
	tlcm_log_level = TLCM_LOG_ERROR;
	tlcm_builtin_nodes(&reg);
	tlcm_registry_add(&reg, &idgen_type);
	static uint64_t first[2 * PER_NODE], second[2 * PER_NODE];
	char dir[] = "/tmp/tlcm-uid-XXXXXX", store[64], cmd[96];
	CHECK(mkdtemp(dir) != NULL);
	snprintf(store, sizeof store, "%s/store", dir);

	run_once(store, first);
	run_once(store, second);
	/* the second run starts above everything the first reserved */
	CHECK(second[0] > first[2 * PER_NODE - 1]);

	run_once(NULL, first); /* clock-based */
	run_once(NULL, second);
	CHECK(second[0] > first[2 * PER_NODE - 1]);

	tlcm_registry_fini(&reg);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	CHECK_INT(system(cmd), 0);
	return tlcm_test_done();
}
