/* train.c - the ESRGAN training iteration (spec section 8), lean schedule.
 *
 * G step: pixel L1, relativistic adversarial loss through D's data path,
 * VGG content L1; one generator backward and Adam.  D step: relativistic
 * D loss on the logits the G step already computed, weight gradients of
 * both D passes, Adam.  The generator's backward overwrites its gradients;
 * D's are zeroed at the start of its step (its two passes accumulate).
 */
#include "train.h"

#include <stdlib.h>
#include <string.h>

#include "paramount.h"

int esr_trainer_init(esr_trainer *t, nn_ctx *ctx, const esr_hparams *hp,
                     uint64_t seed) {
  memset(t, 0, sizeof *t);
  t->ctx = ctx;
  t->hp = *hp;
  int n = hp->batch, hr = hp->hr, rc;
  if ((rc = esr_gen_init(ctx, &t->G, n, hr, hp->F, hp->B))) return rc;
  if ((rc = esr_disc_init(ctx, &t->D, n, hr)) ||
      (rc = esr_dtape_init(ctx, &t->dreal, n, hr)) ||
      (rc = esr_dtape_init(ctx, &t->dfake, n, hr)) ||
      (rc = nn_tensor_init(ctx, &t->hr, n, 3, hr, hr)) ||
      (rc = nn_tensor_init(ctx, &t->dlreal, n, 1, hr / 16, hr / 16)) ||
      (rc = nn_tensor_init(ctx, &t->dlfake, n, 1, hr / 16, hr / 16)) ||
      (rc = nn_adam_init(&t->optG, t->G.nparams, hp->lr, hp->b1, hp->b2)) ||
      (rc = nn_adam_init(&t->optD, t->D.nparams, hp->lr, hp->b1, hp->b2)))
    goto fail;
  if (hp->content) {
    if ((rc = esr_vgg_init(ctx, &t->V, n, hr)) ||
        (rc = esr_vtape_init(ctx, &t->V, &t->vgen)) ||
        (rc = nn_tensor_init(ctx, &t->freal, n, 512, hr / 16, hr / 16)))
      goto fail;
    t->ids = calloc((size_t)n, sizeof *t->ids);
    if (hp->feature_cache) t->fcache = calloc(hp->feature_cache, sizeof *t->fcache);
    if (!t->ids || (hp->feature_cache && !t->fcache)) {
      rc = PM_ENOMEM;
      nn_seterr("out of memory for the VGG feature cache index (%zu images)",
                hp->feature_cache);
      goto fail;
    }
  }
  uint64_t rng = seed;
  esr_gen_reset(&t->G, &rng);
  esr_disc_reset(&t->D, &rng);
  if (hp->content) esr_vgg_reset(&t->V, &rng);
  if ((rc = esr_trainer_sync(t))) goto fail;
  return 0;
fail:
  esr_trainer_free(t);
  return rc;
}

void esr_trainer_free(esr_trainer *t) {
  if (!t) return;
  esr_gen_free(&t->G);
  esr_disc_free(&t->D);
  esr_dtape_free(&t->dreal);
  esr_dtape_free(&t->dfake);
  esr_vtape_free(&t->vgen);
  nn_tensor_free(&t->freal);
  if (t->fcache)
    for (size_t i = 0; i < t->hp.feature_cache; i++) free(t->fcache[i]);
  free(t->fcache);
  free(t->ids);
  esr_vgg_free(&t->V);
  nn_tensor_free(&t->hr);
  nn_tensor_free(&t->dlreal);
  nn_tensor_free(&t->dlfake);
  nn_adam_free(&t->optG);
  nn_adam_free(&t->optD);
  memset(t, 0, sizeof *t);
}

int esr_trainer_sync(esr_trainer *t) {
  int rc = esr_gen_sync(t->ctx, &t->G);
  if (!rc) rc = esr_disc_sync(t->ctx, &t->D);
  if (!rc && t->hp.content) rc = esr_vgg_sync(t->ctx, &t->V);
  return rc;
}

void esr_trainer_set_batch(esr_trainer *t, const float *lr, const float *hr) {
  nn_tensor_from_nchw(&t->G.in, lr);
  nn_tensor_from_nchw(&t->hr, hr);
  t->have_ids = 0;
}

void esr_trainer_set_ids(esr_trainer *t, const uint32_t *ids) {
  if (!t->ids || !ids) return;
  memcpy(t->ids, ids, sizeof *t->ids * (size_t)t->hp.batch);
  t->have_ids = 1;
}

/* t->freal = VGG(t->hr), from the cache when every image of the batch is
 * in it.  The features of image i do not depend on the rest of its batch
 * (oneDNN's convs compute each image alone), so a cached copy equals a
 * recomputed one bit for bit and resumed runs stay exact.  The forward
 * borrows the generator's VGG tape, which the caller fills afterwards. */
static int real_features(esr_trainer *t) {
  int n = t->hp.batch, hits = 0;
  size_t per = t->freal.nfloats / (size_t)n, cap = t->hp.feature_cache;
  if (t->have_ids && t->fcache)
    for (int i = 0; i < n; i++) hits += t->ids[i] < cap && t->fcache[t->ids[i]];
  if (hits == n) {
    for (int i = 0; i < n; i++)
      memcpy(t->freal.data + i * per, t->fcache[t->ids[i]], per * sizeof(float));
    return 0;
  }
  int rc = esr_vgg_forward(t->ctx, &t->V, &t->vgen, &t->hr);
  if (rc) return rc;
  nn_copy(&t->vgen.out[ESR_VGG_CONVS - 1], &t->freal);
  if (!t->have_ids || !t->fcache) return 0;
  for (int i = 0; i < n; i++) {
    uint32_t id = t->ids[i];
    if (id >= cap || t->fcache[id]) continue;
    /* a full cache is only slower: on allocation failure, keep going */
    if (!(t->fcache[id] = malloc(per * sizeof(float)))) break;
    memcpy(t->fcache[id], t->freal.data + i * per, per * sizeof(float));
  }
  return 0;
}

/* Under data parallelism (ctx->dp) the mean losses are weighted by this
 * rank's share of the global batch, so the ranks' gradients sum to the
 * global batch's; in a single process the weight is 1. */
static float dp_share(const esr_trainer *t) {
  return t->ctx->dp ? t->ctx->dp->share : 1.0f;
}

static int call_hook(esr_trainer *t, float *grads, size_t n) {
  return t->hook ? t->hook(t->hook_user, grads, n) : 0;
}

static int warmup_step(esr_trainer *t) {
  nn_ctx *ctx = t->ctx;
  esr_gen *G = &t->G;
  int rc;
  if ((rc = esr_gen_forward(ctx, G))) return rc;
  t->loss_pixel = nn_l1_loss(&G->out, &t->hr, &G->dout, dp_share(t));
  t->loss_g = t->loss_pixel;
  t->loss_adv = t->loss_content = t->loss_d = 0;
  if ((rc = esr_gen_backward(ctx, G))) return rc;
  if ((rc = call_hook(t, G->grads, G->nparams))) return rc;
  nn_adam_step(&t->optG, G->params, G->grads);
  return esr_gen_sync(ctx, G);
}

static int gan_step(esr_trainer *t) {
  nn_ctx *ctx = t->ctx;
  esr_gen *G = &t->G;
  esr_disc *D = &t->D;
  const esr_hparams *hp = &t->hp;
  int rc;
  /* ---- G step ---- */
  if ((rc = esr_gen_forward(ctx, G))) return rc;
  t->loss_pixel = nn_l1_loss(&G->out, &t->hr, &G->dout, hp->lambda_pixel * dp_share(t));
  if ((rc = esr_disc_forward(ctx, D, &t->dreal, &t->hr)) ||
      (rc = esr_disc_forward(ctx, D, &t->dfake, &G->out)))
    return rc;
  t->loss_adv = ctx->dp ? ctx->dp->ragan_g_loss(ctx->dp->user, &t->dreal.logits,
                                                 &t->dfake.logits, &D->dlogits, hp->lambda_adv)
                        : nn_ragan_g_loss(&t->dreal.logits, &t->dfake.logits, &D->dlogits,
                                          hp->lambda_adv);
  if ((rc = esr_disc_backward(ctx, D, &t->dfake, 0, 1))) return rc;
  nn_axpby(1.0f, &D->dx, 1.0f, &G->dout);
  t->loss_content = 0;
  if (hp->content) {
    esr_vgg *V = &t->V;
    if ((rc = real_features(t)) || (rc = esr_vgg_forward(ctx, V, &t->vgen, &G->out)))
      return rc;
    t->loss_content = nn_l1_loss(&t->vgen.out[ESR_VGG_CONVS - 1], &t->freal,
                                 &V->dout[ESR_VGG_CONVS - 1],
                                 hp->lambda_content * dp_share(t));
    if ((rc = esr_vgg_backward(ctx, V, &t->vgen))) return rc;
    nn_axpby(1.0f, &V->dx, 1.0f, &G->dout);
  }
  t->loss_g = hp->lambda_content * t->loss_content + hp->lambda_adv * t->loss_adv +
              hp->lambda_pixel * t->loss_pixel;
  if ((rc = esr_gen_backward(ctx, G))) return rc;
  if ((rc = call_hook(t, G->grads, G->nparams))) return rc;
  nn_adam_step(&t->optG, G->params, G->grads);
  if ((rc = esr_gen_sync(ctx, G))) return rc;
  /* ---- D step: same D weights and inputs as the G step's forwards ---- */
  memset(D->grads, 0, D->nparams * sizeof(float));
  t->loss_d = ctx->dp ? ctx->dp->ragan_d_loss(ctx->dp->user, &t->dreal.logits,
                                               &t->dfake.logits, &t->dlreal, &t->dlfake)
                      : nn_ragan_d_loss(&t->dreal.logits, &t->dfake.logits, &t->dlreal,
                                        &t->dlfake);
  esr_disc_replay_running(D, &t->dreal);
  esr_disc_replay_running(D, &t->dfake);
  nn_copy(&t->dlreal, &D->dlogits);
  if ((rc = esr_disc_backward(ctx, D, &t->dreal, 1, 0))) return rc;
  nn_copy(&t->dlfake, &D->dlogits);
  if ((rc = esr_disc_backward(ctx, D, &t->dfake, 1, 0))) return rc;
  if ((rc = call_hook(t, D->grads, D->nparams))) return rc;
  nn_adam_step(&t->optD, D->params, D->grads);
  return esr_disc_sync(ctx, D);
}

int esr_trainer_step(esr_trainer *t, int warmup) {
  return warmup ? warmup_step(t) : gan_step(t);
}
