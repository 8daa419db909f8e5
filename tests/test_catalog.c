/* test_catalog.c - the instance catalog: the default file loads and says
 * what it claims (the expected winner is neither fastest nor cheapest, the
 * seed's make-before-break fits 2 cores), and every kind of bad catalog is
 * refused with FILE:LINE and the field at fault.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "paramount.h"
#include "provider/catalog.h"
#include "test.h"

#define GOOD_TYPE(name, price)                                                 \
  "  - name: " name "\n"                                                       \
  "    price_usd_per_hour: " price "\n"                                        \
  "    vcpus: 2\n"                                                             \
  "    memory_gib: 4\n"                                                        \
  "    local:\n"                                                               \
  "      cpu_fraction: 0.25\n"                                                 \
  "      memory_limit_mib: 512\n"                                              \
  "      boot_delay_s: 1\n"

static int parse(const char *text, catalog **c, char *err, size_t cap) {
  return catalog_parse("cat.yaml", text, strlen(text), c, err, cap);
}

TEST(default_catalog_loads) {
  char path[4096], err[512];
  setenv("PARAMOUNT_CATALOG", PM_SOURCE_DIR "/catalogs/default.yaml", 1);
  ASSERT_EQ_INT(catalog_default_path(path, sizeof path), 0);
  catalog *c = NULL;
  int rc = catalog_load(path, &c, err, sizeof err);
  if (rc) fprintf(stderr, "%s\n", err);
  ASSERT_EQ_INT(rc, 0);
  ASSERT(c->ntypes >= 4);
  const catalog_type *best = NULL, *fastest = NULL, *cheapest = NULL;
  double top3[3] = {0, 0, 0};
  for (size_t i = 0; i < c->ntypes; i++) {
    const catalog_type *t = &c->types[i];
    ASSERT(t->price_usd_per_hour > 0);
    if (!best || t->cpu_fraction / t->price_usd_per_hour >
                     best->cpu_fraction / best->price_usd_per_hour)
      best = t;
    if (!fastest || t->cpu_fraction > fastest->cpu_fraction) fastest = t;
    if (!cheapest || t->price_usd_per_hour < cheapest->price_usd_per_hour) cheapest = t;
    double f = t->cpu_fraction;
    for (int k = 0; k < 3; k++)
      if (f > top3[k]) {
        double x = top3[k];
        top3[k] = f;
        f = x;
      }
  }
  ASSERT_STREQ(best->name, "c5.large");
  ASSERT(best != fastest);
  ASSERT(best != cheapest);
  /* 3 heterogeneous (the largest possible) + 3 of the winner fit 2 cores. */
  ASSERT_OP_DBL(top3[0] + top3[1] + top3[2] + 3 * best->cpu_fraction, <=, 2.0);
  catalog_free(c);
}

TEST(default_path_search_reports_missing) {
  char path[4096];
  setenv("PARAMOUNT_CATALOG", "/nonexistent/cat.yaml", 1);
  ASSERT_EQ_INT(catalog_default_path(path, sizeof path), PM_ENOENT);
  ASSERT_STREQ(path, "/nonexistent/cat.yaml");
  unsetenv("PARAMOUNT_CATALOG");
  /* From the build tree the compiled-in source path is found. */
  ASSERT_EQ_INT(catalog_default_path(path, sizeof path), 0);
  ASSERT_CONTAINS(path, "catalogs/default.yaml");
}

TEST(good_catalog_fields_and_defaults) {
  const char *y = "types:\n" GOOD_TYPE("a.small", "0.5")
                  "  - name: b.big\n"
                  "    price_usd_per_hour: 2\n"
                  "    vcpus: 8\n"
                  "    memory_gib: 32\n"
                  "    billing_granularity_s: 3600\n"
                  "    billing_minimum_s: 3600\n"
                  "    local: {cpu_fraction: 1.5, memory_limit_mib: 2048, boot_delay_s: 0}\n";
  catalog *c = NULL;
  char err[512] = "";
  ASSERT_EQ_INT(parse(y, &c, err, sizeof err), 0);
  ASSERT_EQ_INT(c->ntypes, 2);
  const catalog_type *a = catalog_find(c, "a.small"), *b = catalog_find(c, "b.big");
  ASSERT(a && b && !catalog_find(c, "zzz"));
  ASSERT_NEAR(a->billing_granularity_s, 1, 0);
  ASSERT_NEAR(a->billing_minimum_s, 0, 0);
  ASSERT_EQ_INT(b->vcpus, 8);
  ASSERT_NEAR(b->cpu_fraction, 1.5, 1e-12);
  /* Billing: per second for a; whole hours, one at least, for b. */
  ASSERT_NEAR(catalog_cost_usd(a, 10.2), 11 / 3600.0 * 0.5, 1e-12);
  ASSERT_NEAR(catalog_cost_usd(b, 10), 2.0, 1e-12);
  ASSERT_NEAR(catalog_cost_usd(b, 3601), 4.0, 1e-12);
  catalog_free(c);
}

/* Table: bad catalog -> the exact one-line error. */
static const struct {
  const char *name, *yaml, *want;
} bad_cases[] = {
    {"unknown field",
     "types:\n" GOOD_TYPE("a.small", "0.5") "    colour: blue\n",
     "cat.yaml:10: type 'a.small': field 'colour': unknown field"},
    {"unknown local field",
     "types:\n" GOOD_TYPE("a.small", "0.5") "      gpus: 1\n",
     "cat.yaml:10: type 'a.small': field 'local.gpus': unknown field"},
    {"negative price", "types:\n" GOOD_TYPE("m5.large", "-0.1"),
     "cat.yaml:3: type 'm5.large': field 'price_usd_per_hour': must be >= 0"},
    {"price not a number", "types:\n" GOOD_TYPE("m5.large", "cheap"),
     "cat.yaml:3: type 'm5.large': field 'price_usd_per_hour': must be a number, got 'cheap'"},
    {"duplicate type", "types:\n" GOOD_TYPE("a.small", "0.5") GOOD_TYPE("a.small", "0.6"),
     "cat.yaml:10: type 'a.small': field 'name': duplicate type"},
    {"missing field",
     "types:\n  - name: x\n    price_usd_per_hour: 1\n    vcpus: 2\n    memory_gib: 1\n",
     "cat.yaml:2: type 'x': field 'local': missing"},
    {"zero cpu fraction",
     "types:\n  - name: x\n    price_usd_per_hour: 1\n    vcpus: 2\n    memory_gib: 1\n"
     "    local: {cpu_fraction: 0, memory_limit_mib: 64, boot_delay_s: 0}\n",
     "cat.yaml:6: type 'x': field 'local.cpu_fraction': must be > 0"},
    {"fractional vcpus", "types:\n  - name: x\n    vcpus: 1.5\n",
     "cat.yaml:3: type 'x': field 'vcpus': must be an integer >= 1"},
    {"unknown top level", "typez: []\n", "cat.yaml:1: field 'typez': unknown top-level field"},
    {"empty types", "types: []\n", "cat.yaml:1: field 'types': must be a non-empty list"},
    {"bad yaml", "types:\n  - name: [\n", "cat.yaml:3: malformed YAML"},
    {"bad name", "types:\n  - name: 'a b'\n", "cat.yaml:2: type 'a b': field 'name': only"},
    {"field twice",
     "types:\n" GOOD_TYPE("a.small", "0.5") "    vcpus: 4\n",
     "cat.yaml:10: type 'a.small': field 'vcpus': given twice"},
};

TEST(bad_catalogs_name_file_line_field) {
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
    catalog *c = (catalog *)1;
    char err[512] = "";
    int rc = parse(bad_cases[i].yaml, &c, err, sizeof err);
    if (rc != PM_EPARSE || c != NULL || strncmp(err, bad_cases[i].want, strlen(bad_cases[i].want)))
      TEST_FAIL_("case '%s': rc %d, got \"%s\", want prefix \"%s\"", bad_cases[i].name, rc,
                 err, bad_cases[i].want);
  }
}

TEST(missing_file_names_it) {
  catalog *c = (catalog *)1;
  char err[512] = "";
  ASSERT_EQ_INT(catalog_load("/nonexistent/x.yaml", &c, err, sizeof err), PM_ENOENT);
  ASSERT(c == NULL);
  ASSERT_STREQ(err, "/nonexistent/x.yaml: cannot read catalog: no such file");
}

TEST(file_errors_use_the_path) {
  char path[] = "/tmp/pm_catXXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  const char *y = "types:\n" GOOD_TYPE("m5.large", "-1");
  ASSERT_EQ_INT(write(fd, y, strlen(y)), (long long)strlen(y));
  close(fd);
  catalog *c = NULL;
  char err[512] = "", want[600];
  int rc = catalog_load(path, &c, err, sizeof err);
  unlink(path);
  ASSERT_EQ_INT(rc, PM_EPARSE);
  snprintf(want, sizeof want, "%s:3: type 'm5.large': field 'price_usd_per_hour': must be >= 0",
           path);
  ASSERT_STREQ(err, want);
}

TEST_MAIN()
