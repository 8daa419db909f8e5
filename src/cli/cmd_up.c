/* cmd_up.c - `paramount up CONFIG`: start a cluster without a job.
 *
 * Reads the cluster config (docs/config.md), starts every node, stages the
 * listed files onto each, prints boot, staging and setup times, and leaves
 * the cluster running for `paramount nodes` / `node-exec` / `down`.  The
 * config's `job` and `policy` sections belong to `paramount run`; they are
 * accepted here and ignored, with a note.
 */
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cli.h"
#include "common/journal.h"
#include "common/util.h"
#include "paramount.h"
#include "provider/provider.h"

#define UP_CONFIG_MAX (1024 * 1024)
#define UP_GROUPS_MAX 32
#define UP_STAGE_MAX 64
#define UP_NODES_MAX 256

typedef struct {
  char type[CATALOG_NAME_MAX];
  unsigned count;
  size_t line;
} up_group;

typedef struct {
  char provider[32];
  char catalog[PATH_MAX];
  int force;
  up_group groups[UP_GROUPS_MAX];
  size_t ngroups;
  char stage[UP_STAGE_MAX][PATH_MAX];
  size_t nstage;
  int has_job, has_policy;
} up_config;

typedef struct {
  const char *file;
  char *err;
  size_t cap;
  yaml_document_t *doc;
} up_ctx;

static int up_fail(up_ctx *c, const yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int up_fail(up_ctx *c, const yaml_node_t *at, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(c->err, c->cap, "%s:%zu: %s", c->file,
           at ? (size_t)at->start_mark.line + 1 : (size_t)1, msg);
  return PM_EPARSE;
}

static const char *up_scalar(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* Paths in a config are relative to the config file's directory. */
static int up_path(up_ctx *c, const yaml_node_t *v, const char *field, char *out,
                   size_t cap) {
  const char *s = up_scalar(v);
  if (!s || !*s) return up_fail(c, v, "field '%s': must be a path", field);
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", c->file);
  char *slash = strrchr(dir, '/');
  if (s[0] == '/' || !slash) {
    if (snprintf(out, cap, "%s", s) >= (int)cap) return up_fail(c, v, "field '%s': too long", field);
  } else {
    *slash = '\0';
    if (snprintf(out, cap, "%s/%s", dir, s) >= (int)cap)
      return up_fail(c, v, "field '%s': too long", field);
  }
  return 0;
}

static int up_cluster_parse(up_ctx *c, yaml_node_t *seq, up_config *cfg) {
  if (seq->type != YAML_SEQUENCE_NODE || seq->data.sequence.items.start == seq->data.sequence.items.top)
    return up_fail(c, seq, "field 'cluster': must be a non-empty list of {type, count}");
  for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
    yaml_node_t *m = yaml_document_get_node(c->doc, *it);
    if (m->type != YAML_MAPPING_NODE)
      return up_fail(c, m, "field 'cluster': each entry must be a mapping {type, count}");
    if (cfg->ngroups == UP_GROUPS_MAX) return up_fail(c, m, "field 'cluster': too many entries");
    up_group *g = &cfg->groups[cfg->ngroups];
    memset(g, 0, sizeof *g);
    g->line = m->start_mark.line + 1;
    int have_type = 0, have_count = 0;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
      yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
      yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
      const char *key = up_scalar(k), *val = up_scalar(v);
      if (key && !strcmp(key, "type")) {
        if (!val || !*val || strlen(val) >= sizeof g->type)
          return up_fail(c, v, "field 'cluster.type': must be a type name");
        snprintf(g->type, sizeof g->type, "%s", val);
        have_type = 1;
      } else if (key && !strcmp(key, "count")) {
        char *end;
        errno = 0;
        long n = val ? strtol(val, &end, 10) : -1;
        if (!val || errno || *end || n < 1 || n > UP_NODES_MAX)
          return up_fail(c, v, "field 'cluster.count': must be an integer from 1 to %d",
                         UP_NODES_MAX);
        g->count = (unsigned)n;
        have_count = 1;
      } else {
        return up_fail(c, k, "field 'cluster.%s': unknown field (known: type, count)",
                       key ? key : "?");
      }
    }
    if (!have_type) return up_fail(c, m, "field 'cluster.type': missing");
    if (!have_count) g->count = 1;
    cfg->ngroups++;
  }
  return 0;
}

static int up_config_load(const char *path, up_config *cfg, char *err, size_t cap) {
  memset(cfg, 0, sizeof *cfg);
  snprintf(cfg->provider, sizeof cfg->provider, "local");
  char *text = NULL;
  size_t len = 0;
  int rc = util_read_file(path, UP_CONFIG_MAX, &text, &len);
  if (rc) {
    snprintf(err, cap, "%s: cannot read config: %s", path,
             rc == PM_ENOENT ? "no such file" : pm_strerror(rc));
    return rc;
  }
  up_ctx c = {.file = path, .err = err, .cap = cap};
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) {
    free(text);
    return PM_ENOMEM;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  rc = PM_EPARSE;
  if (!yaml_parser_load(&parser, &doc)) {
    snprintf(err, cap, "%s:%zu: malformed YAML: %s", path,
             (size_t)parser.problem_mark.line + 1, parser.problem ? parser.problem : "?");
    goto done_parser;
  }
  c.doc = &doc;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root || root->type != YAML_MAPPING_NODE) {
    up_fail(&c, root, "expected a mapping with 'cluster'");
    goto done_doc;
  }
  int have_cluster = 0;
  rc = 0;
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
       !rc && p < root->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(&doc, p->key);
    yaml_node_t *v = yaml_document_get_node(&doc, p->value);
    const char *key = up_scalar(k), *val = up_scalar(v);
    if (!key) rc = up_fail(&c, k, "top-level keys must be strings");
    else if (!strcmp(key, "provider")) {
      if (!val || strcmp(val, "local"))
        rc = up_fail(&c, v, "field 'provider': '%s' is not supported (known: local)",
                     val ? val : "?");
    } else if (!strcmp(key, "catalog")) {
      rc = up_path(&c, v, "catalog", cfg->catalog, sizeof cfg->catalog);
    } else if (!strcmp(key, "force")) {
      if (val && (!strcmp(val, "true") || !strcmp(val, "yes"))) cfg->force = 1;
      else if (val && (!strcmp(val, "false") || !strcmp(val, "no"))) cfg->force = 0;
      else rc = up_fail(&c, v, "field 'force': must be true or false");
    } else if (!strcmp(key, "stage")) {
      if (v->type != YAML_SEQUENCE_NODE) {
        rc = up_fail(&c, v, "field 'stage': must be a list of paths");
        break;
      }
      for (yaml_node_item_t *it = v->data.sequence.items.start;
           !rc && it < v->data.sequence.items.top; it++) {
        if (cfg->nstage == UP_STAGE_MAX) {
          rc = up_fail(&c, v, "field 'stage': more than %d paths", UP_STAGE_MAX);
          break;
        }
        rc = up_path(&c, yaml_document_get_node(&doc, *it), "stage",
                     cfg->stage[cfg->nstage], PATH_MAX);
        if (!rc) cfg->nstage++;
      }
    } else if (!strcmp(key, "cluster")) {
      rc = up_cluster_parse(&c, v, cfg);
      have_cluster = 1;
    } else if (!strcmp(key, "job")) {
      cfg->has_job = 1;
    } else if (!strcmp(key, "policy")) {
      cfg->has_policy = 1;
    } else {
      rc = up_fail(&c, k,
                   "field '%s': unknown top-level field (known: provider, catalog, "
                   "cluster, force, stage, job, policy)",
                   key);
    }
  }
  if (!rc && !have_cluster) rc = up_fail(&c, root, "field 'cluster': missing");
done_doc:
  yaml_document_delete(&doc);
done_parser:
  yaml_parser_delete(&parser);
  free(text);
  return rc;
}

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
  static up_config cfg;
  char err[2048] = "";
  if (up_config_load(config, &cfg, err, sizeof err)) {
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
  if (catalog_load(cfg.catalog, &cat, err, sizeof err)) {
    cli_error("up", "%s", err);
    return CLI_EXIT_USAGE;
  }
  unsigned total = 0;
  for (size_t g = 0; g < cfg.ngroups; g++) {
    if (!catalog_find(cat, cfg.groups[g].type)) {
      cli_error("up", "%s:%zu: field 'cluster.type': '%s' is not in catalog %s", config,
                cfg.groups[g].line, cfg.groups[g].type, cfg.catalog);
      catalog_free(cat);
      return CLI_EXIT_USAGE;
    }
    total += cfg.groups[g].count;
  }
  if (total > UP_NODES_MAX) {
    cli_error("up", "%s: %u nodes requested, at most %d", config, total, UP_NODES_MAX);
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
  const char *paths[UP_STAGE_MAX];
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
