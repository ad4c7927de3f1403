/* bench_drift.c — tinylcm-bench drift-fmnist: the learning loop evaluated
 * on Fashion-MNIST (issue 6, docs/evaluation.md).
 *
 * 1. graphs/demo.yaml at full size: eval.scenario plays warm-up, phase A
 *    (10 000 stationary frames), phase B (7 500 frames, 20 % of classes
 *    8 and 9: each of the 1 500 images of 8 and 9 outside phase C once),
 *    ground truth and phase C (2 500 unseen frames of all ten
 *    classes) and writes its scores as JSON lines, copied to stdout here;
 *    its table goes to stderr.
 * 2. Per node, the time spent in its callbacks per message it handled
 *    (the engine's busy time), the graph's per frame, and the lifecycle's
 *    share: knn, drift, quarantine and adapter busy time over the
 *    front's (features, PCA; the scenario is the harness, in neither).
 * 3. The baseline of the same run: graphs/bench/drift-front.yaml plays
 *    the same frames through the front only; process CPU time and wall
 *    time per frame of both give the overhead including the engine's
 *    hops (both graphs: the model on its own thread, one worker).
 * 4. The same two measures with a MobileNetV2-shaped extractor
 *    (tools/make-mobilenet-v2, random weights, 224x224 RGB; small).
 *
 * Each graph runs --runs + 1 times, loop and front alternating: the first
 * round warms up (its scores are the ones reported), the costs are
 * medians over the others, each round's overheads on stderr. --scale
 * multiplies the phase sizes (0.2 for a quick look).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "engine/error.h"
#include "engine/graph.h"
#include "engine/sched.h"
#include "nodes/nodes.h"

#define PYTHON "/usr/bin/python3"
#define MOBILENET_TOOL "tools/make-mobilenet-v2"
#define DATASET "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
#define SUITE "drift-fmnist"

typedef struct run {
	double cpu_s, wall_s;
	size_t nnodes;
	char (*ids)[64];
	tlcm_node_stats_t *st;
} run_t;

static void run_free(run_t *r)
{
	free(r->ids);
	free(r->st);
	memset(r, 0, sizeof *r);
}

/* Run graph file `path` with overrides; 0 when it ran to the end. */
static int run_graph(const tlcm_registry_t *reg, const char *path,
		     const char *const *sets, size_t nsets, run_t *out)
{
	memset(out, 0, sizeof *out);
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	if (tlcm_graph_load(&g, path, reg, sets, nsets, &d)) {
		tlcm_diag_print(&d, stderr);
		tlcm_diag_fini(&d);
		return TLCM_EPARSE;
	}
	tlcm_diag_fini(&d);
	tlcm_run_opts_t ro = {.quiet = true, .headless = true};
	tlcm_run_result_t res;
	int rc = tlcm_graph_run(g, &ro, &res);
	out->cpu_s = res.cpu_seconds;
	out->wall_s = res.seconds;
	if (rc)
		fprintf(stderr, SUITE ": %s failed: %s\n", path,
			res.why[0] ? res.why : tlcm_strerror(rc));
	out->nnodes = g->nnodes;
	out->ids = calloc(g->nnodes, sizeof *out->ids);
	out->st = calloc(g->nnodes, sizeof *out->st);
	for (size_t i = 0; out->ids && out->st && res.nodes &&
			   i < g->nnodes;
	     i++) {
		snprintf(out->ids[i], sizeof out->ids[i], "%s",
			 g->nodes[i].id);
		out->st[i] = res.nodes[i];
	}
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
	return rc;
}

/* The front: what turns a frame into features. The scenario (the frame
 * source and referee), the baseline's sink and store-and-forward
 * (telemetry, packager: issue 7, not the learning loop; their time per
 * message is still reported) are neither front nor lifecycle; everything
 * else is the lifecycle. */
enum { PART_OTHER, PART_FRONT, PART_LIFECYCLE };

static int part_of(const char *id)
{
	static const char *const other[] = {"scenario", "out", "telemetry",
					    "pack", "up"};
	if (!strcmp(id, "features") || !strcmp(id, "pca"))
		return PART_FRONT;
	for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
		if (!strcmp(id, other[i]))
			return PART_OTHER;
	return PART_LIFECYCLE;
}

static uint64_t busy_of(const run_t *r, int part)
{
	uint64_t t = 0;
	for (size_t i = 0; i < r->nnodes; i++)
		if (part_of(r->ids[i]) == part)
			t += r->st[i].busy_ns;
	return t;
}

/* Frames the scenario played: its out count. */
static uint64_t frames_of(const run_t *r)
{
	for (size_t i = 0; i < r->nnodes; i++)
		if (!strcmp(r->ids[i], "scenario"))
			return r->st[i].out;
	return 0;
}

/* A round: the loop graph, then the front-only one on the same frames. */
typedef struct {
	run_t loop, front;
} round_t;

static void rounds_free(round_t *r, int n)
{
	for (int i = 0; i < n; i++) {
		run_free(&r[i].loop);
		run_free(&r[i].front);
	}
}

/* The per-frame figures of one round (NAN where a run is missing). */
typedef struct {
	/* µs per frame of the loop graph's nodes (all, the front's), and
	 * the lifecycle's busy time over the front's */
	double busy, busy_front, busy_ratio;
	/* µs per frame of the loop graph and of the front-only graph, and
	 * the first over the second minus 1: process CPU, then wall time */
	double cpu, cpu_front, cpu_ratio;
	double wall, wall_front, wall_ratio;
} per_frame_t;

static per_frame_t per_frame(const round_t *r)
{
	per_frame_t p;
	uint64_t frames = frames_of(&r->loop), ff = frames_of(&r->front);
	double lb = (double)busy_of(&r->loop, PART_LIFECYCLE),
	       fb = (double)busy_of(&r->loop, PART_FRONT),
	       nl = frames ? (double)frames : NAN, nf = ff ? (double)ff : NAN;
	p.busy = (lb + fb) / 1e3 / nl;
	p.busy_front = fb / 1e3 / nl;
	p.busy_ratio = fb > 0 ? lb / fb : NAN;
	p.cpu = r->loop.cpu_s * 1e6 / nl;
	p.cpu_front = r->front.cpu_s * 1e6 / nf;
	p.wall = r->loop.wall_s * 1e6 / nl;
	p.wall_front = r->front.wall_s * 1e6 / nf;
	p.cpu_ratio = p.cpu / p.cpu_front - 1;
	p.wall_ratio = p.wall / p.wall_front - 1;
	return p;
}

/* The median over n rounds of one per_frame_t field. */
static double median_of(const per_frame_t *pf, int n, size_t off)
{
	double v[64];
	for (int i = 0; i < n; i++)
		v[i] = *(const double *)(const void *)((const char *)&pf[i] +
						       off);
	return bench_median(v, n);
}
#define MEDIAN_OF(field) median_of(pf, n, offsetof(per_frame_t, field))

/* JSON lines of per-node time and the lifecycle overhead of the loop
 * against the front-only graph, each the median over n rounds (at most
 * 64), cases prefixed by `tag`. */
static void report_costs(const char *tag, const round_t *r, int n)
{
	char kase[128];
	const run_t *l0 = &r[0].loop;
	uint64_t frames = frames_of(l0);
	for (size_t i = 0; i < l0->nnodes; i++) {
		double v[64];
		uint64_t msgs = 0;
		int m = 0;
		for (int k = 0; k < n; k++) {
			const run_t *l = &r[k].loop;
			if (i >= l->nnodes || strcmp(l->ids[i], l0->ids[i]))
				continue;
			const tlcm_node_stats_t *s = &l->st[i];
			uint64_t c = s->in ? s->in : s->out;
			if (c)
				v[m++] = (double)s->busy_ns / 1e3 / (double)c;
			msgs = c;
		}
		if (!m)
			continue;
		snprintf(kase, sizeof kase, "%snode_%s", tag, l0->ids[i]);
		bench_report(SUITE, kase, "us", bench_median(v, m), msgs, m,
			     NULL, 0);
	}
	if (!frames)
		return;
	per_frame_t pf[64];
	for (int k = 0; k < n; k++) {
		pf[k] = per_frame(&r[k]);
		fprintf(stderr, SUITE ": %sround %d: lifecycle overhead busy "
			"%+.2f %%, cpu %+.2f %%, wall %+.2f %%\n", tag, k + 1,
			100 * pf[k].busy_ratio, 100 * pf[k].cpu_ratio,
			100 * pf[k].wall_ratio);
	}
	bench_base_t base[1] = {{"front_nodes", MEDIAN_OF(busy_front)}};
	snprintf(kase, sizeof kase, "%sgraph_busy_per_frame", tag);
	bench_report(SUITE, kase, "us", MEDIAN_OF(busy), frames, n, base, 1);
	snprintf(kase, sizeof kase, "%slifecycle_busy_overhead", tag);
	bench_report(SUITE, kase, "ratio", MEDIAN_OF(busy_ratio), frames, n,
		     NULL, 0);
	if (!frames_of(&r[0].front))
		return;
	base[0] = (bench_base_t){"front_only_graph", MEDIAN_OF(cpu_front)};
	snprintf(kase, sizeof kase, "%scpu_per_frame", tag);
	bench_report(SUITE, kase, "us", MEDIAN_OF(cpu), frames, n, base, 1);
	snprintf(kase, sizeof kase, "%slifecycle_cpu_overhead", tag);
	bench_report(SUITE, kase, "ratio", MEDIAN_OF(cpu_ratio), frames, n,
		     NULL, 0);
	base[0] = (bench_base_t){"front_only_graph", MEDIAN_OF(wall_front)};
	snprintf(kase, sizeof kase, "%swall_per_frame", tag);
	bench_report(SUITE, kase, "us", MEDIAN_OF(wall), frames, n, base, 1);
	snprintf(kase, sizeof kase, "%slifecycle_wall_overhead", tag);
	bench_report(SUITE, kase, "ratio", MEDIAN_OF(wall_ratio), frames, n,
		     NULL, 0);
}

static void copy_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	while (f && fgets(line, sizeof line, f))
		fputs(line, stdout);
	if (f)
		fclose(f);
	fflush(stdout);
}

static void mobilenet(const tlcm_registry_t *reg, const char *dir, int runs)
{
	char model[300], store[300], cmd[800];
	snprintf(model, sizeof model, "%s/mobilenet-v2.tlm", dir);
	snprintf(store, sizeof store, "%s/mobilenet.store", dir);
	snprintf(cmd, sizeof cmd, "%s %s %s >&2", PYTHON, MOBILENET_TOOL,
		 model);
	if (access(MOBILENET_TOOL, R_OK) || system(cmd) != 0) {
		fprintf(stderr, SUITE ": skipping the MobileNetV2 case (`%s` "
			"failed; run from the repository root)\n", cmd);
		return;
	}
	setenv("MODEL", model, 1);
	setenv("STORE", store, 1);
	round_t r[64];
	memset(r, 0, sizeof r);
	int done = 0, rc = 0;
	for (; done <= runs && !rc; done++) { /* the first: warm-up */
		fprintf(stderr, SUITE ": MobileNetV2-shaped loop (%s %d of "
			"%d) ...\n", done ? "timed" : "warm-up", done, runs);
		rc = run_graph(reg, "graphs/bench/drift-mobilenet.yaml", NULL,
			       0, &r[done].loop);
		fprintf(stderr, SUITE ": MobileNetV2-shaped front only ...\n");
		if (!rc)
			rc = run_graph(reg,
				       "graphs/bench/drift-mobilenet-front.yaml",
				       NULL, 0, &r[done].front);
	}
	if (!rc)
		report_costs("mobilenet_v2_", r + 1, done - 1);
	rounds_free(r, done);
	unsetenv("MODEL");
	unsetenv("STORE");
	unlink(model);
}

int bench_suite_drift(const bench_opts_t *o)
{
	if (access(DATASET, R_OK)) {
		fprintf(stderr, SUITE ": %s missing (apt-get install "
			"dataset-fashion-mnist); nothing measured\n", DATASET);
		return 1;
	}
	tlcm_registry_t reg = {0};
	if (tlcm_builtin_nodes(&reg)) {
		tlcm_registry_fini(&reg);
		return 1;
	}
	char dir[] = "/tmp/tlcm-bench-drift-XXXXXX";
	if (!mkdtemp(dir)) {
		perror(SUITE ": mkdtemp");
		tlcm_registry_fini(&reg);
		return 1;
	}
	double sc = o->scale > 0 ? o->scale : 1;
	long a = lround(10000 * sc), b = lround(7500 * sc),
	     c = lround(2500 * sc);
	char sa[64], sb[64], scc[64], rep[320], store[320];
	snprintf(sa, sizeof sa, "scenario.phase_a=%ld", a < 600 ? 600 : a);
	snprintf(sb, sizeof sb, "scenario.phase_b=%ld", b < 600 ? 600 : b);
	snprintf(scc, sizeof scc, "scenario.phase_c=%ld", c < 100 ? 100 : c);
	snprintf(rep, sizeof rep, "scenario.report=%s/report.jsonl", dir);
	snprintf(store, sizeof store, "%s/demo.store", dir);
	setenv("STORE", store, 1);
	/* the table and the JSON lines of the first round only */
	const char *sets[] = {sa, sb, scc, rep, "scenario.table=/dev/stderr"},
		   *quiet[] = {sa, sb, scc, "scenario.table="};
	/* rounds: the loop, then the front only. The first is the warm-up
	 * (page cache, allocator, CPU clocks): its scores are reported, its
	 * costs are not; the costs are medians over the `runs` after it. */
	int runs = o->runs < 1 ? 1 : o->runs > 63 ? 63 : o->runs, done = 0;
	round_t r[64];
	memset(r, 0, sizeof r);
	int rc = 0;
	for (; done <= runs && !rc; done++) {
		fprintf(stderr, SUITE ": the learning loop (graphs/demo.yaml, "
			"%s %d of %d) ...\n", done ? "timed" : "warm-up",
			done, runs);
		rc = done ? run_graph(&reg, "graphs/demo.yaml", quiet, 4,
				      &r[done].loop)
			  : run_graph(&reg, "graphs/demo.yaml", sets, 5,
				      &r[done].loop);
		if (!done)
			copy_lines(rep + strlen("scenario.report="));
		fprintf(stderr, SUITE ": the front only (baseline) ...\n");
		if (!rc)
			rc = run_graph(&reg, "graphs/bench/drift-front.yaml",
				       quiet, 3, &r[done].front);
	}
	if (!rc)
		report_costs("", r + 1, done - 1);
	rounds_free(r, done);
	unsetenv("STORE");
	if (!rc)
		mobilenet(&reg, dir, runs);
	char cmd[400];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, SUITE ": could not remove %s\n", dir);
	tlcm_registry_fini(&reg);
	return rc ? 1 : 0;
}
