/* A service manager's readiness protocol (sd_notify(3)): a datagram to
 * $NOTIFY_SOCKET, so a unit of Type=notify knows when the service is up.
 * No libsystemd: the protocol is one sendto. */
#ifndef UBLK_NOTIFY_H
#define UBLK_NOTIFY_H

/* Send state ("READY=1", "STOPPING=1", ...) if $NOTIFY_SOCKET is set: 1
 * sent, 0 not asked for, or -errno. */
int notify_service(const char *state);

#endif
