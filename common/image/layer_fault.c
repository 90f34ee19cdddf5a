/* Fault injection (docs/fault-injection.md): delays and errors for chosen
 * requests, passing everything else straight to the layer below. Delays are
 * io_uring timeouts on the caller's ring, so other requests keep flowing. */
#include "image/layer_fault.h"
#include "util/parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RULES 16

enum fault_kind { DELAY_READ, DELAY_WRITE, ERROR_READ, ERROR_WRITE };

struct fault_rule {
	enum fault_kind kind;
	uint64_t value;
	uint64_t start, end;
};

struct fault {
	struct layer l;
	struct fault_rule rules[MAX_RULES];
	unsigned nrules;
};

struct fault_io {
	struct layer_io child;
	struct layer_io *parent;
	struct fault *f;
	struct __kernel_timespec ts;
};


static const struct fault_rule *match(const struct fault *f, const struct layer_io *io)
{
	bool is_read = io->op == LAYER_READ, is_write = io->op == LAYER_WRITE;

	for (unsigned i = 0; i < f->nrules; i++) {
		const struct fault_rule *r = &f->rules[i];
		bool kind = ((r->kind == DELAY_READ || r->kind == ERROR_READ) && is_read) ||
			    ((r->kind == DELAY_WRITE || r->kind == ERROR_WRITE) && is_write);
		if (kind && io->off < r->end && io->off + io->len > r->start)
			return r;
	}
	return NULL;
}

static void child_done(struct layer_io *child, int res)
{
	struct fault_io *p = container_of(child, struct fault_io, child);
	p->parent->done(p->parent, res);
}

static void pass_down(struct fault_io *p)
{
	struct layer_io *io = p->parent;
	layer_child_init(&p->f->l, io, &p->child, io->op, io->off, io->len, io->buf, child_done);
	layer_submit(p->f->l.lower, &p->child);
}

static void delay_over(struct aio_req *req, int res)
{
	struct layer_io *io = container_of(req, struct layer_io, areq);
	(void)res;   /* -ETIME: the timer ran out, as intended */
	pass_down(io->priv);
}

static void fault_any(struct layer *l, struct layer_io *io)
{
	struct fault *f = (struct fault *)l;
	struct fault_io *p = io->priv;
	const struct fault_rule *r = match(f, io);

	p->parent = io;
	p->f = f;
	if (!r) {
		pass_down(p);
		return;
	}
	if (r->kind == ERROR_READ || r->kind == ERROR_WRITE) {
		io->done(io, -(int)r->value);
		return;
	}
	io->areq.complete = delay_over;
	struct io_uring_sqe *sqe = aio_get_sqe(io->aio, &io->areq);
	if (!sqe) {
		pass_down(p);
		return;
	}
	p->ts.tv_sec = (long long)(r->value / 1000);
	p->ts.tv_nsec = (long long)(r->value % 1000) * 1000000;
	io_uring_prep_timeout(sqe, &p->ts, 0, 0);
}

static void fault_close(struct layer *l)
{
	layer_close(l->lower);
	free(l);
}

static const struct layer_ops fault_ops = {
	.name = "fault",
	.read = fault_any,
	.write = fault_any,
	.flush = fault_any,
	.discard = fault_any,
	.close = fault_close,
};

static int parse_rule(char *item, struct fault_rule *r, char *why, size_t len)
{
	static const char *kinds[] = { "delay-read", "delay-write", "error-read", "error-write" };
	char *eq = strchr(item, '='), *at, *dash;
	uint64_t max;

	if (!eq)
		return snprintf(why, len, "'%s': expected KIND=VALUE[@START-END]", item), -EINVAL;
	*eq = 0;
	r->kind = (enum fault_kind)-1;
	for (unsigned k = 0; k < 4; k++)
		if (!strcmp(item, kinds[k]))
			r->kind = (enum fault_kind)k;
	if ((int)r->kind < 0)
		return snprintf(why, len, "'%s': unknown fault (delay-read, delay-write, "
				"error-read, error-write)", item), -EINVAL;
	at = strchr(eq + 1, '@');
	if (at)
		*at = 0;
	max = r->kind == ERROR_READ || r->kind == ERROR_WRITE ? 4095 : 3600000;
	if (parse_uint(eq + 1, 1, max, &r->value))
		return snprintf(why, len, "%s='%s': expected %s", item, eq + 1,
				max == 4095 ? "an errno number 1-4095" : "milliseconds 1-3600000"), -EINVAL;
	r->start = 0;
	r->end = UINT64_MAX;
	if (at) {
		dash = strchr(at + 1, '-');
		if (!dash)
			return snprintf(why, len, "'%s': range must be START-END", at + 1), -EINVAL;
		*dash = 0;
		if (parse_size(at + 1, &r->start) || parse_size(dash + 1, &r->end) || r->end <= r->start)
			return snprintf(why, len, "bad range '%s-%s'", at + 1, dash + 1), -EINVAL;
	}
	return 0;
}

int layer_fault_open(const char *spec, struct layer *lower, struct layer **out,
		     char *why, size_t whylen)
{
	struct fault *f = calloc(1, sizeof(*f));
	char *copy = strdup(spec), *save = NULL;
	int ret = 0;

	if (!f || !copy) {
		ret = -ENOMEM;
		goto out;
	}
	for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		if (f->nrules == MAX_RULES) {
			snprintf(why, whylen, "at most %d fault rules", MAX_RULES);
			ret = -EINVAL;
			goto out;
		}
		ret = parse_rule(item, &f->rules[f->nrules++], why, whylen);
		if (ret)
			goto out;
	}
	if (!f->nrules) {
		snprintf(why, whylen, "empty fault specification");
		ret = -EINVAL;
		goto out;
	}
	layer_on(&f->l, &fault_ops, lower);
	f->l.priv_size = sizeof(struct fault_io);
	*out = &f->l;
out:
	free(copy);
	if (ret)
		free(f);
	return ret;
}
