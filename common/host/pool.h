/* The devices of a host, seen from the kernel and the state directory
 * together: what ublk-pool lists and reclaims. */
#ifndef UBLK_POOL_H
#define UBLK_POOL_H

#include <linux/limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* The server's statistics (the entry's stats file, docs/state-dir.md). */
struct pool_stats {
	bool valid;             /* the file holds one JSON object */
	bool remote;            /* with a "remote" object: the base is remote */
	uint64_t reads, writes, flushes, discards, errors, bytes_read, bytes_written;
	uint64_t stalled_ms, held_until_ms;
	uint64_t chunks_fetched, bytes_fetched, fetch_errors, chunk_cache_hits;   /* remote */
	uint64_t prefetch_done, prefetch_total;   /* --prefetch: chunks; total 0 without */
	/* --prefetch-trace: chunks of the trace done and in all; reads of
	 * remote chunks, and those the trace had brought */
	uint64_t trace_done, trace_total, trace_reads, trace_hits;
};

struct pool_dev {
	uint32_t id;
	bool in_kernel;         /* /dev/ublk-control knows it */
	bool has_state;         /* an entry in the state directory */
	bool restartable;       /* the entry has the server's arguments (serve_arg) */
	int kernel_state;       /* UBLK_S_DEV_*, -1 if not in the kernel */
	pid_t pid;              /* the server, from the kernel or the entry */
	pid_t kernel_pid;       /* the kernel's (or its cookie's), if in_kernel */
	bool alive;             /* that server runs */
	bool exiting;           /* it runs, but on its way out (killed): still so when
				   pool_scan's wait ran out */
	bool recoverable;       /* made with user recovery and not stopped: IO waits
				   for a new server (ublk-serve --recover) */
	bool can_recover;       /* would be recoverable if its server died (a hung
				   one is killed only then) */
	char state[16];         /* the entry's: starting, live, stopping */
	char base[PATH_MAX], cache[PATH_MAX], name[72];
	char e2b_root[PATH_MAX], e2b_build[40];  /* a device over an E2B build, else "" */
	/* From the entry's features file (docs/kernels.md), else "". */
	char kernel_features[24], device_flags[24], commands[16];
	char layers[4096];      /* the entry's layer= lines, '\n'-separated */
	unsigned n_layers;
	bool read_only;         /* the entry's read_only */
	unsigned queues, depth;
	uint64_t size;
	uint64_t uptime_s;      /* since the entry was made */
	uint64_t cache_bytes;   /* space the cache's data file takes */
	bool has_uptime, has_cache_bytes;       /* the two above are known */
	char stats[2048];       /* the entry's stats file, when it is valid JSON; else "" */
	struct pool_stats stat; /* read from it */
	/* The server's heartbeat: the stats file, rewritten every second. */
	uint64_t heartbeat_age_ms;      /* since it was last written; UINT64_MAX: never */
	uint64_t node_age_s;    /* since /dev/ublkcN appeared (in the kernel only) */
	uint64_t cookie;        /* the entry's (state_entry_cookie) */
	uint64_t kernel_cookie; /* the kernel's (ctrl_owner_cookie), if in_kernel */
	bool unconfirmed;       /* no entry now, but had one (or was not) a moment
				 * before: a tool may be deleting it (pool_scan_unhung) */
};

/* Remove d's state entry if it is still the one pool_scan read: a new
 * device may have taken the id, and made its entry, since. */
int pool_remove_entry(const struct pool_dev *d);

/* Every device either side knows, by id. Returns the count or -errno:
 * -EPERM when the kernel has devices but its control device is not ours
 * to use, -EACCES when the state directory is not ours to read (said on
 * stderr), -EIO when the kernel has devices that cannot be read (said). *out is malloc'd. A server on its way out (pid_alive_settled)
 * is waited for, all of them within settle_ms together; with 0 it counts
 * as alive. */
int pool_scan(struct pool_dev **out, uint64_t settle_ms);
/* The space each device's cache takes (cache_bytes), for list and status
 * only: a stat of a path on a storage mount that hangs hangs with it,
 * and watch, reclaim and metrics must go on for the other devices. The
 * stats get POOL_CACHE_STAT_S in all, in a process of their own; the
 * sizes not known by then are left out, said on stderr. */
#define POOL_CACHE_STAT_S 2
void pool_cache_sizes(struct pool_dev *devs, int n);
#define POOL_GRACE_S 30

/* Why reclaim would act on d, or NULL if d is healthy. A dead server's
 * problem starts with "server is dead"; one still exiting is "server is
 * exiting", and reclaim leaves it alone until it has ended. A kernel device
 * without a state entry counts only once older than grace_s seconds: a
 * tool adding it right now has not written the entry yet. */
const char *pool_problem(const struct pool_dev *d, uint64_t grace_s);
/* Whether pool_problem says d is a kernel device without a state entry. */
bool pool_orphan(const struct pool_dev *d, uint64_t grace_s);
/* The problem of a device whose server runs, under the entry of an
 * earlier device of its id: reclaim removes the entry, not the device. */
#define POOL_EARLIER_ENTRY "state entry of an earlier device"
bool pool_earlier_entry(const char *problem);
/* The statistics in text (a stats file): 0, or -EINVAL when it is not one
 * JSON object (*st is then all zero). */
int pool_read_stats(const char *text, struct pool_stats *st);
/* Whether d's server runs but hangs: no heartbeat for longer than hang_ms
 * and three heartbeat periods (POOL_HUNG_HEARTBEAT: by the wall clock, so
 * a step of the clock looks the same until the next heartbeat), or IO
 * pending with none ending for longer than hang_ms (POOL_HUNG_STALLED, as
 * the server measures it), a live export's declared hold aside. Non-zero
 * with why set, else 0. */
enum { POOL_HUNG_HEARTBEAT = 1, POOL_HUNG_STALLED };
int pool_hung(const struct pool_dev *d, uint64_t hang_ms, char *why, size_t len);

/* Pool-wide coordination through the state directory (docs/state-dir.md):
 * ublk-add holds the pool lock shared while it adds (pool_admit),
 * ublk-pool shutdown holds it exclusive to mark the pool closed. Returns
 * the lock's fd or -errno (-ETIMEDOUT at the deadline). */
int pool_lock(bool exclusive, uint64_t timeout_ms);
/* .names.lock, exclusive: held by a server of a named device from its
 * last check of the name until its entry names it. fd or -errno. */
int pool_names_lock(uint64_t timeout_ms);
/* name in the checked state directory (state_dir_open; created with it
 * when create), opened with flags, never through a link, a regular file
 * only (0600 when created). fd or -errno. */
int pool_file_open(const char *name, int flags, bool create);
/* 1 while a shutdown is in progress. */
int pool_closed(void);
/* Close the pool to new devices: the .shutdown mark, read-locked (other
 * shutdowns may hold it too). Its fd, -ETIMEDOUT when a shutdown that is
 * ending keeps it locked for 1 s, or -errno. pool_reopen(fd) lets go,
 * and removes it if no other shutdown holds it (a negative fd is
 * ignored). */
int pool_close(void);
void pool_reopen(int mark);
/* The largest device limit (--max-devices, UBLK_POOL_MAX). */
#define POOL_MAX_LIMIT (1u << 20)
/* Admission of one more device: the pool lock, shared, held until the
 * device is live or gone (a shutdown waits for it); under a limit
 * (--max-devices, else UBLK_POOL_MAX) also the admission lock, exclusive, held until the
 * kernel has the device (the server reports its id) or it failed. Refused
 * while a shutdown runs (EXIT_BUSY) or when the limit is reached
 * (EXIT_BUSY, "pool full"). 0 with both held (admit -1 without a limit),
 * or a tool exit code with why set and neither held. */
struct pool_admission {
	int lock;
	int admit;
};
int pool_admit(uint64_t max, uint64_t timeout_ms, struct pool_admission *a, char *why, size_t len);
/* The operator's device limit into *max: opt if non-zero, else
 * $UBLK_POOL_MAX, else 0 (none). 0, or -EINVAL with why (a typo in the
 * variable must not lift the limit). */
int pool_max_devices(uint64_t opt, uint64_t *max, char *why, size_t len);
/* Release what is still held of an admission. */
void pool_admit_end(struct pool_admission *a);
/* Record an add or delete and how long it took, for ublk-pool metrics. */
void pool_record(const char *event, uint64_t ms);

#endif
