/*
 * Lines on the control socket (docs/state-dir.md): what a client sends the
 * server ("freeze MS", "thaw") and the server answers, read by
 * ctlsock_read_line from a real socket. Input: a byte choosing the line
 * buffer's size (2 .. 257), then the bytes the peer sends before it hangs
 * up. Every line read is also given to the server's request parser
 * (ctlsock_parse_freeze).
 */
#include "host/ctlsock.h"
#include "fuzz.h"

#include <sys/socket.h>

#define FZ_MAX_INPUT 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	if (size < 1 || size > FZ_MAX_INPUT)
		return -1;
	size_t len = 2 + data[0];
	char *line = malloc(len);
	FZ_ASSERT(line, "out of memory");
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		FZ_DIE("socketpair: %s", strerror(errno));
	if (size > 1 && write(sv[1], data + 1, size - 1) != (ssize_t)(size - 1))
		FZ_DIE("write: %s", strerror(errno));
	shutdown(sv[1], SHUT_WR);
	size_t got = 0;
	for (int i = 0; i < 4096; i++) {
		int ret = ctlsock_read_line(sv[0], line, len, 1000);
		FZ_ASSERT(ret != -ETIMEDOUT, "timed out with the peer gone");
		if (ret <= 0)
			break;
		FZ_ASSERT((size_t)ret <= len && line[ret - 1] == 0, "returned %d for a %zu-byte buffer",
			  ret, len);
		fz_accepted();
		uint64_t ms;
		if (!ctlsock_parse_freeze(line, &ms))
			FZ_ASSERT(ms >= 1 && ms <= CTLSOCK_MAX_HOLD_MS, "freeze of %llu ms accepted",
				  (unsigned long long)ms);
		got += (size_t)ret;
		FZ_ASSERT(got <= size - 1 + (size_t)i + 1, "more bytes than were sent");
	}
	close(sv[0]);
	close(sv[1]);
	free(line);
	return 0;
}
