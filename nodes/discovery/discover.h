/* discover.h — finding a core on the LAN: DNS-SD over mDNS through Avahi.
 *
 * A core announces itself as a DNS-SD service of type `_tinylcm._tcp`
 * (tlcm_announce_*, used by the node `discovery.announce`); a satellite
 * browses for that type and resolves what it finds (tlcm_discover, used by
 * `tinylcm discover` and meant for link.tx's list of core URLs). Both talk
 * to the local avahi-daemon over D-Bus through libavahi-client; without a
 * daemon, browsing falls back to a static list and announcing keeps
 * trying in the background (docs/discovery.md).
 *
 * TXT records a core publishes (all optional; unknown keys are kept):
 *   prio=N    lower is preferred (default 100; also for a core without it)
 *   id=S      the core's id (e.g. a fleet or store name)
 *   tls=1     the link listens with TLS: the URL becomes tls+tcp://
 *   path=S    a path for clients that need one (e.g. "/api/v1" of HTTP)
 *
 * Threading: tlcm_discover() is synchronous and self-contained (its own
 * client and poll loop), callable from any thread, any number at once.
 * An announcer runs Avahi's threaded poll; its functions are thread-safe.
 *
 * Example — link.tx getting its list of core URLs:
 *
 *   static const char *const fb[] = {"tcp://10.0.0.5:8471"};
 *   tlcm_disc_core_t cores[8];
 *   size_t n;
 *   char why[256];
 *   tlcm_disc_opts_t o = {.timeout_ns = 2000000000ull,
 *                         .fallback = fb, .nfallback = 1};
 *   if (tlcm_discover(&o, cores, 8, &n, why, sizeof why) == 0)
 *       for (size_t i = 0; i < n; i++)
 *           connect_to(cores[i].url);      // best first
 *   else
 *       tlcm_error(id, "no core: %s", why);
 */
#ifndef TLCM_DISCOVER_H
#define TLCM_DISCOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLCM_DISC_TYPE "_tinylcm._tcp"
#define TLCM_DISC_PRIO_DEFAULT 100

enum { TLCM_DISC_MDNS = 1, TLCM_DISC_STATIC = 2 };

typedef struct tlcm_disc_core {
	char name[64];     /* DNS-SD instance name; static: the URL */
	char host[256];    /* e.g. "core.local"; static: the URL's host */
	char address[64];  /* numeric address (static: the URL's host) */
	int port;          /* 0 for ipc:// */
	int prio;          /* TXT prio, lower first; static: list order */
	bool tls;          /* TXT tls=1 / a tls+tcp:// URL */
	char id[64];       /* TXT id (empty when absent) */
	char path[256];    /* TXT path (empty when absent) */
	char url[320];     /* what to dial: tcp://A:P, tls+tcp://A:P, ipc://… */
	char txt[768];     /* every TXT record "key=value", '\n' after each */
	int source;        /* TLCM_DISC_MDNS or TLCM_DISC_STATIC */
} tlcm_disc_core_t;

typedef struct tlcm_disc_opts {
	const char *type;         /* NULL: TLCM_DISC_TYPE */
	const char *domain;       /* NULL: "local" */
	uint64_t timeout_ns;      /* how long to browse at most; 0: 2 s */
	const char *const *fallback; /* static URLs used when mDNS finds */
	size_t nfallback;            /* nothing or Avahi is unavailable */
	bool ipv6;                /* resolve to IPv6 addresses too */
	bool wait_full;           /* browse the whole timeout (else stop once
				     Avahi says "all for now" and at least one
				     core is resolved) */
} tlcm_disc_opts_t;

/* Browse for cores: fills out[0..*n) with at most max cores, sorted by
 * prio and then name (the best first), one per service instance. When
 * mDNS finds none (or Avahi is unavailable) the static fallback list is
 * used instead, in its order (source TLCM_DISC_STATIC), and a warning
 * says why. why (may be NULL) always gets a one-line account ("2 cores
 * via mDNS", "Avahi unavailable (Daemon not running): 1 static core").
 * Returns 0 with *n >= 1; TLCM_ENOENT with *n == 0 when nothing was
 * found and there is no fallback; TLCM_EINVAL for a bad fallback URL
 * (named in why; checked before browsing) or bad options. */
int tlcm_discover(const tlcm_disc_opts_t *o, tlcm_disc_core_t *out,
		  size_t max, size_t *n, char *why, size_t cap);

/* Parse a static core URL (tcp://HOST:PORT, tls+tcp://HOST:PORT,
 * ipc:///path) into c (source TLCM_DISC_STATIC, prio 0). TLCM_EINVAL with
 * the reason in why otherwise. */
int tlcm_disc_parse_url(const char *url, tlcm_disc_core_t *c, char *why,
			size_t cap);

/* ---- announcing ---------------------------------------------------------- */

typedef struct tlcm_announce tlcm_announce_t;

typedef struct tlcm_announce_opts {
	const char *name;       /* instance name (renamed "NAME #2" … on a
				   collision); NULL/"": "tinylcm core on
				   HOSTNAME" */
	const char *type;       /* NULL: TLCM_DISC_TYPE */
	int port;               /* 1..65535 */
	const char *const *txt; /* "key=value" records */
	size_t ntxt;
	const char *who;        /* for log lines (node id); NULL: "announce" */
} tlcm_announce_opts_t;

/* Start announcing in the background. When the daemon is not reachable
 * yet, or goes away later, the announcer waits for it and publishes again
 * (each change logged once). required: fail (TLCM_ENOENT, the reason in
 * why) instead when no daemon answers now. TLCM_EINVAL for bad options
 * (a TXT record without '=' or over 255 bytes, a port out of range). */
int tlcm_announce_new(const tlcm_announce_opts_t *o, bool required,
		      tlcm_announce_t **out, char *why, size_t cap);
/* Withdraw the service and stop. NULL is fine. */
void tlcm_announce_free(tlcm_announce_t *a);

enum { TLCM_ANNOUNCE_WAITING, TLCM_ANNOUNCE_REGISTERING,
       TLCM_ANNOUNCE_ESTABLISHED, TLCM_ANNOUNCE_FAILED };
/* The state, the name in use (after collisions) and the reason of the
 * last failure, copied out (name and why may be NULL). */
int tlcm_announce_state(tlcm_announce_t *a, char *name, size_t name_cap,
			char *why, size_t why_cap);

#endif
