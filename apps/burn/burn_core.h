/* burn_core.h - the MPI-free half of paramount-burn: options, the phase
 * plan, the per-sample work, and the checkpoint format.
 *
 * Kept apart from the MPI main loop so that tests can check the refusals
 * (bad options, corrupt or mismatched checkpoints) in-process, and so that
 * "what the job computes" is defined in one place, independent of ranks.
 */
#ifndef PM_BURN_CORE_H
#define PM_BURN_CORE_H

#include <stddef.h>
#include <stdint.h>

#define BURN_PROG "paramount-burn"
#define BURN_MAX_PHASES 16
#define BURN_PHASE_NAME_MAX 63   /* the wire protocol's name cap */
#define BURN_PHASES_SPEC_MAX 127 /* normalised spec stored in a checkpoint */
#define BURN_PATH_MAX 1023       /* the wire protocol's path cap */
#define BURN_CKPT_NAME "burn.ckpt"
#define BURN_NO_STOP UINT64_MAX

/* One phase of the plan: iterations [first_iter, first_iter + iters), each
 * sample costing work_percent % of --work multiply-adds. */
typedef struct {
  char name[BURN_PHASE_NAME_MAX + 1];
  uint64_t first_iter;
  uint64_t iters; /* the last phase runs to the end of the job */
  uint32_t work_percent;
} burn_phase;

/* Everything the command line decides.  The "global" fields define the
 * work and must match a checkpoint's; the rest may change on resume. */
typedef struct {
  /* global: what is computed */
  uint64_t samples_per_epoch;
  uint64_t batch; /* global batch: samples per iteration, all ranks */
  uint64_t epochs;
  uint64_t work_madds; /* multiply-adds per sample in a 100 % phase */
  burn_phase phases[BURN_MAX_PHASES];
  int nphases;
  char phases_spec[BURN_PHASES_SPEC_MAX + 1]; /* normalised */
  /* local: how this invocation runs */
  uint64_t allreduce_bytes;
  uint64_t iter_sleep_ms;
  uint64_t stop_at; /* BURN_NO_STOP when not given */
  uint64_t ckpt_every_iters;   /* 0: off */
  uint64_t ckpt_every_seconds; /* 0: off */
  char ckpt_dir[BURN_PATH_MAX + 1];
  char resume_path[BURN_PATH_MAX + 1]; /* "" when not resuming */
  int quiet;
  int help;
} burn_config;

/* Parses argv into *cfg (defaults first; PARAMOUNT_RUN_DIR is read for the
 * default checkpoint directory).  0, or PM_EINVAL with a one-line reason
 * (no program prefix, no newline) in why[why_cap]. */
int burn_config_parse(int argc, char **argv, burn_config *cfg, char *why,
                      size_t why_cap);

/* The --help text (static). */
const char *burn_usage(void);

/* Iterations per epoch: ceil(samples_per_epoch / batch). */
uint64_t burn_iters_per_epoch(const burn_config *cfg);
uint64_t burn_total_iters(const burn_config *cfg);

/* The phase that iteration `iter` belongs to (never NULL). */
const burn_phase *burn_phase_of(const burn_config *cfg, uint64_t iter);

/* The slice of iteration `iter`'s global batch that `rank` of `nranks`
 * processes: sample indices [*lo, *hi) within epoch *epoch.  The slices of
 * all ranks partition the batch, whatever nranks is. */
void burn_iter_slice(const burn_config *cfg, uint64_t iter, int rank,
                     int nranks, uint64_t *epoch, uint64_t *lo, uint64_t *hi);

/* Samples processed by all ranks in iterations [0, iters). */
uint64_t burn_samples_before(const burn_config *cfg, uint64_t iters);

/* The work of one sample: `madds` dependent floating-point multiply-adds
 * seeded by (sample, epoch), folded with its inputs into a 64-bit hash.
 * A pure function: same inputs, same bits, on every rank. */
uint64_t burn_sample_hash(uint64_t sample, uint64_t epoch, uint64_t madds);

/* ---- checkpoint ------------------------------------------------------ */

/* Fixed-size little-endian file; docs/burn.md has the byte layout. */
#define BURN_CKPT_MAGIC "PMBURNCK"
#define BURN_CKPT_VERSION 1u
#define BURN_CKPT_SIZE 232u

typedef struct {
  uint64_t next_iter; /* iterations completed; the first one to run next */
  uint64_t epoch;     /* epoch of next_iter */
  uint64_t samples_done;
  uint64_t checksum;
  uint64_t samples_per_epoch, batch, epochs, work_madds;
  uint64_t nranks;     /* informational: ranks that wrote it */
  uint64_t written_ns; /* informational: CLOCK_REALTIME of the write */
  char phases_spec[BURN_PHASES_SPEC_MAX + 1];
} burn_ckpt;

/* Encodes *ck into buf[BURN_CKPT_SIZE]. */
void burn_ckpt_encode(const burn_ckpt *ck, uint8_t buf[BURN_CKPT_SIZE]);

/* Decodes and checks integrity (size, magic, version, file checksum,
 * internal consistency).  0, or PM_ECORRUPT with a reason in why. */
int burn_ckpt_decode(const uint8_t *buf, size_t len, burn_ckpt *out,
                     char *why, size_t why_cap);

/* Can this run continue from *ck?  Same samples, batch, work and phases;
 * the checkpoint's position must be within this run's epochs.  0, or
 * PM_EINVAL with the first difference in why. */
int burn_ckpt_check_config(const burn_ckpt *ck, const burn_config *cfg,
                           char *why, size_t why_cap);

/* Writes path atomically (temporary file, fsync, rename, fsync of the
 * directory).  0, or PM_EIO/PM_EINVAL with the reason in why. */
int burn_ckpt_write(const char *path, const burn_ckpt *ck, char *why,
                    size_t why_cap);

/* Reads and decodes path.  0; PM_ENOENT/PM_EIO/PM_ECORRUPT with a reason
 * in why (the caller names the file). */
int burn_ckpt_read(const char *path, burn_ckpt *out, char *why,
                   size_t why_cap);

#endif
