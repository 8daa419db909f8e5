/* provider.c - what all providers share: opening one by name, node state
 * names, and the cost of a node so far.  Each provider lives in its own
 * file (local.c) and is reached only through its ops table.
 */
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
