/* Asynchronous backend IO on an io_uring owned by the caller (a ublk queue
 * thread, or a plain ring in host tests). Each submission carries a
 * struct aio_req whose complete() runs when its CQE is reaped; nothing is
 * allocated per request. */
#ifndef UBLK_AIO_H
#define UBLK_AIO_H

#include <liburing.h>
#include <pthread.h>
#include <stdint.h>

struct aio_req;
typedef void (*aio_complete_fn)(struct aio_req *req, int res);

struct aio_req {
	aio_complete_fn complete;
};

struct aio {
	struct io_uring *ring;
	unsigned inflight;      /* backend SQEs not yet completed */
};

/* user_data of aio requests are aligned pointers (low bit 0); the ublk
 * queue tags its own commands with the low bit set. */
#define AIO_UD_FOREIGN 1ull

/* An SQE for req, submitting queued SQEs first if the ring is full.
 * Never returns NULL unless the ring is broken. */
struct io_uring_sqe *aio_get_sqe(struct aio *a, struct aio_req *req);
/* Account for a completion another thread will post to this ring with
 * IORING_OP_MSG_RING (user_data = req). */
void aio_expect(struct aio *a);
/* Completing, from another thread, a request owned by a ring's thread:
 * the owner calls aio_expect() when it hands the request over; the helper
 * thread posts the result with IORING_OP_MSG_RING, and the owner runs
 * req->complete(req, res) when it reaps that CQE. */
struct aio_poster {
	struct io_uring ring;
	pthread_mutex_t lock;
};

int aio_poster_init(struct aio_poster *p);
void aio_poster_exit(struct aio_poster *p);
/* 0, or -errno when the message could not be delivered within about a
 * second: the request is lost, which the caller says with its context. */
__attribute__((warn_unused_result))
int aio_poster_post(struct aio_poster *p, struct aio *target, struct aio_req *req, int res);

/* Handle one CQE that belongs to aio (user_data low bit clear). */
void aio_dispatch(struct aio *a, struct io_uring_cqe *cqe);
/* For host tests and one-off users: submit and reap until nothing is in
 * flight. Returns 0 or -errno from the ring. */
int aio_drain(struct aio *a);

#endif
