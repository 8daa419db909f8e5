/* fuzz_config.c - libFuzzer target for the run config loader
 * (src/controller/config.c, run_config_parse).
 *
 * The config names the command lines paramount runs and the paths it
 * stages, so besides "no crash" it checks what later code relies on:
 * bounded, terminated strings; relative paths anchored in the config's
 * directory; finite numbers; a located one-line reason for every refusal.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "controller/config.h"
#include "fuzz.h"
#include "paramount.h"

#define FUZZ_DIR "/cfgdir"
#define FUZZ_NAME FUZZ_DIR "/run.yaml"

static void check_str(const char *s, size_t cap, const char *what) {
  if (!memchr(s, '\0', cap)) fuzz_fail(what);
}

/* A path from the config is absolute, and a relative one was anchored in
 * the config's directory (docs/security.md: paths). */
static void check_path(const char *p, const char *what) {
  check_str(p, PATH_MAX, what);
  if (p[0] != '/') fuzz_fail("a relative path was not anchored in the config's directory");
}

static void check_config(const run_config *cfg) {
  if (cfg->ngroups < 1 || cfg->ngroups > RUN_CONFIG_GROUPS_MAX) fuzz_fail("group count");
  for (size_t g = 0; g < cfg->ngroups; g++) {
    check_str(cfg->groups[g].type, sizeof cfg->groups[g].type, "group type");
    if (!cfg->groups[g].type[0]) fuzz_fail("empty group type");
  }
  unsigned nodes = run_config_nodes(cfg);
  if (nodes < 1 || nodes > RUN_CONFIG_NODES_MAX) fuzz_fail("node count");
  check_str(cfg->provider, sizeof cfg->provider, "provider");
  if (cfg->catalog[0]) check_path(cfg->catalog, "catalog path");
  if (cfg->nstage > RUN_CONFIG_STAGE_MAX) fuzz_fail("stage count");
  for (size_t i = 0; i < cfg->nstage; i++) check_path(cfg->stage[i], "stage path");
  if (cfg->ncommand > RUN_CONFIG_ARGS_MAX || cfg->nresume > RUN_CONFIG_ARGS_MAX)
    fuzz_fail("argv count");
  if (cfg->has_job && cfg->ncommand < 1) fuzz_fail("a job without a command");
  for (size_t i = 0; i < cfg->ncommand; i++)
    check_str(cfg->command[i], RUN_CONFIG_ARG_MAX, "command argument");
  for (size_t i = 0; i < cfg->nresume; i++)
    check_str(cfg->resume[i], RUN_CONFIG_ARG_MAX, "resume argument");
  check_str(cfg->policy_name, sizeof cfg->policy_name, "policy name");
  check_str(cfg->objective, sizeof cfg->objective, "objective");
  const double nums[] = {cfg->batch,      cfg->stop_timeout_s, cfg->deadline_s,
                         cfg->budget_usd, cfg->margin,         cfg->confidence,
                         cfg->interval_s};
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
    if (!isfinite(nums[i]) || nums[i] < 0) fuzz_fail("a number is not finite and >= 0");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static run_config cfg; /* large: not on the stack */
  char err[1024];
  err[0] = '\0';
  int rc = run_config_parse(FUZZ_NAME, (const char *)data, size, &cfg, err, sizeof err);
  fuzz_accepted = rc == 0;
  if (rc != 0) {
    if (rc != PM_EPARSE && rc != PM_ENOMEM) fuzz_fail("unexpected error code");
    fuzz_check_message(err, FUZZ_NAME ":");
    return 0;
  }
  check_config(&cfg);
  return 0;
}
