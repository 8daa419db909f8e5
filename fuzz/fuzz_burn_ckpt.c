/* fuzz_burn_ckpt.c - libFuzzer target for paramount-burn's checkpoint
 * decoder (apps/burn/burn_core.c, burn_ckpt_decode).
 *
 * A checkpoint is read back after a crash, so it may be torn or foreign.
 * The file checksum (FNV-1a) would stop the fuzzer at the first check, so
 * every input is decoded twice: as given, and with its checksum made
 * valid, which lets mutations reach the consistency checks behind it.
 * An accepted file must re-encode to its exact bytes.
 */
#include <string.h>

#include "burn_core.h"
#include "fuzz.h"
#include "paramount.h"

/* The decoder's own checksum (docs/burn.md): FNV-1a 64 of bytes [0, 224). */
static void fix_checksum(uint8_t *buf) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (size_t i = 0; i < BURN_CKPT_SIZE - 8; i++) {
    h ^= buf[i];
    h *= UINT64_C(0x100000001b3);
  }
  for (int i = 0; i < 8; i++) buf[BURN_CKPT_SIZE - 8 + i] = (uint8_t)(h >> (8 * i));
}

static int decode_checked(const uint8_t *data, size_t size) {
  burn_ckpt ck;
  char why[256];
  why[0] = '\0';
  int rc = burn_ckpt_decode(data, size, &ck, why, sizeof why);
  if (rc != 0) {
    if (rc != PM_ECORRUPT) fuzz_fail("unexpected error code");
    fuzz_check_message(why, NULL);
    return 0;
  }
  if (size != BURN_CKPT_SIZE) fuzz_fail("accepted a file of the wrong size");
  if (!memchr(ck.phases_spec, '\0', sizeof ck.phases_spec)) fuzz_fail("phases not terminated");
  uint8_t again[BURN_CKPT_SIZE];
  burn_ckpt_encode(&ck, again);
  if (memcmp(again, data, BURN_CKPT_SIZE) != 0) fuzz_fail("re-encoding differs");
  /* What a resume does next: compare with this run's options. */
  static burn_config cfg;
  static int have_cfg;
  if (!have_cfg) {
    char *argv[] = {BURN_PROG, NULL};
    if (burn_config_parse(1, argv, &cfg, why, sizeof why) != 0) fuzz_fail("default options");
    have_cfg = 1;
  }
  rc = burn_ckpt_check_config(&ck, &cfg, why, sizeof why);
  if (rc != 0 && rc != PM_EINVAL) fuzz_fail("unexpected error code from the config check");
  if (rc != 0) fuzz_check_message(why, NULL);
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_accepted = decode_checked(data, size);
  if (size == BURN_CKPT_SIZE) {
    uint8_t fixed[BURN_CKPT_SIZE];
    memcpy(fixed, data, size);
    fix_checksum(fixed);
    decode_checked(fixed, size);
  }
  return 0;
}
