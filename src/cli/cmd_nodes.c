/* cmd_nodes.c - `paramount nodes [RUN]`: the nodes of a run with their
 * type, state, age, setup time and cost so far, read from the run
 * directory alone (no controller needs to be alive to answer).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/util.h"
#include "paramount.h"
#include "provider/provider.h"

static void nodes_secs(char *buf, size_t cap, double s) {
  if (!(s >= 0)) snprintf(buf, cap, "-");
  else if (s < 120) snprintf(buf, cap, "%.1fs", s);
  else if (s < 7200) snprintf(buf, cap, "%.1fm", s / 60);
  else snprintf(buf, cap, "%.1fh", s / 3600);
}

int cmd_nodes(int argc, char **argv) {
  const char *run = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: paramount nodes [RUN]\n"
             "\n"
             "Lists the nodes of run directory RUN (default: the newest under\n"
             "runs/): id, type, state, age, setup time (request to ready), CPU\n"
             "share, and cost so far (price x time billed under the type's billing\n"
             "granularity and minimum, from the request on).\n");
      return CLI_EXIT_OK;
    }
    if (argv[i][0] == '-' || run) {
      cli_error("nodes", "unexpected argument '%s' (see paramount nodes --help)", argv[i]);
      return CLI_EXIT_USAGE;
    }
    run = argv[i];
  }
  char dir[PATH_MAX], err[1024] = "";
  if (provider_run_dir_resolve(run, dir, sizeof dir, err, sizeof err)) {
    cli_error("nodes", "%s", err);
    return CLI_EXIT_USAGE;
  }
  provider_node *nodes = NULL;
  size_t n = 0;
  if (provider_local_list(dir, &nodes, &n, err, sizeof err)) {
    cli_error("nodes", "%s", err);
    return CLI_EXIT_FAIL;
  }
  printf("run: %s\n", dir);
  if (!n) {
    printf("no nodes\n");
    free(nodes);
    return CLI_EXIT_OK;
  }
  double now = clock_real_s(), total = 0;
  size_t live = 0;
  printf("%-6s %-12s %-10s %7s %7s %5s %-9s %10s\n", "NODE", "TYPE", "STATE", "AGE",
         "SETUP", "CPU", "THROTTLE", "COST_USD");
  for (size_t i = 0; i < n; i++) {
    const provider_node *x = &nodes[i];
    double end = x->terminated_s > 0 ? x->terminated_s : now;
    char age[32], setup[32];
    nodes_secs(age, sizeof age, end - x->requested_s);
    nodes_secs(setup, sizeof setup, x->ready_s > 0 ? x->ready_s - x->requested_s : -1);
    double cost = provider_node_cost_usd(x, now);
    total += cost;
    if (x->state != NODE_TERMINATED && x->state != NODE_FAILED) live++;
    printf("%-6s %-12s %-10s %7s %7s %5.2f %-9s %10.5f\n", x->id, x->type,
           provider_state_name(x->state), age, setup, x->cpu_fraction, x->throttle, cost);
  }
  printf("%zu node%s, %zu live, cost so far $%.5f\n", n, n == 1 ? "" : "s", live, total);
  free(nodes);
  return CLI_EXIT_OK;
}
