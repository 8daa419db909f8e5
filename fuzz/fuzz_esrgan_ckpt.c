/* fuzz_esrgan_ckpt.c - libFuzzer target for the ESRGAN trainer's
 * checkpoint reader (apps/esrgan/ckpt.c, esr_ckpt_load).
 *
 * The reader is compiled in alone, against a small fake trainer (a real
 * one needs oneDNN and 80 MB of VGG weights, and the reader only looks at
 * its sizes and buffers), and reads the input through a memfd, since it
 * takes a path.  As with burn, each input of the right size is tried
 * twice, the second time with a valid checksum, so mutations reach the
 * checks behind it.  An accepted file must fill the buffers exactly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ckpt.h"
#include "fuzz.h"
#include "fuzz_esrgan.h"
#include "paramount.h"

/* The reader's collaborators, reduced to what it needs of them. */
int esr_trainer_sync(esr_trainer *t) {
  (void)t;
  return 0;
}
const char *nn_errmsg(void) { return "nn error"; }

enum { FAKE_NG = 16, FAKE_ND = 8, FAKE_NRUN = 4 };
#define FAKE_BODY ((3 * FAKE_NG + 3 * FAKE_ND + FAKE_NRUN) * 4)
#define FAKE_FILE (128 + FAKE_BODY + 8)

esr_trainer *fuzz_esr_fake_trainer(void) {
  static esr_trainer t;
  static float g[3][FAKE_NG], d[3][FAKE_ND], run[FAKE_NRUN];
  if (t.G.nparams) return &t;
  t.hp.hr = 32, t.hp.F = 4, t.hp.B = 1, t.hp.batch = 2;
  t.G.nparams = FAKE_NG, t.D.nparams = FAKE_ND, t.D.nrunning = FAKE_NRUN;
  t.G.params = g[0], t.optG.m = g[1], t.optG.v = g[2];
  t.D.params = d[0], t.optD.m = d[1], t.optD.v = d[2];
  t.D.running = run;
  return &t;
}

/* The reader's checksum (docs/esrgan.md), span by span as it hashes. */
static uint64_t ck_hash(uint64_t h, const uint8_t *b, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

static void fix_checksum(uint8_t *buf) {
  const size_t spans[] = {FAKE_NG, FAKE_NG, FAKE_NG, FAKE_ND, FAKE_ND, FAKE_ND, FAKE_NRUN};
  uint64_t h = ck_hash(0xcbf29ce484222325ull, buf, 128);
  size_t off = 128;
  for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++) {
    h = ck_hash(h, buf + off, spans[i] * 4);
    off += spans[i] * 4;
  }
  memcpy(buf + off, &h, 8);
}

static int load_checked(const uint8_t *data, size_t size) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("fuzz_esrgan_ckpt", MFD_CLOEXEC);
    if (fd < 0) fuzz_fail("memfd_create");
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
    fuzz_fail("memfd write");
  esr_trainer *t = fuzz_esr_fake_trainer();
  esr_ckpt_meta m;
  memset(&m, 0xa5, sizeof m);
  char err[512];
  err[0] = '\0';
  int rc = esr_ckpt_load(path, t, &m, err, sizeof err);
  if (rc != 0) {
    if (rc != PM_ECORRUPT && rc != PM_EPARSE && rc != PM_EINVAL) fuzz_fail("unexpected error code");
    fuzz_check_message(err, path);
    return 0;
  }
  if (size != FAKE_FILE) fuzz_fail("accepted a file of the wrong size");
  if (m.samples_done != m.next_iter * (uint64_t)t->hp.batch) fuzz_fail("inconsistent samples");
  if (memcmp(t->D.running, data + 128 + (3 * FAKE_NG + 3 * FAKE_ND) * 4, FAKE_NRUN * 4) != 0)
    fuzz_fail("the last buffer was not filled from the file");
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_accepted = load_checked(data, size);
  if (size == FAKE_FILE) {
    uint8_t fixed[FAKE_FILE];
    memcpy(fixed, data, size);
    fix_checksum(fixed);
    load_checked(fixed, size);
  }
  return 0;
}
