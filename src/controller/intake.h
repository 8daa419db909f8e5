/* intake.h - the controller's intake: where every rank's events arrive.
 *
 * One single-threaded epoll loop accepts rank connections, authenticates
 * them with the run token (HELLO/WELCOME, see docs/protocol.md), decodes
 * their frames, appends every event to the run's journal and keeps each
 * rank's PI series in memory for the report and the policy.  A bad peer
 * loses its own connection, never the controller or another rank's data.
 */
#ifndef PM_INTAKE_H
#define PM_INTAKE_H

#include <stddef.h>
#include <stdint.h>

#include "common/journal.h"
#include "common/wire.h"

typedef struct intake intake;

typedef struct {
  const char *listen_host; /* numeric address to bind; NULL: "127.0.0.1" */
  uint16_t port;           /* 0: any free port */
  const char *token;       /* the run token, copied; required, <= 128 bytes */
  journal *journal;        /* borrowed; NULL: events are not journaled */
  int hello_timeout_ms;    /* 0: INTAKE_HELLO_TIMEOUT_MS */
  int max_conns;           /* 0: INTAKE_MAX_CONNS */
  /* Where checkpoints may live (the run directory, or the job's own
   * checkpoint directory); NULL: anywhere.  A CHECKPOINT outside it, or
   * any path that is not absolute and normal, is journaled as
   * "checkpoint_refused" and never offered for a resume. */
  const char *checkpoint_root;
  char *err;               /* optional: why intake_open failed, one line */
  size_t err_cap;
} intake_opts;

#define INTAKE_HELLO_TIMEOUT_MS 3000
#define INTAKE_MAX_CONNS 4096
#define INTAKE_MAX_RANK 1048575u /* a larger rank number is refused */
#define INTAKE_DRAIN_MS 2000     /* intake_run_until's wait for last frames */

/* One finished paramount iteration as the rank reported it. */
typedef struct {
  uint64_t iter;
  uint64_t t_begin_ns; /* CLOCK_REALTIME of the rank */
  uint64_t wall_ns, compute_ns, comm_ns;
  uint64_t samples;
  int32_t phase; /* index into intake_rank.phases, -1 before any phase */
} intake_pi;

typedef struct {
  uint64_t t_ns, epoch, last_iter;
} intake_epoch;

typedef struct {
  uint64_t t_ns, iter;
  char path[WIRE_PATH_MAX + 1];
} intake_checkpoint;

typedef struct {
  uint64_t t_ns, first_iter, planned_iters;
  char name[WIRE_NAME_MAX + 1];
} intake_phase;

/* Everything one rank reported.  Owned by the intake; valid until
 * intake_close.  Times are the rank's CLOCK_REALTIME in ns, 0 when the
 * event has not arrived; last_heard_ns is the controller's clock. */
typedef struct {
  uint32_t rank, pid;
  char node[WIRE_NAME_MAX + 1];
  char app[WIRE_NAME_MAX + 1];
  uint64_t init_begin_ns, init_end_ns;
  intake_pi *pis;
  size_t n_pis, cap_pis;
  intake_epoch *epochs;
  size_t n_epochs, cap_epochs;
  intake_checkpoint *checkpoints;
  size_t n_checkpoints, cap_checkpoints;
  intake_phase *phases;
  size_t n_phases, cap_phases;
  int finalized;        /* FINALIZE arrived */
  uint64_t finalize_ns; /* its time */
  uint64_t dropped;     /* events the rank could not send (FINALIZE/HEARTBEAT) */
  uint64_t sent;        /* events the rank says it sent */
  uint64_t last_heartbeat_ns; /* controller clock; 0: none yet */
  uint64_t last_heard_ns;     /* controller clock, any frame */
  unsigned connections;       /* HELLOs accepted for this rank */
  int connected;              /* a connection is open now */
} intake_rank;

/* Is `path`, reported by a rank, fit to be handed to the job's --resume?
 * It must be absolute, without "." or ".." components, empty components
 * or control characters, and, when root is not NULL, inside root - also
 * once symbolic links are resolved, when the file exists.  0, or
 * PM_EINVAL with a one-line reason in why[cap] (docs/security.md). */
int intake_checkpoint_path_check(const char *path, const char *root, char *why, size_t cap);

/* Binds, listens and prepares the loop.  Warns on stderr (and in the
 * journal) when the address is not loopback.  *out is NULL on failure;
 * PM_EINVAL for bad options, PM_ESYS for a failed bind/listen. */
int intake_open(const intake_opts *opts, intake **out);

/* "HOST:PORT" clients should connect to (IPv6 as "[HOST]:PORT"). */
int intake_endpoint(const intake *in, char *buf, size_t cap);
uint16_t intake_port(const intake *in);

/* One loop turn: waits up to timeout_ms (-1: forever) for activity, then
 * handles every ready connection, expires late HELLOs, flushes the
 * journal.  Returns the number of frames handled (>= 0) or a negative
 * PM_E* for a failure of the loop itself (not of a peer). */
int intake_poll(intake *in, int timeout_ms);

/* Runs turns until the child whose pidfd is given exits (1), timeout_ms
 * elapses (0; -1 waits forever) or the loop fails (< 0).  child_pidfd < 0
 * means no child.  After the child exits it keeps reading for up to
 * INTAKE_DRAIN_MS until every connection has closed, so the last frames
 * of the ranks are not lost.  The caller reaps the child. */
int intake_run_until(intake *in, int child_pidfd, int timeout_ms);

/* Reads until no connection is left open or grace_ms has passed. */
int intake_drain(intake *in, int grace_ms);

/* Sends STOP(stop_iter) to every authenticated connection, now and to
 * those that authenticate later.  Returns the number of connections it
 * was queued on (>= 0) or a negative PM_E*. */
int intake_request_stop(intake *in, uint64_t stop_iter);

/* The ranks that have said HELLO, sorted by rank number.  The array and
 * the records are borrowed; they stay valid until the next intake_poll
 * (which may add a rank) or intake_close. */
const intake_rank *const *intake_ranks(const intake *in, size_t *n);
const intake_rank *intake_rank_find(const intake *in, uint32_t rank);

/* Counters for tests, benches and the report. */
typedef struct {
  uint64_t frames;        /* decoded frames from authenticated peers */
  uint64_t accepted;      /* TCP connections accepted */
  uint64_t authenticated; /* HELLOs accepted */
  uint64_t refused;       /* bad token, no HELLO, HELLO timeout, cap */
  uint64_t proto_errors;  /* connections closed for a bad frame */
  uint64_t bytes_in;
  int open_conns;
} intake_stats;
void intake_get_stats(const intake *in, intake_stats *st);

/* Closes every connection and the listener, frees every rank record.
 * The journal is borrowed and stays open.  NULL is a no-op. */
void intake_close(intake *in);

#endif
