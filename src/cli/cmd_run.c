/* cmd_run.c - `paramount run CONFIG`: run a job on the cluster that does
 * it best for the money.
 *
 * Parses the command line and the config, then hands over to the
 * controller (src/controller/run.c), which owns the nodes, the job and
 * the decisions.  Exit status: 0, the job's own failing status, 1 when
 * Paramount failed, 2 for a bad command line or config, 128+N on signal N.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "controller/config.h"
#include "controller/run.h"
#include "paramount.h"

static void run_usage(FILE *f) {
  fprintf(f,
          "usage: paramount run CONFIG [--out DIR] [--force] [--mpirun PATH]\n"
          "\n"
          "Starts the cluster CONFIG describes, runs its job under mpirun, times\n"
          "the job's paramount iterations on every node, and moves the job to the\n"
          "instance type the policy finds best (make-before-break: new nodes are\n"
          "set up while the job trains; then agreed stop, checkpoint, relaunch,\n"
          "and the old nodes are terminated).  Every node is terminated at the\n"
          "end, on failure and on ^C.  See docs/config.md and docs/cli.md.\n"
          "\n"
          "  --out DIR      run directory (default: runs/<timestamp>)\n"
          "  --force        start nodes even if their CPU quotas exceed the host's\n"
          "  --mpirun PATH  the mpirun to use (default: mpirun from PATH)\n"
          "  --no-status    plain log lines instead of the status line on a TTY\n"
          "\n"
          "Writes RUN/journal.jsonl, RUN/metrics.csv, RUN/report.json,\n"
          "RUN/report.html, RUN/job-N.log (the job's output, one file per launch)\n"
          "and copies of the config and catalog (RUN/config.yaml, RUN/catalog.yaml)\n"
          "for `paramount resume RUN`.  A node lost mid-run is replaced and the job\n"
          "continues from its last checkpoint (docs/faults.md).\n");
}

int cmd_run(int argc, char **argv) {
  const char *config = NULL;
  run_opts o = {.status_tty = -1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      run_usage(stdout);
      return CLI_EXIT_OK;
    } else if (!strcmp(a, "--out") || !strcmp(a, "--mpirun")) {
      if (i + 1 >= argc || !argv[i + 1][0]) {
        cli_error("run", "option %s needs a value", a);
        return CLI_EXIT_USAGE;
      }
      if (!strcmp(a, "--out")) o.out_dir = argv[++i];
      else o.mpirun = argv[++i];
    } else if (!strcmp(a, "--force")) {
      o.force = 1;
    } else if (!strcmp(a, "--no-status")) {
      o.status_tty = 0;
    } else if (a[0] == '-' || config) {
      cli_error("run", "unexpected argument '%s' (see paramount run --help)", a);
      return CLI_EXIT_USAGE;
    } else {
      config = a;
    }
  }
  if (!config) {
    run_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  static run_config cfg;
  char err[2048] = "";
  if (run_config_load(config, &cfg, err, sizeof err)) {
    cli_error("run", "%s", err);
    return CLI_EXIT_USAGE;
  }
  /* Again by its absolute path, so that the run remembers where relative
   * paths point (`paramount resume` may run from anywhere). */
  char abs[PATH_MAX];
  if (config[0] != '/' && realpath(config, abs) && run_config_load(abs, &cfg, err, sizeof err)) {
    cli_error("run", "%s", err);
    return CLI_EXIT_USAGE;
  }
  char bin[PATH_MAX + 16];
  snprintf(bin, sizeof bin, "%s/paramount", cli_self_dir());
  o.cfg = &cfg;
  o.paramount_bin = bin;
  run_result res;
  run_execute(&o, &res);
  return res.exit_status;
}
