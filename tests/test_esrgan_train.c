/* test_esrgan_train.c - the trainer end to end on tiny models: the pixel
 * loss falls on the synthetic set, a resumed run continues bit-exactly,
 * broken checkpoints and bad options are refused with clear errors, and
 * the data pipeline decodes, resizes and reports bad files.
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "data.h"
#include "paramount.h"
/* Give each case room on a loaded 2-core host. */
#define TEST_DEFAULT_TIMEOUT_S 420
#include "test.h"

/* Steps of the bf16 loss-curve comparison.  Under ASan the bf16 case runs
 * ~14x slower than optimised (~140-200 s of CPU for 24 steps here, most
 * of it in the sanitizer's interceptors around oneDNN's buffers), so the
 * sanitized build compares a shorter curve through the same code. */
#if defined(__SANITIZE_ADDRESS__)
#define BF16_STEPS 8
#else
#define BF16_STEPS 24
#endif
#include "train.h"

static nn_ctx ctx;

static esr_hparams tiny(void) {
  esr_hparams hp = {.hr = 32, .batch = 4, .F = 16, .B = 1, .warmup_batches = 2,
                    .lambda_adv = 5e-3f, .lambda_pixel = 1e-2f, .lambda_content = 1.0f,
                    .lr = 2e-4f, .b1 = 0.9f, .b2 = 0.999f, .content = 1};
  return hp;
}

static void setup(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  ASSERT_EQ_INT(nn_ctx_init(&ctx, 1, 0), 0);
  ctx.allow_ref = 1;
}

/* Runs iterations [from, to) like main.c does. */
static void run(esr_trainer *t, const esr_dataset *ds, uint64_t from, uint64_t to) {
  int nb = ds->n / t->hp.batch;
  uint32_t *order = malloc(sizeof(uint32_t) * (size_t)ds->n);
  float *lr = malloc(sizeof(float) * (size_t)t->hp.batch * 3 * 8 * 8);
  float *hr = malloc(sizeof(float) * (size_t)t->hp.batch * 3 * 32 * 32);
  for (uint64_t it = from; it < to; it++) {
    esr_data_order(1, it / nb, order, ds->n);
    esr_data_batch(ds, order + (it % nb) * t->hp.batch, t->hp.batch, lr, hr);
    esr_trainer_set_batch(t, lr, hr);
    if (t->hp.feature_cache) esr_trainer_set_ids(t, order + (it % nb) * t->hp.batch);
    ASSERT_EQ_INT(esr_trainer_step(t, it < (uint64_t)t->hp.warmup_batches), 0);
  }
  free(order), free(lr), free(hr);
}

TEST(pixel_loss_falls_on_synthetic_set) {
  setup();
  esr_hparams hp = tiny();
  hp.warmup_batches = 1000000; /* pixel loss only, like the warm-up phase */
  hp.lr = 1e-3f;
  esr_trainer t;
  ASSERT_EQ_INT(esr_trainer_init(&t, &ctx, &hp, 7), 0);
  esr_dataset ds;
  ASSERT_EQ_INT(esr_data_synthetic(&ds, 32, 32, 3), 0);
  int nb = ds.n / hp.batch, iters = 300;
  uint32_t order[32];
  float lr[4 * 3 * 8 * 8], hr[4 * 3 * 32 * 32];
  double first = 0, last = 0;
  for (int it = 0; it < iters; it++) {
    esr_data_order(1, (uint64_t)(it / nb), order, ds.n);
    esr_data_batch(&ds, order + (it % nb) * 4, 4, lr, hr);
    esr_trainer_set_batch(&t, lr, hr);
    ASSERT_EQ_INT(esr_trainer_step(&t, 1), 0);
    if (it < 16) first += t.loss_pixel / 16;
    if (it >= iters - 16) last += t.loss_pixel / 16;
  }
  printf("  pixel L1: first 16 iterations %.4f, last 16 %.4f (bound: < 0.5 x first)\n", first,
         last);
  ASSERT_OP_DBL(last, <, 0.5 * first);
  esr_trainer_free(&t);
  esr_data_free(&ds);
}

TEST(gan_steps_stay_finite) {
  setup();
  esr_hparams hp = tiny();
  esr_trainer t;
  ASSERT_EQ_INT(esr_trainer_init(&t, &ctx, &hp, 7), 0);
  esr_dataset ds;
  ASSERT_EQ_INT(esr_data_synthetic(&ds, 16, 32, 3), 0);
  run(&t, &ds, 0, 8);
  ASSERT(isfinite(t.loss_g) && isfinite(t.loss_d) && t.loss_d > 0 && t.loss_content > 0);
  esr_trainer_free(&t);
  esr_data_free(&ds);
}

/* The real images' VGG features served from the cache must equal the
 * recomputed ones bit for bit, although the cached copy was computed in a
 * batch of other images (epochs reshuffle); and the cache must be used. */
TEST(feature_cache_matches_recomputed_features) {
  setup();
  esr_hparams hp = tiny();
  esr_dataset ds;
  ASSERT_EQ_INT(esr_data_synthetic(&ds, 12, 32, 5), 0);
  esr_trainer a, b;
  ASSERT_EQ_INT(esr_trainer_init(&a, &ctx, &hp, 11), 0);
  hp.feature_cache = 12;
  ASSERT_EQ_INT(esr_trainer_init(&b, &ctx, &hp, 11), 0);
  run(&a, &ds, 0, 11); /* 2 warm-up + 9 GAN iterations: 3 GAN epochs */
  run(&b, &ds, 0, 11);
  for (int i = 0; i < 12; i++) ASSERT(b.fcache[i] != NULL);
  ASSERT_OP_DBL(a.loss_content, ==, b.loss_content);
  ASSERT(memcmp(a.G.params, b.G.params, a.G.nparams * 4) == 0);
  ASSERT(memcmp(a.D.params, b.D.params, a.D.nparams * 4) == 0);
  /* poison every cached feature: the next content loss must change */
  size_t per = b.freal.nfloats / (size_t)hp.batch;
  for (int i = 0; i < 12; i++)
    for (size_t j = 0; j < per; j++) b.fcache[i][j] += 1.0f;
  double before = a.loss_content;
  run(&a, &ds, 11, 12);
  run(&b, &ds, 11, 12);
  printf("  content loss: recomputed %.6f, poisoned cache %.6f (before %.6f)\n",
         a.loss_content, b.loss_content, before);
  ASSERT_OP_DBL(fabs(a.loss_content - b.loss_content), >, 0.1);
  esr_trainer_free(&a), esr_trainer_free(&b);
  esr_data_free(&ds);
}

/* --bf16 (AMX/AVX512-BF16 kernels) must follow fp32's loss curve from the
 * same start; without bf16 kernels every conv falls back to fp32 and the
 * curves must then be identical. */
TEST(bf16_loss_curve_follows_fp32) {
  setup();
  nn_ctx cb;
  ASSERT_EQ_INT(nn_ctx_init(&cb, 1, 0), 0);
  cb.bf16 = 1, cb.allow_ref = 1;
  esr_hparams hp = tiny();
  hp.lr = 1e-3f;
  esr_dataset ds;
  ASSERT_EQ_INT(esr_data_synthetic(&ds, 16, 32, 3), 0);
  esr_trainer a, b;
  ASSERT_EQ_INT(esr_trainer_init(&a, &ctx, &hp, 5), 0);
  ASSERT_EQ_INT(esr_trainer_init(&b, &cb, &hp, 5), 0);
  int nbf = 0;
  for (int i = 0; i < b.G.nconv; i++) nbf += b.G.conv[i].bf16;
  double worst = 0, ga = 0, gb = 0;
  for (uint64_t it = 0; it < BF16_STEPS; it++) {
    run(&a, &ds, it, it + 1);
    run(&b, &ds, it, it + 1);
    double rel = fabs(a.loss_g - b.loss_g) / fabs(a.loss_g);
    if (rel > worst) worst = rel;
    if (it >= BF16_STEPS - 4) ga += a.loss_g / 4, gb += b.loss_g / 4;
  }
  printf("  %d of %d generator convs in bf16 (%s); G loss worst relative gap %.2e, "
         "last 4 mean fp32 %.5f bf16 %.5f\n", nbf, b.G.nconv, b.G.conv[1].impl[0], worst,
         ga, gb);
  if (nbf == 0) {
    ASSERT_OP_DBL(worst, ==, 0);
  } else {
    ASSERT_OP_DBL(worst, >, 0); /* it really ran in bf16 */
    ASSERT_OP_DBL(worst, <, 0.05);
    ASSERT_OP_DBL(fabs(ga - gb) / ga, <, 0.02);
  }
  esr_trainer_free(&a), esr_trainer_free(&b);
  esr_data_free(&ds);
  nn_ctx_free(&cb);
}

static char ckdir[] = "/tmp/esrgan_ckptXXXXXX";

TEST(resume_continues_exactly_and_bad_checkpoints_are_refused) {
  setup();
  ASSERT(mkdtemp(ckdir) != NULL);
  char path[256], err[512];
  snprintf(path, sizeof path, "%s/a.ckpt", ckdir);
  esr_hparams hp = tiny();
  esr_dataset ds;
  ASSERT_EQ_INT(esr_data_synthetic(&ds, 12, 32, 5), 0);
  /* straight: 7 iterations (2 warm-up + 5 GAN, crossing an epoch) */
  esr_trainer a, b;
  ASSERT_EQ_INT(esr_trainer_init(&a, &ctx, &hp, 11), 0);
  run(&a, &ds, 0, 7);
  /* split: 4, checkpoint, fresh trainer from another seed, load, 3 more */
  ASSERT_EQ_INT(esr_trainer_init(&b, &ctx, &hp, 11), 0);
  run(&b, &ds, 0, 4);
  esr_ckpt_meta m = {4, 1, 12, 0, 0}, m2;
  ASSERT_EQ_INT(esr_ckpt_save(path, &b, &m, err, sizeof err), 0);
  esr_trainer_free(&b);
  /* VGG weights come from --vgg or the seed, not the checkpoint: same seed,
   * but G and D scrambled to prove the load replaces them */
  ASSERT_EQ_INT(esr_trainer_init(&b, &ctx, &hp, 11), 0);
  uint64_t other = 999;
  esr_gen_reset(&b.G, &other);
  esr_disc_reset(&b.D, &other);
  int lrc = esr_ckpt_load(path, &b, &m2, err, sizeof err);
  if (lrc) printf("load: %s\n", err);
  ASSERT_EQ_INT(lrc, 0);
  ASSERT_EQ_U64(m2.next_iter, 4);
  run(&b, &ds, m2.next_iter, 7);
  ASSERT(memcmp(a.G.params, b.G.params, a.G.nparams * 4) == 0);
  ASSERT(memcmp(a.D.params, b.D.params, a.D.nparams * 4) == 0);
  ASSERT(memcmp(a.D.running, b.D.running, a.D.nrunning * 4) == 0);
  ASSERT(memcmp(a.optG.v, b.optG.v, a.G.nparams * 4) == 0);

  /* corrupt one byte in the body */
  struct stat st;
  ASSERT_EQ_INT(stat(path, &st), 0);
  int fd = open(path, O_RDWR);
  ASSERT(fd >= 0);
  char byte;
  ASSERT_EQ_INT(pread(fd, &byte, 1, st.st_size / 2), 1);
  byte ^= 0x10;
  ASSERT_EQ_INT(pwrite(fd, &byte, 1, st.st_size / 2), 1);
  ASSERT_EQ_INT(esr_ckpt_load(path, &b, &m2, err, sizeof err), PM_ECORRUPT);
  ASSERT_CONTAINS(err, "checksum");
  /* truncate */
  byte ^= 0x10;
  ASSERT_EQ_INT(pwrite(fd, &byte, 1, st.st_size / 2), 1);
  ASSERT_EQ_INT(ftruncate(fd, st.st_size - 100), 0);
  close(fd);
  ASSERT_EQ_INT(esr_ckpt_load(path, &b, &m2, err, sizeof err), PM_ECORRUPT);
  ASSERT_CONTAINS(err, "truncated");
  /* a checkpoint of another model size */
  ASSERT_EQ_INT(esr_ckpt_save(path, &a, &m, err, sizeof err), 0);
  esr_hparams hp2 = hp;
  hp2.F = 32;
  esr_trainer c;
  ASSERT_EQ_INT(esr_trainer_init(&c, &ctx, &hp2, 1), 0);
  ASSERT_EQ_INT(esr_ckpt_load(path, &c, &m2, err, sizeof err), PM_EINVAL);
  ASSERT_CONTAINS(err, "F 16");
  /* not a checkpoint */
  FILE *f = fopen(path, "wb");
  fputs("hello", f);
  fclose(f);
  ASSERT(esr_ckpt_load(path, &c, &m2, err, sizeof err) < 0);
  unlink(path);
  rmdir(ckdir);
  esr_trainer_free(&a), esr_trainer_free(&b), esr_trainer_free(&c);
  esr_data_free(&ds);
}

TEST(folder_data_decodes_resizes_and_reports_bad_files) {
  char dir[] = "/tmp/esrgan_dataXXXXXX";
  ASSERT(mkdtemp(dir) != NULL);
  char p[512], err[512];
  /* a 178x218 PNG (CelebA's shape), a non-image, and a truncated PNG */
  int w = 178, h = 218;
  uint8_t *px = malloc((size_t)w * h * 3);
  for (int i = 0; i < w * h * 3; i++) px[i] = (uint8_t)(i * 7);
  snprintf(p, sizeof p, "%s/000001.png", dir);
  ASSERT_EQ_INT(esr_png_write(p, px, w, h, err, sizeof err), 0);
  snprintf(p, sizeof p, "%s/000002.txt", dir);
  FILE *f = fopen(p, "w");
  fputs("not an image", f);
  fclose(f);
  snprintf(p, sizeof p, "%s/000003.png", dir);
  f = fopen(p, "wb");
  fwrite("\x89PNG\r\n\x1a\n\0\0", 1, 10, f);
  fclose(f);
  esr_dataset ds;
  ASSERT_EQ_INT(esr_data_folder(&ds, dir, 32, 0, NULL, err, sizeof err), 0);
  ASSERT_EQ_INT(ds.n, 1);
  esr_data_free(&ds);
  ASSERT_EQ_INT(esr_data_folder(&ds, dir, 32, 1, NULL, err, sizeof err), PM_EPARSE);
  ASSERT_CONTAINS(err, "000002.txt");
  /* a constant image stays constant through resize and normalisation */
  memset(px, 200, (size_t)w * h * 3);
  snprintf(p, sizeof p, "%s/000001.png", dir);
  ASSERT_EQ_INT(esr_png_write(p, px, w, h, err, sizeof err), 0);
  snprintf(p, sizeof p, "%s/000002.txt", dir), unlink(p);
  snprintf(p, sizeof p, "%s/000003.png", dir), unlink(p);
  char cache[600];
  snprintf(cache, sizeof cache, "%s.cache", dir);
  ASSERT_EQ_INT(esr_data_folder(&ds, dir, 32, 1, cache, err, sizeof err), 0);
  float want = (200 / 255.0f - 0.485f) / 0.229f;
  ASSERT_NEAR(ds.hrbuf[5], want, 1e-5);
  ASSERT_NEAR(ds.lrbuf[3], want, 1e-5);
  esr_data_free(&ds);
  ASSERT_EQ_INT(esr_data_folder(&ds, dir, 32, 1, cache, err, sizeof err), 0); /* from cache */
  ASSERT_NEAR(ds.hrbuf[5], want, 1e-5);
  esr_data_free(&ds);
  unlink(cache);
  snprintf(p, sizeof p, "%s/000001.png", dir), unlink(p);
  rmdir(dir);
  free(px);
}

TEST(resize_is_pil_bicubic) {
  /* a ramp shrunk 4x with PIL's antialiased bicubic */
  esr_image a = {16, 1, malloc(16 * 3)}, b;
  for (int i = 0; i < 16; i++) a.px[i * 3] = a.px[i * 3 + 1] = a.px[i * 3 + 2] = (uint8_t)(i * 16);
  ASSERT_EQ_INT(esr_image_resize(&a, 4, 1, &b), 0);
  /* Pillow 9: Image.fromarray(ramp).resize((4, 1), BICUBIC) = 25 87 153 215 */
  printf("  ramp 16 -> 4: %d %d %d %d\n", b.px[0], b.px[3], b.px[6], b.px[9]);
  ASSERT_EQ_INT(b.px[0], 25);
  ASSERT_EQ_INT(b.px[3], 87);
  ASSERT_EQ_INT(b.px[6], 153);
  ASSERT_EQ_INT(b.px[9], 215);
  esr_image_free(&a), esr_image_free(&b);
}

#ifdef ESRGAN_BIN
static int run_cli(char *const argv[], char *out, size_t outlen) {
  int pfd[2];
  if (pipe(pfd)) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pfd[1], 1), dup2(pfd[1], 2);
    close(pfd[0]);
    execv(ESRGAN_BIN, argv);
    _exit(127);
  }
  close(pfd[1]);
  size_t n = 0;
  ssize_t r;
  while (n + 1 < outlen && (r = read(pfd[0], out + n, outlen - 1 - n)) > 0) n += (size_t)r;
  out[n] = 0;
  close(pfd[0]);
  int st;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(cli_rejects_bad_options_and_documents_them) {
  static char buf[65536];
  char *a1[] = {ESRGAN_BIN, "--hr", "100", NULL};
  ASSERT_EQ_INT(run_cli(a1, buf, sizeof buf), 2);
  ASSERT_CONTAINS(buf, "paramount-esrgan: --hr: 100 is not a multiple of 16");
  char *a2[] = {ESRGAN_BIN, "--lr", "fast", NULL};
  ASSERT_EQ_INT(run_cli(a2, buf, sizeof buf), 2);
  ASSERT_CONTAINS(buf, "--lr: 'fast' is not a number");
  char *a3[] = {ESRGAN_BIN, "--bogus", NULL};
  ASSERT_EQ_INT(run_cli(a3, buf, sizeof buf), 2);
  ASSERT_CONTAINS(buf, "unknown option");
  char *a4[] = {ESRGAN_BIN, "--help", NULL};
  ASSERT_EQ_INT(run_cli(a4, buf, sizeof buf), 0);
  ASSERT_CONTAINS(buf, "--warmup N");
  char *a5[] = {ESRGAN_BIN, "--data", "/nonexistent/dir", NULL};
  ASSERT_EQ_INT(run_cli(a5, buf, sizeof buf), 2);
  ASSERT_CONTAINS(buf, "/nonexistent/dir");
  char *a6[] = {ESRGAN_BIN, "--resume", "/nonexistent.ckpt", "--hr", "32", "--filters", "16",
                "--blocks", "1", "--synthetic", "8", "--no-vgg", "off", NULL};
  ASSERT_EQ_INT(run_cli(a6, buf, sizeof buf), 2);
  ASSERT_CONTAINS(buf, "--resume");
}

TEST(cli_trains_samples_checkpoints_and_resumes) {
  static char buf[65536];
  char dir[] = "/tmp/esrgan_cliXXXXXX";
  ASSERT(mkdtemp(dir) != NULL);
  char *a[] = {ESRGAN_BIN, "--hr", "32", "--filters", "16", "--blocks", "1", "--batch", "2",
               "--synthetic", "8", "--warmup", "2", "--sample-interval", "2",
               "--max-iters", "4", "--no-vgg", "off", "--out", dir, NULL};
  int rc = run_cli(a, buf, sizeof buf);
  if (rc) fprintf(stderr, "%s\n", buf);
  ASSERT_EQ_INT(rc, 0);
  ASSERT_CONTAINS(buf, "[D loss:");
  char p[512];
  struct stat st;
  snprintf(p, sizeof p, "%s/images/training/2.png", dir);
  ASSERT_EQ_INT(stat(p, &st), 0);
  snprintf(p, sizeof p, "%s/saved_models/esrgan_3.ckpt", dir);
  ASSERT_EQ_INT(stat(p, &st), 0);
  char *b[] = {ESRGAN_BIN, "--hr", "32", "--filters", "16", "--blocks", "1", "--batch", "2",
               "--synthetic", "8", "--warmup", "2", "--max-iters", "1", "--no-vgg", "off",
               "--out", dir, "--resume", p, NULL};
  rc = run_cli(b, buf, sizeof buf);
  if (rc) fprintf(stderr, "%s\n", buf);
  ASSERT_EQ_INT(rc, 0);
  ASSERT_CONTAINS(buf, "starting at iteration 4");
  char *c[] = {ESRGAN_BIN, "--hr", "32", "--filters", "32", "--blocks", "1", "--batch", "2",
               "--synthetic", "8", "--no-vgg", "off", "--out", dir, "--resume", p, NULL};
  ASSERT_EQ_INT(run_cli(c, buf, sizeof buf), 2);
  ASSERT_CONTAINS(buf, "checkpoint is for hr 32, F 16");
}
#endif

TEST_MAIN()
