/* model.c - forward and backward passes of the generator, discriminator
 * and VGG19 feature extractor of ESRGAN (see shared/esrgan-spec.md).
 *
 * The dense blocks build their concatenated inputs by copying whole
 * 16-channel blocks into one scratch buffer (a conv reading a channel
 * slice in place would fall back to oneDNN's slow reference kernel), and
 * rebuild them in the backward pass instead of keeping them.
 */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "paramount.h"

#define G_SLOPE 0.01f
#define D_SLOPE 0.2f

uint64_t esr_rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float esr_rng_uniform(uint64_t *s, float lo, float hi) {
  double u = (double)(esr_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
  return (float)(lo + (hi - lo) * u);
}

static float *palloc(size_t n) {
  float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64 + 64);
  if (p) memset(p, 0, n * sizeof(float));
  return p;
}

static void conv_reset(float *p, int ic, int oc, uint64_t *rng) {
  float bound = 1.0f / sqrtf((float)ic * 9.0f);
  size_t n = nn_conv_nparams(ic, oc);
  for (size_t i = 0; i < n; i++) p[i] = esr_rng_uniform(rng, -bound, bound);
}

/* ====================================================================== */
/* generator                                                              */

/* conv index helpers: head 0, trunk 1 + (r*3+d)*5 + k, then the tail. */
#define G_HEAD 0
#define G_TRUNK(r, d, k) (1 + ((r) * 3 + (d)) * 5 + (k))
#define G_TOUT(B) (1 + 15 * (B))
#define G_UP1(B) (G_TOUT(B) + 1)
#define G_UP2(B) (G_TOUT(B) + 2)
#define G_TAIL1(B) (G_TOUT(B) + 3)
#define G_TAIL2(B) (G_TOUT(B) + 4)

typedef struct {
  int ic, oc, res; /* res: 0 = lr, 1 = 2lr, 2 = hr */
} gconv_shape;

static gconv_shape gen_shape(int i, int F, int B) {
  gconv_shape s = {F, F, 0};
  if (i == G_HEAD) s.ic = 3;
  else if (i < G_TOUT(B)) s.ic = ((i - 1) % 5 + 1) * F;
  else if (i == G_UP1(B)) s.oc = 4 * F;
  else if (i == G_UP2(B)) s.oc = 4 * F, s.res = 1;
  else if (i == G_TAIL1(B)) s.res = 2;
  else if (i == G_TAIL2(B)) s.oc = 3, s.res = 2;
  return s;
}

size_t esr_gen_nparams(int F, int B) {
  size_t n = 0;
  for (int i = 0; i < 15 * B + 6; i++) {
    gconv_shape s = gen_shape(i, F, B);
    n += nn_conv_nparams(s.ic, s.oc);
  }
  return n;
}

int esr_gen_init(nn_ctx *ctx, esr_gen *g, int n, int hr, int F, int B) {
  memset(g, 0, sizeof *g);
  if (n < 1 || hr < 16 || hr % 16 || F < 16 || F % 16 || B < 1) {
    nn_seterr("generator needs batch >= 1, hr a multiple of 16, F a multiple "
              "of 16 and B >= 1 (got batch %d, hr %d, F %d, B %d)", n, hr, F, B);
    return PM_EINVAL;
  }
  g->n = n, g->hr = hr, g->lr = hr / 4, g->F = F, g->B = B;
  g->nconv = 15 * B + 6;
  g->nparams = esr_gen_nparams(F, B);
  g->params = palloc(g->nparams);
  g->grads = palloc(g->nparams);
  g->conv = calloc((size_t)g->nconv, sizeof *g->conv);
  g->dby = calloc((size_t)B * 12, sizeof(nn_tensor));
  g->dbo = calloc((size_t)B * 3, sizeof(nn_tensor));
  g->rro = calloc((size_t)B, sizeof(nn_tensor));
  if (!g->params || !g->grads || !g->conv || !g->dby || !g->dbo || !g->rro) {
    esr_gen_free(g);
    nn_seterr("out of memory for the generator (%zu parameters)", g->nparams);
    return PM_ENOMEM;
  }
  int rc = 0, lr = g->lr;
  size_t off = 0;
  for (int i = 0; i < g->nconv && !rc; i++) {
    gconv_shape s = gen_shape(i, F, B);
    int res = lr << s.res;
    int flags = NN_NEED_BWD_W | NN_GRAD_STAGED | (i == G_HEAD ? 0 : NN_NEED_BWD_DATA);
    rc = nn_conv_init(ctx, &g->conv[i], n, s.ic, s.oc, res, res, 1, flags,
                      g->params + off, g->grads + off);
    off += nn_conv_nparams(s.ic, s.oc);
  }
  nn_tensor *lrF[] = {&g->s, &g->t, &g->h, &g->dz, &g->ga, &g->gb, &g->dh,
                      &g->dy[0], &g->dy[1], &g->dy[2], &g->dy[3]};
  for (size_t i = 0; i < sizeof lrF / sizeof lrF[0] && !rc; i++)
    rc = nn_tensor_init(ctx, lrF[i], n, F, lr, lr);
  for (int i = 0; i < 12 * B && !rc; i++)
    rc = nn_tensor_init(ctx, &g->dby[i], n, F, lr, lr);
  for (int i = 0; i < 3 * B && !rc; i++)
    rc = nn_tensor_init(ctx, &g->dbo[i], n, F, lr, lr);
  for (int i = 0; i < B && !rc; i++)
    rc = nn_tensor_init(ctx, &g->rro[i], n, F, lr, lr);
  if (!rc) rc = nn_tensor_init(ctx, &g->in, n, 3, lr, lr);
  if (!rc) rc = nn_tensor_init(ctx, &g->catbuf, n, 5 * F, lr, lr);
  if (!rc) rc = nn_tensor_init(ctx, &g->dcatbuf, n, 5 * F, lr, lr);
  for (int k = 1; k <= 5 && !rc; k++) {
    rc = nn_tensor_view(ctx, &g->cat[k], n, k * F, lr, lr, g->catbuf.data);
    if (!rc) rc = nn_tensor_view(ctx, &g->dcat[k], n, k * F, lr, lr, g->dcatbuf.data);
  }
  if (!rc) rc = nn_tensor_init(ctx, &g->u1, n, 4 * F, lr, lr);
  if (!rc) rc = nn_tensor_init(ctx, &g->du1, n, 4 * F, lr, lr);
  if (!rc) rc = nn_tensor_init(ctx, &g->p1, n, F, 2 * lr, 2 * lr);
  if (!rc) rc = nn_tensor_init(ctx, &g->dp1, n, F, 2 * lr, 2 * lr);
  if (!rc) rc = nn_tensor_init(ctx, &g->u2, n, 4 * F, 2 * lr, 2 * lr);
  if (!rc) rc = nn_tensor_init(ctx, &g->du2, n, 4 * F, 2 * lr, 2 * lr);
  if (!rc) rc = nn_tensor_init(ctx, &g->p2, n, F, hr, hr);
  if (!rc) rc = nn_tensor_init(ctx, &g->dp2, n, F, hr, hr);
  if (!rc) rc = nn_tensor_init(ctx, &g->q1, n, F, hr, hr);
  if (!rc) rc = nn_tensor_init(ctx, &g->dq1, n, F, hr, hr);
  if (!rc) rc = nn_tensor_init(ctx, &g->out, n, 3, hr, hr);
  if (!rc) rc = nn_tensor_init(ctx, &g->dout, n, 3, hr, hr);
  if (rc) esr_gen_free(g);
  return rc;
}

void esr_gen_free(esr_gen *g) {
  if (!g) return;
  if (g->conv)
    for (int i = 0; i < g->nconv; i++) nn_conv_free(&g->conv[i]);
  if (g->dby)
    for (int i = 0; i < 12 * g->B; i++) nn_tensor_free(&g->dby[i]);
  if (g->dbo)
    for (int i = 0; i < 3 * g->B; i++) nn_tensor_free(&g->dbo[i]);
  if (g->rro)
    for (int i = 0; i < g->B; i++) nn_tensor_free(&g->rro[i]);
  for (int k = 1; k <= 5; k++) {
    nn_tensor_free(&g->cat[k]);
    nn_tensor_free(&g->dcat[k]);
  }
  nn_tensor *ts[] = {&g->in, &g->s, &g->t, &g->h, &g->catbuf, &g->u1, &g->p1,
                     &g->u2, &g->p2, &g->q1, &g->out, &g->dcatbuf, &g->dy[0],
                     &g->dy[1], &g->dy[2], &g->dy[3], &g->dz, &g->ga, &g->gb,
                     &g->dh, &g->du1, &g->dp1, &g->du2, &g->dp2, &g->dq1, &g->dout};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) nn_tensor_free(ts[i]);
  free(g->conv);
  free(g->dby);
  free(g->dbo);
  free(g->rro);
  free(g->params);
  free(g->grads);
  memset(g, 0, sizeof *g);
}

void esr_gen_reset(esr_gen *g, uint64_t *rng) {
  size_t off = 0;
  for (int i = 0; i < g->nconv; i++) {
    gconv_shape s = gen_shape(i, g->F, g->B);
    conv_reset(g->params + off, s.ic, s.oc, rng);
    off += nn_conv_nparams(s.ic, s.oc);
  }
}

int esr_gen_sync(nn_ctx *ctx, esr_gen *g) {
  return nn_conv_sync_many(ctx, g->conv, g->nconv);
}

/* builds cat[k] = [x, y_1 .. y_{k-1}] */
static nn_tensor *db_cat(esr_gen *g, nn_tensor *x, nn_tensor *y, int k) {
  if (k == 1) return x;
  nn_tensor *srcs[5] = {x, &y[0], &y[1], &y[2], &y[3]};
  nn_concat(srcs, k, &g->cat[k]);
  return &g->cat[k];
}

/* y_k = lrelu(conv_k(cat[k])); the activation of y_{k-1} is applied by
 * the concat that builds cat[k] from it. */
static int db_forward(nn_ctx *ctx, esr_gen *g, int r, int d, nn_tensor *x) {
  nn_tensor *y = &g->dby[(r * 3 + d) * 4], *o = &g->dbo[r * 3 + d];
  nn_tensor *srcs[5] = {x, &y[0], &y[1], &y[2], &y[3]};
  int rc;
  for (int k = 1; k <= 5; k++) {
    nn_tensor *in = x;
    if (k > 1) {
      nn_concat_lrelu(srcs, k, &g->cat[k], G_SLOPE);
      in = &g->cat[k];
    }
    if ((rc = nn_conv_forward(ctx, &g->conv[G_TRUNK(r, d, k - 1)], in,
                              k < 5 ? &y[k - 1] : o)))
      return rc;
  }
  nn_axpby(1.0f, x, 0.2f, o); /* o = x + 0.2 * conv5 */
  return 0;
}

/* gx holds dL/d(out) on entry and dL/dx on return.  Each split hands the
 * gradient of y_{k-1} straight through its leaky ReLU into dz, the next
 * conv's output gradient. */
static int db_backward(nn_ctx *ctx, esr_gen *g, int r, int d, nn_tensor *x,
                       nn_tensor *gx) {
  nn_tensor *y = &g->dby[(r * 3 + d) * 4];
  nn_tensor *dst[5] = {gx, &g->dy[0], &g->dy[1], &g->dy[2], &g->dy[3]};
  int rc;
  nn_scale(0.2f, gx, &g->dz);
  /* gx accumulates, dy_1..dy_3 are set, dy_4 goes to dz */
  unsigned acc = 1u;
  for (int k = 5; k >= 1; k--) {
    nn_conv *ck = &g->conv[G_TRUNK(r, d, k - 1)];
    if ((rc = nn_conv_backward_weights(ctx, ck, db_cat(g, x, y, k), &g->dz)) ||
        (rc = nn_conv_backward_data(ctx, ck, &g->dz, &g->dcat[k])))
      return rc;
    if (k > 1) nn_split_lrelu(&g->dcat[k], dst, k, acc, &y[k - 2], &g->dz, G_SLOPE);
    else nn_split(&g->dcat[1], dst, 1, acc);
    acc = 0x1fu;
  }
  return 0;
}

int esr_gen_forward(nn_ctx *ctx, esr_gen *g) {
  int B = g->B, rc;
  if ((rc = nn_conv_forward(ctx, &g->conv[G_HEAD], &g->in, &g->s))) return rc;
  nn_tensor *x = &g->s;
  for (int r = 0; r < B; r++) {
    nn_tensor *xin = x;
    for (int d = 0; d < 3; d++) {
      if ((rc = db_forward(ctx, g, r, d, x))) return rc;
      x = &g->dbo[r * 3 + d];
    }
    nn_add_scaled(xin, 0.2f, x, &g->rro[r]);
    x = &g->rro[r];
  }
  if ((rc = nn_conv_forward(ctx, &g->conv[G_TOUT(B)], x, &g->t))) return rc;
  nn_add_scaled(&g->s, 1.0f, &g->t, &g->h);
  if ((rc = nn_conv_forward(ctx, &g->conv[G_UP1(B)], &g->h, &g->u1))) return rc;
  nn_pixel_shuffle(&g->u1, &g->p1);
  nn_lrelu_forward(&g->p1, G_SLOPE);
  if ((rc = nn_conv_forward(ctx, &g->conv[G_UP2(B)], &g->p1, &g->u2))) return rc;
  nn_pixel_shuffle(&g->u2, &g->p2);
  nn_lrelu_forward(&g->p2, G_SLOPE);
  if ((rc = nn_conv_forward(ctx, &g->conv[G_TAIL1(B)], &g->p2, &g->q1))) return rc;
  nn_lrelu_forward(&g->q1, G_SLOPE);
  return nn_conv_forward(ctx, &g->conv[G_TAIL2(B)], &g->q1, &g->out);
}

int esr_gen_backward(nn_ctx *ctx, esr_gen *g) {
  int B = g->B, rc;
  nn_conv *c;
  c = &g->conv[G_TAIL2(B)];
  if ((rc = nn_conv_backward_weights(ctx, c, &g->q1, &g->dout)) ||
      (rc = nn_conv_backward_data(ctx, c, &g->dout, &g->dq1)))
    return rc;
  nn_lrelu_backward(&g->q1, &g->dq1, &g->dq1, G_SLOPE);
  c = &g->conv[G_TAIL1(B)];
  if ((rc = nn_conv_backward_weights(ctx, c, &g->p2, &g->dq1)) ||
      (rc = nn_conv_backward_data(ctx, c, &g->dq1, &g->dp2)))
    return rc;
  nn_lrelu_backward(&g->p2, &g->dp2, &g->dp2, G_SLOPE);
  nn_pixel_unshuffle(&g->dp2, &g->du2);
  c = &g->conv[G_UP2(B)];
  if ((rc = nn_conv_backward_weights(ctx, c, &g->p1, &g->du2)) ||
      (rc = nn_conv_backward_data(ctx, c, &g->du2, &g->dp1)))
    return rc;
  nn_lrelu_backward(&g->p1, &g->dp1, &g->dp1, G_SLOPE);
  nn_pixel_unshuffle(&g->dp1, &g->du1);
  c = &g->conv[G_UP1(B)];
  if ((rc = nn_conv_backward_weights(ctx, c, &g->h, &g->du1)) ||
      (rc = nn_conv_backward_data(ctx, c, &g->du1, &g->dh)))
    return rc;
  /* h = s + trunk_out(trunk(s)) */
  c = &g->conv[G_TOUT(B)];
  if ((rc = nn_conv_backward_weights(ctx, c, &g->rro[B - 1], &g->dh)) ||
      (rc = nn_conv_backward_data(ctx, c, &g->dh, &g->ga)))
    return rc;
  for (int r = B - 1; r >= 0; r--) {
    /* rro[r] = x + 0.2 * DB3(DB2(DB1(x))); ga: dL/drro[r] -> dL/dx */
    nn_tensor *xin = r == 0 ? &g->s : &g->rro[r - 1];
    nn_scale(0.2f, &g->ga, &g->gb);
    for (int d = 2; d >= 0; d--) {
      nn_tensor *x = d == 0 ? xin : &g->dbo[r * 3 + d - 1];
      if ((rc = db_backward(ctx, g, r, d, x, &g->gb))) return rc;
    }
    nn_axpby(1.0f, &g->gb, 1.0f, &g->ga);
  }
  nn_axpby(1.0f, &g->dh, 1.0f, &g->ga);
  if ((rc = nn_conv_backward_weights(ctx, &g->conv[G_HEAD], &g->in, &g->ga))) return rc;
  /* every conv staged its gradient once: one pass writes them all */
  return nn_conv_grads_flush(ctx, g->conv, g->nconv);
}

/* ====================================================================== */
/* discriminator                                                          */

static const int d_width[4] = {64, 128, 256, 512};

/* layer L: in -> out channels, stride, input side (as a divisor of hr) */
static void d_shape(int L, int hr, int *ic, int *oc, int *stride, int *h) {
  int blk = L / 2;
  *oc = d_width[blk];
  *ic = (L == 0) ? 3 : (L % 2 ? d_width[blk] : d_width[blk - 1]);
  *stride = (L % 2) ? 2 : 1;
  *h = hr >> (L / 2);
}

size_t esr_disc_nparams(void) {
  size_t n = 0;
  for (int L = 0; L < ESR_D_LAYERS; L++) {
    int ic, oc, s, h;
    d_shape(L, 16, &ic, &oc, &s, &h);
    n += nn_conv_nparams(ic, oc) + (L ? 2 * (size_t)oc : 0);
  }
  return n + nn_conv_nparams(512, 1);
}

int esr_disc_init(nn_ctx *ctx, esr_disc *d, int n, int hr) {
  memset(d, 0, sizeof *d);
  if (n < 1 || hr < 16 || hr % 16) {
    nn_seterr("discriminator needs batch >= 1 and hr a multiple of 16 (got %d, %d)",
              n, hr);
    return PM_EINVAL;
  }
  d->n = n, d->hr = hr;
  d->nparams = esr_disc_nparams();
  d->nrunning = 0;
  for (int L = 1; L < ESR_D_LAYERS; L++) d->nrunning += 2 * (size_t)d_width[L / 2];
  d->params = palloc(d->nparams);
  d->grads = palloc(d->nparams);
  d->running = palloc(d->nrunning);
  if (!d->params || !d->grads || !d->running) {
    esr_disc_free(d);
    nn_seterr("out of memory for the discriminator");
    return PM_ENOMEM;
  }
  size_t off = 0, roff = 0;
  int rc = 0;
  for (int L = 0; L < ESR_D_LAYERS && !rc; L++) {
    int ic, oc, s, h;
    d_shape(L, hr, &ic, &oc, &s, &h);
    rc = nn_conv_init(ctx, &d->conv[L], n, ic, oc, h, h, s,
                      NN_NEED_BWD_DATA | NN_NEED_BWD_W, d->params + off, d->grads + off);
    off += nn_conv_nparams(ic, oc);
    int oh = d->conv[L].oh;
    if (!rc && L > 0) {
      rc = nn_bn_init(ctx, &d->bn[L], n, oc, oh, oh, d->params + off, d->grads + off,
                      d->running + roff);
      off += 2 * (size_t)oc;
      roff += 2 * (size_t)oc;
    }
    if (!rc) rc = nn_tensor_init(ctx, &d->dact[L], n, oc, oh, oh);
  }
  if (!rc)
    rc = nn_conv_init(ctx, &d->conv[ESR_D_LAYERS], n, 512, 1, hr / 16, hr / 16, 1,
                      NN_NEED_BWD_DATA | NN_NEED_BWD_W, d->params + off, d->grads + off);
  if (!rc) rc = nn_tensor_init(ctx, &d->dlogits, n, 1, hr / 16, hr / 16);
  if (!rc) rc = nn_tensor_init(ctx, &d->dx, n, 3, hr, hr);
  if (rc) esr_disc_free(d);
  else esr_disc_reset(d, &(uint64_t){0});
  return rc;
}

void esr_disc_free(esr_disc *d) {
  if (!d) return;
  for (int L = 0; L <= ESR_D_LAYERS; L++) nn_conv_free(&d->conv[L]);
  for (int L = 0; L < ESR_D_LAYERS; L++) {
    nn_bn_free(&d->bn[L]);
    nn_tensor_free(&d->dact[L]);
  }
  nn_tensor_free(&d->dlogits);
  nn_tensor_free(&d->dx);
  free(d->params);
  free(d->grads);
  free(d->running);
  memset(d, 0, sizeof *d);
}

void esr_disc_reset(esr_disc *d, uint64_t *rng) {
  size_t off = 0, roff = 0;
  for (int L = 0; L <= ESR_D_LAYERS; L++) {
    int ic = 512, oc = 1, s, h;
    if (L < ESR_D_LAYERS) d_shape(L, d->hr, &ic, &oc, &s, &h);
    conv_reset(d->params + off, ic, oc, rng);
    off += nn_conv_nparams(ic, oc);
    if (L > 0 && L < ESR_D_LAYERS) {
      for (int i = 0; i < oc; i++) {
        d->params[off + i] = 1.0f, d->params[off + oc + i] = 0.0f;
        d->running[roff + i] = 0.0f, d->running[roff + oc + i] = 1.0f;
      }
      off += 2 * (size_t)oc;
      roff += 2 * (size_t)oc;
    }
  }
}

int esr_disc_sync(nn_ctx *ctx, esr_disc *d) {
  return nn_conv_sync_many(ctx, d->conv, ESR_D_LAYERS + 1);
}

int esr_dtape_init(nn_ctx *ctx, esr_dtape *t, int n, int hr) {
  memset(t, 0, sizeof *t);
  int rc = 0;
  for (int L = 0; L < ESR_D_LAYERS && !rc; L++) {
    int ic, oc, s, h;
    d_shape(L, hr, &ic, &oc, &s, &h);
    int oh = h / s;
    rc = nn_tensor_init(ctx, &t->conv[L], n, oc, oh, oh);
    if (!rc && L > 0) rc = nn_tensor_init(ctx, &t->act[L], n, oc, oh, oh);
    if (!rc && L > 0) rc = nn_bn_stats_init(ctx, &t->st[L], oc);
  }
  if (!rc) rc = nn_tensor_init(ctx, &t->logits, n, 1, hr / 16, hr / 16);
  if (rc) esr_dtape_free(t);
  return rc;
}

void esr_dtape_free(esr_dtape *t) {
  if (!t) return;
  for (int L = 0; L < ESR_D_LAYERS; L++) {
    nn_tensor_free(&t->conv[L]);
    nn_tensor_free(&t->act[L]);
    nn_bn_stats_free(&t->st[L]);
  }
  nn_tensor_free(&t->logits);
  memset(t, 0, sizeof *t);
}

static nn_tensor *d_act(esr_dtape *t, int L) {
  return L == 0 ? &t->conv[0] : &t->act[L];
}

int esr_disc_forward(nn_ctx *ctx, esr_disc *d, esr_dtape *t, nn_tensor *x) {
  int rc;
  t->x = x;
  nn_tensor *in = x;
  for (int L = 0; L < ESR_D_LAYERS; L++) {
    if ((rc = nn_conv_forward(ctx, &d->conv[L], in, &t->conv[L]))) return rc;
    if (L > 0 && (rc = nn_bn_forward(ctx, &d->bn[L], &t->conv[L], &t->act[L], &t->st[L])))
      return rc;
    nn_lrelu_forward(d_act(t, L), D_SLOPE);
    in = d_act(t, L);
  }
  return nn_conv_forward(ctx, &d->conv[ESR_D_LAYERS], in, &t->logits);
}

void esr_disc_replay_running(esr_disc *d, const esr_dtape *t) {
  for (int L = 1; L < ESR_D_LAYERS; L++) nn_bn_update_running(&d->bn[L], &t->st[L]);
}

int esr_disc_backward(nn_ctx *ctx, esr_disc *d, esr_dtape *t, int weights,
                      int need_dx) {
  int rc;
  nn_conv *c = &d->conv[ESR_D_LAYERS];
  if (weights && (rc = nn_conv_backward_weights(ctx, c, d_act(t, ESR_D_LAYERS - 1),
                                                &d->dlogits)))
    return rc;
  if ((rc = nn_conv_backward_data(ctx, c, &d->dlogits, &d->dact[ESR_D_LAYERS - 1])))
    return rc;
  for (int L = ESR_D_LAYERS - 1; L >= 0; L--) {
    nn_tensor *g = &d->dact[L];
    nn_lrelu_backward(d_act(t, L), g, g, D_SLOPE);
    if (L > 0 && (rc = nn_bn_backward(ctx, &d->bn[L], &t->conv[L], &t->st[L], g, g,
                                      weights)))
      return rc;
    nn_tensor *in = L == 0 ? t->x : d_act(t, L - 1);
    if (weights && (rc = nn_conv_backward_weights(ctx, &d->conv[L], in, g))) return rc;
    if (L > 0 || need_dx) {
      nn_tensor *gin = L == 0 ? &d->dx : &d->dact[L - 1];
      if ((rc = nn_conv_backward_data(ctx, &d->conv[L], g, gin))) return rc;
    }
  }
  return 0;
}

/* ====================================================================== */
/* VGG19 up to conv5_4                                                     */

static const int v_width[ESR_VGG_CONVS] = {64,  64,  128, 128, 256, 256, 256, 256,
                                           512, 512, 512, 512, 512, 512, 512, 512};
/* a max-pool follows these convs */
static int v_pool_after(int i) {
  return i == 1 ? 0 : i == 3 ? 1 : i == 7 ? 2 : i == 11 ? 3 : -1;
}

static int v_side(int i, int hr) {
  int h = hr;
  for (int j = 0; j < i; j++)
    if (v_pool_after(j) >= 0) h /= 2;
  return h;
}

size_t esr_vgg_nparams(void) {
  size_t n = 0;
  for (int i = 0; i < ESR_VGG_CONVS; i++)
    n += nn_conv_nparams(i ? v_width[i - 1] : 3, v_width[i]);
  return n;
}

int esr_vgg_init(nn_ctx *ctx, esr_vgg *v, int n, int hr) {
  memset(v, 0, sizeof *v);
  v->n = n, v->hr = hr;
  v->nparams = esr_vgg_nparams();
  v->params = palloc(v->nparams);
  if (!v->params) {
    nn_seterr("out of memory for VGG19 weights");
    return PM_ENOMEM;
  }
  size_t off = 0;
  int rc = 0;
  for (int i = 0; i < ESR_VGG_CONVS && !rc; i++) {
    int ic = i ? v_width[i - 1] : 3, h = v_side(i, hr);
    rc = nn_conv_init(ctx, &v->conv[i], n, ic, v_width[i], h, h, 1, NN_NEED_BWD_DATA,
                      v->params + off, NULL);
    off += nn_conv_nparams(ic, v_width[i]);
    if (!rc) rc = nn_tensor_init(ctx, &v->dout[i], n, v_width[i], h, h);
    int p = v_pool_after(i);
    if (!rc && p >= 0) rc = nn_pool_init(ctx, &v->pool[p], n, v_width[i], h, h);
    if (!rc && p >= 0) rc = nn_tensor_init(ctx, &v->dpool[p], n, v_width[i], h / 2, h / 2);
  }
  if (!rc) rc = nn_tensor_init(ctx, &v->dx, n, 3, hr, hr);
  if (rc) esr_vgg_free(v);
  return rc;
}

void esr_vgg_free(esr_vgg *v) {
  if (!v) return;
  for (int i = 0; i < ESR_VGG_CONVS; i++) {
    nn_conv_free(&v->conv[i]);
    nn_tensor_free(&v->dout[i]);
  }
  for (int p = 0; p < 4; p++) {
    nn_pool_free(&v->pool[p]);
    nn_tensor_free(&v->dpool[p]);
  }
  nn_tensor_free(&v->dx);
  free(v->params);
  memset(v, 0, sizeof *v);
}

/* Stand-in weights when no VGG19 file is given: Kaiming-uniform for ReLU
 * (+-sqrt(6/fan_in)), zero bias, so that features keep their scale through
 * 16 layers instead of vanishing as PyTorch's default init would. */
void esr_vgg_reset(esr_vgg *v, uint64_t *rng) {
  size_t off = 0;
  for (int i = 0; i < ESR_VGG_CONVS; i++) {
    int ic = i ? v_width[i - 1] : 3, oc = v_width[i];
    float bound = sqrtf(6.0f / ((float)ic * 9.0f));
    for (size_t j = 0; j < (size_t)oc * ic * 9; j++)
      v->params[off + j] = esr_rng_uniform(rng, -bound, bound);
    for (int j = 0; j < oc; j++) v->params[off + (size_t)oc * ic * 9 + j] = 0.0f;
    off += nn_conv_nparams(ic, oc);
  }
}

int esr_vgg_sync(nn_ctx *ctx, esr_vgg *v) {
  return nn_conv_sync_many(ctx, v->conv, ESR_VGG_CONVS);
}

int esr_vtape_init(nn_ctx *ctx, esr_vgg *v, esr_vtape *t) {
  memset(t, 0, sizeof *t);
  int rc = 0;
  for (int i = 0; i < ESR_VGG_CONVS && !rc; i++) {
    int h = v_side(i, v->hr), p = v_pool_after(i);
    rc = nn_tensor_init(ctx, &t->out[i], v->n, v_width[i], h, h);
    if (!rc && p >= 0) rc = nn_tensor_init(ctx, &t->pool[p], v->n, v_width[i], h / 2, h / 2);
    if (!rc && p >= 0) rc = nn_pool_ws_init(ctx, &v->pool[p], &t->ws[p], &t->wsbuf[p]);
  }
  if (rc) esr_vtape_free(t);
  return rc;
}

void esr_vtape_free(esr_vtape *t) {
  if (!t) return;
  for (int i = 0; i < ESR_VGG_CONVS; i++) nn_tensor_free(&t->out[i]);
  for (int p = 0; p < 4; p++) {
    nn_tensor_free(&t->pool[p]);
    if (t->ws[p]) dnnl_memory_destroy(t->ws[p]);
    free(t->wsbuf[p]);
  }
  memset(t, 0, sizeof *t);
}

int esr_vgg_forward(nn_ctx *ctx, esr_vgg *v, esr_vtape *t, nn_tensor *x) {
  nn_tensor *in = x;
  for (int i = 0; i < ESR_VGG_CONVS; i++) {
    int rc = nn_conv_forward(ctx, &v->conv[i], in, &t->out[i]);
    if (rc) return rc;
    if (i == ESR_VGG_CONVS - 1) break;
    nn_lrelu_forward(&t->out[i], 0.0f);
    in = &t->out[i];
    int p = v_pool_after(i);
    if (p >= 0) {
      if ((rc = nn_pool_forward(ctx, &v->pool[p], in, &t->pool[p], t->ws[p]))) return rc;
      in = &t->pool[p];
    }
  }
  return 0;
}

int esr_vgg_backward(nn_ctx *ctx, esr_vgg *v, esr_vtape *t) {
  for (int i = ESR_VGG_CONVS - 1; i >= 0; i--) {
    int rc;
    if (i < ESR_VGG_CONVS - 1) nn_lrelu_backward(&t->out[i], &v->dout[i], &v->dout[i], 0.0f);
    nn_tensor *gin;
    if (i == 0) gin = &v->dx;
    else if (v_pool_after(i - 1) >= 0) gin = &v->dpool[v_pool_after(i - 1)];
    else gin = &v->dout[i - 1];
    if ((rc = nn_conv_backward_data(ctx, &v->conv[i], &v->dout[i], gin))) return rc;
    if (i > 0 && v_pool_after(i - 1) >= 0) {
      int p = v_pool_after(i - 1);
      if ((rc = nn_pool_backward(ctx, &v->pool[p], &v->dpool[p], &v->dout[i - 1], t->ws[p])))
        return rc;
    }
  }
  return 0;
}
