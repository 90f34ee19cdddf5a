/* The base layer: a regular file or block device, read with io_uring on
 * the caller's ring. Short reads only happen at end of file and read as
 * zeros; short writes are resumed. */
#include "image/layer_file.h"
#include "image/image.h"
#include "util/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

struct layer_file {
	struct layer l;
	int fd;
	bool write_inline;      /* a regular file: writes are page cache copies */
	bool read_inline;       /* a file in memory (tmpfs): reads are copies */
	char *mapped;           /* a regular file's bytes, for map */
	bool mapped_writable;   /* and for place_write */
	uint64_t mapped_len;    /* the file's size at open (l.size may grow past it) */
};

static void rw_step(struct layer_file *f, struct layer_io *io);

static void rw_complete(struct aio_req *req, int res)
{
	struct layer_io *io = container_of(req, struct layer_io, areq);
	struct layer_file *f = (struct layer_file *)io->layer;

	if (res < 0) {
		io->done(io, res);
		return;
	}
	if (res == 0) {
		if (io->op == LAYER_WRITE) {
			io->done(io, -EIO);
			return;
		}
		/* past end of file: the rest reads as zeros */
		memset((char *)io->buf + io->progress, 0, io->len - io->progress);
		res = (int)(io->len - io->progress);
	}
	io->progress += (uint32_t)res;
	if (io->progress < io->len)
		rw_step(f, io);
	else
		io->done(io, (int)io->len);
}

static void rw_step(struct layer_file *f, struct layer_io *io)
{
	struct io_uring_sqe *sqe;

	io->areq.complete = rw_complete;
	sqe = aio_get_sqe(io->aio, &io->areq);
	if (!sqe) {
		io->done(io, -EAGAIN);
		return;
	}
	if (io->op == LAYER_READ)
		layer_file_prep_read(&f->l, sqe, (char *)io->buf + io->progress,
				     io->len - io->progress, io->off + io->progress);
	else
		io_uring_prep_write(sqe, f->fd, (char *)io->buf + io->progress,
				    io->len - io->progress, io->off + io->progress);
}

/* A buffered write to a regular file is a copy into the page cache, which
 * io_uring hands to a worker thread on file systems without async buffered
 * writes (tmpfs and ext4 on 6.1): two context switches around a memcpy,
 * which cost the overlay two thirds of its write rate. It is done here,
 * on the queue's thread, as the kernel's loop driver does from its own;
 * like loop's, it waits when the kernel throttles dirty pages. */
static void write_inline(struct layer_file *f, struct layer_io *io)
{
	int ret = pwrite_full(f->fd, io->buf, io->len, io->off);
	io->done(io, ret ? ret : (int)io->len);
}

/* A read of a file that lives in memory is a copy, which io_uring hands to
 * a worker thread where the file system does not promise non-blocking
 * reads (tmpfs on 6.12: the switches cost 4 KiB reads 60% of their rate).
 * A small one is done here, as writes are; a large one stays on the ring,
 * where the worker's copy runs beside the queue thread's copy to the
 * request (6.12, 128 KiB at depth 8: 0.65 of loop on the ring, 0.49
 * here). The pages of a swapped-out tmpfs file make it wait, as loop's
 * worker would. */
#define READ_INLINE_MAX (32u << 10)

int layer_file_read_now(struct layer *l, void *buf, uint32_t len, uint64_t off)
{
	struct layer_file *f = (struct layer_file *)l;

	if (!f->read_inline || len > READ_INLINE_MAX)
		return -EAGAIN;
	int ret = pread_zeros_past_end(f->fd, buf, len, off);   /* as rw_complete reads past the end */
	return ret == -EAGAIN ? -EIO : ret;
}

/* A large read of a file in memory goes to an io_uring worker at once:
 * its copy from the page cache then runs beside the queue thread's copy
 * into the request. 6.1 would try it on the queue thread first and, the
 * pages being there, do both copies on that one thread; 6.12 hands it
 * over anyway (tmpfs has no FMODE_NOWAIT). */
void layer_file_prep_read(struct layer *l, struct io_uring_sqe *sqe, void *buf, uint32_t len,
			  uint64_t off)
{
	struct layer_file *f = (struct layer_file *)l;

	io_uring_prep_read(sqe, f->fd, buf, len, off);
	if (f->read_inline && len > READ_INLINE_MAX)
		sqe->flags |= IOSQE_ASYNC;
}

static void file_rw(struct layer *l, struct layer_io *io)
{
	struct layer_file *f = (struct layer_file *)l;
	int ret;

	if (io->op == LAYER_WRITE && f->write_inline)
		write_inline(f, io);
	else if (io->op == LAYER_READ && (ret = layer_file_read_now(l, io->buf, io->len, io->off)) != -EAGAIN)
		io->done(io, ret ? ret : (int)io->len);
	else
		rw_step(f, io);
}

static void simple_complete(struct aio_req *req, int res)
{
	struct layer_io *io = container_of(req, struct layer_io, areq);
	io->done(io, res < 0 ? res : 0);
}

static struct io_uring_sqe *simple_sqe(struct layer_io *io)
{
	struct io_uring_sqe *sqe;

	io->areq.complete = simple_complete;
	sqe = aio_get_sqe(io->aio, &io->areq);
	if (!sqe)
		io->done(io, -EAGAIN);
	return sqe;
}

static void file_flush(struct layer *l, struct layer_io *io)
{
	struct io_uring_sqe *sqe = simple_sqe(io);
	if (sqe)
		io_uring_prep_fsync(sqe, ((struct layer_file *)l)->fd, IORING_FSYNC_DATASYNC);
}

static void file_discard(struct layer *l, struct layer_io *io)
{
	struct io_uring_sqe *sqe = simple_sqe(io);
	/* A punched hole reads as zeros, which both discard and write-zeroes
	 * promise; it also gives the space back. */
	if (sqe)
		io_uring_prep_fallocate(sqe, ((struct layer_file *)l)->fd,
					FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					io->off, io->len);
}

/* Holes as the file system reports them; one that cannot (EINVAL) or a
 * block device has data everywhere. Past the end reads as zeros. */
static enum layer_extent file_extent(struct layer *l, uint64_t off, uint64_t *len)
{
	int fd = ((struct layer_file *)l)->fd;
	off_t data = lseek(fd, (off_t)off, SEEK_DATA), hole;

	if (data < 0)
		return errno == ENXIO ? LAYER_ZEROS : LAYER_DATA;
	if ((uint64_t)data > off) {
		if ((uint64_t)data - off < *len)
			*len = (uint64_t)data - off;
		return LAYER_ZEROS;
	}
	hole = lseek(fd, (off_t)off, SEEK_HOLE);
	if (hole > data && (uint64_t)hole - off < *len)
		*len = (uint64_t)hole - off;
	return LAYER_DATA;
}

/* Any block of a mapped file, where the file was when opened. */
static int file_map(struct layer *l, uint64_t off, uint32_t len, struct layer_map *m)
{
	struct layer_file *f = (struct layer_file *)l;

	if (off > f->mapped_len || len > f->mapped_len - off)
		return 0;
	return layer_map_piece(m, f->mapped + off, len);
}

void *layer_file_place(struct layer *l, uint64_t off, uint32_t len)
{
	struct layer_file *f = (struct layer_file *)l;

	if (!f->mapped_writable || off > f->mapped_len || len > f->mapped_len - off)
		return NULL;
	return f->mapped + off;
}

static int file_place_write(struct layer *l, uint64_t off, uint32_t len, void **at)
{
	return (*at = layer_file_place(l, off, len)) ? 0 : -EAGAIN;
}

static int file_write_placed(struct layer *l, uint64_t off, uint32_t len)
{
	(void)l;
	(void)off;
	return len ? 0 : -EAGAIN;
}

static void file_close(struct layer *l)
{
	struct layer_file *f = (struct layer_file *)l;
	if (f->mapped)
		munmap((void *)f->mapped, (size_t)f->mapped_len);
	close(f->fd);
	free(f);
}

static const struct layer_ops file_ops = {
	.name = "file",
	.read = file_rw,
	.write = file_rw,
	.flush = file_flush,
	.discard = file_discard,
	.close = file_close,
	.extent = file_extent,
	.map = file_map,
	.place_write = file_place_write,
	.write_placed = file_write_placed,
};

int layer_file_fd(const struct layer *l)
{
	return ((const struct layer_file *)l)->fd;
}

int layer_file_open(const char *path, bool read_only, struct layer **out)
{
	uint64_t size;
	int fd, ret;

	ret = image_open(path, read_only, &fd, &size, NULL, 0);
	return ret ? ret : layer_file_adopt(fd, size, read_only, out);
}

int layer_file_adopt(int fd, uint64_t size, bool read_only, struct layer **out)
{
	struct layer_file *f;
	struct stat st;

	f = calloc(1, sizeof(*f));
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	f->l.ops = &file_ops;
	f->l.size = size;
	f->l.read_only = read_only;
	f->fd = fd;
	struct statfs fs;
	bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	f->write_inline = !read_only && regular;
	/* a hole punched past the end changes nothing where holes can be */
	f->l.no_discard = f->write_inline &&
			  fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    (st.st_size + LAYER_BLOCK_SIZE - 1) / LAYER_BLOCK_SIZE * LAYER_BLOCK_SIZE,
				    LAYER_BLOCK_SIZE) && (errno == EOPNOTSUPP || errno == ENOSYS);
	/* what a cache over it records: a base written in place or replaced
	 * under its name gets another time */
	if (read_only && regular) {
		f->l.version_key = "file";
		snprintf(f->l.version, sizeof(f->l.version), "%llu %lld.%09ld",
			 (unsigned long long)st.st_size, (long long)st.st_mtim.tv_sec,
			 st.st_mtim.tv_nsec);
	}
	f->read_inline = regular && fstatfs(fd, &fs) == 0 &&
			 (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
	/* Read in place by the kernel (USER_COPY), a read is one copy from
	 * the page cache where the ring's read and ublk's commit make two;
	 * a write's data copied into the mapping is one where reading it
	 * out of /dev/ublkcN and writing it to the file make two. */
	if (regular && size && size <= SIZE_MAX) {
		void *m = read_only ? MAP_FAILED
				    : mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		f->mapped_writable = m != MAP_FAILED;
		if (m == MAP_FAILED)   /* some file systems map for reading only */
			m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
		f->mapped = m == MAP_FAILED ? NULL : m;
		f->mapped_len = f->mapped ? size : 0;
		f->l.maps = f->mapped != NULL;
	}
	*out = &f->l;
	return 0;
}
