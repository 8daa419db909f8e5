/* make_seeds.c - writes the seed corpora of the binary-format targets
 * (burn_ckpt, esrgan_ckpt, image) with the real writers, so a seed is
 * exactly what the program writes and changes when its format does.
 * Built in every build as fuzz_make_seeds; run by hand, then commit:
 *   build/fuzz_make_seeds fuzz/corpus
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#include "burn_core.h"
#include "ckpt.h"
#include "data.h"
#include "fuzz_esrgan.h"

static const char *root;

static void die(const char *what) {
  fprintf(stderr, "fuzz_make_seeds: %s\n", what);
  exit(1);
}

static void seed_dir(const char *name) {
  char p[4096];
  snprintf(p, sizeof p, "%s/%s", root, name);
  if (mkdir(p, 0755) != 0 && errno != EEXIST) die(p);
}

static void put(const char *dir, const char *name, const void *p, size_t n) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s/%s", root, dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) die(path);
}

static size_t get(const char *path, uint8_t *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f) die(path);
  size_t n = fread(buf, 1, cap, f);
  fclose(f);
  return n;
}

static void burn_seeds(void) {
  seed_dir("burn_ckpt");
  burn_config cfg;
  char why[256];
  char *argv[] = {BURN_PROG, "--phases", "warm:10@50,main", NULL};
  if (burn_config_parse(3, argv, &cfg, why, sizeof why) != 0) die(why);
  burn_ckpt ck = {0};
  ck.samples_per_epoch = cfg.samples_per_epoch, ck.batch = cfg.batch;
  ck.epochs = cfg.epochs, ck.work_madds = cfg.work_madds;
  ck.next_iter = 3, ck.epoch = 3 / burn_iters_per_epoch(&cfg);
  ck.samples_done = burn_samples_before(&cfg, 3);
  ck.nranks = 2, ck.written_ns = 1700000000000000000ull;
  snprintf(ck.phases_spec, sizeof ck.phases_spec, "%s", cfg.phases_spec);
  uint8_t b[BURN_CKPT_SIZE];
  burn_ckpt_encode(&ck, b);
  put("burn_ckpt", "ok_position_3", b, sizeof b);
  put("burn_ckpt", "bad_truncated", b, sizeof b - 1);
  put("burn_ckpt", "bad_magic_only", b, 8);
  uint8_t flip[BURN_CKPT_SIZE];
  memcpy(flip, b, sizeof b);
  flip[20] ^= 1;
  put("burn_ckpt", "bad_checksum", flip, sizeof flip);
  burn_ckpt odd = ck;
  odd.samples_done++; /* a valid checksum over an inconsistent position */
  burn_ckpt_encode(&odd, flip);
  put("burn_ckpt", "bad_inconsistent", flip, sizeof flip);
}

static void esrgan_seeds(const char *tmpdir) {
  seed_dir("esrgan_ckpt");
  esr_trainer *t = fuzz_esr_fake_trainer();
  for (size_t i = 0; i < t->G.nparams; i++) t->G.params[i] = (float)i * 0.5f;
  for (size_t i = 0; i < t->D.nrunning; i++) t->D.running[i] = 1.0f + (float)i;
  esr_ckpt_meta m = {.next_iter = 10, .seed = 1, .nimages = 100, .nranks = 2};
  char path[4096], err[512];
  snprintf(path, sizeof path, "%s/esr.ckpt", tmpdir);
  if (esr_ckpt_save(path, t, &m, err, sizeof err) != 0) die(err);
  uint8_t b[4096];
  size_t n = get(path, b, sizeof b);
  remove(path);
  put("esrgan_ckpt", "ok_iter_10", b, n);
  put("esrgan_ckpt", "bad_truncated", b, n - 1);
  put("esrgan_ckpt", "bad_header_only", b, 128);
  uint8_t c[4096];
  memcpy(c, b, n);
  c[200] ^= 0x40;
  put("esrgan_ckpt", "bad_checksum", c, n);
  memcpy(c, b, n);
  c[8] = 9; /* version 9 */
  put("esrgan_ckpt", "bad_version", c, n);
  memcpy(c, b, n);
  c[16] = 64; /* hr 64: another model */
  put("esrgan_ckpt", "bad_shape", c, n);
}

static void jpeg_seed(const char *path, const uint8_t *rgb, int w, int h) {
  FILE *f = fopen(path, "wb");
  if (!f) die(path);
  struct jpeg_compress_struct ci;
  struct jpeg_error_mgr je;
  ci.err = jpeg_std_error(&je);
  jpeg_create_compress(&ci);
  jpeg_stdio_dest(&ci, f);
  ci.image_width = (JDIMENSION)w, ci.image_height = (JDIMENSION)h;
  ci.input_components = 3, ci.in_color_space = JCS_RGB;
  jpeg_set_defaults(&ci);
  jpeg_set_quality(&ci, 80, TRUE);
  jpeg_start_compress(&ci, TRUE);
  while (ci.next_scanline < ci.image_height) {
    JSAMPROW row = (JSAMPROW)(rgb + (size_t)ci.next_scanline * w * 3);
    jpeg_write_scanlines(&ci, &row, 1);
  }
  jpeg_finish_compress(&ci);
  jpeg_destroy_compress(&ci);
  fclose(f);
}

static void image_seeds(const char *tmpdir) {
  seed_dir("image");
  enum { W = 13, H = 9 };
  uint8_t rgb[W * H * 3];
  for (int i = 0; i < W * H * 3; i++) rgb[i] = (uint8_t)(i * 7);
  char path[4096], err[512];
  uint8_t b[65536];
  snprintf(path, sizeof path, "%s/seed.png", tmpdir);
  if (esr_png_write(path, rgb, W, H, err, sizeof err) != 0) die(err);
  size_t n = get(path, b, sizeof b);
  put("image", "ok_13x9.png", b, n);
  put("image", "bad_png_truncated", b, n / 2);
  b[20] ^= 0xff; /* width inside IHDR: its CRC no longer matches */
  put("image", "bad_png_ihdr_crc", b, n);
  snprintf(path, sizeof path, "%s/seed.jpg", tmpdir);
  jpeg_seed(path, rgb, W, H);
  n = get(path, b, sizeof b);
  remove(path);
  put("image", "ok_13x9.jpg", b, n);
  put("image", "bad_jpeg_header_only", b, 3);
  put("image", "bad_not_an_image", "hello\n", 6);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: fuzz_make_seeds CORPUS_DIR\n");
    return 2;
  }
  root = argv[1];
  char tmpdir[] = "/tmp/pm-seeds-XXXXXX";
  if (!mkdtemp(tmpdir)) die("mkdtemp");
  burn_seeds();
  esrgan_seeds(tmpdir);
  image_seeds(tmpdir);
  char p[4096];
  snprintf(p, sizeof p, "%s/seed.png", tmpdir);
  remove(p);
  rmdir(tmpdir);
  printf("seeds written under %s\n", root);
  return 0;
}
