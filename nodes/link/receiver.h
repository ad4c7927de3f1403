/* receiver.h — the core end of a link: a listener, one thread per
 * connection, persistence before acknowledgement, de-duplication.
 *
 * A connection must open with a hello (within hello_ns) naming a valid
 * satellite id (and the shared secret when one is set); every frame is
 * checked (wire.h) before use, and a peer that sends anything invalid is
 * told why (goodbye), logged with its address and disconnected; other
 * connections go on. A second connection from the same satellite replaces
 * the first.
 *
 * A batch with sequence number <= the satellite's high-water mark is a
 * duplicate (a resend): acknowledged again, not stored. A new one is
 * stored — its frame under i/<sat>/<seq>, the new high-water mark under
 * h/<sat>, the satellite's record in family `satellites` — in ONE atomic
 * store batch, and only then acknowledged (cumulatively) and queued for
 * delivery. Delivery: link_receiver_take() hands out stored batches in
 * the order they were stored (per satellite: sequence order);
 * link_receiver_commit() marks everything taken so far as delivered
 * (d/<sat>, deleting the frames) in one batch. Batches stored but not
 * committed are handed out again after a restart.
 */
#ifndef TLCM_LINK_RECEIVER_H
#define TLCM_LINK_RECEIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/store.h"
#include "nodes/link/wire.h"

typedef struct link_receiver link_receiver_t;

typedef struct link_rx_batch {
	struct link_rx_batch *next;
	char sat[LINK_ID_MAX + 1];
	uint64_t seq;
	void *frame;     /* a checked LinkFrame holding a batch, with its
			    size prefix: the body is at frame + LINK_BODY */
	size_t len;
} link_rx_batch_t;

typedef struct link_receiver_cfg {
	const char *log_id;
	const char *url;           /* tcp://host:port, tls+tcp://, ipc:// */
	link_tls_t tls;
	const char *secret;        /* NULL/"": none */
	size_t max_frame;          /* bytes */
	uint64_t hello_ns;         /* time allowed for the hello */
	uint64_t idle_ns;          /* no frame for this long: disconnect */
	size_t max_pending;        /* bytes stored but not taken: above,
				      connections stop reading */
	tlcm_store_t *store;
	const char *family;        /* inbox and marks */
} link_receiver_cfg_t;

typedef struct link_receiver_stats {
	uint64_t connections, rejected, batches, messages, duplicates, gaps;
	uint64_t pending, taken, delivered;
	size_t satellites, connected;
	char last_reject[200];
} link_receiver_stats_t;

int link_receiver_new(link_receiver_t **out, const link_receiver_cfg_t *cfg,
		      char *why, size_t whylen);
/* The bound TCP port (for tcp://host:0), or 0. */
int link_receiver_port(link_receiver_t *r);
/* The next stored batch, waiting up to wait_ns; NULL when none. Owned by
 * the receiver until commit. */
const link_rx_batch_t *link_receiver_take(link_receiver_t *r,
					  uint64_t wait_ns);
/* How many were taken and not yet committed. */
size_t link_receiver_uncommitted(link_receiver_t *r);
/* Everything taken is delivered: one store write. */
int link_receiver_commit(link_receiver_t *r);
/* Stop listening and close every connection (delivery still works). */
void link_receiver_close_net(link_receiver_t *r);
void link_receiver_free(link_receiver_t *r);
void link_receiver_stats(link_receiver_t *r, link_receiver_stats_t *st);
/* The satellites as a JSON array (for describe). */
int link_receiver_satellites_json(link_receiver_t *r, char *buf, size_t len);

#endif
