/*
 * What a chunk cache root holds when a device opens its image there
 * (docs/remote.md): the image folder's key file, chunk files of any name,
 * size, type and age, links planted where chunks belong, other images'
 * folders, unshared folders and temporaries that dead servers left, the
 * root's ".stored" count. The root is checked to be ours, so these come
 * from our own processes of any version, killed at any moment, or from a
 * user who can write as us; every one must be refused or used right.
 *
 * Input: a flags byte (chunk size 4-32 KiB, the right key or part 0 as
 * the key file, a store or not), the image size byte, the limit byte, then
 * parts cut at FZ_SEP: the key file; the entries, one a line "K NAME SIZE
 * AGE" (K: f a file in the image's folder, l a link there to a file
 * outside the root, d a folder there, o a file in another image's folder,
 * u a file in an unshared folder, L a link in the root to the folder
 * outside it); ".stored".
 *
 * Invariants: a chunk read or mapped gives the bytes of its own regular
 * file of the chunk's length, never a link's target's; the file outside
 * the root is never changed or removed; a store reads back, however
 * small the limit.
 */
#include "image/chunkcache.h"
#include "fuzz.h"

#include <stdbool.h>
#include <sys/time.h>

#define FZ_URL "https://example.com/img.raw"
#define FZ_VALIDATOR "\"v1\""
#define FZ_MAX_ENTRIES 64
#define FZ_MAX_FILE 65536

static char root[512], folder[600], outside_dir[600], outside[700], right_key[16384];
static size_t right_key_len;

/* The byte at offset i of chunk file name: what a chunk holds here. */
static uint8_t fill_byte(const char *name, size_t i)
{
	uint32_t h = 2166136261u;
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return (uint8_t)(h + i * 31);
}

static void put(const char *dir, const char *name, size_t size, long age, char kind)
{
	char path[1200];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (kind == 'l' || kind == 'L') {
		if (symlink(kind == 'l' ? outside : outside_dir, path) && errno != EEXIST)
			FZ_DIE("symlink %s: %s", path, strerror(errno));
		return;
	}
	if (kind == 'd') {
		mkdir(path, 0700);
		return;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return;   /* a name taken by a link or folder, or not a name */
	static uint8_t buf[FZ_MAX_FILE];
	for (size_t i = 0; i < size; i++)
		buf[i] = fill_byte(name, i);
	if (size && write(fd, buf, size) != (ssize_t)size)
		FZ_DIE("write %s: %s", path, strerror(errno));
	struct timespec t[2] = { { time(NULL) - age, 0 }, { time(NULL) - age, 0 } };
	futimens(fd, t);
	close(fd);
}

/* The image's folder name, learned from an open on an empty root. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct chunk_image ci;
	char why[512];
	(void)argc, (void)argv;

	snprintf(root, sizeof(root), "%s/chunks", fz_dir());
	snprintf(outside_dir, sizeof(outside_dir), "%s/odir", fz_dir());
	snprintf(outside, sizeof(outside), "%s/0", outside_dir);
	if (mkdir(root, 0700) || mkdir(outside_dir, 0700))
		FZ_DIE("mkdir %s: %s", root, strerror(errno));
	if (chunk_image_open(&ci, root, FZ_URL, FZ_VALIDATOR, 1 << 20, 4096, 0, why, sizeof(why)))
		FZ_DIE("chunk_image_open: %s", why);
	chunk_image_close(&ci);
	return 0;
}

static void check_outside(void)
{
	struct stat st;
	FZ_ASSERT(!lstat(outside, &st) && S_ISREG(st.st_mode) && st.st_size == 4096,
		  "the file outside the root was changed or removed");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3 || size > 16384)
		return -1;
	uint8_t flags = data[0];
	uint32_t chunk = 4096u << (flags & 3);
	uint64_t img_size = (1 + (uint64_t)data[1]) * 1000;
	uint64_t limit = (uint64_t)data[2] * 4096;
	struct fz_part part[3];
	fz_split(data + 3, size - 3, part, 3);
	struct chunk_image ci;
	char why[512], path[1200];

	/* a fresh root: the image's folder as this input has it */
	fz_remove_tree(root);
	mkdir(root, 0700);
	put(outside_dir, "0", 4096, 0, 'f');
	/* where this image's folder is (its name hashes url, validator, size, chunk) */
	if (chunk_image_open(&ci, root, FZ_URL, FZ_VALIDATOR, img_size, chunk, limit, why,
			     sizeof(why)))
		FZ_DIE("chunk_image_open on an empty root: %s", why);
	snprintf(folder, sizeof(folder), "%s", ci.dir);
	int kfd = openat(ci.dirfd, "key", O_RDONLY | O_CLOEXEC);
	right_key_len = kfd < 0 ? 0 : (size_t)read(kfd, right_key, sizeof(right_key));
	if (kfd >= 0)
		close(kfd);
	chunk_image_close(&ci);

	snprintf(path, sizeof(path), "%s/key", folder);
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		FZ_DIE("open %s: %s", path, strerror(errno));
	const void *key = flags & 0x80 ? (const void *)right_key : part[0].p;
	size_t key_len = flags & 0x80 ? right_key_len : part[0].len;
	if (key_len && write(fd, key, key_len) != (ssize_t)key_len)
		FZ_DIE("write key");
	close(fd);

	char other[700], unshared[700];
	snprintf(other, sizeof(other), "%s/0123abcd", root);
	snprintf(unshared, sizeof(unshared), "%s/u0123abcd", root);
	mkdir(other, 0700);
	mkdir(unshared, 0700);
	char *lines = fz_strndup(part[1].p, part[1].len), *save = NULL;
	int n = 0;
	for (char *l = strtok_r(lines, "\n", &save); l && n < FZ_MAX_ENTRIES;
	     l = strtok_r(NULL, "\n", &save), n++) {
		char kind, name[256];
		unsigned long fsize = 0;
		long age = 0;
		if (sscanf(l, "%c %255s %lu %ld", &kind, name, &fsize, &age) < 2 || strchr(name, '/') ||
		    !strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		if (age < -86400 || age > 10 * 365 * 86400l)
			age = 0;
		if (fsize > FZ_MAX_FILE)
			fsize = FZ_MAX_FILE;
		const char *dir = kind == 'o' ? other : kind == 'u' ? unshared : kind == 'L' ? root : folder;
		put(dir, name, fsize, age, kind == 'o' || kind == 'u' ? 'f' : kind);
	}
	free(lines);
	/* an unshared folder is old when its mtime is, whatever it holds */
	struct timespec old[2] = { { time(NULL) - 7200, 0 }, { time(NULL) - 7200, 0 } };
	utimensat(AT_FDCWD, unshared, old, 0);
	if (part[2].p) {
		snprintf(path, sizeof(path), "%s/.stored", root);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd >= 0 && part[2].len && write(fd, part[2].p, part[2].len) < 0)
			FZ_DIE("write .stored");
		if (fd >= 0)
			close(fd);
	}

	int ret = chunk_image_open(&ci, root, FZ_URL, FZ_VALIDATOR, img_size, chunk, limit, why,
				   sizeof(why));
	if (ret) {
		FZ_ASSERT(why[0], "refused without a reason");
		check_outside();
		return 0;
	}
	fz_accepted();
	static uint8_t buf[32768];
	for (uint64_t idx = 0; idx < ci.nchunks && idx < 8; idx++) {
		uint32_t len = chunk_image_len(&ci, idx);
		char name[32];
		struct stat st;
		snprintf(name, sizeof(name), "%llu", (unsigned long long)idx);
		bool real = !fstatat(ci.dirfd, name, &st, AT_SYMLINK_NOFOLLOW) && S_ISREG(st.st_mode) &&
			    (uint64_t)st.st_size == len;
		FZ_ASSERT(chunk_present(&ci, idx) == real, "chunk %s present %d, file says %d", name,
			  chunk_present(&ci, idx), real);
		ret = chunk_read(&ci, idx, 0, len, buf);
		FZ_ASSERT(real ? !ret : ret == -ENOENT, "chunk %s read %d, file is %s", name, ret,
			  real ? "there" : "not a chunk");
		for (uint32_t i = 0; !ret && i < len; i++)
			FZ_ASSERT(buf[i] == fill_byte(name, i), "chunk %s byte %u is not its file's", name, i);
		const void *p;
		struct chunk_open *pin;
		ret = chunk_map(&ci, idx, 0, len, &p, &pin);
		FZ_ASSERT(real ? !ret || ret == -EAGAIN : ret == -ENOENT, "chunk %s mapped %d", name, ret);
		if (!ret) {
			for (uint32_t i = 0; i < len; i++)
				FZ_ASSERT(((const uint8_t *)p)[i] == fill_byte(name, i),
					  "mapped chunk %s byte %u is not its file's", name, i);
			chunk_unpin(pin);
		}
	}
	/* a store (of a chunk not there, as a fetch does) runs the eviction
	 * scan when ".stored" says it is due */
	uint64_t idx = (flags >> 2) % ci.nchunks;
	if (flags & 0x40 && !chunk_present(&ci, idx)) {
		static uint8_t back[32768];
		uint32_t len = chunk_image_len(&ci, idx);
		memset(buf, 0xa5, len);
		ret = chunk_store(&ci, idx, buf, len);
		/* its own eviction scan, however small the limit, keeps it */
		if (!ret) {
			ret = chunk_read(&ci, idx, 0, len, back);
			FZ_ASSERT(!ret, "stored chunk %llu does not read back: %d", (unsigned long long)idx,
				  ret);
			FZ_ASSERT(!memcmp(back, buf, len), "stored chunk %llu reads back wrong",
				  (unsigned long long)idx);
		}
		/* a folder where the chunk belongs cannot be replaced: the fetch
		 * fails, naming the chunk */
		struct stat st;
		snprintf(path, sizeof(path), "%s/%llu", folder, (unsigned long long)idx);
		FZ_ASSERT(!ret || (ret == -EISDIR && !lstat(path, &st) && S_ISDIR(st.st_mode)),
			  "store: %d", ret);
	}
	chunk_image_close(&ci);
	check_outside();
	return 0;
}
