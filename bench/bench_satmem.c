/* bench_satmem.c — suite "satellite-mem": peak memory of the headless
 * satellite, graphs/satellite.yaml (sensor.sysfs every 100 ms into
 * link.tx, whose queue is in the graph's store), run as `tinylcm run
 * --headless` for 3 s with no core answering (issue 9 goals: <= 20 MB
 * RSS, <= 4 MB anonymous).
 *
 * Peak RSS is the largest VmHWM and peak anonymous memory the largest
 * RssAnon of the child's /proc/PID/status, sampled every 10 ms (not
 * ru_maxrss: posix_spawn's child shares this process's memory until it
 * execs, and that would count). Baselines in
 * the same run: tinylcm-memfloor, a process that only sleeps, linked with
 * the libraries tinylcm links (what they cost by themselves), and
 * tinylcm-memfloor-all, linked with every library tinylcm linked before
 * its heavy node groups became on-demand shared objects. Case
 * satellite_*: the graph as shipped, its store kept from run to run (the
 * queue grows, as on a satellite cut off from its core); case
 * satellite_store_*: a fresh store every run.
 * Run from the repository root (or set TLCM_SOURCE_DIR).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"

typedef struct {
	long peak_rss_kb, peak_anon_kb;
} mem_t;

static long status_kb(pid_t pid, const char *field)
{
	char p[64], line[256];
	snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
	FILE *f = fopen(p, "r");
	long v = -1;
	size_t n = strlen(field);
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, field, n) && line[n] == ':') {
			v = atol(line + n + 1);
			break;
		}
	if (f)
		fclose(f);
	return v;
}

/* Run argv to its end; 0 and *m, or -1. */
static int measure(char *const argv[], mem_t *m)
{
	/* posix_spawn returns after the exec: no sample sees the copy of
	 * this process that a fork would leave before it */
	pid_t pid;
	int e = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
	if (e) {
		fprintf(stderr, "satellite-mem: cannot run %s: %s\n", argv[0],
			strerror(e));
		return -1;
	}
	m->peak_anon_kb = m->peak_rss_kb = 0;
	struct rusage ru;
	int st;
	for (;;) {
		long a = status_kb(pid, "RssAnon"), h = status_kb(pid, "VmHWM");
		if (a > m->peak_anon_kb)
			m->peak_anon_kb = a;
		if (h > m->peak_rss_kb)
			m->peak_rss_kb = h;
		pid_t w = wait4(pid, &st, WNOHANG, &ru);
		if (w == pid)
			break;
		if (w < 0)
			return -1;
		struct timespec ts = {0, 10 * 1000000};
		nanosleep(&ts, NULL);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "satellite-mem: %s failed (status %d)\n",
			argv[0], st);
		return -1;
	}
	return 0;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

/* Median over runs of both figures. */
static int median(const bench_opts_t *o, char *const argv[], mem_t *out)
{
	long rss[64], anon[64];
	int runs = o->runs < 1 ? 1 : o->runs > 64 ? 64 : o->runs;
	for (int r = 0; r < runs; r++) {
		mem_t m;
		if (measure(argv, &m))
			return -1;
		rss[r] = m.peak_rss_kb;
		anon[r] = m.peak_anon_kb;
	}
	qsort(rss, (size_t)runs, sizeof rss[0], cmp_long);
	qsort(anon, (size_t)runs, sizeof anon[0], cmp_long);
	out->peak_rss_kb = rss[runs / 2];
	out->peak_anon_kb = anon[runs / 2];
	return 0;
}

int bench_suite_satellite_mem(const bench_opts_t *o);

int bench_suite_satellite_mem(const bench_opts_t *o)
{
	char dir[PATH_MAX] = "", bin[PATH_MAX + 32], floor1[PATH_MAX + 32],
	     floor2[PATH_MAX + 32], graph[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
	dir[n > 0 ? n : 0] = 0;
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	snprintf(bin, sizeof bin, "%s/tinylcm", dir);
	snprintf(floor1, sizeof floor1, "%s/tinylcm-memfloor", dir);
	snprintf(floor2, sizeof floor2, "%s/tinylcm-memfloor-all", dir);
	const char *src = getenv("TLCM_SOURCE_DIR");
	snprintf(graph, sizeof graph, "%s/graphs/satellite.yaml",
		 src ? src : ".");
	if (access(graph, R_OK)) {
		fprintf(stderr, "satellite-mem: %s: %s (run from the "
			"repository root or set TLCM_SOURCE_DIR)\n", graph,
			strerror(errno));
		return 1;
	}
	char stored[] = "/tmp/tlcm-bench-satmem-XXXXXX", sgraph[PATH_MAX];
	if (!mkdtemp(stored))
		return 1;
	snprintf(sgraph, sizeof sgraph, "%s/satellite-store.yaml", stored);
	FILE *in = fopen(graph, "r"), *out = fopen(sgraph, "w");
	char line[512];
	while (in && out && fgets(line, sizeof line, in)) {
		/* the graph's own store (link.tx's queue) is replaced */
		if (!strncmp(line, "  store:", 8))
			continue;
		fputs(line, out);
		if (!strncmp(line, "settings:", 9))
			fprintf(out, "  store: %s/store\n  fresh_store: true\n",
				stored);
	}
	if (in)
		fclose(in);
	if (out)
		fclose(out);

	char *sat[] = {bin, "run", graph, "--headless", "--quiet",
		       "--duration", "3", "--set", "sensors.interval=100ms",
		       NULL};
	char *satst[] = {bin, "run", sgraph, "--headless", "--quiet",
			 "--duration", "3", "--set", "sensors.interval=100ms",
			 NULL};
	char *f1[] = {floor1, "1", NULL}, *f2[] = {floor2, "1", NULL};
	/* nothing listens on port 1: the batches stay queued */
	char queue[PATH_MAX];
	snprintf(queue, sizeof queue, "%s/queue", stored);
	setenv("SATELLITE_STORE", queue, 1);
	setenv("SATELLITE_CORES", "tcp://127.0.0.1:1", 1);
	mem_t m, ms, b1, b2;
	int rc = median(o, f1, &b1) || median(o, f2, &b2) ||
		 median(o, sat, &m) || median(o, satst, &ms);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", stored);
	if (system(cmd))
		fprintf(stderr, "satellite-mem: cannot remove %s\n", stored);
	if (rc)
		return 1;
	int runs = o->runs < 1 ? 1 : o->runs;
	bench_base_t br[] = {{"libs_only", (double)b1.peak_rss_kb},
			     {"all_libs_linked", (double)b2.peak_rss_kb}};
	bench_base_t ba[] = {{"libs_only", (double)b1.peak_anon_kb},
			     {"all_libs_linked", (double)b2.peak_anon_kb}};
	bench_report("satellite-mem", "satellite_peak_rss", "KiB",
		     (double)m.peak_rss_kb, 1, runs, br, 2);
	bench_report("satellite-mem", "satellite_peak_anon", "KiB",
		     (double)m.peak_anon_kb, 1, runs, ba, 2);
	bench_report("satellite-mem", "satellite_store_peak_rss", "KiB",
		     (double)ms.peak_rss_kb, 1, runs, br, 2);
	bench_report("satellite-mem", "satellite_store_peak_anon", "KiB",
		     (double)ms.peak_anon_kb, 1, runs, ba, 2);
	return 0;
}
