/* main.c — the tinylcm command line.
 *
 * `tinylcm COMMAND [ARGS]`: each command is one entry in the table below
 * with its summary and help text, so `tinylcm --help` and `tinylcm help
 * COMMAND` stay in step with what exists. Exit status: 0 success, 1 the
 * graph or the run failed (with a one-line reason), 2 usage error.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/cli/deploy.h"
#include "engine/graph.h"
#include "engine/log.h"
#include "engine/outbox.h"
#include "engine/profile.h"
#include "engine/sched.h"
#include "engine/store.h"
#include "nodes/nodes.h"
#include "tinylcm_version.h"

typedef struct {
	const char *name;
	const char *summary;
	const char *help;
	int (*run)(int argc, char **argv);
} command_t;

static int cmd_run(int argc, char **argv);
static int cmd_check(int argc, char **argv);
static int cmd_dot(int argc, char **argv);
static int cmd_nodes(int argc, char **argv);
static int cmd_state(int argc, char **argv);
static int cmd_outbox(int argc, char **argv);
static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);
/* `model` (engine/cli/model.c) and `core` (engine/cli/core.c) live in
 * the node groups they use, loaded on demand (nodes/registry.c). */
static int cli_model(int argc, char **argv);
static int cli_core(int argc, char **argv);
int tlcm_cli_discover(int argc, char **argv); /* engine/cli/discover.c */
extern const char tlcm_cli_discover_help[];

static const command_t commands[] = {
	{"run", "run a graph file",
	 "usage: tinylcm run FILE [--set NODE.PARAM=VALUE]... [--duration S]\n"
	 "                   [--log-level error|warn|info|debug] [--quiet]\n"
	 "                   [--headless] [--deploy-dir DIR [--grace S]]\n"
	 "                   [--standby]\n"
	 "                   [--profile LOW_POWER|BALANCED|HIGH_PERFORMANCE]\n"
	 "\n"
	 "Run the graph until every source has finished and everything has\n"
	 "drained, or until --duration seconds passed, or SIGINT/SIGTERM (which\n"
	 "stop the sources and drain; a second signal aborts). Exits 1 with\n"
	 "the reason when the graph cannot start or a node fails. Unless\n"
	 "--headless, the graph serves its introspection endpoint at\n"
	 "settings.introspect (default http://127.0.0.1:8710).\n"
	 "\n"
	 "The hardware profile (docs/profiles.md) is --profile, else\n"
	 "$TINYLCM_PROFILE, else detected from CPUs, CPU frequency and RAM;\n"
	 "it scales the defaults of workers, edge capacities, intervals and\n"
	 "batch sizes that neither the graph file nor --set gives.\n"
	 "\n"
	 "With --deploy-dir, graphs deployed from the core are swapped in\n"
	 "(docs/graphs.md, Deployment): an uploader with deploy_dir: DIR\n"
	 "leaves a new graph in DIR/pending.yaml; it is checked as `tinylcm\n"
	 "check` does (invalid: refused, the running graph goes on), the\n"
	 "running graph stops and drains, the new one starts on the same\n"
	 "store (node state carries over by node id) and is watched for\n"
	 "--grace seconds (default 30). A node failing or restarting, or the\n"
	 "graph ending with an error, in that time rolls back to the previous\n"
	 "graph; healthy, it becomes DIR/current.yaml, which later runs start\n"
	 "instead of FILE. Outcomes (applied, rolled_back, invalid) go to\n"
	 "DIR/outcomes for the uploader to report. --set and --duration\n"
	 "apply to every graph run.\n"
	 "\n"
	 "With --standby, a graph whose store is in use by another process\n"
	 "waits (checking every 0.1 s) until that process is gone and then\n"
	 "runs on the same store: a standby core taking over a primary's\n"
	 "store, its link.rx marks and its consumers' records included\n"
	 "(docs/link.md, Core failover). Not with --deploy-dir.\n",
	 cmd_run},
	{"check", "validate a graph file without running it",
	 "usage: tinylcm check FILE [--set NODE.PARAM=VALUE]... [--profile P]\n"
	 "                     [--effective]\n"
	 "\n"
	 "Load and validate FILE; print every problem as file:line:col.\n"
	 "With --effective, also print every setting, edge capacity and\n"
	 "parameter as the graph would run, each with where it came from\n"
	 "(default, profile, file, --set).\n",
	 cmd_check},
	{"dot", "print a graph file as Graphviz dot",
	 "usage: tinylcm dot FILE [--set NODE.PARAM=VALUE]...\n"
	 "\n"
	 "Print the validated graph in Graphviz's dot language (secrets are\n"
	 "masked), e.g. `tinylcm dot g.yaml | dot -Tsvg > g.svg`.\n",
	 cmd_dot},
	{"nodes", "list node types, or describe one",
	 "usage: tinylcm nodes [TYPE]\n"
	 "\n"
	 "Without TYPE, list every node type. With TYPE, show its ports (with\n"
	 "message types), parameters (type, default, range, run-time flag)\n"
	 "and docs.\n",
	 cmd_nodes},
	{"state", "inspect, check or roll back a graph's state store",
	 "usage: tinylcm state ls STORE\n"
	 "       tinylcm state show STORE NODE [VERSION]\n"
	 "       tinylcm state records STORE NODE\n"
	 "       tinylcm state rollback STORE NODE VERSION\n"
	 "       tinylcm state check STORE\n"
	 "\n"
	 "ls lists every kept snapshot (node, version, time, group, size,\n"
	 "reason, integrity); show prints one (the newest by default) with a\n"
	 "hex dump; records lists a node's records (key, bytes: state it\n"
	 "writes a piece at a time, e.g. the quarantine's samples); rollback\n"
	 "makes VERSION the newest again (its whole group if it was a group\n"
	 "snapshot) and refuses while a graph holds the store; check\n"
	 "verifies every snapshot's checksum and every outbox package's\n"
	 "(exit 1 on any problem). ls, show, records and check also work\n"
	 "while the graph runs.\n",
	 cmd_state},
	{"outbox", "list a store's outbox and dead letters",
	 "usage: tinylcm outbox ls STORE\n"
	 "       tinylcm outbox dead STORE\n"
	 "       tinylcm outbox stats STORE\n"
	 "\n"
	 "The packages a graph keeps for its uploader (docs/durability.md).\n"
	 "ls lists the queued packages in the order they are sent (priority,\n"
	 "then age): id, priority, kind, created time, bytes; dead lists the\n"
	 "packages the core refused for good, with its reason; stats prints\n"
	 "counts and bytes (by priority), the oldest package's time, dead\n"
	 "letters and packages evicted by retention since the store was\n"
	 "made. Read-only: safe while the graph runs (it shows the store as\n"
	 "it was when opened). `tinylcm state check` verifies the packages.\n",
	 cmd_outbox},
	{"model", "inspect, run or import a model (.tlm, .tflite)",
	 "usage: tinylcm model info FILE\n"
	 "       tinylcm model run FILE [--output NAME]... [--threads N]\n"
	 "                        [--batch N] (--idx IMAGES [--start N]\n"
	 "                        [--count N] | --input RAW.f32)\n"
	 "       tinylcm model import IN.tflite -o OUT.tlm\n"
	 "       tinylcm model keygen --key-id ID -o PREFIX\n"
	 "       tinylcm model sign FILE --name NAME --version N --key "
	 "PREFIX.key\n"
	 "                          [--expires-in 30d | --expires-s S]\n"
	 "                          [--created-s S] [--url URL]\n"
	 "       tinylcm model verify FILE --offer OFFER.json --keys KEYS.pub\n"
	 "\n"
	 "FILE is a .tlm model or a float32 .tflite one (converted on load).\n"
	 "info prints the tensors, ops, input and outputs, the parameter\n"
	 "count and the preprocessing. run feeds inputs through the XNNPACK\n"
	 "runtime (--threads threads, --batch inputs per run) and prints one\n"
	 "JSON line per input, {\"index\":I,\"NAME\":[v,...],...} with floats\n"
	 "as %.9g (null for NaN/inf), for every model output or those named\n"
	 "by --output. Inputs: --idx, an IDX image file (gzip or plain,\n"
	 "e.g. Fashion-MNIST's t10k-images-idx3-ubyte.gz) preprocessed with\n"
	 "the model's scale/mean/std, images --start.. (default 0) for\n"
	 "--count images (default all); or --input, little-endian float32\n"
	 "holding K whole input tensors, already preprocessed. import\n"
	 "converts a .tflite file to .tlm and checks the result loads.\n"
	 "keygen makes an Ed25519 key pair (PREFIX.key for the core,\n"
	 "PREFIX.pub for devices); sign prints a file's signed update offer\n"
	 "as the core serves it; verify runs a device's checks on an offer\n"
	 "and a file (docs/models.md, Signed updates).\n"
	 "Exits 1 with a message naming the file, tensor or op on failure.\n",
	 cli_model},
	{"core", "export a core's records as JSON lines",
	 NULL /* tlcm_cli_core_help in the net group */, cli_core},
	{"discover", "find cores on the LAN (DNS-SD over mDNS)",
	 tlcm_cli_discover_help, tlcm_cli_discover},
	{"version", "print the version",
	 "usage: tinylcm version\n\nPrint the TinyLCM version.\n", cmd_version},
	{"help", "show help for a command",
	 "usage: tinylcm help [COMMAND]\n\nShow general help, or the help of "
	 "COMMAND.\n",
	 cmd_help},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* Call function sym of node group `group` (exit 1 when it cannot load). */
static int group_call(const char *group, const char *sym, int argc,
		      char **argv)
{
	void *h = tlcm_nodes_module(group);
	int (*fn)(int, char **) = NULL;
	if (h)
		*(void **)&fn = dlsym(h, sym);
	if (!fn) {
		fprintf(stderr, "tinylcm %s: node group '%s' is not available"
			"\n", argv[0], group);
		return 1;
	}
	return fn(argc, argv);
}

static int cli_model(int argc, char **argv)
{
	return group_call("features", "tlcm_cli_model", argc, argv);
}

static int cli_core(int argc, char **argv)
{
	return group_call("net", "tlcm_cli_core", argc, argv);
}

static const command_t *find(const char *name);

/* A command's help text (the core's comes from its group). */
static const char *help_of(const command_t *c)
{
	if (c->help)
		return c->help;
	void *h = tlcm_nodes_module("net");
	const char *t = h ? dlsym(h, "tlcm_cli_core_help") : NULL;
	return t ? t : "tinylcm core: the net node group is not available\n";
}

static const command_t *find(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tinylcm [--help] [--version] COMMAND [ARGS]\n"
		"\n"
		"TinyLCM runs machine-learning lifecycles on edge devices as\n"
		"declarative dataflow graphs.\n"
		"\n"
		"Commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name,
			commands[i].summary);
	fprintf(f, "\nRun `tinylcm help COMMAND` for a command's options.\n");
}

/* Options shared by run/check/dot. */
typedef struct {
	const char *file;
	const char **sets;
	size_t nsets;
	double duration;
	bool quiet;
	bool headless;
	bool standby;          /* run --standby */
	bool effective;         /* check --effective */
	const char *profile;    /* --profile */
	const char *deploy_dir; /* run --deploy-dir */
	double grace;           /* run --grace (s); < 0: not given */
} opts_t;

static int parse_opts(const char *cmd, int argc, char **argv, opts_t *o,
		      bool run)
{
	memset(o, 0, sizeof *o);
	o->grace = -1;
	o->sets = calloc((size_t)argc, sizeof *o->sets);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--set") || !strncmp(a, "--set=", 6)) {
			const char *v = a[5] == '=' ? a + 6
				       : i + 1 < argc ? argv[++i] : NULL;
			if (!v) {
				fprintf(stderr, "tinylcm %s: --set needs "
					"NODE.PARAM=VALUE\n", cmd);
				return 2;
			}
			o->sets[o->nsets++] = v;
		} else if (run && !strcmp(a, "--duration") && i + 1 < argc) {
			char *end;
			o->duration = strtod(argv[++i], &end);
			if (*end || !(o->duration > 0)) {
				fprintf(stderr, "tinylcm run: --duration wants "
					"seconds > 0, got '%s'\n", argv[i]);
				return 2;
			}
		} else if (run && !strcmp(a, "--log-level") && i + 1 < argc) {
			int l = tlcm_log_parse_level(argv[++i]);
			if (l < 0) {
				fprintf(stderr, "tinylcm run: --log-level is "
					"error, warn, info or debug\n");
				return 2;
			}
			tlcm_log_level = l;
		} else if (run && !strcmp(a, "--deploy-dir") && i + 1 < argc) {
			o->deploy_dir = argv[++i];
			if (!*o->deploy_dir) {
				fprintf(stderr, "tinylcm run: --deploy-dir "
					"wants a directory\n");
				return 2;
			}
		} else if (run && !strcmp(a, "--grace") && i + 1 < argc) {
			char *end;
			o->grace = strtod(argv[++i], &end);
			if (*end || !(o->grace >= 0) || o->grace > 86400) {
				fprintf(stderr, "tinylcm run: --grace wants "
					"seconds from 0 to 86400, got '%s'\n",
					argv[i]);
				return 2;
			}
		} else if (!strcmp(a, "--profile") && i + 1 < argc) {
			o->profile = argv[++i];
		} else if (!strcmp(cmd, "check") && !strcmp(a, "--effective")) {
			o->effective = true;
		} else if (run && !strcmp(a, "--headless")) {
			o->headless = true;
		} else if (run && !strcmp(a, "--standby")) {
			o->standby = true;
		} else if (run && !strcmp(a, "--quiet")) {
			o->quiet = true;
			tlcm_log_level = TLCM_LOG_WARN;
		} else if (!strcmp(a, "--profile")) {
			fprintf(stderr, "tinylcm %s: --profile needs LOW_POWER, "
				"BALANCED or HIGH_PERFORMANCE\n", cmd);
			return 2;
		} else if (run && (!strcmp(a, "--duration") ||
				   !strcmp(a, "--log-level") ||
				   !strcmp(a, "--deploy-dir") ||
				   !strcmp(a, "--grace"))) {
			fprintf(stderr, "tinylcm %s: %s needs a value\n", cmd, a);
			return 2;
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "tinylcm %s: unknown option %s (see "
				"tinylcm help %s)\n", cmd, a, cmd);
			return 2;
		} else if (o->file) {
			fprintf(stderr, "tinylcm %s: one graph file at a time\n",
				cmd);
			return 2;
		} else {
			o->file = a;
		}
	}
	if (!o->file) {
		fprintf(stderr, "tinylcm %s: which graph file? (see tinylcm "
			"help %s)\n", cmd, cmd);
		return 2;
	}
	char why[200];
	if (tlcm_profile_select(o->profile, why, sizeof why)) {
		fprintf(stderr, "tinylcm %s: %s\n", cmd, why);
		return 2;
	}
	if (o->grace >= 0 && !o->deploy_dir) {
		fprintf(stderr, "tinylcm %s: --grace goes with --deploy-dir\n",
			cmd);
		return 2;
	}
	if (o->standby && o->deploy_dir) {
		fprintf(stderr, "tinylcm %s: --standby does not go with "
			"--deploy-dir\n", cmd);
		return 2;
	}
	return 0;
}

static int load(const opts_t *o, tlcm_registry_t *reg, tlcm_graph_t **g)
{
	int rc = tlcm_builtin_nodes(reg);
	if (rc) {
		fprintf(stderr, "tinylcm: cannot register node types: %s\n",
			tlcm_strerror(rc));
		return 1;
	}
	tlcm_diag_t d = {0};
	rc = tlcm_graph_load(g, o->file, reg, o->sets, o->nsets, &d);
	if (rc) {
		tlcm_diag_print(&d, stderr);
		fprintf(stderr, "tinylcm: %s: %zu problem%s, not started\n",
			o->file, d.n, d.n == 1 ? "" : "s");
	}
	tlcm_diag_fini(&d);
	return rc ? 1 : 0;
}

/* Load the graph named on the command line and hand it to show(). */
static int with_graph(const char *cmd, int argc, char **argv,
		      void (*show)(const opts_t *, const tlcm_graph_t *))
{
	opts_t o;
	int rc = parse_opts(cmd, argc, argv, &o, false);
	tlcm_registry_t reg = {0};
	tlcm_graph_t *g = NULL;
	if (!rc && !(rc = load(&o, &reg, &g)))
		show(&o, g);
	tlcm_graph_free(g);
	tlcm_registry_fini(&reg);
	free(o.sets);
	return rc;
}

static void show_ok(const opts_t *o, const tlcm_graph_t *g)
{
	printf("%s: ok (graph '%s': %zu nodes, %zu edges)\n", o->file,
	       g->name, g->nnodes, g->nedges);
	if (o->effective)
		tlcm_graph_print_effective(g, stdout);
}

static void show_dot(const opts_t *o, const tlcm_graph_t *g)
{
	(void)o;
	tlcm_graph_dot(g, stdout);
}

static int cmd_check(int argc, char **argv)
{
	return with_graph("check", argc, argv, show_ok);
}

static int cmd_dot(int argc, char **argv)
{
	return with_graph("dot", argc, argv, show_dot);
}

/* run --deploy-dir: the runner swaps graphs (engine/cli/deploy.c) */
static int run_deployed(const opts_t *o)
{
	tlcm_registry_t reg = {0};
	int rc = tlcm_builtin_nodes(&reg);
	if (rc) {
		fprintf(stderr, "tinylcm: cannot register node types: %s\n",
			tlcm_strerror(rc));
		tlcm_registry_fini(&reg);
		return 1;
	}
	tlcm_cli_deploy_opts_t d = {
		.file = o->file, .dir = o->deploy_dir,
		.grace = o->grace >= 0 ? o->grace : 30,
		.sets = o->sets, .nsets = o->nsets, .duration = o->duration,
		.quiet = o->quiet, .headless = o->headless, .reg = &reg};
	/* the runner (engine/cli/deploy.c) lives in the net group, with
	 * the uploader's deployment files it reads */
	void *h = tlcm_nodes_module("net");
	int (*deploy_run)(const tlcm_cli_deploy_opts_t *) = NULL;
	if (h)
		*(void **)&deploy_run = dlsym(h, "tlcm_cli_deploy_run");
	rc = deploy_run ? deploy_run(&d) : 1;
	tlcm_registry_fini(&reg);
	return rc;
}

static int cmd_run(int argc, char **argv)
{
	opts_t o;
	int rc = parse_opts("run", argc, argv, &o, true);
	tlcm_registry_t reg = {0};
	tlcm_graph_t *g = NULL;
	if (!rc && o.deploy_dir) {
		rc = run_deployed(&o);
	} else if (!rc && !(rc = load(&o, &reg, &g))) {
		tlcm_run_opts_t ro = {.duration_s = o.duration,
				      .handle_signals = true,
				      .quiet = o.quiet,
				      .headless = o.headless,
				      .standby = o.standby};
		tlcm_run_result_t res;
		char prof[256];
		tlcm_profile_describe(prof, sizeof prof);
		tlcm_info(g->name, "running %s (%zu nodes, %zu edges%s; "
			  "profile %s)", o.file, g->nnodes, g->nedges,
			  o.headless ? ", headless" : "", prof);
		int st = tlcm_graph_run(g, &ro, &res);
		if (st) {
			fprintf(stderr, "tinylcm: graph '%s' failed: %s\n",
				g->name, res.why[0] ? res.why
						    : tlcm_strerror(st));
			rc = 1;
		} else {
			tlcm_info(g->name, "finished in %.3f s (CPU %.3f s)",
				  res.seconds, res.cpu_seconds);
		}
		tlcm_run_result_fini(&res);
	}
	tlcm_graph_free(g);
	tlcm_registry_fini(&reg);
	free(o.sets);
	return rc;
}

static void describe(const tlcm_node_type_t *t)
{
	printf("%s — %s\n", t->name, t->doc ? t->doc : "");
	printf("\ninputs:\n");
	for (size_t i = 0; t->inputs && t->inputs[i].name; i++)
		printf("  %-12s %-12s %s%s\n", t->inputs[i].name,
		       t->inputs[i].types, t->inputs[i].doc ? t->inputs[i].doc : "",
		       t->inputs[i].flags & TLCM_PORT_OPTIONAL ? " (optional)"
							      : "");
	printf("  %-12s %-12s %s\n", TLCM_CONTROL_PORT, "CTRL",
	       "set run-time parameters, reload, snapshot, roll back (every "
	       "node; optional)");
	printf("\noutputs:\n");
	if (!t->outputs || !t->outputs[0].name)
		printf("  (none)\n");
	for (size_t i = 0; t->outputs && t->outputs[i].name; i++)
		printf("  %-12s %-12s %s\n", t->outputs[i].name,
		       t->outputs[i].types,
		       t->outputs[i].doc ? t->outputs[i].doc : "");
	printf("\nparameters:\n");
	if (!t->params || !t->params[0].name)
		printf("  (none)\n");
	for (size_t i = 0; t->params && t->params[i].name; i++) {
		const tlcm_param_desc_t *p = &t->params[i];
		printf("  %-12s %-9s ", p->name, tlcm_param_type_name(p->type));
		if (!p->def)
			printf("(required)");
		else if (p->type == TLCM_P_SECRET)
			printf("default ***");
		else
			printf("default '%s'", p->def);
		if (p->min != 0 || p->max != 0)
			printf(", range %g..%g", p->min, p->max);
		if (p->choices)
			printf(", one of %s", p->choices);
		if (p->flags & TLCM_PARAM_RUNTIME)
			printf(", run-time");
		printf("\n               %s\n", p->doc ? p->doc : "");
	}
}

static int cmd_nodes(int argc, char **argv)
{
	tlcm_registry_t reg = {0};
	int rc = tlcm_builtin_nodes(&reg);
	if (rc) {
		fprintf(stderr, "tinylcm: cannot register node types: %s\n",
			tlcm_strerror(rc));
		return 1;
	}
	if (argc > 2) {
		fprintf(stderr, "tinylcm nodes: one type at a time\n");
		rc = 2;
	} else if (argc == 2) {
		const tlcm_node_type_t *t = tlcm_registry_find(&reg, argv[1]);
		if (t) {
			describe(t);
		} else {
			const char *cands[256];
			size_t n = 0;
			tlcm_nodes_load_all(&reg);
			for (size_t i = 0; i < reg.n && n < 256; i++)
				cands[n++] = reg.types[i]->name;
			const char *s = tlcm_suggest(argv[1], cands, n);
			fprintf(stderr, "tinylcm nodes: no node type '%s'%s%s%s\n",
				argv[1], s ? " (did you mean '" : "", s ? s : "",
				s ? "'?)" : "");
			rc = 1;
		}
	} else {
		if (tlcm_nodes_load_all(&reg))
			rc = 1; /* listed what there is; the log says why */
		for (size_t i = 0; i < reg.n; i++)
			printf("%-12s %s\n", reg.types[i]->name,
			       reg.types[i]->doc ? reg.types[i]->doc : "");
	}
	tlcm_registry_fini(&reg);
	return rc;
}

static void print_time(uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;
	gmtime_r(&t, &tm);
	printf("%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
	       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int open_store(const char *path, bool write, tlcm_store_t **s)
{
	char why[700];
	tlcm_store_opts_t o = {.read_only = !write, .must_exist = true};
	int rc = tlcm_store_open(s, path, &o, why, sizeof why);
	if (rc == TLCM_EBUSY && write)
		fprintf(stderr, "tinylcm state: refusing: %s; stop the graph "
			"first\n", why);
	else if (rc)
		fprintf(stderr, "tinylcm state: %s\n", why);
	return rc ? 1 : 0;
}

static int parse_version(const char *a, uint64_t *v)
{
	char *end;
	unsigned long long x = strtoull(a, &end, 10);
	if (*end || end == a || x == 0) {
		fprintf(stderr, "tinylcm state: '%s' is not a version number "
			"(1, 2, ...; see tinylcm state ls)\n", a);
		return 2;
	}
	*v = x;
	return 0;
}

/* One record: its key (without "rec/", bytes outside ASCII escaped)
 * and size; tot counts records and bytes. */
static int print_record(void *arg, const void *key, size_t klen,
			const void *val, size_t vlen)
{
	size_t *tot = arg;
	(void)val;
	char k[48];
	size_t at = 0;
	for (size_t i = 4; i < klen && at + 5 < sizeof k; i++) {
		unsigned char c = ((const unsigned char *)key)[i];
		at += (size_t)snprintf(k + at, sizeof k - at,
				       c >= 32 && c < 127 ? "%c" : "\\x%02x",
				       c);
	}
	k[at] = 0;
	printf("%-40s %10zu\n", k, vlen);
	tot[0]++;
	tot[1] += vlen;
	return 0;
}

static int cmd_state(int argc, char **argv)
{
	if (argc < 3) {
		fputs(find("state")->help, stderr);
		return 2;
	}
	const char *sub = argv[1], *path = argv[2];
	tlcm_store_t *s = NULL;
	int rc = 0;
	if (!strcmp(sub, "ls") && argc == 3) {
		if ((rc = open_store(path, false, &s)))
			return rc;
		tlcm_snap_info_t *l;
		size_t n;
		if (tlcm_store_list(s, NULL, &l, &n) == 0) {
			printf("%-16s %8s  %-20s %6s %10s  %-8s %s\n", "NODE",
			       "VERSION", "TIME", "GROUP", "BYTES", "OK",
			       "REASON");
			for (size_t i = 0; i < n; i++) {
				printf("%-16s %8llu  ", l[i].node,
				       (unsigned long long)l[i].version);
				print_time(l[i].time_ns);
				printf(" %6llu %10zu  %-8s %s\n",
				       (unsigned long long)l[i].group, l[i].size,
				       l[i].intact ? "ok" : "CORRUPT",
				       l[i].reason);
			}
			free(l);
		}
	} else if (!strcmp(sub, "records") && argc == 4) {
		if ((rc = open_store(path, false, &s)))
			return rc;
		char fam[128];
		snprintf(fam, sizeof fam, "node/%s", argv[3]);
		size_t tot[2] = {0, 0};
		printf("%-40s %10s\n", "KEY", "BYTES");
		if (tlcm_store_scan(s, fam, "rec/", 4, print_record, tot))
			rc = 1;
		printf("%zu records, %zu bytes\n", tot[0], tot[1]);
	} else if (!strcmp(sub, "show") && (argc == 4 || argc == 5)) {
		uint64_t v = 0;
		if (argc == 5 && (rc = parse_version(argv[4], &v)))
			return rc;
		if ((rc = open_store(path, false, &s)))
			return rc;
		void *d;
		size_t len;
		tlcm_snap_info_t info;
		int lr = tlcm_store_load(s, argv[3], v, &d, &len, &info);
		if (lr) {
			fprintf(stderr, "tinylcm state: %s: node %s%s%s: %s\n",
				path, argv[3], v ? " version " : "",
				v ? argv[4] : "", lr == TLCM_ENOENT
						 ? "no such snapshot"
						 : tlcm_strerror(lr));
			rc = 1;
		} else {
			printf("node     %s\nversion  %llu\ntime     ",
			       info.node, (unsigned long long)info.version);
			print_time(info.time_ns);
			printf("\ngroup    %llu\nreason   %s\nbytes    %zu\n",
			       (unsigned long long)info.group, info.reason, len);
			if (len >= 8)
				printf("type     %.4s (FlatBuffers identifier, "
				       "if any)\n", (const char *)d + 4);
			const unsigned char *b = d;
			for (size_t i = 0; i < len && i < 256; i += 16) {
				printf("%04zx ", i);
				for (size_t j = i; j < i + 16 && j < len; j++)
					printf(" %02x", b[j]);
				printf("\n");
			}
			if (len > 256)
				printf("... (%zu more bytes)\n", len - 256);
			free(d);
		}
	} else if (!strcmp(sub, "rollback") && argc == 5) {
		uint64_t v, nv = 0;
		if ((rc = parse_version(argv[4], &v)))
			return rc;
		if ((rc = open_store(path, true, &s)))
			return rc;
		int rr = tlcm_store_rollback(s, argv[3], v, &nv);
		if (rr) {
			fprintf(stderr, "tinylcm state: rollback of %s to version "
				"%s in %s failed: %s\n", argv[3], argv[4], path,
				rr == TLCM_ENOENT ? "no such snapshot"
						  : tlcm_strerror(rr));
			rc = 1;
		} else {
			printf("%s: rolled back to version %llu (now version "
			       "%llu)\n", argv[3], (unsigned long long)v,
			       (unsigned long long)nv);
		}
	} else if (!strcmp(sub, "check") && argc == 3) {
		if ((rc = open_store(path, false, &s)))
			return rc;
		char report[8192];
		int problems = tlcm_store_check(s, report, sizeof report);
		if (problems < 0) {
			fprintf(stderr, "tinylcm state: %s: check failed: %s\n",
				path, tlcm_strerror(problems));
			rc = 1;
		} else if (problems) {
			fputs(report, stdout);
			printf("%s: %d problem%s\n", path, problems,
			       problems == 1 ? "" : "s");
			rc = 1;
		} else {
			printf("%s: ok\n", path);
		}
	} else {
		fprintf(stderr, "tinylcm state: bad arguments (see tinylcm help "
			"state)\n");
		return 2;
	}
	tlcm_store_close(s);
	return rc;
}

/* One queued package or dead letter; tot counts them and their bytes. */
static int print_package(void *arg, const tlcm_outbox_entry_t *e,
			 const char *reason)
{
	uint64_t *tot = arg;
	printf("%-36s %4u  %-18s ", e->id, e->priority, e->kind);
	print_time(e->created_ns);
	printf(" %10zu", e->size);
	if (reason) {
		/* the server's words: one line, nothing to move a terminal */
		putchar(' ');
		putchar(' ');
		for (const char *c = reason; *c; c++)
			putchar((unsigned char)*c >= 32 && *c != 127 ? *c
								 : ' ');
	}
	putchar('\n');
	tot[0]++;
	tot[1] += e->size;
	return 0;
}

static int cmd_outbox(int argc, char **argv)
{
	if (argc != 3) {
		fputs(find("outbox")->help, stderr);
		return 2;
	}
	const char *sub = argv[1], *path = argv[2];
	bool dead = !strcmp(sub, "dead");
	if (!dead && strcmp(sub, "ls") && strcmp(sub, "stats")) {
		fprintf(stderr, "tinylcm outbox: no subcommand '%s' (ls, dead, "
			"stats; see tinylcm help outbox)\n", sub);
		return 2;
	}
	tlcm_store_t *s;
	int rc = open_store(path, false, &s);
	if (rc)
		return rc;
	tlcm_outbox_t *o = tlcm_store_outbox(s);
	int orc = o ? 0 : TLCM_ENOMEM;
	if (!orc && !strcmp(sub, "stats")) {
		tlcm_outbox_stats_t st;
		orc = tlcm_outbox_stats(o, &st);
		if (!orc) {
			printf("packages   %llu\nbytes      %llu\n",
			       (unsigned long long)st.packages,
			       (unsigned long long)st.bytes);
			for (int p = 1; p < 8; p++)
				if (st.by_priority[p])
					printf("priority %d %llu\n", p,
					       (unsigned long long)
						       st.by_priority[p]);
			if (st.by_priority[0])
				printf("priority>7 %llu\n",
				       (unsigned long long)st.by_priority[0]);
			printf("oldest     ");
			if (st.oldest_ns)
				print_time(st.oldest_ns);
			else
				printf("-");
			printf("\ndead       %llu\nevicted    %llu\n",
			       (unsigned long long)st.dead,
			       (unsigned long long)st.evicted);
		}
	} else if (!orc) {
		uint64_t tot[2] = {0, 0};
		printf("%-36s %4s  %-18s %-20s %10s%s\n", "ID", "PRIO", "KIND",
		       "CREATED", "BYTES", dead ? "  REASON" : "");
		orc = tlcm_outbox_list(o, dead, print_package, tot);
		printf("%llu %s, %llu bytes\n", (unsigned long long)tot[0],
		       dead ? (tot[0] == 1 ? "dead letter" : "dead letters")
			    : (tot[0] == 1 ? "package" : "packages"),
		       (unsigned long long)tot[1]);
	}
	if (orc) {
		fprintf(stderr, "tinylcm outbox: %s: %s\n", path,
			tlcm_strerror(orc));
		rc = 1;
	}
	tlcm_store_close(s);
	return rc;
}

static int cmd_version(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "tinylcm version: takes no arguments\n");
		return 2;
	}
	printf("tinylcm %s\n", TINYLCM_VERSION);
	return 0;
}

static int cmd_help(int argc, char **argv)
{
	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	const command_t *c = find(argv[1]);
	if (!c) {
		fprintf(stderr, "tinylcm: no command '%s' (see tinylcm --help)\n",
			argv[1]);
		return 2;
	}
	fputs(help_of(c), stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *a = argv[1];
	if (!strcmp(a, "-h") || !strcmp(a, "--help"))
		return cmd_help(1, argv);
	if (!strcmp(a, "-V") || !strcmp(a, "--version"))
		return cmd_version(1, argv);
	const command_t *c = find(a);
	if (!c) {
		fprintf(stderr, "tinylcm: unknown command '%s' (see tinylcm "
			"--help)\n", a);
		return 2;
	}
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(help_of(c), stdout);
			return 0;
		}
	return c->run(argc - 1, argv + 1);
}
