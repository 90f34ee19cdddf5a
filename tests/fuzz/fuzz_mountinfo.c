/*
 * Mount tables (/proc/PID/mountinfo) as ublk-del and ublk-pool read them
 * to say who holds a device: a sandbox chooses its mountpoints and bind
 * mounts' roots, which the kernel escapes only for blanks and
 * backslashes. Input: a flags byte (bit 0: the partition is on another
 * major than the disk; bits 1-7: the message buffer's size), then the
 * table. The harness puts a mount of the disk first, which must be found
 * and said first whatever follows.
 */
#include "host/holders.h"
#include "fuzz.h"

#include <sys/sysmacros.h>

#define FZ_MAX_INPUT 16384
#define PLANTED "1 2 259:5 / /planted rw - ext4 /dev/ublkb5 rw\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > FZ_MAX_INPUT)
		return -1;
	dev_t devs[2] = { makedev(259, 5), data[0] & 1 ? makedev(8, 17) : makedev(259, 6) };
	size_t len = 32 + (size_t)(data[0] >> 1) * 64;
	size_t table_len = strlen(PLANTED) + size - 1;
	char *table = malloc(table_len), *desc = malloc(len);
	FZ_ASSERT(table && desc, "out of memory");
	memcpy(table, PLANTED, strlen(PLANTED));
	memcpy(table + strlen(PLANTED), data + 1, size - 1);
	FILE *f = fmemopen(table, table_len, "r");
	FZ_ASSERT(f, "fmemopen: %s", strerror(errno));

	int found = mount_table_holders(f, devs, 2, desc, len);
	fclose(f);

	size_t lines = 1;
	for (size_t i = 0; i < table_len; i++)
		lines += table[i] == '\n';
	FZ_ASSERT(found >= 1 && (size_t)found <= lines, "%d mounts found in %zu lines", found, lines);
	FZ_ASSERT(memchr(desc, 0, len), "the message is not terminated within its %zu bytes", len);
	FZ_ASSERT(!strncmp(desc, "mounted on /planted", strlen("mounted on /planted")),
		  "the planted mount is not said first: '%.80s'", desc);
	for (const unsigned char *c = (const unsigned char *)desc; *c; c++)
		FZ_ASSERT(*c >= 0x20 && *c != 0x7f, "control byte 0x%02x in the message", *c);
	if (found > 1)
		fz_accepted();
	free(table);
	free(desc);
	return 0;
}
