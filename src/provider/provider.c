/* provider.c - what all providers share: opening one by name, node state
 * names, and the cost of a node so far.  Each provider lives in its own
 * file (local.c) and is reached only through its ops table.
 */
#include "provider.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paramount.h"

int provider_open(const char *name, const provider_opts *o, provider **out,
                  char *err, size_t cap) {
  *out = NULL;
  if (!name || !strcmp(name, "local")) return provider_local_open(o, out, err, cap);
  snprintf(err, cap, "unknown provider '%s' (known: local)", name);
  return PM_ENOTSUP;
}

void provider_close(provider *p) {
  if (p) p->ops->close(p);
}

void provider_argv_free(char **argv) {
  if (!argv) return;
  for (char **a = argv; *a; a++) free(*a);
  free(argv);
}

static const char *const provider_state_names[] = {
    [NODE_REQUESTED] = "requested", [NODE_BOOTING] = "booting",
    [NODE_BOOTED] = "booted",       [NODE_READY] = "ready",
    [NODE_TERMINATED] = "terminated", [NODE_FAILED] = "failed",
};

const char *provider_state_name(provider_node_state s) {
  if ((unsigned)s < sizeof provider_state_names / sizeof provider_state_names[0])
    return provider_state_names[s];
  return "unknown";
}

int provider_state_parse(const char *name) {
  for (size_t i = 0; i < sizeof provider_state_names / sizeof provider_state_names[0]; i++)
    if (name && !strcmp(name, provider_state_names[i])) return (int)i;
  return -1;
}

double provider_node_cost_usd(const provider_node *n, double now_s) {
  if (!(n->requested_s > 0)) return 0;
  double end = n->terminated_s > 0 ? n->terminated_s : now_s;
  catalog_type t = {
      .price_usd_per_hour = n->price_usd_per_hour,
      .billing_granularity_s = n->billing_granularity_s,
      .billing_minimum_s = n->billing_minimum_s,
  };
  return catalog_cost_usd(&t, end - n->requested_s);
}

int provider_run_dir_resolve(const char *arg, char *dir, size_t cap, char *err,
                             size_t ecap) {
  char path[PATH_MAX], probe[PATH_MAX + 32];
  if (arg) {
    if (!realpath(arg, path)) {
      snprintf(err, ecap, "run directory '%s' does not exist", arg);
      return PM_ENOENT;
    }
  } else {
    /* Run names start with YYYYmmdd-HHMMSS, so the greatest is newest. */
    DIR *d = opendir("runs");
    struct dirent *de;
    char best[256] = "";
    while (d && (de = readdir(d))) {
      if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof best) continue;
      snprintf(probe, sizeof probe, "runs/%s/journal.jsonl", de->d_name);
      if (access(probe, F_OK) == 0 && strcmp(de->d_name, best) > 0)
        snprintf(best, sizeof best, "%s", de->d_name);
    }
    if (d) closedir(d);
    if (!best[0]) {
      snprintf(err, ecap, "no run given and none under ./runs");
      return PM_ENOENT;
    }
    snprintf(probe, sizeof probe, "runs/%s", best);
    if (!realpath(probe, path)) {
      snprintf(err, ecap, "cannot resolve %s", probe);
      return PM_ENOENT;
    }
  }
  if (snprintf(probe, sizeof probe, "%s/journal.jsonl", path) >= (int)sizeof probe ||
      access(probe, F_OK) != 0) {
    snprintf(err, ecap, "'%s' is not a run directory (no journal.jsonl)", arg ? arg : path);
    return PM_ENOENT;
  }
  if (strlen(path) >= cap) {
    snprintf(err, ecap, "run directory path too long");
    return PM_EINVAL;
  }
  memcpy(dir, path, strlen(path) + 1);
  return 0;
}
