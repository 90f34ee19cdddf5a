#include "aio.h"

#include <errno.h>
#include <string.h>

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
