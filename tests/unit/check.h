/* The unit tests' assertion: counts, reports and goes on. Each test ends
 * with check_summary(), the "N passed, N failed" line the suites grep. */
#ifndef TESTS_CHECK_H
#define TESTS_CHECK_H

#include <stdio.h>

static int failures, checks;

#define CHECK(cond, ...) do { \
	checks++; \
	if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
		fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } \
} while (0)

static inline int check_summary(void)
{
	printf("%d passed, %d failed\n", checks - failures, failures);
	return failures ? 1 : 0;
}

#endif
