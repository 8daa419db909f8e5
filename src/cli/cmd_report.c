/* cmd_report.c - `paramount report RUN_DIR [--ideal RUN_DIR] [--out DIR]`:
 * rebuild metrics.csv, report.json and report.html from a run's journal.
 *
 * `record` and `run` write the same files at their end; this verb exists
 * so a report can be rebuilt at any time (after a crash, with a newer
 * Paramount, or against a different ideal run).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "paramount.h"
#include "report/report.h"

static void report_usage(FILE *f) {
  fprintf(f,
          "usage: paramount report RUN_DIR [--ideal RUN_DIR] [--out DIR]\n"
          "\n"
          "Rebuilds RUN_DIR/metrics.csv, report.json and report.html from\n"
          "RUN_DIR/journal.jsonl alone.\n"
          "\n"
          "  --ideal RUN_DIR  compare the cost with that run's report.json (a run\n"
          "                   on the ideal configuration); default: the policy's\n"
          "                   prediction, when the journal has one\n"
          "  --out DIR        write the three files into DIR instead of RUN_DIR\n");
}

int cmd_report(int argc, char **argv) {
  const char *run_dir = NULL;
  report_opts o = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      report_usage(stdout);
      return CLI_EXIT_OK;
    }
    if (!strcmp(a, "--ideal") || !strcmp(a, "--out")) {
      if (i + 1 >= argc || !argv[i + 1][0]) {
        cli_error("report", "option %s needs a directory", a);
        return CLI_EXIT_USAGE;
      }
      if (!strcmp(a, "--ideal")) o.ideal_dir = argv[++i];
      else o.out_dir = argv[++i];
      continue;
    }
    if (a[0] == '-' && a[1]) {
      cli_error("report", "unknown option '%s' (see paramount report --help)", a);
      return CLI_EXIT_USAGE;
    }
    if (run_dir) {
      cli_error("report", "one run directory only, got '%s' and '%s'", run_dir, a);
      return CLI_EXIT_USAGE;
    }
    run_dir = a;
  }
  if (!run_dir) {
    report_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  const char *warn = NULL;
  o.warn = &warn;
  char err[1024];
  int rc = report_build(run_dir, &o, err, sizeof err);
  if (warn) fprintf(stderr, "paramount: report: warning: %s/journal.jsonl: %s\n", run_dir, warn);
  if (rc) {
    cli_error("report", "(%d) %s", rc, err);
    return CLI_EXIT_FAIL;
  }
  const char *dir = o.out_dir ? o.out_dir : run_dir;
  printf("%s/report.html\n%s/report.json\n%s/metrics.csv\n", dir, dir, dir);
  return CLI_EXIT_OK;
}
