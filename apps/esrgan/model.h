/* model.h - ESRGAN's three networks: RRDB generator, BatchNorm
 * discriminator and the VGG19 feature extractor up to conv5_4.
 *
 * Each network keeps its parameters (and gradients) in one flat float
 * buffer, in PyTorch's state_dict order (per conv: OIHW weight, then bias;
 * per BatchNorm: gamma, then beta), and its activations in a "tape" that
 * one forward fills and the matching backward reads.
 */
#ifndef ESRGAN_MODEL_H
#define ESRGAN_MODEL_H

#include "nn.h"

/* ---- generator ------------------------------------------------------- */

typedef struct {
  int n, hr, lr, F, B;
  size_t nparams;
  float *params, *grads; /* owned, nparams each */
  int nconv;             /* 15B + 6 */
  nn_conv *conv;         /* head, trunk (r, d, k), trunk_out, up1, up2, tail1, tail2 */
  /* activations */
  nn_tensor in;          /* (n, 3, lr, lr) */
  nn_tensor s, t, h;     /* head out, trunk_out out, h = s + t (F, lr) */
  nn_tensor *dby;        /* [3B*4] dense block y1..y4 (F, lr) */
  nn_tensor *dbo;        /* [3B] dense block outputs */
  nn_tensor *rro;        /* [B] RRDB outputs */
  nn_tensor catbuf;      /* (n, 5F, lr, lr) scratch */
  nn_tensor cat[6];      /* views of catbuf with k*F channels, k = 1..5 */
  nn_tensor u1, p1, u2, p2, q1, out;
  /* gradients */
  nn_tensor dcatbuf, dcat[6], dy[4], dz, ga, gb, dh, du1, dp1, du2, dp2, dq1;
  nn_tensor dout;        /* (n, 3, hr, hr): the loss writes dL/dout here */
} esr_gen;

/* Parameter count of the generator for width F and B RRDB blocks. */
size_t esr_gen_nparams(int F, int B);
int esr_gen_init(nn_ctx *ctx, esr_gen *g, int n, int hr, int F, int B);
void esr_gen_free(esr_gen *g);
/* PyTorch's default init: uniform +-1/sqrt(fan_in) for weights and biases. */
void esr_gen_reset(esr_gen *g, uint64_t *rng);
/* Call after the parameters change. */
int esr_gen_sync(nn_ctx *ctx, esr_gen *g);
/* g->in -> g->out */
int esr_gen_forward(nn_ctx *ctx, esr_gen *g);
/* g->dout -> grads (overwritten: each conv's gradient is staged in the
 * conv and all are written at the end, in one pass) */
int esr_gen_backward(nn_ctx *ctx, esr_gen *g);

/* ---- discriminator ---------------------------------------------------- */

#define ESR_D_LAYERS 8

typedef struct {
  nn_tensor conv[ESR_D_LAYERS]; /* conv outputs (BN input) */
  nn_tensor act[ESR_D_LAYERS];  /* BN + leaky ReLU outputs (act[0] = conv[0]) */
  nn_bn_stats st[ESR_D_LAYERS];
  nn_tensor logits;             /* (n, 1, hr/16, hr/16) */
  nn_tensor *x;                 /* borrowed input of the last forward */
} esr_dtape;

typedef struct {
  int n, hr;
  size_t nparams, nrunning;
  float *params, *grads; /* owned */
  float *running;        /* owned: per BN layer, running mean then var */
  nn_conv conv[ESR_D_LAYERS + 1];
  nn_bn bn[ESR_D_LAYERS]; /* bn[0] unused (first block has none) */
  nn_tensor dact[ESR_D_LAYERS];
  nn_tensor dlogits;
  nn_tensor dx;           /* (n, 3, hr, hr) grad of the input */
} esr_disc;

size_t esr_disc_nparams(void);
int esr_disc_init(nn_ctx *ctx, esr_disc *d, int n, int hr);
void esr_disc_free(esr_disc *d);
void esr_disc_reset(esr_disc *d, uint64_t *rng);
int esr_disc_sync(nn_ctx *ctx, esr_disc *d);
int esr_dtape_init(nn_ctx *ctx, esr_dtape *t, int n, int hr);
void esr_dtape_free(esr_dtape *t);
/* x -> t->logits; updates the BN running stats once. */
int esr_disc_forward(nn_ctx *ctx, esr_disc *d, esr_dtape *t, nn_tensor *x);
/* Replays the running-stat updates of tape t (a second identical call). */
void esr_disc_replay_running(esr_disc *d, const esr_dtape *t);
/* d->dlogits -> parameter grads if `weights` (accumulated), and d->dx if
 * `need_dx`. */
int esr_disc_backward(nn_ctx *ctx, esr_disc *d, esr_dtape *t, int weights,
                      int need_dx);

/* ---- VGG19 features up to conv5_4 ------------------------------------ */

#define ESR_VGG_CONVS 16

typedef struct {
  nn_tensor out[ESR_VGG_CONVS];  /* conv (+ ReLU) outputs */
  nn_tensor pool[4];
  dnnl_memory_t ws[4];
  void *wsbuf[4];
} esr_vtape;

typedef struct {
  int n, hr;
  size_t nparams;
  float *params; /* owned */
  nn_conv conv[ESR_VGG_CONVS];
  nn_pool pool[4];
  nn_tensor dout[ESR_VGG_CONVS], dpool[4];
  nn_tensor dx; /* (n, 3, hr, hr) */
} esr_vgg;

size_t esr_vgg_nparams(void);
int esr_vgg_init(nn_ctx *ctx, esr_vgg *v, int n, int hr);
void esr_vgg_free(esr_vgg *v);
void esr_vgg_reset(esr_vgg *v, uint64_t *rng);
int esr_vgg_sync(nn_ctx *ctx, esr_vgg *v);
int esr_vtape_init(nn_ctx *ctx, esr_vgg *v, esr_vtape *t);
void esr_vtape_free(esr_vtape *t);
/* x -> t->out[15] (conv5_4, before ReLU) */
int esr_vgg_forward(nn_ctx *ctx, esr_vgg *v, esr_vtape *t, nn_tensor *x);
/* dfeat (in v->dout[15]) -> v->dx; no weight gradients. */
int esr_vgg_backward(nn_ctx *ctx, esr_vgg *v, esr_vtape *t);

/* ---- random numbers ---------------------------------------------------- */

/* splitmix64: one 64-bit state, so checkpoints and ranks can carry it. */
uint64_t esr_rng_next(uint64_t *state);
/* Uniform in [lo, hi). */
float esr_rng_uniform(uint64_t *state, float lo, float hi);

#endif
