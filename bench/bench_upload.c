/* bench_upload.c — suite "upload": the uploader node draining an outbox of
 * 4 KiB packages to tlcm-test-server on loopback, against the curl CLI
 * doing the same uploads one process per request (what a shell script
 * would do).
 *
 * Per sync policy of the graph store (batch — the headline and the policy
 * of test_uploader's kill -9 test — always, never): a fresh store is
 * filled with n packages (not timed), then a graph with one `uploader`
 * node (exit_after: drained, defaults otherwise: pool thread, tick_budget
 * 20ms) runs to the end; the figure is n over the wall time of
 * tlcm_graph_run, so it includes the graph's start and stop and the sync's
 * ping and feedback request (it understates the steady rate a little).
 * Each package leaves the outbox in its own store batch after its 2xx, so
 * the policy matters. The server de-duplicates in memory (no --state) and
 * must see one connection per run (keep-alive); a run that needed more is
 * reported on stderr. The curl baseline sends m packages as files with
 * `curl -sS --fail -o /dev/null --data-binary @FILE` and the same headers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "bench/bench.h"
#include "engine/graph.h"
#include "engine/log.h"
#include "engine/outbox.h"
#include "engine/sched.h"
#include "engine/store.h"
#include "fb/package_fb.h"
#include "nodes/nodes.h"

#define SUITE "upload"
#define PKG_BYTES 4096
#define KEY "BENCHKEY"
#define DEV "bench-dev"

extern char **environ;

/* the suite (listed in main.c) */
int bench_suite_upload(const bench_opts_t *o);

static char dir[PATH_MAX];
static int data_port, ctl_port;
static pid_t server;

/* The server binary: $TLCM_TEST_SERVER, else next to this program. */
static int server_path(char *out, size_t cap)
{
	const char *e = getenv("TLCM_TEST_SERVER");
	if (e) {
		snprintf(out, cap, "%s", e);
		return access(out, X_OK);
	}
	char self[PATH_MAX - 32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return -1;
	self[n] = 0;
	char *sl = strrchr(self, '/');
	if (sl)
		*sl = 0;
	snprintf(out, cap, "%s/tlcm-test-server", self);
	return access(out, X_OK);
}

static int server_start(void)
{
	char bin[PATH_MAX], pf[PATH_MAX + 16];
	if (server_path(bin, sizeof bin)) {
		fprintf(stderr, SUITE ": tlcm-test-server not found (build "
			"it, or set TLCM_TEST_SERVER)\n");
		return -1;
	}
	snprintf(pf, sizeof pf, "%s/ports", dir);
	const char *argv[] = {bin, "--port-file", pf, "--api-key", KEY, NULL};
	server = fork();
	if (server == 0) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0)
			dup2(fd, 2);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		FILE *f = fopen(pf, "r");
		if (f) {
			int ok = fscanf(f, "%d %d", &data_port, &ctl_port) == 2;
			fclose(f);
			if (ok)
				return 0;
		}
		usleep(10000);
	}
	fprintf(stderr, SUITE ": %s did not start\n", bin);
	return -1;
}

static void server_stop(void)
{
	if (server > 0) {
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
	}
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	char **b = arg;
	size_t old = *b ? strlen(*b) : 0, len = sz * n;
	char *nb = realloc(*b, old + len + 1);
	if (!nb)
		return 0;
	memcpy(nb + old, p, len);
	nb[old + len] = 0;
	*b = nb;
	return len;
}

/* A number from the server's /_test/stats; -1 when unreadable. */
static double server_stat(const char *key)
{
	CURL *c = curl_easy_init();
	char url[128], *out = NULL;
	snprintf(url, sizeof url, "http://127.0.0.1:%d/_test/stats",
		 ctl_port);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
	CURLcode rc = curl_easy_perform(c);
	curl_easy_cleanup(c);
	cJSON *j = rc ? NULL : cJSON_Parse(out ? out : "");
	free(out);
	const cJSON *i = cJSON_GetObjectItemCaseSensitive(j, key);
	double v = cJSON_IsNumber(i) ? i->valuedouble : -1;
	cJSON_Delete(j);
	return v;
}

static void mkid(char *id, unsigned set, uint64_t seq)
{
	snprintf(id, TLCM_PKG_ID_LEN + 1, "01910000-%04x-7000-8000-%012llx",
		 set & 0xffff, (unsigned long long)seq & 0xffffffffffffull);
}

/* A Package of exactly PKG_BYTES bytes (the payload sized to fit). */
static void *mkpkg(const char *id, uint8_t prio, size_t *len)
{
	static const char *const kinds[] = {"metrics", "drift_event",
					    "operational_logs",
					    "prediction_images"};
	size_t payload = PKG_BYTES - 200;
	for (int tries = 0; tries < 3; tries++) {
		tlcm_fbb_t b;
		tlcm_fbb_init(&b, PKG_BYTES + 512);
		uint8_t *pl = malloc(payload);
		for (size_t i = 0; i < payload; i++)
			pl[i] = (uint8_t)(i * 31 + (uint8_t)id[35]);
		tlcm_fbb_ref_t rid = tlcm_fbb_cstring(&b, id);
		tlcm_fbb_ref_t rdev = tlcm_fbb_cstring(&b, DEV);
		tlcm_fbb_ref_t rk = tlcm_fbb_cstring(&b, kinds[(prio - 1) % 4]);
		tlcm_fbb_ref_t rp = tlcm_Package_payload_create(&b, pl,
								payload);
		free(pl);
		tlcm_Package_start(&b);
		tlcm_Package_add_id(&b, rid);
		tlcm_Package_add_device_id(&b, rdev);
		tlcm_Package_add_kind(&b, rk);
		tlcm_Package_add_priority(&b, prio);
		tlcm_Package_add_raw_size(&b, payload);
		tlcm_Package_add_count(&b, 1);
		tlcm_Package_add_payload(&b, rp);
		size_t n;
		const void *p = tlcm_fbb_finish(&b, tlcm_Package_end(&b),
						tlcm_Package_IDENTIFIER, &n);
		void *out = NULL;
		if (p && n == PKG_BYTES) {
			out = malloc(n);
			memcpy(out, p, n);
			*len = n;
		}
		tlcm_fbb_fini(&b);
		if (out || !p)
			return out;
		payload += PKG_BYTES - n; /* n != PKG_BYTES: adjust once */
	}
	return NULL;
}

static int rm_one(const char *p, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* Fill a fresh store with n packages of set `set`. */
static int fill(const char *store, tlcm_sync_t sync, unsigned set, size_t n)
{
	nftw(store, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	char why[512];
	tlcm_store_opts_t so = {.sync = TLCM_SYNC_NEVER};
	(void)sync; /* filling is not measured: never sync */
	tlcm_store_t *s;
	if (tlcm_store_open(&s, store, &so, why, sizeof why)) {
		fprintf(stderr, SUITE ": %s\n", why);
		return -1;
	}
	tlcm_outbox_t *o = tlcm_store_outbox(s);
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		tlcm_outbox_entry_t e = {.priority = (uint8_t)(1 + i % 4),
					 .created_ns = 1000 + i};
		mkid(e.id, set, i);
		snprintf(e.kind, sizeof e.kind, "k%u", e.priority);
		size_t len;
		void *p = mkpkg(e.id, e.priority, &len);
		rc = p ? tlcm_outbox_put(o, &e, p, len, NULL, 0, NULL) : -1;
		free(p);
	}
	tlcm_store_close(s);
	return rc;
}

/* Run the uploader over the store until it is drained; wall seconds, or
 * < 0 when it failed. */
static double drain(const tlcm_registry_t *reg, const char *store,
		    tlcm_sync_t sync)
{
	char yaml[PATH_MAX + 1024], path[PATH_MAX + 32];
	snprintf(yaml, sizeof yaml,
		 "graph: bench-upload\n"
		 "settings: { workers: 2, introspect: 'off', store: '%s', "
		 "sync: %s }\n"
		 "nodes:\n"
		 "  up: { type: uploader, params: { url: "
		 "'http://127.0.0.1:%d/api/v1', device_id: " DEV ", "
		 "api_key: " KEY ", register: false, battery: 'off', "
		 "exit_after: drained } }\n",
		 store, tlcm_sync_name(sync), data_port);
	snprintf(path, sizeof path, "%s/upload.yaml", dir);
	FILE *f = fopen(path, "w");
	if (!f || fputs(yaml, f) < 0 || fclose(f))
		return -1;
	tlcm_graph_t *g = NULL;
	tlcm_diag_t d = {0};
	if (tlcm_graph_load(&g, path, reg, NULL, 0, &d)) {
		tlcm_diag_print(&d, stderr);
		tlcm_diag_fini(&d);
		return -1;
	}
	tlcm_diag_fini(&d);
	tlcm_run_opts_t ro = {.quiet = true, .headless = true};
	tlcm_run_result_t res;
	int rc = tlcm_graph_run(g, &ro, &res);
	double s = res.seconds;
	if (rc)
		fprintf(stderr, SUITE ": uploader run failed: %s\n",
			res.why[0] ? res.why : tlcm_strerror(rc));
	tlcm_run_result_fini(&res);
	tlcm_graph_free(g);
	return rc ? -1 : s;
}

/* m uploads with the curl CLI, one process each; seconds, < 0 failed. */
static double curl_cli(unsigned set, size_t m)
{
	char url[128], files[PATH_MAX + 8];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/api/v1/packages",
		 data_port);
	snprintf(files, sizeof files, "%s/cli", dir);
	mkdir(files, 0755);
	for (size_t i = 0; i < m; i++) {
		char id[TLCM_PKG_ID_LEN + 1], p[PATH_MAX + 64];
		mkid(id, set, i);
		snprintf(p, sizeof p, "%s/%s", files, id);
		size_t len;
		void *b = mkpkg(id, 1, &len);
		FILE *f = fopen(p, "w");
		if (!b || !f || fwrite(b, 1, len, f) != len) {
			free(b);
			if (f)
				fclose(f);
			return -1;
		}
		fclose(f);
		free(b);
	}
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < m; i++) {
		char id[TLCM_PKG_ID_LEN + 1], data[PATH_MAX + 80],
			idem[80];
		mkid(id, set, i);
		snprintf(data, sizeof data, "@%s/%s", files, id);
		snprintf(idem, sizeof idem, "Idempotency-Key: %s", id);
		const char *argv[] = {
			"curl", "-sS", "--fail", "-o", "/dev/null", "-X",
			"POST", url, "-H", "X-Device-ID: " DEV, "-H",
			"X-API-Key: " KEY, "-H", idem, "-H",
			"Content-Type: application/x-tinylcm-package",
			"--data-binary", data, NULL};
		pid_t pid;
		if (posix_spawnp(&pid, "curl", NULL, NULL,
				 (char *const *)argv, environ))
			return -1;
		int st;
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
		    WEXITSTATUS(st))
			return -1;
	}
	return (double)(bench_now_ns() - t0) / 1e9;
}

int bench_suite_upload(const bench_opts_t *o)
{
	snprintf(dir, sizeof dir, "/tmp/tlcm-bench-upload-XXXXXX");
	if (!mkdtemp(dir)) {
		perror(SUITE ": mkdtemp");
		return 1;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int level = tlcm_log_level;
	tlcm_log_level = TLCM_LOG_WARN; /* no per-run start-up lines */
	tlcm_registry_t reg = {0};
	int ret = 1;
	if (tlcm_builtin_nodes(&reg) || server_start())
		goto out;
	size_t n = (size_t)lround(5000 * o->scale), m = (size_t)lround(
		300 * o->scale);
	if (n < 20)
		n = 20;
	if (m < 5)
		m = 5;
	int runs = o->runs < 1 ? 1 : o->runs > 64 ? 64 : o->runs;
	unsigned set = 1;

	/* the baseline first: it does not depend on the policy */
	double cli[64];
	int ncli = 0;
	bool have_cli = true;
	for (int r = 0; r < runs && have_cli; r++) {
		double s = curl_cli(set++, m);
		if (s <= 0) {
			fprintf(stderr, SUITE ": the curl CLI failed (not "
				"installed?); no baseline\n");
			have_cli = false;
			break;
		}
		cli[ncli++] = (double)m / s;
	}
	double cli_rate = have_cli ? bench_median(cli, ncli) : 0;
	if (have_cli) {
		bench_report(SUITE, "curl_cli_process_per_request",
			     "packages_per_s", cli_rate, m, ncli, NULL, 0);
	}
	static const tlcm_sync_t pol[] = {TLCM_SYNC_BATCH, TLCM_SYNC_ALWAYS,
					  TLCM_SYNC_NEVER};
	char store[PATH_MAX + 16];
	snprintf(store, sizeof store, "%s/store", dir);
	for (size_t p = 0; p < 3; p++) {
		double v[64];
		int nv = 0;
		for (int r = -1; r < runs; r++) { /* r -1: warm-up */
			if (fill(store, pol[p], set, n))
				goto out;
			double c0 = server_stat("connections");
			double st0 = server_stat("stored");
			double s = drain(&reg, store, pol[p]);
			double c1 = server_stat("connections");
			double st1 = server_stat("stored");
			set++;
			if (s <= 0)
				goto out;
			if (st1 - st0 != (double)n) {
				fprintf(stderr, SUITE ": the server stored "
					"%.0f of %zu packages; not reported\n",
					st1 - st0, n);
				goto out;
			}
			if (c1 - c0 != 1)
				fprintf(stderr, SUITE ": sync %s: %.0f "
					"connections in one run (keep-alive "
					"expected 1)\n",
					tlcm_sync_name(pol[p]), c1 - c0);
			if (r >= 0)
				v[nv++] = (double)n / s;
		}
		char kase[96];
		snprintf(kase, sizeof kase, "uploader_4KiB_keepalive_sync_%s",
			 tlcm_sync_name(pol[p]));
		bench_base_t base = {"curl_cli_process_per_request",
				     cli_rate};
		bench_report(SUITE, kase, "packages_per_s",
			     bench_median(v, nv), n, nv, &base,
			     have_cli ? 1 : 0);
	}
	ret = 0;
out:
	tlcm_log_level = level;
	server_stop();
	tlcm_registry_fini(&reg);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return ret;
}
