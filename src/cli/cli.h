/* cli.h - what the verbs of `paramount` share: exit statuses, the error
 * line format, and option helpers.
 */
#ifndef PM_CLI_H
#define PM_CLI_H

#include <stdio.h>

/* Exit statuses of `paramount` (docs/cli.md).  `record` and `run` pass a
 * failing job's own status through instead of CLI_EXIT_FAIL. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1  /* the operation failed */
#define CLI_EXIT_USAGE 2 /* bad command line or configuration */
#define CLI_EXIT_SIGNAL_BASE 128

#define VERB(name, fn, summary) int fn(int argc, char **argv);
#include "verbs.h"
#undef VERB

/* "paramount: <verb>: message" on stderr, one line. */
void cli_error(const char *verb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses a non-negative integer option value; on error prints a line
 * naming the option and returns -1. */
int cli_parse_u64(const char *verb, const char *opt, const char *val,
                  unsigned long long *out);
int cli_parse_double(const char *verb, const char *opt, const char *val,
                     double *out);

/* The directory holding the `paramount` binary (for sibling programs). */
const char *cli_self_dir(void);

#endif
