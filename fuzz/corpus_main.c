/* corpus_main.c - runs fuzz_wire's checks on every file of a corpus folder
 * without libFuzzer, so the normal (gcc) test build replays the seeds and
 * every crash ever found.  Files named ok_* must decode completely and
 * bad_* must be refused; a folder with no file fails (a path typo must
 * not pass silently).   usage: fuzz_wire_corpus DIR...
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire.h"
#include "paramount.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 1 when data is a whole number of valid frames. */
static int decodes_completely(const uint8_t *data, size_t size) {
  size_t off = 0;
  while (off < size) {
    wire_msg m;
    size_t used;
    if (wire_decode(data + off, size - off, &m, &used, NULL) != 0) return 0;
    off += used;
  }
  return 1;
}

static int run_file(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "fuzz_wire_corpus: cannot open %s\n", path);
    return 1;
  }
  static uint8_t buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  LLVMFuzzerTestOneInput(buf, n); /* aborts on a broken guarantee */
  int whole = decodes_completely(buf, n);
  if (!strncmp(name, "ok_", 3) && !whole) {
    fprintf(stderr, "fuzz_wire_corpus: %s: a valid input was refused\n", path);
    return 1;
  }
  if (!strncmp(name, "bad_", 4) && whole) {
    fprintf(stderr, "fuzz_wire_corpus: %s: a malformed input was accepted\n", path);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: fuzz_wire_corpus DIR...\n");
    return 2;
  }
  int files = 0, failed = 0;
  for (int i = 1; i < argc; i++) {
    DIR *d = opendir(argv[i]);
    if (!d) {
      fprintf(stderr, "fuzz_wire_corpus: cannot open folder %s\n", argv[i]);
      return 1;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      files++;
      failed += run_file(argv[i], e->d_name);
    }
    closedir(d);
  }
  printf("%d corpus files, %d failed\n", files, failed);
  return files == 0 || failed ? 1 : 0;
}
