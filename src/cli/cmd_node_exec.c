/* cmd_node_exec.c - `paramount node-exec`: run a command inside a node of
 * the local provider (its cgroup, its directory, its environment).
 *
 * It is also Open MPI's rsh agent (`--mca plm_rsh_agent "paramount
 * node-exec"`), so it accepts what mpirun passes to ssh: options, a host
 * name (our node id), then the remote command as words to be joined and
 * run by /bin/sh -c.  That is the one place Paramount runs a shell string:
 * it is mpirun's own command line (`PATH=... ; export PATH ; orted ...`),
 * exactly what sshd would hand to the remote user's shell.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "paramount.h"
#include "provider/provider.h"

#define NODE_EXEC_CMD_MAX (256 * 1024)

static void node_exec_usage(FILE *f) {
  fprintf(f,
          "usage: paramount node-exec [--run DIR] NODE -- CMD [ARGS...]\n"
          "       paramount node-exec [--run DIR] [ssh options] NODE WORDS...\n"
          "\n"
          "Runs CMD inside node NODE of a local-provider run: in its cgroup, in\n"
          "its directory (RUN/nodes/NODE/work), with PARAMOUNT_NODE,\n"
          "PARAMOUNT_RUN_DIR and OMP_NUM_THREADS set to the node's share.\n"
          "With `--` CMD is run as given (no shell); without it the words are\n"
          "joined and run by /bin/sh -c, as ssh does, so that Open MPI can use\n"
          "this verb as its rsh agent:\n"
          "  mpirun --host n1,n2,n3 --mca plm_rsh_agent \"paramount node-exec\" ...\n"
          "\n"
          "  --run DIR   the run directory (default: $PARAMOUNT_RUN_DIR)\n");
}

/* ssh options that take a value; mpirun may pass e.g. `-x` or `-l user`. */
static int node_exec_ssh_opt_has_arg(const char *a) {
  return a[0] == '-' && a[1] && !a[2] && strchr("bcDEeFIiJLlmOopQRSWw", a[1]);
}

int cmd_node_exec(int argc, char **argv) {
  const char *run = getenv("PARAMOUNT_RUN_DIR");
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      node_exec_usage(stdout);
      return CLI_EXIT_OK;
    }
    if (!strcmp(a, "--run")) {
      if (++i >= argc) {
        cli_error("node-exec", "option --run needs a directory");
        return CLI_EXIT_USAGE;
      }
      run = argv[i];
    } else if (!strncmp(a, "--run=", 6)) {
      run = a + 6;
    } else if (a[0] == '-' && a[1]) {
      if (node_exec_ssh_opt_has_arg(a)) i++; /* an ssh option we ignore */
    } else {
      break;
    }
  }
  if (i >= argc) {
    node_exec_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  const char *node = argv[i++];
  if (!run || !*run) {
    cli_error("node-exec", "no run directory: pass --run DIR or set PARAMOUNT_RUN_DIR");
    return CLI_EXIT_USAGE;
  }
  char run_abs[PATH_MAX];
  if (!realpath(run, run_abs)) {
    cli_error("node-exec", "run directory '%s' does not exist", run);
    return CLI_EXIT_USAGE;
  }
  char err[1024];
  if (i < argc && !strcmp(argv[i], "--")) {
    if (++i >= argc) {
      cli_error("node-exec", "nothing to run after --");
      return CLI_EXIT_USAGE;
    }
    provider_local_exec(run_abs, node, argv + i, err, sizeof err);
  } else {
    if (i >= argc) {
      cli_error("node-exec", "no command for node %s", node);
      return CLI_EXIT_USAGE;
    }
    size_t len = 0;
    for (int k = i; k < argc; k++) len += strlen(argv[k]) + 1;
    if (len > NODE_EXEC_CMD_MAX) {
      cli_error("node-exec", "remote command longer than %d bytes", NODE_EXEC_CMD_MAX);
      return CLI_EXIT_USAGE;
    }
    char *line = malloc(len + 1);
    if (!line) {
      cli_error("node-exec", "out of memory");
      return CLI_EXIT_FAIL;
    }
    line[0] = '\0';
    for (int k = i; k < argc; k++) {
      if (k > i) strcat(line, " ");
      strcat(line, argv[k]);
    }
    char *sh[] = {"/bin/sh", "-c", line, NULL};
    provider_local_exec(run_abs, node, sh, err, sizeof err);
    free(line);
  }
  /* Only failures return. */
  cli_error("node-exec", "%s", err);
  return strstr(err, "no node") || strstr(err, "not a node id") ? CLI_EXIT_USAGE
                                                                  : CLI_EXIT_FAIL;
}
