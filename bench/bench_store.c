/* bench_store.c — suite "store": the RocksDB state store against plain files.
 *
 * Snapshots (sync=always, keep=3) written and loaded vs write+fsync+rename
 * and read of a file; outbox commits (4 x 100-byte puts) under each sync
 * policy vs appending the same 400 bytes to a file, with/without fdatasync.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "engine/store.h"

/* /tmp may be tmpfs or an overlay here, so fsync figures reflect this
 * machine's storage (or its absence); only ratios within one run mean
 * anything. The file baseline does not fsync the directory after rename,
 * so it is the cheaper (less durable) variant of "write a file atomically".
 * Each snapshot case writes n x (runs + 1) versions of one node; stderr
 * says how many, as the store's cost per snapshot may depend on it.
 */

#define NODE "bench"
#define KEEP 3
#define NPUT 4    /* puts per outbox commit */
#define VAL 100   /* bytes per put */
#define SYNC_INTERVAL_NS (100 * 1000000ull)

/* First failure inside a timed body; the case is then not reported. */
static char failure[512];
static int nskipped; /* cases or baselines not reported */

__attribute__((format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
	if (failure[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(failure, sizeof failure, fmt, ap);
	va_end(ap);
	if (!failure[0])
		snprintf(failure, sizeof failure, "failed");
}

/* True (and the failure reported and cleared) when the case must be
 * skipped. */
static int failed(const char *kase)
{
	if (!failure[0])
		return 0;
	fprintf(stderr, "store: %s: %s; not reported\n", kase, failure);
	failure[0] = 0;
	nskipped++;
	return 1;
}

static size_t count(const bench_opts_t *o, size_t n)
{
	size_t v = (size_t)((double)n * o->scale);
	return v < 2 ? 2 : v;
}

static void fill(unsigned char *p, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1;
	for (size_t i = 0; i < len; i++) {
		if (i % 8 == 0) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		p[i] = (unsigned char)(x >> (8 * (i % 8)));
	}
}

static int write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	unsigned char *p = buf;
	while (len) {
		ssize_t r = read(fd, p, len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

/* ---- temporary directories ---------------------------------------------- */

static int mkroot(char *dir, size_t n)
{
	snprintf(dir, n, "/tmp/tlcm-bench-store-XXXXXX");
	if (mkdtemp(dir))
		return 0;
	fprintf(stderr, "store: mkdtemp %s: %s\n", dir, strerror(errno));
	nskipped++;
	return -1;
}

static int rm_one(const char *p, const struct stat *st, int flag,
		  struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	if (remove(p))
		fprintf(stderr, "store: cannot remove %s: %s\n", p,
			strerror(errno));
	return 0;
}

static void rmtree(const char *dir)
{
	if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS))
		fprintf(stderr, "store: cannot walk %s: %s\n", dir,
			strerror(errno));
}

static tlcm_store_t *open_store(const char *root, tlcm_sync_t sync)
{
	char path[PATH_MAX], why[512];
	tlcm_store_opts_t so = {.sync = sync,
				.sync_interval = SYNC_INTERVAL_NS,
				.keep = KEEP};
	tlcm_store_t *st;
	snprintf(path, sizeof path, "%s/db", root);
	int rc = tlcm_store_open(&st, path, &so, why, sizeof why);
	if (rc) {
		fprintf(stderr, "store: open %s: %s\n", path,
			why[0] ? why : tlcm_strerror(rc));
		nskipped++;
		return NULL;
	}
	return st;
}

/* ---- snapshots ---------------------------------------------------------- */

typedef struct {
	tlcm_store_t *st;
	unsigned char *data;
	size_t len;
	char file[PATH_MAX];
	char tmp[PATH_MAX];
} snap_t;

static void b_snap_write(void *p, size_t n)
{
	snap_t *c = p;
	for (size_t i = 0; i < n && !failure[0]; i++) {
		int rc = tlcm_store_snapshot(c->st, NODE, c->data, c->len,
					     "bench", NULL);
		if (rc)
			fail("tlcm_store_snapshot: %s", tlcm_strerror(rc));
	}
}

static void b_file_write(void *p, size_t n)
{
	snap_t *c = p;
	for (size_t i = 0; i < n && !failure[0]; i++) {
		int fd = open(c->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			      0644);
		if (fd < 0) {
			fail("open %s: %s", c->tmp, strerror(errno));
			break;
		}
		if (write_all(fd, c->data, c->len) || fsync(fd))
			fail("write %s: %s", c->tmp, strerror(errno));
		if (close(fd) && !failure[0])
			fail("close %s: %s", c->tmp, strerror(errno));
		if (!failure[0] && rename(c->tmp, c->file))
			fail("rename %s: %s", c->file, strerror(errno));
	}
}

static void b_snap_load(void *p, size_t n)
{
	snap_t *c = p;
	for (size_t i = 0; i < n && !failure[0]; i++) {
		void *d;
		size_t len;
		int rc = tlcm_store_load(c->st, NODE, 0, &d, &len, NULL);
		if (rc)
			fail("tlcm_store_load: %s", tlcm_strerror(rc));
		else if (len != c->len)
			fail("tlcm_store_load: %zu bytes, wanted %zu", len,
			     c->len);
		else
			bench_sink += ((unsigned char *)d)[len - 1];
		free(d);
	}
}

/* Read c->file into a malloc'd buffer (*out), as a user restoring it
 * would. */
static int file_load(const snap_t *c, unsigned char **out, size_t *len)
{
	struct stat st;
	*out = NULL;
	int fd = open(c->file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fail("open %s: %s", c->file, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st)) {
		fail("stat %s: %s", c->file, strerror(errno));
		close(fd);
		return -1;
	}
	*len = (size_t)st.st_size;
	*out = malloc(*len ? *len : 1);
	if (!*out || read_all(fd, *out, *len)) {
		fail("read %s: %s", c->file,
		     *out ? strerror(errno) : "out of memory");
		free(*out);
		*out = NULL;
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static void b_file_read(void *p, size_t n)
{
	snap_t *c = p;
	for (size_t i = 0; i < n && !failure[0]; i++) {
		unsigned char *d;
		size_t len;
		if (file_load(c, &d, &len))
			break;
		if (len != c->len)
			fail("%s: %zu bytes, wanted %zu", c->file, len, c->len);
		else
			bench_sink += d[len - 1];
		free(d);
	}
}

/* Both copies read back equal to what was written, and keep pruned the
 * store to KEEP versions; else the restore cases are not compared. */
static int snap_check(snap_t *c, const char *tag)
{
	void *d = NULL;
	unsigned char *f = NULL;
	size_t len = 0, flen = 0, nv = 0;
	tlcm_snap_info_t *list = NULL, info;
	int rc = tlcm_store_load(c->st, NODE, 0, &d, &len, &info);
	if (rc)
		fail("load: %s", tlcm_strerror(rc));
	else if (len != c->len || memcmp(d, c->data, len))
		fail("the store read back other bytes than were written");
	else if (!file_load(c, &f, &flen) &&
		 (flen != c->len || memcmp(f, c->data, flen)))
		fail("the file read back other bytes than were written");
	free(d);
	free(f);
	if (failure[0])
		return -1;
	rc = tlcm_store_list(c->st, NODE, &list, &nv);
	free(list);
	if (rc) {
		fail("list: %s", tlcm_strerror(rc));
		return -1;
	}
	fprintf(stderr, "store: %s: %llu snapshots written, %zu versions kept "
		"(keep %d)\n", tag, (unsigned long long)info.version, nv, KEEP);
	return 0;
}

static void snap_case(const bench_opts_t *o, const char *tag, size_t len,
		      size_t nw, size_t nr)
{
	char root[64], kw[64], kr[64];
	snap_t c = {.len = len};
	snprintf(kw, sizeof kw, "snapshot_write_%s", tag);
	snprintf(kr, sizeof kr, "snapshot_restore_%s", tag);
	if (mkroot(root, sizeof root))
		return;
	snprintf(c.file, sizeof c.file, "%s/state.bin", root);
	snprintf(c.tmp, sizeof c.tmp, "%s/state.bin.tmp", root);
	c.data = malloc(len);
	if (!c.data) {
		fprintf(stderr, "store: %s: out of memory\n", tag);
		nskipped++;
		goto out;
	}
	fill(c.data, len, 0x5eed0000u + len);
	if (!(c.st = open_store(root, TLCM_SYNC_ALWAYS)))
		goto out;

	fprintf(stderr, "store: %s: %zu writes, %zu reads x %d runs\n", tag,
		nw, nr, o->runs);
	double w = bench_measure(o, nw, b_snap_write, &c);
	int wbad = failed(kw);
	double fw = bench_measure(o, nw, b_file_write, &c);
	int fwbad = failed(kw);
	if (fwbad)
		fprintf(stderr, "store: %s: reported without its baseline\n",
			kw);
	bench_base_t bw[] = {{"file_fsync", fw / 1000}};
	if (!wbad)
		bench_report("store", kw, "us", w / 1000, nw, o->runs,
			     fwbad ? NULL : bw, fwbad ? 0 : 1);
	if (wbad || fwbad) {
		fprintf(stderr, "store: %s: no data to restore\n", kr);
		nskipped++;
		goto out;
	}

	if (snap_check(&c, tag)) {
		failed(kr);
		goto out;
	}
	double r = bench_measure(o, nr, b_snap_load, &c);
	int rbad = failed(kr);
	double fr = bench_measure(o, nr, b_file_read, &c);
	int frbad = failed(kr);
	if (frbad)
		fprintf(stderr, "store: %s: reported without its baseline\n",
			kr);
	bench_base_t br[] = {{"file_read", fr / 1000}};
	if (!rbad)
		bench_report("store", kr, "us", r / 1000, nr, o->runs,
			     frbad ? NULL : br, frbad ? 0 : 1);
out:
	tlcm_store_close(c.st);
	free(c.data);
	rmtree(root);
}

/* ---- outbox commits ----------------------------------------------------- */

typedef struct {
	tlcm_store_t *st;
	unsigned char val[NPUT][VAL];
	uint64_t seq;
	int fd;
	int sync;    /* baseline: fdatasync after each append */
} commit_t;

static void b_commit(void *p, size_t n)
{
	commit_t *c = p;
	for (size_t i = 0; i < n && !failure[0]; i++) {
		tlcm_batch_t *b = tlcm_batch_new();
		if (!b) {
			fail("tlcm_batch_new: out of memory");
			break;
		}
		int rc = 0;
		for (int k = 0; k < NPUT && !rc; k++) {
			char key[24];
			int kl = snprintf(key, sizeof key, "m/%016llx",
					  (unsigned long long)c->seq++);
			rc = tlcm_batch_put(c->st, b, "outbox", key,
					    (size_t)kl, c->val[k], VAL);
		}
		if (!rc)
			rc = tlcm_store_write(c->st, b);
		tlcm_batch_free(b);
		if (rc)
			fail("commit: %s", tlcm_strerror(rc));
	}
}

static void b_append(void *p, size_t n)
{
	commit_t *c = p;
	for (size_t i = 0; i < n && !failure[0]; i++) {
		if (write_all(c->fd, c->val, sizeof c->val))
			fail("append: %s", strerror(errno));
		else if (c->sync && fdatasync(c->fd))
			fail("fdatasync: %s", strerror(errno));
	}
}

static void commit_case(const bench_opts_t *o, tlcm_sync_t sync, size_t n)
{
	char root[64], kase[64], file[PATH_MAX];
	commit_t c;
	const char *base = sync == TLCM_SYNC_ALWAYS ? "file_append_fsync"
						    : "file_append";
	snprintf(kase, sizeof kase, "batch_commit_%s", tlcm_sync_name(sync));
	if (mkroot(root, sizeof root))
		return;
	c = (commit_t){.fd = -1, .sync = sync == TLCM_SYNC_ALWAYS};
	for (int k = 0; k < NPUT; k++)
		fill(c.val[k], VAL, 0xb0c5u + (uint64_t)k);
	if (!(c.st = open_store(root, sync)))
		goto out;
	snprintf(file, sizeof file, "%s/outbox.log", root);
	c.fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (c.fd < 0) {
		fprintf(stderr, "store: %s: open %s: %s\n", kase, file,
			strerror(errno));
		nskipped++;
	}

	fprintf(stderr, "store: %s: %zu commits x %d runs\n", kase, n,
		o->runs);
	double t = bench_measure(o, n, b_commit, &c);
	int bad = failed(kase);
	double ft = 0;
	int fbad = c.fd < 0;
	if (!fbad) {
		ft = bench_measure(o, n, b_append, &c);
		fbad = failed(kase);
	}
	if (fbad)
		fprintf(stderr, "store: %s: reported without its baseline\n",
			kase);
	bench_base_t b[] = {{base, 1e9 / ft}};
	if (!bad)
		bench_report("store", kase, "commits_per_s", 1e9 / t, n,
			     o->runs, fbad ? NULL : b, fbad ? 0 : 1);
out:
	if (c.fd >= 0)
		close(c.fd);
	tlcm_store_close(c.st);
	rmtree(root);
}

int bench_suite_store(const bench_opts_t *o)
{
	snap_case(o, "1KiB", 1024, count(o, 200), count(o, 20000));
	snap_case(o, "1MiB", 1024 * 1024, count(o, 30), count(o, 300));
	snap_case(o, "16MiB", 16 * 1024 * 1024, count(o, 4), count(o, 16));
	commit_case(o, TLCM_SYNC_ALWAYS, count(o, 400));
	commit_case(o, TLCM_SYNC_BATCH, count(o, 20000));
	commit_case(o, TLCM_SYNC_NEVER, count(o, 20000));
	if (nskipped)
		fprintf(stderr, "store: %d case(s) or baseline(s) not "
			"reported, see above\n", nskipped);
	return nskipped ? -1 : 0;
}
