/* main.c - paramount-esrgan: trains ESRGAN (shared/esrgan-spec.md) on an
 * image folder or a synthetic set, reporting init, iterations, epochs,
 * phases and checkpoints through libparamount.
 *
 * Exit status: 0 done, 1 runtime failure, 2 bad option or input.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ckpt.h"
#include "data.h"
#include "paramount.h"
#include "train.h"

#define PROG "paramount-esrgan"

static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void die(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, PROG ": ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  pm_finalize();
  exit(code);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long opt_long(const char *name, const char *v, long lo, long hi) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || end == v || *end || x < lo || x > hi)
    die(2, "--%s: '%s' is not an integer in [%ld, %ld]", name, v, lo, hi);
  return x;
}

static float opt_float(const char *name, const char *v, double lo, double hi) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi)
    die(2, "--%s: '%s' is not a number in [%g, %g]", name, v, lo, hi);
  return (float)x;
}

static void usage(void) {
  printf(
      "Usage: " PROG " [options]\n"
      "Trains ESRGAN (RRDB generator, BatchNorm discriminator, VGG19 content loss)\n"
      "exactly as eriklindernoren/PyTorch-GAN's esrgan.py, on oneDNN.\n\n"
      "Data:\n"
      "  --data DIR            image folder (PNG/JPEG, sorted DIR/*.*; CelebA's\n"
      "                        img_align_celeba works as is)\n"
      "  --synthetic N         without --data: N generated images (default 1000)\n"
      "  --cache FILE          keep the decoded --data tensors in FILE for later runs\n"
      "  --bad-image skip|fail a non-image or broken file is skipped with its name\n"
      "                        on stderr (default) or fails the run\n"
      "Model and training (defaults are the original's):\n"
      "  --hr N                high-resolution side, multiple of 16 (256)\n"
      "  --batch N             batch size (4)\n"
      "  --filters N           generator width F, multiple of 16 (64)\n"
      "  --blocks N            RRDB blocks B (23)\n"
      "  --epochs N            epochs (200)\n"
      "  --warmup N            pixel-loss-only generator batches (500)\n"
      "  --lambda-adv X        adversarial loss weight (5e-3)\n"
      "  --lambda-pixel X      pixel loss weight (1e-2)\n"
      "  --lambda-content X    content loss weight (1.0; fixed in the original)\n"
      "  --lr X                Adam learning rate of G and D (2e-4)\n"
      "  --b1 X, --b2 X        Adam betas (0.9, 0.999)\n"
      "  --seed N              weights, synthetic data and shuffles (1)\n"
      "  --decay-epoch N       accepted for compatibility; unused, as in the original\n"
      "  --channels 3          only 3 is supported\n"
      "  --n-cpu N             accepted; threads come from OMP_NUM_THREADS\n"
      "VGG19 content loss:\n"
      "  --vgg FILE            VGG19 conv weights (tools/vgg19_convert.py makes it)\n"
      "  --no-vgg random|off   without --vgg: use untrained random features (default,\n"
      "                        with a warning) or disable the content loss\n"
      "Output:\n"
      "  --out DIR             images/training/<batch>.png and saved_models/ (.)\n"
      "  --sample-interval N   sample grid every N batches after warm-up (100)\n"
      "  --checkpoint-interval N  checkpoint every N batches after warm-up (5000;\n"
      "                        0 = never)\n"
      "  --resume FILE         continue exactly from a checkpoint\n"
      "  --max-iters N         stop after N iterations of this run, checkpointing\n"
      "                        at the stop (0 = run to the end)\n"
      "  --print-interval N    print losses every N batches (1)\n"
      "Speed:\n"
      "  --winograd on|off     Winograd kernels for stride-1 convs (on)\n"
      "  --verbose-impl        print the oneDNN implementation of every conv\n"
      "  --help                this text\n\n"
      "Exit status: 0 done, 1 runtime failure, 2 bad option or input.\n");
}

static void mkdirs(const char *path) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      mkdir(buf, 0755);
      *p = '/';
    }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST) die(1, "cannot create %s: %s", buf, strerror(errno));
}

/* VGG19 weight file: "PMVGG19\0", u64 float count, the floats (16 convs,
 * OIHW weight then bias each), u64 FNV-1a of the float bytes. */
static void load_vgg(const char *path, esr_vgg *v) {
  FILE *f = fopen(path, "rb");
  if (!f) die(2, "--vgg %s: %s", path, strerror(errno));
  char magic[8];
  uint64_t n = 0, want = 0;
  if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "PMVGG19", 8) != 0)
    die(2, "--vgg %s: not a VGG19 weight file (see docs/esrgan.md)", path);
  if (fread(&n, 8, 1, f) != 1 || n != v->nparams)
    die(2, "--vgg %s: holds %llu floats, VGG19 to conv5_4 has %zu", path,
        (unsigned long long)n, v->nparams);
  if (fread(v->params, 4, n, f) != n || fread(&want, 8, 1, f) != 1 || fgetc(f) != EOF)
    die(2, "--vgg %s: truncated or oversized file", path);
  fclose(f);
  uint64_t h = 0xcbf29ce484222325ull;
  const unsigned char *b = (const unsigned char *)v->params;
  for (size_t i = 0; i < n * 4; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  if (h != want) die(2, "--vgg %s: checksum mismatch, the file is corrupt", path);
}

static void save_grid(const char *out, uint64_t iter, esr_trainer *t, const float *lr) {
  int hr = t->hp.hr, n = t->hp.batch, L = hr / 4, W = 2 * hr;
  uint8_t *img = malloc((size_t)W * hr * n * 3);
  float *sr = malloc(sizeof(float) * (size_t)n * 3 * hr * hr);
  if (!img || !sr) die(1, "out of memory for the sample grid");
  nn_tensor_to_nchw(&t->G.out, sr);
  for (int b = 0; b < n; b++)
    for (int y = 0; y < hr; y++)
      for (int x = 0; x < hr; x++) {
        uint8_t *row = img + ((size_t)(b * hr + y) * W) * 3;
        esr_denorm_pixel(lr + (size_t)b * 3 * L * L + (y / 4) * L + x / 4, L * L, row + x * 3);
        esr_denorm_pixel(sr + (size_t)b * 3 * hr * hr + (size_t)y * hr + x, hr * hr,
                         row + (hr + x) * 3);
      }
  char path[4096], err[512];
  snprintf(path, sizeof path, "%s/images/training/%llu.png", out, (unsigned long long)iter);
  if (esr_png_write(path, img, W, hr * n, err, sizeof err))
    fprintf(stderr, PROG ": warning: %s\n", err);
  free(img);
  free(sr);
}

int main(int argc, char **argv) {
  pm_init();
  esr_hparams hp = {.hr = 256, .batch = 4, .F = 64, .B = 23, .warmup_batches = 500,
                    .lambda_adv = 5e-3f, .lambda_pixel = 1e-2f, .lambda_content = 1.0f,
                    .lr = 2e-4f, .b1 = 0.9f, .b2 = 0.999f, .content = 1};
  long epochs = 200, sample_iv = 100, ckpt_iv = 5000, synthetic = 1000, max_iters = 0,
       print_iv = 1;
  uint64_t seed = 1;
  const char *data = NULL, *cache = NULL, *vgg = NULL, *out = ".", *resume = NULL;
  int strict = 0, vgg_off = 0, wino = 1, verbose = 0;
  enum { O_HR = 256, O_BATCH, O_F, O_B, O_EPOCHS, O_WARM, O_LADV, O_LPIX, O_LCON, O_LR, O_B1,
         O_B2, O_SEED, O_DECAY, O_CH, O_NCPU, O_VGG, O_NOVGG, O_OUT, O_SIV, O_CIV, O_RES,
         O_MAXIT, O_PIV, O_WINO, O_VERB, O_DATA, O_SYN, O_CACHE, O_BAD, O_HELP };
  static const struct option opts[] = {
      {"hr", 1, 0, O_HR}, {"hr-height", 1, 0, O_HR}, {"batch", 1, 0, O_BATCH},
      {"batch-size", 1, 0, O_BATCH}, {"filters", 1, 0, O_F}, {"blocks", 1, 0, O_B},
      {"residual-blocks", 1, 0, O_B}, {"epochs", 1, 0, O_EPOCHS}, {"n-epochs", 1, 0, O_EPOCHS},
      {"warmup", 1, 0, O_WARM}, {"warmup-batches", 1, 0, O_WARM},
      {"lambda-adv", 1, 0, O_LADV}, {"lambda-pixel", 1, 0, O_LPIX},
      {"lambda-content", 1, 0, O_LCON}, {"lr", 1, 0, O_LR}, {"b1", 1, 0, O_B1},
      {"b2", 1, 0, O_B2}, {"seed", 1, 0, O_SEED}, {"decay-epoch", 1, 0, O_DECAY},
      {"channels", 1, 0, O_CH}, {"n-cpu", 1, 0, O_NCPU}, {"vgg", 1, 0, O_VGG},
      {"no-vgg", 1, 0, O_NOVGG}, {"out", 1, 0, O_OUT}, {"sample-interval", 1, 0, O_SIV},
      {"checkpoint-interval", 1, 0, O_CIV}, {"resume", 1, 0, O_RES},
      {"max-iters", 1, 0, O_MAXIT}, {"print-interval", 1, 0, O_PIV},
      {"winograd", 1, 0, O_WINO}, {"verbose-impl", 0, 0, O_VERB}, {"data", 1, 0, O_DATA},
      {"synthetic", 1, 0, O_SYN}, {"cache", 1, 0, O_CACHE}, {"bad-image", 1, 0, O_BAD},
      {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    const char *v = optarg;
    switch (c) {
    case O_HR: hp.hr = (int)opt_long("hr", v, 16, 4096);
      if (hp.hr % 16) die(2, "--hr: %d is not a multiple of 16", hp.hr);
      break;
    case O_BATCH: hp.batch = (int)opt_long("batch", v, 1, 4096); break;
    case O_F: hp.F = (int)opt_long("filters", v, 16, 1024);
      if (hp.F % 16) die(2, "--filters: %d is not a multiple of 16", hp.F);
      break;
    case O_B: hp.B = (int)opt_long("blocks", v, 1, 1000); break;
    case O_EPOCHS: epochs = opt_long("epochs", v, 1, LONG_MAX / 2); break;
    case O_WARM: hp.warmup_batches = opt_long("warmup", v, 0, LONG_MAX / 2); break;
    case O_LADV: hp.lambda_adv = opt_float("lambda-adv", v, 0, 1e6); break;
    case O_LPIX: hp.lambda_pixel = opt_float("lambda-pixel", v, 0, 1e6); break;
    case O_LCON: hp.lambda_content = opt_float("lambda-content", v, 0, 1e6); break;
    case O_LR: hp.lr = opt_float("lr", v, 0, 10); break;
    case O_B1: hp.b1 = opt_float("b1", v, 0, 0.999999); break;
    case O_B2: hp.b2 = opt_float("b2", v, 0, 0.999999999); break;
    case O_SEED: seed = (uint64_t)opt_long("seed", v, 0, LONG_MAX); break;
    case O_DECAY: opt_long("decay-epoch", v, 0, LONG_MAX); break;
    case O_CH: if (opt_long("channels", v, 1, 64) != 3) die(2, "--channels: only 3 is supported");
      break;
    case O_NCPU: opt_long("n-cpu", v, 0, 4096); break;
    case O_VGG: vgg = v; break;
    case O_NOVGG:
      if (strcmp(v, "random") == 0) vgg_off = 0;
      else if (strcmp(v, "off") == 0) vgg_off = 1;
      else die(2, "--no-vgg: '%s' is not 'random' or 'off'", v);
      break;
    case O_OUT: out = v; break;
    case O_SIV: sample_iv = opt_long("sample-interval", v, 0, LONG_MAX); break;
    case O_CIV: ckpt_iv = opt_long("checkpoint-interval", v, 0, LONG_MAX); break;
    case O_RES: resume = v; break;
    case O_MAXIT: max_iters = opt_long("max-iters", v, 0, LONG_MAX); break;
    case O_PIV: print_iv = opt_long("print-interval", v, 1, LONG_MAX); break;
    case O_WINO:
      if (strcmp(v, "on") == 0) wino = 1;
      else if (strcmp(v, "off") == 0) wino = 0;
      else die(2, "--winograd: '%s' is not 'on' or 'off'", v);
      break;
    case O_VERB: verbose = 1; break;
    case O_DATA: data = v; break;
    case O_SYN: synthetic = opt_long("synthetic", v, 1, 100000000); break;
    case O_CACHE: cache = v; break;
    case O_BAD:
      if (strcmp(v, "skip") == 0) strict = 0;
      else if (strcmp(v, "fail") == 0) strict = 1;
      else die(2, "--bad-image: '%s' is not 'skip' or 'fail'", v);
      break;
    case O_HELP: usage(); pm_finalize(); return 0;
    case ':': die(2, "option %s needs a value (see --help)", argv[optind - 1]);
    default: die(2, "unknown option '%s' (see --help)", argv[optind - 1]);
    }
  }
  if (optind < argc) die(2, "unexpected argument '%s' (see --help)", argv[optind]);
  if (!vgg && vgg_off) hp.content = 0;
  if (!vgg && !vgg_off)
    fprintf(stderr, PROG ": warning: no --vgg weights: the content loss uses UNTRAINED random "
                         "VGG19 features (--no-vgg off disables it)\n");

  /* data */
  esr_dataset ds;
  char err[1024];
  if (data) {
    int rc = esr_data_folder(&ds, data, hp.hr, strict, cache, err, sizeof err);
    if (rc) die(rc == PM_ENOMEM ? 1 : 2, "--data: %s", err);
  } else if (esr_data_synthetic(&ds, (int)synthetic, hp.hr, seed)) {
    die(1, "out of memory for %ld synthetic images", synthetic);
  }
  if (ds.n < hp.batch) die(2, "the data set has %d images, fewer than --batch %d", ds.n, hp.batch);
  long nb = ds.n / hp.batch; /* the last partial batch is dropped */
  uint64_t total = (uint64_t)epochs * (uint64_t)nb;

  nn_ctx ctx;
  if (nn_ctx_init(&ctx, wino, verbose)) die(1, "%s", nn_errmsg());
  esr_trainer t;
  if (esr_trainer_init(&t, &ctx, &hp, seed)) die(1, "%s", nn_errmsg());
  if (vgg && hp.content) {
    load_vgg(vgg, &t.V);
    if (esr_vgg_sync(&ctx, &t.V)) die(1, "%s", nn_errmsg());
  }
  esr_ckpt_meta meta = {0, seed, (uint64_t)ds.n};
  if (resume) {
    esr_ckpt_meta m;
    int rc = esr_ckpt_load(resume, &t, &m, err, sizeof err);
    if (rc) die(2, "--resume: %s", err);
    if (m.seed != seed || m.nimages != (uint64_t)ds.n)
      die(2, "--resume: the checkpoint was made with seed %llu on %llu images; this run has "
             "seed %llu and %d images",
          (unsigned long long)m.seed, (unsigned long long)m.nimages, (unsigned long long)seed,
          ds.n);
    meta.next_iter = m.next_iter;
  }
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/images/training", out);
  mkdirs(dir);
  snprintf(dir, sizeof dir, "%s/saved_models", out);
  mkdirs(dir);
  fprintf(stderr,
          PROG ": %d images, hr %d, batch %d, F %d, B %d: G %zu, D %zu parameters; %ld "
               "batches/epoch; starting at iteration %llu of %llu\n",
          ds.n, hp.hr, hp.batch, hp.F, hp.B, t.G.nparams, t.D.nparams, nb,
          (unsigned long long)meta.next_iter, (unsigned long long)total);

  size_t nl = (size_t)hp.batch * 3 * (hp.hr / 4) * (hp.hr / 4), nh = (size_t)hp.batch * 3 * hp.hr * hp.hr;
  float *lrb = malloc(nl * 4), *hrb = malloc(nh * 4);
  uint32_t *order = malloc(sizeof(uint32_t) * (size_t)ds.n);
  if (!lrb || !hrb || !order) die(1, "out of memory");
  pm_init_end();
  uint64_t it = meta.next_iter, stop = total;
  if (max_iters && it + (uint64_t)max_iters < stop) stop = it + (uint64_t)max_iters;
  int64_t order_epoch = -1;
  if (it < (uint64_t)hp.warmup_batches)
    pm_phase("warmup", it, (uint64_t)hp.warmup_batches - it);
  else
    pm_phase("gan", it, total - it);
  int rcode = 0;
  for (; it < stop; it++) {
    uint64_t epoch = it / (uint64_t)nb, i = it % (uint64_t)nb;
    if ((int64_t)epoch != order_epoch) {
      esr_data_order(seed, epoch, order, ds.n);
      order_epoch = (int64_t)epoch;
    }
    int warm = it < (uint64_t)hp.warmup_batches;
    if (!warm && it == (uint64_t)hp.warmup_batches && it != meta.next_iter)
      pm_phase("gan", it, total - it);
    pm_iter_begin(it);
    double t0 = now_s();
    esr_data_batch(&ds, order + i * (uint64_t)hp.batch, hp.batch, lrb, hrb);
    esr_trainer_set_batch(&t, lrb, hrb);
    if (esr_trainer_step(&t, warm)) {
      fprintf(stderr, PROG ": iteration %llu failed: %s\n", (unsigned long long)it, nn_errmsg());
      rcode = 1;
      break;
    }
    double dt = now_s() - t0;
    pm_iter_end(dt, 0.0, (uint64_t)hp.batch);
    if (!isfinite(t.loss_g) || !isfinite(t.loss_d)) {
      fprintf(stderr, PROG ": iteration %llu: loss is not finite, stopping\n", (unsigned long long)it);
      rcode = 1;
      break;
    }
    if (it % (uint64_t)print_iv == 0 || it + 1 == stop) {
      if (warm)
        printf("[Epoch %llu/%ld] [Batch %llu/%ld] [G pixel: %f] (%.3f s)\n",
               (unsigned long long)epoch, epochs, (unsigned long long)i, nb, t.loss_pixel, dt);
      else
        printf("[Epoch %llu/%ld] [Batch %llu/%ld] [D loss: %f] [G loss: %f, content: %f, adv: "
               "%f, pixel: %f] (%.3f s)\n",
               (unsigned long long)epoch, epochs, (unsigned long long)i, nb, t.loss_d, t.loss_g,
               t.loss_content, t.loss_adv, t.loss_pixel, dt);
      fflush(stdout);
    }
    if (!warm && sample_iv && it % (uint64_t)sample_iv == 0) save_grid(out, it, &t, lrb);
    int last = it + 1 == stop;
    if ((!warm && ckpt_iv && it % (uint64_t)ckpt_iv == 0) || (last && max_iters)) {
      char path[4096];
      snprintf(path, sizeof path, "%s/saved_models/esrgan_%llu.ckpt", out, (unsigned long long)it);
      meta.next_iter = it + 1;
      if (esr_ckpt_save(path, &t, &meta, err, sizeof err)) {
        fprintf(stderr, PROG ": %s\n", err);
        rcode = 1;
        break;
      }
      pm_checkpoint(path, it);
      fprintf(stderr, PROG ": checkpoint %s\n", path);
    }
    if (i + 1 == (uint64_t)nb) pm_epoch_end(epoch, it);
  }
  free(lrb), free(hrb), free(order);
  esr_trainer_free(&t);
  esr_data_free(&ds);
  nn_ctx_free(&ctx);
  pm_finalize();
  return rcode;
}
