/* wire.c — LinkFrame checks and builders, blocking NNG stream I/O with
 * timeouts, and TLS configs for the satellite link (see wire.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_timedjoin_np */
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/error.h"
#include "nodes/link/deadline.h"
#include "nodes/link/wire.h"

#include <nng/supplemental/tls/tls.h>

static uint16_t link_ntohs(uint16_t v)
{
	return (uint16_t)((v >> 8) | (v << 8));
}

const char *link_kind_name(link_kind_t k)
{
	switch (k) {
	case LINK_F_HELLO: return "hello";
	case LINK_F_BATCH: return "batch";
	case LINK_F_ACK: return "ack";
	case LINK_F_HEALTH: return "health";
	case LINK_F_GOODBYE: return "goodbye";
	}
	return "?";
}

bool link_id_valid(const char *s, size_t len)
{
	if (!s || len == 0 || len > LINK_ID_MAX)
		return false;
	if ((len == 1 && s[0] == '.') || (len == 2 && !memcmp(s, "..", 2)))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

int link_frame_check(const void *buf, size_t len, link_kind_t *kind,
		     char *why, size_t whylen)
{
	const char *w = NULL;
	if (len < LINK_FRAME_MIN) {
		snprintf(why, whylen, "frame of %zu bytes is too short", len);
		return TLCM_EBADMSG;
	}
	if (tlcm_LinkFrame_verify_as_root(buf, len, &w)) {
		snprintf(why, whylen, "invalid LinkFrame: %s", w ? w : "?");
		return TLCM_EBADMSG;
	}
	tlcm_LinkFrame_table_t f = tlcm_LinkFrame_as_root(buf);
	int n = 0;
	link_kind_t k = 0;
	if (tlcm_LinkFrame_hello(f))
		n++, k = LINK_F_HELLO;
	if (tlcm_LinkFrame_batch(f))
		n++, k = LINK_F_BATCH;
	if (tlcm_LinkFrame_ack(f))
		n++, k = LINK_F_ACK;
	if (tlcm_LinkFrame_health(f))
		n++, k = LINK_F_HEALTH;
	if (tlcm_LinkFrame_goodbye(f))
		n++, k = LINK_F_GOODBYE;
	if (n != 1) {
		snprintf(why, whylen, "LinkFrame has %d members set, want "
			 "exactly 1", n);
		return TLCM_EBADMSG;
	}
	if (k == LINK_F_HELLO) {
		tlcm_LinkHello_table_t h = tlcm_LinkFrame_hello(f);
		const char *id = tlcm_LinkHello_satellite(h);
		size_t il = tlcm_LinkHello_satellite_len(h);
		if (!link_id_valid(id, il) || strlen(id) != il) {
			snprintf(why, whylen, "hello: satellite id '%.*s' is "
				 "not 1..64 of [A-Za-z0-9._-]",
				 (int)(il > 64 ? 64 : il), id ? id : "");
			return TLCM_EBADMSG;
		}
	}
	if (k == LINK_F_BATCH &&
	    tlcm_LinkBatch_seq(tlcm_LinkFrame_batch(f)) == 0) {
		snprintf(why, whylen, "batch: sequence number 0 (they start "
			 "at 1)");
		return TLCM_EBADMSG;
	}
	*kind = k;
	return 0;
}

static int finish(tlcm_fbb_t *b, tlcm_fbb_ref_t member, int which,
		  const void **out, size_t *len)
{
	tlcm_LinkFrame_start(b);
	switch (which) {
	case LINK_F_HELLO: tlcm_LinkFrame_add_hello(b, member); break;
	case LINK_F_ACK: tlcm_LinkFrame_add_ack(b, member); break;
	case LINK_F_HEALTH: tlcm_LinkFrame_add_health(b, member); break;
	case LINK_F_GOODBYE: tlcm_LinkFrame_add_goodbye(b, member); break;
	default: tlcm_LinkFrame_add_batch(b, member); break;
	}
	*out = tlcm_LinkFrame_finish_size_prefixed(b, tlcm_LinkFrame_end(b),
						   len);
	return *out ? 0 : tlcm_fbb_error(b);
}

int link_build_hello(tlcm_fbb_t *b, const link_hello_info_t *h,
		     const void **out, size_t *len)
{
	tlcm_fbb_reset(b);
	tlcm_fbb_ref_t id = tlcm_fbb_cstring(b, h->satellite);
	tlcm_fbb_ref_t ver = tlcm_fbb_cstring(b, h->version ? h->version : "");
	tlcm_fbb_ref_t prof = tlcm_fbb_cstring(b, h->profile ? h->profile
							     : "");
	tlcm_fbb_ref_t sec = h->secret && *h->secret
				     ? tlcm_fbb_cstring(b, h->secret) : 0;
	tlcm_LinkHello_start(b);
	tlcm_LinkHello_add_satellite(b, id);
	tlcm_LinkHello_add_version(b, ver);
	tlcm_LinkHello_add_profile(b, prof);
	if (sec)
		tlcm_LinkHello_add_secret(b, sec);
	tlcm_LinkHello_add_cpus(b, h->cpus);
	tlcm_LinkHello_add_memory(b, h->memory);
	tlcm_LinkHello_add_queue_depth(b, h->queue_depth);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	tlcm_LinkHello_add_time_ns(b, (uint64_t)ts.tv_sec * 1000000000u +
					      (uint64_t)ts.tv_nsec);
	return finish(b, tlcm_LinkHello_end(b), LINK_F_HELLO, out, len);
}

int link_build_ack(tlcm_fbb_t *b, uint64_t seq, const void **out,
		   size_t *len)
{
	tlcm_fbb_reset(b);
	tlcm_LinkAck_start(b);
	tlcm_LinkAck_add_seq(b, seq);
	return finish(b, tlcm_LinkAck_end(b), LINK_F_ACK, out, len);
}

int link_build_health(tlcm_fbb_t *b, uint64_t depth, uint64_t bytes,
		      uint64_t dropped, uint64_t sent, uint64_t uptime_s,
		      const void **out, size_t *len)
{
	tlcm_fbb_reset(b);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	tlcm_LinkHealth_start(b);
	tlcm_LinkHealth_add_queue_depth(b, depth);
	tlcm_LinkHealth_add_queue_bytes(b, bytes);
	tlcm_LinkHealth_add_dropped(b, dropped);
	tlcm_LinkHealth_add_sent(b, sent);
	tlcm_LinkHealth_add_uptime_s(b, uptime_s);
	tlcm_LinkHealth_add_time_ns(b, (uint64_t)ts.tv_sec * 1000000000u +
					       (uint64_t)ts.tv_nsec);
	return finish(b, tlcm_LinkHealth_end(b), LINK_F_HEALTH, out, len);
}

int link_build_goodbye(tlcm_fbb_t *b, const char *reason, const void **out,
		       size_t *len)
{
	tlcm_fbb_reset(b);
	tlcm_fbb_ref_t r = tlcm_fbb_cstring(b, reason ? reason : "");
	tlcm_LinkGoodbye_start(b);
	tlcm_LinkGoodbye_add_reason(b, r);
	return finish(b, tlcm_LinkGoodbye_end(b), LINK_F_GOODBYE, out, len);
}

int link_build_batch(tlcm_fbb_t *b, uint64_t seq, uint64_t dropped,
		     const tlcm_fbb_ref_t *msgs, size_t n, const void **out,
		     size_t *len)
{
	tlcm_fbb_ref_t v = tlcm_LinkBatch_messages_create(b, msgs, n);
	tlcm_LinkBatch_start(b);
	tlcm_LinkBatch_add_seq(b, seq);
	if (dropped)
		tlcm_LinkBatch_add_dropped(b, dropped);
	tlcm_LinkBatch_add_messages(b, v);
	return finish(b, tlcm_LinkBatch_end(b), LINK_F_BATCH, out, len);
}

/* ---- TLS ---- */

static char *slurp(const char *path, char *why, size_t whylen,
		   const char *what)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(why, whylen, "%s %s: cannot open it", what, path);
		return NULL;
	}
	size_t cap = 4096, n = 0;
	char *s = malloc(cap);
	for (size_t r; s && (r = fread(s + n, 1, cap - n - 1, f)) > 0;) {
		n += r;
		if (n + 1 == cap) {
			char *ns = cap < (1u << 22) ? realloc(s, cap * 2) : NULL;
			if (!ns) {
				free(s);
				s = NULL;
				snprintf(why, whylen, "%s %s: too large",
					 what, path);
				break;
			}
			s = ns;
			cap *= 2;
		}
	}
	fclose(f);
	if (s)
		s[n] = 0;
	return s;
}

int link_tls_config(const char *url, bool server, const link_tls_t *t,
		    nng_tls_config **cfg, char *why, size_t whylen)
{
	*cfg = NULL;
	if (strncmp(url, "tls+", 4) != 0)
		return 0;
	bool has_cert = t->cert && *t->cert, has_key = t->key && *t->key;
	bool has_ca = t->ca && *t->ca;
	if (server && (!has_cert || !has_key)) {
		snprintf(why, whylen, "%s: tls+tcp:// needs tls_cert and "
			 "tls_key", url);
		return TLCM_EINVAL;
	}
	if (has_cert != has_key) {
		snprintf(why, whylen, "%s: tls_cert and tls_key go together",
			 url);
		return TLCM_EINVAL;
	}
	if (server && t->require_peer && !has_ca) {
		snprintf(why, whylen, "%s: mutual TLS needs tls_ca (the CA of "
			 "the client certificates)", url);
		return TLCM_EINVAL;
	}
	nng_tls_config *c;
	int rv = nng_tls_config_alloc(&c, server ? NNG_TLS_MODE_SERVER
						 : NNG_TLS_MODE_CLIENT);
	if (rv) {
		snprintf(why, whylen, "%s: TLS unavailable: %s", url,
			 nng_strerror(rv));
		return TLCM_ENOTSUP;
	}
	char *cert = NULL, *key = NULL;
	if (has_cert) {
		cert = slurp(t->cert, why, whylen, "tls_cert");
		key = cert ? slurp(t->key, why, whylen, "tls_key") : NULL;
		if (!key)
			goto fail_quiet;
		if ((rv = nng_tls_config_own_cert(c, cert, key, NULL))) {
			snprintf(why, whylen, "tls_cert %s / tls_key %s: %s",
				 t->cert, t->key, nng_strerror(rv));
			goto fail_quiet;
		}
	}
	if (has_ca && (rv = nng_tls_config_ca_file(c, t->ca))) {
		snprintf(why, whylen, "tls_ca %s: %s", t->ca, nng_strerror(rv));
		goto fail_quiet;
	}
	nng_tls_auth_mode mode = NNG_TLS_AUTH_MODE_NONE;
	if (server && t->require_peer)
		mode = NNG_TLS_AUTH_MODE_REQUIRED;
	if (!server && has_ca)
		mode = NNG_TLS_AUTH_MODE_REQUIRED;
	if ((rv = nng_tls_config_auth_mode(c, mode))) {
		snprintf(why, whylen, "%s: TLS auth mode: %s", url,
			 nng_strerror(rv));
		goto fail_quiet;
	}
	if (!server && t->server_name && *t->server_name &&
	    (rv = nng_tls_config_server_name(c, t->server_name))) {
		snprintf(why, whylen, "tls_server_name: %s", nng_strerror(rv));
		goto fail_quiet;
	}
	free(cert);
	free(key);
	*cfg = c;
	return 0;
fail_quiet:
	free(cert);
	free(key);
	nng_tls_config_free(c);
	return TLCM_EINVAL;
}

/* ---- blocking stream I/O ---- */

static int io_err(int rv)
{
	switch (rv) {
	case NNG_ETIMEDOUT: return TLCM_ETIMEDOUT;
	case NNG_ECLOSED: case NNG_ECONNSHUT: case NNG_ECONNRESET:
	case NNG_ECANCELED: case NNG_ECONNABORTED:
		return TLCM_ECLOSED;
	default: return TLCM_EIO;
	}
}

static int xfer(nng_stream *s, nng_aio *aio, void *buf, size_t len,
		int timeout_ms, bool wr, size_t *done)
{
	uint8_t *p = buf;
	*done = 0;
	while (len) {
		nng_iov iov = {.iov_buf = p, .iov_len = len};
		nng_aio_set_iov(aio, 1, &iov);
		nng_aio_set_timeout(aio, timeout_ms < 0 ? NNG_DURATION_INFINITE
							: timeout_ms);
		if (wr)
			nng_stream_send(s, aio);
		else
			nng_stream_recv(s, aio);
		nng_aio_wait(aio);
		int rv = nng_aio_result(aio);
		if (rv)
			return io_err(rv);
		size_t n = nng_aio_count(aio);
		if (n == 0)
			return TLCM_ECLOSED;
		p += n;
		len -= n;
		*done += n;
	}
	return 0;
}

int link_write(nng_stream *s, nng_aio *aio, const void *buf, size_t len,
	       int timeout_ms)
{
	size_t done;
	return xfer(s, aio, (void *)buf, len, timeout_ms, true, &done);
}

int link_write_some(nng_stream *s, nng_aio *aio, const void *buf,
		    size_t len, int timeout_ms, size_t *done)
{
	return xfer(s, aio, (void *)buf, len, timeout_ms, true, done);
}

int link_read(nng_stream *s, nng_aio *aio, void *buf, size_t len,
	      int timeout_ms)
{
	size_t done;
	return xfer(s, aio, buf, len, timeout_ms, false, &done);
}

void link_join_io(pthread_t t, nng_aio *aio)
{
	for (;;) {
		nng_aio_cancel(aio);
		struct timespec ts;
		link_deadline(CLOCK_REALTIME, 20000000u, &ts);
		if (pthread_timedjoin_np(t, NULL, &ts) != ETIMEDOUT)
			return;
	}
}

int link_read_frame(nng_stream *s, nng_aio *aio, uint8_t **buf, size_t *cap,
		    size_t *len, size_t max, int timeout_ms, char *why,
		    size_t whylen)
{
	uint8_t pre[4];
	int rc = link_read(s, aio, pre, 4, timeout_ms);
	if (rc) {
		snprintf(why, whylen, "%s", rc == TLCM_ETIMEDOUT
			 ? "timed out waiting for a frame"
			 : rc == TLCM_ECLOSED ? "connection closed"
					      : "read error");
		return rc;
	}
	size_t n = (size_t)pre[0] | (size_t)pre[1] << 8 |
		   (size_t)pre[2] << 16 | (size_t)pre[3] << 24;
	if (n > max) {
		snprintf(why, whylen, "frame of %zu bytes exceeds max_frame "
			 "(%zu)", n, max);
		return TLCM_ETOOBIG;
	}
	if (n < LINK_FRAME_MIN) {
		snprintf(why, whylen, "frame of %zu bytes is too short", n);
		return TLCM_EBADMSG;
	}
	if (n + LINK_BODY > *cap) {
		size_t nc = n + LINK_BODY < 65536 ? 65536 : n + LINK_BODY;
		uint8_t *nb = realloc(*buf, nc);
		if (!nb) {
			snprintf(why, whylen, "out of memory for a %zu-byte "
				 "frame", n);
			return TLCM_ENOMEM;
		}
		*buf = nb;
		*cap = nc;
	}
	/* the body keeps the builder's alignment: 4 bytes into an 8-byte
	 * aligned block, after its prefix */
	memcpy(*buf, pre, 4);
	rc = link_read(s, aio, *buf + LINK_BODY, n, timeout_ms);
	if (rc) {
		snprintf(why, whylen, "%s", rc == TLCM_ETIMEDOUT
			 ? "timed out in the middle of a frame"
			 : "connection closed in the middle of a frame");
		return rc;
	}
	*len = n;
	return 0;
}

void link_peer_addr(nng_stream *s, char *out, size_t len)
{
	nng_sockaddr sa;
	snprintf(out, len, "?");
	if (nng_stream_get_addr(s, NNG_OPT_REMADDR, &sa))
		return;
	if (sa.s_family == NNG_AF_INET) {
		const uint8_t *a = (const uint8_t *)&sa.s_in.sa_addr;
		snprintf(out, len, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3],
			 (unsigned)link_ntohs(sa.s_in.sa_port));
	} else if (sa.s_family == NNG_AF_INET6) {
		snprintf(out, len, "[ipv6]:%u",
			 (unsigned)link_ntohs(sa.s_in6.sa_port));
	} else if (sa.s_family == NNG_AF_IPC) {
		snprintf(out, len, "ipc");
	}
}
