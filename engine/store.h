/* store.h — durable state: one RocksDB per graph process.
 *
 * Column families: one per node ("node/<id>") plus system families
 * (outbox, dedup, registry, meta). Writes go through atomic batches. Node
 * snapshots are versioned per node (version, wall time, reason, size,
 * CRC-32 of the bytes); a group snapshot writes versions of several nodes
 * in one batch, so they roll back together. The newest `keep` versions of
 * each node are kept.
 *
 * Durability (the graph's `sync` setting; see docs/durability.md):
 *   always  every write is fsynced before it returns: nothing acknowledged
 *           is lost on process crash or power loss.
 *   batch   writes reach the OS at once, the log is fsynced every
 *           `sync_interval` (group commit): a process crash loses nothing,
 *           a power loss at most the last interval.
 *   never   writes reach the OS, never fsynced by us: a process crash loses
 *           nothing, a power loss what the OS had not yet written back.
 *
 * Errors: TLCM_E* codes; opening a store that is not one, or a foreign
 * RocksDB, fails with TLCM_ECORRUPT and `why` naming the path and problem;
 * a store held by a running graph fails with TLCM_EBUSY.
 */
#ifndef TLCM_STORE_H
#define TLCM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"

typedef enum {
	TLCM_SYNC_ALWAYS,
	TLCM_SYNC_BATCH,
	TLCM_SYNC_NEVER,
} tlcm_sync_t;

const char *tlcm_sync_name(tlcm_sync_t s);
int tlcm_sync_parse(const char *s, tlcm_sync_t *out);

typedef struct tlcm_store_opts {
	tlcm_sync_t sync;        /* default TLCM_SYNC_ALWAYS */
	uint64_t sync_interval;  /* ns, for batch; default 100 ms */
	unsigned keep;           /* versions kept per node; default 5 */
	bool read_only;          /* open without the lock (inspection) */
	bool must_exist;         /* do not create a new store */
	bool fresh;              /* start empty: an existing TinyLCM store
				    at path is destroyed first (anything
				    else there is refused as usual) */
	/* Nodes whose family (snapshots, records) should be ready: the
	 * missing ones are created with the store's opening, all at once,
	 * instead of one at a time at each node's first write, which
	 * rewrites RocksDB's OPTIONS file each time (milliseconds inside
	 * a node's callback). Ignored read-only. */
	const char *const *nodes;
	size_t nnodes;
} tlcm_store_opts_t;

typedef struct tlcm_store tlcm_store_t;
typedef struct tlcm_batch tlcm_batch_t;

int tlcm_store_open(tlcm_store_t **out, const char *path,
		    const tlcm_store_opts_t *o, char *why, size_t whylen);
void tlcm_store_close(tlcm_store_t *s);
const char *tlcm_store_path(const tlcm_store_t *s);

/* ---- key/value in a family (created on first use) ---- */

int tlcm_store_put(tlcm_store_t *s, const char *family, const void *key,
		   size_t klen, const void *val, size_t vlen);
/* *val is malloc'd (free it); TLCM_ENOENT when absent. */
int tlcm_store_get(tlcm_store_t *s, const char *family, const void *key,
		   size_t klen, void **val, size_t *vlen);
int tlcm_store_delete(tlcm_store_t *s, const char *family, const void *key,
		      size_t klen);

tlcm_batch_t *tlcm_batch_new(void);
void tlcm_batch_free(tlcm_batch_t *b);
int tlcm_batch_put(tlcm_store_t *s, tlcm_batch_t *b, const char *family,
		   const void *key, size_t klen, const void *val, size_t vlen);
int tlcm_batch_delete(tlcm_store_t *s, tlcm_batch_t *b, const char *family,
		      const void *key, size_t klen);
/* Apply all of b atomically, synced per the store's policy. */
int tlcm_store_write(tlcm_store_t *s, tlcm_batch_t *b);

/* Call fn for every key of family that starts with prefix, in key order,
 * until fn returns non-zero (that value is returned). A family that does
 * not exist has no keys. */
typedef int (*tlcm_scan_fn)(void *arg, const void *key, size_t klen,
			    const void *val, size_t vlen);
int tlcm_store_scan(tlcm_store_t *s, const char *family, const void *prefix,
		    size_t plen, tlcm_scan_fn fn, void *arg);

/* The same within prefix, starting at key `from` (NULL: the first key of
 * the prefix; in reverse, the last), forwards or backwards (reverse: keys
 * <= from, newest first when keys end in a big-endian time). */
int tlcm_store_scan_range(tlcm_store_t *s, const char *family,
			  const void *prefix, size_t plen, const void *from,
			  size_t flen, bool reverse, tlcm_scan_fn fn,
			  void *arg);

/* Does family exist in the store (was anything ever written to it)? */
bool tlcm_store_has_family(tlcm_store_t *s, const char *family);

/* Compact the keys [begin, end] of family (NULL: from the first, to the
 * last key) now, so that what was deleted there leaves the disk; other
 * writes and compactions go on meanwhile. Waits until it is done. */
int tlcm_store_compact(tlcm_store_t *s, const char *family,
		       const void *begin, size_t blen, const void *end,
		       size_t elen);

/* ---- snapshots ---- */

typedef struct tlcm_snap_info {
	char node[64];
	uint64_t version;  /* per node, from 1, never reused */
	uint64_t time_ns;  /* CLOCK_REALTIME when taken */
	uint64_t group;    /* shared by a group snapshot's members, else 0 */
	size_t size;
	char reason[64];
	bool intact;       /* CRC matches */
} tlcm_snap_info_t;

/* Store a new version of node's state. */
int tlcm_store_snapshot(tlcm_store_t *s, const char *node, const void *data,
			size_t len, const char *reason, uint64_t *version);
/* New versions of n nodes in one atomic batch; versions[i] receives each. */
int tlcm_store_snapshot_group(tlcm_store_t *s, size_t n,
			      const char *const *nodes,
			      const void *const *data, const size_t *lens,
			      const char *reason, uint64_t *versions);
/* Load a version (0 = the newest); *data malloc'd. TLCM_ENOENT when there
 * is none, TLCM_ECORRUPT when its CRC does not match. */
int tlcm_store_load(tlcm_store_t *s, const char *node, uint64_t version,
		    void **data, size_t *len, tlcm_snap_info_t *info);
/* All kept versions (node NULL: every node), oldest first per node. */
int tlcm_store_list(tlcm_store_t *s, const char *node, tlcm_snap_info_t **out,
		    size_t *n);
/* Make `version` the newest again: written as a new version with reason
 * "rollback to vN" (history is kept). If it belongs to a group snapshot,
 * the whole group rolls back in one batch. */
int tlcm_store_rollback(tlcm_store_t *s, const char *node, uint64_t version,
			uint64_t *new_version);
/* Verify every snapshot's CRC and the store's meta; problems are appended
 * to report (one per line). Returns the number of problems, or < 0. */
int tlcm_store_check(tlcm_store_t *s, char *report, size_t len);

/* Sync now (flush the write-ahead log to disk). */
int tlcm_store_sync(tlcm_store_t *s);

#endif
