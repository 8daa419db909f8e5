/* test_report.c - the run report: the journal model's numbers, the CSV,
 * JSON and HTML renderers, and their failure paths, on journals written
 * here by hand so every expected figure is known exactly.
 *
 * Built twice: test_report (unit) and test_report_render (slow), whose
 * only case renders report.html in headless Chromium, checks that every
 * chart was drawn, and keeps a screenshot in build/test-artifacts/.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>

#include "common/util.h"
#include "paramount.h"
#include "report/model.h"
#include "report/report.h"
#include "test.h"

#ifndef PM_BINARY_DIR
#define PM_BINARY_DIR "."
#endif

/* ---- helpers ------------------------------------------------------------ */

static void make_dir(char *dir, size_t cap, const char *name) {
  snprintf(dir, cap, "%s/test-report/%s", PM_BINARY_DIR, name);
  char cmd_dir[PATH_MAX];
  snprintf(cmd_dir, sizeof cmd_dir, "%s", dir);
  ASSERT_EQ_INT(util_mkdir_p(cmd_dir), 0);
  char j[PATH_MAX + 32];
  snprintf(j, sizeof j, "%s/journal.jsonl", dir);
  unlink(j);
}

static FILE *open_journal(const char *dir, const char *mode) {
  char j[PATH_MAX + 32];
  snprintf(j, sizeof j, "%s/journal.jsonl", dir);
  FILE *f = fopen(j, mode);
  ASSERT(f != NULL);
  return f;
}

static char *slurp(const char *dir, const char *name) {
  char p[PATH_MAX + 64];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  char *buf = NULL;
  size_t len = 0;
  int rc = util_read_file(p, 64u << 20, &buf, &len);
  if (rc) TEST_FAIL_("cannot read %s: %s", p, pm_strerror(rc));
  return buf;
}

#define HOSTILE_NODE "<script>alert(1)</script>"
#define HOSTILE_PHASE "<script>alert(2)</script>"

static void pi_line(FILE *f, unsigned rank, unsigned long long iter, double begin_s,
                    double compute_s, double wall_s) {
  fprintf(f, "{\"ev\":\"pi\",\"t\":%.6f,\"rank\":%u,\"iter\":%llu,\"t_begin_ns\":%.0f,"
             "\"wall_ns\":%.0f,\"compute_ns\":%.0f,\"comm_ns\":%.0f,\"samples\":8}\n",
          begin_s + wall_s + 0.01, rank, iter, begin_s * 1e9, wall_s * 1e9, compute_s * 1e9,
          (wall_s - compute_s) * 1e9);
}

static void node_life(FILE *f, const char *id, const char *type, double price, double req,
                      double boot_s, double stage_s) {
  fprintf(f, "{\"ev\":\"node_request\",\"t\":%.3f,\"node\":\"%s\",\"type\":\"%s\","
             "\"requested_s\":%.3f,\"price_usd_per_hour\":%g,\"billing_granularity_s\":1,"
             "\"billing_minimum_s\":0}\n", req, id, type, req, price);
  fprintf(f, "{\"ev\":\"node_booted\",\"t\":%.3f,\"node\":\"%s\",\"type\":\"%s\"}\n",
          req + boot_s, id, type);
  fprintf(f, "{\"ev\":\"node_staged\",\"t\":%.3f,\"node\":\"%s\",\"type\":\"%s\","
             "\"stage_s\":%g}\n", req + boot_s + stage_s, id, type, stage_s);
  fprintf(f, "{\"ev\":\"node_ready\",\"t\":%.3f,\"node\":\"%s\",\"type\":\"%s\"}\n",
          req + boot_s + stage_s, id, type);
}

/* The reference run (every figure below follows from it):
 *  nodes  n1 small 0.36 $/h (boot 2, stage 0.5), n2 big 1.8 $/h (boot 3,
 *         stage 0.4), HOSTILE_NODE mid 0.72 $/h (boot 2.5, stage 0.5), all
 *         requested at 1000; n4 big requested at 1020 (boot 3, stage 0.4).
 *  launch 0 ranks 0,1,2 on n1,n2,HOSTILE; init 1010 -> 1011; phase
 *         "train"; 20 PIs from 1011: wall 0.55 (first 1.55), compute
 *         0.5 / 0.2 / 0.35 (first +1); last PI ends at 1023.0.
 *  decision at 1020: switch to 2 x big, predicted 20 s and 0.5 USD left.
 *  stop at 1022, checkpoints at 1023.5 .. 1024.0, relaunch at 1024.2.
 *  launch 1 ranks 0,1 on n2,n4; init 1025 -> 1026; phase HOSTILE_PHASE;
 *         20 PIs from 1026.5: wall 0.25 (first 0.65), compute 0.2 (+0.4).
 *  n1, HOSTILE terminated at 1024.1; n2, n4 at 1032.2; run_end 1032.5.
 * So: checkpoint 1.0, restart 1.0, re-init 1.5, downtime 3.5 s; actual
 * remaining at the decision 12.5 s. */
static void write_reference(const char *dir) {
  FILE *f = open_journal(dir, "w");
  fputs("{\"ev\":\"intake_listen\",\"t\":1000.0,\"endpoint\":\"127.0.0.1:1\"}\n", f);
  node_life(f, "n1", "small", 0.36, 1000, 2, 0.5);
  node_life(f, "n2", "big", 1.8, 1000, 3, 0.4);
  node_life(f, HOSTILE_NODE, "mid", 0.72, 1000, 2.5, 0.5);
  fputs("{\"ev\":\"someone_elses_event\",\"t\":1005,\"x\":[1,2]}\n", f);
  fputs("{\"ev\":\"launch\",\"t\":1009.0,\"nodes\":[\"n1\",\"n2\"]}\n", f);
  static const char *const nodes0[3] = {"n1", "n2", HOSTILE_NODE};
  static const double comp0[3] = {0.5, 0.2, 0.35};
  for (unsigned r = 0; r < 3; r++) {
    fprintf(f, "{\"ev\":\"hello\",\"t\":1010.0,\"conn\":%u,\"rank\":%u,\"node\":\"%s\","
               "\"app\":\"burn\",\"pid\":1,\"peer\":\"127.0.0.1\"}\n", r + 1, r, nodes0[r]);
    fprintf(f, "{\"ev\":\"init_begin\",\"t\":1010.0,\"rank\":%u,\"t_ns\":1010000000000}\n", r);
    fprintf(f, "{\"ev\":\"init_end\",\"t\":1011.0,\"rank\":%u,\"t_ns\":1011000000000}\n", r);
    fprintf(f, "{\"ev\":\"phase\",\"t\":1011.0,\"rank\":%u,\"t_ns\":1011000000000,"
               "\"name\":\"train\",\"first_iter\":0,\"planned_iters\":40}\n", r);
  }
  double t = 1011;
  for (unsigned it = 0; it < 20; it++) {
    double wall = it ? 0.55 : 1.55;
    for (unsigned r = 0; r < 3; r++) pi_line(f, r, it, t, comp0[r] + (it ? 0 : 1), wall);
    t += wall;
    if (it == 9 || it == 19)
      fprintf(f, "{\"ev\":\"epoch\",\"t\":%.3f,\"rank\":0,\"t_ns\":%.0f,\"epoch\":%u,"
                 "\"last_iter\":%u}\n", t, t * 1e9, it / 10, it);
    if (it == 14) {
      fputs("{\"ev\":\"decision\",\"t\":1020.0,\"policy\":\"paramount\",\"action\":\"switch\","
            "\"reason\":\"a <b>cheaper</b> cluster\",\"stay\":{\"type\":\"\",\"nodes\":3,"
            "\"time_s\":50,\"cost_usd\":1.0},\"target\":{\"type\":\"big\",\"nodes\":2,"
            "\"pi_s\":0.25,\"time_s\":20,\"cost_usd\":0.5}}\n", f);
      node_life(f, "n4", "big", 1.8, 1020, 3, 0.4);
    }
    if (it == 16) fputs("{\"ev\":\"stop_request\",\"t\":1022.0,\"stop_iter\":19}\n", f);
  }
  for (unsigned r = 0; r < 3; r++)
    fprintf(f, "{\"ev\":\"checkpoint\",\"t\":1024.0,\"rank\":%u,\"t_ns\":%.0f,\"iter\":19,"
               "\"path\":\"/tmp/ck\"}\n", r, (1023.5 + 0.25 * r) * 1e9);
  fputs("{\"ev\":\"node_terminated\",\"t\":1024.1,\"node\":\"n1\",\"type\":\"small\"}\n", f);
  fprintf(f, "{\"ev\":\"node_terminated\",\"t\":1024.1,\"node\":\"%s\",\"type\":\"mid\"}\n",
          HOSTILE_NODE);
  fputs("{\"ev\":\"relaunch\",\"t\":1024.2,\"launch\":1}\n", f);
  static const char *const nodes1[2] = {"n2", "n4"};
  for (unsigned r = 0; r < 2; r++) {
    fprintf(f, "{\"ev\":\"hello\",\"t\":1025.0,\"conn\":%u,\"rank\":%u,\"node\":\"%s\"}\n",
            r + 4, r, nodes1[r]);
    fprintf(f, "{\"ev\":\"init_begin\",\"t\":1025.0,\"rank\":%u,\"t_ns\":1025000000000}\n", r);
    fprintf(f, "{\"ev\":\"init_end\",\"t\":1026.0,\"rank\":%u,\"t_ns\":1026000000000}\n", r);
    fprintf(f, "{\"ev\":\"phase\",\"t\":1026.0,\"rank\":%u,\"t_ns\":1026000000000,"
               "\"name\":\"%s\",\"first_iter\":20,\"planned_iters\":20}\n", r, HOSTILE_PHASE);
  }
  t = 1026.5;
  for (unsigned it = 20; it < 40; it++) {
    double wall = it > 20 ? 0.25 : 0.65;
    for (unsigned r = 0; r < 2; r++) pi_line(f, r, it, t, it > 20 ? 0.2 : 0.6, wall);
    t += wall;
    if (it == 21)
      fputs("{\"ev\":\"switch_done\",\"t\":1027.5,\"from\":\"x\",\"to\":\"y\","
            "\"setup_s\":3.4,\"checkpoint_s\":2,\"restart_s\":1,\"reinit_s\":1.5}\n", f);
  }
  fputs("{\"ev\":\"node_terminated\",\"t\":1032.2,\"node\":\"n2\",\"type\":\"big\"}\n", f);
  fputs("{\"ev\":\"node_terminated\",\"t\":1032.2,\"node\":\"n4\",\"type\":\"big\"}\n", f);
  fputs("{\"ev\":\"run_end\",\"t\":1032.5,\"status\":0}\n", f);
  ASSERT_EQ_INT(fclose(f), 0);
}

/* A run with faults (every figure below follows from it):
 *  nodes  n1, n2 eff 0.36 $/h requested at 1000 (boot 2, stage 0.5);
 *  launch 0 ranks 0,1 on n1,n2; PIs of 0.5 s from 1004, iteration k
 *         ends at 1004.5 + 0.5 k; rank 0 checkpoints iterations 9, 19.
 *  fault 1: n2 vanishes after iteration 24 (its last PI ends 1016.5) and
 *         is terminated at 1017.0; n3 eff 1.8 $/h requested at 1017.2
 *         replaces it; node_lost at 1018.6, relaunch at 1018.7.
 *  launch 1 ranks 0,1 on n1,n3 from iteration 20, its PIs from 1019.5
 *         (iteration k ends at 1020 + 0.5 (k - 20)); checkpoints 29, 39.
 *  with crash, fault 2: the job crashes after iteration 45 (ends
 *         1032.5) on live nodes, node_lost at 1033.2 (no node, no
 *         replacement), relaunch from iteration 40 with PIs from 1034.5.
 *  ckpt_every > 0 puts job.checkpoint_every into the node_lost records. */
__attribute__((unused)) /* the render build uses only write_journal */
static void write_faults(const char *dir, unsigned ckpt_every, int crash) {
  FILE *f = open_journal(dir, "w");
  char every[48] = "";
  if (ckpt_every) snprintf(every, sizeof every, ",\"checkpoint_every\":%u", ckpt_every);
  fputs("{\"ev\":\"run_start\",\"t\":999.5,\"policy\":\"static\"}\n", f);
  node_life(f, "n1", "eff", 0.36, 1000, 2, 0.5);
  node_life(f, "n2", "eff", 0.36, 1000, 2, 0.5);
  static const char *const hosts[3][2] = {{"n1", "n2"}, {"n1", "n3"}, {"n1", "n3"}};
  const unsigned first[3] = {0, 20, 40}, end[3] = {25, crash ? 46 : 60, 60};
  const double launch_t[3] = {1003, 1018.7, 1033.3}, pi0[3] = {1004, 1019.5, 1034.5};
  for (int l = 0; l < (crash ? 3 : 2); l++) {
    if (l == 1) {
      fputs("{\"ev\":\"node_terminated\",\"t\":1017.0,\"node\":\"n2\",\"type\":\"eff\"}\n", f);
      node_life(f, "n3", "eff", 1.8, 1017.2, 1, 0.3);
      fprintf(f, "{\"ev\":\"node_lost\",\"t\":1018.6,\"nodes\":[\"n2\"],\"what\":\"n2 (eff)\","
                 "\"launch\":0,\"iterations_done\":25,\"checkpoint_next_iter\":20,"
                 "\"iterations_lost\":5,\"checkpoint\":\"/tmp/ck\",\"replacement\":[\"n3\"]%s}\n",
              every);
    }
    if (l == 2)
      fprintf(f, "{\"ev\":\"node_lost\",\"t\":1033.2,\"nodes\":[],\"what\":\"job crashed "
                 "(status 1)\",\"launch\":1,\"iterations_done\":46,\"checkpoint_next_iter\":40,"
                 "\"iterations_lost\":6,\"checkpoint\":\"/tmp/ck\",\"replacement\":[]%s}\n",
              every);
    fprintf(f, "{\"ev\":\"%s\",\"t\":%.1f,\"launch\":%d}\n", l ? "relaunch" : "launch",
            launch_t[l], l);
    for (unsigned r = 0; r < 2; r++) {
      fprintf(f, "{\"ev\":\"hello\",\"t\":%.1f,\"rank\":%u,\"node\":\"%s\"}\n", launch_t[l] + 0.1,
              r, hosts[l][r]);
      fprintf(f, "{\"ev\":\"init_begin\",\"t\":%.1f,\"rank\":%u,\"t_ns\":%.0f}\n",
              launch_t[l] + 0.1, r, (launch_t[l] + 0.1) * 1e9);
      fprintf(f, "{\"ev\":\"init_end\",\"t\":%.1f,\"rank\":%u,\"t_ns\":%.0f}\n", pi0[l], r,
              pi0[l] * 1e9);
    }
    for (unsigned it = first[l]; it < end[l]; it++) {
      double b = pi0[l] + 0.5 * (it - first[l]);
      for (unsigned r = 0; r < 2; r++) pi_line(f, r, it, b, 0.4, 0.5);
      if (it % 10 == 9)
        fprintf(f, "{\"ev\":\"checkpoint\",\"t\":%.3f,\"rank\":0,\"t_ns\":%.0f,\"iter\":%u,"
                   "\"path\":\"/tmp/ck\"}\n", b + 0.52, (b + 0.51) * 1e9, it);
      if (l && it == first[l])
        fprintf(f, "{\"ev\":\"node_lost_recovered\",\"t\":%.3f,\"launch\":%d,"
                   "\"downtime_s\":%.1f,\"iterations_lost\":%d,\"cost_usd\":0.0005}\n",
                b + 0.6, l, l == 1 ? 3.0 : 2.0, l == 1 ? 5 : 6);
    }
  }
  double t_end = crash ? 1044.5 : 1040.0;
  fprintf(f, "{\"ev\":\"node_terminated\",\"t\":%.1f,\"node\":\"n1\",\"type\":\"eff\"}\n", t_end);
  fprintf(f, "{\"ev\":\"node_terminated\",\"t\":%.1f,\"node\":\"n3\",\"type\":\"eff\"}\n", t_end);
  fprintf(f, "{\"ev\":\"run_end\",\"t\":%.1f,\"status\":0}\n", t_end + 0.2);
  ASSERT_EQ_INT(fclose(f), 0);
}

#ifndef PM_REPORT_RENDER

static const model_type *find_type(const model_run *m, const char *type) {
  for (size_t i = 0; i < m->n_types; i++)
    if (!strcmp(m->types[i].type, type)) return &m->types[i];
  TEST_FAIL_("no type %s in the model", type);
}

static const model_steady *find_steady(const model_run *m, const char *type, const char *ph) {
  for (size_t i = 0; i < m->n_steady; i++)
    if (!strcmp(m->steady[i].type, type) && !strcmp(m->steady[i].phase, ph))
      return &m->steady[i];
  TEST_FAIL_("no steady estimate for %s / %s", type, ph);
}

static json_object *jget(json_object *o, const char *path) {
  /* "a.b.0.c": members and array indices */
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
    if (json_object_is_type(o, json_type_array)) o = json_object_array_get_idx(o, (size_t)atoi(k));
    else if (!json_object_object_get_ex(o, k, &o)) o = NULL;
    if (!o) TEST_FAIL_("report.json has no %s (at %s)", path, k);
  }
  return o;
}

/* ---- the model ------------------------------------------------------------ */

TEST(model_numbers_from_known_journal) {
  char dir[PATH_MAX], err[512];
  make_dir(dir, sizeof dir, "model");
  write_reference(dir);
  model_run m;
  const char *warn = "unset";
  int rc = model_load(dir, &m, &warn, err, sizeof err);
  if (rc) TEST_FAIL_("model_load: %s", err);
  ASSERT(warn == NULL);
  ASSERT_EQ_INT(model_derive(&m, err, sizeof err), 0);
  ASSERT_EQ_INT(m.n_nodes, 4);
  ASSERT_EQ_INT(m.n_launches, 2);
  ASSERT_EQ_INT(m.n_pis, 100);
  ASSERT_NEAR(m.t0_s, 1000, 1e-9);
  ASSERT_NEAR(m.end_s, 1032.5, 1e-9);
  ASSERT(m.records > m.known_records); /* the foreign event was skipped */

  const model_type *small = find_type(&m, "small"), *big = find_type(&m, "big");
  ASSERT_NEAR(small->boot_s, 2.0, 1e-6);
  ASSERT_NEAR(small->stage_s, 0.5, 1e-6);
  ASSERT_NEAR(small->setup_s, 2.5, 1e-6);
  ASSERT_NEAR(big->boot_s, 3.0, 1e-6);
  ASSERT_NEAR(big->setup_s, 3.4, 1e-6);
  ASSERT_EQ_INT(big->n_nodes, 2);
  ASSERT_NEAR(small->init_s, 1.0, 1e-6);
  ASSERT_EQ_INT(small->n_epochs, 2);
  ASSERT_NEAR(small->epoch_s, (6.5 + 5.5) / 2, 1e-6);

  const model_steady *s = find_steady(&m, "small", "train");
  ASSERT_NEAR(s->pi_s, 0.55, 1e-6); /* the slow first PI is warm-up */
  ASSERT_NEAR(s->compute_s, 0.5, 1e-6);
  ASSERT(s->warmup_pis >= 1);
  s = find_steady(&m, "big", HOSTILE_PHASE);
  ASSERT_EQ_INT(s->n_series, 2);
  ASSERT_NEAR(s->pi_s, 0.25, 1e-6);
  ASSERT_NEAR(s->compute_s, 0.2, 1e-6);
  ASSERT_NEAR(find_steady(&m, "mid", "train")->compute_s, 0.35, 1e-6);

  ASSERT_EQ_INT(m.n_switches, 1);
  const model_switch *w = &m.switches[0];
  ASSERT_NEAR(w->checkpoint_s, 1.0, 1e-6);
  ASSERT_NEAR(w->restart_s, 1.0, 1e-6);
  ASSERT_NEAR(w->reinit_s, 1.5, 1e-6);
  ASSERT_NEAR(w->downtime_s, 3.5, 1e-6);
  ASSERT_NEAR(w->stop_t_s, 1022, 1e-6);
  ASSERT_STREQ(w->to, "2 x big");
  ASSERT_NEAR(w->setup_s, 3.4, 1e-9); /* from switch_done */

  ASSERT_EQ_INT(m.n_decisions, 1);
  ASSERT_STREQ(m.decisions[0].action, "switch");
  ASSERT_NEAR(m.decisions[0].pred_remaining_s, 20, 1e-9);
  ASSERT_NEAR(m.decisions[0].actual_remaining_s, 12.5, 1e-9);

  /* n1: 24.1 s billed per second -> 25 s at 0.36 $/h */
  ASSERT_NEAR(m.nodes[0].cost_usd, 25 * 0.36 / 3600, 1e-12);
  ASSERT_NEAR(model_cost_at(&m, 1010), 10 * (0.36 + 1.8 + 0.72) / 3600, 1e-12);
  model_free(&m);
}

/* ---- renderers ---------------------------------------------------------- */

TEST(metrics_csv_has_one_row_per_pi_per_rank) {
  char dir[PATH_MAX], err[512];
  make_dir(dir, sizeof dir, "csv");
  write_reference(dir);
  int rc = report_build(dir, NULL, err, sizeof err);
  if (rc) TEST_FAIL_("report_build: %s", err);
  char *csv = slurp(dir, "metrics.csv");
  int lines = 0;
  for (char *p = csv; *p; p++) lines += *p == '\n';
  ASSERT_EQ_INT(lines, 1 + 3 * 20 + 2 * 20);
  static const char header[] =
      "launch,rank,node,type,phase,iteration,time_s,compute_s,comm_s,total_s,samples\n";
  ASSERT(!strncmp(csv, header, strlen(header)));
  /* rank 0 of launch 0, its first (warm-up) PI: ends 12.55 s after t0 */
  ASSERT_CONTAINS(csv, "\n0,0,n1,small,train,0,12.550000,1.500000000,0.050000000,1.550000000,8\n");
  ASSERT_CONTAINS(csv, "\n1,1,n4,big," HOSTILE_PHASE ",39,");
  ASSERT_CONTAINS(csv, "\n0,2," HOSTILE_NODE ",mid,train,5,");
  free(csv);
}

TEST(report_json_fields) {
  char dir[PATH_MAX], err[512];
  make_dir(dir, sizeof dir, "json");
  write_reference(dir);
  int rc = report_build(dir, NULL, err, sizeof err);
  if (rc) TEST_FAIL_("report_build: %s", err);
  char *txt = slurp(dir, "report.json");
  json_object *o = json_tokener_parse(txt);
  free(txt);
  ASSERT(o != NULL);
  ASSERT_STREQ(json_object_get_string(jget(o, "schema")), "paramount-report/1");
  ASSERT_NEAR(json_object_get_double(jget(o, "duration_s")), 32.5, 1e-9);
  ASSERT_EQ_INT(json_object_get_int(jget(o, "launches")), 2);
  ASSERT_EQ_INT(json_object_array_length(jget(o, "nodes")), 4);
  ASSERT_NEAR(json_object_get_double(jget(o, "switches.0.checkpoint_s")), 1.0, 1e-6);
  ASSERT_NEAR(json_object_get_double(jget(o, "switches.0.restart_s")), 1.0, 1e-6);
  ASSERT_NEAR(json_object_get_double(jget(o, "switches.0.reinit_s")), 1.5, 1e-6);
  ASSERT_NEAR(json_object_get_double(jget(o, "switches.0.downtime_s")), 3.5, 1e-6);
  ASSERT_NEAR(json_object_get_double(jget(o, "decisions.0.predicted_remaining_s")), 20, 1e-9);
  ASSERT_NEAR(json_object_get_double(jget(o, "decisions.0.actual_remaining_s")), 12.5, 1e-9);
  ASSERT_STREQ(json_object_get_string(jget(o, "decisions.0.target_type")), "big");
  ASSERT_STREQ(json_object_get_string(jget(o, "types.0.type")), "small");
  ASSERT_NEAR(json_object_get_double(jget(o, "types.0.setup_s")), 2.5, 1e-6);
  ASSERT_NEAR(json_object_get_double(jget(o, "types.0.phases.0.pi_s")), 0.55, 1e-6);
  /* the policy predicted the ideal: 2 x big, 40 PIs of 0.25 s + setup 3.4 + init 1 */
  ASSERT(json_object_get_boolean(jget(o, "ideal.known")));
  ASSERT_STREQ(json_object_get_string(jget(o, "ideal.source")), "policy");
  ASSERT_NEAR(json_object_get_double(jget(o, "ideal.duration_s")), 3.4 + 1 + 40 * 0.25, 1e-6);
  ASSERT_NEAR(json_object_get_double(jget(o, "ideal.cost_usd")), 2 * 1.8 / 3600 * 14.4, 1e-9);
  double cost = json_object_get_double(jget(o, "cost_usd"));
  size_t n = json_object_array_length(jget(o, "cost_curve"));
  ASSERT(n >= 4);
  char last[64];
  snprintf(last, sizeof last, "cost_curve.%zu.1", n - 1);
  /* accrual ends a little under the per-second billed total */
  ASSERT_OP_DBL(json_object_get_double(jget(o, last)), <=, cost);
  ASSERT_OP_DBL(json_object_get_double(jget(o, last)), >, cost * 0.95);
  json_object_put(o);
}

TEST(html_has_every_chart_and_escapes_journal_strings) {
  char dir[PATH_MAX], err[512];
  make_dir(dir, sizeof dir, "html");
  write_reference(dir);
  int rc = report_build(dir, NULL, err, sizeof err);
  if (rc) TEST_FAIL_("report_build: %s", err);
  char *html = slurp(dir, "report.html");
  static const char *const charts[] = {"chart-pi", "chart-composition", "chart-cost",
                                       "chart-remaining"};
  for (size_t i = 0; i < 4; i++) {
    char id[64];
    snprintf(id, sizeof id, "<svg id=\"%s\"", charts[i]);
    const char *at = strstr(html, id);
    if (!at) TEST_FAIL_("report.html has no %s", id);
    const char *end = strstr(at, "</svg>");
    ASSERT(end != NULL);
    /* something is drawn inside, not just the axes */
    int marks = 0;
    for (const char *p = at; p < end && (p = strstr(p, "<")); p++)
      marks += !strncmp(p, "<circle", 7) || !strncmp(p, "<rect", 5) ||
               !strncmp(p, "<path class=\"series", 19);
    if (marks < 2) TEST_FAIL_("%s has %d marks", charts[i], marks);
  }
  ASSERT(strstr(html, "<script") == NULL);
  ASSERT(strstr(html, "<b>cheaper") == NULL);
  ASSERT_CONTAINS(html, "&lt;script&gt;alert(1)&lt;/script&gt;");
  ASSERT_CONTAINS(html, "&lt;script&gt;alert(2)&lt;/script&gt;");
  ASSERT_CONTAINS(html, "@media print");
  ASSERT(strstr(html, "http://") == strstr(html, "http://www.w3.org/2000/svg"));
  ASSERT(strstr(html, "https://") == NULL);
  free(html);
}

/* ---- failure paths --------------------------------------------------------- */

TEST(truncated_journal_is_read_with_a_warning) {
  char dir[PATH_MAX], err[512];
  make_dir(dir, sizeof dir, "trunc");
  write_reference(dir);
  FILE *f = open_journal(dir, "a");
  fputs("{\"ev\":\"pi\",\"t\":1033,\"rank\":0,\"it", f); /* the crash */
  fclose(f);
  const char *warn = NULL;
  report_opts o = {.warn = &warn};
  int rc = report_build(dir, &o, err, sizeof err);
  if (rc) TEST_FAIL_("report_build: %s", err);
  ASSERT(warn != NULL);
  ASSERT_CONTAINS(warn, "incomplete");
  char *html = slurp(dir, "report.html");
  ASSERT_CONTAINS(html, "class=\"warn\"");
  free(html);
  char *csv = slurp(dir, "metrics.csv");
  int lines = 0;
  for (char *p = csv; *p; p++) lines += *p == '\n';
  ASSERT_EQ_INT(lines, 101); /* every complete record, nothing of the torn one */
  free(csv);
}

static int build_with(const char *name, const char *content, char *err, size_t cap) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof dir, name);
  FILE *f = open_journal(dir, "w");
  fputs(content, f);
  fclose(f);
  int rc = report_build(dir, NULL, err, cap);
  char p[PATH_MAX + 32];
  snprintf(p, sizeof p, "%s/report.html", dir);
  struct stat st;
  if (rc) ASSERT(stat(p, &st) != 0); /* no half report left behind */
  return rc;
}

TEST(foreign_jsonl_is_refused) {
  char err[512];
  ASSERT_EQ_INT(build_with("foreign1", "{\"level\":\"info\",\"msg\":\"hello\"}\n", err,
                           sizeof err), PM_EPARSE);
  ASSERT_CONTAINS(err, "line 1");
  ASSERT_CONTAINS(err, "not a Paramount journal");
  ASSERT_EQ_INT(build_with("foreign2", "{\"ev\":\"login\",\"t\":1}\n{\"ev\":\"logout\",\"t\":2}\n",
                           err, sizeof err), PM_EPARSE);
  ASSERT_CONTAINS(err, "none of its 2 records");
}

TEST(garbage_is_refused) {
  char err[512];
  ASSERT_EQ_INT(build_with("garbage", "\x7f" "ELF\x01\x02\x03 not json at all\n", err,
                           sizeof err), PM_EPARSE);
  ASSERT_CONTAINS(err, "line 1");
}

TEST(malformed_known_event_names_its_line) {
  char err[512];
  ASSERT_EQ_INT(build_with("badpi",
                           "{\"ev\":\"intake_listen\",\"t\":1}\n"
                           "{\"ev\":\"hello\",\"t\":2,\"rank\":0,\"node\":\"n1\"}\n"
                           "{\"ev\":\"pi\",\"t\":3,\"rank\":0,\"iter\":0,\"t_begin_ns\":1,"
                           "\"wall_ns\":\"fast\",\"compute_ns\":1,\"comm_ns\":0}\n",
                           err, sizeof err), PM_EPARSE);
  ASSERT_CONTAINS(err, "journal line 3");
  ASSERT_CONTAINS(err, "wall_ns");
  ASSERT_EQ_INT(build_with("badrank", "{\"ev\":\"hello\",\"t\":2,\"rank\":-4,\"node\":\"n1\"}\n",
                           err, sizeof err), PM_EPARSE);
  ASSERT_CONTAINS(err, "negative");
  ASSERT_EQ_INT(build_with("badt", "{\"ev\":\"node_ready\",\"node\":\"n1\"}\n", err, sizeof err),
                PM_EPARSE);
  ASSERT_CONTAINS(err, "\"t\" is missing");
}

TEST(missing_journal_is_enoent) {
  char dir[PATH_MAX], err[512];
  make_dir(dir, sizeof dir, "empty");
  ASSERT_EQ_INT(report_build(dir, NULL, err, sizeof err), PM_ENOENT);
  ASSERT_CONTAINS(err, "journal.jsonl");
}

TEST(ideal_from_a_comparison_run) {
  char a[PATH_MAX], b[PATH_MAX], err[512];
  make_dir(a, sizeof a, "idealA");
  make_dir(b, sizeof b, "idealB");
  write_reference(a);
  write_reference(b);
  ASSERT_EQ_INT(report_build(a, NULL, err, sizeof err), 0);
  report_opts o = {.ideal_dir = a};
  int rc = report_build(b, &o, err, sizeof err);
  if (rc) TEST_FAIL_("report_build: %s", err);
  char *txt = slurp(b, "report.json");
  json_object *j = json_tokener_parse(txt);
  free(txt);
  ASSERT_STREQ(json_object_get_string(jget(j, "ideal.source")), "run");
  ASSERT_NEAR(json_object_get_double(jget(j, "ideal.cost_ratio")), 1.0, 1e-9);
  json_object_put(j);
  /* a directory without a report is refused, naming the file */
  o.ideal_dir = "/nonexistent-ideal-run";
  ASSERT_EQ_INT(report_build(b, &o, err, sizeof err), PM_ENOENT);
  ASSERT_CONTAINS(err, "/nonexistent-ideal-run/report.json");
}

TEST(no_switch_run_omits_the_ideal_with_a_note) {
  char dir[PATH_MAX], err[512];
  make_dir(dir, sizeof dir, "record");
  FILE *f = open_journal(dir, "w");
  fputs("{\"ev\":\"intake_listen\",\"t\":100}\n"
        "{\"ev\":\"hello\",\"t\":100.5,\"rank\":0,\"node\":\"\"}\n", f);
  for (unsigned it = 0; it < 30; it++) pi_line(f, 0, it, 101 + it * 0.1, 0.08, 0.1);
  fclose(f);
  int rc = report_build(dir, NULL, err, sizeof err);
  if (rc) TEST_FAIL_("report_build: %s", err);
  char *html = slurp(dir, "report.html");
  ASSERT_CONTAINS(html, "<svg id=\"chart-pi\"");
  ASSERT_CONTAINS(html, "No node price in this journal");
  ASSERT_CONTAINS(html, "No decision");
  free(html);
}

/* ---- faults ------------------------------------------------------------------ */

static void load_derived(const char *dir, model_run *m) {
  char err[512];
  int rc = model_load(dir, m, NULL, err, sizeof err);
  if (rc) TEST_FAIL_("model_load: %s", err);
  rc = model_derive(m, err, sizeof err);
  if (rc) TEST_FAIL_("model_derive: %s", err);
}

TEST(node_loss_is_a_fault_not_a_switch) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof dir, "fault");
  write_faults(dir, 10, 0);
  model_run m;
  load_derived(dir, &m);
  ASSERT_EQ_INT(m.n_launches, 2);
  ASSERT_EQ_INT(m.n_switches, 0); /* the recovery relaunch is not a switch */
  ASSERT_EQ_INT(m.n_faults, 1);
  const model_fault *x = &m.faults[0];
  ASSERT_EQ_INT(x->n_lost, 1);
  ASSERT_STREQ(m.nodes[x->lost[0]].id, "n2");
  ASSERT_STREQ(m.nodes[x->lost[0]].type, "eff");
  ASSERT_EQ_INT(x->n_repl, 1);
  ASSERT_STREQ(m.nodes[x->repl[0]].id, "n3");
  ASSERT_EQ_INT(x->from_launch, 0);
  ASSERT_EQ_INT(x->to_launch, 1);
  ASSERT_NEAR(x->lost_s, 1017.0, 1e-9); /* n2's termination, before node_lost */
  ASSERT_NEAR(x->t_s, 1018.6, 1e-9);
  ASSERT(x->has_last_iter);
  ASSERT_EQ_U64(x->last_iter, 24);
  ASSERT_EQ_U64(x->resume_iter, 20);
  ASSERT_EQ_U64(x->iters_lost, 5);
  ASSERT_EQ_U64(x->interval, 10);
  ASSERT(x->interval_from_config);
  ASSERT_STREQ(x->checkpoint, "/tmp/ck");
  ASSERT_NEAR(x->last_pi_s, 1016.5, 1e-6);
  ASSERT_NEAR(x->last_useful_s, 1014.0, 1e-6); /* iteration 19 */
  ASSERT_NEAR(x->first_pi_s, 1019.5, 1e-6);
  ASSERT_NEAR(x->downtime_s, 3.0, 1e-6);
  ASSERT_NEAR(x->ctl_downtime_s, 3.0, 1e-9);
  ASSERT_NEAR(x->ctl_cost_usd, 0.0005, 1e-12);
  /* n2 from 1014 to 1017, n1 from 1014 to 1019.5, n3 from 1017.2 to 1019.5 */
  ASSERT_NEAR(x->lost_usd, 0.36 * 3.0 / 3600, 1e-9);
  ASSERT_NEAR(x->survivors_usd, 0.36 * 5.5 / 3600, 1e-9);
  ASSERT_NEAR(x->replacement_usd, 1.8 * 2.3 / 3600, 1e-9);
  ASSERT_NEAR(x->cost_usd, (0.36 * 8.5 + 1.8 * 2.3) / 3600, 1e-9);
  model_free(&m);
}

TEST(crash_fault_and_interval_seen_from_checkpoints) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof dir, "crash");
  write_faults(dir, 0, 1);
  model_run m;
  load_derived(dir, &m);
  ASSERT_EQ_INT(m.n_launches, 3);
  ASSERT_EQ_INT(m.n_switches, 0);
  ASSERT_EQ_INT(m.n_faults, 2);
  ASSERT_EQ_U64(m.faults[0].interval, 10); /* 9 -> 19 */
  ASSERT(!m.faults[0].interval_from_config);
  const model_fault *x = &m.faults[1];
  ASSERT_EQ_INT(x->n_lost, 0);
  ASSERT_EQ_INT(x->n_repl, 0);
  ASSERT_STREQ(x->what, "job crashed (status 1)");
  ASSERT_EQ_INT(x->from_launch, 1);
  ASSERT_EQ_INT(x->to_launch, 2);
  ASSERT_NEAR(x->lost_s, 1033.2, 1e-9); /* no node: the record's time */
  ASSERT_EQ_U64(x->last_iter, 45);
  ASSERT_EQ_U64(x->resume_iter, 40);
  ASSERT_EQ_U64(x->iters_lost, 6);
  ASSERT_EQ_U64(x->interval, 10);
  ASSERT_NEAR(x->last_pi_s, 1032.5, 1e-6);
  ASSERT_NEAR(x->last_useful_s, 1029.5, 1e-6); /* iteration 39 */
  ASSERT_NEAR(x->first_pi_s, 1034.5, 1e-6);
  ASSERT_NEAR(x->downtime_s, 2.0, 1e-6);
  /* both nodes survive: n1 (0.36) and n3 (1.8) from 1029.5 to 1034.5 */
  ASSERT_NEAR(x->lost_usd, 0, 1e-12);
  ASSERT_NEAR(x->replacement_usd, 0, 1e-12);
  ASSERT_NEAR(x->cost_usd, (0.36 + 1.8) * 5.0 / 3600, 1e-9);
  model_free(&m);
}

TEST(faults_in_report_json_and_html) {
  char dir[PATH_MAX], err[512];
  make_dir(dir, sizeof dir, "faultrender");
  write_faults(dir, 10, 0);
  int rc = report_build(dir, NULL, err, sizeof err);
  if (rc) TEST_FAIL_("report_build: %s", err);
  char *txt = slurp(dir, "report.json");
  json_object *o = json_tokener_parse(txt);
  free(txt);
  ASSERT(o != NULL);
  ASSERT_EQ_INT(json_object_array_length(jget(o, "switches")), 0);
  ASSERT_EQ_INT(json_object_array_length(jget(o, "faults")), 1);
  ASSERT_STREQ(json_object_get_string(jget(o, "faults.0.nodes.0")), "n2");
  ASSERT_STREQ(json_object_get_string(jget(o, "faults.0.types.0")), "eff");
  ASSERT_STREQ(json_object_get_string(jget(o, "faults.0.replacement.0")), "n3");
  /* seconds since run_start (999.5), the controller's first record */
  ASSERT_NEAR(json_object_get_double(jget(o, "faults.0.t_s")), 17.5, 1e-6);
  ASSERT_EQ_INT(json_object_get_int(jget(o, "faults.0.iterations_lost")), 5);
  ASSERT_EQ_INT(json_object_get_int(jget(o, "faults.0.resume_iter")), 20);
  ASSERT_EQ_INT(json_object_get_int(jget(o, "faults.0.checkpoint_interval")), 10);
  ASSERT_STREQ(json_object_get_string(jget(o, "faults.0.checkpoint_interval_source")), "config");
  ASSERT(json_object_get_boolean(jget(o, "faults.0.within_interval")));
  ASSERT_NEAR(json_object_get_double(jget(o, "faults.0.downtime_s")), 3.0, 1e-6);
  ASSERT_NEAR(json_object_get_double(jget(o, "faults.0.cost_usd")),
              (0.36 * 8.5 + 1.8 * 2.3) / 3600, 1e-9);
  ASSERT_NEAR(json_object_get_double(jget(o, "faults.0.controller_cost_usd")), 0.0005, 1e-12);
  json_object_put(o);
  char *html = slurp(dir, "report.html");
  const char *pi = strstr(html, "<svg id=\"chart-pi\"");
  ASSERT(pi != NULL);
  const char *fault = strstr(pi, "<line class=\"fault\"");
  if (!fault || fault > strstr(pi, "</svg>")) TEST_FAIL_("no fault marker on the PI chart");
  ASSERT_CONTAINS(pi, ">fault 1: n2<");
  ASSERT_CONTAINS(html, "<h2>Faults</h2>");
  ASSERT_CONTAINS(html, "<table id=\"faults\">");
  ASSERT_CONTAINS(html, "<td class=\"l\">n2 (eff)</td><td>5</td><td>20</td><td>10 (config)</td>");
  ASSERT_CONTAINS(html, "<td class=\"l\">n3 (eff)</td>");
  ASSERT_CONTAINS(html, "The job ran on one node set; no switch.");
  free(html);
}

TEST(run_without_fault_says_so) {
  char dir[PATH_MAX], err[512];
  make_dir(dir, sizeof dir, "nofault");
  write_reference(dir);
  int rc = report_build(dir, NULL, err, sizeof err);
  if (rc) TEST_FAIL_("report_build: %s", err);
  char *html = slurp(dir, "report.html");
  ASSERT_CONTAINS(html, "No node was lost and the job never crashed.");
  ASSERT(strstr(html, "class=\"fault\"") == NULL);
  free(html);
  char *txt = slurp(dir, "report.json");
  json_object *o = json_tokener_parse(txt);
  free(txt);
  ASSERT_EQ_INT(json_object_array_length(jget(o, "faults")), 0);
  ASSERT_EQ_INT(json_object_array_length(jget(o, "switches")), 1);
  json_object_put(o);
}

TEST(iterations_lost_beyond_the_interval_are_flagged) {
  char dir[PATH_MAX], err[512];
  make_dir(dir, sizeof dir, "faultbound");
  write_faults(dir, 4, 0); /* 5 lost with checkpoint_every 4 */
  int rc = report_build(dir, NULL, err, sizeof err);
  if (rc) TEST_FAIL_("report_build: %s", err);
  char *html = slurp(dir, "report.html");
  ASSERT_CONTAINS(html, "<td>4 (config) <b class=\"bad\">exceeded</b></td>");
  free(html);
  char *txt = slurp(dir, "report.json");
  json_object *o = json_tokener_parse(txt);
  free(txt);
  ASSERT(!json_object_get_boolean(jget(o, "faults.0.within_interval")));
  json_object_put(o);
}

TEST(malformed_fault_records_name_their_line) {
  char err[512];
  static const char head[] = "{\"ev\":\"intake_listen\",\"t\":1}\n";
  static const struct {
    const char *rec, *want;
  } cases[] = {
      {"{\"ev\":\"node_lost\",\"t\":2,\"nodes\":\"n2\",\"what\":\"x\",\"iterations_done\":1,"
       "\"checkpoint_next_iter\":0,\"iterations_lost\":1,\"replacement\":[]}",
       "field \"nodes\" is not an array"},
      {"{\"ev\":\"node_lost\",\"t\":2,\"nodes\":[\"n2\",7],\"what\":\"x\",\"iterations_done\":1,"
       "\"checkpoint_next_iter\":0,\"iterations_lost\":1,\"replacement\":[]}",
       "field \"nodes\" item 1 is not a string"},
      {"{\"ev\":\"node_lost\",\"t\":2,\"nodes\":[],\"what\":\"x\",\"iterations_done\":1,"
       "\"iterations_lost\":1,\"replacement\":[]}",
       "field \"checkpoint_next_iter\" is missing"},
      {"{\"ev\":\"node_lost\",\"t\":2,\"nodes\":[],\"what\":\"x\",\"iterations_done\":1,"
       "\"checkpoint_next_iter\":0,\"iterations_lost\":1}",
       "field \"replacement\" is missing"},
      {"{\"ev\":\"node_lost\",\"t\":2,\"nodes\":[],\"what\":\"x\",\"iterations_done\":1,"
       "\"checkpoint_next_iter\":0,\"iterations_lost\":1,\"replacement\":[],"
       "\"checkpoint_every\":-3}",
       "field \"checkpoint_every\" is negative"},
      {"{\"ev\":\"node_lost_recovered\",\"t\":2,\"downtime_s\":1,\"cost_usd\":0}",
       "no node_lost before it"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[1024], name[32];
    snprintf(text, sizeof text, "%s%s\n", head, cases[i].rec);
    snprintf(name, sizeof name, "badfault%zu", i);
    ASSERT_EQ_INT(build_with(name, text, err, sizeof err), PM_EPARSE);
    ASSERT_CONTAINS(err, "journal line 2");
    ASSERT_CONTAINS(err, cases[i].want);
  }
  /* a recovery record with a mistyped figure */
  ASSERT_EQ_INT(build_with("badrecovered",
                           "{\"ev\":\"node_lost\",\"t\":2,\"nodes\":[],\"what\":\"x\","
                           "\"iterations_done\":1,\"checkpoint_next_iter\":0,"
                           "\"iterations_lost\":1,\"replacement\":[]}\n"
                           "{\"ev\":\"node_lost_recovered\",\"t\":3,\"downtime_s\":\"1\","
                           "\"cost_usd\":0}\n",
                           err, sizeof err), PM_EPARSE);
  ASSERT_CONTAINS(err, "journal line 2");
  ASSERT_CONTAINS(err, "\"downtime_s\" is not a number");
}

/* ---- clocks -------------------------------------------------------------------- */

/* A run of 20.5 s on the controller's clock, two ranks on n1, n2; rank 1
 * stamps its times skew_s off the controller's, each record received 0.01
 * s after the rank stamped it.  controller: run_start, node records and
 * launch as paramount run writes them; else only launch and run_end, as
 * paramount record does.  PIs of 0.5 s from 10004, 20 per rank. */
static void write_skewed(const char *dir, double skew_s, int controller) {
  FILE *f = open_journal(dir, "w");
  if (controller) {
    fputs("{\"ev\":\"run_start\",\"t\":10000.0,\"policy\":\"static\"}\n", f);
    node_life(f, "n1", "eff", 0.36, 10000.5, 1, 0.5);
    node_life(f, "n2", "eff", 0.36, 10000.5, 1, 0.5);
  }
  fputs("{\"ev\":\"launch\",\"t\":10003.0,\"launch\":0}\n", f);
  for (unsigned r = 0; r < 2; r++) {
    double own = r ? skew_s : 0;
    fprintf(f, "{\"ev\":\"hello\",\"t\":10003.1,\"rank\":%u,\"node\":\"n%u\"}\n", r, r + 1);
    fprintf(f, "{\"ev\":\"init_begin\",\"t\":10003.21,\"rank\":%u,\"t_ns\":%.0f}\n", r,
            (10003.2 + own) * 1e9);
    fprintf(f, "{\"ev\":\"init_end\",\"t\":10004.01,\"rank\":%u,\"t_ns\":%.0f}\n", r,
            (10004.0 + own) * 1e9);
  }
  for (unsigned it = 0; it < 20; it++) {
    double b = 10004 + 0.5 * it;
    for (unsigned r = 0; r < 2; r++) {
      double own = r ? skew_s : 0;
      fprintf(f, "{\"ev\":\"pi\",\"t\":%.6f,\"rank\":%u,\"iter\":%u,\"t_begin_ns\":%.0f,"
                 "\"wall_ns\":500000000,\"compute_ns\":400000000,\"comm_ns\":100000000}\n",
              b + 0.51, r, it, (b + own) * 1e9);
    }
    if (it == 9)
      fprintf(f, "{\"ev\":\"checkpoint\",\"t\":%.3f,\"rank\":1,\"t_ns\":%.0f,\"iter\":9,"
                 "\"path\":\"/tmp/ck\"}\n", b + 0.53, (b + 0.52 + skew_s) * 1e9);
  }
  if (controller) {
    fputs("{\"ev\":\"node_terminated\",\"t\":10020.2,\"node\":\"n1\",\"type\":\"eff\"}\n", f);
    fputs("{\"ev\":\"node_terminated\",\"t\":10020.2,\"node\":\"n2\",\"type\":\"eff\"}\n", f);
  }
  fputs("{\"ev\":\"run_end\",\"t\":10020.5,\"status\":0}\n", f);
  ASSERT_EQ_INT(fclose(f), 0);
}

/* A rank's wrong clock neither stretches nor shifts the run: the span is
 * the controller's, the rank's times are moved onto the controller's
 * clock, and the report says which rank was off and by how much.  A skew
 * within the slack is left alone, without a warning. */
TEST(skewed_rank_clock_keeps_the_controllers_timeline) {
  static const struct {
    double skew_s;
    int controller, flagged;
    const char *want; /* in the warning */
  } cases[] = {
      {3600, 1, 1, "rank 1 (launch 0) on node n2: clock differs by ~+3600.0 s"},
      {-3600, 1, 1, "rank 1 (launch 0) on node n2: clock differs by ~-3600.0 s"},
      {3600, 0, 1, "rank 1 (launch 0) on node n2: clock differs by ~+3600.0 s"},
      {0.5, 1, 0, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char dir[PATH_MAX], name[32], err[512];
    snprintf(name, sizeof name, "skew%zu", i);
    make_dir(dir, sizeof dir, name);
    write_skewed(dir, cases[i].skew_s, cases[i].controller);
    model_run m;
    const char *warn = NULL;
    int rc = model_load(dir, &m, &warn, err, sizeof err);
    if (rc) TEST_FAIL_("case %zu: model_load: %s", i, err);
    ASSERT_EQ_INT(model_derive(&m, err, sizeof err), 0);
    ASSERT_NEAR(m.t0_s, cases[i].controller ? 10000.0 : 10003.0, 1e-9);
    ASSERT_NEAR(m.end_s, 10020.5, 1e-9);
    ASSERT_EQ_INT(m.n_ranks, 2);
    ASSERT_EQ_INT(m.n_clock_fixed, cases[i].flagged ? 1 : 0);
    ASSERT_NEAR(m.ranks[0].clock_fix_s, 0, 0); /* the good rank is untouched */
    ASSERT_NEAR(m.ranks[0].init_begin_s, 10003.2, 1e-6);
    /* moved by its lead over the receive times: the skew, less 0.01 s */
    double fix = cases[i].flagged ? cases[i].skew_s - 0.01 : 0;
    ASSERT_NEAR(m.ranks[1].clock_fix_s, fix, 1e-5);
    ASSERT_NEAR(m.ranks[1].init_begin_s, 10003.2 + cases[i].skew_s - fix, 1e-5);
    for (size_t k = 0; k < m.n_pis; k++) {
      const model_pi *p = &m.pis[k];
      double own = p->rank_idx == 1 ? cases[i].skew_s - fix : 0;
      ASSERT_NEAR(p->t_begin_s, 10004 + 0.5 * (double)p->iter + own, 1e-5);
    }
    ASSERT_EQ_INT(m.n_ckpts, 1);
    ASSERT_NEAR(m.ckpts[0].t_s, 10009.02 + cases[i].skew_s - fix, 1e-5);
    if (cases[i].want) {
      if (!warn) TEST_FAIL_("case %zu: no warning", i);
      ASSERT_CONTAINS(warn, cases[i].want);
      ASSERT(strstr(warn, "rank 0") == NULL);
    } else if (warn) {
      TEST_FAIL_("case %zu: unexpected warning: %s", i, warn);
    }
    model_free(&m);

    /* the same in the files: duration, the warning, PI times in the run */
    const char *bwarn = NULL;
    report_opts o = {.warn = &bwarn};
    rc = report_build(dir, &o, err, sizeof err);
    if (rc) TEST_FAIL_("case %zu: report_build: %s", i, err);
    char *txt = slurp(dir, "report.json");
    json_object *j = json_tokener_parse(txt);
    free(txt);
    ASSERT(j != NULL);
    ASSERT_NEAR(json_object_get_double(jget(j, "duration_s")),
                cases[i].controller ? 20.5 : 17.5, 1e-9);
    json_object *jw = NULL;
    json_object_object_get_ex(jget(j, "journal"), "warning", &jw);
    ASSERT_EQ_INT(jw != NULL, cases[i].want != NULL);
    if (cases[i].want) {
      ASSERT_CONTAINS(json_object_get_string(jw), cases[i].want);
      ASSERT(bwarn != NULL);
      ASSERT_CONTAINS(bwarn, cases[i].want);
    }
    json_object_put(j);
    char *html = slurp(dir, "report.html");
    ASSERT_CONTAINS(html, cases[i].controller ? "<li>duration<b>20.5 s</b>"
                                              : "<li>duration<b>17.5 s</b>");
    if (cases[i].want) {
      ASSERT_CONTAINS(html, "<p class=\"warn\">");
      ASSERT_CONTAINS(html, cases[i].want);
    }
    free(html);
    char *csv = slurp(dir, "metrics.csv");
    int rows = 0;
    for (char *l = strchr(csv, '\n'); l && l[1]; l = strchr(l + 1, '\n')) {
      double t = -1;
      /* launch,rank,node,type,phase,iteration,time_s,... */
      const char *c = l + 1;
      for (int comma = 0; comma < 6 && c; comma++) c = strchr(c, ',') ? strchr(c, ',') + 1 : NULL;
      ASSERT(c != NULL);
      ASSERT_EQ_INT(sscanf(c, "%lf", &t), 1);
      ASSERT_OP_DBL(t, >=, 0);
      ASSERT_OP_DBL(t, <=, cases[i].controller ? 20.5 : 17.5);
      rows++;
    }
    ASSERT_EQ_INT(rows, 40);
    free(csv);
  }
}

#else /* PM_REPORT_RENDER */

/* ---- headless Chromium ------------------------------------------------------ */

static int find_chromium(char *out, size_t cap) {
  const char *env = getenv("PM_CHROMIUM");
  if (env && *env) {
    snprintf(out, cap, "%s", env);
    return access(out, X_OK);
  }
  static const char *const names[] = {"chromium", "chromium-browser", "google-chrome"};
  const char *path = getenv("PATH");
  for (size_t i = 0; i < 3; i++) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path ? path : "/usr/bin:/bin");
    for (char *s = NULL, *d = strtok_r(buf, ":", &s); d; d = strtok_r(NULL, ":", &s)) {
      snprintf(out, cap, "%s/%s", d, names[i]);
      if (access(out, X_OK) == 0) return 0;
    }
  }
  return -1;
}

/* Runs argv with stdout to out_path; kills it after timeout_s. */
static int run_capture(char *const argv[], const char *out_path, int timeout_s) {
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int null = open("/dev/null", O_WRONLY);
    if (fd < 0 || null < 0) _exit(127);
    dup2(fd, 1);
    dup2(null, 2);
    execvp(argv[0], argv);
    _exit(127);
  }
  for (int i = 0; i < timeout_s * 10; i++) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  TEST_FAIL_("%s did not finish within %d s", argv[0], timeout_s);
}

/* Appended to a copy of report.html (the report itself has no script):
 * counts each chart's marks and measures what the browser laid out. */
static const char probe[] =
    "<script>document.body.setAttribute('data-check',Array.prototype.map.call("
    "document.querySelectorAll('svg[id^=chart-]'),function(s){var b=s.getBBox();"
    "return s.id+':'+s.querySelectorAll('path,rect,circle').length+':'+Math.round(b.width)"
    "+':'+Math.round(b.height);}).join(' '));</script></body>";

TEST(render_in_chromium) {
  char chromium[PATH_MAX];
  if (find_chromium(chromium, sizeof chromium) != 0) {
    const char *ci = getenv("CI");
    if (ci && !strcmp(ci, "true"))
      TEST_FAIL_("chromium is not installed (apt-get install chromium); CI needs it");
    printf("skip: chromium not found (set PM_CHROMIUM or install chromium)\n");
    return;
  }
  char dir[PATH_MAX], err[512];
  make_dir(dir, sizeof dir, "render");
  write_reference(dir);
  int rc = report_build(dir, NULL, err, sizeof err);
  if (rc) TEST_FAIL_("report_build: %s", err);

  char *html = slurp(dir, "report.html");
  char *end = strstr(html, "</body>");
  ASSERT(end != NULL);
  *end = '\0';
  char probe_path[PATH_MAX + 32], dom_path[PATH_MAX + 32], profile[PATH_MAX + 32];
  snprintf(probe_path, sizeof probe_path, "%s/probe.html", dir);
  snprintf(dom_path, sizeof dom_path, "%s/dom.html", dir);
  snprintf(profile, sizeof profile, "%s/chromium-profile", dir);
  FILE *f = fopen(probe_path, "w");
  ASSERT(f != NULL);
  fprintf(f, "%s%s</html>\n", html, probe);
  fclose(f);
  free(html);

  char url[PATH_MAX + 64], prof_arg[PATH_MAX + 64];
  snprintf(url, sizeof url, "file://%s", probe_path);
  snprintf(prof_arg, sizeof prof_arg, "--user-data-dir=%s", profile);
  char *dom_argv[] = {chromium, "--headless", "--no-sandbox", "--disable-gpu",
                      "--disable-dev-shm-usage", prof_arg, "--dump-dom", url, NULL};
  ASSERT_EQ_INT(run_capture(dom_argv, dom_path, 120), 0);
  char *dom = slurp(dir, "dom.html");
  char *check = strstr(dom, "data-check=\"");
  if (!check) TEST_FAIL_("the probe did not run; dom: %.300s", dom);
  check += strlen("data-check=\"");
  static const char *const charts[] = {"chart-pi", "chart-composition", "chart-cost",
                                       "chart-remaining"};
  for (size_t i = 0; i < 4; i++) {
    char key[64];
    snprintf(key, sizeof key, "%s:", charts[i]);
    char *at = strstr(check, key);
    if (!at) TEST_FAIL_("chromium drew no %s: %.300s", charts[i], check);
    int marks = 0, w = 0, h = 0;
    ASSERT_EQ_INT(sscanf(at + strlen(key), "%d:%d:%d", &marks, &w, &h), 3);
    printf("%s: %d marks, %dx%d px\n", charts[i], marks, w, h);
    if (marks < 3 || w < 400 || h < 100)
      TEST_FAIL_("%s is not drawn: %d marks, bbox %dx%d", charts[i], marks, w, h);
  }
  free(dom);

  char art[PATH_MAX], png[PATH_MAX + 32], shot[PATH_MAX + 64], log_path[PATH_MAX + 32];
  snprintf(art, sizeof art, "%s/test-artifacts", PM_BINARY_DIR);
  ASSERT_EQ_INT(util_mkdir_p(art), 0);
  snprintf(png, sizeof png, "%s/report.png", art);
  snprintf(shot, sizeof shot, "--screenshot=%s", png);
  snprintf(url, sizeof url, "file://%s/report.html", dir);
  snprintf(log_path, sizeof log_path, "%s/screenshot.log", dir);
  unlink(png);
  char *shot_argv[] = {chromium, "--headless", "--no-sandbox", "--disable-gpu",
                       "--disable-dev-shm-usage", "--hide-scrollbars", prof_arg,
                       "--window-size=1200,2000", shot, url, NULL};
  ASSERT_EQ_INT(run_capture(shot_argv, log_path, 120), 0);
  unsigned char hdr[24];
  f = fopen(png, "rb");
  if (!f) TEST_FAIL_("no screenshot at %s", png);
  ASSERT_EQ_INT(fread(hdr, 1, sizeof hdr, f), 24);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fclose(f);
  ASSERT(!memcmp(hdr, "\x89PNG\r\n\x1a\n", 8));
  unsigned w = (unsigned)hdr[16] << 24 | hdr[17] << 16 | hdr[18] << 8 | hdr[19];
  ASSERT_EQ_INT(w, 1200);
  ASSERT_OP_DBL(size, >, 20000); /* a blank page compresses to a few KB */
  printf("screenshot: %s (%ld bytes)\n", png, size);
}

#endif

TEST_MAIN()
