/* test_esrgan_dp.c - paramount-esrgan data-parallel under real mpirun jobs
 * (1-3 ranks on 127.0.0.1), with real checkpoint files, a fake controller
 * speaking the wire protocol, and local mini-cloud nodes of different CPU
 * quotas.  Tiny model (hr 32, F 16, B 1) so the file runs in ~3 minutes.
 *
 * What it shows: the global batch fixes the mathematics (P ranks x B/P ==
 * 1 rank x B up to float reordering), a controller's stop is agreed by
 * every rank and resumes on another rank count without losing or
 * repeating work, and per-rank compute time follows the node's CPU share
 * while every rank's iteration time is the slowest one's.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "common/wire.h"
#include "paramount.h"
#include "test.h"

#define RUN_TIMEOUT_S 150
#define PARAMOUNT PM_BINARY_DIR "/paramount"
#define MAXRANKS 4

/* the tiny model every case trains; --batch, --epochs etc. are added */
#define TINY "--hr", "32", "--filters", "16", "--blocks", "1", "--no-vgg", "off", \
             "--sample-interval", "0", "--print-interval", "1000"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

/* Only a passing case removes its directory: a failure leaves evidence. */
static void remove_tree(const char *dir) { nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS); }

static void make_tmpdir(char dir[64]) {
  snprintf(dir, 64, "/tmp/pm-test-esrdp-XXXXXX");
  ASSERT(mkdtemp(dir) != NULL);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, len = 0, n;
  char *buf = malloc(cap);
  ASSERT(buf != NULL);
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
  return buf;
}

static void clean_env(void) {
  setvbuf(stdout, NULL, _IONBF, 0); /* a failing case _exits: keep its prints */
  unsetenv("PARAMOUNT_ENDPOINT");
  unsetenv("PARAMOUNT_TOKEN");
  unsetenv("PARAMOUNT_RUN_DIR");
  unsetenv("ESRGAN_DP_HOOKS");
  setenv("OMP_NUM_THREADS", "1", 1);
}

/* Starts argv (execvp, no shell) in cwd, stdout+stderr into out_path; the
 * child leads its own process group so a timeout kills mpirun and ranks. */
static pid_t spawn(char *const argv[], const char *cwd, const char *out_path) {
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    setpgid(0, 0);
    int in = open("/dev/null", O_RDONLY);
    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || chdir(cwd) != 0) _exit(126);
    dup2(in, 0), dup2(out, 1), dup2(out, 2);
    /* Open MPI's plugins leak at exit (unloaded code, no suppression can
     * name it): leak checking of the jobs is off under ASan. */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", asan ? asan : "", asan && *asan ? ":" : "");
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
    if (waitpid(pid, &st, WNOHANG) == pid) break;
    if (now_s() > until) {
      kill(-pid, SIGKILL);
      waitpid(pid, &st, 0);
      return -1;
    }
    usleep(10000);
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

typedef struct {
  int status;
  char *out; /* owned */
} run_result;

/* argv for np ranks under mpirun (np == 0: the trainer alone, no MPI) */
static int build_argv(char **argv, int np, char *npbuf, const char *const *args) {
  int n = 0;
  if (np > 0) {
    snprintf(npbuf, 16, "%d", np);
    const char *pre[] = {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", npbuf,
                         "-x", "OMP_NUM_THREADS", "--mca", "btl", "self,tcp",
                         "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo"};
    for (size_t i = 0; i < sizeof pre / sizeof *pre; i++) argv[n++] = (char *)pre[i];
    if (getenv("PARAMOUNT_ENDPOINT")) {
      argv[n++] = "-x", argv[n++] = "PARAMOUNT_ENDPOINT";
      argv[n++] = "-x", argv[n++] = "PARAMOUNT_TOKEN";
    }
  }
  argv[n++] = ESRGAN_BIN;
  for (int i = 0; args[i]; i++) {
    ASSERT(n < 95);
    argv[n++] = (char *)args[i];
  }
  argv[n] = NULL;
  return n;
}

static run_result run_esr(int np, const char *cwd, const char *const *args) {
  char *argv[96], npbuf[16], out_path[PATH_MAX];
  build_argv(argv, np, npbuf, args);
  snprintf(out_path, sizeof out_path, "%s/.out.%d", cwd, (int)getpid());
  run_result r;
  r.status = wait_child(spawn(argv, cwd, out_path), RUN_TIMEOUT_S);
  r.out = slurp(out_path);
  ASSERT(r.out != NULL);
  unlink(out_path);
  return r;
}

#define ESR(np, cwd, ...) run_esr(np, cwd, (const char *const[]){__VA_ARGS__, NULL})

typedef struct {
  int found, consistent, ranks;
  double wall_s;
  char kind[16];
  uint64_t iterations, samples, run_iterations;
  char checkpoint[PATH_MAX];
} final_line;

static final_line parse_final(const char *out) {
  final_line f;
  memset(&f, 0, sizeof f);
  const char *p = out, *hit = NULL;
  while ((p = strstr(p, "paramount-esrgan: ")) != NULL) {
    if (!strncmp(p + 18, "done ", 5) || !strncmp(p + 18, "stopped ", 8)) hit = p;
    p += 18;
  }
  if (!hit) return f;
  if (sscanf(hit + 18, "%15s iterations=%" SCNu64 " samples=%" SCNu64 " ranks=%d run_iterations=%" SCNu64,
             f.kind, &f.iterations, &f.samples, &f.ranks, &f.run_iterations) == 5)
    f.found = 1;
  const char *w = strstr(hit, "wall_s=");
  if (w) f.wall_s = atof(w + 7);
  const char *c = strstr(hit, "consistent=");
  if (c) f.consistent = atoi(c + 11);
  const char *k = strstr(hit, "checkpoint=");
  if (k) sscanf(k + 11, "%4095s", f.checkpoint);
  return f;
}

static final_line expect_ok(run_result r, const char *kind) {
  if (r.status != 0) TEST_FAIL_("paramount-esrgan exited %d:\n%s", r.status, r.out);
  final_line f = parse_final(r.out);
  if (!f.found) TEST_FAIL_("no final line in:\n%s", r.out);
  ASSERT_STREQ(f.kind, kind);
  ASSERT_EQ_INT(f.consistent, 1); /* every rank ended with the same weights */
  free(r.out);
  return f;
}

/* ---- checkpoints (layout: docs/esrgan.md) ---------------------------- */

typedef struct {
  uint32_t version;
  int32_t batch;
  uint64_t next_iter, samples_done, nG, nD, nrun;
  uint32_t nranks;
  float *G, *mG, *D, *mD, *run; /* into buf */
  char *buf;
} ckpt;

static ckpt ckpt_read(const char *path) {
  ckpt c;
  memset(&c, 0, sizeof c);
  FILE *f = fopen(path, "rb");
  if (!f) TEST_FAIL_("cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  c.buf = malloc((size_t)sz);
  ASSERT(c.buf && fread(c.buf, 1, (size_t)sz, f) == (size_t)sz);
  fclose(f);
  ASSERT(!memcmp(c.buf, "PMESRCK1", 8));
  memcpy(&c.version, c.buf + 8, 4);
  memcpy(&c.batch, c.buf + 28, 4);
  memcpy(&c.next_iter, c.buf + 32, 8);
  memcpy(&c.nG, c.buf + 56, 8);
  memcpy(&c.nD, c.buf + 64, 8);
  memcpy(&c.nrun, c.buf + 72, 8);
  memcpy(&c.samples_done, c.buf + 96, 8);
  memcpy(&c.nranks, c.buf + 104, 4);
  ASSERT_EQ_U64((uint64_t)sz, 128 + 4 * (3 * c.nG + 3 * c.nD + c.nrun) + 8);
  float *p = (float *)(c.buf + 128);
  c.G = p, c.mG = p + c.nG, c.D = p + 3 * c.nG, c.mD = c.D + c.nD, c.run = c.D + 3 * c.nD;
  return c;
}

/* max |a - b| / max |a| over the elements where mask is 0 (NULL: all) */
static double rel_diff(const float *a, const float *b, size_t n, const unsigned char *mask) {
  double md = 0, ma = 0;
  for (size_t i = 0; i < n; i++) {
    if (mask && mask[i]) continue;
    md = fmax(md, fabs((double)a[i] - b[i]));
    ma = fmax(ma, fabs((double)a[i]));
  }
  return md / fmax(ma, 1e-30);
}

/* A conv bias in front of BatchNorm has an exactly zero gradient: its
 * computed gradient is rounding noise (see test_esrgan_golden), so the
 * comparisons skip those. */
static unsigned char *prebn_mask(size_t nD) {
  static const int w[8] = {64, 64, 128, 128, 256, 256, 512, 512};
  unsigned char *m = calloc(nD, 1);
  size_t off = 0;
  int ic = 3;
  for (int L = 0; L < 8; L++) {
    off += (size_t)w[L] * ic * 9;
    if (L > 0) memset(m + off, 1, (size_t)w[L]);
    off += (size_t)w[L] + (L ? 2 * (size_t)w[L] : 0);
    ic = w[L];
  }
  ASSERT_EQ_U64(off + 512 * 9 + 1, nD);
  return m;
}

typedef struct {
  double G, mG, mD, run;
} diffs;

static diffs ckpt_diff(const ckpt *a, const ckpt *b) {
  ASSERT_EQ_U64(a->nG, b->nG);
  ASSERT_EQ_U64(a->nD, b->nD);
  unsigned char *m = prebn_mask(a->nD);
  diffs d = {rel_diff(a->G, b->G, a->nG, NULL), rel_diff(a->mG, b->mG, a->nG, NULL),
             rel_diff(a->mD, b->mD, a->nD, m), rel_diff(a->run + 0, b->run, a->nrun, NULL)};
  free(m);
  return d;
}

/* Tolerances, relative to the largest element.  Measured on this machine:
 * G ~2e-4, Adam m of G ~3e-4, Adam m of D ~3e-3 after 4 GAN steps (the
 * leaky ReLUs of D meet exact ties on the synthetic images' flat areas,
 * where rounding flips the slope); a wrong global-batch rule gives ~1. */
#define TOL_G 1e-3
#define TOL_MG 2e-3
#define TOL_MD 2e-2
#define TOL_RUN 1e-2 /* running means follow the noisy pre-BN biases */

static void print_diffs(const char *what, diffs d) {
  printf("  %-42s G %.2e  m(G) %.2e  m(D) %.2e  running %.2e\n", what, d.G, d.mG, d.mD, d.run);
}

static int diffs_within(diffs d) {
  return d.G <= TOL_G && d.mG <= TOL_MG && d.mD <= TOL_MD && d.run <= TOL_RUN;
}

static void ckpt_free(ckpt *c) { free(c->buf); }

/* ---- equivalence: the global batch fixes the mathematics -------------- */

/* 6 iterations: 2 warm-up, 4 GAN steps; checkpoint at the end. */
#define EQ_JOB(batch) TINY, "--synthetic", "12", "--warmup", "2", "--epochs", "4", \
                      "--checkpoint-interval", "0", "--max-iters", "6", "--batch", batch

static ckpt eq_run(int np, const char *dir, const char *sub, const char *batch, int dp_path) {
  char out[128], path[256];
  snprintf(out, sizeof out, "%s/%s", dir, sub);
  ASSERT_EQ_INT(mkdir(out, 0755), 0);
  clean_env();
  if (dp_path) setenv("ESRGAN_DP_HOOKS", "1", 1);
  final_line f = expect_ok(ESR(np, dir, EQ_JOB(batch), "--out", out), "stopped");
  unsetenv("ESRGAN_DP_HOOKS");
  ASSERT_EQ_U64(f.iterations, 6);
  ASSERT_EQ_U64(f.samples, 6 * (uint64_t)atoi(batch));
  snprintf(path, sizeof path, "%s/saved_models/esrgan_5.ckpt", out);
  ckpt c = ckpt_read(path);
  ASSERT_EQ_U64(c.next_iter, 6);
  ASSERT_EQ_INT(c.batch, atoi(batch)); /* the global batch, whatever np */
  ASSERT_EQ_U64(c.samples_done, 6 * (uint64_t)atoi(batch));
  ASSERT_EQ_INT(c.nranks, np ? np : 1);
  return c;
}

TEST(one_rank_batch_2B_equals_two_ranks_batch_B) {
  char dir[64];
  make_tmpdir(dir);
  printf("relative max differences (tolerances G %.0e, m(G) %.0e, m(D) %.0e, running %.0e):\n",
         TOL_G, TOL_MG, TOL_MD, TOL_RUN);
  /* the single-process reference on the data-parallel code path (sync
   * BN, global RaGAN means): only the reduction order differs */
  ckpt one = eq_run(0, dir, "one", "2", 1);
  ckpt two = eq_run(2, dir, "two", "2", 0);
  diffs d = ckpt_diff(&one, &two);
  print_diffs("1 rank x 2 vs 2 ranks x 1", d);
  ASSERT(diffs_within(d));
  /* and against the plain single-process code (oneDNN's batch norm) */
  ckpt plain = eq_run(0, dir, "plain", "2", 0);
  d = ckpt_diff(&plain, &two);
  print_diffs("1 rank x 2 (plain code) vs 2 ranks x 1", d);
  ASSERT(diffs_within(d));
  /* control: keeping the per-rank batch instead (1 rank x 1) is another
   * computation, and the same comparison says so */
  ckpt wrong = eq_run(0, dir, "wrong", "1", 1);
  d = ckpt_diff(&one, &wrong);
  print_diffs("control: 1 rank x 2 vs 1 rank x 1", d);
  ASSERT(!diffs_within(d));
  ckpt_free(&one), ckpt_free(&two), ckpt_free(&plain), ckpt_free(&wrong);
  remove_tree(dir);
}

TEST(uneven_shares_and_a_rank_without_samples_change_nothing) {
  char dir[64];
  make_tmpdir(dir);
  /* global batch 4 on 3 ranks: shares 2/1/1 */
  ckpt one4 = eq_run(0, dir, "one4", "4", 1);
  ckpt three4 = eq_run(3, dir, "three4", "4", 0);
  diffs d = ckpt_diff(&one4, &three4);
  print_diffs("1 rank x 4 vs 3 ranks x 2/1/1", d);
  ASSERT(diffs_within(d));
  /* global batch 2 on 3 ranks: rank 2 has no sample, joins every
   * collective with zeros */
  ckpt one2 = eq_run(0, dir, "one2", "2", 1);
  ckpt three2 = eq_run(3, dir, "three2", "2", 0);
  d = ckpt_diff(&one2, &three2);
  print_diffs("1 rank x 2 vs 3 ranks x 1/1/0", d);
  ASSERT(diffs_within(d));
  ckpt_free(&one4), ckpt_free(&three4), ckpt_free(&one2), ckpt_free(&three2);
  remove_tree(dir);
}

/* ---- a fake controller --------------------------------------------------- */

typedef struct {
  int fd;
  uint8_t in[4 * WIRE_MAX_FRAME];
  size_t in_len;
  int rank, has_iter;
  char node[WIRE_NAME_MAX + 1];
  uint64_t last_iter, niters;
  /* per-iteration seconds, for the mini-cloud case */
  double compute[512], wall[512];
  uint64_t iter_of[512];
} fake_conn;

typedef struct {
  int lfd;
  fake_conn c[MAXRANKS * 2];
  int nconn, nckpt;
  uint64_t ckpt_iter;
  char ckpt_path[WIRE_PATH_MAX + 1];
} fake_ctl;

static void ctl_open(fake_ctl *k) {
  memset(k, 0, sizeof *k);
  k->lfd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT(k->lfd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t salen = sizeof sa;
  ASSERT_EQ_INT(bind(k->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  ASSERT_EQ_INT(listen(k->lfd, 16), 0);
  ASSERT_EQ_INT(getsockname(k->lfd, (struct sockaddr *)&sa, &salen), 0);
  char ep[64];
  snprintf(ep, sizeof ep, "127.0.0.1:%d", ntohs(sa.sin_port));
  setenv("PARAMOUNT_ENDPOINT", ep, 1);
  setenv("PARAMOUNT_TOKEN", "test-esrdp-token", 1);
}

static void send_frame(int fd, const wire_msg *m) {
  uint8_t buf[WIRE_MAX_FRAME];
  size_t len = 0;
  ASSERT_EQ_INT(wire_encode(m, buf, sizeof buf, &len), 0);
  ASSERT_EQ_INT(send(fd, buf, len, MSG_NOSIGNAL), (long long)len);
}

/* One poll round: accepts, reads and answers frames. */
static void ctl_poll(fake_ctl *k, int timeout_ms) {
  struct pollfd pfd[MAXRANKS * 2 + 1];
  pfd[0] = (struct pollfd){.fd = k->lfd, .events = POLLIN};
  for (int i = 0; i < k->nconn; i++) pfd[i + 1] = (struct pollfd){.fd = k->c[i].fd, .events = POLLIN};
  poll(pfd, (nfds_t)k->nconn + 1, timeout_ms);
  if ((pfd[0].revents & POLLIN) && k->nconn < MAXRANKS * 2) {
    int cfd = accept(k->lfd, NULL, NULL);
    if (cfd >= 0) {
      memset(&k->c[k->nconn], 0, sizeof k->c[k->nconn]);
      k->c[k->nconn++].fd = cfd;
    }
  }
  for (int i = 0; i < k->nconn; i++) {
    fake_conn *c = &k->c[i];
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
      if (rc != 0) TEST_FAIL_("bad frame from a rank: %s", why);
      memmove(c->in, c->in + used, c->in_len - used);
      c->in_len -= used;
      if (m.type == WIRE_HELLO) {
        ASSERT_STREQ(m.u.hello.token, "test-esrdp-token");
        c->rank = (int)m.u.hello.rank;
        snprintf(c->node, sizeof c->node, "%s", m.u.hello.node);
        wire_msg w = {.type = WIRE_WELCOME};
        w.u.welcome.session = (uint32_t)i;
        send_frame(c->fd, &w);
      } else if (m.type == WIRE_ITER) {
        if (c->has_iter) ASSERT_EQ_U64(m.u.iter.iter, c->last_iter + 1); /* none skipped */
        c->has_iter = 1;
        c->last_iter = m.u.iter.iter;
        if (c->niters < 512) {
          c->compute[c->niters] = m.u.iter.compute_ns * 1e-9;
          c->wall[c->niters] = (m.u.iter.compute_ns + m.u.iter.comm_ns) * 1e-9;
          c->iter_of[c->niters] = m.u.iter.iter;
        }
        c->niters++;
      } else if (m.type == WIRE_CHECKPOINT) {
        k->nckpt++;
        k->ckpt_iter = m.u.checkpoint.iter;
        snprintf(k->ckpt_path, sizeof k->ckpt_path, "%s", m.u.checkpoint.path);
      }
    }
  }
}

static int ctl_open_conns(const fake_ctl *k) {
  int n = 0;
  for (int i = 0; i < k->nconn; i++) n += k->c[i].fd >= 0;
  return n;
}

static void ctl_close(fake_ctl *k) {
  for (int i = 0; i < k->nconn; i++)
    if (k->c[i].fd >= 0) close(k->c[i].fd);
  close(k->lfd);
  unsetenv("PARAMOUNT_ENDPOINT");
  unsetenv("PARAMOUNT_TOKEN");
}

/* Runs argv against the fake controller until it exits; when every one
 * of `nranks` ranks passed iteration `after`, sends STOP(target) to each,
 * 30 ms apart, so they hear it in different iterations.  Returns the exit
 * status (-1: killed at the timeout). */
static int ctl_run(fake_ctl *k, char *const argv[], const char *cwd, const char *out_path,
                   int nranks, uint64_t after, int send_stop, uint64_t target_delta,
                   uint64_t *target_out) {
  pid_t pid = spawn(argv, cwd, out_path);
  int exited = 0, status = -1, sent = 0;
  double until = now_s() + RUN_TIMEOUT_S;
  while (now_s() < until) {
    ctl_poll(k, 50);
    int running = 0;
    uint64_t ahead = 0;
    for (int i = 0; i < k->nconn; i++)
      if (k->c[i].has_iter && k->c[i].last_iter >= after) {
        running++;
        if (k->c[i].last_iter > ahead) ahead = k->c[i].last_iter;
      }
    if (send_stop && !sent && running == nranks) {
      uint64_t target = target_delta ? ahead + target_delta : UINT64_MAX;
      if (target_out) *target_out = target;
      for (int i = 0; i < k->nconn; i++) {
        if (k->c[i].fd < 0) continue;
        wire_msg s = {.type = WIRE_STOP};
        s.u.stop.stop_iter = target;
        send_frame(k->c[i].fd, &s);
        usleep(30000);
      }
      sent = 1;
    }
    if (!exited) {
      int st;
      if (waitpid(pid, &st, WNOHANG) == pid) {
        exited = 1;
        status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
    }
    if (exited && ctl_open_conns(k) == 0) break;
  }
  if (!exited) {
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  if (send_stop) ASSERT(sent);
  return status;
}

/* ---- agreed stop, resume on another rank count ------------------------ */

/* 8 images, global batch 2: 4 iterations per epoch, 6 epochs = 24
 * iterations, 3 of warm-up, so the stop lands in the GAN phase. */
#define SR_JOB TINY, "--synthetic", "8", "--batch", "2", "--warmup", "3", "--epochs", "6", \
               "--checkpoint-interval", "0"

static void stop_resume_case(uint64_t target_delta) {
  char dir[64], out_path[128], sub[128];
  make_tmpdir(dir);
  clean_env();
  fake_ctl k;
  ctl_open(&k);
  snprintf(out_path, sizeof out_path, "%s/stop.txt", dir);
  snprintf(sub, sizeof sub, "%s/a", dir);
  ASSERT_EQ_INT(mkdir(sub, 0755), 0);
  char *argv[96], npbuf[16];
  build_argv(argv, 2, npbuf, (const char *const[]){SR_JOB, "--out", sub, NULL});
  uint64_t target = 0;
  int st = ctl_run(&k, argv, dir, out_path, 2, 4, 1, target_delta, &target);
  char *out = slurp(out_path);
  ASSERT(out != NULL);
  if (st != 0) TEST_FAIL_("stopped job exited %d:\n%s", st, out);
  final_line f = parse_final(out);
  if (!f.found) TEST_FAIL_("no final line:\n%s", out);
  ASSERT_STREQ(f.kind, "stopped");
  ASSERT_EQ_INT(f.consistent, 1);
  ASSERT_CONTAINS(out, "ranks agreed on iteration");
  ASSERT(f.iterations < 24); /* the stop ended it, not the plan */
  if (target_delta) ASSERT_EQ_U64(f.iterations - 1, target);
  ASSERT_EQ_U64(f.samples, f.iterations * 2);
  /* both ranks ran exactly to the agreed iteration, not one further */
  ASSERT_EQ_INT(k.nconn, 2);
  for (int i = 0; i < 2; i++) ASSERT_EQ_U64(k.c[i].last_iter, f.iterations - 1);
  ASSERT_EQ_INT(k.nckpt, 1); /* one checkpoint, reported once */
  ASSERT_EQ_U64(k.ckpt_iter, f.iterations - 1);
  ASSERT_STREQ(k.ckpt_path, f.checkpoint);
  ckpt c = ckpt_read(f.checkpoint);
  ASSERT_EQ_U64(c.next_iter, f.iterations);
  ASSERT_EQ_U64(c.samples_done, f.iterations * 2);
  ASSERT_EQ_INT(c.nranks, 2);
  ckpt_free(&c);
  free(out);
  ctl_close(&k);
  printf("  2 ranks stopped after iteration %" PRIu64 " (target %s)\n", f.iterations - 1,
         target_delta ? "given" : "as soon as agreed");

  /* resume on 3 ranks (global batch 2: shares 1/1/0) and finish */
  clean_env();
  snprintf(sub, sizeof sub, "%s/b", dir);
  ASSERT_EQ_INT(mkdir(sub, 0755), 0);
  run_result r = ESR(3, dir, SR_JOB, "--out", sub, "--resume", f.checkpoint);
  ASSERT_CONTAINS(r.out, "resuming on 3 ranks a checkpoint written by 2");
  char want[64];
  snprintf(want, sizeof want, "starting at iteration %" PRIu64 " of 24", f.iterations);
  ASSERT_CONTAINS(r.out, want);
  final_line z = expect_ok(r, "done");
  ASSERT_EQ_U64(z.run_iterations, 24 - f.iterations); /* none repeated, none lost */
  /* an uninterrupted run on 1 rank agrees on every counter... */
  snprintf(sub, sizeof sub, "%s/c", dir);
  ASSERT_EQ_INT(mkdir(sub, 0755), 0);
  final_line whole = expect_ok(ESR(0, dir, SR_JOB, "--out", sub, "--max-iters", "24"), "done");
  ASSERT_EQ_U64(z.iterations, whole.iterations);
  ASSERT_EQ_U64(z.samples, whole.samples);
  ASSERT_EQ_U64(z.iterations, 24);
  ASSERT_EQ_U64(z.samples, 48);
  remove_tree(dir);
}

TEST(controller_stop_on_2_ranks_resume_on_3_loses_and_repeats_nothing) {
  stop_resume_case(0);
}

TEST(controller_stop_after_iteration_n_stops_exactly_there) { stop_resume_case(3); }

TEST(resumed_chain_computes_the_same_weights) {
  /* 2 ranks x 5 iterations, then 3 ranks x 5, against 1 rank x 10: the
   * data order and optimiser state carry over, not only the counters */
  char dir[64], a[128], b[128], c[128], p[256];
  make_tmpdir(dir);
  clean_env();
  snprintf(a, sizeof a, "%s/a", dir), snprintf(b, sizeof b, "%s/b", dir);
  snprintf(c, sizeof c, "%s/c", dir);
  ASSERT(!mkdir(a, 0755) && !mkdir(b, 0755) && !mkdir(c, 0755));
#define CH_JOB TINY, "--synthetic", "6", "--batch", "2", "--warmup", "2", "--epochs", "4", \
               "--checkpoint-interval", "0"
  expect_ok(ESR(2, dir, CH_JOB, "--out", a, "--max-iters", "5"), "stopped");
  snprintf(p, sizeof p, "%s/saved_models/esrgan_4.ckpt", a);
  final_line f = expect_ok(ESR(3, dir, CH_JOB, "--out", b, "--resume", p, "--max-iters", "5"),
                           "stopped");
  ASSERT_EQ_U64(f.iterations, 10);
  setenv("ESRGAN_DP_HOOKS", "1", 1);
  expect_ok(ESR(0, dir, CH_JOB, "--out", c, "--max-iters", "10"), "stopped");
  unsetenv("ESRGAN_DP_HOOKS");
  char pb[256], pc[256];
  snprintf(pb, sizeof pb, "%s/saved_models/esrgan_9.ckpt", b);
  snprintf(pc, sizeof pc, "%s/saved_models/esrgan_9.ckpt", c);
  ckpt kb = ckpt_read(pb), kc = ckpt_read(pc);
  diffs d = ckpt_diff(&kc, &kb);
  print_diffs("1 rank x 10 vs 2 ranks x 5 + 3 ranks x 5", d);
  ASSERT(diffs_within(d));
  ASSERT_EQ_U64(kb.samples_done, kc.samples_done);
  ckpt_free(&kb), ckpt_free(&kc);
  remove_tree(dir);
}

/* ---- periodic checkpoints and refusals ------------------------------- */

TEST(periodic_checkpoints_by_iterations_and_by_seconds) {
  char dir[64], p[256];
  make_tmpdir(dir);
  clean_env();
  /* every 3 iterations after warm-up (2): 3, 6; by seconds: at least one
   * more when a run of ~3 s asks for one per second */
  final_line f = expect_ok(ESR(2, dir, TINY, "--synthetic", "8", "--batch", "2", "--warmup", "2",
                               "--epochs", "2", "--checkpoint-interval", "3", "--out", dir),
                           "done");
  ASSERT_EQ_U64(f.iterations, 8);
  for (int it = 0; it < 8; it++) {
    snprintf(p, sizeof p, "%s/saved_models/esrgan_%d.ckpt", dir, it);
    ASSERT_EQ_INT(access(p, F_OK) == 0, it == 3 || it == 6);
  }
  remove_tree(dir);
  make_tmpdir(dir);
  f = expect_ok(ESR(2, dir, TINY, "--synthetic", "8", "--batch", "2", "--warmup", "0",
                    "--epochs", "3", "--checkpoint-interval", "0", "--checkpoint-seconds", "1",
                    "--out", dir),
                "done");
  int n = 0;
  for (int it = 0; it < 12; it++) {
    snprintf(p, sizeof p, "%s/saved_models/esrgan_%d.ckpt", dir, it);
    if (access(p, F_OK) == 0) {
      ckpt c = ckpt_read(p);
      ASSERT_EQ_U64(c.next_iter, (uint64_t)it + 1);
      ckpt_free(&c);
      n++;
    }
  }
  printf("  %d checkpoints by time in a 12-iteration run of %.1f s\n", n, f.wall_s);
  ASSERT_OP_DBL(n, >=, 1);
  remove_tree(dir);
}

static int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
  return n;
}

TEST(refusals_end_every_rank_with_one_message) {
  char dir[64], p[256];
  make_tmpdir(dir);
  clean_env();
  /* an option error: exit 2, said once (by rank 0), no hang */
  run_result r = ESR(2, dir, TINY, "--batch", "0");
  ASSERT(r.status != 0 && r.status != -1);
  ASSERT_EQ_INT(count_of(r.out, "--batch: '0' is not an integer"), 1);
  free(r.out);
  /* a corrupt checkpoint: refused on every rank, the job ends */
  expect_ok(ESR(0, dir, TINY, "--synthetic", "4", "--batch", "2", "--warmup", "1", "--epochs", "2",
                "--checkpoint-interval", "0", "--max-iters", "2", "--out", dir),
            "stopped");
  snprintf(p, sizeof p, "%s/saved_models/esrgan_1.ckpt", dir);
  int fd = open(p, O_RDWR);
  ASSERT(fd >= 0);
  ASSERT_EQ_INT(pwrite(fd, "\x7f", 1, 300), 1);
  close(fd);
  r = ESR(2, dir, TINY, "--synthetic", "4", "--batch", "2", "--warmup", "1", "--epochs", "2",
          "--resume", p, "--out", dir);
  ASSERT(r.status != 0 && r.status != -1);
  ASSERT_CONTAINS(r.out, "checksum mismatch");
  free(r.out);
  remove_tree(dir);
  /* a checkpoint of another global batch is refused, on any rank count */
  make_tmpdir(dir);
  snprintf(p, sizeof p, "%s/saved_models/esrgan_1.ckpt", dir);
  expect_ok(ESR(0, dir, TINY, "--synthetic", "4", "--batch", "2", "--warmup", "1", "--epochs", "2",
                "--checkpoint-interval", "0", "--max-iters", "2", "--out", dir),
            "stopped");
  r = ESR(2, dir, TINY, "--synthetic", "4", "--batch", "4", "--warmup", "1", "--epochs", "2",
          "--resume", p, "--out", dir);
  ASSERT(r.status != 0 && r.status != -1);
  ASSERT_CONTAINS(r.out, "checkpoint is for hr 32, F 16, B 1, batch 2");
  free(r.out);
  remove_tree(dir);
}

/* ---- the local mini-cloud: compute follows quota, wall is shared ------ */

static int run_cmd(char *const argv[], const char *cwd, char **out) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/.cmd.%d", cwd, (int)getpid());
  int st = wait_child(spawn(argv, cwd, path), 120);
  *out = slurp(path);
  unlink(path);
  return st;
}

static double median_of(double *v, int n) {
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
      double t = v[j];
      v[j] = v[j - 1], v[j - 1] = t;
    }
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

TEST(minicloud_compute_follows_quota_while_iteration_time_is_shared) {
  if (geteuid() != 0 || access(PARAMOUNT, X_OK) != 0) {
    printf("SKIP: needs root and %s\n", PARAMOUNT);
    return;
  }
  char dir[64], cat[128], cfg[128], run[128], *out = NULL;
  make_tmpdir(dir);
  clean_env();
  snprintf(cat, sizeof cat, "%s/cat.yaml", dir);
  FILE *f = fopen(cat, "w");
  ASSERT(f != NULL);
  /* 0.1 + 0.5 + 1.0 = 1.6 of the 2 cores.  The slow node gets 0.1, not
   * 0.25: on a host loaded by other work (or slowed by ASan) every rank's
   * fair share falls to ~1/3 core, where a 0.25 quota barely binds (the
   * 25/100 ratio fell to 1.12); 0.1 stays well below any fair share. */
  fprintf(f, "types:\n"
             "  - {name: q10, price_usd_per_hour: 0.1, vcpus: 2, memory_gib: 4,\n"
             "     local: {cpu_fraction: 0.1, memory_limit_mib: 1024, boot_delay_s: 0.1}}\n"
             "  - {name: q50, price_usd_per_hour: 0.2, vcpus: 2, memory_gib: 4,\n"
             "     local: {cpu_fraction: 0.5, memory_limit_mib: 1024, boot_delay_s: 0.1}}\n"
             "  - {name: q100, price_usd_per_hour: 0.4, vcpus: 4, memory_gib: 8,\n"
             "     local: {cpu_fraction: 1.0, memory_limit_mib: 1024, boot_delay_s: 0.1}}\n");
  fclose(f);
  snprintf(cfg, sizeof cfg, "%s/up.yaml", dir);
  f = fopen(cfg, "w");
  ASSERT(f != NULL);
  fprintf(f, "provider: local\ncatalog: cat.yaml\nforce: true\ncluster:\n"
             "  - {type: q10, count: 1}\n  - {type: q50, count: 1}\n  - {type: q100, count: 1}\n");
  fclose(f);
  snprintf(run, sizeof run, "%s/run", dir);
  char *up[] = {PARAMOUNT, "up", cfg, "--out", run, "--force", NULL};
  int st = run_cmd(up, dir, &out);
  if (st != 0) TEST_FAIL_("paramount up exited %d:\n%s", st, out);
  free(out);

  fake_ctl k;
  ctl_open(&k);
  char agent[PATH_MAX + 64], ck[128], out_path[128];
  snprintf(agent, sizeof agent, "%s node-exec --run %s", PARAMOUNT, run);
  snprintf(ck, sizeof ck, "%s/out", dir);
  ASSERT_EQ_INT(mkdir(ck, 0755), 0);
  snprintf(out_path, sizeof out_path, "%s/mpi.txt", dir);
  /* global batch 3: one image per rank, same work on every node; 14
   * GAN iterations after 2 warm-up */
  char *argv[] = {"mpirun", "--allow-run-as-root", "--host", "n1,n2,n3", "-np", "3",
                  "--mca", "plm_rsh_agent", agent, "--mca", "btl", "self,tcp",
                  "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo",
                  "-x", "PARAMOUNT_ENDPOINT", "-x", "PARAMOUNT_TOKEN", "-x", "OMP_NUM_THREADS",
                  ESRGAN_BIN, TINY, "--synthetic", "48", "--batch", "3", "--warmup", "2",
                  "--epochs", "1", "--max-iters", "16", "--checkpoint-interval", "0",
                  "--out", ck, NULL};
  st = ctl_run(&k, argv, dir, out_path, 3, 0, 0, 0, NULL);
  char *down[] = {PARAMOUNT, "down", run, NULL};
  int dst = run_cmd(down, dir, &out);
  free(out);
  out = slurp(out_path);
  ASSERT(out != NULL);
  if (st != 0) TEST_FAIL_("mpirun exited %d:\n%s", st, out);
  ASSERT_EQ_INT(dst, 0);
  ASSERT_EQ_INT(k.nconn, 3);
  /* per node: medians over the GAN iterations (2..15) */
  const char *nodes[3] = {"n1", "n2", "n3"};
  double comp[3], wall[3];
  for (int n = 0; n < 3; n++) {
    fake_conn *c = NULL;
    for (int i = 0; i < k.nconn; i++)
      if (!strcmp(k.c[i].node, nodes[n])) c = &k.c[i];
    if (!c) TEST_FAIL_("no rank reported from node %s:\n%s", nodes[n], out);
    ASSERT_EQ_U64(c->niters, 16);
    double cv[16], wv[16];
    int m = 0;
    for (uint64_t i = 0; i < c->niters; i++)
      if (c->iter_of[i] >= 2) cv[m] = c->compute[i], wv[m++] = c->wall[i];
    comp[n] = median_of(cv, m), wall[n] = median_of(wv, m);
  }
  printf("  median compute s: q10 %.3f, q50 %.3f, q100 %.3f (ratios %.2f, %.2f); "
         "median iteration s: %.3f, %.3f, %.3f\n",
         comp[0], comp[1], comp[2], comp[0] / comp[2], comp[1] / comp[2], wall[0], wall[1],
         wall[2]);
  /* compute follows the quota: the 10% node computes slowest.  Ideal
   * ratios are 10 and 2; the compute runs in millisecond bursts between
   * the sync-BN reductions, shorter than the 100 ms quota period, and the
   * host is shared, which narrows them (measured 2.7 for 10/100 and ~1 to
   * 1.3 for 50/100 under ASan at load 7 on 2 cores): only the clear cases. */
  ASSERT_OP_DBL(comp[0], >, 1.5 * comp[2]);
  ASSERT_OP_DBL(comp[0], >, comp[1]);
  /* every rank's iteration lasts as long as the slowest one's */
  for (int n = 0; n < 3; n++) {
    ASSERT_NEAR(wall[n], wall[0], 0.05 * wall[0] + 0.005);
    ASSERT_OP_DBL(wall[n], >=, 0.95 * comp[0]);
  }
  free(out);
  ctl_close(&k);
  remove_tree(dir);
}

TEST_MAIN()
