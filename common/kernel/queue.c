/*
 * The queue loop. Each tag cycles through:
 *   FETCH_REQ  -> kernel hands us a request in descs[tag]
 *   serving    -> the target works on it (backend IO on our ring)
 *   COMMIT_AND_FETCH_REQ with the result -> back to the kernel
 * A command completing with UBLK_IO_RES_ABORT means the device is being
 * stopped: the tag is not fetched again, and the thread ends once no tag
 * is owned by the kernel and no backend IO is in flight.
 *
 * Buffers are allocated once per tag at start; the hot path allocates
 * nothing and makes no syscall beyond io_uring_submit_and_wait, but for
 * the data of a device with user copy, which the queue moves itself.
 */
#include "kernel/queue.h"
#include "util/log.h"
#include "util/json.h"
#include "util/sigbus.h"
#include "util/timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define COUNT(field, n) atomic_fetch_add_explicit(&q->stats.field, (n), memory_order_relaxed)

/* A kernel built without legacy opcodes (CONFIG_BLKDEV_UBLK_LEGACY_OPCODES=n)
 * refuses plain numbers, and 6.1 knows nothing else: the device's flags,
 * fixed at ADD_DEV, say which one speaks to it. */
#define IO_CMD(q, name) ((q)->ioctl_encode ? UBLK_U_##name : UBLK_##name)

enum tag_state { TAG_IN_KERNEL, TAG_SERVING, TAG_CMD_LATER, TAG_DEAD };

static size_t page_round(size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	return (n + page - 1) / page * page;
}

static int queue_cmd(struct ublk_queue *q, struct queue_tag *t, unsigned op, int result)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
	struct ublksrv_io_cmd *cmd;

	if (!sqe) {
		if (io_uring_submit(&q->ring) < 0 || !(sqe = io_uring_get_sqe(&q->ring)))
			return -EBUSY;
	}
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = 0;                       /* fixed file 0: the char device */
	sqe->flags = IOSQE_FIXED_FILE;
	sqe->cmd_op = op;
	cmd = (struct ublksrv_io_cmd *)sqe->cmd;
	cmd->q_id = q->qid;
	cmd->tag = t->tag;
	cmd->result = result;
	cmd->addr = q->user_copy ? 0 : (uintptr_t)t->commit_addr;
	t->commit_addr = t->buf;
	sqe->user_data = ((uint64_t)t->tag << 1) | AIO_UD_FOREIGN;
	t->state = TAG_IN_KERNEL;
	q->cmds_inflight++;
	return 0;
}

/* queue_cmd, or, when the ring has no room (its submit failed: completions
 * not reaped yet, no memory), once the loop has reaped: a command dropped
 * would leave its request, or the tag, waiting for ever. */
static void queue_cmd_or_later(struct ublk_queue *q, struct queue_tag *t, unsigned op, int result)
{
	if (!queue_cmd(q, t, op, result))
		return;
	t->later_op = op;
	t->later_res = result;
	t->state = TAG_CMD_LATER;
	q->ncmds_later++;
}

static void queue_cmds_later(struct ublk_queue *q)
{
	for (unsigned i = 0; i < q->depth && q->ncmds_later; i++) {
		struct queue_tag *t = &q->tags[i];
		if (t->state != TAG_CMD_LATER)
			continue;
		if (queue_cmd(q, t, t->later_op, t->later_res))
			return;   /* still no room: after the next reaping */
		q->ncmds_later--;
	}
}

/* The latencies of the requests ended since the last call, at one clock read. */
static void count_ended(struct ublk_queue *q)
{
	uint64_t now = now_ns();

	for (unsigned i = 0; i < q->nended; i++) {
		uint64_t us = (now - q->ended_start_ns[i]) / 1000;
		unsigned bucket = us ? 64 - (unsigned)__builtin_clzll(us) : 0;
		COUNT(lat_sum_us, us);
		COUNT(lat_hist[bucket < LAT_BUCKETS ? bucket : LAT_BUCKETS - 1], 1);
		if (us > atomic_load_explicit(&q->stats.lat_max_us, memory_order_relaxed))
			atomic_store_explicit(&q->stats.lat_max_us, us, memory_order_relaxed);
	}
	/* last: the stall watch compares it with started */
	COUNT(lat_count, q->nended);
	q->nended = 0;
}

/* Where the request of tag t is read and written in /dev/ublkcN. */
static off_t user_copy_pos(const struct ublk_queue *q, const struct queue_tag *t)
{
	return (off_t)(UBLKSRV_IO_BUF_OFFSET + ((uint64_t)q->qid << UBLK_QID_OFF) +
		       ((uint64_t)t->tag << UBLK_TAG_OFF));
}

/* The request's data to or from /dev/ublkcN: 0, or -EIO (the kernel took
 * fewer bytes: the request was cancelled, or a mapped file was cut). */
static int user_copy(const struct ublk_queue *q, const struct queue_tag *t, bool to_kernel,
		     const struct iovec *iov, int n, uint32_t len)
{
	ssize_t done;

	do
		done = to_kernel ? pwritev(q->char_fd, iov, n, user_copy_pos(q, t))
				 : preadv(q->char_fd, iov, n, user_copy_pos(q, t));
	while (done < 0 && errno == EINTR);
	if (done == (ssize_t)len)
		return 0;
	log_dbg("ublkb%u q%u tag %u: %s /dev/ublkc%u: %s", q->dev_id, q->qid, t->tag,
		to_kernel ? "writing the read's data to" : "reading the write's data from", q->dev_id,
		done < 0 ? strerror(errno) : "short");
	return -EIO;
}

static void end_req(struct queue_tag *t, int res)
{
	struct ublk_queue *q = t->q;
	struct queue_req *req = &t->req;

	if (q->nended == q->depth)
		count_ended(q);
	q->ended_start_ns[q->nended++] = t->start_ns;
	if (res < 0) {
		COUNT(errors, 1);
		log_dbg("ublkb%u q%u tag %u: op %d off %llu len %u failed: %s", q->dev_id,
			q->qid, t->tag, req->op, (unsigned long long)req->off, req->len, strerror(-res));
		/* a remote image's timeout or refusal (layer_fetch_error) is an I/O
		 * error to the kernel, as before: ETIMEDOUT would be its own
		 * block status, which a file system does not expect of a read;
		 * EAGAIN (a backend ring with no room) would be BLK_STS_AGAIN,
		 * which only a NOWAIT submitter takes for "try again"; a
		 * remote read cancelled as the device goes, ECANCELED */
		if (res == -ETIMEDOUT || res == -EACCES || res == -EAGAIN || res == -ECANCELED)
			res = -EIO;
	}
	queue_cmd_or_later(q, t, IO_CMD(q, IO_COMMIT_AND_FETCH_REQ), res);
}

void queue_req_done(struct queue_req *req, int res)
{
	struct queue_tag *t = (struct queue_tag *)req;
	const struct iovec buf = { t->buf, (size_t)(res > 0 ? res : 0) };

	if (t->q->user_copy && req->op == QUEUE_READ && res > 0 &&
	    user_copy(t->q, t, true, &buf, 1, (uint32_t)res))
		res = -EIO;
	end_req(t, res);
}

struct placed_copy {
	void *to;
	const void *from;
	size_t len;
};

static void copy_placed(void *arg)
{
	struct placed_copy *c = arg;
	memcpy(c->to, c->from, c->len);
}

/* A write whose data reached its place but that the target declined
 * there: the data into the tag's buffer for submit, copied from the place
 * under a SIGBUS guard (the target's file may be cut short under it):
 * 0, or -EFAULT. */
static int copy_from_place(struct queue_tag *t, const void *place, uint32_t len)
{
	struct placed_copy c = { t->buf, place, len };
	return sigbus_guard(place, len, copy_placed, &c) ? -EFAULT : 0;
}

/* With user copy, before the target sees the request: a write the target
 * can place read straight into its place (and, if the target then
 * declines it there, copied from the place to the tag's buffer), else
 * read into the tag's buffer; a read the target can place copied in
 * place. false when the request has ended. */
static bool serve_user_copy(struct ublk_queue *q, struct queue_tag *t)
{
	struct queue_req *io = &t->req;
	const struct iovec *iov;
	struct iovec place;
	int n, ret;

	if (io->op == QUEUE_WRITE) {
		const struct iovec buf = { t->buf, io->len };
		if (q->target.place_write && !q->target.place_write(q->target.ctx, io, &place.iov_base)) {
			place.iov_len = io->len;
			ret = user_copy(q, t, false, &place, 1, io->len);
			if (!q->target.write_placed(q->target.ctx, io, ret ? 0 : io->len)) {
				COUNT(writes_in_place, 1);
				end_req(t, (int)io->len);
				return false;
			}
			if (!ret && !copy_from_place(t, place.iov_base, io->len))
				return true;
		}
		ret = user_copy(q, t, false, &buf, 1, io->len);
		if (ret)
			end_req(t, ret);
		return ret == 0;
	}
	if (io->op != QUEUE_READ || !q->target.map)
		return true;
	n = q->target.map(q->target.ctx, io, &iov);
	ret = n ? user_copy(q, t, true, iov, n, io->len) : -EAGAIN;
	q->target.unmap(q->target.ctx, io);
	if (ret)
		return true;   /* not in place (or a mapped file was cut): read it */
	COUNT(reads_in_place, 1);
	end_req(t, (int)io->len);
	return false;
}

/* The n pieces of a map lie one after the other in memory. */
static bool one_piece(const struct iovec *iov, int n, uint32_t len)
{
	size_t total = 0;

	for (int i = 0; i < n; i++) {
		if (i && (char *)iov[i - 1].iov_base + iov[i - 1].iov_len != iov[i].iov_base)
			return false;
		total += iov[i].iov_len;
	}
	return n > 0 && total == len;
}

/* The n pieces of a map, len bytes in all, into buf, each under a SIGBUS
 * guard (a file may be cut short under its mapping): 0, or -EFAULT. */
static int gather(void *buf, uint32_t len, const struct iovec *iov, int n)
{
	struct placed_copy c = { buf, NULL, 0 };
	size_t left = len;

	for (int i = 0; i < n; i++) {
		c.from = iov[i].iov_base;
		c.len = iov[i].iov_len;
		if (c.len > left || sigbus_guard(c.from, c.len, copy_placed, &c))
			return -EFAULT;
		c.to = (char *)c.to + c.len;
		left -= c.len;
	}
	return left ? -EFAULT : 0;
}

/* With get_data: a read the target maps in one piece is committed from
 * there, and the kernel's copy at commit is its only one. The map is let
 * go once the commit is submitted (unmap_submitted). A read mapped in
 * more pieces is gathered into the tag's buffer: two copies, as by
 * submit, but no IO to wait for. false when the read must go to submit. */
static bool commit_from_map(struct ublk_queue *q, struct queue_tag *t)
{
	struct queue_req *io = &t->req;
	uint64_t end = io->off + io->len;
	uint64_t *seen = &q->mapped_ends[((end >> 9) * 0x9E3779B97F4A7C15ull >> 32) &
					 q->mapped_ends_mask];
	const struct iovec *iov;
	int n, ret;

	if (*seen == end) {
		*seen = 0;   /* maybe the rest of a read whose copy failed */
		return false;
	}
	n = q->target.map(q->target.ctx, io, &iov);
	if (!one_piece(iov, n, io->len)) {
		ret = n ? gather(t->buf, io->len, iov, n) : -EAGAIN;
		q->target.unmap(q->target.ctx, io);
		if (ret)
			return false;
		end_req(t, (int)io->len);
		return true;
	}
	*seen = end;
	t->commit_addr = iov[0].iov_base;
	t->map_held = true;
	q->nmaps_held++;
	COUNT(reads_in_place, 1);
	end_req(t, (int)io->len);
	return true;
}

/* The kernel copied a read committed from a map when its command was
 * submitted: let go of the map, at the latest when the tag comes back. */
static void unmap_held(struct ublk_queue *q, struct queue_tag *t)
{
	q->target.unmap(q->target.ctx, &t->req);
	t->map_held = false;
	q->nmaps_held--;
}

/* Once the ring has nothing left to submit. */
static void unmap_submitted(struct ublk_queue *q)
{
	/* a commit still waiting for room in the ring has not been submitted */
	for (uint16_t i = 0; i < q->depth && q->nmaps_held; i++)
		if (q->tags[i].map_held && q->tags[i].state != TAG_CMD_LATER)
			unmap_held(q, &q->tags[i]);
}

/* The kernel's copy into t's place never came (or came to nothing). */
static void drop_place(struct ublk_queue *q, struct queue_tag *t)
{
	q->target.write_placed(q->target.ctx, &t->req, 0);
	t->placed = NULL;
}

/* With get_data, a WRITE asks where its data goes before the kernel
 * copies it: in place where the target can take it there, else the tag's
 * buffer. Asked again for the same request, the copy into the place
 * failed: the buffer then. */
static void place_write(struct ublk_queue *q, struct queue_tag *t)
{
	const struct ublksrv_io_desc *d = &q->descs[t->tag];
	struct queue_req *io = &t->req;
	void *at;

	if (t->placed) {
		drop_place(q, t);
		return;
	}
	if (!q->target.place_write || ublksrv_get_op(d) != UBLK_IO_OP_WRITE)
		return;
	io->off = d->start_sector << 9;
	io->len = d->nr_sectors << 9;
	if (io->len <= q->buf_bytes && !q->target.place_write(q->target.ctx, io, &at))
		t->placed = t->commit_addr = at;
}

/* A WRITE whose data the kernel copied to its place (as much of it as
 * the kernel then hands over): done there, or, where the target wants it
 * written as usual after all, copied to the tag's buffer for submit.
 * false when the request must be submitted. */
static bool end_placed(struct ublk_queue *q, struct queue_tag *t)
{
	struct queue_req *io = &t->req;
	const void *place = t->placed;
	bool write = io->op == QUEUE_WRITE;

	t->placed = NULL;
	if (!q->target.write_placed(q->target.ctx, io, write ? io->len : 0) && write) {
		COUNT(writes_in_place, 1);
		end_req(t, (int)io->len);
		return true;
	}
	if (write && copy_from_place(t, place, io->len)) {
		end_req(t, -EIO);   /* the target's file was cut short under the place */
		return true;
	}
	return false;
}

static void serve(struct ublk_queue *q, struct queue_tag *t)
{
	const struct ublksrv_io_desc *d = &q->descs[t->tag];
	struct queue_req *io = &t->req;
	unsigned op = ublksrv_get_op(d);

	t->state = TAG_SERVING;
	if (!q->batch_ns)
		q->batch_ns = now_ns();
	t->start_ns = q->batch_ns;
	COUNT(started, 1);
	io->off = d->start_sector << 9;
	io->len = d->nr_sectors << 9;
	io->buf = t->buf;
	switch (op) {
	case UBLK_IO_OP_READ:
		io->op = QUEUE_READ;
		COUNT(reads, 1);
		COUNT(bytes_read, io->len);
		break;
	case UBLK_IO_OP_WRITE:
		io->op = QUEUE_WRITE;
		COUNT(writes, 1);
		COUNT(bytes_written, io->len);
		break;
	case UBLK_IO_OP_FLUSH:
		io->op = QUEUE_FLUSH;
		COUNT(flushes, 1);
		break;
	case UBLK_IO_OP_DISCARD:
		io->op = QUEUE_DISCARD;
		COUNT(discards, 1);
		break;
	case UBLK_IO_OP_WRITE_ZEROES:
		io->op = QUEUE_WRITE_ZEROES;
		COUNT(discards, 1);
		break;
	default:
		queue_req_done(io, -EOPNOTSUPP);
		return;
	}
	if (io->len > q->buf_bytes && (io->op == QUEUE_READ || io->op == QUEUE_WRITE)) {
		queue_req_done(io, -EINVAL);
		return;
	}
	if (t->placed && end_placed(q, t))
		return;
	if (q->user_copy && !serve_user_copy(q, t))
		return;
	if (q->get_data && io->op == QUEUE_READ && q->target.map && commit_from_map(q, t))
		return;
	q->target.submit(q->target.ctx, io);
}

static void on_cmd_cqe(struct ublk_queue *q, struct io_uring_cqe *cqe)
{
	struct queue_tag *t = &q->tags[cqe->user_data >> 1];

	q->cmds_inflight--;
	/* its commit was submitted early (a full ring), and the kernel has
	 * handed the tag its next request already */
	if (t->map_held)
		unmap_held(q, t);
	if (cqe->res == UBLK_IO_RES_OK) {
		serve(q, t);
		return;
	}
	if (cqe->res == UBLK_IO_RES_NEED_GET_DATA && q->get_data) {
		place_write(q, t);
		queue_cmd_or_later(q, t, IO_CMD(q, IO_NEED_GET_DATA), 0);
		return;
	}
	if (t->placed)
		drop_place(q, t);
	/* ABORT is the stop's; anything else leaves the tag out of use, and
	 * a request it carried uncompleted: said, once a queue */
	if (cqe->res != UBLK_IO_RES_ABORT && !q->said_refused) {
		q->said_refused = true;
		log_err("ublkb%u q%u tag %u: the kernel refused an IO command: %s; the tag is out "
			"of use, and a request it carried is not completed (said once a queue)",
			q->dev_id, q->qid, t->tag, strerror(cqe->res < 0 ? -cqe->res : EIO));
	}
	t->state = TAG_DEAD;
}

/* What needs no device: the ring, the tags and their buffers. Done before
 * a recovery's START_USER_RECOVERY, after which the kernel takes no second
 * recovery until every queue has fetched (docs/recovery.md). */
static int prepare(struct ublk_queue *q)
{
	struct io_uring_params p = { .flags = IORING_SETUP_COOP_TASKRUN };
	int ret;

	/* Room for every tag's command plus backend IO of every tag (a split
	 * cache read may queue more: SQEs are then submitted early, and CQEs
	 * past the ring wait in the kernel's overflow list). SINGLE_ISSUER and
	 * DEFER_TASKRUN, as the kernel's ublk selftest server sets them, made
	 * no difference beyond noise in an A/B bench (docs/kernels.md), and
	 * posting into such a ring from other threads needs a 6.1 stable fix. */
	ret = io_uring_queue_init_params(q->depth * 2, &q->ring, &p);
	if (ret == -EINVAL) {
		memset(&p, 0, sizeof(p));
		ret = io_uring_queue_init_params(q->depth * 2, &q->ring, &p);
	}
	if (ret)
		return ret;
	q->aio.ring = &q->ring;
	/* each tag's area aligned as malloc's */
	size_t priv = (q->target.priv_size + 15) & ~(size_t)15;
	q->tags = calloc(q->depth, sizeof(*q->tags));
	q->privs = calloc(q->depth, priv ? priv : 1);
	q->ended_start_ns = calloc(q->depth, sizeof(*q->ended_start_ns));
	if (!q->tags || !q->privs || !q->ended_start_ns)
		return -ENOMEM;
	if (q->get_data) {
		unsigned slots = 1;
		while (slots < 4u * q->depth)
			slots <<= 1;
		q->mapped_ends = calloc(slots, sizeof(*q->mapped_ends));
		if (!q->mapped_ends)
			return -ENOMEM;
		q->mapped_ends_mask = slots - 1;
	}
	for (uint16_t i = 0; i < q->depth; i++) {
		struct queue_tag *t = &q->tags[i];
		t->q = q;
		t->tag = i;
		t->req.aio = &q->aio;
		t->req.priv = (char *)q->privs + i * priv;
		t->state = TAG_DEAD;
		if (posix_memalign(&t->buf, 4096, q->buf_bytes))
			return -ENOMEM;
		t->commit_addr = t->buf;
	}
	return 0;
}

/* The device's part: its descriptors, and a FETCH for every tag. */
static int fetch(struct ublk_queue *q)
{
	size_t stride = page_round(UBLK_MAX_QUEUE_DEPTH * sizeof(struct ublksrv_io_desc));
	int ret;

	q->descs_len = page_round(q->depth * sizeof(struct ublksrv_io_desc));
	q->descs = mmap(NULL, q->descs_len, PROT_READ, MAP_SHARED | MAP_POPULATE,
			q->char_fd, UBLKSRV_CMD_BUF_OFFSET + q->qid * stride);
	if (q->descs == MAP_FAILED) {
		q->descs = NULL;
		return -errno;
	}
	ret = io_uring_register_files(&q->ring, &q->char_fd, 1);
	if (ret)
		return ret;
	for (uint16_t i = 0; i < q->depth; i++) {
		ret = queue_cmd(q, &q->tags[i], IO_CMD(q, IO_FETCH_REQ), -1);
		if (ret)
			return ret;
	}
	ret = io_uring_submit(&q->ring);
	if (ret < 0) {
		/* what the kernel did not take goes with the ring: not in flight */
		q->cmds_inflight -= io_uring_sq_ready(&q->ring);
		log_err("ublkb%u q%u: submitting its FETCH commands: %s", q->dev_id, q->qid,
			strerror(-ret));
		return ret;
	}
	return 0;
}

static void teardown(struct ublk_queue *q)
{
	/* A loop that broke off leaves commands with the kernel, which copies
	 * a write into the buffer its FETCH gave, and requests with the layers,
	 * whose fetch threads complete them through this ring: all kept, and
	 * queue_join says so, so that the layers stay open too. */
	if (q->cmds_inflight || q->aio.inflight) {
		q->broke_off = true;
		return;
	}
	if (q->tags) {
		unmap_submitted(q);
		for (uint16_t i = 0; i < q->depth; i++)
			if (q->tags[i].placed)
				drop_place(q, &q->tags[i]);
		for (uint16_t i = 0; i < q->depth; i++)
			free(q->tags[i].buf);
		free(q->tags);
		q->tags = NULL;
	}
	free(q->privs);
	q->privs = NULL;
	free(q->ended_start_ns);
	q->ended_start_ns = NULL;
	free(q->mapped_ends);
	q->mapped_ends = NULL;
	if (q->aio.ring) {
		io_uring_queue_exit(&q->ring);
		q->aio.ring = NULL;
	}
	if (q->descs) {
		munmap((void *)q->descs, q->descs_len);
		q->descs = NULL;
	}
}

static void *queue_main(void *arg)
{
	struct ublk_queue *q = arg;
	uint64_t one = 1;

	q->setup_err = prepare(q);
	if (write(q->ready_efd, &one, sizeof(one)) < 0) { }
	if (q->setup_err)
		goto out;
	pthread_mutex_lock(&q->gate_lock);
	while (!q->gate)
		pthread_cond_wait(&q->gate_cond, &q->gate_lock);
	pthread_mutex_unlock(&q->gate_lock);
	if (q->char_fd < 0)
		goto out;
	q->setup_err = fetch(q);
	if (write(q->ready_efd, &one, sizeof(one)) < 0) { }
	if (q->setup_err)
		goto out;

	while (q->cmds_inflight || q->aio.inflight || q->ncmds_later) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		/* with commands waiting for room, nothing may be left to wait for */
		int ret = q->ncmds_later ? io_uring_submit(&q->ring) :
					   io_uring_submit_and_wait(&q->ring, 1);

		if (q->nmaps_held && !io_uring_sq_ready(&q->ring))
			unmap_submitted(q);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
			log_err("ublkb%u q%u: io_uring_submit_and_wait: %s", q->dev_id, q->qid,
				strerror(-ret));
			break;
		}
		io_uring_for_each_cqe(&q->ring, head, cqe) {
			if (cqe->user_data & AIO_UD_FOREIGN)
				on_cmd_cqe(q, cqe);
			else
				aio_dispatch(&q->aio, cqe);
			seen++;
		}
		io_uring_cq_advance(&q->ring, seen);
		if (q->nended)
			count_ended(q);
		q->batch_ns = 0;
		if (q->ncmds_later) {
			queue_cmds_later(q);
			if (q->ncmds_later && !seen)
				usleep(1000);
		}
	}
out:
	teardown(q);
	if (write(q->exit_efd, &one, sizeof(one)) < 0) { }
	return NULL;
}

int queue_start(struct ublk_queue *q)
{
	pthread_mutex_init(&q->gate_lock, NULL);
	pthread_cond_init(&q->gate_cond, NULL);
	q->gate = false;
	return -pthread_create(&q->thread, NULL, queue_main, q);
}

void queue_release(struct ublk_queue *q, int char_fd)
{
	pthread_mutex_lock(&q->gate_lock);
	q->char_fd = char_fd;
	q->gate = true;
	pthread_cond_signal(&q->gate_cond);
	pthread_mutex_unlock(&q->gate_lock);
}

int queue_join(struct ublk_queue *q, uint64_t timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	int ret = -pthread_clockjoin_np(q->thread, NULL, CLOCK_MONOTONIC, &ts);
	return ret ? ret : q->broke_off ? -EIO : 0;
}

uint64_t queue_stalled_ms(struct ublk_queue *q, uint64_t now)
{
	uint64_t done = atomic_load_explicit(&q->stats.lat_count, memory_order_relaxed);
	uint64_t started = atomic_load_explicit(&q->stats.started, memory_order_relaxed);

	if (started == done || done != q->stall_seen_done || !q->stall_since_ms) {
		q->stall_seen_done = done;
		q->stall_since_ms = now;
		return 0;
	}
	return now - q->stall_since_ms;
}

char *queue_stats_json(const struct ublk_queue *queues, unsigned n,
		       const struct queue_heartbeat *hb, const char *remote)
{
	uint64_t hist[LAT_BUCKETS] = { 0 }, max = 0, count = 0, sum = 0;
	uint64_t reads = 0, writes = 0, flushes = 0, discards = 0, errors = 0, rbytes = 0, wbytes = 0;
	uint64_t in_place = 0, writes_in_place = 0;
	char *text = NULL;
	size_t size = 0;
	struct json j;
	FILE *f;

	for (unsigned i = 0; i < n; i++) {
		const struct queue_stats *st = &queues[i].stats;
		reads += st->reads; writes += st->writes; flushes += st->flushes;
		discards += st->discards; errors += st->errors; in_place += st->reads_in_place;
		writes_in_place += st->writes_in_place;
		rbytes += st->bytes_read; wbytes += st->bytes_written;
		count += st->lat_count; sum += st->lat_sum_us;
		if (st->lat_max_us > max)
			max = st->lat_max_us;
		for (int b = 0; b < LAT_BUCKETS; b++)
			hist[b] += st->lat_hist[b];
	}
	/* percentiles from the log2 histogram: the bucket's upper bound */
	uint64_t p50 = 0, p99 = 0, seen = 0;
	for (int b = 0; b < LAT_BUCKETS && count; b++) {
		seen += hist[b];
		if (!p50 && seen * 2 >= count)
			p50 = 1ull << b;
		if (!p99 && seen * 100 >= count * 99)
			p99 = 1ull << b;
	}
	if (!(f = open_memstream(&text, &size)))
		return NULL;
	json_begin(&j, f);
	json_u64(&j, "reads", reads);
	json_u64(&j, "reads_in_place", in_place);
	json_u64(&j, "writes", writes);
	json_u64(&j, "writes_in_place", writes_in_place);
	json_u64(&j, "flushes", flushes);
	json_u64(&j, "discards", discards);
	json_u64(&j, "errors", errors);
	json_u64(&j, "bytes_read", rbytes);
	json_u64(&j, "bytes_written", wbytes);
	json_obj_begin(&j, "latency_us");
	json_u64(&j, "count", count);
	json_u64(&j, "avg", count ? sum / count : 0);
	json_u64(&j, "p50_max", p50);
	json_u64(&j, "p99_max", p99);
	json_u64(&j, "max", max);
	json_obj_end(&j);
	if (hb) {
		json_u64(&j, "stalled_ms", hb->stalled_ms);
		json_u64(&j, "held_until_ms", hb->held_until_ms);
	}
	if (remote)
		json_raw(&j, "remote", remote);
	json_end(&j);
	fclose(f);
	return text;
}

