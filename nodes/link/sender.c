/* sender.c — the satellite end of a link (see sender.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/error.h"
#include "engine/log.h"
#include "nodes/link/deadline.h"
#include "nodes/link/sender.h"

struct link_sender {
	link_sender_cfg_t cfg;
	char **urls;
	nng_tls_config **tls;
	char log_id[64];
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	nng_stream *cur;            /* the live connection, under mu */
	atomic_bool dead;           /* the reader saw the connection end */
	atomic_uint_fast64_t heard; /* mono_ns of the core's last frame */
	link_sender_stats_t st;     /* under mu */
	uint64_t start_ns;
	unsigned rnd;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int ms(uint64_t ns)
{
	return ns / 1000000u > 3600000u ? 3600000 : (int)(ns / 1000000u);
}

/* Sleep up to ns unless stopped; true when stopped. */
static bool nap(link_sender_t *s, uint64_t ns)
{
	struct timespec ts;
	link_deadline(CLOCK_MONOTONIC, ns, &ts);
	pthread_mutex_lock(&s->mu);
	while (!s->stop &&
	       pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0)
		;
	bool stop = s->stop;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

static bool stopping(link_sender_t *s)
{
	pthread_mutex_lock(&s->mu);
	bool v = s->stop;
	pthread_mutex_unlock(&s->mu);
	return v;
}

static void set_error(link_sender_t *s, const char *what, const char *a,
		      const char *b)
{
	pthread_mutex_lock(&s->mu);
	snprintf(s->st.last_error, sizeof s->st.last_error, "%s %.60s: %.80s",
		 what, a, b);
	pthread_mutex_unlock(&s->mu);
}

typedef struct {
	link_sender_t *s;
	nng_stream *st;
	nng_aio *aio;
	const char *url;
} reader_arg_t;

/* Read acks until the connection ends. */
static void *reader(void *p)
{
	reader_arg_t *ra = p;
	link_sender_t *s = ra->s;
	nng_aio *aio = ra->aio;
	uint8_t *buf = NULL;
	size_t cap = 0, len;
	char why[256];
	for (;;) {
		int rc = link_read_frame(ra->st, aio, &buf, &cap, &len,
					 1 << 16, -1, why, sizeof why);
		link_kind_t k;
		if (!rc)
			rc = link_frame_check(buf + LINK_BODY, len, &k, why,
					      sizeof why);
		if (rc) {
			if (rc != TLCM_ECLOSED && !stopping(s))
				tlcm_warn(s->log_id, "core %s: %s", ra->url,
					  why);
			break;
		}
		tlcm_LinkFrame_table_t f = tlcm_LinkFrame_as_root(buf +
								   LINK_BODY);
		atomic_store(&s->heard, mono_ns());
		if (k == LINK_F_ACK) {
			uint64_t seq = tlcm_LinkAck_seq(tlcm_LinkFrame_ack(f));
			rc = link_txq_ack(s->cfg.q, seq);
			if (rc)
				tlcm_error(s->log_id, "cannot remove acked "
					   "batches up to %llu from the queue:"
					   " %s", (unsigned long long)seq,
					   tlcm_strerror(rc));
			pthread_mutex_lock(&s->mu);
			s->st.acks++;
			pthread_mutex_unlock(&s->mu);
		} else if (k == LINK_F_GOODBYE) {
			const char *r = tlcm_LinkGoodbye_reason(
				tlcm_LinkFrame_goodbye(f));
			tlcm_warn(s->log_id, "core %s closes the link: %s",
				  ra->url, r ? r : "");
			set_error(s, "core", ra->url, r ? r : "");
			break;
		} else {
			tlcm_warn(s->log_id, "core %s sent a %s frame, "
				  "expected acks: disconnecting", ra->url,
				  link_kind_name(k));
			break;
		}
	}
	atomic_store(&s->dead, true);
	nng_stream_close(ra->st);
	free(buf);
	return NULL;
}

static int dial(link_sender_t *s, size_t i, nng_stream **out, char *why,
		size_t whylen)
{
	nng_stream_dialer *d;
	nng_aio *aio;
	int rv = nng_stream_dialer_alloc(&d, s->urls[i]);
	if (rv) {
		snprintf(why, whylen, "%s", nng_strerror(rv));
		return TLCM_EINVAL;
	}
	if (s->tls[i])
		rv = nng_stream_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG,
					       s->tls[i]);
	if (!rv)
		rv = nng_aio_alloc(&aio, NULL, NULL);
	if (rv) {
		snprintf(why, whylen, "%s", nng_strerror(rv));
		nng_stream_dialer_free(d);
		return TLCM_EIO;
	}
	nng_aio_set_timeout(aio, ms(s->cfg.timeout_ns));
	nng_stream_dialer_dial(d, aio);
	nng_aio_wait(aio);
	rv = nng_aio_result(aio);
	if (!rv)
		*out = nng_aio_get_output(aio, 0);
	else
		snprintf(why, whylen, "%s", nng_strerror(rv));
	nng_aio_free(aio);
	nng_stream_dialer_free(d);
	return rv ? TLCM_EIO : 0;
}

/* Hello, then the core's first frame: an ack of what it has. */
static int greet(link_sender_t *s, nng_stream *st, nng_aio *aio,
		 tlcm_fbb_t *b, uint64_t *have, char *why, size_t whylen)
{
	link_txq_stats_t qs;
	link_txq_stats(s->cfg.q, &qs);
	link_hello_info_t h = s->cfg.hello;
	h.queue_depth = qs.depth;
	const void *fr;
	size_t len;
	int rc = link_build_hello(b, &h, &fr, &len);
	if (!rc)
		rc = link_write(st, aio, fr, len, ms(s->cfg.timeout_ns));
	if (rc) {
		snprintf(why, whylen, "sending hello: %s", tlcm_strerror(rc));
		return rc;
	}
	uint8_t *buf = NULL;
	size_t cap = 0;
	link_kind_t k;
	rc = link_read_frame(st, aio, &buf, &cap, &len, 1 << 16,
			     ms(s->cfg.timeout_ns), why, whylen);
	if (!rc)
		rc = link_frame_check(buf + LINK_BODY, len, &k, why,
				      whylen);
	if (!rc) {
		tlcm_LinkFrame_table_t f = tlcm_LinkFrame_as_root(buf +
								   LINK_BODY);
		if (k == LINK_F_ACK) {
			*have = tlcm_LinkAck_seq(tlcm_LinkFrame_ack(f));
		} else if (k == LINK_F_GOODBYE) {
			const char *r = tlcm_LinkGoodbye_reason(
				tlcm_LinkFrame_goodbye(f));
			snprintf(why, whylen, "refused: %s", r ? r : "");
			rc = TLCM_EPERM;
		} else {
			snprintf(why, whylen, "answered hello with a %s frame",
				 link_kind_name(k));
			rc = TLCM_EPROTO;
		}
	}
	free(buf);
	return rc;
}

/* Write a frame. A write that makes no progress for the timeout fails
 * only when the core has been silent as long (at least LINK_QUIET_MIN_NS):
 * a core holding the link back (back-pressure) keeps acknowledging, and
 * then the satellite waits instead of reconnecting. */
static int send_frame(link_sender_t *s, nng_stream *st, nng_aio *aio,
		      const void *fr, size_t len)
{
	uint64_t quiet = s->cfg.timeout_ns > LINK_QUIET_MIN_NS
				 ? s->cfg.timeout_ns : LINK_QUIET_MIN_NS;
	size_t at = 0;
	for (;;) {
		size_t done;
		int rc = link_write_some(st, aio, (const uint8_t *)fr + at,
					 len - at, ms(s->cfg.timeout_ns), &done);
		at += done;
		if (rc != TLCM_ETIMEDOUT)
			return rc; /* written, or the connection failed */
		if (stopping(s) || atomic_load(&s->dead))
			return TLCM_ECLOSED;
		if (!done && mono_ns() - atomic_load(&s->heard) >= quiet)
			return rc;
	}
}

static void session(link_sender_t *s, size_t ui, nng_stream *st,
		    uint64_t *backoff)
{
	const char *url = s->urls[ui];
	nng_aio *aio, *raio = NULL;
	tlcm_fbb_t b;
	char why[256];
	uint64_t have = 0;
	if (nng_aio_alloc(&aio, NULL, NULL))
		return;
	if (nng_aio_alloc(&raio, NULL, NULL) || tlcm_fbb_init(&b, 0)) {
		if (raio)
			nng_aio_free(raio);
		nng_aio_free(aio);
		return;
	}
	int rc = greet(s, st, aio, &b, &have, why, sizeof why);
	if (rc) {
		tlcm_warn(s->log_id, "core %s: %s", url, why);
		set_error(s, "core", url, why);
		goto out;
	}
	rc = link_txq_ack(s->cfg.q, have);
	if (rc)
		tlcm_error(s->log_id, "queue: %s", tlcm_strerror(rc));
	*backoff = s->cfg.backoff_min_ns;
	link_txq_stats_t qs;
	link_txq_stats(s->cfg.q, &qs);
	tlcm_info(s->log_id, "connected to %s: the core has batches up to "
		  "%llu, %llu queued to send", url, (unsigned long long)have,
		  (unsigned long long)qs.depth);
	atomic_store(&s->dead, false);
	atomic_store(&s->heard, mono_ns());
	pthread_mutex_lock(&s->mu);
	s->cur = st;
	s->st.connected = true;
	s->st.connects++;
	s->st.url = ui;
	pthread_mutex_unlock(&s->mu);
	reader_arg_t ra = {s, st, raio, url};
	pthread_t rt;
	if (pthread_create(&rt, NULL, reader, &ra))
		goto out_cur;
	uint64_t sent = have, next_health = mono_ns() + s->cfg.health_ns;
	while (!stopping(s) && !atomic_load(&s->dead)) {
		uint64_t seq;
		void *fr;
		size_t len;
		uint64_t now = mono_ns();
		uint64_t wait = 100000000u;
		if (s->cfg.health_ns && next_health > now &&
		    next_health - now < wait)
			wait = next_health - now;
		rc = link_txq_next(s->cfg.q, sent, wait, &seq, &fr, &len);
		if (!rc) {
			rc = send_frame(s, st, aio, fr, len);
			free(fr);
			if (rc)
				break;
			sent = seq;
			pthread_mutex_lock(&s->mu);
			s->st.sent++;
			pthread_mutex_unlock(&s->mu);
		} else if (rc != TLCM_ENOENT) {
			break;
		}
		now = mono_ns();
		if (s->cfg.health_ns && now >= next_health) {
			link_txq_stats(s->cfg.q, &qs);
			const void *hf;
			size_t hl;
			pthread_mutex_lock(&s->mu);
			uint64_t nsent = s->st.sent;
			s->st.health++;
			pthread_mutex_unlock(&s->mu);
			if (link_build_health(&b, qs.depth, qs.bytes,
					      qs.dropped, nsent,
					      (now - s->start_ns) / 1000000000u,
					      &hf, &hl) ||
			    send_frame(s, st, aio, hf, hl))
				break;
			next_health = now + s->cfg.health_ns;
		}
	}
	if (stopping(s) && !atomic_load(&s->dead)) {
		const void *gf;
		size_t gl;
		if (!link_build_goodbye(&b, "satellite stopping", &gf, &gl))
			link_write(st, aio, gf, gl, 1000);
	}
	if (!stopping(s))
		tlcm_warn(s->log_id, "connection to %s lost: reconnecting",
			  url);
	nng_stream_close(st);
	link_join_io(rt, raio);
out_cur:
	pthread_mutex_lock(&s->mu);
	s->cur = NULL;
	s->st.connected = false;
	pthread_mutex_unlock(&s->mu);
out:
	tlcm_fbb_fini(&b);
	nng_aio_free(raio);
	nng_aio_free(aio);
}

static void *run(void *p)
{
	link_sender_t *s = p;
	uint64_t backoff = s->cfg.backoff_min_ns;
	size_t ui = 0;
	uint64_t streak = 0;
	while (!stopping(s)) {
		nng_stream *st = NULL;
		char why[256];
		if (dial(s, ui, &st, why, sizeof why) == 0) {
			streak = 0;
			pthread_mutex_lock(&s->mu);
			uint64_t c0 = s->st.connects;
			pthread_mutex_unlock(&s->mu);
			session(s, ui, st, &backoff);
			nng_stream_free(st);
			if (stopping(s))
				break;
			/* connected but no hello answered (a proxy in front of
			 * a dead core, a half-open peer): fail over as after a
			 * failed connect */
			pthread_mutex_lock(&s->mu);
			bool greeted = s->st.connects != c0;
			pthread_mutex_unlock(&s->mu);
			if (!greeted && s->cfg.nurls > 1)
				ui = (ui + 1) % s->cfg.nurls;
		} else {
			pthread_mutex_lock(&s->mu);
			s->st.failures++;
			pthread_mutex_unlock(&s->mu);
			set_error(s, "connect", s->urls[ui], why);
			if (streak++ % 20 == 0)
				tlcm_warn(s->log_id, "cannot connect to %s: "
					  "%s (retrying with backoff)",
					  s->urls[ui], why);
			if (s->cfg.nurls > 1)
				ui = (ui + 1) % s->cfg.nurls;
		}
		/* exponential backoff with jitter: [backoff/2, backoff) */
		uint64_t j = backoff / 2 + (uint64_t)((double)rand_r(&s->rnd) /
			((double)RAND_MAX + 1) * (double)(backoff / 2));
		if (nap(s, j))
			break;
		backoff = backoff * 2 > s->cfg.backoff_max_ns
				  ? s->cfg.backoff_max_ns : backoff * 2;
	}
	return NULL;
}

int link_sender_new(link_sender_t **out, const link_sender_cfg_t *cfg,
		    char *why, size_t whylen)
{
	if (!cfg->nurls) {
		snprintf(why, whylen, "no core URL");
		return TLCM_EINVAL;
	}
	link_sender_t *s = calloc(1, sizeof *s);
	if (!s)
		return TLCM_ENOMEM;
	s->cfg = *cfg;
	snprintf(s->log_id, sizeof s->log_id, "%s", cfg->log_id);
	s->urls = calloc(cfg->nurls, sizeof *s->urls);
	s->tls = calloc(cfg->nurls, sizeof *s->tls);
	int rc = s->urls && s->tls ? 0 : TLCM_ENOMEM;
	for (size_t i = 0; !rc && i < cfg->nurls; i++) {
		const char *u = cfg->urls[i];
		if (strncmp(u, "tcp://", 6) && strncmp(u, "tls+tcp://", 10) &&
		    strncmp(u, "ipc://", 6)) {
			snprintf(why, whylen, "core URL '%s': want tcp://, "
				 "tls+tcp:// or ipc://", u);
			rc = TLCM_EINVAL;
			break;
		}
		s->urls[i] = strdup(u);
		if (!s->urls[i])
			rc = TLCM_ENOMEM;
		else
			rc = link_tls_config(u, false, &cfg->tls, &s->tls[i],
					     why, whylen);
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	s->start_ns = mono_ns();
	s->rnd = (unsigned)s->start_ns ^ (unsigned)(uintptr_t)s;
	if (s->cfg.backoff_min_ns == 0)
		s->cfg.backoff_min_ns = 1000000;
	if (s->cfg.backoff_max_ns < s->cfg.backoff_min_ns)
		s->cfg.backoff_max_ns = s->cfg.backoff_min_ns;
	if (!rc && pthread_create(&s->thr, NULL, run, s))
		rc = TLCM_ENOMEM;
	if (rc) {
		s->thr = 0;
		s->stop = true;
		link_sender_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void link_sender_free(link_sender_t *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	bool started = !s->stop;
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (started) {
		link_txq_wake(s->cfg.q);
		pthread_join(s->thr, NULL);
	}
	for (size_t i = 0; i < s->cfg.nurls; i++) {
		if (s->urls)
			free(s->urls[i]);
		if (s->tls && s->tls[i])
			nng_tls_config_free(s->tls[i]);
	}
	free(s->urls);
	free(s->tls);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}

void link_sender_stats(link_sender_t *s, link_sender_stats_t *st)
{
	pthread_mutex_lock(&s->mu);
	*st = s->st;
	pthread_mutex_unlock(&s->mu);
}
