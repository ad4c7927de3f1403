/* test_isolate.c — isolate: process. A node runs in a child process; when
 * it crashes (here: it kills itself with SIGKILL once, mid-stream) the
 * supervisor restarts it from its last snapshot in a new process while the
 * rest of the graph keeps running, and no message on a block edge is lost
 * (the batch in flight may arrive twice). A node that keeps crashing is
 * stopped after the restart limit and the graph reports it. The node's
 * processes come from a zygote; neither outlives the graph, and a dead
 * zygote stops the graph with a reason. Messages an isolated node marks
 * verified are verified again by their consumer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/graph.h"
#include "engine/log.h"
#include "engine/sched.h"
#include "engine/store.h"
#include "fb/test_state_fb.h"
#include "nodes/nodes.h"
#include "tests/tlcm_test.h"

static char dir[64];

typedef struct {
	uint64_t n;
} crasher_t;

static const tlcm_port_desc_t any_in[] = {{"in", "*", "", 0}, {0}};
static const tlcm_port_desc_t any_out[] = {{"out", "*", "", 0}, {0}};
static const tlcm_param_desc_t crasher_params[] = {
	{"crash_at", TLCM_P_INT, "5000", "message count to die at", 0, 0,
	 NULL, 0},
	{"marker", TLCM_P_PATH, "", "crash only while this file is absent "
	 "(created before dying); empty: every time", 0, 0, NULL, 0},
	{"restore_ms", TLCM_P_INT, "0", "sleep this long when restoring (a "
	 "slow restart)", 0, 10000, NULL, 0},
	{"pidfile", TLCM_P_PATH, "", "write the process id here on start",
	 0, 0, NULL, 0},
	{0}};

static int crasher_init(tlcm_ctx_t *ctx, void *st)
{
	(void)st;
	const char *path = tlcm_param_str(ctx, "pidfile");
	if (!*path)
		return 0;
	char tmp[160];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return TLCM_EIO;
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
	return rename(tmp, path) ? TLCM_EIO : 0;
}

static int crasher_process(tlcm_ctx_t *ctx, void *st, int port,
			   const tlcm_msg_t *m)
{
	crasher_t *c = st;
	(void)port;
	c->n++;
	if (c->n % 500 == 0)
		tlcm_snapshot_now(ctx, "periodic");
	if (c->n == (uint64_t)tlcm_param_int(ctx, "crash_at")) {
		const char *marker = tlcm_param_str(ctx, "marker");
		if (!*marker || access(marker, F_OK) != 0) {
			if (*marker)
				fclose(fopen(marker, "w"));
			raise(SIGKILL);
		}
	}
	int rc = tlcm_emit_msg(ctx, 0, m);
	return rc == TLCM_EAGAIN ? 0 : rc;
}

static int crasher_snapshot(tlcm_ctx_t *ctx, void *st, tlcm_fbb_t *b)
{
	crasher_t *c = st;
	(void)ctx;
	tlcm_TestState_start(b);
	tlcm_TestState_add_count(b, c->n);
	tlcm_TestState_add_seq(b, (uint64_t)getpid()); /* which process */
	return tlcm_TestState_finish(b, tlcm_TestState_end(b), NULL)
		       ? 0 : tlcm_fbb_error(b);
}

static int crasher_restore(tlcm_ctx_t *ctx, void *st, const void *d,
			   size_t len)
{
	crasher_t *c = st;
	const char *why;
	if (tlcm_TestState_verify_as_root(d, len, &why))
		return TLCM_EBADMSG;
	c->n = tlcm_TestState_count(tlcm_TestState_as_root(d));
	usleep((useconds_t)tlcm_param_int(ctx, "restore_ms") * 1000);
	return 0;
}

static const tlcm_node_type_t crasher_type = {
	.name = "crasher", .doc = "forwards; dies once at crash_at",
	.inputs = any_in, .outputs = any_out, .params = crasher_params,
	.state_size = sizeof(crasher_t), .init = crasher_init,
	.process = crasher_process,
	.snapshot = crasher_snapshot, .restore = crasher_restore};

static tlcm_registry_t reg;

static tlcm_graph_t *load(const char *yaml)
{
	char path[128];
	snprintf(path, sizeof path, "%s/g.yaml", dir);
	FILE *f = fopen(path, "w");
	fputs(yaml, f);
	fclose(f);
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	int rc = tlcm_graph_load(&g, path, &reg, NULL, 0, &d);
	tlcm_diag_print(&d, stderr);
	tlcm_diag_fini(&d);
	CHECK_INT(rc, 0);
	return g;
}

/* Run g to its end: it must end well. */
static void run_ok(tlcm_graph_t *g, tlcm_run_result_t *res)
{
	tlcm_run_opts_t o = {.quiet = true, .headless = true};
	CHECK_INT(tlcm_graph_run(g, &o, res), 0);
	CHECK_STR(res->why, "");
}

/* A number in a sink's JSON report (nodes/test/sink.c). */
static unsigned long long report_field(const char *path, const char *key)
{
	char buf[512] = "", k[64];
	FILE *f = fopen(path, "r");
	if (f) {
		CHECK(fread(buf, 1, sizeof buf - 1, f) > 0);
		fclose(f);
	}
	snprintf(k, sizeof k, "\"%s\":", key);
	const char *p = strstr(buf, k);
	CHECK(p != NULL);
	return p ? strtoull(p + strlen(k), NULL, 10) : 0;
}

static void crash_once(void)
{
	char yaml[1024], report[128];
	snprintf(report, sizeof report, "%s/report.json", dir);
	snprintf(yaml, sizeof yaml,
		 "graph: iso\n"
		 "settings: { store: %s/store, introspect: 'off', keep: 100 }\n"
		 "nodes:\n"
		 "  src: { type: gen, params: { count: 20000, payload: 32, "
		 "rate_hz: 100000 } }\n"
		 "  c: { type: crasher, isolate: process, params: { crash_at: "
		 "5000, marker: %s/crashed } }\n"
		 "  sink: { type: sink, params: { report: %s } }\n"
		 "edges:\n"
		 "  - { from: src.out, to: c.in, capacity: 16KiB }\n"
		 "  - { from: c.out, to: sink.in, capacity: 16KiB }\n",
		 dir, dir, report);
	tlcm_graph_t *g = load(yaml);
	tlcm_run_result_t res;
	run_ok(g, &res);
	CHECK_UINT(res.nodes[1].restarts, 1);
	CHECK_UINT(res.nodes[1].errors, 1);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
	char m[128];
	snprintf(m, sizeof m, "%s/crashed", dir);
	CHECK(access(m, F_OK) == 0); /* it did crash */
	/* the sink saw every message (gaps would be losses); the batch in
	 * flight at the crash may have come twice (reordered) */
	CHECK_UINT(report_field(report, "missing"), 0);
	CHECK_UINT(report_field(report, "last_seq"), 20000);
	unsigned long long count = report_field(report, "count"),
			   reordered = report_field(report, "reordered");
	CHECK(count >= 20000 && count <= 20000 + 64);
	CHECK(reordered <= 64);
	fprintf(stderr, "crash once: sink count %llu (duplicates %llu)\n",
		count, reordered);

	/* the store tells the rest: snapshots from two different processes,
	 * and the second one continued the count from the first one's last
	 * snapshot (a fresh start would end near 20000 - 5000) */
	char sp[128], why[300];
	snprintf(sp, sizeof sp, "%s/store", dir);
	tlcm_store_opts_t so = {.read_only = true};
	tlcm_store_t *st;
	CHECK_INT(tlcm_store_open(&st, sp, &so, why, sizeof why), 0);
	if (!st)
		return;
	tlcm_snap_info_t *l;
	size_t n;
	CHECK_INT(tlcm_store_list(st, "c", &l, &n), 0);
	uint64_t pids[2] = {0, 0}, last_count = 0;
	for (size_t i = 0; i < n; i++) {
		void *d;
		size_t len;
		if (tlcm_store_load(st, "c", l[i].version, &d, &len, NULL))
			continue;
		tlcm_TestState_table_t t = tlcm_TestState_as_root(d);
		uint64_t pid = tlcm_TestState_seq(t);
		if (!pids[0])
			pids[0] = pid;
		else if (pid != pids[0])
			pids[1] = pid;
		last_count = tlcm_TestState_count(t);
		free(d);
	}
	free(l);
	tlcm_store_close(st);
	CHECK(pids[0] && pids[1] && pids[0] != pids[1]);
	CHECK(last_count >= 20000);
}

/* ---- the rest of the graph keeps flowing while the child restarts ---- */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

static int port; /* a free loopback port, found at run time */

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	int p = 0;
	if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) &&
	    !getsockname(fd, (struct sockaddr *)&a, &l))
		p = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return p;
}

typedef struct {
	atomic_bool stop;
	/* samples: time, restarts of c, messages into the direct sink */
	uint64_t t[2000], restarts[2000], direct[2000];
	size_t n;
} poller_t;

static long json_field(const char *json, const char *node, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof pat, "\"id\":\"%s\"", node);
	const char *p = strstr(json, pat);
	if (!p)
		return -1;
	snprintf(pat, sizeof pat, "\"%s\":", key);
	p = strstr(p, pat);
	return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

static void *poll_stats(void *arg)
{
	poller_t *pl = arg;
	while (!atomic_load(&pl->stop) && pl->n < 2000) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_port = htons((uint16_t)port),
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		static char buf[65536];
		size_t got = 0;
		if (fd >= 0 && !connect(fd, (struct sockaddr *)&a, sizeof a)) {
			const char *req = "GET /api/v1/stats HTTP/1.1\r\nHost: x"
					  "\r\nConnection: close\r\n\r\n";
			if (write(fd, req, strlen(req)) > 0) {
				ssize_t k;
				while ((k = read(fd, buf + got,
						 sizeof buf - 1 - got)) > 0)
					got += (size_t)k;
			}
		}
		if (fd >= 0)
			close(fd);
		buf[got] = 0;
		long r = json_field(buf, "c", "restarts");
		long d = json_field(buf, "direct", "in");
		if (r >= 0 && d >= 0) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			pl->t[pl->n] = (uint64_t)ts.tv_sec * 1000000000u +
				       (uint64_t)ts.tv_nsec;
			pl->restarts[pl->n] = (uint64_t)r;
			pl->direct[pl->n++] = (uint64_t)d;
		}
		usleep(20000);
	}
	return NULL;
}

static void flow_during_restart(void)
{
	char yaml[1400];
	port = free_port();
	CHECK(port > 0);
	snprintf(yaml, sizeof yaml,
		 "graph: iso3\n"
		 "settings: { store: %s/store3, introspect: "
		 "'http://127.0.0.1:%d' }\n"
		 "nodes:\n"
		 "  src: { type: gen, params: { count: 30000, payload: 16, "
		 "rate_hz: 10000 } }\n"
		 "  c: { type: crasher, isolate: process, params: { crash_at: "
		 "3000, marker: %s/crashed3, restore_ms: 600 } }\n"
		 "  viac: { type: sink }\n"
		 "  direct: { type: sink, params: { expect: 30000 } }\n"
		 "edges:\n"
		 "  - { from: src.out, to: c.in, policy: drop_oldest, "
		 "capacity: 1MiB }\n"
		 "  - { from: src.out, to: direct.in }\n"
		 "  - { from: c.out, to: viac.in }\n", dir, port, dir);
	tlcm_graph_t *g = load(yaml);
	poller_t *pl = calloc(1, sizeof *pl);
	pthread_t th;
	pthread_create(&th, NULL, poll_stats, pl);
	tlcm_run_opts_t o = {.quiet = true};
	tlcm_run_result_t res;
	CHECK_INT(tlcm_graph_run(g, &o, &res), 0);
	atomic_store(&pl->stop, true);
	pthread_join(th, NULL);
	CHECK_UINT(res.nodes[1].restarts, 1);
	/* while the new child sleeps 600 ms in restore, the direct sink must
	 * keep receiving: compare its count over the samples taken in the
	 * first 400 ms after the restart was counted */
	uint64_t t_restart = 0, lo = UINT64_MAX, hi = 0;
	for (size_t i = 0; i < pl->n; i++) {
		if (pl->restarts[i] == 0)
			continue;
		if (!t_restart)
			t_restart = pl->t[i];
		if (pl->t[i] - t_restart > 400000000u)
			break;
		lo = pl->direct[i] < lo ? pl->direct[i] : lo;
		hi = pl->direct[i] > hi ? pl->direct[i] : hi;
	}
	CHECK(t_restart != 0);
	CHECK(hi > lo && lo != UINT64_MAX);
	fprintf(stderr, "during the restart the direct sink went from %llu to "
		"%llu messages (%zu samples)\n", (unsigned long long)lo,
		(unsigned long long)hi, pl->n);
	free(pl);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
}

/* GET path on the test port; the status code, the body in buf. */
static int http_get(const char *path, char *buf, size_t len)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	size_t got = 0;
	if (fd >= 0 && !connect(fd, (struct sockaddr *)&a, sizeof a)) {
		char req[200];
		int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x"
				 "\r\nConnection: close\r\n\r\n", path);
		if (write(fd, req, (size_t)n) == n) {
			ssize_t k;
			while ((k = read(fd, buf + got, len - 1 - got)) > 0)
				got += (size_t)k;
		}
	}
	if (fd >= 0)
		close(fd);
	buf[got] = 0;
	return got > 12 ? atoi(buf + 9) : 0;
}

static void crash_always(void)
{
	char yaml[1024];
	port = free_port();
	snprintf(yaml, sizeof yaml,
		 "graph: iso2\n"
		 "settings: { introspect: 'http://127.0.0.1:%d' }\n"
		 "nodes:\n"
		 "  src: { type: gen, params: { count: 3000, payload: 8, "
		 "rate_hz: 2000 } }\n"
		 "  c: { type: crasher, isolate: process, params: { crash_at: "
		 "10 } }\n"
		 "  sink: { type: sink }\n"
		 "edges:\n"
		 "  - { from: src.out, to: c.in }\n"
		 "  - { from: c.out, to: sink.in }\n", port);
	tlcm_graph_t *g = load(yaml);
	tlcm_run_opts_t o = {.quiet = true};
	tlcm_run_result_t res;
	/* the graph keeps running after giving up on c: health says so */
	pid_t pid = fork();
	if (pid == 0) {
		static char buf[8192];
		for (int i = 0; i < 200; i++) {
			usleep(10000);
			if (http_get("/api/v1/health", buf, sizeof buf) == 503 &&
			    strstr(buf, "kept crashing"))
				_exit(0);
		}
		_exit(1);
	}
	CHECK_INT(tlcm_graph_run(g, &o, &res), TLCM_EIO);
	int st;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0); /* saw 503 + reason */
	CHECK_CONTAINS(res.why, "node 'c' (type crasher) kept crashing");
	CHECK_UINT(res.nodes[1].restarts, 5);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
}

/* ---- the processes around an isolated node never outlive the graph ---- */

/* Wait up to 10 s for the pid file; the node's pid or 0. */
static pid_t wait_pidfile(const char *path)
{
	for (int i = 0; i < 1000; i++) {
		FILE *f = fopen(path, "r");
		int pid = 0;
		if (f) {
			if (fscanf(f, "%d", &pid) != 1)
				pid = 0;
			fclose(f);
		}
		if (pid > 0)
			return pid;
		usleep(10000);
	}
	return 0;
}

/* The parent of a process, from /proc; 0 if unknown. */
static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *p = strrchr(buf, ')'); /* the name may hold spaces */
	int ppid = 0;
	if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
		return 0;
	return ppid;
}

/* We are the subreaper, so the orphans come to us: true when pid ended by
 * SIGKILL within 10 s. */
static bool reaped_killed(pid_t pid)
{
	for (int i = 0; i < 1000; i++) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
		if (r < 0)
			return false;
		usleep(10000);
	}
	return false;
}

/* pid is gone within 10 s: reaped here (we are the subreaper), or no
 * longer our child and no longer alive (its parent reaped it). */
static bool gone(pid_t pid)
{
	for (int i = 0; i < 1000; i++) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return true;
		if (r < 0 && kill(pid, 0) != 0 && errno == ESRCH)
			return true;
		usleep(10000);
	}
	return false;
}

static const char *pid_graph(char *yaml, size_t cap, const char *pidfile)
{
	snprintf(yaml, cap,
		 "graph: iso3\n"
		 "settings: { introspect: 'off' }\n"
		 "nodes:\n"
		 "  src: { type: gen, params: { payload: 8, rate_hz: 1000 } }\n"
		 "  c: { type: crasher, isolate: process, params: { crash_at: "
		 "0, pidfile: %s } }\n"
		 "  sink: { type: sink }\n"
		 "edges:\n"
		 "  - { from: src.out, to: c.in }\n"
		 "  - { from: c.out, to: sink.in }\n", pidfile);
	return yaml;
}

static char zyg_pidfile[128];

static void *kill_zygote(void *arg)
{
	pid_t *out = arg;
	out[0] = wait_pidfile(zyg_pidfile);
	out[1] = out[0] ? parent_of(out[0]) : 0;
	if (out[1] > 0 && out[1] != getpid())
		kill(out[1], SIGKILL);
	return NULL;
}

/* The zygote dies: the node's process goes with it, the node is given
 * up (no restart can come) and the graph runs on and ends with a reason. */
static void zygote_killed(void)
{
	char yaml[1024];
	snprintf(zyg_pidfile, sizeof zyg_pidfile, "%s/zyg.pid", dir);
	unlink(zyg_pidfile);
	tlcm_graph_t *g = load(pid_graph(yaml, sizeof yaml, zyg_pidfile));
	tlcm_run_opts_t o = {.quiet = true, .headless = true,
			     .duration_s = 2};
	tlcm_run_result_t res;
	pid_t pids[2] = {0, 0};
	pthread_t t;
	pthread_create(&t, NULL, kill_zygote, pids);
	CHECK_INT(tlcm_graph_run(g, &o, &res), TLCM_EIO);
	pthread_join(t, NULL);
	CHECK(pids[0] > 0 && pids[1] > 0 && pids[1] != getpid());
	CHECK_CONTAINS(res.why, "node 'c': its zygote process is gone");
	CHECK(pids[0] > 0 && reaped_killed(pids[0]));
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
}

/* kill -9 of the graph process takes the zygote and the node's process
 * with it, so nothing keeps the rings busy: the zygote dies of its
 * parent-death signal or, when it sees the end of its socket first, kills
 * the node's process and exits (both happen, under load either first). */
static void graph_killed(void)
{
	char yaml[1024], pidfile[128];
	snprintf(pidfile, sizeof pidfile, "%s/graph.pid", dir);
	unlink(pidfile);
	tlcm_graph_t *g = load(pid_graph(yaml, sizeof yaml, pidfile));
	pid_t runner = fork();
	if (runner == 0) {
		tlcm_run_opts_t o = {.quiet = true, .headless = true};
		tlcm_run_result_t res;
		tlcm_graph_run(g, &o, &res);
		_exit(1); /* runs until killed */
	}
	pid_t node = wait_pidfile(pidfile);
	pid_t zygote = node ? parent_of(node) : 0;
	CHECK(node > 0 && zygote > 0 && zygote != runner);
	CHECK(parent_of(zygote) == runner);
	kill(runner, SIGKILL);
	int st;
	CHECK(waitpid(runner, &st, 0) == runner);
	CHECK(zygote > 0 && gone(zygote));
	CHECK(node > 0 && gone(node));
	tlcm_graph_free(g);
}

/* Only a producer of this process is trusted with "verified": the same
 * checked emits (tlcm_emit_end_checked) reach one sink from an isolated
 * node, whose process writes the ring, and another from a node in this
 * process; only the second sink may skip verifying. */
static void verified_not_from_isolated(void)
{
	char yaml[1024], ra[128], rb[128];
	snprintf(ra, sizeof ra, "%s/iso.json", dir);
	snprintf(rb, sizeof rb, "%s/local.json", dir);
	snprintf(yaml, sizeof yaml,
		 "graph: trust\n"
		 "settings: { store: %s/trust-store, introspect: 'off' }\n"
		 "nodes:\n"
		 "  iso: { type: gen, isolate: process, params: { count: 500, "
		 "checked: true } }\n"
		 "  local: { type: gen, params: { count: 500, checked: true } }\n"
		 "  a: { type: sink, params: { report: %s } }\n"
		 "  b: { type: sink, params: { report: %s } }\n"
		 "edges:\n"
		 "  - { from: iso.out, to: a.in }\n"
		 "  - { from: local.out, to: b.in }\n",
		 dir, ra, rb);
	tlcm_graph_t *g = load(yaml);
	tlcm_run_result_t res;
	run_ok(g, &res);
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
	CHECK_UINT(report_field(ra, "count"), 500);
	CHECK_UINT(report_field(ra, "verified"), 0);
	CHECK_UINT(report_field(rb, "count"), 500);
	CHECK_UINT(report_field(rb, "verified"), 500);
}

int main(void)
{
	/* orphans of the graphs run here become our children */
	CHECK_INT(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	tlcm_log_level = TLCM_LOG_ERROR;
	snprintf(dir, sizeof dir, "/tmp/tlcm-iso-test-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	tlcm_builtin_nodes(&reg);
	tlcm_registry_add(&reg, &crasher_type);
	/* first, while this process has no threads: graph_killed forks a
	 * process that runs a graph, and a fork of a threaded process may
	 * inherit a held allocator lock (see zygote_main in sched.c) */
	graph_killed();
	zygote_killed();
	crash_once();
	flow_during_restart();
	crash_always();
	verified_not_from_isolated();
	tlcm_registry_fini(&reg);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	CHECK_INT(system(cmd), 0);
	return tlcm_test_done();
}
