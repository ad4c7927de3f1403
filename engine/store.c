/* store.c — durable state on RocksDB's C API (see store.h).
 *
 * Snapshot keys live in the node's family as "snap/<16 hex digits of the
 * version>", so versions sort by key and the newest is found by seeking
 * backwards. Each value is a fixed header (magic, version, time, group,
 * size, CRC-32, reason) followed by the bytes. Version numbers and group
 * ids are allocated under one mutex; everything a snapshot changes (new
 * version, pruned old ones, the group counter) goes into one WriteBatch.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "engine/log.h"
#include "engine/outbox.h"
#include "engine/store.h"

#define FORMAT "tinylcm-store/1"
#define SNAP_MAGIC 0x504e5354u /* "TSNP" */
#define MAX_FAMILIES 1024

#define META_CF 1 /* its index */
static const char *const system_families[] = {"default", "meta", "outbox",
					      "dedup", "registry",
					      "deadletter"};
#define NSYSTEM (sizeof system_families / sizeof system_families[0])

typedef struct {
	uint32_t magic;
	uint32_t format;
	uint64_t version;
	uint64_t time_ns;
	uint64_t group;
	uint64_t size;
	uint32_t crc;
	uint32_t _pad;
	char reason[64];
} snap_hdr_t;

struct tlcm_store {
	char *path;
	tlcm_store_opts_t o;
	rocksdb_t *db;
	rocksdb_options_t *dbopts;
	rocksdb_options_t *lopts; /* satellite link queues (link_family) */
	rocksdb_writeoptions_t *wopts;
	rocksdb_readoptions_t *ropts;
	pthread_mutex_t mu; /* families, version allocation */
	char **names;
	rocksdb_column_family_handle_t **cfs;
	size_t ncf;
	/* newest snapshot version per node, learnt once by seeking, then
	 * kept here (seeking past many deletions is not free) */
	struct newest {
		char *node;
		uint64_t version;
	} *newest;
	size_t nnewest;
	/* batch sync: a thread flushes the log every interval; its own lock,
	 * since writes mark the store dirty while holding mu */
	pthread_t syncer;
	pthread_mutex_t sync_mu;
	pthread_cond_t cv;
	bool stop, dirty, has_syncer;
	tlcm_outbox_t *outbox; /* engine/outbox.c, made on first use */
};

struct tlcm_batch {
	rocksdb_writebatch_t *wb;
};

static const char *sync_names[] = {"always", "batch", "never"};

const char *tlcm_sync_name(tlcm_sync_t s)
{
	return (unsigned)s < 3 ? sync_names[s] : "?";
}

int tlcm_sync_parse(const char *s, tlcm_sync_t *out)
{
	for (unsigned i = 0; i < 3; i++)
		if (s && !strcmp(s, sync_names[i])) {
			*out = (tlcm_sync_t)i;
			return 0;
		}
	return TLCM_EINVAL;
}

const char *tlcm_store_path(const tlcm_store_t *s)
{
	return s->path;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Map a RocksDB error to a code and a message for people. */
static int rerr(char *e, const char *path, char *why, size_t n)
{
	int rc = TLCM_EIO;
	if (strstr(e, "lock") || strstr(e, "Resource temporarily")) {
		snprintf(why, n, "store %s is in use by another process (a "
			 "running graph?): %s", path, e);
		rc = TLCM_EBUSY;
	} else if (strstr(e, "Corruption") || strstr(e, "corrupt")) {
		snprintf(why, n, "store %s is corrupt: %s", path, e);
		rc = TLCM_ECORRUPT;
	} else if (strstr(e, "No space")) {
		snprintf(why, n, "store %s: disk full: %s", path, e);
		rc = TLCM_ENOSPC;
	} else {
		snprintf(why, n, "store %s: %s", path, e);
	}
	rocksdb_free(e);
	return rc;
}

static void *syncer(void *arg)
{
	tlcm_store_t *s = arg;
	pthread_mutex_lock(&s->sync_mu);
	while (!s->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t t = (uint64_t)ts.tv_nsec + s->o.sync_interval;
		ts.tv_sec += (time_t)(t / 1000000000u);
		ts.tv_nsec = (long)(t % 1000000000u);
		pthread_cond_timedwait(&s->cv, &s->sync_mu, &ts);
		if (s->dirty) {
			s->dirty = false;
			pthread_mutex_unlock(&s->sync_mu);
			tlcm_store_sync(s);
			pthread_mutex_lock(&s->sync_mu);
		}
	}
	pthread_mutex_unlock(&s->sync_mu);
	return NULL;
}

static bool is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool has_file(const char *dir, const char *name)
{
	char p[4096];
	struct stat st;
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return stat(p, &st) == 0;
}

static int open_store(tlcm_store_t **out, const char *path,
		      const tlcm_store_opts_t *o, char *why, size_t whylen);

/* Memtable size of the families that hold packages (outbox, deadletter):
 * two of them (one filling, one flushing) fit under the 64 MiB trim
 * threshold tune_malloc() sets on 64-bit, so their pages are reused. */
#define QUEUE_WRITE_BUFFER (32u << 20)
#define QUEUE_HINT "memtable_insert_with_hint_prefix_extractor=" \
		   "rocksdb.FixedPrefix.3"

/* The satellite link's queues (nodes/link: link.tx/<node> on a satellite,
 * link.rx/<node> on the core) hold each batch for a moment: put, then
 * deleted once acknowledged or delivered. The queue options (no
 * compression, the insert hint) with a small memtable: the put and its
 * delete usually meet in one memtable, so a flush writes only
 * tombstones; the memtable's pages are reused from one to the next
 * instead of page-faulted in fresh for every batch (the default 64 MiB
 * memtable touches new memory until it first fills); and a satellite's
 * memory stays small. */
#define LINK_WRITE_BUFFER (4u << 20)

/* A node's family: its snapshots and records. */
static void node_family(const char *node, char *out, size_t n)
{
	snprintf(out, n, "node/%s", node);
}

static bool link_family(const char *name)
{
	return !strncmp(name, "link.tx/", 8) || !strncmp(name, "link.rx/", 8);
}

/* A memtable copies every value into 1 MiB blocks from malloc and frees
 * them whole after its flush. By default glibc serves such blocks with
 * fresh mmaps until its dynamic threshold has risen, and gives freed heap
 * tops back to the kernel, so the next memtable page-faults its memory in
 * again: one fault per 4 KiB put, a third of its cost on a VM. Fixing both
 * thresholds at the highest values glibc's own tuning reaches (mmap above
 * 32 MiB on 64-bit, trim above twice that) lets each memtable reuse the
 * pages of the one flushed before it. Process-wide, once; malloc tuning
 * the user asked for in the environment wins. */
static void tune_malloc(void)
{
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
	const char *t = getenv("GLIBC_TUNABLES");
	if ((t && (strstr(t, "mmap_threshold") ||
		   strstr(t, "trim_threshold"))) ||
	    getenv("MALLOC_MMAP_THRESHOLD_") ||
	    getenv("MALLOC_TRIM_THRESHOLD_"))
		return;
	int max = (int)(4 * 1024 * 1024 * sizeof(long)); /* glibc's maximum */
	if (!mallopt(M_MMAP_THRESHOLD, max) ||
	    !mallopt(M_TRIM_THRESHOLD, 2 * max))
		tlcm_debug("store", "mallopt refused the memtable thresholds: "
			   "stores write slower");
#endif
}

static pthread_once_t malloc_once = PTHREAD_ONCE_INIT;

/* A database without our format marker is ours when creating it was cut
 * short (killed between RocksDB creating it and the marker's write): our
 * system families (RocksDB created them all at once, `meta` among them)
 * and nothing else, all of them empty. A foreign database has data,
 * families of its own, or only RocksDB's `default`. */
static bool unfinished_create(tlcm_store_t *s, size_t nlisted)
{
	bool meta = false;
	for (size_t i = 0; i < nlisted; i++) /* the names found on disk */
		meta |= !strcmp(s->names[i], "meta");
	if (!meta)
		return false;
	/* the node families asked for at this opening were created empty
	 * just now, after the names found on disk (s->names[nlisted..]) */
	for (size_t i = 0; i < nlisted; i++) {
		bool sys = false;
		for (size_t j = 0; j < NSYSTEM; j++)
			sys |= !strcmp(s->names[i], system_families[j]);
		if (!sys)
			return false;
		rocksdb_iterator_t *it =
			rocksdb_create_iterator_cf(s->db, s->ropts, s->cfs[i]);
		rocksdb_iter_seek_to_first(it);
		bool empty = !rocksdb_iter_valid(it);
		rocksdb_iter_destroy(it);
		if (!empty)
			return false;
	}
	return true;
}

int tlcm_store_open(tlcm_store_t **out, const char *path,
		    const tlcm_store_opts_t *o, char *why, size_t whylen)
{
	if (!o || !o->fresh || o->read_only || o->must_exist)
		return open_store(out, path, o, why, whylen);
	/* open first, so only what is a TinyLCM store gets destroyed */
	tlcm_store_opts_t plain = *o;
	plain.fresh = false;
	int rc = open_store(out, path, &plain, why, whylen);
	if (rc)
		return rc;
	tlcm_store_close(*out);
	*out = NULL;
	rocksdb_options_t *opts = rocksdb_options_create();
	char *err = NULL;
	rocksdb_destroy_db(opts, path, &err);
	rocksdb_options_destroy(opts);
	if (err) {
		snprintf(why, whylen, "store %s: cannot start fresh: %s", path,
			 err);
		free(err);
		return TLCM_EIO;
	}
	return open_store(out, path, &plain, why, whylen);
}

/* A file RocksDB writes while it creates a database, before CURRENT. */
static bool creation_leftover(const char *name)
{
	size_t n = strlen(name);
	return !strcmp(name, "LOCK") || !strcmp(name, "IDENTITY") ||
	       !strncmp(name, "LOG", 3) || !strncmp(name, "MANIFEST-", 9) ||
	       !strncmp(name, "OPTIONS-", 8) ||
	       (n > 6 && !strcmp(name + n - 6, ".dbtmp"));
}

/* While a store is being created its directory holds this file: a
 * process killed before the format marker is written leaves it behind,
 * and the next open knows that whatever RocksDB wrote is an unfinished
 * creation (nothing in it was ever acknowledged) and creates it again. */
#define CREATING "TINYLCM-CREATING"

/* fsync a directory, so an entry made or removed in it is durable. */
static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

/* Create a store at path (absent, or a directory with nothing of a
 * database in it, or one whose creation was cut short: `redo`): the system
 * families and the format marker, between CREATING made and removed. The
 * creator holds a lock on CREATING throughout, so two processes creating
 * one store (a core and its standby started together) do not undo each
 * other's work: the second gets TLCM_EBUSY, like a store in use. */
static int create_store(const char *path, bool redo, char *why,
			size_t whylen)
{
	char flag[4096];
	if (snprintf(flag, sizeof flag, "%s/%s", path, CREATING) >=
	    (int)sizeof flag) {
		snprintf(why, whylen, "store path too long: %s", path);
		return TLCM_EINVAL;
	}
	if (mkdir(path, 0755) && errno != EEXIST) {
		snprintf(why, whylen, "cannot create store directory %s: %s",
			 path, strerror(errno));
		return errno == ENOSPC ? TLCM_ENOSPC : TLCM_EIO;
	}
	int fd = open(flag, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB)) {
		snprintf(why, whylen, "store %s is being created by another "
			 "process", path);
		close(fd);
		return TLCM_EBUSY;
	}
	if (fd < 0 || fsync(fd) || sync_dir(path)) {
		snprintf(why, whylen, "cannot create %s: %s", flag,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return errno == ENOSPC ? TLCM_ENOSPC : TLCM_EIO;
	}
	rocksdb_options_t *o = rocksdb_options_create();
	char *err = NULL;
	if (redo) { /* remove what RocksDB made of the unfinished one */
		rocksdb_destroy_db(o, path, &err);
		if (!err)
			tlcm_warn("store", "%s: its creation was cut short (%s "
				  "is there): creating it again", path,
				  CREATING);
	}
	rocksdb_options_set_create_if_missing(o, 1);
	rocksdb_options_set_create_missing_column_families(o, 1);
	const rocksdb_options_t *fo[NSYSTEM];
	rocksdb_column_family_handle_t *h[NSYSTEM];
	for (size_t i = 0; i < NSYSTEM; i++)
		fo[i] = o;
	rocksdb_t *db = err ? NULL : rocksdb_open_column_families(
		o, path, (int)NSYSTEM, (const char *const *)system_families,
		fo, h, &err);
	if (db) {
		rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
		rocksdb_writeoptions_set_sync(wo, 1);
		rocksdb_put_cf(db, wo, h[META_CF], "format", 6, FORMAT,
			       strlen(FORMAT), &err);
		rocksdb_writeoptions_destroy(wo);
		for (size_t i = 0; i < NSYSTEM; i++)
			rocksdb_column_family_handle_destroy(h[i]);
		rocksdb_close(db);
	}
	rocksdb_options_destroy(o);
	int rc = err ? rerr(err, path, why, whylen) : 0;
	/* done, or another process has the database open (only a finished
	 * store is held open): CREATING goes; nobody else is creating it,
	 * we hold its lock */
	if ((!rc || rc == TLCM_EBUSY) && (unlink(flag) || sync_dir(path)) &&
	    !rc) {
		snprintf(why, whylen, "store %s: cannot remove %s: %s", path,
			 CREATING, strerror(errno));
		rc = TLCM_EIO;
	}
	close(fd);
	return rc;
}

/* Add name to the families the opening will open (and create), unless
 * it is there already; s->names has room. */
static void open_family_too(tlcm_store_t *s, const char *name)
{
	for (size_t j = 0; j < s->ncf; j++)
		if (!strcmp(s->names[j], name))
			return;
	s->names[s->ncf++] = strdup(name);
}

static int open_store(tlcm_store_t **out, const char *path,
		      const tlcm_store_opts_t *o, char *why, size_t whylen)
{
	*out = NULL;
	why[0] = 0;
	tlcm_store_opts_t opt = o ? *o : (tlcm_store_opts_t){0};
	if (!opt.sync_interval)
		opt.sync_interval = 100 * 1000000ull;
	if (!opt.keep)
		opt.keep = 5;
	bool exists = is_dir(path);
	struct stat st;
	if (!exists && stat(path, &st) == 0) {
		snprintf(why, whylen, "store %s is not a directory", path);
		return TLCM_ECORRUPT;
	}
	if (!exists && (opt.must_exist || opt.read_only)) {
		snprintf(why, whylen, "no store at %s", path);
		return TLCM_ENOENT;
	}
	bool redo = exists && has_file(path, CREATING);
	if (redo) {
		if (opt.must_exist || opt.read_only) {
			snprintf(why, whylen, "store %s was never finished (its "
				 "creation was cut short)", path);
			return TLCM_ECORRUPT;
		}
		exists = false;
	} else if (exists && !has_file(path, "CURRENT")) {
		/* An empty directory may become a store, and so may one that
		 * holds only what RocksDB writes while it creates a database
		 * before CURRENT (a creation killed half-way: no database was
		 * ever committed, so nothing in it was acknowledged);
		 * anything else not. */
		bool empty = true;
		DIR *d = opendir(path);
		struct dirent *de;
		while (d && (de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
			    !creation_leftover(de->d_name))
				empty = false;
		if (d)
			closedir(d);
		if (!empty || opt.must_exist || opt.read_only) {
			snprintf(why, whylen, "%s is not a TinyLCM store (no "
				 "RocksDB database in it)", path);
			return TLCM_ECORRUPT;
		}
		exists = false;
	}
	if (!exists && !opt.read_only) {
		int rc = create_store(path, redo, why, whylen);
		if (rc)
			return rc;
		exists = true;
	}
	tlcm_store_t *s = calloc(1, sizeof *s);
	if (!s)
		return TLCM_ENOMEM;
	s->path = strdup(path);
	s->o = opt;
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->sync_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	s->dbopts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(s->dbopts, !opt.read_only);
	rocksdb_options_set_create_missing_column_families(s->dbopts,
							   !opt.read_only);
	rocksdb_options_set_keep_log_file_num(s->dbopts, 2);
	/* A read-only view (inspection, `tinylcm core export`) of a store
	 * a running graph writes sees the store as it was when opened; the
	 * graph's compactions meanwhile delete files of that view, so the
	 * view opens all of them at once and keeps them open (a deleted
	 * file stays readable while open) instead of a cache of 64. */
	rocksdb_options_set_max_open_files(s->dbopts, opt.read_only ? -1 : 64);
	if (!opt.read_only)
		pthread_once(&malloc_once, tune_malloc);

	/* every family that exists must be opened; add the system ones */
	char *err = NULL;
	size_t nlisted = 0;
	char **listed = NULL;
	if (exists) {
		listed = rocksdb_list_column_families(s->dbopts, path, &nlisted,
						      &err);
		if (err) {
			int rc = rerr(err, path, why, whylen);
			if (rc == TLCM_EIO) {
				snprintf(why, whylen, "%s is not a TinyLCM "
					 "store (RocksDB cannot read it)", path);
				rc = TLCM_ECORRUPT;
			}
			tlcm_store_close(s);
			return rc;
		}
	}
	size_t cap = nlisted + NSYSTEM + opt.nnodes;
	s->names = calloc(cap, sizeof *s->names);
	s->cfs = calloc(cap, sizeof *s->cfs);
	for (size_t i = 0; i < nlisted; i++)
		s->names[s->ncf++] = strdup(listed[i]);
	if (listed)
		rocksdb_list_column_families_destroy(listed, nlisted);
	for (size_t i = 0; i < NSYSTEM && !opt.read_only; i++)
		open_family_too(s, system_families[i]);
	for (size_t i = 0; i < opt.nnodes && !opt.read_only &&
			   s->ncf < MAX_FAMILIES; i++) {
		char fname[300];
		node_family(opt.nodes[i], fname, sizeof fname);
		open_family_too(s, fname);
	}
	/* The families holding packages. Their keys arrive in order per
	 * 3-byte prefix (q/<priority> then the creation time; i/, h/, p/
	 * then a time-ordered UUIDv7), so a per-prefix insert hint spares
	 * the memtable a search from its top for every key (a quarter of
	 * a put's instructions); RocksDB's C API sets it only by name. The
	 * packages come compressed from the packager (zstd by default, PNG
	 * attachments): snappy on every flush and compaction is wasted. */
	rocksdb_options_t *qopts = rocksdb_options_create();
	rocksdb_get_options_from_string(s->dbopts, QUEUE_HINT, qopts, &err);
	if (err) { /* slower, not wrong */
		tlcm_debug("store", "no memtable insert hint: %s", err);
		rocksdb_free(err);
		err = NULL;
		rocksdb_options_destroy(qopts);
		qopts = rocksdb_options_create_copy(s->dbopts);
	}
	rocksdb_options_set_compression(qopts, rocksdb_no_compression);
	s->lopts = rocksdb_options_create_copy(qopts);
	rocksdb_options_set_write_buffer_size(s->lopts, LINK_WRITE_BUFFER);
	rocksdb_options_set_write_buffer_size(qopts, QUEUE_WRITE_BUFFER);
	const rocksdb_options_t **cfo = calloc(s->ncf, sizeof *cfo);
	for (size_t i = 0; i < s->ncf; i++) {
		bool queue = !strcmp(s->names[i], "outbox") ||
			     !strcmp(s->names[i], "deadletter");
		cfo[i] = queue ? qopts : link_family(s->names[i]) ? s->lopts
								: s->dbopts;
	}
	/* A graph writing the store meanwhile can delete a log or table
	 * file between RocksDB reading the manifest and opening that file
	 * (`tinylcm state ls` beside a running graph): such a view is taken
	 * again, not refused. */
	for (int tries = 0; opt.read_only; tries++) {
		s->db = rocksdb_open_for_read_only_column_families(
			s->dbopts, path, (int)s->ncf,
			(const char *const *)s->names, cfo, s->cfs, 0, &err);
		if (!err || tries == 50 || !strstr(err, "No such file"))
			break;
		rocksdb_free(err);
		err = NULL;
		usleep(10000);
	}
	if (!opt.read_only)
		s->db = rocksdb_open_column_families(
			s->dbopts, path, (int)s->ncf,
			(const char *const *)s->names, cfo, s->cfs, &err);
	free(cfo);
	rocksdb_options_destroy(qopts); /* RocksDB keeps its own copies */
	if (err) {
		int rc = rerr(err, path, why, whylen);
		tlcm_store_close(s);
		return rc;
	}
	s->wopts = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(s->wopts, opt.sync == TLCM_SYNC_ALWAYS);
	s->ropts = rocksdb_readoptions_create();

	/* a store of ours carries its format in meta */
	void *fmt = NULL;
	size_t flen = 0;
	int rc = tlcm_store_get(s, "meta", "format", 6, &fmt, &flen);
	if (rc == TLCM_ENOENT && !opt.read_only &&
	    (!exists || unfinished_create(s, nlisted))) {
		rc = tlcm_store_put(s, "meta", "format", 6, FORMAT,
				    strlen(FORMAT));
		if (!rc)
			rc = tlcm_store_sync(s);
	} else if (rc == TLCM_ENOENT) {
		snprintf(why, whylen, "%s is a RocksDB database but not a "
			 "TinyLCM store (no format marker)", path);
		rc = TLCM_ECORRUPT;
	} else if (rc == 0 && (flen != strlen(FORMAT) ||
			       memcmp(fmt, FORMAT, flen))) {
		snprintf(why, whylen, "store %s has format '%.*s', this "
			 "TinyLCM reads '%s'", path, (int)(flen > 40 ? 40 : flen),
			 (const char *)fmt, FORMAT);
		rc = TLCM_ECORRUPT;
	}
	free(fmt);
	if (rc) {
		if (!why[0])
			snprintf(why, whylen, "store %s: %s", path,
				 tlcm_strerror(rc));
		tlcm_store_close(s);
		return rc;
	}
	if (opt.sync == TLCM_SYNC_BATCH && !opt.read_only) {
		s->has_syncer = pthread_create(&s->syncer, NULL, syncer, s) == 0;
	}
	*out = s;
	return 0;
}

void tlcm_store_close(tlcm_store_t *s)
{
	if (!s)
		return;
	if (s->has_syncer) {
		pthread_mutex_lock(&s->sync_mu);
		s->stop = true;
		pthread_cond_signal(&s->cv);
		pthread_mutex_unlock(&s->sync_mu);
		pthread_join(s->syncer, NULL);
	}
	if (s->db && s->o.sync != TLCM_SYNC_NEVER && !s->o.read_only)
		tlcm_store_sync(s);
	tlcm_outbox_free_(s->outbox);
	for (size_t i = 0; i < s->ncf; i++) {
		if (s->cfs && s->cfs[i])
			rocksdb_column_family_handle_destroy(s->cfs[i]);
		free(s->names[i]);
	}
	if (s->db)
		rocksdb_close(s->db);
	if (s->dbopts)
		rocksdb_options_destroy(s->dbopts);
	if (s->lopts)
		rocksdb_options_destroy(s->lopts);
	if (s->wopts)
		rocksdb_writeoptions_destroy(s->wopts);
	if (s->ropts)
		rocksdb_readoptions_destroy(s->ropts);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->sync_mu);
	pthread_cond_destroy(&s->cv);
	for (size_t i = 0; i < s->nnewest; i++)
		free(s->newest[i].node);
	free(s->newest);
	free(s->names);
	free(s->cfs);
	free(s->path);
	free(s);
}

tlcm_outbox_t *tlcm_store_outbox(tlcm_store_t *s)
{
	pthread_mutex_lock(&s->mu);
	if (!s->outbox)
		s->outbox = tlcm_outbox_new_(s);
	tlcm_outbox_t *o = s->outbox;
	pthread_mutex_unlock(&s->mu);
	return o;
}

/* The handle of family name, created on first use (under s->mu). */
static rocksdb_column_family_handle_t *family(tlcm_store_t *s,
					      const char *name, bool create)
{
	for (size_t i = 0; i < s->ncf; i++)
		if (!strcmp(s->names[i], name))
			return s->cfs[i];
	if (!create || s->o.read_only || s->ncf >= MAX_FAMILIES)
		return NULL;
	char *err = NULL;
	rocksdb_column_family_handle_t *h =
		rocksdb_create_column_family(s->db, link_family(name) ?
					     s->lopts : s->dbopts, name, &err);
	if (err) {
		tlcm_error("store", "cannot create family %s in %s: %s", name,
			   s->path, err);
		rocksdb_free(err);
		return NULL;
	}
	char **nn = realloc(s->names, (s->ncf + 1) * sizeof *nn);
	rocksdb_column_family_handle_t **nc =
		realloc(s->cfs, (s->ncf + 1) * sizeof *nc);
	if (nn)
		s->names = nn;
	if (nc)
		s->cfs = nc;
	if (!nn || !nc) {
		rocksdb_column_family_handle_destroy(h);
		return NULL;
	}
	s->names[s->ncf] = strdup(name);
	s->cfs[s->ncf++] = h;
	return h;
}

static rocksdb_column_family_handle_t *fam(tlcm_store_t *s, const char *name,
					   bool create)
{
	pthread_mutex_lock(&s->mu);
	rocksdb_column_family_handle_t *h = family(s, name, create);
	pthread_mutex_unlock(&s->mu);
	return h;
}

static void mark_dirty(tlcm_store_t *s)
{
	if (s->o.sync != TLCM_SYNC_BATCH)
		return;
	pthread_mutex_lock(&s->sync_mu);
	s->dirty = true;
	pthread_mutex_unlock(&s->sync_mu);
}

static int werr(tlcm_store_t *s, char *err, const char *what)
{
	char why[600];
	int rc = rerr(err, s->path, why, sizeof why);
	tlcm_error("store", "%s: %s", what, why);
	return rc;
}

int tlcm_store_put(tlcm_store_t *s, const char *f, const void *key,
		   size_t klen, const void *val, size_t vlen)
{
	rocksdb_column_family_handle_t *h = fam(s, f, true);
	if (!h)
		return s->o.read_only ? TLCM_EPERM : TLCM_EIO;
	char *err = NULL;
	rocksdb_put_cf(s->db, s->wopts, h, key, klen, val, vlen, &err);
	if (err)
		return werr(s, err, "put");
	mark_dirty(s);
	return 0;
}

int tlcm_store_get(tlcm_store_t *s, const char *f, const void *key,
		   size_t klen, void **val, size_t *vlen)
{
	*val = NULL;
	*vlen = 0;
	rocksdb_column_family_handle_t *h = fam(s, f, false);
	if (!h)
		return TLCM_ENOENT;
	char *err = NULL;
	char *v = rocksdb_get_cf(s->db, s->ropts, h, key, klen, vlen, &err);
	if (err)
		return werr(s, err, "get");
	if (!v)
		return TLCM_ENOENT;
	*val = malloc(*vlen ? *vlen : 1);
	if (!*val) {
		rocksdb_free(v);
		return TLCM_ENOMEM;
	}
	memcpy(*val, v, *vlen);
	rocksdb_free(v);
	return 0;
}

int tlcm_store_delete(tlcm_store_t *s, const char *f, const void *key,
		      size_t klen)
{
	rocksdb_column_family_handle_t *h = fam(s, f, false);
	if (!h)
		return 0;
	char *err = NULL;
	rocksdb_delete_cf(s->db, s->wopts, h, key, klen, &err);
	if (err)
		return werr(s, err, "delete");
	mark_dirty(s);
	return 0;
}

tlcm_batch_t *tlcm_batch_new(void)
{
	tlcm_batch_t *b = calloc(1, sizeof *b);
	if (b && !(b->wb = rocksdb_writebatch_create())) {
		free(b);
		return NULL;
	}
	return b;
}

void tlcm_batch_free(tlcm_batch_t *b)
{
	if (!b)
		return;
	rocksdb_writebatch_destroy(b->wb);
	free(b);
}

int tlcm_batch_put(tlcm_store_t *s, tlcm_batch_t *b, const char *f,
		   const void *key, size_t klen, const void *val, size_t vlen)
{
	rocksdb_column_family_handle_t *h = fam(s, f, true);
	if (!h)
		return TLCM_EIO;
	rocksdb_writebatch_put_cf(b->wb, h, key, klen, val, vlen);
	return 0;
}

int tlcm_batch_delete(tlcm_store_t *s, tlcm_batch_t *b, const char *f,
		      const void *key, size_t klen)
{
	rocksdb_column_family_handle_t *h = fam(s, f, true);
	if (!h)
		return TLCM_EIO;
	rocksdb_writebatch_delete_cf(b->wb, h, key, klen);
	return 0;
}

int tlcm_store_write(tlcm_store_t *s, tlcm_batch_t *b)
{
	if (s->o.read_only)
		return TLCM_EPERM;
	char *err = NULL;
	rocksdb_write(s->db, s->wopts, b->wb, &err);
	if (err)
		return werr(s, err, "write batch");
	mark_dirty(s);
	return 0;
}

int tlcm_store_scan(tlcm_store_t *s, const char *f, const void *prefix,
		    size_t plen, tlcm_scan_fn fn, void *arg)
{
	return tlcm_store_scan_range(s, f, prefix, plen, NULL, 0, false, fn,
				     arg);
}

int tlcm_store_scan_range(tlcm_store_t *s, const char *f, const void *prefix,
			  size_t plen, const void *from, size_t flen,
			  bool reverse, tlcm_scan_fn fn, void *arg)
{
	rocksdb_column_family_handle_t *h = fam(s, f, false);
	if (!h)
		return 0;
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, h);
	if (from && flen) {
		if (reverse)
			rocksdb_iter_seek_for_prev(it, from, flen);
		else
			rocksdb_iter_seek(it, from, flen);
	} else if (!reverse) {
		rocksdb_iter_seek(it, prefix, plen);
	} else {
		/* the last key with this prefix: seek past it (the prefix
		 * with its last byte incremented, carrying), step back */
		unsigned char up[256];
		size_t n = plen < sizeof up ? plen : sizeof up;
		memcpy(up, prefix, n);
		while (n && up[n - 1] == 0xff)
			n--;
		if (n) {
			up[n - 1]++;
			rocksdb_iter_seek_for_prev(it, (char *)up, n);
			/* seek_for_prev lands on `up` itself when it exists */
			size_t kl;
			const char *k = rocksdb_iter_valid(it) ?
				rocksdb_iter_key(it, &kl) : NULL;
			if (k && kl == n && !memcmp(k, up, n))
				rocksdb_iter_prev(it);
		} else {
			rocksdb_iter_seek_to_last(it);
		}
	}
	int rc = 0;
	while (!rc && rocksdb_iter_valid(it)) {
		size_t kl, vl;
		const char *k = rocksdb_iter_key(it, &kl);
		if (kl < plen || memcmp(k, prefix, plen))
			break;
		const char *v = rocksdb_iter_value(it, &vl);
		rc = fn(arg, k, kl, v, vl);
		if (reverse)
			rocksdb_iter_prev(it);
		else
			rocksdb_iter_next(it);
	}
	char *err = NULL;
	if (!rc)
		rocksdb_iter_get_error(it, &err);
	rocksdb_iter_destroy(it);
	return err ? werr(s, err, "scan") : rc;
}

bool tlcm_store_has_family(tlcm_store_t *s, const char *f)
{
	return fam(s, f, false) != NULL;
}

int tlcm_store_compact(tlcm_store_t *s, const char *f, const void *begin,
		       size_t blen, const void *end, size_t elen)
{
	if (s->o.read_only)
		return TLCM_EPERM;
	rocksdb_column_family_handle_t *h = fam(s, f, false);
	if (!h)
		return 0;
	rocksdb_compactoptions_t *co = rocksdb_compactoptions_create();
	if (!co)
		return TLCM_ENOMEM;
	/* not exclusive: automatic compactions of the writers go on */
	rocksdb_compactoptions_set_exclusive_manual_compaction(co, 0);
	rocksdb_compact_range_cf_opt(s->db, h, co, begin, begin ? blen : 0,
				     end, end ? elen : 0);
	rocksdb_compactoptions_destroy(co);
	return 0;
}

int tlcm_store_sync(tlcm_store_t *s)
{
	char *err = NULL;
	rocksdb_flush_wal(s->db, 1, &err);
	return err ? werr(s, err, "sync") : 0;
}

/* ---- snapshots ------------------------------------------------------------ */

static void snap_key(uint64_t v, char key[22])
{
	snprintf(key, 22, "snap/%016llx", (unsigned long long)v);
}

static uint64_t seek_newest(tlcm_store_t *s, const char *node);

/* Newest version of node (0 when none); under s->mu. *fresh says whether
 * this process had not seen the node before. */
static struct newest *newest_entry(tlcm_store_t *s, const char *node,
				   bool *fresh)
{
	*fresh = false;
	for (size_t i = 0; i < s->nnewest; i++)
		if (!strcmp(s->newest[i].node, node))
			return &s->newest[i];
	struct newest *nn = realloc(s->newest, (s->nnewest + 1) * sizeof *nn);
	if (!nn)
		return NULL;
	s->newest = nn;
	nn[s->nnewest] = (struct newest){strdup(node), seek_newest(s, node)};
	*fresh = true;
	return &nn[s->nnewest++];
}

static uint64_t newest(tlcm_store_t *s, const char *node)
{
	bool fresh;
	struct newest *e = newest_entry(s, node, &fresh);
	return e ? e->version : seek_newest(s, node);
}

static uint64_t seek_newest(tlcm_store_t *s, const char *node)
{
	char fname[128];
	node_family(node, fname, sizeof fname);
	rocksdb_column_family_handle_t *h = family(s, fname, false);
	if (!h)
		return 0;
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, h);
	rocksdb_iter_seek_for_prev(it, "snap/\xff", 6);
	uint64_t v = 0;
	if (rocksdb_iter_valid(it)) {
		size_t kl;
		const char *k = rocksdb_iter_key(it, &kl);
		if (kl == 21 && !memcmp(k, "snap/", 5))
			v = strtoull(k + 5, NULL, 16);
	}
	rocksdb_iter_destroy(it);
	return v;
}

static int parse_snap(const char *node, const char *val, size_t vlen,
		      tlcm_snap_info_t *info)
{
	snap_hdr_t h;
	memset(info, 0, sizeof *info);
	snprintf(info->node, sizeof info->node, "%s", node);
	if (vlen < sizeof h)
		return TLCM_ECORRUPT;
	memcpy(&h, val, sizeof h);
	if (h.magic != SNAP_MAGIC || h.format != 1 ||
	    h.size != vlen - sizeof h)
		return TLCM_ECORRUPT;
	info->version = h.version;
	info->time_ns = h.time_ns;
	info->group = h.group;
	info->size = (size_t)h.size;
	memcpy(info->reason, h.reason, sizeof info->reason);
	info->reason[sizeof info->reason - 1] = 0;
	uint32_t crc = (uint32_t)crc32(0, (const Bytef *)val + sizeof h,
				       (uInt)h.size);
	info->intact = crc == h.crc;
	return info->intact ? 0 : TLCM_ECORRUPT;
}

/* Add version v of node (and pruning beyond keep) to batch b; under s->mu. */
static int add_snapshot(tlcm_store_t *s, tlcm_batch_t *b, const char *node,
			uint64_t v, uint64_t group, const void *data,
			size_t len, const char *reason, bool first)
{
	char fname[128], key[22];
	node_family(node, fname, sizeof fname);
	rocksdb_column_family_handle_t *h = family(s, fname, true);
	if (!h)
		return TLCM_EIO;
	snap_hdr_t hdr = {.magic = SNAP_MAGIC, .format = 1, .version = v,
			  .time_ns = realtime_ns(), .group = group,
			  .size = len,
			  .crc = (uint32_t)crc32(0, data, (uInt)len)};
	snprintf(hdr.reason, sizeof hdr.reason, "%s", reason ? reason : "");
	char *val = malloc(sizeof hdr + len);
	if (!val)
		return TLCM_ENOMEM;
	memcpy(val, &hdr, sizeof hdr);
	if (len)
		memcpy(val + sizeof hdr, data, len);
	snap_key(v, key);
	rocksdb_writebatch_put_cf(b->wb, h, key, 21, val, sizeof hdr + len);
	free(val);
	if (v > s->o.keep) {
		/* the version that falls out; the first time this process
		 * snapshots the node, also whatever an earlier, larger keep
		 * left behind (a range, once: ranges pile up if repeated) */
		char from[22], to[22];
		snap_key(v - s->o.keep, to);
		if (first) {
			snap_key(0, from);
			rocksdb_writebatch_delete_range_cf(b->wb, h, from, 21,
							   to, 21);
		}
		rocksdb_writebatch_delete_cf(b->wb, h, to, 21);
	}
	return 0;
}

static int next_group(tlcm_store_t *s, tlcm_batch_t *b, uint64_t *g)
{
	rocksdb_column_family_handle_t *h = family(s, "meta", true);
	char *err = NULL;
	size_t vl;
	char *v = rocksdb_get_cf(s->db, s->ropts, h, "group_seq", 9, &vl, &err);
	if (err)
		return werr(s, err, "read group counter");
	uint64_t cur = 0;
	if (v && vl == 8)
		memcpy(&cur, v, 8);
	rocksdb_free(v);
	*g = cur + 1;
	rocksdb_writebatch_put_cf(b->wb, h, "group_seq", 9, (const char *)g, 8);
	return 0;
}

int tlcm_store_snapshot_group(tlcm_store_t *s, size_t n,
			      const char *const *nodes,
			      const void *const *data, const size_t *lens,
			      const char *reason, uint64_t *versions)
{
	if (s->o.read_only)
		return TLCM_EPERM;
	tlcm_batch_t *b = tlcm_batch_new();
	if (!b)
		return TLCM_ENOMEM;
	pthread_mutex_lock(&s->mu);
	uint64_t group = 0;
	int rc = n > 1 ? next_group(s, b, &group) : 0;
	for (size_t i = 0; !rc && i < n; i++) {
		for (size_t j = 0; j < i; j++)
			if (!strcmp(nodes[i], nodes[j]))
				rc = TLCM_EINVAL; /* one version per node */
		if (rc)
			break;
		bool fresh;
		struct newest *e = newest_entry(s, nodes[i], &fresh);
		if (!e) {
			rc = TLCM_ENOMEM;
			break;
		}
		versions[i] = e->version + 1;
		rc = add_snapshot(s, b, nodes[i], versions[i], group, data[i],
				  lens[i], reason, fresh);
	}
	if (!rc)
		rc = tlcm_store_write(s, b);
	for (size_t i = 0; !rc && i < n; i++) {
		bool fresh;
		struct newest *e = newest_entry(s, nodes[i], &fresh);
		if (e)
			e->version = versions[i];
	}
	pthread_mutex_unlock(&s->mu);
	tlcm_batch_free(b);
	return rc;
}

int tlcm_store_snapshot(tlcm_store_t *s, const char *node, const void *data,
			size_t len, const char *reason, uint64_t *version)
{
	uint64_t v = 0;
	int rc = tlcm_store_snapshot_group(s, 1, &node, &data, &len, reason, &v);
	if (version)
		*version = v;
	return rc;
}

int tlcm_store_load(tlcm_store_t *s, const char *node, uint64_t version,
		    void **data, size_t *len, tlcm_snap_info_t *info)
{
	*data = NULL;
	*len = 0;
	char fname[128], key[22];
	node_family(node, fname, sizeof fname);
	pthread_mutex_lock(&s->mu);
	if (version == 0)
		version = newest(s, node);
	rocksdb_column_family_handle_t *h = family(s, fname, false);
	pthread_mutex_unlock(&s->mu);
	if (!h || version == 0)
		return TLCM_ENOENT;
	snap_key(version, key);
	char *err = NULL;
	size_t vl;
	char *v = rocksdb_get_cf(s->db, s->ropts, h, key, 21, &vl, &err);
	if (err)
		return werr(s, err, "load snapshot");
	if (!v)
		return TLCM_ENOENT;
	tlcm_snap_info_t tmp;
	int rc = parse_snap(node, v, vl, info ? info : &tmp);
	if (rc == 0) {
		size_t sz = vl - sizeof(snap_hdr_t);
		*data = malloc(sz ? sz : 1);
		if (!*data) {
			rc = TLCM_ENOMEM;
		} else {
			memcpy(*data, v + sizeof(snap_hdr_t), sz);
			*len = sz;
		}
	}
	rocksdb_free(v);
	return rc;
}

static int list_family(tlcm_store_t *s, size_t fi, tlcm_snap_info_t **out,
		       size_t *n, size_t *cap)
{
	const char *node = s->names[fi] + 5;
	rocksdb_iterator_t *it =
		rocksdb_create_iterator_cf(s->db, s->ropts, s->cfs[fi]);
	for (rocksdb_iter_seek(it, "snap/", 5); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		size_t kl, vl;
		const char *k = rocksdb_iter_key(it, &kl);
		if (kl < 5 || memcmp(k, "snap/", 5))
			break;
		const char *v = rocksdb_iter_value(it, &vl);
		if (*n == *cap) {
			*cap = *cap ? 2 * *cap : 16;
			tlcm_snap_info_t *no = realloc(*out, *cap * sizeof *no);
			if (!no) {
				rocksdb_iter_destroy(it);
				return TLCM_ENOMEM;
			}
			*out = no;
		}
		tlcm_snap_info_t *inf = &(*out)[(*n)++];
		if (parse_snap(node, v, vl, inf) && !inf->version) {
			/* header unreadable: still list it, by its key */
			inf->version = kl == 21 ? strtoull(k + 5, NULL, 16) : 0;
			inf->size = vl;
		}
	}
	rocksdb_iter_destroy(it);
	return 0;
}

int tlcm_store_list(tlcm_store_t *s, const char *node, tlcm_snap_info_t **out,
		    size_t *n)
{
	*out = NULL;
	*n = 0;
	size_t cap = 0;
	int rc = 0;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; !rc && i < s->ncf; i++) {
		if (strncmp(s->names[i], "node/", 5))
			continue;
		if (node && strcmp(s->names[i] + 5, node))
			continue;
		rc = list_family(s, i, out, n, &cap);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int tlcm_store_rollback(tlcm_store_t *s, const char *node, uint64_t version,
			uint64_t *new_version)
{
	void *data;
	size_t len;
	tlcm_snap_info_t info;
	int rc = tlcm_store_load(s, node, version, &data, &len, &info);
	if (rc)
		return rc;
	char reason[64];
	snprintf(reason, sizeof reason, "rollback to v%llu",
		 (unsigned long long)version);
	if (!info.group) {
		rc = tlcm_store_snapshot(s, node, data, len, reason, new_version);
		free(data);
		return rc;
	}
	free(data);
	/* the whole group goes back together */
	tlcm_snap_info_t *all;
	size_t n;
	if ((rc = tlcm_store_list(s, NULL, &all, &n)))
		return rc;
	const char **nodes = calloc(n ? n : 1, sizeof *nodes);
	void **datas = calloc(n ? n : 1, sizeof *datas);
	size_t *lens = calloc(n ? n : 1, sizeof *lens);
	uint64_t *vers = calloc(n ? n : 1, sizeof *vers);
	size_t m = 0;
	for (size_t i = 0; i < n && nodes && datas && lens && vers; i++) {
		if (all[i].group != info.group)
			continue;
		nodes[m] = all[i].node;
		rc = tlcm_store_load(s, all[i].node, all[i].version, &datas[m],
				     &lens[m], NULL);
		if (rc)
			break;
		m++;
	}
	if (!rc && m) {
		rc = tlcm_store_snapshot_group(s, m, nodes,
					       (const void *const *)datas, lens,
					       reason, vers);
		for (size_t i = 0; !rc && i < m; i++)
			if (!strcmp(nodes[i], node) && new_version)
				*new_version = vers[i];
	}
	for (size_t i = 0; i < m; i++)
		free(datas[i]);
	free(nodes);
	free(datas);
	free(lens);
	free(vers);
	free(all);
	return rc;
}

int tlcm_store_check(tlcm_store_t *s, char *report, size_t len)
{
	int problems = 0;
	size_t used = 0;
	report[0] = 0;
	tlcm_snap_info_t *all;
	size_t n;
	int rc = tlcm_store_list(s, NULL, &all, &n);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (all[i].intact)
			continue;
		problems++;
		int w = snprintf(report + used, len - used,
				 "%s: node %s version %llu is corrupt (checksum "
				 "or header mismatch)\n", s->path, all[i].node,
				 (unsigned long long)all[i].version);
		if (w > 0 && (size_t)w < len - used)
			used += (size_t)w;
	}
	free(all);
	/* the outbox's packages and dead letters (engine/outbox.c) */
	tlcm_outbox_t *o = tlcm_store_outbox(s);
	if (!o)
		return TLCM_ENOMEM;
	rc = tlcm_outbox_check(o, report, len);
	return rc < 0 ? rc : problems + rc;
}
