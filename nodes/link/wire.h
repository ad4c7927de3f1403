/* wire.h — the satellite link's frames and their transport (docs/link.md).
 *
 * A connection is an NNG byte stream (tcp, tls+tcp, ipc) carrying
 * size-prefixed LinkFrame FlatBuffers (schemas/link_wire.fbs): a 4-byte
 * little-endian length, then the frame. Every frame read from a peer is
 * checked by link_frame_check() (size, FlatBuffers verifier, exactly one
 * member, satellite id pattern) before anything looks at it. The I/O
 * helpers block the calling thread (one thread per connection) with a
 * timeout; closing the stream from another thread wakes them.
 */
#ifndef TLCM_LINK_WIRE_H
#define TLCM_LINK_WIRE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "engine/fb/fb.h"
#include "fb/link_wire_fb.h"

#define LINK_ID_MAX 64            /* satellite id: [A-Za-z0-9._-]{1,64} */
#define LINK_FRAME_MIN 12         /* smaller cannot be a LinkFrame */
/* Frames are kept with their size prefix, in malloc'd memory: the body
 * starts LINK_BODY bytes in, aligned as the builder laid it out. */
#define LINK_BODY 4
/* Back-pressure keeps the link: a core that holds a connection back
 * (max_pending) acknowledges again every LINK_HOLD_ACK_NS, and a
 * satellite gives up on a write that makes no progress only when it has
 * not heard from the core for its timeout, at least LINK_QUIET_MIN_NS. */
#define LINK_HOLD_ACK_NS 250000000ull
#define LINK_QUIET_MIN_NS 1000000000ull

typedef enum {
	LINK_F_HELLO = 1,
	LINK_F_BATCH,
	LINK_F_ACK,
	LINK_F_HEALTH,
	LINK_F_GOODBYE,
} link_kind_t;

const char *link_kind_name(link_kind_t k);

/* Is s a valid satellite id (1..64 of [A-Za-z0-9._-], not "." or "..")? */
bool link_id_valid(const char *s, size_t len);

/* Check an untrusted frame body (without the size prefix): the verifier,
 * exactly one member set, a valid satellite id in a hello, a batch seq
 * >= 1. 0 and *kind, or TLCM_EBADMSG with why (a static or why_buf text)
 * saying what is wrong. */
int link_frame_check(const void *buf, size_t len, link_kind_t *kind,
		     char *why, size_t whylen);

/* Build frames into b (reset first) size-prefixed; *out and *len point into
 * b's memory. */
typedef struct link_hello_info {
	const char *satellite, *version, *profile, *secret;
	uint32_t cpus;
	uint64_t memory, queue_depth;
} link_hello_info_t;
int link_build_hello(tlcm_fbb_t *b, const link_hello_info_t *h,
		     const void **out, size_t *len);
int link_build_ack(tlcm_fbb_t *b, uint64_t seq, const void **out,
		   size_t *len);
int link_build_health(tlcm_fbb_t *b, uint64_t depth, uint64_t bytes,
		      uint64_t dropped, uint64_t sent, uint64_t uptime_s,
		      const void **out, size_t *len);
int link_build_goodbye(tlcm_fbb_t *b, const char *reason, const void **out,
		       size_t *len);
/* Seal a batch of the n LinkMsg tables already built in b (b is not
 * reset: the messages are in it) with its sequence number and the count
 * of batches the queue has dropped. */
int link_build_batch(tlcm_fbb_t *b, uint64_t seq, uint64_t dropped,
		     const tlcm_fbb_ref_t *msgs, size_t n, const void **out,
		     size_t *len);

/* ---- streams ---- */

/* TLS settings of one end; all paths optional. Client: ca verifies the
 * core (with server_name), cert/key are its own for mutual TLS. Server:
 * cert/key required for tls+tcp://, ca + require_peer for mutual TLS. */
typedef struct link_tls {
	const char *cert, *key, *ca, *server_name;
	bool require_peer; /* server: demand a client certificate */
} link_tls_t;

/* Make a TLS config for url when it is tls+tcp:// (*cfg NULL otherwise). */
int link_tls_config(const char *url, bool server, const link_tls_t *t,
		    nng_tls_config **cfg, char *why, size_t whylen);

/* Write all len bytes / read exactly len bytes; timeout_ms < 0: none.
 * TLCM_ETIMEDOUT, TLCM_ECLOSED (peer closed or stream closed), TLCM_EIO. */
int link_write(nng_stream *s, nng_aio *aio, const void *buf, size_t len,
	       int timeout_ms);
/* link_write that also says how many bytes went out (*done), when it
 * fails too: a timed-out write resumes at buf + *done. */
int link_write_some(nng_stream *s, nng_aio *aio, const void *buf,
		    size_t len, int timeout_ms, size_t *done);
int link_read(nng_stream *s, nng_aio *aio, void *buf, size_t len,
	      int timeout_ms);

/* Read one frame into *buf (grown as needed, caller frees): the prefix,
 * then the body at *buf + LINK_BODY, *len its size; a length above max or below LINK_FRAME_MIN is refused
 * (TLCM_ETOOBIG / TLCM_EBADMSG, with why) before reading the body. */
int link_read_frame(nng_stream *s, nng_aio *aio, uint8_t **buf, size_t *cap,
		    size_t *len, size_t max, int timeout_ms, char *why,
		    size_t whylen);

/* Join t, a thread doing I/O on aio over a stream the caller has just
 * closed. Closing does not end every wait: NNG 1.5 queues a receive begun
 * just after the close (between two reads of a frame) and never finishes
 * it, so this cancels aio until the thread has gone. */
void link_join_io(pthread_t t, nng_aio *aio);

/* Peer address as text ("127.0.0.1:40112", "ipc"). */
void link_peer_addr(nng_stream *s, char *out, size_t len);

#endif
