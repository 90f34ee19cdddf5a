/* Command-line handling shared by the tools. Each tool describes its
 * options once, in a table; --help, --long-options (used by the shell
 * completions) and getopt parsing all come from that table. */
#ifndef UBLK_CLI_H
#define UBLK_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#define UBLK_TOOLS_VERSION "0.1.0"

struct cli_option {
	const char *name;       /* long name, without "--" */
	int key;                /* short letter, or a value >= 256 for long-only */
	const char *arg;        /* argument name, NULL if none */
	const char *help;
	bool repeat;            /* an option with an argument may be given again */
};

struct cli_tool {
	const char *name;
	const char *synopsis;   /* after the tool name */
	const char *summary;    /* one paragraph */
	const struct cli_option *options;  /* ends with a zeroed entry */
	const char *footer;     /* exit codes, examples; may be NULL */
};

/* Returned by cli_next when the tool should exit with cli->exit_code. */
#define CLI_DONE (-2)

struct cli {
	const struct cli_tool *tool;
	struct option longopts[48];
	char shortopts[96];
	int exit_code;
	unsigned char given[48];   /* per longopts entry: times seen */
	/* when set, usage errors go here instead of stderr (options read
	 * back from a file, whose reader says where they came from) */
	char *error_buf;
	size_t error_len;
};

void cli_init(struct cli *c, const struct cli_tool *tool);
/* Next option key, -1 at the end, or CLI_DONE after --help, --version,
 * --long-options or an error (message printed). optarg as getopt. */
int cli_next(struct cli *c, int argc, char **argv);
/* Print "tool: msg; see 'tool --help'" (or keep msg in error_buf) and
 * return EXIT_USAGE. */
int cli_usage_error(const struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_help(const struct cli_tool *t, FILE *out);
/* The tool's exit code once what it printed on stdout is flushed: a
 * report that could not be written (a full disk, a closed pipe) is no
 * success (EXIT_FAIL, said); a failure (code) stays as it was said. */
int cli_output_done(int code);
/* The usage error of an empty value of --opt where want (FILE, DIR) is
 * needed: an empty path would be the working directory, or the root. */
int cli_empty_value(const struct cli *c, const char *opt, const char *want);
/* Whether ARG is --NAME, or an abbreviation getopt reads as --NAME. */
bool cli_spells(const struct cli *c, const char *arg, const char *name);

#endif
