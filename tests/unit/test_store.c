/* test_store.c — the RocksDB state store: key/value, batches, versioned and
 * group snapshots, rollback, persistence, corrupt and foreign stores, the
 * lock, and kill -9 during synced writes (nothing acknowledged is lost).
 */
#define _GNU_SOURCE
#include <rocksdb/c.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/log.h"
#include "engine/store.h"
#include "tests/tlcm_test.h"

static char root[256];

static void path_of(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", root, name);
}

static tlcm_store_t *open_ok(const char *name, tlcm_sync_t sync,
			     unsigned keep)
{
	char p[512], why[600];
	path_of(p, sizeof p, name);
	tlcm_store_opts_t o = {.sync = sync, .keep = keep};
	tlcm_store_t *s = NULL;
	int rc = tlcm_store_open(&s, p, &o, why, sizeof why);
	if (rc)
		fprintf(stderr, "open %s: %s\n", p, why);
	CHECK_INT(rc, 0);
	return s;
}

static void kv_and_batches(void)
{
	tlcm_store_t *s = open_ok("kv", TLCM_SYNC_ALWAYS, 0);
	CHECK_INT(tlcm_store_put(s, "outbox", "k1", 2, "v1", 2), 0);
	void *v;
	size_t n;
	CHECK_INT(tlcm_store_get(s, "outbox", "k1", 2, &v, &n), 0);
	CHECK(n == 2 && !memcmp(v, "v1", 2));
	free(v);
	CHECK_INT(tlcm_store_get(s, "outbox", "nope", 4, &v, &n), TLCM_ENOENT);
	CHECK_INT(tlcm_store_get(s, "no-such-family", "k", 1, &v, &n),
		  TLCM_ENOENT);
	tlcm_batch_t *b = tlcm_batch_new();
	CHECK_INT(tlcm_batch_put(s, b, "dedup", "a", 1, "1", 1), 0);
	CHECK_INT(tlcm_batch_put(s, b, "node/x", "b", 1, "2", 1), 0);
	CHECK_INT(tlcm_batch_delete(s, b, "outbox", "k1", 2), 0);
	CHECK_INT(tlcm_store_write(s, b), 0);
	tlcm_batch_free(b);
	CHECK_INT(tlcm_store_get(s, "dedup", "a", 1, &v, &n), 0);
	free(v);
	CHECK_INT(tlcm_store_get(s, "node/x", "b", 1, &v, &n), 0);
	free(v);
	CHECK_INT(tlcm_store_get(s, "outbox", "k1", 2, &v, &n), TLCM_ENOENT);
	tlcm_store_close(s);

	/* reopened: the family created on the fly is back */
	s = open_ok("kv", TLCM_SYNC_BATCH, 0);
	CHECK_INT(tlcm_store_get(s, "node/x", "b", 1, &v, &n), 0);
	CHECK(n == 1 && *(char *)v == '2');
	free(v);
	tlcm_store_close(s);
}

/* Node families asked for at open exist from then on, empty; a node's
 * snapshot lands in its own; reopening with another list adds to them. */
static void families_at_open(void)
{
	char p[512], why[600];
	path_of(p, sizeof p, "families");
	const char *const first[] = {"a", "b"}, *const second[] = {"a", "c"};
	tlcm_store_opts_t o = {.sync = TLCM_SYNC_NEVER, .nodes = first,
			       .nnodes = 2};
	tlcm_store_t *s = NULL;
	CHECK_INT(tlcm_store_open(&s, p, &o, why, sizeof why), 0);
	if (!s)
		return;
	CHECK(tlcm_store_has_family(s, "node/a"));
	CHECK(tlcm_store_has_family(s, "node/b"));
	CHECK(!tlcm_store_has_family(s, "node/c"));
	uint64_t v = 0;
	CHECK_INT(tlcm_store_snapshot(s, "a", "state", 5, "test", &v), 0);
	tlcm_store_close(s);
	o.nodes = second;
	CHECK_INT(tlcm_store_open(&s, p, &o, why, sizeof why), 0);
	if (!s)
		return;
	CHECK(tlcm_store_has_family(s, "node/b"));
	CHECK(tlcm_store_has_family(s, "node/c"));
	void *data = NULL;
	size_t len = 0;
	CHECK_INT(tlcm_store_load(s, "a", 0, &data, &len, NULL), 0);
	CHECK(len == 5 && data && !memcmp(data, "state", 5));
	free(data);
	tlcm_store_close(s);
	/* read-only: nothing created */
	const char *const third[] = {"d"};
	tlcm_store_opts_t ro = {.read_only = true, .nodes = third,
				.nnodes = 1};
	CHECK_INT(tlcm_store_open(&s, p, &ro, why, sizeof why), 0);
	if (s) {
		CHECK(!tlcm_store_has_family(s, "node/d"));
		tlcm_store_close(s);
	}
}

static void snapshots(void)
{
	tlcm_store_t *s = open_ok("snap", TLCM_SYNC_ALWAYS, 5);
	char data[64];
	uint64_t v = 0;
	for (int i = 1; i <= 7; i++) {
		int len = snprintf(data, sizeof data, "state %d", i);
		CHECK_INT(tlcm_store_snapshot(s, "knn", data, (size_t)len,
					      "test", &v), 0);
		CHECK_UINT(v, (uint64_t)i);
	}
	tlcm_snap_info_t *l;
	size_t n;
	CHECK_INT(tlcm_store_list(s, "knn", &l, &n), 0);
	CHECK_UINT(n, 5); /* keep 5 */
	CHECK(n == 5 && l[0].version == 3 && l[4].version == 7 && l[4].intact);
	CHECK_STR(n ? l[0].reason : "", "test");
	free(l);
	void *d;
	size_t len;
	tlcm_snap_info_t info;
	CHECK_INT(tlcm_store_load(s, "knn", 0, &d, &len, &info), 0);
	CHECK(len == 7 && !memcmp(d, "state 7", 7));
	CHECK_UINT(info.version, 7);
	CHECK(info.time_ns > 0);
	free(d);
	CHECK_INT(tlcm_store_load(s, "knn", 2, &d, &len, NULL), TLCM_ENOENT);
	CHECK_INT(tlcm_store_load(s, "nobody", 0, &d, &len, NULL), TLCM_ENOENT);

	/* rollback writes the old state as a new version */
	uint64_t nv;
	CHECK_INT(tlcm_store_rollback(s, "knn", 4, &nv), 0);
	CHECK_UINT(nv, 8);
	CHECK_INT(tlcm_store_load(s, "knn", 0, &d, &len, &info), 0);
	CHECK(len == 7 && !memcmp(d, "state 4", 7));
	CHECK_STR(info.reason, "rollback to v4");
	free(d);

	/* a group snapshot rolls back as one */
	const char *nodes[2] = {"adapt", "knn"};
	const void *datas[2] = {"A1", "K-group"};
	size_t lens[2] = {2, 7};
	uint64_t vers[2];
	CHECK_INT(tlcm_store_snapshot_group(s, 2, nodes, datas, lens,
					    "adaptation", vers), 0);
	CHECK_UINT(vers[0], 1);
	CHECK_UINT(vers[1], 9);
	CHECK_INT(tlcm_store_snapshot(s, "adapt", "A2", 2, "later", NULL), 0);
	CHECK_INT(tlcm_store_snapshot(s, "knn", "K-later", 7, "later", NULL), 0);
	CHECK_INT(tlcm_store_rollback(s, "adapt", 1, &nv), 0);
	CHECK_UINT(nv, 3);
	CHECK_INT(tlcm_store_load(s, "knn", 0, &d, &len, &info), 0);
	CHECK(len == 7 && !memcmp(d, "K-group", 7)); /* knn went back too */
	CHECK(info.group != 0);
	free(d);
	const char *dup[2] = {"knn", "knn"};
	CHECK_INT(tlcm_store_snapshot_group(s, 2, dup, datas, lens, "x", vers),
		  TLCM_EINVAL);
	char report[1024];
	CHECK_INT(tlcm_store_check(s, report, sizeof report), 0);
	tlcm_store_close(s);
}

static void corrupt_and_foreign(void)
{
	char p[512], why[600];
	tlcm_store_t *s = open_ok("bad", TLCM_SYNC_ALWAYS, 5);
	CHECK_INT(tlcm_store_snapshot(s, "n", "good", 4, "ok", NULL), 0);
	/* overwrite version 1 with junk behind the store's back */
	CHECK_INT(tlcm_store_put(s, "node/n", "snap/0000000000000002", 21,
				 "garbage that is no header", 25), 0);
	void *d;
	size_t len;
	CHECK_INT(tlcm_store_load(s, "n", 2, &d, &len, NULL), TLCM_ECORRUPT);
	char report[1024];
	CHECK_INT(tlcm_store_check(s, report, sizeof report), 1);
	CHECK_CONTAINS(report, "node n version 2 is corrupt");
	/* and a real snapshot whose bytes were changed: CRC mismatch */
	void *raw;
	size_t rl;
	CHECK_INT(tlcm_store_get(s, "node/n", "snap/0000000000000001", 21, &raw,
				 &rl), 0);
	((char *)raw)[rl - 1] ^= 0x40;
	CHECK_INT(tlcm_store_put(s, "node/n", "snap/0000000000000001", 21, raw,
				 rl), 0);
	free(raw);
	CHECK_INT(tlcm_store_load(s, "n", 1, &d, &len, NULL), TLCM_ECORRUPT);
	CHECK_INT(tlcm_store_check(s, report, sizeof report), 2);
	tlcm_store_close(s);

	/* not a directory, junk directory, foreign RocksDB, missing */
	tlcm_store_t *x;
	path_of(p, sizeof p, "plainfile");
	FILE *f = fopen(p, "w");
	fputs("hello", f);
	fclose(f);
	CHECK_INT(tlcm_store_open(&x, p, NULL, why, sizeof why), TLCM_ECORRUPT);
	CHECK_CONTAINS(why, "is not a directory");
	path_of(p, sizeof p, "junkdir");
	mkdir(p, 0755);
	char jp[600];
	snprintf(jp, sizeof jp, "%s/notes.txt", p);
	f = fopen(jp, "w");
	fputs("x", f);
	fclose(f);
	CHECK_INT(tlcm_store_open(&x, p, NULL, why, sizeof why), TLCM_ECORRUPT);
	CHECK_CONTAINS(why, "is not a TinyLCM store");
	/* killed while RocksDB created the database, before CURRENT: what
	 * it left is no database, and the store is created over it */
	path_of(p, sizeof p, "halfcreated");
	mkdir(p, 0755);
	const char *left[] = {"LOCK", "IDENTITY", "LOG", "MANIFEST-000001"};
	for (size_t i = 0; i < 4; i++) {
		snprintf(jp, sizeof jp, "%s/%s", p, left[i]);
		f = fopen(jp, "w");
		fclose(f);
	}
	CHECK_INT(tlcm_store_open(&x, p, NULL, why, sizeof why), 0);
	CHECK_INT(tlcm_store_put(x, "n", "k", 1, "v", 1), 0);
	tlcm_store_close(x);
	CHECK_INT(tlcm_store_open(&x, p, NULL, why, sizeof why), 0);
	tlcm_store_close(x);
	/* ... but not with anything else beside it */
	path_of(p, sizeof p, "halfcreated2");
	mkdir(p, 0755);
	snprintf(jp, sizeof jp, "%s/LOCK", p);
	f = fopen(jp, "w");
	fclose(f);
	snprintf(jp, sizeof jp, "%s/data.bin", p);
	f = fopen(jp, "w");
	fclose(f);
	CHECK_INT(tlcm_store_open(&x, p, NULL, why, sizeof why), TLCM_ECORRUPT);
	CHECK_CONTAINS(why, "is not a TinyLCM store");
	path_of(p, sizeof p, "foreign");
	rocksdb_options_t *ro = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(ro, 1);
	char *err = NULL;
	rocksdb_t *db = rocksdb_open(ro, p, &err);
	CHECK(db && !err);
	rocksdb_close(db);
	rocksdb_options_destroy(ro);
	CHECK_INT(tlcm_store_open(&x, p, NULL, why, sizeof why), TLCM_ECORRUPT);
	CHECK_CONTAINS(why, "not a TinyLCM store");
	/* killed between RocksDB creating our families and the format
	 * marker: still ours (empty, only our families), adopted */
	path_of(p, sizeof p, "unfinished");
	ro = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(ro, 1);
	rocksdb_options_set_create_missing_column_families(ro, 1);
	const char *fams[] = {"default", "meta", "outbox"};
	const rocksdb_options_t *fo[] = {ro, ro, ro};
	rocksdb_column_family_handle_t *h[3];
	db = rocksdb_open_column_families(ro, p, 3, fams, fo, h, &err);
	CHECK(db && !err);
	for (int i = 0; db && i < 3; i++)
		rocksdb_column_family_handle_destroy(h[i]);
	if (db)
		rocksdb_close(db);
	rocksdb_options_destroy(ro);
	/* (with node families asked for: created now, they are no sign of
	 * somebody else's database) */
	const char *const nodes[] = {"knn", "q"};
	tlcm_store_opts_t no = {.nodes = nodes, .nnodes = 2};
	CHECK_INT(tlcm_store_open(&x, p, &no, why, sizeof why), 0);
	if (x) {
		CHECK(tlcm_store_has_family(x, "node/q"));
		CHECK_INT(tlcm_store_put(x, "n", "k", 1, "v", 1), 0);
		tlcm_store_close(x);
	}
	/* the same families with data in them: somebody else's */
	path_of(p, sizeof p, "foreign2");
	ro = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(ro, 1);
	rocksdb_options_set_create_missing_column_families(ro, 1);
	const rocksdb_options_t *fo2[] = {ro, ro, ro};
	db = rocksdb_open_column_families(ro, p, 3, fams, fo2, h, &err);
	CHECK(db && !err);
	if (db) {
		rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
		rocksdb_put_cf(db, wo, h[2], "k", 1, "v", 1, &err);
		CHECK(!err);
		rocksdb_writeoptions_destroy(wo);
		for (int i = 0; i < 3; i++)
			rocksdb_column_family_handle_destroy(h[i]);
		rocksdb_close(db);
	}
	rocksdb_options_destroy(ro);
	CHECK_INT(tlcm_store_open(&x, p, NULL, why, sizeof why), TLCM_ECORRUPT);
	CHECK_CONTAINS(why, "not a TinyLCM store");
	/* killed while creating it (TINYLCM-CREATING is still there): what
	 * RocksDB made is removed and the store made again; here a marker
	 * of another format stands in for it, so an open that kept it fails */
	path_of(p, sizeof p, "cut");
	ro = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(ro, 1);
	rocksdb_options_set_create_missing_column_families(ro, 1);
	const char *fams2[] = {"default", "meta"};
	const rocksdb_options_t *fo3[] = {ro, ro};
	db = rocksdb_open_column_families(ro, p, 2, fams2, fo3, h, &err);
	CHECK(db && !err);
	if (db) {
		rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
		rocksdb_put_cf(db, wo, h[1], "format", 6, "other/9", 7, &err);
		CHECK(!err);
		rocksdb_writeoptions_destroy(wo);
		for (int i = 0; i < 2; i++)
			rocksdb_column_family_handle_destroy(h[i]);
		rocksdb_close(db);
	}
	rocksdb_options_destroy(ro);
	snprintf(jp, sizeof jp, "%s/TINYLCM-CREATING", p);
	f = fopen(jp, "w");
	fclose(f);
	tlcm_store_opts_t ro_opts = {.read_only = true};
	CHECK_INT(tlcm_store_open(&x, p, &ro_opts, why, sizeof why),
		  TLCM_ECORRUPT);
	CHECK_CONTAINS(why, "was never finished");
	CHECK_INT(tlcm_store_open(&x, p, NULL, why, sizeof why), 0);
	if (x) {
		CHECK_INT(tlcm_store_put(x, "n", "k", 1, "v", 1), 0);
		tlcm_store_close(x);
	}
	CHECK(access(jp, F_OK) != 0); /* gone once created */
	CHECK_INT(tlcm_store_open(&x, p, &ro_opts, why, sizeof why), 0);
	tlcm_store_close(x);
	/* one being created by another process (it holds the lock on
	 * TINYLCM-CREATING): busy, nothing touched; then ours */
	path_of(p, sizeof p, "busy");
	mkdir(p, 0755);
	snprintf(jp, sizeof jp, "%s/TINYLCM-CREATING", p);
	int lk = open(jp, O_WRONLY | O_CREAT, 0644);
	CHECK(lk >= 0 && flock(lk, LOCK_EX) == 0);
	CHECK_INT(tlcm_store_open(&x, p, NULL, why, sizeof why), TLCM_EBUSY);
	CHECK_CONTAINS(why, "being created by another process");
	close(lk);
	CHECK_INT(tlcm_store_open(&x, p, NULL, why, sizeof why), 0);
	tlcm_store_close(x);
	CHECK(access(jp, F_OK) != 0);
	path_of(p, sizeof p, "missing");
	tlcm_store_opts_t must = {.must_exist = true};
	CHECK_INT(tlcm_store_open(&x, p, &must, why, sizeof why), TLCM_ENOENT);
	CHECK_CONTAINS(why, "no store at");
}

static void lock(void)
{
	char p[512], why[600];
	tlcm_store_t *s = open_ok("locked", TLCM_SYNC_ALWAYS, 5);
	CHECK_INT(tlcm_store_snapshot(s, "n", "x", 1, "r", NULL), 0);
	path_of(p, sizeof p, "locked");
	tlcm_store_t *t;
	CHECK_INT(tlcm_store_open(&t, p, NULL, why, sizeof why), TLCM_EBUSY);
	CHECK_CONTAINS(why, "in use by another process");
	tlcm_store_opts_t ro = {.read_only = true};
	CHECK_INT(tlcm_store_open(&t, p, &ro, why, sizeof why), 0);
	tlcm_snap_info_t *l;
	size_t n;
	if (t) {
		CHECK_INT(tlcm_store_list(t, NULL, &l, &n), 0);
		CHECK_UINT(n, 1);
		free(l);
		CHECK_INT(tlcm_store_snapshot(t, "n", "y", 1, "r", NULL),
			  TLCM_EPERM);
		tlcm_store_close(t);
	}
	tlcm_store_close(s);
}

/* A child snapshots as fast as it can with sync=always, acknowledging each
 * version on a pipe; we kill -9 it and reopen: every acknowledged version
 * must be there and intact. */
static void kill9(void)
{
	char p[512], why[600];
	path_of(p, sizeof p, "crash");
	int fds[2];
	CHECK_INT(pipe(fds), 0);
	pid_t pid = fork();
	if (pid == 0) {
		/* a fresh process (exec): no threads inherited from us */
		close(fds[0]);
		dup2(fds[1], STDOUT_FILENO);
		execl("/proc/self/exe", "test_store", "--crash-child", p,
		      (char *)NULL);
		_exit(6);
	}
	close(fds[1]);
	uint64_t acked = 0, v;
	while (acked < 200 && read(fds[0], &v, sizeof v) == sizeof v)
		acked = v;
	kill(pid, SIGKILL);
	int st;
	waitpid(pid, &st, 0);
	while (read(fds[0], &v, sizeof v) == sizeof v) /* in flight */
		acked = v;
	close(fds[0]);
	CHECK(WIFSIGNALED(st));
	tlcm_store_t *s;
	tlcm_store_opts_t o = {.keep = 1000000};
	CHECK_INT(tlcm_store_open(&s, p, &o, why, sizeof why), 0);
	if (!s)
		return;
	void *d;
	size_t len;
	tlcm_snap_info_t info;
	CHECK_INT(tlcm_store_load(s, "c", 0, &d, &len, &info), 0);
	CHECK(info.version >= acked);
	free(d);
	tlcm_snap_info_t *l;
	size_t n;
	CHECK_INT(tlcm_store_list(s, "c", &l, &n), 0);
	int bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += !l[i].intact || l[i].version != i + 1;
	CHECK_INT(bad, 0);
	CHECK(n >= acked);
	fprintf(stderr, "kill -9 after %llu acknowledged snapshots: %zu "
		"intact after reopen\n", (unsigned long long)acked, n);
	free(l);
	tlcm_store_close(s);
}

/* The writer of kill9(): snapshot forever, acknowledge on stdout. */
static int crash_child(const char *p)
{
	char why[600];
	tlcm_store_t *s;
	tlcm_store_opts_t o = {.sync = TLCM_SYNC_ALWAYS, .keep = 1000000};
	if (tlcm_store_open(&s, p, &o, why, sizeof why)) {
		fprintf(stderr, "crash child: %s\n", why);
		return 3;
	}
	char data[4096];
	for (uint64_t i = 1;; i++) {
		memset(data, (int)(i & 0xff), sizeof data);
		uint64_t v;
		if (tlcm_store_snapshot(s, "c", data, sizeof data, "k", &v))
			return 4;
		if (write(STDOUT_FILENO, &v, sizeof v) != sizeof v)
			return 5;
	}
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--crash-child"))
		return crash_child(argv[2]);
	tlcm_log_level = TLCM_LOG_ERROR;
	snprintf(root, sizeof root, "/tmp/tlcm-store-test-XXXXXX");
	if (!mkdtemp(root)) {
		TLCM__FAIL("mkdtemp");
		return 1;
	}
	kv_and_batches();
	families_at_open();
	snapshots();
	corrupt_and_foreign();
	lock();
	kill9();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	CHECK_INT(system(cmd), 0);
	return tlcm_test_done();
}
