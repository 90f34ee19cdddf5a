/* Reading a file through its mapping when the file may be cut short
 * meanwhile: the kernel then raises SIGBUS on the next touch of a page
 * past the new end, which must be an error here, not the server's death. */
#ifndef UBLK_SIGBUS_H
#define UBLK_SIGBUS_H

#include <stddef.h>

/* Run fn(arg), which reads [lo, lo + len) of a mapped file: 0, or -EFAULT
 * when a page of that range was gone (fn stopped where it was). A SIGBUS
 * outside the range, or on another thread, kills the process as before. */
int sigbus_guard(const void *lo, size_t len, void (*fn)(void *arg), void *arg);

#endif
