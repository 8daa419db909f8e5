/* fuzz_catalog.c - libFuzzer target for the instance catalog loader
 * (src/provider/catalog.c, YAML through libyaml).
 *
 * A catalog is edited by hand and every price steers the policy, so the
 * loader must refuse nonsense with a located one-line reason and never
 * hand back a type outside the ranges catalog.h promises.
 */
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "paramount.h"
#include "provider/catalog.h"

#define FUZZ_NAME "fuzz.yaml"

static void check_type(const catalog *c, const catalog_type *t) {
  if (!memchr(t->name, '\0', sizeof t->name) || !t->name[0]) fuzz_fail("type name");
  if (catalog_find(c, t->name) != t) fuzz_fail("type names are not unique");
  if (!isfinite(t->price_usd_per_hour) || t->price_usd_per_hour < 0) fuzz_fail("price");
  if (t->vcpus < 1) fuzz_fail("vcpus");
  if (!isfinite(t->memory_gib) || !(t->memory_gib > 0)) fuzz_fail("memory_gib");
  if (!isfinite(t->billing_granularity_s) || t->billing_granularity_s < 1)
    fuzz_fail("billing granularity");
  if (!isfinite(t->billing_minimum_s) || t->billing_minimum_s < 0) fuzz_fail("billing minimum");
  if (!(t->cpu_fraction > 0) || t->cpu_fraction > 64) fuzz_fail("cpu_fraction");
  if (!isfinite(t->memory_limit_mib) || !(t->memory_limit_mib > 0)) fuzz_fail("memory limit");
  if (!isfinite(t->boot_delay_s) || t->boot_delay_s < 0) fuzz_fail("boot delay");
  double cost = catalog_cost_usd(t, 3600.5);
  if (!isfinite(cost) || cost < 0) fuzz_fail("cost of an hour");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  catalog *c = (catalog *)1;
  char err[512];
  int rc = catalog_parse(FUZZ_NAME, (const char *)data, size, &c, err, sizeof err);
  fuzz_accepted = rc == 0;
  if (rc != 0) {
    if (c != NULL) fuzz_fail("*out set on failure");
    if (rc != PM_EPARSE && rc != PM_ENOMEM) fuzz_fail("unexpected error code");
    fuzz_check_message(err, FUZZ_NAME ":");
    return 0;
  }
  if (!c || c->ntypes < 1 || c->ntypes > CATALOG_MAX_TYPES) fuzz_fail("type count");
  for (size_t i = 0; i < c->ntypes; i++) check_type(c, &c->types[i]);
  catalog_free(c);
  return 0;
}
