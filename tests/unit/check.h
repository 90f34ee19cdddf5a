/* The unit tests' assertion: counts, reports and goes on. Each test ends
 * with check_summary(), the "N passed, N failed" line the suites grep. */
#ifndef TESTS_CHECK_H
#define TESTS_CHECK_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int failures, checks;

#define CHECK(cond, ...) do { \
	checks++; \
	if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
		fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } \
} while (0)

/* The whole file dir/name (exit 2 if it cannot be read): test data. */
static inline uint8_t *check_slurp(const char *dir, const char *name, size_t *len)
{
	char path[4096];
	FILE *f;
	uint8_t *buf = NULL;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	*len = 0;
	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) ||
	    !(buf = malloc(n ? (size_t)n : 1)) || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "cannot read %s\n", path);
		exit(2);
	}
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Chunk files (named by their number) in each folder of a chunk cache
 * root, summed; *folders gets how many folders. */
static inline int check_chunk_files(const char *root, int *folders)
{
	DIR *r = opendir(root), *f;
	struct dirent *e, *c;
	char sub[4096];
	int n = 0;

	*folders = 0;
	while (r && (e = readdir(r)))
		if (e->d_name[0] != '.' && e->d_type == DT_DIR) {
			++*folders;
			snprintf(sub, sizeof(sub), "%s/%s", root, e->d_name);
			for (f = opendir(sub); f && (c = readdir(f));)
				n += c->d_name[0] >= '0' && c->d_name[0] <= '9';
			if (f)
				closedir(f);
		}
	if (r)
		closedir(r);
	return n;
}

static inline int check_summary(void)
{
	printf("%d passed, %d failed\n", checks - failures, failures);
	return failures ? 1 : 0;
}

#endif
