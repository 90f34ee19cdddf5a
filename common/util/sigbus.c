#include "util/sigbus.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* The guarded range and where to go back to, per thread. */
static __thread sigjmp_buf *guard_jmp;
static __thread uintptr_t guard_lo, guard_hi;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	uintptr_t at = (uintptr_t)si->si_addr;
	struct sigaction dfl;

	(void)uc;
	if (si->si_code > 0 && guard_jmp && at >= guard_lo && at < guard_hi)
		siglongjmp(*guard_jmp, 1);
	/* not ours: a fault runs its access again and dies of it, a signal
	 * someone sent is sent again */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(sig, &dfl, NULL);
	if (si->si_code <= 0)
		raise(sig);
}

static void install_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	/* NODEFER: leaving with siglongjmp (which restores no mask: that
	 * would be a syscall per call) must not leave SIGBUS blocked */
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}

int sigbus_guard(const void *lo, size_t len, void (*fn)(void *arg), void *arg)
{
	sigjmp_buf jb;
	volatile int ret = -EFAULT;

	pthread_once(&handler_once, install_handler);
	if (sigsetjmp(jb, 0) == 0) {
		guard_lo = (uintptr_t)lo;
		guard_hi = (uintptr_t)lo + len;
		guard_jmp = &jb;
		atomic_signal_fence(memory_order_seq_cst);
		fn(arg);
		atomic_signal_fence(memory_order_seq_cst);
		ret = 0;
	}
	guard_jmp = NULL;
	return ret;
}
