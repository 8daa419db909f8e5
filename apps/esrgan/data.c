/* data.c - the ESRGAN data sets: an image folder (decoded once, optionally
 * cached on disk) or a deterministic synthetic set, the per-epoch shuffle
 * and batch gathering, in ImageNet-normalised float space (spec section 7).
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "model.h"
#include "paramount.h"

static const float MEAN[3] = {0.485f, 0.456f, 0.406f};
static const float STD[3] = {0.229f, 0.224f, 0.225f};

void esr_data_free(esr_dataset *d) {
  if (!d) return;
  free(d->hrbuf);
  free(d->lrbuf);
  memset(d, 0, sizeof *d);
}

static int data_alloc(esr_dataset *d, int n, int hr) {
  memset(d, 0, sizeof *d);
  d->n = n, d->hr = hr;
  d->hrbuf = malloc(sizeof(float) * (size_t)n * 3 * hr * hr);
  d->lrbuf = malloc(sizeof(float) * (size_t)n * 3 * (hr / 4) * (hr / 4));
  if (!d->hrbuf || !d->lrbuf) {
    esr_data_free(d);
    return PM_ENOMEM;
  }
  return 0;
}

/* 8-bit RGB (side s) -> normalised CHW floats, as ToTensor + Normalize. */
static void to_tensor(const esr_image *im, float *out) {
  size_t hw = (size_t)im->w * im->h;
  for (int c = 0; c < 3; c++)
    for (size_t i = 0; i < hw; i++)
      out[c * hw + i] = (im->px[i * 3 + c] / 255.0f - MEAN[c]) / STD[c];
}

static int add_image(esr_dataset *d, int i, const esr_image *orig) {
  int hr = d->hr, lr = hr / 4;
  esr_image a, b;
  if (esr_image_resize(orig, hr, hr, &a)) return PM_ENOMEM;
  if (esr_image_resize(orig, lr, lr, &b)) {
    esr_image_free(&a);
    return PM_ENOMEM;
  }
  to_tensor(&a, d->hrbuf + (size_t)i * 3 * hr * hr);
  to_tensor(&b, d->lrbuf + (size_t)i * 3 * lr * lr);
  esr_image_free(&a);
  esr_image_free(&b);
  return 0;
}

void esr_denorm_pixel(const float *chw, int c_stride, uint8_t rgb[3]) {
  for (int c = 0; c < 3; c++) {
    float v = chw[(size_t)c * c_stride] * STD[c] + MEAN[c];
    v = v < 0 ? 0 : v > 1 ? 1 : v;
    rgb[c] = (uint8_t)lrintf(v * 255.0f);
  }
}

/* ---- synthetic ------------------------------------------------------------ */

/* A smooth two-colour gradient, a few soft-edged discs and one band of
 * stripes: edges and textures at several scales, so super-resolution has
 * something to learn, and no noise. */
static void render(esr_image *im, uint64_t *rng) {
  int s = im->w;
  float c0[3], c1[3], ang = esr_rng_uniform(rng, 0, 6.2832f);
  for (int c = 0; c < 3; c++) c0[c] = esr_rng_uniform(rng, 0, 1), c1[c] = esr_rng_uniform(rng, 0, 1);
  float *f = malloc(sizeof(float) * (size_t)s * s * 3);
  if (!f) return;
  for (int y = 0; y < s; y++)
    for (int x = 0; x < s; x++) {
      float t = 0.5f + 0.5f * ((x - s / 2.0f) * cosf(ang) + (y - s / 2.0f) * sinf(ang)) / s;
      for (int c = 0; c < 3; c++) f[((size_t)y * s + x) * 3 + c] = c0[c] + (c1[c] - c0[c]) * t;
    }
  int ndisc = 2 + (int)(esr_rng_next(rng) % 4);
  for (int k = 0; k < ndisc; k++) {
    float cx = esr_rng_uniform(rng, 0, s), cy = esr_rng_uniform(rng, 0, s);
    float r = esr_rng_uniform(rng, s * 0.06f, s * 0.3f), col[3];
    for (int c = 0; c < 3; c++) col[c] = esr_rng_uniform(rng, 0, 1);
    for (int y = 0; y < s; y++)
      for (int x = 0; x < s; x++) {
        float dd = sqrtf((x - cx) * (x - cx) + (y - cy) * (y - cy));
        float a = fminf(fmaxf(r - dd + 0.5f, 0), 1);
        for (int c = 0; c < 3; c++) {
          float *p = &f[((size_t)y * s + x) * 3 + c];
          *p = *p * (1 - a) + col[c] * a;
        }
      }
  }
  float period = esr_rng_uniform(rng, 3, 12), sa = esr_rng_uniform(rng, 0, 3.1416f);
  float y0 = esr_rng_uniform(rng, 0, s * 0.7f), y1 = y0 + esr_rng_uniform(rng, s * 0.1f, s * 0.3f);
  for (int y = (int)y0; y < (int)y1 && y < s; y++)
    for (int x = 0; x < s; x++) {
      float v = 0.5f + 0.5f * sinf(6.2832f * (x * cosf(sa) + y * sinf(sa)) / period);
      for (int c = 0; c < 3; c++) {
        float *p = &f[((size_t)y * s + x) * 3 + c];
        *p = 0.5f * *p + 0.5f * v;
      }
    }
  for (size_t i = 0; i < (size_t)s * s * 3; i++) {
    float v = f[i] < 0 ? 0 : f[i] > 1 ? 1 : f[i];
    im->px[i] = (uint8_t)lrintf(v * 255);
  }
  free(f);
}

int esr_data_synthetic(esr_dataset *d, int n, int hr, uint64_t seed) {
  if (n < 1 || hr < 16 || hr % 16) return PM_EINVAL;
  if (data_alloc(d, n, hr)) return PM_ENOMEM;
  esr_image im = {hr, hr, malloc((size_t)hr * hr * 3)};
  if (!im.px) {
    esr_data_free(d);
    return PM_ENOMEM;
  }
  for (int i = 0; i < n; i++) {
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i;
    render(&im, &rng);
    if (add_image(d, i, &im)) {
      esr_image_free(&im);
      esr_data_free(d);
      return PM_ENOMEM;
    }
  }
  esr_image_free(&im);
  return 0;
}

/* ---- folder ----------------------------------------------------------------- */

static int cmpstr(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

#define CACHE_MAGIC "PMESRDS1"

static int cache_read(esr_dataset *d, const char *path, uint64_t key, int hr) {
  FILE *f = fopen(path, "rb");
  if (!f) return PM_ENOENT;
  char magic[8];
  uint64_t k = 0;
  int32_t hdr[2];
  int rc = PM_ECORRUPT;
  if (fread(magic, 1, 8, f) == 8 && memcmp(magic, CACHE_MAGIC, 8) == 0 &&
      fread(&k, 8, 1, f) == 1 && k == key && fread(hdr, 4, 2, f) == 2 && hdr[1] == hr &&
      hdr[0] > 0 && !data_alloc(d, hdr[0], hr)) {
    size_t nh = (size_t)d->n * 3 * hr * hr, nl = (size_t)d->n * 3 * (hr / 4) * (hr / 4);
    if (fread(d->hrbuf, 4, nh, f) == nh && fread(d->lrbuf, 4, nl, f) == nl && fgetc(f) == EOF)
      rc = 0;
    else
      esr_data_free(d);
  }
  fclose(f);
  return rc;
}

static void cache_write(const esr_dataset *d, const char *path, uint64_t key) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp) return;
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    fprintf(stderr, "paramount-esrgan: warning: cannot write cache %s: %s\n", tmp, strerror(errno));
    return;
  }
  int32_t hdr[2] = {d->n, d->hr};
  size_t nh = (size_t)d->n * 3 * d->hr * d->hr, nl = (size_t)d->n * 3 * (d->hr / 4) * (d->hr / 4);
  int ok = fwrite(CACHE_MAGIC, 1, 8, f) == 8 && fwrite(&key, 8, 1, f) == 1 &&
           fwrite(hdr, 4, 2, f) == 2 && fwrite(d->hrbuf, 4, nh, f) == nh &&
           fwrite(d->lrbuf, 4, nl, f) == nl && fflush(f) == 0 && fsync(fileno(f)) == 0;
  ok &= fclose(f) == 0;
  if (!ok || rename(tmp, path) != 0) {
    fprintf(stderr, "paramount-esrgan: warning: cannot write cache %s\n", path);
    unlink(tmp);
  }
}

int esr_data_folder(esr_dataset *d, const char *dir, int hr, int strict,
                    const char *cache_path, char *err, size_t errlen) {
  memset(d, 0, sizeof *d);
  DIR *dp = opendir(dir);
  if (!dp) {
    snprintf(err, errlen, "cannot open data folder %s: %s", dir, strerror(errno));
    return PM_ENOENT;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  int rc = 0;
  while ((de = readdir(dp))) {
    if (de->d_name[0] == '.' || !strchr(de->d_name, '.')) continue; /* glob "*.*" */
    if (n == cap) {
      cap = cap ? 2 * cap : 256;
      char **nn = realloc(names, cap * sizeof *names);
      if (!nn) { rc = PM_ENOMEM; break; }
      names = nn;
    }
    if (!(names[n] = strdup(de->d_name))) { rc = PM_ENOMEM; break; }
    n++;
  }
  closedir(dp);
  if (rc) goto out;
  qsort(names, n, sizeof *names, cmpstr);
  /* cache key: hr, then every name with its size and mtime */
  uint64_t key = fnv(0xcbf29ce484222325ull, &hr, sizeof hr);
  char path[4096];
  for (size_t i = 0; i < n; i++) {
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    key = fnv(key, names[i], strlen(names[i]) + 1);
    if (stat(path, &st) == 0) {
      int64_t v[2] = {(int64_t)st.st_size, (int64_t)st.st_mtime};
      key = fnv(key, v, sizeof v);
    }
  }
  if (cache_path && cache_read(d, cache_path, key, hr) == 0) goto out;
  if (n == 0 || data_alloc(d, (int)n, hr)) {
    if (n) snprintf(err, errlen, "out of memory for %zu images", n);
    else snprintf(err, errlen, "no image files (*.*) in %s", dir);
    rc = n ? PM_ENOMEM : PM_ENOENT;
    goto out;
  }
  int good = 0;
  for (size_t i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    esr_image im;
    char why[256];
    int r = esr_image_load(path, &im, why, sizeof why);
    if (r) {
      /* A file name is data: control characters in it must not reach
       * the terminal or forge log lines. */
      char shown[sizeof path];
      size_t k = 0;
      for (const char *q = path; *q && k + 1 < sizeof shown; q++)
        shown[k++] = ((unsigned char)*q < 0x20 || *q == 0x7f) ? '?' : *q;
      shown[k] = '\0';
      if (strict) {
        snprintf(err, errlen, "%s: %s", shown, why);
        rc = r;
        esr_data_free(d);
        goto out;
      }
      fprintf(stderr, "paramount-esrgan: skipping %s: %s\n", shown, why);
      continue;
    }
    r = add_image(d, good, &im);
    esr_image_free(&im);
    if (r) {
      snprintf(err, errlen, "out of memory resizing %s", path);
      rc = r;
      esr_data_free(d);
      goto out;
    }
    good++;
  }
  if (good == 0) {
    snprintf(err, errlen, "no readable PNG or JPEG image in %s", dir);
    esr_data_free(d);
    rc = PM_ENOENT;
    goto out;
  }
  d->n = good;
  if (cache_path) cache_write(d, cache_path, key);
out:
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  return rc;
}

void esr_data_order(uint64_t seed, uint64_t epoch, uint32_t *idx, int n) {
  uint64_t rng = seed ^ (0xD1B54A32D192ED03ull * (epoch + 1));
  for (int i = 0; i < n; i++) idx[i] = (uint32_t)i;
  for (int i = n - 1; i > 0; i--) {
    int j = (int)(esr_rng_next(&rng) % (uint64_t)(i + 1));
    uint32_t t = idx[i];
    idx[i] = idx[j], idx[j] = t;
  }
}

void esr_data_batch(const esr_dataset *d, const uint32_t *idx, int batch,
                    float *lr, float *hr) {
  size_t nh = (size_t)3 * d->hr * d->hr, nl = (size_t)3 * (d->hr / 4) * (d->hr / 4);
  for (int b = 0; b < batch; b++) {
    memcpy(hr + b * nh, d->hrbuf + idx[b] * nh, nh * sizeof(float));
    memcpy(lr + b * nl, d->lrbuf + idx[b] * nl, nl * sizeof(float));
  }
}
