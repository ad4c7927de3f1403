/* txq.h — the satellite's durable queue of unacknowledged batches.
 *
 * Each batch is kept as the exact bytes to send (a size-prefixed LinkFrame)
 * under its link sequence number in one family of the graph store; a put
 * (with any evictions it causes) and an ack are each one atomic store batch
 * under the graph's sync policy, so a batch the queue accepted is there
 * after kill -9 until the core acknowledges it. The queue also keeps the
 * last sequence number it gave out, the highest trace id it accepted (for
 * sources that replay after a crash) and its drop counter.
 *
 * Bounded by bytes and batches. When a put would exceed a bound, policy
 * drop_oldest deletes the oldest unacknowledged batches in the same store
 * batch and counts them (durably); policy block refuses the put with
 * TLCM_EAGAIN (nothing changed) until acks make room. Never silent.
 *
 * Thread-safe: the node puts, the connection threads read and ack.
 * Keys: q/<seq big-endian> → frame; m/last, m/acked, m/trace, m/dropped.
 */
#ifndef TLCM_LINK_TXQ_H
#define TLCM_LINK_TXQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/store.h"

typedef struct link_txq link_txq_t;

typedef struct link_txq_limits {
	uint64_t max_bytes;   /* 0: no limit */
	uint64_t max_batches; /* 0: no limit */
	bool block;           /* true: block, false: drop_oldest */
} link_txq_limits_t;

typedef struct link_txq_stats {
	uint64_t depth, bytes;    /* unacknowledged batches and their bytes */
	uint64_t last_seq;        /* last sequence number given out */
	uint64_t acked;           /* highest acknowledged sequence number */
	uint64_t dropped;         /* batches dropped by drop_oldest, ever */
	uint64_t trace;           /* highest trace accepted */
	uint64_t puts, refused;   /* this run: puts, block refusals */
} link_txq_stats_t;

/* Open the queue kept in `family` of s (loading what is there). */
int link_txq_open(link_txq_t **out, tlcm_store_t *s, const char *family,
		  const link_txq_limits_t *l, char *why, size_t whylen);
void link_txq_free(link_txq_t *q);

/* The sequence number the next put must carry. */
uint64_t link_txq_next_seq(link_txq_t *q);

/* Persist batch `seq` (== link_txq_next_seq) with its frame bytes and the
 * highest trace among its messages. *ndropped receives how many old
 * batches drop_oldest removed in the same write. TLCM_EAGAIN: full under
 * block; TLCM_ETOOBIG: one frame larger than max_bytes; TLCM_EINVAL: seq
 * out of order. */
int link_txq_put(link_txq_t *q, uint64_t seq, const void *frame, size_t len,
		 uint64_t trace, uint64_t *ndropped);

/* The core persisted every batch <= seq: delete them (one write). */
int link_txq_ack(link_txq_t *q, uint64_t seq);

/* Copy of the first queued batch with sequence number > after; waits up
 * to wait_ns for one (0: do not wait). TLCM_ENOENT when none. *frame is
 * malloc'd. */
int link_txq_next(link_txq_t *q, uint64_t after, uint64_t wait_ns,
		  uint64_t *seq, void **frame, size_t *len);

/* Wait up to wait_ns until there is room for a put of len bytes (block
 * policy) or the queue is empty (len 0); true when so. */
bool link_txq_wait_room(link_txq_t *q, size_t len, uint64_t wait_ns);

/* Wake every waiter (shutting down). */
void link_txq_wake(link_txq_t *q);

void link_txq_stats(link_txq_t *q, link_txq_stats_t *st);

#endif
