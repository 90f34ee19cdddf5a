/* Exit codes shared by every tool; documented in docs/exit-codes.md, each
 * tool's --help and man page (tests/check-exit-codes.py keeps the four in
 * agreement). Scripts rely on them: never renumber, only add. */
#ifndef UBLK_EXITCODES_H
#define UBLK_EXITCODES_H

enum ublk_exit {
	EXIT_OK = 0,
	EXIT_FAIL = 1,       /* anything not covered below */
	EXIT_USAGE = 2,      /* bad option or argument */
	EXIT_NO_UBLK = 3,    /* kernel has no ublk (/dev/ublk-control missing) */
	EXIT_PERM = 4,       /* not allowed: needs root / CAP_SYS_ADMIN */
	EXIT_BAD_IMAGE = 5,  /* image file missing, unreadable or malformed */
	EXIT_NO_DEVICE = 6,  /* no such ublk device */
	EXIT_TIMEOUT = 7,    /* a deadline expired */
	EXIT_BUSY = 8,       /* held open at the deadline; name, cache or server in use; pool full or closed */
};

/* Map a -errno from the library to the exit code a tool should return. */
int exit_code_for(int err);
/* The same for an image, diff or header that could not be opened: refused
 * access (a file's, or HTTP 401/403) 4, a deadline 7, memory 1, anything
 * else (missing, unreadable, malformed) 5. */
int exit_code_for_image(int err);

#endif
