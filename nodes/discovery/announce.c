/* announce.c — publish a core as a DNS-SD service (`_tinylcm._tcp`) and the
 * node `discovery.announce` that does it from a graph (graphs/core.yaml).
 *
 * The announcer runs Avahi's threaded poll with a client created with
 * AVAHI_CLIENT_NO_FAIL: while no daemon runs it waits for one; when the
 * client is running it registers one entry group (name, port, TXT); on a
 * name collision it picks Avahi's alternative name and registers again;
 * when the daemon goes away it starts over with a new client. Without a
 * D-Bus system bus at all (NO_FAIL cannot wait then) a timer tries again
 * every RETRY_MS. Every callback runs on the poll thread; the state is
 * read under its lock.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <avahi-client/client.h>
#include <avahi-client/publish.h>
#include <avahi-common/alternative.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/thread-watch.h>
#include <avahi-common/timeval.h>

#include "engine/log.h"
#include "engine/node.h"
#include "nodes/discovery/discover.h"
#include "nodes/discovery/discovery.h"

#define RETRY_MS 5000

struct tlcm_announce {
	AvahiThreadedPoll *poll;
	AvahiTimeout *retry;
	AvahiClient *client;
	AvahiEntryGroup *group;
	AvahiStringList *txt;
	char *name;     /* avahi_malloc'd: renamed on collisions */
	char type[64];
	char who[64];
	int port;
	int state;
	char why[200];
};

static void set_state(tlcm_announce_t *a, int st, const char *why)
{
	if (a->state == st && (!why || !strcmp(why, a->why)))
		return;
	a->state = st;
	snprintf(a->why, sizeof a->why, "%s", why ? why : "");
	switch (st) {
	case TLCM_ANNOUNCE_ESTABLISHED:
		tlcm_info(a->who, "announcing '%s' (%s, port %d) via mDNS",
			  a->name, a->type, a->port);
		break;
	case TLCM_ANNOUNCE_FAILED:
		tlcm_warn(a->who, "cannot announce '%s' via mDNS: %s", a->name,
			  a->why);
		break;
	case TLCM_ANNOUNCE_WAITING:
		tlcm_warn(a->who, "not announced via mDNS yet: %s (waiting "
			  "for avahi-daemon)", a->why);
		break;
	default:
		break;
	}
}

static void register_service(tlcm_announce_t *a);

static void group_state(AvahiEntryGroup *g, AvahiEntryGroupState s,
			void *arg)
{
	tlcm_announce_t *a = arg;
	a->group = g;
	if (s == AVAHI_ENTRY_GROUP_ESTABLISHED) {
		set_state(a, TLCM_ANNOUNCE_ESTABLISHED, NULL);
	} else if (s == AVAHI_ENTRY_GROUP_COLLISION) {
		char *alt = avahi_alternative_service_name(a->name);
		tlcm_warn(a->who, "service name '%s' is taken on the LAN: "
			  "announcing as '%s'", a->name, alt);
		avahi_free(a->name);
		a->name = alt;
		avahi_entry_group_reset(g);
		register_service(a);
	} else if (s == AVAHI_ENTRY_GROUP_FAILURE) {
		set_state(a, TLCM_ANNOUNCE_FAILED, avahi_strerror(
			avahi_client_errno(avahi_entry_group_get_client(g))));
	}
}

static void register_service(tlcm_announce_t *a)
{
	if (!a->group) {
		a->group = avahi_entry_group_new(a->client, group_state, a);
		if (!a->group) {
			set_state(a, TLCM_ANNOUNCE_FAILED, avahi_strerror(
				avahi_client_errno(a->client)));
			return;
		}
	}
	if (!avahi_entry_group_is_empty(a->group))
		return;
	for (;;) {
		int rc = avahi_entry_group_add_service_strlst(
			a->group, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC, 0,
			a->name, a->type, NULL, NULL, (uint16_t)a->port,
			a->txt);
		if (rc == AVAHI_ERR_COLLISION) {
			char *alt = avahi_alternative_service_name(a->name);
			avahi_free(a->name);
			a->name = alt;
			continue;
		}
		if (rc >= 0)
			rc = avahi_entry_group_commit(a->group);
		if (rc < 0)
			set_state(a, TLCM_ANNOUNCE_FAILED, avahi_strerror(rc));
		else if (a->state != TLCM_ANNOUNCE_ESTABLISHED)
			a->state = TLCM_ANNOUNCE_REGISTERING;
		return;
	}
}

static void connect_client(tlcm_announce_t *a);

static void client_state(AvahiClient *c, AvahiClientState s, void *arg)
{
	tlcm_announce_t *a = arg;
	a->client = c; /* also during avahi_client_new */
	switch (s) {
	case AVAHI_CLIENT_S_RUNNING:
		register_service(a);
		break;
	case AVAHI_CLIENT_S_COLLISION:
	case AVAHI_CLIENT_S_REGISTERING:
		/* the host name changes: publish again once running */
		if (a->group)
			avahi_entry_group_reset(a->group);
		break;
	case AVAHI_CLIENT_CONNECTING:
		set_state(a, TLCM_ANNOUNCE_WAITING, "the daemon is not running");
		break;
	case AVAHI_CLIENT_FAILURE:
		if (avahi_client_errno(c) == AVAHI_ERR_DISCONNECTED) {
			/* the daemon went away: start over, waiting for it */
			avahi_client_free(c);
			a->client = NULL;
			a->group = NULL;
			set_state(a, TLCM_ANNOUNCE_WAITING, "the daemon went "
				  "away");
			connect_client(a);
		} else {
			set_state(a, TLCM_ANNOUNCE_FAILED, avahi_strerror(
				avahi_client_errno(c)));
		}
		break;
	}
}

static void retry(AvahiTimeout *t, void *arg)
{
	(void)t;
	connect_client(arg);
}

/* A new client that waits for the daemon; when even that fails (no
 * system bus), try again in RETRY_MS. On the poll thread, or before it
 * starts. */
static void connect_client(tlcm_announce_t *a)
{
	int err = 0;
	const AvahiPoll *api = avahi_threaded_poll_get(a->poll);
	if (avahi_client_new(api, AVAHI_CLIENT_NO_FAIL, client_state, a,
			     &err))
		return; /* client_state set a->client */
	a->client = NULL;
	set_state(a, TLCM_ANNOUNCE_WAITING, avahi_strerror(err));
	struct timeval tv;
	avahi_elapse_time(&tv, RETRY_MS, 0);
	if (a->retry)
		api->timeout_update(a->retry, &tv);
	else
		a->retry = api->timeout_new(api, &tv, retry, a);
}

int tlcm_announce_new(const tlcm_announce_opts_t *o, bool required,
		      tlcm_announce_t **out, char *why, size_t cap)
{
	*out = NULL;
	if (o->port < 1 || o->port > 65535) {
		snprintf(why, cap, "port %d: expected 1..65535", o->port);
		return TLCM_EINVAL;
	}
	const char *type = o->type && *o->type ? o->type : TLCM_DISC_TYPE;
	if (strlen(type) >= 64 || type[0] != '_' || !strstr(type, "._tcp")) {
		snprintf(why, cap, "service type '%s': expected _NAME._tcp",
			 type);
		return TLCM_EINVAL;
	}
	for (size_t i = 0; i < o->ntxt; i++) {
		const char *eq = strchr(o->txt[i], '=');
		if (!eq || eq == o->txt[i] || strlen(o->txt[i]) > 255) {
			snprintf(why, cap, "TXT record '%s': expected "
				 "key=value, at most 255 bytes", o->txt[i]);
			return TLCM_EINVAL;
		}
	}
	tlcm_announce_t *a = calloc(1, sizeof *a);
	if (!a)
		return TLCM_ENOMEM;
	snprintf(a->type, sizeof a->type, "%s", type);
	snprintf(a->who, sizeof a->who, "%s", o->who ? o->who : "announce");
	a->port = o->port;
	a->state = -1; /* so the first state is logged */
	if (o->name && *o->name) {
		a->name = avahi_strdup(o->name);
	} else {
		char host[64] = "unknown";
		gethostname(host, sizeof host - 1);
		char def[128];
		snprintf(def, sizeof def, "tinylcm core on %s", host);
		a->name = avahi_strdup(def);
	}
	if (o->ntxt)
		a->txt = avahi_string_list_new_from_array(
			(const char **)o->txt, (int)o->ntxt);
	int err = 0;
	a->poll = avahi_threaded_poll_new();
	if (!a->poll || !a->name) {
		snprintf(why, cap, "out of memory");
		tlcm_announce_free(a);
		return TLCM_ENOMEM;
	}
	/* not started yet: callbacks of client_new run on this thread */
	if (required) {
		AvahiClient *c = avahi_client_new(
			avahi_threaded_poll_get(a->poll), 0, client_state, a,
			&err);
		if (!c) {
			snprintf(why, cap, "cannot reach avahi-daemon: %s",
				 avahi_strerror(err));
			tlcm_announce_free(a);
			return TLCM_ENOENT;
		}
		a->client = c;
	} else {
		connect_client(a);
	}
	if (avahi_threaded_poll_start(a->poll) < 0) {
		snprintf(why, cap, "cannot start Avahi's poll thread");
		tlcm_announce_free(a);
		return TLCM_EINTERNAL;
	}
	*out = a;
	return 0;
}

void tlcm_announce_free(tlcm_announce_t *a)
{
	if (!a)
		return;
	if (a->poll)
		avahi_threaded_poll_stop(a->poll); /* no-op when not started */
	if (a->client)
		avahi_client_free(a->client); /* frees the group: withdrawn */
	if (a->retry)
		avahi_threaded_poll_get(a->poll)->timeout_free(a->retry);
	if (a->poll)
		avahi_threaded_poll_free(a->poll);
	avahi_string_list_free(a->txt);
	avahi_free(a->name);
	free(a);
}

int tlcm_announce_state(tlcm_announce_t *a, char *name, size_t name_cap,
			char *why, size_t why_cap)
{
	avahi_threaded_poll_lock(a->poll);
	int st = a->state < 0 ? TLCM_ANNOUNCE_WAITING : a->state;
	if (name)
		snprintf(name, name_cap, "%s", a->name);
	if (why)
		snprintf(why, why_cap, "%s", a->why);
	avahi_threaded_poll_unlock(a->poll);
	return st;
}

/* ---- the node ------------------------------------------------------------ */

typedef struct {
	tlcm_announce_t *a;
} node_t;

static const tlcm_port_desc_t outputs[] = {{0}};

static const tlcm_param_desc_t params[] = {
	{"port", TLCM_P_INT, NULL, "the port to announce (the core's link "
	 "listener)", 1, 65535, NULL, 0},
	{"name", TLCM_P_STRING, "", "service instance name (empty: "
	 "\"tinylcm core on HOSTNAME\"); renamed \"NAME #2\" on a collision",
	 0, 0, NULL, 0},
	{"type", TLCM_P_STRING, TLCM_DISC_TYPE, "DNS-SD service type", 0, 0,
	 NULL, 0},
	{"prio", TLCM_P_INT, "100", "TXT prio: satellites prefer lower", 0,
	 65535, NULL, 0},
	{"id", TLCM_P_STRING, "", "TXT id: the core's id (empty: not "
	 "published)", 0, 0, NULL, 0},
	{"tls", TLCM_P_BOOL, "false", "TXT tls=1: the link expects "
	 "tls+tcp://", 0, 0, NULL, 0},
	{"path", TLCM_P_STRING, "", "TXT path (empty: not published)", 0, 0,
	 NULL, 0},
	{"txt", TLCM_P_LIST, "", "more TXT records, key=value each", 0, 0,
	 NULL, 0},
	{"required", TLCM_P_BOOL, "false", "fail the start when no "
	 "avahi-daemon answers (else: warn, and announce once one runs)", 0,
	 0, NULL, 0},
	{0},
};

static int init(tlcm_ctx_t *ctx, void *st)
{
	node_t *n = st;
	const char *const *extra;
	size_t nextra = tlcm_param_list(ctx, "txt", &extra);
	const char **txt = calloc(nextra + 4, sizeof *txt);
	char rec[3][300];
	size_t nt = 0;
	if (!txt)
		return TLCM_ENOMEM;
	snprintf(rec[0], sizeof rec[0], "prio=%lld",
		 (long long)tlcm_param_int(ctx, "prio"));
	txt[nt++] = rec[0];
	if (*tlcm_param_str(ctx, "id")) {
		snprintf(rec[1], sizeof rec[1], "id=%s",
			 tlcm_param_str(ctx, "id"));
		txt[nt++] = rec[1];
	}
	if (tlcm_param_bool(ctx, "tls"))
		txt[nt++] = "tls=1";
	if (*tlcm_param_str(ctx, "path")) {
		snprintf(rec[2], sizeof rec[2], "path=%s",
			 tlcm_param_str(ctx, "path"));
		txt[nt++] = rec[2];
	}
	for (size_t i = 0; i < nextra; i++)
		txt[nt++] = extra[i];
	tlcm_announce_opts_t o = {
		.name = tlcm_param_str(ctx, "name"),
		.type = tlcm_param_str(ctx, "type"),
		.port = (int)tlcm_param_int(ctx, "port"),
		.txt = txt, .ntxt = nt, .who = tlcm_node_id(ctx)};
	char why[256];
	int rc = tlcm_announce_new(&o, tlcm_param_bool(ctx, "required"),
				   &n->a, why, sizeof why);
	free(txt);
	if (rc) {
		tlcm_error(tlcm_node_id(ctx), "%s", why);
		return rc;
	}
	tlcm_set_tick(ctx, 1000000000ull);
	return 0;
}

/* Avahi's thread does the work; the tick only ends the node when the
 * graph stops (a source without one would never finish). */
static int tick(tlcm_ctx_t *ctx, void *st, uint64_t now)
{
	(void)st; (void)now;
	return tlcm_stopping(ctx) ? TLCM_ECLOSED : 0;
}

static int describe(tlcm_ctx_t *ctx, void *st, char *buf, size_t len)
{
	node_t *n = st;
	static const char *const names[] = {"waiting", "registering",
					    "established", "failed"};
	char name[128], why[200];
	(void)ctx;
	int s = tlcm_announce_state(n->a, name, sizeof name, why, sizeof why);
	size_t at = 0;
	int w = snprintf(buf, len, "{\"state\":\"%s\",\"name\":", names[s]);
	if (w < 0 || (size_t)w >= len)
		return TLCM_ENOSPC;
	at = (size_t)w;
	if (!tlcm_json_str(buf, &at, len, name) ||
	    at + 8 >= len)
		return TLCM_ENOSPC;
	memcpy(buf + at, ",\"why\":", 7);
	at += 7;
	if (!tlcm_json_str(buf, &at, len, why) || at + 2 > len)
		return TLCM_ENOSPC;
	buf[at++] = '}';
	buf[at] = 0;
	return 0;
}

static void fini(tlcm_ctx_t *ctx, void *st)
{
	node_t *n = st;
	(void)ctx;
	tlcm_announce_free(n->a);
	n->a = NULL;
}

const tlcm_node_type_t tlcm_node_discovery_announce = {
	.name = "discovery.announce",
	.doc = "announce this core on the LAN as a DNS-SD service "
	       "(_tinylcm._tcp over mDNS, through avahi-daemon) with prio/id/"
	       "tls/path TXT records, for satellites' discovery",
	.outputs = outputs,
	.params = params,
	.state_size = sizeof(node_t),
	.init = init,
	.tick = tick,
	.describe = describe,
	.fini = fini,
};
