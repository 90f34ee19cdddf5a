/* The server's control socket, `ctl` in its state entry: a line protocol
 * (docs/state-dir.md) used by ublk-export-diff --live. */
#ifndef UBLK_CTLSOCK_H
#define UBLK_CTLSOCK_H

#include <stddef.h>
#include <stdint.h>

int ctlsock_listen(uint32_t id);
int ctlsock_connect(uint32_t id);
/* Read one line (without its newline) within timeout_ms: > 0 for a line, 0 on EOF,
 * or -ETIMEDOUT / -errno. */
int ctlsock_read_line(int fd, char *buf, size_t len, uint64_t timeout_ms);
int ctlsock_send(int fd, const char *line);

#endif
