#include "host/pool_view.h"
#include "kernel/ctrl.h"
#include "util/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum column {
	COL_DEVICE, COL_ID, COL_NAME, COL_KERNEL, COL_STATE, COL_PID, COL_UP, COL_SIZE, COL_RO,
	COL_QUEUES, COL_DEPTH, COL_LAYERS, COL_CACHE, COL_CACHE_USED, COL_BASE, COL_READS,
	COL_WRITES, COL_ERRORS, COL_PREFETCH, COL_PREFETCH_HITS, COL_PROBLEM,
};

static const struct {
	const char *name;
	bool right;             /* numbers align right */
} columns[] = {
	[COL_DEVICE] = { "DEVICE" }, [COL_ID] = { "ID", true }, [COL_NAME] = { "NAME" },
	[COL_KERNEL] = { "KERNEL" }, [COL_STATE] = { "STATE" }, [COL_PID] = { "PID", true },
	[COL_UP] = { "UP", true }, [COL_SIZE] = { "SIZE", true }, [COL_RO] = { "RO", true },
	[COL_QUEUES] = { "QUEUES", true }, [COL_DEPTH] = { "DEPTH", true },
	[COL_LAYERS] = { "LAYERS", true }, [COL_CACHE] = { "CACHE" },
	[COL_CACHE_USED] = { "CACHE-USED", true }, [COL_BASE] = { "BASE" },
	[COL_READS] = { "READS", true }, [COL_WRITES] = { "WRITES", true },
	[COL_ERRORS] = { "ERRORS", true }, [COL_PREFETCH] = { "PREFETCH", true },
	[COL_PREFETCH_HITS] = { "PREFETCH-HITS", true }, [COL_PROBLEM] = { "PROBLEM" },
};
#define N_COLUMNS (int)(sizeof(columns) / sizeof(columns[0]))

int pool_view_columns(struct pool_view *v, const char *names, char *why, size_t len)
{
	v->n_cols = 0;
	for (const char *p = names; *p;) {
		size_t n = strcspn(p, ",");
		int c = 0;
		while (c < N_COLUMNS && (strlen(columns[c].name) != n || strncasecmp(columns[c].name, p, n)))
			c++;
		if (v->n_cols == POOL_VIEW_MAX_COLUMNS)
			return snprintf(why, len, "at most %d columns", POOL_VIEW_MAX_COLUMNS), -EINVAL;
		if (c == N_COLUMNS) {
			size_t used = (size_t)snprintf(why, len, "unknown column '%.*s' (known:", (int)(n > 32 ? 32 : n), p);
			for (int k = 0; k < N_COLUMNS && used < len; k++)
				used += (size_t)snprintf(why + used, len - used, " %s", columns[k].name);
			if (used < len)
				snprintf(why + used, len - used, ")");
			return -EINVAL;
		}
		v->cols[v->n_cols++] = c;
		p += n + (p[n] == ',');
	}
	if (!v->n_cols)
		return snprintf(why, len, "no columns given"), -EINVAL;
	return 0;
}

/* part of all, in whole percent ("-" when all is 0) */
static void percent(uint64_t part, uint64_t all, char *buf, size_t len)
{
	if (!all)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%llu%%", (unsigned long long)(part >= all ? 100 : part * 100 / all));
}

/* lsblk-style sizes: 512B, 64M, 1.5G */
static void short_size(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "BKMGTPE";
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 6) {
		v /= 1024;
		u++;
	}
	if (u && v < 10 && v != (double)(uint64_t)v)
		snprintf(buf, len, "%.1f%c", v, units[u]);
	else
		snprintf(buf, len, "%.0f%c", v, units[u]);
}

static void cell(const struct pool_view *v, const struct pool_dev *d, int col, char *buf, size_t len)
{
	const struct pool_stats *st = &d->stat;
	const char *s = NULL;

	switch ((enum column)col) {
	case COL_DEVICE:
		snprintf(buf, len, "/dev/ublkb%u", d->id);
		return;
	case COL_ID:
		snprintf(buf, len, "%u", d->id);
		return;
	case COL_NAME:
		s = d->name;
		break;
	case COL_KERNEL:
		s = ctrl_state_name(d->kernel_state);
		break;
	case COL_STATE:
		s = d->has_state ? d->state : "(none)";
		break;
	case COL_PID:
		if (d->pid > 0)
			snprintf(buf, len, "%d%s", (int)d->pid, d->alive ? "" : "!");
		else
			snprintf(buf, len, "-");
		return;
	case COL_UP:
		if (!d->has_state)
			snprintf(buf, len, "-");
		else
			snprintf(buf, len, d->uptime_s >= 3600 ? "%lluh" : d->uptime_s >= 60 ? "%llum" : "%llus",
				 (unsigned long long)(d->uptime_s >= 3600 ? d->uptime_s / 3600 :
						      d->uptime_s >= 60 ? d->uptime_s / 60 : d->uptime_s));
		return;
	case COL_SIZE:
		if (d->size)
			short_size(d->size, buf, len);
		else
			snprintf(buf, len, "-");
		return;
	case COL_RO:
		snprintf(buf, len, "%d", d->read_only);
		return;
	case COL_QUEUES:
		snprintf(buf, len, "%u", d->queues);
		return;
	case COL_DEPTH:
		snprintf(buf, len, "%u", d->depth);
		return;
	case COL_LAYERS:
		snprintf(buf, len, "%u", d->n_layers);
		return;
	case COL_CACHE:
		s = d->cache;
		break;
	case COL_CACHE_USED:
		if (d->has_cache_bytes)
			short_size(d->cache_bytes, buf, len);
		else
			snprintf(buf, len, "-");
		return;
	case COL_BASE:
		if (d->e2b_root[0])
			snprintf(buf, len, "%s build %s", d->e2b_root, d->e2b_build);
		else
			s = d->base;
		break;
	case COL_READS:
	case COL_WRITES:
	case COL_ERRORS:
		if (!st->valid)
			snprintf(buf, len, "-");
		else
			snprintf(buf, len, "%llu", (unsigned long long)(col == COL_READS ? st->reads :
					 col == COL_WRITES ? st->writes : st->errors));
		return;
	case COL_PREFETCH:      /* --prefetch, else --prefetch-trace */
		percent(st->prefetch_total ? st->prefetch_done : st->trace_done,
			st->prefetch_total ? st->prefetch_total : st->trace_total, buf, len);
		return;
	case COL_PREFETCH_HITS:
		percent(st->trace_hits, st->trace_total ? st->trace_reads : 0, buf, len);
		return;
	case COL_PROBLEM:
		s = pool_problem(d, v->grace_s);
		break;
	}
	snprintf(buf, len, "%s", s && *s ? s : "-");
}

/* raw: bytes that would split or break a line as \xHH, as lsblk --raw does */
static void put_raw(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c <= ' ' || c == '\\' || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
}

#define CELL_MAX 4200

void pool_view_table(FILE *f, const struct pool_view *v, const struct pool_dev *devs, int n)
{
	size_t width[POOL_VIEW_MAX_COLUMNS] = { 0 };
	char *buf = malloc(CELL_MAX);

	if (!buf)
		return;
	for (int c = 0; c < v->n_cols; c++)
		width[c] = v->headings ? strlen(columns[v->cols[c]].name) : 0;
	for (int i = 0; i < n && !v->raw; i++)
		for (int c = 0; c < v->n_cols; c++) {
			cell(v, &devs[i], v->cols[c], buf, CELL_MAX);
			if (strlen(buf) > width[c])
				width[c] = strlen(buf);
		}
	for (int i = v->headings ? -1 : 0; i < n; i++) {
		for (int c = 0; c < v->n_cols; c++) {
			int col = v->cols[c];
			bool last = c == v->n_cols - 1;
			if (i < 0)
				snprintf(buf, CELL_MAX, "%s", columns[col].name);
			else
				cell(v, &devs[i], col, buf, CELL_MAX);
			if (c)
				fputc(' ', f);
			if (v->raw)
				put_raw(f, buf);
			else if (columns[col].right)
				fprintf(f, "%*s", (int)width[c], buf);
			else if (last)   /* no trailing blanks */
				fputs(buf, f);
			else
				fprintf(f, "%-*s", (int)width[c], buf);
		}
		fputc('\n', f);
	}
	free(buf);
}

/* A value, or null when it is not known. */
static void json_u64_known(struct json *j, const char *key, uint64_t val, bool known)
{
	if (known)
		json_u64(j, key, val);
	else
		json_raw(j, key, "null");
}

static void json_bool_known(struct json *j, const char *key, bool val, bool known)
{
	if (known)
		json_bool(j, key, val);
	else
		json_raw(j, key, "null");
}

void pool_view_json(FILE *f, const struct pool_view *v, const struct pool_dev *devs, int n,
		    bool with_stats)
{
	struct json j;

	json_begin(&j, f);
	json_arr_begin(&j, "devices");
	for (int i = 0; i < n; i++) {
		const struct pool_dev *d = &devs[i];
		char path[32];
		snprintf(path, sizeof(path), "/dev/ublkb%u", d->id);
		json_obj_begin(&j, NULL);
		json_u64(&j, "id", d->id);
		json_str(&j, "path", path);
		json_bool(&j, "in_kernel", d->in_kernel);
		/* the entry's config names the device's size: without it, what
		 * the config holds is not known */
		bool configured = d->has_state && d->size;
		json_str(&j, "kernel_state", d->in_kernel ? ctrl_state_name(d->kernel_state) : NULL);
		json_bool(&j, "has_state", d->has_state);
		json_str(&j, "state", d->has_state && d->state[0] ? d->state : NULL);
		json_u64_known(&j, "pid", (uint64_t)d->pid, d->pid > 0);
		json_bool(&j, "recoverable", d->recoverable);
		json_bool(&j, "server_alive", d->alive);
		json_bool(&j, "server_exiting", d->exiting);
		json_str(&j, "name", d->name[0] ? d->name : NULL);
		json_str(&j, "base", d->base[0] ? d->base : NULL);
		json_str(&j, "e2b_root", d->e2b_root[0] ? d->e2b_root : NULL);
		json_str(&j, "build", d->e2b_build[0] ? d->e2b_build : NULL);
		json_arr_begin(&j, "layers");
		for (const char *l = d->layers; *l; l += strcspn(l, "\n") + 1) {
			char one[PATH_MAX];
			snprintf(one, sizeof(one), "%.*s", (int)strcspn(l, "\n"), l);
			json_str(&j, NULL, one);
		}
		json_arr_end(&j);
		json_str(&j, "cache", d->cache[0] ? d->cache : NULL);
		json_u64_known(&j, "size", d->size, d->size > 0);
		json_bool_known(&j, "read_only", d->read_only, configured);
		json_u64_known(&j, "queues", d->queues, d->queues > 0);
		json_u64_known(&j, "depth", d->depth, d->depth > 0);
		json_u64_known(&j, "uptime_s", d->uptime_s, d->has_uptime);
		json_u64_known(&j, "cache_bytes", d->cache_bytes, d->has_cache_bytes);
		json_str(&j, "problem", pool_problem(d, v->grace_s));
		char hung[300];
		json_str(&j, "hung", pool_hung(d, v->hang_ms, hung, sizeof(hung)) ? hung : NULL);
		if (with_stats) {
			json_raw(&j, "stats", d->stats[0] ? d->stats : "null");
			json_str(&j, "kernel_features", d->kernel_features[0] ? d->kernel_features : NULL);
			json_str(&j, "device_flags", d->device_flags[0] ? d->device_flags : NULL);
			json_str(&j, "commands", d->commands[0] ? d->commands : NULL);
		}
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_end(&j);
}
