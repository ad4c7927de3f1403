/* sender.h — the satellite end of a link: one thread that connects to the
 * first core URL that answers (in order, with exponential backoff and
 * jitter between attempts), says hello, learns from the core's first ack
 * what it already has, then sends every queued batch after that in order
 * (so everything unacknowledged is resent after a reconnect) and new ones
 * as they are queued, plus a health frame every health_ns. A second thread
 * per connection reads the core's cumulative acks and removes batches
 * from the queue (link_txq_ack). Any error closes the connection and the
 * loop starts over.
 */
#ifndef TLCM_LINK_SENDER_H
#define TLCM_LINK_SENDER_H

#include <stdbool.h>
#include <stdint.h>

#include "nodes/link/txq.h"
#include "nodes/link/wire.h"

typedef struct link_sender link_sender_t;

typedef struct link_sender_cfg {
	const char *log_id;          /* for log lines (the node id) */
	link_hello_info_t hello;     /* queue_depth is filled in per connect */
	const char *const *urls;     /* cores, in order of preference */
	size_t nurls;
	link_tls_t tls;
	uint64_t backoff_min_ns, backoff_max_ns;
	uint64_t health_ns;          /* 0: no health frames */
	uint64_t timeout_ns;         /* connect, hello and write timeout */
	link_txq_t *q;               /* borrowed; outlives the sender */
} link_sender_cfg_t;

typedef struct link_sender_stats {
	bool connected;
	size_t url;                  /* index of the current/last core */
	uint64_t connects, failures, sent, acks, health;
	char last_error[160];
} link_sender_stats_t;

int link_sender_new(link_sender_t **out, const link_sender_cfg_t *cfg,
		    char *why, size_t whylen);
/* Stop (say goodbye when connected), join the threads, free. */
void link_sender_free(link_sender_t *s);
void link_sender_stats(link_sender_t *s, link_sender_stats_t *st);

#endif
