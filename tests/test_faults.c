/* test_faults.c - `paramount run` survives faults (issue 8): a node that
 * vanishes mid-run, or whose ranks fall silent, is replaced and the job
 * (paramount-burn, or the ESRGAN trainer) resumes from its last
 * checkpoint; a SIGKILLed controller leaves nothing `paramount down`
 * cannot clear, and `paramount resume` finishes its job.
 *
 * Real cgroup nodes, mpirun, paramount-burn and paramount-esrgan, as in
 * test_run.c; the cases need root and skip otherwise.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/journal.h"
#include "common/util.h"
#include "controller/config.h"
#include "paramount.h"
#include "provider/provider.h"
/* Whole runs on local nodes: a loaded host can stretch a case well past
 * the harness's default. */
#define TEST_DEFAULT_TIMEOUT_S 400
#include "test.h"

#define PARAMOUNT PM_BINARY_DIR "/paramount"
#define BURN PM_BINARY_DIR "/paramount-burn"
#define ESRGAN PM_BINARY_DIR "/apps/esrgan/paramount-esrgan"

/* ~30 ms of CPU per rank and PI (see test_run.c); 60 iterations of 24
 * samples; a checkpoint every 10 iterations, so a fault costs at most 10. */
#define CKPT_EVERY 10
#define JOB_ARGS "--samples", "1440", "--batch", "24", "--work", "6800000", "--allreduce-bytes", "64"

static const char catalog_text[] =
    "types:\n"
    "  - {name: slow, price_usd_per_hour: 0.10, vcpus: 2, memory_gib: 4,\n"
    "     local: {cpu_fraction: 0.10, memory_limit_mib: 512, boot_delay_s: 0.3}}\n"
    "  - {name: eff, price_usd_per_hour: 0.15, vcpus: 2, memory_gib: 4,\n"
    "     local: {cpu_fraction: 0.25, memory_limit_mib: 512, boot_delay_s: 0.3}}\n"
    "  - {name: fast, price_usd_per_hour: 0.50, vcpus: 4, memory_gib: 8,\n"
    "     local: {cpu_fraction: 0.45, memory_limit_mib: 512, boot_delay_s: 0.3}}\n";

#define SKIP_UNLESS_RUNNABLE()                                                 \
  do {                                                                         \
    if (geteuid() || access("/usr/bin/mpirun", X_OK) || access(BURN, X_OK)) {  \
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

static char *read_text(const char *path) {
  char *text = NULL;
  if (util_read_file(path, 64 << 20, &text, NULL)) TEST_FAIL_("cannot read %s", path);
  return text;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

/* Starts argv with stdout+stderr into a fresh temporary file (*fd). */
static pid_t spawn(char *const *argv, int *fd) {
  char path[] = "/tmp/pm-test-faults-out-XXXXXX";
  *fd = mkstemp(path);
  if (*fd < 0) TEST_FAIL_("mkstemp");
  unlink(path);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(*fd, 1);
    dup2(*fd, 2);
    execv(argv[0], argv);
    _exit(127);
  }
  return pid;
}

/* Waits for pid; its output (malloc'd) and exit status (128+sig). */
static int finish(pid_t pid, int fd, char **out) {
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

static int run_capture(char *const *argv, char **out) {
  int fd;
  pid_t pid = spawn(argv, &fd);
  return finish(pid, fd, out);
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

/* The uninterrupted job's result: one direct rank (burn's result does
 * not depend on the rank count, nor on checkpoints). */
static const char *reference(void) {
  static char ref[256];
  if (ref[0]) return ref;
  char *argv[] = {BURN, JOB_ARGS, "--epochs", "1", "--quiet", NULL};
  char *out = NULL;
  int st = run_capture(argv, &out);
  if (st) TEST_FAIL_("reference burn exited %d: %s", st, out);
  burn_result(out, ref, sizeof ref);
  free(out);
  return ref;
}

/* The result of the last launch that got to the end. */
static void assert_result_is_reference(const char *run) {
  char log[PATH_MAX + 32], got[256] = "";
  for (int l = 0; l < 64; l++) {
    snprintf(log, sizeof log, "%s/job-%d.log", run, l);
    if (access(log, F_OK)) continue;
    char *text = read_text(log);
    if (strstr(text, "paramount-burn: done ")) burn_result(text, got, sizeof got);
    free(text);
  }
  if (!got[0]) TEST_FAIL_("no launch of %s finished", run);
  ASSERT_STREQ(got, reference());
}

typedef struct {
  char dir[PATH_MAX], cfg[PATH_MAX + 16], cat[PATH_MAX + 16], run[PATH_MAX + 16];
} fx;

/* job_extra: more lines of the job section ("" for none). */
static void fx_init_job(fx *f, const char *cluster, const char *policy, const char *job_extra) {
  snprintf(f->dir, sizeof f->dir, "/tmp/pm-test-faults-XXXXXX");
  if (!mkdtemp(f->dir)) TEST_FAIL_("mkdtemp: %s", strerror(errno));
  snprintf(f->cat, sizeof f->cat, "%s/cat.yaml", f->dir);
  write_text(f->cat, catalog_text);
  char text[4096];
  snprintf(text, sizeof text,
           /* force: other runs on a shared machine may hold quota; what
            * is tested here does not depend on exact emulated speeds */
           "catalog: cat.yaml\nforce: true\ncluster:\n%s"
           "job:\n  command: [%s, --samples, '1440', --batch, '24', --work, '6800000',\n"
           "            --allreduce-bytes, '64', --epochs, '1', --checkpoint-every, '%d']\n"
           "  resume: [--resume, '{checkpoint}']\n  checkpoint_every: %d\n%s"
           "policy:\n  interval_s: 1\n%s",
           cluster, BURN, CKPT_EVERY, CKPT_EVERY, job_extra, policy);
  snprintf(f->cfg, sizeof f->cfg, "%s/run.yaml", f->dir);
  write_text(f->cfg, text);
  snprintf(f->run, sizeof f->run, "%s/run", f->dir);
}

static void fx_init(fx *f, const char *cluster, const char *policy) {
  fx_init_job(f, cluster, policy, "");
}

/* ---- the journal ------------------------------------------------------ */

typedef struct {
  uint64_t max_iter1; /* last PI's iteration + 1 */
  int node_lost, recovered, run_end, ckpt_refused;
  int64_t lost_iters, ck_next; /* of the last node_lost */
  char what[256], cause[256]; /* of the last node_lost */
  char last_ckpt[PATH_MAX];  /* the last checkpoint a rank reported */
  int64_t last_ckpt_iter;
} jsum;

static void jsum_str(json_object *rec, const char *key, char *out, size_t cap) {
  json_object *x;
  if (json_object_object_get_ex(rec, key, &x)) snprintf(out, cap, "%s", json_object_get_string(x));
}

static int jsum_cb(json_object *rec, void *ud) {
  jsum *s = ud;
  json_object *v, *x;
  json_object_object_get_ex(rec, "ev", &v);
  const char *ev = json_object_get_string(v);
  if (!strcmp(ev, "pi") && json_object_object_get_ex(rec, "iter", &x) &&
      (uint64_t)json_object_get_int64(x) + 1 > s->max_iter1)
    s->max_iter1 = (uint64_t)json_object_get_int64(x) + 1;
  if (!strcmp(ev, "node_lost")) {
    s->node_lost++;
    if (json_object_object_get_ex(rec, "iterations_lost", &x)) s->lost_iters = json_object_get_int64(x);
    if (json_object_object_get_ex(rec, "checkpoint_next_iter", &x))
      s->ck_next = json_object_get_int64(x);
    jsum_str(rec, "what", s->what, sizeof s->what);
    jsum_str(rec, "cause", s->cause, sizeof s->cause);
  }
  if (!strcmp(ev, "checkpoint")) {
    jsum_str(rec, "path", s->last_ckpt, sizeof s->last_ckpt);
    if (json_object_object_get_ex(rec, "iter", &x)) s->last_ckpt_iter = json_object_get_int64(x);
  }
  if (!strcmp(ev, "checkpoint_refused")) s->ckpt_refused++;
  if (!strcmp(ev, "node_lost_recovered")) s->recovered++;
  if (!strcmp(ev, "run_end")) s->run_end++;
  return 0;
}

/* Reads the whole journal; a truncated last line is allowed (with its
 * warning), anything else malformed fails the test. */
static jsum journal_summary(const char *run) {
  jsum s;
  memset(&s, 0, sizeof s);
  long bad = 0;
  const char *warn = NULL;
  int rc = journal_read(run, jsum_cb, &s, &bad, &warn);
  if (rc == PM_ENOENT) return s; /* killed before the journal existed */
  if (rc) TEST_FAIL_("%s/journal.jsonl: %s at line %ld", run, pm_strerror(rc), bad);
  if (warn) printf("  journal warning (allowed): %s\n", warn);
  return s;
}

typedef struct {
  const char *node;
  int terminated;
  int64_t killed; /* processes_killed of its node_terminated */
} jterm;

static int jterm_cb(json_object *rec, void *ud) {
  jterm *t = ud;
  json_object *v;
  if (json_object_object_get_ex(rec, "ev", &v) &&
      !strcmp(json_object_get_string(v), "node_terminated") &&
      json_object_object_get_ex(rec, "node", &v) && !strcmp(json_object_get_string(v), t->node)) {
    t->terminated++;
    if (json_object_object_get_ex(rec, "processes_killed", &v))
      t->killed = json_object_get_int64(v);
  }
  return 0;
}

/* The provider's record of terminating node id (terminated == 0: none). */
static jterm journal_terminated(const char *run, const char *id) {
  jterm t = {.node = id};
  long bad = 0;
  const char *warn = NULL;
  int rc = journal_read(run, jterm_cb, &t, &bad, &warn);
  if (rc) TEST_FAIL_("%s/journal.jsonl: %s at line %ld", run, pm_strerror(rc), bad);
  return t;
}

/* Waits until the run's journal shows PIs up to iteration >= iter1 - 1. */
static void wait_iter(const char *run, uint64_t iter1, double timeout_s) {
  for (double t = 0; t < timeout_s; t += 0.2) {
    if (journal_summary(run).max_iter1 >= iter1) return;
    sleep_s(0.2);
  }
  TEST_FAIL_("%s: no PI %llu within %g s", run, (unsigned long long)iter1, timeout_s);
}

/* ---- nodes ------------------------------------------------------------ */

/* The cgroup directories node.json lists for node id (n cgroups). */
static int node_cgroups(const char *run, const char *id, char cg[][PATH_MAX], int cap) {
  char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/nodes/%s/node.json", run, id);
  json_object *o = json_object_from_file(path), *a;
  int n = 0;
  if (o && json_object_object_get_ex(o, "cgroups", &a))
    for (size_t i = 0; i < json_object_array_length(a) && n < cap; i++)
      snprintf(cg[n++], PATH_MAX, "%s", json_object_get_string(json_object_array_get_idx(a, i)));
  json_object_put(o);
  return n;
}

/* A node vanishes as a preempted instance would: every process in it
 * killed, its cgroups removed, behind the controller's back. */
static void node_vanish(const char *run, const char *id) {
  char cg[8][PATH_MAX];
  int n = node_cgroups(run, id, cg, 8);
  if (!n) TEST_FAIL_("node %s of %s has no cgroups", id, run);
  for (int i = 0; i < n; i++) {
    char procs[PATH_MAX + 32];
    snprintf(procs, sizeof procs, "%.4000s/cgroup.procs", cg[i]);
    FILE *f = fopen(procs, "r");
    int pid;
    while (f && fscanf(f, "%d", &pid) == 1) kill(pid, SIGKILL);
    if (f) fclose(f);
  }
  for (int i = 0; i < n; i++)
    for (int k = 0; k < 50 && rmdir(cg[i]) && errno != ENOENT; k++) sleep_s(0.05);
}

/* A node stopped through the provider, from outside the controller. */
static void node_provider_stop(const fx *f, const char *id) {
  catalog *cat = NULL;
  char err[1024];
  if (catalog_load(f->cat, &cat, err, sizeof err)) TEST_FAIL_("%s", err);
  provider_opts po = {.run_dir = f->run, .cat = cat};
  provider *p = NULL;
  if (provider_open("local", &po, &p, err, sizeof err)) TEST_FAIL_("%s", err);
  int did = 0;
  ASSERT_EQ_INT(p->ops->stop(p, id, &did), 0);
  ASSERT_EQ_INT(did, 1);
  provider_close(p);
  catalog_free(cat);
}

/* Does any process still belong to the run?  Its ranks carry
 * PARAMOUNT_RUN_DIR=run; mpirun and node-exec name the run on their
 * command line. */
static pid_t run_process_left(const char *run) {
  char want[PATH_MAX + 32];
  snprintf(want, sizeof want, "PARAMOUNT_RUN_DIR=%s", run);
  DIR *d = opendir("/proc");
  struct dirent *e;
  pid_t found = 0;
  while (d && !found && (e = readdir(d))) {
    pid_t pid = (pid_t)atoi(e->d_name);
    if (pid <= 0 || pid == getpid()) continue;
    static const char *const files[] = {"environ", "cmdline"};
    for (int k = 0; k < 2 && !found; k++) {
      char path[64], buf[65536];
      snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, files[k]);
      int fd = open(path, O_RDONLY);
      if (fd < 0) continue;
      ssize_t n = read(fd, buf, sizeof buf - 1);
      close(fd);
      for (ssize_t i = 0; i < n; i++)
        if (!buf[i]) buf[i] = '\n';
      if (n > 0) {
        buf[n] = '\0';
        if (strstr(buf, k ? run : want)) found = pid;
      }
    }
  }
  if (d) closedir(d);
  return found;
}

/* No process, no cgroup of any node the run ever had. */
static void assert_no_orphan(const char *run) {
  pid_t left = 0;
  for (int k = 0; k < 30 && (left = run_process_left(run)); k++) sleep_s(0.1);
  if (left) TEST_FAIL_("process %d of %s survived", (int)left, run);
  for (int k = 1; k < 64; k++) {
    char id[16], cg[8][PATH_MAX], path[PATH_MAX + 64];
    snprintf(id, sizeof id, "n%d", k);
    snprintf(path, sizeof path, "%s/nodes/%s", run, id);
    if (access(path, F_OK)) continue;
    int n = node_cgroups(run, id, cg, 8);
    for (int i = 0; i < n; i++)
      if (!access(cg[i], F_OK)) TEST_FAIL_("cgroup %s of %s survived", cg[i], id);
  }
}

/* ---- stalled nodes ---------------------------------------------------- */

typedef struct {
  pid_t pid;
  unsigned long long start; /* /proc/PID/stat starttime: the same process */
} stalled;

/* State letter and start time of pid; 0, or -1 when it is gone. */
static int proc_stat(pid_t pid, char *state, unsigned long long *start) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); /* the command may hold spaces */
  if (!p) return -1;
  /* fields 3 (state) ... 22 (starttime) after the ')' */
  char *tok = strtok(p + 1, " ");
  for (int field = 3; tok; field++, tok = strtok(NULL, " ")) {
    if (field == 3) *state = tok[0];
    if (field == 22) {
      *start = strtoull(tok, NULL, 10);
      return 0;
    }
  }
  return -1;
}

/* Is this very process still there (a zombie is gone)? */
static int stalled_alive(const stalled *s) {
  char st = 0;
  unsigned long long start = 0;
  return proc_stat(s->pid, &st, &start) == 0 && start == s->start && st != 'Z' && st != 'X';
}

/* Cleanup on a failure path: what the controller should have killed. */
static void stalled_kill(const stalled *s, int n) {
  for (int i = 0; i < n; i++)
    if (stalled_alive(&s[i])) kill(s[i].pid, SIGKILL);
}

/* A node whose processes hang: every process in its cgroups SIGSTOPped,
 * so its ranks stay alive and connected but send nothing.  The node, its
 * cgroups and mpirun stay as they are.  Returns how many were stopped. */
static int node_stall(const char *run, const char *id, stalled *out, int cap) {
  char cg[8][PATH_MAX];
  int ncg = node_cgroups(run, id, cg, 8), n = 0;
  if (!ncg) TEST_FAIL_("node %s of %s has no cgroups", id, run);
  for (int i = 0; i < ncg; i++) {
    char procs[PATH_MAX + 32];
    snprintf(procs, sizeof procs, "%.4000s/cgroup.procs", cg[i]);
    FILE *f = fopen(procs, "r");
    int pid;
    while (f && fscanf(f, "%d", &pid) == 1) {
      int seen = 0;
      for (int k = 0; k < n; k++) seen |= out[k].pid == pid;
      char st;
      if (seen || n == cap || proc_stat(pid, &st, &out[n].start)) continue;
      out[n].pid = pid;
      if (kill(pid, SIGSTOP) == 0) n++;
    }
    if (f) fclose(f);
  }
  /* Stopped for real ('T'), not merely signalled. */
  for (int i = 0; i < n; i++) {
    char st = 0;
    unsigned long long start;
    for (int k = 0; k < 50 && !proc_stat(out[i].pid, &st, &start) && st != 'T'; k++)
      sleep_s(0.02);
    if (st != 'T') {
      stalled_kill(out, n);
      TEST_FAIL_("process %d of node %s is '%c', not stopped", (int)out[i].pid, id, st);
    }
  }
  return n;
}

/* ---- node loss -------------------------------------------------------- */

typedef enum { LOSS_VANISH, LOSS_PROVIDER_STOP, LOSS_STALL } loss_kind;

/* With a 3 s heartbeat timeout; the ranks of a stalled node must be
 * found silent, and no healthy rank may be (the run goes on for 25
 * iterations, MPI init included, under the same timeout first). */
#define STALL_TIMEOUT_S 3

static void node_loss_case(loss_kind kind) {
  fx f;
  char extra[64];
  snprintf(extra, sizeof extra, "  heartbeat_timeout_s: %d\n", STALL_TIMEOUT_S);
  fx_init_job(&f, "  - {type: eff, count: 2}\n", "  name: static\n",
              kind == LOSS_STALL ? extra : "");
  char *argv[] = {PARAMOUNT, "run", f.cfg, "--out", f.run, "--no-status", NULL};
  int fd;
  pid_t pid = spawn(argv, &fd);
  /* Past two checkpoints and a few PIs into the third interval. */
  wait_iter(f.run, 2 * CKPT_EVERY + 5, 60);
  const char *victim = kind == LOSS_PROVIDER_STOP ? "n1" : "n2"; /* n1: rank 0's node */
  stalled st[64];
  int nst = 0;
  if (kind == LOSS_PROVIDER_STOP) node_provider_stop(&f, victim);
  else if (kind == LOSS_VANISH) node_vanish(f.run, victim);
  else {
    ASSERT_EQ_INT(journal_summary(f.run).node_lost, 0); /* no false alarm so far */
    nst = node_stall(f.run, victim, st, 64);
    printf("stopped %d processes of %s\n", nst, victim);
    ASSERT(nst >= 2); /* its Open MPI daemon and its rank at least */
    /* Only the heartbeat can tell: the cgroups are there, mpirun waits. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double waited = 0;
    for (; waited < 60 && !journal_summary(f.run).node_lost; waited += 0.1) sleep_s(0.1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("node_lost %.1f s after the stop (timeout %d s)\n", took, STALL_TIMEOUT_S);
    if (waited >= 60) {
      stalled_kill(st, nst);
      TEST_FAIL_("no node_lost within 60 s of stalling %s", victim);
    }
    /* Not before the timeout (the last frame came at most ~1 s before
     * the stop), and well before the default 15 s would allow (health
     * checks run every second, mpirun gets a 3 s grace to die, and a
     * loaded host gets slack). */
    ASSERT_OP_DBL(took, >=, STALL_TIMEOUT_S - 1.5);
    ASSERT_OP_DBL(took, <, STALL_TIMEOUT_S + 10);
    const char *sil = strstr(journal_summary(f.run).cause, " silent for ");
    if (!sil) TEST_FAIL_("node_lost's cause does not say a rank was silent");
    double silent_s = strtod(sil + strlen(" silent for "), NULL);
    ASSERT_OP_DBL(silent_s, >=, STALL_TIMEOUT_S);
    ASSERT_OP_DBL(silent_s, <, 15);
    /* The recovery itself terminated n2 (before it journaled node_lost),
     * not the end of the run, and its stopped processes are gone now:
     * SIGKILLed with the job's process group or by the provider's stop
     * (processes_killed says which got there first). */
    jterm t = journal_terminated(f.run, victim);
    printf("%s terminated: %lld processes left for the provider to kill\n", victim,
           (long long)t.killed);
    if (t.terminated != 1) {
      stalled_kill(st, nst);
      TEST_FAIL_("%s: %d node_terminated records at node_lost", victim, t.terminated);
    }
    for (int i = 0; i < nst; i++) {
      for (int k = 0; k < 50 && stalled_alive(&st[i]); k++) sleep_s(0.1);
      if (stalled_alive(&st[i])) {
        stalled_kill(st, nst);
        TEST_FAIL_("stopped process %d of %s survived its node's termination", (int)st[i].pid,
                   victim);
      }
    }
  }
  char *out = NULL;
  int rc = finish(pid, fd, &out);
  printf("%s", out);
  if (rc) {
    stalled_kill(st, nst);
    TEST_FAIL_("paramount run exited %d", rc);
  }
  ASSERT_CONTAINS(out, "fault 1 at ");
  ASSERT_CONTAINS(out, kind == LOSS_PROVIDER_STOP ? ": n1 (eff); " : ": n2 (eff); ");
  ASSERT_CONTAINS(out, "from the last checkpoint");
  ASSERT_CONTAINS(out, "replacement: n3 (eff)");
  ASSERT_CONTAINS(out, "job: done after 60 iterations");
  jsum s = journal_summary(f.run);
  ASSERT_EQ_INT(s.node_lost, 1);
  ASSERT_EQ_INT(s.recovered, 1);
  ASSERT_CONTAINS(s.what, kind == LOSS_PROVIDER_STOP ? "n1 (eff)" : "n2 (eff)");
  if (kind == LOSS_STALL) ASSERT_CONTAINS(s.cause, "n2: rank 1 silent for ");
  else ASSERT_CONTAINS(s.cause, ": not alive (provider check)");
  if (s.lost_iters < 0 || s.lost_iters > CKPT_EVERY)
    TEST_FAIL_("%lld iterations lost, more than the checkpoint interval %d",
               (long long)s.lost_iters, CKPT_EVERY);
  assert_result_is_reference(f.run);
  char *nodes[] = {PARAMOUNT, "nodes", f.run, NULL};
  free(out);
  ASSERT_EQ_INT(run_capture(nodes, &out), 0);
  ASSERT_CONTAINS(out, "3 nodes, 0 live");
  free(out);
  assert_no_orphan(f.run);
}

TEST(vanished_node_is_replaced_job_resumes) {
  SKIP_UNLESS_RUNNABLE();
  node_loss_case(LOSS_VANISH);
}

TEST(rank0_node_stopped_by_provider_is_replaced) {
  SKIP_UNLESS_RUNNABLE();
  node_loss_case(LOSS_PROVIDER_STOP);
}

TEST(silent_node_is_declared_lost_and_replaced) {
  SKIP_UNLESS_RUNNABLE();
  node_loss_case(LOSS_STALL);
}

/* job.heartbeat_timeout_s: default, accepted values, clear refusals. */
TEST(heartbeat_timeout_config) {
  static run_config cfg;
  char err[1024] = "";
  static const char base[] = "cluster: [{type: eff}]\njob:\n  command: [app]\n";
  ASSERT_EQ_INT(run_config_parse("d/run.yaml", base, strlen(base), &cfg, err, sizeof err), 0);
  ASSERT_OP_DBL(cfg.heartbeat_timeout_s, ==, 15);
  static const struct {
    const char *value, *error; /* NULL: accepted */
    double want;
  } cases[] = {
      {"3", NULL, 3},
      {"2.5", NULL, 2.5},
      {"86400", NULL, 86400},
      {"0", "d/run.yaml:4: field 'job.heartbeat_timeout_s': 0 is out of range [2, 86400]", 0},
      {"-5", "d/run.yaml:4: field 'job.heartbeat_timeout_s': -5 is out of range [2, 86400]", 0},
      {"1", "d/run.yaml:4: field 'job.heartbeat_timeout_s': 1 is out of range [2, 86400]", 0},
      {"soon", "d/run.yaml:4: field 'job.heartbeat_timeout_s': must be a number, got 'soon'", 0},
      {"nan", "d/run.yaml:4: field 'job.heartbeat_timeout_s': must be a number, got 'nan'", 0},
      {"[3]", "d/run.yaml:4: field 'job.heartbeat_timeout_s': must be a number, got '?'", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[256];
    snprintf(text, sizeof text, "%s  heartbeat_timeout_s: %s\n", base, cases[i].value);
    err[0] = '\0';
    int rc = run_config_parse("d/run.yaml", text, strlen(text), &cfg, err, sizeof err);
    printf("  %-6s -> %d %s\n", cases[i].value, rc, err);
    if (!cases[i].error) {
      ASSERT_EQ_INT(rc, 0);
      ASSERT_OP_DBL(cfg.heartbeat_timeout_s, ==, cases[i].want);
    } else {
      ASSERT_EQ_INT(rc, PM_EPARSE);
      ASSERT_STREQ(err, cases[i].error);
    }
  }
  /* The field belongs to job:, not to the top level or the policy. */
  static const char top[] = "cluster: [{type: eff}]\nheartbeat_timeout_s: 3\n";
  ASSERT_EQ_INT(run_config_parse("d/run.yaml", top, strlen(top), &cfg, err, sizeof err),
                PM_EPARSE);
  ASSERT_CONTAINS(err, "unknown top-level field");
}

/* ---- the ESRGAN trainer under node loss ----------------------------- */

/* The tiny model of test_esrgan_dp.c: 8 synthetic images, global batch 2,
 * so 4 iterations an epoch; 2 warm-up iterations, then a checkpoint every
 * ESR_CKPT_EVERY; --max-iters makes the last iteration checkpoint too. */
#define ESR_CKPT_EVERY 4
#define ESR_ITERS 40

static uint64_t esr_ckpt_next_iter(const char *path, uint64_t *samples) {
  char *buf = NULL;
  size_t len = 0;
  if (util_read_file(path, 256 << 20, &buf, &len)) TEST_FAIL_("cannot read %s", path);
  if (len < 128 || memcmp(buf, "PMESRCK1", 8)) TEST_FAIL_("%s: not an ESRGAN checkpoint", path);
  uint64_t next = 0;
  memcpy(&next, buf + 32, 8); /* docs/esrgan.md: header layout */
  memcpy(samples, buf + 96, 8);
  free(buf);
  return next;
}

TEST(esrgan_node_lost_mid_training_resumes) {
  SKIP_UNLESS_RUNNABLE();
  if (access(ESRGAN, X_OK)) {
    printf("SKIP: needs %s\n", ESRGAN);
    return;
  }
  fx f;
  fx_init(&f, "", ""); /* for its directory and catalog; the config is ours */
  /* No --out: under paramount the trainer writes into PARAMOUNT_RUN_DIR
   * (the ranks' cwd is mpirun's, where checkpoints would be refused), so
   * its checkpoints fit the default job.checkpoint_dir and outlive the
   * node of rank 0, which writes them. */
  char text[PATH_MAX + 1024];
  snprintf(text, sizeof text,
           "catalog: cat.yaml\nforce: true\ncluster:\n  - {type: fast, count: 2}\n"
           "job:\n  command: [%s, --hr, '32', --filters, '16', --blocks, '1', --no-vgg, 'off',\n"
           "            --sample-interval, '0', --print-interval, '1000', --synthetic, '8',\n"
           "            --batch, '2', --warmup, '2', --epochs, '%d', --checkpoint-interval, '%d',\n"
           "            --max-iters, '%d']\n"
           "  resume: [--resume, '{checkpoint}']\n  checkpoint_every: %d\n"
           "  heartbeat_timeout_s: 5\n  stop_timeout_s: 60\n"
           "policy:\n  name: static\n  interval_s: 1\n",
           ESRGAN, ESR_ITERS / 4, ESR_CKPT_EVERY, ESR_ITERS, ESR_CKPT_EVERY);
  write_text(f.cfg, text);
  char *argv[] = {PARAMOUNT, "run", f.cfg, "--out", f.run, "--no-status", NULL};
  int fd;
  pid_t pid = spawn(argv, &fd);
  /* Past the checkpoints at 4 and 8, into the third interval: rank 0's
   * node (the one that writes the checkpoints) vanishes. */
  wait_iter(f.run, 2 * ESR_CKPT_EVERY + 3, 90);
  jsum before = journal_summary(f.run);
  ASSERT_EQ_INT(before.node_lost, 0);
  node_vanish(f.run, "n1");
  char *out = NULL;
  int rc = finish(pid, fd, &out);
  printf("%s", out);
  if (rc) TEST_FAIL_("paramount run exited %d", rc);
  ASSERT_CONTAINS(out, ": n1 (fast); ");
  ASSERT_CONTAINS(out, "replacement: n3 (fast)");
  jsum s = journal_summary(f.run);
  printf("lost %lld iterations; last checkpoint %s (iteration %lld)\n", (long long)s.lost_iters,
         s.last_ckpt, (long long)s.last_ckpt_iter);
  ASSERT_EQ_INT(s.node_lost, 1);
  ASSERT_EQ_INT(s.recovered, 1);
  ASSERT_EQ_INT(s.ckpt_refused, 0);
  ASSERT_CONTAINS(s.what, "n1 (fast)");
  ASSERT_CONTAINS(s.cause, "n1: not alive (provider check)");
  if (s.lost_iters < 0 || s.lost_iters > ESR_CKPT_EVERY)
    TEST_FAIL_("%lld iterations lost, more than the checkpoint interval %d",
               (long long)s.lost_iters, ESR_CKPT_EVERY);
  ASSERT_EQ_U64(s.max_iter1, ESR_ITERS);
  /* The trainer's last checkpoint is the end of training. */
  char want[PATH_MAX + 64];
  snprintf(want, sizeof want, "%s/saved_models/esrgan_%d.ckpt", f.run, ESR_ITERS - 1);
  ASSERT_STREQ(s.last_ckpt, want);
  uint64_t samples = 0;
  ASSERT_EQ_U64(esr_ckpt_next_iter(want, &samples), ESR_ITERS);
  ASSERT_EQ_U64(samples, 2 * ESR_ITERS);
  /* The relaunch resumed (not restarted) and ended consistent. */
  char log[PATH_MAX + 32];
  snprintf(log, sizeof log, "%s/job-1.log", f.run);
  char *text2 = read_text(log);
  char start[64];
  snprintf(start, sizeof start, "starting at iteration %lld of %d", (long long)s.ck_next,
           ESR_ITERS);
  ASSERT(s.ck_next > 0);
  ASSERT_CONTAINS(text2, start);
  ASSERT_CONTAINS(text2, "paramount-esrgan: done iterations=40 samples=80 ranks=2");
  ASSERT_CONTAINS(text2, "consistent=1");
  free(text2);
  free(out);
  char *nodes[] = {PARAMOUNT, "nodes", f.run, NULL};
  ASSERT_EQ_INT(run_capture(nodes, &out), 0);
  ASSERT_CONTAINS(out, "3 nodes, 0 live");
  free(out);
  assert_no_orphan(f.run);
}

/* ---- controller crash ------------------------------------------------- */

/* SIGKILL `paramount run` at seeded random moments - while the nodes
 * boot, while the job trains, while the cluster switches - then
 * `paramount down`: nothing of the run may survive and the journal must
 * read completely.  Every second run is then resumed to the right end. */
TEST(controller_sigkill_at_random_then_down_and_resume) {
  SKIP_UNLESS_RUNNABLE();
  const char *env = getenv("PM_TEST_SEED");
  unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
  printf("seed %u (PM_TEST_SEED=%u repeats it)\n", seed, seed);
  srand(seed);
  /* Delays spread over provisioning (< 0.4 s), training (the heterogeneous
   * start, ~1-3 s), the switch to 3 x eff (the early rule decides at ~3 s;
   * setup, stop, checkpoint and relaunch to ~5 s) and training after it:
   * one per slot. */
  static const double slot_lo[] = {0.05, 0.5, 2.5, 3.2, 4.0, 6.0};
  const int runs = (int)(sizeof slot_lo / sizeof slot_lo[0]);
  int resumed = 0;
  for (int i = 0; i < runs; i++) {
    double delay = slot_lo[i] + (i == 0 ? 0.3 : 1.5) * (double)rand() / RAND_MAX;
    fx f;
    fx_init(&f, "  - {type: slow}\n  - {type: eff}\n  - {type: fast}\n",
            "  objective: min-cost\n");
    char *argv[] = {PARAMOUNT, "run", f.cfg, "--out", f.run, "--no-status", NULL};
    int fd;
    pid_t pid = spawn(argv, &fd);
    sleep_s(delay);
    kill(pid, SIGKILL);
    char *out = NULL;
    int st = finish(pid, fd, &out);
    if (st != 128 + SIGKILL) TEST_FAIL_("run %d ended (%d) before its kill:\n%s", i + 1, st, out);
    free(out);
    jsum s = journal_summary(f.run);
    printf("kill %d at %.2f s: %llu iterations done\n", i + 1, delay,
           (unsigned long long)s.max_iter1);
    ASSERT_EQ_INT(s.run_end, 0);
    if (access(f.run, F_OK)) continue; /* killed before it made its directory */
    char *down[] = {PARAMOUNT, "down", f.run, NULL};
    st = run_capture(down, &out);
    if (st) TEST_FAIL_("paramount down exited %d:\n%s", st, out);
    free(out);
    assert_no_orphan(f.run);
    journal_summary(f.run);
    if (i % 2 || access(f.run, F_OK)) continue;
    /* Resume (on even runs): the job completes with the uninterrupted
     * result, and again nothing is left behind. */
    char *res[] = {PARAMOUNT, "resume", f.run, "--no-status", NULL};
    st = run_capture(res, &out);
    printf("%s", out);
    if (st) TEST_FAIL_("paramount resume exited %d", st);
    ASSERT_CONTAINS(out, "job: done after 60 iterations");
    free(out);
    assert_result_is_reference(f.run);
    assert_no_orphan(f.run);
    ASSERT_EQ_INT(journal_summary(f.run).run_end, 1);
    if (!resumed++) {
      /* A completed run is not resumed again. */
      ASSERT_EQ_INT(run_capture(res, &out), 1);
      ASSERT_CONTAINS(out, "completed already");
      free(out);
    }
  }
  ASSERT(resumed >= 1);
}

TEST_MAIN()
