/* test_run.c - `paramount run` end to end on the local mini-cloud: real
 * cgroup nodes, mpirun with node-exec as rsh agent, paramount-burn as the
 * job; plus the run config's error messages (file, line, field).
 *
 * The run cases need root (cgroups) and mpirun; they skip otherwise.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/config.h"
#include "paramount.h"
#include "test.h"

static run_config cfg;

/* Parses text as if it were the file "dir/run.yaml"; returns the code and
 * leaves the message in err. */
static int parse(const char *text, char *err, size_t cap) {
  err[0] = '\0';
  return run_config_parse("dir/run.yaml", text, strlen(text), &cfg, err, cap);
}

#define CLUSTER "cluster:\n  - {type: a, count: 2}\n"

TEST(config_full_schema_and_defaults) {
  char err[1024];
  int rc = parse("provider: local\ncatalog: cat.yaml\nforce: true\nstage: [data.bin]\n" CLUSTER
                 "job:\n  command: [burn, --epochs, '3']\n  resume: [--resume, '{checkpoint}']\n"
                 "  iterations: 300\n  batch: 24\n  scaling: rank-batch\n  stop_timeout_s: 30\n"
                 "policy:\n  name: clap-bot\n  objective: min-time\n  budget_usd: 0.5\n"
                 "  min_nodes: 2\n  max_nodes: 4\n  margin: 0.1\n  confidence: 0.9\n"
                 "  interval_s: 2\n",
                 err, sizeof err);
  if (rc) TEST_FAIL_("parse: %s", err);
  ASSERT_STREQ(cfg.catalog, "dir/cat.yaml");
  ASSERT_STREQ(cfg.stage[0], "dir/data.bin");
  ASSERT_EQ_INT(cfg.force, 1);
  ASSERT_EQ_INT(cfg.ngroups, 1);
  ASSERT_EQ_INT(cfg.groups[0].count, 2);
  ASSERT_EQ_INT(cfg.ncommand, 3);
  ASSERT_STREQ(cfg.command[2], "3");
  ASSERT_EQ_INT(cfg.nresume, 2);
  ASSERT_EQ_U64(cfg.iterations, 300);
  ASSERT_NEAR(cfg.batch, 24, 0);
  ASSERT_EQ_INT(cfg.scaling, RUN_SCALING_RANK_BATCH);
  ASSERT_STREQ(cfg.policy_name, "clap-bot");
  ASSERT_STREQ(cfg.objective, "min-time-budget"); /* min-time + budget */
  ASSERT_EQ_INT(cfg.min_nodes, 2);
  ASSERT_EQ_INT(cfg.max_nodes, 4);
  ASSERT_NEAR(cfg.interval_s, 2, 0);
  rc = parse(CLUSTER "job: {command: [x]}\n", err, sizeof err);
  ASSERT_EQ_INT(rc, 0);
  ASSERT_STREQ(cfg.policy_name, "paramount");
  ASSERT_STREQ(cfg.objective, "min-cost");
  ASSERT_NEAR(cfg.margin, 0.05, 0);
  ASSERT_NEAR(cfg.interval_s, 5, 0);
  rc = parse(CLUSTER "policy: {deadline_s: 600}\n", err, sizeof err);
  ASSERT_EQ_INT(rc, 0);
  ASSERT_STREQ(cfg.objective, "min-cost-deadline");
}

/* Each mistake: the message names file, line and field. */
TEST(config_errors_name_file_line_field) {
  static const struct {
    const char *text, *want;
  } cases[] = {
      {"clustr: []\n", "dir/run.yaml:1: field 'clustr': unknown top-level field"},
      {"provider: local\n", "dir/run.yaml:1: field 'cluster': missing"},
      {CLUSTER "job:\n  command: burn --epochs 3\n",
       "dir/run.yaml:4: field 'job.command': must be a list of arguments"},
      {CLUSTER "job:\n  command: [burn]\n  resume: [--resume, ckpt]\n",
       "dir/run.yaml:5: field 'job.resume': no argument holds '{checkpoint}'"},
      {CLUSTER "job:\n  command: [burn]\n  iterations: -3\n",
       "dir/run.yaml:5: field 'job.iterations': must be an integer from 1"},
      {CLUSTER "job:\n  command: [burn]\n  scaling: weak\n",
       "dir/run.yaml:5: field 'job.scaling': 'weak' is not known"},
      {CLUSTER "job:\n  comand: [burn]\n", "dir/run.yaml:4: field 'job.comand': unknown field"},
      {CLUSTER "job:\n  resume: [--resume, '{checkpoint}']\n",
       "dir/run.yaml:4: field 'job.command': missing"},
      {CLUSTER "policy:\n  name: greedy\n",
       "dir/run.yaml:4: field 'policy.name': 'greedy' is not known"},
      {CLUSTER "policy:\n  objective: cheapest\n",
       "dir/run.yaml:4: field 'policy.objective': 'cheapest' is not known"},
      {CLUSTER "policy:\n  objective: min-cost-deadline\n",
       "dir/run.yaml:4: field 'policy.deadline_s': missing"},
      {CLUSTER "policy:\n  objective: min-time\n  deadline_s: 60\n",
       "field 'policy.deadline_s': only the min-cost objective takes a deadline"},
      {CLUSTER "policy:\n  budget_usd: 2\n",
       "field 'policy.budget_usd': only the min-time objective takes a budget"},
      {CLUSTER "policy:\n  min_nodes: 4\n  max_nodes: 2\n",
       "field 'policy.min_nodes': 4 is above max_nodes 2"},
      {CLUSTER "policy:\n  margin: lots\n", "dir/run.yaml:4: field 'policy.margin': must be a number"},
      {CLUSTER "policy:\n  confidence: 1.5\n",
       "dir/run.yaml:4: field 'policy.confidence': 1.5 is out of range"},
      {CLUSTER "policy:\n  interval_s: 0\n", "field 'policy.interval_s': 0 is out of range"},
      {CLUSTER "policy:\n  max_node: 3\n", "dir/run.yaml:4: field 'policy.max_node': unknown field"},
      {"cluster:\n  - {type: a, count: 0}\n", "dir/run.yaml:2: field 'cluster.count'"},
      {"cluster: [{count: 2}]\n", "dir/run.yaml:1: field 'cluster.type': missing"},
      {"cluster:\n  - {type: a\n", "dir/run.yaml:3: malformed YAML"},
      {"force: maybe\n" CLUSTER, "dir/run.yaml:1: field 'force': must be true or false"},
  };
  char err[1024];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int rc = parse(cases[i].text, err, sizeof err);
    if (rc != PM_EPARSE) TEST_FAIL_("case %zu: rc %d, err '%s'", i, rc, err);
    if (!strstr(err, cases[i].want))
      TEST_FAIL_("case %zu: '%s' does not contain '%s'", i, err, cases[i].want);
  }
}

TEST(config_unknown_type_against_catalog) {
  char err[1024];
  catalog *cat = NULL;
  const char *ct = "types:\n  - {name: a, price_usd_per_hour: 0.1, vcpus: 2, memory_gib: 4,\n"
                   "     local: {cpu_fraction: 0.1, memory_limit_mib: 256, boot_delay_s: 0}}\n";
  if (catalog_parse("cat.yaml", ct, strlen(ct), &cat, err, sizeof err)) TEST_FAIL_("%s", err);
  ASSERT_EQ_INT(parse("cluster:\n  - {type: a}\n  - {type: zz, count: 2}\n", err, sizeof err), 0);
  ASSERT_EQ_INT(run_config_check_catalog(&cfg, cat, err, sizeof err), PM_EPARSE);
  ASSERT_CONTAINS(err, "dir/run.yaml:3: field 'cluster.type': 'zz' is not in catalog");
  catalog_free(cat);
  ASSERT_EQ_INT(run_config_load("/nonexistent/run.yaml", &cfg, err, sizeof err), PM_ENOENT);
  ASSERT_CONTAINS(err, "/nonexistent/run.yaml: cannot read config: no such file");
}

TEST_MAIN()
