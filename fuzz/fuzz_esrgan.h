/* fuzz_esrgan.h - the fake trainer fuzz_esrgan_ckpt loads checkpoints
 * into, shared with make_seeds.c so the seed checkpoints are written by the
 * real writer for exactly the shape the target expects.
 */
#ifndef PM_FUZZ_ESRGAN_H
#define PM_FUZZ_ESRGAN_H

#include "train.h"

/* A static trainer with hr 32, F 4, B 1, batch 2 and tiny parameter
 * buffers (G 16, D 8, running stats 4 floats).  Borrowed; never freed. */
esr_trainer *fuzz_esr_fake_trainer(void);

#endif
