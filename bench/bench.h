/* bench.h — the tinylcm-bench harness (see docs/benchmarks.md).
 *
 * A suite is a function that measures cases and prints one JSON line per
 * case through bench_report(); progress goes to stderr. bench_measure()
 * runs a body `runs` times after a warm-up and returns the median
 * nanoseconds per operation, so a suite measures its subject and the
 * baseline a user would otherwise pick the same way, in the same run.
 */
#ifndef TLCM_BENCH_H
#define TLCM_BENCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
	int runs;      /* timed repetitions; the median is reported */
	double scale;  /* multiplies each suite's default op count */
	const char *sync; /* --sync: the one store sync policy to run (suites
			   that run a store, e.g. core-ingest); NULL: theirs */
} bench_opts_t;

typedef struct {
	const char *name;
	const char *summary;
	int (*run)(const bench_opts_t *o);
} bench_suite_t;

/* Monotonic nanoseconds. */
uint64_t bench_now_ns(void);

/* body(ctx, n) performs n operations. Returns median ns per operation over
 * o->runs runs (after one warm-up run of the same size). */
double bench_measure(const bench_opts_t *o, size_t n,
		     void (*body)(void *ctx, size_t n), void *ctx);

/* Sort v ascending in place. */
void bench_sort(double *v, size_t n);
/* The median of v (n > 0), sorting v in place. */
double bench_median(double *v, int n);

/* A baseline figure: name and value (same unit as the case). */
typedef struct {
	const char *name;
	double value;
} bench_base_t;

/* Print one JSON line: {"suite","case","unit","value","n","runs","stat",
 * "baseline":{...}}. nbase may be 0. */
void bench_report(const char *suite, const char *kase, const char *unit,
		  double value, size_t n, int runs, const bench_base_t *base,
		  size_t nbase);

/* Keep a value alive so the compiler cannot drop the work producing it. */
extern volatile uint64_t bench_sink;

int bench_suite_fb(const bench_opts_t *o);
int bench_suite_ring(const bench_opts_t *o);
int bench_suite_hop(const bench_opts_t *o);
int bench_suite_store(const bench_opts_t *o);
int bench_suite_features(const bench_opts_t *o);
int bench_suite_knn(const bench_opts_t *o);
int bench_suite_drift(const bench_opts_t *o);
int bench_suite_outbox(const bench_opts_t *o);

#endif
