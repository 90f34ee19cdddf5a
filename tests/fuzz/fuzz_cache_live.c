/*
 * The live block map FILE.live (docs/cache-format.md, Live map) as
 * cache_live_load reads it after a server died. Input: the file. What the
 * caller expects (cache id, generation, bytes of states) is taken from the
 * input's own header, bent by byte 12 (a byte the format leaves unused),
 * so the fuzzer reaches both the accept and the refuse paths; a boot id
 * field starting with "BOOT" is replaced by this boot's id.
 */
#include "image/cache_live.h"
#include "fuzz.h"

#define LIVE_HDR 4096u
#define MAX_STATES (1u << 20)
#define FZ_MAX_INPUT (LIVE_HDR + MAX_STATES + 4096)

static int fd = -1;
static char path[300], live_path[300];
static uint8_t copy[FZ_MAX_INPUT];
static uint8_t map[MAX_STATES + 1];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(path, sizeof(path), "%s/c", fz_dir());
	fd = fz_file("c.live", live_path, sizeof(live_path));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t id[16] = { 0 }, sel = size > 12 ? data[12] : 0;
	uint64_t gen = 0, bytes = size > LIVE_HDR ? size - LIVE_HDR : 0;
	char why[1024];

	if (size > FZ_MAX_INPUT)
		return -1;
	memcpy(copy, data, size);
	fz_live_boot_fixup(copy, size);
	if (size >= 88) {
		if (!(sel & 1))
			memcpy(id, copy + 16, 16);
		gen = fz_get64(copy + 72) - ((sel >> 1) & 1);
		if (!(sel & 4) && fz_get64(copy + 80) <= MAX_STATES)
			bytes = fz_get64(copy + 80);
	}
	if (bytes > MAX_STATES)
		bytes = MAX_STATES;
	fz_fill(fd, copy, size);
	map[bytes] = 0xa5;   /* canary: nothing may be written past the states */
	int ret = cache_live_load(path, id, gen, map, bytes, why, sizeof(why));
	FZ_ASSERT(ret >= -4095 && ret <= 1, "returned %d", ret);
	FZ_ASSERT(map[bytes] == 0xa5, "wrote past %llu bytes of states", (unsigned long long)bytes);
	if (ret == 1)
		fz_accepted();
	return 0;
}
