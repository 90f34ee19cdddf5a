/* One ublk hardware queue served by one thread with its own io_uring:
 * ublk commands (FETCH / COMMIT_AND_FETCH) and the target's backend IO
 * share the ring, so a slow backend request never blocks other tags. */
#ifndef UBLK_QUEUE_H
#define UBLK_QUEUE_H

#include "util/aio.h"

#include "kernel/ublk_uapi.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/uio.h>

#define LAT_BUCKETS 32   /* bucket i: latency < 2^i microseconds */

/* Written by the queue thread only, read by the stats writer: relaxed
 * atomics keep the hot path free of locks. */
struct queue_stats {
	_Atomic uint64_t started;       /* requests handed to the target; lat_count ended */
	_Atomic uint64_t reads, writes, flushes, discards, errors;
	_Atomic uint64_t reads_in_place;    /* copied by the kernel from the target's map */
	_Atomic uint64_t writes_in_place;   /* copied by the kernel into the target's memory */
	_Atomic uint64_t bytes_read, bytes_written;
	_Atomic uint64_t lat_count, lat_sum_us, lat_max_us;
	_Atomic uint64_t lat_hist[LAT_BUCKETS];
};

enum queue_op {
	QUEUE_READ,
	QUEUE_WRITE,
	QUEUE_FLUSH,
	QUEUE_DISCARD,
	QUEUE_WRITE_ZEROES,
};

/* A request of the kernel, as the queue hands it to its target. */
struct queue_req {
	enum queue_op op;
	uint64_t off;
	uint32_t len;
	void *buf;
	struct aio *aio;            /* the queue's ring, for the target's backend IO */
	void *priv;                 /* the target's priv_size bytes for this tag */
};

/* What serves the requests: the queue knows nothing of images. submit
 * starts req and returns; the target ends it with queue_req_done, on the
 * queue's thread (or through the aio poster). */
struct queue_target {
	void *ctx;
	size_t priv_size;
	void (*submit)(void *ctx, struct queue_req *req);
	/* Optional, used with user copy or get_data: where req's bytes lie in memory,
	 * the count of pieces at *iov (0: read it with submit); unmap lets go
	 * of them, after any map. */
	int (*map)(void *ctx, struct queue_req *req, const struct iovec **iov);
	void (*unmap)(void *ctx, struct queue_req *req);
	/* Optional, used with user copy or get_data: where write req's data
	 * may be copied in the target's memory (0 and *at, or -EAGAIN: the
	 * tag's buffer); then write_placed once len bytes of it are there (0
	 * when none came): 0 when done, -EAGAIN to have it submitted. */
	int (*place_write)(void *ctx, struct queue_req *req, void **at);
	int (*write_placed)(void *ctx, struct queue_req *req, uint32_t len);
};

/* req is done: res = bytes for read/write, 0 for the others, or -errno. */
void queue_req_done(struct queue_req *req, int res);

struct queue_tag {
	struct queue_req req;
	struct ublk_queue *q;
	void *buf;
	void *commit_addr;          /* the data of the command queued next: buf, or a map */
	void *placed;               /* where the kernel copies this WRITE's data (place_write) */
	bool map_held;              /* committed from the target's map, not yet unmapped */
	uint64_t start_ns;
	uint32_t later_op;          /* the command queued once the ring has room */
	int32_t later_res;
	uint16_t tag;
	uint8_t state;
};

struct ublk_queue {
	uint32_t dev_id;
	uint16_t qid;
	uint16_t depth;
	uint32_t buf_bytes;
	int char_fd;
	/* The device was created with UBLK_F_CMD_IOCTL_ENCODE: IO commands go
	 * as UBLK_U_IO_*, else as legacy numbers (docs/kernels.md). */
	bool ioctl_encode;
	/* UBLK_F_USER_COPY (6.5+): the kernel copies no data; a WRITE's is
	 * read from /dev/ublkcN and a READ's written there, from the tag's
	 * buffer or straight from the target's map (docs/kernels.md). */
	bool user_copy;
	/* UBLK_F_NEED_GET_DATA (asked for where there is no user copy and the
	 * target maps): the kernel asks for a WRITE's buffer before copying
	 * into it, so a READ may be committed straight from the target's map
	 * and the tag's address left there (docs/kernels.md). */
	bool get_data;
	struct queue_target target;
	int ready_efd;              /* written once prepared, then once fetches are queued
				     * (or when either failed) */
	pthread_mutex_t gate_lock;  /* queue_release lets the prepared thread on */
	pthread_cond_t gate_cond;
	bool gate;
	bool said_refused;          /* a command the kernel refused was logged */
	int exit_efd;               /* written when the thread ends */

	pthread_t thread;
	int setup_err;              /* 0 or -errno, valid once ready_efd fired */
	const struct ublksrv_io_desc *descs;
	size_t descs_len;
	struct io_uring ring;
	struct aio aio;
	struct queue_tag *tags;
	void *privs;                /* per-tag state of the target */
	unsigned cmds_inflight;     /* FETCH/COMMIT commands owned by the kernel */
	unsigned ncmds_later;       /* tags whose command waits for room in the ring */
	/* With get_data: the ends of the reads lately committed from a map,
	 * hashed. A copy that fails there completes only part of the read and
	 * the kernel sends the rest again, with the same end and no word to
	 * us; a read ending where one of these did is read by submit. */
	uint64_t *mapped_ends;
	unsigned mapped_ends_mask;
	unsigned nmaps_held;        /* tags with map_held */
	struct queue_stats stats;
	/* A clock read is a syscall where the clocksource is not the TSC (the
	 * HPET of a TCG guest costs more than serving a 4 KiB read): requests
	 * are stamped with the time their batch of CQEs was taken, and their
	 * latencies counted once at the end of the batch that ended them. */
	uint64_t batch_ns;          /* 0 until a request of this batch needs it */
	uint64_t *ended_start_ns;   /* start_ns of the requests ended in this batch (depth) */
	unsigned nended;
	/* The stats writer's own (queue_stalled_ms): requests ended when it
	 * last saw one end, and since when it has seen none. */
	uint64_t stall_seen_done, stall_since_ms;
	bool broke_off;         /* ended with requests in flight (queue_join) */
};

/* Start the queue's thread, which prepares what needs no device (ring,
 * buffers) and then waits for queue_release. Returns 0 or -errno; after
 * each of its two signals on ready_efd, q->setup_err tells whether that
 * step worked. */
int queue_start(struct ublk_queue *q);
/* Let a prepared queue's thread on: with the device's /dev/ublkcN it maps
 * the descriptors and fetches; with -1 it ends. */
void queue_release(struct ublk_queue *q, int char_fd);
/* Wait for the thread to end; -ETIMEDOUT if it did not within timeout_ms,
 * -EIO if its loop broke off with requests still with the kernel or the
 * layers (its ring and buffers are kept: the layers must be too). */
int queue_join(struct ublk_queue *q, uint64_t timeout_ms);

/* For how long (ms, at now_ms) q has had requests in the target without
 * ending any: 0 while it makes progress or has nothing to do. Called by
 * one thread (the stats writer), which owns the stall_* fields. */
uint64_t queue_stalled_ms(struct ublk_queue *q, uint64_t now_ms);
/* The statistics of n queues together, as JSON (docs/state-dir.md, stats),
 * with the server's heartbeat fields (stalled_ms, held_until_ms) and remote
 * (a JSON object) as "remote" unless NULL. malloc'd, or NULL. */
struct queue_heartbeat {
	uint64_t stalled_ms;            /* the longest queue_stalled_ms */
	uint64_t held_until_ms;         /* wall clock: a live export holds writes until then; 0 */
};
char *queue_stats_json(const struct ublk_queue *queues, unsigned n,
		       const struct queue_heartbeat *hb, const char *remote);

#endif
