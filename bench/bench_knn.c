/* bench_knn.c — suite "knn": queries/s of the KNN index (nodes/knn/index.h).
 *
 * query_n{200,1000,10000}_d{32,64,256}_k5: n stored samples of d Gaussian
 * values (seeded), one query at a time (1000 distinct queries, cycled),
 * k = 5, Euclidean, float32 storage, the fastest kernels of this CPU;
 * `_portable` the same with the portable (compiler-vectorised) kernels,
 * `_int8` with int8 storage. Baselines on the same data: FAISS IndexFlatL2
 * (one thread) and numpy brute force, run by bench/knn_baseline.py
 * (--serve), which reads the file this suite writes and times one run per
 * command; its runs and ours alternate, run by run, so a busy neighbour on
 * a shared machine slows both alike. Each figure is the median of its
 * runs. The neighbours of the first queries are compared with FAISS's
 * (stderr). Run from the repository root.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "nodes/knn/index.h"

#define SUITE "knn"
#define PYTHON "/usr/bin/python3"
#define SCRIPT "bench/knn_baseline.py"
#define NQ 1000
#define K 5
#define MAXRUNS 64
#define NVAR 3

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

/* ---- the baseline process ------------------------------------------------ */

typedef struct {
	pid_t pid;
	FILE *in, *out; /* its stdin, its stdout */
	cJSON *info;    /* its first line */
} server_t;

static bool server_start(server_t *s, const char *file, size_t n, size_t d,
			 size_t iters)
{
	int to[2], from[2];
	memset(s, 0, sizeof *s);
	if (access(SCRIPT, R_OK) || access(PYTHON, X_OK)) {
		fprintf(stderr, "knn: no baselines: %s or %s missing (run from "
			"the repository root)\n", SCRIPT, PYTHON);
		return false;
	}
	if (pipe(to))
		return false;
	if (pipe(from)) {
		close(to[0]);
		close(to[1]);
		return false;
	}
	char sn[32], sd[32], sq[32], sk[32], si[32];
	snprintf(sn, sizeof sn, "%zu", n);
	snprintf(sd, sizeof sd, "%zu", d);
	snprintf(sq, sizeof sq, "%d", NQ);
	snprintf(sk, sizeof sk, "%d", K);
	snprintf(si, sizeof si, "%zu", iters);
	s->pid = fork();
	if (s->pid == 0) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[0]);
		close(to[1]);
		close(from[0]);
		close(from[1]);
		execl(PYTHON, PYTHON, SCRIPT, file, sn, sd, sq, "--k", sk,
		      "--iters", si, "--serve", (char *)NULL);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	s->in = s->pid > 0 ? fdopen(to[1], "w") : NULL;
	s->out = s->pid > 0 ? fdopen(from[0], "r") : NULL;
	if (!s->in || !s->out) {
		if (s->in)
			fclose(s->in);
		else
			close(to[1]);
		if (s->out)
			fclose(s->out);
		else
			close(from[0]);
		if (s->pid > 0)
			waitpid(s->pid, NULL, 0);
		s->pid = 0;
		s->in = s->out = NULL;
		return false;
	}
	char *line = NULL;
	size_t cap = 0;
	if (getline(&line, &cap, s->out) > 0)
		s->info = cJSON_Parse(line);
	free(line);
	if (!s->info)
		fprintf(stderr, "knn: no baselines: %s printed no JSON\n",
			SCRIPT);
	return s->info != NULL;
}

/* One timed run of `what` ("faiss", "numpy"): queries/s, or -1. */
static double server_run(server_t *s, const char *what)
{
	if (!s->info || fprintf(s->in, "%s\n", what) < 0 || fflush(s->in))
		return -1;
	char line[64];
	if (!fgets(line, sizeof line, s->out))
		return -1;
	return strtod(line, NULL);
}

static void server_stop(server_t *s)
{
	if (s->in) {
		fprintf(s->in, "quit\n");
		fclose(s->in);
	}
	if (s->out)
		fclose(s->out);
	if (s->pid > 0)
		waitpid(s->pid, NULL, 0);
	cJSON_Delete(s->info);
	memset(s, 0, sizeof *s);
}

/* Our neighbours of the first queries against FAISS's (as sets: float
 * rounding may swap near-equal neighbours). */
static void compare(const server_t *sv, ctx_t *c)
{
	const cJSON *ids = cJSON_GetObjectItemCaseSensitive(sv->info,
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

/* One timed run of ours: queries/s. */
static double our_run(ctx_t *c, size_t iters)
{
	uint64_t t0 = bench_now_ns();
	body(c, iters);
	return (double)iters * 1e9 / (double)(bench_now_ns() - t0);
}

static const struct {
	const char *suffix;
	bool portable, quantize;
} variants[NVAR] = {{"", false, false}, {"_portable", true, false},
		    {"_int8", false, true}};

static int one_size(const bench_opts_t *o, size_t n, size_t d)
{
	int runs = o->runs < 1 ? 1 : o->runs > MAXRUNS ? MAXRUNS : o->runs;
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
	else if (fd >= 0)
		close(fd);
	server_t sv = {0};
	if (!ok)
		fprintf(stderr, "knn: cannot write %s: no baselines\n", file);
	else
		server_start(&sv, file, n, d, iters);
	if (fd >= 0)
		unlink(file); /* the server has read it */

	static const char *const labels[] = {"0", "1", "2", "3", "4",
					     "5", "6", "7", "8", "9"};
	ctx_t c[NVAR];
	int rc = 0;
	for (size_t v = 0; v < NVAR; v++)
		c[v] = (ctx_t){NULL, data + n * d, d};
	for (size_t v = 0; v < NVAR && !rc; v++) {
		tlcm_knn_opts_t opt = {d, K, TLCM_KNN_EUCLIDEAN,
				       TLCM_KNN_UNIFORM, n, TLCM_KNN_FIFO,
				       variants[v].quantize,
				       variants[v].portable};
		if ((rc = tlcm_knn_new(&c[v].ix, &opt)))
			break;
		for (size_t i = 0; i < n; i++)
			tlcm_knn_add(c[v].ix, data + i * d, d, labels[i % 10],
				     0);
		our_run(&c[v], iters < 50 ? iters : 50); /* warm-up */
	}
	if (!rc && sv.info)
		compare(&sv, &c[0]);
	if (rc)
		goto out;

	/* alternate: FAISS, numpy, then each of ours, run by run */
	double t[NVAR + 2][MAXRUNS];
	int got[NVAR + 2] = {0};
	for (int r = 0; r < runs; r++) {
		double x = server_run(&sv, "faiss");
		if (x > 0)
			t[0][got[0]++] = x;
		if ((x = server_run(&sv, "numpy")) > 0)
			t[1][got[1]++] = x;
		for (int v = 0; v < NVAR; v++)
			t[2 + v][got[2 + v]++] = our_run(&c[v], iters);
	}
	const cJSON *fe = cJSON_GetObjectItemCaseSensitive(sv.info,
							   "faiss_error");
	const cJSON *nv = cJSON_GetObjectItemCaseSensitive(sv.info,
							   "numpy_variant");
	if (sv.info && !got[0])
		fprintf(stderr, "knn: no FAISS baseline: %s\n",
			cJSON_IsString(fe) ? fe->valuestring : "no figures");
	bench_base_t base[2];
	size_t nb = 0;
	double faiss = got[0] ? bench_median(t[0], got[0]) : 0;
	if (got[0])
		base[nb++] = (bench_base_t){"faiss_flat_l2", faiss};
	if (got[1])
		base[nb++] = (bench_base_t){"numpy", bench_median(t[1], got[1])};
	if (got[1])
		fprintf(stderr, "knn: n %zu d %zu: FAISS %.0f q/s, numpy (%s) "
			"%.0f q/s\n", n, d, faiss,
			cJSON_IsString(nv) ? nv->valuestring : "?",
			base[nb - 1].value);
	for (int v = 0; v < NVAR; v++) {
		double ours = bench_median(t[2 + v], got[2 + v]);
		char kase[96];
		snprintf(kase, sizeof kase, "query_n%zu_d%zu_k%d%s", n, d, K,
			 variants[v].suffix);
		fprintf(stderr, "knn: %s (%s kernels): %.0f q/s", kase,
			tlcm_knn_kernel_name(c[v].ix), ours);
		if (got[0])
			fprintf(stderr, ", %.1fx FAISS", ours / faiss);
		fputc('\n', stderr);
		bench_report(SUITE, kase, "queries_per_s", ours, iters, runs,
			     base, nb);
	}
out:
	for (int v = 0; v < NVAR; v++)
		tlcm_knn_free(c[v].ix);
	server_stop(&sv);
	free(data);
	return rc;
}

int bench_suite_knn(const bench_opts_t *o)
{
	/* d = 32: the demo's PCA-reduced embeddings */
	static const size_t ns[] = {200, 1000, 10000}, ds[] = {32, 64, 256};
	/* a baseline process that dies must not kill the bench */
	void (*old)(int) = signal(SIGPIPE, SIG_IGN);
	int rc = 0;
	for (size_t i = 0; i < 3 && !rc; i++)
		for (size_t j = 0; j < 3 && !rc; j++)
			rc = one_size(o, ns[i], ds[j]);
	signal(SIGPIPE, old);
	return rc;
}
