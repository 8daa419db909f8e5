/* cmd_experiment.c - `paramount experiment seed`: the seed's two tests,
 * end to end, on this machine's local mini-cloud (docs/experiment.md).
 *
 * Test 1 starts paramount-esrgan on 3 nodes of 3 different types and lets
 * the policy reshape the cluster; Test 2 runs the same job on 3 nodes of
 * the type Test 1 ended on, from the start (the ideal run).  Both go
 * through the run API (src/controller/run.h) exactly as `paramount run`
 * does; this file only sizes the job, writes the two configs, checks that
 * every node is gone, and compares the two runs' report.json files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "common/journal.h"
#include "common/util.h"
#include "controller/config.h"
#include "controller/run.h"
#include "paramount.h"
#include "provider/catalog.h"
#include "provider/provider.h"
#include "report/report.h"

#define EXP_VERB "experiment"
#define EXP_NODES 3          /* the seed's cluster size, in both tests */
#define EXP_REPORT_MAX (64 * 1024 * 1024)
#define EXP_PROBE_OUT_MAX (256 * 1024)
#define EXP_DECISIONS_SHOWN 24 /* rows of the printed decision table */

/* One size of the job.  The seed's own settings are "full"; the others
 * shrink the per-image cost (hr, F, B, no VGG) so the two tests fit the
 * time given, keeping 1000 images and at least 2 whole epochs. */
typedef struct {
  const char *name;
  int hr, filters, blocks, batch, images;
  long warmup, epochs;
  int content;           /* VGG19 content loss on */
  long sample_iv, ckpt_iv; /* the trainer's intervals; 0: never */
  double margin;         /* policy margin of Test 1 */
  double interval_s;     /* between decisions */
  /* <1: a miniature also shrinks the catalog's boot delays and billing
   * minimums by this factor, so that a job of a minute or two still
   * faces the setup and billing it would at full size (EXP/catalog.yaml) */
  double time_scale;
  const char *why;
} exp_scale;

static const exp_scale exp_scales[] = {
    {"tiny", 32, 16, 1, 6, 240, 6, 3, 0, 0, 0, 0.10, 2, 0.2,
     "a smoke test (2-4 minutes): 240 images of 32x32, 40 PIs per epoch; boot delays and "
     "billing minimums of the catalog x 0.2"},
    {"default", 48, 16, 1, 12, 1000, 20, 3, 0, 0, 0, 0.10, 4, 1,
     "sized for about 10 minutes on a shared 2-core host: the seed's 1000 images "
     "trained at hr 48 (a GAN step of the seed's model costs ~100x more, see --full), "
     "the smallest generator (F 16, B 1), no VGG19 content loss (it would double a GAN "
     "step), global batch 12 = 4 images per rank on 3 nodes (balanced ranks), 3 epochs "
     "so that the switch is paid back and each test times whole epochs"},
    {"full", 128, 64, 23, 4, 1000, 500, 200, 1, 100, 5000, 0.05, 30, 1,
     "the seed's settings: 1000 images of 128x128, F 64, B 23, batch 4, "
     "warm-up 500, 200 epochs, VGG19 content loss"},
};

typedef struct {
  exp_scale s;
  const char *out, *images, *images_src, *catalog, *types_arg, *vgg;
  char images_dir[PATH_MAX + 32]; /* EXP/data/images: links to the files used */
  int force, dry_run, status_tty;
  char types[EXP_NODES][CATALOG_NAME_MAX];
  char esrgan[PATH_MAX];
  char catalog_path[PATH_MAX];
  char dir[PATH_MAX]; /* the experiment directory, absolute */
  char cache[PATH_MAX + 32];
  double probe_step_s; /* measured GAN step on one host core; <0 unknown */
} exp_ctx;

/* ---- small helpers --------------------------------------------------- */

static int exp_usage(FILE *f) {
  fprintf(f,
          "usage: paramount experiment seed [--out DIR] [--images DIR] [--scale S | --full]\n"
          "                                 [--epochs N] [--hr N] [--warmup N] [--types A,B,C]\n"
          "                                 [--catalog FILE] [--vgg FILE] [--force]\n"
          "                                 [--no-status] [--dry-run]\n"
          "\n"
          "Runs the seed's two tests with paramount-esrgan on the local mini-cloud:\n"
          "  Test 1: 3 nodes of 3 different types; Paramount reshapes the cluster\n"
          "          (min-cost) while the job trains.\n"
          "  Test 2: the same job on 3 nodes of the type Test 1 ended on, from the start.\n"
          "Then prints and saves the comparison (time, cost, setup, init, steady PI per\n"
          "phase, epoch time, each switch's downtime, predicted vs actual remaining time).\n"
          "\n"
          "  --out DIR       experiment directory (default: runs/experiment-<timestamp>)\n"
          "  --images DIR    train on an image folder (e.g. CelebA's img_align_celeba;\n"
          "                  its first 1000 files); default: 1000 generated images\n"
          "  --scale S       tiny | default | full (the seed's own settings; days here)\n"
          "  --full          same as --scale full\n"
          "  --epochs N      epochs (at least 2: the report times whole epochs)\n"
          "  --hr N          high-resolution side, a multiple of 16\n"
          "  --warmup N      pixel-loss-only warm-up batches\n"
          "  --types A,B,C   Test 1's three types (default m5.large,c5.large,c5.xlarge)\n"
          "  --catalog FILE  instance catalog (default: the default catalog)\n"
          "  --vgg FILE      VGG19 weights for the content loss (--scale full)\n"
          "  --force         start nodes even if their CPU quotas exceed the host's\n"
          "  --no-status     plain log lines instead of a status line on a TTY\n"
          "  --dry-run       print the settings, the configs and the expected duration;\n"
          "                  run nothing\n"
          "\n"
          "Exit status: 0 when both tests completed, Test 1 ended on a homogeneous\n"
          "cluster and every node is terminated; 1 otherwise; 2 for bad usage;\n"
          "128+N on signal N.\n");
  return f == stdout ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}

/* printf into a growing memstream and stdout at once: the table printed is
 * the table saved as comparison.txt. */
typedef struct {
  FILE *mem, *tty;
} exp_out;

static void exp_say(exp_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void exp_say(exp_out *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (o->mem) {
    va_list aq;
    va_copy(aq, ap);
    vfprintf(o->mem, fmt, aq);
    va_end(aq);
  }
  if (o->tty) vfprintf(o->tty, fmt, ap);
  va_end(ap);
}

/* YAML double-quoted scalar: a path may hold anything. */
static void exp_yaml_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\x%02x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static int exp_is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exp_is_exec(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

/* The trainer next to us: in a build tree apps/esrgan/, installed beside. */
static int exp_find_esrgan(char *out, size_t cap) {
  const char *dir = cli_self_dir();
  snprintf(out, cap, "%s/paramount-esrgan", dir);
  if (exp_is_exec(out)) return 0;
  snprintf(out, cap, "%s/apps/esrgan/paramount-esrgan", dir);
  if (exp_is_exec(out)) return 0;
  return PM_ENOENT;
}

static double exp_jnum(json_object *o, const char *k) {
  json_object *v;
  if (!o || !json_object_object_get_ex(o, k, &v) || !v) return NAN;
  if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
    return NAN;
  return json_object_get_double(v);
}

static const char *exp_jstr(json_object *o, const char *k) {
  json_object *v;
  if (!o || !json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
    return "";
  return json_object_get_string(v);
}

static json_object *exp_jarr(json_object *o, const char *k) {
  json_object *v;
  if (!o || !json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_array))
    return NULL;
  return v;
}

static json_object *exp_jdbl(double x) {
  return isfinite(x) ? json_object_new_double(x) : NULL;
}

/* "  12.34" or "      -" for an unknown value. */
static const char *exp_fmt(char *buf, size_t cap, int width, int prec, double x) {
  if (isfinite(x)) snprintf(buf, cap, "%*.*f", width, prec, x);
  else snprintf(buf, cap, "%*s", width, "-");
  return buf;
}

/* The last non-empty line of text, for an error message. */
static void exp_last_line(const char *text, char *out, size_t cap) {
  size_t n = strlen(text);
  while (n && (text[n - 1] == '\n' || text[n - 1] == '\r')) n--;
  size_t b = n;
  while (b && text[b - 1] != '\n') b--;
  snprintf(out, cap, "%.*s", (int)(n - b), text + b);
}

static int exp_cmpstr(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- sizing ---------------------------------------------------------- */

/* The argv of the job (without mpirun) into v[]; returns the count. */
static size_t exp_job_argv(const exp_ctx *x, const char *job_out, const char **v, char num[][24]) {
  size_t k = 0, n = 0;
#define ARG(s) (v[k++] = (s))
#define NUM(val) (snprintf(num[n], 24, "%ld", (long)(val)), v[k++] = num[n++])
  ARG(x->esrgan);
  if (x->images) {
    ARG("--data");
    ARG(x->images);
    ARG("--cache");
    ARG(x->cache);
  } else {
    ARG("--synthetic");
    NUM(x->s.images);
  }
  ARG("--hr");
  NUM(x->s.hr);
  ARG("--filters");
  NUM(x->s.filters);
  ARG("--blocks");
  NUM(x->s.blocks);
  ARG("--batch");
  NUM(x->s.batch);
  ARG("--warmup");
  NUM(x->s.warmup);
  ARG("--epochs");
  NUM(x->s.epochs);
  if (!x->s.content) {
    ARG("--no-vgg");
    ARG("off");
  } else if (x->vgg) {
    ARG("--vgg");
    ARG(x->vgg);
  }
  ARG("--sample-interval");
  NUM(x->s.sample_iv);
  ARG("--checkpoint-interval");
  NUM(x->s.ckpt_iv);
  ARG("--print-interval");
  NUM(50);
  if (job_out) {
    ARG("--out");
    ARG(job_out);
  }
#undef ARG
#undef NUM
  return k;
}

/* Runs argv with stdout+stderr into buf (at most cap-1 bytes kept) and
 * OMP_NUM_THREADS=1; returns the exit status (128+sig when killed), or
 * -1 when it could not be started. */
static int exp_capture(char *const *argv, char *buf, size_t cap) {
  int fd[2];
  buf[0] = '\0';
  if (pipe2(fd, O_CLOEXEC)) return -1;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(fd[0]);
    close(fd[1]);
    return -1;
  }
  if (pid == 0) {
    dup2(fd[1], 1);
    dup2(fd[1], 2);
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0) dup2(nul, 0);
    /* a rank of no controller, on one host core, like a node's rank */
    unsetenv("PARAMOUNT_ENDPOINT");
    unsetenv("PARAMOUNT_TOKEN");
    setenv("OMP_NUM_THREADS", "1", 1);
    execvp(argv[0], argv);
    dprintf(2, "cannot execute %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(fd[1]);
  size_t len = 0;
  char tmp[4096];
  for (;;) {
    ssize_t r = read(fd[0], tmp, sizeof tmp);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    /* keep the tail: the trainer's summary lines come last */
    size_t n = (size_t)r;
    if (n >= cap) n = cap - 1;
    if (len + n >= cap) {
      size_t drop = len + n - (cap - 1);
      memmove(buf, buf + drop, len - drop);
      len -= drop;
    }
    memcpy(buf + len, tmp + ((size_t)r - n), n);
    len += n;
    buf[len] = '\0';
  }
  close(fd[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* One GAN step of the chosen model, measured on one host core (no quota):
 * the base of the expected durations printed before anything starts. */
static int exp_probe_step(exp_ctx *x, const char *tmpdir) {
  exp_ctx probe = *x;
  probe.images = NULL;             /* same per-image cost, no decoding */
  probe.s.images = probe.s.batch * 2;
  probe.s.warmup = 0;
  probe.s.epochs = 1;
  probe.s.sample_iv = 0;
  probe.s.ckpt_iv = 0;
  const char *v[64];
  char num[16][24];
  size_t k = exp_job_argv(&probe, tmpdir, v, num);
  v[k++] = "--max-iters";
  v[k++] = "3";
  v[k] = NULL;
  char *buf = malloc(EXP_PROBE_OUT_MAX);
  if (!buf) return PM_ENOMEM;
  int st = exp_capture((char *const *)v, buf, EXP_PROBE_OUT_MAX);
  const char *m = strstr(buf, "step_median_s=");
  double step = m ? strtod(m + 14, NULL) : NAN;
  if (st != 0 || !isfinite(step) || step <= 0) {
    char line[512];
    exp_last_line(buf, line, sizeof line);
    cli_error(EXP_VERB, "measuring one step of %s failed (status %d): %s", x->esrgan, st, line);
    free(buf);
    return PM_ECHILD;
  }
  free(buf);
  x->probe_step_s = step;
  return 0;
}

/* Seconds of one PI of the job on EXP_NODES nodes of type t, from the
 * probe: each rank's share of the global batch at the type's CPU share,
 * plus the gradient allreduce, which on this host we measured at about a
 * third of the compute of a 0.25-core node (docs/experiment.md). */
static double exp_pi_s(const exp_ctx *x, const catalog_type *t) {
  int share = (x->s.batch + EXP_NODES - 1) / EXP_NODES;
  double compute = x->probe_step_s / x->s.batch * share / t->cpu_fraction;
  return compute * 1.3;
}

/* The initial type the catalog predicts best per dollar (cpu_fraction
 * per $/h): the expected outcome of Test 1, for the estimates and for
 * --dry-run's Test 2 config. */
static const catalog_type *exp_expected_ideal(const exp_ctx *x, const catalog *cat) {
  const catalog_type *best = NULL;
  for (int i = 0; i < EXP_NODES; i++) {
    const catalog_type *t = catalog_find(cat, x->types[i]);
    if (t && (!best || t->cpu_fraction / fmax(t->price_usd_per_hour, 1e-9) >
                           best->cpu_fraction / fmax(best->price_usd_per_hour, 1e-9)))
      best = t;
  }
  return best;
}

static void exp_expected(const exp_ctx *x, const catalog *cat, double *t1_s, double *t2_s) {
  const catalog_type *ideal = exp_expected_ideal(x, cat);
  double slow = 0;
  for (int i = 0; i < EXP_NODES; i++) {
    const catalog_type *t = catalog_find(cat, x->types[i]);
    if (t) slow = fmax(slow, exp_pi_s(x, t));
  }
  long per_epoch = x->s.images / x->s.batch;
  double pis = (double)per_epoch * (double)x->s.epochs;
  double pi_ideal = exp_pi_s(x, ideal);
  /* boot + init (data and model, ~10 s on a quarter core) + the PIs */
  *t2_s = ideal->boot_delay_s + 10 + pis * pi_ideal;
  /* Test 1: ~40 PIs at the slowest node's pace before the switch is
   * settled, ~20 s of switch, the rest at the ideal pace */
  double before = fmin(pis, 40);
  *t1_s = 6 + 10 + before * slow + 20 + (pis - before) * pi_ideal;
}

static void exp_print_duration(FILE *f, const char *label, double s) {
  if (s < 120) fprintf(f, "%s%.0f s", label, s);
  else if (s < 2 * 3600) fprintf(f, "%s%.1f min", label, s / 60);
  else if (s < 3 * 86400) fprintf(f, "%s%.1f h", label, s / 3600);
  else fprintf(f, "%s%.1f days", label, s / 86400);
}

/* ---- configs --------------------------------------------------------- */

/* Writes the run config of one test: Test 1 (policy paramount) when
 * ideal is NULL, else Test 2 (EXP_NODES x ideal, policy static). */
static int exp_write_config(const exp_ctx *x, FILE *f, int test, const char *ideal,
                            const char *job_out) {
  fprintf(f,
          "# Written by `paramount experiment seed` (docs/experiment.md): Test %d.\n"
          "# Run it alone with `paramount run THIS_FILE`.\n",
          test);
  fprintf(f, "provider: local\ncatalog: ");
  exp_yaml_str(f, x->catalog_path);
  fprintf(f, "\nforce: %s\ncluster:\n", x->force ? "true" : "false");
  if (!ideal)
    for (int i = 0; i < EXP_NODES; i++) fprintf(f, "  - {type: %s, count: 1}\n", x->types[i]);
  else
    fprintf(f, "  - {type: %s, count: %d}\n", ideal, EXP_NODES);
  fprintf(f, "job:\n  command: [");
  const char *v[64];
  char num[16][24];
  size_t k = exp_job_argv(x, job_out, v, num);
  for (size_t i = 0; i < k; i++) {
    if (i) fputs(", ", f);
    exp_yaml_str(f, v[i]);
  }
  fprintf(f,
          "]\n"
          "  resume: [--resume, \"{checkpoint}\"]\n"
          "  batch: %d\n"
          "  scaling: global-batch\n"
          "  stop_timeout_s: %d\n",
          x->s.batch, x->s.hr >= 128 ? 1800 : 180);
  if (job_out) { /* the trainer's --out: where its checkpoints are */
    fprintf(f, "  checkpoint_dir: ");
    exp_yaml_str(f, job_out);
    fprintf(f, "\n");
  }
  if (!ideal)
    fprintf(f,
            "policy:\n  name: paramount\n  objective: min-cost\n"
            "  min_nodes: %d\n  max_nodes: %d\n  margin: %g\n  interval_s: %g\n",
            EXP_NODES, EXP_NODES, x->s.margin, x->s.interval_s);
  else
    fprintf(f,
            "policy:\n  name: static       # the ideal run: no change, predictions journaled\n"
            "  objective: min-cost\n  interval_s: %g\n",
            x->s.interval_s);
  return ferror(f) ? PM_EIO : 0;
}

static int exp_write_config_file(const exp_ctx *x, const char *path, int test, const char *ideal,
                                 const char *job_out) {
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  if (!m) return PM_ENOMEM;
  int rc = exp_write_config(x, m, test, ideal, job_out);
  if (fclose(m) && !rc) rc = PM_EIO;
  if (!rc) rc = util_write_file_atomic(path, text, len);
  free(text);
  return rc;
}

/* The catalog of a miniature: every type as in cat, with boot delays and
 * billing minimums times s.time_scale.  Written into the experiment
 * directory so that both tests' configs name it. */
static int exp_write_scaled_catalog(const exp_ctx *x, const catalog *cat, const char *path) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return PM_ENOMEM;
  fprintf(f, "# %s with boot delays and billing minimums x %g, written by\n"
             "# `paramount experiment seed --scale %s` (docs/experiment.md).\ntypes:\n",
          cat->path, x->s.time_scale, x->s.name);
  for (size_t i = 0; i < cat->ntypes; i++) {
    const catalog_type *t = &cat->types[i];
    fprintf(f,
            "  - name: %s\n    price_usd_per_hour: %.17g\n    vcpus: %u\n    memory_gib: %.17g\n"
            "    billing_granularity_s: %.17g\n    billing_minimum_s: %.17g\n"
            "    local:\n      cpu_fraction: %.17g\n      memory_limit_mib: %.17g\n"
            "      boot_delay_s: %.17g\n",
            t->name, t->price_usd_per_hour, t->vcpus, t->memory_gib, t->billing_granularity_s,
            t->billing_minimum_s * x->s.time_scale, t->cpu_fraction, t->memory_limit_mib,
            t->boot_delay_s * x->s.time_scale);
  }
  int rc = ferror(f) ? PM_EIO : 0;
  if (fclose(f) && !rc) rc = PM_EIO;
  if (!rc) rc = util_write_file_atomic(path, text, len);
  free(text);
  return rc;
}

/* ---- after each test ------------------------------------------------- */

typedef struct {
  char first[256], last[256];
} exp_clusters;

static int exp_cluster_cb(json_object *rec, void *ud) {
  exp_clusters *c = ud;
  const char *ev = exp_jstr(rec, "ev");
  if (strcmp(ev, "launch") && strcmp(ev, "relaunch")) return 0;
  const char *comp = exp_jstr(rec, "cluster");
  if (!c->first[0]) snprintf(c->first, sizeof c->first, "%s", comp);
  snprintf(c->last, sizeof c->last, "%s", comp);
  return 0;
}

/* The first and last cluster the job ran on, from the journal's launch
 * and relaunch records ("3xc5.large", "1xm5.large+1xc5.large+..."). */
static void exp_clusters_of(const char *run_dir, exp_clusters *c) {
  memset(c, 0, sizeof *c);
  long bad = 0;
  const char *warn = NULL;
  journal_read(run_dir, exp_cluster_cb, c, &bad, &warn);
}

/* "3xc5.large" -> type "c5.large" when homogeneous, with n nodes. */
static int exp_homogeneous(const char *comp, char *type, size_t cap, int *n) {
  char *end;
  long k = strtol(comp, &end, 10);
  if (end == comp || *end != 'x' || strchr(comp, '+') || !end[1]) return 0;
  snprintf(type, cap, "%s", end + 1);
  *n = (int)k;
  return 1;
}

/* Every node of the run is terminated and none of its cgroups is left.
 * Prints a line per problem; returns the number of nodes left. */
static int exp_nodes_left(const char *run_dir, int *nodes_out) {
  char dir[PATH_MAX + 32];
  snprintf(dir, sizeof dir, "%s/nodes", run_dir);
  DIR *d = opendir(dir);
  int left = 0, nodes = 0;
  if (!d) {
    *nodes_out = 0;
    return 0;
  }
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s/node.json", dir, e->d_name);
    char *text = NULL;
    if (util_read_file(path, 1 << 20, &text, NULL)) continue;
    json_object *o = json_tokener_parse(text);
    free(text);
    if (!o) {
      cli_error(EXP_VERB, "%s: not JSON", path);
      left++;
      continue;
    }
    nodes++;
    int bad = strcmp(exp_jstr(o, "state"), "terminated") != 0;
    if (bad)
      cli_error(EXP_VERB, "node %s of %s is %s, not terminated", e->d_name, run_dir,
                exp_jstr(o, "state"));
    json_object *cg = exp_jarr(o, "cgroups");
    for (size_t i = 0; cg && i < json_object_array_length(cg); i++) {
      const char *p = json_object_get_string(json_object_array_get_idx(cg, i));
      if (p && access(p, F_OK) == 0) {
        cli_error(EXP_VERB, "node %s of %s still has its cgroup %s", e->d_name, run_dir, p);
        bad = 1;
      }
    }
    left += bad;
    json_object_put(o);
  }
  closedir(d);
  *nodes_out = nodes;
  return left;
}

static json_object *exp_report_load(const char *run_dir) {
  char path[PATH_MAX + 48], *text = NULL;
  snprintf(path, sizeof path, "%s/report.json", run_dir);
  if (util_read_file(path, EXP_REPORT_MAX, &text, NULL)) return NULL;
  json_object *o = json_tokener_parse(text);
  free(text);
  return o;
}

typedef struct {
  const char *name;
  char config[PATH_MAX + 16];
  char run_dir[PATH_MAX + 16];
  char summary[PATH_MAX + 32];
  int rc, status, ran, switches, nodes, nodes_left, homogeneous, final_n;
  double total_s, cost_usd;
  exp_clusters cl;
  char final_type[CATALOG_NAME_MAX];
  json_object *report;
} exp_test;

/* Runs one test through the run API; its summary goes to a file beside
 * the run directory, its progress to stderr as under `paramount run`. */
static int exp_run_test(exp_ctx *x, exp_test *t, const char *paramount_bin) {
  static run_config cfg; /* large */
  char err[2048] = "";
  if (run_config_load(t->config, &cfg, err, sizeof err)) {
    cli_error(EXP_VERB, "%s", err);
    return PM_EPARSE;
  }
  FILE *sum = fopen(t->summary, "w");
  if (!sum) {
    cli_error(EXP_VERB, "cannot write %s: %s", t->summary, strerror(errno));
    return PM_EIO;
  }
  run_opts o = {.cfg = &cfg, .out_dir = t->run_dir, .paramount_bin = paramount_bin,
                .force = x->force, .status_tty = x->status_tty, .out = sum};
  run_result res;
  memset(&res, 0, sizeof res);
  t->rc = run_execute(&o, &res);
  fclose(sum);
  t->ran = 1;
  t->status = res.exit_status;
  t->switches = res.switches;
  t->total_s = res.total_s;
  t->cost_usd = res.cost_usd;
  if (res.run_dir[0]) snprintf(t->run_dir, sizeof t->run_dir, "%s", res.run_dir);
  exp_clusters_of(t->run_dir, &t->cl);
  t->homogeneous = exp_homogeneous(t->cl.last, t->final_type, sizeof t->final_type, &t->final_n);
  t->nodes_left = exp_nodes_left(t->run_dir, &t->nodes);
  return t->rc;
}

/* Runs a test; when none of its nodes could be started although its
 * cluster fits this host (other runs hold cores now: the provider refuses
 * to oversubscribe), waits and tries again, for at most
 * EXP_RETRY_MAX_S.  The refused attempt's directory is kept, renamed. */
#define EXP_RETRY_MAX_S 600
#define EXP_RETRY_EVERY_S 15
static int exp_run_test_retry(exp_ctx *x, exp_test *t, const char *paramount_bin,
                              double cores_needed) {
  double waited = 0;
  long host_cores = sysconf(_SC_NPROCESSORS_ONLN);
  for (int attempt = 1;; attempt++) {
    char want[PATH_MAX + 16];
    snprintf(want, sizeof want, "%s", t->run_dir);
    int rc = exp_run_test(x, t, paramount_bin);
    if (rc == 0 || rc == PM_EAGAIN || t->nodes > 0 || t->cl.first[0] ||
        cores_needed > (double)host_cores || waited >= EXP_RETRY_MAX_S)
      return rc;
    char moved[PATH_MAX + 48];
    snprintf(moved, sizeof moved, "%s-refused-%d", want, attempt);
    if (rename(t->run_dir, moved)) return rc;
    printf("%s: no node could be started (other runs may hold this host's cores; %s-summary "
           "says why): retrying in %d s\n",
           t->name, want, EXP_RETRY_EVERY_S);
    fflush(stdout);
    sleep(EXP_RETRY_EVERY_S);
    waited += EXP_RETRY_EVERY_S;
    snprintf(t->run_dir, sizeof t->run_dir, "%s", want);
  }
}

/* ---- the comparison -------------------------------------------------- */

/* Prints the table and fills the JSON summary from both report.json. */
static void exp_compare(exp_out *out, const exp_ctx *x, exp_test *t1, exp_test *t2,
                        json_object *js) {
  char a[32], b[32], c[32], d[32], e[32], f[32], g[32];
  exp_test *ts[2] = {t1, t2};
  const char *label[2] = {"test 1 (paramount)", "test 2 (ideal, static)"};
  exp_say(out, "\n== comparison ==\n");
  exp_say(out, "%-24s %-44s %9s %10s %8s\n", "TEST", "CLUSTER (start -> end)", "TIME_S",
          "COST_USD", "SWITCHES");
  json_object *jt = json_object_new_array();
  for (int i = 0; i < 2; i++) {
    exp_test *t = ts[i];
    double dur = exp_jnum(t->report, "duration_s"), cost = exp_jnum(t->report, "cost_usd");
    if (!isfinite(dur)) dur = t->total_s;
    if (!isfinite(cost)) cost = t->cost_usd;
    char clu[600];
    snprintf(clu, sizeof clu, "%s -> %s", t->cl.first[0] ? t->cl.first : "-",
             t->cl.last[0] ? t->cl.last : "-");
    if (t->ran)
      exp_say(out, "%-24s %-44s %s %s %8d\n", label[i], clu, exp_fmt(a, sizeof a, 9, 1, dur),
              exp_fmt(b, sizeof b, 10, 6, cost), t->switches);
    else
      exp_say(out, "%-24s %-44s %9s %10s %8s\n", label[i], "(not run)", "-", "-", "-");
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(t->name));
    json_object_object_add(o, "ran", json_object_new_boolean(t->ran));
    json_object_object_add(o, "completed", json_object_new_boolean(t->ran && t->rc == 0));
    json_object_object_add(o, "exit_status", json_object_new_int(t->status));
    json_object_object_add(o, "config", json_object_new_string(t->config));
    json_object_object_add(o, "run_dir", json_object_new_string(t->run_dir));
    json_object_object_add(o, "initial_cluster", json_object_new_string(t->cl.first));
    json_object_object_add(o, "final_cluster", json_object_new_string(t->cl.last));
    json_object_object_add(o, "homogeneous", json_object_new_boolean(t->homogeneous));
    json_object_object_add(o, "final_type", json_object_new_string(t->final_type));
    json_object_object_add(o, "duration_s", exp_jdbl(t->ran ? dur : NAN));
    json_object_object_add(o, "cost_usd", exp_jdbl(t->ran ? cost : NAN));
    json_object_object_add(o, "switches", json_object_new_int(t->switches));
    json_object_object_add(o, "nodes", json_object_new_int(t->nodes));
    json_object_object_add(o, "nodes_left", json_object_new_int(t->nodes_left));
    json_object_array_add(jt, o);
  }
  json_object_object_add(js, "tests", jt);

  double d1 = exp_jnum(t1->report, "duration_s"), d2 = exp_jnum(t2->report, "duration_s");
  double c1 = exp_jnum(t1->report, "cost_usd"), c2 = exp_jnum(t2->report, "cost_usd");
  double rt = d2 > 0 ? d1 / d2 : NAN, rc = c2 > 0 ? c1 / c2 : NAN;
  exp_say(out, "ratio test 1 / test 2: time %s, cost %s\n", exp_fmt(a, sizeof a, 0, 3, rt),
          exp_fmt(b, sizeof b, 0, 3, rc));
  json_object *jr = json_object_new_object();
  json_object_object_add(jr, "time", exp_jdbl(rt));
  json_object_object_add(jr, "cost", exp_jdbl(rc));
  json_object_object_add(js, "ratios", jr);

  /* per type */
  exp_say(out, "\nper type (setup = boot + staging; init = application init; steady PI = "
               "compute + comm, per phase):\n");
  exp_say(out, "%-6s %-10s %5s %7s %8s %8s %7s %8s %-8s %9s %9s %9s %8s\n", "TEST", "TYPE",
          "NODES", "BOOT_S", "STAGE_S", "SETUP_S", "INIT_S", "EPOCH_S", "PHASE", "PI_S",
          "COMPUTE_S", "COMM_S", "RANK_PIS");
  json_object *jtypes = json_object_new_array();
  for (int i = 0; i < 2; i++) {
    json_object *types = exp_jarr(ts[i]->report, "types");
    for (size_t k = 0; types && k < json_object_array_length(types); k++) {
      json_object *y = json_object_array_get_idx(types, k);
      json_object *ph = exp_jarr(y, "phases");
      size_t np = ph ? json_object_array_length(ph) : 0;
      json_object *jy = json_object_new_object();
      json_object_object_add(jy, "test", json_object_new_int(i + 1));
      json_object_object_add(jy, "type", json_object_new_string(exp_jstr(y, "type")));
      static const char *const keys[] = {"nodes", "price_usd_per_hour", "boot_s", "stage_s",
                                         "setup_s", "init_s", "epoch_s", "epochs"};
      for (size_t q = 0; q < sizeof keys / sizeof keys[0]; q++)
        json_object_object_add(jy, keys[q], exp_jdbl(exp_jnum(y, keys[q])));
      json_object *jp = json_object_new_array();
      for (size_t p = 0; p < (np ? np : 1); p++) {
        json_object *z = np ? json_object_array_get_idx(ph, p) : NULL;
        double pis = exp_jnum(z, "pis");
        if (p == 0)
          exp_say(out, "%-6d %-10s %5.0f %s %s %s %s %s", i + 1, exp_jstr(y, "type"),
                  exp_jnum(y, "nodes"), exp_fmt(a, sizeof a, 7, 2, exp_jnum(y, "boot_s")),
                  exp_fmt(b, sizeof b, 8, 3, exp_jnum(y, "stage_s")),
                  exp_fmt(c, sizeof c, 8, 2, exp_jnum(y, "setup_s")),
                  exp_fmt(d, sizeof d, 7, 2, exp_jnum(y, "init_s")),
                  exp_fmt(e, sizeof e, 8, 1, exp_jnum(y, "epoch_s")));
        else
          exp_say(out, "%-6s %-10s %5s %7s %8s %8s %7s %8s", "", "", "", "", "", "", "", "");
        exp_say(out, " %-8s %s %s %s %8s\n", z ? exp_jstr(z, "phase") : "-",
                exp_fmt(a, sizeof a, 9, 4, exp_jnum(z, "pi_s")),
                exp_fmt(b, sizeof b, 9, 4, exp_jnum(z, "compute_s")),
                exp_fmt(c, sizeof c, 9, 4, exp_jnum(z, "comm_s")),
                exp_fmt(f, sizeof f, 8, 0, pis));
        if (z) {
          json_object *jz = json_object_new_object();
          json_object_object_add(jz, "phase", json_object_new_string(exp_jstr(z, "phase")));
          static const char *const pk[] = {"pi_s", "pi_lo_s", "pi_hi_s", "compute_s",
                                           "comm_s", "pis", "warmup_pis"};
          for (size_t q = 0; q < sizeof pk / sizeof pk[0]; q++)
            json_object_object_add(jz, pk[q], exp_jdbl(exp_jnum(z, pk[q])));
          json_object_array_add(jp, jz);
        }
      }
      json_object_object_add(jy, "phases", jp);
      json_object_array_add(jtypes, jy);
    }
  }
  json_object_object_add(js, "types", jtypes);

  /* per switch */
  json_object *sw = exp_jarr(t1->report, "switches");
  size_t nsw = sw ? json_object_array_length(sw) : 0;
  exp_say(out, "\nswitches of test 1 (downtime = last PI on the old nodes -> first PI on the "
               "new = checkpoint + restart + re-init):\n");
  json_object *jsw = json_object_new_array();
  if (!nsw) exp_say(out, "  (none)\n");
  else
    exp_say(out, "%-3s %8s %-40s %-14s %8s %10s %12s %9s %9s\n", "#", "AT_S", "FROM", "TO",
            "SETUP_S", "DOWNTIME_S", "CHECKPOINT_S", "RESTART_S", "REINIT_S");
  for (size_t i = 0; i < nsw; i++) {
    json_object *s = json_object_array_get_idx(sw, i);
    exp_say(out, "%-3zu %s %-40s %-14s %s %s %s %s %s\n", i + 1,
            exp_fmt(a, sizeof a, 8, 1, exp_jnum(s, "stop_request_s")), exp_jstr(s, "from"),
            exp_jstr(s, "to"), exp_fmt(b, sizeof b, 8, 2, exp_jnum(s, "setup_s")),
            exp_fmt(c, sizeof c, 10, 2, exp_jnum(s, "downtime_s")),
            exp_fmt(d, sizeof d, 12, 2, exp_jnum(s, "checkpoint_s")),
            exp_fmt(e, sizeof e, 9, 2, exp_jnum(s, "restart_s")),
            exp_fmt(f, sizeof f, 9, 2, exp_jnum(s, "reinit_s")));
    json_object *o = json_object_new_object();
    json_object_object_add(o, "from", json_object_new_string(exp_jstr(s, "from")));
    json_object_object_add(o, "to", json_object_new_string(exp_jstr(s, "to")));
    static const char *const k2[] = {"stop_request_s", "setup_s", "downtime_s", "checkpoint_s",
                                     "restart_s", "reinit_s"};
    for (size_t q = 0; q < sizeof k2 / sizeof k2[0]; q++)
      json_object_object_add(o, k2[q], exp_jdbl(exp_jnum(s, k2[q])));
    json_object_array_add(jsw, o);
  }
  json_object_object_add(js, "switches", jsw);

  /* decisions: every one in the JSON; the printed table keeps the changes
   * of action and an even sample of the rest */
  json_object *dec = exp_jarr(t1->report, "decisions");
  size_t nd = dec ? json_object_array_length(dec) : 0;
  json_object *jd = json_object_new_array();
  size_t every = nd > EXP_DECISIONS_SHOWN ? (nd + EXP_DECISIONS_SHOWN - 1) / EXP_DECISIONS_SHOWN
                                          : 1;
  exp_say(out, "\ndecisions of test 1: remaining time predicted (for the option chosen) vs "
               "actual:\n");
  if (!nd) exp_say(out, "  (none: the job ended before the first decision)\n");
  else
    exp_say(out, "%8s %-7s %12s %12s %8s  %s\n", "AT_S", "ACTION", "PREDICTED_S", "ACTUAL_S",
            "ERROR", "REASON");
  double *errs = nd ? calloc(nd, sizeof *errs) : NULL;
  size_t nerr = 0, shown = 0;
  const char *prev = "";
  for (size_t i = 0; i < nd; i++) {
    json_object *o = json_object_array_get_idx(dec, i);
    const char *act = exp_jstr(o, "action");
    double at = exp_jnum(o, "t_s"), pr = exp_jnum(o, "predicted_remaining_s"),
           ac = exp_jnum(o, "actual_remaining_s");
    double err = isfinite(pr) && isfinite(ac) && ac > 0 ? (pr - ac) / ac : NAN;
    if (isfinite(err) && errs) errs[nerr++] = fabs(err);
    int changed = strcmp(act, prev) != 0;
    if (changed || i % every == 0 || i + 1 == nd) {
      exp_say(out, "%s %-7s %s %s %s  %s\n", exp_fmt(a, sizeof a, 8, 1, at), act,
              exp_fmt(b, sizeof b, 12, 1, pr), exp_fmt(c, sizeof c, 12, 1, ac),
              isfinite(err) ? (snprintf(g, sizeof g, "%+7.0f%%", 100 * err), g) : "       -",
              exp_jstr(o, "reason"));
      shown++;
    }
    prev = act;
    json_object *jo = json_object_new_object();
    json_object_object_add(jo, "t_s", exp_jdbl(at));
    json_object_object_add(jo, "action", json_object_new_string(act));
    json_object_object_add(jo, "reason", json_object_new_string(exp_jstr(o, "reason")));
    json_object_object_add(jo, "predicted_remaining_s", exp_jdbl(pr));
    json_object_object_add(jo, "actual_remaining_s", exp_jdbl(ac));
    json_object_array_add(jd, jo);
  }
  double med = NAN;
  if (nerr) {
    /* median absolute relative error: insertion sort, nerr is small */
    for (size_t i = 1; i < nerr; i++)
      for (size_t j = i; j > 0 && errs[j - 1] > errs[j]; j--) {
        double tmp = errs[j];
        errs[j] = errs[j - 1];
        errs[j - 1] = tmp;
      }
    med = nerr % 2 ? errs[nerr / 2] : (errs[nerr / 2 - 1] + errs[nerr / 2]) / 2;
  }
  free(errs);
  if (nd)
    exp_say(out, "(%zu of %zu decisions shown: every change of action and an even sample; all "
                 "are in comparison.json; median |error| %s%%)\n",
            shown, nd, exp_fmt(a, sizeof a, 0, 1, 100 * med));
  json_object_object_add(js, "decisions", jd);
  json_object_object_add(js, "decision_median_abs_error", exp_jdbl(med));
  (void)x;
}

/* ---- the verb -------------------------------------------------------- */

static int exp_parse_types(exp_ctx *x, const catalog *cat) {
  char buf[3 * CATALOG_NAME_MAX + 8];
  if (strlen(x->types_arg) >= sizeof buf) {
    cli_error(EXP_VERB, "--types: '%s' is too long", x->types_arg);
    return -1;
  }
  snprintf(buf, sizeof buf, "%s", x->types_arg);
  int n = 0;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (n == EXP_NODES) {
      cli_error(EXP_VERB, "--types: give exactly %d types, got more in '%s'", EXP_NODES,
                x->types_arg);
      return -1;
    }
    if (!catalog_find(cat, tok)) {
      cli_error(EXP_VERB, "--types: '%s' is not a type of %s", tok, cat->path);
      return -1;
    }
    for (int i = 0; i < n; i++)
      if (!strcmp(x->types[i], tok)) {
        cli_error(EXP_VERB, "--types: '%s' appears twice; Test 1 needs %d different types", tok,
                  EXP_NODES);
        return -1;
      }
    snprintf(x->types[n++], CATALOG_NAME_MAX, "%s", tok);
  }
  if (n != EXP_NODES) {
    cli_error(EXP_VERB, "--types: give exactly %d different types, comma-separated, got '%s'",
              EXP_NODES, x->types_arg);
    return -1;
  }
  return 0;
}

/* The trainer reads every file of a folder; the seed trains on 1000.  So
 * the experiment's folder is EXP/data/images with links to the first
 * s.images files of --images, in the trainer's order (names matching
 * "*.*", sorted by strcmp). */
static int exp_link_images(exp_ctx *x, char *dir, size_t cap) {
  snprintf(dir, cap, "%s/data/images", x->dir);
  if (util_mkdir_p(dir)) {
    cli_error(EXP_VERB, "cannot create %s: %s", dir, strerror(errno));
    return PM_ESYS;
  }
  DIR *d = opendir(x->images_src);
  if (!d) {
    cli_error(EXP_VERB, "--images: cannot read '%s': %s", x->images_src, strerror(errno));
    return PM_EINVAL;
  }
  char **names = NULL;
  size_t n = 0, ncap = 0;
  int rc = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.' || !strchr(e->d_name, '.')) continue;
    if (n == ncap) {
      ncap = ncap ? 2 * ncap : 1024;
      char **nn = realloc(names, ncap * sizeof *names);
      if (!nn) {
        rc = PM_ENOMEM;
        break;
      }
      names = nn;
    }
    if (!(names[n] = strdup(e->d_name))) {
      rc = PM_ENOMEM;
      break;
    }
    n++;
  }
  closedir(d);
  if (!rc && n < (size_t)x->s.batch) {
    cli_error(EXP_VERB, "--images: '%s' has %zu files named *.*, fewer than the batch of %d",
              x->images_src, n, x->s.batch);
    rc = PM_EINVAL;
  }
  size_t nall = n;
  if (!rc) {
    qsort(names, n, sizeof *names, exp_cmpstr);
    if (n > (size_t)x->s.images) n = (size_t)x->s.images;
    for (size_t i = 0; i < n && !rc; i++) {
      char from[PATH_MAX * 2], to[PATH_MAX * 2];
      snprintf(from, sizeof from, "%s/%s", x->images_src, names[i]);
      snprintf(to, sizeof to, "%s/%s", dir, names[i]);
      if (symlink(from, to) && errno != EEXIST) {
        cli_error(EXP_VERB, "cannot link %s: %s", to, strerror(errno));
        rc = PM_ESYS;
      }
    }
    if (!rc && n < (size_t)x->s.images) {
      printf("images: %s has %zu files named *.*, fewer than %d: using them all\n", x->images_src,
             n, x->s.images);
      x->s.images = (int)n;
    }
  }
  for (size_t i = 0; i < nall; i++) free(names[i]);
  free(names);
  return rc;
}

/* Decodes the image folder once into the trainer's cache, so that no
 * node spends its init time decoding JPEGs: every rank then reads this
 * one read-only file (docs/experiment.md says why it is not staged). */
static int exp_prepare_images(exp_ctx *x) {
  char data[PATH_MAX + 8], out[PATH_MAX + 16];
  snprintf(data, sizeof data, "%s/data", x->dir);
  snprintf(out, sizeof out, "%s/data/prepare", x->dir);
  if (util_mkdir_p(out)) {
    cli_error(EXP_VERB, "cannot create %s: %s", out, strerror(errno));
    return PM_ESYS;
  }
  exp_ctx p = *x;
  p.s.epochs = 1;
  p.s.sample_iv = 0;
  p.s.ckpt_iv = 0;
  const char *v[64];
  char num[16][24];
  size_t k = exp_job_argv(&p, out, v, num);
  v[k++] = "--max-iters";
  v[k++] = "1";
  v[k] = NULL;
  char *buf = malloc(EXP_PROBE_OUT_MAX);
  if (!buf) return PM_ENOMEM;
  double t0 = clock_real_s();
  int st = exp_capture((char *const *)v, buf, EXP_PROBE_OUT_MAX);
  if (st != 0) {
    char line[512];
    exp_last_line(buf, line, sizeof line);
    cli_error(EXP_VERB, "--images %s: the trainer cannot use it (status %d): %s", x->images_src,
              st, line);
    free(buf);
    return PM_EINVAL;
  }
  free(buf);
  printf("images: the first %d files of %s decoded once into %s in %.1f s\n", x->s.images,
         x->images_src, x->cache, clock_real_s() - t0);
  return 0;
}

static int exp_dir_prepare(exp_ctx *x) {
  char dir[PATH_MAX];
  if (x->out) {
    snprintf(dir, sizeof dir, "%s", x->out);
  } else {
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    snprintf(dir, sizeof dir, "runs/experiment-%s", stamp);
  }
  if (util_mkdir_p(dir)) {
    cli_error(EXP_VERB, "cannot create the experiment directory %s: %s", dir, strerror(errno));
    return PM_ESYS;
  }
  if (!realpath(dir, x->dir)) {
    cli_error(EXP_VERB, "%s: %s", dir, strerror(errno));
    return PM_ESYS;
  }
  static const char *const taken[] = {"test1", "test2", "comparison.json"};
  for (size_t i = 0; i < sizeof taken / sizeof taken[0]; i++) {
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/%s", x->dir, taken[i]);
    if (access(p, F_OK) == 0) {
      cli_error(EXP_VERB, "%s already holds an experiment (%s exists); choose another --out",
                x->dir, taken[i]);
      return PM_EEXIST;
    }
  }
  if (strchr(x->dir, ' ')) {
    cli_error(EXP_VERB, "%s: the experiment directory may not contain spaces (Open MPI splits "
                        "its rsh agent's command on them)", x->dir);
    return PM_EINVAL;
  }
  return 0;
}

static void exp_print_settings(FILE *f, const exp_ctx *x) {
  long per_epoch = x->s.images / x->s.batch;
  fprintf(f, "settings (%s): %d %s, hr %d (LR %d), F %d, B %d, global batch %d (%d per rank "
             "on %d nodes), warm-up %ld, %ld epochs = %ld PIs, content loss %s\n",
          x->s.name, x->s.images, x->images ? "images of the folder" : "generated images",
          x->s.hr, x->s.hr / 4, x->s.filters, x->s.blocks, x->s.batch,
          (x->s.batch + EXP_NODES - 1) / EXP_NODES, EXP_NODES, x->s.warmup, x->s.epochs,
          per_epoch * x->s.epochs,
          !x->s.content ? "off" : x->vgg ? "VGG19 (given weights)" : "VGG19 (random features)");
  fprintf(f, "why: %s\n", x->s.why);
  fprintf(f, "test 1: %s + %s + %s, policy paramount (min-cost, margin %g, every %g s); "
             "test 2: %d x the type test 1 ends on, policy static\n",
          x->types[0], x->types[1], x->types[2], x->s.margin, x->s.interval_s, EXP_NODES);
}

int cmd_experiment(int argc, char **argv) {
  exp_ctx x;
  memset(&x, 0, sizeof x);
  x.s = exp_scales[1];
  x.types_arg = "m5.large,c5.large,c5.xlarge";
  x.status_tty = -1;
  x.probe_step_s = -1;
  long epochs = -1, hr = -1, warmup = -1;
  const char *sub = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return exp_usage(stdout);
    static const char *const with_value[] = {"--out", "--images", "--scale", "--epochs", "--hr",
                                             "--warmup", "--types", "--catalog", "--vgg"};
    int takes = 0;
    for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
      takes |= !strcmp(a, with_value[k]);
    if (takes) {
      if (i + 1 >= argc || !argv[i + 1][0]) {
        cli_error(EXP_VERB, "option %s needs a value", a);
        return CLI_EXIT_USAGE;
      }
      const char *v = argv[++i];
      unsigned long long u = 0;
      if (!strcmp(a, "--out")) x.out = v;
      else if (!strcmp(a, "--images")) x.images = v;
      else if (!strcmp(a, "--types")) x.types_arg = v;
      else if (!strcmp(a, "--catalog")) x.catalog = v;
      else if (!strcmp(a, "--vgg")) x.vgg = v;
      else if (!strcmp(a, "--scale")) {
        size_t k = 0;
        while (k < sizeof exp_scales / sizeof exp_scales[0] && strcmp(exp_scales[k].name, v)) k++;
        if (k == sizeof exp_scales / sizeof exp_scales[0]) {
          cli_error(EXP_VERB, "--scale: '%s' is not tiny, default or full", v);
          return CLI_EXIT_USAGE;
        }
        x.s = exp_scales[k];
      } else {
        if (cli_parse_u64(EXP_VERB, a, v, &u)) return CLI_EXIT_USAGE;
        if (!strcmp(a, "--epochs")) {
          if (u < 2 || u > 100000) {
            cli_error(EXP_VERB, "--epochs: %llu is not in [2, 100000] (the report times whole "
                                "epochs, and Test 1 needs a first one to measure)", u);
            return CLI_EXIT_USAGE;
          }
          epochs = (long)u;
        } else if (!strcmp(a, "--hr")) {
          if (u < 16 || u > 1024 || u % 16) {
            cli_error(EXP_VERB, "--hr: %llu is not a multiple of 16 in [16, 1024]", u);
            return CLI_EXIT_USAGE;
          }
          hr = (long)u;
        } else {
          if (u > 1000000) {
            cli_error(EXP_VERB, "--warmup: %llu is more than 1000000 batches", u);
            return CLI_EXIT_USAGE;
          }
          warmup = (long)u;
        }
      }
    } else if (!strcmp(a, "--full")) {
      x.s = exp_scales[2];
    } else if (!strcmp(a, "--force")) {
      x.force = 1;
    } else if (!strcmp(a, "--dry-run")) {
      x.dry_run = 1;
    } else if (!strcmp(a, "--no-status")) {
      x.status_tty = 0;
    } else if (a[0] == '-' || sub) {
      cli_error(EXP_VERB, "unexpected argument '%s' (see paramount experiment --help)", a);
      return CLI_EXIT_USAGE;
    } else {
      sub = a;
    }
  }
  if (!sub) return exp_usage(stderr);
  if (strcmp(sub, "seed")) {
    cli_error(EXP_VERB, "unknown experiment '%s' (the one there is: seed)", sub);
    return CLI_EXIT_USAGE;
  }
  if (epochs > 0) x.s.epochs = epochs;
  if (hr > 0) x.s.hr = (int)hr;
  if (warmup >= 0) x.s.warmup = warmup;
  if (x.images && !exp_is_dir(x.images)) {
    cli_error(EXP_VERB, "--images: '%s' is not a directory", x.images);
    return CLI_EXIT_USAGE;
  }
  if (x.vgg && access(x.vgg, R_OK)) {
    cli_error(EXP_VERB, "--vgg: cannot read '%s': %s", x.vgg, strerror(errno));
    return CLI_EXIT_USAGE;
  }
  if (x.vgg && !x.s.content) {
    cli_error(EXP_VERB, "--vgg: the %s scale has no content loss (use --full)", x.s.name);
    return CLI_EXIT_USAGE;
  }
  char images_abs[PATH_MAX], vgg_abs[PATH_MAX];
  if (x.images) x.images = realpath(x.images, images_abs) ? images_abs : x.images;
  x.images_src = x.images;
  if (x.vgg) x.vgg = realpath(x.vgg, vgg_abs) ? vgg_abs : x.vgg;

  /* catalog and types */
  if (x.catalog) {
    if (!realpath(x.catalog, x.catalog_path)) {
      cli_error(EXP_VERB, "--catalog: cannot read '%s': %s", x.catalog, strerror(errno));
      return CLI_EXIT_USAGE;
    }
  } else if (catalog_default_path(x.catalog_path, sizeof x.catalog_path)) {
    cli_error(EXP_VERB, "no default catalog (looked for %s); give --catalog FILE",
              x.catalog_path);
    return CLI_EXIT_USAGE;
  }
  catalog *cat = NULL;
  char err[2048];
  if (catalog_load(x.catalog_path, &cat, err, sizeof err)) {
    cli_error(EXP_VERB, "%s", err);
    return CLI_EXIT_USAGE;
  }
  int ret = CLI_EXIT_FAIL;
  if (exp_parse_types(&x, cat)) {
    ret = CLI_EXIT_USAGE;
    goto out_cat;
  }
  if (exp_find_esrgan(x.esrgan, sizeof x.esrgan)) {
    cli_error(EXP_VERB, "paramount-esrgan is not beside %s (build it: cmake --build BUILD "
                        "--target paramount-esrgan)", cli_self_dir());
    goto out_cat;
  }

  /* the directory first: a taken one is refused before minutes of work */
  if (!x.dry_run) {
    int drc = exp_dir_prepare(&x);
    if (drc) {
      ret = drc == PM_EEXIST || drc == PM_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
      goto out_cat;
    }
  }
  exp_print_settings(stdout, &x);
  /* Measure one GAN step on a host core: the expected durations printed
   * before anything starts come from it. */
  char tmpl[] = "/tmp/paramount-probe-XXXXXX";
  if (!mkdtemp(tmpl)) {
    cli_error(EXP_VERB, "mkdtemp: %s", strerror(errno));
    goto out_cat;
  }
  printf("measuring one GAN step of this model on one host core...\n");
  fflush(stdout);
  int prc = exp_probe_step(&x, tmpl);
  char *rmv[] = {"rm", "-rf", "--", tmpl, NULL};
  char junk[256];
  exp_capture(rmv, junk, sizeof junk);
  if (prc) goto out_cat;
  double t1_s, t2_s;
  exp_expected(&x, cat, &t1_s, &t2_s);
  printf("one GAN step (global batch %d) takes %.3f s on one host core; ", x.s.batch,
         x.probe_step_s);
  exp_print_duration(stdout, "expected: test 1 ~", t1_s);
  exp_print_duration(stdout, ", test 2 ~", t2_s);
  exp_print_duration(stdout, ", both ~", t1_s + t2_s);
  printf(" (rough: %s assumed ideal, host not shared)\n", exp_expected_ideal(&x, cat)->name);
  fflush(stdout);

  if (x.dry_run) {
    snprintf(x.dir, sizeof x.dir, "%s", x.out ? x.out : "runs/experiment-<timestamp>");
    if (x.images) snprintf(x.cache, sizeof x.cache, "%s/data/images-hr%d.cache", x.dir, x.s.hr);
    char jo[PATH_MAX + 16];
    printf("\n--- %s/test1.yaml ---\n", x.dir);
    snprintf(jo, sizeof jo, "%s/test1.job", x.dir);
    exp_write_config(&x, stdout, 1, NULL, jo);
    printf("\n--- %s/test2.yaml (the type is the one test 1 ends on; expected: %s) ---\n", x.dir,
           exp_expected_ideal(&x, cat)->name);
    snprintf(jo, sizeof jo, "%s/test2.job", x.dir);
    exp_write_config(&x, stdout, 2, exp_expected_ideal(&x, cat)->name, jo);
    ret = CLI_EXIT_OK;
    goto out_cat;
  }

  printf("experiment: %s\n", x.dir);
  fflush(stdout);
  if (x.s.time_scale != 1) {
    char scaled[PATH_MAX + 16];
    snprintf(scaled, sizeof scaled, "%s/catalog.yaml", x.dir);
    if (exp_write_scaled_catalog(&x, cat, scaled)) {
      cli_error(EXP_VERB, "cannot write %s", scaled);
      goto out_cat;
    }
    if (strlen(scaled) >= sizeof x.catalog_path) {
      cli_error(EXP_VERB, "%s: path too long", scaled);
      goto out_cat;
    }
    memcpy(x.catalog_path, scaled, strlen(scaled) + 1);
    printf("catalog: %s (boot delays and billing minimums x %g)\n", scaled, x.s.time_scale);
  }
  if (x.images) {
    snprintf(x.cache, sizeof x.cache, "%s/data/images-hr%d.cache", x.dir, x.s.hr);
    if (exp_link_images(&x, x.images_dir, sizeof x.images_dir)) {
      ret = CLI_EXIT_USAGE;
      goto out_cat;
    }
    x.images = x.images_dir;
    if (exp_prepare_images(&x)) {
      ret = CLI_EXIT_USAGE;
      goto out_cat;
    }
  }
  char bin[PATH_MAX + 16];
  snprintf(bin, sizeof bin, "%s/paramount", cli_self_dir());
  double t_start = clock_real_s();

  exp_test t1, t2;
  memset(&t1, 0, sizeof t1);
  memset(&t2, 0, sizeof t2);
  t1.name = "test1";
  t2.name = "test2";
  exp_test *ts[2] = {&t1, &t2};
  for (int i = 0; i < 2; i++) {
    snprintf(ts[i]->config, sizeof ts[i]->config, "%s/test%d.yaml", x.dir, i + 1);
    snprintf(ts[i]->run_dir, sizeof ts[i]->run_dir, "%s/test%d", x.dir, i + 1);
    snprintf(ts[i]->summary, sizeof ts[i]->summary, "%s/test%d-summary.txt", x.dir, i + 1);
  }
  char job1[PATH_MAX + 16], job2[PATH_MAX + 16];
  snprintf(job1, sizeof job1, "%s/test1.job", x.dir);
  snprintf(job2, sizeof job2, "%s/test2.job", x.dir);
  if (exp_write_config_file(&x, t1.config, 1, NULL, job1)) {
    cli_error(EXP_VERB, "cannot write %s", t1.config);
    goto out_cat;
  }
  printf("\n== test 1: 3 heterogeneous nodes, paramount reshapes the cluster (%s) ==\n",
         t1.config);
  fflush(stdout);
  {
    /* Test 1's cluster plus the replacements make-before-break may add */
    double need = 0, best = 0;
    for (int i = 0; i < EXP_NODES; i++) {
      const catalog_type *ct = catalog_find(cat, x.types[i]);
      need += ct->cpu_fraction;
      best = fmax(best, ct->cpu_fraction);
    }
    exp_run_test_retry(&x, &t1, bin, need + (EXP_NODES - 1) * best);
  }
  printf("test 1: %s after %.1f s, $%.6f, %d switch%s: %s -> %s (summary: %s)\n",
         t1.rc == 0 ? "completed" : "FAILED", t1.total_s, t1.cost_usd, t1.switches,
         t1.switches == 1 ? "" : "es", t1.cl.first[0] ? t1.cl.first : "(no launch)",
         t1.cl.last[0] ? t1.cl.last : "-", t1.summary);
  int interrupted = t1.rc == PM_EAGAIN ? t1.status : 0;
  char ideal[CATALOG_NAME_MAX] = "";
  if (t1.rc == 0 && t1.homogeneous) {
    snprintf(ideal, sizeof ideal, "%s", t1.final_type);
  } else if (t1.rc == 0) {
    cli_error(EXP_VERB, "test 1 ended on %s, not on a homogeneous cluster: no ideal type to "
                        "run test 2 on", t1.cl.last);
  }
  if (ideal[0] && !interrupted) {
    if (exp_write_config_file(&x, t2.config, 2, ideal, job2)) {
      cli_error(EXP_VERB, "cannot write %s", t2.config);
    } else {
      printf("\n== test 2: %d x %s from the start, the ideal run (%s) ==\n", EXP_NODES, ideal,
             t2.config);
      fflush(stdout);
      exp_run_test_retry(&x, &t2, bin, EXP_NODES * catalog_find(cat, ideal)->cpu_fraction);
      printf("test 2: %s after %.1f s, $%.6f on %s (summary: %s)\n",
             t2.rc == 0 ? "completed" : "FAILED", t2.total_s, t2.cost_usd, t2.cl.last,
             t2.summary);
      if (t2.rc == PM_EAGAIN) interrupted = t2.status;
    }
  }

  /* Test 1's report compared with the real ideal run, not a prediction. */
  if (t1.ran && t2.ran && t2.rc == 0) {
    if (report_build(t1.run_dir, &(report_opts){.ideal_dir = t2.run_dir}, err, sizeof err))
      cli_error(EXP_VERB, "report of test 1 against test 2: %s", err);
  }
  for (int i = 0; i < 2; i++)
    if (ts[i]->ran) ts[i]->report = exp_report_load(ts[i]->run_dir);

  int ok = t1.rc == 0 && t1.homogeneous && t2.rc == 0 && !t1.nodes_left && !t2.nodes_left &&
           t2.homogeneous && !strcmp(t2.final_type, ideal) && !interrupted;
  json_object *js = json_object_new_object();
  json_object_object_add(js, "schema", json_object_new_string("paramount-experiment/1"));
  json_object_object_add(js, "experiment", json_object_new_string("seed"));
  json_object_object_add(js, "dir", json_object_new_string(x.dir));
  json_object *jset = json_object_new_object();
  json_object_object_add(jset, "scale", json_object_new_string(x.s.name));
  json_object_object_add(jset, "data", json_object_new_string(x.images_src ? x.images_src : "synthetic"));
  json_object_object_add(jset, "images", json_object_new_int(x.s.images));
  json_object_object_add(jset, "hr", json_object_new_int(x.s.hr));
  json_object_object_add(jset, "filters", json_object_new_int(x.s.filters));
  json_object_object_add(jset, "blocks", json_object_new_int(x.s.blocks));
  json_object_object_add(jset, "batch", json_object_new_int(x.s.batch));
  json_object_object_add(jset, "warmup", json_object_new_int64(x.s.warmup));
  json_object_object_add(jset, "epochs", json_object_new_int64(x.s.epochs));
  json_object_object_add(jset, "content_loss", json_object_new_boolean(x.s.content));
  json_object *jty = json_object_new_array();
  for (int i = 0; i < EXP_NODES; i++) json_object_array_add(jty, json_object_new_string(x.types[i]));
  json_object_object_add(jset, "test1_types", jty);
  json_object_object_add(jset, "margin", json_object_new_double(x.s.margin));
  json_object_object_add(jset, "interval_s", json_object_new_double(x.s.interval_s));
  json_object_object_add(jset, "probe_step_s", json_object_new_double(x.probe_step_s));
  json_object_object_add(jset, "expected_test1_s", exp_jdbl(t1_s));
  json_object_object_add(jset, "expected_test2_s", exp_jdbl(t2_s));
  json_object_object_add(js, "settings", jset);
  json_object_object_add(js, "ideal_type", json_object_new_string(ideal));

  exp_out out = {.tty = stdout};
  char *text = NULL;
  size_t len = 0;
  out.mem = open_memstream(&text, &len);
  exp_say(&out, "paramount experiment seed: %s\n", x.dir);
  if (out.mem) exp_print_settings(out.mem, &x);
  exp_compare(&out, &x, &t1, &t2, js);
  double wall = clock_real_s() - t_start;
  exp_say(&out, "\nnodes: test 1 had %d, test 2 had %d; %d left running\n", t1.nodes, t2.nodes,
          t1.nodes_left + t2.nodes_left);
  {
    char m1[32], m2[32];
    exp_say(&out, "expected before the start: %.0f s for both tests; measured: %s s + %s s\n",
            t1_s + t2_s,
            exp_fmt(m1, sizeof m1, 0, 0, t1.ran ? exp_jnum(t1.report, "duration_s") : NAN),
            exp_fmt(m2, sizeof m2, 0, 0, t2.ran ? exp_jnum(t2.report, "duration_s") : NAN));
  }
  exp_say(&out, "experiment: %s in %.1f s (wall)\n",
          ok ? "OK" : interrupted ? "INTERRUPTED" : "FAILED", wall);
  if (t2.ran)
    exp_say(&out, "reports: %s/report.html (against test 2), %s/report.html\n", t1.run_dir,
            t2.run_dir);
  else
    exp_say(&out, "report: %s/report.html (test 2 not run)\n", t1.run_dir);
  json_object_object_add(js, "wall_s", json_object_new_double(wall));
  json_object_object_add(js, "ok", json_object_new_boolean(ok));
  if (out.mem) fclose(out.mem);
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/comparison.txt", x.dir);
  if (!text || util_write_file_atomic(path, text, len))
    cli_error(EXP_VERB, "cannot write %s", path);
  free(text);
  const char *js_text = json_object_to_json_string_ext(js, JSON_C_TO_STRING_PRETTY |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE);
  snprintf(path, sizeof path, "%s/comparison.json", x.dir);
  if (util_write_file_atomic(path, js_text, strlen(js_text)))
    cli_error(EXP_VERB, "cannot write %s", path);
  json_object_put(js);
  for (int i = 0; i < 2; i++) json_object_put(ts[i]->report);
  ret = interrupted ? interrupted : ok ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out_cat:
  catalog_free(cat);
  return ret;
}
