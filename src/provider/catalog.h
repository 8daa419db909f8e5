/* catalog.h - the instance catalog: what each node type costs and how the
 * local provider emulates it.
 *
 * Loaded from YAML (catalogs/default.yaml, docs/config.md).  Every error
 * names the file, the line and the field, because a catalog is edited by
 * hand and a wrong price silently steers every decision the policy makes.
 */
#ifndef PM_CATALOG_H
#define PM_CATALOG_H

#include <stddef.h>

#define CATALOG_NAME_MAX 64
#define CATALOG_MAX_TYPES 128

typedef struct {
  char name[CATALOG_NAME_MAX]; /* e.g. "c5.large" */
  double price_usd_per_hour;   /* on-demand price, >= 0 */
  unsigned vcpus;              /* the real instance's vCPUs, >= 1 */
  double memory_gib;           /* the real instance's memory, > 0 */
  double billing_granularity_s; /* billed in steps of this, >= 1 */
  double billing_minimum_s;     /* at least this much is billed, >= 0 */
  /* Local emulation (provider "local"). */
  double cpu_fraction;        /* share of one host core, (0, 64] */
  double memory_limit_mib;    /* cgroup memory limit, > 0 */
  double boot_delay_s;        /* simulated boot, >= 0 */
} catalog_type;

typedef struct {
  char path[4096]; /* the file it was loaded from */
  size_t ntypes;
  catalog_type types[CATALOG_MAX_TYPES];
} catalog;

/* Loads and validates the catalog at path.  On failure *out is NULL and
 * err[cap] holds one line "FILE:LINE: type 'X': field 'F': what is wrong".
 * The catalog is owned by the caller and freed with catalog_free. */
int catalog_load(const char *path, catalog **out, char *err, size_t cap);

/* Same, from a string; `name` stands for the file in messages. */
int catalog_parse(const char *name, const char *text, size_t len,
                  catalog **out, char *err, size_t cap);

void catalog_free(catalog *c);

/* The type named `name`, or NULL.  Borrowed from c. */
const catalog_type *catalog_find(const catalog *c, const char *name);

/* The default catalog's path: $PARAMOUNT_CATALOG, else
 * <dir of the running binary>/../share/paramount/catalogs/default.yaml,
 * else <PM_SOURCE_DIR>/catalogs/default.yaml; the first that exists.
 * PM_ENOENT when none does (path then holds the last one tried). */
int catalog_default_path(char *path, size_t cap);

/* Dollars billed for a node that has run `elapsed_s`: rounded up to the
 * type's granularity, at least its minimum. */
double catalog_cost_usd(const catalog_type *t, double elapsed_s);

#endif
