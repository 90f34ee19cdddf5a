#include "util/cli.h"
#include "util/exitcodes.h"
#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

enum { KEY_HELP = 'h', KEY_VERSION = 'V' };

static const struct cli_option common_options[] = {
	{ "help", KEY_HELP, NULL, "show this help and exit" },
	{ "version", KEY_VERSION, NULL, "show the version and exit" },
	{ 0 },
};

/* For the completions: "TOOL --long-options" alone, spelled out. It is no
 * option getopt knows, so no abbreviation of another (--l for --layer)
 * turns into it. */
static const char LONG_OPTIONS[] = "--long-options";

static void add_options(struct cli *c, const struct cli_option *o, size_t *nl, size_t *ns)
{
	for (; o->name; o++) {
		c->longopts[(*nl)++] = (struct option){ o->name, o->arg ? required_argument : no_argument,
							NULL, o->key };
		if (o->key < 256) {
			c->shortopts[(*ns)++] = (char)o->key;
			if (o->arg)
				c->shortopts[(*ns)++] = ':';
		}
	}
}

void cli_init(struct cli *c, const struct cli_tool *tool)
{
	size_t nl = 0, ns = 0;

	memset(c, 0, sizeof(*c));
	c->tool = tool;
	/* no '+': options and operands mix, as GNU tools take them */
	c->shortopts[ns++] = ':';   /* report missing arguments as ':' */
	add_options(c, tool->options, &nl, &ns);
	add_options(c, common_options, &nl, &ns);
}

static void print_long_options(const struct cli_tool *t)
{
	for (const struct cli_option *o = t->options; o->name; o++)
		printf("--%s%s\n", o->name, o->arg ? "=" : "");
	printf("--help\n--version\n");
}

int cli_usage_error(const struct cli *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->error_buf)
		snprintf(c->error_buf, c->error_len, "%s", msg);
	else
		log_err("%s; see '%s --help'", msg, c->tool->name);
	return EXIT_USAGE;
}

int cli_empty_value(const struct cli *c, const char *opt, const char *want)
{
	return cli_usage_error(c, "--%s: expected %s, not an empty string", opt, want);
}

/* The long options ARG ("--NAME" or "--NAME=VALUE") names: the one it
 * spells out, else the ones it abbreviates. Up to max are kept in found;
 * returns how many there are. */
static size_t long_matches(const struct cli *c, const char *arg, const struct option **found,
			   size_t max)
{
	size_t len = strcspn(arg + 2, "="), n = 0;

	for (const struct option *o = c->longopts; o->name; o++) {
		if (strncmp(o->name, arg + 2, len))
			continue;
		if (!o->name[len]) {
			found[0] = o;
			return 1;
		}
		if (n < max)
			found[n] = o;
		n++;
	}
	return n;
}

bool cli_spells(const struct cli *c, const char *arg, const char *name)
{
	const struct option *found[1];

	return !strncmp(arg, "--", 2) && arg[2] && !strchr(arg, '=') &&
	       long_matches(c, arg, found, 1) == 1 && !strcmp(found[0]->name, name);
}

/* What is wrong with ARG, which getopt refused. */
static int refused(struct cli *c, const char *arg)
{
	const struct option *found[4];
	size_t n;

	if (strncmp(arg, "--", 2) || !arg[2])
		return arg[0] == '-' && arg[1] ? cli_usage_error(c, "unknown option '-%c'", optopt)
					      : cli_usage_error(c, "unknown option '%s'", arg);
	n = long_matches(c, arg, found, 4);
	if (n == 1 && strchr(arg, '=') && found[0]->has_arg == no_argument)
		return cli_usage_error(c, "option '--%s' takes no argument", found[0]->name);
	if (n > 1) {
		char names[256] = "";
		size_t used = 0;
		for (size_t i = 0; i < n && i < 4 && used < sizeof(names); i++)
			used += (size_t)snprintf(names + used, sizeof(names) - used, "%s--%s",
						 i ? ", " : "", found[i]->name);
		return cli_usage_error(c, "option '%.*s' is ambiguous (%s%s)", (int)strcspn(arg, "="),
				       arg, names, n > 4 ? ", ..." : "");
	}
	return cli_usage_error(c, "unknown option '%.*s'", (int)strcspn(arg, "="), arg);
}

int cli_next(struct cli *c, int argc, char **argv)
{
	int prev = optind ? optind : 1;

	if (prev == 1 && argc == 2 && !strcmp(argv[1], LONG_OPTIONS)) {
		print_long_options(c->tool);
		c->exit_code = EXIT_OK;
		optind = 2;
		return CLI_DONE;
	}
	int key = getopt_long(argc, argv, c->shortopts, c->longopts, NULL);

	switch (key) {
	case KEY_HELP:
		cli_help(c->tool, stdout);
		c->exit_code = EXIT_OK;
		return CLI_DONE;
	case KEY_VERSION:
		printf("%s %s\n", c->tool->name, UBLK_TOOLS_VERSION);
		c->exit_code = EXIT_OK;
		return CLI_DONE;
	case '?':
		c->exit_code = refused(c, argv[optind - 1 >= prev ? optind - 1 : prev]);
		return CLI_DONE;
	case ':':
		c->exit_code = cli_usage_error(c, "option '%s' needs an argument", argv[optind - 1]);
		return CLI_DONE;
	default:
		break;
	}
	/* a single value given twice is a mistake, not "the last one wins" */
	for (const struct cli_option *o = c->tool->options; o->name; o++) {
		size_t i = (size_t)(o - c->tool->options);
		if (o->key != key || !o->arg || o->repeat || i >= sizeof(c->given))
			continue;
		if (c->given[i]++) {
			c->exit_code = cli_usage_error(c, "--%s given more than once", o->name);
			return CLI_DONE;
		}
	}
	return key;
}

/* "  LEFT  help", the help wrapped at 80 columns under its first line;
 * a left column too wide for its slot puts the help on the next line. */
static void print_option_help(FILE *out, const char *left, const char *help)
{
	enum { INDENT = 29, WIDTH = 80 };
	int col = INDENT;

	if (strlen(left) > INDENT - 3)
		fprintf(out, "  %s\n%*s", left, INDENT, "");
	else
		col = fprintf(out, "  %-26s ", left);

	while (*help) {
		size_t word = strcspn(help, " ");
		if (col > INDENT && col + 1 + (int)word > WIDTH) {
			fprintf(out, "\n%*s", INDENT, "");
			col = INDENT;
		} else if (col > INDENT) {
			fputc(' ', out);
			col++;
		}
		col += fprintf(out, "%.*s", (int)word, help);
		help += word;
		help += strspn(help, " ");
	}
	fputc('\n', out);
}

void cli_help(const struct cli_tool *t, FILE *out)
{
	fprintf(out, "Usage: %s %s\n\n%s\n\nOptions:\n", t->name, t->synopsis, t->summary);
	for (int pass = 0; pass < 2; pass++) {
		const struct cli_option *o = pass ? common_options : t->options;
		for (; o->name; o++) {
			char left[64];
			if (!o->help)
				continue;
			if (o->key < 256)
				snprintf(left, sizeof(left), "-%c, --%s%s%s", o->key, o->name,
					 o->arg ? " " : "", o->arg ? o->arg : "");
			else
				snprintf(left, sizeof(left), "    --%s%s%s", o->name,
					 o->arg ? " " : "", o->arg ? o->arg : "");
			print_option_help(out, left, o->help);
		}
	}
	if (t->footer)
		fprintf(out, "\n%s", t->footer);
}

int cli_output_done(int code)
{
	int err = fflush(stdout) ? errno : 0;

	/* a tool that failed has said why (ublk-add: its output failed) */
	if (code || (!err && !ferror(stdout)))
		return code;
	/* (an earlier write's errno is gone: what it usually is) */
	log_err("writing the output to standard output: %s", err ? strerror(err) :
		"a write failed (a full disk, or a reader that went away?)");
	return EXIT_FAIL;
}
