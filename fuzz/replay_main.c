/* replay_main.c - replays a fuzz target's corpus folder without libFuzzer,
 * so the normal (gcc) build re-runs every seed and every crash ever found
 * (ctest test_fuzz_<name>, label unit).  Files named ok_* must be
 * accepted, bad_* refused; any other name (crash regressions) must only
 * not break a guarantee.  An empty folder fails: a typo must not pass.
 *   usage: fuzz_<name>_replay DIR
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define REPLAY_MAX_BYTES (8u << 20)

static int replay_file(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: cannot open %s\n", path);
    return 1;
  }
  uint8_t *buf = malloc(REPLAY_MAX_BYTES);
  if (!buf) {
    fclose(f);
    fprintf(stderr, "replay: out of memory\n");
    return 1;
  }
  size_t n = fread(buf, 1, REPLAY_MAX_BYTES, f);
  fclose(f);
  /* A copy of exactly n bytes, so ASan sees a read past the input. */
  uint8_t *exact = malloc(n ? n : 1);
  if (!exact) {
    free(buf);
    return 1;
  }
  memcpy(exact, buf, n);
  free(buf);
  fuzz_accepted = -1;
  LLVMFuzzerTestOneInput(exact, n); /* aborts on a broken guarantee */
  free(exact);
  int bad = 0;
  if (fuzz_accepted < 0) {
    fprintf(stderr, "replay: %s: the target did not say whether it accepted\n", path);
    bad = 1;
  } else if (!strncmp(name, "ok_", 3) && !fuzz_accepted) {
    fprintf(stderr, "replay: %s: a valid input was refused\n", path);
    bad = 1;
  } else if (!strncmp(name, "bad_", 4) && fuzz_accepted) {
    fprintf(stderr, "replay: %s: a malformed input was accepted\n", path);
    bad = 1;
  }
  return bad;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  DIR *d = opendir(argv[1]);
  if (!d) {
    fprintf(stderr, "replay: cannot open folder %s\n", argv[1]);
    return 1;
  }
  int files = 0, failed = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    files++;
    failed += replay_file(argv[1], e->d_name);
  }
  closedir(d);
  printf("%s: %d corpus files, %d failed\n", argv[1], files, failed);
  return files == 0 || failed ? 1 : 0;
}
