/* cmd_up.c - `paramount up CONFIG`: start a cluster without a job.
 *
 * Reads the cluster config (docs/config.md), starts every node, stages the
 * listed files onto each, prints boot, staging and setup times, and leaves
 * the cluster running for `paramount nodes` / `node-exec` / `down`.  The
 * config is read by run_config_load, the loader `paramount run` uses, so
 * both verbs accept the same file with the same messages; its `job` and
 * `policy` sections are checked, then ignored here, with a note.
 */
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/journal.h"
#include "common/util.h"
#include "controller/config.h"
#include "paramount.h"
#include "provider/provider.h"

#define UP_NODES_MAX RUN_CONFIG_NODES_MAX

static void up_usage(FILE *f) {
  fprintf(f,
          "usage: paramount up CONFIG [--out DIR] [--force]\n"
          "\n"
          "Starts the cluster CONFIG describes (docs/config.md) with no job,\n"
          "stages its files onto every node, prints each node's boot, staging\n"
          "and setup times, and returns with the cluster running.\n"
          "\n"
          "  --out DIR   run directory (default: runs/<timestamp>)\n"
          "  --force     start even if the nodes' CPU quotas exceed the host's\n"
          "              cores (the emulated speeds are then too slow)\n"
          "\n"
          "Then: paramount nodes RUN, paramount node-exec --run RUN NODE -- CMD,\n"
          "paramount down RUN.\n");
}

int cmd_up(int argc, char **argv) {
  const char *config = NULL, *out = NULL;
  int force = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      up_usage(stdout);
      return CLI_EXIT_OK;
    } else if (!strcmp(argv[i], "--out")) {
      if (++i >= argc) {
        cli_error("up", "option --out needs a directory");
        return CLI_EXIT_USAGE;
      }
      out = argv[i];
    } else if (!strcmp(argv[i], "--force")) {
      force = 1;
    } else if (argv[i][0] == '-' || config) {
      cli_error("up", "unexpected argument '%s' (see paramount up --help)", argv[i]);
      return CLI_EXIT_USAGE;
    } else {
      config = argv[i];
    }
  }
  if (!config) {
    up_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  static run_config cfg;
  char err[2048] = "";
  if (run_config_load(config, &cfg, err, sizeof err)) {
    cli_error("up", "%s", err);
    return CLI_EXIT_USAGE;
  }
  if (cfg.has_job || cfg.has_policy)
    fprintf(stderr, "paramount: up: note: %s%s%s ignored by `up` (used by `paramount run`)\n",
            cfg.has_job ? "'job'" : "", cfg.has_job && cfg.has_policy ? " and " : "",
            cfg.has_policy ? "'policy'" : "");
  if (!cfg.catalog[0] && catalog_default_path(cfg.catalog, sizeof cfg.catalog)) {
    cli_error("up", "no catalog: set 'catalog' in %s or PARAMOUNT_CATALOG (looked for %s)",
              config, cfg.catalog);
    return CLI_EXIT_USAGE;
  }
  catalog *cat = NULL;
  if (catalog_load(cfg.catalog, &cat, err, sizeof err) ||
      run_config_check_catalog(&cfg, cat, err, sizeof err)) {
    cli_error("up", "%s", err);
    catalog_free(cat);
    return CLI_EXIT_USAGE;
  }
  int rc = CLI_EXIT_FAIL;
  char run[PATH_MAX];
  int e = util_run_dir_create(out, run, sizeof run);
  if (e) {
    cli_error("up", "cannot create run directory %s: %s", out ? out : "under runs/",
              e == PM_EEXIST ? "it already holds a run" : pm_strerror(e));
    catalog_free(cat);
    return CLI_EXIT_FAIL;
  }
  journal *j = NULL;
  if (journal_open(run, &j) == 0) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ev", json_object_new_string("up"));
    json_object_object_add(o, "config", json_object_new_string(config));
    json_object_object_add(o, "catalog", json_object_new_string(cfg.catalog));
    json_object_object_add(o, "provider", json_object_new_string("local"));
    journal_append(j, o);
    json_object_put(o);
    journal_sync(j);
    journal_close(j);
  }
  char bin[PATH_MAX + 16];
  snprintf(bin, sizeof bin, "%s/paramount", cli_self_dir());
  provider_opts po = {.run_dir = run, .cat = cat, .paramount_bin = bin,
                      .force = force || cfg.force};
  provider *p = NULL;
  if (provider_open(cfg.provider, &po, &p, err, sizeof err)) {
    cli_error("up", "%s", err);
    goto done_cat;
  }
  printf("run: %s\n", run);
  fflush(stdout);
  static provider_node nodes[UP_NODES_MAX];
  size_t n = 0;
  double t0 = clock_real_s();
  for (size_t g = 0; g < cfg.ngroups; g++) {
    if (p->ops->start(p, cfg.groups[g].type, cfg.groups[g].count, nodes + n)) {
      cli_error("up", "%s", p->err);
      goto fail_down;
    }
    n += cfg.groups[g].count;
  }
  const char *paths[RUN_CONFIG_STAGE_MAX];
  for (size_t s = 0; s < cfg.nstage; s++) paths[s] = cfg.stage[s];
  printf("%-6s %-12s %5s %8s %8s %8s %10s  %s\n", "NODE", "TYPE", "CPU", "BOOT_S",
         "STAGE_S", "SETUP_S", "STAGED_B", "STATE");
  for (size_t i = 0; i < n; i++) {
    if (p->ops->stage(p, nodes[i].id, paths, cfg.nstage) ||
        p->ops->alive(p, nodes[i].id, &nodes[i]) < 0) {
      cli_error("up", "node %s: %s", nodes[i].id, p->err);
      goto fail_down;
    }
    const provider_node *x = &nodes[i];
    printf("%-6s %-12s %5.2f %8.2f %8.3f %8.2f %10.0f  %s\n", x->id, x->type,
           x->cpu_fraction, x->booted_s - x->requested_s, x->stage_s,
           x->ready_s - x->requested_s, x->stage_bytes, provider_state_name(x->state));
    fflush(stdout);
  }
  printf("cluster up: %zu node%s ready in %.2f s (throttle: %s)\n"
         "next: paramount nodes %s\n"
         "      paramount node-exec --run %s %s -- CMD\n"
         "      paramount down %s\n",
         n, n == 1 ? "" : "s", clock_real_s() - t0, n ? nodes[0].throttle : "-", run, run,
         n ? nodes[0].id : "n1", run);
  rc = CLI_EXIT_OK;
  goto done_p;
fail_down:
  /* A half-started cluster is worse than none: nobody asked for it. */
  fprintf(stderr, "paramount: up: terminating the nodes started so far\n");
  provider_local_down(run, NULL, NULL, err, sizeof err);
  rc = CLI_EXIT_FAIL;
done_p:
  provider_close(p);
done_cat:
  catalog_free(cat);
  return rc;
}
