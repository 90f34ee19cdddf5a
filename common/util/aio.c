#include "util/aio.h"

#include <errno.h>
#include <unistd.h>

struct io_uring_sqe *aio_get_sqe(struct aio *a, struct aio_req *req)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(a->ring);

	if (!sqe) {
		if (io_uring_submit(a->ring) < 0)
			return NULL;
		sqe = io_uring_get_sqe(a->ring);
		if (!sqe)
			return NULL;
	}
	io_uring_sqe_set_data(sqe, req);
	a->inflight++;
	return sqe;
}

void aio_expect(struct aio *a)
{
	a->inflight++;
}

void aio_dispatch(struct aio *a, struct io_uring_cqe *cqe)
{
	struct aio_req *req = io_uring_cqe_get_data(cqe);

	a->inflight--;
	req->complete(req, cqe->res);
}

int aio_drain(struct aio *a)
{
	while (a->inflight) {
		struct io_uring_cqe *cqe;
		int ret = io_uring_submit_and_wait(a->ring, 1);
		if (ret < 0 && ret != -EINTR)
			return ret;
		while (io_uring_peek_cqe(a->ring, &cqe) == 0) {
			aio_dispatch(a, cqe);
			io_uring_cqe_seen(a->ring, cqe);
		}
	}
	return 0;
}

int aio_poster_init(struct aio_poster *p)
{
	int ret = io_uring_queue_init(8, &p->ring, 0);
	if (!ret)
		pthread_mutex_init(&p->lock, NULL);
	return ret;
}

void aio_poster_exit(struct aio_poster *p)
{
	io_uring_queue_exit(&p->ring);
	pthread_mutex_destroy(&p->lock);
}

int aio_poster_post(struct aio_poster *p, struct aio *target, struct aio_req *req, int res)
{
	struct io_uring_cqe *cqe;
	int sent = -EAGAIN;
	bool queued = false;   /* our message is in the ring, or on its way */

	pthread_mutex_lock(&p->lock);
	/* A message not delivered is a request its queue waits for forever:
	 * a full target is tried again, for up to about a second. */
	for (int tries = 0; sent < 0 && tries < 1000; tries++) {
		if (tries)
			usleep(1000);
		if (!queued) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);
			if (!sqe)
				continue;
			io_uring_prep_msg_ring(sqe, target->ring->ring_fd, (unsigned)res,
					       (uint64_t)(uintptr_t)req, 0);
			sqe->user_data = 0;
			queued = true;
		}
		/* Wait for our side of the message so our CQ never fills. A
		 * submit that failed left it in the ring, and a wait cut short
		 * gets its answer later: either way it is not queued twice. */
		io_uring_submit_and_wait(&p->ring, 1);
		while (io_uring_peek_cqe(&p->ring, &cqe) == 0) {
			sent = cqe->res;
			queued = false;
			io_uring_cqe_seen(&p->ring, cqe);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return sent < 0 ? sent : 0;
}
