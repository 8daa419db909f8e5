/* data.h - ESRGAN's data: image files or a synthetic set, as normalised
 * float tensors, plus PNG/JPEG decoding, PIL-style bicubic resize and the
 * sample-grid writer.
 *
 * Each image is held as HR (3, hr, hr) and LR (3, hr/4, hr/4) floats in
 * ImageNet-normalised space, both resized from the original independently.
 */
#ifndef ESRGAN_DATA_H
#define ESRGAN_DATA_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int n, hr;
  float *hrbuf; /* owned: n * 3 * hr * hr */
  float *lrbuf; /* owned: n * 3 * (hr/4)^2 */
} esr_dataset;

/* 8-bit RGB image, owned pixels. */
typedef struct {
  int w, h;
  uint8_t *px; /* h * w * 3, row-major RGB */
} esr_image;

/* Decodes a PNG or JPEG (recognised by content, not name).  err gets the
 * reason on failure: PM_EIO (unreadable), PM_EPARSE (not a PNG/JPEG or
 * corrupt), PM_ENOMEM. */
int esr_image_load(const char *path, esr_image *img, char *err, size_t errlen);
void esr_image_free(esr_image *img);
/* PIL's bicubic (a = -0.5), antialiased when shrinking. */
int esr_image_resize(const esr_image *src, int w, int h, esr_image *dst);
int esr_png_write(const char *path, const uint8_t *rgb, int w, int h, char *err,
                  size_t errlen);

/* A deterministic set of n structured images (gradients, discs, stripes). */
int esr_data_synthetic(esr_dataset *d, int n, int hr, uint64_t seed);
/* Every regular file of dir (sorted by name, "*.*" like the original's
 * glob).  A file that is not an image is reported on stderr by name and
 * skipped, or fails the load when `strict`.  With cache_path, the decoded
 * tensors are read from / written to that file (keyed by the file list,
 * sizes, mtimes and hr). */
int esr_data_folder(esr_dataset *d, const char *dir, int hr, int strict,
                    const char *cache_path, char *err, size_t errlen);
void esr_data_free(esr_dataset *d);

/* The permutation of epoch `epoch` (Fisher-Yates from seed and epoch
 * only, so every rank and every resume computes the same order). */
void esr_data_order(uint64_t seed, uint64_t epoch, uint32_t *idx, int n);
/* Gathers images idx[0..batch) into plain NCHW buffers. */
void esr_data_batch(const esr_dataset *d, const uint32_t *idx, int batch,
                    float *lr, float *hr);
/* Normalised CHW floats -> 8-bit with x*std + mean, clipped to [0, 1]. */
void esr_denorm_pixel(const float *chw, int c_stride, uint8_t rgb[3]);

#endif
