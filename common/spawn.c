/* Starting ublk-serve: the command line of a new server or of one that
 * recovers a device, then the readiness handshake (host/ready.c). */
#include "spawn.h"
#include "devopts.h"
#include "host/state.h"
#include "kernel/ctrl.h"
#include "util/exitcodes.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* $UBLK_SERVE, else ublk-serve next to this program, else in /usr/local/bin. */
static void serve_path(char *buf, size_t len)
{
	const char *env = getenv("UBLK_SERVE");
	char self[PATH_MAX];
	ssize_t n;

	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		snprintf(buf, len, "%s/ublk-serve", dirname(self));
		if (access(buf, X_OK) == 0)
			return;
	}
	snprintf(buf, len, "/usr/local/bin/ublk-serve");
}

int spawn_recover(uint32_t id, uint64_t timeout_ms, struct ready_result *res, pid_t *pid)
{
	char serve[PATH_MAX], ids[16], secs[32];
	char *argv[] = { serve, "--recover", ids, "--state-dir", (char *)state_dir(),
			 "--timeout", secs, "--ready-fd", "3", NULL };

	serve_path(serve, sizeof(serve));
	snprintf(ids, sizeof(ids), "%u", id);
	snprintf(secs, sizeof(secs), "%.3f", timeout_ms / 1000.0);
	/* ready_spawn deletes no device: this server makes none */
	return ready_spawn(argv, timeout_ms > UINT64_MAX / 2 ? UINT64_MAX : timeout_ms * 2, res, pid);
}

/* The credentials of cfg in a memory file for ublk-serve --secrets-fd
 * (an fd: no other user reads it, unlike argv, and it is gone with the
 * server's start). -1 when there are none; an exit code on failure. */
static int secrets_memfd(const struct server_config *cfg, int *fd, char *why, size_t len)
{
	char *text = malloc(DEVOPTS_SECRETS_MAX);
	int n, code = 0;

	*fd = -1;
	n = text ? devopts_secrets(cfg, text, DEVOPTS_SECRETS_MAX) : -ENOMEM;
	if (n < 0) {
		snprintf(why, len, "passing credentials to the server: %s", strerror(-n));
		code = EXIT_FAIL;
	} else if (n > 0) {
		*fd = memfd_create("ublk-secrets", MFD_CLOEXEC);
		if (*fd < 0 || write(*fd, text, (size_t)n) != n || lseek(*fd, 0, SEEK_SET)) {
			snprintf(why, len, "passing credentials to the server: memfd: %s", strerror(errno));
			code = EXIT_FAIL;
		}
	}
	if (text)
		explicit_bzero(text, DEVOPTS_SECRETS_MAX);
	free(text);
	return code;
}

int spawn_serve(const struct server_config *cfg, int *release_on_id, struct ready_result *res,
		pid_t *pid)
{
	char serve[PATH_MAX], secrets_arg[16], nonce_arg[16];
	char *args[DEVOPTS_MAX_ARGS + 8] = { serve, "--ready-fd", "3", "--owner-nonce", nonce_arg };
	int argn = 5, secrets_fd, code;
	uint32_t nonce;

	memset(res, 0, sizeof(*res));
	res->id = -1;
	if ((code = ctrl_cookie_nonce(&nonce)))
		return snprintf(res->msg, sizeof(res->msg), "getrandom: %s", strerror(-code)), EXIT_FAIL;
	snprintf(nonce_arg, sizeof(nonce_arg), "%08x", nonce);
	code = secrets_memfd(cfg, &secrets_fd, res->msg, sizeof(res->msg));
	if (code)
		return code;
	serve_path(serve, sizeof(serve));
	if (secrets_fd >= 0) {
		snprintf(secrets_arg, sizeof(secrets_arg), "%d", READY_SECRETS_FD);
		args[argn++] = "--secrets-fd";
		args[argn++] = secrets_arg;
	}
	devopts_to_argv(cfg, args, &argn);
	/* The server's own control steps each have the same deadline; give the
	 * whole start-up a little more so its own error wins over our timeout. */
	code = ready_spawn_fd(args, secrets_fd, release_on_id, nonce, cfg->timeout_ms * 2, res, pid);
	if (secrets_fd >= 0)
		close(secrets_fd);
	return code;
}
