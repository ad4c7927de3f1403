/* test_io.c — the io_uring reactor: whole-file reads, short reads and EOF,
 * writes and fsync, errors, timers, the syscall fallback, and a graph whose
 * file-reading node goes through it (io_uring submissions counted).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/graph.h"
#include "engine/io.h"
#include "engine/log.h"
#include "engine/sched.h"
#include "nodes/nodes.h"
#include "tests/tlcm_test.h"

static char dir[64];

static void path(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

static void basics(void)
{
	char p[128];
	path(p, sizeof p, "data");
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	static unsigned char buf[100003];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)(i * 7);
	CHECK_INT(tlcm_io_pwrite(fd, buf, sizeof buf, 0), sizeof buf);
	CHECK_INT(tlcm_io_fsync(fd), 0);

	/* short read at the end, then EOF */
	unsigned char got[64];
	CHECK_INT(tlcm_io_pread(fd, got, 64, sizeof buf - 10), 10);
	CHECK(memcmp(got, buf + sizeof buf - 10, 10) == 0);
	CHECK_INT(tlcm_io_pread(fd, got, 64, sizeof buf), 0);
	CHECK_INT(tlcm_io_pread(fd, got, 64, sizeof buf + 5000), 0);
	close(fd);
	CHECK_INT(tlcm_io_pread(fd, got, 64, 0), TLCM_EINVAL); /* closed fd */

	void *d;
	size_t len;
	CHECK_INT(tlcm_io_read_file(p, 1 << 20, &d, &len), 0);
	CHECK_UINT(len, sizeof buf);
	CHECK(d && memcmp(d, buf, len) == 0 && ((char *)d)[len] == 0);
	free(d);
	CHECK_INT(tlcm_io_read_file(p, 1000, &d, &len), TLCM_ETOOBIG);
	CHECK(d == NULL);
	CHECK_INT(tlcm_io_read_file("/nonexistent/file", 100, &d, &len),
		  TLCM_ENOENT);
	CHECK_INT(tlcm_io_read_file(dir, 100, &d, &len), TLCM_EINVAL);
	char e[128];
	path(e, sizeof e, "empty");
	close(open(e, O_WRONLY | O_CREAT, 0644));
	CHECK_INT(tlcm_io_read_file(e, 100, &d, &len), 0);
	CHECK_UINT(len, 0);
	free(d);
	CHECK_INT(tlcm_io_sleep(1000000), 0);

	/* io_uring did the work where the kernel offers it */
	tlcm_io_stats_t st;
	tlcm_io_stats(&st);
	if (st.uring)
		CHECK(st.submissions > 0);
	else
		tlcm_test_skip("io_uring unavailable on this kernel");
	fprintf(stderr, "io_uring submissions: %llu\n",
		(unsigned long long)st.submissions);
}

static void *fallback_thread(void *arg)
{
	const char *p = arg;
	void *d;
	size_t len;
	CHECK_INT(tlcm_io_read_file(p, 1 << 20, &d, &len), 0);
	CHECK_UINT(len, 100003);
	free(d);
	CHECK_INT(tlcm_io_sleep(1000), 0);
	return NULL;
}

static void fallback(void)
{
	char p[128];
	path(p, sizeof p, "data");
	tlcm_io_stats_t a, b;
	tlcm_io_stats(&a);
	tlcm_io_force_fallback(true);
	pthread_t t; /* a new thread: its ring is decided on first use */
	pthread_create(&t, NULL, fallback_thread, p);
	pthread_join(t, NULL);
	tlcm_io_force_fallback(false);
	tlcm_io_stats(&b);
	CHECK(b.fallbacks > a.fallbacks);
	CHECK_UINT(b.submissions, a.submissions);
}

static void graph(void)
{
	char data[128], g[128], yaml[512];
	path(data, sizeof data, "data");
	path(g, sizeof g, "g.yaml");
	/* 100003 bytes in 4 KiB chunks: 25 messages, the last one short */
	snprintf(yaml, sizeof yaml,
		 "graph: io\n"
		 "nodes:\n"
		 "  f: { type: file, params: { path: %s, chunk: 4KiB } }\n"
		 "  s: { type: sink, params: { expect: 25 } }\n"
		 "edges: [ { from: f.out, to: s.in } ]\n", data);
	FILE *fp = fopen(g, "w");
	fputs(yaml, fp);
	fclose(fp);
	tlcm_registry_t reg = {0};
	tlcm_builtin_nodes(&reg);
	tlcm_graph_t *gr;
	tlcm_diag_t diag = {0};
	CHECK_INT(tlcm_graph_load(&gr, g, &reg, NULL, 0, &diag), 0);
	tlcm_diag_print(&diag, stderr);
	tlcm_diag_fini(&diag);
	tlcm_io_stats_t a, b;
	tlcm_io_stats(&a);
	tlcm_run_opts_t o = {.quiet = true};
	tlcm_run_result_t res;
	CHECK_INT(tlcm_graph_run(gr, &o, &res), 0); /* sink checks checksums */
	CHECK_UINT(res.nodes[1].in, 25);
	tlcm_io_stats(&b);
	if (b.uring)
		CHECK(b.submissions >= a.submissions + 26); /* 25 + EOF */
	tlcm_run_result_fini(&res);
	tlcm_graph_free(gr);

	/* a missing file fails the start, naming the node */
	const char *sets[] = {"f.path=/nonexistent/input"};
	CHECK_INT(tlcm_graph_load(&gr, g, &reg, sets, 1, &diag), 0);
	CHECK_INT(tlcm_graph_run(gr, &o, &res), TLCM_ENOENT);
	CHECK_CONTAINS(res.why, "node 'f' (type file) failed to start");
	tlcm_run_result_fini(&res);
	tlcm_graph_free(gr);
	tlcm_registry_fini(&reg);
}

int main(void)
{
	tlcm_log_level = TLCM_LOG_ERROR;
	snprintf(dir, sizeof dir, "/tmp/tlcm-io-test-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	basics();
	fallback();
	graph();
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	CHECK_INT(system(cmd), 0);
	return tlcm_test_done();
}
