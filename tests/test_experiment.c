/* test_experiment.c - `paramount experiment seed` end to end: a miniature
 * of the seed's two tests (--scale tiny) on real cgroup nodes with mpirun
 * and paramount-esrgan, checked through the files it leaves; plus the
 * command line's refusals and a Test 1 the provider refuses to start.
 *
 * The run cases need root (cgroups), mpirun and paramount-esrgan; they
 * skip otherwise.  Label slow: the miniature takes about three minutes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/util.h"
/* Whole runs on local nodes: a loaded host can stretch a case well past
 * the harness's default. */
#define TEST_DEFAULT_TIMEOUT_S 400
#include "test.h"

#define PARAMOUNT PM_BINARY_DIR "/paramount"
#define ESRGAN PM_BINARY_DIR "/apps/esrgan/paramount-esrgan"

static int runnable(const char *what) {
  if (geteuid() != 0 || access("/usr/bin/mpirun", X_OK) || access(ESRGAN, X_OK)) {
    printf("SKIP %s: needs root (cgroups), mpirun and paramount-esrgan\n", what);
    return 0;
  }
  return 1;
}

static void tmpdir(char *out, size_t cap) {
  snprintf(out, cap, "/tmp/pm-test-exp-XXXXXX");
  if (!mkdtemp(out)) TEST_FAIL_("mkdtemp: %s", strerror(errno));
}

/* Runs argv with stdout+stderr into a malloc'd string; the exit status
 * (128+sig when killed). */
static int run_capture(char *const *argv, char **out) {
  char path[] = "/tmp/pm-test-exp-out-XXXXXX";
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

static json_object *read_json(const char *path) {
  char *text = read_text(path);
  json_object *o = json_tokener_parse(text);
  if (!o) TEST_FAIL_("%s is not JSON:\n%s", path, text);
  free(text);
  return o;
}

static json_object *get(json_object *o, const char *k) {
  json_object *v = NULL;
  if (!json_object_object_get_ex(o, k, &v)) TEST_FAIL_("no field \"%s\" in %s", k,
                                                       json_object_to_json_string(o));
  return v;
}

static const char *gets_(json_object *o, const char *k) { return json_object_get_string(get(o, k)); }
static double getd(json_object *o, const char *k) { return json_object_get_double(get(o, k)); }

/* Every node directory of run_dir: terminated, and none of its cgroups
 * left in /sys/fs/cgroup.  Returns the number of nodes. */
static int assert_nodes_gone(const char *run_dir) {
  int n = 0;
  for (int i = 1; i < 64; i++) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/nodes/n%d/node.json", run_dir, i);
    if (access(path, F_OK)) continue;
    n++;
    json_object *o = read_json(path);
    ASSERT_STREQ(gets_(o, "state"), "terminated");
    json_object *cg = get(o, "cgroups");
    for (size_t k = 0; k < json_object_array_length(cg); k++) {
      const char *p = json_object_get_string(json_object_array_get_idx(cg, k));
      if (access(p, F_OK) == 0) TEST_FAIL_("cgroup %s of %s is still there", p, run_dir);
    }
    json_object_put(o);
  }
  return n;
}

/* ---- the command line refuses what it cannot run -------------------- */

TEST(bad_options_exit_2_with_a_message) {
  static const struct {
    const char *args[6];
    const char *want;
  } cases[] = {
      {{"seed", "--epochs", "1"}, "--epochs: 1 is not in [2, 100000]"},
      {{"seed", "--epochs", "two"}, "option --epochs needs a non-negative integer"},
      {{"seed", "--hr", "50"}, "--hr: 50 is not a multiple of 16"},
      {{"seed", "--scale", "huge"}, "--scale: 'huge' is not tiny, default or full"},
      {{"seed", "--types", "m5.large,m5.large,c5.large"}, "'m5.large' appears twice"},
      {{"seed", "--types", "m5.large,c5.large"}, "give exactly 3 different types"},
      {{"seed", "--types", "m5.large,c5.large,z9.huge"}, "'z9.huge' is not a type of"},
      {{"seed", "--images", "/nonexistent/img_align_celeba"}, "is not a directory"},
      {{"seed", "--catalog", "/nonexistent.yaml"}, "--catalog: cannot read"},
      {{"seed", "--vgg", "/etc/hostname"}, "has no content loss"},
      {{"seed", "--out"}, "option --out needs a value"},
      {{"seed", "--bogus"}, "unexpected argument '--bogus'"},
      {{"seeds"}, "unknown experiment 'seeds'"},
      {{NULL}, "usage: paramount experiment seed"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *argv[10] = {PARAMOUNT, "experiment"};
    int k = 2;
    for (int j = 0; j < 6 && cases[i].args[j]; j++) argv[k++] = (char *)cases[i].args[j];
    argv[k] = NULL;
    char *out = NULL;
    int st = run_capture(argv, &out);
    if (st != 2) TEST_FAIL_("case %zu: exit %d, not 2:\n%s", i, st, out);
    ASSERT_CONTAINS(out, cases[i].want);
    free(out);
  }
}

TEST(bad_catalog_is_named) {
  char dir[64], cat[128];
  tmpdir(dir, sizeof dir);
  snprintf(cat, sizeof cat, "%s/cat.yaml", dir);
  FILE *f = fopen(cat, "w");
  fputs("types:\n  - {name: a, price_usd_per_huor: 1}\n", f);
  fclose(f);
  char *argv[] = {PARAMOUNT, "experiment", "seed", "--catalog", cat, NULL}, *out = NULL;
  ASSERT_EQ_INT(run_capture(argv, &out), 2);
  ASSERT_CONTAINS(out, "price_usd_per_huor");
  free(out);
  char *rm[] = {"/bin/rm", "-rf", dir, NULL};
  run_capture(rm, &out);
  free(out);
}

/* --dry-run prints both configs and an expected duration from a measured
 * step, and creates nothing. */
TEST(dry_run_prints_configs_and_expected_duration) {
  if (access(ESRGAN, X_OK)) {
    printf("SKIP: no paramount-esrgan\n");
    return;
  }
  char dir[64], out_dir[128];
  tmpdir(dir, sizeof dir);
  snprintf(out_dir, sizeof out_dir, "%s/exp", dir);
  char *argv[] = {PARAMOUNT, "experiment", "seed", "--scale", "tiny", "--dry-run",
                  "--out", out_dir, NULL};
  char *out = NULL;
  int st = run_capture(argv, &out);
  if (st) TEST_FAIL_("exit %d:\n%s", st, out);
  ASSERT_CONTAINS(out, "settings (tiny): 240 generated images, hr 32");
  ASSERT_CONTAINS(out, "one GAN step (global batch 6) takes");
  ASSERT_CONTAINS(out, "expected: test 1 ~");
  ASSERT_CONTAINS(out, "test1.yaml ---");
  ASSERT_CONTAINS(out, "  - {type: m5.large, count: 1}\n  - {type: c5.large, count: 1}\n"
                       "  - {type: c5.xlarge, count: 1}\n");
  ASSERT_CONTAINS(out, "  - {type: c5.large, count: 3}\n");
  ASSERT_CONTAINS(out, "resume: [--resume, \"{checkpoint}\"]");
  ASSERT_CONTAINS(out, "name: static");
  if (access(out_dir, F_OK) == 0) TEST_FAIL_("--dry-run created %s", out_dir);
  free(out);
  char *rm[] = {"/bin/rm", "-rf", dir, NULL};
  run_capture(rm, &out);
  free(out);
}

/* ---- failure on purpose: Test 1 cannot start ------------------------- */

/* Nodes whose quotas no host has: the provider refuses Test 1, nothing is
 * left, Test 2 is not run, and the summary says so with exit 1. */
TEST(refused_test1_fails_cleanly) {
  if (!runnable(__func__)) return;
  alarm(300); /* the harness's default is shorter than a measured step */
  char dir[64], cat[128], exp[128];
  tmpdir(dir, sizeof dir);
  snprintf(cat, sizeof cat, "%s/cat.yaml", dir);
  snprintf(exp, sizeof exp, "%s/exp", dir);
  FILE *f = fopen(cat, "w");
  for (int i = 0; i < 3; i++)
    fprintf(f, "%s  - {name: big%d, price_usd_per_hour: 0.%d, vcpus: 2, memory_gib: 4,\n"
               "     local: {cpu_fraction: 64, memory_limit_mib: 512, boot_delay_s: 0}}\n",
            i ? "" : "types:\n", i, i + 1);
  fclose(f);
  char *argv[] = {PARAMOUNT, "experiment", "seed", "--scale", "tiny", "--catalog", cat,
                  "--types", "big0,big1,big2", "--out", exp, "--no-status", NULL};
  char *out = NULL;
  int st = run_capture(argv, &out);
  if (st != 1) TEST_FAIL_("exit %d, not 1:\n%s", st, out);
  ASSERT_CONTAINS(out, "test 1: FAILED");
  ASSERT_CONTAINS(out, "experiment: FAILED");
  char path[256];
  snprintf(path, sizeof path, "%s/comparison.json", exp);
  json_object *js = read_json(path);
  ASSERT_EQ_INT(json_object_get_boolean(get(js, "ok")), 0);
  json_object *t = get(js, "tests");
  ASSERT_EQ_INT(json_object_get_boolean(get(json_object_array_get_idx(t, 0), "completed")), 0);
  ASSERT_EQ_INT(json_object_get_boolean(get(json_object_array_get_idx(t, 1), "ran")), 0);
  snprintf(path, sizeof path, "%s/test2", exp);
  if (access(path, F_OK) == 0) TEST_FAIL_("test 2 ran after test 1 failed");
  snprintf(path, sizeof path, "%s/test1", exp);
  assert_nodes_gone(path);
  json_object_put(js);
  free(out);
  char *rm[] = {"/bin/rm", "-rf", dir, NULL};
  run_capture(rm, &out);
  free(out);
}

/* ---- the miniature experiment --------------------------------------- */

TEST(tiny_experiment_end_to_end) {
  if (!runnable(__func__)) return;
  alarm(900); /* the miniature takes minutes, more on a busy host */
  char dir[64], exp[128], path[512];
  tmpdir(dir, sizeof dir);
  snprintf(exp, sizeof exp, "%s/exp", dir);
  /* --force: the other tests of a parallel ctest may hold cores; the
   * ranking of the types survives that, the quota check would not. */
  char *argv[] = {PARAMOUNT, "experiment", "seed", "--scale", "tiny", "--out", exp,
                  "--no-status", "--force", NULL};
  char *out = NULL;
  int st = run_capture(argv, &out);
  if (st) TEST_FAIL_("exit %d:\n%s", st, out);

  /* the printed table has every part, and is what comparison.txt holds */
  static const char *const parts[] = {
      "== comparison ==", "test 1 (paramount)", "test 2 (ideal, static)",
      "ratio test 1 / test 2: time ", "per type (setup = boot + staging",
      "BOOT_S  STAGE_S  SETUP_S  INIT_S  EPOCH_S", "switches of test 1 (downtime",
      "CHECKPOINT_S", "RESTART_S", "REINIT_S", "decisions of test 1: remaining time predicted",
      "PREDICTED_S", "ACTUAL_S", "experiment: OK", "0 left running"};
  snprintf(path, sizeof path, "%s/comparison.txt", exp);
  char *txt = read_text(path);
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    ASSERT_CONTAINS(out, parts[i]);
    ASSERT_CONTAINS(txt, parts[i]);
  }
  ASSERT_CONTAINS(out, "gan");
  ASSERT_CONTAINS(out, "warmup");

  snprintf(path, sizeof path, "%s/comparison.json", exp);
  json_object *js = read_json(path);
  ASSERT_STREQ(gets_(js, "schema"), "paramount-experiment/1");
  ASSERT_EQ_INT(json_object_get_boolean(get(js, "ok")), 1);
  const char *ideal = gets_(js, "ideal_type");
  ASSERT(ideal[0]);
  json_object *tests = get(js, "tests");
  ASSERT_EQ_INT(json_object_array_length(tests), 2);
  json_object *t1 = json_object_array_get_idx(tests, 0), *t2 = json_object_array_get_idx(tests, 1);
  ASSERT_EQ_INT(json_object_get_boolean(get(t1, "completed")), 1);
  ASSERT_EQ_INT(json_object_get_boolean(get(t2, "completed")), 1);
  /* Test 1 started on three types and ended homogeneous on the type
   * Test 2 ran on from the start */
  ASSERT_EQ_INT(strchr(gets_(t1, "initial_cluster"), '+') != NULL, 1);
  ASSERT_EQ_INT(json_object_get_boolean(get(t1, "homogeneous")), 1);
  ASSERT_STREQ(gets_(t1, "final_type"), ideal);
  char want[128];
  snprintf(want, sizeof want, "3x%s", ideal);
  ASSERT_STREQ(gets_(t1, "final_cluster"), want);
  ASSERT_STREQ(gets_(t2, "initial_cluster"), want);
  ASSERT_STREQ(gets_(t2, "final_cluster"), want);
  ASSERT_OP_DBL(getd(t1, "switches"), >=, 1);
  ASSERT_EQ_INT(getd(t2, "switches"), 0);
  ASSERT_EQ_INT(getd(t1, "nodes_left"), 0);
  ASSERT_EQ_INT(getd(t2, "nodes_left"), 0);
  ASSERT_OP_DBL(getd(t1, "nodes"), >=, 5); /* 3 + at least 2 new */
  ASSERT_EQ_INT(getd(t2, "nodes"), 3);
  for (int i = 0; i < 2; i++) {
    json_object *t = json_object_array_get_idx(tests, i);
    ASSERT_OP_DBL(getd(t, "duration_s"), >, 0);
    ASSERT_OP_DBL(getd(t, "cost_usd"), >, 0);
  }
  json_object *r = get(js, "ratios");
  ASSERT_NEAR(getd(r, "time"), getd(t1, "duration_s") / getd(t2, "duration_s"), 1e-9);
  ASSERT_NEAR(getd(r, "cost"), getd(t1, "cost_usd") / getd(t2, "cost_usd"), 1e-9);
  /* every switch's downtime is its three parts */
  json_object *sw = get(js, "switches");
  ASSERT_OP_DBL(json_object_array_length(sw), >=, 1);
  for (size_t i = 0; i < json_object_array_length(sw); i++) {
    json_object *s = json_object_array_get_idx(sw, i);
    ASSERT_NEAR(getd(s, "downtime_s"),
                getd(s, "checkpoint_s") + getd(s, "restart_s") + getd(s, "reinit_s"), 1e-3);
    ASSERT_OP_DBL(getd(s, "setup_s"), >, 0);
  }
  /* per type: setup split, init, epoch time, both phases */
  json_object *types = get(js, "types");
  int saw_ideal_gan = 0;
  for (size_t i = 0; i < json_object_array_length(types); i++) {
    json_object *y = json_object_array_get_idx(types, i);
    ASSERT_OP_DBL(getd(y, "setup_s"), >=, getd(y, "boot_s"));
    ASSERT_OP_DBL(getd(y, "init_s"), >, 0);
    json_object *ph = get(y, "phases");
    for (size_t k = 0; k < json_object_array_length(ph); k++) {
      json_object *p = json_object_array_get_idx(ph, k);
      if (!strcmp(gets_(y, "type"), ideal) && !strcmp(gets_(p, "phase"), "gan")) {
        ASSERT_OP_DBL(getd(p, "pi_s"), >, 0);
        saw_ideal_gan = 1;
      }
    }
    if (getd(y, "test") == 2) ASSERT_OP_DBL(getd(y, "epoch_s"), >, 0);
  }
  ASSERT_EQ_INT(saw_ideal_gan, 1);
  /* decisions: predicted and actual remaining time */
  json_object *dec = get(js, "decisions");
  ASSERT_OP_DBL(json_object_array_length(dec), >=, 2);
  int with_both = 0;
  for (size_t i = 0; i < json_object_array_length(dec); i++) {
    json_object *d = json_object_array_get_idx(dec, i), *p, *a;
    if (json_object_object_get_ex(d, "predicted_remaining_s", &p) && p &&
        json_object_object_get_ex(d, "actual_remaining_s", &a) && a)
      with_both++;
  }
  ASSERT_OP_DBL(with_both, >=, 1);

  /* the run directories and Test 1's report against the real Test 2 */
  snprintf(path, sizeof path, "%s/test1/report.json", exp);
  json_object *rep = read_json(path);
  json_object *id = get(rep, "ideal");
  ASSERT_EQ_INT(json_object_get_boolean(get(id, "known")), 1);
  ASSERT_STREQ(gets_(id, "source"), "run");
  json_object_put(rep);
  static const char *const files[] = {"test1.yaml", "test2.yaml", "test1/journal.jsonl",
                                      "test1/metrics.csv", "test1/report.html",
                                      "test2/journal.jsonl", "test2/metrics.csv",
                                      "test2/report.json", "test2/report.html"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", exp, files[i]);
    if (access(path, R_OK)) TEST_FAIL_("%s is missing", path);
  }
  snprintf(path, sizeof path, "%s/test1", exp);
  ASSERT_OP_DBL(assert_nodes_gone(path), >=, 5);
  snprintf(path, sizeof path, "%s/test2", exp);
  ASSERT_EQ_INT(assert_nodes_gone(path), 3);

  /* a second experiment into the same directory is refused */
  char *out2 = NULL;
  ASSERT_EQ_INT(run_capture(argv, &out2), 2);
  ASSERT_CONTAINS(out2, "already holds an experiment");
  free(out2);

  json_object_put(js);
  free(txt);
  free(out);
  char *rm[] = {"/bin/rm", "-rf", dir, NULL};
  run_capture(rm, &out);
  free(out);
}

TEST_MAIN()
