/* test_run.c - `paramount run` end to end on the local mini-cloud: real
 * cgroup nodes, mpirun with node-exec as rsh agent, paramount-burn as the
 * job; plus the run config's error messages (file, line, field).
 *
 * The run cases need root (cgroups) and mpirun; they skip otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/util.h"
#include "controller/config.h"
#include "paramount.h"
/* Whole runs on local nodes: a loaded host can stretch a case well past
 * the harness's default. */
#define TEST_DEFAULT_TIMEOUT_S 400
#include "test.h"

#define PARAMOUNT PM_BINARY_DIR "/paramount"
#define BURN PM_BINARY_DIR "/paramount-burn"

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
                 "  checkpoint_dir: ckpt\n"
                 "policy:\n  name: clap-bot\n  objective: min-time\n  budget_usd: 0.5\n"
                 "  min_nodes: 2\n  max_nodes: 4\n  margin: 0.1\n  confidence: 0.9\n"
                 "  interval_s: 2\n  early_pis: 6\n  early_margin: 0.3\n",
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
  ASSERT_STREQ(cfg.checkpoint_dir, "dir/ckpt");
  ASSERT_STREQ(cfg.policy_name, "clap-bot");
  ASSERT_STREQ(cfg.objective, "min-time-budget"); /* min-time + budget */
  ASSERT_EQ_INT(cfg.min_nodes, 2);
  ASSERT_EQ_INT(cfg.max_nodes, 4);
  ASSERT_NEAR(cfg.interval_s, 2, 0);
  ASSERT_EQ_INT(cfg.early_pis, 6);
  ASSERT_NEAR(cfg.early_margin, 0.3, 0);
  rc = parse(CLUSTER "job: {command: [x]}\n", err, sizeof err);
  ASSERT_EQ_INT(rc, 0);
  ASSERT_STREQ(cfg.checkpoint_dir, ""); /* the run directory */
  ASSERT_STREQ(cfg.policy_name, "paramount");
  ASSERT_STREQ(cfg.objective, "min-cost");
  ASSERT_NEAR(cfg.margin, 0.05, 0);
  ASSERT_NEAR(cfg.interval_s, 5, 0);
  ASSERT_EQ_INT(cfg.early_pis, 4);
  ASSERT_NEAR(cfg.early_margin, 0.2, 0);
  rc = parse(CLUSTER "policy: {early_pis: 0}\n", err, sizeof err);
  ASSERT_EQ_INT(rc, 0);
  ASSERT_EQ_INT(cfg.early_pis, 0); /* the early rule off */
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
      {CLUSTER "policy:\n  early_pis: -1\n", "dir/run.yaml:4: field 'policy.early_pis'"},
      {CLUSTER "policy:\n  early_margin: much\n",
       "dir/run.yaml:4: field 'policy.early_margin': must be a number"},
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

/* ---- end to end ---------------------------------------------------- */

/* The burn job every run case shares: ~30 ms of CPU per rank and PI, so
 * that a node's CPU quota (per 100 ms CFS period) really sets its speed;
 * a tiny allreduce, because MPI's busy-polling while waiting also eats a
 * node's quota. */
#define JOB_ARGS "--samples", "2400", "--batch", "24", "--work", "6800000", "--allreduce-bytes", "64"

/* slow: cheap but slowest; eff: best samples per dollar (min-cost);
 * fast: fastest (min-time).  3 + 2 replacements fit 2 host cores. */
static const char *catalog_text(double granularity_s) {
  static char buf[2048];
  snprintf(buf, sizeof buf,
           "types:\n"
           "  - {name: slow, price_usd_per_hour: 0.10, vcpus: 2, memory_gib: 4,\n"
           "     billing_granularity_s: %g, billing_minimum_s: 0,\n"
           "     local: {cpu_fraction: 0.10, memory_limit_mib: 512, boot_delay_s: 0.3}}\n"
           "  - {name: eff, price_usd_per_hour: 0.15, vcpus: 2, memory_gib: 4,\n"
           "     billing_granularity_s: %g, billing_minimum_s: 0,\n"
           "     local: {cpu_fraction: 0.25, memory_limit_mib: 512, boot_delay_s: 0.3}}\n"
           "  - {name: fast, price_usd_per_hour: 0.50, vcpus: 4, memory_gib: 8,\n"
           "     billing_granularity_s: %g, billing_minimum_s: 0,\n"
           "     local: {cpu_fraction: 0.45, memory_limit_mib: 512, boot_delay_s: 0.3}}\n",
           granularity_s, granularity_s, granularity_s);
  return buf;
}

static int is_root(void) { return geteuid() == 0; }

#define SKIP_UNLESS_RUNNABLE()                                                 \
  do {                                                                         \
    if (!is_root() || access("/usr/bin/mpirun", X_OK) || access(BURN, X_OK)) { \
      printf("SKIP %s: needs root (cgroups), mpirun and paramount-burn\n",     \
             __func__);                                                        \
      return;                                                                  \
    }                                                                          \
  } while (0)

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) TEST_FAIL_("cannot write %s: %s", path, strerror(errno));
  fputs(text, f);
  fclose(f);
}

static void tmpdir(char *out, size_t cap) {
  snprintf(out, cap, "/tmp/pm-test-run-XXXXXX");
  if (!mkdtemp(out)) TEST_FAIL_("mkdtemp: %s", strerror(errno));
}

/* Runs argv with stdout+stderr into a malloc'd string; the exit status
 * (128+sig when killed).  kill_after_s > 0 sends SIGINT then. */
static int run_capture(char *const *argv, char **out, double kill_after_s) {
  char path[] = "/tmp/pm-test-run-out-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) TEST_FAIL_("mkstemp");
  unlink(path);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    execv(argv[0], argv);
    _exit(127);
  }
  if (kill_after_s > 0) {
    struct timespec ts = {(time_t)kill_after_s,
                          (long)((kill_after_s - (time_t)kill_after_s) * 1e9)};
    nanosleep(&ts, NULL);
    kill(pid, SIGINT);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  off_t len = lseek(fd, 0, SEEK_END);
  char *buf = malloc((size_t)len + 1);
  if (pread(fd, buf, (size_t)len, 0) != len) TEST_FAIL_("reading output");
  buf[len] = '\0';
  close(fd);
  *out = buf;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *read_text(const char *path) {
  char *text = NULL;
  if (util_read_file(path, 64 << 20, &text, NULL)) TEST_FAIL_("cannot read %s", path);
  return text;
}

/* "iterations=N samples=N checksum=0x..." from burn's final line. */
static void burn_result(const char *text, char *out, size_t cap) {
  const char *p = NULL, *q = text;
  while ((q = strstr(q, "paramount-burn: done "))) p = q++;
  if (!p) TEST_FAIL_("no final burn line in:\n%s", text);
  const char *a = strstr(p, "iterations="), *e = strstr(p, " ranks=");
  if (!a || !e) TEST_FAIL_("bad burn line: %s", p);
  snprintf(out, cap, "%.*s", (int)(e - a), a);
}

/* The uninterrupted run's result, computed once per test binary (a
 * direct single-rank run: burn's result does not depend on ranks). */
static const char *reference(int epochs) {
  static char ref[256];
  char path[64];
  snprintf(path, sizeof path, "/tmp/pm-test-run-ref-%d-%d", epochs, (int)getppid());
  char *text = NULL;
  if (util_read_file(path, 4096, &text, NULL) == 0) {
    snprintf(ref, sizeof ref, "%s", text);
    free(text);
    return ref;
  }
  char ep[16];
  snprintf(ep, sizeof ep, "%d", epochs);
  char *argv[] = {BURN, JOB_ARGS, "--epochs", ep, "--quiet", NULL};
  char *out = NULL;
  int st = run_capture(argv, &out, 0);
  if (st) TEST_FAIL_("reference burn exited %d: %s", st, out);
  burn_result(out, ref, sizeof ref);
  free(out);
  write_text(path, ref);
  return ref;
}

typedef struct {
  char dir[PATH_MAX], run[PATH_MAX + 8];
  char *out;   /* paramount run's output */
  int status;
  char *report; /* report.json text */
} run_case;

static void run_case_free(run_case *rc) {
  free(rc->out);
  free(rc->report);
}

/* Writes the catalog and a config (cluster + policy lines given) and runs
 * `paramount run` on it. */
static void run_job(run_case *rc, double granularity_s, const char *cluster, const char *policy,
                    int epochs, double interrupt_s) {
  memset(rc, 0, sizeof *rc);
  tmpdir(rc->dir, sizeof rc->dir);
  char path[PATH_MAX + 32], cfg[4096];
  snprintf(path, sizeof path, "%s/cat.yaml", rc->dir);
  write_text(path, catalog_text(granularity_s));
  snprintf(cfg, sizeof cfg,
           "provider: local\ncatalog: cat.yaml\ncluster:\n%s"
           "job:\n  command: [%s, --samples, '2400', --batch, '24', --work, '6800000',\n"
           "            --allreduce-bytes, '64', --epochs, '%d']\n"
           "  resume: [--resume, '{checkpoint}']\n"
           "policy:\n  interval_s: 1\n%s",
           cluster, BURN, epochs, policy);
  snprintf(path, sizeof path, "%s/run.yaml", rc->dir);
  write_text(path, cfg);
  snprintf(rc->run, sizeof rc->run, "%s/run", rc->dir);
  char *argv[] = {PARAMOUNT, "run", path, "--out", rc->run, NULL};
  rc->status = run_capture(argv, &rc->out, interrupt_s);
  printf("%s", rc->out);
  char rp[PATH_MAX + 32];
  snprintf(rp, sizeof rp, "%s/report.json", rc->run);
  if (util_read_file(rp, 16 << 20, &rc->report, NULL)) rc->report = NULL;
}

/* Nothing of the run is alive: the provider's view and the cgroups. */
static void assert_no_node_left(const run_case *rc) {
  char *argv[] = {PARAMOUNT, "nodes", (char *)rc->run, NULL};
  char *out = NULL;
  ASSERT_EQ_INT(run_capture(argv, &out, 0), 0);
  ASSERT_CONTAINS(out, " 0 live");
  free(out);
  char path[PATH_MAX + 64];
  for (int k = 1; k < 32; k++) {
    snprintf(path, sizeof path, "%s/nodes/n%d/node.json", rc->run, k);
    if (access(path, F_OK)) break;
    char *text = read_text(path);
    /* "cgroups":["\/sys\/fs\/cgroup\/cpu\/...", ...] (json-c escapes '/') */
    size_t at = 0, len = strlen(text);
    while (at < len) {
      while (at < len && strncmp(text + at, "\"\\/sys", 6)) at++;
      if (at >= len) break;
      size_t i = at + 1, w = 0;
      char cg[PATH_MAX];
      for (; i < len && text[i] != '"' && w < sizeof cg - 1; i++)
        if (text[i] != '\\') cg[w++] = text[i];
      cg[w] = '\0';
      at = i;
      if (!access(cg, F_OK)) TEST_FAIL_("cgroup %s of n%d survived the run", cg, k);
    }
    free(text);
  }
}

/* The cluster of the last launch, from the summary's "cluster: A -> B"
 * line ("3xeff"). */
static void last_cluster(const run_case *rc, char *out, size_t cap) {
  const char *p = strstr(rc->out, "\ncluster: ");
  if (!p || !(p = strstr(p, " -> "))) TEST_FAIL_("no cluster line in:\n%s", rc->out);
  p += 4;
  const char *e = strstr(p, " (policy");
  if (!e) TEST_FAIL_("bad cluster line");
  snprintf(out, cap, "%.*s", (int)(e - p), p);
}

/* report.json (rebuilt from the journal by the report module) as JSON;
 * owned by the caller. */
static json_object *report_of(const run_case *rc) {
  if (!rc->report) TEST_FAIL_("no report.json in %s:\n%s", rc->run, rc->out);
  json_object *o = json_tokener_parse(rc->report);
  if (!o) TEST_FAIL_("report.json of %s does not parse", rc->run);
  return o;
}

/* Length of a report.json array ("switches", "launches" is a number). */
static int report_count(const run_case *rc, const char *key) {
  json_object *o = report_of(rc), *v = NULL;
  if (!json_object_object_get_ex(o, key, &v)) TEST_FAIL_("report.json has no \"%s\"", key);
  int n = json_object_is_type(v, json_type_array) ? (int)json_object_array_length(v)
                                                   : json_object_get_int(v);
  json_object_put(o);
  return n;
}

/* How many decisions in report.json took action `action`. */
static int report_actions(const run_case *rc, const char *action) {
  json_object *o = report_of(rc), *ds = NULL;
  int n = 0;
  if (json_object_object_get_ex(o, "decisions", &ds))
    for (size_t i = 0; i < json_object_array_length(ds); i++) {
      json_object *a = NULL;
      if (json_object_object_get_ex(json_object_array_get_idx(ds, i), "action", &a) &&
          !strcmp(json_object_get_string(a), action))
        n++;
    }
  json_object_put(o);
  return n;
}

static void assert_same_result_as_uninterrupted(const run_case *rc, int epochs) {
  char log[PATH_MAX + 32], got[256];
  int last = 0;
  for (int l = 0; l < 64; l++) {
    snprintf(log, sizeof log, "%s/job-%d.log", rc->run, l);
    if (access(log, F_OK)) break;
    last = l;
  }
  snprintf(log, sizeof log, "%s/job-%d.log", rc->run, last);
  char *text = read_text(log);
  burn_result(text, got, sizeof got);
  free(text);
  ASSERT_STREQ(got, reference(epochs));
}

TEST(min_cost_converges_to_best_type_losing_nothing) {
  SKIP_UNLESS_RUNNABLE();
  run_case rc;
  run_job(&rc, 1,
          "  - {type: slow, count: 1}\n  - {type: eff, count: 1}\n  - {type: fast, count: 1}\n",
          "  objective: min-cost\n", 1, 0);
  if (rc.status) TEST_FAIL_("paramount run exited %d", rc.status);
  char cl[128];
  last_cluster(&rc, cl, sizeof cl);
  ASSERT_STREQ(cl, "3xeff");
  ASSERT_CONTAINS(rc.out, "cluster: 1xslow+1xeff+1xfast -> 3xeff");
  ASSERT_EQ_INT(report_count(&rc, "switches"), 1);
  ASSERT_EQ_INT(report_count(&rc, "launches"), 2);
  ASSERT_CONTAINS(rc.out, "downtime");
  ASSERT_CONTAINS(rc.out, "predicted");
  assert_same_result_as_uninterrupted(&rc, 1);
  assert_no_node_left(&rc);
  /* metrics.csv and report.html, rebuilt from the journal: one row per
   * PI per rank, both launches. */
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/metrics.csv", rc.run);
  char *csv = read_text(path);
  ASSERT_CONTAINS(csv, "launch,rank,node,type,phase,iteration,time_s,compute_s,comm_s,total_s,samples\n");
  ASSERT_CONTAINS(csv, "\n1,2,n5,eff,main,99,");
  free(csv);
  snprintf(path, sizeof path, "%s/report.html", rc.run);
  ASSERT(access(path, F_OK) == 0);
  run_case_free(&rc);
}

/* The same start under min-time goes to the fastest type instead. */
TEST(min_time_picks_the_fast_type) {
  SKIP_UNLESS_RUNNABLE();
  run_case rc;
  run_job(&rc, 1,
          "  - {type: slow, count: 1}\n  - {type: eff, count: 1}\n  - {type: fast, count: 1}\n",
          "  objective: min-time\n", 1, 0);
  if (rc.status) TEST_FAIL_("paramount run exited %d", rc.status);
  char cl[128];
  last_cluster(&rc, cl, sizeof cl);
  ASSERT_STREQ(cl, "3xfast");
  assert_same_result_as_uninterrupted(&rc, 1);
  assert_no_node_left(&rc);
  run_case_free(&rc);
}

/* Billed by the hour: the hour of the nodes running is paid already, and
 * new nodes cost an hour each, far more than the few seconds left of the
 * job could save.  No switch pays, and the policy must see it (the same
 * start with per-second billing does switch, above). */
TEST(too_short_a_job_does_not_switch) {
  SKIP_UNLESS_RUNNABLE();
  run_case rc;
  run_job(&rc, 3600,
          "  - {type: slow, count: 1}\n  - {type: eff, count: 1}\n  - {type: fast, count: 1}\n",
          "  objective: min-cost\n", 1, 0);
  if (rc.status) TEST_FAIL_("paramount run exited %d", rc.status);
  ASSERT_EQ_INT(report_count(&rc, "switches"), 0);
  ASSERT(report_actions(&rc, "stay") > 0);
  ASSERT_EQ_INT(report_actions(&rc, "switch"), 0);
  assert_same_result_as_uninterrupted(&rc, 1);
  assert_no_node_left(&rc);
  run_case_free(&rc);
}

TEST(static_policy_never_switches) {
  SKIP_UNLESS_RUNNABLE();
  run_case rc;
  run_job(&rc, 1, "  - {type: eff, count: 1}\n  - {type: fast, count: 1}\n",
          "  name: static\n", 1, 0);
  if (rc.status) TEST_FAIL_("paramount run exited %d", rc.status);
  ASSERT_EQ_INT(report_count(&rc, "switches"), 0);
  ASSERT_CONTAINS(rc.report, "static policy never changes the cluster");
  ASSERT_EQ_INT(report_actions(&rc, "switch"), 0);
  assert_same_result_as_uninterrupted(&rc, 1);
  assert_no_node_left(&rc);
  run_case_free(&rc);
}

/* ^C in the middle: the job and every node are gone, exit 130. */
TEST(interrupt_terminates_every_node) {
  SKIP_UNLESS_RUNNABLE();
  run_case rc;
  run_job(&rc, 1, "  - {type: slow, count: 1}\n  - {type: eff, count: 1}\n",
          "  objective: min-cost\n", 1, 4.0);
  ASSERT_EQ_INT(rc.status, 130);
  ASSERT_CONTAINS(rc.out, "interrupted by signal 2; every node is terminated");
  assert_no_node_left(&rc);
  run_case_free(&rc);
}

/* A job that fails passes its status through; nodes are terminated. */
TEST(failing_job_passes_its_status) {
  SKIP_UNLESS_RUNNABLE();
  run_case rc;
  memset(&rc, 0, sizeof rc);
  tmpdir(rc.dir, sizeof rc.dir);
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/cat.yaml", rc.dir);
  write_text(path, catalog_text(1));
  snprintf(path, sizeof path, "%s/run.yaml", rc.dir);
  /* burn refuses a batch larger than the epoch: exit 2 on every rank. */
  char cfg[1024];
  snprintf(cfg, sizeof cfg,
           "catalog: cat.yaml\ncluster: [{type: eff, count: 2}]\n"
           "job: {command: [%s, --samples, '10', --batch, '20']}\n", BURN);
  write_text(path, cfg);
  snprintf(rc.run, sizeof rc.run, "%s/run", rc.dir);
  char *argv[] = {PARAMOUNT, "run", path, "--out", rc.run, NULL};
  rc.status = run_capture(argv, &rc.out, 0);
  printf("%s", rc.out);
  ASSERT_EQ_INT(rc.status, 2);
  ASSERT_CONTAINS(rc.out, "the job failed with status 2");
  ASSERT_CONTAINS(rc.out, "job: FAILED");
  assert_no_node_left(&rc);
  /* And a config the catalog refuses never starts anything. */
  snprintf(cfg, sizeof cfg, "catalog: cat.yaml\ncluster: [{type: huge}]\njob: {command: [x]}\n");
  write_text(path, cfg);
  char run2[PATH_MAX + 16];
  snprintf(run2, sizeof run2, "%s/run2", rc.dir);
  char *argv2[] = {PARAMOUNT, "run", path, "--out", run2, NULL};
  free(rc.out);
  ASSERT_EQ_INT(run_capture(argv2, &rc.out, 0), 2);
  ASSERT_CONTAINS(rc.out, "run.yaml:2: field 'cluster.type': 'huge' is not in catalog");
  ASSERT(access(run2, F_OK) != 0);
  run_case_free(&rc);
}

/* Each rank starts in its own node's working directory, beside the files
 * `stage` put there, so a job may name staged data by relative path. */
TEST(ranks_start_in_their_node_directory) {
  SKIP_UNLESS_RUNNABLE();
  run_case rc;
  memset(&rc, 0, sizeof rc);
  tmpdir(rc.dir, sizeof rc.dir);
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/cat.yaml", rc.dir);
  write_text(path, catalog_text(1));
  snprintf(path, sizeof path, "%s/input.txt", rc.dir);
  write_text(path, "staged\n");
  snprintf(path, sizeof path, "%s/run.yaml", rc.dir);
  write_text(path, "catalog: cat.yaml\nstage: [input.txt]\n"
                   "cluster: [{type: eff, count: 2}]\n"
                   "job:\n  iterations: 1\n  command: [/bin/sh, -c,\n"
                   "    'echo \"$PARAMOUNT_NODE $(pwd) $(cat input.txt)\" >> "
                   "\"$PARAMOUNT_RUN_DIR/cwd.txt\"']\n"
                   "policy: {name: static}\n");
  snprintf(rc.run, sizeof rc.run, "%s/run", rc.dir);
  char *argv[] = {PARAMOUNT, "run", path, "--out", rc.run, NULL};
  rc.status = run_capture(argv, &rc.out, 0);
  printf("%s", rc.out);
  ASSERT_EQ_INT(rc.status, 0);
  snprintf(path, sizeof path, "%s/cwd.txt", rc.run);
  char *got = read_text(path);
  char want[PATH_MAX + 64];
  for (int k = 1; k <= 2; k++) {
    snprintf(want, sizeof want, "n%d %s/nodes/n%d/work staged\n", k, rc.run, k);
    ASSERT_CONTAINS(got, want);
  }
  free(got);
  assert_no_node_left(&rc);
  run_case_free(&rc);
}

TEST_MAIN()
