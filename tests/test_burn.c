/* test_burn.c - paramount-burn end to end: real mpirun jobs on 1-3 ranks,
 * real checkpoint files, and a fake controller on 127.0.0.1.
 *
 * The property behind most cases: the final (iterations, samples,
 * checksum) depends only on the global options, so an uninterrupted run
 * and any chain of stop/resume runs on other rank counts must agree.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "burn_core.h"
#include "common/wire.h"
#include "paramount.h"
#include "test.h"

#define BURN_EXE PM_BINARY_DIR "/paramount-burn"
#define RUN_TIMEOUT_S 120

/* A small global job: 10 iterations per epoch with a short last batch
 * (300 = 9 * 32 + 12), a batch that 3 ranks do not divide, and a warm-up
 * phase, so the rank split and the phase plan are both exercised. */
#define SMALL_JOB "--samples", "300", "--batch", "32", "--epochs", "2", \
                  "--work", "2000", "--phases", "warmup:3,main", "--quiet"

typedef struct {
  int status; /* exit status, or -1 after a signal or timeout */
  double wall_s;
  char *out; /* stdout and stderr together, NUL-terminated, owned */
} run_result;

typedef struct {
  int found;
  char kind[16]; /* done | stopped */
  uint64_t iterations, samples, checksum, run_iterations;
} final_line;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void make_tmpdir(char dir[64]) {
  snprintf(dir, 64, "/tmp/pm-test-burn-XXXXXX");
  ASSERT(mkdtemp(dir) != NULL);
}

static int remove_one(const char *path, const struct stat *sb, int flag,
                      struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Called at the end of a passing case; a failing one leaves its directory
 * behind for a post-mortem. */
static void remove_tree(const char *dir) {
  nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *slurp(const char *path, size_t *len_out) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  ASSERT(buf != NULL);
  size_t n;
  while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len < 2) {
      cap *= 2;
      buf = realloc(buf, cap);
      ASSERT(buf != NULL);
    }
  }
  fclose(f);
  buf[len] = '\0';
  if (len_out) *len_out = len;
  return buf;
}

static void spit(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  ASSERT(f != NULL);
  ASSERT_EQ_INT(fwrite(data, 1, len, f), len);
  ASSERT_EQ_INT(fclose(f), 0);
}

/* Starts argv (execvp, no shell) in cwd with stdout+stderr into a file and
 * stdin from /dev/null; returns the pid.  The child leads its own process
 * group so a timeout can kill mpirun and every rank at once. */
static pid_t spawn(char *const argv[], const char *cwd, const char *out_path) {
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    setpgid(0, 0);
    int in = open("/dev/null", O_RDONLY);
    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || chdir(cwd) != 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    /* Open MPI's plugins leak at exit from code that is unloaded by then,
     * which no suppression can name; under ASan, leak checking of the
     * jobs is off (everything else stays on). */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    execvp(argv[0], argv);
    _exit(127);
  }
  return pid;
}

static int wait_child(pid_t pid, double timeout_s) {
  double until = now_s() + timeout_s;
  int st = 0;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) break;
    if (now_s() > until) {
      kill(-pid, SIGKILL);
      waitpid(pid, &st, 0);
      return -1;
    }
    usleep(10000);
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static run_result run_argv(char *const argv[], const char *cwd) {
  char out_path[PATH_MAX];
  snprintf(out_path, sizeof out_path, "%s/.out.%d", cwd, (int)getpid());
  run_result r;
  double t0 = now_s();
  pid_t pid = spawn(argv, cwd, out_path);
  r.status = wait_child(pid, RUN_TIMEOUT_S);
  r.wall_s = now_s() - t0;
  r.out = slurp(out_path, NULL);
  ASSERT(r.out != NULL);
  unlink(out_path);
  return r;
}

/* Runs paramount-burn with args (NULL-terminated) on np ranks under
 * mpirun, or directly as an MPI singleton when np == 0. */
static run_result run_burn(int np, const char *cwd, const char *const *args) {
  char *argv[64];
  int n = 0;
  char npbuf[16];
  if (np > 0) {
    snprintf(npbuf, sizeof npbuf, "%d", np);
    argv[n++] = "mpirun";
    argv[n++] = "--allow-run-as-root";
    argv[n++] = "--oversubscribe";
    argv[n++] = "-np";
    argv[n++] = npbuf;
  }
  argv[n++] = BURN_EXE;
  for (int i = 0; args[i]; i++) {
    ASSERT(n < 63);
    argv[n++] = (char *)args[i];
  }
  argv[n] = NULL;
  return run_argv(argv, cwd);
}

#define BURN(np, cwd, ...) run_burn(np, cwd, (const char *const[]){__VA_ARGS__, NULL})

static final_line parse_final(const char *out) {
  final_line f;
  memset(&f, 0, sizeof f);
  const char *p = out, *hit = NULL;
  while ((p = strstr(p, "paramount-burn: ")) != NULL) {
    if (strncmp(p + 16, "done ", 5) == 0 || strncmp(p + 16, "stopped ", 8) == 0)
      hit = p;
    p += 16;
  }
  if (!hit) return f;
  if (sscanf(hit + 16, "%15s iterations=%" SCNu64 " samples=%" SCNu64
                       " checksum=0x%" SCNx64,
             f.kind, &f.iterations, &f.samples, &f.checksum) == 4)
    f.found = 1;
  const char *ri = strstr(hit, "run_iterations=");
  if (ri) sscanf(ri, "run_iterations=%" SCNu64, &f.run_iterations);
  return f;
}

static final_line expect_ok(run_result r, const char *kind) {
  if (r.status != 0) TEST_FAIL_("burn exited %d:\n%s", r.status, r.out);
  final_line f = parse_final(r.out);
  if (!f.found) TEST_FAIL_("no final line in:\n%s", r.out);
  ASSERT_STREQ(f.kind, kind);
  return f;
}

/* expect_ok for a result nobody reads again. */
static final_line burn_ok(run_result r, const char *kind) {
  final_line f = expect_ok(r, kind);
  free(r.out);
  return f;
}

/* Keeps a developer's controller or run directory out of the tests. */
static void clean_env(void) {
  unsetenv("PARAMOUNT_ENDPOINT");
  unsetenv("PARAMOUNT_TOKEN");
  unsetenv("PARAMOUNT_RUN_DIR");
}

/* ---- in-process: the MPI-free core ----------------------------------- */

TEST(slices_partition_every_batch_for_any_rank_count) {
  burn_config cfg;
  char why[256];
  char *argv[] = {"burn", "--samples", "300", "--batch", "32", NULL};
  ASSERT_EQ_INT(burn_config_parse(5, argv, &cfg, why, sizeof why), 0);
  for (int np = 1; np <= 40; np++) {
    for (uint64_t it = 0; it < burn_total_iters(&cfg); it++) {
      uint64_t next = (it % 10) * 32, e0 = 0;
      for (int r = 0; r < np; r++) {
        uint64_t e, lo, hi;
        burn_iter_slice(&cfg, it, r, np, &e, &lo, &hi);
        if (r == 0) e0 = e;
        ASSERT_EQ_U64(e, e0);
        ASSERT_EQ_U64(lo, next); /* contiguous, no gap, no overlap */
        ASSERT(hi >= lo);
        next = hi;
      }
      uint64_t want_end = (it % 10) * 32 + 32 > 300 ? 300 : (it % 10) * 32 + 32;
      ASSERT_EQ_U64(next, want_end);
    }
  }
  ASSERT_EQ_U64(burn_samples_before(&cfg, 10), 300);
  ASSERT_EQ_U64(burn_samples_before(&cfg, 13), 300 + 96);
}

TEST(sample_hash_depends_on_every_input) {
  uint64_t h = burn_sample_hash(7, 1, 1000);
  ASSERT_EQ_U64(burn_sample_hash(7, 1, 1000), h); /* pure */
  ASSERT(burn_sample_hash(8, 1, 1000) != h);
  ASSERT(burn_sample_hash(7, 2, 1000) != h);
  ASSERT(burn_sample_hash(7, 1, 1001) != h);
}

static burn_ckpt sample_ckpt(void) {
  burn_ckpt ck;
  memset(&ck, 0, sizeof ck);
  ck.samples_per_epoch = 300;
  ck.batch = 32;
  ck.epochs = 2;
  ck.work_madds = 2000;
  ck.next_iter = 13;
  ck.epoch = 1;
  ck.samples_done = 396;
  ck.checksum = UINT64_C(0x0123456789abcdef);
  ck.nranks = 3;
  snprintf(ck.phases_spec, sizeof ck.phases_spec, "warmup:3@25,main@100");
  return ck;
}

TEST(checkpoint_roundtrip_and_every_damage_refused) {
  burn_ckpt ck = sample_ckpt(), back;
  uint8_t buf[BURN_CKPT_SIZE];
  char why[256];
  burn_ckpt_encode(&ck, buf);
  ASSERT_EQ_INT(burn_ckpt_decode(buf, sizeof buf, &back, why, sizeof why), 0);
  ASSERT_EQ_U64(back.next_iter, 13);
  ASSERT_EQ_U64(back.checksum, ck.checksum);
  ASSERT_STREQ(back.phases_spec, ck.phases_spec);
  /* Every single flipped bit and every truncation is caught. */
  for (size_t i = 0; i < sizeof buf; i++)
    for (int bit = 0; bit < 8; bit++) {
      uint8_t bad[BURN_CKPT_SIZE];
      memcpy(bad, buf, sizeof bad);
      bad[i] ^= (uint8_t)(1u << bit);
      if (burn_ckpt_decode(bad, sizeof bad, &back, why, sizeof why) !=
          PM_ECORRUPT)
        TEST_FAIL_("flip of byte %zu bit %d accepted", i, bit);
    }
  for (size_t len = 0; len < sizeof buf; len++)
    ASSERT_EQ_INT(burn_ckpt_decode(buf, len, &back, why, sizeof why),
                  PM_ECORRUPT);
  ASSERT_EQ_INT(burn_ckpt_decode(buf, 100, &back, why, sizeof why),
                PM_ECORRUPT);
  ASSERT_CONTAINS(why, "truncated: 100 of 232 bytes");
}

TEST(checkpoint_with_consistent_checksum_but_lying_counters_refused) {
  burn_ckpt ck = sample_ckpt(), back;
  ck.samples_done += 1; /* a buggy writer: file checksum is still right */
  uint8_t buf[BURN_CKPT_SIZE];
  char why[256];
  burn_ckpt_encode(&ck, buf);
  ASSERT_EQ_INT(burn_ckpt_decode(buf, sizeof buf, &back, why, sizeof why),
                PM_ECORRUPT);
  ASSERT_CONTAINS(why, "inconsistent position");
}

/* ---- options --------------------------------------------------------- */

TEST(help_tells_every_option) {
  clean_env();
  char dir[64];
  make_tmpdir(dir);
  run_result r = BURN(0, dir, "--help");
  ASSERT_EQ_INT(r.status, 0);
  const char *opts[] = {"--samples", "--batch", "--work", "--phases",
                        "--epochs", "--allreduce-bytes", "--iter-sleep-ms",
                        "--stop-at", "--checkpoint-every",
                        "--checkpoint-seconds", "--checkpoint-dir",
                        "--resume", "--quiet", "--help"};
  for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
    ASSERT_CONTAINS(r.out, opts[i]);
  free(r.out);
  remove_tree(dir);
}

TEST(bad_options_exit_2_with_one_line) {
  clean_env();
  char dir[64];
  make_tmpdir(dir);
  static const struct {
    const char *args[6];
    const char *says;
  } cases[] = {
      {{"--bogus"}, "unknown option '--bogus'"},
      {{"--batch", "0"}, "--batch: '0' is not an integer"},
      {{"--batch", "12abc"}, "--batch: '12abc'"},
      {{"--work", "-5"}, "--work: '-5'"},
      {{"--epochs", "99999999999999999999999"}, "--epochs"},
      {{"--epochs"}, "--epochs needs a value"},
      {{"--quiet=1"}, "--quiet takes no value"},
      {{"stray"}, "unexpected argument 'stray'"},
      {{"--samples", "10", "--batch", "20"}, "larger than --samples"},
      {{"--phases", "warmup,main"}, "needs :ITERS"},
      {{"--phases", "main:5"}, "runs to the end"},
      {{"--phases", "w:5@0,main"}, "work percent"},
      {{"--phases", "bad name:3,main"}, "phase name"},
      {{"--phases", "warmup:1000,main"}, "the job has only 96"},
      {{"--checkpoint-dir", "/nonexistent/pm-burn"}, "not a writable directory"},
      {{"--iter-sleep-ms", "100000"}, "--iter-sleep-ms"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *args[8] = {0};
    int n = 0;
    for (; n < 6 && cases[i].args[n]; n++) args[n] = cases[i].args[n];
    args[n] = NULL;
    run_result r = run_burn(0, dir, args);
    if (r.status != 2)
      TEST_FAIL_("case %zu (%s): exit %d, want 2:\n%s", i, cases[i].args[0],
                 r.status, r.out);
    ASSERT_CONTAINS(r.out, "paramount-burn: ");
    ASSERT_CONTAINS(r.out, cases[i].says);
    /* One line: the message and nothing else. */
    const char *nl = strchr(r.out, '\n');
    if (!nl || nl[1] != '\0')
      TEST_FAIL_("case %zu: not exactly one line:\n%s", i, r.out);
    free(r.out);
  }
  remove_tree(dir);
}

/* ---- jobs ------------------------------------------------------------ */

TEST(no_arguments_runs_a_short_job) {
  clean_env();
  char dir[64];
  make_tmpdir(dir);
  char *argv[] = {BURN_EXE, NULL};
  run_result r = run_argv(argv, dir);
  final_line f = expect_ok(r, "done");
  ASSERT_EQ_U64(f.iterations, 96);
  ASSERT_EQ_U64(f.samples, 6144);
  ASSERT_CONTAINS(r.out, "phase main from iteration 0");
  ASSERT_CONTAINS(r.out, "epoch 2 done at iteration 95");
  printf("default run: %.2f s\n", r.wall_s);
  /* "A few seconds" with room for a loaded 2-core machine. */
  ASSERT_OP_DBL(r.wall_s, <, 30.0);
  free(r.out);
  remove_tree(dir);
}

TEST(one_and_three_ranks_give_the_same_result) {
  clean_env();
  char dir[64];
  make_tmpdir(dir);
  final_line one = burn_ok(BURN(1, dir, SMALL_JOB), "done");
  final_line three = burn_ok(BURN(3, dir, SMALL_JOB), "done");
  ASSERT_EQ_U64(one.iterations, 20);
  ASSERT_EQ_U64(one.samples, 600);
  ASSERT_EQ_U64(three.iterations, one.iterations);
  ASSERT_EQ_U64(three.samples, one.samples);
  ASSERT_EQ_U64(three.checksum, one.checksum);
  /* The checksum sees the work: another global job gives another one. */
  final_line other = burn_ok(BURN(2, dir, "--samples", "300", "--batch", "32",
                                    "--epochs", "2", "--work", "2001",
                                    "--phases", "warmup:3,main", "--quiet"),
                               "done");
  ASSERT(other.checksum != one.checksum);
  remove_tree(dir);
}

static void ckpt_path_in(char *out, size_t cap, const char *dir) {
  snprintf(out, cap, "%s/%s", dir, BURN_CKPT_NAME);
}

TEST(stop_on_2_resume_on_3_then_1_loses_and_repeats_nothing) {
  clean_env();
  char dir[64], ck[128];
  make_tmpdir(dir);
  ckpt_path_in(ck, sizeof ck, dir);
  final_line whole = burn_ok(BURN(1, dir, SMALL_JOB), "done");

  final_line a = burn_ok(BURN(2, dir, SMALL_JOB, "--stop-at", "7",
                                "--checkpoint-dir", dir),
                           "stopped");
  ASSERT_EQ_U64(a.iterations, 8);
  ASSERT_EQ_U64(a.samples, 256);
  burn_ckpt c;
  char why[256];
  ASSERT_EQ_INT(burn_ckpt_read(ck, &c, why, sizeof why), 0);
  ASSERT_EQ_U64(c.next_iter, 8);
  ASSERT_EQ_U64(c.checksum, a.checksum);
  ASSERT_EQ_U64(c.nranks, 2);

  /* Across an epoch boundary (iteration 9 ends epoch 0). */
  final_line b = burn_ok(BURN(3, dir, SMALL_JOB, "--resume", ck,
                                "--stop-at", "13", "--checkpoint-dir", dir),
                           "stopped");
  ASSERT_EQ_U64(b.iterations, 14);
  ASSERT_EQ_U64(b.run_iterations, 6);
  ASSERT_EQ_U64(b.samples, 300 + 4 * 32);

  final_line z = burn_ok(BURN(1, dir, SMALL_JOB, "--resume", ck), "done");
  ASSERT_EQ_U64(z.run_iterations, 6);
  ASSERT_EQ_U64(z.iterations, whole.iterations);
  ASSERT_EQ_U64(z.samples, whole.samples);
  ASSERT_EQ_U64(z.checksum, whole.checksum);
  remove_tree(dir);
}

TEST(periodic_checkpoints_resume_to_the_same_result) {
  clean_env();
  char dir[64], ck[128];
  make_tmpdir(dir);
  ckpt_path_in(ck, sizeof ck, dir);
  /* Not --quiet: the checkpoint lines are what is checked. */
  run_result r = BURN(2, dir, "--samples", "300", "--batch", "32", "--epochs",
                      "2", "--work", "2000", "--phases", "warmup:3,main",
                      "--checkpoint-every", "5", "--checkpoint-dir", dir);
  final_line whole = expect_ok(r, "done");
  ASSERT_CONTAINS(r.out, "after iteration 4\n");
  ASSERT_CONTAINS(r.out, "after iteration 9\n");
  ASSERT_CONTAINS(r.out, "after iteration 14\n");
  ASSERT(strstr(r.out, "after iteration 19") == NULL); /* the job's end */
  burn_ckpt c;
  char why[256];
  ASSERT_EQ_INT(burn_ckpt_read(ck, &c, why, sizeof why), 0);
  ASSERT_EQ_U64(c.next_iter, 15);
  final_line z = burn_ok(BURN(3, dir, SMALL_JOB, "--resume", ck), "done");
  ASSERT_EQ_U64(z.run_iterations, 5);
  ASSERT_EQ_U64(z.checksum, whole.checksum);
  ASSERT_EQ_U64(z.samples, whole.samples);
  free(r.out);
  remove_tree(dir);
}

TEST(checkpoint_seconds_writes_by_the_clock) {
  clean_env();
  char dir[64], ck[128];
  make_tmpdir(dir);
  ckpt_path_in(ck, sizeof ck, dir);
  /* 64 iterations of >= 40 ms: about 2.6 s, so 1 to 3 timed checkpoints
   * on an idle machine, and at least one on a loaded one. */
  run_result r = BURN(2, dir, "--samples", "64", "--batch", "1", "--epochs",
                      "1", "--work", "100", "--iter-sleep-ms", "40",
                      "--checkpoint-seconds", "1", "--checkpoint-dir", dir);
  final_line whole = expect_ok(r, "done");
  int n = 0;
  for (const char *p = r.out; (p = strstr(p, "burn.ckpt after iteration "));
       p++)
    n++;
  if (n < 1 || n > 3) TEST_FAIL_("%d timed checkpoints:\n%s", n, r.out);
  burn_ckpt c;
  char why[256];
  ASSERT_EQ_INT(burn_ckpt_read(ck, &c, why, sizeof why), 0);
  ASSERT(c.next_iter > 0 && c.next_iter < 64);
  final_line z = burn_ok(BURN(0, dir, "--samples", "64", "--batch", "1",
                                "--epochs", "1", "--work", "100", "--quiet",
                                "--resume", ck),
                           "done");
  ASSERT_EQ_U64(z.run_iterations, 64 - c.next_iter);
  ASSERT_EQ_U64(z.checksum, whole.checksum);
  free(r.out);
  remove_tree(dir);
}

TEST(damaged_checkpoints_refused_naming_the_file) {
  clean_env();
  char dir[64], ck[128], bad[160];
  make_tmpdir(dir);
  ckpt_path_in(ck, sizeof ck, dir);
  burn_ok(BURN(0, dir, SMALL_JOB, "--stop-at", "4", "--checkpoint-dir", dir),
            "stopped");
  size_t len = 0;
  char *good = slurp(ck, &len);
  ASSERT(good != NULL);
  ASSERT_EQ_INT(len, BURN_CKPT_SIZE);
  snprintf(bad, sizeof bad, "%s/bad.ckpt", dir);

  static const struct {
    const char *what;
    const char *says;
  } cases[] = {
      {"truncated", "truncated: 100 of 232 bytes"},
      {"flipped", "file checksum mismatch"},
      {"magic", "bad magic"},
      {"empty", "empty file"},
      {"longer", "wrong size"},
      {"missing", "No such file"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    unlink(bad);
    char copy[BURN_CKPT_SIZE + 1];
    memcpy(copy, good, BURN_CKPT_SIZE);
    copy[BURN_CKPT_SIZE] = '\n';
    const char *w = cases[i].what;
    if (!strcmp(w, "truncated")) spit(bad, copy, 100);
    else if (!strcmp(w, "flipped")) {
      copy[40] ^= 0x01; /* one bit of the data checksum */
      spit(bad, copy, BURN_CKPT_SIZE);
    } else if (!strcmp(w, "magic")) {
      memcpy(copy, "NOTBURN!", 8);
      spit(bad, copy, BURN_CKPT_SIZE);
    } else if (!strcmp(w, "empty")) spit(bad, copy, 0);
    else if (!strcmp(w, "longer")) spit(bad, copy, BURN_CKPT_SIZE + 1);
    run_result r = BURN(0, dir, SMALL_JOB, "--resume", bad);
    if (r.status != 1)
      TEST_FAIL_("%s: exit %d, want 1:\n%s", w, r.status, r.out);
    char want[256];
    snprintf(want, sizeof want, "paramount-burn: checkpoint %s refused: ", bad);
    ASSERT_CONTAINS(r.out, want);
    ASSERT_CONTAINS(r.out, cases[i].says);
    ASSERT(strstr(r.out, " done ") == NULL);
    free(r.out);
  }
  free(good);
  remove_tree(dir);
}

TEST(checkpoint_of_another_job_refused) {
  clean_env();
  char dir[64], ck[128];
  make_tmpdir(dir);
  ckpt_path_in(ck, sizeof ck, dir);
  burn_ok(BURN(0, dir, SMALL_JOB, "--stop-at", "14", "--checkpoint-dir", dir),
            "stopped");
  static const struct {
    const char *opt, *val, *says;
  } cases[] = {
      {"--batch", "16", "global batch --batch 32, this run has --batch 16"},
      {"--samples", "320", "--samples 300, this run has --samples 320"},
      {"--work", "2001", "--work 2000, this run has --work 2001"},
      {"--phases", "warmup:4,main", "--phases warmup:3@25,main@100, this run"},
      {"--epochs", "1", "beyond this run's 10 iterations"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    /* Later options override SMALL_JOB's. */
    run_result r = BURN(0, dir, SMALL_JOB, cases[i].opt, cases[i].val,
                        "--resume", ck);
    if (r.status != 1)
      TEST_FAIL_("%s %s: exit %d, want 1:\n%s", cases[i].opt, cases[i].val,
                 r.status, r.out);
    ASSERT_CONTAINS(r.out, ck);
    ASSERT_CONTAINS(r.out, cases[i].says);
    free(r.out);
  }
  /* More epochs is the same job, longer: allowed. */
  final_line f = burn_ok(BURN(0, dir, SMALL_JOB, "--epochs", "3", "--resume",
                                ck),
                           "done");
  ASSERT_EQ_U64(f.iterations, 30);
  run_result r = BURN(0, dir, SMALL_JOB, "--resume", ck, "--stop-at", "3");
  ASSERT_EQ_INT(r.status, 2);
  ASSERT_CONTAINS(r.out, "--stop-at 3 is before iteration 15");
  free(r.out);
  remove_tree(dir);
}

/* ---- a fake controller ----------------------------------------------- */

typedef struct {
  int fd;
  uint8_t in[4 * WIRE_MAX_FRAME];
  size_t in_len;
  int welcomed;
  int has_iter;
  uint64_t last_iter;
} fake_conn;

static void send_frame(int fd, const wire_msg *m) {
  uint8_t buf[WIRE_MAX_FRAME];
  size_t len = 0;
  ASSERT_EQ_INT(wire_encode(m, buf, sizeof buf, &len), 0);
  ASSERT_EQ_INT(send(fd, buf, len, MSG_NOSIGNAL), (long long)len);
}

/* Runs a 3-rank job against a fake controller that sends STOP to each rank
 * at a different moment: "as soon as you agree" (target == 0) or "after
 * iteration N" with N well ahead of every rank (target != 0). */
static void controller_stop_case(int with_target) {
  clean_env();
  char dir[64], ck[128];
  make_tmpdir(dir);
  ckpt_path_in(ck, sizeof ck, dir);
  char real_ck[PATH_MAX];
  ASSERT(realpath(dir, real_ck) != NULL);
  strcat(real_ck, "/" BURN_CKPT_NAME);

  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT(lfd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t salen = sizeof sa;
  ASSERT_EQ_INT(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  ASSERT_EQ_INT(listen(lfd, 16), 0);
  ASSERT_EQ_INT(getsockname(lfd, (struct sockaddr *)&sa, &salen), 0);
  char ep[64];
  snprintf(ep, sizeof ep, "127.0.0.1:%d", ntohs(sa.sin_port));
  setenv("PARAMOUNT_ENDPOINT", ep, 1);
  setenv("PARAMOUNT_TOKEN", "test-burn-token", 1);

  /* Long enough (3334 iterations of >= 5 ms) that only a stop ends it. */
  char out_path[128];
  snprintf(out_path, sizeof out_path, "%s/out.txt", dir);
  char *argv[] = {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np",
                  "3", BURN_EXE, "--samples", "100000", "--batch", "30",
                  "--epochs", "1", "--work", "1000", "--iter-sleep-ms", "5",
                  "--checkpoint-dir", dir, NULL};
  pid_t pid = spawn(argv, dir, out_path);

  enum { MAXC = 8 };
  fake_conn conns[MAXC];
  int nconn = 0, stop_sent = 0, nckpt = 0, exited = 0, status = -1;
  uint64_t ckpt_iter = 0, target = 0;
  char ckpt_path_seen[WIRE_PATH_MAX + 1] = "";
  double until = now_s() + 90;
  while (now_s() < until) {
    struct pollfd pfd[MAXC + 1];
    pfd[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
    for (int i = 0; i < nconn; i++)
      pfd[i + 1] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
    poll(pfd, (nfds_t)nconn + 1, 50);
    if ((pfd[0].revents & POLLIN) && nconn < MAXC) {
      int cfd = accept(lfd, NULL, NULL);
      if (cfd >= 0) {
        memset(&conns[nconn], 0, sizeof conns[nconn]);
        conns[nconn++].fd = cfd;
      }
    }
    for (int i = 0; i < nconn; i++) {
      fake_conn *c = &conns[i];
      if (c->fd < 0 || !(pfd[i + 1].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
      if (n <= 0) {
        close(c->fd);
        c->fd = -1;
        continue;
      }
      c->in_len += (size_t)n;
      for (;;) {
        wire_msg m;
        size_t used = 0;
        const char *why = NULL;
        int rc = wire_decode(c->in, c->in_len, &m, &used, &why);
        if (rc == PM_EAGAIN) break;
        if (rc != 0) TEST_FAIL_("bad frame from burn: %s", why);
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        if (m.type == WIRE_HELLO) {
          ASSERT_STREQ(m.u.hello.token, "test-burn-token");
          wire_msg w = {.type = WIRE_WELCOME};
          w.u.welcome.session = (uint32_t)i;
          send_frame(c->fd, &w);
          c->welcomed = 1;
        } else if (m.type == WIRE_ITER) {
          c->has_iter = 1;
          c->last_iter = m.u.iter.iter;
        } else if (m.type == WIRE_CHECKPOINT) {
          nckpt++;
          ckpt_iter = m.u.checkpoint.iter;
          snprintf(ckpt_path_seen, sizeof ckpt_path_seen, "%s",
                   m.u.checkpoint.path);
        }
      }
    }
    /* Stop once all three ranks are well into the loop: "as soon as the
     * ranks agree", sent to each rank separately as a controller would. */
    int running = 0;
    for (int i = 0; i < nconn; i++)
      if (conns[i].has_iter && conns[i].last_iter >= 20) running++;
    if (!stop_sent && running == 3) {
      uint64_t ahead = 0;
      for (int i = 0; i < nconn; i++)
        if (conns[i].last_iter > ahead) ahead = conns[i].last_iter;
      /* 200 iterations of >= 5 ms: far beyond the 40 ms of staggering. */
      target = with_target ? ahead + 200 : UINT64_MAX;
      for (int i = 0; i < nconn; i++) {
        if (conns[i].fd < 0) continue;
        wire_msg s = {.type = WIRE_STOP};
        s.u.stop.stop_iter = target;
        send_frame(conns[i].fd, &s);
        usleep(20000); /* ranks hear it in different iterations */
      }
      stop_sent = 1;
    }
    if (!exited) {
      int st;
      if (waitpid(pid, &st, WNOHANG) == pid) {
        exited = 1;
        status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
    }
    int open_conns = 0;
    for (int i = 0; i < nconn; i++) open_conns += conns[i].fd >= 0;
    if (exited && open_conns == 0) break;
  }
  if (!exited) {
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  char *out = slurp(out_path, NULL);
  ASSERT(out != NULL);
  if (!exited || status != 0)
    TEST_FAIL_("burn exited=%d status=%d stop_sent=%d:\n%s", exited, status,
               stop_sent, out);
  ASSERT(stop_sent);
  final_line f = parse_final(out);
  if (!f.found) TEST_FAIL_("no final line:\n%s", out);
  ASSERT_STREQ(f.kind, "stopped");
  ASSERT(f.iterations < 3334); /* the stop ended it, not the plan */
  if (with_target) ASSERT_EQ_U64(f.iterations - 1, target);
  ASSERT_EQ_INT(nconn, 3);
  /* Every rank ran up to the same iteration, and not one further. */
  for (int i = 0; i < nconn; i++) ASSERT_EQ_U64(conns[i].last_iter, f.iterations - 1);
  ASSERT_EQ_INT(nckpt, 1);
  ASSERT_EQ_U64(ckpt_iter, f.iterations - 1);
  ASSERT_STREQ(ckpt_path_seen, real_ck);
  burn_ckpt c;
  char why[256];
  ASSERT_EQ_INT(burn_ckpt_read(ck, &c, why, sizeof why), 0);
  ASSERT_EQ_U64(c.next_iter, f.iterations);
  ASSERT_EQ_U64(c.checksum, f.checksum);
  free(out);
  close(lfd);

  /* And the stopped job finishes, without a controller, where an
   * uninterrupted one does. */
  clean_env();
  final_line z = burn_ok(BURN(1, dir, "--samples", "100000", "--batch", "30",
                                "--epochs", "1", "--work", "1000", "--quiet",
                                "--resume", ck),
                           "done");
  final_line whole = burn_ok(BURN(2, dir, "--samples", "100000", "--batch",
                                    "30", "--epochs", "1", "--work", "1000",
                                    "--quiet"),
                               "done");
  ASSERT_EQ_U64(z.iterations, whole.iterations);
  ASSERT_EQ_U64(z.samples, whole.samples);
  ASSERT_EQ_U64(z.checksum, whole.checksum);
  remove_tree(dir);
}

TEST(controller_stop_asap_agrees_on_one_iteration_and_one_checkpoint) {
  controller_stop_case(0);
}

TEST(controller_stop_after_iteration_n_stops_exactly_there) {
  controller_stop_case(1);
}

TEST_MAIN()
