/* config.c - loads and validates the run configuration (config.h) with
 * libyaml's document API, so that every error can name the line of the
 * offending node.  Unknown keys are errors: a misspelt `max_node` that is
 * silently ignored would let the policy run with bounds nobody chose.
 */
#include "controller/config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/util.h"
#include "paramount.h"

typedef struct {
  const char *file;
  char *err;
  size_t cap;
  yaml_document_t *doc;
} config_ctx;

static int config_fail(config_ctx *c, const yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int config_fail(config_ctx *c, const yaml_node_t *at, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* Values quoted from the file may hold newlines or escapes: the
   * message stays one printable line (docs/security.md). */
  for (char *p = msg; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
  snprintf(c->err, c->cap, "%s:%zu: %s", c->file,
           at ? (size_t)at->start_mark.line + 1 : (size_t)1, msg);
  return PM_EPARSE;
}

static const char *config_scalar(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *config_node(config_ctx *c, int id) {
  return yaml_document_get_node(c->doc, id);
}

/* Paths in a config are relative to the config file's directory. */
static int config_path(config_ctx *c, const yaml_node_t *v, const char *field, char *out,
                       size_t cap) {
  const char *s = config_scalar(v);
  if (!s || !*s) return config_fail(c, v, "field '%s': must be a path", field);
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", c->file);
  char *slash = strrchr(dir, '/');
  int n;
  if (s[0] == '/' || !slash) {
    n = snprintf(out, cap, "%s", s);
  } else {
    *slash = '\0';
    n = snprintf(out, cap, "%s/%s", dir, s);
  }
  if (n < 0 || (size_t)n >= cap) return config_fail(c, v, "field '%s': path too long", field);
  return 0;
}

static int config_bool(config_ctx *c, const yaml_node_t *v, const char *field, int *out) {
  const char *s = config_scalar(v);
  if (s && (!strcmp(s, "true") || !strcmp(s, "yes"))) *out = 1;
  else if (s && (!strcmp(s, "false") || !strcmp(s, "no"))) *out = 0;
  else return config_fail(c, v, "field '%s': must be true or false", field);
  return 0;
}

/* A finite number in [lo, hi]. */
static int config_num(config_ctx *c, const yaml_node_t *v, const char *field, double lo,
                      double hi, double *out) {
  const char *s = config_scalar(v);
  char *end = NULL;
  errno = 0;
  double x = s && *s ? strtod(s, &end) : NAN;
  if (!s || !*s || errno || *end || !isfinite(x))
    return config_fail(c, v, "field '%s': must be a number, got '%s'", field, s ? s : "?");
  if (x < lo || x > hi)
    return config_fail(c, v, "field '%s': %g is out of range [%g, %g]", field, x, lo, hi);
  *out = x;
  return 0;
}

static int config_uint(config_ctx *c, const yaml_node_t *v, const char *field,
                       unsigned long long lo, unsigned long long hi,
                       unsigned long long *out) {
  const char *s = config_scalar(v);
  char *end = NULL;
  errno = 0;
  unsigned long long x = s && *s && *s != '-' ? strtoull(s, &end, 10) : 0;
  if (!s || !*s || *s == '-' || errno || *end || x < lo || x > hi)
    return config_fail(c, v, "field '%s': must be an integer from %llu to %llu, got '%s'",
                       field, lo, hi, s ? s : "?");
  *out = x;
  return 0;
}

static int config_str(config_ctx *c, const yaml_node_t *v, const char *field, char *out,
                      size_t cap) {
  const char *s = config_scalar(v);
  if (!s || !*s) return config_fail(c, v, "field '%s': must be a non-empty string", field);
  if (strlen(s) >= cap) return config_fail(c, v, "field '%s': longer than %zu bytes", field, cap - 1);
  memcpy(out, s, strlen(s) + 1);
  return 0;
}

/* An argv list: a YAML sequence of scalars, never one shell string. */
static int config_argv(config_ctx *c, const yaml_node_t *v, const char *field,
                       char out[][RUN_CONFIG_ARG_MAX], size_t *n, int allow_empty) {
  if (v->type != YAML_SEQUENCE_NODE)
    return config_fail(c, v,
                       "field '%s': must be a list of arguments, e.g. [prog, --opt, value] "
                       "(no shell string)",
                       field);
  *n = 0;
  for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
       it++) {
    yaml_node_t *a = config_node(c, *it);
    const char *s = config_scalar(a);
    if (!s) return config_fail(c, a, "field '%s': every argument must be a string", field);
    if (*n == RUN_CONFIG_ARGS_MAX)
      return config_fail(c, a, "field '%s': more than %d arguments", field, RUN_CONFIG_ARGS_MAX);
    if (strlen(s) >= RUN_CONFIG_ARG_MAX)
      return config_fail(c, a, "field '%s': argument longer than %d bytes", field,
                         RUN_CONFIG_ARG_MAX - 1);
    memcpy(out[*n], s, strlen(s) + 1);
    (*n)++;
  }
  if (!*n && !allow_empty) return config_fail(c, v, "field '%s': must not be empty", field);
  return 0;
}

static int config_cluster(config_ctx *c, yaml_node_t *seq, run_config *cfg) {
  cfg->cluster_line = seq->start_mark.line + 1;
  if (seq->type != YAML_SEQUENCE_NODE ||
      seq->data.sequence.items.start == seq->data.sequence.items.top)
    return config_fail(c, seq, "field 'cluster': must be a non-empty list of {type, count}");
  for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
       it++) {
    yaml_node_t *m = config_node(c, *it);
    if (m->type != YAML_MAPPING_NODE)
      return config_fail(c, m, "field 'cluster': each entry must be a mapping {type, count}");
    if (cfg->ngroups == RUN_CONFIG_GROUPS_MAX)
      return config_fail(c, m, "field 'cluster': more than %d entries", RUN_CONFIG_GROUPS_MAX);
    run_config_group *g = &cfg->groups[cfg->ngroups];
    memset(g, 0, sizeof *g);
    g->line = m->start_mark.line + 1;
    g->count = 1;
    int have_type = 0;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
      yaml_node_t *k = config_node(c, p->key), *v = config_node(c, p->value);
      const char *key = config_scalar(k);
      int rc = 0;
      if (key && !strcmp(key, "type")) {
        rc = config_str(c, v, "cluster.type", g->type, sizeof g->type);
        have_type = 1;
      } else if (key && !strcmp(key, "count")) {
        unsigned long long n;
        rc = config_uint(c, v, "cluster.count", 1, RUN_CONFIG_NODES_MAX, &n);
        g->count = (unsigned)n;
      } else {
        rc = config_fail(c, k, "field 'cluster.%s': unknown field (known: type, count)",
                         key ? key : "?");
      }
      if (rc) return rc;
    }
    if (!have_type) return config_fail(c, m, "field 'cluster.type': missing");
    cfg->ngroups++;
  }
  return 0;
}

static int config_job(config_ctx *c, yaml_node_t *m, run_config *cfg) {
  cfg->has_job = 1;
  cfg->job_line = m->start_mark.line + 1;
  if (m->type != YAML_MAPPING_NODE)
    return config_fail(c, m, "field 'job': must be a mapping with 'command'");
  int have_command = 0;
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
    yaml_node_t *k = config_node(c, p->key), *v = config_node(c, p->value);
    const char *key = config_scalar(k);
    int rc = 0;
    if (!key) {
      rc = config_fail(c, k, "field 'job': keys must be strings");
    } else if (!strcmp(key, "command")) {
      rc = config_argv(c, v, "job.command", cfg->command, &cfg->ncommand, 0);
      have_command = 1;
    } else if (!strcmp(key, "resume")) {
      rc = config_argv(c, v, "job.resume", cfg->resume, &cfg->nresume, 0);
      int has_token = 0;
      for (size_t i = 0; !rc && i < cfg->nresume; i++)
        if (strstr(cfg->resume[i], RUN_CONFIG_CHECKPOINT_TOKEN)) has_token = 1;
      if (!rc && !has_token)
        rc = config_fail(c, v, "field 'job.resume': no argument holds '%s' (the checkpoint path)",
                         RUN_CONFIG_CHECKPOINT_TOKEN);
    } else if (!strcmp(key, "iterations")) {
      rc = config_uint(c, v, "job.iterations", 1, 1ULL << 50, &cfg->iterations);
    } else if (!strcmp(key, "batch")) {
      rc = config_num(c, v, "job.batch", 1e-9, 1e15, &cfg->batch);
    } else if (!strcmp(key, "scaling")) {
      const char *s = config_scalar(v);
      if (s && !strcmp(s, "global-batch")) cfg->scaling = RUN_SCALING_GLOBAL_BATCH;
      else if (s && !strcmp(s, "rank-batch")) cfg->scaling = RUN_SCALING_RANK_BATCH;
      else
        rc = config_fail(c, v, "field 'job.scaling': '%s' is not known (known: global-batch, "
                         "rank-batch)", s ? s : "?");
    } else if (!strcmp(key, "stop_timeout_s")) {
      rc = config_num(c, v, "job.stop_timeout_s", 1, 86400, &cfg->stop_timeout_s);
    } else if (!strcmp(key, "checkpoint_every")) {
      rc = config_uint(c, v, "job.checkpoint_every", 1, 1ULL << 50, &cfg->checkpoint_every);
    } else if (!strcmp(key, "checkpoint_dir")) {
      rc = config_path(c, v, "job.checkpoint_dir", cfg->checkpoint_dir,
                       sizeof cfg->checkpoint_dir);
    } else if (!strcmp(key, "heartbeat_timeout_s")) {
      rc = config_num(c, v, "job.heartbeat_timeout_s", RUN_CONFIG_HEARTBEAT_TIMEOUT_MIN_S, 86400,
                      &cfg->heartbeat_timeout_s);
    } else {
      rc = config_fail(c, k,
                       "field 'job.%s': unknown field (known: command, resume, iterations, "
                       "batch, scaling, stop_timeout_s, checkpoint_every, checkpoint_dir, "
                       "heartbeat_timeout_s)",
                       key);
    }
    if (rc) return rc;
  }
  if (!have_command) return config_fail(c, m, "field 'job.command': missing");
  return 0;
}

static int config_policy(config_ctx *c, yaml_node_t *m, run_config *cfg,
                         yaml_node_t **objective_at, yaml_node_t **bounds_at) {
  cfg->has_policy = 1;
  if (m->type != YAML_MAPPING_NODE) return config_fail(c, m, "field 'policy': must be a mapping");
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
    yaml_node_t *k = config_node(c, p->key), *v = config_node(c, p->value);
    const char *key = config_scalar(k), *s = config_scalar(v);
    int rc = 0;
    unsigned long long u;
    if (!key) {
      rc = config_fail(c, k, "field 'policy': keys must be strings");
    } else if (!strcmp(key, "name")) {
      if (s && (!strcmp(s, "paramount") || !strcmp(s, "static") || !strcmp(s, "clap-bot")))
        snprintf(cfg->policy_name, sizeof cfg->policy_name, "%s", s);
      else
        rc = config_fail(c, v, "field 'policy.name': '%s' is not known (known: paramount, "
                         "static, clap-bot)", s ? s : "?");
    } else if (!strcmp(key, "objective")) {
      *objective_at = v;
      if (s && (!strcmp(s, "min-cost") || !strcmp(s, "min-time") ||
                !strcmp(s, "min-cost-deadline") || !strcmp(s, "min-time-budget")))
        snprintf(cfg->objective, sizeof cfg->objective, "%s", s);
      else
        rc = config_fail(c, v, "field 'policy.objective': '%s' is not known (known: min-cost, "
                         "min-time, min-cost-deadline, min-time-budget)", s ? s : "?");
    } else if (!strcmp(key, "deadline_s")) {
      rc = config_num(c, v, "policy.deadline_s", 1e-3, 1e9, &cfg->deadline_s);
    } else if (!strcmp(key, "budget_usd")) {
      rc = config_num(c, v, "policy.budget_usd", 1e-12, 1e12, &cfg->budget_usd);
    } else if (!strcmp(key, "min_nodes")) {
      *bounds_at = v;
      rc = config_uint(c, v, "policy.min_nodes", 1, 64, &u);
      cfg->min_nodes = (int)u;
    } else if (!strcmp(key, "max_nodes")) {
      *bounds_at = v;
      rc = config_uint(c, v, "policy.max_nodes", 1, 64, &u);
      cfg->max_nodes = (int)u;
    } else if (!strcmp(key, "margin")) {
      rc = config_num(c, v, "policy.margin", 0, 10, &cfg->margin);
    } else if (!strcmp(key, "confidence")) {
      rc = config_num(c, v, "policy.confidence", 0.5, 0.9999, &cfg->confidence);
    } else if (!strcmp(key, "interval_s")) {
      rc = config_num(c, v, "policy.interval_s", 0.1, 86400, &cfg->interval_s);
    } else if (!strcmp(key, "early_pis")) {
      rc = config_uint(c, v, "policy.early_pis", 0, 1000, &u);
      cfg->early_pis = (unsigned)u;
    } else if (!strcmp(key, "early_margin")) {
      rc = config_num(c, v, "policy.early_margin", 0, 10, &cfg->early_margin);
    } else {
      rc = config_fail(c, k,
                       "field 'policy.%s': unknown field (known: name, objective, deadline_s, "
                       "budget_usd, min_nodes, max_nodes, margin, confidence, interval_s, "
                       "early_pis, early_margin)",
                       key);
    }
    if (rc) return rc;
  }
  return 0;
}

/* Cross-field rules: an objective with a constraint needs it, and a
 * constraint nobody's objective uses is a mistake, not a no-op. */
static int config_policy_check(config_ctx *c, run_config *cfg, yaml_node_t *policy,
                               yaml_node_t *objective_at, yaml_node_t *bounds_at) {
  yaml_node_t *at = objective_at ? objective_at : policy;
  if (!strcmp(cfg->objective, "min-cost") && cfg->deadline_s > 0)
    snprintf(cfg->objective, sizeof cfg->objective, "min-cost-deadline");
  if (!strcmp(cfg->objective, "min-time") && cfg->budget_usd > 0)
    snprintf(cfg->objective, sizeof cfg->objective, "min-time-budget");
  if (!strcmp(cfg->objective, "min-cost-deadline") && !(cfg->deadline_s > 0))
    return config_fail(c, at, "field 'policy.deadline_s': missing (objective %s needs it)",
                       cfg->objective);
  if (!strcmp(cfg->objective, "min-time-budget") && !(cfg->budget_usd > 0))
    return config_fail(c, at, "field 'policy.budget_usd': missing (objective %s needs it)",
                       cfg->objective);
  if (cfg->budget_usd > 0 && strcmp(cfg->objective, "min-time-budget"))
    return config_fail(c, at, "field 'policy.budget_usd': only the min-time objective takes a "
                       "budget (objective is %s)", cfg->objective);
  if (cfg->deadline_s > 0 && strcmp(cfg->objective, "min-cost-deadline"))
    return config_fail(c, at, "field 'policy.deadline_s': only the min-cost objective takes a "
                       "deadline (objective is %s)", cfg->objective);
  if (cfg->min_nodes && cfg->max_nodes && cfg->min_nodes > cfg->max_nodes)
    return config_fail(c, bounds_at ? bounds_at : policy,
                       "field 'policy.min_nodes': %d is above max_nodes %d", cfg->min_nodes,
                       cfg->max_nodes);
  return 0;
}

static void config_defaults(run_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  snprintf(cfg->provider, sizeof cfg->provider, "local");
  snprintf(cfg->policy_name, sizeof cfg->policy_name, "paramount");
  snprintf(cfg->objective, sizeof cfg->objective, "min-cost");
  cfg->scaling = RUN_SCALING_GLOBAL_BATCH;
  cfg->stop_timeout_s = 60;
  cfg->heartbeat_timeout_s = RUN_CONFIG_HEARTBEAT_TIMEOUT_S;
  cfg->margin = 0.05;
  cfg->confidence = 0.95;
  cfg->interval_s = 5;
  cfg->early_pis = 4;
  cfg->early_margin = 0.2;
}

int run_config_parse(const char *name, const char *text, size_t len, run_config *cfg,
                     char *err, size_t cap) {
  config_defaults(cfg);
  snprintf(cfg->path, sizeof cfg->path, "%s", name);
  config_ctx c = {.file = name, .err = err, .cap = cap};
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) return PM_ENOMEM;
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  int rc = PM_EPARSE;
  if (!yaml_parser_load(&parser, &doc)) {
    snprintf(err, cap, "%s:%zu: malformed YAML: %s", name,
             (size_t)parser.problem_mark.line + 1, parser.problem ? parser.problem : "?");
    goto done_parser;
  }
  c.doc = &doc;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root || root->type != YAML_MAPPING_NODE) {
    config_fail(&c, root, "expected a mapping with 'cluster'");
    goto done_doc;
  }
  int have_cluster = 0;
  yaml_node_t *policy = NULL, *objective_at = NULL, *bounds_at = NULL;
  rc = 0;
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
       !rc && p < root->data.mapping.pairs.top; p++) {
    yaml_node_t *k = config_node(&c, p->key), *v = config_node(&c, p->value);
    const char *key = config_scalar(k), *val = config_scalar(v);
    if (!key) {
      rc = config_fail(&c, k, "top-level keys must be strings");
    } else if (!strcmp(key, "provider")) {
      if (!val || strcmp(val, "local"))
        rc = config_fail(&c, v, "field 'provider': '%s' is not supported (known: local)",
                         val ? val : "?");
    } else if (!strcmp(key, "catalog")) {
      rc = config_path(&c, v, "catalog", cfg->catalog, sizeof cfg->catalog);
    } else if (!strcmp(key, "force")) {
      rc = config_bool(&c, v, "force", &cfg->force);
    } else if (!strcmp(key, "stage")) {
      if (v->type != YAML_SEQUENCE_NODE) {
        rc = config_fail(&c, v, "field 'stage': must be a list of paths");
        break;
      }
      for (yaml_node_item_t *it = v->data.sequence.items.start;
           !rc && it < v->data.sequence.items.top; it++) {
        if (cfg->nstage == RUN_CONFIG_STAGE_MAX) {
          rc = config_fail(&c, v, "field 'stage': more than %d paths", RUN_CONFIG_STAGE_MAX);
          break;
        }
        rc = config_path(&c, config_node(&c, *it), "stage", cfg->stage[cfg->nstage], PATH_MAX);
        if (!rc) cfg->nstage++;
      }
    } else if (!strcmp(key, "cluster")) {
      rc = config_cluster(&c, v, cfg);
      have_cluster = 1;
    } else if (!strcmp(key, "job")) {
      rc = config_job(&c, v, cfg);
    } else if (!strcmp(key, "policy")) {
      policy = v;
      rc = config_policy(&c, v, cfg, &objective_at, &bounds_at);
    } else {
      rc = config_fail(&c, k,
                       "field '%s': unknown top-level field (known: provider, catalog, "
                       "cluster, force, stage, job, policy)",
                       key);
    }
  }
  if (!rc && !have_cluster) rc = config_fail(&c, root, "field 'cluster': missing");
  if (!rc && policy) rc = config_policy_check(&c, cfg, policy, objective_at, bounds_at);
done_doc:
  yaml_document_delete(&doc);
done_parser:
  yaml_parser_delete(&parser);
  return rc;
}

int run_config_load(const char *path, run_config *cfg, char *err, size_t cap) {
  char *text = NULL;
  size_t len = 0;
  int rc = util_read_file(path, RUN_CONFIG_MAX_BYTES, &text, &len);
  if (rc) {
    snprintf(err, cap, "%s: cannot read config: %s", path,
             rc == PM_ENOENT ? "no such file" : pm_strerror(rc));
    return rc;
  }
  rc = run_config_parse(path, text, len, cfg, err, cap);
  free(text);
  return rc;
}

unsigned run_config_nodes(const run_config *cfg) {
  unsigned n = 0;
  for (size_t g = 0; g < cfg->ngroups; g++) n += cfg->groups[g].count;
  return n;
}

int run_config_check_catalog(const run_config *cfg, const catalog *cat, char *err,
                             size_t cap) {
  for (size_t g = 0; g < cfg->ngroups; g++)
    if (!catalog_find(cat, cfg->groups[g].type)) {
      snprintf(err, cap, "%s:%zu: field 'cluster.type': '%s' is not in catalog %s", cfg->path,
               cfg->groups[g].line, cfg->groups[g].type, cat->path);
      return PM_EPARSE;
    }
  unsigned total = run_config_nodes(cfg);
  if (total > RUN_CONFIG_NODES_MAX) {
    snprintf(err, cap, "%s:%zu: field 'cluster': %u nodes requested, at most %d", cfg->path,
             cfg->cluster_line, total, RUN_CONFIG_NODES_MAX);
    return PM_EPARSE;
  }
  return 0;
}
