/* The server's control socket, `ctl` in its state entry: a line protocol
 * (docs/state-dir.md) used by ublk-export-diff --live. */
#ifndef UBLK_CTLSOCK_H
#define UBLK_CTLSOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Listening socket in the device's (checked) entry, mode 0600. fd or -errno. */
int ctlsock_listen(uint32_t id);
/* Accept a client of root or our own euid (SO_PEERCRED); another user's
 * connection is closed: -EPERM. fd or -errno. */
int ctlsock_accept(int lfd);
/* Connect to the entry's server within timeout_ms: the peer must be root
 * or our euid and, when the entry has a pid, that process. fd, -EPERM,
 * -ETIMEDOUT (its backlog stayed full), or -errno. */
int ctlsock_connect(uint32_t id, uint64_t timeout_ms);
/* The same, saying in why what each failure means to a client. */
int ctlsock_connect_why(uint32_t id, uint64_t timeout_ms, char *why, size_t whylen);
/* 0 if fd's peer runs as root or our euid and (want_pid > 0) is want_pid. */
int ctlsock_peer_ok(int fd, pid_t want_pid);
/* Read one line (without its newline) within timeout_ms: > 0 for a line, 0 on EOF,
 * or -ETIMEDOUT / -EMSGSIZE (longer than len - 1) / -errno. */
int ctlsock_read_line(int fd, char *buf, size_t len, uint64_t timeout_ms);
/* The same without waiting, for an event loop: appends what fd has to buf
 * (*used bytes so far) and returns > 0 once a whole line is there, -EAGAIN
 * while it is not, 0 on EOF, -EMSGSIZE or -errno. */
int ctlsock_take_line(int fd, char *buf, size_t len, size_t *used);
int ctlsock_send(int fd, const char *line);
/* Send request (a line with its newline) and read the one-line reply, as
 * ctlsock_read_line; a server that hung up at once may have said why
 * first, so the reply is read even when the send failed, whose error is
 * returned only if there is no reply. */
int ctlsock_ask(int fd, const char *request, char *reply, size_t len, uint64_t timeout_ms);
/* "freeze MS" (a decimal count of milliseconds, 1 to CTLSOCK_MAX_HOLD_MS)
 * into *ms: 0, or -EINVAL for any other line. */
#define CTLSOCK_MAX_HOLD_MS 600000
int ctlsock_parse_freeze(const char *line, uint64_t *ms);

#endif
