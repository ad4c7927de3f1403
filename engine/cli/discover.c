/* discover.c — `tinylcm discover`: the cores on the LAN as JSON lines.
 *
 * A thin wrapper over tlcm_discover() (nodes/discovery/discover.h): browse
 * DNS-SD over mDNS for --timeout seconds, print one JSON object per core,
 * best first; with --static URLs, those when mDNS finds nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/error.h"
#include "nodes/discovery/discover.h"

extern const char tlcm_cli_discover_help[];
int tlcm_cli_discover(int argc, char **argv);

const char tlcm_cli_discover_help[] =
	"usage: tinylcm discover [--timeout S] [--type TYPE] [--static URL]...\n"
	"                        [--wait] [--ipv6]\n"
	"\n"
	"Browse the LAN for TinyLCM cores (DNS-SD over mDNS through\n"
	"avahi-daemon, type _tinylcm._tcp unless --type) and print one JSON\n"
	"object per core, best first (TXT prio, then name):\n"
	"  {\"name\",\"host\",\"address\",\"port\",\"url\",\"prio\",\"tls\",\"id\",\n"
	"   \"path\",\"txt\":{KEY:VALUE},\"source\":\"mdns\"|\"static\"}\n"
	"Browsing stops after --timeout seconds (default 2), or earlier once\n"
	"Avahi has reported what it knows and a core was found (--wait: always\n"
	"the whole timeout). When none answers or Avahi is unavailable, the\n"
	"--static URLs (tcp://HOST:PORT, tls+tcp://HOST:PORT, ipc://PATH;\n"
	"repeat or separate with commas) are printed instead, in their order,\n"
	"and a warning says why. Exit status 1 when there is no core at all.\n"
	"See docs/discovery.md.\n";

static void print_core(const tlcm_disc_core_t *c)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "name", c->name);
	cJSON_AddStringToObject(o, "host", c->host);
	cJSON_AddStringToObject(o, "address", c->address);
	cJSON_AddNumberToObject(o, "port", c->port);
	cJSON_AddStringToObject(o, "url", c->url);
	cJSON_AddNumberToObject(o, "prio", c->prio);
	cJSON_AddBoolToObject(o, "tls", c->tls);
	cJSON_AddStringToObject(o, "id", c->id);
	cJSON_AddStringToObject(o, "path", c->path);
	cJSON *txt = cJSON_AddObjectToObject(o, "txt");
	char buf[sizeof c->txt];
	memcpy(buf, c->txt, sizeof buf);
	char *save = NULL;
	for (char *l = strtok_r(buf, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(l, '=');
		if (eq)
			*eq = 0;
		cJSON_AddStringToObject(txt, l, eq ? eq + 1 : "");
	}
	cJSON_AddStringToObject(o, "source", c->source == TLCM_DISC_MDNS
					     ? "mdns" : "static");
	char *s = cJSON_PrintUnformatted(o);
	if (s)
		puts(s);
	free(s);
	cJSON_Delete(o);
}

int tlcm_cli_discover(int argc, char **argv)
{
	tlcm_disc_opts_t o = {.timeout_ns = 2000000000ull};
	const char *urls[64];
	size_t nurls = 0;
	char *lists[64];
	size_t nlists = 0;
	int rc = 2;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--wait")) {
			o.wait_full = true;
			continue;
		}
		if (!strcmp(a, "--ipv6")) {
			o.ipv6 = true;
			continue;
		}
		if (strcmp(a, "--timeout") && strcmp(a, "--type") &&
		    strcmp(a, "--static")) {
			fprintf(stderr, "tinylcm discover: unknown argument "
				"'%s' (see tinylcm discover --help)\n", a);
			goto out;
		}
		if (!v) {
			fprintf(stderr, "tinylcm discover: %s needs a value\n",
				a);
			goto out;
		}
		i++;
		if (!strcmp(a, "--timeout")) {
			char *end;
			errno = 0;
			double s = strtod(v, &end);
			if (end == v || *end || errno || !(s > 0) || s > 3600) {
				fprintf(stderr, "tinylcm discover: --timeout "
					"'%s': expected seconds in (0, 3600]\n",
					v);
				goto out;
			}
			o.timeout_ns = (uint64_t)(s * 1e9);
		} else if (!strcmp(a, "--type")) {
			o.type = v;
		} else {
			if (nlists == 64 || !(lists[nlists] = strdup(v)))
				goto out;
			char *save = NULL;
			for (char *u = strtok_r(lists[nlists++], ",", &save);
			     u; u = strtok_r(NULL, ",", &save)) {
				if (nurls == 64) {
					fprintf(stderr, "tinylcm discover: "
						"more than 64 static URLs\n");
					goto out;
				}
				urls[nurls++] = u;
			}
		}
	}
	o.fallback = urls;
	o.nfallback = nurls;
	tlcm_disc_core_t *cores = calloc(64, sizeof *cores);
	if (!cores)
		goto out;
	size_t n = 0;
	char why[400];
	int r = tlcm_discover(&o, cores, 64, &n, why, sizeof why);
	if (r == TLCM_EINVAL) {
		fprintf(stderr, "tinylcm discover: %s\n", why);
	} else if (r) {
		fprintf(stderr, "tinylcm discover: no core: %s\n", why);
		rc = 1;
	} else {
		for (size_t i = 0; i < n; i++)
			print_core(&cores[i]);
		fflush(stdout);
		rc = 0;
	}
	free(cores);
out:
	for (size_t i = 0; i < nlists; i++)
		free(lists[i]);
	return rc;
}
