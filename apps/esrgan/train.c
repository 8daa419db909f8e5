/* train.c - the ESRGAN training iteration (spec section 8), lean schedule.
 *
 * G step: pixel L1, relativistic adversarial loss through D's data path,
 * VGG content L1; one generator backward and Adam.  D step: relativistic
 * D loss on the logits the G step already computed, weight gradients of
 * both D passes, Adam.  Gradients are zeroed at the start of each step.
 */
#include "train.h"

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
        (rc = esr_vtape_init(ctx, &t->V, &t->vreal)))
      goto fail;
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
  esr_vtape_free(&t->vreal);
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
  memset(G->grads, 0, G->nparams * sizeof(float));
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
  memset(G->grads, 0, G->nparams * sizeof(float));
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
    if ((rc = esr_vgg_forward(ctx, V, &t->vgen, &G->out)) ||
        (rc = esr_vgg_forward(ctx, V, &t->vreal, &t->hr)))
      return rc;
    t->loss_content = nn_l1_loss(&t->vgen.out[ESR_VGG_CONVS - 1],
                                 &t->vreal.out[ESR_VGG_CONVS - 1],
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
