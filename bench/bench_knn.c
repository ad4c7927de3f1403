/* bench_knn.c — suite "knn": queries/s of the KNN index (nodes/knn/index.h).
 *
 * query_n{200,1000,10000}_d{64,256}_k5: n stored samples of d Gaussian
 * values (seeded), one query at a time (1000 distinct queries, cycled),
 * k = 5, Euclidean, float32 storage, the fastest kernels of this CPU;
 * `_portable` the same with the portable (compiler-vectorised) kernels,
 * `_int8` with int8 storage. Baselines on the same data, in the same run:
 * FAISS IndexFlatL2 (one thread) and numpy brute force, both from
 * bench/knn_baseline.py, which reads the file this suite writes. The
 * neighbours of the first queries are compared with FAISS's (stderr).
 * Run from the repository root.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "nodes/knn/index.h"

#define SUITE "knn"
#define PYTHON "/usr/bin/python3"
#define SCRIPT "bench/knn_baseline.py"
#define NQ 1000
#define K 5

typedef struct {
	tlcm_knn_t *ix;
	const float *q;
	size_t d;
} ctx_t;

static uint64_t rng_state;

static uint64_t splitmix(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static float gauss(void)
{
	double u = ((double)(splitmix() >> 11) + 0.5) / 9007199254740992.0;
	double v = (double)(splitmix() >> 11) / 9007199254740992.0;
	return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static void body(void *arg, size_t n)
{
	ctx_t *c = arg;
	tlcm_knn_result_t r;
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++) {
		tlcm_knn_query(c->ix, c->q + (i % NQ) * c->d, c->d, &r);
		s += r.slot[0];
	}
	bench_sink += s;
}

typedef struct {
	double faiss, numpy;
	bool has_faiss, has_numpy;
	cJSON *json;
} base_t;

static base_t baseline(const char *file, size_t n, size_t d, size_t iters,
		       int runs)
{
	base_t b = {0};
	if (access(SCRIPT, R_OK) || access(PYTHON, X_OK)) {
		fprintf(stderr, "knn: no baselines: %s or %s missing (run from "
			"the repository root)\n", SCRIPT, PYTHON);
		return b;
	}
	char cmd[1024];
	static char out[1 << 16];
	snprintf(cmd, sizeof cmd, "%s %s '%s' %zu %zu %d --k %d --iters %zu "
		 "--runs %d", PYTHON, SCRIPT, file, n, d, NQ, K, iters, runs);
	FILE *f = popen(cmd, "r");
	size_t got = f ? fread(out, 1, sizeof out - 1, f) : 0;
	int st = f ? pclose(f) : -1;
	out[got] = 0;
	b.json = st == 0 ? cJSON_Parse(out) : NULL;
	const cJSON *fq = cJSON_GetObjectItemCaseSensitive(b.json, "faiss_qps");
	const cJSON *nq = cJSON_GetObjectItemCaseSensitive(b.json, "numpy_qps");
	const cJSON *fe = cJSON_GetObjectItemCaseSensitive(b.json,
							   "faiss_error");
	const cJSON *nv = cJSON_GetObjectItemCaseSensitive(b.json,
							   "numpy_variant");
	if (!b.json)
		fprintf(stderr, "knn: no baselines: `%s` %s\n", cmd,
			st ? "failed" : "printed no JSON");
	if ((b.has_faiss = cJSON_IsNumber(fq)))
		b.faiss = fq->valuedouble;
	else if (b.json)
		fprintf(stderr, "knn: no FAISS baseline: %s\n",
			cJSON_IsString(fe) ? fe->valuestring : "not reported");
	if ((b.has_numpy = cJSON_IsNumber(nq)))
		b.numpy = nq->valuedouble;
	if (b.has_numpy)
		fprintf(stderr, "knn: n %zu d %zu: numpy (%s) %.0f q/s, FAISS "
			"%.0f q/s\n", n, d,
			cJSON_IsString(nv) ? nv->valuestring : "?", b.numpy,
			b.faiss);
	return b;
}

/* Our neighbours of the first queries against FAISS's (as sets: float
 * rounding may swap near-equal neighbours). */
static void compare(const base_t *b, ctx_t *c)
{
	const cJSON *ids = cJSON_GetObjectItemCaseSensitive(b->json,
							    "faiss_ids");
	int same = 0, total = 0;
	for (int i = 0; i < cJSON_GetArraySize(ids); i++) {
		const cJSON *row = cJSON_GetArrayItem(ids, i);
		tlcm_knn_result_t r;
		tlcm_knn_query(c->ix, c->q + (size_t)i * c->d, c->d, &r);
		for (int j = 0; j < cJSON_GetArraySize(row); j++) {
			int id = cJSON_GetArrayItem(row, j)->valueint;
			for (size_t m = 0; m < r.n; m++)
				same += (int)r.slot[m] == id;
			total++;
		}
	}
	if (total)
		fprintf(stderr, "knn: %d of %d FAISS neighbours found too\n",
			same, total);
}

static int one_size(const bench_opts_t *o, size_t n, size_t d)
{
	size_t iters = (size_t)(4e8 / (double)(n * d) * o->scale);
	iters = iters < 20 ? 20 : iters > 20000 ? 20000 : iters;
	float *data = malloc((n + NQ) * d * sizeof *data);
	if (!data)
		return -1;
	rng_state = 0x4b4e4e00u + n * 1000 + d; /* same data every run */
	for (size_t i = 0; i < (n + NQ) * d; i++)
		data[i] = gauss();
	const char *tmp = getenv("TMPDIR");
	char file[512];
	snprintf(file, sizeof file, "%s/tlcm-bench-knn-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	int fd = mkstemp(file);
	FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
	bool ok = f && fwrite(data, sizeof *data, (n + NQ) * d, f) ==
			       (n + NQ) * d;
	if (f)
		ok = fclose(f) == 0 && ok;
	base_t b = {0};
	if (ok)
		b = baseline(file, n, d, iters, o->runs);
	else
		fprintf(stderr, "knn: cannot write %s: no baselines\n", file);
	if (fd >= 0)
		unlink(file);

	static const struct {
		const char *suffix;
		bool portable, quantize;
	} variants[] = {{"", false, false}, {"_portable", true, false},
			{"_int8", false, true}};
	for (size_t v = 0; v < 3; v++) {
		tlcm_knn_opts_t opt = {d, K, TLCM_KNN_EUCLIDEAN,
				       TLCM_KNN_UNIFORM, n, TLCM_KNN_FIFO,
				       variants[v].quantize,
				       variants[v].portable};
		ctx_t c = {NULL, data + n * d, d};
		if (tlcm_knn_new(&c.ix, &opt))
			break;
		static const char *const labels[] = {"0", "1", "2", "3", "4",
						     "5", "6", "7", "8", "9"};
		for (size_t i = 0; i < n; i++)
			tlcm_knn_add(c.ix, data + i * d, d, labels[i % 10], 0);
		if (v == 0 && b.json)
			compare(&b, &c);
		double ns = bench_measure(o, iters, body, &c);
		char kase[96];
		snprintf(kase, sizeof kase, "query_n%zu_d%zu_k%d%s", n, d, K,
			 variants[v].suffix);
		bench_base_t base[2];
		size_t nb = 0;
		if (b.has_faiss)
			base[nb++] = (bench_base_t){"faiss_flat_l2", b.faiss};
		if (b.has_numpy)
			base[nb++] = (bench_base_t){"numpy", b.numpy};
		fprintf(stderr, "knn: %s (%s kernels): %.0f q/s%s\n", kase,
			tlcm_knn_kernel_name(c.ix), 1e9 / ns,
			b.has_faiss ? "" : " (no FAISS figure)");
		if (b.has_faiss)
			fprintf(stderr, "knn: %s: %.1fx FAISS\n", kase,
				1e9 / ns / b.faiss);
		bench_report(SUITE, kase, "queries_per_s", 1e9 / ns, iters,
			     o->runs, base, nb);
		tlcm_knn_free(c.ix);
	}
	cJSON_Delete(b.json);
	free(data);
	return 0;
}

int bench_suite_knn(const bench_opts_t *o)
{
	static const size_t ns[] = {200, 1000, 10000}, ds[] = {64, 256};
	for (size_t i = 0; i < 3; i++)
		for (size_t j = 0; j < 2; j++)
			if (one_size(o, ns[i], ds[j]))
				return -1;
	return 0;
}
