/* paramount.h - the one public header of libparamount.
 *
 * An iterative application links libparamount and calls these functions
 * around its main loop so that a Paramount controller can time its
 * paramount iterations (PIs) on every rank.  Without a controller every call
 * still works: it never blocks, never crashes, and costs well under a
 * microsecond.  Events travel to the controller from a background thread
 * through a bounded queue; what does not fit is dropped and counted.
 */
#ifndef PARAMOUNT_H
#define PARAMOUNT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PM_VERSION_MAJOR 0
#define PM_VERSION_MINOR 1
#define PM_VERSION_PATCH 0

/* Error codes: 0 is success, every error is negative.  Numbers are never
 * reused or renumbered.  pm_strerror() and pm_errname() return static
 * strings for any value, known or not. */
#define PM_ERRNO_MAP(X)                                                       \
  X(EINVAL, -1, "invalid argument")                                          \
  X(ENOMEM, -2, "out of memory")                                             \
  X(EIO, -3, "input/output error")                                           \
  X(ESTATE, -4, "call not valid in this state")                              \
  X(ENOTCONN, -5, "not connected to a controller")                           \
  X(EPROTO, -6, "protocol error")                                            \
  X(ETOOBIG, -7, "frame or field too large")                                 \
  X(EAUTH, -8, "authentication refused")                                     \
  X(EAGAIN, -9, "resource temporarily unavailable")                          \
  X(ENOENT, -10, "no such file or object")                                   \
  X(EPARSE, -11, "malformed input")                                          \
  X(ECHILD, -12, "child process failed")                                     \
  X(ENOSPC, -13, "not enough capacity")                                      \
  X(EEXIST, -14, "already exists")                                           \
  X(ENOTSUP, -15, "not supported")                                           \
  X(ECORRUPT, -16, "data is corrupt")                                        \
  X(ETIMEDOUT, -17, "timed out")                                             \
  X(ESYS, -18, "system call failed")

typedef enum {
  PM_OK = 0,
#define PM_ERR_ENUM_(name, val, msg) PM_##name = (val),
  PM_ERRNO_MAP(PM_ERR_ENUM_)
#undef PM_ERR_ENUM_
} pm_err_t;

/* Static strings; never NULL. */
const char *pm_strerror(int err);
const char *pm_errname(int err);

/* ---- lifecycle ------------------------------------------------------- */

/* pm_init reads its configuration from the environment:
 *   PARAMOUNT_ENDPOINT  controller address "HOST:PORT" (absent: no controller)
 *   PARAMOUNT_TOKEN     per-run token sent in the HELLO frame
 *   PARAMOUNT_NODE      node id this rank runs on (default: hostname)
 *   PARAMOUNT_RANK      rank; when absent OMPI_COMM_WORLD_RANK, PMI_RANK,
 *                       PMIX_RANK or SLURM_PROCID, else 0
 *   PARAMOUNT_APP       application name (default: argv[0] basename)
 *   PARAMOUNT_MO833     "1": print MO833-style lines on stderr
 *   PARAMOUNT_QUEUE     queue capacity in events (default 65536)
 * It marks the beginning of the application's initialisation (init begin).
 * Calling it twice returns PM_ESTATE.  It succeeds without a controller. */
int pm_init(void);

/* End of the application's initialisation: the next PI starts the loop. */
int pm_init_end(void);

/* ---- paramount iterations ------------------------------------------- */

/* Marks the start of iteration `iter` (0-based, global: it keeps counting
 * across a resume).  Records the time. */
int pm_iter_begin(uint64_t iter);

/* Ends the iteration begun last.  compute_s and comm_s are the seconds the
 * rank spent computing and communicating (or waiting for other ranks) in
 * it; either may be negative to mean "unknown" (the whole wall time since
 * pm_iter_begin is then reported as compute).  samples: items processed by
 * this rank in the iteration. */
int pm_iter_end(double compute_s, double comm_s, uint64_t samples);

/* End of epoch `epoch` (0-based) after iteration `last_iter`. */
int pm_epoch_end(uint64_t epoch, uint64_t last_iter);

/* The application enters the named phase (<= 63 bytes), planned to last
 * planned_iters iterations (0 if unknown), starting at iteration
 * first_iter. */
int pm_phase(const char *name, uint64_t first_iter, uint64_t planned_iters);

/* A checkpoint holding everything up to and including iteration `iter` was
 * written to `path` (<= 1023 bytes). */
int pm_checkpoint(const char *path, uint64_t iter);

/* Ends reporting: flushes what it can within a short bounded time, sends
 * FINALIZE, reports the number of dropped events on stderr when non-zero,
 * and frees everything.  Safe to call without pm_init (no-op). */
int pm_finalize(void);

/* ---- control --------------------------------------------------------- */

/* Has the controller asked the job to stop?  Returns 1 and sets *stop_iter
 * to the earliest iteration the controller wants the job to stop after
 * (UINT64_MAX meaning "as soon as the ranks agree"), or returns 0.  Never
 * blocks.  Ranks must agree among themselves (e.g. with MPI) on the actual
 * stop iteration, which is >= *stop_iter. */
int pm_stop_requested(uint64_t *stop_iter);

/* ---- introspection --------------------------------------------------- */

/* Events dropped because the queue was full or the controller was away. */
uint64_t pm_dropped_events(void);

/* 1 when a controller connection is established and authenticated. */
int pm_connected(void);

/* ---- PI-HPC-Bench compatible entry points --------------------------- *
 * Programs instrumented for PI-HPC-Bench call these four; they map onto
 * pm_init / pm_init_end + pm_iter_begin / pm_iter_end / pm_finalize and
 * take no arguments, so they are callable from C and from Fortran
 * (`call init_timestep()` binds to init_timestep_). */
void init_timestep_(void);
void begin_timestep_(void);
void end_timestep_(void);
void exit_timestep_(void);

#ifdef __cplusplus
}
#endif
#endif /* PARAMOUNT_H */
