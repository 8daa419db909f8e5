/* cmd_resume.c - `paramount resume RUN`: pick up a run whose controller
 * died (SIGKILL, a crash, a reboot) from its directory alone.
 *
 * The run directory holds everything needed: the config and catalog the
 * run started with (copied there by `run`) and the journal (nodes, last
 * checkpoint, progress).  The controller (src/controller/run.c) terminates
 * the nodes left behind, starts the last cluster again and continues the
 * job from its last checkpoint.  Exit statuses as for `paramount run`.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "controller/config.h"
#include "controller/run.h"
#include "paramount.h"
#include "provider/provider.h"

static void resume_usage(FILE *f) {
  fprintf(f,
          "usage: paramount resume RUN [--force] [--mpirun PATH] [--no-status]\n"
          "\n"
          "Continues run directory RUN after its controller died: terminates the\n"
          "nodes it left, starts the cluster of its last launch again, relaunches\n"
          "the job from its last checkpoint (RUN/config.yaml's job.resume), and\n"
          "goes on as `paramount run` would, in the same directory and journal.\n"
          "A run that completed, or that a live controller still runs, is refused.\n"
          "\n"
          "  --force        start nodes even if their CPU quotas exceed the host's\n"
          "  --mpirun PATH  the mpirun to use (default: mpirun from PATH)\n"
          "  --no-status    plain log lines instead of the status line on a TTY\n");
}

int cmd_resume(int argc, char **argv) {
  const char *run = NULL;
  run_opts o = {.status_tty = -1, .resume = 1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      resume_usage(stdout);
      return CLI_EXIT_OK;
    } else if (!strcmp(a, "--mpirun")) {
      if (i + 1 >= argc || !argv[i + 1][0]) {
        cli_error("resume", "option %s needs a value", a);
        return CLI_EXIT_USAGE;
      }
      o.mpirun = argv[++i];
    } else if (!strcmp(a, "--force")) {
      o.force = 1;
    } else if (!strcmp(a, "--no-status")) {
      o.status_tty = 0;
    } else if (a[0] == '-' || run) {
      cli_error("resume", "unexpected argument '%s' (see paramount resume --help)", a);
      return CLI_EXIT_USAGE;
    } else {
      run = a;
    }
  }
  if (!run) {
    resume_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  char dir[PATH_MAX], err[2048] = "";
  if (provider_run_dir_resolve(run, dir, sizeof dir, err, sizeof err)) {
    cli_error("resume", "%s", err);
    return CLI_EXIT_USAGE;
  }
  static run_config cfg;
  if (run_config_of(dir, &cfg, err, sizeof err)) {
    cli_error("resume", "%s", err);
    return CLI_EXIT_USAGE;
  }
  char bin[PATH_MAX + 16];
  snprintf(bin, sizeof bin, "%s/paramount", cli_self_dir());
  o.cfg = &cfg;
  o.out_dir = dir;
  o.paramount_bin = bin;
  run_result res;
  run_execute(&o, &res);
  return res.exit_status;
}
