/* catalog.c - see catalog.h.  libyaml's document API keeps a start mark on
 * every node, which is what lets each error name its line; validation
 * happens while walking the tree so the first problem found is the one
 * reported, at its own line.
 */
#include "catalog.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "common/util.h"
#include "paramount.h"

#define CATALOG_FILE_MAX (1024 * 1024)

typedef struct {
  const char *file;
  char *err;
  size_t cap;
  yaml_document_t *doc;
} catalog_ctx;

static int catalog_fail(catalog_ctx *c, const yaml_node_t *at,
                        const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int catalog_fail(catalog_ctx *c, const yaml_node_t *at,
                        const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* Names quoted from the file may hold newlines or escapes (fuzz_catalog
   * found one): the message stays one printable line. */
  for (char *p = msg; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
  if (at)
    snprintf(c->err, c->cap, "%s:%zu: %s", c->file,
             (size_t)at->start_mark.line + 1, msg);
  else
    snprintf(c->err, c->cap, "%s: %s", c->file, msg);
  return PM_EPARSE;
}

static const char *catalog_scalar(const yaml_node_t *n) {
  if (!n || n->type != YAML_SCALAR_NODE) return NULL;
  return (const char *)n->data.scalar.value;
}

/* A finite number from a scalar node; PM_EPARSE with a message naming the
 * type and field otherwise. */
static int catalog_number(catalog_ctx *c, const yaml_node_t *v,
                          const char *type, const char *field, double *out) {
  const char *s = catalog_scalar(v);
  if (!s || !*s)
    return catalog_fail(c, v, "type '%s': field '%s': must be a number", type,
                        field);
  errno = 0;
  char *end;
  double d = strtod(s, &end);
  if (errno || *end || !isfinite(d))
    return catalog_fail(c, v, "type '%s': field '%s': must be a number, got '%s'",
                        type, field, s);
  *out = d;
  return 0;
}

/* Field bits, to find missing and duplicate fields. */
enum {
  F_NAME = 1 << 0,
  F_PRICE = 1 << 1,
  F_VCPUS = 1 << 2,
  F_MEM = 1 << 3,
  F_GRAN = 1 << 4,
  F_MIN = 1 << 5,
  F_LOCAL = 1 << 6,
  F_FRAC = 1 << 7,
  F_MEMLIM = 1 << 8,
  F_BOOT = 1 << 9,
};

static int catalog_local_parse(catalog_ctx *c, const yaml_node_t *map,
                               catalog_type *t, unsigned *seen) {
  if (map->type != YAML_MAPPING_NODE)
    return catalog_fail(c, map, "type '%s': field 'local': must be a mapping",
                        t->name);
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
       p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
    const char *key = catalog_scalar(k);
    if (!key) return catalog_fail(c, k, "type '%s': 'local' keys must be strings", t->name);
    unsigned bit;
    double *dst;
    if (!strcmp(key, "cpu_fraction")) bit = F_FRAC, dst = &t->cpu_fraction;
    else if (!strcmp(key, "memory_limit_mib")) bit = F_MEMLIM, dst = &t->memory_limit_mib;
    else if (!strcmp(key, "boot_delay_s")) bit = F_BOOT, dst = &t->boot_delay_s;
    else
      return catalog_fail(c, k,
                          "type '%s': field 'local.%s': unknown field (known: "
                          "cpu_fraction, memory_limit_mib, boot_delay_s)",
                          t->name, key);
    char field[64];
    snprintf(field, sizeof field, "local.%s", key);
    if (*seen & bit)
      return catalog_fail(c, k, "type '%s': field '%s': given twice", t->name, field);
    *seen |= bit;
    int rc = catalog_number(c, v, t->name, field, dst);
    if (rc) return rc;
    if (bit == F_FRAC && !(*dst > 0 && *dst <= 64))
      return catalog_fail(c, v, "type '%s': field '%s': must be > 0 and <= 64 (host cores)",
                          t->name, field);
    if (bit == F_MEMLIM && !(*dst >= 16))
      return catalog_fail(c, v, "type '%s': field '%s': must be >= 16", t->name, field);
    if (bit == F_BOOT && !(*dst >= 0 && *dst <= 3600))
      return catalog_fail(c, v, "type '%s': field '%s': must be >= 0 and <= 3600",
                          t->name, field);
  }
  return 0;
}

static int catalog_type_parse(catalog_ctx *c, const yaml_node_t *map,
                              catalog_type *t) {
  if (map->type != YAML_MAPPING_NODE)
    return catalog_fail(c, map, "each entry of 'types' must be a mapping");
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "?");
  /* The name first, so that every later message can say which type. */
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
       p < map->data.mapping.pairs.top; p++) {
    const char *key = catalog_scalar(yaml_document_get_node(c->doc, p->key));
    if (!key || strcmp(key, "name")) continue;
    yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
    const char *s = catalog_scalar(v);
    if (!s || !*s)
      return catalog_fail(c, v, "field 'name': must be a non-empty string");
    if (strlen(s) >= sizeof t->name)
      return catalog_fail(c, v, "field 'name': longer than %zu bytes", sizeof t->name - 1);
    for (const char *q = s; *q; q++)
      if (!(isalnum((unsigned char)*q) || *q == '.' || *q == '-' || *q == '_'))
        return catalog_fail(c, v, "type '%s': field 'name': only letters, digits, '.', '-', '_'", s);
    snprintf(t->name, sizeof t->name, "%s", s);
  }
  unsigned seen = 0;
  t->billing_granularity_s = 1;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
       p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
    const char *key = catalog_scalar(k);
    if (!key) return catalog_fail(c, k, "type '%s': keys must be strings", t->name);
    unsigned bit;
    double *dst = NULL, vcpus = 0;
    if (!strcmp(key, "name")) bit = F_NAME;
    else if (!strcmp(key, "price_usd_per_hour")) bit = F_PRICE, dst = &t->price_usd_per_hour;
    else if (!strcmp(key, "vcpus")) bit = F_VCPUS, dst = &vcpus;
    else if (!strcmp(key, "memory_gib")) bit = F_MEM, dst = &t->memory_gib;
    else if (!strcmp(key, "billing_granularity_s")) bit = F_GRAN, dst = &t->billing_granularity_s;
    else if (!strcmp(key, "billing_minimum_s")) bit = F_MIN, dst = &t->billing_minimum_s;
    else if (!strcmp(key, "local")) bit = F_LOCAL;
    else
      return catalog_fail(c, k,
                          "type '%s': field '%s': unknown field (known: name, "
                          "price_usd_per_hour, vcpus, memory_gib, "
                          "billing_granularity_s, billing_minimum_s, local)",
                          t->name, key);
    if (seen & bit)
      return catalog_fail(c, k, "type '%s': field '%s': given twice", t->name, key);
    seen |= bit;
    if (bit == F_LOCAL) {
      int rc = catalog_local_parse(c, v, t, &seen);
      if (rc) return rc;
      continue;
    }
    if (!dst) continue;
    int rc = catalog_number(c, v, t->name, key, dst);
    if (rc) return rc;
    if (bit == F_PRICE && !(*dst >= 0))
      return catalog_fail(c, v, "type '%s': field '%s': must be >= 0", t->name, key);
    if (bit == F_VCPUS) {
      if (!(vcpus >= 1 && vcpus <= 4096 && vcpus == floor(vcpus)))
        return catalog_fail(c, v, "type '%s': field '%s': must be an integer >= 1",
                            t->name, key);
      t->vcpus = (unsigned)vcpus;
    }
    if (bit == F_MEM && !(*dst > 0))
      return catalog_fail(c, v, "type '%s': field '%s': must be > 0", t->name, key);
    if (bit == F_GRAN && !(*dst >= 1))
      return catalog_fail(c, v, "type '%s': field '%s': must be >= 1", t->name, key);
    if (bit == F_MIN && !(*dst >= 0))
      return catalog_fail(c, v, "type '%s': field '%s': must be >= 0", t->name, key);
  }
  static const struct {
    unsigned bit;
    const char *field;
  } required[] = {
      {F_NAME, "name"},
      {F_PRICE, "price_usd_per_hour"},
      {F_VCPUS, "vcpus"},
      {F_MEM, "memory_gib"},
      {F_LOCAL, "local"},
      {F_FRAC, "local.cpu_fraction"},
      {F_MEMLIM, "local.memory_limit_mib"},
      {F_BOOT, "local.boot_delay_s"},
  };
  for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
    if (!(seen & required[i].bit))
      return catalog_fail(c, map, "type '%s': field '%s': missing", t->name,
                          required[i].field);
  return 0;
}

int catalog_parse(const char *name, const char *text, size_t len,
                  catalog **out, char *err, size_t cap) {
  *out = NULL;
  if (cap) err[0] = '\0';
  catalog_ctx c = {.file = name, .err = err, .cap = cap};
  catalog *cat = calloc(1, sizeof *cat);
  if (!cat) return catalog_fail(&c, NULL, "out of memory"), PM_ENOMEM;
  snprintf(cat->path, sizeof cat->path, "%s", name);
  yaml_parser_t parser;
  yaml_document_t doc;
  int rc = PM_EPARSE;
  if (!yaml_parser_initialize(&parser)) {
    rc = PM_ENOMEM;
    goto fail_cat;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, &doc)) {
    snprintf(err, cap, "%s:%zu: malformed YAML: %s", name,
             (size_t)parser.problem_mark.line + 1,
             parser.problem ? parser.problem : "parse error");
    goto fail_parser;
  }
  c.doc = &doc;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root) {
    catalog_fail(&c, NULL, "empty catalog: expected a mapping with 'types'");
    goto fail_doc;
  }
  if (root->type != YAML_MAPPING_NODE) {
    catalog_fail(&c, root, "expected a mapping with 'types'");
    goto fail_doc;
  }
  yaml_node_t *types = NULL;
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
       p < root->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(&doc, p->key);
    const char *key = catalog_scalar(k);
    if (key && !strcmp(key, "types") && !types) {
      types = yaml_document_get_node(&doc, p->value);
      continue;
    }
    catalog_fail(&c, k, "field '%s': %s", key ? key : "?",
                 key && !strcmp(key, "types") ? "given twice"
                                              : "unknown top-level field (known: types)");
    goto fail_doc;
  }
  if (!types || types->type != YAML_SEQUENCE_NODE ||
      types->data.sequence.items.top == types->data.sequence.items.start) {
    catalog_fail(&c, types ? types : root, "field 'types': must be a non-empty list");
    goto fail_doc;
  }
  for (yaml_node_item_t *it = types->data.sequence.items.start;
       it < types->data.sequence.items.top; it++) {
    yaml_node_t *tn = yaml_document_get_node(&doc, *it);
    if (cat->ntypes == CATALOG_MAX_TYPES) {
      catalog_fail(&c, tn, "more than %d types", CATALOG_MAX_TYPES);
      goto fail_doc;
    }
    catalog_type *t = &cat->types[cat->ntypes];
    if (catalog_type_parse(&c, tn, t)) goto fail_doc;
    if (catalog_find(cat, t->name)) {
      catalog_fail(&c, tn, "type '%s': field 'name': duplicate type", t->name);
      goto fail_doc;
    }
    cat->ntypes++;
  }
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  *out = cat;
  return 0;
fail_doc:
  yaml_document_delete(&doc);
fail_parser:
  yaml_parser_delete(&parser);
fail_cat:
  free(cat);
  return rc;
}

int catalog_load(const char *path, catalog **out, char *err, size_t cap) {
  *out = NULL;
  char *text = NULL;
  size_t len = 0;
  int rc = util_read_file(path, CATALOG_FILE_MAX, &text, &len);
  if (rc) {
    snprintf(err, cap, "%s: cannot read catalog: %s", path,
             rc == PM_ENOENT ? "no such file" : pm_strerror(rc));
    return rc;
  }
  rc = catalog_parse(path, text, len, out, err, cap);
  free(text);
  return rc;
}

void catalog_free(catalog *c) { free(c); }

const catalog_type *catalog_find(const catalog *c, const char *name) {
  for (size_t i = 0; i < c->ntypes; i++)
    if (!strcmp(c->types[i].name, name)) return &c->types[i];
  return NULL;
}

int catalog_default_path(char *path, size_t cap) {
  const char *env = getenv("PARAMOUNT_CATALOG");
  if (env && *env) {
    snprintf(path, cap, "%s", env);
    return access(path, R_OK) == 0 ? 0 : PM_ENOENT;
  }
  char dir[PATH_MAX];
  if (util_self_dir(dir, sizeof dir) == 0) {
    snprintf(path, cap, "%s/../share/paramount/catalogs/default.yaml", dir);
    if (access(path, R_OK) == 0) return 0;
  }
#ifdef PM_SOURCE_DIR
  snprintf(path, cap, "%s/catalogs/default.yaml", PM_SOURCE_DIR);
  if (access(path, R_OK) == 0) return 0;
#endif
  return PM_ENOENT;
}

double catalog_cost_usd(const catalog_type *t, double elapsed_s) {
  if (!(elapsed_s > 0)) elapsed_s = 0;
  double g = t->billing_granularity_s >= 1 ? t->billing_granularity_s : 1;
  double billed = ceil(elapsed_s / g - 1e-9) * g;
  if (billed < t->billing_minimum_s) billed = t->billing_minimum_s;
  return billed / 3600.0 * t->price_usd_per_hour;
}
