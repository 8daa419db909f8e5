/* fuzz_image.c - libFuzzer target for the ESRGAN image loader
 * (apps/esrgan/image.c: PNG through libpng, JPEG through libjpeg, then
 * the PIL-style resize the data pipeline applies).
 *
 * Image folders are data, not the user's own config: any file in them may
 * be broken or hostile.  Decoder errors longjmp out of libpng/libjpeg, so
 * ASan's leak check after every input is the test that nothing is lost on
 * that path.  The loader takes a path: the input goes through a memfd.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "data.h"
#include "fuzz.h"
#include "paramount.h"

#define FUZZ_RESIZE_MAX_PIXELS (1u << 20) /* keeps one input under a second */

static void resize_checked(const esr_image *img, int w, int h) {
  esr_image out;
  if (esr_image_resize(img, w, h, &out) != 0) fuzz_fail("resize failed");
  if (out.w != w || out.h != h || !out.px) fuzz_fail("resize size");
  esr_image_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("fuzz_image", MFD_CLOEXEC);
    if (fd < 0) fuzz_fail("memfd_create");
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
    fuzz_fail("memfd write");
  esr_image img;
  char err[512];
  err[0] = '\0';
  int rc = esr_image_load(path, &img, err, sizeof err);
  fuzz_accepted = rc == 0;
  if (rc != 0) {
    if (rc != PM_EPARSE && rc != PM_ENOMEM) fuzz_fail("unexpected error code");
    if (img.px) fuzz_fail("pixels left on failure");
    fuzz_check_message(err, NULL);
    return 0;
  }
  if (img.w < 1 || img.h < 1 || img.w > 16384 || img.h > 16384 || !img.px)
    fuzz_fail("decoded size out of range");
  /* Touch every byte, so a short buffer shows under ASan. */
  unsigned sum = 0;
  for (size_t i = 0; i < (size_t)img.w * img.h * 3; i++) sum += img.px[i];
  (void)sum;
  if ((size_t)img.w * img.h <= FUZZ_RESIZE_MAX_PIXELS) {
    resize_checked(&img, 8, 8);   /* shrink, antialiased */
    resize_checked(&img, 37, 5);  /* odd sizes, both directions */
  }
  esr_image_free(&img);
  return 0;
}
