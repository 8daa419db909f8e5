/* train.h - one ESRGAN training iteration: the warm-up generator step and
 * the full GAN step (G step, then D step), with both Adam optimisers.
 *
 * The step runs the "lean" schedule of the spec: no VGG weight gradients,
 * no D weight gradients in the G step, and the D step reuses the G step's
 * D forwards (same weights, same inputs), replaying their BatchNorm
 * running-stat updates so the state matches PyTorch's four D calls.
 */
#ifndef ESRGAN_TRAIN_H
#define ESRGAN_TRAIN_H

#include "model.h"

typedef struct {
  int hr, batch, F, B;
  long warmup_batches;
  float lambda_adv, lambda_pixel, lambda_content;
  float lr, b1, b2;
  int content; /* 1: VGG content loss on; 0: disabled */
  int gbatch;  /* global batch over all ranks (0: = batch, one process);
                * `batch` is then this rank's share, the tensors' n */
  /* Images whose real VGG features may be cached (data-set indices below
   * this; 0: no cache).  Each costs 512 * (hr/16)^2 floats, allocated when
   * the image is first seen in a GAN step (131 MB for 1000 at hr 128). */
  size_t feature_cache;
} esr_hparams;

/* Called with a network's flat gradient buffer after its backward pass and
 * before its optimiser step (the place for a data-parallel all-reduce).
 * Returns 0 or a negative error code. */
typedef int (*esr_grad_hook)(void *user, float *grads, size_t n);

typedef struct {
  nn_ctx *ctx; /* borrowed */
  esr_hparams hp;
  esr_gen G;
  esr_disc D;
  esr_vgg V;
  esr_dtape dreal, dfake;
  esr_vtape vgen;        /* VGG tape of G's output (the real pass borrows it first) */
  nn_tensor freal;       /* (n, 512, hr/16, hr/16) VGG features of t->hr */
  float **fcache;        /* owned: [hp.feature_cache] features or NULL */
  uint32_t *ids;         /* owned: [batch] data-set indices of the batch */
  int have_ids;          /* 1: ids name the current batch */
  nn_tensor hr;          /* (n, 3, hr, hr) targets of the current batch */
  nn_tensor dlreal, dlfake; /* logits gradients of the D step */
  nn_adam optG, optD;
  esr_grad_hook hook;
  void *hook_user;
  /* losses of the last step */
  double loss_pixel, loss_content, loss_adv, loss_g, loss_d;
} esr_trainer;

/* Builds the networks, primitives and buffers; weights start at PyTorch's
 * default init from `seed` (VGG too: load real weights afterwards). */
int esr_trainer_init(esr_trainer *t, nn_ctx *ctx, const esr_hparams *hp,
                     uint64_t seed);
void esr_trainer_free(esr_trainer *t);
/* Call after parameters were changed from outside (load, broadcast). */
int esr_trainer_sync(esr_trainer *t);
/* Sets one batch from plain NCHW floats: lr (n,3,hr/4,hr/4), hr (n,3,hr,hr). */
void esr_trainer_set_batch(esr_trainer *t, const float *lr, const float *hr);
/* Names the data-set images of the batch just set (ids[batch], copied), so
 * that their real VGG features can be served from the cache.  A batch set
 * without it is never cached (set_batch forgets the previous ids). */
void esr_trainer_set_ids(esr_trainer *t, const uint32_t *ids);
/* One iteration on the current batch: warm-up (pixel loss only) or GAN. */
int esr_trainer_step(esr_trainer *t, int warmup);

#endif
