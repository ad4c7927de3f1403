/* bench_features.c — suite "features": the model runtime and the front graph.
 *
 * fmnist_cnn_b1_t{1,2}: models/fmnist-cnn.tlm on XNNPACK, one frame per
 *   run (batch 1), Fashion-MNIST t10k images preprocessed beforehand:
 *   frames/s and per-frame latency p50/p99, against the same model in
 *   PyTorch with as many threads (bench/features_torch.py, which reports
 *   the fastest of its ways to run the graph). Each of our runs is followed
 *   by one of PyTorch's, so a busy neighbour slows both alike; the figures
 *   are medians over runs.
 * mobilenet_v2_224_t{1,2}: a MobileNetV2 1.0 224x224x3 with random weights
 *   (tools/make-mobilenet-v2, written to a temporary directory): latency
 *   p50/p99, PyTorch likewise.
 * front_graph: graphs/front.yaml (capture.idx -> features.xnnpack ->
 *   transform.scaler_pca -> sink) in this process, frames/s from the sink's
 *   first to last message, against the features runtime alone doing the
 *   node's work (preprocess + run, batch 1, 1 thread) on the same images,
 *   interleaved run by run; front_graph_overhead = alone / graph - 1.
 * Run from the repository root (models/, tools/, bench/, graphs/ paths).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "engine/log.h"
#include "engine/sched.h"
#include "nodes/capture/idx.h"
#include "nodes/features/model.h"
#include "nodes/features/xnn.h"
#include "nodes/nodes.h"

#define SUITE "features"
#define PYTHON "/usr/bin/python3"
#define TORCH_SCRIPT "bench/features_torch.py"
#define FMNIST_MODEL "models/fmnist-cnn.tlm"
#define FMNIST_PCA "models/fmnist-scaler-pca.tspc"
#define FMNIST_IMAGES \
	"/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
#define MOBILENET_TOOL "tools/make-mobilenet-v2"
#define FRONT_GRAPH "graphs/front.yaml"
#define MAXRUNS 64

typedef struct {
	double fps, p50, p99; /* frames/s; latency in the unit asked for */
	bool ok;
} perf_t;

static double pct(const double *sorted, size_t n, double p)
{
	size_t i = (size_t)((double)n * p);
	return sorted[i < n ? i : n - 1];
}

static int runs_of(const bench_opts_t *o)
{
	return o->runs < 1 ? 1 : o->runs > MAXRUNS ? MAXRUNS : o->runs;
}

/* ---- the runtime alone ----------------------------------------------------- */

/* One timed run of n frames, one per xnn run, cycling through the inputs
 * (each copied into the runtime's buffer, as a node would write it):
 * frames/s, and p50/p99 of the frames' run times in ns/div. */
static perf_t time_runtime(tlcm_xnn_t *x, tlcm_xnn_batch_t *b,
			   const float *inputs, size_t ninputs, size_t insz,
			   size_t n, double div)
{
	perf_t p = {0};
	double *lat = malloc(n * sizeof *lat);
	char why[256];
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; lat && i < n; i++) {
		memcpy(b->input, inputs + (i % ninputs) * insz,
		       insz * sizeof(float));
		uint64_t s = bench_now_ns();
		if (tlcm_xnn_run(x, b, why, sizeof why)) {
			fprintf(stderr, "features: %s\n", why);
			free(lat);
			return p;
		}
		lat[i] = (double)(bench_now_ns() - s) / div;
	}
	if (!lat)
		return p;
	p.fps = (double)n * 1e9 / (double)(bench_now_ns() - t0);
	bench_sort(lat, n);
	p.p50 = pct(lat, n, 0.50);
	p.p99 = pct(lat, n, 0.99);
	p.ok = true;
	free(lat);
	return p;
}

/* Field by field medians of the runs that worked. */
static perf_t median_perf(const perf_t *v, int n)
{
	double f[MAXRUNS], a[MAXRUNS], z[MAXRUNS];
	size_t k = 0;
	for (int i = 0; i < n; i++)
		if (v[i].ok) {
			f[k] = v[i].fps;
			a[k] = v[i].p50;
			z[k++] = v[i].p99;
		}
	if ((int)k < n || !k)
		return (perf_t){0};
	return (perf_t){bench_median(f, (int)k), bench_median(a, (int)k),
			bench_median(z, (int)k), true};
}

/* ---- the PyTorch baseline ---------------------------------------------------- */

/* Run bench/features_torch.py once; latencies converted from us by
 * `div_us`. say: describe the run on stderr. */
static perf_t torch_baseline(const char *model, int threads, size_t frames,
			     size_t warmup, double div_us, bool say)
{
	perf_t p = {0};
	if (access(TORCH_SCRIPT, R_OK) || access(PYTHON, X_OK)) {
		fprintf(stderr, "features: no PyTorch baseline: %s or %s "
			"missing\n", TORCH_SCRIPT, PYTHON);
		return p;
	}
	char cmd[1024], out[65536];
	snprintf(cmd, sizeof cmd, "%s %s '%s' --threads %d --frames %zu "
		 "--warmup %zu", PYTHON, TORCH_SCRIPT, model, threads, frames,
		 warmup);
	FILE *f = popen(cmd, "r");
	size_t n = f ? fread(out, 1, sizeof out - 1, f) : 0;
	int st = f ? pclose(f) : -1;
	out[n] = 0;
	cJSON *j = cJSON_Parse(out);
	const cJSON *fps = cJSON_GetObjectItemCaseSensitive(j, "frames_per_s");
	const cJSON *p50 = cJSON_GetObjectItemCaseSensitive(j, "p50_us");
	const cJSON *p99 = cJSON_GetObjectItemCaseSensitive(j, "p99_us");
	if (st != 0 || !cJSON_IsNumber(fps) || !cJSON_IsNumber(p50) ||
	    !cJSON_IsNumber(p99)) {
		fprintf(stderr, "features: no PyTorch baseline: `%s` %s\n", cmd,
			st ? "failed" : "printed no frames_per_s/p50_us/p99_us");
	} else if (say) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "baseline");
		const cJSON *blas = cJSON_GetObjectItemCaseSensitive(j, "blas");
		const cJSON *tv = cJSON_GetObjectItemCaseSensitive(j, "torch");
		fprintf(stderr, "features: PyTorch %s (%s, BLAS %s), %d "
			"threads: %.1f frames/s\n",
			cJSON_IsString(tv) ? tv->valuestring : "?",
			cJSON_IsString(v) ? v->valuestring : "?",
			cJSON_IsString(blas) ? blas->valuestring : "?",
			threads, fps->valuedouble);
	}
	if (st == 0 && cJSON_IsNumber(fps) && cJSON_IsNumber(p50) &&
	    cJSON_IsNumber(p99))
		p = (perf_t){fps->valuedouble, p50->valuedouble / div_us,
			     p99->valuedouble / div_us, true};
	cJSON_Delete(j);
	return p;
}

/* frames/s, p50 and p99 lines for one case (latency unit `unit`). */
static void report(const char *kase, const char *unit, bool fps_line,
		   const perf_t *ours, const perf_t *torch, size_t n, int runs)
{
	char name[128];
	bench_base_t b[1] = {{"pytorch", 0}};
	size_t nb = torch->ok ? 1 : 0;
	if (fps_line) {
		b[0].value = torch->fps;
		bench_report(SUITE, kase, "frames_per_s", ours->fps, n, runs, b,
			     nb);
	}
	snprintf(name, sizeof name, "%s_p50", kase);
	b[0].value = torch->p50;
	bench_report(SUITE, name, unit, ours->p50, n, runs, b, nb);
	snprintf(name, sizeof name, "%s_p99", kase);
	b[0].value = torch->p99;
	bench_report(SUITE, name, unit, ours->p99, n, runs, b, nb);
}

/* A case: a warm-up, then `runs` runs of ours, each followed by one of
 * PyTorch's (so a busy neighbour slows both alike); medians reported. */
static void run_case(const char *kase, const char *unit, bool fps_line,
		     const tlcm_model_t *m, const char *model_path, int threads,
		     const float *in, size_t nin, size_t n, size_t warmup,
		     double div, int runs)
{
	char why[512];
	tlcm_xnn_t *x;
	tlcm_xnn_batch_t *b;
	if (tlcm_xnn_new(&x, m, threads, why, sizeof why) ||
	    tlcm_xnn_batch(x, 1, &b, why, sizeof why)) {
		fprintf(stderr, "features: %s\n", why);
		return;
	}
	size_t insz = m->tensors[m->input].size;
	fprintf(stderr, "features: %s: %zu frames x %d runs, each followed by "
		"PyTorch's\n", kase, n, runs);
	time_runtime(x, b, in, nin, insz, warmup, div);
	perf_t ours[MAXRUNS], torch[MAXRUNS];
	bool torch_ok = true;
	for (int r = 0; r < runs; r++) {
		ours[r] = time_runtime(x, b, in, nin, insz, n, div);
		torch[r] = torch_ok ? torch_baseline(model_path, threads, n,
						     warmup, div / 1e3, r == 0)
				    : (perf_t){0};
		torch_ok = torch[r].ok;
	}
	tlcm_xnn_free(x);
	perf_t o = median_perf(ours, runs), t = median_perf(torch, runs);
	if (o.ok)
		report(kase, unit, fps_line, &o, &t, n, runs);
}

/* ---- inputs ---------------------------------------------------------------- */

/* The first n t10k images preprocessed for m (malloc'd), or NULL. */
static float *fmnist_inputs(const tlcm_model_t *m, size_t n, size_t *got)
{
	char why[512];
	tlcm_idx_file_t idx;
	tlcm_prep_t prep;
	if (tlcm_prep_init(&prep, m, why, sizeof why) ||
	    tlcm_idx_file_load(&idx, FMNIST_IMAGES, why, sizeof why)) {
		fprintf(stderr, "features: %s\n", why);
		return NULL;
	}
	size_t insz = m->tensors[m->input].size;
	float *in = NULL;
	if (idx.item_size == (size_t)prep.width * prep.height) {
		*got = n < idx.count ? n : idx.count;
		in = malloc(*got * insz * sizeof *in);
		for (size_t i = 0; in && i < *got; i++)
			tlcm_prep_pixels(&prep, idx.items + i * idx.item_size, 1,
					 in + i * insz);
	} else {
		fprintf(stderr, "features: %s: images do not fit %s\n",
			FMNIST_IMAGES, m->origin);
	}
	tlcm_idx_file_free(&idx);
	return in;
}

static tlcm_model_t *load_model(const char *path)
{
	tlcm_model_t *m = NULL;
	char why[1024];
	if (tlcm_model_load(&m, path, why, sizeof why))
		fprintf(stderr, "features: %s\n", why);
	return m;
}

/* ---- cases ----------------------------------------------------------------- */

static void bench_fmnist(const bench_opts_t *o)
{
	tlcm_model_t *m = load_model(FMNIST_MODEL);
	if (!m) {
		fprintf(stderr, "features: skipping fmnist_cnn (tools/train-fmnist"
			" writes %s; run from the repository root)\n",
			FMNIST_MODEL);
		return;
	}
	size_t nin = 0, n = (size_t)(2000 * o->scale);
	n = n < 50 ? 50 : n;
	float *in = fmnist_inputs(m, 10000, &nin);
	for (int t = 1; in && t <= 2; t++) {
		char kase[64];
		snprintf(kase, sizeof kase, "fmnist_cnn_b1_t%d", t);
		run_case(kase, "us", true, m, FMNIST_MODEL, t, in, nin, n, 50,
			 1e3, runs_of(o));
	}
	free(in);
	tlcm_model_free(m);
}

static void bench_mobilenet(const bench_opts_t *o)
{
	char dir[] = "/tmp/tlcm-bench-XXXXXX", path[64], cmd[256];
	if (!mkdtemp(dir)) {
		perror("features: mkdtemp");
		return;
	}
	snprintf(path, sizeof path, "%s/mobilenet-v2.tlm", dir);
	snprintf(cmd, sizeof cmd, "%s %s %s >&2", PYTHON, MOBILENET_TOOL, path);
	tlcm_model_t *m = NULL;
	if (access(MOBILENET_TOOL, R_OK) || system(cmd) != 0)
		fprintf(stderr, "features: skipping mobilenet_v2 (`%s` failed; "
			"run from the repository root)\n", cmd);
	else
		m = load_model(path);
	size_t n = (size_t)(20 * o->scale);
	n = n < 3 ? 3 : n;
	float *in = m ? malloc(m->tensors[m->input].size * sizeof *in) : NULL;
	for (size_t i = 0; in && i < m->tensors[m->input].size; i++)
		in[i] = (float)((int)(i * 2654435761u % 2001) - 1000) / 1000;
	for (int t = 1; in && t <= 2; t++) {
		char kase[64];
		snprintf(kase, sizeof kase, "mobilenet_v2_224_t%d", t);
		run_case(kase, "ms", false, m, path, t, in, 1, n, 3, 1e6,
			 runs_of(o));
	}
	free(in);
	tlcm_model_free(m);
	unlink(path);
	rmdir(dir);
}

/* The front graph once: frames/s from the sink's first to last message. */
static double run_front(tlcm_registry_t *reg, size_t count, const char *rep)
{
	char s_count[64], s_expect[64], s_report[128];
	snprintf(s_count, sizeof s_count, "camera.count=%zu", count);
	snprintf(s_expect, sizeof s_expect, "out.expect=%zu", count);
	snprintf(s_report, sizeof s_report, "out.report=%s", rep);
	const char *sets[] = {s_count, s_expect, s_report};
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	if (tlcm_graph_load(&g, FRONT_GRAPH, reg, sets, 3, &d)) {
		tlcm_diag_print(&d, stderr);
		tlcm_diag_fini(&d);
		return 0;
	}
	tlcm_diag_fini(&d);
	tlcm_run_opts_t ro = {.quiet = true, .headless = true};
	tlcm_run_result_t res;
	int rc = tlcm_graph_run(g, &ro, &res);
	if (rc)
		fprintf(stderr, "features: %s failed: %s\n", FRONT_GRAPH,
			res.why[0] ? res.why : tlcm_strerror(rc));
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
	char buf[2048] = "";
	FILE *f = rc ? NULL : fopen(rep, "r");
	size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = 0;
	cJSON *j = cJSON_Parse(buf);
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "count");
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "seconds");
	double fps = 0;
	if (cJSON_IsNumber(c) && cJSON_IsNumber(s) && s->valuedouble > 0 &&
	    (size_t)c->valuedouble == count)
		fps = (c->valuedouble - 1) / s->valuedouble;
	else if (!rc)
		fprintf(stderr, "features: the sink's report %s lacks count %zu "
			"and seconds\n", rep, count);
	cJSON_Delete(j);
	return fps;
}

/* What the features node does per frame, without the engine. */
static double run_alone(const tlcm_model_t *m, const tlcm_idx_file_t *idx,
			size_t count)
{
	char why[512];
	tlcm_prep_t prep;
	tlcm_xnn_t *x;
	tlcm_xnn_batch_t *b;
	if (tlcm_prep_init(&prep, m, why, sizeof why) ||
	    tlcm_xnn_new(&x, m, 1, why, sizeof why)) {
		fprintf(stderr, "features: %s\n", why);
		return 0;
	}
	double fps = 0;
	if (!tlcm_xnn_batch(x, 1, &b, why, sizeof why)) {
		uint64_t t0 = bench_now_ns();
		size_t i;
		for (i = 0; i < count; i++) {
			tlcm_prep_pixels(&prep, idx->items + i * idx->item_size,
					 1, b->input);
			if (tlcm_xnn_run(x, b, why, sizeof why))
				break;
		}
		if (i == count)
			fps = (double)count * 1e9 /
			      (double)(bench_now_ns() - t0);
	}
	if (!fps)
		fprintf(stderr, "features: %s\n", why);
	tlcm_xnn_free(x);
	return fps;
}

static void bench_front(const bench_opts_t *o)
{
	tlcm_registry_t reg = {0};
	tlcm_model_t *m = load_model(FMNIST_MODEL);
	tlcm_idx_file_t idx = {0};
	char why[512];
	if (!m || access(FMNIST_PCA, R_OK) || access(FRONT_GRAPH, R_OK) ||
	    tlcm_builtin_nodes(&reg) ||
	    !tlcm_registry_find(&reg, "capture.idx") ||
	    !tlcm_registry_find(&reg, "transform.scaler_pca")) {
		fprintf(stderr, "features: skipping front_graph (needs %s, %s, "
			"%s and the capture.idx and transform.scaler_pca node "
			"types; run from the repository root)\n", FMNIST_MODEL,
			FMNIST_PCA, FRONT_GRAPH);
		goto out;
	}
	if (tlcm_idx_file_load(&idx, FMNIST_IMAGES, why, sizeof why)) {
		fprintf(stderr, "features: %s\n", why);
		goto out;
	}
	size_t count = (size_t)(10000 * o->scale);
	count = count < 200 ? 200 : count > idx.count ? idx.count : count;
	int runs = runs_of(o), ok = 0;
	double graph[MAXRUNS], alone[MAXRUNS], over[MAXRUNS];
	char rep[] = "/tmp/tlcm-bench-front-XXXXXX";
	int fd = mkstemp(rep);
	if (fd >= 0)
		close(fd);
	int level = tlcm_log_level;
	tlcm_log_level = TLCM_LOG_WARN;
	fprintf(stderr, "features: %s, %zu frames, %d runs\n", FRONT_GRAPH,
		count, runs);
	run_alone(m, &idx, count / 10); /* warm-up */
	for (int r = 0; fd >= 0 && r < runs; r++) {
		double g = run_front(&reg, count, rep);
		double a = run_alone(m, &idx, count);
		if (!g || !a)
			break;
		graph[ok] = g;
		alone[ok] = a;
		over[ok++] = a / g - 1;
	}
	tlcm_log_level = level;
	if (fd >= 0)
		unlink(rep);
	if (ok == runs) {
		bench_base_t b = {"features_alone", bench_median(alone, ok)};
		bench_report(SUITE, "front_graph", "frames_per_s",
			     bench_median(graph, ok), count, ok, &b, 1);
		bench_report(SUITE, "front_graph_overhead", "ratio",
			     bench_median(over, ok), count, ok, NULL, 0);
	}
out:
	tlcm_idx_file_free(&idx);
	tlcm_model_free(m);
	tlcm_registry_fini(&reg);
}

int bench_suite_features(const bench_opts_t *o)
{
	bench_fmnist(o);
	bench_mobilenet(o);
	bench_front(o);
	return 0;
}
