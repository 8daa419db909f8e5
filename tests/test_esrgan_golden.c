/* test_esrgan_golden.c - the C trainer against PyTorch on a tiny ESRGAN.
 *
 * Writes initial weights and batches, runs tests/esrgan_golden.py (Debian's
 * /usr/bin/python3 with python3-torch) on them, and compares losses, the
 * first GAN step's output and all G and D gradients, and the weights and
 * BatchNorm running stats after a few steps, printing max differences.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "train.h"

#ifndef PM_SOURCE_DIR
#define PM_SOURCE_DIR "."
#endif

#define HR 32
#define GF 16
#define NB 1
#define N 2
#define STEPS 4
#define WARMUP 1

static void fill_batch(uint64_t *rng, float *lr, float *hr) {
  /* smooth structured images plus a little noise; lr = 4x4 box average */
  for (int n = 0; n < N; n++) {
    float fx = esr_rng_uniform(rng, 0.1f, 0.5f), fy = esr_rng_uniform(rng, 0.1f, 0.5f);
    for (int c = 0; c < 3; c++)
      for (int y = 0; y < HR; y++)
        for (int x = 0; x < HR; x++)
          hr[((n * 3 + c) * HR + y) * HR + x] =
              sinf(fx * x + c) * cosf(fy * y - c) + esr_rng_uniform(rng, -0.2f, 0.2f);
    int L = HR / 4;
    for (int c = 0; c < 3; c++)
      for (int y = 0; y < L; y++)
        for (int x = 0; x < L; x++) {
          float s = 0;
          for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
              s += hr[((n * 3 + c) * HR + 4 * y + i) * HR + 4 * x + j];
          lr[((n * 3 + c) * L + y) * L + x] = s / 16;
        }
  }
}

static int run_python(const char *script, const char *in, const char *out) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    char *argv[] = {"/usr/bin/python3", (char *)script, (char *)in, (char *)out, NULL};
    execv(argv[0], argv);
    fprintf(stderr, "exec /usr/bin/python3: %s\n", strerror(errno));
    _exit(127);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Max |a-b| relative to max |b|; prints and returns it. */
static double cmp(const char *name, const float *a, const float *b, size_t n,
                  double tol) {
  double md = 0, mb = 0;
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (d > md) md = d, at = i;
    if (fabs(b[i]) > mb) mb = fabs(b[i]);
  }
  double rel = mb > 0 ? md / mb : md;
  printf("  %-22s n=%-8zu max|diff| %.3e  max|ref| %.3e  rel %.3e  tol %.1e%s\n",
         name, n, md, mb, rel, tol, rel <= tol ? "" : "  FAIL");
  if (rel > tol)
    printf("    worst at %zu: c %.8g torch %.8g\n", at, a[at], b[at]);
  return rel;
}

/* Weights after a few Adam steps: at most 0.1% of them may differ by more
 * than 1e-5 (Adam turns the sign noise of near-zero gradients into lr-sized
 * steps); the entries flagged in `noisy` may move up to 2 lr per step. */
static int params_match(const char *name, const float *a, const float *b, size_t n,
                        const unsigned char *noisy) {
  size_t off = 0, cnt = 0;
  double md = 0, mnoisy = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (noisy && noisy[i]) {
      mnoisy = fmax(mnoisy, d);
      continue;
    }
    cnt++;
    md = fmax(md, d);
    if (d > 1e-5) off++;
  }
  double frac = cnt ? (double)off / cnt : 0, travel = 2.0 * 2e-4 * (STEPS - WARMUP);
  int bad = frac > 1e-3 || mnoisy > travel;
  printf("  %-22s n=%-8zu max|diff| %.3e  %.4f%% differ by >1e-5 (tol 0.1%%)", name, cnt,
         md, 100 * frac);
  if (noisy) printf("; pre-BN biases max|diff| %.3e (bound %.1e)", mnoisy, travel);
  printf("%s\n", bad ? "  FAIL" : "");
  return bad;
}

TEST(golden_against_pytorch) {
  setvbuf(stdout, NULL, _IONBF, 0);
  nn_ctx ctx;
  ASSERT_EQ_INT(nn_ctx_init(&ctx, 1, 0), 0);
  esr_hparams hp = {.hr = HR, .batch = N, .F = GF, .B = NB, .warmup_batches = WARMUP,
                    .lambda_adv = 5e-3f, .lambda_pixel = 1e-2f, .lambda_content = 1.0f,
                    .lr = 2e-4f, .b1 = 0.9f, .b2 = 0.999f, .content = 1};
  esr_trainer t;
  int rc = esr_trainer_init(&t, &ctx, &hp, 1234);
  if (rc) printf("init: %s\n", nn_errmsg());
  ASSERT_EQ_INT(rc, 0);
  /* VGG weights: scale up the default init a little so features are not tiny */
  char dir[] = "/tmp/esrgan_goldenXXXXXX";
  ASSERT(mkdtemp(dir) != NULL);
  char in[256], out[256];
  snprintf(in, sizeof in, "%s/in.bin", dir);
  snprintf(out, sizeof out, "%s/out.bin", dir);
  FILE *f = fopen(in, "wb");
  ASSERT(f != NULL);
  fwrite("ESRGOLD1", 1, 8, f);
  int32_t hdr[6] = {HR, GF, NB, N, STEPS, WARMUP};
  float fh[6] = {hp.lr, hp.b1, hp.b2, hp.lambda_adv, hp.lambda_pixel, hp.lambda_content};
  fwrite(hdr, 4, 6, f);
  fwrite(fh, 4, 6, f);
  fwrite(t.G.params, 4, t.G.nparams, f);
  fwrite(t.D.params, 4, t.D.nparams, f);
  fwrite(t.V.params, 4, t.V.nparams, f);
  size_t nlr = (size_t)N * 3 * (HR / 4) * (HR / 4), nhr = (size_t)N * 3 * HR * HR;
  float *lr = malloc(nlr * STEPS * 4), *hr = malloc(nhr * STEPS * 4);
  uint64_t rng = 99;
  for (int s = 0; s < STEPS; s++) {
    fill_batch(&rng, lr + s * nlr, hr + s * nhr);
    fwrite(lr + s * nlr, 4, nlr, f);
    fwrite(hr + s * nhr, 4, nhr, f);
  }
  ASSERT_EQ_INT(fclose(f), 0);

  /* C run */
  float closs[STEPS][5];
  float *gout = malloc(nhr * 4), *ggrad = malloc(t.G.nparams * 4),
        *dgrad = malloc(t.D.nparams * 4);
  int first = -1;
  for (int s = 0; s < STEPS; s++) {
    esr_trainer_set_batch(&t, lr + s * nlr, hr + s * nhr);
    int warm = s < WARMUP;
    rc = esr_trainer_step(&t, warm);
    if (rc) printf("step %d: %s\n", s, nn_errmsg());
    ASSERT_EQ_INT(rc, 0);
    closs[s][0] = (float)t.loss_pixel, closs[s][1] = (float)t.loss_content;
    closs[s][2] = (float)t.loss_adv, closs[s][3] = (float)t.loss_g;
    closs[s][4] = (float)t.loss_d;
    if (!warm && first < 0) {
      first = s;
      nn_tensor_to_nchw(&t.G.out, gout);
      memcpy(ggrad, t.G.grads, t.G.nparams * 4);
      memcpy(dgrad, t.D.grads, t.D.nparams * 4);
    }
  }

  char script[512];
  snprintf(script, sizeof script, "%s/tests/esrgan_golden.py", PM_SOURCE_DIR);
  int prc = run_python(script, in, out);
  if (prc != 0)
    printf("%s exited with %d: this test needs Debian's python3-torch and "
           "python3-numpy (apt-get install python3-torch python3-numpy)\n",
           script, prc);
  ASSERT_EQ_INT(prc, 0);
  f = fopen(out, "rb");
  ASSERT(f != NULL);
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)sz);
  ASSERT_EQ_INT(fread(buf, 1, (size_t)sz, f), sz);
  fclose(f);
  ASSERT(memcmp(buf, "ESRGOUT1", 8) == 0);
  size_t expect = 8 + 4 * (STEPS * 5 + nhr + 2 * t.G.nparams + 2 * t.D.nparams +
                           t.D.nrunning);
  ASSERT_EQ_U64((uint64_t)sz, (uint64_t)expect);
  float *p = (float *)(buf + 8);
  float *tloss = p;
  p += STEPS * 5;
  printf("losses (pixel, content, adv, G, D) C vs torch:\n");
  double worst_loss = 0;
  for (int s = 0; s < STEPS; s++) {
    printf("  step %d:", s);
    for (int k = 0; k < 5; k++) {
      double d = fabs(closs[s][k] - tloss[s * 5 + k]) / fmax(1e-6, fabs(tloss[s * 5 + k]));
      if (d > worst_loss) worst_loss = d;
      printf(" %.6g/%.6g", closs[s][k], tloss[s * 5 + k]);
    }
    printf("\n");
  }
  printf("  worst relative loss difference %.3e (tol 1e-4)\n", worst_loss);
  int bad = worst_loss > 1e-4;
  printf("first GAN step (step %d):\n", first);
  bad |= cmp("G output", gout, p, nhr, 1e-5) > 1e-5;
  p += nhr;
  bad |= cmp("G grads", ggrad, p, t.G.nparams, 1e-4) > 1e-4;
  p += t.G.nparams;
  bad |= cmp("D grads", dgrad, p, t.D.nparams, 1e-4) > 1e-4;
  p += t.D.nparams;
  printf("after %d steps:\n", STEPS);
  /* A conv bias in front of BatchNorm has an exactly zero gradient, so its
   * computed gradient is rounding noise that Adam scales up to full lr
   * steps in either direction: those biases are only bounded by the largest
   * possible Adam travel.  Elsewhere, weights must agree to float noise. */
  const float *tp = p;
  bad |= params_match("G params", t.G.params, tp, t.G.nparams, NULL);
  tp += t.G.nparams;
  unsigned char *prebn = calloc(t.D.nparams, 1);
  size_t off = 0;
  for (int L = 0; L <= ESR_D_LAYERS; L++) {
    nn_conv *c = &t.D.conv[L];
    off += (size_t)c->oc * c->ic * 9;
    if (L > 0 && L < ESR_D_LAYERS) memset(prebn + off, 1, (size_t)c->oc);
    off += (size_t)c->oc;
    if (L > 0 && L < ESR_D_LAYERS) off += 2 * (size_t)c->oc;
  }
  ASSERT_EQ_U64(off, t.D.nparams);
  bad |= params_match("D params", t.D.params, tp, t.D.nparams, prebn);
  tp += t.D.nparams;
  /* running means carry the noisy pre-BN biases (at most 2 lr per step
   * apart); running variances do not see a bias at all */
  float *rm_c = malloc(t.D.nrunning * 4), *rm_t = malloc(t.D.nrunning * 4);
  float *rv_c = malloc(t.D.nrunning * 4), *rv_t = malloc(t.D.nrunning * 4);
  size_t nm = 0, nv = 0, r = 0;
  for (int L = 1; L < ESR_D_LAYERS; L++) {
    int c = t.D.conv[L].oc;
    for (int i = 0; i < c; i++) rm_c[nm] = t.D.running[r + i], rm_t[nm++] = tp[r + i];
    for (int i = 0; i < c; i++) rv_c[nv] = t.D.running[r + c + i], rv_t[nv++] = tp[r + c + i];
    r += 2 * (size_t)c;
  }
  bad |= cmp("D BN running var", rv_c, rv_t, nv, 3e-4) > 3e-4;
  double travel = 2.0 * hp.lr * (STEPS - WARMUP);
  double md = 0;
  for (size_t i = 0; i < nm; i++) md = fmax(md, fabs(rm_c[i] - rm_t[i]));
  printf("  %-22s n=%-8zu max|diff| %.3e  bound %.1e (pre-BN bias travel)%s\n",
         "D BN running mean", nm, md, travel, md <= travel ? "" : "  FAIL");
  bad |= md > travel;
  free(rm_c), free(rm_t), free(rv_c), free(rv_t), free(prebn);
  fflush(stdout);
  ASSERT(!bad);
  unlink(in);
  unlink(out);
  rmdir(dir);
  free(buf);
  free(lr), free(hr), free(gout), free(ggrad), free(dgrad);
  esr_trainer_free(&t);
  nn_ctx_free(&ctx);
}

TEST_MAIN()
