/* image.c - PNG and JPEG decoding (libpng, libjpeg), PNG writing, and
 * PIL's antialiased bicubic resize, for the ESRGAN data pipeline.
 *
 * Files are recognised by their first bytes, so a mislabelled or broken
 * file is reported by name instead of crashing a decoder.
 */
#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "data.h"
#include "paramount.h"

#define MAX_SIDE 16384
/* A tiny compressed file can claim a huge image; decoding allocates 3
 * bytes a pixel, so the pixel count is capped too (50 Mpx: 150 MB). */
#define MAX_PIXELS (50ull * 1000 * 1000)

void esr_image_free(esr_image *img) {
  if (!img) return;
  free(img->px);
  img->px = NULL;
  img->w = img->h = 0;
}

static int load_png(FILE *f, esr_image *img, char *err, size_t errlen) {
  png_image im;
  memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_stdio(&im, f)) {
    snprintf(err, errlen, "corrupt PNG: %s", im.message);
    return PM_EPARSE;
  }
  if (im.width == 0 || im.height == 0 || im.width > MAX_SIDE || im.height > MAX_SIDE ||
      (unsigned long long)im.width * im.height > MAX_PIXELS) {
    png_image_free(&im);
    snprintf(err, errlen, "PNG size %ux%u out of range", im.width, im.height);
    return PM_EPARSE;
  }
  im.format = PNG_FORMAT_RGB;
  uint8_t *px = malloc(PNG_IMAGE_SIZE(im));
  if (!px) {
    png_image_free(&im);
    snprintf(err, errlen, "out of memory");
    return PM_ENOMEM;
  }
  if (!png_image_finish_read(&im, NULL, px, 0, NULL)) {
    snprintf(err, errlen, "corrupt PNG: %s", im.message);
    free(px);
    png_image_free(&im);
    return PM_EPARSE;
  }
  img->w = (int)im.width, img->h = (int)im.height, img->px = px;
  png_image_free(&im);
  return 0;
}

typedef struct {
  struct jpeg_error_mgr mgr;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
} jerr_t;

static void jpeg_fail(j_common_ptr c) {
  jerr_t *e = (jerr_t *)c->err;
  c->err->format_message(c, e->msg);
  longjmp(e->jb, 1);
}

static void jpeg_quiet(j_common_ptr c, int level) {
  (void)c, (void)level;
}

static int load_jpeg(FILE *f, esr_image *img, char *err, size_t errlen) {
  struct jpeg_decompress_struct cinfo;
  jerr_t je;
  uint8_t *volatile px = NULL;
  cinfo.err = jpeg_std_error(&je.mgr);
  je.mgr.error_exit = jpeg_fail;
  je.mgr.emit_message = jpeg_quiet;
  if (setjmp(je.jb)) {
    snprintf(err, errlen, "corrupt JPEG: %s", je.msg);
    jpeg_destroy_decompress(&cinfo);
    free(px);
    return PM_EPARSE;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, f);
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&cinfo);
  int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
  if (w <= 0 || h <= 0 || w > MAX_SIDE || h > MAX_SIDE ||
      (unsigned long long)w * (unsigned long long)h > MAX_PIXELS ||
      cinfo.output_components != 3) {
    snprintf(err, errlen, "JPEG size %dx%d or %d components unsupported", w, h,
             cinfo.output_components);
    jpeg_destroy_decompress(&cinfo);
    return PM_EPARSE;
  }
  px = malloc((size_t)w * h * 3);
  if (!px) {
    jpeg_destroy_decompress(&cinfo);
    snprintf(err, errlen, "out of memory");
    return PM_ENOMEM;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = px + (size_t)cinfo.output_scanline * w * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  img->w = w, img->h = h, img->px = px;
  return 0;
}

int esr_image_load(const char *path, esr_image *img, char *err, size_t errlen) {
  memset(img, 0, sizeof *img);
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "cannot open: %s", strerror(errno));
    return PM_EIO;
  }
  unsigned char magic[8] = {0};
  size_t got = fread(magic, 1, 8, f);
  rewind(f);
  int rc;
  if (got == 8 && memcmp(magic, "\x89PNG\r\n\x1a\n", 8) == 0)
    rc = load_png(f, img, err, errlen);
  else if (got >= 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF)
    rc = load_jpeg(f, img, err, errlen);
  else {
    snprintf(err, errlen, "not a PNG or JPEG file");
    rc = PM_EPARSE;
  }
  fclose(f);
  return rc;
}

int esr_png_write(const char *path, const uint8_t *rgb, int w, int h, char *err,
                  size_t errlen) {
  png_image im;
  memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  im.width = (png_uint_32)w, im.height = (png_uint_32)h;
  im.format = PNG_FORMAT_RGB;
  if (!png_image_write_to_file(&im, path, 0, rgb, 0, NULL)) {
    snprintf(err, errlen, "cannot write PNG %s: %s", path, im.message);
    return PM_EIO;
  }
  return 0;
}

/* ---- PIL-style resampling ------------------------------------------------ */

static double cubic(double x) {
  const double a = -0.5;
  x = fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

/* Per output index: first input index, count and normalised weights. */
typedef struct {
  int *start, *count;
  double *w;
  int ksize;
} coeffs;

static int make_coeffs(int in, int out, coeffs *c) {
  double scale = (double)in / out, fscale = scale > 1 ? scale : 1.0;
  double support = 2.0 * fscale;
  c->ksize = (int)ceil(support) * 2 + 1;
  c->start = malloc(sizeof(int) * (size_t)out);
  c->count = malloc(sizeof(int) * (size_t)out);
  c->w = calloc((size_t)out * c->ksize, sizeof(double));
  if (!c->start || !c->count || !c->w) return PM_ENOMEM;
  for (int i = 0; i < out; i++) {
    double center = (i + 0.5) * scale, ww = 0;
    int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
    if (xmin < 0) xmin = 0;
    if (xmax > in) xmax = in;
    int n = xmax - xmin;
    if (n > c->ksize) n = c->ksize;
    double *k = c->w + (size_t)i * c->ksize;
    for (int x = 0; x < n; x++) {
      k[x] = cubic((x + xmin - center + 0.5) / fscale);
      ww += k[x];
    }
    for (int x = 0; x < n; x++) k[x] = ww != 0 ? k[x] / ww : 0;
    c->start[i] = xmin, c->count[i] = n;
  }
  return 0;
}

static void free_coeffs(coeffs *c) {
  free(c->start), free(c->count), free(c->w);
}

static uint8_t clip8(double v) {
  v = floor(v + 0.5);
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Horizontal then vertical pass, rounding to 8 bits in between as PIL does. */
int esr_image_resize(const esr_image *src, int w, int h, esr_image *dst) {
  memset(dst, 0, sizeof *dst);
  coeffs cx = {0}, cy = {0};
  uint8_t *tmp = malloc((size_t)w * src->h * 3), *out = malloc((size_t)w * h * 3);
  int rc = PM_ENOMEM;
  if (!tmp || !out || make_coeffs(src->w, w, &cx) || make_coeffs(src->h, h, &cy)) goto done;
  for (int y = 0; y < src->h; y++)
    for (int x = 0; x < w; x++) {
      const double *k = cx.w + (size_t)x * cx.ksize;
      for (int c = 0; c < 3; c++) {
        double s = 0;
        for (int i = 0; i < cx.count[x]; i++)
          s += k[i] * src->px[((size_t)y * src->w + cx.start[x] + i) * 3 + c];
        tmp[((size_t)y * w + x) * 3 + c] = clip8(s);
      }
    }
  for (int y = 0; y < h; y++) {
    const double *k = cy.w + (size_t)y * cy.ksize;
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) {
        double s = 0;
        for (int i = 0; i < cy.count[y]; i++)
          s += k[i] * tmp[((size_t)(cy.start[y] + i) * w + x) * 3 + c];
        out[((size_t)y * w + x) * 3 + c] = clip8(s);
      }
  }
  dst->w = w, dst->h = h, dst->px = out;
  out = NULL;
  rc = 0;
done:
  free_coeffs(&cx);
  free_coeffs(&cy);
  free(tmp);
  free(out);
  return rc;
}
