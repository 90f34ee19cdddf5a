/* bare-devices N: add N ublk devices that no server ever starts, and print
 * their ids. A host with thousands of sandboxes has thousands of devices;
 * the VM cannot run a server for each, but the tools that list, count and
 * delete devices must see every one of them. */
#include "kernel/ctrl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct ublk_ctrl c;
	long n = argc == 2 ? strtol(argv[1], NULL, 10) : 0;
	int ret;

	if (n <= 0 || n > 100000) {
		fprintf(stderr, "usage: bare-devices N (1-100000)\n");
		return 2;
	}
	if ((ret = ctrl_open(&c, 10000))) {
		fprintf(stderr, "bare-devices: %s: %s\n", ctrl_path(), strerror(-ret));
		return 1;
	}
	for (long i = 0; i < n; i++) {
		/* the smallest device: one queue of one tag */
		struct ublksrv_ctrl_dev_info info = {
			.nr_hw_queues = 1, .queue_depth = 1, .max_io_buf_bytes = 4096,
			.dev_id = (uint32_t)-1,
		};
		if ((ret = ctrl_add_dev(&c, &info))) {
			fprintf(stderr, "bare-devices: ADD_DEV of device %ld: %s\n", i + 1, strerror(-ret));
			ctrl_close(&c);
			return 1;
		}
		printf("%u\n", info.dev_id);
	}
	ctrl_close(&c);
	return 0;
}
