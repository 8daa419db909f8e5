/* bench_esrgan.c - seconds per ESRGAN training step (warm-up step and full
 * GAN step) of paramount-esrgan's trainer against PyTorch 1.13 CPU running
 * the original training loop (bench/esrgan_torch_bench.py), in the same
 * run on the same machine.  Each side of each config runs in its own child
 * process so that peak RSS (wait4's ru_maxrss) belongs to that config only.
 * Usage: bench_esrgan [--quick] [--config big|small|all] [--steps N]
 *                     [--warm N] [--no-torch] [--bf16] [--winograd on|off]
 *                     [--verbose-impl]  (each conv's oneDNN kernels, stderr)
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "train.h"

#ifndef PM_SOURCE_DIR
#define PM_SOURCE_DIR "."
#endif

#define MAX_STEPS 50
#define NIMAGES 8 /* distinct synthetic images; batches cycle over them */

typedef struct {
  const char *name;
  int hr, batch, F, B;
} bench_config;

static const bench_config CONFIGS[] = {{"F64/B23", 128, 4, 64, 23},
                                       {"F32/B2", 128, 4, 32, 2}};

typedef struct {
  int steps, warm, torch, bf16, winograd, quick, impl;
  const char *which;
} bench_opts;

/* Medians (s) of one side of one config; NAN when it did not run. */
typedef struct {
  double warmup_s, gan_s, rss_mb;
  double warmup_min_s, gan_min_s; /* fastest step: least disturbed by load */
  double loss_first, loss_last; /* G loss of the first and last GAN step */
} bench_result;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* sorts v */
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- our side (runs in a child) ---------------------------------------- */

static void fill_uniform(float *p, size_t n, uint64_t *rng) {
  for (size_t i = 0; i < n; i++) p[i] = esr_rng_uniform(rng, -2.0f, 2.0f);
}

/* Times `warm` untimed + `steps` timed steps of one kind; 0 or -1. */
static int time_steps(esr_trainer *t, const float *lr, const float *hr,
                      int warmup, const bench_opts *o, double *median_s,
                      double *min_s, double *loss_first, double *loss_last) {
  const esr_hparams *hp = &t->hp;
  size_t nlr = (size_t)3 * (hp->hr / 4) * (hp->hr / 4), nhr = (size_t)3 * hp->hr * hp->hr;
  double dt[MAX_STEPS];
  uint32_t ids[64];
  for (int i = 0; i < o->warm + o->steps; i++) {
    /* batches cycle over NIMAGES images, as epochs cycle over a data set */
    int first = (i * hp->batch) % NIMAGES;
    for (int b = 0; b < hp->batch; b++) ids[b] = (uint32_t)((first + b) % NIMAGES);
    float *lrb = malloc(sizeof(float) * nlr * hp->batch);
    float *hrb = malloc(sizeof(float) * nhr * hp->batch);
    if (!lrb || !hrb) {
      free(lrb), free(hrb);
      fprintf(stderr, "bench_esrgan: out of memory for a batch\n");
      return -1;
    }
    for (int b = 0; b < hp->batch; b++) {
      memcpy(lrb + b * nlr, lr + ids[b] * nlr, nlr * sizeof(float));
      memcpy(hrb + b * nhr, hr + ids[b] * nhr, nhr * sizeof(float));
    }
    esr_trainer_set_batch(t, lrb, hrb);
    esr_trainer_set_ids(t, ids);
    free(lrb), free(hrb);
    double t0 = now_s();
    if (esr_trainer_step(t, warmup)) {
      fprintf(stderr, "bench_esrgan: step failed: %s\n", nn_errmsg());
      return -1;
    }
    double s = now_s() - t0;
    if (i >= o->warm) dt[i - o->warm] = s;
    if (loss_first && i == 0) *loss_first = t->loss_g;
    if (loss_last) *loss_last = t->loss_g;
  }
  *median_s = median(dt, o->steps);
  *min_s = dt[0];
  return 0;
}

static int ours_run(const bench_config *c, const bench_opts *o, bench_result *r) {
  nn_ctx ctx;
  if (nn_ctx_init(&ctx, o->winograd, o->impl)) {
    fprintf(stderr, "bench_esrgan: %s\n", nn_errmsg());
    return -1;
  }
  ctx.bf16 = o->bf16;
  esr_hparams hp = {.hr = c->hr, .batch = c->batch, .F = c->F, .B = c->B,
                    .warmup_batches = 0, .lambda_adv = 5e-3f, .lambda_pixel = 1e-2f,
                    .lambda_content = 1.0f, .lr = 2e-4f, .b1 = 0.9f, .b2 = 0.999f,
                    .content = 1, .feature_cache = NIMAGES};
  esr_trainer t;
  int rc = esr_trainer_init(&t, &ctx, &hp, 42);
  if (rc) {
    fprintf(stderr, "bench_esrgan: %s: %s\n", c->name, nn_errmsg());
    nn_ctx_free(&ctx);
    return -1;
  }
  size_t nlr = (size_t)NIMAGES * 3 * (c->hr / 4) * (c->hr / 4);
  size_t nhr = (size_t)NIMAGES * 3 * c->hr * c->hr;
  float *lr = malloc(sizeof(float) * nlr), *hr = malloc(sizeof(float) * nhr);
  rc = -1;
  if (lr && hr) {
    uint64_t rng = 99;
    fill_uniform(lr, nlr, &rng);
    fill_uniform(hr, nhr, &rng);
    rc = time_steps(&t, lr, hr, 1, o, &r->warmup_s, &r->warmup_min_s, NULL, NULL);
    if (!rc)
      rc = time_steps(&t, lr, hr, 0, o, &r->gan_s, &r->gan_min_s, &r->loss_first,
                      &r->loss_last);
  }
  free(lr), free(hr);
  esr_trainer_free(&t);
  nn_ctx_free(&ctx);
  return rc;
}

/* ---- child processes ---------------------------------------------------- */

/* Runs fn(arg, fd) in a child that writes its results to the pipe fd (its
 * stdout and stderr stay ours, for oneDNN's verbose output); returns the
 * results text in buf and the child's peak RSS in MB, or -1 on failure. */
static int run_child(int (*fn)(void *, int), void *arg, char *buf, size_t cap,
                     double *rss_mb) {
  int fd[2];
  if (pipe(fd)) {
    fprintf(stderr, "bench_esrgan: pipe: %s\n", strerror(errno));
    return -1;
  }
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "bench_esrgan: fork: %s\n", strerror(errno));
    close(fd[0]), close(fd[1]);
    return -1;
  }
  if (pid == 0) {
    close(fd[0]);
    _exit(fn(arg, fd[1]) ? 1 : 0);
  }
  close(fd[1]);
  size_t len = 0;
  ssize_t k;
  char sink[256];
  /* drain everything so the child never blocks; keep what fits */
  while ((k = len + 1 < cap ? read(fd[0], buf + len, cap - 1 - len)
                            : read(fd[0], sink, sizeof sink)) > 0 ||
         (k < 0 && errno == EINTR))
    if (k > 0 && len + 1 < cap) len += (size_t)k;
  buf[len] = 0;
  close(fd[0]);
  int status;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0)
    if (errno != EINTR) return -1;
  *rss_mb = ru.ru_maxrss / 1024.0;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

typedef struct {
  const bench_config *c;
  const bench_opts *o;
} child_arg;

static int ours_child(void *p, int fd) {
  child_arg *a = p;
  bench_result r;
  if (ours_run(a->c, a->o, &r)) return -1;
  dprintf(fd, "%.6f %.6f %.9g %.9g %.6f %.6f\n", r.warmup_s, r.gan_s, r.loss_first,
          r.loss_last, r.warmup_min_s, r.gan_min_s);
  return 0;
}

static int torch_child(void *p, int fd) {
  child_arg *a = p;
  char script[4096], hr[16], batch[16], F[16], B[16], steps[16], warm[16], rfd[16];
  snprintf(rfd, sizeof rfd, "%d", fd);
  snprintf(script, sizeof script, "%s/bench/esrgan_torch_bench.py", PM_SOURCE_DIR);
  snprintf(hr, sizeof hr, "%d", a->c->hr);
  snprintf(batch, sizeof batch, "%d", a->c->batch);
  snprintf(F, sizeof F, "%d", a->c->F);
  snprintf(B, sizeof B, "%d", a->c->B);
  snprintf(steps, sizeof steps, "%d", a->o->steps);
  snprintf(warm, sizeof warm, "%d", a->o->warm);
  char *argv[] = {"/usr/bin/python3", script, "--hr", hr, "--batch", batch, "--F", F,
                  "--B", B, "--steps", steps, "--warm", warm, "--result-fd", rfd, NULL};
  setenv("OMP_NUM_THREADS", "2", 0);
  execv(argv[0], argv);
  fprintf(stderr, "bench_esrgan: cannot run %s: %s\n", argv[0], strerror(errno));
  return -1;
}

/* ---- main ------------------------------------------------------------------ */

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || errno || *end || x < lo || x > hi) {
    fprintf(stderr, "bench_esrgan: %s needs an integer in [%d, %d], got '%s'\n", flag,
            lo, hi, v ? v : "");
    return -1;
  }
  *out = (int)x;
  return 0;
}

static int parse_args(int argc, char **argv, bench_opts *o) {
  *o = (bench_opts){.steps = 5, .warm = 2, .torch = 1, .winograd = 1, .which = "all"};
  int steps = -1, warm = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--quick")) o->quick = 1;
    else if (!strcmp(a, "--no-torch")) o->torch = 0;
    else if (!strcmp(a, "--bf16")) o->bf16 = 1;
    else if (!strcmp(a, "--verbose-impl")) o->impl = 1;
    else if (!strcmp(a, "--steps")) { if (parse_int(a, v, 1, MAX_STEPS, &steps)) return -1; i++; }
    else if (!strcmp(a, "--warm")) { if (parse_int(a, v, 0, 20, &warm)) return -1; i++; }
    else if (!strcmp(a, "--config")) {
      if (!v || (strcmp(v, "big") && strcmp(v, "small") && strcmp(v, "all"))) {
        fprintf(stderr, "bench_esrgan: --config needs big, small or all, got '%s'\n",
                v ? v : "");
        return -1;
      }
      o->which = v, i++;
    } else if (!strcmp(a, "--winograd")) {
      if (!v || (strcmp(v, "on") && strcmp(v, "off"))) {
        fprintf(stderr, "bench_esrgan: --winograd needs on or off, got '%s'\n", v ? v : "");
        return -1;
      }
      o->winograd = !strcmp(v, "on"), i++;
    } else {
      fprintf(stderr, "bench_esrgan: unknown option '%s' (see the header of "
                      "bench/bench_esrgan.c)\n", a);
      return -1;
    }
  }
  if (o->quick) o->steps = 3, o->warm = 1, o->which = strcmp(o->which, "all") ? o->which : "small";
  if (steps > 0) o->steps = steps;
  if (warm >= 0) o->warm = warm;
  return 0;
}

int main(int argc, char **argv) {
  bench_opts o;
  if (parse_args(argc, argv, &o)) return 2;
  setenv("OMP_NUM_THREADS", "2", 0);
  printf("bench_esrgan: %d timed steps after %d warm-up steps per kind, %s, "
         "winograd %s, OMP_NUM_THREADS=%s\n",
         o.steps, o.warm, o.bf16 ? "bf16" : "fp32", o.winograd ? "on" : "off",
         getenv("OMP_NUM_THREADS"));
  printf("%-8s %-6s %11s %7s %13s %7s %6s %9s %10s %9s %9s %9s\n", "config", "step",
         "ours s/step", "img/s", "torch s/step", "img/s", "ratio", "ours RSS", "torch RSS",
         "ours min", "torch min", "min ratio");
  int failed = 0;
  for (size_t k = 0; k < sizeof CONFIGS / sizeof CONFIGS[0]; k++) {
    const bench_config *c = &CONFIGS[k];
    if (strcmp(o.which, "all") && strcmp(o.which, k == 0 ? "big" : "small")) continue;
    child_arg a = {c, &o};
    char buf[4096];
    bench_result ours = {NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    bench_result torch = {NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    if (run_child(ours_child, &a, buf, sizeof buf, &ours.rss_mb) ||
        sscanf(buf, "%lf %lf %lf %lf %lf %lf", &ours.warmup_s, &ours.gan_s, &ours.loss_first,
               &ours.loss_last, &ours.warmup_min_s, &ours.gan_min_s) != 6) {
      fprintf(stderr, "bench_esrgan: our %s run failed\n", c->name);
      failed = 1;
      continue;
    }
    if (o.torch) {
      double rss;
      const char *w, *g;
      if (run_child(torch_child, &a, buf, sizeof buf, &rss) ||
          !(w = strstr(buf, "warmup_s ")) || !(g = strstr(buf, "gan_s ")) ||
          sscanf(w, "warmup_s %lf", &torch.warmup_s) != 1 ||
          sscanf(g, "gan_s %lf", &torch.gan_s) != 1) {
        fprintf(stderr, "bench_esrgan: the PyTorch %s run failed (needs Debian's "
                        "python3-torch at /usr/bin/python3)\n", c->name);
        failed = 1;
      } else {
        torch.rss_mb = rss;
        const char *m;
        if ((m = strstr(buf, "warmup_min_s "))) sscanf(m, "warmup_min_s %lf", &torch.warmup_min_s);
        if ((m = strstr(buf, "gan_min_s "))) sscanf(m, "gan_min_s %lf", &torch.gan_min_s);
      }
    }
    double ow[2] = {ours.warmup_s, ours.gan_s}, tw[2] = {torch.warmup_s, torch.gan_s};
    double om[2] = {ours.warmup_min_s, ours.gan_min_s};
    double tm[2] = {torch.warmup_min_s, torch.gan_min_s};
    for (int s = 0; s < 2; s++)
      printf("%-8s %-6s %11.3f %7.2f %13.3f %7.2f %5.2fx %6.0f MB %7.0f MB %9.3f %9.3f "
             "%8.2fx\n", c->name, s ? "gan" : "warmup", ow[s], c->batch / ow[s], tw[s],
             c->batch / tw[s], tw[s] / ow[s], ours.rss_mb, torch.rss_mb, om[s], tm[s],
             tm[s] / om[s]);
    printf("%-8s G loss over all GAN steps (warm-up ones included): %.6g -> %.6g\n",
           c->name, ours.loss_first, ours.loss_last);
    fflush(stdout);
  }
  printf("ratio = torch s/step / ours s/step, medians (higher is better for us); min = "
         "fastest step; RSS = peak of that side's process for the config\n");
  return failed;
}
