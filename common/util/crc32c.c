#include "util/crc32c.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

static uint32_t table[8][256];

static void init_table(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

#if defined(__x86_64__)
/* The SSE4.2 crc32 instruction computes CRC-32C itself, 8 bytes a step. */
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t c = ~crc;
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
	}
	uint32_t c32 = (uint32_t)c;
	while (len--)
		c32 = __builtin_ia32_crc32qi(c32, *p++);
	return ~c32;
}
#endif

/* Slicing-by-8: eight table lookups per 8 bytes. */
static uint32_t crc32c_sw(uint32_t crc, const unsigned char *p, size_t len)
{
	crc = ~crc;
	while (len >= 8) {
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
				     (uint32_t)p[3] << 24);
		crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
		      table[4][lo >> 24] ^ table[3][p[4]] ^ table[2][p[5]] ^ table[1][p[6]] ^
		      table[0][p[7]];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

typedef uint32_t (*crc32c_fn)(uint32_t crc, const unsigned char *p, size_t len);

static crc32c_fn chosen = crc32c_sw;
static pthread_once_t choose_once = PTHREAD_ONCE_INIT;

static bool has_sse42(void)
{
#if defined(__x86_64__)
	return __builtin_cpu_supports("sse4.2");
#else
	return false;
#endif
}

static crc32c_fn way_fn(enum crc32c_way way)
{
#if defined(__x86_64__)
	if (way == CRC32C_SSE42)
		return crc32c_hw;
#endif
	(void)way;
	return crc32c_sw;
}

/* Best of three runs over a sample: one preemption must not decide. */
static uint64_t sample_ns(crc32c_fn fn)
{
	static unsigned char sample[16384];
	uint64_t best = UINT64_MAX;
	for (int run = 0; run < 3; run++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		/* the barriers keep the call between the two clock readings */
		__asm__ volatile("" : : "r"(sample) : "memory");
		volatile uint32_t sink = fn(0, sample, sizeof(sample));
		(void)sink;
		__asm__ volatile("" : : : "memory");
		clock_gettime(CLOCK_MONOTONIC, &b);
		uint64_t ns = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)b.tv_nsec -
			      (uint64_t)a.tv_nsec;
		if (ns < best)
			best = ns;
	}
	return best;
}

/* On hardware the instruction is 3x faster than the table; an emulator
 * (qemu's TCG, which runs our VM tests, or a CI host without KVM) computes it
 * a byte at a time in a helper and the table is 5x faster there. Time both
 * once per process, as the kernel's raid6 code picks its routines: 16 KiB
 * each, a few microseconds on hardware. */
static void choose(void)
{
	init_table();
	if (has_sse42() && sample_ns(way_fn(CRC32C_SSE42)) <= sample_ns(crc32c_sw))
		chosen = way_fn(CRC32C_SSE42);
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&choose_once, choose);
	return chosen(crc, buf, len);
}

enum crc32c_way crc32c_chosen(void)
{
	pthread_once(&choose_once, choose);
	return chosen == crc32c_sw ? CRC32C_TABLE : CRC32C_SSE42;
}

int crc32c_by(enum crc32c_way way, uint32_t crc, const void *buf, size_t len, uint32_t *out)
{
	if (way == CRC32C_SSE42 && !has_sse42())
		return -ENOTSUP;
	pthread_once(&choose_once, choose);
	*out = way_fn(way)(crc, buf, len);
	return 0;
}
