/* cmd_record.c - `paramount record [--np N] [--out DIR] -- CMD [ARGS...]`.
 *
 * The simplest use of Paramount: run one command (under mpirun with --np)
 * on this machine with a controller listening, record every rank's events
 * into a run directory, and print per rank what its PIs cost.  No nodes,
 * no decisions: the measuring half of `paramount run`.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "common/journal.h"
#include "common/log.h"
#include "common/util.h"
#include "controller/intake.h"
#include "controller/launch.h"
#include "paramount.h"
#include "policy/policy.h"
#include "report/report.h"

#define VERB_NAME "record"
#define RECORD_EXIT_NOT_FOUND 127 /* like env(1) and shells */
#define RECORD_EXIT_NOT_EXEC 126

static void record_usage(FILE *f) {
  fprintf(f,
          "usage: paramount record [--np N] [--out DIR] [--listen ADDR] -- CMD [ARGS...]\n"
          "\n"
          "Runs CMD with a Paramount controller listening, records the events\n"
          "its ranks send through libparamount, and prints per rank: init time,\n"
          "number of PIs, first PI, steady PI estimate, beta and total time.\n"
          "\n"
          "  --np N         run CMD under `mpirun -np N` (mpirun from PATH)\n"
          "  --out DIR      run directory (default: a new runs/YYYYmmdd-HHMMSS-XXXX)\n"
          "  --listen ADDR  numeric address the controller listens on\n"
          "                 (default 127.0.0.1; other addresses are announced)\n"
          "  -h, --help     this help\n"
          "\n"
          "CMD gets PARAMOUNT_ENDPOINT, PARAMOUNT_TOKEN, PARAMOUNT_NODE and\n"
          "PARAMOUNT_RUN_DIR in its environment.  The run directory receives\n"
          "journal.jsonl, metrics.csv, report.json and report.html.\n"
          "SIGINT and SIGTERM are forwarded to CMD.\n"
          "\n"
          "Exit status: CMD's own when it fails (128+N when killed by signal N),\n"
          "0 when it succeeds and the run was recorded, 1 when recording failed,\n"
          "2 for bad usage, 126 when CMD cannot be executed, 127 when CMD (or\n"
          "mpirun) is not found.\n");
}

/* ---- the child ------------------------------------------------------- */

/* Finds name on PATH the way execvp will; a name with a slash is taken
 * as is.  Returns 0 with the path in out, or -1 (errno: ENOENT/EACCES). */
static int record_which(const char *name, char *out, size_t cap) {
  if (strchr(name, '/')) {
    if (access(name, X_OK) == 0) {
      snprintf(out, cap, "%s", name);
      return 0;
    }
    return -1;
  }
  const char *path = getenv("PATH");
  if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
  int saw_eacces = 0;
  for (const char *p = path; *p;) {
    const char *colon = strchr(p, ':');
    size_t n = colon ? (size_t)(colon - p) : strlen(p);
    char cand[PATH_MAX];
    if (snprintf(cand, sizeof cand, "%.*s/%s", (int)n, n ? p : ".", name) <
        (int)sizeof cand) {
      struct stat st;
      if (stat(cand, &st) == 0 && S_ISREG(st.st_mode)) {
        if (access(cand, X_OK) == 0) {
          snprintf(out, cap, "%s", cand);
          return 0;
        }
        saw_eacces = 1;
      }
    }
    p += n;
    if (*p == ':') p++;
  }
  errno = saw_eacces ? EACCES : ENOENT;
  return -1;
}

/* Waits for the child while the intake records its ranks; closes its
 * pidfd. */
static int record_watch(intake *in, launch_child *ch, int *status) {
  pid_t pid = ch->pid;
  if (ch->pidfd >= 0) {
    int rc = intake_run_until(in, ch->pidfd, -1);
    close(ch->pidfd);
    ch->pidfd = -1;
    if (rc < 0) log_warn("the controller loop failed: %s; still waiting for the command",
                         pm_strerror(rc));
  } else {
    /* Kernels before 5.3: poll the child between loop turns. */
    for (;;) {
      pid_t w = waitpid(pid, status, WNOHANG);
      if (w == pid) {
        intake_drain(in, INTAKE_DRAIN_MS);
        return 0;
      }
      if (intake_poll(in, 100) < 0) break;
    }
  }
  return launch_wait(pid, status);
}

/* ---- the per-rank table ---------------------------------------------- */

typedef struct {
  double init_s, first_pi_s, steady_s, steady_halfwidth_s, beta, total_s;
  size_t warmup;
  int settled;
} record_row;

static void record_row_compute(const intake_rank *r, record_row *row) {
  row->init_s = row->first_pi_s = row->steady_s = row->steady_halfwidth_s = NAN;
  row->beta = row->total_s = NAN;
  row->warmup = 0;
  row->settled = 0;
  uint64_t first_begin = r->n_pis ? r->pis[0].t_begin_ns : 0;
  if (r->init_begin_ns) {
    uint64_t end = r->init_end_ns ? r->init_end_ns : first_begin;
    if (end >= r->init_begin_ns) row->init_s = (double)(end - r->init_begin_ns) / 1e9;
  }
  if (r->n_pis == 0) return;
  row->first_pi_s = (double)r->pis[0].wall_ns / 1e9;
  double *x = malloc(r->n_pis * sizeof *x);
  double loop_s = 0;
  uint64_t last_end = 0;
  for (size_t i = 0; i < r->n_pis; i++) {
    const intake_pi *p = &r->pis[i];
    double w = (double)p->wall_ns / 1e9;
    loop_s += w;
    if (x) x[i] = w;
    if (p->t_begin_ns + p->wall_ns > last_end) last_end = p->t_begin_ns + p->wall_ns;
  }
  if (x) {
    policy_steady_cfg_t cfg;
    policy_steady_cfg_default(&cfg);
    policy_steady_t st;
    if (policy_estimate_steady(x, r->n_pis, &cfg, &st) == 0 && st.n_used > 0) {
      row->steady_s = st.mean;
      row->steady_halfwidth_s = (st.hi - st.lo) / 2;
      row->warmup = st.level_start;
      row->settled = st.settled;
    }
    free(x);
  }
  uint64_t start = r->init_begin_ns ? r->init_begin_ns : first_begin;
  uint64_t end = r->finalized && r->finalize_ns > last_end ? r->finalize_ns : last_end;
  if (end > start) row->total_s = (double)(end - start) / 1e9;
  if (loop_s > 0 && row->total_s == row->total_s)
    row->beta = (row->total_s - loop_s) / loop_s;
}

static void print_num(double v, int width, int prec) {
  if (v == v) printf(" %*.*f", width, prec, v);
  else printf(" %*s", width, "-");
}

static void record_print_table(intake *in) {
  size_t n;
  const intake_rank *const *rs = intake_ranks(in, &n);
  if (n == 0) {
    log_warn("no rank reported to the controller: is the command linked with "
             "libparamount, and does it pass the PARAMOUNT_* environment on?");
    return;
  }
  printf("%4s %-16s %9s %6s %10s %12s %10s %6s %7s %9s\n", "rank", "node",
         "init_s", "PIs", "first_PI_s", "steady_PI_s", "+-95%", "warmup", "beta",
         "total_s");
  int unsettled = 0;
  for (size_t i = 0; i < n; i++) {
    const intake_rank *r = rs[i];
    record_row row;
    record_row_compute(r, &row);
    printf("%4u %-16.16s", r->rank, r->node[0] ? r->node : "?");
    print_num(row.init_s, 9, 4);
    printf(" %6zu", r->n_pis);
    print_num(row.first_pi_s, 10, 5);
    print_num(row.steady_s, 12, 6);
    print_num(row.steady_halfwidth_s, 10, 6);
    printf(" %6zu", row.warmup);
    print_num(row.beta, 7, 3);
    print_num(row.total_s, 9, 3);
    if (r->n_pis && !row.settled) {
      printf(" *");
      unsettled = 1;
    }
    if (!r->finalized) printf(" (no FINALIZE)");
    if (r->dropped) printf(" (%llu events dropped)", (unsigned long long)r->dropped);
    printf("\n");
  }
  printf("steady PI: mean of the PIs after the warm-up (MSER-5 truncation, then\n"
         "the last level after any level change), with a 95%% Student t interval\n"
         "on batch means; warmup = PIs left out.  beta = (total - sum of PIs) /\n"
         "sum of PIs.  Times in seconds.\n");
  if (unsettled)
    printf("* not settled: too few PIs after the warm-up for a confident estimate\n");
}

/* ---- the verb -------------------------------------------------------- */

static void record_journal_launch(journal *jr, char **cmd, unsigned long long np,
                                  const char *endpoint) {
  struct json_object *o = json_object_new_object();
  json_object_object_add(o, "ev", json_object_new_string("launch"));
  json_object_object_add(o, "verb", json_object_new_string(VERB_NAME));
  struct json_object *a = json_object_new_array();
  for (char **p = cmd; *p; p++) json_object_array_add(a, json_object_new_string(*p));
  json_object_object_add(o, "cmd", a);
  json_object_object_add(o, "np", json_object_new_uint64(np));
  json_object_object_add(o, "endpoint", json_object_new_string(endpoint));
  journal_append(jr, o);
  json_object_put(o);
  journal_flush(jr);
}

static void record_journal_end(journal *jr, int status, int exit_code) {
  struct json_object *o = json_object_new_object();
  json_object_object_add(o, "ev", json_object_new_string("run_end"));
  json_object_object_add(o, "verb", json_object_new_string(VERB_NAME));
  json_object_object_add(o, "exit_code", json_object_new_int(exit_code));
  if (WIFSIGNALED(status))
    json_object_object_add(o, "signal", json_object_new_int(WTERMSIG(status)));
  journal_append(jr, o);
  json_object_put(o);
  journal_sync(jr);
}

int cmd_record(int argc, char **argv) {
  unsigned long long np = 0;
  const char *out = NULL, *listen_host = NULL;
  int cmd_at = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--")) {
      cmd_at = i + 1;
      break;
    }
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      record_usage(stdout);
      return CLI_EXIT_OK;
    }
    const char **sval = NULL;
    int is_np = 0;
    if (!strncmp(a, "--np", 4) && (a[4] == '\0' || a[4] == '=')) is_np = 1;
    else if (!strncmp(a, "--out", 5) && (a[5] == '\0' || a[5] == '=')) sval = &out;
    else if (!strncmp(a, "--listen", 8) && (a[8] == '\0' || a[8] == '=')) sval = &listen_host;
    else if (a[0] == '-') {
      cli_error(VERB_NAME, "unknown option '%s' (see paramount record --help)", a);
      return CLI_EXIT_USAGE;
    } else {
      cmd_at = i; /* the command starts at the first non-option */
      break;
    }
    const char *eq = strchr(a, '=');
    char opt[16];
    snprintf(opt, sizeof opt, "%.*s", (int)(eq ? eq - a : (long)strlen(a)), a);
    const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
    if (!val || (!eq && !*val)) {
      cli_error(VERB_NAME, "option %s needs a value", opt);
      return CLI_EXIT_USAGE;
    }
    if (is_np) {
      if (cli_parse_u64(VERB_NAME, opt, val, &np) != 0) return CLI_EXIT_USAGE;
      if (np < 1 || np > 4096) {
        cli_error(VERB_NAME, "option --np must be between 1 and 4096, got %llu", np);
        return CLI_EXIT_USAGE;
      }
    } else {
      if (!*val) {
        cli_error(VERB_NAME, "option %s needs a non-empty value", opt);
        return CLI_EXIT_USAGE;
      }
      *sval = val;
    }
  }
  if (cmd_at < 0 || cmd_at >= argc) {
    cli_error(VERB_NAME, "no command to run: give it after `--` (see paramount record --help)");
    return CLI_EXIT_USAGE;
  }
  char **cmd = argv + cmd_at;

  /* Everything that can be checked before a run directory exists is. */
  char found[PATH_MAX], mpirun[PATH_MAX];
  if (record_which(cmd[0], found, sizeof found) != 0) {
    int e = errno;
    cli_error(VERB_NAME, "cannot run '%s': %s", cmd[0],
              e == EACCES ? "permission denied" : "command not found");
    return e == EACCES ? RECORD_EXIT_NOT_EXEC : RECORD_EXIT_NOT_FOUND;
  }
  if (np && record_which("mpirun", mpirun, sizeof mpirun) != 0) {
    cli_error(VERB_NAME, "--np needs mpirun, which is not on PATH (install Open MPI)");
    return RECORD_EXIT_NOT_FOUND;
  }

  char run_dir[PATH_MAX];
  int rc = util_run_dir_create(out, run_dir, sizeof run_dir);
  if (rc == PM_EEXIST) {
    cli_error(VERB_NAME, "--out %s already holds a run (journal.jsonl); choose another directory",
              out);
    return CLI_EXIT_USAGE;
  }
  if (rc) {
    cli_error(VERB_NAME, "cannot create the run directory %s: %s", out ? out : "under runs/",
              rc == PM_ESYS ? strerror(errno) : pm_strerror(rc));
    return CLI_EXIT_FAIL;
  }
  journal *jr = NULL;
  if ((rc = journal_open(run_dir, &jr)) != 0) {
    cli_error(VERB_NAME, "cannot open %s/journal.jsonl: %s", run_dir, strerror(errno));
    return CLI_EXIT_FAIL;
  }
  char token[33];
  if (util_token_generate(token) != 0) {
    cli_error(VERB_NAME, "cannot generate a run token: %s", strerror(errno));
    journal_close(jr);
    return CLI_EXIT_FAIL;
  }
  char err[256] = "";
  intake *in = NULL;
  intake_opts io = {.listen_host = listen_host, .token = token, .journal = jr,
                    .err = err, .err_cap = sizeof err};
  if ((rc = intake_open(&io, &in)) != 0) {
    cli_error(VERB_NAME, "%s", err[0] ? err : pm_strerror(rc));
    journal_close(jr);
    return rc == PM_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
  }
  char endpoint[96];
  intake_endpoint(in, endpoint, sizeof endpoint);

  char host[WIRE_NAME_MAX + 1] = "localhost";
  gethostname(host, sizeof host - 1);
  setenv("PARAMOUNT_ENDPOINT", endpoint, 1);
  setenv("PARAMOUNT_TOKEN", token, 1);
  setenv("PARAMOUNT_RUN_DIR", run_dir, 1);
  setenv("PARAMOUNT_NODE", getenv("PARAMOUNT_NODE") ? getenv("PARAMOUNT_NODE") : host, 1);

  /* The argv to exec: CMD itself, or mpirun around it. */
  char **xargv = NULL;
  static const char *const mpi_env[] = {"PARAMOUNT_ENDPOINT", "PARAMOUNT_TOKEN",
                                        "PARAMOUNT_NODE", "PARAMOUNT_RUN_DIR", NULL};
  /* the argv docs/cli.md shows, whoever runs it */
  launch_mpirun mpi = {.mpirun = mpirun, .np = np, .oversubscribe = 1, .allow_root_always = 1,
                       .env = mpi_env, .cmd = (const char *const *)cmd};
  if (np && launch_mpirun_argv(&mpi, &xargv) != 0) {
    cli_error(VERB_NAME, "out of memory");
    intake_close(in);
    journal_close(jr);
    return CLI_EXIT_FAIL;
  }
  record_journal_launch(jr, cmd, np, endpoint);
  printf("paramount: record: run directory %s\n", run_dir);
  fflush(stdout);

  launch_forward fwd;
  launch_forward_begin(&fwd);
  launch_opts lo = {.argv = np ? xargv : cmd, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1,
                    .forward_signals = 1};
  launch_child ch;
  int status = 0, exit_code, exec_errno = 0;
  rc = launch_spawn(&lo, &ch);
  if (rc == 0) {
    exec_errno = ch.exec_errno;
    if (exec_errno == 0) {
      rc = record_watch(in, &ch, &status);
    } else {
      if (ch.pidfd >= 0) close(ch.pidfd);
      launch_wait(ch.pid, &status);
    }
  }
  launch_forward_end(&fwd);
  launch_strv_free(xargv);

  if (rc != 0) {
    cli_error(VERB_NAME, "cannot start '%s': %s", cmd[0], strerror(errno));
    exit_code = CLI_EXIT_FAIL;
  } else if (exec_errno) {
    cli_error(VERB_NAME, "cannot run '%s': %s", np ? "mpirun" : cmd[0], strerror(exec_errno));
    exit_code = exec_errno == ENOENT ? RECORD_EXIT_NOT_FOUND : RECORD_EXIT_NOT_EXEC;
  } else if (WIFSIGNALED(status)) {
    exit_code = launch_exit_code(status); /* 128 + N, CLI_EXIT_SIGNAL_BASE + N */
    cli_error(VERB_NAME, "'%s' was killed by signal %d (%s)", cmd[0], WTERMSIG(status),
              strsignal(WTERMSIG(status)));
  } else {
    exit_code = launch_exit_code(status);
    if (exit_code)
      cli_error(VERB_NAME, "'%s' exited with status %d", np ? "mpirun" : cmd[0], exit_code);
  }
  record_journal_end(jr, status, exit_code);

  record_print_table(in);
  intake_close(in);
  journal_close(jr);

  const char *warn = NULL;
  report_opts ro = {.warn = &warn};
  if ((rc = report_build(run_dir, &ro, err, sizeof err)) != 0) {
    cli_error(VERB_NAME, "cannot write the report: %s", err);
    if (exit_code == 0) exit_code = CLI_EXIT_FAIL;
  } else {
    printf("metrics: %s/metrics.csv  report: %s/report.html\n", run_dir, run_dir);
  }
  return exit_code;
}
