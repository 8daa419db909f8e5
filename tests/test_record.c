/* test_record.c - `paramount record` end to end: the built CLI runs real
 * commands and records real ranks over TCP.
 *
 * Built three ways from this one file: the unit cases (default), the
 * cases that need mpirun or paramount-burn (-DPM_RECORD_MPI_CASES), and a
 * fake rank that speaks the wire protocol with known timings
 * (-DPM_RECORD_FAKE_APP), so record is tested without libparamount too.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/wire.h"
#include "paramount.h"

#ifdef PM_RECORD_FAKE_APP
/* ---- the fake rank: test_record_app ITERS EXIT_CODE ------------------ */

static void app_die(int code, const char *what) {
  fprintf(stderr, "test_record_app: %s\n", what);
  exit(code);
}

static void app_send(int fd, const wire_msg *m) {
  uint8_t buf[WIRE_MAX_FRAME];
  size_t len;
  if (wire_encode(m, buf, sizeof buf, &len) != 0) app_die(60, "encode");
  for (size_t off = 0; off < len;) {
    ssize_t w = write(fd, buf + off, len - off);
    if (w <= 0) app_die(61, "write");
    off += (size_t)w;
  }
}

int main(int argc, char **argv) {
  if (argc != 3) app_die(62, "usage: test_record_app ITERS EXIT_CODE");
  int iters = atoi(argv[1]), code = atoi(argv[2]);
  const char *ep = getenv("PARAMOUNT_ENDPOINT"), *tok = getenv("PARAMOUNT_TOKEN");
  const char *node = getenv("PARAMOUNT_NODE"), *dir = getenv("PARAMOUNT_RUN_DIR");
  const char *rank_s = getenv("OMPI_COMM_WORLD_RANK");
  if (!ep || !tok || !node || !dir) app_die(63, "PARAMOUNT_* environment missing");
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) app_die(64, "PARAMOUNT_RUN_DIR is not a directory");
  uint32_t rank = rank_s ? (uint32_t)atoi(rank_s) : 0;
  /* Leave the token where the test can check it leaked nowhere. */
  char p[4096];
  snprintf(p, sizeof p, "%s/token.seen", dir);
  FILE *f = fopen(p, "w");
  if (f) {
    fputs(tok, f);
    fclose(f);
  }
  char host[64];
  const char *colon = strrchr(ep, ':');
  if (!colon || (size_t)(colon - ep) >= sizeof host) app_die(65, "bad endpoint");
  snprintf(host, sizeof host, "%.*s", (int)(colon - ep), ep);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
  if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) app_die(66, "getaddrinfo");
  int fd = socket(ai->ai_family, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) app_die(67, "connect");
  freeaddrinfo(ai);
  wire_msg m = {.type = WIRE_HELLO};
  snprintf(m.u.hello.token, sizeof m.u.hello.token, "%s", tok);
  snprintf(m.u.hello.node, sizeof m.u.hello.node, "%s", node);
  snprintf(m.u.hello.app, sizeof m.u.hello.app, "fake");
  m.u.hello.rank = rank;
  m.u.hello.pid = (uint32_t)getpid();
  app_send(fd, &m);
  uint8_t buf[64];
  size_t have = 0, used;
  while (wire_decode(buf, have, &m, &used, NULL) == PM_EAGAIN) {
    ssize_t n = read(fd, buf + have, 1);
    if (n <= 0) app_die(68, "no WELCOME");
    have += (size_t)n;
  }
  if (m.type != WIRE_WELCOME) app_die(69, "not WELCOME");
  /* Synthetic times: init 0.5 s, first PI 50 ms, then 10 ms (+-0.1 ms),
   * 1 ms of each in communication. */
  uint64_t t = 1700000000ull * 1000000000ull;
  memset(&m, 0, sizeof m);
  m.type = WIRE_INIT_BEGIN;
  m.u.mark.t_ns = t;
  app_send(fd, &m);
  t += 500000000ull;
  m.type = WIRE_INIT_END;
  m.u.mark.t_ns = t;
  app_send(fd, &m);
  for (int i = 0; i < iters; i++) {
    uint64_t wall = i == 0 ? 50000000ull : 10000000ull + (uint64_t)(i % 3) * 100000ull;
    memset(&m, 0, sizeof m);
    m.type = WIRE_ITER;
    m.u.iter.iter = (uint64_t)i;
    m.u.iter.t_begin_ns = t;
    m.u.iter.wall_ns = wall;
    m.u.iter.comm_ns = 1000000;
    m.u.iter.compute_ns = wall - 1000000;
    m.u.iter.samples = 8;
    app_send(fd, &m);
    t += wall;
  }
  memset(&m, 0, sizeof m);
  m.type = WIRE_FINALIZE;
  m.u.fin.t_ns = t + 100000000ull;
  m.u.fin.sent = (uint64_t)iters + 2;
  app_send(fd, &m);
  close(fd);
  return code;
}

#else /* the tests */

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#include "test.h"

#define PARAMOUNT PM_BINARY_DIR "/paramount"
#define FAKE_APP PM_BINARY_DIR "/test_record_app"
#define BURN PM_BINARY_DIR "/paramount-burn"

typedef struct {
  char dir[64];
  char out[96], err[96];
} sandbox;

static void sandbox_open(sandbox *s) {
  snprintf(s->dir, sizeof s->dir, "/tmp/pm_test_record.XXXXXX");
  ASSERT(mkdtemp(s->dir) != NULL);
  snprintf(s->out, sizeof s->out, "%s/stdout", s->dir);
  snprintf(s->err, sizeof s->err, "%s/stderr", s->dir);
}

static void sandbox_close(sandbox *s) {
  pid_t pid = fork();
  if (pid == 0) {
    execlp("rm", "rm", "-rf", s->dir, (char *)NULL);
    _exit(127);
  }
  waitpid(pid, NULL, 0);
}

/* Starts argv in s->dir with stdout/stderr to files; returns the pid. */
static pid_t sandbox_start(sandbox *s, char *const argv[]) {
  fflush(NULL);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    if (chdir(s->dir) != 0) _exit(120);
    int o = open(s->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(s->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) _exit(121);
    dup2(o, 1);
    dup2(e, 2);
    execv(argv[0], argv);
    _exit(122);
  }
  return pid;
}

/* Runs argv to the end; returns its exit status (128+N for signal N). */
static int sandbox_run(sandbox *s, char *const argv[]) {
  pid_t pid = sandbox_start(s, argv);
  int st;
  ASSERT_EQ_INT(waitpid(pid, &st, 0), pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) TEST_FAIL_("cannot open %s: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  size_t r;
  while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) buf = realloc(buf, (cap *= 2) + 1);
  }
  fclose(f);
  buf[n] = '\0';
  return buf;
}

static char *sandbox_file(sandbox *s, const char *rel) {
  char p[256];
  snprintf(p, sizeof p, "%s/%s", s->dir, rel);
  return slurp(p);
}

static size_t count_lines(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

/* The stderr of a failing CLI call is one line naming the problem. */
static void assert_one_error_line(sandbox *s, const char *needle) {
  char *e = slurp(s->err);
  ASSERT_CONTAINS(e, needle);
  ASSERT_CONTAINS(e, "paramount: record: ");
  ASSERT_EQ_INT(count_lines(e), 1);
  free(e);
}

/* The row of `rank` in record's table, as whitespace-split fields. */
static int table_row(const char *out, unsigned rank, char fields[][32], int max) {
  const char *p = strstr(out, "rank node");
  if (!p) return 0;
  p = strchr(p, '\n');
  while (p && *++p) {
    unsigned r;
    if (sscanf(p, "%u", &r) == 1 && r == rank) {
      int n = 0;
      const char *q = p;
      while (n < max && *q && *q != '\n') {
        while (*q == ' ') q++;
        int k = 0;
        while (*q && *q != ' ' && *q != '\n' && k < 31) fields[n][k++] = *q++;
        fields[n][k] = '\0';
        if (k) n++;
      }
      return n;
    }
    p = strchr(p, '\n');
  }
  return 0;
}

/* Checks metrics.csv: its header names the brief's columns, and it has
 * `rows` data rows with rank r appearing rows_per_rank times. */
static void assert_metrics(sandbox *s, const char *run, unsigned nranks,
                           size_t rows_per_rank) {
  char rel[128];
  snprintf(rel, sizeof rel, "%s/metrics.csv", run);
  char *csv = sandbox_file(s, rel);
  static const char *const cols[] = {"rank", "node", "phase", "iteration",
                                     "compute_s", "comm_s", "total_s", "samples"};
  char *nl = strchr(csv, '\n');
  ASSERT(nl != NULL);
  *nl = '\0';
  for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) ASSERT_CONTAINS(csv, cols[i]);
  /* Which column holds the rank? */
  int rank_col = -1, col = 0;
  for (char *tok = strtok(csv, ","); tok; tok = strtok(NULL, ","), col++)
    if (!strcmp(tok, "rank")) rank_col = col;
  ASSERT(rank_col >= 0);
  size_t per[64] = {0}, total = 0;
  for (char *line = strtok(nl + 1, "\n"); line; line = strtok(NULL, "\n")) {
    const char *f = line;
    for (int c = 0; c < rank_col && f; c++) {
      f = strchr(f, ',');
      if (f) f++;
    }
    ASSERT(f != NULL);
    unsigned r = (unsigned)atoi(f);
    ASSERT(r < nranks);
    per[r]++;
    total++;
  }
  ASSERT_EQ_U64(total, nranks * rows_per_rank);
  for (unsigned r = 0; r < nranks; r++) ASSERT_EQ_U64(per[r], rows_per_rank);
  free(csv);
}

#ifndef PM_RECORD_MPI_CASES

TEST(help_lists_the_options) {
  sandbox s;
  sandbox_open(&s);
  char *argv[] = {PARAMOUNT, "record", "--help", NULL};
  ASSERT_EQ_INT(sandbox_run(&s, argv), 0);
  char *out = slurp(s.out);
  ASSERT_CONTAINS(out, "--np N");
  ASSERT_CONTAINS(out, "--out DIR");
  ASSERT_CONTAINS(out, "Exit status");
  free(out);
  sandbox_close(&s);
}

TEST(usage_errors_exit_2_with_one_line) {
  static const struct {
    const char *args[4];
    const char *why;
  } cases[] = {
      {{NULL}, "no command to run"},
      {{"--", NULL}, "no command to run"},
      {{"--frobnicate", "--", "true", NULL}, "unknown option '--frobnicate'"},
      {{"--np", "zero", "--", "true"}, "option --np needs a non-negative integer"},
      {{"--np", "0", "--", "true"}, "--np must be between 1 and 4096"},
      {{"--out", NULL}, "option --out needs a value"},
      {{"--listen", "not-an-ip", "--", "true"}, "not a numeric IPv4 or IPv6 address"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    sandbox s;
    sandbox_open(&s);
    char *argv[8] = {PARAMOUNT, "record"};
    for (int i = 0; i < 4 && cases[k].args[i]; i++) argv[2 + i] = (char *)cases[k].args[i];
    int rc = sandbox_run(&s, argv);
    if (rc != 2) TEST_FAIL_("case %zu (%s): exit %d, want 2", k, cases[k].why, rc);
    assert_one_error_line(&s, cases[k].why);
    sandbox_close(&s);
  }
}

TEST(command_not_found_exits_127) {
  sandbox s;
  sandbox_open(&s);
  char *argv[] = {PARAMOUNT, "record", "--out", "r", "--", "no-such-command-pm", NULL};
  ASSERT_EQ_INT(sandbox_run(&s, argv), 127);
  assert_one_error_line(&s, "cannot run 'no-such-command-pm': command not found");
  char plain[128];
  snprintf(plain, sizeof plain, "%s/not-executable", s.dir);
  int fd = open(plain, O_WRONLY | O_CREAT, 0644);
  ASSERT(fd >= 0);
  close(fd);
  char *argv2[] = {PARAMOUNT, "record", "--", plain, NULL};
  ASSERT_EQ_INT(sandbox_run(&s, argv2), 126);
  assert_one_error_line(&s, "permission denied");
  sandbox_close(&s);
}

TEST(failing_command_status_is_passed_through) {
  sandbox s;
  sandbox_open(&s);
  char *argv[] = {PARAMOUNT, "record", "--out", "r", "--", "/bin/sh", "-c", "exit 7", NULL};
  ASSERT_EQ_INT(sandbox_run(&s, argv), 7);
  char *e = slurp(s.err);
  ASSERT_CONTAINS(e, "exited with status 7");
  free(e);
  char *j = sandbox_file(&s, "r/journal.jsonl");
  ASSERT_CONTAINS(j, "\"ev\":\"run_end\"");
  ASSERT_CONTAINS(j, "\"exit_code\":7");
  free(j);
  sandbox_close(&s);
}

TEST(command_killed_by_signal_exits_128_plus_n) {
  sandbox s;
  sandbox_open(&s);
  char *argv[] = {PARAMOUNT, "record", "--out", "r", "--", "/bin/sh", "-c", "kill -TERM $$", NULL};
  ASSERT_EQ_INT(sandbox_run(&s, argv), 128 + SIGTERM);
  char *e = slurp(s.err);
  ASSERT_CONTAINS(e, "killed by signal 15");
  free(e);
  sandbox_close(&s);
}

TEST(existing_run_dir_is_refused) {
  sandbox s;
  sandbox_open(&s);
  char *argv[] = {PARAMOUNT, "record", "--out", "r", "--", "/bin/true", NULL};
  ASSERT_EQ_INT(sandbox_run(&s, argv), 0);
  ASSERT_EQ_INT(sandbox_run(&s, argv), 2);
  assert_one_error_line(&s, "already holds a run");
  sandbox_close(&s);
}

TEST(sigterm_is_forwarded_to_the_command) {
  sandbox s;
  sandbox_open(&s);
  char *argv[] = {PARAMOUNT, "record", "--out", "r", "--", "/bin/sh", "-c",
                  "trap 'exit 42' TERM; echo ready > ready; while :; do sleep 0.02; done",
                  NULL};
  pid_t pid = sandbox_start(&s, argv);
  char ready[128];
  snprintf(ready, sizeof ready, "%s/ready", s.dir);
  for (int i = 0; i < 500 && access(ready, F_OK) != 0; i++) usleep(10000);
  ASSERT_EQ_INT(access(ready, F_OK), 0);
  ASSERT_EQ_INT(kill(pid, SIGTERM), 0);
  int st;
  ASSERT_EQ_INT(waitpid(pid, &st, 0), pid);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ_INT(WEXITSTATUS(st), 42); /* the command's trap ran */
  sandbox_close(&s);
}

TEST(fake_rank_is_recorded_table_metrics_journal) {
  sandbox s;
  sandbox_open(&s);
  char *argv[] = {PARAMOUNT, "record", "--out", "r", "--", FAKE_APP, "40", "0", NULL};
  int rc = sandbox_run(&s, argv);
  if (rc != 0) {
    char *e = slurp(s.err);
    TEST_FAIL_("record exited %d: %s", rc, e);
  }
  char *out = slurp(s.out);
  char f[12][32];
  int n = table_row(out, 0, f, 12);
  if (n < 10) TEST_FAIL_("no row for rank 0 in:\n%s", out);
  /* rank node init_s PIs first_PI_s steady_PI_s +-95% warmup beta total_s */
  ASSERT_NEAR(atof(f[2]), 0.5, 1e-6);
  ASSERT_EQ_INT(atoi(f[3]), 40);
  ASSERT_NEAR(atof(f[4]), 0.05, 1e-6);
  ASSERT_NEAR(atof(f[5]), 0.0101, 0.0002); /* the slow first PI is left out */
  ASSERT(atoi(f[7]) >= 1);
  /* total = 0.5 + 0.05 + 39 * ~0.0101 + 0.1; loop = 0.05 + 39 * ~0.0101 */
  ASSERT_NEAR(atof(f[9]), 1.044, 0.01);
  ASSERT_NEAR(atof(f[8]), 0.6 / 0.444, 0.02);
  ASSERT_CONTAINS(out, "steady PI:");
  assert_metrics(&s, "r", 1, 40);
  /* The token reached the rank and nothing else. */
  char *tok = sandbox_file(&s, "r/token.seen");
  ASSERT_EQ_INT(strlen(tok), 32);
  char *j = sandbox_file(&s, "r/journal.jsonl");
  char *e = slurp(s.err);
  ASSERT(strstr(j, tok) == NULL);
  ASSERT(strstr(out, tok) == NULL);
  ASSERT(strstr(e, tok) == NULL);
  ASSERT_CONTAINS(j, "\"ev\":\"hello\"");
  ASSERT_CONTAINS(j, "\"ev\":\"finalize\"");
  free(tok);
  free(j);
  free(e);
  free(out);
  sandbox_close(&s);
}

TEST(failing_rank_status_passes_through_and_data_is_kept) {
  sandbox s;
  sandbox_open(&s);
  char *argv[] = {PARAMOUNT, "record", "--out", "r", "--", FAKE_APP, "5", "3", NULL};
  ASSERT_EQ_INT(sandbox_run(&s, argv), 3);
  char *out = slurp(s.out);
  char f[12][32];
  ASSERT(table_row(out, 0, f, 12) >= 4);
  ASSERT_EQ_INT(atoi(f[3]), 5);
  free(out);
  assert_metrics(&s, "r", 1, 5);
  sandbox_close(&s);
}

#else /* PM_RECORD_MPI_CASES */

static int have(const char *path) { return access(path, X_OK) == 0; }

TEST(np_3_fake_ranks) {
  sandbox s;
  sandbox_open(&s);
  char *argv[] = {PARAMOUNT, "record", "--np", "3", "--out", "r", "--", FAKE_APP, "20", "0", NULL};
  int rc = sandbox_run(&s, argv);
  if (rc != 0) TEST_FAIL_("record exited %d: %s", rc, slurp(s.err));
  char *out = slurp(s.out);
  for (unsigned r = 0; r < 3; r++) {
    char f[12][32];
    if (table_row(out, r, f, 12) < 10) TEST_FAIL_("no row for rank %u in:\n%s", r, out);
    ASSERT_EQ_INT(atoi(f[3]), 20);
    ASSERT_NEAR(atof(f[4]), 0.05, 1e-6);
  }
  free(out);
  assert_metrics(&s, "r", 3, 20);
  char *j = sandbox_file(&s, "r/journal.jsonl");
  ASSERT_CONTAINS(j, "\"np\":3");
  free(j);
  sandbox_close(&s);
}

TEST(np_without_mpirun_on_path_is_a_clear_error) {
  sandbox s;
  sandbox_open(&s);
  char *argv[] = {PARAMOUNT, "record", "--np", "2", "--", FAKE_APP, "1", "0", NULL};
  const char *old = getenv("PATH");
  char *saved = old ? strdup(old) : NULL;
  setenv("PATH", "/nonexistent", 1);
  int rc = sandbox_run(&s, argv);
  if (saved) setenv("PATH", saved, 1);
  free(saved);
  ASSERT_EQ_INT(rc, 127);
  assert_one_error_line(&s, "mpirun, which is not on PATH");
  sandbox_close(&s);
}

/* `paramount record -- paramount-burn ...` with 1 and with 3 ranks. */
TEST(burn_end_to_end) {
  if (!have(BURN)) TEST_FAIL_("%s is not built", BURN);
  for (int np = 1; np <= 3; np += 2) {
    sandbox s;
    sandbox_open(&s);
    char np_s[4];
    snprintf(np_s, sizeof np_s, "%d", np);
    char *argv1[] = {PARAMOUNT, "record", "--out", "r", "--", BURN, "--samples", "640",
                     "--batch", "32", "--work", "20000", "--epochs", "2", NULL};
    char *argv3[] = {PARAMOUNT, "record", "--np", np_s, "--out", "r", "--", BURN,
                     "--samples", "640", "--batch", "32", "--work", "20000", "--epochs", "2",
                     NULL};
    int rc = sandbox_run(&s, np == 1 ? argv1 : argv3);
    if (rc != 0) TEST_FAIL_("np %d: record exited %d: %s", np, rc, slurp(s.err));
    char *out = slurp(s.out);
    for (unsigned r = 0; r < (unsigned)np; r++) {
      char f[12][32];
      if (table_row(out, r, f, 12) < 10) TEST_FAIL_("no row for rank %u in:\n%s", r, out);
      ASSERT_EQ_INT(atoi(f[3]), 40); /* 640 / 32 * 2 epochs */
      ASSERT_OP_DBL(atof(f[2]), >=, 0);
      ASSERT_OP_DBL(atof(f[5]), >, 0);
      ASSERT_OP_DBL(atof(f[9]), >, 0);
    }
    free(out);
    assert_metrics(&s, "r", (unsigned)np, 40);
    sandbox_close(&s);
  }
}

/* SIGKILL the controller while the app runs: the app must finish
 * normally (libparamount never blocks on a dead controller). */
TEST(app_survives_a_killed_controller) {
  if (!have(BURN)) TEST_FAIL_("%s is not built", BURN);
  ASSERT_EQ_INT(prctl(PR_SET_CHILD_SUBREAPER, 1), 0); /* adopt the orphan */
  sandbox s;
  sandbox_open(&s);
  char *argv[] = {PARAMOUNT, "record", "--out", "r", "--", BURN, "--samples", "1600",
                  "--batch", "32", "--work", "1000", "--iter-sleep-ms", "20",
                  "--epochs", "1", NULL};
  pid_t rec = sandbox_start(&s, argv);
  /* Wait until PIs flow (the journal grows), then kill the controller. */
  char jpath[128];
  snprintf(jpath, sizeof jpath, "%s/r/journal.jsonl", s.dir);
  int flowing = 0;
  for (int i = 0; i < 500 && !flowing; i++) {
    usleep(10000);
    struct stat st;
    if (stat(jpath, &st) == 0 && st.st_size > 0) {
      char *j = slurp(jpath);
      flowing = strstr(j, "\"ev\":\"pi\"") != NULL;
      free(j);
    }
  }
  ASSERT(flowing);
  ASSERT_EQ_INT(kill(rec, SIGKILL), 0);
  int st;
  ASSERT_EQ_INT(waitpid(rec, &st, 0), rec);
  ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  /* The orphaned burn is now our child: it must end by itself, with 0. */
  uint64_t t0 = (uint64_t)time(NULL);
  pid_t w;
  while ((w = waitpid(-1, &st, WNOHANG)) == 0) {
    if ((uint64_t)time(NULL) - t0 > 60) TEST_FAIL_("the app did not finish within 60 s");
    usleep(20000);
  }
  ASSERT(w > 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    TEST_FAIL_("the app ended with status 0x%x: %s", st, slurp(s.err));
  char *o = slurp(s.out); /* burn's own last line */
  ASSERT_CONTAINS(o, "done iterations=50");
  free(o);
  sandbox_close(&s);
}

#endif /* PM_RECORD_MPI_CASES */

TEST_MAIN()

#endif /* PM_RECORD_FAKE_APP */
