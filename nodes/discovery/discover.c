/* discover.c — browse and resolve `_tinylcm._tcp` over mDNS (Avahi), with
 * a static fallback list.
 *
 * One call owns a simple poll loop and an Avahi client: a service browser
 * reports instances, a resolver per instance turns each into host,
 * address, port and TXT records; the loop ends at the timeout, or earlier
 * once Avahi says "all for now", no resolver is pending and something was
 * found. Results are de-duplicated by instance name, sorted by TXT prio
 * and name. See discover.h for the contract.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/simple-watch.h>

#include "engine/error.h"
#include "engine/log.h"
#include "nodes/discovery/discover.h"

#define MAX_FOUND 64

typedef struct {
	AvahiSimplePoll *poll;
	AvahiClient *client;
	const tlcm_disc_opts_t *o;
	tlcm_disc_core_t found[MAX_FOUND];
	size_t nfound;
	int pending;      /* resolvers not finished */
	bool all_for_now;
	int error;        /* Avahi error that ended the browse, or 0 */
	const char *error_where;
} browse_t;

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

int tlcm_disc_parse_url(const char *url, tlcm_disc_core_t *c, char *why,
			size_t cap)
{
	memset(c, 0, sizeof *c);
	c->source = TLCM_DISC_STATIC;
	if (!url || strlen(url) >= sizeof c->url) {
		snprintf(why, cap, "static core URL too long or missing");
		return TLCM_EINVAL;
	}
	copy(c->url, sizeof c->url, url);
	copy(c->name, sizeof c->name, url);
	const char *rest;
	if (!strncmp(url, "ipc://", 6)) {
		if (!url[6]) {
			snprintf(why, cap, "static core '%s': ipc:// needs a "
				 "path", url);
			return TLCM_EINVAL;
		}
		copy(c->host, sizeof c->host, url + 6);
		copy(c->address, sizeof c->address, url + 6);
		return 0;
	}
	if (!strncmp(url, "tcp://", 6)) {
		rest = url + 6;
	} else if (!strncmp(url, "tls+tcp://", 10)) {
		rest = url + 10;
		c->tls = true;
	} else {
		snprintf(why, cap, "static core '%s': expected tcp://HOST:PORT, "
			 "tls+tcp://HOST:PORT or ipc://PATH", url);
		return TLCM_EINVAL;
	}
	const char *colon = strrchr(rest, ':');
	const char *host = rest;
	size_t hlen = colon ? (size_t)(colon - rest) : 0;
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		host++; /* [v6]:port */
		hlen -= 2;
	}
	char *end = NULL;
	errno = 0;
	long port = colon ? strtol(colon + 1, &end, 10) : 0;
	if (!colon || !hlen || hlen >= sizeof c->address || !colon[1] ||
	    *end || errno || port < 1 || port > 65535) {
		snprintf(why, cap, "static core '%s': expected HOST:PORT with "
			 "a port 1..65535 after the scheme", url);
		return TLCM_EINVAL;
	}
	memcpy(c->host, host, hlen);
	memcpy(c->address, host, hlen);
	c->port = (int)port;
	return 0;
}

/* The TXT records into c: prio, id, tls, path and the whole list. */
static void take_txt(tlcm_disc_core_t *c, AvahiStringList *txt)
{
	size_t at = 0;
	c->prio = TLCM_DISC_PRIO_DEFAULT;
	/* Avahi keeps the list in reverse order of publication */
	txt = avahi_string_list_reverse(avahi_string_list_copy(txt));
	for (AvahiStringList *l = txt; l; l = avahi_string_list_get_next(l)) {
		char *k = NULL, *v = NULL;
		size_t vlen = 0;
		if (avahi_string_list_get_pair(l, &k, &v, &vlen) < 0)
			continue;
		const char *val = v ? v : "";
		if (!strcmp(k, "prio")) {
			char *end;
			long p = strtol(val, &end, 10);
			if (*val && !*end && p >= 0 && p <= 65535)
				c->prio = (int)p;
		} else if (!strcmp(k, "id")) {
			copy(c->id, sizeof c->id, val);
		} else if (!strcmp(k, "tls")) {
			c->tls = !strcmp(val, "1") || !strcmp(val, "true") ||
				 !strcmp(val, "yes");
		} else if (!strcmp(k, "path")) {
			copy(c->path, sizeof c->path, val);
		}
		int w = snprintf(c->txt + at, sizeof c->txt - at, "%s%s%s\n",
				 k, v ? "=" : "", val);
		if (w > 0 && (size_t)w < sizeof c->txt - at)
			at += (size_t)w;
		avahi_free(k);
		avahi_free(v);
	}
	avahi_string_list_free(txt);
}

static void resolved(AvahiServiceResolver *r, AvahiIfIndex ifi,
		     AvahiProtocol proto, AvahiResolverEvent ev,
		     const char *name, const char *type, const char *domain,
		     const char *host, const AvahiAddress *addr, uint16_t port,
		     AvahiStringList *txt, AvahiLookupResultFlags flags,
		     void *arg)
{
	browse_t *b = arg;
	(void)ifi; (void)proto; (void)type; (void)domain; (void)flags;
	b->pending--;
	if (ev != AVAHI_RESOLVER_FOUND) {
		tlcm_debug("discover", "cannot resolve '%s': %s", name,
			   avahi_strerror(avahi_client_errno(b->client)));
		avahi_service_resolver_free(r);
		return;
	}
	for (size_t i = 0; i < b->nfound; i++)
		if (!strcmp(b->found[i].name, name)) {
			avahi_service_resolver_free(r);
			return; /* the same instance on another interface */
		}
	if (b->nfound == MAX_FOUND) {
		avahi_service_resolver_free(r);
		return;
	}
	tlcm_disc_core_t *c = &b->found[b->nfound++];
	memset(c, 0, sizeof *c);
	c->source = TLCM_DISC_MDNS;
	copy(c->name, sizeof c->name, name);
	copy(c->host, sizeof c->host, host);
	avahi_address_snprint(c->address, sizeof c->address, addr);
	c->port = port;
	take_txt(c, txt);
	bool v6 = addr->proto == AVAHI_PROTO_INET6;
	char a[sizeof c->address];
	memcpy(a, c->address, sizeof a);
	snprintf(c->url, sizeof c->url, "%s://%s%s%s:%u",
		 c->tls ? "tls+tcp" : "tcp", v6 ? "[" : "", a,
		 v6 ? "]" : "", (unsigned)port);
	avahi_service_resolver_free(r);
}

static void browsed(AvahiServiceBrowser *sb, AvahiIfIndex ifi,
		    AvahiProtocol proto, AvahiBrowserEvent ev,
		    const char *name, const char *type, const char *domain,
		    AvahiLookupResultFlags flags, void *arg)
{
	browse_t *b = arg;
	(void)sb; (void)flags;
	switch (ev) {
	case AVAHI_BROWSER_NEW:
		if (avahi_service_resolver_new(b->client, ifi, proto, name,
					       type, domain,
					       b->o->ipv6 ? AVAHI_PROTO_UNSPEC
							  : AVAHI_PROTO_INET,
					       0, resolved, b))
			b->pending++;
		else
			tlcm_debug("discover", "cannot resolve '%s': %s",
				   name, avahi_strerror(
					avahi_client_errno(b->client)));
		break;
	case AVAHI_BROWSER_ALL_FOR_NOW:
		b->all_for_now = true;
		break;
	case AVAHI_BROWSER_FAILURE:
		b->error = avahi_client_errno(b->client);
		b->error_where = "browsing";
		avahi_simple_poll_quit(b->poll);
		break;
	default: /* REMOVE (we keep what resolved), CACHE_EXHAUSTED */
		break;
	}
}

static void client_state(AvahiClient *c, AvahiClientState s, void *arg)
{
	browse_t *b = arg;
	if (s == AVAHI_CLIENT_FAILURE) {
		b->error = avahi_client_errno(c);
		b->error_where = "the daemon connection";
		avahi_simple_poll_quit(b->poll);
	}
}

static int cmp_core(const void *x, const void *y)
{
	const tlcm_disc_core_t *a = x, *b = y;
	if (a->prio != b->prio)
		return a->prio < b->prio ? -1 : 1;
	return strcmp(a->name, b->name);
}

/* Browse; 0, or an Avahi error code with *where set. */
static int browse(browse_t *b, const char **where)
{
	int err = 0;
	const tlcm_disc_opts_t *o = b->o;
	b->poll = avahi_simple_poll_new();
	if (!b->poll) {
		*where = "creating a poll loop";
		return AVAHI_ERR_NO_MEMORY;
	}
	b->client = avahi_client_new(avahi_simple_poll_get(b->poll), 0,
				     client_state, b, &err);
	if (!b->client) {
		*where = "connecting to avahi-daemon";
		avahi_simple_poll_free(b->poll);
		return err;
	}
	AvahiServiceBrowser *sb = avahi_service_browser_new(
		b->client, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC,
		o->type ? o->type : TLCM_DISC_TYPE, o->domain, 0, browsed, b);
	if (!sb) {
		err = avahi_client_errno(b->client);
		*where = "starting the browser";
	}
	uint64_t end = now_ns() + (o->timeout_ns ? o->timeout_ns
						 : 2000000000ull);
	while (sb && !b->error) {
		uint64_t t = now_ns();
		if (t >= end)
			break;
		if (!o->wait_full && b->all_for_now && !b->pending &&
		    b->nfound)
			break;
		uint64_t left = (end - t) / 1000000 + 1;
		int rc = avahi_simple_poll_iterate(b->poll, left > 100 ? 100 :
							    (int)left);
		if (rc != 0)
			break; /* quit (error set) or poll failure */
	}
	if (b->error) {
		err = b->error;
		*where = b->error_where;
	}
	/* freeing the client frees the browser and pending resolvers */
	avahi_client_free(b->client);
	avahi_simple_poll_free(b->poll);
	return err;
}

int tlcm_discover(const tlcm_disc_opts_t *o, tlcm_disc_core_t *out,
		  size_t max, size_t *n, char *why, size_t cap)
{
	char dummy[8];
	if (!why) {
		why = dummy;
		cap = sizeof dummy;
	}
	*n = 0;
	if (!o || !out || !max) {
		snprintf(why, cap, "discover: no options or no room");
		return TLCM_EINVAL;
	}
	const char *type = o->type ? o->type : TLCM_DISC_TYPE;
	/* bad fallback URLs are configuration mistakes: refuse them now,
	 * not only on the day mDNS fails */
	tlcm_disc_core_t tmp;
	for (size_t i = 0; i < o->nfallback; i++)
		if (tlcm_disc_parse_url(o->fallback[i], &tmp, why, cap))
			return TLCM_EINVAL;

	browse_t *b = calloc(1, sizeof *b);
	if (!b)
		return TLCM_ENOMEM;
	b->o = o;
	const char *where = NULL;
	int err = browse(b, &where);
	char reason[200];
	if (b->nfound) {
		qsort(b->found, b->nfound, sizeof b->found[0], cmp_core);
		*n = b->nfound < max ? b->nfound : max;
		memcpy(out, b->found, *n * sizeof *out);
		snprintf(why, cap, "%zu core%s via mDNS (%s)", b->nfound,
			 b->nfound == 1 ? "" : "s", type);
		free(b);
		return 0;
	}
	free(b);
	if (err)
		snprintf(reason, sizeof reason, "Avahi unavailable (%s: %s)",
			 where, avahi_strerror(err));
	else
		snprintf(reason, sizeof reason, "no %s service answered "
			 "within %.1f s", type,
			 (o->timeout_ns ? o->timeout_ns : 2000000000ull) / 1e9);
	if (!o->nfallback) {
		snprintf(why, cap, "%s and no static cores are configured",
			 reason);
		return TLCM_ENOENT;
	}
	for (size_t i = 0; i < o->nfallback && *n < max; i++) {
		tlcm_disc_parse_url(o->fallback[i], &out[*n], why, cap);
		out[*n].prio = (int)i;
		(*n)++;
	}
	snprintf(why, cap, "%s: using %zu static core%s", reason, *n,
		 *n == 1 ? "" : "s");
	tlcm_warn("discover", "%s", why);
	return 0;
}
