/* main.c - `paramount <verb> ...`: git-style dispatch to one file per verb.
 *
 * `paramount --help` lists every verb from the table in verbs.h, so the
 * help cannot fall out of step with what exists.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/util.h"
#include "paramount.h"

typedef struct {
  const char *name;
  int (*fn)(int, char **);
  const char *summary;
} verb;

static const verb verbs[] = {
#define VERB(name, fn, summary) {name, fn, summary},
#include "verbs.h"
#undef VERB
};

void cli_error(const char *verb, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (verb)
    fprintf(stderr, "paramount: %s: %s\n", verb, msg);
  else
    fprintf(stderr, "paramount: %s\n", msg);
}

int cli_parse_u64(const char *verb, const char *opt, const char *val,
                  unsigned long long *out) {
  if (!val || !*val || *val == '-') goto bad;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(val, &end, 10);
  if (errno || *end) goto bad;
  *out = v;
  return 0;
bad:
  cli_error(verb, "option %s needs a non-negative integer, got '%s'", opt,
            val ? val : "");
  return -1;
}

int cli_parse_double(const char *verb, const char *opt, const char *val,
                     double *out) {
  if (!val || !*val) goto bad;
  errno = 0;
  char *end;
  double v = strtod(val, &end);
  if (errno || *end || v != v) goto bad;
  *out = v;
  return 0;
bad:
  cli_error(verb, "option %s needs a number, got '%s'", opt, val ? val : "");
  return -1;
}

const char *cli_self_dir(void) {
  static char dir[PATH_MAX];
  if (!dir[0] && util_self_dir(dir, sizeof dir) != 0) snprintf(dir, sizeof dir, ".");
  return dir;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: paramount <verb> [options]\n"
          "\n"
          "Runs an iterative MPI job, times its paramount iterations on every\n"
          "node, and moves it to the instance type that does it best for the\n"
          "money.\n"
          "\n"
          "verbs:\n");
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
    fprintf(f, "  %-12s %s\n", verbs[i].name, verbs[i].summary);
  fprintf(f,
          "\n"
          "`paramount <verb> --help` describes a verb's options.\n"
          "Exit status: 0 success, 1 failure, 2 bad usage or configuration;\n"
          "verbs that run a job pass its failing exit status through.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
      !strcmp(argv[1], "help")) {
    usage(stdout);
    return CLI_EXIT_OK;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("paramount %d.%d.%d\n", PM_VERSION_MAJOR, PM_VERSION_MINOR,
           PM_VERSION_PATCH);
    return CLI_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
    if (!strcmp(argv[1], verbs[i].name)) return verbs[i].fn(argc - 1, argv + 1);
  cli_error(NULL, "unknown verb '%s' (see paramount --help)", argv[1]);
  return CLI_EXIT_USAGE;
}
