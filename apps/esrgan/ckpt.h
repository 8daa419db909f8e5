/* ckpt.h - versioned, checksummed, atomically written trainer checkpoints.
 *
 * A checkpoint holds G and D parameters, both Adam states, D's BatchNorm
 * running stats, the next iteration, the samples done, the seed and
 * data-set size (the data order is a function of seed and epoch, the
 * position a function of the iteration and the global batch), so a run
 * resumed on any number of ranks continues exactly.  Format:
 * docs/esrgan.md.
 */
#ifndef ESRGAN_CKPT_H
#define ESRGAN_CKPT_H

#include "train.h"

typedef struct {
  uint64_t next_iter; /* first iteration the resumed run executes */
  uint64_t seed;
  uint64_t nimages;
  uint64_t samples_done; /* = next_iter * global batch; 0 on save: computed */
  uint32_t nranks;       /* ranks that wrote it (informational); 0 = 1 */
} esr_ckpt_meta;

/* Writes path.tmp, fsyncs, renames over path, fsyncs the directory. */
int esr_ckpt_save(const char *path, const esr_trainer *t, const esr_ckpt_meta *m,
                  char *err, size_t errlen);
/* Refuses (with a reason in err) a truncated, corrupt, other-version or
 * other-model-size file: PM_EIO, PM_ECORRUPT, PM_EPARSE or PM_EINVAL.  On
 * success the trainer's weights and optimiser states are replaced. */
int esr_ckpt_load(const char *path, esr_trainer *t, esr_ckpt_meta *m, char *err,
                  size_t errlen);

#endif
