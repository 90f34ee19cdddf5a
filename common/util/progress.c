#include "util/progress.h"
#include "util/timeutil.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

void progress_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)bytes;
	int u = -1;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
}

void progress_show(struct progress *p, uint64_t done, uint64_t total)
{
	uint64_t now = now_ms(), unit = p->unit ? p->unit : 1;
	char d[24], t[24], rate[32] = "", eta[32] = "";

	if (!p->on)
		return;
	if (!p->tty)
		p->tty = isatty(STDERR_FILENO) ? 1 : -1;
	if (!p->start_ms)
		p->start_ms = now;
	if (done < total && now - p->last_ms < (p->tty > 0 ? 100 : 10000))
		return;
	p->last_ms = now;
	progress_bytes(done * unit, d, sizeof(d));
	progress_bytes(total * unit, t, sizeof(t));
	/* a rate only once there is something to measure it by */
	if (now - p->start_ms >= 500 && done) {
		double ms = (double)(now - p->start_ms), per_ms = (double)done * (double)unit / ms;
		progress_bytes((uint64_t)(per_ms * 1000), rate, sizeof(rate) - 4);
		snprintf(rate + strlen(rate), 4, "/s");
		if (done < total) {
			uint64_t left_s = (uint64_t)((double)(total - done) * (double)unit / per_ms / 1000);
			snprintf(eta, sizeof(eta), "  %llu:%02llu left", (unsigned long long)(left_s / 60),
				 (unsigned long long)(left_s % 60));
		}
	}
	p->open = p->tty > 0 && done < total;
	fprintf(stderr, "%s%s: %3llu%%  %s of %s%s%s%s%s%s", p->tty > 0 ? "\r" : "", p->what,
		(unsigned long long)(total ? done * 100 / total : 100), d, t, rate[0] ? "  " : "", rate,
		eta, p->tty > 0 ? "\033[K" : "", p->open ? "" : "\n");
}

void progress_end(struct progress *p)
{
	if (p->open)
		fputc('\n', stderr);
	p->open = false;
}
