/* bench_hop.c — suite "hop": what a message pays per hop through the engine.
 *
 * graphs/bench/hop.yaml (gen → tee ×3 → sink, 64 B, 4 block edges) runs in
 * this process for throughput and in forked children for memory and idle
 * CPU; the baseline, run as gst-launch-1.0 interleaved with ours, is the
 * same shape in GStreamer: fakesrc ! (queue ! identity) ×3 ! queue ! fakesink.
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "engine/log.h"
#include "engine/sched.h"
#include "nodes/nodes.h"

#define HOP_N 2000000   /* messages per run at scale 1 */
#define HOPS 4          /* edges a message crosses */
#define IDLE_S 3        /* seconds of an idle run */
#define IDLE_FROM 0.5   /* its CPU is measured from here to IDLE_S - this */
#define SAMPLE_MS 5     /* /proc/PID/status sampling period */
#define MAXRUNS 64
#define GRAPH "graphs/bench/hop.yaml"
#define GST "gst-launch-1.0"

typedef struct {
	tlcm_registry_t reg;
	char graph[4096];
	char report[4096];
} hop_t;

/* What a child process cost, from wait4() and /proc sampling. */
typedef struct {
	double wall_s, cpu_s;
	long maxrss_kib;
	long anon_kib; /* sampled peak of RssAnon + RssShmem; -1: none seen */
	/* in: a window (seconds after start) to measure CPU in, or 0, 0;
	 * out: CPU and wall seconds of the window, or -1 if not reached */
	double win_from, win_to, win_cpu_s, win_wall_s;
} proc_t;

static double median(const double *v, int n)
{
	double t[MAXRUNS];
	memcpy(t, v, (size_t)n * sizeof *t);
	return bench_median(t, n);
}

static bool have_prog(const char *name)
{
	const char *path = getenv("PATH");
	char buf[4096];
	while (path && *path) {
		size_t len = strcspn(path, ":");
		snprintf(buf, sizeof buf, "%.*s/%s", (int)len, path, name);
		if (len && access(buf, X_OK) == 0)
			return true;
		path += len + (path[len] == ':');
	}
	return false;
}

/* Anonymous memory of a live process: RssAnon + RssShmem, since our edge
 * rings are memfd (shared) mappings and would otherwise not count. */
static long proc_anon_kib(pid_t pid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	const char *a = strstr(buf, "\nRssAnon:");
	const char *s = strstr(buf, "\nRssShmem:");
	if (!a || !s)
		return -1; /* a zombie has no memory lines */
	return strtol(a + 9, NULL, 10) + strtol(s + 10, NULL, 10);
}

/* CPU seconds all live threads of pid ran so far, from the nanosecond
 * counters in /proc/PID/task/TID/schedstat; -1 if unavailable. */
static double proc_cpu_s(pid_t pid)
{
	char path[320], buf[128];
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	unsigned long long ns = 0;
	int seen = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/%d/task/%.32s/schedstat",
			 (int)pid, e->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		ns += strtoull(buf, NULL, 10);
		seen++;
	}
	closedir(d);
	return seen ? (double)ns / 1e9 : -1;
}

/* Wait for pid (started at t0), sampling its memory every SAMPLE_MS (so a
 * sampled peak is a lower bound) and its CPU at the ends of p's window. A
 * pidfd wakes us the moment it exits, so the wall time is exact. Returns
 * 0 when it exited with status 0. */
static int proc_wait(pid_t pid, uint64_t t0, proc_t *p, const char *what)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct rusage ru;
	int st;
	double w0 = 0, c0 = -1;
	p->anon_kib = -1;
	p->win_cpu_s = p->win_wall_s = -1;
	for (;;) {
		if (pfd >= 0) {
			struct pollfd q = {.fd = pfd, .events = POLLIN};
			poll(&q, 1, SAMPLE_MS);
		} else {
			struct timespec ts = {0, SAMPLE_MS * 1000000L};
			nanosleep(&ts, NULL);
		}
		pid_t w = wait4(pid, &st, WNOHANG, &ru);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			fprintf(stderr, "hop: waiting for %s: %s\n", what,
				strerror(errno));
			if (pfd >= 0)
				close(pfd);
			return -1;
		}
		/* only from the first period on: a gst child has exec'd by
		 * then, so we do not sample the copy of this process */
		long a = proc_anon_kib(pid);
		if (a > p->anon_kib)
			p->anon_kib = a;
		double now = (double)(bench_now_ns() - t0) / 1e9;
		if (p->win_to > 0 && c0 < 0 && now >= p->win_from) {
			c0 = proc_cpu_s(pid);
			w0 = now;
		} else if (p->win_to > 0 && c0 >= 0 && p->win_wall_s < 0 &&
			   now >= p->win_to) {
			double c1 = proc_cpu_s(pid);
			if (c1 >= c0) {
				p->win_cpu_s = c1 - c0;
				p->win_wall_s = now - w0;
			}
		}
	}
	p->wall_s = (double)(bench_now_ns() - t0) / 1e9;
	if (pfd >= 0)
		close(pfd);
	p->cpu_s = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		   (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
	p->maxrss_kib = ru.ru_maxrss;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFEXITED(st))
		fprintf(stderr, "hop: %s exited with status %d\n", what,
			WEXITSTATUS(st));
	else
		fprintf(stderr, "hop: %s killed by signal %d\n", what,
			WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	return -1;
}

/* Load and run the graph here. count 0: until the duration ends. When
 * count > 0, the sink must report exactly count messages; *secs gets the
 * wall seconds of tlcm_graph_run (threads start to threads joined, so
 * without graph parsing and node init; sink_secs from first to last
 * arrival). */
/* Introspection load for the "introspect" case: scrape /metrics and
 * /api/v1/stats every SCRAPE_MS while the graph runs, as a monitoring
 * system would, counting the answers. */
#define INTROSPECT_URL "http://127.0.0.1:18790"
#define SCRAPE_MS 100

/* Set when a run with introspection got no answer from the endpoint: its
 * figure would not show the endpoint's cost, so the line is left out. */
static bool scrape_missed;

typedef struct {
	atomic_bool stop;
	unsigned ok;
} scraper_t;

static bool scrape(const char *path)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons(18790),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bool ok = false;
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
		char req[256], buf[4096] = "";
		int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: "
				 "localhost\r\nConnection: close\r\n\r\n",
				 path);
		if (write(fd, req, (size_t)n) == n) {
			/* the status line is in the first chunk; drain the rest */
			ssize_t k = read(fd, buf, sizeof buf - 1);
			ok = k >= 12 && !strncmp(buf, "HTTP/1.1 200", 12);
			char sink[4096];
			while (k > 0 && (k = read(fd, sink, sizeof sink)) > 0)
				;
		}
	}
	if (fd >= 0)
		close(fd);
	return ok;
}

static void *scraper(void *arg)
{
	scraper_t *sc = arg;
	while (!atomic_load(&sc->stop)) {
		sc->ok += scrape("/metrics");
		sc->ok += scrape("/api/v1/stats");
		usleep(SCRAPE_MS * 1000);
	}
	return NULL;
}

static int run_graph(hop_t *h, size_t count, bool idle, double duration,
		     double *secs, double *sink_secs, bool introspect)
{
	char s_count[64], s_report[4200];
	snprintf(s_count, sizeof s_count, "src.count=%zu", count);
	snprintf(s_report, sizeof s_report, "sink.report=%s", h->report);
	const char *sets[] = {s_count, s_report, "src.rate_hz=1"};
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	int rc = tlcm_graph_load(&g, h->graph, &h->reg, sets, idle ? 3 : 2,
				 &d);
	if (rc) {
		tlcm_diag_print(&d, stderr);
		tlcm_diag_fini(&d);
		fprintf(stderr, "hop: cannot load %s\n", h->graph);
		return -1;
	}
	tlcm_diag_fini(&d);
	unlink(h->report);
	tlcm_run_opts_t ro = {.duration_s = duration, .quiet = true,
			      .headless = !introspect};
	free(g->introspect);
	g->introspect = strdup(INTROSPECT_URL);
	scraper_t sc = {0};
	pthread_t st;
	bool scraping = introspect &&
			pthread_create(&st, NULL, scraper, &sc) == 0;
	tlcm_run_result_t res;
	rc = tlcm_graph_run(g, &ro, &res);
	if (scraping) {
		atomic_store(&sc.stop, true);
		pthread_join(st, NULL);
		if (!sc.ok) /* too short a run, or the port taken */
			scrape_missed = true;
	}
	if (rc)
		fprintf(stderr, "hop: graph failed: %s\n",
			res.why[0] ? res.why : tlcm_strerror(rc));
	uint64_t in = 0;
	for (size_t i = 0; i < g->nnodes && res.nodes; i++)
		if (!strcmp(g->nodes[i].id, "sink"))
			in = res.nodes[i].in;
	if (secs)
		*secs = res.seconds;
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
	if (rc || !count)
		return rc ? -1 : 0;

	/* the sink's own account must agree */
	char buf[4096] = "";
	FILE *f = fopen(h->report, "r");
	size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = 0;
	cJSON *j = cJSON_Parse(buf);
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "count");
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "seconds");
	double got = cJSON_IsNumber(c) ? c->valuedouble : -1;
	if (sink_secs)
		*sink_secs = cJSON_IsNumber(s) ? s->valuedouble : 0;
	cJSON_Delete(j);
	if (got != (double)count || in != count) {
		fprintf(stderr, "hop: sent %zu messages, the sink counted %.0f "
			"(report %s) and the engine %llu; refusing to report\n",
			count, got, h->report, (unsigned long long)in);
		return -1;
	}
	return 0;
}

/* Run the graph in a forked child; this process has no threads here. */
static int graph_child(hop_t *h, size_t count, bool idle, double duration,
		       proc_t *p)
{
	fflush(NULL);
	uint64_t t0 = bench_now_ns();
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "hop: fork: %s\n", strerror(errno));
		return -1;
	}
	if (pid == 0)
		_exit(run_graph(h, count, idle, duration, NULL, NULL, false) ? 1 : 0);
	return proc_wait(pid, t0, p, "graph child");
}

/* gst-launch-1.0 with fakesrc `src` args, then 4 queues and 3 identities
 * (4 thread hand-offs, like our 4 edges) into fakesink `sink` args. */
static int gst_child(const char *const *src, const char *sink, proc_t *p)
{
	const char *argv[40];
	int n = 0;
	argv[n++] = GST;
	argv[n++] = "-q";
	argv[n++] = "fakesrc";
	while (*src)
		argv[n++] = *src++;
	for (int i = 0; i < 3; i++) {
		argv[n++] = "!";
		argv[n++] = "queue";
		argv[n++] = "!";
		argv[n++] = "identity";
	}
	argv[n++] = "!";
	argv[n++] = "queue";
	argv[n++] = "!";
	argv[n++] = "fakesink";
	if (sink)
		argv[n++] = sink;
	argv[n] = NULL;
	fflush(NULL);
	uint64_t t0 = bench_now_ns();
	pid_t pid = fork(); /* not vfork: exec would charge our peak RSS */
	if (pid < 0) {
		fprintf(stderr, "hop: fork: %s\n", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0)
			dup2(fd, 1);
		execvp(GST, (char *const *)argv);
		_exit(127);
	}
	return proc_wait(pid, t0, p, GST);
}

static int find_graph(hop_t *h)
{
	if (access(GRAPH, R_OK) == 0) {
		snprintf(h->graph, sizeof h->graph, "%s", GRAPH);
		return 0;
	}
	/* build/bin/tinylcm-bench → ../../graphs/bench/hop.yaml */
	char exe[2048];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash)
			*slash = 0;
		snprintf(h->graph, sizeof h->graph, "%s/../../%s", exe, GRAPH);
		if (access(h->graph, R_OK) == 0)
			return 0;
	}
	fprintf(stderr, "hop: cannot find %s (run from the source tree)\n",
		GRAPH);
	return -1;
}

int bench_suite_hop(const bench_opts_t *o)
{
	static hop_t h;
	int runs = o->runs < 1 ? 1 : o->runs > MAXRUNS ? MAXRUNS : o->runs;
	size_t n = (size_t)(HOP_N * o->scale);
	if (n < 1000)
		n = 1000;
	if (find_graph(&h))
		return -1;
	if (tlcm_builtin_nodes(&h.reg)) {
		fprintf(stderr, "hop: cannot register node types\n");
		return -1;
	}
	const char *tmp = getenv("TMPDIR");
	snprintf(h.report, sizeof h.report, "%s/tlcm-hop-%d.json",
		 tmp && *tmp ? tmp : "/tmp", (int)getpid());
	int log_level = tlcm_log_level;
	tlcm_log_level = TLCM_LOG_WARN; /* no per-run summaries from nodes */

	bool gst = have_prog(GST);
	if (!gst)
		fprintf(stderr, "hop: %s not found on PATH (Debian package "
			"gstreamer1.0-tools, see tools/install-deps); "
			"GStreamer baselines left out\n", GST);

	int rc = -1;
	double rss[MAXRUNS], anon[MAXRUNS], g_rss[MAXRUNS], g_anon[MAXRUNS];
	double tput[MAXRUNS], tput_i[MAXRUNS], hop_ns[MAXRUNS], g_tput[MAXRUNS], g_hop[MAXRUNS];
	double idle[MAXRUNS], g_idle[MAXRUNS];
	proc_t p = {0};
	bool anon_ok = true, g_anon_ok = true, idle_ok = false;

	/* 1. Memory of a process running the graph: forked children, first,
	 * while this process is small (a forked child starts out with our
	 * resident anonymous pages). One warm-up child, then `runs`. */
	fprintf(stderr, "hop: %zu messages x %d runs; memory: graph in a "
		"child process (starting with our %ld KiB anonymous)\n", n,
		runs, proc_anon_kib(getpid()));
	for (int r = -1; r < runs; r++) {
		if (graph_child(&h, n, false, 0, &p))
			goto out;
		if (r < 0)
			continue;
		rss[r] = (double)p.maxrss_kib;
		anon[r] = (double)p.anon_kib;
		anon_ok = anon_ok && p.anon_kib > 0;
	}

	/* 2. GStreamer start-up and teardown: the same pipeline with one
	 * buffer, measured the same way; its median wall (and CPU) time is
	 * subtracted from the timed runs below. These runs are also the
	 * GStreamer warm-up (plugin registry cache, page cache). */
	char nbuf[64];
	snprintf(nbuf, sizeof nbuf, "num-buffers=%zu", n);
	const char *g_one[] = {"num-buffers=1", "sizetype=fixed", "sizemax=64",
			       NULL};
	const char *g_n[] = {nbuf, "sizetype=fixed", "sizemax=64", NULL};
	double su_wall[MAXRUNS + 1], su_cpu[MAXRUNS + 1], su_w = 0, su_c = 0;
	if (gst) {
		fprintf(stderr, "hop: gstreamer start-up (num-buffers=1)\n");
		for (int r = 0; r <= runs && gst; r++) {
			if (gst_child(g_one, NULL, &p)) {
				fprintf(stderr, "hop: %s fails; GStreamer "
					"baselines left out\n", GST);
				gst = false;
			}
			su_wall[r] = p.wall_s;
			su_cpu[r] = p.cpu_s;
		}
		if (gst) {
			su_w = median(su_wall + 1, runs);
			su_c = median(su_cpu + 1, runs);
			fprintf(stderr, "hop: gstreamer start-up %.1f ms wall, "
				"%.1f ms CPU\n", su_w * 1e3, su_c * 1e3);
		}
	}

	/* 3. Throughput, runs interleaved with GStreamer's. Ours is count /
	 * wall seconds of tlcm_graph_run (not the sink's first-to-last
	 * arrival, which leaves out pipeline fill and drain), so both sides
	 * count the same thing: all messages from start to finished. */
	double secs, sink_secs;
	if (run_graph(&h, n, false, 0, &secs, &sink_secs, false)) /* warm-up */
		goto out;
	for (int r = 0; r < runs; r++) {
		if (gst) {
			if (gst_child(g_n, NULL, &p) || p.wall_s <= su_w) {
				fprintf(stderr, "hop: %s run failed; GStreamer "
					"baselines left out\n", GST);
				gst = false;
			} else {
				double w = p.wall_s - su_w;
				g_tput[r] = (double)n / w;
				g_hop[r] = w * 1e9 / (double)n / HOPS;
				g_rss[r] = (double)p.maxrss_kib;
				g_anon[r] = (double)p.anon_kib;
				g_anon_ok = g_anon_ok && p.anon_kib > 0;
				fprintf(stderr, "hop: run %d gstreamer %.3f s "
					"(%.3f s less start-up), %.0f msgs/s, "
					"forked from our %ld KiB anonymous\n",
					r + 1, p.wall_s, w, g_tput[r],
					proc_anon_kib(getpid()));
			}
		}
		if (run_graph(&h, n, false, 0, &secs, &sink_secs, true))
			goto out;
		tput_i[r] = (double)n / secs;
		if (run_graph(&h, n, false, 0, &secs, &sink_secs, false))
			goto out;
		tput[r] = (double)n / secs;
		hop_ns[r] = secs * 1e9 / (double)n / HOPS;
		fprintf(stderr, "hop: run %d tinylcm %.3f s (sink first-to-"
			"last %.3f s), %.0f msgs/s\n", r + 1, secs, sink_secs,
			tput[r]);
	}

	/* 4. Idle: CPU / wall of a process running a graph that has almost
	 * nothing to do: one 64-byte message a second. Ours: gen at 1 Hz in
	 * a child for IDLE_S seconds. GStreamer: a live fakesrc making one
	 * buffer a second (datarate=64) into fakesink sync=true, IDLE_S
	 * buffers. Whole-process rusage would be dominated by start-up
	 * (GStreamer's is ~25 ms of CPU), so both are measured the same way
	 * in a steady window, IDLE_FROM s after start to IDLE_S - IDLE_FROM:
	 * the schedstat run time of all their threads over the wall time. */
	char g_nidle[32];
	snprintf(g_nidle, sizeof g_nidle, "num-buffers=%d", IDLE_S);
	const char *g_idle_src[] = {"is-live=true", g_nidle, "sizetype=fixed",
				    "sizemax=64", "datarate=64", NULL};
	const proc_t idle_win = {.win_from = IDLE_FROM,
				 .win_to = IDLE_S - IDLE_FROM};
	bool g_idle_ok = gst;
	fprintf(stderr, "hop: idle, %d s runs at 1 msg/s\n", IDLE_S);
	for (int r = 0; r < runs; r++) {
		p = idle_win;
		if (graph_child(&h, 0, true, IDLE_S, &p))
			goto out;
		if (p.win_wall_s <= 0) {
			fprintf(stderr, "hop: could not read the graph child's "
				"CPU time in /proc; idle case left out\n");
			goto report;
		}
		idle[r] = p.win_cpu_s / p.win_wall_s;
		fprintf(stderr, "hop: idle run %d tinylcm %.3f ms CPU in "
			"%.3f s (whole process %.1f ms in %.3f s)\n", r + 1,
			p.win_cpu_s * 1e3, p.win_wall_s, p.cpu_s * 1e3,
			p.wall_s);
		if (!g_idle_ok)
			continue;
		p = idle_win;
		if (gst_child(g_idle_src, "sync=true", &p) ||
		    p.win_wall_s <= 0) {
			fprintf(stderr, "hop: idle %s failed or its CPU time "
				"was not readable; no idle baseline\n", GST);
			g_idle_ok = false;
			continue;
		}
		g_idle[r] = p.win_cpu_s / p.win_wall_s;
		fprintf(stderr, "hop: idle run %d gstreamer %.3f ms CPU in "
			"%.3f s (whole process %.1f ms in %.3f s)\n", r + 1,
			p.win_cpu_s * 1e3, p.win_wall_s, p.cpu_s * 1e3,
			p.wall_s);
	}
	idle_ok = true;
report:;
	bench_base_t b;
	b = (bench_base_t){"gstreamer", gst ? median(g_tput, runs) : 0};
	bench_report("hop", "gen_tee3_sink_64B", "msgs_per_s",
		     median(tput, runs), n, runs, &b, gst);
	/* the same graph serving introspection, scraped every 100 ms */
	bench_base_t hb = {"headless", median(tput, runs)};
	if (scrape_missed)
		fprintf(stderr, "hop: the introspection endpoint answered no "
			"scrape in some run (run too short, or port 18790 "
			"taken): introspect case left out\n");
	else
		bench_report("hop", "gen_tee3_sink_64B_introspect",
			     "msgs_per_s", median(tput_i, runs), n, runs, &hb,
			     1);
	b.value = gst ? median(g_hop, runs) : 0;
	bench_report("hop", "gen_tee3_sink_64B_ns_per_hop", "ns",
		     median(hop_ns, runs), n, runs, &b, gst);
	b.value = gst ? median(g_rss, runs) : 0;
	bench_report("hop", "gen_tee3_sink_peak_rss", "kib", median(rss, runs),
		     n, runs, &b, gst);
	if (!anon_ok)
		fprintf(stderr, "hop: no RssAnon/RssShmem samples of the "
			"graph child; anon case left out\n");
	else if (gst && !g_anon_ok)
		fprintf(stderr, "hop: no RssAnon samples of %s; anon case "
			"without baseline\n", GST);
	if (anon_ok) {
		b.value = gst && g_anon_ok ? median(g_anon, runs) : 0;
		bench_report("hop", "gen_tee3_sink_peak_anon_kib", "kib",
			     median(anon, runs), n, runs, &b, gst && g_anon_ok);
	}
	b.value = g_idle_ok ? median(g_idle, runs) : 0;
	if (idle_ok) /* n: messages in an idle run */
		bench_report("hop", "idle_cpu", "ratio", median(idle, runs),
			     IDLE_S, runs, &b, g_idle_ok);
	rc = 0;
out:
	unlink(h.report);
	tlcm_log_level = log_level;
	tlcm_registry_fini(&h.reg);
	h = (hop_t){0};
	return rc;
}
