/* cmd_down.c - `paramount down [RUN]`: terminate every node a run's
 * journal and node records know, whoever started them and whether or not
 * that process is still alive.  Idempotent, so it is always safe to run
 * again after a crash or a Ctrl-C.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "paramount.h"
#include "provider/provider.h"

static void down_report(const char *id, const char *what, void *ud) {
  int *n = ud;
  (*n)++;
  printf("%-6s %s\n", id, what);
  fflush(stdout);
}

int cmd_down(int argc, char **argv) {
  const char *run = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: paramount down [RUN]\n"
             "\n"
             "Terminates every node of run directory RUN (default: the newest under\n"
             "runs/): kills their processes, removes their cgroups, journals it.\n"
             "Works after the process that started them was killed; running it\n"
             "twice is harmless.\n");
      return CLI_EXIT_OK;
    }
    if (argv[i][0] == '-' || run) {
      cli_error("down", "unexpected argument '%s' (see paramount down --help)", argv[i]);
      return CLI_EXIT_USAGE;
    }
    run = argv[i];
  }
  char dir[PATH_MAX];
  char err[1024] = "";
  if (provider_run_dir_resolve(run, dir, sizeof dir, err, sizeof err)) {
    cli_error("down", "%s", err);
    return CLI_EXIT_USAGE;
  }
  int n = 0;
  int rc = provider_local_down(dir, down_report, &n, err, sizeof err);
  if (!n && !rc) printf("no nodes in %s\n", dir);
  if (rc) {
    cli_error("down", "%s", err);
    return CLI_EXIT_FAIL;
  }
  return CLI_EXIT_OK;
}
