/* fuzz_util.c - the checks fuzz.h promises, shared by every target so a
 * loader's error message is held to one rule everywhere: it names the
 * input and fits on one line (docs/security.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int fuzz_accepted;

_Noreturn void fuzz_fail(const char *what) {
  fprintf(stderr, "fuzz: broken guarantee: %s\n", what);
  abort();
}

void fuzz_check_message(const char *err, const char *prefix) {
  if (!err[0]) fuzz_fail("refusal without a reason");
  if (strchr(err, '\n')) fuzz_fail("reason spans several lines");
  if (prefix && strncmp(err, prefix, strlen(prefix)) != 0) fuzz_fail("reason does not name the input");
}
