/* dp.h - data-parallel ESRGAN training over MPI: the communicator context
 * the trainer is given, the global-batch shard of each rank, and the
 * collectives (gradient sums, sync BatchNorm, RaGAN batch means, the
 * per-iteration agreement on losses and the stop iteration).
 *
 * The global batch is fixed, whatever the number of ranks: each rank
 * holds a contiguous share of it, losses are normalised by the global
 * element count and gradients are summed.  With one process and no MPI
 * launcher, MPI is never initialised and nothing here costs anything.
 */
#ifndef ESRGAN_DP_H
#define ESRGAN_DP_H

#include <stdint.h>

#include "train.h"

typedef struct {
  int rank, size;
  int mpi;            /* 1: esr_dp_init initialised MPI (finalize owes it) */
  int gbatch;         /* samples per iteration over all ranks */
  int lo, n;          /* this rank's share [lo, lo + n) of each global batch */
  double comm_s;      /* seconds in collectives (incl. waiting) since reset */
  nn_dp hooks;        /* installed into nn_ctx.dp when size > 1 */
} esr_dp;

/* The rank the launcher gives this process (0 without one), readable
 * before esr_dp_init: only rank 0 reports option errors. */
int esr_dp_env_rank(void);

/* Initialises MPI when the process was started by an MPI launcher
 * (Open MPI, PMI or PMIx variables), else makes a 1-rank context that
 * never touches MPI.  Then shards the global batch.  0 or PM_ESYS. */
int esr_dp_init(esr_dp *dp, int *argc, char ***argv);

/* Shards a global batch of gbatch samples: ranks below gbatch % size take
 * one more; a rank may get 0 (it still joins every collective). */
void esr_dp_set_batch(esr_dp *dp, int gbatch);

/* Points the trainer's gradient hook and ctx->dp at this context (only
 * when size > 1: one process runs the unmodified single-process code). */
void esr_dp_install(esr_dp *dp, esr_trainer *t);

/* Rank 0's G and D parameters and D's running stats to every rank. */
int esr_dp_bcast_params(esr_dp *dp, esr_trainer *t);

/* The end-of-iteration collective: sums vals[0..nvals) over the ranks and
 * agrees on the stop.  my_stop is this rank's requested stop iteration + 1
 * (0: none); *agreed receives the maximum over ranks (0: none).  Every
 * rank calls it once per iteration. */
int esr_dp_iter_end(esr_dp *dp, double *vals, int nvals, uint64_t my_stop,
                    uint64_t *agreed);

/* Rank 0's *v to every rank (so all ranks exit alike). */
int esr_dp_bcast_int(esr_dp *dp, int *v);

/* 1 in *same when every rank holds hash h. */
int esr_dp_same_everywhere(esr_dp *dp, uint64_t h, int *same);

/* Ends the job on every rank with status code (MPI_Abort when size > 1),
 * else exit(code). */
void esr_dp_abort(esr_dp *dp, int code) __attribute__((noreturn));

/* MPI_Finalize when esr_dp_init initialised MPI. */
void esr_dp_finalize(esr_dp *dp);

#endif
