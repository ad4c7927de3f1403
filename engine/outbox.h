/* outbox.h — the device's durable, prioritised outbox of packages
 * (store-and-forward, docs/api.md; issue 7).
 *
 * One outbox per graph store, shared by every node of the process that
 * uses it (the packager puts, the uploader drains): get it with
 * tlcm_store_outbox(). It lives in the store's `outbox` family; dead
 * letters in `deadletter`. Every call is thread-safe, and every change is
 * one atomic store batch under the graph's sync policy, so a package the
 * outbox accepted is there after kill -9 (and after power loss, within
 * what the sync policy promises: docs/durability.md).
 *
 * Order: by priority (1 first), then by age (created_ns, then id).
 * Retention: when a put would take the outbox above max_bytes, or
 * packages are older than max_age, the lowest-priority-oldest go first,
 * in the same batch as the put, and are reported to the caller (who emits
 * a counted `dropped` event: never silent). A package larger than
 * max_bytes alone is refused (TLCM_ETOOBIG).
 *
 * A put of a package less important (higher priority number) than
 * everything it would have to evict is refused with TLCM_ENOSPC, nothing
 * changed: retention never drops an important package for a lesser one.
 *
 * Package ids are UUIDv7 text (36 characters + NUL), unique per device;
 * any 1..36 characters of [A-Za-z0-9._-] are accepted. Putting an id that
 * is already queued is a no-op that returns 0 (a re-sent put after a
 * crash is harmless), whatever its bytes. Priorities are 1..255; kinds up
 * to 32 characters.
 *
 * Layout (engine/outbox.c): `outbox` holds q/<priority><created_ns
 * big-endian><id> → the package bytes, i/<id> → its header (kind, size,
 * CRC-32), n/evicted; `deadletter` holds h/<id> → header, time, reason
 * and p/<id> → the bytes. An index in memory (per priority, by age; ids
 * hashed) is built on first use by scanning the headers only.
 */
#ifndef TLCM_OUTBOX_H
#define TLCM_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/store.h"

#define TLCM_PKG_ID_LEN 36
#define TLCM_PKG_KIND_MAX 32

typedef struct tlcm_outbox tlcm_outbox_t;

typedef struct tlcm_outbox_entry {
	char id[TLCM_PKG_ID_LEN + 1];
	char kind[TLCM_PKG_KIND_MAX + 1];
	uint8_t priority;    /* 1 = most important */
	uint64_t created_ns; /* wall clock */
	size_t size;         /* bytes of the package */
} tlcm_outbox_entry_t;

typedef struct tlcm_outbox_limits {
	uint64_t max_bytes;  /* 0: no limit */
	uint64_t max_age_ns; /* 0: no limit (the offline tolerance) */
} tlcm_outbox_limits_t;

typedef struct tlcm_outbox_stats {
	uint64_t packages, bytes;
	uint64_t by_priority[8];   /* packages at priority 1..7 (index 1..7),
				      index 0: priorities above 7 */
	uint64_t dead;             /* packages in the dead-letter family */
	uint64_t evicted;          /* since the store was created */
	uint64_t oldest_ns;        /* created_ns of the oldest, 0 if empty */
} tlcm_outbox_stats_t;

/* The store's outbox (created on first use, freed with the store; NULL
 * only when out of memory). On a read-only store every read works and
 * every change fails with TLCM_EPERM. */
tlcm_outbox_t *tlcm_store_outbox(tlcm_store_t *s);

/* Limits apply from the next put or tlcm_outbox_expire(). */
void tlcm_outbox_set_limits(tlcm_outbox_t *o, const tlcm_outbox_limits_t *l);

/* Queue package bytes under e (e->size is taken from len; created_ns 0
 * means now). The packages evicted to make room (lowest priority first,
 * oldest first within one) are deleted in the same batch; *nevicted
 * receives how many were evicted — ALL of them, which may be more than
 * max_evicted — and the first min(*nevicted, max_evicted) are copied to
 * evicted (both may be NULL/0 when the caller does not care — it should).
 * TLCM_ETOOBIG: len > max_bytes; TLCM_ENOSPC: only more important
 * packages could make room; TLCM_EINVAL: bad id, kind or priority. */
int tlcm_outbox_put(tlcm_outbox_t *o, const tlcm_outbox_entry_t *e,
		    const void *pkg, size_t len, tlcm_outbox_entry_t *evicted,
		    size_t max_evicted, size_t *nevicted);

/* Drop packages older than max_age at now_ns (0: the wall clock now),
 * same reporting as put. Put does this too. */
int tlcm_outbox_expire(tlcm_outbox_t *o, uint64_t now_ns,
		       tlcm_outbox_entry_t *evicted, size_t max_evicted,
		       size_t *nevicted);

/* The first package in order whose priority is <= max_priority and whose
 * id is not in skip[0..nskip) (ids the caller is backing off); *pkg
 * malloc'd. TLCM_ENOENT when there is none. A package whose bytes fail
 * their checksum is moved to the dead letters (reason "corrupt: ...",
 * logged) and the next one is returned. */
int tlcm_outbox_peek(tlcm_outbox_t *o, uint8_t max_priority,
		     const char (*skip)[TLCM_PKG_ID_LEN + 1], size_t nskip,
		     tlcm_outbox_entry_t *e, void **pkg, size_t *len);

/* Delivered: remove it. TLCM_ENOENT if it is not queued (already done). */
int tlcm_outbox_done(tlcm_outbox_t *o, const char *id);

/* Refused for good: move it to the dead-letter family with the reason
 * (HTTP status and the server's words; up to 4 KiB kept), atomically.
 * TLCM_ENOENT if it is not queued. */
int tlcm_outbox_dead(tlcm_outbox_t *o, const char *id, const char *reason);

int tlcm_outbox_stats(tlcm_outbox_t *o, tlcm_outbox_stats_t *st);

/* Every queued entry (in order) or every dead letter, with its reason:
 * fn returns non-zero to stop. For inspection (tinylcm outbox ls/dead). */
typedef int (*tlcm_outbox_fn)(void *arg, const tlcm_outbox_entry_t *e,
			      const char *reason);
int tlcm_outbox_list(tlcm_outbox_t *o, bool dead, tlcm_outbox_fn fn,
		     void *arg);

/* Verify every queued package and dead letter (header, bytes present,
 * CRC-32, index and queue keys agree); one line per problem appended to
 * report (NUL-terminated, at most len bytes). Returns the number of
 * problems, or < 0. tlcm_store_check() includes it. */
int tlcm_outbox_check(tlcm_outbox_t *o, char *report, size_t len);

/* engine-internal, for store.c: make and free a store's outbox. */
tlcm_outbox_t *tlcm_outbox_new_(tlcm_store_t *s);
void tlcm_outbox_free_(tlcm_outbox_t *o);

#endif
