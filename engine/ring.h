/* ring.h — single-producer single-consumer ring of variable-size messages.
 *
 * The ring lives in a shared-memory segment (memfd + mmap), so the producer
 * and the consumer may be threads of one process or two processes (the
 * other side maps the same fd with tlcm_ring_attach). Messages are written
 * and read in place:
 *
 *     producer                              consumer
 *     p = tlcm_ring_reserve(r, max)         m = tlcm_ring_peek(r)
 *     ... build up to max bytes at p ...    ... read tlcm_msg_data(m) ...
 *     tlcm_ring_commit(r, p, size, &meta)   tlcm_ring_release(r, 1)
 *
 * A message is a 40-byte header (tlcm_msg_t: type id = FlatBuffers file
 * identifier, payload size, sequence, timestamp, trace id) followed by the
 * payload, 8-byte aligned, never split at the wrap. Data built back to front
 * (the FlatBuffers builder) may end anywhere in the reservation: commit moves
 * it to the front of the slot when needed.
 *
 * Head and tail sit on separate cache lines; each side caches the other's
 * index. Batching: tlcm_ring_commit_defer() + tlcm_ring_publish() make many
 * messages visible at once, tlcm_ring_peek_many() + tlcm_ring_release()
 * consume many. Idle costs nothing: tlcm_ring_wait_data() and the
 * producer's wait under the `block` policy park on a futex in the segment
 * and are woken only when the other side has something for them.
 *
 * Edge policy when full: TLCM_EDGE_BLOCK (producer waits),
 * TLCM_EDGE_DROP_NEWEST (the new message is refused), TLCM_EDGE_DROP_OLDEST
 * (the oldest messages the consumer has not taken yet are discarded to make
 * room). Every drop is counted in the segment (tlcm_ring_stats).
 *
 * Threading: one producer thread and one consumer thread at a time (they
 * may change, with a happens-before edge between users of the same side).
 */
#ifndef TLCM_RING_H
#define TLCM_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"

typedef enum {
	TLCM_EDGE_BLOCK = 0,
	TLCM_EDGE_DROP_OLDEST = 1,
	TLCM_EDGE_DROP_NEWEST = 2,
} tlcm_edge_policy_t;

/* Name of a policy as written in graph files ("block", ...), and back. */
const char *tlcm_edge_policy_name(tlcm_edge_policy_t p);
int tlcm_edge_policy_parse(const char *s, tlcm_edge_policy_t *out);

/* A message in ring memory. Only the engine writes headers. */
typedef struct tlcm_msg {
	_Atomic uint32_t len;   /* slot bytes, header included */
	_Atomic uint32_t flags; /* internal state bits */
	uint32_t size;          /* payload bytes */
	char type[4];           /* FlatBuffers file identifier */
	uint64_t seq;           /* per-ring sequence, from 1 */
	uint64_t ts_ns;         /* CLOCK_MONOTONIC at the first commit of its
				   published batch, unless the producer gave
				   one */
	uint64_t trace;         /* id of the originating frame/sample */
} tlcm_msg_t;

#define TLCM_MSG_HDR ((size_t)sizeof(tlcm_msg_t))

static inline const void *tlcm_msg_data(const tlcm_msg_t *m)
{
	return (const uint8_t *)m + TLCM_MSG_HDR;
}

/* A flag the producer may give a message (tlcm_msg_meta_t.flags), kept in
 * the header beside the ring's own state bits: the payload was verified
 * against the schema of its type when it was emitted
 * (tlcm_emit_end_checked). */
#define TLCM_MSG_VERIFIED 0x100u

/* What the producer says about a message; zero fields get defaults (type
 * "\0\0\0\0", ts = now, trace 0, no flags). */
typedef struct tlcm_msg_meta {
	char type[4];
	uint64_t ts_ns;
	uint64_t trace;
	uint32_t flags; /* TLCM_MSG_VERIFIED or 0 */
} tlcm_msg_meta_t;

typedef struct tlcm_ring_stats {
	uint64_t committed; /* messages made visible */
	uint64_t consumed;  /* messages released by the consumer */
	uint64_t dropped;   /* messages lost to the policy */
	uint64_t full;      /* times the producer found the ring full */
	uint64_t bytes;     /* payload bytes committed */
	size_t used;        /* bytes in the ring now */
	size_t capacity;
} tlcm_ring_stats_t;

typedef struct tlcm_ring tlcm_ring_t;

/* New ring of cap bytes (rounded up to a power of two, at least 4 KiB).
 * name labels the memfd (visible in /proc/PID/fd). */
int tlcm_ring_create(tlcm_ring_t **out, size_t cap, tlcm_edge_policy_t policy,
		     const char *name);
/* Map a ring created elsewhere (e.g. inherited fd in a child). The fd is
 * duplicated; the caller keeps its own. */
int tlcm_ring_attach(tlcm_ring_t **out, int fd);
void tlcm_ring_free(tlcm_ring_t *r);
/* Take over one side of a ring from a process that died: re-read both
 * positions from the segment, dropping this handle's local view (messages
 * the dead consumer peeked but never released will be peeked again; what
 * the dead producer reserved but never published is gone). */
void tlcm_ring_resync(tlcm_ring_t *r);
int tlcm_ring_fd(const tlcm_ring_t *r);
size_t tlcm_ring_capacity(const tlcm_ring_t *r);
tlcm_edge_policy_t tlcm_ring_policy(const tlcm_ring_t *r);
/* Largest payload a single message can have in this ring. */
size_t tlcm_ring_max_payload(const tlcm_ring_t *r);

/* ---- producer ---- */

#define TLCM_RING_NOWAIT 1 /* block policy: fail with TLCM_EAGAIN, not wait */

/* Space for a payload of up to max bytes, 8-byte aligned, or NULL with
 * *err set: TLCM_EAGAIN (full under drop_newest, or NOWAIT), TLCM_ETOOBIG
 * (max exceeds tlcm_ring_max_payload), TLCM_ECLOSED (ring closed). Under
 * drop_newest a refused message counts as dropped. */
void *tlcm_ring_reserve(tlcm_ring_t *r, size_t max, int flags, int *err);
/* Commit the reservation: data (size bytes) lies inside it; it is moved to
 * the slot start if it does not start there. Publishes immediately. */
int tlcm_ring_commit(tlcm_ring_t *r, const void *data, size_t size,
		     const tlcm_msg_meta_t *meta);
/* Commit without publishing: the message becomes visible at the next
 * tlcm_ring_publish() (or tlcm_ring_commit()). */
int tlcm_ring_commit_defer(tlcm_ring_t *r, const void *data, size_t size,
			   const tlcm_msg_meta_t *meta);
void tlcm_ring_publish(tlcm_ring_t *r);
/* Reserve + copy + commit. */
int tlcm_ring_push(tlcm_ring_t *r, const void *data, size_t size,
		   const tlcm_msg_meta_t *meta, int flags);
/* No more messages will come: the consumer sees end of stream once it has
 * drained the ring; a waiting side wakes up. */
void tlcm_ring_close(tlcm_ring_t *r);

/* Wait until a reservation of max bytes would fit, the ring is closed or
 * detached, or timeout_ns passes (< 0: forever): 0, TLCM_ECLOSED or
 * TLCM_ETIMEDOUT. For callers that reserve with TLCM_RING_NOWAIT. */
int tlcm_ring_wait_space(tlcm_ring_t *r, size_t max, int64_t timeout_ns);

/* ---- consumer ---- */

/* The consumer is gone for good: the producer's reservations fail with
 * TLCM_ECLOSED from now on (and a waiting producer wakes up). */
void tlcm_ring_detach(tlcm_ring_t *r);

/* Oldest message not yet peeked, or NULL when there is none. Peeked
 * messages stay valid until released. */
const tlcm_msg_t *tlcm_ring_peek(tlcm_ring_t *r);
/* Up to max further messages; returns how many. */
size_t tlcm_ring_peek_many(tlcm_ring_t *r, const tlcm_msg_t **msgs,
			   size_t max);
/* Release the n oldest peeked messages, giving their space back. */
void tlcm_ring_release(tlcm_ring_t *r, size_t n);
/* True when closed and nothing is left to peek. */
bool tlcm_ring_eos(tlcm_ring_t *r);
/* True when a peek would return a message (cheap; for schedulers). */
bool tlcm_ring_readable(tlcm_ring_t *r);

/* Park until a message is available, the ring is closed, or timeout_ns
 * passes (< 0: forever). 0 when readable, TLCM_ECLOSED at end of stream,
 * TLCM_ETIMEDOUT. */
int tlcm_ring_wait_data(tlcm_ring_t *r, int64_t timeout_ns);

/* Consumer-side notification for schedulers: arm() says "tell me when data
 * arrives"; the producer's next publish then calls fn(arg) once (in the
 * producer's thread) and disarms. arm() returns true when data is already
 * there (nothing was armed). arm() reads only the shared segment, so a
 * scheduler may call it after handing the consumer to another thread,
 * provided every peeked message was released. The callback only works
 * within this process; cross-process consumers use tlcm_ring_wait_data(). */
void tlcm_ring_set_notify(tlcm_ring_t *r, void (*fn)(void *), void *arg);
bool tlcm_ring_arm(tlcm_ring_t *r);
/* Producer-side: tell fn(arg) when `need` bytes of the ring are free (for
 * schedulers that must not block a worker on a full edge). Like arm(),
 * arm_space() reads only the shared segment; nothing may be unpublished. */
void tlcm_ring_set_space_notify(tlcm_ring_t *r, void (*fn)(void *), void *arg);
bool tlcm_ring_arm_space(tlcm_ring_t *r, size_t need);

/* Producer-side: would a reservation of need payload bytes succeed now
 * without waiting? */
bool tlcm_ring_writable(tlcm_ring_t *r, size_t need);

void tlcm_ring_stats(const tlcm_ring_t *r, tlcm_ring_stats_t *s);

#endif
