/* test_trust.c - the trust model of docs/security.md, checked on real
 * components: checkpoint paths reported by ranks are held to the run's
 * checkpoint directory before any resume may use them; node-exec refuses
 * ids that are not node ids; the run token reaches the ranks and no file,
 * log or output of `paramount record`; and no code outside node-exec's
 * documented rsh-agent form runs a shell string.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "common/journal.h"
#include "common/wire.h"
#include "controller/intake.h"
#include "paramount.h"
#include "test.h"

#define PARAMOUNT PM_BINARY_DIR "/paramount"
#define FAKE_APP PM_BINARY_DIR "/test_record_app"

static char top[64]; /* made before the cases fork, removed after them */

__attribute__((constructor)) static void top_make(void) {
  snprintf(top, sizeof top, "/tmp/pm-test-trust-XXXXXX");
  if (!mkdtemp(top)) top[0] = '\0';
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

/* Runs in the parent only: the cases leave with _exit. */
__attribute__((destructor)) static void top_remove(void) {
  if (top[0]) nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory under top, resolved (the tests compare real paths). */
static void make_dir(char *dir, size_t cap) {
  ASSERT(top[0] != '\0');
  char tmpl[128];
  snprintf(tmpl, sizeof tmpl, "%s/XXXXXX", top);
  ASSERT(mkdtemp(tmpl) != NULL);
  ASSERT(realpath(tmpl, dir) != NULL);
  (void)cap;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) TEST_FAIL_("cannot open %s: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0, r;
  char *buf = malloc(cap + 1);
  while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) buf = realloc(buf, (cap *= 2) + 1);
  }
  fclose(f);
  buf[n] = '\0';
  return buf;
}

/* ---- checkpoint paths ------------------------------------------------- */

/* Table: path reported by a rank -> accepted without a root? */
static const struct {
  const char *path;
  int ok;
} lexical[] = {
    {"/run/x/burn.ckpt", 1},
    {"/tmp/ck \"1\"", 1}, /* odd but harmless: it is one argv element */
    {"burn.ckpt", 0},
    {"./burn.ckpt", 0},
    {"", 0},
    {"/run/x/../../etc/passwd", 0},
    {"/run/x/./burn.ckpt", 0},
    {"/run//x/burn.ckpt", 0},
    {"/run/x/", 0},
    {"/run/x/..", 0},
    {"/run/x/burn\n.ckpt", 0},
    {"/run/x/burn\x1b[2J.ckpt", 0},
    {"/run/x/..hidden/ok", 1}, /* only whole components count */
};

TEST(checkpoint_paths_must_be_absolute_and_normal) {
  for (size_t i = 0; i < sizeof lexical / sizeof lexical[0]; i++) {
    char why[512] = "";
    int rc = intake_checkpoint_path_check(lexical[i].path, NULL, why, sizeof why);
    if ((rc == 0) != lexical[i].ok)
      TEST_FAIL_("'%s': rc %d (%s), want %s", lexical[i].path, rc, why,
                 lexical[i].ok ? "accepted" : "refused");
    if (rc) {
      ASSERT_EQ_INT(rc, PM_EINVAL);
      ASSERT(why[0] != '\0' && strchr(why, '\n') == NULL);
    }
  }
}

TEST(checkpoint_paths_must_stay_inside_the_checkpoint_root) {
  char root[PATH_MAX], other[PATH_MAX], p[PATH_MAX + 64], why[PATH_MAX + 128];
  make_dir(root, sizeof root);
  make_dir(other, sizeof other);
  snprintf(p, sizeof p, "%s/burn.ckpt", root);
  ASSERT_EQ_INT(intake_checkpoint_path_check(p, root, why, sizeof why), 0); /* not yet written */
  int fd = open(p, O_WRONLY | O_CREAT, 0644);
  ASSERT(fd >= 0);
  close(fd);
  ASSERT_EQ_INT(intake_checkpoint_path_check(p, root, why, sizeof why), 0);
  char root_slash[PATH_MAX + 2];
  snprintf(root_slash, sizeof root_slash, "%s/", root);
  ASSERT_EQ_INT(intake_checkpoint_path_check(p, root_slash, why, sizeof why), 0);
  /* another directory, and a sibling whose name only starts like root */
  snprintf(p, sizeof p, "%s/burn.ckpt", other);
  ASSERT_EQ_INT(intake_checkpoint_path_check(p, root, why, sizeof why), PM_EINVAL);
  ASSERT_CONTAINS(why, "outside");
  snprintf(p, sizeof p, "%sx/burn.ckpt", root);
  ASSERT_EQ_INT(intake_checkpoint_path_check(p, root, why, sizeof why), PM_EINVAL);
  /* a symbolic link inside root that points out of it */
  snprintf(p, sizeof p, "%s/evil.ckpt", root);
  ASSERT_EQ_INT(symlink("/etc/passwd", p), 0);
  ASSERT_EQ_INT(intake_checkpoint_path_check(p, root, why, sizeof why), PM_EINVAL);
  ASSERT_CONTAINS(why, "outside");
  /* a root that does not exist refuses everything, with the reason */
  ASSERT_EQ_INT(intake_checkpoint_path_check("/nonexistent/x", "/nonexistent", why, sizeof why),
                PM_EINVAL);
  ASSERT_CONTAINS(why, "does not exist");
}

/* A rank over real TCP: HELLO with the token, then frames. */
static int rank_connect(intake *in, const char *token) {
  char ep[64];
  ASSERT_EQ_INT(intake_endpoint(in, ep, sizeof ep), 0);
  char *colon = strrchr(ep, ':');
  *colon = '\0';
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
  ASSERT_EQ_INT(getaddrinfo(ep, colon + 1, &hints, &ai), 0);
  int fd = socket(ai->ai_family, SOCK_STREAM, 0);
  ASSERT(fd >= 0);
  ASSERT_EQ_INT(connect(fd, ai->ai_addr, ai->ai_addrlen), 0);
  freeaddrinfo(ai);
  wire_msg m = {.type = WIRE_HELLO};
  snprintf(m.u.hello.token, sizeof m.u.hello.token, "%s", token);
  snprintf(m.u.hello.node, sizeof m.u.hello.node, "n1");
  snprintf(m.u.hello.app, sizeof m.u.hello.app, "trust");
  m.u.hello.pid = (uint32_t)getpid();
  uint8_t buf[WIRE_MAX_FRAME];
  size_t len;
  ASSERT_EQ_INT(wire_encode(&m, buf, sizeof buf, &len), 0);
  ASSERT_EQ_INT(write(fd, buf, len), (ssize_t)len);
  return fd;
}

static void rank_checkpoint(int fd, uint64_t iter, const char *path) {
  wire_msg m = {.type = WIRE_CHECKPOINT};
  m.u.checkpoint.t_ns = 1700000000000000000ull;
  m.u.checkpoint.iter = iter;
  snprintf(m.u.checkpoint.path, sizeof m.u.checkpoint.path, "%s", path);
  uint8_t buf[WIRE_MAX_FRAME];
  size_t len;
  ASSERT_EQ_INT(wire_encode(&m, buf, sizeof buf, &len), 0);
  ASSERT_EQ_INT(write(fd, buf, len), (ssize_t)len);
}

TEST(intake_offers_only_checkpoints_inside_the_root_and_journals_the_rest) {
  char run[PATH_MAX];
  make_dir(run, sizeof run);
  journal *j;
  ASSERT_EQ_INT(journal_open(run, &j), 0);
  const char *token = "0123456789abcdef0123456789abcdef";
  intake_opts o = {.token = token, .journal = j, .checkpoint_root = run};
  intake *in;
  ASSERT_EQ_INT(intake_open(&o, &in), 0);
  int fd = rank_connect(in, token);
  char good[PATH_MAX + 32];
  snprintf(good, sizeof good, "%s/burn.ckpt", run);
  rank_checkpoint(fd, 5, "/etc/passwd");
  rank_checkpoint(fd, 6, "burn.ckpt");
  rank_checkpoint(fd, 7, good);
  const intake_rank *r = NULL;
  for (int i = 0; i < 200 && !(r && r->n_checkpoints); i++) {
    ASSERT(intake_poll(in, 20) >= 0);
    r = intake_rank_find(in, 0);
  }
  ASSERT(r != NULL);
  ASSERT_EQ_INT(r->n_checkpoints, 1);
  ASSERT_STREQ(r->checkpoints[0].path, good);
  ASSERT_EQ_U64(r->checkpoints[0].iter, 7);
  ASSERT(r->connected); /* refusing a path does not cost the rank its data */
  close(fd);
  intake_close(in);
  journal_close(j);
  char jp[PATH_MAX + 32];
  snprintf(jp, sizeof jp, "%s/journal.jsonl", run);
  char *text = slurp(jp);
  ASSERT_CONTAINS(text, "\"ev\":\"checkpoint_refused\"");
  ASSERT_CONTAINS(text, "outside");
  ASSERT_CONTAINS(text, "not absolute");
  ASSERT(strstr(text, "\"path\":\"\\/etc\\/passwd\"") == NULL &&
         strstr(text, "\"path\":\"/etc/passwd\"") == NULL);
  free(text);
}

/* ---- node-exec ---------------------------------------------------------- */

/* Runs argv with stdout+stderr into *out (malloc'd); returns the status. */
static int run_capture(char *const argv[], const char *cwd, char **out) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/capture.XXXXXX", top);
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  fflush(NULL);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    if (cwd && chdir(cwd) != 0) _exit(120);
    dup2(fd, 1);
    dup2(fd, 2);
    execv(argv[0], argv);
    _exit(122);
  }
  close(fd);
  int st;
  ASSERT_EQ_INT(waitpid(pid, &st, 0), pid);
  *out = slurp(path);
  remove(path);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST(node_exec_refuses_what_is_not_a_node_id) {
  char run[PATH_MAX];
  make_dir(run, sizeof run);
  const char *bad[] = {"../x", "a/b", "n1;touch pwned", "1n", "n 1", "n1$(id)"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *argv[] = {PARAMOUNT, "node-exec", "--run", run, (char *)bad[i], "--", "/bin/true",
                    NULL};
    char *out;
    int rc = run_capture(argv, run, &out);
    if (rc != 2 || !strstr(out, "not a node id"))
      TEST_FAIL_("node id '%s': exit %d, output: %s", bad[i], rc, out);
    free(out);
  }
  struct stat st;
  ASSERT(stat("pwned", &st) != 0);
  /* a well-formed id that is not a node of this run */
  char *argv[] = {PARAMOUNT, "node-exec", "--run", run, "n7", "--", "/bin/true", NULL};
  char *out;
  ASSERT_EQ_INT(run_capture(argv, run, &out), 2);
  ASSERT_CONTAINS(out, "no node 'n7'");
  free(out);
}

/* ---- secrets -------------------------------------------------------------- */

static const char *leak_token;
static char leak_where[PATH_MAX];

static int leak_check(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)ftw;
  if (flag != FTW_F || !S_ISREG(st->st_mode)) return 0;
  const char *base = strrchr(path, '/');
  if (base && !strcmp(base, "/token.seen")) return 0; /* the fake rank's own copy */
  char *text = slurp(path);
  int leaked = strstr(text, leak_token) != NULL;
  free(text);
  if (leaked) snprintf(leak_where, sizeof leak_where, "%s", path);
  return leaked;
}

TEST(the_run_token_reaches_the_rank_and_no_file_or_output) {
  char dir[PATH_MAX];
  make_dir(dir, sizeof dir);
  char *argv[] = {PARAMOUNT, "record", "--out", "r", "--", FAKE_APP, "20", "0", NULL};
  char *out;
  int rc = run_capture(argv, dir, &out);
  if (rc != 0) TEST_FAIL_("record exited %d: %s", rc, out);
  char p[PATH_MAX + 32];
  snprintf(p, sizeof p, "%s/r/token.seen", dir);
  char *tok = slurp(p);
  ASSERT_EQ_INT(strlen(tok), 32); /* the rank did get it */
  ASSERT(strstr(out, tok) == NULL);
  leak_token = tok;
  snprintf(p, sizeof p, "%s/r", dir);
  int files = 0;
  DIR *d = opendir(p);
  ASSERT(d != NULL);
  for (struct dirent *e; (e = readdir(d));) files += e->d_name[0] != '.';
  closedir(d);
  ASSERT(files >= 3); /* journal, metrics and more were written and read */
  if (nftw(p, leak_check, 16, FTW_PHYS) != 0) TEST_FAIL_("the token is in %s", leak_where);
  free(tok);
  free(out);
}

/* `paramount run` on one local node: the token goes to the rank through
 * mpirun and node-exec, and must still appear in no file of the run
 * (journal, node records, job logs, reports) and in no output. */
TEST(run_keeps_the_token_out_of_every_file_and_output) {
  if (geteuid() != 0) {
    printf("SKIP: local nodes need root\n");
    return;
  }
  char dir[PATH_MAX], p[PATH_MAX + 32];
  make_dir(dir, sizeof dir);
  snprintf(p, sizeof p, "%s/cat.yaml", dir);
  FILE *f = fopen(p, "w");
  ASSERT(f != NULL);
  fputs("types:\n  - name: tiny\n    price_usd_per_hour: 0.01\n    vcpus: 1\n"
        "    memory_gib: 1\n    billing_granularity_s: 1\n"
        "    local: {cpu_fraction: 0.2, memory_limit_mib: 256, boot_delay_s: 0}\n",
        f);
  ASSERT_EQ_INT(fclose(f), 0);
  snprintf(p, sizeof p, "%s/run.yaml", dir);
  f = fopen(p, "w");
  ASSERT(f != NULL);
  fprintf(f,
          "provider: local\ncatalog: cat.yaml\nforce: true\n"
          "cluster:\n  - {type: tiny, count: 1}\n"
          "job:\n  command: [%s, '20', '0']\n  iterations: 20\n"
          "policy:\n  name: static\n  interval_s: 1\n",
          FAKE_APP);
  ASSERT_EQ_INT(fclose(f), 0);
  char *argv[] = {PARAMOUNT, "run", "run.yaml", "--out", "r", "--no-status", NULL};
  char *out;
  int rc = run_capture(argv, dir, &out);
  if (rc != 0) TEST_FAIL_("run exited %d: %s", rc, out);
  snprintf(p, sizeof p, "%s/r/token.seen", dir);
  char *tok = slurp(p);
  ASSERT_EQ_INT(strlen(tok), 32); /* the rank did get it */
  ASSERT(strstr(out, tok) == NULL);
  leak_token = tok;
  snprintf(p, sizeof p, "%s/r", dir);
  if (nftw(p, leak_check, 16, FTW_PHYS) != 0) TEST_FAIL_("the token is in %s", leak_where);
  snprintf(p, sizeof p, "%s/r/report.html", dir);
  ASSERT(access(p, R_OK) == 0); /* the walk did cover the report */
  free(tok);
  free(out);
}

/* ---- shell strings ---------------------------------------------------------- */

static int shell_uses;
static char shell_where[PATH_MAX + 64];

static int shell_scan(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)ftw;
  size_t n = strlen(path);
  if (flag != FTW_F || n < 2 || strcmp(path + n - 2, ".c")) return 0;
  char *text = slurp(path);
  const char *needles[] = {"system(", "popen(", "\"/bin/sh\"", "\"sh\"", "execl(\"/bin/sh"};
  for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++)
    for (const char *s = strstr(text, needles[i]); s; s = strstr(s + 1, needles[i])) {
      shell_uses++;
      if (!strstr(path, "/src/cli/cmd_node_exec.c") || strcmp(needles[i], "\"/bin/sh\""))
        snprintf(shell_where, sizeof shell_where, "%s: %s", path, needles[i]);
    }
  free(text);
  return 0;
}

TEST(no_shell_string_outside_node_exec_rsh_agent_form) {
  /* Paramount runs argv arrays; the one shell is node-exec's rsh-agent
   * form, which runs mpirun's own command line as ssh would. */
  ASSERT_EQ_INT(nftw(PM_SOURCE_DIR "/src", shell_scan, 16, FTW_PHYS), 0);
  ASSERT_EQ_INT(nftw(PM_SOURCE_DIR "/apps", shell_scan, 16, FTW_PHYS), 0);
  if (shell_where[0]) TEST_FAIL_("a shell string is run outside node-exec: %s", shell_where);
  ASSERT_EQ_INT(shell_uses, 1);
}

TEST_MAIN()
