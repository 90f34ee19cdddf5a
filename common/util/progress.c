#include "util/progress.h"
#include "util/timeutil.h"

#include <stdio.h>

void progress_show(struct progress *p, uint64_t done, uint64_t total)
{
	uint64_t now = now_ms();
	if (!p->on || (done < total && now - p->last_ms < 100))
		return;
	p->last_ms = now;
	fprintf(stderr, "\r%s: %3llu%% (%llu of %llu)%s", p->what,
		(unsigned long long)(total ? done * 100 / total : 100), (unsigned long long)done,
		(unsigned long long)total, done >= total ? "\n" : "");
}
