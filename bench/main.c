/* main.c — tinylcm-bench: run one benchmark suite, print JSON lines.
 *
 * Suites are listed in the table below; each prints one JSON object per
 * case on stdout, with same-run baselines (docs/benchmarks.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "tinylcm_version.h"

volatile uint64_t bench_sink;

int bench_suite_upload(const bench_opts_t *o); /* bench_upload.c */
int bench_suite_core_ingest(const bench_opts_t *o); /* bench_core_ingest.c */
int bench_suite_link(const bench_opts_t *o); /* bench_link.c */
int bench_suite_satellite_mem(const bench_opts_t *o); /* bench_satmem.c */

static const bench_suite_t suites[] = {
	{"fb", "FlatBuffers build/verify/read vs cJSON encode/parse",
	 bench_suite_fb},
	{"ring", "SPSC ring throughput/latency vs pipe, AF_UNIX, NNG inproc",
	 bench_suite_ring},
	{"hop", "graph hops, memory, idle CPU vs GStreamer", bench_suite_hop},
	{"store", "snapshots and commits vs fsync'd files", bench_suite_store},
	{"features", "model runtime (XNNPACK) vs PyTorch, front graph overhead",
	 bench_suite_features},
	{"knn", "KNN index queries/s vs FAISS IndexFlatL2 and numpy",
	 bench_suite_knn},
	{"drift-fmnist", "the learning loop on Fashion-MNIST: accuracy, drift "
	 "delay, adaptation, ground truth, per-node cost", bench_suite_drift},
	{"outbox", "outbox enqueue/drain per sync policy vs raw store puts",
	 bench_suite_outbox},
	{"upload", "uploader packages/s (4 KiB, one keep-alive connection) "
	 "per sync policy vs the curl CLI", bench_suite_upload},
	{"core-ingest", "core packages/s and latency p50/p99 (4 KiB, 10 "
	 "keep-alive uploaders, de-dup on) per sync policy vs NNG's HTTP "
	 "server alone", bench_suite_core_ingest},
	{"link", "10 satellites -> 1 core on tcp loopback: events/s and "
	 "latency p50/p99 with acks and persistence per sync policy vs raw "
	 "NNG push/pull", bench_suite_link},
	{"satellite-mem", "peak RSS and anonymous memory of the headless "
	 "satellite (graphs/satellite.yaml) vs processes that only load "
	 "tinylcm's libraries", bench_suite_satellite_mem},
};
#define NSUITES (sizeof suites / sizeof suites[0])

uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

void bench_sort(double *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_double);
}

double bench_median(double *v, int n)
{
	bench_sort(v, (size_t)n);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_measure(const bench_opts_t *o, size_t n,
		     void (*body)(void *ctx, size_t n), void *ctx)
{
	double t[64];
	int runs = o->runs < 1 ? 1 : o->runs > 64 ? 64 : o->runs;
	body(ctx, n); /* warm-up */
	for (int r = 0; r < runs; r++) {
		uint64_t t0 = bench_now_ns();
		body(ctx, n);
		t[r] = (double)(bench_now_ns() - t0) / (double)n;
	}
	return bench_median(t, runs);
}

void bench_report(const char *suite, const char *kase, const char *unit,
		  double value, size_t n, int runs, const bench_base_t *base,
		  size_t nbase)
{
	printf("{\"suite\":\"%s\",\"case\":\"%s\",\"unit\":\"%s\","
	       "\"value\":%.6g,\"n\":%zu,\"runs\":%d,\"stat\":\"median\"",
	       suite, kase, unit, value, n, runs);
	if (nbase) {
		printf(",\"baseline\":{");
		for (size_t i = 0; i < nbase; i++)
			printf("%s\"%s\":%.6g", i ? "," : "", base[i].name,
			       base[i].value);
		printf("}");
	}
	printf("}\n");
	fflush(stdout);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tinylcm-bench [--runs N] [--scale X] SUITE\n"
		"       tinylcm-bench --list\n"
		"\n"
		"Run a benchmark suite; print one JSON line per case on stdout\n"
		"(progress on stderr). Figures are medians of N runs after a\n"
		"warm-up, with baselines measured in the same run.\n"
		"\n"
		"  --runs N    timed runs per case (default 7, max 64)\n"
		"  --scale X   multiply operations per run (default 1; 0.01 "
		"for a smoke run)\n"
		"  --sync P    store sync policy always|batch|never, for suites "
		"that run\n"
		"              a store (core-ingest; default: the suite's)\n"
		"  --list      list the suites\n"
		"  --version   print the version\n");
}

int main(int argc, char **argv)
{
	bench_opts_t o = {.runs = 7, .scale = 1.0};
	const char *suite = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--version")) {
			printf("tinylcm-bench %s\n", TINYLCM_VERSION);
			return 0;
		} else if (!strcmp(a, "--list")) {
			for (size_t s = 0; s < NSUITES; s++)
				printf("%-8s %s\n", suites[s].name,
				       suites[s].summary);
			return 0;
		} else if (!strcmp(a, "--runs") && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end || v < 1 || v > 64) {
				fprintf(stderr, "tinylcm-bench: --runs wants "
					"1..64, got '%s'\n", argv[i]);
				return 2;
			}
			o.runs = (int)v;
		} else if (!strcmp(a, "--sync") && i + 1 < argc) {
			o.sync = argv[++i];
		} else if (!strcmp(a, "--scale") && i + 1 < argc) {
			char *end;
			o.scale = strtod(argv[++i], &end);
			if (*end || !(o.scale > 0) || o.scale > 1000) {
				fprintf(stderr, "tinylcm-bench: --scale wants a "
					"number in (0, 1000], got '%s'\n",
					argv[i]);
				return 2;
			}
		} else if (a[0] == '-') {
			fprintf(stderr, "tinylcm-bench: unknown option %s\n", a);
			usage(stderr);
			return 2;
		} else if (suite) {
			fprintf(stderr, "tinylcm-bench: one suite at a time\n");
			return 2;
		} else {
			suite = a;
		}
	}
	if (!suite) {
		usage(stderr);
		return 2;
	}
	for (size_t s = 0; s < NSUITES; s++)
		if (!strcmp(suites[s].name, suite))
			return suites[s].run(&o) ? 1 : 0;
	fprintf(stderr, "tinylcm-bench: no suite '%s' (see --list)\n", suite);
	return 2;
}
