/* main.c - paramount-esrgan: trains ESRGAN (shared/esrgan-spec.md) on an
 * image folder or a synthetic set, alone or data-parallel under mpirun
 * (dp.h: a fixed global batch shared by the ranks), reporting init,
 * iterations (compute and communication apart), epochs, phases and
 * checkpoints through libparamount; stops where the ranks agree when the
 * controller asks, and resumes from a checkpoint on any number of ranks.
 *
 * Exit status: 0 done or stopped, 1 runtime failure, 2 bad option or input.
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
#include "dp.h"
#include "paramount.h"
#include "train.h"

#define PROG "paramount-esrgan"

static esr_dp g_dp; /* die() must end every rank, not only this one */

/* Option and input errors (code 2) are the same on every rank: rank 0
 * alone reports them.  Runtime failures may be one rank's: each says. */
static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void die(int code, const char *fmt, ...) {
  if (code != 2 || esr_dp_env_rank() == 0) {
    va_list ap;
    va_start(ap, fmt);
    if (g_dp.size > 1) fprintf(stderr, PROG ": rank %d: ", g_dp.rank);
    else fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
  }
  pm_finalize();
  esr_dp_abort(&g_dp, code);
}

static double wall_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, size_t n) {
  if (!n) return 0;
  qsort(v, n, sizeof *v, cmp_dbl);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* FNV-1a-64 of the trained state: equal on every rank, or the ranks
 * diverged (the final line says "consistent=0"). */
static uint64_t state_hash(const esr_trainer *t) {
  const float *a[3] = {t->G.params, t->D.params, t->D.running};
  size_t n[3] = {t->G.nparams, t->D.nparams, t->D.nrunning};
  uint64_t h = 0xcbf29ce484222325ull;
  for (int k = 0; k < 3; k++) {
    const unsigned char *b = (const unsigned char *)a[k];
    for (size_t i = 0; i < n[k] * sizeof(float); i++) h = (h ^ b[i]) * 0x100000001b3ull;
  }
  return h;
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
      "  --batch N             global batch size, shared by the ranks under\n"
      "                        mpirun (4; see docs/esrgan.md)\n"
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
      "  --out DIR             images/training/<batch>.png and saved_models/ (.;\n"
      "                        $PARAMOUNT_RUN_DIR under paramount run)\n"
      "  --sample-interval N   sample grid every N batches after warm-up (100)\n"
      "  --checkpoint-interval N  checkpoint every N batches after warm-up (5000;\n"
      "                        0 = never)\n"
      "  --checkpoint-seconds S  also checkpoint when S seconds passed since the\n"
      "                        last one (0 = never; default)\n"
      "  --resume FILE         continue exactly from a checkpoint, on any number\n"
      "                        of ranks\n"
      "  --max-iters N         stop after N iterations of this run, checkpointing\n"
      "                        at the stop (0 = run to the end)\n"
      "  --print-interval N    print losses every N batches (1)\n"
      "Speed:\n"
      "  --winograd on|off     Winograd kernels for stride-1 convs (on)\n"
      "  --bf16                convolutions in bf16 (weights, gradients, Adam and\n"
      "                        the other ops stay fp32; convs without a bf16\n"
      "                        kernel on this CPU stay fp32)\n"
      "  --verbose-impl        print the oneDNN implementation of every conv\n"
      "  --help                this text\n\n"
      "Under mpirun the ranks train data-parallel; when the controller asks, they\n"
      "agree on one stop iteration, checkpoint there and exit 0.\n\n"
      "Exit status: 0 done or stopped, 1 runtime failure, 2 bad option or input.\n");
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
  double start_unix = wall_now_s(), start_s = now_s();
  pm_init();
  if (esr_dp_init(&g_dp, &argc, &argv)) die(1, "MPI_Init failed");
  double mpi_s = now_s() - start_s;
  esr_hparams hp = {.hr = 256, .batch = 4, .F = 64, .B = 23, .warmup_batches = 500,
                    .lambda_adv = 5e-3f, .lambda_pixel = 1e-2f, .lambda_content = 1.0f,
                    .lr = 2e-4f, .b1 = 0.9f, .b2 = 0.999f, .content = 1};
  long epochs = 200, sample_iv = 100, ckpt_iv = 5000, synthetic = 1000, max_iters = 0,
       print_iv = 1;
  uint64_t seed = 1;
  const char *data = NULL, *cache = NULL, *vgg = NULL, *out = NULL, *resume = NULL;
  int strict = 0, vgg_off = 0, wino = 1, verbose = 0, bf16 = 0;
  enum { O_HR = 256, O_BATCH, O_F, O_B, O_EPOCHS, O_WARM, O_LADV, O_LPIX, O_LCON, O_LR, O_B1,
         O_B2, O_SEED, O_DECAY, O_CH, O_NCPU, O_VGG, O_NOVGG, O_OUT, O_SIV, O_CIV, O_RES,
         O_MAXIT, O_PIV, O_WINO, O_VERB, O_DATA, O_SYN, O_CACHE, O_BAD, O_HELP, O_CSEC, O_BF16 };
  long ckpt_sec = 0;
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
      {"winograd", 1, 0, O_WINO}, {"verbose-impl", 0, 0, O_VERB}, {"bf16", 0, 0, O_BF16}, {"data", 1, 0, O_DATA},
      {"synthetic", 1, 0, O_SYN}, {"cache", 1, 0, O_CACHE}, {"bad-image", 1, 0, O_BAD},
      {"checkpoint-seconds", 1, 0, O_CSEC}, {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};
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
    case O_CSEC: ckpt_sec = opt_long("checkpoint-seconds", v, 0, LONG_MAX); break;
    case O_RES: resume = v; break;
    case O_MAXIT: max_iters = opt_long("max-iters", v, 0, LONG_MAX); break;
    case O_PIV: print_iv = opt_long("print-interval", v, 1, LONG_MAX); break;
    case O_WINO:
      if (strcmp(v, "on") == 0) wino = 1;
      else if (strcmp(v, "off") == 0) wino = 0;
      else die(2, "--winograd: '%s' is not 'on' or 'off'", v);
      break;
    case O_VERB: verbose = 1; break;
    case O_BF16: bf16 = 1; break;
    case O_DATA: data = v; break;
    case O_SYN: synthetic = opt_long("synthetic", v, 1, 100000000); break;
    case O_CACHE: cache = v; break;
    case O_BAD:
      if (strcmp(v, "skip") == 0) strict = 0;
      else if (strcmp(v, "fail") == 0) strict = 1;
      else die(2, "--bad-image: '%s' is not 'skip' or 'fail'", v);
      break;
    case O_HELP:
      if (g_dp.rank == 0) usage();
      pm_finalize();
      esr_dp_finalize(&g_dp);
      return 0;
    case ':': die(2, "option %s needs a value (see --help)", argv[optind - 1]);
    default: die(2, "unknown option '%s' (see --help)", argv[optind - 1]);
    }
  }
  if (optind < argc) die(2, "unexpected argument '%s' (see --help)", argv[optind]);
  if (!out) {
    /* Under `paramount run` the ranks' cwd is mpirun's, outside the run
     * directory, where the controller refuses checkpoints; the run
     * directory also outlives the loss of any node (as burn does). */
    const char *run_dir = getenv("PARAMOUNT_RUN_DIR");
    out = run_dir && *run_dir ? run_dir : ".";
  }
  if (!vgg && vgg_off) hp.content = 0;
  if (!vgg && !vgg_off)
    fprintf(stderr, PROG ": warning: no --vgg weights: the content loss uses UNTRAINED random "
                         "VGG19 features (--no-vgg off disables it)\n");

  /* The global batch is what --batch says, on any number of ranks; each
   * rank allocates its share (at least 1: a rank without a sample still
   * runs the step on a dummy one and contributes zeros). */
  const int gbatch = hp.batch;
  esr_dp_set_batch(&g_dp, gbatch);
  hp.gbatch = gbatch;
  hp.batch = g_dp.n > 0 ? g_dp.n : 1;

  /* data */
  double data_t0 = now_s();
  esr_dataset ds;
  char err[1024];
  if (data) {
    int rc = esr_data_folder(&ds, data, hp.hr, strict, cache, err, sizeof err);
    if (rc) die(rc == PM_ENOMEM ? 1 : 2, "--data: %s", err);
  } else if (esr_data_synthetic(&ds, (int)synthetic, hp.hr, seed)) {
    die(1, "out of memory for %ld synthetic images", synthetic);
  }
  if (ds.n < gbatch) die(2, "the data set has %d images, fewer than --batch %d", ds.n, gbatch);
  long nb = ds.n / gbatch; /* the last partial batch is dropped */
  double data_s = now_s() - data_t0, model_t0 = now_s();
  uint64_t total = (uint64_t)epochs * (uint64_t)nb;

  nn_ctx ctx;
  if (nn_ctx_init(&ctx, wino, verbose)) die(1, "%s", nn_errmsg());
  ctx.bf16 = bf16; /* before any network is built */
  esr_trainer t;
  hp.feature_cache = (size_t)ds.n; /* real VGG features, once per image */
  if (esr_trainer_init(&t, &ctx, &hp, seed)) die(1, "%s", nn_errmsg());
  esr_dp_install(&g_dp, &t);
  if (vgg && hp.content) {
    load_vgg(vgg, &t.V);
    if (esr_vgg_sync(&ctx, &t.V)) die(1, "%s", nn_errmsg());
  }
  esr_ckpt_meta meta = {0, seed, (uint64_t)ds.n, 0, (uint32_t)g_dp.size};
  double model_s = now_s() - model_t0, resume_t0 = now_s();
  if (resume) {
    /* every rank reads the file: no broadcast of the model needed */
    esr_ckpt_meta m;
    int rc = esr_ckpt_load(resume, &t, &m, err, sizeof err);
    if (rc) die(2, "--resume: %s", err);
    if (m.seed != seed || m.nimages != (uint64_t)ds.n)
      die(2, "--resume: the checkpoint was made with seed %llu on %llu images; this run has "
             "seed %llu and %d images",
          (unsigned long long)m.seed, (unsigned long long)m.nimages, (unsigned long long)seed,
          ds.n);
    meta.next_iter = m.next_iter;
    meta.samples_done = m.samples_done;
    if (m.nranks != (uint32_t)g_dp.size && g_dp.rank == 0)
      fprintf(stderr, PROG ": resuming on %d ranks a checkpoint written by %u\n", g_dp.size,
              m.nranks);
  } else if (esr_dp_bcast_params(&g_dp, &t)) {
    die(1, "%s", nn_errmsg());
  }
  double resume_s = now_s() - resume_t0;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/images/training", out);
  mkdirs(dir);
  snprintf(dir, sizeof dir, "%s/saved_models", out);
  mkdirs(dir);
  char outabs[PATH_MAX]; /* checkpoints are reported by absolute path */
  if (!realpath(out, outabs)) snprintf(outabs, sizeof outabs, "%s", out);
  if (g_dp.rank == 0)
    fprintf(stderr,
            PROG ": %d images, hr %d, batch %d, F %d, B %d: G %zu, D %zu parameters; %ld "
                 "batches/epoch; starting at iteration %llu of %llu\n",
            ds.n, hp.hr, gbatch, hp.F, hp.B, t.G.nparams, t.D.nparams, nb,
            (unsigned long long)meta.next_iter, (unsigned long long)total);
  if (g_dp.size > 1 && g_dp.rank == 0)
    fprintf(stderr, PROG ": %d ranks share the global batch %d (rank 0 takes %d)\n", g_dp.size,
            gbatch, g_dp.n);

  size_t nl = (size_t)hp.batch * 3 * (hp.hr / 4) * (hp.hr / 4), nh = (size_t)hp.batch * 3 * hp.hr * hp.hr;
  float *lrb = malloc(nl * 4), *hrb = malloc(nh * 4);
  uint32_t *order = malloc(sizeof(uint32_t) * (size_t)ds.n);
  if (!lrb || !hrb || !order) die(1, "out of memory");
  pm_init_end();
  double init_end_unix = wall_now_s();
  uint64_t it = meta.next_iter, stop = total, first = it;
  if (max_iters && it + (uint64_t)max_iters < stop) stop = it + (uint64_t)max_iters;
  uint64_t samples_done = meta.samples_done ? meta.samples_done : it * (uint64_t)gbatch;
  int64_t order_epoch = -1;
  /* The whole plan up front: the controller then knows the GAN phase's
   * work from the first warm-up PI (a PI belongs to the phase that starts
   * latest at or before its iteration). */
  if (it < (uint64_t)hp.warmup_batches) {
    pm_phase("warmup", it, (uint64_t)hp.warmup_batches - it);
    if (total > (uint64_t)hp.warmup_batches)
      pm_phase("gan", (uint64_t)hp.warmup_batches, total - (uint64_t)hp.warmup_batches);
  } else {
    pm_phase("gan", it, total - it);
  }
  /* per-iteration wall and communication seconds, for the medians */
  size_t nrun = (size_t)(stop > it ? stop - it : 0);
  double *walls = malloc(sizeof(double) * (nrun + 1)), *comms = malloc(sizeof(double) * (nrun + 1));
  double *comps = malloc(sizeof(double) * (nrun + 1));
  if (!walls || !comms || !comps) die(1, "out of memory");
  double first_iter_end_unix = 0, last_iter_end_unix = 0, ckpt_write_s = 0;
  double last_ckpt_s = now_s(), compute_sum = 0, comm_sum = 0;
  uint64_t agreed = 0; /* agreed stop iteration + 1; 0: none yet */
  int rcode = 0, stopped = 0;
  char ckpt_path[PATH_MAX + 64] = "";
  for (; it < stop; it++) {
    uint64_t epoch = it / (uint64_t)nb, i = it % (uint64_t)nb;
    if ((int64_t)epoch != order_epoch) {
      esr_data_order(seed, epoch, order, ds.n);
      order_epoch = (int64_t)epoch;
    }
    int warm = it < (uint64_t)hp.warmup_batches;
    pm_iter_begin(it);
    double t0 = now_s();
    g_dp.comm_s = 0;
    /* this rank's contiguous share of global batch i of the epoch */
    esr_data_batch(&ds, order + i * (uint64_t)gbatch + (g_dp.n ? g_dp.lo : 0), hp.batch, lrb,
                   hrb);
    esr_trainer_set_batch(&t, lrb, hrb);
    esr_trainer_set_ids(&t, order + i * (uint64_t)gbatch + (g_dp.n ? g_dp.lo : 0));
    if (esr_trainer_step(&t, warm))
      die(1, "iteration %llu failed: %s", (unsigned long long)it, nn_errmsg());
    uint64_t req, my_stop = 0;
    if (!agreed && pm_stop_requested(&req) == 1) {
      /* never before the iteration under way: no rank can undo work */
      uint64_t eff = req == UINT64_MAX || req < it ? it : req;
      if (eff > stop - 1) eff = stop - 1;
      my_stop = eff + 1;
    }
    /* Losses as this rank's parts of the global ones (the means weighted
     * by its share; the RaGAN hooks return parts already), and the sample
     * count, summed with the stop requests in one collective. */
    float share = g_dp.hooks.share;
    double v[5] = {t.loss_pixel * share, t.loss_content * share, t.loss_adv, t.loss_d,
                   (double)g_dp.n};
    if (g_dp.size == 1) v[0] = t.loss_pixel, v[1] = t.loss_content;
    uint64_t ag = 0;
    if (esr_dp_iter_end(&g_dp, v, 5, my_stop, &ag)) die(1, "%s", nn_errmsg());
    double wall = now_s() - t0, comm = g_dp.comm_s;
    pm_iter_end(wall - comm, comm, (uint64_t)g_dp.n);
    walls[it - first] = wall, comms[it - first] = comm, comps[it - first] = wall - comm;
    compute_sum += wall - comm, comm_sum += comm;
    last_iter_end_unix = wall_now_s();
    if (it == first) first_iter_end_unix = last_iter_end_unix;
    if ((uint64_t)v[4] != (uint64_t)gbatch)
      die(1, "iteration %llu processed %.0f samples instead of %d", (unsigned long long)it, v[4],
          gbatch);
    samples_done += (uint64_t)gbatch;
    if (!agreed && ag) {
      agreed = ag;
      if (g_dp.rank == 0)
        fprintf(stderr, PROG ": stop requested; ranks agreed on iteration %llu\n",
                (unsigned long long)(agreed - 1));
    }
    double lpix = v[0], lcon = v[1], ladv = v[2], ld = v[3];
    double lg = warm ? lpix : hp.lambda_content * lcon + hp.lambda_adv * ladv + hp.lambda_pixel * lpix;
    if (!isfinite(lg) || !isfinite(ld)) { /* every rank sees the same sums */
      if (g_dp.rank == 0)
        fprintf(stderr, PROG ": iteration %llu: loss is not finite, stopping\n",
                (unsigned long long)it);
      rcode = 1;
      break;
    }
    if (g_dp.rank == 0 && (it % (uint64_t)print_iv == 0 || it + 1 == stop)) {
      if (warm)
        printf("[Epoch %llu/%ld] [Batch %llu/%ld] [G pixel: %f] (%.3f s)\n",
               (unsigned long long)epoch, epochs, (unsigned long long)i, nb, lpix, wall);
      else
        printf("[Epoch %llu/%ld] [Batch %llu/%ld] [D loss: %f] [G loss: %f, content: %f, adv: "
               "%f, pixel: %f] (%.3f s)\n",
               (unsigned long long)epoch, epochs, (unsigned long long)i, nb, ld, lg, lcon, ladv,
               lpix, wall);
      fflush(stdout);
    }
    if (g_dp.rank == 0 && !warm && sample_iv && it % (uint64_t)sample_iv == 0)
      save_grid(out, it, &t, lrb);
    int last = it + 1 == stop, stop_now = agreed && it + 1 == agreed;
    /* the final checkpoint (agreed stop, --max-iters) must exist: every
     * rank learns whether rank 0 wrote it, and all exit alike */
    int final = stop_now || (last && max_iters);
    int periodic = (!warm && ckpt_iv && it % (uint64_t)ckpt_iv == 0) ||
                   (ckpt_sec && now_s() - last_ckpt_s >= (double)ckpt_sec);
    if (final || (periodic && g_dp.rank == 0)) {
      int ok = 1;
      if (g_dp.rank == 0) {
        double c0 = now_s();
        snprintf(ckpt_path, sizeof ckpt_path, "%s/saved_models/esrgan_%llu.ckpt", outabs,
                 (unsigned long long)it);
        meta.next_iter = it + 1;
        meta.samples_done = samples_done;
        if (esr_ckpt_save(ckpt_path, &t, &meta, err, sizeof err)) {
          fprintf(stderr, PROG ": %s\n", err);
          ok = 0;
        } else {
          pm_checkpoint(ckpt_path, it);
          fprintf(stderr, PROG ": checkpoint %s\n", ckpt_path);
        }
        ckpt_write_s = now_s() - c0;
        last_ckpt_s = now_s();
      }
      if (final && esr_dp_bcast_int(&g_dp, &ok)) die(1, "MPI_Bcast failed");
      if (final && !ok) {
        rcode = 1;
        break;
      }
      /* a failed periodic checkpoint costs nothing yet: go on, loudly */
    }
    if (i + 1 == (uint64_t)nb) pm_epoch_end(epoch, it);
    if (stop_now || (last && max_iters && stop < total)) {
      stopped = 1;
      it++;
      break;
    }
  }
  int same = 1;
  if (esr_dp_same_everywhere(&g_dp, state_hash(&t), &same)) die(1, "MPI_Allreduce failed");
  if (g_dp.rank == 0 && rcode == 0) {
    size_t nr = (size_t)(it - first);
    double run_s = now_s() - start_s;
    printf(PROG ": %s iterations=%llu samples=%llu ranks=%d run_iterations=%llu "
                "state=0x%016llx consistent=%d step_median_s=%.4f compute_median_s=%.4f "
                "comm_median_s=%.4f compute_s=%.3f comm_s=%.3f wall_s=%.3f%s%s\n",
           stopped ? "stopped" : "done", (unsigned long long)it, (unsigned long long)samples_done,
           g_dp.size, (unsigned long long)nr, (unsigned long long)state_hash(&t), same,
           median(walls, nr), median(comps, nr), median(comms, nr), compute_sum, comm_sum, run_s,
           stopped ? " checkpoint=" : "", stopped ? ckpt_path : "");
    /* for bench/bench_esrgan_dp: when each part of a stop/resume happened */
    printf(PROG ": times start=%.6f init_end=%.6f first_iter_end=%.6f last_iter_end=%.6f "
                "exit=%.6f mpi_init_s=%.4f data_s=%.4f model_s=%.4f resume_s=%.4f "
                "ckpt_write_s=%.4f\n",
           start_unix, init_end_unix, first_iter_end_unix, last_iter_end_unix, wall_now_s(),
           mpi_s, data_s, model_s, resume_s, ckpt_write_s);
    fflush(stdout);
  }
  if (!same && rcode == 0) {
    if (g_dp.rank == 0) fprintf(stderr, PROG ": the ranks' weights diverged\n");
    rcode = 1;
  }
  free(walls), free(comms), free(comps);
  free(lrb), free(hrb), free(order);
  esr_trainer_free(&t);
  esr_data_free(&ds);
  nn_ctx_free(&ctx);
  pm_finalize();
  esr_dp_finalize(&g_dp);
  return rcode;
}
