/* Monotonic deadlines: every wait in the toolkit has one. */
#ifndef UBLK_TIMEUTIL_H
#define UBLK_TIMEUTIL_H

#include <stdint.h>
#include <sys/types.h>

uint64_t now_ms(void);
/* Wall-clock milliseconds since the epoch: for times other processes read. */
uint64_t wall_ms(void);
uint64_t now_ns(void);
/* Milliseconds left until deadline (absolute, now_ms() based); 0 if past. */
uint64_t ms_left(uint64_t deadline);
/* The deadline timeout_ms from now, saturating instead of wrapping. */
uint64_t deadline_ms(uint64_t timeout_ms);
void sleep_ms(uint64_t ms);
/* ms as a poll()/epoll_wait() timeout: capped at INT_MAX (about 24.8 days),
 * never negative, so a long deadline is not cut short or made infinite by
 * a cast. Callers loop until their deadline has passed. */
int poll_timeout(uint64_t ms);

/* Wait until process pid has exited, at most timeout_ms. 0 if it has gone,
 * -ETIMEDOUT if it is still there. Works for non-children (pidfd). */
int wait_pid_gone(pid_t pid, uint64_t timeout_ms);
/* The same for the process of a pidfd (every thread exited): 0 or
 * -ETIMEDOUT. */
int wait_pidfd(int fd, uint64_t timeout_ms);
/* A pidfd of process pid (it stays this process's, whoever takes the pid
 * later), or -errno. */
int pidfd_of(pid_t pid);
/* Signal sig to the process of a pidfd (0: only whether it still runs):
 * 0 or -errno (-ESRCH: it has ended). */
int pidfd_signal(int fd, int sig);
/* 1 if a process with this pid exists (and is not a zombie), else 0. */
int pid_alive(pid_t pid);
/* Seconds since process pid started, or UINT64_MAX if it cannot be told. */
uint64_t pid_age_s(pid_t pid);
/* pid_alive for a process another may have just killed: one on its way
 * out (SIGKILL pending, or exiting) is given up to timeout_ms to go. A
 * kill -9 is not instant, and "kill it, then reclaim" must not find it
 * still running. 0 if it is gone, 1 if it runs, PID_EXITING if it is
 * still on its way out when the wait runs out (it is still there). */
int pid_alive_settled(pid_t pid, uint64_t timeout_ms);
/* Fork a process nobody waits for (forked twice, the middle one reaped
 * here), for work that may never end (a read or stat stuck in the
 * kernel): it holds none of our descriptors but keep_fd (as fd 3; -1 for
 * none), /dev/null as 0-2, in a session of its own. Returns 0 in it, the
 * middle one's pid in the caller, or -errno. */
pid_t fork_orphan(int keep_fd);
#define PID_EXITING 2
/* How long tools give a killed server to finish exiting. */
#define PID_EXIT_WAIT_MS 10000

#endif
