/* main.c — the tinylcm command line.
 *
 * `tinylcm COMMAND [ARGS]`: each command is one entry in the table below
 * with its own one-line summary and help text, so `tinylcm --help` and
 * `tinylcm help COMMAND` stay in step with what exists.
 */
#include <stdio.h>
#include <string.h>

#include "tinylcm_version.h"

typedef struct {
	const char *name;
	const char *summary;
	const char *help;
	int (*run)(int argc, char **argv);
} command_t;

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const command_t commands[] = {
	{"version", "print the version",
	 "usage: tinylcm version\n\nPrint the TinyLCM version.\n",
	 cmd_version},
	{"help", "show help for a command",
	 "usage: tinylcm help [COMMAND]\n\nShow general help, or the help of "
	 "COMMAND.\n",
	 cmd_help},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

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
	fputs(c->help, stdout);
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
			fputs(c->help, stdout);
			return 0;
		}
	return c->run(argc - 1, argv + 1);
}
