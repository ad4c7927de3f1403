/* core.c — `tinylcm core export`: a core's records as JSON lines. This
 * file only parses the arguments, opens the store read-only and picks the
 * output; what the records are and how they read is the core's business
 * (nodes/core/export.c), so the engine names no record kind.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/graph.h"
#include "engine/store.h"
#include "nodes/core/export.h"

/* for main.c's table of commands */
extern const char tlcm_cli_core_help[];
int tlcm_cli_core(int argc, char **argv);

const char tlcm_cli_core_help[] =
	"usage: tinylcm core export --store DIR [--kind K[,K...]] [--device ID]\n"
	"                           [--since TIME] [--out FILE] [--no-blobs]\n"
	"\n"
	"Write the records of a core's store (settings.store of\n"
	"graphs/core.yaml) as JSON lines, one {\"kind\": K, \"record\": {...}}\n"
	"per record, the record with the field names the core's HTTP API\n"
	"answers (docs/api.md, Export). Kinds, in this order: devices,\n"
	"packages, drift, samples, images, metrics, logs, feedback, models,\n"
	"telemetry (default: all). Bytes (package bodies, images, thumbnails\n"
	"as PNG, model files) come as base64, or not at all with --no-blobs.\n"
	"--device keeps one device's records (models belong to none);\n"
	"--since keeps records of that time or later (arrival at the core for\n"
	"packages, drift events, samples and images; the record's own time for\n"
	"metrics, logs, feedback, telemetry days; last seen for devices):\n"
	"nanoseconds since the epoch, a UTC date or time (2026-01-31,\n"
	"2026-01-31T12:00:00Z), or a duration ago (12h, 7d). --out writes to\n"
	"FILE (complete or not at all) instead of standard output; the counts\n"
	"per kind go to standard error.\n"
	"Read-only: safe while the core runs; the export shows the store as it\n"
	"was when the export opened it.\n";

static int usage_error(const char *what, const char *a)
{
	fprintf(stderr, "tinylcm core export: %s%s (see tinylcm help core)\n",
		what, a);
	return 2;
}

/* TIME of --since into ns since the epoch; false when it is none. */
static bool parse_since(const char *s, uint64_t *out)
{
	size_t n = strlen(s);
	if (n && strspn(s, "0123456789") == n) {
		errno = 0;
		char *end;
		unsigned long long v = strtoull(s, &end, 10);
		if (errno || *end)
			return false;
		*out = v;
		return true;
	}
	struct tm tm = {0};
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!end || *end) {
		memset(&tm, 0, sizeof tm);
		end = strptime(s, "%Y-%m-%d", &tm);
	}
	if (end && !*end && isdigit((unsigned char)s[0])) {
		time_t t = timegm(&tm);
		if (t < 0)
			return false;
		*out = (uint64_t)t * 1000000000ull;
		return true;
	}
	uint64_t ago;
	if (tlcm_parse_duration(s, &ago))
		return false;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull +
		       (uint64_t)ts.tv_nsec;
	*out = now > ago ? now - ago : 0;
	return true;
}

static int export(int argc, char **argv)
{
	const char *store = NULL, *out = NULL;
	tlcm_core_export_opts_t o = {0};
	char why[1024] = "";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		static const char *const valued[] = {"--store", "--kind",
						     "--device", "--since",
						     "--out", NULL};
		bool takes = false;
		for (int k = 0; valued[k]; k++) {
			size_t l = strlen(valued[k]);
			if (!strncmp(a, valued[k], l) && (!a[l] || a[l] == '=')) {
				takes = true;
				v = a[l] == '=' ? a + l + 1 :
				    i + 1 < argc ? argv[++i] : NULL;
			}
		}
		if (takes && !v)
			return usage_error(a, " needs a value");
		if (!strncmp(a, "--store", 7) && takes) {
			store = v;
		} else if (!strncmp(a, "--kind", 6) && takes) {
			if (tlcm_core_kinds_parse(v, &o.kinds, why,
						  sizeof why))
				return usage_error("--kind: ", why);
		} else if (!strncmp(a, "--device", 8) && takes) {
			o.device = v;
		} else if (!strncmp(a, "--since", 7) && takes) {
			if (!parse_since(v, &o.since_ns)) {
				fprintf(stderr, "tinylcm core export: --since "
					"'%s': want nanoseconds since the "
					"epoch, a UTC date or time "
					"(2026-01-31, 2026-01-31T12:00:00Z) or "
					"a duration ago (12h, 7d)\n", v);
				return 2;
			}
		} else if (!strncmp(a, "--out", 5) && takes) {
			out = v;
		} else if (!strcmp(a, "--no-blobs")) {
			o.no_blobs = true;
		} else {
			return usage_error("unknown argument ", a);
		}
	}
	if (!store)
		return usage_error("which store? (--store DIR)", "");
	tlcm_store_t *s = NULL;
	tlcm_store_opts_t so = {.read_only = true, .must_exist = true};
	int rc = tlcm_store_open(&s, store, &so, why, sizeof why);
	if (rc) {
		fprintf(stderr, "tinylcm core export: %s\n", why);
		return 1;
	}
	FILE *f = stdout;
	char tmp[4200] = "";
	if (out) {
		snprintf(tmp, sizeof tmp, "%s.%ld.tmp", out, (long)getpid());
		if (!(f = fopen(tmp, "w"))) {
			fprintf(stderr, "tinylcm core export: --out %s: %s\n",
				out, strerror(errno));
			tlcm_store_close(s);
			return 1;
		}
	}
	uint64_t n[TLCM_CORE_NKINDS] = {0};
	why[0] = 0;
	rc = tlcm_core_export(s, &o, f, n, why, sizeof why);
	tlcm_store_close(s);
	if (out) {
		if (fclose(f) && !rc) {
			snprintf(why, sizeof why, "%s: %s", tmp,
				 strerror(errno));
			rc = TLCM_EIO;
		}
		if (!rc && rename(tmp, out)) {
			snprintf(why, sizeof why, "--out %s: %s", out,
				 strerror(errno));
			rc = TLCM_EIO;
		}
		if (rc)
			unlink(tmp);
	}
	if (rc) {
		fprintf(stderr, "tinylcm core export: %s\n", why[0] ? why :
			tlcm_strerror(rc));
		return rc == TLCM_EINVAL ? 2 : 1; /* a bad --device */
	}
	fprintf(stderr, "exported");
	const char *sep = " ";
	for (unsigned k = 0; k < TLCM_CORE_NKINDS; k++)
		if (!o.kinds || (o.kinds & (1u << k))) {
			fprintf(stderr, "%s%s %" PRIu64, sep,
				tlcm_core_kind_name(k), n[k]);
			sep = ", ";
		}
	fprintf(stderr, "\n");
	return 0;
}

int tlcm_cli_core(int argc, char **argv)
{
	if (argc < 2) {
		fputs(tlcm_cli_core_help, stderr);
		return 2;
	}
	if (!strcmp(argv[1], "export"))
		return export(argc - 1, argv + 1);
	fprintf(stderr, "tinylcm core: no subcommand '%s' (export; see "
		"tinylcm help core)\n", argv[1]);
	return 2;
}
