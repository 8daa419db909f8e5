/* test_esrgan_gradcheck.c - finite-difference checks of every backward.
 *
 * For each layer type (conv stride 1 and 2, leaky ReLU, batch norm, max
 * pool, pixel shuffle, concat/split), each loss (L1, RaGAN G and D) and the
 * three whole networks, the analytic gradient of J = sum(r * output) (or of
 * the loss) along a random direction must match a central difference.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "test.h"

static nn_ctx ctx;
static uint64_t rng = 42;

static void setup(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  ASSERT_EQ_INT(nn_ctx_init(&ctx, getenv("ESR_WINO") ? 1 : 0, 0), 0);
  ctx.allow_ref = 1; /* tiny shapes; speed is not the point here */
}

/* Each case frees what it built, so LeakSanitizer can run it alone. */
static void teardown(void) { nn_ctx_free(&ctx); }

/* Random values on the logical elements, zeros in the channel padding. */
static void fill(nn_tensor *t, float lo, float hi) {
  memset(t->data, 0, t->nfloats * 4);
  for (int n = 0; n < t->n; n++)
    for (int c = 0; c < t->c; c++)
      for (int y = 0; y < t->h; y++)
        for (int x = 0; x < t->w; x++)
          t->data[nn_off(t, n, c, y, x)] = esr_rng_uniform(&rng, lo, hi);
}

/* A direction with k random +-1 entries on logical elements: deep nets
 * have too many leaky-ReLU / max-pool kinks for a dense direction to stay
 * on one smooth piece at float32 step sizes. */
static void sparse_dir(float *d, size_t n, const nn_tensor *t, int k) {
  memset(d, 0, n * 4);
  for (int i = 0; i < k; i++) {
    size_t o;
    if (t)
      o = nn_off(t, (int)(esr_rng_next(&rng) % (uint64_t)t->n),
                 (int)(esr_rng_next(&rng) % (uint64_t)t->c),
                 (int)(esr_rng_next(&rng) % (uint64_t)t->h),
                 (int)(esr_rng_next(&rng) % (uint64_t)t->w));
    else
      o = (size_t)(esr_rng_next(&rng) % n);
    d[o] = (esr_rng_next(&rng) & 1) ? 1.0f : -1.0f;
  }
}

static void fill_buf(float *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = esr_rng_uniform(&rng, -1, 1);
}

static double dot(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

typedef double (*objective)(void *u);

/* Central difference of J along dir applied to x (n floats), compared with
 * <grad, dir>.  `after` re-syncs derived state (conv weights).  Returns the
 * relative error. */
static double dircheck(const char *name, float *x, size_t n, const float *grad,
                       const float *dir, double eps, objective J, void *u,
                       void (*after)(void *)) {
  float *save = malloc(n * 4);
  memcpy(save, x, n * 4);
  for (size_t i = 0; i < n; i++) x[i] = save[i] + (float)eps * dir[i];
  if (after) after(u);
  double jp = J(u);
  for (size_t i = 0; i < n; i++) x[i] = save[i] - (float)eps * dir[i];
  if (after) after(u);
  double jm = J(u);
  memcpy(x, save, n * 4);
  if (after) after(u);
  free(save);
  double fd = (jp - jm) / (2 * eps), an = dot(grad, dir, n);
  double rel = fabs(fd - an) / fmax(fmax(fabs(fd), fabs(an)), 1e-12);
  printf("  %-28s analytic % .6e  numeric % .6e  rel %.2e\n", name, an, fd, rel);
  return rel;
}

/* Deep float32 networks: a single central difference is either noisy
 * (small step) or crosses kinks (large step), so whole networks are
 * checked over 8 sparse directions at once, and only to 10%: enough to
 * catch a missing path, scale or sign (errors of order 1).  Agreement to
 * 1e-5 is the job of the PyTorch golden test (test_esrgan_golden). */
static double multicheck(const char *name, float *x, size_t n, const float *grad,
                         const nn_tensor *t, int k, objective J, void *u,
                         void (*after)(void *)) {
  float *d = calloc(n, 4);
  double num2 = 0, an2 = 0;
  for (int rep = 0; rep < 8; rep++) {
    sparse_dir(d, n, t, k);
    double eps = 3e-3;
    float *save = malloc(n * 4);
    memcpy(save, x, n * 4);
    for (size_t i = 0; i < n; i++) x[i] = save[i] + (float)eps * d[i];
    if (after) after(u);
    double jp = J(u);
    for (size_t i = 0; i < n; i++) x[i] = save[i] - (float)eps * d[i];
    if (after) after(u);
    double jm = J(u);
    memcpy(x, save, n * 4);
    if (after) after(u);
    free(save);
    double fd = (jp - jm) / (2 * eps), an = dot(grad, d, n);
    num2 += (fd - an) * (fd - an);
    an2 += an * an;
  }
  free(d);
  double rel = sqrt(num2 / fmax(an2, 1e-30));
  printf("  %-28s 8 directions: ||analytic|| %.4e  ||num - an|| / ||an|| %.2e\n", name,
         sqrt(an2), rel);
  return rel;
}

/* ---- single conv ------------------------------------------------------- */

typedef struct {
  nn_conv cv;
  nn_tensor x, y, r, dx;
  float *params, *grads;
  size_t np;
} conv_case;

static double conv_J(void *u) {
  conv_case *c = u;
  ASSERT_EQ_INT(nn_conv_forward(&ctx, &c->cv, &c->x, &c->y), 0);
  return dot(c->y.data, c->r.data, c->y.nfloats);
}

static void conv_sync(void *u) {
  conv_case *c = u;
  ASSERT_EQ_INT(nn_conv_sync(&ctx, &c->cv), 0);
}

static void conv_check(int ic, int oc, int stride, int h) {
  conv_case c;
  int n = 2;
  c.np = nn_conv_nparams(ic, oc);
  c.params = calloc(c.np, 4);
  c.grads = calloc(c.np, 4);
  fill_buf(c.params, c.np);
  ASSERT_EQ_INT(nn_conv_init(&ctx, &c.cv, n, ic, oc, h, h, stride,
                             NN_NEED_BWD_DATA | NN_NEED_BWD_W, c.params, c.grads), 0);
  int oh = c.cv.oh;
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &c.x, n, ic, h, h), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &c.dx, n, ic, h, h), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &c.y, n, oc, oh, oh), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &c.r, n, oc, oh, oh), 0);
  fill(&c.x, -1, 1);
  fill(&c.r, -1, 1);
  ASSERT_EQ_INT(nn_conv_backward_data(&ctx, &c.cv, &c.r, &c.dx), 0);
  ASSERT_EQ_INT(nn_conv_backward_weights(&ctx, &c.cv, &c.x, &c.r), 0);
  nn_tensor dir;
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &dir, n, ic, h, h), 0);
  fill(&dir, -1, 1);
  char name[64];
  snprintf(name, sizeof name, "conv %d->%d s%d dx", ic, oc, stride);
  ASSERT_OP_DBL(dircheck(name, c.x.data, c.x.nfloats, c.dx.data, dir.data, 1e-2,
                         conv_J, &c, NULL), <, 1e-3);
  float *wd = malloc(c.np * 4);
  fill_buf(wd, c.np);
  snprintf(name, sizeof name, "conv %d->%d s%d dW,db", ic, oc, stride);
  ASSERT_OP_DBL(dircheck(name, c.params, c.np, c.grads, wd, 1e-2, conv_J, &c,
                         conv_sync), <, 1e-3);
  /* accumulation: a second backward adds the same gradient again */
  float *g1 = malloc(c.np * 4);
  memcpy(g1, c.grads, c.np * 4);
  ASSERT_EQ_INT(nn_conv_backward_weights(&ctx, &c.cv, &c.x, &c.r), 0);
  for (size_t i = 0; i < c.np; i += 97) ASSERT_NEAR(c.grads[i], 2 * g1[i], 1e-4 * (1 + fabsf(g1[i])));
  free(g1), free(wd), free(c.params), free(c.grads);
  nn_conv_free(&c.cv);
  nn_tensor_free(&c.x), nn_tensor_free(&c.dx), nn_tensor_free(&c.y), nn_tensor_free(&c.r);
  nn_tensor_free(&dir);
}

TEST(conv_stride1) {
  setup();
  conv_check(32, 16, 1, 8);
  teardown();
}

TEST(conv_stride2) {
  setup();
  conv_check(16, 32, 2, 8);
  teardown();
}

TEST(conv_three_channel_input) {
  setup();
  conv_check(3, 16, 1, 8);
  conv_check(16, 3, 1, 8);
  teardown();
}

/* ---- element-wise, batch norm, pool ---------------------------------- */

typedef struct {
  int kind; /* 0 lrelu, 1 bn, 2 pool */
  nn_tensor x, y, r;
  nn_bn bn;
  nn_bn_stats st;
  nn_pool pool;
  dnnl_memory_t ws;
  void *wsbuf;
  float bnp[64], bng[64], bnrun[64];
} ew_case;

static double ew_J(void *u) {
  ew_case *c = u;
  if (c->kind == 0) {
    nn_copy(&c->x, &c->y);
    nn_lrelu_forward(&c->y, 0.2f);
  } else if (c->kind == 1) {
    ASSERT_EQ_INT(nn_bn_forward(&ctx, &c->bn, &c->x, &c->y, &c->st), 0);
  } else {
    ASSERT_EQ_INT(nn_pool_forward(&ctx, &c->pool, &c->x, &c->y, c->ws), 0);
  }
  return dot(c->y.data, c->r.data, c->y.nfloats);
}

static void ew_check(int kind) {
  ew_case c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  int n = 2, C = 16, h = 8, oh = kind == 2 ? 4 : 8;
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &c.x, n, C, h, h), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &c.y, n, C, oh, oh), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &c.r, n, C, oh, oh), 0);
  nn_tensor dx, dir;
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &dx, n, C, h, h), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &dir, n, C, h, h), 0);
  fill(&c.x, -2, 2);
  fill(&c.r, -1, 1);
  fill(&dir, -1, 1);
  if (kind == 1) {
    for (int i = 0; i < C; i++) {
      c.bnp[i] = esr_rng_uniform(&rng, 0.5f, 1.5f);
      c.bnp[C + i] = esr_rng_uniform(&rng, -0.5f, 0.5f);
      c.bnrun[i] = 0, c.bnrun[C + i] = 1;
    }
    ASSERT_EQ_INT(nn_bn_init(&ctx, &c.bn, n, C, h, h, c.bnp, c.bng, c.bnrun), 0);
    ASSERT_EQ_INT(nn_bn_stats_init(&ctx, &c.st, C), 0);
  }
  if (kind == 2) {
    ASSERT_EQ_INT(nn_pool_init(&ctx, &c.pool, n, C, h, h), 0);
    ASSERT_EQ_INT(nn_pool_ws_init(&ctx, &c.pool, &c.ws, &c.wsbuf), 0);
  }
  ew_J(&c);
  const char *name = kind == 0 ? "leaky relu 0.2 dx" : kind == 1 ? "batch norm dx" : "max pool dx";
  if (kind == 0) nn_lrelu_backward(&c.y, &c.r, &dx, 0.2f);
  if (kind == 1) ASSERT_EQ_INT(nn_bn_backward(&ctx, &c.bn, &c.x, &c.st, &c.r, &dx, 1), 0);
  if (kind == 2) ASSERT_EQ_INT(nn_pool_backward(&ctx, &c.pool, &c.r, &dx, c.ws), 0);
  ASSERT_OP_DBL(dircheck(name, c.x.data, c.x.nfloats, dx.data, dir.data, 1e-3, ew_J, &c, NULL),
                <, 2e-3);
  if (kind == 1) {
    float d[32];
    fill_buf(d, 2 * (size_t)C);
    ASSERT_OP_DBL(dircheck("batch norm dgamma,dbeta", c.bnp, 2 * (size_t)C, c.bng, d, 1e-3,
                           ew_J, &c, NULL), <, 2e-3);
  }
  nn_bn_free(&c.bn), nn_bn_stats_free(&c.st), nn_pool_free(&c.pool);
  if (c.ws) dnnl_memory_destroy(c.ws);
  free(c.wsbuf);
  nn_tensor_free(&c.x), nn_tensor_free(&c.y), nn_tensor_free(&c.r);
  nn_tensor_free(&dx), nn_tensor_free(&dir);
  teardown();
}

TEST(leaky_relu) {
  setup();
  ew_check(0);
}

TEST(batch_norm) {
  setup();
  ew_check(1);
}

TEST(batch_norm_running_stats_follow_pytorch) {
  setup();
  /* running_mean = 0.9 rm + 0.1 mean, running_var = 0.9 rv + 0.1 var * n/(n-1) */
  nn_tensor x, y;
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &x, 2, 16, 2, 2), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &y, 2, 16, 2, 2), 0);
  float p[32], g[32], run[32];
  for (int i = 0; i < 16; i++) p[i] = 1, p[16 + i] = 0, run[i] = 0, run[16 + i] = 1;
  fill(&x, -1, 1);
  nn_bn bn;
  nn_bn_stats st;
  ASSERT_EQ_INT(nn_bn_init(&ctx, &bn, 2, 16, 2, 2, p, g, run), 0);
  ASSERT_EQ_INT(nn_bn_stats_init(&ctx, &st, 16), 0);
  ASSERT_EQ_INT(nn_bn_forward(&ctx, &bn, &x, &y, &st), 0);
  for (int c = 0; c < 16; c++) {
    double s = 0, s2 = 0;
    for (int n = 0; n < 2; n++)
      for (int i = 0; i < 4; i++) {
        double v = x.data[nn_off(&x, n, c, i / 2, i % 2)];
        s += v, s2 += v * v;
      }
    double mean = s / 8, var = s2 / 8 - mean * mean;
    ASSERT_NEAR(run[c], 0.1 * mean, 1e-6);
    ASSERT_NEAR(run[16 + c], 0.9 + 0.1 * var * 8 / 7, 1e-5);
  }
  nn_bn_free(&bn), nn_bn_stats_free(&st);
  nn_tensor_free(&x), nn_tensor_free(&y);
  teardown();
}

TEST(max_pool) {
  setup();
  ew_check(2);
}

/* ---- linear data movement: adjoint identities ------------------------ */

TEST(pixel_shuffle_adjoint_and_index_rule) {
  setup();
  nn_tensor x, y, x2, y2;
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &x, 2, 64, 3, 5), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &x2, 2, 64, 3, 5), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &y, 2, 16, 6, 10), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &y2, 2, 16, 6, 10), 0);
  fill(&x, -1, 1);
  fill(&y2, -1, 1);
  nn_pixel_shuffle(&x, &y);
  /* PyTorch: input channel c*4 + i*2 + j -> output channel c, (2y+i, 2x+j) */
  ASSERT_EQ_INT(y.data[nn_off(&y, 1, 5, 3, 6)] == x.data[nn_off(&x, 1, 5 * 4 + 1 * 2 + 0, 1, 3)], 1);
  ASSERT_EQ_INT(y.data[nn_off(&y, 0, 15, 0, 9)] == x.data[nn_off(&x, 0, 15 * 4 + 0 + 1, 0, 4)], 1);
  nn_pixel_unshuffle(&y2, &x2);
  double a = dot(y.data, y2.data, y.nfloats), b = dot(x.data, x2.data, x.nfloats);
  printf("  pixel shuffle <Sx,y> %.9g <x,S'y> %.9g\n", a, b);
  ASSERT_NEAR(a, b, 1e-9 * (1 + fabs(a)) + 1e-4);
  nn_pixel_unshuffle(&y, &x2);
  for (size_t i = 0; i < x.nfloats; i++) ASSERT_EQ_INT(x.data[i] == x2.data[i], 1);
  nn_tensor_free(&x), nn_tensor_free(&x2), nn_tensor_free(&y), nn_tensor_free(&y2);
  teardown();
}

TEST(concat_split_adjoint) {
  setup();
  nn_tensor a, b, cat, g, ga, gb;
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &a, 2, 16, 4, 4), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &b, 2, 32, 4, 4), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &ga, 2, 16, 4, 4), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &gb, 2, 32, 4, 4), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &cat, 2, 48, 4, 4), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &g, 2, 48, 4, 4), 0);
  fill(&a, -1, 1), fill(&b, -1, 1), fill(&g, -1, 1);
  nn_tensor *srcs[2] = {&a, &b}, *dsts[2] = {&ga, &gb};
  nn_concat(srcs, 2, &cat);
  ASSERT_EQ_INT(cat.data[nn_off(&cat, 1, 20, 2, 3)] == b.data[nn_off(&b, 1, 4, 2, 3)], 1);
  ASSERT_EQ_INT(cat.data[nn_off(&cat, 1, 7, 1, 0)] == a.data[nn_off(&a, 1, 7, 1, 0)], 1);
  nn_split(&g, dsts, 2, 0);
  double l = dot(cat.data, g.data, g.nfloats);
  double r = dot(a.data, ga.data, a.nfloats) + dot(b.data, gb.data, b.nfloats);
  ASSERT_NEAR(l, r, 1e-4);
  nn_split(&g, dsts, 2, 2u); /* gb accumulates, ga is overwritten */
  r = dot(a.data, ga.data, a.nfloats) + 0.5 * dot(b.data, gb.data, b.nfloats);
  ASSERT_NEAR(l, r, 1e-4);
  nn_tensor *all[] = {&a, &b, &cat, &g, &ga, &gb};
  for (int i = 0; i < 6; i++) nn_tensor_free(all[i]);
  teardown();
}

/* ---- losses ------------------------------------------------------------ */

typedef struct {
  int kind; /* 0 L1, 1 RaGAN G, 2 RaGAN D */
  nn_tensor a, b;
} loss_case;

static double loss_J(void *u) {
  loss_case *c = u;
  if (c->kind == 0) return nn_l1_loss(&c->a, &c->b, NULL, 1);
  if (c->kind == 1) return nn_ragan_g_loss(&c->b, &c->a, NULL, 1);
  return nn_ragan_d_loss(&c->a, &c->b, NULL, NULL);
}

TEST(losses) {
  setup();
  loss_case c;
  nn_tensor ga, gb, dir;
  for (int kind = 0; kind < 3; kind++) {
    c.kind = kind;
    int C = kind == 0 ? 3 : 1;
    ASSERT_EQ_INT(nn_tensor_init(&ctx, &c.a, 3, C, 4, 4), 0);
    ASSERT_EQ_INT(nn_tensor_init(&ctx, &c.b, 3, C, 4, 4), 0);
    ASSERT_EQ_INT(nn_tensor_init(&ctx, &ga, 3, C, 4, 4), 0);
    ASSERT_EQ_INT(nn_tensor_init(&ctx, &gb, 3, C, 4, 4), 0);
    ASSERT_EQ_INT(nn_tensor_init(&ctx, &dir, 3, C, 4, 4), 0);
    fill(&c.a, -3, 3), fill(&c.b, -3, 3), fill(&dir, -1, 1);
    double L;
    if (kind == 0) {
      L = nn_l1_loss(&c.a, &c.b, &ga, 1);
      ASSERT_OP_DBL(dircheck("L1 loss d/da", c.a.data, c.a.nfloats, ga.data, dir.data, 1e-3,
                             loss_J, &c, NULL), <, 1e-3);
    } else if (kind == 1) {
      L = nn_ragan_g_loss(&c.b, &c.a, &ga, 1);
      ASSERT_OP_DBL(dircheck("RaGAN G loss d/dfake", c.a.data, c.a.nfloats, ga.data, dir.data,
                             1e-3, loss_J, &c, NULL), <, 1e-3);
    } else {
      L = nn_ragan_d_loss(&c.a, &c.b, &ga, &gb);
      ASSERT_OP_DBL(dircheck("RaGAN D loss d/dreal", c.a.data, c.a.nfloats, ga.data, dir.data,
                             1e-3, loss_J, &c, NULL), <, 1e-3);
      ASSERT_OP_DBL(dircheck("RaGAN D loss d/dfake", c.b.data, c.b.nfloats, gb.data, dir.data,
                             1e-3, loss_J, &c, NULL), <, 1e-3);
    }
    ASSERT(L > 0 && isfinite(L));
    nn_tensor_free(&c.a), nn_tensor_free(&c.b), nn_tensor_free(&ga), nn_tensor_free(&gb);
    nn_tensor_free(&dir);
  }
  /* BCE-with-logits value: z = 0 gives log 2 for either target */
  nn_tensor r, f;
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &r, 2, 1, 2, 2), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &f, 2, 1, 2, 2), 0);
  ASSERT_NEAR(nn_ragan_g_loss(&r, &f, NULL, 1), log(2.0), 1e-12);
  ASSERT_NEAR(nn_ragan_d_loss(&r, &f, NULL, NULL), log(2.0), 1e-12);
  nn_tensor_free(&r), nn_tensor_free(&f);
  teardown();
}

/* ---- whole networks -------------------------------------------------- */

typedef struct {
  esr_gen g;
  esr_disc d;
  esr_dtape dt;
  esr_vgg v;
  esr_vtape vt;
  nn_tensor x, r;
  int which; /* 0 G, 1 D, 2 VGG */
} net_case;

static nn_tensor *net_out(net_case *c) {
  return c->which == 0 ? &c->g.out : c->which == 1 ? &c->dt.logits : &c->vt.out[ESR_VGG_CONVS - 1];
}

static double net_J(void *u) {
  net_case *c = u;
  if (c->which == 0) ASSERT_EQ_INT(esr_gen_forward(&ctx, &c->g), 0);
  if (c->which == 1) ASSERT_EQ_INT(esr_disc_forward(&ctx, &c->d, &c->dt, &c->x), 0);
  if (c->which == 2) ASSERT_EQ_INT(esr_vgg_forward(&ctx, &c->v, &c->vt, &c->x), 0);
  nn_tensor *o = net_out(c);
  return dot(o->data, c->r.data, o->nfloats);
}

static void net_free(net_case *c) {
  esr_gen_free(&c->g), esr_disc_free(&c->d), esr_dtape_free(&c->dt);
  esr_vtape_free(&c->vt), esr_vgg_free(&c->v);
  nn_tensor_free(&c->x), nn_tensor_free(&c->r);
  teardown();
}

static void net_sync(void *u) {
  net_case *c = u;
  if (c->which == 0) ASSERT_EQ_INT(esr_gen_sync(&ctx, &c->g), 0);
  if (c->which == 1) ASSERT_EQ_INT(esr_disc_sync(&ctx, &c->d), 0);
}

TEST(generator_whole) {
  setup();
  net_case c;
  memset(&c, 0, sizeof c);
  ASSERT_EQ_INT(esr_gen_init(&ctx, &c.g, 2, 32, 16, 1), 0);
  ASSERT_EQ_U64(c.g.nparams, esr_gen_nparams(16, 1));
  ASSERT_EQ_U64(esr_gen_nparams(64, 23), 38549123);
  ASSERT_EQ_U64(esr_gen_nparams(64, 2), 3692483);
  ASSERT_EQ_U64(esr_gen_nparams(32, 2), 924643);
  esr_gen_reset(&c.g, &rng);
  ASSERT_EQ_INT(esr_gen_sync(&ctx, &c.g), 0);
  fill(&c.g.in, -1, 1);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &c.r, 2, 3, 32, 32), 0);
  fill(&c.r, -1, 1);
  net_J(&c);
  nn_copy(&c.r, &c.g.dout);
  ASSERT_EQ_INT(esr_gen_backward(&ctx, &c.g), 0);
  ASSERT_OP_DBL(multicheck("generator dW", c.g.params, c.g.nparams, c.g.grads, NULL, 16,
                           net_J, &c, net_sync), <, 1e-1);
  net_free(&c);
}

TEST(discriminator_whole) {
  setup();
  net_case c;
  memset(&c, 0, sizeof c);
  c.which = 1;
  ASSERT_EQ_INT(esr_disc_init(&ctx, &c.d, 3, 32), 0);
  ASSERT_EQ_U64(c.d.nparams, 4693697);
  esr_disc_reset(&c.d, &rng);
  ASSERT_EQ_INT(esr_disc_sync(&ctx, &c.d), 0);
  ASSERT_EQ_INT(esr_dtape_init(&ctx, &c.dt, 3, 32), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &c.x, 3, 3, 32, 32), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &c.r, 3, 1, 2, 2), 0);
  fill(&c.x, -1, 1), fill(&c.r, -1, 1);
  net_J(&c);
  nn_copy(&c.r, &c.d.dlogits);
  ASSERT_EQ_INT(esr_disc_backward(&ctx, &c.d, &c.dt, 1, 1), 0);
  nn_tensor dir;
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &dir, 3, 3, 32, 32), 0);
  ASSERT_OP_DBL(multicheck("discriminator dx", c.x.data, c.x.nfloats, c.d.dx.data, &dir, 4,
                           net_J, &c, NULL), <, 1e-1);
  ASSERT_OP_DBL(multicheck("discriminator dW", c.d.params, c.d.nparams, c.d.grads, NULL, 16,
                           net_J, &c, net_sync), <, 1e-1);
  nn_tensor_free(&dir);
  net_free(&c);
}

TEST(vgg_whole) {
  setup();
  net_case c;
  memset(&c, 0, sizeof c);
  c.which = 2;
  ASSERT_EQ_INT(esr_vgg_init(&ctx, &c.v, 2, 32), 0);
  ASSERT_EQ_U64(c.v.nparams, 20024384);
  esr_vgg_reset(&c.v, &rng);
  ASSERT_EQ_INT(esr_vgg_sync(&ctx, &c.v), 0);
  ASSERT_EQ_INT(esr_vtape_init(&ctx, &c.v, &c.vt), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &c.x, 2, 3, 32, 32), 0);
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &c.r, 2, 512, 2, 2), 0);
  fill(&c.x, -1, 1), fill(&c.r, -1, 1);
  net_J(&c);
  nn_copy(&c.r, &c.v.dout[ESR_VGG_CONVS - 1]);
  ASSERT_EQ_INT(esr_vgg_backward(&ctx, &c.v, &c.vt), 0);
  nn_tensor dir;
  ASSERT_EQ_INT(nn_tensor_init(&ctx, &dir, 2, 3, 32, 32), 0);
  ASSERT_OP_DBL(multicheck("vgg19 dx", c.x.data, c.x.nfloats, c.v.dx.data, &dir, 4, net_J, &c,
                           NULL), <, 1e-1);
  nn_tensor_free(&dir);
  net_free(&c);
}

TEST(adam_matches_closed_form_first_step) {
  /* step 1: m = 0.1 g, v = 0.001 g^2, update = -lr * g/(|g| + eps*...) */
  nn_adam a;
  ASSERT_EQ_INT(nn_adam_init(&a, 3, 0.1f, 0.9f, 0.999f), 0);
  float p[3] = {1, 2, 3}, g[3] = {0.5f, -2, 0};
  nn_adam_step(&a, p, g);
  ASSERT_NEAR(p[0], 0.9, 1e-6);
  ASSERT_NEAR(p[1], 2.1, 1e-6);
  ASSERT_NEAR(p[2], 3.0, 1e-9);
  nn_adam_free(&a);
}

TEST_MAIN()
