/* receiver.c — the core end of a link (see receiver.h).
 *
 * Locks: r->mu guards the satellites table, the connection list, the
 * delivery queues and every counter; a satellite's own mutex serialises
 * its stores (so its batches are stored, acknowledged and queued in
 * sequence order, whichever connection brought them).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/error.h"
#include "engine/log.h"
#include "engine/node.h"
#include "nodes/link/be64.h"
#include "nodes/link/deadline.h"
#include "nodes/link/receiver.h"

#define SAT_FAMILY "satellites"

typedef struct conn conn_t;

typedef struct sat {
	char id[LINK_ID_MAX + 1];
	pthread_mutex_t mu;          /* serialises stores */
	uint64_t hw, delivered;      /* stored / delivered high-water */
	conn_t *conn;                /* current connection */
	char version[32], profile[32], peer[64];
	uint32_t cpus;
	uint64_t memory, queue_depth, queue_bytes, dropped, last_seen_ns;
	uint64_t connects, batches, messages, bytes, duplicates, gaps;
} sat_t;

struct conn {
	link_receiver_t *r;
	nng_stream *st;
	nng_aio *aio;                /* the connection thread's */
	pthread_t thr;
	char peer[64];
	sat_t *sat;
	atomic_bool done;
	atomic_bool superseded;      /* its satellite connected again */
	conn_t *next;
	conn_t *held_next;           /* in r->held, waiting for its turn */
};

struct link_receiver {
	link_receiver_cfg_t cfg;
	char log_id[64], url[256], family[96], secret[256];
	nng_stream_listener *l;
	nng_tls_config *tls;
	pthread_t acc;
	bool acc_started, closed;
	pthread_mutex_t mu;
	pthread_cond_t cv;           /* pending changed */
	sat_t **sats;
	size_t nsats, capsats;
	conn_t *conns;
	conn_t *held;                /* held back, first come first served */
	link_rx_batch_t *head, *tail;   /* stored, not taken */
	link_rx_batch_t *taken, *taken_tail;
	size_t pending_bytes, npending, ntaken;
	link_receiver_stats_t st;
};

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int ms(uint64_t ns)
{
	return ns / 1000000u > 86400000u ? 86400000 : (int)(ns / 1000000u);
}

/* r->mu held */
static sat_t *sat_get(link_receiver_t *r, const char *id, bool create)
{
	for (size_t i = 0; i < r->nsats; i++)
		if (!strcmp(r->sats[i]->id, id))
			return r->sats[i];
	if (!create)
		return NULL;
	if (r->nsats == r->capsats) {
		size_t nc = r->capsats ? r->capsats * 2 : 16;
		sat_t **ns = realloc(r->sats, nc * sizeof *ns);
		if (!ns)
			return NULL;
		r->sats = ns;
		r->capsats = nc;
	}
	sat_t *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	snprintf(s->id, sizeof s->id, "%s", id);
	pthread_mutex_init(&s->mu, NULL);
	r->sats[r->nsats++] = s;
	r->st.satellites = r->nsats;
	return s;
}

/* The satellite's record as JSON (r->mu held). */
static size_t sat_json(const sat_t *s, char *buf, size_t len)
{
	size_t at = 0;
	if (len < 2)
		return 0;
	at += (size_t)snprintf(buf, len, "{\"id\":");
	tlcm_json_str(buf, &at, len, s->id);
	if (at < len)
		at += (size_t)snprintf(buf + at, len - at, ",\"version\":");
	tlcm_json_str(buf, &at, len, s->version);
	if (at < len)
		at += (size_t)snprintf(buf + at, len - at, ",\"profile\":");
	tlcm_json_str(buf, &at, len, s->profile);
	if (at < len)
		at += (size_t)snprintf(buf + at, len - at, ",\"peer\":");
	tlcm_json_str(buf, &at, len, s->peer);
	if (at < len)
		at += (size_t)snprintf(buf + at, len - at,
			",\"cpus\":%" PRIu32 ",\"memory\":%" PRIu64
			",\"queue_depth\":%" PRIu64 ",\"queue_bytes\":%" PRIu64
			",\"dropped\":%" PRIu64 ",\"connected\":%s"
			",\"last_seen_ns\":%" PRIu64 ",\"link\":{"
			"\"connects\":%" PRIu64 ",\"batches\":%" PRIu64
			",\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64
			",\"duplicates\":%" PRIu64 ",\"gaps\":%" PRIu64
			",\"stored_seq\":%" PRIu64 ",\"delivered_seq\":%"
			PRIu64 "}}",
			s->cpus, s->memory, s->queue_depth, s->queue_bytes,
			s->dropped, s->conn ? "true" : "false",
			s->last_seen_ns, s->connects, s->batches, s->messages,
			s->bytes, s->duplicates, s->gaps, s->hw, s->delivered);
	return at < len ? at : len - 1;
}

/* Write the satellite's record on its own (hello, health, goodbye). */
static void sat_save(link_receiver_t *r, sat_t *s)
{
	char js[1024];
	pthread_mutex_lock(&r->mu);
	size_t n = sat_json(s, js, sizeof js);
	pthread_mutex_unlock(&r->mu);
	int rc = tlcm_store_put(r->cfg.store, SAT_FAMILY, s->id,
				strlen(s->id), js, n);
	if (rc)
		tlcm_warn(r->log_id, "satellite %s: cannot store its record: "
			  "%s", s->id, tlcm_strerror(rc));
}

static void reject(conn_t *c, nng_aio *aio, const char *sat, const char *why)
{
	link_receiver_t *r = c->r;
	tlcm_warn(r->log_id, "link peer %s%s%s%s: %s: disconnecting",
		  c->peer, sat ? " (satellite " : "", sat ? sat : "",
		  sat ? ")" : "", why);
	pthread_mutex_lock(&r->mu);
	r->st.rejected++;
	snprintf(r->st.last_reject, sizeof r->st.last_reject, "%s: %s",
		 c->peer, why);
	pthread_mutex_unlock(&r->mu);
	tlcm_fbb_t b;
	const void *fr;
	size_t len;
	if (!tlcm_fbb_init(&b, 256)) {
		if (!link_build_goodbye(&b, why, &fr, &len))
			link_write(c->st, aio, fr, len, 500);
		tlcm_fbb_fini(&b);
	}
}

/* Store batch `seq` of s (s->mu held): one atomic write of the frame, the
 * high-water mark and the record. 0, or 1 for a duplicate. */
static int store_batch(link_receiver_t *r, sat_t *s, uint64_t seq,
		       const void *fr, size_t len, uint64_t nmsg,
		       uint64_t dropped)
{
	if (seq <= s->hw) {
		pthread_mutex_lock(&r->mu);
		s->duplicates++;
		r->st.duplicates++;
		pthread_mutex_unlock(&r->mu);
		return 1;
	}
	size_t il = strlen(s->id);
	uint8_t key[2 + LINK_ID_MAX + 1 + 8], hv[8];
	memcpy(key, "i/", 2);
	memcpy(key + 2, s->id, il);
	key[2 + il] = '/';
	be64(key + 3 + il, seq);
	uint8_t hkey[2 + LINK_ID_MAX];
	memcpy(hkey, "h/", 2);
	memcpy(hkey + 2, s->id, il);
	be64(hv, seq);
	char js[1024];
	pthread_mutex_lock(&r->mu);
	uint64_t gap = seq - s->hw - 1;
	s->hw = seq; /* tentative for the record; undone on failure */
	s->batches++;
	s->messages += nmsg;
	s->bytes += len;
	s->gaps += gap ? 1 : 0;
	s->dropped = dropped;
	s->last_seen_ns = wall_ns();
	size_t jn = sat_json(s, js, sizeof js);
	pthread_mutex_unlock(&r->mu);
	tlcm_batch_t *b = tlcm_batch_new();
	int rc = b ? 0 : TLCM_ENOMEM;
	if (!rc)
		rc = tlcm_batch_put(r->cfg.store, b, r->family, key,
				    3 + il + 8, fr, len);
	if (!rc)
		rc = tlcm_batch_put(r->cfg.store, b, r->family, hkey, 2 + il,
				    hv, 8);
	if (!rc)
		rc = tlcm_batch_put(r->cfg.store, b, SAT_FAMILY, s->id, il,
				    js, jn);
	if (!rc)
		rc = tlcm_store_write(r->cfg.store, b);
	tlcm_batch_free(b);
	link_rx_batch_t *x = rc ? NULL : malloc(sizeof *x);
	void *copy = x ? malloc(len) : NULL;
	pthread_mutex_lock(&r->mu);
	if (rc || !copy) {
		s->hw = seq - gap - 1;
		s->batches--;
		s->messages -= nmsg;
		s->bytes -= len;
		s->gaps -= gap ? 1 : 0;
		pthread_mutex_unlock(&r->mu);
		free(x);
		return rc ? rc : TLCM_ENOMEM; /* if copy failed: stored, but
			not acked; it is delivered after a restart */
	}
	if (gap) {
		r->st.gaps++;
		tlcm_warn(r->log_id, "satellite %s: batches %" PRIu64 "..%"
			  PRIu64 " never arrived (its queue dropped %" PRIu64
			  " batches so far)", s->id, seq - gap, seq - 1,
			  dropped);
	}
	memcpy(copy, fr, len);
	memset(x, 0, sizeof *x);
	snprintf(x->sat, sizeof x->sat, "%s", s->id);
	x->seq = seq;
	x->frame = copy;
	x->len = len;
	if (r->tail)
		r->tail->next = x;
	else
		r->head = x;
	r->tail = x;
	r->pending_bytes += len;
	r->npending++;
	r->st.batches++;
	r->st.messages += nmsg;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return 0;
}

/* Back-pressure (r->mu held): while more than max_pending bytes wait for
 * delivery, connections stop reading, queued in r->held so that each gets
 * its turn as room frees (none starves). A connection held back
 * acknowledges again every LINK_HOLD_ACK_NS: its satellite, hearing the
 * core, waits instead of timing out and reconnecting. false: end the
 * connection (closed, or the keep-alive ack failed). */
static bool hold_back(link_receiver_t *r, conn_t *c, nng_aio *aio,
		      tlcm_fbb_t *b)
{
	if (!r->held && r->pending_bytes <= r->cfg.max_pending)
		return true;
	conn_t **pp = &r->held;
	while (*pp)
		pp = &(*pp)->held_next;
	*pp = c;
	c->held_next = NULL;
	uint64_t next_ack = mono_ns() + LINK_HOLD_ACK_NS;
	bool ok = true;
	while (r->held != c || r->pending_bytes > r->cfg.max_pending) {
		if (r->closed || atomic_load(&c->superseded)) {
			ok = false;
			break;
		}
		struct timespec ts;
		link_deadline(CLOCK_REALTIME, 50000000u, &ts);
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
		if (mono_ns() < next_ack)
			continue;
		pthread_mutex_unlock(&r->mu);
		pthread_mutex_lock(&c->sat->mu);
		uint64_t hw = c->sat->hw;
		pthread_mutex_unlock(&c->sat->mu);
		const void *fr;
		size_t fl;
		ok = !link_build_ack(b, hw, &fr, &fl) &&
		     !link_write(c->st, aio, fr, fl, ms(r->cfg.idle_ns));
		pthread_mutex_lock(&r->mu);
		if (!ok)
			break;
		next_ack = mono_ns() + LINK_HOLD_ACK_NS;
	}
	for (pp = &r->held; *pp; pp = &(*pp)->held_next)
		if (*pp == c) {
			*pp = c->held_next;
			break;
		}
	pthread_cond_broadcast(&r->cv); /* the next one's turn */
	return ok;
}

static void *conn_main(void *p)
{
	conn_t *c = p;
	link_receiver_t *r = c->r;
	nng_aio *aio = c->aio;
	tlcm_fbb_t b;
	uint8_t *buf = NULL;
	size_t cap = 0, len;
	char why[300];
	link_kind_t k;
	sat_t *s = NULL;
	if (tlcm_fbb_init(&b, 256)) {
		nng_stream_close(c->st);
		atomic_store(&c->done, true);
		return NULL;
	}
	int rc = link_read_frame(c->st, aio, &buf, &cap, &len,
				 r->cfg.max_frame, ms(r->cfg.hello_ns), why,
				 sizeof why);
	if (!rc)
		rc = link_frame_check(buf + LINK_BODY, len, &k, why,
				      sizeof why);
	if (rc) {
		if (rc != TLCM_ECLOSED)
			reject(c, aio, NULL, why);
		goto out;
	}
	if (k != LINK_F_HELLO) {
		snprintf(why, sizeof why, "first frame is a %s, want hello",
			 link_kind_name(k));
		reject(c, aio, NULL, why);
		goto out;
	}
	tlcm_LinkHello_table_t h = tlcm_LinkFrame_hello(
		tlcm_LinkFrame_as_root(buf + LINK_BODY));
	const char *id = tlcm_LinkHello_satellite(h);
	if (r->secret[0]) {
		const char *sec = tlcm_LinkHello_secret(h);
		size_t sl = tlcm_LinkHello_secret_len(h), want = strlen(r->secret);
		unsigned diff = sl != want;
		for (size_t i = 0; i < want; i++)
			diff |= (unsigned)(r->secret[i] ^
					   (i < sl && sec ? sec[i] : 0));
		if (diff) {
			reject(c, aio, id, "wrong or missing shared secret");
			goto out;
		}
	}
	pthread_mutex_lock(&r->mu);
	s = sat_get(r, id, true);
	conn_t *old = s ? s->conn : NULL;
	if (old) { /* here, under r->mu: reap() frees it only holding it */
		atomic_store(&old->superseded, true);
		nng_stream_close(old->st);
		nng_aio_cancel(old->aio);
		pthread_cond_broadcast(&r->cv);
	}
	if (s) {
		s->conn = c;
		c->sat = s;
		s->connects++;
		snprintf(s->version, sizeof s->version, "%s",
			 tlcm_LinkHello_version(h) ? tlcm_LinkHello_version(h)
						   : "");
		snprintf(s->profile, sizeof s->profile, "%s",
			 tlcm_LinkHello_profile(h) ? tlcm_LinkHello_profile(h)
						   : "");
		snprintf(s->peer, sizeof s->peer, "%s", c->peer);
		s->cpus = tlcm_LinkHello_cpus(h);
		s->memory = tlcm_LinkHello_memory(h);
		s->queue_depth = tlcm_LinkHello_queue_depth(h);
		s->last_seen_ns = wall_ns();
		r->st.connected++;
	}
	pthread_mutex_unlock(&r->mu);
	if (!s) {
		reject(c, aio, id, "out of memory");
		goto out;
	}
	if (old) {
		tlcm_info(r->log_id, "satellite %s reconnected from %s: "
			  "closing its previous connection", s->id, c->peer);
	}
	sat_save(r, s);
	pthread_mutex_lock(&s->mu);
	uint64_t hw = s->hw;
	pthread_mutex_unlock(&s->mu);
	const void *fr;
	size_t fl;
	if (link_build_ack(&b, hw, &fr, &fl) ||
	    link_write(c->st, aio, fr, fl, ms(r->cfg.idle_ns)))
		goto out;
	tlcm_info(r->log_id, "satellite %s connected from %s (version %s, "
		  "profile %s): it has %" PRIu64 " batches queued, we have "
		  "up to %" PRIu64, s->id, c->peer, s->version, s->profile,
		  s->queue_depth, hw);
	for (;;) {
		/* back-pressure: stop reading while delivery lags */
		pthread_mutex_lock(&r->mu);
		bool go_on = hold_back(r, c, aio, &b);
		pthread_mutex_unlock(&r->mu);
		if (!go_on)
			break;
		rc = link_read_frame(c->st, aio, &buf, &cap, &len,
				     r->cfg.max_frame, ms(r->cfg.idle_ns),
				     why, sizeof why);
		if (!rc)
			rc = link_frame_check(buf + LINK_BODY, len, &k, why,
				      sizeof why);
		if (rc) {
			if (rc != TLCM_ECLOSED)
				reject(c, aio, s->id, why);
			break;
		}
		tlcm_LinkFrame_table_t f = tlcm_LinkFrame_as_root(buf +
								   LINK_BODY);
		if (k == LINK_F_BATCH) {
			tlcm_LinkBatch_table_t bt = tlcm_LinkFrame_batch(f);
			uint64_t seq = tlcm_LinkBatch_seq(bt);
			pthread_mutex_lock(&s->mu);
			rc = store_batch(r, s, seq, buf, len + LINK_BODY,
					 tlcm_LinkBatch_messages_len(bt),
					 tlcm_LinkBatch_dropped(bt));
			hw = s->hw;
			pthread_mutex_unlock(&s->mu);
			if (rc < 0) {
				tlcm_error(r->log_id, "satellite %s: cannot "
					   "store batch %" PRIu64 ": %s",
					   s->id, seq, tlcm_strerror(rc));
				reject(c, aio, s->id, "the core cannot store "
				       "batches");
				break;
			}
			if (link_build_ack(&b, hw, &fr, &fl) ||
			    link_write(c->st, aio, fr, fl, ms(r->cfg.idle_ns)))
				break;
		} else if (k == LINK_F_HEALTH) {
			tlcm_LinkHealth_table_t ht = tlcm_LinkFrame_health(f);
			pthread_mutex_lock(&r->mu);
			s->queue_depth = tlcm_LinkHealth_queue_depth(ht);
			s->queue_bytes = tlcm_LinkHealth_queue_bytes(ht);
			s->dropped = tlcm_LinkHealth_dropped(ht);
			s->last_seen_ns = wall_ns();
			pthread_mutex_unlock(&r->mu);
			sat_save(r, s);
		} else if (k == LINK_F_GOODBYE) {
			const char *gr = tlcm_LinkGoodbye_reason(
				tlcm_LinkFrame_goodbye(f));
			tlcm_info(r->log_id, "satellite %s says goodbye: %s",
				  s->id, gr ? gr : "");
			break;
		} else {
			snprintf(why, sizeof why, "a satellite may not send "
				 "a %s frame here", link_kind_name(k));
			reject(c, aio, s->id, why);
			break;
		}
	}
out:
	nng_stream_close(c->st);
	if (s) {
		pthread_mutex_lock(&r->mu);
		if (s->conn == c)
			s->conn = NULL;
		r->st.connected--;
		s->last_seen_ns = wall_ns();
		pthread_mutex_unlock(&r->mu);
		sat_save(r, s);
	}
	free(buf);
	tlcm_fbb_fini(&b);
	atomic_store(&c->done, true);
	return NULL;
}

/* Join finished connections (r->mu held), or all when `all`. */
static void reap(link_receiver_t *r, bool all)
{
	conn_t **pp = &r->conns;
	while (*pp) {
		conn_t *c = *pp;
		if (all || atomic_load(&c->done)) {
			*pp = c->next;
			pthread_mutex_unlock(&r->mu);
			if (all)
				nng_stream_close(c->st);
			link_join_io(c->thr, c->aio);
			pthread_mutex_lock(&r->mu);
			nng_stream_free(c->st);
			nng_aio_free(c->aio);
			free(c);
		} else {
			pp = &c->next;
		}
	}
}

static void *accept_main(void *p)
{
	link_receiver_t *r = p;
	nng_aio *aio;
	if (nng_aio_alloc(&aio, NULL, NULL))
		return NULL;
	for (;;) {
		nng_stream_listener_accept(r->l, aio);
		nng_aio_wait(aio);
		int rv = nng_aio_result(aio);
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
			break;
		pthread_mutex_lock(&r->mu);
		bool closed = r->closed;
		reap(r, false);
		pthread_mutex_unlock(&r->mu);
		if (closed)
			break;
		if (rv) { /* a failed handshake (TLS) and the like */
			tlcm_warn(r->log_id, "link: a connection failed "
				  "before its first frame: %s",
				  nng_strerror(rv));
			pthread_mutex_lock(&r->mu);
			r->st.rejected++;
			pthread_mutex_unlock(&r->mu);
			continue;
		}
		conn_t *c = calloc(1, sizeof *c);
		nng_stream *st = nng_aio_get_output(aio, 0);
		if (!c || nng_aio_alloc(&c->aio, NULL, NULL)) {
			nng_stream_free(st);
			free(c);
			continue;
		}
		c->r = r;
		c->st = st;
		link_peer_addr(st, c->peer, sizeof c->peer);
		pthread_mutex_lock(&r->mu);
		r->st.connections++;
		if (pthread_create(&c->thr, NULL, conn_main, c)) {
			pthread_mutex_unlock(&r->mu);
			nng_stream_free(st);
			nng_aio_free(c->aio);
			free(c);
			continue;
		}
		c->next = r->conns;
		r->conns = c;
		pthread_mutex_unlock(&r->mu);
	}
	nng_aio_free(aio);
	return NULL;
}

/* ---- loading what the store holds ---- */

static int load_mark(void *arg, const void *key, size_t klen, const void *val,
		     size_t vlen)
{
	link_receiver_t *r = arg;
	const char *k = key;
	char id[LINK_ID_MAX + 1];
	if (klen < 3 || klen - 2 > LINK_ID_MAX || vlen != 8)
		return TLCM_ECORRUPT;
	memcpy(id, k + 2, klen - 2);
	id[klen - 2] = 0;
	sat_t *s = sat_get(r, id, true);
	if (!s)
		return TLCM_ENOMEM;
	if (k[0] == 'h')
		s->hw = get_be64(val);
	else
		s->delivered = get_be64(val);
	return 0;
}

static int load_inbox(void *arg, const void *key, size_t klen,
		      const void *val, size_t vlen)
{
	link_receiver_t *r = arg;
	const char *k = key;
	if (klen < 2 + 1 + 1 + 8 || k[klen - 9] != '/' ||
	    klen - 11 > LINK_ID_MAX)
		return TLCM_ECORRUPT;
	link_rx_batch_t *x = calloc(1, sizeof *x);
	void *f = malloc(vlen ? vlen : 1);
	if (!x || !f) {
		free(x);
		free(f);
		return TLCM_ENOMEM;
	}
	memcpy(x->sat, k + 2, klen - 11);
	x->seq = get_be64((const uint8_t *)k + klen - 8);
	link_kind_t kind;
	char why[200];
	sat_t *s = sat_get(r, x->sat, true);
	memcpy(f, val, vlen);
	if (vlen <= LINK_BODY ||
	    link_frame_check((uint8_t *)f + LINK_BODY, vlen - LINK_BODY,
			     &kind, why, sizeof why) ||
	    kind != LINK_F_BATCH || !s || x->seq <= s->delivered) {
		free(x);
		free(f);
		return s ? 0 : TLCM_ENOMEM; /* already delivered: skip */
	}
	x->frame = f;
	x->len = vlen;
	if (r->tail)
		r->tail->next = x;
	else
		r->head = x;
	r->tail = x;
	r->pending_bytes += vlen;
	r->npending++;
	return 0;
}

int link_receiver_new(link_receiver_t **out, const link_receiver_cfg_t *cfg,
		      char *why, size_t whylen)
{
	link_receiver_t *r = calloc(1, sizeof *r);
	if (!r)
		return TLCM_ENOMEM;
	r->cfg = *cfg;
	snprintf(r->log_id, sizeof r->log_id, "%s", cfg->log_id);
	snprintf(r->url, sizeof r->url, "%s", cfg->url);
	snprintf(r->family, sizeof r->family, "%s", cfg->family);
	snprintf(r->secret, sizeof r->secret, "%s",
		 cfg->secret ? cfg->secret : "");
	r->cfg.url = r->url;
	r->cfg.family = r->family;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	int rc = 0;
	if (strncmp(r->url, "tcp://", 6) && strncmp(r->url, "tls+tcp://", 10) &&
	    strncmp(r->url, "ipc://", 6)) {
		snprintf(why, whylen, "listen URL '%s': want tcp://, "
			 "tls+tcp:// or ipc://", r->url);
		rc = TLCM_EINVAL;
		goto fail;
	}
	rc = tlcm_store_scan(cfg->store, r->family, "h/", 2, load_mark, r);
	if (!rc)
		rc = tlcm_store_scan(cfg->store, r->family, "d/", 2,
				     load_mark, r);
	if (!rc)
		rc = tlcm_store_scan(cfg->store, r->family, "i/", 2,
				     load_inbox, r);
	if (rc) {
		snprintf(why, whylen, "loading the link inbox (family %s): "
			 "%s", r->family, tlcm_strerror(rc));
		goto fail;
	}
	rc = link_tls_config(r->url, true, &cfg->tls, &r->tls, why, whylen);
	if (rc)
		goto fail;
	int rv = nng_stream_listener_alloc(&r->l, r->url);
	if (!rv && r->tls)
		rv = nng_stream_listener_set_ptr(r->l, NNG_OPT_TLS_CONFIG,
						 r->tls);
	if (!rv)
		rv = nng_stream_listener_listen(r->l);
	if (rv) {
		snprintf(why, whylen, "cannot listen on %s: %s", r->url,
			 nng_strerror(rv));
		rc = TLCM_EIO;
		goto fail;
	}
	if (pthread_create(&r->acc, NULL, accept_main, r)) {
		rc = TLCM_ENOMEM;
		goto fail;
	}
	r->acc_started = true;
	*out = r;
	return 0;
fail:
	link_receiver_free(r);
	return rc;
}

int link_receiver_port(link_receiver_t *r)
{
	int port = 0;
	if (r->l && !strncmp(r->url, "tcp://", 6))
		nng_stream_listener_get_int(r->l, NNG_OPT_TCP_BOUND_PORT,
					    &port);
	if (r->l && !strncmp(r->url, "tls+tcp://", 10))
		nng_stream_listener_get_int(r->l, NNG_OPT_TCP_BOUND_PORT,
					    &port);
	return port;
}

const link_rx_batch_t *link_receiver_take(link_receiver_t *r,
					  uint64_t wait_ns)
{
	pthread_mutex_lock(&r->mu);
	if (!r->head && wait_ns) {
		struct timespec ts;
		link_deadline(CLOCK_REALTIME, wait_ns, &ts);
		while (!r->head &&
		       pthread_cond_timedwait(&r->cv, &r->mu, &ts) == 0)
			;
	}
	link_rx_batch_t *x = r->head;
	if (x) {
		r->head = x->next;
		if (!r->head)
			r->tail = NULL;
		x->next = NULL;
		r->pending_bytes -= x->len;
		r->npending--;
		if (r->taken_tail)
			r->taken_tail->next = x;
		else
			r->taken = x;
		r->taken_tail = x;
		r->ntaken++;
		r->st.taken++;
		pthread_cond_broadcast(&r->cv);
	}
	pthread_mutex_unlock(&r->mu);
	return x;
}

size_t link_receiver_uncommitted(link_receiver_t *r)
{
	pthread_mutex_lock(&r->mu);
	size_t n = r->ntaken;
	pthread_mutex_unlock(&r->mu);
	return n;
}

int link_receiver_commit(link_receiver_t *r)
{
	pthread_mutex_lock(&r->mu);
	link_rx_batch_t *list = r->taken;
	size_t n = r->ntaken;
	r->taken = r->taken_tail = NULL;
	r->ntaken = 0;
	pthread_mutex_unlock(&r->mu);
	if (!list)
		return 0;
	tlcm_batch_t *b = tlcm_batch_new();
	int rc = b ? 0 : TLCM_ENOMEM;
	uint8_t key[2 + LINK_ID_MAX + 1 + 8];
	for (link_rx_batch_t *x = list; x && !rc; x = x->next) {
		size_t il = strlen(x->sat);
		memcpy(key, "i/", 2);
		memcpy(key + 2, x->sat, il);
		key[2 + il] = '/';
		be64(key + 3 + il, x->seq);
		rc = tlcm_batch_delete(r->cfg.store, b, r->family, key,
				       3 + il + 8);
		/* the last batch of each satellite in the list sets d/ */
		bool last = true;
		for (link_rx_batch_t *y = x->next; y; y = y->next)
			if (!strcmp(y->sat, x->sat))
				last = false;
		if (!rc && last) {
			uint8_t v[8];
			key[0] = 'd';
			be64(v, x->seq);
			rc = tlcm_batch_put(r->cfg.store, b, r->family, key,
					    2 + il, v, 8);
		}
	}
	if (!rc)
		rc = tlcm_store_write(r->cfg.store, b);
	tlcm_batch_free(b);
	pthread_mutex_lock(&r->mu);
	if (rc) { /* put them back in front of what was taken meanwhile */
		link_rx_batch_t *t = list;
		while (t->next)
			t = t->next;
		t->next = r->taken;
		if (!r->taken)
			r->taken_tail = t;
		r->taken = list;
		r->ntaken += n;
		pthread_mutex_unlock(&r->mu);
		return rc;
	}
	for (link_rx_batch_t *x = list; x; x = x->next) {
		sat_t *s = sat_get(r, x->sat, false);
		if (s && x->seq > s->delivered)
			s->delivered = x->seq;
	}
	r->st.delivered += n;
	pthread_mutex_unlock(&r->mu);
	while (list) {
		link_rx_batch_t *x = list;
		list = x->next;
		free(x->frame);
		free(x);
	}
	return 0;
}

void link_receiver_close_net(link_receiver_t *r)
{
	pthread_mutex_lock(&r->mu);
	bool was = r->closed;
	r->closed = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	if (was)
		return;
	if (r->l)
		nng_stream_listener_close(r->l);
	if (r->acc_started)
		pthread_join(r->acc, NULL);
	pthread_mutex_lock(&r->mu);
	reap(r, true);
	pthread_mutex_unlock(&r->mu);
}

static void free_list(link_rx_batch_t *x)
{
	while (x) {
		link_rx_batch_t *n = x->next;
		free(x->frame);
		free(x);
		x = n;
	}
}

void link_receiver_free(link_receiver_t *r)
{
	if (!r)
		return;
	link_receiver_close_net(r);
	if (r->l)
		nng_stream_listener_free(r->l);
	if (r->tls)
		nng_tls_config_free(r->tls);
	free_list(r->head);
	free_list(r->taken);
	for (size_t i = 0; i < r->nsats; i++) {
		pthread_mutex_destroy(&r->sats[i]->mu);
		free(r->sats[i]);
	}
	free(r->sats);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
}

void link_receiver_stats(link_receiver_t *r, link_receiver_stats_t *st)
{
	pthread_mutex_lock(&r->mu);
	*st = r->st;
	st->pending = r->npending;
	pthread_mutex_unlock(&r->mu);
}

int link_receiver_satellites_json(link_receiver_t *r, char *buf, size_t len)
{
	size_t at = 0;
	if (len < 3)
		return TLCM_ENOSPC;
	buf[at++] = '[';
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->nsats; i++) {
		char one[1024];
		size_t n = sat_json(r->sats[i], one, sizeof one);
		if (at + n + 3 > len)
			break;
		if (i)
			buf[at++] = ',';
		memcpy(buf + at, one, n);
		at += n;
	}
	pthread_mutex_unlock(&r->mu);
	buf[at++] = ']';
	buf[at] = 0;
	return 0;
}
