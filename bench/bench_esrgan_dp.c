/* bench_esrgan_dp.c - data-parallel ESRGAN on this machine (issue 5): time
 * per step and scaling efficiency T1 / (P x TP) for 1, 2, 3 ranks under
 * real mpirun jobs, and what a stop-checkpoint-resume cycle costs, from the
 * last iteration before the stop to the first one after the resume on
 * another rank count, split into its parts.  Medians over --reps runs.
 *
 * Usage: bench_esrgan_dp [--reps N] [--steps N] [--hr N] [--filters N]
 *          [--blocks N] [--batch N] [--threads N] [--stop-after N]
 *          [--pairs A:B,...] [--keep]   (needs mpirun; ~4 min on 2 cores)
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef ESRGAN_BIN
#define ESRGAN_BIN "paramount-esrgan"
#endif

#define BENCH_MAXRANKS 3
#define BENCH_MAXREPS 50
#define BENCH_MAXPAIRS 8
#define BENCH_RUN_TIMEOUT_S 600.0

typedef struct {
  int reps, steps, hr, filters, blocks, batch, threads, stop_after, keep;
  int npairs, pair_from[BENCH_MAXPAIRS], pair_to[BENCH_MAXPAIRS];
} bench_opts;

/* What one trainer run printed on its final two lines (rank 0). */
typedef struct {
  double step_s, compute_s, comm_s;                  /* medians over the run */
  double start, init_end, first_iter_end, last_iter_end, exit; /* unix s */
  double mpi_init_s, data_s, model_s, resume_s, ckpt_write_s;
  char checkpoint[PATH_MAX];
} bench_run;

/* One stop/resume cycle, seconds; the parts sum to total_s. */
enum { PART_WRITE, PART_FINAL, PART_EXIT, PART_RELAUNCH, PART_MPI, PART_DATA, PART_MODEL,
       PART_LOAD, PART_SETUP, PART_FIRST, PART_TOTAL, NPARTS };
static const char *const bench_part_names[NPARTS] = {
    "checkpoint write", "final agreement + report", "process exit (mpirun reaped)",
    "relaunch (mpirun to main)", "MPI init", "data load", "model build",
    "checkpoint load", "other setup", "first iteration", "total last -> first"};

static double bench_real_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts); /* the trainer's timestamps use it too */
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench_cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double bench_median(const double *v, int n) {
  double s[BENCH_MAXREPS];
  memcpy(s, v, sizeof(double) * (size_t)n);
  qsort(s, (size_t)n, sizeof *s, bench_cmp_dbl);
  return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static int bench_remove_one(const char *path, const struct stat *sb, int flag,
                            struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

static long bench_opt_long(const char *name, const char *v, long lo, long hi) {
  char *end;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || errno || end == v || *end || x < lo || x > hi) {
    fprintf(stderr, "bench_esrgan_dp: --%s: '%s' is not an integer in [%ld, %ld]\n", name,
            v ? v : "", lo, hi);
    exit(2);
  }
  return x;
}

/* "A:B,C:D": stop on A ranks, resume on B. */
static void bench_parse_pairs(bench_opts *o, const char *v) {
  o->npairs = 0;
  for (const char *p = v; *p;) {
    int a, b, used = 0;
    if (o->npairs == BENCH_MAXPAIRS || sscanf(p, "%d:%d%n", &a, &b, &used) != 2 || a < 1 ||
        a > BENCH_MAXRANKS || b < 1 || b > BENCH_MAXRANKS) {
      fprintf(stderr, "bench_esrgan_dp: --pairs: '%s' is not up to %d comma-separated A:B "
                      "with ranks in [1, %d]\n", v, BENCH_MAXPAIRS, BENCH_MAXRANKS);
      exit(2);
    }
    o->pair_from[o->npairs] = a, o->pair_to[o->npairs] = b, o->npairs++;
    p += used;
    if (*p == ',') p++;
    else if (*p) {
      fprintf(stderr, "bench_esrgan_dp: --pairs: unexpected '%s'\n", p);
      exit(2);
    }
  }
  if (!o->npairs) {
    fprintf(stderr, "bench_esrgan_dp: --pairs: empty\n");
    exit(2);
  }
}

static char *bench_slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, len = 0, n;
  char *buf = malloc(cap);
  while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len < 2) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) free(buf);
      buf = nb, cap *= 2;
    }
  }
  fclose(f);
  if (buf) buf[len] = '\0';
  return buf;
}

/* The last occurrence of key in out, or NULL. */
static const char *bench_last(const char *out, const char *key) {
  const char *hit = NULL;
  for (const char *p = out; (p = strstr(p, key)) != NULL; p++) hit = p;
  return hit;
}

static int bench_field(const char *line, const char *key, double *v) {
  const char *p = strstr(line, key);
  if (!p) return -1;
  char *end;
  *v = strtod(p + strlen(key), &end);
  return end == p + strlen(key) ? -1 : 0;
}

static int bench_parse(const char *out, bench_run *r) {
  memset(r, 0, sizeof *r);
  const char *fin = bench_last(out, "paramount-esrgan: stopped ");
  if (!fin) fin = bench_last(out, "paramount-esrgan: done ");
  const char *tim = bench_last(out, "paramount-esrgan: times ");
  if (!fin || !tim) return -1;
  if (!strstr(fin, "consistent=1")) return -1;
  const char *ck = strstr(fin, "checkpoint=");
  if (ck) sscanf(ck + 11, "%4095s", r->checkpoint);
  int bad = bench_field(fin, "step_median_s=", &r->step_s) ||
            bench_field(fin, "compute_median_s=", &r->compute_s) ||
            bench_field(fin, "comm_median_s=", &r->comm_s) ||
            bench_field(tim, "start=", &r->start) || bench_field(tim, "init_end=", &r->init_end) ||
            bench_field(tim, "first_iter_end=", &r->first_iter_end) ||
            bench_field(tim, "last_iter_end=", &r->last_iter_end) ||
            bench_field(tim, " exit=", &r->exit) ||
            bench_field(tim, "mpi_init_s=", &r->mpi_init_s) ||
            bench_field(tim, "data_s=", &r->data_s) || bench_field(tim, "model_s=", &r->model_s) ||
            bench_field(tim, "resume_s=", &r->resume_s) ||
            bench_field(tim, "ckpt_write_s=", &r->ckpt_write_s);
  return bad ? -1 : 0;
}

/* Runs the trainer on np ranks under mpirun with the model options and
 * extra (NULL-terminated) arguments, output into dir/out.log; fills *r,
 * and the unix times mpirun was started and reaped.  Exits the bench on
 * any failure, with the run's output: a bench of a broken run is noise. */
static void bench_trainer(const bench_opts *o, int np, const char *dir, const char *const *extra,
                          bench_run *r, double *spawned, double *reaped) {
  char nps[16], hr[16], F[16], B[16], batch[16], syn[16], log[PATH_MAX];
  snprintf(nps, sizeof nps, "%d", np);
  snprintf(hr, sizeof hr, "%d", o->hr);
  snprintf(F, sizeof F, "%d", o->filters);
  snprintf(B, sizeof B, "%d", o->blocks);
  snprintf(batch, sizeof batch, "%d", o->batch);
  snprintf(syn, sizeof syn, "%d", 16 * o->batch); /* 16 iterations per epoch */
  snprintf(log, sizeof log, "%s/out.log", dir);
  const char *argv[64] = {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", nps,
                          "-x", "OMP_NUM_THREADS", "--mca", "btl", "self,tcp",
                          "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include",
                          "lo", ESRGAN_BIN, "--synthetic", syn, "--hr", hr, "--filters", F,
                          "--blocks", B, "--batch", batch, "--warmup", "0",
                          "--sample-interval", "0", "--checkpoint-interval", "0",
                          "--print-interval", "1", "--out", dir};
  int n = 0;
  while (argv[n]) n++;
  for (int i = 0; extra[i]; i++) argv[n++] = extra[i];
  argv[n] = NULL;
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "bench_esrgan_dp: cannot create %s: %s\n", dir, strerror(errno));
    exit(1);
  }
  *spawned = bench_real_s();
  pid_t pid = fork();
  if (pid < 0) {
    perror("bench_esrgan_dp: fork");
    exit(1);
  }
  if (pid == 0) {
    setpgid(0, 0); /* a timeout kills mpirun and every rank */
    int in = open("/dev/null", O_RDONLY), out = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0) _exit(126);
    dup2(in, 0), dup2(out, 1), dup2(out, 2);
    /* in an ASan build, Open MPI's plugins leak at exit (see tests) */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", asan ? asan : "", asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  /* 1 ms polls: the process-exit part is measured by this reap */
  int st = 0;
  double until = bench_real_s() + BENCH_RUN_TIMEOUT_S;
  for (;;) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) break;
    if (bench_real_s() > until) {
      kill(-pid, SIGKILL);
      waitpid(pid, &st, 0);
      fprintf(stderr, "bench_esrgan_dp: %d-rank run in %s timed out\n", np, dir);
      exit(1);
    }
    struct timespec nap = {0, 1000000};
    nanosleep(&nap, NULL);
  }
  *reaped = bench_real_s();
  char *text = bench_slurp(log);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !text || bench_parse(text, r)) {
    const char *t = text ? text : "(no output)";
    size_t len = strlen(t);
    fprintf(stderr, "bench_esrgan_dp: %d-rank run in %s failed (status %d); its output ends:\n%s\n",
            np, dir, WIFEXITED(st) ? WEXITSTATUS(st) : -1, len > 3000 ? t + len - 3000 : t);
    exit(1);
  }
  free(text);
}

/* One stop (on a ranks, after --stop-after iterations, checkpointing) and
 * resume (on b ranks, 2 iterations) into part seconds. */
static void bench_cycle(const bench_opts *o, const char *dir, int a, int b,
                        double part[NPARTS]) {
  char d1[PATH_MAX], d2[PATH_MAX], k[16];
  if (snprintf(d1, sizeof d1, "%s/stop", dir) >= (int)sizeof d1 ||
      snprintf(d2, sizeof d2, "%s/resume", dir) >= (int)sizeof d2) {
    fprintf(stderr, "bench_esrgan_dp: path too long under %s\n", dir);
    exit(1);
  }
  snprintf(k, sizeof k, "%d", o->stop_after);
  bench_run s, r;
  double s_spawn, s_reap, r_spawn, r_reap;
  const char *stop_args[] = {"--max-iters", k, NULL};
  bench_trainer(o, a, d1, stop_args, &s, &s_spawn, &s_reap);
  if (!s.checkpoint[0]) {
    fprintf(stderr, "bench_esrgan_dp: the stopped run in %s reported no checkpoint\n", d1);
    exit(1);
  }
  const char *resume_args[] = {"--resume", s.checkpoint, "--max-iters", "2", NULL};
  bench_trainer(o, b, d2, resume_args, &r, &r_spawn, &r_reap);
  part[PART_WRITE] = s.ckpt_write_s;
  part[PART_FINAL] = s.exit - s.last_iter_end - s.ckpt_write_s;
  part[PART_EXIT] = s_reap - s.exit;
  part[PART_RELAUNCH] = r.start - s_reap; /* includes the bench's fork */
  part[PART_MPI] = r.mpi_init_s;
  part[PART_DATA] = r.data_s;
  part[PART_MODEL] = r.model_s;
  part[PART_LOAD] = r.resume_s;
  part[PART_SETUP] = r.init_end - r.start - r.mpi_init_s - r.data_s - r.model_s - r.resume_s;
  part[PART_FIRST] = r.first_iter_end - r.init_end;
  part[PART_TOTAL] = r.first_iter_end - s.last_iter_end;
}

static void bench_usage(void) {
  printf("Usage: bench_esrgan_dp [--reps N] [--steps N] [--hr N] [--filters N] [--blocks N]\n"
         "         [--batch N] [--threads N] [--stop-after N] [--pairs A:B,...] [--keep]\n"
         "Times data-parallel paramount-esrgan steps on 1..%d ranks and the\n"
         "stop-checkpoint-resume cycle (stop on A ranks, resume on B).\n",
         BENCH_MAXRANKS);
}

int main(int argc, char **argv) {
  bench_opts o = {.reps = 3, .steps = 10, .hr = 64, .filters = 32, .blocks = 2, .batch = 4,
                  .threads = 1, .stop_after = 3};
  bench_parse_pairs(&o, "2:3,3:1");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--keep")) { o.keep = 1; continue; }
    if (!strcmp(a, "--help")) { bench_usage(); return 0; }
    if (!strcmp(a, "--reps")) o.reps = (int)bench_opt_long("reps", v, 1, BENCH_MAXREPS);
    else if (!strcmp(a, "--steps")) o.steps = (int)bench_opt_long("steps", v, 3, 10000);
    else if (!strcmp(a, "--hr")) {
      o.hr = (int)bench_opt_long("hr", v, 16, 1024);
      if (o.hr % 16) { fprintf(stderr, "bench_esrgan_dp: --hr: %d is not a multiple of 16\n", o.hr); return 2; }
    } else if (!strcmp(a, "--filters")) {
      o.filters = (int)bench_opt_long("filters", v, 16, 256);
      if (o.filters % 16) { fprintf(stderr, "bench_esrgan_dp: --filters: %d is not a multiple of 16\n", o.filters); return 2; }
    } else if (!strcmp(a, "--blocks")) o.blocks = (int)bench_opt_long("blocks", v, 1, 23);
    else if (!strcmp(a, "--batch")) o.batch = (int)bench_opt_long("batch", v, 1, 64);
    else if (!strcmp(a, "--threads")) o.threads = (int)bench_opt_long("threads", v, 1, 64);
    else if (!strcmp(a, "--stop-after")) o.stop_after = (int)bench_opt_long("stop-after", v, 1, 1000);
    else if (!strcmp(a, "--pairs")) {
      if (!v) { fprintf(stderr, "bench_esrgan_dp: --pairs needs a value\n"); return 2; }
      bench_parse_pairs(&o, v);
    } else {
      fprintf(stderr, "bench_esrgan_dp: unknown option '%s' (see --help)\n", a);
      return 2;
    }
    i++; /* every other option took a value */
  }
  if (access(ESRGAN_BIN, X_OK) != 0) {
    fprintf(stderr, "bench_esrgan_dp: %s: %s (build paramount-esrgan)\n", ESRGAN_BIN,
            strerror(errno));
    return 1;
  }
  /* no controller: libparamount stays silent */
  unsetenv("PARAMOUNT_ENDPOINT"), unsetenv("PARAMOUNT_TOKEN"), unsetenv("PARAMOUNT_RUN_DIR");
  unsetenv("ESRGAN_DP_HOOKS");
  char thr[16];
  snprintf(thr, sizeof thr, "%d", o.threads);
  setenv("OMP_NUM_THREADS", thr, 1);
  char root[] = "/tmp/bench-esrgan-dp-XXXXXX";
  if (!mkdtemp(root)) {
    perror("bench_esrgan_dp: mkdtemp");
    return 1;
  }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  double load[3] = {0, 0, 0};
  FILE *la = fopen("/proc/loadavg", "r");
  if (la) {
    if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
    fclose(la);
  }
  printf("bench_esrgan_dp: hr %d, F %d, B %d, global batch %d, %d images (synthetic), warm-up 0 "
         "(every step is a GAN step: G and D), content loss on random VGG19 features;\n"
         "  %d thread(s) per rank, %ld cores online, load average %.2f at start; %d steps "
         "per run, medians over %d reps\n",
         o.hr, o.filters, o.blocks, o.batch, 16 * o.batch, o.threads, cores, load[0], o.steps,
         o.reps);

  /* Scaling: the rank counts interleaved in every rep, so slow spells of
   * a shared machine fall on all of them. */
  double step[BENCH_MAXRANKS][BENCH_MAXREPS], comp[BENCH_MAXRANKS][BENCH_MAXREPS],
      comm[BENCH_MAXRANKS][BENCH_MAXREPS];
  char steps_s[16];
  snprintf(steps_s, sizeof steps_s, "%d", o.steps);
  const char *scale_args[] = {"--max-iters", steps_s, NULL};
  for (int rep = 0; rep < o.reps; rep++)
    for (int p = 1; p <= BENCH_MAXRANKS; p++) {
      char dir[PATH_MAX];
      snprintf(dir, sizeof dir, "%s/scale-%d-%d", root, p, rep);
      bench_run r;
      double t0, t1;
      bench_trainer(&o, p, dir, scale_args, &r, &t0, &t1);
      step[p - 1][rep] = r.step_s, comp[p - 1][rep] = r.compute_s, comm[p - 1][rep] = r.comm_s;
      fprintf(stderr, "  rep %d, %d rank(s): step %.4f s (compute %.4f, comm %.4f)\n", rep + 1, p,
              r.step_s, r.compute_s, r.comm_s);
    }
  double t1 = bench_median(step[0], o.reps);
  printf("\nTime per step (rank 0's per-run medians, then the median over reps)\n");
  printf("ranks  per-rank batch  step_s  compute_s  comm_s  comm%%  samples/s  speedup  "
         "efficiency T1/(P*TP)\n");
  for (int p = 1; p <= BENCH_MAXRANKS; p++) {
    double tp = bench_median(step[p - 1], o.reps), cp = bench_median(comp[p - 1], o.reps),
           cm = bench_median(comm[p - 1], o.reps);
    char share[32];
    int q = o.batch / p, rr = o.batch % p;
    if (rr) snprintf(share, sizeof share, "%d..%d", q, q + 1);
    else snprintf(share, sizeof share, "%d", q);
    printf("%5d  %14s  %6.4f  %9.4f  %6.4f  %4.0f%%  %9.2f  %7.2f  %9.2f%s\n", p, share, tp, cp,
           cm, tp > 0 ? 100 * cm / tp : 0, o.batch / tp, t1 / tp, t1 / (p * tp),
           p * o.threads > cores ? "  (oversubscribed)" : "");
  }
  if (BENCH_MAXRANKS * o.threads > cores)
    printf("  %ld cores: ranks x threads above that share cores, so efficiency there measures "
           "oversubscription, not the network\n", cores);

  /* Stop-checkpoint-resume cycles */
  for (int k = 0; k < o.npairs; k++) {
    double part[NPARTS][BENCH_MAXREPS];
    for (int rep = 0; rep < o.reps; rep++) {
      char dir[PATH_MAX];
      snprintf(dir, sizeof dir, "%s/cycle-%d-%d", root, k, rep);
      if (mkdir(dir, 0755) != 0) {
        fprintf(stderr, "bench_esrgan_dp: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
      }
      double one[NPARTS];
      bench_cycle(&o, dir, o.pair_from[k], o.pair_to[k], one);
      for (int j = 0; j < NPARTS; j++) part[j][rep] = one[j];
      fprintf(stderr, "  rep %d, stop on %d, resume on %d: %.3f s\n", rep + 1, o.pair_from[k],
              o.pair_to[k], one[PART_TOTAL]);
    }
    double total = bench_median(part[PART_TOTAL], o.reps),
           tb = bench_median(step[o.pair_to[k] - 1], o.reps);
    printf("\nStop after %d iterations on %d rank(s), resume on %d: last iteration end -> "
           "first iteration end after the resume (medians; parts' medians need not sum)\n",
           o.stop_after, o.pair_from[k], o.pair_to[k]);
    for (int j = 0; j < NPARTS; j++) {
      double m = bench_median(part[j], o.reps);
      printf("  %-30s %8.4f s  %5.1f%%\n", bench_part_names[j], m,
             total > 0 ? 100 * m / total : 0);
    }
    printf("  = %.1f steady steps on %d rank(s) (step %.4f s)\n", tb > 0 ? total / tb : 0,
           o.pair_to[k], tb);
  }
  if (o.keep) printf("\nruns kept in %s\n", root);
  else nftw(root, bench_remove_one, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}
